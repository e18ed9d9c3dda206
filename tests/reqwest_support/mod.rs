//! What the reqwest tests share: a recording server on loopback, a middleware that sits below
//! the one under test to see what it sent, and the api.video provider over reqwest.
#![allow(dead_code, unreachable_pub)]

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE};
use http::{Extensions, Method, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use reqwest_middleware::{Middleware, Next};
use tokio::net::TcpListener;
use tokio::sync::{Barrier, watch};
use tower::BoxError;
use tower_bearer::{Refresher, Token, TokenCache, TokenRequest};
use tower_bearer_apivideo::ApiVideo;
use tower_bearer_mock::apivideo::MockServer;
use tower_bearer_provider::reqwest::ClientService;

pub const KEY: &str = "reqwest-tests-api-key";
pub const HOUR: Duration = Duration::from_secs(3600);

// ===== a recording server =====

/// One request, as a server saw it.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: Method,
    /// Path and query.
    pub target: String,
    pub authorization: Option<String>,
    /// The `DPoP` proof header.
    pub dpop: Option<String>,
    pub content_type: Option<String>,
    pub body: Bytes,
}

type Answer =
    dyn Fn(Seen) -> Pin<Box<dyn Future<Output = Response<Full<Bytes>>> + Send>> + Send + Sync;

/// A hyper server on 127.0.0.1 that records every request and answers as it is told. It
/// serves until the test's runtime ends.
#[derive(Clone)]
pub struct Server {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Server {
    /// Answers each request with what `answer` makes of it.
    pub async fn start(
        answer: impl Fn(&Seen) -> Response<Full<Bytes>> + Send + Sync + 'static,
    ) -> Server {
        let answer = Arc::new(answer);
        Server::start_async(move |seen| {
            let response = answer(&seen);
            async move { response }
        })
        .await
    }

    /// Answers each request with what `answer` makes of it, asynchronously (a proxy).
    pub async fn start_async<F, Fut>(answer: F) -> Server
    where
        F: Fn(Seen) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Response<Full<Bytes>>> + Send + 'static,
    {
        let answer: Arc<Answer> = Arc::new(move |seen| Box::pin(answer(seen)));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (answer, log) = (answer.clone(), log.clone());
                let handler = service_fn(move |request: hyper::Request<Incoming>| {
                    let (answer, log) = (answer.clone(), log.clone());
                    async move {
                        let (parts, body) = request.into_parts();
                        let header = |name| {
                            parts
                                .headers
                                .get(name)
                                .map(|v: &http::HeaderValue| v.to_str().unwrap().to_owned())
                        };
                        let seen = Seen {
                            method: parts.method.clone(),
                            target: parts.uri.path_and_query().unwrap().to_string(),
                            authorization: header(AUTHORIZATION),
                            dpop: header(http::HeaderName::from_static("dpop")),
                            content_type: header(CONTENT_TYPE),
                            body: body.collect().await.unwrap().to_bytes(),
                        };
                        lock(&log).push(seen.clone());
                        Ok::<_, Infallible>(answer(seen).await)
                    }
                });
                tokio::spawn(http1::Builder::new().serve_connection(TokioIo::new(stream), handler));
            }
        });
        Server { addr, seen }
    }

    pub fn url(&self, target: &str) -> String {
        format!("http://{}{target}", self.addr)
    }

    /// `http://127.0.0.1:PORT`.
    pub fn origin(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn seen(&self) -> Vec<Seen> {
        lock(&self.seen).clone()
    }
}

pub fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

pub fn answer(status: StatusCode) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::default());
    *response.status_mut() = status;
    response
}

