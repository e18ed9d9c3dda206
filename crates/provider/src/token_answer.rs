//! A token answer (RFC 6749 §5.1, and api.video's alike) read into a [`Token`]: one parser
//! for every provider, each saying only what is its own (how it reads `expires_in`, which
//! token types it takes).
//!
//! Bodies are parsed as generic JSON values and each member checked by hand, rather than
//! deserialized into structs: serde's type errors quote the offending value, which here may
//! be a token. A syntax error quotes nothing.

use std::error::Error;
use std::fmt;
use std::time::Duration;

use serde_json::{Map, Value};
use tokio::time::Instant;
use tower::BoxError;
use tower_bearer::{InvalidToken, Token};

use crate::{MAX_LIFETIME, expiry};

/// The longest `expires_in` string read as digits: more cannot be a lifetime, and the cap
/// keeps the arithmetic in range.
const MAX_DIGITS: usize = 19;

/// How a provider reads a token answer's `expires_in`, where servers differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpiresIn {
    /// A whole number of seconds of at least 1, as a JSON number, which must be there
    /// (api.video's schema).
    Required,
    /// A whole number of seconds of at least 1, as a JSON number or a string of digits
    /// (Entra ID v1 sends strings), or absent (RFC 6749 §5.1 makes it optional): then the
    /// token lives `default` (at most [`MAX_LIFETIME`]), or, with no default, until a server
    /// refuses it.
    Lenient {
        /// The lifetime of a token whose answer has no `expires_in`.
        default: Option<Duration>,
    },
}

/// Reads a successful token answer's `body` into a token, its lifetime counted from `sent_at`
/// and capped at [`MAX_LIFETIME`].
///
/// The members are checked in this order: the body is a JSON object; `token_type` is a
/// string; `expires_in` is what `expires_in` says (0 is refused rather than cached as a token
/// already expired); `access_token` is a string; then `token` makes the token of that type
/// (the provider's own checks: the token types it takes, the key it binds to), and
/// `refresh_token`, if present, must be a string (an empty one is none).
///
/// ```
/// use tokio::time::Instant;
/// use tower_bearer::Token;
/// use tower_bearer_provider::{ExpiresIn, Malformed, parse_token};
///
/// #[derive(Debug)]
/// enum MyError { Malformed(Malformed), NotBearer }
/// impl From<Malformed> for MyError {
///     fn from(malformed: Malformed) -> Self { MyError::Malformed(malformed) }
/// }
///
/// let body = br#"{"token_type":"Bearer","expires_in":"3600","access_token":"a.b.c"}"#;
/// let token = parse_token(body, Instant::now(), ExpiresIn::Lenient { default: None }, |token_type, access_token| {
///     if !token_type.eq_ignore_ascii_case("bearer") {
///         return Err(MyError::NotBearer);
///     }
///     Token::bearer(access_token).map_err(|_| MyError::NotBearer)
/// })?;
/// assert_eq!(token.authorization(), "Bearer a.b.c");
/// # Ok::<(), MyError>(())
/// ```
pub fn parse_token<E>(
    body: &[u8],
    sent_at: Instant,
    expires_in: ExpiresIn,
    token: impl FnOnce(&str, &str) -> Result<Token, E>,
) -> Result<Token, E>
where
    E: From<Malformed>,
{
    let mut members = Members::parse(body)?;
    let token_type = members.string("token_type")?;
    let lifetime = lifetime(&members, expires_in)?;
    let token = token(token_type, members.string("access_token")?)?;
    let token = match lifetime {
        Some(Lifetime::Seconds(seconds)) => token.expires_at(expiry(sent_at, seconds)),
        Some(Lifetime::Default(lifetime)) => token.expires_at(sent_at + lifetime.min(MAX_LIFETIME)),
        None => token,
    };
    // Moved, not copied, into the token's secret.
    match members.0.remove("refresh_token") {
        None | Some(Value::Null) => Ok(token),
        Some(Value::String(refresh)) if refresh.is_empty() => Ok(token),
        Some(Value::String(refresh)) => Ok(token.with_refresh_token(refresh)),
        Some(_) => Err(Malformed::NotAString("refresh_token").into()),
    }
}

/// A token answer from a server that issues bearer tokens and nothing else (api.video, GCP's
/// metadata server, Azure managed identity), read as [`parse_token`] reads every answer:
/// `token_type` must be `Bearer` in any case ([`Malformed::TokenType`]), and `access_token`
/// a value a header can carry ([`Malformed::AccessToken`]).
///
/// ```
/// use tokio::time::Instant;
/// use tower_bearer_provider::{ExpiresIn, Malformed, parse_bearer_token};
///
/// let body = br#"{"token_type":"bearer","expires_in":3600,"access_token":"a.b.c"}"#;
/// let token = parse_bearer_token(body, Instant::now(), ExpiresIn::Required)?;
/// assert_eq!(token.authorization(), "Bearer a.b.c");
/// let dpop = br#"{"token_type":"DPoP","expires_in":3600,"access_token":"a.b.c"}"#;
/// assert!(matches!(
///     parse_bearer_token(dpop, Instant::now(), ExpiresIn::Required),
///     Err(Malformed::TokenType)
/// ));
/// # Ok::<(), Malformed>(())
/// ```
pub fn parse_bearer_token(
    body: &[u8],
    sent_at: Instant,
    expires_in: ExpiresIn,
) -> Result<Token, Malformed> {
    parse_token(body, sent_at, expires_in, |token_type, access_token| {
        if !token_type.eq_ignore_ascii_case("bearer") {
            return Err(Malformed::TokenType);
        }
        Token::bearer(access_token).map_err(Malformed::AccessToken)
    })
}

