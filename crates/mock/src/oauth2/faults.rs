//! Faults the mock injects on its token endpoint, scripted by the test.

use std::collections::VecDeque;
use std::time::Duration;

use http::StatusCode;

/// How the token endpoint fails, for
/// [`MockAuthServer::fail_next_token_requests`](super::MockAuthServer::fail_next_token_requests).
///
/// Every variant applies after the request has been read in full, and before it is looked
/// at: an injected answer issues no token and uses no refresh token.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fault {
    /// Answer with this status and an HTML body, as a proxy in front of a failing server
    /// does.
    Status(StatusCode),
    /// Answer with an RFC 6749 error response: this status and `error` code.
    Error {
        /// The status (400 and 401 are the usual ones).
        status: StatusCode,
        /// The `error` code, such as `invalid_client` or `temporarily_unavailable`.
        code: &'static str,
    },
    /// Answer 429 `{"error":"slow_down"}` with `Retry-After` in whole seconds, rounded up.
    RateLimited {
        /// When the client may try again.
        retry_after: Duration,
    },
    /// Answer correctly, but only after this long (on tokio's clock).
    Delay(Duration),
    /// Answer 200 `application/json` with a body that is not valid JSON.
    Malformed,
    /// Never answer: hold the request until the server shuts down, then close the connection.
    Hang,
    /// Answer `400 {"error":"use_dpop_nonce"}` with a new `DPoP-Nonce`, the old one no longer
    /// accepted: a server whose nonce changes before every request, which a client must not
    /// chase forever.
    UseDpopNonce,
}

/// The scripted queue.
pub(super) struct Faults {
    scripted: VecDeque<(u32, Fault)>,
}

impl Faults {
    pub(super) fn new() -> Self {
        Faults {
            scripted: VecDeque::new(),
        }
    }

    /// Queues `fault` for the next `count` token requests, after those already queued.
    pub(super) fn script(&mut self, count: u32, fault: Fault) {
        if count > 0 {
            self.scripted.push_back((count, fault));
        }
    }

    /// The fault the next token request meets, if any.
    pub(super) fn next(&mut self) -> Option<Fault> {
        let (remaining, fault) = self.scripted.front_mut()?;
        let fault = fault.clone();
        *remaining -= 1;
        if *remaining == 0 {
            self.scripted.pop_front();
        }
        Some(fault)
    }
}
