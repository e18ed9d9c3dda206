//! api.video's answer parsers fed arbitrary input: a token or a typed error, never a panic,
//! and nothing secret in what they print. (The fuzz targets under `fuzz/` do the same
//! without a bound on the input.)

use std::time::Duration;

use http::StatusCode;
use proptest::prelude::*;
use tokio::time::Instant;

use super::Malformed;
use super::wire::{parse_problem, parse_token};
use tower_bearer::Token;

fn token(body: &[u8]) -> Result<Token, Malformed> {
    parse_token(body, Instant::now())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 2048,
        // A failing input is printed; these parsers need no replay file.
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// Any bytes: a token or a typed error, never a panic; a token is always sendable.
    #[test]
    fn token_parser_takes_any_bytes(body in proptest::collection::vec(any::<u8>(), 0..512)) {
        if let Ok(token) = token(&body) {
            prop_assert!(token.authorization().is_sensitive());
            prop_assert!(token.expiry().is_some());
        }
    }

    /// JSON objects shaped almost like a token: fields of any type, any value.
    #[test]
    fn token_parser_takes_any_field_values(
        token_type in json_value(),
        expires_in in json_value(),
        access_token in json_value(),
        refresh_token in json_value(),
    ) {
        let body = format!(
            r#"{{"token_type":{token_type},"expires_in":{expires_in},"access_token":{access_token},"refresh_token":{refresh_token}}}"#
        );
        match token(body.as_bytes()) {
            Ok(token) => {
                prop_assert!(token_type.eq_ignore_ascii_case(r#""bearer""#));
                let lifetime = token.expiry().unwrap() - Instant::now();
                prop_assert!(lifetime <= Duration::from_secs(86_400));
            }
            Err(error) => {
                // Names the field, never quotes the value.
                let printed = format!("{error} {error:?}");
                prop_assert!(!printed.contains("SECRET"), "{}", printed);
            }
        }
    }

    /// Any bytes and any status: a problem with bounded, clean texts and no secret.
    #[test]
    fn problem_parser_takes_any_bytes(
        status in 400u16..600,
        body in proptest::collection::vec(any::<u8>(), 0..512),
    ) {
        let status = StatusCode::from_u16(status).unwrap();
        let problem = parse_problem(status, &body, "SECRET");
        prop_assert_eq!(problem.status(), status);
        for text in [problem.title(), problem.type_uri()].into_iter().flatten() {
            prop_assert!(text.chars().count() <= 200);
            prop_assert!(!text.chars().any(char::is_control));
        }
    }

    /// Problem documents whose texts may hold the secret, control characters and anything.
    #[test]
    fn problem_texts_never_show_the_secret(
        before in "[ -~\\n\\t\u{7f}é]{0,300}",
        after in "[ -~\\n\\t]{0,300}",
        secret in "[A-Za-z0-9]{8,64}",
    ) {
        let title = serde_json::to_string(&format!("{before}{secret}{after}")).unwrap();
        let body = format!(r#"{{"title":{title},"type":{title},"status":401}}"#);
        let problem = parse_problem(StatusCode::UNAUTHORIZED, body.as_bytes(), &secret);
        let printed = format!("{problem} {problem:?}");
        prop_assert!(!printed.contains(&secret), "{}", printed);
    }
}

/// Any JSON value, with a secret-looking string among the choices.
fn json_value() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("null".to_owned()),
        Just(r#""Bearer""#.to_owned()),
        Just(r#""bearer""#.to_owned()),
        Just(r#""SECRET value""#.to_owned()),
        Just(r#""SECRET-ok""#.to_owned()),
        any::<i64>().prop_map(|n| n.to_string()),
        any::<u64>().prop_map(|n| n.to_string()),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| format!("{f:e}")),
        any::<bool>().prop_map(|b| b.to_string()),
        "[ -~]{0,40}".prop_map(|s| serde_json::to_string(&s).unwrap()),
        Just("[]".to_owned()),
        Just(r#"{"SECRET":1}"#.to_owned()),
    ]
}
