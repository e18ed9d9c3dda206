//! Chaos soak over loopback: the api.video provider and the middleware against the mock
//! server, with short-lived tokens, while the auth server fails, stalls and garbles its
//! answers, every token is revoked about once a second, the resource server refuses valid
//! tokens at random, and callers drop their requests mid-flight.
//!
//! Every request ends within a deadline, or the test fails; every outcome is one of the
//! allowed kinds, counted and printed (`--nocapture`); the refresher is called no more than
//! expiries, revocations, refused tokens and failures justify; no request reaches the server
//! with a token the client knew had expired; no waiter is left in the cache.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE};
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::time::Instant;
use tower::{BoxError, Layer, ServiceBuilder, ServiceExt};
use tower_bearer::{BearerAuthLayer, ReplayBody, Token, TokenCache, TokenError, TokenErrorKind};
use tower_bearer_apivideo::{ApiVideo, ApiVideoError, Malformed, NoAnswer};
use tower_bearer_mock::apivideo::{Chaos, MockServer};

const KEY: &str = "chaos-key";
/// No request may take longer than this; past it, the test fails.
const DEADLINE: Duration = Duration::from_secs(10);

struct Soak {
    name: &'static str,
    tasks: usize,
    requests: usize,
    token_ttl: Duration,
    chaos: Chaos,
    /// How often every token is revoked, if at all.
    revoke_every: Option<Duration>,
    /// Share of requests given a deadline short enough to drop them mid-flight.
    drop_rate: f64,
    /// The provider's timeout: slow auth answers take longer.
    auth_timeout: Duration,
    /// The cache's backoff after a failed refresh, least and most.
    backoff: (Duration, Duration),
    /// Each task's pause between its requests, so that the soak spans the token lifetimes it
    /// is about however fast the machine sends them.
    pace: Duration,
}

/// What became of the requests, by allowed kind.
#[derive(Default, Debug)]
struct Outcomes {
    ok: u64,
    /// The refresher failed because the auth server answered 500.
    refresher_500: u64,
    /// The refresher failed because the auth server answered 200 with a broken body.
    refresher_malformed: u64,
    /// The auth server answered too slowly for the provider's timeout.
    refresher_timed_out: u64,
    /// The last refresh failed and the cache is waiting out its backoff.
    backing_off: u64,
    /// 401 to the first attempt and to the retry with a new token.
    unauthorized_after_retry: u64,
    /// 401 to a token younger than the minimum token age: not blamed, not retried
    /// (DESIGN: the server is refusing for another reason).
    unauthorized_young_token: u64,
    /// Dropped by the caller's short timeout before completing.
    dropped: u64,
    /// Anything else: must stay empty.
    other: Vec<String>,
}

impl fmt::Display for Outcomes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "  2xx                                   {:>6}", self.ok)?;
        writeln!(
            f,
            "  TokenError, refresher got a 500       {:>6}",
            self.refresher_500
        )?;
        writeln!(
            f,
            "  TokenError, malformed token answer    {:>6}",
            self.refresher_malformed
        )?;
        writeln!(
            f,
            "  TokenError, auth server too slow      {:>6}",
            self.refresher_timed_out
        )?;
        writeln!(
            f,
            "  TokenError, backing off               {:>6}",
            self.backing_off
        )?;
        writeln!(
            f,
            "  401 after the one retry               {:>6}",
            self.unauthorized_after_retry
        )?;
        writeln!(
            f,
            "  401, token too young to blame         {:>6}",
            self.unauthorized_young_token
        )?;
        writeln!(
            f,
            "  dropped by the caller's timeout       {:>6}",
            self.dropped
        )?;
        write!(
            f,
            "  anything else                         {:>6}",
            self.other.len()
        )
    }
}

/// A small deterministic generator, for which request is a POST and which is dropped.
fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

fn fraction(x: u64) -> f64 {
    (x >> 11) as f64 / (1u64 << 53) as f64
}

