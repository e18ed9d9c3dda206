use serde_json::{Value, json};

use super::error::KeyErrorKind;
use super::*;

const ES256_PKCS8: &str = include_str!("../../../../tests/keys/es256.pkcs8.pem");
const ES256_SEC1: &str = include_str!("../../../../tests/keys/es256.sec1.pem");
const ES256_SEC1_NO_PUBLIC: &str = include_str!("../../../../tests/keys/es256.sec1-no-public.pem");
const ES256_ENCRYPTED: &str = include_str!("../../../../tests/keys/es256.encrypted.pem");
const ES384_PKCS8: &str = include_str!("../../../../tests/keys/es384.pkcs8.pem");
const ES384_SEC1: &str = include_str!("../../../../tests/keys/es384.sec1.pem");
const RS256_PKCS8: &str = include_str!("../../../../tests/keys/rs256.pkcs8.pem");
const RS256_PKCS1: &str = include_str!("../../../../tests/keys/rs256.pkcs1.pem");
const RSA1024_PKCS8: &str = include_str!("../../../../tests/keys/rsa1024.pkcs8.pem");
const ED25519_PKCS8: &str = include_str!("../../../../tests/keys/ed25519.pkcs8.pem");
const ES256_JWK: &str = include_str!("../../../../tests/keys/es256.jwk.json");
const RS256_JWK: &str = include_str!("../../../../tests/keys/rs256.jwk.json");
const ED25519_JWK: &str = include_str!("../../../../tests/keys/ed25519.jwk.json");

fn jwk(text: &str) -> Value {
    serde_json::from_str(text).unwrap()
}

fn kind(result: Result<SigningKey, KeyError>) -> KeyErrorKind {
    result.expect_err("the key should be refused").kind()
}

#[test]
fn pem_keys_of_each_kind_load_with_their_algorithm() {
    let cases = [
        (ES256_PKCS8, Algorithm::Es256),
        (ES256_SEC1, Algorithm::Es256),
        (RS256_PKCS8, Algorithm::Rs256),
        (RS256_PKCS1, Algorithm::Rs256),
        (ED25519_PKCS8, Algorithm::EdDsa),
    ];
    for (pem, algorithm) in cases {
        assert_eq!(SigningKey::from_pem(pem).unwrap().algorithm(), algorithm);
    }
}

#[test]
fn one_key_in_two_encodings_is_one_key() {
    let pkcs8 = SigningKey::from_pem(ES256_PKCS8).unwrap();
    let sec1 = SigningKey::from_pem(ES256_SEC1).unwrap();
    assert_eq!(pkcs8.thumbprint(), sec1.thumbprint());
    let pkcs8 = SigningKey::from_pem(RS256_PKCS8).unwrap();
    let pkcs1 = SigningKey::from_pem(RS256_PKCS1).unwrap();
    assert_eq!(pkcs8.thumbprint(), pkcs1.thumbprint());
}

#[test]
fn public_jwks_carry_the_public_members_only() {
    // x, y, n and e as openssl prints them (tests/keys/*.jwk.json).
    for (pem, private) in [
        (ES256_PKCS8, jwk(ES256_JWK)),
        (RS256_PKCS8, jwk(RS256_JWK)),
        (ED25519_PKCS8, jwk(ED25519_JWK)),
    ] {
        let key = SigningKey::from_pem(pem).unwrap();
        let public = key.public_jwk();
        let public = public.as_object().unwrap();
        let members: &[&str] = match key.algorithm() {
            Algorithm::Es256 => &["kty", "crv", "x", "y"],
            Algorithm::EdDsa => &["kty", "crv", "x"],
            _ => &["kty", "n", "e"],
        };
        for member in members {
            assert_eq!(public[*member], private[*member], "{member}");
        }
        assert_eq!(public["use"], "sig");
        assert_eq!(public["alg"], key.algorithm().as_str());
        assert!(public.get("kid").is_none());
        assert_eq!(public.len(), members.len() + 2, "{public:?}");
    }
}

#[test]
fn thumbprints_hash_the_required_members_in_order() {
    let key = SigningKey::from_pem(ES256_PKCS8).unwrap();
    let private = jwk(ES256_JWK);
    let canonical = format!(
        r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#,
        private["x"].as_str().unwrap(),
        private["y"].as_str().unwrap()
    );
    let digest = ring::digest::digest(&ring::digest::SHA256, canonical.as_bytes());
    assert_eq!(key.thumbprint(), base64url(digest.as_ref()));
}

#[test]
fn key_ids_reach_the_jwk_and_the_header() {
    let key = SigningKey::generate(Algorithm::Es256)
        .unwrap()
        .with_key_id("k-1");
    assert_eq!(key.key_id(), Some("k-1"));
    assert_eq!(key.public_jwk()["kid"], "k-1");
    let jws = sign(&key, Some("JWT"), &json!({"sub": "me"})).unwrap();
    let (header, claims) = verify(&jws, &key.public_jwk()).unwrap();
    assert_eq!(header, json!({"alg": "ES256", "typ": "JWT", "kid": "k-1"}));
    assert_eq!(claims, json!({"sub": "me"}));
    let without = sign(
        &SigningKey::generate(Algorithm::EdDsa).unwrap(),
        None,
        &json!({}),
    );
    let header = without.unwrap();
    let header = UnverifiedJws::decode(&header).unwrap().header().clone();
    assert_eq!(Value::Object(header), json!({"alg": "EdDSA"}));
}

