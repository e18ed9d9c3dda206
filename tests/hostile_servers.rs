//! Hostile servers, probed through the public API as an attacker would, with real hyper
//! servers on 127.0.0.1: a token endpoint or an issuer that redirects to another host, a
//! cleartext token endpoint, a server that echoes what the request sent in its error text.
//!
//! - No provider follows a redirect, whatever its HTTP client: a hyper-util client (which
//!   never follows), the same with tower-http's `FollowRedirect` stacked on it, and reqwest
//!   through `ClientService`, with reqwest's default policy (which follows) and with
//!   `redirect::Policy::none()` (as the docs ask). The other host receives no token request,
//!   no body and no credential; its answer is never taken. A client that follows a 301, 302 or
//!   303 by itself turns a POST into a bodiless GET and sends that before the provider sees
//!   anything: only the client's own policy can stop that GET, which carries no credential.
//! - Token and discovery endpoints are `https`, but on loopback or when the builder says
//!   otherwise; a discovery document may not downgrade the issuer's `https`.
//! - No secret the request sent comes back in an error in any of the forms it took on the
//!   wire: raw, form-urlencoded, JSON-escaped, or inside a `Basic` header's base64.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, LOCATION};
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tower::{BoxError, ServiceBuilder, ServiceExt, service_fn};
use tower_bearer::{RefreshReason, Token, TokenRequest};
use tower_bearer_apivideo::ApiVideo;
use tower_bearer_oauth2::jose::{Algorithm, SigningKey};
use tower_bearer_oauth2::{AuthMethod, Grant, OAuth2, OAuth2Builder, SubjectToken};
use tower_bearer_provider::reqwest::ClientService;
use tower_bearer_provider::{HttpClient, RequestBody};
use tower_http::follow_redirect::FollowRedirectLayer;

/// The longest a provider call may take here: every wait is bounded.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

const CLIENT_ID: &str = "hostile client";
/// Characters that every encoding changes: form-urlencoding (`+`, `/`, `&`, `=`, space),
/// JSON (`"`, `\`).
const SECRET: &str = "CS+s3cr/et&=x y\"q\\";

// ===== a recording server =====

/// A request as a server received it.
#[derive(Debug, Clone)]
struct Received {
    method: Method,
    path: String,
    headers: HeaderMap,
    body: Bytes,
}

impl Received {
    /// Everything it carried, as text: to look for a secret in.
    fn text(&self) -> String {
        let headers: Vec<String> = self
            .headers
            .iter()
            .map(|(name, value)| format!("{name}: {}", String::from_utf8_lossy(value.as_bytes())))
            .collect();
        format!(
            "{} {}\n{}\n\n{}",
            self.method,
            self.path,
            headers.join("\n"),
            String::from_utf8_lossy(&self.body)
        )
    }
}

type Answerer = dyn Fn(&Received) -> Response<Full<Bytes>> + Send + Sync;

/// A hyper server on 127.0.0.1 that records every request and answers it with `answer`.
struct Server {
    origin: String,
    received: Arc<Mutex<Vec<Received>>>,
}

impl Server {
    async fn start(
        answer: impl Fn(&Server, &Received) -> Response<Full<Bytes>> + Send + Sync + 'static,
    ) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let origin = format!("http://{}", listener.local_addr().unwrap());
        let received = Arc::new(Mutex::new(Vec::new()));
        let me = Server {
            origin: origin.clone(),
            received: received.clone(),
        };
        let this = Server {
            origin,
            received: received.clone(),
        };
        let answer: Arc<Answerer> = Arc::new(move |request| answer(&this, request));
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (answer, received) = (answer.clone(), received.clone());
                let handler = hyper::service::service_fn(move |request: Request<Incoming>| {
                    let (answer, received) = (answer.clone(), received.clone());
                    async move {
                        let (parts, body) = request.into_parts();
                        let request = Received {
                            method: parts.method,
                            path: parts.uri.to_string(),
                            headers: parts.headers,
                            body: body.collect().await?.to_bytes(),
                        };
                        received.lock().unwrap().push(request.clone());
                        Ok::<_, hyper::Error>(answer(&request))
                    }
                });
                tokio::spawn(http1::Builder::new().serve_connection(TokioIo::new(stream), handler));
            }
        });
        me
    }

    /// `http://127.0.0.1:PORT` and `path`.
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.origin)
    }

    fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }
}

