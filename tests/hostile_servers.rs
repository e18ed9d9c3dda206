//! Hostile servers, probed through the public API as an attacker would, with real hyper
//! servers on 127.0.0.1: a server that echoes what the request sent in its error text.
//!
//! - No secret the request sent comes back in an error in any of the forms it took on the
//!   wire: raw, form-urlencoded, JSON-escaped, or inside a `Basic` header's base64.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE};
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tower::ServiceExt;
use tower_bearer::{RefreshReason, Token, TokenRequest};
use tower_bearer_apivideo::ApiVideo;
use tower_bearer_oauth2::jose::{Algorithm, SigningKey};
use tower_bearer_oauth2::{AuthMethod, Grant, OAuth2, OAuth2Builder, SubjectToken};

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
    path: String,
    headers: HeaderMap,
    body: Bytes,
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

fn hyper_util() -> HyperClient<HttpConnector, Full<Bytes>> {
    HyperClient::builder(TokioExecutor::new()).build_http()
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

/// One OAuth 2.0 provider call, the provider built by `builder`.
async fn oauth2(builder: OAuth2Builder, request: TokenRequest) -> Result<Token, (String, String)> {
    let provider = builder.timeout(CALL_TIMEOUT).build(hyper_util()).unwrap();
    call(provider, request).await
}

/// One api.video provider call, for the server at `base_uri`.
async fn apivideo(
    base_uri: &str,
    api_key: &str,
    request: TokenRequest,
) -> Result<Token, (String, String)> {
    let provider = ApiVideo::with_base_uri(base_uri, api_key.to_owned(), hyper_util())
        .unwrap()
        .timeout(CALL_TIMEOUT);
    call(provider, request).await
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
        let error = oauth2(builder, initial()).await.expect_err(case);
        assert_redacted(&error, secret, case);
    }
    // A client assertion is made for the request: its form in the body is its own.
    let error = oauth2(token().private_key(key), initial())
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
    let error = apivideo(&server.url(""), SECRET, initial())
        .await
        .expect_err("the API key");
    assert_redacted(&error, SECRET, "API key");

    let refresh_token = "RT+/=x \"y\\z";
    let previous = Token::bearer("old")
        .unwrap()
        .with_refresh_token(refresh_token.to_owned());
    let error = apivideo(
        &server.url(""),
        "key",
        TokenRequest::new(RefreshReason::Expired, Some(previous)),
    )
    .await
    .expect_err("the refresh token");
    assert_redacted(&error, refresh_token, "refresh token");
}
