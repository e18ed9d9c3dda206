//! Any bytes as a `WWW-Authenticate` field value: challenges or an error, never a panic; what
//! was read before an error writes back and reads the same; the parser and RFC 9110's grammar
//! (as a regular expression) agree on which values are well-formed; and the default
//! `TokenVerdict` takes an unreadable 401 for a rejected token and never a 403 for one.
#![no_main]

use std::sync::LazyLock;

use http::header::WWW_AUTHENTICATE;
use http::{HeaderMap, HeaderValue, StatusCode};
use libfuzzer_sys::fuzz_target;
use regex::bytes::Regex;
use tower_bearer::{TokenVerdict, fuzzing};

static GRAMMAR: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(&fuzzing::www_authenticate_grammar()).unwrap());

fuzz_target!(|value: &[u8]| {
    let well_formed = fuzzing::www_authenticate(value);
    assert_eq!(well_formed, GRAMMAR.is_match(value));
    let Ok(value) = HeaderValue::from_bytes(value) else {
        return;
    };
    let headers = HeaderMap::from_iter([(WWW_AUTHENTICATE, value)]);
    let unauthorized = TokenVerdict::of(StatusCode::UNAUTHORIZED, &headers);
    assert!(well_formed || unauthorized == TokenVerdict::Rejected);
    assert_ne!(
        TokenVerdict::of(StatusCode::FORBIDDEN, &headers),
        TokenVerdict::Rejected
    );
});
