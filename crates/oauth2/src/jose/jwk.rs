//! Public keys as JWKs (RFC 7517, RFC 7518 §6, RFC 8037 §2) and their RFC 7638 thumbprints.

use ring::digest;
use serde_json::{Map, Value};

use super::{Algorithm, base64url};

/// A public key in the members a JWK gives it, each already base64url-encoded.
///
/// Only the required members are kept (RFC 7638 §3.2): they are the whole of what a DPoP
/// header's `jwk` needs and exactly what the thumbprint hashes.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PublicJwk {
    /// `kty: EC`, `crv: P-256`.
    #[non_exhaustive]
    P256 {
        /// The point's x coordinate.
        x: String,
        /// The point's y coordinate.
        y: String,
    },
    /// `kty: OKP`, `crv: Ed25519`.
    #[non_exhaustive]
    Ed25519 {
        /// The public key.
        x: String,
    },
    /// `kty: RSA`.
    #[non_exhaustive]
    Rsa {
        /// The modulus.
        n: String,
        /// The exponent.
        e: String,
    },
}

impl PublicJwk {
    /// From ring's uncompressed SEC1 point `04 || x || y`.
    pub(crate) fn p256(point: &[u8]) -> PublicJwk {
        debug_assert_eq!(point.len(), 65);
        PublicJwk::P256 {
            x: base64url(&point[1..33]),
            y: base64url(&point[33..65]),
        }
    }

    pub(crate) fn ed25519(public_key: &[u8]) -> PublicJwk {
        PublicJwk::Ed25519 {
            x: base64url(public_key),
        }
    }

    /// From big-endian `n` and `e` without leading zeros, as RFC 7518 §6.3.1 wants them.
    pub(crate) fn rsa(n: &[u8], e: &[u8]) -> PublicJwk {
        PublicJwk::Rsa {
            n: base64url(n),
            e: base64url(e),
        }
    }

    /// The one algorithm this key verifies: no other is ever accepted for it.
    pub fn algorithm(&self) -> Algorithm {
        match self {
            PublicJwk::P256 { .. } => Algorithm::Es256,
            PublicJwk::Ed25519 { .. } => Algorithm::EdDsa,
            PublicJwk::Rsa { .. } => Algorithm::Rs256,
        }
    }

    /// The required members, in lexicographic order and without whitespace (RFC 7638 §3.3):
    /// the thumbprint's input, and a valid JWK in its own right.
    pub fn canonical_json(&self) -> String {
        // Every value is a curve name or base64url text: nothing to escape.
        match self {
            PublicJwk::P256 { x, y } => {
                format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#)
            }
            PublicJwk::Ed25519 { x } => format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}"#),
            PublicJwk::Rsa { n, e } => format!(r#"{{"e":"{e}","kty":"RSA","n":"{n}"}}"#),
        }
    }

    /// The RFC 7638 thumbprint: base64url of the SHA-256 of
    /// [`canonical_json`](Self::canonical_json).
    pub fn thumbprint(&self) -> String {
        base64url(digest::digest(&digest::SHA256, self.canonical_json().as_bytes()).as_ref())
    }

    /// The required members as a JSON object.
    pub fn to_json(&self) -> Map<String, Value> {
        let mut jwk = Map::new();
        let mut put = |name: &str, value: &str| {
            jwk.insert(name.to_owned(), Value::String(value.to_owned()));
        };
        match self {
            PublicJwk::P256 { x, y } => {
                put("kty", "EC");
                put("crv", "P-256");
                put("x", x);
                put("y", y);
            }
            PublicJwk::Ed25519 { x } => {
                put("kty", "OKP");
                put("crv", "Ed25519");
                put("x", x);
            }
            PublicJwk::Rsa { n, e } => {
                put("kty", "RSA");
                put("n", n);
                put("e", e);
            }
        }
        jwk
    }
}

/// Reading a JWK someone else sent, and verifying with it: what a server does.
mod verifying {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use ring::signature::{self, RsaPublicKeyComponents, UnparsedPublicKey};

    use super::*;
    use crate::jose::VerifyError;

    /// The members only a private JWK has (RFC 7518 §6.2.2, §6.3.2, §6.4; RFC 8037 §2).
    const PRIVATE_MEMBERS: [&str; 8] = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

