//! A DPoP token's binding to its key, and what each request sent with it proves.

use std::fmt;

use http::header::{AUTHORIZATION, HeaderName};
use http::{HeaderMap, HeaderValue, Method, Uri};

use super::error::ProofError;
use super::key::DpopKey;
use super::nonce::DpopNonce;
use super::proof::AccessTokenHash;

/// The `DPoP` request header, which carries the proof.
pub(crate) static DPOP: HeaderName = HeaderName::from_static("dpop");

/// What a DPoP token carries beside its header value: the key its proofs are signed with, and
/// its hash (every proof's `ath`), computed once.
#[derive(Clone)]
pub(crate) struct Binding {
    key: DpopKey,
    ath: AccessTokenHash,
}

impl Binding {
    pub(crate) fn new(key: &DpopKey, access_token: &str) -> Binding {
        Binding {
            key: key.clone(),
            ath: AccessTokenHash::of(access_token),
        }
    }

    pub(crate) fn key(&self) -> &DpopKey {
        &self.key
    }

    /// Puts a new proof for `method` and `uri` in `headers` (replacing any proof before it),
    /// with the origin's latest nonce, for a request carrying the token's `authorization`;
    /// returns what the attempt proved, to learn from its answer and to prove it again.
    pub(crate) fn prove(
        &self,
        authorization: &HeaderValue,
        method: &Method,
        uri: &Uri,
        headers: &mut HeaderMap,
    ) -> Result<Proven, ProofError> {
        let nonce = self.key.nonces().get(uri);
        let proof = self
            .key
            .proof_for(method, uri, Some(&self.ath), nonce.as_ref())?;
        headers.insert(DPOP.clone(), proof);
        Ok(Proven {
            binding: self.clone(),
            authorization: authorization.clone(),
            uri: uri.clone(),
            nonce,
        })
    }
}

impl fmt::Debug for Binding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Binding")
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

/// One attempt sent with a DPoP token: the binding that proved it, the URI it went to, and
/// the nonce its proof carried.
pub(crate) struct Proven {
    binding: Binding,
    /// The token's header, for the next attempt.
    authorization: HeaderValue,
    uri: Uri,
    nonce: Option<DpopNonce>,
}

impl Proven {
    /// Learns the origin's nonce from any answer (RFC 9449 §8.2: a server may send a new one
    /// with any response); true if the answer gave a nonce this attempt's proof did not carry,
    /// so that sending again with it may succeed.
    pub(crate) fn learn(&self, headers: &HeaderMap) -> bool {
        let nonces = self.binding.key.nonces();
        nonces.update(&self.uri, headers);
        nonces.get(&self.uri) != self.nonce
    }

    /// Puts the same token and a new proof, with the origin's latest nonce, in the headers of
    /// the request's next attempt.
    pub(crate) fn prove_again(
        &self,
        method: &Method,
        uri: &Uri,
        headers: &mut HeaderMap,
    ) -> Result<Proven, ProofError> {
        headers.insert(AUTHORIZATION, self.authorization.clone());
        self.binding
            .prove(&self.authorization, method, uri, headers)
    }
}
