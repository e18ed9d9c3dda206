//! The secrets a request carries, in every form the wire gives them, and a server's text made
//! safe to keep in an error.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use secrecy::{ExposeSecret, SecretString};

/// The secrets one request carries (a client secret, an API key, an assertion, a refresh or
/// subject token), to redact from whatever the server answers.
///
/// A server that echoes its request in an error echoes it as it received it, so each secret
/// is redacted in every form a request gives it: as it is, form-urlencoded (a form body:
/// `CS%2Bs3cr%2Fet`), JSON-escaped (a JSON body), and, for a client id and secret sent with
/// HTTP Basic, the header's base64. Those forms are made here and nowhere else, and only
/// when a server's text is cleaned ([`server_text`]): a request that succeeds never makes
/// them.
///
/// ```
/// use tower_bearer_provider::{Secrets, server_text};
///
/// let mut secrets = Secrets::new();
/// secrets.push("s3cr+t/key");
/// let echo = r#"bad client_secret=s3cr%2Bt%2Fkey in {"apiKey":"s3cr+t/key"}"#;
/// assert_eq!(
///     server_text(echo, &secrets, 200),
///     r#"bad client_secret=[REDACTED] in {"apiKey":"[REDACTED]"}"#
/// );
/// ```
#[derive(Default)]
pub struct Secrets<'a> {
    secrets: Vec<Secret<'a>>,
}

enum Secret<'a> {
    Borrowed(&'a str),
    /// Made for this request (a client assertion): zeroised when the request is done.
    Owned(SecretString),
    /// A client id and secret sent as `Authorization: Basic`: the secret is redacted in all its
    /// forms, and the header's credentials too.
    Basic {
        client_id: &'a str,
        secret: &'a str,
    },
}

impl<'a> Secrets<'a> {
    /// No secrets: a server's text is only cleaned and cut.
    pub const fn new() -> Self {
        Secrets {
            secrets: Vec::new(),
        }
    }

    /// A secret the request carries (empty ones are skipped).
    pub fn push(&mut self, secret: &'a str) {
        self.secrets.push(Secret::Borrowed(secret));
    }

    /// A secret made for this request, kept (and zeroised on drop) as long as the request.
    pub fn push_owned(&mut self, secret: String) {
        self.secrets.push(Secret::Owned(SecretString::from(secret)));
    }

    /// A client id and secret the request sends as HTTP Basic credentials
    /// ([`basic_credentials`]).
    pub fn push_basic(&mut self, client_id: &'a str, secret: &'a str) {
        self.secrets.push(Secret::Basic { client_id, secret });
    }

    /// Every form of every secret, without control characters (as the text they are looked
    /// for in), longest first: a form inside a longer one (the secret inside its own
    /// JSON-escaped form) must not break the longer one's match.
    fn forms(&self) -> Vec<SecretString> {
        let mut forms: Vec<SecretString> = Vec::new();
        let mut add = |form: String| {
            let form: String = form.chars().filter(|c| !c.is_control()).collect();
            if !form.is_empty() && !forms.iter().any(|f| f.expose_secret() == form) {
                forms.push(SecretString::from(form));
            }
        };
        for secret in &self.secrets {
            let raw = match secret {
                Secret::Borrowed(secret) => *secret,
                Secret::Owned(secret) => secret.expose_secret(),
                Secret::Basic { client_id, secret } => {
                    add(basic_credentials(client_id, secret));
                    secret
                }
            };
            if raw.is_empty() {
                continue;
            }
            add(raw.to_owned());
            add(form_urlencoded::byte_serialize(raw.as_bytes()).collect());
            let json = serde_json::to_string(raw).expect("a string always serializes");
            add(json[1..json.len() - 1].to_owned());
        }
        forms.sort_by_key(|form| std::cmp::Reverse(form.expose_secret().len()));
        forms
    }
}

/// The secrets `iter` gives, each as [`Secrets::push`] takes it.
impl<'a> FromIterator<&'a str> for Secrets<'a> {
    fn from_iter<I: IntoIterator<Item = &'a str>>(iter: I) -> Self {
        Secrets {
            secrets: iter.into_iter().map(Secret::Borrowed).collect(),
        }
    }
}

