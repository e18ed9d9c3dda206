//! The metadata server token provider: a refresher over any HTTP client.

use std::fmt;
use std::future::Future;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::Uri;
use http_body_util::Full;
use tokio::time::Instant;
use tower::Service;

use super::error::MetadataError;
use super::{retry, wire};
use tower_bearer::{Token, TokenRequest};
use tower_bearer_provider::{
    self as http_client, Grants, HttpClient, NoAnswer, Refresher, RequestBody,
};

/// The metadata server's host when `GCE_METADATA_HOST` is not set, as google-auth (Python)
/// and google-cloud-rust name it. (Go's `cloud.google.com/go/compute/metadata` uses
/// [`METADATA_IP`] instead, for binaries that cannot resolve the name.)
pub const DEFAULT_HOST: &str = "metadata.google.internal";

/// The metadata server's documented address, for a resolver that does not know
/// [`DEFAULT_HOST`]: `MetadataServer::with_host(METADATA_IP, client)`.
pub const METADATA_IP: &str = "169.254.169.254";

/// The account asked for unless [`MetadataServerBuilder::account`] says otherwise: the one
/// attached to the VM, or bound to the pod.
pub const DEFAULT_ACCOUNT: &str = "default";

/// How long one call may take, its retries included, unless
/// [`MetadataServerBuilder::timeout`] says otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// How long one attempt may wait for its answer unless
/// [`MetadataServerBuilder::attempt_timeout`] (or `GCE_METADATA_TIMEOUT`) says otherwise:
/// google-auth's 3 seconds.
pub const DEFAULT_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(3);

/// Gets a service account's access tokens from GCP's metadata server (Compute Engine, GKE,
/// Cloud Run, Cloud Functions, App Engine): a refresher for a
/// [`TokenCache`](tower_bearer::TokenCache) or [`BearerAuthLayer`](tower_bearer::BearerAuthLayer).
///
/// Each call sends `GET http://{host}/computeMetadata/v1/instance/service-accounts/{account}/token`
/// with `Metadata-Flavor: Google`, retried as google-auth retries it. See the [module
/// documentation](super) for the details.
///
/// It sends its requests through `C`, any tower HTTP service ([`HttpClient`]); `B` is the
/// client's request body type, inferred from `C`.
///
/// # Example
///
/// ```
/// use bytes::Bytes;
/// use http_body_util::Full;
/// use hyper_util::client::legacy::Client;
/// use hyper_util::rt::TokioExecutor;
/// use tower_bearer::TokenCache;
/// use tower_bearer_platform::gcp::MetadataServer;
/// # use tower_bearer_mock::gcp::MockMetadataServer;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), tower::BoxError> {
/// # let server = MockMetadataServer::start().await?;
/// let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
/// // On GCP: MetadataServer::from_env(client)?. Here, a mock server.
/// let provider = MetadataServer::with_host(server.host(), client)?;
/// let cache = TokenCache::new(provider);
/// let token = cache.token().await?;
/// # assert_eq!(Some(token.expose_access_token().to_owned()), server.last_token("default"));
/// # Ok(())
/// # }
/// ```
pub struct MetadataServer<C, B = Full<Bytes>> {
    inner: Refresher<Config, C, B>,
}

/// The future a [`MetadataServer`] call returns.
pub type ResponseFuture = tower_bearer_provider::ResponseFuture<MetadataError>;

/// What every clone of a provider, and every call in flight, shares.
struct Config {
    token_uri: Uri,
    account: String,
    scopes: Vec<String>,
    /// The whole call's, also the [`Refresher`]'s: the retries stop short of it.
    timeout: Duration,
    attempt_timeout: Duration,
}

impl MetadataServer<(), Full<Bytes>> {
    /// A builder, to choose the host, account, scopes and timeouts. Its host is
    /// [`DEFAULT_HOST`] until [`read_env`](MetadataServerBuilder::read_env) or
    /// [`host`](MetadataServerBuilder::host) says otherwise.
    pub fn builder() -> MetadataServerBuilder {
        MetadataServerBuilder::new()
    }
}

