//! A cache's side of a store: one refresh, shared through the store when it can be.

use std::fmt;
use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;
use tower::BoxError;

use super::entry::Refreshed;
use super::metrics::Metrics;
use super::refresher::RefreshFuture;
use crate::error::Causes;
use crate::store::{
    Publish, SharedFailure, SharedToken, StoreError, StoreFuture, StoreStats, TokenStore,
};
use crate::{RefreshReason, Token, TokenRequest};

/// How a refresh through the store failed.
pub(super) enum Failed {
    /// This replica's refresher failed. `backoff`: the wait it decided on as the lease holder
    /// (and published, if the failure was the server's answer), which it waits too.
    Refresher {
        error: BoxError,
        backoff: Option<Backoff>,
    },
    /// Another replica's failure is in force: nobody was called.
    Shared(SharedFailure),
}

impl From<BoxError> for Failed {
    fn from(error: BoxError) -> Self {
        Failed::Refresher {
            error,
            backoff: None,
        }
    }
}

/// The wait after a failure: until when, and how many failures in a row it follows.
#[derive(Debug, Clone, Copy)]
pub(super) struct Backoff {
    pub(super) retry_at: Instant,
    pub(super) consecutive: u32,
}

/// The store a cache shares its tokens through, and how.
pub(super) struct StoreLink {
    store: Arc<dyn TokenStore>,
    /// Names this cache as a lease holder: unique per cache, across processes.
    owner: Arc<str>,
    lease: Duration,
    poll: Duration,
    timeout: Duration,
    counters: StoreCounters,
    metrics: Metrics,
}

/// How a cache uses its store.
#[derive(Debug, Clone, Copy)]
pub(super) struct StoreSettings {
    pub(super) lease: Duration,
    pub(super) poll: Duration,
    pub(super) timeout: Duration,
}

impl Default for StoreSettings {
    fn default() -> Self {
        StoreSettings {
            lease: Duration::from_secs(5),
            poll: Duration::from_millis(250),
            timeout: Duration::from_secs(1),
        }
    }
}

/// The cache's settings, as the builder left them.
impl StoreLink {
    pub(super) fn new(
        store: Arc<dyn TokenStore>,
        settings: StoreSettings,
        metrics: Metrics,
    ) -> Self {
        let random = RandomState::new().hash_one(std::process::id());
        StoreLink {
            store,
            owner: format!("{}-{random:016x}", std::process::id()).into(),
            lease: settings.lease,
            poll: settings.poll,
            timeout: settings.timeout,
            counters: StoreCounters::default(),
            metrics,
        }
    }

    /// What the store has done for this cache.
    pub(super) fn stats(&self) -> StoreStats {
        self.counters.snapshot()
    }

    /// Gets a new token for a cache whose own is `previous`: the store's if it is newer and
    /// `good_enough` says it will do, else one from `refresher` under the lease, published for the
    /// others. When the store cannot be reached, from `refresher` alone.
    ///
    /// While a failure another replica published is in force, fails at once with it. When
    /// this replica's refresher fails under the lease, `backoff` decides the wait (given the
    /// failures in a row the store knew of), and a failure the server answered is published
    /// with it before the lease is let go.
    pub(super) async fn refresh<U, F, B>(
        &self,
        reason: RefreshReason,
        previous: Option<Token>,
        good_enough: U,
        refresher: F,
        backoff: B,
    ) -> Result<Refreshed, Failed>
    where
        U: Fn(&SharedToken) -> bool,
        F: FnOnce(TokenRequest) -> RefreshFuture,
        B: FnOnce(&BoxError, u32) -> Backoff,
    {
        // A store call that fails (an outage, a timeout) hands the refresh to this replica
        // alone: whatever step it failed at, the refresher is called as without a store.
        match self
            .through_store(reason, previous.as_ref(), good_enough)
            .await
        {
            Ok(Shared::Taken(got)) => got,
            Ok(Shared::Leased {
                lease,
                shared,
                failure,
            }) => {
                self.refresh_leased(lease, reason, previous, shared, failure, refresher, backoff)
                    .await
            }
            Err(_) => {
                self.refresh_without_store(reason, previous, refresher)
                    .await
            }
        }
    }

