//! The token a refresher returns and the request it answers.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, BytesMut};
use http::HeaderValue;
use secrecy::{ExposeSecret, SecretString};
use tokio::time::Instant;

use crate::proof::{BindingKey, Prover};

/// A bearer access token, ready to be sent.
///
/// The access token is kept as the `Authorization` header value it will be sent as
/// (`Bearer <token>`), built once and marked [sensitive](HeaderValue::set_sensitive), so
/// attaching it to a request is a reference-count increment. The refresh token, if the provider
/// issued one, is kept as a [`SecretString`] (zeroised on drop).
///
/// Neither appears in `Debug` output.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use tower_bearer::Token;
///
/// let token = Token::bearer("eyJhbGciOi.payload.signature")?
///     .expires_in(Duration::from_secs(3600))
///     .with_refresh_token("def50200aa11");
/// assert_eq!(token.expose_refresh_token(), Some("def50200aa11"));
/// assert!(!format!("{token:?}").contains("eyJ"));
/// # Ok::<(), tower_bearer::InvalidToken>(())
/// ```
#[derive(Clone)]
pub struct Token {
    authorization: HeaderValue,
    token_type: TokenType,
    expires_at: Option<Instant>,
    refresh_token: Option<SecretString>,
    /// What makes the proofs of a token bound to a key (DPoP); `None` for a bearer token.
    prover: Option<Arc<dyn Prover>>,
}

/// How a token is sent: its `token_type` in the provider's answer, and the scheme of the
/// `Authorization` header that carries it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TokenType {
    /// `Authorization: Bearer <token>` (RFC 6750): whoever holds the token can use it.
    Bearer,
    /// `Authorization: DPoP <token>` with a `DPoP` proof made with the client's key for each
    /// request (RFC 9449): the token is useless without the key. See
    /// [`BindingKey`](crate::proof::BindingKey).
    Dpop,
}

impl TokenType {
    /// The scheme as it is written in the `Authorization` header: `Bearer` or `DPoP`.
    pub const fn as_str(self) -> &'static str {
        match self {
            TokenType::Bearer => "Bearer",
            TokenType::Dpop => "DPoP",
        }
    }
}

impl fmt::Display for TokenType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Token {
    /// A token from the access token string the provider issued.
    ///
    /// The token must be non-empty printable ASCII with no spaces (RFC 6750's `b64token`
    /// and every token format in use fit); anything else is an [`InvalidToken`] error, since it
    /// could not be sent in a header as it is.
    ///
    /// The token has no expiry until [`expires_in`](Self::expires_in) or
    /// [`expires_at`](Self::expires_at) sets one; a token without one is used until a server
    /// rejects it.
    pub fn bearer(access_token: impl AsRef<str>) -> Result<Self, InvalidToken> {
        Token::of_type(TokenType::Bearer, access_token.as_ref())
    }

    /// A token the provider issued bound to `key` (a DPoP key): sent as `Authorization:
    /// <scheme> <token>`, the scheme the key's, each attempt with a new proof made with the key.
    ///
    /// The access token must be what [`bearer`](Self::bearer) accepts. The token keeps what
    /// its proofs need (for DPoP, the key and the token's hash, computed once).
    pub fn bound(
        access_token: impl AsRef<str>,
        key: &dyn BindingKey,
    ) -> Result<Self, InvalidToken> {
        let access_token = access_token.as_ref();
        let mut token = Token::of_type(key.token_type(), access_token)?;
        token.prover = Some(key.bind(access_token));
        Ok(token)
    }

