//! Errors: no token could be had, and a refresher's hint to wait.
//!
//! Both errors here show their causes in their one-line `Display` and return none from
//! [`source`](Error::source) (see [`TokenError`] for why); [`TokenError::find`] and
//! [`RetryAfter::find`] still look inside them, and inside the wrappers of the stacks this
//! crate serves.

use std::error::Error;
use std::fmt::{self, Write as _};
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
/// # Its text says why
///
/// The one-line `Display` is the whole story, down to the refresher's own words, each cause
/// once, for a log line that prints `{e}`:
///
/// ```text
/// could not get a token: the authorization server refused the client: invalid_client (wrong client secret)
/// could not get a token: the last refresh failed, the next is in 27 s: connection refused
/// could not get a token: the refresher did not answer within 60 s
/// ```
///
/// The Rust error-handling project group's convention is that an error either shows its
/// source in its `Display` or returns it from [`source`](Error::source), never both, or a
/// logger that walks the chain (`anyhow`'s `{:#}`, `tracing`'s error fields) prints each cause
/// twice. A `TokenError` shows its causes, so its `source()` is `None`. To match on the
/// refresher's error by type, take [`refresher_error`](Self::refresher_error); to find a
/// `TokenError` under wrappers, [`find`](Self::find).
///
/// One failed refresh wakes every request that waited for it, so the error is `Clone`: the
/// refresher's error is shared behind an `Arc`.
#[derive(Clone)]
pub struct TokenError {
    reason: RefreshReason,
    kind: TokenErrorKind,
    /// The refresher's error; for [`TokenErrorKind::BackingOff`], the failure remembered.
    cause: Option<Arc<dyn Error + Send + Sync>>,
}

