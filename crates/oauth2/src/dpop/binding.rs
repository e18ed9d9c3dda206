//! A DPoP token's binding to its key, and what each request sent with it proves: DPoP as the
//! core's proof seam ([`BindingKey`], [`Prover`], [`Proof`]) sees it.

use std::fmt;
use std::sync::Arc;

use http::header::HeaderName;
use http::{HeaderMap, Method, Uri};
use tower::BoxError;
use tower_bearer::TokenType;
use tower_bearer::proof::{BindingKey, Proof, Prover};

use super::key::DpopKey;
use super::nonce::DpopNonce;
use super::proof::AccessTokenHash;

/// The `DPoP` request header, which carries the proof.
pub(crate) static DPOP: HeaderName = HeaderName::from_static("dpop");

impl BindingKey for DpopKey {
    fn token_type(&self) -> TokenType {
        TokenType::Dpop
    }

    /// The key's RFC 7638 thumbprint.
    fn id(&self) -> &str {
        self.thumbprint()
    }

    fn bind(&self, access_token: &str) -> Arc<dyn Prover> {
        Arc::new(Binding {
            key: self.clone(),
            ath: AccessTokenHash::of(access_token),
        })
    }
}

/// What a DPoP token carries beside its header value: the key its proofs are signed with, and
/// its hash (every proof's `ath`), computed once.
struct Binding {
    key: DpopKey,
    ath: AccessTokenHash,
}

impl Prover for Binding {
    fn key(&self) -> &dyn BindingKey {
        &self.key
    }

    fn header_name(&self) -> &HeaderName {
        &DPOP
    }

    /// A new proof for `method` and `uri`, with the origin's latest nonce.
    fn prove(
        &self,
        method: &Method,
        uri: &Uri,
        headers: &mut HeaderMap,
    ) -> Result<Box<dyn Proof>, BoxError> {
        let nonce = self.key.nonces().get(uri);
        let proof = self
            .key
            .proof_for(method, uri, Some(&self.ath), nonce.as_ref())?;
        headers.insert(DPOP.clone(), proof);
        Ok(Box::new(Proven {
            key: self.key.clone(),
            uri: uri.clone(),
            nonce,
        }))
    }
}

impl fmt::Debug for Binding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Binding")
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

/// One attempt sent with a DPoP token: the key that proved it, the URI it went to, and the
/// nonce its proof carried.
struct Proven {
    key: DpopKey,
    uri: Uri,
    nonce: Option<DpopNonce>,
}

impl Proof for Proven {
    /// Learns the origin's nonce from any answer (RFC 9449 §8.2: a server may send a new one
    /// with any response); true if the answer gave a nonce this attempt's proof did not carry.
    fn learn(&self, headers: &HeaderMap) -> bool {
        let nonces = self.key.nonces();
        nonces.update(&self.uri, headers);
        nonces.get(&self.uri) != self.nonce
    }
}
