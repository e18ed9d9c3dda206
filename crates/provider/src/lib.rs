//! What every `tower-bearer` token provider shares: the HTTP client it sends through, the
//! plumbing of a provider as a tower `Service`, and the steps of a token request they all take
//! — build the body, send it, refuse a redirect, read the answer within a cap, parse a token
//! answer, read a `Retry-After`, keep a server's text safe to log.
//!
//! A provider is a tower service from [`TokenRequest`](tower_bearer::TokenRequest) to
//! [`Token`](tower_bearer::Token) that `tower_bearer::TokenCache` calls about once per token
//! lifetime. `tower-bearer-oauth2`, `tower-bearer-apivideo` and `tower-bearer-platform` are
//! built on this crate; so can a provider of your own: a [`Refresher`] around your [`Grants`].
//!
//! [`HttpClient`] and [`RequestBody`] are the bounds of the providers' public impls
//! (`ApiVideo<C, B>`, `OAuth2<C, B>`): a user who writes code generic over a provider's client
//! names them. [`RequestBody`] is sealed: the providers build their own request bodies, so the
//! set of body types is theirs to know.
//!
//! # What every provider promises
//!
//! - It never follows a redirect: an answer that is a redirect, or that came from another URL
//!   than the one asked (a client that follows redirects sent the request on), is refused
//!   ([`Redirected`]), and nothing in it is used. Give a provider a client that does not
//!   follow redirects (hyper-util's never does; reqwest's with
//!   `redirect::Policy::none()`), so that nothing is sent elsewhere either.
//! - It sends credentials in clear only to loopback ([`is_cleartext`]), unless told to.
//! - A server's text it keeps in an error holds no secret the request sent, in any of the
//!   forms the wire gave it ([`Secrets`]), and no control character.
//! - A request that brought back no answer to read (the client failed, the body could not be
//!   read or was too long, the timeout ran out, a redirect) is a [`NoAnswer`] naming the URL
//!   asked, one variant of its error: code that handles several providers matches it once.
#![deny(unsafe_code)]
#![warn(missing_docs, rust_2018_idioms, unreachable_pub)]
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(feature = "reqwest")]
#[cfg_attr(docsrs, doc(cfg(feature = "reqwest")))]
pub mod reqwest;

mod no_answer;
mod redirect;
mod refresher;
mod secrets;
mod token_answer;

#[cfg(test)]
mod token_answer_properties;

pub use no_answer::NoAnswer;
pub use redirect::Redirected;
pub use refresher::{Grants, Refresher, ResponseFuture};
pub use secrets::{Secrets, basic_credentials, server_text};
pub use token_answer::{ExpiresIn, Malformed, Members, parse_bearer_token, parse_token};

use std::fmt;
use std::future::poll_fn;
use std::net::IpAddr;
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderMap, HeaderValue};
use http::{Request, Response, StatusCode, Uri};
use http_body::Body;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use tokio::time::Instant;
use tower::{BoxError, Service};
use tracing::Instrument;

use tower_bearer::ReplayBody;

/// The `User-Agent` every provider sends.
pub const USER_AGENT: HeaderValue =
    HeaderValue::from_static(concat!("tower-bearer/", env!("CARGO_PKG_VERSION")));

/// The most bytes of an answer a provider reads. A token answer is a few KiB at most;
/// anything near this is not one, and a hostile or broken server cannot make a provider
/// buffer more.
pub const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// The longest lifetime a provider believes: a longer `expires_in` is cut to this, so a
/// token is refreshed at least daily whatever the server says (and no arithmetic overflows).
pub const MAX_LIFETIME: Duration = Duration::from_secs(24 * 60 * 60);

/// The longest wait a `Retry-After` may impose on the cache; a longer hint is cut to this
/// (the next attempt will hear a fresh one).
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(10 * 60);

/// An HTTP client a token provider can send its requests through: any tower service from
/// `http::Request<B>` to `http::Response<_>` that can be cloned and sent across threads (a
/// hyper-util `Client`, a `ServiceBuilder` stack around one, a `tower::service_fn`).
///
/// This is the one set of bounds `ApiVideo` and `OAuth2` put on their client, written once. It is implemented for every type that
/// meets them, and cannot be implemented otherwise.
///
/// # Example
///
/// ```
/// use bytes::Bytes;
/// use http_body_util::Full;
/// use tower_bearer_provider::{HttpClient, RequestBody};
///
/// fn takes_a_client<C: HttpClient<B>, B: RequestBody>(_client: C) {}
///
/// let client = tower::service_fn(|_: http::Request<Full<Bytes>>| async {
///     Ok::<_, tower::BoxError>(http::Response::new(Full::<Bytes>::default()))
/// });
/// takes_a_client(client);
/// ```
pub trait HttpClient<B>:
    sealed::Client<B>
    + Service<
        Request<B>,
        Response = Response<<Self as HttpClient<B>>::ResponseBody>,
        Error: Into<BoxError>,
        Future: Send,
    > + Clone
    + Send
    + 'static
{
    /// The body of the client's responses.
    type ResponseBody: Body<Data: Send, Error: Into<BoxError>> + Send + 'static;
}

