//! The layer: the cache and the settings every service it makes shares.

use http::{HeaderMap, StatusCode};
use tower::Layer;

use std::sync::Arc;

use crate::engine::Rules;
use crate::future::RequestSettings;
use crate::verdict::VerdictRule;
use crate::{BearerAuth, Refresher, Scope, TokenCache, TokenVerdict};

/// Layer that applies [`BearerAuth`], which authenticates requests with a shared, self-refreshing
/// bearer token.
///
/// Every service the layer makes, and every clone of those, shares the layer's
/// [`TokenCache`]. A layer is built with its [`Scope`], the requests its token may go to:
/// [`Scope::origin`] for a client of one API, [`Scope::any`] for one that cannot send anywhere
/// else (a provider's `into_layer` knows its API's origin and sets it). The layer's other
/// settings are about requests:
///
/// | setting | default | why |
/// | --- | --- | --- |
/// | [`retry_unauthorized`](Self::retry_unauthorized) | on | a token revoked or rotated away before its expiry costs one retry, not a failed request |
/// | [`verdict`](Self::verdict) | [`TokenVerdict::of`]: 401, gRPC UNAUTHENTICATED | the server decides when a token is refused; an API with its own way of saying it is told here |
/// | [`replay_limit`](Self::replay_limit) | 64 KiB | API calls with JSON bodies fit; an upload is not held in memory to be sent twice |
///
/// The settings about tokens (how early to refresh, backoff after failures) belong to the cache,
/// which several layers may share: see [`TokenCache::builder`].
///
/// See the [crate documentation](crate) for an example.
///
/// # Redirects
///
/// With tower-http's `FollowRedirectLayer` *outside* this layer, every hop comes through the
/// layer again, and one to an origin outside the scope goes without the token. *Below* it,
/// `FollowRedirect` drops the token itself when a redirect leaves the origin, and leaves the
/// URI that answered in the response (`RequestUri`): an answer from another origin than the
/// one the token went to refuses nothing (no refresh, no retry) and teaches no DPoP nonce. The
/// URI asked is known from the copy of a request kept for a retry; a request sent without one
/// (retries off, a body past the replay limit, a second attempt) is judged by the scope
/// instead, so that no request pays for a copy of its URI: an answer from outside the scope is
/// another origin's, one from inside it is taken as the origin asked. Below the layer,
/// `FollowRedirect` re-sends a request's body only if it was empty.
#[derive(Clone, Debug)]
pub struct BearerAuthLayer {
    pub(crate) settings: RequestSettings,
}

impl BearerAuthLayer {
    /// A layer whose services get tokens from `refresher`, through a new [`TokenCache`] with
    /// the default settings, and attach them to the requests in `scope`.
    ///
    /// ```
    /// # use tower::service_fn;
    /// use tower_bearer::{BearerAuthLayer, Scope};
    /// # let refresher = service_fn(|_: tower_bearer::TokenRequest| async { tower_bearer::Token::bearer("t") });
    ///
    /// let layer = BearerAuthLayer::new(refresher, Scope::origin("https://api.example.com")?);
    /// # Ok::<(), tower_bearer::InvalidOrigin>(())
    /// ```
    pub fn new(refresher: impl Refresher, scope: Scope) -> Self {
        BearerAuthLayer::from_cache(TokenCache::new(refresher), scope)
    }

    /// A layer whose services share `cache` (and so share tokens with every other layer
    /// built from it), and attach its token to the requests in `scope`.
    pub fn from_cache(cache: TokenCache, scope: Scope) -> Self {
        BearerAuthLayer {
            settings: RequestSettings {
                retry: true,
                replay_limit: 64 * 1024,
                rules: Arc::new(Rules {
                    cache,
                    verdict: VerdictRule::default(),
                    scope,
                }),
            },
        }
    }

    /// Whether a request whose token the server rejected (a 401, by default: see
    /// [`verdict`](Self::verdict)) is sent once more with a new token.
    ///
    /// Either way the rejection tells the cache, so the requests that follow get a new token.
    /// A request is sent at most twice, whatever the second answer.
    pub fn retry_unauthorized(mut self, retry: bool) -> Self {
        self.settings.retry = retry;
        self
    }

    /// The most body bytes kept to send a request again. A request whose body is larger
    /// (by its size hint, or as it streams) is not retried on a 401.
    pub fn replay_limit(mut self, bytes: usize) -> Self {
        self.settings.replay_limit = bytes;
        self
    }

    /// How a response says that the server rejected the request's token.
    ///
    /// The default is [`TokenVerdict::of`]: a 401 (unless its challenge says
    /// `insufficient_scope`), or a gRPC UNAUTHENTICATED in a trailers-only response. For an
    /// API that says it another way, decide yourself and fall back on the default:
    ///
    /// ```
    /// use http::{HeaderMap, StatusCode};
    /// # use tower::service_fn;
    /// use tower_bearer::{BearerAuthLayer, Scope, TokenVerdict};
    /// # let refresher = service_fn(|_: tower_bearer::TokenRequest| async { tower_bearer::Token::bearer("t") });
    ///
    /// // An API that answers 419 for an expired token.
    /// let layer = BearerAuthLayer::new(refresher, Scope::any()).verdict(|status: StatusCode, headers: &HeaderMap| {
    ///     match status.as_u16() {
    ///         419 => TokenVerdict::Rejected,
    ///         _ => TokenVerdict::of(status, headers),
    ///     }
    /// });
    /// ```
    ///
    /// A response judged [`Rejected`](TokenVerdict::Rejected) replaces the token (once,
    /// however many requests were rejected with it) and, if the body can be replayed, sends
    /// the request again; any other goes back to the caller as it came. The function runs on
    /// every response the layer sends with its token: keep it cheap for the common answer.
    pub fn verdict<F>(mut self, decide: F) -> Self
    where
        F: Fn(StatusCode, &HeaderMap) -> TokenVerdict + Send + Sync + 'static,
    {
        self.settings.rules = Arc::new(Rules {
            cache: self.settings.rules.cache.clone(),
            verdict: VerdictRule::custom(decide),
            scope: self.settings.rules.scope.clone(),
        });
        self
    }

    /// Replaces the scope the layer was built with: the requests that get the token; any
    /// other passes through without one (counted, and the first logged).
    ///
    /// For a layer a provider built, scoped to its API's origin, that also serves another.
    pub fn scope(mut self, scope: Scope) -> Self {
        self.settings.rules = Arc::new(Rules {
            cache: self.settings.rules.cache.clone(),
            verdict: self.settings.rules.verdict.clone(),
            scope,
        });
        self
    }

    /// The same layer in front of one channel: a scope of one origin is the channel's, which
    /// path-only URIs count as (see [`Scope`]).
    #[cfg_attr(not(feature = "tonic"), allow(dead_code))]
    pub(crate) fn for_channel(self) -> Self {
        let scope = self.settings.rules.scope.clone().for_channel();
        self.scope(scope)
    }

    /// The cache the layer's services share.
    pub fn cache(&self) -> &TokenCache {
        &self.settings.rules.cache
    }
}

impl<S> Layer<S> for BearerAuthLayer {
    type Service = BearerAuth<S>;

    fn layer(&self, inner: S) -> Self::Service {
        BearerAuth::from_layer(inner, self)
    }
}