    impl PublicJwk {
        /// A public key from a JWK object; other members (`kid`, `alg`, `use`…) are ignored.
        /// With `public_only`, a JWK carrying private members is refused (a DPoP header's
        /// `jwk` must not, RFC 9449 §4.2).
        pub fn from_json(jwk: &Value, public_only: bool) -> Result<PublicJwk, VerifyError> {
            let jwk = jwk.as_object().ok_or(VerifyError::InvalidKey)?;
            if public_only && PRIVATE_MEMBERS.iter().any(|m| jwk.contains_key(*m)) {
                return Err(VerifyError::InvalidKey);
            }
            let member = |name: &str, len: Option<usize>| -> Result<String, VerifyError> {
                let text = jwk
                    .get(name)
                    .and_then(Value::as_str)
                    .ok_or(VerifyError::InvalidKey)?;
                let bytes = URL_SAFE_NO_PAD
                    .decode(text)
                    .map_err(|_| VerifyError::InvalidKey)?;
                match len {
                    Some(len) if bytes.len() != len => Err(VerifyError::InvalidKey),
                    _ if bytes.is_empty() => Err(VerifyError::InvalidKey),
                    _ => Ok(text.to_owned()),
                }
            };
            let text = |name: &str| jwk.get(name).and_then(Value::as_str);
            match (text("kty"), text("crv")) {
                (Some("EC"), Some("P-256")) => Ok(PublicJwk::P256 {
                    x: member("x", Some(32))?,
                    y: member("y", Some(32))?,
                }),
                (Some("OKP"), Some("Ed25519")) => Ok(PublicJwk::Ed25519 {
                    x: member("x", Some(32))?,
                }),
                (Some("RSA"), _) => Ok(PublicJwk::Rsa {
                    n: member("n", None)?,
                    e: member("e", None)?,
                }),
                _ => Err(VerifyError::InvalidKey),
            }
        }

        /// Checks `signature` over `message` for `alg`, which must be this key's algorithm.
        pub fn verify(
            &self,
            alg: Algorithm,
            message: &[u8],
            signature: &[u8],
        ) -> Result<(), VerifyError> {
            if alg != self.algorithm() {
                return Err(VerifyError::AlgorithmMismatch);
            }
            let decode = |text: &str| {
                URL_SAFE_NO_PAD
                    .decode(text)
                    .map_err(|_| VerifyError::InvalidKey)
            };
            let verified = match self {
                PublicJwk::P256 { x, y } => {
                    let mut point = Vec::with_capacity(65);
                    point.push(0x04);
                    point.extend(decode(x)?);
                    point.extend(decode(y)?);
                    UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point)
                        .verify(message, signature)
                }
                PublicJwk::Ed25519 { x } => UnparsedPublicKey::new(&signature::ED25519, decode(x)?)
                    .verify(message, signature),
                PublicJwk::Rsa { n, e } => RsaPublicKeyComponents {
                    n: decode(n)?,
                    e: decode(e)?,
                }
                .verify(&signature::RSA_PKCS1_2048_8192_SHA256, message, signature),
            };
            verified.map_err(|_| VerifyError::BadSignature)
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::jose::VerifyError;

    /// RFC 7638 §3.1.
    const RFC7638_N: &str = "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw";

    #[test]
    fn rfc7638_example_thumbprint() {
        let jwk = json!({
            "kty": "RSA",
            "n": RFC7638_N,
            "e": "AQAB",
            "alg": "RS256",
            "kid": "2011-04-29",
        });
        let key = PublicJwk::from_json(&jwk, true).unwrap();
        assert_eq!(
            key.canonical_json(),
            format!(r#"{{"e":"AQAB","kty":"RSA","n":"{RFC7638_N}"}}"#)
        );
        assert_eq!(
            key.thumbprint(),
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
    }

    #[test]
    fn canonical_json_orders_members_lexicographically() {
        let ec = PublicJwk::P256 {
            x: "X".into(),
            y: "Y".into(),
        };
        assert_eq!(
            ec.canonical_json(),
            r#"{"crv":"P-256","kty":"EC","x":"X","y":"Y"}"#
        );
        let okp = PublicJwk::Ed25519 { x: "X".into() };
        assert_eq!(
            okp.canonical_json(),
            r#"{"crv":"Ed25519","kty":"OKP","x":"X"}"#
        );
    }

    #[test]
    fn private_and_unknown_jwks_are_refused() {
        let x = base64url(&[7; 32]);
        let ok = json!({"kty": "OKP", "crv": "Ed25519", "x": x});
        assert!(PublicJwk::from_json(&ok, true).is_ok());
        let private = json!({"kty": "OKP", "crv": "Ed25519", "x": x, "d": x});
        assert_eq!(
            PublicJwk::from_json(&private, true),
            Err(VerifyError::InvalidKey)
        );
        assert!(PublicJwk::from_json(&private, false).is_ok());
        for bad in [
            json!({"kty": "oct", "k": x}),
            json!({"kty": "EC", "crv": "P-384", "x": x, "y": x}),
            json!({"kty": "EC", "crv": "P-256", "x": x}),
            json!({"kty": "OKP", "crv": "Ed25519", "x": base64url(&[7; 31])}),
            json!({"kty": "OKP", "crv": "Ed25519", "x": "not base64url!"}),
            json!({"kty": "RSA", "n": "", "e": "AQAB"}),
            json!("a string"),
        ] {
            assert_eq!(
                PublicJwk::from_json(&bad, false),
                Err(VerifyError::InvalidKey),
                "{bad}"
            );
        }
    }
}
