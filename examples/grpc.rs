//! gRPC through tonic, with tokens that look after themselves.
//!
//! ```text
//! cargo run --example grpc --features tonic
//! ```
//!
//! With no `GRPC_ENDPOINT`, it starts the embedded mock OAuth 2.0 authorization server (tokens
//! live 1 s, and come with refresh tokens) and, in-process, a tonic server with
//! `grpc.health.v1.Health` that asks the authorization server whether each call's token is
//! good and answers UNAUTHENTICATED if not. It sends 200 `Health/Check` calls from 8 tasks,
//! 150 ms apart: several token lifetimes, with the authorization server revoking every token
//! once in the middle. It prints a progress line each second and a summary, and exits 0 only
//! if every call succeeded.
//!
//! With `GRPC_ENDPOINT` (`http://host:port`), it calls that server's
//! `grpc.health.v1.Health/Check` (service `""`) with tokens from a real authorization server,
//! and exits 0 only if every call answered SERVING. The variables (a contract: tests and users
//! depend on it) are those of `examples/oauth2.rs`, read by the same code
//! (`examples/common/oauth2_env.rs`), with `GRPC_ENDPOINT` in place of its `API_URL`:
//!
//! | variable | meaning |
//! | --- | --- |
//! | `GRPC_ENDPOINT` | the gRPC server, `http://host:port` |
//! | `OAUTH2_ISSUER` or `OAUTH2_TOKEN_URL` | discovery from the issuer, or the token endpoint directly |
//! | `OAUTH2_CLIENT_ID`, `OAUTH2_CLIENT_SECRET` | the client |
//! | `OAUTH2_AUTH_METHOD` | `client_secret_basic` (default), `client_secret_post`, `private_key_jwt` |
//! | `OAUTH2_PRIVATE_KEY`, `OAUTH2_KEY_ID` | PEM file of the client's private key (EC P-256 or RSA), its `kid` |
//! | `OAUTH2_SCOPE`, `OAUTH2_AUDIENCE`, `OAUTH2_RESOURCE` | optional parameters (`OAUTH2_RESOURCE` may list several, space-separated) |
//! | `OAUTH2_DPOP=1`, or `OAUTH2_DPOP_KEY` | DPoP-bound tokens (RFC 9449): a fresh ES256 key per run, or the key in this PEM file; with `GRPC_ENDPOINT` only |
//! | `REQUESTS` (default 200), `CONCURRENCY` (default 8), `PACE_MS` (default 0) | how many calls, from how many tasks, with what pause between a task's calls |
//!
//! ```text
//! GRPC_ENDPOINT=http://grpc.internal:50051 OAUTH2_ISSUER=https://login.example.com/realms/acme \
//! OAUTH2_CLIENT_ID=reports OAUTH2_CLIENT_SECRET=… cargo run --example grpc --features tonic
//! ```
//!
//! Against the embedded servers, `OAUTH2_AUTH_METHOD`, `REQUESTS`, `CONCURRENCY` and `PACE_MS`
//! apply too (`PACE_MS` is 150 there unless set, so that the run spans several lifetimes).

use std::io::{self, Write};
use std::process::ExitCode;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tower::{BoxError, ServiceBuilder};
use tower_bearer::tonic::{GrpcAuth, GrpcAuthLayer};
use tower_bearer::{ReplayBody, Scope, TokenCache};
use tower_bearer_mock::oauth2::MockAuthServer;
use tower_bearer_oauth2::OAuth2Builder;

mod common;
use common::load::{self, Finished, Moment, Plan, Progress, Revocations};
use common::oauth2_env::{self, Load, TokenServer, TokenSettings};
use common::summary::Summary;
use grpc_server::GrpcServer;

/// The client a user builds: a generated client over the layer over a channel.
type Health = HealthClient<GrpcAuth<Channel>>;

/// The token cache: the OAuth 2.0 provider, getting its tokens through a hyper client.
/// `provider` is `OAuth2::builder()` with what the variables say (`.issuer(…)` or
/// `.token_endpoint(…)`, `.client_id(…)`, `.client_secret(…)`, …). The cache could serve HTTP
/// clients of the same process too.
fn token_cache(provider: OAuth2Builder) -> Result<TokenCache, BoxError> {
    let client = common::https_client::<ReplayBody<Full<Bytes>>>();
    Ok(TokenCache::new(provider.build(client)?))
}

/// Connects to `endpoint`, with the layer between the generated client and the channel. The
/// layer is built with the channel's origin: the token goes there only, and a DPoP proof
/// names it.
async fn health_client(endpoint: &str, cache: TokenCache) -> Result<Health, BoxError> {
    let channel = Channel::from_shared(endpoint.to_owned())?
        .timeout(Duration::from_secs(10))
        .connect()
        .await?;
    let channel = ServiceBuilder::new()
        .layer(GrpcAuthLayer::from_cache(cache, Scope::origin(endpoint)?))
        .service(channel);
    Ok(HealthClient::new(channel))
}

