//! The Azure managed identity provider against the mock over loopback: what it sends to each
//! endpoint, what it makes of each answer IMDS and App Service give, how often it asks again,
//! and a `TokenCache` over it.
//!
//! Retries wait on tokio's paused clock, which jumps to the next timer whenever the runtime is
//! idle: the mock answers at once (no injected delay but where a test is about one), and the
//! tests count requests and attempts rather than time each wait; the schedule's exact waits are
//! unit tests of the retry policy.

use std::error::Error;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::time::Instant;
use tower::{BoxError, ServiceExt, service_fn};

use tower_bearer::{RefreshReason, RetryAfter, Token, TokenCache, TokenError, TokenRequest};
use tower_bearer_mock::azure::{Endpoint, Fault, MockManagedIdentity, SYSTEM_ASSIGNED_CLIENT_ID};
use tower_bearer_platform::azure::{
    IdentityEndpoint, ManagedIdentity, ManagedIdentityError, NoAnswer, UserAssignedId,
};

const VAULT: &str = "https://vault.azure.net";
const HEADER: &str = "c0ffee-identity-header-5ecret";
const USER_CLIENT_ID: &str = "11111111-2222-3333-4444-555555555555";
const USER_OBJECT_ID: &str = "66666666-7777-8888-9999-000000000000";
const USER_RESOURCE_ID: &str = "/subscriptions/s/resourcegroups/g/providers/Microsoft.ManagedIdentity/userAssignedIdentities/app";

type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// A hyper-util client that counts the requests it is asked to send, answered or not.
#[derive(Clone)]
struct Counting {
    client: HttpClient,
    sent: Arc<AtomicU32>,
}

impl Counting {
    fn new() -> Self {
        Counting {
            client: Client::builder(TokioExecutor::new()).build_http(),
            sent: Arc::default(),
        }
    }

    fn sent(&self) -> u32 {
        self.sent.load(Ordering::SeqCst)
    }

    fn service(&self) -> impl tower_bearer_provider::HttpClient<Full<Bytes>> {
        let this = self.clone();
        service_fn(move |request| {
            this.sent.fetch_add(1, Ordering::SeqCst);
            this.client.request(request)
        })
    }
}

async fn server() -> MockManagedIdentity {
    MockManagedIdentity::builder()
        .identity_header(HEADER)
        .user_assigned(USER_CLIENT_ID, USER_OBJECT_ID, USER_RESOURCE_ID)
        .token_ttl(Duration::from_secs(3600))
        .start()
        .await
        .unwrap()
}

fn client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

fn imds(server: &MockManagedIdentity, resource: &str) -> ManagedIdentity<HttpClient> {
    ManagedIdentity::imds_at(server.imds_authority(), resource, client()).unwrap()
}

fn app_service(server: &MockManagedIdentity, resource: &str) -> ManagedIdentity<HttpClient> {
    ManagedIdentity::app_service(server.identity_endpoint(), HEADER, resource, client()).unwrap()
}

async fn get<C, B>(provider: ManagedIdentity<C, B>) -> Result<Token, ManagedIdentityError>
where
    C: tower_bearer_provider::HttpClient<B>,
    B: tower_bearer_provider::RequestBody,
{
    provider
        .oneshot(TokenRequest::new(RefreshReason::Initial, None))
        .await
}

