//! Caches sharing tokens through a `MemoryStore`, on tokio's paused clock: one refresh for
//! all, the lease, publish by generation, and what happens while the store is down.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tower::{BoxError, service_fn};
use tower_bearer::store::{MemoryStore, Publish, SharedToken, StoreError, StoreFuture, TokenStore};
use tower_bearer::{
    RefreshReason, RetryAfter, ServerAnswer, Token, TokenCache, TokenErrorKind, TokenRequest,
};

mod common;
use common::{publish_by_generation, until, within};

const LIFETIME: Duration = Duration::from_secs(100);

/// What a refresher was asked: the reason, and the previous access token.
type Asked = Arc<std::sync::Mutex<Vec<(RefreshReason, Option<String>)>>>;

/// A refresher that issues `t1`, `t2`, … (numbered across every refresher sharing `issued`)
/// after `delay`, each with `LIFETIME` and a refresh token, and records what it was asked.
fn refresher(
    issued: Arc<AtomicU64>,
    delay: Duration,
    asked: Asked,
) -> impl tower::Service<TokenRequest, Response = Token, Error = BoxError, Future = impl Send + 'static>
+ Send
+ 'static {
    service_fn(move |request: TokenRequest| {
        let issued = issued.clone();
        let asked = asked.clone();
        async move {
            let previous = request
                .previous()
                .map(|t| t.expose_access_token().to_owned());
            asked.lock().unwrap().push((request.reason(), previous));
            tokio::time::sleep(delay).await;
            let n = issued.fetch_add(1, Ordering::SeqCst) + 1;
            Ok::<_, BoxError>(
                Token::bearer(format!("t{n}"))?
                    .expires_in(LIFETIME)
                    .with_refresh_token(format!("r{n}")),
            )
        }
    })
}

struct Fleet {
    store: MemoryStore,
    caches: Vec<TokenCache>,
    issued: Arc<AtomicU64>,
    asked: Asked,
}

fn fleet(n: usize, delay: Duration) -> Fleet {
    let store = MemoryStore::new();
    let issued = Arc::new(AtomicU64::new(0));
    let asked = Arc::default();
    let caches = (0..n)
        .map(|_| {
            TokenCache::builder(refresher(issued.clone(), delay, Arc::clone(&asked)))
                .store(store.clone())
                .lease(Duration::from_secs(3))
                .store_poll(Duration::from_millis(100))
                // The tests below place each refresh ahead at its window's start.
                .refresh_jitter(0.0)
                .build()
        })
        .collect();
    Fleet {
        store,
        caches,
        issued,
        asked,
    }
}

async fn tokens(caches: &[TokenCache]) -> Vec<String> {
    let mut out = Vec::new();
    for cache in caches {
        out.push(
            within(cache.token())
                .await
                .unwrap()
                .expose_access_token()
                .to_owned(),
        );
    }
    out
}

#[tokio::test(start_paused = true)]
async fn concurrent_first_requests_across_caches_cost_one_refresh() {
    let fleet = fleet(5, Duration::from_millis(200));
    let all = fleet.caches.iter().map(|c| {
        let c = c.clone();
        tokio::spawn(async move { c.token().await.unwrap().expose_access_token().to_owned() })
    });
    let mut got = Vec::new();
    for task in all.collect::<Vec<_>>() {
        got.push(within(task).await.unwrap());
    }
    assert_eq!(got, vec!["t1"; 5]);
    assert_eq!(fleet.issued.load(Ordering::SeqCst), 1);
    assert_eq!(fleet.store.generation(), 1);
    let stats: Vec<_> = fleet
        .caches
        .iter()
        .map(|c| c.stats().store.unwrap())
        .collect();
    assert_eq!(stats.iter().map(|s| s.leases_won).sum::<u64>(), 1);
    assert_eq!(stats.iter().map(|s| s.publishes).sum::<u64>(), 1);
    assert_eq!(stats.iter().map(|s| s.adopted).sum::<u64>(), 4);
    assert_eq!(stats.iter().map(|s| s.leases_lost).sum::<u64>(), 4);
    // The lease is released once the token is published.
    assert_eq!(fleet.store.lease_holder(), None);
}

