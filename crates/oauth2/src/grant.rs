//! What the client trades for its first token: the grants of RFC 6749 §4.4 and §6, RFC 7523
//! §2.1 and RFC 8693.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use secrecy::SecretString;
use serde_json::{Map, Value};
use tower::BoxError;
use tower_bearer::TokenCache;

use crate::error::OAuth2Error;
use crate::jose::SigningKey;
use crate::source::Source;

/// The grant an [`OAuth2`](crate::OAuth2) provider uses for its first token, and again
/// whenever it has no refresh token (or the server refused the one it had).
///
/// Whatever the grant, a token that comes with a refresh token is replaced by the
/// refresh-token grant, with the newest refresh token, and the same `scope`, `audience`,
/// `resource` and extra parameters.
///
/// ```
/// use std::time::Duration;
/// use tower_bearer_oauth2::jose::{Algorithm, SigningKey};
/// use tower_bearer_oauth2::{Grant, JwtBearer, SubjectToken};
///
/// let service_account = SigningKey::generate(Algorithm::Es256)?.with_key_id("k1");
/// let grants = [
///     Grant::client_credentials(),
///     // From an authorization-code flow done elsewhere.
///     Grant::refresh_token("tGzv3JOkF0XG5Qx2TlKWIA"),
///     Grant::jwt_bearer(
///         JwtBearer::new(service_account, "svc@project.iam.example")
///             .claim("scope", "https://www.googleapis.com/auth/cloud-platform"),
///     ),
///     // A Kubernetes projected service-account token, read again for each exchange.
///     Grant::token_exchange(SubjectToken::from_file(
///         "/var/run/secrets/tokens/sa-token",
///     )),
/// ];
/// # Ok::<(), tower_bearer_oauth2::jose::KeyError>(())
/// ```
#[derive(Clone)]
pub struct Grant {
    pub(super) kind: GrantKind,
}

#[derive(Clone)]
pub(super) enum GrantKind {
    ClientCredentials,
    RefreshToken(SecretString),
    JwtBearer(JwtBearer),
    TokenExchange(SubjectToken),
}

impl Grant {
    /// Client credentials (RFC 6749 §4.4): the client's own credentials are the grant. The
    /// default.
    pub fn client_credentials() -> Self {
        Grant {
            kind: GrantKind::ClientCredentials,
        }
    }

    /// A refresh token the client already holds (RFC 6749 §6), from an authorization-code
    /// flow done elsewhere. It is used for the first token; after that, the newest refresh
    /// token the server issued. If the server refuses it (`invalid_grant`), no other grant can
    /// stand in: the error is permanent, and a new refresh token must be had.
    pub fn refresh_token(refresh_token: impl Into<String>) -> Self {
        Grant {
            kind: GrantKind::RefreshToken(SecretString::from(refresh_token.into())),
        }
    }

    /// A JWT signed with a key the client holds, as the grant (RFC 7523 §2.1): a
    /// Google-style service account. Client authentication is optional with it.
    pub fn jwt_bearer(assertion: JwtBearer) -> Self {
        Grant {
            kind: GrantKind::JwtBearer(assertion),
        }
    }

    /// A token from another issuer exchanged for one of this server's (RFC 8693): a
    /// workload identity, a Kubernetes service-account token.
    pub fn token_exchange(subject_token: SubjectToken) -> Self {
        Grant {
            kind: GrantKind::TokenExchange(subject_token),
        }
    }
}

impl Default for Grant {
    fn default() -> Self {
        Grant::client_credentials()
    }
}

impl fmt::Debug for Grant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.kind.fmt(f)
    }
}

impl fmt::Debug for GrantKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GrantKind::ClientCredentials => f.write_str("ClientCredentials"),
            GrantKind::RefreshToken(_) => f.write_str("RefreshToken(\"[REDACTED]\")"),
            GrantKind::JwtBearer(assertion) => f.debug_tuple("JwtBearer").field(assertion).finish(),
            GrantKind::TokenExchange(subject) => {
                f.debug_tuple("TokenExchange").field(subject).finish()
            }
        }
    }
}

/// A JWT-bearer grant's assertion (RFC 7523 §2.1), signed afresh for each token request.
///
/// It carries `iss` (the issuer given here), `sub` (the issuer unless set), `aud` (the token
/// endpoint unless set), a random `jti`, `iat`, `exp` (a minute later unless set) and the
/// claims added with [`claim`](Self::claim).
#[derive(Clone)]
pub struct JwtBearer {
    pub(super) key: SigningKey,
    pub(super) issuer: String,
    pub(super) subject: Option<String>,
    pub(super) audience: Option<String>,
    pub(super) lifetime: Duration,
    pub(super) claims: Map<String, Value>,
}

/// How long an assertion is valid unless [`JwtBearer::lifetime`] says otherwise.
const ASSERTION_LIFETIME: Duration = Duration::from_secs(60);

impl JwtBearer {
    /// An assertion signed with `key`, issued by `issuer` (a service account's email, a
    /// client id).
    pub fn new(key: SigningKey, issuer: impl Into<String>) -> Self {
        JwtBearer {
            key,
            issuer: issuer.into(),
            subject: None,
            audience: None,
            lifetime: ASSERTION_LIFETIME,
            claims: Map::new(),
        }
    }

    /// The `sub` claim, when it is not the issuer (a user the service account acts for).
    pub fn subject(mut self, subject: impl Into<String>) -> Self {
        self.subject = Some(subject.into());
        self
    }

