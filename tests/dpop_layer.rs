//! The layer with DPoP tokens, against a resource server that checks every proof and demands
//! its own nonce, as RFC 9449 §9 lets it.

mod common;

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::Full;
use tower::{BoxError, Layer, Service, ServiceExt, service_fn};

use common::within;
use tower_bearer::{BearerAuthLayer, ReplayBody, Scope, Token, TokenRequest};
use tower_bearer_mock::dpop::{ProofContext, ProofRejection, ProofVerifier};
use tower_bearer_oauth2::dpop::DpopKey;
use tower_bearer_oauth2::jose::Algorithm;

/// What the resource server saw of one request.
#[derive(Debug, Clone)]
struct Seen {
    authorization: String,
    /// The proof's `jti`, if it verified.
    jti: Option<String>,
    outcome: Result<(), ProofRejection>,
}

/// A resource server that accepts a DPoP token only with a valid proof from its key and the
/// server's current nonce; it answers `401 use_dpop_nonce` with its nonce otherwise.
#[derive(Clone)]
struct Api {
    verifier: Arc<ProofVerifier>,
    nonce: Arc<Mutex<String>>,
    /// The thumbprint the tokens are bound to.
    jkt: String,
    seen: Arc<Mutex<Vec<Seen>>>,
    /// Tokens the server no longer accepts.
    revoked: Arc<Mutex<Vec<String>>>,
    /// Whether every answer demands a new nonce.
    restless: bool,
}

impl Api {
    fn new(key: &DpopKey) -> Api {
        Api {
            verifier: Arc::new(ProofVerifier::new(Duration::from_secs(60), 10_000)),
            nonce: Arc::new(Mutex::new("n-1".into())),
            jkt: key.thumbprint().to_owned(),
            seen: Arc::default(),
            revoked: Arc::default(),
            restless: false,
        }
    }

