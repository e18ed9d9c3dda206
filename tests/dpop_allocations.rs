//! A DPoP proof is one heap allocation: the JWS, which the header value then owns.

use http::{Method, Uri};
use tower_bearer_oauth2::dpop::DpopKey;
use tower_bearer_oauth2::jose::Algorithm;

#[path = "../benches/common/counting.rs"]
mod counting;

/// The allocations `f` makes on this thread.
fn allocations(f: impl FnOnce()) -> u64 {
    allocated(f).0
}

/// The allocations `f` makes on this thread, and their bytes.
fn allocated(f: impl FnOnce()) -> (u64, u64) {
    let before = counting::allocated();
    f();
    let after = counting::allocated();
    (after.0 - before.0, after.1 - before.1)
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
        let (count, bytes) =
            allocated(|| drop(key.proof(&Method::GET, &long, None, None).unwrap()));
        assert_eq!(count, 2, "{algorithm}");
        // Room for the claims, not a multiple of them.
        assert!(bytes < 16 * 1024, "{algorithm}: {bytes} bytes");
        // And a long path of bytes the `htu` claim percent-encodes, three for one.
        let braces: Uri = format!("https://api.example.com/{}", "{}".repeat(500))
            .parse()
            .unwrap();
        let count = allocations(|| drop(key.proof(&Method::GET, &braces, None, None).unwrap()));
        assert_eq!(count, 2, "{algorithm}: a path to percent-encode");
        // So does a nonce too long for the inline buffer, with a short URI.
        let nonce = "n".repeat(1000);
        let (count, bytes) = allocated(|| {
            drop(
                key.proof(&Method::GET, &target, Some("token"), Some(&nonce))
                    .unwrap(),
            )
        });
        assert_eq!(count, 2, "{algorithm}: a long nonce");
        assert!(bytes < 16 * 1024, "{algorithm}: {bytes} bytes");
    }
}
