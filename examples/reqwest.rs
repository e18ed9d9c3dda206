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

use std::io::{self, Write};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use reqwest_middleware::{ClientBuilder, ClientWithMiddleware, RequestBuilder};
use reqwest_retry::RetryTransientMiddleware;
use reqwest_retry::policies::ExponentialBackoff;
use reqwest_tracing::TracingMiddleware;
use tower::BoxError;
use tower_bearer::TokenCache;
use tower_bearer::reqwest::BearerAuthMiddleware;
use tower_bearer_apivideo::ApiVideo;
use tower_bearer_mock::apivideo::MockServer;
use tower_bearer_provider::reqwest::ClientService;

mod common;
use common::apivideo::{self, Report};
use common::load::{Call, Plan};
use common::tally::chain;

/// The stack a reqwest user builds: tracing around everything, transient failures retried,
/// then the token, last, so that every attempt reads the cache. The provider's logins go
/// through a client of their own that follows no redirect, as a provider never does.
fn stack(base_uri: &str) -> Result<(ClientWithMiddleware, TokenCache), BoxError> {
    let http = reqwest::Client::new();
    let logins = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let api = ApiVideo::with_base_uri(base_uri, API_KEY, ClientService::new(logins))?
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
async fn call(request: RequestBuilder, what: &str) -> Result<(), String> {
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

#[tokio::main]
async fn main() -> ExitCode {
    let result = run(&mut io::stdout()).await;
    common::exit_status("reqwest example", result.map(|report| report.success()))
}

// ===== the session =====

/// The mock's token lifetime: short, so that a few seconds span several.
const TTL: Duration = Duration::from_secs(2);
const API_KEY: &str = "reqwest-example-api-key";
/// 240 calls from 8 tasks over about 4.5 s.
const PLAN: Plan = Plan {
    requests: 240,
    tasks: 8,
    pace: Duration::from_millis(150),
};

/// The session against the embedded mock, printing progress and a summary to `out`.
pub(crate) async fn run(out: &mut dyn Write) -> Result<Report, BoxError> {
    let server = MockServer::builder()
        .api_key(API_KEY)
        .token_ttl(TTL)
        .start()
        .await?;
    writeln!(
        out,
        "tower-bearer with reqwest: {} calls from {} tasks against a mock api.video at {}",
        PLAN.requests,
        PLAN.tasks,
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
    let (client, cache) = stack(&server.uri())?;
    let base: Arc<str> = server.uri().into();
    let calls = move |call: Call| video_call(client.clone(), base.clone(), call);
    let (report, finished) =
        apivideo::session(PLAN, calls, &cache, Some((server, TTL)), out).await?;
    let mut summary = report.summary(&finished, &cache.stats());
    summary.errors(&finished);
    summary.print(out)?;
    Ok(report)
}

/// Call `n` of task `task`: every fourth a create, the others lists.
async fn video_call(client: ClientWithMiddleware, base: Arc<str>, at: Call) -> Result<(), String> {
    let Call { task, n } = at;
    if (task + n) % 4 != 0 {
        let list = client.get(format!("{base}/videos?currentPage=1&pageSize=10"));
        return call(list, "GET /videos").await;
    }
    let title = format!(r#"{{"title":"tower-bearer reqwest {task}-{n}"}}"#);
    let create = client
        .post(format!("{base}/videos"))
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(title);
    call(create, "POST /videos").await
}
