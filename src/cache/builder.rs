//! How a cache is built: its settings, and the backoff after a failed refresh.

use std::error::Error;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use tokio::time::Instant;

use super::entry::Windows;
use super::flight::RefreshState;
use super::metrics::Metrics;
use super::refresher::Refresh;
use super::stats::StatCounters;
use super::store_link::{StoreLink, StoreSettings};
use super::{CachePadded, LONGEST_WAIT, Shared, TokenCache, random_fraction};
use crate::RetryAfter;
use crate::store::TokenStore;

/// Builds a [`TokenCache`] with settings other than the defaults.
///
/// | setting | default | why |
/// | --- | --- | --- |
/// | [`refresh_ahead`](Self::refresh_ahead) | 5 min, at most ¼ of the token's lifetime | a background refresh has minutes to succeed, or to fail and be retried, before anyone waits |
/// | [`min_validity`](Self::min_validity) | 30 s, at most 1/10 of the lifetime | a request sent with the token reaches the server, and is checked there, before it expires |
/// | [`refresh_jitter`](Self::refresh_jitter) | the whole window | each token's background refresh starts at a random point of the window, so replicas that got tokens together do not refresh together |
/// | [`min_token_age`](Self::min_token_age) | 5 s, at most 1/10 of the lifetime | a 401 for a token just issued is the server refusing for another reason; replacing it again would not help |
/// | [`backoff`](Self::backoff) | 1 s doubling to 30 s, with jitter | a failing provider is not hammered, and replicas that failed together do not retry together |
/// | [`refresh_timeout`](Self::refresh_timeout) | 60 s | a refresher that never answers fails its waiters instead of holding them |
///
/// A refresher's [`RetryAfter`](crate::RetryAfter) hint takes the place of the backoff for the failure it
/// comes with. No wait, hinted or configured, is longer than a year.
///
/// ```
/// use std::time::Duration;
/// # use tower::service_fn;
/// use tower_bearer::{Token, TokenCache, TokenRequest};
/// # let refresher = service_fn(|_: TokenRequest| async { Token::bearer("t") });
///
/// let cache = TokenCache::builder(refresher)
///     .refresh_ahead(Duration::from_secs(600))
///     .min_validity(Duration::from_secs(60))
///     .backoff(Duration::from_millis(500), Duration::from_secs(60))
///     .build();
/// ```
pub struct TokenCacheBuilder {
    refresher: Box<dyn Refresh>,
    settings: Settings,
    store: Option<Arc<dyn TokenStore>>,
    store_settings: StoreSettings,
}

#[derive(Debug, Clone)]
pub(super) struct Settings {
    pub(super) windows: Windows,
    backoff_min: Duration,
    backoff_max: Duration,
    pub(super) refresh_timeout: Duration,
    /// The name spans and metrics give the cache, if the user gave it one.
    pub(super) name: Option<Arc<str>>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            windows: Windows::default(),
            backoff_min: Duration::from_secs(1),
            backoff_max: Duration::from_secs(30),
            refresh_timeout: Duration::from_secs(60),
            name: None,
        }
    }
}

impl Settings {
    /// The wait after `consecutive` failures: doubling from the minimum up to the maximum,
    /// between half and all of it at random.
    pub(super) fn backoff(&self, consecutive: u32) -> Duration {
        let doublings = consecutive.saturating_sub(1).min(31);
        let full = self
            .backoff_min
            .saturating_mul(1 << doublings)
            .min(self.backoff_max);
        let half = full / 2;
        half + half.mul_f64(random_fraction())
    }

    /// The wait after a refresh failed with `error`, the `consecutive`th failure in a row: the
    /// refresher's [`RetryAfter`] hint if it gave one, else the backoff.
    pub(super) fn backoff_after(
        &self,
        error: &(dyn Error + 'static),
        consecutive: u32,
    ) -> Duration {
        match RetryAfter::find(error).map(RetryAfter::delay) {
            Some(Some(hinted)) => hinted,
            // Permanent: straight to the longest backoff, still jittered so that replicas
            // refused together do not come back together.
            Some(None) => self.backoff(u32::MAX),
            None => self.backoff(consecutive),
        }
        .min(LONGEST_WAIT)
    }
}

impl TokenCacheBuilder {
    pub(super) fn new(refresher: Box<dyn Refresh>) -> Self {
        TokenCacheBuilder {
            refresher,
            settings: Settings::default(),
            store: None,
            store_settings: StoreSettings::default(),
        }
    }

    /// How long before expiry a background refresh starts, while requests keep using the
    /// token. Never more than a quarter of the token's lifetime, counted from when it was
    /// obtained: a source that gives back the token it holds (GCP's metadata server does until
    /// a few minutes before its expiry) is asked again after three quarters of the life that
    /// token has left, not at once, and so on until it renews it.
    pub fn refresh_ahead(mut self, window: Duration) -> Self {
        self.settings.windows.refresh_ahead = window;
        self
    }

