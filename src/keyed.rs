//! Many tokens behind one layer: each request's token chosen by a key (its origin, or what a
//! function of yours reads from it), each key its own cache, single flight and scope.

use std::collections::HashMap;
use std::fmt;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use arc_swap::ArcSwap;
use http::{Extensions, HeaderMap, Method, Request, Response, StatusCode, Uri};
use http_body::Body;
use tower::{BoxError, Layer, Service};

use crate::engine::Rules;
use crate::future::{RequestSettings, ResponseFuture};
use crate::scope::{Scope, WithoutSecrets};
use crate::service::{TakesReplayBody, send_in_scope};
use crate::verdict::VerdictRule;
use crate::{TokenCache, TokenVerdict};

/// What a key function reads of a request: its method, URI, headers and extensions.
#[derive(Debug, Clone, Copy)]
pub struct RequestParts<'a> {
    method: &'a Method,
    uri: &'a Uri,
    headers: &'a HeaderMap,
    extensions: &'a Extensions,
}

impl<'a> RequestParts<'a> {
    pub(crate) fn new(
        method: &'a Method,
        uri: &'a Uri,
        headers: &'a HeaderMap,
        extensions: &'a Extensions,
    ) -> Self {
        RequestParts {
            method,
            uri,
            headers,
            extensions,
        }
    }

    fn of<B>(request: &'a Request<B>) -> Self {
        RequestParts::new(
            request.method(),
            request.uri(),
            request.headers(),
            request.extensions(),
        )
    }

    /// The request's method.
    pub fn method(&self) -> &'a Method {
        self.method
    }

    /// The request's URI.
    pub fn uri(&self) -> &'a Uri {
        self.uri
    }

    /// The request's headers.
    pub fn headers(&self) -> &'a HeaderMap {
        self.headers
    }

    /// The request's extensions: where a caller can say which token a request needs
    /// (`request.extensions_mut().insert(Audience("billing"))`) without a header on the wire.
    pub fn extensions(&self) -> &'a Extensions {
        self.extensions
    }

    /// The origin of the request's URI, `scheme://host[:port]` in lower case with the
    /// scheme's default port left out (as [`Scope::origin`] compares them), or `None` for a
    /// URI with no scheme or host.
    pub fn origin(&self) -> Option<String> {
        crate::scope::origin_of(self.uri)
    }
}

/// Layer that applies [`KeyedAuth`]: one client, many tokens.
///
/// A service that calls several APIs, or one API for several audiences, scopes, resources or
/// tenants, needs a token for each. This layer asks a key function which token a request
/// needs (its origin, a header, an extension the caller set), and keeps one [`TokenCache`] per
/// key, made by a function of yours the first time the key is seen: each key its own token,
/// its own refresh (single flight, refresh ahead, the refused-token replacement), and its own
/// [`Scope`], so that a token never reaches an origin outside its key's scope. A request the
/// key function gives no key goes without a token.
///
/// Keys are bounded ([`max_keys`](Self::max_keys), 64 by default): past the bound, the key
/// used least recently is forgotten, and its cache with it once its requests are done (a
/// refresh in flight finishes for those waiting on it). A forgotten key seen again gets a new
/// cache, and a new token.
///
/// ```
/// use std::time::Duration;
/// use tower::{BoxError, service_fn};
/// use tower_bearer::{KeyedAuthLayer, Scope, Token, TokenCache, TokenRequest};
///
/// // A token per API, each from its own refresher (here, functions).
/// let layer = KeyedAuthLayer::by_origin(|origin: &str| {
///     let audience = origin.to_owned();
///     let refresher = service_fn(move |_: TokenRequest| {
///         let audience = audience.clone();
///         async move {
///             Ok::<_, BoxError>(
///                 Token::bearer(format!("for-{}", audience.len()))?
///                     .expires_in(Duration::from_secs(3600)),
///             )
///         }
///     });
///     Ok(TokenCache::new(refresher))
/// })
/// .max_keys(16);
/// # let _ = layer;
/// ```
pub struct KeyedAuthLayer<K> {
    pub(crate) keys: Arc<Keys<K>>,
}

