//! An embedded mock OAuth 2.0 authorization server: a real HTTP/1.1 server on loopback that
//! issues and checks tokens as an authorization server does, with a protected API beside it,
//! for tests and demos.
//!
//! Start one with [`MockAuthServer::start`] or [`MockAuthServer::builder`], point a provider
//! at [`MockAuthServer::issuer`] (or [`token_endpoint`](MockAuthServer::token_endpoint)) and
//! an API client at [`MockAuthServer::uri_for`]`("/api/…")`, then script faults and read
//! [`AuthServerCounters`] and [`TokenRequestLog`]s from the test.
//!
//! # What it serves
//!
//! | endpoint | behaviour |
//! | --- | --- |
//! | `POST /token` | RFC 6749 §5 token endpoint: `client_credentials`, `refresh_token`, JWT bearer (RFC 7523), token exchange (RFC 8693) |
//! | `GET /.well-known/oauth-authorization-server` | RFC 8414 metadata ([`Discovery`] says which documents are published) |
//! | `GET /.well-known/openid-configuration` | the same, at OpenID Connect's path |
//! | `GET`, `POST /api`, `/api/…` | a protected API: 200 with a live access token sent as it must be (a DPoP-bound one with its proof), 401 `WWW-Authenticate: Bearer error="invalid_token"` (or `DPoP error="…"`) otherwise |
//!
//! # Clients, checked on the wire
//!
//! Each [`MockClient`] is registered with one authentication method, as with a real server's
//! `token_endpoint_auth_method`; a request using another, more than one, a wrong secret, or a
//! bad assertion is answered `401 invalid_client`. `client_secret_basic` credentials are
//! form-urldecoded after base64 (RFC 6749 §2.3.1), so a client that forgets to encode a secret
//! holding `+`, `%` or a space is refused. `private_key_jwt` assertions must verify with the
//! client's registered key, have `iss` and `sub` the client id, `aud` the token endpoint's URL
//! or the issuer, an `exp` in the next ten minutes, and a `jti` never seen before.
//!
//! # Tokens
//!
//! - Access tokens are opaque and unique, valid for [`MockAuthServerBuilder::token_ttl`]
//!   (kept on tokio's clock, so tests may pause it and `tokio::time::advance` past a token's
//!   expiry); `expires_in` is that lifetime in whole seconds, rounded down, at least 1.
//! - Refresh tokens come with the refresh-token grant, and with the others when
//!   [`MockAuthServerBuilder::refresh_tokens`] asks (RFC 6749 §4.4.3 says a client-credentials
//!   answer should carry none). They rotate: each use returns a new one and uses up the old.
//!   **Reuse detection**: a used refresh token presented again revokes its whole family (every
//!   refresh and access token descending from the same first grant), as Auth0 and Okta do.
//! - [`MockAuthServer::issue_refresh_token`] hands a test a refresh token, as if from an
//!   authorization-code flow done elsewhere.
//!
//! # DPoP
//!
//! The server implements RFC 9449 unless [`MockAuthServerBuilder::support_dpop`] says not:
//!
//! - A token request with a `DPoP` proof gets a token bound to the proof's key
//!   (`token_type: DPoP`; the key's thumbprint, `cnf.jkt`, is kept server-side); a public
//!   client's refresh tokens are bound to it too. Without a proof, a bearer token, unless
//!   [`require_dpop`](MockAuthServerBuilder::require_dpop) (then `400 invalid_dpop_proof`).
//! - Proofs are checked as RFC 9449 §4.3 says, with the crate's own verifier: signature with
//!   the embedded key, `typ`, `alg` (one of
//!   [`dpop_algorithms`](MockAuthServerBuilder::dpop_algorithms)), `htm`, `htu`, `iat`
//!   within a minute, `jti` never seen before, and at the API `ath` and the token's key.
//! - With [`require_dpop_nonce`](MockAuthServerBuilder::require_dpop_nonce), proofs must
//!   carry the server's nonce, which every answer carries in `DPoP-Nonce`: a token request
//!   without it is answered `400 use_dpop_nonce`, an API request
//!   `401 WWW-Authenticate: DPoP error="use_dpop_nonce"`. The nonce changes on
//!   [`rotate_dpop_nonce`](MockAuthServer::rotate_dpop_nonce) and, if set, every
//!   [`dpop_nonce_ttl`](MockAuthServerBuilder::dpop_nonce_ttl).
//! - The API refuses a DPoP-bound token with `401 DPoP error="invalid_dpop_proof"` when its
//!   proof is missing or wrong, and `error="invalid_token"` when the proof is another key's
//!   (a thief's) or the token comes as `Bearer`.
//! - [`AuthServerCounters`] count the nonce challenges of the token endpoint and of the API,
//!   and the refusals by reason ([`DpopRefusals`]).
//!
//! # Faults
//!
//! [`MockAuthServer::fail_next_token_requests`] scripts the next answers of the token
//! endpoint ([`Fault`]: a status with an HTML body, an RFC 6749 error, a 429 with
//! `Retry-After`, a delay, malformed JSON, no answer at all).
//!
//! # Secrets
//!
//! Client secrets and tokens never appear in the `Debug` output of this module's types, in
//! its tracing events (method, path and status; an error code and reason), or in
//! [`TokenRequestLog`]s.

