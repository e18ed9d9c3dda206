//! An axum app that calls an upstream bearer-token API for its callers.
//!
//! ```text
//! cargo run --example axum_upstream
//! curl http://127.0.0.1:PORT/titles
//! ```
//!
//! The upstream is the embedded mock api.video. The app holds one authenticated client in its
//! state; every handler clones it (a few reference counts), so all requests share one token
//! and one refresh, however many arrive at once. An upstream token that cannot be had becomes
//! 503 for the app's caller, any other upstream failure 502.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Json;
use axum::routing::get;
use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::net::TcpListener;
use tower::timeout::Timeout;
use tower::{BoxError, Layer, ServiceExt};
use tower_bearer::{BearerAuth, ReplayBody, TokenError};
use tower_bearer_apivideo::ApiVideo;
use tower_bearer_mock::apivideo::MockServer;

/// The upstream client: a timeout over bearer auth over hyper.
type Upstream = Timeout<BearerAuth<Client<HttpConnector, ReplayBody<Full<Bytes>>>>>;

/// What every handler shares.
#[derive(Clone)]
pub(crate) struct AppState {
    upstream: Upstream,
    /// The upstream API's base, without a trailing slash.
    base: Arc<str>,
}

impl AppState {
    /// One client for the API at `base` with `api_key`; the token provider uses it too.
    pub(crate) fn new(base: &str, api_key: &str) -> Result<Self, BoxError> {
        let client = Client::builder(TokioExecutor::new()).build_http();
        let auth = ApiVideo::with_base_uri(base, api_key.to_owned(), client.clone())?
            .timeout(Duration::from_secs(5))
            .into_layer();
        Ok(AppState {
            upstream: Timeout::new(auth.layer(client), Duration::from_secs(10)),
            base: base.trim_end_matches('/').into(),
        })
    }
}

/// `GET /titles`: the titles of the first page of upstream videos.
async fn titles(State(state): State<AppState>) -> Result<Json<Vec<String>>, (StatusCode, String)> {
    let request = Request::get(format!("{}/videos?pageSize=10", state.base))
        .body(Full::default())
        .map_err(|error| (StatusCode::INTERNAL_SERVER_ERROR, error.to_string()))?;
    let response = state
        .upstream
        .oneshot(request)
        .await
        .map_err(upstream_error)?;
    if !response.status().is_success() {
        let message = format!("upstream answered {}", response.status());
        return Err((StatusCode::BAD_GATEWAY, message));
    }
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|error| upstream_error(error.into()))?
        .to_bytes();
    let page: serde_json::Value = serde_json::from_slice(&body).map_err(|error| {
        (
            StatusCode::BAD_GATEWAY,
            format!("upstream sent bad JSON: {error}"),
        )
    })?;
    let titles = page["data"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|video| Some(video["title"].as_str()?.to_owned()))
        .collect();
    Ok(Json(titles))
}

/// The app's routes.
pub(crate) fn app(state: AppState) -> Router {
    Router::new()
        .route("/titles", get(titles))
        .with_state(state)
}

#[tokio::main]
async fn main() -> ExitCode {
    let run = async {
        let upstream = MockServer::builder().api_key("axum-key").start().await?;
        let state = AppState::new(&upstream.uri().to_string(), "axum-key")?;
        let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
        println!("upstream (mock api.video) at {}", upstream.uri());
        println!("listening on http://{}", listener.local_addr()?);
        println!("try: curl http://{}/titles", listener.local_addr()?);
        let stop = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        serve(listener, state, stop).await?;
        upstream.shutdown().await;
        Ok::<_, BoxError>(())
    };
    match run.await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("axum_upstream: {error}");
            ExitCode::FAILURE
        }
    }
}

// ===== errors and serving =====

/// What the app's caller gets when the upstream call fails.
fn upstream_error(error: BoxError) -> (StatusCode, String) {
    match TokenError::find(&*error) {
        // The request never left: say so, and say it is temporary.
        Some(token) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("upstream authentication unavailable: {token}"),
        ),
        None => (StatusCode::BAD_GATEWAY, format!("upstream failed: {error}")),
    }
}

/// Serves the app on `listener` until `stop` resolves.
pub(crate) async fn serve(
    listener: TcpListener,
    state: AppState,
    stop: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, app(state))
        .with_graceful_shutdown(stop)
        .await
}
