//! OAuth 2.0 client credentials in front of an API, with tokens that look after themselves.
//!
//! ```text
//! cargo run --example oauth2
//! ```
//!
//! With no `OAUTH2_ISSUER` or `OAUTH2_TOKEN_URL`, it starts the embedded mock authorization
//! server (tokens live 1 s, and come with refresh tokens) and its protected API, and sends 200
//! calls from 8 tasks, 150 ms apart: about four token lifetimes, with the server revoking
//! every token twice in the middle. It prints a progress line each second and a summary
//! (calls ok and failed, token-endpoint calls by grant, 401s recovered), and exits 0 only if
//! every call succeeded.
//!
//! Against a real authorization server, the same from these variables (a contract: tests
//! and users depend on it; `examples/grpc.rs` reads the same ones, from
//! `examples/common/oauth2_env.rs`):
//!
//! | variable | meaning |
//! | --- | --- |
//! | `OAUTH2_ISSUER` or `OAUTH2_TOKEN_URL` | discovery from the issuer, or the token endpoint directly |
//! | `OAUTH2_CLIENT_ID`, `OAUTH2_CLIENT_SECRET` | the client |
//! | `OAUTH2_AUTH_METHOD` | `client_secret_basic` (default), `client_secret_post`, `private_key_jwt` |
//! | `OAUTH2_PRIVATE_KEY`, `OAUTH2_KEY_ID` | PEM file of the client's private key (EC P-256 or RSA), its `kid` |
//! | `OAUTH2_SCOPE`, `OAUTH2_AUDIENCE`, `OAUTH2_RESOURCE` | optional parameters (`OAUTH2_RESOURCE` may list several, space-separated) |
//! | `API_URL` | the protected URL each call GETs (must answer 2xx with a valid token) |
//! | `REQUESTS` (default 200), `CONCURRENCY` (default 8), `PACE_MS` (default 0) | how many calls, from how many tasks, with what pause between a task's calls |
//! | `OAUTH2_DPOP=1`, or `OAUTH2_DPOP_KEY` | DPoP-bound tokens (RFC 9449; build with `--features dpop`): a fresh ES256 key per run, or the key in this PEM file (EC P-256, Ed25519 or RSA) |
//!
//! ```text
//! OAUTH2_ISSUER=https://login.example.com/realms/acme OAUTH2_CLIENT_ID=reports \
//! OAUTH2_CLIENT_SECRET=… API_URL=https://api.example.com/reports cargo run --example oauth2
//! ```
//!
//! Against the mock, `OAUTH2_AUTH_METHOD`, `REQUESTS`, `CONCURRENCY`, `PACE_MS` and the DPoP
//! variables apply too (`PACE_MS` is 150 there unless set, so that the run spans several
//! lifetimes). With DPoP the mock requires proofs and its nonce at the token endpoint and the
//! API, and changes its nonce every second: the summary counts the nonce challenges met, each
//! recovered by one retry with the same token.
//!
//! ```text
//! OAUTH2_DPOP=1 cargo run --example oauth2 --features dpop
//! ```

use std::fmt::Write as _;
use std::io::{self, Write};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, Uri};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::task::JoinSet;
use tokio::time::{Instant, MissedTickBehavior, interval, sleep};
use tower::util::BoxCloneService;
use tower::{BoxError, ServiceBuilder, ServiceExt};
use tower_bearer::{ReplayBody, TokenCache};
use tower_bearer_mock::oauth2::MockAuthServer;

#[path = "common/oauth2_env.rs"]
mod oauth2_env;
#[path = "common/tally.rs"]
mod tally;
use oauth2_env::{Load, TokenServer, TokenSettings};
use tally::{Tally, chain, secs};

/// The mock's token lifetime: short, so that a few seconds span several.
const MOCK_TTL: Duration = Duration::from_secs(1);
const MOCK_PACE: Duration = Duration::from_millis(150);

/// The example's settings, from the environment (or, in tests, any lookup).
#[derive(Clone)]
pub(crate) struct Settings {
    tokens: TokenSettings,
    api_url: Option<String>,
    pub(crate) load: Load,
}

impl Settings {
    /// Reads the variables through `lookup` (empty counts as unset).
    pub(crate) fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        let settings = Settings {
            tokens: TokenSettings::from_lookup(&lookup)?,
            api_url: oauth2_env::var(&lookup, "API_URL"),
            load: Load::from_lookup(&lookup)?,
        };
        if settings.tokens.server.is_some() && settings.api_url.is_none() {
            return Err("API_URL is required: the protected URL each call GETs".to_owned());
        }
        Ok(settings)
    }

    /// Whether the tokens are DPoP-bound.
    pub(crate) fn dpop(&self) -> bool {
        self.tokens.dpop()
    }

    fn pace(&self) -> Duration {
        let default = if self.tokens.server.is_some() {
            Duration::ZERO
        } else {
            MOCK_PACE
        };
        self.load.pace_or(default)
    }
}

