//! The embedded mock OAuth 2.0 authorization server, over real loopback HTTP/1.1 with
//! hand-made requests: what it accepts, what it refuses and how, reuse detection, faults,
//! metadata and the protected API.

mod common;

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use common::oauth2::{http, key};
use http::header::{ALLOW, AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use serde_json::Value;
use tower_bearer_mock::oauth2::{
    AuthServerCounters, DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, Discovery, Fault, MockAuthServer,
    MockClient,
};

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&self.body)))
    }

    fn error(&self) -> String {
        self.json()["error"].as_str().unwrap_or_default().to_owned()
    }

    fn header(&self, name: impl http::header::AsHeaderName) -> &str {
        self.headers.get(name).map_or("", |v| v.to_str().unwrap())
    }
}

async fn send(request: Request<Full<Bytes>>) -> Reply {
    let response = tokio::time::timeout(Duration::from_secs(5), http().request(request))
        .await
        .expect("the mock answers")
        .unwrap();
    let (parts, body) = response.into_parts();
    Reply {
        status: parts.status,
        headers: parts.headers,
        body: body.collect().await.unwrap().to_bytes(),
    }
}

/// `Basic` credentials as RFC 6749 §2.3.1 says: each part form-urlencoded, then base64.
fn basic(id: &str, secret: &str) -> String {
    let encode = |text: &str| form_urlencoded::byte_serialize(text.as_bytes()).collect::<String>();
    format!(
        "Basic {}",
        STANDARD.encode(format!("{}:{}", encode(id), encode(secret)))
    )
}

/// A token request with this form and, if given, this `Authorization`.
async fn token(
    server: &MockAuthServer,
    authorization: Option<&str>,
    form: &[(&str, &str)],
) -> Reply {
    let body = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(form)
        .finish();
    let mut request = Request::post(server.token_endpoint())
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded");
    if let Some(authorization) = authorization {
        request = request.header(AUTHORIZATION, authorization);
    }
    send(request.body(Full::from(body)).unwrap()).await
}

async fn default_client_grant(server: &MockAuthServer) -> Reply {
    let credentials = basic(DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET);
    token(
        server,
        Some(&credentials),
        &[("grant_type", "client_credentials")],
    )
    .await
}

async fn api(server: &MockAuthServer, access_token: Option<&str>) -> Reply {
    let mut request = Request::get(server.uri_for("/api/items"));
    if let Some(token) = access_token {
        request = request.header(AUTHORIZATION, format!("Bearer {token}"));
    }
    send(request.body(Full::default()).unwrap()).await
}

#[tokio::test]
async fn the_defaults_issue_bearer_tokens_to_the_default_client() {
    let server = MockAuthServer::start().await.unwrap();
    assert!(server.addr().ip().is_loopback());
    assert_eq!(server.uri(), format!("http://{}", server.addr()));
    assert_eq!(server.issuer(), server.uri());
    assert_eq!(server.token_endpoint(), format!("{}/token", server.uri()));

    let reply = default_client_grant(&server).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.header("cache-control"), "no-store");
    let body = reply.json();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 3600);
    assert!(body.get("refresh_token").is_none(), "RFC 6749 §4.4.3");
    let access = body["access_token"].as_str().unwrap();
    let served = api(&server, Some(access)).await;
    assert_eq!(served.status, StatusCode::OK);
    assert_eq!(served.json()["client_id"], DEFAULT_CLIENT_ID);
}

