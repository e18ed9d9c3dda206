//! Azure managed identity: IMDS, and the App Service / Container Apps identity endpoint.
//!
//! [`ManagedIdentity`] is a refresher: a tower `Service` from
//! [`TokenRequest`](tower_bearer::TokenRequest) to [`Token`](tower_bearer::Token) that gets
//! an access token for one resource from the identity endpoint of the Azure host the process
//! runs on, through whatever HTTP client you give it. No secret is configured: the platform
//! vouches for the process.
//!
//! # Example
//!
//! ```
//! use bytes::Bytes;
//! use http_body_util::Full;
//! use hyper_util::client::legacy::{Client, connect::HttpConnector};
//! use hyper_util::rt::TokioExecutor;
//! use tower_bearer::{BearerAuthLayer, Scope, TokenCache};
//! use tower_bearer_platform::azure::ManagedIdentity;
//! # use tower_bearer_mock::azure::MockManagedIdentity;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), tower::BoxError> {
//! # let server = MockManagedIdentity::start().await?;
//! let client: Client<HttpConnector, Full<Bytes>> =
//!     Client::builder(TokioExecutor::new()).build_http();
//! // On Azure: ManagedIdentity::from_env("https://vault.azure.net", client)?, which finds
//! // the endpoint as Microsoft's libraries do. Here, a mock of IMDS.
//! let identity =
//!     ManagedIdentity::imds_at(server.imds_authority(), "https://vault.azure.net", client)?;
//! let cache = TokenCache::new(identity);
//! let token = cache.token().await?;
//! # assert_eq!(server.counters().tokens_issued, 1);
//!
//! // The token is for Key Vault: send it to the vaults, and to nothing else.
//! let layer = BearerAuthLayer::from_cache(cache, Scope::origins(["https://contoso.vault.azure.net"])?);
//! # Ok(())
//! # }
//! ```
//!
//! # Which endpoint
//!
//! [`ManagedIdentity::from_env`] reads the environment as azure-identity's
//! `ManagedIdentityCredential` does (Python; the Rust SDK's checks the same variables in the
//! same order), and the first source whose variables are set wins:
//!
//! | the environment has | the source | here |
//! | --- | --- | --- |
//! | `IDENTITY_ENDPOINT`, `IDENTITY_HEADER`, `IDENTITY_SERVER_THUMBPRINT` | Service Fabric | unsupported |
//! | `IDENTITY_ENDPOINT`, `IDENTITY_HEADER` | App Service, Functions, Container Apps | [`IdentityEndpoint::AppService`] |
//! | `IDENTITY_ENDPOINT`, `IMDS_ENDPOINT` | Azure Arc | unsupported |
//! | `MSI_ENDPOINT` (with or without `MSI_SECRET`) | Azure ML, Cloud Shell | unsupported |
//! | `AZURE_AUTHORITY_HOST`, `AZURE_TENANT_ID`, `AZURE_FEDERATED_TOKEN_FILE` | workload identity | unsupported: `tower_bearer_oauth2::AzureWorkloadIdentity` |
//! | none of these | IMDS, at `AZURE_POD_IDENTITY_AUTHORITY_HOST` if set, else `http://169.254.169.254` | [`IdentityEndpoint::Imds`] |
//!
//! An unsupported source is [`ManagedIdentityError::Unsupported`], never a fall back to IMDS,
//! which could answer for another identity. A variable set to the empty string is unset.
//! `AZURE_CLIENT_ID` is not read (azure-identity's `DefaultAzureCredential` passes it on,
//! its `ManagedIdentityCredential` does not): name a user-assigned identity with
//! [`ManagedIdentity::user_assigned`].
//!
//! # What a call sends
//!
//! | endpoint | request |
//! | --- | --- |
//! | IMDS | `GET {authority}/metadata/identity/oauth2/token?api-version=2018-02-01&resource=…` with `Metadata: true` |
//! | App Service | `GET {IDENTITY_ENDPOINT}?api-version=2019-08-01&resource=…` with `X-IDENTITY-HEADER: {IDENTITY_HEADER}` (marked sensitive) and `Metadata: true` |
//!
//! A user-assigned identity adds `client_id`, `object_id`, or the resource id as `msi_res_id`
//! (IMDS) or `mi_res_id` (App Service), as MSAL sends them. The resource may be given as a
//! scope: a trailing `/.default` is dropped, as Microsoft's libraries do.
//!
//! # What an answer means
//!
//! - A success is a JSON object with `token_type` `Bearer` (in any case), `access_token`,
//!   and `expires_in` (IMDS: a string of seconds) or, without it, `expires_on` (App Service:
//!   a string of seconds since 1970, read against the system clock, which is the endpoint's
//!   own host's). The lifetime counts from when the request was sent and is cut to a day.
//!   Anything else is [`ManagedIdentityError::Malformed`].
//! - A status worth retrying is asked again within the call, as azure-identity does
//!   (`retry` below), and if it persists is [`ManagedIdentityError::Unavailable`]; a
//!   `Retry-After` is waited out instead of the backoff, and reaches the cache.
//! - Any other error status is [`ManagedIdentityError::Refused`], permanent: on IMDS, 400 for
//!   an identity not assigned to the machine or a resource Entra ID does not know.
//! - A request that got no answer (connection refused: no endpoint there) is asked again
//!   three times, then is [`ManagedIdentityError::NoAnswer`].
//!
//! | endpoint | retried statuses | retries and waits |
//! | --- | --- | --- |
//! | IMDS | 404, 408, 410, 429, 5xx | 5: 0, 1.6, 3.2, 6.4, 12.8 s; after a 410, 0, 5, 10, 20, 40 s (IMDS answers 410 for up to 70 s) |
//! | App Service | 408, 429, 500, 502, 503, 504, 506 and up | 3: 0, 1.6, 3.2 s |
//!
//! Every attempt and wait is within the provider's [timeout](ManagedIdentity::timeout)
//! ([`DEFAULT_TIMEOUT`], 90 s: past IMDS's 75 s of waits on 410); a wait that would end past
//! it is not begun, and the call fails with the last answer. A
//! [`TokenCache`](tower_bearer::TokenCache) gives up on a refresh after its own
//! [`refresh_timeout`](tower_bearer::TokenCacheBuilder::refresh_timeout), 60 s by default:
//! to let a refresh wait out IMDS's provisioning in one call, set it above the provider's
//! timeout (`TokenCache::builder(identity).refresh_timeout(Duration::from_secs(100))`);
//! otherwise the refresh fails at 60 s and the cache's backoff asks again. A connect timeout is the HTTP
//! client's to set (azure-identity uses 2 s on IMDS): off Azure, a request to
//! `169.254.169.254` may hang rather than be refused.
//!
//! Errors name the endpoint without its query and never hold the identity header or a token.

mod env;
mod error;
mod provider;
mod retry;
mod wire;

pub use error::{ErrorAnswer, Malformed, ManagedIdentityError, NoAnswer};
pub use provider::{
    DEFAULT_TIMEOUT, IMDS_AUTHORITY, IdentityEndpoint, ManagedIdentity, ResponseFuture,
    UserAssignedId,
};
