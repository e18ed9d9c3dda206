//! The listener, its connections, and shutting them all down.

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

use super::shutdown::{ShutdownSignal, ShuttingDown};

/// Every response body a mock sends is complete before it is sent.
pub(crate) type MockBody = Full<Bytes>;

/// How long connections get to finish their in-flight requests once shutdown starts.
const DRAIN_GRACE: Duration = Duration::from_secs(1);
/// The pause after a failed `accept` (typically out of file descriptors), instead of spinning.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Accepts connections until shutdown, then lets them finish and returns once none is left.
pub(super) async fn accept_loop<H, F>(
    listener: TcpListener,
    name: &'static str,
    handle: H,
    mut shutdown: ShutdownSignal,
) where
    H: Fn(Request<Incoming>, ShutdownSignal) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Result<Response<MockBody>, ShuttingDown>> + Send + 'static,
{
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            biased;
            () = shutdown.wait() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    connections.spawn(serve_connection(stream, name, handle.clone(), shutdown.clone()));
                }
                Err(error) => {
                    tracing::warn!(%error, server = name, "mock server: accept failed");
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
async fn serve_connection<H, F>(
    stream: TcpStream,
    name: &'static str,
    handle: H,
    mut shutdown: ShutdownSignal,
) where
    H: Fn(Request<Incoming>, ShutdownSignal) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Result<Response<MockBody>, ShuttingDown>> + Send + 'static,
{
    let for_requests = shutdown.clone();
    let service = service_fn(move |request| handle(request, for_requests.clone()));
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
        tracing::debug!(%error, server = name, "mock server: connection ended with an error");
    }
}
