//! The managed identity token provider: a refresher over any HTTP client.

use std::fmt;
use std::future::Future;
use std::net::IpAddr;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::Uri;
use http::header::HeaderValue;
use http::uri::Scheme;
use http_body_util::Full;
use secrecy::{ExposeSecret, SecretString};
use tokio::time::Instant;
use tower::Service;

use super::env::{self, Detected};
use super::error::ManagedIdentityError;
use super::retry::{self, Retries, RetryPolicy};
use super::wire;
use tower_bearer::{Token, TokenRequest};
use tower_bearer_provider as http_client;
use tower_bearer_provider::{Grants, HttpClient, Refresher, RequestBody, Secrets, shown_url};

/// IMDS's address, the authority unless `AZURE_POD_IDENTITY_AUTHORITY_HOST` names another.
pub const IMDS_AUTHORITY: &str = "http://169.254.169.254";

/// IMDS's token path, under the authority.
const IMDS_TOKEN_PATH: &str = "/metadata/identity/oauth2/token";

/// How long one call may take unless [`ManagedIdentity::timeout`] says otherwise: past the
/// 75 s of waits azure-identity spends on IMDS answering 410 while an identity is provisioned.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(90);

/// The kind of identity endpoint a [`ManagedIdentity`] asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum IdentityEndpoint {
    /// The Instance Metadata Service of a virtual machine or scale set (and of AKS nodes, or
    /// AKS pod identity's proxy).
    Imds,
    /// The local endpoint of App Service, Azure Functions, Container Apps and Azure
    /// Automation, named by `IDENTITY_ENDPOINT` and guarded by `IDENTITY_HEADER`.
    AppService,
}

impl IdentityEndpoint {
    fn api_version(self) -> &'static str {
        match self {
            IdentityEndpoint::Imds => "2018-02-01",
            IdentityEndpoint::AppService => "2019-08-01",
        }
    }

    fn policy(self) -> &'static RetryPolicy {
        match self {
            IdentityEndpoint::Imds => &retry::IMDS,
            IdentityEndpoint::AppService => &retry::APP_SERVICE,
        }
    }
}

/// A user-assigned identity, by one of its ids. Without one, the endpoint answers for the
/// system-assigned identity (or for the only user-assigned one, when there is no
/// system-assigned identity).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserAssignedId {
    /// Its client (application) id.
    ClientId(String),
    /// Its object (principal) id.
    ObjectId(String),
    /// Its Azure resource id (`/subscriptions/…/userAssignedIdentities/…`).
    ResourceId(String),
}

impl UserAssignedId {
    /// The query parameter and value, as MSAL names them for each endpoint.
    fn parameter(&self, endpoint: IdentityEndpoint) -> (&'static str, &str) {
        match (self, endpoint) {
            (UserAssignedId::ClientId(id), _) => ("client_id", id),
            (UserAssignedId::ObjectId(id), _) => ("object_id", id),
            (UserAssignedId::ResourceId(id), IdentityEndpoint::Imds) => ("msi_res_id", id),
            (UserAssignedId::ResourceId(id), IdentityEndpoint::AppService) => ("mi_res_id", id),
        }
    }
}

