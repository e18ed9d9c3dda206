//! The challenges of a `WWW-Authenticate` field (RFC 9110 §11.6.1), read without copying.
//!
//! ```text
//! WWW-Authenticate = #challenge
//! challenge        = auth-scheme [ 1*SP ( token68 / #auth-param ) ]
//! auth-param       = token BWS "=" BWS ( token / quoted-string )
//! token68          = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
//! ```
//!
//! One field line may hold several challenges, and a response several field lines; commas
//! separate both the challenges and a challenge's parameters, so whether a comma ends a
//! challenge is only known from what follows it: `token BWS "="` is one more parameter,
//! anything else the next challenge's scheme. Empty list elements are skipped, as RFC 9110
//! §5.6.1 asks of a recipient.
//!
//! Leniency, where it cannot change what a well-formed field means: a tab counts as a space
//! wherever whitespace is allowed, and parameters after a comma that directly follows the
//! scheme (`Basic, realm="x"`) belong to that scheme, as if the space were there.
//!
//! Reading the challenges never panics and never allocates, whatever the bytes; a parameter's
//! value is copied only when it is asked for and must be unescaped, or is not UTF-8.

use std::borrow::Cow;

use http::header::{ValueIter, WWW_AUTHENTICATE};
use http::{HeaderMap, HeaderValue};

#[cfg(any(test, fuzzing))]
pub(crate) mod promises;
#[cfg(test)]
mod tests;

/// Every challenge of every `WWW-Authenticate` field line in `headers`, in order.
///
/// A field line that breaks the grammar yields one error where it breaks, and nothing more:
/// what follows cannot be told apart reliably. The next field line is read as usual.
pub(crate) fn challenges(headers: &HeaderMap) -> Challenges<'_> {
    Challenges {
        lines: headers.get_all(WWW_AUTHENTICATE).iter(),
        line: FieldLine::new(b""),
    }
}

/// The challenges of one field value.
#[cfg(any(test, fuzzing))]
pub(crate) fn parse(value: &[u8]) -> FieldLine<'_> {
    FieldLine::new(value)
}

/// The field value breaks RFC 9110's grammar for `WWW-Authenticate`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct InvalidChallenge;

/// One challenge: its scheme, and either a token68 or parameters (or neither).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Challenge<'a> {
    scheme: &'a str,
    token68: Option<&'a str>,
    /// The parameters as sent, already checked: read again on demand, so that a challenge
    /// nobody asks about costs no copy and no allocation.
    params: &'a [u8],
}

impl<'a> Challenge<'a> {
    /// The auth-scheme as sent; compare it with `eq_ignore_ascii_case`.
    pub(crate) fn scheme(&self) -> &'a str {
        self.scheme
    }

    /// The token68 that follows the scheme, if that is what follows it.
    #[cfg(any(test, fuzzing))]
    pub(crate) fn token68(&self) -> Option<&'a str> {
        self.token68
    }

    /// The value of the parameter `name` (any case), unescaped; the first one if a server
    /// sent it twice.
    pub(crate) fn param(&self, name: &str) -> Option<Cow<'a, str>> {
        RawParams::new(self.params)
            .find(|(found, _)| found.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, value)| value.text())
    }

    /// The parameters, names as sent and values unescaped, in order.
    #[cfg(any(test, fuzzing))]
    pub(crate) fn params(&self) -> impl Iterator<Item = (&'a str, Cow<'a, str>)> + use<'a> {
        RawParams::new(self.params).map(|(name, value)| (ascii(name), value.text()))
    }
}

/// The challenges of every `WWW-Authenticate` field line of a response; see [`challenges`].
pub(crate) struct Challenges<'a> {
    lines: ValueIter<'a, HeaderValue>,
    line: FieldLine<'a>,
}

impl<'a> Iterator for Challenges<'a> {
    type Item = Result<Challenge<'a>, InvalidChallenge>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(challenge) = self.line.next() {
                return Some(challenge);
            }
            self.line = FieldLine::new(self.lines.next()?.as_bytes());
        }
    }
}

/// The challenges of one field line; after an error, nothing.
pub(crate) struct FieldLine<'a> {
    cursor: Cursor<'a>,
}

impl<'a> FieldLine<'a> {
    fn new(value: &'a [u8]) -> Self {
        FieldLine {
            cursor: Cursor {
                bytes: value,
                at: 0,
            },
        }
    }

