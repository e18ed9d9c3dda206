//! The shared token cache: one token, one refresh at a time, refreshed ahead of expiry.

use std::fmt;
use std::future::Future;
use std::hash::{BuildHasher, RandomState};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use http::HeaderValue;
use tokio::sync::watch;
use tokio::time::Instant;
use tower::{BoxError, Service};

use crate::alarm::Alarm;
use crate::error::{Causes, RetryAfter, TokenError, TokenErrorKind};
use crate::store::{Got, SharedToken, StoreLink, StoreStats, TokenStore};
use crate::{RefreshReason, Token, TokenRequest};

/// The token every request shares, and the one refresh that replaces it.
///
/// A `TokenCache` holds the current [`Token`] and the refresher that makes new ones. It is
/// cheap to clone: every clone, and every [`BearerAuth`](crate::BearerAuth) service built from
/// it, reads the same token and waits on the same refresh. Build one per account and hand it
/// to as many layers as use that account.
///
/// A token goes through three windows (the durations are [settings](TokenCacheBuilder)):
///
/// | the token is | a request |
/// | --- | --- |
/// | fresh | uses it: an atomic load, no lock |
/// | in the refresh-ahead window | uses it; the first to notice starts one background refresh |
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
    current: OwnLine<ArcSwapOption<Entry>>,
    /// Everything else: the refresh in flight and the last failure.
    state: Mutex<State>,
    refresher: Box<dyn Refresh>,
    /// Where tokens are shared with other caches, if anywhere.
    store: Option<StoreLink>,
    settings: Settings,
    counters: Counters,
    /// The origin of `Entry::next_ahead`, which is an atomic count of nanoseconds.
    epoch: Instant,
}

/// A token as the cache holds it.
pub(crate) struct Entry {
    pub(crate) token: Token,
    pub(crate) generation: u64,
    obtained: Instant,
    /// The refresh-ahead window starts here.
    refresh_at: Option<Instant>,
    /// From here on, requests wait for a new token rather than use this one.
    stale_at: Option<Instant>,
    /// A 401 does not replace the token before this.
    replaceable_at: Instant,
    /// A server answered 401 to it (and it was old enough to believe).
    rejected: bool,
    /// When a background refresh may next start, in nanoseconds since `Shared::epoch`:
    /// `CLAIMED` once a request has started one, later if one failed and is backing off.
    next_ahead: AtomicU64,
    /// Rings shortly before the first window opens; until then, the hot path need not read
    /// the clock.
    alarm: Alarm,
}

const CLAIMED: u64 = u64::MAX;

/// The longest the cache waits, whatever a hint or a setting says: a year is "not soon", and
/// keeps every `Instant` and nanosecond count in range.
const LONGEST_WAIT: Duration = Duration::from_secs(365 * 24 * 60 * 60);

#[derive(Default)]
struct State {
    flight: Option<Flight>,
    failure: Option<Failure>,
    generation: u64,
    flights: u64,
}

struct Flight {
    id: u64,
    reason: RefreshReason,
    /// Waiters subscribe to it; the flight's end sends the outcome.
    done: watch::Sender<Option<Outcome>>,
}

struct Failure {
    error: TokenError,
    retry_at: Instant,
    consecutive: u32,
}

type Outcome = Result<Arc<Entry>, TokenError>;

/// Aligned to 128 bytes: a cache line, and the pair of lines some CPUs prefetch together.
#[repr(align(128))]
struct OwnLine<T>(T);

impl<T> std::ops::Deref for OwnLine<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

/// One service's view of the current token.
///
/// It keeps the entry it last read and, on each request, compares it with the cache's
/// current one by a plain load of the shared pointer: no lock and no shared write, where
/// `ArcSwap::load` takes and releases a slot with two atomic read-modify-writes (12 ns of a
/// 95 ns request, measured). The price is that a service keeps the entry it last used alive
/// until its next request.
#[derive(Clone)]
pub(crate) struct Reader(arc_swap::Cache<CurrentOf, Option<Arc<Entry>>>);

