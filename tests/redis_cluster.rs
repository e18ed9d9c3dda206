//! The Redis store on a Redis Cluster and on a master watched by Sentinels, each started by
//! the test on loopback: replicas in separate processes share one token through a Cluster
//! across a failover of the master holding their slot, and through Sentinels across the
//! primary's death, with every request served and the store back on the new master without
//! a restart. And a Cluster, and Sentinels and their master, that speak only TLS, to stores
//! that trust their private CA and to none that do not.
//!
//! Real time throughout, like `tests/redis.rs`: the servers keep their own clocks.

mod common;

use std::io::Write;
use std::time::Duration;

use common::redis_server::{
    RedisCluster, RedisSentinels, SENTINEL_MASTER, TLS_PASSWORD, Tls, assert_one_shared_token,
    counts, finish, query, replica_process_args, spawn_replica,
};
use common::{eventually, publish_by_generation};
use tokio::time::Instant;
use tower_bearer::Token;
use tower_bearer::store::TokenStore;
use tower_bearer_mock::apivideo::MockServer;
use tower_bearer_redis::RedisStore;

#[path = "../examples/replica.rs"]
#[allow(dead_code)]
mod replica;

const TTL: Duration = Duration::from_secs(2);
/// Five refreshes' worth of 2 s tokens (see `tests/redis.rs`).
const RUN: Duration = Duration::from_secs(8);

/// How long any one store call in these tests may take before the test fails.
const CALL: Duration = Duration::from_secs(5);

/// The stated bound on a failover: from `CLUSTER FAILOVER`, or the primary's death, to the
/// store's first write on the new master. A Sentinel failover takes the Sentinels' own
/// detection (`down-after-milliseconds`, 500 ms here), agreement and promotion.
const FAILOVER_BOUND: Duration = Duration::from_secs(10);

async fn mock() -> MockServer {
    MockServer::builder().token_ttl(TTL).start().await.unwrap()
}

fn plan(redis: replica::Redis, mock: &MockServer, caches: usize) -> replica::Plan {
    replica::Plan {
        redis: Some(redis),
        caches,
        namespace: "tests".into(),
        base: mock.uri().to_string(),
        requests: 1000,
        duration: RUN,
        ..replica::Plan::default()
    }
}

/// Not a test of its own: the body of a replica process (see `spawn_replica`).
#[test]
#[ignore = "run by the other tests as a separate process"]
fn replica_process() {
    let Some(args) = replica_process_args() else {
        return;
    };
    let plan = replica::parse(args).unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let reports = runtime.block_on(replica::run_all(plan)).unwrap();
    for report in &reports {
        println!("{}", report.line());
    }
    std::io::stdout().flush().unwrap();
    if reports.iter().any(|report| report.failed > 0) {
        std::process::exit(1);
    }
}

