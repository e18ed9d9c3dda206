//! The examples, run in-process: each example's file is compiled in as a module, so its own
//! code runs here, without a nested `cargo` (slow, and fighting the outer one for the build
//! lock).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use regex::Regex;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tower_bearer_mock::apivideo::{MockServer, RequestLog};
use tower_bearer_mock::oauth2::{MockAuthServer, MockClient};

// The session examples each bring `examples/common/` along, as a module of their own.
#[path = "../examples/grpc.rs"]
#[allow(dead_code, clippy::duplicate_mod)]
mod grpc_example;
#[path = "../examples/oauth2.rs"]
#[allow(dead_code, clippy::duplicate_mod)]
mod oauth2_example;
#[path = "../examples/platform.rs"]
#[allow(dead_code, clippy::duplicate_mod)]
mod platform_example;
#[path = "../examples/quickstart.rs"]
#[allow(dead_code, clippy::duplicate_mod)]
mod quickstart;
#[path = "../examples/reqwest.rs"]
#[allow(dead_code, clippy::duplicate_mod)]
mod reqwest_example;

#[path = "../examples/stack.rs"]
#[allow(dead_code)]
mod stack;

#[path = "../examples/axum_upstream.rs"]
#[allow(dead_code)]
mod axum_upstream;

#[path = "../examples/otel.rs"]
#[allow(dead_code)]
mod otel;

/// `vars`, as a lookup the examples' settings read in place of the environment.
fn lookup<'a>(vars: &'a [(&str, &str)]) -> impl Fn(&str) -> Option<String> + 'a {
    move |name| {
        vars.iter()
            .find(|(key, _)| *key == name)
            .map(|(_, value)| (*value).to_owned())
    }
}

/// `cargo run --example oauth2` with the environment `vars`: its report and what it printed.
async fn run_oauth2(vars: &[(&str, &str)]) -> (oauth2_example::Report, String) {
    let settings = oauth2_example::Settings::from_lookup(lookup(vars)).unwrap();
    let mut out = Vec::new();
    let report = oauth2_example::run(settings, &mut out).await.unwrap();
    (report, String::from_utf8(out).unwrap())
}

/// The README's first command, as it runs: every call succeeds across token lifetimes and a
/// revocation, and the auth server saw logins and refresh-token grants.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quickstart_against_the_mock() {
    let mut out = Vec::new();
    let report = quickstart::run_mock(&mut out).await.unwrap();
    let out = String::from_utf8(out).unwrap();

    assert!(report.success(), "{out}");
    assert_eq!(report.ok, quickstart::MOCK_PLAN.requests as u64, "{out}");
    assert_eq!(report.failed, 0, "{out}");
    assert!(report.revoked, "{out}");
    // The first login and the one after the revocation (whose refresh token was revoked too).
    assert_eq!(report.logins, 2, "{out}");
    // At least one refresh-token grant per lifetime that ended without a revocation.
    assert!(report.refreshes >= 2, "{out}");
    assert!(report.retried >= 1, "{out}");
    assert_eq!(report.expired_sent, 0, "{out}");
    assert!(out.contains("320 ok, 0 failed"), "{out}");
    assert_eq!(
        out.matches("the server revoked every token").count(),
        1,
        "{out}"
    );
    assert_shape(
        &out,
        &[
            Line(
                "tower-bearer quickstart: 320 calls from 8 tasks against a mock api.video at \
                 http://127.0.0.1:{n}",
            ),
            Line("(tokens live 2 s; set APIVIDEO_API_KEY to run against the real API)"),
            Lines(&[VIDEO_PROGRESS, REVOKED]),
            Line("done in {n} s"),
            Line("  requests      320 ok, 0 failed"),
            Line("  auth server   2 logins with the API key, {n} refresh-token grants"),
            Line("  tokens        {n} obtained (initial 1, ahead {n}, expired {n}, rejected {n})"),
            Line("  401s          {n} answered, {n} recovered by a retry"),
            Line("  latency       p50 {n} ms, p99 {n} ms"),
            Line("  sent with an expired token: 0"),
        ],
    );
}

/// The real-API session's own code (list, create, then delete what it created), pointed at
/// the mock over plain HTTP. The mock serves no `DELETE`, so each delete is answered 404 and
/// the video reported left behind: what this checks is that every created video's
/// `DELETE /videos/{videoId}` was sent, and that leaving one behind is a failure.
#[tokio::test]
async fn quickstart_real_api_session_against_the_mock() {
    let deletes = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&deletes);
    let server = MockServer::builder()
        .api_key("real-path-key")
        .on_request(move |log: &RequestLog| {
            if log.method == Method::DELETE {
                seen.lock().unwrap().push((log.path.clone(), log.status));
            }
        })
        .start()
        .await
        .unwrap();

    let mut out = Vec::new();
    let report = quickstart::run_real("real-path-key".into(), server.uri().to_string(), &mut out)
        .await
        .unwrap();
    let out = String::from_utf8(out).unwrap();

    assert_eq!((report.ok, report.failed), (40, 0), "{out}");
    assert_eq!(report.created, 10, "{out}");
    assert!(!report.success(), "videos left behind are a failure");
    let mut expected: Vec<_> = report
        .left_behind
        .iter()
        .map(|id| (format!("/videos/{id}"), StatusCode::NOT_FOUND))
        .collect();
    let mut deletes = deletes.lock().unwrap().clone();
    expected.sort();
    deletes.sort();
    assert_eq!(expected.len(), 10);
    assert_eq!(deletes, expected);
    assert!(out.contains("10 created, 0 deleted again"), "{out}");
    assert_shape(
        &out,
        &[
            Line("tower-bearer quickstart: 40 calls from 4 tasks against http://127.0.0.1:{n}"),
            Lines(&[VIDEO_PROGRESS]),
            Line("done in {n} s"),
            Line("  requests      40 ok, 0 failed"),
            Line("  tokens        {n} obtained (initial 1, ahead {n}, expired {n}, rejected {n})"),
            Line("  401s          0 answered, 0 recovered by a retry"),
            Line("  latency       p50 {n} ms, p99 {n} ms"),
            Line("  videos        10 created, 0 deleted again"),
            // The first five errors, then every video left behind.
            Line("  error: DELETE /videos/{*}: 404 Not Found"),
            Line("  error: DELETE /videos/{*}: 404 Not Found"),
            Line("  error: DELETE /videos/{*}: 404 Not Found"),
            Line("  error: DELETE /videos/{*}: 404 Not Found"),
            Line("  error: DELETE /videos/{*}: 404 Not Found"),
            Lines(&["  not deleted: {*}"]),
        ],
    );
    assert_eq!(out.matches("  not deleted: ").count(), 10, "{out}");
}

