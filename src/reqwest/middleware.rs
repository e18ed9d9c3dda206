//! The middleware: the cache's token on each request, and one retry when the server refuses it.

use std::borrow::Cow;
use std::sync::Arc;

use ::reqwest::header::AUTHORIZATION;
use ::reqwest::{Request, Response, Url};
use http::{Extensions, HeaderMap, HeaderName, Method, StatusCode, Uri};
use reqwest_middleware::{Middleware, Next};
use tower::BoxError;

use crate::cache::Acquire;
use crate::engine::{self, Attempts, Head, Replacement, Rules};
use crate::head::SavedHeaders;
use crate::verdict::VerdictRule;
use crate::{BearerAuthLayer, Refresher, Scope, TokenCache, TokenError, TokenVerdict};

/// A [`reqwest_middleware::Middleware`] that authenticates requests with the [`TokenCache`]'s
/// bearer token: the tower layer's decisions, for a reqwest client.
///
/// Build it with [`new`](Self::new) (a refresher), [`from_cache`](Self::from_cache) (a cache
/// that tower clients of the same process may share: one token, one refresh between them), or
/// from a [`BearerAuthLayer`] (`BearerAuthMiddleware::from(&layer)`, which keeps the layer's
/// cache, scope, retry and verdict). Each names its [`Scope`], the requests its token may go
/// to: [`Scope::origin`] for a client of one API. See the [module documentation](super) for
/// what it does with each request, and where it goes in a stack.
///
/// | setting | default | why |
/// | --- | --- | --- |
/// | [`retry_unauthorized`](Self::retry_unauthorized) | on | a token revoked or rotated away before its expiry costs one retry, not a failed request |
/// | [`verdict`](Self::verdict) | [`TokenVerdict::of`]: a 401, unless its challenge says `insufficient_scope` | the server decides when a token is refused; an API with its own way of saying it is told here |
#[derive(Clone, Debug)]
pub struct BearerAuthMiddleware {
    rules: Arc<Rules>,
    /// The rules' scope, kept beside them: every request reads it.
    scope: Scope,
    retry: bool,
}

impl BearerAuthMiddleware {
    /// A middleware that gets tokens from `refresher`, through a new [`TokenCache`] with the
    /// default settings, for the requests in `scope`.
    pub fn new(refresher: impl Refresher, scope: Scope) -> Self {
        BearerAuthMiddleware::from_cache(TokenCache::new(refresher), scope)
    }

    /// A middleware that reads `cache`, and so shares its token and its refreshes with every
    /// layer and middleware built from the same cache, for the requests in `scope`.
    pub fn from_cache(cache: TokenCache, scope: Scope) -> Self {
        BearerAuthMiddleware {
            rules: Arc::new(Rules {
                cache,
                verdict: VerdictRule::default(),
                scope: scope.clone(),
            }),
            scope,
            retry: true,
        }
    }

    /// Whether a request whose token the server rejected (a 401, by default: see
    /// [`verdict`](Self::verdict)) is sent once more with a new token.
    ///
    /// Either way the rejection tells the cache, so the requests that follow get a new token.
    /// A request is sent at most twice, whatever the second answer; one whose body is a
    /// stream (`Request::try_clone` gives none) is sent once.
    pub fn retry_unauthorized(mut self, retry: bool) -> Self {
        self.retry = retry;
        self
    }

    /// How a response says that the server rejected the request's token: as
    /// [`BearerAuthLayer::verdict`], which it mirrors.
    ///
    /// ```
    /// use http::{HeaderMap, StatusCode};
    /// # use tower::service_fn;
    /// use tower_bearer::{Scope, TokenVerdict};
    /// use tower_bearer::reqwest::BearerAuthMiddleware;
    /// # let refresher = service_fn(|_: tower_bearer::TokenRequest| async { tower_bearer::Token::bearer("t") });
    ///
    /// // An API that answers 419 for an expired token.
    /// let auth = BearerAuthMiddleware::new(refresher, Scope::any()).verdict(|status: StatusCode, headers: &HeaderMap| {
    ///     match status.as_u16() {
    ///         419 => TokenVerdict::Rejected,
    ///         _ => TokenVerdict::of(status, headers),
    ///     }
    /// });
    /// ```
    ///
    /// The function runs on every response to a request sent with the token: keep it cheap
    /// for the common answer.
    pub fn verdict<F>(mut self, decide: F) -> Self
    where
        F: Fn(StatusCode, &HeaderMap) -> TokenVerdict + Send + Sync + 'static,
    {
        self.rules = Arc::new(Rules {
            cache: self.rules.cache.clone(),
            verdict: VerdictRule::custom(decide),
            scope: self.scope.clone(),
        });
        self
    }

    /// Replaces the scope the middleware was built with: the requests that get the token; any
    /// other passes through without one (counted, and the first logged).
    pub fn scope(mut self, scope: Scope) -> Self {
        self.rules = Arc::new(Rules {
            cache: self.rules.cache.clone(),
            verdict: self.rules.verdict.clone(),
            scope: scope.clone(),
        });
        self.scope = scope;
        self
    }

