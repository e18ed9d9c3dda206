//! How a `RedisStore` is configured and built.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use redis::IntoConnectionInfo;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClientBuilder;
use redis::sentinel::{SentinelClientBuilder, SentinelServerType};
use sha2::{Digest, Sha256};

use tower_bearer::proof::BindingKey;

use crate::connection::{Connection, FollowedMaster, Subscriber, listen};
use crate::{Inner, Keys, RedisStore, redis_error};
use tower_bearer::store::{Notifier, StoreError};

/// Configures a [`RedisStore`]. Made by [`RedisStore::builder`].
pub struct RedisStoreBuilder {
    endpoint: Endpoint,
    account: String,
    namespace: String,
    skew: Duration,
    timeout: Duration,
    #[cfg(feature = "encryption")]
    encryption_key: Option<secrecy::SecretBox<[u8; 32]>>,
    #[cfg(feature = "tls")]
    tls_root: Option<Vec<u8>>,
    binding_key: Option<Arc<dyn BindingKey>>,
    /// The Sentinels' master's own user and password, when they are not the Sentinels'.
    master_auth: Option<(Option<String>, secrecy::SecretString)>,
}

/// Where the store's Redis is.
enum Endpoint {
    Single(String),
    Cluster(Vec<String>),
    Sentinel {
        sentinels: Vec<String>,
        master: String,
    },
}

impl RedisStore {
    /// A builder for a store at `url` (`redis://[user:password@]host[:port][/db]`, or
    /// `rediss://` with the `tls` feature) for the account whose credential is
    /// `credential` (an API key, a client secret).
    ///
    /// The credential is only hashed, to name the keys: replicas with the same credential
    /// share a token; different credentials never meet.
    ///
    /// For a Redis Cluster, see [`RedisStore::cluster`]; for a master that Sentinels watch,
    /// [`RedisStore::sentinel`].
    pub fn builder(url: impl Into<String>, credential: impl AsRef<[u8]>) -> RedisStoreBuilder {
        Self::builder_for(Endpoint::Single(url.into()), credential.as_ref())
    }

    /// A builder for a store on a Redis Cluster (cluster mode enabled: ElastiCache,
    /// Memorystore, `redis-server --cluster-enabled yes`), reached first through `seeds`, the
    /// URLs of some of its nodes (`redis://[user:password@]host:port`, or all `rediss://`
    /// with the `tls` feature); the rest of the cluster is learnt from them.
    ///
    /// The store's keys share one hash tag, so every command and script touches one slot,
    /// and goes to that slot's master; after a failover or a resharding the cluster answers
    /// `MOVED` and the store follows. Notifications use the cluster's ordinary pub/sub
    /// (`PUBLISH` reaches every node), and the store listens on one seed node at a time,
    /// moving to the next when it fails: give more than one seed.
    ///
    /// ```no_run
    /// # fn main() -> Result<(), tower_bearer::store::StoreError> {
    /// # let _rt = tokio::runtime::Runtime::new().unwrap(); let _guard = _rt.enter();
    /// use tower_bearer_redis::RedisStore;
    ///
    /// let api_key = "the account's API key";
    /// let store = RedisStore::cluster(
    ///     ["redis://tokens:password@10.0.0.1:6379", "redis://tokens:password@10.0.0.2:6379"],
    ///     api_key,
    /// )
    /// .namespace("my-service")
    /// .build()?;
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// [`build`](RedisStoreBuilder::build) refuses an empty list, URLs of mixed schemes or
    /// with a database number (a cluster has only database 0).
    pub fn cluster<U: Into<String>>(
        seeds: impl IntoIterator<Item = U>,
        credential: impl AsRef<[u8]>,
    ) -> RedisStoreBuilder {
        let seeds = seeds.into_iter().map(Into::into).collect();
        Self::builder_for(Endpoint::Cluster(seeds), credential.as_ref())
    }

