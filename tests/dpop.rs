//! DPoP end to end over loopback: the OAuth 2.0 provider with a DPoP key and the layer, against
//! the mock authorization server and its API requiring proofs and nonces. What every request
//! carried is recorded on the client's side of the wire.

mod common;

use std::collections::HashSet;

use bytes::Bytes;
use common::dpop::{self, Recording, Wire};
use http::{Request, StatusCode};
use http_body_util::Full;
use tower::{Layer, ServiceExt};
use tower_bearer::{
    BearerAuth, BearerAuthLayer, RefreshReason, Scope, TokenCache, TokenRequest, TokenType,
};
use tower_bearer_mock::oauth2::{Fault, MockAuthServer, MockClient};
use tower_bearer_oauth2::dpop::DpopKey;
use tower_bearer_oauth2::jose::Algorithm;
use tower_bearer_oauth2::{DiscoveryError, ErrorCode, Grant, MalformedAnswer, OAuth2, OAuth2Error};

/// A mock that requires DPoP, and its nonce, at the token endpoint and at the API.
async fn strict_server() -> MockAuthServer {
    MockAuthServer::builder()
        .require_dpop(true)
        .require_dpop_nonce(true)
        .start()
        .await
        .unwrap()
}

/// The API behind a layer fed by `provider`, every request recorded on `wire`.
fn api(cache: &TokenCache, server: &MockAuthServer, wire: &Wire) -> BearerAuth<Recording> {
    BearerAuthLayer::from_cache(
        cache.clone(),
        tower_bearer::Scope::origin(server.uri()).unwrap(),
    )
    .layer(wire.client())
}

async fn get(api: &BearerAuth<Recording>, server: &MockAuthServer) -> StatusCode {
    let request = Request::get(server.uri_for("/api/items?page=2"))
        .body(Full::<Bytes>::default())
        .unwrap();
    api.clone().oneshot(request).await.unwrap().status()
}

/// Every proof on the wire is a new one (`jti`s differ), and every request carried one.
fn assert_proofs_unique(wire: &Wire) {
    let sent = wire.sent();
    let jtis: Vec<String> = sent
        .iter()
        .map(|s| s.claims()["jti"].as_str().unwrap().to_owned())
        .collect();
    let unique: HashSet<&String> = jtis.iter().collect();
    assert_eq!(unique.len(), jtis.len(), "a proof sent twice: {sent:?}");
}

/// The first request to an origin meets its nonce challenge and recovers with one retry:
/// here the token endpoint's (`400 use_dpop_nonce`), in the same provider call; the API, on
/// the same origin, then needs none, since the provider and the layer share the key's
/// nonces. The token is DPoP-bound, and each proof names its request.
#[tokio::test]
async fn the_first_request_to_an_origin_meets_its_nonce_and_recovers_with_one_retry() {
    let server = strict_server().await;
    let key = dpop::key();
    let wire = Wire::default();
    let provider = dpop::provider(&server, &key).build(wire.client()).unwrap();
    let cache = TokenCache::new(provider);
    let api = api(&cache, &server, &wire);

    assert_eq!(get(&api, &server).await, StatusCode::OK);

    let counters = server.counters();
    assert_eq!(counters.token_requests, 2, "{counters:?}");
    assert_eq!(counters.token_nonce_challenges, 1);
    assert_eq!(counters.client_credentials_grants, 1);
    assert_eq!(counters.dpop_token_requests, 1);
    assert_eq!(counters.resource_nonce_challenges, 0);
    assert_eq!(counters.dpop_resource_requests, 1);
    assert_eq!(counters.dpop_refused, Default::default());

    let token = cache.token().await.unwrap();
    assert_eq!(token.token_type(), TokenType::Dpop);
    assert_eq!(token.binding_key().unwrap().id(), key.thumbprint());

    let posts = wire.to("/token");
    assert_eq!(posts.len(), 2);
    let (challenged, answered) = (posts[0].claims(), posts[1].claims());
    assert_eq!(challenged["htm"], "POST");
    assert_eq!(challenged["htu"], server.token_endpoint());
    assert!(challenged.get("nonce").is_none() && challenged.get("ath").is_none());
    let nonce = answered["nonce"]
        .as_str()
        .expect("the retry carries the nonce");
    let call = &wire.to("/api/items")[0];
    assert!(call.authorization.as_deref().unwrap().starts_with("DPoP "));
    let claims = call.claims();
    assert_eq!(claims["htm"], "GET");
    assert_eq!(claims["htu"], server.uri_for("/api/items"));
    assert_eq!(claims["nonce"], nonce, "the same origin's nonce");
    assert!(claims["ath"].is_string());
    assert_proofs_unique(&wire);
    assert_eq!(cache.stats().nonce_retried, 0);
}

