//! Why a key could not be loaded or used, and why a JWS did not verify.

use std::fmt;

use super::Algorithm;

/// A private key could not be loaded, generated or used.
///
/// Its messages say what was wrong with the key and, where one exists, the command that fixes
/// it; they never quote the key.
#[derive(Debug)]
pub struct KeyError {
    kind: KeyErrorKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyErrorKind {
    /// No `PRIVATE KEY`, `RSA PRIVATE KEY` or `EC PRIVATE KEY` block in the PEM text.
    NoPrivateKey,
    /// A PEM block that does not decode (bad base64, no END line).
    MalformedPem,
    /// An `ENCRYPTED PRIVATE KEY` block: we hold no passphrase.
    Encrypted,
    /// A key of a kind we do not sign with (P-384, X25519, DSA…).
    UnsupportedKeyType,
    /// A SEC1 key without its public half, which ring needs.
    MissingPublicKey,
    /// ring refused the key (bad encoding, an RSA modulus outside 2048..=4096 bits, a public
    /// key that does not match the private one); the reason is ring's, never key material.
    Rejected(&'static str),
    /// A JWK that is not a private key we can use; the reason names the member.
    InvalidJwk(&'static str),
    /// Only ES256 and EdDSA keys are generated.
    CannotGenerate(Algorithm),
    /// The system's random number generator failed.
    Random,
}

impl KeyError {
    pub(crate) const fn new(kind: KeyErrorKind) -> Self {
        KeyError { kind }
    }

    #[cfg(test)]
    pub(crate) fn kind(&self) -> KeyErrorKind {
        self.kind
    }
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            KeyErrorKind::NoPrivateKey => f.write_str(
                "no private key in the PEM text (expected a PRIVATE KEY, RSA PRIVATE KEY or \
                 EC PRIVATE KEY block)",
            ),
            KeyErrorKind::MalformedPem => f.write_str("the PEM text does not decode"),
            KeyErrorKind::Encrypted => f.write_str(
                "the private key is encrypted; write it unencrypted with \
                 `openssl pkey -in key.pem -out key.pkcs8.pem`",
            ),
            KeyErrorKind::UnsupportedKeyType => f.write_str(
                "unsupported key type: keys are P-256 (ES256), RSA (RS256) or Ed25519 (EdDSA)",
            ),
            KeyErrorKind::MissingPublicKey => f.write_str(
                "the EC private key does not carry its public key; convert it with \
                 `openssl pkcs8 -topk8 -nocrypt -in key.pem -out key.pkcs8.pem`",
            ),
            KeyErrorKind::Rejected(reason) => write!(f, "invalid private key ({reason})"),
            KeyErrorKind::InvalidJwk(reason) => write!(f, "invalid private JWK: {reason}"),
            KeyErrorKind::CannotGenerate(alg) => write!(
                f,
                "{alg} keys are not generated here: generate one with openssl and load it \
                 with SigningKey::from_pem"
            ),
            KeyErrorKind::Random => f.write_str("the system random number generator failed"),
        }
    }
}

impl std::error::Error for KeyError {}

/// Why a compact JWS was refused. For mock servers and tests: a client never verifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum VerifyError {
    /// Not three base64url parts, or a part that is not a JSON object.
    Malformed,
    /// `alg` missing, `none`, symmetric, or one we do not know.
    UnsupportedAlgorithm,
    /// The JWK is not a public key we know (or carries private members).
    InvalidKey,
    /// `alg` names another kind of key than the JWK's (`RS256` with an EC key…).
    AlgorithmMismatch,
    /// The signature does not verify.
    BadSignature,
}

impl fmt::Display for VerifyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            VerifyError::Malformed => "not a compact JWS with JSON header and claims",
            VerifyError::UnsupportedAlgorithm => "unsupported or missing alg",
            VerifyError::InvalidKey => "not a usable public JWK",
            VerifyError::AlgorithmMismatch => "alg does not match the key type",
            VerifyError::BadSignature => "the signature does not verify",
        })
    }
}

impl std::error::Error for VerifyError {}
