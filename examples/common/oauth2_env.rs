//! The environment contract of the examples that get their tokens from an OAuth 2.0
//! authorization server (`examples/oauth2.rs`, `examples/grpc.rs`, and `examples/platform.rs`
//! with `TOKEN_SOURCE=file`): where the tokens come from, and how many calls to make. Each
//! example adds the variables of its own target.
//!
//! | variable | meaning |
//! | --- | --- |
//! | `OAUTH2_ISSUER` or `OAUTH2_TOKEN_URL` | discovery from the issuer, or the token endpoint directly; neither: the embedded mock |
//! | `OAUTH2_CLIENT_ID`, `OAUTH2_CLIENT_SECRET` | the client |
//! | `OAUTH2_AUTH_METHOD` | `client_secret_basic` (default), `client_secret_post`, `private_key_jwt` |
//! | `OAUTH2_PRIVATE_KEY`, `OAUTH2_KEY_ID` | PEM file of the client's private key (EC P-256 or RSA), its `kid` |
//! | `OAUTH2_SCOPE`, `OAUTH2_AUDIENCE`, `OAUTH2_RESOURCE` | optional parameters (`OAUTH2_RESOURCE` may list several, space-separated) |
//! | `OAUTH2_DPOP=1`, or `OAUTH2_DPOP_KEY` | DPoP-bound tokens (RFC 9449): a fresh ES256 key per run, or the key in this PEM file (EC P-256, Ed25519 or RSA) |
//! | `REQUESTS` (default 200), `CONCURRENCY` (default 8), `PACE_MS` (default 0) | how many calls, from how many tasks, with what pause between a task's calls |

use std::time::Duration;

use tower::BoxError;
use tower_bearer_mock::oauth2::MockClient;
use tower_bearer_oauth2::dpop::DpopKey;
use tower_bearer_oauth2::jose::{Algorithm, SigningKey};
use tower_bearer_oauth2::{AuthMethod, OAuth2, OAuth2Builder};

use super::load::Plan;

/// The client the examples register with the embedded mock.
pub(crate) const MOCK_CLIENT_ID: &str = "example-client";
const MOCK_CLIENT_SECRET: &str = "example-secret";

/// Reads `name` through `lookup`; empty counts as unset.
pub(crate) fn var(lookup: &dyn Fn(&str) -> Option<String>, name: &str) -> Option<String> {
    lookup(name).filter(|value| !value.trim().is_empty())
}

fn number(
    lookup: &dyn Fn(&str) -> Option<String>,
    name: &str,
    default: usize,
) -> Result<usize, String> {
    var(lookup, name).map_or(Ok(default), |raw| {
        raw.trim()
            .parse()
            .map_err(|_| format!("{name}: '{raw}' is not a whole number"))
    })
}

/// Where the tokens come from.
#[derive(Clone)]
pub(crate) enum TokenServer {
    Issuer(String),
    TokenUrl(String),
}

impl TokenServer {
    /// The issuer or the token endpoint, for a progress line.
    pub(crate) fn url(&self) -> &str {
        let (TokenServer::Issuer(url) | TokenServer::TokenUrl(url)) = self;
        url
    }
}

/// The `OAUTH2_*` variables.
#[derive(Clone)]
pub(crate) struct TokenSettings {
    /// `None`: the embedded mock.
    pub(crate) server: Option<TokenServer>,
    pub(crate) client_id: Option<String>,
    client_secret: Option<String>,
    pub(crate) auth_method: AuthMethod,
    /// From `OAUTH2_PRIVATE_KEY` (a PEM file) and `OAUTH2_KEY_ID`.
    private_key: Option<SigningKey>,
    scope: Option<String>,
    audience: Option<String>,
    resources: Vec<String>,
    /// From `OAUTH2_DPOP` or `OAUTH2_DPOP_KEY`.
    dpop: Option<DpopKey>,
}

impl TokenSettings {
    /// Reads the variables through `lookup`. With a server, `OAUTH2_CLIENT_ID` is required.
    pub(crate) fn from_lookup(lookup: &dyn Fn(&str) -> Option<String>) -> Result<Self, String> {
        let var = |name: &str| var(lookup, name);
        let server = match (var("OAUTH2_ISSUER"), var("OAUTH2_TOKEN_URL")) {
            (Some(issuer), _) => Some(TokenServer::Issuer(issuer)),
            (None, Some(url)) => Some(TokenServer::TokenUrl(url)),
            (None, None) => None,
        };
        let auth_method = match var("OAUTH2_AUTH_METHOD") {
            Some(name) => name.parse::<AuthMethod>().map_err(|e| e.to_string())?,
            None => AuthMethod::ClientSecretBasic,
        };
        let private_key = match var("OAUTH2_PRIVATE_KEY") {
            Some(path) => {
                let pem = std::fs::read_to_string(&path)
                    .map_err(|error| format!("OAUTH2_PRIVATE_KEY {path}: {error}"))?;
                let key = SigningKey::from_pem(pem)
                    .map_err(|error| format!("OAUTH2_PRIVATE_KEY {path}: {error}"))?;
                Some(match var("OAUTH2_KEY_ID") {
                    Some(kid) => key.with_key_id(kid),
                    None => key,
                })
            }
            None => None,
        };
        let dpop_key = var("OAUTH2_DPOP_KEY");
        let dpop = match var("OAUTH2_DPOP").as_deref().map(str::trim) {
            None | Some("0" | "false") => dpop_key.is_some(),
            Some("1" | "true") => true,
            Some(other) => return Err(format!("OAUTH2_DPOP: '{other}' is not 1 or 0")),
        };
        let dpop = match (dpop, dpop_key) {
            (_, Some(path)) => {
                let pem = std::fs::read_to_string(&path)
                    .map_err(|error| format!("OAUTH2_DPOP_KEY {path}: {error}"))?;
                Some(
                    DpopKey::from_pem(pem)
                        .map_err(|error| format!("OAUTH2_DPOP_KEY {path}: {error}"))?,
                )
            }
            (true, None) => Some(DpopKey::generate(Algorithm::Es256).map_err(|e| e.to_string())?),
            (false, None) => None,
        };
        let settings = TokenSettings {
            server,
            client_id: var("OAUTH2_CLIENT_ID"),
            client_secret: var("OAUTH2_CLIENT_SECRET"),
            auth_method,
            private_key,
            scope: var("OAUTH2_SCOPE"),
            audience: var("OAUTH2_AUDIENCE"),
            resources: var("OAUTH2_RESOURCE")
                .map(|list| list.split_whitespace().map(str::to_owned).collect())
                .unwrap_or_default(),
            dpop,
        };
        if settings.server.is_some() && settings.client_id.is_none() {
            return Err("OAUTH2_CLIENT_ID is required".to_owned());
        }
        Ok(settings)
    }

