//! The service [`BearerAuth`] wraps for tonic: replay bodies in, tonic bodies out, and the
//! response's trailers watched.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http::header::AUTHORIZATION;
use http::{Request, Response};
use http_body::Body;
use pin_project_lite::pin_project;
use tower::{BoxError, Service};

use super::body::{ResponseBody, TrailersWatch};
use crate::{ReplayBody, TokenCache};

/// The inner service `S` as [`BearerAuth`](crate::BearerAuth) sees it.
///
/// `BearerAuth` hands its inner service a [`ReplayBody`]; a tonic `Channel` takes a
/// `tonic::body::Body`, which can hold any body. A `BearerAuth<Channel>` cannot serve
/// tonic's body type itself: next to `BearerAuth`'s generic implementation that is a
/// conflicting one (E0119, as tonic could one day serve a `ReplayBody`), so the conversion
/// happens here, between the two.
#[derive(Clone, Debug)]
pub(super) struct Inner<S> {
    pub(super) service: S,
    pub(super) cache: TokenCache,
}

impl<S, B, ResBody> Service<Request<ReplayBody<B>>> for Inner<S>
where
    S: Service<Request<::tonic::body::Body>, Response = Response<ResBody>>,
    B: Body + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = InnerFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.service.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReplayBody<B>>) -> Self::Future {
        // The header the call carries: the cache's token, or the caller's own, which the
        // cache will not recognise as its own if the trailers refuse it.
        let watch = request
            .headers()
            .get(AUTHORIZATION)
            .map(|authorization| TrailersWatch {
                cache: self.cache.clone(),
                authorization: authorization.clone(),
            });
        InnerFuture {
            future: self.service.call(request.map(::tonic::body::Body::new)),
            watch,
        }
    }
}

pin_project! {
    /// The inner service's future, whose response body gets the watch.
    pub(super) struct InnerFuture<F> {
        #[pin]
        future: F,
        watch: Option<TrailersWatch>,
    }
}

impl<F, ResBody, E> Future for InnerFuture<F>
where
    F: Future<Output = Result<Response<ResBody>, E>>,
{
    type Output = Result<Response<ResponseBody<ResBody>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let response = ready!(this.future.poll(cx))?;
        let watch = this.watch.take();
        Poll::Ready(Ok(response.map(|body| ResponseBody::new(body, watch))))
    }
}
