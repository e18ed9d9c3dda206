//! A failed refresh as a [`TokenStore`](super::TokenStore) shares it: what the authorization
//! server answered, and until when the replicas wait.

use std::error::Error;
use std::fmt;
use std::time::Duration;

use tokio::time::Instant;

use crate::error::Chain;
use crate::{RetryAfter, ServerAnswer};

/// The longest description a shared failure keeps, in bytes: a log line's worth.
const DESCRIPTION_BYTES: usize = 200;

/// A refresh that failed with an answer from the authorization server, published by the
/// replica that held the lease so that the others wait out its backoff instead of calling the
/// server too (see [`TokenStore::publish_failure`](super::TokenStore::publish_failure)).
///
/// It holds nothing secret: what the server answered, a one-line description (the text the
/// failing replica's error had, which by this crate's rules names no secret), and times.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SharedFailure {
    /// The status the server answered with.
    pub status: http::StatusCode,
    /// The OAuth 2.0 error code the answer named, if any.
    pub error: Option<String>,
    /// Whether the refusal is permanent (wrong credentials): asking again soon will not help.
    pub permanent: bool,
    /// The failing replica's error, in one line of at most 200 bytes.
    pub description: String,
    /// Until when the replicas wait, on this process's clock.
    pub until: Instant,
    /// The failures in a row so far, this one included: the next replica to fail doubles the
    /// backoff from here rather than start again from the shortest.
    pub consecutive: u32,
}

impl SharedFailure {
    /// The failure to share for a refresh that failed with `error`, if the authorization
    /// server answered it (the error carries a [`ServerAnswer`]); `None` for a failure of this
    /// replica's own (its connection, its timeout), which the others must not wait for.
    pub(crate) fn of(
        error: &(dyn Error + 'static),
        until: Instant,
        consecutive: u32,
    ) -> Option<Self> {
        let answer = ServerAnswer::find(error)?;
        let permanent = RetryAfter::find(error).is_some_and(|hint| hint.delay().is_none());
        let mut description = Chain(error).to_string();
        if description.len() > DESCRIPTION_BYTES {
            // The last character boundary within the limit (0 is always one).
            let end = (0..=DESCRIPTION_BYTES)
                .rev()
                .find(|&end| description.is_char_boundary(end))
                .unwrap_or(0);
            description.truncate(end);
        }
        Some(SharedFailure {
            status: answer.status(),
            error: answer.error().map(str::to_owned),
            permanent,
            description,
            until,
            consecutive,
        })
    }

    /// Time left until the replicas call the server again; `None` once it has passed.
    pub(crate) fn retry_in(&self, now: Instant) -> Option<Duration> {
        Some(self.until.saturating_duration_since(now)).filter(|left| !left.is_zero())
    }
}

impl fmt::Display for SharedFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.description)
    }
}

/// `None`: the failing replica's error is in the description.
impl Error for SharedFailure {}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::BoxError;

    fn of(error: BoxError) -> Option<SharedFailure> {
        SharedFailure::of(&*error, Instant::now(), 1)
    }

    #[tokio::test]
    async fn only_the_servers_answer_is_shared() {
        assert_eq!(of("connection refused".into()), None);
        assert_eq!(
            of(RetryAfter::new(Duration::from_secs(3), "asked to wait").into()),
            None,
            "a hint without the server's answer may be this replica's own"
        );

        let unavailable = http::StatusCode::SERVICE_UNAVAILABLE;
        let failure = of(ServerAnswer::new(unavailable).into()).unwrap();
        assert_eq!(
            (failure.status, failure.error, failure.permanent),
            (unavailable, None, false)
        );
        assert_eq!(failure.description, "503 Service Unavailable");

        let refused = ServerAnswer::new(http::StatusCode::BAD_REQUEST).with_error("invalid_client");
        let failure = of(RetryAfter::permanent("a permanent refusal")
            .answered(refused)
            .into());
        let failure = failure.unwrap();
        assert!(failure.permanent);
        assert_eq!(failure.error.as_deref(), Some("invalid_client"));
        assert_eq!(
            failure.description,
            "a permanent refusal (will not succeed by retrying soon)"
        );
    }

    #[tokio::test]
    async fn a_long_description_is_cut_at_a_character() {
        #[derive(Debug)]
        struct Long(ServerAnswer);
        impl fmt::Display for Long {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                // Two-byte characters, the 200th byte inside one.
                f.write_str(&format!("x{}", "é".repeat(150)))
            }
        }
        impl Error for Long {
            fn source(&self) -> Option<&(dyn Error + 'static)> {
                Some(&self.0)
            }
        }
        let error = Long(ServerAnswer::new(http::StatusCode::BAD_GATEWAY));
        let failure = of(Box::new(error)).unwrap();
        assert_eq!(failure.description.len(), 199);
        assert!(failure.description.starts_with("xé"));

        let short = of(ServerAnswer::new(http::StatusCode::BAD_GATEWAY).into()).unwrap();
        assert_eq!(short.description, "502 Bad Gateway");
    }

    #[tokio::test(start_paused = true)]
    async fn a_failure_is_in_force_until_its_time() {
        let failure = SharedFailure::of(
            &ServerAnswer::new(http::StatusCode::SERVICE_UNAVAILABLE),
            Instant::now() + Duration::from_secs(2),
            1,
        )
        .unwrap();
        assert_eq!(
            failure.retry_in(Instant::now()),
            Some(Duration::from_secs(2))
        );
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(failure.retry_in(Instant::now()), None);
        assert_eq!(failure.to_string(), "503 Service Unavailable");
    }
}