/// Takes a lease of the probe's own (beside the replicas') through `probe` until a call
/// succeeds; how long that took from `since`, and the owner it took it as.
async fn first_write(probe: &RedisStore, since: Instant) -> (Duration, String) {
    for attempt in 0.. {
        let owner = format!("probe-{attempt}");
        if let Ok(Ok(true)) =
            tokio::time::timeout(CALL, probe.try_lease(&owner, Duration::from_secs(30))).await
        {
            return (since.elapsed(), owner);
        }
        assert!(
            since.elapsed() < FAILOVER_BOUND,
            "the store did not come back"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    unreachable!()
}

/// The probe's first call, before the failover: connected, and its lease free again.
async fn warm_up(probe: &RedisStore) {
    let (_, owner) = first_write(probe, Instant::now()).await;
    probe.release(&owner).await.unwrap();
}

/// What two stores on one account share: `other` is notified of `store`'s publish and loads
/// its token; compare-and-set refuses a stale publish; one lease holder at a time, renewed and
/// released by its holder only. `subscribers` counts a channel's subscribers on the servers.
async fn shared_between(
    store: &RedisStore,
    other: &RedisStore,
    subscribers: impl AsyncFn(&str) -> usize,
) {
    // Both listeners subscribed, as the servers count them, before `notes` is made: each
    // listener notifies as it subscribes, and that notification would be missed by `notes`
    // made earlier than it, or taken for the publish's by `notes` made later.
    let channel = other.token_key().replace(":token", ":published");
    let (subscribers, channel) = (&subscribers, &channel);
    eventually("both stores' listeners subscribed", || async move {
        subscribers(channel).await >= 2
    })
    .await;
    let mut notes = other.notifications();
    let token = |s: &str| {
        Token::bearer(s)
            .unwrap()
            .expires_in(Duration::from_secs(60))
            .with_refresh_token(format!("{s}-refresh"))
    };
    tokio::time::timeout(
        CALL,
        publish_by_generation(store, &token("first"), &token("second")),
    )
    .await
    .unwrap();
    tokio::time::timeout(CALL, notes.notified())
        .await
        .expect("notified of a publish made through another store");
    let loaded = tokio::time::timeout(CALL, other.load())
        .await
        .unwrap()
        .unwrap()
        .expect("the other store loads the token");
    assert_eq!(loaded.generation, 2);
    assert_eq!(loaded.token.expose_access_token(), "second");
    assert!(store.try_lease("a", Duration::from_secs(10)).await.unwrap());
    assert!(!other.try_lease("b", Duration::from_secs(10)).await.unwrap());
    assert!(store.renew("a", Duration::from_secs(10)).await.unwrap());
    other.release("b").await.unwrap();
    store.release("a").await.unwrap();
    assert!(other.try_lease("b", Duration::from_secs(10)).await.unwrap());
    other.release("b").await.unwrap();
}

/// One Cluster for the whole test: lease, compare-and-set and notifications on it; then 8
/// caches in 4 processes through it, with the master holding their slot failed over mid-run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_shares_one_token_across_a_failover() {
    let started = Instant::now();
    let cluster = RedisCluster::start().await;
    let ready = started.elapsed();

    // Lease, compare-and-set, notification: each script's keys in one slot.
    let store = RedisStore::cluster(cluster.seeds(), "cluster-key")
        .build()
        .unwrap();
    let other = RedisStore::cluster(cluster.seeds(), "cluster-key")
        .build()
        .unwrap();
    shared_between(&store, &other, async |channel: &str| {
        cluster.subscribers(channel).await
    })
    .await;

    // The fleet, and a failover of the master holding its slot at 3 s.
    let mock = mock().await;
    let probe = RedisStore::cluster(cluster.seeds(), mock.api_key())
        .namespace("probe")
        .build()
        .unwrap();
    let (old_master, replica) = cluster.holder_of(probe.token_key()).await;
    warm_up(&probe).await;
    let plan = plan(replica::Redis::Cluster(cluster.seeds()), &mock, 2);
    let phase = Instant::now();
    let children: Vec<_> = (0..4).map(|_| spawn_replica(&plan.args())).collect();
    let lines = tokio::task::spawn_blocking(move || {
        children.into_iter().flat_map(finish).collect::<Vec<_>>()
    });
    tokio::time::sleep(Duration::from_secs(3)).await;
    let before = mock.counters();
    let failover = Instant::now();
    cluster.fail_over_to(replica).await;
    let promoted = failover.elapsed();
    let (back, owner) = first_write(&probe, failover).await;
    let lines = lines.await.unwrap();
    let took = phase.elapsed();
    let counters = mock.counters();

    // The probe's write landed on the new master.
    let lease = probe.token_key().replace(":token", ":lease");
    let holder: Option<String> = query(replica, redis::cmd("GET").arg(&lease)).await.unwrap();
    // The replicas' token, on the new master: every token the mock issued was published.
    let stored = RedisStore::cluster(cluster.seeds(), mock.api_key())
        .namespace("tests")
        .build()
        .unwrap();
    let generation = stored
        .load()
        .await
        .unwrap()
        .expect("a shared token")
        .generation;

    println!(
        "Cluster (6 nodes ready in {:.1} s): 8 caches in 4 processes, 8,000 requests over {RUN:?}; \
         CLUSTER FAILOVER of the slot's master (port {old_master} to {replica}) at 3 s",
        ready.as_secs_f64()
    );
    println!(
        "  replica promoted in {:.0} ms; the store's first write on it {:.0} ms after the failover began",
        promoted.as_secs_f64() * 1000.0,
        back.as_secs_f64() * 1000.0
    );
    println!("  before the failover: {}", counts(&before));
    println!(
        "  in all: {}; stored generation {generation}",
        counts(&counters)
    );
    println!("  ({:.1} s in all)", started.elapsed().as_secs_f64());
    for line in &lines {
        println!("  {line}");
    }
    assert_eq!(lines.len(), 8);
    for line in &lines {
        assert!(line.contains(": 1000 ok, 0 failed"), "{line}");
    }
    assert_one_shared_token(&counters, took);
    assert_eq!(
        generation,
        counters.api_key_logins + counters.refreshes,
        "a token was not shared"
    );
    assert!(back < FAILOVER_BOUND, "{back:?}");
    assert_eq!(
        holder,
        Some(owner),
        "the probe's write is not on the new master"
    );
}

/// A primary, a replica, three Sentinels; 4 caches, and the primary killed at 2 s: every
/// request served from the caches' copies, the store on the promoted replica within
/// `FAILOVER_BOUND`, without a restart, and one token again afterwards. A connection that
/// redis-rs's Sentinel client handed out before the failover is still on the dead primary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sentinel_failover_is_followed_without_a_restart() {
    let started = Instant::now();
    let mut set = RedisSentinels::start().await;
    let ready = started.elapsed();
    let mock = mock().await;
    let urls = set.urls();
    let sentinel = |namespace: &str| {
        RedisStore::sentinel(urls.clone(), SENTINEL_MASTER, mock.api_key())
            .namespace(namespace)
            .build()
            .unwrap()
    };
    let probe = sentinel("probe");
    warm_up(&probe).await;
    // What redis-rs offers alone: a connection to the master the Sentinels named at the time.
    let mut fixed = {
        let mut client = redis::sentinel::SentinelClient::build(
            set.urls(),
            SENTINEL_MASTER,
            None,
            redis::sentinel::SentinelServerType::Master,
        )
        .unwrap();
        let client = client.async_get_client().await.unwrap();
        redis::aio::ConnectionManager::new(client).await.unwrap()
    };

    let plan = plan(
        replica::Redis::Sentinel {
            sentinels: set.urls(),
            master: SENTINEL_MASTER.to_owned(),
        },
        &mock,
        4,
    );
    let run = tokio::spawn(replica::run_all(plan));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = mock.counters();
    set.primary.stop();
    let killed = Instant::now();
    let (back, owner) = first_write(&probe, killed).await;
    let reports = run.await.unwrap().unwrap();
    let counters = mock.counters();

    let role: Vec<redis::Value> = query(set.replica.port, &redis::cmd("ROLE")).await.unwrap();
    let lease = probe.token_key().replace(":token", ":lease");
    let holder: Option<String> = query(set.replica.port, redis::cmd("GET").arg(&lease))
        .await
        .unwrap();
    assert_eq!(
        role.first(),
        Some(&redis::Value::BulkString(b"master".to_vec())),
        "the replica was not promoted"
    );
    let stale: redis::RedisResult<()> = redis::cmd("SET")
        .arg("fixed")
        .arg("1")
        .query_async(&mut fixed)
        .await;
    let generation = sentinel("tests")
        .load()
        .await
        .unwrap()
        .expect("a shared token")
        .generation;
    // One token again: each cache takes the shared one at its own point of the refresh-ahead
    // window (jitter), so the fleet agrees within a token's lifetime, not at one instant.
    let tokens = async || {
        let mut tokens = Vec::new();
        for report in &reports {
            tokens.push(report.cache.token().await.unwrap().authorization().clone());
        }
        tokens
    };
    eventually("the caches holding one token again", || async {
        tokens().await.windows(2).all(|w| w[0] == w[1])
    })
    .await;

    println!(
        "Sentinel (primary, replica, 3 sentinels ready in {:.1} s): 4 caches, 4,000 requests over {RUN:?}; the primary killed at 2 s",
        ready.as_secs_f64()
    );
    println!(
        "  the store's first write on the promoted replica {:.0} ms after the kill; redis-rs's own Sentinel connection then: {}",
        back.as_secs_f64() * 1000.0,
        match &stale {
            Ok(()) => "answered".to_owned(),
            Err(error) => format!("failed ({error})"),
        }
    );
    println!("  before the kill: {}", counts(&before));
    println!(
        "  in all: {}; stored generation {generation}",
        counts(&counters)
    );
    println!("  ({:.1} s in all)", started.elapsed().as_secs_f64());
    for report in &reports {
        println!("  {}", report.line());
    }
    assert_eq!(reports.iter().map(|r| r.ok).sum::<u64>(), 4000);
    assert_eq!(reports.iter().map(|r| r.failed).sum::<u64>(), 0);
    assert!(back < FAILOVER_BOUND, "{back:?}");
    assert!(
        stale.is_err(),
        "redis-rs's own connection followed the failover"
    );
    assert!(generation >= 1, "nothing published on the new primary");
    assert_eq!(
        holder,
        Some(owner),
        "the probe's write is not on the new primary"
    );
    // While no master was named, each cache refreshed alone at most once (its login ending
    // the others' refresh tokens, as in any outage); before the kill and after, one token.
    assert_eq!(before.api_key_logins, 1, "{}", counts(&before));
    assert_eq!(before.rejected_refresh_tokens, 0, "{}", counts(&before));
    assert!(counters.api_key_logins <= 1 + 4, "{}", counts(&counters));
    assert_eq!(counters.expired_token_requests, 0, "{}", counts(&counters));
    for report in &reports {
        let store = report.stats.store.as_ref().unwrap();
        assert!(store.local_refreshes <= 1, "{}", report.line());
        assert!(!store.unavailable, "{}", report.line());
    }
}

