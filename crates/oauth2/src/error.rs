//! What can go wrong getting a token from an OAuth 2.0 authorization server.

use std::error::Error;
use std::fmt;

use http::StatusCode;
use tower::BoxError;

use crate::auth_method::AuthMethod;
use crate::jose::KeyError;
use tower_bearer::{InvalidToken, RetryAfter, ServerAnswer};
use tower_bearer_provider::Malformed;

/// A request that brought back no answer to read, in [`OAuth2Error::NoAnswer`] and
/// [`DiscoveryError::NoAnswer`]: every provider's, so that code handling several providers
/// matches it once.
pub use tower_bearer_provider::NoAnswer;

/// Why [`OAuth2`](crate::OAuth2) could not get a token.
///
/// No secret appears in it (client secret, private key, assertion, subject token, access or
/// refresh token): not in `Display`, not in `Debug`, not in any error of its
/// [`source`](Error::source) chain. Texts the server sent (an error's description and URI)
/// are kept, trimmed of control characters, with any echo of a secret the request sent
/// replaced by `[REDACTED]`, and cut at 200 characters.
///
/// Where waiting helps, the error says how long, as a [`RetryAfter`] in its source chain that
/// the [`TokenCache`](tower_bearer::TokenCache) acts on: a refusal that retrying will not change
/// (`invalid_client`, `invalid_grant`, …) is [permanent](RetryAfter::permanent), and the cache
/// waits its longest backoff rather than asking again every second; a 429 or 503 with
/// `Retry-After` waits that long (at most 10 minutes).
///
/// ```
/// use tower::BoxError;
/// use tower_bearer::TokenError;
/// use tower_bearer_oauth2::{ErrorCode, OAuth2Error};
///
/// fn client_was_refused(err: &BoxError) -> bool {
///     let provider = TokenError::find(&**err)
///         .and_then(TokenError::refresher_error)
///         .and_then(|source| source.downcast_ref::<OAuth2Error>());
///     provider
///         .and_then(OAuth2Error::error_response)
///         .is_some_and(|response| *response.code() == ErrorCode::InvalidClient)
/// }
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum OAuth2Error {
    /// No answer to read from the token endpoint: the client failed, the body could not be
    /// read or was too long, nothing came within the provider's
    /// [timeout](crate::OAuth2Builder::timeout) (discovery, the grant, and a fallback after a
    /// refused refresh token, all together; the URL is the issuer's while the token endpoint
    /// is not yet discovered), or the endpoint redirected. Its `Display` and
    /// [`source`](Error::source) are the [`NoAnswer`]'s.
    NoAnswer(NoAnswer),
    /// The authorization server answered with an error response (RFC 6749 §5.2).
    Refused {
        /// The status, the error code and its description.
        response: ErrorResponse,
        /// What the cache makes of it, and this error's [`source`](Error::source):
        /// [permanent](RetryAfter::permanent) when the code says retrying will not help
        /// ([`ErrorResponse::is_permanent`]), the server's `Retry-After` on a 429 or 503.
        retry_after: Option<RetryAfter>,
        /// The token endpoint, without user info or query.
        url: String,
    },
    /// Any other answer that was not a success: a 5xx page from a proxy, a 404 for a wrong
    /// token endpoint.
    Status {
        /// The status.
        status: StatusCode,
        /// The server's `Retry-After` on a 429 or 503, as the cache's hint and this error's
        /// [`source`](Error::source).
        retry_after: Option<RetryAfter>,
        /// The status again, as the [`TokenCache`](tower_bearer::TokenCache) reads it: the
        /// server answered, so replicas sharing a store wait out this failure together. This
        /// error's [`source`](Error::source) when there is no `retry_after` (which holds it
        /// then).
        answer: ServerAnswer,
        /// The token endpoint, without user info or query.
        url: String,
    },
    /// The server answered with success, but its body is not a token this provider can use.
    /// Nothing is cached.
    Malformed {
        /// What is wrong with it; this error's [`source`](Error::source).
        error: MalformedAnswer,
        /// The token endpoint, without user info or query.
        url: String,
    },
    /// The authorization server's metadata could not be had, or does not describe it.
    Discovery {
        /// What went wrong.
        error: DiscoveryError,
        /// [Permanent](RetryAfter::permanent) for metadata that names another issuer or no
        /// usable token endpoint; this error's [`source`](Error::source) then.
        retry_after: Option<RetryAfter>,
        /// The metadata URL asked last, without user info or query.
        url: String,
    },
    /// The subject token for a token exchange could not be had (its file could not be read,
    /// the closure failed); the source says why.
    SubjectToken(BoxError),
    /// The client assertion could not be had (its file could not be read, its variable is
    /// not set, the closure failed); the source says why.
    ClientAssertion(BoxError),
    /// A JWT (a `private_key_jwt` client assertion or a JWT-bearer grant's assertion) could
    /// not be signed.
    Signing(KeyError),
    /// The DPoP proof for the token endpoint could not be made (the key could not sign).
    DpopProof(crate::dpop::ProofError),
}

