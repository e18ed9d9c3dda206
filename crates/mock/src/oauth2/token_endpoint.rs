//! `POST /token`: client authentication, the grants, and injected faults.

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use serde_json::{Value, json};
use tokio::time::Instant;

use super::clients::{self, Authenticated, Registry};
use super::faults::Fault;
use super::ledger::{Holder, Issued, RefreshRefusal};
use super::reply::{self, Refusal};
use super::state::{AuthServerState, SECRET_PARAMS, SharedAuthServer, TokenRequestLog};
use crate::server::{MockBody, ShutdownSignal, ShuttingDown};
use tower_bearer_oauth2::AuthMethod;

/// A token request is a few KiB at most.
const BODY_LIMIT: usize = 64 * 1024;

const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";

/// Reads the request, applies any injected fault, then handles it.
pub(super) async fn serve(
    shared: &SharedAuthServer,
    shutdown: &mut ShutdownSignal,
    request: Request<Incoming>,
) -> Result<Response<MockBody>, ShuttingDown> {
    let (parts, body) = request.into_parts();
    let body = Limited::new(body, BODY_LIMIT)
        .collect()
        .await
        .map(|collected| collected.to_bytes());
    let fault = {
        let mut state = shared.lock();
        state.counters.token_requests += 1;
        state.faults.next()
    };
    if let Some(Fault::Delay(delay)) = fault {
        shared.lock().counters.delays_injected += 1;
        shutdown.sleep(delay).await?;
    } else if let Some(fault) = fault {
        shared.lock().counters.faults_injected += 1;
        let response = injected(shared, shutdown, fault).await?;
        record(
            shared,
            body.as_deref().unwrap_or_default(),
            None,
            response.status(),
        );
        return Ok(response);
    }
    let nonce = shared.lock().dpop.current_nonce(&shared.config.dpop);
    let Ok(body) = body else {
        let response = Refusal::invalid_request("the body could not be read").into_response();
        record(shared, &[], None, response.status());
        return Ok(response);
    };
    let mut state = shared.lock();
    #[allow(unused_mut)]
    let (mut response, client) = match handle(shared, &mut state, &parts.headers, &body) {
        Ok((issued, client, scope)) => (answer(&issued, scope), client),
        Err(refusal) => {
            count_refusal(&mut state, refusal.code);
            tracing::debug!(
                error = refusal.code,
                reason = %refusal.description,
                "mock OAuth 2.0 server: token request refused"
            );
            (refusal.into_response(), None)
        }
    };
    drop(state);
    super::dpop::add_nonce(&mut response, nonce.as_deref());
    record(shared, &body, client, response.status());
    Ok(response)
}

async fn injected(
    shared: &SharedAuthServer,
    shutdown: &mut ShutdownSignal,
    fault: Fault,
) -> Result<Response<MockBody>, ShuttingDown> {
    let _ = shared;
    Ok(match fault {
        Fault::Status(status) => reply::text_response(
            status,
            "text/html",
            "<html><body><h1>Something went wrong</h1></body></html>",
        ),
        Fault::Error { status, code } => {
            Refusal::new(status, code, "injected by the test").into_response()
        }
        Fault::RateLimited { retry_after } => {
            // Headers carry whole seconds; rounding down could tell a client to retry early.
            let seconds = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
            let mut response = Refusal::new(
                StatusCode::TOO_MANY_REQUESTS,
                "slow_down",
                "too many requests",
            )
            .into_response();
            response
                .headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from(seconds));
            response
        }
        Fault::Malformed => reply::text_response(
            StatusCode::OK,
            "application/json",
            r#"{"access_token":"mat_broken","token_type":"Bearer","expires_in":36"#,
        ),
        Fault::UseDpopNonce => {
            let nonce = {
                let mut state = shared.lock();
                state.counters.token_nonce_challenges += 1;
                state.dpop.rotate(false)
            };
            let mut response = Refusal::new(
                StatusCode::BAD_REQUEST,
                "use_dpop_nonce",
                "the DPoP proof must carry the server's new nonce",
            )
            .into_response();
            super::dpop::add_nonce(&mut response, Some(&nonce));
            response
        }
        Fault::Hang => {
            shutdown.wait().await;
            return Err(ShuttingDown);
        }
        // Handled before: a delay answers as usual.
        Fault::Delay(_) => unreachable!("a delay is not an answer"),
    })
}

