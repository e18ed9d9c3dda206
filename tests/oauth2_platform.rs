//! Credentials the platform hands the client, read afresh at every grant, against the mock
//! authorization server over loopback: Azure workload identity's federated token file, and a
//! chained token exchange whose subject is another cache's access token.

mod common;

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::oauth2::{first, http, refused_with, to};
use serde_json::json;
use tower_bearer::TokenCache;
use tower_bearer_mock::oauth2::{FEDERATED_AUDIENCE, MockAuthServer, MockClient};
use tower_bearer_oauth2::jose::{Algorithm, SigningKey, sign_with_header};
use tower_bearer_oauth2::{
    AuthMethod, AzureWorkloadIdentity, ErrorCode, Grant, OAuth2Error, SubjectToken,
};

const CLIENT_ID: &str = "11111111-2222-3333-4444-555555555555";
const CLUSTER: &str = "https://oidc.cluster.example/7f3c";
const SERVICE_ACCOUNT: &str = "system:serviceaccount:billing:api";

/// A projected service-account token as the kubelet writes one: signed by the cluster's
/// issuer for `subject`, for Entra ID's audience, for an hour.
fn federated_token(key: &SigningKey, subject: &str) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let header = json!({ "alg": "ES256", "kid": "cluster" });
    let claims = json!({
        "iss": CLUSTER,
        "sub": subject,
        "aud": [FEDERATED_AUDIENCE],
        "iat": now,
        "nbf": now,
        "exp": now + 3600,
    });
    sign_with_header(key, &header, &claims).unwrap()
}

/// A file in the temporary directory, removed on drop, rewritten as the kubelet's atomic
/// writer would not: in place, and with its modification time put back, so that only a
/// reader that reads it again sees the change.
struct TokenFile(PathBuf);

