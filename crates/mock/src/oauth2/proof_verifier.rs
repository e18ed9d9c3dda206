//! Checking proofs as a server does (RFC 9449 §4.3): for the mock servers.

use std::collections::{HashSet, VecDeque};
use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{HeaderName, Method, Uri};
use serde_json::Value;

use tower_bearer_oauth2::jose::{Algorithm, PublicJwk, UnverifiedJws, VerifyError};

mod normalise;

use normalise::normalise;

/// The request header that carries a proof.
pub(crate) static DPOP: HeaderName = HeaderName::from_static("dpop");

/// The answer header that carries the server's nonce.
pub(crate) static DPOP_NONCE: HeaderName = HeaderName::from_static("dpop-nonce");

/// Why a server refuses a proof: one reason per check, in the order they are made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProofRejection {
    /// Not a compact JWS whose header and claims are JSON objects.
    Malformed,
    /// `typ` is not `dpop+jwt`.
    Type,
    /// `alg` missing, `none`, symmetric, unknown, or not the `jwk`'s kind of key.
    Algorithm,
    /// `jwk` missing, not a key we know, or carrying private members.
    Key,
    /// The signature does not verify with `jwk`.
    Signature,
    /// `htm` missing or not the request's method.
    Method,
    /// `htu` missing or, normalised, not the request's URI.
    Uri,
    /// `iat` missing or not a whole number of seconds.
    IssuedAt,
    /// `iat` further in the past than the window.
    Stale,
    /// `iat` further in the future than the window.
    IssuedInFuture,
    /// `jti` missing, or not a non-empty string.
    MissingJti,
    /// This `jti` was accepted before.
    Replayed,
    /// A resource request whose proof has no `ath`, or one that is not the token's.
    AccessTokenHash,
    /// The server requires a nonce and the proof has none.
    MissingNonce,
    /// The proof's nonce is neither the server's current one nor its previous one.
    StaleNonce,
}

impl fmt::Display for ProofRejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// What the request a proof came with was, as the server saw it.
#[derive(Clone, Copy, Debug)]
pub struct ProofContext<'a> {
    /// The request's method.
    pub method: &'a Method,
    /// The absolute URI the server was asked for (its own origin and the request's path).
    pub uri: &'a Uri,
    /// The token presented with the proof, on a resource request.
    pub access_token: Option<&'a str>,
    /// The nonces the server accepts (current, and previous during a rotation); empty when it
    /// requires none.
    pub nonces: &'a [&'a str],
    /// The server's clock: `iat` must be within the verifier's window of it.
    pub now: SystemTime,
}

/// A server's proof checks, with the `jti`s it has accepted.
#[derive(Debug)]
pub struct ProofVerifier {
    window: u64,
    /// The algorithms accepted; all the crate verifies when empty.
    algorithms: Vec<Algorithm>,
    seen: Mutex<SeenJtis>,
}

#[derive(Debug, Default)]
struct SeenJtis {
    capacity: usize,
    /// In the order accepted, with the second they can be forgotten at.
    order: VecDeque<(u64, String)>,
    jtis: HashSet<String>,
}

impl ProofVerifier {
    /// Accepts an `iat` up to `window` away from the server's clock, either way, and remembers
    /// up to `capacity` `jti`s; a `jti` is forgotten once its proof would be too old anyway
    /// (or, past `capacity`, the oldest first: a mock's bound, not a production server's).
    pub fn new(window: Duration, capacity: usize) -> ProofVerifier {
        ProofVerifier {
            window: window.as_secs(),
            algorithms: Vec::new(),
            seen: Mutex::new(SeenJtis {
                capacity,
                ..SeenJtis::default()
            }),
        }
    }

    /// Accepts only proofs signed with one of `algorithms` (what a server lists as its
    /// `dpop_signing_alg_values_supported`); others are [`ProofRejection::Algorithm`].
    pub fn with_algorithms(mut self, algorithms: Vec<Algorithm>) -> ProofVerifier {
        self.algorithms = algorithms;
        self
    }

