//! One token request: built, sent, and its answer read. Every grant, the refresh-token grant
//! included, goes through [`token_request`], the one place a request to the token endpoint is
//! made; what every attempt must carry (the client's credentials, a DPoP proof) is added here.

use http::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderValue, USER_AGENT};
use http::{Method, Request};
use secrecy::{ExposeSecret, SecretString};

use tokio::time::Instant;

use crate::answer;
use crate::config::ProviderConfig;
use crate::endpoint::TokenEndpoint;
use crate::error::OAuth2Error;
use crate::form::Form;
use crate::grant_proof as dpop;
use tower_bearer::Token;
use tower_bearer_provider as http_client;
use tower_bearer_provider::{HttpClient, RequestBody, Secrets};

const FORM: HeaderValue = HeaderValue::from_static("application/x-www-form-urlencoded");
const JSON: HeaderValue = HeaderValue::from_static("application/json");

/// What one grant adds to the request: its `grant_type` and its credential.
pub(super) enum GrantParams<'a> {
    ClientCredentials,
    RefreshToken(&'a str),
    /// A signed assertion.
    JwtBearer(String),
    TokenExchange {
        subject_token: SecretString,
        token_type: &'a str,
    },
}

impl GrantParams<'_> {
    /// A name for logs.
    pub(super) fn name(&self) -> &'static str {
        match self {
            GrantParams::ClientCredentials => "client_credentials",
            GrantParams::RefreshToken(_) => "refresh_token",
            GrantParams::JwtBearer(_) => "jwt_bearer",
            GrantParams::TokenExchange { .. } => "token_exchange",
        }
    }
}

/// Sends one token request for `grant` and reads its answer.
///
/// With a DPoP key, each attempt carries a new proof, and a `use_dpop_nonce` refusal that
/// brings a new nonce is answered by a second attempt, built afresh (a new client assertion
/// too): at most two requests, whatever the server says.
pub(super) async fn token_request<C, B>(
    client: &mut C,
    config: &ProviderConfig,
    endpoint: &TokenEndpoint,
    grant: GrantParams<'_>,
    reason: &'static str,
) -> Result<Token, OAuth2Error>
where
    C: HttpClient<B>,
    B: RequestBody,
{
    let dpop = config.dpop.as_ref();
    let started = Instant::now();
    let mut nonce_retry = false;
    // Read once for the grant: a nonce retry sends the same assertion again.
    let assertion = config.client_auth.read_assertion().await?;
    loop {
        let mut secrets = Secrets::new();
        let mut request = build::<B>(config, endpoint, &grant, assertion.as_ref(), &mut secrets)?;
        let proof = dpop::prove(dpop, endpoint, request.headers_mut())?;
        let answer = http_client::send(client, request).await?;
        // The server asked for its nonce (`use_dpop_nonce`), and gave one the proof did not
        // carry: asked again once, with it. Every answer's nonce is learned.
        let new_nonce = proof
            .as_ref()
            .is_some_and(|proof| proof.learn_nonce(endpoint, &answer.headers));
        if new_nonce && !nonce_retry && answer::asks_for_dpop_nonce(&answer) {
            nonce_retry = true;
            tracing::debug!(
                grant = grant.name(),
                reason,
                "the token endpoint asked for its DPoP nonce; asking again with it"
            );
            continue;
        }
        let status = answer.status.as_u16();
        let result = answer::token_from(
            answer,
            &endpoint.uri,
            &secrets,
            config.default_lifetime,
            dpop,
        );
        tracing::trace!(
            grant = grant.name(),
            reason,
            status,
            dpop = dpop.is_some(),
            nonce_retry,
            elapsed_ms = started.elapsed().as_millis() as u64,
            ok = result.is_ok(),
            "OAuth 2.0 token request"
        );
        return result;
    }
}

/// The request for `grant`: its form (the grant, the configured parameters, the client's
/// credentials) and headers. `secrets` is told every secret it carries.
fn build<'a, B: RequestBody>(
    config: &'a ProviderConfig,
    endpoint: &TokenEndpoint,
    grant: &'a GrantParams<'a>,
    assertion: Option<&'a SecretString>,
    secrets: &mut Secrets<'a>,
) -> Result<Request<B>, OAuth2Error> {
    let mut form = Form::new();
    match grant {
        GrantParams::ClientCredentials => form.pair("grant_type", "client_credentials"),
        GrantParams::RefreshToken(refresh_token) => {
            form.pair("grant_type", "refresh_token");
            form.pair("refresh_token", refresh_token);
            secrets.push(refresh_token);
        }
        GrantParams::JwtBearer(assertion) => {
            form.pair("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer");
            form.pair("assertion", assertion);
            secrets.push(assertion);
        }
        GrantParams::TokenExchange {
            subject_token,
            token_type,
        } => {
            form.pair(
                "grant_type",
                "urn:ietf:params:oauth:grant-type:token-exchange",
            );
            form.pair("subject_token", subject_token.expose_secret());
            form.pair("subject_token_type", token_type);
            secrets.push(subject_token.expose_secret());
        }
    }
    for (name, value) in &config.params {
        form.pair(name, value);
    }
    let authorization = config
        .client_auth
        .apply(&mut form, secrets, &endpoint.url, assertion)?;

    let mut request = Request::new(http_client::body::<B>(form.finish()));
    *request.method_mut() = Method::POST;
    *request.uri_mut() = endpoint.uri.clone();
    let headers = request.headers_mut();
    headers.insert(CONTENT_TYPE, FORM);
    headers.insert(ACCEPT, JSON);
    headers.insert(USER_AGENT, http_client::USER_AGENT);
    if let Some(authorization) = authorization {
        headers.insert(AUTHORIZATION, authorization);
    }
    Ok(request)
}
