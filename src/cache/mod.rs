//! The shared token cache: one token, one refresh at a time, refreshed ahead of expiry.
//!
//! | file | what it holds |
//! | --- | --- |
//! | `mod.rs` | [`TokenCache`] and its public API |
//! | `reader.rs` | the hot path: a service's reader of the current token |
//! | `flight.rs` | single flight: the one refresh, joined or started, finished, guarded |
//! | `wait.rs` | what a request waits on when the hot path has no token for it |
//! | `entry.rs` | a token as the cache holds it, and its windows |
//! | `alarm.rs` | when the hot path has to start reading the clock |
//! | `refresher.rs` | the refresher, with its type erased |
//! | `store_link.rs` | a refresh shared with other caches through a [`TokenStore`](crate::store::TokenStore) |
//! | `builder.rs` | settings, and the backoff after a failure |
//! | `stats.rs` | what the cache has done, for an operator |
//! | `metrics.rs` | what the cache reports through the `metrics` facade |

use std::fmt;
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use tokio::time::Instant;

mod alarm;
mod builder;
mod entry;
mod flight;
mod metrics;
mod reader;
mod refresher;
mod stats;
mod store_link;
mod wait;

pub use builder::TokenCacheBuilder;
pub(crate) use reader::Reader;
pub use refresher::Refresher;
pub use stats::{RefreshCounts, Stats};
pub(crate) use wait::{Acquire, Outcome, Rejection, WaitFuture};

use self::metrics::Metrics;
use builder::Settings;
pub(crate) use entry::Entry;
use flight::RefreshState;
use stats::StatCounters;
use store_link::StoreLink;

/// The token every request shares, and the one refresh that replaces it.
///
/// A `TokenCache` holds the current [`Token`](crate::Token) and the refresher that makes new
/// ones. It is cheap to clone: every clone, and every [`BearerAuth`](crate::BearerAuth)
/// service built from it, reads the same token and waits on the same refresh. Build one per
/// account and hand it to as many layers as use that account.
///
/// A token goes through three windows (the durations are [settings](TokenCacheBuilder)):
///
/// | the token is | a request |
/// | --- | --- |
/// | fresh | uses it: an atomic load, no lock |
/// | in the refresh-ahead window | uses it; from a point drawn at random in the window for each token ([`refresh_jitter`](TokenCacheBuilder::refresh_jitter)), the first to notice starts one background refresh |
/// | within the minimum validity, expired, rejected or absent | waits for the one refresh in flight, starting it if there is none |
///
/// A request reads the clock only from a second before the token's first window: until then
/// a timer, set on the runtime that fetched the token, has not rung, and the token is used as
/// it is. The time driver rings it while it processes timers, before the tasks it wakes run, so
/// under tokio's paused clock a request sent right after `advance` sees the window; a runtime
/// that shuts down rings it too. The timer needs the runtime that refreshed to be running, as
/// a service's runtime is: a runtime driven only inside occasional `block_on` calls fires it at
/// the start of the next call, after that call's request was first polled, so a request sent
/// after a long idle gap may carry the old token (and, with retries on, is sent again with a
/// new one after its 401). A runtime too busy to fire a timer for over a second would likewise
/// open a window late.
///
/// Refreshes run in a task of their own, so a request that gives up (a timeout, a client hanging
/// up) never cancels or poisons the refresh others wait for. After a failed refresh the cache
/// does not call the refresher again until a backoff has passed; requests that need a token in
/// that time fail at once with the remembered error.
///
/// The refresher's type does not appear in `TokenCache`'s: a refresher is called about once per
/// token lifetime, so boxing its future costs nothing that matters, and in return no type in
/// your stack has to name it.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use tower::service_fn;
/// use tower_bearer::{Token, TokenCache, TokenRequest};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), tower::BoxError> {
/// let cache = TokenCache::new(service_fn(|_: TokenRequest| async {
///     Ok::<_, tower::BoxError>(Token::bearer("a-token")?.expires_in(Duration::from_secs(3600)))
/// }));
///
/// // Outside HTTP (a WebSocket handshake, gRPC metadata), read the token directly.
/// let token = cache.token().await?;
/// assert_eq!(token.authorization(), "Bearer a-token");
/// println!("{}", cache.stats()); // 1 token obtained (initial 1, …), …
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct TokenCache {
    shared: Arc<Shared>,
}

struct Shared {
    /// What the hot path reads, on a cache line of its own: every request also clones and
    /// drops the `Arc` around `Shared`, and on another core those writes to its count would
    /// otherwise evict the pointer every reader needs.
    current: CachePadded<ArcSwapOption<Entry>>,
    /// Everything else: the refresh in flight and the last failure.
    state: Mutex<RefreshState>,
    refresher: Box<dyn refresher::Refresh>,
    /// Where tokens are shared with other caches, if anywhere.
    store: Option<StoreLink>,
    settings: Settings,
    counters: StatCounters,
    metrics: Metrics,
    /// The origin of `Entry::next_ahead`, which is an atomic count of nanoseconds.
    epoch: Instant,
}

/// Aligned to 128 bytes: a cache line, and the pair of lines some CPUs prefetch together.
#[repr(align(128))]
struct CachePadded<T>(T);

