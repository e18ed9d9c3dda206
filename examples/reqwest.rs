//! The quick start, with reqwest: api.video calls through a reqwest-middleware client whose
//! tokens look after themselves.
//!
//! ```text
//! cargo run --example reqwest --features reqwest
//! ```
//!
//! It starts the embedded mock api.video with tokens that live 2 s, and sends 240 list and
//! create calls from 8 concurrent tasks over about 4.5 s through reqwest-tracing,
//! reqwest-retry and `BearerAuthMiddleware`, in that order: more than two token lifetimes,
//! and one server-side revocation of every token. The provider gets its tokens through the
//! same reqwest client. It prints progress each second and a summary, and exits 0 only if
//! every call succeeded.
//!
//! The quickstart example runs the same kind of session through a tower stack, and against
//! the real API when `APIVIDEO_API_KEY` is set; this one needs no TLS, so it stays on the
//! mock.

use std::fmt::Write as _;
use std::io::{self, Write};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use reqwest_middleware::{ClientBuilder, ClientWithMiddleware};
use reqwest_retry::RetryTransientMiddleware;
use reqwest_retry::policies::ExponentialBackoff;
use reqwest_tracing::TracingMiddleware;
use tokio::task::JoinSet;
use tokio::time::{Instant, MissedTickBehavior, interval, sleep};
use tower::BoxError;
use tower_bearer::TokenCache;
use tower_bearer::reqwest::BearerAuthMiddleware;
use tower_bearer_apivideo::ApiVideo;
use tower_bearer_mock::apivideo::MockServer;
use tower_bearer_provider::reqwest::ClientService;

#[path = "common/tally.rs"]
mod tally;
use tally::{Tally, chain, secs};

/// The mock's token lifetime: short, so that a few seconds span several.
const TTL: Duration = Duration::from_secs(2);
const API_KEY: &str = "reqwest-example-api-key";
const TASKS: usize = 8;
const CALLS_PER_TASK: usize = 30;
const PACE: Duration = Duration::from_millis(150);

/// How it went.
#[derive(Debug, Default)]
pub(crate) struct Report {
    pub(crate) ok: u64,
    pub(crate) failed: u64,
    /// API-key logins and refresh-token grants the server saw.
    pub(crate) logins: u64,
    pub(crate) refreshes: u64,
    /// Requests sent again after a 401.
    pub(crate) retried: u64,
    /// Requests the server saw with an expired token: should be 0.
    pub(crate) expired_sent: u64,
    pub(crate) revoked: bool,
}

impl Report {
    pub(crate) fn success(&self) -> bool {
        self.failed == 0 && self.ok == (TASKS * CALLS_PER_TASK) as u64
    }
}

/// The stack a reqwest user builds: tracing around everything, transient failures retried,
/// then the token, last, so that every attempt reads the cache. One reqwest client for the
/// API calls and the provider's logins.
fn stack(base_uri: &str) -> Result<(ClientWithMiddleware, TokenCache), BoxError> {
    let http = reqwest::Client::new();
    let api = ApiVideo::with_base_uri(base_uri, API_KEY, ClientService::new(http.clone()))?
        .timeout(Duration::from_secs(5));
    // `into_layer` scopes the token to api.video's origin; the middleware keeps the scope.
    let auth = BearerAuthMiddleware::from(api.into_layer());
    let cache = auth.cache().clone();
    let retry = ExponentialBackoff::builder()
        .retry_bounds(Duration::from_millis(50), Duration::from_secs(1))
        .build_with_max_retries(3);
    let client = ClientBuilder::new(http)
        .with(TracingMiddleware::default())
        .with(RetryTransientMiddleware::new_with_policy(retry))
        .with(auth)
        .build();
    Ok((client, cache))
}

/// One call; a success is a 2xx answer read to its end.
async fn call(request: reqwest_middleware::RequestBuilder, what: &str) -> Result<(), String> {
    let response = request
        .send()
        .await
        .map_err(|error| format!("{what}: {}", chain(&error)))?;
    let status = response.status();
    response
        .bytes()
        .await
        .map_err(|error| format!("{what}: reading the body: {error}"))?;
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("{what}: {status}"))
    }
}

