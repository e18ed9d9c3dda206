//! What the examples that send many calls (`quickstart`, `oauth2`, `grpc`, `reqwest`) record
//! while they run, and the figures their progress lines and summaries print.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

/// What the tasks record: how many calls succeeded and failed, each call's latency, and the
/// failures' errors.
#[derive(Default)]
pub(crate) struct Tally {
    ok: AtomicU64,
    failed: AtomicU64,
    latencies: Mutex<Vec<Duration>>,
    errors: Mutex<Vec<String>>,
}

impl Tally {
    /// Records a call begun at `started`, which has just ended with `result`.
    pub(crate) fn record(&self, started: Instant, result: Result<(), String>) {
        lock(&self.latencies).push(started.elapsed());
        match result {
            Ok(()) => self.ok.fetch_add(1, Ordering::Relaxed),
            Err(error) => {
                self.error(error);
                self.failed.fetch_add(1, Ordering::Relaxed)
            }
        };
    }

    /// Keeps an error for the summary without counting a call.
    pub(crate) fn error(&self, error: String) {
        lock(&self.errors).push(error);
    }

    pub(crate) fn ok(&self) -> u64 {
        self.ok.load(Ordering::Relaxed)
    }

    pub(crate) fn failed(&self) -> u64 {
        self.failed.load(Ordering::Relaxed)
    }

    /// `p50 … ms, p99 … ms` of the calls recorded.
    pub(crate) fn latency(&self) -> String {
        let mut latencies = lock(&self.latencies).clone();
        latencies.sort();
        let percentile = |p: usize| {
            let at = (latencies.len() * p / 100).min(latencies.len().saturating_sub(1));
            let latency = latencies.get(at).copied().unwrap_or_default();
            latency.as_secs_f64() * 1000.0
        };
        format!("p50 {:.1} ms, p99 {:.1} ms", percentile(50), percentile(99))
    }

    /// The first errors, for the summary.
    pub(crate) fn first_errors(&self) -> Vec<String> {
        lock(&self.errors).iter().take(5).cloned().collect()
    }
}

/// A task that panicked while holding the lock leaves its data as good as it was.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Seconds since `since`, for the progress lines.
pub(crate) fn secs(since: Instant) -> f64 {
    since.elapsed().as_secs_f64()
}

/// An error and its sources, `: `-separated: a `TokenError` says no token could be had, its
/// source says why (the authorization server refused the client, or could not be reached).
pub(crate) fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(error) = source {
        write!(text, ": {error}").expect("writing to a String");
        source = error.source();
    }
    text
}
