//! What the reqwest middleware decides for each request and answer, against recording servers
//! on loopback: where the token goes (scope, redirects, the caller's own `Authorization`),
//! which answers replace it (the verdict), and the error when there is none.

mod reqwest_support;

use std::error::Error;
use std::time::Duration;

use http::header::{LOCATION, WWW_AUTHENTICATE};
use http::{HeaderValue, StatusCode};
use reqwest_middleware::ClientBuilder;
use reqwest_retry::RetryTransientMiddleware;
use reqwest_retry::policies::ExponentialBackoff;
use reqwest_support::*;
use tower::BoxError;
use tower_bearer::reqwest::BearerAuthMiddleware;
use tower_bearer::{
    BearerAuthLayer, Scope, TokenCache, TokenError, TokenErrorKind, TokenRequest, TokenVerdict,
};

fn client(auth: BearerAuthMiddleware, below: &Below) -> reqwest_middleware::ClientWithMiddleware {
    ClientBuilder::new(reqwest::Client::new())
        .with(auth)
        .with(below.clone())
        .build()
}

fn authorizations(server: &Server) -> Vec<Option<String>> {
    server
        .seen()
        .into_iter()
        .map(|seen| seen.authorization)
        .collect()
}

fn bearer(token: &str) -> Option<String> {
    Some(format!("Bearer {token}"))
}

#[tokio::test]
async fn another_origin_gets_no_token() {
    let api = Server::start(accepts("t1")).await;
    let elsewhere = Server::start(accepts("t1")).await;
    let (refresher, issued) = numbered_tokens();
    let auth = BearerAuthMiddleware::new(refresher, Scope::origin(api.origin()).unwrap());
    let below = Below::default();
    let client = client(auth, &below);

    let to_api = client.get(api.url("/a")).send().await.unwrap();
    let to_elsewhere = client.get(elsewhere.url("/b")).send().await.unwrap();

    assert_eq!(to_api.status(), StatusCode::OK);
    assert_eq!(authorizations(&api), [bearer("t1")]);
    // Refused, and not retried: the answer of a host the token never went to says nothing.
    assert_eq!(to_elsewhere.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(authorizations(&elsewhere), [None]);
    assert_eq!(issued.load(std::sync::atomic::Ordering::SeqCst), 1);
    // The token left marked sensitive.
    assert_eq!(below.sent(), [(bearer("t1"), true), (None, false)]);
}

/// reqwest follows redirects inside the client, below every middleware. It removes
/// `Authorization` on a redirect to another scheme, host or port, and keeps it within the
/// origin; the middleware does not take the other origin's 401 for a refusal of its token.
#[tokio::test]
async fn a_redirect_to_another_origin_leaves_the_token_behind() {
    let elsewhere = Server::start(accepts("t1")).await;
    let landing = elsewhere.url("/landing");
    let api = Server::start(move |seen: &Seen| {
        let to = match seen.target.as_str() {
            "/away" => landing.clone(),
            "/here" => "/landing".to_owned(),
            _ => return answer(StatusCode::OK),
        };
        let mut redirect = answer(StatusCode::TEMPORARY_REDIRECT);
        redirect
            .headers_mut()
            .insert(LOCATION, HeaderValue::from_str(&to).unwrap());
        redirect
    })
    .await;
    let (refresher, issued) = numbered_tokens();
    let auth = BearerAuthMiddleware::from_cache(
        believing(refresher),
        Scope::origin(api.origin()).unwrap(),
    );
    let below = Below::default();
    let client = client(auth, &below);

    let away = client.get(api.url("/away")).send().await.unwrap();
    assert_eq!(away.url().as_str(), elsewhere.url("/landing"));
    assert_eq!(away.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        authorizations(&elsewhere),
        [None],
        "reqwest removed the token"
    );
    // Sent once, and the token kept: the 401 came from where the token did not go.
    assert_eq!(authorizations(&api), [bearer("t1")]);
    assert_eq!(issued.load(std::sync::atomic::Ordering::SeqCst), 1);

    let here = client.get(api.url("/here")).send().await.unwrap();
    assert_eq!(here.status(), StatusCode::OK);
    assert_eq!(
        authorizations(&api),
        [bearer("t1"), bearer("t1"), bearer("t1")],
        "within the origin, the redirect kept the token"
    );
}

#[tokio::test]
async fn the_callers_own_authorization_is_kept() {
    let api = Server::start(accepts("theirs")).await;
    let (refresher, issued) = numbered_tokens();
    let client = client(
        BearerAuthMiddleware::new(refresher, Scope::any()),
        &Below::default(),
    );

    let theirs = client
        .get(api.url("/a"))
        .bearer_auth("theirs")
        .send()
        .await
        .unwrap();
    assert_eq!(theirs.status(), StatusCode::OK);
    let refused = client
        .get(api.url("/b"))
        .basic_auth("user", Some("password"))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);

    let seen = authorizations(&api);
    assert_eq!(seen[0], bearer("theirs"));
    assert!(seen[1].as_deref().unwrap().starts_with("Basic "));
    assert_eq!(seen.len(), 2, "their 401 is theirs: not retried");
    assert_eq!(
        issued.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "no token fetched"
    );
}

