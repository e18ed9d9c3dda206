//! The token endpoint's error parser and the metadata parser fed arbitrary input: an error
//! response or a typed error, never a panic, and nothing secret in what they print. (Token
//! answers are read by `tower_bearer_provider::parse_token`, property-tested there; the fuzz
//! targets under `fuzz/` do all three without a bound on the input.)

use http::StatusCode;
use proptest::prelude::*;

use crate::answer::parse_error;
use crate::discovery::parse_metadata;
use crate::error::MAX_TEXT;
use tower_bearer_provider::Secrets;

const ISSUER: &str = "https://as.example";

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 2048,
        // A failing input is printed; these parsers need no replay file.
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// Any bytes and any status: an error response with bounded, clean texts and no secret,
    /// or none.
    #[test]
    fn error_parser_takes_any_bytes(
        status in 400u16..600,
        body in proptest::collection::vec(any::<u8>(), 0..512),
    ) {
        let status = StatusCode::from_u16(status).unwrap();
        if let Some(response) = parse_error(status, &body, &Secrets::from_iter(["SECRET"])) {
            prop_assert_eq!(response.status(), status);
            prop_assert!(!response.code().as_str().is_empty());
            for text in [response.description(), response.uri(), Some(response.code().as_str())]
                .into_iter()
                .flatten()
            {
                prop_assert!(text.chars().count() <= MAX_TEXT);
                prop_assert!(!text.chars().any(char::is_control));
            }
        }
    }

    /// Error documents whose texts may hold the secret, as the request sent it in a form
    /// body (form-urlencoded) or as it is, with control characters and anything around it.
    #[test]
    fn error_texts_never_show_the_secret(
        before in "[ -~\\n\\t\u{7f}é]{0,300}",
        after in "[ -~\\n\\t]{0,300}",
        secret in "[A-Za-z0-9+/=&% ]{8,64}",
        other in "[A-Za-z0-9]{8,64}",
        encoded in any::<bool>(),
    ) {
        let echoed = if encoded {
            form_urlencoded::byte_serialize(secret.as_bytes()).collect()
        } else {
            secret.clone()
        };
        let text = serde_json::to_string(&format!("{before}{echoed}{after}{other}")).unwrap();
        let body = format!(
            r#"{{"error":{text},"error_description":{text},"error_uri":{text}}}"#
        );
        let response = parse_error(StatusCode::BAD_REQUEST, body.as_bytes(), &Secrets::from_iter([secret.as_str(), other.as_str()]));
        let printed = format!("{response:?} {}", response.as_ref().map(ToString::to_string).unwrap_or_default());
        prop_assert!(!printed.contains(&echoed), "{}", printed);
        prop_assert!(!printed.contains(&other), "{}", printed);
    }

    /// Any bytes as metadata: a token endpoint only for the right issuer, never a panic.
    #[test]
    fn metadata_parser_takes_any_bytes(body in proptest::collection::vec(any::<u8>(), 0..512)) {
        if let Ok(endpoint) = parse_metadata(&body, ISSUER) {
            prop_assert!(endpoint.token_endpoint.url.starts_with("http"));
        }
    }

    /// Metadata documents with members of any type, any value: the issuer must match.
    #[test]
    fn metadata_parser_takes_any_member_values(
        issuer in prop_oneof![Just(format!(r#""{ISSUER}""#)), json_value()],
        token_endpoint in prop_oneof![Just(r#""https://as.example/token""#.to_owned()), json_value()],
    ) {
        let body = format!(r#"{{"issuer":{issuer},"token_endpoint":{token_endpoint}}}"#);
        match parse_metadata(body.as_bytes(), ISSUER) {
            Ok(endpoint) => {
                prop_assert_eq!(issuer, format!(r#""{ISSUER}""#));
                prop_assert!(endpoint.token_endpoint.uri.host().is_some());
            }
            Err(error) => {
                let printed = format!("{error} {error:?}");
                prop_assert!(!printed.chars().any(char::is_control), "{}", printed);
            }
        }
    }
}

/// Any JSON value a metadata member might hold: URIs good and bad, and other types.
fn json_value() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("null".to_owned()),
        Just(r#""https://as.example/token""#.to_owned()),
        Just(r#""http://as.example/token""#.to_owned()),
        Just(r#""https://user:pass@as.example/token""#.to_owned()),
        Just(r#""/token""#.to_owned()),
        any::<i64>().prop_map(|n| n.to_string()),
        any::<bool>().prop_map(|b| b.to_string()),
        "[ -~]{0,40}".prop_map(|s| serde_json::to_string(&s).unwrap()),
        Just("[]".to_owned()),
        Just(r#"{"SECRET":1}"#.to_owned()),
    ]
}
