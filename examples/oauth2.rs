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
//! | `OAUTH2_DPOP=1`, or `OAUTH2_DPOP_KEY` | DPoP-bound tokens (RFC 9449): a fresh ES256 key per run, or the key in this PEM file (EC P-256, Ed25519 or RSA) |
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
//! OAUTH2_DPOP=1 cargo run --example oauth2
//! ```
//!
//! With `METRICS_ADDR=127.0.0.1:9000`, the cache's metrics are served as Prometheus text at
//! `http://127.0.0.1:9000/metrics` while it runs, and for `METRICS_LINGER_S` seconds after the
//! summary (default 0).

use std::io::{self, Write};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, Uri};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use tower::util::BoxCloneService;
use tower::{BoxError, ServiceBuilder, ServiceExt};
use tower_bearer::{ReplayBody, TokenCache};
use tower_bearer_mock::oauth2::MockAuthServer;
use tower_bearer_oauth2::OAuth2Builder;

mod common;
use common::Api;
use common::load::{self, Finished, Moment, Plan, Progress, Revocations};
use common::oauth2_env::{self, Load, TokenServer, TokenSettings};
use common::summary::Summary;

/// The stack a user builds: a timeout around each call, bearer auth from the OAuth 2.0
/// provider, scoped to the API's origin, on one hyper client. `provider` is
/// `OAuth2::builder()` with what the variables say (`.issuer(…)` or `.token_endpoint(…)`,
/// `.client_id(…)`, `.client_secret(…)`, …); its token requests go through `counting`, for
/// the summary's count of grants.
fn stack(
    provider: OAuth2Builder,
    api_url: &str,
    grants: Arc<GrantCounts>,
) -> Result<(Api, TokenCache), BoxError> {
    let client = common::https_client::<ReplayBody<Full<Bytes>>>();
    let auth = provider
        .build(counting(client.clone(), grants))?
        .into_layer(api_url)?;
    let cache = auth.cache().clone();
    let api = ServiceBuilder::new()
        .timeout(Duration::from_secs(10))
        .layer(auth)
        .service(client);
    Ok((BoxCloneService::new(api), cache))
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
    let exporter = match common::metrics::from_env() {
        Ok(exporter) => exporter,
        Err(error) => return common::exit_status("oauth2", Err(error)),
    };
    let mut out = io::stdout();
    if let Some(exporter) = &exporter {
        let _ = exporter.announce(&mut out);
    }
    let requests = settings.load.requests;
    let result = run(settings, &mut out).await;
    if let Some(exporter) = &exporter {
        exporter.linger(&mut out).await;
    }
    common::exit_status("oauth2", result.map(|report| report.success(requests)))
}

// ===== the settings and the two targets =====

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

    /// What to send: against the mock, calls paced so that the run spans several lifetimes.
    fn plan(&self) -> Plan {
        let pace = match self.tokens.server {
            Some(_) => Duration::ZERO,
            None => MOCK_PACE,
        };
        self.load.plan(pace)
    }
}

/// Whichever the settings ask for.
pub(crate) async fn run(settings: Settings, out: &mut dyn Write) -> Result<Report, BoxError> {
    if settings.tokens.server.is_some() {
        run_real(settings, out).await
    } else {
        run_mock(settings, out).await
    }
}

