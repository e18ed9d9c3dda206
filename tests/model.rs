//! Model-based property test: random schedules of time advancing, requests arriving, the
//! refresher succeeding, failing or hanging, the server answering (401 for tokens it has
//! revoked or that expired) and request futures dropped at whatever await point they are at,
//! run against the real cache and middleware on tokio's paused clock. A reference model of
//! what the cache knows checks DESIGN.md's invariants after every step:
//!
//! 1. at most one refresh in flight;
//! 2. no request sent with a token past its minimum validity, or one a server refused once the
//!    cache was told and the token was old enough to blame;
//! 3. at most two sends per request, the second only for a replayable body, with the same
//!    bytes and another token; a 401 handed back after one send only for a too-young token
//!    or a body that cannot be replayed;
//! 4. no future left waiting once no refresh is in flight (no lost wake-up), and every future
//!    completes once the refresher and the server answer;
//! 5. a failed refresh fails every request that waited for it, with a `TokenError`; the
//!    refresher is not called again before the backoff.
//!
//! Deterministic (paused clock, one thread, no sockets), so a failing schedule shrinks.

use std::cell::Cell;
use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::AUTHORIZATION;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use proptest::prelude::*;
use tokio::sync::oneshot;
use tokio::time::Instant;
use tokio_test::task::Spawn;
use tower::{BoxError, Layer, Service};
use tower_bearer::{
    BearerAuth, BearerAuthLayer, ReplayBody, ResponseFuture, Scope, Token, TokenCache, TokenError,
    TokenErrorKind, TokenRequest,
};

/// The layer keeps at most this many body bytes for a retry.
const REPLAY_LIMIT: usize = 4;
/// More than any body a case sends.
const BODY_CAP: usize = 1 << 16;
const BACKOFF: Duration = Duration::from_secs(4);
const REFRESH_TIMEOUT: Duration = Duration::from_secs(30);
const LIFETIMES: [u64; 4] = [20, 60, 100, 600];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Get,
    /// A body within the replay limit.
    SmallPost,
    /// A body past the replay limit: never sent twice.
    LargePost,
}

impl Kind {
    fn body(self) -> &'static [u8] {
        match self {
            Kind::Get => b"",
            Kind::SmallPost => b"abc",
            Kind::LargePost => b"abcdefgh",
        }
    }

    fn replayable(self) -> bool {
        self.body().len() <= REPLAY_LIMIT
    }
}

#[derive(Debug, Clone)]
enum Action {
    Advance(Duration),
    Request(Kind),
    /// The refresher answers the refresh in flight with a token living `LIFETIMES[i]`.
    Succeed(usize),
    Fail,
    /// The refresher keeps the refresh in flight waiting (only time ends it).
    Hang,
    /// The server answers its oldest unanswered request.
    Answer,
    /// The server refuses every token issued so far from now on.
    Revoke,
    /// The request future at this index (modulo the live ones) is dropped.
    Drop(usize),
}

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        2 => (0u64..40_000).prop_map(|ms| Action::Advance(Duration::from_millis(ms))),
        4 => prop_oneof![Just(Kind::Get), Just(Kind::SmallPost), Just(Kind::LargePost)]
            .prop_map(Action::Request),
        2 => (0..LIFETIMES.len()).prop_map(Action::Succeed),
        1 => Just(Action::Fail),
        1 => Just(Action::Hang),
        4 => Just(Action::Answer),
        1 => Just(Action::Revoke),
        2 => any::<usize>().prop_map(Action::Drop),
    ]
}

// ===== the reference model =====

/// A token the refresher issued.
struct Issued {
    at: Instant,
    lifetime: Duration,
}

impl Issued {
    fn expiry(&self) -> Instant {
        self.at + self.lifetime
    }

    /// From here on the cache must not send it: the minimum validity, at most a tenth of
    /// the lifetime.
    fn stale_at(&self) -> Instant {
        self.expiry() - Duration::from_secs(30).min(self.lifetime / 10)
    }

    /// A 401 replaces it only from here on.
    fn blamable_at(&self) -> Instant {
        self.at + Duration::from_secs(5).min(self.lifetime / 10)
    }
}

/// One request the server received.
struct Sent {
    request: u64,
    token: String,
    body: Option<Bytes>,
    answer: Option<oneshot::Sender<StatusCode>>,
    /// The 401 it got was for a token too young to blame.
    young_401: bool,
}

