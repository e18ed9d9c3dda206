//! What the token endpoint's answer means: a token (RFC 6749 §5.1), or an error response
//! (§5.2), or neither.

use std::time::Duration;

use http::{StatusCode, Uri};
use serde_json::Value;
use tokio::time::Instant;

use crate::error::{ErrorCode, ErrorResponse, MAX_TEXT, MalformedAnswer, OAuth2Error};
use crate::grant_proof::{self as dpop, DpopSettings};
use tower_bearer::{RetryAfter, ServerAnswer, Token};
use tower_bearer_provider::{self as http_client, Answer, ExpiresIn, Members, Secrets, shown_url};

/// An `error` code longer than this is cut: codes are short ASCII words.
const MAX_CODE: usize = 64;

/// What an answer from the token endpoint `uri` means. `secrets` are what the request sent:
/// a server's text that echoes one is redacted. `default_lifetime` is a token's lifetime
/// when `expires_in` is absent.
pub(super) fn token_from(
    answer: Answer,
    uri: &Uri,
    secrets: &Secrets<'_>,
    default_lifetime: Option<Duration>,
    dpop: Option<&DpopSettings>,
) -> Result<Token, OAuth2Error> {
    let Answer {
        status,
        headers,
        body,
        sent_at,
    } = answer;
    let url = || shown_url(uri);
    if status.is_success() {
        let body = body?;
        return parse_token(&body, sent_at, default_lifetime, dpop)
            .map_err(|error| OAuth2Error::Malformed { error, url: url() });
    }
    // 429 and 503 say when to come back; RFC 6749 says nothing of `Retry-After` on a token
    // endpoint, but servers and proxies in front of them send it.
    let wait = match status {
        StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE => {
            http_client::retry_after(&headers, &["retry-after"])
        }
        _ => None,
    };
    let waited = |what: &'static str, answer: &ServerAnswer| {
        wait.map(|delay| RetryAfter::new(delay, what).answered(answer.clone()))
    };
    // The body only adds detail to the status: one that cannot be read loses the detail.
    let response = body
        .ok()
        .and_then(|body| parse_error(status, &body, secrets));
    Err(match response {
        Some(response) => {
            let answer = response.server_answer();
            let retry_after =
                waited("the authorization server asked to wait", answer).or_else(|| {
                    response.is_permanent().then(|| {
                        RetryAfter::permanent("a permanent refusal").answered(answer.clone())
                    })
                });
            OAuth2Error::Refused {
                response,
                retry_after,
                url: url(),
            }
        }
        None => {
            let answer = ServerAnswer::new(status);
            OAuth2Error::Status {
                status,
                retry_after: waited("the token endpoint asked to wait", &answer),
                answer,
                url: url(),
            }
        }
    })
}

/// Whether `answer` refuses a DPoP proof for want of the server's nonce: RFC 9449 §8 says
/// 400; the code, not the status, is what says it.
pub(super) fn asks_for_dpop_nonce(answer: &Answer) -> bool {
    answer.status.is_client_error()
        && answer.body.as_ref().is_ok_and(|body| {
            parse_error(answer.status, body, &Secrets::new())
                .is_some_and(|response| *response.code() == ErrorCode::UseDpopNonce)
        })
}

/// A successful answer's body as a token, its lifetime counted from `sent_at`: the answer
/// every provider reads alike ([`tower_bearer_provider::parse_token`]), with what is OAuth
/// 2.0's own.
///
/// `expires_in` may be a string of digits (Entra ID v1 sends strings), or absent (then
/// `default_lifetime`, or no expiry); `token_type` must be `Bearer` in any case, or `DPoP`
/// when the request carried a proof (`dpop`: then `Bearer` only if the settings allow the
/// downgrade).
pub(super) fn parse_token(
    body: &[u8],
    sent_at: Instant,
    default_lifetime: Option<Duration>,
    dpop: Option<&DpopSettings>,
) -> Result<Token, MalformedAnswer> {
    let expires_in = ExpiresIn::Lenient {
        default: default_lifetime,
    };
    http_client::parse_token(body, sent_at, expires_in, |token_type, access_token| {
        let is_dpop = token_type.eq_ignore_ascii_case("dpop");
        if !is_dpop && !token_type.eq_ignore_ascii_case("bearer") {
            return Err(MalformedAnswer::TokenType);
        }
        dpop::token(dpop, access_token, is_dpop)
    })
}

