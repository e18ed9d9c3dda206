//! tonic clients through `GrpcAuthLayer`, against a tonic server on loopback that requires
//! tokens and revokes them (see `common/grpc.rs`): unary calls, many at once, and the
//! refusals that must not replace a token.

#[path = "common/grpc.rs"]
mod grpc;

use bytes::Bytes;
use tokio::task::JoinSet;
use tonic::Code;
use tonic::metadata::MetadataValue;
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tower::ServiceBuilder;
use tower_bearer::tonic::{GrpcAuth, GrpcAuthLayer};
use tower_bearer::{Scope, TokenCache};

use grpc::{Call, EchoClient, GrpcServer};

/// Long enough for loopback, short enough that a hang fails the test.
const BOUND: std::time::Duration = std::time::Duration::from_secs(10);

fn call(method: &str, token: u64, refused: bool) -> Call {
    Call {
        method: method.to_owned(),
        token: Some(format!("Bearer grpc-token-{token}")),
        refused,
    }
}

/// A `test.Echo` client through the layer, and the layer's cache.
async fn echo_client(server: &GrpcServer) -> (EchoClient<GrpcAuth<Channel>>, TokenCache) {
    let layer = GrpcAuthLayer::from_cache(server.cache(), Scope::origin(server.uri()).unwrap());
    let cache = layer.cache().clone();
    let channel = server.channel().await;
    (
        EchoClient::new(ServiceBuilder::new().layer(layer).service(channel)),
        cache,
    )
}

/// The one line: a generated client over the layer over a `Channel`. A revoked token
/// costs one retry, with a new token.
#[tokio::test]
async fn a_generated_client_recovers_from_a_revoked_token_by_one_retry() {
    let server = GrpcServer::start().await;
    let channel = server.channel().await;
    let cache = server.cache();
    let mut client = HealthClient::new(
        ServiceBuilder::new()
            .layer(GrpcAuthLayer::from_cache(
                cache.clone(),
                Scope::origin(server.uri()).unwrap(),
            ))
            .service(channel),
    );
    let check = || HealthCheckRequest {
        service: String::new(),
    };

    let first = client.check(check()).await.unwrap().into_inner();
    assert_eq!(first.status(), ServingStatus::Serving);
    server.authority.revoke_all();
    let second = client.check(check()).await.unwrap().into_inner();
    assert_eq!(second.status(), ServingStatus::Serving);

    assert_eq!(
        server.authority.calls(),
        [
            call("Check", 1, false),
            call("Check", 1, true),
            call("Check", 2, false)
        ]
    );
    assert_eq!(server.authority.issued(), 2);
    let stats = cache.stats();
    assert_eq!((stats.unauthorized, stats.retried), (1, 1));
}

/// 100 calls refused together with the same token: one refresh, and each call sent again
/// once, with the new token.
#[tokio::test]
async fn a_hundred_concurrent_refusals_cause_one_refresh() {
    const CALLS: usize = 100;
    let server = GrpcServer::start().await;
    let (client, cache) = echo_client(&server).await;
    client
        .clone()
        .unary(Bytes::from_static(b"warm"))
        .await
        .unwrap();
    server.authority.revoke_all();
    // Every call reaches the server with the revoked token before any refusal comes back.
    server.authority.hold_refusals(CALLS);

    let mut calls = JoinSet::new();
    for i in 0..CALLS {
        let mut client = client.clone();
        calls.spawn(async move {
            let message = Bytes::from(format!("call {i}"));
            let echoed = client.unary(message.clone()).await;
            (message, echoed)
        });
    }
    while let Some(joined) = calls.join_next().await {
        let (message, echoed) = joined.unwrap();
        assert_eq!(echoed.unwrap(), message);
    }

    assert_eq!(
        server.authority.issued(),
        2,
        "one refresh for all the refusals"
    );
    let calls = server.authority.calls_of("Unary");
    let refused = calls
        .iter()
        .filter(|c| **c == call("Unary", 1, true))
        .count();
    let retried = calls
        .iter()
        .filter(|c| **c == call("Unary", 2, false))
        .count();
    assert_eq!(
        (calls.len(), refused, retried),
        (1 + 2 * CALLS, CALLS, CALLS)
    );
    let stats = cache.stats();
    assert_eq!(
        (stats.unauthorized, stats.retried),
        (CALLS as u64, CALLS as u64)
    );
}