/// How it went.
#[derive(Debug, Default)]
pub(crate) struct Report {
    pub(crate) ok: u64,
    pub(crate) failed: u64,
    /// Token requests the provider sent, by grant.
    pub(crate) client_credentials: u64,
    pub(crate) refresh_token: u64,
    /// 401s to requests with the cache's token, and those sent again.
    pub(crate) unauthorized: u64,
    pub(crate) retried: u64,
    /// Requests sent again with the same DPoP token for the server's new nonce.
    pub(crate) nonce_retried: u64,
    /// What the mock saw (mock only).
    pub(crate) revocations: u64,
    pub(crate) reuses: u64,
    pub(crate) expired_sent: u64,
    /// DPoP nonce challenges by the token endpoint and by the API, nonce rotations, and
    /// proofs refused for another reason (mock only).
    pub(crate) token_nonce_challenges: u64,
    pub(crate) api_nonce_challenges: u64,
    pub(crate) nonce_rotations: u64,
    pub(crate) proofs_refused: u64,
}

impl Report {
    pub(crate) fn success(&self, requests: usize) -> bool {
        self.failed == 0 && self.ok == requests as u64
    }
}

// ===== the stack =====

type HttpClient = Client<HttpsConnector<HttpConnector>, ReplayBody<Full<Bytes>>>;
type Api = BoxCloneService<Request<Full<Bytes>>, Response<Incoming>, BoxError>;

fn http_client() -> HttpClient {
    let https = HttpsConnectorBuilder::new()
        .with_webpki_roots()
        .https_or_http()
        .enable_http1()
        .build();
    Client::builder(TokioExecutor::new()).build(https)
}

/// Counts the token requests the provider sends, by `grant_type`, for the summary: the
/// provider's client, wrapped.
#[derive(Default)]
struct GrantCounts {
    client_credentials: AtomicU64,
    refresh_token: AtomicU64,
}

type ProviderClient =
    BoxCloneService<Request<ReplayBody<Full<Bytes>>>, Response<Incoming>, BoxError>;

fn counting(client: HttpClient, counts: Arc<GrantCounts>) -> ProviderClient {
    let service = tower::service_fn(move |request: Request<ReplayBody<Full<Bytes>>>| {
        let (client, counts) = (client.clone(), counts.clone());
        async move {
            let (parts, body) = request.into_parts();
            let body = body.collect().await?.to_bytes();
            let grant = form_urlencoded::parse(&body)
                .find(|(name, _)| name == "grant_type")
                .map(|(_, value)| value.into_owned());
            match grant.as_deref() {
                Some("client_credentials") => {
                    counts.client_credentials.fetch_add(1, Ordering::Relaxed)
                }
                Some("refresh_token") => counts.refresh_token.fetch_add(1, Ordering::Relaxed),
                _ => 0,
            };
            let request = Request::from_parts(parts, ReplayBody::new(Full::new(body)));
            Ok::<_, BoxError>(client.request(request).await?)
        }
    });
    BoxCloneService::new(service)
}

/// The stack a user builds: a timeout around each call, bearer auth from the OAuth 2.0
/// provider (scoped to the API's origin), on one hyper client.
fn stack(
    settings: &Settings,
    server: &TokenServer,
    counts: Arc<GrantCounts>,
) -> Result<(Api, TokenCache), BoxError> {
    let client = http_client();
    let builder = settings.tokens.builder(server);
    let api_url: Uri = settings.api_url.as_deref().unwrap_or_default().parse()?;
    let auth = builder
        .build(counting(client.clone(), counts))?
        .into_layer(api_url)?;
    let cache = auth.cache().clone();
    let api = ServiceBuilder::new()
        .timeout(Duration::from_secs(10))
        .layer(auth)
        .service(client);
    Ok((BoxCloneService::new(api), cache))
}

// ===== the session =====

/// One call: a GET of the API URL; a success is a 2xx answer read to its end.
async fn call(api: Api, uri: Uri) -> Result<(), String> {
    let request = Request::get(uri)
        .body(Full::default())
        .expect("a valid request");
    let response = api.oneshot(request).await.map_err(|error| chain(&*error))?;
    let status = response.status();
    response
        .into_body()
        .collect()
        .await
        .map_err(|error| format!("reading the body: {error}"))?;
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("GET: {status}"))
    }
}