/// Gets Azure managed identity tokens for one resource: a refresher for a
/// [`TokenCache`](tower_bearer::TokenCache) or
/// [`BearerAuthLayer`](tower_bearer::BearerAuthLayer).
///
/// See the [module documentation](super) for which endpoint it asks, what it sends and what it
/// makes of every answer. It sends through `C`, any tower HTTP service ([`HttpClient`]); `B`
/// is the client's request body type ([`RequestBody`]), inferred from `C`.
///
/// The App Service identity header is kept as a [`SecretString`] (never in `Debug`); each
/// request holds a copy, marked sensitive, while the client sends it.
///
/// ```
/// use bytes::Bytes;
/// use http_body_util::Full;
/// use hyper_util::client::legacy::{Client, connect::HttpConnector};
/// use hyper_util::rt::TokioExecutor;
/// use tower::ServiceExt;
/// use tower_bearer::{RefreshReason, TokenRequest};
/// use tower_bearer_platform::azure::{IdentityEndpoint, ManagedIdentity, UserAssignedId};
/// # use tower_bearer_mock::azure::MockManagedIdentity;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), tower::BoxError> {
/// # let server = MockManagedIdentity::builder()
/// #     .user_assigned("11111111-2222-3333-4444-555555555555", "oid", "/subscriptions/s/id")
/// #     .start()
/// #     .await?;
/// let client: Client<HttpConnector, Full<Bytes>> =
///     Client::builder(TokioExecutor::new()).build_http();
/// // As on App Service: IDENTITY_ENDPOINT and IDENTITY_HEADER, here the mock's.
/// let identity = ManagedIdentity::app_service(
///     server.identity_endpoint(),
///     server.identity_header(),
///     "https://storage.azure.com/.default",
///     client,
/// )?
/// .user_assigned(UserAssignedId::ClientId("11111111-2222-3333-4444-555555555555".into()));
/// assert_eq!(identity.endpoint(), IdentityEndpoint::AppService);
/// assert_eq!(identity.resource(), "https://storage.azure.com");
///
/// let token = identity.oneshot(TokenRequest::new(RefreshReason::Initial, None)).await?;
/// assert!(token.expiry().is_some());
/// # assert_eq!(server.counters().app_service_requests, 1);
/// # Ok(())
/// # }
/// ```
pub struct ManagedIdentity<C, B = Full<Bytes>> {
    inner: Refresher<Config, C, B>,
}

/// The future a [`ManagedIdentity`] call returns.
pub type ResponseFuture = tower_bearer_provider::ResponseFuture<ManagedIdentityError>;

/// What every clone of a provider, and every call in flight, shares.
#[derive(Clone)]
struct Config {
    endpoint: IdentityEndpoint,
    /// The endpoint, without the query the provider adds.
    url: Uri,
    /// App Service's `IDENTITY_HEADER`.
    identity_header: Option<SecretString>,
    resource: String,
    user_assigned: Option<UserAssignedId>,
    /// The provider's timeout, which the retries stay within.
    timeout: Duration,
}

