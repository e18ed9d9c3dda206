//! The middleware on the wire: a hyper-util client through `BearerAuth` to a hyper server on
//! 127.0.0.1, for what only a real connection shows (keep-alive after a 401, bodies framed
//! by hyper, redirects across origins).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::header::{AUTHORIZATION, LOCATION};
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tower::{BoxError, Layer, ServiceBuilder, ServiceExt};
use tower_bearer::{BearerAuthLayer, ReplayBody, Scope, Token, TokenCache, TokenRequest};
use tower_http::follow_redirect::FollowRedirectLayer;

/// What the server saw of one request.
#[derive(Debug, Clone)]
struct Seen {
    authorization: Option<String>,
    body: Bytes,
    trailers: Option<HeaderMap>,
}

/// A hyper server on 127.0.0.1 that refuses the token `Bearer old`, redirects `/redirect` to
/// `elsewhere`, and otherwise answers 200.
struct Server {
    addr: SocketAddr,
    connections: Arc<AtomicUsize>,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Server {
    async fn start(elsewhere: Option<String>) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let server = Server {
            addr,
            connections: connections.clone(),
            seen: seen.clone(),
        };
        tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                connections.fetch_add(1, Ordering::SeqCst);
                let (seen, elsewhere) = (seen.clone(), elsewhere.clone());
                let handler =
                    service_fn(move |request| handle(request, seen.clone(), elsewhere.clone()));
                tokio::spawn(http1::Builder::new().serve_connection(TokioIo::new(stream), handler));
            }
        });
        server
    }

    fn uri(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

async fn handle(
    request: Request<Incoming>,
    seen: Arc<Mutex<Vec<Seen>>>,
    elsewhere: Option<String>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let authorization = request
        .headers()
        .get(AUTHORIZATION)
        .map(|v| v.to_str().unwrap().to_owned());
    let redirect = request.uri().path() == "/redirect";
    // Capped: a replayed body that never ends fails the test instead of filling memory.
    let collected = Limited::new(request.into_body(), 1 << 20)
        .collect()
        .await
        .unwrap();
    seen.lock().unwrap().push(Seen {
        authorization: authorization.clone(),
        trailers: collected.trailers().cloned(),
        body: collected.to_bytes(),
    });
    let response = Response::builder();
    let response = if authorization.as_deref() == Some("Bearer old") {
        response
            .status(StatusCode::UNAUTHORIZED)
            .body(Full::new(Bytes::from_static(
                br#"{"title":"The access token is invalid or expired.","status":401}"#,
            )))
    } else if let (true, Some(elsewhere)) = (redirect, elsewhere) {
        response
            .status(StatusCode::FOUND)
            .header(LOCATION, elsewhere)
            .body(Full::default())
    } else {
        response.body(Full::new(Bytes::from_static(b"ok")))
    };
    Ok(response.unwrap())
}

/// A cache that hands out `old`, then `new1`, `new2`, …; any token may be replaced on a 401
/// at once (real time here: no waiting out the minimum age).
fn cache() -> TokenCache {
    let issued = Arc::new(AtomicUsize::new(0));
    let refresher = tower::service_fn(move |_: TokenRequest| {
        let n = issued.fetch_add(1, Ordering::SeqCst);
        async move {
            let access = if n == 0 {
                "old".to_owned()
            } else {
                format!("new{n}")
            };
            Ok::<_, BoxError>(Token::bearer(access)?.expires_in(Duration::from_secs(3600)))
        }
    });
    TokenCache::builder(refresher)
        .min_token_age(Duration::ZERO)
        .build()
}

#[tokio::test]
async fn a_retried_post_arrives_byte_identical_on_the_same_connection() {
    let server = Server::start(None).await;
    // The one line a user changes: the client's body type.
    let client: Client<HttpConnector, ReplayBody<Full<Bytes>>> =
        Client::builder(TokioExecutor::new()).build_http();
    let service = ServiceBuilder::new()
        .layer(BearerAuthLayer::from_cache(cache(), Scope::any()))
        .service(client);

    let body = r#"{"title":"Maths video","tags":["maths"],"public":false}"#;
    let request = Request::post(server.uri("/videos"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .unwrap();
    let response = service.clone().oneshot(request).await.unwrap();

    assert_eq!(response.status(), StatusCode::OK);
    let seen = server.seen();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].authorization.as_deref(), Some("Bearer old"));
    assert_eq!(seen[1].authorization.as_deref(), Some("Bearer new1"));
    assert_eq!(seen[0].body, body);
    assert_eq!(seen[1].body, body);
    // The 401's body was consumed before the retry, so its connection went back to the pool
    // and carried the retry.
    assert_eq!(server.connections.load(Ordering::SeqCst), 1);

    let response = service.oneshot(
        Request::get(server.uri("/videos"))
            .body(Full::default())
            .unwrap(),
    );
    assert_eq!(response.await.unwrap().status(), StatusCode::OK);
    assert_eq!(server.connections.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_streaming_body_with_trailers_is_replayed_after_a_401() {
    type Streaming = BoxBody<Bytes, BoxError>;
    let server = Server::start(None).await;
    let client: Client<HttpConnector, ReplayBody<Streaming>> =
        Client::builder(TokioExecutor::new()).build_http();
    let service = BearerAuthLayer::from_cache(cache(), Scope::any()).layer(client);

    let (mut tx, body) = http_body_util::channel::Channel::<Bytes, BoxError>::new(4);
    let request = Request::post(server.uri("/upload"))
        // hyper sends only the trailer fields a request announces.
        .header("trailer", "x-checksum")
        .body(body.boxed())
        .unwrap();
    let call = tokio::spawn(service.oneshot(request));
    tx.send_data(Bytes::from_static(b"chunk one, "))
        .await
        .unwrap();
    tx.send_data(Bytes::from_static(b"chunk two"))
        .await
        .unwrap();
    let mut trailers = HeaderMap::new();
    trailers.insert("x-checksum", "c0ffee".parse().unwrap());
    tx.send_trailers(trailers.clone()).await.unwrap();
    drop(tx);
    let response = call.await.unwrap().unwrap();

    assert_eq!(response.status(), StatusCode::OK);
    let seen = server.seen();
    assert_eq!(seen.len(), 2);
    for attempt in &seen {
        assert_eq!(attempt.body, "chunk one, chunk two");
        assert_eq!(attempt.trailers.as_ref(), Some(&trailers));
    }
    assert_eq!(seen[1].authorization.as_deref(), Some("Bearer new1"));
}

#[tokio::test]
async fn a_redirect_to_another_origin_does_not_carry_the_token() {
    let elsewhere = Server::start(None).await;
    let api = Server::start(Some(elsewhere.uri("/landing"))).await;
    let client: Client<HttpConnector, ReplayBody<Full<Bytes>>> =
        Client::builder(TokioExecutor::new()).build_http();
    let cache = cache();
    cache.token().await.unwrap(); // `old`: refused, so the first attempt gets a 401
    let service = ServiceBuilder::new()
        .layer(FollowRedirectLayer::new())
        .layer(BearerAuthLayer::from_cache(
            cache,
            Scope::origin(api.uri("/")).unwrap(),
        ))
        .service(client);

    let response = service
        .oneshot(
            Request::get(api.uri("/redirect"))
                .body(Full::default())
                .unwrap(),
        )
        .await
        .unwrap();

    assert_eq!(response.status(), StatusCode::OK);
    let at_api: Vec<_> = api.seen().into_iter().map(|s| s.authorization).collect();
    assert_eq!(
        at_api,
        [Some("Bearer old".into()), Some("Bearer new1".into())]
    );
    let at_elsewhere: Vec<_> = elsewhere
        .seen()
        .into_iter()
        .map(|s| s.authorization)
        .collect();
    assert_eq!(at_elsewhere, [None]);
}
