//! Single flight: however many requests need a new token, one refresh runs, and they all
//! wait for it.
//!
//! A request that finds no usable token takes the cache's lock and either *joins* the flight
//! in progress (subscribing to its outcome) or *starts* one: it registers the flight under the
//! lock, and spawns its task once the lock is released. The task calls the refresher (or
//! shares the refresh through a store), stores the new token, and sends the outcome to every
//! subscriber at once. A [`FlightGuard`] owns the flight while it runs, so that a refresher
//! that panics, or a runtime that shuts down, still ends it and wakes its waiters.
//!
//! A server's refusal replaces a token *by generation*: a request reports the generation it
//! was sent with, and only the first report for the current generation starts a refresh;
//! later ones, for the same or an older token, join it or take its result.
//!
//! After a failure the cache remembers the error until a backoff has passed; requests that
//! need a token meanwhile get it at once, without a refresher call.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::sync::watch;
use tokio::time::Instant;
use tower::BoxError;

use super::TokenCache;
use super::entry::{Entry, Refreshed};
use super::store_link::{Backoff, Failed};
use super::wait::{Acquire, Outcome, Rejection, Waiting};
use crate::{RefreshReason, TokenError, TokenErrorKind, TokenRequest};

/// A flight's work: the refresher's call, or a refresh shared through a store.
type FlightFuture = Pin<Box<dyn Future<Output = Result<Refreshed, Failed>> + Send>>;

/// The cache's state behind its lock: the refresh in flight, and the last failure.
#[derive(Default)]
pub(super) struct RefreshState {
    pub(super) flight: Option<Flight>,
    failure: Option<Failure>,
    /// The generation of the last token stored.
    generation: u64,
    /// Flights started, to tell one flight's end from a later one's.
    flights: u64,
}

/// The refresh in flight.
pub(super) struct Flight {
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

impl RefreshState {
    /// Requests waiting for the flight in progress.
    pub(super) fn waiting(&self) -> usize {
        self.flight.as_ref().map_or(0, |f| f.done.receiver_count())
    }

    /// When the refresher may be called again, after a failure.
    pub(super) fn retry_at(&self) -> Option<Instant> {
        self.failure.as_ref().map(|f| f.retry_at)
    }

    /// Failures in a row so far.
    fn consecutive(&self) -> u32 {
        self.failure.as_ref().map_or(0, |f| f.consecutive)
    }

    /// Time until the refresher may be called again, if a failure's backoff is running.
    pub(super) fn backing_off(&self, now: Instant) -> Option<std::time::Duration> {
        self.retry_at()
            .map(|at| at.saturating_duration_since(now))
            .filter(|d| !d.is_zero())
    }
}

impl TokenCache {
    /// The slow path: a token to wait for, or the error that says none can be had now.
    pub(crate) fn acquire(&self) -> Acquire {
        let now = Instant::now();
        let mut state = self.state();
        let current = self.shared.current.load_full();
        let reason = match &current {
            Some(entry) if entry.sendable(now) => return Acquire::Have(entry.clone()),
            None => RefreshReason::Initial,
            Some(entry) if entry.rejected => RefreshReason::Rejected,
            Some(_) => RefreshReason::Expired,
        };
        let (acquire, flight) = self.join_or_start(&mut state, reason, current.as_deref(), now);
        drop(state);
        flight.spawn();
        acquire
    }

