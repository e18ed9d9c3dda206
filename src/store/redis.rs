//! A token store on Redis.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::StreamExt;
use redis::Script;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use sha2::{Digest, Sha256};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use zeroize::Zeroizing;

use super::{Notifications, Notifier, Publish, SharedToken, StoreError, StoreFuture, TokenStore};
use crate::{Token, TokenType};

/// A [`TokenStore`] on Redis: replicas with the same credential share one token and one
/// refresh.
///
/// Requires the `redis` cargo feature (`redis-tls` for `rediss://` URLs, `redis-encryption`
/// for [`encryption_key`](RedisStoreBuilder::encryption_key)).
///
/// # What it keeps in Redis
///
/// For one account (one credential), under a namespace (default `tower-bearer`):
///
/// | key | holds |
/// | --- | --- |
/// | `<namespace>:{<hash>}:token` | a hash: `gen` (the generation) and `val` (the token: access token, refresh token, expiry and issue time as Unix milliseconds); expires an hour after the access token |
/// | `<namespace>:{<hash>}:lease` | the lease holder's id, set with `SET NX PX`: it ends by itself |
/// | `<namespace>:{<hash>}:published` | a pub/sub channel: a message for each publish |
///
/// `<hash>` is the first 128 bits of SHA-256 over the credential, in hex: the key names never
/// contain the credential, and never contain anything from which it could be recovered short
/// of guessing it. Both keys share the `{<hash>}` hash tag, so they live in one slot on a
/// Redis Cluster (though this store connects to a single endpoint: it has no cluster or
/// Sentinel client mode).
///
/// Publishing is one Lua script that checks the generation and sets the token only if it is
/// the one the new token replaces, then publishes the notification. Releasing a lease is a
/// script too, which deletes it only if this replica still holds it.
///
/// # Tokens at rest
///
/// The token key holds a live access token and refresh token: anyone who can read it can act
/// as the account until they expire. Treat the Redis it lives in as you treat the credential:
/// authentication (an ACL user and password in the URL), TLS (`rediss://`) across untrusted
/// networks, no dumps left lying around. With the `redis-encryption` feature,
/// [`encryption_key`](RedisStoreBuilder::encryption_key) encrypts the stored value with
/// XChaCha20-Poly1305 under a key you supply (every replica needs the same key); the key names
/// and the generation stay in the clear. Off by default.
///
/// # Clocks
///
/// Expiry is stored as wall-clock time (Unix milliseconds) and converted to this process's
/// monotonic clock on load, less the [clock-skew allowance](RedisStoreBuilder::clock_skew)
/// (default 2 s, at most a tenth of the token's lifetime): a replica whose clock is up to that much behind the publisher's still
/// stops using the token before it expires. A replica whose clock is ahead only refreshes a
/// little early. Keep replicas' clocks synchronised (NTP) to well within the allowance.
///
/// # Example
///
/// ```no_run
/// use tower_bearer::apivideo::ApiVideo;
/// use tower_bearer::store::RedisStore;
/// use tower_bearer::{BearerAuthLayer, TokenCache};
/// # use bytes::Bytes;
/// # use http_body_util::Full;
/// # use hyper_util::client::legacy::Client;
/// # use hyper_util::rt::TokioExecutor;
/// # use tower_bearer::ReplayBody;
///
/// # #[tokio::main]
/// # async fn main() -> Result<(), tower::BoxError> {
/// # let client: Client<_, ReplayBody<Full<Bytes>>> = Client::builder(TokioExecutor::new()).build_http();
/// let api_key = std::env::var("APIVIDEO_API_KEY")?;
/// // One key per account, named from a hash of the API key, never the key itself.
/// let store = RedisStore::builder("redis://tokens:password@redis.internal:6379/", &api_key)
///     .namespace("my-service")
///     .build()?;
/// let api = ApiVideo::production(api_key, client.clone());
/// let scope = api.scope();
/// let cache = TokenCache::builder(api).store(store).build();
/// let layer = BearerAuthLayer::from_cache(cache).scope(scope);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct RedisStore {
    inner: Arc<Inner>,
}