    /// The store's part of a refresh: a token to adopt, the fleet's failure to wait out, or the
    /// lease to refresh under; waits while another replica holds the lease.
    async fn through_store<U>(
        &self,
        reason: RefreshReason,
        previous: Option<&Token>,
        good_enough: U,
    ) -> Result<Shared, StoreError>
    where
        U: Fn(&SharedToken) -> bool,
    {
        // Subscribed before the first load, so no publish after it goes unnoticed.
        let mut notes = self.store.notifications();
        let adoptable = |shared: &SharedToken| {
            let newer = previous.is_none_or(|p| p.authorization() != shared.token.authorization());
            newer && good_enough(shared)
        };
        let mut waited = false;
        loop {
            let shared = self.call(self.store.load()).await?;
            StoreCounters::add(&self.counters.loads);
            if let Some(shared) = shared.as_ref().filter(|s| adoptable(s)) {
                return Ok(Shared::Taken(Ok(self.adopt(shared))));
            }
            // Read where a refresher call would follow, never on the hot path.
            let failure = self.call(self.store.load_failure()).await?;
            if let Some(failure) = failure.as_ref().filter(|f| in_force(f, Instant::now())) {
                StoreCounters::add(&self.counters.failures_adopted);
                self.metrics.store("failure_adopted");
                tracing::Span::current().record("store", "failure_adopted");
                tracing::debug!(
                    reason = reason.as_str(),
                    consecutive = failure.consecutive,
                    "another replica's refresh failed; waiting out its backoff"
                );
                return Ok(Shared::Taken(Err(Failed::Shared(failure.clone()))));
            }
            if self
                .call(self.store.try_lease(&self.owner, self.lease))
                .await?
            {
                StoreCounters::add(&self.counters.leases_won);
                self.metrics.store("lease_won");
                tracing::debug!(
                    reason = reason.as_str(),
                    "took the refresh lease; this replica refreshes for all"
                );
                let lease = Lease(Some((self.store.clone(), self.owner.clone())));
                // Someone may have published between the load and the lease. (A failed load
                // drops the lease, which lets it go.)
                let shared = self.call(self.store.load()).await?;
                StoreCounters::add(&self.counters.loads);
                if let Some(shared) = shared.as_ref().filter(|s| adoptable(s)) {
                    let got = self.adopt(shared);
                    self.release(lease).await;
                    return Ok(Shared::Taken(Ok(got)));
                }
                return Ok(Shared::Leased {
                    lease,
                    shared,
                    failure,
                });
            }
            if !waited {
                waited = true;
                StoreCounters::add(&self.counters.leases_lost);
                self.metrics.store("lease_lost");
                tracing::debug!(
                    reason = reason.as_str(),
                    "another replica holds the refresh lease; waiting for its token"
                );
            }
            // A notification, or the poll interval, whichever comes first.
            let _ = tokio::time::timeout(self.poll, notes.notified()).await;
        }
    }

