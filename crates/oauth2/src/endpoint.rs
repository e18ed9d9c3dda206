//! The token endpoint's address.

use http::Uri;

/// The token endpoint, as a URI to send to and as the text a client assertion's `aud` names.
#[derive(Debug, Clone)]
pub(super) struct TokenEndpoint {
    pub(super) uri: Uri,
    pub(super) url: String,
}

impl TokenEndpoint {
    /// An absolute `http` or `https` URI with a host, or `None`. Not one with user info
    /// (`https://id:secret@…`): RFC 9110 §4.2.4 forbids it in these schemes, it would not be
    /// sent, and the URL is shown in `Debug` and errors, where credentials must not be.
    pub(super) fn parse(url: &str) -> Option<Self> {
        let uri: Uri = url.parse().ok()?;
        let scheme = uri.scheme_str()?;
        let authority = uri.authority()?;
        if !(scheme.eq_ignore_ascii_case("https") || scheme.eq_ignore_ascii_case("http"))
            || authority.host().is_empty()
            || authority.as_str().contains('@')
        {
            return None;
        }
        Some(TokenEndpoint {
            uri,
            url: url.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_endpoint_is_an_absolute_http_uri_with_a_host_and_no_user_info() {
        for good in [
            "https://as.example/oauth/token",
            "http://127.0.0.1:8080/token",
            "HTTPS://as.example/t",
        ] {
            let endpoint = TokenEndpoint::parse(good).expect(good);
            assert_eq!(endpoint.url, good);
        }
        for bad in [
            "/token",
            "as.example/token",
            "ftp://as.example/token",
            "https:///token",
            "https://client:secret@as.example/token",
            "https://client@as.example/token",
            "https://@as.example/token",
        ] {
            assert!(TokenEndpoint::parse(bad).is_none(), "{bad}");
        }
    }
}
