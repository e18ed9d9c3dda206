//! Any bytes as the body of a token response: a token or a typed error, never a panic, and a
//! token that can always be sent.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tower_bearer_apivideo::parse;

fuzz_target!(|body: &[u8]| {
    if let Ok(token) = parse::token(body) {
        assert!(token.authorization().is_sensitive());
        assert!(token.expiry().is_some());
        assert!(!token.expose_access_token().is_empty());
    }
});
