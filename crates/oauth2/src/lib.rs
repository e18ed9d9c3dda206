//! OAuth 2.0: a token provider for any authorization server, and (with the `mock` feature)
//! an embedded mock authorization server.
//!
//! [`OAuth2`] is a refresher: a tower `Service` from [`TokenRequest`](tower_bearer::TokenRequest)
//! to [`Token`](tower_bearer::Token) that gets access tokens from an authorization server's token
//! endpoint (Keycloak, Auth0, Okta, Entra ID, Ory, an in-house one), through whatever HTTP
//! client you give it. [`OAuth2::into_layer`] turns it into a
//! [`BearerAuthLayer`](tower_bearer::BearerAuthLayer) that attaches the token to requests for one
//! API's origin, and to nothing else.
//!
//! # Example
//!
//! ```
//! use bytes::Bytes;
//! use http::Request;
//! use http_body_util::Full;
//! use hyper_util::client::legacy::{Client, connect::HttpConnector};
//! use hyper_util::rt::TokioExecutor;
//! use std::time::Duration;
//! use tower::{ServiceBuilder, ServiceExt};
//! use tower_bearer::ReplayBody;
//! use tower_bearer_oauth2::OAuth2;
//! # use tower_bearer_mock::oauth2::MockAuthServer;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), tower::BoxError> {
//! # let server = MockAuthServer::builder().client("billing", "s3cr3t").start().await?;
//! # let issuer = server.issuer();
//! // One client for the API calls and for the provider's token requests.
//! let client: Client<HttpConnector, ReplayBody<Full<Bytes>>> =
//!     Client::builder(TokioExecutor::new()).build_http();
//! // issuer: https://login.example.com/realms/acme, say; here a mock server.
//! let auth = OAuth2::builder()
//!     .issuer(issuer)
//!     .client_id("billing")
//!     .client_secret("s3cr3t")
//!     .scope("invoices:read")
//!     .build(client.clone())?
//!     .into_layer(server.uri())?;
//! let api = ServiceBuilder::new()
//!     .timeout(Duration::from_secs(30))
//!     .layer(auth)
//!     .service(client);
//!
//! let response = api.oneshot(Request::get(server.uri_for("/api/invoices")).body(Full::default())?).await?;
//! assert_eq!(response.status(), 200);
//! # Ok(())
//! # }
//! ```
//!
//! # What a call does
//!
//! | the cache asks, with | the provider sends |
//! | --- | --- |
//! | no previous token, or one without a refresh token | the [`Grant`]: client credentials (the default), a JWT-bearer assertion, a token exchange, or the refresh token you hold |
//! | a previous token with a refresh token | `grant_type=refresh_token` with that refresh token, the newest one |
//! | … and the server answers `invalid_grant` | then, in the same call, the grant again |
//!
//! Every request carries the client's authentication ([`AuthMethod`]) and the same `scope`,
//! `audience`, `resource` and extra parameters, the refresh-token grant included: a refresh
//! that forgot them would narrow, or widen, the token. A refresh token is used once (the
//! cache's single flight sees to it); an answer with a new one replaces it, an answer
//! without one keeps it. With [`Grant::refresh_token`] the refresh token is the grant: a
//! refused one is a permanent error, and no other grant stands in.
//!
//! A credential the platform writes and rotates is read afresh for every token request,
//! never kept: a token exchange's [`SubjectToken`] (a file, an environment variable, another
//! cache's access token) and a platform-signed [`ClientAssertion`]
//! ([`OAuth2Builder::client_assertion`]; [`AzureWorkloadIdentity`] sets one up for Entra ID
//! from the workload identity webhook's variables).
//!
//! The token endpoint is given ([`OAuth2Builder::token_endpoint`]) or discovered from the
//! issuer ([`OAuth2Builder::issuer`]) on the first call, then kept. Either is `https`, or
//! `http` on loopback (a test server), or anywhere with
//! [`OAuth2Builder::allow_cleartext_endpoints`]; an `https` issuer's metadata may not name an
//! `http` token endpoint.
//!
//! Every request carries `Content-Type: application/x-www-form-urlencoded`,
//! `Accept: application/json` and `User-Agent: tower-bearer/<version>`.
//!
//! # What an answer means
//!
//! Errors are [`OAuth2Error`]s; each names the URL it came from (without user info or query),
//! and none contains a secret: a server's text that echoes one the request sent is redacted
//! in every form the request gave it (as it is, form-urlencoded, in the `Basic` header).
//!
//! - An answer that is a redirect, or that another URL gave (a client that follows redirects
//!   sent the request on), is refused ([`NoAnswer::Redirected`]): the provider never follows a redirect. Give it a client
//!   that does not follow them either (hyper-util's never does; see
//!   `tower_bearer_provider::reqwest::ClientService` for reqwest).
//! - At most 64 KiB of a response is read ([`NoAnswer::TooLarge`] beyond).
//! - A success must be a JSON object with `token_type` equal to `Bearer` in any case (`DPoP`
//!   when the provider has a DPoP key: see below), `access_token` a string that can be sent
//!   in a header,
//!   `expires_in` a whole number of seconds of at least 1, as a number or as a string of
//!   digits, or absent ([`OAuth2Builder::default_lifetime`], else no expiry), and
//!   optionally `refresh_token`; anything else is [`OAuth2Error::Malformed`] (which names the
//!   member, never its value), and no token is cached. An `expires_in` beyond a day is cut
//!   to a day. The lifetime counts from when the request was sent.
//! - An RFC 6749 error response is [`OAuth2Error::Refused`], with its [`ErrorCode`]. A code
//!   that retrying will not change (`invalid_client`, `invalid_grant`, `invalid_scope`, …)
//!   is [permanent](ErrorResponse::is_permanent): the cache waits its longest backoff
//!   rather than asking again every second.
//! - A 429 or 503 with `Retry-After` (in seconds, at most 10 minutes) reaches the cache as a
//!   [`RetryAfter`](tower_bearer::RetryAfter), which waits that long instead of its own backoff.
//! - Any other status is [`OAuth2Error::Status`].
//!
//! # DPoP
//!
//! With the `dpop` feature, [`OAuth2Builder::dpop`] binds the tokens to a key the client
//! holds (RFC 9449): every token request carries a proof, a `use_dpop_nonce` refusal is
//! answered once with the server's nonce, and the tokens come back as DPoP tokens, which the
//! layer from [`OAuth2::into_layer`] sends each with a proof of its own, answering the API's
//! nonce challenges the same way. See [`OAuth2Builder::dpop`].
//!
//! # Scope of the token
//!
//! A layer from [`OAuth2::into_layer`] attaches the token only to requests for the API's
//! origin. The provider's own requests go straight to the client, not through the layer, so
//! the token endpoint (and the metadata URLs) never receive an access token.
//!
//! # The mock authorization server
//!
//! With the `mock` feature, `mock::MockAuthServer` is a real HTTP server on loopback that
//! issues and checks tokens as an authorization server does, with a protected API, for tests
//! and demos (the example above runs against it).