enum Lifetime {
    Seconds(u64),
    Default(Duration),
}

fn lifetime(members: &Members, rule: ExpiresIn) -> Result<Option<Lifetime>, Malformed> {
    let seconds = match (members.get("expires_in"), rule) {
        (None, ExpiresIn::Required) => return Err(Malformed::Missing("expires_in")),
        (None, ExpiresIn::Lenient { default }) => return Ok(default.map(Lifetime::Default)),
        (Some(Value::Number(n)), _) => n.as_u64(),
        (Some(Value::String(digits)), ExpiresIn::Lenient { .. })
            if !digits.is_empty()
                && digits.len() <= MAX_DIGITS
                && digits.bytes().all(|b| b.is_ascii_digit()) =>
        {
            digits.parse().ok()
        }
        (Some(_), _) => None,
    };
    match seconds {
        // A token already expired is no token: caching it would only make requests wait.
        Some(0) | None => Err(Malformed::ExpiresIn),
        Some(seconds) => Ok(Some(Lifetime::Seconds(seconds))),
    }
}

/// A JSON object's members, read one by one: a token answer's, an error answer's, a metadata
/// document's.
#[derive(Debug, Clone)]
pub struct Members(Map<String, Value>);

impl Members {
    /// The body as a JSON object.
    pub fn parse(body: &[u8]) -> Result<Self, Malformed> {
        match serde_json::from_slice(body) {
            Ok(Value::Object(members)) => Ok(Members(members)),
            Ok(_) => Err(Malformed::NotAnObject),
            Err(error) => Err(Malformed::NotJson(error.into())),
        }
    }

    /// A member, if present and not `null`.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.0.get(name).filter(|value| !value.is_null())
    }

    /// A member that must be a string.
    pub fn string(&self, name: &'static str) -> Result<&str, Malformed> {
        match self.get(name) {
            None => Err(Malformed::Missing(name)),
            Some(Value::String(value)) => Ok(value),
            Some(_) => Err(Malformed::NotAString(name)),
        }
    }
}

/// What is wrong with an answer that claimed success, as far as every provider reads it
/// alike; each provider's own error says it in its own type, beside what is its own (a
/// token type it does not take).
///
/// It names the member at fault, never its value (which may be a token). Not
/// `#[non_exhaustive]`: each provider's error says every variant, and a new one must not go
/// unsaid.
#[derive(Debug)]
pub enum Malformed {
    /// The body is not JSON (an HTML page from a captive portal or a proxy, a truncated
    /// body). The source is the parser's syntax error, which quotes no input.
    NotJson(BoxError),
    /// The body is JSON, but not an object.
    NotAnObject,
    /// A member is missing, or `null`.
    Missing(&'static str),
    /// A member that must be a string is not one.
    NotAString(&'static str),
    /// `expires_in` is not a whole number of seconds of at least 1, in a form the provider
    /// takes ([`ExpiresIn`]).
    ExpiresIn,
    /// `token_type` is not `Bearer` (in any case), for a provider whose server issues nothing
    /// else ([`parse_bearer_token`]).
    TokenType,
    /// `access_token` could not be sent in an `Authorization` header (it is empty, or holds a
    /// space, a control character or a non-ASCII byte).
    AccessToken(InvalidToken),
}

impl fmt::Display for Malformed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Malformed::NotJson(_) => f.write_str("the body is not JSON"),
            Malformed::NotAnObject => f.write_str("the body is not a JSON object"),
            Malformed::Missing(member) => write!(f, "`{member}` is missing"),
            Malformed::NotAString(member) => write!(f, "`{member}` is not a string"),
            Malformed::ExpiresIn => {
                f.write_str("`expires_in` is not a whole number of seconds of at least 1")
            }
            Malformed::TokenType => f.write_str("`token_type` is not \"Bearer\""),
            Malformed::AccessToken(_) => f.write_str("`access_token` is not a valid bearer token"),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str, rule: ExpiresIn) -> Result<Token, Malformed> {
        parse_token(json.as_bytes(), Instant::now(), rule, |_, access_token| {
            Ok(Token::bearer(access_token).expect("a valid token"))
        })
    }

    const REQUIRED: ExpiresIn = ExpiresIn::Required;
    const LENIENT: ExpiresIn = ExpiresIn::Lenient { default: None };

