//! One replica of a service that calls api.video, sharing its token with the other replicas
//! through Redis. Start several against one Redis and one api.video (here the mock), and they
//! log in once and refresh once per token lifetime between them.
//!
//! ```text
//! redis-server --port 6390 --save '' --appendonly no &
//! cargo run -p tower-bearer-mock --bin mock_server -- --ttl 2   # prints its address
//! for i in 1 2 3 4; do
//!   cargo run --example replica -- \
//!     --redis redis://127.0.0.1:6390/ --base http://127.0.0.1:PORT/ --requests 1000 --secs 8 &
//! done; wait
//! ```
//!
//! Each prints one line when it is done, `replica <pid>: 1000 ok, 0 failed; …` with what its
//! cache did. `--no-store` runs the same replica without Redis, refreshing alone. The API key
//! is `APIVIDEO_API_KEY`, or the mock's.
//!
//! A Redis Cluster is `--redis-cluster redis://HOST:PORT,redis://HOST:PORT,…` (some of its
//! nodes); a master watched by Sentinels is `--redis-sentinel redis://HOST:PORT,… --sentinel-master
//! NAME` (the Sentinels). `--caches N` runs N caches in the one process. `--tokens-only` shares
//! tokens and not failures (each replica backs off alone, as before failures were shared), and
//! `--tolerate-failures` exits 0 even if requests failed (an outage that is the test's).
//!
//! `tests/redis.rs` runs this file in-process (8 replicas in one process) and as separate OS
//! processes; `tests/redis_cluster.rs` against a Cluster and against Sentinels.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tower::{BoxError, ServiceBuilder, ServiceExt};
use tower_bearer::store::{Notifications, Publish, SharedToken, StoreFuture, TokenStore};
use tower_bearer::{BearerAuthLayer, ReplayBody, Stats, Token, TokenCache};
use tower_bearer_apivideo::ApiVideo;
use tower_bearer_mock::apivideo::DEFAULT_API_KEY;
use tower_bearer_redis::{RedisStore, RedisStoreBuilder};

/// Runs one replica: its own HTTP client, its own provider and cache, and the store.
pub async fn run(plan: Plan) -> Result<Report, BoxError> {
    let client: Client<_, ReplayBody<Full<Bytes>>> =
        Client::builder(TokioExecutor::new()).build_http();
    let key = api_key();
    let api = ApiVideo::with_base_uri(plan.base.as_str(), key.as_str(), client.clone())?
        .timeout(Duration::from_secs(5));
    let scope = api.scope();
    let mut cache = TokenCache::builder(api);
    if let Some(redis) = &plan.redis {
        let store = redis
            .store(key.as_bytes())
            .namespace(plan.namespace.as_str())
            .clock_skew(plan.clock_skew)
            .build()?;
        cache = if plan.share_failures {
            cache.store(store)
        } else {
            cache.store(TokensOnly(store))
        };
        cache = cache
            .lease(plan.lease)
            .store_poll(Duration::from_millis(100));
    }
    let cache = cache.build();
    let service = ServiceBuilder::new()
        .timeout(Duration::from_secs(20))
        .layer(BearerAuthLayer::from_cache(cache.clone(), scope))
        .service(client);

    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let start = tokio::time::Instant::now();
    let started_ms = unix_ms();
    // When the first request succeeded, in Unix milliseconds; `u64::MAX`: none yet.
    let first_ok = Arc::new(AtomicU64::new(u64::MAX));
    let interval = plan.duration / plan.requests.max(1) as u32;
    let uri = format!("{}/videos?pageSize=1", plan.base.trim_end_matches('/'));
    let tasks: Vec<_> = (0..plan.concurrency)
        .map(|task| {
            let (service, ok, failed, uri, first_ok) = (
                service.clone(),
                ok.clone(),
                failed.clone(),
                uri.clone(),
                first_ok.clone(),
            );
            let plan = plan.clone();
            tokio::spawn(async move {
                for i in (task..plan.requests).step_by(plan.concurrency) {
                    tokio::time::sleep_until(start + interval * i as u32).await;
                    let request = Request::get(uri.as_str())
                        .body(Full::default())
                        .expect("a valid request");
                    match service.clone().oneshot(request).await {
                        Ok(response) if response.status().is_success() => {
                            first_ok.fetch_min(unix_ms(), Ordering::Relaxed);
                            ok.fetch_add(1, Ordering::Relaxed)
                        }
                        Ok(response) => {
                            eprintln!("replica: {} for a request", response.status());
                            failed.fetch_add(1, Ordering::Relaxed)
                        }
                        Err(error) => {
                            if !plan.tolerate_failures {
                                eprintln!("replica: a request failed: {error}");
                            }
                            failed.fetch_add(1, Ordering::Relaxed)
                        }
                    };
                }
            })
        })
        .collect();
    for task in tasks {
        task.await?;
    }
    let first_ok = first_ok.load(Ordering::Relaxed);
    Ok(Report {
        ok: ok.load(Ordering::Relaxed),
        failed: failed.load(Ordering::Relaxed),
        started_ms,
        first_ok_ms: (first_ok != u64::MAX).then_some(first_ok),
        stats: cache.stats(),
        cache,
    })
}