#[tokio::test(start_paused = true)]
async fn refreshes_ahead_are_shared_and_use_the_shared_refresh_token() {
    let fleet = fleet(4, Duration::from_millis(50));
    assert_eq!(tokens(&fleet.caches).await, vec!["t1"; 4]);

    // Into every cache's refresh-ahead window (the last quarter of the lifetime).
    tokio::time::advance(LIFETIME * 3 / 4 + Duration::from_secs(1)).await;
    // Each notices and starts its background refresh; they all still get t1 meanwhile.
    assert_eq!(tokens(&fleet.caches).await, vec!["t1"; 4]);
    // The background refreshes end (the clock is paused: this is not a real wait).
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(tokens(&fleet.caches).await, vec!["t2"; 4]);
    assert_eq!(
        fleet.issued.load(Ordering::SeqCst),
        2,
        "one refresh for the fleet"
    );
    let asked = fleet.asked.lock().unwrap().clone();
    assert_eq!(
        asked,
        vec![
            (RefreshReason::Initial, None),
            (RefreshReason::Ahead, Some("t1".to_owned()))
        ]
    );
    assert_eq!(fleet.store.generation(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_rejected_token_is_replaced_once_for_the_fleet() {
    let fleet = fleet(3, Duration::from_millis(10));
    let t1 = within(fleet.caches[0].token()).await.unwrap();
    assert_eq!(tokens(&fleet.caches).await, vec!["t1"; 3]);
    tokio::time::advance(Duration::from_secs(20)).await;

    // Every replica meets a 401 with t1: one refresh, and every one gets its successor.
    for cache in &fleet.caches {
        let next = within(cache.reject(&t1)).await.unwrap();
        assert_eq!(next.expose_access_token(), "t2");
    }
    assert_eq!(fleet.issued.load(Ordering::SeqCst), 2);
}

// ===== which shared token a cache takes instead of refreshing =====
//
// A token published by hand at the start, living `LIFETIME`: its refresh-ahead window opens
// three quarters into its life, and its minimum validity (a tenth of it) starts at nine tenths.

/// Publishes `shared`, living `LIFETIME` from now, as the store's first token.
async fn publish_shared(store: &MemoryStore) {
    let shared = Token::bearer("shared")
        .unwrap()
        .expires_in(LIFETIME)
        .with_refresh_token("shared-refresh");
    let published = store.publish(0, &shared).await.unwrap();
    assert_eq!(published, Publish::Published { generation: 1 });
}

#[tokio::test(start_paused = true)]
async fn a_shared_token_inside_its_minimum_validity_is_not_taken() {
    let fleet = fleet(1, Duration::ZERO);
    publish_shared(&fleet.store).await;
    tokio::time::advance(LIFETIME * 9 / 10).await;

    let token = within(fleet.caches[0].token()).await.unwrap();

    assert_eq!(token.expose_access_token(), "t1");
    assert_eq!(
        *fleet.asked.lock().unwrap(),
        [(RefreshReason::Initial, Some("shared".to_owned()))],
        "one refresh, with the shared token's refresh token"
    );
    let stats = fleet.caches[0].stats().store.unwrap();
    assert_eq!((stats.adopted, stats.publishes), (0, 1));
    assert_eq!(fleet.store.generation(), 2);
}

#[tokio::test(start_paused = true)]
async fn an_expired_shared_token_is_not_taken() {
    let fleet = fleet(1, Duration::ZERO);
    publish_shared(&fleet.store).await;
    tokio::time::advance(LIFETIME).await;

    let token = within(fleet.caches[0].token()).await.unwrap();

    assert_eq!(token.expose_access_token(), "t1");
    assert_eq!(fleet.caches[0].stats().store.unwrap().adopted, 0);
    assert_eq!(fleet.store.generation(), 2);
}

// A token in its refresh-ahead window can still be sent: a cache that has none takes it, and
// its requests need not wait for a refresh.
#[tokio::test(start_paused = true)]
async fn a_cache_without_a_token_takes_a_shared_one_in_its_refresh_ahead_window() {
    let fleet = fleet(1, Duration::ZERO);
    publish_shared(&fleet.store).await;
    tokio::time::advance(LIFETIME * 3 / 4).await;

    let token = within(fleet.caches[0].token()).await.unwrap();

    assert_eq!(token.expose_access_token(), "shared");
    assert!(fleet.asked.lock().unwrap().is_empty(), "no refresher call");
    assert_eq!(fleet.caches[0].stats().store.unwrap().adopted, 1);
}

// A refresh ahead of expiry that took a token itself due for refresh would leave the cache
// where it started: in the window, with a refresh still to do.
#[tokio::test(start_paused = true)]
async fn a_refresh_ahead_does_not_take_a_shared_token_that_is_itself_due_for_one() {
    let fleet = fleet(1, Duration::ZERO);
    let cache = &fleet.caches[0];
    publish_shared(&fleet.store).await;
    // The cache got a token of its own while the store was down, at the same time.
    fleet.store.set_unavailable(true);
    assert_eq!(tokens(&fleet.caches).await, ["t1"]);
    fleet.store.set_unavailable(false);

    // Both tokens enter their refresh-ahead window now; the next request notices.
    tokio::time::advance(LIFETIME * 3 / 4).await;
    assert_eq!(tokens(&fleet.caches).await, ["t1"]);
    until(|| cache.stats().refreshes(RefreshReason::Ahead).succeeded == 1).await;

    assert_eq!(tokens(&fleet.caches).await, ["t2"]);
    assert_eq!(
        fleet.asked.lock().unwrap().last().unwrap(),
        &(RefreshReason::Ahead, Some("shared".to_owned())),
        "refreshed with the shared token's refresh token"
    );
    let stats = cache.stats().store.unwrap();
    assert_eq!((stats.adopted, stats.publishes), (0, 1));
    assert_eq!(fleet.store.generation(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_dead_lease_holder_delays_the_others_by_the_lease_at_most() {
    let fleet = fleet(2, Duration::from_millis(10));
    // A replica that took the lease and died: nobody releases or renews it.
    assert!(
        fleet
            .store
            .try_lease("dead-replica", Duration::from_secs(3))
            .await
            .unwrap()
    );

    let started = tokio::time::Instant::now();
    assert_eq!(tokens(&fleet.caches).await, vec!["t1"; 2]);
    let waited = started.elapsed();
    assert!(waited >= Duration::from_secs(3), "{waited:?}");
    assert!(
        waited < Duration::from_secs(3) + Duration::from_millis(300),
        "{waited:?}"
    );
    assert_eq!(fleet.issued.load(Ordering::SeqCst), 1);
    assert_eq!(fleet.store.lease_holder(), None);
}

#[tokio::test(start_paused = true)]
async fn a_live_holder_renews_its_lease_through_a_slow_refresh() {
    // The refresh takes 10 s, the lease 3 s: renewed, the lease holds, and the other cache
    // waits instead of refreshing too.
    let fleet = fleet(2, Duration::from_secs(10));
    let first = fleet.caches[0].clone();
    let a = tokio::spawn(async move { first.token().await.unwrap() });
    let store = fleet.store.clone();
    until(|| store.lease_holder().is_some()).await;
    let b = within(fleet.caches[1].token()).await.unwrap();
    assert_eq!(b.expose_access_token(), "t1");
    assert_eq!(within(a).await.unwrap().expose_access_token(), "t1");
    assert_eq!(fleet.issued.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn a_stale_publish_is_refused() {
    let store = MemoryStore::new();
    let token = |s: &str| Token::bearer(s).unwrap().expires_in(LIFETIME);
    // A slow replica that loaded generation 1 cannot overwrite generation 2.
    publish_by_generation(&store, &token("a"), &token("b")).await;
}

#[tokio::test(start_paused = true)]
async fn without_the_store_each_cache_refreshes_alone_and_rejoins_when_it_is_back() {
    let fleet = fleet(3, Duration::from_millis(10));
    fleet.store.set_unavailable(true);
    let got = tokens(&fleet.caches).await;
    assert_eq!(got.len(), 3);
    assert_eq!(
        fleet.issued.load(Ordering::SeqCst),
        3,
        "each refreshed alone"
    );
    for cache in &fleet.caches {
        let stats = cache.stats().store.unwrap();
        assert!(stats.unavailable);
        assert_eq!(stats.local_refreshes, 1);
        assert!(stats.errors >= 1);
    }

    fleet.store.set_unavailable(false);
    tokio::time::advance(LIFETIME * 3 / 4 + Duration::from_secs(1)).await;
    let _ = tokens(&fleet.caches).await; // each notices its window
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        tokens(&fleet.caches).await,
        vec!["t4"; 3],
        "converged on one token"
    );
    assert_eq!(fleet.issued.load(Ordering::SeqCst), 4);
    for cache in &fleet.caches {
        let stats = cache.stats().store.unwrap();
        assert!(!stats.unavailable);
        assert_eq!(stats.unavailable_for, None);
    }
}

#[tokio::test(start_paused = true)]
async fn a_store_that_does_not_answer_in_time_is_an_outage() {
    struct Hangs;
    impl TokenStore for Hangs {
        fn load(
            &self,
        ) -> tower_bearer::store::StoreFuture<'_, Option<tower_bearer::store::SharedToken>>
        {
            Box::pin(std::future::pending())
        }
        fn try_lease<'a>(
            &'a self,
            _: &'a str,
            _: Duration,
        ) -> tower_bearer::store::StoreFuture<'a, bool> {
            Box::pin(std::future::pending())
        }
        fn renew<'a>(
            &'a self,
            _: &'a str,
            _: Duration,
        ) -> tower_bearer::store::StoreFuture<'a, bool> {
            Box::pin(std::future::pending())
        }
        fn release<'a>(&'a self, _: &'a str) -> tower_bearer::store::StoreFuture<'a, ()> {
            Box::pin(std::future::pending())
        }
        fn publish<'a>(
            &'a self,
            _: u64,
            _: &'a Token,
        ) -> tower_bearer::store::StoreFuture<'a, Publish> {
            Box::pin(std::future::pending())
        }
    }
    let issued = Arc::new(AtomicU64::new(0));
    let cache = TokenCache::builder(refresher(issued.clone(), Duration::ZERO, Arc::default()))
        .store(Hangs)
        .store_timeout(Duration::from_millis(500))
        .build();
    let started = tokio::time::Instant::now();
    assert_eq!(
        within(cache.token()).await.unwrap().expose_access_token(),
        "t1"
    );
    assert_eq!(started.elapsed(), Duration::from_millis(500));
    let stats = cache.stats().store.unwrap();
    assert!(stats.unavailable);
    assert_eq!(stats.local_refreshes, 1);
}

/// A `MemoryStore` whose calls named in `fails` fail with `error()`.
struct Failing {
    inner: MemoryStore,
    fails: &'static [&'static str],
    error: fn() -> StoreError,
}