/// What went wrong, in a [`TokenError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TokenErrorKind {
    /// The refresher answered with an error (the
    /// [`refresher_error`](TokenError::refresher_error)).
    Refresher,
    /// The refresher returned a token that had already expired.
    ExpiredToken,
    /// The refresher failed a moment ago, and the cache does not call it again until the
    /// backoff has passed; the error says how that failure went.
    BackingOff {
        /// How long until the cache calls the refresher again.
        retry_in: Duration,
    },
    /// Another replica sharing this cache's [store](crate::store) failed to refresh with an
    /// answer from the authorization server (a 5xx, a 429, an OAuth 2.0 error), and published
    /// that failure: this cache does not call its refresher until the backoff that replica
    /// published has passed. The error says what the server answered
    /// ([`shared_failure`](TokenError::shared_failure)).
    SharedBackoff {
        /// How long until a replica calls the authorization server again.
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
            cause: None,
        }
    }

    pub(crate) fn refresher(reason: RefreshReason, source: BoxError) -> Self {
        TokenError {
            reason,
            kind: TokenErrorKind::Refresher,
            cause: Some(Arc::from(source)),
        }
    }

    /// Another replica's failure, read from the store: the fleet backs off until it ends.
    pub(crate) fn shared(
        reason: RefreshReason,
        failure: crate::store::SharedFailure,
        retry_in: Duration,
    ) -> Self {
        TokenError {
            reason,
            kind: TokenErrorKind::SharedBackoff { retry_in },
            cause: Some(Arc::new(failure)),
        }
    }

    /// The same failure, remembered during the backoff that follows it.
    pub(crate) fn backing_off(&self, retry_in: Duration) -> Self {
        if let TokenErrorKind::SharedBackoff { .. } = self.kind {
            // Still the fleet's backoff, not one of this replica's own.
            return TokenError {
                kind: TokenErrorKind::SharedBackoff { retry_in },
                ..self.clone()
            };
        }
        let failure = match (&self.kind, &self.cause) {
            // Already remembered: the failure is the one it remembers.
            (TokenErrorKind::BackingOff { .. }, Some(cause)) => cause.clone(),
            _ => Arc::new(self.clone()),
        };
        TokenError {
            reason: self.reason,
            kind: TokenErrorKind::BackingOff { retry_in },
            cause: Some(failure),
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

    /// The error the refresher returned, for a [`Refresher`](TokenErrorKind::Refresher)
    /// failure or a [`BackingOff`](TokenErrorKind::BackingOff) after one: to match on a
    /// provider's error by its type. Its text is already in this error's `Display`, which is
    /// why it is not this error's [`source`](Error::source).
    ///
    /// ```
    /// # use tower::BoxError;
    /// use tower_bearer::TokenError;
    ///
    /// #[derive(Debug)]
    /// struct Refused;
    /// # impl std::fmt::Display for Refused {
    /// #     fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result { f.write_str("refused") }
    /// # }
    /// # impl std::error::Error for Refused {}
    ///
    /// fn was_refused(err: &BoxError) -> bool {
    ///     TokenError::find(&**err)
    ///         .and_then(TokenError::refresher_error)
    ///         .is_some_and(|source| source.is::<Refused>())
    /// }
    /// ```
    pub fn refresher_error(&self) -> Option<&(dyn Error + Send + Sync + 'static)> {
        let cause = self.cause.as_deref()?;
        match self.kind {
            TokenErrorKind::BackingOff { .. } => cause
                .downcast_ref::<TokenError>()
                .and_then(TokenError::refresher_error),
            // This replica's refresher was not called.
            TokenErrorKind::SharedBackoff { .. } => None,
            _ => Some(cause),
        }
    }

    /// For a [`SharedBackoff`](TokenErrorKind::SharedBackoff), the failure another replica
    /// published: what the authorization server answered it, and until when the fleet waits.
    pub fn shared_failure(&self) -> Option<&crate::store::SharedFailure> {
        match self.kind {
            TokenErrorKind::SharedBackoff { .. } => self.cause.as_deref()?.downcast_ref(),
            _ => None,
        }
    }

    /// The first `TokenError` in `err` or under it: in its chain of sources (tower's `Buffer`
    /// wrapper, reqwest-retry's error after retries) and inside reqwest-middleware's `Error`.
    ///
    /// An error that hides what it wraps from `source()` hides it from `find` too. The one
    /// such wrapper in these stacks is reqwest-retry's `RetryError::Error`
    /// (`#[error(transparent)]`), around a request it did not retry, which a middleware's
    /// error never is: there, the error's one line is this error's, and says why, but `find`
    /// returns `None`. (Returning this error from `source()` as well as showing it would have
    /// every logger that walks the chain print it twice.)
    pub fn find<'a>(err: &'a (dyn Error + 'static)) -> Option<&'a TokenError> {
        causes(err).find_map(|err| err.downcast_ref())
    }

    /// Why, after "could not get a token: ".
    fn write_why(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            TokenErrorKind::Refresher => match &self.cause {
                Some(cause) => write!(f, "{}", Chain(&**cause)),
                None => f.write_str("the refresher failed"),
            },
            TokenErrorKind::ExpiredToken => {
                f.write_str("the refresher returned a token that had already expired")
            }
            TokenErrorKind::BackingOff { retry_in } => {
                write!(
                    f,
                    "the last refresh failed, the next is in {}",
                    Seconds(retry_in)
                )?;
                match self.cause.as_deref() {
                    Some(cause) => match cause.downcast_ref::<TokenError>() {
                        Some(failure) => {
                            f.write_str(": ")?;
                            failure.write_why(f)
                        }
                        None => write!(f, ": {}", Chain(cause)),
                    },
                    None => Ok(()),
                }
            }
            TokenErrorKind::SharedBackoff { retry_in } => {
                write!(
                    f,
                    "another replica's refresh failed, and the replicas sharing the token wait \
                     {} before the next",
                    Seconds(retry_in)
                )?;
                match self.cause.as_deref() {
                    Some(cause) => write!(f, ": {cause}"),
                    None => Ok(()),
                }
            }
            TokenErrorKind::TimedOut { after } => {
                write!(f, "the refresher did not answer within {}", Seconds(after))
            }
            TokenErrorKind::Abandoned => f.write_str(
                "the refresh ended without an answer (the refresher panicked, or its runtime \
                 shut down)",
            ),
            TokenErrorKind::NoRuntime => f.write_str("no tokio runtime to run the refresh on"),
        }
    }
}

impl fmt::Debug for TokenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenError")
            .field("reason", &self.reason)
            .field("kind", &self.kind)
            .field("cause", &self.cause)
            .finish()
    }
}

