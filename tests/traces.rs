//! What the layer tells a `tracing` subscriber: a span per refresh (not per request), with
//! its reason, outcome, generation, lifetime, duration and waiters, filled in by the store
//! when it served the token; and events for a refused token and its retry that nest under the
//! caller's own request span.

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use http::StatusCode;
use tokio::time::advance;
use tower::{Layer, ServiceExt};
use tower_bearer::store::MemoryStore;
use tower_bearer::{BearerAuthLayer, Scope, TokenCache};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Instrument, Subscriber};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;

// ===== a subscriber that keeps what it is told =====

#[derive(Debug, Clone, Default)]
struct SpanSeen {
    name: &'static str,
    parent: Option<&'static str>,
    follows_from: Vec<&'static str>,
    fields: BTreeMap<String, String>,
    closed: bool,
}

#[derive(Debug, Clone)]
struct EventSeen {
    level: tracing::Level,
    fields: BTreeMap<String, String>,
    /// The names of the spans it happened in, innermost first.
    scope: Vec<&'static str>,
}

impl EventSeen {
    fn message(&self) -> &str {
        self.fields.get("message").map_or("", String::as_str)
    }
}

#[derive(Clone, Default)]
struct Traced {
    spans: Arc<Mutex<Vec<SpanSeen>>>,
    events: Arc<Mutex<Vec<EventSeen>>>,
}

struct Fields<'a>(&'a mut BTreeMap<String, String>);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
}

/// Where a span's record is kept, in its extensions.
struct Index(usize);

impl<S: Subscriber + for<'a> LookupSpan<'a>> tracing_subscriber::Layer<S> for Traced {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let span = ctx.span(id).expect("a new span");
        let mut seen = SpanSeen {
            name: span.name(),
            parent: span.parent().map(|p| p.name()),
            ..SpanSeen::default()
        };
        attrs.record(&mut Fields(&mut seen.fields));
        let mut spans = self.spans.lock().unwrap();
        spans.push(seen);
        span.extensions_mut().insert(Index(spans.len() - 1));
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let span = ctx.span(id).expect("a span");
        let index = span.extensions().get::<Index>().expect("indexed").0;
        values.record(&mut Fields(&mut self.spans.lock().unwrap()[index].fields));
    }

    fn on_follows_from(&self, id: &Id, follows: &Id, ctx: Context<'_, S>) {
        let (Some(span), Some(follows)) = (ctx.span(id), ctx.span(follows)) else {
            return;
        };
        let index = span.extensions().get::<Index>().expect("indexed").0;
        self.spans.lock().unwrap()[index]
            .follows_from
            .push(follows.name());
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let mut fields = BTreeMap::new();
        event.record(&mut Fields(&mut fields));
        let scope = ctx
            .event_scope(event)
            .map(|scope| scope.map(|span| span.name()).collect())
            .unwrap_or_default();
        self.events.lock().unwrap().push(EventSeen {
            level: *event.metadata().level(),
            fields,
            scope,
        });
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        let span = ctx.span(&id).expect("a span");
        let index = span.extensions().get::<Index>().expect("indexed").0;
        self.spans.lock().unwrap()[index].closed = true;
    }
}

impl Traced {
    /// Keeps what is traced on this thread (a current-thread runtime's tasks included) until
    /// the guard drops.
    fn this_thread() -> (Traced, tracing::subscriber::DefaultGuard) {
        let seen = Traced::default();
        let subscriber = tracing_subscriber::registry().with(seen.clone());
        let guard = tracing::subscriber::set_default(subscriber);
        // Callsites first reached without this subscriber must ask it again.
        tracing::callsite::rebuild_interest_cache();
        (seen, guard)
    }

    fn refreshes(&self) -> Vec<SpanSeen> {
        let spans = self.spans.lock().unwrap();
        spans
            .iter()
            .filter(|s| s.name == "tower_bearer.refresh")
            .cloned()
            .collect()
    }

    fn events(&self, message: &str) -> Vec<EventSeen> {
        let events = self.events.lock().unwrap();
        events
            .iter()
            .filter(|e| e.message().starts_with(message))
            .cloned()
            .collect()
    }
}

fn field<'a>(span: &'a SpanSeen, name: &str) -> &'a str {
    span.fields
        .get(name)
        .unwrap_or_else(|| panic!("no field {name} in {span:?}"))
}

// ===== the tests =====

