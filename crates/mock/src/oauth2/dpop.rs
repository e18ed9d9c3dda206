//! DPoP at the mock (RFC 9449): the proofs the token endpoint and the API check, the nonce
//! the server issues and rotates, and what it counts.

use std::time::{Duration, SystemTime};

use http::{HeaderMap, HeaderValue, Method, Response, StatusCode, Uri};
use tokio::time::Instant;

use super::counters::{AuthServerCounters, DpopRefusals};
use super::proof_verifier::{DPOP, DPOP_NONCE, ProofContext, ProofRejection, ProofVerifier};
use super::reply::Refusal;
use crate::server::MockBody;
use crate::server::rng::{self, SplitMix64};
use tower_bearer_oauth2::jose::Algorithm;

/// How far a proof's `iat` may be from the server's clock, either way.
const IAT_WINDOW: Duration = Duration::from_secs(60);

/// How many `jti`s the server remembers at most (each is forgotten anyway once its proof is
/// too old to be accepted).
const JTI_CAPACITY: usize = 100_000;

/// The algorithms the server accepts unless told otherwise.
pub(super) const DEFAULT_ALGORITHMS: [Algorithm; 3] =
    [Algorithm::Es256, Algorithm::EdDsa, Algorithm::Rs256];

/// The server's DPoP settings, fixed when it starts.
#[derive(Clone, Debug)]
pub(super) struct DpopPolicy {
    /// Whether the server implements DPoP at all; if not, it ignores proofs.
    pub(super) supported: bool,
    /// Whether a token request must carry a proof.
    pub(super) required: bool,
    /// Whether proofs must carry the server's nonce.
    pub(super) nonces: bool,
    /// How often the nonce changes by itself; never if `None`.
    pub(super) nonce_ttl: Option<Duration>,
    pub(super) algorithms: Vec<Algorithm>,
}

impl Default for DpopPolicy {
    fn default() -> Self {
        DpopPolicy {
            supported: true,
            required: false,
            nonces: false,
            nonce_ttl: None,
            algorithms: DEFAULT_ALGORITHMS.to_vec(),
        }
    }
}

impl DpopPolicy {
    /// `dpop_signing_alg_values_supported`, for the metadata.
    pub(super) fn algorithm_names(&self) -> Vec<&'static str> {
        self.algorithms.iter().map(|alg| alg.as_str()).collect()
    }
}

/// What changes: the `jti`s the server has accepted, and its nonce.
pub(super) struct DpopState {
    verifier: ProofVerifier,
    nonce: String,
    /// The nonce before a scheduled rotation, still accepted until the next one; none after
    /// [`rotate`](Self::rotate) told by the test.
    previous: Option<String>,
    rotated_at: Instant,
    rng: SplitMix64,
}

impl DpopState {
    pub(super) fn new(policy: &DpopPolicy) -> Self {
        let mut state = DpopState {
            verifier: ProofVerifier::new(IAT_WINDOW, JTI_CAPACITY)
                .with_algorithms(policy.algorithms.clone()),
            nonce: String::new(),
            previous: None,
            rotated_at: Instant::now(),
            rng: SplitMix64::from_entropy(),
        };
        state.rotate(false);
        state
    }

    /// The nonce every answer carries now, rotated first if its time is up; `None` when the
    /// server requires no nonce.
    pub(super) fn current_nonce(&mut self, policy: &DpopPolicy) -> Option<String> {
        if !(policy.supported && policy.nonces) {
            return None;
        }
        if let Some(ttl) = policy.nonce_ttl {
            if self.rotated_at.elapsed() >= ttl {
                self.rotate(true);
            }
        }
        Some(self.nonce.clone())
    }

    /// A new nonce, now; the old one is still accepted only if `keep_previous`.
    pub(super) fn rotate(&mut self, keep_previous: bool) -> String {
        let mut nonce = String::with_capacity(24);
        nonce.push_str("mn_");
        self.rng.push_chars(&mut nonce, rng::BASE64URL, 22);
        let old = std::mem::replace(&mut self.nonce, nonce);
        self.previous = keep_previous.then_some(old);
        self.rotated_at = Instant::now();
        self.nonce.clone()
    }

    /// Checks the one proof in `headers` for the request `method` `uri` (with
    /// `access_token`, on an API request); the proof key's thumbprint.
    fn verify(
        &self,
        policy: &DpopPolicy,
        headers: &HeaderMap,
        method: &Method,
        uri: &Uri,
        access_token: Option<&str>,
    ) -> Result<String, Rejected> {
        let mut proofs = headers.get_all(&DPOP).iter();
        let (Some(proof), None) = (proofs.next(), proofs.next()) else {
            return Err(Rejected::MissingProof);
        };
        let proof = proof.to_str().map_err(|_| Rejected::MissingProof)?;
        let accepted: Vec<&str> = if policy.nonces {
            std::iter::once(self.nonce.as_str())
                .chain(self.previous.as_deref())
                .collect()
        } else {
            Vec::new()
        };
        let context = ProofContext {
            method,
            uri,
            access_token,
            nonces: &accepted,
            now: SystemTime::now(),
        };
        self.verifier
            .verify(proof, &context)
            .map_err(Rejected::Proof)
    }
}

