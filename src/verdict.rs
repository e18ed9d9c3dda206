//! What a response says about the token its request carried.

use std::fmt;
use std::sync::Arc;

use http::header::CONTENT_TYPE;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};

use crate::www_authenticate::{Challenge, challenges};

/// gRPC's status, in the headers of a trailers-only response or in the trailers. A static,
/// not a const: a const would build and drop a `HeaderName` at every lookup.
static GRPC_STATUS: HeaderName = HeaderName::from_static("grpc-status");

/// What a response says about the token its request carried.
///
/// [`TokenVerdict::of`] is the default decision; a server that refuses tokens in its own way
/// (a 419, a 403 for an expired token) gets a decision of your own that falls back on it:
///
/// ```
/// use http::{HeaderMap, StatusCode};
/// use tower_bearer::TokenVerdict;
///
/// fn verdict(status: StatusCode, headers: &HeaderMap) -> TokenVerdict {
///     match status.as_u16() {
///         419 => TokenVerdict::Rejected,
///         _ => TokenVerdict::of(status, headers),
///     }
/// }
///
/// assert_eq!(verdict(StatusCode::from_u16(419)?, &HeaderMap::new()), TokenVerdict::Rejected);
/// assert_eq!(verdict(StatusCode::UNAUTHORIZED, &HeaderMap::new()), TokenVerdict::Rejected);
/// assert_eq!(verdict(StatusCode::OK, &HeaderMap::new()), TokenVerdict::Unrelated);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TokenVerdict {
    /// Nothing about the token: the response goes back as it is.
    Unrelated,
    /// The server rejected the token: it is replaced (once, however many requests were
    /// rejected with it) and the request is sent again, once, if its body can be replayed.
    Rejected,
    /// The token was refused for its scope (RFC 6750's `insufficient_scope`): a new token of
    /// the same scope would not help, so it is not replaced and the request is not sent again.
    InsufficientScope,
    /// The server wants a DPoP proof that carries its nonce (RFC 9449 §9, `use_dpop_nonce`),
    /// which it sent in `DPoP-Nonce`: not the token's fault, so the token is kept, and the
    /// request is sent again, once, with a new proof, if the answer brought a nonce its proof
    /// did not have.
    UseDpopNonce,
}

impl TokenVerdict {
    /// The default decision, from a response's status and headers.
    ///
    /// | the response | verdict |
    /// | --- | --- |
    /// | 401 with a `DPoP` challenge whose `error` is `use_dpop_nonce` | [`UseDpopNonce`](Self::UseDpopNonce) |
    /// | 401 with a `Bearer` or `DPoP` challenge whose `error` is `insufficient_scope` | [`InsufficientScope`](Self::InsufficientScope) |
    /// | any other 401: no `WWW-Authenticate`, `error="invalid_token"`, other schemes, or a `WWW-Authenticate` that cannot be read | [`Rejected`](Self::Rejected) |
    /// | 403 with a `Bearer` or `DPoP` challenge whose `error` is `insufficient_scope` | [`InsufficientScope`](Self::InsufficientScope) |
    /// | any other 403 | [`Unrelated`](Self::Unrelated): permission, not the token |
    /// | 200, `content-type: application/grpc` (or `application/grpc+…`, `application/grpc;…`), and `grpc-status: 16` (UNAUTHENTICATED) in the headers: a trailers-only gRPC answer | [`Rejected`](Self::Rejected) |
    /// | anything else | [`Unrelated`](Self::Unrelated) |
    ///
    /// A `WWW-Authenticate` that breaks RFC 9110's grammar anywhere makes a 401
    /// [`Rejected`](Self::Rejected) whatever else it says: a replaced token costs one refresh,
    /// where trusting half a header could leave a rejected token in use. On a 403 it says
    /// nothing, and only the challenges that could be read count.
    ///
    /// RFC 6750 asks for a 403 when the scope is insufficient, and a 401 when the token is
    /// not valid, but servers answer `insufficient_scope` with either; both are reported, so
    /// that the two can be counted together. Neither replaces the token: a 403 never does.
    ///
    /// Every response goes through this, so the common one costs least: for a 200, a look for
    /// `grpc-status` (nothing without headers, the names compared among a few, a lookup among
    /// many), and the content type only when that says 16; for any status other than 200, 401
    /// and 403, nothing at all.
    ///
    /// ```
    /// use http::header::{CONTENT_TYPE, WWW_AUTHENTICATE};
    /// use http::{HeaderMap, HeaderValue, StatusCode};
    /// use tower_bearer::TokenVerdict;
    ///
    /// let mut headers = HeaderMap::new();
    /// headers.insert(
    ///     WWW_AUTHENTICATE,
    ///     HeaderValue::from_static(r#"Bearer realm="api", error="insufficient_scope", scope="write""#),
    /// );
    /// assert_eq!(TokenVerdict::of(StatusCode::UNAUTHORIZED, &headers), TokenVerdict::InsufficientScope);
    ///
    /// headers.insert(WWW_AUTHENTICATE, HeaderValue::from_static(r#"Bearer error="invalid_token""#));
    /// assert_eq!(TokenVerdict::of(StatusCode::UNAUTHORIZED, &headers), TokenVerdict::Rejected);
    /// assert_eq!(TokenVerdict::of(StatusCode::FORBIDDEN, &headers), TokenVerdict::Unrelated);
    ///
    /// let mut grpc = HeaderMap::new();
    /// grpc.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    /// grpc.insert("grpc-status", HeaderValue::from_static("16"));
    /// assert_eq!(TokenVerdict::of(StatusCode::OK, &grpc), TokenVerdict::Rejected);
    /// ```
    #[inline]
    pub fn of(status: StatusCode, headers: &HeaderMap) -> TokenVerdict {
        match status {
            StatusCode::OK => match grpc_status(headers) {
                None => TokenVerdict::Unrelated,
                Some(grpc_status) => trailers_only(grpc_status, headers),
            },
            StatusCode::UNAUTHORIZED => unauthorized(headers),
            StatusCode::FORBIDDEN => forbidden(headers),
            _ => TokenVerdict::Unrelated,
        }
    }

