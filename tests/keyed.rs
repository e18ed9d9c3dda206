//! Many tokens behind one layer (`KeyedAuthLayer`): each key its own cache, single flight and
//! scope, a bounded number of keys, and no request ever sent with another key's token.

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use common::within;
use http::header::AUTHORIZATION;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use proptest::prelude::*;
use tower::{BoxError, Layer, Service, ServiceExt, service_fn};
use tower_bearer::{
    KeyedAuthLayer, RefreshReason, ReplayBody, Scope, Token, TokenCache, TokenRequest,
};

const API: &str = "https://api.example.com";

/// Refresher calls per key, and the tokens the API refuses.
#[derive(Clone, Default)]
struct World {
    calls: Arc<Mutex<HashMap<String, u32>>>,
    refused: Arc<Mutex<HashSet<String>>>,
}

impl World {
    fn calls(&self, key: &str) -> u32 {
        self.calls.lock().unwrap().get(key).copied().unwrap_or(0)
    }

    fn total_calls(&self) -> u32 {
        self.calls.lock().unwrap().values().sum()
    }

    /// A cache for `key` whose tokens are `Bearer {key}.{n}`, living an hour, from a refresher
    /// that takes `delay` (on the paused clock).
    fn cache(&self, key: &str, delay: Duration) -> TokenCache {
        let key = key.to_owned();
        let calls = self.calls.clone();
        TokenCache::builder(service_fn(move |_: TokenRequest| {
            let n = {
                let mut calls = calls.lock().unwrap();
                let n = calls.entry(key.clone()).or_default();
                *n += 1;
                *n
            };
            let token = format!("{key}.{n}");
            async move {
                tokio::time::sleep(delay).await;
                Ok::<_, BoxError>(Token::bearer(token)?.expires_in(Duration::from_secs(3600)))
            }
        }))
        // Tokens refused at once are blamed: the refusals below come right after a refresh.
        .min_token_age(Duration::ZERO)
        .build()
    }

    /// A layer keyed by the `x-tenant` header, each tenant's token for the API.
    fn by_tenant(&self, delay: Duration) -> KeyedAuthLayer<String> {
        let world = self.clone();
        KeyedAuthLayer::new(
            |request| {
                let tenant = request.headers().get("x-tenant")?;
                tenant.to_str().ok().map(str::to_owned)
            },
            move |tenant: &String| Ok((world.cache(tenant, delay), Scope::origin(API)?)),
        )
    }

    /// An API that answers 401 to a refused token and 200 to any other, with the
    /// `Authorization` it got (or `-`) as its body.
    fn api(
        &self,
    ) -> impl Service<
        Request<ReplayBody<Full<Bytes>>>,
        Response = Response<Full<Bytes>>,
        Error = BoxError,
        Future = impl Send,
    > + Clone
    + Send
    + 'static {
        let refused = self.refused.clone();
        service_fn(move |request: Request<ReplayBody<Full<Bytes>>>| {
            let authorization = request
                .headers()
                .get(AUTHORIZATION)
                .map(|value| value.to_str().unwrap().to_owned());
            let status = match &authorization {
                Some(value) if refused.lock().unwrap().contains(value) => StatusCode::UNAUTHORIZED,
                _ => StatusCode::OK,
            };
            async move {
                let body = authorization.unwrap_or_else(|| "-".to_owned());
                let mut response = Response::new(Full::new(Bytes::from(body)));
                *response.status_mut() = status;
                Ok::<_, BoxError>(response)
            }
        })
    }
}

fn for_tenant(tenant: &str) -> Request<Full<Bytes>> {
    Request::get(format!("{API}/v1/items"))
        .header("x-tenant", tenant)
        .body(Full::new(Bytes::new()))
        .unwrap()
}

/// What the API saw as the request's `Authorization`, and its status.
async fn send<S>(service: S, request: Request<Full<Bytes>>) -> (StatusCode, String)
where
    S: Service<Request<Full<Bytes>>, Response = Response<Full<Bytes>>, Error = BoxError>,
{
    use http_body_util::BodyExt;
    let response = within(service.oneshot(request)).await.unwrap();
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8(body.to_vec()).unwrap())
}