/// What a key function is: which token a request needs, if any.
type KeyOf<K> = Arc<dyn Fn(&RequestParts<'_>) -> Option<K> + Send + Sync>;
/// What makes a key's cache and scope, the first time the key is seen.
type MakeCache<K> = Arc<dyn Fn(&K) -> Result<(TokenCache, Scope), BoxError> + Send + Sync>;

/// The keys' caches, shared by every service of a layer (and every middleware made from it).
pub(crate) struct Keys<K> {
    pub(crate) key_of: KeyOf<K>,
    make: MakeCache<K>,
    max_keys: usize,
    retry: bool,
    replay_limit: usize,
    verdict: VerdictRule,
    /// Read by every request, replaced whole when a key comes or goes (rarely): a request
    /// takes no lock and writes nothing shared, but a key's last use when it changes.
    map: ArcSwap<HashMap<K, Arc<Key>>>,
    /// Held while a key is added: one cache per key, however many requests bring it first.
    adding: Mutex<()>,
    /// Advances with each key added. A key's last use is stamped from it (see `add`), which
    /// orders keys by their last use as finely as choosing the one used least recently, at an
    /// add, needs, while a request writes only on its key's first use since the last add.
    clock: AtomicU64,
    created: AtomicU64,
    evicted: AtomicU64,
}

/// One key's cache and the settings of its requests.
pub(crate) struct Key {
    pub(crate) settings: RequestSettings,
    last_used: AtomicU64,
}

impl<K> KeyedAuthLayer<K>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
{
    /// A layer that sends each request with the token of the key `key_of` reads from it, made
    /// by `make` the first time the key is seen: that key's cache, and the scope its token may
    /// go to. `key_of` runs on every request: keep it cheap. `make` runs once per key (again
    /// after the key was forgotten); if it fails, the request fails with its error, and the
    /// next request of the key calls it again.
    ///
    /// ```
    /// use tower::{BoxError, service_fn};
    /// use tower_bearer::{KeyedAuthLayer, Scope, Token, TokenCache, TokenRequest};
    ///
    /// // The tenant a request is for, from a header the caller sets.
    /// let layer = KeyedAuthLayer::new(
    ///     |request| request.headers().get("x-tenant")?.to_str().ok().map(str::to_owned),
    ///     |tenant: &String| {
    ///         let tenant = tenant.clone();
    ///         let cache = TokenCache::new(service_fn(move |_: TokenRequest| {
    ///             let token = format!("token-of-{tenant}");
    ///             async move { Token::bearer(token) }
    ///         }));
    ///         Ok((cache, Scope::origin("https://api.example.com")?))
    ///     },
    /// );
    /// # let _ = layer;
    /// ```
    pub fn new<F, M>(key_of: F, make: M) -> Self
    where
        F: Fn(&RequestParts<'_>) -> Option<K> + Send + Sync + 'static,
        M: Fn(&K) -> Result<(TokenCache, Scope), BoxError> + Send + Sync + 'static,
    {
        KeyedAuthLayer {
            keys: Arc::new(Keys {
                key_of: Arc::new(key_of),
                make: Arc::new(make),
                max_keys: 64,
                retry: true,
                replay_limit: 64 * 1024,
                verdict: VerdictRule::default(),
                map: ArcSwap::default(),
                adding: Mutex::new(()),
                clock: AtomicU64::new(0),
                created: AtomicU64::new(0),
                evicted: AtomicU64::new(0),
            }),
        }
    }

    /// Each settings change makes a new set of keys, as [`new`](Self::new) did: settings are
    /// for building a layer, before its services are made.
    fn with(self, change: impl FnOnce(&mut Settings)) -> Self {
        let keys = &self.keys;
        let mut settings = Settings {
            max_keys: keys.max_keys,
            retry: keys.retry,
            replay_limit: keys.replay_limit,
            verdict: keys.verdict.clone(),
        };
        change(&mut settings);
        KeyedAuthLayer {
            keys: Arc::new(Keys {
                key_of: keys.key_of.clone(),
                make: keys.make.clone(),
                max_keys: settings.max_keys.max(1),
                retry: settings.retry,
                replay_limit: settings.replay_limit,
                verdict: settings.verdict,
                map: ArcSwap::default(),
                adding: Mutex::new(()),
                clock: AtomicU64::new(0),
                created: AtomicU64::new(0),
                evicted: AtomicU64::new(0),
            }),
        }
    }

    /// The most keys kept (at least 1); past it, the key used least recently is forgotten.
    /// Default: 64.
    pub fn max_keys(self, max: usize) -> Self {
        self.with(|settings| settings.max_keys = max)
    }

    /// Whether a request whose token the server rejected is sent once more with a new one,
    /// as [`BearerAuthLayer::retry_unauthorized`](crate::BearerAuthLayer::retry_unauthorized).
    pub fn retry_unauthorized(self, retry: bool) -> Self {
        self.with(|settings| settings.retry = retry)
    }

    /// The most body bytes kept to send a request again, as
    /// [`BearerAuthLayer::replay_limit`](crate::BearerAuthLayer::replay_limit).
    pub fn replay_limit(self, bytes: usize) -> Self {
        self.with(|settings| settings.replay_limit = bytes)
    }

    /// How a response says that the server rejected the request's token, as
    /// [`BearerAuthLayer::verdict`](crate::BearerAuthLayer::verdict).
    pub fn verdict<V>(self, decide: V) -> Self
    where
        V: Fn(StatusCode, &HeaderMap) -> TokenVerdict + Send + Sync + 'static,
    {
        let verdict = VerdictRule::custom(decide);
        self.with(|settings| settings.verdict = verdict)
    }

    /// The cache of `key`, if the layer holds one.
    pub fn cache(&self, key: &K) -> Option<TokenCache> {
        self.keys
            .map
            .load()
            .get(key)
            .map(|k| k.settings.rules.cache.clone())
    }

    /// How many keys the layer holds, has made caches for, and has forgotten.
    pub fn stats(&self) -> KeyedStats {
        KeyedStats {
            keys: self.keys.map.load().len(),
            created: self.keys.created.load(Ordering::Relaxed),
            evicted: self.keys.evicted.load(Ordering::Relaxed),
        }
    }
}

impl KeyedAuthLayer<String> {
    /// A layer with a token per origin (`scheme://host[:port]`, see
    /// [`RequestParts::origin`]), each from the cache `make` returns for it, and each
    /// scoped to its origin alone. A request whose URI has no origin (a path only) goes
    /// without a token.
    pub fn by_origin<M>(make: M) -> Self
    where
        M: Fn(&str) -> Result<TokenCache, BoxError> + Send + Sync + 'static,
    {
        KeyedAuthLayer::new(
            |request| request.origin(),
            move |origin: &String| Ok((make(origin)?, Scope::origin(origin)?)),
        )
    }
}

/// The settings [`KeyedAuthLayer`]'s builder methods change.
struct Settings {
    max_keys: usize,
    retry: bool,
    replay_limit: usize,
    verdict: VerdictRule,
}

impl<K> Keys<K>
where
    K: Hash + Eq + Clone,
{
    /// The key's cache, marked used, or made now if the layer has none.
    #[cfg_attr(not(feature = "reqwest"), allow(dead_code))]
    pub(crate) fn find(&self, key: K) -> Result<Arc<Key>, BoxError> {
        match self.map.load().get(&key) {
            Some(found) => {
                found.used(&self.clock);
                Ok(found.clone())
            }
            None => self.add(key),
        }
    }

    /// The key's cache, made now if the layer has none.
    fn add(&self, key: K) -> Result<Arc<Key>, BoxError> {
        let _adding = crate::sync::lock(&self.adding);
        let map = self.map.load_full();
        if let Some(found) = map.get(&key) {
            // Another request brought the key first.
            return Ok(found.clone());
        }
        let (cache, scope) = (self.make)(&key)?;
        // Uses are stamped with twice the count of adds, an add with the odd number between:
        // after every use before it, before every use after it.
        let now = 2 * self.clock.fetch_add(1, Ordering::Relaxed) + 1;
        let added = Arc::new(Key {
            settings: RequestSettings {
                retry: self.retry,
                replay_limit: self.replay_limit,
                rules: Arc::new(Rules {
                    cache,
                    verdict: self.verdict.clone(),
                    scope,
                }),
            },
            last_used: AtomicU64::new(now),
        });
        let mut next = HashMap::clone(&map);
        if next.len() >= self.max_keys {
            let oldest = next
                .iter()
                .min_by_key(|(_, k)| k.last_used.load(Ordering::Relaxed))
                .map(|(key, _)| key.clone());
            if let Some(oldest) = oldest {
                next.remove(&oldest);
                self.evicted.fetch_add(1, Ordering::Relaxed);
            }
        }
        next.insert(key, added.clone());
        self.map.store(Arc::new(next));
        self.created.fetch_add(1, Ordering::Relaxed);
        Ok(added)
    }
}

impl Key {
    /// Marks the key used now; a write only on the first use since a key was added.
    #[inline]
    fn used(&self, clock: &AtomicU64) {
        let now = 2 * clock.load(Ordering::Relaxed);
        if self.last_used.load(Ordering::Relaxed) != now {
            self.last_used.store(now, Ordering::Relaxed);
        }
    }
}

impl<K> Clone for KeyedAuthLayer<K> {
    fn clone(&self) -> Self {
        KeyedAuthLayer {
            keys: self.keys.clone(),
        }
    }
}

impl<K> fmt::Debug for KeyedAuthLayer<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedAuthLayer")
            .field("keys", &self.keys)
            .finish()
    }
}