fn respond(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header(CONTENT_TYPE, "application/json")
        .body(Full::new(body.into()))
        .unwrap()
}

fn redirect(status: StatusCode, to: &str) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header(LOCATION, to)
        .body(Full::default())
        .unwrap()
}

/// A token answer, which both providers take.
fn token_answer() -> Response<Full<Bytes>> {
    respond(
        StatusCode::OK,
        r#"{"token_type":"Bearer","expires_in":3600,"access_token":"from-the-other-host"}"#,
    )
}

// ===== the clients a provider may be given =====

#[derive(Debug, Clone, Copy, PartialEq)]
enum Client {
    /// hyper-util's legacy client: it never follows a redirect.
    HyperUtil,
    /// The same with tower-http's `FollowRedirect` on it, which follows.
    FollowRedirect,
    /// reqwest through `ClientService`, with reqwest's default policy, which follows.
    Reqwest,
    /// reqwest with `redirect::Policy::none()`, as `ClientService`'s docs ask.
    ReqwestNoRedirects,
}

impl Client {
    const ALL: [Client; 4] = [
        Client::HyperUtil,
        Client::FollowRedirect,
        Client::Reqwest,
        Client::ReqwestNoRedirects,
    ];

    /// Whether the client follows a redirect by itself, before the provider sees the answer.
    fn follows(self) -> bool {
        matches!(self, Client::FollowRedirect | Client::Reqwest)
    }
}

fn hyper_util() -> HyperClient<HttpConnector, Full<Bytes>> {
    HyperClient::builder(TokioExecutor::new()).build_http()
}

fn reqwest_client(client: Client) -> ClientService {
    let builder = reqwest::Client::builder();
    let builder = match client {
        Client::ReqwestNoRedirects => builder.redirect(reqwest::redirect::Policy::none()),
        _ => builder,
    };
    ClientService::new(builder.build().unwrap())
}

/// The error (`Debug`, then `Display` with its sources) of one call of `provider` for a first
/// token, or the token it got.
async fn call<P>(provider: P, request: TokenRequest) -> Result<Token, (String, String)>
where
    P: tower::Service<TokenRequest, Response = Token>,
    P::Error: std::error::Error + 'static,
{
    let result = tokio::time::timeout(CALL_TIMEOUT * 2, provider.oneshot(request))
        .await
        .expect("the provider's own timeout ends every call");
    result.map_err(|error| (format!("{error:?}"), common::describe(&error)))
}

fn initial() -> TokenRequest {
    TokenRequest::new(RefreshReason::Initial, None)
}

/// One OAuth 2.0 provider call through `client`, the provider built by `builder`.
async fn oauth2(
    client: Client,
    builder: OAuth2Builder,
    request: TokenRequest,
) -> Result<Token, (String, String)> {
    async fn with<C: HttpClient<B>, B: RequestBody>(
        builder: OAuth2Builder,
        client: C,
        request: TokenRequest,
    ) -> Result<Token, (String, String)> {
        call(
            builder.timeout(CALL_TIMEOUT).build(client).unwrap(),
            request,
        )
        .await
    }
    match client {
        Client::HyperUtil => with(builder, hyper_util(), request).await,
        Client::FollowRedirect => {
            let following = ServiceBuilder::new()
                .layer(FollowRedirectLayer::new())
                .service(hyper_util());
            with(builder, following, request).await
        }
        Client::Reqwest | Client::ReqwestNoRedirects => {
            with(builder, reqwest_client(client), request).await
        }
    }
}