/// A nonce rotated under a live token costs the next request one retry with the same token:
/// no refresh, no 401 for the caller.
#[tokio::test]
async fn a_rotated_nonce_costs_one_retry_not_a_refresh() {
    let server = strict_server().await;
    let wire = Wire::default();
    let provider = dpop::provider(&server, &dpop::key())
        .build(wire.client())
        .unwrap();
    let cache = TokenCache::new(provider);
    let api = api(&cache, &server, &wire);
    assert_eq!(get(&api, &server).await, StatusCode::OK);

    let rotated = server.rotate_dpop_nonce();
    assert_eq!(get(&api, &server).await, StatusCode::OK);

    let counters = server.counters();
    assert_eq!(counters.resource_nonce_challenges, 1, "{counters:?}");
    assert_eq!(counters.client_credentials_grants, 1, "no refresh");
    let stats = cache.stats();
    assert_eq!((stats.nonce_retried, stats.retried), (1, 0));
    assert_eq!(stats.total().started, 1);
    let calls = wire.to("/api/items");
    assert_eq!(calls.len(), 3);
    assert_eq!(
        calls[1].authorization, calls[2].authorization,
        "the same token"
    );
    assert_eq!(calls[2].claims()["nonce"], rotated);
    assert_proofs_unique(&wire);
}

/// A hundred requests in flight meet a new nonce together: each is sent again at most once,
/// with the same token; the token is never replaced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_concurrent_requests_meeting_a_new_nonce_cause_no_refresh() {
    let server = strict_server().await;
    let wire = Wire::default();
    let provider = dpop::provider(&server, &dpop::key())
        .build(wire.client())
        .unwrap();
    let cache = TokenCache::new(provider);
    let api = api(&cache, &server, &wire);
    assert_eq!(get(&api, &server).await, StatusCode::OK);

    server.rotate_dpop_nonce();
    let calls: Vec<_> = (0..100)
        .map(|_| {
            let (api, uri) = (api.clone(), server.uri_for("/api/items"));
            tokio::spawn(async move {
                let request = Request::get(uri).body(Full::<Bytes>::default()).unwrap();
                api.oneshot(request).await.unwrap().status()
            })
        })
        .collect();
    for call in calls {
        assert_eq!(call.await.unwrap(), StatusCode::OK);
    }

    let counters = server.counters();
    assert_eq!(counters.client_credentials_grants, 1, "0 refreshes");
    let stats = cache.stats();
    assert_eq!(stats.total().started, 1);
    assert_eq!(stats.retried, 0);
    assert!(
        (1..=100).contains(&stats.nonce_retried),
        "{}",
        stats.nonce_retried
    );
    assert_eq!(counters.resource_nonce_challenges, stats.nonce_retried);
    assert_eq!(
        wire.to("/api/items").len() as u64,
        101 + stats.nonce_retried
    );
    assert_proofs_unique(&wire);
}

/// The refresh-token grant does the nonce dance too, with a proof of its own: a nonce
/// rotated between two grants costs the refresh one retry, in the same call.
#[tokio::test]
async fn the_token_endpoints_nonce_dance_for_a_refresh() {
    let server = MockAuthServer::builder()
        .require_dpop(true)
        .require_dpop_nonce(true)
        .refresh_tokens(true)
        .start()
        .await
        .unwrap();
    let wire = Wire::default();
    let key = dpop::key();
    let provider = dpop::provider(&server, &key).build(wire.client()).unwrap();
    let first = provider
        .clone()
        .oneshot(TokenRequest::new(RefreshReason::Initial, None))
        .await
        .unwrap();
    assert!(first.expose_refresh_token().is_some());

    server.rotate_dpop_nonce();
    let refreshed = provider
        .oneshot(TokenRequest::new(RefreshReason::Expired, Some(first)))
        .await
        .unwrap();

    assert_eq!(refreshed.token_type(), TokenType::Dpop);
    let counters = server.counters();
    assert_eq!(counters.refresh_token_grants, 1, "{counters:?}");
    assert_eq!(counters.token_nonce_challenges, 2);
    assert_eq!(counters.token_requests, 4);
    let log = server.token_requests();
    let grants: Vec<(&str, u16)> = log
        .iter()
        .map(|entry| (entry.grant_type.as_str(), entry.status.as_u16()))
        .collect();
    assert_eq!(
        grants,
        [
            ("client_credentials", 400),
            ("client_credentials", 200),
            ("refresh_token", 400),
            ("refresh_token", 200),
        ]
    );
    assert_proofs_unique(&wire);
}

