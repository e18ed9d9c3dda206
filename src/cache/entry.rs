//! A token as the cache holds it: its generation, and the windows of its life.

use std::sync::atomic::AtomicU64;
use std::time::Duration;

use tokio::time::Instant;

use super::alarm::Alarm;
use super::{LONGEST_WAIT, random_fraction};
use crate::store::SharedToken;
use crate::{RefreshReason, Token};

/// The settings that place a token's windows (see [`TokenCacheBuilder`](super::TokenCacheBuilder)).
#[derive(Debug, Clone)]
pub(super) struct Windows {
    pub(super) refresh_ahead: Duration,
    pub(super) min_validity: Duration,
    pub(super) min_token_age: Duration,
    /// The share of the refresh-ahead window (from its start to the minimum validity) over
    /// which each token's background refresh start is drawn: 0 starts every refresh at the
    /// window's start.
    pub(super) jitter: f64,
}

impl Default for Windows {
    fn default() -> Self {
        Windows {
            refresh_ahead: Duration::from_secs(5 * 60),
            min_validity: Duration::from_secs(30),
            min_token_age: Duration::from_secs(5),
            jitter: 1.0,
        }
    }
}

/// A token as the cache holds it.
pub(crate) struct Entry {
    pub(crate) token: Token,
    pub(crate) generation: u64,
    pub(super) obtained: Instant,
    /// The refresh-ahead window starts here.
    pub(super) refresh_at: Option<Instant>,
    /// From here on, requests wait for a new token rather than send this one.
    stale_at: Option<Instant>,
    /// A 401 does not replace the token before this.
    pub(super) replaceable_at: Instant,
    /// A server answered 401 to it (and it was old enough to believe).
    pub(super) rejected: bool,
    /// When a background refresh may next start, in nanoseconds since the cache's epoch:
    /// [`CLAIMED`] once a request has started one, later if one failed and is backing off.
    pub(super) next_ahead: AtomicU64,
    /// Rings shortly before the first window opens; until then, the hot path need not read
    /// the clock.
    pub(super) alarm: Alarm,
}

/// A token a refresh ended with.
pub(super) struct Refreshed {
    pub(super) token: Token,
    /// When it was obtained, if not just now (a token taken from the store).
    pub(super) obtained: Option<Instant>,
}

impl Refreshed {
    /// A token obtained just now.
    pub(super) fn now(token: Token) -> Self {
        Refreshed {
            token,
            obtained: None,
        }
    }
}

/// `Entry::next_ahead` once a background refresh has been started for the entry.
pub(super) const CLAIMED: u64 = u64::MAX;

impl Entry {
    /// A token obtained at `obtained` (now, or earlier for one taken from a store): the
    /// windows are fractions of its lifetime from then.
    pub(super) fn new(token: Token, generation: u64, obtained: Instant, windows: &Windows) -> Self {
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
        let stale_at = expiry.map(|at| at - within(windows.min_validity, 10));
        // Drawn once per token, here, so that the hot path compares with a fixed point: caches
        // that got their tokens together (a deploy) refresh apart.
        let refresh_at = expiry.zip(stale_at).map(|(at, stale)| {
            let start = at - within(windows.refresh_ahead, 4);
            let span = stale.saturating_duration_since(start);
            start + span.mul_f64(windows.jitter * random_fraction())
        });
        Entry {
            generation,
            obtained,
            refresh_at,
            stale_at,
            replaceable_at: obtained + within(windows.min_token_age, 10).min(LONGEST_WAIT),
            rejected: false,
            next_ahead: AtomicU64::new(0),
            alarm: Alarm::rung(),
            token,
        }
    }

    /// With an alarm that rings before the first of its windows opens, for an entry the hot
    /// path will read (an entry is made with one that has rung, so the clock is read).
    pub(super) fn armed(self) -> Self {
        // Both windows are set from the expiry, or neither is.
        let alarm = match self.refresh_at.zip(self.stale_at) {
            Some((ahead, stale)) => Alarm::before(ahead.min(stale)),
            None => Alarm::never(),
        };
        Entry { alarm, ..self }
    }

    /// The same token, marked refused by a server: requests wait for its replacement.
    pub(super) fn rejected_copy(&self) -> Self {
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

    /// Whether a request may be sent with the token at `now`: no server has refused it, and
    /// it has more than the minimum validity left.
    #[inline]
    pub(crate) fn sendable(&self, now: Instant) -> bool {
        !self.rejected && self.stale_at.is_none_or(|at| now < at)
    }

    /// Whether a token taken from the store will do instead of a refresh for `reason`: it is
    /// sendable, and for a refresh ahead of expiry, not itself in its refresh-ahead window.
    pub(super) fn adoptable(
        shared: &SharedToken,
        reason: RefreshReason,
        windows: &Windows,
    ) -> bool {
        let now = Instant::now();
        // The window's own start, not a point drawn in it: a token some replica may already be
        // refreshing is not worth taking instead of a refresh.
        let windows = Windows {
            jitter: 0.0,
            ..windows.clone()
        };
        let entry = Entry::new(shared.token.clone(), 0, shared.obtained.min(now), &windows);
        entry.sendable(now)
            && (reason != RefreshReason::Ahead || entry.refresh_at.is_none_or(|at| now < at))
    }

    /// Time left until the token expires, if it says.
    pub(super) fn expires_in(&self, now: Instant) -> Option<Duration> {
        self.token
            .expiry()
            .map(|at| at.saturating_duration_since(now))
    }
}
