//! The response future of [`BearerAuth`](crate::BearerAuth).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Buf;
use http::header::AUTHORIZATION;
use http::request::Parts;
use http::{Request, Response, StatusCode};
use http_body::Body;
use pin_project_lite::pin_project;
use tower::{BoxError, Service};

use crate::ReplayBody;
use crate::body::Replay;
use crate::cache::{Acquire, Rejection, TokenCache, WaitFuture};
use crate::head::SavedHead;

/// How much of a 401's body is read, while the replacement token is fetched, so that its
/// connection can be reused; past this it is dropped.
const DRAIN_LIMIT: usize = 16 * 1024;

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
        // Waiting for a token before the first attempt.
        Token { token: WaitFuture, pending: Option<Pending<S, B>> },
        // An attempt is in flight; `retry` is what a 401 needs to send it again.
        Sent {
            #[pin] future: F,
            generation: u64,
            cache: TokenCache,
            retry: Option<Retry<S, B>>,
        },
        // After a 401: waiting for the token to retry with, reading the 401's body meanwhile.
        Replace {
            token: WaitFuture,
            unauthorized: Option<Pin<Box<ResBody>>>,
            drained: usize,
            retry: Option<Claimed<S, B>>,
            cache: TokenCache,
        },
        // Driving the retry's service ready.
        Ready { retry: Option<Claimed<S, B>>, generation: u64, cache: TokenCache },
    }
}

/// A request waiting for its token, with the (ready) service that will send it.
pub(crate) struct Pending<S, B> {
    pub(crate) request: Request<B>,
    pub(crate) service: S,
    pub(crate) cache: TokenCache,
    pub(crate) policy: Policy,
}

/// What it takes to send a request a second time, kept while the first attempt is in flight.
struct Retry<S, B> {
    /// A clone of the service, not yet driven ready.
    service: S,
    head: SavedHead,
    /// The first attempt may still be streaming the body.
    body: Replay<B>,
}

/// The second attempt, once a 401 has claimed what the first one kept.
struct Claimed<S, B> {
    service: S,
    parts: Parts,
    body: ReplayBody<B>,
}

/// The layer's settings that shape a request's future.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Policy {
    pub(crate) retry: bool,
    pub(crate) replay_limit: usize,
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

    pub(crate) fn waiting(token: WaitFuture, pending: Pending<S, B>) -> Self {
        ResponseFuture {
            state: State::Token {
                token,
                pending: Some(pending),
            },
        }
    }

    /// Sends `request`, which carries the token of `generation`, keeping what a retry needs
    /// if the policy wants one and the body allows it.
    pub(crate) fn send(
        service: &mut S,
        request: Request<B>,
        generation: u64,
        cache: TokenCache,
        policy: Policy,
    ) -> Self {
        ResponseFuture {
            state: send(service, request, generation, cache, policy),
        }
    }
}

fn send<S, B, ResBody>(
    service: &mut S,
    request: Request<B>,
    generation: u64,
    cache: TokenCache,
    policy: Policy,
) -> State<S::Future, S, B, ResBody>
where
    S: Service<Request<ReplayBody<B>>> + Clone,
    B: Body,
{
    if !policy.retry {
        return State::Sent {
            future: service.call(request.map(ReplayBody::new)),
            generation,
            cache,
            retry: None,
        };
    }
    let (parts, body) = request.into_parts();
    let (body, replay) = ReplayBody::recorded(body, policy.replay_limit);
    let retry = replay.and_then(|replay| {
        Some(Retry {
            head: SavedHead::save(&parts)?,
            service: service.clone(),
            body: replay,
        })
    });
    State::Sent {
        future: service.call(Request::from_parts(parts, body)),
        generation,
        cache,
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
                StateProj::Token { token, pending } => {
                    let entry = ready!(token.as_mut().poll(cx))?;
                    let Pending {
                        mut request,
                        mut service,
                        cache,
                        policy,
                    } = pending.take().expect("polled after completion");
                    let authorization = entry.token.authorization().clone();
                    request.headers_mut().insert(AUTHORIZATION, authorization);
                    let next = send(&mut service, request, entry.generation, cache, policy);
                    state.set(next);
                }
                StateProj::Sent {
                    future,
                    generation,
                    cache,
                    retry,
                } => {
                    let response = ready!(future.poll(cx)).map_err(Into::into)?;
                    if response.status() != StatusCode::UNAUTHORIZED {
                        return Poll::Ready(Ok(response));
                    }
                    let rejection = cache.rejected(*generation);
                    let retry = retry.take().and_then(Retry::claim);
                    // Without a retry, the refresh started above still serves the requests
                    // that follow; this one gets its 401.
                    let (Some(retry), Rejection::Retry(acquire)) = (retry, rejection) else {
                        return Poll::Ready(Ok(response));
                    };
                    if let Acquire::Failed(err) = acquire {
                        return Poll::Ready(Err(err.into()));
                    }
                    let next = State::Replace {
                        token: acquire.into_future(),
                        unauthorized: Some(Box::pin(response.into_body())),
                        drained: 0,
                        retry: Some(retry),
                        cache: cache.clone(),
                    };
                    state.set(next);
                }
                StateProj::Replace {
                    token,
                    unauthorized,
                    drained,
                    retry,
                    cache,
                } => {
                    if let Some(body) = unauthorized {
                        if drain(body.as_mut(), cx, drained) {
                            *unauthorized = None;
                        }
                    }
                    let entry = ready!(token.as_mut().poll(cx))?;
                    *unauthorized = None;
                    let mut retry = retry.take().expect("polled after completion");
                    retry
                        .parts
                        .headers
                        .insert(AUTHORIZATION, entry.token.authorization().clone());
                    cache.count_retry();
                    tracing::debug!(generation = entry.generation, "retrying after 401");
                    let next = State::Ready {
                        retry: Some(retry),
                        generation: entry.generation,
                        cache: cache.clone(),
                    };
                    state.set(next);
                }
                StateProj::Ready {
                    retry,
                    generation,
                    cache,
                } => {
                    let service = &mut retry.as_mut().expect("polled after completion").service;
                    ready!(service.poll_ready(cx)).map_err(Into::into)?;
                    let Claimed {
                        mut service,
                        parts,
                        body,
                    } = retry.take().expect("checked above");
                    let next = State::Sent {
                        future: service.call(Request::from_parts(parts, body)),
                        generation: *generation,
                        cache: cache.clone(),
                        retry: None,
                    };
                    state.set(next);
                }
            }
        }
    }
}

impl<S, B> Retry<S, B> {
    /// Takes the request over for the retry, if what the first attempt kept can be sent
    /// again as it was.
    fn claim(self) -> Option<Claimed<S, B>> {
        // The head first: claiming the body ends the first attempt's.
        let parts = self.head.restore()?;
        Some(Claimed {
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
            State::Token { .. } => "waiting for a token",
            State::Sent { retry: Some(_), .. } => "sent",
            State::Sent { retry: None, .. } => "sent, no retry",
            State::Replace { .. } => "waiting for a replacement token",
            State::Ready { .. } => "retrying",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish()
    }
}
