//! The decision every request sent with the cache's token goes through, with no I/O in it:
//! attach the token (and its proof), judge each answer, and say what comes next — give the
//! answer back, wait for a replacement token and send again, or prove again and send again.
//!
//! Two drivers run it: the tower response future (`future.rs`), which the tonic layer runs
//! through too, and the reqwest middleware (`reqwest/middleware.rs`). They own the I/O:
//! sending, keeping a copy of the request to send again, reading a refused answer's body while
//! its replacement comes. What they decide is decided here, once.
//!
//! A request is sent at most twice: once with the token it was given, and once more after a
//! refusal (with the replacement) or a nonce challenge (with the same token and a new proof).
//! The second answer goes back whatever it is; a refusal in it still tells the cache.

use std::borrow::Cow;
use std::future::Future;
use std::mem;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Buf;
use http::header::AUTHORIZATION;
use http::request::Parts;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use http_body::Body;
use tower::BoxError;

use crate::cache::{Acquire, Entry, Outcome, Rejection, WaitFuture};
use crate::proof::{Proof, Prover};
use crate::verdict::VerdictRule;
use crate::{Scope, TokenCache, TokenVerdict};

/// How much of a refused answer's body is read, while the replacement token is fetched, so
/// that its connection can be reused; past this it is dropped.
const DRAIN_LIMIT: usize = 16 * 1024;

/// What every request of a layer (or middleware) shares: the cache, how answers are judged,
/// and the scope. One reference-counted handle per request in flight.
#[derive(Debug)]
pub(crate) struct Rules {
    pub(crate) cache: TokenCache,
    pub(crate) verdict: VerdictRule,
    /// Which requests get the token; for a channel's scope, also the origin a path-only URI
    /// is of, which a proof names.
    pub(crate) scope: Scope,
}

/// A request's head, as the engine reads and writes it.
pub(crate) trait Head {
    fn method(&self) -> &Method;

    /// The URI a proof names: asked for only when the token is bound to a key.
    fn uri(&self) -> Result<Cow<'_, Uri>, BoxError>;

    fn headers_mut(&mut self) -> &mut HeaderMap;
}

impl Head for Parts {
    fn method(&self) -> &Method {
        &self.method
    }

    fn uri(&self) -> Result<Cow<'_, Uri>, BoxError> {
        Ok(Cow::Borrowed(&self.uri))
    }

    fn headers_mut(&mut self) -> &mut HeaderMap {
        &mut self.headers
    }
}

impl<B> Head for http::Request<B> {
    fn method(&self) -> &Method {
        self.method()
    }

    fn uri(&self) -> Result<Cow<'_, Uri>, BoxError> {
        Ok(Cow::Borrowed(self.uri()))
    }

    fn headers_mut(&mut self) -> &mut HeaderMap {
        self.headers_mut()
    }
}

/// The token a request carries, and what its attempts have used up.
pub(crate) struct Attempts {
    /// The generation of the token the latest attempt carried.
    generation: u64,
    /// The latest attempt's proof, for a token bound to a key.
    proven: Option<Box<Proven>>,
    /// Whether the request has been sent its second time.
    resent: bool,
}

/// An attempt sent with a token bound to a key: the token, what proved it, and what it
/// proved.
struct Proven {
    authorization: HeaderValue,
    prover: Arc<dyn Prover>,
    proof: Box<dyn Proof>,
}

/// What an answer decides.
pub(crate) enum Next {
    /// Give the answer back.
    Done,
    /// The server refused the token, and the cache is replacing it: wait for what this gives,
    /// [`attach_replacement`](Attempts::attach_replacement), send again.
    Replace(Acquire),
    /// The server asked for a proof with its nonce, which it gave: the same token with a new
    /// proof ([`prove_again`](Attempts::prove_again)), sent again.
    ProveAgain,
}

/// Attaches `entry`'s token to `head`, with a new proof if the token is bound to a key: the
/// one way a token goes on a request, for every stack and every attempt.
///
/// `None` if `head` already had an `Authorization` header of its own: it is left as it came,
/// and the request goes without the cache's token.
#[inline]
pub(crate) fn attach(
    rules: &Rules,
    entry: &Entry,
    head: &mut impl Head,
) -> Result<Option<Attempts>, BoxError> {
    let token = &entry.token;
    // One lookup adds the token and tells (true: the key was there) whether the caller brought
    // an `Authorization` of its own, which then goes through as it came.
    if head
        .headers_mut()
        .append(AUTHORIZATION, token.authorization().clone())
    {
        take_back_token(head.headers_mut());
        return Ok(None);
    }
    let proven = match token.prover() {
        None => None,
        Some(_) => Some(prove(rules, entry, head)?),
    };
    Ok(Some(Attempts {
        generation: entry.generation,
        proven,
        resent: false,
    }))
}