/// One call: `Health/Check` for the server as a whole; a success is SERVING.
async fn check(mut client: Health) -> Result<(), String> {
    let request = HealthCheckRequest {
        service: String::new(),
    };
    let response = client
        .check(request)
        .await
        .map_err(|status| format!("{:?}: {}", status.code(), status.message()))?;
    match response.into_inner().status() {
        ServingStatus::Serving => Ok(()),
        other => Err(format!("answered {}", other.as_str_name())),
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let settings = match Settings::from_lookup(|name| std::env::var(name).ok()) {
        Ok(settings) => settings,
        Err(message) => {
            eprintln!("grpc: {message}");
            return ExitCode::from(2);
        }
    };
    let requests = settings.load.requests;
    let result = run(settings, &mut io::stdout()).await;
    common::exit_status("grpc", result.map(|report| report.success(requests)))
}

// ===== the settings and the two targets =====

/// The mock's token lifetime: short, so that a few seconds span several.
const MOCK_TTL: Duration = Duration::from_secs(1);
const MOCK_PACE: Duration = Duration::from_millis(150);

/// The example's settings, from the environment (or, in tests, any lookup).
#[derive(Clone)]
pub(crate) struct Settings {
    tokens: TokenSettings,
    /// `None`: the embedded servers.
    endpoint: Option<String>,
    pub(crate) load: Load,
}

impl Settings {
    /// Reads the variables through `lookup` (empty counts as unset).
    pub(crate) fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        let settings = Settings {
            tokens: TokenSettings::from_lookup(&lookup)?,
            endpoint: oauth2_env::var(&lookup, "GRPC_ENDPOINT"),
            load: Load::from_lookup(&lookup)?,
        };
        match (&settings.endpoint, &settings.tokens.server) {
            (Some(_), None) => Err(
                "GRPC_ENDPOINT needs tokens from a real server: OAUTH2_ISSUER or OAUTH2_TOKEN_URL"
                    .to_owned(),
            ),
            (None, Some(_)) => Err("GRPC_ENDPOINT is required: the gRPC server to call".to_owned()),
            // The embedded server checks a token by presenting it to the authorization
            // server's API, which a DPoP-bound token would need a proof of its own for.
            (None, None) if settings.tokens.dpop() => Err(
                "OAUTH2_DPOP: the embedded gRPC server takes bearer tokens only; DPoP needs \
                 GRPC_ENDPOINT"
                    .to_owned(),
            ),
            _ => Ok(settings),
        }
    }

    /// What to send: against the embedded servers, calls paced so that the run spans several
    /// lifetimes.
    fn plan(&self) -> Plan {
        let pace = match self.endpoint {
            Some(_) => Duration::ZERO,
            None => MOCK_PACE,
        };
        self.load.plan(pace)
    }
}

/// Whichever the settings ask for.
pub(crate) async fn run(settings: Settings, out: &mut dyn Write) -> Result<Report, BoxError> {
    if settings.endpoint.is_some() {
        run_real(settings, out).await
    } else {
        run_mock(settings, out).await
    }
}

/// The session against the embedded authorization server and gRPC server, the client
/// registered with the authentication method the settings name.
pub(crate) async fn run_mock(
    mut settings: Settings,
    out: &mut dyn Write,
) -> Result<Report, BoxError> {
    let auth = MockAuthServer::builder()
        .register(settings.tokens.mock_client()?)
        .refresh_tokens(true)
        .token_ttl(MOCK_TTL)
        .start()
        .await?;
    let grpc = GrpcServer::start(&auth.uri_for("/api/grpc-token-check")).await?;
    writeln!(
        out,
        "tower-bearer grpc: {} Health/Check calls from {} tasks to a tonic server at {}, tokens \
         from a mock authorization server at {} ({})",
        settings.load.requests,
        settings.load.concurrency,
        grpc.endpoint(),
        auth.uri(),
        settings.tokens.auth_method,
    )?;
    writeln!(
        out,
        "(tokens live {} s; set GRPC_ENDPOINT and OAUTH2_ISSUER or OAUTH2_TOKEN_URL to call a \
         real server)",
        MOCK_TTL.as_secs()
    )?;
    let cache = token_cache(settings.tokens.builder(&TokenServer::Issuer(auth.issuer())))?;
    let client = health_client(&grpc.endpoint(), cache.clone()).await?;
    let report = session(&settings, client, cache, Some((&auth, &grpc)), out).await;
    grpc.stop().await?;
    auth.shutdown().await;
    report
}

