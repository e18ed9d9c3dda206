//! Which origins get the token, and which answers count, with tower-http's
//! `FollowRedirectLayer` outside the layer and below it; and what a request sent without the
//! token for being out of scope leaves behind (a count, one warning). Against recording
//! servers on loopback.

mod common;
mod reqwest_support;

use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use http::header::{AUTHORIZATION, LOCATION, WWW_AUTHENTICATE};
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use reqwest_support::{Server, accepts, answer, believing, numbered_tokens};
use tower::{BoxError, Layer, ServiceBuilder, ServiceExt, service_fn};
use tower_bearer::reqwest::BearerAuthMiddleware;
use tower_bearer::{BearerAuthLayer, ReplayBody, Scope, Token, TokenRequest};
use tower_bearer_oauth2::dpop::DpopKey;
use tower_bearer_oauth2::jose::Algorithm;
use tower_http::follow_redirect::FollowRedirectLayer;

/// Long enough for loopback, short enough that a hang fails the test.
const BOUND: Duration = Duration::from_secs(10);

fn http_client() -> Client<HttpConnector, ReplayBody<Full<Bytes>>> {
    Client::builder(TokioExecutor::new()).build_http()
}

fn get(uri: &str) -> Request<Full<Bytes>> {
    Request::get(uri).body(Full::default()).unwrap()
}

/// 302 to `to`.
fn redirect(to: String) -> impl Fn(&reqwest_support::Seen) -> Response<Full<Bytes>> {
    move |_| {
        let mut response = answer(StatusCode::FOUND);
        let location = HeaderValue::from_str(&to).unwrap();
        response.headers_mut().insert(LOCATION, location);
        response
    }
}

fn authorizations(server: &Server) -> Vec<(String, Option<String>)> {
    server
        .seen()
        .into_iter()
        .map(|seen| (seen.target, seen.authorization))
        .collect()
}

/// With `FollowRedirectLayer` outside the layer, each hop goes through the layer again: the
/// API's origin gets the token, and the other origin it redirects to does not, though the
/// redirect is followed. With `Scope::any()` the other origin would get it.
#[tokio::test]
async fn a_redirect_to_another_origin_followed_outside_the_layer_carries_no_token() {
    let elsewhere = Server::start(|_| answer(StatusCode::OK)).await;
    let api = Server::start(redirect(elsewhere.url("/upload?signature=s3cr3t"))).await;
    let (refresher, _) = numbered_tokens();
    let layer = BearerAuthLayer::new(refresher, Scope::origin(api.origin()).unwrap());
    let cache = layer.cache().clone();
    let client = ServiceBuilder::new()
        .layer(FollowRedirectLayer::new())
        .layer(layer)
        .service(http_client());

    let response = tokio::time::timeout(BOUND, client.oneshot(get(&api.url("/videos"))))
        .await
        .expect("answered")
        .unwrap();

    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        authorizations(&api),
        [("/videos".to_owned(), Some("Bearer t1".to_owned()))]
    );
    assert_eq!(
        authorizations(&elsewhere),
        [("/upload?signature=s3cr3t".to_owned(), None)]
    );
    assert_eq!(cache.stats().out_of_scope, 1);
}

/// Every request sent without the token for being out of scope is counted; the first, and
/// only the first, is logged, without its query or userinfo.
#[tokio::test]
async fn requests_out_of_scope_are_counted_and_the_first_is_logged() {
    let (logs, _guard) = common::capture_this_thread();
    let inner = service_fn(|request: Request<ReplayBody<Full<Bytes>>>| async move {
        assert!(!request.headers().contains_key(AUTHORIZATION));
        Ok::<_, BoxError>(Response::new(Full::<Bytes>::default()))
    });
    let (refresher, issued) = numbered_tokens();
    let layer = BearerAuthLayer::new(refresher, Scope::origin("https://api.test").unwrap());
    let cache = layer.cache().clone();
    let service = layer.layer(inner);

    for uri in [
        "https://uploader:pa55word@cdn.test/videos/v1.mp4?signature=s3cr3t",
        "https://cdn.test/videos/v2.mp4?signature=0th3r",
        "/relative/path",
    ] {
        service.clone().oneshot(get(uri)).await.unwrap();
    }

    let stats = cache.stats();
    assert_eq!(stats.out_of_scope, 3);
    assert_eq!(stats.total().started, 0, "no token was asked for");
    assert_eq!(issued.load(std::sync::atomic::Ordering::SeqCst), 0);
    assert!(
        stats
            .to_string()
            .contains("; 3 sent without the token (out of scope);"),
        "{stats}"
    );
    assert!(
        format!("{stats:?}").contains("out_of_scope: 3"),
        "{stats:?}"
    );
    let logs = logs.text();
    assert_eq!(
        logs.matches("outside the layer's scope").count(),
        1,
        "{logs}"
    );
    let warning = logs.lines().find(|line| line.contains(" WARN ")).unwrap();
    assert!(
        warning.ends_with(" uri=https://cdn.test/videos/v1.mp4"),
        "{warning}"
    );
    for secret in ["s3cr3t", "pa55word", "uploader"] {
        assert!(!logs.contains(secret), "{secret} in {logs}");
    }
}

