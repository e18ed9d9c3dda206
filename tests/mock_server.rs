//! The embedded mock api.video server, over real loopback HTTP/1.1.

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use common::capture_globally;
use http::header::{AUTHORIZATION, CONTENT_TYPE, USER_AGENT, WWW_AUTHENTICATE};
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};

use tokio::time::{Instant, timeout};
use tower_bearer_mock::apivideo::{Chaos, Counters, Failure, MockServer, RequestLog};

const KEY: &str = "test-key";
/// Generous bound for anything that should be immediate; only reached when a test fails.
const PROMPTLY: Duration = Duration::from_secs(5);

// ===== helpers =====

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|error| panic!("{error}: {}", String::from_utf8_lossy(&self.body)))
    }

    fn header(&self, name: impl http::header::AsHeaderName) -> &str {
        self.headers.get(name).map_or("", |v| v.to_str().unwrap())
    }

    /// Asserts a problem+json answer with this status and title, and returns its body.
    fn problem(&self, status: StatusCode, title: &str) -> Value {
        assert_eq!(
            self.status,
            status,
            "{}",
            String::from_utf8_lossy(&self.body)
        );
        assert_eq!(self.header(CONTENT_TYPE), "application/problem+json");
        let body = self.json();
        assert_eq!(body["title"], title);
        assert_eq!(body["status"], status.as_u16());
        assert!(
            body["type"]
                .as_str()
                .unwrap()
                .starts_with("https://docs.api.video/reference/")
        );
        body
    }
}

struct Pair {
    access: String,
    refresh: String,
    expires_in: u64,
}

struct Api {
    server: MockServer,
    client: Client<HttpConnector, Full<Bytes>>,
}

impl Api {
    async fn start(builder: tower_bearer_mock::apivideo::MockServerBuilder) -> Self {
        Self {
            server: builder.start().await.unwrap(),
            client: Client::builder(TokioExecutor::new()).build_http(),
        }
    }

    async fn default() -> Self {
        Self::start(MockServer::builder().api_key(KEY)).await
    }

    async fn send(&self, request: Request<Full<Bytes>>) -> Reply {
        let response = timeout(PROMPTLY, self.client.request(request))
            .await
            .expect("the mock answers")
            .unwrap();
        let (parts, body) = response.into_parts();
        Reply {
            status: parts.status,
            headers: parts.headers,
            body: timeout(PROMPTLY, Limited::new(body, 1 << 20).collect())
                .await
                .expect("the mock's answer ends")
                .unwrap()
                .to_bytes(),
        }
    }

    fn request(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: &str,
    ) -> Request<Full<Bytes>> {
        let mut request = Request::builder()
            .method(method)
            .uri(self.server.uri_for(path))
            .header(CONTENT_TYPE, "application/json")
            .header(USER_AGENT, "tower-bearer-tests/0.1")
            .header("AV-Origin-Client", "rust:0.1.0");
        if let Some(token) = token {
            request = request.header(AUTHORIZATION, format!("Bearer {token}"));
        }
        request.body(Full::from(body.to_owned())).unwrap()
    }

    async fn post(&self, path: &str, token: Option<&str>, body: &str) -> Reply {
        self.send(self.request(Method::POST, path, token, body))
            .await
    }

    async fn get(&self, path: &str, token: Option<&str>) -> Reply {
        self.send(self.request(Method::GET, path, token, "")).await
    }

    async fn login_reply(&self, key: &str) -> Reply {
        self.post("/auth/api-key", None, &json!({ "apiKey": key }).to_string())
            .await
    }

    async fn refresh_reply(&self, refresh_token: &str) -> Reply {
        self.post(
            "/auth/refresh",
            None,
            &json!({ "refreshToken": refresh_token }).to_string(),
        )
        .await
    }

    async fn login(&self) -> Pair {
        pair(&self.login_reply(KEY).await)
    }

    async fn refresh(&self, refresh_token: &str) -> Pair {
        pair(&self.refresh_reply(refresh_token).await)
    }
}

