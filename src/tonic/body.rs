//! The response body a tonic client reads, watched for a refusal in its trailers.

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http::HeaderValue;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use crate::{TokenCache, TokenVerdict};

pin_project! {
    /// The response body of [`GrpcAuth`](super::GrpcAuth): the inner service's, passed on
    /// frame by frame, whose trailers are read on the way.
    ///
    /// A gRPC server that refuses a token after its response has begun says so in the
    /// trailers (`grpc-status: 16`, UNAUTHENTICATED). The call cannot be sent again by then,
    /// and your client sees the status as the server sent it; but if the cache still holds
    /// the token the call carried, it is replaced, so the calls that follow get a new one.
    ///
    /// You need not name this type: a generated client takes it as it is.
    pub struct ResponseBody<B> {
        #[pin]
        body: B,
        watch: Option<TrailersWatch>,
    }
}

/// What the trailers need to blame the token: the cache, and the header the call carried.
pub(super) struct TrailersWatch {
    pub(super) cache: TokenCache,
    pub(super) authorization: HeaderValue,
}

impl<B> ResponseBody<B> {
    pub(super) fn new(body: B, watch: Option<TrailersWatch>) -> Self {
        ResponseBody { body, watch }
    }
}

impl<B: Body> Body for ResponseBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let frame = ready!(this.body.poll_frame(cx));
        if let Some(Ok(frame)) = &frame {
            if let Some(trailers) = frame.trailers_ref() {
                // Trailers end a body: there is nothing more to watch either way.
                if let Some(watch) = this.watch.take() {
                    if TokenVerdict::of_trailers(trailers) == TokenVerdict::Rejected {
                        tracing::debug!(
                            "the server rejected the token in the trailers: replacing it \
                             for the calls that follow"
                        );
                        watch.cache.rejected_header(&watch.authorization);
                    }
                }
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl<B> fmt::Debug for ResponseBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseBody")
            .field("watching_trailers", &self.watch.is_some())
            .finish_non_exhaustive()
    }
}
