//! What the parser promises for any bytes, checked by the property tests and the fuzz target.

use std::fmt::Write;

use super::{Challenge, InvalidChallenge, is_tchar, is_token68_char, parse};

/// The whole field value, as RFC 9110 writes it (with this parser's two leniencies: a tab
/// wherever a space is required, and a comma right after the scheme before its parameters),
/// for `regex::bytes::Regex`: an oracle written apart from the parser, so that both must agree
/// on which values are well-formed.
pub(crate) const GRAMMAR: &str = concat!(
    r"(?-u)\A(?:[ \t]*,)*[ \t]*",
    r"(?:CHALLENGE(?:[ \t]*,(?:[ \t]*,)*[ \t]*CHALLENGE)*)?",
    r"(?:[ \t]*,)*[ \t]*\z",
);

/// What `CHALLENGE` stands for in [`GRAMMAR`].
pub(crate) const CHALLENGE: &str = concat!(
    // auth-scheme
    r"[!#$%&'*+.^_`|~0-9A-Za-z-]+",
    r"(?:",
    // 1*SP token68
    r"[ \t]+[A-Za-z0-9._~+/-]+=*",
    r"|",
    // 1*SP #auth-param, or the lenient comma
    r"(?:[ \t]+|[ \t]*,)(?:[ \t]*,)*[ \t]*PARAM(?:[ \t]*,(?:[ \t]*,)*[ \t]*PARAM)*",
    r")?",
);

/// What `PARAM` stands for in [`CHALLENGE`]: token BWS "=" BWS ( token / quoted-string ).
pub(crate) const PARAM: &str = concat!(
    r"[!#$%&'*+.^_`|~0-9A-Za-z-]+[ \t]*=[ \t]*",
    r"(?:[!#$%&'*+.^_`|~0-9A-Za-z-]+",
    r#"|"(?:[\t \x21\x23-\x5B\x5D-\x7E\x80-\xFF]|\\[\t\x20-\x7E\x80-\xFF])*")"#,
);

/// [`GRAMMAR`] with its parts put in.
pub(crate) fn grammar() -> String {
    GRAMMAR.replace("CHALLENGE", &CHALLENGE.replace("PARAM", PARAM))
}

/// A challenge with its parts copied out, to compare and to write back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OwnedChallenge {
    pub(crate) scheme: String,
    pub(crate) token68: Option<String>,
    pub(crate) params: Vec<(String, String)>,
}

impl OwnedChallenge {
    pub(crate) fn of(challenge: &Challenge<'_>) -> Self {
        OwnedChallenge {
            scheme: challenge.scheme().to_owned(),
            token68: challenge.token68().map(str::to_owned),
            params: challenge
                .params()
                .map(|(name, value)| (name.to_owned(), value.into_owned()))
                .collect(),
        }
    }
}

/// Every challenge of one field value, copied out, up to and including the first error.
pub(crate) fn read(value: &[u8]) -> Vec<Result<OwnedChallenge, InvalidChallenge>> {
    parse(value)
        .map(|challenge| challenge.map(|challenge| OwnedChallenge::of(&challenge)))
        .collect()
}

/// The challenges as one field value: every value quoted, `"` and `\` escaped.
pub(crate) fn format(challenges: &[OwnedChallenge]) -> String {
    let mut out = String::new();
    for (i, challenge) in challenges.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        out.push_str(&challenge.scheme);
        if let Some(token68) = &challenge.token68 {
            let _ = write!(out, " {token68}");
        }
        for (j, (name, value)) in challenge.params.iter().enumerate() {
            out.push_str(if j == 0 { " " } else { ", " });
            let _ = write!(out, "{name}=\"");
            for c in value.chars() {
                if c == '"' || c == '\\' {
                    out.push('\\');
                }
                out.push(c);
            }
            out.push('"');
        }
    }
    out
}

/// Reads `value` and panics if a promise is broken:
/// - an error is the last item;
/// - a scheme and a parameter name are tokens, a token68 is a token68, and a challenge has a
///   token68 or parameters, never both; no value holds an ASCII control but the tab;
/// - `param(name)`, in any case, is the first parameter of that name;
/// - what was read before an error, written back and read again, is read the same, whole.
///
/// Returns whether `value` was read whole, without an error.
pub(crate) fn check(value: &[u8]) -> bool {
    let items = read(value);
    let errors = items.iter().filter(|item| item.is_err()).count();
    assert!(errors <= 1, "more than one error in {items:?}");
    assert!(
        errors == 0 || items.last().is_some_and(Result::is_err),
        "an error that is not last: {items:?}"
    );
    for challenge in parse(value).map_while(Result::ok) {
        let owned = OwnedChallenge::of(&challenge);
        assert!(is_token(&owned.scheme), "scheme {:?}", owned.scheme);
        if let Some(token68) = &owned.token68 {
            let chars = token68.trim_end_matches('=');
            assert!(!chars.is_empty() && chars.bytes().all(is_token68_char));
            assert!(owned.params.is_empty());
        }
        for (name, value) in &owned.params {
            assert!(is_token(name), "parameter name {name:?}");
            let first = owned
                .params
                .iter()
                .find(|(other, _)| other.eq_ignore_ascii_case(name));
            let first = first.map(|(_, value)| value.as_str());
            assert_eq!(challenge.param(name).as_deref(), first);
            let upper = name.to_ascii_uppercase();
            assert_eq!(challenge.param(&upper).as_deref(), first);
            // obs-text may decode to anything, C1 controls included; ASCII controls but the
            // tab never reach a value.
            assert!(
                !value.chars().any(|c| c.is_ascii_control() && c != '\t'),
                "value {value:?}"
            );
        }
    }
    let read_before: Vec<OwnedChallenge> = items.into_iter().map_while(Result::ok).collect();
    let written = format(&read_before);
    let read_again = read(written.as_bytes());
    let read_again: Vec<_> = read_again
        .into_iter()
        .collect::<Result<_, _>>()
        .unwrap_or_else(|error| {
            panic!("{error:?} reading back {written:?}, written from {read_before:?}")
        });
    assert_eq!(read_again, read_before, "written as {written:?}");
    errors == 0
}

fn is_token(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(is_tchar)
}
