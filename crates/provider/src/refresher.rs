//! A token provider as a tower `Service`: the plumbing every provider shares (the ready
//! client, the call's timeout, the fallback from a refused refresh token to the provider's
//! own credential), around what is each provider's own ([`Grants`]).

use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::mem;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tower::Service;
use tower_bearer::{Token, TokenRequest};

use crate::{HttpClient, NoAnswer, RequestBody};

/// What a token provider sends, and what its errors are: the part of a provider that is its
/// own. A [`Refresher`] does the rest.
///
/// A call uses [`refresh`](Self::refresh) when the cache's previous token has a refresh
/// token, and [`primary`](Self::primary) when it has none, or when the server refused it
/// ([`refused_refresh_token`](Self::refused_refresh_token)): refresh tokens are single-use,
/// and may be refused for ordinary reasons (used already by a response that was lost, ended
/// by a login elsewhere), so the provider's own credential stands in, in the same call. A
/// refresh that failed otherwise (a transient failure) is the call's answer: the refresh
/// token may still be good, and the cache's backoff decides when to ask again.
///
/// ```
/// use std::future::Future;
/// use std::time::Duration;
/// use tower::{BoxError, ServiceExt};
/// use tower_bearer::{RefreshReason, Token, TokenRequest};
/// use tower_bearer_provider::{Grants, HttpClient, Refresher, RequestBody};
///
/// /// A provider that makes up its tokens (a real one sends requests through `client`).
/// struct Made;
///
/// impl<C: HttpClient<B>, B: RequestBody> Grants<C, B> for Made {
///     type Error = BoxError;
///
///     fn primary<'a>(
///         &'a self,
///         _client: &'a mut C,
///         _reason: &'static str,
///     ) -> impl Future<Output = Result<Token, BoxError>> + Send + 'a {
///         async { Ok(Token::bearer("primary")?.with_refresh_token("r1")) }
///     }
///
///     fn refresh<'a>(
///         &'a self,
///         _client: &'a mut C,
///         refresh_token: &'a str,
///         _reason: &'static str,
///     ) -> impl Future<Output = Result<Token, BoxError>> + Send + 'a {
///         async move { Ok(Token::bearer(format!("from-{refresh_token}"))?) }
///     }
///
///     fn refused_refresh_token(&self, _: &BoxError) -> bool {
///         false
///     }
///
///     fn endpoint_url(&self) -> String {
///         "https://auth.example/token".into()
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), BoxError> {
/// # let client = tower::service_fn(|_: http::Request<http_body_util::Full<bytes::Bytes>>| async {
/// #     Ok::<_, BoxError>(http::Response::new(http_body_util::Full::<bytes::Bytes>::default()))
/// # });
/// let provider = Refresher::new(Made, client, Duration::from_secs(30));
/// let first = provider.clone().oneshot(TokenRequest::new(RefreshReason::Initial, None)).await?;
/// let next = provider.oneshot(TokenRequest::new(RefreshReason::Expired, Some(first))).await?;
/// assert_eq!(next.authorization(), "Bearer from-r1");
/// # Ok(())
/// # }
/// ```
pub trait Grants<C, B>: Send + Sync + 'static {
    /// The provider's error: a request that brought back no answer is one of them.
    type Error: From<NoAnswer> + fmt::Display + Send + 'static;

    /// Gets a token with the provider's own credential (an API key, an OAuth 2.0 grant).
    /// `reason` is the cache's, for logs.
    fn primary<'a>(
        &'a self,
        client: &'a mut C,
        reason: &'static str,
    ) -> impl Future<Output = Result<Token, Self::Error>> + Send + 'a;

    /// Trades `refresh_token` (the previous token's) for a token. By default, for a provider
    /// whose server hands out no refresh token (a metadata endpoint): [`primary`](Self::primary)
    /// again.
    fn refresh<'a>(
        &'a self,
        client: &'a mut C,
        refresh_token: &'a str,
        reason: &'static str,
    ) -> impl Future<Output = Result<Token, Self::Error>> + Send + 'a {
        let _ = refresh_token;
        self.primary(client, reason)
    }

    /// Whether `error`, from [`refresh`](Self::refresh), is the server refusing the refresh
    /// token, so that [`primary`](Self::primary) stands in. By default never: without refresh
    /// tokens there is nothing to stand in for.
    fn refused_refresh_token(&self, error: &Self::Error) -> bool {
        let _ = error;
        false
    }

    /// The URL that a failure outside any one request names ([`NoAnswer::Transport`] for a
    /// client that failed while getting ready, [`NoAnswer::Timeout`] for a call that took longer
    /// than the timeout): the endpoint the provider asks, as [`shown_url`](crate::shown_url)
    /// shows it.
    fn endpoint_url(&self) -> String;

    /// A short, fixed name for the provider (`oauth2`, `apivideo`): the `provider` field of
    /// the cache's refresh span, which a call fills in. Never a URL, client id or account.
    fn name(&self) -> &'static str {
        "custom"
    }
}

