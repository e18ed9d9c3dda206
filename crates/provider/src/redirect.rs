//! A provider never follows a redirect: what says an answer came from elsewhere than the URL
//! asked, and the error that says so.
//!
//! A token request carries the client's credentials (a client secret, an assertion, a refresh
//! token, an API key), and a discovery answer says where to send them: an answer that another
//! URL gave is not the server's, whoever sent the request on. hyper-util's client never
//! follows a redirect, and its 3xx reaches the provider as it is; tower-http's
//! `FollowRedirect` and reqwest do follow, and say which URL answered (tower-http's
//! [`RequestUri`] extension, which [`ClientService`](crate::reqwest::ClientService) sets from
//! reqwest's `Response::url`).

use std::error::Error;
use std::fmt;

use http::header::LOCATION;
use http::{Response, StatusCode, Uri};
use tower_http::follow_redirect::RequestUri;

use crate::shown_url;

/// A provider's request was answered by a redirect, or by another URL than the one it was
/// sent to (a client that follows redirects sent it on): refused, since a provider never
/// follows a redirect. Nothing the other URL answered is used.
///
/// Both URLs are shown without user info or query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redirected {
    from: String,
    to: String,
}

impl Redirected {
    /// The URL the request was sent to.
    pub fn from(&self) -> &str {
        &self.from
    }

    /// Where it was sent on: the URL that answered, or the redirect's `Location`.
    pub fn to(&self) -> &str {
        &self.to
    }
}

impl fmt::Display for Redirected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} redirected the request to {} (a provider never follows a redirect)",
            self.from, self.to
        )
    }
}

impl Error for Redirected {}

/// `Err` if `response` to a request for `asked` came from another URL, or is a redirect.
pub(crate) fn check<T>(asked: &Uri, response: &Response<T>) -> Result<(), Redirected> {
    let redirected = |to: &Uri| Redirected {
        from: shown_url(asked),
        to: shown_url(to),
    };
    if let Some(RequestUri(answered)) = response.extensions().get::<RequestUri>() {
        if !same_resource(asked, answered) {
            return Err(redirected(answered));
        }
    }
    let is_redirect = matches!(
        response.status(),
        StatusCode::MOVED_PERMANENTLY
            | StatusCode::FOUND
            | StatusCode::SEE_OTHER
            | StatusCode::TEMPORARY_REDIRECT
            | StatusCode::PERMANENT_REDIRECT
    );
    let location = response
        .headers()
        .get(LOCATION)
        .and_then(|location| location.to_str().ok())
        .and_then(|location| resolve(asked, location));
    match location {
        Some(location) if is_redirect => Err(redirected(&location)),
        _ => Ok(()),
    }
}

/// `location` as an absolute URI: as it is, on `base`'s scheme (`//host/path`), or on its
/// origin (a path). A relative path is shown from the root: the message only needs the place.
fn resolve(base: &Uri, location: &str) -> Option<Uri> {
    if let Some(rest) = location.strip_prefix("//") {
        return format!("{}://{rest}", base.scheme_str()?).parse().ok();
    }
    if let Ok(uri) = location.parse::<Uri>() {
        if uri.scheme().is_some() {
            return Some(uri);
        }
    }
    let path = match location.starts_with('/') {
        true => location.parse().ok()?,
        false => format!("/{location}").parse().ok()?,
    };
    let mut parts = base.clone().into_parts();
    parts.path_and_query = Some(path);
    Uri::from_parts(parts).ok()
}

/// Whether two absolute URIs name the same resource, as clients write them differently:
/// scheme and host in any case, a port the scheme's default or left out, an empty path `/`.
fn same_resource(a: &Uri, b: &Uri) -> bool {
    let scheme = |uri: &Uri| uri.scheme_str().map(str::to_ascii_lowercase);
    let port = |uri: &Uri| {
        uri.port_u16()
            .or_else(|| match uri.scheme_str()?.to_ascii_lowercase().as_str() {
                "http" => Some(80),
                "https" => Some(443),
                _ => None,
            })
    };
    fn path(uri: &Uri) -> &str {
        match uri.path() {
            "" => "/",
            path => path,
        }
    }
    scheme(a) == scheme(b)
        && a.host().map(str::to_ascii_lowercase) == b.host().map(str::to_ascii_lowercase)
        && port(a) == port(b)
        && path(a) == path(b)
        && a.query() == b.query()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, location: Option<&str>, answered: Option<&str>) -> Response<()> {
        let mut response = Response::builder().status(status);
        if let Some(location) = location {
            response = response.header(LOCATION, location);
        }
        let mut response = response.body(()).unwrap();
        if let Some(answered) = answered {
            response
                .extensions_mut()
                .insert(RequestUri(answered.parse().unwrap()));
        }
        response
    }

    fn checked(response: &Response<()>) -> Result<(), Redirected> {
        check(
            &"https://as.example/oauth/token?p=x".parse().unwrap(),
            response,
        )
    }

    #[test]
    fn an_answer_from_the_url_asked_is_the_answer() {
        for answered in [
            None,
            Some("https://as.example/oauth/token?p=x"),
            Some("HTTPS://AS.example:443/oauth/token?p=x"),
        ] {
            assert_eq!(
                checked(&answer(200, None, answered)),
                Ok(()),
                "{answered:?}"
            );
        }
        // Not a redirect: a 3xx without a place to go, a 304, a Location on a 201.
        for response in [
            answer(302, None, None),
            answer(304, Some("https://b.example/"), None),
            answer(201, Some("https://b.example/"), None),
        ] {
            assert_eq!(checked(&response), Ok(()));
        }
    }

    #[test]
    fn an_answer_from_elsewhere_names_both_urls_without_their_secrets() {
        let followed = checked(&answer(
            200,
            None,
            Some("https://user:pass@b.example:8443/token?code=secret"),
        ))
        .unwrap_err();
        assert_eq!(followed.from(), "https://as.example/oauth/token");
        assert_eq!(followed.to(), "https://b.example:8443/token");
        assert_eq!(
            followed.to_string(),
            "https://as.example/oauth/token redirected the request to \
             https://b.example:8443/token (a provider never follows a redirect)"
        );
        for (status, location, to) in [
            (302, "https://b.example/t?x=1", "https://b.example/t"),
            (307, "/elsewhere", "https://as.example/elsewhere"),
            (308, "other", "https://as.example/other"),
            (307, "//b.example/t", "https://b.example/t"),
            (
                301,
                "http://as.example/oauth/token",
                "http://as.example/oauth/token",
            ),
            (
                303,
                "https://as.example/oauth/token",
                "https://as.example/oauth/token",
            ),
        ] {
            let redirected = checked(&answer(status, Some(location), None)).unwrap_err();
            assert_eq!(redirected.to(), to, "{status} {location}");
        }
        // Another query is another resource.
        assert!(
            checked(&answer(
                200,
                None,
                Some("https://as.example/oauth/token?p=y")
            ))
            .is_err()
        );
        assert!(
            checked(&answer(
                200,
                None,
                Some("http://as.example/oauth/token?p=x")
            ))
            .is_err()
        );
    }
}
