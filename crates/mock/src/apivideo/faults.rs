//! Faults the mock injects on its auth endpoints, scripted or at random.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

use http::StatusCode;

use crate::server::rng::SplitMix64;

/// How the auth endpoints fail, for [`MockServer::fail_next_auth`](super::MockServer::fail_next_auth).
///
/// Every variant applies after the request (headers and body) has been read in full.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Failure {
    /// Answer with this status and an `application/problem+json` body.
    ///
    /// 400 and 401 carry the "credentials rejected" body, so a client sees exactly what a bad
    /// API key would give it. 429 is [`Failure::RateLimited`] with a one-second hint. Any
    /// other status carries a generic problem titled with the status's reason phrase.
    Status(StatusCode),
    /// Answer 429 "Too many requests." with api.video's rate-limit headers
    /// (`X-RateLimit-Limit`, `X-RateLimit-Remaining: 0`, `X-RateLimit-Retry-After`) and a
    /// standard `Retry-After`, all saying `retry_after` in whole seconds, rounded up.
    RateLimited {
        /// When the client may try again.
        retry_after: Duration,
    },
    /// Answer correctly, but only after this long (on tokio's clock). The request is handled
    /// when the delay ends, so tokens issued are valid for their full lifetime from then.
    Delay(Duration),
    /// Answer 200 `application/json` with a body that is not valid JSON.
    Malformed,
    /// Never answer: hold the request until the server shuts down, then close the connection.
    Hang,
}

/// Random faults, for chaos tests. [`Chaos::default()`] injects none; each setter adds one
/// kind.
///
/// Rates are probabilities in `0.0..=1.0` (values outside are clamped, NaN counts as 0).
/// The dice are seeded: the same seed and the same sequence of requests give the same faults,
/// so a failing chaos test can be replayed. Requests sent concurrently reach the dice in
/// whatever order they arrive, so only sequential runs repeat exactly.
///
/// Scripted failures ([`MockServer::fail_next_auth`](super::MockServer::fail_next_auth))
/// take precedence; while any are pending the auth dice are not rolled.
///
/// ```
/// use std::time::Duration;
/// use tower_bearer_mock::apivideo::Chaos;
///
/// let chaos = Chaos::default()
///     .auth_error_rate(0.1)
///     .auth_slow(0.05, Duration::from_millis(400))
///     .seed(7);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Chaos {
    auth_error_rate: f64,
    auth_slow_rate: f64,
    auth_slow_delay: Duration,
    auth_malformed_rate: f64,
    spurious_unauthorized_rate: f64,
    seed: u64,
}

impl Chaos {
    /// The share of auth requests answered 500 with a problem+json body.
    pub fn auth_error_rate(mut self, rate: f64) -> Self {
        self.auth_error_rate = rate;
        self
    }

    /// The share of auth requests held `delay` before being handled. A slow request may then
    /// also fail.
    pub fn auth_slow(mut self, rate: f64, delay: Duration) -> Self {
        self.auth_slow_rate = rate;
        self.auth_slow_delay = delay;
        self
    }

    /// The share of auth requests answered 200 with a broken JSON body.
    pub fn auth_malformed_rate(mut self, rate: f64) -> Self {
        self.auth_malformed_rate = rate;
        self
    }

    /// The share of resource requests (`/videos`) carrying a valid token that are answered
    /// 401 all the same.
    pub fn spurious_unauthorized_rate(mut self, rate: f64) -> Self {
        self.spurious_unauthorized_rate = rate;
        self
    }

    /// The seed for the dice. Default: 0.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }
}

/// What an injected fault answers instead of the real thing.
#[derive(Clone, Copy, Debug)]
pub(super) enum Injected {
    Status(StatusCode),
    RateLimited(Duration),
    Malformed,
    Hang,
}

/// What happens to one auth request before (or instead of) its real handling.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct AuthPlan {
    pub(super) delay: Option<Duration>,
    pub(super) answer: Option<Injected>,
}

impl From<Failure> for AuthPlan {
    fn from(failure: Failure) -> Self {
        let answer = |injected| Self {
            delay: None,
            answer: Some(injected),
        };
        match failure {
            Failure::Status(StatusCode::TOO_MANY_REQUESTS) => {
                answer(Injected::RateLimited(Duration::from_secs(1)))
            }
            Failure::Status(status) => answer(Injected::Status(status)),
            Failure::RateLimited { retry_after } => answer(Injected::RateLimited(retry_after)),
            Failure::Malformed => answer(Injected::Malformed),
            Failure::Hang => answer(Injected::Hang),
            Failure::Delay(delay) => Self {
                delay: Some(delay),
                answer: None,
            },
        }
    }
}

