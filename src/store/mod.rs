//! Where a token lives beyond this process: one token, and one refresh, for many replicas.
//!
//! Without a store, every [`TokenCache`](crate::TokenCache) gets its own tokens: N replicas of a
//! service with the same credential log in N times per token lifetime. With api.video it is
//! worse than wasteful: a login ends every earlier refresh token of that key, so replicas keep
//! breaking each other's refresh tokens.
//!
//! A [`TokenStore`] is the seam. A cache built with
//! [`TokenCacheBuilder::store`](crate::TokenCacheBuilder::store) consults it where it would
//! otherwise call its refresher, and nowhere else: a request with a valid token still costs an
//! atomic load of the cache's local copy, whatever the store.
//!
//! When a cache needs a new token it
//! 1. loads the shared token; if it is newer than its own and usable, it takes it (no
//!    refresher call);
//! 2. otherwise takes the *lease*, the right to refresh, for a limited time;
//!    - if it gets it, it calls its refresher (with the shared token's refresh token), and
//!      *publishes* the new token by compare-and-set on the generation it replaces, so a slow
//!      replica never overwrites a newer token; then releases the lease, whatever happened;
//!    - if another replica holds it, it waits for that replica's publish (a
//!      [notification](TokenStore::notifications), or polling as the fallback) and takes the
//!      new token; if the holder dies, its lease runs out and another replica takes over.
//!
//! When the lease holder's refresh fails with an answer from the authorization server (a
//! 5xx, a 429, an OAuth 2.0 error, a permanent refusal: its error carries a
//! [`ServerAnswer`](crate::ServerAnswer)), it [publishes the failure](TokenStore::publish_failure)
//! and its backoff before it lets go of the lease. Until the backoff ends, replicas that need a
//! token fail at once with [`TokenErrorKind::SharedBackoff`](crate::TokenErrorKind::SharedBackoff)
//! instead of calling the server: a fleet of N replicas calls a failing server once per
//! backoff step, not N times. A failure of the replica's own (its connection refused, its
//! timeout) is not published: one replica with a broken network does not stop the others.
//! The next token published ends the shared failure. A valid token is never dropped because a
//! refresh failed, shared or not.
//!
//! If the store cannot be reached (an error, or no answer within the
//! [store timeout](crate::TokenCacheBuilder::store_timeout)), the cache calls its refresher
//! itself, as without a store, logs one `tracing` warning per outage, and says so in
//! [`Stats::store`](crate::Stats::store). Each later refresh tries the store again, so the
//! cache rejoins the others when it is back.
//!
//! [`MemoryStore`] keeps the shared token in this process (caches built in one process, tests,
//! and a reference for implementations); with the `redis` feature, `RedisStore` keeps it in
//! Redis.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use tower::service_fn;
//! use tower_bearer::store::MemoryStore;
//! use tower_bearer::{Token, TokenCache, TokenRequest};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), tower::BoxError> {
//! let store = MemoryStore::new();
//! let refresher = || service_fn(|_: TokenRequest| async {
//!     Ok::<_, tower::BoxError>(Token::bearer("shared")?.expires_in(Duration::from_secs(3600)))
//! });
//! // Two caches, as in two replicas: one refresh between them.
//! let a = TokenCache::builder(refresher()).store(store.clone()).build();
//! let b = TokenCache::builder(refresher()).store(store.clone()).build();
//! assert_eq!(a.token().await?.authorization(), "Bearer shared");
//! assert_eq!(b.token().await?.authorization(), "Bearer shared");
//! assert_eq!(a.stats().total().succeeded + b.stats().total().succeeded, 2);
//! let store_stats = b.stats().store.unwrap();
//! assert_eq!(store_stats.adopted, 1); // b took a's token instead of calling its refresher
//! # Ok(())
//! # }
//! ```

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;
use tower::BoxError;

use crate::Token;

mod failure;
mod memory;

pub use failure::SharedFailure;
pub use memory::MemoryStore;

