//! The store's key names and stored values, without a Redis.

use std::sync::Arc;

use http::{HeaderMap, HeaderName, Method, Uri};
use tower::BoxError;
use tower_bearer::TokenType;
use tower_bearer::proof::{Proof, Prover};

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

/// A key that binds tokens with no proof at all: what the store needs of a key is its id.
#[derive(Debug, Clone)]
struct TestKey(&'static str);

#[derive(Debug)]
struct TestProver(TestKey);

impl BindingKey for TestKey {
    fn token_type(&self) -> TokenType {
        TokenType::Dpop
    }

    fn id(&self) -> &str {
        self.0
    }

    fn bind(&self, _: &str) -> Arc<dyn Prover> {
        Arc::new(TestProver(self.clone()))
    }
}

impl Prover for TestProver {
    fn key(&self) -> &dyn BindingKey {
        &self.0
    }

    fn header_name(&self) -> &HeaderName {
        static PROOF: HeaderName = HeaderName::from_static("proof");
        &PROOF
    }

    fn prove(&self, _: &Method, _: &Uri, _: &mut HeaderMap) -> Result<Box<dyn Proof>, BoxError> {
        Err("no proofs here".into())
    }
}

#[tokio::test]
async fn a_bound_token_needs_a_store_with_its_key() {
    let store = store(Duration::from_secs(2));
    let token = Token::bound("bound", &TestKey("k1")).unwrap();
    let error = store.encode(&token, 1).unwrap_err();
    assert!(error.is_misconfigured(), "{error}");

    let with_key = RedisStore::builder("redis://127.0.0.1:1/", "the-api-key")
        .namespace("ns")
        .binding_key(TestKey("k1"))
        .build()
        .unwrap();
    // The key's id names the keys, inside the shared hash tag's slot.
    assert!(with_key.token_key().ends_with("}:key-k1:token"));
    assert_ne!(with_key.token_key(), store.token_key());
    let value = with_key.encode(&token, 1).unwrap();
    let back = with_key.decode(&value, 1).unwrap();
    assert_eq!(back.token.authorization(), "DPoP bound");
    assert_eq!(back.token.binding_key().unwrap().id(), "k1");
    // A store without the key refuses it, rather than send it as a bearer token.
    assert!(store.decode(&value, 1).unwrap_err().is_misconfigured());

    let foreign = Token::bound("foreign", &TestKey("k2")).unwrap();
    assert!(with_key.encode(&foreign, 1).unwrap_err().is_misconfigured());
}

#[test]
fn building_outside_a_runtime_is_an_error() {
    let error = RedisStore::builder("redis://127.0.0.1:1/", "k")
        .build()
        .unwrap_err();
    assert!(error.to_string().contains("tokio runtime"), "{error}");
}

/// What cannot make a Cluster or a Sentinel store is refused when it is built, as a
/// misconfiguration, with no URL (nor its password) in the message; what can is built without
/// connecting.
#[tokio::test]
async fn cluster_and_sentinel_endpoints_are_checked_when_built() {
    let refused = |builder: RedisStoreBuilder| {
        let error = builder.build().unwrap_err();
        assert!(error.is_misconfigured(), "{error}");
        assert!(!error.to_string().contains("SECRET"), "{error}");
        error.to_string()
    };
    let none: [&str; 0] = [];
    assert!(refused(RedisStore::cluster(none, "key")).contains("at least one"));
    assert!(
        refused(RedisStore::cluster(
            [
                "redis://:SECRET@127.0.0.1:1",
                "rediss://:SECRET@127.0.0.1:2"
            ],
            "key"
        ))
        .contains("mix")
    );
    assert!(
        refused(RedisStore::cluster(
            ["redis://:SECRET@127.0.0.1:1/2"],
            "key"
        ))
        .contains("database")
    );
    assert!(refused(RedisStore::sentinel(none, "master", "key")).contains("at least one"));
    assert!(
        refused(RedisStore::sentinel(
            ["rediss://127.0.0.1:1", "redis://127.0.0.1:2"],
            "master",
            "key"
        ))
        .contains("mix")
    );
    assert!(refused(RedisStore::sentinel(["redis://127.0.0.1:1"], "", "key")).contains("name"));

    assert!(
        refused(RedisStore::cluster(["redis://127.0.0.1:1"], "key").master_auth(None, "SECRET"))
            .contains("sentinels")
    );

    let cluster = RedisStore::cluster(["redis://127.0.0.1:1", "redis://127.0.0.1:2/0"], "key")
        .build()
        .unwrap();
    let sentinel = RedisStore::sentinel(["redis://127.0.0.1:1"], "master", "key")
        .build()
        .unwrap();
    // The same account's keys, whichever way Redis is reached.
    assert_eq!(cluster.token_key(), sentinel.token_key());
    let single = RedisStore::builder("redis://127.0.0.1:1/", "key")
        .build()
        .unwrap();
    assert_eq!(cluster.token_key(), single.token_key());
}

/// The stored value is the contract between replicas, whatever version each runs: expiry and
/// issue time as Unix milliseconds, then the tokens.
#[tokio::test]
async fn a_stored_value_carries_its_times_as_unix_milliseconds() {
    use std::time::{SystemTime, UNIX_EPOCH};
    let wall = || {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64
    };
    let store = store(Duration::from_secs(2));
    let token = Token::bearer("access")
        .unwrap()
        .expires_in(Duration::from_secs(60));
    let before = wall();
    let value = store.encode(&token, 1).unwrap();
    let after = wall();
    // Without an encryption key, in the clear.
    let (format, plain) = value.split_at(2);
    assert_eq!(format, b"p1");
    let expires = u64::from_be_bytes(plain[..8].try_into().unwrap());
    let issued = u64::from_be_bytes(plain[8..16].try_into().unwrap());
    assert!(
        (before..=after).contains(&issued),
        "{issued} not in {before}..={after}"
    );
    assert!(
        (before + 59_000..=after + 60_000).contains(&expires),
        "{expires} is not a minute after {before}"
    );
}

#[tokio::test]
async fn debug_output_names_the_mode_and_keys_and_no_url() {
    let builder = RedisStore::builder("redis://user:the-password@127.0.0.1:1/", "the-api-key")
        .namespace("ns");
    let shown = format!("{builder:?}");
    assert!(shown.starts_with("RedisStoreBuilder"), "{shown}");
    assert!(shown.contains(r#"mode: "single""#), "{shown}");
    assert!(shown.contains(r#"namespace: "ns""#), "{shown}");
    assert!(
        !shown.contains("the-password") && !shown.contains("the-api-key"),
        "{shown}"
    );
    let store = builder.build().unwrap();
    let shown = format!("{store:?}");
    assert!(shown.starts_with("RedisStore"), "{shown}");
    assert!(shown.contains(&store.inner.keys.token), "{shown}");
    assert!(shown.contains("clock_skew: 2s"), "{shown}");
    assert!(
        !shown.contains("the-password") && !shown.contains("the-api-key"),
        "{shown}"
    );
}

#[cfg(not(feature = "encryption"))]
#[tokio::test]
async fn an_encrypted_value_needs_the_encryption_feature() {
    let error = store(Duration::from_secs(2))
        .decode(b"x1 sealed bytes", 1)
        .unwrap_err();
    assert!(
        error.to_string().contains("no `encryption` feature"),
        "{error}"
    );
}

#[cfg(feature = "encryption")]
fn sealed(credential: &str) -> RedisStore {
    RedisStore::builder("redis://127.0.0.1:1/", credential)
        .namespace("ns")
        .encryption_key([7; 32])
        .build()
        .unwrap()
}

/// A sealed value cannot be replayed as another generation nor under another account's key.
#[cfg(feature = "encryption")]
#[tokio::test]
async fn a_sealed_value_is_bound_to_its_key_and_generation() {
    let store = sealed("the-api-key");
    let token = Token::bearer("the-access-token")
        .unwrap()
        .expires_in(Duration::from_secs(60));
    let value = store.encode(&token, 3).unwrap();
    assert_eq!(&value[..2], b"x1");
    assert!(!value.windows(16).any(|w| w == b"the-access-token"));
    let back = store.decode(&value, 3).unwrap();
    assert_eq!(back.token.expose_access_token(), "the-access-token");
    assert!(store.decode(&value, 4).is_err(), "another generation");
    assert!(
        sealed("another-key").decode(&value, 3).is_err(),
        "another account"
    );
}

/// Replicas that disagree on encryption say which one lacks what.
#[cfg(feature = "encryption")]
#[tokio::test]
async fn a_replica_with_a_key_and_one_without_say_which_is_which() {
    let plain = store(Duration::from_secs(2));
    let sealed = sealed("the-api-key");
    let token = Token::bearer("access").unwrap();
    let error = sealed
        .decode(&plain.encode(&token, 1).unwrap(), 1)
        .unwrap_err();
    assert!(
        error
            .to_string()
            .contains("not encrypted, but this replica has an encryption key"),
        "{error}"
    );
    let error = plain
        .decode(&sealed.encode(&token, 1).unwrap(), 1)
        .unwrap_err();
    assert!(
        error
            .to_string()
            .contains("encrypted, but this replica has no encryption key"),
        "{error}"
    );
}

/// A sealed value too short for its nonce is refused as such, not split (a panic) or opened.
#[cfg(feature = "encryption")]
#[tokio::test]
async fn a_sealed_value_too_short_for_its_nonce_is_an_unknown_format() {
    let store = sealed("the-api-key");
    for len in [0, 10, 24] {
        let mut value = b"x1".to_vec();
        value.resize(2 + len, 0);
        let error = store.decode(&value, 1).unwrap_err();
        assert!(
            error.to_string().contains("unknown format"),
            "{len} bytes: {error}"
        );
    }
}
