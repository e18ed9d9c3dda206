//! The OAuth 2.0 provider's grants and client authentication methods, against the mock
//! authorization server over loopback: what each sends on the wire, and the parameters that
//! must ride on the first grant and on every refresh.

mod common;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::oauth2::{first, http, key, next, refused_with, to};
use tower_bearer_mock::oauth2::{MockAuthServer, MockClient, TokenRequestLog};
use tower_bearer_oauth2::jose::{Algorithm, SigningKey};
use tower_bearer_oauth2::{
    AuthMethod, ErrorCode, Grant, JwtBearer, OAuth2, OAuth2Error, SubjectToken,
};

/// The one token request the server saw last.
fn last(server: &MockAuthServer) -> TokenRequestLog {
    server.token_requests().pop().expect("a token request")
}

// ===== client authentication, checked by the server on the wire =====

/// RFC 6749 §2.3.1: id and secret form-urlencoded, then base64. The mock decodes them so, and
/// this secret (the interop fixture's) changes under that encoding.
#[tokio::test]
async fn client_secret_basic_encodes_the_credentials_before_base64() {
    let (id, secret) = ("client:basic", "basic+secret/with %reserved:chars&=");
    let server = MockAuthServer::builder()
        .register(MockClient::secret_basic(id, secret))
        .start()
        .await
        .unwrap();
    let provider = OAuth2::builder()
        .token_endpoint(server.token_endpoint())
        .client_id(id)
        .client_secret(secret)
        .build(http())
        .unwrap();
    assert_eq!(provider.auth_method(), AuthMethod::ClientSecretBasic);

    first(&provider).await.unwrap();
    let log = last(&server);
    assert_eq!(log.auth_method, Some(AuthMethod::ClientSecretBasic));
    assert_eq!(log.client_id.as_deref(), Some(id));
    // Nothing of the client in the body: it is all in the header.
    assert!(log.param("client_id").is_empty() && log.param("client_secret").is_empty());
    assert_eq!(server.counters().client_secret_basic, 1);
}

#[tokio::test]
async fn client_secret_post_sends_the_credentials_in_the_body() {
    let (id, secret) = ("client-post", "post+secret&with=reserved%chars");
    let server = MockAuthServer::builder()
        .register(MockClient::secret_post(id, secret))
        .start()
        .await
        .unwrap();
    let provider = OAuth2::builder()
        .token_endpoint(server.token_endpoint())
        .client_id(id)
        .client_secret(secret)
        .auth_method(AuthMethod::ClientSecretPost)
        .build(http())
        .unwrap();

    first(&provider).await.unwrap();
    let log = last(&server);
    assert_eq!(log.auth_method, Some(AuthMethod::ClientSecretPost));
    assert_eq!(log.param("client_id"), [id]);
    assert_eq!(log.param("client_secret"), ["[REDACTED]"]);
    assert_eq!(server.counters().client_secret_post, 1);
}

/// A server holds a client to the method it registered: the wrong one is `invalid_client`,
/// which retrying will not fix.
#[tokio::test]
async fn another_method_than_registered_is_invalid_client_and_permanent() {
    let server = MockAuthServer::builder()
        .register(MockClient::secret_post("c", "s"))
        .start()
        .await
        .unwrap();
    let basic = OAuth2::builder()
        .token_endpoint(server.token_endpoint())
        .client_id("c")
        .client_secret("s")
        .build(http())
        .unwrap();
    let error = first(&basic).await.unwrap_err();
    assert_eq!(refused_with(&error), &ErrorCode::InvalidClient);
    assert_eq!(error.error_response().unwrap().status(), 401);
    assert!(error.is_permanent());
    assert_eq!(server.counters().invalid_client, 1);
}