/// The reqwest example, as it runs: every call succeeds through reqwest-tracing,
/// reqwest-retry and the middleware, across token lifetimes and a revocation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reqwest_example_against_the_mock() {
    let mut out = Vec::new();
    let report = reqwest_example::run(&mut out).await.unwrap();
    let out = String::from_utf8(out).unwrap();

    assert!(report.success(), "{out}");
    assert_eq!((report.ok, report.failed), (240, 0), "{out}");
    assert!(report.revoked, "{out}");
    // The first login and the one after the revocation (whose refresh token was revoked too).
    assert_eq!(report.logins, 2, "{out}");
    assert!(report.refreshes >= 1, "{out}");
    assert!(report.retried >= 1, "{out}");
    assert_eq!(report.expired_sent, 0, "{out}");
    assert!(out.contains("240 ok, 0 failed"), "{out}");
    assert_eq!(
        out.matches("the server revoked every token").count(),
        1,
        "{out}"
    );
    assert_shape(
        &out,
        &[
            Line(
                "tower-bearer with reqwest: 240 calls from 8 tasks against a mock api.video at \
                 http://127.0.0.1:{n}",
            ),
            Line("(tokens live 2 s; reqwest-tracing, reqwest-retry, then BearerAuthMiddleware)"),
            Lines(&[VIDEO_PROGRESS, REVOKED]),
            Line("done in {n} s"),
            Line("  requests      240 ok, 0 failed"),
            Line("  auth server   2 logins with the API key, {n} refresh-token grants"),
            Line("  tokens        {n} obtained (initial 1, ahead {n}, expired {n}, rejected {n})"),
            Line("  401s          {n} answered, {n} recovered by a retry"),
            Line("  latency       p50 {n} ms, p99 {n} ms"),
            Line("  sent with an expired token: 0"),
        ],
    );
}

#[tokio::test]
async fn stack_recovers_from_an_auth_outage_with_retries() {
    let mut out = Vec::new();
    let outcome = stack::run(&mut out).await.unwrap();
    let out = String::from_utf8(out).unwrap();

    assert_eq!((outcome.succeeded, outcome.failed), (16, 0), "{out}");
    assert!(outcome.retries >= 1, "{out}");
    assert_eq!(outcome.logins, 1, "{out}");
    assert_shape(
        &out,
        &[Line(
            "16 of 16 calls succeeded, 0 failed; the retry policy resent {n} (the auth server's \
             503 left them without a token); 1 login, {n} failed refresh",
        )],
    );
}

/// The axum app over real HTTP: concurrent callers share one upstream login, and a
/// revocation upstream costs them nothing; an upstream that refuses the key is a 503.
#[tokio::test]
async fn axum_app_calls_the_upstream_with_a_shared_client() {
    let upstream = MockServer::builder()
        .api_key("axum-key")
        .seed_videos(3)
        .token_ttl(Duration::from_secs(3))
        .start()
        .await
        .unwrap();
    let base = upstream.uri().to_string();
    let (app, _stop) = start(axum_upstream::AppState::new(&base, "axum-key").unwrap()).await;
    let (refused, _stop_refused) =
        start(axum_upstream::AppState::new(&base, "wrong-key").unwrap()).await;
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let get = |uri: String| {
        let client = client.clone();
        async move {
            let request = Request::get(uri).body(Full::default()).unwrap();
            let response = tokio::time::timeout(Duration::from_secs(5), client.request(request))
                .await
                .expect("the app answers")
                .unwrap();
            let status = response.status();
            let body = response.into_body().collect().await.unwrap().to_bytes();
            (status, body)
        }
    };

    let calls: Vec<_> = (0..8)
        .map(|_| tokio::spawn(get(format!("http://{app}/titles"))))
        .collect();
    for call in calls {
        let (status, body) = call.await.unwrap();
        assert_eq!(status, StatusCode::OK);
        let titles: Vec<String> = serde_json::from_slice(&body).unwrap();
        assert_eq!(titles.len(), 3);
    }
    assert_eq!(upstream.counters().api_key_logins, 1);

    // A revocation upstream: the app's next call is refused with 401, and the shared
    // client replaces the token and sends it again. (Tokens live 3 s here, so the first is
    // past the minimum age at which a 401 may replace it, a tenth of its life, after 0.3 s.)
    tokio::time::sleep(Duration::from_millis(400)).await;
    upstream.revoke_all();
    let (status, _) = get(format!("http://{app}/titles")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(upstream.counters().unauthorized_revoked, 1);
    assert_eq!(upstream.counters().api_key_logins, 2);

    let (status, body) = get(format!("http://{refused}/titles")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    let body = String::from_utf8_lossy(&body);
    assert!(
        body.contains("upstream authentication unavailable"),
        "{body}"
    );
    assert!(!body.contains("wrong-key"), "{body}");
}

/// `cargo run --example oauth2` as it runs with no environment: every call succeeds across
/// token lifetimes and two revocations, with refresh tokens used and never reused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oauth2_against_the_mock() {
    let settings = oauth2_example::Settings::from_lookup(|_| None).unwrap();
    assert_eq!(settings.load.requests, 200);
    let mut out = Vec::new();
    let report = oauth2_example::run(settings, &mut out).await.unwrap();
    let out = String::from_utf8(out).unwrap();

    assert!(report.success(200), "{out}");
    assert_eq!((report.ok, report.failed), (200, 0), "{out}");
    assert_eq!(report.revocations, 2, "{out}");
    // The first grant, and one after each revocation (whose refresh token was revoked too).
    assert_eq!(report.client_credentials, 3, "{out}");
    // At least one refresh per lifetime that ended without a revocation.
    assert!(report.refresh_token >= 2, "{out}");
    assert!(report.retried >= 2, "{out}");
    assert_eq!((report.reuses, report.expired_sent), (0, 0), "{out}");
    assert!(out.contains("200 ok, 0 failed"), "{out}");
    assert_eq!(
        out.matches("the server revoked every token").count(),
        2,
        "{out}"
    );
    assert_shape(
        &out,
        &[
            Line(
                "tower-bearer oauth2: 200 calls from 8 tasks against a mock authorization server \
                 at http://127.0.0.1:{n} (client_secret_basic)",
            ),
            Line(
                "(tokens live 1 s; set OAUTH2_ISSUER or OAUTH2_TOKEN_URL to run against a real \
                 server)",
            ),
            Lines(&[OAUTH2_PROGRESS, REVOKED]),
            Line("done in {n} s"),
            Line("  calls           200 ok, 0 failed"),
            Line("  token endpoint  3 client_credentials, {n} refresh_token requests ({n} tokens)"),
            Line("  401s            {n} answered, {n} recovered by a retry"),
            Line("  latency         p50 {n} ms, p99 {n} ms"),
            Line(
                "  server          2 revocations, 0 refresh tokens reused, 0 calls with an \
                 expired token",
            ),
        ],
    );
}

/// The mock registers the client with `OAUTH2_AUTH_METHOD`, and checks it on the wire.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oauth2_against_the_mock_with_each_auth_method() {
    for method in ["client_secret_post", "private_key_jwt"] {
        let (report, out) = run_oauth2(&[
            ("OAUTH2_AUTH_METHOD", method),
            ("REQUESTS", "40"),
            ("PACE_MS", "0"),
        ])
        .await;
        assert!(report.success(40), "{method}: {out}");
        assert_eq!(report.client_credentials, 1, "{out}");
        assert!(out.contains(method), "{out}");
    }
}

