//! The middleware: [`BearerAuth`] in front of a tonic channel.

use std::task::{Context, Poll};

use http::{Request, Response};
use http_body::Body;
use tower::{BoxError, Layer, Service};

use super::inner::Inner;
use super::{GrpcAuthLayer, ResponseBody, ResponseFuture};
use crate::{BearerAuth, BearerAuthLayer, Scope, TokenCache};

/// Middleware that authenticates tonic calls with the [`TokenCache`]'s bearer token: a
/// [`BearerAuth`] that serves `http::Request<tonic::body::Body>`, as a generated client sends
/// them, and reads gRPC refusals in the trailers too.
///
/// Built by [`GrpcAuthLayer`]; see the [module documentation](super) for what a call does.
#[derive(Clone, Debug)]
pub struct GrpcAuth<S> {
    inner: BearerAuth<Inner<S>>,
}

impl<S> GrpcAuth<S> {
    pub(super) fn from_layer(service: S, layer: &BearerAuthLayer) -> Self {
        let inner = Inner {
            service,
            cache: layer.cache().clone(),
        };
        GrpcAuth {
            inner: BearerAuth::from_layer(inner, layer),
        }
    }

    /// Wraps `inner` with the default settings, getting tokens from `cache` for the calls in
    /// `scope`: the channel's origin (see [`GrpcAuthLayer`]).
    pub fn new(inner: S, cache: TokenCache, scope: Scope) -> Self {
        GrpcAuthLayer::from_cache(cache, scope).layer(inner)
    }

    /// The token cache this service reads.
    pub fn cache(&self) -> &TokenCache {
        self.inner.cache()
    }

    /// A reference to the inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner.get_ref().service
    }

    /// A mutable reference to the inner service.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner.get_mut().service
    }

    /// The inner service.
    pub fn into_inner(self) -> S {
        self.inner.into_inner().service
    }
}

impl<S, B, ResBody> Service<Request<B>> for GrpcAuth<S>
where
    S: Service<Request<::tonic::body::Body>, Response = Response<ResBody>> + Clone,
    S::Error: Into<BoxError>,
    B: Body + Send + 'static,
    B::Error: Into<BoxError>,
    ResBody: Body,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = BoxError;
    type Future = ResponseFuture<S, B, ResBody>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Service::<Request<B>>::poll_ready(&mut self.inner, cx)
    }

    #[inline]
    fn call(&mut self, request: Request<B>) -> Self::Future {
        ResponseFuture::new(self.inner.call(request))
    }
}