    /// A builder for a store on the master that the Sentinels at `sentinels` (their URLs,
    /// `redis://[user:password@]host:port[/db]`, or all `rediss://` with the `tls` feature)
    /// know as `master`.
    ///
    /// The store asks the Sentinels for the master's address, checks that it is the master
    /// (`ROLE`), and asks again whenever a call to it fails to connect, times out, or is
    /// answered `READONLY` (a demoted master): it follows a failover without a restart.
    /// Until the Sentinels have promoted a replica, calls fail and caches refresh on their
    /// own, as in any outage. Notifications are subscribed to on the master too.
    ///
    /// The URLs' user and password are used both for the Sentinels and for the master (unless
    /// [`master_auth`](RedisStoreBuilder::master_auth) names the master's own), and their
    /// database number (if any) for the master; TLS (`rediss://`), and
    /// `tls_root_certificate` (with the `tls` feature), for both.
    ///
    /// ```no_run
    /// # fn main() -> Result<(), tower_bearer::store::StoreError> {
    /// # let _rt = tokio::runtime::Runtime::new().unwrap(); let _guard = _rt.enter();
    /// use tower_bearer_redis::RedisStore;
    ///
    /// let api_key = "the account's API key";
    /// let store = RedisStore::sentinel(
    ///     ["redis://10.0.0.1:26379", "redis://10.0.0.2:26379", "redis://10.0.0.3:26379"],
    ///     "tokens",
    ///     api_key,
    /// )
    /// .build()?;
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// [`build`](RedisStoreBuilder::build) refuses an empty list or master name, and URLs of
    /// mixed schemes.
    pub fn sentinel<U: Into<String>>(
        sentinels: impl IntoIterator<Item = U>,
        master: impl Into<String>,
        credential: impl AsRef<[u8]>,
    ) -> RedisStoreBuilder {
        let sentinels = sentinels.into_iter().map(Into::into).collect();
        let endpoint = Endpoint::Sentinel {
            sentinels,
            master: master.into(),
        };
        Self::builder_for(endpoint, credential.as_ref())
    }

    fn builder_for(endpoint: Endpoint, credential: &[u8]) -> RedisStoreBuilder {
        let digest = Sha256::new()
            .chain_update(b"tower-bearer account\0")
            .chain_update(credential)
            .finalize();
        let account = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
        RedisStoreBuilder {
            endpoint,
            account,
            namespace: "tower-bearer".into(),
            skew: Duration::from_secs(2),
            timeout: Duration::from_secs(1),
            #[cfg(feature = "encryption")]
            encryption_key: None,
            #[cfg(feature = "tls")]
            tls_root: None,
            binding_key: None,
            master_auth: None,
        }
    }
}

