//! The layer: a [`BearerAuthLayer`] whose services speak tonic's body type.

use tower::Layer;

use super::GrpcAuth;
use crate::{BearerAuthLayer, Refresher, TokenCache};

/// Layer that applies [`GrpcAuth`]: [`BearerAuthLayer`] for a tonic `Channel` (or any service
/// of `http::Request<tonic::body::Body>`).
///
/// Every service it makes shares the layer's [`TokenCache`], which may also serve the
/// process's other clients, gRPC or HTTP: one token, one refresh. Settings are
/// [`BearerAuthLayer`]'s, carried over by [`From`]:
///
/// ```
/// use tower::service_fn;
/// use tower_bearer::tonic::GrpcAuthLayer;
/// use tower_bearer::{BearerAuthLayer, Token, TokenCache, TokenRequest};
///
/// let cache = TokenCache::new(service_fn(|_: TokenRequest| async { Token::bearer("t") }));
/// // Client streams of up to 1 MiB are kept, to be sent again after an UNAUTHENTICATED.
/// let layer = GrpcAuthLayer::from(BearerAuthLayer::from_cache(cache).replay_limit(1 << 20));
/// ```
///
/// See the [module documentation](super) for what a call does.
#[derive(Clone, Debug)]
pub struct GrpcAuthLayer {
    layer: BearerAuthLayer,
}

impl GrpcAuthLayer {
    /// A layer whose services get tokens from `refresher`, through a new [`TokenCache`] with
    /// the default settings.
    pub fn new(refresher: impl Refresher) -> Self {
        GrpcAuthLayer::from(BearerAuthLayer::new(refresher))
    }

    /// A layer whose services share `cache` (and so share tokens with every other layer
    /// built from it).
    pub fn from_cache(cache: TokenCache) -> Self {
        GrpcAuthLayer::from(BearerAuthLayer::from_cache(cache))
    }

    /// The cache the layer's services share.
    pub fn cache(&self) -> &TokenCache {
        self.layer.cache()
    }
}

impl From<BearerAuthLayer> for GrpcAuthLayer {
    /// The same cache and settings, for tonic clients.
    fn from(layer: BearerAuthLayer) -> Self {
        GrpcAuthLayer { layer }
    }
}

impl<S> Layer<S> for GrpcAuthLayer {
    type Service = GrpcAuth<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GrpcAuth::from_layer(inner, &self.layer)
    }
}
