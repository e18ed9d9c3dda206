//! Configuring an [`OAuth2`] provider.

use std::fmt;
use std::sync::Mutex;
use std::time::Duration;

use secrecy::SecretString;
use tokio::sync::OnceCell;

use crate::auth_method::AuthMethod;
use crate::client_auth::ClientAuth;
use crate::config::{EndpointSource, ProviderConfig};
use crate::endpoint::TokenEndpoint;
use crate::error::ConfigError;
use crate::grant::{ClientAssertion, Grant};
use crate::grant_proof::DpopSettings;
use crate::jose::SigningKey;
use crate::provider::OAuth2;
use tower_bearer_provider::{HttpClient, RequestBody, is_cleartext};

/// How long one call may take unless [`OAuth2Builder::timeout`] says otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Parameters the provider sets itself, which [`OAuth2Builder::param`] may not.
const RESERVED: [&str; 12] = [
    "grant_type",
    "client_id",
    "client_secret",
    "client_assertion",
    "client_assertion_type",
    "refresh_token",
    "assertion",
    "subject_token",
    "subject_token_type",
    "scope",
    "audience",
    "resource",
];

impl OAuth2<()> {
    /// A builder, to say where the authorization server is, who the client is, and what it
    /// asks for.
    pub fn builder() -> OAuth2Builder {
        OAuth2Builder {
            endpoint: None,
            client_id: None,
            client_secret: None,
            private_key: None,
            client_assertion: None,
            auth_method: None,
            assertion_audience: None,
            grant: Grant::client_credentials(),
            scopes: Vec::new(),
            audiences: Vec::new(),
            resources: Vec::new(),
            params: Vec::new(),
            timeout: DEFAULT_TIMEOUT,
            default_lifetime: None,
            dpop: None,
            allow_bearer_downgrade: false,
            allow_cleartext: false,
        }
    }
}

/// Configures an [`OAuth2`] provider. Made by [`OAuth2::builder`]; [`build`](Self::build)
/// checks the whole and gives the provider its HTTP client.
///
/// ```
/// use tower_bearer_oauth2::OAuth2;
/// # let client = tower::service_fn(|_: http::Request<http_body_util::Full<bytes::Bytes>>| async {
/// #     Ok::<_, tower::BoxError>(http::Response::new(http_body_util::Full::<bytes::Bytes>::default()))
/// # });
///
/// let provider = OAuth2::builder()
///     .issuer("https://login.example.com/realms/acme")
///     .client_id("billing-service")
///     .client_secret("s3cr3t")
///     .scope("invoices:read")
///     .resource("https://api.example.com")
///     .build(client)?;
/// # Ok::<(), tower_bearer_oauth2::ConfigError>(())
/// ```
#[derive(Clone)]
#[must_use = "a builder does nothing until `.build(client)`"]
pub struct OAuth2Builder {
    endpoint: Option<Endpoint>,
    client_id: Option<String>,
    client_secret: Option<SecretString>,
    private_key: Option<SigningKey>,
    client_assertion: Option<ClientAssertion>,
    auth_method: Option<AuthMethod>,
    assertion_audience: Option<String>,
    grant: Grant,
    scopes: Vec<String>,
    audiences: Vec<String>,
    resources: Vec<String>,
    params: Vec<(String, String)>,
    timeout: Duration,
    default_lifetime: Option<Duration>,
    dpop: Option<crate::dpop::DpopKey>,
    allow_bearer_downgrade: bool,
    allow_cleartext: bool,
}

#[derive(Clone, Debug)]
enum Endpoint {
    Token(String),
    Issuer(String),
}

impl OAuth2Builder {
    /// The token endpoint's URL (`https://login.example.com/oauth2/token`). Replaces an
    /// [`issuer`](Self::issuer).
    ///
    /// It must be `https`, but on loopback (`localhost`, `127.0.0.0/8`, `::1`), or with
    /// [`allow_cleartext_endpoints`](Self::allow_cleartext_endpoints): every request carries
    /// the client's credentials.
    pub fn token_endpoint(mut self, url: impl Into<String>) -> Self {
        self.endpoint = Some(Endpoint::Token(url.into()));
        self
    }