impl<C, B> MetadataServer<C, B>
where
    C: HttpClient<B>,
    B: RequestBody,
{
    /// The provider Google's libraries would make here: the host from `GCE_METADATA_HOST`
    /// (see [`MetadataServerBuilder::read_env`]), the `default` account, the account's own
    /// scopes.
    ///
    /// # Errors
    ///
    /// [`MetadataError::InvalidHost`] if the variable is not `host` or `host:port`.
    pub fn from_env(client: C) -> Result<Self, MetadataError> {
        MetadataServer::builder().read_env().build(client)
    }

    /// A provider for the metadata server at `host` (`host` or `host:port`, such as a mock's
    /// `127.0.0.1:8080`), the `default` account, the account's own scopes.
    ///
    /// # Errors
    ///
    /// [`MetadataError::InvalidHost`] if `host` is not `host` or `host:port`.
    pub fn with_host(host: impl Into<String>, client: C) -> Result<Self, MetadataError> {
        MetadataServer::builder().host(host).build(client)
    }
}

impl<C, B> MetadataServer<C, B> {
    fn config(&self) -> &Config {
        self.inner.grants()
    }

    /// The URL each call asks: the token endpoint of the account, with its scopes.
    pub fn token_uri(&self) -> &Uri {
        &self.config().token_uri
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

impl<C: Clone, B> Clone for MetadataServer<C, B> {
    fn clone(&self) -> Self {
        MetadataServer {
            inner: self.inner.clone(),
        }
    }
}

impl<C, B> fmt::Debug for MetadataServer<C, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let config = self.config();
        f.debug_struct("MetadataServer")
            .field("token_uri", &config.token_uri)
            .field("account", &config.account)
            .field("scopes", &config.scopes)
            .field("timeout", &config.timeout)
            .field("attempt_timeout", &config.attempt_timeout)
            .finish_non_exhaustive()
    }
}

impl<C, B> Service<TokenRequest> for MetadataServer<C, B>
where
    C: HttpClient<B>,
    B: RequestBody,
{
    type Response = Token;
    type Error = MetadataError;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: TokenRequest) -> Self::Future {
        self.inner.call(request)
    }
}

// ===== impl MetadataServerBuilder =====

/// Configures a [`MetadataServer`]. Made by [`MetadataServer::builder`].
#[derive(Clone)]
#[must_use = "a builder does nothing until `.build(client)`"]
pub struct MetadataServerBuilder {
    host: String,
    account: String,
    scopes: Vec<String>,
    timeout: Duration,
    attempt_timeout: Duration,
}

impl MetadataServerBuilder {
    fn new() -> Self {
        MetadataServerBuilder {
            host: DEFAULT_HOST.to_owned(),
            account: DEFAULT_ACCOUNT.to_owned(),
            scopes: Vec::new(),
            timeout: DEFAULT_TIMEOUT,
            attempt_timeout: DEFAULT_ATTEMPT_TIMEOUT,
        }
    }

    /// The metadata server's `host` or `host:port`, reached over `http`: an emulator's, or
    /// [`METADATA_IP`]. Default: [`DEFAULT_HOST`].
    pub fn host(mut self, host: impl Into<String>) -> Self {
        self.host = host.into();
        self
    }

    /// The settings from the environment, as google-auth reads them:
    ///
    /// - the host from `GCE_METADATA_HOST`, else from `GCE_METADATA_ROOT` (its older name),
    ///   else [`DEFAULT_HOST`]; a variable set but empty counts as unset. The value is
    ///   `host` or `host:port`, reached over `http`.
    /// - the attempt timeout from `GCE_METADATA_TIMEOUT`, in whole seconds; a value that is
    ///   not one is ignored.
    pub fn read_env(self) -> Self {
        self.read_vars(|name| std::env::var(name).ok())
    }

    /// [`read_env`](Self::read_env) with `var` as the environment.
    fn read_vars(mut self, var: impl Fn(&str) -> Option<String>) -> Self {
        let set = |name| var(name).filter(|value| !value.is_empty());
        if let Some(host) = set("GCE_METADATA_HOST").or_else(|| set("GCE_METADATA_ROOT")) {
            self.host = host;
        }
        if let Some(seconds) = set("GCE_METADATA_TIMEOUT").and_then(|s| s.trim().parse().ok()) {
            self.attempt_timeout = Duration::from_secs(seconds);
        }
        self
    }