impl TokenFile {
    fn new(name: &str) -> Self {
        TokenFile(std::env::temp_dir().join(format!(
            "tower-bearer-{name}-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        )))
    }

    fn write_keeping_mtime(&self, contents: &str) {
        let mtime = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        std::fs::write(&self.0, contents).unwrap();
        let file = std::fs::File::options().write(true).open(&self.0).unwrap();
        file.set_modified(mtime).unwrap();
    }
}

impl Drop for TokenFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// An Entra ID stand-in with the application registered, trusting the cluster's tokens for
/// the service account.
async fn entra(cluster: &SigningKey) -> MockAuthServer {
    MockAuthServer::builder()
        .register(MockClient::federated(
            CLIENT_ID,
            CLUSTER,
            SERVICE_ACCOUNT,
            cluster.public_jwk(),
        ))
        .start()
        .await
        .unwrap()
}

#[tokio::test]
async fn azure_workload_identity_sends_the_federated_token_read_for_each_request() {
    let cluster = SigningKey::generate(Algorithm::Es256).unwrap();
    let server = entra(&cluster).await;
    let file = TokenFile::new("azure-identity-token");
    file.write_keeping_mtime(&federated_token(&cluster, SERVICE_ACCOUNT));
    let identity = AzureWorkloadIdentity::new(CLIENT_ID, "contoso.onmicrosoft.com", &file.0)
        .unwrap()
        .authority_host(server.uri());
    assert_eq!(
        identity.token_endpoint(),
        server.entra_token_endpoint("contoso.onmicrosoft.com")
    );
    let provider = identity
        .builder()
        .scope("api://billing/.default")
        .build(http())
        .unwrap();
    assert_eq!(provider.auth_method(), AuthMethod::PrivateKeyJwt);

    first(&provider).await.unwrap();
    let log = server.token_requests().pop().unwrap();
    assert_eq!(log.grant_type, "client_credentials");
    assert_eq!(log.auth_method, Some(AuthMethod::PrivateKeyJwt));
    assert_eq!(log.client_id.as_deref(), Some(CLIENT_ID));
    assert_eq!(log.param("client_assertion"), ["[REDACTED]"]);
    assert_eq!(
        log.param("client_assertion_type"),
        ["urn:ietf:params:oauth:client-assertion-type:jwt-bearer"]
    );
    assert_eq!(log.param("scope"), ["api://billing/.default"]);
    // The same federated token again: a platform's token is not single-use.
    first(&provider).await.unwrap();

    // Rotated to a token for another service account, with the old mtime: read again, sent,
    // and refused.
    file.write_keeping_mtime(&federated_token(&cluster, "system:serviceaccount:other:x"));
    let error = first(&provider).await.unwrap_err();
    assert_eq!(refused_with(&error), &ErrorCode::InvalidClient, "{error}");
    // Rotated back: the next request carries the good one.
    file.write_keeping_mtime(&federated_token(&cluster, SERVICE_ACCOUNT));
    first(&provider).await.unwrap();
    assert_eq!(server.counters().private_key_jwt, 3);

    std::fs::remove_file(&file.0).unwrap();
    let error = first(&provider).await.unwrap_err();
    assert!(
        matches!(error, OAuth2Error::ClientAssertion(_)),
        "{error:?}"
    );
    assert_eq!(error.to_string(), "the client assertion could not be read");
    let cause = std::error::Error::source(&error).unwrap().to_string();
    assert!(cause.starts_with("could not read "), "{cause}");
}

/// Each assertion is the file's: a token signed by another key, or for another audience, is
/// refused by the server, which shows the mock checks what Entra ID checks.
#[tokio::test]
async fn a_federated_token_of_another_issuer_key_or_audience_is_refused() {
    let cluster = SigningKey::generate(Algorithm::Es256).unwrap();
    let stranger = SigningKey::generate(Algorithm::Es256).unwrap();
    let server = entra(&cluster).await;
    let file = TokenFile::new("azure-identity-token-refused");
    let provider = AzureWorkloadIdentity::new(CLIENT_ID, "contoso", &file.0)
        .unwrap()
        .authority_host(server.uri())
        .builder()
        .build(http())
        .unwrap();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims =
        |aud: &str| json!({ "iss": CLUSTER, "sub": SERVICE_ACCOUNT, "aud": aud, "exp": now + 600 });
    let header = json!({ "alg": "ES256" });
    for token in [
        federated_token(&stranger, SERVICE_ACCOUNT),
        sign_with_header(&cluster, &header, &claims("api://other")).unwrap(),
    ] {
        file.write_keeping_mtime(&token);
        let error = first(&provider).await.unwrap_err();
        assert_eq!(refused_with(&error), &ErrorCode::InvalidClient, "{error}");
    }
    file.write_keeping_mtime(
        &sign_with_header(&cluster, &header, &claims(FEDERATED_AUDIENCE)).unwrap(),
    );
    first(&provider).await.unwrap();
}

/// A chained exchange: the subject token is another cache's access token, taken at each
/// exchange, so the upstream cache's own refresh (here, after its token is refused) feeds
/// the next exchange.
#[tokio::test]
async fn a_chained_exchange_sends_the_upstream_caches_current_token() {
    let server = MockAuthServer::start().await.unwrap();
    // A token refused at once is blamed, however young.
    let upstream = TokenCache::builder(to(&server).build(http()).unwrap())
        .min_token_age(Duration::ZERO)
        .build();
    let subject = upstream.token().await.unwrap();
    server.accept_subject_token(subject.expose_access_token());
    let exchange = to(&server)
        .grant(Grant::token_exchange(SubjectToken::from_cache(
            upstream.clone(),
        )))
        .build(http())
        .unwrap();

    first(&exchange).await.unwrap();
    let log = server.token_requests().pop().unwrap();
    assert_eq!(
        log.grant_type,
        "urn:ietf:params:oauth:grant-type:token-exchange"
    );
    assert_eq!(
        log.param("subject_token_type"),
        ["urn:ietf:params:oauth:token-type:access_token"]
    );

    // The upstream token is refused somewhere, and replaced: the next exchange sends the
    // replacement, which this server has not been told to accept.
    let replaced = upstream.reject(&subject).await.unwrap();
    assert_ne!(
        replaced.expose_access_token(),
        subject.expose_access_token()
    );
    let error = first(&exchange).await.unwrap_err();
    assert_eq!(refused_with(&error), &ErrorCode::InvalidGrant, "{error}");
    server.accept_subject_token(replaced.expose_access_token());
    first(&exchange).await.unwrap();
    assert_eq!(server.counters().token_exchange_grants, 2);
}
