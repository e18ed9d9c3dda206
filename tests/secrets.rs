//! No token ever shows: not in `Debug` or `Display` of any public type or error, not in any
//! `tracing` event or span field at TRACE level, not in any metric's name or label, and the
//! header carrying it is marked sensitive.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use http::header::AUTHORIZATION;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use tokio::time::advance;
use tower::{Layer, Service, ServiceExt};
use tower_bearer::{BearerAuthLayer, ReplayBody, Scope, TokenCache, TokenError};

const ACCESS: [&str; 3] = [
    "ACCESS-0-f1b2c3d4e5",
    "ACCESS-1-a9b8c7d6e5",
    "ACCESS-2-0011223344",
];
const REFRESH: &str = "REFRESH-def50200cafe";

/// The name and labels of every metric recorded in this test process so far, one a line.
fn metrics_recorded() -> String {
    use metrics_util::debugging::{DebuggingRecorder, Snapshotter};
    static RECORDED: std::sync::OnceLock<Snapshotter> = std::sync::OnceLock::new();
    let snapshotter = RECORDED.get_or_init(|| {
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        recorder.install().expect("the only recorder");
        snapshotter
    });
    let mut text = String::new();
    for (key, _, description, _) in snapshotter.snapshot().into_vec() {
        let key = key.key();
        text.push_str(key.name());
        for label in key.labels() {
            text.push_str(&format!(" {}={}", label.key(), label.value()));
        }
        if let Some(description) = description {
            text.push_str(&format!(" ({description})"));
        }
        text.push('\n');
    }
    text
}

fn assert_no_secret(text: &str) {
    for secret in ACCESS.iter().chain([&REFRESH]) {
        assert!(!text.contains(secret), "{secret} leaked into: {text}");
    }
}