/// The real work: who is asking, for what, and the token or the refusal.
fn handle(
    shared: &SharedAuthServer,
    state: &mut AuthServerState,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<(Issued, Option<Authenticated>, Option<String>), Refusal> {
    // The key the tokens are bound to, if the request proved one (RFC 9449 §5).
    let jkt = {
        let endpoint = shared
            .config
            .token_endpoint
            .parse()
            .map_err(|_| Refusal::invalid_request("the token endpoint is not a URI"))?;
        let AuthServerState { dpop, counters, .. } = &mut *state;
        super::dpop::check_token_request(&shared.config.dpop, dpop, counters, headers, &endpoint)?
    };
    let config = &shared.config;
    let form_type = headers
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .map(|value| {
            value
                .split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        });
    if form_type.as_deref() != Some("application/x-www-form-urlencoded") {
        return Err(Refusal::invalid_request(
            "the body must be application/x-www-form-urlencoded",
        ));
    }
    let form: Vec<(String, String)> = form_urlencoded::parse(body).into_owned().collect();
    let single = |name: &str| -> Result<Option<&str>, Refusal> {
        let mut values = form
            .iter()
            .filter(|(key, _)| key == name)
            .map(|(_, v)| v.as_str());
        let first = values.next();
        match values.next() {
            Some(_) => Err(Refusal::invalid_request(format!("{name} is repeated"))),
            None => Ok(first),
        }
    };
    let required = |name: &'static str| -> Result<&str, Refusal> {
        single(name)?
            .filter(|value| !value.is_empty())
            .ok_or_else(|| Refusal::invalid_request(format!("{name} is missing")))
    };
    let grant_type = required("grant_type")?;
    let scope = single("scope")?.map(str::to_owned);
    let registry = Registry {
        clients: &config.clients,
        audiences: [&config.token_endpoint, &config.issuer],
    };
    let authenticated = clients::authenticate(&registry, headers, &form, &mut state.seen_jtis)?;
    if let Some(client) = &authenticated {
        let counter = match client.method {
            AuthMethod::ClientSecretBasic => &mut state.counters.client_secret_basic,
            AuthMethod::ClientSecretPost => &mut state.counters.client_secret_post,
            AuthMethod::PrivateKeyJwt => &mut state.counters.private_key_jwt,
            _ => &mut state.counters.public_client,
        };
        *counter += 1;
    }
    let confidential = |authenticated: Option<Authenticated>| match authenticated {
        Some(client) if client.method != AuthMethod::None => Ok(client),
        Some(_) => Err(Refusal::new(
            StatusCode::BAD_REQUEST,
            "unauthorized_client",
            "a public client may not use this grant",
        )),
        None => Err(Refusal::invalid_client("no client authentication")),
    };
    let now = Instant::now();
    let ttl = state.token_ttl;
    // A public client's refresh tokens are bound to the key too (RFC 9449 §5): nothing else
    // keeps a stolen one from being used.
    let public = authenticated
        .as_ref()
        .is_some_and(|client| client.method == AuthMethod::None);
    let holder = |client_id| Holder {
        client_id,
        jkt: jkt.as_deref(),
        bind_refresh: public,
    };
    let issued = match grant_type {
        "client_credentials" => {
            let client = confidential(authenticated)?;
            state.counters.client_credentials_grants += 1;
            let issued =
                state
                    .ledger
                    .issue(holder(&client.client_id), now, ttl, config.refresh_tokens);
            (issued, Some(client))
        }
        "refresh_token" => {
            let client =
                authenticated.ok_or_else(|| Refusal::invalid_client("no client authentication"))?;
            let refresh_token = required("refresh_token")?;
            let issued = state
                .ledger
                .refresh(
                    refresh_token,
                    holder(&client.client_id),
                    now,
                    ttl,
                    config.rotate_refresh_tokens,
                )
                .map_err(|refusal| {
                    match refusal {
                        RefreshRefusal::Reused => state.counters.refresh_token_reuses += 1,
                        RefreshRefusal::OtherKey => {
                            state.counters.dpop_refused.key_mismatch += 1;
                        }
                        _ => {}
                    }
                    Refusal::invalid_grant(refusal.describe())
                })?;
            state.counters.refresh_token_grants += 1;
            (issued, Some(client))
        }
        JWT_BEARER => {
            let assertion = required("assertion")?;
            let issuer = tower_bearer_oauth2::jose::UnverifiedJws::decode(assertion)
                .ok()
                .and_then(|jws| {
                    jws.claims()
                        .get("iss")
                        .and_then(Value::as_str)
                        .map(str::to_owned)
                })
                .ok_or_else(|| Refusal::invalid_grant("the assertion is not a JWT with an iss"))?;
            let jwk = config
                .assertion_issuers
                .get(&issuer)
                .or_else(|| {
                    config
                        .clients
                        .get(&issuer)
                        .and_then(|client| client.public_jwk())
                })
                .ok_or_else(|| Refusal::invalid_grant("the assertion's issuer is not trusted"))?;
            clients::verify_assertion(assertion, jwk, &registry, &mut state.seen_jtis)
                .map_err(|reason| Refusal::invalid_grant(format!("assertion: {reason}")))?;
            state.counters.jwt_bearer_grants += 1;
            // Without client authentication, the token is the assertion issuer's.
            let client_id = authenticated
                .as_ref()
                .map_or(issuer, |client| client.client_id.clone());
            // A refresh token needs a client to be bound to, and to authenticate its use.
            let with_refresh = config.refresh_tokens && authenticated.is_some();
            let issued = state
                .ledger
                .issue(holder(&client_id), now, ttl, with_refresh);
            (issued, authenticated)
        }
        TOKEN_EXCHANGE => {
            let client = confidential(authenticated)?;
            let subject_token = required("subject_token")?;
            required("subject_token_type")?;
            if !state.subject_tokens.contains(subject_token) {
                return Err(Refusal::invalid_grant("the subject token is not accepted"));
            }
            state.counters.token_exchange_grants += 1;
            let issued =
                state
                    .ledger
                    .issue(holder(&client.client_id), now, ttl, config.refresh_tokens);
            (issued, Some(client))
        }
        _ => {
            return Err(Refusal::new(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                "this server does not know the grant",
            ));
        }
    };
    Ok((issued.0, issued.1, scope))
}

