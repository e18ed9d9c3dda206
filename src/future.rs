//! The response future of [`BearerAuth`](crate::BearerAuth).

use std::fmt;
use std::future::Future;
use std::mem;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Buf;
use http::header::AUTHORIZATION;
use http::request::Parts;
use http::{Request, Response};
use http_body::Body;
use pin_project_lite::pin_project;
use tower::{BoxError, Service};

use crate::ReplayBody;
use crate::body::Replay;
use crate::cache::{Acquire, Entry, Rejection, TokenCache, WaitFuture};
use crate::head::SavedHead;
use crate::proving::{self, Proven};
use crate::verdict::{TokenVerdict, VerdictRule};

/// How much of a 401's body is read, while the replacement token is fetched, so that its
/// connection can be reused; past this it is dropped.
pub(crate) const DRAIN_LIMIT: usize = 16 * 1024;

pin_project! {
    /// Response future of [`BearerAuth`](crate::BearerAuth).
    ///
    /// When the token is valid and the response is not a 401, this is the inner service's
    /// future and nothing more: no allocation, no lock.
    pub struct ResponseFuture<S, B, ResBody>
    where
        S: Service<Request<ReplayBody<B>>>,
    {
        #[pin]
        state: State<S::Future, S, B, ResBody>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F, S, B, ResBody> {
        // A request the layer does not touch.
        Passthrough { #[pin] future: F },
        // A request that cannot be sent: its token's proof could not be made.
        Failed { error: Option<BoxError> },
        // Waiting for a token before the first attempt.
        WaitingForToken { token: WaitFuture, unsent: Option<Unsent<S, B>> },
        // An attempt is in flight; `retry` is what a refusal needs to send it again.
        WaitingForResponse {
            #[pin] future: F,
            generation: u64,
            cache: TokenCache,
            verdict: VerdictRule,
            proven: Option<Box<Proven>>,
            retry: Option<SavedRequest<S, B>>,
        },
        // After a rejected token: waiting for the token to retry with, reading the refusal's
        // body meanwhile.
        WaitingForReplacement {
            token: WaitFuture,
            unauthorized: Option<Pin<Box<ResBody>>>,
            drained: usize,
            retry: Option<RetryRequest<S, B>>,
            cache: TokenCache,
            verdict: VerdictRule,
        },
        // Driving the retry's service ready.
        WaitingForRetryService {
            retry: Option<RetryRequest<S, B>>,
            generation: u64,
            cache: TokenCache,
            verdict: VerdictRule,
            proven: Option<Box<Proven>>,
        },
    }
}

/// A request waiting for its token, with the (ready) service that will send it.
pub(crate) struct Unsent<S, B> {
    pub(crate) request: Request<B>,
    pub(crate) service: S,
    pub(crate) cache: TokenCache,
    pub(crate) settings: RequestSettings,
}

/// What it takes to send a request a second time, kept while the first attempt is in flight.
struct SavedRequest<S, B> {
    /// A clone of the service, not yet driven ready.
    service: S,
    head: SavedHead,
    /// The first attempt may still be streaming the body.
    body: Replay<B>,
}

/// The second attempt, once a refusal has claimed what the first one kept.
struct RetryRequest<S, B> {
    service: S,
    parts: Parts,
    body: ReplayBody<B>,
}

/// The layer's settings that shape a request's future.
#[derive(Debug, Clone)]
pub(crate) struct RequestSettings {
    pub(crate) retry: bool,
    pub(crate) replay_limit: usize,
    pub(crate) verdict: VerdictRule,
}

/// A request with its token attached, as it is sent.
pub(crate) struct Attached<B> {
    pub(crate) request: Request<B>,
    pub(crate) generation: u64,
    /// Its proof, if the token is bound to a key.
    pub(crate) proven: Option<Box<Proven>>,
}

impl<B> Attached<B> {
    /// Attaches `entry`'s token to `request`, and its proof if it needs one.
    pub(crate) fn new(request: Request<B>, entry: &Entry) -> Result<Self, BoxError> {
        let token = &entry.token;
        let (mut parts, body) = request.into_parts();
        parts
            .headers
            .insert(AUTHORIZATION, token.authorization().clone());
        let proven = proving::prove(token, &parts.method, &parts.uri, &mut parts.headers)?;
        Ok(Attached {
            request: Request::from_parts(parts, body),
            generation: entry.generation,
            proven,
        })
    }
}

impl<S, B, ResBody> ResponseFuture<S, B, ResBody>
where
    S: Service<Request<ReplayBody<B>>, Response = Response<ResBody>> + Clone,
    B: Body,
{
    /// Sends `request` as it came: the layer does not touch it.
    pub(crate) fn passthrough(service: &mut S, request: Request<B>) -> Self {
        ResponseFuture {
            state: State::Passthrough {
                future: service.call(request.map(ReplayBody::new)),
            },
        }
    }

    /// Fails without sending anything.
    pub(crate) fn failed(error: BoxError) -> Self {
        ResponseFuture {
            state: State::Failed { error: Some(error) },
        }
    }

    pub(crate) fn waiting(token: WaitFuture, unsent: Unsent<S, B>) -> Self {
        ResponseFuture {
            state: State::WaitingForToken {
                token,
                unsent: Some(unsent),
            },
        }
    }

    /// Sends a request with its token attached, keeping what a retry needs if the settings
    /// want one and the body allows it.
    pub(crate) fn send(
        service: &mut S,
        attached: Attached<B>,
        cache: TokenCache,
        settings: RequestSettings,
    ) -> Self {
        ResponseFuture {
            state: send(service, attached, cache, settings),
        }
    }
}

fn send<S, B, ResBody>(
    service: &mut S,
    attached: Attached<B>,
    cache: TokenCache,
    settings: RequestSettings,
) -> State<S::Future, S, B, ResBody>
where
    S: Service<Request<ReplayBody<B>>> + Clone,
    B: Body,
{
    let Attached {
        request,
        generation,
        proven,
    } = attached;
    if !settings.retry {
        return State::WaitingForResponse {
            future: service.call(request.map(ReplayBody::new)),
            generation,
            cache,
            verdict: settings.verdict,
            proven,
            retry: None,
        };
    }
    let (parts, body) = request.into_parts();
    let (body, replay) = ReplayBody::recorded(body, settings.replay_limit);
    let retry = replay.and_then(|replay| {
        Some(SavedRequest {
            head: SavedHead::save(&parts, proven.is_some())?,
            service: service.clone(),
            body: replay,
        })
    });
    State::WaitingForResponse {
        future: service.call(Request::from_parts(parts, body)),
        generation,
        cache,
        verdict: settings.verdict,
        proven,
        retry,
    }
}

impl<S, B, ResBody> Future for ResponseFuture<S, B, ResBody>
where
    S: Service<Request<ReplayBody<B>>, Response = Response<ResBody>> + Clone,
    S::Error: Into<BoxError>,
    B: Body,
    ResBody: Body,
{
    type Output = Result<Response<ResBody>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = self.project().state;
        loop {
            match state.as_mut().project() {
                StateProj::Passthrough { future } => return future.poll(cx).map_err(Into::into),
                StateProj::Failed { error } => {
                    return Poll::Ready(Err(error.take().expect("polled after completion")));
                }
                StateProj::WaitingForToken { token, unsent } => {
                    let entry = ready!(token.as_mut().poll(cx))?;
                    let Unsent {
                        request,
                        mut service,
                        cache,
                        settings,
                    } = unsent.take().expect("polled after completion");
                    let attached = Attached::new(request, &entry)?;
                    let next = send(&mut service, attached, cache, settings);
                    state.set(next);
                }
                StateProj::WaitingForResponse {
                    future,
                    generation,
                    cache,
                    verdict,
                    proven,
                    retry,
                } => {
                    let response = ready!(future.poll(cx)).map_err(Into::into)?;
                    // Every answer may carry the server's next nonce.
                    let new_nonce = proving::learn(proven.as_deref(), response.headers());
                    let (status, headers) = (response.status(), response.headers());
                    match verdict.judge(status, headers, *generation) {
                        TokenVerdict::Rejected => {}
                        TokenVerdict::UseDpopNonce if new_nonce => {
                            // Not the token's fault: the same token again, with a new proof
                            // that carries the nonce. It uses up the request's one retry.
                            let (Some(proven), Some(mut retry)) =
                                (proven.take(), retry.take().and_then(SavedRequest::claim))
                            else {
                                return Poll::Ready(Ok(response));
                            };
                            let parts = &mut retry.parts;
                            let proven = proving::prove_again(
                                &proven,
                                &parts.method,
                                &parts.uri,
                                &mut parts.headers,
                            )?;
                            cache.count_nonce_retry();
                            tracing::debug!(
                                generation = *generation,
                                "retrying with the server's new DPoP nonce"
                            );
                            let next = State::WaitingForRetryService {
                                retry: Some(retry),
                                generation: *generation,
                                cache: cache.clone(),
                                verdict: mem::take(verdict),
                                proven: Some(proven),
                            };
                            state.set(next);
                            continue;
                        }
                        _ => return Poll::Ready(Ok(response)),
                    }
                    let rejection = cache.rejected(*generation);
                    let retry = retry.take().and_then(SavedRequest::claim);
                    // Without a retry, the refresh started above still serves the requests
                    // that follow; this one gets its refusal.
                    let (Some(retry), Rejection::RetryWith(acquire)) = (retry, rejection) else {
                        return Poll::Ready(Ok(response));
                    };
                    if let Acquire::Failed(err) = acquire {
                        return Poll::Ready(Err(err.into()));
                    }
                    let next = State::WaitingForReplacement {
                        token: acquire.into_future(),
                        unauthorized: Some(Box::pin(response.into_body())),
                        drained: 0,
                        retry: Some(retry),
                        cache: cache.clone(),
                        verdict: mem::take(verdict),
                    };
                    state.set(next);
                }
                StateProj::WaitingForReplacement {
                    token,
                    unauthorized,
                    drained,
                    retry,
                    cache,
                    verdict,
                } => {
                    if let Some(body) = unauthorized {
                        if drain(body.as_mut(), cx, drained) {
                            *unauthorized = None;
                        }
                    }
                    let entry = ready!(token.as_mut().poll(cx))?;
                    *unauthorized = None;
                    let mut retry = retry.take().expect("polled after completion");
                    let parts = &mut retry.parts;
                    let token = &entry.token;
                    parts
                        .headers
                        .insert(AUTHORIZATION, token.authorization().clone());
                    let proven =
                        proving::prove(token, &parts.method, &parts.uri, &mut parts.headers)?;
                    cache.count_retry();
                    tracing::debug!(
                        generation = entry.generation,
                        "retrying with a new token after the server rejected the old one"
                    );
                    let next = State::WaitingForRetryService {
                        retry: Some(retry),
                        generation: entry.generation,
                        cache: cache.clone(),
                        verdict: mem::take(verdict),
                        proven,
                    };
                    state.set(next);
                }
                StateProj::WaitingForRetryService {
                    retry,
                    generation,
                    cache,
                    verdict,
                    proven,
                } => {
                    let service = &mut retry.as_mut().expect("polled after completion").service;
                    ready!(service.poll_ready(cx)).map_err(Into::into)?;
                    let RetryRequest {
                        mut service,
                        parts,
                        body,
                    } = retry.take().expect("checked above");
                    let next = State::WaitingForResponse {
                        future: service.call(Request::from_parts(parts, body)),
                        generation: *generation,
                        cache: cache.clone(),
                        verdict: mem::take(verdict),
                        proven: proven.take(),
                        retry: None,
                    };
                    state.set(next);
                }
            }
        }
    }
}

impl<S, B> SavedRequest<S, B> {
    /// Takes the request over for the retry, if what the first attempt kept can be sent
    /// again as it was.
    fn claim(self) -> Option<RetryRequest<S, B>> {
        // The head first: claiming the body ends the first attempt's.
        let parts = self.head.restore()?;
        Some(RetryRequest {
            service: self.service,
            parts,
            body: self.body.into_body()?,
        })
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

impl<S, B, ResBody> fmt::Debug for ResponseFuture<S, B, ResBody>
where
    S: Service<Request<ReplayBody<B>>>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::Passthrough { .. } => "passthrough",
            State::Failed { .. } => "failed",
            State::WaitingForToken { .. } => "waiting for a token",
            State::WaitingForResponse { retry: Some(_), .. } => "sent",
            State::WaitingForResponse { retry: None, .. } => "sent, no retry",
            State::WaitingForReplacement { .. } => "waiting for a replacement token",
            State::WaitingForRetryService { .. } => "retrying",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish()
    }
}