    fn challenge(&mut self) -> Result<Challenge<'a>, InvalidChallenge> {
        let cursor = &mut self.cursor;
        let scheme = ascii(cursor.token().ok_or(InvalidChallenge)?);
        let mut challenge = Challenge {
            scheme,
            token68: None,
            params: b"",
        };
        let spaces = cursor.skip_whitespace();
        match cursor.peek() {
            None => return Ok(challenge),
            // The end of this challenge, or (leniently) the first of its parameters.
            Some(b',') => {}
            Some(_) if spaces == 0 => return Err(InvalidChallenge),
            Some(_) => {
                if let Some(token68) = cursor.token68() {
                    challenge.token68 = Some(ascii(token68));
                    return Ok(challenge);
                }
            }
        }
        let start = cursor.at;
        let mut end = start;
        loop {
            let before = cursor.at;
            cursor.skip_separators();
            if !cursor.param_follows() {
                // The next challenge's scheme, or the end: leave the commas for `next`.
                cursor.at = before;
                break;
            }
            cursor.param()?;
            end = cursor.at;
            cursor.skip_whitespace();
            if !matches!(cursor.peek(), None | Some(b',')) {
                return Err(InvalidChallenge);
            }
        }
        challenge.params = cursor.bytes.get(start..end).unwrap_or_default();
        // Only a comma separates two challenges: `Bearer abc def` is not two.
        let mut ahead = *cursor;
        ahead.skip_whitespace();
        match ahead.peek() {
            None | Some(b',') => Ok(challenge),
            Some(_) => Err(InvalidChallenge),
        }
    }
}

impl<'a> Iterator for FieldLine<'a> {
    type Item = Result<Challenge<'a>, InvalidChallenge>;

    fn next(&mut self) -> Option<Self::Item> {
        self.cursor.skip_separators();
        self.cursor.peek()?;
        let challenge = self.challenge();
        if challenge.is_err() {
            self.cursor.at = self.cursor.bytes.len();
        }
        Some(challenge)
    }
}

/// The parameters of a challenge already checked by [`FieldLine`].
struct RawParams<'a> {
    cursor: Cursor<'a>,
}

impl<'a> RawParams<'a> {
    fn new(params: &'a [u8]) -> Self {
        RawParams {
            cursor: Cursor {
                bytes: params,
                at: 0,
            },
        }
    }
}

impl<'a> Iterator for RawParams<'a> {
    type Item = (&'a [u8], Value<'a>);

    fn next(&mut self) -> Option<Self::Item> {
        self.cursor.skip_separators();
        self.cursor.peek()?;
        // Cannot fail on what `FieldLine` accepted; stop rather than trust it blindly.
        let param = self.cursor.param().ok();
        if param.is_none() {
            self.cursor.at = self.cursor.bytes.len();
        }
        param
    }
}

/// A parameter's value as sent.
#[derive(Clone, Copy)]
enum Value<'a> {
    Token(&'a [u8]),
    /// Between the quotes, quoted-pairs still escaped.
    Quoted(&'a [u8]),
}

impl<'a> Value<'a> {
    fn text(self) -> Cow<'a, str> {
        match self {
            Value::Token(token) => Cow::Borrowed(ascii(token)),
            Value::Quoted(quoted) if !quoted.contains(&b'\\') => String::from_utf8_lossy(quoted),
            Value::Quoted(quoted) => {
                let mut unescaped = Vec::with_capacity(quoted.len());
                let mut bytes = quoted.iter();
                while let Some(&byte) = bytes.next() {
                    let byte = if byte == b'\\' {
                        bytes.next().copied()
                    } else {
                        Some(byte)
                    };
                    unescaped.extend(byte);
                }
                match String::from_utf8(unescaped) {
                    Ok(text) => Cow::Owned(text),
                    Err(error) => {
                        Cow::Owned(String::from_utf8_lossy(error.as_bytes()).into_owned())
                    }
                }
            }
        }
    }
}

