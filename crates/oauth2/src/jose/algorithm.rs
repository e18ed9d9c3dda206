//! The signature algorithms a [`SigningKey`](super::SigningKey) signs with.

use std::fmt;

/// A JWS signature algorithm (RFC 7518 §3, RFC 8037 §3.1), one per kind of key.
///
/// The kind of a key decides its algorithm: a P-256 key signs `ES256`, an RSA key `RS256`, an
/// Ed25519 key `EdDSA`. Public because [`SigningKey::generate`](super::SigningKey::generate)
/// takes one and [`SigningKey::algorithm`](super::SigningKey::algorithm) says which a loaded
/// key has.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Algorithm {
    /// ECDSA on P-256 with SHA-256: small keys, fast signatures; the default for DPoP.
    Es256,
    /// RSASSA-PKCS1-v1_5 with SHA-256: the algorithm every authorization server accepts.
    Rs256,
    /// Ed25519: the fastest of the three.
    EdDsa,
}

impl Algorithm {
    /// The `alg` name: `"ES256"`, `"RS256"` or `"EdDSA"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Algorithm::Es256 => "ES256",
            Algorithm::Rs256 => "RS256",
            Algorithm::EdDsa => "EdDSA",
        }
    }

    /// The algorithm with this `alg` name, if it is one of ours (never `none` or an HMAC).
    pub(crate) fn from_name(name: &str) -> Option<Algorithm> {
        match name {
            "ES256" => Some(Algorithm::Es256),
            "RS256" => Some(Algorithm::Rs256),
            "EdDSA" => Some(Algorithm::EdDsa),
            _ => None,
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
