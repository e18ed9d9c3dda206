//! The proof a request carries when its token is bound to a key (DPoP, RFC 9449): a new one
//! for each attempt, and the nonce each answer gives. A bearer token proves nothing, and
//! without the `dpop` feature no token is bound to a key.

use http::Method;
use http::{HeaderMap, Uri};
use tower::BoxError;

use crate::Token;

/// What an attempt sent with a key-bound token proved; uninhabited without the `dpop`
/// feature, so that `Option<Proven>` is always `None` and costs nothing. Futures keep it boxed:
/// it is large, and every request's future would otherwise carry (and copy) its room.
#[cfg(feature = "dpop")]
pub(crate) use crate::dpop::Proven;

#[cfg(not(feature = "dpop"))]
pub(crate) enum Proven {}

/// Puts a proof for `method` and `uri` in `headers` if `token` is bound to a key; `Ok(None)`
/// for a bearer token.
#[inline]
pub(crate) fn prove(
    token: &Token,
    method: &Method,
    uri: &Uri,
    headers: &mut HeaderMap,
) -> Result<Option<Box<Proven>>, BoxError> {
    #[cfg(feature = "dpop")]
    if let Some(binding) = token.dpop_binding() {
        let proven = binding.prove(token.authorization(), method, uri, headers)?;
        return Ok(Some(Box::new(proven)));
    }
    let _ = (token, method, uri, headers);
    Ok(None)
}

/// Whether requests sent with `token` carry a proof: for a client whose URLs are not `Uri`s
/// (reqwest's), which builds the `Uri` a proof names only when there is one to make.
#[cfg_attr(not(feature = "reqwest"), allow(dead_code))]
#[inline]
pub(crate) fn needs_proof(token: &Token) -> bool {
    #[cfg(feature = "dpop")]
    return token.dpop_binding().is_some();
    #[cfg(not(feature = "dpop"))]
    {
        let _ = token;
        false
    }
}

/// [`prove`] for a whole request.
#[inline]
pub(crate) fn prove_request<B>(
    token: &Token,
    request: &mut http::Request<B>,
) -> Result<Option<Box<Proven>>, BoxError> {
    #[cfg(feature = "dpop")]
    if token.dpop_binding().is_some() {
        // The headers change while the method and URI are read: copies, which only requests
        // with a proof (and its signature) pay for.
        let (method, uri) = (request.method().clone(), request.uri().clone());
        return prove(token, &method, &uri, request.headers_mut());
    }
    let _ = (token, request);
    Ok(None)
}

/// Learns the nonce an answer gives; true if sending again with it may succeed (the proof
/// did not carry it).
#[inline]
pub(crate) fn learn(proven: Option<&Proven>, headers: &HeaderMap) -> bool {
    match proven {
        #[cfg(feature = "dpop")]
        Some(proven) => proven.learn(headers),
        #[cfg(not(feature = "dpop"))]
        Some(proven) => match *proven {},
        None => {
            let _ = headers;
            false
        }
    }
}

/// Whether a header is a proof this crate put there: a retry replaces it with a new one.
#[inline]
pub(crate) fn is_proof_header(name: &http::HeaderName) -> bool {
    #[cfg(feature = "dpop")]
    return *name == crate::dpop::DPOP;
    #[cfg(not(feature = "dpop"))]
    {
        let _ = name;
        false
    }
}

/// The same token and a new proof, made as `proven`'s was, for the next attempt of the same
/// request.
pub(crate) fn prove_again(
    proven: &Proven,
    method: &Method,
    uri: &Uri,
    headers: &mut HeaderMap,
) -> Result<Box<Proven>, BoxError> {
    #[cfg(feature = "dpop")]
    return Ok(Box::new(proven.prove_again(method, uri, headers)?));
    #[cfg(not(feature = "dpop"))]
    {
        let _ = (method, uri, headers);
        match *proven {}
    }
}

#[cfg(all(test, feature = "dpop"))]
#[path = "proving_tests.rs"]
mod tests;
