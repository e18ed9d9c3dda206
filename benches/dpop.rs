//! What a DPoP proof costs, beside the ES256 signature inside it.
//!
//! In one run, side by side:
//! - `raw_es256_signature`: ring's ECDSA P-256 signature over a typical proof's signing input
//!   (the floor: a proof cannot cost less);
//! - `proof_resource_request`: `DpopKey::proof` for a GET with an access token (hashed into
//!   `ath`) and a nonce, the header value included;
//! - `proof_token_endpoint`: the same for a POST to a token endpoint, without token or nonce;
//! - `claims_as_serde_json_value`: the claims built as a `serde_json::Value` and serialised,
//!   the way the proof does not write them, to show what that way would add.
//!
//! `cargo bench --bench dpop --features dpop`
//!
//! For instruction counts (stable on a loaded machine), one variant at a time:
//!
//! ```text
//! DPOP_PROFILE=proof_resource_request valgrind --tool=callgrind \
//!     --toggle-collect='*profiled*' target/release/deps/dpop-<hash>
//! ```
//!
//! runs that variant 1,000 times and nothing else; the collected instruction count divided by
//! 1,000 is the cost of one.

use std::hint::black_box;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use criterion::Criterion;
use http::{Method, Uri};
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
use tower_bearer::dpop::DpopKey;
use tower_bearer::jose::Algorithm;

/// An access token of a typical size (a signed JWT with a few claims).
const TOKEN: &str = "eyJhbGciOiJSUzI1NiIsInR5cCI6ImF0K2p3dCIsImtpZCI6IjIwMjQtMDYifQ.eyJpc3MiOiJodHRwczovL2FzLmV4YW1wbGUiLCJzdWIiOiJjbGllbnQtMTIzIiwiYXVkIjoiaHR0cHM6Ly9hcGkuZXhhbXBsZSIsImV4cCI6MTgwMDAwMzYwMCwiaWF0IjoxODAwMDAwMDAwLCJqdGkiOiJhYmMxMjMiLCJjbmYiOnsiamt0IjoiMFpjT0NPUlpOWXktRFdwcXEzMGpaeUpHSFROMGQySGdsQlYzdWlndUE0SSJ9fQ.c2lnbmF0dXJlLW9mLWFib3V0LTI1Ni1ieXRlcy1mb3ItYW4tUlMyNTYta2V5LXdoaWNoLWlzLXdoYXQtbW9zdC1zZXJ2ZXJzLXVzZQ";
const NONCE: &str = "eyJ7S_zG.eyJH0-Z.HX4w-7v";

/// The variants, by name, for a profiler.
struct Variants {
    key: DpopKey,
    resource: Uri,
    token_endpoint: Uri,
    raw: EcdsaKeyPair,
    rng: SystemRandom,
    signing_input: Vec<u8>,
}

impl Variants {
    fn new() -> Variants {
        let key = DpopKey::generate(Algorithm::Es256).expect("a key");
        let resource: Uri = "https://api.example.com/v1/accounts/42/transactions?page=2"
            .parse()
            .expect("a URI");
        let token_endpoint: Uri = "https://as.example.com/oauth2/token"
            .parse()
            .expect("a URI");
        // The signing input of a typical proof: everything before the last dot.
        let sample = key
            .proof(&Method::GET, &resource, Some(TOKEN), Some(NONCE))
            .expect("a proof");
        let sample = sample.to_str().expect("ASCII");
        let signing_input = sample.as_bytes()[..sample.rfind('.').expect("a JWS")].to_vec();
        let rng = SystemRandom::new();
        let pkcs8 =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).expect("a key");
        let raw = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .expect("a key");
        Variants {
            key,
            resource,
            token_endpoint,
            raw,
            rng,
            signing_input,
        }
    }

    fn run(&self, name: &str) {
        match name {
            "raw_es256_signature" => drop(black_box(
                self.raw
                    .sign(&self.rng, black_box(&self.signing_input))
                    .expect("signed"),
            )),
            "proof_resource_request" => drop(black_box(
                self.key
                    .proof(
                        black_box(&Method::GET),
                        black_box(&self.resource),
                        Some(TOKEN),
                        Some(NONCE),
                    )
                    .expect("a proof"),
            )),
            "proof_token_endpoint" => drop(black_box(
                self.key
                    .proof(
                        black_box(&Method::POST),
                        black_box(&self.token_endpoint),
                        None,
                        None,
                    )
                    .expect("a proof"),
            )),
            "claims_as_serde_json_value" => drop(black_box(claims_as_value())),
            other => panic!("no variant {other}"),
        }
    }
}

const VARIANTS: [&str; 4] = [
    "raw_es256_signature",
    "proof_resource_request",
    "proof_token_endpoint",
    "claims_as_serde_json_value",
];

fn claims_as_value() -> Vec<u8> {
    let iat = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let claims = serde_json::json!({
        "jti": "0123456789abcdefghijkl",
        "htm": black_box(&Method::GET).as_str(),
        "htu": "https://api.example.com/v1/accounts/42/transactions",
        "iat": iat,
        "ath": "fUHyO2r2Z3DZ53EsNrWBb0xWXoaNy59IiKCAqksmQEo",
        "nonce": NONCE,
    });
    serde_json::to_vec(&claims).expect("JSON")
}

#[inline(never)]
fn profiled(variants: &Variants, name: &str) {
    for _ in 0..1000 {
        variants.run(name);
    }
}

fn main() {
    if let Ok(name) = std::env::var("DPOP_PROFILE") {
        let variants = Variants::new();
        // Once outside the count: lazy set-up (CPU feature detection) is no proof's cost.
        variants.run(&name);
        profiled(&variants, &name);
        return;
    }
    let mut criterion = Criterion::default()
        .sample_size(50)
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(4))
        .configure_from_args();

    let variants = Variants::new();
    let mut group = criterion.benchmark_group("dpop");
    for name in VARIANTS {
        group.bench_function(name, |b| b.iter(|| variants.run(name)));
    }
    group.finish();
    criterion.final_summary();
}
