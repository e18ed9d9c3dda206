//! What the DPoP tests share: a client that records what it sends, a proof's claims read
//! back, and a provider with a DPoP key pointed at a mock authorization server.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::client::legacy::{Client, Error as ClientError};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::Value;
use tokio::net::TcpListener;
use tower::ServiceExt;
use tower::util::BoxCloneService;
use tower_bearer::ReplayBody;
use tower_bearer_mock::oauth2::{DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, MockAuthServer};
use tower_bearer_oauth2::dpop::DpopKey;
use tower_bearer_oauth2::jose::Algorithm;
use tower_bearer_oauth2::{OAuth2, OAuth2Builder};

/// The body both the provider and the layer send through one client.
pub type Body = ReplayBody<Full<Bytes>>;

/// A hyper-util client that records every request it sends. (Its error is the client's own:
/// a `BoxError` there trips rustc's higher-ranked `Send` check when a layer's future around it
/// is spawned.)
pub type Recording = BoxCloneService<Request<Body>, Response<Incoming>, ClientError>;

/// One request as it left.
#[derive(Clone, Debug)]
pub struct Sent {
    pub method: Method,
    pub path: String,
    pub authorization: Option<String>,
    /// The `DPoP` header, if any.
    pub proof: Option<String>,
}

impl Sent {
    /// The claims of the request's proof.
    pub fn claims(&self) -> Value {
        claims(self.proof.as_deref().expect("a proof"))
    }
}

/// What a [`Recording`] client sent.
#[derive(Clone, Default)]
pub struct Wire(Arc<Mutex<Vec<Sent>>>);

impl Wire {
    /// A client that records into this wire.
    pub fn client(&self) -> Recording {
        let client = Client::builder(TokioExecutor::new()).build_http::<Body>();
        let sent = self.0.clone();
        BoxCloneService::new(tower::service_fn(move |request: Request<Body>| {
            let text = |name: &str| {
                request
                    .headers()
                    .get(name)
                    .map(|value| value.to_str().unwrap().to_owned())
            };
            sent.lock().unwrap().push(Sent {
                method: request.method().clone(),
                path: request.uri().path().to_owned(),
                authorization: text("authorization"),
                proof: text("dpop"),
            });
            client.clone().oneshot(request)
        }))
    }

    pub fn sent(&self) -> Vec<Sent> {
        self.0.lock().unwrap().clone()
    }

    /// What went to `path`.
    pub fn to(&self, path: &str) -> Vec<Sent> {
        self.sent().into_iter().filter(|s| s.path == path).collect()
    }
}

/// The claims of a proof (a compact JWS), unverified.
pub fn claims(proof: &str) -> Value {
    let payload = proof.split('.').nth(1).expect("a compact JWS");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

/// A new ES256 DPoP key.
pub fn key() -> DpopKey {
    DpopKey::generate(Algorithm::Es256).unwrap()
}

/// A provider's builder for `server`'s token endpoint, its default client, and `key`.
pub fn provider(server: &MockAuthServer, key: &DpopKey) -> OAuth2Builder {
    OAuth2::builder()
        .token_endpoint(server.token_endpoint())
        .client_id(DEFAULT_CLIENT_ID)
        .client_secret(DEFAULT_CLIENT_SECRET)
        .timeout(Duration::from_secs(10))
        .dpop(key.clone())
}

// ===== a server that never stops asking for nonces =====

/// A resource server on loopback that answers every request `401 WWW-Authenticate: DPoP
/// error="use_dpop_nonce"` with a nonce it never gave before.
pub struct RestlessApi {
    addr: SocketAddr,
    requests: Arc<AtomicUsize>,
}

impl RestlessApi {
    pub async fn start() -> RestlessApi {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(AtomicUsize::new(0));
        let counted = requests.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let counted = counted.clone();
                let service = hyper::service::service_fn(move |_| {
                    let n = counted.fetch_add(1, Ordering::SeqCst);
                    let response = Response::builder()
                        .status(StatusCode::UNAUTHORIZED)
                        .header("www-authenticate", r#"DPoP error="use_dpop_nonce""#)
                        .header("dpop-nonce", format!("nonce-{n}"))
                        .body(Full::<Bytes>::default())
                        .unwrap();
                    async move { Ok::<_, std::convert::Infallible>(response) }
                });
                tokio::spawn(http1::Builder::new().serve_connection(TokioIo::new(stream), service));
            }
        });
        RestlessApi { addr, requests }
    }

    pub fn uri(&self) -> String {
        format!("http://{}/api", self.addr)
    }

    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}
