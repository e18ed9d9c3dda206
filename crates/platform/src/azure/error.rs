//! What can go wrong getting a token from a managed identity endpoint.

use std::error::Error;
use std::fmt;

use http::StatusCode;
use tower::BoxError;

use tower_bearer::{InvalidToken, RetryAfter};

/// A request that brought back no answer to read, in [`ManagedIdentityError::NoAnswer`]:
/// every provider's, so that code handling several providers matches it once.
pub use tower_bearer_provider::NoAnswer;

/// Why [`ManagedIdentity`](super::ManagedIdentity) could not get a token, or could not be
/// built.
///
/// Neither the identity header (`IDENTITY_HEADER`) nor any token appears in it: not in
/// `Display`, not in `Debug`, not in any error of its [`source`](Error::source) chain. The
/// endpoint's texts (`error`, `error_description`, `message`) are kept, trimmed of control
/// characters, with any echo of the identity header replaced by `[REDACTED]`, and cut at 200
/// characters.
///
/// A [`Refused`](Self::Refused) request is wrapped in a
/// [permanent](tower_bearer::RetryAfter::permanent) hint, so that a
/// [`TokenCache`](tower_bearer::TokenCache) waits its longest backoff before asking again; a
/// `Retry-After` the endpoint sent reaches the cache the same way.
///
/// Unlike an authorization server's answers, an identity endpoint's carry no
/// [`ServerAnswer`](tower_bearer::ServerAnswer): the endpoint belongs to the host the process
/// runs on (IMDS is per virtual machine, the App Service endpoint per instance), so a
/// failure there is that replica's own, like a transport error, and replicas sharing a token
/// store do not wait it out together.
///
/// ```
/// use tower::BoxError;
/// use tower_bearer::TokenError;
/// use tower_bearer_platform::azure::ManagedIdentityError;
///
/// /// Whether the identity (or the resource) does not exist, rather than the endpoint failing.
/// fn not_configured(err: &BoxError) -> bool {
///     let provider = TokenError::find(&**err)
///         .and_then(TokenError::refresher_error)
///         .and_then(|source| source.downcast_ref::<ManagedIdentityError>());
///     matches!(provider, Some(ManagedIdentityError::Refused { .. }))
/// }
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum ManagedIdentityError {
    /// The endpoint given (or `IDENTITY_ENDPOINT`, `AZURE_POD_IDENTITY_AUTHORITY_HOST`) is not
    /// an absolute `http` or `https` URL with a host.
    InvalidEndpoint {
        /// What it was for: `IDENTITY_ENDPOINT`, `AZURE_POD_IDENTITY_AUTHORITY_HOST`, or the
        /// constructor's argument.
        name: &'static str,
    },
    /// The identity header (`IDENTITY_HEADER`) is empty, or cannot be sent as a header value
    /// (it holds a control character or a non-ASCII byte).
    InvalidIdentityHeader,
    /// The App Service endpoint is `http` on a host that is not loopback: the identity header
    /// would travel in clear. The platforms that set `IDENTITY_ENDPOINT` set it to loopback.
    CleartextEndpoint,
    /// The resource is empty.
    InvalidResource,
    /// The environment names a managed identity source this provider does not speak
    /// (`platform`: Service Fabric, Azure Arc, Azure ML, Cloud Shell), or Azure workload
    /// identity, which is `tower_bearer_oauth2::AzureWorkloadIdentity`. Microsoft's libraries
    /// would use it rather than IMDS, so falling back to IMDS could pick another identity.
    Unsupported {
        /// The source the variables name.
        platform: &'static str,
    },
    /// No answer to read: the client failed on every attempt (the connection was refused: no
    /// endpoint there), the body could not be read or was too long, the call took longer than
    /// the provider's [timeout](super::ManagedIdentity::timeout), or the endpoint redirected.
    /// Its [`source`](Error::source) is the [`NoAnswer`]'s; its `Display`, the [`NoAnswer`]'s
    /// with the attempts made when there were several.
    NoAnswer {
        /// What failed, on the last attempt.
        error: NoAnswer,
        /// The attempts made.
        attempts: u32,
    },
    /// The endpoint refused the request with a status not worth retrying: on IMDS a 400 for an
    /// identity that is not assigned to this machine (`invalid_request`, "Identity not found")
    /// or a resource Entra ID does not know (`invalid_resource`); on App Service a wrong
    /// identity header, or an unknown identity. Asking again will not help: the cache backs
    /// off to its longest wait.
    Refused {
        /// The status and what the endpoint said.
        answer: ErrorAnswer,
        /// A permanent hint, this error's [`source`](Error::source).
        hint: RetryAfter,
        /// The endpoint, without query.
        url: String,
    },
    /// The endpoint kept answering with a status worth retrying (IMDS: 404 or 410 while the
    /// identity is provisioned, 429 when throttled, 5xx), until the retries were spent or the
    /// next wait would pass the timeout.
    Unavailable {
        /// The last status, and what the endpoint said with it.
        answer: ErrorAnswer,
        /// The last answer's `Retry-After`, as the cache's hint and this error's
        /// [`source`](Error::source).
        retry_after: Option<RetryAfter>,
        /// The endpoint, without query.
        url: String,
        /// The attempts made.
        attempts: u32,
    },
    /// The endpoint answered with success, but its body is not a token this provider can use.
    /// Nothing is cached.
    Malformed {
        /// What is wrong with it; this error's [`source`](Error::source).
        error: Malformed,
        /// The endpoint, without query.
        url: String,
    },
}

