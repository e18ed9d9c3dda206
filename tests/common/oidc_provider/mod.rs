//! A real OAuth 2.0 authorization server that nobody on this project wrote, for the interop
//! tests: panva's `oidc-provider` (OpenID Certified, pinned in
//! `tests/interop/oidc-provider/package.json`), started on loopback by the test and stopped when
//! dropped, with a protected API on a second origin.
//!
//! ```ignore
//! let server = OidcProvider::start();
//! // a refresher for server.token_endpoint() with BASIC's id and secret; a layer calling
//! // server.api_url(); server.revoke(token).await mid-run; server.stats().await at the end.
//! ```
//!
//! The first start in a test process installs the fixture's npm packages under the target
//! directory if they are not there yet (see `install`); node and npm must be on `PATH`.
//!
//! What the server does, all of it oidc-provider's own behaviour:
//! - client credentials, authorization code (PKCE) and refresh tokens, rotated on every use;
//!   presenting a used refresh token again revokes the whole grant (`invalid_grant`);
//! - client authentication `client_secret_basic` (form-urlencoded before base64, and decoded
//!   so), `client_secret_post`, `private_key_jwt` (ES256, RS256; `aud` the issuer or the
//!   endpoint), `none`; oidc-provider accepts a secret either way whatever a client registered,
//!   so `Stats::client_auth` says what each client actually sent;
//! - RFC 8707 resource indicators: opaque access tokens for the API's audience (`resource()`,
//!   also the default when a request names none) or the other API's (`other_resource()`),
//!   scopes `api:read api:write`;
//! - RFC 7009 revocation and RFC 7662 introspection;
//! - RFC 9449 DPoP with nonces required at the token endpoint (`400 use_dpop_nonce` with a
//!   `DPoP-Nonce`), `cnf.jkt` binding, and `require_dpop` for clients that must use it;
//! - lifetimes in whole seconds, no clock tolerance (a token dies when its lifetime ends; the
//!   server rounds its issue time down, so a token may die up to a second before `expires_in`).
//!
//! The API (`api_url()`, any method, any path under `/api/`; `other_api_url()` under
//! `/other/`) answers 200 with JSON describing the token only for a live access token for its
//! own audience, looked up in the provider's store, so revocation and expiry are the server's;
//! otherwise 401 with `WWW-Authenticate` (`Bearer` or `DPoP`, RFC 6750 error codes). A
//! DPoP-bound token needs `Authorization: DPoP` and a proof checked as RFC 9449 §4.3 says
//! (signature with the embedded key, `typ`, `htm`, `htu`, `iat` within a minute, `ath`, `jti`
//! never seen before, the token's `jkt`), carrying the API's own nonce: without it, `401
//! WWW-Authenticate: DPoP error="use_dpop_nonce"` and a `DPoP-Nonce`.

mod clients;
mod install;

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};

// Not every test binary names every client.
#[allow(unused_imports)]
pub use clients::{BASIC, CLIENTS, JWT_ES256, JWT_RS256, POST, PUBLIC, TestClient, TestKey};

/// How long the server may take to print its ready line (it takes well under a second).
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// The server's settings.
#[derive(Debug, Clone)]
pub struct OidcProviderBuilder {
    access_token_ttl: Duration,
    refresh_token_ttl: Duration,
    require_dpop: bool,
    api_nonce_ttl: Option<Duration>,
}

impl Default for OidcProviderBuilder {
    fn default() -> Self {
        OidcProviderBuilder {
            access_token_ttl: Duration::from_secs(60),
            refresh_token_ttl: Duration::from_secs(24 * 3600),
            require_dpop: false,
            api_nonce_ttl: None,
        }
    }
}

fn whole_seconds(ttl: Duration) -> u64 {
    assert!(
        ttl >= Duration::from_secs(1) && ttl.subsec_nanos() == 0,
        "the server counts lifetimes in whole seconds"
    );
    ttl.as_secs()
}

impl OidcProviderBuilder {
    /// Lifetime of every access token (client credentials, code, refresh); 60 s by default.
    pub fn access_token_ttl(mut self, ttl: Duration) -> Self {
        self.access_token_ttl = ttl;
        self
    }

    /// Lifetime of refresh tokens (each rotation starts a new one); a day by default.
    pub fn refresh_token_ttl(mut self, ttl: Duration) -> Self {
        self.refresh_token_ttl = ttl;
        self
    }

