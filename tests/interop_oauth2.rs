//! The OAuth 2.0 provider against a real authorization server that nobody on this project
//! wrote: panva's oidc-provider (OpenID Certified), started on loopback by the harness in
//! `tests/common/oidc_provider/`, with its protected API. Client credentials with each client
//! authentication method, discovery, refresh-token rotation, a revocation mid-run recovered by
//! one retry, and `examples/oauth2.rs` run against it with the variables of its contract.
//!
//! Runs under `cargo test --all-features` (feature `server-tests`); needs node and npm. Real
//! time throughout: the server keeps its own clock.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::oidc_provider::{BASIC, JWT_ES256, JWT_RS256, OidcProvider, POST, PUBLIC, TestClient};
use http::{Request, StatusCode};
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tower::{ServiceBuilder, ServiceExt};
use tower_bearer::{BearerAuthLayer, RefreshReason, ReplayBody, Scope, TokenCache, TokenRequest};
use tower_bearer_oauth2::jose::SigningKey;
use tower_bearer_oauth2::{AuthMethod, Grant, OAuth2, OAuth2Builder};

#[path = "../examples/oauth2.rs"]
#[allow(dead_code)]
mod oauth2_example;

type Http = Client<HttpConnector, ReplayBody<Full<Bytes>>>;

fn http() -> Http {
    Client::builder(TokioExecutor::new()).build_http()
}

/// A provider for `client`, its token endpoint discovered from the server's issuer.
fn provider_for(server: &OidcProvider, client: &TestClient) -> OAuth2Builder {
    let method: AuthMethod = client.auth_method.parse().unwrap();
    let mut builder = OAuth2::builder()
        .issuer(server.issuer())
        .client_id(client.id)
        .auth_method(method)
        .resource(server.resource())
        .timeout(Duration::from_secs(10));
    if let Some(secret) = client.secret {
        builder = builder.client_secret(secret);
    }
    if let Some(key) = client.key {
        let key = SigningKey::from_pem(key.pem())
            .unwrap()
            .with_key_id(key.kid);
        builder = builder.private_key(key);
    }
    builder
}

/// `calls` GETs of the API through a layer fed by `cache`, each answered 200.
async fn call_the_api(server: &OidcProvider, cache: &TokenCache, client: &Http, calls: usize) {
    let api = ServiceBuilder::new()
        .layer(BearerAuthLayer::from_cache(
            cache.clone(),
            Scope::origin(server.api_origin()).unwrap(),
        ))
        .service(client.clone());
    for n in 0..calls {
        let request = Request::get(server.api_url())
            .body(Full::default())
            .unwrap();
        let response = api.clone().oneshot(request).await.unwrap();
        assert_eq!(
            response.status(),
            StatusCode::OK,
            "call {n}\n{}",
            server.stderr()
        );
    }
}

/// Client credentials with `client_secret_basic` (id and secret holding characters the
/// form-urlencoding changes), `client_secret_post`, and `private_key_jwt` with ES256 and
/// RS256 keys: each as the server saw it on the wire, and the tokens accepted by its API.
#[tokio::test]
async fn client_credentials_with_each_client_authentication() {
    let server = OidcProvider::start();
    let client = http();
    for test_client in [BASIC, POST, JWT_ES256, JWT_RS256] {
        let provider = provider_for(&server, &test_client)
            .build(client.clone())
            .unwrap();
        let cache = TokenCache::new(provider);
        call_the_api(&server, &cache, &client, 3).await;
    }
    let stats = server.stats().await;
    for test_client in [BASIC, POST, JWT_ES256, JWT_RS256] {
        assert_eq!(
            stats.client_auth(test_client.id, test_client.auth_method),
            1,
            "{}: one grant, authenticated as registered\n{stats:?}",
            test_client.id
        );
    }
    assert_eq!(stats.grants("client_credentials"), 4, "{stats:?}");
    assert_eq!(stats.api_ok("Bearer"), 12, "{stats:?}");
    // The token endpoint's origin never received an access token.
    assert_eq!(stats.access_tokens_sent_to_issuer(), 0, "{stats:?}");
}

/// The server revokes the token mid-run: the next call meets a 401, the cache replaces the
/// token, and the call is sent again, once; every call succeeds.
#[tokio::test]
async fn a_revocation_mid_run_is_recovered_by_one_retry() {
    let server = OidcProvider::start();
    let client = http();
    let provider = provider_for(&server, &BASIC).build(client.clone()).unwrap();
    let cache = TokenCache::builder(provider)
        .min_token_age(Duration::ZERO)
        .build();
    call_the_api(&server, &cache, &client, 3).await;
    let token = cache.token().await.unwrap();
    assert!(
        server.revoke(token.expose_access_token()).await,
        "the token was live"
    );
    call_the_api(&server, &cache, &client, 3).await;

    let stats = server.stats().await;
    assert_eq!(stats.api_refused("invalid_token"), 1, "{stats:?}");
    assert_eq!(stats.api_ok("Bearer"), 6, "{stats:?}");
    assert_eq!(stats.grants("client_credentials"), 2, "{stats:?}");
    assert_eq!(cache.stats().retried, 1);
}

/// A refresh token from a real authorization-code flow, handed to a public client: each
/// refresh presents the newest one (oidc-provider rotates them, and revokes the whole grant
/// if a used one comes back), with the same `resource`.
#[tokio::test]
async fn a_held_refresh_token_rotates_without_reuse() {
    let server = OidcProvider::start();
    let issued = server.refresh_token(&PUBLIC).await;
    let provider = provider_for(&server, &PUBLIC)
        .grant(Grant::refresh_token(issued.refresh_token.clone()))
        .build(http())
        .unwrap();
    let mut token = provider
        .clone()
        .oneshot(TokenRequest::new(RefreshReason::Initial, None))
        .await
        .unwrap();
    let mut seen = vec![issued.refresh_token];
    for _ in 0..3 {
        let refresh = token.expose_refresh_token().unwrap().to_owned();
        assert!(!seen.contains(&refresh), "rotated");
        seen.push(refresh);
        token = provider
            .clone()
            .oneshot(TokenRequest::new(RefreshReason::Expired, Some(token)))
            .await
            .unwrap();
    }
    // A call that lost its previous token still presents the newest, never the first.
    provider
        .clone()
        .oneshot(TokenRequest::new(RefreshReason::Initial, None))
        .await
        .unwrap();
    let stats = server.stats().await;
    assert_eq!(stats.grants("refresh_token"), 5, "{stats:?}");
    assert_eq!(stats.grants_revoked(), 0, "{stats:?}");
    assert_eq!(stats.token_errors("refresh_token", "invalid_grant"), 0);
}

/// `cargo run --example oauth2` with the variables of its contract, for each client
/// authentication method: every call succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_runs_against_it() {
    let server = OidcProvider::start();
    for test_client in [BASIC, POST, JWT_ES256] {
        let mut env = server.example_env(&test_client);
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
        assert!(
            report.success(40),
            "{}: {out}\n{}",
            test_client.id,
            server.stderr()
        );
        assert_eq!(report.client_credentials, 1, "{out}");
    }
    let stats = server.stats().await;
    assert_eq!(stats.api_ok("Bearer"), 120, "{stats:?}");
    assert_eq!(stats.access_tokens_sent_to_issuer(), 0, "{stats:?}");
}