/// What a [`Reader`] revalidates against.
#[derive(Clone)]
pub(crate) struct CurrentOf(Arc<Shared>);

impl std::ops::Deref for CurrentOf {
    type Target = ArcSwapOption<Entry>;

    fn deref(&self) -> &Self::Target {
        &self.0.current
    }
}

impl fmt::Debug for Reader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reader").finish_non_exhaustive()
    }
}

/// What a request does when the hot path has no token for it.
pub(crate) enum Acquire {
    Ready(Arc<Entry>),
    Wait(Waiting),
    Failed(TokenError),
}

/// What a request does after a 401.
pub(crate) enum Rejection {
    /// Send it again with the token this gives.
    Retry(Acquire),
    /// The token was too young to blame: give the 401 back.
    TooYoung,
}

/// A request waiting for the refresh in flight.
pub(crate) struct Waiting {
    reason: RefreshReason,
    done: watch::Receiver<Option<Outcome>>,
    /// To wait again if the waiter is polled too late for the token it waited for.
    cache: TokenCache,
}

pub(crate) type WaitFuture = Pin<Box<dyn Future<Output = Outcome> + Send + Sync>>;

impl Waiting {
    pub(crate) fn into_future(self) -> WaitFuture {
        let Waiting {
            mut reason,
            mut done,
            cache,
        } = self;
        Box::pin(async move {
            loop {
                let entry = match done.wait_for(Option::is_some).await {
                    Ok(outcome) => outcome.clone().expect("waited for an outcome")?,
                    // The flight's guard always sends; this is a runtime dropping the task
                    // mid-way.
                    Err(_) => return Err(TokenError::new(reason, TokenErrorKind::Abandoned)),
                };
                if entry.usable(Instant::now()) {
                    return Ok(entry);
                }
                // Woken in time, but polled so late (a starved task) that the token is
                // already stale: wait for the next one rather than hand out this one.
                match cache.acquire() {
                    Acquire::Ready(entry) => return Ok(entry),
                    Acquire::Failed(err) => return Err(err),
                    Acquire::Wait(next) => (reason, done) = (next.reason, next.done),
                }
            }
        })
    }
}

impl Acquire {
    pub(crate) fn into_future(self) -> WaitFuture {
        match self {
            Acquire::Ready(entry) => Box::pin(std::future::ready(Ok(entry))),
            Acquire::Wait(waiting) => waiting.into_future(),
            Acquire::Failed(err) => Box::pin(std::future::ready(Err(err))),
        }
    }
}

// ===== impl TokenCache =====

impl TokenCache {
    /// A cache with the default settings, getting its tokens from `refresher`.
    ///
    /// A refresher is any [`Service`] from [`TokenRequest`] to [`Token`]: stack `timeout`,
    /// `retry` or `rate_limit` on it with `ServiceBuilder` as on any service. The cache keeps
    /// the one instance, drives it ready and calls it once per refresh, so its readiness
    /// (a rate limit, say) is respected.
    pub fn new<R>(refresher: R) -> Self
    where
        R: Service<TokenRequest, Response = Token> + Send + 'static,
        R::Future: Send + 'static,
        R::Error: Into<BoxError>,
    {
        TokenCache::builder(refresher).build()
    }

    /// A builder, to change the settings from their defaults.
    pub fn builder<R>(refresher: R) -> TokenCacheBuilder
    where
        R: Service<TokenRequest, Response = Token> + Send + 'static,
        R::Future: Send + 'static,
        R::Error: Into<BoxError>,
    {
        TokenCacheBuilder {
            refresher: Box::new(Arc::new(tokio::sync::Mutex::new(refresher))),
            settings: Settings::default(),
            store: None,
            store_settings: StoreSettings::default(),
        }
    }