impl RedisStoreBuilder {
    /// The prefix of the key names, so that several services can share a Redis; default
    /// `tower-bearer`. It must not contain `{` or `}` (the keys' hash tag comes after it).
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = namespace.into();
        self
    }

    /// How much earlier than its stored expiry a token is counted as expired on load, to
    /// allow for replicas' clocks disagreeing. Default: 2 s, and never more than a tenth of
    /// the token's lifetime.
    ///
    /// A replica whose clock is behind the publisher's by less than this never uses a token
    /// past its expiry; one whose clock is ahead refreshes a little early, and no harm done.
    pub fn clock_skew(mut self, allowance: Duration) -> Self {
        self.skew = allowance;
        self
    }

    /// How long connecting to Redis, and each answer, may take. Default: 1 s.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Encrypts the stored token with XChaCha20-Poly1305 under `key` (bound to the key name
    /// and the generation). Every replica sharing the token needs the same key; one without it
    /// (or with another) cannot read the stored token, and refreshes on its own, with a
    /// warning.
    ///
    /// Requires the `encryption` feature.
    #[cfg(feature = "encryption")]
    #[cfg_attr(docsrs, doc(cfg(feature = "encryption")))]
    pub fn encryption_key(mut self, key: [u8; 32]) -> Self {
        self.encryption_key = Some(secrecy::SecretBox::new(Box::new(key)));
        self
    }

    /// The key the shared tokens are bound to: a DPoP key (`tower_bearer_oauth2::dpop::DpopKey`),
    /// or any other [`BindingKey`].
    ///
    /// A bound token is useless without its key, so replicas that share bound tokens must
    /// share the key too: load the same one in each (`DpopKey::from_pem`), and give it to the
    /// provider and to this store. The key's [id](BindingKey::id) (a DPoP key's thumbprint) is
    /// part of the store's key names, so replicas with different keys never exchange tokens. A
    /// store without a key refuses to publish or load a bound token, with an error that says
    /// so, and the cache then refreshes on its own.
    pub fn binding_key(mut self, key: impl BindingKey) -> Self {
        self.binding_key = Some(Arc::new(key));
        self
    }

    /// Trusts the certificate authority in `pem` (PEM-encoded) for `rediss://`, in place of
    /// the webpki roots: for a Redis with a certificate from a private CA.
    ///
    /// Requires the `tls` feature.
    #[cfg(feature = "tls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
    pub fn tls_root_certificate(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.tls_root = Some(pem.into());
        self
    }

    /// A client for one node at `url`, with the CA to trust if one was given.
    /// For [Sentinels](RedisStore::sentinel) whose master has a user and password of its own:
    /// the Sentinels' URLs then carry only theirs (or none), and the master is sent
    /// `AUTH [username] password`.
    ///
    /// # Errors
    ///
    /// [`build`](Self::build) refuses it, as a misconfiguration, for a store that is not on
    /// Sentinels: its URLs carry the user and password.
    pub fn master_auth(mut self, username: Option<&str>, password: impl Into<String>) -> Self {
        let password = secrecy::SecretString::from(password.into());
        self.master_auth = Some((username.map(str::to_owned), password));
        self
    }

    fn client(&self, url: &str) -> Result<redis::Client, StoreError> {
        #[cfg(feature = "tls")]
        if let Some(root) = &self.tls_root {
            let certificates = redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(root.clone()),
            };
            return redis::Client::build_with_tls(url, certificates).map_err(unusable);
        }
        redis::Client::open(url).map_err(unusable)
    }

    fn manager_config(&self) -> ConnectionManagerConfig {
        ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(self.timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_secs(1))
    }

    /// The connection commands are sent on, and where notifications are subscribed to.
    fn connect(&self) -> Result<(Connection, Subscriber), StoreError> {
        if self.master_auth.is_some() && !matches!(self.endpoint, Endpoint::Sentinel { .. }) {
            return Err(StoreError::misconfigured(
                "master_auth is for a store on sentinels: put the user and password in the URL",
            ));
        }
        match &self.endpoint {
            Endpoint::Single(url) => self.single(url),
            Endpoint::Cluster(seeds) => self.cluster(seeds),
            Endpoint::Sentinel { sentinels, master } => self.sentinel(sentinels, master),
        }
    }

    fn single(&self, url: &str) -> Result<(Connection, Subscriber), StoreError> {
        let client = self.client(url)?;
        let connection =
            ConnectionManager::new_lazy_with_config(client.clone(), self.manager_config())
                .map_err(redis_error("the redis connection cannot be set up"))?;
        Ok((
            Connection::Single(connection),
            Subscriber::Nodes(vec![client]),
        ))
    }

    fn cluster(&self, seeds: &[String]) -> Result<(Connection, Subscriber), StoreError> {
        let tls = same_scheme(seeds, "a redis cluster needs at least one seed URL")?;
        for seed in seeds {
            let info = seed.as_str().into_connection_info().map_err(unusable)?;
            if info.redis_settings().db() != 0 {
                return Err(StoreError::misconfigured(
                    "a redis cluster has only database 0: no /db in its URLs",
                ));
            }
        }
        #[cfg_attr(not(feature = "tls"), allow(unused_mut))]
        let mut cluster = ClusterClientBuilder::new(seeds.iter().map(String::as_str))
            .connection_timeout(self.timeout)
            .response_timeout(self.timeout)
            // A few, quick: enough to follow `MOVED` and a failover in progress, few
            // enough that a cluster that is down fails the call rather than hold it.
            .retries(3)
            .min_retry_wait(10)
            .max_retry_wait(self.timeout.as_millis() as u64);
        #[cfg(feature = "tls")]
        if tls {
            cluster = cluster.tls(redis::TlsMode::Secure);
            if let Some(root) = &self.tls_root {
                cluster = cluster.certs(redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(root.clone()),
                });
            }
        }
        #[cfg(not(feature = "tls"))]
        let _ = tls;
        let client = cluster.build().map_err(|_| {
            StoreError::misconfigured(
                "the redis cluster URLs cannot be used (are their users and passwords the same?)",
            )
        })?;
        let connection = client.get_pending_async_connection_with_config(
            redis::cluster::ClusterConfig::new()
                .set_connection_timeout(self.timeout)
                .set_response_timeout(self.timeout),
        );
        let seeds = seeds
            .iter()
            .map(|seed| self.client(seed))
            .collect::<Result<_, _>>()?;
        Ok((Connection::Cluster(connection), Subscriber::Nodes(seeds)))
    }

    fn sentinel(
        &self,
        sentinels: &[String],
        master: &str,
    ) -> Result<(Connection, Subscriber), StoreError> {
        let tls = same_scheme(
            sentinels,
            "a sentinel store needs at least one sentinel URL",
        )?;
        if master.is_empty() {
            return Err(StoreError::misconfigured(
                "a sentinel store needs the master's name",
            ));
        }
        let infos = sentinels
            .iter()
            .map(|url| url.as_str().into_connection_info().map_err(unusable))
            .collect::<Result<Vec<_>, _>>()?;
        let first = infos[0].redis_settings().clone();
        let mut builder = SentinelClientBuilder::new(
            infos.iter().map(|info| info.addr().clone()),
            master,
            SentinelServerType::Master,
        )
        .map_err(unusable)?
        .set_client_to_redis_db(first.db());
        if let Some(username) = first.username() {
            builder = builder.set_client_to_sentinel_username(username);
        }
        if let Some(password) = first.password() {
            builder = builder.set_client_to_sentinel_password(password);
        }
        let (username, password) = match &self.master_auth {
            Some((username, password)) => {
                use secrecy::ExposeSecret;
                (username.as_deref(), Some(password.expose_secret()))
            }
            None => (first.username(), first.password()),
        };
        if let Some(username) = username {
            builder = builder.set_client_to_redis_username(username);
        }
        if let Some(password) = password {
            builder = builder.set_client_to_redis_password(password);
        }
        if tls {
            builder = builder.set_client_to_redis_tls_mode(redis::TlsMode::Secure);
        }
        #[cfg(feature = "tls")]
        if let (true, Some(root)) = (tls, &self.tls_root) {
            let certificates = || redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(root.clone()),
            };
            builder = builder
                .set_client_to_redis_certificates(certificates())
                .set_client_to_sentinel_certificates(certificates());
        }
        let sentinels = builder.build().map_err(unusable)?;
        let master = FollowedMaster::new(sentinels, self.manager_config(), self.timeout);
        Ok((
            Connection::Sentinel(master.clone()),
            Subscriber::Sentinel(master),
        ))
    }

    /// The store. It connects lazily (and reconnects by itself), so Redis need not be up yet;
    /// until it is, caches refresh on their own.
    ///
    /// Must be called within a tokio runtime: the store listens for publish notifications in
    /// a task of its own, which ends when the last clone of the store is dropped.
    ///
    /// # Errors
    ///
    /// If a URL is not a Redis URL this build can use (`rediss://` needs the `tls`
    /// feature), the namespace contains `{` or `}`, or there is no tokio runtime; for a
    /// Cluster or Sentinels, a [misconfiguration](StoreError::is_misconfigured) if the list
    /// of URLs is empty or mixes `redis://` and `rediss://`, a Cluster URL names a database,
    /// the Sentinels' master has no name, or [`master_auth`](Self::master_auth) is given
    /// without Sentinels.
    pub fn build(self) -> Result<RedisStore, StoreError> {
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| StoreError::msg("a RedisStore must be built within a tokio runtime"))?;
        if self.namespace.contains(['{', '}']) {
            return Err(StoreError::msg("the namespace may not contain `{` or `}`"));
        }
        let (connection, subscriber) = self.connect()?;
        let mut prefix = format!("{}:{{{}}}", self.namespace, self.account);
        // Tokens bound to another key are of no use here: each key has keys of its own.
        if let Some(key) = &self.binding_key {
            prefix = format!("{prefix}:key-{}", key.id());
        }
        let keys = Keys {
            token: format!("{prefix}:token"),
            lease: format!("{prefix}:lease"),
            failure: format!("{prefix}:failure"),
            channel: format!("{prefix}:published"),
        };
        let notifier = Notifier::new();
        let listener = runtime.spawn(listen(
            subscriber,
            keys.channel.clone(),
            notifier.clone(),
            self.timeout,
        ));
        #[cfg(feature = "encryption")]
        let cipher = self.encryption_key.map(|key| {
            use chacha20poly1305::KeyInit;
            use secrecy::ExposeSecret;
            chacha20poly1305::XChaCha20Poly1305::new(key.expose_secret().into())
        });
        Ok(RedisStore {
            inner: Arc::new(Inner {
                connection,
                keys,
                skew: self.skew,
                notifier,
                listener,
                #[cfg(feature = "encryption")]
                cipher,
                binding_key: self.binding_key,
            }),
        })
    }
}

