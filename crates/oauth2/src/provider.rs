//! The OAuth 2.0 token provider: a refresher over any HTTP client.

use std::fmt;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::Uri;
use http_body_util::Full;
use secrecy::ExposeSecret;
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
use tower_bearer_provider::{Grants, HttpClient, Refresher, RequestBody};

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
    inner: Refresher<ProviderConfig, C, B>,
}

/// The future an [`OAuth2`] call returns.
pub type ResponseFuture = tower_bearer_provider::ResponseFuture<OAuth2Error>;

impl<C, B> OAuth2<C, B> {
    pub(super) fn from_config(client: C, config: ProviderConfig, timeout: Duration) -> Self {
        OAuth2 {
            inner: Refresher::new(config, client, timeout),
        }
    }

    fn config(&self) -> &ProviderConfig {
        self.inner.grants()
    }

    /// How the client authenticates to the token endpoint.
    pub fn auth_method(&self) -> AuthMethod {
        self.config().client_auth.method()
    }

    /// The token endpoint: the one given, or the one discovered (once a call has done it).
    pub fn token_endpoint(&self) -> Option<&Uri> {
        self.config().token_endpoint().map(|endpoint| &endpoint.uri)
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
            inner: self.inner.clone(),
        }
    }
}

impl<C, B> fmt::Debug for OAuth2<C, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let config = self.config();
        let mut debug = f.debug_struct("OAuth2");
        match &config.endpoint {
            EndpointSource::Fixed(endpoint) => debug.field("token_endpoint", &endpoint.url),
            EndpointSource::Discovered { issuer, .. } => debug.field("issuer", issuer),
        };
        debug
            .field("client_auth", &config.client_auth)
            .field("grant", &config.grant)
            .field("timeout", &self.inner.timeout());
        if let Some(dpop) = &config.dpop {
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
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: TokenRequest) -> Self::Future {
        self.inner.call(request)
    }
}

/// What one call sends: the refresh-token grant for the previous token's refresh token, the
/// configured grant for the first token (and when the server refuses the refresh token with
/// `invalid_grant`). With [`Grant::refresh_token`](crate::Grant::refresh_token) the refresh
/// token is the grant: nothing stands in for a refused one.
impl<C, B> Grants<C, B> for ProviderConfig
where
    C: HttpClient<B>,
    B: RequestBody,
{
    type Error = OAuth2Error;

    fn name(&self) -> &'static str {
        "oauth2"
    }

    async fn primary<'a>(
        &'a self,
        client: &'a mut C,
        reason: &'static str,
    ) -> Result<Token, OAuth2Error> {
        let endpoint = token_endpoint(client, self).await?;
        let grant = match &self.grant {
            GrantKind::ClientCredentials => GrantParams::ClientCredentials,
            // The newest refresh token issued: a rotated-away one must never be presented
            // again (reuse detection would revoke them all).
            GrantKind::RefreshToken(original) => {
                let newest = self.newest_refresh_token();
                let refresh_token = newest.as_ref().unwrap_or(original).expose_secret();
                return refresh(client, self, endpoint, refresh_token, reason).await;
            }
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
        };
        request::token_request(client, self, endpoint, grant, reason).await
    }

    async fn refresh<'a>(
        &'a self,
        client: &'a mut C,
        refresh_token: &'a str,
        reason: &'static str,
    ) -> Result<Token, OAuth2Error> {
        let endpoint = token_endpoint(client, self).await?;
        refresh(client, self, endpoint, refresh_token, reason).await
    }

    /// Used already, expired, revoked, its family ended by reuse elsewhere: the client's own
    /// grant still works, and a second request now is cheaper than a failed refresh and a
    /// backoff. Unless the refresh token is the grant.
    fn refused_refresh_token(&self, error: &OAuth2Error) -> bool {
        !matches!(self.grant, GrantKind::RefreshToken(_))
            && error
                .error_response()
                .is_some_and(|response| *response.code() == ErrorCode::InvalidGrant)
    }

    fn endpoint_url(&self) -> String {
        self.shown_url()
    }
}

/// The refresh-token grant: the answer keeps the refresh token it replaces when it brings
/// none (RFC 6749 §6: a server that does not rotate them sends none, and the one just used
/// stays valid); when the refresh token is the grant, the newest is remembered.
async fn refresh<C, B>(
    client: &mut C,
    config: &ProviderConfig,
    endpoint: &TokenEndpoint,
    refresh_token: &str,
    reason: &'static str,
) -> Result<Token, OAuth2Error>
where
    C: HttpClient<B>,
    B: RequestBody,
{
    let grant = GrantParams::RefreshToken(refresh_token);
    let token = request::token_request(client, config, endpoint, grant, reason).await?;
    let token = if token.expose_refresh_token().is_some() {
        token
    } else {
        token.with_refresh_token(refresh_token.to_owned())
    };
    if matches!(config.grant, GrantKind::RefreshToken(_)) {
        config.set_newest_refresh_token(&token);
    }
    Ok(token)
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
                .get_or_try_init(|| {
                    discovery::discover(
                        client,
                        issuer,
                        config.allow_cleartext,
                        config.dpop.as_ref(),
                    )
                })
                .await
        }
    }
}