/// One api.video provider call through `client`, for the server at `base_uri`.
async fn apivideo(
    client: Client,
    base_uri: &str,
    api_key: &str,
    request: TokenRequest,
) -> Result<Token, (String, String)> {
    async fn with<C: HttpClient<B>, B: RequestBody>(
        base_uri: &str,
        api_key: &str,
        client: C,
        request: TokenRequest,
    ) -> Result<Token, (String, String)> {
        let provider = ApiVideo::with_base_uri(base_uri, api_key.to_owned(), client)
            .unwrap()
            .timeout(CALL_TIMEOUT);
        call(provider, request).await
    }
    match client {
        Client::HyperUtil => with(base_uri, api_key, hyper_util(), request).await,
        Client::FollowRedirect => {
            let following = ServiceBuilder::new()
                .layer(FollowRedirectLayer::new())
                .service(hyper_util());
            with(base_uri, api_key, following, request).await
        }
        Client::Reqwest | Client::ReqwestNoRedirects => {
            with(base_uri, api_key, reqwest_client(client), request).await
        }
    }
}

// ===== redirects =====

/// What the other host may have received from a provider whose server redirected there:
/// nothing, from a client that does not follow, or for a 307 (whose POST could only be
/// re-sent with its body); from a client that follows a 302 by itself, a bodiless GET
/// without credentials. Never a POST, a body, an `Authorization` header, or `secret`.
fn assert_nothing_of_value(
    other: &Server,
    client: Client,
    status: StatusCode,
    secret: &str,
    case: &str,
) {
    let received = other.received();
    for request in &received {
        let text = request.text();
        assert_eq!(request.method, Method::GET, "{case}: {text}");
        assert!(request.body.is_empty(), "{case}: {text}");
        assert!(
            request.headers.get(AUTHORIZATION).is_none(),
            "{case}: {text}"
        );
        for form in wire_forms(secret) {
            assert!(!text.contains(&form), "{case}: {form} in {text}");
        }
    }
    if !client.follows() || status == StatusCode::TEMPORARY_REDIRECT {
        assert!(received.is_empty(), "{case}: {received:?}");
    }
}

/// Was: through reqwest's default client, a token endpoint's 307 to another host had the
/// client secret POSTed there, and that host's token taken; through `FollowRedirect`, a 302's
/// GET was answered by the other host with a token, which was taken; a redirect that was not
/// followed was an anonymous `Status` error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oauth2_token_endpoint_that_redirects_is_refused() {
    for status in [StatusCode::FOUND, StatusCode::TEMPORARY_REDIRECT] {
        for client in Client::ALL {
            let case = format!("{status} through {client:?}");
            let other = Server::start(|_, _| token_answer()).await;
            let to = other.url("/token");
            let endpoint = Server::start(move |_, _| redirect(status, &to)).await;
            let builder = OAuth2::builder()
                .token_endpoint(endpoint.url("/token"))
                .client_id(CLIENT_ID)
                .client_secret(SECRET)
                .auth_method(AuthMethod::ClientSecretPost);
            let (debug, display) = oauth2(client, builder, initial())
                .await
                .expect_err(&format!("{case}: the other host's token was taken"));
            assert!(debug.starts_with("NoAnswer(Redirected("), "{case}: {debug}");
            assert!(
                display.contains(&endpoint.url("/token")),
                "{case}: {display}"
            );
            assert!(display.contains(&other.url("/token")), "{case}: {display}");
            assert_nothing_of_value(&other, client, status, SECRET, &case);
            // The token endpoint had the request whole, with its length (reqwest is handed a
            // body it cannot replay, not one of unknown length).
            let asked = &endpoint.received()[0];
            assert_eq!(asked.method, Method::POST, "{case}");
            assert_eq!(
                asked.headers[CONTENT_LENGTH],
                asked.body.len().to_string(),
                "{case}"
            );
        }
    }
}