/// RFC 7523 §2.2, ES256 and RS256 keys with their `kid`: each request carries a new
/// assertion (the mock refuses a replayed `jti`), `aud` the token endpoint by default, or the
/// issuer when asked.
#[tokio::test]
async fn private_key_jwt_signs_a_fresh_assertion_for_each_request() {
    for file in ["es256.pkcs8.pem", "rs256.pkcs8.pem"] {
        let key = key(file);
        let server = MockAuthServer::builder()
            .register(MockClient::private_key_jwt("jwt-client", key.public_jwk()))
            .start()
            .await
            .unwrap();
        let provider = OAuth2::builder()
            .token_endpoint(server.token_endpoint())
            .client_id("jwt-client")
            .private_key(key.clone())
            .build(http())
            .unwrap();
        assert_eq!(provider.auth_method(), AuthMethod::PrivateKeyJwt);
        for _ in 0..3 {
            first(&provider).await.unwrap();
        }
        let log = last(&server);
        assert_eq!(log.auth_method, Some(AuthMethod::PrivateKeyJwt), "{file}");
        assert_eq!(
            log.param("client_assertion_type"),
            ["urn:ietf:params:oauth:client-assertion-type:jwt-bearer"]
        );
        assert_eq!(log.param("client_assertion"), ["[REDACTED]"]);
        assert_eq!(server.counters().private_key_jwt, 3, "{file}");

        let to_issuer = OAuth2::builder()
            .token_endpoint(server.token_endpoint())
            .client_id("jwt-client")
            .private_key(key.clone())
            .assertion_audience(server.issuer())
            .build(http())
            .unwrap();
        first(&to_issuer).await.unwrap();

        let elsewhere = OAuth2::builder()
            .token_endpoint(server.token_endpoint())
            .client_id("jwt-client")
            .private_key(key)
            .assertion_audience("https://another-server.example")
            .build(http())
            .unwrap();
        let error = first(&elsewhere).await.unwrap_err();
        assert_eq!(refused_with(&error), &ErrorCode::InvalidClient, "{file}");
    }
}

/// A key the server does not know for the client is refused.
#[tokio::test]
async fn private_key_jwt_with_another_key_is_refused() {
    let server = MockAuthServer::builder()
        .register(MockClient::private_key_jwt(
            "jwt-client",
            key("es256.pkcs8.pem").public_jwk(),
        ))
        .start()
        .await
        .unwrap();
    let provider = OAuth2::builder()
        .token_endpoint(server.token_endpoint())
        .client_id("jwt-client")
        .private_key(
            SigningKey::generate(Algorithm::Es256)
                .unwrap()
                .with_key_id("es256.pkcs8.pem"),
        )
        .build(http())
        .unwrap();
    let error = first(&provider).await.unwrap_err();
    assert_eq!(refused_with(&error), &ErrorCode::InvalidClient);
}

// ===== grants =====

#[tokio::test]
async fn client_credentials_is_the_default_grant() {
    let server = MockAuthServer::start().await.unwrap();
    let provider = to(&server).build(http()).unwrap();
    let token = first(&provider).await.unwrap();
    assert!(token.expiry().is_some());
    assert_eq!(last(&server).grant_type, "client_credentials");
    assert_eq!(server.counters().client_credentials_grants, 1);
}

/// A public client with a refresh token it got elsewhere: each refresh presents the newest
/// one, and a call without a previous token (the cache lost it) never goes back to the
/// first, which the server would take for reuse and answer by revoking them all.
#[tokio::test]
async fn a_held_refresh_token_is_rotated_and_never_presented_again() {
    let server = MockAuthServer::builder()
        .register(MockClient::public("native-app"))
        .start()
        .await
        .unwrap();
    let held = server.issue_refresh_token("native-app");
    let provider = OAuth2::builder()
        .token_endpoint(server.token_endpoint())
        .client_id("native-app")
        .grant(Grant::refresh_token(held.clone()))
        .build(http())
        .unwrap();
    assert_eq!(provider.auth_method(), AuthMethod::None);

    let mut token = first(&provider).await.unwrap();
    let mut seen = vec![held];
    for _ in 0..3 {
        let refresh = token.expose_refresh_token().unwrap().to_owned();
        assert!(!seen.contains(&refresh), "rotated");
        seen.push(refresh);
        token = next(&provider, &token).await.unwrap();
    }
    first(&provider).await.unwrap();
    let counters = server.counters();
    assert_eq!(counters.refresh_token_grants, 5);
    assert_eq!(counters.public_client, 5);
    assert_eq!(counters.refresh_token_reuses, 0);
    assert!(
        server
            .token_requests()
            .iter()
            .all(|log| log.grant_type == "refresh_token")
    );

    // Once refused, a held refresh token has no fallback: permanent.
    server.revoke_all();
    let error = first(&provider).await.unwrap_err();
    assert_eq!(refused_with(&error), &ErrorCode::InvalidGrant);
    assert!(error.is_permanent());
}