mod builder;
mod clients;
mod counters;
mod dpop;
mod faults;
mod ledger;
pub(crate) mod proof_verifier;
mod reply;
mod resource;
mod routes;
mod state;
mod token_endpoint;

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

pub use builder::MockAuthServerBuilder;
pub use clients::{FEDERATED_AUDIENCE, MockClient};
pub use counters::AuthServerCounters;
pub use counters::DpopRefusals;
pub use faults::Fault;
pub use state::{Discovery, TokenRequestLog};

use crate::server::RunningServer;
use ledger::Holder;
use state::SharedAuthServer;

/// The client a server registers when the builder names none, with [`DEFAULT_CLIENT_SECRET`]
/// and `client_secret_basic`.
pub const DEFAULT_CLIENT_ID: &str = "mock-client";

/// The default client's secret.
pub const DEFAULT_CLIENT_SECRET: &str = "mock-secret";

/// The access-token lifetime unless [`MockAuthServerBuilder::token_ttl`] says otherwise.
pub const DEFAULT_TOKEN_TTL: Duration = Duration::from_secs(3600);

/// A running mock OAuth 2.0 authorization server.
///
/// It serves until [`shutdown`](Self::shutdown) is awaited or it is dropped. Either way it
/// stops accepting at once, lets requests in flight finish (a [`Fault::Hang`] or
/// [`Fault::Delay`] request is abandoned and its connection closed), and forcibly ends
/// whatever is left after a second. Any number of servers can run in one process; each has
/// its own clients, tokens and counters. It must be started inside a tokio runtime.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use bytes::Bytes;
/// use http::{Request, StatusCode, header};
/// use http_body_util::{BodyExt, Full};
/// use hyper_util::client::legacy::Client;
/// use hyper_util::rt::TokioExecutor;
/// use tower_bearer_mock::oauth2::MockAuthServer;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
/// let server = MockAuthServer::builder()
///     .client("reports", "s3cr3t")
///     .token_ttl(Duration::from_secs(60))
///     .start()
///     .await?;
/// let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
///
/// // client_secret_basic: "reports:s3cr3t", each form-urlencoded, then base64.
/// let grant = Request::post(server.token_endpoint())
///     .header(header::AUTHORIZATION, "Basic cmVwb3J0czpzM2NyM3Q=")
///     .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
///     .body(Full::from("grant_type=client_credentials&scope=reports:read"))?;
/// let body = client.request(grant).await?.into_body().collect().await?.to_bytes();
/// let token: serde_json::Value = serde_json::from_slice(&body)?;
/// assert_eq!(token["expires_in"], 60);
///
/// let call = Request::get(server.uri_for("/api/reports"))
///     .header(header::AUTHORIZATION, format!("Bearer {}", token["access_token"].as_str().unwrap()))
///     .body(Full::default())?;
/// assert_eq!(client.request(call).await?.status(), StatusCode::OK);
///
/// let counters = server.counters();
/// assert_eq!((counters.client_credentials_grants, counters.client_secret_basic), (1, 1));
/// assert_eq!(server.token_requests()[0].param("scope"), ["reports:read"]);
/// server.shutdown().await;
/// # Ok(())
/// # }
/// ```
pub struct MockAuthServer {
    server: RunningServer,
    shared: Arc<SharedAuthServer>,
}

impl MockAuthServer {
    /// A builder, to register clients and choose lifetimes and behaviours.
    pub fn builder() -> MockAuthServerBuilder {
        MockAuthServerBuilder::new()
    }

