//! Whether, and after how long, one refresh asks the identity endpoint again: the decision
//! alone, with no I/O, so that the schedule is tested without a clock and the provider's loop
//! only drives it.
//!
//! The schedule is azure-identity's (Python), whose requests this crate's fidelity test
//! compares with its own. azure-core's `RetryPolicy` waits nothing before the first retry
//! and `factor × 2^(n−1)` before the n-th after it, capped, and waits a `Retry-After` instead
//! when the answer has one. On IMDS, azure-identity widens the statuses to those Microsoft's
//! IMDS documentation says to retry (404 and 410 while an identity is provisioned, 429
//! under throttling, 5xx), allows five retries, and uses a larger factor for 410, so that
//! its waits add up past the 70 seconds IMDS may answer 410 for.

use std::time::Duration;

use http::StatusCode;

/// How a refresh retries: one for each kind of endpoint.
#[derive(Debug)]
pub(super) struct RetryPolicy {
    /// Retries after any failure, at most.
    retries: u32,
    /// Retries after a status this policy retries, at most.
    status_retries: u32,
    /// Retries after a request that brought back no answer (connection refused, reset), at
    /// most.
    transport_retries: u32,
    /// The statuses worth asking again for.
    retried: fn(StatusCode) -> bool,
    /// The backoff factor: the n-th retry (n ≥ 2) waits `factor × 2^(n−1)`.
    factor: Duration,
    /// The factor after a 410, if it has its own.
    gone_factor: Option<Duration>,
    /// The longest backoff wait.
    max_delay: Duration,
}

/// IMDS, as azure-identity's `ImdsCredential` configures azure-core: five retries after 404,
/// 408, 410, 429 or 5xx, waiting 0, 1.6, 3.2, 6.4 and 12.8 s (0, 5, 10, 20 and 40 s after a
/// 410), three after a request that got no answer.
pub(super) const IMDS: RetryPolicy = RetryPolicy {
    retries: 5,
    status_retries: 5,
    transport_retries: 3,
    retried: |status| matches!(status.as_u16(), 404 | 408 | 410 | 429 | 500..=599),
    factor: Duration::from_millis(800),
    gone_factor: Some(Duration::from_millis(2500)),
    max_delay: Duration::from_secs(60),
};

/// The App Service / Container Apps endpoint, which azure-identity leaves to azure-core's
/// default policy: three retries after 408, 429, 500, 502, 503, 504 or a status from 506 on
/// (azure-core's list), waiting 0, 1.6 and 3.2 s; three after a request that got no answer.
pub(super) const APP_SERVICE: RetryPolicy = RetryPolicy {
    retries: 10,
    status_retries: 3,
    transport_retries: 3,
    retried: |status| {
        matches!(
            status.as_u16(),
            408 | 429 | 500 | 502 | 503 | 504 | 506..=599
        )
    },
    factor: Duration::from_millis(800),
    gone_factor: None,
    max_delay: Duration::from_secs(120),
};

impl RetryPolicy {
    /// Whether an answer with `status` is worth asking again for: a refusal otherwise.
    pub(super) fn retries_status(&self, status: StatusCode) -> bool {
        (self.retried)(status)
    }
}

/// What went wrong with one attempt, as far as retrying goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Failure {
    /// The endpoint answered with a status the policy retries, and maybe a `Retry-After`.
    Status {
        status: StatusCode,
        retry_after: Option<Duration>,
    },
    /// The request brought back no answer.
    Transport,
}

/// One refresh's retries so far.
#[derive(Debug)]
pub(super) struct Retries {
    policy: &'static RetryPolicy,
    failures: u32,
    status_failures: u32,
    transport_failures: u32,
}

impl Retries {
    pub(super) fn new(policy: &'static RetryPolicy) -> Self {
        Retries {
            policy,
            failures: 0,
            status_failures: 0,
            transport_failures: 0,
        }
    }

    /// Attempts made so far, counting the one that just failed.
    pub(super) fn attempts(&self) -> u32 {
        self.failures
    }

    /// After `failure`: the wait before the next attempt, or `None` to give up, because the
    /// retries are spent or the wait would not end within `remaining` (the rest of the
    /// provider's timeout).
    pub(super) fn after(&mut self, failure: Failure, remaining: Duration) -> Option<Duration> {
        let policy = self.policy;
        self.failures += 1;
        let (counted, limit) = match failure {
            Failure::Status { .. } => (&mut self.status_failures, policy.status_retries),
            Failure::Transport => (&mut self.transport_failures, policy.transport_retries),
        };
        *counted += 1;
        if *counted > limit || self.failures > policy.retries {
            return None;
        }
        let delay = match failure {
            Failure::Status {
                retry_after: Some(wait),
                ..
            } => wait,
            Failure::Status { status, .. } if status == StatusCode::GONE => {
                self.backoff(policy.gone_factor.unwrap_or(policy.factor))
            }
            _ => self.backoff(policy.factor),
        };
        (delay < remaining).then_some(delay)
    }

