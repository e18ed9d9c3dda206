//! Every check, each with a proof that differs from a good one in exactly that point.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{Method, Uri};
use serde_json::{Value, json};

use super::*;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use tower_bearer_oauth2::dpop::DpopKey;
use tower_bearer_oauth2::jose::{self, Algorithm, SigningKey};

const NOW: u64 = 1_800_000_000;
const WINDOW: u64 = 60;
const TOKEN: &str = "token-1";

fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

fn target() -> Uri {
    "https://rs.example/api/items?page=2".parse().unwrap()
}

fn context<'a>(uri: &'a Uri, nonces: &'a [&'a str]) -> ProofContext<'a> {
    ProofContext {
        method: &Method::GET,
        uri,
        access_token: Some(TOKEN),
        nonces,
        now: at(NOW),
    }
}

/// A `jti` no other proof of the test run has.
fn random_id() -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    format!(
        "jti-{}",
        NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    )
}

fn verifier() -> ProofVerifier {
    ProofVerifier::new(Duration::from_secs(WINDOW), 1000)
}

fn header(key: &SigningKey) -> Value {
    json!({
        "typ": "dpop+jwt",
        "alg": key.algorithm().as_str(),
        "jwk": key.public_jwk(),
    })
}

fn claims() -> Value {
    json!({
        "jti": random_id(),
        "htm": "GET",
        "htu": "https://rs.example/api/items",
        "iat": NOW,
        "ath": access_token_hash(TOKEN),
        "nonce": "n-current",
    })
}

fn forge(key: &SigningKey, header: &Value, claims: &Value) -> String {
    jose::sign_with_header(key, header, claims).unwrap()
}

/// A good proof with one change to its header or claims, checked by a fresh verifier
/// against the default request.
fn check(
    change: impl FnOnce(&SigningKey, &mut Value, &mut Value),
) -> Result<String, ProofRejection> {
    let key = SigningKey::generate(Algorithm::Es256).unwrap();
    let (mut header, mut claims) = (header(&key), claims());
    change(&key, &mut header, &mut claims);
    let uri = target();
    verifier().verify(
        &forge(&key, &header, &claims),
        &context(&uri, &["n-current", "n-previous"]),
    )
}

fn unchanged(_: &SigningKey, _: &mut Value, _: &mut Value) {}

#[test]
fn a_good_proof_passes_and_names_its_key() {
    let key = SigningKey::generate(Algorithm::Es256).unwrap();
    let uri = target();
    let proof = forge(&key, &header(&key), &claims());
    let thumbprint = verifier().verify(&proof, &context(&uri, &["n-current"]));
    assert_eq!(thumbprint.as_deref(), Ok(key.thumbprint()));
    assert!(check(unchanged).is_ok());
}

#[test]
fn the_client_proofs_pass() {
    let key = DpopKey::from(SigningKey::generate(Algorithm::EdDsa).unwrap());
    let uri = target();
    let proof = key
        .proof(&Method::GET, &uri, Some(TOKEN), Some("n-current"))
        .unwrap();
    let context = ProofContext {
        now: SystemTime::now(),
        ..context(&uri, &["n-current"])
    };
    let thumbprint = verifier().verify(proof.to_str().unwrap(), &context);
    assert_eq!(thumbprint.as_deref(), Ok(key.thumbprint()));
}

