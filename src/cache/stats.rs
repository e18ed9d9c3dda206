//! What the cache has done, for an operator.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::TokenCache;
use crate::RefreshReason;
use crate::store::StoreStats;

/// How many reasons there are; the counters hold one slot for each.
const REASONS: usize = RefreshReason::ALL.len();

/// The counts behind [`Stats`], updated as the cache works.
#[derive(Default)]
pub(super) struct StatCounters {
    started: [AtomicU64; REASONS],
    succeeded: [AtomicU64; REASONS],
    failed: [AtomicU64; REASONS],
    pub(super) unauthorized: AtomicU64,
    pub(super) retried: AtomicU64,
    pub(super) not_replaced: AtomicU64,
    pub(super) nonce_retried: AtomicU64,
    pub(super) out_of_scope: AtomicU64,
}

impl StatCounters {
    pub(super) fn started(&self, reason: RefreshReason) {
        self.started[reason.index()].fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn succeeded(&self, reason: RefreshReason) {
        self.succeeded[reason.index()].fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn failed(&self, reason: RefreshReason) {
        self.failed[reason.index()].fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn refreshes(&self) -> [RefreshCounts; REASONS] {
        RefreshReason::ALL.map(|reason| {
            let i = reason.index();
            RefreshCounts {
                started: self.started[i].load(Ordering::Relaxed),
                succeeded: self.succeeded[i].load(Ordering::Relaxed),
                failed: self.failed[i].load(Ordering::Relaxed),
            }
        })
    }
}

impl TokenCache {
    /// A request is being sent again after its token was refused.
    pub(crate) fn count_retry(&self) {
        self.shared.counters.retried.fetch_add(1, Ordering::Relaxed);
        self.shared.metrics.retry("refused");
    }

    /// A request is being sent again, with the same token, because the server asked for a
    /// DPoP proof with its new nonce.
    pub(crate) fn count_nonce_retry(&self) {
        let counters = &self.shared.counters;
        counters.nonce_retried.fetch_add(1, Ordering::Relaxed);
        self.shared.metrics.retry("dpop_nonce");
    }

    /// A request's second attempt was refused too.
    #[cold]
    pub(crate) fn count_retry_refused(&self) {
        self.shared.metrics.retry_refused();
    }

    /// An answer asked for a DPoP proof with the server's nonce.
    #[cold]
    pub(crate) fn count_nonce_challenge(&self) {
        self.shared.metrics.nonce_challenge();
    }

    /// A request to `uri` (shown without its query or userinfo) is being sent without the
    /// token, because it is outside the scope of the layer or middleware reading this cache.
    /// The first one is logged: a layer whose every request is out of scope (a client whose
    /// URIs carry no origin, a scope naming the wrong one) does nothing, and must not do it
    /// silently.
    #[cold]
    pub(crate) fn count_out_of_scope(&self, uri: &dyn fmt::Display) {
        let counters = &self.shared.counters;
        self.shared.metrics.out_of_scope();
        if counters.out_of_scope.fetch_add(1, Ordering::Relaxed) == 0 {
            tracing::warn!(
                uri = %uri,
                "a request was sent without the token: its URI is outside the layer's scope \
                 (logged once per cache; counted in Stats::out_of_scope)"
            );
        }
    }
}

/// What a [`TokenCache`] has done so far, from [`TokenCache::stats`].
///
/// Its `Display` is a one-line summary for logs:
///
/// ```text
/// 5 tokens obtained (initial 1, ahead 3, expired 0, rejected 1), 0 refreshes failed; 1 refused by a server, 1 retried; generation 5, expires in 1.4 s
/// ```
///
/// Counts that are usually 0 (requests sent without the token because they were out of
/// scope, say) show only when they are not.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Refreshes by reason, indexed by `RefreshReason::index`: read through
    /// [`refreshes`](Self::refreshes), so that a new reason can be added.
    pub(super) refreshes: [RefreshCounts; REASONS],
    /// 401 responses to requests that carried one of the cache's tokens.
    pub unauthorized: u64,
    /// Requests sent a second time after a 401.
    pub retried: u64,
    /// 401s for a token younger than the minimum age, which therefore was not replaced.
    pub not_replaced: u64,
    /// Requests sent a second time with the same DPoP token and a new proof, because the
    /// server asked for its new nonce (`use_dpop_nonce`): no refresh.
    pub nonce_retried: u64,
    /// Requests sent without the token because their URI was outside the
    /// [scope](crate::Scope) of the layer or middleware that read this cache. The first is
    /// logged as a warning.
    pub out_of_scope: u64,
    /// How many tokens the cache has obtained; 0 before the first.
    pub generation: u64,
    /// Time since the current token was obtained (a 401 replaces it only past the
    /// [minimum age](super::TokenCacheBuilder::min_token_age)).
    pub age: Option<Duration>,
    /// Time until the current token expires, if it says.
    pub expires_in: Option<Duration>,
    /// Whether a refresh is in flight.
    pub refreshing: bool,
    /// Requests waiting for the refresh in flight.
    pub waiting: usize,
    /// Time until the refresher may be called again, after a failure.
    pub backing_off: Option<Duration>,
    /// What the [store](super::TokenCacheBuilder::store) has done, if the cache has one. With
    /// a store, a refresh counted in [`refreshes`](Self::refreshes) may have taken the token
    /// another replica published ([`StoreStats::adopted`]) rather than calling the refresher.
    pub store: Option<StoreStats>,
}

impl Stats {
    /// The refreshes for one reason.
    pub fn refreshes(&self, reason: RefreshReason) -> RefreshCounts {
        self.refreshes[reason.index()]
    }

    /// The refreshes for each reason, in the order the reasons are declared.
    pub fn refreshes_by_reason(&self) -> impl Iterator<Item = (RefreshReason, RefreshCounts)> {
        RefreshReason::ALL
            .into_iter()
            .map(|reason| (reason, self.refreshes(reason)))
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

impl fmt::Display for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let total = self.total();
        let n = total.succeeded;
        write!(f, "{n} {} obtained (", noun(n, "token", "tokens"))?;
        for (i, (reason, counts)) in self.refreshes_by_reason().enumerate() {
            let separator = if i == 0 { "" } else { ", " };
            write!(f, "{separator}{reason} {}", counts.succeeded)?;
        }
        let n = total.failed;
        write!(f, "), {n} {} failed", noun(n, "refresh", "refreshes"))?;
        write!(
            f,
            "; {} refused by a server, {} retried",
            self.unauthorized, self.retried
        )?;
        if self.not_replaced > 0 {
            write!(f, ", {} too young to replace", self.not_replaced)?;
        }
        if self.nonce_retried > 0 {
            write!(f, ", {} sent again for a DPoP nonce", self.nonce_retried)?;
        }
        if self.out_of_scope > 0 {
            write!(
                f,
                "; {} sent without the token (out of scope)",
                self.out_of_scope
            )?;
        }
        write!(f, "; generation {}", self.generation)?;
        if let Some(left) = self.expires_in {
            write!(f, ", expires in {:.1} s", left.as_secs_f64())?;
        }
        if self.refreshing {
            write!(f, "; refreshing, {} waiting", self.waiting)?;
        }
        if let Some(wait) = self.backing_off {
            write!(f, "; backing off for {:.1} s", wait.as_secs_f64())?;
        }
        if let Some(store) = &self.store {
            write!(
                f,
                "; store: {} adopted, {} published, {} {} won, {} lost, {} {}{}",
                store.adopted,
                store.publishes,
                store.leases_won,
                noun(store.leases_won, "lease", "leases"),
                store.leases_lost,
                store.errors,
                noun(store.errors, "error", "errors"),
                if store.unavailable {
                    ", unavailable"
                } else {
                    ""
                }
            )?;
        }
        Ok(())
    }
}

/// `one` for a count of 1, `many` for any other: "1 token obtained", "0 tokens obtained".
fn noun<'a>(count: u64, one: &'a str, many: &'a str) -> &'a str {
    if count == 1 { one } else { many }
}

impl fmt::Debug for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        struct ByReason<'a>(&'a Stats);
        impl fmt::Debug for ByReason<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_map().entries(self.0.refreshes_by_reason()).finish()
            }
        }
        f.debug_struct("Stats")
            .field("refreshes", &ByReason(self))
            .field("unauthorized", &self.unauthorized)
            .field("retried", &self.retried)
            .field("not_replaced", &self.not_replaced)
            .field("nonce_retried", &self.nonce_retried)
            .field("out_of_scope", &self.out_of_scope)
            .field("generation", &self.generation)
            .field("age", &self.age)
            .field("expires_in", &self.expires_in)
            .field("refreshing", &self.refreshing)
            .field("waiting", &self.waiting)
            .field("backing_off", &self.backing_off)
            .field("store", &self.store)
            .finish()
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
mod tests {
    use super::*;