async fn task(api: Api, uri: Uri, id: usize, calls: usize, settings: Settings, tally: Arc<Tally>) {
    let pace = settings.pace();
    if !pace.is_zero() {
        // Tasks start spread over one pace, so calls arrive evenly.
        sleep(pace * id as u32 / settings.load.concurrency as u32).await;
    }
    let mut ticks = interval(pace.max(Duration::from_nanos(1)));
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    for _ in 0..calls {
        if !pace.is_zero() {
            ticks.tick().await;
        }
        let started = Instant::now();
        let result = call(api.clone(), uri.clone()).await;
        tally.record(started, result);
    }
}

/// Runs the calls, printing progress to `out`; with a mock `mock`, revokes every token twice,
/// once a third and once two thirds of the way through.
async fn session(
    settings: &Settings,
    server: &TokenServer,
    mock: Option<&MockAuthServer>,
    out: &mut dyn Write,
) -> Result<Report, BoxError> {
    let counts = Arc::new(GrantCounts::default());
    let (api, cache) = stack(settings, server, counts.clone())?;
    let uri: Uri = settings.api_url.as_deref().unwrap_or_default().parse()?;
    let tally = Arc::new(Tally::default());
    let started = Instant::now();
    let mut tasks = JoinSet::new();
    for id in 0..settings.load.concurrency {
        let calls = settings.load.calls_of(id);
        tasks.spawn(task(
            api.clone(),
            uri.clone(),
            id,
            calls,
            settings.clone(),
            tally.clone(),
        ));
    }

    let mut progress = interval(Duration::from_secs(1));
    progress.tick().await;
    let mut watch = interval(Duration::from_millis(10));
    let mut report = Report::default();
    let mut revocations_due = if mock.is_some() { 2 } else { 0 };
    // With DPoP, the mock's nonce changes once a second: each change costs the requests that
    // meet it one retry, with the same token.
    let mut nonce_rotation = interval(Duration::from_secs(1));
    nonce_rotation.tick().await;
    let rotate_nonces = mock.is_some() && settings.dpop();
    loop {
        tokio::select! {
            _ = nonce_rotation.tick(), if rotate_nonces => {
                if let Some(mock) = mock {
                    mock.rotate_dpop_nonce();
                    report.nonce_rotations += 1;
                }
            }
            joined = tasks.join_next() => match joined {
                Some(result) => result?,
                None => break,
            },
            _ = progress.tick() => {
                writeln!(out, "{}", progress_line(started, &tally, &cache))?;
            }
            _ = watch.tick(), if revocations_due > 0 => {
                let done = tally.ok() + tally.failed();
                let due_at = settings.load.requests as u64 * (3 - revocations_due) / 3;
                // A 401 replaces only a token past its minimum age (a tenth of its life), and a
                // revocation while a refresh is in flight is another story: revoke when the
                // current token is well into its life.
                let stats = cache.stats();
                let settled = !stats.refreshing
                    && stats.age.is_some_and(|age| age >= MOCK_TTL / 4)
                    && stats.expires_in.is_some_and(|left| left >= MOCK_TTL / 3);
                if done >= due_at && settled {
                    if let Some(mock) = mock {
                        mock.revoke_all();
                    }
                    revocations_due -= 1;
                    report.revocations += 1;
                    writeln!(out, "{:>5.1}s  the server revoked every token", secs(started))?;
                }
            }
        }
    }
    let elapsed = started.elapsed();
    writeln!(out, "{}", progress_line(started, &tally, &cache))?;

    report.ok = tally.ok();
    report.failed = tally.failed();
    report.client_credentials = counts.client_credentials.load(Ordering::Relaxed);
    report.refresh_token = counts.refresh_token.load(Ordering::Relaxed);
    let stats = cache.stats();
    report.unauthorized = stats.unauthorized;
    report.retried = stats.retried;
    report.nonce_retried = stats.nonce_retried;
    if let Some(mock) = mock {
        let counters = mock.counters();
        report.reuses = counters.refresh_token_reuses;
        report.expired_sent = counters.expired_token_requests;
        {
            report.token_nonce_challenges = counters.token_nonce_challenges;
            report.api_nonce_challenges = counters.resource_nonce_challenges;
            let refused = counters.dpop_refused;
            report.proofs_refused = refused.missing_proof
                + refused.malformed
                + refused.signature
                + refused.method
                + refused.uri
                + refused.issued_at
                + refused.replayed
                + refused.access_token_hash
                + refused.key_mismatch
                + refused.bearer_scheme;
        }
    }

    let mut summary = String::new();
    writeln!(summary, "done in {:.1} s", elapsed.as_secs_f64())?;
    writeln!(
        summary,
        "  calls           {} ok, {} failed",
        report.ok, report.failed
    )?;
    writeln!(
        summary,
        "  token endpoint  {} client_credentials, {} refresh_token requests ({} tokens)",
        report.client_credentials,
        report.refresh_token,
        stats.total().succeeded
    )?;
    writeln!(
        summary,
        "  401s            {} answered, {} recovered by a retry",
        report.unauthorized, report.retried
    )?;
    if settings.dpop() {
        writeln!(
            summary,
            "  dpop            {} sent again with the server's new nonce (same token)",
            report.nonce_retried
        )?;
    }
    writeln!(summary, "  latency         {}", tally.latency())?;
    if mock.is_some() {
        writeln!(
            summary,
            "  server          {} revocations, {} refresh tokens reused, {} calls with an expired token",
            report.revocations, report.reuses, report.expired_sent
        )?;
        if settings.dpop() {
            writeln!(
                summary,
                "  server dpop     {} nonce rotations; nonce challenges: {} at the token endpoint, {} at the API; {} proofs refused",
                report.nonce_rotations,
                report.token_nonce_challenges,
                report.api_nonce_challenges,
                report.proofs_refused
            )?;
        }
    }
    for error in tally.first_errors() {
        writeln!(summary, "  error: {error}")?;
    }
    out.write_all(summary.as_bytes())?;
    Ok(report)
}