/// Auth0 and Okta: a used refresh token presented again means it leaked; every token of its
/// family is revoked, the newest refresh token and the access tokens included.
#[tokio::test]
async fn a_reused_refresh_token_revokes_its_whole_family() {
    let server = MockAuthServer::builder()
        .refresh_tokens(true)
        .start()
        .await
        .unwrap();
    let credentials = basic(DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET);
    let first = default_client_grant(&server).await.json();
    let other_family = default_client_grant(&server).await.json();
    let refresh = |refresh_token: String| {
        let credentials = credentials.clone();
        let server = &server;
        async move {
            token(
                server,
                Some(&credentials),
                &[
                    ("grant_type", "refresh_token"),
                    ("refresh_token", &refresh_token),
                ],
            )
            .await
        }
    };
    let r1 = first["refresh_token"].as_str().unwrap().to_owned();
    let second = refresh(r1.clone()).await.json();
    let r2 = second["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(r1, r2, "rotated");
    let a2 = second["access_token"].as_str().unwrap();
    assert_eq!(api(&server, Some(a2)).await.status, StatusCode::OK);

    let reused = refresh(r1).await;
    assert_eq!(
        (reused.status, reused.error()),
        (StatusCode::BAD_REQUEST, "invalid_grant".into())
    );
    assert_eq!(refresh(r2).await.error(), "invalid_grant");
    assert_eq!(
        api(&server, Some(a2)).await.status,
        StatusCode::UNAUTHORIZED
    );
    // Another family lives on.
    let r3 = other_family["refresh_token"].as_str().unwrap().to_owned();
    assert_eq!(refresh(r3).await.status, StatusCode::OK);
    let counters = server.counters();
    assert_eq!(counters.refresh_token_reuses, 1);
    assert_eq!(counters.refresh_token_grants, 2);
    assert_eq!(counters.invalid_grant, 2);
}

/// Client authentication as it travels: the registered method only, one at a time, with the
/// id and secret decoded as RFC 6749 §2.3.1 says.
#[tokio::test]
async fn client_authentication_is_checked_on_the_wire() {
    let server = MockAuthServer::builder()
        .register(MockClient::secret_basic("a:b", "x+y z%"))
        .register(MockClient::secret_post("post", "p"))
        .start()
        .await
        .unwrap();
    let grant = [("grant_type", "client_credentials")];

    assert_eq!(
        token(&server, Some(&basic("a:b", "x+y z%")), &grant)
            .await
            .status,
        StatusCode::OK
    );
    // The secret not form-urlencoded: `+` decodes as a space, and it no longer matches.
    let raw = format!("Basic {}", STANDARD.encode("a%3Ab:x+y z%"));
    let refused = token(&server, Some(&raw), &grant).await;
    assert_eq!(
        (refused.status, refused.error()),
        (StatusCode::UNAUTHORIZED, "invalid_client".into())
    );
    assert!(
        refused.header(WWW_AUTHENTICATE).starts_with("Basic"),
        "RFC 6749 §5.2"
    );
    // Another method than registered.
    let post_for_basic = [
        ("grant_type", "client_credentials"),
        ("client_id", "a:b"),
        ("client_secret", "x+y z%"),
    ];
    assert_eq!(
        token(&server, None, &post_for_basic).await.error(),
        "invalid_client"
    );
    // Two methods at once.
    let both = [
        ("grant_type", "client_credentials"),
        ("client_id", "post"),
        ("client_secret", "p"),
    ];
    assert_eq!(token(&server, None, &both).await.status, StatusCode::OK);
    assert_eq!(
        token(&server, Some(&basic("a:b", "x+y z%")), &both)
            .await
            .error(),
        "invalid_request"
    );
    // No authentication for client credentials.
    assert_eq!(token(&server, None, &grant).await.error(), "invalid_client");

    let counters = server.counters();
    assert_eq!(
        (counters.client_secret_basic, counters.client_secret_post),
        (1, 1)
    );
    assert_eq!(counters.invalid_client, 3);
    assert_eq!(counters.invalid_request, 1);
}

/// RFC 7523 §3: the assertion's signature, `iss` = `sub` = the client, `aud`, `exp`, and a
/// `jti` used once.
#[tokio::test]
async fn client_assertions_are_verified_and_never_replayed() {
    let key = key("es256.pkcs8.pem");
    let server = MockAuthServer::builder()
        .register(MockClient::private_key_jwt("jwt", key.public_jwk()))
        .start()
        .await
        .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let sign = |claims: Value| sign_assertion(&key, claims);
    let assertion = |claims: Value| {
        [
            ("grant_type", "client_credentials".to_owned()),
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer".to_owned(),
            ),
            ("client_assertion", sign(claims)),
        ]
    };
    let good = serde_json::json!({
        "iss": "jwt", "sub": "jwt", "aud": server.token_endpoint(),
        "jti": "jti-1", "iat": now, "exp": now + 60,
    });
    let send_form = |form: [(&'static str, String); 3]| {
        let server = &server;
        async move {
            let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
            token(server, None, &form).await
        }
    };
    let form = assertion(good.clone());
    assert_eq!(send_form(form.clone()).await.status, StatusCode::OK);
    assert_eq!(
        send_form(form).await.error(),
        "invalid_client",
        "jti replayed"
    );

    let with = |name: &str, value: Value, jti: &str| {
        let mut claims = good.clone();
        claims[name] = value;
        claims["jti"] = jti.into();
        assertion(claims)
    };
    for (name, value, jti) in [
        (
            "aud",
            Value::from("https://elsewhere.example/token"),
            "jti-2",
        ),
        ("exp", Value::from(now - 1), "jti-3"),
        ("sub", Value::from("someone-else"), "jti-4"),
        ("iss", Value::from("unknown-client"), "jti-5"),
    ] {
        let form = with(name, value, jti);
        assert_eq!(send_form(form).await.error(), "invalid_client", "{name}");
    }
    // The issuer is as good an audience as the token endpoint.
    let form = with("aud", Value::from(server.issuer()), "jti-6");
    assert_eq!(send_form(form).await.status, StatusCode::OK);
    assert_eq!(server.counters().private_key_jwt, 2);
}

/// An ES256 JWS of `claims` with the test key `es256.pkcs8.pem` (whose `kid` `key` carries),
/// made by hand with ring: the provider only ever signs well-formed assertions, and these
/// tests need bad ones.
fn sign_assertion(key: &tower_bearer_oauth2::jose::SigningKey, claims: Value) -> String {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use ring::rand::SystemRandom;
    use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};

    let pem = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/keys/es256.pkcs8.pem"
    ))
    .unwrap();
    let der = pem
        .lines()
        .filter(|line| !line.starts_with("-----"))
        .collect::<String>();
    let der = STANDARD.decode(der).unwrap();
    let rng = SystemRandom::new();
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &der, &rng).unwrap();
    let header = serde_json::json!({"alg": "ES256", "kid": key.key_id()});
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let signature = pair.sign(&rng, input.as_bytes()).unwrap();
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature.as_ref()))
}