    #[test]
    fn stats_read_as_a_sentence() {
        let mut refreshes = [RefreshCounts::default(); REASONS];
        refreshes[RefreshReason::Initial.index()].succeeded = 1;
        refreshes[RefreshReason::Ahead.index()].succeeded = 3;
        refreshes[RefreshReason::Rejected.index()] = RefreshCounts {
            started: 2,
            succeeded: 1,
            failed: 1,
        };
        let stats = Stats {
            refreshes,
            unauthorized: 2,
            retried: 1,
            not_replaced: 0,
            nonce_retried: 0,
            out_of_scope: 0,
            generation: 5,
            age: Some(Duration::from_millis(600)),
            expires_in: Some(Duration::from_millis(1400)),
            refreshing: false,
            waiting: 0,
            backing_off: None,
            store: None,
        };
        assert_eq!(
            stats.to_string(),
            "5 tokens obtained (initial 1, ahead 3, expired 0, rejected 1), 1 refresh failed; \
             2 refused by a server, 1 retried; generation 5, expires in 1.4 s"
        );
        let debug = format!("{stats:?}");
        assert!(
            debug.contains("Ahead: RefreshCounts { started: 0, succeeded: 3"),
            "{debug}"
        );
        assert!(debug.contains("out_of_scope: 0"), "{debug}");

        let skipped = Stats {
            out_of_scope: 3,
            ..stats
        };
        assert_eq!(
            skipped.to_string(),
            "5 tokens obtained (initial 1, ahead 3, expired 0, rejected 1), 1 refresh failed; \
             2 refused by a server, 1 retried; 3 sent without the token (out of scope); \
             generation 5, expires in 1.4 s"
        );
        assert!(format!("{skipped:?}").contains("out_of_scope: 3"));
    }

