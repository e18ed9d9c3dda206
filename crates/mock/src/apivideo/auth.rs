//! `POST /auth/api-key` and `POST /auth/refresh`.

use std::time::Duration;

use bytes::Bytes;
use http::header::{
    AUTHORIZATION, COOKIE, HeaderName, HeaderValue, PROXY_AUTHORIZATION, RETRY_AFTER,
};
use http::{HeaderMap, Request, Response, StatusCode};
use hyper::body::Incoming;
use secrecy::ExposeSecret;
use serde::Serialize;
use tokio::time::Instant;

use super::faults::{AuthPlan, Injected};
use super::payload;
use super::response::{self, ProblemJson};
use super::state::{Counters, ServerState, SharedServer};
use super::tokens::{IssuedPair, RefreshRejection};
use crate::server::{MockBody, ShutdownSignal, ShuttingDown};

/// What `X-RateLimit-Limit` reports on an injected 429 (requests per minute).
const RATE_LIMIT: u64 = 600;

/// The two ways to get a token pair.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum AuthEndpoint {
    ApiKey,
    RefreshToken,
}

impl AuthEndpoint {
    /// The body attribute carrying the credential.
    fn field(self) -> &'static str {
        match self {
            Self::ApiKey => "apiKey",
            Self::RefreshToken => "refreshToken",
        }
    }
}

/// The `access-token` schema.
#[derive(Serialize)]
struct AccessTokenBody<'a> {
    token_type: &'static str,
    expires_in: u64,
    access_token: &'a str,
    refresh_token: &'a str,
}

impl<'a> From<&'a IssuedPair> for AccessTokenBody<'a> {
    fn from(pair: &'a IssuedPair) -> Self {
        Self {
            token_type: "Bearer",
            expires_in: pair.expires_in,
            access_token: &pair.access_token,
            refresh_token: &pair.refresh_token,
        }
    }
}

/// Reads the request, applies any injected fault, then handles the grant.
pub(super) async fn serve(
    shared: &SharedServer,
    shutdown: &mut ShutdownSignal,
    grant: AuthEndpoint,
    request: Request<Incoming>,
) -> Result<Response<MockBody>, ShuttingDown> {
    let (parts, body) = request.into_parts();
    let body = payload::read_body(body).await;
    let plan = begin(&mut shared.lock(), parts.headers);
    if let Some(delay) = plan.delay {
        shutdown.sleep(delay).await?;
    }
    if let Some(injected) = plan.answer {
        return injected_answer(shutdown, grant, injected).await;
    }
    Ok(authenticate(shared, grant, body))
}

/// Counts and records the request, and decides which fault (if any) it meets.
fn begin(state: &mut ServerState, mut headers: HeaderMap) -> AuthPlan {
    // An auth request has no business carrying these, but if one does, a test printing the
    // recorded headers must not print it.
    for (name, value) in &mut headers {
        if [AUTHORIZATION, PROXY_AUTHORIZATION, COOKIE].contains(name) {
            value.set_sensitive(true);
        }
    }
    state.last_auth_headers = Some(headers);
    state.counters.auth_requests += 1;
    let plan = state.faults.plan_auth();
    state.counters.auth_delays_injected += u64::from(plan.delay.is_some());
    state.counters.auth_failures_injected += u64::from(plan.answer.is_some());
    plan
}

async fn injected_answer(
    shutdown: &mut ShutdownSignal,
    grant: AuthEndpoint,
    injected: Injected,
) -> Result<Response<MockBody>, ShuttingDown> {
    Ok(match injected {
        Injected::Status(status @ (StatusCode::BAD_REQUEST | StatusCode::UNAUTHORIZED)) => {
            credentials_rejected(grant, status).into_response()
        }
        Injected::Status(status) => ProblemJson::generic(status).into_response(),
        Injected::RateLimited(retry_after) => rate_limited(retry_after),
        Injected::Malformed => response::broken_json(),
        Injected::Hang => {
            shutdown.wait().await;
            return Err(ShuttingDown);
        }
    })
}

