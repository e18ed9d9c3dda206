//! A reqwest client as the HTTP client of a token provider.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use tower::Service;

/// A [`reqwest::Client`] as a tower service from `http::Request<Full<Bytes>>` to
/// `http::Response<reqwest::Body>`: what a token provider (`oauth2::OAuth2`, api.video's
/// `ApiVideo`, any other generic over a tower HTTP client) sends its token requests through.
///
/// A provider is generic over any tower HTTP client; with this, an application built on
/// reqwest gets its tokens over the same connection pool, TLS and proxy settings as its API
/// calls, with no second HTTP client. Give it the plain `reqwest::Client`, not the
/// `ClientWithMiddleware` that holds the `BearerAuthMiddleware`:
/// a token request must not wait for a token.
///
/// The body is handed to reqwest as the bytes it holds, so reqwest sends it with a
/// `Content-Length` and can follow a 307 or 308 with it. A provider names its request body
/// type after its client's; this client takes one, [`Full<Bytes>`], so the compiler infers it.
#[derive(Clone)]
pub struct ClientService {
    client: ::reqwest::Client,
}

impl ClientService {
    /// Sends through `client`.
    pub fn new(client: ::reqwest::Client) -> Self {
        ClientService { client }
    }

    /// The reqwest client.
    pub fn get_ref(&self) -> &::reqwest::Client {
        &self.client
    }

    /// The reqwest client.
    pub fn into_inner(self) -> ::reqwest::Client {
        self.client
    }
}

impl From<::reqwest::Client> for ClientService {
    fn from(client: ::reqwest::Client) -> Self {
        ClientService::new(client)
    }
}

impl fmt::Debug for ClientService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientService").finish_non_exhaustive()
    }
}

impl Service<http::Request<Full<Bytes>>> for ClientService {
    type Response = http::Response<::reqwest::Body>;
    type Error = ::reqwest::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // reqwest's client has no backpressure of its own.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Full<Bytes>>) -> Self::Future {
        let client = self.client.clone();
        Box::pin(async move {
            let (parts, body) = request.into_parts();
            let body = match body.collect().await {
                Ok(collected) => collected.to_bytes(),
                Err(never) => match never {},
            };
            let request = ::reqwest::Request::try_from(http::Request::from_parts(parts, body))?;
            Ok(client.execute(request).await?.into())
        })
    }
}