    /// The authorization server's issuer identifier (`https://login.example.com/realms/acme`),
    /// whose token endpoint is found in its metadata on the first call, then kept: RFC 8414's
    /// `/.well-known/oauth-authorization-server`, else OpenID Connect's
    /// `/.well-known/openid-configuration`. The metadata's `issuer` must be this one exactly
    /// ([`DiscoveryError::IssuerMismatch`](crate::DiscoveryError::IssuerMismatch) if not).
    /// Replaces a [`token_endpoint`](Self::token_endpoint).
    ///
    /// Like a token endpoint, it must be `https` but on loopback or with
    /// [`allow_cleartext_endpoints`](Self::allow_cleartext_endpoints); and the token endpoint
    /// its metadata names must be `https` if the issuer is, and on loopback if it is not
    /// ([`DiscoveryError::Cleartext`](crate::DiscoveryError::Cleartext) otherwise). The
    /// metadata must come from the issuer itself: a redirect is refused
    /// ([`NoAnswer::Redirected`](crate::NoAnswer::Redirected)).
    pub fn issuer(mut self, issuer: impl Into<String>) -> Self {
        self.endpoint = Some(Endpoint::Issuer(issuer.into()));
        self
    }

    /// The client's id.
    pub fn client_id(mut self, client_id: impl Into<String>) -> Self {
        self.client_id = Some(client_id.into());
        self
    }

    /// The client's secret, for `client_secret_basic` (the method unless
    /// [`auth_method`](Self::auth_method) says otherwise) or `client_secret_post`. Kept as a
    /// [`SecretString`]: zeroised on drop, never in `Debug`.
    pub fn client_secret(mut self, secret: impl Into<String>) -> Self {
        self.client_secret = Some(SecretString::from(secret.into()));
        self
    }

    /// The client's private key, for `private_key_jwt` (the method unless
    /// [`auth_method`](Self::auth_method) says otherwise): each request carries a fresh
    /// assertion signed with it, with `iss` and `sub` the client id, `aud` the token
    /// endpoint's URL, a random `jti`, and a one-minute `exp`. Give the key the `kid` it is
    /// registered under with [`SigningKey::with_key_id`].
    pub fn private_key(mut self, key: SigningKey) -> Self {
        self.private_key = Some(key);
        self
    }

    /// A client assertion the platform signs for the client (Azure workload identity's
    /// federated token), sent with `private_key_jwt` (the method unless
    /// [`auth_method`](Self::auth_method) says otherwise) in place of one signed with a
    /// [`private_key`](Self::private_key), and read again for every request.
    ///
    /// ```
    /// use tower_bearer_oauth2::{ClientAssertion, OAuth2};
    ///
    /// let builder = OAuth2::builder()
    ///     .token_endpoint("https://login.example.com/tenant/oauth2/v2.0/token")
    ///     .client_id("00000000-0000-0000-0000-000000000000")
    ///     .client_assertion(ClientAssertion::from_file("/var/run/secrets/azure/tokens/azure-identity-token"))
    ///     .scope("api://billing/.default");
    /// ```
    pub fn client_assertion(mut self, assertion: ClientAssertion) -> Self {
        self.client_assertion = Some(assertion);
        self
    }

    /// How the client authenticates. Default: `private_key_jwt` with a private key or a
    /// client assertion, `client_secret_basic` with a secret, `none` with neither.
    pub fn auth_method(mut self, method: AuthMethod) -> Self {
        self.auth_method = Some(method);
        self
    }

    /// The `aud` of `private_key_jwt` assertions, for a server that wants its issuer
    /// identifier there rather than its token endpoint's URL.
    pub fn assertion_audience(mut self, audience: impl Into<String>) -> Self {
        self.assertion_audience = Some(audience.into());
        self
    }

    /// The grant for the first token. Default: [`Grant::client_credentials`].
    pub fn grant(mut self, grant: Grant) -> Self {
        self.grant = grant;
        self
    }

    /// A scope to ask for; call again for more (they are sent space-separated, in one
    /// `scope` parameter), on every grant and every refresh.
    pub fn scope(mut self, scope: impl Into<String>) -> Self {
        self.scopes.push(scope.into());
        self
    }