#[tokio::test(start_paused = true)]
async fn a_refresh_is_a_span_of_its_own_that_follows_from_the_request_that_started_it() {
    let (seen, _guard) = Traced::this_thread();
    let (refresher, mut handle) = refresher();
    let cache = TokenCache::builder(refresher).name("api").build();
    let service = BearerAuthLayer::from_cache(cache.clone(), Scope::any()).layer(Api::open());

    let first = tokio::spawn(
        service
            .clone()
            .oneshot(get("http://api.test/"))
            .instrument(tracing::info_span!("request")),
    );
    let second = tokio::spawn(service.clone().oneshot(get("http://api.test/")));
    let (_, respond) = next_refresh(&mut handle).await;
    until(|| cache.stats().waiting == 2).await;
    advance(Duration::from_millis(120)).await;
    respond.send_response(token("ACCESS-1", HOUR));
    assert_eq!(first.await.unwrap().unwrap().status(), StatusCode::OK);
    assert_eq!(second.await.unwrap().unwrap().status(), StatusCode::OK);
    tokio::task::yield_now().await;

    let refreshes = seen.refreshes();
    assert_eq!(refreshes.len(), 1, "{refreshes:?}");
    let refresh = &refreshes[0];
    assert_eq!(refresh.parent, None, "a refresh is no request's child");
    assert_eq!(refresh.follows_from, ["request"]);
    assert_eq!(field(refresh, "cache"), "api");
    assert_eq!(field(refresh, "reason"), "initial");
    assert_eq!(field(refresh, "outcome"), "success");
    assert_eq!(field(refresh, "generation"), "1");
    assert_eq!(field(refresh, "lifetime_s"), "3600");
    assert_eq!(field(refresh, "duration_ms"), "120");
    assert_eq!(field(refresh, "waiters"), "2");
    assert!(!refresh.fields.contains_key("store"), "{refresh:?}");
    assert!(refresh.closed);

    // No span per request: the only spans are the caller's and the refresh.
    let names: Vec<_> = seen.spans.lock().unwrap().iter().map(|s| s.name).collect();
    assert_eq!(names, ["request", "tower_bearer.refresh"]);
    // One line at DEBUG for the refresh, inside its span.
    let done = seen.events("token refreshed");
    assert_eq!(done.len(), 1);
    assert_eq!(done[0].level, tracing::Level::DEBUG);
    assert_eq!(done[0].scope, ["tower_bearer.refresh"]);
    let debug_or_above = seen
        .events
        .lock()
        .unwrap()
        .iter()
        .filter(|e| e.level <= tracing::Level::DEBUG)
        .count();
    assert_eq!(debug_or_above, 1);
}

#[tokio::test(start_paused = true)]
async fn a_refused_token_and_its_retry_are_told_inside_the_callers_request_span() {
    let (seen, _guard) = Traced::this_thread();
    let (refresher, mut handle) = refresher();
    let cache = TokenCache::new(refresher);
    let service =
        BearerAuthLayer::from_cache(cache.clone(), Scope::any()).layer(Api::rejecting("ACCESS-1"));
    let warm = tokio::spawn(service.clone().oneshot(get("http://api.test/")));
    answer(&mut handle, token("ACCESS-1", HOUR)).await;
    warm.await.unwrap().unwrap();
    advance(Duration::from_secs(10)).await;

    let call = tokio::spawn(
        service
            .clone()
            .oneshot(get("http://api.test/"))
            .instrument(tracing::info_span!("request")),
    );
    answer(&mut handle, token("ACCESS-2", HOUR)).await;
    assert_eq!(call.await.unwrap().unwrap().status(), StatusCode::OK);

    let refused = seen.events("the server rejected the token");
    let refused = refused.last().expect("the refusal is told");
    assert_eq!(refused.scope, ["request"]);
    assert_eq!(refused.fields["status"], "401");
    assert_eq!(refused.fields["verdict"], "rejected");
    assert_eq!(refused.fields["generation"], "1");
    let retry = seen.events("retrying with a new token");
    assert_eq!(retry.len(), 1);
    assert_eq!(retry[0].scope, ["request"]);
    assert_eq!(retry[0].fields["replaced"], "1");
    assert_eq!(retry[0].fields["generation"], "2");

    let refreshes = seen.refreshes();
    assert_eq!(refreshes.len(), 2);
    assert_eq!(field(&refreshes[1], "reason"), "rejected");
    assert_eq!(field(&refreshes[1], "generation"), "2");
    assert_eq!(refreshes[1].follows_from, ["request"]);
}

#[tokio::test(start_paused = true)]
async fn a_failed_refresh_enters_a_backoff_and_the_next_success_leaves_it() {
    let (seen, _guard) = Traced::this_thread();
    let (refresher, mut handle) = refresher();
    let cache = TokenCache::new(refresher);
    let service = BearerAuthLayer::from_cache(cache.clone(), Scope::any()).layer(Api::open());

    let call = tokio::spawn(service.clone().oneshot(get("http://api.test/")));
    let (_, respond) = next_refresh(&mut handle).await;
    respond.send_error("down");
    assert!(call.await.unwrap().is_err());
    let failed = seen.events("token refresh failed; backing off");
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].level, tracing::Level::WARN);
    assert!(failed[0].fields.contains_key("backoff_ms"));
    assert_eq!(failed[0].scope, ["tower_bearer.refresh"]);

    advance(Duration::from_secs(60)).await;
    let call = tokio::spawn(service.clone().oneshot(get("http://api.test/")));
    answer(&mut handle, token("ACCESS-1", HOUR)).await;
    call.await.unwrap().unwrap();
    let over = seen.events("token refreshed after failing");
    assert_eq!(over.len(), 1);
    assert_eq!(over[0].level, tracing::Level::INFO);
    assert_eq!(over[0].fields["failures"], "1");

    let refreshes = seen.refreshes();
    assert_eq!(field(&refreshes[0], "outcome"), "error");
    assert_eq!(field(&refreshes[1], "outcome"), "success");
}

