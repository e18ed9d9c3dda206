//! The listener, its connections, routing, and shutting them all down.

use std::error::Error;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use http::header::{ALLOW, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::RequestLog;
use super::auth::{self, Grant};
use super::resources;
use super::response::{Body, Problem};
use super::state::Shared;

/// How long connections get to finish their in-flight requests once shutdown starts.
const DRAIN_GRACE: Duration = Duration::from_secs(1);
/// The pause after a failed `accept` (typically out of file descriptors), instead of spinning.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// The error a request future ends with when the server shuts down before it could answer;
/// hyper then closes the connection without a response.
#[derive(Debug)]
pub(super) struct ShuttingDown;

impl fmt::Display for ShuttingDown {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the mock api.video server is shutting down")
    }
}

impl Error for ShuttingDown {}

/// Resolves once the server starts shutting down (or its handle is gone).
#[derive(Clone)]
pub(super) struct ShutdownSignal(watch::Receiver<bool>);

impl ShutdownSignal {
    pub(super) fn new(receiver: watch::Receiver<bool>) -> Self {
        Self(receiver)
    }

    pub(super) async fn wait(&mut self) {
        // An error means the sender is gone: the `MockServer` was dropped, which is a shutdown too.
        let _ = self.0.wait_for(|&stopping| stopping).await;
    }

    /// Sleeps on tokio's clock, unless shutdown comes first.
    pub(super) async fn sleep(&mut self, delay: Duration) -> Result<(), ShuttingDown> {
        tokio::select! {
            () = tokio::time::sleep(delay) => Ok(()),
            () = self.wait() => Err(ShuttingDown),
        }
    }
}

/// Accepts connections until shutdown, then lets them finish and returns once none is left.
pub(super) async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    mut shutdown: ShutdownSignal,
) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            biased;
            () = shutdown.wait() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    connections.spawn(serve_connection(stream, Arc::clone(&shared), shutdown.clone()));
                }
                Err(error) => {
                    tracing::warn!(%error, "mock api.video server: accept failed");
                    if shutdown.sleep(ACCEPT_BACKOFF).await.is_err() {
                        break;
                    }
                }
            },
            // Reaps finished connections, so a long-lived server does not accumulate them.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    let drain = async { while connections.join_next().await.is_some() {} };
    if tokio::time::timeout(DRAIN_GRACE, drain).await.is_err() {
        connections.shutdown().await;
    }
}

/// One HTTP/1.1 connection, kept alive between requests, closed gracefully on shutdown.
async fn serve_connection(stream: TcpStream, shared: Arc<Shared>, mut shutdown: ShutdownSignal) {
    let for_requests = shutdown.clone();
    let service =
        service_fn(move |request| handle(Arc::clone(&shared), for_requests.clone(), request));
    let connection = http1::Builder::new().serve_connection(TokioIo::new(stream), service);
    let mut connection = std::pin::pin!(connection);
    let result = tokio::select! {
        result = connection.as_mut() => result,
        () = shutdown.wait() => {
            // Idle connections close now; busy ones once their request is answered.
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(error) = result {
        tracing::debug!(%error, "mock api.video server: connection ended with an error");
    }
}

/// What a path is.
#[derive(Clone, Copy)]
enum Route {
    Auth(Grant),
    Videos,
}

impl Route {
    fn of(path: &str) -> Option<Self> {
        match path {
            "/auth/api-key" => Some(Self::Auth(Grant::ApiKey)),
            "/auth/refresh" => Some(Self::Auth(Grant::RefreshToken)),
            "/videos" => Some(Self::Videos),
            _ => None,
        }
    }

    fn allows(self, method: &Method) -> bool {
        match self {
            Self::Auth(_) => method == Method::POST,
            Self::Videos => method == Method::GET || method == Method::POST,
        }
    }

    /// The `Allow` header for a 405.
    fn allowed(self) -> HeaderValue {
        HeaderValue::from_static(match self {
            Self::Auth(_) => "POST",
            Self::Videos => "GET, POST",
        })
    }
}

async fn handle(
    shared: Arc<Shared>,
    mut shutdown: ShutdownSignal,
    request: Request<Incoming>,
) -> Result<Response<Body>, ShuttingDown> {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let response = match Route::of(&path) {
        None => Problem::new(
            StatusCode::NOT_FOUND,
            "https://docs.api.video/reference/unrecognized-request-url",
            "Unrecognized request URL.",
        )
        .into_response(),
        Some(route) if !route.allows(&method) => method_not_allowed(route.allowed()),
        Some(Route::Auth(grant)) => auth::serve(&shared, &mut shutdown, grant, request).await?,
        Some(Route::Videos) => resources::serve(&shared, request).await,
    };
    report(
        &shared,
        &RequestLog {
            method,
            path,
            status: response.status(),
        },
    );
    Ok(response)
}

fn method_not_allowed(allowed: HeaderValue) -> Response<Body> {
    let mut response = Problem::generic(StatusCode::METHOD_NOT_ALLOWED).into_response();
    response.headers_mut().insert(ALLOW, allowed);
    response
}

/// Tells tracing and the `on_request` hook. Only the method, path and status: never a
/// header, a query or a body, where credentials live.
fn report(shared: &Shared, log: &RequestLog) {
    tracing::debug!(
        method = %log.method,
        path = %log.path,
        status = log.status.as_u16(),
        "mock api.video request"
    );
    if let Some(hook) = &shared.config.on_request {
        hook(log);
    }
}