impl fmt::Display for TokenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("could not get a token: ")?;
        self.write_why(f)
    }
}

/// `None`: the causes are in the `Display` (see [`TokenError`]).
impl Error for TokenError {}

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
/// assert_eq!(err.to_string(), "too many requests (retry after 30 s)");
/// let err = RetryAfter::permanent("invalid_client");
/// assert_eq!(err.delay(), None);
/// ```
///
/// Like [`TokenError`], it shows its error (and that error's causes) in its `Display`, with the
/// hint after it, and its [`source`](Error::source) is `None`: [`get_ref`](Self::get_ref) is
/// the error it wraps.
pub struct RetryAfter {
    /// `None`: the cache's longest backoff.
    delay: Option<Duration>,
    // Boxed: providers' errors carry a hint beside everything else.
    hint: Box<Hint>,
}

struct Hint {
    source: BoxError,
    answer: Option<ServerAnswer>,
}

impl RetryAfter {
    /// `source`, with a request to wait `delay` before the next attempt.
    pub fn new(delay: Duration, source: impl Into<BoxError>) -> Self {
        RetryAfter {
            delay: Some(delay),
            hint: Box::new(Hint {
                source: source.into(),
                answer: None,
            }),
        }
    }

    /// `source`, a failure that the next attempt will meet too (credentials refused): the
    /// cache waits the longest [backoff](crate::TokenCacheBuilder::backoff) before it.
    pub fn permanent(source: impl Into<BoxError>) -> Self {
        RetryAfter {
            delay: None,
            hint: Box::new(Hint {
                source: source.into(),
                answer: None,
            }),
        }
    }

    /// How long the provider asked to wait; `None` for a [permanent](Self::permanent)
    /// failure, which waits the cache's longest backoff.
    pub fn delay(&self) -> Option<Duration> {
        self.delay
    }

    /// The same hint, saying that the authorization server answered (it asked to wait, or
    /// refused for good), for [`ServerAnswer::find`]: a provider whose error's source is this
    /// hint puts the answer here.
    pub fn answered(mut self, answer: ServerAnswer) -> Self {
        self.hint.answer = Some(answer);
        self
    }

    /// The error this one wraps, to match on its type.
    pub fn get_ref(&self) -> &(dyn Error + Send + Sync + 'static) {
        &*self.hint.source
    }

    /// The first `RetryAfter` in `err` or under it, as [`TokenError::find`] looks: how the
    /// cache finds a provider's hint under the wrappers around it (`tower::timeout`, a
    /// `TokenError`).
    pub fn find<'a>(err: &'a (dyn Error + 'static)) -> Option<&'a RetryAfter> {
        causes(err).find_map(|err| err.downcast_ref::<RetryAfter>())
    }
}

impl fmt::Debug for RetryAfter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut debug = f.debug_struct("RetryAfter");
        match self.delay {
            Some(delay) => debug.field("delay", &delay),
            None => debug.field("permanent", &true),
        };
        debug.field("source", &self.hint.source).finish()
    }
}

impl fmt::Display for RetryAfter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", Chain(&*self.hint.source))?;
        match self.delay {
            Some(delay) => write!(f, " (retry after {})", Seconds(delay)),
            None => f.write_str(" (will not succeed by retrying soon)"),
        }
    }
}