    fn adopt(&self, shared: &SharedToken) -> Refreshed {
        StoreCounters::add(&self.counters.adopted);
        self.metrics.store("adopted");
        // The refresh span: the token came from the store, not from this replica's refresher.
        tracing::Span::current().record("store", "adopted");
        tracing::debug!(
            generation = shared.generation,
            "took the shared token from the store"
        );
        Refreshed {
            token: shared.token.clone(),
            obtained: Some(shared.obtained),
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn refresh_leased<F, B>(
        &self,
        lease: Lease,
        reason: RefreshReason,
        previous: Option<Token>,
        shared: Option<SharedToken>,
        failure: Option<SharedFailure>,
        refresher: F,
        backoff: B,
    ) -> Result<Refreshed, Failed>
    where
        F: FnOnce(TokenRequest) -> RefreshFuture,
        B: FnOnce(&BoxError, u32) -> Backoff,
    {
        let replaces = shared.as_ref().map_or(0, |s| s.generation);
        // The shared token's refresh token is the live one: this cache's own may have been
        // used, or ended by a login, in another replica.
        let previous = shared.map(|s| s.token).or(previous);
        let mut call = refresher(TokenRequest::new(reason, previous));
        let every = self.lease / 3;
        let result = loop {
            match tokio::time::timeout(every, &mut call).await {
                Ok(result) => break result,
                Err(_) => {
                    if let Ok(false) = self.call(self.store.renew(&self.owner, self.lease)).await {
                        self.metrics.store("lease_expired");
                        tracing::debug!("the refresh lease ran out before the refresh ended");
                    }
                }
            }
        };
        let token = match result {
            Ok(token) => token,
            Err(error) => {
                let backoff = backoff(&error, failure.map_or(0, |f| f.consecutive));
                self.share_failure(&error, backoff).await;
                self.release(lease).await;
                return Err(Failed::Refresher {
                    error,
                    backoff: Some(backoff),
                });
            }
        };
        match self.call(self.store.publish(replaces, &token)).await {
            Ok(Publish::Published { generation }) => {
                StoreCounters::add(&self.counters.publishes);
                self.metrics.store("published");
                tracing::Span::current().record("store", "published");
                tracing::debug!(generation, "published the new token");
                if failure.is_some() {
                    // The fleet's backoff is over: a token is there to take.
                    let _ = self.call(self.store.clear_failure()).await;
                }
            }
            Ok(Publish::Refused { current }) => {
                StoreCounters::add(&self.counters.refused);
                self.metrics.store("publish_refused");
                tracing::Span::current().record("store", "publish_refused");
                tracing::debug!(
                    replaces,
                    current,
                    "the store moved on during the refresh; the new token stays local"
                );
            }
            Err(_) => {
                tracing::Span::current().record("store", "publish_failed");
            }
        }
        self.release(lease).await;
        Ok(Refreshed::now(token))
    }

    /// Publishes the lease holder's failure, if the authorization server answered it, for the
    /// replicas to wait out `backoff` rather than call the server too.
    async fn share_failure(&self, error: &BoxError, backoff: Backoff) {
        let Some(failure) = SharedFailure::of(&**error, backoff.retry_at, backoff.consecutive)
        else {
            tracing::debug!("the refresh failed without the server's answer; not shared");
            return;
        };
        // Kept past its end for as long again, so that the next replica to fail doubles the
        // backoff from there; it ends by itself.
        let left = backoff.retry_at.saturating_duration_since(Instant::now());
        let keep = (left * 2).max(Duration::from_millis(1));
        if let Ok(true) = self.call(self.store.publish_failure(&failure, keep)).await {
            StoreCounters::add(&self.counters.failures_published);
            self.metrics.store("failure_published");
            tracing::Span::current().record("store", "failure_published");
            tracing::info!(
                status = failure.status.as_u16(),
                consecutive = failure.consecutive,
                backoff_ms = left.as_millis() as u64,
                "the refresh failed with the server's answer; the replicas back off together"
            );
        }
    }

    async fn release(&self, mut lease: Lease) {
        lease.0 = None;
        let _ = self.call(self.store.release(&self.owner)).await;
    }

    async fn refresh_without_store<F>(
        &self,
        reason: RefreshReason,
        previous: Option<Token>,
        refresher: F,
    ) -> Result<Refreshed, Failed>
    where
        F: FnOnce(TokenRequest) -> RefreshFuture,
    {
        StoreCounters::add(&self.counters.local_refreshes);
        tracing::Span::current().record("store", "unavailable");
        let token = refresher(TokenRequest::new(reason, previous)).await?;
        Ok(Refreshed::now(token))
    }

    /// One store call, within the timeout; notes outages beginning and ending.
    async fn call<T>(&self, call: StoreFuture<'_, T>) -> Result<T, StoreError> {
        let result = match tokio::time::timeout(self.timeout, call).await {
            Ok(result) => result,
            Err(_) => Err(StoreError::msg("the token store did not answer in time")),
        };
        match &result {
            Ok(_) => {
                if self.counters.succeeded() {
                    self.metrics.store("available");
                    tracing::info!("token store reachable again; sharing tokens through it");
                }
            }
            Err(error) if error.is_misconfigured() => {
                self.metrics.store("misconfigured");
                tracing::error!(
                    error = %error,
                    "the token store cannot hold this cache's tokens; refreshing alone"
                );
            }
            Err(error) => {
                self.metrics.store("error");
                if self.counters.failed() {
                    self.metrics.store("unavailable");
                    tracing::warn!(
                        error = %error,
                        causes = %Causes(error),
                        "token store unreachable; refreshing tokens alone until it is back"
                    );
                } else {
                    tracing::debug!(error = %error, "token store still unreachable");
                }
            }
        }
        result
    }
}

impl fmt::Debug for StoreLink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoreLink")
            .field("lease", &self.lease)
            .field("poll", &self.poll)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// Whether the replicas still wait for `failure` at `now`.
fn in_force(failure: &SharedFailure, now: Instant) -> bool {
    failure.retry_in(now).is_some()
}

/// What the store decided of a refresh.
enum Shared {
    /// The refresh is over: a token adopted, or the fleet's failure to wait out.
    Taken(Result<Refreshed, Failed>),
    /// This replica holds the lease, and calls the refresher for all, replacing `shared` (the
    /// store's token, if any); `failure` is the fleet's last, which its backoff grows from.
    Leased {
        lease: Lease,
        shared: Option<SharedToken>,
        failure: Option<SharedFailure>,
    },
}

/// A lease held; if the refresh is dropped before releasing it (a timeout, a runtime shutting
/// down), it is released in the background rather than left to run out.
struct Lease(Option<(Arc<dyn TokenStore>, Arc<str>)>);

impl Drop for Lease {
    fn drop(&mut self) {
        let Some((store, owner)) = self.0.take() else {
            return;
        };
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let _ = tokio::time::timeout(Duration::from_secs(5), store.release(&owner)).await;
            });
        }
    }
}

