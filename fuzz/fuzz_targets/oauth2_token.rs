//! Any bytes as the body of a successful token endpoint answer: a token or a typed error,
//! never a panic, and a token that can always be sent.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tower_bearer_oauth2::parse;

fuzz_target!(|body: &[u8]| {
    match parse::token(body) {
        Ok(token) => {
            assert!(token.authorization().is_sensitive());
            assert!(!token.expose_access_token().is_empty());
        }
        Err(error) => {
            // Names the member at fault, never its value.
            let printed = format!("{error} {error:?}");
            assert!(!printed.contains("FUZZ-SECRET"), "{printed}");
        }
    }
});