/// `None`: the wrapped error is in the `Display` (see [`RetryAfter`]).
impl Error for RetryAfter {}

/// What the authorization server answered to a failed refresh: its status, and the OAuth 2.0
/// error code if it sent one.
///
/// A provider puts it in its error's chain of sources (or in its [`RetryAfter`] hint, with
/// [`RetryAfter::answered`]) when the server answered, and never when the request did not
/// reach it (a connection refused, a timeout, a TLS failure). With a
/// [store](crate::store), a failure that carries one is the server's, the same for every
/// replica, and is shared: the other replicas wait out its backoff instead of calling the
/// server too. A failure without one stays with the replica it happened to, so that one
/// replica's broken network never stops the others.
///
/// Its `Display` is the status (`503 Service Unavailable`), or the status code and the error
/// code (`400 invalid_client`), as the providers' own errors already say them: a one-line
/// [`TokenError`] does not say it twice.
///
/// ```
/// use http::StatusCode;
/// use tower_bearer::{RetryAfter, ServerAnswer};
///
/// let answer = ServerAnswer::new(StatusCode::BAD_REQUEST).with_error("invalid_client");
/// assert_eq!(answer.to_string(), "400 invalid_client");
/// let hint = RetryAfter::permanent("a permanent refusal").answered(answer.clone());
/// assert_eq!(ServerAnswer::find(&hint), Some(&answer));
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct ServerAnswer(
    // Boxed: providers' errors carry it beside everything else, on every error path.
    Box<Answered>,
);

#[derive(Clone, PartialEq, Eq)]
struct Answered {
    status: http::StatusCode,
    error: Option<Box<str>>,
}

impl ServerAnswer {
    /// The server answered with `status`.
    pub fn new(status: http::StatusCode) -> Self {
        ServerAnswer(Box::new(Answered {
            status,
            error: None,
        }))
    }

    /// With the OAuth 2.0 error code (`invalid_client`, `temporarily_unavailable`) the
    /// answer's body named.
    pub fn with_error(mut self, code: impl Into<Box<str>>) -> Self {
        self.0.error = Some(code.into());
        self
    }

    /// The status the server answered with.
    pub fn status(&self) -> http::StatusCode {
        self.0.status
    }

    /// The OAuth 2.0 error code, if the answer named one.
    pub fn error(&self) -> Option<&str> {
        self.0.error.as_deref()
    }

    /// The first `ServerAnswer` in `err` or under it (in a [`RetryAfter`] too), as
    /// [`TokenError::find`] looks.
    pub fn find<'a>(err: &'a (dyn Error + 'static)) -> Option<&'a ServerAnswer> {
        causes(err).find_map(|err| {
            err.downcast_ref::<ServerAnswer>().or_else(|| {
                err.downcast_ref::<RetryAfter>()
                    .and_then(|hint| hint.hint.answer.as_ref())
            })
        })
    }
}

impl fmt::Debug for ServerAnswer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerAnswer")
            .field("status", &self.0.status)
            .field("error", &self.0.error)
            .finish()
    }
}

impl fmt::Display for ServerAnswer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0.error {
            Some(code) => write!(f, "{} {code}", self.0.status.as_u16()),
            None => write!(f, "{}", self.0.status),
        }
    }
}

impl Error for ServerAnswer {}

/// An error's text, then each cause in its chain of sources whose text is not already in what
/// came before, `: `-separated: the one line a log needs, each cause once, whichever
/// convention each error in the chain follows (showing its source, or returning it).
pub(crate) struct Chain<'a>(pub(crate) &'a (dyn Error + 'static));

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut text = self.0.to_string();
        let mut next = self.0.source();
        while let Some(cause) = next {
            let said = cause.to_string();
            if !text.contains(said.as_str()) {
                write!(text, ": {said}")?;
            }
            next = cause.source();
        }
        f.write_str(&text)
    }
}

