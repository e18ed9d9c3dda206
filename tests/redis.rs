//! Replicas sharing one token through a real Redis: in one process, as separate OS processes,
//! with the lease holder killed mid-refresh, and with Redis stopped and restarted mid-run.
//!
//! Each test starts its own `redis-server` (from `PATH`) on a free loopback port, with no
//! persistence, and kills it when done. Real time throughout: Redis keeps its own clock.

mod common;

use std::io::Write;
use std::net::TcpListener;
use std::time::Duration;

use common::redis_server::{
    Access, KeyEvents, RedisServer, TLS_PASSWORD, TLS_USER, Tls, acl_user, assert_one_shared_token,
    counts, finish, replica_process_args, spawn_replica,
};
use common::{capture_this_thread, publish_by_generation};
use tokio::time::Instant;
use tower::BoxError;
use tower_bearer::store::{Publish, TokenStore};
use tower_bearer::{Token, TokenCache, TokenRequest};
use tower_bearer_mock::apivideo::{Failure, MockServer};
use tower_bearer_redis::RedisStore;

#[path = "../examples/replica.rs"]
#[allow(dead_code)]
mod replica;

const TTL: Duration = Duration::from_secs(2);
/// Five refreshes' worth: a 2 s token is refreshed 1.5 s after it was issued (the last
/// quarter of its life is the refresh-ahead window), so refreshes fall at about 1.5, 3, 4.5,
/// 6 and 7.5 s, and the sixth would be at 9.
const RUN: Duration = Duration::from_secs(8);

// ===== replicas =====

fn plan(redis: Option<&RedisServer>, mock: &MockServer, requests: usize) -> replica::Plan {
    replica::Plan {
        redis: redis.map(|redis| replica::Redis::Url(redis.url())),
        namespace: "tests".into(),
        base: mock.uri().to_string(),
        requests,
        duration: RUN,
        ..replica::Plan::default()
    }
}

async fn mock() -> MockServer {
    MockServer::builder().token_ttl(TTL).start().await.unwrap()
}

async fn in_process(n: usize, plan: replica::Plan) -> Vec<replica::Report> {
    let runs: Vec<_> = (0..n)
        .map(|_| tokio::spawn(replica::run(plan.clone())))
        .collect();
    let mut reports = Vec::new();
    for run in runs {
        reports.push(run.await.unwrap().unwrap());
    }
    reports
}

/// Not a test of its own: the body of a replica process (see `spawn_replica`).
#[test]
#[ignore = "run by the other tests as a separate process"]
fn replica_process() {
    let Some(args) = replica_process_args() else {
        return;
    };
    let plan = replica::parse(args).unwrap();
    let tolerate = plan.tolerate_failures;
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let reports = runtime.block_on(replica::run_all(plan)).unwrap();
    for report in &reports {
        println!("{}", report.line());
    }
    std::io::stdout().flush().unwrap();
    if reports.iter().any(|report| report.failed > 0) && !tolerate {
        std::process::exit(1);
    }
}

// ===== the tests =====

/// 8 caches in one process, each with its own `ApiVideo` and HTTP client, one Redis: 8,000
/// requests over five token lifetimes cost one login and five refreshes between them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_caches_in_one_process_share_one_token() {
    let redis = RedisServer::start();
    let started = Instant::now();

    let shared = mock().await;
    let phase = Instant::now();
    let reports = in_process(8, plan(Some(&redis), &shared, 1000)).await;
    let took = phase.elapsed();
    let with = shared.counters();
    let alone = mock().await;
    let alone_reports = in_process(8, plan(None, &alone, 1000)).await;
    let without = alone.counters();

    println!("8 caches, 8,000 requests over {RUN:?} (tokens live {TTL:?}):");
    println!("  with the Redis store:    {}", counts(&with));
    println!("  without a store:         {}", counts(&without));
    println!("  ({:.1} s)", started.elapsed().as_secs_f64());
    for report in &reports {
        println!("  {}", report.line());
    }

    let ok: u64 = reports.iter().map(|r| r.ok).sum();
    assert_eq!(ok, 8000);
    assert_one_shared_token(&with, took);
    let publishes: u64 = reports
        .iter()
        .map(|r| r.stats.store.as_ref().unwrap().publishes)
        .sum();
    // The login and each refresh, published once each.
    assert_eq!(publishes, with.refreshes + 1);
    // What the store saves: every replica logs in, and their logins end each other's
    // refresh tokens.
    assert_eq!(alone_reports.iter().map(|r| r.ok).sum::<u64>(), 8000);
    assert!(without.api_key_logins >= 8, "{}", counts(&without));
    assert!(without.rejected_refresh_tokens > 0, "{}", counts(&without));
}