    fn of_type(token_type: TokenType, access_token: &str) -> Result<Self, InvalidToken> {
        let access_token = access_token.as_bytes();
        if access_token.is_empty() {
            return Err(InvalidToken::Empty);
        }
        if let Some(at) = access_token.iter().position(|b| !b.is_ascii_graphic()) {
            return Err(InvalidToken::Character { at });
        }
        let scheme = token_type.as_str().as_bytes();
        let mut value = BytesMut::with_capacity(scheme.len() + 1 + access_token.len());
        value.put_slice(scheme);
        value.put_u8(b' ');
        value.put_slice(access_token);
        let mut authorization = HeaderValue::from_maybe_shared(value.freeze())
            .expect("visible ASCII is always a valid header value");
        authorization.set_sensitive(true);
        Ok(Token {
            authorization,
            token_type,
            expires_at: None,
            refresh_token: None,
            prover: None,
        })
    }

    /// Sets the expiry to `lifetime` from now (as a provider's `expires_in` says).
    ///
    /// A lifetime too long for the clock to represent means no expiry.
    pub fn expires_in(mut self, lifetime: Duration) -> Self {
        self.expires_at = Instant::now().checked_add(lifetime);
        self
    }

    /// Sets the expiry to an instant of tokio's monotonic clock.
    pub fn expires_at(mut self, at: Instant) -> Self {
        self.expires_at = Some(at);
        self
    }

    /// Attaches the refresh token the provider issued with this access token.
    pub fn with_refresh_token(mut self, refresh_token: impl Into<String>) -> Self {
        self.refresh_token = Some(SecretString::from(refresh_token.into()));
        self
    }

    /// The `Authorization` header value, `Bearer <token>` (or `DPoP <token>`), marked
    /// sensitive.
    pub fn authorization(&self) -> &HeaderValue {
        &self.authorization
    }

    /// How the token is sent: [`TokenType::Bearer`], or [`TokenType::Dpop`] with a proof per
    /// request.
    pub fn token_type(&self) -> TokenType {
        self.token_type
    }

    /// The key the token is bound to; `None` for a bearer token.
    pub fn binding_key(&self) -> Option<&dyn BindingKey> {
        self.prover.as_deref().map(Prover::key)
    }

    /// What makes the token's proofs, if it is bound to a key.
    #[inline]
    pub(crate) fn prover(&self) -> Option<&dyn Prover> {
        self.prover.as_deref()
    }

    /// [`prover`](Self::prover), shared.
    pub(crate) fn prover_arc(&self) -> Option<Arc<dyn Prover>> {
        self.prover.clone()
    }

    /// The access token itself, for protocols that do not carry it in an HTTP header
    /// (a WebSocket subprotocol, a gRPC metadata value). Handle it as the secret it is.
    pub fn expose_access_token(&self) -> &str {
        let value = self
            .authorization
            .to_str()
            .expect("built from visible ASCII");
        &value[self.token_type.as_str().len() + 1..]
    }

    /// When the token stops being valid, if the provider said.
    pub fn expiry(&self) -> Option<Instant> {
        self.expires_at
    }

    /// The refresh token issued with this access token, if any, for a refresher to trade for
    /// the next token. Handle it as the secret it is: it is kept zeroised on drop, and never
    /// printed by `Debug`.
    pub fn expose_refresh_token(&self) -> Option<&str> {
        self.refresh_token.as_ref().map(|r| r.expose_secret())
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Token")
            .field("token_type", &self.token_type)
            .field("access_token", &"[REDACTED]")
            .field(
                "expires_in",
                &self
                    .expires_at
                    .map(|at| at.saturating_duration_since(Instant::now())),
            )
            .field(
                "refresh_token",
                &self.refresh_token.as_ref().map(|_| "[REDACTED]"),
            )
            .field("bound_to", &self.binding_key().map(BindingKey::id))
            .finish()
    }
}

/// Why a string cannot be a bearer token.
///
/// It never includes the string itself: it may be a secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum InvalidToken {
    /// The access token is empty.
    Empty,
    /// The access token holds a byte that is not printable ASCII (a space, a control
    /// character such as a newline, or a non-ASCII byte), at this offset.
    Character {
        /// The offset of the first offending byte.
        at: usize,
    },
}

