//! The response future of [`BearerAuth`](crate::BearerAuth): drives the engine's decisions
//! (`engine.rs`) with a tower service.

use std::fmt;
use std::future::Future;
use std::mem;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use http::request::Parts;
use http::{Extensions, Request, Response, Uri};
use http_body::Body;
use pin_project_lite::pin_project;
use tower::{BoxError, Service};
use tower_http::follow_redirect::RequestUri;

use crate::ReplayBody;
use crate::body::Replay;
use crate::cache::{Acquire, WaitFuture};
use crate::engine::{self, Attempts, Next, Replacement, Rules};
use crate::head::SavedHead;
use crate::scope::same_origin;

pin_project! {
    /// Response future of [`BearerAuth`](crate::BearerAuth).
    ///
    /// When the token is valid and the response is not a refusal, this is the inner service's
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
        // The one attempt of a request sent with a bearer token and retries off, the hot path:
        // the engine keeps only the token's generation for it, to judge the answer.
        Sent { #[pin] future: F, generation: u64, rules: Arc<Rules> },
        // A request that cannot be sent: its token's proof could not be made.
        Failed { error: Option<BoxError> },
        // Waiting for a token before the first attempt.
        WaitingForToken { token: WaitFuture, unsent: Option<Unsent<S, B>> },
        // An attempt is in flight; `retry` is what a refusal needs to send it again.
        WaitingForResponse {
            #[pin] future: F,
            attempts: Attempts,
            rules: Arc<Rules>,
            retry: Option<SavedRequest<S, B>>,
        },
        // After a refused token: waiting for the token to send again with, reading the
        // refusal's body meanwhile.
        WaitingForReplacement {
            replacement: Replacement<ResBody>,
            resend: Option<Resend<S, B>>,
        },
        // Driving the second attempt's service ready.
        WaitingForRetryService { resend: Option<Resend<S, B>> },
    }
}

/// A request waiting for its token, with the (ready) service that will send it.
pub(crate) struct Unsent<S, B> {
    pub(crate) request: Request<B>,
    pub(crate) service: S,
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
struct Resend<S, B> {
    service: S,
    parts: Parts,
    body: ReplayBody<B>,
    attempts: Attempts,
    rules: Arc<Rules>,
}

/// The layer's settings that shape a request's future.
#[derive(Debug, Clone)]
pub(crate) struct RequestSettings {
    pub(crate) retry: bool,
    pub(crate) replay_limit: usize,
    pub(crate) rules: Arc<Rules>,
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

    /// Sends a request that carries its token, keeping what a second attempt needs if the
    /// settings want one and the body allows it.
    #[inline]
    pub(crate) fn send(
        service: &mut S,
        request: Request<B>,
        attempts: Attempts,
        settings: &RequestSettings,
    ) -> Self {
        let generation = match attempts.bearer() {
            Some(generation) if !settings.retry => generation,
            _ => return ResponseFuture::send_driven(service, request, attempts, settings),
        };
        ResponseFuture {
            state: State::Sent {
                future: service.call(request.map(ReplayBody::new)),
                generation,
                rules: settings.rules.clone(),
            },
        }
    }