fn pair(reply: &Reply) -> Pair {
    assert_eq!(
        reply.status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    assert_eq!(reply.header(CONTENT_TYPE), "application/json");
    let body = reply.json();
    assert_eq!(body["token_type"], "Bearer");
    Pair {
        access: body["access_token"].as_str().unwrap().to_owned(),
        refresh: body["refresh_token"].as_str().unwrap().to_owned(),
        expires_in: body["expires_in"].as_u64().unwrap(),
    }
}

fn is_url_safe(segment: &str) -> bool {
    !segment.is_empty()
        && segment
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

// ===== auth =====

#[tokio::test]
async fn login_answers_api_video_token_shape() {
    let api = Api::start(
        MockServer::builder()
            .api_key(KEY)
            .token_ttl(Duration::from_secs(3)),
    )
    .await;
    let first = api.login().await;
    assert_eq!(first.expires_in, 3);

    let segments: Vec<&str> = first.access.split('.').collect();
    assert_eq!(segments.len(), 3, "JWT-shaped");
    assert!(segments.iter().all(|s| is_url_safe(s)));
    assert!(
        (850..=1000).contains(&first.access.len()),
        "{}",
        first.access.len()
    );
    assert!(first.refresh.starts_with("def50200"));
    assert!(first.refresh.len() > 500);
    assert!(first.refresh.bytes().all(|b| b.is_ascii_hexdigit()));

    let second = api.login().await;
    assert_ne!(first.access, second.access);
    assert_ne!(first.refresh, second.refresh);

    let headers = api.server.last_auth_headers().unwrap();
    assert_eq!(headers[USER_AGENT], "tower-bearer-tests/0.1");
    assert_eq!(headers["av-origin-client"], "rust:0.1.0");
    assert_eq!(api.server.counters().api_key_logins, 2);
}

#[tokio::test]
async fn expires_in_is_whole_seconds_rounded_down() {
    let api = Api::start(
        MockServer::builder()
            .api_key(KEY)
            .token_ttl(Duration::from_millis(1500)),
    )
    .await;
    assert_eq!(api.login().await.expires_in, 1);
    api.server.set_token_ttl(Duration::from_millis(900));
    assert_eq!(api.login().await.expires_in, 0);
    api.server.set_token_ttl(Duration::from_secs(3599));
    assert_eq!(api.login().await.expires_in, 3599);
}

#[tokio::test]
async fn refresh_rotates_and_the_used_refresh_token_is_rejected() {
    let api = Api::default().await;
    let login = api.login().await;
    let refreshed = api.refresh(&login.refresh).await;
    assert_ne!(refreshed.access, login.access);
    assert_ne!(refreshed.refresh, login.refresh);

    let reply = api.refresh_reply(&login.refresh).await;
    let body = reply.problem(
        StatusCode::BAD_REQUEST,
        "The user credentials were incorrect.",
    );
    assert_eq!(
        body,
        json!({
            "type": "https://docs.api.video/reference/authentication-invalid-user-credentials",
            "title": "The user credentials were incorrect.",
            "name": "",
            "status": 400,
        })
    );

    // By default the old access token lives on; the new one works too.
    assert_eq!(
        api.get("/videos", Some(&login.access)).await.status,
        StatusCode::OK
    );
    assert_eq!(
        api.get("/videos", Some(&refreshed.access)).await.status,
        StatusCode::OK
    );
    // The new refresh token is good for one more turn.
    api.refresh(&refreshed.refresh).await;

    let counters = api.server.counters();
    assert_eq!(
        (counters.refreshes, counters.rejected_refresh_tokens),
        (2, 1)
    );
}

#[tokio::test]
async fn refresh_can_revoke_the_previous_access_token() {
    let api = Api::start(
        MockServer::builder()
            .api_key(KEY)
            .revoke_access_on_refresh(true),
    )
    .await;
    let login = api.login().await;
    let refreshed = api.refresh(&login.refresh).await;
    let reply = api.get("/videos", Some(&login.access)).await;
    reply.problem(
        StatusCode::UNAUTHORIZED,
        "The access token is invalid or expired.",
    );
    assert_eq!(
        api.get("/videos", Some(&refreshed.access)).await.status,
        StatusCode::OK
    );
    assert_eq!(api.server.counters().unauthorized_revoked, 1);
}

#[tokio::test]
async fn a_new_login_ends_the_previous_refresh_token() {
    let api = Api::default().await;
    let first = api.login().await;
    let second = api.login().await;
    api.refresh_reply(&first.refresh).await.problem(
        StatusCode::BAD_REQUEST,
        "The user credentials were incorrect.",
    );
    api.refresh(&second.refresh).await;
    // The first login's access token is not affected: only refresh tokens end.
    assert_eq!(
        api.get("/videos", Some(&first.access)).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_bad_api_key_is_rejected_with_400_by_default() {
    let api = Api::default().await;
    api.login_reply("wrong").await.problem(
        StatusCode::BAD_REQUEST,
        "The user credentials were incorrect.",
    );
    api.refresh_reply("def50200abc").await.problem(
        StatusCode::BAD_REQUEST,
        "The user credentials were incorrect.",
    );
    let counters = api.server.counters();
    assert_eq!(
        (counters.rejected_api_keys, counters.rejected_refresh_tokens),
        (1, 1)
    );
    assert_eq!((counters.api_key_logins, counters.auth_requests), (0, 2));
}

#[tokio::test]
async fn credential_rejection_can_be_401() {
    let api = Api::start(
        MockServer::builder()
            .api_key(KEY)
            .credential_rejection_status(StatusCode::UNAUTHORIZED),
    )
    .await;
    api.login_reply("wrong")
        .await
        .problem(StatusCode::UNAUTHORIZED, "The API key is invalid.");
    api.refresh_reply("def50200abc")
        .await
        .problem(StatusCode::UNAUTHORIZED, "The refresh token is invalid.");
}

#[tokio::test]
async fn bad_auth_payloads_are_400() {
    let api = Api::default().await;
    for body in ["not json", "[1]", ""] {
        api.post("/auth/api-key", None, body)
            .await
            .problem(StatusCode::BAD_REQUEST, "The payload is invalid.");
    }
    let missing = api.post("/auth/refresh", None, r#"{"apiKey":"x"}"#).await;
    let body = missing.problem(StatusCode::BAD_REQUEST, "This attribute is required.");
    assert_eq!(body["name"], "refreshToken");
    let wrong_type = api.post("/auth/api-key", None, r#"{"apiKey":42}"#).await;
    assert_eq!(
        wrong_type.problem(StatusCode::BAD_REQUEST, "An attribute is invalid.")["name"],
        "apiKey"
    );
    let counters = api.server.counters();
    assert_eq!(
        (counters.invalid_auth_payloads, counters.rejected_api_keys),
        (5, 0)
    );
}

// ===== bearer-protected resources =====

#[tokio::test]
async fn videos_need_a_valid_bearer_token() {
    let api = Api::default().await;
    let missing = api.get("/videos", None).await;
    missing.problem(
        StatusCode::UNAUTHORIZED,
        "The access token is invalid or expired.",
    );
    assert_eq!(missing.header(WWW_AUTHENTICATE), "Bearer");

    let unknown = api.get("/videos", Some("eyJ.not.issued")).await;
    unknown.problem(
        StatusCode::UNAUTHORIZED,
        "The access token is invalid or expired.",
    );
    assert_eq!(
        unknown.header(WWW_AUTHENTICATE),
        r#"Bearer error="invalid_token""#
    );

    let mut basic = api.request(Method::GET, "/videos", None, "");
    basic
        .headers_mut()
        .insert(AUTHORIZATION, "Basic dXNlcjpwYXNz".parse().unwrap());
    assert_eq!(api.send(basic).await.status, StatusCode::UNAUTHORIZED);

    let token = api.login().await.access;
    let mut lowercase = api.request(Method::GET, "/videos", None, "");
    lowercase
        .headers_mut()
        .insert(AUTHORIZATION, format!("bearer {token}").parse().unwrap());
    assert_eq!(api.send(lowercase).await.status, StatusCode::OK);

    let counters = api.server.counters();
    assert_eq!(
        (
            counters.resource_requests,
            counters.unauthorized,
            counters.unauthorized_missing,
            counters.unauthorized_unknown
        ),
        (4, 3, 2, 1)
    );
}

/// Expiry is kept on tokio's clock, so a paused clock steps over a token's lifetime at once,
/// and to the millisecond.
#[tokio::test(start_paused = true)]
async fn tokens_expire_on_tokios_clock_to_the_millisecond() {
    let api = Api::start(
        MockServer::builder()
            .api_key(KEY)
            .token_ttl(Duration::from_millis(1500)),
    )
    .await;
    let token = api.login().await.access;
    tokio::time::advance(Duration::from_millis(1499)).await;
    assert_eq!(
        api.get("/videos", Some(&token)).await.status,
        StatusCode::OK
    );
    assert_eq!(api.server.counters().expired_token_requests, 0);

    tokio::time::advance(Duration::from_millis(1)).await;
    let expired = api.get("/videos", Some(&token)).await;
    expired.problem(
        StatusCode::UNAUTHORIZED,
        "The access token is invalid or expired.",
    );
    assert!(expired.header(WWW_AUTHENTICATE).starts_with("Bearer"));

    let counters = api.server.counters();
    assert_eq!(
        (
            counters.expired_token_requests,
            counters.unauthorized_expired,
            counters.unauthorized
        ),
        (1, 1, 1)
    );
    // A fresh token works again.
    let token = api.login().await.access;
    assert_eq!(
        api.get("/videos", Some(&token)).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn post_videos_creates_lists_and_records_the_exact_bytes() {
    let api = Api::default().await;
    let body = r#"{"title":"Maths video","description":"String theory.","public":false,"panoramic":false,"mp4Support":true,"tags":["maths","video"],"metadata":[{"key":"Author","value":"John Doe"}]}"#;
    // The first attempt is refused, as a request sent with a stale token would be.
    let refused = api.post("/videos", Some("stale"), body).await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);

    let token = api.login().await.access;
    let created = api.post("/videos", Some(&token), body).await;
    assert_eq!(created.status, StatusCode::CREATED);
    let video = created.json();
    let id = video["videoId"].as_str().unwrap();
    assert!(
        id.starts_with("vi") && id.len() == 24 && id.bytes().all(|b| b.is_ascii_alphanumeric())
    );
    assert_eq!(video["title"], "Maths video");
    assert_eq!(video["description"], "String theory.");
    assert_eq!(
        (video["public"].clone(), video["mp4Support"].clone()),
        (json!(false), json!(true))
    );
    assert_eq!(video["tags"], json!(["maths", "video"]));
    assert_eq!(
        video["metadata"],
        json!([{ "key": "Author", "value": "John Doe" }])
    );
    assert_eq!(video["source"]["uri"], format!("/videos/{id}/source"));
    assert!(
        video["assets"]["mp4"]
            .as_str()
            .unwrap()
            .ends_with("/mp4/source.mp4")
    );
    assert!(video["assets"]["hls"].as_str().unwrap().contains(id));
    let created_at = video["createdAt"].as_str().unwrap();
    assert_eq!(created_at.len(), "2024-05-28T11:15:07+00:00".len());
    assert!(created_at.ends_with("+00:00") && created_at.as_bytes()[10] == b'T');
    assert_eq!(video["updatedAt"], created_at);

    let listed = api.get("/videos?pageSize=100", Some(&token)).await.json();
    let data = listed["data"].as_array().unwrap();
    assert_eq!(data.len(), 6, "five seeded, one created");
    assert_eq!(data.last().unwrap(), &video);

    assert_eq!(
        api.server.received_bodies(),
        vec![Bytes::from(body), Bytes::from(body)]
    );
    assert_eq!(api.server.counters().videos_created, 1);
}

#[tokio::test]
async fn post_videos_validates_the_payload() {
    let api = Api::default().await;
    let token = api.login().await.access;
    let missing = api
        .post("/videos", Some(&token), r#"{"description":"no title"}"#)
        .await;
    let body = missing.problem(StatusCode::BAD_REQUEST, "This attribute is required.");
    assert_eq!(body["name"], "title");
    let null = api.post("/videos", Some(&token), r#"{"title":null}"#).await;
    null.problem(StatusCode::BAD_REQUEST, "This attribute is required.");
    let wrong = api
        .post(
            "/videos",
            Some(&token),
            r#"{"title":"t","tags":"not a list"}"#,
        )
        .await;
    wrong.problem(StatusCode::BAD_REQUEST, "An attribute is invalid.");
    api.post("/videos", Some(&token), "{")
        .await
        .problem(StatusCode::BAD_REQUEST, "The payload is invalid.");
    assert_eq!(api.server.counters().videos_created, 0);
    assert_eq!(api.server.received_bodies().len(), 4);
}

#[tokio::test]
async fn pagination_follows_the_schema() {
    let api = Api::start(MockServer::builder().api_key(KEY).seed_videos(7)).await;
    let token = api.login().await.access;
    let page = api
        .get("/videos?currentPage=2&pageSize=3", Some(&token))
        .await
        .json();
    assert_eq!(page["data"].as_array().unwrap().len(), 3);
    let link = |rel: &str, page: u32| json!({ "rel": rel, "uri": format!("/videos?currentPage={page}&pageSize=3") });
    assert_eq!(
        page["pagination"],
        json!({
            "itemsTotal": 7, "pagesTotal": 3, "pageSize": 3, "currentPage": 2, "currentPageItems": 3,
            "links": [link("self", 2), link("first", 1), link("previous", 1), link("next", 3), link("last", 3)],
        })
    );

    let last = api
        .get("/videos?currentPage=3&pageSize=3", Some(&token))
        .await
        .json();
    assert_eq!(last["pagination"]["currentPageItems"], 1);
    let rels: Vec<&str> = last["pagination"]["links"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["rel"].as_str().unwrap())
        .collect();
    assert_eq!(rels, ["self", "first", "previous", "last"]);

    let defaults = api.get("/videos", Some(&token)).await.json();
    assert_eq!(
        (
            defaults["pagination"]["pageSize"].clone(),
            defaults["pagination"]["currentPage"].clone()
        ),
        (json!(25), json!(1))
    );

    for (query, name) in [
        ("currentPage=0", "currentPage"),
        ("pageSize=101", "pageSize"),
        ("pageSize=0", "pageSize"),
        ("pageSize=ten", "pageSize"),
    ] {
        let reply = api.get(&format!("/videos?{query}"), Some(&token)).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{query}");
        assert_eq!(reply.header(CONTENT_TYPE), "application/problem+json");
        assert_eq!(reply.json()["name"], name);
    }
}

#[tokio::test]
async fn unknown_paths_are_404_and_wrong_methods_405() {
    let api = Api::default().await;
    api.get("/nowhere", None)
        .await
        .problem(StatusCode::NOT_FOUND, "Unrecognized request URL.");
    let get_login = api.get("/auth/api-key", None).await;
    assert_eq!(
        (get_login.status, get_login.header("allow")),
        (StatusCode::METHOD_NOT_ALLOWED, "POST")
    );
    assert_eq!(get_login.header(CONTENT_TYPE), "application/problem+json");
    let delete = api
        .send(api.request(Method::DELETE, "/videos", None, ""))
        .await;
    assert_eq!(
        (delete.status, delete.header("allow")),
        (StatusCode::METHOD_NOT_ALLOWED, "GET, POST")
    );
    assert_eq!(api.server.counters(), Counters::default());
}

/// Bug: the base URI ended in `/`, so `format!("{base}/videos")` asked for `//videos` and
/// got a bare 404. The base URL has no trailing slash now, and a doubled one says why.
#[tokio::test]
async fn the_base_url_joins_with_a_path_and_a_doubled_slash_says_why() {
    let api = Api::default().await;
    let base = api.server.uri();
    assert!(!base.ends_with('/'), "{base}");
    let token = api.login().await.access;
    let list = Request::get(format!("{base}/videos"))
        .header(AUTHORIZATION, format!("Bearer {token}"))
        .body(Full::default())
        .unwrap();
    assert_eq!(api.send(list).await.status, StatusCode::OK);
    assert_eq!(api.server.uri_for("videos"), api.server.uri_for("/videos"));

    let doubled = api
        .get("//videos", None)
        .await
        .problem(StatusCode::NOT_FOUND, "Unrecognized request URL.");
    let detail = doubled["detail"].as_str().unwrap();
    assert!(detail.contains("trailing slash"), "{detail}");
    let unknown = api
        .get("/nowhere", None)
        .await
        .problem(StatusCode::NOT_FOUND, "Unrecognized request URL.");
    assert!(unknown.get("detail").is_none(), "{unknown}");
}

// ===== control =====

#[tokio::test]
async fn revoke_all_ends_every_token_issued_so_far() {
    let api = Api::default().await;
    let before = api.login().await;
    api.server.revoke_all();
    api.get("/videos", Some(&before.access)).await.problem(
        StatusCode::UNAUTHORIZED,
        "The access token is invalid or expired.",
    );
    api.refresh_reply(&before.refresh).await.problem(
        StatusCode::BAD_REQUEST,
        "The user credentials were incorrect.",
    );
    let after = api.login().await;
    assert_eq!(
        api.get("/videos", Some(&after.access)).await.status,
        StatusCode::OK
    );
    let counters = api.server.counters();
    assert_eq!(
        (
            counters.unauthorized_revoked,
            counters.rejected_refresh_tokens
        ),
        (1, 1)
    );
}

#[tokio::test]
async fn injected_statuses_use_api_video_bodies() {
    let api = Api::default().await;
    api.server
        .fail_next_auth(1, Failure::Status(StatusCode::SERVICE_UNAVAILABLE));
    api.server
        .fail_next_auth(1, Failure::Status(StatusCode::UNAUTHORIZED));
    let unavailable = api.login_reply(KEY).await;
    assert_eq!(unavailable.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(unavailable.header(CONTENT_TYPE), "application/problem+json");
    assert_eq!(unavailable.json()["title"], "Service Unavailable");
    api.login_reply(KEY)
        .await
        .problem(StatusCode::UNAUTHORIZED, "The API key is invalid.");
    // The script is used up: the next login is handled for real.
    api.login().await;
    let counters = api.server.counters();
    assert_eq!(
        (
            counters.auth_requests,
            counters.auth_failures_injected,
            counters.api_key_logins,
            counters.rejected_api_keys
        ),
        (3, 2, 1, 0)
    );
}

#[tokio::test]
async fn injected_429_carries_rate_limit_headers() {
    let api = Api::default().await;
    api.server
        .fail_next_auth(1, Failure::Status(StatusCode::TOO_MANY_REQUESTS));
    api.server.fail_next_auth(
        1,
        Failure::RateLimited {
            retry_after: Duration::from_millis(6500),
        },
    );
    for retry_after in ["1", "7"] {
        let reply = api.login_reply(KEY).await;
        let body = reply.problem(StatusCode::TOO_MANY_REQUESTS, "Too many requests.");
        assert_eq!(
            body["type"],
            "https://docs.api.video/reference/too-many-requests"
        );
        assert_eq!(reply.header("x-ratelimit-limit"), "600");
        assert_eq!(reply.header("x-ratelimit-remaining"), "0");
        assert_eq!(reply.header("x-ratelimit-retry-after"), retry_after);
        assert_eq!(reply.header("retry-after"), retry_after);
    }
}

#[tokio::test]
async fn injected_malformed_body_is_200_and_not_json() {
    let api = Api::default().await;
    api.server.fail_next_auth(1, Failure::Malformed);
    let reply = api.refresh_reply("def50200").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.header(CONTENT_TYPE), "application/json");
    assert!(serde_json::from_slice::<Value>(&reply.body).is_err());
    assert_eq!(
        api.server.counters().rejected_refresh_tokens,
        0,
        "never handled"
    );
}

#[tokio::test]
async fn injected_delay_answers_correctly_but_late() {
    let api = Api::default().await;
    let delay = Duration::from_millis(150);
    api.server.fail_next_auth(1, Failure::Delay(delay));
    let started = Instant::now();
    let reply = api.login_reply(KEY).await;
    assert!(started.elapsed() >= delay, "{:?}", started.elapsed());
    pair(&reply);
    let counters = api.server.counters();
    assert_eq!(
        (
            counters.auth_delays_injected,
            counters.auth_failures_injected,
            counters.api_key_logins
        ),
        (1, 0, 1)
    );
}

#[tokio::test]
async fn a_hung_auth_request_is_never_answered_until_shutdown() {
    let api = Api::default().await;
    api.server.fail_next_auth(1, Failure::Hang);
    let hung = tokio::spawn(api.client.request(api.request(
        Method::POST,
        "/auth/api-key",
        None,
        r#"{"apiKey":"test-key"}"#,
    )));
    let mut hung = std::pin::pin!(hung);
    assert!(
        timeout(Duration::from_millis(300), hung.as_mut())
            .await
            .is_err(),
        "no answer"
    );
    // Other requests are served meanwhile, on other connections.
    api.login().await;
    assert_eq!(api.server.counters().auth_failures_injected, 1);

    let Api { server, client } = api;
    timeout(PROMPTLY, server.shutdown())
        .await
        .expect("shutdown does not wait for the hang");
    let outcome = timeout(PROMPTLY, hung)
        .await
        .expect("the hung request ends at shutdown");
    assert!(outcome.unwrap().is_err(), "closed without a response");
    drop(client);
}

#[tokio::test]
async fn chaos_with_a_seed_is_reproducible() {
    let chaos = Chaos::default()
        .auth_error_rate(0.3)
        .auth_slow(0.2, Duration::from_millis(1))
        .auth_malformed_rate(0.2)
        .spurious_unauthorized_rate(0.3)
        .seed(0x5EED);
    let run = |chaos: Chaos| async move {
        let api = Api::default().await;
        let token = api.login().await.access;
        api.server.set_chaos(chaos);
        let mut outcomes = Vec::new();
        for _ in 0..30 {
            let reply = api.login_reply(KEY).await;
            let parses = serde_json::from_slice::<Value>(&reply.body).is_ok();
            outcomes.push((reply.status, parses));
            outcomes.push((api.get("/videos", Some(&token)).await.status, true));
        }
        (outcomes, api.server.counters())
    };
    let (first, counters) = run(chaos).await;
    let (second, _) = run(chaos).await;
    assert_eq!(first, second);
    for outcome in [
        (StatusCode::OK, true),
        (StatusCode::OK, false),
        (StatusCode::INTERNAL_SERVER_ERROR, true),
        (StatusCode::UNAUTHORIZED, true),
    ] {
        assert!(
            first.contains(&outcome),
            "{outcome:?} never happened: try another seed"
        );
    }
    assert!(counters.auth_delays_injected > 0);
    assert_eq!(counters.unauthorized, counters.unauthorized_spurious);
    assert_eq!(
        counters.auth_failures_injected,
        first
            .iter()
            .step_by(2)
            .filter(|o| **o != (StatusCode::OK, true))
            .count() as u64
    );

    let (calm, _) = run(Chaos::default()).await;
    assert!(
        calm.iter()
            .all(|outcome| *outcome == (StatusCode::OK, true))
    );
}

// ===== lifecycle =====

/// The server runs on a runtime of its own, so that runtime's task count is the server's.
#[test]
fn shutdown_ends_every_task_and_closes_the_listener() {
    let server_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let client_runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let server = server_runtime
        .block_on(MockServer::builder().api_key(KEY).start())
        .unwrap();
    let addr = server.addr();
    let api = Api {
        server,
        client: client_runtime
            .block_on(async { Client::builder(TokioExecutor::new()).build_http() }),
    };
    // One connection left idle in the client's pool, another busy with a hung request.
    client_runtime.block_on(api.login());
    api.server.fail_next_auth(1, Failure::Hang);
    let hung = client_runtime.spawn(api.client.request(api.request(
        Method::POST,
        "/auth/api-key",
        None,
        r#"{"apiKey":"test-key"}"#,
    )));
    client_runtime.block_on(async {
        let arrived = async {
            while api.server.counters().auth_requests < 2 {
                tokio::task::yield_now().await;
            }
        };
        timeout(PROMPTLY, arrived).await.unwrap();
        api.login().await;
    });
    let metrics = server_runtime.metrics();
    assert!(
        metrics.num_alive_tasks() >= 3,
        "accept loop and two connections"
    );

    let Api { server, client } = api;
    server_runtime.block_on(async { timeout(PROMPTLY, server.shutdown()).await.unwrap() });
    // A finished task is released just after its join handle is woken: allow it a moment.
    let deadline = std::time::Instant::now() + PROMPTLY;
    while metrics.num_alive_tasks() > 0 && std::time::Instant::now() < deadline {
        std::thread::yield_now();
    }
    assert_eq!(metrics.num_alive_tasks(), 0);

    client_runtime.block_on(async {
        let outcome = timeout(PROMPTLY, hung).await.unwrap().unwrap();
        assert!(
            outcome.is_err(),
            "the hung request is closed without a response"
        );
        assert!(
            tokio::net::TcpStream::connect(addr).await.is_err(),
            "listener closed"
        );
    });
    drop(client);
}

#[tokio::test]
async fn dropping_the_server_stops_it() {
    let server = MockServer::start().await.unwrap();
    let addr = server.addr();
    drop(server);
    let refused = async {
        while tokio::net::TcpStream::connect(addr).await.is_ok() {
            tokio::task::yield_now().await;
        }
    };
    timeout(PROMPTLY, refused)
        .await
        .expect("the listener closes soon after drop");
}

#[tokio::test]
async fn servers_are_independent() {
    let a = Api::default().await;
    let b = Api::start(
        MockServer::builder()
            .api_key(KEY)
            .addr(SocketAddr::from(([127, 0, 0, 1], 0))),
    )
    .await;
    assert_ne!(a.server.addr(), b.server.addr());
    let token = a.login().await.access;
    assert_eq!(
        b.get("/videos", Some(&token)).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(a.get("/videos", Some(&token)).await.status, StatusCode::OK);
}

#[tokio::test]
async fn defaults_match_the_documentation() {
    let server = MockServer::start().await.unwrap();
    assert_eq!(server.api_key(), "mock-api-key");
    assert!(server.addr().ip().is_loopback());
    assert_eq!(server.uri(), format!("http://{}", server.addr()));
    let api = Api {
        server,
        client: Client::builder(TokioExecutor::new()).build_http(),
    };
    let pair = pair(&api.login_reply("mock-api-key").await);
    assert_eq!(pair.expires_in, 3600);
}

// ===== secrets =====

#[tokio::test]
async fn secrets_stay_out_of_debug_output_and_logs() {
    let logs = capture_globally();
    let seen = Arc::new(Mutex::new(Vec::<RequestLog>::new()));
    let hook = Arc::clone(&seen);
    let builder = MockServer::builder()
        .api_key(KEY)
        .on_request(move |log| hook.lock().unwrap().push(log.clone()));
    let builder_debug = format!("{builder:?}");
    let api = Api::start(builder).await;
    let pair = api.login().await;
    let refreshed = api.refresh(&pair.refresh).await;
    api.refresh_reply(&pair.refresh).await;
    api.login_reply("wrong-key").await;
    api.get("/videos", Some(&refreshed.access)).await;
    api.post("/videos", Some(&pair.access), r#"{"title":"t"}"#)
        .await;

    let debug = format!(
        "{builder_debug} {:?} {:?} {:?} {:?}",
        api.server,
        api.server.counters(),
        api.server.last_auth_headers(),
        seen.lock().unwrap()
    );
    assert!(debug.contains(&api.server.addr().to_string()));
    assert_eq!(seen.lock().unwrap().len(), 6);
    let logs = logs.text();
    assert!(
        logs.contains("mock api.video request"),
        "tracing saw the requests: {logs}"
    );
    for secret in [
        KEY,
        &pair.access,
        &pair.refresh,
        &refreshed.access,
        &refreshed.refresh,
    ] {
        assert!(!debug.contains(secret), "secret in Debug output: {debug}");
        assert!(!logs.contains(secret), "secret in logs: {logs}");
    }
}