/// A master with a password of its own behind Sentinels with none: `master_auth` gives the
/// master's, and without it the store is refused by the master, with no password in any
/// error or `Debug`.
#[tokio::test]
async fn a_sentinel_master_with_a_password_of_its_own() {
    let set = RedisSentinels::start_with_password(Some("MASTER-SECRET")).await;
    let without = RedisStore::sentinel(set.urls(), SENTINEL_MASTER, "auth-key")
        .build()
        .unwrap();
    let refused = tokio::time::timeout(CALL, without.load())
        .await
        .unwrap()
        .unwrap_err();

    let builder = RedisStore::sentinel(set.urls(), SENTINEL_MASTER, "auth-key")
        .master_auth(None, "MASTER-SECRET");
    let builder_debug = format!("{builder:?}");
    let store = builder.build().unwrap();
    let token = Token::bearer("behind-sentinels")
        .unwrap()
        .expires_in(Duration::from_secs(60));
    tokio::time::timeout(CALL, store.publish(0, &token))
        .await
        .unwrap()
        .unwrap();
    let loaded = store.load().await.unwrap().expect("the token");
    assert_eq!(loaded.token.expose_access_token(), "behind-sentinels");
    assert!(store.try_lease("a", Duration::from_secs(10)).await.unwrap());

    let all = format!(
        "{refused} {:?} {builder_debug} {store:?}",
        std::error::Error::source(&refused)
    );
    assert!(!all.contains("MASTER-SECRET"), "{all}");
}

