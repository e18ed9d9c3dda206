//! A mock of Azure managed identity: IMDS, and the App Service / Container Apps identity
//! endpoint, on one loopback server.
//!
//! Point a client at [`MockManagedIdentity::imds_authority`] as it would at
//! `http://169.254.169.254` (azure-identity reads it from `AZURE_POD_IDENTITY_AUTHORITY_HOST`),
//! or at [`MockManagedIdentity::identity_endpoint`] and
//! [`MockManagedIdentity::identity_header`] as App Service sets `IDENTITY_ENDPOINT` and
//! `IDENTITY_HEADER`.
//!
//! # What it serves
//!
//! | request | answer |
//! | --- | --- |
//! | `GET /metadata/identity/oauth2/token?api-version=2018-02-01&resource=…` with `Metadata: true` | 200, IMDS's token: every member a string (`expires_in`, `expires_on`, `ext_expires_in`, `not_before`), an empty `refresh_token`, `resource`, `token_type`, `client_id` |
//! | `GET /msi/token?api-version=2019-08-01&resource=…` with the right `X-IDENTITY-HEADER` | 200, App Service's token: `access_token`, `expires_on` (a string), `resource`, `token_type`, `client_id` |
//! | another path | 404; another method, 405 |
//!
//! A user-assigned identity is chosen by `client_id` or `object_id`, or its resource id
//! (`msi_res_id` on IMDS, `mi_res_id` on App Service); without one, the system-assigned
//! identity answers, if there is one.
//!
//! # Refusals
//!
//! IMDS answers 400 `{"error": …, "error_description": …}`: `invalid_request` for a request
//! without `Metadata: true`, with an `X-Forwarded-For` header (IMDS refuses both, so that
//! a request a proxy or a server-side forgery relays gets no token), without `api-version` or
//! `resource`, or for an identity it does not have ("Identity not found"); `invalid_resource`
//! for a resource it does not know. The App Service endpoint answers
//! `{"statusCode": …, "message": …}`: 401 for a missing or wrong identity header (Microsoft
//! does not document the status; this is the mock's choice), 400 for the rest.
//!
//! # Faults
//!
//! [`MockManagedIdentity::fail_next`] scripts the next token requests' answers ([`Fault`]):
//! a status (404 or 410 as IMDS answers while an identity is provisioned, 429, 5xx), a 429
//! with `Retry-After`, or a delay before the usual answer.
//!
//! # Time
//!
//! `expires_on` and `not_before` are seconds since 1970 on the system clock, as the real
//! endpoints send them; delays wait on tokio's clock, so a test under a paused clock does not
//! wait them out.
//!
//! # Secrets
//!
//! Neither the identity header nor a token appears in the `Debug` output of this module's
//! types or in its tracing events (the status only, at `debug` level).

mod serve;

use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{HeaderMap, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use tokio::net::TcpListener;

use crate::server::RunningServer;

/// The identity header the App Service endpoint wants unless
/// [`MockManagedIdentityBuilder::identity_header`] says otherwise.
pub const DEFAULT_IDENTITY_HEADER: &str = "mock-identity-header";

/// The token lifetime unless [`MockManagedIdentityBuilder::token_ttl`] says otherwise: a day,
/// about what IMDS's tokens live.
pub const DEFAULT_TOKEN_TTL: Duration = Duration::from_secs(24 * 60 * 60);

/// The resources the mock issues tokens for unless [`MockManagedIdentityBuilder::resources`]
/// says otherwise. A trailing `/` is ignored, as Entra ID ignores it.
pub const DEFAULT_RESOURCES: [&str; 3] = [
    "https://management.azure.com",
    "https://vault.azure.net",
    "https://storage.azure.com",
];

/// The client id of the system-assigned identity, in its tokens' answers.
pub const SYSTEM_ASSIGNED_CLIENT_ID: &str = "00000000-0000-0000-0000-0000000000aa";

/// The IMDS token path.
pub const IMDS_PATH: &str = "/metadata/identity/oauth2/token";

/// The App Service endpoint's path, as `IDENTITY_ENDPOINT` has it on App Service.
pub const APP_SERVICE_PATH: &str = "/msi/token";

/// Which of the mock's endpoints a request reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Endpoint {
    /// IMDS's token path.
    Imds,
    /// The App Service endpoint.
    AppService,
}

/// An answer to inject instead of (or before) the usual one. Made for
/// [`MockManagedIdentity::fail_next`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fault {
    /// This status, with an error body in the endpoint's shape.
    Status(StatusCode),
    /// 429 with `Retry-After`, in whole seconds.
    RateLimited {
        /// The wait the answer asks for.
        retry_after: Duration,
    },
    /// Wait this long (on tokio's clock), then answer as usual.
    Delay(Duration),
}

