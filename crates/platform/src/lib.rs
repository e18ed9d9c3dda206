//! Token providers that take their credential from the platform the service runs on: GCP's
//! metadata server ([`gcp`]) and Azure managed identity ([`azure`]).
//!
//! Each is a refresher, a tower `Service` from [`TokenRequest`](tower_bearer::TokenRequest) to
//! [`Token`](tower_bearer::Token), sending through whatever HTTP client you give it, as the
//! other providers of `tower-bearer` do. `tower-bearer-mock` has a mock of each endpoint.

#![deny(unsafe_code)]
#![warn(missing_docs, rust_2018_idioms, unreachable_pub)]

pub mod azure;
pub mod gcp;

#[cfg(test)]
mod testing;