impl OAuth2Error {
    /// The server's error response, if it sent one.
    pub fn error_response(&self) -> Option<&ErrorResponse> {
        match self {
            OAuth2Error::Refused { response, .. } => Some(response),
            _ => None,
        }
    }

    /// Whether asking again will meet the same answer: the cache waits its longest backoff
    /// after such an error.
    pub fn is_permanent(&self) -> bool {
        match self {
            OAuth2Error::Refused { retry_after, .. }
            | OAuth2Error::Status { retry_after, .. }
            | OAuth2Error::Discovery { retry_after, .. } => retry_after
                .as_ref()
                .is_some_and(|hint| hint.delay().is_none()),
            _ => false,
        }
    }
}

impl From<NoAnswer> for OAuth2Error {
    fn from(error: NoAnswer) -> Self {
        OAuth2Error::NoAnswer(error)
    }
}

impl fmt::Display for OAuth2Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OAuth2Error::NoAnswer(error) => error.fmt(f),
            OAuth2Error::Refused { response, url, .. } => {
                write!(
                    f,
                    "the token endpoint {url} refused the request: {response}"
                )
            }
            OAuth2Error::Status { status, url, .. } => {
                write!(f, "the token endpoint {url} answered {status}")
            }
            OAuth2Error::Malformed { url, .. } => {
                write!(f, "the answer of the token endpoint {url} is not a token")
            }
            // The request's failure names the URL.
            OAuth2Error::Discovery {
                error: DiscoveryError::NoAnswer(error),
                ..
            } => write!(f, "discovery failed: {error}"),
            OAuth2Error::Discovery { error, url, .. } => {
                write!(f, "discovery at {url} failed: {error}")
            }
            OAuth2Error::SubjectToken(_) => {
                f.write_str("the subject token for the token exchange could not be read")
            }
            OAuth2Error::ClientAssertion(_) => {
                f.write_str("the client assertion could not be read")
            }
            OAuth2Error::Signing(_) => f.write_str("signing the JWT assertion failed"),
            OAuth2Error::DpopProof(_) => {
                f.write_str("the DPoP proof for the token endpoint could not be made")
            }
        }
    }
}

impl Error for OAuth2Error {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        fn hint(retry_after: &Option<RetryAfter>) -> Option<&(dyn Error + 'static)> {
            retry_after
                .as_ref()
                .map(|hint| hint as &(dyn Error + 'static))
        }
        match self {
            OAuth2Error::NoAnswer(error) => error.source(),
            OAuth2Error::SubjectToken(source) | OAuth2Error::ClientAssertion(source) => {
                Some(&**source)
            }
            // The server answered: the hint holds its answer, or the answer is the source.
            OAuth2Error::Refused {
                retry_after,
                response,
                ..
            } => hint(retry_after).or(Some(&response.answer)),
            OAuth2Error::Status {
                retry_after,
                answer,
                ..
            } => hint(retry_after).or(Some(answer)),
            // The discovery error is said in this error's own text: its cause comes next.
            OAuth2Error::Discovery {
                error, retry_after, ..
            } => hint(retry_after).or_else(|| error.source()),
            OAuth2Error::Malformed { error, .. } => Some(error),
            OAuth2Error::Signing(error) => Some(error),
            OAuth2Error::DpopProof(error) => Some(error),
        }
    }
}

/// An error response from the token endpoint (RFC 6749 §5.2): its status, `error` code,
/// `error_description` and `error_uri`.
///
/// The texts are the server's, cleaned: control characters removed, any secret the request
/// sent replaced by `[REDACTED]`, at most 200 characters.
#[derive(Clone, PartialEq, Eq)]
pub struct ErrorResponse {
    /// The status and code, as the cache reads them; the status is read from here.
    answer: ServerAnswer,
    code: ErrorCode,
    // Boxed: every `OAuth2Error` is as large as this and a URL beside it.
    description: Option<Box<str>>,
    uri: Option<Box<str>>,
}

/// How much of a server's text an error keeps.
pub(super) const MAX_TEXT: usize = 200;

impl ErrorResponse {
    pub(super) fn new(
        status: StatusCode,
        code: ErrorCode,
        description: Option<String>,
        uri: Option<String>,
    ) -> Self {
        ErrorResponse {
            answer: ServerAnswer::new(status).with_error(code.as_str()),
            code,
            description: description.map(String::into_boxed_str),
            uri: uri.map(String::into_boxed_str),
        }
    }

