//! The clients every fixture server registers, one per client authentication method.

use std::path::PathBuf;

/// A client registered with the fixture's authorization server.
///
/// Every confidential client may use the client-credentials, authorization-code and
/// refresh-token grants; the public one the last two.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TestClient {
    pub id: &'static str,
    /// The `token_endpoint_auth_method` it is registered with, in OAuth's words (the values
    /// `OAUTH2_AUTH_METHOD` takes).
    pub auth_method: &'static str,
    /// For `client_secret_basic` and `client_secret_post`.
    pub secret: Option<&'static str>,
    /// For `private_key_jwt`.
    pub key: Option<TestKey>,
}

/// A `private_key_jwt` client's key pair: the private half in `tests/keys/`, the public half
/// registered with the server under `kid`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TestKey {
    /// The JWS algorithm its assertions are signed with.
    pub alg: &'static str,
    pub kid: &'static str,
    file: &'static str,
}

impl TestKey {
    /// The PKCS#8 PEM file of the private key.
    pub fn path(&self) -> PathBuf {
        PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/keys")).join(self.file)
    }

    /// The PKCS#8 PEM of the private key.
    pub fn pem(&self) -> String {
        std::fs::read_to_string(self.path()).expect("a test key")
    }
}

/// `client_secret_basic`. Its id and secret hold characters that RFC 6749 §2.3.1's
/// form-urlencoding changes (`:` `+` `/` `%` `&` `=` and a space): a client that forgets to encode
/// them before base64 is refused.
pub const BASIC: TestClient = TestClient {
    id: "client:basic",
    auth_method: "client_secret_basic",
    secret: Some("basic+secret/with %reserved:chars&="),
    key: None,
};

/// `client_secret_post`, whose secret must be form-urlencoded in the body.
pub const POST: TestClient = TestClient {
    id: "client-post",
    auth_method: "client_secret_post",
    secret: Some("post+secret&with=reserved%chars"),
    key: None,
};

/// `private_key_jwt` with an EC P-256 key (ES256).
pub const JWT_ES256: TestClient = TestClient {
    id: "client-jwt-es256",
    auth_method: "private_key_jwt",
    secret: None,
    key: Some(TestKey {
        alg: "ES256",
        kid: "es256-test",
        file: "es256.pem",
    }),
};

/// `private_key_jwt` with an RSA 2048 key (RS256).
pub const JWT_RS256: TestClient = TestClient {
    id: "client-jwt-rs256",
    auth_method: "private_key_jwt",
    secret: None,
    key: Some(TestKey {
        alg: "RS256",
        kid: "rs256-test",
        file: "rs256.pem",
    }),
};

/// A public client (`none`): refresh tokens only, from the authorization-code flow.
pub const PUBLIC: TestClient = TestClient {
    id: "client-public",
    auth_method: "none",
    secret: None,
    key: None,
};

/// Every client the server registers.
pub const CLIENTS: [TestClient; 5] = [BASIC, POST, JWT_ES256, JWT_RS256, PUBLIC];

impl TestClient {
    /// How the fixture's configuration describes this client.
    pub(super) fn config(&self) -> serde_json::Value {
        let mut config = serde_json::json!({
            "client_id": self.id,
            "token_endpoint_auth_method": self.auth_method,
        });
        if let Some(secret) = self.secret {
            config["client_secret"] = secret.into();
        }
        if let Some(key) = self.key {
            config["private_key"] = key.path().display().to_string().into();
            config["kid"] = key.kid.into();
            config["alg"] = key.alg.into();
        }
        config
    }
}