    /// The current token, waiting for a refresh if it is absent, expired or about to expire.
    pub async fn token(&self) -> Result<Token, TokenError> {
        let entry = match self.fresh() {
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
    pub async fn reject(&self, token: &Token) -> Result<Token, TokenError> {
        let current = self.shared.current.load_full();
        let Some(entry) = current.filter(|e| e.token.authorization() == token.authorization())
        else {
            return self.token().await;
        };
        match self.rejected(entry.generation) {
            Rejection::Retry(acquire) => Ok(acquire.into_future().await?.token.clone()),
            Rejection::TooYoung => Ok(entry.token.clone()),
        }
    }

    /// A snapshot of what the cache has done, for an operator.
    pub fn stats(&self) -> Stats {
        let now = Instant::now();
        let counters = &self.shared.counters;
        let current = self.shared.current.load();
        let state = self.state();
        Stats {
            refreshes: RefreshReason::ALL.map(|reason| counters.refresh(reason)),
            unauthorized: counters.unauthorized.load(Ordering::Relaxed),
            retried: counters.retried.load(Ordering::Relaxed),
            not_replaced: counters.not_replaced.load(Ordering::Relaxed),
            generation: current.as_ref().map_or(0, |e| e.generation),
            age: current
                .as_ref()
                .map(|e| now.saturating_duration_since(e.obtained)),
            expires_in: current
                .as_ref()
                .and_then(|e| e.token.expiry())
                .map(|at| at.saturating_duration_since(now)),
            refreshing: state.flight.is_some(),
            waiting: state.flight.as_ref().map_or(0, |f| f.done.receiver_count()),
            backing_off: state
                .failure
                .as_ref()
                .map(|f| f.retry_at.saturating_duration_since(now))
                .filter(|d| !d.is_zero()),
            store: self.shared.store.as_ref().map(|s| s.counters.snapshot()),
        }
    }

    // ----- what the service uses -----

    /// A reader of the current token for one service (see [`Reader`]).
    pub(crate) fn reader(&self) -> Reader {
        Reader(arc_swap::Cache::new(CurrentOf(self.shared.clone())))
    }

    /// The hot path: the current token if a request may use it as it is.
    ///
    /// Starts the background refresh when the token has entered the refresh-ahead window.
    #[inline]
    pub(crate) fn fresh_header(&self, reader: &mut Reader) -> Option<(HeaderValue, u64)> {
        let entry = reader.0.load().as_ref()?;
        self.admits(entry)
            .then(|| (entry.token.authorization().clone(), entry.generation))
    }

    fn fresh(&self) -> Option<Arc<Entry>> {
        self.shared.current.load_full().filter(|e| self.admits(e))
    }

    /// Whether a request may use `entry` as it is; starts the background refresh if it is in
    /// its refresh-ahead window.
    #[inline]
    fn admits(&self, entry: &Entry) -> bool {
        if !entry.alarm.has_rung() {
            // Its windows are more than a second away.
            return true;
        }
        let now = Instant::now();
        if !entry.usable(now) {
            return false;
        }
        if entry.refresh_at.is_some_and(|at| now >= at) {
            self.maybe_refresh_ahead(entry, now);
        }
        true
    }

    /// The slow path: a token to wait for, or the error that says none can be had now.
    pub(crate) fn acquire(&self) -> Acquire {
        let now = Instant::now();
        let mut state = self.state();
        let current = self.shared.current.load_full();
        let reason = match &current {
            Some(entry) if entry.usable(now) => return Acquire::Ready(entry.clone()),
            None => RefreshReason::Initial,
            Some(entry) if entry.rejected => RefreshReason::Rejected,
            Some(_) => RefreshReason::Expired,
        };
        let started = self.join_or_start(&mut state, reason, current.as_deref(), now);
        drop(state);
        started.launch()
    }

    /// A server answered 401 to a request sent with the token of `generation`.
    pub(crate) fn rejected(&self, generation: u64) -> Rejection {
        let now = Instant::now();
        let counters = &self.shared.counters;
        counters.unauthorized.fetch_add(1, Ordering::Relaxed);
        let mut state = self.state();
        let Some(entry) = self.shared.current.load_full() else {
            drop(state);
            return Rejection::Retry(self.acquire());
        };
        if entry.generation != generation {
            // The cache has moved on since the request was sent: no refresh, just the
            // current token.
            tracing::debug!(
                generation,
                current = entry.generation,
                "401 for a replaced token; retrying with the current one"
            );
            drop(state);
            return Rejection::Retry(self.acquire());
        }
        if now < entry.replaceable_at {
            counters.not_replaced.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(
                generation,
                "401 for a token younger than the minimum age; not replacing it"
            );
            return Rejection::TooYoung;
        }
        tracing::debug!(generation, "401: forcing a refresh");
        let rejected = if entry.rejected {
            entry
        } else {
            // Requests arriving from now on wait for the replacement rather than being sent
            // with a token the server has refused.
            let rejected = Arc::new(entry.rejected_copy());
            self.shared.current.store(Some(rejected.clone()));
            rejected
        };
        let started = self.join_or_start(&mut state, RefreshReason::Rejected, Some(&rejected), now);
        drop(state);
        Rejection::Retry(started.launch())
    }

    pub(crate) fn count_retry(&self) {
        self.shared.counters.retried.fetch_add(1, Ordering::Relaxed);
    }

    // ----- refreshing -----

    fn maybe_refresh_ahead(&self, entry: &Entry, now: Instant) {
        let now_ns = self.nanos(now);
        let next = entry.next_ahead.load(Ordering::Relaxed);
        if now_ns < next
            || entry
                .next_ahead
                .compare_exchange(next, CLAIMED, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        let mut state = self.state();
        if state.flight.is_some() {
            // Whatever is in flight replaces this token, or on failure sets the next attempt.
            return;
        }
        if self
            .shared
            .current
            .load()
            .as_ref()
            .is_none_or(|current| current.generation != entry.generation || current.rejected)
        {
            // A reader's stale entry: it has been replaced already, and its refresh token may
            // have been spent on the replacement.
            return;
        }
        if let Some(failure) = &state.failure {
            if now < failure.retry_at {
                entry
                    .next_ahead
                    .store(self.nanos(failure.retry_at), Ordering::Relaxed);
                return;
            }
        }
        let started = self.start(&mut state, RefreshReason::Ahead, Some(entry));
        drop(state);
        // Nobody waits for a background refresh.
        let _ = started.launch();
    }

    fn join_or_start(
        &self,
        state: &mut State,
        reason: RefreshReason,
        previous: Option<&Entry>,
        now: Instant,
    ) -> Started {
        if let Some(flight) = &state.flight {
            return Started::joined(Acquire::Wait(Waiting {
                reason: flight.reason,
                done: flight.done.subscribe(),
                cache: self.clone(),
            }));
        }
        if let Some(failure) = &state.failure {
            if now < failure.retry_at {
                let err = failure.error.backing_off(failure.retry_at - now);
                return Started::joined(Acquire::Failed(err));
            }
        }
        self.start(state, reason, previous)
    }

    /// Registers a new flight; the caller launches it once it has let go of the lock.
    fn start(&self, state: &mut State, reason: RefreshReason, previous: Option<&Entry>) -> Started {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            let err = TokenError::new(reason, TokenErrorKind::NoRuntime);
            return Started::joined(Acquire::Failed(err));
        };
        let (tx, done) = watch::channel(None);
        state.flights += 1;
        let id = state.flights;
        state.flight = Some(Flight {
            id,
            reason,
            done: tx,
        });
        self.shared.counters.started[reason.index()].fetch_add(1, Ordering::Relaxed);
        tracing::debug!(
            reason = reason.as_str(),
            generation = previous.map_or(0, |e| e.generation),
            "token refresh started"
        );
        let previous = previous.map(|e| e.token.clone());
        let refresh: FlightFuture = if self.shared.store.is_some() {
            let cache = self.clone();
            Box::pin(async move {
                let shared = &*cache.shared;
                let link = shared
                    .store
                    .as_ref()
                    .expect("checked when the flight started");
                link.refresh(
                    reason,
                    previous,
                    |token| shared.settings.will_do(token, reason),
                    |request| shared.refresher.refresh(request),
                )
                .await
            })
        } else {
            let refresh = self
                .shared
                .refresher
                .refresh(TokenRequest::new(reason, previous));
            Box::pin(async move {
                refresh.await.map(|token| Got {
                    token,
                    obtained: None,
                })
            })
        };
        let flight = FlightGuard {
            cache: self.clone(),
            id,
            reason,
            started: Instant::now(),
            finished: false,
        };
        Started {
            acquire: Acquire::Wait(Waiting {
                reason,
                done,
                cache: self.clone(),
            }),
            launch: Some(Launch {
                runtime,
                flight,
                refresh,
            }),
        }
    }

    /// Records the end of flight `id` and wakes everyone waiting for it.
    fn finish(
        &self,
        id: u64,
        reason: RefreshReason,
        started: Instant,
        result: Result<Got, TokenError>,
    ) {
        let now = Instant::now();
        let shared = &*self.shared;
        let elapsed_ms = now.saturating_duration_since(started).as_millis() as u64;
        let mut state = self.state();
        let Some(flight) = state.flight.take_if(|f| f.id == id) else {
            return;
        };
        let result = result.and_then(|got| match got.token.expiry() {
            Some(at) if at <= now => Err(TokenError::new(reason, TokenErrorKind::ExpiredToken)),
            _ => Ok(got),
        });
        let outcome = match result {
            Ok(Got { token, obtained }) => {
                state.generation += 1;
                state.failure = None;
                let obtained = obtained.map_or(now, |at| at.min(now));
                let entry = Entry::new(token, state.generation, obtained, &shared.settings);
                let entry = Arc::new(entry.armed());
                shared.current.store(Some(entry.clone()));
                shared.counters.succeeded[reason.index()].fetch_add(1, Ordering::Relaxed);
                tracing::debug!(
                    reason = reason.as_str(),
                    generation = entry.generation,
                    elapsed_ms,
                    expires_in_s = entry.token.expiry().map(|at| (at - now).as_secs()),
                    "token refreshed"
                );
                Ok(entry)
            }
            Err(error) => {
                let consecutive = state.failure.as_ref().map_or(1, |f| f.consecutive + 1);
                let delay = match RetryAfter::find(&error) {
                    Some(Some(hinted)) => hinted,
                    // Permanent: straight to the longest backoff, still jittered so that
                    // replicas refused together do not come back together.
                    Some(None) => shared.settings.backoff(u32::MAX),
                    None => shared.settings.backoff(consecutive),
                }
                .min(LONGEST_WAIT);
                let retry_at = now + delay;
                if let Some(current) = &*shared.current.load() {
                    // A background refresh waits out the backoff too.
                    current
                        .next_ahead
                        .store(self.nanos(retry_at), Ordering::Relaxed);
                }
                shared.counters.failed[reason.index()].fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    reason = reason.as_str(),
                    elapsed_ms,
                    backoff_ms = delay.as_millis() as u64,
                    consecutive,
                    error = %error,
                    causes = %Causes(&error),
                    "token refresh failed"
                );
                state.failure = Some(Failure {
                    error: error.clone(),
                    retry_at,
                    consecutive,
                });
                Err(error)
            }
        };
        drop(state);
        flight.done.send_replace(Some(outcome));
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // Nothing panics while holding the lock; if something did, the state is still whole.
        self.shared
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
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
                &current
                    .as_ref()
                    .and_then(|e| e.token.expiry())
                    .map(|at| at.saturating_duration_since(Instant::now())),
            )
            .field("settings", &self.shared.settings)
            .field("store", &self.shared.store)
            .finish_non_exhaustive()
    }
}

