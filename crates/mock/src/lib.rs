//! Mock servers for `tower-bearer`'s token providers: real HTTP servers on loopback, for your
//! tests and demos, and for the crate's own.
//!
//! - [`oauth2::MockAuthServer`]: an OAuth 2.0 authorization server (token endpoint with every
//!   grant and client authentication `tower-bearer-oauth2` speaks, discovery, revocation,
//!   refresh-token rotation with reuse detection, DPoP with nonces) and a protected API that
//!   checks its tokens and proofs.
//! - [`apivideo::MockServer`]: api.video's auth endpoints and `/videos`, with faults to
//!   inject (slow, failing or malformed answers, revocations).
//! - [`gcp::MockMetadataServer`]: GCP's metadata server, handing out service account tokens
//!   as GCP's cache does (the same token until minutes before its expiry), with faults to
//!   inject.
//! - [`azure::MockManagedIdentity`]: Azure managed identity's IMDS and App Service
//!   endpoints, with faults to inject.
//! - [`dpop::ProofVerifier`]: checks DPoP proofs as a server does (RFC 9449 §4.3), for an API
//!   of your own in a test.
//!
//! Each server runs until its handle is dropped or shut down; each counts what it saw, so a
//! test can assert how many logins, refreshes or refusals a client caused. The `mock_server`
//! binary runs the api.video mock as a process: `cargo run -p tower-bearer-mock --bin
//! mock_server -- --ttl 60`.
//!
//! ```
//! use tower_bearer_mock::oauth2::MockAuthServer;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! let server = MockAuthServer::builder().client("billing", "s3cr3t").start().await?;
//! println!("issuer {}, API at {}", server.issuer(), server.uri());
//! assert_eq!(server.counters().token_requests, 0);
//! # Ok(())
//! # }
//! ```
#![deny(unsafe_code)]
#![warn(missing_docs, rust_2018_idioms, unreachable_pub)]

pub mod apivideo;
pub mod azure;
pub mod gcp;
pub mod oauth2;
mod server;

/// DPoP proofs, checked as a server checks them.
pub mod dpop {
    pub use crate::oauth2::proof_verifier::{ProofContext, ProofRejection, ProofVerifier};
}

/// A mutex's guard, even if a holder panicked: a mock's state stays readable for the test
/// that asks what happened.
fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
