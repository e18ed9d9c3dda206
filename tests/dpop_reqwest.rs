//! The reqwest middleware with DPoP tokens, over loopback against a resource server that checks
//! every proof and demands its own nonce (here, where the crate's proof verifier is at hand).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use http::{HeaderValue, Response, StatusCode, Uri};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use reqwest_middleware::ClientBuilder;
use tower::{BoxError, service_fn};

use tower_bearer::reqwest::BearerAuthMiddleware;
use tower_bearer::{Scope, Token, TokenCache, TokenRequest};
use tower_bearer_mock::dpop::{ProofContext, ProofRejection, ProofVerifier};
use tower_bearer_oauth2::dpop::DpopKey;
use tower_bearer_oauth2::jose::Algorithm;

/// What the server saw of one request.
#[derive(Debug, Clone)]
struct Seen {
    authorization: String,
    /// The proof's claims segment, to tell one proof from another.
    claims: Option<String>,
    outcome: Result<(), ProofRejection>,
}

/// A resource server on 127.0.0.1 that accepts a DPoP token only with a valid proof and its
/// current nonce, and answers `401 use_dpop_nonce` with the nonce otherwise.
#[derive(Clone)]
struct Api {
    addr: SocketAddr,
    verifier: Arc<ProofVerifier>,
    nonce: Arc<Mutex<String>>,
    seen: Arc<Mutex<Vec<Seen>>>,
    revoked: Arc<Mutex<Vec<String>>>,
}

impl Api {
    async fn start() -> Api {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let api = Api {
            addr: listener.local_addr().unwrap(),
            verifier: Arc::new(ProofVerifier::new(Duration::from_secs(60), 10_000)),
            nonce: Arc::new(Mutex::new("n-1".into())),
            seen: Arc::default(),
            revoked: Arc::default(),
        };
        let serving = api.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let api = serving.clone();
                let handler = hyper::service::service_fn(move |request| {
                    let answer = api.answer(&request);
                    async move { Ok::<_, Infallible>(answer) }
                });
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), handler),
                );
            }
        });
        api
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    fn answer(&self, request: &hyper::Request<Incoming>) -> Response<Full<Bytes>> {
        let authorization = request.headers()[AUTHORIZATION]
            .to_str()
            .unwrap()
            .to_owned();
        let access_token = authorization.strip_prefix("DPoP ").expect("DPoP scheme");
        let nonce = self.nonce.lock().unwrap().clone();
        let proof = request.headers().get("dpop").map(|p| p.to_str().unwrap());
        let uri: Uri = self.url(&request.uri().to_string()).parse().unwrap();
        let context = ProofContext {
            method: request.method(),
            uri: &uri,
            access_token: Some(access_token),
            nonces: &[&nonce],
            now: SystemTime::now(),
        };
        let outcome = match proof {
            None => Err(ProofRejection::Malformed),
            Some(proof) => self.verifier.verify(proof, &context).map(drop),
        };
        let claims = proof
            .filter(|_| outcome.is_ok())
            .map(|p| p.split('.').nth(1).unwrap().to_owned());
        self.seen.lock().unwrap().push(Seen {
            authorization: authorization.clone(),
            claims,
            outcome,
        });
        let revoked = self
            .revoked
            .lock()
            .unwrap()
            .iter()
            .any(|t| t == access_token);
        let challenge = match outcome {
            Err(ProofRejection::MissingNonce | ProofRejection::StaleNonce) => {
                Some(r#"DPoP error="use_dpop_nonce""#)
            }
            Err(_) => Some(r#"DPoP error="invalid_dpop_proof""#),
            Ok(()) if revoked => Some(r#"DPoP error="invalid_token""#),
            Ok(()) => None,
        };
        let mut response = Response::new(Full::default());
        response
            .headers_mut()
            .insert("dpop-nonce", HeaderValue::from_str(&nonce).unwrap());
        if let Some(challenge) = challenge {
            *response.status_mut() = StatusCode::UNAUTHORIZED;
            response
                .headers_mut()
                .insert(WWW_AUTHENTICATE, HeaderValue::from_static(challenge));
        }
        response
    }
}

/// A cache of DPoP tokens `t1`, `t2`, … bound to `key`, that believes any 401; and how many
/// tokens it got.
fn cache(key: &DpopKey) -> (TokenCache, Arc<AtomicUsize>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    let key = key.clone();
    let refresher = service_fn(move |_: TokenRequest| {
        let n = counted.fetch_add(1, Ordering::SeqCst) + 1;
        let key = key.clone();
        async move { Ok::<_, BoxError>(Token::bound(format!("t{n}"), &key)?) }
    });
    let cache = TokenCache::builder(refresher)
        .min_token_age(Duration::ZERO)
        .build();
    (cache, calls)
}

fn client(cache: &TokenCache) -> reqwest_middleware::ClientWithMiddleware {
    ClientBuilder::new(reqwest::Client::new())
        .with(BearerAuthMiddleware::from_cache(
            cache.clone(),
            Scope::any(),
        ))
        .build()
}

#[tokio::test]
async fn the_nonce_challenge_costs_one_retry_with_the_same_token() {
    let key = DpopKey::generate(Algorithm::Es256).unwrap();
    let (cache, calls) = cache(&key);
    let api = Api::start().await;
    let client = client(&cache);

    let response = client.get(api.url("/items?page=2")).send().await.unwrap();

    assert_eq!(response.status(), StatusCode::OK);
    let seen = api.seen();
    assert_eq!(seen.len(), 2, "one retry: {seen:?}");
    assert_eq!(seen[0].outcome, Err(ProofRejection::MissingNonce));
    assert_eq!(seen[1].outcome, Ok(()));
    assert!(
        seen.iter().all(|s| s.authorization == "DPoP t1"),
        "{seen:?}"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 1, "no refresh for a nonce");
    let stats = cache.stats();
    assert_eq!((stats.nonce_retried, stats.retried), (1, 0));

    // The nonce is known now; the next request needs no retry, and carries a new proof.
    let response = client.get(api.url("/items")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let seen = api.seen();
    assert_eq!(seen.len(), 3);
    assert_eq!(seen[2].outcome, Ok(()));
    assert_ne!(seen[1].claims, seen[2].claims);
}

#[tokio::test]
async fn a_rejected_dpop_token_is_replaced_and_the_retry_proves_the_new_one() {
    let key = DpopKey::generate(Algorithm::Es256).unwrap();
    let (cache, calls) = cache(&key);
    let api = Api::start().await;
    let client = client(&cache);
    client.get(api.url("/")).send().await.unwrap();

    api.revoked.lock().unwrap().push("t1".into());
    let response = client.get(api.url("/")).send().await.unwrap();

    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(calls.load(Ordering::SeqCst), 2, "replaced once");
    let last: Vec<_> = api.seen().into_iter().skip(2).collect();
    assert_eq!(last.len(), 2, "{last:?}");
    assert_eq!(last[0].authorization, "DPoP t1");
    assert_eq!(last[1].authorization, "DPoP t2");
    assert_eq!(
        last[1].outcome,
        Ok(()),
        "the retry's proof names the new token"
    );
}