    #[test]
    fn a_count_of_one_reads_in_the_singular() {
        let mut refreshes = [RefreshCounts::default(); REASONS];
        refreshes[RefreshReason::Initial.index()] = RefreshCounts {
            started: 2,
            succeeded: 1,
            failed: 1,
        };
        let store = StoreStats {
            adopted: 1,
            publishes: 1,
            leases_won: 1,
            leases_lost: 1,
            errors: 1,
            ..StoreStats::default()
        };
        let one = Stats {
            refreshes,
            unauthorized: 1,
            retried: 1,
            not_replaced: 1,
            nonce_retried: 1,
            out_of_scope: 1,
            generation: 1,
            age: None,
            expires_in: None,
            refreshing: true,
            waiting: 1,
            backing_off: None,
            store: Some(store.clone()),
        };
        assert_eq!(
            one.to_string(),
            "1 token obtained (initial 1, ahead 0, expired 0, rejected 0), 1 refresh failed; \
             1 refused by a server, 1 retried, 1 too young to replace, 1 sent again for a DPoP \
             nonce; 1 sent without the token (out of scope); generation 1; refreshing, 1 \
             waiting; store: 1 adopted, 1 published, 1 lease won, 1 lost, 1 error"
        );

        let two = Stats {
            refreshes: [RefreshCounts {
                started: 2,
                succeeded: 2,
                failed: 2,
            }; REASONS],
            store: Some(StoreStats {
                leases_won: 2,
                errors: 2,
                ..store
            }),
            ..one
        };
        let two = two.to_string();
        assert!(two.starts_with("8 tokens obtained ("), "{two}");
        assert!(two.contains("), 8 refreshes failed;"), "{two}");
        assert!(two.contains(", 2 leases won, 1 lost, 2 errors"), "{two}");
    }
}
