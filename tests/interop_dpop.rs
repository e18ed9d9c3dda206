//! DPoP against a real authorization server that nobody on this project wrote: panva's
//! oidc-provider (OpenID Certified), requiring DPoP with nonces at its token endpoint, and its
//! API (another origin) requiring proofs with nonces of its own. The provider with a DPoP key
//! and the layer, for client credentials and for a DPoP-bound refresh token; the fixture's
//! counters show each nonce challenge met and recovered.
//!
//! Runs under `cargo test --all-features` (feature `server-tests`); needs node
//! and npm. Real time throughout: the server keeps its own clock.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::oidc_provider::{BASIC, CodeFlow, OidcProvider, PUBLIC, TestClient};
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use tower::{Layer, ServiceExt};
use tower_bearer::{
    BearerAuthLayer, RefreshReason, ReplayBody, Scope, TokenCache, TokenRequest, TokenType,
};
use tower_bearer_oauth2::dpop::DpopKey;
use tower_bearer_oauth2::jose::Algorithm;
use tower_bearer_oauth2::{AuthMethod, Grant, OAuth2, OAuth2Builder};

#[path = "../examples/oauth2.rs"]
#[allow(dead_code)]
mod oauth2_example;

type Http = Client<HttpConnector, ReplayBody<Full<Bytes>>>;

fn http() -> Http {
    Client::builder(TokioExecutor::new()).build_http()
}

/// A provider for `client` with `key`, its token endpoint discovered from the issuer.
fn provider_for(server: &OidcProvider, client: &TestClient, key: &DpopKey) -> OAuth2Builder {
    let mut builder = OAuth2::builder()
        .issuer(server.issuer())
        .client_id(client.id)
        .auth_method(client.auth_method.parse::<AuthMethod>().unwrap())
        .resource(server.resource())
        .timeout(Duration::from_secs(10))
        .dpop(key.clone());
    if let Some(secret) = client.secret {
        builder = builder.client_secret(secret);
    }
    builder
}

/// A GET of the API through a layer fed by `cache`: the API's JSON about the token.
async fn call(server: &OidcProvider, cache: &TokenCache, client: &Http) -> Value {
    let api =
        BearerAuthLayer::from_cache(cache.clone(), Scope::origin(server.api_origin()).unwrap())
            .layer(client.clone());
    let request = Request::get(server.api_url())
        .body(Full::default())
        .unwrap();
    let response = api.oneshot(request).await.unwrap();
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(
        status,
        StatusCode::OK,
        "{}\n{}",
        String::from_utf8_lossy(&body),
        server.stderr()
    );
    serde_json::from_slice(&body).unwrap()
}

/// Client credentials with DPoP: the token endpoint's nonce dance (`400 use_dpop_nonce`, one
/// retry in the same call), a `DPoP` token bound to the key (`cnf.jkt`), accepted by the API
/// after its own nonce challenge (one retry by the layer, same token); a nonce the API
/// rotates costs one retry, and no new token.
#[tokio::test]
async fn client_credentials_with_dpop_and_required_nonces() {
    let server = OidcProvider::builder().require_dpop(true).start();
    let key = DpopKey::generate(Algorithm::Es256).unwrap();
    let client = http();
    let provider = provider_for(&server, &BASIC, &key)
        .build(client.clone())
        .unwrap();
    let cache = TokenCache::new(provider);

    for _ in 0..3 {
        let answer = call(&server, &cache, &client).await;
        assert_eq!(answer["scheme"], "DPoP", "{answer}");
        assert_eq!(answer["jkt"], key.thumbprint(), "{answer}");
    }
    assert_eq!(cache.token().await.unwrap().token_type(), TokenType::Dpop);
    server.rotate_api_nonce().await;
    call(&server, &cache, &client).await;

    let stats = server.stats().await;
    assert_eq!(
        stats.token_errors("client_credentials", "use_dpop_nonce"),
        1,
        "{stats:?}"
    );
    assert_eq!(stats.grants("client_credentials"), 1, "{stats:?}");
    assert_eq!(stats.dpop_token_requests(), 2, "{stats:?}");
    assert_eq!(stats.api_refused("use_dpop_nonce"), 2, "{stats:?}");
    assert_eq!(stats.api_ok("DPoP"), 4, "{stats:?}");
    assert_eq!(stats.access_tokens_sent_to_issuer(), 0, "{stats:?}");
    let cache_stats = cache.stats();
    assert_eq!(
        (cache_stats.nonce_retried, cache_stats.retried),
        (2, 0),
        "{cache_stats}"
    );
    assert_eq!(cache_stats.total().started, 1);
}