    /// Checks `proof` for the request `context` describes, and returns the proof key's
    /// thumbprint, for the server to compare with the token's `cnf.jkt`.
    pub fn verify(
        &self,
        proof: &str,
        context: &ProofContext<'_>,
    ) -> Result<String, ProofRejection> {
        let jws = UnverifiedJws::decode(proof).map_err(|e| match e {
            VerifyError::UnsupportedAlgorithm => ProofRejection::Algorithm,
            _ => ProofRejection::Malformed,
        })?;
        if !self.algorithms.is_empty() && !self.algorithms.contains(&jws.algorithm()) {
            return Err(ProofRejection::Algorithm);
        }
        let text = |map: &serde_json::Map<String, Value>, name: &str| {
            map.get(name).and_then(Value::as_str).map(str::to_owned)
        };
        if text(jws.header(), "typ").as_deref() != Some("dpop+jwt") {
            return Err(ProofRejection::Type);
        }
        let key = jws
            .header()
            .get("jwk")
            .ok_or(ProofRejection::Key)
            .and_then(|jwk| PublicJwk::from_json(jwk, true).map_err(|_| ProofRejection::Key))?;
        jws.verify_with(&key).map_err(|e| match e {
            VerifyError::AlgorithmMismatch => ProofRejection::Algorithm,
            VerifyError::InvalidKey => ProofRejection::Key,
            _ => ProofRejection::Signature,
        })?;

        let claims = jws.claims();
        if text(claims, "htm").as_deref() != Some(context.method.as_str()) {
            return Err(ProofRejection::Method);
        }
        let expected = normalise(&context.uri.to_string());
        let claimed = text(claims, "htu").and_then(|uri| normalise(&uri));
        if claimed.is_none() || claimed != expected {
            return Err(ProofRejection::Uri);
        }
        let iat = claims
            .get("iat")
            .and_then(Value::as_u64)
            .ok_or(ProofRejection::IssuedAt)?;
        let now = context
            .now
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.as_secs());
        if iat.saturating_add(self.window) < now {
            return Err(ProofRejection::Stale);
        }
        if iat > now.saturating_add(self.window) {
            return Err(ProofRejection::IssuedInFuture);
        }
        let jti = text(claims, "jti")
            .filter(|jti| !jti.is_empty())
            .ok_or(ProofRejection::MissingJti)?;
        if let Some(token) = context.access_token {
            if text(claims, "ath").as_deref() != Some(access_token_hash(token).as_str()) {
                return Err(ProofRejection::AccessTokenHash);
            }
        }
        if !context.nonces.is_empty() {
            match text(claims, "nonce") {
                None => return Err(ProofRejection::MissingNonce),
                Some(nonce) if !context.nonces.contains(&nonce.as_str()) => {
                    return Err(ProofRejection::StaleNonce);
                }
                Some(_) => {}
            }
        }
        // Last, so that a proof refused for another reason does not use its jti up.
        let forget_at = iat.saturating_add(self.window).max(now).saturating_add(1);
        if !self.seen.lock().unwrap().insert(jti, now, forget_at) {
            return Err(ProofRejection::Replayed);
        }
        Ok(key.thumbprint())
    }
}

impl SeenJtis {
    /// Says whether `jti` is new (and remembers it).
    fn insert(&mut self, jti: String, now: u64, forget_at: u64) -> bool {
        while let Some((at, _)) = self.order.front() {
            if *at > now {
                break;
            }
            if let Some((_, old)) = self.order.pop_front() {
                self.jtis.remove(&old);
            }
        }
        if self.jtis.contains(&jti) {
            return false;
        }
        if self.order.len() >= self.capacity.max(1) {
            if let Some((_, old)) = self.order.pop_front() {
                self.jtis.remove(&old);
            }
        }
        self.jtis.insert(jti.clone());
        self.order.push_back((forget_at, jti));
        true
    }
}

#[cfg(test)]
mod tests;

/// `ath`: base64url of the SHA-256 of an access token (RFC 9449 §4.2).
fn access_token_hash(access_token: &str) -> String {
    use base64::Engine;

    let digest = ring::digest::digest(&ring::digest::SHA256, access_token.as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest)
}
