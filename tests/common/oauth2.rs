//! What the OAuth 2.0 tests share: an HTTP client, token requests, test keys, and a provider
//! pointed at a mock authorization server.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tower::ServiceExt;
use tower_bearer::{RefreshReason, Token, TokenRequest};
use tower_bearer_mock::oauth2::MockAuthServer;
use tower_bearer_oauth2::jose::SigningKey;
use tower_bearer_oauth2::{ErrorCode, OAuth2, OAuth2Builder, OAuth2Error};

pub type Http = Client<HttpConnector, Full<Bytes>>;

/// A plain hyper-util client for the providers.
pub fn http() -> Http {
    Client::builder(TokioExecutor::new()).build_http()
}

/// A provider's builder for `server`'s token endpoint and its default client.
pub fn to(server: &MockAuthServer) -> OAuth2Builder {
    OAuth2::builder()
        .token_endpoint(server.token_endpoint())
        .client_id(tower_bearer_mock::oauth2::DEFAULT_CLIENT_ID)
        .client_secret(tower_bearer_mock::oauth2::DEFAULT_CLIENT_SECRET)
        .timeout(Duration::from_secs(10))
}

/// The first token.
pub async fn first(provider: &OAuth2<Http>) -> Result<Token, OAuth2Error> {
    provider
        .clone()
        .oneshot(TokenRequest::new(RefreshReason::Initial, None))
        .await
}

/// The token after `previous`, as the cache asks for it when `previous` expires.
pub async fn next(provider: &OAuth2<Http>, previous: &Token) -> Result<Token, OAuth2Error> {
    provider
        .clone()
        .oneshot(TokenRequest::new(
            RefreshReason::Expired,
            Some(previous.clone()),
        ))
        .await
}

/// A test key from `tests/keys/`, with `kid` = its file name.
pub fn key(file: &str) -> SigningKey {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/keys/");
    let pem = std::fs::read_to_string(format!("{path}{file}")).expect("a test key");
    SigningKey::from_pem(pem)
        .expect("a usable key")
        .with_key_id(file)
}

/// The RFC 6749 error code the server refused with, failing the test if `error` is not a
/// refusal.
pub fn refused_with(error: &OAuth2Error) -> &ErrorCode {
    error
        .error_response()
        .unwrap_or_else(|| panic!("not an error response: {error:?}"))
        .code()
}