#[cold]
fn prove(rules: &Rules, entry: &Entry, head: &mut impl Head) -> Result<Box<Proven>, BoxError> {
    let prover = entry.token.prover_arc().expect("checked by the caller");
    let proof = {
        let uri = proof_uri(rules, head)?;
        let method = head.method().clone();
        prover.prove(&method, &uri, head.headers_mut())?
    };
    Ok(Box::new(Proven {
        authorization: entry.token.authorization().clone(),
        prover,
        proof,
    }))
}

/// The URI a proof names: the request's, made absolute with its channel's origin if it is a
/// path-only URI sent through a channel (a generated tonic client's).
fn proof_uri(rules: &Rules, head: &impl Head) -> Result<Uri, BoxError> {
    let uri = head.uri()?;
    Ok(rules
        .scope
        .absolute(&uri)
        .unwrap_or_else(|| uri.into_owned()))
}

impl Attempts {
    /// The generation of the token of a first attempt whose token is not bound to a key: all
    /// [`judge_last`] needs, for a driver that will not send the request again.
    #[inline]
    pub(crate) fn bearer(&self) -> Option<u64> {
        (self.proven.is_none() && !self.resent).then_some(self.generation)
    }

    /// What a request's state keeps once its attempts have moved on to the next state: a
    /// request with no attempt left.
    pub(crate) fn spent() -> Attempts {
        Attempts {
            generation: 0,
            proven: None,
            resent: true,
        }
    }

    /// The header of the latest attempt's proof, if its token is bound to a key: a copy kept
    /// to send the request again leaves it out (the next attempt gets a new one), as it leaves
    /// out `Authorization`.
    #[inline]
    pub(crate) fn proof_header(&self) -> Option<&HeaderName> {
        self.proven.as_deref().map(|p| p.prover.header_name())
    }

    /// What an answer with `status` and `headers` decides for the request.
    ///
    /// `from_origin_sent_to` is false when the answer says it came from another origin than
    /// the attempt went to (a redirect was followed below the layer, and the token and proof
    /// did not go along): such an answer teaches nothing and refuses nothing.
    ///
    /// Every answer goes through this: the common one (a bearer token, an answer that says
    /// nothing about it) is decided inline, and the rest apart.
    #[inline]
    pub(crate) fn judge(
        &mut self,
        rules: &Rules,
        status: StatusCode,
        headers: &HeaderMap,
        from_origin_sent_to: bool,
    ) -> Next {
        if !from_origin_sent_to {
            return Next::Done;
        }
        // Any answer may carry the server's next nonce.
        let new_nonce = match self.proven.as_deref() {
            None => false,
            Some(proven) => learn(proven, headers),
        };
        match rules.verdict.judge(status, headers, self.generation) {
            TokenVerdict::Unrelated | TokenVerdict::InsufficientScope => Next::Done,
            verdict => self.refused(rules, verdict, new_nonce),
        }
    }

    /// What an answer that refused the token, or asked for a proof with a nonce, decides.
    #[cold]
    #[inline(never)]
    fn refused(&mut self, rules: &Rules, verdict: TokenVerdict, new_nonce: bool) -> Next {
        match verdict {
            TokenVerdict::Rejected => {
                // The cache learns of a refusal whatever happens to this request: the
                // requests that follow get a new token.
                let rejection = rules.cache.rejected(self.generation);
                // A refused retry goes back as it came: no driver sends a third time.
                if self.resent {
                    rules.cache.count_retry_refused();
                    return Next::Done;
                }
                match rejection {
                    Rejection::RetryWith(acquire) => Next::Replace(acquire),
                    _ => Next::Done,
                }
            }
            // Not the token's fault: the same token again, with a new proof that carries the
            // nonce.
            TokenVerdict::UseDpopNonce => {
                rules.cache.count_nonce_challenge();
                if new_nonce && !self.resent {
                    Next::ProveAgain
                } else {
                    Next::Done
                }
            }
            _ => Next::Done,
        }
    }

