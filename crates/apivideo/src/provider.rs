//! The api.video token provider: a refresher over any HTTP client.

use std::fmt;
use std::future::Future;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::Uri;
use http::uri::{PathAndQuery, Scheme};
use http_body_util::Full;
use secrecy::{ExposeSecret, SecretString};
use tower::Service;

use super::error::ApiVideoError;
use super::wire::{self, Credential};
use tower_bearer::{BearerAuthLayer, Scope, Token, TokenRequest};
use tower_bearer_provider as http_client;
use tower_bearer_provider::{Grants, HttpClient, Refresher, RequestBody, is_cleartext, shown_url};

/// api.video's production server.
pub const PRODUCTION: &str = "https://ws.api.video";

/// api.video's sandbox server (videos are watermarked and deleted after a day). Its API keys
/// are not production's.
pub const SANDBOX: &str = "https://sandbox.api.video";

/// How long one call may take unless [`ApiVideo::timeout`] says otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Gets api.video access tokens: a refresher for a [`TokenCache`](tower_bearer::TokenCache) or
/// [`BearerAuthLayer`].
///
/// As a `Service<TokenRequest, Response = Token>` it logs in with the API key, trades the
/// previous token's refresh token for a new pair once it has one, and falls back to the API
/// key when the server refuses the refresh token. See the [module documentation](super) for
/// the details, and for what it makes of every answer.
///
/// It sends its requests through `C`, any tower HTTP service ([`HttpClient`]): build it on
/// the client the rest of the stack uses, so that both share the connection pool, TLS
/// settings and proxies. `B` is the client's request body type ([`RequestBody`]),
/// [`Full<Bytes>`] or, for a client built for [`BearerAuth`](tower_bearer::BearerAuth),
/// [`ReplayBody<Full<Bytes>>`](tower_bearer::ReplayBody); the constructors infer it from `C`.
///
/// The API key is kept as a [`SecretString`] (zeroised on drop, never in `Debug`); each login
/// request's body holds a copy while the client sends it.
///
/// # Example
///
/// ```
/// use bytes::Bytes;
/// use http::{Request, StatusCode};
/// use http_body_util::Full;
/// use hyper_util::client::legacy::{Client, connect::HttpConnector};
/// use hyper_util::rt::TokioExecutor;
/// use tower::{ServiceBuilder, ServiceExt};
/// use tower_bearer::ReplayBody;
/// use tower_bearer_apivideo::ApiVideo;
/// # use tower_bearer_mock::apivideo::MockServer;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), tower::BoxError> {
/// # let server = MockServer::builder().api_key("my-api-key").start().await?;
/// let client: Client<HttpConnector, ReplayBody<Full<Bytes>>> =
///     Client::builder(TokioExecutor::new()).build_http();
///
/// // In production: ApiVideo::production("my-api-key", client.clone()). Here, a mock server.
/// let api = ApiVideo::with_base_uri(server.uri(), "my-api-key", client.clone())?;
/// let videos = ServiceBuilder::new()
///     .layer(api.into_layer())
///     .service(client);
///
/// let list = Request::get(server.uri_for("/videos")).body(Full::default())?;
/// let response = videos.oneshot(list).await?;
/// assert_eq!(response.status(), StatusCode::OK);
/// # assert_eq!(server.counters().api_key_logins, 1);
/// # Ok(())
/// # }
/// ```
pub struct ApiVideo<C, B = Full<Bytes>> {
    inner: Refresher<ProviderConfig, C, B>,
}

/// The future an [`ApiVideo`] call returns.
pub type ResponseFuture = tower_bearer_provider::ResponseFuture<ApiVideoError>;

/// What every clone of a provider, and every call in flight, shares.
struct ProviderConfig {
    base_uri: Uri,
    login: Uri,
    refresh: Uri,
    scope: Scope,
    api_key: SecretString,
}

