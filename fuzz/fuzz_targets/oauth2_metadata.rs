//! Any bytes as an authorization server's metadata document: a token endpoint only when the
//! document names the expected issuer, a typed error otherwise, never a panic.
#![no_main]

use http::uri::{Scheme, Uri};
use libfuzzer_sys::fuzz_target;
use tower_bearer_oauth2::parse;

const ISSUER: &str = "https://as.example";

fuzz_target!(|body: &[u8]| {
    if let Ok(endpoint) = parse::metadata(body, ISSUER) {
        // An absolute http(s) URI with a host, kept as the document wrote it (a scheme is
        // case-insensitive: `HTTPS://` is https).
        let uri: Uri = endpoint.parse().expect("a URI");
        assert!(uri.scheme() == Some(&Scheme::HTTPS) || uri.scheme() == Some(&Scheme::HTTP));
        assert!(uri.host().is_some_and(|host| !host.is_empty()));
        let metadata: serde_json::Value = serde_json::from_slice(body).expect("parsed as JSON");
        assert_eq!(metadata["issuer"], ISSUER);
        assert_eq!(metadata["token_endpoint"], endpoint.as_str());
    }
});
