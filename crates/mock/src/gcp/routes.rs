//! What each path is, and how GCP's metadata server answers it.

use std::sync::Arc;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderValue};
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use serde::Serialize;

use super::state::State;
use super::{Fault, SeenTokenRequest, Shared};
use crate::server::{MockBody, ShutdownSignal, ShuttingDown};

/// The root of every metadata path.
const V1: &str = "/computeMetadata/v1/";
const ACCOUNTS: &str = "instance/service-accounts/";

const FLAVOR: &str = "metadata-flavor";
const GOOGLE: HeaderValue = HeaderValue::from_static("Google");
const JSON: HeaderValue = HeaderValue::from_static("application/json");
/// What the metadata server calls its plain-text answers.
const TEXT: HeaderValue = HeaderValue::from_static("application/text");
const HTML: HeaderValue = HeaderValue::from_static("text/html; charset=UTF-8");

/// The token answer, as the metadata server sends it.
#[derive(Serialize)]
struct TokenBody<'a> {
    access_token: &'a str,
    expires_in: u64,
    token_type: &'static str,
}

/// The service account document `?recursive=true` answers.
#[derive(Serialize)]
struct AccountBody<'a> {
    aliases: Vec<&'a str>,
    email: &'a str,
    scopes: &'a [String],
}

/// Answers one request: the handler the server's accept loop serves.
pub(super) async fn handle(
    shared: Arc<Shared>,
    mut shutdown: ShutdownSignal,
    request: Request<Incoming>,
) -> Result<Response<MockBody>, ShuttingDown> {
    let path = request.uri().path().to_owned();
    let query = request.uri().query().unwrap_or("").to_owned();
    let result = answer(
        &shared,
        &mut shutdown,
        request.method(),
        request.headers(),
        &path,
        &query,
    )
    .await;
    if let Ok(response) = &result {
        tracing::debug!(
            path = %path,
            status = response.status().as_u16(),
            "mock GCP metadata request"
        );
    }
    result.map(|mut response| {
        // Every answer says where it came from, errors too.
        response.headers_mut().insert(FLAVOR, GOOGLE);
        response
    })
}

async fn answer(
    shared: &Shared,
    shutdown: &mut ShutdownSignal,
    method: &Method,
    headers: &HeaderMap,
    path: &str,
    query: &str,
) -> Result<Response<MockBody>, ShuttingDown> {
    shared.lock().counters.requests += 1;
    if method != Method::GET {
        return Ok(text(
            StatusCode::METHOD_NOT_ALLOWED,
            HTML,
            "Method Not Allowed",
        ));
    }
    // The root answers without the header: it is how clients find the server.
    if path == "/" {
        return Ok(text(StatusCode::OK, TEXT, "computeMetadata/\n"));
    }
    let Some(rest) = path.strip_prefix(V1) else {
        return Ok(not_found());
    };
    let token_path = token_account(rest);
    let flavored = headers.get(FLAVOR).is_some_and(|value| value == "Google");
    if !flavored {
        let mut state = shared.lock();
        state.counters.missing_flavor += 1;
        if let Some(account) = token_path {
            state.counters.token_requests += 1;
            record(&mut state, account, query, StatusCode::FORBIDDEN);
        }
        return Ok(missing_flavor(path));
    }
    if let Some(account) = token_path {
        return token(shared, shutdown, account, query).await;
    }
    let mut state = shared.lock();
    Ok(match rest {
        "project/project-id" => text(StatusCode::OK, TEXT, &shared.project_id),
        "universe/universe-domain" => text(StatusCode::OK, TEXT, "googleapis.com"),
        "instance/service-accounts" | "instance/service-accounts/" => {
            let mut listing = String::from("default/\n");
            for account in &state.accounts {
                listing.push_str(&account.email);
                listing.push_str("/\n");
            }
            text(StatusCode::OK, TEXT, &listing)
        }
        _ => match rest
            .strip_prefix(ACCOUNTS)
            .and_then(|rest| rest.split_once('/'))
        {
            Some((name, item)) => {
                let name = percent_decoded(name);
                let found = state
                    .account(&name)
                    .map(|account| account_item(account, item, query));
                found.unwrap_or_else(|| {
                    state.counters.unknown_accounts += 1;
                    not_found()
                })
            }
            None => not_found(),
        },
    })
}

/// The account named by a token path (`instance/service-accounts/{account}/token`).
fn token_account(rest: &str) -> Option<&str> {
    rest.strip_prefix(ACCOUNTS)?
        .strip_suffix("/token")
        .filter(|account| !account.contains('/'))
}

fn account_item(account: &super::state::Account, item: &str, query: &str) -> Response<MockBody> {
    let recursive = query_value(query, "recursive").is_some_and(|value| value == "true");
    match item {
        "" if recursive => {
            let body = AccountBody {
                aliases: vec!["default"],
                email: &account.email,
                scopes: &account.scopes,
            };
            json(&body)
        }
        "" => text(
            StatusCode::OK,
            TEXT,
            "aliases\nemail\nidentity\nscopes\ntoken\n",
        ),
        "email" => text(StatusCode::OK, TEXT, &account.email),
        "scopes" => {
            let mut lines = String::new();
            for scope in &account.scopes {
                lines.push_str(scope);
                lines.push('\n');
            }
            text(StatusCode::OK, TEXT, &lines)
        }
        "aliases" => text(StatusCode::OK, TEXT, "default\n"),
        _ => not_found(),
    }
}

