//! How the client proves who it is to the token endpoint (RFC 6749 §2.3, RFC 7523 §2.2).

use std::fmt;
use std::time::Duration;

use http::HeaderValue;
use secrecy::{ExposeSecret, SecretString};
use tower_bearer_provider::{Secrets, basic_credentials};

use crate::assertion::Assertion;
use crate::auth_method::AuthMethod;
use crate::error::{ConfigError, OAuth2Error};
use crate::form::Form;
use crate::grant::ClientAssertion;
use crate::jose::SigningKey;

/// The client's credentials, ready for each request.
pub(super) enum ClientAuth {
    Basic {
        /// `Basic base64(urlencode(id):urlencode(secret))`, built once, marked sensitive.
        header: HeaderValue,
        client_id: String,
        secret: SecretString,
    },
    Post {
        client_id: String,
        secret: SecretString,
    },
    PrivateKeyJwt {
        client_id: String,
        key: SigningKey,
        /// The assertion's `aud`; the token endpoint when `None`.
        audience: Option<String>,
        lifetime: Duration,
    },
    /// `private_key_jwt` with an assertion the platform signs (Azure workload identity's
    /// federated token), read for each request.
    Assertion {
        client_id: String,
        assertion: ClientAssertion,
    },
    /// A public client, or (with no id) a grant that authenticates by itself (a JWT-bearer
    /// assertion).
    None { client_id: Option<String> },
}

/// RFC 7523 §2.2's `client_assertion_type`.
const JWT_BEARER_ASSERTION: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// How long a client assertion is valid: long enough for clock skew and a slow network,
/// short enough that a copy is of little use.
pub(super) const CLIENT_ASSERTION_LIFETIME: Duration = Duration::from_secs(60);

impl ClientAuth {
    pub(super) fn new(
        method: AuthMethod,
        client_id: Option<String>,
        secret: Option<SecretString>,
        key: Option<SigningKey>,
        assertion: Option<ClientAssertion>,
        audience: Option<String>,
    ) -> Result<Self, ConfigError> {
        match (method, key, assertion) {
            (AuthMethod::PrivateKeyJwt, Some(_), Some(_)) => Err(ConfigError::KeyAndAssertion),
            (AuthMethod::PrivateKeyJwt, None, Some(assertion)) => Ok(ClientAuth::Assertion {
                client_id: client_id.ok_or(ConfigError::NoClientId)?,
                assertion,
            }),
            (method, key, _) => ClientAuth::with(method, client_id, secret, key, audience),
        }
    }

    fn with(
        method: AuthMethod,
        client_id: Option<String>,
        secret: Option<SecretString>,
        key: Option<SigningKey>,
        audience: Option<String>,
    ) -> Result<Self, ConfigError> {
        match method {
            AuthMethod::ClientSecretBasic => {
                let client_id = client_id.ok_or(ConfigError::NoClientId)?;
                let secret = secret.ok_or(ConfigError::NoClientSecret(method))?;
                Ok(ClientAuth::Basic {
                    header: basic_header(&client_id, secret.expose_secret()),
                    client_id,
                    secret,
                })
            }
            AuthMethod::ClientSecretPost => Ok(ClientAuth::Post {
                client_id: client_id.ok_or(ConfigError::NoClientId)?,
                secret: secret.ok_or(ConfigError::NoClientSecret(method))?,
            }),
            AuthMethod::PrivateKeyJwt => Ok(ClientAuth::PrivateKeyJwt {
                client_id: client_id.ok_or(ConfigError::NoClientId)?,
                key: key.ok_or(ConfigError::NoPrivateKey)?,
                audience,
                lifetime: CLIENT_ASSERTION_LIFETIME,
            }),
            AuthMethod::None => Ok(ClientAuth::None { client_id }),
        }
    }

    pub(super) fn method(&self) -> AuthMethod {
        match self {
            ClientAuth::Basic { .. } => AuthMethod::ClientSecretBasic,
            ClientAuth::Post { .. } => AuthMethod::ClientSecretPost,
            ClientAuth::PrivateKeyJwt { .. } | ClientAuth::Assertion { .. } => {
                AuthMethod::PrivateKeyJwt
            }
            ClientAuth::None { .. } => AuthMethod::None,
        }
    }

    /// The platform's client assertion, read now, for the requests of one grant.
    pub(super) async fn read_assertion(&self) -> Result<Option<SecretString>, OAuth2Error> {
        match self {
            ClientAuth::Assertion { assertion, .. } => assertion.read().await.map(Some),
            _ => Ok(None),
        }
    }