    /// The status and code, as the cache reads them.
    pub(crate) fn server_answer(&self) -> &ServerAnswer {
        &self.answer
    }

    /// The HTTP status (400 or 401 usually; 503 for `temporarily_unavailable`).
    pub fn status(&self) -> StatusCode {
        self.answer.status()
    }

    /// The `error` code.
    pub fn code(&self) -> &ErrorCode {
        &self.code
    }

    /// The `error_description`, cleaned.
    pub fn description(&self) -> Option<&str> {
        self.description.as_deref()
    }

    /// The `error_uri`, cleaned.
    pub fn uri(&self) -> Option<&str> {
        self.uri.as_deref()
    }

    /// Whether asking again with the same request will meet the same refusal
    /// ([`ErrorCode::is_permanent`]).
    pub fn is_permanent(&self) -> bool {
        self.code.is_permanent()
    }
}

impl fmt::Debug for ErrorResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ErrorResponse")
            .field("status", &self.status())
            .field("code", &self.code)
            .field("description", &self.description)
            .field("uri", &self.uri)
            .finish()
    }
}

impl fmt::Display for ErrorResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.status().as_u16(), self.code)?;
        if let Some(description) = &self.description {
            write!(f, ": {description}")?;
        }
        if let Some(uri) = &self.uri {
            write!(f, " <{uri}>")?;
        }
        Ok(())
    }
}

/// An error response's `error` code (RFC 6749 §5.2, RFC 8707 §2).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorCode {
    /// `invalid_request`: a parameter is missing, repeated or malformed.
    InvalidRequest,
    /// `invalid_client`: the client is unknown or its authentication failed (a wrong secret,
    /// a wrong key, another authentication method than registered).
    InvalidClient,
    /// `invalid_grant`: the refresh token, assertion or subject token is invalid, expired,
    /// revoked or used already.
    InvalidGrant,
    /// `unauthorized_client`: the client may not use this grant.
    UnauthorizedClient,
    /// `unsupported_grant_type`: the server does not know the grant.
    UnsupportedGrantType,
    /// `invalid_scope`: the scope is unknown, malformed, or more than the client may have.
    InvalidScope,
    /// `invalid_target` (RFC 8707): a `resource` is unknown or not for this client.
    InvalidTarget,
    /// `temporarily_unavailable`: the server is overloaded or down for maintenance.
    TemporarilyUnavailable,
    /// `server_error`: the server failed.
    ServerError,
    /// `use_dpop_nonce` (RFC 9449 §8): the server wants its nonce in the DPoP proof, and sent
    /// it in `DPoP-Nonce`. A provider with a DPoP key asks again at once with it; this code
    /// reaches an error only when the server asks a second time in a row.
    UseDpopNonce,
    /// `invalid_dpop_proof` (RFC 9449 §5): the server refused the DPoP proof (a clock too far
    /// from the server's, an algorithm it does not accept).
    InvalidDpopProof,
    /// Any other code, cleaned and cut at 64 characters.
    Other(String),
}

