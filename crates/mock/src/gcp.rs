//! A mock of GCP's metadata server.