// ===== what the cache counts about its store =====

#[derive(Default)]
struct StoreCounters {
    loads: AtomicU64,
    adopted: AtomicU64,
    leases_won: AtomicU64,
    leases_lost: AtomicU64,
    publishes: AtomicU64,
    refused: AtomicU64,
    errors: AtomicU64,
    local_refreshes: AtomicU64,
    failures_published: AtomicU64,
    failures_adopted: AtomicU64,
    unavailable: AtomicBool,
    since: Mutex<Option<Instant>>,
}

impl StoreCounters {
    fn add(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Records a failed store call; `true` if this starts an outage (the caller warns once).
    fn failed(&self) -> bool {
        Self::add(&self.errors);
        let started = !self.unavailable.swap(true, Ordering::Relaxed);
        if started {
            *crate::sync::lock(&self.since) = Some(Instant::now());
        }
        started
    }

    /// Records a successful store call; `true` if this ends an outage.
    fn succeeded(&self) -> bool {
        if !self.unavailable.load(Ordering::Relaxed) {
            return false;
        }
        let ended = self.unavailable.swap(false, Ordering::Relaxed);
        if ended {
            *crate::sync::lock(&self.since) = None;
        }
        ended
    }

    fn snapshot(&self) -> StoreStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let since = *crate::sync::lock(&self.since);
        StoreStats {
            loads: get(&self.loads),
            adopted: get(&self.adopted),
            leases_won: get(&self.leases_won),
            leases_lost: get(&self.leases_lost),
            publishes: get(&self.publishes),
            refused: get(&self.refused),
            errors: get(&self.errors),
            local_refreshes: get(&self.local_refreshes),
            failures_published: get(&self.failures_published),
            failures_adopted: get(&self.failures_adopted),
            unavailable: self.unavailable.load(Ordering::Relaxed),
            unavailable_for: since.map(|at| Instant::now().saturating_duration_since(at)),
        }
    }
}
