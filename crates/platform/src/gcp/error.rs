//! What can go wrong getting a token from GCP's metadata server.

use std::error::Error;
use std::fmt;

use http::StatusCode;

use tower_bearer::{RetryAfter, ServerAnswer};

/// A request that brought back no answer to read, in [`MetadataError::NoAnswer`]: every
/// provider's, so that code handling several providers matches it once.
pub use tower_bearer_provider::NoAnswer;

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
    /// No answer to read: the client failed (the connection was refused: no metadata server,
    /// or one not yet up), the body could not be read or was too long, no answer came within
    /// the [attempt timeout](super::MetadataServerBuilder::attempt_timeout) or the whole call's
    /// [timeout](super::MetadataServerBuilder::timeout), or the server redirected. Its
    /// `Display` and [`source`](Error::source) are the [`NoAnswer`]'s.
    NoAnswer(NoAnswer),
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
            MetadataError::NoAnswer(
                NoAnswer::Transport { .. } | NoAnswer::Body { .. } | NoAnswer::Timeout { .. },
            ) => true,
            MetadataError::Status { status, .. } => RETRYABLE.contains(status),
            _ => false,
        }
    }
}

impl From<NoAnswer> for MetadataError {
    fn from(error: NoAnswer) -> Self {
        MetadataError::NoAnswer(error)
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
            MetadataError::NoAnswer(error) => error.fmt(f),
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
            MetadataError::NoAnswer(error) => error.source(),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::assert_causes;

    /// What a reader needs next is each error's source: what is wrong with an answer, the
    /// client's own error.
    #[test]
    fn each_cause_comes_next_in_the_chain() {
        let malformed = MetadataError::Malformed {
            error: Malformed::TokenType,
            url: "http://metadata.google.internal/computeMetadata/v1/token".to_owned(),
        };
        assert_causes(malformed, |reason| matches!(reason, Malformed::TokenType));
    }
}