impl Failing {
    fn call<'a, T: Send + 'a>(&self, name: &str, call: StoreFuture<'a, T>) -> StoreFuture<'a, T> {
        if self.fails.contains(&name) {
            Box::pin(std::future::ready(Err((self.error)())))
        } else {
            call
        }
    }
}

impl TokenStore for Failing {
    fn load(&self) -> StoreFuture<'_, Option<SharedToken>> {
        self.call("load", self.inner.load())
    }
    fn try_lease<'a>(&'a self, owner: &'a str, ttl: Duration) -> StoreFuture<'a, bool> {
        self.call("try_lease", self.inner.try_lease(owner, ttl))
    }
    fn renew<'a>(&'a self, owner: &'a str, ttl: Duration) -> StoreFuture<'a, bool> {
        self.call("renew", self.inner.renew(owner, ttl))
    }
    fn release<'a>(&'a self, owner: &'a str) -> StoreFuture<'a, ()> {
        self.call("release", self.inner.release(owner))
    }
    fn publish<'a>(&'a self, replaces: u64, token: &'a Token) -> StoreFuture<'a, Publish> {
        self.call("publish", self.inner.publish(replaces, token))
    }
}

#[tokio::test(start_paused = true)]
async fn an_outage_is_timed_from_the_first_failed_store_call() {
    let fleet = fleet(1, Duration::ZERO);
    fleet.store.set_unavailable(true);
    assert_eq!(tokens(&fleet.caches).await, ["t1"]);

    tokio::time::advance(Duration::from_secs(10)).await;

    let stats = fleet.caches[0].stats().store.unwrap();
    assert_eq!(stats.errors, 1, "the one load that failed");
    assert_eq!(stats.unavailable_for, Some(Duration::from_secs(10)));
}

