//! Configuring and starting a [`MockAuthServer`].

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::net::TcpListener;

use super::dpop;
use super::faults::Faults;
use super::ledger::TokenLedger;
use super::state::{AuthServerConfig, AuthServerState, SharedAuthServer};
use super::{
    AuthServerCounters, DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, DEFAULT_TOKEN_TTL, Discovery,
    MockAuthServer, MockClient, routes,
};
use crate::server::RunningServer;

/// Configures and starts a [`MockAuthServer`]. Made by [`MockAuthServer::builder`].
#[must_use = "a builder does nothing until `.start().await`"]
pub struct MockAuthServerBuilder {
    addr: SocketAddr,
    clients: Vec<MockClient>,
    assertion_issuers: HashMap<String, Value>,
    subject_tokens: HashSet<String>,
    token_ttl: Duration,
    refresh_tokens: bool,
    rotate_refresh_tokens: bool,
    issuer: Option<String>,
    discovery: Discovery,
    dpop: dpop::DpopPolicy,
}

impl MockAuthServerBuilder {
    pub(super) fn new() -> Self {
        MockAuthServerBuilder {
            addr: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            clients: Vec::new(),
            assertion_issuers: HashMap::new(),
            subject_tokens: HashSet::new(),
            token_ttl: DEFAULT_TOKEN_TTL,
            refresh_tokens: false,
            rotate_refresh_tokens: true,
            issuer: None,
            discovery: Discovery::Both,
            dpop: dpop::DpopPolicy::default(),
        }
    }

    /// The address to listen on. Default: `127.0.0.1:0` (a port the OS picks).
    pub fn addr(mut self, addr: SocketAddr) -> Self {
        self.addr = addr;
        self
    }

    /// Registers a confidential client that authenticates with `client_secret_basic`. Without
    /// any client, the server registers [`DEFAULT_CLIENT_ID`].
    pub fn client(self, id: impl Into<String>, secret: impl Into<String>) -> Self {
        self.register(MockClient::secret_basic(id, secret))
    }

    /// Registers a client with its authentication method and credential. A later client with
    /// the same id replaces an earlier one.
    pub fn register(mut self, client: MockClient) -> Self {
        self.clients.push(client);
        self
    }

    /// Trusts JWT-bearer assertions (RFC 7523 §2.1) issued by `issuer` and signed with
    /// `public_jwk`. Assertions issued by a `private_key_jwt` client with its own key are
    /// trusted too.
    pub fn assertion_issuer(mut self, issuer: impl Into<String>, public_jwk: Value) -> Self {
        self.assertion_issuers.insert(issuer.into(), public_jwk);
        self
    }

    /// Accepts `subject_token` in token exchanges (RFC 8693); any other is `invalid_grant`.
    pub fn subject_token(mut self, subject_token: impl Into<String>) -> Self {
        self.subject_tokens.insert(subject_token.into());
        self
    }

    /// How long access tokens stay valid, to the nanosecond. Default: [`DEFAULT_TOKEN_TTL`].
    /// Can be changed later with [`MockAuthServer::set_token_ttl`].
    pub fn token_ttl(mut self, ttl: Duration) -> Self {
        self.token_ttl = ttl;
        self
    }

    /// Whether client-credentials, JWT-bearer and token-exchange answers carry a refresh
    /// token (a JWT-bearer grant only when the client authenticated: a refresh token is bound
    /// to a client). Default: `false`, as RFC 6749 §4.4.3 recommends for client credentials.
    pub fn refresh_tokens(mut self, issue: bool) -> Self {
        self.refresh_tokens = issue;
        self
    }

    /// Whether each refresh returns a new refresh token and uses up the old one (with reuse
    /// detection). Default: `true`. With `false`, a refresh token is used again and again,
    /// and the answers to a refresh carry none (RFC 6749 §6 lets a server keep the old one).
    pub fn rotate_refresh_tokens(mut self, rotate: bool) -> Self {
        self.rotate_refresh_tokens = rotate;
        self
    }

    /// The `issuer` the metadata names, in place of the server's base URL: to test a client
    /// against metadata for another issuer.
    pub fn issuer(mut self, issuer: impl Into<String>) -> Self {
        self.issuer = Some(issuer.into());
        self
    }

    /// Which metadata documents are published. Default: [`Discovery::Both`].
    pub fn discovery(mut self, discovery: Discovery) -> Self {
        self.discovery = discovery;
        self
    }

    /// Whether the server implements DPoP. Default: `true`, and a token
    /// request with a good proof gets a DPoP-bound token. With `false` it is a server from
    /// before RFC 9449: it ignores proofs, issues bearer tokens, and its metadata lists no
    /// `dpop_signing_alg_values_supported`.
    pub fn support_dpop(mut self, supported: bool) -> Self {
        self.dpop.supported = supported;
        self
    }