impl ManagedIdentityError {
    /// The same error, saying how many attempts the call made.
    pub(super) fn after_attempts(mut self, made: u32) -> Self {
        if let ManagedIdentityError::NoAnswer { attempts, .. }
        | ManagedIdentityError::Unavailable { attempts, .. } = &mut self
        {
            *attempts = made;
        }
        self
    }
}

impl From<NoAnswer> for ManagedIdentityError {
    fn from(error: NoAnswer) -> Self {
        ManagedIdentityError::NoAnswer { error, attempts: 1 }
    }
}

/// ` after N attempts`, when there were several.
struct Attempts(u32);

impl fmt::Display for Attempts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            0 | 1 => Ok(()),
            n => write!(f, " after {n} attempts"),
        }
    }
}

impl fmt::Display for ManagedIdentityError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ManagedIdentityError::InvalidEndpoint { name } => write!(
                f,
                "the managed identity endpoint ({name}) is not an absolute http or https URL \
                 with a host"
            ),
            ManagedIdentityError::InvalidIdentityHeader => f.write_str(
                "the identity header (IDENTITY_HEADER) is empty or not a valid header value",
            ),
            ManagedIdentityError::CleartextEndpoint => f.write_str(
                "the App Service identity endpoint is http on a host that is not loopback: \
                 the identity header would travel in clear",
            ),
            ManagedIdentityError::InvalidResource => {
                f.write_str("the resource to get a managed identity token for is empty")
            }
            ManagedIdentityError::Unsupported { platform } => write!(
                f,
                "the environment names {platform}, which this managed identity provider does \
                 not speak"
            ),
            ManagedIdentityError::NoAnswer { error, attempts } => {
                write!(f, "{error}{}", Attempts(*attempts))
            }
            ManagedIdentityError::Refused { answer, url, .. } => {
                write!(f, "the managed identity endpoint {url} refused: {answer}")
            }
            ManagedIdentityError::Unavailable {
                answer,
                url,
                attempts,
                ..
            } => write!(
                f,
                "the managed identity endpoint {url} answered {answer}{}",
                Attempts(*attempts)
            ),
            ManagedIdentityError::Malformed { url, .. } => {
                write!(f, "the answer of {url} is not a token")
            }
        }
    }
}

impl Error for ManagedIdentityError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            ManagedIdentityError::NoAnswer { error, .. } => error.source(),
            ManagedIdentityError::Refused { hint, .. } => Some(hint),
            ManagedIdentityError::Unavailable {
                retry_after: Some(hint),
                ..
            } => Some(hint),
            ManagedIdentityError::Malformed { error, .. } => Some(error),
            _ => None,
        }
    }
}

