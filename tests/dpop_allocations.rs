//! A DPoP proof is one heap allocation: the JWS, which the header value then owns.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use http::{Method, Uri};
use tower_bearer::dpop::DpopKey;
use tower_bearer::jose::Algorithm;

/// The system allocator, counting this thread's allocations (the harness's other threads
/// never show up), as `tests/allocations.rs` does.
struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: every method forwards to `System` with the caller's own arguments; counting touches
// no memory the caller owns.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        // SAFETY: forwarded as is.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded as is.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        // SAFETY: forwarded as is.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations(f: impl FnOnce()) -> u64 {
    let before = ALLOCATIONS.with(Cell::get);
    f();
    ALLOCATIONS.with(Cell::get) - before
}

#[test]
fn a_proof_is_one_allocation() {
    let target: Uri = "https://api.example.com/v1/accounts/42?page=2"
        .parse()
        .unwrap();
    for algorithm in [Algorithm::Es256, Algorithm::EdDsa] {
        let key = DpopKey::generate(algorithm).unwrap();
        // Whatever is set up lazily on first use (ring's CPU feature detection) is not a proof's.
        key.proof(&Method::GET, &target, Some("token"), Some("nonce"))
            .unwrap();
        let mut proof = None;
        let count = allocations(|| {
            proof = Some(
                key.proof(&Method::GET, &target, Some("token"), Some("nonce"))
                    .unwrap(),
            );
        });
        assert_eq!(count, 1, "{algorithm}");
        // A URI longer than the claims' inline buffer costs one more, no more.
        let long: Uri = format!("https://api.example.com{}", "/segment".repeat(200))
            .parse()
            .unwrap();
        let count = allocations(|| drop(key.proof(&Method::GET, &long, None, None).unwrap()));
        assert_eq!(count, 2, "{algorithm}");
    }
}
