//! What the middleware tests share: a recording API, tokens, and a refresher the test answers.
#![allow(dead_code, unreachable_pub)]

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::AUTHORIZATION;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body::Body;
use http_body_util::{BodyExt, Full};
use tokio::sync::watch;
use tower::{BoxError, Service};
use tower_bearer::{ReplayBody, Token, TokenRequest};
use tower_test::mock;

pub mod answering_server;
pub mod dpop;
pub mod hostile;
pub mod oauth2;
#[cfg(feature = "server-tests")]
pub mod oidc_provider;
#[cfg(feature = "server-tests")]
pub mod python;
#[cfg(feature = "server-tests")]
pub mod redis_server;
#[cfg(feature = "server-tests")]
pub mod staged;

pub const HOUR: Duration = Duration::from_secs(3600);

pub fn token(access: &str, lifetime: Duration) -> Token {
    Token::bearer(access).unwrap().expires_in(lifetime)
}

pub fn get(uri: &str) -> Request<Full<Bytes>> {
    Request::get(uri).body(Full::new(Bytes::new())).unwrap()
}

pub fn post(uri: &str, body: &'static str) -> Request<Full<Bytes>> {
    Request::post(uri)
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .unwrap()
}

/// A refresher the test answers by hand.
pub type Refresher = mock::Mock<TokenRequest, Token>;
pub type RefreshHandle = mock::Handle<TokenRequest, Token>;

pub fn refresher() -> (Refresher, RefreshHandle) {
    mock::pair()
}

/// How long, in tokio's paused time, a test waits for what should come without anyone
/// answering: past every timer the cache sets (its refresh timeout, backoff and store lease,
/// at their defaults and in these tests), so that only a hang reaches it.
pub const PATIENCE: Duration = Duration::from_secs(10 * 60);

/// How many times a test's future may be woken before it completes: far more than any
/// request or token read needs, far fewer than a cache spinning reaches in a second.
pub const MOST_POLLS: u32 = 1_000;

/// `future`'s output, failing the test rather than hanging if it does not complete.
///
/// A broken cache hangs a test on the paused clock in one of two ways. It waits for something
/// that never comes: the runtime is idle, so the clock jumps to the timeout at once. Or it
/// spins, replacing a token it will not send with a refresher that answers at once: the
/// runtime is never idle, so the paused clock never moves and no timeout fires, but the
/// future is woken on every turn, and its polls are counted.
pub async fn within<F: Future>(future: F) -> F::Output {
    let mut future = std::pin::pin!(tokio::time::timeout(PATIENCE, future));
    let mut polls = 0;
    std::future::poll_fn(|cx| {
        polls += 1;
        assert!(
            polls <= MOST_POLLS,
            "woken {polls} times without completing: the cache is spinning"
        );
        future.as_mut().poll(cx)
    })
    .await
    .expect("still pending: the test would have hung here")
}

/// The next refresh the cache asks for, failing the test rather than hanging if none comes.
pub async fn next_refresh(handle: &mut RefreshHandle) -> (TokenRequest, mock::SendResponse<Token>) {
    tokio::time::timeout(PATIENCE, handle.next_request())
        .await
        .expect("the cache asked for no refresh")
        .expect("the refresher was dropped")
}

/// Answers the next refresh with `token`, and returns what was asked.
pub async fn answer(handle: &mut RefreshHandle, token: Token) -> TokenRequest {
    let (request, respond) = next_refresh(handle).await;
    respond.send_response(token);
    request
}

/// Whether the cache has asked for a refresh nobody has answered yet, without waiting.
pub fn refresh_asked(handle: &mut RefreshHandle) -> bool {
    let mut next = tokio_test::task::spawn(handle.next_request());
    // `None` means the refresher was dropped, which asks for nothing.
    matches!(next.poll(), Poll::Ready(Some(_)))
}

/// What the API saw of one request.
#[derive(Debug, Clone)]
pub struct Seen {
    pub authorization: Option<String>,
    pub body: Bytes,
    pub trailers: Option<HeaderMap>,
}

/// Whether the API refuses a request with this `Authorization` value.
type Rejects = dyn Fn(Option<&str>) -> bool + Send + Sync;

