//! What can go wrong getting a token from GCP's metadata server.

use std::error::Error;
use std::fmt;
use std::time::Duration;

use http::StatusCode;
use tower::BoxError;

use tower_bearer::{RetryAfter, ServerAnswer};
use tower_bearer_provider::{MAX_ANSWER_BYTES, ReadError, Redirected, Seconds, SendError};

/// Why [`MetadataServer`](super::MetadataServer) could not get a token (or, for
/// [`InvalidHost`](Self::InvalidHost), could not be built).
///
/// No token appears in it: not in `Display`, not in `Debug`, not in any error of its
/// [`source`](Error::source) chain. The request carries no secret (the platform vouches for
/// the caller), so the server's text in [`Status`](Self::Status) is kept as it came, trimmed of
/// control characters, cut at 200 characters, and with anything shaped like a Google access
/// token (`ya29.…`) replaced by `[REDACTED]`.
///
/// The error is the last attempt's: the provider retries what Google's libraries retry
/// (see [the module documentation](super#retries)) before it gives up.
///
/// ```
/// use tower::BoxError;
/// use tower_bearer::TokenError;
/// use tower_bearer_platform::gcp::MetadataError;
///
/// fn no_such_account(err: &BoxError) -> bool {
///     let provider = TokenError::find(&**err)
///         .and_then(TokenError::refresher_error)
///         .and_then(|source| source.downcast_ref::<MetadataError>());
///     matches!(provider, Some(MetadataError::UnknownAccount { .. }))
/// }
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum MetadataError {
    /// The host given (or read from `GCE_METADATA_HOST`) is not `host` or `host:port`.
    InvalidHost {
        /// The host, as given.
        host: String,
    },
    /// The HTTP client failed: the request was not sent (the connection was refused: no
    /// metadata server, or one not yet up), or no response came back.
    Transport {
        /// The client's error.
        source: BoxError,
        /// The URL asked, without its query.
        url: String,
    },
    /// The response's body could not be read to its end.
    Body {
        /// Why.
        source: BoxError,
        /// The URL asked, without its query.
        url: String,
    },
    /// No answer in time: one attempt took longer than the
    /// [attempt timeout](super::MetadataServerBuilder::attempt_timeout), or the whole call
    /// longer than the [timeout](super::MetadataServerBuilder::timeout).
    Timeout {
        /// The timeout that ran out.
        after: Duration,
        /// The URL asked, without its query.
        url: String,
    },
    /// The response's body was longer than the provider reads.
    TooLarge {
        /// The most bytes read, 64 KiB.
        limit: usize,
        /// The URL asked, without its query.
        url: String,
    },
    /// The server answered with a redirect, or another URL answered (a client that follows
    /// redirects sent the request on): a provider never follows a redirect, and nothing the
    /// answer held is used.
    Redirected(Redirected),
    /// 404: the metadata server has no such service account (an email not attached to the
    /// VM, or a GKE pod whose Kubernetes service account is bound to none). Asking again will
    /// meet the same answer: the cache waits its longest backoff.
    UnknownAccount {
        /// The account asked for.
        account: String,
        /// [Permanent](RetryAfter::permanent), with the server's answer; this error's
        /// [`source`](Error::source).
        hint: RetryAfter,
        /// The URL asked, without its query.
        url: String,
    },
    /// Any other answer that was not a success: 429, 500 or 503 from a metadata server under
    /// load (after the retries), a 403 from a GKE metadata server refusing the pod.
    Status {
        /// The status.
        status: StatusCode,
        /// The start of the body, if it was text: GKE's metadata server says there what is
        /// misconfigured.
        message: Option<String>,
        /// The server's `Retry-After` on a 429 or 503, as the cache's hint and this error's
        /// [`source`](Error::source).
        retry_after: Option<RetryAfter>,
        /// The status again, as the [`TokenCache`](tower_bearer::TokenCache) reads it: the
        /// server answered, so replicas sharing a store wait out this failure together. This
        /// error's [`source`](Error::source) when there is no `retry_after` (which holds it
        /// then).
        answer: ServerAnswer,
        /// The URL asked, without its query.
        url: String,
    },
    /// The server answered with success, but its body is not a token this provider can use.
    /// Nothing is cached.
    Malformed {
        /// What is wrong with it; this error's [`source`](Error::source).
        error: Malformed,
        /// The URL asked, without its query.
        url: String,
    },
}