/// Runs `plan.caches` replicas at once in this process; their reports.
pub async fn run_all(plan: Plan) -> Result<Vec<Report>, BoxError> {
    let runs: Vec<_> = (0..plan.caches.max(1))
        .map(|_| tokio::spawn(run(plan.clone())))
        .collect();
    let mut reports = Vec::new();
    for run in runs {
        reports.push(run.await??);
    }
    Ok(reports)
}

#[tokio::main]
#[allow(dead_code)]
async fn main() -> Result<(), BoxError> {
    let plan = parse(std::env::args().skip(1))?;
    let tolerate = plan.tolerate_failures;
    let reports = run_all(plan).await?;
    for report in &reports {
        println!("{}", report.line());
    }
    if reports.iter().any(|report| report.failed > 0) && !tolerate {
        std::process::exit(1);
    }
    Ok(())
}

// ===== the plan, the report and the command line =====

/// The Redis to share tokens through.
#[derive(Clone, Debug)]
pub enum Redis {
    /// One endpoint (`--redis URL`).
    Url(String),
    /// A Cluster, by some of its nodes (`--redis-cluster URL,URL,…`).
    Cluster(Vec<String>),
    /// The master Sentinels watch (`--redis-sentinel URL,URL,… --sentinel-master NAME`).
    Sentinel {
        sentinels: Vec<String>,
        master: String,
    },
}

impl Redis {
    /// A store builder for the account whose credential is `key`.
    pub fn store(&self, key: &[u8]) -> RedisStoreBuilder {
        match self {
            Redis::Url(url) => RedisStore::builder(url.as_str(), key),
            Redis::Cluster(seeds) => RedisStore::cluster(seeds, key),
            Redis::Sentinel { sentinels, master } => {
                RedisStore::sentinel(sentinels, master.as_str(), key)
            }
        }
    }
}

/// What one replica does.
#[derive(Clone, Debug)]
pub struct Plan {
    /// The Redis to share tokens through; `None`: refresh alone.
    pub redis: Option<Redis>,
    /// How many caches (replicas) `run_all` runs in this process.
    pub caches: usize,
    /// The namespace of the Redis keys.
    pub namespace: String,
    /// api.video's base URI (the mock's).
    pub base: String,
    /// How many requests, spread evenly over `duration`.
    pub requests: usize,
    pub duration: Duration,
    /// How many tasks send them.
    pub concurrency: usize,
    pub lease: Duration,
    /// The clock-skew allowance: the tests' tokens live 2 s, so the default 2 s would not do.
    pub clock_skew: Duration,
    /// Whether a failure the authorization server answered is shared through the store (as
    /// `RedisStore` does); `false` shares tokens only, as before failures were shared.
    pub share_failures: bool,
    /// Whether failed requests are expected (an outage): the replica then exits 0 all the same.
    pub tolerate_failures: bool,
}

impl Default for Plan {
    fn default() -> Self {
        Plan {
            redis: None,
            caches: 1,
            namespace: "replica-example".into(),
            base: "http://127.0.0.1:8080/".into(),
            requests: 1000,
            duration: Duration::from_secs(8),
            concurrency: 4,
            lease: Duration::from_secs(1),
            clock_skew: Duration::from_millis(100),
            share_failures: true,
            tolerate_failures: false,
        }
    }
}

/// How it went.
#[derive(Debug)]
pub struct Report {
    pub ok: u64,
    pub failed: u64,
    /// When the replica started, in Unix milliseconds.
    pub started_ms: u64,
    /// When the first request succeeded, in Unix milliseconds.
    pub first_ok_ms: Option<u64>,
    pub stats: Stats,
    /// The cache, to compare its token with other replicas' after the run.
    pub cache: TokenCache,
}