struct Inner {
    connection: ConnectionManager,
    keys: Keys,
    skew: Duration,
    notifier: Notifier,
    listener: JoinHandle<()>,
    #[cfg(feature = "redis-encryption")]
    cipher: Option<chacha20poly1305::XChaCha20Poly1305>,
    /// The key DPoP tokens in this store are bound to.
    #[cfg(feature = "dpop")]
    dpop_key: Option<crate::dpop::DpopKey>,
}

#[derive(Clone, Debug)]
struct Keys {
    token: String,
    lease: String,
    channel: String,
}

/// Configures a [`RedisStore`]. Made by [`RedisStore::builder`].
pub struct RedisStoreBuilder {
    url: String,
    account: String,
    namespace: String,
    skew: Duration,
    timeout: Duration,
    #[cfg(feature = "redis-encryption")]
    encryption_key: Option<secrecy::SecretBox<[u8; 32]>>,
    #[cfg(feature = "redis-tls")]
    tls_root: Option<Vec<u8>>,
    #[cfg(feature = "dpop")]
    dpop_key: Option<crate::dpop::DpopKey>,
}

/// A value prefix: the stored value is in the clear.
const PLAIN: &[u8] = b"p1";
/// A value prefix: the stored value is a nonce and an XChaCha20-Poly1305 ciphertext.
const SEALED: &[u8] = b"x1";
/// How long the token key outlives its access token: the refresh token may still be good.
const KEEP_AFTER_EXPIRY: Duration = Duration::from_secs(3600);