    /// An `audience` parameter (Auth0, Okta, RFC 8693); call again for more. Sent on every
    /// grant and every refresh.
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audiences.push(audience.into());
        self
    }

    /// A `resource` indicator (RFC 8707: the URI of the API the token is for); call again
    /// for more. Sent on every grant and every refresh.
    pub fn resource(mut self, resource: impl Into<String>) -> Self {
        self.resources.push(resource.into());
        self
    }

    /// Another form parameter, sent on every grant and every refresh; call again for more
    /// (a name may repeat). The provider's own parameters (`grant_type`, `client_id`,
    /// `scope`, …) are refused by [`build`](Self::build).
    pub fn param(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.params.push((name.into(), value.into()));
        self
    }

    /// The most one call may take, everything included (discovery, the grant, the fallback
    /// when a refresh token is refused); past it the call fails with
    /// [`NoAnswer::Timeout`](crate::NoAnswer::Timeout). Default: [`DEFAULT_TIMEOUT`],
    /// 30 s.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The lifetime of a token whose answer has no `expires_in` (at most a day). Default:
    /// none, and such a token is used until a server refuses it.
    pub fn default_lifetime(mut self, lifetime: Duration) -> Self {
        self.default_lifetime = Some(lifetime);
        self
    }

    /// Binds the tokens to `key` with DPoP (RFC 9449): every token request, whatever the
    /// grant and the refresh-token grant included, carries a new proof signed with it, and
    /// the tokens come back as [`TokenType::Dpop`](tower_bearer::TokenType::Dpop), which a
    /// [`BearerAuthLayer`](tower_bearer::BearerAuthLayer) sends each with a proof of its own.
    ///
    /// - Each attempt's proof names the token endpoint (`htu`), the method (`POST`), a new
    ///   `jti`, the time, and the latest nonce the endpoint's origin gave this key (shared
    ///   with the layer, which learns the API's nonces in the same place).
    /// - A `use_dpop_nonce` refusal (RFC 9449 §8: a 400 with a `DPoP-Nonce`) is answered at
    ///   once, in the same call, with a request carrying the new nonce: once; a server that
    ///   asks again gets the refusal back as [`OAuth2Error::Refused`](crate::OAuth2Error::Refused)
    ///   with [`ErrorCode::UseDpopNonce`](crate::ErrorCode::UseDpopNonce). Every answer's
    ///   `DPoP-Nonce`, a success's included, is learned.
    /// - The answer's `token_type` must be `DPoP` (in any case); a `Bearer` token means the
    ///   server ignored the proof, and is refused as
    ///   [`MalformedAnswer::BearerDowngrade`](crate::MalformedAnswer::BearerDowngrade) unless
    ///   [`allow_bearer_downgrade`](Self::allow_bearer_downgrade) says otherwise.
    /// - A public client's refresh tokens are bound to the key too (RFC 9449 §5): the
    ///   provider keeps using the same key, so they keep working; a new key (a restart with a
    ///   generated one) needs a new refresh token.
    /// - With [`issuer`](Self::issuer), a server whose metadata lists
    ///   `dpop_signing_alg_values_supported` without the key's algorithm is a configuration
    ///   error ([`DiscoveryError::DpopAlgorithm`](crate::DiscoveryError::DpopAlgorithm)),
    ///   found on the first call.
    ///
    /// Replicas that share tokens through a store must share the key too: see
    /// [`DpopKey`](crate::dpop::DpopKey).
    ///
    /// ```
    /// use tower_bearer_oauth2::dpop::DpopKey;
    /// use tower_bearer_oauth2::jose::Algorithm;
    /// use tower_bearer_oauth2::OAuth2;
    /// # let client = tower::service_fn(|_: http::Request<http_body_util::Full<bytes::Bytes>>| async {
    /// #     Ok::<_, tower::BoxError>(http::Response::new(http_body_util::Full::<bytes::Bytes>::default()))
    /// # });
    ///
    /// let provider = OAuth2::builder()
    ///     .issuer("https://login.example.com")
    ///     .client_id("billing-service")
    ///     .client_secret("s3cr3t")
    ///     .dpop(DpopKey::generate(Algorithm::Es256)?)
    ///     .build(client)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn dpop(mut self, key: crate::dpop::DpopKey) -> Self {
        self.dpop = Some(key);
        self
    }

    /// Whether a `Bearer` answer to a DPoP token request is taken (as a bearer token, sent
    /// without proofs) rather than refused. Default: `false`, since a client that asked for
    /// sender-constrained tokens should not silently get tokens that work for whoever holds
    /// them. For a client that prefers DPoP where the server has it and bearer tokens where
    /// it does not.
    pub fn allow_bearer_downgrade(mut self, allow: bool) -> Self {
        self.allow_bearer_downgrade = allow;
        self
    }

    /// Lets the token endpoint and the issuer be `http` on any host, not only on loopback:
    /// for a test authorization server on another machine or in another container
    /// (`http://keycloak:8080/realms/test`). The client's credentials then travel in clear;
    /// never set this in production. An `https` issuer's metadata may still not name an
    /// `http` token endpoint.
    pub fn allow_cleartext_endpoints(mut self) -> Self {
        self.allow_cleartext = true;
        self
    }

    /// The provider, sending its requests through `client`.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] if the settings do not make a provider: no endpoint, a URL that is
    /// not one, a cleartext one off loopback, a method without its credential, a reserved
    /// extra parameter.
    pub fn build<C, B>(self, client: C) -> Result<OAuth2<C, B>, ConfigError>
    where
        C: HttpClient<B>,
        B: RequestBody,
    {
        let timeout = self.timeout;
        Ok(OAuth2::from_config(client, self.into_config()?, timeout))
    }

    fn into_config(self) -> Result<ProviderConfig, ConfigError> {
        let in_clear =
            |endpoint: &TokenEndpoint| is_cleartext(&endpoint.uri) && !self.allow_cleartext;
        let endpoint = match self.endpoint.ok_or(ConfigError::NoEndpoint)? {
            Endpoint::Token(url) => {
                let endpoint =
                    TokenEndpoint::parse(&url).ok_or(ConfigError::InvalidUri("token endpoint"))?;
                if in_clear(&endpoint) {
                    return Err(ConfigError::Cleartext("token endpoint"));
                }
                EndpointSource::Fixed(endpoint)
            }
            Endpoint::Issuer(issuer) => {
                let uri = issuer_uri(&issuer).ok_or(ConfigError::InvalidUri("issuer"))?;
                if in_clear(&uri) {
                    return Err(ConfigError::Cleartext("issuer"));
                }
                EndpointSource::Discovered {
                    issuer,
                    endpoint: OnceCell::new(),
                }
            }
        };
        let method = self.auth_method.unwrap_or(
            match (
                self.private_key.is_some() || self.client_assertion.is_some(),
                &self.client_secret,
            ) {
                (true, _) => AuthMethod::PrivateKeyJwt,
                (false, Some(_)) => AuthMethod::ClientSecretBasic,
                (false, None) => AuthMethod::None,
            },
        );
        let client_auth = ClientAuth::new(
            method,
            self.client_id,
            self.client_secret,
            self.private_key,
            self.client_assertion,
            self.assertion_audience,
        )?;
        if let Some((name, _)) = self
            .params
            .iter()
            .find(|(name, _)| RESERVED.contains(&name.as_str()))
        {
            return Err(ConfigError::ReservedParameter(name.clone()));
        }
        let mut params = Vec::new();
        if !self.scopes.is_empty() {
            params.push(("scope".to_owned(), self.scopes.join(" ")));
        }
        params.extend(
            self.audiences
                .into_iter()
                .map(|a| ("audience".to_owned(), a)),
        );
        params.extend(
            self.resources
                .into_iter()
                .map(|r| ("resource".to_owned(), r)),
        );
        params.extend(self.params);
        Ok(ProviderConfig {
            endpoint,
            client_auth,
            grant: self.grant.kind,
            params,
            default_lifetime: self.default_lifetime,
            newest_refresh_token: Mutex::new(None),
            dpop: self.dpop.map(|key| DpopSettings {
                key,
                allow_bearer_downgrade: self.allow_bearer_downgrade,
            }),
            allow_cleartext: self.allow_cleartext,
        })
    }
}