/// `Display` and `Debug` of an error and of every source under it.
fn describe(error: &(dyn Error + 'static)) -> String {
    let mut text = String::new();
    let mut next = Some(error);
    while let Some(error) = next {
        text.push_str(&format!("{error} / {error:?}\n"));
        next = error.source();
    }
    text
}

// ===== the wire =====

#[tokio::test]
async fn imds_gets_its_query_and_metadata_header_and_string_expiries() {
    let server = server().await;
    let start = Instant::now();
    let token = get(imds(&server, "https://vault.azure.net/.default"))
        .await
        .unwrap();

    let seen = server.last_request().unwrap();
    assert_eq!(seen.endpoint, Endpoint::Imds);
    let query: Vec<(&str, &str)> = seen
        .query
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(query, [("api-version", "2018-02-01"), ("resource", VAULT)]);
    assert_eq!(seen.headers["metadata"], "true");
    assert!(seen.headers.get("x-identity-header").is_none());
    let agent = seen.headers["user-agent"].to_str().unwrap();
    assert!(agent.starts_with("tower-bearer/"), "{agent}");

    let issued = server.issued();
    assert_eq!(issued.len(), 1);
    assert_eq!(token.expose_access_token(), issued[0].access_token);
    assert_eq!(issued[0].client_id, SYSTEM_ASSIGNED_CLIENT_ID);
    // `expires_in: "3600"`, a string, counted from the send.
    let expiry = token.expiry().unwrap();
    assert!(
        expiry >= start + Duration::from_secs(3600)
            && expiry <= Instant::now() + Duration::from_secs(3600),
        "{:?}",
        expiry - start
    );
    assert!(token.expose_refresh_token().is_none());
}

#[tokio::test]
async fn app_service_gets_the_identity_header_and_expires_on() {
    let server = server().await;
    let start = Instant::now();
    let token = get(app_service(&server, VAULT)).await.unwrap();

    let seen = server.last_request().unwrap();
    assert_eq!(seen.endpoint, Endpoint::AppService);
    assert_eq!(
        seen.query,
        [
            ("api-version".to_owned(), "2019-08-01".to_owned()),
            ("resource".to_owned(), VAULT.to_owned())
        ]
    );
    assert_eq!(seen.headers["x-identity-header"], HEADER);
    assert_eq!(token.expose_access_token(), server.issued()[0].access_token);
    // Only `expires_on`, seconds since 1970 as a string: the lifetime is what is left of it,
    // less the part of a second the mock's clock had run.
    let left = token.expiry().unwrap() - start;
    assert!(
        left > Duration::from_secs(3598) && left <= Duration::from_secs(3600),
        "{left:?}"
    );
}

#[tokio::test]
async fn user_assigned_identities_by_each_id_on_each_endpoint() {
    let server = server().await;
    for (endpoint, id, parameter) in [
        (
            Endpoint::Imds,
            UserAssignedId::ClientId(USER_CLIENT_ID.into()),
            "client_id",
        ),
        (
            Endpoint::Imds,
            UserAssignedId::ObjectId(USER_OBJECT_ID.into()),
            "object_id",
        ),
        (
            Endpoint::Imds,
            UserAssignedId::ResourceId(USER_RESOURCE_ID.into()),
            "msi_res_id",
        ),
        (
            Endpoint::AppService,
            UserAssignedId::ObjectId(USER_OBJECT_ID.into()),
            "object_id",
        ),
        (
            Endpoint::AppService,
            UserAssignedId::ResourceId(USER_RESOURCE_ID.into()),
            "mi_res_id",
        ),
    ] {
        let provider = match endpoint {
            Endpoint::Imds => imds(&server, VAULT),
            _ => app_service(&server, VAULT),
        };
        get(provider.user_assigned(id.clone())).await.unwrap();
        let seen = server.last_request().unwrap();
        assert!(
            seen.query.iter().any(|(k, _)| k == parameter),
            "{id:?}: {:?}",
            seen.query
        );
        assert_eq!(server.issued().last().unwrap().client_id, USER_CLIENT_ID);
    }
}

/// The variables decide, through the public constructor: the test process's own environment
/// has none of them, so `from_env` picks IMDS at 169.254.169.254.
#[test]
fn from_env_without_variables_is_imds() {
    for name in [
        "IDENTITY_ENDPOINT",
        "MSI_ENDPOINT",
        "AZURE_FEDERATED_TOKEN_FILE",
        "AZURE_POD_IDENTITY_AUTHORITY_HOST",
    ] {
        if std::env::var_os(name).is_some() {
            eprintln!("skipped: {name} is set in this environment");
            return;
        }
    }
    let provider = ManagedIdentity::from_env(VAULT, client()).unwrap();
    assert_eq!(provider.endpoint(), IdentityEndpoint::Imds);
    assert_eq!(
        provider.url(),
        "http://169.254.169.254/metadata/identity/oauth2/token"
    );
}

// ===== what each failure is =====

#[tokio::test]
async fn an_unknown_identity_or_resource_is_refused_at_once() {
    let server = server().await;
    let error = get(imds(&server, VAULT).user_assigned(UserAssignedId::ClientId("nobody".into())))
        .await
        .unwrap_err();
    let ManagedIdentityError::Refused { answer, hint, url } = &error else {
        panic!("{error:?}");
    };
    assert_eq!(answer.status(), StatusCode::BAD_REQUEST);
    assert_eq!(answer.error(), Some("invalid_request"));
    assert_eq!(answer.description(), Some("Identity not found"));
    assert_eq!(
        hint.delay(),
        None,
        "permanent: the cache backs off to its longest wait"
    );
    assert_eq!(
        url,
        &format!("{}/metadata/identity/oauth2/token", server.imds_authority())
    );
    assert_eq!(
        error.to_string(),
        format!(
            "the managed identity endpoint {url} refused: 400 Bad Request: invalid_request: Identity not found"
        )
    );

    let error = get(imds(&server, "https://unknown.example"))
        .await
        .unwrap_err();
    assert!(matches!(
        &error,
        ManagedIdentityError::Refused { answer, .. } if answer.error() == Some("invalid_resource")
    ));
    // No retry for either.
    assert_eq!(server.counters().imds_requests, 2);
    assert_eq!(server.counters().unknown_identity, 1);
    assert_eq!(server.counters().unknown_resource, 1);
}

#[tokio::test]
async fn a_wrong_identity_header_is_refused_and_never_shown() {
    let server = server().await;
    let wrong = "wrong-header-0123456789";
    let provider =
        ManagedIdentity::app_service(server.identity_endpoint(), wrong, VAULT, client()).unwrap();
    let debug = format!("{provider:?}");
    assert!(!debug.contains(wrong), "{debug}");
    let error = get(provider).await.unwrap_err();
    assert!(matches!(
        &error,
        ManagedIdentityError::Refused { answer, .. } if answer.status() == StatusCode::UNAUTHORIZED
    ));
    let text = describe(&error);
    assert!(!text.contains(wrong) && !text.contains(HEADER), "{text}");
    assert_eq!(server.counters().wrong_identity_header, 1);
    // The header reached the mock marked sensitive: it prints redacted there too.
    let seen = format!("{:?}", server.last_request().unwrap());
    assert!(!seen.contains(wrong), "{seen}");
}

/// 404 and 410 while the identity is provisioned, 429 and 5xx under load: IMDS is asked
/// again, and the token comes in the same call.
#[tokio::test(start_paused = true)]
async fn imds_retries_each_transient_status_within_one_call() {
    for status in [404, 410, 429, 500, 503] {
        let server = server().await;
        server.fail_next(2, Fault::Status(StatusCode::from_u16(status).unwrap()));
        let token = get(imds(&server, VAULT)).await.unwrap();
        assert_eq!(token.expose_access_token(), server.issued()[0].access_token);
        assert_eq!(server.counters().imds_requests, 3, "{status}");
        assert_eq!(server.counters().faults_injected, 2, "{status}");
    }
}

/// Retries per status, until they are spent: six IMDS attempts, four App Service ones; none
/// for what each policy does not retry.
#[tokio::test(start_paused = true)]
async fn retries_counted_per_status_and_endpoint() {
    for (endpoint, status, attempts) in [
        (Endpoint::Imds, 404, 6),
        (Endpoint::Imds, 410, 6),
        (Endpoint::Imds, 429, 6),
        (Endpoint::Imds, 500, 6),
        (Endpoint::Imds, 403, 1),
        (Endpoint::AppService, 500, 4),
        (Endpoint::AppService, 429, 4),
        (Endpoint::AppService, 404, 1),
        (Endpoint::AppService, 410, 1),
    ] {
        let server = server().await;
        let status = StatusCode::from_u16(status).unwrap();
        server.fail_next(100, Fault::Status(status));
        let provider = match endpoint {
            Endpoint::Imds => imds(&server, VAULT),
            _ => app_service(&server, VAULT),
        };
        let error = get(provider).await.unwrap_err();
        let counters = server.counters();
        let sent = counters.imds_requests + counters.app_service_requests;
        assert_eq!(sent, attempts, "{endpoint:?} {status}: {error}");
        match &error {
            ManagedIdentityError::Unavailable {
                answer,
                attempts: made,
                ..
            } => {
                assert_eq!(answer.status(), status);
                assert_eq!(u64::from(*made), attempts);
                assert!(
                    error
                        .to_string()
                        .ends_with(&format!("after {attempts} attempts")),
                    "{error}"
                );
            }
            ManagedIdentityError::Refused { answer, .. } => {
                assert_eq!(answer.status(), status);
                assert_eq!(attempts, 1);
            }
            other => panic!("{endpoint:?} {status}: {other:?}"),
        }
    }
}

/// IMDS answers 410 for up to 70 s: azure-identity's waits (0, 5, 10, 20, 40 s) outlast it,
/// and so do the provider's, within its default timeout.
#[tokio::test(start_paused = true)]
async fn seventy_seconds_of_410_are_waited_out() {
    let server = server().await;
    // Five 410s span 0 + 5 + 10 + 20 = 35 s of waits; the sixth attempt, after 40 s more,
    // comes 75 s in.
    server.fail_next(5, Fault::Status(StatusCode::GONE));
    let start = Instant::now();
    let token = get(imds(&server, VAULT)).await;
    assert!(token.is_ok(), "{token:?}");
    assert_eq!(server.counters().imds_requests, 6);
    assert!(
        start.elapsed() >= Duration::from_secs(70),
        "{:?}",
        start.elapsed()
    );
}

/// A wait that would end past the timeout is not begun: the call ends with the endpoint's
/// answer, not with a timeout that says less.
#[tokio::test(start_paused = true)]
async fn retries_stay_within_the_timeout() {
    let server = server().await;
    server.fail_next(100, Fault::Status(StatusCode::GONE));
    let provider = imds(&server, VAULT).timeout(Duration::from_secs(10));
    let error = get(provider).await.unwrap_err();
    // Waits 0 and 5 s fit in 10 s; the next, 10 s, does not.
    assert!(
        matches!(
            &error,
            ManagedIdentityError::Unavailable { attempts: 3, .. }
        ),
        "{error:?}"
    );
    assert_eq!(server.counters().imds_requests, 3);
}

#[tokio::test(start_paused = true)]
async fn a_retry_after_is_waited_and_handed_to_the_cache() {
    let server = server().await;
    server.fail_next(
        1,
        Fault::RateLimited {
            retry_after: Duration::from_secs(3),
        },
    );
    let start = Instant::now();
    get(imds(&server, VAULT)).await.unwrap();
    assert_eq!(server.counters().imds_requests, 2);
    assert!(start.elapsed() >= Duration::from_secs(3));

    // Still asking to wait on the last attempt: the hint reaches the cache.
    server.fail_next(
        100,
        Fault::RateLimited {
            retry_after: Duration::from_secs(3),
        },
    );
    let error = get(imds(&server, VAULT)).await.unwrap_err();
    let hint = RetryAfter::find(&error).expect("a hint in the chain");
    assert_eq!(hint.delay(), Some(Duration::from_secs(3)));
}

/// No endpoint there: the connection is refused, and asked again three times.
#[tokio::test(start_paused = true)]
async fn a_refused_connection_is_retried_then_a_transport_error() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let counting = Counting::new();
    let provider = ManagedIdentity::imds_at(
        format!("http://127.0.0.1:{port}"),
        VAULT,
        counting.service(),
    )
    .unwrap();
    let error = get(provider).await.unwrap_err();
    assert!(
        matches!(
            &error,
            ManagedIdentityError::NoAnswer {
                error: NoAnswer::Transport { .. },
                attempts: 4
            }
        ),
        "{error:?}"
    );
    assert_eq!(counting.sent(), 4);
    assert!(error.source().is_some());
}

