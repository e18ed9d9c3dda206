//! The Azure managed identity mock checked against Microsoft's own client: azure-identity's
//! `ManagedIdentityCredential` (Python, pinned in `tests/interop/python/azure.txt`), run in a
//! virtual environment under the target directory, gets its token from the mock as App Service
//! (`IDENTITY_ENDPOINT`, `IDENTITY_HEADER`) and as IMDS (`AZURE_POD_IDENTITY_AUTHORITY_HOST`,
//! which azure-identity honours: MSAL puts it in place of `http://169.254.169.254`). The
//! provider reads the same mock in both modes, and sends what azure-identity sends, as often.
//!
//! Runs under `cargo test --all-features` (feature `server-tests`); needs Python 3.9+ with venv
//! and pip, and PyPI for the first run. Real time: azure-identity sleeps its own waits.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::StatusCode;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use tower::ServiceExt;

use tower_bearer::{RefreshReason, Token, TokenRequest};
use tower_bearer_mock::azure::{Endpoint, Fault, MockManagedIdentity};
use tower_bearer_platform::azure::{ManagedIdentity, ManagedIdentityError, UserAssignedId};

const SCOPE: &str = "https://vault.azure.net/.default";
const RESOURCE: &str = "https://vault.azure.net";
const USER_CLIENT_ID: &str = "11111111-2222-3333-4444-555555555555";
const TTL: Duration = Duration::from_secs(3600);

/// Gets a token for `argv[1]` with `ManagedIdentityCredential` (a user-assigned client id in
/// `argv[2]`, if any) and prints it, or the error's class, as JSON.
const SCRIPT: &str = r#"
import json, sys
from azure.identity import ManagedIdentityCredential
kwargs = {"client_id": sys.argv[2]} if len(sys.argv) > 2 else {}
try:
    token = ManagedIdentityCredential(**kwargs).get_token(sys.argv[1])
    print(json.dumps({"token": token.token, "expires_on": token.expires_on}))
except Exception as error:
    print(json.dumps({"error": type(error).__name__, "message": str(error)}))
"#;

/// Which endpoint the environment names.
#[derive(Clone, Copy, Debug)]
enum Mode {
    AppService,
    Imds,
}

fn python() -> PathBuf {
    common::python::venv("azure")
}

async fn server() -> MockManagedIdentity {
    MockManagedIdentity::builder()
        .identity_header("7e1c0ffee-identity-header")
        .user_assigned(USER_CLIENT_ID, "object-id", "/subscriptions/s/id")
        .token_ttl(TTL)
        .start()
        .await
        .unwrap()
}