/// `OAUTH2_DPOP=1 cargo run --example oauth2`: the same run with DPoP-bound
/// tokens against a mock that requires proofs and its nonce everywhere and changes its nonce
/// every second; every call succeeds, each nonce change recovered by a retry with the same
/// token, and no proof refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oauth2_against_the_mock_with_dpop() {
    let settings = oauth2_example::Settings::from_lookup(|name| {
        (name == "OAUTH2_DPOP").then(|| "1".to_owned())
    })
    .unwrap();
    assert!(settings.dpop());
    let mut out = Vec::new();
    let report = oauth2_example::run(settings, &mut out).await.unwrap();
    let out = String::from_utf8(out).unwrap();

    assert!(report.success(200), "{out}");
    assert!(out.contains("DPoP with ES256 key"), "{out}");
    assert_eq!(report.revocations, 2, "{out}");
    assert_eq!((report.reuses, report.expired_sent), (0, 0), "{out}");
    // The first grant meets the token endpoint's nonce.
    assert!(report.token_nonce_challenges >= 1, "{out}");
    assert!(report.nonce_rotations >= 2, "{out}");
    assert!(report.api_nonce_challenges >= 1, "{out}");
    assert_eq!(report.proofs_refused, 0, "{out}");
    assert!(report.nonce_retried >= 1, "{out}");
    assert!(
        out.contains("sent again with the server's new nonce"),
        "{out}"
    );
    assert_shape(
        &out,
        &[
            Line(
                "tower-bearer oauth2: 200 calls from 8 tasks against a mock authorization server \
                 at http://127.0.0.1:{n} (client_secret_basic, DPoP with ES256 key {*})",
            ),
            Line(
                "(tokens live 1 s; set OAUTH2_ISSUER or OAUTH2_TOKEN_URL to run against a real \
                 server)",
            ),
            Lines(&[OAUTH2_PROGRESS, REVOKED]),
            Line("done in {n} s"),
            Line("  calls           200 ok, 0 failed"),
            Line(
                "  token endpoint  {n} client_credentials, {n} refresh_token requests ({n} tokens)",
            ),
            Line("  401s            {n} answered, {n} recovered by a retry"),
            Line("  dpop            {n} sent again with the server's new nonce (same token)"),
            Line("  latency         p50 {n} ms, p99 {n} ms"),
            Line(
                "  server          2 revocations, 0 refresh tokens reused, 0 calls with an \
                 expired token",
            ),
            Line(
                "  server dpop     {n} nonce rotations; nonce challenges: {n} at the token \
                 endpoint, {n} at the API; 0 proofs refused",
            ),
        ],
    );
}

/// `OAUTH2_DPOP_KEY` loads the key from a PEM file (DPoP without `OAUTH2_DPOP`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oauth2_against_the_mock_with_a_dpop_key_from_a_file() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/keys/ed25519.pkcs8.pem");
    let (report, out) = run_oauth2(&[
        ("OAUTH2_DPOP_KEY", path),
        ("REQUESTS", "40"),
        ("PACE_MS", "0"),
    ])
    .await;
    assert!(report.success(40), "{out}");
    assert!(out.contains("DPoP with EdDSA key"), "{out}");
    assert_eq!(report.proofs_refused, 0, "{out}");
}

