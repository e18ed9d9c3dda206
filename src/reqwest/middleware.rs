//! The middleware: the cache's token on each request, and one retry when the server refuses it.

use std::future::{Future, poll_fn};
use std::pin::pin;

use ::reqwest::header::AUTHORIZATION;
use ::reqwest::{Request, Response, Url};
use http::{Extensions, HeaderMap, StatusCode, Uri};
use reqwest_middleware::{Middleware, Next};
use tower::BoxError;

use crate::cache::Rejection;
use crate::future::DRAIN_LIMIT;
use crate::head::SavedHeaders;
use crate::proving::{self, Proven};
use crate::verdict::VerdictRule;
use crate::{BearerAuthLayer, Refresher, Scope, Token, TokenCache, TokenError, TokenVerdict};

/// A [`reqwest_middleware::Middleware`] that authenticates requests with the [`TokenCache`]'s
/// bearer token: the tower layer's decisions, for a reqwest client.
///
/// Build it with [`new`](Self::new) (a refresher), [`from_cache`](Self::from_cache) (a cache
/// that tower clients of the same process may share: one token, one refresh between them), or
/// from a [`BearerAuthLayer`] (`BearerAuthMiddleware::from(&layer)`, which keeps the layer's
/// cache, scope, retry and verdict). See the [module documentation](super) for what it does
/// with each request, and where it goes in a stack.
///
/// | setting | default | why |
/// | --- | --- | --- |
/// | [`retry_unauthorized`](Self::retry_unauthorized) | on | a token revoked or rotated away before its expiry costs one retry, not a failed request |
/// | [`verdict`](Self::verdict) | [`TokenVerdict::of`]: a 401, unless its challenge says `insufficient_scope` | the server decides when a token is refused; an API with its own way of saying it is told here |
/// | [`scope`](Self::scope) | [`Scope::any`] | a client built for one API attaches the token to all it sends; narrow it when the client also reaches other hosts |
#[derive(Clone, Debug)]
pub struct BearerAuthMiddleware {
    cache: TokenCache,
    scope: Scope,
    retry: bool,
    verdict: VerdictRule,
}

impl BearerAuthMiddleware {
    /// A middleware that gets tokens from `refresher`, through a new [`TokenCache`] with the
    /// default settings.
    pub fn new(refresher: impl Refresher) -> Self {
        BearerAuthMiddleware::from_cache(TokenCache::new(refresher))
    }