    /// A server refused the token of `generation`: replace it, unless the cache has moved on
    /// already or the token is too young to blame.
    pub(crate) fn rejected(&self, generation: u64) -> Rejection {
        let now = Instant::now();
        let counters = &self.shared.counters;
        counters.unauthorized.fetch_add(1, Ordering::Relaxed);
        self.shared.metrics.refused();
        let mut state = self.state();
        let Some(entry) = self.shared.current.load_full() else {
            drop(state);
            return Rejection::RetryWith(self.acquire());
        };
        if entry.generation != generation {
            // The cache has moved on since the request was sent: no refresh, just the
            // current token.
            tracing::debug!(
                generation,
                current = entry.generation,
                "rejection of a replaced token; retrying with the current one"
            );
            drop(state);
            return Rejection::RetryWith(self.acquire());
        }
        if now < entry.replaceable_at {
            counters.not_replaced.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(
                generation,
                "rejection of a token younger than the minimum age; not replacing it"
            );
            return Rejection::TooYoung;
        }
        tracing::debug!(generation, "token rejected: forcing a refresh");
        let rejected = if entry.rejected {
            entry
        } else {
            // Requests arriving from now on wait for the replacement rather than being sent
            // with a token the server has refused.
            let rejected = Arc::new(entry.rejected_copy());
            self.shared.current.store(Some(rejected.clone()));
            rejected
        };
        let (acquire, flight) =
            self.join_or_start(&mut state, RefreshReason::Rejected, Some(&rejected), now);
        drop(state);
        flight.spawn();
        Rejection::RetryWith(acquire)
    }

    /// Joins the flight in progress, fails at once during a backoff, or starts a flight.
    fn join_or_start(
        &self,
        state: &mut RefreshState,
        reason: RefreshReason,
        previous: Option<&Entry>,
        now: Instant,
    ) -> (Acquire, UnspawnedFlight) {
        if let Some(flight) = &state.flight {
            let waiting = Waiting {
                reason: flight.reason,
                done: flight.done.subscribe(),
                cache: self.clone(),
            };
            return (Acquire::WaitFor(waiting), UnspawnedFlight(None));
        }
        if let Some(failure) = &state.failure {
            if now < failure.retry_at {
                let err = failure.error.backing_off(failure.retry_at - now);
                self.shared.metrics.backing_off();
                return (Acquire::Failed(err), UnspawnedFlight(None));
            }
        }
        self.start(state, reason, previous)
    }