// A store that cannot hold this cache's tokens will not be fixed by trying again: it is
// logged as an error, and it is no outage.
#[tokio::test(start_paused = true)]
async fn a_store_that_cannot_hold_the_tokens_is_not_an_outage() {
    let store = Failing {
        inner: MemoryStore::new(),
        fails: &["load", "try_lease", "renew", "release", "publish"],
        error: || StoreError::misconfigured("this store cannot hold these tokens"),
    };
    let issued = Arc::new(AtomicU64::new(0));
    let cache = TokenCache::builder(refresher(issued, Duration::ZERO, Arc::default()))
        .store(store)
        .build();

    let token = within(cache.token()).await.unwrap();

    assert_eq!(token.expose_access_token(), "t1");
    let stats = cache.stats().store.unwrap();
    assert_eq!(stats.local_refreshes, 1);
    assert!(!stats.unavailable);
    assert_eq!(stats.unavailable_for, None);
}

// The refresh releases the lease itself, through the same call as every other store call:
// a release that fails is counted, and says the store is unavailable, as any failed call.
#[tokio::test(start_paused = true)]
async fn a_release_the_store_refuses_is_a_failed_store_call() {
    let store = Failing {
        inner: MemoryStore::new(),
        fails: &["release"],
        error: || StoreError::msg("the store refused the release"),
    };
    let issued = Arc::new(AtomicU64::new(0));
    let cache = TokenCache::builder(refresher(issued, Duration::ZERO, Arc::default()))
        .store(store)
        .build();

    let token = within(cache.token()).await.unwrap();

    assert_eq!(token.expose_access_token(), "t1");
    let stats = cache.stats().store.unwrap();
    assert_eq!((stats.publishes, stats.errors), (1, 1));
    assert!(stats.unavailable, "the last store call failed");
}