    /// The service account: `default` (the VM's or the pod's, and the default) or one of
    /// the VM's accounts by email.
    pub fn account(mut self, account: impl Into<String>) -> Self {
        self.account = account.into();
        self
    }

    /// The scopes to ask the token for, sent as `?scopes=a,b`. Default: none, and the token
    /// has the account's own scopes. Compute Engine ignores them (its tokens have the scopes
    /// the VM was given); GKE, Cloud Run and App Engine honour them.
    pub fn scopes<I, S>(mut self, scopes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.scopes = scopes.into_iter().map(Into::into).collect();
        self
    }

    /// The most one call may take, every attempt and wait between them included; past it the
    /// call fails with [`NoAnswer::Timeout`]. A wait that would end past it is not
    /// waited: the call ends with the last attempt's error. Default: [`DEFAULT_TIMEOUT`].
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The most one attempt may wait for its answer before it counts as failed (and is
    /// retried). Default: [`DEFAULT_ATTEMPT_TIMEOUT`].
    pub fn attempt_timeout(mut self, timeout: Duration) -> Self {
        self.attempt_timeout = timeout;
        self
    }

    /// The provider, sending through `client`.
    ///
    /// # Errors
    ///
    /// [`MetadataError::InvalidHost`] if the host is not `host` or `host:port`.
    pub fn build<C, B>(self, client: C) -> Result<MetadataServer<C, B>, MetadataError>
    where
        C: HttpClient<B>,
        B: RequestBody,
    {
        let token_uri = wire::token_uri(&self.host, &self.account, &self.scopes)
            .ok_or(MetadataError::InvalidHost { host: self.host })?;
        let config = Config {
            token_uri,
            account: self.account,
            scopes: self.scopes,
            timeout: self.timeout,
            attempt_timeout: self.attempt_timeout,
        };
        Ok(MetadataServer {
            inner: Refresher::new(config, client, self.timeout),
        })
    }
}

impl fmt::Debug for MetadataServerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MetadataServerBuilder")
            .field("host", &self.host)
            .field("account", &self.account)
            .field("scopes", &self.scopes)
            .field("timeout", &self.timeout)
            .field("attempt_timeout", &self.attempt_timeout)
            .finish()
    }
}

// ===== impl Grants for Config =====

/// One call: the token request, retried. The metadata server hands out no refresh token, so
/// `refresh` (the default, the same request) is never called.
impl<C, B> Grants<C, B> for Config
where
    C: HttpClient<B>,
    B: RequestBody,
{
    type Error = MetadataError;

    fn name(&self) -> &'static str {
        "gcp-metadata"
    }

    fn primary<'a>(
        &'a self,
        client: &'a mut C,
        reason: &'static str,
    ) -> impl Future<Output = Result<Token, MetadataError>> + Send + 'a {
        fetch(self, client, reason)
    }

    fn endpoint_url(&self) -> String {
        http_client::shown_url(&self.token_uri)
    }
}

/// The attempts of one call, as [`retry`] decides them.
async fn fetch<C, B>(
    config: &Config,
    client: &mut C,
    reason: &'static str,
) -> Result<Token, MetadataError>
where
    C: HttpClient<B>,
    B: RequestBody,
{
    let deadline = Instant::now() + config.timeout;
    let mut attempt = 1;
    loop {
        let error = match attempt_once(config, client).await {
            Ok(token) => return Ok(token),
            Err(error) if !error.is_retryable() => return Err(error),
            Err(error) => error,
        };
        let remaining = deadline.saturating_duration_since(Instant::now());
        let wait = retry::wait_after(attempt, retry::random_fraction(), remaining);
        let Some(wait) = wait else {
            return Err(error);
        };
        // The error holds no secret: safe to log.
        tracing::debug!(reason, attempt, %error, wait_ms = wait.as_millis() as u64, "the metadata server failed; trying again");
        tokio::time::sleep(wait).await;
        attempt += 1;
    }
}