impl RedisStore {
    /// A builder for a store at `url` (`redis://[user:password@]host[:port][/db]`, or
    /// `rediss://` with the `redis-tls` feature) for the account whose credential is
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
            #[cfg(feature = "redis-encryption")]
            encryption_key: None,
            #[cfg(feature = "redis-tls")]
            tls_root: None,
            #[cfg(feature = "dpop")]
            dpop_key: None,
        }
    }

    /// The name of the key holding the token (`<namespace>:{<hash>}:token`), for operators.
    pub fn token_key(&self) -> &str {
        &self.inner.keys.token
    }

    fn connection(&self) -> ConnectionManager {
        self.inner.connection.clone()
    }

    fn encode(&self, token: &Token, generation: u64) -> Result<Vec<u8>, StoreError> {
        let now = wall_ms();
        let expires = token.expiry().map_or(0, |at| {
            let left = at.saturating_duration_since(Instant::now());
            now.saturating_add(left.as_millis() as u64).max(1)
        });
        let access = token.expose_access_token().as_bytes();
        let refresh = token.expose_refresh_token().map(str::as_bytes);
        let mut plain = Vec::with_capacity(32 + access.len() + refresh.map_or(0, |r| r.len()));
        plain.extend_from_slice(&expires.to_be_bytes());
        plain.extend_from_slice(&now.to_be_bytes());
        plain.extend_from_slice(&(access.len() as u32).to_be_bytes());
        plain.extend_from_slice(access);
        match refresh {
            Some(refresh) => {
                plain.extend_from_slice(&(refresh.len() as u32).to_be_bytes());
                plain.extend_from_slice(refresh);
            }
            None => plain.extend_from_slice(&u32::MAX.to_be_bytes()),
        }
        // Last, so that a value written before token types were stored reads as a bearer
        // token.
        plain.push(match token.token_type() {
            TokenType::Bearer => BEARER,
            _ => {
                self.check_dpop_key(token)?;
                DPOP
            }
        });
        self.seal(plain, generation)
    }

    /// A DPoP token is only worth sharing with replicas that hold its key: the store must
    /// have been given that key.
    fn check_dpop_key(&self, token: &Token) -> Result<(), StoreError> {
        #[cfg(feature = "dpop")]
        {
            let ours = self.inner.dpop_key.as_ref().map(|key| key.thumbprint());
            let its = token.dpop_key().map(|key| key.thumbprint());
            if ours.is_some() && ours == its {
                return Ok(());
            }
        }
        let _ = token;
        Err(StoreError::misconfigured(
            "a DPoP token is bound to a key this store was not given: build the RedisStore \
             with .dpop_key(&key), the same key in every replica",
        ))
    }

    #[cfg(feature = "redis-encryption")]
    fn seal(&self, plain: Vec<u8>, generation: u64) -> Result<Vec<u8>, StoreError> {
        use chacha20poly1305::aead::{Aead, AeadCore, OsRng, Payload};
        let mut plain = Zeroizing::new(plain);
        let Some(cipher) = &self.inner.cipher else {
            let mut out = PLAIN.to_vec();
            out.append(&mut plain);
            return Ok(out);
        };
        let nonce = chacha20poly1305::XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let aad = self.aad(generation);
        let sealed = cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: &plain,
                    aad: &aad,
                },
            )
            .map_err(|_| StoreError::msg("the token could not be encrypted"))?;
        let mut out = SEALED.to_vec();
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    #[cfg(not(feature = "redis-encryption"))]
    fn seal(&self, mut plain: Vec<u8>, _generation: u64) -> Result<Vec<u8>, StoreError> {
        let mut out = PLAIN.to_vec();
        out.append(&mut plain);
        Ok(out)
    }

    /// Binds a sealed value to its key and generation: it cannot be replayed under another
    /// account or as another generation.
    #[cfg(feature = "redis-encryption")]
    fn aad(&self, generation: u64) -> Vec<u8> {
        let mut aad = self.inner.keys.token.as_bytes().to_vec();
        aad.extend_from_slice(&generation.to_be_bytes());
        aad
    }

    #[cfg(feature = "redis-encryption")]
    fn open(&self, stored: &[u8], generation: u64) -> Result<Zeroizing<Vec<u8>>, StoreError> {
        use chacha20poly1305::aead::{Aead, Payload};
        match (&self.inner.cipher, stored.split_at_checked(2)) {
            (None, Some((PLAIN, plain))) => Ok(Zeroizing::new(plain.to_vec())),
            (Some(cipher), Some((SEALED, sealed))) if sealed.len() > 24 => {
                let (nonce, ciphertext) = sealed.split_at(24);
                cipher
                    .decrypt(
                        nonce.into(),
                        Payload {
                            msg: ciphertext,
                            aad: &self.aad(generation),
                        },
                    )
                    .map(Zeroizing::new)
                    .map_err(|_| {
                        StoreError::msg(
                            "the stored token could not be decrypted: do all replicas have the same encryption key?",
                        )
                    })
            }
            (Some(_), Some((PLAIN, _))) => Err(StoreError::msg(
                "the stored token is not encrypted, but this replica has an encryption key",
            )),
            (None, Some((SEALED, _))) => Err(StoreError::msg(
                "the stored token is encrypted, but this replica has no encryption key",
            )),
            _ => Err(StoreError::msg("the stored token is in an unknown format")),
        }
    }

    #[cfg(not(feature = "redis-encryption"))]
    fn open(&self, stored: &[u8], _generation: u64) -> Result<Zeroizing<Vec<u8>>, StoreError> {
        match stored.split_at_checked(2) {
            Some((PLAIN, plain)) => Ok(Zeroizing::new(plain.to_vec())),
            Some((SEALED, _)) => Err(StoreError::msg(
                "the stored token is encrypted, and this build has no `redis-encryption` feature",
            )),
            _ => Err(StoreError::msg("the stored token is in an unknown format")),
        }
    }

    fn decode(&self, stored: &[u8], generation: u64) -> Result<SharedToken, StoreError> {
        let plain = self.open(stored, generation)?;
        let malformed = || StoreError::msg("the stored token is malformed");
        let mut rest = &plain[..];
        let mut take = |n: usize| -> Result<&[u8], StoreError> {
            let (head, tail) = rest.split_at_checked(n).ok_or_else(malformed)?;
            rest = tail;
            Ok(head)
        };
        let u64_at = |b: &[u8]| u64::from_be_bytes(b.try_into().expect("8 bytes"));
        let u32_at = |b: &[u8]| u32::from_be_bytes(b.try_into().expect("4 bytes"));
        let expires = u64_at(take(8)?);
        let issued = u64_at(take(8)?);
        let access_len = u32_at(take(4)?) as usize;
        let access = std::str::from_utf8(take(access_len)?).map_err(|_| malformed())?;
        let refresh_len = u32_at(take(4)?);
        let refresh = match refresh_len {
            u32::MAX => None,
            len => Some(std::str::from_utf8(take(len as usize)?).map_err(|_| malformed())?),
        };
        let mut token = match rest.first() {
            None | Some(&BEARER) => Token::bearer(access).map_err(|_| malformed())?,
            Some(&DPOP) => self.dpop_token(access)?,
            Some(_) => return Err(malformed()),
        };
        if let Some(refresh) = refresh {
            token = token.with_refresh_token(refresh);
        }
        let now = Instant::now();
        let wall = wall_ms();
        if expires != 0 {
            // Less the allowance (at most a tenth of the lifetime, so that a short-lived token
            // is still worth sharing): a clock behind the publisher's must not overrun it.
            let lifetime = Duration::from_millis(expires.saturating_sub(issued));
            let skew = self.inner.skew.min(lifetime / 10);
            let left = Duration::from_millis(expires.saturating_sub(wall)).saturating_sub(skew);
            token = token.expires_at(now + left);
        }
        let age = Duration::from_millis(wall.saturating_sub(issued));
        let obtained = now.checked_sub(age).unwrap_or(now);
        Ok(SharedToken {
            token,
            generation,
            obtained,
        })
    }
}

