//! Tokens the platform hands out: GCP's metadata server, Azure managed identity, Azure workload
//! identity, or a token file the platform rotates, traded at a token endpoint.
//!
//! ```text
//! cargo run --example platform
//! ```
//!
//! With no `TOKEN_SOURCE`, it starts the embedded mocks of GCP's metadata server and Azure
//! managed identity (tokens live 2 s), and two APIs on loopback, one that accepts only the
//! tokens the metadata server issued and one only those managed identity issued. One client
//! calls both: a `KeyedAuthLayer` gives each request the token of its origin, each origin's
//! token from its own cache and sent nowhere else. It sends 200 calls from 8 tasks, 150 ms
//! apart (a few token lifetimes), half to each API, prints a progress line each second and a
//! summary (calls, each source's token requests as its cache counted them and as the mock
//! saw them), and exits 0 only if every call succeeded.
//!
//! With `TOKEN_SOURCE`, it calls `API_URL` with tokens from that source, which it finds from
//! the platform's own variables, as the platform's libraries do (a contract: tests and users
//! depend on it):
//!
//! | variable | meaning |
//! | --- | --- |
//! | `TOKEN_SOURCE` | `gcp-metadata`, `azure-managed-identity`, `azure-workload-identity` or `file`; unset: the embedded mocks |
//! | `API_URL` | the protected URL each call GETs (must answer 2xx with a valid token) |
//! | `gcp-metadata` | `GCE_METADATA_HOST` (else `metadata.google.internal`); `OAUTH2_SCOPE`, space-separated, if the token needs other scopes than the account's |
//! | `azure-managed-identity` | `OAUTH2_RESOURCE`, the API's App ID URI (required); `IDENTITY_ENDPOINT` and `IDENTITY_HEADER` (App Service), else IMDS |
//! | `azure-workload-identity` | `AZURE_CLIENT_ID`, `AZURE_TENANT_ID`, `AZURE_FEDERATED_TOKEN_FILE`, `AZURE_AUTHORITY_HOST`; `OAUTH2_SCOPE`, `{resource}/.default` (required) |
//! | `file` | `TOKEN_FILE`, the subject token of an RFC 8693 exchange, read again for every grant; the `OAUTH2_*` variables of `examples/oauth2.rs` for the token endpoint and the client |
//! | `REQUESTS` (default 200), `CONCURRENCY` (default 8), `PACE_MS` (default 0) | how many calls, from how many tasks, with what pause between a task's calls |
//!
//! ```text
//! TOKEN_SOURCE=file TOKEN_FILE=/var/run/secrets/tokens/api \
//! OAUTH2_TOKEN_URL=https://sts.example.com/token OAUTH2_CLIENT_ID=reports \
//! API_URL=https://api.example.com/reports cargo run --example platform
//! ```
//!
//! The summary counts the token requests each cache made (`Stats`): a rotated credential costs
//! none of its own, since it is read again at the next grant.

use std::collections::HashSet;
use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::Uri;
use http_body_util::Full;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tower::util::BoxCloneService;
use tower::{BoxError, ServiceBuilder};
use tower_bearer::{BearerAuthLayer, KeyedAuthLayer, ReplayBody, Scope, TokenCache};
use tower_bearer_mock::azure::MockManagedIdentity;
use tower_bearer_mock::gcp::MockMetadataServer;
use tower_bearer_oauth2::{AzureWorkloadIdentity, ConfigError, Grant, SubjectToken};
use tower_bearer_platform::azure::ManagedIdentity;
use tower_bearer_platform::gcp::MetadataServer;

mod common;
use common::Api;
use common::load::{self, Finished, Progress};
use common::oauth2_env::{self, Load, TokenServer, TokenSettings};
use common::summary::Summary;

type Client = hyper_util::client::legacy::Client<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    ReplayBody<Full<Bytes>>,
>;

