//! What DPoP costs: a proof beside the ES256 signature inside it, and a request through the
//! layer with a DPoP token beside the same request with a bearer token.
//!
//! In one run, side by side:
//! - `raw_es256_signature`: ring's ECDSA P-256 signature over a typical proof's signing input
//!   (the floor: a proof cannot cost less);
//! - `proof_resource_request`: `DpopKey::proof` for a GET with an access token (hashed into
//!   `ath`) and a nonce, the header value included;
//! - `proof_token_endpoint`: the same for a POST to a token endpoint, without token or nonce;
//! - `claims_as_serde_json_value`: the claims built as a `serde_json::Value` and serialised,
//!   the way the proof does not write them, to show what that way would add;
//! - `request_bearer`: one request (the hot-path bench's GET) through `BearerAuth` with its
//!   defaults and a valid bearer token, to an inner service that answers 200 with a
//!   `DPoP-Nonce` at once, as a server that requires nonces does;
//! - `request_dpop`: the same request with a DPoP token bound to an ES256 key: the layer adds
//!   a new proof (the token's `ath` kept with it, the origin's nonce learned from the first
//!   answer) and reads each answer's nonce.
//!
//! Requests are driven by hand as in `hot_path.rs` (one poll, a no-op waker, requests built
//! outside the timed stretches). After criterion's report, a table gives every variant
//! measured interleaved (each in turn, a hundred times) with its ratio to the raw signature
//! in the same round, and the difference between the two requests.
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
//! runs that variant 1,000 times and nothing else (a request variant builds its request
//! inside the count, the same for both); the collected instruction count divided by 1,000 is
//! the cost of one.

mod common;

use std::cell::RefCell;
use std::convert::Infallible;
use std::future::{Ready, ready};
use std::hint::black_box;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use criterion::Criterion;
use http::{HeaderValue, Method, Request, Response, Uri};
use http_body_util::Empty;
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
use tower::{BoxError, Service, service_fn};
use tower_bearer::{BearerAuth, Token, TokenCache, TokenRequest};
use tower_bearer_oauth2::dpop::DpopKey;
use tower_bearer_oauth2::jose::Algorithm;

use common::{HOUR, access_token, bearer_defaults, request, send_now, send_timed, warm};

/// An access token of a typical size (a signed JWT with a few claims).
const TOKEN: &str = "eyJhbGciOiJSUzI1NiIsInR5cCI6ImF0K2p3dCIsImtpZCI6IjIwMjQtMDYifQ.eyJpc3MiOiJodHRwczovL2FzLmV4YW1wbGUiLCJzdWIiOiJjbGllbnQtMTIzIiwiYXVkIjoiaHR0cHM6Ly9hcGkuZXhhbXBsZSIsImV4cCI6MTgwMDAwMzYwMCwiaWF0IjoxODAwMDAwMDAwLCJqdGkiOiJhYmMxMjMiLCJjbmYiOnsiamt0IjoiMFpjT0NPUlpOWXktRFdwcXEzMGpaeUpHSFROMGQySGdsQlYzdWlndUE0SSJ9fQ.c2lnbmF0dXJlLW9mLWFib3V0LTI1Ni1ieXRlcy1mb3ItYW4tUlMyNTYta2V5LXdoaWNoLWlzLXdoYXQtbW9zdC1zZXJ2ZXJzLXVzZQ";
const NONCE: &str = "eyJ7S_zG.eyJH0-Z.HX4w-7v";

const VARIANTS: [&str; 6] = [
    "raw_es256_signature",
    "proof_resource_request",
    "proof_token_endpoint",
    "claims_as_serde_json_value",
    "request_bearer",
    "request_dpop",
];

/// The variant ratios are taken to.
const FLOOR: &str = "raw_es256_signature";

// ===== the inner service =====

/// Answers 200 with an empty body and the server's nonce at once, as an API that requires
/// DPoP nonces does on every answer.
#[derive(Clone, Copy, Debug, Default)]
struct Ok200WithNonce;

impl<B> Service<Request<B>> for Ok200WithNonce {
    type Response = Response<Empty<Bytes>>;
    type Error = Infallible;
    type Future = Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        black_box(&request);
        let mut response = Response::new(Empty::new());
        response
            .headers_mut()
            .insert("dpop-nonce", HeaderValue::from_static(NONCE));
        ready(Ok(response))
    }
}

