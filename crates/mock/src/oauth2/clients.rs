//! The clients a mock server knows, and how it checks who is asking: client authentication
//! as it travels on the wire, and JWT assertions.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use http::HeaderMap;
use http::header::AUTHORIZATION;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Map, Value};

use super::reply::Refusal;
use tower_bearer_oauth2::AuthMethod;
use tower_bearer_oauth2::jose;

/// A client registered with a [`MockAuthServer`](super::MockAuthServer): its id, the one
/// authentication method it must use (another is `invalid_client`, as with a real server's
/// `token_endpoint_auth_method`), and its credential.
#[derive(Clone)]
pub struct MockClient {
    id: String,
    method: AuthMethod,
    secret: Option<SecretString>,
    public_jwk: Option<Value>,
    /// For a federated client: the issuer and subject its assertions must name.
    federation: Option<Federation>,
}

/// A federated identity credential, as Entra ID registers one on an application: tokens an
/// outside issuer signs (a Kubernetes cluster's service-account tokens) for one subject and
/// for [`FEDERATED_AUDIENCE`] authenticate the client.
#[derive(Clone, Debug)]
struct Federation {
    issuer: String,
    subject: String,
}

/// The `aud` Entra ID expects of a federated token, and the one the mock requires.
pub const FEDERATED_AUDIENCE: &str = "api://AzureADTokenExchange";

impl MockClient {
    /// A confidential client authenticating with `client_secret_basic`.
    pub fn secret_basic(id: impl Into<String>, secret: impl Into<String>) -> Self {
        MockClient::with_secret(id.into(), AuthMethod::ClientSecretBasic, secret.into())
    }

    /// A confidential client authenticating with `client_secret_post`.
    pub fn secret_post(id: impl Into<String>, secret: impl Into<String>) -> Self {
        MockClient::with_secret(id.into(), AuthMethod::ClientSecretPost, secret.into())
    }

    /// A client authenticating with `private_key_jwt`, with the public half of its key (a JWK
    /// object, such as [`SigningKey::public_jwk`](tower_bearer_oauth2::jose::SigningKey::public_jwk)'s).
    pub fn private_key_jwt(id: impl Into<String>, public_jwk: Value) -> Self {
        MockClient {
            id: id.into(),
            method: AuthMethod::PrivateKeyJwt,
            secret: None,
            public_jwk: Some(public_jwk),
            federation: None,
        }
    }

    /// A client authenticating with a federated credential, as Azure workload identity does:
    /// a `client_assertion` that `issuer` signed with the key `public_jwk` (a JWK object) for
    /// `subject` (`system:serviceaccount:<namespace>:<name>`), with `aud`
    /// [`FEDERATED_AUDIENCE`], and the client's id in `client_id`. Such an assertion is a
    /// token the platform hands out for an hour or more and the client sends as often as it
    /// likes: its `jti` is not checked for replay, and its lifetime is not limited to
    /// minutes.
    pub fn federated(
        id: impl Into<String>,
        issuer: impl Into<String>,
        subject: impl Into<String>,
        public_jwk: Value,
    ) -> Self {
        MockClient {
            id: id.into(),
            method: AuthMethod::PrivateKeyJwt,
            secret: None,
            public_jwk: Some(public_jwk),
            federation: Some(Federation {
                issuer: issuer.into(),
                subject: subject.into(),
            }),
        }
    }

    /// A public client (`none`): it may only use the refresh-token grant.
    pub fn public(id: impl Into<String>) -> Self {
        MockClient {
            id: id.into(),
            method: AuthMethod::None,
            secret: None,
            public_jwk: None,
            federation: None,
        }
    }

    fn with_secret(id: String, method: AuthMethod, secret: String) -> Self {
        MockClient {
            id,
            method,
            secret: Some(SecretString::from(secret)),
            public_jwk: None,
            federation: None,
        }
    }

    /// The client id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The authentication method it is registered with.
    pub fn auth_method(&self) -> AuthMethod {
        self.method
    }

    pub(super) fn public_jwk(&self) -> Option<&Value> {
        self.public_jwk.as_ref()
    }
}

impl fmt::Debug for MockClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MockClient")
            .field("id", &self.id)
            .field("method", &self.method)
            .field("secret", &self.secret.as_ref().map(|_| "[REDACTED]"))
            .field("federation", &self.federation)
            .finish_non_exhaustive()
    }
}

/// What checking a client needs: the clients the server knows, and what an assertion's `aud`
/// may name (the token endpoint's URL, the issuer).
pub(super) struct Registry<'a> {
    pub(super) clients: &'a HashMap<String, MockClient>,
    pub(super) audiences: [&'a str; 2],
}

/// The client a request authenticated as, and how.
pub(super) struct Authenticated {
    pub(super) client_id: String,
    pub(super) method: AuthMethod,
}