/// An error answer's body as an RFC 6749 §5.2 error response: a JSON object with an `error`
/// string. Anything else (an HTML page, a JSON without `error`) is `None`.
pub(super) fn parse_error(
    status: StatusCode,
    body: &[u8],
    secrets: &Secrets<'_>,
) -> Option<ErrorResponse> {
    let members = Members::parse(body).ok()?;
    let code = members.get("error")?.as_str()?;
    let code = http_client::server_text(code, secrets, MAX_CODE);
    if code.is_empty() {
        return None;
    }
    let text = |name: &str| {
        members
            .get(name)
            .and_then(Value::as_str)
            .map(|text| http_client::server_text(text, secrets, MAX_TEXT))
    };
    Some(ErrorResponse::new(
        status,
        ErrorCode::parse(&code),
        text("error_description"),
        text("error_uri"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use http::{HeaderMap, HeaderValue};

    fn parse(json: &str) -> Result<Token, MalformedAnswer> {
        parse_token(json.as_bytes(), Instant::now(), None, None)
    }

    fn answer(status: StatusCode, headers: &[(&str, &str)], body: &str) -> Answer {
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.insert(
                http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        Answer {
            status,
            headers: map,
            body: Ok(Bytes::from(body.to_owned())),
            sent_at: Instant::now(),
        }
    }

    /// Only the code says it: a server may send a nonce with any answer (RFC 9449 §8.2), and an
    /// error that is not `use_dpop_nonce` must not be sent again with it.
    #[test]
    fn only_a_client_error_with_the_use_dpop_nonce_code_asks_for_a_nonce() {
        let nonce = [("dpop-nonce", "n-1")];
        let asks = |status, body| asks_for_dpop_nonce(&answer(status, &nonce, body));
        let use_nonce = r#"{"error":"use_dpop_nonce"}"#;
        assert!(asks(StatusCode::BAD_REQUEST, use_nonce));
        assert!(asks(StatusCode::UNAUTHORIZED, use_nonce));
        assert!(!asks(
            StatusCode::BAD_REQUEST,
            r#"{"error":"invalid_grant"}"#
        ));
        assert!(!asks(StatusCode::BAD_REQUEST, "not json"));
        assert!(!asks(StatusCode::INTERNAL_SERVER_ERROR, use_nonce));
        assert!(!asks(StatusCode::OK, use_nonce));
    }

    #[test]
    fn bearer_in_any_case_and_expires_in_as_number_or_digits() {
        for (token_type, expires_in) in [
            ("Bearer", "3600"),
            ("bearer", r#""3600""#),
            ("BEARER", "3600"),
        ] {
            let json = format!(
                r#"{{"token_type":"{token_type}","expires_in":{expires_in},"access_token":"a.b.c"}}"#
            );
            let token = parse(&json).unwrap();
            assert_eq!(token.authorization(), "Bearer a.b.c");
            let left = token.expiry().unwrap() - Instant::now();
            assert!(left <= Duration::from_secs(3600) && left > Duration::from_secs(3590));
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_missing_expires_in_is_the_default_or_none() {
        let json = br#"{"token_type":"Bearer","access_token":"a"}"#;
        let sent_at = Instant::now();
        assert_eq!(
            parse_token(json, sent_at, None, None).unwrap().expiry(),
            None
        );
        let token = parse_token(json, sent_at, Some(Duration::from_secs(300)), None).unwrap();
        assert_eq!(token.expiry(), Some(sent_at + Duration::from_secs(300)));
        let huge = parse_token(json, sent_at, Some(Duration::MAX), None).unwrap();
        assert_eq!(huge.expiry(), Some(sent_at + http_client::MAX_LIFETIME));
    }

    #[test]
    fn token_types_other_than_bearer_are_refused_clearly() {
        let with = |token_type: &str| {
            parse(&format!(
                r#"{{"token_type":"{token_type}","access_token":"a"}}"#
            ))
            .unwrap_err()
        };
        assert!(matches!(with("DPoP"), MalformedAnswer::DpopTokenType));
        assert!(matches!(with("dpop"), MalformedAnswer::DpopTokenType));
        assert!(matches!(with("mac"), MalformedAnswer::TokenType));
        assert!(matches!(with("N_A"), MalformedAnswer::TokenType));
    }

    #[test]
    fn a_dpop_request_wants_a_dpop_token_and_binds_it_to_its_key() {
        use crate::dpop::DpopKey;
        use crate::jose::Algorithm;
        use tower_bearer::TokenType;

        let key = DpopKey::generate(Algorithm::Es256).unwrap();
        let settings = |allow_bearer_downgrade| DpopSettings {
            key: key.clone(),
            allow_bearer_downgrade,
        };
        let parse_with = |json: &str, dpop: &DpopSettings| {
            parse_token(json.as_bytes(), Instant::now(), None, Some(dpop))
        };
        for token_type in ["DPoP", "dpop", "DPOP"] {
            let json = format!(r#"{{"token_type":"{token_type}","access_token":"a.b"}}"#);
            let token = parse_with(&json, &settings(false)).unwrap();
            assert_eq!(token.token_type(), TokenType::Dpop);
            assert_eq!(token.authorization(), "DPoP a.b");
            assert_eq!(token.binding_key().unwrap().id(), key.thumbprint());
        }
        let bearer = r#"{"token_type":"Bearer","access_token":"a.b"}"#;
        assert!(matches!(
            parse_with(bearer, &settings(false)),
            Err(MalformedAnswer::BearerDowngrade)
        ));
        let downgraded = parse_with(bearer, &settings(true)).unwrap();
        assert_eq!(downgraded.token_type(), TokenType::Bearer);
        assert!(downgraded.binding_key().is_none());
        assert!(matches!(
            parse_with(
                r#"{"token_type":"mac","access_token":"a"}"#,
                &settings(true)
            ),
            Err(MalformedAnswer::TokenType)
        ));
    }

    #[test]
    fn errors_name_the_member_never_the_value() {
        let cases = [
            (
                r#"{"token_type":"Bearer","access_token":"SECRET value"}"#,
                "AccessToken(Character { at: 6 })",
            ),
            (
                r#"{"token_type":["SECRET"],"access_token":"a"}"#,
                "NotAString(\"token_type\")",
            ),
        ];
        for (json, expected) in cases {
            let error = parse(json).unwrap_err();
            let printed = format!("{error:?} {error}");
            assert!(printed.starts_with(expected), "{json}: {printed}");
            assert!(!printed.contains("SECRET"), "{printed}");
        }
    }

    #[test]
    fn error_responses_are_typed_cleaned_and_redacted() {
        let body = r#"{"error":"invalid_client","error_description":"client secret s3cr3t-value\nis wrong","error_uri":"https://as.example/errors/s3cr3t-value"}"#;
        let secrets = Secrets::from_iter(["s3cr3t-value"]);
        let response = parse_error(StatusCode::UNAUTHORIZED, body.as_bytes(), &secrets).unwrap();
        assert_eq!(response.code(), &ErrorCode::InvalidClient);
        assert_eq!(
            response.description(),
            Some("client secret [REDACTED]is wrong")
        );
        assert_eq!(response.uri(), Some("https://as.example/errors/[REDACTED]"));
        assert!(response.is_permanent());
        assert_eq!(
            response.to_string(),
            "401 invalid_client: client secret [REDACTED]is wrong <https://as.example/errors/[REDACTED]>"
        );
        let long = format!(
            r#"{{"error":"x_{}","error_description":"{}"}}"#,
            "y".repeat(100),
            "z".repeat(500)
        );
        let response =
            parse_error(StatusCode::BAD_REQUEST, long.as_bytes(), &Secrets::new()).unwrap();
        assert_eq!(response.code().as_str().len(), MAX_CODE);
        assert!(!response.is_permanent());
        assert_eq!(response.description().unwrap().len(), MAX_TEXT);
        for not_an_error in ["<html>", "{}", r#"{"error":7}"#, r#"{"error":""}"#, "[]"] {
            assert_eq!(
                parse_error(
                    StatusCode::BAD_REQUEST,
                    not_an_error.as_bytes(),
                    &Secrets::new()
                ),
                None,
                "{not_an_error}"
            );
        }
    }

    /// Every answer of the server says so, with or without a hint, for the cache to share the
    /// failure with the replicas of a store; the status and the code are the server's.
    #[test]
    fn every_refusal_carries_the_servers_answer() {
        let token_endpoint = "https://as.example/token".parse().unwrap();
        let cases = [
            (
                StatusCode::SERVICE_UNAVAILABLE,
                vec![],
                "<html>down</html>",
                None,
            ),
            (
                StatusCode::SERVICE_UNAVAILABLE,
                vec![("retry-after", "3")],
                "<html>down</html>",
                None,
            ),
            (
                StatusCode::BAD_REQUEST,
                vec![],
                r#"{"error":"invalid_client"}"#,
                Some("invalid_client"),
            ),
            (
                StatusCode::SERVICE_UNAVAILABLE,
                vec![("retry-after", "3")],
                r#"{"error":"temporarily_unavailable"}"#,
                Some("temporarily_unavailable"),
            ),
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                vec![],
                r#"{"error":"server_error"}"#,
                Some("server_error"),
            ),
        ];
        for (status, headers, body, code) in cases {
            let error = token_from(
                answer(status, &headers, body),
                &token_endpoint,
                &Secrets::new(),
                None,
                None,
            )
            .unwrap_err();
            let found = ServerAnswer::find(&error).unwrap_or_else(|| panic!("{error:?}"));
            assert_eq!((found.status(), found.error()), (status, code), "{body}");
        }
    }

    #[test]
    fn permanent_refusals_carry_a_permanent_hint_and_waits_a_delay() {
        let refused = token_from(
            answer(StatusCode::BAD_REQUEST, &[], r#"{"error":"invalid_grant"}"#),
            &"https://as.example/token".parse().unwrap(),
            &Secrets::new(),
            None,
            None,
        )
        .unwrap_err();
        assert!(refused.is_permanent(), "{refused:?}");
        assert_eq!(
            tower_bearer::RetryAfter::find(&refused).map(tower_bearer::RetryAfter::delay),
            Some(None)
        );

        let busy = token_from(
            answer(
                StatusCode::SERVICE_UNAVAILABLE,
                &[("retry-after", "12")],
                r#"{"error":"temporarily_unavailable"}"#,
            ),
            &"https://as.example/token".parse().unwrap(),
            &Secrets::new(),
            None,
            None,
        )
        .unwrap_err();
        assert!(!busy.is_permanent());
        assert_eq!(
            tower_bearer::RetryAfter::find(&busy).map(tower_bearer::RetryAfter::delay),
            Some(Some(Duration::from_secs(12)))
        );

        let limited = token_from(
            answer(
                StatusCode::TOO_MANY_REQUESTS,
                &[("retry-after", "999999")],
                "<html>slow down</html>",
            ),
            &"https://as.example/token".parse().unwrap(),
            &Secrets::new(),
            None,
            None,
        )
        .unwrap_err();
        assert!(matches!(
            &limited,
            OAuth2Error::Status {
                status: StatusCode::TOO_MANY_REQUESTS,
                url,
                ..
            } if url == "https://as.example/token"
        ));
        assert_eq!(
            tower_bearer::RetryAfter::find(&limited).map(tower_bearer::RetryAfter::delay),
            Some(Some(http_client::MAX_RETRY_AFTER))
        );

        let flaky = token_from(
            answer(
                StatusCode::INTERNAL_SERVER_ERROR,
                &[],
                r#"{"error":"server_error"}"#,
            ),
            &"https://as.example/token".parse().unwrap(),
            &Secrets::new(),
            None,
            None,
        )
        .unwrap_err();
        assert!(!flaky.is_permanent());
        assert_eq!(
            tower_bearer::RetryAfter::find(&flaky).map(tower_bearer::RetryAfter::delay),
            None
        );
    }
}