/// The reqwest middleware counts and logs the same.
#[tokio::test]
async fn the_reqwest_middleware_counts_requests_out_of_scope() {
    let (logs, _guard) = common::capture_this_thread();
    let api = Server::start(accepts("t1")).await;
    let elsewhere = Server::start(|_| answer(StatusCode::OK)).await;
    let (refresher, _) = numbered_tokens();
    let auth = BearerAuthMiddleware::new(refresher, Scope::origin(api.origin()).unwrap());
    let cache = auth.cache().clone();
    let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(auth)
        .build();

    for target in ["/a?signature=s3cr3t", "/b"] {
        let sent = client.get(elsewhere.url(target)).send();
        let response = tokio::time::timeout(BOUND, sent).await.unwrap().unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }
    let response = tokio::time::timeout(BOUND, client.get(api.url("/c")).send())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);

    assert_eq!(
        authorizations(&elsewhere),
        [
            ("/a?signature=s3cr3t".to_owned(), None),
            ("/b".to_owned(), None)
        ]
    );
    assert_eq!(cache.stats().out_of_scope, 2);
    let logs = logs.text();
    assert_eq!(
        logs.matches("outside the layer's scope").count(),
        1,
        "{logs}"
    );
    let warning = logs.lines().find(|line| line.contains(" WARN ")).unwrap();
    assert!(
        warning.ends_with(&format!(" uri={}", elsewhere.url("/a"))),
        "{warning}"
    );
    assert!(!logs.contains("s3cr3t"), "{logs}");
}

/// With `FollowRedirectLayer` below the layer, the layer sees only the last answer. The API
/// redirects to another origin, which refuses: the token never went there, so the refusal
/// neither replaces the token nor sends the request again, with retries on or off.
#[tokio::test]
async fn a_refusal_from_the_other_origin_below_the_layer_neither_refreshes_nor_retries() {
    let elsewhere = Server::start(accepts("a token it never gets")).await;
    let api = Server::start(redirect(elsewhere.url("/moved"))).await;
    for retry in [true, false] {
        let (refresher, issued) = numbered_tokens();
        let layer =
            BearerAuthLayer::from_cache(believing(refresher), Scope::origin(api.origin()).unwrap())
                .retry_unauthorized(retry);
        let cache = layer.cache().clone();
        let client = ServiceBuilder::new()
            .layer(layer)
            .layer(FollowRedirectLayer::new())
            .service(http_client());

        let sent = client.oneshot(get(&api.url("/videos")));
        let response = tokio::time::timeout(BOUND, sent).await.unwrap().unwrap();

        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "retry {retry}");
        assert_eq!(
            issued.load(Ordering::SeqCst),
            1,
            "retry {retry}: no refresh"
        );
        let stats = cache.stats();
        assert_eq!((stats.unauthorized, stats.retried), (0, 0), "retry {retry}");
    }
    // Each time: the API once, with the token; the other origin once, without.
    assert_eq!(
        authorizations(&api),
        [
            ("/videos".to_owned(), Some("Bearer t1".to_owned())),
            ("/videos".to_owned(), Some("Bearer t1".to_owned())),
        ]
    );
    assert_eq!(
        authorizations(&elsewhere),
        [("/moved".to_owned(), None), ("/moved".to_owned(), None)]
    );
}

