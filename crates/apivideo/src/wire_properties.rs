//! api.video's problem parser fed arbitrary input: a problem with bounded, clean texts, never
//! a panic, and no secret in what it prints, in any form the request sent it. (Its token
//! answers are read by `tower_bearer_provider::parse_token`, property-tested there; the fuzz
//! targets under `fuzz/` do both without a bound on the input.)

use http::StatusCode;
use proptest::prelude::*;

use super::wire::parse_problem;
use tower_bearer_provider::Secrets;

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 2048,
        // A failing input is printed; this parser needs no replay file.
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// Any bytes and any status: a problem with bounded, clean texts and no secret.
    #[test]
    fn problem_parser_takes_any_bytes(
        status in 400u16..600,
        body in proptest::collection::vec(any::<u8>(), 0..512),
    ) {
        let status = StatusCode::from_u16(status).unwrap();
        let problem = parse_problem(status, &body, &Secrets::from_iter(["SECRET"]));
        prop_assert_eq!(problem.status(), status);
        for text in [problem.title(), problem.type_uri()].into_iter().flatten() {
            prop_assert!(text.chars().count() <= 200);
            prop_assert!(!text.chars().any(char::is_control));
        }
    }

    /// Problem documents whose texts may hold the secret as the JSON body sent it (escaped)
    /// or as it is, with control characters and anything around it.
    #[test]
    fn problem_texts_never_show_the_secret(
        before in "[ -~\\n\\t\u{7f}é]{0,300}",
        after in "[ -~\\n\\t]{0,300}",
        secret in "[A-Za-z0-9\"\\\\/+]{8,64}",
        escaped in any::<bool>(),
    ) {
        let echoed = if escaped {
            let json = serde_json::to_string(&secret).unwrap();
            json[1..json.len() - 1].to_owned()
        } else {
            secret.clone()
        };
        let title = serde_json::to_string(&format!("{before}{echoed}{after}")).unwrap();
        let body = format!(r#"{{"title":{title},"type":{title},"status":401}}"#);
        let problem = parse_problem(StatusCode::UNAUTHORIZED, body.as_bytes(), &Secrets::from_iter([secret.as_str()]));
        let printed = format!("{problem} {problem:?}");
        prop_assert!(!printed.contains(&echoed), "{}", printed);
    }
}
