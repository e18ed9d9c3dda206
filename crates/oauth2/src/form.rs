//! What a token request's body is made of.

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
