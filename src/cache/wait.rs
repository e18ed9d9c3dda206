//! What a request waits on when the hot path has no token for it.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use tokio::sync::watch;
use tokio::time::Instant;

use super::TokenCache;
use super::entry::Entry;
use crate::{RefreshReason, TokenError, TokenErrorKind};

/// What a request does when the hot path has no token for it.
pub(crate) enum Acquire {
    /// Send it with this token.
    Have(Arc<Entry>),
    /// Wait for the refresh in flight.
    WaitFor(Waiting),
    /// No token can be had now.
    Failed(TokenError),
}

/// What a request does after a server refused its token.
pub(crate) enum Rejection {
    /// Send it again with the token this gives.
    RetryWith(Acquire),
    /// The token was too young to blame: give the refusal back.
    TooYoung,
}

/// What a flight ends with, as every request waiting for it sees it.
pub(crate) type Outcome = Result<Arc<Entry>, TokenError>;

/// A request waiting for the refresh in flight.
pub(crate) struct Waiting {
    pub(super) reason: RefreshReason,
    pub(super) done: watch::Receiver<Option<Outcome>>,
    /// To wait again if the waiter is polled too late for the token it waited for.
    pub(super) cache: TokenCache,
}

/// The token a request waits for, boxed: the slow path happens about once per token lifetime
/// per request in flight, and a named type would put the refresher's in every service's.
pub(crate) type WaitFuture = Pin<Box<dyn Future<Output = Outcome> + Send + Sync>>;

impl Waiting {
    pub(crate) fn into_future(self) -> WaitFuture {
        let Waiting {
            mut reason,
            mut done,
            cache,
        } = self;
        Box::pin(async move {
            let _counted = Counted::waiting(&cache);
            loop {
                let entry = match done.wait_for(Option::is_some).await {
                    Ok(outcome) => outcome.clone().expect("waited for an outcome")?,
                    // The flight's guard always sends; this is a runtime dropping the task
                    // mid-way.
                    Err(_) => return Err(TokenError::new(reason, TokenErrorKind::Abandoned)),
                };
                if entry.sendable(Instant::now()) {
                    return Ok(entry);
                }
                // Woken in time, but polled so late (a starved task) that the token is
                // already stale: wait for the next one rather than hand out this one.
                match cache.acquire() {
                    Acquire::Have(entry) => return Ok(entry),
                    Acquire::Failed(err) => return Err(err),
                    Acquire::WaitFor(next) => (reason, done) = (next.reason, next.done),
                }
            }
        })
    }
}

impl Acquire {
    pub(crate) fn into_future(self) -> WaitFuture {
        match self {
            Acquire::Have(entry) => Box::pin(std::future::ready(Ok(entry))),
            Acquire::WaitFor(waiting) => waiting.into_future(),
            Acquire::Failed(err) => Box::pin(std::future::ready(Err(err))),
        }
    }
}

/// Counts a request among those waiting for a refresh while it lives.
struct Counted<'a>(&'a super::metrics::Metrics);

impl<'a> Counted<'a> {
    fn waiting(cache: &'a TokenCache) -> Self {
        cache.shared.metrics.waiting(1.0);
        Counted(&cache.shared.metrics)
    }
}

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        self.0.waiting(-1.0);
    }
}