/// A token provider: a tower `Service` from [`TokenRequest`] to [`Token`], sending the
/// requests that `G` ([`Grants`]) makes through the HTTP client `C`.
///
/// A call may send several requests (discovery, a refused refresh token's fallback), so it
/// takes the client that was driven ready and leaves a clone for the next call, as tower's
/// own `Retry` does. The whole call, every request in it, is bounded by the timeout.
pub struct Refresher<G, C, B> {
    grants: Arc<G>,
    client: C,
    timeout: Duration,
    _body: PhantomData<fn() -> B>,
}

impl<G, C, B> Refresher<G, C, B> {
    /// A provider sending `grants`' requests through `client`, each call bounded by
    /// `timeout`.
    pub fn new(grants: G, client: C, timeout: Duration) -> Self {
        Refresher {
            grants: Arc::new(grants),
            client,
            timeout,
            _body: PhantomData,
        }
    }

    /// What the provider sends.
    pub fn grants(&self) -> &G {
        &self.grants
    }

    /// The most one call may take.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Sets the most one call may take.
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
    }

    /// A reference to the HTTP client.
    pub fn get_ref(&self) -> &C {
        &self.client
    }

    /// A mutable reference to the HTTP client.
    pub fn get_mut(&mut self) -> &mut C {
        &mut self.client
    }

    /// The HTTP client.
    pub fn into_inner(self) -> C {
        self.client
    }
}

impl<G, C: Clone, B> Clone for Refresher<G, C, B> {
    fn clone(&self) -> Self {
        Refresher {
            grants: Arc::clone(&self.grants),
            client: self.client.clone(),
            timeout: self.timeout,
            _body: PhantomData,
        }
    }
}

impl<G, C, B> fmt::Debug for Refresher<G, C, B>
where
    G: fmt::Debug,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Refresher")
            .field("grants", &self.grants)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl<G, C, B> Service<TokenRequest> for Refresher<G, C, B>
where
    G: Grants<C, B>,
    C: HttpClient<B>,
    B: RequestBody,
{
    type Response = Token;
    type Error = G::Error;
    type Future = ResponseFuture<G::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.client
            .poll_ready(cx)
            .map_err(|error| NoAnswer::transport(error, self.grants.endpoint_url()).into())
    }

    fn call(&mut self, request: TokenRequest) -> Self::Future {
        // The cache calls its refresher inside the refresh's span.
        tracing::Span::current().record("provider", self.grants.name());
        let clone = self.client.clone();
        let mut client = mem::replace(&mut self.client, clone);
        let grants = Arc::clone(&self.grants);
        let timeout = self.timeout;
        ResponseFuture {
            inner: Box::pin(async move {
                let call = fetch(&*grants, &mut client, &request);
                match tokio::time::timeout(timeout, call).await {
                    Ok(result) => result,
                    Err(_) => Err(NoAnswer::timeout(timeout, grants.endpoint_url()).into()),
                }
            }),
        }
    }
}

/// One call: the refresh token if the previous token has one, the primary credential if not,
/// or if the server refuses the refresh token.
async fn fetch<G, C, B>(
    grants: &G,
    client: &mut C,
    request: &TokenRequest,
) -> Result<Token, G::Error>
where
    G: Grants<C, B>,
{
    let reason = request.reason().as_str();
    if let Some(refresh_token) = request.previous().and_then(Token::expose_refresh_token) {
        match grants.refresh(client, refresh_token, reason).await {
            Err(error) if grants.refused_refresh_token(&error) => {
                // A provider's error never holds a secret: safe to log.
                tracing::debug!(
                    reason,
                    %error,
                    "the refresh token was refused; asking with the provider's own credential"
                );
            }
            result => return result,
        }
    }
    grants.primary(client, reason).await
}

