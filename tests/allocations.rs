//! Heap allocations per request on the hot path (a valid token), for the variants of
//! `benches/hot_path.rs`: counts only, no timings, the same on every run.
//!
//! `cargo test --test allocations -- --nocapture` prints the table.

#[path = "../benches/common/mod.rs"]
mod common;

use bytes::Bytes;
use http::Request;
use http_body_util::Empty;
use tower::{Layer, Service};

use common::*;

// ===== the counting allocator =====

#[path = "../benches/common/counting.rs"]
mod counting;
use counting::allocated;

// ===== the count =====

const REQUESTS: u64 = 1_000;

/// Allocations (blocks, bytes) per request through `service`, the request built beforehand
/// and the response dropped within the count. Counted twice, to show the figure is steady.
fn per_request<S>(mut service: S) -> (u64, u64)
where
    S: Service<Request<Empty<Bytes>>>,
    S::Error: std::fmt::Debug,
{
    // First uses set up what lasts (arc-swap's slot for this thread, a shared buffer for a
    // header value cloned for the first time): not a per-request cost.
    for _ in 0..10 {
        drop(send_now(&mut service, request()));
    }
    let mut counts = [(0, 0); 2];
    for count in &mut counts {
        let requests: Vec<_> = (0..REQUESTS).map(|_| request()).collect();
        let before = allocated();
        for request in requests {
            drop(send_now(&mut service, request));
        }
        let after = allocated();
        *count = (after.0 - before.0, after.1 - before.1);
    }
    assert_eq!(
        counts[0], counts[1],
        "the same requests allocated differently"
    );
    let (blocks, bytes) = counts[0];
    assert_eq!(
        blocks % REQUESTS,
        0,
        "{blocks} allocations for {REQUESTS} requests"
    );
    (blocks / REQUESTS, bytes / REQUESTS)
}

#[test]
fn allocations_per_request() {
    let cache = warm_cache();
    let naive = warm_naive_cache();
    let rwlock = warm_rwlock_cache();
    let counts = [
        ("bare", per_request(Ok200)),
        ("add_authorization", per_request(add_authorization(Ok200))),
        ("rwlock", per_request(rwlock.layer(Ok200))),
        (
            "bearer_retry_off",
            per_request(bearer_retry_off(Ok200, &cache)),
        ),
        (
            "bearer_defaults",
            per_request(bearer_defaults(Ok200, &cache)),
        ),
        ("tower_retry", per_request(tower_retry(Ok200))),
        // A request to another origin passes through, without the token: counted, not logged
        // again, and no dearer than one sent with it.
        (
            "out_of_scope",
            per_request(
                tower_bearer::BearerAuthLayer::from_cache(
                    cache.clone(),
                    tower_bearer::Scope::origin("https://elsewhere.example").unwrap(),
                )
                .retry_unauthorized(false)
                .layer(Ok200),
            ),
        ),
        ("naive_mutex", per_request(naive.layer(Ok200))),
    ];

    println!("allocations per request (valid token, request built beforehand)");
    println!("  {:<18} {:>7} {:>7}", "variant", "blocks", "bytes");
    for (name, (blocks, bytes)) in counts {
        println!("  {name:<18} {blocks:>7} {bytes:>7}");
    }
    let blocks = |name: &str| counts.iter().find(|(n, _)| *n == name).unwrap().1.0;

    // The layer's promise, and the target: no more than a static header.
    assert_eq!(blocks("add_authorization"), 0);
    assert_eq!(blocks("rwlock"), 0);
    assert_eq!(blocks("bearer_retry_off"), 0);
    assert!(blocks("bearer_retry_off") <= blocks("add_authorization"));
    assert_eq!(blocks("out_of_scope"), 0);
    // Defaults keep a copy of the request for a retry after a 401; the naive cache boxes
    // its future. Neither is free: a count of 0 would mean the benchmark measures nothing.
    assert!(blocks("bearer_defaults") > 0);
    assert!(blocks("naive_mutex") > 0);
    assert_eq!(cache.stats().total().started, 1, "the token stayed valid");
}