/// What is wrong with an answer that claimed success, in [`ManagedIdentityError::Malformed`].
///
/// It names the member at fault, never its value (which may be a token).
#[derive(Debug)]
#[non_exhaustive]
pub enum Malformed {
    /// The body is not JSON. The source is the parser's syntax error, which quotes no input.
    NotJson(BoxError),
    /// The body is JSON, but not an object.
    NotAnObject,
    /// A member is missing, or `null`. With neither `expires_in` nor `expires_on`, it names
    /// `expires_on`, which both kinds of endpoint send.
    Missing(&'static str),
    /// A member that must be a string is not one.
    NotAString(&'static str),
    /// `token_type` is not `Bearer` (in any case).
    TokenType,
    /// `expires_in` is not a whole number of seconds of at least 1, as a string or a number.
    ExpiresIn,
    /// `expires_on` is not a time in seconds since 1970, as a string or a number, later than
    /// now.
    ExpiresOn,
    /// `access_token` could not be sent in an `Authorization` header.
    AccessToken(InvalidToken),
}

impl fmt::Display for Malformed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Malformed::NotJson(_) => f.write_str("the body is not JSON"),
            Malformed::NotAnObject => f.write_str("the body is not a JSON object"),
            Malformed::Missing(member) => write!(f, "`{member}` is missing"),
            Malformed::NotAString(member) => write!(f, "`{member}` is not a string"),
            Malformed::TokenType => f.write_str("`token_type` is not \"Bearer\""),
            Malformed::ExpiresIn => {
                f.write_str("`expires_in` is not a whole number of seconds of at least 1")
            }
            Malformed::ExpiresOn => {
                f.write_str("`expires_on` is not a time in seconds since 1970 later than now")
            }
            Malformed::AccessToken(_) => f.write_str("`access_token` is not a valid bearer token"),
        }
    }
}

impl From<tower_bearer_provider::Malformed> for Malformed {
    fn from(malformed: tower_bearer_provider::Malformed) -> Self {
        use tower_bearer_provider::Malformed as Read;
        match malformed {
            Read::NotJson(source) => Malformed::NotJson(source),
            Read::NotAnObject => Malformed::NotAnObject,
            Read::Missing(member) => Malformed::Missing(member),
            Read::NotAString(member) => Malformed::NotAString(member),
            Read::ExpiresIn => Malformed::ExpiresIn,
            Read::TokenType => Malformed::TokenType,
            Read::AccessToken(invalid) => Malformed::AccessToken(invalid),
        }
    }
}

impl Error for Malformed {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            Malformed::NotJson(source) => Some(&**source),
            Malformed::AccessToken(invalid) => Some(invalid),
            _ => None,
        }
    }
}

/// An error answer from the identity endpoint: its status, and what its body said. IMDS
/// answers `{"error": …, "error_description": …}` as Entra ID does; the App Service endpoint
/// `{"statusCode": …, "message": …}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorAnswer {
    status: StatusCode,
    error: Option<String>,
    description: Option<String>,
}

impl ErrorAnswer {
    pub(super) fn new(
        status: StatusCode,
        error: Option<String>,
        description: Option<String>,
    ) -> Self {
        ErrorAnswer {
            status,
            error,
            description,
        }
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The error code (IMDS: `invalid_request`, `invalid_resource`), if the body had one.
    pub fn error(&self) -> Option<&str> {
        self.error.as_deref()
    }

    /// What the endpoint said ("Identity not found"): IMDS's `error_description`, the App
    /// Service endpoint's `message`.
    pub fn description(&self) -> Option<&str> {
        self.description.as_deref()
    }
}

impl fmt::Display for ErrorAnswer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.status)?;
        if let Some(error) = &self.error {
            write!(f, ": {error}")?;
        }
        if let Some(description) = &self.description {
            write!(f, ": {description}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{assert_causes, source_as};

    /// What the cache acts on, or a reader needs next, is each error's source: the permanent
    /// hint of a refusal, what is wrong with an answer, the client's own error.
    #[test]
    fn each_cause_comes_next_in_the_chain() {
        let url = || "http://169.254.169.254/metadata/identity/oauth2/token".to_owned();
        let refused = ManagedIdentityError::Refused {
            answer: ErrorAnswer::new(StatusCode::BAD_REQUEST, None, None),
            hint: RetryAfter::permanent("refused"),
            url: url(),
        };
        let hint = source_as::<RetryAfter>(&refused);
        assert!(
            hint.is_some_and(|hint| hint.delay().is_none()),
            "{refused:?}"
        );

        let malformed = ManagedIdentityError::Malformed {
            error: Malformed::TokenType,
            url: url(),
        };
        assert_causes(malformed, |reason| matches!(reason, Malformed::TokenType));
    }
}