/// The future a [`Refresher`] call returns.
pub struct ResponseFuture<E> {
    inner: Pin<Box<dyn Future<Output = Result<Token, E>> + Send>>,
}

impl<E> Future for ResponseFuture<E> {
    type Output = Result<Token, E>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.inner.as_mut().poll(cx)
    }
}

impl<E> fmt::Debug for ResponseFuture<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use bytes::Bytes;
    use http_body_util::Full;
    use tower::{BoxError, ServiceExt, service_fn};
    use tower_bearer::RefreshReason;

    use super::*;

    /// Grants that say what they were asked; the refresh token fails as `refresh` says.
    struct Scripted {
        refresh: Result<(), &'static str>,
        primary_hangs: bool,
        asked: Mutex<Vec<&'static str>>,
    }

    impl Scripted {
        fn new(refresh: Result<(), &'static str>) -> Self {
            Scripted {
                refresh,
                primary_hangs: false,
                asked: Mutex::new(Vec::new()),
            }
        }
    }

    const ENDPOINT: &str = "https://auth.example/token";

    impl<C: Send, B: 'static> Grants<C, B> for Scripted {
        type Error = BoxError;

        async fn primary<'a>(&'a self, _: &'a mut C, _: &'static str) -> Result<Token, BoxError> {
            self.asked.lock().unwrap().push("primary");
            if self.primary_hangs {
                std::future::pending::<()>().await;
            }
            Ok(Token::bearer("from-primary").unwrap())
        }

        async fn refresh<'a>(
            &'a self,
            _: &'a mut C,
            _: &'a str,
            _: &'static str,
        ) -> Result<Token, BoxError> {
            self.asked.lock().unwrap().push("refresh");
            self.refresh
                .map(|()| Token::bearer("from-refresh").unwrap())
                .map_err(BoxError::from)
        }

        fn refused_refresh_token(&self, error: &BoxError) -> bool {
            error.to_string() == "refused"
        }

        fn endpoint_url(&self) -> String {
            ENDPOINT.into()
        }
    }

    type Client = tower::util::ServiceFn<
        fn(
            http::Request<Full<Bytes>>,
        ) -> std::future::Ready<Result<http::Response<Full<Bytes>>, BoxError>>,
    >;

    fn client() -> Client {
        service_fn(|_| std::future::ready(Ok(http::Response::new(Full::default()))))
    }

    async fn call(
        grants: Scripted,
        refresh_token: Option<&str>,
    ) -> (Result<Token, BoxError>, Vec<&'static str>) {
        let previous = refresh_token.map(|r| Token::bearer("old").unwrap().with_refresh_token(r));
        let provider: Refresher<_, Client, Full<Bytes>> =
            Refresher::new(grants, client(), Duration::from_secs(5));
        let result = provider
            .clone()
            .oneshot(TokenRequest::new(RefreshReason::Expired, previous))
            .await;
        let asked = provider.grants().asked.lock().unwrap().clone();
        (result, asked)
    }

    #[tokio::test]
    async fn a_refused_refresh_token_falls_back_to_the_primary_credential_in_the_same_call() {
        let (token, asked) = call(Scripted::new(Err("refused")), Some("r1")).await;
        assert_eq!(token.unwrap().authorization(), "Bearer from-primary");
        assert_eq!(asked, ["refresh", "primary"]);
    }

    #[tokio::test]
    async fn any_other_refresh_failure_is_the_answer() {
        let (error, asked) = call(Scripted::new(Err("server down")), Some("r1")).await;
        assert_eq!(error.unwrap_err().to_string(), "server down");
        assert_eq!(asked, ["refresh"]);
        let (token, asked) = call(Scripted::new(Ok(())), Some("r1")).await;
        assert_eq!(token.unwrap().authorization(), "Bearer from-refresh");
        assert_eq!(asked, ["refresh"]);
    }

    #[tokio::test]
    async fn without_a_refresh_token_the_primary_credential_is_asked() {
        let (token, asked) = call(Scripted::new(Ok(())), None).await;
        assert_eq!(token.unwrap().authorization(), "Bearer from-primary");
        assert_eq!(asked, ["primary"]);
    }

    /// Grants with no refresh tokens write only the primary credential: given a previous
    /// token with one anyway, the default `refresh` asks the primary credential, once.
    #[tokio::test]
    async fn the_default_refresh_is_the_primary_credential() {
        struct PrimaryOnly(Mutex<u32>);

        impl<C: Send, B: 'static> Grants<C, B> for PrimaryOnly {
            type Error = BoxError;

            async fn primary<'a>(
                &'a self,
                _: &'a mut C,
                _: &'static str,
            ) -> Result<Token, BoxError> {
                *self.0.lock().unwrap() += 1;
                Ok(Token::bearer("from-primary").unwrap())
            }

            fn endpoint_url(&self) -> String {
                ENDPOINT.into()
            }
        }

        let grants = PrimaryOnly(Mutex::new(0));
        assert!(!Grants::<Client, Full<Bytes>>::refused_refresh_token(
            &grants,
            &"refused".into()
        ));
        // What the refresh span's `provider` says of a provider that names none.
        assert_eq!(Grants::<Client, Full<Bytes>>::name(&grants), "custom");
        let provider: Refresher<_, Client, Full<Bytes>> =
            Refresher::new(grants, client(), Duration::from_secs(5));
        let previous = Token::bearer("old").unwrap().with_refresh_token("r1");
        let token = provider
            .clone()
            .oneshot(TokenRequest::new(RefreshReason::Expired, Some(previous)))
            .await
            .unwrap();
        assert_eq!(token.authorization(), "Bearer from-primary");
        assert_eq!(*provider.grants().0.lock().unwrap(), 1);
    }

    /// The timeout covers the whole call: the refresh and its fallback together.
    #[tokio::test(start_paused = true)]
    async fn the_timeout_covers_the_fallback_too() {
        let mut grants = Scripted::new(Err("refused"));
        grants.primary_hangs = true;
        // Bounded: a call the timeout missed would hang on the primary credential.
        let (error, asked) =
            tokio::time::timeout(Duration::from_secs(60), call(grants, Some("r1")))
                .await
                .expect("the provider's timeout ends the call");
        let error = error.unwrap_err();
        assert!(
            matches!(
                error.downcast_ref::<NoAnswer>(),
                Some(NoAnswer::Timeout { after, url })
                    if *after == Duration::from_secs(5) && url == ENDPOINT
            ),
            "{error:?}"
        );
        assert_eq!(asked, ["refresh", "primary"]);
    }

    /// The timeout is the one set last; `Debug` shows it and the grants, never the client.
    #[test]
    fn the_timeout_is_kept_and_shown() {
        #[derive(Debug)]
        struct Named;
        let mut provider: Refresher<Named, Client, Full<Bytes>> =
            Refresher::new(Named, client(), Duration::from_secs(5));
        assert_eq!(provider.timeout(), Duration::from_secs(5));
        provider.set_timeout(Duration::from_secs(7));
        assert_eq!(provider.timeout(), Duration::from_secs(7));
        assert_eq!(
            format!("{provider:?}"),
            "Refresher { grants: Named, timeout: 7s, .. }"
        );
        let future = ResponseFuture::<BoxError> {
            inner: Box::pin(std::future::pending()),
        };
        assert_eq!(format!("{future:?}"), "ResponseFuture { .. }");
    }

    /// A client that fails while getting ready: no request went out, and the error names
    /// the endpoint the provider asks.
    #[tokio::test]
    async fn a_client_that_fails_to_get_ready_is_no_answer_from_the_endpoint() {
        #[derive(Clone)]
        struct NotReady;

        impl Service<http::Request<Full<Bytes>>> for NotReady {
            type Response = http::Response<Full<Bytes>>;
            type Error = BoxError;
            type Future = std::future::Pending<Result<Self::Response, BoxError>>;

            fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
                Poll::Ready(Err("the connection pool is closed".into()))
            }

            fn call(&mut self, _: http::Request<Full<Bytes>>) -> Self::Future {
                unreachable!("never ready")
            }
        }

        let mut provider: Refresher<_, _, Full<Bytes>> =
            Refresher::new(Scripted::new(Ok(())), NotReady, Duration::from_secs(5));
        let error = std::future::poll_fn(|cx| provider.poll_ready(cx))
            .await
            .unwrap_err();
        assert!(
            matches!(
                error.downcast_ref::<NoAnswer>(),
                Some(NoAnswer::Transport { url, .. }) if url == ENDPOINT
            ),
            "{error:?}"
        );
        assert!(provider.grants().asked.lock().unwrap().is_empty());
    }
}