/// The credentials of an HTTP Basic header for `client_id` and `secret` as RFC 6749 §2.3.1
/// has them: each form-urlencoded (Appendix B), then joined with `:` and base64-encoded.
/// Clients that skip the first step are refused by servers that follow it as soon as a
/// secret holds a `+`, `%`, `:` or space.
///
/// ```
/// assert_eq!(
///     tower_bearer_provider::basic_credentials("client:1", "a b"),
///     "Y2xpZW50JTNBMTphK2I=" // base64("client%3A1:a+b")
/// );
/// ```
pub fn basic_credentials(client_id: &str, secret: &str) -> String {
    let mut credentials = String::with_capacity(client_id.len() + secret.len() + 1);
    credentials.extend(form_urlencoded::byte_serialize(client_id.as_bytes()));
    credentials.push(':');
    credentials.extend(form_urlencoded::byte_serialize(secret.as_bytes()));
    let credentials = SecretString::from(credentials);
    STANDARD.encode(credentials.expose_secret())
}

/// A server's text (an error description, a problem title) made safe to keep in an error
/// that ends up in logs: no control characters (no forged log lines), no echo of any of
/// `secrets` in any of their forms, at most `max` characters. Cut last, so that no prefix of
/// a long secret survives the redaction.
pub fn server_text(text: &str, secrets: &Secrets<'_>, max: usize) -> String {
    let mut text: String = text.chars().filter(|c| !c.is_control()).collect();
    if !secrets.secrets.is_empty() {
        for form in secrets.forms() {
            if text.contains(form.expose_secret()) {
                text = text.replace(form.expose_secret(), "[REDACTED]");
            }
        }
    }
    match text.char_indices().nth(max) {
        Some((cut, _)) => text[..cut].to_owned(),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(secret: &str) -> Secrets<'_> {
        Secrets::from_iter([secret])
    }

    #[test]
    fn server_text_is_clean_redacted_and_capped() {
        let secrets = Secrets::from_iter(["", "KEY"]);
        assert_eq!(
            server_text("a\u{7}b KEY c KEY", &secrets, 100),
            "ab [REDACTED] c [REDACTED]"
        );
        // A control character inside the secret does not hide it from the redaction.
        assert_eq!(server_text("xK\nEYx", &one("KEY"), 100), "x[REDACTED]x");
        assert_eq!(server_text("ééééé", &Secrets::new(), 3), "ééé");
        let mut two = one("A1");
        two.push_owned("B2".to_owned());
        assert_eq!(
            server_text("two secrets: A1 B2", &two, 100),
            "two secrets: [REDACTED] [REDACTED]"
        );
    }

    #[test]
    fn every_wire_form_is_redacted() {
        let secret = "CS+s3cr/et&=x y\"q\\\u{1}";
        let secrets = one(secret);
        for echo in [
            secret.to_owned(),
            "CS%2Bs3cr%2Fet%26%3Dx+y%22q%5C%01".to_owned(),
            serde_json::to_string(secret).unwrap(),
        ] {
            let text = server_text(&format!("<{echo}>"), &secrets, 200);
            assert!(
                text == "<[REDACTED]>" || text == "<\"[REDACTED]\">",
                "{echo}: {text}"
            );
        }

        let mut basic = Secrets::new();
        basic.push_basic("id", secret);
        let header = format!("Basic {}", basic_credentials("id", secret));
        assert_eq!(server_text(&header, &basic, 200), "Basic [REDACTED]");
        assert_eq!(server_text(secret, &basic, 200), "[REDACTED]");
    }

    /// A form may hold another (`50%` inside its form-urlencoded `50%25`): the longer goes
    /// first, or what it adds would be left beside the redaction.
    #[test]
    fn the_longest_form_goes_first() {
        assert_eq!(server_text("p=50%25", &one("50%"), 200), "p=[REDACTED]");
    }

    #[test]
    fn basic_form_urlencodes_before_base64() {
        let encoded = basic_credentials("client:basic", "basic+secret/with %reserved:chars&=");
        let decoded = String::from_utf8(STANDARD.decode(encoded).unwrap()).unwrap();
        assert_eq!(
            decoded,
            "client%3Abasic:basic%2Bsecret%2Fwith+%25reserved%3Achars%26%3D"
        );
    }
}
