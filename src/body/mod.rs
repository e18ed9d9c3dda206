//! The request body the inner service sees: the caller's, recorded so it can be sent again.

use std::collections::VecDeque;
use std::fmt;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes};
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tower::BoxError;

pin_project! {
    /// The body of a request as [`BearerAuth`](crate::BearerAuth) passes it to the inner
    /// service: the caller's body `B`, recorded as it streams so that the request can be sent
    /// again after a 401.
    ///
    /// # Why the inner service sees this type
    ///
    /// A retry needs a second copy of the body, and most bodies cannot be cloned (a stream,
    /// a hyper `Incoming`). Rather than demand `B: Clone`, or collect the body before sending
    /// it (a delay and a buffer the size of an upload), the first attempt streams the caller's
    /// chunks through unchanged, as they are produced, keeping a copy of each up to a limit
    /// (64 KiB by default). A retry sends the copies and then the rest of the caller's body,
    /// byte for byte, trailers included. An empty body costs nothing to replay; a body past
    /// the limit stops being copied, and its request is not retried.
    ///
    /// The price is one line at the client: it is built for `ReplayBody<B>` rather than `B`.
    ///
    /// ```
    /// use bytes::Bytes;
    /// use http_body_util::Full;
    /// use hyper_util::client::legacy::{Client, connect::HttpConnector};
    /// use hyper_util::rt::TokioExecutor;
    /// use tower_bearer::ReplayBody;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let client: Client<HttpConnector, ReplayBody<Full<Bytes>>> =
    ///     Client::builder(TokioExecutor::new()).build_http();
    /// # }
    /// ```
    ///
    /// A streaming body works the same way, with its own type in place of `Full<Bytes>`
    /// (for instance `ReplayBody<http_body_util::combinators::BoxBody<Bytes, BoxError>>`).
    ///
    /// Data frames are [`Bytes`] (for `Bytes`-backed bodies, which most are, the chunk is passed
    /// on without a copy), and errors are boxed.
    pub struct ReplayBody<B> {
        #[pin]
        kind: Kind<B>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<B> {
        // Passed through as it is: nothing will replay it.
        Direct { #[pin] body: B },
        // The first attempt, copying what it streams.
        Recording { shared: Arc<Mutex<Recording<B>>> },
        // The retry: the copies, then the rest of the caller's body.
        Replay { shared: Arc<Mutex<Recording<B>>> },
        // The retry of an empty body.
        Empty,
    }
}

pub(crate) struct Recording<B> {
    /// The caller's body, until it ends.
    body: Option<Pin<Box<B>>>,
    chunks: Chunks,
    limit: usize,
    trailers: Option<HeaderMap>,
    /// What was recorded cannot be replayed, and was let go: the body went past the limit, or
    /// failed, or nothing is left to replay it.
    discarded: bool,
    /// The retry has taken the body over.
    replaying: bool,
}

/// What a retry needs to send the body again.
pub(crate) enum Replay<B> {
    Empty,
    Recorded(Arc<Mutex<Recording<B>>>),
}

impl<B> ReplayBody<B> {
    /// A body passed through as it is, with no copy kept: for calling a client built for
    /// `ReplayBody<B>` without the layer, or for a request that will not be retried.
    pub fn new(body: B) -> Self {
        ReplayBody {
            kind: Kind::Direct { body },
        }
    }

    /// The body for the first attempt, and what a retry needs, if the body can be replayed
    /// within `limit` bytes.
    pub(crate) fn recorded(body: B, limit: usize) -> (Self, Option<Replay<B>>)
    where
        B: Body,
    {
        if body.is_end_stream() {
            return (ReplayBody::new(body), Some(Replay::Empty));
        }
        if body.size_hint().lower() > limit as u64 {
            return (ReplayBody::new(body), None);
        }
        let shared = Arc::new(Mutex::new(Recording {
            body: Some(Box::pin(body)),
            chunks: Chunks::default(),
            limit,
            trailers: None,
            discarded: false,
            replaying: false,
        }));
        let first = ReplayBody {
            kind: Kind::Recording {
                shared: shared.clone(),
            },
        };
        (first, Some(Replay::Recorded(shared)))
    }
}

/// An empty body, for a request a middleware below the layer makes of its own: tower-http's
/// `FollowRedirect` sends one when it follows a redirect of a request whose body was empty.
impl<B> Default for ReplayBody<B> {
    fn default() -> Self {
        ReplayBody { kind: Kind::Empty }
    }
}

impl<B> Replay<B> {
    /// The body for the retry, unless what the first attempt recorded cannot be replayed.
    ///
    /// From here on the first attempt's body fails if it is polled again: the retry owns the
    /// rest of the caller's body.
    pub(crate) fn into_body(self) -> Option<ReplayBody<B>> {
        let kind = match self {
            Replay::Empty => Kind::Empty,
            Replay::Recorded(shared) => {
                let mut recording = crate::sync::lock(&shared);
                if recording.discarded {
                    return None;
                }
                recording.replaying = true;
                drop(recording);
                Kind::Replay { shared }
            }
        };
        Some(ReplayBody { kind })
    }
}

fn into_bytes<D: Buf>(frame: Frame<D>) -> Frame<Bytes> {
    frame.map_data(|mut data| data.copy_to_bytes(data.remaining()))
}

impl<B> Recording<B>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    fn poll_caller(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let Some(body) = self.body.as_mut() else {
            return Poll::Ready(None);
        };
        let frame = ready!(body.as_mut().poll_frame(cx));
        if frame.is_none() {
            self.body = None;
        }
        Poll::Ready(frame.map(|frame| frame.map(into_bytes).map_err(Into::into)))
    }

    fn record(&mut self, frame: &Frame<Bytes>) {
        if self.discarded {
            return;
        }
        if let Some(data) = frame.data_ref() {
            // Nothing is taken from the copies while they are recorded: their length is
            // everything recorded so far.
            if self.chunks.len() + data.len() > self.limit {
                self.discard();
            } else {
                self.chunks.push_back(data.clone());
            }
        } else if let Some(trailers) = frame.trailers_ref() {
            self.trailers = Some(trailers.clone());
        }
    }

    fn discard(&mut self) {
        self.discarded = true;
        self.chunks = Chunks::default();
        self.trailers = None;
    }
}

/// The chunks recorded, in order. A body small enough to replay is most often one chunk (a JSON
/// document, a gRPC message), which is kept inline: the queue exists only from the second, so
/// that a one-chunk recording neither allocates nor drops one.
#[derive(Default)]
struct Chunks {
    first: Option<Bytes>,
    rest: Option<VecDeque<Bytes>>,
    /// Their length in bytes.
    len: usize,
}

impl Chunks {
    fn push_back(&mut self, chunk: Bytes) {
        self.len += chunk.len();
        // `first` is only ever ahead of `rest`.
        if self.is_empty() {
            self.first = Some(chunk);
        } else {
            self.rest.get_or_insert_default().push_back(chunk);
        }
    }

    fn pop_front(&mut self) -> Option<Bytes> {
        let chunk = match self.first.take() {
            Some(chunk) => chunk,
            None => self.rest.as_mut()?.pop_front()?,
        };
        self.len -= chunk.len();
        Some(chunk)
    }

    fn is_empty(&self) -> bool {
        self.first.is_none() && self.rest.as_ref().is_none_or(VecDeque::is_empty)
    }

    fn len(&self) -> usize {
        self.len
    }
}

impl<B> Body for ReplayBody<B>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        match self.project().kind.project() {
            KindProj::Direct { body } => body
                .poll_frame(cx)
                .map(|frame| frame.map(|frame| frame.map(into_bytes).map_err(Into::into))),
            KindProj::Recording { shared } => {
                // Once nothing holds the other end there is no retry to record for.
                let no_retry_left = Arc::strong_count(shared) == 1;
                let mut recording = crate::sync::lock(shared);
                if recording.replaying {
                    return Poll::Ready(Some(Err(
                        "the request body was taken over by its retry".into()
                    )));
                }
                if no_retry_left && !recording.discarded {
                    recording.discard();
                }
                let frame = ready!(recording.poll_caller(cx));
                match &frame {
                    Some(Ok(frame)) => recording.record(frame),
                    Some(Err(_)) => recording.discard(),
                    None => {}
                }
                Poll::Ready(frame)
            }
            KindProj::Replay { shared } => {
                let mut recording = crate::sync::lock(shared);
                if let Some(chunk) = recording.chunks.pop_front() {
                    return Poll::Ready(Some(Ok(Frame::data(chunk))));
                }
                if let Some(trailers) = recording.trailers.take() {
                    // Trailers end a body: the caller's has nothing more to give.
                    recording.body = None;
                    return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
                }
                recording.poll_caller(cx)
            }
            KindProj::Empty => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Direct { body } => body.is_end_stream(),
            Kind::Recording { shared } => {
                let recording = crate::sync::lock(shared);
                recording.body.as_ref().is_none_or(|b| b.is_end_stream())
            }
            Kind::Replay { shared } => {
                let recording = crate::sync::lock(shared);
                recording.chunks.is_empty()
                    && recording.trailers.is_none()
                    && recording.body.as_ref().is_none_or(|b| b.is_end_stream())
            }
            Kind::Empty => true,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Direct { body } => body.size_hint(),
            Kind::Recording { shared } => {
                let recording = crate::sync::lock(shared);
                recording
                    .body
                    .as_ref()
                    .map_or_else(|| SizeHint::with_exact(0), |b| b.size_hint())
            }
            Kind::Replay { shared } => {
                let recording = crate::sync::lock(shared);
                let buffered = recording.chunks.len() as u64;
                let rest = recording
                    .body
                    .as_ref()
                    .map_or_else(|| SizeHint::with_exact(0), |b| b.size_hint());
                let mut hint = SizeHint::new();
                hint.set_lower(buffered + rest.lower());
                if let Some(upper) = rest.upper() {
                    hint.set_upper(buffered + upper);
                }
                hint
            }
            Kind::Empty => SizeHint::with_exact(0),
        }
    }
}

impl<B> fmt::Debug for ReplayBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match &self.kind {
            Kind::Direct { .. } => "direct",
            Kind::Recording { .. } => "recording",
            Kind::Replay { .. } => "replay",
            Kind::Empty => "empty",
        };
        f.debug_struct("ReplayBody")
            .field("kind", &kind)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests;