    /// The provider's builder, with everything the variables say, for tokens from `server`.
    pub(crate) fn builder(&self, server: &TokenServer) -> OAuth2Builder {
        let mut builder = match server {
            TokenServer::Issuer(issuer) => OAuth2::builder().issuer(issuer),
            TokenServer::TokenUrl(url) => OAuth2::builder().token_endpoint(url),
        }
        .auth_method(self.auth_method)
        .timeout(Duration::from_secs(10));
        if let Some(id) = &self.client_id {
            builder = builder.client_id(id);
        }
        if let Some(secret) = &self.client_secret {
            builder = builder.client_secret(secret);
        }
        if let Some(key) = &self.private_key {
            builder = builder.private_key(key.clone());
        }
        if let Some(key) = &self.dpop {
            builder = builder.dpop(key.clone());
        }
        if let Some(scope) = &self.scope {
            builder = builder.scope(scope);
        }
        if let Some(audience) = &self.audience {
            builder = builder.audience(audience);
        }
        for resource in &self.resources {
            builder = builder.resource(resource);
        }
        builder
    }

    /// Whether the tokens are DPoP-bound.
    pub(crate) fn dpop(&self) -> bool {
        self.dpop.is_some()
    }

    /// ", DPoP with <algorithm> key <thumbprint>" when the tokens are DPoP-bound, for a
    /// progress line.
    pub(crate) fn dpop_note(&self) -> String {
        if let Some(key) = &self.dpop {
            return format!(", DPoP with {} key {}", key.algorithm(), key.thumbprint());
        }
        String::new()
    }

    /// The client to register with the embedded mock, authenticating with the method the
    /// settings name (a key is made for `private_key_jwt` unless one was given); the settings
    /// then name that client.
    pub(crate) fn mock_client(&mut self) -> Result<MockClient, BoxError> {
        self.client_id = Some(MOCK_CLIENT_ID.to_owned());
        Ok(match self.auth_method {
            AuthMethod::ClientSecretPost => {
                self.client_secret = Some(MOCK_CLIENT_SECRET.to_owned());
                MockClient::secret_post(MOCK_CLIENT_ID, MOCK_CLIENT_SECRET)
            }
            AuthMethod::PrivateKeyJwt => {
                let key = match self.private_key.take() {
                    Some(key) => key,
                    None => SigningKey::generate(Algorithm::Es256)?.with_key_id("example-key"),
                };
                let client = MockClient::private_key_jwt(MOCK_CLIENT_ID, key.public_jwk());
                self.private_key = Some(key);
                client
            }
            _ => {
                self.client_secret = Some(MOCK_CLIENT_SECRET.to_owned());
                MockClient::secret_basic(MOCK_CLIENT_ID, MOCK_CLIENT_SECRET)
            }
        })
    }
}

/// `REQUESTS`, `CONCURRENCY` and `PACE_MS`.
#[derive(Clone)]
pub(crate) struct Load {
    pub(crate) requests: usize,
    pub(crate) concurrency: usize,
    /// `None`: the example's own default.
    pace: Option<Duration>,
}

impl Load {
    pub(crate) fn from_lookup(lookup: &dyn Fn(&str) -> Option<String>) -> Result<Self, String> {
        Ok(Load {
            requests: number(lookup, "REQUESTS", 200)?,
            concurrency: number(lookup, "CONCURRENCY", 8)?.max(1),
            pace: var(lookup, "PACE_MS")
                .map(|_| number(lookup, "PACE_MS", 0).map(|ms| Duration::from_millis(ms as u64)))
                .transpose()?,
        })
    }

    /// What to send: `PACE_MS` between a task's calls, else `default_pace`.
    pub(crate) fn plan(&self, default_pace: Duration) -> Plan {
        Plan {
            requests: self.requests,
            tasks: self.concurrency,
            pace: self.pace.unwrap_or(default_pace),
        }
    }
}