/// A public client's refresh token bound to a DPoP key in the authorization-code flow
/// (oidc-provider binds it, RFC 9449 §5): the provider, with the same key, refreshes it
/// with a proof each time (the first meeting the token endpoint's nonce), rotating it; the
/// tokens are DPoP-bound and the API accepts them; the same refresh token with another key
/// is refused.
#[tokio::test]
async fn a_dpop_bound_refresh_token_rotates_through_the_provider() {
    let server = OidcProvider::builder().require_dpop(true).start();
    let pem = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/keys/es256.pkcs8.pem"
    ))
    .unwrap();
    let issued = server
        .refresh_token_with(
            &PUBLIC,
            CodeFlow {
                dpop_key_pem: Some(&pem),
                ..CodeFlow::default()
            },
        )
        .await;
    assert_eq!(issued.token_type, "DPoP");
    let key = DpopKey::from_pem(&pem).unwrap();
    let client = http();
    let provider = provider_for(&server, &PUBLIC, &key)
        .grant(Grant::refresh_token(issued.refresh_token.clone()))
        .build(client.clone())
        .unwrap();

    let mut token = provider
        .clone()
        .oneshot(TokenRequest::new(RefreshReason::Initial, None))
        .await
        .unwrap();
    let mut seen = vec![issued.refresh_token];
    for _ in 0..2 {
        assert_eq!(token.token_type(), TokenType::Dpop);
        let refresh = token.expose_refresh_token().unwrap().to_owned();
        assert!(!seen.contains(&refresh), "rotated");
        seen.push(refresh);
        token = provider
            .clone()
            .oneshot(TokenRequest::new(RefreshReason::Expired, Some(token)))
            .await
            .unwrap();
    }
    let cache = TokenCache::new(provider);
    let answer = call(&server, &cache, &client).await;
    assert_eq!(answer["jkt"], key.thumbprint(), "{answer}");

    let newest = cache.token().await.unwrap();
    let thief = provider_for(
        &server,
        &PUBLIC,
        &DpopKey::generate(Algorithm::Es256).unwrap(),
    )
    .grant(Grant::refresh_token(
        newest.expose_refresh_token().unwrap().to_owned(),
    ))
    .build(client.clone())
    .unwrap();
    let stolen = thief
        .oneshot(TokenRequest::new(RefreshReason::Initial, None))
        .await;
    assert!(stolen.is_err(), "another key's proof: {stolen:?}");

    let stats = server.stats().await;
    assert_eq!(stats.grants("refresh_token"), 4, "{stats:?}");
    assert_eq!(
        stats.token_errors("refresh_token", "use_dpop_nonce"),
        2,
        "the provider's first contact, and the thief's: {stats:?}"
    );
    assert_eq!(stats.api_refused("use_dpop_nonce"), 1, "{stats:?}");
    assert_eq!(stats.api_ok("DPoP"), 1, "{stats:?}");
    assert_eq!(stats.grants_revoked(), 0, "{stats:?}");
    assert_eq!(cache.stats().nonce_retried, 1);
}

/// `OAUTH2_DPOP=1 cargo run --example oauth2 --features dpop` with the variables of its
/// contract against the server requiring DPoP: every call succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_runs_against_it_with_dpop() {
    let server = OidcProvider::builder().require_dpop(true).start();
    let mut env = server.example_env(&BASIC);
    env.push(("OAUTH2_RESOURCE", server.resource().to_owned()));
    env.push(("OAUTH2_DPOP", "1".to_owned()));
    env.push(("REQUESTS", "40".to_owned()));
    env.push(("CONCURRENCY", "4".to_owned()));
    let settings = oauth2_example::Settings::from_lookup(|name| {
        env.iter()
            .find(|(key, _)| *key == name)
            .map(|(_, value)| value.clone())
    })
    .unwrap();
    let mut out = Vec::new();
    let report = oauth2_example::run(settings, &mut out).await.unwrap();
    let out = String::from_utf8(out).unwrap();
    assert!(report.success(40), "{out}\n{}", server.stderr());
    assert!(out.contains("DPoP with ES256 key"), "{out}");
    let stats = server.stats().await;
    assert_eq!(stats.grants("client_credentials"), 1, "{stats:?}");
    assert_eq!(stats.api_ok("DPoP"), 40, "{stats:?}");
    assert_eq!(stats.api_ok("Bearer"), 0, "{stats:?}");
}