/// One task's calls: lists, and every fourth call a create.
async fn task(client: ClientWithMiddleware, base: Arc<str>, id: usize, tally: Arc<Tally>) {
    // Tasks start spread over one pace, so calls arrive evenly.
    sleep(PACE * id as u32 / TASKS as u32).await;
    let mut pace = interval(PACE);
    pace.set_missed_tick_behavior(MissedTickBehavior::Delay);
    for n in 0..CALLS_PER_TASK {
        pace.tick().await;
        let started = Instant::now();
        let result = if (id + n) % 4 == 0 {
            let title = format!(r#"{{"title":"tower-bearer reqwest {id}-{n}"}}"#);
            let create = client
                .post(format!("{base}/videos"))
                .header(http::header::CONTENT_TYPE, "application/json")
                .body(title);
            call(create, "POST /videos").await
        } else {
            let list = client.get(format!("{base}/videos?currentPage=1&pageSize=10"));
            call(list, "GET /videos").await
        };
        tally.record(started, result);
    }
}

/// The session against the embedded mock, printing progress to `out`.
pub(crate) async fn run(out: &mut dyn Write) -> Result<Report, BoxError> {
    let server = MockServer::builder()
        .api_key(API_KEY)
        .token_ttl(TTL)
        .start()
        .await?;
    writeln!(
        out,
        "tower-bearer with reqwest: {} calls from {TASKS} tasks against a mock api.video at {}",
        TASKS * CALLS_PER_TASK,
        server.uri()
    )?;
    writeln!(
        out,
        "(tokens live {} s; reqwest-tracing, reqwest-retry, then BearerAuthMiddleware)",
        TTL.as_secs()
    )?;
    let report = session(&server, out).await;
    server.shutdown().await;
    report
}

async fn session(server: &MockServer, out: &mut dyn Write) -> Result<Report, BoxError> {
    let base_uri = server.uri();
    let (client, cache) = stack(&base_uri)?;
    let base: Arc<str> = base_uri.into();
    let tally = Arc::new(Tally::default());
    let started = Instant::now();
    let mut tasks = JoinSet::new();
    for id in 0..TASKS {
        tasks.spawn(task(client.clone(), base.clone(), id, tally.clone()));
    }

    let mut progress = interval(Duration::from_secs(1));
    progress.tick().await;
    let mut watch = interval(Duration::from_millis(10));
    let mut report = Report::default();
    loop {
        tokio::select! {
            joined = tasks.join_next() => match joined {
                Some(result) => result?,
                None => break,
            },
            _ = progress.tick() => writeln!(out, "{}", progress_line(started, &tally, &cache))?,
            _ = watch.tick(), if !report.revoked && started.elapsed() >= TTL + TTL / 3 => {
                // A 401 only replaces a token older than its minimum age (a tenth of its
                // life), and a revocation while a refresh is in flight would be a different
                // story: wait until the current token is well into its life.
                let stats = cache.stats();
                let left = stats.expires_in.unwrap_or_default();
                if !stats.refreshing && left <= TTL * 4 / 5 && left >= TTL / 3 {
                    server.revoke_all();
                    report.revoked = true;
                    writeln!(out, "{:>5.1}s  the server revoked every token", secs(started))?;
                }
            }
        }
    }
    let elapsed = started.elapsed();
    writeln!(out, "{}", progress_line(started, &tally, &cache))?;

    report.ok = tally.ok();
    report.failed = tally.failed();
    let stats = cache.stats();
    report.retried = stats.retried;
    let counters = server.counters();
    report.logins = counters.api_key_logins;
    report.refreshes = counters.refreshes;
    report.expired_sent = counters.expired_token_requests;

    let tokens: Vec<String> = stats
        .refreshes_by_reason()
        .map(|(reason, counts)| format!("{reason} {}", counts.succeeded))
        .collect();

    let mut summary = String::new();
    writeln!(summary, "done in {:.1} s", elapsed.as_secs_f64())?;
    writeln!(
        summary,
        "  requests      {} ok, {} failed",
        report.ok, report.failed
    )?;
    writeln!(
        summary,
        "  auth server   {} logins with the API key, {} refresh-token grants",
        report.logins, report.refreshes
    )?;
    writeln!(
        summary,
        "  tokens        {} obtained ({})",
        stats.total().succeeded,
        tokens.join(", ")
    )?;
    writeln!(
        summary,
        "  401s          {} answered, {} recovered by a retry",
        stats.unauthorized, report.retried
    )?;
    writeln!(summary, "  latency       {}", tally.latency())?;
    writeln!(
        summary,
        "  sent with an expired token: {}",
        report.expired_sent
    )?;
    for error in tally.first_errors() {
        writeln!(summary, "  error: {error}")?;
    }
    out.write_all(summary.as_bytes())?;
    Ok(report)
}

fn progress_line(started: Instant, tally: &Tally, cache: &TokenCache) -> String {
    let stats = cache.stats();
    format!(
        "{:>5.1}s  {:>3} ok  {} failed  token #{} ({:.1} s left)  401s retried {}",
        secs(started),
        tally.ok(),
        tally.failed(),
        stats.generation,
        stats.expires_in.unwrap_or_default().as_secs_f64(),
        stats.retried,
    )
}

#[tokio::main]
async fn main() -> ExitCode {
    match run(&mut io::stdout()).await {
        Ok(report) if report.success() => ExitCode::SUCCESS,
        Ok(_) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("reqwest example: {error}");
            ExitCode::FAILURE
        }
    }
}