/// The real work: check the credential, issue a pair or refuse.
fn authenticate(
    shared: &SharedServer,
    grant: AuthEndpoint,
    body: Result<Bytes, ProblemJson>,
) -> Response<MockBody> {
    let config = &shared.config;
    let credential = match body.and_then(|body| credential(&body, grant)) {
        Ok(credential) => credential,
        Err(problem) => {
            shared.lock().counters.invalid_auth_payloads += 1;
            return problem.into_response();
        }
    };
    let now = Instant::now();
    let mut state = shared.lock();
    let ttl = state.token_ttl;
    let issued = match grant {
        AuthEndpoint::ApiKey if credential == config.api_key.expose_secret() => {
            Ok(state.tokens.login(now, ttl))
        }
        AuthEndpoint::ApiKey => Err("wrong API key"),
        AuthEndpoint::RefreshToken => state
            .tokens
            .refresh(&credential, now, ttl, config.revoke_access_on_refresh)
            .map_err(RefreshRejection::describe),
    };
    count(&mut state.counters, grant, issued.is_ok());
    drop(state);
    match issued {
        Ok(pair) => response::json(StatusCode::OK, &AccessTokenBody::from(&pair)),
        Err(reason) => {
            tracing::debug!(reason, "mock api.video server: credentials rejected");
            credentials_rejected(grant, config.credential_rejection_status).into_response()
        }
    }
}

fn credential(body: &[u8], grant: AuthEndpoint) -> Result<String, ProblemJson> {
    let object = payload::json_object(body)?;
    payload::required_string(&object, grant.field()).map(str::to_owned)
}

fn count(counters: &mut Counters, grant: AuthEndpoint, accepted: bool) {
    let counter = match (grant, accepted) {
        (AuthEndpoint::ApiKey, true) => &mut counters.api_key_logins,
        (AuthEndpoint::ApiKey, false) => &mut counters.rejected_api_keys,
        (AuthEndpoint::RefreshToken, true) => &mut counters.refreshes,
        (AuthEndpoint::RefreshToken, false) => &mut counters.rejected_refresh_tokens,
    };
    *counter += 1;
}

/// api.video's two documented answers to bad credentials: the OpenAPI document's 400, and the
/// error reference's 401 wording.
fn credentials_rejected(grant: AuthEndpoint, status: StatusCode) -> ProblemJson {
    let title = match (status, grant) {
        (StatusCode::UNAUTHORIZED, AuthEndpoint::ApiKey) => "The API key is invalid.",
        (StatusCode::UNAUTHORIZED, AuthEndpoint::RefreshToken) => "The refresh token is invalid.",
        _ => "The user credentials were incorrect.",
    };
    ProblemJson::new(
        status,
        "https://docs.api.video/reference/authentication-invalid-user-credentials",
        title,
    )
    .name("")
}

fn rate_limited(retry_after: Duration) -> Response<MockBody> {
    // Headers carry whole seconds; rounding down could tell a client to retry too early.
    let seconds = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
    let mut response = ProblemJson::new(
        StatusCode::TOO_MANY_REQUESTS,
        "https://docs.api.video/reference/too-many-requests",
        "Too many requests.",
    )
    .into_response();
    let headers = response.headers_mut();
    let header = HeaderName::from_static;
    headers.insert(header("x-ratelimit-limit"), HeaderValue::from(RATE_LIMIT));
    headers.insert(header("x-ratelimit-remaining"), HeaderValue::from(0u64));
    headers.insert(
        header("x-ratelimit-retry-after"),
        HeaderValue::from(seconds),
    );
    headers.insert(RETRY_AFTER, HeaderValue::from(seconds));
    response
}

impl RefreshRejection {
    fn describe(self) -> &'static str {
        match self {
            Self::Unknown => "unknown refresh token",
            Self::AlreadyUsed => "refresh token already used",
            Self::Ended => "refresh token ended by a later login",
            Self::Revoked => "refresh token revoked",
        }
    }
}