/// What the server has seen and done, for tests to assert on. Read it with
/// [`MockManagedIdentity::counters`].
///
/// Counters may be added in later versions: read the fields, but do not build one.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Counters {
    /// Requests to IMDS's token path, whatever became of them.
    pub imds_requests: u64,
    /// Requests to the App Service endpoint, whatever became of them.
    pub app_service_requests: u64,
    /// Tokens issued.
    pub tokens_issued: u64,
    /// Requests refused as the endpoint refuses them (the counters below, and a missing or
    /// wrong `api-version` or `resource`).
    pub refused: u64,
    /// IMDS requests without `Metadata: true`.
    pub missing_metadata: u64,
    /// IMDS requests with an `X-Forwarded-For` header.
    pub forwarded: u64,
    /// App Service requests without the right `X-IDENTITY-HEADER`.
    pub wrong_identity_header: u64,
    /// Requests for an identity the mock does not have.
    pub unknown_identity: u64,
    /// Requests for a resource the mock does not know.
    pub unknown_resource: u64,
    /// Requests answered with an injected status.
    pub faults_injected: u64,
    /// Requests held back by an injected delay (then answered as usual).
    pub delays_injected: u64,
}

/// A token the mock issued.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Issued {
    /// The endpoint that issued it.
    pub endpoint: Endpoint,
    /// The resource, as the request named it.
    pub resource: String,
    /// The identity's client id.
    pub client_id: String,
    /// The access token.
    pub access_token: String,
}

impl fmt::Debug for Issued {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Issued")
            .field("endpoint", &self.endpoint)
            .field("resource", &self.resource)
            .field("client_id", &self.client_id)
            .field("access_token", &"[REDACTED]")
            .finish()
    }
}

/// A token request as the mock received it, for a test to check what a client sends.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct SeenRequest {
    /// The endpoint it reached.
    pub endpoint: Endpoint,
    /// Its query's pairs, decoded, in order.
    pub query: Vec<(String, String)>,
    /// Its headers. `X-IDENTITY-HEADER` is marked sensitive, so that it prints redacted.
    pub headers: HeaderMap,
}

/// A user-assigned identity: its three ids.
#[derive(Debug, Clone, PartialEq, Eq)]
struct UserAssigned {
    client_id: String,
    object_id: String,
    resource_id: String,
}

/// Settings fixed when the server starts.
struct Config {
    identity_header: SecretString,
    resources: Vec<String>,
    system_assigned: bool,
    user_assigned: Vec<UserAssigned>,
    token_ttl: Duration,
}

/// What changes while the server runs.
#[derive(Default)]
struct State {
    counters: Counters,
    faults: VecDeque<(u32, Fault)>,
    issued: Vec<Issued>,
    last_request: Option<SeenRequest>,
}

/// The configuration and state every connection shares.
struct Shared {
    config: Config,
    state: Mutex<State>,
}

impl Shared {
    /// The state. Never held across an `.await`.
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        crate::lock(&self.state)
    }
}

/// A running mock of Azure managed identity's endpoints.
///
/// It serves until [`shutdown`](Self::shutdown) is awaited or it is dropped. It must be
/// started inside a tokio runtime, and serves on that runtime.
///
/// # Example
///
/// ```
/// use bytes::Bytes;
/// use http::{Request, StatusCode};
/// use http_body_util::{BodyExt, Full};
/// use hyper_util::client::legacy::Client;
/// use hyper_util::rt::TokioExecutor;
/// use tower_bearer_mock::azure::{Fault, MockManagedIdentity};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
/// let server = MockManagedIdentity::start().await?;
/// let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
/// let url = format!(
///     "{}/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https://vault.azure.net",
///     server.imds_authority()
/// );
///
/// // Once 410, as IMDS answers while an identity is provisioned; then a token.
/// server.fail_next(1, Fault::Status(StatusCode::GONE));
/// let ask = || Request::get(&url).header("Metadata", "true").body(Full::default());
/// assert_eq!(client.request(ask()?).await?.status(), StatusCode::GONE);
/// let answer = client.request(ask()?).await?;
/// assert_eq!(answer.status(), StatusCode::OK);
/// let token: serde_json::Value =
///     serde_json::from_slice(&answer.into_body().collect().await?.to_bytes())?;
/// assert_eq!(token["expires_in"], "86400");
///
/// // Without `Metadata: true`, IMDS refuses.
/// let bare = Request::get(&url).body(Full::default())?;
/// assert_eq!(client.request(bare).await?.status(), StatusCode::BAD_REQUEST);
/// assert_eq!(server.counters().tokens_issued, 1);
/// assert_eq!(server.counters().missing_metadata, 1);
/// # Ok(())
/// # }
/// ```
pub struct MockManagedIdentity {
    server: RunningServer,
    shared: Arc<Shared>,
}

impl MockManagedIdentity {
    /// A builder, to choose the identities, resources, header and token lifetime.
    pub fn builder() -> MockManagedIdentityBuilder {
        MockManagedIdentityBuilder::new()
    }

