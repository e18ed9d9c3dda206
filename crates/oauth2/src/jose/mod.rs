//! Signing keys and compact JWS: what `private_key_jwt` client assertions and DPoP proofs are
//! made of.
//!
//! A [`SigningKey`] is a private key the client holds, loaded from PEM or a JWK, or generated;
//! its [`Algorithm`] follows from its kind (P-256: `ES256`, RSA: `RS256`, Ed25519: `EdDSA`).
//! The providers that sign with it take it as it is; this module only holds what you need to
//! name to make one, and to register its public half with an authorization server:
//!
//! ```
//! use tower_bearer_oauth2::jose::{Algorithm, SigningKey};
//!
//! // openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 (a test key: never use it)
//! let key = SigningKey::from_pem(
//!     "-----BEGIN PRIVATE KEY-----
//! MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgnmtNd/fzMPUKs8B6
//! hQmbEU+DbPa0avj5iHLPb+hbWYihRANCAAQVTcA59zAyeCM1UTrbzHQEzHB0MG9v
//! r6tYzBrE5C0dYTlxZG+7P6nQrHgula8p2qIDlPU85Vb+luithqmOj7We
//! -----END PRIVATE KEY-----",
//! )?
//! .with_key_id("2024-06");
//! assert_eq!(key.algorithm(), Algorithm::Es256);
//!
//! // What the authorization server is told: the public key only.
//! let jwk = key.public_jwk();
//! assert_eq!(jwk["kid"], "2024-06");
//! assert!(jwk.get("d").is_none());
//! # Ok::<(), tower_bearer_oauth2::jose::KeyError>(())
//! ```
//!
//! What a server does with a JWS (for mock servers and tests: a client never verifies) is here
//! too: [`verify`], [`UnverifiedJws`], [`PublicJwk`].
//!
//! Signatures, digests and randomness are ring's; PEM is decoded by `rustls-pki-types`, and
//! SEC1 EC keys by `sec1`.

mod algorithm;
pub(crate) mod error;
mod jwk;
mod jws;
mod key_pair;
mod pem;
mod private_jwk;
mod signing_key;

pub use algorithm::Algorithm;
pub use error::KeyError;
pub use signing_key::SigningKey;

pub use error::VerifyError;
pub use jwk::PublicJwk;
pub(crate) use jws::sign_encoded;
pub use jws::sign_with_header;
pub use jws::{UnverifiedJws, verify};
pub(crate) use jws::{base64url, sign};

/// 128 random bits, base64url-encoded (22 characters): a `jti` no one can guess or repeat.
pub(crate) fn random_id() -> String {
    base64url(&random_bytes::<16>())
}

/// `N` bytes from the system's generator. It failing leaves nothing safe to do, so it panics:
/// ring's `SystemRandom` only fails where the OS has no random source at all.
pub(crate) fn random_bytes<const N: usize>() -> [u8; N] {
    try_random_bytes().expect("the operating system's random number generator failed")
}

/// `N` bytes from the system's generator, or the error a signature would fail with too.
pub(crate) fn try_random_bytes<const N: usize>() -> Result<[u8; N], KeyError> {
    use ring::rand::{SecureRandom, SystemRandom};

    let mut bytes = [0; N];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| KeyError::new(error::KeyErrorKind::Random))?;
    Ok(bytes)
}

#[cfg(test)]
mod tests;