    /// The decision for a gRPC response's trailers: [`Rejected`](Self::Rejected) when they
    /// carry `grpc-status: 16` (UNAUTHENTICATED), else [`Unrelated`](Self::Unrelated).
    ///
    /// The response had begun when they came, so the request is not sent again: the token is
    /// replaced for the calls that follow, and this one ends UNAUTHENTICATED.
    ///
    /// ```
    /// use http::{HeaderMap, HeaderValue};
    /// use tower_bearer::TokenVerdict;
    ///
    /// let mut trailers = HeaderMap::new();
    /// trailers.insert("grpc-status", HeaderValue::from_static("16"));
    /// assert_eq!(TokenVerdict::of_trailers(&trailers), TokenVerdict::Rejected);
    /// trailers.insert("grpc-status", HeaderValue::from_static("0"));
    /// assert_eq!(TokenVerdict::of_trailers(&trailers), TokenVerdict::Unrelated);
    /// ```
    #[inline]
    pub fn of_trailers(trailers: &HeaderMap) -> TokenVerdict {
        match trailers.get(&GRPC_STATUS) {
            Some(grpc_status) if is_unauthenticated(grpc_status) => TokenVerdict::Rejected,
            _ => TokenVerdict::Unrelated,
        }
    }
}

/// Up to this many header values, looking for `grpc-status` by comparing names costs less than
/// hashing it for a lookup (a name compares in a few instructions: most are standard headers,
/// which differ from it by kind); past it, the lookup costs less.
const SCANNED: usize = 8;

/// The first `grpc-status` value of `headers`, as `headers.get` gives it.
#[inline]
fn grpc_status(headers: &HeaderMap) -> Option<&HeaderValue> {
    if headers.is_empty() {
        return None;
    }
    find_grpc_status(headers)
}

#[inline(never)]
fn find_grpc_status(headers: &HeaderMap) -> Option<&HeaderValue> {
    if headers.len() <= SCANNED && !headers.keys().any(|name| *name == GRPC_STATUS) {
        return None;
    }
    headers.get(&GRPC_STATUS)
}

