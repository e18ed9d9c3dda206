//! The GCP metadata server mock against a client nobody here wrote: google-auth, Google's own
//! Python library (pinned in `tests/interop/python/gcp.txt`), pointed at the mock with
//! `GCE_METADATA_HOST` as on a laptop with an emulator. It must get the mock's token with no
//! change to its code, asking for what it asks on a VM; and `MetadataServer` and google-auth
//! reading the same mock must share GCP's cached token, as two processes on one VM do.
//!
//! Runs under `cargo test --all-features` (feature `server-tests`); needs Python 3 with venv
//! and pip (the first run installs the pinned packages under the target directory).

mod common;

use std::path::PathBuf;

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use tower::ServiceExt;
use tower_bearer::{RefreshReason, TokenRequest};
use tower_bearer_mock::gcp::{CLOUD_PLATFORM, MockMetadataServer};
use tower_bearer_platform::gcp::MetadataServer;

const EMAIL: &str = "interop@demo-project.iam.gserviceaccount.com";

/// What the script prints, one JSON object: what google-auth made of the mock.
const SCRIPT: &str = r#"
import json, sys
import google.auth
import google.auth.compute_engine
import google.auth.transport.requests

request = google.auth.transport.requests.Request()
if sys.argv[1] == "default":
    credentials, project = google.auth.default()
else:
    credentials, project = google.auth.compute_engine.Credentials(), None
credentials.refresh(request)
print(json.dumps({
    "kind": type(credentials).__name__,
    "token": credentials.token,
    "email": credentials.service_account_email,
    "valid": credentials.valid,
    "project": project,
    "universe": credentials.universe_domain,
}))
"#;

async fn python() -> PathBuf {
    tokio::task::spawn_blocking(|| common::python::venv("gcp"))
        .await
        .expect("the venv's install does not panic")
}

/// Runs the script with `how` (`credentials` or `default`) against `server`, in an
/// environment with no other credentials to find.
async fn google_auth(python: &PathBuf, server: &MockMetadataServer, how: &str) -> Value {
    let empty = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("interop/gcloud-empty");
    std::fs::create_dir_all(&empty).unwrap();
    let output = tokio::process::Command::new(python)
        .args(["-c", SCRIPT, how])
        .env("GCE_METADATA_HOST", server.host())
        // The address `google.auth.default()` pings to detect the server.
        .env("GCE_METADATA_IP", server.host())
        .env("CLOUDSDK_CONFIG", &empty)
        .env_remove("GCE_METADATA_ROOT")
        .env_remove("GOOGLE_APPLICATION_CREDENTIALS")
        .env_remove("GOOGLE_CLOUD_PROJECT")
        .env_remove("NO_GCE_CHECK")
        .output()
        .await
        .expect("running the venv's python");
    assert!(
        output.status.success(),
        "google-auth failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap_or_else(|err| {
        panic!("{err}: {}", String::from_utf8_lossy(&output.stdout));
    })
}

async fn mock() -> MockMetadataServer {
    MockMetadataServer::builder()
        .account(EMAIL, [CLOUD_PLATFORM])
        .project_id("demo-project")
        .start()
        .await
        .unwrap()
}

/// `compute_engine.Credentials().refresh(...)`: the account's info (`?recursive=true`), then
/// the token with the account's scopes, then the universe domain.
#[tokio::test]
async fn google_auth_gets_the_mocks_token() {
    let python = python().await;
    let server = mock().await;
    let got = google_auth(&python, &server, "credentials").await;
    assert_eq!(got["kind"], "Credentials");
    assert_eq!(got["valid"], true);
    assert_eq!(got["email"], EMAIL);
    assert_eq!(got["universe"], "googleapis.com");
    assert_eq!(
        got["token"].as_str(),
        server.last_token("default").as_deref(),
        "{got}"
    );

    let seen = server.token_requests();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].account, "default");
    assert_eq!(seen[0].scopes, Some(vec![CLOUD_PLATFORM.to_owned()]));
    let counters = server.counters();
    assert_eq!(counters.tokens_issued, 1);
    assert_eq!(counters.missing_flavor, 0);
    assert_eq!(counters.unknown_accounts, 0);
    // The account info, the token and the universe domain.
    assert_eq!(counters.requests, 3, "{counters:?}");
}

/// `google.auth.default()` with nothing else configured: it pings the mock, finds the
/// metadata server's `Metadata-Flavor` in the answer, and takes the project id from it.
#[tokio::test]
async fn google_auth_default_finds_the_mock() {
    let python = python().await;
    let server = mock().await;
    let got = google_auth(&python, &server, "default").await;
    assert_eq!(got["kind"], "Credentials", "{got}");
    assert_eq!(got["project"], "demo-project");
    assert_eq!(
        got["token"].as_str(),
        server.last_token("default").as_deref()
    );
}

/// Two clients on one VM share GCP's cached token: `MetadataServer` first, then google-auth,
/// then `MetadataServer` again, all handed the one token.
#[tokio::test]
async fn metadata_server_and_google_auth_share_the_mocks_token() {
    let python = python().await;
    let server = mock().await;
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let provider = MetadataServer::builder()
        .host(server.host())
        .scopes([CLOUD_PLATFORM])
        .build(client)
        .unwrap();
    let ours = provider
        .clone()
        .oneshot(TokenRequest::new(RefreshReason::Initial, None))
        .await
        .unwrap();
    let theirs = google_auth(&python, &server, "credentials").await;
    let again = provider
        .oneshot(TokenRequest::new(RefreshReason::Initial, None))
        .await
        .unwrap();
    assert_eq!(theirs["token"].as_str(), Some(ours.expose_access_token()));
    assert_eq!(again.expose_access_token(), ours.expose_access_token());
    let counters = server.counters();
    assert_eq!(counters.token_requests, 3);
    assert_eq!(counters.tokens_issued, 1);
    assert_eq!(counters.tokens_reused, 2);
    // Both sent the scopes the same way: one cache entry, one token.
    let scopes = Some(vec![CLOUD_PLATFORM.to_owned()]);
    let seen = server.token_requests();
    assert!(seen.iter().all(|seen| seen.scopes == scopes), "{seen:?}");
}
