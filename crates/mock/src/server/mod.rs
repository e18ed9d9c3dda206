//! What every embedded mock server is made of: a hyper server on loopback that serves until
//! its handle shuts it down or is dropped, the signal its requests watch for that, and seeded
//! randomness for tokens and faults.
//!
//! Crate-private: each provider's `mock` module puts its own routes and public handle on it.

pub(crate) mod rng;
mod serve;
mod shutdown;

use std::future::Future;
use std::net::SocketAddr;

use http::uri::PathAndQuery;
use http::{Request, Response};
use hyper::body::Incoming;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub(crate) use serve::MockBody;
pub(crate) use shutdown::{ShutdownSignal, ShuttingDown};

/// A mock server's serving task, and the way to stop it.
///
/// It serves until [`shutdown`](Self::shutdown) is awaited or it is dropped. Either way it
/// stops accepting at once, closes idle connections, lets requests in flight finish (a
/// request waiting on [`ShutdownSignal`] is abandoned and its connection closed), and
/// forcibly ends whatever is left after a second.
pub(crate) struct RunningServer {
    addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    /// Taken by `shutdown`, so that `Drop` knows there is nothing left to wait for.
    task: Option<JoinHandle<()>>,
}

impl RunningServer {
    /// Serves `handle` on `listener`, on the current tokio runtime. `name` says which mock
    /// in log lines.
    ///
    /// # Panics
    ///
    /// If called outside a tokio runtime.
    pub(crate) fn start<H, F>(
        listener: TcpListener,
        name: &'static str,
        handle: H,
    ) -> std::io::Result<Self>
    where
        H: Fn(Request<Incoming>, ShutdownSignal) -> F + Clone + Send + Sync + 'static,
        F: Future<Output = Result<Response<MockBody>, ShuttingDown>> + Send + 'static,
    {
        let addr = listener.local_addr()?;
        let (shutdown, signal) = watch::channel(false);
        let task = tokio::spawn(serve::accept_loop(
            listener,
            name,
            handle,
            ShutdownSignal::new(signal),
        ));
        tracing::debug!(%addr, server = name, "mock server listening");
        Ok(RunningServer {
            addr,
            shutdown,
            task: Some(task),
        })
    }

    /// The address it listens on.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR`, with no trailing slash: a path starting with `/` is appended as it is.
    pub(crate) fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `http://ADDR` and `path_and_query`, with the leading `/` added if it is missing.
    ///
    /// # Panics
    ///
    /// If `path_and_query` is not a valid URI path and query.
    pub(crate) fn uri_for(&self, path_and_query: &str) -> String {
        let slash = if path_and_query.starts_with('/') {
            ""
        } else {
            "/"
        };
        let path_and_query = format!("{slash}{path_and_query}");
        if let Err(error) = PathAndQuery::try_from(path_and_query.as_str()) {
            panic!("not a URI path and query: {path_and_query:?} ({error})");
        }
        format!("{}{path_and_query}", self.base_url())
    }

    /// Stops the server and waits until every task it spawned has ended.
    ///
    /// # Panics
    ///
    /// If the server's task panicked (a bug in the mock): the panic is resumed here.
    pub(crate) async fn shutdown(mut self) {
        self.shutdown.send_replace(true);
        if let Some(task) = self.task.take() {
            if let Err(error) = task.await {
                if error.is_panic() {
                    std::panic::resume_unwind(error.into_panic());
                }
            }
        }
    }
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        // The accept loop sees this and winds down on its own; nothing to await here.
        self.shutdown.send_replace(true);
    }
}

/// Why a path no route knows may be a client's mistake rather than a missing endpoint: the
/// text for a 404's detail, or `None`.
pub(crate) fn unknown_path_hint(path: &str) -> Option<&'static str> {
    path.contains("//").then_some(
        "The path has an empty segment (`//`): a base URL ending in `/` joined with a path \
         starting with `/`? The mock's base URL has no trailing slash.",
    )
}