/// What azure-identity printed, run with only the variables `mode` needs (nothing of this
/// process's environment: no proxy, no other identity source).
async fn azure_identity(
    python: &Path,
    server: &MockManagedIdentity,
    mode: Mode,
    client_id: Option<&str>,
) -> Value {
    let mut command = Command::new(python);
    command.env_clear().arg("-c").arg(SCRIPT).arg(SCOPE);
    command.args(client_id);
    match mode {
        Mode::AppService => command
            .env("IDENTITY_ENDPOINT", server.identity_endpoint())
            .env("IDENTITY_HEADER", server.identity_header()),
        Mode::Imds => command.env("AZURE_POD_IDENTITY_AUTHORITY_HOST", server.imds_authority()),
    };
    let output = tokio::task::spawn_blocking(move || {
        command
            .stdin(Stdio::null())
            .output()
            .expect("the venv's python runs")
    })
    .await
    .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap_or_else(|error| {
        panic!(
            "{error}: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

fn provider(
    server: &MockManagedIdentity,
    mode: Mode,
) -> ManagedIdentity<Client<HttpConnector, Full<Bytes>>> {
    let client = Client::builder(TokioExecutor::new()).build_http();
    match mode {
        Mode::AppService => ManagedIdentity::app_service(
            server.identity_endpoint(),
            server.identity_header(),
            SCOPE,
            client,
        ),
        Mode::Imds => ManagedIdentity::imds_at(server.imds_authority(), SCOPE, client),
    }
    .unwrap()
}

async fn ours(
    provider: ManagedIdentity<Client<HttpConnector, Full<Bytes>>>,
) -> Result<Token, ManagedIdentityError> {
    provider
        .oneshot(TokenRequest::new(RefreshReason::Initial, None))
        .await
}

fn requests(server: &MockManagedIdentity) -> u64 {
    let counters = server.counters();
    counters.imds_requests + counters.app_service_requests
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// azure-identity gets the mock's token, with its expiry, in `mode`; the provider asks the
/// same mock with the same query, and gets a token too. Then both for a user-assigned identity.
async fn both_read_the_mock(mode: Mode, endpoint: Endpoint, api_version: &str) {
    let python = python();
    let server = server().await;

    let printed = azure_identity(&python, &server, mode, None).await;
    let issued = server.issued();
    assert_eq!(issued.len(), 1, "{printed}");
    assert_eq!(issued[0].endpoint, endpoint);
    assert_eq!(
        printed["token"],
        issued[0].access_token.as_str(),
        "{printed}"
    );
    let expires_on = printed["expires_on"].as_u64().unwrap();
    let expected = now() + TTL.as_secs();
    assert!(
        expires_on.abs_diff(expected) <= 5,
        "{expires_on} vs {expected}"
    );
    let theirs = server.last_request().unwrap();
    assert_eq!(
        theirs.query,
        [
            ("api-version".to_owned(), api_version.to_owned()),
            ("resource".to_owned(), RESOURCE.to_owned())
        ]
    );
    assert_eq!(theirs.headers["metadata"], "true");

    let token = ours(provider(&server, mode)).await.unwrap();
    assert_eq!(
        token.expose_access_token(),
        server.issued()[1].access_token,
        "the provider reads the mock too"
    );
    let mine = server.last_request().unwrap();
    assert_eq!(mine.endpoint, endpoint);
    assert_eq!(mine.query, theirs.query, "the same query as azure-identity");
    for header in ["metadata", "x-identity-header"] {
        assert_eq!(
            mine.headers.get(header),
            theirs.headers.get(header),
            "{header}"
        );
    }

    // A user-assigned identity by client id.
    let printed = azure_identity(&python, &server, mode, Some(USER_CLIENT_ID)).await;
    assert_eq!(
        printed["token"],
        server.issued()[2].access_token.as_str(),
        "{printed}"
    );
    let theirs = server.last_request().unwrap();
    let provider =
        provider(&server, mode).user_assigned(UserAssignedId::ClientId(USER_CLIENT_ID.into()));
    ours(provider).await.unwrap();
    assert_eq!(server.last_request().unwrap().query, theirs.query);
    assert_eq!(server.issued()[3].client_id, USER_CLIENT_ID);
    assert_eq!(requests(&server), 4);
}

#[tokio::test(flavor = "multi_thread")]
async fn app_service_mode() {
    both_read_the_mock(Mode::AppService, Endpoint::AppService, "2019-08-01").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn imds_mode() {
    both_read_the_mock(Mode::Imds, Endpoint::Imds, "2018-02-01").await;
}

/// The same faults make azure-identity and the provider ask the same number of times: IMDS
/// answering 404 while an identity is provisioned is asked again, App Service's 503 too, and
/// a 400 for an unknown identity is not.
#[tokio::test(flavor = "multi_thread")]
async fn both_retry_alike() {
    let python = python();
    for (mode, status, faults, asked) in [
        (Mode::Imds, StatusCode::NOT_FOUND, 2, 3),
        (Mode::AppService, StatusCode::SERVICE_UNAVAILABLE, 2, 3),
        (Mode::AppService, StatusCode::NOT_FOUND, 1, 1),
        (Mode::Imds, StatusCode::BAD_REQUEST, 1, 1),
    ] {
        let server = server().await;
        server.fail_next(faults, Fault::Status(status));
        let printed = azure_identity(&python, &server, mode, None).await;
        let theirs = requests(&server);
        server.fail_next(faults, Fault::Status(status));
        let result = ours(provider(&server, mode)).await;
        let mine = requests(&server) - theirs;
        assert_eq!(
            (theirs, mine),
            (asked, asked),
            "{mode:?} {status}: {printed} / {result:?}"
        );
        // Each ends as the other does: a token after the retries, an error without them.
        assert_eq!(
            printed.get("token").is_some(),
            result.is_ok(),
            "{mode:?} {status}: {printed} / {result:?}"
        );
    }
}
