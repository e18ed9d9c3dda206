//! Unit tests of the cache's edges that the public API cannot reach deterministically.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;
use tower::{BoxError, service_fn};

use super::*;
use crate::{RefreshReason, RetryAfter, Token, TokenErrorKind, TokenRequest};

/// The previous token's access token, for each refresher call.
type Previous = Arc<Mutex<Vec<Option<String>>>>;

/// A refresher that counts its calls and answers tokens `t1`, `t2`, … living `lifetime`
/// (no expiry when `None`), each with a refresh token, remembering the previous token's
/// access token of every call.
fn counting(lifetime: Option<Duration>) -> (impl Refresher, Previous) {
    let calls = Arc::new(AtomicUsize::new(0));
    let previous = Arc::new(Mutex::new(Vec::new()));
    let seen = previous.clone();
    let refresher = service_fn(move |request: TokenRequest| {
        let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
        seen.lock().unwrap().push(
            request
                .previous()
                .map(|t| t.expose_access_token().to_owned()),
        );
        async move {
            let token = Token::bearer(format!("t{n}"))?.with_refresh_token(format!("r{n}"));
            Ok::<_, BoxError>(match lifetime {
                Some(lifetime) => token.expires_in(lifetime),
                None => token,
            })
        }
    });
    (refresher, previous)
}

/// `future`'s output, failing the test rather than hanging if it does not complete: on the
/// paused clock a cache waiting for nothing reaches the timeout at once, and one spinning
/// (refreshing over and over with a refresher that answers at once, so that the clock never
/// moves) wakes the future on every turn, and reaches the bound on its polls.
async fn within<F: std::future::Future>(future: F) -> F::Output {
    let mut future = std::pin::pin!(tokio::time::timeout(Duration::from_secs(10 * 60), future));
    let mut polls = 0;
    std::future::poll_fn(|cx| {
        polls += 1;
        assert!(polls <= 1_000, "woken {polls} times: the cache is spinning");
        future.as_mut().poll(cx)
    })
    .await
    .expect("still pending: the test would have hung here")
}

/// Bug: a `RetryAfter` hint too long for the clock overflowed `Instant + Duration` in the
/// refresh task, which then died holding the lock; every waiter got `Abandoned` instead of
/// the refresher's error, and the cache forgot the failure.
#[tokio::test(start_paused = true)]
async fn a_huge_retry_after_hint_is_a_long_backoff_not_a_panic() {
    let refresher = service_fn(|_: TokenRequest| async {
        Err::<Token, _>(RetryAfter::new(Duration::MAX, "come back never"))
    });
    let cache = TokenCache::new(refresher);

    let error = within(cache.token()).await.unwrap_err();

    assert_eq!(error.kind(), TokenErrorKind::Refresher);
    let backing_off = cache.stats().backing_off.expect("backing off");
    // A year: the hint is cut at the longest wait, and not shorter.
    assert!(backing_off >= LONGEST_WAIT - Duration::from_secs(1));
    assert!(
        backing_off >= Duration::from_secs(364 * 24 * 60 * 60),
        "{backing_off:?}"
    );
    let again = within(cache.token()).await.unwrap_err();
    assert!(matches!(again.kind(), TokenErrorKind::BackingOff { .. }));
}

/// A permanent failure (credentials refused) waits the longest backoff at once, not the
/// shortest: the refresher is not called again a second later to be refused again.
#[tokio::test(start_paused = true)]
async fn a_permanent_failure_backs_off_to_the_maximum_at_once() {
    let refresher = service_fn(|_: TokenRequest| async {
        Err::<Token, _>(RetryAfter::permanent("invalid_client"))
    });
    let cache = TokenCache::builder(refresher)
        .backoff(Duration::from_secs(1), Duration::from_secs(600))
        .build();

    within(cache.token()).await.unwrap_err();

    let backing_off = cache.stats().backing_off.expect("backing off");
    // Jittered between half and all of the maximum.
    assert!(backing_off >= Duration::from_secs(300), "{backing_off:?}");
    assert!(backing_off <= Duration::from_secs(600), "{backing_off:?}");
}

