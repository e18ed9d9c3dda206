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
//!
//! With `METRICS_ADDR=127.0.0.1:9000`, the cache's metrics are served as Prometheus text at
//! `http://127.0.0.1:9000/metrics` while it runs, and for `METRICS_LINGER_S` seconds after the
//! summary (default 0).

use std::io::{self, Write};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{Method, Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use tower::util::BoxCloneService;
use tower::{BoxError, ServiceBuilder, ServiceExt};
use tower_bearer::{ReplayBody, TokenCache};
use tower_bearer_apivideo::{ApiVideo, SANDBOX};
use tower_bearer_mock::apivideo::MockServer;

mod common;
use common::apivideo::{self, Report};
use common::load::{Call, Plan};
use common::tally::{chain, lock};

/// The API as the session calls it: a clone per call.
type Api = BoxCloneService<Request<Full<Bytes>>, Response<Incoming>, BoxError>;

/// The stack a user builds: a timeout around each call, bearer auth from api.video's token
/// provider (with its own timeout), on one hyper client: HTTPS for the real API, plain HTTP
/// for the mock. Its body is a `ReplayBody`, so that a call refused with 401 can go again.
fn stack(base_uri: &str, api_key: String) -> Result<(Api, TokenCache), BoxError> {
    let client = common::https_client::<ReplayBody<Full<Bytes>>>();
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

#[tokio::main]
async fn main() -> ExitCode {
    let mut out = io::stdout();
    let exporter = match common::metrics::from_env() {
        Ok(exporter) => exporter,
        Err(error) => return common::exit_status("quickstart", Err(error)),
    };
    if let Some(exporter) = &exporter {
        let _ = exporter.announce(&mut out);
    }
    let result = match std::env::var("APIVIDEO_API_KEY") {
        Ok(key) if !key.is_empty() => {
            let base = std::env::var("APIVIDEO_BASE_URL").unwrap_or_else(|_| SANDBOX.to_owned());
            run_real(key, base, &mut out).await
        }
        _ => run_mock(&mut out).await,
    };
    if let Some(exporter) = &exporter {
        exporter.linger(&mut out).await;
    }
    common::exit_status("quickstart", result.map(|report| report.success()))
}

// ===== the two targets =====

/// The mock's token lifetime: short, so that a few seconds span several.
const MOCK_TTL: Duration = Duration::from_secs(2);
const MOCK_API_KEY: &str = "quickstart-api-key";

/// Against the mock: 320 calls from 8 tasks over about 6 s, three 2 s token lifetimes.
pub(crate) const MOCK_PLAN: Plan = Plan {
    requests: 320,
    tasks: 8,
    pace: Duration::from_millis(150),
};

/// Against the real API: 40 calls, 10 videos created and deleted again.
const REAL_PLAN: Plan = Plan {
    requests: 40,
    tasks: 4,
    pace: Duration::from_millis(250),
};

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
        MOCK_PLAN.requests,
        MOCK_PLAN.tasks,
        server.uri()
    )?;
    writeln!(
        out,
        "(tokens live {} s; set APIVIDEO_API_KEY to run against the real API)",
        MOCK_TTL.as_secs()
    )?;
    let report = session(
        &server.uri(),
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
        REAL_PLAN.requests, REAL_PLAN.tasks,
    )?;
    session(&base_uri, api_key, REAL_PLAN, None, out).await
}

// ===== the session =====

/// The ids of the videos the calls created, deleted again at the end on the real API.
type Created = Arc<Mutex<Vec<String>>>;

/// Runs `plan` against `base_uri`, printing progress and a summary to `out`; with the mock
/// `server`, which revokes every token once.
async fn session(
    base_uri: &str,
    api_key: String,
    plan: Plan,
    server: Option<&MockServer>,
    out: &mut dyn Write,
) -> Result<Report, BoxError> {
    let (api, cache) = stack(base_uri, api_key)?;
    let base: Arc<str> = base_uri.trim_end_matches('/').into();
    let created = Created::default();
    let calls = {
        let (api, base, created) = (api.clone(), base.clone(), created.clone());
        move |call: Call| video_call(api.clone(), base.clone(), call, created.clone())
    };
    let mock = server.map(|server| (server, MOCK_TTL));
    let (mut report, finished) = apivideo::session(plan, calls, &cache, mock, out).await?;

    // Clean up after ourselves on the real API (the mock's videos go with its process).
    let created = std::mem::take(&mut *lock(&created));
    report.created = created.len();
    if server.is_none() {
        for id in created {
            let delete = request(Method::DELETE, format!("{base}/videos/{id}"), None);
            if let Err(error) = call(api.clone(), delete).await {
                finished.tally.error(error);
                report.left_behind.push(id);
            }
        }
    }

    let mut summary = report.summary(&finished, &cache.stats());
    if server.is_none() {
        let (created, deleted) = (report.created, report.created - report.left_behind.len());
        summary.row(
            "videos",
            format_args!("{created} created, {deleted} deleted again"),
        );
    }
    summary.errors(&finished);
    for id in &report.left_behind {
        summary.line(format_args!("not deleted: {id}"));
    }
    summary.print(out)?;
    Ok(report)
}

/// Call `n` of task `task`: every fourth a create, whose video is kept to be deleted, the
/// others lists.
async fn video_call(api: Api, base: Arc<str>, at: Call, created: Created) -> Result<(), String> {
    let Call { task, n } = at;
    if (task + n) % 4 != 0 {
        let uri = format!("{base}/videos?currentPage=1&pageSize=10");
        return call(api, request(Method::GET, uri, None)).await.map(drop);
    }
    let title = format!(r#"{{"title":"tower-bearer quickstart {task}-{n}"}}"#);
    let create = request(Method::POST, format!("{base}/videos"), Some(title));
    let body = call(api, create).await?;
    let id = video_id(&body).ok_or("POST /videos: no videoId in the answer")?;
    lock(&created).push(id);
    Ok(())
}

fn request(method: Method, uri: String, body: Option<String>) -> Request<Full<Bytes>> {
    let mut request = Request::builder().method(method).uri(uri);
    if body.is_some() {
        request = request.header(CONTENT_TYPE, "application/json");
    }
    request
        .body(body.map(Full::from).unwrap_or_default())
        .expect("a valid request")
}

fn video_id(body: &[u8]) -> Option<String> {
    let video: serde_json::Value = serde_json::from_slice(body).ok()?;
    Some(video.get("videoId")?.as_str()?.to_owned())
}
