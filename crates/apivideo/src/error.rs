//! What can go wrong getting a token from api.video.

use std::error::Error;
use std::fmt;

use http::StatusCode;

use tower_bearer::{RetryAfter, ServerAnswer};
use tower_bearer_provider::Secrets;

/// Why [`ApiVideo`](super::ApiVideo) could not get a token (or, for
/// [`InvalidBaseUri`](Self::InvalidBaseUri), could not be built).
///
/// Neither the API key nor any token appears in it: not in `Display`, not in `Debug`, not in
/// any error of its [`source`](Error::source) chain. Texts the server sent (a problem's
/// `title` and `type`) are kept, trimmed of control characters, with any echo of the
/// credential the request sent replaced by `[REDACTED]`, and cut at 200 characters.
///
/// In a [`BearerAuth`](tower_bearer::BearerAuth) stack this error is the source of a
/// [`TokenError`](tower_bearer::TokenError):
///
/// ```
/// use tower::BoxError;
/// use tower_bearer::TokenError;
/// use tower_bearer_apivideo::ApiVideoError;
///
/// fn api_key_was_refused(err: &BoxError) -> bool {
///     let provider = TokenError::find(&**err)
///         .and_then(TokenError::refresher_error)
///         .and_then(|source| source.downcast_ref::<ApiVideoError>());
///     matches!(provider, Some(ApiVideoError::Rejected { .. }))
/// }
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum ApiVideoError {
    /// The base URI given to [`ApiVideo::with_base_uri`](super::ApiVideo::with_base_uri) is
    /// not an absolute `http` or `https` URI with a host and no query.
    InvalidBaseUri,
    /// The base URI given to [`ApiVideo::with_base_uri`](super::ApiVideo::with_base_uri) is
    /// `http` on a host that is not loopback: the API key would travel in clear. Use `https`,
    /// or, for a test server,
    /// [`ApiVideo::with_cleartext_base_uri`](super::ApiVideo::with_cleartext_base_uri).
    CleartextBaseUri,
    /// No answer to read: the client failed, the body could not be read or was too long,
    /// nothing came within the provider's [timeout](super::ApiVideo::timeout) (both requests,
    /// when a rejected refresh token falls back to the API key), or the server redirected.
    /// Its `Display` and [`source`](Error::source) are the [`NoAnswer`]'s.
    NoAnswer(NoAnswer),
    /// api.video refused the API key (400 or 401 from `/auth/api-key`): a wrong key, a key
    /// for the other environment, or a revoked one. This is not fixed by trying again: the
    /// cache waits its longest backoff before the next login, not its shortest.
    ///
    /// A refused *refresh token* never shows here: the provider logs in with the key instead.
    Rejected {
        /// [Permanent](RetryAfter::permanent), with the server's answer: how the
        /// [`TokenCache`](tower_bearer::TokenCache) knows to wait its longest backoff (and
        /// replicas sharing a store, to wait it together). This error's
        /// [`source`](Error::source).
        retry_after: RetryAfter,
        /// The status and the problem document.
        problem: Problem,
        /// The URL asked, without user info or query.
        url: String,
    },
    /// api.video answered 429 Too Many Requests.
    RateLimited {
        /// The wait the server asked for (`X-RateLimit-Retry-After`, else `Retry-After`), as
        /// the hint the [`TokenCache`](tower_bearer::TokenCache) waits out instead of its own
        /// backoff; `None` if it named none. It is this error's
        /// [`source`](Error::source).
        retry_after: Option<RetryAfter>,
        /// The status and the problem document.
        problem: Problem,
        /// The URL asked, without user info or query.
        url: String,
    },
    /// Any other answer that was not a success: a 5xx, a 403 for a suspended account, a 404
    /// from a proxy in the way.
    Status {
        /// The status and the problem document.
        problem: Problem,
        /// The URL asked, without user info or query.
        url: String,
    },
    /// The server answered with success, but its body is not a token this provider can use.
    /// Nothing is cached.
    Malformed {
        /// What is wrong with it; this error's [`source`](Error::source).
        error: Malformed,
        /// The URL asked, without user info or query.
        url: String,
    },
}

