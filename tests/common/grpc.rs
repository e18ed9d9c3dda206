//! A tonic server on loopback that requires tokens and revokes them, for the tonic tests.
//!
//! It serves `grpc.health.v1.Health` (tonic-health, behind a token check) and `test.Echo`, a
//! service written by hand: there is no protoc here, so its messages are raw bytes through
//! [`BytesCodec`], and its client and server are tonic's codegen-free `client::Grpc` and
//! `server::Grpc`. Each of its methods refuses a token in one of the ways a server can.
//!
//! | method | kind | what it does |
//! | --- | --- | --- |
//! | `Unary` | unary | checks the token, echoes the message |
//! | `Sum` | client streaming | reads every message, *then* checks the token; answers the bytes received, as a `u64` (little endian) |
//! | `Count` | server streaming | checks the token, sends as many messages as the request's first byte says |
//! | `Cut` | server streaming | checks the token, sends one message, revokes the token, and ends UNAUTHENTICATED in the trailers |
//! | `Denied` | unary | PERMISSION_DENIED, whatever the token |
//! | `Scope` | unary | HTTP 401 with `WWW-Authenticate: Bearer error="insufficient_scope"`, whatever the token |
//!
//! Refusals of a token are trailers-only UNAUTHENTICATED answers, as tonic sends for a
//! handler's error, except `Cut`'s. Tokens come from [`Authority::issue`], which the
//! [`refresher`] calls; [`Authority`] records every call the server receives.
#![allow(dead_code, unreachable_pub)]

use std::collections::HashSet;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes};
use http::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use http::uri::PathAndQuery;
use tokio::net::TcpListener;
use tokio::sync::{Barrier, oneshot};
use tokio::task::JoinHandle;
use tokio_stream::{Stream, StreamExt, wrappers::TcpListenerStream};
use tonic::Status;
use tonic::body::Body;
use tonic::client::{Grpc, GrpcService};
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder, Streaming};
use tonic::server::NamedService;
use tonic::transport::{Channel, Server};
use tower::{BoxError, Service, service_fn};
use tower_bearer::{Token, TokenCache, TokenRequest};

pub const HOUR: Duration = Duration::from_secs(3600);

// ===== tokens =====

/// The server's idea of which tokens are good, and a record of every call it received.
#[derive(Default)]
pub struct Authority {
    valid: Mutex<HashSet<String>>,
    issued: AtomicU64,
    calls: Mutex<Vec<Call>>,
    /// Refusals wait here, all answered together once enough have come.
    hold_refusals: Mutex<Option<Arc<Barrier>>>,
}

/// One call as the server received it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Call {
    /// `Unary`, `Sum`, …, `Check`, `Watch`.
    pub method: String,
    /// The `authorization` metadata, if any.
    pub token: Option<String>,
    /// Refused for its token (UNAUTHENTICATED).
    pub refused: bool,
}

impl Authority {
    /// A new token, good until revoked: `Bearer grpc-token-N`, N counting from 1.
    pub fn issue(&self) -> Token {
        let n = self.issued.fetch_add(1, Ordering::SeqCst) + 1;
        let access = format!("grpc-token-{n}");
        self.valid
            .lock()
            .unwrap()
            .insert(format!("Bearer {access}"));
        Token::bearer(access).unwrap().expires_in(HOUR)
    }

    /// Tokens issued so far: the refresher's calls.
    pub fn issued(&self) -> u64 {
        self.issued.load(Ordering::SeqCst)
    }

    pub fn revoke_all(&self) {
        self.valid.lock().unwrap().clear();
    }

    fn revoke(&self, token: &str) {
        self.valid.lock().unwrap().remove(token);
    }

    /// From now on, refusals are held until `count` of them have come, then answered together.
    pub fn hold_refusals(&self, count: usize) {
        *self.hold_refusals.lock().unwrap() = Some(Arc::new(Barrier::new(count)));
    }

    /// Every call received, in order.
    pub fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }

    /// The calls of one method.
    pub fn calls_of(&self, method: &str) -> Vec<Call> {
        self.calls()
            .into_iter()
            .filter(|c| c.method == method)
            .collect()
    }

    fn record(&self, method: &str, token: Option<String>, refused: bool) {
        self.calls.lock().unwrap().push(Call {
            method: method.to_owned(),
            token,
            refused,
        });
    }

    /// Records the call, and says whether its token is good.
    fn check(&self, method: &str, token: Option<&str>) -> bool {
        let good = token.is_some_and(|t| self.valid.lock().unwrap().contains(t));
        self.record(method, token.map(str::to_owned), !good);
        good
    }

    /// Checks a call's token: UNAUTHENTICATED (after the hold, if one is set) if it is not good.
    async fn require(&self, method: &str, token: Option<&str>) -> Result<(), Status> {
        if self.check(method, token) {
            return Ok(());
        }
        let hold = self.hold_refusals.lock().unwrap().clone();
        if let Some(barrier) = hold {
            barrier.wait().await;
        }
        Err(Status::unauthenticated("the token is not valid"))
    }
}