impl<K> fmt::Debug for Keys<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keys")
            .field("held", &self.map.load().len())
            .field("max_keys", &self.max_keys)
            .field("retry", &self.retry)
            .field("replay_limit", &self.replay_limit)
            .field("verdict", &self.verdict)
            .finish_non_exhaustive()
    }
}

/// What a [`KeyedAuthLayer`] holds and has done; its `Display` is one line for logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct KeyedStats {
    /// Keys held now, each with its cache.
    pub keys: usize,
    /// Caches made: one per key, and one more each time a forgotten key came back.
    pub created: u64,
    /// Keys forgotten because the layer held [`max_keys`](KeyedAuthLayer::max_keys).
    pub evicted: u64,
}

impl fmt::Display for KeyedStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} keys held, {} caches made, {} keys evicted",
            self.keys, self.created, self.evicted
        )
    }
}

impl<S, K> Layer<S> for KeyedAuthLayer<K> {
    type Service = KeyedAuth<S, K>;

    fn layer(&self, inner: S) -> Self::Service {
        KeyedAuth {
            inner,
            keys: self.keys.clone(),
        }
    }
}

/// Middleware that authenticates each request with the token of its key. Built by
/// [`KeyedAuthLayer`]; each key's requests go as [`BearerAuth`](crate::BearerAuth)'s do.
pub struct KeyedAuth<S, K> {
    inner: S,
    keys: Arc<Keys<K>>,
}