/// RFC 9449 figure 13 (§7.1), and the `jkt` of §6.1: a proof no one here wrote.
#[test]
fn the_rfc9449_example_passes() {
    const PROOF: &str = "eyJ0eXAiOiJkcG9wK2p3dCIsImFsZyI6IkVTMjU2IiwiandrIjp7Imt0eSI6IkVDIiwieCI6Imw4dEZyaHgtMzR0VjNoUklDUkRZOXpDa0RscEJoRjQyVVFVZldWQVdCRnMiLCJ5IjoiOVZFNGpmX09rX282NHpiVFRsY3VOSmFqSG10NnY5VERWclUwQ2R2R1JEQSIsImNydiI6IlAtMjU2In19.eyJqdGkiOiJlMWozVl9iS2ljOC1MQUVCIiwiaHRtIjoiR0VUIiwiaHR1IjoiaHR0cHM6Ly9yZXNvdXJjZS5leGFtcGxlLm9yZy9wcm90ZWN0ZWRyZXNvdXJjZSIsImlhdCI6MTU2MjI2MjYxOCwiYXRoIjoiZlVIeU8ycjJaM0RaNTNFc05yV0JiMHhXWG9hTnk1OUlpS0NBcWtzbVFFbyJ9.2oW9RP35yRqzhrtNP86L-Ey71EOptxRimPPToA1plemAgR6pxHF8y6-yqyVnmcw6Fy1dqd-jfxSYoMxhAJpLjA";
    let uri: Uri = "https://resource.example.org/protectedresource"
        .parse()
        .unwrap();
    let context = ProofContext {
        method: &Method::GET,
        uri: &uri,
        access_token: Some("Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU"),
        nonces: &[],
        now: at(1_562_262_618),
    };
    assert_eq!(
        verifier().verify(PROOF, &context).as_deref(),
        Ok("0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I")
    );
}

#[test]
fn not_a_jws() {
    let uri = target();
    for junk in ["", "a.b", "not.a.jws", "e30.e30"] {
        assert_eq!(
            verifier().verify(junk, &context(&uri, &[])),
            Err(ProofRejection::Malformed),
            "{junk}"
        );
    }
}

#[test]
fn typ() {
    assert_eq!(
        check(|_, h, _| h["typ"] = "JWT".into()),
        Err(ProofRejection::Type)
    );
    assert_eq!(
        check(|_, h, _| drop(h.as_object_mut().unwrap().remove("typ"))),
        Err(ProofRejection::Type)
    );
}

#[test]
fn alg() {
    for alg in ["none", "HS256", "ES384"] {
        assert_eq!(
            check(|_, h, _| h["alg"] = alg.into()),
            Err(ProofRejection::Algorithm),
            "{alg}"
        );
    }
    // The alg of another kind of key than the jwk's: no confusion.
    for alg in ["EdDSA", "RS256"] {
        assert_eq!(
            check(|_, h, _| h["alg"] = alg.into()),
            Err(ProofRejection::Algorithm),
            "{alg}"
        );
    }
}

#[test]
fn only_the_algorithms_a_server_lists() {
    let uri = target();
    let es256 = SigningKey::generate(Algorithm::Es256).unwrap();
    let eddsa = SigningKey::generate(Algorithm::EdDsa).unwrap();
    let verifier = verifier().with_algorithms(vec![Algorithm::EdDsa]);
    let refused = forge(&es256, &header(&es256), &claims());
    assert_eq!(
        verifier.verify(&refused, &context(&uri, &["n-current"])),
        Err(ProofRejection::Algorithm)
    );
    let accepted = forge(&eddsa, &header(&eddsa), &claims());
    assert!(
        verifier
            .verify(&accepted, &context(&uri, &["n-current"]))
            .is_ok()
    );
}

#[test]
fn jwk() {
    assert_eq!(
        check(|_, h, _| drop(h.as_object_mut().unwrap().remove("jwk"))),
        Err(ProofRejection::Key)
    );
    // A private key in the header.
    let private: Value =
        serde_json::from_str(include_str!("../../../../../tests/keys/es256.jwk.json")).unwrap();
    let pem = include_str!("../../../../../tests/keys/es256.pkcs8.pem");
    let key = SigningKey::from_pem(pem).unwrap();
    let uri = target();
    let mut with_d = header(&key);
    with_d["jwk"]["d"] = private["d"].clone();
    let proof = forge(&key, &with_d, &claims());
    assert_eq!(
        verifier().verify(&proof, &context(&uri, &["n-current"])),
        Err(ProofRejection::Key)
    );
    assert_eq!(
        check(|_, h, _| h["jwk"] = json!({"kty": "oct", "k": "c2VjcmV0"})),
        Err(ProofRejection::Key)
    );
}