#![deny(unsafe_code)]
#![warn(missing_docs, rust_2018_idioms, unreachable_pub)]

mod answer;
mod assertion;
mod auth_method;
mod azure;
mod builder;
mod client_auth;
mod config;
mod discovery;
pub mod dpop;
mod endpoint;
mod error;
mod form;
mod grant;
mod grant_proof;
pub mod jose;
mod provider;
mod request;
mod source;

pub use auth_method::{AuthMethod, UnknownAuthMethod};
pub use azure::{AZURE_PUBLIC_CLOUD, AzureWorkloadIdentity};
pub use builder::{DEFAULT_TIMEOUT, OAuth2Builder};
pub use error::{
    ConfigError, DiscoveryError, ErrorCode, ErrorResponse, MalformedAnswer, NoAnswer, OAuth2Error,
};
pub use grant::{ClientAssertion, Grant, JwtBearer, SubjectToken};
pub use provider::{OAuth2, ResponseFuture};

/// The parsers of token endpoint answers and metadata, for the fuzz targets under `fuzz/`:
/// built only under `--cfg fuzzing` (which `cargo fuzz` sets), so never part of the API.
#[cfg(fuzzing)]
#[doc(hidden)]
pub mod parse {
    use http::StatusCode;

    use tower_bearer::Token;

    /// A success's body as a token, its lifetime counted from now.
    pub fn token(body: &[u8]) -> Result<Token, super::MalformedAnswer> {
        super::answer::parse_token(body, tokio::time::Instant::now(), None, None)
    }

    /// An error answer's body as an RFC 6749 error response, `secret` redacted from its texts.
    pub fn error(status: StatusCode, body: &[u8], secret: &str) -> Option<super::ErrorResponse> {
        let secrets = tower_bearer_provider::Secrets::from_iter([secret]);
        super::answer::parse_error(status, body, &secrets)
    }

    /// A metadata document's token endpoint, if its issuer is `issuer`.
    pub fn metadata(body: &[u8], issuer: &str) -> Result<String, super::DiscoveryError> {
        super::discovery::parse_metadata(body, issuer).map(|metadata| metadata.token_endpoint.url)
    }
}

#[cfg(test)]
mod answer_properties;
