//! The middleware: attaches the cache's token to each request, and retries once on 401.

use std::mem;
use std::task::{Context, Poll};

use http::header::AUTHORIZATION;
use http::{Request, Response};
use http_body::Body;
use tower::{BoxError, Layer, Service};

use crate::cache::{Entry, Reader};
use crate::engine;
use crate::future::{RequestSettings, ResponseFuture, Unsent};
use crate::scope::WithoutSecrets;
use crate::{BearerAuthLayer, ReplayBody, Scope, TokenCache};

/// Middleware that authenticates requests with the [`TokenCache`]'s bearer token.
///
/// Built by [`BearerAuthLayer`]; see the [crate documentation](crate) for what it does
/// with each request.
///
/// # The inner service's body
///
/// The inner service takes `http::Request<ReplayBody<B>>` for the caller's `B` (see
/// [`ReplayBody`](crate::ReplayBody) for why). A client built for `B` itself does not compile.
/// Where the stack goes to something that needs a service (a function taking
/// `impl Service<…>`, a `BoxCloneService`, a `Buffer`), rustc says why:
///
/// ```compile_fail,E0277
/// # use bytes::Bytes;
/// # use http::Request;
/// # use http_body_util::Full;
/// # use hyper_util::client::legacy::{Client, connect::HttpConnector};
/// # use hyper_util::rt::TokioExecutor;
/// # use tower::{Service, ServiceBuilder, service_fn};
/// # use tower_bearer::{BearerAuthLayer, Scope, Token, TokenRequest};
/// fn use_api(api: impl Service<Request<Full<Bytes>>>) { /* … */ }
///
/// # let refresher = service_fn(|_: TokenRequest| async { Token::bearer("t") });
/// // Should be `Client<HttpConnector, ReplayBody<Full<Bytes>>>`.
/// let client: Client<HttpConnector, Full<Bytes>> =
///     Client::builder(TokioExecutor::new()).build_http();
/// let api = ServiceBuilder::new()
///     .layer(BearerAuthLayer::new(refresher, Scope::any()))
///     .service(client);
/// use_api(api);
/// ```
///
/// ```text
/// error[E0277]: `Client<HttpConnector, Full<Bytes>>` does not take `http::Request<ReplayBody<Full<Bytes>>>`, the request `BearerAuth` sends it
///    |
///    |     use_api(api);
///    |             ^^^ the inner service of `BearerAuth` must take `ReplayBody<Full<Bytes>>` bodies
///    |
///    = note: build the client for `ReplayBody<Full<Bytes>>` rather than `Full<Bytes>`: for hyper-util, `Client<_, tower_bearer::ReplayBody<Full<Bytes>>>`; …
/// ```
///
/// A method called on the stack itself, `api.oneshot(request)`, fails instead with rustc's
/// own `E0599`, "the method `oneshot` exists for struct `BearerAuth<…>`, but its trait bounds
/// were not satisfied": the same mistake, with the same fix.
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

/// The inner service takes `http::Request<ReplayBody<B>>` (see
/// [`ReplayBody`](crate::ReplayBody) for why). The bound is written `TakesReplayBody<B>`, which
/// every such service meets, so that rustc reports a client built for `B` instead as what it
/// is, naming `ReplayBody` and the fix.
impl<S, B, ResBody> Service<Request<B>> for BearerAuth<S>
where
    S: TakesReplayBody<B, ResponseBody = ResBody> + Clone,
    S::InnerError: Into<BoxError>,
    B: Body,
    ResBody: Body,
{
    type Response = Response<ResBody>;
    type Error = BoxError;
    type Future = ResponseFuture<S, B, ResBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        if !self.scope.allows(request.uri()) {
            self.settings
                .rules
                .cache
                .count_out_of_scope(&WithoutSecrets(request.uri()));
            return ResponseFuture::passthrough(&mut self.inner, request);
        }
        let entry = self.settings.rules.cache.entry_as_is(&mut self.reader);
        send_in_scope(&mut self.inner, entry, &self.settings, request)
    }
}

/// A request in its token's scope, sent with `entry` (the current token, if a request may
/// send it as it is) or after waiting for one: the one way a request gets its token, for a
/// layer of one token and for one of many keys.
#[inline]
pub(crate) fn send_in_scope<S, B, ResBody>(
    inner: &mut S,
    entry: Option<&Entry>,
    settings: &RequestSettings,
    mut request: Request<B>,
) -> ResponseFuture<S, B, ResBody>
where
    S: Service<Request<ReplayBody<B>>, Response = Response<ResBody>> + Clone,
    B: Body,
{
    if let Some(entry) = entry {
        return match engine::attach(&settings.rules, entry, &mut request) {
            Ok(Some(attempts)) => ResponseFuture::send(inner, request, attempts, settings),
            // The caller's own `Authorization` goes through as it came.
            Ok(None) => ResponseFuture::passthrough(inner, request),
            Err(error) => ResponseFuture::failed(error),
        };
    }
    if request.headers().contains_key(AUTHORIZATION) {
        return ResponseFuture::passthrough(inner, request);
    }
    // The request must wait for a token: it takes the service that was driven ready with it,
    // and leaves a clone to be driven ready for the next call.
    let clone = inner.clone();
    let service = mem::replace(inner, clone);
    let token = settings.rules.cache.acquire().into_future();
    ResponseFuture::waiting(
        token,
        Unsent {
            request,
            service,
            settings: settings.clone(),
        },
    )
}

pub(crate) use inner_service::TakesReplayBody;

/// The bound on [`BearerAuth`]'s inner service, written for rustc's messages.
///
/// Public in a private module: the bound must name it, and nothing else may.
mod inner_service {
    use http::{Request, Response};
    use tower::Service;

    use crate::ReplayBody;

    /// A service of `http::Request<ReplayBody<B>>`, as the inner service of
    /// [`BearerAuth`](crate::BearerAuth) must be: any such service is one. It exists for
    /// rustc's message when a client was built for `B` instead, wherever rustc reports the
    /// bound unmet (`E0277`); `#[diagnostic::do_not_recommend]` keeps it from reporting the
    /// impl's own bound (tower's `Service`) instead.
    ///
    /// A method called on the service itself (`service.oneshot(request)`) is reported as
    /// `E0599` ("the method exists … but its trait bounds were not satisfied"), with no
    /// message of ours: rustc decides that from the bound while it looks the method up, and a
    /// bound that it could not decide there (written through a projection of `B`) would also
    /// stop it inferring `B` from the client in `service.ready().await?.call(request)`, which
    /// every correct program relies on.
    #[diagnostic::on_unimplemented(
        message = "`{Self}` does not take `http::Request<ReplayBody<{B}>>`, the request `BearerAuth` sends it",
        label = "the inner service of `BearerAuth` must take `ReplayBody<{B}>` bodies",
        note = "build the client for `ReplayBody<{B}>` rather than `{B}`: for hyper-util, \
                `Client<_, tower_bearer::ReplayBody<{B}>>`; `BearerAuth` wraps each body so \
                that it can send a request again after a 401"
    )]
    pub trait TakesReplayBody<B>:
        Service<
            Request<ReplayBody<B>>,
            Response = Response<Self::ResponseBody>,
            Error = Self::InnerError,
        >
    {
        /// The body of the inner service's responses.
        type ResponseBody;
        /// The inner service's error.
        type InnerError;
    }

    #[diagnostic::do_not_recommend]
    impl<S, B, ResBody> TakesReplayBody<B> for S
    where
        S: Service<Request<ReplayBody<B>>, Response = Response<ResBody>>,
    {
        type ResponseBody = ResBody;
        type InnerError = S::Error;
    }
}