    /// Starts a server with the defaults: a system-assigned identity, the
    /// [`DEFAULT_RESOURCES`], [`DEFAULT_IDENTITY_HEADER`], tokens valid for
    /// [`DEFAULT_TOKEN_TTL`], on `127.0.0.1` and a port the OS picks.
    pub async fn start() -> io::Result<Self> {
        Self::builder().start().await
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// `http://127.0.0.1:PORT`: IMDS's authority, in place of `http://169.254.169.254`
    /// (`AZURE_POD_IDENTITY_AUTHORITY_HOST`). The token path is [`IMDS_PATH`] under it.
    pub fn imds_authority(&self) -> String {
        self.server.base_url()
    }

    /// `http://127.0.0.1:PORT/msi/token`: the App Service endpoint, `IDENTITY_ENDPOINT`.
    pub fn identity_endpoint(&self) -> String {
        self.server.uri_for(APP_SERVICE_PATH)
    }

    /// The identity header the App Service endpoint wants, `IDENTITY_HEADER`.
    pub fn identity_header(&self) -> &str {
        self.shared.config.identity_header.expose_secret()
    }

    /// A snapshot of the counters.
    pub fn counters(&self) -> Counters {
        self.shared.lock().counters
    }

    /// Every token issued so far, oldest first.
    pub fn issued(&self) -> Vec<Issued> {
        self.shared.lock().issued.clone()
    }

    /// The latest request to either endpoint, whatever became of it.
    pub fn last_request(&self) -> Option<SeenRequest> {
        self.shared.lock().last_request.clone()
    }

    /// Makes the next `count` token requests (to either endpoint) meet `fault`.
    ///
    /// Calls queue up: after `fail_next(2, a)` and `fail_next(1, b)`, the next three requests
    /// meet `a`, `a`, `b`. A fault comes before every check of the request.
    pub fn fail_next(&self, count: u32, fault: Fault) {
        if count > 0 {
            self.shared.lock().faults.push_back((count, fault));
        }
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

impl fmt::Debug for MockManagedIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MockManagedIdentity")
            .field("addr", &self.addr())
            .finish_non_exhaustive()
    }
}

/// Configures and starts a [`MockManagedIdentity`]. Made by [`MockManagedIdentity::builder`].
#[must_use = "a builder does nothing until `.start().await`"]
pub struct MockManagedIdentityBuilder {
    addr: SocketAddr,
    config: Config,
}

impl MockManagedIdentityBuilder {
    fn new() -> Self {
        MockManagedIdentityBuilder {
            addr: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            config: Config {
                identity_header: SecretString::from(DEFAULT_IDENTITY_HEADER),
                resources: DEFAULT_RESOURCES.iter().map(|r| (*r).to_owned()).collect(),
                system_assigned: true,
                user_assigned: Vec::new(),
                token_ttl: DEFAULT_TOKEN_TTL,
            },
        }
    }

    /// The address to listen on. Default: `127.0.0.1:0` (a port the OS picks).
    pub fn addr(mut self, addr: SocketAddr) -> Self {
        self.addr = addr;
        self
    }

    /// The identity header the App Service endpoint wants. Default:
    /// [`DEFAULT_IDENTITY_HEADER`].
    pub fn identity_header(mut self, header: impl Into<String>) -> Self {
        self.config.identity_header = SecretString::from(header.into());
        self
    }

    /// The resources the mock issues tokens for, replacing [`DEFAULT_RESOURCES`].
    pub fn resources<I, S>(mut self, resources: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.config.resources = resources.into_iter().map(Into::into).collect();
        self
    }

    /// Whether the host has a system-assigned identity. Default: `true`.
    pub fn system_assigned(mut self, enabled: bool) -> Self {
        self.config.system_assigned = enabled;
        self
    }

    /// Adds a user-assigned identity, with its client id, object id and resource id.
    pub fn user_assigned(
        mut self,
        client_id: impl Into<String>,
        object_id: impl Into<String>,
        resource_id: impl Into<String>,
    ) -> Self {
        self.config.user_assigned.push(UserAssigned {
            client_id: client_id.into(),
            object_id: object_id.into(),
            resource_id: resource_id.into(),
        });
        self
    }

    /// How long tokens live. Default: [`DEFAULT_TOKEN_TTL`]. `expires_in` says it in whole
    /// seconds.
    pub fn token_ttl(mut self, ttl: Duration) -> Self {
        self.config.token_ttl = ttl;
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
    pub async fn start(self) -> io::Result<MockManagedIdentity> {
        let listener = TcpListener::bind(self.addr).await?;
        let shared = Arc::new(Shared {
            config: self.config,
            state: Mutex::new(State::default()),
        });
        let for_requests = Arc::clone(&shared);
        let server = RunningServer::start(
            listener,
            "azure managed identity",
            move |request, shutdown| serve::handle(Arc::clone(&for_requests), shutdown, request),
        )?;
        Ok(MockManagedIdentity { server, shared })
    }
}

impl fmt::Debug for MockManagedIdentityBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MockManagedIdentityBuilder")
            .field("addr", &self.addr)
            .field("identity_header", &"[REDACTED]")
            .field("resources", &self.config.resources)
            .field("system_assigned", &self.config.system_assigned)
            .field("user_assigned", &self.config.user_assigned)
            .field("token_ttl", &self.config.token_ttl)
            .finish()
    }
}
