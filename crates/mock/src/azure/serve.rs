//! One request to the mock: which endpoint, the fault to inject, the checks each endpoint
//! makes, and the answer in its shape.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use secrecy::ExposeSecret;
use serde_json::{Value, json};

use super::{APP_SERVICE_PATH, Endpoint, Fault, IMDS_PATH, Issued, SYSTEM_ASSIGNED_CLIENT_ID};
use super::{SeenRequest, Shared, State};
use crate::server::rng::{BASE64URL, SplitMix64};
use crate::server::{MockBody, ShutdownSignal, ShuttingDown};

/// The API versions each endpoint takes: IMDS those the Azure SDKs send (Python 2018-02-01,
/// Rust 2019-08-01), App Service the one whose answer this mock speaks.
const IMDS_API_VERSIONS: [&str; 2] = ["2018-02-01", "2019-08-01"];
const APP_SERVICE_API_VERSION: &str = "2019-08-01";

/// Answers one request: the handler the server runs.
pub(super) async fn handle(
    shared: Arc<Shared>,
    mut shutdown: ShutdownSignal,
    request: Request<Incoming>,
) -> Result<Response<MockBody>, ShuttingDown> {
    let endpoint = match request.uri().path() {
        IMDS_PATH => Endpoint::Imds,
        APP_SERVICE_PATH => Endpoint::AppService,
        _ => return Ok(plain(StatusCode::NOT_FOUND)),
    };
    if request.method() != Method::GET {
        return Ok(plain(StatusCode::METHOD_NOT_ALLOWED));
    }
    let seen = seen(endpoint, &request);
    let fault = {
        let mut state = shared.lock();
        state.last_request = Some(seen);
        match endpoint {
            Endpoint::Imds => state.counters.imds_requests += 1,
            Endpoint::AppService => state.counters.app_service_requests += 1,
        }
        next_fault(&mut state)
    };
    match fault {
        Some(Fault::Delay(delay)) => {
            shared.lock().counters.delays_injected += 1;
            shutdown.sleep(delay).await?;
        }
        Some(Fault::Status(status)) => {
            shared.lock().counters.faults_injected += 1;
            let reason = status.canonical_reason().unwrap_or("injected");
            return Ok(report(refusal(endpoint, status, "injected", reason)));
        }
        Some(Fault::RateLimited { retry_after }) => {
            shared.lock().counters.faults_injected += 1;
            let mut response = refusal(
                endpoint,
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_requests",
                "Too many requests",
            );
            response
                .headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from(retry_after.as_secs()));
            return Ok(report(response));
        }
        None => {}
    }
    Ok(report(answer(&shared, endpoint, &request)))
}

/// What a test may check of `request`, the identity header marked sensitive.
fn seen(endpoint: Endpoint, request: &Request<Incoming>) -> SeenRequest {
    let mut headers = request.headers().clone();
    if let Some(header) = headers.get_mut("x-identity-header") {
        header.set_sensitive(true);
    }
    SeenRequest {
        endpoint,
        query: request
            .uri()
            .query()
            .map(|query| {
                form_urlencoded::parse(query.as_bytes())
                    .into_owned()
                    .collect()
            })
            .unwrap_or_default(),
        headers,
    }
}

fn next_fault(state: &mut State) -> Option<Fault> {
    let (remaining, fault) = state.faults.front_mut()?;
    let fault = *fault;
    *remaining -= 1;
    if *remaining == 0 {
        state.faults.pop_front();
    }
    Some(fault)
}

