//! The quick start: a client session against api.video, with tokens that look after
//! themselves.
//!
//! ```text
//! cargo run --example quickstart
//! ```
//!
//! With no environment it starts the embedded mock api.video with tokens that live 2 s, and
//! sends 320 list and create calls from 8 concurrent tasks over about 6 s: three token
//! lifetimes, and one server-side revocation of every token. It prints progress each second
//! and a summary, and exits 0 only if every call succeeded.
//!
//! ```text
//! APIVIDEO_API_KEY=… [APIVIDEO_BASE_URL=https://sandbox.api.video] cargo run --example quickstart
//! ```
//!
//! runs a smaller session of the same calls (40, 10 of them creates) against the real API
//! over HTTPS, the sandbox unless `APIVIDEO_BASE_URL` says otherwise, then deletes every
//! video it created.

use std::fmt::Write as _;
use std::io::{self, Write};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{Method, Request, Response};
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
use tower_bearer_apivideo::{ApiVideo, SANDBOX};
use tower_bearer_mock::apivideo::MockServer;

#[path = "common/tally.rs"]
mod tally;
use tally::{Tally, chain, lock, secs};

/// The mock's token lifetime: short, so that a few seconds span several.
const MOCK_TTL: Duration = Duration::from_secs(2);
const MOCK_API_KEY: &str = "quickstart-api-key";

/// What one session sends.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Plan {
    /// Concurrent tasks.
    pub(crate) tasks: usize,
    /// Calls each task makes, one every `pace`; every fourth is a create, the others lists.
    pub(crate) calls_per_task: usize,
    pub(crate) pace: Duration,
}

/// Against the mock: 320 calls over about 6 s, three 2 s token lifetimes.
pub(crate) const MOCK_PLAN: Plan = Plan {
    tasks: 8,
    calls_per_task: 40,
    pace: Duration::from_millis(150),
};

/// Against the real API: 40 calls, 10 videos created and deleted again.
const REAL_PLAN: Plan = Plan {
    tasks: 4,
    calls_per_task: 10,
    pace: Duration::from_millis(250),
};

/// How it went.
#[derive(Debug, Default)]
pub(crate) struct Report {
    pub(crate) ok: u64,
    pub(crate) failed: u64,
    /// Videos created.
    pub(crate) created: usize,
    /// Of those, the ones that could not be deleted again (real API only).
    pub(crate) left_behind: Vec<String>,
    /// API-key logins and refresh-token grants the server saw (mock only).
    pub(crate) logins: u64,
    pub(crate) refreshes: u64,
    /// Requests sent again after a 401.
    pub(crate) retried: u64,
    /// Requests the server saw with an expired token (mock only): should be 0.
    pub(crate) expired_sent: u64,
    pub(crate) revoked: bool,
}

impl Report {
    pub(crate) fn success(&self) -> bool {
        self.failed == 0 && self.ok > 0 && self.left_behind.is_empty()
    }
}

// ===== the stack =====

/// The client everything goes through: HTTPS for the real API, plain HTTP for the mock.
type HttpClient = Client<HttpsConnector<HttpConnector>, ReplayBody<Full<Bytes>>>;

/// The API as the session calls it: a clone per call.
type Api = BoxCloneService<Request<Full<Bytes>>, Response<Incoming>, BoxError>;

fn http_client() -> HttpClient {
    let https = HttpsConnectorBuilder::new()
        .with_webpki_roots()
        .https_or_http()
        .enable_http1()
        .build();
    Client::builder(TokioExecutor::new()).build(https)
}

/// The stack a user builds: a timeout around each call, bearer auth from api.video's token
/// provider (with its own timeout), on one hyper client.
fn stack(base_uri: &str, api_key: String) -> Result<(Api, TokenCache), BoxError> {
    let client = http_client();
    let auth = ApiVideo::with_base_uri(base_uri, api_key, client.clone())?
        .timeout(Duration::from_secs(5))
        .into_layer();
    let cache = auth.cache().clone();
    let api = ServiceBuilder::new()
        .timeout(Duration::from_secs(10))
        .layer(auth)
        .service(client);
    Ok((BoxCloneService::new(api), cache))
}

