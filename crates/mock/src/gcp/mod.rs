//! A mock of GCP's metadata server: a real HTTP/1.1 server on loopback that hands out service
//! account access tokens as the metadata server of a Compute Engine VM, a GKE pod or Cloud Run
//! does, for tests and demos.
//!
//! Point a client at it with `GCE_METADATA_HOST` set to [`MockMetadataServer::host`] (Google's
//! own libraries read it too), or give the host to the client directly.
//!
//! # What it serves
//!
//! Every path under `/computeMetadata/v1/` needs the header `Metadata-Flavor: Google`, and is
//! answered 403 without it, as the real server does. Every answer carries
//! `Metadata-Flavor: Google`. Only `GET` is served.
//!
//! | path | answer |
//! | --- | --- |
//! | `/` | `computeMetadata/` (the root, which clients ping to detect the server; no header needed) |
//! | `…/instance/service-accounts/{account}/token[?scopes=a,b]` | `{"access_token","expires_in","token_type":"Bearer"}` |
//! | `…/instance/service-accounts/{account}/?recursive=true` | `{"aliases":["default"],"email","scopes"}` |
//! | `…/instance/service-accounts/{account}/email`, `/scopes`, `/aliases` | plain text |
//! | `…/instance/service-accounts/` | the accounts, one a line |
//! | `…/project/project-id` | [`MockMetadataServerBuilder::project_id`] |
//! | `…/universe/universe-domain` | `googleapis.com` |
//! | an account it does not know, any other path | 404 |
//!
//! `{account}` is `default` (the first account) or an account's email, in any case, as it
//! is or percent-encoded. Plain-text answers are `application/text`, as the real server
//! labels them.
//!
//! # Tokens, as GCP's metadata server caches them
//!
//! The metadata server does not mint a token per request: it hands back the token it issued
//! before, with `expires_in` counting down, until less than
//! [`renew_before`](MockMetadataServerBuilder::renew_before) (5 minutes by default) of its life
//! is left, and only then issues a new one. This mock does the same, per account and per
//! `scopes` value, on tokio's clock: tests may run under a paused clock and
//! `tokio::time::advance` through a token's life. A client that refreshes ahead of expiry by
//! more than `renew_before` gets the token it already holds, with less life left each time:
//! [`Counters::tokens_reused`] shows it.
//!
//! # Faults
//!
//! [`MockMetadataServer::fail_next_tokens`] scripts the next token requests' answers
//! ([`Fault`]): a status (429, 500 and 503 are what an overloaded metadata server sends), a
//! delay (a GKE metadata server provisioning a pod's identity answers its first requests
//! slowly), or a connection closed without an answer.

mod routes;
mod state;

use std::fmt;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use http::StatusCode;
use tokio::net::TcpListener;

use crate::server::RunningServer;
use state::{Account, State};

/// The email of the `default` account unless [`MockMetadataServerBuilder::account`] says
/// otherwise.
pub const DEFAULT_EMAIL: &str = "mock-sa@mock-project.iam.gserviceaccount.com";

/// The scope every account has unless [`MockMetadataServerBuilder::account`] says otherwise.
pub const CLOUD_PLATFORM: &str = "https://www.googleapis.com/auth/cloud-platform";

/// The lifetime of a new token unless [`MockMetadataServerBuilder::token_ttl`] says
/// otherwise: the metadata server's hour.
pub const DEFAULT_TOKEN_TTL: Duration = Duration::from_secs(3600);

/// How long before its expiry a token stops being handed out again, unless
/// [`MockMetadataServerBuilder::renew_before`] says otherwise: the metadata server's 5
/// minutes.
pub const DEFAULT_RENEW_BEFORE: Duration = Duration::from_secs(5 * 60);