/// A token response (RFC 6749 §5.1).
fn answer(issued: &Issued, scope: Option<String>) -> Response<MockBody> {
    let mut body = json!({
        "access_token": issued.access_token,
        "token_type": if issued.dpop { "DPoP" } else { "Bearer" },
        "expires_in": issued.expires_in,
    });
    if let Some(refresh_token) = &issued.refresh_token {
        body["refresh_token"] = refresh_token.as_str().into();
    }
    if let Some(scope) = scope {
        body["scope"] = scope.into();
    }
    reply::json_response(StatusCode::OK, &body)
}

fn count_refusal(state: &mut AuthServerState, code: &str) {
    let counter = match code {
        "invalid_client" => &mut state.counters.invalid_client,
        "invalid_grant" => &mut state.counters.invalid_grant,
        // Counted by the DPoP checks, by reason.
        "use_dpop_nonce" | "invalid_dpop_proof" => return,
        _ => &mut state.counters.invalid_request,
    };
    *counter += 1;
}

/// Adds the request to the log, secrets redacted.
fn record(
    shared: &SharedAuthServer,
    body: &[u8],
    client: Option<Authenticated>,
    status: StatusCode,
) {
    let params: Vec<(String, String)> = form_urlencoded::parse(body)
        .map(|(name, value)| {
            let value = if SECRET_PARAMS.contains(&name.as_ref()) {
                "[REDACTED]".to_owned()
            } else {
                value.into_owned()
            };
            (name.into_owned(), value)
        })
        .collect();
    let grant_type = params
        .iter()
        .find(|(name, _)| name == "grant_type")
        .map(|(_, value)| value.clone())
        .unwrap_or_default();
    let (client_id, auth_method) = match client {
        Some(client) => (Some(client.client_id), Some(client.method)),
        None => (None, None),
    };
    shared.lock().token_requests.push(TokenRequestLog {
        grant_type,
        client_id,
        auth_method,
        params,
        status,
    });
}