/// 200 for `Bearer <good>`, else 401 with `WWW-Authenticate: Bearer error="invalid_token"`.
pub fn accepts(good: &'static str) -> impl Fn(&Seen) -> Response<Full<Bytes>> + Send + Sync {
    move |seen| match seen.authorization.as_deref() {
        Some(auth) if auth.strip_prefix("Bearer ") == Some(good) => answer(StatusCode::OK),
        _ => {
            let mut refused = answer(StatusCode::UNAUTHORIZED);
            refused.headers_mut().insert(
                http::header::WWW_AUTHENTICATE,
                http::HeaderValue::from_static(r#"Bearer error="invalid_token""#),
            );
            refused
        }
    }
}

// ===== refreshers =====

/// A refresher that issues `t1`, `t2`, … (each valid for an hour), and how many it issued.
pub fn numbered_tokens() -> (impl Refresher + Clone, Arc<AtomicUsize>) {
    let issued = Arc::new(AtomicUsize::new(0));
    let count = issued.clone();
    let refresher = tower::service_fn(move |_: TokenRequest| {
        let n = count.fetch_add(1, Ordering::SeqCst) + 1;
        async move { Ok::<_, BoxError>(Token::bearer(format!("t{n}"))?.expires_in(HOUR)) }
    });
    (refresher, issued)
}

/// A cache that believes any 401, however young the token.
pub fn believing(refresher: impl Refresher) -> TokenCache {
    TokenCache::builder(refresher)
        .min_token_age(Duration::ZERO)
        .build()
}

/// The api.video provider for `server`, sending through reqwest.
pub fn apivideo(server: &MockServer) -> ApiVideo<ClientService> {
    ApiVideo::with_base_uri(
        server.uri(),
        KEY,
        ClientService::new(reqwest::Client::new()),
    )
    .unwrap()
    .timeout(Duration::from_secs(5))
}

pub async fn mock() -> MockServer {
    MockServer::builder().api_key(KEY).start().await.unwrap()
}

// ===== below the middleware =====

/// A middleware to put below the one under test: it records the `Authorization` each request
/// left with (and whether the value was marked sensitive); it can hold the next requests until
/// all of them have come, so that they are all sent before any answer is read, and hold
/// answers back, so that the middleware reads them in an order the test chooses.
#[derive(Clone, Default)]
pub struct Below {
    inner: Arc<BelowInner>,
}

#[derive(Default)]
struct BelowInner {
    sent: Mutex<Vec<(Option<String>, bool)>>,
    hold: Mutex<Option<(usize, Arc<Barrier>)>>,
    answers: Mutex<Option<HeldAnswers>>,
}

/// Answers held back until `release` says so.
struct HeldAnswers {
    /// How many more answers to hold.
    left: usize,
    /// Let the first answer through (and set `release` on a request with another token).
    first_through: Option<watch::Sender<bool>>,
    /// The token of the first answer let through.
    token: Option<String>,
    release: watch::Receiver<bool>,
}

impl Below {
    /// The next `n` requests wait for each other.
    pub fn hold(&self, n: usize) {
        self.hold_at(n, Arc::new(Barrier::new(n)));
    }

    /// The next `n` requests wait at `barrier`, which others may wait at too.
    pub fn hold_at(&self, n: usize, barrier: Arc<Barrier>) {
        *lock(&self.inner.hold) = Some((n, barrier));
    }

    /// Of the next `n` answers, the first goes up at once; the others wait until a request
    /// with another token has been sent (the first one's retry, once the middleware has a new
    /// token), so that they report their refusal after the replacement is in the cache.
    pub fn stagger_answers(&self, n: usize) {
        let (release, released) = watch::channel(false);
        *lock(&self.inner.answers) = Some(HeldAnswers {
            left: n,
            first_through: Some(release),
            token: None,
            release: released,
        });
    }

    /// The next answer waits until `release` is true.
    pub fn hold_answer_until(&self, release: watch::Receiver<bool>) {
        *lock(&self.inner.answers) = Some(HeldAnswers {
            left: 1,
            first_through: None,
            token: None,
            release,
        });
    }

    /// Each request sent: its `Authorization`, and whether that value was sensitive.
    pub fn sent(&self) -> Vec<(Option<String>, bool)> {
        lock(&self.inner.sent).clone()
    }

    /// A barrier to wait at, if this request is one of those held.
    fn barrier(&self) -> Option<Arc<Barrier>> {
        let mut hold = lock(&self.inner.hold);
        let (left, barrier) = hold.as_mut()?;
        let barrier = barrier.clone();
        *left -= 1;
        if *left == 0 {
            *hold = None;
        }
        Some(barrier)
    }

    /// A request with `authorization` is being sent: the retry that releases staggered answers?
    fn sending(&self, authorization: Option<&str>) {
        let held = lock(&self.inner.answers);
        if let Some(HeldAnswers {
            first_through: Some(release),
            token: Some(token),
            ..
        }) = held.as_ref()
        {
            if authorization != Some(token.as_str()) {
                release.send_replace(true);
            }
        }
    }

    /// What the answer to a request with `authorization` waits for, if it is held.
    fn answer_waits(&self, authorization: Option<&str>) -> Option<watch::Receiver<bool>> {
        let mut answers = lock(&self.inner.answers);
        let held = answers.as_mut().filter(|held| held.left > 0)?;
        if held.first_through.is_some() {
            match &held.token {
                None => {
                    held.token = authorization.map(str::to_owned);
                    held.left -= 1;
                    return None;
                }
                // A retry's answer.
                Some(token) if authorization != Some(token.as_str()) => return None,
                Some(_) => {}
            }
        }
        held.left -= 1;
        Some(held.release.clone())
    }
}

#[async_trait::async_trait]
impl Middleware for Below {
    async fn handle(
        &self,
        request: reqwest::Request,
        extensions: &mut Extensions,
        next: Next<'_>,
    ) -> reqwest_middleware::Result<reqwest::Response> {
        let authorization = request.headers().get(AUTHORIZATION);
        let record = (
            authorization.map(|v| v.to_str().unwrap().to_owned()),
            authorization.is_some_and(|v| v.is_sensitive()),
        );
        let authorization = record.0.clone();
        lock(&self.inner.sent).push(record);
        self.sending(authorization.as_deref());
        if let Some(barrier) = self.barrier() {
            barrier.wait().await;
        }
        let response = next.run(request, extensions).await;
        if let Some(mut release) = self.answer_waits(authorization.as_deref()) {
            // Bounded: a middleware that never sends what releases the answer (no retry at
            // all) fails its test on what it did, rather than hanging it.
            let released = release.wait_for(|released| *released);
            let _ = tokio::time::timeout(Duration::from_secs(5), released).await;
        }
        response
    }
}