/// Who the request comes from, checked as RFC 6749 §2.3 and RFC 7523 §3 say: at most one
/// method per request, and the one the client is registered with. `None`: no client
/// authentication at all (allowed with a JWT-bearer grant only).
pub(super) fn authenticate(
    registry: &Registry<'_>,
    headers: &HeaderMap,
    form: &[(String, String)],
    seen_jtis: &mut HashSet<String>,
) -> Result<Option<Authenticated>, Refusal> {
    let param = |name: &str| -> Result<Option<&str>, Refusal> {
        let mut values = form.iter().filter(|(key, _)| key == name);
        let first = values.next().map(|(_, value)| value.as_str());
        match values.next() {
            Some(_) => Err(Refusal::invalid_request(format!("{name} is repeated"))),
            None => Ok(first),
        }
    };
    let basic = headers
        .get(AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| {
            let (scheme, credentials) = value.split_once(' ')?;
            scheme
                .eq_ignore_ascii_case("basic")
                .then_some(credentials.trim())
        });
    let client_id = param("client_id")?;
    let secret = param("client_secret")?;
    let assertion = param("client_assertion")?;
    let methods = [basic.is_some(), secret.is_some(), assertion.is_some()];
    if methods.iter().filter(|&&used| used).count() > 1 {
        return Err(Refusal::invalid_request(
            "more than one client authentication method",
        ));
    }

    if let Some(credentials) = basic {
        let (id, secret) = decode_basic(credentials).ok_or_else(|| {
            Refusal::invalid_client("malformed Basic credentials").with_basic_challenge()
        })?;
        let client = registered(registry, &id, AuthMethod::ClientSecretBasic)
            .map_err(Refusal::with_basic_challenge)?;
        if client_id.is_some_and(|form_id| form_id != id) {
            return Err(Refusal::invalid_request(
                "client_id does not match the Basic credentials",
            ));
        }
        check_secret(client, &secret).map_err(Refusal::with_basic_challenge)?;
        return Ok(Some(Authenticated {
            client_id: id,
            method: AuthMethod::ClientSecretBasic,
        }));
    }
    if let Some(secret) = secret {
        let id =
            client_id.ok_or_else(|| Refusal::invalid_client("client_secret without client_id"))?;
        let client = registered(registry, id, AuthMethod::ClientSecretPost)?;
        check_secret(client, secret)?;
        return Ok(Some(Authenticated {
            client_id: id.to_owned(),
            method: AuthMethod::ClientSecretPost,
        }));
    }
    if let Some(assertion) = assertion {
        if param("client_assertion_type")?
            != Some("urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
        {
            return Err(Refusal::invalid_request(
                "unsupported client_assertion_type",
            ));
        }
        let federated = client_id
            .and_then(|id| registry.clients.get(id))
            .and_then(|client| Some((client, client.federation.as_ref()?)));
        if let Some((client, federation)) = federated {
            verify_federated(assertion, client, federation)
                .map_err(|reason| Refusal::invalid_client(format!("client assertion: {reason}")))?;
            return Ok(Some(Authenticated {
                client_id: client.id.clone(),
                method: AuthMethod::PrivateKeyJwt,
            }));
        }
        let issuer = jose::UnverifiedJws::decode(assertion)
            .ok()
            .and_then(|jws| {
                jws.claims()
                    .get("iss")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            })
            .ok_or_else(|| {
                Refusal::invalid_client("the client assertion is not a JWT with an iss")
            })?;
        let client = registered(registry, &issuer, AuthMethod::PrivateKeyJwt)?;
        if client_id.is_some_and(|form_id| form_id != issuer) {
            return Err(Refusal::invalid_client(
                "client_id is not the assertion's iss",
            ));
        }
        let jwk = client
            .public_jwk()
            .ok_or_else(|| Refusal::invalid_client("no key registered"))?;
        let claims = verify_assertion(assertion, jwk, registry, seen_jtis)
            .map_err(|reason| Refusal::invalid_client(format!("client assertion: {reason}")))?;
        if claims.get("sub").and_then(Value::as_str) != Some(issuer.as_str()) {
            return Err(Refusal::invalid_client(
                "client assertion: sub is not the client id",
            ));
        }
        return Ok(Some(Authenticated {
            client_id: issuer,
            method: AuthMethod::PrivateKeyJwt,
        }));
    }
    match client_id {
        Some(id) => {
            registered(registry, id, AuthMethod::None)?;
            Ok(Some(Authenticated {
                client_id: id.to_owned(),
                method: AuthMethod::None,
            }))
        }
        None => Ok(None),
    }
}

/// The client `id`, if it is registered with `method`.
fn registered<'a>(
    registry: &Registry<'a>,
    id: &str,
    method: AuthMethod,
) -> Result<&'a MockClient, Refusal> {
    let client = registry
        .clients
        .get(id)
        .ok_or_else(|| Refusal::invalid_client("unknown client"))?;
    if client.method != method {
        return Err(Refusal::invalid_client(format!(
            "the client is registered for {}, not {method}",
            client.method
        )));
    }
    Ok(client)
}

