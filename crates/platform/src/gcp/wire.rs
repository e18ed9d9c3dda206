//! The metadata server's token endpoint on the wire: its URL, the request, and what an
//! answer means.

use http::header::{HeaderValue, USER_AGENT};
use http::{Method, Request, StatusCode, Uri};
use tokio::time::Instant;

use super::error::{Malformed, MetadataError};
use tower_bearer::{RetryAfter, ServerAnswer, Token};
use tower_bearer_provider::{self as http_client, Answer, ExpiresIn, RequestBody, Secrets};

/// The header every metadata request carries, and the server requires (403 without it): it
/// proves the request was made on purpose, not by a server-side request forgery.
pub(super) const METADATA_FLAVOR: &str = "metadata-flavor";
const GOOGLE: HeaderValue = HeaderValue::from_static("Google");

/// How much of an error body an error keeps.
const MAX_TEXT: usize = 200;

/// `http://{host}/computeMetadata/v1/instance/service-accounts/{account}/token`, with
/// `?scopes=a,b` when there are scopes; `None` if `host` is not `host` or `host:port`.
///
/// The account is percent-encoded as a path segment (an email's `@` is left as it is, as
/// google-auth sends it), the scopes as a query value (`:`, `/` and the commas joining them
/// too, as Python's `urlencode` does).
pub(super) fn token_uri(host: &str, account: &str, scopes: &[String]) -> Option<Uri> {
    if host.is_empty()
        || host
            .bytes()
            .any(|b| b"/?#@\\".contains(&b) || !b.is_ascii_graphic())
    {
        return None;
    }
    let mut uri = format!(
        "http://{host}/computeMetadata/v1/instance/service-accounts/{}/token",
        encoded(account, b"@")
    );
    if !scopes.is_empty() {
        uri.push_str("?scopes=");
        uri.push_str(&encoded(&scopes.join(","), b""));
    }
    let uri: Uri = uri.parse().ok()?;
    // The whole host must have been the authority, nothing of it spilled over, and a port
    // must be a number (the URI parser takes any).
    let whole = uri.authority().map(|authority| authority.as_str()) == Some(host);
    let port = match host.rsplit_once(':') {
        // An IPv6 address's colons are inside its brackets.
        Some((_, port)) if !port.ends_with(']') => port.parse::<u16>().is_ok(),
        _ => true,
    };
    (whole && port).then_some(uri)
}

/// `value` with every byte but the unreserved ones (RFC 3986 §2.3) and `keep` as `%XX`.
fn encoded(value: &str, keep: &[u8]) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) || keep.contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// `GET uri` with `Metadata-Flavor: Google`.
pub(super) fn request<B: RequestBody>(uri: &Uri) -> Request<B> {
    let mut request = Request::new(http_client::body::<B>(bytes::Bytes::new()));
    *request.method_mut() = Method::GET;
    *request.uri_mut() = uri.clone();
    let headers = request.headers_mut();
    headers.insert(METADATA_FLAVOR, GOOGLE);
    headers.insert(USER_AGENT, http_client::USER_AGENT);
    request
}

/// What an answer from the token endpoint `uri` means: a token, or why there is none.
///
/// The answer's own `Metadata-Flavor` is not checked: Google's libraries check it only when
/// they probe for the server, never on a token answer; a body that is not a token answer is
/// refused anyway.
pub(super) fn token_from(answer: Answer, uri: &Uri, account: &str) -> Result<Token, MetadataError> {
    let Answer {
        status,
        headers,
        body,
        sent_at,
    } = answer;
    let url = http_client::shown_url(uri);
    if status.is_success() {
        let body = body?;
        return parse_token(&body, sent_at)
            .map_err(|error| MetadataError::Malformed { error, url });
    }
    let answer = ServerAnswer::new(status);
    if status == StatusCode::NOT_FOUND {
        return Err(MetadataError::UnknownAccount {
            account: account.to_owned(),
            hint: RetryAfter::permanent("no such service account").answered(answer),
            url,
        });
    }
    // The metadata server sends no `Retry-After` that we know of; a proxy in front may.
    let retry_after = match status {
        StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE => {
            http_client::retry_after(&headers, &["retry-after"]).map(|delay| {
                RetryAfter::new(delay, "the metadata server asked to wait").answered(answer.clone())
            })
        }
        _ => None,
    };
    // The request carries no secret; but a server (or a proxy) that put a token in an error
    // would have it printed with the error, so anything shaped like one goes.
    let message = body
        .ok()
        .and_then(|body| String::from_utf8(body.to_vec()).ok())
        .map(|text| {
            without_tokens(&http_client::server_text(
                text.trim(),
                &Secrets::new(),
                MAX_TEXT,
            ))
        })
        .filter(|text| !text.is_empty());
    Err(MetadataError::Status {
        status,
        message,
        retry_after,
        answer,
        url,
    })
}