impl<C, B, ResBody> HttpClient<B> for C
where
    C: Service<Request<B>, Response = Response<ResBody>> + Clone + Send + 'static,
    C::Error: Into<BoxError>,
    C::Future: Send,
    ResBody: Body + Send + 'static,
    ResBody::Data: Send,
    ResBody::Error: Into<BoxError>,
{
    type ResponseBody = ResBody;
}

/// A request body type a token provider can send its requests in: [`Full<Bytes>`], or
/// [`ReplayBody<Full<Bytes>>`] so that the provider shares the client a
/// [`BearerAuth`](tower_bearer::BearerAuth) stack sends through.
///
/// Sealed: the provider builds the body, so it must know how.
pub trait RequestBody: sealed::Body + Send + 'static {}

impl RequestBody for Full<Bytes> {}
impl RequestBody for ReplayBody<Full<Bytes>> {}

mod sealed {
    use super::*;

    // Public in a private module: nameable in a public trait's bounds, not outside the crate.
    #[allow(unreachable_pub)]
    pub trait Client<B> {}

    impl<C, B> Client<B> for C where C: Service<Request<B>> {}

    #[allow(unreachable_pub)]
    pub trait Body {
        fn from_bytes(bytes: Bytes) -> Self;
    }

    impl Body for Full<Bytes> {
        fn from_bytes(bytes: Bytes) -> Self {
            Full::new(bytes)
        }
    }

    impl Body for ReplayBody<Full<Bytes>> {
        fn from_bytes(bytes: Bytes) -> Self {
            // Nothing replays a token request: passed through unrecorded.
            ReplayBody::new(Full::new(bytes))
        }
    }
}

/// A request body holding `bytes`.
pub fn body<B: RequestBody>(bytes: impl Into<Bytes>) -> B {
    <B as sealed::Body>::from_bytes(bytes.into())
}

/// A token endpoint's answer, read.
pub struct Answer {
    /// The answer's status.
    pub status: StatusCode,
    /// The answer's headers.
    pub headers: HeaderMap,
    /// The body, or why it could not be read ([`NoAnswer::Body`], [`NoAnswer::TooLarge`]); a
    /// status may mean enough without it.
    pub body: Result<Bytes, NoAnswer>,
    /// When the request left: a token's lifetime counts from here, not from the answer, since
    /// the server's clock started somewhere in between and erring early is safe.
    pub sent_at: Instant,
}

/// Sends `request` through `client` once it is ready, and reads the whole answer, at most
/// [`MAX_ANSWER_BYTES`] of it.
///
/// An answer that is a redirect, or that came from another URL than the request's (a client
/// that follows redirects sent it on, and said so), is [`NoAnswer::Redirected`], unread.
///
/// The one place a provider's request goes out: a hook that must touch every attempt (a
/// proof of possession, a log line) goes here.
///
/// Each request is a client span, `tower_bearer.http` at INFO, a child of the current span
/// (the cache's refresh), with OpenTelemetry's HTTP client attributes so that
/// `tracing-opentelemetry` exports it as it exports other HTTP client spans:
/// `http.request.method`, `server.address`, `server.port`, `url.full` (as [`shown_url`]
/// shows it: no user info, no query), `http.response.status_code`, and `error.type` (the
/// status code from 400 on, `transport`, `redirected` or `body`).
pub async fn send<C, B>(client: &mut C, request: Request<B>) -> Result<Answer, NoAnswer>
where
    C: HttpClient<B>,
{
    let span = client_span(&request);
    let answer = send_in_span(client, request).instrument(span.clone()).await;
    let error_type = match &answer {
        Ok(answer) => {
            // As i64: OpenTelemetry has no unsigned integers, and tracing-opentelemetry
            // would export a u16 as a string.
            span.record(
                "http.response.status_code",
                i64::from(answer.status.as_u16()),
            );
            match (answer.status.as_u16(), &answer.body) {
                (400.., _) => Some(answer.status.as_str()),
                (_, Err(_)) => Some("body"),
                _ => None,
            }
        }
        Err(NoAnswer::Redirected(_)) => Some("redirected"),
        Err(_) => Some("transport"),
    };
    if let Some(error_type) = error_type {
        span.record("error.type", error_type);
        span.record("otel.status_code", "ERROR");
    }
    answer
}