#[tokio::test(start_paused = true)]
async fn a_refresh_served_by_the_store_says_so() {
    let (seen, _guard) = Traced::this_thread();
    let store = MemoryStore::new();
    let (refresher, mut handle) = refresher();
    let first = TokenCache::builder(refresher)
        .name("first")
        .store(store.clone())
        .build();
    let (idle, _idle_handle) = common::refresher();
    let second = TokenCache::builder(idle)
        .name("second")
        .store(store)
        .build();

    let got = tokio::spawn({
        let first = first.clone();
        async move { first.token().await }
    });
    answer(&mut handle, token("ACCESS-1", HOUR)).await;
    got.await.unwrap().unwrap();
    second.token().await.unwrap();

    let refreshes = seen.refreshes();
    assert_eq!(refreshes.len(), 2);
    assert_eq!(field(&refreshes[0], "cache"), "first");
    assert_eq!(field(&refreshes[0], "store"), "published");
    assert_eq!(field(&refreshes[1], "cache"), "second");
    assert_eq!(field(&refreshes[1], "store"), "adopted");
    assert_eq!(field(&refreshes[1], "outcome"), "success");
    let leased = seen.events("took the refresh lease");
    assert_eq!(leased.len(), 1);
    assert_eq!(leased[0].scope, ["tower_bearer.refresh"]);
}

// ===== a provider's requests =====

#[tokio::test]
async fn a_providers_requests_are_http_client_spans_inside_the_refresh() {
    use tower_bearer_mock::oauth2::{DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, MockAuthServer};
    use tower_bearer_oauth2::OAuth2;

    let (seen, _guard) = Traced::this_thread();
    let server = MockAuthServer::start().await.unwrap();
    let provider = OAuth2::builder()
        .issuer(server.issuer())
        .client_id(DEFAULT_CLIENT_ID)
        .client_secret(DEFAULT_CLIENT_SECRET)
        .build(common::oauth2::http())
        .unwrap();
    let cache = TokenCache::new(provider);
    cache.token().await.unwrap();

    let refreshes = seen.refreshes();
    assert_eq!(refreshes.len(), 1);
    assert_eq!(field(&refreshes[0], "provider"), "oauth2");
    let spans = seen.spans.lock().unwrap().clone();
    let http: Vec<_> = spans
        .iter()
        .filter(|s| s.name == "tower_bearer.http")
        .collect();
    // The metadata, then the token endpoint.
    assert_eq!(http.len(), 2, "{http:?}");
    let port = server.addr().port().to_string();
    for (span, method, path) in [
        (http[0], "GET", "/.well-known/oauth-authorization-server"),
        (http[1], "POST", "/token"),
    ] {
        assert_eq!(span.parent, Some("tower_bearer.refresh"));
        assert_eq!(field(span, "otel.name"), method);
        assert_eq!(field(span, "otel.kind"), "client");
        assert_eq!(field(span, "http.request.method"), method);
        assert_eq!(field(span, "server.address"), "127.0.0.1");
        assert_eq!(field(span, "server.port"), port);
        assert!(field(span, "url.full").ends_with(path), "{span:?}");
        assert_eq!(field(span, "http.response.status_code"), "200");
        assert!(!span.fields.contains_key("error.type"), "{span:?}");
        assert!(span.closed);
    }
    server.shutdown().await;
}

#[tokio::test]
async fn a_refused_provider_request_has_an_error_type() {
    use tower_bearer_mock::oauth2::{DEFAULT_CLIENT_ID, MockAuthServer};
    use tower_bearer_oauth2::OAuth2;

    let (seen, _guard) = Traced::this_thread();
    let server = MockAuthServer::start().await.unwrap();
    let provider = OAuth2::builder()
        .token_endpoint(server.token_endpoint())
        .client_id(DEFAULT_CLIENT_ID)
        .client_secret("not-the-secret")
        .build(common::oauth2::http())
        .unwrap();
    let cache = TokenCache::new(provider);
    cache.token().await.unwrap_err();

    let spans = seen.spans.lock().unwrap().clone();
    let http: Vec<_> = spans
        .iter()
        .filter(|s| s.name == "tower_bearer.http")
        .collect();
    assert_eq!(http.len(), 1, "{http:?}");
    assert_eq!(field(http[0], "http.response.status_code"), "401");
    assert_eq!(field(http[0], "error.type"), "401");
    assert_eq!(field(http[0], "otel.status_code"), "ERROR");
    assert_eq!(field(&seen.refreshes()[0], "outcome"), "error");
    server.shutdown().await;
}