/// The session against the embedded mock authorization server and its API, the client
/// registered with the authentication method the settings name.
pub(crate) async fn run_mock(
    mut settings: Settings,
    out: &mut dyn Write,
) -> Result<Report, BoxError> {
    let client = settings.tokens.mock_client()?;
    // With DPoP, the mock asks for proofs everywhere, with its nonce.
    let server = MockAuthServer::builder()
        .register(client)
        .refresh_tokens(true)
        .token_ttl(MOCK_TTL)
        .require_dpop(settings.dpop())
        .require_dpop_nonce(settings.dpop())
        .start()
        .await?;
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
    let issuer = TokenServer::Issuer(server.issuer());
    let report = session(&settings, &issuer, Some(&server), out).await;
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

// ===== the session =====

/// The progress line: `  1.0s    53 ok  0 failed  token #2  401s retried 0`.
const PROGRESS: Progress = Progress {
    ok_width: 4,
    time_left: false,
    refusals: "401s",
};

/// How it went.
#[derive(Debug, Default)]
pub(crate) struct Report {
    pub(crate) ok: u64,
    pub(crate) failed: u64,
    /// Token requests the provider sent, by grant.
    pub(crate) client_credentials: u64,
    pub(crate) refresh_token: u64,
    /// Tokens the cache obtained.
    pub(crate) tokens: u64,
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
    /// Whether the tokens were DPoP-bound, and the server the mock.
    dpop: bool,
    mock: bool,
}

impl Report {
    pub(crate) fn success(&self, requests: usize) -> bool {
        self.failed == 0 && self.ok == requests as u64
    }

    fn summary(&self, finished: &Finished) -> Summary {
        let mut summary = Summary::new(finished, 16);
        let (ok, failed) = (self.ok, self.failed);
        summary.row("calls", format_args!("{ok} ok, {failed} failed"));
        let (credentials, refresh, tokens) =
            (self.client_credentials, self.refresh_token, self.tokens);
        summary.row(
            "token endpoint",
            format_args!(
                "{credentials} client_credentials, {refresh} refresh_token requests \
                 ({tokens} tokens)"
            ),
        );
        let (unauthorized, retried) = (self.unauthorized, self.retried);
        summary.row(
            "401s",
            format_args!("{unauthorized} answered, {retried} recovered by a retry"),
        );
        if self.dpop {
            let again = self.nonce_retried;
            summary.row(
                "dpop",
                format_args!("{again} sent again with the server's new nonce (same token)"),
            );
        }
        summary.latency(finished);
        if self.mock {
            let (revocations, reuses, expired) = (self.revocations, self.reuses, self.expired_sent);
            summary.row(
                "server",
                format_args!(
                    "{revocations} revocations, {reuses} refresh tokens reused, {expired} calls \
                     with an expired token"
                ),
            );
        }
        if self.mock && self.dpop {
            let (rotations, at_token, at_api, refused) = (
                self.nonce_rotations,
                self.token_nonce_challenges,
                self.api_nonce_challenges,
                self.proofs_refused,
            );
            summary.row(
                "server dpop",
                format_args!(
                    "{rotations} nonce rotations; nonce challenges: {at_token} at the token \
                     endpoint, {at_api} at the API; {refused} proofs refused"
                ),
            );
        }
        summary.errors(finished);
        summary
    }
}

/// Runs the calls, printing progress and a summary to `out`. With the mock, it revokes every
/// token twice, once a third and once two thirds of the way through, and with DPoP changes
/// its nonce every second: each change costs the calls that meet it one retry, with the same
/// token.
async fn session(
    settings: &Settings,
    server: &TokenServer,
    mock: Option<&MockAuthServer>,
    out: &mut dyn Write,
) -> Result<Report, BoxError> {
    let grants = Arc::new(GrantCounts::default());
    let api_url = settings.api_url.as_deref().unwrap_or_default();
    let (api, cache) = stack(settings.tokens.builder(server), api_url, grants.clone())?;
    let uri: Uri = api_url.parse()?;
    let calls = move |_| common::get(api.clone(), uri.clone());

    let plan = settings.plan();
    let mut revocations = match mock {
        Some(_) => Revocations::at(MOCK_TTL, [plan.requests / 3, plan.requests * 2 / 3]),
        None => Revocations::none(),
    };
    let mut report = Report {
        dpop: settings.dpop(),
        mock: mock.is_some(),
        ..Report::default()
    };
    let watch = |moment: &Moment| {
        let mock = mock?;
        if report.dpop && report.nonce_rotations < moment.elapsed.as_secs() {
            mock.rotate_dpop_nonce();
            report.nonce_rotations += 1;
        }
        if !revocations.due(moment) {
            return None;
        }
        mock.revoke_all();
        Some("the server revoked every token".to_owned())
    };
    let finished = load::run(plan, calls, &[&cache], PROGRESS, watch, out).await?;

    report.ok = finished.tally.ok();
    report.failed = finished.tally.failed();
    report.revocations = revocations.made;
    report.client_credentials = grants.client_credentials.load(Ordering::Relaxed);
    report.refresh_token = grants.refresh_token.load(Ordering::Relaxed);
    let stats = cache.stats();
    report.tokens = stats.total().succeeded;
    report.unauthorized = stats.unauthorized;
    report.retried = stats.retried;
    report.nonce_retried = stats.nonce_retried;
    if let Some(mock) = mock {
        let counters = mock.counters();
        report.reuses = counters.refresh_token_reuses;
        report.expired_sent = counters.expired_token_requests;
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
    report.summary(&finished).print(out)?;
    Ok(report)
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

fn counting<C>(client: C, counts: Arc<GrantCounts>) -> ProviderClient
where
    C: tower::Service<Request<ReplayBody<Full<Bytes>>>, Response = Response<Incoming>>
        + Clone
        + Send
        + 'static,
    C::Error: Into<BoxError>,
    C::Future: Send,
{
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
            client.oneshot(request).await.map_err(Into::into)
        }
    });
    BoxCloneService::new(service)
}
