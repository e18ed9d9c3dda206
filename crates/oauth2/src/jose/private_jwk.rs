//! Private keys from JWKs (RFC 7518 §6, RFC 8037 §2).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::rand::SystemRandom;
use ring::rsa::{KeyPairComponents, PublicKeyComponents};
use ring::signature::{self, EcdsaKeyPair, Ed25519KeyPair, RsaKeyPair};
use serde_json::{Map, Value};

use super::KeyError;
use super::error::KeyErrorKind;
use super::key_pair::{KeyPair, rejected};

fn invalid(reason: &'static str) -> KeyError {
    KeyError::new(KeyErrorKind::InvalidJwk(reason))
}

/// The key pair, and the JWK's `kid`.
pub(super) fn key_pair(text: &str) -> Result<(KeyPair, Option<String>), KeyError> {
    // serde_json's messages can quote the text: none of it is passed on.
    let jwk: Map<String, Value> =
        serde_json::from_str(text).map_err(|_| invalid("not a JSON object"))?;
    let text = |name: &'static str| -> Result<&str, KeyError> {
        jwk.get(name)
            .and_then(Value::as_str)
            .ok_or_else(|| invalid(missing(name)))
    };
    let bytes = |name: &'static str| -> Result<Vec<u8>, KeyError> {
        URL_SAFE_NO_PAD
            .decode(text(name)?)
            .map_err(|_| invalid("a member is not base64url"))
    };
    let pair = match (text("kty")?, jwk.get("crv").and_then(Value::as_str)) {
        ("EC", Some("P-256")) => {
            let mut point = vec![0x04];
            point.extend(bytes("x")?);
            point.extend(bytes("y")?);
            EcdsaKeyPair::from_private_key_and_public_key(
                &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
                &bytes("d")?,
                &point,
                &SystemRandom::new(),
            )
            .map(KeyPair::Es256)
        }
        ("OKP", Some("Ed25519")) => {
            Ed25519KeyPair::from_seed_and_public_key(&bytes("d")?, &bytes("x")?).map(KeyPair::EdDsa)
        }
        ("RSA", _) => RsaKeyPair::from_components(&KeyPairComponents {
            public_key: PublicKeyComponents {
                n: bytes("n")?,
                e: bytes("e")?,
            },
            d: bytes("d")?,
            p: bytes("p")?,
            q: bytes("q")?,
            dP: bytes("dp")?,
            dQ: bytes("dq")?,
            qInv: bytes("qi")?,
        })
        .map(KeyPair::Rs256),
        _ => return Err(KeyError::new(KeyErrorKind::UnsupportedKeyType)),
    }
    .map_err(rejected)?;
    let algorithm = pair.algorithm();
    if let Some(alg) = jwk.get("alg") {
        if alg.as_str() != Some(algorithm.as_str()) {
            return Err(invalid("its alg is not the key type's"));
        }
    }
    let key_id = match jwk.get("kid") {
        None => None,
        Some(Value::String(kid)) => Some(kid.clone()),
        Some(_) => return Err(invalid("kid is not a string")),
    };
    Ok((pair, key_id))
}

fn missing(name: &str) -> &'static str {
    match name {
        "kty" => "no kty",
        "d" => "no d (a public JWK was given)",
        _ => "a required member is missing",
    }
}
