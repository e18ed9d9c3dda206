//! A full client stack: `Timeout` → `Retry` → `ConcurrencyLimit` → `BearerAuth` → hyper.
//!
//! ```text
//! cargo run --example stack
//! ```
//!
//! Against the embedded mock api.video, whose auth endpoint fails its first request with
//! 503, it sends 16 calls at once (12 lists, 4 creates). Every one fails at first for want of
//! a token; the retry policy sends each again once the token cache's backoff has passed, and
//! all 16 succeed with one login.
//!
//! Why the layers sit in this order:
//! - `Timeout` outermost bounds the whole call, retries and their waits included.
//! - `Retry` above `ConcurrencyLimit`, so that a request waiting to be retried holds no slot.
//! - `ConcurrencyLimit` above `BearerAuth`, so that at most 4 requests are in flight to the
//!   API, a 401's resend included.
//! - `BearerAuth` next to the client: it resends a request refused with 401 itself, once, with
//!   a new token; the retry policy never sees those.

use std::io::{self, Write};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::task::JoinSet;
use tokio::time::Sleep;
use tower::retry::Policy;
use tower::{BoxError, ServiceBuilder, ServiceExt};
use tower_bearer::{BearerAuthLayer, ReplayBody, TokenCache, TokenError, TokenErrorKind};
use tower_bearer_apivideo::ApiVideo;
use tower_bearer_mock::apivideo::{Failure, MockServer};

/// Builds the stack against a fresh mock and sends the 16 calls.
pub(crate) async fn run(out: &mut dyn Write) -> Result<Outcome, BoxError> {
    let server = MockServer::builder().api_key("stack-key").start().await?;
    // The auth server's first answer is a 503.
    server.fail_next_auth(1, Failure::Status(StatusCode::SERVICE_UNAVAILABLE));

    let client: Client<HttpConnector, ReplayBody<Full<Bytes>>> =
        Client::builder(TokioExecutor::new()).build_http();
    let provider = ApiVideo::with_base_uri(server.uri(), "stack-key", client.clone())?
        .timeout(Duration::from_secs(5));
    let scope = provider.scope();
    let cache = TokenCache::builder(provider)
        .backoff(Duration::from_millis(100), Duration::from_secs(5))
        .build();
    let policy = RetryPolicy::new(3);
    let api = ServiceBuilder::new()
        .timeout(Duration::from_secs(10))
        .retry(policy.clone())
        .concurrency_limit(4)
        .layer(BearerAuthLayer::from_cache(cache.clone(), scope))
        .service(client);

    // All at once; a success is a 2xx answer read to its end.
    let mut calls = JoinSet::new();
    for n in 0..16 {
        let (api, request) = (api.clone(), video_request(&server, n)?);
        calls.spawn(async move {
            let what = format!("{} {}", request.method(), request.uri().path());
            let result = async {
                let response = api.oneshot(request).await?;
                let status = response.status();
                response.into_body().collect().await?;
                Ok::<_, BoxError>(status)
            }
            .await;
            (what, result)
        });
    }
    let outcome = report(calls, &policy, &server, &cache, out).await;
    server.shutdown().await;
    outcome
}

#[tokio::main]
async fn main() -> ExitCode {
    match run(&mut io::stdout()).await {
        Ok(outcome) if outcome.failed == 0 => ExitCode::SUCCESS,
        Ok(_) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("stack: {error}");
            ExitCode::FAILURE
        }
    }
}

// ===== the calls and what they show =====