    /// How much validity a token must have left to be sent; with less, requests wait for a
    /// new one. Never more than a tenth of the token's lifetime.
    pub fn min_validity(mut self, validity: Duration) -> Self {
        self.settings.windows.min_validity = validity;
        self
    }

    /// Over what share of the refresh-ahead window each token's background refresh start is
    /// drawn, at random: from `0.0` (off: every refresh starts when the window opens) to `1.0`
    /// (the default: anywhere from the window's start to the minimum validity). Replicas that
    /// got their tokens at the same moment (started by one deploy) otherwise refresh at the
    /// same moment, every time. The point is drawn once per token, when it is stored.
    pub fn refresh_jitter(mut self, share: f64) -> Self {
        self.settings.windows.jitter = if share.is_nan() {
            0.0
        } else {
            share.clamp(0.0, 1.0)
        };
        self
    }

    /// How old a token must be before a 401 may replace it. A younger token's 401 goes back
    /// to the caller, and the token stays. Never more than a tenth of the token's lifetime.
    pub fn min_token_age(mut self, age: Duration) -> Self {
        self.settings.windows.min_token_age = age;
        self
    }

    /// The wait after a failed refresh: `min` after the first failure, doubling after each
    /// further one up to `max`, each drawn at random between half and all of it.
    pub fn backoff(mut self, min: Duration, max: Duration) -> Self {
        self.settings.backoff_min = min;
        self.settings.backoff_max = max.max(min);
        self
    }

    /// How long a refresh may take before it fails with
    /// [`TokenErrorKind::TimedOut`](crate::TokenErrorKind::TimedOut). A backstop, so that a refresher that never answers cannot
    /// hold every waiting request: a refresher's own timeout (stack `tower::timeout` on it)
    /// gives a more precise error.
    pub fn refresh_timeout(mut self, timeout: Duration) -> Self {
        self.settings.refresh_timeout = timeout;
        self
    }

    /// A name for the cache in traces (the `cache` field of its refresh span) and metrics
    /// (the `cache` label), to tell apart several caches in one process: an account, a
    /// provider, an audience. Keep it to a few fixed names; it should not hold a client id or
    /// anything else you would not print. Default: none (the `cache` label is `default`).
    pub fn name(mut self, name: impl Into<Arc<str>>) -> Self {
        self.settings.name = Some(name.into());
        self
    }

    /// Shares tokens with other caches (usually in other processes) through `store`: one
    /// refresh for all of them, where each would otherwise refresh its own.
    ///
    /// The store is consulted only where the cache would call its refresher; a request with a
    /// valid token reads this cache's own copy as without a store. See the
    /// [`store` module](crate::store) for what the cache does with it, and what it does when
    /// the store cannot be reached.
    pub fn store(mut self, store: impl TokenStore) -> Self {
        self.store = Some(Arc::new(store));
        self
    }

    /// How long the right to refresh is held, at most, by a replica that stops renewing it
    /// (one that died mid-refresh): the longest the others wait before one takes over.
    /// A live holder renews it every third of this while its refresher runs. Default: 5 s.
    pub fn lease(mut self, lease: Duration) -> Self {
        self.store_settings.lease = lease.max(Duration::from_millis(3));
        self
    }

    /// How often a replica waiting for another's refresh checks the store, in case it missed
    /// the notification (or the store sends none). Default: 250 ms.
    pub fn store_poll(mut self, interval: Duration) -> Self {
        self.store_settings.poll = interval.max(Duration::from_millis(1));
        self
    }

    /// How long one store call may take before the cache counts the store as unreachable and
    /// refreshes on its own. Default: 1 s.
    pub fn store_timeout(mut self, timeout: Duration) -> Self {
        self.store_settings.timeout = timeout;
        self
    }

    /// The cache.
    pub fn build(self) -> TokenCache {
        let metrics = Metrics::new(self.settings.name.as_ref());
        let store = self
            .store
            .map(|store| StoreLink::new(store, self.store_settings, metrics.clone()));
        TokenCache {
            shared: Arc::new(Shared {
                current: CachePadded(ArcSwapOption::empty()),
                state: Mutex::new(RefreshState::default()),
                refresher: self.refresher,
                store,
                settings: self.settings,
                counters: StatCounters::default(),
                metrics,
                epoch: Instant::now(),
            }),
        }
    }
}

impl fmt::Debug for TokenCacheBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenCacheBuilder")
            .field("settings", &self.settings)
            .field("store", &self.store.is_some())
            .field("store_settings", &self.store_settings)
            .finish_non_exhaustive()
    }
}
