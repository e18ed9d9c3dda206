//! Bearer-token authentication for reqwest clients, through
//! [reqwest-middleware](reqwest_middleware).
//!
//! [`BearerAuthMiddleware`] does for a `reqwest_middleware::ClientWithMiddleware` what
//! [`BearerAuthLayer`](crate::BearerAuthLayer) does for a tower client, from the same kind of
//! [`TokenCache`](crate::TokenCache): built from one cache, the two share one token and one
//! refresh, so a process whose tower clients and reqwest clients call the same API logs in
//! once. `tower_bearer_provider::reqwest::ClientService` lets a token provider (`OAuth2`,
//! `ApiVideo`) send its own requests through the same reqwest client.
//!
//! # Example
//!
//! ```
//! use reqwest_middleware::ClientBuilder;
//! use tower_bearer_apivideo::ApiVideo;
//! use tower_bearer::reqwest::BearerAuthMiddleware;
//! use tower_bearer_provider::reqwest::ClientService;
//! # use tower_bearer_mock::apivideo::MockServer;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! # let server = MockServer::builder().api_key("my-api-key").start().await?;
//! # let base = server.uri();
//! // In production: ApiVideo::production(api_key, …) and https://ws.api.video.
//! let http = reqwest::Client::new();
//! // A provider follows no redirect; its client should not either.
//! let logins = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build()?;
//! let api = ApiVideo::with_base_uri(&*base, "my-api-key", ClientService::new(logins))?;
//! // `into_layer` scopes the token to api.video's origin; the middleware keeps that scope.
//! let auth = BearerAuthMiddleware::from(api.into_layer());
//! let cache = auth.cache().clone(); // to see what it did
//! let client = ClientBuilder::new(http).with(auth).build();
//!
//! let videos = client.get(format!("{base}/videos")).send().await?;
//! assert_eq!(videos.status(), 200);
//! println!("{}", cache.stats()); // 1 token obtained (initial 1, …), …
//! # assert_eq!(server.counters().api_key_logins, 1);
//! # Ok(())
//! # }
//! ```
//!
//! # What it does with each request
//!
//! The same as the tower layer (see the [crate documentation](crate)):
//!
//! | the request | the middleware |
//! | --- | --- |
//! | for an origin outside the [scope](crate::Scope) it was built with | sends it as it came, with no token; counted in [`Stats::out_of_scope`](crate::Stats::out_of_scope), and the first one logged |
//! | with an `Authorization` header of its own | sends it as it came |
//! | any other | attaches the cache's token (an atomic load and a reference count when it is valid; else it waits for the one refresh in flight) |
//! | answered with a refusal (a 401, by default: see [`verdict`](BearerAuthMiddleware::verdict)) | tells the cache which token was refused (one refresh, however many requests were refused with it), then sends the request once more with the new token, if `Request::try_clone` could copy it |
//! | answered 401 or 403 with `error="insufficient_scope"` | gives the answer back: a new token of the same scope would not help |
//! | with a DPoP-bound token | also gets a new proof for each attempt; a `use_dpop_nonce` answer with a new nonce sends it once more with the same token |
//!
//! A request is sent at most twice; if the second answer refuses the new token too, it goes
//! back, and the cache learns of it all the same. One whose body is a stream has no copy to
//! send again: its refusal goes back to the caller, and the token is replaced for the requests
//! that follow. Header values carrying the token are marked sensitive.
//!
//! # Where it goes in a stack
//!
//! reqwest-middleware runs middleware in the order they were added, the last one next to the
//! client. Add this one last, after reqwest-tracing and reqwest-retry:
//!
//! ```
//! # use std::time::Duration;
//! use reqwest_middleware::ClientBuilder;
//! use reqwest_retry::{RetryTransientMiddleware, policies::ExponentialBackoff};
//! use reqwest_tracing::TracingMiddleware;
//! # use tower_bearer::reqwest::BearerAuthMiddleware;
//! # let auth = BearerAuthMiddleware::new(tower::service_fn(|_: tower_bearer::TokenRequest| async {
//! #     tower_bearer::Token::bearer("t")
//! # }), tower_bearer::Scope::any());
//!
//! let retry = ExponentialBackoff::builder().build_with_max_retries(3);
//! let client = ClientBuilder::new(reqwest::Client::new())
//!     .with(TracingMiddleware::default())
//!     .with(RetryTransientMiddleware::new_with_policy(retry))
//!     .with(auth)
//!     .build();
//! ```
//!
//! - Every attempt reqwest-retry makes passes through the middleware, so each carries the
//!   cache's token of the moment, never one that expired during the retry's backoff; and the
//!   attempts share the cache, so retries cost no refresh.
//! - A refusal is dealt with below reqwest-retry, which sees the answer to the retried request
//!   (it treats a 401 as final anyway).
//! - When no token can be had, the error is a middleware error, which reqwest-retry does not
//!   retry: the cache backs off after a failed refresh, and a retry would only meet the error
//!   it remembers.
//!
//! The other way round, reqwest-retry's attempts would all carry the token attached before
//! the first one.
//!
//! # Redirects
//!
//! reqwest follows redirects inside `Client::execute`, below every middleware: this one sees
//! the first request and the last answer. On a redirect to another scheme, host or port,
//! reqwest removes `Authorization` (and cookies) itself, so the token does not follow the
//! request out of its origin; within the origin it does. An answer that came from another
//! origin than the one the request was sent to (`Response::url`) is given back as it is: the
//! token never reached it, so its 401 says nothing about the token. (A redirect chain that
//! leaves the origin and comes back arrives without the token too; a 401 there is taken as a
//! refusal, which costs at most one refresh and one retry.)
//!
//! # Errors
//!
//! When no token can be had, the request is not sent, and the error is
//! [`reqwest_middleware::Error::Middleware`] holding the [`TokenError`](crate::TokenError),
//! whose one line it shows ("could not get a token: …", down to the refresher's own words):
//! [`TokenError::find`](crate::TokenError::find) finds it, but not under reqwest-retry, whose
//! `RetryError` hides it (the one line still says why). When a DPoP proof cannot be made, the error holds the prover's error, as the
//! tower layer returns it. Any other error is the client's, or another middleware's, as it
//! came.
//!
//! # Versions
//!
//! reqwest 0.13 and reqwest-middleware 0.5, with none of reqwest's optional features turned
//! on here: the application's own choice of TLS, HTTP/2 and proxies applies. reqwest 0.13
//! needs Rust 1.85, this crate's minimum.

mod keyed;
mod middleware;

pub use keyed::KeyedAuthMiddleware;
pub use middleware::BearerAuthMiddleware;