fn classify(error: &BoxError, outcomes: &mut Outcomes) {
    let Some(token) = TokenError::find(&**error) else {
        outcomes.other.push(format!("not a TokenError: {error:?}"));
        return;
    };
    let provider = token
        .refresher_error()
        .and_then(|s| s.downcast_ref::<ApiVideoError>());
    match (token.kind(), provider) {
        (TokenErrorKind::BackingOff { .. }, _) => outcomes.backing_off += 1,
        (TokenErrorKind::Refresher, Some(ApiVideoError::Status { problem, .. }))
            if problem.status() == StatusCode::INTERNAL_SERVER_ERROR =>
        {
            outcomes.refresher_500 += 1
        }
        (
            TokenErrorKind::Refresher,
            Some(ApiVideoError::Malformed {
                error: Malformed::NotJson(_),
                ..
            }),
        ) => outcomes.refresher_malformed += 1,
        (TokenErrorKind::Refresher, Some(ApiVideoError::NoAnswer(NoAnswer::Timeout { .. }))) => {
            outcomes.refresher_timed_out += 1
        }
        _ => outcomes.other.push(format!("{token:?}")),
    }
}

async fn soak(soak: Soak) {
    let started = Instant::now();
    let server = MockServer::builder()
        .api_key(KEY)
        .token_ttl(soak.token_ttl)
        .start()
        .await
        .unwrap();
    server.set_chaos(soak.chaos);
    let client: Client<HttpConnector, ReplayBody<Full<Bytes>>> =
        Client::builder(TokioExecutor::new()).build_http();

    // Every token the provider hands the cache, with the expiry the client knows.
    let issued: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let api = ApiVideo::with_base_uri(server.uri(), KEY, client.clone())
        .unwrap()
        .timeout(soak.auth_timeout);
    let scope = api.scope();
    let refresher = ServiceBuilder::new()
        .map_response({
            let issued = issued.clone();
            move |token: Token| {
                let expiry = token.expiry().expect("api.video tokens expire");
                issued
                    .lock()
                    .unwrap()
                    .insert(token.expose_access_token().to_owned(), expiry);
                token
            }
        })
        .service(api);
    let cache = TokenCache::builder(refresher)
        .backoff(soak.backoff.0, soak.backoff.1)
        .build();

    // The client under the middleware: counts each request's sends, and checks the token
    // each carries against the expiry the client knew.
    let sends: Arc<Mutex<HashMap<u64, u32>>> = Arc::default();
    let sent_expired = Arc::new(AtomicU64::new(0));
    let counting = tower::service_fn({
        let (sends, issued, sent_expired) = (sends.clone(), issued.clone(), sent_expired.clone());
        move |request: Request<ReplayBody<Full<Bytes>>>| {
            let id: u64 = request.headers()["x-chaos-id"]
                .to_str()
                .unwrap()
                .parse()
                .unwrap();
            *sends.lock().unwrap().entry(id).or_default() += 1;
            let authorization = &request.headers()[AUTHORIZATION];
            assert!(authorization.is_sensitive());
            let token = &authorization.to_str().unwrap()["Bearer ".len()..];
            let expiry = issued.lock().unwrap()[token];
            if Instant::now() >= expiry {
                sent_expired.fetch_add(1, Ordering::Relaxed);
            }
            client.request(request)
        }
    });
    let service = BearerAuthLayer::from_cache(cache.clone(), scope).layer(counting);

    let revocations = Arc::new(AtomicU64::new(0));
    let server = Arc::new(server);
    let revoke_task = soak.revoke_every.map(|every| {
        let (server, revocations) = (server.clone(), revocations.clone());
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval_at(Instant::now() + every, every);
            loop {
                ticks.tick().await;
                server.revoke_all();
                revocations.fetch_add(1, Ordering::Relaxed);
            }
        })
    });

    let next = Arc::new(AtomicUsize::new(0));
    let outcomes = Arc::new(Mutex::new(Outcomes::default()));
    let tasks: Vec<_> = (0..soak.tasks)
        .map(|_| {
            let (service, next, outcomes, sends, server) = (
                service.clone(),
                next.clone(),
                outcomes.clone(),
                sends.clone(),
                server.clone(),
            );
            let (requests, drop_rate, pace) = (soak.requests, soak.drop_rate, soak.pace);
            tokio::spawn(async move {
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    if n >= requests {
                        return;
                    }
                    let dice = splitmix(n as u64);
                    let request = if dice & 1 == 0 {
                        Request::get(server.uri_for("/videos?pageSize=1"))
                            .header("x-chaos-id", n)
                            .body(Full::default())
                    } else {
                        Request::post(server.uri_for("/videos"))
                            .header("x-chaos-id", n)
                            .header(CONTENT_TYPE, "application/json")
                            .body(Full::from(format!(r#"{{"title":"soak {n}"}}"#)))
                    }
                    .unwrap();
                    let dropped = fraction(splitmix(dice)) < drop_rate;
                    // A dropped request's timeout: 0 to 5 ms, mid-flight on loopback.
                    let limit = if dropped {
                        Duration::from_micros(splitmix(dice ^ 7) % 5_000)
                    } else {
                        DEADLINE
                    };
                    let call = async {
                        let response = service.clone().oneshot(request).await?;
                        let status = response.status();
                        response.into_body().collect().await?;
                        Ok::<_, BoxError>(status)
                    };
                    let result = tokio::time::timeout(limit, call).await;
                    // A caller that respects the wait a fast failure names, as a real one
                    // would, rather than turning each backoff into a busy loop of failures.
                    let wait = match &result {
                        Ok(Err(error)) => TokenError::find(&**error).and_then(|e| match e.kind() {
                            TokenErrorKind::BackingOff { retry_in } => Some(retry_in),
                            _ => None,
                        }),
                        _ => None,
                    };
                    {
                        let mut outcomes = outcomes.lock().unwrap();
                        let outcomes = &mut *outcomes;
                        match result {
                            Err(_) if dropped => outcomes.dropped += 1,
                            Err(_) => outcomes
                                .other
                                .push(format!("request {n} hung past {DEADLINE:?}")),
                            Ok(Ok(status)) if status.is_success() => outcomes.ok += 1,
                            Ok(Ok(StatusCode::UNAUTHORIZED)) => {
                                match sends.lock().unwrap().get(&(n as u64)) {
                                    Some(2) => outcomes.unauthorized_after_retry += 1,
                                    Some(1) => outcomes.unauthorized_young_token += 1,
                                    other => {
                                        outcomes.other.push(format!("401 after {other:?} sends"))
                                    }
                                }
                            }
                            Ok(Ok(status)) => outcomes.other.push(format!("status {status}")),
                            Ok(Err(error)) => classify(&error, outcomes),
                        }
                    }
                    if let Some(wait) = wait {
                        tokio::time::sleep(wait).await;
                    }
                    if !pace.is_zero() {
                        tokio::time::sleep(pace).await;
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("no panic");
    }
    let elapsed = started.elapsed();
    if let Some(task) = revoke_task {
        task.abort();
    }

    let outcomes = Arc::try_unwrap(outcomes).unwrap().into_inner().unwrap();
    let counters = server.counters();
    let stats = cache.stats();
    let revocations = revocations.load(Ordering::Relaxed);
    let calls = stats.total().started;
    let failures = stats.total().failed;
    // Each token is replaced ahead of expiry no sooner than three quarters into its life (as
    // the client counts it: from when the login was sent, in whole seconds).
    let lifetime = Duration::from_secs(soak.token_ttl.as_secs()) - Duration::from_millis(100);
    let expiries = (elapsed.as_secs_f64() / (lifetime.as_secs_f64() * 0.75)).ceil() as u64;
    let bound = 1 + expiries + revocations + counters.unauthorized_spurious + failures;
    let total = outcomes.ok
        + outcomes.refresher_500
        + outcomes.refresher_malformed
        + outcomes.refresher_timed_out
        + outcomes.backing_off
        + outcomes.unauthorized_after_retry
        + outcomes.unauthorized_young_token
        + outcomes.dropped
        + outcomes.other.len() as u64;

    println!(
        "chaos soak {}: {} requests from {} tasks in {:.1} s\n{outcomes}\n  \
         refresher calls {calls} (bound {bound} = 1 initial + {expiries} expiries + \
         {revocations} revocations + {} spurious 401s + {failures} failed calls); \
         auth requests {}, logins {}, refresh grants {}\n  \
         cache: refreshes started {:?} (initial, ahead, expired, rejected), {} ok; \
         {} 401s seen, {} retried, {} not replaced (too young)\n  \
         sent with a known-expired token: {}; server saw expired tokens {} (expired in transit)\n  \
         waiting at the end: {}",
        soak.name,
        soak.requests,
        soak.tasks,
        elapsed.as_secs_f64(),
        counters.unauthorized_spurious,
        counters.auth_requests,
        counters.api_key_logins,
        counters.refreshes,
        stats
            .refreshes_by_reason()
            .map(|(_, c)| c.started)
            .collect::<Vec<_>>(),
        stats.total().succeeded,
        stats.unauthorized,
        stats.retried,
        stats.not_replaced,
        sent_expired.load(Ordering::Relaxed),
        counters.expired_token_requests,
        stats.waiting,
    );

    assert!(
        outcomes.other.is_empty(),
        "{:?}",
        &outcomes.other[..outcomes.other.len().min(20)]
    );
    assert_eq!(total, soak.requests as u64);
    assert!(calls <= bound, "{calls} refresher calls, bound {bound}");
    assert_eq!(sent_expired.load(Ordering::Relaxed), 0);
    assert!(outcomes.unauthorized_young_token <= stats.not_replaced);
    assert_eq!(stats.waiting, 0);
    // Not a bound the design promises; a sign the soak measured something.
    assert!(outcomes.ok > soak.requests as u64 / 4, "{outcomes:?}");
}

/// The soak of issue 5: everything at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_soak() {
    let run = soak(Soak {
        name: "everything at once",
        tasks: 64,
        requests: 20_000,
        token_ttl: Duration::from_secs(2),
        chaos: Chaos::default()
            .auth_error_rate(0.10)
            .auth_slow(0.05, Duration::from_millis(400))
            .auth_malformed_rate(0.02)
            .spurious_unauthorized_rate(0.01)
            .seed(5),
        revoke_every: Some(Duration::from_secs(1)),
        drop_rate: 0.05,
        auth_timeout: Duration::from_millis(200),
        backoff: (Duration::from_millis(10), Duration::from_millis(100)),
        pace: Duration::ZERO,
    });
    tokio::time::timeout(Duration::from_secs(90), run)
        .await
        .expect("the soak ends");
}

/// Several token lifetimes with a flaky auth server (a quarter of its answers are 500s) and
/// nothing else: refreshes track expiries, and failed background refreshes cost no request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak_over_token_lifetimes() {
    let run = soak(Soak {
        name: "token lifetimes",
        tasks: 16,
        requests: 8_000,
        token_ttl: Duration::from_secs(1),
        chaos: Chaos::default().auth_error_rate(0.25).seed(6),
        revoke_every: None,
        drop_rate: 0.0,
        auth_timeout: Duration::from_millis(500),
        backoff: (Duration::from_millis(10), Duration::from_millis(100)),
        // 500 requests a task, 10 ms apart: at least five lifetimes of a 1 s token.
        pace: Duration::from_millis(10),
    });
    tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("the soak ends");
}