/// The future a [`TokenStore`] method returns.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// Where the token shared by several caches (usually in several processes) lives.
///
/// One store holds one account's token. The cache calls it only when it needs a new token,
/// never on the hot path, so boxed futures cost nothing that matters. See the
/// [module documentation](self) for how the cache uses it, and [`MemoryStore`] for a
/// reference implementation.
///
/// Every method may fail with a [`StoreError`]; the cache then refreshes on its own.
pub trait TokenStore: Send + Sync + 'static {
    /// The current shared token and its generation, if the store holds one.
    fn load(&self) -> StoreFuture<'_, Option<SharedToken>>;

    /// Takes the right to refresh for `ttl`, as `owner`, if nobody holds it. `true` if taken.
    ///
    /// The lease must end by itself after `ttl`, so that a holder that dies delays the others
    /// by at most that long.
    fn try_lease<'a>(&'a self, owner: &'a str, ttl: Duration) -> StoreFuture<'a, bool>;

    /// Extends `owner`'s lease to `ttl` from now. `false` if `owner` no longer holds it.
    fn renew<'a>(&'a self, owner: &'a str, ttl: Duration) -> StoreFuture<'a, bool>;

    /// Ends `owner`'s lease, if it still holds it (never another owner's).
    fn release<'a>(&'a self, owner: &'a str) -> StoreFuture<'a, ()>;

    /// Stores `token` as the successor of generation `replaces` (0: the store held none),
    /// only if that is still the current generation; the new one is `replaces + 1`. Wakes
    /// [`notifications`](Self::notifications) on success.
    fn publish<'a>(&'a self, replaces: u64, token: &'a Token) -> StoreFuture<'a, Publish>;

    /// Notifications of publishes, from this process or others. Subscribed before a load,
    /// they report every publish after it.
    ///
    /// The default never fires: waiters then poll at the cache's
    /// [`store_poll`](crate::TokenCacheBuilder::store_poll) interval.
    fn notifications(&self) -> Notifications {
        Notifications::never()
    }

    /// The failure a replica published, if one is: a cache that needs a token reads it before
    /// it takes the lease, and while one is in force (its `until` is ahead) fails at once with
    /// [`TokenErrorKind::SharedBackoff`](crate::TokenErrorKind::SharedBackoff) rather than
    /// call the authorization server. One whose time has passed still says how many failures
    /// came in a row, for the next replica's backoff.
    ///
    /// The default holds none: every replica backs off on its own.
    fn load_failure(&self) -> StoreFuture<'_, Option<SharedFailure>> {
        Box::pin(std::future::ready(Ok(None)))
    }

    /// Publishes `failure`, the authorization server's answer to the lease holder's refresh,
    /// in place of any other, for `keep` (at least until `failure.until`); it must end by
    /// itself then. Wakes [`notifications`](Self::notifications), so that replicas waiting for
    /// the lease holder's token learn at once that none is coming. `true` once published.
    ///
    /// The default publishes nothing, and says so: `false`.
    fn publish_failure<'a>(
        &'a self,
        failure: &'a SharedFailure,
        keep: Duration,
    ) -> StoreFuture<'a, bool> {
        let _ = (failure, keep);
        Box::pin(std::future::ready(Ok(false)))
    }

    /// Ends the published failure: a replica got a token, and published it.
    ///
    /// The default does nothing.
    fn clear_failure(&self) -> StoreFuture<'_, ()> {
        Box::pin(std::future::ready(Ok(())))
    }
}

impl<S: TokenStore + ?Sized> TokenStore for Arc<S> {
    fn load(&self) -> StoreFuture<'_, Option<SharedToken>> {
        (**self).load()
    }
    fn try_lease<'a>(&'a self, owner: &'a str, ttl: Duration) -> StoreFuture<'a, bool> {
        (**self).try_lease(owner, ttl)
    }
    fn renew<'a>(&'a self, owner: &'a str, ttl: Duration) -> StoreFuture<'a, bool> {
        (**self).renew(owner, ttl)
    }
    fn release<'a>(&'a self, owner: &'a str) -> StoreFuture<'a, ()> {
        (**self).release(owner)
    }
    fn publish<'a>(&'a self, replaces: u64, token: &'a Token) -> StoreFuture<'a, Publish> {
        (**self).publish(replaces, token)
    }
    fn notifications(&self) -> Notifications {
        (**self).notifications()
    }
    fn load_failure(&self) -> StoreFuture<'_, Option<SharedFailure>> {
        (**self).load_failure()
    }
    fn publish_failure<'a>(
        &'a self,
        failure: &'a SharedFailure,
        keep: Duration,
    ) -> StoreFuture<'a, bool> {
        (**self).publish_failure(failure, keep)
    }
    fn clear_failure(&self) -> StoreFuture<'_, ()> {
        (**self).clear_failure()
    }
}

/// A token as a [`TokenStore`] holds it: the token, its generation, and when it was obtained.
#[derive(Clone, Debug)]
pub struct SharedToken {
    /// The token, its expiry on this process's clock.
    pub token: Token,
    /// Counts publishes: 1 for the first token the store held.
    pub generation: u64,
    /// When the token was obtained, on this process's clock; the cache's windows (refresh
    /// ahead, minimum validity) are fractions of the lifetime from here to the expiry.
    pub obtained: Instant,
}