#[test]
fn oauth2_settings_are_checked() {
    let error = |vars| {
        oauth2_example::Settings::from_lookup(lookup(vars))
            .err()
            .unwrap()
    };
    assert!(error(&[("REQUESTS", "many")]).contains("REQUESTS"));
    assert!(error(&[("OAUTH2_AUTH_METHOD", "client_secret_jwt")]).contains("client_secret_jwt"));
    assert!(error(&[("OAUTH2_ISSUER", "https://as.example")]).contains("OAUTH2_CLIENT_ID"));
    assert!(
        error(&[
            ("OAUTH2_TOKEN_URL", "https://as.example/t"),
            ("OAUTH2_CLIENT_ID", "c")
        ])
        .contains("API_URL")
    );
    assert!(error(&[("OAUTH2_PRIVATE_KEY", "/nonexistent/key.pem")]).contains("/nonexistent"));
    assert!(error(&[("OAUTH2_DPOP", "yes")]).contains("OAUTH2_DPOP"));
    assert!(error(&[("OAUTH2_DPOP_KEY", "/nonexistent/dpop.pem")]).contains("/nonexistent"));
    let settings = oauth2_example::Settings::from_lookup(lookup(&[
        ("OAUTH2_TOKEN_URL", "https://as.example/t"),
        ("OAUTH2_CLIENT_ID", "c"),
        ("API_URL", "https://api.example/x"),
        ("REQUESTS", "7"),
    ]))
    .unwrap();
    assert_eq!(settings.load.requests, 7);
}

/// `cargo run --example platform` as it runs with no environment: one client calls two APIs,
/// each accepting only its own platform's tokens, and every call succeeds across token
/// lifetimes: each request got its origin's token. Each cache's count of token requests is
/// what its mock saw.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn platform_against_the_mocks() {
    let settings = platform_example::Settings::from_lookup(|_| None).unwrap();
    assert_eq!(settings.load.requests, 200);
    let mut out = Vec::new();
    let report = platform_example::run(settings, &mut out).await.unwrap();
    let out = String::from_utf8(out).unwrap();

    assert!(report.success(200), "{out}");
    assert_eq!((report.ok, report.failed), (200, 0), "{out}");
    // No token went to the other API, nor was refused.
    assert_eq!((report.unauthorized, report.retried), (0, 0), "{out}");
    let names: Vec<_> = report.sources.iter().map(|s| s.name).collect();
    assert_eq!(names, ["gcp-metadata", "azure-managed-identity"], "{out}");
    for source in &report.sources {
        let (seen, issued) = source.mock.unwrap();
        assert_eq!(source.requests, seen, "{}: {out}", source.name);
        assert_eq!(source.tokens, source.requests, "{}: {out}", source.name);
        // The first token, and at least one more as the run outlived it.
        assert!(issued >= 2, "{}: {out}", source.name);
        assert!(source.requests >= issued, "{}: {out}", source.name);
    }
    assert_shape(
        &out,
        &[
            Line(
                "tower-bearer platform: 200 calls from 8 tasks, half to each of two APIs through \
                 one client, tokens from a mock GCP metadata server at http://127.0.0.1:{n} and \
                 a mock Azure managed identity at http://127.0.0.1:{n}",
            ),
            Line("(tokens live 2 s; set TOKEN_SOURCE and API_URL to use the platform's own)"),
            Lines(&[PLATFORM_MOCK_PROGRESS]),
            Line("done in {n} s"),
            Line("  calls                   200 ok, 0 failed"),
            Line(
                "  gcp-metadata            {n} token requests, {n} tokens; the mock saw {n} \
                 requests, issued {n} tokens",
            ),
            Line(
                "  azure-managed-identity  {n} token requests, {n} tokens; the mock saw {n} \
                 requests, issued {n} tokens",
            ),
            Line("  401s                    0 answered, 0 recovered by a retry"),
            Line("  latency                 p50 {n} ms, p99 {n} ms"),
            Line("  keyed layer             2 keys held, 2 caches made, 0 keys evicted"),
        ],
    );
}

/// `TOKEN_SOURCE=file`: the file's token is the subject of a token exchange at the mock
/// authorization server, which accepts only the tokens it was told of, and the tokens it
/// issues are good at its API. The file is rotated during the run, as the kubelet rotates a
/// projected token, and the run goes on across the next exchange (the mock redacts the subject
/// tokens it logs: `tests/oauth2_platform.rs` shows the provider sending the new one); then
/// rotated to a token the server refuses, and every call fails. Neither subject token nor the
/// client's secret is printed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn platform_with_a_token_file() {
    let auth = MockAuthServer::builder()
        .register(MockClient::secret_basic("platform-file", "its-secret"))
        .subject_token("subject-token-one")
        .subject_token("subject-token-two")
        .token_ttl(Duration::from_secs(1))
        .start()
        .await
        .unwrap();
    let file = Arc::new(TempFile::new(
        "platform-subject-token",
        "subject-token-one\n",
    ));
    let (token_url, api_url) = (auth.token_endpoint(), auth.uri_for("/api/items"));
    let vars = [
        ("TOKEN_SOURCE", "file"),
        ("TOKEN_FILE", file.path()),
        ("OAUTH2_TOKEN_URL", &token_url),
        ("OAUTH2_CLIENT_ID", "platform-file"),
        ("OAUTH2_CLIENT_SECRET", "its-secret"),
        ("API_URL", &api_url),
        // 10 calls a task, 150 ms apart: a token lifetime and a half.
        ("REQUESTS", "40"),
        ("CONCURRENCY", "4"),
        ("PACE_MS", "150"),
    ];
    // Well before the first token's refresh, three quarters into its life.
    let rotation = tokio::spawn({
        let file = file.clone();
        async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            file.write("subject-token-two\n");
        }
    });
    let (report, out) = run_platform(&vars).await;
    rotation.await.unwrap();

    assert!(report.success(40), "{out}");
    assert_eq!((report.unauthorized, report.retried), (0, 0), "{out}");
    assert_eq!(report.sources.len(), 1, "{out}");
    let source = &report.sources[0];
    assert_eq!(source.tokens, source.requests, "{out}");
    // The first exchange, and at least one after the rotation, as the first token aged.
    let exchanges = auth.token_requests();
    assert_eq!(exchanges.len() as u64, source.requests, "{out}");
    assert!(exchanges.len() >= 2, "{out}");
    for exchange in &exchanges {
        assert_eq!(
            exchange.grant_type,
            "urn:ietf:params:oauth:grant-type:token-exchange"
        );
        assert_eq!(exchange.status, StatusCode::OK, "{out}");
    }
    for secret in ["its-secret", "subject-token-one", "subject-token-two"] {
        assert!(!out.contains(secret), "{out}");
    }
    assert_shape(
        &out,
        &[
            Line(
                "tower-bearer platform: 40 calls from 4 tasks to http://127.0.0.1:{n}/api/items \
                 with tokens from file (http://127.0.0.1:{n}/token for {*})",
            ),
            Lines(&[OAUTH2_PROGRESS]),
            Line("done in {n} s"),
            Line("  calls                   40 ok, 0 failed"),
            Line("  file                    {n} token requests, {n} tokens"),
            Line("  401s                    0 answered, 0 recovered by a retry"),
            Line("  latency                 p50 {n} ms, p99 {n} ms"),
        ],
    );

    // A subject token the server does not accept: no token, every call fails, with why.
    file.write("a-token-from-another-cluster");
    let (report, out) = run_platform(&vars).await;
    assert!(!report.success(40), "{out}");
    assert_eq!((report.ok, report.failed), (0, 40), "{out}");
    assert!(out.contains("invalid_grant"), "{out}");
    assert!(!out.contains("a-token-from-another-cluster"), "{out}");
    auth.shutdown().await;
}