/// One request, bounded by the attempt timeout, and what its answer means.
async fn attempt_once<C, B>(config: &Config, client: &mut C) -> Result<Token, MetadataError>
where
    C: HttpClient<B>,
    B: RequestBody,
{
    let uri = &config.token_uri;
    let url = || http_client::shown_url(uri);
    let send = http_client::send(client, wire::request::<B>(uri));
    let answer = match tokio::time::timeout(config.attempt_timeout, send).await {
        Ok(answer) => answer?,
        Err(_) => return Err(NoAnswer::timeout(config.attempt_timeout, url()).into()),
    };
    wire::token_from(answer, uri, &config.account)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use crate::testing::{NotReady, client};

    use super::*;

    fn read_vars(pairs: &[(&str, &str)]) -> MetadataServerBuilder {
        let vars: HashMap<String, String> = pairs
            .iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
            .collect();
        MetadataServer::builder().read_vars(move |name| vars.get(name).cloned())
    }

    #[test]
    fn the_host_is_read_as_google_auth_reads_it() {
        let host = |pairs: &[(&str, &str)]| {
            let provider = read_vars(pairs).build(client()).unwrap();
            provider.token_uri().authority().unwrap().to_string()
        };
        assert_eq!(host(&[]), "metadata.google.internal");
        assert_eq!(
            host(&[("GCE_METADATA_HOST", "127.0.0.1:8080")]),
            "127.0.0.1:8080"
        );
        assert_eq!(host(&[("GCE_METADATA_ROOT", "legacy:1")]), "legacy:1");
        assert_eq!(
            host(&[
                ("GCE_METADATA_HOST", "new:2"),
                ("GCE_METADATA_ROOT", "legacy:1")
            ]),
            "new:2"
        );
        // Set but empty is unset, in google-auth and in Go's library alike.
        assert_eq!(
            host(&[("GCE_METADATA_HOST", ""), ("GCE_METADATA_ROOT", "legacy:1")]),
            "legacy:1"
        );
        assert_eq!(
            host(&[("GCE_METADATA_HOST", "")]),
            "metadata.google.internal"
        );

        let bad = read_vars(&[("GCE_METADATA_HOST", "http://127.0.0.1:8080")]).build(client());
        assert!(
            matches!(bad, Err(MetadataError::InvalidHost { host }) if host == "http://127.0.0.1:8080")
        );
    }

    #[test]
    fn the_attempt_timeout_is_read_as_google_auth_reads_it() {
        let timeout = |pairs: &[(&str, &str)]| read_vars(pairs).attempt_timeout;
        assert_eq!(timeout(&[]), DEFAULT_ATTEMPT_TIMEOUT);
        assert_eq!(
            timeout(&[("GCE_METADATA_TIMEOUT", "10")]),
            Duration::from_secs(10)
        );
        assert_eq!(
            timeout(&[("GCE_METADATA_TIMEOUT", "ten")]),
            DEFAULT_ATTEMPT_TIMEOUT
        );
    }

    #[test]
    fn debug_shows_the_configuration() {
        let builder = MetadataServer::builder()
            .account("sa@p.iam.gserviceaccount.com")
            .scopes(["s1"]);
        let debug = format!("{builder:?}");
        assert!(
            debug.starts_with("MetadataServerBuilder {")
                && debug.contains("sa@p.iam.gserviceaccount.com")
                && debug.contains("s1"),
            "{debug}"
        );
        let provider = builder.build(client()).unwrap();
        let debug = format!("{provider:?}");
        assert!(
            debug.contains("sa@p.iam.gserviceaccount.com") && debug.contains("s1"),
            "{debug}"
        );
    }

    /// A client that is never ready fails the provider's `poll_ready`, naming the token URL;
    /// the refresh span calls the provider by its name.
    #[tokio::test]
    async fn a_client_never_ready_is_no_answer_from_the_token_url() {
        let mut provider = MetadataServer::builder().build(NotReady).unwrap();
        let error = std::future::poll_fn(|cx| provider.poll_ready(cx))
            .await
            .unwrap_err();
        assert!(
            matches!(
                &error,
                MetadataError::NoAnswer(NoAnswer::Transport { url, .. })
                    if url == "http://metadata.google.internal/computeMetadata/v1/instance/service-accounts/default/token"
            ),
            "{error:?}"
        );
        let name = Grants::<NotReady, Full<Bytes>>::name(provider.config());
        assert_eq!(name, "gcp-metadata");
    }
}
