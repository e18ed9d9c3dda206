//! The OAuth 2.0 token provider: a refresher over any HTTP client.

use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::mem;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::Uri;
use http_body_util::Full;
use secrecy::{ExposeSecret, SecretString};
use tower::Service;

use crate::assertion::Assertion;
use crate::auth_method::AuthMethod;
use crate::config::{EndpointSource, ProviderConfig};
use crate::discovery;
use crate::endpoint::TokenEndpoint;
use crate::error::{ErrorCode, OAuth2Error};
use crate::grant::GrantKind;
use crate::request::{self, GrantParams};
use tower_bearer::{BearerAuthLayer, InvalidOrigin, Scope, Token, TokenRequest};
use tower_bearer_provider::{HttpClient, RequestBody};

/// Gets access tokens from an OAuth 2.0 authorization server: a refresher for a
/// [`TokenCache`](tower_bearer::TokenCache) or [`BearerAuthLayer`].
///
/// Built with [`OAuth2::builder`]. As a `Service<TokenRequest, Response = Token>` it uses the
/// configured [`Grant`](crate::Grant) for its first token, the refresh-token grant with the
/// newest refresh token once it has one, and falls back to the grant when the server refuses
/// a refresh token (`invalid_grant`). See the [module documentation](super) for the details.
///
/// It sends its requests through `C`, any tower HTTP service ([`HttpClient`]): build it on
/// the client the rest of the stack uses, so that both share the connection pool, TLS
/// settings and proxies (but not on the [`BearerAuth`](tower_bearer::BearerAuth) stack itself: the
/// token endpoint must not be sent the token). `B` is the client's request body type
/// ([`RequestBody`]), inferred from `C` by [`OAuth2Builder::build`](crate::OAuth2Builder::build).
///
/// Its `Debug` shows no secret.
pub struct OAuth2<C, B = Full<Bytes>> {
    client: C,
    config: Arc<ProviderConfig>,
    timeout: Duration,
    _body: PhantomData<fn() -> B>,
}

impl<C, B> OAuth2<C, B> {
    pub(super) fn from_config(client: C, config: ProviderConfig, timeout: Duration) -> Self {
        OAuth2 {
            client,
            config: Arc::new(config),
            timeout,
            _body: PhantomData,
        }
    }

    /// How the client authenticates to the token endpoint.
    pub fn auth_method(&self) -> AuthMethod {
        self.config.client_auth.method()
    }

    /// The token endpoint: the one given, or the one discovered (once a call has done it).
    pub fn token_endpoint(&self) -> Option<&Uri> {
        match &self.config.endpoint {
            EndpointSource::Fixed(endpoint) => Some(&endpoint.uri),
            EndpointSource::Discovered { endpoint, .. } => endpoint.get().map(|e| &e.uri),
        }
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

impl<C, B> OAuth2<C, B>
where
    C: HttpClient<B>,
    B: RequestBody,
{
    /// A [`BearerAuthLayer`] getting its tokens from this provider, with the default
    /// [`TokenCache`](tower_bearer::TokenCache) settings, attaching them only to requests for
    /// `api_origin` (`https://api.example.com`: scheme, host and port; a path is ignored).
    ///
    /// The token endpoint's own origin never receives the token from this layer unless it is
    /// `api_origin`; and the provider's own requests do not go through the layer at all, so
    /// the token endpoint is only ever sent the client's credentials. A client that also
    /// fetches other hosts (pre-signed URLs, CDNs, redirects) never sends them the token.
    ///
    /// For other cache settings, build the layer yourself with the same scope:
    /// `BearerAuthLayer::from_cache(cache, Scope::origin(api_origin)?)`.
    ///
    /// # Errors
    ///
    /// If `api_origin` is not an absolute URI with a scheme and host.
    pub fn into_layer<U>(self, api_origin: U) -> Result<BearerAuthLayer, InvalidOrigin>
    where
        U: TryInto<Uri>,
    {
        let scope = Scope::origin(api_origin)?;
        Ok(BearerAuthLayer::new(self, scope))
    }
}

impl<C: Clone, B> Clone for OAuth2<C, B> {
    fn clone(&self) -> Self {
        OAuth2 {
            client: self.client.clone(),
            config: Arc::clone(&self.config),
            timeout: self.timeout,
            _body: PhantomData,
        }
    }
}

impl<C, B> fmt::Debug for OAuth2<C, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut debug = f.debug_struct("OAuth2");
        match &self.config.endpoint {
            EndpointSource::Fixed(endpoint) => debug.field("token_endpoint", &endpoint.url),
            EndpointSource::Discovered { issuer, .. } => debug.field("issuer", issuer),
        };
        debug
            .field("client_auth", &self.config.client_auth)
            .field("grant", &self.config.grant)
            .field("timeout", &self.timeout);
        if let Some(dpop) = &self.config.dpop {
            debug.field("dpop", dpop);
        }
        debug.finish_non_exhaustive()
    }
}

