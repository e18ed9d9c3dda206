//! What a running mock server holds: its fixed configuration and its mutable state.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode};
use secrecy::SecretString;

use super::faults::Faults;
use super::tokens::IssuedTokens;
use super::videos::VideoStore;

/// One answered request, as told to [`MockServerBuilder::on_request`](super::MockServerBuilder::on_request).
///
/// Only what is safe to print: never headers, query or body, where credentials travel.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct RequestLog {
    /// The request's method.
    pub method: Method,
    /// The request's path, without the query.
    pub path: String,
    /// The status it was answered with.
    pub status: StatusCode,
}

/// A callback told of every answered request.
pub(super) type RequestHook = Arc<dyn Fn(&RequestLog) + Send + Sync>;

/// Settings fixed when the server starts.
pub(super) struct ServerConfig {
    pub(super) api_key: SecretString,
    pub(super) revoke_access_on_refresh: bool,
    pub(super) credential_rejection_status: StatusCode,
    pub(super) on_request: Option<RequestHook>,
}

/// Everything that changes while the server runs, behind one lock: requests are tiny, and
/// one lock keeps [`Counters`] consistent with the tokens they count.
pub(super) struct ServerState {
    pub(super) token_ttl: Duration,
    pub(super) tokens: IssuedTokens,
    pub(super) videos: VideoStore,
    pub(super) faults: Faults,
    pub(super) counters: Counters,
    pub(super) last_auth_headers: Option<HeaderMap>,
    pub(super) received_bodies: Vec<Bytes>,
}

/// The configuration and state every connection task shares.
pub(super) struct SharedServer {
    pub(super) config: ServerConfig,
    state: Mutex<ServerState>,
}

impl SharedServer {
    pub(super) fn new(config: ServerConfig, state: ServerState) -> Self {
        Self {
            config,
            state: Mutex::new(state),
        }
    }

    /// The state. Never held across an `.await`.
    pub(super) fn lock(&self) -> MutexGuard<'_, ServerState> {
        crate::lock(&self.state)
    }
}

/// What the server has seen and done, for tests to assert on. Read it with
/// [`MockServer::counters`](super::MockServer::counters).
///
/// Auth requests are those to `/auth/api-key` and `/auth/refresh`; resource requests are
/// those to `/videos`. Requests answered 404 or 405 are in neither.
///
/// Counters may be added in later versions: read the fields, compare with
/// `Counters::default()`, but do not build one field by field.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Counters {
    /// Auth requests received, whatever became of them.
    pub auth_requests: u64,
    /// Successful logins with the API key.
    pub api_key_logins: u64,
    /// Successful refresh-token grants.
    pub refreshes: u64,
    /// Logins refused because the API key was wrong.
    pub rejected_api_keys: u64,
    /// Refreshes refused because the refresh token was unknown, already used, ended by a
    /// later login, or revoked.
    pub rejected_refresh_tokens: u64,
    /// Auth requests refused because the body was not JSON or lacked its field.
    pub invalid_auth_payloads: u64,
    /// Auth requests answered with an injected fault instead of being handled (scripted
    /// [`Failure`](super::Failure)s and [`Chaos`](super::Chaos) alike, delays excepted).
    pub auth_failures_injected: u64,
    /// Auth requests held back by an injected delay (then handled as usual).
    pub auth_delays_injected: u64,
    /// Resource requests received, whatever became of them.
    pub resource_requests: u64,
    /// Resource requests answered 401, for any of the five reasons below.
    pub unauthorized: u64,
    /// 401s for a request with no `Authorization: Bearer …` header.
    pub unauthorized_missing: u64,
    /// 401s for a token this server never issued.
    pub unauthorized_unknown: u64,
    /// 401s for a token past its expiry (and not revoked).
    pub unauthorized_expired: u64,
    /// 401s for a revoked token (by [`MockServer::revoke_all`](super::MockServer::revoke_all),
    /// or by a refresh when `revoke_access_on_refresh` is on), expired or not.
    pub unauthorized_revoked: u64,
    /// 401s to a valid token, injected by [`Chaos::spurious_unauthorized_rate`](super::Chaos).
    pub unauthorized_spurious: u64,
    /// Resource requests whose token was already past its expiry when the request arrived,
    /// revoked or not: a client that tracks expiry should keep this at zero.
    pub expired_token_requests: u64,
    /// Videos created by `POST /videos`.
    pub videos_created: u64,
}

/// Why a resource request is answered 401.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Unauthorized {
    Missing,
    Unknown,
    Expired,
    Revoked,
    Spurious,
}

impl Counters {
    pub(super) fn count_unauthorized(&mut self, reason: Unauthorized) {
        self.unauthorized += 1;
        let counter = match reason {
            Unauthorized::Missing => &mut self.unauthorized_missing,
            Unauthorized::Unknown => &mut self.unauthorized_unknown,
            Unauthorized::Expired => &mut self.unauthorized_expired,
            Unauthorized::Revoked => &mut self.unauthorized_revoked,
            Unauthorized::Spurious => &mut self.unauthorized_spurious,
        };
        *counter += 1;
    }
}