/// PERMISSION_DENIED is about the caller, not its token: the answer goes back, the token stays.
#[tokio::test]
async fn permission_denied_is_not_retried_and_keeps_the_token() {
    let server = GrpcServer::start().await;
    let (mut client, _) = echo_client(&server).await;

    let denied = client.denied().await.unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    client
        .unary(Bytes::from_static(b"still good"))
        .await
        .unwrap();

    assert_eq!(
        server.authority.calls_of("Denied").len(),
        1,
        "not sent again"
    );
    assert_eq!(server.authority.issued(), 1, "the token was not replaced");
    assert_eq!(
        server.authority.calls_of("Unary"),
        [call("Unary", 1, false)]
    );
}

/// A 401 whose challenge says `insufficient_scope` (a proxy in front of the server, say):
/// tonic reports UNAUTHENTICATED, but a new token of the same scope would not help.
#[tokio::test]
async fn insufficient_scope_is_not_retried_and_keeps_the_token() {
    let server = GrpcServer::start().await;
    let (mut client, cache) = echo_client(&server).await;

    let refused = client.scope().await.unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated);
    client
        .unary(Bytes::from_static(b"still good"))
        .await
        .unwrap();

    assert_eq!(
        server.authority.calls_of("Scope").len(),
        1,
        "not sent again"
    );
    assert_eq!(server.authority.issued(), 1, "the token was not replaced");
    assert_eq!(cache.stats().unauthorized, 0);
}

/// A call that carries its own `authorization` goes as it came: no token from the cache, no
/// retry, and its refusal is not blamed on the cache's token.
#[tokio::test]
async fn a_call_with_its_own_token_is_left_alone() {
    let server = GrpcServer::start().await;
    let channel = server.channel().await;
    let layer = GrpcAuthLayer::from_cache(server.cache(), Scope::origin(server.uri()).unwrap());
    let mut client = HealthClient::new(ServiceBuilder::new().layer(layer).service(channel));

    let mut request = tonic::Request::new(HealthCheckRequest {
        service: String::new(),
    });
    let theirs = MetadataValue::from_static("Bearer their-own");
    request.metadata_mut().insert("authorization", theirs);
    let refused = client.check(request).await.unwrap_err();

    assert_eq!(refused.code(), Code::Unauthenticated);
    assert_eq!(
        server.authority.calls(),
        [Call {
            method: "Check".to_owned(),
            token: Some("Bearer their-own".to_owned()),
            refused: true,
        }]
    );
    assert_eq!(server.authority.issued(), 0, "the cache was never asked");
}

/// The silent no-op: a generated client built the natural way,
/// `HealthClient::new(channel)`, sends path-only URIs, which no origin matches. The layer,
/// built with the channel's origin, takes them as that origin's: the call carries the token.
#[tokio::test]
async fn a_client_built_the_natural_way_gets_the_token() {
    let server = GrpcServer::start().await;
    let layer = GrpcAuthLayer::from_cache(server.cache(), Scope::origin(server.uri()).unwrap());
    let cache = layer.cache().clone();
    let channel = server.channel().await;
    let mut client = HealthClient::new(ServiceBuilder::new().layer(layer).service(channel));

    let check = client.check(HealthCheckRequest {
        service: String::new(),
    });
    let reply = tokio::time::timeout(BOUND, check).await.unwrap().unwrap();

    assert_eq!(reply.into_inner().status(), ServingStatus::Serving);
    assert_eq!(server.authority.calls(), [call("Check", 1, false)]);
    let stats = cache.stats();
    assert_eq!((stats.total().succeeded, stats.out_of_scope), (1, 0));
}

/// An absolute URI must match the channel's origin: a client built `with_origin` for another
/// one gets no token (the channel still sends the call to its own server), and the cache
/// counts it.
#[tokio::test]
async fn a_client_naming_another_origin_gets_no_token_and_is_counted() {
    let server = GrpcServer::start().await;
    let layer = GrpcAuthLayer::from_cache(server.cache(), Scope::origin(server.uri()).unwrap());
    let cache = layer.cache().clone();
    let channel = server.channel().await;
    let elsewhere = "http://elsewhere.test:50051".parse().unwrap();
    let mut client = HealthClient::with_origin(
        ServiceBuilder::new().layer(layer).service(channel),
        elsewhere,
    );

    let check = client.check(HealthCheckRequest {
        service: String::new(),
    });
    let refused = tokio::time::timeout(BOUND, check)
        .await
        .unwrap()
        .unwrap_err();

    assert_eq!(refused.code(), Code::Unauthenticated);
    assert_eq!(
        server.authority.calls(),
        [Call {
            method: "Check".to_owned(),
            token: None,
            refused: true,
        }]
    );
    let stats = cache.stats();
    assert_eq!((stats.total().started, stats.out_of_scope), (0, 1));
}