#[test]
fn signature() {
    // The jwk of another key than the one that signed.
    let other = SigningKey::generate(Algorithm::Es256).unwrap();
    assert_eq!(
        check(|_, h, _| h["jwk"] = other.public_jwk()),
        Err(ProofRejection::Signature)
    );
    let key = SigningKey::generate(Algorithm::Es256).unwrap();
    let uri = target();
    let proof = forge(&key, &header(&key), &claims());
    let (input, signature) = proof.rsplit_once('.').unwrap();
    let (encoded_header, _) = input.split_once('.').unwrap();
    let mut changed = claims();
    changed["htm"] = "GET".into();
    let tampered = format!(
        "{encoded_header}.{}.{signature}",
        URL_SAFE_NO_PAD.encode(changed.to_string().as_bytes())
    );
    assert_eq!(
        verifier().verify(&tampered, &context(&uri, &["n-current"])),
        Err(ProofRejection::Signature)
    );
}

#[test]
fn htm() {
    assert_eq!(
        check(|_, _, c| c["htm"] = "POST".into()),
        Err(ProofRejection::Method)
    );
    assert_eq!(
        check(|_, _, c| c["htm"] = "get".into()),
        Err(ProofRejection::Method)
    );
    assert_eq!(
        check(|_, _, c| drop(c.as_object_mut().unwrap().remove("htm"))),
        Err(ProofRejection::Method)
    );
}

#[test]
fn htu() {
    for other in [
        "https://rs.example/api/other",
        "http://rs.example/api/items",
        "https://rs.example:8443/api/items",
        "https://evil.example/api/items",
        "/api/items",
    ] {
        assert_eq!(
            check(|_, _, c| c["htu"] = other.into()),
            Err(ProofRejection::Uri),
            "{other}"
        );
    }
    assert_eq!(
        check(|_, _, c| drop(c.as_object_mut().unwrap().remove("htu"))),
        Err(ProofRejection::Uri)
    );
    // The same URI, written otherwise: compared normalised, query ignored.
    for same in [
        "HTTPS://RS.EXAMPLE:443/api/items",
        "https://rs.example/api/%69tems",
        "https://rs.example/api/./items",
        "https://rs.example/api/items?page=3",
    ] {
        assert!(check(|_, _, c| c["htu"] = same.into()).is_ok(), "{same}");
    }
}

#[test]
fn iat() {
    assert_eq!(
        check(|_, _, c| drop(c.as_object_mut().unwrap().remove("iat"))),
        Err(ProofRejection::IssuedAt)
    );
    assert_eq!(
        check(|_, _, c| c["iat"] = NOW.to_string().into()),
        Err(ProofRejection::IssuedAt)
    );
    assert_eq!(
        check(|_, _, c| c["iat"] = (NOW - WINDOW - 1).into()),
        Err(ProofRejection::Stale)
    );
    assert!(check(|_, _, c| c["iat"] = (NOW - WINDOW).into()).is_ok());
    assert_eq!(
        check(|_, _, c| c["iat"] = (NOW + WINDOW + 1).into()),
        Err(ProofRejection::IssuedInFuture)
    );
    assert!(check(|_, _, c| c["iat"] = (NOW + WINDOW).into()).is_ok());
}

#[test]
fn jti() {
    assert_eq!(
        check(|_, _, c| drop(c.as_object_mut().unwrap().remove("jti"))),
        Err(ProofRejection::MissingJti)
    );
    assert_eq!(
        check(|_, _, c| c["jti"] = "".into()),
        Err(ProofRejection::MissingJti)
    );
    assert_eq!(
        check(|_, _, c| c["jti"] = 7.into()),
        Err(ProofRejection::MissingJti)
    );
}

