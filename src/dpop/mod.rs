//! DPoP (RFC 9449): tokens bound to a key the client holds, proven with every request.
//!
//! A bearer token works for whoever holds it. A DPoP-bound token works only with a fresh
//! *proof*, a JWS signed with the client's [`DpopKey`] that names the request (method and URI),
//! the time, the token's hash, and the server's latest nonce. Each attempt gets its own proof.
//!
//! ```
//! use tower_bearer::dpop::DpopKey;
//! use tower_bearer::jose::Algorithm;
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

// The crate-internal half (nonce store, token hashes, the verifier) waits for the layer and
// the mock servers to call it; the tests do already.
#![cfg_attr(not(test), allow(dead_code, unused_imports))]

mod binding;
mod error;
mod htu;
mod key;
mod nonce;
mod proof;
#[cfg(any(test, feature = "mock"))]
mod verifier;

pub(crate) use binding::{Binding, DPOP, Proven};
pub use error::ProofError;
pub use key::DpopKey;

// For the layer and the mocks (tests reach the modules directly).
#[allow(unused_imports)]
pub(crate) use nonce::{DPOP_NONCE, DpopNonce, NonceStore};
#[allow(unused_imports)]
pub(crate) use proof::AccessTokenHash;
#[cfg(any(test, feature = "mock"))]
#[allow(unused_imports)]
pub(crate) use verifier::{ProofContext, ProofRejection, ProofVerifier};

#[cfg(test)]
mod tests;
