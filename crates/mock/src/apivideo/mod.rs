//! An embedded mock api.video server: a real HTTP/1.1 server on loopback that behaves like
//! api.video as far as authentication goes, for tests and demos.
//!
//! Start one with [`MockServer::start`] or [`MockServer::builder`], point a client at
//! [`MockServer::uri`], then script faults and read [`Counters`] from the test.
//!
//! # What it serves
//!
//! | endpoint | behaviour |
//! | --- | --- |
//! | `POST /auth/api-key` | `{"apiKey": …}` → 200 `{"token_type":"Bearer","expires_in":N,"access_token":…,"refresh_token":…}` |
//! | `POST /auth/refresh` | `{"refreshToken": …}` → 200, a new pair |
//! | `GET /videos` | bearer-protected; `currentPage` (≥ 1), `pageSize` (1–100, default 25) → `videos-list-response` |
//! | `POST /videos` | bearer-protected; `video-creation-payload` (`title` required) → 201 with the `video` |
//! | any other path | 404 problem |
//! | a known path, another method | 405 problem with `Allow` |
//!
//! Errors are `application/problem+json` in api.video's shape (`type`, `title`, `status`,
//! and `name` or `detail` where api.video sends them). Titles and `type` URIs are those
//! api.video documents, except for a malformed body, whose `type`
//! (`…/reference/invalid-payload`) is this mock's guess, and statuses api.video documents no
//! body for (405, injected 5xx), which use `about:blank` and the reason phrase.
//!
//! # Tokens
//!
//! - Access tokens are shaped like api.video's RS256 JWTs (three base64url segments, about
//!   900 characters) and unique. Their claims decode, but the server never reads them back.
//! - Refresh tokens are `def50200` followed by about 700 hex digits, unique, and good for one
//!   use. A new login with the API key ends every refresh token issued before it
//!   (api.video's documented behaviour).
//! - Validity is kept on tokio's clock ([`tokio::time::Instant`]) to the nanosecond, so
//!   tests may run under a paused clock (`#[tokio::test(start_paused = true)]`) and
//!   `tokio::time::advance` past a token's expiry. Mind that a paused runtime with nothing
//!   to run jumps its clock to the next pending timer, even while a request waits on a
//!   socket: a client-side timeout in such a test can fire before the server answers.
//! - `expires_in` is the lifetime in whole seconds, rounded **down**: a 1.5 s lifetime
//!   reports 1, and a lifetime under one second reports 0 even though the token is valid for
//!   that fraction of a second.
//! - Whether a refresh revokes the access token issued alongside the redeemed refresh token
//!   is not documented by api.video; here it is
//!   [`MockServerBuilder::revoke_access_on_refresh`], off by default.
//!
//! Rejected credentials (wrong API key; unknown, used, ended or revoked refresh token) are
//! answered 400 "The user credentials were incorrect.", as api.video's OpenAPI document
//! says, or 401 with the error reference's wording if
//! [`MockServerBuilder::credential_rejection_status`] asks for it.
//!
//! A resource request with no bearer token, or one that is unknown, expired or revoked, is
//! answered 401 "The access token is invalid or expired." with `WWW-Authenticate: Bearer`
//! (plus `error="invalid_token"` when a token was sent).
//!
//! # Faults
//!
//! [`MockServer::fail_next_auth`] scripts the next auth answers ([`Failure`]: a status, a 429
//! with rate-limit headers, a delay, a malformed body, a request never answered), and
//! [`MockServer::set_chaos`] injects seeded random faults ([`Chaos`]).
//!
//! # Secrets
//!
//! The API key and the tokens never appear in the `Debug` output of this module's types,
//! in its tracing events (method, path and status only, at `debug` level), or in
//! [`RequestLog`]s.

mod auth;
mod faults;
mod payload;
mod resources;
mod response;
mod routes;
mod state;
mod tokens;
mod videos;

use std::fmt;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use tokio::net::TcpListener;