impl<C, B> ApiVideo<C, B>
where
    C: HttpClient<B>,
    B: RequestBody,
{
    /// A provider for api.video's production server, [`PRODUCTION`].
    pub fn production(api_key: impl Into<SecretString>, client: C) -> Self {
        Self::known(PRODUCTION, api_key.into(), client)
    }

    /// A provider for api.video's sandbox, [`SANDBOX`].
    pub fn sandbox(api_key: impl Into<SecretString>, client: C) -> Self {
        Self::known(SANDBOX, api_key.into(), client)
    }

    /// A provider for api.video at another address: a proxy, a mock server.
    ///
    /// `base_uri` is an absolute `https` URI with a host, such as
    /// `https://proxy.example/apivideo/`, or an `http` one on loopback (`localhost`,
    /// `127.0.0.0/8`, `::1`), such as a mock server's `http://127.0.0.1:8080`; the auth
    /// endpoints are under its path (`…/apivideo/auth/api-key`). It may not have a query.
    ///
    /// # Errors
    ///
    /// [`ApiVideoError::InvalidBaseUri`] if `base_uri` is not such a URI;
    /// [`ApiVideoError::CleartextBaseUri`] if it is `http` on another host (see
    /// [`with_cleartext_base_uri`](Self::with_cleartext_base_uri)).
    pub fn with_base_uri<U>(
        base_uri: U,
        api_key: impl Into<SecretString>,
        client: C,
    ) -> Result<Self, ApiVideoError>
    where
        U: TryInto<Uri>,
    {
        Self::at(base_uri, api_key.into(), client, false)
    }

    /// [`with_base_uri`](Self::with_base_uri), but an `http` base URI may be on any host: for
    /// a test server on another machine or in another container. The API key then travels
    /// in clear; never use this in production.
    ///
    /// # Errors
    ///
    /// [`ApiVideoError::InvalidBaseUri`] if `base_uri` is not an absolute `http` or `https`
    /// URI with a host and no query.
    pub fn with_cleartext_base_uri<U>(
        base_uri: U,
        api_key: impl Into<SecretString>,
        client: C,
    ) -> Result<Self, ApiVideoError>
    where
        U: TryInto<Uri>,
    {
        Self::at(base_uri, api_key.into(), client, true)
    }

    fn at<U>(
        base_uri: U,
        api_key: SecretString,
        client: C,
        allow_cleartext: bool,
    ) -> Result<Self, ApiVideoError>
    where
        U: TryInto<Uri>,
    {
        let base_uri = base_uri
            .try_into()
            .map_err(|_| ApiVideoError::InvalidBaseUri)?;
        let in_clear = is_cleartext(&base_uri);
        let config = ProviderConfig::new(base_uri, api_key).ok_or(ApiVideoError::InvalidBaseUri)?;
        if in_clear && !allow_cleartext {
            return Err(ApiVideoError::CleartextBaseUri);
        }
        Ok(Self::from_config(config, client))
    }

    fn known(base_uri: &'static str, api_key: SecretString, client: C) -> Self {
        let config = ProviderConfig::new(Uri::from_static(base_uri), api_key)
            .expect("api.video's own base URIs are valid");
        Self::from_config(config, client)
    }

    /// The one place a provider is put together.
    fn from_config(config: ProviderConfig, client: C) -> Self {
        ApiVideo {
            inner: Refresher::new(config, client, DEFAULT_TIMEOUT),
        }
    }
}

impl<C, B> ApiVideo<C, B> {
    /// The most one call may take, both requests together when a refused refresh token falls
    /// back to the API key; past it the call fails with
    /// [`NoAnswer::Timeout`](crate::NoAnswer::Timeout).
    /// Default: [`DEFAULT_TIMEOUT`], 30 s.
    ///
    /// A refresher should always have one: requests that need a token wait for the refresh
    /// in flight, and a refresh that never ends would hold them until their own timeouts.
    /// Stacking `tower::timeout` on the provider works as well, but a layer built with
    /// [`into_layer`](Self::into_layer) is covered without it.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.inner.set_timeout(timeout);
        self
    }

    fn config(&self) -> &ProviderConfig {
        self.inner.grants()
    }

    /// The base URI the provider sends to.
    pub fn base_uri(&self) -> &Uri {
        &self.config().base_uri
    }

    /// The requests api.video's tokens are for: those to the base URI's origin (scheme, host
    /// and port). [`into_layer`](Self::into_layer) scopes its layer to it.
    pub fn scope(&self) -> Scope {
        self.config().scope.clone()
    }

    /// A reference to the HTTP client.
    pub fn get_ref(&self) -> &C {
        self.inner.get_ref()
    }

    /// A mutable reference to the HTTP client.
    pub fn get_mut(&mut self) -> &mut C {
        self.inner.get_mut()
    }

    /// The HTTP client.
    pub fn into_inner(self) -> C {
        self.inner.into_inner()
    }
}