impl<C, B> ManagedIdentity<C, B>
where
    C: HttpClient<B>,
    B: RequestBody,
{
    /// A provider for `resource` at the endpoint the environment names, chosen as Microsoft's
    /// libraries choose it (see the [module documentation](super#which-endpoint)).
    ///
    /// `resource` is the resource's App ID URI (`https://vault.azure.net`), or a scope ending
    /// in `/.default`, which is dropped.
    ///
    /// # Errors
    ///
    /// [`ManagedIdentityError::Unsupported`] for a source this provider does not speak;
    /// otherwise those of [`app_service`](Self::app_service) and
    /// [`imds_at`](Self::imds_at) for the values the variables hold.
    pub fn from_env(resource: impl Into<String>, client: C) -> Result<Self, ManagedIdentityError> {
        Self::from_vars(resource.into(), client, |name| std::env::var(name).ok())
    }

    /// [`from_env`](Self::from_env) with `var` as the environment.
    fn from_vars(
        resource: String,
        client: C,
        var: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ManagedIdentityError> {
        match env::detect(var) {
            Detected::AppService { endpoint, header } => {
                let url = parse_url(&endpoint, "IDENTITY_ENDPOINT")?;
                Self::at_app_service(url, SecretString::from(header), resource, client)
            }
            Detected::Imds { authority } => {
                let url = match authority {
                    Some(authority) => imds_url(&authority, "AZURE_POD_IDENTITY_AUTHORITY_HOST")?,
                    None => imds_url(IMDS_AUTHORITY, "IMDS_AUTHORITY")?,
                };
                Self::build(IdentityEndpoint::Imds, url, None, resource, client)
            }
            Detected::Unsupported(platform) => Err(ManagedIdentityError::Unsupported { platform }),
        }
    }

    /// A provider for `resource` at IMDS, [`IMDS_AUTHORITY`]: on a virtual machine or scale
    /// set, whatever the environment says.
    ///
    /// # Errors
    ///
    /// [`ManagedIdentityError::InvalidResource`] if `resource` is empty.
    pub fn imds(resource: impl Into<String>, client: C) -> Result<Self, ManagedIdentityError> {
        Self::imds_at(IMDS_AUTHORITY, resource, client)
    }

    /// A provider for `resource` at IMDS's token path under `authority`: what
    /// `AZURE_POD_IDENTITY_AUTHORITY_HOST` names (AKS pod identity's proxy), or a mock's
    /// `http://127.0.0.1:PORT`. A bare host is taken as `http`, and slashes around it are
    /// dropped, as azure-identity does.
    ///
    /// IMDS is plain HTTP by design, and its requests carry no secret: any host is allowed.
    ///
    /// # Errors
    ///
    /// [`ManagedIdentityError::InvalidEndpoint`] if `authority` does not make an absolute
    /// URL with a host; [`ManagedIdentityError::InvalidResource`] if `resource` is empty.
    pub fn imds_at(
        authority: impl AsRef<str>,
        resource: impl Into<String>,
        client: C,
    ) -> Result<Self, ManagedIdentityError> {
        let url = imds_url(authority.as_ref(), "imds_at")?;
        Self::build(IdentityEndpoint::Imds, url, None, resource.into(), client)
    }

    /// A provider for `resource` at the App Service / Container Apps endpoint `endpoint`
    /// (`IDENTITY_ENDPOINT`), sending `identity_header` (`IDENTITY_HEADER`) with every
    /// request.
    ///
    /// # Errors
    ///
    /// [`ManagedIdentityError::InvalidEndpoint`] if `endpoint` is not an absolute `http` or
    /// `https` URL with a host; [`ManagedIdentityError::CleartextEndpoint`] if it is `http`
    /// on a host that is neither loopback nor link-local (`169.254.0.0/16`, `fe80::/10`,
    /// where App Service on Linux puts it); [`ManagedIdentityError::InvalidIdentityHeader`]
    /// if the header is empty or not a header value; [`ManagedIdentityError::InvalidResource`]
    /// if `resource` is empty.
    pub fn app_service(
        endpoint: impl AsRef<str>,
        identity_header: impl Into<SecretString>,
        resource: impl Into<String>,
        client: C,
    ) -> Result<Self, ManagedIdentityError> {
        let url = parse_url(endpoint.as_ref(), "app_service")?;
        Self::at_app_service(url, identity_header.into(), resource.into(), client)
    }

    fn at_app_service(
        url: Uri,
        identity_header: SecretString,
        resource: String,
        client: C,
    ) -> Result<Self, ManagedIdentityError> {
        if http_client::is_cleartext(&url) && !url.host().is_some_and(is_link_local) {
            return Err(ManagedIdentityError::CleartextEndpoint);
        }
        let header = identity_header.expose_secret();
        if header.is_empty() || HeaderValue::from_str(header).is_err() {
            return Err(ManagedIdentityError::InvalidIdentityHeader);
        }
        Self::build(
            IdentityEndpoint::AppService,
            url,
            Some(identity_header),
            resource,
            client,
        )
    }

    /// The one place a provider is put together.
    fn build(
        endpoint: IdentityEndpoint,
        url: Uri,
        identity_header: Option<SecretString>,
        resource: String,
        client: C,
    ) -> Result<Self, ManagedIdentityError> {
        let resource = match resource.trim().strip_suffix("/.default") {
            Some(resource) => resource.to_owned(),
            None => resource.trim().to_owned(),
        };
        if resource.is_empty() {
            return Err(ManagedIdentityError::InvalidResource);
        }
        let config = Config {
            endpoint,
            url,
            identity_header,
            resource,
            user_assigned: None,
            timeout: DEFAULT_TIMEOUT,
        };
        Ok(ManagedIdentity {
            inner: Refresher::new(config, client, DEFAULT_TIMEOUT),
        })
    }
}

impl<C, B> ManagedIdentity<C, B> {
    fn config(&self) -> &Config {
        self.inner.grants()
    }

    /// The same provider with `config` changed by `change`.
    fn with_config(self, change: impl FnOnce(&mut Config)) -> Self {
        let mut config = self.config().clone();
        change(&mut config);
        let timeout = config.timeout;
        ManagedIdentity {
            inner: Refresher::new(config, self.inner.into_inner(), timeout),
        }
    }

    /// Asks for the user-assigned identity `id` rather than the system-assigned one.
    pub fn user_assigned(self, id: UserAssignedId) -> Self {
        self.with_config(|config| config.user_assigned = Some(id))
    }

    /// The most one call may take, every attempt and every wait between them; past it the
    /// call fails with [`NoAnswer::Timeout`](super::NoAnswer::Timeout), and a retry whose wait would end
    /// past it is not begun. Default: [`DEFAULT_TIMEOUT`], 90 s.
    ///
    /// Requests that need a token wait for the refresh in flight: a shorter timeout fails
    /// them sooner while IMDS provisions an identity, and the cache's backoff asks again
    /// later.
    pub fn timeout(self, timeout: Duration) -> Self {
        self.with_config(|config| config.timeout = timeout)
    }

    /// The kind of endpoint the provider asks.
    pub fn endpoint(&self) -> IdentityEndpoint {
        self.config().endpoint
    }

    /// The endpoint's URL, without the query the provider adds.
    pub fn url(&self) -> &Uri {
        &self.config().url
    }

    /// The resource the tokens are for, without a `/.default` it was given with.
    pub fn resource(&self) -> &str {
        &self.config().resource
    }

    /// The user-assigned identity asked for, if any.
    pub fn user_assigned_id(&self) -> Option<&UserAssignedId> {
        self.config().user_assigned.as_ref()
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

/// `text` as an absolute `http` or `https` URL with a host.
fn parse_url(text: &str, name: &'static str) -> Result<Uri, ManagedIdentityError> {
    let invalid = || ManagedIdentityError::InvalidEndpoint { name };
    let url: Uri = text.trim().parse().map_err(|_| invalid())?;
    let scheme = url.scheme().ok_or_else(invalid)?;
    if (*scheme != Scheme::HTTP && *scheme != Scheme::HTTPS) || url.host().is_none() {
        return Err(invalid());
    }
    Ok(url)
}

/// IMDS's token URL under `authority`, as azure-identity builds it: slashes around the
/// authority dropped, then the token path.
fn imds_url(authority: &str, name: &'static str) -> Result<Uri, ManagedIdentityError> {
    let authority = authority.trim();
    let url = if authority.contains("://") {
        format!("{}{IMDS_TOKEN_PATH}", authority.trim_end_matches('/'))
    } else {
        format!("http://{}{IMDS_TOKEN_PATH}", authority.trim_matches('/'))
    };
    let url = parse_url(&url, name)?;
    match url.query() {
        Some(_) => Err(ManagedIdentityError::InvalidEndpoint { name }),
        None => Ok(url),
    }
}

/// Whether `host` (as a URI writes it) is a link-local address, which no router forwards.
fn is_link_local(host: &str) -> bool {
    let address = host.trim_start_matches('[').trim_end_matches(']');
    match address.parse::<IpAddr>() {
        Ok(IpAddr::V4(v4)) => v4.is_link_local(),
        Ok(IpAddr::V6(v6)) => (v6.segments()[0] & 0xffc0) == 0xfe80,
        Err(_) => false,
    }
}

impl<C: Clone, B> Clone for ManagedIdentity<C, B> {
    fn clone(&self) -> Self {
        ManagedIdentity {
            inner: self.inner.clone(),
        }
    }
}

impl<C, B> fmt::Debug for ManagedIdentity<C, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let config = self.config();
        let mut debug = f.debug_struct("ManagedIdentity");
        debug
            .field("endpoint", &config.endpoint)
            .field("url", &config.url);
        if config.identity_header.is_some() {
            debug.field("identity_header", &"[REDACTED]");
        }
        debug
            .field("resource", &config.resource)
            .field("user_assigned", &config.user_assigned)
            .field("timeout", &config.timeout)
            .finish_non_exhaustive()
    }
}

impl<C, B> Service<TokenRequest> for ManagedIdentity<C, B>
where
    C: HttpClient<B>,
    B: RequestBody,
{
    type Response = Token;
    type Error = ManagedIdentityError;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: TokenRequest) -> Self::Future {
        self.inner.call(request)
    }
}

