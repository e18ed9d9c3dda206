//! Bearer tokens for tonic gRPC clients: a generated client over a tonic `Channel` gets the
//! [`TokenCache`](crate::TokenCache)'s token on every call, and a call whose token the server
//! refused is sent again, once, with a new one.
//!
//! Needs the `tonic` feature, and rustc 1.88 (tonic 0.14's own minimum, newer than the rest of
//! this crate's).
//!
//! # Example
//!
//! ```no_run
//! use std::time::Duration;
//! use tonic::transport::Channel;
//! use tonic_health::pb::HealthCheckRequest;
//! use tonic_health::pb::health_client::HealthClient;
//! use tower::{BoxError, ServiceBuilder, service_fn};
//! use tower_bearer::tonic::GrpcAuthLayer;
//! use tower_bearer::{Scope, Token, TokenCache, TokenRequest};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), BoxError> {
//! // Any refresher: an OAuth 2.0 provider, or your own service.
//! let cache = TokenCache::new(service_fn(|_: TokenRequest| async {
//!     Ok::<_, BoxError>(Token::bearer("t0k3n")?.expires_in(Duration::from_secs(3600)))
//! }));
//!
//! let origin = "http://127.0.0.1:50051";
//! let channel = Channel::from_static(origin).connect().await?;
//! let mut client = HealthClient::new(
//!     ServiceBuilder::new()
//!         // The channel's origin: the scope of its token.
//!         .layer(GrpcAuthLayer::from_cache(cache, Scope::origin(origin)?))
//!         .service(channel),
//! );
//! let reply = client.check(HealthCheckRequest { service: String::new() }).await?;
//! println!("{:?}", reply.into_inner().status());
//! # Ok(())
//! # }
//! ```
//!
//! `examples/grpc.rs` runs the same against a tonic server and an OAuth 2.0 authorization
//! server of its own (`cargo run --example grpc --features tonic`).
//!
//! # What a call does
//!
//! | the server answers | the call |
//! | --- | --- |
//! | UNAUTHENTICATED (16) before any message: a *trailers-only* answer, `grpc-status` in the headers, as tonic's server sends for an interceptor's or a handler's error | the token is replaced (once, however many calls were refused with it), and the call is sent again with the new one, once, if its request could be kept: unary, server-streaming, and client-streaming up to the [replay limit](crate::BearerAuthLayer::replay_limit) |
//! | UNAUTHENTICATED in the trailers, after the response had begun (a stream cut short) | the call ends UNAUTHENTICATED, as the server said; the token is replaced for the calls that follow |
//! | PERMISSION_DENIED (7), or any other status | goes back as it came: a new token would not help |
//! | an HTTP 401 (from a proxy in front of the server), 403, or an `insufficient_scope` challenge | as [`TokenVerdict::of`](crate::TokenVerdict::of) says, exactly as for [`BearerAuth`](crate::BearerAuth) |
//!
//! A client stream longer than the replay limit is not kept, so it is not sent again: the
//! call ends UNAUTHENTICATED, and the token is still replaced for the next one. A call is
//! sent at most twice, whatever the second answer.
//!
//! The settings of [`BearerAuthLayer`](crate::BearerAuthLayer) (retries, replay limit, your
//! own [verdict](crate::BearerAuthLayer::verdict) on the headers) carry over: build one and
//! convert it with [`GrpcAuthLayer::from`]. The trailers are read with
//! [`TokenVerdict::of_trailers`](crate::TokenVerdict::of_trailers).
//!
//! # Why not `BearerAuthLayer` itself
//!
//! [`BearerAuth`](crate::BearerAuth) hands its inner service a
//! [`ReplayBody`](crate::ReplayBody) so that it can send a request twice, and watches only a
//! response's head; a tonic `Channel` takes tonic's own body type, and a gRPC refusal may
//! come in the trailers. [`GrpcAuth`] is `BearerAuth` with an adapter in between that turns
//! the one body into the other and reads the trailers on their way to your client, so that
//! no body type appears in your code.
//!
//! # Scope, and DPoP
//!
//! A generated client sends its requests with a path-only URI (the `Channel` adds the
//! origin). The layer sits in front of one channel, so it is built with that channel's origin
//! ([`Scope::origin`](crate::Scope::origin)) and takes path-only URIs as that origin's; an
//! absolute URI (a client built `with_origin`) must match it. A token bound to a key (DPoP)
//! gets proofs that name the call's absolute URI, the channel's origin and the call's path,
//! so `HealthClient::new(channel)` works with it as it is.
//!
//! [`Scope::any`](crate::Scope::any) suits a channel as well, but knows no origin: a
//! DPoP-bound call then needs a client built `with_origin`, or it fails with the proof's
//! error rather than go without one. A call sent without the token because it is out of scope
//! is counted in [`Stats::out_of_scope`](crate::Stats::out_of_scope), and the first is logged.

mod body;
mod future;
mod inner;
mod layer;
mod service;

pub use body::ResponseBody;
pub use future::ResponseFuture;
pub use layer::GrpcAuthLayer;
pub use service::GrpcAuth;
