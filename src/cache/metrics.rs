//! What the cache reports through the [`metrics`] facade: every name, label and unit in one
//! place (the README's table lists them for users).
//!
//! Nothing here runs on the hot path: a refresh reports once, a refused token, a retry, a
//! request sent without the token and a store event each once, and a request that waits for a
//! refresh twice (its wait begins and ends). Without a recorder installed every call is a
//! no-op. Labels are bounded: the cache's name (which the user gives), and fixed words.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use metrics::{Counter, Gauge, SharedString, Unit};

use crate::RefreshReason;

/// Refreshes, by `reason` and `outcome`.
pub(super) const REFRESHES: &str = "tower_bearer.refreshes";
/// How long refreshes took, in seconds, by `reason` and `outcome`.
pub(super) const REFRESH_DURATION: &str = "tower_bearer.refresh.duration";
/// Requests waiting for a refresh.
pub(super) const REFRESH_WAITERS: &str = "tower_bearer.refresh.waiters";
/// When the current token expires, in seconds since the Unix epoch.
pub(super) const TOKEN_EXPIRES_AT: &str = "tower_bearer.token.expires_at";
/// Responses that refused one of the cache's tokens.
pub(super) const TOKENS_REFUSED: &str = "tower_bearer.tokens.refused";
/// Requests sent a second time, by `cause`.
pub(super) const RETRIES: &str = "tower_bearer.retries";
/// Second attempts whose answer refused the token again.
pub(super) const RETRIES_REFUSED: &str = "tower_bearer.retries.refused";
/// DPoP nonce challenges (`use_dpop_nonce`) in answers.
pub(super) const DPOP_NONCE_CHALLENGES: &str = "tower_bearer.dpop.nonce_challenges";
/// Requests left without the cache's token, by `cause`.
pub(super) const REQUESTS_WITHOUT_TOKEN: &str = "tower_bearer.requests.without_token";
/// What the cache's store did, by `event`.
pub(super) const STORE_EVENTS: &str = "tower_bearer.store.events";

/// The value of the `cache` label of a cache the user has not named.
const UNNAMED: &str = "default";

/// A cache's metrics: its `cache` label, and the calls that report.
///
/// What a request may report, once per request rather than once per refresh, is registered
/// once, when the cache is built: a handle reports without building its labels again, which
/// would allocate for every request sent out of scope or waiting for a refresh, recorder or
/// not.
#[derive(Debug, Clone)]
pub(super) struct Metrics {
    cache: SharedString,
    out_of_scope: Counter,
    backing_off: Counter,
    waiters: Gauge,
}

impl Metrics {
    /// The metrics of a cache named `name`; describes them to the recorder installed now, and
    /// registers with it those a request reports.
    pub(super) fn new(name: Option<&Arc<str>>) -> Self {
        describe();
        let cache = match name {
            Some(name) => SharedString::from(name.clone()),
            None => SharedString::const_str(UNNAMED),
        };
        let without_token = |cause: &'static str| metrics::counter!(REQUESTS_WITHOUT_TOKEN, "cache" => cache.clone(), "cause" => cause);
        Metrics {
            out_of_scope: without_token("out_of_scope"),
            backing_off: without_token("backing_off"),
            waiters: metrics::gauge!(REFRESH_WAITERS, "cache" => cache.clone()),
            cache,
        }
    }

    pub(super) fn refreshed(&self, reason: RefreshReason, outcome: &'static str, took: Duration) {
        let labels = [
            ("cache", self.cache.clone()),
            ("reason", SharedString::const_str(reason.as_str())),
            ("outcome", SharedString::const_str(outcome)),
        ];
        metrics::counter!(REFRESHES, &labels).increment(1);
        metrics::histogram!(REFRESH_DURATION, &labels).record(took.as_secs_f64());
    }

    /// The new token expires in `left` (if it says).
    pub(super) fn expires_in(&self, left: Option<Duration>) {
        let Some(left) = left else { return };
        let Some(at) = SystemTime::now().checked_add(left) else {
            return;
        };
        let at = at.duration_since(UNIX_EPOCH).unwrap_or_default();
        metrics::gauge!(TOKEN_EXPIRES_AT, "cache" => self.cache.clone()).set(at.as_secs_f64());
    }

    /// A request began (`1.0`) or stopped (`-1.0`) waiting for a refresh.
    pub(super) fn waiting(&self, change: f64) {
        self.waiters.increment(change);
    }

    pub(super) fn refused(&self) {
        metrics::counter!(TOKENS_REFUSED, "cache" => self.cache.clone()).increment(1);
    }

    /// A request sent again: `cause` is `refused` or `dpop_nonce`.
    pub(super) fn retry(&self, cause: &'static str) {
        metrics::counter!(RETRIES, "cache" => self.cache.clone(), "cause" => cause).increment(1);
    }

    pub(super) fn retry_refused(&self) {
        metrics::counter!(RETRIES_REFUSED, "cache" => self.cache.clone()).increment(1);
    }

    pub(super) fn nonce_challenge(&self) {
        metrics::counter!(DPOP_NONCE_CHALLENGES, "cache" => self.cache.clone()).increment(1);
    }

    /// A request sent without the token, outside the scope.
    pub(super) fn out_of_scope(&self) {
        self.out_of_scope.increment(1);
    }

    /// A request failed at once, with no token during a backoff.
    pub(super) fn backing_off(&self) {
        self.backing_off.increment(1);
    }

    /// A store event (see the README's table for the words).
    pub(super) fn store(&self, event: &'static str) {
        let labels = [("cache", self.cache.clone()), ("event", event.into())];
        metrics::counter!(STORE_EVENTS, &labels).increment(1);
    }
}

/// Tells the recorder what each metric is, and its unit.
fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        REFRESHES,
        Unit::Count,
        "Token refreshes, by reason and outcome"
    );
    describe_histogram!(
        REFRESH_DURATION,
        Unit::Seconds,
        "How long token refreshes took, by reason and outcome"
    );
    describe_gauge!(
        REFRESH_WAITERS,
        Unit::Count,
        "Requests waiting for a token refresh"
    );
    describe_gauge!(
        TOKEN_EXPIRES_AT,
        Unit::Seconds,
        "When the current token expires, in seconds since the Unix epoch"
    );
    describe_counter!(
        TOKENS_REFUSED,
        Unit::Count,
        "Responses that refused one of the cache's tokens"
    );
    describe_counter!(
        RETRIES,
        Unit::Count,
        "Requests sent a second time, by cause"
    );
    describe_counter!(
        RETRIES_REFUSED,
        Unit::Count,
        "Second attempts whose answer refused the token again"
    );
    describe_counter!(
        DPOP_NONCE_CHALLENGES,
        Unit::Count,
        "Answers asking for a DPoP proof with the server's nonce"
    );
    describe_counter!(
        REQUESTS_WITHOUT_TOKEN,
        Unit::Count,
        "Requests left without the cache's token, by cause"
    );
    describe_counter!(STORE_EVENTS, Unit::Count, "Token store events, by event");
}