/// The span of one request a provider sends (see [`send`]).
fn client_span<B>(request: &Request<B>) -> tracing::Span {
    let uri = request.uri();
    let method = request.method().as_str();
    let port = uri.port_u16().or(match uri.scheme_str() {
        Some("https") => Some(443),
        Some("http") => Some(80),
        _ => None,
    });
    tracing::info_span!(
        "tower_bearer.http",
        otel.name = method,
        otel.kind = "client",
        otel.status_code = tracing::field::Empty,
        http.request.method = method,
        server.address = uri.host(),
        server.port = port.map(i64::from),
        url.full = %shown_url(uri),
        http.response.status_code = tracing::field::Empty,
        error.type = tracing::field::Empty,
    )
}

async fn send_in_span<C, B>(client: &mut C, request: Request<B>) -> Result<Answer, NoAnswer>
where
    C: HttpClient<B>,
{
    let asked = request.uri().clone();
    let failed = |error: C::Error| NoAnswer::transport(error, shown_url(&asked));
    // Ready again even for a call's first request: polling a ready service is allowed, and
    // a second request in the same call (a fallback) takes the same path.
    poll_fn(|cx| client.poll_ready(cx)).await.map_err(failed)?;
    let sent_at = Instant::now();
    let response = client.call(request).await.map_err(failed)?;
    redirect::check(&asked, &response).map_err(NoAnswer::Redirected)?;
    let (parts, body) = response.into_parts();
    Ok(Answer {
        status: parts.status,
        headers: parts.headers,
        body: read_capped(body, &asked).await,
        sent_at,
    })
}

/// The body of the answer from `asked`, read to its end but no further than
/// [`MAX_ANSWER_BYTES`].
async fn read_capped<ResBody>(body: ResBody, asked: &Uri) -> Result<Bytes, NoAnswer>
where
    ResBody: Body,
    ResBody::Error: Into<BoxError>,
{
    match Limited::new(body, MAX_ANSWER_BYTES).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) if error.is::<LengthLimitError>() => Err(NoAnswer::too_large(shown_url(asked))),
        Err(source) => Err(NoAnswer::Body {
            source,
            url: shown_url(asked),
        }),
    }
}

/// A token's lifetime from the `expires_in` a server sent, at most [`MAX_LIFETIME`], counted
/// from `sent_at`.
pub fn expiry(sent_at: Instant, expires_in_secs: u64) -> Instant {
    sent_at + Duration::from_secs(expires_in_secs).min(MAX_LIFETIME)
}

/// `uri` as errors show it: scheme, host and port, and path; never its user info or its
/// query, either of which may hold a secret.
///
/// ```
/// let uri = "https://id:secret@as.example:8443/token?code=abc".parse().unwrap();
/// assert_eq!(tower_bearer_provider::shown_url(&uri), "https://as.example:8443/token");
/// ```
pub fn shown_url(uri: &Uri) -> String {
    let scheme = uri.scheme_str().unwrap_or("");
    let host = uri.host().unwrap_or("");
    match uri.port() {
        Some(port) => format!("{scheme}://{host}:{port}{}", uri.path()),
        None => format!("{scheme}://{host}{}", uri.path()),
    }
}

/// Whether a request to `uri` would travel in clear over a network: `http` to a host that is
/// not loopback (`localhost`, `127.0.0.0/8`, `::1`). A provider sends credentials to such a
/// URL only when told to, for tests.
///
/// ```
/// use tower_bearer_provider::is_cleartext;
///
/// assert!(is_cleartext(&"http://as.example/token".parse().unwrap()));
/// assert!(!is_cleartext(&"http://127.0.0.1:8080/token".parse().unwrap()));
/// assert!(!is_cleartext(&"https://as.example/token".parse().unwrap()));
/// ```
pub fn is_cleartext(uri: &Uri) -> bool {
    let is_http = uri
        .scheme_str()
        .is_some_and(|scheme| scheme.eq_ignore_ascii_case("http"));
    is_http && !uri.host().is_some_and(is_loopback)
}

/// Whether `host` (as a URI writes it: an IPv6 address in brackets) names this machine.
fn is_loopback(host: &str) -> bool {
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    let address = host.trim_start_matches('[').trim_end_matches(']');
    match address.parse::<IpAddr>() {
        Ok(IpAddr::V4(v4)) => v4.is_loopback(),
        Ok(IpAddr::V6(v6)) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
        Err(_) => false,
    }
}

/// A duration as errors print it, in seconds: `30 s`, `0.25 s`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seconds(pub Duration);

