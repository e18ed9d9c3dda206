//! What the examples share that is not the crate's use: the load the session examples send
//! (`quickstart`, `oauth2`, `grpc`, `reqwest`, `platform`), what they record and print while it
//! runs, and the environment of the OAuth 2.0 examples. Each example opens with the crate's use;
//! this is the harness behind it.
#![allow(dead_code)]

pub(crate) mod apivideo;
pub(crate) mod load;
pub(crate) mod metrics;
pub(crate) mod oauth2_env;
pub(crate) mod summary;
pub(crate) mod tally;

use std::process::ExitCode;

use bytes::Bytes;
use http::{Request, Response, Uri};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tower::util::BoxCloneService;
use tower::{BoxError, ServiceExt};

/// A hyper client for `https://` (webpki roots) and, for the mocks on loopback, `http://`.
pub(crate) fn https_client<B>() -> Client<HttpsConnector<HttpConnector>, B>
where
    B: http_body::Body + Send,
    B::Data: Send,
{
    let https = HttpsConnectorBuilder::new()
        .with_webpki_roots()
        .https_or_http()
        .enable_http1()
        .build();
    Client::builder(TokioExecutor::new()).build(https)
}

/// A stack that calls an API over hyper, whatever its layers.
pub(crate) type Api = BoxCloneService<Request<Full<Bytes>>, Response<Incoming>, BoxError>;

/// One call: a GET of `uri`; a success is a 2xx answer read to its end.
pub(crate) async fn get(api: Api, uri: Uri) -> Result<(), String> {
    let request = Request::get(uri)
        .body(Full::default())
        .expect("a valid request");
    let response = api
        .oneshot(request)
        .await
        .map_err(|error| tally::chain(&*error))?;
    let status = response.status();
    response
        .into_body()
        .collect()
        .await
        .map_err(|error| format!("reading the body: {error}"))?;
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("GET: {status}"))
    }
}

/// The exit status of a session that ran (`Ok(true)` if it went as it should): 0 if it went
/// well, 1 if not or if it failed, its error then on stderr after `name: `, with its causes.
pub(crate) fn exit_status(name: &str, result: Result<bool, BoxError>) -> ExitCode {
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("{name}: {}", tally::chain(&*error));
            ExitCode::FAILURE
        }
    }
}