/// `text` with every Google access token in it (`ya29.` and what follows, up to a character
/// no token has) replaced by `[REDACTED]`.
fn without_tokens(text: &str) -> String {
    const PREFIX: &str = "ya29.";
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(PREFIX) {
        out.push_str(&rest[..at]);
        out.push_str("[REDACTED]");
        // Past the prefix, whatever the token's characters: the loop always moves on.
        let token = &rest[at + PREFIX.len()..];
        let end = token
            .find(|c: char| !(c.is_ascii_alphanumeric() || "._-~+/=".contains(c)))
            .unwrap_or(token.len());
        rest = &token[end..];
    }
    out.push_str(rest);
    out
}

/// The token answer, `{"access_token","expires_in","token_type":"Bearer"}`, read as every
/// provider reads one ([`tower_bearer_provider::parse_token`]): `expires_in` is required, as
/// google-auth requires it, and `token_type` is `Bearer` in any case.
pub(super) fn parse_token(body: &[u8], sent_at: Instant) -> Result<Token, Malformed> {
    http_client::parse_bearer_token(body, sent_at, ExpiresIn::Required)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bytes::Bytes;
    use http::HeaderMap;
    use http_body_util::Full;

    use super::*;

    #[test]
    fn the_token_uri_encodes_the_account_and_the_scopes() {
        let uri = token_uri("metadata.google.internal", "default", &[]).unwrap();
        assert_eq!(
            uri,
            "http://metadata.google.internal/computeMetadata/v1/instance/service-accounts/default/token"
        );
        let scopes = [
            "https://www.googleapis.com/auth/cloud-platform".to_owned(),
            "openid".to_owned(),
        ];
        let uri = token_uri("127.0.0.1:8080", "sa@p.iam.gserviceaccount.com", &scopes).unwrap();
        assert_eq!(
            uri.path(),
            "/computeMetadata/v1/instance/service-accounts/sa@p.iam.gserviceaccount.com/token"
        );
        assert_eq!(
            uri.query(),
            Some("scopes=https%3A%2F%2Fwww.googleapis.com%2Fauth%2Fcloud-platform%2Copenid")
        );
        let odd = token_uri("[::1]:80", "a/b c?", &["x&y=z".to_owned()]).unwrap();
        assert_eq!(
            odd.path(),
            "/computeMetadata/v1/instance/service-accounts/a%2Fb%20c%3F/token"
        );
        assert_eq!(odd.query(), Some("scopes=x%26y%3Dz"));
    }

    #[test]
    fn a_host_is_host_or_host_and_port() {
        for good in [
            "metadata.google.internal",
            "169.254.169.254",
            "127.0.0.1:8080",
            "[::1]:80",
            "[::1]",
        ] {
            assert!(token_uri(good, "default", &[]).is_some(), "{good}");
        }
        for bad in [
            "",
            "http://127.0.0.1",
            "host/path",
            "user@host",
            "host?q",
            "a b",
            "host:port",
            "h\n",
        ] {
            assert!(token_uri(bad, "default", &[]).is_none(), "{bad:?}");
        }
    }

    #[tokio::test]
    async fn the_request_is_a_get_with_the_flavor_header() {
        let uri = token_uri("127.0.0.1:1", "default", &[]).unwrap();
        let request: Request<Full<Bytes>> = request(&uri);
        assert_eq!(request.method(), Method::GET);
        assert_eq!(request.headers()[METADATA_FLAVOR], "Google");
        assert!(
            request.headers()[USER_AGENT]
                .to_str()
                .unwrap()
                .starts_with("tower-bearer/")
        );
    }

    fn answer(status: u16, headers: HeaderMap, body: &str) -> Answer {
        Answer {
            status: StatusCode::from_u16(status).unwrap(),
            headers,
            body: Ok(Bytes::copy_from_slice(body.as_bytes())),
            sent_at: Instant::now(),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn answers_and_what_they_mean() {
        let uri = token_uri("127.0.0.1:1", "default", &[]).unwrap();
        let body = r#"{"access_token":"ya29.a","expires_in":3599,"token_type":"Bearer"}"#;
        let token = token_from(answer(200, HeaderMap::new(), body), &uri, "default").unwrap();
        assert_eq!(token.authorization(), "Bearer ya29.a");
        assert_eq!(
            token.expiry(),
            Some(Instant::now() + Duration::from_secs(3599))
        );

        let unknown = token_from(answer(404, HeaderMap::new(), "<html>"), &uri, "x@y").unwrap_err();
        assert!(
            matches!(&unknown, MetadataError::UnknownAccount { account, hint, .. }
            if account == "x@y" && hint.delay().is_none())
        );
        assert_eq!(
            ServerAnswer::find(&unknown).map(ServerAnswer::status),
            Some(StatusCode::NOT_FOUND)
        );
        assert!(!unknown.is_retryable());

        let mut headers = HeaderMap::new();
        headers.insert("retry-after", HeaderValue::from_static("7"));
        let busy =
            token_from(answer(429, headers, "Too Many Requests\n"), &uri, "default").unwrap_err();
        assert!(busy.is_retryable());
        assert_eq!(
            busy.to_string(),
            format!(
                "{} answered 429 Too Many Requests: Too Many Requests",
                http_client::shown_url(&uri)
            )
        );
        assert_eq!(
            RetryAfter::find(&busy).and_then(RetryAfter::delay),
            Some(Duration::from_secs(7))
        );

        for (status, retried) in [
            (408, true),
            (500, true),
            (503, true),
            (504, true),
            (502, false),
            (403, false),
            (400, false),
        ] {
            let error =
                token_from(answer(status, HeaderMap::new(), ""), &uri, "default").unwrap_err();
            assert_eq!(error.is_retryable(), retried, "{status}");
            assert!(
                matches!(&error, MetadataError::Status { message: None, .. }),
                "{error:?}"
            );
        }
    }

    #[test]
    fn tokens_in_a_servers_text_are_redacted() {
        assert_eq!(
            without_tokens("bad ya29.a0-b_c.d~e+f/g= here; ya29.x"),
            "bad [REDACTED] here; [REDACTED]"
        );
        assert_eq!(without_tokens("no token"), "no token");
    }

    #[test]
    fn malformed_tokens_name_the_member_never_the_value() {
        for (body, expected) in [
            ("<html>SECRET</html>", "NotJson("),
            (
                r#"{"access_token":"SECRET","expires_in":1,"token_type":"mac"}"#,
                "TokenType",
            ),
            (
                r#"{"access_token":"SECRET","token_type":"Bearer"}"#,
                "Missing(\"expires_in\")",
            ),
            (
                r#"{"access_token":"SECRET","expires_in":"60","token_type":"Bearer"}"#,
                "ExpiresIn",
            ),
            (
                r#"{"access_token":"SEC RET","expires_in":1,"token_type":"Bearer"}"#,
                "AccessToken(",
            ),
        ] {
            let error = parse_token(body.as_bytes(), Instant::now()).unwrap_err();
            let printed = format!("{error:?} {error}");
            assert!(printed.starts_with(expected), "{body}: {printed}");
            assert!(
                !printed.contains("SECRET") && !printed.contains("SEC RET"),
                "{printed}"
            );
        }
    }
}