/// What a request gets from the slow path, and the refresh it started, if it started one.
#[must_use]
struct Started {
    acquire: Acquire,
    launch: Option<Launch>,
}

/// A refresh registered under the lock, to be spawned once the lock is released: a runtime
/// that is shutting down drops a new task at once, and the task's guard then takes the lock.
struct Launch {
    runtime: tokio::runtime::Handle,
    flight: FlightGuard,
    refresh: FlightFuture,
}

impl Started {
    fn joined(acquire: Acquire) -> Self {
        Started {
            acquire,
            launch: None,
        }
    }

    fn launch(self) -> Acquire {
        if let Some(Launch {
            runtime,
            flight,
            refresh,
        }) = self.launch
        {
            runtime.spawn(flight.run(refresh));
        }
        self.acquire
    }
}

/// Owns a refresh while it runs; if it is dropped before the refresh ends (the refresher
/// panicked, the runtime shut down), its waiters are told rather than left waiting.
struct FlightGuard {
    cache: TokenCache,
    id: u64,
    reason: RefreshReason,
    started: Instant,
    finished: bool,
}

impl FlightGuard {
    async fn run(mut self, refresh: FlightFuture) {
        let deadline = self.cache.shared.settings.refresh_timeout;
        let result = match tokio::time::timeout(deadline, refresh).await {
            Ok(result) => result.map_err(|err| TokenError::refresher(self.reason, err)),
            Err(_) => Err(TokenError::new(
                self.reason,
                TokenErrorKind::TimedOut { after: deadline },
            )),
        };
        self.finished = true;
        self.cache
            .finish(self.id, self.reason, self.started, result);
    }
}