/// Fails the test unless `store`'s calls fail, each within `CALL`, and no error quotes the
/// password.
async fn refused(store: &RedisStore, what: &str) {
    let load = tokio::time::timeout(CALL, store.load())
        .await
        .unwrap_or_else(|_| panic!("{what}: the call hung"));
    let error = load.expect_err(what);
    let lease = tokio::time::timeout(CALL, store.try_lease("x", Duration::from_secs(10)))
        .await
        .unwrap_or_else(|_| panic!("{what}: the call hung"));
    assert!(lease.is_err(), "{what}: {lease:?}");
    let text = format!("{error}: {:?}", std::error::Error::source(&error));
    assert!(!text.contains(TLS_PASSWORD), "{what}: {text}");
}

/// A Cluster whose nodes speak only TLS (to clients, to each other on the cluster bus, to
/// their masters) and know only an ACL user, as ElastiCache's cluster mode with in-transit
/// encryption: stores on different seeds, trusting the nodes' private CA, share a token, its
/// notification and the lease. A store trusting another CA, or only the webpki roots, fails
/// its calls (the nodes have no plaintext port to fall back to), as does a wrong password,
/// unquoted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_over_tls_as_an_acl_user() {
    let tls = Tls::make();
    let started = Instant::now();
    let cluster = RedisCluster::start_over_tls(&tls).await;
    let ready = started.elapsed();
    let seeds = cluster.seeds();
    assert!(seeds.iter().all(|seed| seed.starts_with("rediss://")));

    let on = |seeds: &[String]| {
        RedisStore::cluster(seeds.to_vec(), "tls-cluster-key").tls_root_certificate(tls.ca())
    };
    let store = on(&seeds[..1]).build().unwrap();
    let other = on(&seeds[1..2]).build().unwrap();
    let round_trip = Instant::now();
    shared_between(&store, &other, async |channel: &str| {
        cluster.subscribers(channel).await
    })
    .await;
    let round_trip = round_trip.elapsed();

    let another_ca = Tls::make();
    let untrusted = RedisStore::cluster(seeds.clone(), "tls-cluster-key")
        .tls_root_certificate(another_ca.ca())
        .build()
        .unwrap();
    refused(&untrusted, "a store trusting another CA").await;
    let webpki = RedisStore::cluster(seeds.clone(), "tls-cluster-key")
        .build()
        .unwrap();
    refused(&webpki, "a store trusting the webpki roots").await;
    let wrong: Vec<_> = seeds
        .iter()
        .map(|seed| seed.replace(TLS_PASSWORD, "WRONG-PASSWORD"))
        .collect();
    refused(&on(&wrong).build().unwrap(), "a wrong password").await;

    println!(
        "Cluster over TLS (6 nodes ready in {:.1} s): shared between two stores in {:.0} ms; \
         {:.1} s in all",
        ready.as_secs_f64(),
        round_trip.as_secs_f64() * 1000.0,
        started.elapsed().as_secs_f64()
    );
}

