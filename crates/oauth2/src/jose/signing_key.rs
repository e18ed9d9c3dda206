//! A private key the client signs with.

use std::fmt;
use std::sync::Arc;

use ring::rand::SystemRandom;
use ring::rsa::PublicKeyComponents;
use ring::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _};
use serde_json::Value;

use super::error::KeyErrorKind;
use super::jwk::PublicJwk;
use super::key_pair::{KeyPair, rejected};
use super::{Algorithm, KeyError, pem, private_jwk};

/// A private key held by the client: it signs client assertions (`private_key_jwt`) and DPoP
/// proofs.
///
/// Loaded from PEM ([`from_pem`](Self::from_pem)) or a private JWK
/// ([`from_jwk`](Self::from_jwk)), or generated ([`generate`](Self::generate)). Its kind decides
/// its [`Algorithm`]. Cloning is cheap: clones share the key.
///
/// Neither `Debug` nor any error shows private key material: `Debug` prints the algorithm, the
/// key id and the public key's thumbprint.
///
/// ```
/// use tower_bearer_oauth2::jose::{Algorithm, SigningKey};
///
/// let key = SigningKey::generate(Algorithm::Es256)?.with_key_id("client-key-1");
/// assert_eq!(key.algorithm().as_str(), "ES256");
/// assert_eq!(key.public_jwk()["kty"], "EC");
/// assert_eq!(key.thumbprint().len(), 43);
/// # Ok::<(), tower_bearer_oauth2::jose::KeyError>(())
/// ```
#[derive(Clone)]
pub struct SigningKey {
    material: Arc<KeyMaterial>,
    key_id: Option<Arc<str>>,
}

struct KeyMaterial {
    pair: KeyPair,
    public: PublicJwk,
    /// Computed once: `Debug`, DPoP's `cnf.jkt` and store key names all want it.
    thumbprint: String,
}

impl SigningKey {
    /// Loads the first private key in PEM text: PKCS#8 (`PRIVATE KEY`: P-256, RSA or
    /// Ed25519), PKCS#1 (`RSA PRIVATE KEY`) or SEC1 (`EC PRIVATE KEY`, P-256).
    ///
    /// RSA keys must have a modulus of 2048 to 4096 bits. Encrypted keys are refused with the
    /// command that decrypts them.
    ///
    /// ```
    /// use tower_bearer_oauth2::jose::SigningKey;
    ///
    /// // openssl genpkey -algorithm ED25519 (a test key: never use it)
    /// let pem = "-----BEGIN PRIVATE KEY-----
    /// MC4CAQAwBQYDK2VwBCIEIAqxJleCtPHGhRDyTmIXXAxemIidcrgipR5TwxTa0XxU
    /// -----END PRIVATE KEY-----";
    /// let key = SigningKey::from_pem(pem)?;
    /// assert_eq!(key.algorithm().as_str(), "EdDSA");
    /// # Ok::<(), tower_bearer_oauth2::jose::KeyError>(())
    /// ```
    pub fn from_pem(pem: impl AsRef<[u8]>) -> Result<SigningKey, KeyError> {
        pem::key_pair(pem.as_ref()).map(SigningKey::new)
    }

    /// Loads a private key from a JWK (RFC 7517): `EC` on P-256 or `OKP` Ed25519 (with `d`, and
    /// the public members), or `RSA` with all its CRT members. Its `kid`, if any, becomes the
    /// key id; an `alg` member, if any, must be the key's own algorithm.
    pub fn from_jwk(jwk: &str) -> Result<SigningKey, KeyError> {
        let (pair, key_id) = private_jwk::key_pair(jwk)?;
        let key = SigningKey::new(pair);
        Ok(match key_id {
            Some(key_id) => key.with_key_id(key_id),
            None => key,
        })
    }