    /// The `aud` claim, when the server wants something else than its token endpoint's URL
    /// (its issuer identifier, say).
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audience = Some(audience.into());
        self
    }

    /// How long each assertion is valid (`exp - iat`, in whole seconds). Default: a minute.
    pub fn lifetime(mut self, lifetime: Duration) -> Self {
        self.lifetime = lifetime;
        self
    }

    /// Another claim (Google's `scope`, say). `iss`, `sub`, `aud`, `jti`, `iat` and `exp`
    /// are the assertion's own: setting them here has no effect.
    pub fn claim(mut self, name: impl Into<String>, value: impl Into<Value>) -> Self {
        self.claims.insert(name.into(), value.into());
        self
    }
}

impl fmt::Debug for JwtBearer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtBearer")
            .field("key", &self.key)
            .field("issuer", &self.issuer)
            .field("subject", &self.subject)
            .field("audience", &self.audience)
            .field("lifetime", &self.lifetime)
            .field("claims", &self.claims.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// Where a token exchange's subject token comes from: read again for each exchange, since
/// such tokens are short-lived and replaced behind the client's back (a Kubernetes
/// projected service-account token is rewritten by the kubelet). Nothing is kept between
/// exchanges, and nothing is keyed on a file's modification time.
#[derive(Clone)]
pub struct SubjectToken {
    source: Source,
    pub(super) token_type: String,
}

/// RFC 8693's token type for a JWT, the default subject token type.
const JWT_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:jwt";
/// RFC 8693's token type for an OAuth 2.0 access token.
const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";

impl SubjectToken {
    fn new(source: Source, token_type: &str) -> Self {
        SubjectToken {
            source,
            token_type: token_type.to_owned(),
        }
    }

    /// The contents of a file, read for each exchange, surrounding whitespace trimmed.
    pub fn from_file(path: impl Into<PathBuf>) -> Self {
        SubjectToken::new(Source::File(path.into()), JWT_TOKEN_TYPE)
    }

    /// The value of an environment variable, read for each exchange, surrounding
    /// whitespace trimmed.
    pub fn from_env(name: impl Into<String>) -> Self {
        SubjectToken::new(Source::Env(name.into()), JWT_TOKEN_TYPE)
    }

    /// What `token` returns, called for each exchange (on the runtime's thread: keep it
    /// quick).
    pub fn from_fn<F>(token: F) -> Self
    where
        F: Fn() -> Result<String, BoxError> + Send + Sync + 'static,
    {
        SubjectToken::new(Source::Function(Arc::new(token)), JWT_TOKEN_TYPE)
    }

    /// The current access token of another cache, for a chained exchange: that cache's own
    /// refreshes (ahead of expiry, after a refusal) keep the subject valid, and each exchange
    /// takes the token it holds then. The token type is
    /// `urn:ietf:params:oauth:token-type:access_token`.
    ///
    /// ```
    /// use tower::service_fn;
    /// use tower_bearer::{Token, TokenCache, TokenRequest};
    /// use tower_bearer_oauth2::{Grant, SubjectToken};
    ///
    /// // The first hop's tokens, from its own provider (here, a function).
    /// let upstream = TokenCache::new(service_fn(|_: TokenRequest| async {
    ///     Token::bearer("upstream-token")
    /// }));
    /// let grant = Grant::token_exchange(SubjectToken::from_cache(upstream));
    /// ```
    pub fn from_cache(cache: TokenCache) -> Self {
        SubjectToken::new(Source::Cache(cache), ACCESS_TOKEN_TYPE)
    }

    /// The `subject_token_type` (RFC 8693 §3). Default:
    /// `urn:ietf:params:oauth:token-type:jwt` (`…:access_token` from a cache).
    pub fn token_type(mut self, token_type: impl Into<String>) -> Self {
        self.token_type = token_type.into();
        self
    }

    /// The subject token, now.
    pub(super) async fn read(&self) -> Result<SecretString, OAuth2Error> {
        self.source.read().await.map_err(OAuth2Error::SubjectToken)
    }
}

impl fmt::Debug for SubjectToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SubjectToken")
            .field("source", &self.source)
            .field("token_type", &self.token_type)
            .finish()
    }
}

/// A client assertion the platform makes (RFC 7521 §4.2, sent as `client_assertion` with
/// `client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer`): Azure
/// workload identity's federated token, or any JWT another party signs for the client and
/// rotates. Read again for every token request, never kept. For an assertion this client
/// signs itself, give [`OAuth2Builder::private_key`](crate::OAuth2Builder::private_key)
/// instead.
#[derive(Clone)]
pub struct ClientAssertion {
    pub(super) source: Source,
}

impl ClientAssertion {
    /// The contents of a file (`AZURE_FEDERATED_TOKEN_FILE`'s), read for each request,
    /// surrounding whitespace trimmed.
    pub fn from_file(path: impl Into<PathBuf>) -> Self {
        ClientAssertion {
            source: Source::File(path.into()),
        }
    }

    /// The value of an environment variable, read for each request.
    pub fn from_env(name: impl Into<String>) -> Self {
        ClientAssertion {
            source: Source::Env(name.into()),
        }
    }

    /// What `assertion` returns, called for each request (on the runtime's thread: keep it
    /// quick).
    pub fn from_fn<F>(assertion: F) -> Self
    where
        F: Fn() -> Result<String, BoxError> + Send + Sync + 'static,
    {
        ClientAssertion {
            source: Source::Function(Arc::new(assertion)),
        }
    }

    /// The assertion, now.
    pub(super) async fn read(&self) -> Result<SecretString, OAuth2Error> {
        self.source
            .read()
            .await
            .map_err(OAuth2Error::ClientAssertion)
    }
}

impl fmt::Debug for ClientAssertion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientAssertion")
            .field("source", &self.source)
            .finish()
    }
}