/// The answer the API gives a request it refuses.
type Refusal = dyn Fn() -> Response<Full<Bytes>> + Send + Sync;

/// A resource server: records every request, answers 401 (or the refusal it was given) to the
/// tokens `rejects` says, 200 to the others. While its gate is closed it holds every answer
/// back.
#[derive(Clone)]
pub struct Api {
    seen: Arc<Mutex<Vec<Seen>>>,
    rejects: Arc<Rejects>,
    refusal: Arc<Refusal>,
    gate: watch::Receiver<bool>,
    gate_tx: Arc<watch::Sender<bool>>,
}

impl Api {
    pub fn new(rejects: impl Fn(Option<&str>) -> bool + Send + Sync + 'static) -> Self {
        let (gate_tx, gate) = watch::channel(true);
        Api {
            seen: Arc::default(),
            rejects: Arc::new(rejects),
            refusal: Arc::new(|| {
                let mut response = Response::new(Full::new(Bytes::from_static(b"{}")));
                *response.status_mut() = StatusCode::UNAUTHORIZED;
                response
            }),
            gate,
            gate_tx: Arc::new(gate_tx),
        }
    }

    /// Refuses the token `bad` with the answer `refusal` makes.
    pub fn refusing(
        bad: &'static str,
        refusal: impl Fn() -> Response<Full<Bytes>> + Send + Sync + 'static,
    ) -> Self {
        Api {
            refusal: Arc::new(refusal),
            ..Api::rejecting(bad)
        }
    }

    /// Accepts any request.
    pub fn open() -> Self {
        Api::new(|_| false)
    }

    /// Rejects the token `bad`.
    pub fn rejecting(bad: &'static str) -> Self {
        Api::new(move |auth| auth == Some(&*format!("Bearer {bad}")))
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    pub fn tokens(&self) -> Vec<String> {
        self.seen()
            .into_iter()
            .map(|s| s.authorization.unwrap_or_default())
            .collect()
    }

    pub fn hold(&self) {
        self.gate_tx.send_replace(false);
    }

    pub fn release(&self) {
        self.gate_tx.send_replace(true);
    }
}

impl<B> Service<Request<ReplayBody<B>>> for Api
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<ReplayBody<B>>) -> Self::Future {
        let api = self.clone();
        Box::pin(async move {
            let authorization = request
                .headers()
                .get(AUTHORIZATION)
                .map(|v| v.to_str().unwrap().to_owned());
            let (body, trailers) = read_body(request.into_body()).await;
            api.seen.lock().unwrap().push(Seen {
                authorization: authorization.clone(),
                body,
                trailers,
            });
            let mut gate = api.gate.clone();
            let _ = gate.wait_for(|open| *open).await;
            if (api.rejects)(authorization.as_deref()) {
                return Ok((api.refusal)());
            }
            Ok(Response::new(Full::new(Bytes::from_static(b"{}"))))
        })
    }
}

/// Most frames a request body in these tests has: one that goes on past this is broken (a
/// replay that never ends, every frame ready at once, which no timeout interrupts), and fails
/// the test rather than spinning it.
pub const MOST_FRAMES: usize = 1_000;

/// A request body's bytes and trailers, read to its end.
pub async fn read_body<B>(body: B) -> (Bytes, Option<HeaderMap>)
where
    B: Body<Data = Bytes>,
    B::Error: std::fmt::Debug,
{
    let mut body = std::pin::pin!(body);
    let mut data = Vec::new();
    let mut trailers = None;
    for _ in 0..MOST_FRAMES {
        let Some(frame) = body.frame().await else {
            return (Bytes::from(data), trailers);
        };
        match frame.expect("body").into_data() {
            Ok(chunk) => data.extend_from_slice(&chunk),
            Err(frame) => trailers = frame.into_trailers().ok(),
        }
    }
    panic!("the body never ended: more than {MOST_FRAMES} frames");
}

/// Runs other tasks until `done` holds, failing the test rather than spinning forever.
pub async fn until(mut done: impl FnMut() -> bool) {
    for _ in 0..10_000 {
        if done() {
            return;
        }
        tokio::task::yield_now().await;
    }
    panic!("the condition never held");
}

