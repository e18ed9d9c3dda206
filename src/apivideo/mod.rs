//! api.video: the token provider, and (with the `mock` feature) an embedded mock server.

#[cfg(feature = "mock")]
pub mod mock;