/// Why a proof did not do.
enum Rejected {
    /// None, or more than one.
    MissingProof,
    Proof(ProofRejection),
}

impl Rejected {
    fn is_nonce(&self) -> bool {
        matches!(
            self,
            Rejected::Proof(ProofRejection::MissingNonce | ProofRejection::StaleNonce)
        )
    }

    /// Counts a refusal other than a nonce challenge.
    fn count(&self, refused: &mut DpopRefusals) {
        use ProofRejection as R;
        let counter = match self {
            Rejected::MissingProof => &mut refused.missing_proof,
            Rejected::Proof(R::Signature) => &mut refused.signature,
            Rejected::Proof(R::Method) => &mut refused.method,
            Rejected::Proof(R::Uri) => &mut refused.uri,
            Rejected::Proof(R::IssuedAt | R::Stale | R::IssuedInFuture) => &mut refused.issued_at,
            Rejected::Proof(R::Replayed) => &mut refused.replayed,
            Rejected::Proof(R::AccessTokenHash) => &mut refused.access_token_hash,
            Rejected::Proof(R::Malformed | R::Type | R::Algorithm | R::Key | R::MissingJti) => {
                &mut refused.malformed
            }
            Rejected::Proof(R::MissingNonce | R::StaleNonce) => return,
        };
        *counter += 1;
    }

    fn describe(&self) -> String {
        match self {
            Rejected::MissingProof => "exactly one DPoP proof is required".to_owned(),
            Rejected::Proof(rejection) => format!("DPoP proof refused: {rejection}"),
        }
    }
}

/// The token endpoint's check: the thumbprint of the proof's key when there is a good proof
/// (the tokens are then bound to it), `None` when there is none and none is required, or the
/// refusal: `400 use_dpop_nonce` (RFC 9449 §8) or `400 invalid_dpop_proof` (§5).
pub(super) fn check_token_request(
    policy: &DpopPolicy,
    state: &DpopState,
    counters: &mut AuthServerCounters,
    headers: &HeaderMap,
    token_endpoint: &Uri,
) -> Result<Option<String>, Refusal> {
    if !policy.supported || (!policy.required && !headers.contains_key(&DPOP)) {
        return Ok(None);
    }
    match state.verify(policy, headers, &Method::POST, token_endpoint, None) {
        Ok(jkt) => {
            counters.dpop_token_requests += 1;
            Ok(Some(jkt))
        }
        Err(rejected) if rejected.is_nonce() => {
            counters.token_nonce_challenges += 1;
            Err(Refusal::new(
                StatusCode::BAD_REQUEST,
                "use_dpop_nonce",
                "the DPoP proof must carry the server's nonce",
            ))
        }
        Err(rejected) => {
            rejected.count(&mut counters.dpop_refused);
            Err(Refusal::new(
                StatusCode::BAD_REQUEST,
                "invalid_dpop_proof",
                rejected.describe(),
            ))
        }
    }
}

/// An API request carrying a DPoP-bound token.
pub(super) struct BoundRequest<'a> {
    pub(super) method: &'a Method,
    /// Absolute: the server's origin and the request's path.
    pub(super) uri: &'a Uri,
    pub(super) headers: &'a HeaderMap,
    pub(super) access_token: &'a str,
    /// Whether the token came under the `DPoP` scheme (not `Bearer`).
    pub(super) dpop_scheme: bool,
    /// The thumbprint the token is bound to.
    pub(super) jkt: &'a str,
}

/// The API's check of a request carrying a DPoP-bound token: the scheme, its proof (with
/// `ath` and the nonce), and that the proof's key is the token's. A refusal is the `error`
/// of the `DPoP` challenge to answer with (RFC 9449 §7.1).
pub(super) fn check_resource_request(
    policy: &DpopPolicy,
    state: &DpopState,
    counters: &mut AuthServerCounters,
    request: &BoundRequest<'_>,
) -> Result<(), &'static str> {
    if !request.dpop_scheme {
        counters.dpop_refused.bearer_scheme += 1;
        return Err("invalid_token");
    }
    let checked = state.verify(
        policy,
        request.headers,
        request.method,
        request.uri,
        Some(request.access_token),
    );
    match checked {
        Ok(proved) if proved == request.jkt => {
            counters.dpop_resource_requests += 1;
            Ok(())
        }
        Ok(_) => {
            counters.dpop_refused.key_mismatch += 1;
            Err("invalid_token")
        }
        Err(rejected) if rejected.is_nonce() => {
            counters.resource_nonce_challenges += 1;
            Err("use_dpop_nonce")
        }
        Err(rejected) => {
            rejected.count(&mut counters.dpop_refused);
            Err("invalid_dpop_proof")
        }
    }
}

/// Adds the server's current nonce to an answer (RFC 9449 §8.2, §9: any answer may carry
/// one, and a client learns it from each).
pub(super) fn add_nonce(response: &mut Response<MockBody>, nonce: Option<&str>) {
    if let Some(value) = nonce.and_then(|nonce| HeaderValue::from_str(nonce).ok()) {
        response.headers_mut().insert(DPOP_NONCE.clone(), value);
    }
}