/// A public client's refresh tokens are bound to its key: the provider keeps the key, so its
/// refreshes work; the same refresh token with another key is refused.
#[tokio::test]
async fn a_public_clients_refresh_tokens_are_bound_to_its_key() {
    let server = MockAuthServer::builder()
        .register(MockClient::public("app"))
        .require_dpop(true)
        .start()
        .await
        .unwrap();
    let key = dpop::key();
    let public = |key: &DpopKey, refresh_token: String| {
        OAuth2::builder()
            .token_endpoint(server.token_endpoint())
            .client_id("app")
            .grant(Grant::refresh_token(refresh_token))
            .dpop(key.clone())
            .build(common::oauth2::http())
            .unwrap()
    };
    let provider = public(&key, server.issue_refresh_token("app"));
    let mut token = common::oauth2::first(&provider).await.unwrap();
    for _ in 0..2 {
        token = common::oauth2::next(&provider, &token).await.unwrap();
        assert_eq!(token.token_type(), TokenType::Dpop);
    }

    let thief = public(
        &dpop::key(),
        token.expose_refresh_token().unwrap().to_owned(),
    );
    let stolen = common::oauth2::first(&thief).await.unwrap_err();
    assert_eq!(
        stolen.error_response().map(|r| r.code()),
        Some(&ErrorCode::InvalidGrant),
        "{stolen:?}"
    );
    assert_eq!(server.counters().dpop_refused.key_mismatch, 1);
    // The owner's newest refresh token still works.
    assert!(common::oauth2::next(&provider, &token).await.is_ok());
}

/// A server that asks for a new nonce every time cannot loop the client: a token request
/// is sent twice at most, then the refusal is the answer; an API request too.
#[tokio::test]
async fn a_server_that_keeps_asking_for_new_nonces_gets_two_sends() {
    let server = strict_server().await;
    let provider = dpop::provider(&server, &dpop::key())
        .build(common::oauth2::http())
        .unwrap();
    server.fail_next_token_requests(10, Fault::UseDpopNonce);

    let refused = common::oauth2::first(&provider).await.unwrap_err();

    assert_eq!(
        refused.error_response().map(|r| r.code()),
        Some(&ErrorCode::UseDpopNonce),
        "{refused:?}"
    );
    assert!(!refused.is_permanent());
    assert_eq!(server.counters().token_requests, 2);

    let restless = dpop::RestlessApi::start().await;
    let key = dpop::key();
    let refresher = tower::service_fn(move |_: TokenRequest| {
        let token = tower_bearer::Token::bound("bound", &key);
        async move { token }
    });
    let wire = Wire::default();
    let api = BearerAuthLayer::new(refresher, Scope::any()).layer(wire.client());
    let request = Request::get(restless.uri())
        .body(Full::<Bytes>::default())
        .unwrap();
    let response = api.oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(restless.requests(), 2, "sent at most twice");
}

/// A server that ignores DPoP answers with a bearer token: refused unless the downgrade is
/// allowed, and then sent as a bearer token, without proofs.
#[tokio::test]
async fn a_bearer_downgrade_is_refused_unless_allowed() {
    let server = MockAuthServer::builder()
        .support_dpop(false)
        .start()
        .await
        .unwrap();
    let key = dpop::key();
    let strict = dpop::provider(&server, &key)
        .build(common::oauth2::http())
        .unwrap();
    let refused = common::oauth2::first(&strict).await.unwrap_err();
    assert!(
        matches!(
            refused,
            OAuth2Error::Malformed {
                error: MalformedAnswer::BearerDowngrade,
                ..
            }
        ),
        "{refused:?}"
    );

    let wire = Wire::default();
    let lenient = dpop::provider(&server, &key)
        .allow_bearer_downgrade(true)
        .build(wire.client())
        .unwrap();
    let cache = TokenCache::new(lenient);
    let api = api(&cache, &server, &wire);
    assert_eq!(get(&api, &server).await, StatusCode::OK);
    assert_eq!(cache.token().await.unwrap().token_type(), TokenType::Bearer);
    let call = &wire.to("/api/items")[0];
    assert!(
        call.authorization
            .as_deref()
            .unwrap()
            .starts_with("Bearer ")
    );
    assert_eq!(call.proof, None, "a bearer token carries no proof");
}