    /// Registers a new flight; the caller spawns it once it has let go of the lock.
    pub(super) fn start(
        &self,
        state: &mut RefreshState,
        reason: RefreshReason,
        previous: Option<&Entry>,
    ) -> (Acquire, UnspawnedFlight) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            let err = TokenError::new(reason, TokenErrorKind::NoRuntime);
            return (Acquire::Failed(err), UnspawnedFlight(None));
        };
        let (tx, done) = watch::channel(None);
        state.flights += 1;
        let id = state.flights;
        state.flight = Some(Flight {
            id,
            reason,
            done: tx,
        });
        self.shared.counters.started(reason);
        let span = self.refresh_span(reason);
        tracing::trace!(
            parent: &span,
            generation = previous.map_or(0, |e| e.generation),
            "token refresh started"
        );
        let previous = previous.map(|e| e.token.clone());
        let refresh: FlightFuture = match &self.shared.store {
            Some(_) => {
                let cache = self.clone();
                Box::pin(async move {
                    let shared = &*cache.shared;
                    let store = shared.store.as_ref().expect("checked above");
                    // The lease holder's backoff after a failure: one more than the failures in
                    // a row that this cache, or the store, knew of.
                    let backoff = |error: &BoxError, in_store: u32| {
                        let consecutive = cache.state().consecutive().max(in_store) + 1;
                        let delay = shared.settings.backoff_after(&**error, consecutive);
                        Backoff {
                            retry_at: Instant::now() + delay,
                            consecutive,
                        }
                    };
                    store
                        .refresh(
                            reason,
                            previous,
                            |token| Entry::adoptable(token, reason, &shared.settings.windows),
                            |request| shared.refresher.refresh(request),
                            backoff,
                        )
                        .await
                })
            }
            None => {
                let refresh = self
                    .shared
                    .refresher
                    .refresh(TokenRequest::new(reason, previous));
                Box::pin(async move { Ok(Refreshed::now(refresh.await?)) })
            }
        };
        let guard = FlightGuard {
            cache: self.clone(),
            id,
            reason,
            started: Instant::now(),
            span,
            finished: false,
        };
        let waiting = Waiting {
            reason,
            done,
            cache: self.clone(),
        };
        let flight = UnspawnedFlight(Some((runtime, guard, refresh)));
        (Acquire::WaitFor(waiting), flight)
    }

    /// The span a refresh runs in: its own, not the span of the request that happened to
    /// start it (others wait for it too, and a refresh ahead outlives that request), which it
    /// follows from. Its fields are filled in as the refresh goes, by the store and by the
    /// provider (`provider`), and at its end.
    fn refresh_span(&self, reason: RefreshReason) -> tracing::Span {
        let span = tracing::info_span!(
            parent: None,
            "tower_bearer.refresh",
            cache = self.shared.settings.name.as_deref(),
            reason = reason.as_str(),
            provider = tracing::field::Empty,
            store = tracing::field::Empty,
            outcome = tracing::field::Empty,
            generation = tracing::field::Empty,
            lifetime_s = tracing::field::Empty,
            duration_ms = tracing::field::Empty,
            waiters = tracing::field::Empty,
        );
        span.follows_from(tracing::Span::current());
        span
    }

    /// Records the end of flight `id` and wakes everyone waiting for it. A failure comes with
    /// its backoff when one was decided already (the lease holder's, or the fleet's).
    fn finish(
        &self,
        id: u64,
        reason: RefreshReason,
        started: Instant,
        span: &tracing::Span,
        result: Result<Refreshed, (TokenError, Option<Backoff>)>,
    ) {
        let now = Instant::now();
        let shared = &*self.shared;
        let took = now.saturating_duration_since(started);
        let elapsed_ms = took.as_millis() as u64;
        let mut state = self.state();
        let Some(flight) = state.flight.take_if(|f| f.id == id) else {
            return;
        };
        let waiters = flight.done.receiver_count();
        let result = result.and_then(|refreshed| match refreshed.token.expiry() {
            Some(at) if at <= now => {
                Err((TokenError::new(reason, TokenErrorKind::ExpiredToken), None))
            }
            _ => Ok(refreshed),
        });
        let outcome = match result {
            Ok(Refreshed { token, obtained }) => {
                state.generation += 1;
                if let Some(failure) = state.failure.take() {
                    tracing::info!(
                        parent: span,
                        reason = reason.as_str(),
                        failures = failure.consecutive,
                        "token refreshed after failing; the backoff is over"
                    );
                }
                let obtained = obtained.map_or(now, |at| at.min(now));
                let windows = &shared.settings.windows;
                let entry = Entry::new(token, state.generation, obtained, windows);
                let entry = Arc::new(entry.armed());
                shared.current.store(Some(entry.clone()));
                shared.counters.succeeded(reason);
                let lifetime_s = entry.expires_in(now).map(|left| left.as_secs());
                span.record("outcome", "success");
                span.record("generation", int(entry.generation));
                span.record("lifetime_s", lifetime_s.map(int));
                tracing::debug!(
                    parent: span,
                    reason = reason.as_str(),
                    generation = entry.generation,
                    elapsed_ms,
                    expires_in_s = lifetime_s,
                    waiters,
                    "token refreshed"
                );
                Ok(entry)
            }
            Err((error, decided)) => {
                let Backoff {
                    retry_at,
                    consecutive,
                } = decided.unwrap_or_else(|| {
                    let consecutive = state.consecutive() + 1;
                    let delay = shared.settings.backoff_after(&error, consecutive);
                    Backoff {
                        retry_at: now + delay,
                        consecutive,
                    }
                });
                let delay = retry_at.saturating_duration_since(now);
                if let Some(current) = &*shared.current.load() {
                    // A background refresh waits out the backoff too.
                    current
                        .next_ahead
                        .store(self.nanos(retry_at), Ordering::Relaxed);
                }
                shared.counters.failed(reason);
                span.record("outcome", outcome(&error));
                tracing::warn!(
                    parent: span,
                    reason = reason.as_str(),
                    elapsed_ms,
                    backoff_ms = delay.as_millis() as u64,
                    consecutive,
                    waiters,
                    error = %error,
                    "token refresh failed; backing off"
                );
                state.failure = Some(Failure {
                    error: error.clone(),
                    retry_at,
                    consecutive,
                });
                Err(error)
            }
        };
        span.record("duration_ms", int(elapsed_ms));
        span.record("waiters", int(waiters));
        drop(state);
        // Reported once the lock is released: a recorder is the application's code.
        match &outcome {
            Ok(entry) => {
                shared.metrics.refreshed(reason, "success", took);
                shared.metrics.expires_in(entry.expires_in(now));
            }
            Err(error) => shared.metrics.refreshed(reason, self::outcome(error), took),
        }
        flight.done.send_replace(Some(outcome));
    }
}

