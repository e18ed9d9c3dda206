//! Shutting a mock server down: the signal its requests watch, and the error one ends with.

use std::error::Error;
use std::fmt;
use std::time::Duration;

use tokio::sync::watch;

/// Resolves once the server starts shutting down (or its handle is gone).
#[derive(Clone)]
pub(crate) struct ShutdownSignal(watch::Receiver<bool>);

impl ShutdownSignal {
    pub(super) fn new(receiver: watch::Receiver<bool>) -> Self {
        ShutdownSignal(receiver)
    }

    pub(crate) async fn wait(&mut self) {
        // An error means the sender is gone: the handle was dropped, which is a shutdown too.
        let _ = self.0.wait_for(|&stopping| stopping).await;
    }

    /// Sleeps on tokio's clock, unless shutdown comes first.
    pub(crate) async fn sleep(&mut self, delay: Duration) -> Result<(), ShuttingDown> {
        tokio::select! {
            () = tokio::time::sleep(delay) => Ok(()),
            () = self.wait() => Err(ShuttingDown),
        }
    }
}

/// The error a request future ends with when the server shuts down before it could answer;
/// hyper then closes the connection without a response.
#[derive(Debug)]
pub(crate) struct ShuttingDown;

impl fmt::Display for ShuttingDown {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the mock server is shutting down")
    }
}

impl Error for ShuttingDown {}