#[tokio::test(start_paused = true)]
async fn no_token_in_debug_display_or_trace_output() {
    let (captured, _guard) = capture_this_thread();
    metrics_recorded();

    let (refresher, mut handle) = refresher();
    // A name is the one label a user sets. No jitter: the background refresh below starts a
    // minute before expiry, which a start drawn late in the window would not have reached.
    let cache = TokenCache::builder(refresher)
        .name("accounts")
        .refresh_jitter(0.0)
        .build();
    let api = Api::rejecting(ACCESS[0]);
    let sensitive = Arc::new(Mutex::new(Vec::new()));
    let recording = {
        let sensitive = sensitive.clone();
        tower::service_fn(move |request: Request<ReplayBody<Full<bytes::Bytes>>>| {
            sensitive
                .lock()
                .unwrap()
                .push(request.headers()[AUTHORIZATION].is_sensitive());
            let mut api = api.clone();
            async move { api.call(request).await }
        })
    };
    let layer = BearerAuthLayer::from_cache(cache.clone(), Scope::any());
    let mut service = layer.clone().layer(recording);

    // Initial refresh, a refused token, a forced refresh and a retry.
    let call = tokio::spawn(service.clone().oneshot(get("http://api.test/")));
    answer(
        &mut handle,
        token(ACCESS[0], HOUR).with_refresh_token(REFRESH),
    )
    .await;
    assert_eq!(
        call.await.unwrap().unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    advance(Duration::from_secs(10)).await;
    let call = tokio::spawn(service.clone().oneshot(get("http://api.test/")));
    let asked = answer(
        &mut handle,
        token(ACCESS[1], HOUR).with_refresh_token(REFRESH),
    )
    .await;
    assert_eq!(call.await.unwrap().unwrap().status(), StatusCode::OK);

    // A background refresh that fails, then a failure every waiter sees.
    advance(HOUR - Duration::from_secs(60)).await;
    service
        .clone()
        .oneshot(get("http://api.test/"))
        .await
        .unwrap();
    let (_, respond) = next_refresh(&mut handle).await;
    respond.send_error(format!("refused {}", "without secrets"));
    until(|| cache.stats().backing_off.is_some()).await;
    advance(Duration::from_secs(60)).await;
    let call = tokio::spawn(service.clone().oneshot(get("http://api.test/")));
    let (_, respond) = next_refresh(&mut handle).await;
    respond.send_error("down");
    let err = call.await.unwrap().unwrap_err();
    let token_err = TokenError::find(&*err).unwrap().clone();

    let token = token(ACCESS[2], HOUR).with_refresh_token(REFRESH);
    let future = service.call(get("http://api.test/"));
    let debug = format!(
        "{token:?} {asked:?} {cache:?} {:?} {layer:?} {service:?} {future:?} {err:?} {err} \
         {token_err:?} {token_err} {:?} {:?}",
        cache.stats(),
        Response::new(ReplayBody::new(Full::new(bytes::Bytes::from_static(
            ACCESS[2].as_bytes()
        ))))
        .body(),
        tower_bearer::Scope::any(),
    );
    assert_no_secret(&debug);

    let trace = captured.text();
    assert!(trace.contains("token refresh started"), "{trace}");
    assert!(trace.contains("401"), "{trace}");
    assert!(trace.contains("token refresh failed"), "{trace}");
    // Spans too, with the fields recorded on them at their close.
    assert!(trace.contains("tower_bearer.refresh{"), "{trace}");
    assert!(trace.contains("outcome=\"success\""), "{trace}");
    // The refresher's own error is logged, not just its outermost wrapper.
    assert!(
        trace.contains("error=could not get a token: down"),
        "{trace}"
    );
    assert_no_secret(&trace);
    let metrics = metrics_recorded();
    assert!(
        metrics.contains("tower_bearer.tokens.refused cache=accounts"),
        "{metrics}"
    );
    assert_no_secret(&metrics);

    assert!(sensitive.lock().unwrap().iter().all(|s| *s));
    assert!(!sensitive.lock().unwrap().is_empty());
}

// ===== api.video, over loopback =====

const KEY: &str = "KEY-5ecr3t-9d8c7b6a5f4e";

/// A hyper server on 127.0.0.1 that answers every request with a redirect to `to`, and
/// records whether each carried an `Authorization` header.
async fn redirector(to: String) -> (String, Arc<Mutex<Vec<bool>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let uri = format!("http://{}/", listener.local_addr().unwrap());
    let carried = Arc::new(Mutex::new(Vec::new()));
    let seen = carried.clone();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let (to, seen) = (to.clone(), seen.clone());
            let handler =
                hyper::service::service_fn(move |request: Request<hyper::body::Incoming>| {
                    seen.lock()
                        .unwrap()
                        .push(request.headers().contains_key(AUTHORIZATION));
                    let response = Response::builder()
                        .status(StatusCode::FOUND)
                        .header(http::header::LOCATION, to.as_str())
                        .body(Full::<bytes::Bytes>::default());
                    std::future::ready(response)
                });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), handler),
            );
        }
    });
    (uri, carried)
}