/// The session against a real gRPC server, with tokens from a real authorization server.
pub(crate) async fn run_real(settings: Settings, out: &mut dyn Write) -> Result<Report, BoxError> {
    let endpoint = settings.endpoint.clone().ok_or("no GRPC_ENDPOINT")?;
    let server = settings
        .tokens
        .server
        .clone()
        .ok_or("no OAUTH2_ISSUER or OAUTH2_TOKEN_URL")?;
    writeln!(
        out,
        "tower-bearer grpc: {} Health/Check calls from {} tasks to {endpoint} with tokens from \
         {} ({}{})",
        settings.load.requests,
        settings.load.concurrency,
        server.url(),
        settings.tokens.auth_method,
        settings.tokens.dpop_note(),
    )?;
    let cache = token_cache(settings.tokens.builder(&server))?;
    let client = health_client(&endpoint, cache.clone()).await?;
    session(&settings, client, cache, None, out).await
}

// ===== the session =====

/// The progress line: `  1.0s    54 ok  0 failed  token #2  UNAUTHENTICATED retried 0`.
const PROGRESS: Progress = Progress {
    ok_width: 4,
    time_left: false,
    refusals: "UNAUTHENTICATED",
};

/// How it went.
#[derive(Debug, Default)]
pub(crate) struct Report {
    /// Calls answered SERVING.
    pub(crate) ok: u64,
    pub(crate) failed: u64,
    /// Tokens the cache obtained.
    pub(crate) tokens: u64,
    /// UNAUTHENTICATED answers to calls with the cache's token, and those sent again.
    pub(crate) unauthenticated: u64,
    pub(crate) retried: u64,
    /// What the embedded gRPC server saw (mock only): calls, and those it refused.
    pub(crate) revocations: u64,
    pub(crate) served: u64,
    pub(crate) refused: u64,
    /// Whether the servers were the embedded ones.
    mock: bool,
}

impl Report {
    pub(crate) fn success(&self, requests: usize) -> bool {
        self.failed == 0 && self.ok == requests as u64
    }

    fn summary(&self, finished: &Finished) -> Summary {
        let mut summary = Summary::new(finished, 17);
        let (ok, failed) = (self.ok, self.failed);
        summary.row("calls", format_args!("{ok} SERVING, {failed} failed"));
        summary.row("tokens", format_args!("{} obtained", self.tokens));
        let (refused, retried) = (self.unauthenticated, self.retried);
        summary.row(
            "UNAUTHENTICATED",
            format_args!("{refused} answered, {retried} recovered by a retry"),
        );
        summary.latency(finished);
        if self.mock {
            let (served, refused, revocations) = (self.served, self.refused, self.revocations);
            summary.row(
                "gRPC server",
                format_args!("{served} calls served, {refused} refused; {revocations} revocation"),
            );
        }
        summary.errors(finished);
        summary
    }
}

/// Runs the calls, printing progress and a summary to `out`; with the embedded servers,
/// revokes every token once, halfway through.
async fn session(
    settings: &Settings,
    client: Health,
    cache: TokenCache,
    mock: Option<(&MockAuthServer, &GrpcServer)>,
    out: &mut dyn Write,
) -> Result<Report, BoxError> {
    let calls = move |_| check(client.clone());
    let plan = settings.plan();
    let mut revocations = match mock {
        Some(_) => Revocations::at(MOCK_TTL, [plan.requests / 2]),
        None => Revocations::none(),
    };
    let revoke = |moment: &Moment| {
        let (auth, _) = mock?;
        if !revocations.due(moment) {
            return None;
        }
        auth.revoke_all();
        Some("the authorization server revoked every token".to_owned())
    };
    let finished = load::run(plan, calls, &[&cache], PROGRESS, revoke, out).await?;

    let stats = cache.stats();
    let mut report = Report {
        ok: finished.tally.ok(),
        failed: finished.tally.failed(),
        tokens: stats.total().succeeded,
        unauthenticated: stats.unauthorized,
        retried: stats.retried,
        revocations: revocations.made,
        mock: mock.is_some(),
        ..Report::default()
    };
    if let Some((_, grpc)) = mock {
        (report.served, report.refused) = grpc.counts();
    }
    report.summary(&finished).print(out)?;
    Ok(report)
}

// ===== the embedded gRPC server =====

pub(crate) mod grpc_server {
    //! A tonic server with `grpc.health.v1.Health` that asks the authorization server whether
    //! each call's token is good.

    use std::convert::Infallible;
    use std::future::Future;
    use std::net::SocketAddr;
    use std::pin::Pin;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::task::{Context, Poll};