impl RedisStore {
    /// A stored DPoP token, bound to this store's key.
    fn dpop_token(&self, access: &str) -> Result<Token, StoreError> {
        #[cfg(feature = "dpop")]
        if let Some(key) = &self.inner.dpop_key {
            return Token::dpop(access, key)
                .map_err(|_| StoreError::msg("the stored token is malformed"));
        }
        let _ = access;
        Err(StoreError::misconfigured(
            "the stored token is a DPoP token, and this store has no DPoP key: build the \
             RedisStore with .dpop_key(&key), the same key in every replica",
        ))
    }
}

/// The last byte of a stored value: the token's type.
const BEARER: u8 = 0;
const DPOP: u8 = 1;

fn wall_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A Redis error as the cause: its message is the server's, about the command (never its
/// arguments, for the commands this store sends), or the I/O error.
fn redis_error(message: &'static str) -> impl FnOnce(redis::RedisError) -> StoreError {
    move |err| StoreError::new(message, err)
}

static PUBLISH: &str = r"
local current = tonumber(redis.call('HGET', KEYS[1], 'gen') or '0')
if current ~= tonumber(ARGV[1]) then
  return {0, current}
end
local generation = current + 1
redis.call('HSET', KEYS[1], 'gen', generation, 'val', ARGV[2])
if tonumber(ARGV[3]) > 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
else
  redis.call('PERSIST', KEYS[1])
end
redis.call('PUBLISH', ARGV[4], generation)
return {1, generation}
";

static RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
";

static RENEW: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
";