/// Was: an issuer whose metadata sat behind a 302 to another host, which served a document
/// naming the issuer and its own token endpoint, was believed by every client that follows,
/// and the client secret was POSTed to that host.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_issuer_whose_metadata_redirects_is_refused() {
    for client in Client::ALL {
        let case = format!("{client:?}");
        let issuer = Arc::new(Mutex::new(String::new()));
        let named = issuer.clone();
        let other = Server::start(move |other, request| {
            if request.method == Method::GET {
                let metadata = serde_json::json!({
                    "issuer": *named.lock().unwrap(),
                    "token_endpoint": other.url("/token"),
                });
                respond(StatusCode::OK, metadata.to_string())
            } else {
                token_answer()
            }
        })
        .await;
        let elsewhere = other.origin.clone();
        let endpoint = Server::start(move |_, request| {
            redirect(StatusCode::FOUND, &format!("{elsewhere}{}", request.path))
        })
        .await;
        *issuer.lock().unwrap() = endpoint.url("");
        let builder = OAuth2::builder()
            .issuer(endpoint.url(""))
            .client_id(CLIENT_ID)
            .client_secret(SECRET)
            .auth_method(AuthMethod::ClientSecretPost);
        let (debug, display) = oauth2(client, builder, initial())
            .await
            .expect_err(&format!("{case}: the other host's token was taken"));
        assert!(debug.contains("Redirected("), "{case}: {debug}");
        assert!(display.contains(&other.origin), "{case}: {display}");
        assert_nothing_of_value(&other, client, StatusCode::FOUND, SECRET, &case);
    }
}

/// Was: as for OAuth 2.0, reqwest re-sent `{"apiKey": …}` to the other host on a 307, and the
/// other host's token was taken after any redirect a client followed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_apivideo_server_that_redirects_is_refused() {
    for status in [StatusCode::FOUND, StatusCode::TEMPORARY_REDIRECT] {
        for client in Client::ALL {
            let case = format!("{status} through {client:?}");
            let other = Server::start(|_, _| token_answer()).await;
            let elsewhere = other.origin.clone();
            let server = Server::start(move |_, request| {
                redirect(status, &format!("{elsewhere}{}", request.path))
            })
            .await;
            let (debug, display) = apivideo(client, &server.url(""), SECRET, initial())
                .await
                .expect_err(&format!("{case}: the other host's token was taken"));
            assert!(debug.starts_with("NoAnswer(Redirected("), "{case}: {debug}");
            assert!(
                display.contains(&server.url("/auth/api-key")),
                "{case}: {display}"
            );
            assert!(
                display.contains(&other.url("/auth/api-key")),
                "{case}: {display}"
            );
            assert_nothing_of_value(&other, client, status, SECRET, &case);
        }
    }
}

// ===== cleartext endpoints =====

fn any_client() -> HyperClient<HttpConnector, Full<Bytes>> {
    hyper_util()
}

/// Was: `http://` accepted on any host, for the token endpoint and the issuer alike.
#[tokio::test]
async fn oauth2_endpoints_off_loopback_must_be_https() {
    let off_loopback = [
        "http://as.example/token",
        "http://10.0.0.1/token",
        "http://[2001:db8::1]/token",
        "http://localhost.as.example/token",
        "http://127.0.0.1.as.example/token",
    ];
    for url in off_loopback {
        for builder in [
            OAuth2::builder().token_endpoint(url),
            OAuth2::builder().issuer(url.trim_end_matches("/token")),
        ] {
            let error = builder
                .client_id(CLIENT_ID)
                .client_secret(SECRET)
                .build(any_client())
                .expect_err(url);
            assert!(
                format!("{error:?}").contains("Cleartext"),
                "{url}: {error:?}"
            );
        }
    }
    for url in [
        "https://as.example/token",
        "http://127.0.0.1:8080/token",
        "http://127.3.2.1/token",
        "http://localhost:8080/token",
        "http://LOCALHOST/token",
        "http://[::1]:8080/token",
    ] {
        OAuth2::builder()
            .token_endpoint(url)
            .client_id(CLIENT_ID)
            .client_secret(SECRET)
            .build(any_client())
            .expect(url);
    }
}