impl From<NoAnswer> for ApiVideoError {
    fn from(error: NoAnswer) -> Self {
        ApiVideoError::NoAnswer(error)
    }
}

impl fmt::Display for ApiVideoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ApiVideoError::InvalidBaseUri => f.write_str(
                "the api.video base URI must be an absolute http or https URI with a host \
                 and no query",
            ),
            ApiVideoError::CleartextBaseUri => f.write_str(
                "the api.video base URI is http on a host that is not loopback: https is \
                 required (ApiVideo::with_cleartext_base_uri for a test server)",
            ),
            ApiVideoError::NoAnswer(error) => error.fmt(f),
            ApiVideoError::Rejected { problem, url, .. } => {
                write!(f, "{url} refused the API key: {problem}")
            }
            ApiVideoError::RateLimited { problem, url, .. } => {
                write!(f, "{url} is rate limiting the requests: {problem}")
            }
            ApiVideoError::Status { problem, url } => write!(f, "{url} answered {problem}"),
            ApiVideoError::Malformed { url, .. } => {
                write!(f, "the answer of {url} is not a token")
            }
        }
    }
}

impl Error for ApiVideoError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            ApiVideoError::NoAnswer(error) => error.source(),
            ApiVideoError::RateLimited {
                retry_after: Some(hint),
                ..
            }
            | ApiVideoError::Rejected {
                retry_after: hint, ..
            } => Some(hint),
            // The server answered (the hint above holds its answer too): replicas sharing a
            // store wait out this failure together.
            ApiVideoError::RateLimited { problem, .. } | ApiVideoError::Status { problem, .. } => {
                Some(&problem.answer)
            }
            ApiVideoError::Malformed { error, .. } => Some(error),
            _ => None,
        }
    }
}

/// A request that brought back no answer to read, in [`ApiVideoError::NoAnswer`]: every
/// provider's, so that code handling several providers matches it once.
pub use tower_bearer_provider::NoAnswer;

/// What is wrong with a token response that claimed success, in
/// [`ApiVideoError::Malformed`]: every provider's reading of a bearer token answer, which
/// names the field at fault, never its value (which may be a token).
pub use tower_bearer_provider::Malformed;

/// An error answer from api.video: its status, and the `type` and `title` of its
/// `application/problem+json` body when it had one.
///
/// Other fields of the problem (`detail`, `problems`) are left out: they may quote what the
/// request sent.
#[derive(Clone, PartialEq, Eq)]
pub struct Problem {
    /// The status, as the cache reads it; the status is read from here.
    answer: ServerAnswer,
    type_uri: Option<String>,
    title: Option<String>,
}

/// How much of a server's text an error keeps.
const MAX_TEXT: usize = 200;

impl Problem {
    /// A problem with the server's texts cleaned, and `secrets` (what the request sent)
    /// redacted from them.
    pub(super) fn new(
        status: StatusCode,
        type_uri: Option<&str>,
        title: Option<&str>,
        secrets: &Secrets<'_>,
    ) -> Self {
        let clean = |text: &str| tower_bearer_provider::server_text(text, secrets, MAX_TEXT);
        Problem {
            answer: ServerAnswer::new(status),
            type_uri: type_uri.map(clean),
            title: title.map(clean),
        }
    }

    /// The status, as the cache reads it.
    pub(super) fn server_answer(&self) -> &ServerAnswer {
        &self.answer
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.answer.status()
    }

    /// The problem's `type`, a URI naming the kind of error
    /// (`https://docs.api.video/reference/authentication-invalid-user-credentials`).
    pub fn type_uri(&self) -> Option<&str> {
        self.type_uri.as_deref()
    }

    /// The problem's `title` ("The user credentials were incorrect.").
    pub fn title(&self) -> Option<&str> {
        self.title.as_deref()
    }
}

impl fmt::Debug for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Problem")
            .field("status", &self.status())
            .field("type_uri", &self.type_uri)
            .field("title", &self.title)
            .finish()
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.status())?;
        if let Some(title) = &self.title {
            write!(f, ": {title}")?;
        }
        if let Some(type_uri) = &self.type_uri {
            write!(f, " <{type_uri}>")?;
        }
        Ok(())
    }
}