    /// Every client must use DPoP at the token endpoint (`dpop_bound_access_tokens`): a token
    /// request without a proof is refused with `invalid_grant`. Off by default, when a client
    /// that sends a proof gets a DPoP-bound token and one that does not gets a bearer token.
    pub fn require_dpop(mut self, required: bool) -> Self {
        self.require_dpop = required;
        self
    }

    /// The API replaces its DPoP nonce this often (besides `rotate_api_nonce`); never by
    /// default.
    pub fn api_nonce_ttl(mut self, ttl: Duration) -> Self {
        self.api_nonce_ttl = Some(ttl);
        self
    }

    /// Starts the server (installing the fixture first if needed) and waits until it listens.
    /// Blocks the thread for that time; fine at the start of a test, async or not.
    pub fn start(self) -> OidcProvider {
        let script = install::server_script();
        let config = json!({
            "access_token_ttl": whole_seconds(self.access_token_ttl),
            "refresh_token_ttl": whole_seconds(self.refresh_token_ttl),
            "require_dpop": self.require_dpop,
            "api_nonce_ttl": self.api_nonce_ttl.map_or(0, whole_seconds),
            "clients": CLIENTS.iter().map(TestClient::config).collect::<Vec<_>>(),
        });
        let mut child = Command::new("node")
            .arg(script)
            .env("OIDC_FIXTURE_CONFIG", config.to_string())
            // The server exits when its stdin closes: it never outlives this process.
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|err| {
                panic!(
                    "could not start node ({err}): install it with `apt-get install -y nodejs npm`"
                )
            });

        let stderr = Arc::new(Mutex::new(String::new()));
        let mut err_pipe = child.stderr.take().expect("piped stderr");
        let log = Arc::clone(&stderr);
        std::thread::spawn(move || {
            let mut buffer = [0; 4096];
            while let Ok(n @ 1..) = err_pipe.read(&mut buffer) {
                log.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buffer[..n]));
            }
        });

        let (ready_tx, ready_rx) = mpsc::channel();
        let out_pipe = child.stdout.take().expect("piped stdout");
        std::thread::spawn(move || {
            // Keeps reading after the ready line, so that the server never blocks on stdout.
            for line in BufReader::new(out_pipe).lines().map_while(Result::ok) {
                if let Some(ready) = line.strip_prefix("READY ") {
                    let _ = ready_tx.send(ready.to_owned());
                }
            }
        });

        let ready = match ready_rx.recv_timeout(READY_TIMEOUT) {
            Ok(ready) => ready,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "the oidc-provider fixture did not start; its stderr:\n{}",
                    stderr.lock().unwrap()
                );
            }
        };
        let ready: Value = serde_json::from_str(&ready).expect("the ready line's JSON");
        let text = |key: &str| ready[key].as_str().expect("a URL").to_owned();
        OidcProvider {
            issuer: text("issuer"),
            api_origin: text("api_origin"),
            resource: ready["resources"]["api"]
                .as_str()
                .expect("a URL")
                .to_owned(),
            other_resource: ready["resources"]["other"]
                .as_str()
                .expect("a URL")
                .to_owned(),
            settings: self,
            child,
            stderr,
        }
    }
}

/// A running fixture server; dropping it stops the server.
#[derive(Debug)]
pub struct OidcProvider {
    issuer: String,
    api_origin: String,
    resource: String,
    other_resource: String,
    settings: OidcProviderBuilder,
    child: Child,
    stderr: Arc<Mutex<String>>,
}

impl Drop for OidcProvider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl OidcProvider {
    /// A server with the default settings.
    pub fn start() -> Self {
        Self::builder().start()
    }

    pub fn builder() -> OidcProviderBuilder {
        OidcProviderBuilder::default()
    }

    pub fn settings(&self) -> &OidcProviderBuilder {
        &self.settings
    }

    /// `http://127.0.0.1:PORT`, with its metadata at `/.well-known/openid-configuration`
    /// (oidc-provider serves no RFC 8414 `/.well-known/oauth-authorization-server`).
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    pub fn token_endpoint(&self) -> String {
        format!("{}/token", self.issuer)
    }

    /// RFC 7009.
    pub fn revocation_endpoint(&self) -> String {
        format!("{}/token/revocation", self.issuer)
    }

    /// RFC 7662.
    pub fn introspection_endpoint(&self) -> String {
        format!("{}/token/introspection", self.issuer)
    }

    /// The API's origin: `http://127.0.0.1:PORT`, another port than the issuer's.
    pub fn api_origin(&self) -> &str {
        &self.api_origin
    }