impl<C, B> Service<TokenRequest> for OAuth2<C, B>
where
    C: HttpClient<B>,
    B: RequestBody,
{
    type Response = Token;
    type Error = OAuth2Error;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.client
            .poll_ready(cx)
            .map_err(|error| OAuth2Error::Transport(error.into()))
    }

    fn call(&mut self, request: TokenRequest) -> Self::Future {
        // A call may send several requests (discovery, a refused refresh token's fallback),
        // so it takes the client that was driven ready and leaves a clone for the next call,
        // as tower's own `Retry` does.
        let clone = self.client.clone();
        let client = mem::replace(&mut self.client, clone);
        let config = Arc::clone(&self.config);
        let timeout = self.timeout;
        ResponseFuture {
            inner: Box::pin(async move {
                tokio::time::timeout(timeout, fetch(client, &config, request))
                    .await
                    .unwrap_or(Err(OAuth2Error::Timeout(timeout)))
            }),
        }
    }
}

/// One call: the refresh-token grant if there is a refresh token, the configured grant if
/// not, or if the server refuses the refresh token.
async fn fetch<C, B>(
    mut client: C,
    config: &ProviderConfig,
    request: TokenRequest,
) -> Result<Token, OAuth2Error>
where
    C: HttpClient<B>,
    B: RequestBody,
{
    let reason = request.reason().as_str();
    let endpoint = token_endpoint(&mut client, config).await?;
    let previous = request.previous().and_then(Token::expose_refresh_token);

    if let GrantKind::RefreshToken(original) = &config.grant {
        // The refresh token is the grant: nothing can stand in for it, and a rotated-away
        // one must never be presented again (reuse detection would revoke them all).
        let newest = config.newest_refresh_token();
        let refresh_token = previous
            .or(newest.as_ref().map(|t| t.expose_secret()))
            .unwrap_or(original.expose_secret());
        let grant = GrantParams::RefreshToken(refresh_token);
        let token = request::token_request(&mut client, config, endpoint, grant, reason).await?;
        let token = keep_refresh_token(token, refresh_token);
        config.set_newest_refresh_token(&token);
        return Ok(token);
    }

    if let Some(refresh_token) = previous {
        let grant = GrantParams::RefreshToken(refresh_token);
        match request::token_request(&mut client, config, endpoint, grant, reason).await {
            Ok(token) => return Ok(keep_refresh_token(token, refresh_token)),
            // Used already, expired, revoked, its family ended by reuse elsewhere: the
            // client's own grant still works, and a second request now is cheaper than a
            // failed refresh and a backoff.
            Err(OAuth2Error::Refused { response, .. })
                if *response.code() == ErrorCode::InvalidGrant =>
            {
                tracing::debug!(
                    reason,
                    status = response.status().as_u16(),
                    "the authorization server refused the refresh token; using the grant again"
                );
            }
            // Anything else, a transient failure included, is the answer: the refresh token
            // may still be good, and the cache's backoff decides when to try again.
            Err(error) => return Err(error),
        }
    }

    let grant = match &config.grant {
        GrantKind::ClientCredentials => GrantParams::ClientCredentials,
        GrantKind::JwtBearer(jwt) => GrantParams::JwtBearer(
            Assertion {
                issuer: &jwt.issuer,
                subject: jwt.subject.as_deref().unwrap_or(&jwt.issuer),
                audience: jwt.audience.as_deref().unwrap_or(&endpoint.url),
                lifetime: jwt.lifetime,
                extra: Some(&jwt.claims),
            }
            .sign(&jwt.key)?,
        ),
        GrantKind::TokenExchange(subject) => GrantParams::TokenExchange {
            subject_token: subject.read().await?,
            token_type: &subject.token_type,
        },
        GrantKind::RefreshToken(_) => unreachable!("handled above"),
    };
    request::token_request(&mut client, config, endpoint, grant, reason).await
}

/// The token endpoint: given, or discovered on the first call and kept (a failed discovery
/// is not kept: the next call tries again).
async fn token_endpoint<'a, C, B>(
    client: &mut C,
    config: &'a ProviderConfig,
) -> Result<&'a TokenEndpoint, OAuth2Error>
where
    C: HttpClient<B>,
    B: RequestBody,
{
    match &config.endpoint {
        EndpointSource::Fixed(endpoint) => Ok(endpoint),
        EndpointSource::Discovered { issuer, endpoint } => {
            endpoint
                .get_or_try_init(|| discovery::discover(client, issuer, config.dpop.as_ref()))
                .await
        }
    }
}

/// RFC 6749 §6: a server that does not rotate refresh tokens sends none with the new access
/// token, and the one just used stays valid.
fn keep_refresh_token(token: Token, used: &str) -> Token {
    if token.expose_refresh_token().is_some() {
        token
    } else {
        token.with_refresh_token(used.to_owned())
    }
}

impl ProviderConfig {
    fn newest_refresh_token(&self) -> Option<SecretString> {
        crate::lock(&self.newest_refresh_token).clone()
    }

    fn set_newest_refresh_token(&self, token: &Token) {
        if let Some(refresh_token) = token.expose_refresh_token() {
            *crate::lock(&self.newest_refresh_token) =
                Some(SecretString::from(refresh_token.to_owned()));
        }
    }
}

/// The future an [`OAuth2`] call returns.
pub struct ResponseFuture {
    inner: Pin<Box<dyn Future<Output = Result<Token, OAuth2Error>> + Send>>,
}

impl Future for ResponseFuture {
    type Output = Result<Token, OAuth2Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.inner.as_mut().poll(cx)
    }
}

impl fmt::Debug for ResponseFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}