/// A 200 that carries `grpc-status` in its headers.
#[inline(never)]
fn trailers_only(grpc_status: &HeaderValue, headers: &HeaderMap) -> TokenVerdict {
    if is_unauthenticated(grpc_status) && headers.get(CONTENT_TYPE).is_some_and(is_grpc) {
        TokenVerdict::Rejected
    } else {
        TokenVerdict::Unrelated
    }
}

#[inline(never)]
fn unauthorized(headers: &HeaderMap) -> TokenVerdict {
    let mut verdict = TokenVerdict::Rejected;
    for challenge in challenges(headers) {
        match challenge {
            Err(_) => return TokenVerdict::Rejected,
            Ok(challenge) if is_use_dpop_nonce(&challenge) => {
                verdict = TokenVerdict::UseDpopNonce;
            }
            Ok(challenge)
                if is_insufficient_scope(&challenge) && verdict != TokenVerdict::UseDpopNonce =>
            {
                verdict = TokenVerdict::InsufficientScope;
            }
            Ok(_) => {}
        }
    }
    verdict
}

#[inline(never)]
fn forbidden(headers: &HeaderMap) -> TokenVerdict {
    let insufficient_scope =
        challenges(headers).any(|challenge| challenge.is_ok_and(|c| is_insufficient_scope(&c)));
    if insufficient_scope {
        TokenVerdict::InsufficientScope
    } else {
        TokenVerdict::Unrelated
    }
}

/// RFC 6750 §3.1's error, in a challenge for a bearer token (RFC 9449 §7.1 gives DPoP the same
/// errors). Error codes are compared exactly, as the RFC writes them.
fn is_insufficient_scope(challenge: &Challenge<'_>) -> bool {
    let scheme = challenge.scheme();
    (scheme.eq_ignore_ascii_case("Bearer") || scheme.eq_ignore_ascii_case("DPoP"))
        && challenge.param("error").as_deref() == Some("insufficient_scope")
}

/// RFC 9449 §9: a resource server that wants its nonce in the proof.
fn is_use_dpop_nonce(challenge: &Challenge<'_>) -> bool {
    challenge.scheme().eq_ignore_ascii_case("DPoP")
        && challenge.param("error").as_deref() == Some("use_dpop_nonce")
}

fn is_unauthenticated(grpc_status: &HeaderValue) -> bool {
    grpc_status.as_bytes().trim_ascii() == b"16"
}

/// `application/grpc`, alone or with a `+format` suffix or parameters, in any case.
fn is_grpc(content_type: &HeaderValue) -> bool {
    const GRPC: &[u8] = b"application/grpc";
    let value = content_type.as_bytes();
    let (Some(media_type), Some(rest)) = (value.get(..GRPC.len()), value.get(GRPC.len()..)) else {
        return false;
    };
    media_type.eq_ignore_ascii_case(GRPC)
        && (rest.starts_with(b"+") || matches!(rest.trim_ascii().first(), None | Some(b';')))
}

/// The decision a layer applies to each response: [`TokenVerdict::of`], or the user's own.
#[derive(Clone, Default)]
pub(crate) struct VerdictRule(Option<Arc<VerdictFn>>);

type VerdictFn = dyn Fn(StatusCode, &HeaderMap) -> TokenVerdict + Send + Sync;

impl VerdictRule {
    pub(crate) fn custom<F>(decide: F) -> Self
    where
        F: Fn(StatusCode, &HeaderMap) -> TokenVerdict + Send + Sync + 'static,
    {
        VerdictRule(Some(Arc::new(decide)))
    }

    /// The verdict on a response with `status` and `headers` to a request sent with the token
    /// of `generation`, logged as every stack logs it. Each stack hands over its response's
    /// parts (an `http::Response` for tower, a `reqwest::Response`), so that the decision and
    /// what is said about it are one piece of code.
    #[inline]
    pub(crate) fn judge(
        &self,
        status: StatusCode,
        headers: &HeaderMap,
        generation: u64,
    ) -> TokenVerdict {
        let verdict = match &self.0 {
            None => TokenVerdict::of(status, headers),
            Some(decide) => decide(status, headers),
        };
        if verdict != TokenVerdict::Unrelated {
            log(verdict, status, generation);
        }
        verdict
    }
}