impl Drop for FlightGuard {
    fn drop(&mut self) {
        if !self.finished {
            let abandoned = TokenError::new(self.reason, TokenErrorKind::Abandoned);
            self.cache
                .finish(self.id, self.reason, self.started, Err(abandoned));
        }
    }
}

// ===== impl Entry =====

impl Entry {
    /// A token obtained at `obtained` (now, or earlier for one taken from a store): the
    /// windows are fractions of its lifetime from then.
    fn new(token: Token, generation: u64, obtained: Instant, settings: &Settings) -> Self {
        let lifetime = token
            .expiry()
            .map(|at| at.saturating_duration_since(obtained));
        // Windows shrink with short lifetimes, so a 60 s token is not refreshed for its whole
        // life.
        let within = |setting: Duration, divisor: u32| match lifetime {
            Some(lifetime) => setting.min(lifetime / divisor),
            None => setting,
        };
        let expiry = token.expiry();
        Entry {
            generation,
            obtained,
            refresh_at: expiry.map(|at| at - within(settings.refresh_ahead, 4)),
            stale_at: expiry.map(|at| at - within(settings.min_validity, 10)),
            replaceable_at: obtained + within(settings.min_token_age, 10).min(LONGEST_WAIT),
            rejected: false,
            next_ahead: AtomicU64::new(0),
            alarm: Alarm::rung(),
            token,
        }
    }

