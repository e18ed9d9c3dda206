//! Azure workload identity: OAuth 2.0 client credentials at Entra ID, authenticated by the
//! federated token the platform writes to a file.

use std::fmt;
use std::path::PathBuf;

use crate::builder::OAuth2Builder;
use crate::error::ConfigError;
use crate::grant::ClientAssertion;
use crate::provider::OAuth2;

/// Entra ID's public cloud, the authority when `AZURE_AUTHORITY_HOST` is not set.
pub const AZURE_PUBLIC_CLOUD: &str = "https://login.microsoftonline.com";

/// The settings of Azure workload identity (AKS, or any Kubernetes cluster with the workload
/// identity webhook), which the webhook gives a pod as environment variables: the
/// application's client id, its tenant, the file the kubelet keeps a fresh federated token in,
/// and the authority host.
///
/// [`builder`](Self::builder) makes an [`OAuth2Builder`] for Entra ID's token endpoint,
/// `{authority}/{tenant}/oauth2/v2.0/token`, that authenticates with the federated token as
/// its client assertion, read again for every token request (the kubelet rotates it): add
/// the scope (`{resource}/.default`) and build it with your client.
///
/// ```no_run
/// use tower_bearer_oauth2::AzureWorkloadIdentity;
/// # use hyper_util::client::legacy::{Client, connect::HttpConnector};
/// # use hyper_util::rt::TokioExecutor;
/// # use http_body_util::Full;
/// # use bytes::Bytes;
/// # let client: Client<HttpConnector, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
///
/// // AZURE_CLIENT_ID, AZURE_TENANT_ID, AZURE_FEDERATED_TOKEN_FILE, AZURE_AUTHORITY_HOST
/// let provider = AzureWorkloadIdentity::from_env()?
///     .builder()
///     .scope("https://storage.azure.com/.default")
///     .build(client)?;
/// # Ok::<(), tower_bearer_oauth2::ConfigError>(())
/// ```
#[derive(Clone)]
pub struct AzureWorkloadIdentity {
    client_id: String,
    tenant_id: String,
    token_file: PathBuf,
    authority_host: String,
}

impl AzureWorkloadIdentity {
    /// The settings as Microsoft's Azure Identity libraries read them: `AZURE_CLIENT_ID`,
    /// `AZURE_TENANT_ID` and `AZURE_FEDERATED_TOKEN_FILE`, each required, and
    /// `AZURE_AUTHORITY_HOST` (a URL, or a bare host taken as `https`), [the public
    /// cloud](AZURE_PUBLIC_CLOUD) when unset.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Environment`] naming the first required variable that is unset, empty
    /// or not Unicode; [`ConfigError::InvalidTenant`] for a tenant that cannot be a path
    /// segment.
    pub fn from_env() -> Result<Self, ConfigError> {
        from_vars(|name| std::env::var(name).ok())
    }

    /// The settings given, with the public cloud's authority.
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidTenant`] for a tenant that is not a GUID or domain name (letters,
    /// digits, `-` and `.`).
    pub fn new(
        client_id: impl Into<String>,
        tenant_id: impl Into<String>,
        token_file: impl Into<PathBuf>,
    ) -> Result<Self, ConfigError> {
        let tenant_id = tenant_id.into();
        if tenant_id.is_empty()
            || !tenant_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        {
            return Err(ConfigError::InvalidTenant);
        }
        Ok(AzureWorkloadIdentity {
            client_id: client_id.into(),
            tenant_id,
            token_file: token_file.into(),
            authority_host: AZURE_PUBLIC_CLOUD.to_owned(),
        })
    }

    /// Entra ID's host for a sovereign cloud (`https://login.microsoftonline.us`), or a test
    /// server's base URL. A bare host is taken as `https`; the token endpoint built from it
    /// must be `https`, or `http` on loopback, as for any [`OAuth2Builder`].
    pub fn authority_host(mut self, host: impl Into<String>) -> Self {
        let host = host.into();
        let host = host.trim_end_matches('/');
        self.authority_host = if host.contains("://") {
            host.to_owned()
        } else {
            format!("https://{host}")
        };
        self
    }

    /// The token endpoint, `{authority}/{tenant}/oauth2/v2.0/token`.
    pub fn token_endpoint(&self) -> String {
        format!(
            "{}/{}/oauth2/v2.0/token",
            self.authority_host, self.tenant_id
        )
    }

    /// A provider's builder: Entra ID's token endpoint, the client id, and the federated token
    /// file as the client assertion. Add the scope (`{resource}/.default`).
    pub fn builder(&self) -> OAuth2Builder {
        OAuth2::builder()
            .token_endpoint(self.token_endpoint())
            .client_id(self.client_id.clone())
            .client_assertion(ClientAssertion::from_file(self.token_file.clone()))
    }
}