// ===== the session =====

/// The ids of the videos the tasks created, deleted again at the end on the real API.
type Created = Arc<Mutex<Vec<String>>>;

fn request(method: Method, uri: String, body: Option<String>) -> Request<Full<Bytes>> {
    let mut request = Request::builder().method(method).uri(uri);
    if body.is_some() {
        request = request.header(CONTENT_TYPE, "application/json");
    }
    request
        .body(body.map(Full::from).unwrap_or_default())
        .expect("a valid request")
}

/// One call; a success is a 2xx answer read to its end.
async fn call(api: Api, request: Request<Full<Bytes>>) -> Result<Bytes, String> {
    let what = format!("{} {}", request.method(), request.uri().path());
    let response = api
        .oneshot(request)
        .await
        .map_err(|error| format!("{what}: {}", chain(&*error)))?;
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|error| format!("{what}: reading the body: {error}"))?
        .to_bytes();
    if status.is_success() {
        Ok(body)
    } else {
        Err(format!("{what}: {status}"))
    }
}

/// One task's calls: lists, and every fourth call a create.
async fn task(
    api: Api,
    base: Arc<str>,
    id: usize,
    plan: Plan,
    tally: Arc<Tally>,
    created: Created,
) {
    // Tasks start spread over one pace, so calls arrive evenly.
    sleep(plan.pace * id as u32 / plan.tasks as u32).await;
    let mut pace = interval(plan.pace);
    pace.set_missed_tick_behavior(MissedTickBehavior::Delay);
    for n in 0..plan.calls_per_task {
        pace.tick().await;
        let create = (id + n) % 4 == 0;
        let request = if create {
            let title = format!(r#"{{"title":"tower-bearer quickstart {id}-{n}"}}"#);
            request(Method::POST, format!("{base}/videos"), Some(title))
        } else {
            let uri = format!("{base}/videos?currentPage=1&pageSize=10");
            request(Method::GET, uri, None)
        };
        let started = Instant::now();
        let result = match call(api.clone(), request).await {
            Ok(body) if create => match video_id(&body) {
                Some(id) => {
                    lock(&created).push(id);
                    Ok(())
                }
                None => Err("POST /videos: no videoId in the answer".to_owned()),
            },
            Ok(_) => Ok(()),
            Err(error) => Err(error),
        };
        tally.record(started, result);
    }
}

fn video_id(body: &[u8]) -> Option<String> {
    let video: serde_json::Value = serde_json::from_slice(body).ok()?;
    Some(video.get("videoId")?.as_str()?.to_owned())
}

/// Runs `plan` against `base_uri`, printing progress to `out`; with a mock `server`, revokes
/// every token once, in the second token's lifetime.
async fn session(
    base_uri: &str,
    api_key: String,
    plan: Plan,
    server: Option<&MockServer>,
    out: &mut dyn Write,
) -> Result<Report, BoxError> {
    let (api, cache) = stack(base_uri, api_key)?;
    let base: Arc<str> = base_uri.trim_end_matches('/').into();
    let tally = Arc::new(Tally::default());
    let created = Created::default();
    let started = Instant::now();
    let mut tasks = JoinSet::new();
    for id in 0..plan.tasks {
        let (tally, created) = (tally.clone(), created.clone());
        tasks.spawn(task(api.clone(), base.clone(), id, plan, tally, created));
    }

    let mut progress = interval(Duration::from_secs(1));
    progress.tick().await;
    let mut watch = interval(Duration::from_millis(10));
    let mut revoke_pending = server.is_some();
    let mut report = Report::default();
    loop {
        tokio::select! {
            joined = tasks.join_next() => match joined {
                Some(result) => result?,
                None => break,
            },
            _ = progress.tick() => {
                writeln!(out, "{}", progress_line(started, &tally, &cache))?;
            }
            _ = watch.tick(), if revoke_pending && started.elapsed() >= MOCK_TTL + MOCK_TTL / 3 => {
                // A 401 only replaces a token older than its minimum age (a tenth of its
                // life), and a revocation while a refresh is in flight would be a different
                // story: wait until the current token is well into its life.
                let stats = cache.stats();
                let left = stats.expires_in.unwrap_or_default();
                if !stats.refreshing && left <= MOCK_TTL * 4 / 5 && left >= MOCK_TTL / 3 {
                    if let Some(server) = server {
                        server.revoke_all();
                    }
                    revoke_pending = false;
                    report.revoked = true;
                    writeln!(out, "{:>5.1}s  the server revoked every token", secs(started))?;
                }
            }
        }
    }
    let elapsed = started.elapsed();
    writeln!(out, "{}", progress_line(started, &tally, &cache))?;

    // Clean up after ourselves on the real API (the mock's videos go with its process).
    let created = std::mem::take(&mut *lock(&created));
    report.created = created.len();
    if server.is_none() {
        for id in created {
            let delete = request(Method::DELETE, format!("{base}/videos/{id}"), None);
            if let Err(error) = call(api.clone(), delete).await {
                tally.error(error);
                report.left_behind.push(id);
            }
        }
    }

    report.ok = tally.ok();
    report.failed = tally.failed();
    let stats = cache.stats();
    report.retried = stats.retried;
    if let Some(server) = server {
        let counters = server.counters();
        report.logins = counters.api_key_logins;
        report.refreshes = counters.refreshes;
        report.expired_sent = counters.expired_token_requests;
    }

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
    if server.is_some() {
        writeln!(
            summary,
            "  auth server   {} logins with the API key, {} refresh-token grants",
            report.logins, report.refreshes
        )?;
    }
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
    if server.is_some() {
        writeln!(
            summary,
            "  sent with an expired token: {}",
            report.expired_sent
        )?;
    } else {
        writeln!(
            summary,
            "  videos        {} created, {} deleted again",
            report.created,
            report.created - report.left_behind.len()
        )?;
    }
    for error in tally.first_errors() {
        writeln!(summary, "  error: {error}")?;
    }
    for id in &report.left_behind {
        writeln!(summary, "  not deleted: {id}")?;
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

// ===== the two targets =====

/// The session against the embedded mock.
pub(crate) async fn run_mock(out: &mut dyn Write) -> Result<Report, BoxError> {
    let server = MockServer::builder()
        .api_key(MOCK_API_KEY)
        .token_ttl(MOCK_TTL)
        .start()
        .await?;
    writeln!(
        out,
        "tower-bearer quickstart: {} calls from {} tasks against a mock api.video at {}",
        MOCK_PLAN.tasks * MOCK_PLAN.calls_per_task,
        MOCK_PLAN.tasks,
        server.uri()
    )?;
    writeln!(
        out,
        "(tokens live {} s; set APIVIDEO_API_KEY to run against the real API)",
        MOCK_TTL.as_secs()
    )?;
    let report = session(
        &server.uri().to_string(),
        MOCK_API_KEY.to_owned(),
        MOCK_PLAN,
        Some(&server),
        out,
    )
    .await;
    server.shutdown().await;
    report
}

/// The session against the real API (or anything at `base_uri` that speaks it).
pub(crate) async fn run_real(
    api_key: String,
    base_uri: String,
    out: &mut dyn Write,
) -> Result<Report, BoxError> {
    writeln!(
        out,
        "tower-bearer quickstart: {} calls from {} tasks against {base_uri}",
        REAL_PLAN.tasks * REAL_PLAN.calls_per_task,
        REAL_PLAN.tasks,
    )?;
    session(&base_uri, api_key, REAL_PLAN, None, out).await
}

#[tokio::main]
async fn main() -> ExitCode {
    let mut out = io::stdout();
    let result = match std::env::var("APIVIDEO_API_KEY") {
        Ok(key) if !key.is_empty() => {
            let base = std::env::var("APIVIDEO_BASE_URL").unwrap_or_else(|_| SANDBOX.to_owned());
            run_real(key, base, &mut out).await
        }
        _ => run_mock(&mut out).await,
    };
    match result {
        Ok(report) if report.success() => ExitCode::SUCCESS,
        Ok(_) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("quickstart: {error}");
            ExitCode::FAILURE
        }
    }
}
