//! Tokens bound to a key the client holds, and the proof each attempt with one carries.
//!
//! A bearer token works for whoever holds it. A *bound* token works only with a proof, made
//! with the client's key, in every request that carries it: DPoP (RFC 9449) is such a scheme,
//! and `tower-bearer-oauth2`'s `DpopKey` implements these traits; an mTLS-bound or
//! signed-request scheme could too.
//!
//! The layer, the tonic layer and the reqwest middleware need no more than these traits:
//! for each attempt of a request sent with a bound token they ask its [`Prover`] for a new
//! proof, let the [`Proof`] learn from the answer (a server's nonce), and send the request
//! once more, with the same token and a new proof, when the answer says a new proof may
//! succeed (RFC 9449's `use_dpop_nonce`). A token store shares a bound token only between
//! caches that hold the same [`BindingKey`], and binds what it loads to it.
//!
//! A token is bound by the provider that obtained it: [`Token::bound`](crate::Token::bound).

use std::fmt;
use std::sync::Arc;

use http::{HeaderMap, HeaderName, Method, Uri};
use tower::BoxError;

use crate::TokenType;

/// A key that tokens can be bound to, such as a DPoP key.
pub trait BindingKey: fmt::Debug + Send + Sync + 'static {
    /// The scheme tokens bound to this key are sent with (`DPoP`).
    fn token_type(&self) -> TokenType;

    /// A name for the key that every holder of the same key computes alike (a DPoP key's
    /// RFC 7638 thumbprint). A store shares bound tokens only between caches whose keys have
    /// the same id.
    fn id(&self) -> &str;

    /// What the proofs of `access_token` need (a DPoP key: itself and the token's hash),
    /// computed once for the token's life.
    fn bind(&self, access_token: &str) -> Arc<dyn Prover>;
}

/// Makes the proof each attempt with one bound token carries.
pub trait Prover: fmt::Debug + Send + Sync + 'static {
    /// The key the token is bound to.
    fn key(&self) -> &dyn BindingKey;

    /// The header the proof goes in (`DPoP`). A request kept to be sent again is kept without
    /// it: every attempt gets a new proof.
    fn header_name(&self) -> &HeaderName;

    /// Puts a new proof for an attempt of `method` `uri` in `headers`, replacing any before
    /// it; returns what the attempt proved, to learn from its answer.
    ///
    /// An error means the request cannot be sent: the caller gets it, and nothing is sent.
    fn prove(
        &self,
        method: &Method,
        uri: &Uri,
        headers: &mut HeaderMap,
    ) -> Result<Box<dyn Proof>, BoxError>;
}

/// What one attempt proved, kept until its answer arrives.
pub trait Proof: Send + Sync {
    /// Learns what the answer's `headers` teach (a DPoP server's next nonce, which it may send
    /// with any answer); true if the answer gave what this proof lacked, so that the same
    /// token with a new proof may succeed where this one did not.
    ///
    /// Called only with answers from the origin the attempt was sent to.
    fn learn(&self, headers: &HeaderMap) -> bool;
}