/// An issuer identifier: an `http` or `https` URL with a host and no query or fragment
/// (RFC 8414 §2), as an address (the scheme is checked beside a token endpoint's).
fn issuer_uri(issuer: &str) -> Option<TokenEndpoint> {
    let endpoint = TokenEndpoint::parse(issuer)?;
    (endpoint.uri.query().is_none() && !issuer.contains('#')).then_some(endpoint)
}

impl fmt::Debug for OAuth2Builder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut debug = f.debug_struct("OAuth2Builder");
        debug
            .field("endpoint", &self.endpoint)
            .field("client_id", &self.client_id)
            .field(
                "client_secret",
                &self.client_secret.as_ref().map(|_| "[REDACTED]"),
            )
            .field("private_key", &self.private_key)
            .field("client_assertion", &self.client_assertion)
            .field("auth_method", &self.auth_method)
            .field("grant", &self.grant)
            .field("scopes", &self.scopes)
            .field("audiences", &self.audiences)
            .field("resources", &self.resources)
            .field(
                "params",
                &self.params.iter().map(|(name, _)| name).collect::<Vec<_>>(),
            )
            .field("timeout", &self.timeout)
            .field("default_lifetime", &self.default_lifetime);
        debug
            .field("dpop", &self.dpop)
            .field("allow_bearer_downgrade", &self.allow_bearer_downgrade)
            .field("allow_cleartext", &self.allow_cleartext);
        debug.finish()
    }
}