struct RefreshCall {
    respond: Option<oneshot::Sender<Result<Token, BoxError>>>,
}

#[derive(Default)]
struct World {
    step: usize,
    issued: HashMap<String, Issued>,
    revoked: HashSet<String>,
    /// Refused tokens the cache has been told about (old enough to blame).
    known_rejected: HashSet<String>,
    told_this_step: Vec<String>,
    kinds: HashMap<u64, Kind>,
    sent: Vec<Sent>,
    refreshes: Vec<RefreshCall>,
    last_failure: Option<Instant>,
    violations: Vec<String>,
}

impl World {
    fn open_refreshes(&self) -> usize {
        self.refreshes
            .iter()
            .filter(|c| c.respond.as_ref().is_some_and(|tx| !tx.is_closed()))
            .count()
    }

    fn violation(&mut self, text: String) {
        self.violations.push(format!("step {}: {text}", self.step));
    }
}

type Shared = Arc<Mutex<World>>;

// ===== the refresher and the server, answered by the schedule =====

#[derive(Clone)]
struct Refresher(Shared);

impl Service<TokenRequest> for Refresher {
    type Response = Token;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Token, BoxError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: TokenRequest) -> Self::Future {
        let mut world = self.0.lock().unwrap();
        let now = Instant::now();
        if world.open_refreshes() > 0 {
            world.violation("a second refresh while one is in flight".into());
        }
        if let Some(failed) = world.last_failure {
            if now < failed + BACKOFF / 2 {
                world.violation(format!(
                    "refresher called {:?} after a failure, within the backoff",
                    now - failed
                ));
            }
        }
        let (tx, rx) = oneshot::channel();
        world.refreshes.push(RefreshCall { respond: Some(tx) });
        Box::pin(async move { rx.await.map_err(|_| BoxError::from("gone"))? })
    }
}

#[derive(Clone)]
struct Server(Shared);

type ServerFuture = Pin<Box<dyn Future<Output = Result<Response<Full<Bytes>>, Infallible>> + Send>>;

impl Service<Request<ReplayBody<Full<Bytes>>>> for Server {
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = ServerFuture;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<ReplayBody<Full<Bytes>>>) -> Self::Future {
        let now = Instant::now();
        let id: u64 = request.headers()["x-request"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        let authorization = request.headers().get(AUTHORIZATION).cloned();
        let token = authorization
            .as_ref()
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or_default()
            .to_owned();
        let (tx, rx) = oneshot::channel();
        let index = {
            let mut world = self.0.lock().unwrap();
            if !authorization.as_ref().is_some_and(|v| v.is_sensitive()) {
                world.violation(format!("request {id}: Authorization not sensitive"));
            }
            let stale = world
                .issued
                .get(&token)
                .map(|issued| (now >= issued.stale_at(), issued.expiry()));
            match stale {
                None => world.violation(format!("request {id}: unknown token {token:?}")),
                Some((true, expiry)) => world.violation(format!(
                    "request {id}: sent with {token} {:?} before its expiry",
                    expiry.saturating_duration_since(now)
                )),
                Some((false, _)) => {}
            }
            if world.known_rejected.contains(&token) {
                world.violation(format!("request {id}: sent with {token}, known refused"));
            }
            let earlier: Vec<String> = world
                .sent
                .iter()
                .filter(|s| s.request == id)
                .map(|s| s.token.clone())
                .collect();
            let kind = world.kinds[&id];
            match earlier.as_slice() {
                [] => {}
                [first] if kind.replayable() && *first != token => {}
                _ => world.violation(format!(
                    "request {id} ({kind:?}) sent again with {token} after {earlier:?}"
                )),
            }
            world.sent.push(Sent {
                request: id,
                token,
                body: None,
                answer: Some(tx),
                young_401: false,
            });
            world.sent.len() - 1
        };
        let world = self.0.clone();
        Box::pin(async move {
            // Capped: a body that never ends fails the case instead of filling memory.
            let body = Limited::new(request.into_body(), BODY_CAP)
                .collect()
                .await
                .unwrap()
                .to_bytes();
            world.lock().unwrap().sent[index].body = Some(body);
            // A send the schedule never answers is dropped with its request, or answered at
            // the end.
            let status = rx.await.unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
            let mut response = Response::new(Full::default());
            *response.status_mut() = status;
            Ok(response)
        })
    }
}