    /// The protected URL the tests call (`API_URL`).
    pub fn api_url(&self) -> String {
        format!("{}/api/whoami", self.api_origin)
    }

    /// The API's resource indicator (RFC 8707), the default audience of tokens.
    pub fn resource(&self) -> &str {
        &self.resource
    }

    /// A second API on the same origin, with an audience of its own: its tokens are refused by
    /// `api_url()` and the other way round.
    pub fn other_api_url(&self) -> String {
        format!("{}/other/whoami", self.api_origin)
    }

    pub fn other_resource(&self) -> &str {
        &self.other_resource
    }

    /// What oidc-provider wrote on stderr so far (warnings, server errors), for failure
    /// messages.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// The environment the OAuth 2.0 example reads (issue 12's contract) to run against this
    /// server as `client`, with discovery from the issuer.
    pub fn example_env(&self, client: &TestClient) -> Vec<(&'static str, String)> {
        let mut env = vec![
            ("OAUTH2_ISSUER", self.issuer.clone()),
            ("OAUTH2_CLIENT_ID", client.id.to_owned()),
            ("OAUTH2_AUTH_METHOD", client.auth_method.to_owned()),
            ("API_URL", self.api_url()),
        ];
        if let Some(secret) = client.secret {
            env.push(("OAUTH2_CLIENT_SECRET", secret.to_owned()));
        }
        if let Some(key) = client.key {
            env.push(("OAUTH2_PRIVATE_KEY", key.path().display().to_string()));
            env.push(("OAUTH2_KEY_ID", key.kid.to_owned()));
        }
        env
    }

    // ===== what the fixture does on request =====

    /// A real refresh token for `client`: the test user's authorization-code flow (PKCE,
    /// `offline_access`, scopes `api:read api:write`, the API as resource) ending in the code
    /// exchange, as a user's app would have done before handing the refresh token over.
    pub async fn refresh_token(&self, client: &TestClient) -> IssuedTokens {
        self.refresh_token_with(client, CodeFlow::default()).await
    }

    pub async fn refresh_token_with(
        &self,
        client: &TestClient,
        flow: CodeFlow<'_>,
    ) -> IssuedTokens {
        let mut request = json!({ "client_id": client.id });
        if let Some(scope) = flow.scope {
            request["scope"] = scope.into();
        }
        if let Some(resource) = flow.resource {
            request["resource"] = resource.into();
        }
        if let Some(pem) = flow.dpop_key_pem {
            request["dpop_key_pem"] = pem.into();
        }
        let answer = self
            .fixture(Method::POST, "refresh-token", Some(request))
            .await;
        let text = |key: &str| answer[key].as_str().map(str::to_owned);
        IssuedTokens {
            access_token: text("access_token").expect("an access token"),
            refresh_token: text("refresh_token").expect("a refresh token"),
            token_type: text("token_type").expect("a token type"),
            expires_in: answer["expires_in"].as_u64().expect("expires_in"),
            scope: text("scope"),
        }
    }

    /// Revokes `token` (access or refresh) through the RFC 7009 endpoint, authenticated as the
    /// client it was issued to; whether it was live (a token already dead has nothing to
    /// revoke). Revoking a refresh token revokes its whole grant.
    pub async fn revoke(&self, token: &str) -> bool {
        let answer = self
            .fixture(Method::POST, "revoke", Some(json!({ "token": token })))
            .await;
        assert_eq!(
            answer["status"], 200,
            "the revocation endpoint refused: {answer}"
        );
        answer["live"] == true
    }

    /// A `private_key_jwt` client assertion for `client`, signed by node (`jose`) with the
    /// client's key, `aud` the issuer: a reference to check the crate's own against.
    pub async fn client_assertion(&self, client: &TestClient) -> String {
        let answer = self
            .fixture(
                Method::POST,
                "client-assertion",
                Some(json!({ "client_id": client.id })),
            )
            .await;
        answer["client_assertion"]
            .as_str()
            .expect("an assertion")
            .to_owned()
    }

    /// Replaces the API's DPoP nonce now; returns the new one.
    pub async fn rotate_api_nonce(&self) -> String {
        let answer = self.fixture(Method::POST, "rotate-api-nonce", None).await;
        answer["nonce"].as_str().expect("a nonce").to_owned()
    }

    /// What the token endpoint and the API saw since the start (requests the fixture made
    /// itself excepted).
    pub async fn stats(&self) -> Stats {
        Stats(self.fixture(Method::GET, "stats", None).await)
    }