#[test]
fn refused_pem_keys_say_why() {
    assert_eq!(
        kind(SigningKey::from_pem(ES384_PKCS8)),
        KeyErrorKind::UnsupportedKeyType
    );
    assert_eq!(
        kind(SigningKey::from_pem(ES384_SEC1)),
        KeyErrorKind::UnsupportedKeyType
    );
    assert_eq!(
        kind(SigningKey::from_pem(ES256_ENCRYPTED)),
        KeyErrorKind::Encrypted
    );
    assert_eq!(
        kind(SigningKey::from_pem(ES256_SEC1_NO_PUBLIC)),
        KeyErrorKind::MissingPublicKey
    );
    assert!(matches!(
        kind(SigningKey::from_pem(RSA1024_PKCS8)),
        KeyErrorKind::Rejected(_)
    ));
    assert_eq!(
        kind(SigningKey::from_pem("no PEM here")),
        KeyErrorKind::NoPrivateKey
    );
    let broken = ES256_PKCS8.replace("MIGHAgEAMBMG", "MIGHAg!!MBMG");
    assert_eq!(
        kind(SigningKey::from_pem(broken)),
        KeyErrorKind::MalformedPem
    );
    // A well-formed block whose DER is not a key.
    let not_a_key = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";
    assert!(matches!(
        kind(SigningKey::from_pem(not_a_key)),
        KeyErrorKind::Rejected(_)
    ));
}

#[test]
fn generated_keys_are_new_each_time_and_rsa_is_not_generated() {
    for algorithm in [Algorithm::Es256, Algorithm::EdDsa] {
        let one = SigningKey::generate(algorithm).unwrap();
        let two = SigningKey::generate(algorithm).unwrap();
        assert_eq!(one.algorithm(), algorithm);
        assert_ne!(one.thumbprint(), two.thumbprint());
    }
    assert_eq!(
        kind(SigningKey::generate(Algorithm::Rs256)),
        KeyErrorKind::CannotGenerate(Algorithm::Rs256)
    );
}

#[test]
fn private_jwks_load_as_the_same_keys() {
    for (text, pem) in [
        (ES256_JWK, ES256_PKCS8),
        (RS256_JWK, RS256_PKCS8),
        (ED25519_JWK, ED25519_PKCS8),
    ] {
        let from_jwk = SigningKey::from_jwk(text).unwrap();
        let from_pem = SigningKey::from_pem(pem).unwrap();
        assert_eq!(from_jwk.thumbprint(), from_pem.thumbprint());
        let jws = sign(&from_jwk, None, &json!({})).unwrap();
        verify(&jws, &from_pem.public_jwk()).unwrap();
    }
    assert_eq!(
        SigningKey::from_jwk(ES256_JWK).unwrap().key_id(),
        Some("es256-test")
    );
}