/// Call `n`: every fourth a create, the others lists.
fn video_request(server: &MockServer, n: usize) -> http::Result<Request<Full<Bytes>>> {
    if n % 4 == 3 {
        Request::post(server.uri_for("/videos"))
            .header(CONTENT_TYPE, "application/json")
            .body(Full::from(format!(r#"{{"title":"stack {n}"}}"#)))
    } else {
        Request::get(server.uri_for("/videos?pageSize=5")).body(Full::default())
    }
}

/// How the run went.
#[derive(Debug)]
pub(crate) struct Outcome {
    pub(crate) succeeded: usize,
    pub(crate) failed: usize,
    pub(crate) retries: u64,
    pub(crate) logins: u64,
}

/// Retries a request that was never sent (no token could be had), whatever its method, and an
/// idempotent one whose answer was a gateway error or whose connection failed.
#[derive(Clone, Debug)]
pub(crate) struct RetryPolicy {
    /// Retries left for this request (the policy is cloned per request).
    attempts_left: u32,
    /// Retries made, over all requests.
    retries: Arc<AtomicU64>,
}

/// The wait before a retry, unless the token cache says how long it is backing off.
const RETRY_WAIT: Duration = Duration::from_millis(200);

impl RetryPolicy {
    pub(crate) fn new(attempts: u32) -> Self {
        RetryPolicy {
            attempts_left: attempts,
            retries: Arc::default(),
        }
    }

    pub(crate) fn retries(&self) -> u64 {
        self.retries.load(Ordering::Relaxed)
    }
}

impl Policy<Request<Full<Bytes>>, Response<Incoming>, BoxError> for RetryPolicy {
    type Future = Sleep;

    fn retry(
        &mut self,
        request: &mut Request<Full<Bytes>>,
        result: &mut Result<Response<Incoming>, BoxError>,
    ) -> Option<Sleep> {
        if self.attempts_left == 0 {
            return None;
        }
        let idempotent = matches!(
            *request.method(),
            Method::GET | Method::HEAD | Method::PUT | Method::DELETE | Method::OPTIONS
        );
        let wait = match result {
            Ok(response) => match response.status() {
                StatusCode::BAD_GATEWAY
                | StatusCode::SERVICE_UNAVAILABLE
                | StatusCode::GATEWAY_TIMEOUT
                    if idempotent =>
                {
                    RETRY_WAIT
                }
                _ => return None,
            },
            // No token: the request was not sent, so even a POST may go again, once the
            // cache is ready to try the auth server again.
            Err(error) => match TokenError::find(&**error).map(TokenError::kind) {
                Some(TokenErrorKind::BackingOff { retry_in }) => retry_in + RETRY_WAIT / 10,
                Some(_) => RETRY_WAIT,
                None if idempotent => RETRY_WAIT,
                None => return None,
            },
        };
        self.attempts_left -= 1;
        self.retries.fetch_add(1, Ordering::Relaxed);
        Some(tokio::time::sleep(wait))
    }

    fn clone_request(&mut self, request: &Request<Full<Bytes>>) -> Option<Request<Full<Bytes>>> {
        // `Full<Bytes>` clones without copying; a streaming body could not be retried here.
        let mut clone = Request::new(request.body().clone());
        *clone.method_mut() = request.method().clone();
        *clone.uri_mut() = request.uri().clone();
        *clone.version_mut() = request.version();
        *clone.headers_mut() = request.headers().clone();
        Some(clone)
    }
}

/// Waits for the `calls`, printing each failure and then one line to `out`.
async fn report(
    mut calls: JoinSet<(String, Result<StatusCode, BoxError>)>,
    policy: &RetryPolicy,
    server: &MockServer,
    cache: &TokenCache,
    out: &mut dyn Write,
) -> Result<Outcome, BoxError> {
    let (mut succeeded, mut failed) = (0, 0);
    while let Some(joined) = calls.join_next().await {
        let (what, result) = joined?;
        match result {
            Ok(status) if status.is_success() => succeeded += 1,
            Ok(status) => {
                failed += 1;
                writeln!(out, "{what}: {status}")?;
            }
            Err(error) => {
                failed += 1;
                writeln!(out, "{what}: {error}")?;
            }
        }
    }
    let outcome = Outcome {
        succeeded,
        failed,
        retries: policy.retries(),
        logins: server.counters().api_key_logins,
    };
    let stats = cache.stats();
    writeln!(
        out,
        "{} of 16 calls succeeded, {} failed; the retry policy resent {} (the auth server's 503 \
         left them without a token); {} login, {} failed refresh",
        outcome.succeeded,
        outcome.failed,
        outcome.retries,
        outcome.logins,
        stats.total().failed,
    )?;
    Ok(outcome)
}