impl MetadataError {
    /// Whether Google's libraries try again after this error, within one call: a transport
    /// failure, an attempt that timed out, a body cut short, or 408, 429, 500, 503 or 504.
    pub fn is_retryable(&self) -> bool {
        match self {
            MetadataError::Transport { .. }
            | MetadataError::Body { .. }
            | MetadataError::Timeout { .. } => true,
            MetadataError::Status { status, .. } => RETRYABLE.contains(status),
            _ => false,
        }
    }

    /// The error for a request to `url` that brought back no answer to read.
    pub(super) fn not_answered(error: SendError, url: String) -> Self {
        match error {
            SendError::Transport(source) => MetadataError::Transport { source, url },
            SendError::Redirected(redirected) => MetadataError::Redirected(redirected),
        }
    }

    /// The error for an answer from `url` whose body could not be read.
    pub(super) fn unread(error: ReadError, url: String) -> Self {
        match error {
            ReadError::TooLarge => MetadataError::TooLarge {
                limit: MAX_ANSWER_BYTES,
                url,
            },
            ReadError::Body(source) => MetadataError::Body { source, url },
        }
    }
}

/// The statuses google-auth retries (`google.auth.transport.DEFAULT_RETRYABLE_STATUS_CODES`).
const RETRYABLE: [StatusCode; 5] = [
    StatusCode::REQUEST_TIMEOUT,
    StatusCode::TOO_MANY_REQUESTS,
    StatusCode::INTERNAL_SERVER_ERROR,
    StatusCode::SERVICE_UNAVAILABLE,
    StatusCode::GATEWAY_TIMEOUT,
];

impl fmt::Display for MetadataError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MetadataError::InvalidHost { host } => write!(
                f,
                "the metadata server's host {host:?} is not `host` or `host:port`"
            ),
            MetadataError::Transport { url, .. } => write!(f, "the request to {url} failed"),
            MetadataError::Body { url, .. } => write!(f, "reading the answer of {url} failed"),
            MetadataError::Timeout { after, url } => {
                write!(f, "no answer from {url} within {}", Seconds(*after))
            }
            MetadataError::TooLarge { limit, url } => {
                write!(f, "the answer of {url} was longer than {limit} bytes")
            }
            MetadataError::Redirected(redirected) => redirected.fmt(f),
            MetadataError::UnknownAccount { account, url, .. } => write!(
                f,
                "the metadata server has no service account {account:?} ({url} answered 404)"
            ),
            MetadataError::Status {
                status,
                message,
                url,
                ..
            } => {
                write!(f, "{url} answered {status}")?;
                match message {
                    Some(message) => write!(f, ": {message}"),
                    None => Ok(()),
                }
            }
            MetadataError::Malformed { error, url } => {
                write!(f, "the answer of {url} is not a token: {error}")
            }
        }
    }
}

impl Error for MetadataError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            MetadataError::Transport { source, .. } | MetadataError::Body { source, .. } => {
                Some(&**source)
            }
            MetadataError::UnknownAccount { hint, .. } => Some(hint),
            MetadataError::Status {
                retry_after: Some(hint),
                ..
            } => Some(hint),
            MetadataError::Status { answer, .. } => Some(answer),
            MetadataError::Malformed { error, .. } => Some(error),
            _ => None,
        }
    }
}

/// What is wrong with a token answer that claimed success, in [`MetadataError::Malformed`]:
/// every provider's reading of a bearer token answer, which names the member at fault, never
/// its value (which may be a token).
pub use tower_bearer_provider::Malformed;
