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
            let mut end = DESCRIPTION_BYTES;
            while !description.is_char_boundary(end) {
                end -= 1;
            }
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