impl<T> std::ops::Deref for CachePadded<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

// ===== impl TokenCache =====

impl TokenCache {
    /// A cache with the default settings, getting its tokens from `refresher`.
    ///
    /// A refresher is any [`Service`](tower::Service) from [`TokenRequest`](crate::TokenRequest)
    /// to [`Token`](crate::Token) (see [`Refresher`]): stack `timeout`, `retry` or `rate_limit`
    /// on it with `ServiceBuilder` as on any service. The cache keeps the one instance, drives
    /// it ready and calls it once per refresh, so its readiness (a rate limit, say) is
    /// respected.
    pub fn new(refresher: impl Refresher) -> Self {
        TokenCache::builder(refresher).build()
    }

    /// A builder, to change the settings from their defaults.
    pub fn builder(refresher: impl Refresher) -> TokenCacheBuilder {
        TokenCacheBuilder::new(refresher::boxed(refresher))
    }

    /// The current token, waiting for a refresh if it is absent, expired or about to expire.
    pub async fn token(&self) -> Result<crate::Token, crate::TokenError> {
        let entry = match self.current_as_is() {
            Some(entry) => entry,
            None => self.acquire().into_future().await?,
        };
        Ok(entry.token.clone())
    }

    /// Reports that a server rejected `token`, and returns the token to use instead.
    ///
    /// For callers outside HTTP that got the token from [`token`](Self::token): if the cache
    /// still holds `token`, it is replaced (one refresh however many callers report it); if the
    /// cache has moved on, the current token is returned. A token younger than the
    /// [minimum age](TokenCacheBuilder::min_token_age) is not blamed: it is returned as it is.
    pub async fn reject(&self, token: &crate::Token) -> Result<crate::Token, crate::TokenError> {
        let current = self.shared.current.load_full();
        let Some(entry) = current.filter(|e| e.token.authorization() == token.authorization())
        else {
            return self.token().await;
        };
        match self.rejected(entry.generation) {
            Rejection::RetryWith(acquire) => Ok(acquire.into_future().await?.token.clone()),
            Rejection::TooYoung => Ok(entry.token.clone()),
        }
    }

    /// A server refused the token a request carried as `authorization`, too late to send the
    /// request again (a gRPC UNAUTHENTICATED in the trailers, after the response had begun):
    /// if the cache still holds that token, it is replaced as [`rejected`](Self::rejected)
    /// would, for the requests that follow. Nobody waits here: the refresh runs in its own
    /// task.
    #[cfg(feature = "tonic")]
    pub(crate) fn rejected_header(&self, authorization: &http::HeaderValue) {
        let Some(entry) = self.shared.current.load_full() else {
            return;
        };
        // A caller's own token, or one the cache has already replaced: not ours to replace.
        if entry.token.authorization() == authorization {
            drop(self.rejected(entry.generation));
        }
    }

    /// A snapshot of what the cache has done, for an operator; its `Display` is a one-line
    /// summary for logs.
    pub fn stats(&self) -> Stats {
        let now = Instant::now();
        let current = self.shared.current.load();
        let state = self.state();
        Stats {
            refreshes: self.shared.counters.refreshes(),
            unauthorized: self.shared.counters.unauthorized.load(Ordering::Relaxed),
            retried: self.shared.counters.retried.load(Ordering::Relaxed),
            not_replaced: self.shared.counters.not_replaced.load(Ordering::Relaxed),
            nonce_retried: self.shared.counters.nonce_retried.load(Ordering::Relaxed),
            out_of_scope: self.shared.counters.out_of_scope.load(Ordering::Relaxed),
            generation: current.as_ref().map_or(0, |e| e.generation),
            age: current
                .as_ref()
                .map(|e| now.saturating_duration_since(e.obtained)),
            expires_in: current.as_ref().and_then(|e| e.expires_in(now)),
            refreshing: state.flight.is_some(),
            waiting: state.waiting(),
            backing_off: state.backing_off(now),
            store: self.shared.store.as_ref().map(StoreLink::stats),
        }
    }

    fn state(&self) -> MutexGuard<'_, RefreshState> {
        crate::sync::lock(&self.shared.state)
    }

    fn nanos(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.shared.epoch).as_nanos() as u64
    }
}

impl fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let current = self.shared.current.load();
        f.debug_struct("TokenCache")
            .field("generation", &current.as_ref().map_or(0, |e| e.generation))
            .field(
                "expires_in",
                &current.as_ref().and_then(|e| e.expires_in(Instant::now())),
            )
            .field("settings", &self.shared.settings)
            .field("store", &self.shared.store)
            .finish_non_exhaustive()
    }
}

/// A number in [0, 1), from the standard library's per-process random hash keys: jitter
/// needs spread, not cryptographic quality.
fn random_fraction() -> f64 {
    let bits = RandomState::new().hash_one(0u8);
    (bits >> 11) as f64 / (1u64 << 53) as f64
}

/// The longest the cache waits, whatever a hint or a setting says: a year is "not soon", and
/// keeps every `Instant` and nanosecond count in range.
const LONGEST_WAIT: Duration = Duration::from_secs(365 * 24 * 60 * 60);

#[cfg(test)]
mod tests;