/// A count as a span records it: OpenTelemetry has no unsigned integers, and
/// tracing-opentelemetry exports a `u64` as a string.
fn int(n: impl TryInto<i64>) -> i64 {
    n.try_into().unwrap_or(i64::MAX)
}

/// How a failed refresh ended, as the refresh span and the metrics name it.
fn outcome(error: &TokenError) -> &'static str {
    match error.kind() {
        TokenErrorKind::TimedOut { .. } => "timed_out",
        TokenErrorKind::Abandoned => "abandoned",
        TokenErrorKind::ExpiredToken => "expired_token",
        _ => "error",
    }
}

/// A flight registered under the lock, to be spawned once the lock is released: a runtime
/// that is shutting down drops a new task at once, and the task's guard then takes the lock.
/// Empty when the request joined a flight rather than starting one.
#[must_use = "a registered flight that is never spawned leaves its waiters waiting"]
pub(super) struct UnspawnedFlight(Option<(tokio::runtime::Handle, FlightGuard, FlightFuture)>);

impl UnspawnedFlight {
    pub(super) fn spawn(self) {
        if let Some((runtime, guard, refresh)) = self.0 {
            let span = guard.span.clone();
            runtime.spawn(tracing::Instrument::instrument(guard.run(refresh), span));
        }
    }
}

/// Owns a refresh while it runs; if it is dropped before the refresh ends (the refresher
/// panicked, the runtime shut down), its waiters are told rather than left waiting.
struct FlightGuard {
    cache: TokenCache,
    id: u64,
    reason: RefreshReason,
    started: Instant,
    span: tracing::Span,
    finished: bool,
}

impl FlightGuard {
    async fn run(mut self, refresh: FlightFuture) {
        let deadline = self.cache.shared.settings.refresh_timeout;
        let reason = self.reason;
        let result = match tokio::time::timeout(deadline, refresh).await {
            Ok(Ok(refreshed)) => Ok(refreshed),
            Ok(Err(Failed::Refresher { error, backoff })) => {
                Err((TokenError::refresher(reason, error), backoff))
            }
            Ok(Err(Failed::Shared(failure))) => {
                // This replica waits as long as the fleet, and counts the failures in a row
                // from the fleet's count.
                let backoff = Backoff {
                    retry_at: failure.until,
                    consecutive: failure.consecutive,
                };
                let retry_in = failure.until.saturating_duration_since(Instant::now());
                Err((TokenError::shared(reason, failure, retry_in), Some(backoff)))
            }
            Err(_) => Err((
                TokenError::new(reason, TokenErrorKind::TimedOut { after: deadline }),
                None,
            )),
        };
        self.finished = true;
        self.cache
            .finish(self.id, self.reason, self.started, &self.span, result);
    }
}

impl Drop for FlightGuard {
    fn drop(&mut self) {
        if !self.finished {
            let abandoned = TokenError::new(self.reason, TokenErrorKind::Abandoned);
            self.cache.finish(
                self.id,
                self.reason,
                self.started,
                &self.span,
                Err((abandoned, None)),
            );
        }
    }
}