fn progress_line(started: Instant, tally: &Tally, cache: &TokenCache) -> String {
    let stats = cache.stats();
    format!(
        "{:>5.1}s  {:>4} ok  {} failed  token #{}  401s retried {}",
        secs(started),
        tally.ok(),
        tally.failed(),
        stats.generation,
        stats.retried,
    )
}

// ===== the two targets =====

/// The session against the embedded mock authorization server and its API, the client
/// registered with the authentication method the settings name.
pub(crate) async fn run_mock(
    mut settings: Settings,
    out: &mut dyn Write,
) -> Result<Report, BoxError> {
    let client = settings.tokens.mock_client()?;
    let server = MockAuthServer::builder()
        .register(client)
        .refresh_tokens(true)
        .token_ttl(MOCK_TTL);
    // With DPoP, the mock asks for proofs everywhere, with its nonce.
    let server = server
        .require_dpop(settings.dpop())
        .require_dpop_nonce(settings.dpop());
    let server = server.start().await?;
    settings.api_url = Some(server.uri_for("/api/items"));
    writeln!(
        out,
        "tower-bearer oauth2: {} calls from {} tasks against a mock authorization server at {} \
         ({}{})",
        settings.load.requests,
        settings.load.concurrency,
        server.uri(),
        settings.tokens.auth_method,
        settings.tokens.dpop_note(),
    )?;
    writeln!(
        out,
        "(tokens live {} s; set OAUTH2_ISSUER or OAUTH2_TOKEN_URL to run against a real server)",
        MOCK_TTL.as_secs()
    )?;
    let report = session(
        &settings,
        &TokenServer::Issuer(server.issuer()),
        Some(&server),
        out,
    )
    .await;
    server.shutdown().await;
    report
}

/// The session against a real authorization server and API.
pub(crate) async fn run_real(settings: Settings, out: &mut dyn Write) -> Result<Report, BoxError> {
    let Some(server) = settings.tokens.server.clone() else {
        return Err("no OAUTH2_ISSUER or OAUTH2_TOKEN_URL".into());
    };
    writeln!(
        out,
        "tower-bearer oauth2: {} calls from {} tasks to {} with tokens from {} ({}{})",
        settings.load.requests,
        settings.load.concurrency,
        settings.api_url.as_deref().unwrap_or_default(),
        server.url(),
        settings.tokens.auth_method,
        settings.tokens.dpop_note(),
    )?;
    session(&settings, &server, None, out).await
}

/// Whichever the settings ask for.
pub(crate) async fn run(settings: Settings, out: &mut dyn Write) -> Result<Report, BoxError> {
    if settings.tokens.server.is_some() {
        run_real(settings, out).await
    } else {
        run_mock(settings, out).await
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let settings = match Settings::from_lookup(|name| std::env::var(name).ok()) {
        Ok(settings) => settings,
        Err(message) => {
            eprintln!("oauth2: {message}");
            return ExitCode::from(2);
        }
    };
    let requests = settings.load.requests;
    match run(settings, &mut io::stdout()).await {
        Ok(report) if report.success(requests) => ExitCode::SUCCESS,
        Ok(_) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("oauth2: {}", chain(&*error));
            ExitCode::FAILURE
        }
    }
}