/// Bug: a huge maximum backoff overflowed the same addition.
#[tokio::test(start_paused = true)]
async fn a_huge_backoff_setting_does_not_overflow() {
    let refresher = service_fn(|_: TokenRequest| async { Err::<Token, BoxError>("down".into()) });
    let cache = TokenCache::builder(refresher)
        .backoff(Duration::MAX, Duration::MAX)
        .build();

    let error = within(cache.token()).await.unwrap_err();

    assert_eq!(error.kind(), TokenErrorKind::Refresher);
    assert!(cache.stats().backing_off.is_some());
}

/// Bug: `min_token_age(Duration::MAX)` and a token with no expiry (so no lifetime to cap
/// the age by) overflowed `now + min_token_age` when the token was stored.
#[tokio::test(start_paused = true)]
async fn a_huge_min_token_age_with_an_endless_token() {
    let (refresher, _) = counting(None);
    let cache = TokenCache::builder(refresher)
        .min_token_age(Duration::MAX)
        .build();

    let token = within(cache.token())
        .await
        .expect("a token, not an abandoned refresh");

    assert_eq!(token.expose_access_token(), "t1");
    // Never old enough to blame: a 401 gives the same token back.
    let same = within(cache.reject(&token)).await.unwrap();
    assert_eq!(same.expose_access_token(), "t1");
    assert_eq!(cache.stats().not_replaced, 1);
}

/// Bug: a request holding an entry that had since been replaced (a reader's snapshot, taken
/// just before a forced refresh ended) could start a background refresh for it, handing the
/// refresher the old token's refresh token, which the replacement had already spent.
#[tokio::test(start_paused = true)]
async fn a_replaced_entry_starts_no_refresh_ahead() {
    let lifetime = Duration::from_secs(100);
    let (refresher, previous) = counting(Some(lifetime));
    // The window's start, not a point drawn in it.
    let cache = TokenCache::builder(refresher).refresh_jitter(0.0).build();

    let first = within(cache.token()).await.unwrap();
    let stale = cache.shared.current.load_full().unwrap();
    tokio::time::advance(Duration::from_secs(20)).await;
    let second = within(cache.reject(&first)).await.unwrap();
    assert_eq!(second.expose_access_token(), "t2");

    // Inside the first token's refresh-ahead window (the last quarter of its life), not the
    // second's.
    tokio::time::advance(Duration::from_secs(60)).await;
    let now = Instant::now();
    assert!(stale.refresh_at.is_some_and(|at| now >= at));
    cache.refresh_ahead_once(&stale, now);
    tokio::task::yield_now().await;

    let stats = cache.stats();
    assert_eq!(stats.refreshes(RefreshReason::Ahead).started, 0);
    assert!(!stats.refreshing);
    assert_eq!(
        *previous.lock().unwrap(),
        [None, Some("t1".to_owned())],
        "t1's refresh token was offered only once"
    );

    // The current entry still refreshes ahead when its own window comes.
    tokio::time::advance(Duration::from_secs(20)).await;
    assert!(cache.current_as_is().is_some());
    tokio::task::yield_now().await;
    assert_eq!(cache.stats().refreshes(RefreshReason::Ahead).succeeded, 1);
    assert_eq!(previous.lock().unwrap()[2].as_deref(), Some("t2"));
}

