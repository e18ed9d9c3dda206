//! The reqwest middleware with the OAuth 2.0 provider, both over reqwest, against the embedded
//! mock authorization server and its protected API on loopback.

mod reqwest_support;

use http::StatusCode;
use reqwest_middleware::ClientBuilder;
use reqwest_support::{Below, believing};
use tower_bearer::reqwest::BearerAuthMiddleware;
use tower_bearer::{RefreshReason, Scope};
use tower_bearer_mock::oauth2::{DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, MockAuthServer};
use tower_bearer_oauth2::{AuthMethod, OAuth2};
use tower_bearer_provider::reqwest::ClientService;

/// Client credentials, the server found by discovery: every request of the provider (metadata
/// and grants) goes through reqwest, the API calls through the middleware; a revocation that
/// fifty concurrent calls meet costs one grant, and no call fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_refusals_after_a_revocation_cost_one_grant() {
    const N: usize = 50;
    let server = MockAuthServer::start().await.unwrap();
    let provider = OAuth2::builder()
        .issuer(server.issuer())
        .client_id(DEFAULT_CLIENT_ID)
        .client_secret(DEFAULT_CLIENT_SECRET)
        .build(ClientService::new(reqwest::Client::new()))
        .unwrap();
    let auth =
        BearerAuthMiddleware::from_cache(believing(provider), Scope::origin(server.uri()).unwrap());
    let cache = auth.cache().clone();
    let below = Below::default();
    let client = ClientBuilder::new(reqwest::Client::new())
        .with(auth)
        .with(below.clone())
        .build();
    let api = server.uri_for("/api/reports");

    let first = client.get(&api).send().await.unwrap();
    assert_eq!(first.status(), StatusCode::OK);

    // All sent with the revoked token; all but the first read their refusal once the first
    // has a new token.
    server.revoke_all();
    below.hold(N);
    below.stagger_answers(N);
    let calls: Vec<_> = (0..N)
        .map(|_| tokio::spawn(client.get(&api).send()))
        .collect();
    for call in calls {
        assert_eq!(call.await.unwrap().unwrap().status(), StatusCode::OK);
    }

    let counters = server.counters();
    assert_eq!(counters.resource_unauthorized, N as u64);
    assert_eq!(counters.client_credentials_grants, 2);
    assert_eq!(counters.discovery_requests, 1, "the metadata, once");
    assert_eq!(counters.expired_token_requests, 0);
    assert_eq!(cache.stats().refreshes(RefreshReason::Rejected).started, 1);
    // The token endpoint saw the client's credentials, never the access token.
    let grants = server.token_requests();
    assert_eq!(grants.len(), 2);
    assert!(
        grants
            .iter()
            .all(|grant| grant.grant_type == "client_credentials"
                && grant.auth_method == Some(AuthMethod::ClientSecretBasic)
                && grant.status == StatusCode::OK)
    );
}

/// The token goes to the API's origin only: the same client calling another origin (here, the
/// mock server of another authorization server) sends no token there.
#[tokio::test]
async fn the_token_stays_with_the_api() {
    let server = MockAuthServer::start().await.unwrap();
    let elsewhere = MockAuthServer::start().await.unwrap();
    let provider = OAuth2::builder()
        .token_endpoint(server.token_endpoint())
        .client_id(DEFAULT_CLIENT_ID)
        .client_secret(DEFAULT_CLIENT_SECRET)
        .build(ClientService::new(reqwest::Client::new()))
        .unwrap();
    let layer = provider.into_layer(server.uri()).unwrap();
    let client = ClientBuilder::new(reqwest::Client::new())
        .with(BearerAuthMiddleware::from(&layer))
        .build();

    let ours = client.get(server.uri_for("/api")).send();
    assert_eq!(ours.await.unwrap().status(), StatusCode::OK);
    let theirs = client.get(elsewhere.uri_for("/api")).send();
    assert_eq!(theirs.await.unwrap().status(), StatusCode::UNAUTHORIZED);

    assert_eq!(server.counters().resource_unauthorized, 0);
    // Sent no token (a token it never issued would be counted the same, but then the
    // middleware would have taken the 401 for a refusal and fetched another).
    assert_eq!(elsewhere.counters().resource_unauthorized, 1);
    assert_eq!(server.counters().client_credentials_grants, 1);
    assert_eq!(layer.cache().stats().unauthorized, 0);
}

/// DPoP end to end, both halves over reqwest: the provider's nonce dance at the token endpoint
/// (through `ClientService`), then the middleware's proofs at the API; a nonce the server
/// rotates costs one retry with the same token, and no grant.
#[tokio::test]
async fn dpop_bound_tokens_are_proven_and_a_new_nonce_costs_one_retry() {
    use tower_bearer_oauth2::dpop::DpopKey;
    use tower_bearer_oauth2::jose::Algorithm;

    let server = MockAuthServer::builder()
        .require_dpop(true)
        .require_dpop_nonce(true)
        .start()
        .await
        .unwrap();
    let provider = OAuth2::builder()
        .token_endpoint(server.token_endpoint())
        .client_id(DEFAULT_CLIENT_ID)
        .client_secret(DEFAULT_CLIENT_SECRET)
        .dpop(DpopKey::generate(Algorithm::Es256).unwrap())
        .build(ClientService::new(reqwest::Client::new()))
        .unwrap();
    let auth = BearerAuthMiddleware::from(provider.into_layer(server.uri()).unwrap());
    let cache = auth.cache().clone();
    let below = Below::default();
    let client = ClientBuilder::new(reqwest::Client::new())
        .with(auth)
        .with(below.clone())
        .build();
    let api = server.uri_for("/api/reports");

    assert_eq!(
        client.get(&api).send().await.unwrap().status(),
        StatusCode::OK
    );
    server.rotate_dpop_nonce();
    assert_eq!(
        client.get(&api).send().await.unwrap().status(),
        StatusCode::OK
    );

    let counters = server.counters();
    assert_eq!(counters.client_credentials_grants, 1);
    assert_eq!(
        counters.token_nonce_challenges, 1,
        "the provider's nonce dance"
    );
    assert_eq!(counters.resource_nonce_challenges, 1, "the rotated nonce");
    assert_eq!(counters.dpop_resource_requests, 2);
    assert_eq!(counters.resource_unauthorized, 1);
    let stats = cache.stats();
    assert_eq!((stats.nonce_retried, stats.retried), (1, 0));
    let sent = below.sent();
    assert_eq!(sent.len(), 3);
    assert!(sent.iter().all(|(auth, sensitive)| {
        auth.as_deref().is_some_and(|a| a.starts_with("DPoP ")) && *sensitive
    }));
}
