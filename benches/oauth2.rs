//! The OAuth 2.0 provider's own cost: a client-credentials grant over loopback against the
//! mock authorization server (grants per second, one at a time, and allocations per grant on
//! the client's thread), and what a `private_key_jwt` client assertion adds to a grant,
//! beside the raw ES256 and RS256 signatures it is built around.
//!
//! ```text
//! cargo bench --bench oauth2
//! ```
//!
//! The mock server runs on a thread and a current-thread runtime of its own; the provider on
//! the bench's thread, on another, so that the allocations counted on this thread are the
//! client's only (hyper's client connection task included). The assertion's cost is measured
//! in-process: the same grant against a client that answers at once, with
//! `client_secret_basic` and with `private_key_jwt`, so that the difference is the assertion
//! (claims, a random `jti`, base64url, the signature) and nothing of the network.

use std::convert::Infallible;
use std::thread;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use criterion::{Criterion, Throughput};
use http::{Request, Response};
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, RsaKeyPair};
use tokio::runtime::Runtime;
use tokio::sync::oneshot;
use tower::{ServiceExt, service_fn};
use tower_bearer::{RefreshReason, TokenRequest};
use tower_bearer_mock::oauth2::MockAuthServer;
use tower_bearer_oauth2::OAuth2;
use tower_bearer_oauth2::jose::SigningKey;

// ===== the counting allocator =====

#[path = "common/counting.rs"]
mod counting;
use counting::allocated;

// ===== the server =====