// ===== running a schedule =====

type Future_ = ResponseFuture<Server, Full<Bytes>, Full<Bytes>>;

enum Slot {
    Live(Spawn<Future_>),
    Done(Result<StatusCode, TokenErrorKind>),
    Dropped,
}

thread_local! {
    /// What the drops hit, by the future's state when dropped (the runner runs every case on
    /// its own thread).
    static DROPPED_IN: [Cell<u64>; 4] = const { [const { Cell::new(0) }; 4] };
}
const STATES: [&str; 4] = [
    "waiting for a token",
    "sent",
    "sent, no retry",
    "waiting for a replacement token",
];

fn state(future: &Spawn<Future_>) -> String {
    let debug = format!("{:?}", &**future);
    let start = debug.find('"').unwrap() + 1;
    let end = debug.rfind('"').unwrap();
    debug[start..end].to_owned()
}

fn waiting(state: &str) -> bool {
    state.starts_with("waiting")
}

struct Harness {
    world: Shared,
    service: BearerAuth<Server>,
    cache: TokenCache,
    slots: Vec<Slot>,
    next_token: u64,
}

impl Harness {
    fn new() -> Self {
        let world: Shared = Arc::default();
        let cache = TokenCache::builder(Refresher(world.clone()))
            .backoff(BACKOFF, BACKOFF)
            .refresh_timeout(REFRESH_TIMEOUT)
            .build();
        let service = BearerAuthLayer::from_cache(cache.clone(), Scope::any())
            .replay_limit(REPLAY_LIMIT)
            .layer(Server(world.clone()));
        Harness {
            world,
            service,
            cache,
            slots: Vec::new(),
            next_token: 0,
        }
    }

    fn live(&self) -> Vec<usize> {
        (0..self.slots.len())
            .filter(|&i| matches!(self.slots[i], Slot::Live(_)))
            .collect()
    }

    /// Lets the refresh tasks run, then polls every live future.
    async fn settle(&mut self) {
        for _ in 0..3 {
            for _ in 0..8 {
                tokio::task::yield_now().await;
            }
            for slot in &mut self.slots {
                if let Slot::Live(future) = slot {
                    if let Poll::Ready(result) = future.poll() {
                        *slot = Slot::Done(result.map(|r| r.status()).map_err(|e| {
                            // The server never fails: any error is the cache's.
                            TokenError::find(&*e).expect("a TokenError").kind()
                        }));
                    }
                }
            }
        }
    }

    fn respond(&mut self, result: Result<Token, BoxError>) -> bool {
        let mut world = self.world.lock().unwrap();
        let open = world
            .refreshes
            .iter_mut()
            .find(|c| c.respond.as_ref().is_some_and(|tx| !tx.is_closed()));
        match open {
            Some(call) => {
                let _ = call.respond.take().unwrap().send(result);
                true
            }
            None => false,
        }
    }

    fn issue(&mut self, lifetime: Duration) -> Token {
        self.next_token += 1;
        let name = format!("t{}", self.next_token);
        self.world.lock().unwrap().issued.insert(
            name.clone(),
            Issued {
                at: Instant::now(),
                lifetime,
            },
        );
        Token::bearer(name).unwrap().expires_in(lifetime)
    }

    fn answer_oldest(&mut self) {
        let now = Instant::now();
        let mut world = self.world.lock().unwrap();
        let World {
            sent,
            issued,
            revoked,
            told_this_step,
            ..
        } = &mut *world;
        let Some(send) = sent
            .iter_mut()
            .find(|s| s.answer.as_ref().is_some_and(|tx| !tx.is_closed()))
        else {
            return;
        };
        let token = &issued[&send.token];
        let refused = revoked.contains(&send.token) || now >= token.expiry();
        let status = if refused {
            if now >= token.blamable_at() {
                told_this_step.push(send.token.clone());
            } else {
                send.young_401 = true;
            }
            StatusCode::UNAUTHORIZED
        } else {
            StatusCode::OK
        };
        let _ = send.answer.take().unwrap().send(status);
    }