    /// azure-core's exponential backoff after the failures so far: nothing after the first.
    fn backoff(&self, factor: Duration) -> Duration {
        if self.failures <= 1 {
            return Duration::ZERO;
        }
        // At most 2^31: the cap below is reached long before.
        let doubling = 1u32 << (self.failures - 1).min(31);
        factor.saturating_mul(doubling).min(self.policy.max_delay)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PLENTY: Duration = Duration::from_secs(3600);

    fn status(code: u16) -> Failure {
        Failure::Status {
            status: StatusCode::from_u16(code).unwrap(),
            retry_after: None,
        }
    }

    /// The waits until `policy` gives up, when every attempt fails with `failure`.
    fn schedule(policy: &'static RetryPolicy, failure: Failure) -> Vec<Duration> {
        let mut retries = Retries::new(policy);
        std::iter::from_fn(|| retries.after(failure, PLENTY)).collect()
    }

    fn secs(waits: &[f64]) -> Vec<Duration> {
        waits.iter().map(|s| Duration::from_secs_f64(*s)).collect()
    }

    #[test]
    fn imds_waits_as_azure_identity_does() {
        for code in [404, 408, 429, 500, 503, 599] {
            assert_eq!(
                schedule(&IMDS, status(code)),
                secs(&[0.0, 1.6, 3.2, 6.4, 12.8]),
                "{code}"
            );
        }
        // 410 for up to 70 s while an identity is provisioned: 75 s of waits cover it.
        let gone = schedule(&IMDS, status(410));
        assert_eq!(gone, secs(&[0.0, 5.0, 10.0, 20.0, 40.0]));
        assert!(gone.iter().sum::<Duration>() >= Duration::from_secs(70));
        assert_eq!(schedule(&IMDS, Failure::Transport), secs(&[0.0, 1.6, 3.2]));
    }

    #[test]
    fn app_service_waits_as_azure_core_does_by_default() {
        for code in [408, 429, 500, 502, 503, 504, 507] {
            assert_eq!(
                schedule(&APP_SERVICE, status(code)),
                secs(&[0.0, 1.6, 3.2]),
                "{code}"
            );
        }
        assert_eq!(
            schedule(&APP_SERVICE, Failure::Transport),
            secs(&[0.0, 1.6, 3.2])
        );
    }

    #[test]
    fn which_statuses_each_policy_retries() {
        let retried = |policy: &RetryPolicy| -> Vec<u16> {
            (400..600)
                .filter(|&code| policy.retries_status(StatusCode::from_u16(code).unwrap()))
                .filter(|code| !(510..600).contains(code))
                .collect()
        };
        let imds: Vec<u16> = [404, 408, 410, 429].into_iter().chain(500..510).collect();
        assert_eq!(retried(&IMDS), imds);
        assert_eq!(
            retried(&APP_SERVICE),
            [408, 429, 500, 502, 503, 504, 506, 507, 508, 509]
        );
        for policy in [&IMDS, &APP_SERVICE] {
            assert!(!policy.retries_status(StatusCode::BAD_REQUEST));
            assert!(!policy.retries_status(StatusCode::UNAUTHORIZED));
            assert!(!policy.retries_status(StatusCode::FORBIDDEN));
        }
    }

    #[test]
    fn a_retry_after_is_waited_instead_of_the_backoff() {
        let mut retries = Retries::new(&IMDS);
        let asked = Failure::Status {
            status: StatusCode::TOO_MANY_REQUESTS,
            retry_after: Some(Duration::from_secs(7)),
        };
        assert_eq!(retries.after(asked, PLENTY), Some(Duration::from_secs(7)));
        assert_eq!(
            retries.after(status(429), PLENTY),
            Some(Duration::from_millis(1600))
        );
    }

    /// A wait that would outlast the provider's timeout is not begun: the refresh ends with
    /// the answer it has, rather than a timeout that says less.
    #[test]
    fn no_wait_past_the_timeout() {
        let mut retries = Retries::new(&IMDS);
        assert_eq!(
            retries.after(status(410), Duration::from_secs(6)),
            Some(Duration::ZERO)
        );
        assert_eq!(
            retries.after(status(410), Duration::from_secs(6)),
            Some(Duration::from_secs(5))
        );
        assert_eq!(retries.after(status(410), Duration::from_secs(6)), None);
        assert_eq!(retries.attempts(), 3);
    }

    /// A wait that would end as the timeout does is not begun either: the next attempt would
    /// be cut at once.
    #[test]
    fn no_wait_that_ends_with_the_timeout() {
        let second_wait = Duration::from_millis(1600);
        let after_one = || {
            let mut retries = Retries::new(&IMDS);
            assert_eq!(retries.after(status(500), PLENTY), Some(Duration::ZERO));
            retries
        };
        assert_eq!(after_one().after(status(500), second_wait), None);
        assert_eq!(
            after_one().after(status(500), second_wait + Duration::from_nanos(1)),
            Some(second_wait)
        );
    }

    /// Statuses and transport failures draw on their own budgets and on the total.
    #[test]
    fn mixed_failures_share_the_total() {
        let mut retries = Retries::new(&IMDS);
        for failure in [Failure::Transport, status(500), Failure::Transport] {
            assert!(retries.after(failure, PLENTY).is_some());
        }
        assert!(retries.after(Failure::Transport, PLENTY).is_some());
        // A fourth transport failure: its own three retries are spent.
        assert_eq!(retries.after(Failure::Transport, PLENTY), None);
        assert_eq!(retries.attempts(), 5);

        let mut retries = Retries::new(&IMDS);
        for failure in [status(500), Failure::Transport, status(500), status(500)] {
            assert!(retries.after(failure, PLENTY).is_some());
        }
        assert!(retries.after(status(500), PLENTY).is_some());
        // Five retries in all, whatever they were for.
        assert_eq!(retries.after(status(500), PLENTY), None);
    }
}
