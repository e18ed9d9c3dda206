//! `TokenVerdict::of`, which runs on every response: what it costs on a plain 200, on a 401
//! with a `Bearer` challenge, and on the other answers it reads. The floor is the status check
//! alone (`status == 401`), what the layer did before there was a verdict.
//!
//! For instruction counts (stable on a loaded machine), one case at a time:
//!
//! ```text
//! VERDICT_PROFILE=ok_200 valgrind --tool=callgrind \
//!     --toggle-collect='*profiled_verdicts*' target/release/deps/verdict-<hash>
//! ```
//!
//! decides 100,000 times on that case's response; the collected instruction count divided by
//! 100,000 is the cost of one decision.

use std::hint::black_box;
use std::time::Duration;

use criterion::Criterion;
use http::header::{CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE, DATE, SERVER, WWW_AUTHENTICATE};
use http::{HeaderMap, HeaderValue, StatusCode};
use tower_bearer::TokenVerdict;

/// Each case: its name, the response's status and headers, and the verdict it must get.
fn cases() -> Vec<(&'static str, StatusCode, HeaderMap, TokenVerdict)> {
    let ordinary = || {
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert(CONTENT_LENGTH, HeaderValue::from_static("1234"));
        headers.insert(
            DATE,
            HeaderValue::from_static("Mon, 30 Nov 2026 10:00:00 GMT"),
        );
        headers.insert(SERVER, HeaderValue::from_static("nginx"));
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        headers.insert("x-request-id", HeaderValue::from_static("4f2c9a1e"));
        headers
    };
    let challenge = |value| {
        let mut headers = ordinary();
        headers.insert(WWW_AUTHENTICATE, HeaderValue::from_static(value));
        headers
    };
    let grpc = |status| {
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
        headers.insert("grpc-status", HeaderValue::from_static(status));
        headers.insert("grpc-message", HeaderValue::from_static("token expired"));
        headers
    };
    vec![
        (
            "ok_200",
            StatusCode::OK,
            ordinary(),
            TokenVerdict::Unrelated,
        ),
        (
            "bearer_401",
            StatusCode::UNAUTHORIZED,
            challenge(
                r#"Bearer realm="api", error="invalid_token", error_description="The access token expired""#,
            ),
            TokenVerdict::Rejected,
        ),
        (
            "insufficient_scope_403",
            StatusCode::FORBIDDEN,
            challenge(r#"Bearer realm="api", error="insufficient_scope", scope="videos:write""#),
            TokenVerdict::InsufficientScope,
        ),
        (
            "not_found_404",
            StatusCode::NOT_FOUND,
            ordinary(),
            TokenVerdict::Unrelated,
        ),
        (
            "grpc_unauthenticated_200",
            StatusCode::OK,
            grpc("16"),
            TokenVerdict::Rejected,
        ),
    ]
}

fn verdicts(c: &mut Criterion) {
    let mut group = c.benchmark_group("verdict");
    group
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_millis(1500));
    for (name, status, headers, expected) in cases() {
        assert_eq!(TokenVerdict::of(status, &headers), expected, "{name}");
        group.bench_function(name, |b| {
            b.iter(|| TokenVerdict::of(black_box(status), black_box(&headers)))
        });
    }
    group.bench_function("floor_status_check", |b| {
        b.iter(|| black_box(StatusCode::OK) == StatusCode::UNAUTHORIZED)
    });
    group.finish();
}

// ===== profile mode =====

const PROFILED_VERDICTS: usize = 100_000;

/// The one function callgrind collects in profile mode.
#[inline(never)]
fn profiled_verdicts(status: StatusCode, headers: &HeaderMap) -> usize {
    let mut rejected = 0;
    for _ in 0..PROFILED_VERDICTS {
        let verdict = TokenVerdict::of(black_box(status), black_box(headers));
        rejected += usize::from(verdict == TokenVerdict::Rejected);
    }
    rejected
}

fn main() {
    if let Ok(case) = std::env::var("VERDICT_PROFILE") {
        let names: Vec<_> = cases().iter().map(|(name, ..)| *name).collect();
        let Some((_, status, headers, _)) = cases().into_iter().find(|(name, ..)| *name == case)
        else {
            panic!("VERDICT_PROFILE={case}: expected one of {names:?}");
        };
        let rejected = profiled_verdicts(status, &headers);
        println!("{case}: {PROFILED_VERDICTS} verdicts, {rejected} rejected");
        return;
    }
    let mut criterion = Criterion::default().without_plots().configure_from_args();
    verdicts(&mut criterion);
    criterion.final_summary();
}
