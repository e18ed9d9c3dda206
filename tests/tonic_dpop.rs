//! A DPoP-bound token through `GrpcAuthLayer`, with a generated client built the natural way
//! (`HealthClient::new(channel)`, path-only URIs), against a tonic server on loopback that
//! checks every proof: the proof names the channel's origin and the call's path.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use http::header::AUTHORIZATION;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::Status;
use tonic::body::Body;
use tonic::server::NamedService;
use tonic::transport::{Channel, Server};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tower::{BoxError, Service, ServiceBuilder, service_fn};
use tower_bearer::tonic::GrpcAuthLayer;
use tower_bearer::{Scope, Token, TokenCache, TokenRequest};
use tower_bearer_mock::dpop::{ProofContext, ProofRejection, ProofVerifier};
use tower_bearer_oauth2::dpop::DpopKey;
use tower_bearer_oauth2::jose::Algorithm;

/// Long enough for loopback, short enough that a hang fails the test.
const BOUND: Duration = Duration::from_secs(10);

/// tonic-health behind a check of the `DPoP` token and its proof, against the absolute URI
/// the server was asked for: its own origin and the call's path.
#[derive(Clone)]
struct ProofChecked<S> {
    inner: S,
    origin: String,
    verifier: Arc<ProofVerifier>,
    /// Each call's `htu`-checked outcome.
    seen: Arc<Mutex<Vec<Result<(), ProofRejection>>>>,
}

impl<S: NamedService> NamedService for ProofChecked<S> {
    const NAME: &'static str = S::NAME;
}

impl<S> Service<http::Request<Body>> for ProofChecked<S>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<http::Response<Body>, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let header = |name| {
            request
                .headers()
                .get(name)
                .and_then(|value: &http::HeaderValue| value.to_str().ok())
        };
        let uri: http::Uri = format!("{}{}", self.origin, request.uri().path())
            .parse()
            .unwrap();
        let outcome = match (header(AUTHORIZATION.as_str()), header("dpop")) {
            (Some(authorization), Some(proof)) => {
                let context = ProofContext {
                    method: request.method(),
                    uri: &uri,
                    access_token: authorization.strip_prefix("DPoP "),
                    nonces: &[],
                    now: SystemTime::now(),
                };
                self.verifier.verify(proof, &context).map(drop)
            }
            _ => Err(ProofRejection::Malformed),
        };
        self.seen.lock().unwrap().push(outcome);
        if outcome.is_err() {
            let refusal = Status::unauthenticated("no valid DPoP proof").into_http();
            return Box::pin(async move { Ok(refusal) });
        }
        Box::pin(self.inner.call(request))
    }
}

async fn start_server() -> (SocketAddr, Arc<Mutex<Vec<Result<(), ProofRejection>>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (_, health) = tonic_health::server::health_reporter();
    let seen = Arc::default();
    let checked = ProofChecked {
        inner: health,
        origin: format!("http://{addr}"),
        verifier: Arc::new(ProofVerifier::new(Duration::from_secs(60), 1_000)),
        seen: Arc::clone(&seen),
    };
    let router = Server::builder().add_service(checked);
    tokio::spawn(router.serve_with_incoming(TcpListenerStream::new(listener)));
    (addr, seen)
}

#[tokio::test]
async fn a_client_built_the_natural_way_proves_its_dpop_token() {
    let (addr, seen) = start_server().await;
    let key = DpopKey::generate(Algorithm::Es256).unwrap();
    let cache = TokenCache::new(service_fn(move |_: TokenRequest| {
        let token = Token::bound("dpop-token", &key);
        async move { Ok::<_, BoxError>(token?.expires_in(Duration::from_secs(3600))) }
    }));
    let origin = format!("http://{addr}");
    let channel = Channel::from_shared(origin.clone())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let layer = GrpcAuthLayer::from_cache(cache.clone(), Scope::origin(origin).unwrap());
    let mut client = HealthClient::new(ServiceBuilder::new().layer(layer).service(channel));

    for _ in 0..2 {
        let check = client.check(HealthCheckRequest {
            service: String::new(),
        });
        let reply = tokio::time::timeout(BOUND, check).await.unwrap().unwrap();
        assert_eq!(reply.into_inner().status(), ServingStatus::Serving);
    }

    assert_eq!(*seen.lock().unwrap(), [Ok(()), Ok(())]);
    let stats = cache.stats();
    assert_eq!(
        (stats.total().succeeded, stats.out_of_scope, stats.retried),
        (1, 0, 0)
    );
}
