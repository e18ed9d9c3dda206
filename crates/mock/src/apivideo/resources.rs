//! The bearer-protected endpoints: `GET /videos` and `POST /videos`.

use bytes::Bytes;
use http::header::{AUTHORIZATION, HeaderValue, WWW_AUTHENTICATE};
use http::{HeaderMap, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use tokio::time::Instant;

use super::payload;
use super::response::{self, ProblemJson};
use super::state::{ServerState, SharedServer, Unauthorized};
use super::tokens::AccessState;
use crate::server::MockBody;

pub(super) async fn serve(shared: &SharedServer, request: Request<Incoming>) -> Response<MockBody> {
    let (parts, body) = request.into_parts();
    let creating = parts.method == Method::POST;
    // The body is read (and recorded) before the token is checked: a test of the retry path
    // compares the bodies of the refused attempt and the retry.
    let body = if creating {
        payload::read_body(body).await
    } else {
        Ok(Bytes::new())
    };
    let now = Instant::now();
    let mut state = shared.lock();
    state.counters.resource_requests += 1;
    if let (true, Ok(body)) = (creating, &body) {
        state.received_bodies.push(body.clone());
    }
    if let Err(reason) = authorize(&mut state, &parts.headers, now) {
        state.counters.count_unauthorized(reason);
        return unauthorized(reason);
    }
    match body {
        Err(problem) => problem.into_response(),
        Ok(body) if creating => create(&mut state, &body),
        Ok(_) => list(&state, parts.uri.query()),
    }
}

/// Checks the bearer token, counting a token that arrived already expired.
fn authorize(
    state: &mut ServerState,
    headers: &HeaderMap,
    now: Instant,
) -> Result<(), Unauthorized> {
    let token = bearer_token(headers).ok_or(Unauthorized::Missing)?;
    let AccessState::Known { expired, revoked } = state.tokens.access_state(token, now) else {
        return Err(Unauthorized::Unknown);
    };
    state.counters.expired_token_requests += u64::from(expired);
    if revoked {
        Err(Unauthorized::Revoked)
    } else if expired {
        Err(Unauthorized::Expired)
    } else if state.faults.roll_spurious_unauthorized() {
        Err(Unauthorized::Spurious)
    } else {
        Ok(())
    }
}

/// The token of an `Authorization: Bearer <token>` header (scheme case-insensitive).
fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

fn unauthorized(reason: Unauthorized) -> Response<MockBody> {
    let mut response = ProblemJson::new(
        StatusCode::UNAUTHORIZED,
        "https://docs.api.video/reference/authentication-invalid-access-token",
        "The access token is invalid or expired.",
    )
    .into_response();
    // RFC 6750 §3: no error code when the request carried no credentials at all.
    let challenge = match reason {
        Unauthorized::Missing => "Bearer",
        _ => r#"Bearer error="invalid_token""#,
    };
    response
        .headers_mut()
        .insert(WWW_AUTHENTICATE, HeaderValue::from_static(challenge));
    response
}

fn list(state: &ServerState, query: Option<&str>) -> Response<MockBody> {
    match state.videos.page(query) {
        Ok(page) => response::json(StatusCode::OK, &page),
        Err(problem) => problem.into_response(),
    }
}

fn create(state: &mut ServerState, body: &[u8]) -> Response<MockBody> {
    let ServerState {
        videos, counters, ..
    } = state;
    match videos.create(body) {
        Ok(video) => {
            counters.videos_created += 1;
            response::json(StatusCode::CREATED, video)
        }
        Err(problem) => problem.into_response(),
    }
}