    /// Attaches the token that replaced a refused one to the request's second attempt.
    pub(crate) fn attach_replacement(
        &mut self,
        rules: &Rules,
        entry: &Entry,
        head: &mut impl Head,
    ) -> Result<(), BoxError> {
        let token = &entry.token;
        head.headers_mut()
            .insert(AUTHORIZATION, token.authorization().clone());
        self.proven = match token.prover() {
            None => None,
            Some(_) => Some(prove(rules, entry, head)?),
        };
        let replaced = mem::replace(&mut self.generation, entry.generation);
        self.resent = true;
        rules.cache.count_retry();
        tracing::debug!(
            generation = entry.generation,
            replaced,
            "retrying with a new token after the server rejected the old one"
        );
        Ok(())
    }

    /// Attaches the same token and a new proof to the request's second attempt, after a
    /// nonce challenge.
    pub(crate) fn prove_again(
        &mut self,
        rules: &Rules,
        head: &mut impl Head,
    ) -> Result<(), BoxError> {
        let proven = self
            .proven
            .as_mut()
            .expect("a nonce challenge is followed only for a proven attempt");
        head.headers_mut()
            .insert(AUTHORIZATION, proven.authorization.clone());
        let uri = proof_uri(rules, head)?;
        let method = head.method().clone();
        proven.proof = proven.prover.prove(&method, &uri, head.headers_mut())?;
        self.resent = true;
        rules.cache.count_nonce_retry();
        tracing::debug!(
            generation = self.generation,
            verdict = "use_dpop_nonce",
            "the server asked for a DPoP proof with its nonce; retrying with the same token"
        );
        Ok(())
    }
}

/// Whether an answer to a proven attempt brought a nonce its proof did not have.
#[cold]
#[inline(never)]
fn learn(proven: &Proven, headers: &HeaderMap) -> bool {
    proven.proof.learn(headers)
}

/// Judges the answer to the one attempt of a request sent with a bearer token of
/// `generation` (see [`Attempts::bearer`]), which will not be sent again: what
/// [`Attempts::judge`] decides for it, less the second attempt. A refusal still tells the
/// cache, so that the requests that follow get a new token.
#[inline]
pub(crate) fn judge_last(rules: &Rules, generation: u64, status: StatusCode, headers: &HeaderMap) {
    if rules.verdict.judge(status, headers, generation) == TokenVerdict::Rejected {
        rejected_last(rules, generation);
    }
}

#[cold]
#[inline(never)]
fn rejected_last(rules: &Rules, generation: u64) {
    // Nothing waits for the replacement.
    let _ = rules.cache.rejected(generation);
}

/// Removes the token that `append` put after the caller's own `Authorization` values, leaving
/// the headers as the caller sent them: the header keeps its place, and its values their order.
#[cold]
fn take_back_token(headers: &mut HeaderMap) {
    let http::header::Entry::Occupied(mut entry) = headers.entry(AUTHORIZATION) else {
        return;
    };
    let mut theirs: Vec<HeaderValue> = entry.iter().cloned().collect();
    // Appended last.
    theirs.pop();
    let mut theirs = theirs.into_iter();
    if let Some(first) = theirs.next() {
        entry.insert(first);
    }
    for value in theirs {
        entry.append(value);
    }
}

/// The wait for a replacement token, reading the refused answer's body meanwhile so that its
/// connection can be reused; once the token is there (or past [`DRAIN_LIMIT`]) the rest of
/// the body is dropped.
pub(crate) struct Replacement<B> {
    token: WaitFuture,
    refused: Option<Pin<Box<B>>>,
    drained: usize,
}

impl<B> Replacement<B> {
    pub(crate) fn new(acquire: Acquire, refused: B) -> Self {
        Replacement {
            token: acquire.into_future(),
            refused: Some(Box::pin(refused)),
            drained: 0,
        }
    }
}

impl<B: Body> Future for Replacement<B> {
    type Output = Outcome;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Outcome> {
        let this = &mut *self;
        if let Some(body) = &mut this.refused {
            if drain(body.as_mut(), cx, &mut this.drained) {
                this.refused = None;
            }
        }
        let outcome = std::task::ready!(this.token.as_mut().poll(cx));
        this.refused = None;
        Poll::Ready(outcome)
    }
}

/// Reads what is ready of a body. True once there is no point reading more: it ended, failed,
/// or went past the limit.
fn drain<B: Body>(mut body: Pin<&mut B>, cx: &mut Context<'_>, drained: &mut usize) -> bool {
    loop {
        match body.as_mut().poll_frame(cx) {
            Poll::Pending => return false,
            Poll::Ready(None | Some(Err(_))) => return true,
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    *drained += data.remaining();
                }
                if *drained > DRAIN_LIMIT {
                    return true;
                }
            }
        }
    }
}
