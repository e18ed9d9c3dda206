//! A token request that brought back no answer to read: the one failure every provider shares.

use std::error::Error;
use std::fmt;
use std::time::Duration;

use tower::BoxError;

use crate::{MAX_ANSWER_BYTES, Redirected, Seconds};

/// A request for a token that brought back no answer a provider could read: the client
/// failed, the body could not be read or was too long, nothing came in time, or the answer
/// came from another URL.
///
/// Every provider's error has it as one variant (`ApiVideoError::NoAnswer`,
/// `OAuth2Error::NoAnswer`, …). It is the complement of a
/// [`ServerAnswer`](tower_bearer::ServerAnswer): nothing here is the server's say, so a
/// failure of this kind is the replica's own (its network, its client), and replicas sharing a
/// token store never wait it out together.
///
/// Each variant names the URL asked, as [`shown_url`](crate::shown_url) shows it: no user
/// info, no query.
///
/// ```
/// use std::time::Duration;
/// use tower_bearer_provider::NoAnswer;
///
/// let error = NoAnswer::Timeout {
///     after: Duration::from_secs(30),
///     url: "https://auth.example/token".into(),
/// };
/// assert_eq!(error.to_string(), "no answer from https://auth.example/token within 30 s");
/// assert_eq!(error.url(), "https://auth.example/token");
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum NoAnswer {
    /// The HTTP client failed: the request was not sent (the connection was refused, the
    /// name did not resolve, TLS failed), or no response came back.
    Transport {
        /// The client's error; this error's [`source`](Error::source).
        source: BoxError,
        /// The URL asked.
        url: String,
    },
    /// The response's body could not be read to its end.
    Body {
        /// Why; this error's [`source`](Error::source).
        source: BoxError,
        /// The URL asked.
        url: String,
    },
    /// The call, every request and wait in it, took longer than the provider's timeout.
    Timeout {
        /// The timeout.
        after: Duration,
        /// The URL the provider was asking (for an OAuth 2.0 provider that has not yet
        /// discovered its token endpoint, the issuer).
        url: String,
    },
    /// The response's body was longer than a provider reads.
    TooLarge {
        /// The most bytes read: [`MAX_ANSWER_BYTES`].
        limit: usize,
        /// The URL asked.
        url: String,
    },
    /// The server answered with a redirect, or another URL answered (a client that follows
    /// redirects sent the request on): a provider never follows a redirect, and nothing the
    /// answer held is used.
    Redirected(Redirected),
}

impl NoAnswer {
    /// The client's error for a request to `url`.
    pub fn transport(source: impl Into<BoxError>, url: impl Into<String>) -> Self {
        NoAnswer::Transport {
            source: source.into(),
            url: url.into(),
        }
    }

    /// No answer from `url` within `after`.
    pub fn timeout(after: Duration, url: impl Into<String>) -> Self {
        NoAnswer::Timeout {
            after,
            url: url.into(),
        }
    }

    pub(crate) fn too_large(url: String) -> Self {
        NoAnswer::TooLarge {
            limit: MAX_ANSWER_BYTES,
            url,
        }
    }

    /// The URL asked, as the message shows it.
    pub fn url(&self) -> &str {
        match self {
            NoAnswer::Transport { url, .. }
            | NoAnswer::Body { url, .. }
            | NoAnswer::Timeout { url, .. }
            | NoAnswer::TooLarge { url, .. } => url,
            NoAnswer::Redirected(redirected) => redirected.from(),
        }
    }
}

impl fmt::Display for NoAnswer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NoAnswer::Transport { url, .. } => write!(f, "the request to {url} failed"),
            NoAnswer::Body { url, .. } => write!(f, "reading the answer of {url} failed"),
            NoAnswer::Timeout { after, url } => {
                write!(f, "no answer from {url} within {}", Seconds(*after))
            }
            NoAnswer::TooLarge { limit, url } => {
                write!(f, "the answer of {url} was longer than {limit} bytes")
            }
            NoAnswer::Redirected(redirected) => redirected.fmt(f),
        }
    }
}

impl Error for NoAnswer {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            NoAnswer::Transport { source, .. } | NoAnswer::Body { source, .. } => Some(&**source),
            NoAnswer::Timeout { .. } | NoAnswer::TooLarge { .. } | NoAnswer::Redirected(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use http::{Response, StatusCode, Uri};

    use super::*;

    const URL: &str = "https://auth.example/token";

    #[test]
    fn each_says_the_url_once_and_its_cause_comes_next() {
        let cause = || BoxError::from("connection refused");
        let redirect = Response::builder()
            .status(StatusCode::FOUND)
            .header(http::header::LOCATION, "https://elsewhere.example/token")
            .body(())
            .unwrap();
        let redirected = crate::redirect::check(&Uri::from_static(URL), &redirect).unwrap_err();
        for (error, said, has_cause) in [
            (
                NoAnswer::transport(cause(), URL),
                "the request to https://auth.example/token failed",
                true,
            ),
            (
                NoAnswer::Body {
                    source: cause(),
                    url: URL.into(),
                },
                "reading the answer of https://auth.example/token failed",
                true,
            ),
            (
                NoAnswer::timeout(Duration::from_millis(1500), URL),
                "no answer from https://auth.example/token within 1.5 s",
                false,
            ),
            (
                NoAnswer::too_large(URL.into()),
                "the answer of https://auth.example/token was longer than 65536 bytes",
                false,
            ),
            (
                NoAnswer::Redirected(redirected),
                "https://auth.example/token redirected the request to \
                 https://elsewhere.example/token (a provider never follows a redirect)",
                false,
            ),
        ] {
            assert_eq!(error.to_string(), said);
            assert_eq!(error.url(), URL, "{said}");
            match error.source() {
                Some(source) => {
                    assert!(has_cause, "{said}");
                    assert_eq!(source.to_string(), "connection refused");
                }
                None => assert!(!has_cause, "{said}"),
            }
        }
    }
}
