//! A reqwest client as the HTTP client of a token provider.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::Full;
use tower::Service;
use tower_http::follow_redirect::RequestUri;

/// A [`reqwest::Client`] as a tower service from `http::Request<Full<Bytes>>` to
/// `http::Response<reqwest::Body>`: what a token provider (`oauth2::OAuth2`, api.video's
/// `ApiVideo`, any other generic over a tower HTTP client) sends its token requests through.
///
/// A provider is generic over any tower HTTP client; with this, an application built on
/// reqwest gets its tokens over a reqwest client, with its TLS and proxy settings. Give it a
/// plain `reqwest::Client`, not the `ClientWithMiddleware` that holds the
/// `BearerAuthMiddleware`: a token request must not wait for a token.
///
/// # Redirects
///
/// A provider never follows a redirect: a token request carries the client's credentials,
/// and only the server asked may see them. Build the client with
/// [`redirect::Policy::none()`](::reqwest::redirect::Policy::none), so that reqwest does not
/// follow one either:
///
/// ```
/// use tower_bearer_provider::reqwest::ClientService;
///
/// let for_tokens = reqwest::Client::builder()
///     .redirect(reqwest::redirect::Policy::none())
///     .build()?;
/// let client = ClientService::new(for_tokens);
/// # Ok::<(), reqwest::Error>(())
/// ```
///
/// (Such a client shares no connection pool with an application's client that follows
/// redirects: the price of keeping the credentials where they belong.)
///
/// With a client that does follow redirects, the provider still refuses the answer: this
/// service tells it which URL answered (reqwest's `Response::url`, as the tower-http
/// `RequestUri` response extension), and a provider refuses an answer from any other URL
/// than the one it asked. The body is handed to reqwest as a body it cannot replay, so reqwest
/// does not re-send a token request to wherever a 307 or 308 points; but it turns a POST
/// answered with a 301, 302 or 303 into a bodiless GET to the new place, which only
/// `Policy::none()` prevents.
///
/// A provider names its request body type after its client's; this client takes one,
/// [`Full<Bytes>`], so the compiler infers it.
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
            // Wrapped, not collected: reqwest replays only bodies it holds as bytes, and a
            // token request must not be replayed to where a 307 points. The length is known,
            // so it is still sent with a `Content-Length`.
            let request = request.map(::reqwest::Body::wrap);
            let response = client
                .execute(::reqwest::Request::try_from(request)?)
                .await?;
            let answered = response.url().as_str().parse::<http::Uri>().ok();
            let mut response = http::Response::<::reqwest::Body>::from(response);
            if let Some(answered) = answered {
                response.extensions_mut().insert(RequestUri(answered));
            }
            Ok(response)
        })
    }
}