#[cold]
fn log(verdict: TokenVerdict, status: StatusCode, generation: u64) {
    let status = status.as_u16();
    match verdict {
        TokenVerdict::Rejected => {
            tracing::debug!(
                status,
                verdict = "rejected",
                generation,
                "the server rejected the token"
            );
        }
        TokenVerdict::InsufficientScope => tracing::debug!(
            status,
            "the token's scope is insufficient: a new one would not help"
        ),
        // Said where the request is sent again with the nonce, if it is.
        TokenVerdict::UseDpopNonce | TokenVerdict::Unrelated => {}
    }
}

impl fmt::Debug for VerdictRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.0 {
            None => "TokenVerdict::of",
            Some(_) => "custom",
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};

    use super::TokenVerdict::{self, InsufficientScope, Rejected, Unrelated, UseDpopNonce};
    use super::VerdictRule;

    const GRPC: (&str, &str) = ("content-type", "application/grpc");
    const UNAUTHENTICATED: (&str, &str) = ("grpc-status", "16");
    // Ordinary headers, to make a response's headers many.
    const A: (&str, &str) = ("date", "Mon, 30 Nov 2026 10:00:00 GMT");
    const B: (&str, &str) = ("server", "envoy");
    const C: (&str, &str) = ("x-request-id", "4f2c");
    const D: (&str, &str) = ("cache-control", "no-store");
    const E: (&str, &str) = ("vary", "accept-encoding");
    const F: (&str, &str) = ("x-envoy-upstream-service-time", "3");
    const G: (&str, &str) = ("grpc-accept-encoding", "gzip");
    const SCOPE: (&str, &str) = (
        "www-authenticate",
        r#"Bearer realm="api", error="insufficient_scope", scope="write""#,
    );

    type Fields<'a> = &'a [(&'a str, &'a str)];

    fn headers(fields: Fields<'_>) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in fields {
            let value = HeaderValue::from_bytes(value.as_bytes()).unwrap();
            headers.append(HeaderName::from_bytes(name.as_bytes()).unwrap(), value);
        }
        headers
    }

    fn challenge(value: &'static str) -> (&'static str, &'static str) {
        ("www-authenticate", value)
    }

    #[test]
    fn the_default_decision() {
        let ok = StatusCode::OK;
        let unauthorized = StatusCode::UNAUTHORIZED;
        let forbidden = StatusCode::FORBIDDEN;
        let ordinary = [
            ("content-type", "application/json"),
            ("content-length", "123"),
            ("date", "Mon, 30 Nov 2026 10:00:00 GMT"),
            ("server", "nginx"),
            ("cache-control", "no-store"),
            ("x-request-id", "4f2c"),
        ];
        let table: &[(StatusCode, Fields<'_>, TokenVerdict)] = &[
            // Most responses.
            (ok, &[], Unrelated),
            (ok, &ordinary, Unrelated),
            (StatusCode::NOT_FOUND, &[SCOPE], Unrelated),
            (StatusCode::INTERNAL_SERVER_ERROR, &[], Unrelated),
            (StatusCode::PROXY_AUTHENTICATION_REQUIRED, &[], Unrelated),
            // 401.
            (unauthorized, &[], Rejected),
            (unauthorized, &ordinary, Rejected),
            (
                unauthorized,
                &[challenge(r#"Bearer realm="api""#)],
                Rejected,
            ),
            (
                unauthorized,
                &[challenge(r#"Bearer error="invalid_token""#)],
                Rejected,
            ),
            (unauthorized, &[SCOPE], InsufficientScope),
            (
                unauthorized,
                &[challenge("bearer ERROR=insufficient_scope")],
                InsufficientScope,
            ),
            (
                unauthorized,
                &[challenge(r#"DPoP error="insufficient_scope""#)],
                InsufficientScope,
            ),
            (
                unauthorized,
                &[challenge(
                    r#"Basic realm="x", Bearer error="insufficient_scope""#,
                )],
                InsufficientScope,
            ),
            (
                unauthorized,
                &[challenge("Basic realm=x"), SCOPE],
                InsufficientScope,
            ),
            (
                unauthorized,
                &[SCOPE, challenge(r#"Bearer error="invalid_token""#)],
                InsufficientScope,
            ),
            // Another scheme's error, or another spelling of the code, is not RFC 6750's.
            (
                unauthorized,
                &[challenge(r#"Basic error="insufficient_scope""#)],
                Rejected,
            ),
            (
                unauthorized,
                &[challenge(r#"Bearer error="INSUFFICIENT_SCOPE""#)],
                Rejected,
            ),
            (
                unauthorized,
                &[challenge(r#"Bearer scope="insufficient_scope""#)],
                Rejected,
            ),
            // Unreadable: rejected, whatever else was said.
            (
                unauthorized,
                &[challenge(r#"Bearer error="insufficient_scope"#)],
                Rejected,
            ),
            (
                unauthorized,
                &[challenge(r#"Bearer error="insufficient_scope" oops"#)],
                Rejected,
            ),
            (
                unauthorized,
                &[challenge(r#"Bearer error="insufficient_scope", "oops""#)],
                Rejected,
            ),
            (unauthorized, &[SCOPE, challenge("=")], Rejected),
            (unauthorized, &[challenge("="), SCOPE], Rejected),
            // DPoP's nonce: only a DPoP challenge asks for it, and it wins over the scope.
            (
                unauthorized,
                &[challenge(r#"DPoP error="use_dpop_nonce", algs="ES256""#)],
                UseDpopNonce,
            ),
            (
                unauthorized,
                &[challenge(r#"dpop ERROR=use_dpop_nonce"#)],
                UseDpopNonce,
            ),
            (
                unauthorized,
                &[challenge(r#"Bearer error="use_dpop_nonce""#)],
                Rejected,
            ),
            (
                unauthorized,
                &[challenge(r#"DPoP error="invalid_token""#)],
                Rejected,
            ),
            (
                unauthorized,
                &[challenge(r#"DPoP error="use_dpop_nonce""#), SCOPE],
                UseDpopNonce,
            ),
            (
                unauthorized,
                &[SCOPE, challenge(r#"DPoP error="use_dpop_nonce""#)],
                UseDpopNonce,
            ),
            // 403.
            (forbidden, &[], Unrelated),
            (
                forbidden,
                &[challenge(r#"Bearer error="invalid_token""#)],
                Unrelated,
            ),
            (forbidden, &[SCOPE], InsufficientScope),
            (forbidden, &[challenge("=")], Unrelated),
            (forbidden, &[challenge("="), SCOPE], InsufficientScope),
            // gRPC, trailers-only.
            (ok, &[GRPC, UNAUTHENTICATED], Rejected),
            (ok, &[UNAUTHENTICATED, GRPC], Rejected),
            (
                ok,
                &[("content-type", "application/grpc+proto"), UNAUTHENTICATED],
                Rejected,
            ),
            (
                ok,
                &[
                    ("content-type", "application/grpc;charset=utf-8"),
                    UNAUTHENTICATED,
                ],
                Rejected,
            ),
            (
                ok,
                &[("content-type", "application/grpc ; x=y"), UNAUTHENTICATED],
                Rejected,
            ),
            (
                ok,
                &[("content-type", "Application/GRPC"), UNAUTHENTICATED],
                Rejected,
            ),
            (ok, &[GRPC, ("grpc-status", " 16 ")], Rejected),
            (ok, &[GRPC, ("grpc-status", "0")], Unrelated),
            (ok, &[GRPC, ("grpc-status", "7")], Unrelated),
            (ok, &[GRPC, ("grpc-status", "160")], Unrelated),
            (ok, &[GRPC, ("grpc-status", "1 6")], Unrelated),
            (ok, &[GRPC], Unrelated),
            (ok, &[UNAUTHENTICATED], Unrelated),
            (
                ok,
                &[("content-type", "application/json"), UNAUTHENTICATED],
                Unrelated,
            ),
            (
                ok,
                &[("content-type", "application/grpcx"), UNAUTHENTICATED],
                Unrelated,
            ),
            (
                ok,
                &[("content-type", "application/grp"), UNAUTHENTICATED],
                Unrelated,
            ),
            (
                ok,
                &[("content-type", "text/application/grpc"), UNAUTHENTICATED],
                Unrelated,
            ),
            (StatusCode::NO_CONTENT, &[GRPC, UNAUTHENTICATED], Unrelated),
            (unauthorized, &[GRPC, UNAUTHENTICATED], Rejected),
            // The first value counts, among few headers (compared by name) or many (looked up).
            (ok, &[GRPC, UNAUTHENTICATED, ("grpc-status", "0")], Rejected),
            (
                ok,
                &[GRPC, ("grpc-status", "0"), UNAUTHENTICATED],
                Unrelated,
            ),
            (ok, &[A, B, C, D, E, F, GRPC, UNAUTHENTICATED], Rejected),
            (ok, &[A, B, C, D, E, F, G, GRPC, UNAUTHENTICATED], Rejected),
            (ok, &[A, B, C, D, E, F, G, GRPC], Unrelated),
            (
                ok,
                &[
                    A,
                    B,
                    C,
                    D,
                    E,
                    F,
                    G,
                    GRPC,
                    ("grpc-status", "0"),
                    UNAUTHENTICATED,
                ],
                Unrelated,
            ),
        ];
        for (status, fields, expected) in table {
            let verdict = TokenVerdict::of(*status, &headers(fields));
            assert_eq!(verdict, *expected, "{status} {fields:?}");
        }
    }

    #[test]
    fn the_decision_on_trailers() {
        let table: &[(Fields<'_>, TokenVerdict)] = &[
            (&[UNAUTHENTICATED], Rejected),
            (&[("grpc-status", "16 ")], Rejected),
            (
                &[("grpc-status", "16"), ("grpc-message", "token expired")],
                Rejected,
            ),
            (&[("grpc-status", "0")], Unrelated),
            (&[("grpc-status", "7")], Unrelated),
            (&[("grpc-status", "161")], Unrelated),
            (&[], Unrelated),
            (&[GRPC], Unrelated),
        ];
        for (fields, expected) in table {
            assert_eq!(
                TokenVerdict::of_trailers(&headers(fields)),
                *expected,
                "{fields:?}"
            );
        }
    }

    /// Everything a subscriber at TRACE writes, as text.
    #[derive(Clone, Default)]
    struct Logs(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Logs {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// What the default rule logs about a response, on this thread.
    fn logged(status: StatusCode, fields: Fields<'_>, generation: u64) -> String {
        let logs = Logs::default();
        let writer = logs.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            // A parallel test may have reached the log's callsite first, with nobody
            // listening; tracing remembers that per callsite until asked again.
            tracing::callsite::rebuild_interest_cache();
            VerdictRule::default().judge(status, &headers(fields), generation);
        });
        String::from_utf8(logs.0.lock().unwrap().clone()).unwrap()
    }

    #[test]
    fn a_refused_token_is_logged_at_debug_with_its_generation() {
        let text = logged(StatusCode::UNAUTHORIZED, &[], 7);
        assert!(text.contains("DEBUG"), "{text}");
        assert!(text.contains("the server rejected the token"), "{text}");
        assert!(
            text.contains("status=401") && text.contains("generation=7"),
            "{text}"
        );

        let text = logged(StatusCode::FORBIDDEN, &[SCOPE], 7);
        assert!(text.contains("DEBUG"), "{text}");
        assert!(text.contains("scope is insufficient"), "{text}");
        assert!(text.contains("status=403"), "{text}");
    }

    #[test]
    fn debug_output_says_whether_the_rule_is_the_default_or_custom() {
        assert_eq!(format!("{:?}", VerdictRule::default()), "TokenVerdict::of");
        let custom = VerdictRule::custom(|_, _| TokenVerdict::Unrelated);
        assert_eq!(format!("{custom:?}"), "custom");
    }

    #[test]
    fn no_header_value_panics_the_decision() {
        let mut headers = HeaderMap::new();
        for byte in (0..=255u8).filter(|&b| HeaderValue::from_bytes(&[b]).is_ok()) {
            let value = [b"Bearer error=\"".as_slice(), &[byte], b"\"x, \\"].concat();
            headers.append("www-authenticate", HeaderValue::from_bytes(&value).unwrap());
            headers.append(
                "www-authenticate",
                HeaderValue::from_bytes(&[byte]).unwrap(),
            );
        }
        for status in [401, 403] {
            let status = StatusCode::from_u16(status).unwrap();
            let _ = TokenVerdict::of(status, &headers);
        }
    }
}