/// The token, or the refusal the endpoint gives this request.
fn answer(shared: &Shared, endpoint: Endpoint, request: &Request<Incoming>) -> Response<MockBody> {
    let config = &shared.config;
    let headers = request.headers();
    let bad = |message: &str| {
        refusal(
            endpoint,
            StatusCode::BAD_REQUEST,
            "invalid_request",
            message,
        )
    };
    match endpoint {
        Endpoint::Imds => {
            let metadata = headers
                .get("metadata")
                .is_some_and(|value| value.as_bytes().eq_ignore_ascii_case(b"true"));
            if !metadata {
                shared.lock().counters.missing_metadata += 1;
                return refused(shared, bad("Required metadata header not specified"));
            }
            if headers.contains_key("x-forwarded-for") {
                shared.lock().counters.forwarded += 1;
                return refused(
                    shared,
                    bad("Request with an X-Forwarded-For header is not allowed"),
                );
            }
        }
        Endpoint::AppService => {
            let header = headers.get("x-identity-header").map(HeaderValue::as_bytes);
            if header != Some(config.identity_header.expose_secret().as_bytes()) {
                shared.lock().counters.wrong_identity_header += 1;
                return refused(
                    shared,
                    refusal(
                        endpoint,
                        StatusCode::UNAUTHORIZED,
                        "unauthorized",
                        "The X-IDENTITY-HEADER is missing or wrong",
                    ),
                );
            }
        }
    }
    let query: HashMap<String, String> = request
        .uri()
        .query()
        .map(|query| {
            form_urlencoded::parse(query.as_bytes())
                .into_owned()
                .collect()
        })
        .unwrap_or_default();
    let param = |name: &str| {
        query
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    };
    let Some(api_version) = param("api-version") else {
        return refused(
            shared,
            bad("Required query variable 'api-version' is missing"),
        );
    };
    let version_known = match endpoint {
        Endpoint::Imds => IMDS_API_VERSIONS.contains(&api_version),
        Endpoint::AppService => api_version == APP_SERVICE_API_VERSION,
    };
    if !version_known {
        return refused(shared, bad("Unsupported api-version"));
    }
    let Some(resource) = param("resource") else {
        return refused(shared, bad("Required query variable 'resource' is missing"));
    };
    let resource_id_name = match endpoint {
        Endpoint::Imds => "msi_res_id",
        Endpoint::AppService => "mi_res_id",
    };
    let selectors = [
        ("client_id", param("client_id")),
        ("object_id", param("object_id")),
        (resource_id_name, param(resource_id_name)),
    ];
    let mut chosen = selectors
        .iter()
        .filter_map(|(name, value)| Some((*name, (*value)?)));
    let client_id = match (chosen.next(), chosen.next()) {
        (Some(_), Some(_)) => return refused(shared, bad("Only one identity may be named")),
        (None, _) => config
            .system_assigned
            .then(|| SYSTEM_ASSIGNED_CLIENT_ID.to_owned()),
        (Some((name, value)), None) => config
            .user_assigned
            .iter()
            .find(|identity| match name {
                "client_id" => identity.client_id == value,
                "object_id" => identity.object_id == value,
                _ => identity.resource_id == value,
            })
            .map(|identity| identity.client_id.clone()),
    };
    let Some(client_id) = client_id else {
        shared.lock().counters.unknown_identity += 1;
        return refused(shared, bad("Identity not found"));
    };
    let known = |r: &String| r.trim_end_matches('/') == resource.trim_end_matches('/');
    if !config.resources.iter().any(known) {
        shared.lock().counters.unknown_resource += 1;
        return refused(
            shared,
            refusal(
                endpoint,
                StatusCode::BAD_REQUEST,
                "invalid_resource",
                &format!("AADSTS500011: The resource principal named {resource} was not found."),
            ),
        );
    }
    issue(shared, endpoint, resource, client_id)
}

/// A refusal, counted.
fn refused(shared: &Shared, response: Response<MockBody>) -> Response<MockBody> {
    shared.lock().counters.refused += 1;
    response
}

/// A new token for `resource`, in the endpoint's shape.
fn issue(
    shared: &Shared,
    endpoint: Endpoint,
    resource: &str,
    client_id: String,
) -> Response<MockBody> {
    let ttl = shared.config.token_ttl.as_secs();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let mut access_token = String::from("mi.");
    SplitMix64::from_entropy().push_chars(&mut access_token, BASE64URL, 64);
    let body = match endpoint {
        // Every member a string, as IMDS sends them.
        Endpoint::Imds => json!({
            "access_token": access_token,
            "client_id": client_id,
            "expires_in": ttl.to_string(),
            "expires_on": (now + ttl).to_string(),
            "ext_expires_in": ttl.to_string(),
            "not_before": now.to_string(),
            "refresh_token": "",
            "resource": resource,
            "token_type": "Bearer",
        }),
        Endpoint::AppService => json!({
            "access_token": access_token,
            "expires_on": (now + ttl).to_string(),
            "resource": resource,
            "token_type": "Bearer",
            "client_id": client_id,
        }),
    };
    let mut state = shared.lock();
    state.counters.tokens_issued += 1;
    state.issued.push(Issued {
        endpoint,
        resource: resource.to_owned(),
        client_id,
        access_token,
    });
    json_response(StatusCode::OK, &body)
}

/// An error answer in the endpoint's shape: IMDS's `error` and `error_description`, App
/// Service's `statusCode` and `message`.
fn refusal(
    endpoint: Endpoint,
    status: StatusCode,
    code: &str,
    message: &str,
) -> Response<MockBody> {
    let body = match endpoint {
        Endpoint::Imds => json!({ "error": code, "error_description": message }),
        Endpoint::AppService => json!({ "statusCode": status.as_u16(), "message": message }),
    };
    json_response(status, &body)
}

fn json_response(status: StatusCode, body: &Value) -> Response<MockBody> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    response
}

fn plain(status: StatusCode) -> Response<MockBody> {
    let mut response = Response::new(Full::default());
    *response.status_mut() = status;
    report(response)
}

/// Logs the answer's status: never a header, query or body, where secrets travel.
fn report(response: Response<MockBody>) -> Response<MockBody> {
    tracing::debug!(
        status = response.status().as_u16(),
        "mock azure managed identity request"
    );
    response
}