    /// Starts a server with the defaults: one client, [`DEFAULT_CLIENT_ID`] with
    /// [`DEFAULT_CLIENT_SECRET`] (`client_secret_basic`), tokens valid for
    /// [`DEFAULT_TOKEN_TTL`], on `127.0.0.1` and a port the OS picks.
    pub async fn start() -> io::Result<Self> {
        Self::builder().start().await
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// The base URL, `http://127.0.0.1:PORT` with no trailing slash: the origin of the token
    /// endpoint and of the protected API.
    pub fn uri(&self) -> String {
        self.server.base_url()
    }

    /// The URL of `path_and_query` (such as `/api/reports`; a missing leading `/` is added) on
    /// this server: `http://127.0.0.1:PORT/api/reports`.
    ///
    /// A `String`, which every client takes as it is: `http::Request::get` and
    /// `Request::builder().uri` (for hyper-util and any tower service), and reqwest's
    /// `Client::get`; `.parse::<http::Uri>()` if a `Uri` is wanted.
    ///
    /// ```
    /// use tower_bearer_mock::oauth2::MockAuthServer;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let server = MockAuthServer::start().await?;
    /// let url = server.uri_for("/api/reports");
    /// assert_eq!(url, format!("{}/api/reports", server.uri()));
    /// let request = http::Request::get(&url).body(())?;
    /// assert_eq!(request.uri().path(), "/api/reports");
    /// # server.shutdown().await;
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Panics
    ///
    /// If `path_and_query` is not a valid URI path and query.
    pub fn uri_for(&self, path_and_query: &str) -> String {
        self.server.uri_for(path_and_query)
    }

    /// The issuer identifier its metadata names: its base URL unless
    /// [`MockAuthServerBuilder::issuer`] said otherwise. What a provider discovers from.
    pub fn issuer(&self) -> String {
        self.shared.config.issuer.clone()
    }

    /// The token endpoint's URL, `http://127.0.0.1:PORT/token`.
    pub fn token_endpoint(&self) -> String {
        self.shared.config.token_endpoint.clone()
    }

    /// The token endpoint at Entra ID's path for `tenant`, `{uri}/{tenant}/oauth2/v2.0/token`,
    /// where it answers as at [`token_endpoint`](Self::token_endpoint): for a client that
    /// builds Entra's URL from an authority host (Azure workload identity's
    /// `AZURE_AUTHORITY_HOST`) pointed at this server.
    pub fn entra_token_endpoint(&self, tenant: &str) -> String {
        format!("{}/{tenant}{}", self.uri(), routes::ENTRA_TOKEN_PATH)
    }

    /// A snapshot of the counters.
    pub fn counters(&self) -> AuthServerCounters {
        self.shared.lock().counters
    }

    /// Every request the token endpoint received, oldest first, secrets redacted.
    pub fn token_requests(&self) -> Vec<TokenRequestLog> {
        self.shared.lock().token_requests.clone()
    }

    /// Revokes every access and refresh token issued so far. Tokens issued afterwards work.
    pub fn revoke_all(&self) {
        self.shared.lock().ledger.revoke_all();
    }

    /// Makes the next `count` token requests meet `fault`. Calls queue up: after
    /// `fail_next_token_requests(2, a)` and `fail_next_token_requests(1, b)`, the next three
    /// token requests meet `a`, `a`, `b`.
    pub fn fail_next_token_requests(&self, count: u32, fault: Fault) {
        self.shared.lock().faults.script(count, fault);
    }

    /// Changes the lifetime of tokens issued from now on; tokens already issued keep theirs.
    pub fn set_token_ttl(&self, ttl: Duration) {
        self.shared.lock().token_ttl = ttl;
    }

    /// Accepts `subject_token` in token exchanges from now on.
    pub fn accept_subject_token(&self, subject_token: impl Into<String>) {
        self.shared
            .lock()
            .subject_tokens
            .insert(subject_token.into());
    }

    /// A refresh token for `client_id`, starting a new family, as if the client had been
    /// through an authorization-code flow: for [`Grant::refresh_token`](tower_bearer_oauth2::Grant::refresh_token).
    ///
    /// # Panics
    ///
    /// If no client `client_id` is registered.
    pub fn issue_refresh_token(&self, client_id: &str) -> String {
        assert!(
            self.shared.config.clients.contains_key(client_id),
            "no client {client_id:?} is registered"
        );
        let mut state = self.shared.lock();
        let ttl = state.token_ttl;
        let issued = state
            .ledger
            .issue(Holder::bearer(client_id), Instant::now(), ttl, true);
        issued.refresh_token.expect("issued with a refresh token")
    }

    /// Replaces the server's DPoP nonce now, and returns the new one: the
    /// old one is refused from now on, so the next proof that carries it meets a
    /// `use_dpop_nonce` challenge, at the token endpoint or the API. Does nothing a client
    /// can see unless [`MockAuthServerBuilder::require_dpop_nonce`] is set.
    pub fn rotate_dpop_nonce(&self) -> String {
        self.shared.lock().dpop.rotate(false)
    }

    /// Stops the server and waits until every task it spawned has ended.
    ///
    /// # Panics
    ///
    /// If the server's task panicked (a bug in the mock): the panic is resumed here.
    pub async fn shutdown(self) {
        self.server.shutdown().await;
    }
}

impl fmt::Debug for MockAuthServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MockAuthServer")
            .field("addr", &self.addr())
            .finish_non_exhaustive()
    }
}