#[test]
fn refused_private_jwks_say_why() {
    let mut public = jwk(ES256_JWK);
    public.as_object_mut().unwrap().remove("d");
    assert_eq!(
        kind(SigningKey::from_jwk(&public.to_string())),
        KeyErrorKind::InvalidJwk("no d (a public JWK was given)")
    );
    let mut wrong_alg = jwk(ES256_JWK);
    wrong_alg["alg"] = "RS256".into();
    assert!(matches!(
        kind(SigningKey::from_jwk(&wrong_alg.to_string())),
        KeyErrorKind::InvalidJwk(_)
    ));
    // d of another key: the public members do not match it.
    let mut mismatched = jwk(ES256_JWK);
    mismatched["x"] = jwk(ED25519_JWK)["x"].clone();
    assert!(matches!(
        kind(SigningKey::from_jwk(&mismatched.to_string())),
        KeyErrorKind::Rejected(_)
    ));
    assert_eq!(
        kind(SigningKey::from_jwk(r#"{"kty":"oct","k":"AAAA"}"#)),
        KeyErrorKind::UnsupportedKeyType
    );
    assert!(matches!(
        kind(SigningKey::from_jwk("[1, 2]")),
        KeyErrorKind::InvalidJwk(_)
    ));
}

#[test]
fn every_algorithm_signs_what_its_public_jwk_verifies() {
    let keys = [
        SigningKey::generate(Algorithm::Es256).unwrap(),
        SigningKey::generate(Algorithm::EdDsa).unwrap(),
        SigningKey::from_pem(RS256_PKCS1).unwrap(),
    ];
    for key in &keys {
        let claims = json!({"iss": "client", "n": 1});
        let jws = sign(key, Some("JWT"), &claims).unwrap();
        assert_eq!(jws.split('.').count(), 3);
        let (header, verified) = verify(&jws, &key.public_jwk()).unwrap();
        assert_eq!(header["alg"], key.algorithm().as_str());
        assert_eq!(verified, claims);
        for other in keys.iter().filter(|k| k.thumbprint() != key.thumbprint()) {
            assert!(verify(&jws, &other.public_jwk()).is_err());
        }
    }
}

/// A JWS with this header and claims, signed by `key` whatever the header says.
fn forge(key: &SigningKey, header: Value, claims: Value) -> String {
    sign_with_header(key, &header, &claims).unwrap()
}

#[test]
fn verification_refuses_none_hmac_confusion_tampering_and_junk() {
    let ec = SigningKey::generate(Algorithm::Es256).unwrap();
    let public = ec.public_jwk();
    let good = forge(&ec, json!({"alg": "ES256"}), json!({"a": 1}));
    assert!(verify(&good, &public).is_ok());

    for alg in ["none", "HS256", "ES384", "PS256"] {
        let jws = forge(&ec, json!({"alg": alg}), json!({"a": 1}));
        assert_eq!(
            verify(&jws, &public),
            Err(VerifyError::UnsupportedAlgorithm),
            "{alg}"
        );
    }
    let unsigned = format!("{}.", good.rsplit_once('.').unwrap().0);
    assert_eq!(verify(&unsigned, &public), Err(VerifyError::BadSignature));
    let no_alg = forge(&ec, json!({"typ": "JWT"}), json!({}));
    assert_eq!(
        verify(&no_alg, &public),
        Err(VerifyError::UnsupportedAlgorithm)
    );

    // The header names another kind of key than the one given: never verified.
    for alg in ["RS256", "EdDSA"] {
        let jws = forge(&ec, json!({"alg": alg}), json!({"a": 1}));
        assert_eq!(
            verify(&jws, &public),
            Err(VerifyError::AlgorithmMismatch),
            "{alg}"
        );
    }

    let (input, signature) = good.rsplit_once('.').unwrap();
    let (header, _) = input.split_once('.').unwrap();
    let tampered = format!("{header}.{}.{signature}", base64url(br#"{"a":2}"#));
    assert_eq!(verify(&tampered, &public), Err(VerifyError::BadSignature));

    for junk in ["", "a.b", "a.b.c", "e30.e30.***", "W10.e30.AA"] {
        assert_eq!(verify(junk, &public), Err(VerifyError::Malformed), "{junk}");
    }
    assert_eq!(
        verify(&good, &json!({"kty": "EC"})),
        Err(VerifyError::InvalidKey)
    );
}

/// No private key material in `Debug`, in the public JWK or in any error message.
#[test]
fn private_material_never_shows() {
    let secrets: Vec<String> = [ES256_JWK, RS256_JWK, ED25519_JWK]
        .iter()
        .flat_map(|text| {
            let private = jwk(text);
            ["d", "p", "q", "dp", "dq", "qi"]
                .iter()
                .filter_map(|m| private.get(*m).and_then(Value::as_str))
                .map(|s| s[..16].to_owned())
                .collect::<Vec<_>>()
        })
        .collect();
    let mut shown = Vec::new();
    for (pem, text) in [
        (ES256_PKCS8, ES256_JWK),
        (RS256_PKCS8, RS256_JWK),
        (ED25519_PKCS8, ED25519_JWK),
    ] {
        let key = SigningKey::from_pem(pem).unwrap().with_key_id("kid");
        shown.push(format!("{key:?} {key:#?} {}", key.public_jwk()));
        let key = SigningKey::from_jwk(text).unwrap();
        shown.push(format!("{key:?}"));
        // Refused variants of the key: their errors, Debug and Display.
        let mut mismatched = jwk(text);
        if mismatched["kty"] == "EC" {
            mismatched["x"] = mismatched["y"].clone();
        } else {
            mismatched["kty"] = "EC".into();
            mismatched["crv"] = "P-256".into();
        }
        let error = SigningKey::from_jwk(&mismatched.to_string()).unwrap_err();
        shown.push(format!("{error} {error:?}"));
        let error = SigningKey::from_pem(pem.replace('M', "!")).unwrap_err();
        shown.push(format!("{error} {error:?}"));
    }
    let pem_lines: Vec<&str> = [ES256_PKCS8, RS256_PKCS8, ED25519_PKCS8]
        .iter()
        .flat_map(|pem| pem.lines().filter(|l| !l.starts_with("-----")))
        .collect();
    for text in &shown {
        assert!(
            text.contains("thumbprint")
                || text.contains("invalid")
                || text.contains("PEM")
                || text.contains("kty"),
            "{text}"
        );
        for secret in &secrets {
            assert!(!text.contains(secret.as_str()), "{text} shows {secret}");
        }
        for line in &pem_lines {
            assert!(!text.contains(&line[..16]), "{text} shows PEM text");
        }
    }
}

#[test]
fn random_ids_are_128_bits_and_new_each_time() {
    let one = random_id();
    assert_eq!(one.len(), 22);
    assert_ne!(one, random_id());
}
