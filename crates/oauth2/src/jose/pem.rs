//! Private keys from PEM text: PKCS#8, PKCS#1 and SEC1.

use ring::error::KeyRejected;
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, Ed25519KeyPair, RsaKeyPair};
use rustls_pki_types::PrivateKeyDer;
use rustls_pki_types::pem::{self, PemObject};
use sec1::der::asn1::ObjectIdentifier;

use super::KeyError;
use super::error::KeyErrorKind;
use super::key_pair::{KeyPair, rejected};

/// prime256v1 / secp256r1 (RFC 5480 §2.1.1.1).
const P256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");

pub(super) fn key_pair(text: &[u8]) -> Result<KeyPair, KeyError> {
    match PrivateKeyDer::from_pem_slice(text) {
        Ok(PrivateKeyDer::Pkcs8(der)) => pkcs8(der.secret_pkcs8_der()),
        Ok(PrivateKeyDer::Pkcs1(der)) => RsaKeyPair::from_der(der.secret_pkcs1_der())
            .map(KeyPair::Rs256)
            .map_err(rejected),
        Ok(PrivateKeyDer::Sec1(der)) => sec1(der.secret_sec1_der()),
        Ok(_) => Err(KeyError::new(KeyErrorKind::UnsupportedKeyType)),
        Err(pem::Error::NoItemsFound) if is_encrypted(text) => {
            Err(KeyError::new(KeyErrorKind::Encrypted))
        }
        Err(pem::Error::NoItemsFound) => Err(KeyError::new(KeyErrorKind::NoPrivateKey)),
        // The PEM parser's errors may quote a line of the text: none of it is passed on.
        Err(_) => Err(KeyError::new(KeyErrorKind::MalformedPem)),
    }
}

/// PKCS#8 names its key's algorithm; ring's parsers each check it, so each is asked in turn
/// and the first that recognises the algorithm decides.
fn pkcs8(der: &[u8]) -> Result<KeyPair, KeyError> {
    let rng = SystemRandom::new();
    let p256 = EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, der, &rng);
    match p256 {
        Ok(pair) => return Ok(KeyPair::Es256(pair)),
        Err(e) if !is_wrong_algorithm(&e) => return Err(rejected(e)),
        Err(_) => (),
    }
    // OpenSSL writes PKCS#8 v1, without the public key: ring checks it when there is one.
    match Ed25519KeyPair::from_pkcs8_maybe_unchecked(der) {
        Ok(pair) => return Ok(KeyPair::EdDsa(pair)),
        Err(e) if !is_wrong_algorithm(&e) => return Err(rejected(e)),
        Err(_) => (),
    }
    match RsaKeyPair::from_pkcs8(der) {
        Ok(pair) => Ok(KeyPair::Rs256(pair)),
        Err(e) if !is_wrong_algorithm(&e) => Err(rejected(e)),
        Err(_) => Err(KeyError::new(KeyErrorKind::UnsupportedKeyType)),
    }
}

/// SEC1's `ECPrivateKey` (RFC 5915): the private scalar, the curve, and (optionally, but
/// always from OpenSSL) the public point, which is what ring takes.
fn sec1(der: &[u8]) -> Result<KeyPair, KeyError> {
    let key = sec1::EcPrivateKey::try_from(der)
        .map_err(|_| KeyError::new(KeyErrorKind::Rejected("InvalidEncoding")))?;
    if let Some(curve) = key.parameters.and_then(|p| p.named_curve()) {
        if curve != P256 {
            return Err(KeyError::new(KeyErrorKind::UnsupportedKeyType));
        }
    }
    let public_key = key
        .public_key
        .ok_or(KeyError::new(KeyErrorKind::MissingPublicKey))?;
    EcdsaKeyPair::from_private_key_and_public_key(
        &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
        key.private_key,
        public_key,
        &SystemRandom::new(),
    )
    .map(KeyPair::Es256)
    .map_err(rejected)
}

fn is_encrypted(text: &[u8]) -> bool {
    const LABEL: &[u8] = b"-----BEGIN ENCRYPTED PRIVATE KEY-----";
    text.windows(LABEL.len()).any(|w| w == LABEL)
}

/// ring's reason when a key is of another kind than the parser was asked for.
fn is_wrong_algorithm(e: &KeyRejected) -> bool {
    e.to_string() == "WrongAlgorithm"
}