impl TokenStore for RedisStore {
    fn load(&self) -> StoreFuture<'_, Option<SharedToken>> {
        Box::pin(async move {
            let mut connection = self.connection();
            let (generation, value): (Option<u64>, Option<Vec<u8>>) = redis::cmd("HMGET")
                .arg(&self.inner.keys.token)
                .arg("gen")
                .arg("val")
                .query_async(&mut connection)
                .await
                .map_err(redis_error("loading the token from redis failed"))?;
            match (generation, value) {
                (Some(generation), Some(value)) => self.decode(&value, generation).map(Some),
                _ => Ok(None),
            }
        })
    }

    fn try_lease<'a>(&'a self, owner: &'a str, ttl: Duration) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            let mut connection = self.connection();
            let set: Option<String> = redis::cmd("SET")
                .arg(&self.inner.keys.lease)
                .arg(owner)
                .arg("NX")
                .arg("PX")
                .arg(ttl.as_millis().max(1) as u64)
                .query_async(&mut connection)
                .await
                .map_err(redis_error("taking the refresh lease in redis failed"))?;
            Ok(set.is_some())
        })
    }

    fn renew<'a>(&'a self, owner: &'a str, ttl: Duration) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            let mut connection = self.connection();
            let renewed: i64 = Script::new(RENEW)
                .key(&self.inner.keys.lease)
                .arg(owner)
                .arg(ttl.as_millis().max(1) as u64)
                .invoke_async(&mut connection)
                .await
                .map_err(redis_error("renewing the refresh lease in redis failed"))?;
            Ok(renewed == 1)
        })
    }

    fn release<'a>(&'a self, owner: &'a str) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let mut connection = self.connection();
            let _: i64 = Script::new(RELEASE)
                .key(&self.inner.keys.lease)
                .arg(owner)
                .invoke_async(&mut connection)
                .await
                .map_err(redis_error("releasing the refresh lease in redis failed"))?;
            Ok(())
        })
    }

    fn publish<'a>(&'a self, replaces: u64, token: &'a Token) -> StoreFuture<'a, Publish> {
        Box::pin(async move {
            let value = Zeroizing::new(self.encode(token, replaces + 1)?);
            let keep = token.expiry().map_or(0, |at| {
                let left = at.saturating_duration_since(Instant::now());
                (left + KEEP_AFTER_EXPIRY).as_millis() as u64
            });
            let mut connection = self.connection();
            let (published, generation): (i64, u64) = Script::new(PUBLISH)
                .key(&self.inner.keys.token)
                .arg(replaces)
                .arg(&value[..])
                .arg(keep)
                .arg(&self.inner.keys.channel)
                .invoke_async(&mut connection)
                .await
                .map_err(redis_error("publishing the token to redis failed"))?;
            Ok(if published == 1 {
                Publish::Published { generation }
            } else {
                Publish::Refused {
                    current: generation,
                }
            })
        })
    }

    fn notifications(&self) -> Notifications {
        self.inner.notifier.subscribe()
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.listener.abort();
    }
}