/// A running mock metadata server.
///
/// It serves until [`shutdown`](Self::shutdown) is awaited or it is dropped, on the tokio
/// runtime it was started on. Each server has its own accounts, tokens and counters.
///
/// # Example
///
/// ```
/// use bytes::Bytes;
/// use http::Request;
/// use http_body_util::{BodyExt, Full};
/// use hyper_util::client::legacy::Client;
/// use hyper_util::rt::TokioExecutor;
/// use tower_bearer_mock::gcp::MockMetadataServer;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
/// let server = MockMetadataServer::start().await?;
/// let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
///
/// let path = "/computeMetadata/v1/instance/service-accounts/default/token";
/// let ask = || {
///     Request::get(server.uri_for(path))
///         .header("metadata-flavor", "Google")
///         .body(Full::default())
/// };
/// let response = client.request(ask()?).await?;
/// assert_eq!(response.headers()["metadata-flavor"], "Google");
/// let first: serde_json::Value =
///     serde_json::from_slice(&response.into_body().collect().await?.to_bytes())?;
/// assert_eq!(first["token_type"], "Bearer");
///
/// // GCP's cache: the same token again, until 5 minutes before it expires.
/// let response = client.request(ask()?).await?;
/// let second: serde_json::Value =
///     serde_json::from_slice(&response.into_body().collect().await?.to_bytes())?;
/// assert_eq!(first["access_token"], second["access_token"]);
/// assert_eq!(server.counters().token_requests, 2);
/// assert_eq!(server.counters().tokens_issued, 1);
/// # Ok(())
/// # }
/// ```
pub struct MockMetadataServer {
    server: RunningServer,
    shared: Arc<Shared>,
}

/// What every connection task shares.
struct Shared {
    project_id: String,
    state: Mutex<State>,
}

impl Shared {
    /// The state. Never held across an `.await`.
    fn lock(&self) -> MutexGuard<'_, State> {
        crate::lock(&self.state)
    }
}

impl MockMetadataServer {
    /// A builder, to choose the accounts, the token lifetime and the cache's renewal point.
    pub fn builder() -> MockMetadataServerBuilder {
        MockMetadataServerBuilder::new()
    }

    /// Starts a server with the defaults: one account, [`DEFAULT_EMAIL`] with the scope
    /// [`CLOUD_PLATFORM`], tokens valid [`DEFAULT_TOKEN_TTL`] and handed out again until
    /// [`DEFAULT_RENEW_BEFORE`] before their expiry, on `127.0.0.1` and a port the OS picks.
    pub async fn start() -> io::Result<Self> {
        Self::builder().start().await
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// `127.0.0.1:PORT`: the value for `GCE_METADATA_HOST`, which Google's libraries and
    /// `tower_bearer_platform::gcp` read as `host[:port]`.
    pub fn host(&self) -> String {
        self.addr().to_string()
    }

    /// The base URL, `http://127.0.0.1:PORT`, with no trailing slash.
    pub fn uri(&self) -> String {
        self.server.base_url()
    }

    /// The URL of `path_and_query` on this server.
    ///
    /// # Panics
    ///
    /// If `path_and_query` is not a valid URI path and query.
    pub fn uri_for(&self, path_and_query: &str) -> String {
        self.server.uri_for(path_and_query)
    }

    /// A snapshot of the counters.
    pub fn counters(&self) -> Counters {
        self.shared.lock().counters
    }

    /// How many tokens were handed out for the account with this email (or `default`),
    /// new or again.
    pub fn tokens_for(&self, account: &str) -> u64 {
        let state = self.shared.lock();
        let Some(email) = state.account(account).map(|account| account.email.clone()) else {
            return 0;
        };
        state.per_account.get(&email).copied().unwrap_or(0)
    }

    /// The token last handed out for the account with this email (or `default`), whatever
    /// the scopes: to check that a client got this server's token.
    pub fn last_token(&self, account: &str) -> Option<String> {
        let state = self.shared.lock();
        let email = state.account(account)?.email.clone();
        state.last_token(&email)
    }

    /// Every request to a token path, oldest first, whatever its answer.
    pub fn token_requests(&self) -> Vec<SeenTokenRequest> {
        self.shared.lock().seen.clone()
    }

    /// Makes the next `count` token requests meet `fault`. Calls queue up, as
    /// `apivideo::MockServer::fail_next_auth`'s do.
    pub fn fail_next_tokens(&self, count: u32, fault: Fault) {
        self.shared.lock().script(count, fault);
    }

    /// Changes the lifetime of tokens issued from now on.
    pub fn set_token_ttl(&self, ttl: Duration) {
        self.shared.lock().token_ttl = ttl;
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

impl fmt::Debug for MockMetadataServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MockMetadataServer")
            .field("addr", &self.addr())
            .finish_non_exhaustive()
    }
}

/// What a token request meets instead of its answer, for
/// [`MockMetadataServer::fail_next_tokens`].
///
/// Applied after the `Metadata-Flavor` check, before the account is looked up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fault {
    /// Answer with this status and its reason phrase as a plain-text body.
    Status(StatusCode),
    /// Answer as usual, but only after this long (on tokio's clock).
    Delay(Duration),
    /// Close the connection without an answer.
    CloseConnection,
}

