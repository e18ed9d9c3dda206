//! Bearer-token authentication for tower HTTP clients that looks after itself.
//!
//! [`BearerAuthLayer`] wraps any `tower::Service<http::Request<B>>` (a hyper-util client, a
//! `Buffer`, a whole `ServiceBuilder` stack) and gives every request an
//! `Authorization: Bearer …` header from a shared [`TokenCache`]. The cache gets its tokens
//! from a *refresher*, itself a tower [`Service`](tower::Service) from [`TokenRequest`] to
//! [`Token`], and:
//!
//! - refreshes a token in the background before it expires, while requests keep using it;
//! - makes every request that has to wait for a token share one refresh, however many there are;
//! - when a server rejects the token (a 401, or what a [`TokenVerdict`] of your own says),
//!   replaces it once (however many requests were rejected with it) and sends the request
//!   again, once;
//! - after a failed refresh, backs off before calling the refresher again, and fails the
//!   requests that need a token in the meantime at once, with a [`TokenError`];
//! - never attaches the token to a request that already has an `Authorization` header, or to
//!   one outside its [`Scope`], which every layer is built with (the origins its token may
//!   go to); a request sent without it for being out of scope is counted, and the first
//!   logged.
//!
//! Replicas of a service can share one token, and one refresh, through a
//! [`TokenStore`](store::TokenStore) (with the `redis` feature, `store::RedisStore`): see the
//! [`store`] module.
//!
//! Refreshers for real servers: `oauth2::OAuth2` for any OAuth 2.0 authorization server
//! (feature `oauth2`, on by default) and `apivideo::ApiVideo` (feature `apivideo`), each with an
//! embedded mock server (feature `mock`). Tokens bound to a key (DPoP, RFC 9449) get a proof
//! per request with the `dpop` feature.
//!
//! When the token is valid, a request costs an atomic load and the header insert: no lock, and
//! no allocation when retries are off. The clock is not read until a second before the token's
//! first window opens: a timer on the runtime that fetched the token says when (see
//! [`TokenCache`]).
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use bytes::Bytes;
//! use http::{Request, Response, header::AUTHORIZATION};
//! use http_body_util::Full;
//! use tower::{BoxError, ServiceBuilder, ServiceExt, service_fn};
//! use tower_bearer::{BearerAuthLayer, ReplayBody, Scope, Token, TokenRequest};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), BoxError> {
//! // The refresher: anything that turns a TokenRequest into a Token.
//! let refresher = service_fn(|_: TokenRequest| async {
//!     Ok::<_, BoxError>(Token::bearer("t0k3n")?.expires_in(Duration::from_secs(3600)))
//! });
//!
//! // The client: here a stand-in that echoes the header it got.
//! let client = service_fn(|req: Request<ReplayBody<Full<Bytes>>>| async move {
//!     let auth = req.headers()[AUTHORIZATION].clone();
//!     Ok::<_, BoxError>(Response::new(Full::new(Bytes::from(auth.as_bytes().to_vec()))))
//! });
//!
//! let service = ServiceBuilder::new()
//!     .timeout(Duration::from_secs(10))
//!     // The token goes to this origin only.
//!     .layer(BearerAuthLayer::new(refresher, Scope::origin("https://api.example.com")?))
//!     .service(client);
//!
//! let request = Request::get("https://api.example.com/v1/items").body(Full::new(Bytes::new()))?;
//! let response = service.oneshot(request).await?;
//! # use http_body_util::BodyExt;
//! # assert_eq!(response.into_body().collect().await?.to_bytes(), "Bearer t0k3n");
//! # Ok(())
//! # }
//! ```
//!
//! # The inner service's body type
//!
//! To send a request a second time its body is needed twice, so the inner service receives
//! [`ReplayBody<B>`] around the caller's `B`; a hyper-util client is built for
//! `ReplayBody<Full<Bytes>>` instead of `Full<Bytes>`, one line. See [`ReplayBody`] for why.
//!
//! # Errors
//!
//! The service's error is tower's [`BoxError`](tower::BoxError). It holds a [`TokenError`] when
//! no token could be had (the request was not sent), and otherwise the inner service's own
//! error; [`TokenError::find`] tells them apart, also through `Buffer`'s wrapper.
//!
//! # Secrets
//!
//! Tokens never appear in `Debug` output, errors or `tracing` events, and the header values
//! carrying them are marked [sensitive](http::HeaderValue::set_sensitive).
//!
//! # Where things are
//!
//! For a reader of the source, the layer's path from the outside in: `layer.rs` (settings) →
//! `service.rs` (attaches the token; `keyed.rs` chooses a key's cache first) → `future.rs`
//! (sends, judges the answer, retries once, driving `engine.rs`, which decides for every
//! stack: `tonic/` and `reqwest/` drive it too) → `cache/` (the shared token:
//! `cache/reader.rs` is the hot path, `cache/flight.rs` the single flight, `cache/store_link.rs`
//! a refresh shared through `store/`) → `token.rs`, `body/` (the replayed body), `scope.rs`,
//! `head.rs` (what a retry keeps of a request), `verdict.rs` (what an answer says about its
//! token, over `www_authenticate/`), `proof.rs` (the seam for tokens bound to a key),
//! `error.rs`. The providers, the Redis store and the mocks are crates of their own
//! (`crates/`).
#![deny(unsafe_code)]
#![warn(missing_docs, rust_2018_idioms, unreachable_pub)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod body;
mod cache;
mod engine;
mod error;
mod future;
mod head;
mod keyed;
mod layer;
pub mod proof;
mod scope;
mod service;
pub mod store;
mod sync;
mod token;
mod verdict;
mod www_authenticate;

#[cfg(feature = "reqwest")]
#[cfg_attr(docsrs, doc(cfg(feature = "reqwest")))]
pub mod reqwest;
#[cfg(feature = "tonic")]
#[cfg_attr(docsrs, doc(cfg(feature = "tonic")))]
pub mod tonic;

pub use body::ReplayBody;
pub use cache::{RefreshCounts, Refresher, Stats, TokenCache, TokenCacheBuilder};
pub use error::{RetryAfter, ServerAnswer, TokenError, TokenErrorKind};
pub use future::ResponseFuture;
pub use keyed::{KeyedAuth, KeyedAuthLayer, KeyedStats, RequestParts};
pub use layer::BearerAuthLayer;
pub use scope::{InvalidOrigin, Scope};
pub use service::BearerAuth;
pub use token::{InvalidToken, RefreshReason, Token, TokenRequest, TokenType};
pub use verdict::TokenVerdict;

/// What the fuzz targets under `fuzz/` call (`cargo fuzz` builds with `--cfg fuzzing`): not part
/// of the API, and absent from every other build.
#[cfg(fuzzing)]
#[doc(hidden)]
pub mod fuzzing {
    /// Reads `value` as a `WWW-Authenticate` field value and returns whether it is well-formed;
    /// panics if the parser breaks one of its promises (see `src/www_authenticate/promises.rs`).
    pub fn www_authenticate(value: &[u8]) -> bool {
        crate::www_authenticate::promises::check(value)
    }

    /// RFC 9110's grammar for a whole `WWW-Authenticate` field value, as a regular expression
    /// for `regex::bytes::Regex`: a second opinion on which values are well-formed.
    pub fn www_authenticate_grammar() -> String {
        crate::www_authenticate::promises::grammar()
    }
}

// The README's example is compiled with the doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