/// A missing or bad variable is an error that names it.
#[test]
fn platform_settings_are_checked() {
    fn error(vars: &[(&str, &str)]) -> String {
        platform_example::Settings::from_lookup(lookup(vars))
            .err()
            .unwrap()
    }
    let file = TempFile::new("platform-settings", "t");
    assert!(error(&[("TOKEN_SOURCE", "aws")]).contains("TOKEN_SOURCE"));
    assert!(error(&[("API_URL", "https://api.example")]).contains("TOKEN_SOURCE"));
    assert!(error(&[("TOKEN_SOURCE", "gcp-metadata")]).contains("API_URL"));
    assert!(
        error(&[("TOKEN_SOURCE", "gcp-metadata"), ("API_URL", "not a url")]).contains("API_URL")
    );
    assert!(
        error(&[
            ("TOKEN_SOURCE", "azure-managed-identity"),
            ("API_URL", "https://vault.example")
        ])
        .contains("OAUTH2_RESOURCE")
    );
    assert!(
        error(&[
            ("TOKEN_SOURCE", "azure-workload-identity"),
            ("API_URL", "https://api.example")
        ])
        .contains("OAUTH2_SCOPE")
    );
    assert!(error(&[("TOKEN_SOURCE", "file")]).contains("TOKEN_FILE"));
    assert!(
        error(&[
            ("TOKEN_SOURCE", "file"),
            ("TOKEN_FILE", "/nonexistent/token")
        ])
        .contains("/nonexistent/token")
    );
    assert!(
        error(&[("TOKEN_SOURCE", "file"), ("TOKEN_FILE", file.path())])
            .contains("OAUTH2_TOKEN_URL")
    );
    assert!(
        error(&[
            ("TOKEN_SOURCE", "file"),
            ("TOKEN_FILE", file.path()),
            ("OAUTH2_TOKEN_URL", "https://sts.example/token"),
        ])
        .contains("OAUTH2_CLIENT_ID")
    );
    assert!(error(&[("REQUESTS", "many")]).contains("REQUESTS"));
    let settings = platform_example::Settings::from_lookup(lookup(&[
        ("TOKEN_SOURCE", "gcp-metadata"),
        ("API_URL", "https://storage.googleapis.com/b"),
        ("REQUESTS", "9"),
    ]))
    .unwrap();
    assert_eq!(settings.load.requests, 9);
}

/// `cargo run --example platform` with the environment `vars`: its report and what it printed.
async fn run_platform(vars: &[(&str, &str)]) -> (platform_example::Report, String) {
    let settings = platform_example::Settings::from_lookup(lookup(vars)).unwrap();
    let mut out = Vec::new();
    let report = platform_example::run(settings, &mut out).await.unwrap();
    (report, String::from_utf8(out).unwrap())
}

/// A file of its own under the temporary directory, removed when dropped.
struct TempFile(std::path::PathBuf);

impl TempFile {
    fn new(name: &str, contents: &str) -> Self {
        let path = std::env::temp_dir().join(format!("{name}-{}", std::process::id()));
        let file = TempFile(path);
        file.write(contents);
        file
    }

    fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }

    fn write(&self, contents: &str) {
        std::fs::write(&self.0, contents).unwrap();
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Serves `state`'s app on a loopback port until the returned sender is dropped.
async fn start(state: axum_upstream::AppState) -> (std::net::SocketAddr, oneshot::Sender<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(axum_upstream::serve(listener, state, async {
        let _ = stopped.await;
    }));
    (addr, stop)
}

/// `cargo run --example grpc` as it runs with no environment: every call answers SERVING
/// across several token lifetimes and a revocation, which costs one UNAUTHENTICATED per
/// call in flight, each recovered by a retry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_against_the_embedded_servers() {
    let settings = grpc_example::Settings::from_lookup(|_| None).unwrap();
    let mut out = Vec::new();
    let report = grpc_example::run(settings, &mut out).await.unwrap();
    let out = String::from_utf8(out).unwrap();

    assert!(report.success(200), "{out}");
    assert_eq!((report.ok, report.failed), (200, 0), "{out}");
    assert_eq!(report.revocations, 1, "{out}");
    assert!(report.refused >= 1, "the revocation was noticed: {out}");
    // Each refusal was of the cache's token, and each call refused was sent again.
    assert_eq!(report.unauthenticated, report.refused, "{out}");
    assert_eq!(report.retried, report.refused, "{out}");
    assert_eq!(report.served, 200, "{out}");
    // The first token, one per lifetime after it, and the revocation's.
    assert!(report.tokens >= 3, "{out}");
    assert!(out.contains("200 SERVING, 0 failed"), "{out}");
    assert!(out.contains("revoked every token"), "{out}");
    assert_shape(
        &out,
        &[
            Line(
                "tower-bearer grpc: 200 Health/Check calls from 8 tasks to a tonic server at \
                 http://127.0.0.1:{n}, tokens from a mock authorization server at \
                 http://127.0.0.1:{n} (client_secret_basic)",
            ),
            Line(
                "(tokens live 1 s; set GRPC_ENDPOINT and OAUTH2_ISSUER or OAUTH2_TOKEN_URL to \
                 call a real server)",
            ),
            Lines(&[
                GRPC_PROGRESS,
                "{>5.1}s  the authorization server revoked every token",
            ]),
            Line("done in {n} s"),
            Line("  calls            200 SERVING, 0 failed"),
            Line("  tokens           {n} obtained"),
            Line("  UNAUTHENTICATED  {n} answered, {n} recovered by a retry"),
            Line("  latency          p50 {n} ms, p99 {n} ms"),
            Line("  gRPC server      200 calls served, {n} refused; 1 revocation"),
        ],
    );
}

/// The example's variables are read as its documentation says.
#[test]
fn grpc_settings_are_checked() {
    let defaults = grpc_example::Settings::from_lookup(lookup(&[])).unwrap();
    assert_eq!(defaults.load.requests, 200);
    let error = |vars| {
        grpc_example::Settings::from_lookup(lookup(vars))
            .err()
            .unwrap()
    };
    assert!(error(&[("REQUESTS", "many")]).contains("REQUESTS"));
    assert!(error(&[("GRPC_ENDPOINT", "http://127.0.0.1:1")]).contains("OAUTH2_ISSUER"));
    // The embedded gRPC server takes bearer tokens only.
    assert!(error(&[("OAUTH2_DPOP", "1")]).contains("OAUTH2_DPOP"));
    assert!(
        error(&[
            ("OAUTH2_TOKEN_URL", "https://as.example/t"),
            ("OAUTH2_CLIENT_ID", "c")
        ])
        .contains("GRPC_ENDPOINT")
    );
    assert!(
        error(&[
            ("GRPC_ENDPOINT", "http://127.0.0.1:1"),
            ("OAUTH2_ISSUER", "https://as.example")
        ])
        .contains("OAUTH2_CLIENT_ID")
    );
    let settings = grpc_example::Settings::from_lookup(lookup(&[
        ("GRPC_ENDPOINT", "http://127.0.0.1:1"),
        ("OAUTH2_TOKEN_URL", "https://as.example/t"),
        ("OAUTH2_CLIENT_ID", "c"),
        ("REQUESTS", "12"),
    ]))
    .unwrap();
    assert_eq!(settings.load.requests, 12);
}

/// The `GRPC_ENDPOINT` path, with the variables of its contract, pointed at the embedded
/// servers: a tonic server that checks tokens with an authorization server the example does
/// not start itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_with_an_endpoint_and_a_token_url() {
    let auth = MockAuthServer::builder()
        .register(MockClient::secret_post("grpc-real-path", "its-secret"))
        .start()
        .await
        .unwrap();
    let grpc = grpc_example::grpc_server::GrpcServer::start(&auth.uri_for("/api/check"))
        .await
        .unwrap();
    let settings = grpc_example::Settings::from_lookup(lookup(&[
        ("GRPC_ENDPOINT", &grpc.endpoint()),
        ("OAUTH2_TOKEN_URL", &auth.token_endpoint()),
        ("OAUTH2_CLIENT_ID", "grpc-real-path"),
        ("OAUTH2_CLIENT_SECRET", "its-secret"),
        ("OAUTH2_AUTH_METHOD", "client_secret_post"),
        ("REQUESTS", "24"),
        ("CONCURRENCY", "4"),
    ]))
    .unwrap();

    let mut out = Vec::new();
    let report = grpc_example::run(settings, &mut out).await.unwrap();
    let out = String::from_utf8(out).unwrap();

    assert!(report.success(24), "{out}");
    assert_eq!(report.tokens, 1, "{out}");
    assert!(out.contains(&grpc.endpoint()), "{out}");
    assert_eq!(auth.counters().token_requests, 1, "{out}");
    assert_shape(
        &out,
        &[
            Line(
                "tower-bearer grpc: 24 Health/Check calls from 4 tasks to http://127.0.0.1:{n} \
                 with tokens from http://127.0.0.1:{n}/token (client_secret_post)",
            ),
            Lines(&[GRPC_PROGRESS]),
            Line("done in {n} s"),
            Line("  calls            24 SERVING, 0 failed"),
            Line("  tokens           1 obtained"),
            Line("  UNAUTHENTICATED  0 answered, 0 recovered by a retry"),
            Line("  latency          p50 {n} ms, p99 {n} ms"),
        ],
    );
    grpc.stop().await.unwrap();
    auth.shutdown().await;
}

// ===== what the examples print =====

/// A part of an example's output: one line, or one or more lines each like one of these (the
/// progress lines, with an event among them). In a template `{n}` is a number, `{>W}` a whole
/// number right-aligned in `W` columns, `{>W.1}` one with one decimal, `{*}` any text; the rest
/// stands for itself, spaces included.
enum Shape {
    Line(&'static str),
    Lines(&'static [&'static str]),
}

use Shape::{Line, Lines};