/// A position in a field value, and the grammar's pieces read from it.
#[derive(Clone, Copy)]
struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    fn rest(&self) -> &'a [u8] {
        self.bytes.get(self.at..).unwrap_or_default()
    }

    /// Skips bytes while `keep` holds; returns them.
    fn take_while(&mut self, keep: impl Fn(u8) -> bool) -> &'a [u8] {
        let rest = self.rest();
        let len = rest.iter().position(|&b| !keep(b)).unwrap_or(rest.len());
        self.at += len;
        rest.get(..len).unwrap_or_default()
    }

    /// OWS; returns how much there was.
    fn skip_whitespace(&mut self) -> usize {
        self.take_while(is_whitespace).len()
    }

    /// Whitespace and commas: the gaps between list elements, empty elements included.
    fn skip_separators(&mut self) {
        self.take_while(|b| b == b',' || is_whitespace(b));
    }

    fn token(&mut self) -> Option<&'a [u8]> {
        Some(self.take_while(is_tchar)).filter(|token| !token.is_empty())
    }

    /// A token68, if one stands here alone up to the end of the element; else nothing is read.
    fn token68(&mut self) -> Option<&'a [u8]> {
        let start = self.at;
        let mut ahead = *self;
        let chars = ahead.take_while(is_token68_char).len();
        let padding = ahead.take_while(|b| b == b'=').len();
        let end = ahead.at;
        ahead.skip_whitespace();
        if chars == 0 || !matches!(ahead.peek(), None | Some(b',')) {
            return None;
        }
        self.at = end;
        self.bytes.get(start..start + chars + padding)
    }

    /// Whether `token BWS "="` comes next, without reading it.
    fn param_follows(&self) -> bool {
        let mut ahead = *self;
        ahead.token().is_some() && {
            ahead.skip_whitespace();
            ahead.peek() == Some(b'=')
        }
    }

    /// `token BWS "=" BWS ( token / quoted-string )`
    fn param(&mut self) -> Result<(&'a [u8], Value<'a>), InvalidChallenge> {
        let name = self.token().ok_or(InvalidChallenge)?;
        self.skip_whitespace();
        if self.peek() != Some(b'=') {
            return Err(InvalidChallenge);
        }
        self.at += 1;
        self.skip_whitespace();
        let value = if self.peek() == Some(b'"') {
            Value::Quoted(self.quoted_string()?)
        } else {
            Value::Token(self.token().ok_or(InvalidChallenge)?)
        };
        Ok((name, value))
    }

    /// A quoted-string, the cursor on its opening quote; returns what is between the quotes.
    fn quoted_string(&mut self) -> Result<&'a [u8], InvalidChallenge> {
        let start = self.at + 1;
        let mut at = start;
        loop {
            match self.bytes.get(at) {
                Some(b'"') => break,
                Some(b'\\') => match self.bytes.get(at + 1) {
                    Some(&escaped) if is_quoted_pair_char(escaped) => at += 2,
                    _ => return Err(InvalidChallenge),
                },
                Some(&byte) if is_qdtext(byte) => at += 1,
                _ => return Err(InvalidChallenge),
            }
        }
        self.at = at + 1;
        self.bytes.get(start..at).ok_or(InvalidChallenge)
    }
}

/// Tokens are ASCII by construction, so this never falls back to the empty string.
fn ascii(token: &[u8]) -> &str {
    std::str::from_utf8(token).unwrap_or_default()
}

fn is_whitespace(byte: u8) -> bool {
    byte == b' ' || byte == b'\t'
}

/// tchar (RFC 9110 §5.6.2).
fn is_tchar(byte: u8) -> bool {
    CLASSES[usize::from(byte)] & TCHAR != 0
}

fn is_token68_char(byte: u8) -> bool {
    CLASSES[usize::from(byte)] & TOKEN68 != 0
}

/// qdtext (RFC 9110 §5.6.4): HTAB, SP, VCHAR but `"` and `\`, obs-text.
fn is_qdtext(byte: u8) -> bool {
    CLASSES[usize::from(byte)] & QDTEXT != 0
}

const TCHAR: u8 = 1;
const TOKEN68: u8 = 2;
const QDTEXT: u8 = 4;

/// The classes of every byte, so that each byte of a challenge costs one lookup.
static CLASSES: [u8; 256] = {
    let mut classes = [0; 256];
    let mut i = 0;
    while i < classes.len() {
        let byte = i as u8;
        let alphanumeric = byte.is_ascii_alphanumeric();
        if alphanumeric
            || matches!(byte, b'!' | b'#'..=b'\'' | b'*' | b'+' | b'-' | b'.' | b'^'..=b'`' | b'|' | b'~')
        {
            classes[i] |= TCHAR;
        }
        if alphanumeric || matches!(byte, b'-' | b'.' | b'_' | b'~' | b'+' | b'/') {
            classes[i] |= TOKEN68;
        }
        if matches!(byte, b'\t' | b' ' | 0x21 | 0x23..=0x5B | 0x5D..=0x7E | 0x80..=0xFF) {
            classes[i] |= QDTEXT;
        }
        i += 1;
    }
    classes
};

/// What may follow a backslash in a quoted-pair: HTAB, SP, VCHAR, obs-text.
fn is_quoted_pair_char(byte: u8) -> bool {
    matches!(byte, b'\t' | 0x20..=0x7E | 0x80..=0xFF)
}