/// `GET …/service-accounts/{account}/token[?scopes=a,b]`.
async fn token(
    shared: &Shared,
    shutdown: &mut ShutdownSignal,
    account: &str,
    query: &str,
) -> Result<Response<MockBody>, ShuttingDown> {
    let fault = {
        let mut state = shared.lock();
        state.counters.token_requests += 1;
        state.next_fault()
    };
    match fault {
        None => {}
        Some(Fault::Delay(delay)) => shutdown.sleep(delay).await?,
        Some(Fault::Status(status)) => {
            record(&mut shared.lock(), account, query, status);
            let reason = status.canonical_reason().unwrap_or("Error");
            return Ok(text(status, TEXT, reason));
        }
        Some(Fault::CloseConnection) => {
            record(
                &mut shared.lock(),
                account,
                query,
                StatusCode::INTERNAL_SERVER_ERROR,
            );
            return Err(ShuttingDown);
        }
    }
    let mut state = shared.lock();
    let name = percent_decoded(account);
    let Some(email) = state.account(&name).map(|account| account.email.clone()) else {
        state.counters.unknown_accounts += 1;
        record(&mut state, account, query, StatusCode::NOT_FOUND);
        return Ok(not_found());
    };
    let scopes = query_value(query, "scopes").unwrap_or_default();
    let answer = state.token(&email, &scopes);
    *state.per_account.entry(email).or_default() += 1;
    record(&mut state, account, query, StatusCode::OK);
    Ok(json(&TokenBody {
        access_token: &answer.access_token,
        expires_in: answer.expires_in,
        token_type: "Bearer",
    }))
}

fn record(state: &mut State, account: &str, query: &str, status: StatusCode) {
    let scopes = query_value(query, "scopes").map(|scopes| {
        scopes
            .split(',')
            .filter(|scope| !scope.is_empty())
            .map(str::to_owned)
            .collect()
    });
    state.seen.push(SeenTokenRequest {
        account: percent_decoded(account),
        scopes,
        status,
    });
}

/// The first value of `name` in a query, decoded.
fn query_value(query: &str, name: &str) -> Option<String> {
    form_urlencoded::parse(query.as_bytes())
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.into_owned())
}

/// A path segment with its `%XX` escapes decoded (an email's `@` may come as `%40`).
fn percent_decoded(segment: &str) -> String {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (
            bytes[i],
            bytes.get(i + 1).copied().and_then(hex),
            bytes.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(high), Some(low)) => {
                out.push((high * 16 + low) as u8);
                i += 3;
            }
            (byte, _, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn json(value: &impl Serialize) -> Response<MockBody> {
    let body = serde_json::to_vec(value).expect("the mock's answers always serialize");
    with_body(StatusCode::OK, JSON, Bytes::from(body))
}

fn text(status: StatusCode, content_type: HeaderValue, body: &str) -> Response<MockBody> {
    with_body(
        status,
        content_type,
        Bytes::copy_from_slice(body.as_bytes()),
    )
}

fn not_found() -> Response<MockBody> {
    text(
        StatusCode::NOT_FOUND,
        HTML,
        "<!DOCTYPE html>\n<title>Error 404 (Not Found)</title>\n<p><b>404.</b> That’s an error.\n",
    )
}

/// The metadata server's 403 for a request without `Metadata-Flavor: Google`.
fn missing_flavor(path: &str) -> Response<MockBody> {
    let body = format!(
        "<!DOCTYPE html>\n<title>Error 403 (Forbidden)</title>\n<p><b>403.</b> Your client does \
         not have permission to get URL <code>{path}</code> from this server. Missing \
         Metadata-Flavor:Google header.\n"
    );
    text(StatusCode::FORBIDDEN, HTML, &body)
}

fn with_body(status: StatusCode, content_type: HeaderValue, body: Bytes) -> Response<MockBody> {
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    response.headers_mut().insert(CONTENT_TYPE, content_type);
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_paths_name_one_account() {
        assert_eq!(
            token_account("instance/service-accounts/default/token"),
            Some("default")
        );
        assert_eq!(
            token_account("instance/service-accounts/sa%40p.iam.gserviceaccount.com/token"),
            Some("sa%40p.iam.gserviceaccount.com")
        );
        assert_eq!(token_account("instance/service-accounts/a/b/token"), None);
        assert_eq!(
            token_account("instance/service-accounts/default/email"),
            None
        );
    }

    #[test]
    fn segments_are_percent_decoded() {
        assert_eq!(percent_decoded("sa%40p.iam"), "sa@p.iam");
        assert_eq!(percent_decoded("100%"), "100%");
        assert_eq!(percent_decoded("%zz"), "%zz");
    }
}