fn check_secret(client: &MockClient, secret: &str) -> Result<(), Refusal> {
    match &client.secret {
        Some(expected) if expected.expose_secret() == secret => Ok(()),
        _ => Err(Refusal::invalid_client("wrong client secret")),
    }
}

/// `Basic` credentials: base64 of the form-urlencoded id and secret joined by `:`
/// (RFC 6749 §2.3.1), decoded as a server that follows it does.
fn decode_basic(credentials: &str) -> Option<(String, String)> {
    let decoded = STANDARD.decode(credentials).ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    let unescape = |text: &str| -> String {
        form_urlencoded::parse(format!("x={text}").as_bytes())
            .next()
            .map(|(_, value)| value.into_owned())
            .unwrap_or_default()
    };
    Some((unescape(id), unescape(secret)))
}

/// A federated credential's assertion, checked as Entra ID checks one: signed by the
/// issuer's key, `iss`, `sub` and `aud` as registered, not expired, not issued in the future.
fn verify_federated(
    assertion: &str,
    client: &MockClient,
    federation: &Federation,
) -> Result<(), &'static str> {
    let jwk = client.public_jwk().ok_or("no key registered")?;
    let (_, claims) = jose::verify(assertion, jwk).map_err(|_| "the signature does not verify")?;
    let claim = |name: &str| claims.get(name).and_then(Value::as_str);
    if claim("iss") != Some(federation.issuer.as_str()) {
        return Err("iss is not the federated credential's issuer");
    }
    if claim("sub") != Some(federation.subject.as_str()) {
        return Err("sub is not the federated credential's subject");
    }
    let audience = match claims.get("aud") {
        Some(Value::String(aud)) => aud == FEDERATED_AUDIENCE,
        Some(Value::Array(auds)) => auds.iter().any(|aud| aud == FEDERATED_AUDIENCE),
        _ => false,
    };
    if !audience {
        return Err("aud is not api://AzureADTokenExchange");
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    if claims.get("exp").and_then(Value::as_u64).ok_or("no exp")? <= now {
        return Err("expired");
    }
    if claims
        .get("iat")
        .and_then(Value::as_u64)
        .is_some_and(|iat| iat > now + 60)
    {
        return Err("issued in the future");
    }
    Ok(())
}

/// The claims of a JWT assertion (a client assertion or a JWT-bearer grant) if it is signed
/// by `jwk`, for this server (`aud` its token endpoint or its issuer), not expired, not
/// issued in the future, and its `jti` never seen before. The reason otherwise.
pub(super) fn verify_assertion(
    assertion: &str,
    jwk: &Value,
    registry: &Registry<'_>,
    seen_jtis: &mut HashSet<String>,
) -> Result<Map<String, Value>, &'static str> {
    let (_, claims) = jose::verify(assertion, jwk).map_err(|_| "the signature does not verify")?;
    let Value::Object(claims) = claims else {
        return Err("the claims are not an object");
    };
    let audiences: Vec<&str> = match claims.get("aud") {
        Some(Value::String(aud)) => vec![aud],
        Some(Value::Array(auds)) => auds.iter().filter_map(Value::as_str).collect(),
        _ => return Err("no aud"),
    };
    if !audiences.iter().any(|aud| registry.audiences.contains(aud)) {
        return Err("aud is neither the token endpoint nor the issuer");
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let exp = claims.get("exp").and_then(Value::as_u64).ok_or("no exp")?;
    if exp <= now {
        return Err("expired");
    }
    if exp > now + 600 {
        return Err("exp is more than 10 minutes away");
    }
    if claims
        .get("iat")
        .and_then(Value::as_u64)
        .is_some_and(|iat| iat > now + 60)
    {
        return Err("issued in the future");
    }
    let jti = claims.get("jti").and_then(Value::as_str).ok_or("no jti")?;
    if !seen_jtis.insert(jti.to_owned()) {
        return Err("jti replayed");
    }
    Ok(claims)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_credentials_are_form_urldecoded() {
        // What a correct client sends for RFC 6749 §2.3.1, and what a careless one sends.
        let encoded = STANDARD.encode("client%3Abasic:a%2Bb+c%25");
        assert_eq!(
            decode_basic(&encoded),
            Some(("client:basic".to_owned(), "a+b c%".to_owned()))
        );
        let raw = STANDARD.encode("id:a+b c");
        assert_eq!(
            decode_basic(&raw),
            Some(("id".to_owned(), "a b c".to_owned()))
        );
        assert_eq!(decode_basic("not base64!"), None);
    }
}