/// The cache of the source `TOKEN_SOURCE` names, its provider found from the platform's own
/// variables; and where its tokens come from, for the first line.
fn platform_cache(source: &Source, client: Client) -> Result<(TokenCache, String), BoxError> {
    Ok(match source {
        Source::GcpMetadata { scopes } => {
            // `from_env`, with the scopes: the host as google-auth finds it.
            let provider = MetadataServer::builder()
                .read_env()
                .scopes(scopes)
                .build(client)
                .map_err(|error| format!("GCE_METADATA_HOST: {error}"))?;
            let from = provider.token_uri().to_string();
            (TokenCache::new(provider), from)
        }
        Source::AzureManagedIdentity { resource } => {
            let provider = ManagedIdentity::from_env(resource, client)
                .map_err(|error| format!("azure-managed-identity: {error}"))?;
            let from = provider.url().to_string();
            // A call waits out IMDS's provisioning (up to 90 s): the cache must wait as long,
            // or it gives up first and the endpoint's own answer is lost.
            let cache = TokenCache::builder(provider)
                .refresh_timeout(Duration::from_secs(100))
                .build();
            (cache, from)
        }
        Source::AzureWorkloadIdentity { scope } => {
            let identity = AzureWorkloadIdentity::from_env().map_err(|error| match error {
                ConfigError::InvalidTenant => format!("AZURE_TENANT_ID: {error}"),
                _ => format!("azure-workload-identity: {error}"),
            })?;
            let provider = identity.builder().scope(scope).build(client)?;
            (TokenCache::new(provider), identity.token_endpoint())
        }
        Source::File {
            path,
            tokens,
            server,
        } => {
            // The kubelet rewrites the file behind the client's back: read at every grant.
            let grant = Grant::token_exchange(SubjectToken::from_file(path));
            let provider = tokens.builder(server).grant(grant).build(client)?;
            let from = format!("{} for {}", server.url(), path.display());
            (TokenCache::new(provider), from)
        }
    })
}

/// One source's tokens, for the API's origin alone.
fn stack(cache: TokenCache, api_url: &str, client: Client) -> Result<Api, BoxError> {
    let auth = BearerAuthLayer::from_cache(cache, Scope::origin(api_url)?);
    let api = ServiceBuilder::new()
        .timeout(Duration::from_secs(10))
        .layer(auth)
        .service(client);
    Ok(BoxCloneService::new(api))
}

/// One client for two APIs: each request gets the token of its origin, GCP's or Azure's, each
/// scoped to its own origin by `by_origin`.
fn keyed_stack(
    gcp: (TokenCache, &str),
    azure: (TokenCache, &str),
    client: Client,
) -> (Api, KeyedAuthLayer<String>) {
    let (gcp_origin, azure_origin) = (gcp.1.to_owned(), azure.1.to_owned());
    let auth = KeyedAuthLayer::by_origin(move |origin| match origin {
        o if o == gcp_origin => Ok(gcp.0.clone()),
        o if o == azure_origin => Ok(azure.0.clone()),
        // Any other origin's request fails with this, rather than going out without a token.
        other => Err(format!("no token source for {other}").into()),
    });
    let api = ServiceBuilder::new()
        .timeout(Duration::from_secs(10))
        .layer(auth.clone())
        .service(client);
    (BoxCloneService::new(api), auth)
}

#[tokio::main]
async fn main() -> ExitCode {
    let settings = match Settings::from_lookup(|name| std::env::var(name).ok()) {
        Ok(settings) => settings,
        Err(message) => {
            eprintln!("platform: {message}");
            return ExitCode::from(2);
        }
    };
    let requests = settings.load.requests;
    let result = run(settings, &mut io::stdout()).await;
    common::exit_status("platform", result.map(|report| report.success(requests)))
}

// ===== the settings =====

/// The mocks' token lifetime: short, so that a few seconds span several.
const MOCK_TTL: Duration = Duration::from_secs(2);
const MOCK_PACE: Duration = Duration::from_millis(150);

/// Where the tokens come from: `TOKEN_SOURCE` and what that source needs.
#[derive(Clone)]
pub(crate) enum Source {
    GcpMetadata {
        scopes: Vec<String>,
    },
    AzureManagedIdentity {
        resource: String,
    },
    AzureWorkloadIdentity {
        scope: String,
    },
    File {
        path: PathBuf,
        /// The `OAUTH2_*` variables (boxed: they outweigh the other variants).
        tokens: Box<TokenSettings>,
        server: TokenServer,
    },
}