    /// [`send`](Self::send) for any request but the hot path's.
    #[inline(never)]
    fn send_driven(
        service: &mut S,
        request: Request<B>,
        attempts: Attempts,
        settings: &RequestSettings,
    ) -> Self {
        ResponseFuture {
            state: send(service, request, attempts, settings),
        }
    }
}

fn send<S, B, ResBody>(
    service: &mut S,
    request: Request<B>,
    attempts: Attempts,
    settings: &RequestSettings,
) -> State<S::Future, S, B, ResBody>
where
    S: Service<Request<ReplayBody<B>>> + Clone,
    B: Body,
{
    let rules = settings.rules.clone();
    if !settings.retry {
        return State::WaitingForResponse {
            future: service.call(request.map(ReplayBody::new)),
            attempts,
            rules,
            retry: None,
        };
    }
    let (parts, body) = request.into_parts();
    let (body, replay) = ReplayBody::recorded(body, settings.replay_limit);
    let retry = replay.and_then(|replay| {
        Some(SavedRequest {
            head: SavedHead::save(&parts, attempts.proof_header())?,
            service: service.clone(),
            body: replay,
        })
    });
    State::WaitingForResponse {
        future: service.call(Request::from_parts(parts, body)),
        attempts,
        rules,
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

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = self.project().state;
        match state.as_mut().project() {
            StateProj::Sent {
                future,
                generation,
                rules,
            } => poll_sent(future, *generation, rules, cx),
            StateProj::Passthrough { future } => future.poll(cx).map_err(Into::into),
            _ => state.poll_driven(cx),
        }
    }
}

/// The answer to the one attempt of a request sent with a bearer token and retries off.
#[inline]
fn poll_sent<F, ResBody, E>(
    future: Pin<&mut F>,
    generation: u64,
    rules: &Rules,
    cx: &mut Context<'_>,
) -> Poll<Result<Response<ResBody>, BoxError>>
where
    F: Future<Output = Result<Response<ResBody>, E>>,
    E: Into<BoxError>,
{
    let response = ready!(future.poll(cx)).map_err(Into::into)?;
    // As for any attempt: another origin's answer, reached by a redirect followed below the
    // layer, refuses nothing.
    if response.extensions().is_empty()
        || answered_by_origin_asked(response.extensions(), None, rules)
    {
        engine::judge_last(rules, generation, response.status(), response.headers());
    }
    Poll::Ready(Ok(response))
}

impl<F, S, B, ResBody> State<F, S, B, ResBody>
where
    F: Future<Output = Result<Response<ResBody>, S::Error>>,
    S: Service<Request<ReplayBody<B>>, Response = Response<ResBody>, Future = F> + Clone,
    S::Error: Into<BoxError>,
    B: Body,
    ResBody: Body,
{
    /// Every state but the hot paths `poll` takes first.
    #[inline(never)]
    fn poll_driven(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Response<ResBody>, BoxError>> {
        let mut state = self;
        loop {
            match state.as_mut().project() {
                StateProj::Passthrough { future } => return future.poll(cx).map_err(Into::into),
                StateProj::Sent {
                    future,
                    generation,
                    rules,
                } => return poll_sent(future, *generation, rules, cx),
                StateProj::Failed { error } => {
                    return Poll::Ready(Err(error.take().expect("polled after completion")));
                }
                StateProj::WaitingForToken { token, unsent } => {
                    let entry = ready!(token.as_mut().poll(cx))?;
                    let Unsent {
                        request,
                        mut service,
                        settings,
                    } = unsent.take().expect("polled after completion");
                    let (mut parts, body) = request.into_parts();
                    let next = match engine::attach(&settings.rules, &entry, &mut parts)? {
                        Some(attempts) => send(
                            &mut service,
                            Request::from_parts(parts, body),
                            attempts,
                            &settings,
                        ),
                        // The caller's own `Authorization`: checked before waiting, but a
                        // replacement is cheap to rule out here too.
                        None => State::Passthrough {
                            future: service
                                .call(Request::from_parts(parts, body).map(ReplayBody::new)),
                        },
                    };
                    state.set(next);
                }
                StateProj::WaitingForResponse {
                    future,
                    attempts,
                    rules,
                    retry,
                } => {
                    let response = ready!(future.poll(cx)).map_err(Into::into)?;
                    let from_origin_sent_to = response.extensions().is_empty()
                        || answered_by_origin_asked(
                            response.extensions(),
                            retry.as_ref().map(|saved| saved.head.uri()),
                            rules,
                        );
                    let next = attempts.judge(
                        rules,
                        response.status(),
                        response.headers(),
                        from_origin_sent_to,
                    );
                    if matches!(next, Next::Done) {
                        return Poll::Ready(Ok(response));
                    }
                    // Without a copy, a refusal still replaced the token for the requests
                    // that follow; this one gets its answer.
                    let Some(SavedRequest {
                        service,
                        head,
                        body,
                    }) = retry.take()
                    else {
                        return Poll::Ready(Ok(response));
                    };
                    // The head first: claiming the body ends the first attempt's.
                    let (Some(parts), Some(body)) = (head.restore(), body.into_body()) else {
                        return Poll::Ready(Ok(response));
                    };
                    let mut resend = Resend {
                        service,
                        parts,
                        body,
                        attempts: mem::replace(attempts, Attempts::spent()),
                        rules: rules.clone(),
                    };
                    let next = match next {
                        Next::Replace(Acquire::Failed(error)) => {
                            return Poll::Ready(Err(error.into()));
                        }
                        Next::Replace(acquire) => State::WaitingForReplacement {
                            replacement: Replacement::new(acquire, response.into_body()),
                            resend: Some(resend),
                        },
                        Next::ProveAgain => {
                            resend
                                .attempts
                                .prove_again(&resend.rules, &mut resend.parts)?;
                            State::WaitingForRetryService {
                                resend: Some(resend),
                            }
                        }
                        Next::Done => unreachable!("returned above"),
                    };
                    state.set(next);
                }
                StateProj::WaitingForReplacement {
                    replacement,
                    resend,
                } => {
                    let entry = ready!(Pin::new(replacement).poll(cx))?;
                    let mut resend = resend.take().expect("polled after completion");
                    resend
                        .attempts
                        .attach_replacement(&resend.rules, &entry, &mut resend.parts)?;
                    state.set(State::WaitingForRetryService {
                        resend: Some(resend),
                    });
                }
                StateProj::WaitingForRetryService { resend } => {
                    let service = &mut resend.as_mut().expect("polled after completion").service;
                    ready!(service.poll_ready(cx)).map_err(Into::into)?;
                    let Resend {
                        mut service,
                        parts,
                        body,
                        attempts,
                        rules,
                    } = resend.take().expect("checked above");
                    state.set(State::WaitingForResponse {
                        future: service.call(Request::from_parts(parts, body)),
                        attempts,
                        rules,
                        retry: None,
                    });
                }
            }
        }
    }
}

/// Whether an answer with these `extensions` came from the origin its request was sent to
/// (`asked`, if the request was kept for a retry).
///
/// tower-http's `FollowRedirect` below the layer follows redirects the layer never sees, and
/// leaves the URI that answered in the response (`RequestUri`). The token went to the first
/// origin only (`FollowRedirect` drops `Authorization` when it leaves it), so another origin's
/// answer refuses nothing and teaches no nonce. A request kept for a retry is compared by its
/// URI; one that was not kept (retries off, a body past the replay limit, a second attempt) by
/// the scope, which costs no copy of the URI on every request: an answering URI outside the
/// scope is not the asked origin's, one inside is taken as it.
///
/// Called only for an answer with extensions (hyper-util's client adds its connection's): for
/// one with none, nothing need be looked up.
fn answered_by_origin_asked(extensions: &Extensions, asked: Option<&Uri>, rules: &Rules) -> bool {
    let Some(RequestUri(answered)) = extensions.get::<RequestUri>() else {
        // No redirect was followed below the layer: the origin asked answered.
        return true;
    };
    match asked {
        Some(asked) => same_origin(asked, answered),
        None => rules.scope.allows(answered),
    }
}

impl<S, B, ResBody> fmt::Debug for ResponseFuture<S, B, ResBody>
where
    S: Service<Request<ReplayBody<B>>>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::Sent { .. } => "sent, no retry",
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