/// The hot path reads the clock only once a token's alarm has rung: the entry a refresh
/// stores carries an alarm set shortly before its first window, not one that has rung already.
#[tokio::test(start_paused = true)]
async fn a_new_token_is_used_without_reading_the_clock_until_shortly_before_its_first_window() {
    let lifetime = Duration::from_secs(3600);
    let (refresher, _) = counting(Some(lifetime));
    // The window's start, not a point drawn in it.
    let cache = TokenCache::builder(refresher).refresh_jitter(0.0).build();
    within(cache.token()).await.unwrap();
    let entry = cache.shared.current.load_full().unwrap();
    assert!(!entry.alarm.has_rung());

    // The refresh-ahead window (the last five minutes) opens a second after the alarm.
    let alarm_at = lifetime - Duration::from_secs(5 * 60) - alarm::AHEAD;
    tokio::time::advance(alarm_at - Duration::from_millis(1)).await;
    assert!(!entry.alarm.has_rung());
    tokio::time::advance(Duration::from_millis(1)).await;
    assert!(entry.alarm.has_rung());
}

/// Only the first request to find a token in its refresh-ahead window takes the cache's lock
/// to start the background refresh: it claims the token's refresh first, and the requests
/// after it see the claim and go on without the lock.
#[tokio::test(start_paused = true)]
async fn the_first_request_in_the_refresh_ahead_window_claims_the_background_refresh() {
    let lifetime = Duration::from_secs(100);
    let (refresher, _) = counting(Some(lifetime));
    // The window's start, not a point drawn in it.
    let cache = TokenCache::builder(refresher).refresh_jitter(0.0).build();
    within(cache.token()).await.unwrap();
    let entry = cache.shared.current.load_full().unwrap();

    tokio::time::advance(lifetime * 3 / 4).await;
    assert_eq!(entry.next_ahead.load(Ordering::Relaxed), 0);
    assert!(cache.current_as_is().is_some());

    assert_eq!(entry.next_ahead.load(Ordering::Relaxed), entry::CLAIMED);
    assert_eq!(cache.stats().refreshes(RefreshReason::Ahead).started, 1);
}

/// A background refresh that failed leaves the requests of its backoff on the lock-free path:
/// the token's next attempt is set to the backoff's end, so they neither claim the refresh nor
/// take the cache's lock to learn that it is not yet time.
#[tokio::test(start_paused = true)]
async fn a_failed_refresh_ahead_sets_the_next_attempt_to_its_backoffs_end() {
    let lifetime = Duration::from_secs(100);
    let calls = Arc::new(AtomicUsize::new(0));
    let refresher = service_fn(move |_: TokenRequest| {
        let first = calls.fetch_add(1, Ordering::SeqCst) == 0;
        async move {
            if first {
                Ok(Token::bearer("t1")?.expires_in(lifetime))
            } else {
                Err::<Token, BoxError>("down".into())
            }
        }
    });
    let cache = TokenCache::builder(refresher).refresh_jitter(0.0).build();
    within(cache.token()).await.unwrap();
    let entry = cache.shared.current.load_full().unwrap();

    tokio::time::advance(lifetime * 3 / 4).await;
    assert!(cache.current_as_is().is_some());
    within(async {
        while cache.stats().refreshes(RefreshReason::Ahead).failed == 0 {
            tokio::task::yield_now().await;
        }
    })
    .await;

    let backing_off = cache.stats().backing_off.expect("backing off");
    let retry_at = Instant::now() + backing_off;
    let at = retry_at.duration_since(cache.shared.epoch).as_nanos() as u64;
    assert_eq!(entry.next_ahead.load(Ordering::Relaxed), at);
    assert!(cache.current_as_is().is_some());
    assert_eq!(
        entry.next_ahead.load(Ordering::Relaxed),
        at,
        "claimed in the backoff"
    );
}