impl Source {
    /// Its `TOKEN_SOURCE` value.
    fn name(&self) -> &'static str {
        match self {
            Source::GcpMetadata { .. } => "gcp-metadata",
            Source::AzureManagedIdentity { .. } => "azure-managed-identity",
            Source::AzureWorkloadIdentity { .. } => "azure-workload-identity",
            Source::File { .. } => "file",
        }
    }
}

/// The example's settings, from the environment (or, in tests, any lookup). The platform's
/// own variables (`GCE_METADATA_HOST`, `IDENTITY_ENDPOINT`, `AZURE_*`) are read by the
/// providers, from the environment, as the platform's libraries read them.
#[derive(Clone)]
pub(crate) struct Settings {
    /// `None`: the embedded mocks.
    source: Option<Source>,
    api_url: Option<String>,
    pub(crate) load: Load,
}

impl Settings {
    /// Reads the variables through `lookup` (empty counts as unset).
    pub(crate) fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        let var = |name: &str| oauth2_env::var(&lookup, name);
        let required = |name: &str, why: &str| {
            var(name).ok_or_else(|| format!("{name} is required with TOKEN_SOURCE={why}"))
        };
        let source = match var("TOKEN_SOURCE").as_deref().map(str::trim) {
            None => None,
            Some("gcp-metadata") => Some(Source::GcpMetadata {
                scopes: var("OAUTH2_SCOPE")
                    .map(|list| list.split_whitespace().map(str::to_owned).collect())
                    .unwrap_or_default(),
            }),
            Some("azure-managed-identity") => Some(Source::AzureManagedIdentity {
                resource: required(
                    "OAUTH2_RESOURCE",
                    "azure-managed-identity: the API's App ID URI",
                )?,
            }),
            Some("azure-workload-identity") => Some(Source::AzureWorkloadIdentity {
                scope: required(
                    "OAUTH2_SCOPE",
                    "azure-workload-identity: the API's {resource}/.default",
                )?,
            }),
            Some("file") => {
                let path = PathBuf::from(required("TOKEN_FILE", "file: the subject token")?);
                // Read at every grant, but a path that cannot be read is a mistake to say now.
                std::fs::metadata(&path)
                    .map_err(|error| format!("TOKEN_FILE {}: {error}", path.display()))?;
                let tokens = TokenSettings::from_lookup(&lookup)?;
                let server = tokens.server.clone().ok_or(
                    "OAUTH2_TOKEN_URL or OAUTH2_ISSUER is required with TOKEN_SOURCE=file: the \
                     token endpoint that exchanges TOKEN_FILE",
                )?;
                Some(Source::File {
                    path,
                    tokens: Box::new(tokens),
                    server,
                })
            }
            Some(other) => {
                return Err(format!(
                    "TOKEN_SOURCE: '{other}' is not gcp-metadata, azure-managed-identity, \
                     azure-workload-identity or file"
                ));
            }
        };
        let api_url = var("API_URL");
        match (&source, &api_url) {
            (Some(source), None) => {
                let name = source.name();
                return Err(format!(
                    "API_URL is required with TOKEN_SOURCE={name}: the protected URL each call \
                     GETs"
                ));
            }
            (Some(_), Some(url)) => {
                Scope::origin(url.as_str()).map_err(|error| format!("API_URL: {error}"))?;
            }
            // The mocks' run calls APIs of its own: an API_URL it ignored would mislead.
            (None, Some(_)) => {
                let sources =
                    "gcp-metadata, azure-managed-identity, azure-workload-identity or file";
                return Err(format!(
                    "API_URL is set but TOKEN_SOURCE is not: name the source of its tokens \
                     ({sources})"
                ));
            }
            (None, None) => {}
        }
        Ok(Settings {
            source,
            api_url,
            load: Load::from_lookup(&lookup)?,
        })
    }
}

/// Whichever the settings ask for.
pub(crate) async fn run(settings: Settings, out: &mut dyn Write) -> Result<Report, BoxError> {
    match (&settings.source, &settings.api_url) {
        (Some(source), Some(api_url)) => run_real(source, api_url, &settings.load, out).await,
        _ => run_mock(&settings.load, out).await,
    }
}