    /// The cache the middleware reads.
    pub fn cache(&self) -> &TokenCache {
        &self.rules.cache
    }
}

impl From<&BearerAuthLayer> for BearerAuthMiddleware {
    /// The layer's cache (shared, not copied), scope, retry setting and verdict. The layer's
    /// replay limit has no counterpart: a reqwest body is either in memory already, and
    /// cloned by reference count, or a stream, and not sent twice.
    fn from(layer: &BearerAuthLayer) -> Self {
        BearerAuthMiddleware {
            rules: layer.settings.rules.clone(),
            scope: layer.settings.rules.scope.clone(),
            retry: layer.settings.retry,
        }
    }
}

impl From<BearerAuthLayer> for BearerAuthMiddleware {
    /// As `BearerAuthMiddleware::from(&layer)`.
    fn from(layer: BearerAuthLayer) -> Self {
        BearerAuthMiddleware::from(&layer)
    }
}

#[async_trait::async_trait]
impl Middleware for BearerAuthMiddleware {
    async fn handle(
        &self,
        request: Request,
        extensions: &mut Extensions,
        next: Next<'_>,
    ) -> reqwest_middleware::Result<Response> {
        authorize(
            &self.rules,
            &self.scope,
            self.retry,
            request,
            extensions,
            next,
        )
        .await
    }
}

/// A request in `scope` (the rules' own, or a copy kept nearer) gets the token and is judged
/// ([`send_in_scope`]); any other is sent as it came, and counted on the cache: the one way a
/// reqwest request is handled, for a middleware of one token and for one of many keys.
pub(super) async fn authorize(
    rules: &Rules,
    scope: &Scope,
    retry: bool,
    request: Request,
    extensions: &mut Extensions,
    next: Next<'_>,
) -> reqwest_middleware::Result<Response> {
    if !allows(scope, request.url()) {
        rules
            .cache
            .count_out_of_scope(&UrlWithoutSecrets(request.url()));
        return next.run(request, extensions).await;
    }
    send_in_scope(rules, retry, request, extensions, next).await
}

/// Whether the token goes to `url`: the scope's decision, from the URL's parts.
#[inline]
fn allows(scope: &Scope, url: &Url) -> bool {
    scope.allows_origin(
        url.scheme(),
        url.host_str(),
        url.port_or_known_default(),
        || url.as_str().parse().ok(),
    )
}

/// A request in its token's scope, sent with the token and judged (and sent again after a
/// refusal, with `retry`).
async fn send_in_scope(
    rules: &Rules,
    retry: bool,
    mut request: Request,
    extensions: &mut Extensions,
    next: Next<'_>,
) -> reqwest_middleware::Result<Response> {
    let cache = &rules.cache;
    let entry = match cache.current_as_is() {
        Some(entry) => entry,
        None if request.headers().contains_key(AUTHORIZATION) => {
            return next.run(request, extensions).await;
        }
        None => cache.acquire().into_future().await.map_err(not_sent)?,
    };
    let attached = engine::attach(rules, &entry, &mut request).map_err(proof_failed)?;
    drop(entry);
    let Some(mut attempts) = attached else {
        // The caller's own `Authorization` goes through as it came.
        return next.run(request, extensions).await;
    };
    let saved = if retry {
        Saved::save(&mut request, attempts.proof_header())
    } else {
        None
    };
    let kept = match saved {
        Some(saved) => Kept::Copy(saved),
        None => Kept::Url(request.url().clone()),
    };
    let response = next.clone().run(request, extensions).await?;

    let from_origin_sent_to = same_origin(kept.url(), response.url());
    let (status, headers) = (response.status(), response.headers());
    match attempts.judge(rules, status, headers, from_origin_sent_to) {
        engine::Next::Done => Ok(response),
        // Boxed: few requests come here, and its state would make every request's future
        // larger.
        decision => {
            let refused = Refused {
                response,
                decision,
                kept,
                attempts,
            };
            Box::pin(send_again(rules, refused, extensions, next)).await
        }
    }
}

/// An answer that decided the request be sent again, with what the middleware kept of it.
struct Refused {
    response: Response,
    decision: engine::Next,
    kept: Kept,
    attempts: Attempts,
}