    /// With an alarm that rings before the first of its windows opens, for an entry the hot
    /// path will read (an entry is made with one that has rung, so the clock is read).
    fn armed(self) -> Self {
        // Both windows are set from the expiry, or neither is.
        let alarm = match self.refresh_at.zip(self.stale_at) {
            Some((ahead, stale)) => Alarm::before(ahead.min(stale)),
            None => Alarm::never(),
        };
        Entry { alarm, ..self }
    }

    fn rejected_copy(&self) -> Self {
        Entry {
            token: self.token.clone(),
            generation: self.generation,
            obtained: self.obtained,
            refresh_at: self.refresh_at,
            stale_at: self.stale_at,
            replaceable_at: self.replaceable_at,
            rejected: true,
            next_ahead: AtomicU64::new(CLAIMED),
            alarm: Alarm::rung(),
        }
    }

    #[inline]
    fn usable(&self, now: Instant) -> bool {
        !self.rejected && self.stale_at.is_none_or(|at| now < at)
    }
}

// ===== the refresher, erased =====

pub(crate) type RefreshFuture = Pin<Box<dyn Future<Output = Result<Token, BoxError>> + Send>>;

/// A flight's work: the refresher's call, or a refresh shared through a store.
type FlightFuture = Pin<Box<dyn Future<Output = Result<Got, BoxError>> + Send>>;

trait Refresh: Send + Sync + 'static {
    fn refresh(&self, request: TokenRequest) -> RefreshFuture;
}

