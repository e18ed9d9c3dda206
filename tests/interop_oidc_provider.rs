//! The interop fixture itself, checked with hand-made requests on hyper-util's client: that the
//! real authorization server (panva's oidc-provider) and its protected API behave as the
//! provider's interop tests will assume. Real time throughout: the server keeps its own clock.
//!
//! Runs under `cargo test --all-features` (feature `server-tests`); needs node and npm.

mod common;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use bytes::Bytes;
use http::header::WWW_AUTHENTICATE;
use http::{Method, Request, StatusCode};
use http_body_util::Full;
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use serde_json::{Value, json};

use common::oidc_provider::by_hand::{assertion_params, bearer, call, form_encode, get};
use common::oidc_provider::{BASIC, CLIENTS, JWT_ES256, JWT_RS256, OidcProvider, POST, TestClient};

/// A client-credentials token for `client`, which must be a bearer token.
async fn client_credentials(server: &OidcProvider, client: &TestClient) -> String {
    let answer = server
        .token_request(client, &[("grant_type", "client_credentials")], None)
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    assert_eq!(answer.text("token_type"), "Bearer");
    answer.text("access_token").to_owned()
}

// ===== DPoP proofs made by hand (RFC 9449 §4.2) =====

struct DpopKey {
    pair: EcdsaKeyPair,
    jwk: Value,
    rng: SystemRandom,
}

