//! Finding the token endpoint from the issuer (RFC 8414, then OpenID Connect Discovery),
//! against the mock authorization server over loopback: once, then kept; and never from
//! metadata that names another issuer.

mod common;

use common::oauth2::{first, http};
use tower_bearer_mock::oauth2::{
    DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, Discovery, MockAuthServer,
};
use tower_bearer_oauth2::{DiscoveryError, NoAnswer, OAuth2, OAuth2Builder, OAuth2Error};

fn from_issuer(issuer: String) -> OAuth2Builder {
    OAuth2::builder()
        .issuer(issuer)
        .client_id(DEFAULT_CLIENT_ID)
        .client_secret(DEFAULT_CLIENT_SECRET)
}

#[tokio::test]
async fn the_token_endpoint_is_discovered_once_and_kept() {
    // RFC 8414's document first; OpenID's only where there is none.
    for (published, requests_first_call) in [
        (Discovery::Both, 1),
        (Discovery::OAuthOnly, 1),
        (Discovery::OpenIdOnly, 2),
    ] {
        let server = MockAuthServer::builder()
            .discovery(published)
            .start()
            .await
            .unwrap();
        let provider = from_issuer(server.issuer()).build(http()).unwrap();
        assert_eq!(
            provider.token_endpoint(),
            None,
            "nothing fetched before the first call"
        );
        first(&provider).await.unwrap();
        assert_eq!(
            server.counters().discovery_requests,
            requests_first_call,
            "{published:?}"
        );
        assert_eq!(
            provider.token_endpoint().map(ToString::to_string),
            Some(server.token_endpoint())
        );
        first(&provider).await.unwrap();
        first(&provider.clone()).await.unwrap();
        let counters = server.counters();
        assert_eq!(counters.discovery_requests, requests_first_call, "kept");
        assert_eq!(counters.client_credentials_grants, 3);
    }
}

/// RFC 8414 §3.3: metadata for another issuer may come from another server; its token
/// endpoint is not used, not even asked, and the error says both names.
#[tokio::test]
async fn metadata_naming_another_issuer_is_refused() {
    let server = MockAuthServer::builder()
        .issuer("https://impostor.example")
        .start()
        .await
        .unwrap();
    let provider = from_issuer(server.uri()).build(http()).unwrap();
    let error = first(&provider).await.unwrap_err();
    let OAuth2Error::Discovery {
        error: DiscoveryError::IssuerMismatch { expected, found },
        ..
    } = &error
    else {
        panic!("{error:?}");
    };
    assert_eq!(expected, &server.uri());
    assert_eq!(found, "https://impostor.example");
    assert!(error.is_permanent());
    assert_eq!(server.counters().token_requests, 0);
    assert!(error.to_string().contains("impostor.example"), "{error}");
}

#[tokio::test]
async fn no_metadata_is_a_permanent_discovery_error() {
    let server = MockAuthServer::builder()
        .discovery(Discovery::None)
        .start()
        .await
        .unwrap();
    let provider = from_issuer(server.issuer()).build(http()).unwrap();
    let error = first(&provider).await.unwrap_err();
    assert!(
        matches!(
            &error,
            OAuth2Error::Discovery {
                error: DiscoveryError::Status(status),
                ..
            } if *status == 404
        ),
        "{error:?}"
    );
    assert!(error.is_permanent());
    assert_eq!(server.counters().discovery_requests, 2);
    assert_eq!(provider.token_endpoint(), None, "a failure is not kept");
}

/// An issuer that does not answer: the request's failure, said once with the URL it asked,
/// then the client's reason; not permanent, since the issuer may come up.
#[tokio::test]
async fn an_issuer_that_does_not_answer_is_a_transient_discovery_error() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let issuer = format!("http://{closed}");
    let provider = from_issuer(issuer.clone()).build(http()).unwrap();
    let error = first(&provider).await.unwrap_err();
    let OAuth2Error::Discovery {
        error: DiscoveryError::NoAnswer(NoAnswer::Transport { url, .. }),
        retry_after: None,
        ..
    } = &error
    else {
        panic!("{error:?}");
    };
    let asked = format!("{issuer}/.well-known/oauth-authorization-server");
    assert_eq!(url, &asked);
    assert!(!error.is_permanent());
    assert_eq!(
        error.to_string(),
        format!("discovery failed: the request to {asked} failed")
    );
    let cause = std::error::Error::source(&error).expect("the client's error");
    assert!(!cause.to_string().contains(&asked), "said once: {cause}");
}
