//! Traces through OpenTelemetry: a token refresh and, inside it, the provider's HTTP client
//! spans, printed by OpenTelemetry's stdout exporter.
//!
//! ```text
//! cargo run --example otel
//! ```
//!
//! Starts the mock authorization server and asks a `TokenCache` fed by an `OAuth2` provider
//! (which first discovers its token endpoint) for a token, inside a span of the caller's. The
//! exporter prints three spans: `tower_bearer.refresh`, a root span linked to the caller's,
//! and inside it a `GET` (the server's metadata) and a `POST` (the token endpoint), client
//! spans with OpenTelemetry's HTTP attributes (`http.request.method`, `server.address`,
//! `server.port`, `url.full`, `http.response.status_code`).

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tower::BoxError;
use tower_bearer::TokenCache;
use tower_bearer_mock::oauth2::{DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, MockAuthServer};
use tower_bearer_oauth2::OAuth2;
use tracing::Instrument;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::SubscriberExt;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), BoxError> {
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(opentelemetry_stdout::SpanExporter::default())
        .build();
    run(&provider).await?;
    provider.shutdown()?;
    Ok(())
}

/// Gets one token with the spans going to `provider`.
pub(crate) async fn run(provider: &SdkTracerProvider) -> Result<(), BoxError> {
    // What an application sets up once: tracing's spans, exported as OpenTelemetry's.
    let tracer = provider.tracer("tower-bearer-example");
    let otel = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_filter(LevelFilter::INFO);
    let subscriber = tracing_subscriber::registry().with(otel);
    // For this thread, where a current-thread runtime runs every task (the refresh's too).
    let _traced = tracing::subscriber::set_default(subscriber);

    let server = MockAuthServer::start().await?;
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let oauth2 = OAuth2::builder()
        .issuer(server.issuer())
        .client_id(DEFAULT_CLIENT_ID)
        .client_secret(DEFAULT_CLIENT_SECRET)
        .build(client)?;
    let cache = TokenCache::builder(oauth2).name("example").build();

    cache
        .token()
        .instrument(tracing::info_span!("request"))
        .await?;
    server.shutdown().await;
    Ok(())
}