/// What became of a [`TokenStore::publish`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Publish {
    /// The token is the shared one now, with this generation.
    Published {
        /// The new generation.
        generation: u64,
    },
    /// The store had moved on: its generation was not the one the token replaces.
    Refused {
        /// The store's generation.
        current: u64,
    },
}

/// A [`TokenStore`] could not do what was asked: unreachable, timed out, or its answer could not
/// be read. It never holds a token or a credential.
#[derive(Debug)]
pub struct StoreError {
    message: &'static str,
    source: Option<BoxError>,
    misconfigured: bool,
}

impl StoreError {
    /// An error that says what failed (`"redis unreachable"`), with its cause.
    ///
    /// The cause's `Display` is logged: it must not hold a secret.
    pub fn new(message: &'static str, source: impl Into<BoxError>) -> Self {
        StoreError {
            message,
            source: Some(source.into()),
            misconfigured: false,
        }
    }

    /// An error that says what failed, with no further cause.
    pub fn msg(message: &'static str) -> Self {
        StoreError {
            message,
            source: None,
            misconfigured: false,
        }
    }

    /// An error that trying again will not fix: the store and the cache's tokens do not fit
    /// (a DPoP token, and a store without its key). The cache logs it as an error rather than
    /// an outage, and refreshes on its own.
    pub fn misconfigured(message: &'static str) -> Self {
        StoreError {
            message,
            source: None,
            misconfigured: true,
        }
    }

    /// Whether this is a [configuration error](Self::misconfigured).
    pub fn is_misconfigured(&self) -> bool {
        self.misconfigured
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message)
    }
}

impl std::error::Error for StoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

/// The sending side of [`Notifications`], for a [`TokenStore`] implementation: call
/// [`notify`](Self::notify) when a publish is seen.
#[derive(Clone, Debug)]
pub struct Notifier {
    tx: Arc<watch::Sender<u64>>,
}

impl Notifier {
    /// A notifier with no subscribers yet.
    pub fn new() -> Self {
        Notifier {
            tx: Arc::new(watch::channel(0).0),
        }
    }

    /// Wakes every subscriber.
    pub fn notify(&self) {
        self.tx.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// A subscription to the notifications from now on.
    pub fn subscribe(&self) -> Notifications {
        Notifications {
            rx: Some(self.tx.subscribe()),
        }
    }
}

impl Default for Notifier {
    fn default() -> Self {
        Notifier::new()
    }
}

/// A subscription to a [`TokenStore`]'s publish notifications.
#[derive(Debug)]
pub struct Notifications {
    rx: Option<watch::Receiver<u64>>,
}

impl Notifications {
    /// A subscription that never fires: the waiter polls.
    pub fn never() -> Self {
        Notifications { rx: None }
    }

    /// Waits for the next notification since the subscription, or since the last one this
    /// returned. Never returns if the store sends none.
    pub async fn notified(&mut self) {
        match &mut self.rx {
            Some(rx) => {
                if rx.changed().await.is_err() {
                    // The store is gone: nothing will ever be published through it.
                    self.rx = None;
                    std::future::pending::<()>().await;
                }
            }
            None => std::future::pending().await,
        }
    }
}

/// What a cache's store has done, in [`Stats::store`](crate::Stats::store).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct StoreStats {
    /// Shared tokens loaded.
    pub loads: u64,
    /// Shared tokens taken instead of calling the refresher.
    pub adopted: u64,
    /// Leases won: this cache refreshed for everyone.
    pub leases_won: u64,
    /// Refreshes that found the lease held by another replica, and waited for its token.
    pub leases_lost: u64,
    /// Tokens published.
    pub publishes: u64,
    /// Publishes refused because the store had moved on (the token was still used here).
    pub refused: u64,
    /// Store calls that failed or timed out.
    pub errors: u64,
    /// Refreshes done alone because the store could not be reached.
    pub local_refreshes: u64,
    /// Failures this cache published, as the lease holder, for the others to wait out.
    pub failures_published: u64,
    /// Refreshes that failed at once on a failure another replica published, without a call.
    pub failures_adopted: u64,
    /// Whether the last store call failed: the cache is refreshing on its own until one
    /// succeeds.
    pub unavailable: bool,
    /// Time since the store became unavailable, while it is.
    pub unavailable_for: Option<Duration>,
}