/// A refresher that gets its tokens from `authority`.
pub fn refresher(
    authority: Arc<Authority>,
) -> impl Service<
    TokenRequest,
    Response = Token,
    Error = BoxError,
    Future = impl Future<Output = Result<Token, BoxError>> + Send,
> + Send
+ 'static {
    service_fn(move |_: TokenRequest| {
        let token = authority.issue();
        async move { Ok::<_, BoxError>(token) }
    })
}

// ===== the server =====

/// A running server; it stops when dropped.
pub struct GrpcServer {
    pub addr: SocketAddr,
    pub authority: Arc<Authority>,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl GrpcServer {
    pub async fn start() -> GrpcServer {
        let authority = Arc::new(Authority::default());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (_, health) = tonic_health::server::health_reporter();
        let health = Guarded {
            inner: health,
            authority: authority.clone(),
        };
        let echo = Echo {
            authority: authority.clone(),
        };
        let (shutdown, stop) = oneshot::channel();
        let router = Server::builder().add_service(health).add_service(echo);
        let task = tokio::spawn(async move {
            let incoming = TcpListenerStream::new(listener);
            let stop = async {
                let _ = stop.await;
            };
            router
                .serve_with_incoming_shutdown(incoming, stop)
                .await
                .unwrap();
        });
        GrpcServer {
            addr,
            authority,
            shutdown: Some(shutdown),
            task,
        }
    }

    pub fn uri(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A channel to the server, connected.
    pub async fn channel(&self) -> Channel {
        Channel::from_shared(self.uri())
            .unwrap()
            .connect()
            .await
            .unwrap()
    }

    /// A cache getting its tokens from this server's authority. Tokens are blamed for a
    /// refusal at any age, so that a test can revoke one right after it was issued.
    pub fn cache(&self) -> TokenCache {
        TokenCache::builder(refresher(self.authority.clone()))
            .min_token_age(Duration::ZERO)
            .build()
    }

    pub async fn stop(mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        (&mut self.task).await.unwrap();
    }
}

impl Drop for GrpcServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn token_of(headers: &http::HeaderMap) -> Option<&str> {
    headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok())
}

fn method_of(path: &str) -> String {
    path.rsplit('/').next().unwrap_or_default().to_owned()
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// A service that answers UNAUTHENTICATED (trailers-only) to a call without a good token.
#[derive(Clone)]
struct Guarded<S> {
    inner: S,
    authority: Arc<Authority>,
}

impl<S: NamedService> NamedService for Guarded<S> {
    const NAME: &'static str = S::NAME;
}

impl<S> Service<http::Request<Body>> for Guarded<S>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<http::Response<Body>, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let method = method_of(request.uri().path());
        let good = self.authority.check(&method, token_of(request.headers()));
        if !good {
            let refusal = Status::unauthenticated("the token is not valid").into_http();
            return Box::pin(async move { Ok(refusal) });
        }
        let future = self.inner.call(request);
        Box::pin(future)
    }
}

/// `test.Echo`.
#[derive(Clone)]
struct Echo {
    authority: Arc<Authority>,
}

impl NamedService for Echo {
    const NAME: &'static str = "test.Echo";
}

type Messages = Pin<Box<dyn Stream<Item = Result<Bytes, Status>> + Send>>;

impl Service<http::Request<Body>> for Echo {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<http::Response<Body>, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let authority = self.authority.clone();
        let method = method_of(request.uri().path());
        Box::pin(async move {
            let mut grpc = tonic::server::Grpc::new(BytesCodec);
            let response = match method.as_str() {
                "Unary" => {
                    let handler = service_fn(move |request: tonic::Request<Bytes>| {
                        let authority = authority.clone();
                        async move {
                            let token = request.metadata().get("authorization");
                            let token = token.and_then(|t| t.to_str().ok());
                            authority.require("Unary", token).await?;
                            Ok(tonic::Response::new(request.into_inner()))
                        }
                    });
                    grpc.unary(handler, request).await
                }
                "Sum" => {
                    let handler = service_fn(move |request: tonic::Request<Streaming<Bytes>>| {
                        let authority = authority.clone();
                        async move {
                            let token = request
                                .metadata()
                                .get("authorization")
                                .and_then(|t| t.to_str().ok())
                                .map(str::to_owned);
                            let mut messages = request.into_inner();
                            let mut total = 0u64;
                            while let Some(message) = messages.next().await {
                                total += message?.len() as u64;
                            }
                            authority.require("Sum", token.as_deref()).await?;
                            Ok(tonic::Response::new(Bytes::copy_from_slice(
                                &total.to_le_bytes(),
                            )))
                        }
                    });
                    grpc.client_streaming(handler, request).await
                }
                "Count" | "Cut" => {
                    let cut = method == "Cut";
                    let handler = service_fn(move |request: tonic::Request<Bytes>| {
                        let authority = authority.clone();
                        let method = if cut { "Cut" } else { "Count" };
                        async move {
                            let token = request
                                .metadata()
                                .get("authorization")
                                .and_then(|t| t.to_str().ok())
                                .map(str::to_owned);
                            authority.require(method, token.as_deref()).await?;
                            let messages: Messages = if cut {
                                // The response begins; then the token is revoked, and the
                                // stream ends UNAUTHENTICATED in the trailers.
                                authority.revoke(token.as_deref().unwrap_or_default());
                                Box::pin(tokio_stream::iter([
                                    Ok(Bytes::from_static(b"first")),
                                    Err(Status::unauthenticated("the token was revoked")),
                                ]))
                            } else {
                                let count = request.get_ref().first().copied().unwrap_or(0);
                                Box::pin(tokio_stream::iter(
                                    (0..count).map(|i| Ok(Bytes::from(vec![i]))),
                                ))
                            };
                            Ok(tonic::Response::new(messages))
                        }
                    });
                    grpc.server_streaming(handler, request).await
                }
                "Denied" => {
                    let token = token_of(request.headers()).map(str::to_owned);
                    authority.record("Denied", token, false);
                    Status::permission_denied("not for you").into_http()
                }
                "Scope" => {
                    let token = token_of(request.headers()).map(str::to_owned);
                    authority.record("Scope", token, false);
                    http::Response::builder()
                        .status(http::StatusCode::UNAUTHORIZED)
                        .header(
                            WWW_AUTHENTICATE,
                            r#"Bearer error="insufficient_scope", scope="echo:admin""#,
                        )
                        .body(Body::empty())
                        .unwrap()
                }
                _ => Status::unimplemented(method).into_http(),
            };
            Ok(response)
        })
    }
}