/// One source's tokens for `API_URL`.
async fn run_real(
    source: &Source,
    api_url: &str,
    load: &Load,
    out: &mut dyn Write,
) -> Result<Report, BoxError> {
    let client = common::https_client();
    let (cache, from) = platform_cache(source, client.clone())?;
    let api = stack(cache.clone(), api_url, client)?;
    let (requests, tasks, name) = (load.requests, load.concurrency, source.name());
    writeln!(
        out,
        "tower-bearer platform: {requests} calls from {tasks} tasks to {api_url} with tokens \
         from {name} ({from})"
    )?;
    let uri: Uri = api_url.parse()?;
    let calls = move |_| common::get(api.clone(), uri.clone());
    let finished = load::run(
        load.plan(Duration::ZERO),
        calls,
        &[&cache],
        PROGRESS,
        |_| None,
        out,
    )
    .await?;
    let report = Report::new(&finished, vec![SourceReport::new(name, &cache)], &[&cache]);
    report.summary(&finished, None).print(out)?;
    Ok(report)
}

/// The embedded mocks of GCP's metadata server and Azure managed identity, each with an API
/// of its own, called through one client.
pub(crate) async fn run_mock(load: &Load, out: &mut dyn Write) -> Result<Report, BoxError> {
    // The metadata server hands back the token it holds until `renew_before` is left; GCP's 5
    // minutes scaled to 2 s would hand back tokens with a fraction of a second left, which its
    // whole-second `expires_in` rounds to nothing. A quarter of the life is when the cache
    // refreshes ahead.
    let gcp = Arc::new(
        MockMetadataServer::builder()
            .token_ttl(MOCK_TTL)
            .renew_before(MOCK_TTL / 4)
            .start()
            .await?,
    );
    let azure = Arc::new(
        MockManagedIdentity::builder()
            .token_ttl(MOCK_TTL)
            .start()
            .await?,
    );
    let gcp_api = MockApi::start({
        let gcp = gcp.clone();
        move |token| gcp.last_token("default").is_some_and(|last| last == token)
    })
    .await?;
    let azure_api = MockApi::start({
        let azure = azure.clone();
        move |token| azure.issued().iter().any(|t| t.access_token == token)
    })
    .await?;

    let client = common::https_client();
    let gcp_cache = TokenCache::new(MetadataServer::with_host(gcp.host(), client.clone())?);
    let resource = tower_bearer_mock::azure::DEFAULT_RESOURCES[0];
    let azure_cache = TokenCache::new(ManagedIdentity::imds_at(
        azure.imds_authority(),
        resource,
        client.clone(),
    )?);
    let (api, keyed) = keyed_stack(
        (gcp_cache.clone(), &gcp_api.origin),
        (azure_cache.clone(), &azure_api.origin),
        client,
    );

    let (requests, tasks) = (load.requests, load.concurrency);
    writeln!(
        out,
        "tower-bearer platform: {requests} calls from {tasks} tasks, half to each of two APIs \
         through one client, tokens from a mock GCP metadata server at {} and a mock Azure \
         managed identity at {}",
        gcp.uri(),
        azure.imds_authority(),
    )?;
    writeln!(
        out,
        "(tokens live {} s; set TOKEN_SOURCE and API_URL to use the platform's own)",
        MOCK_TTL.as_secs()
    )?;
    let uris: [Uri; 2] = [
        format!("{}/items", gcp_api.origin).parse()?,
        format!("{}/items", azure_api.origin).parse()?,
    ];
    let calls = move |call: load::Call| {
        let uri = uris[(call.task + call.n) % 2].clone();
        common::get(api.clone(), uri)
    };
    let caches = [&gcp_cache, &azure_cache];
    let plan = load.plan(MOCK_PACE);
    let finished = load::run(plan, calls, &caches, PROGRESS, |_| None, out).await?;

    let mut gcp_source = SourceReport::new("gcp-metadata", &gcp_cache);
    let counters = gcp.counters();
    gcp_source.mock = Some((counters.token_requests, counters.tokens_issued));
    let mut azure_source = SourceReport::new("azure-managed-identity", &azure_cache);
    let counters = azure.counters();
    azure_source.mock = Some((counters.imds_requests, counters.tokens_issued));
    let report = Report::new(&finished, vec![gcp_source, azure_source], &caches);
    report
        .summary(&finished, Some(&keyed.stats().to_string()))
        .print(out)?;
    Ok(report)
}

// ===== the session's report =====

/// The progress line: `  1.0s    53 ok  0 failed  tokens #1 #1  401s retried 0`.
const PROGRESS: Progress = Progress {
    ok_width: 4,
    time_left: false,
    refusals: "401s",
};