/// A primary, a replica and three Sentinels that all speak only TLS, to clients and to each
/// other, and know only an ACL user: stores trusting the private CA share a token, its
/// notification and the lease on the primary; a store trusting another CA fails its calls;
/// and once the primary is killed the store writes on the promoted replica, over TLS too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinels_over_tls_as_an_acl_user() {
    let tls = Tls::make();
    let started = Instant::now();
    let mut set = RedisSentinels::start_over_tls(&tls).await;
    let ready = started.elapsed();
    let urls = set.urls();
    assert!(urls.iter().all(|url| url.starts_with("rediss://")));
    let sentinel = |ca: Vec<u8>| {
        RedisStore::sentinel(urls.clone(), SENTINEL_MASTER, "tls-sentinel-key")
            .tls_root_certificate(ca)
            .build()
            .unwrap()
    };
    let store = sentinel(tls.ca());
    let other = sentinel(tls.ca());
    let (primary, access) = (set.primary.port, &set.node_access);
    shared_between(&store, &other, async |channel: &str| {
        access.subscribers(primary, channel).await
    })
    .await;
    let (_, owner) = first_write(&store, Instant::now()).await;
    let lease = store.token_key().replace(":token", ":lease");
    let holder: Option<String> = set
        .node_access
        .query(set.primary.port, redis::cmd("GET").arg(&lease))
        .await
        .unwrap();
    assert_eq!(holder.as_ref(), Some(&owner), "not on the primary");
    store.release(&owner).await.unwrap();

    let another_ca = Tls::make();
    refused(&sentinel(another_ca.ca()), "a store trusting another CA").await;

    set.primary.stop();
    let killed = Instant::now();
    let (back, owner) = first_write(&store, killed).await;
    let holder: Option<String> = set
        .node_access
        .query(set.replica.port, redis::cmd("GET").arg(&lease))
        .await
        .unwrap();
    assert_eq!(holder, Some(owner), "not on the promoted replica");

    println!(
        "Sentinel over TLS (primary, replica, 3 sentinels ready in {:.1} s): the store's first \
         write on the promoted replica {:.0} ms after the kill; {:.1} s in all",
        ready.as_secs_f64(),
        back.as_secs_f64() * 1000.0,
        started.elapsed().as_secs_f64()
    );
}