// ===== messages =====

/// Messages as raw bytes: a message is its bytes, whatever they are.
#[derive(Clone, Copy, Debug, Default)]
pub struct BytesCodec;

impl Codec for BytesCodec {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = BytesCodec;
    type Decoder = BytesCodec;

    fn encoder(&mut self) -> Self::Encoder {
        BytesCodec
    }

    fn decoder(&mut self) -> Self::Decoder {
        BytesCodec
    }
}

impl Encoder for BytesCodec {
    type Item = Bytes;
    type Error = Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put(item);
        Ok(())
    }
}

impl Decoder for BytesCodec {
    type Item = Bytes;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

// ===== the client =====

/// A client of `test.Echo`, over any tonic transport: what protoc would have generated.
#[derive(Clone)]
pub struct EchoClient<T> {
    grpc: Grpc<T>,
}

fn path(method: &'static str) -> PathAndQuery {
    PathAndQuery::from_maybe_shared(format!("/test.Echo/{method}")).unwrap()
}

impl<T> EchoClient<T>
where
    T: GrpcService<Body>,
    T::Error: Into<BoxError>,
    T::ResponseBody: http_body::Body<Data = Bytes> + Send + 'static,
    <T::ResponseBody as http_body::Body>::Error: Into<BoxError> + Send,
{
    pub fn new(inner: T) -> Self {
        EchoClient {
            grpc: Grpc::new(inner),
        }
    }

    async fn ready(&mut self) -> Result<(), Status> {
        self.grpc
            .ready()
            .await
            .map_err(|e| Status::unknown(format!("not ready: {}", e.into())))
    }

    pub async fn unary(&mut self, message: Bytes) -> Result<Bytes, Status> {
        self.ready().await?;
        let response = self
            .grpc
            .unary(tonic::Request::new(message), path("Unary"), BytesCodec)
            .await?;
        Ok(response.into_inner())
    }

    /// Sends `messages` as a client stream; the server's count of the bytes it received.
    pub async fn sum(&mut self, messages: Vec<Bytes>) -> Result<u64, Status> {
        self.ready().await?;
        let stream = tokio_stream::iter(messages);
        let response = self
            .grpc
            .client_streaming(tonic::Request::new(stream), path("Sum"), BytesCodec)
            .await?;
        let bytes = response.into_inner();
        Ok(u64::from_le_bytes(bytes[..8].try_into().unwrap()))
    }

    pub async fn count(&mut self, count: u8) -> Result<Streaming<Bytes>, Status> {
        self.server_streaming("Count", count).await
    }

    pub async fn cut(&mut self) -> Result<Streaming<Bytes>, Status> {
        self.server_streaming("Cut", 0).await
    }

    async fn server_streaming(
        &mut self,
        method: &'static str,
        count: u8,
    ) -> Result<Streaming<Bytes>, Status> {
        self.ready().await?;
        let message = Bytes::copy_from_slice(&[count]);
        let response = self
            .grpc
            .server_streaming(tonic::Request::new(message), path(method), BytesCodec)
            .await?;
        Ok(response.into_inner())
    }

    pub async fn denied(&mut self) -> Result<Bytes, Status> {
        self.unary_to("Denied").await
    }

    pub async fn scope(&mut self) -> Result<Bytes, Status> {
        self.unary_to("Scope").await
    }

    async fn unary_to(&mut self, method: &'static str) -> Result<Bytes, Status> {
        self.ready().await?;
        let response = self
            .grpc
            .unary(tonic::Request::new(Bytes::new()), path(method), BytesCodec)
            .await?;
        Ok(response.into_inner())
    }
}