/// Not the parser's error as the cause: it may quote the URL, password and all.
fn unusable(_: redis::RedisError) -> StoreError {
    StoreError::msg("the redis URL cannot be used")
}

/// Whether the URLs are all `rediss://` (TLS) rather than all `redis://`; an error if they
/// are none, or mixed.
fn same_scheme(urls: &[String], none: &'static str) -> Result<bool, StoreError> {
    let tls = |url: &String| url.starts_with("rediss://");
    match urls.first() {
        None => Err(StoreError::misconfigured(none)),
        Some(first) if urls.iter().any(|url| tls(url) != tls(first)) => Err(
            StoreError::misconfigured("the redis URLs mix `redis://` and `rediss://`"),
        ),
        Some(first) => Ok(tls(first)),
    }
}

impl fmt::Debug for RedisStoreBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Not the URL: it may hold a password.
        let mut debug = f.debug_struct("RedisStoreBuilder");
        let mode = match &self.endpoint {
            Endpoint::Single(_) => "single",
            Endpoint::Cluster(_) => "cluster",
            Endpoint::Sentinel { .. } => "sentinel",
        };
        debug
            .field("mode", &mode)
            .field("namespace", &self.namespace)
            .field("account", &self.account)
            .field("clock_skew", &self.skew)
            .field("timeout", &self.timeout);
        #[cfg(feature = "encryption")]
        debug.field("encrypted", &self.encryption_key.is_some());
        #[cfg(feature = "tls")]
        debug.field("tls_root_certificate", &self.tls_root.is_some());
        debug.field("master_auth", &self.master_auth.is_some());
        debug.finish_non_exhaustive()
    }
}