/// The same with 4 separate OS processes: nothing is shared through memory.
/// Runs `plan` in `n` replica processes at once; each one's report line.
async fn in_processes(n: usize, plan: replica::Plan) -> Vec<String> {
    let children: Vec<_> = (0..n).map(|_| spawn_replica(&plan.args())).collect();
    tokio::task::spawn_blocking(move || children.into_iter().flat_map(finish).collect())
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_processes_share_one_token() {
    let redis = RedisServer::start();
    let started = Instant::now();

    let shared = mock().await;
    let phase = Instant::now();
    let lines = in_processes(4, plan(Some(&redis), &shared, 1000)).await;
    let took = phase.elapsed();
    let with = shared.counters();

    let alone = mock().await;
    let alone_lines = in_processes(4, plan(None, &alone, 1000)).await;
    let without = alone.counters();

    println!("4 processes, 4,000 requests over {RUN:?} (tokens live {TTL:?}):");
    println!("  with the Redis store:    {}", counts(&with));
    println!("  without a store:         {}", counts(&without));
    println!("  ({:.1} s)", started.elapsed().as_secs_f64());
    for line in lines.iter().chain(&alone_lines) {
        println!("  {line}");
        assert!(line.contains(": 1000 ok, 0 failed"), "{line}");
    }
    assert_one_shared_token(&with, took);
    assert!(without.api_key_logins >= 4, "{}", counts(&without));
}

/// The replica holding the lease is killed while its login hangs: another takes over once the
/// lease runs out, and no request of the others fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_holder_killed_mid_refresh_is_taken_over() {
    let redis = RedisServer::start();
    let mock = mock().await;
    // The first login never gets an answer.
    mock.fail_next_auth(1, Failure::Hang);
    let mut plan = plan(Some(&redis), &mock, 200);
    plan.duration = Duration::from_secs(3);
    let mut children: Vec<_> = (0..3).map(|_| spawn_replica(&plan.args())).collect();

    // Who holds the lease: its owner id starts with its pid.
    let mut connection = redis.connection().await;
    let store = RedisStore::builder(redis.url(), mock.api_key())
        .namespace("tests")
        .build()
        .unwrap();
    let lease_key = store.token_key().replace(":token", ":lease");
    let deadline = Instant::now() + Duration::from_secs(10);
    let holder = loop {
        let owner: Option<String> = redis::cmd("GET")
            .arg(&lease_key)
            .query_async(&mut connection)
            .await
            .unwrap();
        if let Some(owner) = owner {
            break owner.split('-').next().unwrap().parse::<u32>().unwrap();
        }
        assert!(Instant::now() < deadline, "no replica took the lease");
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    // Let it be into its hanging login, renewing its lease, then kill it. Killed before its
    // login reached api.video, it would leave the hang to the next holder.
    common::eventually("the lease holder's login reaching api.video", || async {
        mock.counters().auth_failures_injected == 1
    })
    .await;
    // Subscribed after the lease was taken: the first `expire` is a renewal.
    KeyEvents::watch(&redis, &lease_key)
        .await
        .next("expire", "the lease holder renewing its lease")
        .await;
    assert_eq!(mock.counters().api_key_logins, 0);
    let index = children.iter().position(|c| c.id() == holder).unwrap();
    let mut victim = children.remove(index);
    victim.kill().unwrap();
    victim.wait().unwrap();
    let killed = Instant::now();

    let takeover = loop {
        if store.load().await.unwrap().is_some() {
            break killed.elapsed();
        }
        assert!(
            killed.elapsed() < Duration::from_secs(5),
            "nobody took over"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let lines: Vec<_> = tokio::task::spawn_blocking(move || {
        children.into_iter().flat_map(finish).collect::<Vec<_>>()
    })
    .await
    .unwrap();
    println!(
        "lease holder killed mid-refresh: another replica published {:.2} s later (lease {:?})",
        takeover.as_secs_f64(),
        plan.lease
    );
    for line in &lines {
        println!("  {line}");
        assert!(line.contains(": 200 ok, 0 failed"), "{line}");
    }
    // Killed just after it renewed its lease: the others waited out nearly all of one, and
    // took over soon after it ran out (a loaded machine may slow their next look).
    assert!(takeover >= plan.lease * 4 / 5, "{takeover:?}");
    assert!(
        takeover < plan.lease + Duration::from_secs(1),
        "{takeover:?}"
    );
    assert_eq!(mock.counters().api_key_logins, 1);
}

/// Redis stops mid-run: every request still succeeds, each replica refreshing alone. Redis
/// comes back (empty): the replicas converge on one shared token again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_refresh_alone_while_redis_is_down_and_rejoin_after() {
    let mut redis = RedisServer::start();
    let mock = mock().await;
    let plan = plan(Some(&redis), &mock, 1200);
    let run = tokio::spawn(in_process(4, plan));

    tokio::time::sleep(Duration::from_secs(2)).await;
    redis.stop();
    let down_at = mock.counters();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let up_at = mock.counters();
    redis.restart();
    let reports = run.await.unwrap();

    println!(
        "Redis stopped at 2 s, restarted at 4.5 s: {} ok of 4,800; while down: {} logins, {} refreshes; in all: {}",
        reports.iter().map(|r| r.ok).sum::<u64>(),
        up_at.api_key_logins - down_at.api_key_logins,
        up_at.refreshes - down_at.refreshes,
        counts(&mock.counters())
    );
    for report in &reports {
        println!("  {}", report.line());
        let store = report.stats.store.as_ref().unwrap();
        assert!(store.errors > 0, "{}", report.line());
        assert!(!store.unavailable, "{}", report.line());
    }
    assert_eq!(reports.iter().map(|r| r.ok).sum::<u64>(), 4800);
    assert_eq!(reports.iter().map(|r| r.failed).sum::<u64>(), 0);
    // Alone, they refreshed on their own while it was down.
    let alone: u64 = reports
        .iter()
        .map(|r| r.stats.store.as_ref().unwrap().local_refreshes)
        .sum();
    assert!(alone >= 4, "{alone}");
    // Back together: one token for all. Each takes the shared token at its own point of the
    // refresh-ahead window (jitter), so at a given moment one may have moved on to the next;
    // within a token's life there is a stretch where all hold the same.
    tokio::time::timeout(TTL * 3, async {
        loop {
            let mut current = Vec::new();
            for report in &reports {
                current.push(report.cache.token().await.unwrap().authorization().clone());
            }
            if current.windows(2).all(|w| w[0] == w[1]) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("replicas hold different tokens for three token lifetimes");
    let published = store_generation(&redis, &mock).await;
    assert!(published >= 1, "nothing was published after the restart");
}

// ===== one backoff for the fleet =====

/// How long the authorization server answers 503.
const OUTAGE: Duration = Duration::from_secs(20);

/// The most refresher calls one backoff (the cache's default: 1 s doubling to 30 s, each step
/// drawn between half and all of it) lets start within `outage`: a call at once, then one as
/// each step ends, the steps as short as the jitter makes them.
fn most_calls_within(outage: Duration) -> u64 {
    let (mut at, mut step, mut calls) = (Duration::ZERO, Duration::from_secs(1), 0);
    while at < outage {
        calls += 1;
        at += step / 2;
        step = (step * 2).min(Duration::from_secs(30));
    }
    calls
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// The Unix milliseconds in a replica's line after `first ok after … (unix ms `.
fn first_ok_ms(line: &str) -> Option<u64> {
    let (_, rest) = line.split_once("(unix ms ")?;
    rest.split(')').next()?.parse().ok()
}

/// The key `name` (`lease`, `failure`) of the fleet in `namespace`.
fn fleet_key(redis: &RedisServer, namespace: &str, name: &str) -> String {
    let store = RedisStore::builder(redis.url(), tower_bearer_mock::apivideo::DEFAULT_API_KEY)
        .namespace(namespace)
        .build()
        .unwrap();
    store.token_key().replace(":token", &format!(":{name}"))
}

/// When the fleet's published failure in `namespace` ends, in Unix milliseconds.
async fn shared_failure_until(redis: &RedisServer, namespace: &str) -> Option<u64> {
    let key = fleet_key(redis, namespace, "failure");
    let value: Option<String> = redis::cmd("GET")
        .arg(&key)
        .query_async(&mut redis.connection().await)
        .await
        .unwrap();
    value?.lines().nth(1)?.parse().ok()
}

/// api.video answers 503 for 20 s. 8 replicas in 4 processes, sharing the failure through
/// Redis, call it once per backoff step between them; the same 8 sharing only the token call
/// it once per step each. Every sharing replica has a token within the step in force when the
/// server comes back. A ninth replica, whose own connection to the server fails, shares the
/// store and stops nobody.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_wait_out_an_outage_together() {
    let redis = RedisServer::start();
    let start = |mock: &MockServer, namespace: &str, share_failures: bool| replica::Plan {
        namespace: namespace.into(),
        requests: 500,
        duration: OUTAGE + Duration::from_secs(35),
        caches: 2,
        share_failures,
        tolerate_failures: true,
        ..plan(Some(&redis), mock, 0)
    };
    let long_lived = || {
        MockServer::builder()
            .token_ttl(Duration::from_secs(600))
            .start()
    };
    let (shared, alone) = (long_lived().await.unwrap(), long_lived().await.unwrap());
    let shared_plan = start(&shared, "outage-shared", true);
    let alone_plan = start(&alone, "outage-alone", false);
    // Its api.video is a port nobody listens on: every call fails on this replica's side.
    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let sick_plan = replica::Plan {
        base: format!("http://{closed}/"),
        caches: 1,
        ..shared_plan.clone()
    };

    // The sick replica first: it needs a token, takes the lease, fails on its side, and
    // publishes nothing. It lets the lease go only after deciding whether to publish its
    // failure, so the failure key is read once the lease is gone.
    let lease_key = fleet_key(&redis, "outage-shared", "lease");
    let mut lease = KeyEvents::watch(&redis, &lease_key).await;
    let sick = spawn_replica(&sick_plan.args());
    lease.next("set", "the sick replica taking the lease").await;
    lease
        .next("del", "the sick replica letting the lease go")
        .await;
    assert_eq!(shared_failure_until(&redis, "outage-shared").await, None);

    let unavailable = Failure::Status(http::StatusCode::SERVICE_UNAVAILABLE);
    shared.fail_auth_for(OUTAGE, unavailable);
    alone.fail_auth_for(OUTAGE, unavailable);
    let recovered_ms = now_ms() + OUTAGE.as_millis() as u64;
    let children: Vec<_> = (0..4)
        .flat_map(|_| [&shared_plan, &alone_plan])
        .map(|plan| spawn_replica(&plan.args()))
        .collect();

    // The step in force as the server comes back: when the fleet calls again. A failure
    // whose time has passed (kept for its count), or none, means a call is due at once.
    let until_recovered = Duration::from_millis(recovered_ms.saturating_sub(now_ms()));
    tokio::time::sleep(until_recovered + Duration::from_millis(50)).await;
    let next_call_ms = shared_failure_until(&redis, "outage-shared")
        .await
        .unwrap_or(0)
        .max(recovered_ms);
    let (during_shared, during_alone) = (
        shared.counters().auth_failures_injected,
        alone.counters().auth_failures_injected,
    );
    let lines: Vec<Vec<String>> =
        tokio::task::spawn_blocking(move || children.into_iter().map(finish).collect())
            .await
            .unwrap();
    let sick_line = tokio::task::spawn_blocking(move || finish(sick).remove(0))
        .await
        .unwrap();
    let (shared_lines, alone_lines): (Vec<_>, Vec<_>) =
        lines.iter().enumerate().partition(|(i, _)| i % 2 == 0);
    let shared_lines: Vec<&String> = shared_lines.into_iter().flat_map(|(_, l)| l).collect();
    let alone_lines: Vec<&String> = alone_lines.into_iter().flat_map(|(_, l)| l).collect();

    let most = most_calls_within(OUTAGE) + 2;
    let after_recovery: Vec<f64> = shared_lines
        .iter()
        .map(|line| {
            let at = first_ok_ms(line).unwrap_or_else(|| panic!("never got a token: {line}"));
            at.saturating_sub(recovered_ms) as f64 / 1000.0
        })
        .collect();
    let alone_after: Vec<f64> = alone_lines
        .iter()
        .filter_map(|line| first_ok_ms(line))
        .map(|at| at.saturating_sub(recovered_ms) as f64 / 1000.0)
        .collect();
    let step_left = next_call_ms.saturating_sub(recovered_ms) as f64 / 1000.0;
    println!("api.video answers 503 for {OUTAGE:?}, 8 replicas in 4 processes:");
    println!(
        "  sharing the failure:  {during_shared} calls during the outage (at most {most}); \
         first token {:.1}-{:.1} s after it ended (the step in force ended {:.1} s after)",
        min(&after_recovery),
        max(&after_recovery),
        step_left,
    );
    println!(
        "  sharing tokens only:  {during_alone} calls during the outage ({:.1}x); first token \
         {:.1}-{:.1} s after it ended",
        during_alone as f64 / during_shared.max(1) as f64,
        min(&alone_after),
        max(&alone_after),
    );
    for line in shared_lines.iter().chain(&alone_lines).chain([&&sick_line]) {
        println!("  {line}");
    }

    assert!(
        during_shared <= most,
        "{during_shared} calls, at most {most}"
    );
    assert!(
        during_alone > 2 * during_shared,
        "{during_alone} vs {during_shared}"
    );
    for line in &shared_lines {
        // Within the step in force, and the time for one call and one poll of the store (on
        // a loaded machine).
        let at = first_ok_ms(line).unwrap();
        assert!(at <= next_call_ms + 3_000, "{line}");
    }
    // The sick replica called (it won the lease), failed on its own, and published nothing;
    // the others got their tokens all the same.
    assert!(!sick_line.contains(" 0 leases won"), "{sick_line}");
    assert!(sick_line.contains(" 0 failures published"), "{sick_line}");
}

fn min(values: &[f64]) -> f64 {
    values.iter().copied().fold(f64::INFINITY, f64::min)
}

fn max(values: &[f64]) -> f64 {
    values.iter().copied().fold(f64::NEG_INFINITY, f64::max)
}

async fn store_generation(redis: &RedisServer, mock: &MockServer) -> u64 {
    let store = RedisStore::builder(redis.url(), mock.api_key())
        .namespace("tests")
        .build()
        .unwrap();
    store.load().await.unwrap().map_or(0, |s| s.generation)
}

/// A stale replica's publish, on an old generation, is refused; the stored token is the
/// newer one.
#[tokio::test]
async fn a_stale_publish_is_refused() {
    let redis = RedisServer::start();
    let store = RedisStore::builder(redis.url(), "stale-test-key")
        .build()
        .unwrap();
    let token = |s: &str| {
        Token::bearer(s)
            .unwrap()
            .expires_in(Duration::from_secs(60))
            .with_refresh_token(format!("{s}-refresh"))
    };
    let loaded = publish_by_generation(&store, &token("first"), &token("second")).await;
    assert_eq!(
        loaded.token.expose_refresh_token().unwrap(),
        "second-refresh"
    );
    // Within the skew allowance (2 s) of the stored minute.
    let left = loaded.token.expiry().unwrap() - Instant::now();
    assert!(
        left > Duration::from_secs(57) && left <= Duration::from_secs(58),
        "{left:?}"
    );

    // The lease: one holder at a time, released only by its holder.
    assert!(store.try_lease("a", Duration::from_secs(10)).await.unwrap());
    assert!(!store.try_lease("b", Duration::from_secs(10)).await.unwrap());
    store.release("b").await.unwrap();
    assert!(!store.try_lease("b", Duration::from_secs(10)).await.unwrap());
    assert!(store.renew("a", Duration::from_secs(10)).await.unwrap());
    assert!(!store.renew("b", Duration::from_secs(10)).await.unwrap());
    store.release("a").await.unwrap();
    assert!(
        store
            .try_lease("b", Duration::from_millis(50))
            .await
            .unwrap()
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        store.try_lease("c", Duration::from_secs(10)).await.unwrap(),
        "the lease runs out"
    );

    // Another account never meets this one's token.
    let other = RedisStore::builder(redis.url(), "another-key")
        .build()
        .unwrap();
    assert!(other.load().await.unwrap().is_none());

    // The keys are named from a hash: no credential in them.
    let mut connection = redis.connection().await;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("*")
        .query_async(&mut connection)
        .await
        .unwrap();
    assert!(!keys.is_empty());
    for key in &keys {
        assert!(key.starts_with("tower-bearer:{"), "{key}");
        assert!(!key.contains("stale-test-key"), "{key}");
    }
}

/// A publish wakes a waiting replica through pub/sub, long before its next poll.
#[tokio::test]
async fn a_publish_is_notified() {
    let redis = RedisServer::start();
    let store = RedisStore::builder(redis.url(), "notify-key")
        .build()
        .unwrap();
    let other = RedisStore::builder(redis.url(), "notify-key")
        .build()
        .unwrap();
    // Both listeners subscribed, as the server counts them, before `notes` is made: each
    // notifies as it subscribes, which `notes` made earlier could take for the publish's.
    let channel = other.token_key().replace(":token", ":published");
    common::eventually("both stores' listeners subscribed", || async {
        Access::default().subscribers(redis.port, &channel).await >= 2
    })
    .await;
    let mut notes = other.notifications();
    let token = Token::bearer("n")
        .unwrap()
        .expires_in(Duration::from_secs(60));
    store.publish(0, &token).await.unwrap();
    tokio::time::timeout(Duration::from_secs(2), notes.notified())
        .await
        .expect("notified of the publish");
}

/// A Redis that stops answering (paused: its sockets open, nothing read) fails the store's
/// calls at the timeout it was built with: not never, which would hold every request that
/// waits on the store, and not at redis-rs's default, shorter than a slow link may need.
#[tokio::test]
async fn a_redis_that_stops_answering_fails_calls_at_the_stores_timeout() {
    const TIMEOUT: Duration = Duration::from_millis(1500);
    let redis = RedisServer::start();
    let store = RedisStore::builder(redis.url(), "paused-key")
        .timeout(TIMEOUT)
        .build()
        .unwrap();
    tokio::time::timeout(Duration::from_secs(5), store.load())
        .await
        .expect("answered")
        .unwrap();
    redis.pause(true);
    let started = Instant::now();
    let load = tokio::time::timeout(Duration::from_secs(10), store.load()).await;
    let waited = started.elapsed();
    redis.pause(false);
    let load = load.expect("the store's timeout ends the call");
    assert!(load.is_err(), "{load:?}");
    assert!(waited >= TIMEOUT, "gave up after {waited:?}");
}

/// A store, once its last clone is dropped, stops listening: its subscription, a connection
/// to Redis, closes rather than living as long as the runtime.
#[tokio::test]
async fn a_dropped_store_closes_its_subscription() {
    let redis = RedisServer::start();
    let mut admin = redis.connection().await;
    let store = RedisStore::builder(redis.url(), "dropped-key")
        .build()
        .unwrap();
    let mut notes = store.notifications();
    tokio::time::timeout(Duration::from_secs(5), notes.notified())
        .await
        .expect("the listener subscribed");
    let mut channels = async || -> Vec<String> {
        redis::cmd("PUBSUB")
            .arg("CHANNELS")
            .query_async(&mut admin)
            .await
            .unwrap()
    };
    assert_eq!(channels().await.len(), 1, "the store's channel");
    let clone = store.clone();
    drop(store);
    assert_eq!(channels().await.len(), 1, "a clone still listens");
    drop(clone);
    tokio::time::timeout(Duration::from_secs(5), async {
        while !channels().await.is_empty() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the subscription closed");
}

#[tokio::test]
async fn an_encrypted_token_is_not_readable_at_rest_nor_without_the_key() {
    let redis = RedisServer::start();
    let sealed = RedisStore::builder(redis.url(), "enc-key")
        .encryption_key([7; 32])
        .build()
        .unwrap();
    let token = Token::bearer("ACCESS-AT-REST")
        .unwrap()
        .expires_in(Duration::from_secs(60))
        .with_refresh_token("REFRESH-AT-REST");
    sealed.publish(0, &token).await.unwrap();
    let mut connection = redis.connection().await;
    let raw: Vec<u8> = redis::cmd("HGET")
        .arg(sealed.token_key())
        .arg("val")
        .query_async(&mut connection)
        .await
        .unwrap();
    let raw = String::from_utf8_lossy(&raw);
    assert!(!raw.contains("AT-REST"), "stored in the clear");
    let loaded = sealed.load().await.unwrap().unwrap();
    assert_eq!(loaded.token.expose_access_token(), "ACCESS-AT-REST");

    let wrong = RedisStore::builder(redis.url(), "enc-key")
        .encryption_key([8; 32])
        .build()
        .unwrap();
    let error = wrong.load().await.unwrap_err();
    assert!(error.to_string().contains("decrypted"), "{error}");
    let none = RedisStore::builder(redis.url(), "enc-key").build().unwrap();
    assert!(none.load().await.is_err());
}

/// With Redis unreachable: one warning per outage, and neither it nor any `Debug` output
/// holds the Redis password, the credential or a token.
#[tokio::test]
async fn an_outage_is_one_warning_with_no_secret() {
    // Single-threaded runtime: the refresh tasks log on this thread too.
    let (captured, _guard) = capture_this_thread();

    // Nothing listens on this port.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("redis://user:PASSWORD-SECRET@127.0.0.1:{port}/");
    let builder = RedisStore::builder(url, "KEY-SECRET");
    let builder_debug = format!("{builder:?}");
    let store = builder.build().unwrap();
    let refresher = tower::service_fn(|_: TokenRequest| async {
        Ok::<_, BoxError>(
            Token::bearer("ACCESS-SECRET")?
                .expires_in(Duration::from_millis(300))
                .with_refresh_token("REFRESH-SECRET"),
        )
    });
    let cache = TokenCache::builder(refresher).store(store.clone()).build();
    for _ in 0..3 {
        assert_eq!(
            cache.token().await.unwrap().expose_access_token(),
            "ACCESS-SECRET"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let stats = cache.stats();
    let store_stats = stats.store.clone().unwrap();
    assert!(store_stats.unavailable);
    assert_eq!(store_stats.local_refreshes, 3);

    let log = captured.text();
    assert_eq!(
        log.matches("token store unreachable").count(),
        1,
        "one warning per outage: {log}"
    );
    let all = format!("{log} {builder_debug} {store:?} {cache:?} {stats:?}");
    for secret in ["PASSWORD", "KEY-SECRET", "ACCESS-SECRET", "REFRESH-SECRET"] {
        assert!(!all.contains(secret), "{secret} leaked into: {all}");
    }
}

/// `rediss://` with a certificate from a private CA, and an ACL user with a password.
#[tokio::test]
async fn over_tls_as_an_acl_user() {
    let tls = Tls::make();
    let redis = RedisServer::start_with(|port| {
        let mut args = tls.server_args(port);
        args.extend(acl_user(TLS_USER, TLS_PASSWORD));
        args
    });
    let ca = tls.ca();
    let url = |password: &str| format!("rediss://{TLS_USER}:{password}@127.0.0.1:{}/", redis.port);

    let store = RedisStore::builder(url(TLS_PASSWORD), "tls-key")
        .tls_root_certificate(ca.clone())
        .build()
        .unwrap();
    let token = Token::bearer("over-tls")
        .unwrap()
        .expires_in(Duration::from_secs(60));
    assert_eq!(
        store.publish(0, &token).await.unwrap(),
        Publish::Published { generation: 1 }
    );
    let loaded = store.load().await.unwrap().unwrap();
    assert_eq!(loaded.token.expose_access_token(), "over-tls");

    // A wrong password is an error that does not quote it.
    let refused = RedisStore::builder(url("WRONG-PASSWORD"), "tls-key")
        .tls_root_certificate(ca)
        .build()
        .unwrap();
    let error = refused.load().await.unwrap_err();
    let text = format!("{error}: {:?}", std::error::Error::source(&error));
    assert!(!text.contains("PASSWORD"), "{text}");
    // Without the CA, the server's certificate is not trusted.
    let untrusted = RedisStore::builder(url(TLS_PASSWORD), "tls-key")
        .build()
        .unwrap();
    assert!(untrusted.load().await.is_err());
}

/// DPoP replicas (feature `dpop`): two with one key, loaded from the same PEM as two
/// processes would, share one token through Redis, bound to that key, and prove it each with
/// its copy; the store's key names carry the key's thumbprint, so a replica with another key
/// keeps a token of its own rather than loading one it could not prove.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dpop_replicas_with_one_key_share_one_token() {
    use bytes::Bytes;
    use http_body_util::Full;
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;
    use tower::{Layer, ServiceExt};
    use tower_bearer::{BearerAuthLayer, ReplayBody, Scope};
    use tower_bearer_mock::oauth2::{DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, MockAuthServer};
    use tower_bearer_oauth2::OAuth2;
    use tower_bearer_oauth2::dpop::DpopKey;
    use tower_bearer_oauth2::jose::Algorithm;

    let redis = RedisServer::start();
    let server = MockAuthServer::builder()
        .require_dpop(true)
        .require_dpop_nonce(true)
        .start()
        .await
        .unwrap();
    let http = Client::builder(TokioExecutor::new()).build_http::<ReplayBody<Full<Bytes>>>();
    let replica = |key: DpopKey| {
        let store = RedisStore::builder(redis.url(), "dpop-account")
            .binding_key(key.clone())
            .build()
            .unwrap();
        let key_name = store.token_key().to_owned();
        let provider = OAuth2::builder()
            .token_endpoint(server.token_endpoint())
            .client_id(DEFAULT_CLIENT_ID)
            .client_secret(DEFAULT_CLIENT_SECRET)
            .dpop(key)
            .build(http.clone())
            .unwrap();
        (TokenCache::builder(provider).store(store).build(), key_name)
    };
    let call = |cache: &TokenCache| {
        let api = BearerAuthLayer::from_cache(cache.clone(), Scope::any()).layer(http.clone());
        let request = http::Request::get(server.uri_for("/api/items"))
            .body(Full::<Bytes>::default())
            .unwrap();
        async move { api.oneshot(request).await.unwrap().status() }
    };
    let pem = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/keys/es256.pkcs8.pem"
    ))
    .unwrap();
    let shared = DpopKey::from_pem(&pem).unwrap();

    let (one, one_key) = replica(DpopKey::from_pem(&pem).unwrap());
    let (two, two_key) = replica(DpopKey::from_pem(&pem).unwrap());
    assert_eq!(one_key, two_key);
    assert!(
        one_key.contains(&format!(":key-{}:", shared.thumbprint())),
        "{one_key}"
    );
    for cache in [&one, &two, &one, &two] {
        assert_eq!(call(cache).await, http::StatusCode::OK);
    }
    let counters = server.counters();
    assert_eq!(counters.client_credentials_grants, 1, "one token for both");
    assert_eq!(counters.dpop_resource_requests, 4);
    let token = two.token().await.unwrap();
    assert_eq!(token.binding_key().unwrap().id(), shared.thumbprint());

    let (three, three_key) = replica(DpopKey::generate(Algorithm::Es256).unwrap());
    assert_ne!(three_key, one_key);
    assert_eq!(call(&three).await, http::StatusCode::OK);
    let counters = server.counters();
    assert_eq!(counters.client_credentials_grants, 2, "a token of its own");
    assert_eq!(counters.dpop_refused, Default::default());
}
