//! Any bytes as the body of an error answer: a problem whose texts are bounded, free of
//! control characters and of the credential, never a panic.
#![no_main]

use http::StatusCode;
use libfuzzer_sys::fuzz_target;
use tower_bearer_apivideo::parse;

const SECRET: &str = "fuzz-SECRET-key";

fuzz_target!(|body: &[u8]| {
    let problem = parse::problem(StatusCode::BAD_REQUEST, body, SECRET);
    assert_eq!(problem.status(), StatusCode::BAD_REQUEST);
    for text in [problem.title(), problem.type_uri()].into_iter().flatten() {
        assert!(text.chars().count() <= 200);
        assert!(!text.chars().any(char::is_control));
        assert!(!text.contains(SECRET));
    }
    assert!(!format!("{problem} {problem:?}").contains(SECRET));
});
