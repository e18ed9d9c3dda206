//! GCP's metadata server: a service account's access token, as Google's own libraries get it.
//!
//! [`MetadataServer`] is a refresher: a tower `Service` from
//! [`TokenRequest`](tower_bearer::TokenRequest) to [`Token`](tower_bearer::Token) that asks the
//! metadata server of a Compute Engine VM, a GKE pod (workload identity), Cloud Run, Cloud
//! Functions or App Engine for the token of the service account attached to it, through
//! whatever HTTP client you give it. No credential is configured or sent: the platform
//! vouches for the caller.
//!
//! # Example
//!
//! ```
//! use bytes::Bytes;
//! use http_body_util::Full;
//! use hyper_util::client::legacy::{Client, connect::HttpConnector};
//! use hyper_util::rt::TokioExecutor;
//! use tower::ServiceBuilder;
//! use tower_bearer::{BearerAuthLayer, ReplayBody, Scope};
//! use tower_bearer_platform::gcp::MetadataServer;
//! # use tower_bearer_mock::gcp::MockMetadataServer;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), tower::BoxError> {
//! # let server = MockMetadataServer::start().await?;
//! let client: Client<HttpConnector, ReplayBody<Full<Bytes>>> =
//!     Client::builder(TokioExecutor::new()).build_http();
//! // On GCP: MetadataServer::builder().read_env(), or MetadataServer::from_env(client).
//! let provider = MetadataServer::builder()
//!     .host(server.host())
//!     .scopes(["https://www.googleapis.com/auth/devstorage.read_only"])
//!     .build(client.clone())?;
//! // The token is for Google's APIs: attach it to requests for them, and nothing else.
//! let scope = Scope::origins(["https://storage.googleapis.com"])?;
//! let storage = ServiceBuilder::new()
//!     .layer(BearerAuthLayer::new(provider, scope))
//!     .service(client);
//! # drop(storage);
//! # Ok(())
//! # }
//! ```
//!
//! # What a call sends
//!
//! `GET http://{host}/computeMetadata/v1/instance/service-accounts/{account}/token`, with
//! `?scopes=a,b` when [scopes](MetadataServerBuilder::scopes) are set (comma-joined, then
//! percent-encoded as a query value), and the header `Metadata-Flavor: Google`, which the
//! server requires. The account is `default` unless
//! [`account`](MetadataServerBuilder::account) names another by email.
//!
//! The host is [`DEFAULT_HOST`], `metadata.google.internal`, unless
//! [`read_env`](MetadataServerBuilder::read_env) finds `GCE_METADATA_HOST` (or its older name
//! `GCE_METADATA_ROOT`), as google-auth does, or [`host`](MetadataServerBuilder::host) names
//! one. It is reached over `http`: the metadata server is link-local and never leaves the
//! machine, and the request carries no secret.
//!
//! # What an answer means
//!
//! - 200 with `{"access_token","expires_in","token_type":"Bearer"}`: the token, its lifetime
//!   counted from when the request was sent. The metadata server caches tokens and hands the
//!   same one back until about 5 minutes before it expires, with `expires_in` counting down:
//!   a token obtained near the end of its life is cached for what is left of it. Anything
//!   else in a 200 is [`MetadataError::Malformed`]. The answer's own `Metadata-Flavor` header
//!   is not checked: google-auth, Go's and Rust's libraries check it only when probing for
//!   the server, never on a token answer.
//! - 404: no such account, [`MetadataError::UnknownAccount`], which the cache treats as
//!   permanent (it waits its longest backoff).
//! - Any other status is [`MetadataError::Status`], with the start of the body: GKE's
//!   metadata server explains a misconfigured workload identity there.
//!
//! No error holds the token.
//!
//! # Retries
//!
//! Within one call the provider retries as google-auth (`compute_engine/_metadata.py`)
//! does: at most five attempts, after a transport failure (a connection refused while a
//! pod's metadata server starts, a connection reset), an attempt with no answer within the
//! [attempt timeout](MetadataServerBuilder::attempt_timeout) (3 s), or a status of 408, 429,
//! 500, 503 or 504; waiting 1, 2, 4 and 8 seconds between them, each within 10 % either side.
//! The whole call is bounded by the [timeout](MetadataServerBuilder::timeout) (30 s); a wait
//! that would end past it is skipped and the last error returned, so that the cache sees the
//! server's own answer. When the call fails, the cache's backoff takes over.

mod error;
mod provider;
mod retry;
mod wire;

pub use error::{Malformed, MetadataError, NoAnswer};
pub use provider::{
    DEFAULT_ACCOUNT, DEFAULT_ATTEMPT_TIMEOUT, DEFAULT_HOST, DEFAULT_TIMEOUT, METADATA_IP,
    MetadataServer, MetadataServerBuilder, ResponseFuture,
};
