//! How a `RedisStore` is configured and built.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use sha2::{Digest, Sha256};

use tower_bearer::proof::BindingKey;

use crate::{Inner, Keys, RedisStore, listen, redis_error};
use tower_bearer::store::{Notifier, StoreError};

/// Configures a [`RedisStore`]. Made by [`RedisStore::builder`].
pub struct RedisStoreBuilder {
    url: String,
    account: String,
    namespace: String,
    skew: Duration,
    timeout: Duration,
    #[cfg(feature = "encryption")]
    encryption_key: Option<secrecy::SecretBox<[u8; 32]>>,
    #[cfg(feature = "tls")]
    tls_root: Option<Vec<u8>>,
    binding_key: Option<Arc<dyn BindingKey>>,
}

impl RedisStore {
    /// A builder for a store at `url` (`redis://[user:password@]host[:port][/db]`, or
    /// `rediss://` with the `tls` feature) for the account whose credential is
    /// `credential` (an API key, a client secret).
    ///
    /// The credential is only hashed, to name the keys: replicas with the same credential
    /// share a token; different credentials never meet.
    pub fn builder(url: impl Into<String>, credential: impl AsRef<[u8]>) -> RedisStoreBuilder {
        let digest = Sha256::new()
            .chain_update(b"tower-bearer account\0")
            .chain_update(credential.as_ref())
            .finalize();
        let account = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
        RedisStoreBuilder {
            url: url.into(),
            account,
            namespace: "tower-bearer".into(),
            skew: Duration::from_secs(2),
            timeout: Duration::from_secs(1),
            #[cfg(feature = "encryption")]
            encryption_key: None,
            #[cfg(feature = "tls")]
            tls_root: None,
            binding_key: None,
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

    fn client(&self) -> Result<redis::Client, StoreError> {
        // Not the parser's error as the cause: it may quote the URL, password and all.
        let unusable = |_| StoreError::msg("the redis URL cannot be used");
        #[cfg(feature = "tls")]
        if let Some(root) = &self.tls_root {
            let certificates = redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(root.clone()),
            };
            return redis::Client::build_with_tls(self.url.as_str(), certificates)
                .map_err(unusable);
        }
        redis::Client::open(self.url.as_str()).map_err(unusable)
    }

    /// The store. It connects lazily (and reconnects by itself), so Redis need not be up yet;
    /// until it is, caches refresh on their own.
    ///
    /// Must be called within a tokio runtime: the store listens for publish notifications in
    /// a task of its own, which ends when the last clone of the store is dropped.
    ///
    /// # Errors
    ///
    /// If the URL is not a Redis URL this build can use (`rediss://` needs the `tls`
    /// feature), the namespace contains `{` or `}`, or there is no tokio runtime.
    pub fn build(self) -> Result<RedisStore, StoreError> {
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| StoreError::msg("a RedisStore must be built within a tokio runtime"))?;
        if self.namespace.contains(['{', '}']) {
            return Err(StoreError::msg("the namespace may not contain `{` or `}`"));
        }
        let client = self.client()?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(self.timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_secs(1));
        let connection = ConnectionManager::new_lazy_with_config(client.clone(), config)
            .map_err(redis_error("the redis connection cannot be set up"))?;
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
            client,
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

impl fmt::Debug for RedisStoreBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Not the URL: it may hold a password.
        let mut debug = f.debug_struct("RedisStoreBuilder");
        debug
            .field("namespace", &self.namespace)
            .field("account", &self.account)
            .field("clock_skew", &self.skew)
            .field("timeout", &self.timeout);
        #[cfg(feature = "encryption")]
        debug.field("encrypted", &self.encryption_key.is_some());
        #[cfg(feature = "tls")]
        debug.field("tls_root_certificate", &self.tls_root.is_some());
        debug.finish_non_exhaustive()
    }
}
