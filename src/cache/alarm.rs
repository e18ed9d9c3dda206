//! When the hot path has to start reading the clock.
//!
//! Reading the monotonic clock costs about as much as the rest of the layer's work on a
//! request put together (the benchmarks' documentation has the figures). For most of a token's life
//! there is nothing for the clock to tell (its windows are minutes away), so each token
//! carries an [`Alarm`] that a runtime timer rings shortly before the first of its windows
//! opens; until it rings, a request uses the token without reading the clock, and from then
//! on every request checks the clock exactly as before.
//!
//! The timer's waker is the alarm itself, so the time driver rings it while it processes
//! expired timers, before any task it wakes runs: under a paused clock, a request sent right
//! after `tokio::time::advance` already sees it rung. A runtime that shuts down fires its
//! timers, so its alarms ring too.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Wake, Waker};
use std::time::Duration;

use tokio::task::Unconstrained;
use tokio::time::{Instant, Sleep};

/// How long before a window opens its alarm rings: a margin for a runtime slow to fire its
/// timers, so that none is ever late by the width of a window.
pub(crate) const AHEAD: Duration = Duration::from_secs(1);

/// Whether a token's windows may have opened (see the [module](self) documentation).
pub(crate) struct Alarm {
    bell: Arc<Bell>,
    /// Keeps the timer registered; dropping it cancels it.
    _timer: Option<Pin<Box<Unconstrained<Sleep>>>>,
}

struct Bell(AtomicBool);

impl Wake for Bell {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.store(true, Ordering::Release);
    }
}

impl Alarm {
    /// An alarm that has rung: the clock is read for every request.
    pub(crate) fn rung() -> Self {
        Alarm::with(true)
    }

    /// An alarm that never rings: for a token without an expiry.
    pub(crate) fn never() -> Self {
        Alarm::with(false)
    }

    fn with(rung: bool) -> Self {
        Alarm {
            bell: Arc::new(Bell(AtomicBool::new(rung))),
            _timer: None,
        }
    }

    /// An alarm that rings [`AHEAD`] of `at`, by a timer on the current runtime; one that has
    /// rung already when there is no runtime to keep the timer.
    ///
    /// Must be called on a runtime with its time driver enabled (a flight's task is: it runs
    /// under `tokio::time::timeout`).
    pub(crate) fn before(at: Instant) -> Self {
        if tokio::runtime::Handle::try_current().is_err() {
            return Alarm::rung();
        }
        let at = at.checked_sub(AHEAD).unwrap_or(at);
        let alarm = Alarm::never();
        // Unconstrained: a task out of its cooperative budget would get `Pending` without the
        // timer being registered, and the alarm would never ring.
        let mut timer = Box::pin(tokio::task::unconstrained(tokio::time::sleep_until(at)));
        let waker = Waker::from(alarm.bell.clone());
        if timer
            .as_mut()
            .poll(&mut Context::from_waker(&waker))
            .is_ready()
        {
            waker.wake();
            return alarm;
        }
        Alarm {
            _timer: Some(timer),
            ..alarm
        }
    }

    /// Whether the clock has to be read: the alarm has rung.
    #[inline]
    pub(crate) fn has_rung(&self) -> bool {
        self.bell.0.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn an_alarm_rings_a_second_before_its_time_and_not_earlier() {
        let alarm = Alarm::before(Instant::now() + Duration::from_secs(60));
        tokio::time::advance(Duration::from_secs(59) - Duration::from_millis(1)).await;
        assert!(!alarm.has_rung());
        tokio::time::advance(Duration::from_millis(1)).await;
        assert!(
            alarm.has_rung(),
            "rung by the time driver, before this task resumes"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_alarm_for_a_time_already_near_has_rung() {
        assert!(Alarm::before(Instant::now()).has_rung());
        assert!(Alarm::before(Instant::now() + AHEAD).has_rung());
    }

    #[test]
    fn an_alarm_rings_when_its_runtime_shuts_down() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let alarm =
            runtime.block_on(async { Alarm::before(Instant::now() + Duration::from_secs(3600)) });
        assert!(!alarm.has_rung());
        drop(runtime);
        assert!(alarm.has_rung(), "its timer can no longer fire");
    }

    #[test]
    fn an_alarm_made_outside_a_runtime_has_rung() {
        assert!(Alarm::before(Instant::now() + Duration::from_secs(3600)).has_rung());
    }

    #[test]
    fn the_two_alarms_that_have_no_timer() {
        assert!(Alarm::rung().has_rung());
        assert!(!Alarm::never().has_rung());
    }
}
