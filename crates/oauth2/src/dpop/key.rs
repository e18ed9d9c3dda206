//! The client's DPoP key.

use std::fmt;
use std::sync::Arc;

use http::{HeaderValue, Method, Uri};
use serde_json::Value;

use super::error::{ProofError, ProofErrorKind};
use super::nonce::{self, DpopNonce, NonceStore};
use super::proof::{self, AccessTokenHash};
use crate::jose::{self, Algorithm, KeyError, SigningKey};

/// The key a client proves possession of with every DPoP request (RFC 9449).
///
/// Tokens issued to a DPoP client are bound to this key's [thumbprint](Self::thumbprint): they
/// are worthless without it, so replicas sharing tokens through a store must share the key too
/// (load it from the same PEM or JWK), while a single process can [generate](Self::generate)
/// one at start. `ES256` is the algorithm servers support most; `EdDSA` is faster where
/// accepted; an RSA key (`RS256`) works too.
///
/// A `DpopKey` is a [`SigningKey`] together with its proof header (`typ`, `alg`, the public
/// `jwk`), encoded once, so that each proof only signs its claims. Cloning is cheap: clones
/// share both. Neither `Debug` nor any error shows the private key.
///
/// ```
/// use tower_bearer_oauth2::dpop::DpopKey;
/// use tower_bearer_oauth2::jose::Algorithm;
///
/// let key = DpopKey::generate(Algorithm::Es256)?;
/// let uri = "https://api.example/v1/items?page=2".parse()?;
/// let proof = key.proof(&http::Method::GET, &uri, Some("the-access-token"), None)?;
/// assert_eq!(proof.to_str()?.split('.').count(), 3);
/// assert!(proof.is_sensitive());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct DpopKey {
    inner: Arc<Inner>,
}

struct Inner {
    key: SigningKey,
    /// base64url of `{"typ":"dpop+jwt","alg":…,"jwk":{…}}`.
    encoded_header: String,
    /// The latest nonce each server gave this key's proofs: the token endpoint's and every
    /// API's, shared by the provider and every layer that sends a token bound to this key.
    nonces: NonceStore,
}

impl DpopKey {
    /// A new random key: [`Algorithm::Es256`] unless the server asks for another
    /// (`dpop_signing_alg_values_supported` in its metadata), or [`Algorithm::EdDsa`].
    pub fn generate(algorithm: Algorithm) -> Result<DpopKey, KeyError> {
        SigningKey::generate(algorithm).map(DpopKey::from)
    }

    /// Loads a key from PEM, as [`SigningKey::from_pem`] does.
    pub fn from_pem(pem: impl AsRef<[u8]>) -> Result<DpopKey, KeyError> {
        SigningKey::from_pem(pem).map(DpopKey::from)
    }

    /// Loads a key from a private JWK, as [`SigningKey::from_jwk`] does.
    pub fn from_jwk(jwk: &str) -> Result<DpopKey, KeyError> {
        SigningKey::from_jwk(jwk).map(DpopKey::from)
    }

    /// The algorithm proofs are signed with.
    pub fn algorithm(&self) -> Algorithm {
        self.inner.key.algorithm()
    }

    /// The public key's JWK thumbprint (RFC 7638): what a bound token's `cnf.jkt` names.
    pub fn thumbprint(&self) -> &str {
        self.inner.key.thumbprint()
    }

    /// The public key as a JWK (see [`SigningKey::public_jwk`]).
    pub fn public_jwk(&self) -> Value {
        self.inner.key.public_jwk()
    }

    /// A new proof for one request, for an HTTP stack this crate does not wrap: `access_token`
    /// for a request to a resource (it gives the proof its `ath`), none for the token
    /// endpoint; `nonce` when the server has given one (its latest `DPoP-Nonce`).
    ///
    /// Each call makes a different proof (a new `jti` and the current time): a request sent
    /// again needs a new one. The header value is marked sensitive.
    pub fn proof(
        &self,
        method: &Method,
        uri: &Uri,
        access_token: Option<&str>,
        nonce: Option<&str>,
    ) -> Result<HeaderValue, ProofError> {
        if nonce.is_some_and(|nonce| !nonce::is_valid(nonce)) {
            return Err(ProofError::new(ProofErrorKind::InvalidNonce));
        }
        let ath = access_token.map(AccessTokenHash::of);
        let Inner {
            key,
            encoded_header,
            ..
        } = &*self.inner;
        proof::proof(key, encoded_header, method, uri, ath.as_ref(), nonce)
    }

    /// [`proof`](Self::proof) with the token's hash computed beforehand and a nonce already
    /// checked: what the layer calls for every attempt.
    pub(crate) fn proof_for(
        &self,
        method: &Method,
        uri: &Uri,
        ath: Option<&AccessTokenHash>,
        nonce: Option<&DpopNonce>,
    ) -> Result<HeaderValue, ProofError> {
        let Inner {
            key,
            encoded_header,
            ..
        } = &*self.inner;
        proof::proof(
            key,
            encoded_header,
            method,
            uri,
            ath,
            nonce.map(DpopNonce::as_str),
        )
    }
}

impl DpopKey {
    /// The latest nonce each origin gave this key's proofs.
    pub(crate) fn nonces(&self) -> &NonceStore {
        &self.inner.nonces
    }
}

#[cfg(test)]
impl DpopKey {
    pub(crate) fn inner_header(&self) -> &str {
        &self.inner.encoded_header
    }
}

impl From<SigningKey> for DpopKey {
    /// Any signing key can be a DPoP key. Its key id is not sent: the proof carries the key.
    fn from(key: SigningKey) -> DpopKey {
        let header = format!(
            r#"{{"typ":"dpop+jwt","alg":"{}","jwk":{}}}"#,
            key.algorithm().as_str(),
            key.public().canonical_json()
        );
        DpopKey {
            inner: Arc::new(Inner {
                encoded_header: jose::base64url(header.as_bytes()),
                key,
                nonces: NonceStore::new(),
            }),
        }
    }
}

impl fmt::Debug for DpopKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DpopKey")
            .field("algorithm", &self.algorithm())
            .field("thumbprint", &self.thumbprint())
            .finish()
    }
}