/// How long a test on real time (real servers, other processes) waits for something it can
/// observe: far longer than it takes on a loaded machine, so that only what never happens
/// reaches it.
pub const REAL_PATIENCE: Duration = Duration::from_secs(30);

/// Polls `happened` every few milliseconds until it holds, failing the test with `what` if it
/// does not within `REAL_PATIENCE`: for a test on real time, where a sleep would be a guess
/// that `what` has happened by now, and a loaded machine makes the guess wrong.
pub async fn eventually<F: Future<Output = bool>>(what: &str, happened: impl FnMut() -> F) {
    poll_until(what, REAL_PATIENCE, Duration::from_millis(5), happened).await;
}

/// Polls `happened` every `every` until it holds, failing the test with `what` if it does not
/// within `patience`: [`eventually`] with a pace of its own, for a check that costs more than
/// a look (a new connection, a process).
pub async fn poll_until<F: Future<Output = bool>>(
    what: &str,
    patience: Duration,
    every: Duration,
    mut happened: impl FnMut() -> F,
) {
    let deadline = tokio::time::Instant::now() + patience;
    while !happened().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "never happened within {patience:?}: {what}"
        );
        tokio::time::sleep(every).await;
    }
}

// ===== what tracing logs, and what errors print =====

/// Everything a `tracing` subscriber wrote into it, for the secrets checks.
#[derive(Clone, Default)]
pub struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }

    /// A subscriber writing everything, down to TRACE, into this: every event, and every
    /// span as it opens and as it closes (with the fields recorded on it meanwhile).
    fn subscriber(&self) -> impl tracing::Subscriber + Send + Sync + use<> {
        use tracing_subscriber::fmt::format::FmtSpan;
        let writer = self.clone();
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_span_events(FmtSpan::NEW | FmtSpan::CLOSE)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish()
    }
}

/// Everything logged at TRACE on this thread until the guard drops: for a test on a
/// single-threaded runtime, whose refresh tasks log on its thread too, and which must not see
/// what parallel tests log.
pub fn capture_this_thread() -> (Captured, tracing::subscriber::DefaultGuard) {
    let captured = Captured::default();
    let guard = tracing::subscriber::set_default(captured.subscriber());
    (captured, guard)
}

/// Everything logged at TRACE in this test process, from every thread, from the first call on.
///
/// A process-wide subscriber: a multi-threaded runtime's tasks and hyper's log from threads a
/// per-thread one does not see, and tracing caches per-callsite interest across threads, so a
/// callsite first reached by a parallel test without a subscriber can stay silent under a
/// per-thread one. (A per-thread subscriber still takes precedence on its own thread.)
pub fn capture_globally() -> &'static Captured {
    static LOGS: std::sync::OnceLock<Captured> = std::sync::OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = Captured::default();
        tracing::subscriber::set_global_default(logs.subscriber())
            .expect("the only global subscriber");
        logs
    })
}

/// `Display` and `Debug` of an error and of every source under it.
pub fn describe(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = String::new();
    let mut next = Some(error);
    while let Some(error) = next {
        text.push_str(&format!("{error} / {error:?}\n"));
        next = error.source();
    }
    text
}

// ===== token stores =====

/// What every `TokenStore` promises about publishing: each publish on the current generation
/// makes the next one, and a slow replica's publish on an older generation is refused and
/// changes nothing. Leaves `second` (generation 2) stored; returns what `load` gives then.
pub async fn publish_by_generation(
    store: &dyn tower_bearer::store::TokenStore,
    first: &Token,
    second: &Token,
) -> tower_bearer::store::SharedToken {
    use tower_bearer::store::Publish;
    assert_eq!(
        store.publish(0, first).await.unwrap(),
        Publish::Published { generation: 1 }
    );
    assert_eq!(
        store.publish(1, second).await.unwrap(),
        Publish::Published { generation: 2 }
    );
    let stale = Token::bearer("stale").unwrap().expires_in(HOUR);
    assert_eq!(
        store.publish(1, &stale).await.unwrap(),
        Publish::Refused { current: 2 }
    );
    let current = store.load().await.unwrap().expect("a token is stored");
    assert_eq!(current.generation, 2);
    assert_eq!(
        current.token.expose_access_token(),
        second.expose_access_token()
    );
    current
}
