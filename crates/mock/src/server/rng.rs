//! Seeded randomness and the encodings the mock's tokens and ids are made of.
//!
//! No dependency: a SplitMix64 generator is all a mock needs. It is fast, passes the usual
//! statistical tests, and is reproducible from its seed, which the chaos dice rely on.
//! It is not a cryptographic generator: the mock's tokens only have to be unique and
//! realistically shaped, never unguessable.

// The OAuth 2.0 mock draws only opaque tokens; the api.video mock's ids, JWT-shaped tokens and
// chaos dice use the rest.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};

/// The URL-safe base64 alphabet (RFC 4648 §5), which JWT segments use.
pub(crate) const BASE64URL: &[u8; 64] =
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// Letters and digits: what api.video ids (`vi…`) are made of.
pub(crate) const ALPHANUMERIC: &[u8; 62] =
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

const HEX: &[u8; 16] = b"0123456789abcdef";

/// A SplitMix64 generator.
#[derive(Clone)]
pub(crate) struct SplitMix64(u64);

impl SplitMix64 {
    pub(crate) const fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// A generator seeded differently in every call, even within one process and one clock tick.
    pub(crate) fn from_entropy() -> Self {
        static CALLS: AtomicU64 = AtomicU64::new(0);
        // std's `RandomState` carries per-process random keys: a seed without a dependency.
        let seed = RandomState::new().hash_one(CALLS.fetch_add(1, Ordering::Relaxed));
        Self(seed)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        scramble(self.0)
    }

    /// Uniform in `[0, 1)`, from the top 53 bits (all an `f64` mantissa holds).
    pub(crate) fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// True with probability `rate` (0 never, 1 always).
    pub(crate) fn chance(&mut self, rate: f64) -> bool {
        self.next_f64() < rate
    }

    /// Appends `len` characters drawn from `alphabet`.
    pub(crate) fn push_chars(&mut self, out: &mut String, alphabet: &[u8], len: usize) {
        // The modulo bias over a 64-bit draw is far below anything a test could notice.
        let size = alphabet.len() as u64;
        out.extend((0..len).map(|_| char::from(alphabet[(self.next_u64() % size) as usize])));
    }
}

/// SplitMix64's output function. Every step of it (xor-shift, multiplication by an odd
/// constant) can be undone, so distinct inputs give distinct outputs: counters scrambled by
/// it stay unique while looking random.
pub(crate) fn scramble(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Appends `value` as 16 lowercase hex digits.
pub(crate) fn push_hex_u64(out: &mut String, value: u64) {
    out.extend(
        (0..16)
            .rev()
            .map(|nibble| char::from(HEX[(value >> (nibble * 4)) as usize & 0xf])),
    );
}

/// Appends `bytes` in unpadded URL-safe base64, as JWT segments are.
pub(crate) fn push_base64url(out: &mut String, bytes: &[u8]) {
    for chunk in bytes.chunks(3) {
        let mut group = [0u8; 3];
        group[..chunk.len()].copy_from_slice(chunk);
        let bits = u32::from(group[0]) << 16 | u32::from(group[1]) << 8 | u32::from(group[2]);
        // n input bytes carry 8n bits: n + 1 six-bit characters, no padding.
        for index in 0..=chunk.len() {
            out.push(char::from(
                BASE64URL[(bits >> (18 - 6 * index)) as usize & 0x3f],
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_sequence() {
        let mut a = SplitMix64::new(42);
        let mut b = SplitMix64::new(42);
        assert!((0..100).all(|_| a.next_u64() == b.next_u64()));
    }

    #[test]
    fn floats_stay_in_the_unit_interval() {
        let mut rng = SplitMix64::new(7);
        assert!(
            (0..10_000)
                .map(|_| rng.next_f64())
                .all(|x| (0.0..1.0).contains(&x))
        );
        assert!((0..100).all(|_| !rng.chance(0.0) && rng.chance(1.0)));
    }

    #[test]
    fn base64url_matches_rfc4648_vectors() {
        let encode = |input: &str| {
            let mut out = String::new();
            push_base64url(&mut out, input.as_bytes());
            out
        };
        assert_eq!(encode(""), "");
        assert_eq!(encode("f"), "Zg");
        assert_eq!(encode("fo"), "Zm8");
        assert_eq!(encode("foo"), "Zm9v");
        assert_eq!(encode("foob"), "Zm9vYg");
        assert_eq!(encode("fooba"), "Zm9vYmE");
        assert_eq!(encode("foobar"), "Zm9vYmFy");
        assert_eq!(encode("\u{3ff}\u{3ff}"), "z7_Pvw");
    }

    #[test]
    fn hex_is_fixed_width() {
        let mut out = String::new();
        push_hex_u64(&mut out, 0xabc);
        assert_eq!(out, "0000000000000abc");
    }
}