impl<C, B> ApiVideo<C, B>
where
    C: HttpClient<B>,
    B: RequestBody,
{
    /// A [`BearerAuthLayer`] getting its tokens from this provider, with the default
    /// [`TokenCache`](tower_bearer::TokenCache) settings, attaching them only to requests for
    /// api.video's origin ([`scope`](Self::scope)).
    ///
    /// The scope is the point of this method over `BearerAuthLayer::new(api, scope)`: a client that
    /// also fetches pre-signed upload URLs or CDN assets never sends them the token. To send
    /// it elsewhere too, replace the scope: `.into_layer().scope(Scope::origins([..])?)`.
    ///
    /// For other cache settings, or other middleware around the provider, build the layer
    /// yourself and keep the scope:
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use bytes::Bytes;
    /// # use http_body_util::Full;
    /// # use tower::{BoxError, ServiceBuilder, service_fn};
    /// use tower_bearer::{BearerAuthLayer, TokenCache};
    /// use tower_bearer_apivideo::ApiVideo;
    /// # let client = service_fn(|_: http::Request<Full<Bytes>>| async {
    /// #     Ok::<_, BoxError>(http::Response::new(Full::<Bytes>::default()))
    /// # });
    ///
    /// let api = ApiVideo::sandbox("my-api-key", client);
    /// let scope = api.scope();
    /// let refresher = ServiceBuilder::new().concurrency_limit(1).service(api);
    /// let cache = TokenCache::builder(refresher)
    ///     .refresh_ahead(Duration::from_secs(600))
    ///     .build();
    /// let layer = BearerAuthLayer::from_cache(cache, scope);
    /// ```
    pub fn into_layer(self) -> BearerAuthLayer {
        let scope = self.scope();
        BearerAuthLayer::new(self, scope)
    }
}

impl ProviderConfig {
    fn new(base_uri: Uri, api_key: SecretString) -> Option<Self> {
        let scheme = base_uri.scheme()?;
        if (*scheme != Scheme::HTTPS && *scheme != Scheme::HTTP)
            || base_uri.host().is_none()
            || base_uri.query().is_some()
        {
            return None;
        }
        let scope = Scope::origin(base_uri.clone()).ok()?;
        let endpoint = |path: &str| -> Option<Uri> {
            let prefix = base_uri.path().trim_end_matches('/');
            let path_and_query = PathAndQuery::try_from(format!("{prefix}{path}")).ok()?;
            let mut parts = base_uri.clone().into_parts();
            parts.path_and_query = Some(path_and_query);
            Uri::from_parts(parts).ok()
        };
        Some(ProviderConfig {
            login: endpoint("/auth/api-key")?,
            refresh: endpoint("/auth/refresh")?,
            base_uri,
            scope,
            api_key,
        })
    }
}

impl<C: Clone, B> Clone for ApiVideo<C, B> {
    fn clone(&self) -> Self {
        ApiVideo {
            inner: self.inner.clone(),
        }
    }
}

impl<C, B> fmt::Debug for ApiVideo<C, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiVideo")
            .field("base_uri", &self.config().base_uri)
            .field("api_key", &"[REDACTED]")
            .field("timeout", &self.inner.timeout())
            .finish_non_exhaustive()
    }
}

impl<C, B> Service<TokenRequest> for ApiVideo<C, B>
where
    C: HttpClient<B>,
    B: RequestBody,
{
    type Response = Token;
    type Error = ApiVideoError;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: TokenRequest) -> Self::Future {
        self.inner.call(request)
    }
}

/// What one call sends: `POST /auth/refresh` with the previous token's refresh token, and
/// `POST /auth/api-key` for the first token, and when the refresh token is refused.
impl<C, B> Grants<C, B> for ProviderConfig
where
    C: HttpClient<B>,
    B: RequestBody,
{
    type Error = ApiVideoError;

    fn name(&self) -> &'static str {
        "apivideo"
    }

    fn primary<'a>(
        &'a self,
        client: &'a mut C,
        reason: &'static str,
    ) -> impl Future<Output = Result<Token, ApiVideoError>> + Send + 'a {
        let credential = Credential::ApiKey(self.api_key.expose_secret());
        exchange(client, &self.login, credential, reason)
    }

    fn refresh<'a>(
        &'a self,
        client: &'a mut C,
        refresh_token: &'a str,
        reason: &'static str,
    ) -> impl Future<Output = Result<Token, ApiVideoError>> + Send + 'a {
        exchange(
            client,
            &self.refresh,
            Credential::RefreshToken(refresh_token),
            reason,
        )
    }

    /// Used already, ended by a login elsewhere (another process with the same key), expired
    /// or revoked: the key still works, and a second request now is cheaper than a failed
    /// refresh and a backoff.
    fn refused_refresh_token(&self, error: &ApiVideoError) -> bool {
        matches!(error, ApiVideoError::Rejected { .. })
    }

    fn endpoint_url(&self) -> String {
        shown_url(&self.base_uri)
    }
}