    async fn step(&mut self, action: &Action) -> Result<(), TestCaseError> {
        let failed_before = self.cache.stats().total().failed;
        // The futures waiting for the refresh in flight, before anything happens.
        let waiters: Vec<usize> = self
            .live()
            .into_iter()
            .filter(|&i| matches!(&self.slots[i], Slot::Live(f) if waiting(&state(f))))
            .collect();
        let mut failed_refresh = false;
        match action {
            Action::Advance(by) => tokio::time::advance(*by).await,
            Action::Request(kind) => {
                let id = self.slots.len() as u64;
                self.world.lock().unwrap().kinds.insert(id, *kind);
                let request = Request::post("http://api.test/")
                    .header("x-request", id.to_string())
                    .body(Full::new(Bytes::from_static(kind.body())))
                    .unwrap();
                futures_ready(&mut self.service);
                let future = tokio_test::task::spawn(self.service.call(request));
                self.slots.push(Slot::Live(future));
            }
            Action::Succeed(i) => {
                let token = self.issue(Duration::from_secs(LIFETIMES[*i]));
                self.respond(Ok(token));
            }
            Action::Fail => failed_refresh = self.respond(Err("refused".into())),
            Action::Hang => {}
            Action::Answer => self.answer_oldest(),
            Action::Revoke => {
                let mut world = self.world.lock().unwrap();
                let all: Vec<String> = world.issued.keys().cloned().collect();
                world.revoked.extend(all);
            }
            Action::Drop(n) => {
                let live = self.live();
                if !live.is_empty() {
                    let i = live[n % live.len()];
                    if let Slot::Live(future) = &self.slots[i] {
                        let state = state(future);
                        if let Some(k) = STATES.iter().position(|s| *s == state) {
                            DROPPED_IN.with(|counts| counts[k].set(counts[k].get() + 1));
                        }
                    }
                    self.slots[i] = Slot::Dropped;
                }
            }
        }
        self.settle().await;

        let stats = self.cache.stats();
        let now = Instant::now();
        let mut world = self.world.lock().unwrap();
        if stats.total().failed > failed_before {
            world.last_failure = Some(now);
            failed_refresh = true;
        }
        let told = std::mem::take(&mut world.told_this_step);
        world.known_rejected.extend(told);
        world.step += 1;
        let violations = std::mem::take(&mut world.violations);
        prop_assert!(violations.is_empty(), "{:?}", violations);
        prop_assert!(world.open_refreshes() <= 1);
        prop_assert_eq!(stats.refreshing, world.open_refreshes() == 1);
        drop(world);

        // No lost wake-up: nothing waits when nothing is in flight.
        if !stats.refreshing {
            for i in self.live() {
                if let Slot::Live(future) = &self.slots[i] {
                    let state = state(future);
                    prop_assert!(!waiting(&state), "request {} still {}", i, state);
                }
            }
            prop_assert_eq!(stats.waiting, 0);
        }
        // A failure reaches every waiter.
        if failed_refresh && !stats.refreshing {
            for i in waiters {
                match &self.slots[i] {
                    Slot::Done(Err(kind)) => prop_assert!(
                        matches!(
                            kind,
                            TokenErrorKind::Refresher | TokenErrorKind::TimedOut { .. }
                        ),
                        "request {}: {:?}",
                        i,
                        kind
                    ),
                    Slot::Dropped => {}
                    Slot::Done(Ok(status)) => {
                        prop_assert!(false, "request {} got {} from a failed refresh", i, status)
                    }
                    Slot::Live(future) => {
                        prop_assert!(false, "request {} {} after a failure", i, state(future))
                    }
                }
            }
        }
        Ok(())
    }

    /// The refresher and the server answer everything, until every future has completed.
    async fn drain(&mut self) -> Result<(), TestCaseError> {
        self.world.lock().unwrap().revoked.clear();
        for _ in 0..64 {
            if self.live().is_empty() {
                break;
            }
            let token = self.issue(Duration::from_secs(600));
            self.respond(Ok(token));
            self.settle().await;
            loop {
                let before = self.world.lock().unwrap().sent.len();
                let open = self
                    .world
                    .lock()
                    .unwrap()
                    .sent
                    .iter()
                    .any(|s| s.answer.as_ref().is_some_and(|tx| !tx.is_closed()));
                if !open {
                    break;
                }
                self.answer_oldest();
                self.settle().await;
                let after = self.world.lock().unwrap().sent.len();
                prop_assert!(after - before <= 1);
            }
            // Past any backoff.
            tokio::time::advance(BACKOFF).await;
            self.settle().await;
        }
        prop_assert!(self.live().is_empty(), "futures never completed");
        let stats = self.cache.stats();
        prop_assert_eq!(stats.waiting, 0);
        let violations = std::mem::take(&mut self.world.lock().unwrap().violations);
        prop_assert!(violations.is_empty(), "{:?}", violations);
        Ok(())
    }