impl ErrorCode {
    /// The code from the `error` member's text.
    pub(super) fn parse(code: &str) -> Self {
        match code {
            "invalid_request" => ErrorCode::InvalidRequest,
            "invalid_client" => ErrorCode::InvalidClient,
            "invalid_grant" => ErrorCode::InvalidGrant,
            "unauthorized_client" => ErrorCode::UnauthorizedClient,
            "unsupported_grant_type" => ErrorCode::UnsupportedGrantType,
            "invalid_scope" => ErrorCode::InvalidScope,
            "invalid_target" => ErrorCode::InvalidTarget,
            "temporarily_unavailable" => ErrorCode::TemporarilyUnavailable,
            "server_error" => ErrorCode::ServerError,
            "use_dpop_nonce" => ErrorCode::UseDpopNonce,
            "invalid_dpop_proof" => ErrorCode::InvalidDpopProof,
            other => ErrorCode::Other(other.to_owned()),
        }
    }

    /// The code as the server sent it.
    pub fn as_str(&self) -> &str {
        match self {
            ErrorCode::InvalidRequest => "invalid_request",
            ErrorCode::InvalidClient => "invalid_client",
            ErrorCode::InvalidGrant => "invalid_grant",
            ErrorCode::UnauthorizedClient => "unauthorized_client",
            ErrorCode::UnsupportedGrantType => "unsupported_grant_type",
            ErrorCode::InvalidScope => "invalid_scope",
            ErrorCode::InvalidTarget => "invalid_target",
            ErrorCode::TemporarilyUnavailable => "temporarily_unavailable",
            ErrorCode::ServerError => "server_error",
            ErrorCode::UseDpopNonce => "use_dpop_nonce",
            ErrorCode::InvalidDpopProof => "invalid_dpop_proof",
            ErrorCode::Other(code) => code,
        }
    }

    /// Whether the same request will meet the same refusal: the client's credentials, its
    /// grant or its parameters are wrong, and only a change of configuration (or a new
    /// refresh token) fixes that. `temporarily_unavailable`, `server_error` and codes this
    /// crate does not know are not.
    pub fn is_permanent(&self) -> bool {
        matches!(
            self,
            ErrorCode::InvalidRequest
                | ErrorCode::InvalidClient
                | ErrorCode::InvalidGrant
                | ErrorCode::UnauthorizedClient
                | ErrorCode::UnsupportedGrantType
                | ErrorCode::InvalidScope
                | ErrorCode::InvalidTarget
        )
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What is wrong with an answer that claimed success: a token answer in
/// [`OAuth2Error::Malformed`], or the server's metadata in [`DiscoveryError::Malformed`].
///
/// It names the member at fault, never its value (which may be a token).
#[derive(Debug)]
#[non_exhaustive]
pub enum MalformedAnswer {
    /// The body is not JSON (an HTML page from a captive portal or a proxy, a truncated
    /// body). The source is the parser's syntax error, which quotes no input.
    NotJson(BoxError),
    /// The body is JSON, but not an object.
    NotAnObject,
    /// A member is missing, or `null`.
    Missing(&'static str),
    /// A member that must be a string is not one.
    NotAString(&'static str),
    /// `token_type` is `DPoP`, and the provider has no DPoP key: the token is bound to a key
    /// it does not hold (with the `dpop` feature, give it one with `OAuth2Builder::dpop`).
    DpopTokenType,
    /// `token_type` is `Bearer` in the answer to a request with a DPoP proof: the server
    /// ignored the proof, and issued a token that works for whoever holds it. Refused unless
    /// [`OAuth2Builder::allow_bearer_downgrade`](crate::OAuth2Builder::allow_bearer_downgrade).
    BearerDowngrade,
    /// `token_type` is neither `Bearer` nor `DPoP` (in any case).
    TokenType,
    /// `expires_in` is not a whole number of seconds of at least 1, as a number or a string
    /// of digits.
    ExpiresIn,
    /// `access_token` could not be sent in an `Authorization` header (it is empty, or holds a
    /// space, a control character or a non-ASCII byte).
    AccessToken(InvalidToken),
    /// A URI member (the metadata's `token_endpoint`) is not an absolute `http` or `https`
    /// URI with a host and no user info.
    NotAUri(&'static str),
}

impl fmt::Display for MalformedAnswer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MalformedAnswer::NotJson(_) => f.write_str("the body is not JSON"),
            MalformedAnswer::NotAnObject => f.write_str("the body is not a JSON object"),
            MalformedAnswer::Missing(member) => write!(f, "`{member}` is missing"),
            MalformedAnswer::NotAString(member) => write!(f, "`{member}` is not a string"),
            MalformedAnswer::DpopTokenType => f.write_str(
                "`token_type` is \"DPoP\": the token is bound to a key, and the provider has no \
                 DPoP key",
            ),
            MalformedAnswer::BearerDowngrade => f.write_str(
                "`token_type` is \"Bearer\" in the answer to a DPoP request: the server ignored \
                 the proof (allow_bearer_downgrade(true) to take bearer tokens)",
            ),
            MalformedAnswer::TokenType => f.write_str("`token_type` is not \"Bearer\""),
            MalformedAnswer::ExpiresIn => {
                f.write_str("`expires_in` is not a whole number of seconds of at least 1")
            }
            MalformedAnswer::AccessToken(_) => {
                f.write_str("`access_token` is not a valid bearer token")
            }
            MalformedAnswer::NotAUri(member) => {
                write!(
                    f,
                    "`{member}` is not an absolute http or https URI with a host and no user info"
                )
            }
        }
    }
}

impl From<Malformed> for MalformedAnswer {
    fn from(malformed: Malformed) -> Self {
        match malformed {
            Malformed::NotJson(source) => MalformedAnswer::NotJson(source),
            Malformed::NotAnObject => MalformedAnswer::NotAnObject,
            Malformed::Missing(member) => MalformedAnswer::Missing(member),
            Malformed::NotAString(member) => MalformedAnswer::NotAString(member),
            Malformed::ExpiresIn => MalformedAnswer::ExpiresIn,
            Malformed::TokenType => MalformedAnswer::TokenType,
            Malformed::AccessToken(invalid) => MalformedAnswer::AccessToken(invalid),
        }
    }
}

impl Error for MalformedAnswer {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            MalformedAnswer::NotJson(source) => Some(&**source),
            MalformedAnswer::AccessToken(invalid) => Some(invalid),
            _ => None,
        }
    }
}

