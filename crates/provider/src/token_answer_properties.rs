//! The token answer parser fed arbitrary input, under each provider's reading of
//! `expires_in`: a token or a typed error, never a panic, and nothing secret in what it
//! prints. (The providers' fuzz targets under `fuzz/` do the same without a bound on the
//! input.)

use std::time::Duration;

use proptest::prelude::*;
use tokio::time::Instant;
use tower_bearer::Token;

use crate::{ExpiresIn, MAX_LIFETIME, Malformed, parse_token};

/// api.video's reading, and OAuth 2.0's without and with a default lifetime.
const RULES: [ExpiresIn; 3] = [
    ExpiresIn::Required,
    ExpiresIn::Lenient { default: None },
    ExpiresIn::Lenient {
        default: Some(Duration::from_secs(300)),
    },
];

/// A bearer token, as both providers take one.
fn bearer(body: &[u8], rule: ExpiresIn) -> Result<Token, Malformed> {
    parse_token(body, Instant::now(), rule, |token_type, access_token| {
        if !token_type.eq_ignore_ascii_case("bearer") {
            return Err(Malformed::Missing("a bearer token_type"));
        }
        Token::bearer(access_token).map_err(|_| Malformed::Missing("a valid access_token"))
    })
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 2048,
        // A failing input is printed; this parser needs no replay file.
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// Any bytes: a token or a typed error, never a panic; a token is always sendable, and
    /// has a lifetime where the rule wants one.
    #[test]
    fn any_bytes(body in proptest::collection::vec(any::<u8>(), 0..512)) {
        for rule in RULES {
            if let Ok(token) = bearer(&body, rule) {
                prop_assert!(token.authorization().is_sensitive());
                prop_assert!(!token.expose_access_token().is_empty());
                if rule == ExpiresIn::Required {
                    prop_assert!(token.expiry().is_some());
                }
            }
        }
    }

    /// JSON objects shaped almost like a token answer: members of any type, any value.
    #[test]
    fn any_member_values(
        token_type in json_value(),
        expires_in in json_value(),
        access_token in json_value(),
        refresh_token in json_value(),
    ) {
        let body = format!(
            r#"{{"token_type":{token_type},"expires_in":{expires_in},"access_token":{access_token},"refresh_token":{refresh_token}}}"#
        );
        for rule in RULES {
            match bearer(body.as_bytes(), rule) {
                Ok(token) => {
                    prop_assert!(token_type.eq_ignore_ascii_case(r#""bearer""#));
                    if let Some(expiry) = token.expiry() {
                        prop_assert!(expiry - Instant::now() <= MAX_LIFETIME);
                    }
                }
                Err(error) => {
                    // Names the member, never quotes the value.
                    let printed = format!("{error} {error:?}");
                    prop_assert!(!printed.contains("SECRET"), "{}", printed);
                }
            }
        }
    }
}

/// Any JSON value, with a secret-looking string among the choices.
fn json_value() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("null".to_owned()),
        Just(r#""Bearer""#.to_owned()),
        Just(r#""bearer""#.to_owned()),
        Just(r#""DPoP""#.to_owned()),
        Just(r#""3600""#.to_owned()),
        Just(r#""SECRET value""#.to_owned()),
        Just(r#""SECRET-ok""#.to_owned()),
        any::<i64>().prop_map(|n| n.to_string()),
        any::<u64>().prop_map(|n| n.to_string()),
        "[0-9]{1,25}".prop_map(|digits| format!(r#""{digits}""#)),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| format!("{f:e}")),
        any::<bool>().prop_map(|b| b.to_string()),
        "[ -~]{0,40}".prop_map(|s| serde_json::to_string(&s).unwrap()),
        Just("[]".to_owned()),
        Just(r#"{"SECRET":1}"#.to_owned()),
    ]
}
