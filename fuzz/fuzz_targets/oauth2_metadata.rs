//! Any bytes as an authorization server's metadata document: a token endpoint only when the
//! document names the expected issuer, a typed error otherwise, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tower_bearer::oauth2::parse;

const ISSUER: &str = "https://as.example";

fuzz_target!(|body: &[u8]| {
    if let Ok(endpoint) = parse::metadata(body, ISSUER) {
        assert!(endpoint.starts_with("http"));
        let metadata: serde_json::Value = serde_json::from_slice(body).expect("parsed as JSON");
        assert_eq!(metadata["issuer"], ISSUER);
    }
});