impl fmt::Display for Seconds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Seconds(duration) = *self;
        let millis = duration.subsec_millis();
        if millis == 0 {
            return write!(f, "{} s", duration.as_secs());
        }
        let fraction = format!("{millis:03}");
        write!(
            f,
            "{}.{} s",
            duration.as_secs(),
            fraction.trim_end_matches('0')
        )
    }
}

/// The wait the first of `names` (lowercase header names, such as `retry-after`) present in
/// `headers` asks for, in whole seconds (an HTTP-date is not understood, and ignored), at most
/// [`MAX_RETRY_AFTER`].
pub fn retry_after(headers: &HeaderMap, names: &[&str]) -> Option<Duration> {
    names
        .iter()
        .find_map(|name| {
            headers
                .get(*name)?
                .to_str()
                .ok()?
                .trim()
                .parse::<u64>()
                .ok()
        })
        .map(|seconds| Duration::from_secs(seconds).min(MAX_RETRY_AFTER))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::header::RETRY_AFTER;

    #[test]
    fn retry_after_reads_the_first_header_present_and_caps_it() {
        let names = ["x-ratelimit-retry-after", "retry-after"];
        let mut headers = HeaderMap::new();
        assert_eq!(retry_after(&headers, &names), None);
        headers.insert(RETRY_AFTER, HeaderValue::from_static(" 7 "));
        assert_eq!(retry_after(&headers, &names), Some(Duration::from_secs(7)));
        headers.insert("x-ratelimit-retry-after", HeaderValue::from_static("3"));
        assert_eq!(retry_after(&headers, &names), Some(Duration::from_secs(3)));
        headers.insert("x-ratelimit-retry-after", HeaderValue::from_static("99999"));
        assert_eq!(retry_after(&headers, &names), Some(MAX_RETRY_AFTER));
        headers.insert(
            "x-ratelimit-retry-after",
            HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
        );
        assert_eq!(retry_after(&headers, &names), Some(Duration::from_secs(7)));
    }

    #[test]
    fn loopback_and_cleartext() {
        let cleartext = |url: &str| is_cleartext(&url.parse().unwrap());
        for url in [
            "http://as.example/token",
            "HTTP://as.example/token",
            "http://10.0.0.1/token",
            "http://[2001:db8::1]/token",
            "http://localhost.as.example/token",
            "http://127.0.0.1.as.example/token",
            "http://[::ffff:10.0.0.1]/token",
        ] {
            assert!(cleartext(url), "{url}");
        }
        for url in [
            "https://as.example/token",
            "http://127.0.0.1:8080/token",
            "http://127.255.0.9/token",
            "http://localhost:8080/token",
            "http://LocalHost/token",
            "http://[::1]:8080/token",
            "http://[::ffff:127.0.0.1]/token",
        ] {
            assert!(!cleartext(url), "{url}");
        }
    }

    #[test]
    fn urls_are_shown_without_user_info_or_query() {
        for (url, shown) in [
            ("https://as.example", "https://as.example/"),
            (
                "https://u:p@as.example/t?secret=1#x",
                "https://as.example/t",
            ),
            ("http://[::1]:8080/t", "http://[::1]:8080/t"),
        ] {
            assert_eq!(shown_url(&url.parse().unwrap()), shown, "{url}");
        }
    }

    #[test]
    fn seconds_are_whole_or_decimal() {
        for (duration, shown) in [
            (Duration::from_secs(30), "30 s"),
            (Duration::from_millis(200), "0.2 s"),
            (Duration::from_millis(1250), "1.25 s"),
            (Duration::from_micros(1), "0 s"),
        ] {
            assert_eq!(Seconds(duration).to_string(), shown);
        }
    }

    #[tokio::test]
    async fn answers_are_read_up_to_the_cap() {
        let asked = Uri::from_static("https://auth.example/token?secret=1");
        let exact = Full::new(Bytes::from(vec![b'x'; MAX_ANSWER_BYTES]));
        assert_eq!(
            read_capped(exact, &asked).await.unwrap().len(),
            MAX_ANSWER_BYTES
        );
        let over = Full::new(Bytes::from(vec![b'x'; MAX_ANSWER_BYTES + 1]));
        assert!(matches!(
            read_capped(over, &asked).await,
            Err(NoAnswer::TooLarge { limit: MAX_ANSWER_BYTES, url })
                if url == "https://auth.example/token"
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn lifetimes_are_capped() {
        let now = Instant::now();
        assert_eq!(expiry(now, 60), now + Duration::from_secs(60));
        assert_eq!(expiry(now, u64::MAX), now + MAX_LIFETIME);
    }
}