/// One request to an auth endpoint, and what its answer means.
async fn exchange<C, B>(
    client: &mut C,
    uri: &Uri,
    credential: Credential<'_>,
    reason: &'static str,
) -> Result<Token, ApiVideoError>
where
    C: HttpClient<B>,
    B: RequestBody,
{
    let request = wire::request::<B>(uri, &credential);
    let answer = http_client::send(client, request).await?;
    let (status, sent_at) = (answer.status.as_u16(), answer.sent_at);
    let result = wire::token_from(answer, uri, &credential.secrets());
    tracing::trace!(
        grant = credential.name(),
        reason,
        status,
        elapsed_ms = sent_at.elapsed().as_millis() as u64,
        ok = result.is_ok(),
        "api.video auth request"
    );
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{Request, Response};
    use tower::{BoxError, ServiceExt, service_fn};
    use tower_bearer::{RefreshReason, ReplayBody};
    use tower_bearer_provider::NoAnswer;

    type Client = tower::util::ServiceFn<
        fn(Request<Full<Bytes>>) -> std::future::Ready<Result<Response<Full<Bytes>>, BoxError>>,
    >;

    fn client() -> Client {
        service_fn(|_| std::future::ready(Ok(Response::new(Full::default()))))
    }

    #[test]
    fn endpoints_sit_under_the_base_path() {
        let api = ApiVideo::<_, Full<Bytes>>::with_base_uri(
            "https://proxy.example:8443/apivideo/",
            "k",
            client(),
        )
        .unwrap();
        assert_eq!(
            api.config().login,
            "https://proxy.example:8443/apivideo/auth/api-key"
        );
        assert_eq!(
            api.config().refresh,
            "https://proxy.example:8443/apivideo/auth/refresh"
        );
        assert!(
            api.scope()
                .allows(&"https://proxy.example:8443/videos".parse().unwrap())
        );
        assert!(
            !api.scope()
                .allows(&"https://proxy.example/videos".parse().unwrap())
        );

        let api = ApiVideo::<_, Full<Bytes>>::sandbox("k", client());
        assert_eq!(api.config().login, "https://sandbox.api.video/auth/api-key");
        assert!(
            api.scope()
                .allows(&"https://sandbox.api.video/videos".parse().unwrap())
        );
        assert!(
            !api.scope()
                .allows(&"https://ws.api.video/videos".parse().unwrap())
        );
        let api = ApiVideo::<_, Full<Bytes>>::production("k", client());
        assert_eq!(api.config().refresh, "https://ws.api.video/auth/refresh");
    }

    #[test]
    fn bad_base_uris() {
        for uri in [
            "/relative",
            "ftp://host",
            "https://host/?query",
            "not a uri",
            "",
        ] {
            let result = ApiVideo::<_, Full<Bytes>>::with_base_uri(uri, "k", client());
            assert!(
                matches!(result, Err(ApiVideoError::InvalidBaseUri)),
                "{uri}"
            );
        }
    }

    /// Bug: a provider built on its own and not yet used as a refresher (here only printed)
    /// did not build (E0282): its body type was left to the default, which does not drive
    /// inference. The constructors now take it from the client.
    #[test]
    fn the_body_type_is_inferred_from_the_client() {
        let replaying = service_fn(|_: Request<ReplayBody<Full<Bytes>>>| {
            std::future::ready(Ok::<_, BoxError>(Response::new(Full::<Bytes>::default())))
        });
        let api = ApiVideo::sandbox("k", replaying);
        assert!(format!("{api:?}").contains("sandbox"));
        let api = ApiVideo::with_base_uri("http://127.0.0.1:1", "k", client()).unwrap();
        assert!(format!("{api:?}").contains("127.0.0.1"));
    }

    #[test]
    fn debug_hides_the_key() {
        let api = ApiVideo::<_, Full<Bytes>>::sandbox("SECRET-KEY", client());
        let debug = format!("{api:?}");
        assert!(!debug.contains("SECRET"), "{debug}");
        assert!(debug.contains("sandbox.api.video"));
    }

    #[tokio::test(start_paused = true)]
    async fn the_timeout_covers_the_call() {
        let hanging = service_fn(|_: Request<Full<Bytes>>| {
            std::future::pending::<Result<Response<Full<Bytes>>, BoxError>>()
        });
        let api = ApiVideo::sandbox("k", hanging).timeout(Duration::from_secs(2));
        let error = api
            .oneshot(TokenRequest::new(RefreshReason::Initial, None))
            .await
            .unwrap_err();
        assert!(matches!(
            &error,
            ApiVideoError::NoAnswer(NoAnswer::Timeout { after, url })
                if *after == Duration::from_secs(2) && url == "https://sandbox.api.video/"
        ));
    }
}