    /// A new random key: [`Algorithm::Es256`] (P-256) or [`Algorithm::EdDsa`] (Ed25519).
    ///
    /// RSA keys are not generated (it takes long, and a generated key is usually meant to be
    /// short-lived, which suits the others better): for [`Algorithm::Rs256`] this is an error.
    pub fn generate(algorithm: Algorithm) -> Result<SigningKey, KeyError> {
        let rng = SystemRandom::new();
        let random = |_| KeyError::new(KeyErrorKind::Random);
        let pair = match algorithm {
            Algorithm::Es256 => {
                let alg = &signature::ECDSA_P256_SHA256_FIXED_SIGNING;
                let pkcs8 = EcdsaKeyPair::generate_pkcs8(alg, &rng).map_err(random)?;
                KeyPair::Es256(
                    EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref(), &rng).map_err(rejected)?,
                )
            }
            Algorithm::EdDsa => {
                let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).map_err(random)?;
                KeyPair::EdDsa(Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).map_err(rejected)?)
            }
            Algorithm::Rs256 => {
                return Err(KeyError::new(KeyErrorKind::CannotGenerate(algorithm)));
            }
        };
        Ok(SigningKey::new(pair))
    }

    fn new(pair: KeyPair) -> SigningKey {
        let public = match &pair {
            KeyPair::Es256(pair) => PublicJwk::p256(pair.public_key().as_ref()),
            KeyPair::EdDsa(pair) => PublicJwk::ed25519(pair.public_key().as_ref()),
            KeyPair::Rs256(pair) => {
                let public = PublicKeyComponents::<Vec<u8>>::from(pair.public());
                PublicJwk::rsa(&public.n, &public.e)
            }
        };
        let thumbprint = public.thumbprint();
        SigningKey {
            material: Arc::new(KeyMaterial {
                pair,
                public,
                thumbprint,
            }),
            key_id: None,
        }
    }

    /// Sets the key id (`kid`) that JWS headers and the public JWK name the key by, as
    /// registered with the authorization server.
    pub fn with_key_id(mut self, key_id: impl Into<String>) -> SigningKey {
        self.key_id = Some(Arc::from(key_id.into()));
        self
    }

    /// The key id, if one was set or loaded.
    pub fn key_id(&self) -> Option<&str> {
        self.key_id.as_deref()
    }

    /// The algorithm this key signs with.
    pub fn algorithm(&self) -> Algorithm {
        self.material.public.algorithm()
    }

    /// The public key as a JWK, to register with an authorization server or publish in a JWKS:
    /// the key's members (`kty`, `crv`, `x`, `y` for P-256; `kty`, `crv`, `x` for Ed25519;
    /// `kty`, `n`, `e` for RSA) with `use: "sig"`, `alg`, and `kid` when there is one.
    pub fn public_jwk(&self) -> Value {
        let mut jwk = self.material.public.to_json();
        jwk.insert("use".into(), "sig".into());
        jwk.insert("alg".into(), self.algorithm().as_str().into());
        if let Some(key_id) = self.key_id() {
            jwk.insert("kid".into(), key_id.into());
        }
        Value::Object(jwk)
    }

    /// The public key's JWK thumbprint (RFC 7638): base64url of the SHA-256 of its required
    /// members. DPoP binds tokens to it (`cnf.jkt`).
    pub fn thumbprint(&self) -> &str {
        &self.material.thumbprint
    }

    /// The public key, with only the members a JWK requires.
    pub(crate) fn public(&self) -> &PublicJwk {
        &self.material.public
    }

    /// The signature of `message`.
    pub(crate) fn sign(&self, message: &[u8]) -> Result<Signature, KeyError> {
        let failed = |_| KeyError::new(KeyErrorKind::Random);
        Ok(match &self.material.pair {
            KeyPair::Es256(pair) => {
                Signature::Fixed(pair.sign(&SystemRandom::new(), message).map_err(failed)?)
            }
            KeyPair::EdDsa(pair) => Signature::Fixed(pair.sign(message)),
            KeyPair::Rs256(pair) => {
                let mut signature = vec![0; pair.public().modulus_len()];
                pair.sign(
                    &signature::RSA_PKCS1_SHA256,
                    &SystemRandom::new(),
                    message,
                    &mut signature,
                )
                .map_err(failed)?;
                Signature::Rsa(signature)
            }
        })
    }

    /// How many base64url characters a signature takes.
    pub(crate) fn encoded_signature_len(&self) -> usize {
        let bytes = match &self.material.pair {
            KeyPair::Es256(_) | KeyPair::EdDsa(_) => 64,
            KeyPair::Rs256(pair) => pair.public().modulus_len(),
        };
        base64::encoded_len(bytes, false).unwrap_or(0)
    }
}

/// A signature: ECDSA's and Ed25519's fit on the stack, RSA's is as long as the modulus.
pub(crate) enum Signature {
    Fixed(signature::Signature),
    Rsa(Vec<u8>),
}

impl AsRef<[u8]> for Signature {
    fn as_ref(&self) -> &[u8] {
        match self {
            Signature::Fixed(signature) => signature.as_ref(),
            Signature::Rsa(signature) => signature,
        }
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("algorithm", &self.algorithm())
            .field("key_id", &self.key_id())
            .field("thumbprint", &self.thumbprint())
            .finish()
    }
}
