//! The token endpoint's address.

use http::Uri;

/// The token endpoint, as a URI to send to and as the text a client assertion's `aud` names.
#[derive(Debug, Clone)]
pub(super) struct TokenEndpoint {
    pub(super) uri: Uri,
    pub(super) url: String,
}

impl TokenEndpoint {
    /// An absolute `http` or `https` URI with a host, or `None`.
    pub(super) fn parse(url: &str) -> Option<Self> {
        let uri: Uri = url.parse().ok()?;
        let scheme = uri.scheme_str()?;
        if !(scheme.eq_ignore_ascii_case("https") || scheme.eq_ignore_ascii_case("http"))
            || uri.host().is_none_or(str::is_empty)
        {
            return None;
        }
        Some(TokenEndpoint {
            uri,
            url: url.to_owned(),
        })
    }
}