pub use faults::{Chaos, Failure};
pub use state::{Counters, RequestLog};

use crate::server::RunningServer;
use faults::Faults;
use state::{RequestHook, ServerConfig, ServerState, SharedServer};
use tokens::IssuedTokens;
use videos::VideoStore;

/// The API key a server accepts unless [`MockServerBuilder::api_key`] says otherwise.
pub const DEFAULT_API_KEY: &str = "mock-api-key";

/// The access-token lifetime unless [`MockServerBuilder::token_ttl`] says otherwise:
/// api.video's one hour.
pub const DEFAULT_TOKEN_TTL: Duration = Duration::from_secs(3600);

/// How many videos the library holds at start unless [`MockServerBuilder::seed_videos`]
/// says otherwise.
pub const DEFAULT_SEED_VIDEOS: usize = 5;

/// A running mock api.video server.
///
/// It serves until [`shutdown`](Self::shutdown) is awaited or it is dropped. Either way it
/// stops accepting at once, closes idle connections, lets requests in flight finish (a
/// [`Failure::Hang`] or [`Failure::Delay`] request is abandoned and its connection closed),
/// and forcibly ends whatever is left after a second. `shutdown().await` returns when every
/// task the server spawned has ended; dropping does the same in the background.
///
/// Any number of servers can run in one process; each has its own tokens, videos and
/// counters. It must be started inside a tokio runtime, and serves on that runtime.
///
/// # Example
///
/// ```
/// use std::time::Duration;
///
/// use bytes::Bytes;
/// use http::{Request, StatusCode, header};
/// use http_body_util::{BodyExt, Full};
/// use hyper_util::client::legacy::Client;
/// use hyper_util::rt::TokioExecutor;
/// use tower_bearer_mock::apivideo::MockServer;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
/// let server = MockServer::builder()
///     .api_key("test-key")
///     .token_ttl(Duration::from_secs(3))
///     .start()
///     .await?;
/// let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
///
/// // Log in with the API key.
/// let login = Request::post(server.uri_for("/auth/api-key"))
///     .header(header::CONTENT_TYPE, "application/json")
///     .body(Full::from(r#"{"apiKey":"test-key"}"#))?;
/// let response = client.request(login).await?;
/// assert_eq!(response.status(), StatusCode::OK);
/// let body = response.into_body().collect().await?.to_bytes();
/// let token: serde_json::Value = serde_json::from_slice(&body)?;
/// assert_eq!(token["expires_in"], 3);
///
/// // Use the access token.
/// let list = Request::get(server.uri_for("/videos?pageSize=2"))
///     .header(header::AUTHORIZATION, format!("Bearer {}", token["access_token"].as_str().unwrap()))
///     .body(Full::default())?;
/// assert_eq!(client.request(list).await?.status(), StatusCode::OK);
///
/// assert_eq!(server.counters().api_key_logins, 1);
/// assert_eq!(server.counters().resource_requests, 1);
/// server.shutdown().await;
/// # Ok(())
/// # }
/// ```
pub struct MockServer {
    server: RunningServer,
    shared: Arc<SharedServer>,
}

impl MockServer {
    /// A builder, to choose the API key, token lifetime, address and behaviours.
    pub fn builder() -> MockServerBuilder {
        MockServerBuilder::new()
    }

