//! The middleware: attaches the cache's token to each request, and retries once on 401.

use std::mem;
use std::task::{Context, Poll};

use http::header::AUTHORIZATION;
use http::{Request, Response};
use http_body::Body;
use tower::{BoxError, Layer, Service};

use crate::cache::Reader;
use crate::engine;
use crate::future::{RequestSettings, ResponseFuture, Unsent};
use crate::scope::WithoutSecrets;
use crate::{BearerAuthLayer, ReplayBody, Scope, TokenCache};

/// Middleware that authenticates requests with the [`TokenCache`]'s bearer token.
///
/// Built by [`BearerAuthLayer`]; see the [crate documentation](crate) for what it does
/// with each request.
#[derive(Clone, Debug)]
pub struct BearerAuth<S> {
    inner: S,
    reader: Reader,
    scope: Scope,
    settings: RequestSettings,
}

impl<S> BearerAuth<S> {
    pub(crate) fn from_layer(inner: S, layer: &BearerAuthLayer) -> Self {
        BearerAuth {
            inner,
            reader: layer.cache().reader(),
            scope: layer.settings.rules.scope.clone(),
            settings: layer.settings.clone(),
        }
    }

    /// Wraps `inner` with the default settings, getting tokens from `cache` for the requests
    /// in `scope`.
    pub fn new(inner: S, cache: TokenCache, scope: Scope) -> Self {
        BearerAuthLayer::from_cache(cache, scope).layer(inner)
    }

    /// The token cache this service reads.
    pub fn cache(&self) -> &TokenCache {
        &self.settings.rules.cache
    }

    /// A reference to the inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// A mutable reference to the inner service.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, B, ResBody> Service<Request<B>> for BearerAuth<S>
where
    S: Service<Request<ReplayBody<B>>, Response = Response<ResBody>> + Clone,
    S::Error: Into<BoxError>,
    B: Body,
    ResBody: Body,
{
    type Response = Response<ResBody>;
    type Error = BoxError;
    type Future = ResponseFuture<S, B, ResBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        if !self.scope.allows(request.uri()) {
            self.settings
                .rules
                .cache
                .count_out_of_scope(&WithoutSecrets(request.uri()));
            return ResponseFuture::passthrough(&mut self.inner, request);
        }
        let rules = &self.settings.rules;
        let cache = &rules.cache;
        if let Some(entry) = cache.entry_as_is(&mut self.reader) {
            return match engine::attach(rules, entry, &mut request) {
                Ok(Some(attempts)) => {
                    ResponseFuture::send(&mut self.inner, request, attempts, &self.settings)
                }
                // The caller's own `Authorization` goes through as it came.
                Ok(None) => ResponseFuture::passthrough(&mut self.inner, request),
                Err(error) => ResponseFuture::failed(error),
            };
        }
        if request.headers().contains_key(AUTHORIZATION) {
            return ResponseFuture::passthrough(&mut self.inner, request);
        }
        // The request must wait for a token: it takes the service that was driven ready
        // with it, and leaves a clone to be driven ready for the next call.
        let clone = self.inner.clone();
        let service = mem::replace(&mut self.inner, clone);
        let token = cache.acquire().into_future();
        ResponseFuture::waiting(
            token,
            Unsent {
                request,
                service,
                settings: self.settings.clone(),
            },
        )
    }
}