/// Was: an issuer on loopback whose metadata named a cleartext token endpoint on another
/// host was believed, and the secret sent there in clear (here the address is unroutable:
/// the call waited out its timeout).
#[tokio::test]
async fn discovered_endpoints_off_loopback_must_be_https() {
    let issuer = Server::start(|issuer, _| {
        let metadata = serde_json::json!({
            "issuer": issuer.url(""),
            "token_endpoint": "http://192.0.2.1/token",
        });
        respond(StatusCode::OK, metadata.to_string())
    })
    .await;
    let builder = OAuth2::builder()
        .issuer(issuer.url(""))
        .client_id(CLIENT_ID)
        .client_secret(SECRET);
    let (debug, display) = oauth2(Client::HyperUtil, builder, initial())
        .await
        .expect_err("no token from an unroutable address");
    assert!(debug.starts_with("Discovery {"), "{debug}");
    assert!(debug.contains("Cleartext"), "{debug}");
    assert!(display.contains("http://192.0.2.1/token"), "{display}");
    assert_eq!(issuer.received().len(), 1, "the metadata only");
}

/// Was: an `https` issuer's metadata naming an `http` token endpoint was believed, and the
/// client secret went there in clear. (An `https` server is played by a client that answers
/// as one: the scheme is the provider's decision, not the wire's.)
#[tokio::test]
async fn discovery_never_downgrades_the_issuer_scheme() {
    let posts = Arc::new(Mutex::new(0));
    let counted = posts.clone();
    let client = service_fn(move |request: Request<Full<Bytes>>| {
        let counted = counted.clone();
        async move {
            if request.method() == Method::POST {
                *counted.lock().unwrap() += 1;
                return Ok::<_, BoxError>(token_answer());
            }
            let metadata = serde_json::json!({
                "issuer": "https://as.example",
                "token_endpoint": "http://127.0.0.1:9/token",
            });
            Ok(respond(StatusCode::OK, metadata.to_string()))
        }
    });
    let provider = OAuth2::builder()
        .issuer("https://as.example")
        .client_id(CLIENT_ID)
        .client_secret(SECRET)
        .timeout(CALL_TIMEOUT)
        .build(client)
        .unwrap();
    let (debug, display) = call(provider, initial())
        .await
        .expect_err("the token came over cleartext");
    assert!(debug.starts_with("Discovery {"), "{debug}");
    assert!(debug.contains("Cleartext"), "{debug}");
    assert!(display.contains("http://127.0.0.1:9/token"), "{display}");
    assert_eq!(*posts.lock().unwrap(), 0);
}

/// Was: any `http://` base URI was taken.
#[test]
fn an_apivideo_base_uri_off_loopback_must_be_https() {
    for uri in ["http://ws.api.video", "http://proxy.example:8080/apivideo"] {
        let error = ApiVideo::with_base_uri(uri, "key", any_client()).expect_err(uri);
        assert!(
            format!("{error:?}").contains("Cleartext"),
            "{uri}: {error:?}"
        );
    }
    for uri in [
        "https://ws.api.video",
        "http://127.0.0.1:8080",
        "http://localhost:1/x",
    ] {
        ApiVideo::with_base_uri(uri, "key", any_client()).expect(uri);
    }
}

// ===== secrets echoed in errors =====

/// Every form `secret` takes on the wire: raw, form-urlencoded (a form body), JSON-escaped
/// (a JSON body), and the form-urlencoded id and secret in a `Basic` header's base64.
fn wire_forms(secret: &str) -> Vec<String> {
    let form: String = form_urlencoded::byte_serialize(secret.as_bytes()).collect();
    let json = serde_json::to_string(secret).unwrap();
    let id: String = form_urlencoded::byte_serialize(CLIENT_ID.as_bytes()).collect();
    let basic = STANDARD.encode(format!("{id}:{form}"));
    vec![
        secret.to_owned(),
        form,
        json[1..json.len() - 1].to_owned(),
        basic,
    ]
}