    /// Starts a server with the defaults: API key [`DEFAULT_API_KEY`], tokens valid for
    /// [`DEFAULT_TOKEN_TTL`], on `127.0.0.1` and a port the OS picks.
    pub async fn start() -> io::Result<Self> {
        Self::builder().start().await
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// The base URL, `http://127.0.0.1:PORT` with no trailing slash: what a client uses in
    /// place of `https://ws.api.video`. Append a path that starts with `/`
    /// (`format!("{}/videos", server.uri())`), or use [`uri_for`](Self::uri_for).
    ///
    /// A path with an empty segment (`//videos`) is answered 404 with a `detail` saying so.
    pub fn uri(&self) -> String {
        self.server.base_url()
    }

    /// The URL of `path_and_query` (such as `/videos?currentPage=2`, or `videos`: a missing
    /// leading `/` is added) on this server: `http://127.0.0.1:PORT/videos?currentPage=2`.
    ///
    /// A `String`, which every client takes as it is: `http::Request::get` and
    /// `Request::builder().uri` (for hyper-util and any tower service), and reqwest's
    /// `Client::get`; `.parse::<http::Uri>()` if a `Uri` is wanted.
    ///
    /// ```
    /// use tower_bearer_mock::apivideo::MockServer;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let server = MockServer::start().await?;
    /// let url = server.uri_for("videos?pageSize=2");
    /// assert_eq!(url, format!("{}/videos?pageSize=2", server.uri()));
    /// let request = http::Request::get(&url).body(())?;
    /// assert_eq!(request.uri().path(), "/videos");
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

    /// The API key the server accepts.
    pub fn api_key(&self) -> &str {
        self.shared.config.api_key.expose_secret()
    }

    /// A snapshot of the counters.
    pub fn counters(&self) -> Counters {
        self.shared.lock().counters
    }

    /// The headers of the latest request to either auth endpoint (whether or not it
    /// succeeded), to check its `User-Agent` or `AV-Origin-Client`. Credential-bearing
    /// headers, should a client send any, are marked sensitive so they print redacted.
    pub fn last_auth_headers(&self) -> Option<HeaderMap> {
        self.shared.lock().last_auth_headers.clone()
    }

    /// The exact bytes of every `POST /videos` body received, oldest first, whatever the
    /// answer was (a request refused with 401 is here too): a retried request's body can be
    /// compared with the first attempt's.
    pub fn received_bodies(&self) -> Vec<Bytes> {
        self.shared.lock().received_bodies.clone()
    }

    /// Revokes every access and refresh token issued so far. Tokens issued afterwards work.
    pub fn revoke_all(&self) {
        self.shared.lock().tokens.revoke_all();
    }

    /// Makes the next `count` requests to either auth endpoint fail with `failure`.
    ///
    /// Calls queue up: after `fail_next_auth(2, a)` and `fail_next_auth(1, b)`, the next three
    /// auth requests meet `a`, `a`, `b`. Scripted failures take precedence over [`Chaos`].
    pub fn fail_next_auth(&self, count: u32, failure: Failure) {
        self.shared.lock().faults.script(count, failure);
    }

    /// Makes every request to either auth endpoint fail with `failure` for `duration` from
    /// now (on tokio's clock), as a server that is down: an outage, where
    /// [`fail_next_auth`](Self::fail_next_auth) counts requests. It comes before scripted
    /// failures and [`Chaos`]; a later call replaces it.
    pub fn fail_auth_for(&self, duration: Duration, failure: Failure) {
        let until = tokio::time::Instant::now() + duration;
        self.shared.lock().faults.outage(until, failure);
    }

    /// Replaces the random faults, and reseeds their dice from [`Chaos::seed`].
    /// `set_chaos(Chaos::default())` turns them off.
    pub fn set_chaos(&self, chaos: Chaos) {
        self.shared.lock().faults.set_chaos(chaos);
    }

    /// Changes the lifetime of tokens issued from now on; tokens already issued keep theirs.
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

impl fmt::Debug for MockServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MockServer")
            .field("addr", &self.addr())
            .finish_non_exhaustive()
    }
}

/// Configures and starts a [`MockServer`]. Made by [`MockServer::builder`].
#[must_use = "a builder does nothing until `.start().await`"]
pub struct MockServerBuilder {
    addr: SocketAddr,
    api_key: SecretString,
    token_ttl: Duration,
    revoke_access_on_refresh: bool,
    credential_rejection_status: StatusCode,
    seed_videos: usize,
    on_request: Option<RequestHook>,
}