#[tokio::test(start_paused = true)]
async fn the_api_accepts_only_live_tokens() {
    let server = MockAuthServer::builder()
        .token_ttl(Duration::from_secs(60))
        .start()
        .await
        .unwrap();
    let missing = api(&server, None).await;
    assert_eq!(
        (missing.status, missing.header(WWW_AUTHENTICATE)),
        (StatusCode::UNAUTHORIZED, "Bearer")
    );
    let unknown = api(&server, Some("mat_forged")).await;
    assert_eq!(
        unknown.header(WWW_AUTHENTICATE),
        r#"Bearer error="invalid_token""#
    );

    let access = default_client_grant(&server).await.json()["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(api(&server, Some(&access)).await.status, StatusCode::OK);
    tokio::time::advance(Duration::from_secs(60)).await;
    assert_eq!(
        api(&server, Some(&access)).await.status,
        StatusCode::UNAUTHORIZED
    );

    let access = default_client_grant(&server).await.json()["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    server.revoke_all();
    assert_eq!(
        api(&server, Some(&access)).await.status,
        StatusCode::UNAUTHORIZED
    );
    let fresh = default_client_grant(&server).await.json()["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(api(&server, Some(&fresh)).await.status, StatusCode::OK);

    let counters = server.counters();
    assert_eq!(counters.resource_requests, 6);
    assert_eq!(counters.resource_unauthorized, 4);
    assert_eq!(counters.expired_token_requests, 1);
}

#[tokio::test]
async fn scripted_faults_answer_in_order_then_stop() {
    let server = MockAuthServer::start().await.unwrap();
    server.fail_next_token_requests(1, Fault::Status(StatusCode::INTERNAL_SERVER_ERROR));
    server.fail_next_token_requests(
        1,
        Fault::Error {
            status: StatusCode::SERVICE_UNAVAILABLE,
            code: "temporarily_unavailable",
        },
    );
    server.fail_next_token_requests(
        1,
        Fault::RateLimited {
            retry_after: Duration::from_millis(1500),
        },
    );
    server.fail_next_token_requests(1, Fault::Malformed);
    server.fail_next_token_requests(1, Fault::Delay(Duration::from_millis(1)));

    let html = default_client_grant(&server).await;
    assert_eq!(
        (html.status, html.header(CONTENT_TYPE)),
        (StatusCode::INTERNAL_SERVER_ERROR, "text/html")
    );
    let busy = default_client_grant(&server).await;
    assert_eq!(
        (busy.status, busy.error()),
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "temporarily_unavailable".into()
        )
    );
    let limited = default_client_grant(&server).await;
    assert_eq!(
        (limited.status, limited.header(RETRY_AFTER)),
        (StatusCode::TOO_MANY_REQUESTS, "2")
    );
    let broken = default_client_grant(&server).await;
    assert_eq!(broken.status, StatusCode::OK);
    assert!(serde_json::from_slice::<Value>(&broken.body).is_err());
    assert_eq!(default_client_grant(&server).await.status, StatusCode::OK);
    assert_eq!(default_client_grant(&server).await.status, StatusCode::OK);

    let counters = server.counters();
    assert_eq!((counters.faults_injected, counters.delays_injected), (4, 1));
    assert_eq!(counters.client_credentials_grants, 2);
    assert_eq!(server.token_requests().len(), 6);
}

#[tokio::test]
async fn a_hung_request_ends_with_the_server() {
    let server = MockAuthServer::start().await.unwrap();
    server.fail_next_token_requests(1, Fault::Hang);
    let request = Request::post(server.token_endpoint())
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Full::from("grant_type=client_credentials"))
        .unwrap();
    let hung = tokio::spawn(http().request(request));
    // The fault is the next request's: the grant below must not be sent before it is met.
    common::eventually("the hung request reaching the server", || async {
        server.counters().faults_injected == 1
    })
    .await;
    assert!(!hung.is_finished());
    assert_eq!(default_client_grant(&server).await.status, StatusCode::OK);
    server.shutdown().await;
    assert!(hung.await.unwrap().is_err(), "closed without an answer");
}

#[tokio::test]
async fn metadata_documents_say_where_the_token_endpoint_is() {
    let server = MockAuthServer::builder()
        .discovery(Discovery::OAuthOnly)
        .start()
        .await
        .unwrap();
    let get = |path: &'static str| {
        send(
            Request::get(server.uri_for(path))
                .body(Full::default())
                .unwrap(),
        )
    };
    let metadata = get("/.well-known/oauth-authorization-server").await;
    assert_eq!(metadata.status, StatusCode::OK);
    let body = metadata.json();
    assert_eq!(body["issuer"], server.issuer());
    assert_eq!(body["token_endpoint"], server.token_endpoint());
    assert!(
        body["token_endpoint_auth_methods_supported"]
            .as_array()
            .unwrap()
            .contains(&"private_key_jwt".into())
    );
    assert_eq!(
        get("/.well-known/openid-configuration").await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(server.counters().discovery_requests, 2);

    // A doubled slash says why it is not found.
    let doubled = get("//token").await;
    assert_eq!(doubled.status, StatusCode::NOT_FOUND);
    assert!(
        doubled.json()["error_description"]
            .as_str()
            .unwrap()
            .contains("trailing slash")
    );
    let wrong_method = send(
        Request::get(server.token_endpoint())
            .body(Full::default())
            .unwrap(),
    )
    .await;
    assert_eq!(
        (wrong_method.status, wrong_method.header(ALLOW)),
        (StatusCode::METHOD_NOT_ALLOWED, "POST")
    );
    let not_a_form = send(
        Request::builder()
            .method(Method::POST)
            .uri(server.token_endpoint())
            .header(CONTENT_TYPE, "application/json")
            .body(Full::from(r#"{"grant_type":"client_credentials"}"#))
            .unwrap(),
    )
    .await;
    assert_eq!(not_a_form.error(), "invalid_request");
    assert_eq!(server.counters().token_requests, 1);
    assert_eq!(AuthServerCounters::default().token_requests, 0);
}