/// RFC 7523 §2.1, a Google-style service account: no client authentication, the assertion
/// is the grant, with a claim of its own.
#[tokio::test]
async fn jwt_bearer_assertion_is_the_grant() {
    let key = key("es256.pkcs8.pem");
    let server = MockAuthServer::builder()
        .assertion_issuer("svc@project.iam.example", key.public_jwk())
        .start()
        .await
        .unwrap();
    let provider = OAuth2::builder()
        .token_endpoint(server.token_endpoint())
        .grant(Grant::jwt_bearer(
            JwtBearer::new(key, "svc@project.iam.example").claim("scope", "storage.read"),
        ))
        .build(http())
        .unwrap();
    first(&provider).await.unwrap();
    first(&provider).await.unwrap();
    let log = last(&server);
    assert_eq!(
        log.grant_type,
        "urn:ietf:params:oauth:grant-type:jwt-bearer"
    );
    assert_eq!(log.param("assertion"), ["[REDACTED]"]);
    assert_eq!(log.auth_method, None);
    assert_eq!(server.counters().jwt_bearer_grants, 2);
}

/// A Kubernetes projected service-account token is rewritten by the kubelet: the file is
/// read again for each exchange.
#[tokio::test]
async fn token_exchange_reads_the_subject_token_file_for_each_exchange() {
    let file = TempFile::new("subject-token");
    file.write("subject-A\n");
    let server = MockAuthServer::builder()
        .subject_token("subject-A")
        .start()
        .await
        .unwrap();
    let provider = to(&server)
        .grant(Grant::token_exchange(SubjectToken::from_file(&file.0)))
        .build(http())
        .unwrap();

    first(&provider).await.unwrap();
    let log = last(&server);
    assert_eq!(
        log.grant_type,
        "urn:ietf:params:oauth:grant-type:token-exchange"
    );
    assert_eq!(log.param("subject_token"), ["[REDACTED]"]);
    assert_eq!(
        log.param("subject_token_type"),
        ["urn:ietf:params:oauth:token-type:jwt"]
    );

    file.write("subject-B");
    let error = first(&provider).await.unwrap_err();
    assert_eq!(
        refused_with(&error),
        &ErrorCode::InvalidGrant,
        "the new token was sent"
    );
    server.accept_subject_token("subject-B");
    first(&provider).await.unwrap();
    assert_eq!(server.counters().token_exchange_grants, 2);

    std::fs::remove_file(&file.0).unwrap();
    assert!(matches!(
        first(&provider).await.unwrap_err(),
        OAuth2Error::SubjectToken(_)
    ));
}

#[tokio::test]
async fn token_exchange_calls_the_closure_for_each_exchange() {
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    let server = MockAuthServer::builder()
        .subject_token("workload-0")
        .subject_token("workload-1")
        .start()
        .await
        .unwrap();
    let subject = SubjectToken::from_fn(move || {
        Ok(format!(
            "workload-{}",
            counted.fetch_add(1, Ordering::SeqCst)
        ))
    })
    .token_type("urn:ietf:params:oauth:token-type:access_token");
    let provider = to(&server)
        .grant(Grant::token_exchange(subject))
        .build(http())
        .unwrap();
    first(&provider).await.unwrap();
    first(&provider).await.unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert_eq!(
        last(&server).param("subject_token_type"),
        ["urn:ietf:params:oauth:token-type:access_token"]
    );
}

// ===== parameters and refresh =====

