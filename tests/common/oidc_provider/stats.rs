//! What the fixture counted.

use serde_json::Value;

/// What the server saw; every count is 0 for what it never saw.
#[derive(Debug, Clone)]
pub struct Stats(Value);

impl Stats {
    pub(super) fn new(json: Value) -> Self {
        Stats(json)
    }

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