#[tokio::test(start_paused = true)]
async fn a_slow_endpoint_times_out() {
    let server = server().await;
    server.fail_next(1, Fault::Delay(Duration::from_secs(600)));
    let provider = imds(&server, VAULT).timeout(Duration::from_secs(5));
    let error = get(provider).await.unwrap_err();
    assert!(
        matches!(&error, ManagedIdentityError::NoAnswer { error: NoAnswer::Timeout { after, .. }, .. } if *after == Duration::from_secs(5)),
        "{error:?}"
    );
}

/// Neither the identity header nor a token in any error or `Debug`, whatever failed.
#[tokio::test(start_paused = true)]
async fn no_secret_in_errors_or_debug() {
    let server = server().await;
    let token = get(app_service(&server, VAULT)).await.unwrap();
    let access_token = token.expose_access_token().to_owned();
    let mut printed = format!("{token:?} {:?} {server:?}", server.issued());
    for fault in [
        Fault::Status(StatusCode::INTERNAL_SERVER_ERROR),
        Fault::RateLimited {
            retry_after: Duration::from_secs(1),
        },
    ] {
        server.fail_next(100, fault);
        let provider = app_service(&server, VAULT).timeout(Duration::from_secs(3));
        printed.push_str(&format!("{provider:?}"));
        let error = get(provider).await.unwrap_err();
        printed.push_str(&describe(&error));
    }
    assert!(!printed.contains(HEADER), "{printed}");
    assert!(!printed.contains(&access_token), "{printed}");
}