/// Why the authorization server's metadata (RFC 8414, OpenID Connect Discovery) could not be
/// used, in [`OAuth2Error::Discovery`].
#[derive(Debug)]
#[non_exhaustive]
pub enum DiscoveryError {
    /// Neither `/.well-known/oauth-authorization-server` nor
    /// `/.well-known/openid-configuration` answered with success; the status of the last.
    Status(StatusCode),
    /// A metadata request brought back no answer to read: the client failed, the body could
    /// not be read or was too long, or the answer was a redirect or came from another URL
    /// (a client that follows redirects sent the request on; the metadata says where the
    /// client's credentials go, and only the issuer may say it). Its `Display` and
    /// [`source`](Error::source) are the [`NoAnswer`]'s.
    NoAnswer(NoAnswer),
    /// The metadata is not what RFC 8414 describes.
    Malformed(MalformedAnswer),
    /// The metadata's `issuer` is not the issuer the provider was built for (RFC 8414 §3.3):
    /// the answer may come from another server, and is not used.
    IssuerMismatch {
        /// The issuer given to [`OAuth2Builder::issuer`](crate::OAuth2Builder::issuer).
        expected: String,
        /// The metadata's `issuer`, cleaned and cut at 200 characters.
        found: String,
    },
    /// The metadata's `dpop_signing_alg_values_supported` does not list the algorithm of the
    /// provider's DPoP key: the server would refuse every proof. A configuration error: give
    /// the provider a key of an algorithm the server accepts.
    DpopAlgorithm {
        /// The DPoP key's algorithm.
        algorithm: crate::jose::Algorithm,
        /// The algorithms the server lists, each cleaned and cut at 200 characters.
        supported: Vec<String>,
    },
    /// The metadata names a token endpoint the client's credentials would travel to in clear:
    /// `http` when the issuer is `https` (never taken), or `http` on a host that is not
    /// loopback (taken only with
    /// [`allow_cleartext_endpoints`](crate::OAuth2Builder::allow_cleartext_endpoints)).
    Cleartext {
        /// The token endpoint the metadata names, without user info or query.
        token_endpoint: String,
    },
}