/// A server that refuses every request, its description quoting what it received: the body,
/// and the `Authorization` header.
fn echo(_: &Server, request: &Received) -> Response<Full<Bytes>> {
    let authorization = request
        .headers
        .get(AUTHORIZATION)
        .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned())
        .unwrap_or_default();
    let said = format!(
        "received {} with {authorization}",
        String::from_utf8_lossy(&request.body)
    );
    let body = serde_json::json!({
        "error": "invalid_request",
        "error_description": said,
        "title": said,
        "type": said,
    });
    respond(StatusCode::BAD_REQUEST, body.to_string())
}

fn assert_redacted(error: &(String, String), secret: &str, case: &str) {
    let (debug, display) = error;
    for form in wire_forms(secret) {
        assert!(!debug.contains(&form), "{case}: {form:?} in {debug}");
        assert!(!display.contains(&form), "{case}: {form:?} in {display}");
    }
    assert!(display.contains("[REDACTED]"), "{case}: {display}");
}

/// Was: only the raw secret was redacted, so a server quoting the form body
/// (`client_secret=CS%2Bs3cr%2Fet…`) or the `Basic` header had the secret printed in the
/// error, and in the cache's log line; the refresh and subject tokens likewise.
#[tokio::test]
async fn oauth2_errors_redact_every_form_of_every_secret() {
    let server = Server::start(echo).await;
    let token = || {
        OAuth2::builder()
            .token_endpoint(server.url("/token"))
            .client_id(CLIENT_ID)
    };
    let key = SigningKey::generate(Algorithm::Es256).unwrap();
    let cases = [
        (
            "client_secret_post",
            token()
                .client_secret(SECRET)
                .auth_method(AuthMethod::ClientSecretPost),
            SECRET,
        ),
        (
            "client_secret_basic",
            token()
                .client_secret(SECRET)
                .auth_method(AuthMethod::ClientSecretBasic),
            SECRET,
        ),
        (
            "refresh token grant",
            token()
                .auth_method(AuthMethod::None)
                .grant(Grant::refresh_token(SECRET)),
            SECRET,
        ),
        (
            "token exchange",
            token()
                .auth_method(AuthMethod::None)
                .grant(Grant::token_exchange(SubjectToken::from_fn(|| {
                    Ok(SECRET.to_owned())
                }))),
            SECRET,
        ),
    ];
    for (case, builder, secret) in cases {
        let error = oauth2(Client::HyperUtil, builder, initial())
            .await
            .expect_err(case);
        assert_redacted(&error, secret, case);
    }
    // A client assertion is made for the request: its form in the body is its own.
    let error = oauth2(Client::HyperUtil, token().private_key(key), initial())
        .await
        .expect_err("private_key_jwt");
    let body = server.received().last().unwrap().body.clone();
    let assertion = form_urlencoded::parse(&body)
        .find(|(name, _)| name == "client_assertion")
        .unwrap()
        .1
        .into_owned();
    assert_redacted(&error, &assertion, "private_key_jwt");
}

/// Was: the API key and the refresh token were redacted raw only, so a server quoting the
/// JSON body (where `"` and `\` are escaped) had them printed.
#[tokio::test]
async fn apivideo_errors_redact_every_form_of_every_secret() {
    let server = Server::start(|server, request| {
        // The refresh token's answer is a 500, so that its error is the call's (a 400 would
        // fall back to the API key).
        let mut answer = echo(server, request);
        if request.path.ends_with("/auth/refresh") {
            *answer.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
        }
        answer
    })
    .await;
    let error = apivideo(Client::HyperUtil, &server.url(""), SECRET, initial())
        .await
        .expect_err("the API key");
    assert_redacted(&error, SECRET, "API key");

    let refresh_token = "RT+/=x \"y\\z";
    let previous = Token::bearer("old")
        .unwrap()
        .with_refresh_token(refresh_token.to_owned());
    let error = apivideo(
        Client::HyperUtil,
        &server.url(""),
        "key",
        TokenRequest::new(RefreshReason::Expired, Some(previous)),
    )
    .await
    .expect_err("the refresh token");
    assert_redacted(&error, refresh_token, "refresh token");
}
