//! Compact JWS (RFC 7515 §7.1): `base64url(header).base64url(claims).base64url(signature)`.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value};

use super::{KeyError, SigningKey};

/// A compact JWS of `claims`, with the header `{"alg":…,"typ":…,"kid":…}` (`typ` when given,
/// `kid` when the key has one).
pub(crate) fn sign(
    key: &SigningKey,
    typ: Option<&str>,
    claims: &Value,
) -> Result<String, KeyError> {
    let mut header = Map::new();
    header.insert("alg".into(), key.algorithm().as_str().into());
    if let Some(typ) = typ {
        header.insert("typ".into(), typ.into());
    }
    if let Some(key_id) = key.key_id() {
        header.insert("kid".into(), key_id.into());
    }
    sign_with_header(key, &Value::Object(header), claims)
}

/// A compact JWS of `claims` with exactly `header`, signed with `key`: for tests and mock
/// servers that need a JWS this crate would not write (a forged header, a wrong `typ`).
pub fn sign_with_header(
    key: &SigningKey,
    header: &Value,
    claims: &Value,
) -> Result<String, KeyError> {
    let header = base64url(&serde_json::to_vec(header).unwrap_or_default());
    sign_encoded(
        key,
        &header,
        &serde_json::to_vec(claims).unwrap_or_default(),
    )
}

/// A compact JWS from a header already encoded, and the claims' JSON text: one allocation.
pub(crate) fn sign_encoded(
    key: &SigningKey,
    encoded_header: &str,
    claims: &[u8],
) -> Result<String, KeyError> {
    let len = encoded_header.len()
        + 1
        + base64::encoded_len(claims.len(), false).unwrap_or(0)
        + 1
        + key.encoded_signature_len();
    let mut jws = String::with_capacity(len);
    jws.push_str(encoded_header);
    jws.push('.');
    URL_SAFE_NO_PAD.encode_string(claims, &mut jws);
    let signature = key.sign(jws.as_bytes())?;
    jws.push('.');
    URL_SAFE_NO_PAD.encode_string(signature, &mut jws);
    debug_assert_eq!(jws.len(), len);
    Ok(jws)
}

pub(crate) fn base64url(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

pub use verifying::{UnverifiedJws, verify};

/// What a server does with a JWS: for mock servers and tests.
mod verifying {
    use super::*;
    use crate::jose::jwk::PublicJwk;
    use crate::jose::{Algorithm, VerifyError};

    /// A compact JWS taken apart, its signature not yet checked: what a server reads of a
    /// client assertion or a DPoP proof before it knows which key to check it with.
    #[derive(Debug)]
    pub struct UnverifiedJws<'a> {
        header: Map<String, Value>,
        claims: Map<String, Value>,
        /// From `alg`: one of ours, never `none` or an HMAC.
        algorithm: Algorithm,
        signing_input: &'a str,
        signature: Vec<u8>,
    }

    impl<'a> UnverifiedJws<'a> {
        /// Splits and decodes `jws`; header and claims must be JSON objects, and `alg` one
        /// of ours.
        pub fn decode(jws: &'a str) -> Result<Self, VerifyError> {
            let (signing_input, signature) = jws.rsplit_once('.').ok_or(VerifyError::Malformed)?;
            let (header, claims) = signing_input
                .split_once('.')
                .ok_or(VerifyError::Malformed)?;
            let object = |part: &str| -> Result<Map<String, Value>, VerifyError> {
                let json = URL_SAFE_NO_PAD
                    .decode(part)
                    .map_err(|_| VerifyError::Malformed)?;
                serde_json::from_slice(&json).map_err(|_| VerifyError::Malformed)
            };
            let header = object(header)?;
            let claims = object(claims)?;
            let signature = URL_SAFE_NO_PAD
                .decode(signature)
                .map_err(|_| VerifyError::Malformed)?;
            let algorithm = header
                .get("alg")
                .and_then(Value::as_str)
                .and_then(Algorithm::from_name)
                .ok_or(VerifyError::UnsupportedAlgorithm)?;
            Ok(UnverifiedJws {
                header,
                claims,
                algorithm,
                signing_input,
                signature,
            })
        }

        /// The header, not yet to be trusted.
        pub fn header(&self) -> &Map<String, Value> {
            &self.header
        }

        /// The claims, not yet to be trusted.
        pub fn claims(&self) -> &Map<String, Value> {
            &self.claims
        }

        /// The algorithm `alg` names: one this crate signs with, never `none` or an HMAC.
        pub fn algorithm(&self) -> Algorithm {
            self.algorithm
        }

        /// Checks the signature with `key`, for `alg` only if `alg` is `key`'s algorithm.
        pub fn verify_with(&self, key: &PublicJwk) -> Result<(), VerifyError> {
            key.verify(
                self.algorithm,
                self.signing_input.as_bytes(),
                &self.signature,
            )
        }
    }

    /// The header and claims of `jws` if its signature verifies with `public_jwk` (a JWK
    /// object) under the `alg` its header names, which must be the key's own.
    pub fn verify(jws: &str, public_jwk: &Value) -> Result<(Value, Value), VerifyError> {
        let key = PublicJwk::from_json(public_jwk, false)?;
        let jws = UnverifiedJws::decode(jws)?;
        jws.verify_with(&key)?;
        Ok((Value::Object(jws.header), Value::Object(jws.claims)))
    }
}