/// The same with the token already held, the common case: a request sent with it, retries on
/// or off, is redirected below the layer to the other origin, whose refusal neither replaces
/// the token nor sends the request again.
#[tokio::test]
async fn a_refusal_from_the_other_origin_below_the_layer_leaves_a_held_token_alone() {
    let elsewhere = Server::start(accepts("a token it never gets")).await;
    let moved = elsewhere.url("/moved");
    let api = Server::start(move |seen| match seen.target.as_str() {
        "/moving" => redirect(moved.clone())(seen),
        _ => answer(StatusCode::OK),
    })
    .await;
    for retry in [true, false] {
        let (refresher, issued) = numbered_tokens();
        let layer =
            BearerAuthLayer::from_cache(believing(refresher), Scope::origin(api.origin()).unwrap())
                .retry_unauthorized(retry);
        let cache = layer.cache().clone();
        let client = ServiceBuilder::new()
            .layer(layer)
            .layer(FollowRedirectLayer::new())
            .service(http_client());
        let warm = client.clone().oneshot(get(&api.url("/videos")));
        let response = tokio::time::timeout(BOUND, warm).await.unwrap().unwrap();
        assert_eq!(response.status(), StatusCode::OK, "retry {retry}");

        let moving = client.oneshot(get(&api.url("/moving")));
        let response = tokio::time::timeout(BOUND, moving).await.unwrap().unwrap();

        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "retry {retry}");
        assert_eq!(
            issued.load(Ordering::SeqCst),
            1,
            "retry {retry}: no refresh"
        );
        let stats = cache.stats();
        assert_eq!((stats.unauthorized, stats.retried), (0, 0), "retry {retry}");
    }
    assert_eq!(elsewhere.seen().len(), 2, "once each time, never again");
}

/// A redirect below the layer that stays on the API's origin takes the token along, so the
/// refusal at its end is the API's: it replaces the token, and the request is sent again.
#[tokio::test]
async fn a_refusal_after_a_redirect_within_the_origin_below_the_layer_replaces_the_token() {
    // A relative `Location`: the same origin.
    let api = Server::start(|seen| match seen.target.as_str() {
        "/moving" => redirect("/moved".to_owned())(seen),
        _ => accepts("t2")(seen),
    })
    .await;
    let (refresher, issued) = numbered_tokens();
    let layer =
        BearerAuthLayer::from_cache(believing(refresher), Scope::origin(api.origin()).unwrap());
    let cache = layer.cache().clone();
    let client = ServiceBuilder::new()
        .layer(layer)
        .layer(FollowRedirectLayer::new())
        .service(http_client());

    let moving = client.oneshot(get(&api.url("/moving")));
    let response = tokio::time::timeout(BOUND, moving).await.unwrap().unwrap();

    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        issued.load(Ordering::SeqCst),
        2,
        "the refused token replaced"
    );
    let stats = cache.stats();
    assert_eq!((stats.unauthorized, stats.retried), (1, 1));
}

/// The other origin's `DPoP-Nonce` is not learned for the API: its nonce challenge sends
/// nothing again, and the API's next proof carries no nonce of its.
#[tokio::test]
async fn a_nonce_from_the_other_origin_below_the_layer_is_not_learned() {
    let elsewhere = Server::start(|_| {
        let mut challenge = answer(StatusCode::UNAUTHORIZED);
        let headers = challenge.headers_mut();
        headers.insert(
            WWW_AUTHENTICATE,
            HeaderValue::from_static(r#"DPoP error="use_dpop_nonce""#),
        );
        headers.insert("dpop-nonce", HeaderValue::from_static("nonce-of-elsewhere"));
        challenge
    })
    .await;
    let moved = elsewhere.url("/moved");
    let api = Server::start(move |seen| match seen.target.as_str() {
        "/moving" => redirect(moved.clone())(seen),
        _ => answer(StatusCode::OK),
    })
    .await;
    let key = DpopKey::generate(Algorithm::Es256).unwrap();
    let refresher = service_fn(move |_: TokenRequest| {
        let token = Token::bound("bound", &key);
        async move { Ok::<_, BoxError>(token?.expires_in(reqwest_support::HOUR)) }
    });
    let layer = BearerAuthLayer::new(refresher, Scope::origin(api.origin()).unwrap());
    let cache = layer.cache().clone();
    let client = ServiceBuilder::new()
        .layer(layer)
        .layer(FollowRedirectLayer::new())
        .service(http_client());

    let moving = client.clone().oneshot(get(&api.url("/moving")));
    let response = tokio::time::timeout(BOUND, moving).await.unwrap().unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let next = client.oneshot(get(&api.url("/next")));
    let response = tokio::time::timeout(BOUND, next).await.unwrap().unwrap();
    assert_eq!(response.status(), StatusCode::OK);

    let stats = cache.stats();
    assert_eq!((stats.nonce_retried, stats.unauthorized), (0, 0));
    assert_eq!(elsewhere.seen().len(), 1, "not sent again for its nonce");
    let proofs: Vec<_> = api.seen().into_iter().map(|seen| seen.dpop).collect();
    assert_eq!(proofs.len(), 2);
    let next_claims = claims(proofs[1].as_deref().expect("a proof"));
    assert!(next_claims.get("nonce").is_none(), "{next_claims}");
}

/// A DPoP proof's claims.
fn claims(proof: &str) -> serde_json::Value {
    use base64::Engine as _;
    let payload = proof.split('.').nth(1).unwrap();
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    serde_json::from_slice(&json).unwrap()
}