    fn rotate_nonce(&self) {
        let mut nonce = self.nonce.lock().unwrap();
        let next = nonce[2..].parse::<u32>().unwrap() + 1;
        *nonce = format!("n-{next}");
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    fn answer(&self, request: &Request<ReplayBody<Full<Bytes>>>) -> Response<Full<Bytes>> {
        let authorization = request.headers()[AUTHORIZATION]
            .to_str()
            .unwrap()
            .to_owned();
        let access_token = authorization.strip_prefix("DPoP ").expect("DPoP scheme");
        if self.restless {
            self.rotate_nonce();
        }
        let nonce = self.nonce.lock().unwrap().clone();
        let proof = request.headers().get("dpop").map(|p| p.to_str().unwrap());
        let context = ProofContext {
            method: request.method(),
            uri: request.uri(),
            access_token: Some(access_token),
            nonces: &[&nonce],
            now: SystemTime::now(),
        };
        let outcome = match proof {
            None => Err(ProofRejection::Malformed),
            Some(proof) => self.verifier.verify(proof, &context).map(|jkt| {
                assert_eq!(jkt, self.jkt, "the proof's key is the token's");
            }),
        };
        // The claims (`jti` and `iat`) tell one proof from another.
        let jti = proof
            .filter(|_| outcome.is_ok())
            .map(|p| p.split('.').nth(1).unwrap().to_owned());
        self.seen.lock().unwrap().push(Seen {
            authorization: authorization.clone(),
            jti,
            outcome,
        });
        let mut response = Response::new(Full::default());
        response
            .headers_mut()
            .insert("dpop-nonce", HeaderValue::from_str(&nonce).unwrap());
        let revoked = self
            .revoked
            .lock()
            .unwrap()
            .iter()
            .any(|t| t == access_token);
        let challenge = match outcome {
            Err(ProofRejection::MissingNonce | ProofRejection::StaleNonce) => Some(
                r#"DPoP error="use_dpop_nonce", error_description="Resource server requires nonce in DPoP proof""#,
            ),
            Err(_) => Some(r#"DPoP error="invalid_dpop_proof""#),
            Ok(()) if revoked => Some(r#"DPoP error="invalid_token""#),
            Ok(()) => None,
        };
        if let Some(challenge) = challenge {
            *response.status_mut() = StatusCode::UNAUTHORIZED;
            response
                .headers_mut()
                .insert(WWW_AUTHENTICATE, HeaderValue::from_static(challenge));
        }
        response
    }
}

impl Service<Request<ReplayBody<Full<Bytes>>>> for Api {
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Infallible>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<ReplayBody<Full<Bytes>>>) -> Self::Future {
        std::future::ready(Ok(self.answer(&request)))
    }
}

/// A refresher of DPoP tokens `t1`, `t2`, … bound to `key`, counting its calls.
fn refresher(
    key: &DpopKey,
) -> (
    impl Service<TokenRequest, Response = Token, Error = BoxError, Future: Send> + Send + 'static,
    Arc<AtomicUsize>,
) {
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    let key = key.clone();
    let refresher = service_fn(move |_: TokenRequest| {
        let n = counted.fetch_add(1, Ordering::SeqCst) + 1;
        let key = key.clone();
        async move { Ok::<_, BoxError>(Token::bound(format!("t{n}"), &key)?) }
    });
    (refresher, calls)
}

fn get(uri: &str) -> Request<Full<Bytes>> {
    Request::get(uri).body(Full::default()).unwrap()
}

#[tokio::test]
async fn a_first_request_meets_the_nonce_challenge_and_recovers_with_one_retry() {
    let key = DpopKey::generate(Algorithm::Es256).unwrap();
    let (refresher, calls) = refresher(&key);
    let api = Api::new(&key);
    let service = BearerAuthLayer::new(refresher, Scope::any()).layer(api.clone());

    let response = within(
        service
            .clone()
            .oneshot(get("https://api.test/items?page=2")),
    )
    .await
    .unwrap();

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
    let stats = service.cache().stats();
    assert_eq!(
        (stats.nonce_retried, stats.retried, stats.unauthorized),
        (1, 0, 0)
    );

    // The nonce is known now: the next request needs no retry.
    let response = within(service.oneshot(get("https://api.test/items")))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(api.seen().len(), 3);
}

// A proof names its request's method (`htm`): the first attempt's, the retry's after a nonce
// challenge, and a request's sent with the token already held.
#[tokio::test(start_paused = true)]
async fn every_proof_names_its_requests_method() {
    let key = DpopKey::generate(Algorithm::Es256).unwrap();
    let (refresher, _) = refresher(&key);
    let api = Api::new(&key);
    let service = BearerAuthLayer::new(refresher, Scope::any()).layer(api.clone());
    let post = || {
        Request::post("https://api.test/items")
            .body(Full::new(Bytes::from_static(b"{}")))
            .unwrap()
    };

    let first = within(service.clone().oneshot(post())).await.unwrap();
    let second = within(service.oneshot(post())).await.unwrap();

    assert_eq!(first.status(), StatusCode::OK);
    assert_eq!(second.status(), StatusCode::OK);
    let outcomes: Vec<_> = api.seen().into_iter().map(|s| s.outcome).collect();
    assert_eq!(
        outcomes,
        [Err(ProofRejection::MissingNonce), Ok(()), Ok(())],
        "every proof verified for a POST but the first's missing nonce"
    );
}

#[tokio::test]
async fn a_rotated_nonce_costs_one_retry_not_a_refresh_and_proofs_are_never_reused() {
    let key = DpopKey::generate(Algorithm::Es256).unwrap();
    let (refresher, calls) = refresher(&key);
    let api = Api::new(&key);
    let service = BearerAuthLayer::new(refresher, Scope::any()).layer(api.clone());
    within(service.clone().oneshot(get("https://api.test/")))
        .await
        .unwrap();

    api.rotate_nonce();
    let requests = (0..100).map(|_| service.clone().oneshot(get("https://api.test/")));
    let responses = within(futures_join_all(requests)).await;

    assert!(
        responses
            .iter()
            .all(|r| r.as_ref().unwrap().status() == StatusCode::OK)
    );
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "0 refreshes for a new nonce"
    );
    let seen = api.seen();
    assert!(seen.len() <= 2 + 200, "{}", seen.len());
    let jtis: Vec<_> = seen.iter().filter_map(|s| s.jti.clone()).collect();
    let unique: std::collections::HashSet<_> = jtis.iter().collect();
    assert_eq!(unique.len(), jtis.len(), "a new proof for every attempt");
    assert_eq!(jtis.len(), 101);
}

#[tokio::test]
async fn a_server_that_keeps_asking_for_new_nonces_cannot_loop_the_client() {
    let key = DpopKey::generate(Algorithm::Es256).unwrap();
    let (refresher, calls) = refresher(&key);
    let mut api = Api::new(&key);
    api.restless = true;
    let service = BearerAuthLayer::new(refresher, Scope::any()).layer(api.clone());

    let response = within(service.oneshot(get("https://api.test/")))
        .await
        .unwrap();

    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(api.seen().len(), 2, "sent at most twice");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_rejected_dpop_token_is_replaced_and_the_retry_proves_the_new_one() {
    let key = DpopKey::generate(Algorithm::Es256).unwrap();
    let (refresher, calls) = refresher(&key);
    let api = Api::new(&key);
    let layer = BearerAuthLayer::from_cache(
        tower_bearer::TokenCache::builder(refresher)
            .min_token_age(Duration::ZERO)
            .build(),
        Scope::any(),
    );
    let service = layer.layer(api.clone());
    within(service.clone().oneshot(get("https://api.test/")))
        .await
        .unwrap();

    api.revoked.lock().unwrap().push("t1".into());
    let response = within(service.oneshot(get("https://api.test/")))
        .await
        .unwrap();

    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(calls.load(Ordering::SeqCst), 2, "replaced once");
    let last: Vec<_> = api.seen().into_iter().skip(2).collect();
    assert_eq!(last.len(), 2, "{last:?}");
    assert_eq!(last[0].authorization, "DPoP t1");
    assert_eq!(last[1].authorization, "DPoP t2");
    assert_eq!(
        last[1].outcome,
        Ok(()),
        "the retry's proof names the new token (ath)"
    );
}

// A nonce challenge is answered only with a nonce the proof did not carry: one without a
// nonce, or with the same one, would be refused again.
#[tokio::test(start_paused = true)]
async fn a_nonce_challenge_without_a_new_nonce_goes_back_as_it_came() {
    let key = DpopKey::generate(Algorithm::Es256).unwrap();
    let (refresher, calls) = refresher(&key);
    let sent = Arc::new(AtomicUsize::new(0));
    let counted = sent.clone();
    let api = service_fn(move |_: Request<ReplayBody<Full<Bytes>>>| {
        counted.fetch_add(1, Ordering::SeqCst);
        let mut challenge = Response::new(Full::<Bytes>::default());
        *challenge.status_mut() = StatusCode::UNAUTHORIZED;
        challenge.headers_mut().insert(
            WWW_AUTHENTICATE,
            HeaderValue::from_static(r#"DPoP error="use_dpop_nonce""#),
        );
        async { Ok::<_, Infallible>(challenge) }
    });
    let service = BearerAuthLayer::new(refresher, Scope::any()).layer(api);

    let response = within(service.clone().oneshot(get("https://api.test/")))
        .await
        .unwrap();

    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(sent.load(Ordering::SeqCst), 1, "not sent again");
    assert_eq!(calls.load(Ordering::SeqCst), 1, "the token is not replaced");
    assert_eq!(service.cache().stats().nonce_retried, 0);
}

// With retries off, a nonce challenge goes back to the caller, and its nonce is learned: the
// request that follows carries it, whether it waited for the token or found it held.
#[tokio::test(start_paused = true)]
async fn with_retries_off_a_nonce_challenges_nonce_is_learned_for_the_next_request() {
    let key = DpopKey::generate(Algorithm::Es256).unwrap();
    let (refresher, calls) = refresher(&key);
    let api = Api::new(&key);
    let service = BearerAuthLayer::new(refresher, Scope::any())
        .retry_unauthorized(false)
        .layer(api.clone());

    let first = within(service.clone().oneshot(get("https://api.test/")))
        .await
        .unwrap();
    let second = within(service.clone().oneshot(get("https://api.test/")))
        .await
        .unwrap();
    api.rotate_nonce();
    let third = within(service.clone().oneshot(get("https://api.test/")))
        .await
        .unwrap();
    let fourth = within(service.oneshot(get("https://api.test/")))
        .await
        .unwrap();

    let statuses = [&first, &second, &third, &fourth].map(|r| r.status());
    assert_eq!(
        statuses,
        [
            StatusCode::UNAUTHORIZED,
            StatusCode::OK,
            StatusCode::UNAUTHORIZED,
            StatusCode::OK
        ]
    );
    assert_eq!(calls.load(Ordering::SeqCst), 1, "no refresh for a nonce");
}

// A DPoP token replaced by a bearer token: the retry carries the new token and no proof (the
// first attempt's is not kept for it).
#[tokio::test(start_paused = true)]
async fn a_dpop_token_replaced_by_a_bearer_token_is_retried_without_a_proof() {
    let key = DpopKey::generate(Algorithm::Es256).unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    let refresher = service_fn(move |_: TokenRequest| {
        let n = counted.fetch_add(1, Ordering::SeqCst) + 1;
        let key = key.clone();
        async move {
            match n {
                1 => Ok::<_, BoxError>(Token::bound("t1", &key)?),
                _ => Ok(Token::bearer("plain")?),
            }
        }
    });
    let seen = Arc::new(Mutex::new(Vec::new()));
    let saw = seen.clone();
    let api = service_fn(move |request: Request<ReplayBody<Full<Bytes>>>| {
        let headers = request.headers().clone();
        saw.lock().unwrap().push(headers.clone());
        let mut response = Response::new(Full::<Bytes>::default());
        if headers[AUTHORIZATION] == "DPoP t1" {
            *response.status_mut() = StatusCode::UNAUTHORIZED;
            response.headers_mut().insert(
                WWW_AUTHENTICATE,
                HeaderValue::from_static(r#"DPoP error="invalid_token""#),
            );
        }
        async { Ok::<_, Infallible>(response) }
    });
    let cache = tower_bearer::TokenCache::builder(refresher)
        .min_token_age(Duration::ZERO)
        .build();
    let service = BearerAuthLayer::from_cache(cache, Scope::any()).layer(api);

    let response = within(service.oneshot(get("https://api.test/")))
        .await
        .unwrap();

    assert_eq!(response.status(), StatusCode::OK);
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2, "one retry");
    assert_eq!(seen[0][AUTHORIZATION], "DPoP t1");
    assert_eq!(seen[0].get_all("dpop").iter().count(), 1);
    assert_eq!(seen[1][AUTHORIZATION], "Bearer plain");
    assert!(!seen[1].contains_key("dpop"), "{:?}", seen[1]);
}

#[tokio::test]
async fn a_bearer_token_carries_no_proof() {
    let seen = Arc::new(Mutex::new(None));
    let saw = seen.clone();
    let api = service_fn(move |request: Request<ReplayBody<Full<Bytes>>>| {
        *saw.lock().unwrap() = Some(request.headers().clone());
        async { Ok::<_, Infallible>(Response::new(Full::<Bytes>::default())) }
    });
    let refresher = service_fn(|_: TokenRequest| async { Token::bearer("plain") });
    let service = BearerAuthLayer::new(refresher, Scope::any()).layer(api);

    within(service.oneshot(get("https://api.test/")))
        .await
        .unwrap();

    let headers = seen.lock().unwrap().clone().unwrap();
    assert_eq!(headers[AUTHORIZATION], "Bearer plain");
    assert!(!headers.contains_key("dpop"));
}

/// Spawns every future and waits for them all, in order.
async fn futures_join_all<F>(futures: impl Iterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.map(tokio::spawn).collect();
    let mut outputs = Vec::new();
    for handle in handles {
        outputs.push(handle.await.unwrap());
    }
    outputs
}