    use bytes::Bytes;
    use http::header::AUTHORIZATION;
    use http::{Request, StatusCode, Uri};
    use http_body_util::Full;
    use hyper_util::client::legacy::Client;
    use hyper_util::client::legacy::connect::HttpConnector;
    use hyper_util::rt::TokioExecutor;
    use tokio::net::TcpListener;
    use tokio::sync::oneshot;
    use tokio_stream::wrappers::TcpListenerStream;
    use tonic::Status;
    use tonic::body::Body;
    use tonic::server::NamedService;
    use tonic::transport::Server;
    use tower::{BoxError, Service};

    /// tonic-health behind a token check that asks the authorization server, as a resource server
    /// that introspects its tokens would: a call whose token the authorization server does not
    /// take is answered UNAUTHENTICATED before it reaches the health service.
    pub(crate) struct GrpcServer {
        addr: SocketAddr,
        counts: Arc<ServerCounts>,
        stop: oneshot::Sender<()>,
        task: tokio::task::JoinHandle<Result<(), tonic::transport::Error>>,
    }

    #[derive(Default)]
    struct ServerCounts {
        served: AtomicU64,
        refused: AtomicU64,
    }

    impl GrpcServer {
        /// Starts the server on a free port of 127.0.0.1; it checks tokens at `check_url`.
        pub(crate) async fn start(check_url: &str) -> Result<GrpcServer, BoxError> {
            let check_uri = check_url.parse()?;
            let listener = TcpListener::bind("127.0.0.1:0").await?;
            let addr = listener.local_addr()?;
            let counts = Arc::new(ServerCounts::default());
            let (_, health) = tonic_health::server::health_reporter();
            let checked = TokenCheck {
                inner: health,
                check_uri,
                client: Client::builder(TokioExecutor::new()).build_http(),
                counts: counts.clone(),
            };
            let (stop, stopped) = oneshot::channel::<()>();
            let task = tokio::spawn(
                Server::builder()
                    .add_service(checked)
                    .serve_with_incoming_shutdown(TcpListenerStream::new(listener), async {
                        let _ = stopped.await;
                    }),
            );
            Ok(GrpcServer {
                addr,
                counts,
                stop,
                task,
            })
        }

        /// `http://127.0.0.1:PORT`.
        pub(crate) fn endpoint(&self) -> String {
            format!("http://{}", self.addr)
        }

        /// The calls it served, and those it refused.
        pub(crate) fn counts(&self) -> (u64, u64) {
            let counts = &self.counts;
            let load = |count: &AtomicU64| count.load(Ordering::Relaxed);
            (load(&counts.served), load(&counts.refused))
        }

        /// Stops it, and waits until it has.
        pub(crate) async fn stop(self) -> Result<(), BoxError> {
            let _ = self.stop.send(());
            self.task.await??;
            Ok(())
        }
    }

    #[derive(Clone)]
    struct TokenCheck<S> {
        inner: S,
        /// The authorization server's protected API: 200 for a good token.
        check_uri: Uri,
        client: Client<HttpConnector, Full<Bytes>>,
        counts: Arc<ServerCounts>,
    }

    impl<S: NamedService> NamedService for TokenCheck<S> {
        const NAME: &'static str = S::NAME;
    }

    impl<S> Service<http::Request<Body>> for TokenCheck<S>
    where
        S: Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>
            + Clone
            + Send
            + 'static,
        S::Future: Send,
    {
        type Response = http::Response<Body>;
        type Error = Infallible;
        type Future =
            Pin<Box<dyn Future<Output = Result<http::Response<Body>, Infallible>> + Send>>;

        fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
            self.inner.poll_ready(cx)
        }

        fn call(&mut self, request: http::Request<Body>) -> Self::Future {
            // The clone dance: the inner service driven ready goes with this call.
            let clone = self.inner.clone();
            let mut inner = std::mem::replace(&mut self.inner, clone);
            let (client, check_uri, counts) = (
                self.client.clone(),
                self.check_uri.clone(),
                self.counts.clone(),
            );
            Box::pin(async move {
                let token = request.headers().get(AUTHORIZATION).cloned();
                let good = match token {
                    None => false,
                    Some(token) => {
                        let check = Request::get(check_uri)
                            .header(AUTHORIZATION, token)
                            .body(Full::default())
                            .expect("a valid request");
                        matches!(client.request(check).await, Ok(r) if r.status() == StatusCode::OK)
                    }
                };
                if !good {
                    counts.refused.fetch_add(1, Ordering::Relaxed);
                    return Ok(Status::unauthenticated("the token is not valid").into_http());
                }
                counts.served.fetch_add(1, Ordering::Relaxed);
                inner.call(request).await
            })
        }
    }
}
