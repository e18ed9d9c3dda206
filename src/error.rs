//! Errors: no token could be had, and a refresher's hint to wait.

use std::error::Error;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tower::BoxError;

use crate::RefreshReason;

/// A request failed because no token could be had for it.
///
/// [`BearerAuth`](crate::BearerAuth)'s error type is [`BoxError`], as with tower's own
/// middleware, so it composes with `Timeout`, `Buffer` and `Retry`. A `TokenError` in it means
/// the request was never sent (or, after a 401, not sent again); any other error is the inner
/// service's own, passed through as it was.
///
/// ```
/// # use tower::BoxError;
/// use tower_bearer::TokenError;
///
/// fn describe(err: &BoxError) -> String {
///     // `find` also looks through wrappers such as `tower::buffer::error::ServiceError`.
///     match TokenError::find(&**err) {
///         Some(token) => format!("no token ({}): {token}", token.reason()),
///         None => format!("the request failed: {err}"),
///     }
/// }
/// ```
///
/// One failed refresh wakes every request that waited for it, so the error is `Clone`: the
/// refresher's error is shared behind an `Arc` and reachable through
/// [`source`](Error::source).
#[derive(Clone)]
pub struct TokenError {
    reason: RefreshReason,
    kind: TokenErrorKind,
    source: Option<Arc<dyn Error + Send + Sync>>,
}

/// What went wrong, in a [`TokenError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TokenErrorKind {
    /// The refresher answered with an error (the [`source`](Error::source)).
    Refresher,
    /// The refresher returned a token that had already expired.
    ExpiredToken,
    /// The refresher failed a moment ago, and the cache does not call it again until the
    /// backoff has passed; the source is that failure.
    BackingOff {
        /// How long until the cache calls the refresher again.
        retry_in: Duration,
    },
    /// The refresher did not answer within the cache's
    /// [refresh timeout](crate::TokenCacheBuilder::refresh_timeout).
    TimedOut {
        /// The timeout.
        after: Duration,
    },
    /// The refresh ended without an answer: the refresher panicked, or the runtime it ran on
    /// shut down.
    Abandoned,
    /// There was no tokio runtime to run the refresh on.
    NoRuntime,
}

impl TokenError {
    pub(crate) fn new(reason: RefreshReason, kind: TokenErrorKind) -> Self {
        TokenError {
            reason,
            kind,
            source: None,
        }
    }

    pub(crate) fn refresher(reason: RefreshReason, source: BoxError) -> Self {
        TokenError {
            reason,
            kind: TokenErrorKind::Refresher,
            source: Some(Arc::from(source)),
        }
    }

    /// The same failure, remembered during the backoff that follows it.
    pub(crate) fn backing_off(&self, retry_in: Duration) -> Self {
        TokenError {
            reason: self.reason,
            kind: TokenErrorKind::BackingOff { retry_in },
            source: Some(Arc::new(self.clone())),
        }
    }

    /// Why the token was wanted.
    pub fn reason(&self) -> RefreshReason {
        self.reason
    }

    /// What went wrong.
    pub fn kind(&self) -> TokenErrorKind {
        self.kind
    }

    /// The first `TokenError` in `err` or its chain of sources.
    pub fn find<'a>(err: &'a (dyn Error + 'static)) -> Option<&'a TokenError> {
        chain(err).find_map(|err| err.downcast_ref())
    }
}

impl fmt::Debug for TokenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenError")
            .field("reason", &self.reason)
            .field("kind", &self.kind)
            .field("source", &self.source)
            .finish()
    }
}

impl fmt::Display for TokenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "could not get a bearer token ({}): ", self.reason)?;
        match self.kind {
            TokenErrorKind::Refresher => f.write_str("the refresher failed"),
            TokenErrorKind::ExpiredToken => {
                f.write_str("the refresher returned a token that had already expired")
            }
            TokenErrorKind::BackingOff { retry_in } => write!(
                f,
                "the last refresh failed; the next attempt is in {} ms",
                retry_in.as_millis()
            ),
            TokenErrorKind::TimedOut { after } => write!(
                f,
                "the refresher did not answer within {} ms",
                after.as_millis()
            ),
            TokenErrorKind::Abandoned => f.write_str("the refresh ended without an answer"),
            TokenErrorKind::NoRuntime => f.write_str("no tokio runtime to run the refresh on"),
        }
    }
}

impl Error for TokenError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        self.source.as_deref().map(|e| e as &(dyn Error + 'static))
    }
}

/// A refresher's error that says when to try again.
///
/// A provider that is told to wait (HTTP 429 with `Retry-After`, say) returns its error
/// wrapped in this; the cache then waits that long, instead of its own backoff, before it calls
/// the refresher again. A provider whose credentials were refused for good (a wrong client
/// secret) wraps its error with [`permanent`](Self::permanent): the cache then waits its
/// longest backoff at once, rather than retrying a request that cannot succeed every second.
/// The cache finds the hint anywhere in the error's chain of sources, so it survives
/// `tower::timeout` and other wrappers.
///
/// ```
/// use std::time::Duration;
/// use tower_bearer::RetryAfter;
///
/// let err = RetryAfter::new(Duration::from_secs(30), "too many requests");
/// assert_eq!(err.delay(), Some(Duration::from_secs(30)));
/// let err = RetryAfter::permanent("invalid_client");
/// assert_eq!(err.delay(), None);
/// ```
pub struct RetryAfter {
    /// `None`: the cache's longest backoff.
    delay: Option<Duration>,
    source: BoxError,
}

