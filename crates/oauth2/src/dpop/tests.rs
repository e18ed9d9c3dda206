use std::time::{SystemTime, UNIX_EPOCH};

use http::{Method, Uri};
use serde_json::{Value, json};

use super::error::{ProofError, ProofErrorKind};
use super::nonce::DpopNonce;
use super::proof::AccessTokenHash;
use super::*;
use crate::grant_proof::DpopSettings;
use crate::jose::{Algorithm, KeyError, SigningKey, UnverifiedJws, base64url};
use tower_bearer::proof::BindingKey;

fn uri(text: &str) -> Uri {
    text.parse().unwrap()
}

/// The header and claims of a proof, its signature checked with the header's own `jwk`.
fn open(proof: &http::HeaderValue) -> (Value, Value) {
    let text = proof.to_str().unwrap();
    let jws = UnverifiedJws::decode(text).unwrap();
    let key = crate::jose::PublicJwk::from_json(&jws.header()["jwk"], true).unwrap();
    jws.verify_with(&key).unwrap();
    (
        Value::Object(jws.header().clone()),
        Value::Object(jws.claims().clone()),
    )
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[test]
fn rfc9449_access_token_hash() {
    // RFC 9449 §7.1.
    let ath = AccessTokenHash::of("Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU");
    assert_eq!(ath.as_str(), "fUHyO2r2Z3DZ53EsNrWBb0xWXoaNy59IiKCAqksmQEo");
}

#[test]
fn a_proof_carries_what_rfc9449_asks() {
    let key = DpopKey::generate(Algorithm::Es256).unwrap();
    let before = now();
    let proof = key
        .proof(
            &Method::GET,
            &uri("HTTPS://API.Example:443/v1/items?page=2"),
            Some("the-token"),
            Some("n-1"),
        )
        .unwrap();
    assert!(proof.is_sensitive());
    let (header, claims) = open(&proof);
    assert_eq!(header["typ"], "dpop+jwt");
    assert_eq!(header["alg"], "ES256");
    assert_eq!(
        header["jwk"],
        json!({
            "kty": "EC",
            "crv": "P-256",
            "x": key.public_jwk()["x"],
            "y": key.public_jwk()["y"],
        })
    );
    assert_eq!(header.as_object().unwrap().len(), 3);
    assert_eq!(claims["htm"], "GET");
    assert_eq!(claims["htu"], "https://api.example/v1/items");
    let iat = claims["iat"].as_u64().unwrap();
    assert!((before..=now()).contains(&iat), "{iat}");
    assert_eq!(claims["ath"], AccessTokenHash::of("the-token").as_str());
    assert_eq!(claims["nonce"], "n-1");
    // 22 base64url characters: 128 random bits.
    assert_eq!(claims["jti"].as_str().unwrap().len(), 22);
    assert_eq!(claims.as_object().unwrap().len(), 6);
}

#[test]
fn token_endpoint_proofs_have_no_ath_nor_nonce_unless_given() {
    let key = DpopKey::generate(Algorithm::EdDsa).unwrap();
    let proof = key
        .proof(&Method::POST, &uri("https://as.example/token"), None, None)
        .unwrap();
    let (header, claims) = open(&proof);
    assert_eq!(header["alg"], "EdDSA");
    assert_eq!(header["jwk"]["kty"], "OKP");
    assert!(claims.get("ath").is_none());
    assert!(claims.get("nonce").is_none());
    assert_eq!(claims["htm"], "POST");
}

#[test]
fn proofs_are_new_every_time() {
    let key = DpopKey::generate(Algorithm::Es256).unwrap();
    let target = uri("https://api.example/x");
    let proofs: Vec<_> = (0..50)
        .map(|_| key.proof(&Method::GET, &target, Some("t"), None).unwrap())
        .collect();
    let mut jtis: Vec<_> = proofs
        .iter()
        .map(|p| open(p).1["jti"].as_str().unwrap().to_owned())
        .collect();
    jtis.sort();
    jtis.dedup();
    assert_eq!(jtis.len(), proofs.len());
}

#[test]
fn the_header_is_encoded_once_per_key_and_shared_by_clones() {
    let key = DpopKey::generate(Algorithm::Es256).unwrap();
    let clone = key.clone();
    let header = |proof: http::HeaderValue| {
        proof
            .to_str()
            .unwrap()
            .split('.')
            .next()
            .unwrap()
            .to_owned()
    };
    let target = uri("https://api.example/x");
    let one = header(key.proof(&Method::GET, &target, None, None).unwrap());
    let two = header(clone.proof(&Method::PUT, &target, None, None).unwrap());
    assert_eq!(one, two);
    assert_eq!(one, key.inner_header());
}

#[test]
fn long_uris_and_nonces_still_make_proofs() {
    let key = DpopKey::generate(Algorithm::Es256).unwrap();
    let path = "/segment".repeat(200);
    let nonce = "n".repeat(1024);
    let target = uri(&format!("https://api.example{path}"));
    let proof = key
        .proof(&Method::GET, &target, Some("t"), Some(&nonce))
        .unwrap();
    let (_, claims) = open(&proof);
    assert_eq!(claims["htu"], format!("https://api.example{path}"));
    assert_eq!(claims["nonce"], nonce.as_str());
}

#[test]
fn proofs_for_rsa_keys_too() {
    let pem = include_str!("../../../../tests/keys/rs256.pkcs8.pem");
    let key = DpopKey::from_pem(pem).unwrap();
    let proof = key
        .proof(&Method::GET, &uri("https://api.example/"), None, None)
        .unwrap();
    let (header, _) = open(&proof);
    assert_eq!(header["alg"], "RS256");
    assert_eq!(header["jwk"]["kty"], "RSA");
}

#[test]
fn bad_input_is_a_typed_error() {
    let key = DpopKey::generate(Algorithm::Es256).unwrap();
    let error = key
        .proof(&Method::GET, &uri("/relative"), None, None)
        .unwrap_err();
    assert!(matches!(error.kind(), ProofErrorKind::NoOrigin));
    // Authority form (CONNECT's): a host, but no scheme to name.
    let error = key
        .proof(&Method::GET, &uri("api.example:443"), None, None)
        .unwrap_err();
    assert!(matches!(error.kind(), ProofErrorKind::NoOrigin));
    let target = uri("https://api.example/");
    for nonce in ["", "with space", "quote\"", "back\\slash"] {
        let error = key
            .proof(&Method::GET, &target, None, Some(nonce))
            .unwrap_err();
        assert!(
            matches!(error.kind(), ProofErrorKind::InvalidNonce),
            "{nonce}"
        );
    }
}

#[test]
fn keys_load_and_keep_their_thumbprint() {
    let pem = include_str!("../../../../tests/keys/es256.pkcs8.pem");
    let jwk = include_str!("../../../../tests/keys/es256.jwk.json");
    let from_pem = DpopKey::from_pem(pem).unwrap();
    let from_jwk = DpopKey::from_jwk(jwk).unwrap();
    let signing = SigningKey::from_pem(pem).unwrap();
    assert_eq!(from_pem.thumbprint(), signing.thumbprint());
    assert_eq!(from_jwk.thumbprint(), signing.thumbprint());
    assert_eq!(DpopKey::from(signing).algorithm(), Algorithm::Es256);
}

#[test]
fn debug_shows_no_private_key() {
    let jwk: Value =
        serde_json::from_str(include_str!("../../../../tests/keys/es256.jwk.json")).unwrap();
    let d = jwk["d"].as_str().unwrap();
    let key = DpopKey::from_jwk(&jwk.to_string()).unwrap();
    let shown = format!("{key:?} {key:#?}");
    assert!(shown.contains(key.thumbprint()), "{shown}");
    assert!(!shown.contains(&d[..12]), "{shown}");
    assert!(!shown.contains(&base64url(d.as_bytes())[..12]), "{shown}");
}

#[test]
fn the_layers_path_makes_the_same_proofs() {
    let key = DpopKey::generate(Algorithm::Es256).unwrap();
    let target = uri("https://api.example/v1?x");
    let ath = AccessTokenHash::of("the-token");
    let nonce = DpopNonce::new("n-1").unwrap();
    let proof = key
        .proof_for(&Method::DELETE, &target, Some(&ath), Some(&nonce))
        .unwrap();
    assert!(proof.is_sensitive());
    let (_, claims) = open(&proof);
    let (_, public) = open(
        &key.proof(&Method::DELETE, &target, Some("the-token"), Some("n-1"))
            .unwrap(),
    );
    for claim in ["htm", "htu", "ath", "nonce"] {
        assert_eq!(claims[claim], public[claim], "{claim}");
    }
    assert_ne!(claims["jti"], public["jti"]);
}

#[test]
fn errors_say_what_is_wrong_and_keep_their_cause() {
    use std::error::Error as _;
    let no_origin = ProofError::new(ProofErrorKind::NoOrigin);
    assert!(
        no_origin.to_string().contains("no scheme and host"),
        "{no_origin}"
    );
    assert!(no_origin.source().is_none());
    let nonce = ProofError::new(ProofErrorKind::InvalidNonce);
    assert!(nonce.to_string().contains("1*NQCHAR"), "{nonce}");
    assert!(nonce.source().is_none());
    let signing = ProofError::new(ProofErrorKind::Signing(KeyError::new(
        crate::jose::error::KeyErrorKind::Random,
    )));
    assert_eq!(signing.to_string(), "the DPoP proof could not be signed");
    let cause = signing.source().expect("the key's error is the source");
    assert_eq!(
        cause.to_string(),
        KeyError::new(crate::jose::error::KeyErrorKind::Random).to_string()
    );
}

#[test]
fn debug_output_names_the_key_and_the_nonce_and_no_token() {
    let key = DpopKey::generate(Algorithm::Es256).unwrap();
    let ath = AccessTokenHash::of("the-token");
    assert_eq!(
        format!("{ath:?}"),
        format!("AccessTokenHash({:?})", ath.as_str())
    );
    let nonce = DpopNonce::new("n-1").unwrap();
    assert_eq!(format!("{nonce:?}"), r#"DpopNonce("n-1")"#);
    let binding = key.bind("the-token");
    let shown = format!("{binding:?}");
    assert!(shown.starts_with("Binding"), "{shown}");
    assert!(shown.contains(key.thumbprint()), "{shown}");
    assert!(!shown.contains("the-token"), "{shown}");
    let settings = DpopSettings {
        key: key.clone(),
        allow_bearer_downgrade: true,
    };
    let shown = format!("{settings:?}");
    assert!(shown.contains(key.thumbprint()), "{shown}");
    assert!(shown.contains("allow_bearer_downgrade: true"), "{shown}");
}