impl<S: Clone, K> Clone for KeyedAuth<S, K> {
    fn clone(&self) -> Self {
        KeyedAuth {
            inner: self.inner.clone(),
            keys: self.keys.clone(),
        }
    }
}

impl<S: fmt::Debug, K> fmt::Debug for KeyedAuth<S, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedAuth")
            .field("inner", &self.inner)
            .field("keys", &self.keys)
            .finish()
    }
}

impl<S, K> KeyedAuth<S, K> {
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

impl<S, K, B, ResBody> Service<Request<B>> for KeyedAuth<S, K>
where
    S: TakesReplayBody<B, ResponseBody = ResBody> + Clone,
    S::InnerError: Into<BoxError>,
    K: Hash + Eq + Clone + Send + Sync + 'static,
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
        let keys = &*self.keys;
        let Some(key) = (keys.key_of)(&RequestParts::of(&request)) else {
            return ResponseFuture::passthrough(&mut self.inner, request);
        };
        let map = keys.map.load();
        let added;
        let found = match map.get(&key) {
            Some(found) => {
                found.used(&keys.clock);
                found
            }
            None => match keys.add(key) {
                Ok(key) => {
                    added = key;
                    &added
                }
                Err(error) => return ResponseFuture::failed(error),
            },
        };
        let settings = &found.settings;
        let rules = &settings.rules;
        if !rules.scope.allows(request.uri()) {
            rules
                .cache
                .count_out_of_scope(&WithoutSecrets(request.uri()));
            return ResponseFuture::passthrough(&mut self.inner, request);
        }
        let entry = rules.cache.load_as_is();
        send_in_scope(
            &mut self.inner,
            entry.as_ref().and_then(|entry| entry.as_deref()),
            settings,
            request,
        )
    }
}