// ===== a cache over the provider =====

#[tokio::test]
async fn a_cache_over_the_provider_serves_every_call_with_one_token() {
    let server = server().await;
    let cache = TokenCache::new(app_service(&server, VAULT));
    let calls: Vec<_> = (0..32)
        .map(|_| {
            let cache = cache.clone();
            tokio::spawn(async move { cache.token().await })
        })
        .collect();
    for call in calls {
        let token = call.await.unwrap().unwrap();
        assert_eq!(token.expose_access_token(), server.issued()[0].access_token);
    }
    assert_eq!(server.counters().tokens_issued, 1);
    assert_eq!(server.counters().app_service_requests, 1);
}

/// While IMDS provisions the identity, every caller waits on the one refresh, and gets the
/// token it ends with.
#[tokio::test(start_paused = true)]
async fn callers_wait_out_provisioning_together() {
    let server = server().await;
    server.fail_next(2, Fault::Status(StatusCode::NOT_FOUND));
    server.fail_next(1, Fault::Status(StatusCode::GONE));
    let cache = TokenCache::new(imds(&server, VAULT));
    let calls: Vec<_> = (0..16)
        .map(|_| {
            let cache = cache.clone();
            tokio::spawn(async move { cache.token().await })
        })
        .collect();
    for call in calls {
        call.await.unwrap().unwrap();
    }
    assert_eq!(server.counters().imds_requests, 4);
    assert_eq!(server.counters().tokens_issued, 1);
}