/// Login, the refresh-token grant, the fallback to the API key after a revocation, a 401
/// and its retry, failures (malformed, 500, 429, a wrong key), requests outside the scope
/// and a redirect to another origin, through `FollowRedirect`: no API key, access token or
/// refresh token in the `Debug` or `Display` of any public type or error, nor in anything
/// logged at TRACE; every `Authorization` value sent is sensitive; none leaves the scope.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_through_the_api_video_flows() {
    use http_body_util::BodyExt;
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;
    use tower::ServiceBuilder;
    use tower_bearer::{RefreshReason, Scope, Token, TokenRequest};
    use tower_bearer_apivideo::{ApiVideo, ApiVideoError};
    use tower_bearer_mock::apivideo::{Chaos, Failure, MockServer};
    use tower_http::follow_redirect::FollowRedirectLayer;

    let logs = capture_globally();
    metrics_recorded();
    let server = MockServer::builder().api_key(KEY).start().await.unwrap();
    let elsewhere = MockServer::builder()
        .api_key("another-key")
        .start()
        .await
        .unwrap();
    let (redirecting, carried) = redirector(elsewhere.uri_for("/videos")).await;

    let client =
        Client::builder(TokioExecutor::new()).build_http::<ReplayBody<Full<bytes::Bytes>>>();
    let sensitive = Arc::new(Mutex::new(Vec::new()));
    let recording = {
        let (sensitive, client) = (sensitive.clone(), client.clone());
        tower::service_fn(move |request: Request<ReplayBody<Full<bytes::Bytes>>>| {
            if let Some(value) = request.headers().get(AUTHORIZATION) {
                sensitive.lock().unwrap().push(value.is_sensitive());
            }
            client.request(request)
        })
    };
    let api = ApiVideo::with_base_uri(server.uri(), KEY, client.clone())
        .unwrap()
        .timeout(Duration::from_secs(5));
    let cache = TokenCache::builder(api.clone())
        .min_token_age(Duration::ZERO)
        .backoff(Duration::ZERO, Duration::ZERO)
        .build();
    let layer = BearerAuthLayer::from_cache(
        cache.clone(),
        Scope::origins([server.uri_for("/"), redirecting.clone()]).unwrap(),
    );
    let service = ServiceBuilder::new()
        .layer(FollowRedirectLayer::new())
        .layer(layer.clone())
        .service(recording);
    let get = |uri: String| Request::get(uri).body(Full::default()).unwrap();
    let send = |uri: String| {
        let service = service.clone();
        async move {
            let response = service.oneshot(get(uri)).await.unwrap();
            let status = response.status();
            response.into_body().collect().await.unwrap();
            status
        }
    };

    let mut secrets = vec![KEY.to_owned()];
    let mut printed = String::new();
    let mut remember = |token: &Token, printed: &mut String| {
        secrets.push(token.expose_access_token().to_owned());
        if let Some(refresh) = token.expose_refresh_token() {
            secrets.push(refresh.to_owned());
        }
        printed.push_str(&format!(
            "{token:?} {:?}\n",
            TokenRequest::new(RefreshReason::Ahead, Some(token.clone()))
        ));
    };

    // Login with the key.
    assert_eq!(send(server.uri_for("/videos")).await, StatusCode::OK);
    remember(&cache.token().await.unwrap(), &mut printed);
    // A refused valid token: a forced refresh by the refresh-token grant, the retry refused too.
    server.set_chaos(Chaos::default().spurious_unauthorized_rate(1.0));
    assert_eq!(
        send(server.uri_for("/videos")).await,
        StatusCode::UNAUTHORIZED
    );
    server.set_chaos(Chaos::default());
    remember(&cache.token().await.unwrap(), &mut printed);
    // Every token revoked: a 401, the refresh token refused, the fallback to the key, the
    // retry accepted.
    server.revoke_all();
    assert_eq!(send(server.uri_for("/videos")).await, StatusCode::OK);
    remember(&cache.token().await.unwrap(), &mut printed);
    let counters = server.counters();
    assert_eq!(counters.api_key_logins, 2, "{counters:?}");
    // Two grants: one for the first 401, one for the retry's (which goes back to the caller,
    // but still replaces the token for the next request).
    assert_eq!(counters.refreshes, 2, "{counters:?}");
    assert_eq!(counters.rejected_refresh_tokens, 1, "{counters:?}");
    assert_eq!(cache.stats().retried, 2);

    // Outside the scope, directly and through a redirect: no token arrives.
    assert_eq!(
        send(elsewhere.uri_for("/videos")).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(send(redirecting.clone()).await, StatusCode::UNAUTHORIZED);
    assert_eq!(
        *carried.lock().unwrap(),
        [true],
        "the redirecting origin is in scope"
    );
    let outside = elsewhere.counters();
    assert_eq!(outside.unauthorized_missing, 2, "{outside:?}");
    assert_eq!(outside.unauthorized, 2, "{outside:?}");

    // Failures: each provider error, through the cache and straight from the provider.
    let mut errors: Vec<tower::BoxError> = Vec::new();
    for failure in [
        Failure::Malformed,
        Failure::Status(StatusCode::INTERNAL_SERVER_ERROR),
        Failure::RateLimited {
            retry_after: Duration::from_millis(1),
        },
        Failure::Status(StatusCode::BAD_REQUEST),
    ] {
        server.revoke_all();
        // The refresh token is refused (revoked) first; the key's login meets the failure.
        server.fail_next_auth(1, Failure::Status(StatusCode::BAD_REQUEST));
        server.fail_next_auth(1, failure);
        let error = service
            .clone()
            .oneshot(get(server.uri_for("/videos")))
            .await
            .unwrap_err();
        printed.push_str(&format!("{failure:?}\n"));
        errors.push(error);
    }
    let wrong = ApiVideo::with_base_uri(server.uri(), "KEY-wrong-5ecr3t", client.clone()).unwrap();
    secrets.push("KEY-wrong-5ecr3t".to_owned());
    let rejected = tower::ServiceExt::oneshot(
        wrong.clone(),
        TokenRequest::new(RefreshReason::Initial, None),
    )
    .await
    .unwrap_err();
    assert!(matches!(rejected, ApiVideoError::Rejected { .. }));
    for error in &errors {
        printed.push_str(&describe(&**error));
        let token = TokenError::find(&**error).expect("a TokenError");
        printed.push_str(&format!("{:?} {}\n", token.kind(), token.reason()));
    }
    printed.push_str(&describe(&rejected));

    // Every public type that can be printed.
    let future = tower::Service::call(
        &mut layer.layer(tower::service_fn(
            |_: Request<ReplayBody<Full<bytes::Bytes>>>| async {
                Ok::<_, std::convert::Infallible>(Response::new(Full::<bytes::Bytes>::default()))
            },
        )),
        get(server.uri_for("/videos")),
    );
    printed.push_str(&format!(
        "{api:?} {wrong:?} {cache:?} {:?} {:?} {layer:?} {future:?} {:?} {:?} {server:?} {:?} {:?} {:?} \
         {:?} {:?} {:?}\n",
        cache.stats(),
        cache.stats().total(),
        tower_bearer::TokenCache::builder(api.clone()),
        tower::ServiceExt::oneshot(api.clone(), TokenRequest::new(RefreshReason::Initial, None)),
        server.counters(),
        MockServer::builder().api_key(KEY),
        server.last_auth_headers(),
        Scope::origin(server.uri()).unwrap(),
        Token::bearer("bad token").unwrap_err(),
        Scope::origin("not an origin").unwrap_err(),
    ));

    let logs = logs.text();
    // The capture works: these flows' events are in it.
    for event in [
        "token refresh started",
        "api.video auth request",
        "the refresh token was refused; asking with the provider's own credential",
        "token rejected: forcing a refresh",
        "retrying with a new token after the server rejected the old one",
        "token refresh failed",
    ] {
        assert!(logs.contains(event), "no {event:?} in the logs");
    }
    for span in ["tower_bearer.refresh{", "tower_bearer.http{"] {
        assert!(logs.contains(span), "no {span:?} in the logs");
    }
    let metrics = metrics_recorded();
    assert!(metrics.contains("tower_bearer.refreshes"), "{metrics}");
    assert!(secrets.len() >= 7, "{}", secrets.len());
    assert!(printed.contains("[REDACTED]"), "{printed}");
    for secret in &secrets {
        assert!(!printed.contains(secret.as_str()), "printed: {printed}");
        assert!(!logs.contains(secret.as_str()), "a secret was logged");
        assert!(!metrics.contains(secret.as_str()), "a secret in a metric");
    }
    let sensitive = sensitive.lock().unwrap();
    assert!(sensitive.len() >= 5, "{}", sensitive.len());
    assert!(sensitive.iter().all(|s| *s));
}

