//! GCP's metadata server: a service account's access token.