/// A source that gives back the token it holds until shortly before its expiry (GCP's
/// metadata server does, until five minutes before) causes no refresh loop: each answer with
/// less life than the refresh-ahead window is used, and its windows, fractions of the life it
/// has left, open the next attempt three quarters of that later. Each attempt comes closer to
/// the expiry, so the source's own renewal point is reached after a few, in the background:
/// no request waits.
#[tokio::test(start_paused = true)]
async fn a_source_that_gives_back_its_token_until_near_expiry_is_not_asked_in_a_loop() {
    let lifetime = Duration::from_secs(60);
    let renews_before = Duration::from_secs(2);
    let start = Instant::now();
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    // The same token until `renews_before` its expiry, then the next, as GCP's cache does.
    let refresher = service_fn(move |_: TokenRequest| {
        counted.fetch_add(1, Ordering::SeqCst);
        let now = Instant::now();
        let lives = ((now - start).as_nanos() / lifetime.as_nanos()) as u32;
        let mut n = lives + 1;
        let mut expiry = start + lifetime * n;
        if expiry - now <= renews_before {
            n += 1;
            expiry += lifetime;
        }
        async move { Ok::<_, BoxError>(Token::bearer(format!("t{n}"))?.expires_at(expiry)) }
    });
    let cache = TokenCache::builder(refresher)
        .refresh_ahead(Duration::from_secs(20))
        .min_validity(Duration::from_secs(1))
        .refresh_jitter(0.0)
        .build();

    // A request every 10 ms for two token lifetimes.
    let mut tokens = std::collections::BTreeSet::new();
    for _ in 0..12_000 {
        let token = within(cache.token()).await.unwrap();
        tokens.insert(token.expose_access_token().to_owned());
        tokio::time::advance(Duration::from_millis(10)).await;
    }

    assert_eq!(tokens.len(), 3, "{tokens:?}");
    // The first token, then per lifetime: given back at 3/4 of it and at 15/16, renewed at
    // 63/64, the first point inside the source's last 2 s.
    assert_eq!(calls.load(Ordering::SeqCst), 7);
    let stats = cache.stats();
    assert_eq!(stats.refreshes(RefreshReason::Ahead).failed, 0);
    assert_eq!(
        stats.refreshes(RefreshReason::Expired).started,
        0,
        "a request waited"
    );
}

/// A service's `Debug` shows its reader by name, without the token it holds.
#[tokio::test(start_paused = true)]
async fn a_reader_shows_its_name_and_nothing_it_holds() {
    let (refresher, _) = counting(None);
    let cache = TokenCache::new(refresher);
    within(cache.token()).await.unwrap();
    let mut reader = cache.reader();
    assert!(cache.entry_as_is(&mut reader).is_some());

    assert_eq!(format!("{reader:?}"), "Reader { .. }");
}

/// A token from the store that is inside its refresh-ahead window is not taken instead of a
/// refresh ahead, whatever point of the window this cache would draw for it: it is judged by
/// the window's start, since another replica may be refreshing it already.
#[tokio::test(start_paused = true)]
async fn a_shared_token_inside_its_window_is_not_adopted_for_a_refresh_ahead() {
    let windows = entry::Windows::default();
    assert!(windows.jitter > 0.0, "refreshes spread by default");
    let now = Instant::now();
    // An hour's token, a second into its five-minute window.
    let shared = crate::store::SharedToken {
        token: Token::bearer("t")
            .unwrap()
            .expires_in(Duration::from_secs(5 * 60 - 1)),
        generation: 1,
        obtained: now - Duration::from_secs(3600 - 5 * 60 + 1),
    };
    // Each judgement would draw its own point: one in the window's first second is rare.
    for _ in 0..50 {
        assert!(!entry::Entry::adoptable(
            &shared,
            RefreshReason::Ahead,
            &windows
        ));
    }
    assert!(
        entry::Entry::adoptable(&shared, RefreshReason::Expired, &windows),
        "still sendable: taken when the cache has no token to send"
    );
}

/// A builder's `Debug` shows its settings and whether it has a store.
#[test]
fn a_builder_shows_its_settings_and_whether_it_has_a_store() {
    let refresher = service_fn(|_: TokenRequest| async { Token::bearer("t") });
    let builder = TokenCache::builder(refresher).name("api");
    let shown = format!("{builder:?}");
    assert!(shown.starts_with("TokenCacheBuilder"), "{shown}");
    assert!(shown.contains("refresh_ahead"), "{shown}");
    assert!(shown.contains("store: false"), "{shown}");
}