/// Sends the request a second time if there is a copy to send, with the replacement token or
/// a new proof, as the engine decided; the second answer goes back whatever it is.
async fn send_again(
    rules: &Rules,
    refused: Refused,
    extensions: &mut Extensions,
    next: Next<'_>,
) -> reqwest_middleware::Result<Response> {
    let Refused {
        response,
        decision,
        kept,
        mut attempts,
    } = refused;
    // Without a copy, a refusal still replaced the token for the requests that follow; this
    // one gets its answer.
    let Some(mut retry) = kept.into_copy().and_then(Saved::restore) else {
        return Ok(response);
    };
    match decision {
        engine::Next::Replace(Acquire::Failed(error)) => return Err(not_sent(error)),
        engine::Next::Replace(acquire) => {
            let refused = http::Response::from(response).into_body();
            let entry = Replacement::new(acquire, refused).await.map_err(not_sent)?;
            attempts
                .attach_replacement(rules, &entry, &mut retry)
                .map_err(proof_failed)?;
        }
        engine::Next::ProveAgain => attempts
            .prove_again(rules, &mut retry)
            .map_err(proof_failed)?,
        engine::Next::Done => return Ok(response),
    }
    let sent_to = retry.url().clone();
    let response = next.run(retry, extensions).await?;
    // A refusal of the second attempt still tells the cache, so that the requests that
    // follow get a new token.
    let from_origin_sent_to = same_origin(&sent_to, response.url());
    let _ = attempts.judge(
        rules,
        response.status(),
        response.headers(),
        from_origin_sent_to,
    );
    Ok(response)
}

impl Head for Request {
    fn method(&self) -> &Method {
        self.method()
    }

    /// The URI a proof names, as reqwest itself turns the URL into one to send it.
    fn uri(&self) -> Result<Cow<'_, Uri>, BoxError> {
        Ok(Cow::Owned(self.url().as_str().parse()?))
    }

    fn headers_mut(&mut self) -> &mut HeaderMap {
        self.headers_mut()
    }
}

/// What the middleware keeps of a request while it is in flight.
// Boxing the copy would cost every request that may be retried one more allocation; a `Kept`
// lives once, in the request's future.
#[allow(clippy::large_enum_variant)]
enum Kept {
    /// A copy to send again if the token is refused.
    Copy(Saved),
    /// No copy (retries are off, or the body is a stream): the URL alone, to tell where the
    /// answer came from.
    Url(Url),
}

impl Kept {
    fn url(&self) -> &Url {
        match self {
            Kept::Copy(saved) => saved.rest.url(),
            Kept::Url(url) => url,
        }
    }

    fn into_copy(self) -> Option<Saved> {
        match self {
            Kept::Copy(saved) => Some(saved),
            Kept::Url(_) => None,
        }
    }
}

/// A copy of a request, for a retry: what `Request::try_clone` makes, but with its headers
/// kept as the tower layer keeps them (see [`SavedHeaders`]), which every request that may be
/// retried pays for, less its token and proof, which a retry replaces.
struct Saved {
    /// The request less its headers.
    rest: Request,
    headers: SavedHeaders,
}

impl Saved {
    /// A copy of `request`, or `None` if its body is a stream (or a header value is over
    /// 4 GiB).
    fn save(request: &mut Request, proof_header: Option<&HeaderName>) -> Option<Saved> {
        // reqwest copies the rest (its extensions, which hold its per-request settings, are
        // its own), and knows which bodies it can. With the headers out of the way, its copy
        // of them is an empty map, which allocates nothing.
        let headers = std::mem::take(request.headers_mut());
        let rest = request.try_clone();
        *request.headers_mut() = headers;
        Some(Saved {
            rest: rest?,
            headers: SavedHeaders::save(request.headers(), proof_header)?,
        })
    }

    fn restore(self) -> Option<Request> {
        let mut request = self.rest;
        *request.headers_mut() = self.headers.restore()?;
        Some(request)
    }
}

/// A URL as a log may show it: scheme, host, port and path, without the userinfo and the
/// query, which may carry credentials.
struct UrlWithoutSecrets<'a>(&'a Url);

impl std::fmt::Display for UrlWithoutSecrets<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let url = self.0;
        write!(f, "{}://{}", url.scheme(), url.host_str().unwrap_or(""))?;
        if let Some(port) = url.port() {
            write!(f, ":{port}")?;
        }
        f.write_str(url.path())
    }
}

/// reqwest's own test for a redirect that drops `Authorization`: another scheme, host or port.
fn same_origin(a: &Url, b: &Url) -> bool {
    a.scheme() == b.scheme()
        && a.host_str() == b.host_str()
        && a.port_or_known_default() == b.port_or_known_default()
}

/// The error of a request whose token's proof could not be made: it was not sent. The
/// prover's error as it is, as the tower layer returns it.
fn proof_failed(error: BoxError) -> reqwest_middleware::Error {
    reqwest_middleware::Error::Middleware(anyhow::Error::from_boxed(error))
}

/// The error of a request that no token could be had for: it was not sent (or, after a
/// refusal, not sent again). The [`TokenError`] itself, with no context around it, so that the
/// error's one line is the `TokenError`'s, which says why; [`TokenError::find`] looks inside
/// reqwest-middleware's error for it.
fn not_sent(error: TokenError) -> reqwest_middleware::Error {
    reqwest_middleware::Error::Middleware(anyhow::Error::new(error))
}