/// A refused identity reaches the cache's callers as a `TokenError` over the provider's error.
#[tokio::test]
async fn a_refusal_reaches_the_caller_typed() {
    let server = server().await;
    let provider = imds(&server, VAULT).user_assigned(UserAssignedId::ClientId("nobody".into()));
    let cache = TokenCache::new(provider);
    let error = cache.token().await.unwrap_err();
    let boxed: BoxError = Box::new(error);
    let provider_error = TokenError::find(&*boxed)
        .and_then(TokenError::refresher_error)
        .and_then(|source| source.downcast_ref::<ManagedIdentityError>());
    assert!(
        matches!(provider_error, Some(ManagedIdentityError::Refused { .. })),
        "{boxed}"
    );
    assert!(boxed.to_string().contains("Identity not found"), "{boxed}");
}

// ===== the mock, as IMDS and App Service are =====

#[tokio::test]
async fn the_mock_refuses_what_imds_refuses() {
    let server = server().await;
    let client = client();
    let url = format!(
        "{}/metadata/identity/oauth2/token?api-version=2018-02-01&resource={VAULT}",
        server.imds_authority()
    );
    let status = |request: Request<Full<Bytes>>| {
        let client = client.clone();
        async move { client.request(request).await.unwrap().status() }
    };
    let bare = Request::get(&url).body(Full::default()).unwrap();
    assert_eq!(status(bare).await, StatusCode::BAD_REQUEST);
    let forwarded = Request::get(&url)
        .header("Metadata", "true")
        .header("X-Forwarded-For", "203.0.113.7")
        .body(Full::default())
        .unwrap();
    assert_eq!(status(forwarded).await, StatusCode::BAD_REQUEST);
    let no_version = Request::get(url.replace("api-version=2018-02-01&", ""))
        .header("Metadata", "true")
        .body(Full::default())
        .unwrap();
    assert_eq!(status(no_version).await, StatusCode::BAD_REQUEST);
    let counters = server.counters();
    assert_eq!(counters.missing_metadata, 1);
    assert_eq!(counters.forwarded, 1);
    assert_eq!(counters.refused, 3);
    assert_eq!(counters.tokens_issued, 0);
}

#[tokio::test]
async fn the_mocks_token_answers_have_string_expiries() {
    let server = server().await;
    let client = client();
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let read = |request: Request<Full<Bytes>>| {
        let client = client.clone();
        async move {
            let response = client.request(request).await.unwrap();
            assert_eq!(response.status(), StatusCode::OK);
            let body = http_body_util::BodyExt::collect(response.into_body())
                .await
                .unwrap()
                .to_bytes();
            serde_json::from_slice::<serde_json::Value>(&body).unwrap()
        }
    };
    let imds = read(
        Request::get(format!(
            "{}/metadata/identity/oauth2/token?api-version=2018-02-01&resource={VAULT}",
            server.imds_authority()
        ))
        .header("Metadata", "true")
        .body(Full::default())
        .unwrap(),
    )
    .await;
    assert_eq!(imds["expires_in"], "3600");
    assert_eq!(imds["refresh_token"], "");
    let expires_on: u64 = imds["expires_on"].as_str().unwrap().parse().unwrap();
    assert!(
        (now + 3600..=now + 3602).contains(&expires_on),
        "{expires_on}"
    );
    let app = read(
        Request::get(format!(
            "{}?api-version=2019-08-01&resource={VAULT}",
            server.identity_endpoint()
        ))
        .header("X-IDENTITY-HEADER", HEADER)
        .body(Full::default())
        .unwrap(),
    )
    .await;
    assert!(app.get("expires_in").is_none());
    assert!(app["expires_on"].is_string());
    assert_eq!(app["resource"], VAULT);
    assert_eq!(app["token_type"], "Bearer");
}