    /// A middleware that reads `cache`, and so shares its token and its refreshes with every
    /// layer and middleware built from the same cache.
    pub fn from_cache(cache: TokenCache) -> Self {
        BearerAuthMiddleware {
            cache,
            scope: Scope::any(),
            retry: true,
            verdict: VerdictRule::default(),
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
    /// use tower_bearer::TokenVerdict;
    /// use tower_bearer::reqwest::BearerAuthMiddleware;
    /// # let refresher = service_fn(|_: tower_bearer::TokenRequest| async { tower_bearer::Token::bearer("t") });
    ///
    /// // An API that answers 419 for an expired token.
    /// let auth = BearerAuthMiddleware::new(refresher).verdict(|status: StatusCode, headers: &HeaderMap| {
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
        self.verdict = VerdictRule::custom(decide);
        self
    }

    /// The requests that get the token; any other passes through without one.
    pub fn scope(mut self, scope: Scope) -> Self {
        self.scope = scope;
        self
    }

    /// The cache the middleware reads.
    pub fn cache(&self) -> &TokenCache {
        &self.cache
    }

    /// Whether the token goes to `url`: the scope's decision, from the URL's parts.
    #[inline]
    fn allows(&self, url: &Url) -> bool {
        self.scope.allows_origin(
            url.scheme(),
            url.host_str(),
            url.port_or_known_default(),
            || url.as_str().parse().ok(),
        )
    }
}

impl From<&BearerAuthLayer> for BearerAuthMiddleware {
    /// The layer's cache (shared, not copied), scope, retry setting and verdict. The layer's
    /// replay limit has no counterpart: a reqwest body is either in memory already, and
    /// cloned by reference count, or a stream, and not sent twice.
    fn from(layer: &BearerAuthLayer) -> Self {
        BearerAuthMiddleware {
            cache: layer.cache.clone(),
            scope: layer.scope.clone(),
            retry: layer.settings.retry,
            verdict: layer.settings.verdict.clone(),
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
        mut request: Request,
        extensions: &mut Extensions,
        next: Next<'_>,
    ) -> reqwest_middleware::Result<Response> {
        if request.headers().contains_key(AUTHORIZATION) || !self.allows(request.url()) {
            return next.run(request, extensions).await;
        }
        let entry = match self.cache.current_as_is() {
            Some(entry) => entry,
            None => self.cache.acquire().into_future().await.map_err(not_sent)?,
        };
        let generation = entry.generation;
        let proven = attach(&mut request, &entry.token)?;
        drop(entry);
        let saved = if self.retry {
            Saved::save(&mut request, &proven)
        } else {
            None
        };
        let kept = match saved {
            Some(saved) => Kept::Copy(saved),
            None => Kept::Url(request.url().clone()),
        };
        let response = next.clone().run(request, extensions).await?;

        let verdict = self.judge(&response, kept.url(), generation, proven.as_deref());
        if matches!(verdict, TokenVerdict::Rejected | TokenVerdict::UseDpopNonce) {
            // Boxed: few requests come here, and its state would make every request's future
            // larger.
            let refused = Refused {
                response,
                verdict,
                kept,
                generation,
                proven,
            };
            return Box::pin(self.after_refusal(refused, extensions, next)).await;
        }
        Ok(response)
    }
}

/// An answer that refused the request's token, with what the middleware kept of the request.
struct Refused {
    response: Response,
    verdict: TokenVerdict,
    kept: Kept,
    generation: u64,
    proven: Option<Box<Proven>>,
}

impl BearerAuthMiddleware {
    /// Replaces a refused token, or proves it again with the server's nonce, and sends the
    /// request a second time if there is a copy to send; the second answer goes back whatever
    /// it is.
    async fn after_refusal(
        &self,
        refused: Refused,
        extensions: &mut Extensions,
        next: Next<'_>,
    ) -> reqwest_middleware::Result<Response> {
        let Refused {
            response,
            verdict,
            kept,
            generation,
            proven,
        } = refused;
        let (retry, generation, proven) = match (verdict, kept, proven) {
            (TokenVerdict::Rejected, kept, _) => {
                let rejection = self.cache.rejected(generation);
                // Without a copy, the refresh started above still serves the requests that
                // follow; this one gets its refusal.
                let (Kept::Copy(saved), Rejection::RetryWith(acquire)) = (kept, rejection) else {
                    return Ok(response);
                };
                let Some(mut retry) = saved.restore() else {
                    return Ok(response);
                };
                let entry = replacement(acquire.into_future(), response)
                    .await
                    .map_err(not_sent)?;
                let proven = attach(&mut retry, &entry.token)?;
                self.cache.count_retry();
                tracing::debug!(
                    generation = entry.generation,
                    "retrying with a new token after the server rejected the old one"
                );
                (retry, entry.generation, proven)
            }
            (TokenVerdict::UseDpopNonce, Kept::Copy(saved), Some(proven)) => {
                // Not the token's fault: the same token again, with a new proof that carries
                // the nonce. It uses up the request's one retry.
                let Some(mut retry) = saved.restore() else {
                    return Ok(response);
                };
                let uri = uri_of(retry.url())?;
                let method = retry.method().clone();
                let proven = proving::prove_again(&proven, &method, &uri, retry.headers_mut())
                    .map_err(proof_failed)?;
                self.cache.count_nonce_retry();
                tracing::debug!(generation, "retrying with the server's new DPoP nonce");
                (retry, generation, Some(proven))
            }
            _ => return Ok(response),
        };

        let sent_to = retry.url().clone();
        let response = next.run(retry, extensions).await?;
        // A refusal of the second attempt still tells the cache, so that the requests that
        // follow get a new token.
        let verdict = self.judge(&response, &sent_to, generation, proven.as_deref());
        if verdict == TokenVerdict::Rejected {
            let _ = self.cache.rejected(generation);
        }
        Ok(response)
    }
}

impl BearerAuthMiddleware {
    /// What `response` says about the token of `generation` its request carried, learning the
    /// server's DPoP nonce on the way. Nothing, if it came from another origin than the request
    /// was sent to: reqwest followed a redirect and left the token behind (see the module
    /// documentation). A nonce challenge counts only if the answer brought a nonce the proof
    /// did not have.
    fn judge(
        &self,
        response: &Response,
        sent_to: &Url,
        generation: u64,
        proven: Option<&Proven>,
    ) -> TokenVerdict {
        if !same_origin(sent_to, response.url()) {
            return TokenVerdict::Unrelated;
        }
        let (status, headers) = (response.status(), response.headers());
        let new_nonce = proving::learn(proven, headers);
        match self.verdict.judge(status, headers, generation) {
            TokenVerdict::UseDpopNonce if !new_nonce => TokenVerdict::Unrelated,
            verdict => verdict,
        }
    }
}

/// Attaches `token` to `request`, with a proof if it is bound to a key.
fn attach(request: &mut Request, token: &Token) -> reqwest_middleware::Result<Option<Box<Proven>>> {
    request
        .headers_mut()
        .insert(AUTHORIZATION, token.authorization().clone());
    if !proving::needs_proof(token) {
        return Ok(None);
    }
    let (method, uri) = (request.method().clone(), uri_of(request.url())?);
    proving::prove(token, &method, &uri, request.headers_mut()).map_err(proof_failed)
}

/// The URI a proof names, as reqwest itself turns the URL into one to send it.
fn uri_of(url: &Url) -> reqwest_middleware::Result<Uri> {
    url.as_str()
        .parse()
        .map_err(|error: http::uri::InvalidUri| proof_failed(error.into()))
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
    fn save(request: &mut Request, proven: &Option<Box<Proven>>) -> Option<Saved> {
        // reqwest copies the rest (its extensions, which hold its per-request settings, are
        // its own), and knows which bodies it can. With the headers out of the way, its copy
        // of them is an empty map, which allocates nothing.
        let headers = std::mem::take(request.headers_mut());
        let rest = request.try_clone();
        *request.headers_mut() = headers;
        Some(Saved {
            rest: rest?,
            headers: SavedHeaders::save(request.headers(), proven.is_some())?,
        })
    }

    fn restore(self) -> Option<Request> {
        let mut request = self.rest;
        *request.headers_mut() = self.headers.restore()?;
        Some(request)
    }
}

/// reqwest's own test for a redirect that drops `Authorization`: another scheme, host or port.
fn same_origin(a: &Url, b: &Url) -> bool {
    a.scheme() == b.scheme()
        && a.host_str() == b.host_str()
        && a.port_or_known_default() == b.port_or_known_default()
}

/// Waits for `token`, reading the refused response's body meanwhile so that its connection
/// can be reused; once the token is there (or past [`DRAIN_LIMIT`]) the rest is dropped.
async fn replacement<T>(mut token: impl Future<Output = T> + Unpin, refused: Response) -> T {
    let mut drain = pin!(drain(refused));
    let mut drained = false;
    poll_fn(|cx| {
        if !drained {
            drained = drain.as_mut().poll(cx).is_ready();
        }
        std::pin::Pin::new(&mut token).poll(cx)
    })
    .await
}

async fn drain(mut response: Response) {
    let mut read = 0;
    while let Ok(Some(chunk)) = response.chunk().await {
        read += chunk.len();
        if read > DRAIN_LIMIT {
            return;
        }
    }
}

/// The error of a request whose token's proof could not be made: it was not sent.
fn proof_failed(error: BoxError) -> reqwest_middleware::Error {
    reqwest_middleware::Error::Middleware(
        anyhow::Error::from_boxed(error).context("request not sent"),
    )
}

/// The error of a request that no token could be had for: it was not sent (or, after a
/// refusal, not sent again). The [`TokenError`] is the source, so that [`TokenError::find`]
/// reaches it through reqwest-middleware's wrappers, which hand out an error's sources but
/// not the error itself.
fn not_sent(error: TokenError) -> reqwest_middleware::Error {
    reqwest_middleware::Error::Middleware(anyhow::Error::new(error).context("request not sent"))
}
