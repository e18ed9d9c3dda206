//! Why a proof could not be made.

use std::fmt;

use crate::jose::KeyError;

/// A DPoP proof could not be made for a request.
#[derive(Debug)]
pub struct ProofError {
    kind: ProofErrorKind,
}

#[derive(Debug)]
pub(crate) enum ProofErrorKind {
    /// An origin-form URI (`/path`): a proof names the absolute URI.
    NoOrigin,
    /// A nonce that is not `1*NQCHAR` (RFC 9449 §8.1), or too long.
    InvalidNonce,
    /// The key could not sign (the system's random number generator failed).
    Signing(KeyError),
}

impl ProofError {
    pub(crate) fn new(kind: ProofErrorKind) -> ProofError {
        ProofError { kind }
    }

    #[cfg(test)]
    pub(crate) fn kind(&self) -> &ProofErrorKind {
        &self.kind
    }
}

impl fmt::Display for ProofError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            ProofErrorKind::NoOrigin => {
                f.write_str("the request URI has no scheme and host, which a DPoP proof must name")
            }
            ProofErrorKind::InvalidNonce => {
                f.write_str("the DPoP nonce is not 1*NQCHAR (RFC 9449 section 8.1)")
            }
            ProofErrorKind::Signing(_) => f.write_str("the DPoP proof could not be signed"),
        }
    }
}

impl std::error::Error for ProofError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.kind {
            ProofErrorKind::Signing(e) => Some(e),
            _ => None,
        }
    }
}