impl RetryAfter {
    /// `source`, with a request to wait `delay` before the next attempt.
    pub fn new(delay: Duration, source: impl Into<BoxError>) -> Self {
        RetryAfter {
            delay: Some(delay),
            source: source.into(),
        }
    }

    /// `source`, a failure that the next attempt will meet too (credentials refused): the
    /// cache waits the longest [backoff](crate::TokenCacheBuilder::backoff) before it.
    pub fn permanent(source: impl Into<BoxError>) -> Self {
        RetryAfter {
            delay: None,
            source: source.into(),
        }
    }

    /// How long the provider asked to wait; `None` for a [permanent](Self::permanent)
    /// failure, which waits the cache's longest backoff.
    pub fn delay(&self) -> Option<Duration> {
        self.delay
    }

    /// The first `RetryAfter` in `err` or its chain of sources: how the cache finds a
    /// provider's hint under the wrappers around it (`tower::timeout`, a `TokenError`).
    pub fn find<'a>(err: &'a (dyn Error + 'static)) -> Option<&'a RetryAfter> {
        chain(err).find_map(|err| err.downcast_ref::<RetryAfter>())
    }
}

impl fmt::Debug for RetryAfter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut debug = f.debug_struct("RetryAfter");
        match self.delay {
            Some(delay) => debug.field("delay", &delay),
            None => debug.field("permanent", &true),
        };
        debug.field("source", &self.source).finish()
    }
}

impl fmt::Display for RetryAfter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.delay {
            Some(delay) => write!(f, "{} (retry after {} ms)", self.source, delay.as_millis()),
            None => write!(f, "{} (will not succeed by retrying soon)", self.source),
        }
    }
}

impl Error for RetryAfter {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(&*self.source)
    }
}

/// The chain of an error's sources, `: `-separated, for logs: the reason a refresh failed is
/// often several wrappers down (a provider error around a connection error).
pub(crate) struct Causes<'a>(pub(crate) &'a (dyn Error + 'static));

impl fmt::Display for Causes<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, err) in chain(self.0).skip(1).enumerate() {
            if i > 0 {
                f.write_str(": ")?;
            }
            write!(f, "{err}")?;
        }
        Ok(())
    }
}

/// `err`, then its sources in turn.
fn chain<'a>(err: &'a (dyn Error + 'static)) -> impl Iterator<Item = &'a (dyn Error + 'static)> {
    std::iter::successors(Some(err), |&err| err.source())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn find_looks_through_wrappers() {
        #[derive(Debug)]
        struct Wrapper(TokenError);
        impl fmt::Display for Wrapper {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("wrapped")
            }
        }
        impl Error for Wrapper {
            fn source(&self) -> Option<&(dyn Error + 'static)> {
                Some(&self.0)
            }
        }

        let inner = TokenError::refresher(RefreshReason::Expired, "boom".into());
        let err: BoxError = Box::new(Wrapper(inner));
        let found = TokenError::find(&*err).expect("found through the wrapper");
        assert_eq!(found.reason(), RefreshReason::Expired);
        assert_eq!(found.kind(), TokenErrorKind::Refresher);
        assert_eq!(found.source().unwrap().to_string(), "boom");

        let other: BoxError = "unrelated".into();
        assert!(TokenError::find(&*other).is_none());
    }

    #[test]
    fn retry_after_is_found_in_the_chain() {
        let hinted: BoxError = Box::new(RetryAfter::new(Duration::from_secs(7), "slow down"));
        let wrapped = TokenError::refresher(RefreshReason::Initial, hinted);
        assert_eq!(
            RetryAfter::find(&wrapped).map(RetryAfter::delay),
            Some(Some(Duration::from_secs(7)))
        );
        let permanent = TokenError::refresher(
            RefreshReason::Initial,
            Box::new(RetryAfter::permanent("invalid_client")),
        );
        assert_eq!(
            RetryAfter::find(&permanent).map(RetryAfter::delay),
            Some(None)
        );
        assert_eq!(
            RetryAfter::find(&TokenError::new(
                RefreshReason::Initial,
                TokenErrorKind::Abandoned
            ))
            .map(RetryAfter::delay),
            None
        );
    }

    #[test]
    fn causes_are_the_sources_after_the_error_itself() {
        let inner = TokenError::refresher(
            RefreshReason::Initial,
            Box::new(RetryAfter::new(
                Duration::from_secs(1),
                "connection refused",
            )),
        );
        assert_eq!(
            Causes(&inner).to_string(),
            "connection refused (retry after 1000 ms): connection refused"
        );
        let alone = TokenError::new(RefreshReason::Initial, TokenErrorKind::Abandoned);
        assert_eq!(Causes(&alone).to_string(), "");
    }
}