/// openai/codex#33403 (a refresh that forgets `resource`), modelcontextprotocol/rust-sdk#784
/// (no client secret on refresh): every parameter and the client's credentials go with the
/// first grant and with every refresh.
#[tokio::test]
async fn parameters_and_credentials_ride_on_every_grant_and_refresh() {
    let server = MockAuthServer::builder()
        .refresh_tokens(true)
        .start()
        .await
        .unwrap();
    let provider = to(&server)
        .scope("invoices:read")
        .scope("invoices:write")
        .audience("https://api.example.com")
        .resource("https://api.example.com/invoices")
        .resource("https://api.example.com/payments")
        .param("tenant", "acme")
        .build(http())
        .unwrap();

    let token = first(&provider).await.unwrap();
    let token = next(&provider, &token).await.unwrap();
    next(&provider, &token).await.unwrap();

    let logs = server.token_requests();
    let grants: Vec<&str> = logs.iter().map(|log| log.grant_type.as_str()).collect();
    assert_eq!(
        grants,
        ["client_credentials", "refresh_token", "refresh_token"]
    );
    for log in &logs {
        assert_eq!(
            log.param("scope"),
            ["invoices:read invoices:write"],
            "{log:?}"
        );
        assert_eq!(log.param("audience"), ["https://api.example.com"]);
        assert_eq!(
            log.param("resource"),
            [
                "https://api.example.com/invoices",
                "https://api.example.com/payments"
            ]
        );
        assert_eq!(log.param("tenant"), ["acme"]);
        assert_eq!(log.auth_method, Some(AuthMethod::ClientSecretBasic));
    }
    assert_eq!(server.counters().refresh_token_reuses, 0);
}

/// A server that does not rotate sends no refresh token with a refresh: the one the client
/// has stays good, and is kept.
#[tokio::test]
async fn a_refresh_answer_without_a_refresh_token_keeps_the_old_one() {
    let server = MockAuthServer::builder()
        .refresh_tokens(true)
        .rotate_refresh_tokens(false)
        .start()
        .await
        .unwrap();
    let provider = to(&server).build(http()).unwrap();
    let mut token = first(&provider).await.unwrap();
    let refresh_token = token.expose_refresh_token().unwrap().to_owned();
    for _ in 0..3 {
        token = next(&provider, &token).await.unwrap();
        assert_eq!(token.expose_refresh_token(), Some(refresh_token.as_str()));
    }
    assert_eq!(server.counters().refresh_token_grants, 3);
}

/// A refresh token refused with `invalid_grant` (revoked here) costs one more request in the
/// same call, with the client's own grant: no failed refresh, no backoff.
#[tokio::test]
async fn invalid_grant_on_refresh_falls_back_once_to_the_grant() {
    let server = MockAuthServer::builder()
        .refresh_tokens(true)
        .start()
        .await
        .unwrap();
    let provider = to(&server).build(http()).unwrap();
    let token = first(&provider).await.unwrap();
    server.revoke_all();
    let replaced = next(&provider, &token).await.unwrap();
    assert_ne!(
        replaced.expose_refresh_token(),
        token.expose_refresh_token()
    );

    let grants: Vec<String> = server
        .token_requests()
        .into_iter()
        .map(|log| log.grant_type)
        .collect();
    assert_eq!(
        grants,
        ["client_credentials", "refresh_token", "client_credentials"]
    );
    assert_eq!(server.counters().invalid_grant, 1);
}

/// Only `invalid_grant` means the refresh token is dead: a failing server is the call's
/// error, and the refresh token is not given up for the grant.
#[tokio::test]
async fn a_transient_failure_on_refresh_does_not_fall_back() {
    use tower_bearer_mock::oauth2::Fault;

    let server = MockAuthServer::builder()
        .refresh_tokens(true)
        .start()
        .await
        .unwrap();
    let provider = to(&server).build(http()).unwrap();
    let token = first(&provider).await.unwrap();
    server.fail_next_token_requests(1, Fault::Status(http::StatusCode::INTERNAL_SERVER_ERROR));
    let error = next(&provider, &token).await.unwrap_err();
    assert!(matches!(error, OAuth2Error::Status { status, .. } if status == 500));
    assert_eq!(server.counters().token_requests, 2);
    // The same refresh token still works.
    next(&provider, &token).await.unwrap();
    assert_eq!(server.counters().refresh_token_grants, 1);
}

/// A temporary file, removed on drop.
struct TempFile(PathBuf);

impl TempFile {
    fn new(name: &str) -> Self {
        let unique = format!(
            "tower-bearer-{name}-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        );
        TempFile(std::env::temp_dir().join(unique))
    }

    fn write(&self, contents: &str) {
        std::fs::write(&self.0, contents).unwrap();
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}
