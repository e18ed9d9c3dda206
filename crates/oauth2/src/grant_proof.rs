//! DPoP at the token endpoint (RFC 9449 §5, §8): a new proof on every attempt, the server's
//! nonce learned from every answer and asked for once, and the answer's token bound to the
//! key. A provider without a key sends no proof: every `Option<&DpopSettings>` is `None`.

use std::fmt;

use http::{HeaderMap, Method};
use tower_bearer::Token;

use crate::dpop::{DPOP, DpopKey, DpopNonce};
use crate::endpoint::TokenEndpoint;
use crate::error::{DiscoveryError, MalformedAnswer, OAuth2Error};

/// Puts a new proof for the token endpoint in `headers` if the provider has a key.
pub(super) fn prove(
    dpop: Option<&DpopSettings>,
    endpoint: &TokenEndpoint,
    headers: &mut HeaderMap,
) -> Result<Option<SentProof>, OAuth2Error> {
    match dpop {
        Some(dpop) => dpop.prove(endpoint, headers).map(Some),
        None => {
            let _ = (endpoint, headers);
            Ok(None)
        }
    }
}

/// The token an answer of `token_type` DPoP (`is_dpop`) or Bearer describes, if it is the
/// type the request asked for.
pub(super) fn token(
    dpop: Option<&DpopSettings>,
    access_token: &str,
    is_dpop: bool,
) -> Result<Token, MalformedAnswer> {
    let token = match dpop {
        Some(dpop) if is_dpop => Token::bound(access_token, &dpop.key),
        Some(dpop) if !dpop.allow_bearer_downgrade => {
            return Err(MalformedAnswer::BearerDowngrade);
        }
        None if is_dpop => return Err(MalformedAnswer::DpopTokenType),
        _ => Token::bearer(access_token),
    };
    token.map_err(MalformedAnswer::AccessToken)
}

/// Checks that the server accepts proofs signed as the key signs them, if its metadata says
/// which it accepts (`dpop_signing_alg_values_supported`).
pub(super) fn check_algorithm(
    dpop: Option<&DpopSettings>,
    supported: Option<&[String]>,
) -> Result<(), DiscoveryError> {
    match (dpop, supported) {
        (Some(dpop), Some(supported)) => {
            let algorithm = dpop.key.algorithm();
            if supported.iter().any(|alg| alg == algorithm.as_str()) {
                Ok(())
            } else {
                Err(DiscoveryError::DpopAlgorithm {
                    algorithm,
                    supported: supported.to_vec(),
                })
            }
        }
        _ => Ok(()),
    }
}

/// The provider's DPoP key, and what it accepts in return.
pub(crate) struct DpopSettings {
    pub(crate) key: DpopKey,
    /// Whether a bearer token is taken when the server ignores the proof.
    pub(crate) allow_bearer_downgrade: bool,
}

impl DpopSettings {
    /// A proof for a POST to the token endpoint: no `ath` (there is no access token yet),
    /// the endpoint origin's latest nonce if it has given one.
    pub(super) fn prove(
        &self,
        endpoint: &TokenEndpoint,
        headers: &mut HeaderMap,
    ) -> Result<SentProof, OAuth2Error> {
        let nonce = self.key.nonces().get(&endpoint.uri);
        let proof = self
            .key
            .proof_for(&Method::POST, &endpoint.uri, None, nonce.as_ref())
            .map_err(OAuth2Error::DpopProof)?;
        headers.insert(DPOP.clone(), proof);
        Ok(SentProof {
            key: self.key.clone(),
            nonce,
        })
    }
}

impl fmt::Debug for DpopSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dpop")
            .field("key", &self.key)
            .field("allow_bearer_downgrade", &self.allow_bearer_downgrade)
            .finish()
    }
}

/// One attempt's proof: the key that signed it and the nonce it carried.
pub(crate) struct SentProof {
    key: DpopKey,
    nonce: Option<DpopNonce>,
}

impl SentProof {
    /// Learns the nonce an answer's `headers` give (RFC 9449 §8.2: any answer may carry one,
    /// a success included), and says whether it is one this proof did not carry.
    pub(super) fn learn_nonce(&self, endpoint: &TokenEndpoint, headers: &HeaderMap) -> bool {
        let nonces = self.key.nonces();
        nonces.update(&endpoint.uri, headers);
        nonces.get(&endpoint.uri) != self.nonce
    }
}