#[test]
fn replay() {
    let key = SigningKey::generate(Algorithm::Es256).unwrap();
    let uri = target();
    let verifier = verifier();
    let good = context(&uri, &["n-current"]);
    let proof = forge(&key, &header(&key), &claims());
    // A refused proof does not use its jti up...
    let post = ProofContext {
        method: &Method::POST,
        ..good
    };
    assert_eq!(verifier.verify(&proof, &post), Err(ProofRejection::Method));
    assert!(verifier.verify(&proof, &good).is_ok());
    // ...an accepted one does.
    assert_eq!(
        verifier.verify(&proof, &good),
        Err(ProofRejection::Replayed)
    );
    // Another proof with the same jti, too.
    let mut same_jti = claims();
    same_jti["jti"] = forge_claims_jti(&proof).into();
    let again = forge(&key, &header(&key), &same_jti);
    assert_eq!(
        verifier.verify(&again, &good),
        Err(ProofRejection::Replayed)
    );
}

fn forge_claims_jti(proof: &str) -> String {
    let jws = tower_bearer_oauth2::jose::UnverifiedJws::decode(proof).unwrap();
    jws.claims()["jti"].as_str().unwrap().to_owned()
}

#[test]
fn jtis_are_forgotten_once_their_proofs_are_too_old_and_past_the_bound() {
    let key = SigningKey::generate(Algorithm::Es256).unwrap();
    let uri = target();
    let verifier = ProofVerifier::new(Duration::from_secs(WINDOW), 2);
    let proof_at = |jti: &str, iat: u64| {
        let mut claims = claims();
        claims["jti"] = jti.into();
        claims["iat"] = iat.into();
        forge(&key, &header(&key), &claims)
    };
    let at_time = |now: u64| ProofContext {
        now: at(now),
        ..context(&uri, &["n-current"])
    };
    assert!(verifier.verify(&proof_at("a", NOW), &at_time(NOW)).is_ok());
    let later = NOW + WINDOW + 1;
    assert_eq!(
        verifier.verify(&proof_at("a", later), &at_time(later)),
        Ok(key.thumbprint().to_owned()),
        "a is forgotten once a proof with it would be stale"
    );
    assert!(
        verifier
            .verify(&proof_at("b", later), &at_time(later))
            .is_ok()
    );
    assert_eq!(
        verifier.verify(&proof_at("b", later), &at_time(later)),
        Err(ProofRejection::Replayed)
    );
    // Capacity 2: c pushes out the oldest, a.
    assert!(
        verifier
            .verify(&proof_at("c", later), &at_time(later))
            .is_ok()
    );
    assert!(
        verifier
            .verify(&proof_at("a", later), &at_time(later))
            .is_ok()
    );
    assert!(verifier.seen.lock().unwrap().order.len() <= 2);
}

#[test]
fn ath() {
    assert_eq!(
        check(|_, _, c| drop(c.as_object_mut().unwrap().remove("ath"))),
        Err(ProofRejection::AccessTokenHash)
    );
    assert_eq!(
        check(|_, _, c| c["ath"] = access_token_hash("another-token").into()),
        Err(ProofRejection::AccessTokenHash)
    );
    // The token endpoint: no token presented, no ath checked.
    let key = SigningKey::generate(Algorithm::Es256).unwrap();
    let uri = target();
    let mut no_ath = claims();
    no_ath.as_object_mut().unwrap().remove("ath");
    let token_endpoint = ProofContext {
        access_token: None,
        ..context(&uri, &["n-current"])
    };
    assert!(
        verifier()
            .verify(&forge(&key, &header(&key), &no_ath), &token_endpoint)
            .is_ok()
    );
}

#[test]
fn nonce() {
    assert_eq!(
        check(|_, _, c| drop(c.as_object_mut().unwrap().remove("nonce"))),
        Err(ProofRejection::MissingNonce)
    );
    assert_eq!(
        check(|_, _, c| c["nonce"] = "n-old".into()),
        Err(ProofRejection::StaleNonce)
    );
    assert!(check(|_, _, c| c["nonce"] = "n-previous".into()).is_ok());
    // A server that requires none takes a proof without one.
    let key = SigningKey::generate(Algorithm::Es256).unwrap();
    let uri = target();
    let mut no_nonce = claims();
    no_nonce.as_object_mut().unwrap().remove("nonce");
    assert!(
        verifier()
            .verify(&forge(&key, &header(&key), &no_nonce), &context(&uri, &[]))
            .is_ok()
    );
}
