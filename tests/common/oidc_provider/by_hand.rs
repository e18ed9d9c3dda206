//! Requests made by hand, for tests that check what the server itself answers on the wire.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE};
use http::{HeaderMap, Request, StatusCode};
use http_body_util::Full;
use serde_json::Value;

use super::{OidcProvider, TestClient, send};

/// What an endpoint answered.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    /// The body as JSON; `Null` when it is not JSON.
    pub json: Value,
}

impl Answer {
    /// The header's value; empty when absent.
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .map_or("", |value| value.to_str().unwrap())
    }

    /// The body's string field; empty when absent.
    pub fn text(&self, key: &str) -> &str {
        self.json[key].as_str().unwrap_or_default()
    }
}

/// Sends `request` and reads the whole answer.
pub async fn call(request: Request<Full<Bytes>>) -> Answer {
    let response = send(request).await;
    Answer {
        status: response.status(),
        headers: response.headers().clone(),
        json: serde_json::from_slice(response.body()).unwrap_or(Value::Null),
    }
}

/// `application/x-www-form-urlencoded` encoding of one value (RFC 6749 §2.3.1 asks it of
/// `client_secret_basic`'s id and secret too).
pub fn form_encode(text: &str) -> String {
    form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

impl OidcProvider {
    /// A token request as `client`, authenticated the way it registered (a `private_key_jwt`
    /// client with an assertion node signs), with `params` and an optional DPoP proof.
    pub async fn token_request(
        &self,
        client: &TestClient,
        params: &[(&str, &str)],
        dpop: Option<String>,
    ) -> Answer {
        let mut form = form_urlencoded::Serializer::new(String::new());
        form.extend_pairs(params);
        let mut authorization = None;
        match client.auth_method {
            "client_secret_basic" => {
                let pair = format!(
                    "{}:{}",
                    form_encode(client.id),
                    form_encode(client.secret.unwrap())
                );
                authorization = Some(format!("Basic {}", STANDARD.encode(pair)));
            }
            "client_secret_post" => {
                form.append_pair("client_id", client.id);
                form.append_pair("client_secret", client.secret.unwrap());
            }
            "private_key_jwt" => {
                // Signed by node until the crate signs its own.
                let assertion = self.client_assertion(client).await;
                form.extend_pairs(assertion_params(client, &assertion));
            }
            _ => {
                form.append_pair("client_id", client.id);
            }
        }
        self.token_post(form.finish(), authorization, dpop).await
    }

    /// POSTs `form` to the token endpoint as it is.
    pub async fn token_post(
        &self,
        form: String,
        authorization: Option<String>,
        dpop: Option<String>,
    ) -> Answer {
        let mut request = Request::post(self.token_endpoint())
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded");
        if let Some(authorization) = authorization {
            request = request.header(AUTHORIZATION, authorization);
        }
        if let Some(proof) = dpop {
            request = request.header("dpop", proof);
        }
        call(request.body(Full::new(Bytes::from(form))).unwrap()).await
    }
}

/// The form fields of `private_key_jwt` client authentication with `assertion`.
pub fn assertion_params<'a>(client: &'a TestClient, assertion: &'a str) -> [(&'a str, &'a str); 3] {
    [
        ("client_id", client.id),
        (
            "client_assertion_type",
            "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        ),
        ("client_assertion", assertion),
    ]
}

/// A GET of `url` with `authorization` and an optional DPoP proof.
pub async fn get(url: &str, authorization: Option<String>, dpop: Option<String>) -> Answer {
    let mut request = Request::get(url);
    if let Some(authorization) = authorization {
        request = request.header(AUTHORIZATION, authorization);
    }
    if let Some(proof) = dpop {
        request = request.header("dpop", proof);
    }
    call(request.body(Full::new(Bytes::new())).unwrap()).await
}

/// A GET of `url` with `token` as a bearer token.
pub async fn bearer(url: &str, token: &str) -> Answer {
    get(url, Some(format!("Bearer {token}")), None).await
}