/// The chain of an error's sources, `: `-separated, for logs: the reason a store failed is
/// often several wrappers down (a Redis error around a connection error).
pub(crate) struct Causes<'a>(pub(crate) &'a (dyn Error + 'static));

impl fmt::Display for Causes<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, err) in std::iter::successors(self.0.source(), |&err| err.source()).enumerate() {
            if i > 0 {
                f.write_str(": ")?;
            }
            write!(f, "{err}")?;
        }
        Ok(())
    }
}

/// A duration in seconds, to two significant digits under ten seconds and whole above:
/// "27 s", "2.5 s", "0.25 s".
pub(crate) struct Seconds(pub(crate) Duration);

impl fmt::Display for Seconds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.0.as_secs_f64();
        let decimals = if secs >= 10.0 || self.0.is_zero() {
            0
        } else {
            // One decimal from 1 s, two below (0.25), three below 0.1 s (0.012), …
            (1 - secs.log10().floor() as i32).clamp(1, 9) as usize
        };
        let text = format!("{secs:.decimals$}");
        let text = if text.contains('.') {
            text.trim_end_matches('0').trim_end_matches('.')
        } else {
            &text
        };
        write!(f, "{text} s")
    }
}

/// `err`, then what is under it in turn: its source, or for the errors that show their cause
/// rather than return it, that cause; for reqwest-middleware's error, the one it holds.
fn causes<'a>(err: &'a (dyn Error + 'static)) -> impl Iterator<Item = &'a (dyn Error + 'static)> {
    std::iter::successors(Some(err), |&err| under(err))
}

fn under<'a>(err: &'a (dyn Error + 'static)) -> Option<&'a (dyn Error + 'static)> {
    if let Some(token) = err.downcast_ref::<TokenError>() {
        return token
            .cause
            .as_deref()
            .map(|cause| cause as &(dyn Error + 'static));
    }
    if let Some(hint) = err.downcast_ref::<RetryAfter>() {
        return Some(hint.get_ref());
    }
    // `#[error(transparent)]`: its `source` is the source of the error it holds, past that
    // error itself.
    #[cfg(feature = "reqwest")]
    if let Some(reqwest_middleware::Error::Middleware(inner)) = err.downcast_ref() {
        return Some(inner.as_ref());
    }
    err.source()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A provider's error as the Rust convention has it: its own text, and its cause returned
    /// from `source`, not shown.
    #[derive(Debug)]
    struct Refused(RetryAfter);

    impl fmt::Display for Refused {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("the authorization server refused the client")
        }
    }

    impl Error for Refused {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            Some(&self.0)
        }
    }

    /// An error that shows its source and returns it too, as many do.
    #[derive(Debug)]
    struct Both(BoxError);

    impl fmt::Display for Both {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "the request failed: {}", self.0)
        }
    }

    impl Error for Both {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            Some(&*self.0)
        }
    }

    fn refused() -> BoxError {
        Box::new(Refused(RetryAfter::permanent(
            "invalid_client (wrong client secret)",
        )))
    }

    #[test]
    fn each_kind_says_why_in_one_line() {
        let initial = RefreshReason::Initial;
        let texts = [
            (
                TokenError::refresher(initial, "connection refused".into()),
                "could not get a token: connection refused",
            ),
            (
                TokenError::new(initial, TokenErrorKind::ExpiredToken),
                "could not get a token: the refresher returned a token that had already expired",
            ),
            (
                TokenError::refresher(initial, "connection refused".into())
                    .backing_off(Duration::from_millis(27_016)),
                "could not get a token: the last refresh failed, the next is in 27 s: \
                 connection refused",
            ),
            (
                TokenError::new(
                    initial,
                    TokenErrorKind::TimedOut {
                        after: Duration::from_secs(60),
                    },
                )
                .backing_off(Duration::from_millis(250)),
                "could not get a token: the last refresh failed, the next is in 0.25 s: the \
                 refresher did not answer within 60 s",
            ),
            (
                TokenError::new(
                    initial,
                    TokenErrorKind::TimedOut {
                        after: Duration::from_millis(2_500),
                    },
                ),
                "could not get a token: the refresher did not answer within 2.5 s",
            ),
            (
                TokenError::new(initial, TokenErrorKind::Abandoned),
                "could not get a token: the refresh ended without an answer (the refresher \
                 panicked, or its runtime shut down)",
            ),
            (
                TokenError::new(initial, TokenErrorKind::NoRuntime),
                "could not get a token: no tokio runtime to run the refresh on",
            ),
        ];
        for (error, text) in texts {
            assert_eq!(error.to_string(), text, "{:?}", error.kind());
            assert!(error.source().is_none(), "{text}");
        }
    }

    #[test]
    fn a_nested_chain_says_each_cause_once() {
        let error = TokenError::refresher(RefreshReason::Initial, refused());
        let text = "could not get a token: the authorization server refused the client: \
                    invalid_client (wrong client secret) (will not succeed by retrying soon)";
        assert_eq!(error.to_string(), text);
        // Remembered through a backoff, and through one more.
        let again = error
            .backing_off(Duration::from_secs(30))
            .backing_off(Duration::from_secs(29));
        assert_eq!(
            again.to_string(),
            "could not get a token: the last refresh failed, the next is in 29 s: the \
             authorization server refused the client: invalid_client (wrong client secret) \
             (will not succeed by retrying soon)"
        );

        // A RetryAfter around it all, and an error that shows and returns its source.
        let hinted = RetryAfter::new(Duration::from_millis(27_016), Both(refused()));
        let error = TokenError::refresher(RefreshReason::Expired, Box::new(hinted));
        assert_eq!(
            error.to_string(),
            "could not get a token: the request failed: the authorization server refused the \
             client: invalid_client (wrong client secret) (will not succeed by retrying soon) \
             (retry after 27 s)"
        );
    }

    #[test]
    fn a_chain_walking_logger_says_each_cause_once() {
        let error = TokenError::refresher(RefreshReason::Initial, refused());
        let line = format!("{:#}", anyhow::Error::new(error.clone()));
        assert_eq!(line, error.to_string());
        let wrapped = anyhow::Error::new(error).context("sending the report");
        let line = format!("{wrapped:#}");
        assert_eq!(line.matches("wrong client secret").count(), 1, "{line}");
        assert_eq!(line.matches("could not get a token").count(), 1, "{line}");

        // A provider's error with the hint as its source, as the providers return them.
        let provider = anyhow::Error::from_boxed(refused());
        assert_eq!(
            format!("{provider:#}"),
            "the authorization server refused the client: invalid_client (wrong client secret) \
             (will not succeed by retrying soon)"
        );
    }

    #[test]
    fn the_refresher_error_is_there_to_match_on() {
        let error = TokenError::refresher(RefreshReason::Initial, refused());
        assert!(error.refresher_error().unwrap().is::<Refused>());
        let again = error.backing_off(Duration::from_secs(1));
        assert!(again.refresher_error().unwrap().is::<Refused>());
        let timed_out = TokenError::new(
            RefreshReason::Initial,
            TokenErrorKind::TimedOut {
                after: Duration::from_secs(1),
            },
        );
        assert!(
            timed_out
                .backing_off(Duration::from_secs(1))
                .refresher_error()
                .is_none()
        );
        let hinted = RetryAfter::new(Duration::from_secs(1), refused());
        assert!(hinted.get_ref().is::<Refused>());
    }

    #[test]
    fn find_looks_through_wrappers() {
        let inner = TokenError::refresher(RefreshReason::Expired, "boom".into());
        let err: BoxError = Box::new(Both(Box::new(inner)));
        let found = TokenError::find(&*err).expect("found through the wrapper");
        assert_eq!(found.reason(), RefreshReason::Expired);
        assert_eq!(found.kind(), TokenErrorKind::Refresher);
        assert_eq!(found.refresher_error().unwrap().to_string(), "boom");

        let other: BoxError = "unrelated".into();
        assert!(TokenError::find(&*other).is_none());
    }

    /// `Buffer` wraps a failure of its service's `poll_ready` in its `ServiceError`.
    #[tokio::test]
    async fn find_looks_through_towers_buffer() {
        use std::task::{Context, Poll};
        use tower::{Service, ServiceExt, buffer::Buffer};

        struct NeverReady;
        impl Service<()> for NeverReady {
            type Response = ();
            type Error = BoxError;
            type Future = std::future::Ready<Result<(), BoxError>>;
            fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
                let error = TokenError::new(RefreshReason::Initial, TokenErrorKind::NoRuntime);
                Poll::Ready(Err(Box::new(error)))
            }
            fn call(&mut self, (): ()) -> Self::Future {
                unreachable!("never ready")
            }
        }

        let buffered = Buffer::new(NeverReady, 1);
        let err = buffered.oneshot(()).await.unwrap_err();
        assert!(
            err.downcast_ref::<TokenError>().is_none(),
            "wrapped: {err:?}"
        );
        assert_eq!(
            TokenError::find(&*err).map(TokenError::kind),
            Some(TokenErrorKind::NoRuntime)
        );
    }

    #[cfg(feature = "reqwest")]
    #[test]
    fn find_looks_inside_reqwest_middleware_errors() {
        let inner = TokenError::new(RefreshReason::Initial, TokenErrorKind::NoRuntime);
        let err = reqwest_middleware::Error::middleware(inner.clone());
        assert_eq!(err.to_string(), inner.to_string());
        assert_eq!(
            TokenError::find(&err).map(TokenError::kind),
            Some(TokenErrorKind::NoRuntime)
        );
    }

    #[test]
    fn retry_after_is_found_in_the_chain() {
        let hinted: BoxError = Box::new(RetryAfter::new(Duration::from_secs(7), "slow down"));
        let wrapped = TokenError::refresher(RefreshReason::Initial, hinted);
        assert_eq!(
            RetryAfter::find(&wrapped).map(RetryAfter::delay),
            Some(Some(Duration::from_secs(7)))
        );
        // Under a provider's error, under a backoff.
        let permanent = TokenError::refresher(RefreshReason::Initial, refused())
            .backing_off(Duration::from_secs(1));
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
    fn seconds_read_as_people_write_them() {
        let cases = [
            (Duration::from_millis(27_016), "27 s"),
            (Duration::from_secs(600), "600 s"),
            (Duration::from_millis(9_960), "10 s"),
            (Duration::from_millis(2_500), "2.5 s"),
            (Duration::from_millis(1_040), "1 s"),
            (Duration::from_millis(250), "0.25 s"),
            (Duration::from_millis(100), "0.1 s"),
            (Duration::from_micros(12_300), "0.012 s"),
            (Duration::from_nanos(1), "0.000000001 s"),
            (Duration::ZERO, "0 s"),
        ];
        for (duration, text) in cases {
            assert_eq!(Seconds(duration).to_string(), text, "{duration:?}");
        }
    }

    #[test]
    fn causes_are_the_sources_after_the_error_itself() {
        let both = Both(Box::new(Both("connection refused".into())));
        assert_eq!(
            Causes(&both).to_string(),
            "the request failed: connection refused: connection refused"
        );
        assert_eq!(
            Chain(&both).to_string(),
            "the request failed: the request failed: connection refused"
        );
        let alone = TokenError::new(RefreshReason::Initial, TokenErrorKind::Abandoned);
        assert_eq!(Causes(&alone).to_string(), "");
    }
}