fn b64(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

impl DpopKey {
    fn generate() -> Self {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .unwrap();
        // An uncompressed point: 0x04, then x and y.
        let point = pair.public_key().as_ref();
        let jwk = json!({
            "kty": "EC",
            "crv": "P-256",
            "x": b64(&point[1..33]),
            "y": b64(&point[33..65]),
        });
        DpopKey { pair, jwk, rng }
    }

    fn proof(
        &self,
        htm: &str,
        htu: &str,
        access_token: Option<&str>,
        nonce: Option<&str>,
    ) -> String {
        let mut jti = [0; 16];
        self.rng.fill(&mut jti).unwrap();
        let iat = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let header = json!({ "typ": "dpop+jwt", "alg": "ES256", "jwk": self.jwk });
        let mut claims = json!({ "jti": b64(jti), "htm": htm, "htu": htu, "iat": iat });
        if let Some(token) = access_token {
            claims["ath"] = b64(ring::digest::digest(
                &ring::digest::SHA256,
                token.as_bytes(),
            ))
            .into();
        }
        if let Some(nonce) = nonce {
            claims["nonce"] = nonce.into();
        }
        let input = format!("{}.{}", b64(header.to_string()), b64(claims.to_string()));
        let signature = self.pair.sign(&self.rng, input.as_bytes()).unwrap();
        format!("{input}.{}", b64(signature))
    }
}

// ===== the tests =====

/// Both secret methods get a token the API accepts, and the fixture saw each method on the
/// wire; an id and secret sent without RFC 6749 §2.3.1's encoding are refused.
#[tokio::test]
async fn client_secret_basic_and_post() {
    let server = OidcProvider::start();
    for client in [BASIC, POST] {
        let token = client_credentials(&server, &client).await;
        let answer = bearer(&server.api_url(), &token).await;
        assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
        assert_eq!(answer.text("client_id"), client.id);
        assert_eq!(answer.text("aud"), server.resource());
    }

    let raw = format!("{}:{}", BASIC.id, BASIC.secret.unwrap());
    let authorization = format!("Basic {}", STANDARD.encode(raw));
    let form = "grant_type=client_credentials".to_owned();
    let refused = server.token_post(form, Some(authorization), None).await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{refused:?}");

    // oidc-provider takes a secret either way, whatever the client registered: only the
    // fixture's counts tell which way a client sent it.
    let pair = format!("{}:{}", POST.id, form_encode(POST.secret.unwrap()));
    let authorization = format!("Basic {}", STANDARD.encode(pair));
    let form = "grant_type=client_credentials".to_owned();
    let lenient = server.token_post(form, Some(authorization), None).await;
    assert_eq!(lenient.status, StatusCode::OK, "{lenient:?}");

    let stats = server.stats().await;
    assert_eq!(stats.grants("client_credentials"), 3, "{stats:?}");
    assert_eq!(stats.client_auth(BASIC.id, "client_secret_basic"), 1);
    assert_eq!(stats.client_auth(POST.id, "client_secret_post"), 1);
    assert_eq!(stats.client_auth(POST.id, "client_secret_basic"), 1);
    assert_eq!(stats.api_ok("Bearer"), 2);
}

/// `private_key_jwt` with ES256 and RS256 keys from `tests/keys/`, with assertions node signs;
/// the server refuses an assertion used twice.
#[tokio::test]
async fn private_key_jwt_es256_and_rs256() {
    let server = OidcProvider::start();
    for client in [JWT_ES256, JWT_RS256] {
        let token = client_credentials(&server, &client).await;
        assert_eq!(
            bearer(&server.api_url(), &token).await.status,
            StatusCode::OK
        );

        let assertion = server.client_assertion(&client).await;
        let mut form = form_urlencoded::Serializer::new(String::new());
        form.append_pair("grant_type", "client_credentials");
        form.extend_pairs(assertion_params(&client, &assertion));
        let form = form.finish();
        let once = server.token_post(form.clone(), None, None).await;
        assert_eq!(once.status, StatusCode::OK, "{once:?}");
        let twice = server.token_post(form, None, None).await;
        assert_eq!(twice.status, StatusCode::UNAUTHORIZED, "{twice:?}");
        assert_eq!(twice.text("error"), "invalid_client");
    }
    let stats = server.stats().await;
    assert_eq!(
        stats.client_auth(JWT_ES256.id, "private_key_jwt"),
        3,
        "{stats:?}"
    );
    assert_eq!(
        stats.client_auth(JWT_RS256.id, "private_key_jwt"),
        3,
        "{stats:?}"
    );
}

/// RFC 7009 revocation is the server's: the API refuses the revoked token at once.
#[tokio::test]
async fn a_revoked_token_is_refused_by_the_api() {
    let server = OidcProvider::start();
    let token = client_credentials(&server, &BASIC).await;
    assert_eq!(
        bearer(&server.api_url(), &token).await.status,
        StatusCode::OK
    );

    assert!(server.revoke(&token).await);

    let refused = bearer(&server.api_url(), &token).await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    let challenge = refused.header(WWW_AUTHENTICATE.as_str());
    assert!(
        challenge.starts_with("Bearer ") && challenge.contains(r#"error="invalid_token""#),
        "{challenge}"
    );
    let missing = get(&server.api_url(), None, None).await;
    assert_eq!(missing.status, StatusCode::UNAUTHORIZED);
    assert!(!server.revoke(&token).await, "a revoked token is not live");
    assert_eq!(server.stats().await.api_refused("invalid_token"), 1);
}

/// A token for the other API's audience is refused by this one, and the other way round.
#[tokio::test]
async fn each_api_wants_its_own_audience() {
    let server = OidcProvider::start();
    let answer = server
        .token_request(
            &POST,
            &[
                ("grant_type", "client_credentials"),
                ("resource", server.other_resource()),
            ],
            None,
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    let other = answer.text("access_token");
    assert_eq!(
        bearer(&server.other_api_url(), other).await.status,
        StatusCode::OK
    );
    assert_eq!(
        bearer(&server.api_url(), other).await.status,
        StatusCode::UNAUTHORIZED
    );

    let default = client_credentials(&server, &POST).await;
    assert_eq!(
        bearer(&server.api_url(), &default).await.status,
        StatusCode::OK
    );
    assert_eq!(
        bearer(&server.other_api_url(), &default).await.status,
        StatusCode::UNAUTHORIZED
    );
}

/// A real refresh token for every client; each refresh rotates it, and using a rotated one
/// again revokes the whole family, live access tokens included.
#[tokio::test]
async fn refresh_tokens_rotate_and_reuse_revokes_the_family() {
    let server = OidcProvider::start();
    for client in CLIENTS {
        let issued = server.refresh_token(&client).await;
        assert_eq!(issued.token_type, "Bearer");
        assert_eq!(
            bearer(&server.api_url(), &issued.access_token).await.status,
            StatusCode::OK,
            "{}",
            client.id
        );
    }

    let first = server.refresh_token(&POST).await;
    let refresh = [
        ("grant_type", "refresh_token"),
        ("refresh_token", first.refresh_token.as_str()),
    ];
    let rotated = server.token_request(&POST, &refresh, None).await;
    assert_eq!(rotated.status, StatusCode::OK, "{rotated:?}");
    assert_ne!(rotated.text("refresh_token"), first.refresh_token);
    let access = rotated.text("access_token");
    assert_eq!(
        bearer(&server.api_url(), access).await.status,
        StatusCode::OK
    );

    let reused = server.token_request(&POST, &refresh, None).await;
    assert_eq!(reused.status, StatusCode::BAD_REQUEST);
    assert_eq!(reused.text("error"), "invalid_grant");
    assert_eq!(
        bearer(&server.api_url(), access).await.status,
        StatusCode::UNAUTHORIZED
    );

    let stats = server.stats().await;
    assert_eq!(stats.grants("refresh_token"), 1, "{stats:?}");
    assert_eq!(stats.token_errors("refresh_token", "invalid_grant"), 1);
    assert_eq!(stats.grants_revoked(), 1);
    // The fixture's own authorization-code flows are not counted.
    assert_eq!(stats.grants("authorization_code"), 0);
}

/// A token dies when its lifetime ends, not a clock tolerance later.
#[tokio::test]
async fn a_token_dies_with_its_lifetime() {
    let server = OidcProvider::builder()
        .access_token_ttl(Duration::from_secs(1))
        .start();
    let answer = server
        .token_request(&BASIC, &[("grant_type", "client_credentials")], None)
        .await;
    assert_eq!(answer.json["expires_in"], 1);
    let token = answer.text("access_token");
    let issued = Instant::now();
    assert_eq!(
        bearer(&server.api_url(), token).await.status,
        StatusCode::OK
    );
    while bearer(&server.api_url(), token).await.status == StatusCode::OK {
        assert!(
            issued.elapsed() < Duration::from_secs(3),
            "the token outlived its lifetime"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Discovery: OpenID metadata naming the endpoints and DPoP; no RFC 8414 document, so a client
/// must fall back to the OpenID path.
#[tokio::test]
async fn discovery() {
    let server = OidcProvider::start();
    let get = |path: &str| {
        call(
            Request::builder()
                .method(Method::GET)
                .uri(format!("{}{path}", server.issuer()))
                .body(Full::new(Bytes::new()))
                .unwrap(),
        )
    };
    let metadata = get("/.well-known/openid-configuration").await;
    assert_eq!(metadata.status, StatusCode::OK);
    assert_eq!(metadata.text("issuer"), server.issuer());
    assert_eq!(metadata.text("token_endpoint"), server.token_endpoint());
    assert_eq!(
        metadata.text("revocation_endpoint"),
        server.revocation_endpoint()
    );
    assert_eq!(
        metadata.text("introspection_endpoint"),
        server.introspection_endpoint()
    );
    assert!(
        metadata.json["dpop_signing_alg_values_supported"]
            .as_array()
            .unwrap()
            .contains(&"ES256".into())
    );
    assert_eq!(
        get("/.well-known/oauth-authorization-server").await.status,
        StatusCode::NOT_FOUND
    );
}

/// DPoP with nonces, server side: the token endpoint demands its nonce and binds the token to
/// the proof's key; the API demands its own nonce, a proof per request from that key, and the
/// DPoP scheme; refresh tokens work with DPoP too.
#[tokio::test]
async fn dpop_with_nonces() {
    let server = OidcProvider::builder().require_dpop(true).start();
    let key = DpopKey::generate();
    let token_url = server.token_endpoint();
    let grant = [("grant_type", "client_credentials")];

    let no_proof = server.token_request(&BASIC, &grant, None).await;
    assert_eq!(no_proof.text("error"), "invalid_grant", "{no_proof:?}");
    let no_nonce = server
        .token_request(
            &BASIC,
            &grant,
            Some(key.proof("POST", &token_url, None, None)),
        )
        .await;
    assert_eq!(no_nonce.status, StatusCode::BAD_REQUEST);
    assert_eq!(no_nonce.text("error"), "use_dpop_nonce");
    let nonce = no_nonce.header("dpop-nonce").to_owned();
    assert!(!nonce.is_empty());
    let issued = server
        .token_request(
            &BASIC,
            &grant,
            Some(key.proof("POST", &token_url, None, Some(&nonce))),
        )
        .await;
    assert_eq!(issued.status, StatusCode::OK, "{issued:?}");
    assert_eq!(issued.text("token_type"), "DPoP");
    let token = issued.text("access_token");

    let url = server.api_url();
    let scheme = Some(format!("DPoP {token}"));
    let challenged = get(
        &url,
        scheme.clone(),
        Some(key.proof("GET", &url, Some(token), None)),
    )
    .await;
    assert_eq!(challenged.status, StatusCode::UNAUTHORIZED);
    assert!(
        challenged
            .header("www-authenticate")
            .contains(r#"error="use_dpop_nonce""#)
    );
    let api_nonce = challenged.header("dpop-nonce").to_owned();
    assert_ne!(api_nonce, nonce, "the API has nonces of its own");

    let proof = key.proof("GET", &url, Some(token), Some(&api_nonce));
    let accepted = get(&url, scheme.clone(), Some(proof.clone())).await;
    assert_eq!(accepted.status, StatusCode::OK, "{accepted:?}");
    assert_eq!(accepted.text("scheme"), "DPoP");
    let replayed = get(&url, scheme.clone(), Some(proof)).await;
    assert_eq!(replayed.status, StatusCode::UNAUTHORIZED);
    assert!(
        replayed
            .header("www-authenticate")
            .contains("invalid_dpop_proof")
    );
    let bad_proofs = [
        (
            "another method",
            key.proof("POST", &url, Some(token), Some(&api_nonce)),
        ),
        (
            "another URI",
            key.proof(
                "GET",
                &server.other_api_url(),
                Some(token),
                Some(&api_nonce),
            ),
        ),
        (
            "another token's hash",
            key.proof("GET", &url, Some("another"), Some(&api_nonce)),
        ),
    ];
    for (mismatch, proof) in bad_proofs {
        let refused = get(&url, scheme.clone(), Some(proof)).await;
        assert_eq!(refused.status, StatusCode::UNAUTHORIZED, "{mismatch}");
        assert!(
            refused
                .header("www-authenticate")
                .contains("invalid_dpop_proof"),
            "{mismatch}"
        );
    }
    // A thief holding the token but not the key.
    let thief = DpopKey::generate().proof("GET", &url, Some(token), Some(&api_nonce));
    let stolen = get(&url, scheme.clone(), Some(thief)).await;
    assert_eq!(stolen.status, StatusCode::UNAUTHORIZED);
    assert!(stolen.header("www-authenticate").contains("invalid_token"));
    // A bound token under the Bearer scheme, even with a good proof.
    let good_proof = key.proof("GET", &url, Some(token), Some(&api_nonce));
    let as_bearer = get(&url, Some(format!("Bearer {token}")), Some(good_proof)).await;
    assert_eq!(as_bearer.status, StatusCode::UNAUTHORIZED);
    let challenge = as_bearer.header("www-authenticate");
    assert!(
        challenge.starts_with("DPoP ") && challenge.contains("invalid_token"),
        "{challenge}"
    );

    let rotated = server.rotate_api_nonce().await;
    let stale = get(
        &url,
        scheme.clone(),
        Some(key.proof("GET", &url, Some(token), Some(&api_nonce))),
    )
    .await;
    assert_eq!(stale.header("dpop-nonce"), rotated);
    let fresh = get(
        &url,
        scheme,
        Some(key.proof("GET", &url, Some(token), Some(&rotated))),
    )
    .await;
    assert_eq!(fresh.status, StatusCode::OK);

    // The fixture's code exchange already did the token endpoint's nonce dance with its own
    // key; a confidential client's refresh token is not bound to it.
    let user = server.refresh_token(&BASIC).await;
    assert_eq!(user.token_type, "DPoP");
    let refresh = [
        ("grant_type", "refresh_token"),
        ("refresh_token", user.refresh_token.as_str()),
    ];
    let refreshed = server
        .token_request(
            &BASIC,
            &refresh,
            Some(key.proof("POST", &token_url, None, Some(&nonce))),
        )
        .await;
    assert_eq!(refreshed.status, StatusCode::OK, "{refreshed:?}");
    assert_eq!(refreshed.text("token_type"), "DPoP");

    let stats = server.stats().await;
    assert_eq!(
        stats.token_errors("client_credentials", "use_dpop_nonce"),
        1,
        "{stats:?}"
    );
    assert_eq!(stats.api_refused("use_dpop_nonce"), 2);
    assert_eq!(stats.api_ok("DPoP"), 2);
}
