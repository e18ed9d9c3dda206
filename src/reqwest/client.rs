//! A reqwest client as the HTTP client of a token provider.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http_body::Body;
use http_body_util::BodyExt;
use tower::{BoxError, Service};

/// A [`reqwest::Client`] as a tower service from `http::Request<B>` to
/// `http::Response<reqwest::Body>`: what a token provider such as
/// [`ApiVideo`](crate::apivideo::ApiVideo) sends its token requests through.
///
/// A provider is generic over any tower HTTP client; with this, an application built on
/// reqwest gets its tokens over the same connection pool, TLS and proxy settings as its API
/// calls, with no second HTTP client. Give it the plain `reqwest::Client`, not the
/// `ClientWithMiddleware` that holds the [`BearerAuthMiddleware`](super::BearerAuthMiddleware):
/// a token request must not wait for a token.
///
/// The request body is read whole before the request is sent (token requests are small), so
/// reqwest sends it with a `Content-Length` and can follow a 307 or 308 with it.
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

impl<B> Service<http::Request<B>> for ClientService
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    type Response = http::Response<::reqwest::Body>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        // reqwest's client has no backpressure of its own.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let client = self.client.clone();
        Box::pin(async move {
            let (parts, body) = request.into_parts();
            let body = body.collect().await.map_err(Into::into)?.to_bytes();
            let request = ::reqwest::Request::try_from(http::Request::from_parts(parts, body))?;
            Ok(client.execute(request).await?.into())
        })
    }
}