/// One request to a token path, as [`MockMetadataServer::token_requests`] lists it. Never the
/// token it was given.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct SeenTokenRequest {
    /// The account the path named, percent-decoded: `default` or an email.
    pub account: String,
    /// The `scopes` query parameter, split at commas; `None` without one.
    pub scopes: Option<Vec<String>>,
    /// The status it was answered with (500 for a connection closed without an answer).
    pub status: StatusCode,
}

/// What the server has seen and done. Read it with [`MockMetadataServer::counters`].
///
/// Counters may be added in later versions: read the fields, but do not build one.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Counters {
    /// Requests received, to any path.
    pub requests: u64,
    /// Requests to a token path, whatever became of them.
    pub token_requests: u64,
    /// New tokens issued.
    pub tokens_issued: u64,
    /// Answers with a token issued before (the metadata server's cache).
    pub tokens_reused: u64,
    /// Requests answered 403 for want of `Metadata-Flavor: Google`.
    pub missing_flavor: u64,
    /// Requests answered 404 for an account the server does not know.
    pub unknown_accounts: u64,
    /// Token requests that met a scripted [`Fault`].
    pub faults_injected: u64,
}

/// Configures and starts a [`MockMetadataServer`]. Made by [`MockMetadataServer::builder`].
#[must_use = "a builder does nothing until `.start().await`"]
pub struct MockMetadataServerBuilder {
    addr: SocketAddr,
    accounts: Vec<Account>,
    project_id: String,
    token_ttl: Duration,
    renew_before: Duration,
}

impl MockMetadataServerBuilder {
    fn new() -> Self {
        MockMetadataServerBuilder {
            addr: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            accounts: Vec::new(),
            project_id: "mock-project".to_owned(),
            token_ttl: DEFAULT_TOKEN_TTL,
            renew_before: DEFAULT_RENEW_BEFORE,
        }
    }

    /// The address to listen on. Default: `127.0.0.1:0` (a port the OS picks).
    pub fn addr(mut self, addr: SocketAddr) -> Self {
        self.addr = addr;
        self
    }

    /// Adds a service account with these scopes; the first added is `default`. Without any,
    /// the server has one, [`DEFAULT_EMAIL`] with [`CLOUD_PLATFORM`].
    pub fn account<I, S>(mut self, email: impl Into<String>, scopes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.accounts.push(Account {
            email: email.into(),
            scopes: scopes.into_iter().map(Into::into).collect(),
        });
        self
    }

    /// The project id `project/project-id` answers. Default: `mock-project`.
    pub fn project_id(mut self, project_id: impl Into<String>) -> Self {
        self.project_id = project_id.into();
        self
    }

    /// The lifetime of a new token. Default: [`DEFAULT_TOKEN_TTL`]. `expires_in` reports what
    /// is left of it in whole seconds, rounded down.
    pub fn token_ttl(mut self, ttl: Duration) -> Self {
        self.token_ttl = ttl;
        self
    }

    /// How long before its expiry a token stops being handed out again (a new one is issued
    /// instead). Default: [`DEFAULT_RENEW_BEFORE`]; scale it with the lifetime in tests.
    pub fn renew_before(mut self, renew_before: Duration) -> Self {
        self.renew_before = renew_before;
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
    pub async fn start(mut self) -> io::Result<MockMetadataServer> {
        if self.accounts.is_empty() {
            self = self.account(DEFAULT_EMAIL, [CLOUD_PLATFORM]);
        }
        let listener = TcpListener::bind(self.addr).await?;
        let shared = Arc::new(Shared {
            project_id: self.project_id,
            state: Mutex::new(State::new(self.accounts, self.token_ttl, self.renew_before)),
        });
        let for_requests = Arc::clone(&shared);
        let server = RunningServer::start(listener, "gcp-metadata", move |request, shutdown| {
            routes::handle(Arc::clone(&for_requests), shutdown, request)
        })?;
        Ok(MockMetadataServer { server, shared })
    }
}

impl fmt::Debug for MockMetadataServerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MockMetadataServerBuilder")
            .field("addr", &self.addr)
            .field("accounts", &self.accounts.len())
            .field("token_ttl", &self.token_ttl)
            .field("renew_before", &self.renew_before)
            .finish_non_exhaustive()
    }
}