/// The regular expression of a template line.
fn pattern(template: &str) -> Regex {
    let placeholder = Regex::new(r"\{(n|\*|>\d+(?:\.1)?)\}").unwrap();
    let mut regex = String::from("^");
    let mut rest = 0;
    for found in placeholder.captures_iter(template) {
        let whole = found.get(0).unwrap();
        regex.push_str(&regex::escape(&template[rest..whole.start()]));
        rest = whole.end();
        let what = &found[1];
        let alternatives = match what {
            "n" => r"\d+(?:\.\d+)?".to_owned(),
            "*" => ".*".to_owned(),
            aligned => {
                let (width, decimal) = match aligned[1..].split_once('.') {
                    Some((width, _)) => (width.parse::<usize>().unwrap(), true),
                    None => (aligned[1..].parse::<usize>().unwrap(), false),
                };
                let tail = if decimal { r"\.\d" } else { "" };
                let digits_at_least = if decimal { width - 2 } else { width };
                // Padded to the width, or wider than it with no padding.
                let mut choices = vec![format!(r"\d{{{digits_at_least},}}{tail}")];
                for spaces in 1..digits_at_least {
                    choices.push(format!(
                        " {{{spaces}}}\\d{{{}}}{tail}",
                        digits_at_least - spaces
                    ));
                }
                format!("(?:{})", choices.join("|"))
            }
        };
        regex.push_str(&alternatives);
    }
    regex.push_str(&regex::escape(&template[rest..]));
    regex.push('$');
    Regex::new(&regex).unwrap()
}

/// Checks that `out` is made of `shape`, line for line.
#[track_caller]
fn assert_shape(out: &str, shape: &[Shape]) {
    let mut lines = out.lines().peekable();
    for part in shape {
        match part {
            Line(template) => {
                let line = lines.next().unwrap_or_default();
                assert!(
                    pattern(template).is_match(line),
                    "expected a line like {template:?}, found {line:?} in\n{out}"
                );
            }
            Lines(templates) => {
                let patterns: Vec<Regex> = templates.iter().map(|t| pattern(t)).collect();
                let mut matched = 0;
                while let Some(line) = lines.peek() {
                    if !patterns.iter().any(|p| p.is_match(line)) {
                        break;
                    }
                    lines.next();
                    matched += 1;
                }
                assert!(
                    matched > 0,
                    "expected lines like {templates:?}, found {:?} in\n{out}",
                    lines.peek()
                );
            }
        }
    }
    assert_eq!(lines.next(), None, "more than expected in\n{out}");
}

/// The progress line of the api.video examples (quickstart, reqwest).
const VIDEO_PROGRESS: &str =
    "{>5.1}s  {>3} ok  {n} failed  token #{n} ({n} s left)  401s retried {n}";
const REVOKED: &str = "{>5.1}s  the server revoked every token";
/// The progress line of the OAuth 2.0 example.
const OAUTH2_PROGRESS: &str = "{>5.1}s  {>4} ok  {n} failed  token #{n}  401s retried {n}";
/// The progress line of the platform example against its mocks: two keys, two tokens.
const PLATFORM_MOCK_PROGRESS: &str =
    "{>5.1}s  {>4} ok  {n} failed  tokens #{n} #{n}  401s retried {n}";
/// The progress line of the gRPC example.
const GRPC_PROGRESS: &str = "{>5.1}s  {>4} ok  {n} failed  token #{n}  UNAUTHENTICATED retried {n}";

#[test]
fn shape_templates_read_as_documented() {
    let progress = pattern(VIDEO_PROGRESS);
    assert!(progress.is_match("  1.0s   54 ok  0 failed  token #1 (1.0 s left)  401s retried 0"));
    assert!(progress.is_match(" 10.0s  320 ok  0 failed  token #5 (1.0 s left)  401s retried 1"));
    assert!(progress.is_match("100.0s  1320 ok  0 failed  token #5 (1.0 s left)  401s retried 1"));
    // Misaligned: a column too few, or too many.
    assert!(!progress.is_match(" 1.0s   54 ok  0 failed  token #1 (1.0 s left)  401s retried 0"));
    assert!(!progress.is_match("  1.0s    54 ok  0 failed  token #1 (1.0 s left)  401s retried 0"));
    assert!(!progress.is_match("  1.0s   54 ok  0 failed  token #1 (1.0 s left)  401s retried x"));
    assert!(pattern("  error: {*}").is_match("  error: GET /videos: 500"));
    assert!(!pattern("  tokens        {n} obtained").is_match("  tokens       1 obtained"));
}

/// The real-API session with a key the server refuses: every call fails, with why, and the
/// run is a failure.
#[tokio::test]
async fn quickstart_with_a_refused_api_key() {
    let server = MockServer::builder()
        .api_key("the-right-key")
        .start()
        .await
        .unwrap();
    let mut out = Vec::new();
    let report = quickstart::run_real("a-wrong-key".into(), server.uri().to_string(), &mut out)
        .await
        .unwrap();
    let out = String::from_utf8(out).unwrap();

    assert!(!report.success(), "{out}");
    assert_eq!(
        (report.ok, report.failed, report.created),
        (0, 40, 0),
        "{out}"
    );
    assert!(!out.contains("a-wrong-key"), "{out}");
    assert_shape(
        &out,
        &[
            Line("tower-bearer quickstart: 40 calls from 4 tasks against http://127.0.0.1:{n}"),
            Lines(&[VIDEO_PROGRESS]),
            Line("done in {n} s"),
            Line("  requests      0 ok, 40 failed"),
            Line("  tokens        0 obtained (initial 0, ahead 0, expired 0, rejected 0)"),
            Line("  401s          0 answered, 0 recovered by a retry"),
            Line("  latency       p50 {n} ms, p99 {n} ms"),
            Line("  videos        0 created, 0 deleted again"),
            Line(
                "  error: {*} /videos: could not get a token: {*}/auth/api-key refused the API key: 400 {*}",
            ),
            Lines(&["  error: {*} /videos: could not get a token: {*}"]),
        ],
    );
    assert_eq!(out.matches("  error: ").count(), 5, "{out}");
}