impl<R> Refresh for Arc<tokio::sync::Mutex<R>>
where
    R: Service<TokenRequest, Response = Token> + Send + 'static,
    R::Future: Send + 'static,
    R::Error: Into<BoxError>,
{
    fn refresh(&self, request: TokenRequest) -> RefreshFuture {
        let refresher = self.clone();
        Box::pin(async move {
            // Never contended: there is one refresh at a time. It is a lock only so that
            // the one refresher instance can be driven ready across an await.
            let mut refresher = refresher.lock_owned().await;
            std::future::poll_fn(|cx| refresher.poll_ready(cx))
                .await
                .map_err(Into::into)?;
            let call = refresher.call(request);
            drop(refresher);
            call.await.map_err(Into::into)
        })
    }
}

// ===== settings =====

/// Builds a [`TokenCache`] with settings other than the defaults.
///
/// | setting | default | why |
/// | --- | --- | --- |
/// | [`refresh_ahead`](Self::refresh_ahead) | 5 min, at most ¼ of the token's lifetime | a background refresh has minutes to succeed, or to fail and be retried, before anyone waits |
/// | [`min_validity`](Self::min_validity) | 30 s, at most 1/10 of the lifetime | a request sent with the token reaches the server, and is checked there, before it expires |
/// | [`min_token_age`](Self::min_token_age) | 5 s, at most 1/10 of the lifetime | a 401 for a token just issued is the server refusing for another reason; replacing it again would not help |
/// | [`backoff`](Self::backoff) | 1 s doubling to 30 s, with jitter | a failing provider is not hammered, and replicas that failed together do not retry together |
/// | [`refresh_timeout`](Self::refresh_timeout) | 60 s | a refresher that never answers fails its waiters instead of holding them |
///
/// A refresher's [`RetryAfter`] hint takes the place of the backoff for the failure it
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

#[derive(Debug, Clone, Copy)]
struct StoreSettings {
    lease: Duration,
    poll: Duration,
    timeout: Duration,
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

#[derive(Debug, Clone)]
struct Settings {
    refresh_ahead: Duration,
    min_validity: Duration,
    min_token_age: Duration,
    backoff_min: Duration,
    backoff_max: Duration,
    refresh_timeout: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            refresh_ahead: Duration::from_secs(5 * 60),
            min_validity: Duration::from_secs(30),
            min_token_age: Duration::from_secs(5),
            backoff_min: Duration::from_secs(1),
            backoff_max: Duration::from_secs(30),
            refresh_timeout: Duration::from_secs(60),
        }
    }
}

impl Settings {
    /// Whether a token taken from the store will do instead of a refresh for `reason`: it is
    /// usable, and for a refresh ahead of expiry, not itself in its refresh-ahead window.
    fn will_do(&self, shared: &SharedToken, reason: RefreshReason) -> bool {
        let now = Instant::now();
        let entry = Entry::new(shared.token.clone(), 0, shared.obtained.min(now), self);
        entry.usable(now)
            && (reason != RefreshReason::Ahead || entry.refresh_at.is_none_or(|at| now < at))
    }

    /// The wait after `consecutive` failures: doubling from the minimum up to the maximum,
    /// between half and all of it at random.
    fn backoff(&self, consecutive: u32) -> Duration {
        let doublings = consecutive.saturating_sub(1).min(31);
        let full = self
            .backoff_min
            .saturating_mul(1 << doublings)
            .min(self.backoff_max);
        let half = full / 2;
        half + half.mul_f64(random_fraction())
    }
}

/// A number in [0, 1), from the standard library's per-process random hash keys: jitter
/// needs spread, not cryptographic quality.
fn random_fraction() -> f64 {
    let bits = RandomState::new().hash_one(0u8);
    (bits >> 11) as f64 / (1u64 << 53) as f64
}

impl TokenCacheBuilder {
    /// How long before expiry a background refresh starts, while requests keep using the
    /// token. Never more than a quarter of the token's lifetime.
    pub fn refresh_ahead(mut self, window: Duration) -> Self {
        self.settings.refresh_ahead = window;
        self
    }

    /// How much validity a token must have left to be sent; with less, requests wait for a
    /// new one. Never more than a tenth of the token's lifetime.
    pub fn min_validity(mut self, validity: Duration) -> Self {
        self.settings.min_validity = validity;
        self
    }

