//! The hot path: what a request with a usable token costs.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use arc_swap::ArcSwapOption;
use tokio::time::Instant;

use super::entry::{CLAIMED, Entry};
use super::{Shared, TokenCache};
use crate::RefreshReason;

/// One service's view of the current token.
///
/// It keeps the entry it last read and, on each request, compares it with the cache's
/// current one by a plain load of the shared pointer: no lock and no shared write, where
/// `ArcSwap::load` takes and releases a slot with two atomic read-modify-writes, a cost the
/// benchmarks show on every request. The price is that a service keeps the entry it last used
/// alive until its next request.
#[derive(Clone)]
pub(crate) struct Reader(arc_swap::Cache<Current, Option<Arc<Entry>>>);

/// The cache's current entry, which a [`Reader`] revalidates against.
#[derive(Clone)]
pub(crate) struct Current(Arc<Shared>);

impl std::ops::Deref for Current {
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

impl TokenCache {
    /// A reader of the current token for one service (see [`Reader`]).
    pub(crate) fn reader(&self) -> Reader {
        Reader(arc_swap::Cache::new(Current(self.shared.clone())))
    }

    /// The current token, if a request may send it as it is.
    ///
    /// Starts the background refresh when the token has entered the refresh-ahead window.
    #[inline]
    pub(crate) fn entry_as_is<'r>(&self, reader: &'r mut Reader) -> Option<&'r Entry> {
        let entry = reader.0.load().as_ref()?;
        self.as_is(entry).then_some(&**entry)
    }

    /// The current entry, if a request may send it as it is, held for one request: for a
    /// service that keeps no [`Reader`] of this cache (a layer of many keys, each its own
    /// cache). Starts the background refresh as [`entry_as_is`](Self::entry_as_is) does.
    #[inline]
    pub(crate) fn load_as_is(&self) -> Option<arc_swap::Guard<Option<Arc<Entry>>>> {
        let entry = self.shared.current.load();
        let usable = entry.as_ref().is_some_and(|e| self.as_is(e));
        usable.then_some(entry)
    }

    /// The current entry, if a request may send it as it is.
    pub(crate) fn current_as_is(&self) -> Option<Arc<Entry>> {
        self.shared.current.load_full().filter(|e| self.as_is(e))
    }

    /// Whether a request may send `entry` as it is; starts the background refresh if it is in
    /// its refresh-ahead window.
    #[inline]
    fn as_is(&self, entry: &Entry) -> bool {
        if !entry.alarm.has_rung() {
            // Its windows are more than a second away.
            return true;
        }
        let now = Instant::now();
        if !entry.sendable(now) {
            return false;
        }
        if entry.refresh_at.is_some_and(|at| now >= at) {
            self.refresh_ahead_once(entry, now);
        }
        true
    }

    /// Starts the background refresh of `entry`, unless a request already did, or a failure's
    /// backoff says not yet.
    pub(super) fn refresh_ahead_once(&self, entry: &Entry, now: Instant) {
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
        if let Some(retry_at) = state.retry_at().filter(|&at| now < at) {
            entry
                .next_ahead
                .store(self.nanos(retry_at), Ordering::Relaxed);
            return;
        }
        let (_, flight) = self.start(&mut state, RefreshReason::Ahead, Some(entry));
        drop(state);
        // Nobody waits for a background refresh.
        flight.spawn();
    }
}
