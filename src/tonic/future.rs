//! The response future of [`GrpcAuth`](super::GrpcAuth).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::{Request, Response};
use http_body::Body;
use pin_project_lite::pin_project;
use tower::{BoxError, Service};

use super::ResponseBody;
use super::inner::Inner;

pin_project! {
    /// Response future of [`GrpcAuth`](super::GrpcAuth): [`BearerAuth`](crate::BearerAuth)'s
    /// own, through the adapter to tonic's body type.
    pub struct ResponseFuture<S, B, ResBody>
    where
        // One bound a line: `pin_project_lite` does not take `Body + Send + 'static`.
        S: Service<Request<::tonic::body::Body>, Response = Response<ResBody>>,
        B: Body,
        B: Send,
        B: 'static,
        B::Error: Into<BoxError>,
    {
        #[pin]
        inner: crate::ResponseFuture<Inner<S>, B, ResponseBody<ResBody>>,
    }
}

impl<S, B, ResBody> ResponseFuture<S, B, ResBody>
where
    S: Service<Request<::tonic::body::Body>, Response = Response<ResBody>>,
    B: Body + Send + 'static,
    B::Error: Into<BoxError>,
{
    pub(super) fn new(inner: crate::ResponseFuture<Inner<S>, B, ResponseBody<ResBody>>) -> Self {
        ResponseFuture { inner }
    }
}

impl<S, B, ResBody> Future for ResponseFuture<S, B, ResBody>
where
    S: Service<Request<::tonic::body::Body>, Response = Response<ResBody>> + Clone,
    S::Error: Into<BoxError>,
    B: Body + Send + 'static,
    B::Error: Into<BoxError>,
    ResBody: Body,
{
    type Output = Result<Response<ResponseBody<ResBody>>, BoxError>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.project().inner.poll(cx)
    }
}

impl<S, B, ResBody> fmt::Debug for ResponseFuture<S, B, ResBody>
where
    S: Service<Request<::tonic::body::Body>, Response = Response<ResBody>>,
    B: Body + Send + 'static,
    B::Error: Into<BoxError>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.fmt(f)
    }
}