/// What one call sends: the GET, again while the answer is worth retrying. A managed identity
/// has no refresh token (IMDS sends an empty one): `refresh` is the default, the same request.
impl<C, B> Grants<C, B> for Config
where
    C: HttpClient<B>,
    B: RequestBody,
{
    type Error = ManagedIdentityError;

    fn name(&self) -> &'static str {
        "azure-managed-identity"
    }

    fn primary<'a>(
        &'a self,
        client: &'a mut C,
        reason: &'static str,
    ) -> impl Future<Output = Result<Token, ManagedIdentityError>> + Send + 'a {
        fetch(self, client, reason)
    }

    fn endpoint_url(&self) -> String {
        shown_url(&self.url)
    }
}

/// One call: attempts, and the waits [`Retries`] decides between them, until a token, a
/// failure no retry mends, or the retries or the timeout are spent.
async fn fetch<C, B>(
    config: &Config,
    client: &mut C,
    reason: &'static str,
) -> Result<Token, ManagedIdentityError>
where
    C: HttpClient<B>,
    B: RequestBody,
{
    let deadline = Instant::now() + config.timeout;
    let endpoint = config.endpoint;
    let policy = endpoint.policy();
    let uri = wire::request_uri(
        &config.url,
        endpoint.api_version(),
        &config.resource,
        config
            .user_assigned
            .as_ref()
            .map(|id| id.parameter(endpoint)),
    );
    let secrets: Secrets<'_> = config
        .identity_header
        .iter()
        .map(|header| header.expose_secret())
        .collect();
    let mut retries = Retries::new(policy);
    loop {
        let request = wire::request::<B>(&uri, config.identity_header.as_ref());
        let result = match http_client::send(client, request).await {
            Ok(answer) => wire::token_from(answer, &uri, policy, &secrets),
            Err(error) => Err(error.into()),
        };
        let error = match result {
            Ok(token) => return Ok(token),
            Err(error) => error,
        };
        let Some(failure) = wire::failure(&error) else {
            return Err(error);
        };
        let remaining = deadline.saturating_duration_since(Instant::now());
        let Some(wait) = retries.after(failure, remaining) else {
            return Err(error.after_attempts(retries.attempts()));
        };
        // The error names the endpoint and status only: safe to log.
        tracing::debug!(
            reason,
            attempt = retries.attempts(),
            wait_ms = wait.as_millis() as u64,
            %error,
            "asking the managed identity endpoint again"
        );
        tokio::time::sleep(wait).await;
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use crate::testing::{Client, NotReady, client};

    use super::super::NoAnswer;
    use super::*;

    fn from_vars(pairs: &[(&str, &str)]) -> Result<ManagedIdentity<Client>, ManagedIdentityError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        ManagedIdentity::from_vars("https://vault.azure.net".to_owned(), client(), move |n| {
            map.get(n).cloned()
        })
    }

    #[test]
    fn the_environment_picks_the_endpoint() {
        let imds = from_vars(&[]).unwrap();
        assert_eq!(imds.endpoint(), IdentityEndpoint::Imds);
        assert_eq!(
            imds.url(),
            "http://169.254.169.254/metadata/identity/oauth2/token"
        );
        for (authority, url) in [
            ("http://10.0.0.4:2579/", "http://10.0.0.4:2579"),
            ("127.0.0.1:8080", "http://127.0.0.1:8080"),
        ] {
            let pod = from_vars(&[("AZURE_POD_IDENTITY_AUTHORITY_HOST", authority)]).unwrap();
            assert_eq!(pod.url().to_string(), format!("{url}{IMDS_TOKEN_PATH}"));
        }
        let app = from_vars(&[
            ("IDENTITY_ENDPOINT", "http://127.0.0.1:41000/msi/token"),
            ("IDENTITY_HEADER", "SECRET-HEADER"),
        ])
        .unwrap();
        assert_eq!(app.endpoint(), IdentityEndpoint::AppService);
        assert_eq!(app.url(), "http://127.0.0.1:41000/msi/token");
        let debug = format!("{app:?}");
        assert!(!debug.contains("SECRET"), "{debug}");
        assert!(debug.contains("[REDACTED]"), "{debug}");

        let error =
            from_vars(&[("MSI_ENDPOINT", "http://localhost:50342/oauth2/token")]).unwrap_err();
        assert!(
            matches!(error, ManagedIdentityError::Unsupported { platform } if platform.starts_with("Cloud Shell"))
        );
        assert_eq!(
            error.to_string(),
            "the environment names Cloud Shell managed identity, which this managed identity \
             provider does not speak"
        );
    }

    #[test]
    fn bad_endpoints_and_headers() {
        for (pairs, expected) in [
            (
                &[
                    ("IDENTITY_ENDPOINT", "/msi/token"),
                    ("IDENTITY_HEADER", "h"),
                ][..],
                "InvalidEndpoint { name: \"IDENTITY_ENDPOINT\" }",
            ),
            (
                &[
                    ("IDENTITY_ENDPOINT", "http://app.example:8081/msi/token"),
                    ("IDENTITY_HEADER", "h"),
                ][..],
                "CleartextEndpoint",
            ),
            (
                &[
                    ("IDENTITY_ENDPOINT", "http://127.0.0.1:1/msi/token"),
                    ("IDENTITY_HEADER", "a\nb"),
                ][..],
                "InvalidIdentityHeader",
            ),
            (
                &[("AZURE_POD_IDENTITY_AUTHORITY_HOST", "http://")][..],
                "InvalidEndpoint { name: \"AZURE_POD_IDENTITY_AUTHORITY_HOST\" }",
            ),
            (
                &[
                    ("IDENTITY_ENDPOINT", "ftp://127.0.0.1:1/msi/token"),
                    ("IDENTITY_HEADER", "h"),
                ][..],
                "InvalidEndpoint { name: \"IDENTITY_ENDPOINT\" }",
            ),
        ] {
            let error = from_vars(pairs).unwrap_err();
            assert_eq!(format!("{error:?}"), expected, "{pairs:?}");
        }
        // Link-local, as App Service on Linux has it, and https anywhere.
        for endpoint in [
            "http://169.254.129.3:8081/msi/token",
            "http://[fe80::1]:8081/msi/token",
            "https://identity.example/msi/token",
        ] {
            let app = ManagedIdentity::app_service(endpoint, "h", "r", client());
            assert!(app.is_ok(), "{endpoint}");
        }
    }

    #[test]
    fn resources_and_scopes() {
        for (given, resource) in [
            ("https://vault.azure.net", "https://vault.azure.net"),
            (
                "https://vault.azure.net/.default",
                "https://vault.azure.net",
            ),
            (
                "https://management.azure.com//.default",
                "https://management.azure.com/",
            ),
            (" api://app-id ", "api://app-id"),
        ] {
            let identity = ManagedIdentity::imds(given, client()).unwrap();
            assert_eq!(identity.resource(), resource);
        }
        for empty in ["", "  ", "/.default"] {
            assert!(matches!(
                ManagedIdentity::imds(empty, client()),
                Err(ManagedIdentityError::InvalidResource)
            ));
        }
    }

    #[test]
    fn user_assigned_ids_as_each_endpoint_names_them() {
        let resource_id = UserAssignedId::ResourceId("/subscriptions/s".into());
        assert_eq!(
            resource_id.parameter(IdentityEndpoint::Imds),
            ("msi_res_id", "/subscriptions/s")
        );
        assert_eq!(
            resource_id.parameter(IdentityEndpoint::AppService),
            ("mi_res_id", "/subscriptions/s")
        );
        assert_eq!(
            UserAssignedId::ObjectId("o".into()).parameter(IdentityEndpoint::Imds),
            ("object_id", "o")
        );
        let identity = ManagedIdentity::imds("r", client())
            .unwrap()
            .user_assigned(UserAssignedId::ClientId("c".into()))
            .timeout(Duration::from_secs(5));
        assert_eq!(
            identity.user_assigned_id(),
            Some(&UserAssignedId::ClientId("c".into()))
        );
        assert_eq!(identity.config().timeout, Duration::from_secs(5));
        assert_eq!(identity.inner.timeout(), Duration::from_secs(5));
    }

    /// A client that is never ready fails the provider's `poll_ready`, naming the endpoint;
    /// the refresh span calls the provider by its name.
    #[tokio::test]
    async fn a_client_never_ready_is_no_answer_from_the_endpoint() {
        let mut provider = ManagedIdentity::imds("https://vault.azure.net", NotReady).unwrap();
        let error = std::future::poll_fn(|cx| provider.poll_ready(cx))
            .await
            .unwrap_err();
        assert!(
            matches!(
                &error,
                ManagedIdentityError::NoAnswer { error: NoAnswer::Transport { url, .. }, .. }
                    if url == "http://169.254.169.254/metadata/identity/oauth2/token"
            ),
            "{error:?}"
        );
        let name = Grants::<NotReady, Full<Bytes>>::name(provider.config());
        assert_eq!(name, "azure-managed-identity");
    }
}
