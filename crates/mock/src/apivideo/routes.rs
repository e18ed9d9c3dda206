//! What each path is, and the answer to a path or method no route knows.

use std::sync::Arc;

use http::header::{ALLOW, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;

use super::auth::{self, AuthEndpoint};
use super::resources;
use super::response::ProblemJson;
use super::state::{RequestLog, SharedServer};
use crate::server::{self, MockBody, ShutdownSignal, ShuttingDown};

/// What a path is.
#[derive(Clone, Copy)]
enum Route {
    Auth(AuthEndpoint),
    Videos,
}

impl Route {
    fn of(path: &str) -> Option<Self> {
        match path {
            "/auth/api-key" => Some(Self::Auth(AuthEndpoint::ApiKey)),
            "/auth/refresh" => Some(Self::Auth(AuthEndpoint::RefreshToken)),
            "/videos" => Some(Self::Videos),
            _ => None,
        }
    }

    fn allows(self, method: &Method) -> bool {
        match self {
            Self::Auth(_) => method == Method::POST,
            Self::Videos => method == Method::GET || method == Method::POST,
        }
    }

    /// The `Allow` header for a 405.
    fn allowed(self) -> HeaderValue {
        HeaderValue::from_static(match self {
            Self::Auth(_) => "POST",
            Self::Videos => "GET, POST",
        })
    }
}

/// Answers one request: the handler [`RunningServer`](crate::server::RunningServer)
/// serves.
pub(super) async fn handle(
    shared: Arc<SharedServer>,
    mut shutdown: ShutdownSignal,
    request: Request<Incoming>,
) -> Result<Response<MockBody>, ShuttingDown> {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let response = match Route::of(&path) {
        None => not_found(&path),
        Some(route) if !route.allows(&method) => method_not_allowed(route.allowed()),
        Some(Route::Auth(grant)) => auth::serve(&shared, &mut shutdown, grant, request).await?,
        Some(Route::Videos) => resources::serve(&shared, request).await,
    };
    report(
        &shared,
        &RequestLog {
            method,
            path,
            status: response.status(),
        },
    );
    Ok(response)
}

fn not_found(path: &str) -> Response<MockBody> {
    let problem = ProblemJson::new(
        StatusCode::NOT_FOUND,
        "https://docs.api.video/reference/unrecognized-request-url",
        "Unrecognized request URL.",
    );
    match server::unknown_path_hint(path) {
        Some(hint) => problem.detail(hint),
        None => problem,
    }
    .into_response()
}

fn method_not_allowed(allowed: HeaderValue) -> Response<MockBody> {
    let mut response = ProblemJson::generic(StatusCode::METHOD_NOT_ALLOWED).into_response();
    response.headers_mut().insert(ALLOW, allowed);
    response
}

/// Tells tracing and the `on_request` hook. Only the method, path and status: never a
/// header, a query or a body, where credentials live.
fn report(shared: &SharedServer, log: &RequestLog) {
    tracing::debug!(
        method = %log.method,
        path = %log.path,
        status = log.status.as_u16(),
        "mock api.video request"
    );
    if let Some(hook) = &shared.config.on_request {
        hook(log);
    }
}
