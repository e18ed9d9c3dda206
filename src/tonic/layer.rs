//! The layer: a [`BearerAuthLayer`] whose services speak tonic's body type.

use tower::Layer;

use super::GrpcAuth;
use crate::{BearerAuthLayer, Refresher, Scope, TokenCache};

/// Layer that applies [`GrpcAuth`]: [`BearerAuthLayer`] for a tonic `Channel` (or any service
/// of `http::Request<tonic::body::Body>`).
///
/// It is built with the channel's origin, the one the `Channel` was made for, as its
/// [`Scope`]: a generated client sends path-only URIs, and the layer, in front of that one
/// channel, takes them as that origin's; an absolute URI (a client built `with_origin`) must
/// match it. [`Scope::any`] suits a channel too, but a DPoP-bound token then needs
/// `with_origin`, since its proof names the call's absolute URI.
///
/// Every service it makes shares the layer's [`TokenCache`], which may also serve the
/// process's other clients, gRPC or HTTP: one token, one refresh. Settings are
/// [`BearerAuthLayer`]'s, carried over by [`From`]:
///
/// ```
/// use tower::service_fn;
/// use tower_bearer::tonic::GrpcAuthLayer;
/// use tower_bearer::{BearerAuthLayer, Scope, Token, TokenCache, TokenRequest};
///
/// let cache = TokenCache::new(service_fn(|_: TokenRequest| async { Token::bearer("t") }));
/// let origin = Scope::origin("http://127.0.0.1:50051")?; // as given to `Channel::from_static`
/// // Client streams of up to 1 MiB are kept, to be sent again after an UNAUTHENTICATED.
/// let layer = GrpcAuthLayer::from(BearerAuthLayer::from_cache(cache, origin).replay_limit(1 << 20));
/// # Ok::<(), tower_bearer::InvalidOrigin>(())
/// ```
///
/// See the [module documentation](super) for what a call does.
#[derive(Clone, Debug)]
pub struct GrpcAuthLayer {
    layer: BearerAuthLayer,
}

impl GrpcAuthLayer {
    /// A layer whose services get tokens from `refresher`, through a new [`TokenCache`] with
    /// the default settings, for the calls in `scope`: the channel's origin.
    pub fn new(refresher: impl Refresher, scope: Scope) -> Self {
        GrpcAuthLayer::from(BearerAuthLayer::new(refresher, scope))
    }

    /// A layer whose services share `cache` (and so share tokens with every other layer
    /// built from it), for the calls in `scope`: the channel's origin.
    pub fn from_cache(cache: TokenCache, scope: Scope) -> Self {
        GrpcAuthLayer::from(BearerAuthLayer::from_cache(cache, scope))
    }

    /// The cache the layer's services share.
    pub fn cache(&self) -> &TokenCache {
        self.layer.cache()
    }
}

impl From<BearerAuthLayer> for GrpcAuthLayer {
    /// The same cache and settings, for tonic clients; a scope of one origin becomes the
    /// channel's, which path-only URIs count as.
    fn from(layer: BearerAuthLayer) -> Self {
        GrpcAuthLayer {
            layer: layer.for_channel(),
        }
    }
}

impl<S> Layer<S> for GrpcAuthLayer {
    type Service = GrpcAuth<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GrpcAuth::from_layer(inner, &self.layer)
    }
}