/// Listens on the publish channel, reconnecting after a failure; each message, and each
/// (re)subscription (something may have been published while it was not listening), wakes
/// the waiters.
async fn listen(client: redis::Client, channel: String, notifier: Notifier, retry: Duration) {
    loop {
        let subscribed = async {
            let mut pubsub = client.get_async_pubsub().await.ok()?;
            pubsub.subscribe(&channel).await.ok()?;
            Some(pubsub)
        };
        if let Ok(Some(pubsub)) = tokio::time::timeout(retry, subscribed).await {
            notifier.notify();
            let mut messages = pubsub.into_on_message();
            while messages.next().await.is_some() {
                notifier.notify();
            }
        }
        tokio::time::sleep(retry).await;
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
    /// Requires the `redis-encryption` feature.
    #[cfg(feature = "redis-encryption")]
    #[cfg_attr(docsrs, doc(cfg(feature = "redis-encryption")))]
    pub fn encryption_key(mut self, key: [u8; 32]) -> Self {
        self.encryption_key = Some(secrecy::SecretBox::new(Box::new(key)));
        self
    }

    /// The DPoP key the shared tokens are bound to (feature `dpop`).
    ///
    /// A DPoP token is useless without its key, so replicas that share DPoP tokens must share
    /// the key too: load the same one in each (`DpopKey::from_pem`), and give it to the
    /// provider and to this store. The key's thumbprint is part of the store's key names, so
    /// replicas with different keys never exchange tokens. A store without a key refuses to
    /// publish or load a DPoP token, with an error that says so, and the cache then refreshes
    /// on its own.
    #[cfg(feature = "dpop")]
    pub fn dpop_key(mut self, key: &crate::dpop::DpopKey) -> Self {
        self.dpop_key = Some(key.clone());
        self
    }

    /// Trusts the certificate authority in `pem` (PEM-encoded) for `rediss://`, in place of
    /// the webpki roots: for a Redis with a certificate from a private CA.
    ///
    /// Requires the `redis-tls` feature.
    #[cfg(feature = "redis-tls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "redis-tls")))]
    pub fn tls_root_certificate(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.tls_root = Some(pem.into());
        self
    }

    fn client(&self) -> Result<redis::Client, StoreError> {
        // Not the parser's error as the cause: it may quote the URL, password and all.
        let unusable = |_| StoreError::msg("the redis URL cannot be used");
        #[cfg(feature = "redis-tls")]
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
    /// If the URL is not a Redis URL this build can use (`rediss://` needs the `redis-tls`
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
        #[allow(unused_mut)]
        let mut prefix = format!("{}:{{{}}}", self.namespace, self.account);
        // Tokens bound to another key are of no use here: each key has keys of its own.
        #[cfg(feature = "dpop")]
        if let Some(key) = &self.dpop_key {
            prefix = format!("{prefix}:jkt-{}", key.thumbprint());
        }
        let keys = Keys {
            token: format!("{prefix}:token"),
            lease: format!("{prefix}:lease"),
            channel: format!("{prefix}:published"),
        };
        let notifier = Notifier::new();
        let listener = runtime.spawn(listen(
            client,
            keys.channel.clone(),
            notifier.clone(),
            self.timeout,
        ));
        #[cfg(feature = "redis-encryption")]
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
                #[cfg(feature = "redis-encryption")]
                cipher,
                #[cfg(feature = "dpop")]
                dpop_key: self.dpop_key,
            }),
        })
    }
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut debug = f.debug_struct("RedisStore");
        debug
            .field("token_key", &self.inner.keys.token)
            .field("clock_skew", &self.inner.skew);
        #[cfg(feature = "redis-encryption")]
        debug.field("encrypted", &self.inner.cipher.is_some());
        debug.finish_non_exhaustive()
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
        #[cfg(feature = "redis-encryption")]
        debug.field("encrypted", &self.encryption_key.is_some());
        #[cfg(feature = "redis-tls")]
        debug.field("tls_root_certificate", &self.tls_root.is_some());
        debug.finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A store for a Redis that is never reached: building one does not connect.
    fn store(skew: Duration) -> RedisStore {
        RedisStore::builder("redis://127.0.0.1:1/", "the-api-key")
            .namespace("ns")
            .clock_skew(skew)
            .build()
            .unwrap()
    }

    #[tokio::test]
    async fn keys_are_named_from_a_hash_and_share_a_hash_tag() {
        let store = store(Duration::from_secs(2));
        let keys = &store.inner.keys;
        assert!(keys.token.starts_with("ns:{") && keys.token.ends_with("}:token"));
        let tag = |key: &str| key[key.find('{').unwrap()..=key.find('}').unwrap()].to_owned();
        assert_eq!(tag(&keys.token), tag(&keys.lease));
        assert_eq!(tag(&keys.token).len(), 2 + 32);
        assert!(!format!("{keys:?}{store:?}").contains("the-api-key"));
        let other = RedisStore::builder("redis://127.0.0.1:1/", "another-key")
            .namespace("ns")
            .build()
            .unwrap();
        assert_ne!(other.token_key(), store.token_key());
    }

    #[tokio::test]
    async fn a_stored_token_reads_back_less_the_skew_allowance() {
        let store = store(Duration::from_secs(2));
        let hour = Token::bearer("access")
            .unwrap()
            .expires_in(Duration::from_secs(3600))
            .with_refresh_token("refresh");
        let value = store.encode(&hour, 1).unwrap();
        assert!(!value.is_empty());
        let back = store.decode(&value, 1).unwrap();
        assert_eq!(back.token.expose_access_token(), "access");
        assert_eq!(back.token.expose_refresh_token().unwrap(), "refresh");
        let left = back.token.expiry().unwrap() - Instant::now();
        assert!(left <= Duration::from_secs(3598), "{left:?}");
        assert!(left > Duration::from_secs(3597), "{left:?}");

        // A 2 s token keeps 9/10 of its life: the allowance is at most a tenth of it.
        let short = Token::bearer("short")
            .unwrap()
            .expires_in(Duration::from_secs(2));
        let back = store.decode(&store.encode(&short, 1).unwrap(), 1).unwrap();
        let left = back.token.expiry().unwrap() - Instant::now();
        assert!(left <= Duration::from_millis(1800), "{left:?}");
        assert!(left > Duration::from_millis(1700), "{left:?}");
        assert!(back.token.expose_refresh_token().is_none());

        // No expiry stays no expiry.
        let forever = Token::bearer("forever").unwrap();
        let back = store
            .decode(&store.encode(&forever, 1).unwrap(), 1)
            .unwrap();
        assert_eq!(back.token.expiry(), None);
    }

    #[tokio::test]
    async fn a_malformed_value_is_an_error_not_a_panic() {
        let store = store(Duration::from_secs(2));
        for value in [&b""[..], b"p1", b"p1\0\0\0", b"zz-garbage", b"x1short"] {
            assert!(store.decode(value, 1).is_err(), "{value:?}");
        }
        let mut truncated = store.encode(&Token::bearer("abc").unwrap(), 1).unwrap();
        // Into the refresh token's length (the last byte, the token's type, may be absent).
        truncated.truncate(truncated.len() - 2);
        assert!(store.decode(&truncated, 1).is_err());
        let mut unknown_type = store.encode(&Token::bearer("abc").unwrap(), 1).unwrap();
        *unknown_type.last_mut().unwrap() = 7;
        assert!(store.decode(&unknown_type, 1).is_err());
    }

    #[tokio::test]
    async fn a_value_stored_before_token_types_reads_as_a_bearer_token() {
        let store = store(Duration::from_secs(2));
        let mut old = store.encode(&Token::bearer("old").unwrap(), 1).unwrap();
        old.pop();
        let back = store.decode(&old, 1).unwrap();
        assert_eq!(back.token.authorization(), "Bearer old");
    }

    #[tokio::test]
    async fn a_dpop_token_needs_a_store_with_its_key() {
        let store = store(Duration::from_secs(2));
        #[cfg(feature = "dpop")]
        {
            use crate::dpop::DpopKey;
            use crate::jose::Algorithm;

            let key = DpopKey::generate(Algorithm::Es256).unwrap();
            let token = Token::dpop("bound", &key).unwrap();
            let error = store.encode(&token, 1).unwrap_err();
            assert!(error.is_misconfigured(), "{error}");

            let with_key = RedisStore::builder("redis://127.0.0.1:1/", "the-api-key")
                .namespace("ns")
                .dpop_key(&key)
                .build()
                .unwrap();
            // The key's thumbprint names the keys, inside the shared hash tag's slot.
            assert!(
                with_key
                    .token_key()
                    .ends_with(&format!("}}:jkt-{}:token", key.thumbprint()))
            );
            assert_ne!(with_key.token_key(), store.token_key());
            let value = with_key.encode(&token, 1).unwrap();
            let back = with_key.decode(&value, 1).unwrap();
            assert_eq!(back.token.authorization(), "DPoP bound");
            assert_eq!(
                back.token.dpop_key().unwrap().thumbprint(),
                key.thumbprint()
            );
            assert!(store.decode(&value, 1).unwrap_err().is_misconfigured());

            let other = DpopKey::generate(Algorithm::Es256).unwrap();
            let foreign = Token::dpop("foreign", &other).unwrap();
            assert!(with_key.encode(&foreign, 1).unwrap_err().is_misconfigured());
        }
        // A DPoP token read by a build without the `dpop` feature is refused, not sent as a
        // bearer token.
        let mut value = store.encode(&Token::bearer("x").unwrap(), 1).unwrap();
        *value.last_mut().unwrap() = DPOP;
        #[cfg(not(feature = "dpop"))]
        assert!(store.decode(&value, 1).unwrap_err().is_misconfigured());
        let _ = value;
    }

    #[test]
    fn building_outside_a_runtime_is_an_error() {
        let error = RedisStore::builder("redis://127.0.0.1:1/", "k")
            .build()
            .unwrap_err();
        assert!(error.to_string().contains("tokio runtime"), "{error}");
    }
}
