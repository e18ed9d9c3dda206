//! Any bytes as the body of a token endpoint's error answer: an RFC 6749 error response whose
//! texts are bounded, free of control characters and of the secret, or none; never a panic.
#![no_main]

use http::StatusCode;
use libfuzzer_sys::fuzz_target;
use tower_bearer_oauth2::parse;

const SECRET: &str = "fuzz-SECRET-client";

fuzz_target!(|body: &[u8]| {
    if let Some(response) = parse::error(StatusCode::BAD_REQUEST, body, SECRET) {
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        let code = response.code().as_str();
        for text in [response.description(), response.uri(), Some(code)]
            .into_iter()
            .flatten()
        {
            assert!(text.chars().count() <= 200);
            assert!(!text.chars().any(char::is_control));
            assert!(!text.contains(SECRET));
        }
        assert!(!format!("{response} {response:?}").contains(SECRET));
    }
});
