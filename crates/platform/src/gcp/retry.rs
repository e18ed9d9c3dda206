//! When to try the metadata server again within one call: google-auth's rule, decided here
//! and driven by the provider.
//!
//! google-auth (`google.auth.compute_engine._metadata.get`) makes at most five attempts,
//! waiting between them with `ExponentialBackoff`: one second, doubling, each wait drawn
//! within 10 % either side.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The most attempts one call makes.
pub(super) const ATTEMPTS: u32 = 5;

const FIRST_WAIT: Duration = Duration::from_secs(1);

/// The share of a wait drawn either side of it.
const JITTER: f64 = 0.1;

/// The wait after failed attempt `attempt` (counted from 1) before the next one, with
/// `fraction` (in `[0, 1)`) placing it within the jitter; `None` once the attempts are spent,
/// or when the wait would not end before `remaining` (the rest of the call's timeout) does:
/// an attempt begun as the timeout runs out would be cut, and the error would say less than
/// the last answer.
pub(super) fn wait_after(attempt: u32, fraction: f64, remaining: Duration) -> Option<Duration> {
    if attempt == 0 || attempt >= ATTEMPTS {
        return None;
    }
    let base = FIRST_WAIT * 2u32.pow(attempt - 1);
    Some(base.mul_f64(1.0 - JITTER + 2.0 * JITTER * fraction)).filter(|wait| *wait < remaining)
}

/// A fraction in `[0, 1)`, different at every call: jitter needs no more than this.
pub(super) fn random_fraction() -> f64 {
    static CALLS: AtomicU64 = AtomicU64::new(0);
    // std's `RandomState` carries per-process random keys: randomness without a dependency.
    let bits = RandomState::new().hash_one(CALLS.fetch_add(1, Ordering::Relaxed));
    (bits >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn five_attempts_with_waits_of_one_two_four_eight_seconds_give_or_take_a_tenth() {
        let waits: Vec<_> = (1..=ATTEMPTS)
            .map(|attempt| wait_after(attempt, 0.5, Duration::MAX))
            .collect();
        let secs = |s| Some(Duration::from_secs(s));
        assert_eq!(waits, [secs(1), secs(2), secs(4), secs(8), None]);
        assert_eq!(
            wait_after(1, 0.0, Duration::MAX),
            Some(Duration::from_millis(900))
        );
        assert_eq!(
            wait_after(4, 0.0, Duration::MAX),
            Some(Duration::from_millis(7200))
        );
        let top = wait_after(4, 0.999_999, Duration::MAX).unwrap();
        assert!(
            top < Duration::from_millis(8800) && top > Duration::from_millis(8799),
            "{top:?}"
        );
        assert_eq!(wait_after(0, 0.5, Duration::MAX), None);
    }

    /// A wait that would end as the timeout does is not begun.
    #[test]
    fn a_wait_ends_before_the_timeout_or_is_not_begun() {
        let second = Duration::from_secs(1);
        assert_eq!(wait_after(1, 0.5, second), None);
        assert_eq!(
            wait_after(1, 0.5, second + Duration::from_nanos(1)),
            Some(second)
        );
    }

    #[test]
    fn fractions_are_in_range_and_vary() {
        let fractions: Vec<f64> = (0..100).map(|_| random_fraction()).collect();
        assert!(fractions.iter().all(|f| (0.0..1.0).contains(f)));
        assert!(fractions.windows(2).any(|pair| pair[0] != pair[1]));
    }
}