// A refresh abandoned while it holds the lease (here, past the refresh timeout) releases it
// at once, rather than making the other replicas wait for it to run out.
#[tokio::test(start_paused = true)]
async fn a_refresh_that_times_out_releases_its_lease_at_once() {
    let store = MemoryStore::new();
    let issued = Arc::new(AtomicU64::new(0));
    let cache = TokenCache::builder(refresher(issued, Duration::from_secs(10), Arc::default()))
        .store(store.clone())
        .lease(Duration::from_secs(3))
        .refresh_timeout(Duration::from_secs(2))
        .build();

    let error = within(cache.token()).await.unwrap_err();

    assert!(
        matches!(error.kind(), TokenErrorKind::TimedOut { .. }),
        "{error}"
    );
    until(|| store.lease_holder().is_none()).await;
}

#[tokio::test(start_paused = true)]
async fn debug_output_of_a_cache_with_a_store_has_no_secret() {
    let fleet = fleet(1, Duration::ZERO);
    let _ = tokens(&fleet.caches).await;
    let text = format!(
        "{:?} {:?} {:?}",
        fleet.caches[0],
        fleet.caches[0].stats(),
        fleet.store
    );
    assert!(!text.contains("t1") && !text.contains("r1"), "{text}");
    // How the cache uses its store: its settings, as the builder left them.
    assert!(
        text.contains("lease: 3s") && text.contains("poll: 100ms"),
        "{text}"
    );
}

