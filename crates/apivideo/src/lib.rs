//! api.video: a token provider, and (with the `mock` feature) an embedded mock server.
//!
//! [`ApiVideo`] is a refresher: a tower `Service` from [`TokenRequest`](tower_bearer::TokenRequest)
//! to [`Token`](tower_bearer::Token) that gets access tokens from api.video's auth endpoints,
//! through whatever HTTP client you give it. [`ApiVideo::into_layer`] turns it into a
//! [`BearerAuthLayer`](tower_bearer::BearerAuthLayer) that attaches the token to requests for
//! api.video, and to nothing else.
//!
//! # Example
//!
//! ```
//! use bytes::Bytes;
//! use http::Request;
//! use http_body_util::{BodyExt, Full};
//! use hyper_util::client::legacy::{Client, connect::HttpConnector};
//! use hyper_util::rt::TokioExecutor;
//! use std::time::Duration;
//! use tower::{ServiceBuilder, ServiceExt};
//! use tower_bearer::ReplayBody;
//! use tower_bearer_apivideo::ApiVideo;
//! # use tower_bearer_mock::apivideo::MockServer;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), tower::BoxError> {
//! # let server = MockServer::builder().api_key("my-api-key").start().await?;
//! # let base = server.uri();
//! // One client for the API calls and for the provider's logins.
//! let client: Client<HttpConnector, ReplayBody<Full<Bytes>>> =
//!     Client::builder(TokioExecutor::new()).build_http();
//! // base: https://ws.api.video in production (or ApiVideo::production(key, client)).
//! let auth = ApiVideo::with_base_uri(base.clone(), "my-api-key", client.clone())?
//!     .timeout(Duration::from_secs(10))
//!     .into_layer();
//! let api = ServiceBuilder::new()
//!     .timeout(Duration::from_secs(30))
//!     .layer(auth)
//!     .service(client);
//!
//! let create = Request::post(format!("{base}/videos"))
//!     .header("content-type", "application/json")
//!     .body(Full::from(r#"{"title":"Maths course: Algebra"}"#))?;
//! let response = api.clone().oneshot(create).await?;
//! assert_eq!(response.status(), 201);
//! let video = response.into_body().collect().await?.to_bytes();
//! # assert!(String::from_utf8_lossy(&video).contains("Algebra"));
//! # Ok(())
//! # }
//! ```
//!
//! # What a call does
//!
//! | the cache asks, with | the provider sends |
//! | --- | --- |
//! | no previous token, or one without a refresh token | `POST /auth/api-key {"apiKey": …}` |
//! | a previous token with a refresh token | `POST /auth/refresh {"refreshToken": …}` |
//! | … and the server refuses it (400 or 401) | then, in the same call, `POST /auth/api-key` |
//!
//! Refresh tokens are single-use and a login with the key ends them all, so a refresh token
//! may be refused for ordinary reasons: another process with the same key logged in, or a
//! response carrying its successor was lost. Falling back to the key at once costs one more
//! request and no failed refresh. Transient failures (5xx, 429, a transport error, a timeout,
//! a malformed answer) are not refusals: they are the call's error, the cache keeps the
//! refresh token, and its backoff decides when to try again.
//!
//! Every request carries `Content-Type: application/json`, `Accept: application/json` and
//! `User-Agent: tower-bearer/<version>` (not the `AV-Origin-Client` header of api.video's own
//! clients, which this is not).
//!
//! # What an answer means
//!
//! Errors are [`ApiVideoError`]s; each names the URL it came from, and none contains the API
//! key or a token: a server's text that echoes one the request sent is redacted in every form
//! the request gave it (as it is, or JSON-escaped).
//!
//! - An answer that is a redirect, or that another URL gave (a client that follows redirects
//!   sent the request on), is refused ([`NoAnswer::Redirected`]): the provider never
//!   follows a redirect. Give it a client that does not follow them either (hyper-util's
//!   never does; see `tower_bearer_provider::reqwest::ClientService` for reqwest).
//! - At most 64 KiB of a response is read ([`NoAnswer::TooLarge`] beyond).
//! - A success must be a JSON object with `token_type` equal to `bearer` in any case,
//!   `access_token` a string that can be sent in a header, `expires_in` a whole number of
//!   seconds of at least 1, and optionally `refresh_token`; anything else is
//!   [`ApiVideoError::Malformed`], and no token is cached. `expires_in: 0` is refused rather
//!   than cached as a token already expired. An `expires_in` beyond a day is cut to a day, so
//!   a token is refreshed at least daily. The lifetime counts from when the request was
//!   sent, so network delay makes the token expire early, never late.
//! - 400 or 401 mean the credential was refused: a refresh token leads to the fallback, the
//!   API key to [`ApiVideoError::Rejected`], a [permanent](tower_bearer::RetryAfter::permanent)
//!   failure: the cache waits its longest backoff before it logs in again.
//! - 429 is [`ApiVideoError::RateLimited`]; its `X-RateLimit-Retry-After` (or standard
//!   `Retry-After`, in seconds, at most 10 minutes) reaches the cache as a
//!   [`RetryAfter`](tower_bearer::RetryAfter), which waits that long instead of its own backoff.
//! - Any other status is [`ApiVideoError::Status`]. Error answers keep the status and the
//!   problem document's `type` and `title` ([`Problem`]).
//!
//! # Environments and scope
//!
//! [`ApiVideo::production`] and [`ApiVideo::sandbox`] name api.video's two servers (their API
//! keys differ); [`ApiVideo::with_base_uri`] any other (a proxy, the mock server), `https` or
//! `http` on loopback ([`ApiVideo::with_cleartext_base_uri`] for `http` elsewhere, in tests). A layer
//! from [`ApiVideo::into_layer`] attaches the token only to requests for that server's
//! origin: a pre-signed upload URL or a CDN fetched through the same client never sees it.
//!
//! # The mock server
//!
//! With the `mock` feature, `mock::MockServer` is a real HTTP server on loopback that speaks
//! api.video's auth and `/videos` endpoints, for tests and demos (the examples above run
//! against it).

#![deny(unsafe_code)]
#![warn(missing_docs, rust_2018_idioms, unreachable_pub)]

mod error;
mod provider;
mod wire;

pub use error::{ApiVideoError, Malformed, NoAnswer, Problem};

#[cfg(test)]
mod wire_properties;

/// The parsers of api.video's answers, for the fuzz targets under `fuzz/`: built only under
/// `--cfg fuzzing` (which `cargo fuzz` sets), so never part of the API.
#[cfg(fuzzing)]
#[doc(hidden)]
pub mod parse {
    use http::StatusCode;

    use super::{Malformed, Problem, wire};
    use tower_bearer::Token;

    /// A success's body as a token, its lifetime counted from now.
    pub fn token(body: &[u8]) -> Result<Token, Malformed> {
        wire::parse_token(body, tokio::time::Instant::now())
    }

    /// An error answer's body as a problem, `secret` redacted from its texts.
    pub fn problem(status: StatusCode, body: &[u8], secret: &str) -> Problem {
        let secrets = tower_bearer_provider::Secrets::from_iter([secret]);
        wire::parse_problem(status, body, &secrets)
    }
}
pub use provider::{ApiVideo, DEFAULT_TIMEOUT, PRODUCTION, ResponseFuture, SANDBOX};