impl MockServerBuilder {
    fn new() -> Self {
        Self {
            addr: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            api_key: SecretString::from(DEFAULT_API_KEY),
            token_ttl: DEFAULT_TOKEN_TTL,
            revoke_access_on_refresh: false,
            credential_rejection_status: StatusCode::BAD_REQUEST,
            seed_videos: DEFAULT_SEED_VIDEOS,
            on_request: None,
        }
    }

    /// The address to listen on. Default: `127.0.0.1:0` (a port the OS picks).
    pub fn addr(mut self, addr: SocketAddr) -> Self {
        self.addr = addr;
        self
    }

    /// The one API key the server accepts. Default: [`DEFAULT_API_KEY`].
    pub fn api_key(mut self, api_key: impl Into<String>) -> Self {
        self.api_key = SecretString::from(api_key.into());
        self
    }

    /// How long access tokens stay valid, to the nanosecond. Default: [`DEFAULT_TOKEN_TTL`].
    ///
    /// `expires_in` reports it in whole seconds rounded down, so a lifetime under one second
    /// reports 0. Can be changed later with [`MockServer::set_token_ttl`].
    pub fn token_ttl(mut self, ttl: Duration) -> Self {
        self.token_ttl = ttl;
        self
    }

    /// Whether a successful refresh also revokes the access token that was issued alongside
    /// the redeemed refresh token. Default: `false` (the old access token lives out its
    /// lifetime). api.video does not document which it does; clients should cope with both.
    pub fn revoke_access_on_refresh(mut self, revoke: bool) -> Self {
        self.revoke_access_on_refresh = revoke;
        self
    }

    /// The status for rejected credentials on the auth endpoints. Default: 400, as
    /// api.video's OpenAPI document says; 401 (as its error reference says) switches the
    /// titles to "The API key is invalid." and "The refresh token is invalid.". Any other
    /// status is used as given, with the 400 body.
    pub fn credential_rejection_status(mut self, status: StatusCode) -> Self {
        self.credential_rejection_status = status;
        self
    }

    /// How many videos the library holds at start. Default: [`DEFAULT_SEED_VIDEOS`].
    pub fn seed_videos(mut self, count: usize) -> Self {
        self.seed_videos = count;
        self
    }

    /// Calls `hook` for every request the server answers, once the answer is ready (a request
    /// held by [`Failure::Hang`] is never answered, so never reported). The hook runs on the
    /// connection's task: keep it quick.
    pub fn on_request(mut self, hook: impl Fn(&RequestLog) + Send + Sync + 'static) -> Self {
        self.on_request = Some(Arc::new(hook));
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
    pub async fn start(self) -> io::Result<MockServer> {
        let listener = TcpListener::bind(self.addr).await?;
        let config = ServerConfig {
            api_key: self.api_key,
            revoke_access_on_refresh: self.revoke_access_on_refresh,
            credential_rejection_status: self.credential_rejection_status,
            on_request: self.on_request,
        };
        let state = ServerState {
            token_ttl: self.token_ttl,
            tokens: IssuedTokens::new(),
            videos: VideoStore::seeded(self.seed_videos),
            faults: Faults::new(),
            counters: Counters::default(),
            last_auth_headers: None,
            received_bodies: Vec::new(),
        };
        let shared = Arc::new(SharedServer::new(config, state));
        let for_requests = Arc::clone(&shared);
        let server = RunningServer::start(listener, "api.video", move |request, shutdown| {
            routes::handle(Arc::clone(&for_requests), shutdown, request)
        })?;
        Ok(MockServer { server, shared })
    }
}

impl fmt::Debug for MockServerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MockServerBuilder")
            .field("addr", &self.addr)
            .field("api_key", &"[REDACTED]")
            .field("token_ttl", &self.token_ttl)
            .field("revoke_access_on_refresh", &self.revoke_access_on_refresh)
            .field(
                "credential_rejection_status",
                &self.credential_rejection_status,
            )
            .field("seed_videos", &self.seed_videos)
            .field("on_request", &self.on_request.as_ref().map(|_| ".."))
            .finish()
    }
}
