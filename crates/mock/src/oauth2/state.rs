//! What a running mock authorization server holds: its fixed configuration, its mutable
//! state, and what it tells tests (counters, a log of token requests).

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use http::StatusCode;
use serde_json::Value;

use super::clients::MockClient;
use super::counters::AuthServerCounters;
use super::faults::Faults;
use super::ledger::TokenLedger;
use tower_bearer_oauth2::AuthMethod;

/// Which metadata documents the server publishes, for
/// [`MockAuthServerBuilder::discovery`](super::MockAuthServerBuilder::discovery).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Discovery {
    /// RFC 8414's `/.well-known/oauth-authorization-server` and OpenID Connect's
    /// `/.well-known/openid-configuration`. The default.
    Both,
    /// Only RFC 8414's.
    OAuthOnly,
    /// Only OpenID Connect's (as many servers do).
    OpenIdOnly,
    /// Neither.
    None,
}

/// Settings fixed when the server starts.
pub(super) struct AuthServerConfig {
    pub(super) clients: HashMap<String, MockClient>,
    /// Issuers whose JWT-bearer assertions are accepted, and their public keys.
    pub(super) assertion_issuers: HashMap<String, Value>,
    /// What the metadata's `issuer` says; the server's base URL unless overridden.
    pub(super) issuer: String,
    pub(super) token_endpoint: String,
    pub(super) discovery: Discovery,
    pub(super) refresh_tokens: bool,
    pub(super) rotate_refresh_tokens: bool,
    /// `http://127.0.0.1:PORT`: what the API's URIs are, as clients name them in proofs.
    pub(super) origin: String,
    pub(super) dpop: super::dpop::DpopPolicy,
}

/// Everything that changes while the server runs, behind one lock: requests are tiny, and
/// one lock keeps the counters consistent with the tokens they count.
pub(super) struct AuthServerState {
    pub(super) token_ttl: Duration,
    pub(super) ledger: TokenLedger,
    pub(super) faults: Faults,
    pub(super) counters: AuthServerCounters,
    pub(super) token_requests: Vec<TokenRequestLog>,
    /// `jti`s of client assertions and grant assertions already used.
    pub(super) seen_jtis: HashSet<String>,
    pub(super) subject_tokens: HashSet<String>,
    pub(super) dpop: super::dpop::DpopState,
}

/// The configuration and state every connection shares.
pub(super) struct SharedAuthServer {
    pub(super) config: AuthServerConfig,
    state: Mutex<AuthServerState>,
}

impl SharedAuthServer {
    pub(super) fn new(config: AuthServerConfig, state: AuthServerState) -> Self {
        SharedAuthServer {
            config,
            state: Mutex::new(state),
        }
    }

    /// The state. Never held across an `.await`.
    pub(super) fn lock(&self) -> MutexGuard<'_, AuthServerState> {
        crate::lock(&self.state)
    }
}

/// One request to the token endpoint, as
/// [`MockAuthServer::token_requests`](super::MockAuthServer::token_requests) tells it.
///
/// The values of the parameters that carry secrets (`client_secret`, `client_assertion`,
/// `refresh_token`, `assertion`, `subject_token`) read `[REDACTED]`.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct TokenRequestLog {
    /// The `grant_type` parameter, empty if there was none.
    pub grant_type: String,
    /// The client that authenticated, if one did.
    pub client_id: Option<String>,
    /// How it authenticated, if it did.
    pub auth_method: Option<AuthMethod>,
    /// Every form parameter, in order, secrets redacted.
    pub params: Vec<(String, String)>,
    /// The status of the answer.
    pub status: StatusCode,
}

impl TokenRequestLog {
    /// The values of parameter `name`, in order.
    pub fn param(&self, name: &str) -> Vec<&str> {
        self.params
            .iter()
            .filter(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
            .collect()
    }
}

/// The parameters whose values a log never shows.
pub(super) const SECRET_PARAMS: [&str; 5] = [
    "client_secret",
    "client_assertion",
    "refresh_token",
    "assertion",
    "subject_token",
];
