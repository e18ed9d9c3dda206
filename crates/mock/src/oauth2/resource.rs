//! The protected API (`/api`, `/api/…`): 200 for a live access token sent as it must be, 401
//! with a challenge otherwise (RFC 6750 §3; RFC 9449 §7 for DPoP-bound tokens).

use http::header::{AUTHORIZATION, HeaderValue, WWW_AUTHENTICATE};
use http::{HeaderMap, Method, Response, StatusCode};
use serde_json::json;
use tokio::time::Instant;

use super::ledger::AccessCheck;
use super::reply;
use super::state::{AuthServerState, SharedAuthServer};
use crate::server::MockBody;

/// Answers one API request.
pub(super) fn serve(
    shared: &SharedAuthServer,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
) -> Response<MockBody> {
    let mut state = shared.lock();
    state.counters.resource_requests += 1;
    let nonce = state.dpop.current_nonce(&shared.config.dpop);
    let mut response = match check(shared, &mut state, method, path, headers) {
        Ok(client_id) => reply::json_response(
            StatusCode::OK,
            &json!({"method": method.as_str(), "path": path, "client_id": client_id}),
        ),
        Err(challenge) => {
            state.counters.resource_unauthorized += 1;
            challenge.into_response(shared)
        }
    };
    super::dpop::add_nonce(&mut response, nonce.as_deref());
    let _ = &mut response;
    response
}

/// The client the token was issued to, if the request may go through.
fn check(
    shared: &SharedAuthServer,
    state: &mut AuthServerState,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
) -> Result<String, Challenge> {
    let Some(credentials) = Credentials::of(headers) else {
        return Err(Challenge::NoToken);
    };
    let AccessCheck::Known {
        expired,
        revoked,
        client_id,
        jkt,
    } = state.ledger.check_access(credentials.token, Instant::now())
    else {
        return Err(Challenge::invalid_token(credentials.dpop));
    };
    state.counters.expired_token_requests += u64::from(expired);
    if expired || revoked {
        return Err(Challenge::invalid_token(credentials.dpop));
    }
    match jkt {
        // A bearer token is sent as one.
        None if credentials.dpop => Err(Challenge::Bearer("invalid_token")),
        None => Ok(client_id),
        Some(jkt) => {
            let uri = format!("{}{path}", shared.config.origin)
                .parse()
                .map_err(|_| Challenge::Bearer("invalid_request"))?;
            let request = super::dpop::BoundRequest {
                method,
                uri: &uri,
                headers,
                access_token: credentials.token,
                dpop_scheme: credentials.dpop,
                jkt: &jkt,
            };
            let AuthServerState { dpop, counters, .. } = state;
            super::dpop::check_resource_request(&shared.config.dpop, dpop, counters, &request)
                .map_err(Challenge::Dpop)?;
            Ok(client_id)
        }
    }
}

/// The token of an `Authorization` header, and whether it came as `DPoP` (else `Bearer`;
/// schemes case-insensitive).
struct Credentials<'a> {
    token: &'a str,
    dpop: bool,
}

impl<'a> Credentials<'a> {
    fn of(headers: &'a HeaderMap) -> Option<Self> {
        let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
        let (scheme, token) = value.split_once(' ')?;
        let token = token.trim();
        let dpop = scheme.eq_ignore_ascii_case("dpop");
        ((scheme.eq_ignore_ascii_case("bearer") || dpop) && !token.is_empty())
            .then_some(Credentials { token, dpop })
    }
}

/// Why a request is refused, and the challenge that says so.
enum Challenge {
    /// No token at all: `Bearer`, with no error (RFC 6750 §3.1).
    NoToken,
    /// `Bearer error="…"`.
    Bearer(&'static str),
    /// `DPoP algs="…", error="…"`.
    Dpop(&'static str),
}

impl Challenge {
    /// An unknown, expired or revoked token, in the scheme it came in.
    fn invalid_token(dpop: bool) -> Challenge {
        if dpop {
            Challenge::Dpop("invalid_token")
        } else {
            Challenge::Bearer("invalid_token")
        }
    }

    fn into_response(self, shared: &SharedAuthServer) -> Response<MockBody> {
        let (error, description, challenge) = match self {
            Challenge::NoToken => ("invalid_token", TOKEN_REFUSED, "Bearer".to_owned()),
            Challenge::Bearer(error) => {
                (error, TOKEN_REFUSED, format!(r#"Bearer error="{error}""#))
            }
            Challenge::Dpop(error) => {
                let algs = shared.config.dpop.algorithm_names().join(" ");
                let description = match error {
                    "use_dpop_nonce" => "the DPoP proof must carry the server's nonce",
                    "invalid_dpop_proof" => "the DPoP proof is missing or invalid",
                    _ => {
                        "the access token is unknown, expired, revoked, or not bound to the proof's key"
                    }
                };
                (
                    error,
                    description,
                    format!(
                        r#"DPoP algs="{algs}", error="{error}", error_description="{description}""#
                    ),
                )
            }
        };
        let mut response = reply::json_response(
            StatusCode::UNAUTHORIZED,
            &json!({"error": error, "error_description": description}),
        );
        if let Ok(value) = HeaderValue::from_str(&challenge) {
            response.headers_mut().insert(WWW_AUTHENTICATE, value);
        }
        response
    }
}

const TOKEN_REFUSED: &str = "the access token is missing, unknown, expired or revoked";