/// A mock authorization server on a thread of its own, stopped when dropped.
struct Server {
    token_endpoint: String,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Server {
    fn start() -> Server {
        let (endpoint_tx, endpoint_rx) = std::sync::mpsc::channel();
        let (stop, stopped) = oneshot::channel::<()>();
        let thread = thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a server runtime");
            runtime.block_on(async move {
                let server = MockAuthServer::start().await.expect("a mock server");
                endpoint_tx.send(server.token_endpoint()).unwrap();
                let _ = stopped.await;
                server.shutdown().await;
            });
        });
        Server {
            token_endpoint: endpoint_rx.recv().expect("the server's token endpoint"),
            stop: Some(stop),
            thread: Some(thread),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.stop.take().map(|stop| stop.send(()));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn client() -> Client<HttpConnector, Full<Bytes>> {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    Client::builder(TokioExecutor::new()).build(connector)
}

fn initial() -> TokenRequest {
    TokenRequest::new(RefreshReason::Initial, None)
}

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
}

// ===== client credentials over loopback =====

fn loopback_grant(c: &mut Criterion) {
    let server = Server::start();
    let runtime = runtime();
    let provider = OAuth2::builder()
        .token_endpoint(&server.token_endpoint)
        .client_id(tower_bearer_mock::oauth2::DEFAULT_CLIENT_ID)
        .client_secret(tower_bearer_mock::oauth2::DEFAULT_CLIENT_SECRET)
        .build(client())
        .expect("a provider");

    // Allocations per grant on this thread: warm the connection first.
    const GRANTS: u64 = 1_000;
    runtime.block_on(async {
        for _ in 0..10 {
            provider.clone().oneshot(initial()).await.expect("a token");
        }
        let before = allocated();
        for _ in 0..GRANTS {
            provider.clone().oneshot(initial()).await.expect("a token");
        }
        let after = allocated();
        println!(
            "\nclient_credentials grant over loopback, client side: {:.1} allocations, {:.0} bytes per grant",
            (after.0 - before.0) as f64 / GRANTS as f64,
            (after.1 - before.1) as f64 / GRANTS as f64,
        );
    });

    let mut group = c.benchmark_group("oauth2");
    group.throughput(Throughput::Elements(1));
    group.bench_function("client_credentials_grant_loopback", |b| {
        b.to_async(&runtime)
            .iter(|| provider.clone().oneshot(initial()))
    });
    group.finish();
    drop(server);
}

// ===== a client assertion's cost =====

/// What the in-process token endpoint answers.
type Answer = std::future::Ready<Result<Response<Full<Bytes>>, Infallible>>;
/// A token endpoint that answers at once.
type Answering = tower::util::ServiceFn<fn(Request<Full<Bytes>>) -> Answer>;

/// A token endpoint that answers at once, whatever it is asked.
fn answering() -> Answering {
    service_fn(|_| {
        std::future::ready(Ok(Response::new(Full::new(Bytes::from_static(
            br#"{"access_token":"eyJ.bench.token","token_type":"Bearer","expires_in":3600}"#,
        )))))
    })
}

fn pem(file: &str) -> String {
    std::fs::read_to_string(format!("{}/tests/keys/{file}", env!("CARGO_MANIFEST_DIR")))
        .expect("a test key")
}

/// The PKCS#8 DER inside a PEM file, for ring.
fn der(file: &str) -> Vec<u8> {
    let base64: String = pem(file)
        .lines()
        .filter(|line| !line.starts_with("-----"))
        .collect();
    STANDARD.decode(base64).expect("base64")
}

fn assertion_cost(c: &mut Criterion) {
    let runtime = runtime();
    let mut group = c.benchmark_group("oauth2_assertion");
    // What a client assertion's signing input is about: a header and claims, base64url.
    let message = vec![b'x'; 300];
    let random = SystemRandom::new();

    let es256 = EcdsaKeyPair::from_pkcs8(
        &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
        &der("es256.pkcs8.pem"),
        &random,
    )
    .expect("an ES256 key");
    group.bench_function("raw_signature_es256", |b| {
        b.iter(|| es256.sign(&random, &message).expect("a signature"))
    });
    let rs256 = RsaKeyPair::from_pkcs8(&der("rs256.pkcs8.pem")).expect("an RS256 key");
    let mut rsa_signature = vec![0; rs256.public().modulus_len()];
    group.bench_function("raw_signature_rs256", |b| {
        b.iter(|| {
            rs256
                .sign(
                    &signature::RSA_PKCS1_SHA256,
                    &random,
                    &message,
                    &mut rsa_signature,
                )
                .expect("a signature")
        })
    });

    let builder = || {
        OAuth2::builder()
            .token_endpoint("https://as.example/token")
            .client_id("bench-client")
    };
    let basic = builder()
        .client_secret("bench-secret")
        .build(answering())
        .expect("a provider");
    // The provider's own allocations, without a network client's.
    runtime.block_on(async {
        const GRANTS: u64 = 1_000;
        basic.clone().oneshot(initial()).await.expect("a token");
        let before = allocated();
        for _ in 0..GRANTS {
            basic.clone().oneshot(initial()).await.expect("a token");
        }
        let after = allocated();
        println!(
            "\nclient_credentials grant in process (the provider alone): {:.1} allocations, {:.0} bytes per grant",
            (after.0 - before.0) as f64 / GRANTS as f64,
            (after.1 - before.1) as f64 / GRANTS as f64,
        );
    });
    group.bench_function("grant_in_process_client_secret_basic", |b| {
        b.to_async(&runtime)
            .iter(|| basic.clone().oneshot(initial()))
    });
    for (name, file) in [("es256", "es256.pkcs8.pem"), ("rs256", "rs256.pkcs8.pem")] {
        let key = SigningKey::from_pem(pem(file))
            .expect("a key")
            .with_key_id(name);
        let jwt = builder()
            .private_key(key)
            .build(answering())
            .expect("a provider");
        group.bench_function(format!("grant_in_process_private_key_jwt_{name}"), |b| {
            b.to_async(&runtime).iter(|| jwt.clone().oneshot(initial()))
        });
    }
    group.finish();
}

fn main() {
    let mut criterion = Criterion::default()
        .without_plots()
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    loopback_grant(&mut criterion);
    assertion_cost(&mut criterion);
    criterion.final_summary();
}
