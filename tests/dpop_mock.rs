//! The mock authorization server's DPoP, by hand-made requests: why DPoP matters (a stolen
//! bearer token works for the thief, a stolen DPoP token does not), and each check of a
//! proof at the token endpoint and at the API, with its challenge and its counter.

mod common;

use bytes::Bytes;
use common::dpop;
use http::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use http::{HeaderValue, Method, Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use tower_bearer_mock::oauth2::{DpopRefusals, MockAuthServer};
use tower_bearer_oauth2::dpop::DpopKey;

/// What came back.
struct Answer {
    status: StatusCode,
    challenge: String,
    nonce: Option<String>,
    json: Value,
}

async fn send(request: Request<Full<Bytes>>) -> Answer {
    let client = Client::builder(TokioExecutor::new()).build_http();
    let response: Response<_> = client.request(request).await.unwrap();
    let header = |name| {
        response
            .headers()
            .get(name)
            .map(|v: &HeaderValue| v.to_str().unwrap().to_owned())
    };
    let (challenge, nonce) = (header(WWW_AUTHENTICATE.as_str()), header("dpop-nonce"));
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    Answer {
        status,
        challenge: challenge.unwrap_or_default(),
        nonce,
        json: serde_json::from_slice(&body).unwrap_or(Value::Null),
    }
}

/// A GET of `uri` with `authorization` and, if any, `proof`.
async fn call(uri: &Uri, authorization: &str, proof: Option<HeaderValue>) -> Answer {
    let mut request = Request::get(uri.clone()).header(AUTHORIZATION, authorization);
    if let Some(proof) = proof {
        request = request.header("dpop", proof);
    }
    send(request.body(Full::default()).unwrap()).await
}

/// A client-credentials token with the default client, proved with `key` (and `nonce`) if
/// given: the token answer's JSON.
async fn grant(server: &MockAuthServer, key: Option<&DpopKey>, nonce: Option<&str>) -> Answer {
    let mut request = Request::post(server.token_endpoint())
        .header(AUTHORIZATION, "Basic bW9jay1jbGllbnQ6bW9jay1zZWNyZXQ=")
        .header("content-type", "application/x-www-form-urlencoded");
    if let Some(key) = key {
        let endpoint: Uri = server.token_endpoint().parse().unwrap();
        request = request.header(
            "dpop",
            key.proof(&Method::POST, &endpoint, None, nonce).unwrap(),
        );
    }
    send(
        request
            .body(Full::from("grant_type=client_credentials"))
            .unwrap(),
    )
    .await
}

/// A stolen bearer token works from anywhere. A stolen DPoP token does not: not without a
/// proof, not with a proof from the thief's own key, not sent as a bearer token; only the
/// holder of the key can use it, and only once per proof.
#[tokio::test]
async fn a_stolen_dpop_token_is_worthless_without_the_key() {
    let server = MockAuthServer::builder()
        .require_dpop_nonce(true)
        .start()
        .await
        .unwrap();
    let api: Uri = server.uri_for("/api/accounts").parse().unwrap();

    let bearer = grant(&server, None, None).await;
    assert_eq!(bearer.json["token_type"], "Bearer");
    let stolen = bearer.json["access_token"].as_str().unwrap();
    let thief = call(&api, &format!("Bearer {stolen}"), None).await;
    assert_eq!(
        thief.status,
        StatusCode::OK,
        "a bearer token works for whoever holds it"
    );

    let key = dpop::key();
    let challenged = grant(&server, Some(&key), None).await;
    assert_eq!(challenged.status, StatusCode::BAD_REQUEST);
    assert_eq!(challenged.json["error"], "use_dpop_nonce");
    let nonce = challenged.nonce.unwrap();
    let issued = grant(&server, Some(&key), Some(&nonce)).await;
    assert_eq!(issued.json["token_type"], "DPoP", "{:?}", issued.json);
    let token = issued.json["access_token"].as_str().unwrap();
    let scheme = format!("DPoP {token}");
    let proof = |key: &DpopKey| {
        Some(
            key.proof(&Method::GET, &api, Some(token), Some(&nonce))
                .unwrap(),
        )
    };

    let no_proof = call(&api, &scheme, None).await;
    assert_eq!(no_proof.status, StatusCode::UNAUTHORIZED);
    assert!(
        no_proof.challenge.contains(r#"error="invalid_dpop_proof""#),
        "{}",
        no_proof.challenge
    );

    let another_key = call(&api, &scheme, proof(&dpop::key())).await;
    assert_eq!(another_key.status, StatusCode::UNAUTHORIZED);
    assert!(
        another_key.challenge.starts_with("DPoP ")
            && another_key.challenge.contains(r#"error="invalid_token""#),
        "{}",
        another_key.challenge
    );

    let as_bearer = call(&api, &format!("Bearer {token}"), proof(&key)).await;
    assert_eq!(as_bearer.status, StatusCode::UNAUTHORIZED);
    assert!(as_bearer.challenge.contains(r#"error="invalid_token""#));

    let own = proof(&key);
    let owner = call(&api, &scheme, own.clone()).await;
    assert_eq!(owner.status, StatusCode::OK, "{:?}", owner.json);
    assert_eq!(
        owner.nonce.as_deref(),
        Some(nonce.as_str()),
        "every answer carries the nonce"
    );
    let replayed = call(&api, &scheme, own).await;
    assert_eq!(replayed.status, StatusCode::UNAUTHORIZED);
    assert!(replayed.challenge.contains("invalid_dpop_proof"));

    let counters = server.counters();
    let mut expected = DpopRefusals::default();
    expected.missing_proof = 1;
    expected.key_mismatch = 1;
    expected.bearer_scheme = 1;
    expected.replayed = 1;
    assert_eq!(counters.dpop_refused, expected);
    assert_eq!(counters.dpop_resource_requests, 1);
    assert_eq!(counters.token_nonce_challenges, 1);
}

/// The API's nonce challenge names the scheme and the algorithms, and carries the nonce; a
/// proof for another method or URI, or for another token, is refused as a bad proof.
#[tokio::test]
async fn the_api_checks_each_proof_against_its_request() {
    let server = MockAuthServer::builder()
        .require_dpop_nonce(true)
        .start()
        .await
        .unwrap();
    let key = dpop::key();
    let nonce = grant(&server, Some(&key), None).await.nonce.unwrap();
    let token = grant(&server, Some(&key), Some(&nonce)).await.json["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let api: Uri = server.uri_for("/api/items").parse().unwrap();
    let scheme = format!("DPoP {token}");

    let challenged = call(
        &api,
        &scheme,
        Some(key.proof(&Method::GET, &api, Some(&token), None).unwrap()),
    )
    .await;
    assert_eq!(challenged.status, StatusCode::UNAUTHORIZED);
    assert!(
        challenged
            .challenge
            .starts_with(r#"DPoP algs="ES256 EdDSA RS256", error="use_dpop_nonce""#),
        "{}",
        challenged.challenge
    );
    assert_eq!(challenged.nonce.as_deref(), Some(nonce.as_str()));

    let other_uri: Uri = server.uri_for("/api/other").parse().unwrap();
    let bad = [
        key.proof(&Method::POST, &api, Some(&token), Some(&nonce)),
        key.proof(&Method::GET, &other_uri, Some(&token), Some(&nonce)),
        key.proof(&Method::GET, &api, Some("another-token"), Some(&nonce)),
    ];
    for proof in bad {
        let refused = call(&api, &scheme, Some(proof.unwrap())).await;
        assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
        assert!(refused.challenge.contains(r#"error="invalid_dpop_proof""#));
    }
    let counters = server.counters();
    assert_eq!(counters.resource_nonce_challenges, 1);
    let mut expected = DpopRefusals::default();
    expected.method = 1;
    expected.uri = 1;
    expected.access_token_hash = 1;
    assert_eq!(counters.dpop_refused, expected);
}

/// With `require_dpop`, a token request without a proof is refused; a server whose nonce
/// changes by itself keeps accepting the one before until the next change.
#[tokio::test(start_paused = true)]
async fn required_proofs_and_nonces_that_change_with_time() {
    let server = MockAuthServer::builder()
        .require_dpop(true)
        .require_dpop_nonce(true)
        .dpop_nonce_ttl(std::time::Duration::from_secs(60))
        .start()
        .await
        .unwrap();
    let missing = grant(&server, None, None).await;
    assert_eq!(missing.status, StatusCode::BAD_REQUEST);
    assert_eq!(missing.json["error"], "invalid_dpop_proof");
    assert_eq!(server.counters().dpop_refused.missing_proof, 1);

    let key = dpop::key();
    let first = grant(&server, Some(&key), None).await.nonce.unwrap();
    tokio::time::advance(std::time::Duration::from_secs(61)).await;
    let answer = grant(&server, Some(&key), Some(&first)).await;
    assert_eq!(
        answer.status,
        StatusCode::OK,
        "the previous nonce is still good"
    );
    let second = answer.nonce.unwrap();
    assert_ne!(first, second, "the answer carries the new one");
    tokio::time::advance(std::time::Duration::from_secs(61)).await;
    let stale = grant(&server, Some(&key), Some(&first)).await;
    assert_eq!(stale.json["error"], "use_dpop_nonce");
    assert_eq!(server.counters().token_nonce_challenges, 2);
}