#[tokio::test]
async fn insufficient_scope_goes_back_without_a_refresh() {
    let api = Server::start(|seen: &Seen| {
        let status = match seen.target.as_str() {
            "/401" => StatusCode::UNAUTHORIZED,
            _ => StatusCode::FORBIDDEN,
        };
        let mut refused = answer(status);
        refused.headers_mut().insert(
            WWW_AUTHENTICATE,
            HeaderValue::from_static(
                r#"Bearer realm="api", error="insufficient_scope", scope="write""#,
            ),
        );
        refused
    })
    .await;
    let (refresher, issued) = numbered_tokens();
    let auth = BearerAuthMiddleware::from_cache(believing(refresher), Scope::any());
    let cache = auth.cache().clone();
    let client = client(auth, &Below::default());

    for (target, status) in [
        ("/401", StatusCode::UNAUTHORIZED),
        ("/403", StatusCode::FORBIDDEN),
    ] {
        let response = client.get(api.url(target)).send().await.unwrap();
        assert_eq!(response.status(), status);
    }

    assert_eq!(authorizations(&api), [bearer("t1"), bearer("t1")]);
    assert_eq!(issued.load(std::sync::atomic::Ordering::SeqCst), 1);
    assert_eq!(cache.stats().unauthorized, 0);
}

/// A request is sent at most twice; when the second answer refuses the new token too, it
/// goes back, and the cache still learns: the next request waits for another token rather
/// than try the refused one.
#[tokio::test]
async fn a_refused_retry_goes_back_and_still_tells_the_cache() {
    let api = Server::start(accepts("t3")).await;
    let (refresher, issued) = numbered_tokens();
    let client = client(
        BearerAuthMiddleware::from_cache(believing(refresher), Scope::any()),
        &Below::default(),
    );

    let refused = client.get(api.url("/a")).send().await.unwrap();
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(authorizations(&api), [bearer("t1"), bearer("t2")]);

    let next = client.get(api.url("/b")).send().await.unwrap();
    assert_eq!(next.status(), StatusCode::OK);
    assert_eq!(
        authorizations(&api),
        [bearer("t1"), bearer("t2"), bearer("t3")]
    );
    assert_eq!(issued.load(std::sync::atomic::Ordering::SeqCst), 3);
}

/// An API that answers 419 for an expired token, told through `verdict`; and the same
/// settings taken from a `BearerAuthLayer`.
#[tokio::test]
async fn a_verdict_of_your_own_decides() {
    let api = Server::start(|seen: &Seen| match seen.authorization.as_deref() {
        Some("Bearer t2") => answer(StatusCode::OK),
        _ => answer(StatusCode::from_u16(419).unwrap()),
    })
    .await;
    let verdict = |status: StatusCode, headers: &http::HeaderMap| match status.as_u16() {
        419 => TokenVerdict::Rejected,
        _ => TokenVerdict::of(status, headers),
    };

    let (refresher, _) = numbered_tokens();
    let by_default = client(
        BearerAuthMiddleware::from_cache(believing(refresher), Scope::any()),
        &Below::default(),
    );
    let response = by_default.get(api.url("/a")).send().await.unwrap();
    assert_eq!(
        response.status().as_u16(),
        419,
        "by default a 419 is not about the token"
    );

    let (refresher, _) = numbered_tokens();
    let layer = BearerAuthLayer::from_cache(believing(refresher), Scope::any())
        .verdict(verdict)
        .scope(Scope::origin(api.origin()).unwrap());
    let told = client(BearerAuthMiddleware::from(&layer), &Below::default());
    let response = told.get(api.url("/b")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        authorizations(&api),
        [bearer("t1"), bearer("t1"), bearer("t2")]
    );
    assert_eq!(
        layer.cache().stats().retried,
        1,
        "the layer's cache, shared"
    );
}

/// No token: the request is not sent, the error's one line says why, and `TokenError::find`
/// finds it in the error; under reqwest-retry, whose `RetryError` hides what it wraps from
/// `source()`, the one line still says why.
#[tokio::test]
async fn without_a_token_the_request_is_not_sent() {
    let api = Server::start(accepts("t1")).await;
    let down = tower::service_fn(|_: TokenRequest| async {
        Err::<tower_bearer::Token, BoxError>("the auth server is down".into())
    });
    // A backoff longer than the test, so that the second request surely meets it.
    let cache = TokenCache::builder(down)
        .backoff(Duration::from_secs(60), Duration::from_secs(60))
        .build();
    let auth = BearerAuthMiddleware::from_cache(cache, Scope::any());

    let alone = client(auth.clone(), &Below::default());
    let error = alone.get(api.url("/a")).send().await.unwrap_err();
    assert!(error.is_middleware());
    let found = TokenError::find(&error).expect("a TokenError in the chain");
    assert_eq!(found.kind(), TokenErrorKind::Refresher);
    assert_eq!(
        error.to_string(),
        "could not get a token: the auth server is down"
    );
    let chain = describe(&error);
    assert_eq!(
        chain.matches("the auth server is down").count(),
        1,
        "{chain}"
    );

    let retry = ExponentialBackoff::builder().build_with_max_retries(3);
    let with_retry = ClientBuilder::new(reqwest::Client::new())
        .with(RetryTransientMiddleware::new_with_policy(retry))
        .with(auth)
        .build();
    let error = with_retry.get(api.url("/b")).send().await.unwrap_err();
    // Not retried: the cache is backing off, and says so.
    let text = error.to_string();
    assert!(
        text.starts_with("could not get a token: the last refresh failed, the next is in "),
        "{text}"
    );
    assert!(text.ends_with(" s: the auth server is down"), "{text}");
    let chain = describe(&error);
    assert_eq!(
        chain.matches("the auth server is down").count(),
        1,
        "{chain}"
    );
    assert!(api.seen().is_empty());
}

/// An error and its sources, `: `-separated.
fn describe(error: &(dyn Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(error) = source {
        text.push_str(": ");
        text.push_str(&error.to_string());
        source = error.source();
    }
    text
}
