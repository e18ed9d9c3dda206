//! tower-bearer: bearer-token authentication for tower HTTP clients that looks after itself.
#![deny(unsafe_code)]
#![warn(missing_docs, rust_2018_idioms, unreachable_pub)]

#[cfg(feature = "apivideo")]
pub mod apivideo;
