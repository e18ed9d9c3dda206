//! What the mock has seen and done, for tests to assert on.

/// What a [`MockAuthServer`](super::MockAuthServer) has seen and done, for tests to assert
/// on. Read it with [`MockAuthServer::counters`](super::MockAuthServer::counters).
///
/// Counters may be added in later versions: read the fields, compare with
/// `AuthServerCounters::default()`, but do not build one field by field.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct AuthServerCounters {
    /// Requests to the token endpoint, whatever became of them.
    pub token_requests: u64,
    /// Tokens issued for client credentials.
    pub client_credentials_grants: u64,
    /// Tokens issued for a refresh token.
    pub refresh_token_grants: u64,
    /// Tokens issued for a JWT-bearer assertion.
    pub jwt_bearer_grants: u64,
    /// Tokens issued for a token exchange.
    pub token_exchange_grants: u64,
    /// Requests whose client authenticated with `client_secret_basic`.
    pub client_secret_basic: u64,
    /// Requests whose client authenticated with `client_secret_post`.
    pub client_secret_post: u64,
    /// Requests whose client authenticated with `private_key_jwt`.
    pub private_key_jwt: u64,
    /// Requests from a public client (`none`).
    pub public_client: u64,
    /// Answers `invalid_client`: unknown client, wrong secret or key, an assertion expired,
    /// replayed or for another audience, another method than the client's.
    pub invalid_client: u64,
    /// Answers `invalid_grant`: a refresh token unknown, used, revoked or another client's;
    /// an assertion or subject token refused.
    pub invalid_grant: u64,
    /// Answers `invalid_request` or `unsupported_grant_type`.
    pub invalid_request: u64,
    /// Refresh tokens presented again after use: each revoked its whole family (every
    /// refresh and access token descending from the same grant).
    pub refresh_token_reuses: u64,
    /// Token requests answered with an injected [`Fault`](super::Fault) instead of being
    /// handled (delays excepted).
    pub faults_injected: u64,
    /// Token requests held back by an injected delay (then handled as usual).
    pub delays_injected: u64,
    /// Requests for a metadata document, published or not.
    pub discovery_requests: u64,
    /// Requests to the protected API (`/api/...`).
    pub resource_requests: u64,
    /// API requests answered 401: no token, an unknown, expired or revoked one.
    pub resource_unauthorized: u64,
    /// API requests whose token was already past its expiry when they arrived: a client that
    /// tracks expiry should keep this at zero.
    pub expired_token_requests: u64,
    /// Token requests that carried a DPoP proof the server accepted.
    pub dpop_token_requests: u64,
    /// Token requests answered `400 use_dpop_nonce` with a `DPoP-Nonce`: the proof had no
    /// nonce, or an old one.
    pub token_nonce_challenges: u64,
    /// API requests answered `401 WWW-Authenticate: DPoP error="use_dpop_nonce"` with a
    /// `DPoP-Nonce`.
    pub resource_nonce_challenges: u64,
    /// API requests with a DPoP-bound token that the server accepted, proof and all.
    pub dpop_resource_requests: u64,
    /// What DPoP's checks refused, at the token endpoint and the API together, by reason.
    pub dpop_refused: DpopRefusals,
}

/// What the mock's DPoP checks refused, by reason, in
/// [`AuthServerCounters::dpop_refused`]. Nonce challenges are not refusals: they are counted
/// in [`AuthServerCounters::token_nonce_challenges`] and
/// [`AuthServerCounters::resource_nonce_challenges`].
///
/// Counters may be added in later versions, as in [`AuthServerCounters`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct DpopRefusals {
    /// No `DPoP` header where one was needed (a token request to a server that requires
    /// DPoP, an API request with a DPoP-bound token), or more than one.
    pub missing_proof: u64,
    /// Not a proof: not a compact JWS, `typ` not `dpop+jwt`, an `alg` that is not asymmetric
    /// or not one the server accepts, a `jwk` missing or carrying private parts, no `jti`.
    pub malformed: u64,
    /// The signature does not verify with the proof's own `jwk`.
    pub signature: u64,
    /// `htm` is not the request's method.
    pub method: u64,
    /// `htu` is not the request's URI.
    pub uri: u64,
    /// `iat` missing, or further than a minute from the server's clock.
    pub issued_at: u64,
    /// A `jti` the server has accepted before: the same proof sent twice.
    pub replayed: u64,
    /// `ath` missing, or the hash of another access token.
    pub access_token_hash: u64,
    /// The proof's key is not the one the token (`cnf.jkt`) or refresh token is bound to:
    /// a stolen token proved with the thief's own key.
    pub key_mismatch: u64,
    /// A DPoP-bound access token sent as `Authorization: Bearer`.
    pub bearer_scheme: u64,
}
