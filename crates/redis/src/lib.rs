//! A [`TokenStore`] on Redis for `tower-bearer`: replicas of a service that share a credential
//! share one token and one refresh. See [`RedisStore`].
//!
//! Features: `tls` for `rediss://` URLs (rustls, with the webpki roots or a CA of your own);
//! `encryption` for `RedisStoreBuilder::encryption_key`.
#![deny(unsafe_code)]
#![warn(missing_docs, rust_2018_idioms, unreachable_pub)]
#![cfg_attr(docsrs, feature(doc_cfg))]

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use redis::Script;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use zeroize::Zeroizing;

use tower_bearer::Token;
use tower_bearer::proof::BindingKey;
use tower_bearer::store::{
    Notifications, Notifier, Publish, SharedFailure, SharedToken, StoreError, StoreFuture,
    TokenStore,
};

mod builder;
mod connection;
mod failure;
mod value;

pub use builder::RedisStoreBuilder;
use connection::Connection;

/// A [`TokenStore`] on Redis: replicas with the same credential share one token and one
/// refresh.
///
/// `rediss://` URLs need the `tls` feature, and
/// `encryption_key` the `encryption` feature.
///
/// # What it keeps in Redis
///
/// For one account (one credential), under a namespace (default `tower-bearer`):
///
/// | key | holds |
/// | --- | --- |
/// | `<namespace>:{<hash>}:token` | a hash: `gen` (the generation) and `val` (the token: access token, refresh token, expiry and issue time as Unix milliseconds); expires an hour after the access token |
/// | `<namespace>:{<hash>}:lease` | the lease holder's id, set with `SET NX PX`: it ends by itself |
/// | `<namespace>:{<hash>}:failure` | the lease holder's failed refresh, when the authorization server answered it (status, OAuth 2.0 error code, a one-line description, until when the replicas wait, failures in a row); nothing secret; set with `PX`: it ends by itself, twice the backoff after it was written |
/// | `<namespace>:{<hash>}:published` | a pub/sub channel: a message for each publish, and each failure published |
///
/// `<hash>` is the first 128 bits of SHA-256 over the credential, in hex: the key names never
/// contain the credential, and never contain anything from which it could be recovered short
/// of guessing it. Both keys share the `{<hash>}` hash tag, so they live in one slot on a
/// Redis Cluster: every command and script touches that one slot.
///
/// # Where Redis is
///
/// - One endpoint, [`RedisStore::builder`]`(url, ..)`: reconnects to it by itself.
/// - A Redis Cluster, [`RedisStore::cluster`]`(seed URLs, ..)`: commands go to the master of
///   the keys' slot and follow it through a failover (`MOVED`); notifications use the
///   cluster's ordinary pub/sub (`PUBLISH`, which every node delivers), listened to on one seed
///   node at a time.
/// - A master watched by Sentinels, [`RedisStore::sentinel`]`(sentinel URLs, master name, ..)`:
///   the store asks the Sentinels for the master again whenever a call to it fails to connect,
///   times out or is answered `READONLY`, so it follows a failover without a restart.
///
/// During a failover, until a master answers, calls fail as in any outage: caches keep using
/// their own copies and refresh on their own, and share again once it is over.
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
/// networks, no dumps left lying around. With the `encryption` feature,
/// `encryption_key` encrypts the stored value with
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
/// use tower_bearer_apivideo::ApiVideo;
/// use tower_bearer_redis::RedisStore;
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
/// let layer = BearerAuthLayer::from_cache(cache, scope);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct RedisStore {
    inner: Arc<Inner>,
}

struct Inner {
    connection: Connection,
    keys: Keys,
    skew: Duration,
    notifier: Notifier,
    listener: JoinHandle<()>,
    #[cfg(feature = "encryption")]
    cipher: Option<chacha20poly1305::XChaCha20Poly1305>,
    /// The key DPoP tokens in this store are bound to.
    binding_key: Option<Arc<dyn BindingKey>>,
}

#[derive(Clone, Debug)]
struct Keys {
    token: String,
    lease: String,
    failure: String,
    channel: String,
}

/// How long the token key outlives its access token: the refresh token may still be good.
const KEEP_AFTER_EXPIRY: Duration = Duration::from_secs(3600);

impl RedisStore {
    /// The name of the key holding the token (`<namespace>:{<hash>}:token`), for operators.
    pub fn token_key(&self) -> &str {
        &self.inner.keys.token
    }

    fn connection(&self) -> Connection {
        self.inner.connection.clone()
    }
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

static PUBLISH_FAILURE: &str = r"
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('PUBLISH', ARGV[3], 0)
return 1
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

    fn load_failure(&self) -> StoreFuture<'_, Option<SharedFailure>> {
        Box::pin(async move {
            let mut connection = self.connection();
            let value: Option<Vec<u8>> = redis::cmd("GET")
                .arg(&self.inner.keys.failure)
                .query_async(&mut connection)
                .await
                .map_err(redis_error("loading the shared failure from redis failed"))?;
            value.map(|value| failure::decode(&value)).transpose()
        })
    }

    fn publish_failure<'a>(
        &'a self,
        failure: &'a SharedFailure,
        keep: Duration,
    ) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            let mut connection = self.connection();
            let _: i64 = Script::new(PUBLISH_FAILURE)
                .key(&self.inner.keys.failure)
                .arg(failure::encode(failure))
                .arg(keep.as_millis().max(1) as u64)
                .arg(&self.inner.keys.channel)
                .invoke_async(&mut connection)
                .await
                .map_err(redis_error("publishing the shared failure to redis failed"))?;
            Ok(true)
        })
    }

    fn clear_failure(&self) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            let mut connection = self.connection();
            let _: i64 = redis::cmd("DEL")
                .arg(&self.inner.keys.failure)
                .query_async(&mut connection)
                .await
                .map_err(redis_error("clearing the shared failure in redis failed"))?;
            Ok(())
        })
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.listener.abort();
    }
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut debug = f.debug_struct("RedisStore");
        debug
            .field("token_key", &self.inner.keys.token)
            .field("clock_skew", &self.inner.skew);
        #[cfg(feature = "encryption")]
        debug.field("encrypted", &self.inner.cipher.is_some());
        debug.finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests;