    #[test]
    fn expires_in_as_each_rule_reads_it() {
        for (expires_in, required, lenient) in [
            ("3600", true, true),
            (r#""3600""#, false, true),
            ("0", false, false),
            ("-1", false, false),
            ("3600.5", false, false),
            ("1e3", false, false),
            (r#""""#, false, false),
            (r#""36 00""#, false, false),
            (r#""-5""#, false, false),
            (r#""0x10""#, false, false),
            // Rust's own parse takes a sign; a lifetime has none.
            (r#""+5""#, false, false),
            // Past the digits a lifetime can have, even when the number would be small.
            (r#""00000000000000000005""#, false, false),
            (r#""99999999999999999999""#, false, false),
            ("true", false, false),
            ("[]", false, false),
        ] {
            let json = format!(
                r#"{{"token_type":"Bearer","expires_in":{expires_in},"access_token":"a"}}"#
            );
            for (rule, ok) in [(REQUIRED, required), (LENIENT, lenient)] {
                match parse(&json, rule) {
                    Ok(_) => assert!(ok, "{expires_in} {rule:?}"),
                    Err(Malformed::ExpiresIn) => assert!(!ok, "{expires_in} {rule:?}"),
                    Err(other) => panic!("{expires_in} {rule:?}: {other:?}"),
                }
            }
        }
        for absent in [
            r#"{"token_type":"Bearer","access_token":"a"}"#,
            r#"{"token_type":"Bearer","expires_in":null,"access_token":"a"}"#,
        ] {
            assert!(matches!(
                parse(absent, REQUIRED),
                Err(Malformed::Missing("expires_in"))
            ));
            assert_eq!(parse(absent, LENIENT).unwrap().expiry(), None);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn lifetimes_count_from_the_send_and_are_capped() {
        let sent_at = Instant::now();
        let token = |json: &str, rule| {
            parse_token(json.as_bytes(), sent_at, rule, |_, a| {
                Ok::<_, Malformed>(Token::bearer(a).unwrap())
            })
            .unwrap()
            .expiry()
        };
        let hour = r#"{"token_type":"Bearer","expires_in":3600,"access_token":"a"}"#;
        assert_eq!(
            token(hour, REQUIRED),
            Some(sent_at + Duration::from_secs(3600))
        );
        let forever =
            r#"{"token_type":"Bearer","expires_in":18446744073709551615,"access_token":"a"}"#;
        assert_eq!(token(forever, REQUIRED), Some(sent_at + MAX_LIFETIME));
        let absent = r#"{"token_type":"Bearer","access_token":"a"}"#;
        let default = |lifetime| ExpiresIn::Lenient {
            default: Some(lifetime),
        };
        assert_eq!(
            token(absent, default(Duration::from_secs(300))),
            Some(sent_at + Duration::from_secs(300))
        );
        assert_eq!(
            token(absent, default(Duration::MAX)),
            Some(sent_at + MAX_LIFETIME)
        );
    }

    #[test]
    fn refresh_tokens_are_optional_and_empty_is_none() {
        let members = r#""token_type":"Bearer","access_token":"a""#;
        for extra in ["", r#","refresh_token":null"#, r#","refresh_token":"""#] {
            let token = parse(&format!("{{{members}{extra}}}"), LENIENT).unwrap();
            assert!(token.expose_refresh_token().is_none());
        }
        let token = parse(&format!(r#"{{{members},"refresh_token":"r1"}}"#), LENIENT).unwrap();
        assert_eq!(token.expose_refresh_token(), Some("r1"));
        assert!(matches!(
            parse(&format!(r#"{{{members},"refresh_token":7}}"#), LENIENT),
            Err(Malformed::NotAString("refresh_token"))
        ));
    }

    #[test]
    fn a_malformed_answer_says_what_is_wrong_and_keeps_the_json_error() {
        let not_json = parse("<html>", LENIENT).unwrap_err();
        assert_eq!(not_json.to_string(), "the body is not JSON");
        assert!(not_json.source().is_some());
        let missing = parse(r#"{"access_token":"a"}"#, LENIENT).unwrap_err();
        assert_eq!(missing.to_string(), "`token_type` is missing");
        assert!(missing.source().is_none());
    }

    #[test]
    fn errors_name_the_member_never_the_value() {
        let cases = [
            ("<html><body>Bad gateway</body></html>", "NotJson("),
            ("[1]", "NotAnObject"),
            (r#"{"access_token":"SECRET"}"#, "Missing(\"token_type\")"),
            (
                r#"{"token_type":"Bearer","access_token":7}"#,
                "NotAString(\"access_token\")",
            ),
            (
                r#"{"token_type":["SECRET"],"access_token":"a"}"#,
                "NotAString(\"token_type\")",
            ),
        ];
        for (json, expected) in cases {
            let error = parse(json, LENIENT).unwrap_err();
            let printed = format!("{error:?} {error}");
            assert!(printed.starts_with(expected), "{json}: {printed}");
            assert!(
                !printed.contains("SECRET") && !printed.contains("Bad gateway"),
                "{printed}"
            );
        }
    }
}