// ===== one backoff for the fleet =====

/// What a scripted refresher does when called.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Answers {
    /// A token, `t1`, `t2`, … as [`refresher`] issues them.
    Token,
    /// The authorization server's 503.
    Unavailable,
    /// This replica's own failure: the server was never reached.
    Unreachable,
}

type Script = Arc<std::sync::Mutex<Answers>>;

/// A cache of a fleet sharing `store`, whose refresher answers as `script` says at the time of
/// each call, counting its calls in `calls`.
fn scripted(
    store: &MemoryStore,
    issued: &Arc<AtomicU64>,
    calls: &Arc<AtomicU64>,
) -> (TokenCache, Script) {
    let script = Arc::new(std::sync::Mutex::new(Answers::Token));
    let (issued, calls, answers) = (issued.clone(), calls.clone(), script.clone());
    let refresher = service_fn(move |_: TokenRequest| {
        calls.fetch_add(1, Ordering::SeqCst);
        let answer = *answers.lock().unwrap();
        let issued = issued.clone();
        async move {
            match answer {
                Answers::Token => {
                    let n = issued.fetch_add(1, Ordering::SeqCst) + 1;
                    Ok(Token::bearer(format!("t{n}"))?.expires_in(LIFETIME))
                }
                Answers::Unavailable => {
                    Err(ServerAnswer::new(http::StatusCode::SERVICE_UNAVAILABLE).into())
                }
                Answers::Unreachable => Err::<Token, BoxError>("connection refused".into()),
            }
        }
    });
    let cache = TokenCache::builder(refresher)
        .store(store.clone())
        .store_poll(Duration::from_millis(100))
        // Every refresh ahead at its window's start.
        .refresh_jitter(0.0)
        .build();
    (cache, script)
}

/// `n` scripted caches sharing one store; every refresher call is counted in the one count.
fn scripted_fleet(n: usize) -> (MemoryStore, Vec<(TokenCache, Script)>, Arc<AtomicU64>) {
    let store = MemoryStore::new();
    let (issued, calls) = (Arc::default(), Arc::default());
    let fleet = (0..n).map(|_| scripted(&store, &issued, &calls)).collect();
    (store, fleet, calls)
}

