//! What a token request's body is made of, and the secrets it carries.

use secrecy::{ExposeSecret, SecretString};

/// An `application/x-www-form-urlencoded` body (RFC 6749 Appendix B).
pub(super) struct Form(form_urlencoded::Serializer<'static, String>);

impl Form {
    pub(super) fn new() -> Self {
        Form(form_urlencoded::Serializer::new(String::with_capacity(256)))
    }

    pub(super) fn pair(&mut self, name: &str, value: &str) {
        self.0.append_pair(name, value);
    }

    pub(super) fn finish(mut self) -> String {
        self.0.finish()
    }
}

/// The secrets one request carries, to redact from whatever the server answers.
#[derive(Default)]
pub(super) struct Secrets<'a> {
    borrowed: Vec<&'a str>,
    /// Made for this request (a client assertion); zeroised when the request is done.
    owned: Vec<SecretString>,
}

impl<'a> Secrets<'a> {
    pub(super) fn push(&mut self, secret: &'a str) {
        self.borrowed.push(secret);
    }

    pub(super) fn push_owned(&mut self, secret: String) {
        self.owned.push(SecretString::from(secret));
    }

    pub(super) fn all(&self) -> Vec<&str> {
        let owned = self.owned.iter().map(|secret| secret.expose_secret());
        self.borrowed.iter().copied().chain(owned).collect()
    }
}
