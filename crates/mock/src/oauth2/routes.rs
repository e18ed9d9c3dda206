//! What each path is: the token endpoint, the metadata documents, the protected API.

use std::sync::Arc;

use http::header::{ALLOW, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use serde_json::json;

use super::reply;
use super::resource;
use super::state::{Discovery, SharedAuthServer};
use super::token_endpoint;
use crate::server::{self, MockBody, ShutdownSignal, ShuttingDown};

/// RFC 8414's metadata path.
pub(super) const OAUTH_METADATA: &str = "/.well-known/oauth-authorization-server";
/// OpenID Connect Discovery's metadata path.
pub(super) const OPENID_METADATA: &str = "/.well-known/openid-configuration";
/// The token endpoint's path.
pub(super) const TOKEN_PATH: &str = "/token";
/// What follows the tenant in Entra ID's token endpoint path, `/{tenant}/oauth2/v2.0/token`,
/// where the token endpoint answers too, for any tenant.
pub(super) const ENTRA_TOKEN_PATH: &str = "/oauth2/v2.0/token";

/// Whether `path` is the token endpoint's, at its own path or at Entra ID's for a tenant.
fn is_token_path(path: &str) -> bool {
    path == TOKEN_PATH
        || path.strip_suffix(ENTRA_TOKEN_PATH).is_some_and(|tenant| {
            tenant.len() > 1 && tenant.starts_with('/') && !tenant[1..].contains('/')
        })
}

/// Answers one request: the handler the server's connections run.
pub(super) async fn handle(
    shared: Arc<SharedAuthServer>,
    mut shutdown: ShutdownSignal,
    request: Request<Incoming>,
) -> Result<Response<MockBody>, ShuttingDown> {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let response = match path.as_str() {
        token if is_token_path(token) && method == Method::POST => {
            token_endpoint::serve(&shared, &mut shutdown, request).await?
        }
        token if is_token_path(token) => method_not_allowed("POST"),
        OAUTH_METADATA | OPENID_METADATA if method == Method::GET => metadata(&shared, &path),
        OAUTH_METADATA | OPENID_METADATA => method_not_allowed("GET"),
        api if api == "/api" || api.starts_with("/api/") => {
            if method == Method::GET || method == Method::POST {
                resource::serve(&shared, &method, &path, request.headers())
            } else {
                method_not_allowed("GET, POST")
            }
        }
        _ => not_found(&path),
    };
    tracing::debug!(
        %method,
        path,
        status = response.status().as_u16(),
        "mock OAuth 2.0 server request"
    );
    Ok(response)
}

/// The metadata document (RFC 8414 §2), if the server publishes it at this path.
fn metadata(shared: &SharedAuthServer, path: &str) -> Response<MockBody> {
    shared.lock().counters.discovery_requests += 1;
    let config = &shared.config;
    let published = match config.discovery {
        Discovery::Both => true,
        Discovery::OAuthOnly => path == OAUTH_METADATA,
        Discovery::OpenIdOnly => path == OPENID_METADATA,
        Discovery::None => false,
    };
    if !published {
        return not_found(path);
    }
    #[allow(unused_mut)]
    let mut document = json!({
            "issuer": config.issuer,
            "token_endpoint": config.token_endpoint,
            "grant_types_supported": [
                "client_credentials",
                "refresh_token",
                "urn:ietf:params:oauth:grant-type:jwt-bearer",
                "urn:ietf:params:oauth:grant-type:token-exchange",
            ],
            "token_endpoint_auth_methods_supported": [
                "client_secret_basic",
                "client_secret_post",
                "private_key_jwt",
                "none",
            ],
            "token_endpoint_auth_signing_alg_values_supported": ["ES256", "RS256", "EdDSA"],
            "response_types_supported": ["code"],
    });
    if config.dpop.supported {
        document["dpop_signing_alg_values_supported"] = config.dpop.algorithm_names().into();
    }
    reply::json_response(StatusCode::OK, &document)
}

fn not_found(path: &str) -> Response<MockBody> {
    let mut body = json!({"error": "not_found", "error_description": "no such endpoint"});
    if let Some(hint) = server::unknown_path_hint(path) {
        body["error_description"] = hint.into();
    }
    reply::json_response(StatusCode::NOT_FOUND, &body)
}

fn method_not_allowed(allowed: &'static str) -> Response<MockBody> {
    let mut response = reply::json_response(
        StatusCode::METHOD_NOT_ALLOWED,
        &json!({"error": "method_not_allowed"}),
    );
    response
        .headers_mut()
        .insert(ALLOW, HeaderValue::from_static(allowed));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_endpoint_answers_at_its_path_and_at_entras_for_a_tenant() {
        assert!(is_token_path("/token"));
        assert!(is_token_path("/contoso/oauth2/v2.0/token"));
        assert!(!is_token_path("/oauth2/v2.0/token"));
        assert!(!is_token_path("//oauth2/v2.0/token"));
        assert!(!is_token_path("/a/b/oauth2/v2.0/token"));
        assert!(!is_token_path("/contoso/oauth2/v2.0/token/"));
    }
}