/// The settings from `var`, a lookup of the environment.
fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<AzureWorkloadIdentity, ConfigError> {
    let required = |name: &'static str| {
        var(name)
            .filter(|value| !value.trim().is_empty())
            .ok_or(ConfigError::Environment(name))
    };
    let client_id = required("AZURE_CLIENT_ID")?;
    let tenant_id = required("AZURE_TENANT_ID")?;
    let token_file = required("AZURE_FEDERATED_TOKEN_FILE")?;
    let identity = AzureWorkloadIdentity::new(client_id.trim(), tenant_id.trim(), token_file)?;
    Ok(
        match var("AZURE_AUTHORITY_HOST").filter(|host| !host.trim().is_empty()) {
            Some(host) => identity.authority_host(host.trim()),
            None => identity,
        },
    )
}

impl fmt::Debug for AzureWorkloadIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AzureWorkloadIdentity")
            .field("client_id", &self.client_id)
            .field("tenant_id", &self.tenant_id)
            .field("token_file", &self.token_file)
            .field("authority_host", &self.authority_host)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use bytes::Bytes;
    use http_body_util::Full;
    use hyper_util::client::legacy::{Client, connect::HttpConnector};
    use hyper_util::rt::TokioExecutor;

    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |name| map.get(name).cloned()
    }

    const SET: [(&str, &str); 3] = [
        ("AZURE_CLIENT_ID", "11111111-2222-3333-4444-555555555555"),
        ("AZURE_TENANT_ID", "contoso.onmicrosoft.com"),
        (
            "AZURE_FEDERATED_TOKEN_FILE",
            "/var/run/secrets/azure/tokens/azure-identity-token",
        ),
    ];

    #[test]
    fn the_webhooks_variables_make_entras_token_endpoint() {
        let identity = from_vars(vars(&SET)).unwrap();
        assert_eq!(
            identity.token_endpoint(),
            "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token"
        );
        assert_eq!(identity.client_id, SET[0].1);
        assert_eq!(identity.token_file, PathBuf::from(SET[2].1));

        for (host, endpoint) in [
            (
                "https://login.microsoftonline.us/",
                "https://login.microsoftonline.us",
            ),
            ("login.chinacloudapi.cn", "https://login.chinacloudapi.cn"),
            ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
            ("", "https://login.microsoftonline.com"),
        ] {
            let mut set = SET.to_vec();
            set.push(("AZURE_AUTHORITY_HOST", host));
            let identity = from_vars(vars(&set)).unwrap();
            assert_eq!(
                identity.token_endpoint(),
                format!("{endpoint}/contoso.onmicrosoft.com/oauth2/v2.0/token"),
                "{host}"
            );
        }
    }

    #[test]
    fn debug_output_names_every_setting() {
        let identity = from_vars(vars(&SET)).unwrap();
        assert_eq!(
            format!("{identity:?}"),
            "AzureWorkloadIdentity { client_id: \"11111111-2222-3333-4444-555555555555\", \
             tenant_id: \"contoso.onmicrosoft.com\", token_file: \
             \"/var/run/secrets/azure/tokens/azure-identity-token\", authority_host: \
             \"https://login.microsoftonline.com\" }"
        );
    }

    #[test]
    fn a_missing_variable_is_named() {
        for (i, &(name, _)) in SET.iter().enumerate() {
            let mut set = SET.to_vec();
            set.remove(i);
            let error = from_vars(vars(&set)).unwrap_err();
            assert_eq!(error, ConfigError::Environment(name), "{name}");
            set.insert(i, (name, "  "));
            assert_eq!(
                from_vars(vars(&set)).unwrap_err(),
                ConfigError::Environment(name)
            );
        }
        assert_eq!(
            ConfigError::Environment("AZURE_TENANT_ID").to_string(),
            "the environment variable AZURE_TENANT_ID is not set"
        );
    }

    #[test]
    fn a_tenant_that_is_not_a_path_segment_is_refused() {
        for tenant in ["", "a/b", "contoso?x", "../token", "tenant id"] {
            assert_eq!(
                AzureWorkloadIdentity::new("id", tenant, "/f").unwrap_err(),
                ConfigError::InvalidTenant,
                "{tenant:?}"
            );
        }
        assert!(
            AzureWorkloadIdentity::new("id", "72f988bf-86f1-41af-91ab-2d7cd011db47", "/f").is_ok()
        );
    }

    #[test]
    fn a_cleartext_authority_off_loopback_is_refused_by_the_builder() {
        let identity = from_vars(vars(&SET))
            .unwrap()
            .authority_host("http://login.example.com");
        let client: Client<HttpConnector, Full<Bytes>> =
            Client::builder(TokioExecutor::new()).build_http();
        let error = identity.builder().build(client).unwrap_err();
        assert_eq!(error, ConfigError::Cleartext("token endpoint"));
    }
}
