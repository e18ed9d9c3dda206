//! DPoP at the token endpoint (RFC 9449 §5, §8): a new proof on every attempt, the server's
//! nonce learned from every answer and asked for once, and the answer's token bound to the
//! key.
//!
//! Without the `dpop` feature a provider has no key: [`DpopSettings`] is uninhabited, every
//! `Option<&DpopSettings>` is `None`, and these functions do nothing.

use http::HeaderMap;

use super::endpoint::TokenEndpoint;
use super::error::{DiscoveryError, MalformedAnswer, OAuth2Error};
use crate::Token;
use crate::http_client::Answer;

#[cfg(feature = "dpop")]
pub(super) use with_key::{DpopSettings, SentProof};

#[cfg(not(feature = "dpop"))]
#[derive(Debug)]
pub(super) enum DpopSettings {}

#[cfg(not(feature = "dpop"))]
pub(super) enum SentProof {}

/// Puts a new proof for the token endpoint in `headers` if the provider has a key.
pub(super) fn prove(
    dpop: Option<&DpopSettings>,
    endpoint: &TokenEndpoint,
    headers: &mut HeaderMap,
) -> Result<Option<SentProof>, OAuth2Error> {
    match dpop {
        #[cfg(feature = "dpop")]
        Some(dpop) => dpop.prove(endpoint, headers).map(Some),
        #[cfg(not(feature = "dpop"))]
        Some(dpop) => match *dpop {},
        None => {
            let _ = (endpoint, headers);
            Ok(None)
        }
    }
}

/// Learns the nonce `answer` gives (RFC 9449 §8.2: any answer may carry one, a success
/// included), and says whether the attempt should be made again: the server asked for its
/// nonce (`use_dpop_nonce`), and gave one the proof did not carry.
pub(super) fn ask_again(
    sent: Option<&SentProof>,
    endpoint: &TokenEndpoint,
    answer: &Answer,
) -> bool {
    match sent {
        #[cfg(feature = "dpop")]
        Some(sent) => sent.ask_again(endpoint, answer),
        #[cfg(not(feature = "dpop"))]
        Some(sent) => match *sent {},
        None => {
            let _ = (endpoint, answer);
            false
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
        #[cfg(feature = "dpop")]
        Some(dpop) if is_dpop => Token::dpop(access_token, &dpop.key),
        #[cfg(feature = "dpop")]
        Some(dpop) if !dpop.allow_bearer_downgrade => {
            return Err(MalformedAnswer::BearerDowngrade);
        }
        #[cfg(not(feature = "dpop"))]
        Some(dpop) => match *dpop {},
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
        #[cfg(feature = "dpop")]
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
        #[cfg(not(feature = "dpop"))]
        (Some(dpop), _) => match *dpop {},
        _ => Ok(()),
    }
}

#[cfg(feature = "dpop")]
mod with_key {
    use std::fmt;

    use http::{HeaderMap, Method};

    use super::super::answer;
    use super::super::endpoint::TokenEndpoint;
    use super::super::error::{ErrorCode, OAuth2Error};
    use crate::dpop::{DPOP, DpopKey, DpopNonce};
    use crate::http_client::Answer;

    /// The provider's DPoP key, and what it accepts in return.
    pub(in crate::oauth2) struct DpopSettings {
        pub(in crate::oauth2) key: DpopKey,
        /// Whether a bearer token is taken when the server ignores the proof.
        pub(in crate::oauth2) allow_bearer_downgrade: bool,
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
    pub(in crate::oauth2) struct SentProof {
        key: DpopKey,
        nonce: Option<DpopNonce>,
    }

    impl SentProof {
        pub(super) fn ask_again(&self, endpoint: &TokenEndpoint, answer: &Answer) -> bool {
            let nonces = self.key.nonces();
            nonces.update(&endpoint.uri, &answer.headers);
            let new_nonce = nonces.get(&endpoint.uri) != self.nonce;
            // RFC 9449 §8 says 400; the code, not the status, is what says it.
            new_nonce
                && answer.status.is_client_error()
                && answer.body.as_ref().is_ok_and(|body| {
                    answer::parse_error(answer.status, body, &[])
                        .is_some_and(|response| *response.code() == ErrorCode::UseDpopNonce)
                })
        }
    }
}