/// Discovery finds the algorithms the server accepts for proofs: a key of another one is a
/// configuration error, said on the first call, and permanent.
#[tokio::test]
async fn a_key_the_server_does_not_accept_is_a_configuration_error() {
    let server = MockAuthServer::builder()
        .dpop_algorithms([Algorithm::EdDsa])
        .start()
        .await
        .unwrap();
    let with_key = |algorithm| {
        OAuth2::builder()
            .issuer(server.issuer())
            .client_id(tower_bearer_mock::oauth2::DEFAULT_CLIENT_ID)
            .client_secret(tower_bearer_mock::oauth2::DEFAULT_CLIENT_SECRET)
            .dpop(DpopKey::generate(algorithm).unwrap())
            .build(common::oauth2::http())
            .unwrap()
    };
    let refused = common::oauth2::first(&with_key(Algorithm::Es256))
        .await
        .unwrap_err();
    match &refused {
        OAuth2Error::Discovery {
            error:
                DiscoveryError::DpopAlgorithm {
                    algorithm,
                    supported,
                },
            ..
        } => {
            assert_eq!(*algorithm, Algorithm::Es256);
            assert_eq!(supported, &["EdDSA"]);
        }
        other => panic!("{other:?}"),
    }
    assert!(refused.is_permanent());
    assert!(refused.to_string().contains("EdDSA"), "{refused}");
    assert_eq!(server.counters().token_requests, 0);

    let token = common::oauth2::first(&with_key(Algorithm::EdDsa))
        .await
        .unwrap();
    assert_eq!(token.token_type(), TokenType::Dpop);
}

/// Two caches sharing a `MemoryStore`, their providers with one key: one token for both,
/// bound to that key, and each request proved with it.
#[tokio::test]
async fn two_caches_sharing_a_store_and_a_key_use_one_token() {
    let server = strict_server().await;
    let key = dpop::key();
    let store = tower_bearer::store::MemoryStore::new();
    let wire = Wire::default();
    let replica = || {
        let provider = dpop::provider(&server, &key).build(wire.client()).unwrap();
        TokenCache::builder(provider).store(store.clone()).build()
    };
    let (one, two) = (replica(), replica());

    for cache in [&one, &two, &one, &two] {
        assert_eq!(
            get(&api(cache, &server, &wire), &server).await,
            StatusCode::OK
        );
    }

    assert_eq!(server.counters().client_credentials_grants, 1);
    let (a, b) = (one.token().await.unwrap(), two.token().await.unwrap());
    assert_eq!(a.expose_access_token(), b.expose_access_token());
    assert_eq!(b.binding_key().unwrap().id(), key.thumbprint());
    assert_eq!(server.counters().dpop_resource_requests, 4);
    assert_proofs_unique(&wire);
}

/// The DPoP key's private part and the tokens never show: not in what the provider, the
/// layer and the mock log (down to TRACE), not in any `Debug` of the builder, the provider,
/// the key or the token, not in the errors of a refused grant.
#[tokio::test]
async fn no_secret_in_logs_debug_or_errors() {
    let (captured, _guard) = common::capture_this_thread();
    let jwk = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/keys/es256.jwk.json"
    ))
    .unwrap();
    let private_d: String = serde_json::from_str::<serde_json::Value>(&jwk).unwrap()["d"]
        .as_str()
        .unwrap()
        .to_owned();
    let key = DpopKey::from_jwk(&jwk).unwrap();
    let server = strict_server().await;
    let wire = Wire::default();
    let builder = dpop::provider(&server, &key);
    let mut printed = format!("{builder:?} {key:?}");
    let provider = builder.build(wire.client()).unwrap();
    printed += &format!("{provider:?}");
    let cache = TokenCache::new(provider);
    let api = api(&cache, &server, &wire);
    assert_eq!(get(&api, &server).await, StatusCode::OK);
    server.rotate_dpop_nonce();
    assert_eq!(get(&api, &server).await, StatusCode::OK);
    let token = cache.token().await.unwrap();
    printed += &format!("{token:?} {:?}", cache.stats());

    server.fail_next_token_requests(2, Fault::UseDpopNonce);
    let refused = common::oauth2::first(
        &dpop::provider(&server, &key)
            .build(common::oauth2::http())
            .unwrap(),
    )
    .await
    .unwrap_err();
    printed += &common::describe(&refused);

    let logs = captured.text();
    assert!(
        logs.contains("DPoP nonce"),
        "the nonce retries are logged: {logs}"
    );
    for (what, secret) in [
        ("the private key", private_d.as_str()),
        ("the access token", token.expose_access_token()),
    ] {
        assert!(!logs.contains(secret), "{what} in the logs");
        assert!(!printed.contains(secret), "{what} printed: {printed}");
    }
    for sent in wire.sent() {
        assert!(!sent.proof.unwrap().contains(&private_d));
    }
}
