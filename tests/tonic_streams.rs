//! Streaming calls through `GrpcAuthLayer`, against the tonic server of `common/grpc.rs`: a
//! refusal before the response begins (trailers-only) is retried when the request could be
//! kept; one in the trailers, after the response began, is not, but replaces the token.

#[path = "common/grpc.rs"]
mod grpc;

use bytes::Bytes;
use tokio_stream::StreamExt;
use tonic::Code;
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tower::ServiceBuilder;
use tower_bearer::tonic::{GrpcAuth, GrpcAuthLayer};
use tower_bearer::{BearerAuthLayer, Scope};

use grpc::{Call, EchoClient, GrpcServer};

fn call(method: &str, token: u64, refused: bool) -> Call {
    Call {
        method: method.to_owned(),
        token: Some(format!("Bearer grpc-token-{token}")),
        refused,
    }
}

/// A `test.Echo` client through `layer`.
async fn echo_client(server: &GrpcServer, layer: GrpcAuthLayer) -> EchoClient<GrpcAuth<Channel>> {
    EchoClient::new(
        ServiceBuilder::new()
            .layer(layer)
            .service(server.channel().await),
    )
}

/// 16 messages of 1 KiB.
fn kibibytes() -> Vec<Bytes> {
    (0..16u8).map(|i| Bytes::from(vec![i; 1024])).collect()
}

/// A server stream refused before it began is sent again, and streams with the new token.
#[tokio::test]
async fn a_server_stream_refused_in_the_headers_is_sent_again() {
    let server = GrpcServer::start().await;
    let mut client = echo_client(
        &server,
        GrpcAuthLayer::from_cache(server.cache(), Scope::origin(server.uri()).unwrap()),
    )
    .await;
    client.unary(Bytes::from_static(b"warm")).await.unwrap();
    server.authority.revoke_all();

    let mut stream = client.count(3).await.unwrap();
    let mut received = Vec::new();
    while let Some(message) = stream.next().await {
        received.push(message.unwrap());
    }

    assert_eq!(received, [&[0u8][..], &[1], &[2]]);
    assert_eq!(
        server.authority.calls_of("Count"),
        [call("Count", 1, true), call("Count", 2, false)]
    );
    assert_eq!(server.authority.issued(), 2);
}

/// The same through tonic-health's generated client: `Watch` is a server stream.
#[tokio::test]
async fn a_generated_watch_refused_in_the_headers_is_sent_again() {
    let server = GrpcServer::start().await;
    let layer = GrpcAuthLayer::from_cache(server.cache(), Scope::origin(server.uri()).unwrap());
    let channel = server.channel().await;
    let mut client = HealthClient::new(ServiceBuilder::new().layer(layer).service(channel));
    let request = || HealthCheckRequest {
        service: String::new(),
    };
    client.check(request()).await.unwrap();
    server.authority.revoke_all();

    let mut watch = client.watch(request()).await.unwrap().into_inner();
    let first = watch.next().await.unwrap().unwrap();

    assert_eq!(first.status(), ServingStatus::Serving);
    assert_eq!(
        server.authority.calls_of("Watch"),
        [call("Watch", 1, true), call("Watch", 2, false)]
    );
}

/// A client stream within the replay limit is kept as it goes, and sent again whole.
#[tokio::test]
async fn a_client_stream_within_the_replay_limit_is_sent_again() {
    let server = GrpcServer::start().await;
    let mut client = echo_client(
        &server,
        GrpcAuthLayer::from_cache(server.cache(), Scope::origin(server.uri()).unwrap()),
    )
    .await;
    client.unary(Bytes::from_static(b"warm")).await.unwrap();
    server.authority.revoke_all();

    // The server reads the whole stream before it refuses the token: the retry sends what
    // the first attempt kept.
    let received = client.sum(kibibytes()).await.unwrap();

    assert_eq!(received, 16 * 1024);
    assert_eq!(
        server.authority.calls_of("Sum"),
        [call("Sum", 1, true), call("Sum", 2, false)]
    );
}

/// A client stream past the replay limit was not kept: its refusal goes back to the caller,
/// and the token is replaced all the same, so the next call goes through first time.
#[tokio::test]
async fn a_client_stream_past_the_replay_limit_is_not_sent_again_but_its_token_is_replaced() {
    let server = GrpcServer::start().await;
    let cache = server.cache();
    let layer = GrpcAuthLayer::from(
        BearerAuthLayer::from_cache(cache.clone(), Scope::origin(server.uri()).unwrap())
            .replay_limit(4096),
    );
    let mut client = echo_client(&server, layer).await;
    client.unary(Bytes::from_static(b"warm")).await.unwrap();
    server.authority.revoke_all();

    let refused = client.sum(kibibytes()).await.unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated);
    assert_eq!(server.authority.calls_of("Sum"), [call("Sum", 1, true)]);

    client.unary(Bytes::from_static(b"next")).await.unwrap();
    assert_eq!(
        server.authority.calls_of("Unary"),
        [call("Unary", 1, false), call("Unary", 2, false)],
        "the next call has a new token first time"
    );
    let stats = cache.stats();
    assert_eq!((stats.unauthorized, stats.retried), (1, 0));
}

/// UNAUTHENTICATED before the response (trailers-only) costs a retry; UNAUTHENTICATED in the
/// trailers, once the response had begun, is the caller's to see, and the cache learns from
/// it: the next call gets a new token without being refused first.
#[tokio::test]
async fn unauthenticated_in_the_trailers_is_not_retried_but_replaces_the_token() {
    let server = GrpcServer::start().await;
    let cache = server.cache();
    let mut client = echo_client(
        &server,
        GrpcAuthLayer::from_cache(cache.clone(), Scope::origin(server.uri()).unwrap()),
    )
    .await;

    // Trailers-only: refused, then sent again.
    client.unary(Bytes::from_static(b"warm")).await.unwrap();
    server.authority.revoke_all();
    client.unary(Bytes::from_static(b"retried")).await.unwrap();
    assert_eq!(
        server.authority.calls_of("Unary"),
        [
            call("Unary", 1, false),
            call("Unary", 1, true),
            call("Unary", 2, false)
        ]
    );

    // In the trailers: the first message arrives, then the server revokes token 2 and ends
    // the stream UNAUTHENTICATED.
    let mut stream = client.cut().await.unwrap();
    assert_eq!(stream.next().await.unwrap().unwrap(), "first");
    let status = stream.next().await.unwrap().unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    assert!(stream.next().await.is_none());
    assert_eq!(
        server.authority.calls_of("Cut"),
        [call("Cut", 2, false)],
        "not sent again"
    );

    client.unary(Bytes::from_static(b"next")).await.unwrap();
    assert_eq!(
        server.authority.calls_of("Unary")[3..],
        [call("Unary", 3, false)],
        "the call after the trailers had a new token first time"
    );
    assert_eq!(server.authority.issued(), 3);
    let stats = cache.stats();
    assert_eq!((stats.unauthorized, stats.retried), (2, 1));
}