    /// Adds the client's credentials to one request: its form, and the `Authorization` header
    /// it returns (`client_secret_basic` only). A client assertion is signed afresh, with a
    /// new `jti`, for each request; a platform's is `read`, from
    /// [`read_assertion`](Self::read_assertion).
    pub(super) fn apply<'a>(
        &'a self,
        form: &mut Form,
        secrets: &mut Secrets<'a>,
        token_endpoint: &str,
        read: Option<&'a SecretString>,
    ) -> Result<Option<HeaderValue>, OAuth2Error> {
        match self {
            ClientAuth::Basic {
                header,
                client_id,
                secret,
            } => {
                secrets.push_basic(client_id, secret.expose_secret());
                Ok(Some(header.clone()))
            }
            ClientAuth::Post { client_id, secret } => {
                form.pair("client_id", client_id);
                form.pair("client_secret", secret.expose_secret());
                secrets.push(secret.expose_secret());
                Ok(None)
            }
            ClientAuth::PrivateKeyJwt {
                client_id,
                key,
                audience,
                lifetime,
            } => {
                let assertion = Assertion {
                    issuer: client_id,
                    subject: client_id,
                    audience: audience.as_deref().unwrap_or(token_endpoint),
                    lifetime: *lifetime,
                    extra: None,
                }
                .sign(key)?;
                form.pair("client_id", client_id);
                form.pair("client_assertion_type", JWT_BEARER_ASSERTION);
                form.pair("client_assertion", &assertion);
                secrets.push_owned(assertion);
                Ok(None)
            }
            ClientAuth::Assertion { client_id, .. } => {
                let assertion = read
                    .expect("the platform's assertion is read before the request is built")
                    .expose_secret();
                form.pair("client_id", client_id);
                form.pair("client_assertion_type", JWT_BEARER_ASSERTION);
                form.pair("client_assertion", assertion);
                secrets.push(assertion);
                Ok(None)
            }
            ClientAuth::None { client_id } => {
                if let Some(client_id) = client_id {
                    form.pair("client_id", client_id);
                }
                Ok(None)
            }
        }
    }
}

/// `Authorization: Basic` with the id and the secret as RFC 6749 §2.3.1 encodes them
/// ([`basic_credentials`]), marked sensitive.
fn basic_header(client_id: &str, secret: &str) -> HeaderValue {
    let value = SecretString::from(format!("Basic {}", basic_credentials(client_id, secret)));
    // Base64 and a space: always a valid header value.
    let mut header =
        HeaderValue::try_from(value.expose_secret()).expect("base64 is a valid header value");
    header.set_sensitive(true);
    header
}

impl fmt::Debug for ClientAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut debug = f.debug_struct("ClientAuth");
        debug.field("method", &self.method());
        match self {
            ClientAuth::Basic { .. } => debug.field("secret", &"[REDACTED]"),
            ClientAuth::Post { client_id, .. } => debug
                .field("client_id", client_id)
                .field("secret", &"[REDACTED]"),
            ClientAuth::PrivateKeyJwt {
                client_id,
                key,
                audience,
                ..
            } => debug
                .field("client_id", client_id)
                .field("key", key)
                .field("audience", audience),
            ClientAuth::Assertion {
                client_id,
                assertion,
            } => debug
                .field("client_id", client_id)
                .field("assertion", assertion),
            ClientAuth::None { client_id } => debug.field("client_id", client_id),
        };
        debug.finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each method shows how the client authenticates and with what, never a secret.
    #[test]
    fn debug_output_names_the_method_and_its_credential_but_no_secret() {
        let basic = ClientAuth::new(
            AuthMethod::ClientSecretBasic,
            Some("billing".into()),
            Some(SecretString::from("s3cr3t")),
            None,
            None,
            None,
        )
        .unwrap();
        assert_eq!(
            format!("{basic:?}"),
            r#"ClientAuth { method: ClientSecretBasic, secret: "[REDACTED]", .. }"#
        );
        let federated = ClientAuth::new(
            AuthMethod::PrivateKeyJwt,
            Some("app".into()),
            None,
            None,
            Some(ClientAssertion::from_file("/var/run/secrets/azure/token")),
            None,
        )
        .unwrap();
        assert_eq!(
            format!("{federated:?}"),
            r#"ClientAuth { method: PrivateKeyJwt, client_id: "app", assertion: ClientAssertion { source: the file /var/run/secrets/azure/token }, .. }"#
        );
    }

    #[test]
    fn basic_is_the_form_urlencoded_credentials_in_base64() {
        let header = basic_header("client:basic", "basic+secret");
        assert!(header.is_sensitive());
        assert_eq!(
            header.to_str().unwrap(),
            format!(
                "Basic {}",
                basic_credentials("client:basic", "basic+secret")
            )
        );
    }
}