    /// What completed futures got, against what the model says they may get.
    fn check_outcomes(&self) -> Result<(), TestCaseError> {
        let world = self.world.lock().unwrap();
        for (id, slot) in self.slots.iter().enumerate() {
            let id = id as u64;
            let sends: Vec<&Sent> = world.sent.iter().filter(|s| s.request == id).collect();
            if let [first, second] = sends.as_slice() {
                if let (Some(a), Some(b)) = (&first.body, &second.body) {
                    prop_assert_eq!(a, b, "request {} replayed other bytes", id);
                }
            }
            if let Slot::Done(Ok(StatusCode::UNAUTHORIZED)) = slot {
                let kind = world.kinds[&id];
                if let [only] = sends.as_slice() {
                    prop_assert!(
                        !kind.replayable() || only.young_401,
                        "request {} ({:?}) got a 401 back without a retry",
                        id,
                        kind
                    );
                }
            }
        }
        Ok(())
    }
}

/// `BearerAuth::poll_ready` (the server is always ready).
fn futures_ready(service: &mut BearerAuth<Server>) {
    let mut ready = tokio_test::task::spawn(std::future::poll_fn(|cx| service.poll_ready(cx)));
    assert!(matches!(ready.poll(), Poll::Ready(Ok(()))));
}

fn run(schedule: &[Action]) -> Result<(), TestCaseError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut harness = Harness::new();
        for action in schedule {
            harness.step(action).await?;
        }
        harness.drain().await?;
        harness.check_outcomes()
    })
}

/// 512 random schedules; fails with the smallest schedule that breaks an invariant.
#[test]
fn the_cache_keeps_its_invariants() {
    let config = ProptestConfig {
        cases: 512,
        max_shrink_iters: 4096,
        ..ProptestConfig::default()
    };
    let mut runner = proptest::test_runner::TestRunner::new(config);
    let schedules = proptest::collection::vec(action(), 1..48);
    if let Err(error) = runner.run(&schedules, |schedule| run(&schedule)) {
        panic!("{error}");
    }
    let dropped: Vec<u64> = DROPPED_IN.with(|counts| counts.iter().map(|c| c.get()).collect());
    let counts: Vec<String> = STATES
        .iter()
        .zip(&dropped)
        .map(|(state, n)| format!("{n} {state}"))
        .collect();
    println!("512 schedules; futures dropped: {}", counts.join(", "));
    // The schedules do reach every await point.
    assert!(dropped.iter().all(|&n| n > 0), "{counts:?}");
}

/// Schedules that once broke something, or that reach a corner on purpose.
#[test]
fn chosen_schedules() {
    use Action::*;
    let schedules = [
        // Waiters dropped while the refresh they share is in flight; the refresh completes.
        vec![
            Request(Kind::Get),
            Request(Kind::SmallPost),
            Drop(0),
            Succeed(2),
            Answer,
            Answer,
        ],
        // A 401 for an old token: one refresh, a retry with the same bytes.
        vec![
            Request(Kind::SmallPost),
            Succeed(2),
            Advance(Duration::from_secs(10)),
            Revoke,
            Answer,
            Succeed(2),
            Answer,
        ],
        // A hanging refresh times out; every waiter gets the error; the next one succeeds.
        vec![
            Request(Kind::Get),
            Request(Kind::LargePost),
            Hang,
            Advance(REFRESH_TIMEOUT),
            Advance(BACKOFF),
            Request(Kind::Get),
            Succeed(0),
            Answer,
        ],
        // A failure, then requests during the backoff fail fast.
        vec![
            Request(Kind::Get),
            Fail,
            Request(Kind::Get),
            Request(Kind::SmallPost),
        ],
        // A request dropped while waiting for its replacement token.
        vec![
            Request(Kind::SmallPost),
            Succeed(1),
            Advance(Duration::from_secs(8)),
            Revoke,
            Answer,
            Drop(0),
            Succeed(1),
        ],
    ];
    for schedule in schedules {
        run(&schedule).unwrap_or_else(|e| panic!("{schedule:?}: {e}"));
    }
}