impl fmt::Display for DiscoveryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DiscoveryError::Status(status) => write!(
                f,
                "no metadata at either well-known URI (the last answered {status})"
            ),
            DiscoveryError::NoAnswer(error) => error.fmt(f),
            DiscoveryError::Malformed(malformed) => write!(f, "unusable metadata: {malformed}"),
            DiscoveryError::IssuerMismatch { expected, found } => write!(
                f,
                "the metadata's issuer is {found:?}, not {expected:?} (they must be identical)"
            ),
            DiscoveryError::DpopAlgorithm {
                algorithm,
                supported,
            } => write!(
                f,
                "the server accepts DPoP proofs signed with {}, not with the DPoP key's {}: \
                 give the provider a key of one of those",
                supported.join(", "),
                algorithm.as_str()
            ),
            DiscoveryError::Cleartext { token_endpoint } => write!(
                f,
                "the metadata names {token_endpoint}, a cleartext token endpoint (http is taken \
                 only from an http issuer, on loopback or with allow_cleartext_endpoints())"
            ),
        }
    }
}

impl Error for DiscoveryError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            DiscoveryError::NoAnswer(error) => error.source(),
            // Said in this error's own text: its cause comes next.
            DiscoveryError::Malformed(malformed) => malformed.source(),
            _ => None,
        }
    }
}

/// Why an [`OAuth2Builder`](crate::OAuth2Builder) could not build a provider.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// Neither a token endpoint nor an issuer was given.
    NoEndpoint,
    /// The token endpoint, the issuer or the assertion audience is not an absolute `http` or
    /// `https` URI with a host and no user info (the issuer may have no query or fragment
    /// either).
    InvalidUri(&'static str),
    /// The client authentication method needs a client id.
    NoClientId,
    /// `client_secret_basic` and `client_secret_post` need a client secret.
    NoClientSecret(AuthMethod),
    /// `private_key_jwt` needs a private key.
    NoPrivateKey,
    /// Both a private key and a [`ClientAssertion`](crate::ClientAssertion) were given: the
    /// client authenticates with one of them.
    KeyAndAssertion,
    /// A setting the platform gives in an environment variable is missing: the variable,
    /// which is unset, empty or not Unicode.
    Environment(&'static str),
    /// An Entra ID tenant that cannot be a path segment: not a GUID or domain name (letters,
    /// digits, `-` and `.`).
    InvalidTenant,
    /// The token endpoint or the issuer is `http` on a host that is not loopback: the
    /// client's credentials would travel in clear. Use `https`, or, for a test server,
    /// [`allow_cleartext_endpoints`](crate::OAuth2Builder::allow_cleartext_endpoints).
    Cleartext(&'static str),
    /// An extra parameter names one the provider sets itself (`grant_type`, `client_id`,
    /// `scope`, …): use the builder's own setting.
    ReservedParameter(String),
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::NoEndpoint => {
                f.write_str("neither a token endpoint nor an issuer to discover it from")
            }
            ConfigError::InvalidUri(what) => {
                write!(
                    f,
                    "the {what} is not an absolute http or https URI with a host and no user info"
                )
            }
            ConfigError::Cleartext(what) => write!(
                f,
                "the {what} is http on a host that is not loopback: https is required \
                 (allow_cleartext_endpoints() for a test server)"
            ),
            ConfigError::NoClientId => f.write_str("the client authentication needs a client id"),
            ConfigError::NoClientSecret(method) => write!(f, "{method} needs a client secret"),
            ConfigError::NoPrivateKey => f.write_str("private_key_jwt needs a private key"),
            ConfigError::Environment(name) => {
                write!(f, "the environment variable {name} is not set")
            }
            ConfigError::InvalidTenant => f.write_str(
                "the tenant is not a GUID or domain name (letters, digits, '-' and '.')",
            ),
            ConfigError::KeyAndAssertion => f.write_str(
                "both a private key and a client assertion: private_key_jwt uses one of them",
            ),
            ConfigError::ReservedParameter(name) => write!(
                f,
                "`{name}` is set by the provider itself; use the builder's own setting"
            ),
        }
    }
}

impl Error for ConfigError {}