/// The variables of the contract for a real server, pointed at the mock authorization server
/// and its API: the session's real-server path.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oauth2_with_a_token_url_and_an_api_url() {
    let auth = MockAuthServer::builder()
        .register(MockClient::secret_post("oauth2-real-path", "its-secret"))
        .start()
        .await
        .unwrap();
    let (report, out) = run_oauth2(&[
        ("OAUTH2_TOKEN_URL", &auth.token_endpoint()),
        ("OAUTH2_CLIENT_ID", "oauth2-real-path"),
        ("OAUTH2_CLIENT_SECRET", "its-secret"),
        ("OAUTH2_AUTH_METHOD", "client_secret_post"),
        ("API_URL", &auth.uri_for("/api/items")),
        ("REQUESTS", "24"),
        ("CONCURRENCY", "4"),
    ])
    .await;

    assert!(report.success(24), "{out}");
    assert_eq!(report.client_credentials, 1, "{out}");
    assert_eq!(auth.counters().token_requests, 1, "{out}");
    assert!(!out.contains("its-secret"), "{out}");
    assert_shape(
        &out,
        &[
            Line(
                "tower-bearer oauth2: 24 calls from 4 tasks to http://127.0.0.1:{n}/api/items \
                 with tokens from http://127.0.0.1:{n}/token (client_secret_post)",
            ),
            Lines(&[OAUTH2_PROGRESS]),
            Line("done in {n} s"),
            Line("  calls           24 ok, 0 failed"),
            Line("  token endpoint  1 client_credentials, 0 refresh_token requests (1 tokens)"),
            Line("  401s            0 answered, 0 recovered by a retry"),
            Line("  latency         p50 {n} ms, p99 {n} ms"),
        ],
    );
    auth.shutdown().await;
}

/// A token endpoint nothing listens on: every call fails, each with why, and the run is a
/// failure.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oauth2_with_a_token_endpoint_that_cannot_be_reached() {
    let closed = {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        listener.local_addr().unwrap()
    };
    let (report, out) = run_oauth2(&[
        ("OAUTH2_TOKEN_URL", &format!("http://{closed}/token")),
        ("OAUTH2_CLIENT_ID", "c"),
        ("OAUTH2_CLIENT_SECRET", "s"),
        ("API_URL", &format!("http://{closed}/api")),
        ("REQUESTS", "3"),
    ])
    .await;

    assert!(!report.success(3), "{out}");
    assert_eq!((report.ok, report.failed), (0, 3), "{out}");
    assert_shape(
        &out,
        &[
            Line(
                "tower-bearer oauth2: 3 calls from 8 tasks to http://127.0.0.1:{n}/api with \
                 tokens from http://127.0.0.1:{n}/token (client_secret_basic)",
            ),
            Lines(&[OAUTH2_PROGRESS]),
            Line("done in {n} s"),
            Line("  calls           0 ok, 3 failed"),
            Line("  token endpoint  {n} client_credentials, 0 refresh_token requests (0 tokens)"),
            Line("  401s            0 answered, 0 recovered by a retry"),
            Line("  latency         p50 {n} ms, p99 {n} ms"),
            Lines(&["  error: could not get a token: {*}"]),
        ],
    );
    assert_eq!(out.matches("  error: ").count(), 3, "{out}");
}

/// `cargo run --example otel`, exported to memory: the refresh is a root span linked to the
/// caller's, and the provider's two requests are client spans inside it, with OpenTelemetry's
/// HTTP attributes.
#[tokio::test(flavor = "current_thread")]
async fn otel_exports_the_refresh_with_its_http_client_spans() {
    use opentelemetry::trace::SpanKind;
    use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};

    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    otel::run(&provider).await.unwrap();
    let spans = exporter.get_finished_spans().unwrap();

    let named = |name: &'static str| spans.iter().filter(move |s| s.name == name);
    let request = named("request").next().expect("the caller's span");
    let refresh = named("tower_bearer.refresh")
        .next()
        .expect("a refresh span");
    assert_eq!(
        refresh.parent_span_id,
        opentelemetry::trace::SpanId::INVALID
    );
    assert!(
        refresh
            .links
            .iter()
            .any(|link| link.span_context == request.span_context),
        "the refresh links to the request that started it"
    );
    let attribute = |span: &opentelemetry_sdk::trace::SpanData, key: &str| {
        span.attributes
            .iter()
            .find(|kv| kv.key.as_str() == key)
            .map(|kv| kv.value.to_string())
    };
    assert_eq!(attribute(refresh, "provider").as_deref(), Some("oauth2"));
    assert_eq!(attribute(refresh, "outcome").as_deref(), Some("success"));

    let children: Vec<_> = spans
        .iter()
        .filter(|s| s.parent_span_id == refresh.span_context.span_id())
        .collect();
    let names: Vec<_> = children.iter().map(|s| s.name.as_ref()).collect();
    assert_eq!(names, ["GET", "POST"]);
    for span in children {
        assert_eq!(span.span_kind, SpanKind::Client);
        assert_eq!(
            attribute(span, "http.request.method").as_deref(),
            Some(&*span.name)
        );
        assert_eq!(
            attribute(span, "server.address").as_deref(),
            Some("127.0.0.1")
        );
        assert_eq!(
            attribute(span, "http.response.status_code").as_deref(),
            Some("200")
        );
        // Integers, as OpenTelemetry's conventions have them.
        for key in ["http.response.status_code", "server.port"] {
            let value = span.attributes.iter().find(|kv| kv.key.as_str() == key);
            assert!(
                matches!(
                    value.map(|kv| &kv.value),
                    Some(opentelemetry::Value::I64(_))
                ),
                "{key}: {value:?}"
            );
        }
        assert!(
            attribute(span, "url.full").is_some_and(|url| url.starts_with("http://127.0.0.1:"))
        );
    }
}