/// One source's tokens.
#[derive(Debug)]
pub(crate) struct SourceReport {
    /// Its `TOKEN_SOURCE` value.
    pub(crate) name: &'static str,
    /// Token requests its cache made, and the tokens they brought.
    pub(crate) requests: u64,
    pub(crate) tokens: u64,
    /// Token requests the mock saw, and tokens it issued (mock only).
    pub(crate) mock: Option<(u64, u64)>,
}

impl SourceReport {
    fn new(name: &'static str, cache: &TokenCache) -> Self {
        let total = cache.stats().total();
        SourceReport {
            name,
            requests: total.started,
            tokens: total.succeeded,
            mock: None,
        }
    }
}

/// How it went.
#[derive(Debug)]
pub(crate) struct Report {
    pub(crate) ok: u64,
    pub(crate) failed: u64,
    pub(crate) sources: Vec<SourceReport>,
    /// 401s to requests with a cache's token, and those sent again.
    pub(crate) unauthorized: u64,
    pub(crate) retried: u64,
}

impl Report {
    fn new(finished: &Finished, sources: Vec<SourceReport>, caches: &[&TokenCache]) -> Self {
        let stats: Vec<_> = caches.iter().map(|cache| cache.stats()).collect();
        Report {
            ok: finished.tally.ok(),
            failed: finished.tally.failed(),
            sources,
            unauthorized: stats.iter().map(|s| s.unauthorized).sum(),
            retried: stats.iter().map(|s| s.retried).sum(),
        }
    }

    pub(crate) fn success(&self, requests: usize) -> bool {
        self.failed == 0 && self.ok == requests as u64
    }

    fn summary(&self, finished: &Finished, keys: Option<&str>) -> Summary {
        let mut summary = Summary::new(finished, 24);
        let (ok, failed) = (self.ok, self.failed);
        summary.row("calls", format_args!("{ok} ok, {failed} failed"));
        for source in &self.sources {
            let (requests, tokens) = (source.requests, source.tokens);
            let seen = match source.mock {
                Some((seen, issued)) => {
                    format!("; the mock saw {seen} requests, issued {issued} tokens")
                }
                None => String::new(),
            };
            summary.row(
                source.name,
                format_args!("{requests} token requests, {tokens} tokens{seen}"),
            );
        }
        let (unauthorized, retried) = (self.unauthorized, self.retried);
        summary.row(
            "401s",
            format_args!("{unauthorized} answered, {retried} recovered by a retry"),
        );
        summary.latency(finished);
        if let Some(keys) = keys {
            summary.row("keyed layer", keys);
        }
        summary.errors(finished);
        summary
    }
}

// ===== the mocks' APIs =====

/// A protected API on loopback that answers 200 to a bearer token its platform issued and 401
/// to any other: a token sent to the wrong origin fails its call.
struct MockApi {
    origin: String,
    task: JoinHandle<()>,
}

impl MockApi {
    async fn start(issued: impl Fn(&str) -> bool + Send + Sync + 'static) -> io::Result<Self> {
        use axum::http::{HeaderMap, StatusCode, header};

        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let origin = format!("http://{}", listener.local_addr()?);
        // Tokens accepted once stay accepted: the metadata server's handle shows only its
        // latest token, and a call may go out with the one before just as it is replaced.
        let accepted = Arc::new(Mutex::new(HashSet::<String>::new()));
        let check = move |headers: HeaderMap| {
            let token = headers
                .get(header::AUTHORIZATION)
                .and_then(|value| value.to_str().ok())
                .and_then(|value| value.strip_prefix("Bearer "));
            let mut accepted = common::tally::lock(&accepted);
            match token {
                Some(token) if accepted.contains(token) || issued(token) => {
                    accepted.insert(token.to_owned());
                    StatusCode::OK
                }
                _ => StatusCode::UNAUTHORIZED,
            }
        };
        let check = Arc::new(check);
        let app = axum::Router::new().fallback(move |headers: HeaderMap| {
            let check = check.clone();
            async move { check(headers) }
        });
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(MockApi { origin, task })
    }
}

impl Drop for MockApi {
    fn drop(&mut self) {
        self.task.abort();
    }
}