impl Report {
    pub fn line(&self) -> String {
        let store = self.stats.store.as_ref().map_or_else(
            || "no store".to_owned(),
            |s| {
                format!(
                    "store: {} adopted, {} leases won, {} published, {} refused, {} errors, {} alone, {} failures published, {} met{}",
                    s.adopted,
                    s.leases_won,
                    s.publishes,
                    s.refused,
                    s.errors,
                    s.local_refreshes,
                    s.failures_published,
                    s.failures_adopted,
                    if s.unavailable { ", unavailable" } else { "" }
                )
            },
        );
        let first_ok = self.first_ok_ms.map_or_else(
            || "never".to_owned(),
            |at| {
                let after = at.saturating_sub(self.started_ms) as f64 / 1000.0;
                format!("after {after:.2} s (unix ms {at})")
            },
        );
        format!(
            "replica {}: {} ok, {} failed; first ok {first_ok}; {} tokens obtained; {store}",
            std::process::id(),
            self.ok,
            self.failed,
            self.stats.total().succeeded,
        )
    }
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn api_key() -> String {
    std::env::var("APIVIDEO_API_KEY").unwrap_or_else(|_| DEFAULT_API_KEY.to_owned())
}

const USAGE: &str = "usage: replica --base URI [--redis URL | --redis-cluster URL,URL,... | \
    --redis-sentinel URL,URL,... --sentinel-master NAME | --no-store] [--caches N] [--requests N] \
    [--secs S] [--lease-ms MS] [--tokens-only] [--tolerate-failures]";

pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Plan, String> {
    let mut plan = Plan::default();
    let mut sentinel_master = None;
    let list = |urls: String| urls.split(',').map(str::to_owned).collect();
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let mut value = || {
            args.next()
                .ok_or_else(|| format!("{arg} needs a value\n{USAGE}"))
        };
        match arg.as_str() {
            "--redis" => plan.redis = Some(Redis::Url(value()?)),
            "--redis-cluster" => plan.redis = Some(Redis::Cluster(list(value()?))),
            "--redis-sentinel" => {
                plan.redis = Some(Redis::Sentinel {
                    sentinels: list(value()?),
                    master: String::new(),
                })
            }
            "--sentinel-master" => sentinel_master = Some(value()?),
            "--caches" => plan.caches = value()?.parse().map_err(|e| format!("{e}"))?,
            "--no-store" => plan.redis = None,
            "--tokens-only" => plan.share_failures = false,
            "--tolerate-failures" => plan.tolerate_failures = true,
            "--namespace" => plan.namespace = value()?,
            "--base" => plan.base = value()?,
            "--requests" => plan.requests = value()?.parse().map_err(|e| format!("{e}"))?,
            "--secs" => {
                plan.duration =
                    Duration::from_secs_f64(value()?.parse().map_err(|e| format!("{e}"))?)
            }
            "--lease-ms" => {
                plan.lease = Duration::from_millis(value()?.parse().map_err(|e| format!("{e}"))?)
            }
            _ => return Err(USAGE.to_owned()),
        }
    }
    match (&mut plan.redis, sentinel_master) {
        (Some(Redis::Sentinel { master, .. }), Some(name)) => *master = name,
        (Some(Redis::Sentinel { .. }), None) => {
            return Err(format!("--redis-sentinel needs --sentinel-master\n{USAGE}"));
        }
        (_, Some(_)) => {
            return Err(format!(
                "--sentinel-master goes with --redis-sentinel\n{USAGE}"
            ));
        }
        (_, None) => {}
    }
    Ok(plan)
}

impl Plan {
    /// The command line `parse` reads back as this plan.
    pub fn args(&self) -> Vec<String> {
        let mut args = vec![
            "--base".to_owned(),
            self.base.clone(),
            "--namespace".to_owned(),
            self.namespace.clone(),
            "--caches".to_owned(),
            self.caches.to_string(),
            "--requests".to_owned(),
            self.requests.to_string(),
            "--secs".to_owned(),
            self.duration.as_secs_f64().to_string(),
            "--lease-ms".to_owned(),
            self.lease.as_millis().to_string(),
        ];
        match &self.redis {
            Some(Redis::Url(url)) => args.extend(["--redis".to_owned(), url.clone()]),
            Some(Redis::Cluster(seeds)) => {
                args.extend(["--redis-cluster".to_owned(), seeds.join(",")])
            }
            Some(Redis::Sentinel { sentinels, master }) => args.extend([
                "--redis-sentinel".to_owned(),
                sentinels.join(","),
                "--sentinel-master".to_owned(),
                master.clone(),
            ]),
            None => args.push("--no-store".to_owned()),
        }
        if !self.share_failures {
            args.push("--tokens-only".to_owned());
        }
        if self.tolerate_failures {
            args.push("--tolerate-failures".to_owned());
        }
        args
    }
}

/// A store that shares tokens and not failures: each replica backs off on its own, as before
/// failures were shared (the trait's defaults), for the comparison in `tests/redis.rs`.
struct TokensOnly(RedisStore);

impl TokenStore for TokensOnly {
    fn load(&self) -> StoreFuture<'_, Option<SharedToken>> {
        self.0.load()
    }
    fn try_lease<'a>(&'a self, owner: &'a str, ttl: Duration) -> StoreFuture<'a, bool> {
        self.0.try_lease(owner, ttl)
    }
    fn renew<'a>(&'a self, owner: &'a str, ttl: Duration) -> StoreFuture<'a, bool> {
        self.0.renew(owner, ttl)
    }
    fn release<'a>(&'a self, owner: &'a str) -> StoreFuture<'a, ()> {
        self.0.release(owner)
    }
    fn publish<'a>(&'a self, replaces: u64, token: &'a Token) -> StoreFuture<'a, Publish> {
        self.0.publish(replaces, token)
    }
    fn notifications(&self) -> Notifications {
        self.0.notifications()
    }
}
