//! Many tokens behind one reqwest middleware: a [`KeyedAuthLayer`]'s keys, for a reqwest client.

use std::hash::Hash;
use std::sync::Arc;

use ::reqwest::{Request, Response};
use http::{Extensions, Uri};
use reqwest_middleware::{Middleware, Next};

use super::middleware::authorize;
use crate::keyed::{Keys, RequestParts};
use crate::{KeyedAuthLayer, KeyedStats};

/// A [`reqwest_middleware::Middleware`] that authenticates each request with the token of its
/// key: what [`KeyedAuthLayer`] does for a tower client, from the same keys. Made from the
/// layer (`KeyedAuthMiddleware::from(&layer)`), it shares the layer's caches: a process whose
/// tower and reqwest clients call the same APIs gets one token per key, not one per client.
///
/// The key function reads the request's method, URL (as a URI), headers, and the extensions
/// the request was built with (`RequestBuilder::with_extension`). Each key's requests then go
/// as [`BearerAuthMiddleware`](super::BearerAuthMiddleware)'s do.
///
/// ```
/// use reqwest_middleware::ClientBuilder;
/// use tower::service_fn;
/// use tower_bearer::reqwest::KeyedAuthMiddleware;
/// use tower_bearer::{KeyedAuthLayer, Token, TokenCache, TokenRequest};
///
/// let layer = KeyedAuthLayer::by_origin(|origin| {
///     let token = format!("token-for-{origin}").replace([':', '/'], "-");
///     Ok(TokenCache::new(service_fn(move |_: TokenRequest| {
///         let token = token.clone();
///         async move { Token::bearer(token) }
///     })))
/// });
/// let client = ClientBuilder::new(reqwest::Client::new())
///     .with(KeyedAuthMiddleware::from(&layer))
///     .build();
/// # let _ = client;
/// ```
pub struct KeyedAuthMiddleware<K> {
    keys: Arc<Keys<K>>,
}

impl<K> KeyedAuthMiddleware<K>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
{
    /// How many keys the middleware (and the layer it was made from) holds, has made caches
    /// for, and has forgotten.
    pub fn stats(&self) -> KeyedStats {
        KeyedAuthLayer {
            keys: self.keys.clone(),
        }
        .stats()
    }
}

impl<K> From<&KeyedAuthLayer<K>> for KeyedAuthMiddleware<K> {
    /// The layer's keys and their caches (shared, not copied), and its settings.
    fn from(layer: &KeyedAuthLayer<K>) -> Self {
        KeyedAuthMiddleware {
            keys: layer.keys.clone(),
        }
    }
}

impl<K> Clone for KeyedAuthMiddleware<K> {
    fn clone(&self) -> Self {
        KeyedAuthMiddleware {
            keys: self.keys.clone(),
        }
    }
}

impl<K> std::fmt::Debug for KeyedAuthMiddleware<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyedAuthMiddleware")
            .field("keys", &self.keys)
            .finish()
    }
}

#[async_trait::async_trait]
impl<K> Middleware for KeyedAuthMiddleware<K>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
{
    async fn handle(
        &self,
        request: Request,
        extensions: &mut Extensions,
        next: Next<'_>,
    ) -> reqwest_middleware::Result<Response> {
        // A URL that is no valid URI has no key, as it could have no token.
        let uri: Option<Uri> = request.url().as_str().parse().ok();
        let key = uri.as_ref().and_then(|uri| {
            let parts = RequestParts::new(request.method(), uri, request.headers(), extensions);
            (self.keys.key_of)(&parts)
        });
        let Some(key) = key else {
            return next.run(request, extensions).await;
        };
        let found = self.keys.find(key).map_err(|error| {
            reqwest_middleware::Error::Middleware(anyhow::Error::from_boxed(error))
        })?;
        let (rules, retry) = (&found.settings.rules, found.settings.retry);
        authorize(rules, &rules.scope, retry, request, extensions, next).await
    }
}