#[tokio::test(start_paused = true)]
async fn a_failure_the_server_answered_is_waited_out_by_the_whole_fleet() {
    let (store, fleet, calls) = scripted_fleet(4);
    for (_, script) in &fleet {
        *script.lock().unwrap() = Answers::Unavailable;
    }

    let first = within(fleet[0].0.token()).await.unwrap_err();
    assert_eq!(first.kind(), TokenErrorKind::Refresher);
    for (cache, _) in &fleet[1..3] {
        let err = within(cache.token()).await.unwrap_err();
        let TokenErrorKind::SharedBackoff { retry_in } = err.kind() else {
            panic!("not the fleet's backoff: {err}");
        };
        assert!(retry_in > Duration::ZERO && retry_in <= Duration::from_secs(1));
        let failure = err.shared_failure().unwrap();
        assert_eq!(failure.status, http::StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(failure.consecutive, 1);
        assert!(err.to_string().contains("503 Service Unavailable"), "{err}");
        assert!(
            err.refresher_error().is_none(),
            "this replica called nobody"
        );
        assert_eq!(cache.stats().store.unwrap().failures_adopted, 1);
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1, "one call for the fleet");
    assert_eq!(fleet[0].0.stats().store.unwrap().failures_published, 1);

    // The next step: one call again, by whichever replica asks first (here one that had not
    // met the failure), and a backoff doubled from the fleet's count, not started again from
    // the shortest.
    tokio::time::advance(Duration::from_secs(1)).await;
    let err = within(fleet[3].0.token()).await.unwrap_err();
    assert_eq!(err.kind(), TokenErrorKind::Refresher);
    for (cache, _) in &fleet {
        let err = within(cache.token()).await.unwrap_err();
        assert!(
            matches!(err.kind(), TokenErrorKind::SharedBackoff { retry_in } | TokenErrorKind::BackingOff { retry_in }
                if retry_in > Duration::from_millis(900)),
            "{err:?}"
        );
    }
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert_eq!(store.load_failure().await.unwrap().unwrap().consecutive, 2);

    // The server is back: after the step, one call, and every replica has its token.
    for (_, script) in &fleet {
        *script.lock().unwrap() = Answers::Token;
    }
    tokio::time::advance(Duration::from_secs(2)).await;
    assert_eq!(
        tokens(&fleet.iter().map(|(c, _)| c.clone()).collect::<Vec<_>>()).await,
        ["t1"; 4]
    );
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    assert_eq!(
        store.load_failure().await.unwrap(),
        None,
        "the publish ended it"
    );
}

#[tokio::test(start_paused = true)]
async fn a_replicas_own_failure_does_not_stop_the_others() {
    let (store, fleet, calls) = scripted_fleet(3);
    *fleet[0].1.lock().unwrap() = Answers::Unreachable;

    let err = within(fleet[0].0.token()).await.unwrap_err();
    assert_eq!(err.kind(), TokenErrorKind::Refresher);
    assert_eq!(store.load_failure().await.unwrap(), None, "nothing shared");
    assert_eq!(fleet[0].0.stats().store.unwrap().failures_published, 0);

    let caches: Vec<_> = fleet[1..].iter().map(|(c, _)| c.clone()).collect();
    assert_eq!(tokens(&caches).await, ["t1"; 2]);
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn a_valid_token_is_kept_through_the_fleets_backoff() {
    let (_store, fleet, calls) = scripted_fleet(2);
    let caches: Vec<_> = fleet.iter().map(|(c, _)| c.clone()).collect();
    assert_eq!(tokens(&caches).await, ["t1"; 2]);
    for (_, script) in &fleet {
        *script.lock().unwrap() = Answers::Unavailable;
    }

    // In the refresh-ahead window: each starts a refresh ahead; one calls and fails, the
    // other meets the failure.
    tokio::time::advance(LIFETIME * 3 / 4).await;
    assert_eq!(tokens(&caches).await, ["t1"; 2]);
    until(|| {
        caches
            .iter()
            .all(|c| c.stats().refreshes(RefreshReason::Ahead).failed == 1)
    })
    .await;
    assert_eq!(tokens(&caches).await, ["t1"; 2], "still the valid token");
    assert_eq!(
        calls.load(Ordering::SeqCst),
        2,
        "one initial, one refresh ahead"
    );
}

#[tokio::test(start_paused = true)]
async fn a_permanent_refusal_is_shared_for_its_backoff() {
    let store = MemoryStore::new();
    let calls = Arc::new(AtomicU64::new(0));
    let make = || {
        let calls = calls.clone();
        TokenCache::builder(service_fn(move |_: TokenRequest| {
            calls.fetch_add(1, Ordering::SeqCst);
            let answer =
                ServerAnswer::new(http::StatusCode::BAD_REQUEST).with_error("invalid_client");
            async move {
                Err::<Token, _>(BoxError::from(
                    RetryAfter::permanent("a permanent refusal").answered(answer),
                ))
            }
        }))
        .store(store.clone())
        .build()
    };
    let (a, b) = (make(), make());
    within(a.token()).await.unwrap_err();
    let err = within(b.token()).await.unwrap_err();
    let failure = err.shared_failure().expect("shared");
    assert!(failure.permanent);
    assert_eq!(failure.error.as_deref(), Some("invalid_client"));
    let TokenErrorKind::SharedBackoff { retry_in } = err.kind() else {
        unreachable!()
    };
    assert!(
        retry_in >= Duration::from_secs(15),
        "the longest backoff, jittered: {retry_in:?}"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}