// ===== OAuth 2.0, over loopback =====

const CLIENT_SECRET: &str = "CLIENT-s3cr3t+with %reserved";
const SUBJECT_TOKEN: &str = "SUBJECT-eyJhbGciOiJSUzI1NiJ9.workload";

/// Every grant and client authentication method, rotation, a revocation recovered by a
/// retry, and failures: no client secret, private key, assertion, subject token, access or
/// refresh token in the `Debug` or `Display` of any public type or error, nor in anything
/// logged at TRACE; the provider's `Authorization: Basic` is sensitive, as is every bearer
/// header the layer sends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_through_the_oauth2_flows() {
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;
    use tower::ServiceBuilder;
    use tower_bearer::{RefreshReason, Scope, TokenRequest};
    use tower_bearer_mock::oauth2::{Fault, MockAuthServer, MockClient};
    use tower_bearer_oauth2::jose::SigningKey;
    use tower_bearer_oauth2::{AuthMethod, Grant, JwtBearer, OAuth2, SubjectToken};

    let logs = capture_globally();
    metrics_recorded();
    let pem = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/keys/es256.pkcs8.pem"
    ))
    .unwrap();
    let key = SigningKey::from_pem(&pem).unwrap().with_key_id("k1");
    let server = MockAuthServer::builder()
        .register(MockClient::secret_basic("basic", CLIENT_SECRET))
        .register(MockClient::secret_post("post", CLIENT_SECRET))
        .register(MockClient::private_key_jwt("jwt", key.public_jwk()))
        .register(MockClient::public("public"))
        .assertion_issuer("svc@example", key.public_jwk())
        .subject_token(SUBJECT_TOKEN)
        .refresh_tokens(true)
        .start()
        .await
        .unwrap();

    let client =
        Client::builder(TokioExecutor::new()).build_http::<ReplayBody<Full<bytes::Bytes>>>();
    let sensitive = Arc::new(Mutex::new(Vec::new()));
    let recording = {
        let (sensitive, client) = (sensitive.clone(), client.clone());
        tower::service_fn(move |request: Request<ReplayBody<Full<bytes::Bytes>>>| {
            if let Some(value) = request.headers().get(AUTHORIZATION) {
                sensitive.lock().unwrap().push(value.is_sensitive());
            }
            client.request(request)
        })
    };
    let builder = || {
        OAuth2::builder()
            .token_endpoint(server.token_endpoint())
            .timeout(Duration::from_secs(5))
    };
    let held = server.issue_refresh_token("public");
    // Each provider, and whether a revocation can be recovered from (a held refresh token
    // has no other grant to fall back to: it goes first, before any revocation).
    let providers = [
        (
            builder()
                .client_id("public")
                .grant(Grant::refresh_token(held.clone())),
            false,
        ),
        (
            builder().client_id("basic").client_secret(CLIENT_SECRET),
            true,
        ),
        (
            builder()
                .client_id("post")
                .client_secret(CLIENT_SECRET)
                .auth_method(AuthMethod::ClientSecretPost),
            true,
        ),
        (builder().client_id("jwt").private_key(key.clone()), true),
        (
            builder().grant(Grant::jwt_bearer(JwtBearer::new(
                key.clone(),
                "svc@example",
            ))),
            true,
        ),
        (
            builder()
                .client_id("basic")
                .client_secret(CLIENT_SECRET)
                .grant(Grant::token_exchange(SubjectToken::from_fn(|| {
                    Ok(SUBJECT_TOKEN.to_owned())
                }))),
            true,
        ),
    ];
    let mut secrets = vec![CLIENT_SECRET.to_owned(), SUBJECT_TOKEN.to_owned(), held];
    // The private key's PEM body, line by line.
    secrets.extend(
        pem.lines()
            .filter(|line| !line.starts_with("-----"))
            .map(str::to_owned),
    );
    let mut printed = String::new();

    for (builder, revocable) in providers {
        printed.push_str(&format!("{builder:?}\n"));
        let provider = builder.build(recording.clone()).unwrap();
        printed.push_str(&format!("{provider:?}\n"));
        let cache = TokenCache::builder(provider.clone())
            .min_token_age(Duration::ZERO)
            .build();
        let layer =
            BearerAuthLayer::from_cache(cache.clone(), Scope::origin(server.uri()).unwrap());
        let api = ServiceBuilder::new()
            .layer(layer)
            .service(recording.clone());
        let call = || {
            let api = api.clone();
            let uri = server.uri_for("/api/secrets");
            async move {
                let request = Request::get(uri).body(Full::default()).unwrap();
                api.oneshot(request).await.unwrap().status()
            }
        };
        assert_eq!(call().await, StatusCode::OK);
        let token = cache.token().await.unwrap();
        secrets.push(token.expose_access_token().to_owned());
        secrets.extend(token.expose_refresh_token().map(str::to_owned));
        // A refresh (rotation), then a revocation recovered by one retry.
        let refreshed = tower::ServiceExt::oneshot(
            provider.clone(),
            TokenRequest::new(RefreshReason::Expired, Some(token.clone())),
        )
        .await
        .unwrap();
        secrets.push(refreshed.expose_access_token().to_owned());
        secrets.extend(refreshed.expose_refresh_token().map(str::to_owned));
        printed.push_str(&format!(
            "{token:?} {refreshed:?} {:?}\n",
            TokenRequest::new(RefreshReason::Ahead, Some(refreshed.clone()))
        ));
        if revocable {
            server.revoke_all();
            assert_eq!(call().await, StatusCode::OK);
            let token = cache.token().await.unwrap();
            secrets.push(token.expose_access_token().to_owned());
            secrets.extend(token.expose_refresh_token().map(str::to_owned));
        }
    }

    // Failures, straight from a provider: each error with its whole source chain.
    let provider = builder()
        .client_id("basic")
        .client_secret(CLIENT_SECRET)
        .build(recording.clone())
        .unwrap();
    for fault in [
        Fault::Malformed,
        Fault::Status(StatusCode::BAD_GATEWAY),
        Fault::Error {
            status: StatusCode::UNAUTHORIZED,
            code: "invalid_client",
        },
        Fault::RateLimited {
            retry_after: Duration::from_secs(3),
        },
    ] {
        server.fail_next_token_requests(1, fault);
        let error = tower::ServiceExt::oneshot(
            provider.clone(),
            TokenRequest::new(RefreshReason::Initial, None),
        )
        .await
        .unwrap_err();
        printed.push_str(&describe(&error));
    }
    let wrong = builder()
        .client_id("basic")
        .client_secret("WRONG-s3cr3t")
        .build(recording.clone())
        .unwrap();
    secrets.push("WRONG-s3cr3t".to_owned());
    let refused =
        tower::ServiceExt::oneshot(wrong, TokenRequest::new(RefreshReason::Initial, None))
            .await
            .unwrap_err();
    printed.push_str(&describe(&refused));

    printed.push_str(&format!(
        "{server:?} {:?} {:?} {:?} {:?} {key:?} {:?} {:?}\n",
        server.counters(),
        server.token_requests(),
        MockAuthServer::builder().register(MockClient::secret_basic("x", CLIENT_SECRET)),
        MockClient::secret_post("y", CLIENT_SECRET),
        Grant::refresh_token("REFRESH-held-0001"),
        SubjectToken::from_file("/var/run/secrets/tokens/sa"),
    ));
    secrets.push("REFRESH-held-0001".to_owned());

    let logs = logs.text();
    for event in [
        "OAuth 2.0 token request",
        "mock OAuth 2.0 server request",
        "the refresh token was refused; asking with the provider's own credential",
        "mock OAuth 2.0 server: token request refused",
    ] {
        assert!(logs.contains(event), "no {event:?} in the logs");
    }
    for span in [
        "tower_bearer.refresh{",
        "tower_bearer.http{",
        "provider=\"oauth2\"",
    ] {
        assert!(logs.contains(span), "no {span:?} in the logs");
    }
    let metrics = metrics_recorded();
    assert!(metrics.contains("tower_bearer.refreshes"), "{metrics}");
    assert!(printed.contains("[REDACTED]"), "{printed}");
    for secret in &secrets {
        assert!(
            !printed.contains(secret.as_str()),
            "{secret} printed: {printed}"
        );
        assert!(!logs.contains(secret.as_str()), "{secret} was logged");
        assert!(!metrics.contains(secret.as_str()), "{secret} in a metric");
    }
    let sensitive = sensitive.lock().unwrap();
    // Bearer headers from the layer, and the provider's own Basic headers.
    assert!(sensitive.len() >= 20, "{}", sensitive.len());
    assert!(sensitive.iter().all(|s| *s));
}