/// The scripted queue and the chaos dice.
pub(super) struct Faults {
    /// An outage: every auth request until then meets the failure.
    outage: Option<(Instant, Failure)>,
    scripted: VecDeque<(u32, Failure)>,
    chaos: Chaos,
    dice: SplitMix64,
}

impl Faults {
    pub(super) fn new() -> Self {
        Self {
            outage: None,
            scripted: VecDeque::new(),
            chaos: Chaos::default(),
            dice: SplitMix64::new(0),
        }
    }

    /// Queues `failure` for the next `count` auth requests, after those already queued.
    pub(super) fn script(&mut self, count: u32, failure: Failure) {
        if count > 0 {
            self.scripted.push_back((count, failure));
        }
    }

    /// Makes every auth request fail with `failure` until `until`.
    pub(super) fn outage(&mut self, until: Instant, failure: Failure) {
        self.outage = Some((until, failure));
    }

    /// Replaces the chaos settings and reseeds the dice.
    pub(super) fn set_chaos(&mut self, chaos: Chaos) {
        self.chaos = Chaos {
            auth_error_rate: clamp_rate(chaos.auth_error_rate),
            auth_slow_rate: clamp_rate(chaos.auth_slow_rate),
            auth_malformed_rate: clamp_rate(chaos.auth_malformed_rate),
            spurious_unauthorized_rate: clamp_rate(chaos.spurious_unauthorized_rate),
            ..chaos
        };
        self.dice = SplitMix64::new(chaos.seed);
    }

    /// Decides the fate of the next auth request.
    pub(super) fn plan_auth(&mut self) -> AuthPlan {
        if let Some((until, failure)) = self.outage {
            if Instant::now() < until {
                return failure.into();
            }
            self.outage = None;
        }
        if let Some(failure) = self.next_scripted() {
            return failure.into();
        }
        // Always three rolls, whatever the rates, so one decision never shifts the next.
        let slow = self.dice.chance(self.chaos.auth_slow_rate);
        let error = self.dice.chance(self.chaos.auth_error_rate);
        let malformed = self.dice.chance(self.chaos.auth_malformed_rate);
        AuthPlan {
            delay: slow.then_some(self.chaos.auth_slow_delay),
            answer: if error {
                Some(Injected::Status(StatusCode::INTERNAL_SERVER_ERROR))
            } else if malformed {
                Some(Injected::Malformed)
            } else {
                None
            },
        }
    }

    /// Whether a resource request with a valid token is refused all the same.
    pub(super) fn roll_spurious_unauthorized(&mut self) -> bool {
        self.dice.chance(self.chaos.spurious_unauthorized_rate)
    }

    fn next_scripted(&mut self) -> Option<Failure> {
        let (remaining, failure) = self.scripted.front_mut()?;
        let failure = *failure;
        *remaining -= 1;
        if *remaining == 0 {
            self.scripted.pop_front();
        }
        Some(failure)
    }
}

fn clamp_rate(rate: f64) -> f64 {
    if rate.is_nan() {
        0.0
    } else {
        rate.clamp(0.0, 1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_outage_fails_every_auth_request_until_it_ends_then_scripts_resume() {
        let mut faults = Faults::new();
        faults.script(1, Failure::Malformed);
        let unavailable = Failure::Status(StatusCode::SERVICE_UNAVAILABLE);
        faults.outage(Instant::now() + Duration::from_secs(3600), unavailable);
        for _ in 0..3 {
            assert!(matches!(
                faults.plan_auth().answer,
                Some(Injected::Status(StatusCode::SERVICE_UNAVAILABLE))
            ));
        }
        faults.outage(Instant::now(), unavailable);
        assert!(matches!(
            faults.plan_auth().answer,
            Some(Injected::Malformed)
        ));
        assert!(faults.plan_auth().answer.is_none());
    }

    #[test]
    fn scripted_failures_run_in_order_then_stop() {
        let mut faults = Faults::new();
        faults.script(2, Failure::Malformed);
        faults.script(0, Failure::Hang);
        faults.script(1, Failure::Status(StatusCode::TOO_MANY_REQUESTS));
        let answers: Vec<_> = (0..4).map(|_| faults.plan_auth().answer).collect();
        assert!(matches!(
            answers.as_slice(),
            [
                Some(Injected::Malformed),
                Some(Injected::Malformed),
                Some(Injected::RateLimited(d)),
                None
            ] if *d == Duration::from_secs(1)
        ));
    }

    #[test]
    fn chaos_rates_are_clamped() {
        let mut faults = Faults::new();
        faults.set_chaos(
            Chaos::default()
                .auth_error_rate(7.0)
                .auth_malformed_rate(f64::NAN),
        );
        assert!((0..50).all(|_| matches!(
            faults.plan_auth().answer,
            Some(Injected::Status(StatusCode::INTERNAL_SERVER_ERROR))
        )));
    }
}