    async fn fixture(&self, method: Method, route: &str, body: Option<Value>) -> Value {
        let request = Request::builder()
            .method(method)
            .uri(format!("{}/__fixture/{route}", self.issuer))
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(
                body.map(|body| body.to_string()).unwrap_or_default(),
            )))
            .unwrap();
        let response = send(request).await;
        let answer: Value = serde_json::from_slice(response.body()).unwrap_or(Value::Null);
        assert_eq!(
            response.status(),
            StatusCode::OK,
            "the fixture's {route} failed: {answer}\n{}",
            self.stderr()
        );
        answer
    }
}

/// Sends `request` on a client of its own (so that no connection pool outlives a test's
/// runtime), and reads the whole answer.
pub async fn send(request: Request<Full<Bytes>>) -> Response<Bytes> {
    let client = Client::builder(TokioExecutor::new()).build_http();
    let response = client.request(request).await.expect("the fixture answers");
    let (parts, body) = response.into_parts();
    let body = body.collect().await.expect("a body").to_bytes();
    Response::from_parts(parts, body)
}

/// What to ask for in `refresh_token_with`'s authorization-code flow.
#[derive(Debug, Clone, Copy, Default)]
pub struct CodeFlow<'a> {
    /// Default `offline_access api:read api:write`; without `offline_access`, no refresh token.
    pub scope: Option<&'a str>,
    /// The resource indicator; default the API's.
    pub resource: Option<&'a str>,
    /// A DPoP private key (PKCS#8 PEM, P-256) for the code exchange: for a public client this
    /// binds the refresh token to that key, so the test must refresh with it. (A confidential
    /// client's refresh token is never bound; with `require_dpop` the fixture uses a
    /// throwaway key when none is given.)
    pub dpop_key_pem: Option<&'a str>,
}

/// A token endpoint's answer.
#[derive(Debug, Clone)]
pub struct IssuedTokens {
    pub access_token: String,
    pub refresh_token: String,
    /// `Bearer` or `DPoP`.
    pub token_type: String,
    pub expires_in: u64,
    pub scope: Option<String>,
}

/// What the server saw; every count is 0 for what it never saw.
#[derive(Debug, Clone)]
pub struct Stats(Value);

impl Stats {
    fn count(value: &Value) -> u64 {
        value.as_u64().unwrap_or(0)
    }

    /// Token requests of `grant_type` (`client_credentials`, `refresh_token`, ...) answered with
    /// a token.
    pub fn grants(&self, grant_type: &str) -> u64 {
        Self::count(&self.0["token_endpoint"][grant_type]["ok"])
    }

    /// Token requests of `grant_type` refused with `error` (`invalid_grant`,
    /// `use_dpop_nonce`, `invalid_client`, ...).
    pub fn token_errors(&self, grant_type: &str, error: &str) -> u64 {
        Self::count(&self.0["token_endpoint"][grant_type][error])
    }

    /// Token requests from `client_id` that authenticated with `method` as seen on the wire
    /// (`client_secret_basic`: an `Authorization: Basic` header; `client_secret_post`: a
    /// `client_secret` in the body; `private_key_jwt`: a `client_assertion`; `none`).
    pub fn client_auth(&self, client_id: &str, method: &str) -> u64 {
        Self::count(&self.0["client_auth"][client_id][method])
    }

    /// Token requests that carried a DPoP proof.
    pub fn dpop_token_requests(&self) -> u64 {
        Self::count(&self.0["dpop_token_requests"])
    }

    /// Grants (token families) revoked: by a refresh token used twice, or by revoking a
    /// refresh token.
    pub fn grants_revoked(&self) -> u64 {
        Self::count(&self.0["grants_revoked"])
    }

    /// Requests to the issuer's origin that carried an access token (`Bearer` or `DPoP`
    /// authorization): the token endpoint's origin must never receive one.
    pub fn access_tokens_sent_to_issuer(&self) -> u64 {
        Self::count(&self.0["access_tokens_sent_to_issuer"])
    }

    /// API requests accepted with `scheme` (`Bearer` or `DPoP`).
    pub fn api_ok(&self, scheme: &str) -> u64 {
        Self::count(&self.0["api"]["ok"][scheme])
    }

    /// API requests refused with `error` (`invalid_token`, `invalid_dpop_proof`,
    /// `use_dpop_nonce`, `invalid_request`; `no_token` when none was sent).
    pub fn api_refused(&self, error: &str) -> u64 {
        Self::count(&self.0["api"]["refused"][error])
    }

    /// Everything, as the fixture reports it.
    pub fn json(&self) -> &Value {
        &self.0
    }
}