/// A cache holding a valid one-hour token that `make` builds from the bench's access token.
fn cache_of(make: impl Fn(&str) -> Token + Send + Sync + 'static) -> TokenCache {
    let access = Arc::<str>::from(access_token());
    let make = Arc::new(make);
    warm(TokenCache::new(service_fn(move |_: TokenRequest| {
        let token = make(&access).expires_in(HOUR);
        async move { Ok::<_, BoxError>(token) }
    })))
}

// ===== the variants =====

struct Variants {
    key: DpopKey,
    resource: Uri,
    token_endpoint: Uri,
    raw: EcdsaKeyPair,
    rng: SystemRandom,
    signing_input: Vec<u8>,
    bearer: RefCell<BearerAuth<Ok200WithNonce>>,
    dpop: RefCell<BearerAuth<Ok200WithNonce>>,
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
        let bearer_cache = cache_of(|access| Token::bearer(access).expect("a token"));
        let bound = key.clone();
        let dpop_cache = cache_of(move |access| Token::bound(access, &bound).expect("a token"));
        let mut dpop = bearer_defaults(Ok200WithNonce, &dpop_cache);
        // The first answer gives the origin's nonce: every measured proof carries it.
        send_now(&mut dpop, request());
        Variants {
            key,
            resource,
            token_endpoint,
            raw,
            rng,
            signing_input,
            bearer: RefCell::new(bearer_defaults(Ok200WithNonce, &bearer_cache)),
            dpop: RefCell::new(dpop),
        }
    }

    /// Runs `name` `iters` times; the time it took (requests built outside it).
    fn timed(&self, name: &str, iters: u64) -> Duration {
        match name {
            "request_bearer" => send_timed(&mut *self.bearer.borrow_mut(), iters),
            "request_dpop" => send_timed(&mut *self.dpop.borrow_mut(), iters),
            _ => {
                let start = Instant::now();
                for _ in 0..iters {
                    self.run(name);
                }
                start.elapsed()
            }
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
            "request_bearer" => drop(send_now(&mut *self.bearer.borrow_mut(), request())),
            "request_dpop" => drop(send_now(&mut *self.dpop.borrow_mut(), request())),
            other => panic!("no variant {other}: expected one of {VARIANTS:?}"),
        }
    }
}

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

/// Every variant in turn, `ROUNDS` times, each round `ITERS` operations of each: medians, and
/// ratios to the raw signature within each round; then what DPoP adds to a request.
fn interleaved(variants: &Variants) {
    const ROUNDS: usize = 100;
    const ITERS: u64 = 200;
    let shown = [
        "raw_es256_signature",
        "proof_resource_request",
        "proof_token_endpoint",
        "request_bearer",
        "request_dpop",
    ];
    let mut contenders: Vec<common::Contender<'_>> = shown
        .iter()
        .map(|&name| {
            let run: Box<dyn FnMut(u64) -> Duration + '_> =
                Box::new(move |iters| variants.timed(name, iters));
            (name, run)
        })
        .collect();
    common::interleaved(
        "dpop, interleaved: 100 rounds of 200 operations per variant, in turn",
        "ns/op",
        false,
        FLOOR,
        &mut contenders,
        ROUNDS,
        ITERS,
    );
    // The request's overhead beyond the bearer request, round by round.
    let (mut bearer, mut dpop, mut raw) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        raw.push(variants.timed("raw_es256_signature", ITERS).as_nanos() as f64 / ITERS as f64);
        bearer.push(variants.timed("request_bearer", ITERS).as_nanos() as f64 / ITERS as f64);
        dpop.push(variants.timed("request_dpop", ITERS).as_nanos() as f64 / ITERS as f64);
    }
    let added: Vec<f64> = dpop.iter().zip(&bearer).map(|(d, b)| d - b).collect();
    let over_raw: Vec<f64> = added.iter().zip(&raw).map(|(a, r)| a / r).collect();
    println!(
        "request_dpop − request_bearer: {:.1} ns/request (median of {ROUNDS} rounds), {:.3}× the raw signature of the same round",
        common::median(&added),
        common::median(&over_raw),
    );
    println!();
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
        .without_plots()
        .configure_from_args();

    let variants = Variants::new();
    let mut group = criterion.benchmark_group("dpop");
    for name in VARIANTS {
        group.bench_function(name, |b| b.iter_custom(|iters| variants.timed(name, iters)));
    }
    group.finish();
    criterion.final_summary();
    // Not when criterion only tests that the functions run, or lists them.
    if !std::env::args().any(|arg| arg == "--test" || arg == "--list") {
        interleaved(&variants);
    }
}
