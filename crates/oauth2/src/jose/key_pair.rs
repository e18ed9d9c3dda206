//! The private keys ring holds, one kind per algorithm, and ring's refusal of a key as this
//! crate's error: what the PEM and JWK loaders make, and what a `SigningKey` signs with.

use ring::error::KeyRejected;
use ring::signature::{EcdsaKeyPair, Ed25519KeyPair, RsaKeyPair};

use super::error::KeyErrorKind;
use super::{Algorithm, KeyError};

/// What ring holds for each kind of key.
pub(super) enum KeyPair {
    Es256(EcdsaKeyPair),
    Rs256(RsaKeyPair),
    EdDsa(Ed25519KeyPair),
}

impl KeyPair {
    /// The algorithm a key of this kind signs with.
    pub(super) fn algorithm(&self) -> Algorithm {
        match self {
            KeyPair::Es256(_) => Algorithm::Es256,
            KeyPair::Rs256(_) => Algorithm::Rs256,
            KeyPair::EdDsa(_) => Algorithm::EdDsa,
        }
    }
}

/// ring's reasons are fixed words, never key material; ring shows them only through
/// `Display`, so they are matched back to the words its docs list.
pub(super) fn rejected(e: KeyRejected) -> KeyError {
    const REASONS: [&str; 10] = [
        "InconsistentComponents",
        "InvalidComponent",
        "InvalidEncoding",
        "PublicKeyIsMissing",
        "TooSmall",
        "TooLarge",
        "VersionNotSupported",
        "WrongAlgorithm",
        "PrivateModulusLenNotMultipleOf512Bits",
        "RNG failed",
    ];
    let reason = e.to_string();
    let reason = REASONS
        .into_iter()
        .find(|known| *known == reason)
        .unwrap_or("UnexpectedError");
    KeyError::new(KeyErrorKind::Rejected(reason))
}