impl fmt::Display for InvalidToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InvalidToken::Empty => f.write_str("the access token is empty"),
            InvalidToken::Character { at } => write!(
                f,
                "the access token holds a byte that is not printable ASCII at offset {at}"
            ),
        }
    }
}

impl std::error::Error for InvalidToken {}

/// Why the cache asks its refresher for a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RefreshReason {
    /// The cache holds no token yet.
    Initial,
    /// The token is still valid but inside the refresh-ahead window; requests keep using it
    /// while this refresh runs in the background.
    Ahead,
    /// The token has expired, or has less than the minimum validity left; requests wait.
    Expired,
    /// A server answered 401 to a request carrying the token.
    Rejected,
}

impl RefreshReason {
    /// Every reason, in the order `stats` reports them.
    pub(crate) const ALL: [RefreshReason; 4] = [
        RefreshReason::Initial,
        RefreshReason::Ahead,
        RefreshReason::Expired,
        RefreshReason::Rejected,
    ];

    /// A short lowercase name, as used in `tracing` events.
    pub const fn as_str(self) -> &'static str {
        match self {
            RefreshReason::Initial => "initial",
            RefreshReason::Ahead => "ahead",
            RefreshReason::Expired => "expired",
            RefreshReason::Rejected => "rejected",
        }
    }

    pub(crate) const fn index(self) -> usize {
        match self {
            RefreshReason::Initial => 0,
            RefreshReason::Ahead => 1,
            RefreshReason::Expired => 2,
            RefreshReason::Rejected => 3,
        }
    }
}

impl fmt::Display for RefreshReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a refresher is asked: why a token is wanted, and the token it would replace.
///
/// A provider with a refresh-token grant uses the previous token's
/// [refresh token](Token::expose_refresh_token); one without ignores it.
#[derive(Debug, Clone)]
pub struct TokenRequest {
    reason: RefreshReason,
    previous: Option<Token>,
}

impl TokenRequest {
    /// A request for a token, replacing `previous` if there is one.
    pub fn new(reason: RefreshReason, previous: Option<Token>) -> Self {
        TokenRequest { reason, previous }
    }

    /// Why the token is wanted.
    pub fn reason(&self) -> RefreshReason {
        self.reason
    }

    /// The token the new one replaces, if the cache holds one.
    pub fn previous(&self) -> Option<&Token> {
        self.previous.as_ref()
    }

    /// Takes the previous token out of the request.
    pub fn into_previous(self) -> Option<Token> {
        self.previous
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_value_is_bearer_and_sensitive() {
        let token = Token::bearer("abc.def-ghi_~+/=").unwrap();
        assert_eq!(token.authorization(), "Bearer abc.def-ghi_~+/=");
        assert!(token.authorization().is_sensitive());
        assert_eq!(token.expose_access_token(), "abc.def-ghi_~+/=");
    }

    #[test]
    fn rejects_what_cannot_be_a_header() {
        assert_eq!(Token::bearer("").unwrap_err(), InvalidToken::Empty);
        assert_eq!(
            Token::bearer("ab\ncd").unwrap_err(),
            InvalidToken::Character { at: 2 }
        );
        assert_eq!(
            Token::bearer("a\0").unwrap_err(),
            InvalidToken::Character { at: 1 }
        );
        assert_eq!(
            Token::bearer("two words").unwrap_err(),
            InvalidToken::Character { at: 3 }
        );
        assert_eq!(
            Token::bearer("café").unwrap_err(),
            InvalidToken::Character { at: 3 }
        );
    }

    #[test]
    fn debug_shows_no_secret() {
        let token = Token::bearer("access-SECRET")
            .unwrap()
            .expires_in(Duration::from_secs(60))
            .with_refresh_token("refresh-SECRET");
        let debug = format!(
            "{token:?} {:?}",
            TokenRequest::new(RefreshReason::Rejected, Some(token.clone()))
        );
        assert!(!debug.contains("SECRET"), "{debug}");
        assert!(debug.contains("REDACTED"));
    }
}