#[tokio::test(start_paused = true)]
async fn each_key_gets_its_own_token_from_one_refresh() {
    let world = World::default();
    let layer = world.by_tenant(Duration::from_millis(100));
    let service = layer.layer(world.api());

    let requests = (0..60).map(|i| {
        let tenant = ["acme", "globex", "initech"][i % 3];
        let service = service.clone();
        async move { (tenant, send(service, for_tenant(tenant)).await) }
    });
    for (tenant, (status, authorization)) in futures_join_all(requests).await {
        assert_eq!(status, StatusCode::OK);
        assert_eq!(authorization, format!("Bearer {tenant}.1"));
    }

    for tenant in ["acme", "globex", "initech"] {
        assert_eq!(world.calls(tenant), 1, "{tenant}");
        let cache = layer.cache(&tenant.to_owned()).expect("a cache per tenant");
        assert_eq!(cache.stats().generation, 1);
    }
    let stats = layer.stats();
    assert_eq!((stats.keys, stats.created, stats.evicted), (3, 3, 0));
    assert_eq!(
        stats.to_string(),
        "3 keys held, 3 caches made, 0 keys evicted"
    );
}

#[tokio::test(start_paused = true)]
async fn a_request_without_a_key_goes_without_a_token() {
    let world = World::default();
    let service = world.by_tenant(Duration::ZERO).layer(world.api());

    let request = Request::get(format!("{API}/v1/items"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    assert_eq!(send(service, request).await.1, "-");
    assert_eq!(world.total_calls(), 0);
}

/// Each key's token goes only to its key's scope: a tenant's request to another origin goes
/// without it (and is counted on the tenant's cache).
#[tokio::test(start_paused = true)]
async fn a_keys_token_stays_in_its_keys_scope() {
    let world = World::default();
    let layer = world.by_tenant(Duration::ZERO);
    let service = layer.layer(world.api());

    let elsewhere = Request::get("https://uploads.example.net/signed")
        .header("x-tenant", "acme")
        .body(Full::new(Bytes::new()))
        .unwrap();
    assert_eq!(send(service.clone(), elsewhere).await.1, "-");
    assert_eq!(
        layer
            .cache(&"acme".to_owned())
            .unwrap()
            .stats()
            .out_of_scope,
        1
    );
    assert_eq!(send(service, for_tenant("acme")).await.1, "Bearer acme.1");
}

#[tokio::test(start_paused = true)]
async fn by_origin_gives_each_origin_its_own_token_scoped_to_it() {
    let world = World::default();
    let caches = world.clone();
    let layer = KeyedAuthLayer::by_origin(move |origin| Ok(caches.cache(origin, Duration::ZERO)));
    let service = layer.layer(world.api());

    let get = |uri: &str| Request::get(uri).body(Full::new(Bytes::new())).unwrap();
    assert_eq!(
        send(service.clone(), get("https://A.example.com:443/x"))
            .await
            .1,
        "Bearer https://a.example.com.1"
    );
    assert_eq!(
        send(service.clone(), get("http://b.example.com:8080/y"))
            .await
            .1,
        "Bearer http://b.example.com:8080.1"
    );
    assert_eq!(
        send(service.clone(), get("https://a.example.com/z"))
            .await
            .1,
        "Bearer https://a.example.com.1"
    );
    // A path-only URI has no origin.
    assert_eq!(send(service, get("/relative")).await.1, "-");
    assert_eq!(world.total_calls(), 2);
}

/// Past `max_keys`, the key used least recently goes; the others stay, with their tokens. A
/// forgotten key that comes back gets a new cache, which refreshes.
#[tokio::test(start_paused = true)]
async fn past_max_keys_the_key_used_least_recently_is_forgotten() {
    let world = World::default();
    let layer = world.by_tenant(Duration::ZERO).max_keys(2);
    let service = layer.layer(world.api());

    for tenant in ["acme", "globex", "acme", "initech"] {
        send(service.clone(), for_tenant(tenant)).await;
    }

    let held = |tenant: &str| layer.cache(&tenant.to_owned()).is_some();
    assert!(held("acme") && held("initech"));
    assert!(!held("globex"), "globex was used least recently");
    let stats = layer.stats();
    assert_eq!((stats.keys, stats.created, stats.evicted), (2, 3, 1));

    assert_eq!(
        send(service.clone(), for_tenant("globex")).await.1,
        "Bearer globex.2"
    );
    assert_eq!(world.calls("globex"), 2);
    // acme was used before initech: it is the one forgotten for globex.
    assert!(!held("acme") && held("initech") && held("globex"));
    assert_eq!(world.calls("initech"), 1);
}

/// Which keys a fresh layer of `max_keys` holds after requests for `tenants`, in order. Each
/// layer's map iterates in an order of its own, so a tie between keys, which only a wrong
/// order of last uses makes, shows as an answer that changes from one layer to the next.
async fn held_after(max_keys: usize, tenants: &[&str]) -> Vec<String> {
    let world = World::default();
    let layer = world.by_tenant(Duration::ZERO).max_keys(max_keys);
    let service = layer.layer(world.api());
    for tenant in tenants {
        send(service.clone(), for_tenant(tenant)).await;
    }
    let mut held: Vec<String> = ["a", "b", "c", "d", "e"]
        .into_iter()
        .filter(|t| layer.cache(&(*t).to_owned()).is_some())
        .map(str::to_owned)
        .collect();
    held.sort();
    held
}

/// The key evicted is the one used least recently, whatever order each layer's map keeps:
/// a key used since the last add outranks one only added, and one added outranks every key
/// whose last use came before it.
#[tokio::test(start_paused = true)]
async fn the_key_used_least_recently_is_evicted_in_every_layer() {
    for _ in 0..16 {
        // b was added after a, then a was used: b goes.
        assert_eq!(held_after(2, &["a", "b", "a", "c"]).await, ["a", "c"]);
        // a and b used after c was added: c, only added, goes.
        assert_eq!(
            held_after(3, &["a", "b", "c", "a", "b", "d"]).await,
            ["a", "b", "d"]
        );
        // c was added after a's last use: a goes.
        assert_eq!(held_after(2, &["a", "b", "b", "c", "d"]).await, ["c", "d"]);
    }
}

/// The key function reads the request's method, URI, headers and extensions.
#[tokio::test(start_paused = true)]
async fn a_key_function_reads_the_method_uri_headers_and_extensions() {
    #[derive(Clone)]
    struct Audience(&'static str);

    let world = World::default();
    let caches = world.clone();
    let layer = KeyedAuthLayer::new(
        |request| {
            let audience = request.extensions().get::<Audience>()?.0;
            let tenant = request.headers().get("x-tenant")?.to_str().ok()?;
            Some(format!(
                "{}-{}-{audience}-{tenant}",
                request.method(),
                request.uri().path()
            ))
        },
        move |key: &String| Ok((caches.cache(key, Duration::ZERO), Scope::origin(API)?)),
    );
    let service = layer.layer(world.api());

    let mut request = Request::post(format!("{API}/v1/items"))
        .header("x-tenant", "acme")
        .body(Full::new(Bytes::new()))
        .unwrap();
    request.extensions_mut().insert(Audience("billing"));
    assert_eq!(
        send(service.clone(), request).await.1,
        "Bearer POST-/v1/items-billing-acme.1"
    );
    // Without the extension, no key: no token.
    assert_eq!(send(service, for_tenant("acme")).await.1, "-");
}

/// The layer's service is ready when its inner service is, and not before.
#[tokio::test]
async fn the_service_is_ready_when_its_inner_service_is() {
    let world = World::default();
    let (inner, mut handle) =
        tower_test::mock::pair::<Request<ReplayBody<Full<Bytes>>>, Response<Full<Bytes>>>();
    handle.allow(0);
    let mut service = world.by_tenant(Duration::ZERO).layer(inner);

    let mut ready = tokio_test::task::spawn(std::future::poll_fn(|cx| {
        Service::<Request<Full<Bytes>>>::poll_ready(&mut service, cx)
    }));
    assert!(ready.poll().is_pending());
    handle.allow(1);
    assert!(ready.is_woken());
    assert!(ready.poll().is_ready());
}

/// A key forgotten while its first refresh is in flight: the refresh goes on, and the request
/// waiting for it is sent with its token.
#[tokio::test(start_paused = true)]
async fn a_forgotten_keys_refresh_in_flight_finishes_for_its_waiters() {
    let world = World::default();
    let layer = world.by_tenant(Duration::from_secs(1)).max_keys(1);
    let service = layer.layer(world.api());

    let waiting = tokio::spawn(send(service.clone(), for_tenant("acme")));
    tokio::task::yield_now().await;
    assert_eq!(world.calls("acme"), 1);
    let other = tokio::spawn(send(service.clone(), for_tenant("globex")));
    tokio::task::yield_now().await;
    assert_eq!(layer.stats().evicted, 1);
    assert!(layer.cache(&"acme".to_owned()).is_none());

    assert_eq!(waiting.await.unwrap().1, "Bearer acme.1");
    assert_eq!(other.await.unwrap().1, "Bearer globex.1");
    assert_eq!(world.calls("acme"), 1);
}

/// A refused token is replaced for its key alone, and the request is sent again with the
/// replacement; the other keys keep theirs.
#[tokio::test(start_paused = true)]
async fn a_refusal_replaces_its_keys_token_only() {
    let world = World::default();
    let service = world.by_tenant(Duration::ZERO).layer(world.api());
    send(service.clone(), for_tenant("acme")).await;
    send(service.clone(), for_tenant("globex")).await;

    world
        .refused
        .lock()
        .unwrap()
        .insert("Bearer acme.1".to_owned());
    assert_eq!(
        send(service.clone(), for_tenant("acme")).await,
        (StatusCode::OK, "Bearer acme.2".to_owned())
    );
    assert_eq!(
        send(service, for_tenant("globex")).await.1,
        "Bearer globex.1"
    );
    assert_eq!((world.calls("acme"), world.calls("globex")), (2, 1));
}

/// A key whose cache cannot be made fails its requests with the reason, and is asked again
/// next time; the other keys are not disturbed.
#[tokio::test(start_paused = true)]
async fn a_key_whose_cache_cannot_be_made_fails_its_requests() {
    let world = World::default();
    let caches = world.clone();
    let attempts = Arc::new(Mutex::new(0));
    let counted = attempts.clone();
    let layer = KeyedAuthLayer::new(
        |request| Some(request.headers().get("x-tenant")?.to_str().ok()?.to_owned()),
        move |tenant: &String| {
            if tenant == "unknown" {
                *counted.lock().unwrap() += 1;
                return Err("no credentials for tenant `unknown`".into());
            }
            Ok((caches.cache(tenant, Duration::ZERO), Scope::origin(API)?))
        },
    );
    let service = layer.layer(world.api());

    for _ in 0..2 {
        let error = within(service.clone().oneshot(for_tenant("unknown")))
            .await
            .unwrap_err();
        assert_eq!(error.to_string(), "no credentials for tenant `unknown`");
    }
    assert_eq!(*attempts.lock().unwrap(), 2);
    assert_eq!(send(service, for_tenant("acme")).await.1, "Bearer acme.1");
    assert_eq!(layer.stats().keys, 1);
}

#[test]
fn debug_output_names_the_settings_and_no_token() {
    let world = World::default();
    let layer = world.by_tenant(Duration::ZERO).max_keys(3);
    let debug = format!("{layer:?}");
    assert!(
        debug.starts_with("KeyedAuthLayer { keys: Keys { held: 0, max_keys: 3, retry: true"),
        "{debug}"
    );
    let service = layer.layer(());
    assert!(format!("{service:?}").starts_with("KeyedAuth { inner: (), keys: Keys {"));
}

/// The same on threads: 8 tasks on 4 worker threads send 4,000 requests over 8 keys through a
/// layer that holds 3, so keys are forgotten and made again while other threads read the map.
/// Every request carries its own key's token, and each cache made refreshes exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn threads_over_many_keys_never_share_a_token() {
    let world = World::default();
    let made = Arc::new(Mutex::new(HashMap::<String, u32>::new()));
    let counted = made.clone();
    let caches = world.clone();
    let layer = KeyedAuthLayer::new(
        |request| Some(request.headers().get("x-tenant")?.to_str().ok()?.to_owned()),
        move |tenant: &String| {
            *counted.lock().unwrap().entry(tenant.clone()).or_default() += 1;
            Ok((caches.cache(tenant, Duration::ZERO), Scope::origin(API)?))
        },
    )
    .max_keys(3);
    let service = layer.layer(world.api());

    let tasks: Vec<_> = (0..8)
        .map(|task| {
            let service = service.clone();
            tokio::spawn(async move {
                for i in 0..500 {
                    let tenant = format!("t{}", (task * 7 + i * 3) % 8);
                    let (status, authorization) = send(service.clone(), for_tenant(&tenant)).await;
                    assert_eq!(status, StatusCode::OK);
                    assert!(
                        authorization.starts_with(&format!("Bearer {tenant}.")),
                        "{tenant} sent with {authorization}"
                    );
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }

    let made = made.lock().unwrap();
    for (tenant, made) in made.iter() {
        assert_eq!(world.calls(tenant), *made, "{tenant}");
    }
    let stats = layer.stats();
    assert!(stats.evicted > 0, "{stats}");
    assert_eq!(stats.created - stats.evicted, stats.keys as u64);
}

// ===== reqwest =====

/// An API on 127.0.0.1 that answers 401 to a refused token and 200 to any other, with the
/// `Authorization` it got (or `-`) as its body. Its base URL.
async fn echo_server(refused: Arc<Mutex<HashSet<String>>>) -> String {
    use hyper::server::conn::http1;
    use hyper_util::rt::TokioIo;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let refused = refused.clone();
            let handler =
                hyper::service::service_fn(move |request: Request<hyper::body::Incoming>| {
                    let authorization = request
                        .headers()
                        .get(AUTHORIZATION)
                        .map(|value| value.to_str().unwrap().to_owned());
                    let refused = authorization
                        .as_ref()
                        .is_some_and(|value| refused.lock().unwrap().contains(value));
                    async move {
                        let mut response = Response::new(Full::new(Bytes::from(
                            authorization.unwrap_or_else(|| "-".to_owned()),
                        )));
                        if refused {
                            *response.status_mut() = StatusCode::UNAUTHORIZED;
                        }
                        Ok::<_, std::convert::Infallible>(response)
                    }
                });
            tokio::spawn(http1::Builder::new().serve_connection(TokioIo::new(stream), handler));
        }
    });
    format!("http://{addr}")
}

/// The reqwest middleware made from a layer shares its keys and caches: a key's token got
/// through the tower client is the one the reqwest client sends, and a refusal seen by
/// reqwest replaces it for both.
#[tokio::test]
async fn the_reqwest_middleware_shares_the_layers_keys() {
    use tower_bearer::reqwest::KeyedAuthMiddleware;

    let world = World::default();
    let (first, second) = (
        echo_server(world.refused.clone()).await,
        echo_server(world.refused.clone()).await,
    );
    let caches = world.clone();
    let layer = KeyedAuthLayer::by_origin(move |origin| Ok(caches.cache(origin, Duration::ZERO)));
    let tower_client = layer.layer(world.api());
    let middleware = KeyedAuthMiddleware::from(&layer);
    assert!(
        format!("{middleware:?}")
            .starts_with("KeyedAuthMiddleware { keys: Keys { held: 0, max_keys: 64"),
        "{middleware:?}"
    );
    let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(middleware.clone())
        .build();
    let text = |url: String| {
        let client = client.clone();
        async move {
            let response = client.get(url).send().await.unwrap();
            (response.status().as_u16(), response.text().await.unwrap())
        }
    };

    let get = |uri: String| Request::get(uri).body(Full::new(Bytes::new())).unwrap();
    assert_eq!(
        send(tower_client, get(format!("{first}/a"))).await.1,
        format!("Bearer {first}.1")
    );
    assert_eq!(
        text(format!("{first}/b")).await,
        (200, format!("Bearer {first}.1"))
    );
    assert_eq!(
        text(format!("{second}/c")).await,
        (200, format!("Bearer {second}.1"))
    );
    assert_eq!(middleware.stats().keys, 2);

    world
        .refused
        .lock()
        .unwrap()
        .insert(format!("Bearer {first}.1"));
    assert_eq!(
        text(format!("{first}/d")).await,
        (200, format!("Bearer {first}.2"))
    );
    assert_eq!(
        layer
            .cache(&first)
            .unwrap()
            .token()
            .await
            .unwrap()
            .expose_access_token(),
        format!("{first}.2")
    );
    assert_eq!((world.calls(&first), world.calls(&second)), (2, 1));
}

/// `futures::future::join_all` without the dependency: the tasks of one runtime, joined in order.
async fn futures_join_all<F>(futures: impl IntoIterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.into_iter().map(tokio::spawn).collect();
    let mut outputs = Vec::with_capacity(handles.len());
    for handle in handles {
        outputs.push(handle.await.unwrap());
    }
    outputs
}

// ===== the model =====

/// One step of a run: a burst of concurrent requests, each with its key, and the tokens the
/// API starts refusing before the burst.
#[derive(Debug, Clone)]
struct Burst {
    tenants: Vec<usize>,
    refuse: Vec<usize>,
}

fn bursts(tenants: usize) -> impl Strategy<Value = Vec<Burst>> {
    let burst = (
        prop::collection::vec(0..tenants, 1..24),
        prop::collection::vec(0..tenants, 0..2),
    )
        .prop_map(|(tenants, refuse)| Burst { tenants, refuse });
    prop::collection::vec(burst, 1..8)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Concurrent callers over M keys, with keys forgotten (max_keys below M) and tokens
    /// refused between bursts: every request is sent with a token of its own key, never
    /// another's; each cache made refreshes once for its first token and at most once per
    /// token of its key refused, and for nothing else; with neither forgetting nor refusals,
    /// M keys cost exactly M refreshes.
    #[test]
    fn concurrent_callers_over_many_keys(
        (tenants, max_keys, bursts) in (1usize..6).prop_flat_map(|m| (Just(m), 1usize..8, bursts(m)))
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .unwrap();
        runtime.block_on(async {
            let names: Vec<String> = (0..tenants).map(|t| format!("t{t}")).collect();
            let world = World::default();
            let made = Arc::new(Mutex::new(Vec::<(String, TokenCache)>::new()));
            let kept = made.clone();
            let caches = world.clone();
            let layer = KeyedAuthLayer::new(
                |request| Some(request.headers().get("x-tenant")?.to_str().ok()?.to_owned()),
                move |tenant: &String| {
                    let cache = caches.cache(tenant, Duration::from_millis(50));
                    kept.lock().unwrap().push((tenant.clone(), cache.clone()));
                    Ok((cache, Scope::origin(API)?))
                },
            )
            .max_keys(max_keys);
            let service = layer.layer(world.api());
            let mut refusals: HashMap<String, u64> = HashMap::new();

            for burst in &bursts {
                for &t in &burst.refuse {
                    // The token the key's cache holds now, if it holds one.
                    let Some(cache) = layer.cache(&names[t]) else { continue };
                    if cache.stats().generation == 0 {
                        continue;
                    }
                    let token = cache.token().await.unwrap();
                    let value = token.authorization().to_str().unwrap().to_owned();
                    if world.refused.lock().unwrap().insert(value) {
                        *refusals.entry(names[t].clone()).or_default() += 1;
                    }
                }
                let requests = burst.tenants.iter().map(|&t| {
                    let tenant = names[t].clone();
                    let service = service.clone();
                    async move {
                        let result = send(service, for_tenant(&tenant)).await;
                        (tenant, result)
                    }
                });
                for (tenant, (status, authorization)) in futures_join_all(requests).await {
                    prop_assert_eq!(status, StatusCode::OK);
                    prop_assert!(
                        authorization.starts_with(&format!("Bearer {tenant}.")),
                        "{} sent with {}", tenant, authorization
                    );
                }
            }

            let made = made.lock().unwrap();
            for name in &names {
                let refused = refusals.get(name).copied().unwrap_or(0);
                let mut started = 0;
                for (_, cache) in made.iter().filter(|(tenant, _)| tenant == name) {
                    let stats = cache.stats();
                    let count = |reason| stats.refreshes(reason).started;
                    prop_assert_eq!(count(RefreshReason::Initial), 1, "{}", name);
                    prop_assert!(count(RefreshReason::Rejected) <= refused, "{}", name);
                    prop_assert_eq!(count(RefreshReason::Expired) + count(RefreshReason::Ahead), 0);
                    started += count(RefreshReason::Initial) + count(RefreshReason::Rejected);
                }
                prop_assert_eq!(u64::from(world.calls(name)), started, "{}", name);
            }
            let stats = layer.stats();
            prop_assert!(stats.keys <= max_keys);
            prop_assert_eq!(stats.created, made.len() as u64);
            prop_assert_eq!(stats.created - stats.evicted, stats.keys as u64);
            if stats.evicted == 0 && refusals.is_empty() {
                let requested: HashSet<usize> =
                    bursts.iter().flat_map(|b| b.tenants.iter().copied()).collect();
                prop_assert_eq!(world.total_calls() as usize, requested.len());
            }
            Ok(())
        })?;
    }
}
