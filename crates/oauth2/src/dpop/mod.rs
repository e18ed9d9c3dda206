//! DPoP (RFC 9449): tokens bound to a key the client holds, proven with every request.
//!
//! A bearer token works for whoever holds it. A DPoP-bound token works only with a fresh
//! *proof*, a JWS signed with the client's [`DpopKey`] that names the request (method and URI),
//! the time, the token's hash, and the server's latest nonce. Each attempt gets its own proof.
//!
//! ```
//! use tower_bearer_oauth2::dpop::DpopKey;
//! use tower_bearer_oauth2::jose::Algorithm;
//!
//! let key = DpopKey::generate(Algorithm::Es256)?;
//! // The token endpoint: no access token yet; the server's nonce once it has sent one.
//! let token_endpoint = "https://as.example/token".parse()?;
//! let proof = key.proof(&http::Method::POST, &token_endpoint, None, Some("eyJ7S_zG.eyJH0"))?;
//! let request = http::Request::post("https://as.example/token").header("DPoP", proof);
//! # let _ = request;
//! // The thumbprint the server binds tokens to (their `cnf.jkt`).
//! println!("{}", key.thumbprint());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! That is for an HTTP stack this crate does not wrap. With the crate's own pieces there is
//! nothing to prove by hand: the OAuth 2.0 provider given a key
//! (`OAuth2Builder::dpop`, feature `oauth2`) sends a proof with every token request and gets
//! DPoP tokens, and a [`BearerAuthLayer`](tower_bearer::BearerAuthLayer) sends each request with such
//! a token with a new proof, the nonces of every server learned and answered on the way.

mod binding;
mod error;
mod htu;
mod key;
mod nonce;
mod proof;

pub(crate) use binding::DPOP;
pub use error::ProofError;
pub use key::DpopKey;
pub(crate) use nonce::DpopNonce;

#[cfg(test)]
mod tests;