    /// How old a token must be before a 401 may replace it. A younger token's 401 goes back
    /// to the caller, and the token stays. Never more than a tenth of the token's lifetime.
    pub fn min_token_age(mut self, age: Duration) -> Self {
        self.settings.min_token_age = age;
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
    /// [`TokenErrorKind::TimedOut`]. A backstop, so that a refresher that never answers cannot
    /// hold every waiting request: a refresher's own timeout (stack `tower::timeout` on it)
    /// gives a more precise error.
    pub fn refresh_timeout(mut self, timeout: Duration) -> Self {
        self.settings.refresh_timeout = timeout;
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
        let store = self.store.map(|store| {
            let mut link = StoreLink::new(store);
            link.lease = self.store_settings.lease;
            link.poll = self.store_settings.poll;
            link.timeout = self.store_settings.timeout;
            link
        });
        TokenCache {
            shared: Arc::new(Shared {
                current: OwnLine(ArcSwapOption::empty()),
                state: Mutex::new(State::default()),
                refresher: self.refresher,
                store,
                settings: self.settings,
                counters: Counters::default(),
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

// ===== stats =====

#[derive(Default)]
struct Counters {
    started: [AtomicU64; 4],
    succeeded: [AtomicU64; 4],
    failed: [AtomicU64; 4],
    unauthorized: AtomicU64,
    retried: AtomicU64,
    not_replaced: AtomicU64,
}

impl Counters {
    fn refresh(&self, reason: RefreshReason) -> RefreshCounts {
        let i = reason.index();
        RefreshCounts {
            started: self.started[i].load(Ordering::Relaxed),
            succeeded: self.succeeded[i].load(Ordering::Relaxed),
            failed: self.failed[i].load(Ordering::Relaxed),
        }
    }
}

/// What a [`TokenCache`] has done so far, from [`TokenCache::stats`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Refreshes by reason, in the order of [`RefreshReason::ALL`]; see
    /// [`refreshes`](Self::refreshes).
    pub refreshes: [RefreshCounts; 4],
    /// 401 responses to requests that carried one of the cache's tokens.
    pub unauthorized: u64,
    /// Requests sent a second time after a 401.
    pub retried: u64,
    /// 401s for a token younger than the minimum age, which therefore was not replaced.
    pub not_replaced: u64,
    /// How many tokens the cache has obtained; 0 before the first.
    pub generation: u64,
    /// Time since the current token was obtained (a 401 replaces it only past the
    /// [minimum age](TokenCacheBuilder::min_token_age)).
    pub age: Option<Duration>,
    /// Time until the current token expires, if it says.
    pub expires_in: Option<Duration>,
    /// Whether a refresh is in flight.
    pub refreshing: bool,
    /// Requests waiting for the refresh in flight.
    pub waiting: usize,
    /// Time until the refresher may be called again, after a failure.
    pub backing_off: Option<Duration>,
    /// What the [store](TokenCacheBuilder::store) has done, if the cache has one. With a
    /// store, a refresh counted in [`refreshes`](Self::refreshes) may have taken the token
    /// another replica published ([`StoreStats::adopted`]) rather than calling the refresher.
    pub store: Option<StoreStats>,
}

impl Stats {
    /// The refreshes for one reason.
    pub fn refreshes(&self, reason: RefreshReason) -> RefreshCounts {
        self.refreshes[reason.index()]
    }

    /// The refreshes for every reason together.
    pub fn total(&self) -> RefreshCounts {
        self.refreshes
            .iter()
            .fold(RefreshCounts::default(), |sum, c| RefreshCounts {
                started: sum.started + c.started,
                succeeded: sum.succeeded + c.succeeded,
                failed: sum.failed + c.failed,
            })
    }
}

/// Refreshes started, succeeded and failed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RefreshCounts {
    /// Refresher calls started.
    pub started: u64,
    /// Calls that returned a usable token.
    pub succeeded: u64,
    /// Calls that failed (including ones abandoned or returning an expired token).
    pub failed: u64,
}

#[cfg(test)]
#[path = "cache_tests.rs"]
mod tests;