    /// Whether every token request must carry a DPoP proof; one without is
    /// refused with `400 invalid_dpop_proof`. Default: `false`, when a request with a proof
    /// gets a DPoP-bound token and one without a bearer token.
    pub fn require_dpop(mut self, required: bool) -> Self {
        self.dpop.required = required;
        self
    }

    /// Whether DPoP proofs must carry the server's nonce (RFC 9449 §8, §9).
    /// Default: `false`. With `true`, every answer of the token endpoint and of the API
    /// carries the current nonce in `DPoP-Nonce`, and a proof without it (or with one the
    /// server no longer accepts) is answered `400 use_dpop_nonce` by the token endpoint and
    /// `401 WWW-Authenticate: DPoP error="use_dpop_nonce"` by the API. One nonce serves the
    /// whole server, which is one origin.
    pub fn require_dpop_nonce(mut self, required: bool) -> Self {
        self.dpop.nonces = required;
        self
    }

    /// How often the DPoP nonce changes by itself (on tokio's clock): the
    /// first request after `ttl` gets a new one, and the one before stays accepted until
    /// the next change, as servers do so that requests in flight are not refused. Default:
    /// never. [`MockAuthServer::rotate_dpop_nonce`] changes it at once, with no grace.
    pub fn dpop_nonce_ttl(mut self, ttl: Duration) -> Self {
        self.dpop.nonce_ttl = Some(ttl);
        self
    }

    /// The algorithms DPoP proofs may be signed with, listed in the metadata's
    /// `dpop_signing_alg_values_supported`; a proof signed otherwise is
    /// refused. Default: ES256, EdDSA and RS256.
    pub fn dpop_algorithms(
        mut self,
        algorithms: impl IntoIterator<Item = tower_bearer_oauth2::jose::Algorithm>,
    ) -> Self {
        self.dpop.algorithms = algorithms.into_iter().collect();
        self
    }

    /// Binds the address and starts serving on the current tokio runtime.
    ///
    /// # Errors
    ///
    /// If the address cannot be bound.
    ///
    /// # Panics
    ///
    /// If called outside a tokio runtime.
    pub async fn start(mut self) -> io::Result<MockAuthServer> {
        let listener = TcpListener::bind(self.addr).await?;
        let base = format!("http://{}", listener.local_addr()?);
        if self.clients.is_empty() {
            self.clients.push(MockClient::secret_basic(
                DEFAULT_CLIENT_ID,
                DEFAULT_CLIENT_SECRET,
            ));
        }
        let config = AuthServerConfig {
            clients: self
                .clients
                .into_iter()
                .map(|client| (client.id().to_owned(), client))
                .collect(),
            assertion_issuers: self.assertion_issuers,
            token_endpoint: format!("{base}{}", routes::TOKEN_PATH),
            origin: base.clone(),
            issuer: self.issuer.unwrap_or(base),
            discovery: self.discovery,
            refresh_tokens: self.refresh_tokens,
            rotate_refresh_tokens: self.rotate_refresh_tokens,
            dpop: self.dpop,
        };
        let state = AuthServerState {
            token_ttl: self.token_ttl,
            ledger: TokenLedger::new(),
            faults: Faults::new(),
            counters: AuthServerCounters::default(),
            token_requests: Vec::new(),
            seen_jtis: HashSet::new(),
            subject_tokens: self.subject_tokens,
            dpop: dpop::DpopState::new(&config.dpop),
        };
        let shared = Arc::new(SharedAuthServer::new(config, state));
        let for_requests = Arc::clone(&shared);
        let server = RunningServer::start(listener, "OAuth 2.0", move |request, shutdown| {
            routes::handle(Arc::clone(&for_requests), shutdown, request)
        })?;
        Ok(MockAuthServer { server, shared })
    }
}

impl fmt::Debug for MockAuthServerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut debug = f.debug_struct("MockAuthServerBuilder");
        debug
            .field("addr", &self.addr)
            .field("clients", &self.clients)
            .field(
                "assertion_issuers",
                &self.assertion_issuers.keys().collect::<Vec<_>>(),
            )
            .field("subject_tokens", &self.subject_tokens.len())
            .field("token_ttl", &self.token_ttl)
            .field("refresh_tokens", &self.refresh_tokens)
            .field("rotate_refresh_tokens", &self.rotate_refresh_tokens)
            .field("issuer", &self.issuer)
            .field("discovery", &self.discovery);
        debug.field("dpop", &self.dpop);
        debug.finish()
    }
}
