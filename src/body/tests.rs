//! The replay body, one promise per test: what the first attempt streams, what the retry
//! replays, and what is never kept.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use http_body_util::{BodyExt, Empty, Full};
use tokio::sync::mpsc;
use tokio_test::{assert_pending, assert_ready};

use super::*;

/// A body whose frames the test sends one by one, so it yields only what has been produced.
struct Channel {
    frames: mpsc::UnboundedReceiver<Result<Frame<Bytes>, &'static str>>,
    hint: SizeHint,
}

type Sender = mpsc::UnboundedSender<Result<Frame<Bytes>, &'static str>>;

fn channel(hint: SizeHint) -> (Sender, Channel) {
    let (tx, frames) = mpsc::unbounded_channel();
    (tx, Channel { frames, hint })
}

impl Body for Channel {
    type Data = Bytes;
    type Error = &'static str;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, &'static str>>> {
        self.frames.poll_recv(cx)
    }

    fn size_hint(&self) -> SizeHint {
        self.hint
    }
}

fn data(s: &'static str) -> Result<Frame<Bytes>, &'static str> {
    Ok(Frame::data(Bytes::from_static(s.as_bytes())))
}

fn trailers() -> HeaderMap {
    let mut trailers = HeaderMap::new();
    trailers.insert("x-checksum", "abc".parse().unwrap());
    trailers
}

/// Polls one frame, which must be ready.
fn next<B: Body<Data = Bytes, Error = BoxError> + Unpin>(
    body: &mut B,
) -> Option<Result<Frame<Bytes>, BoxError>> {
    let waker = std::task::Waker::noop();
    match Pin::new(body).poll_frame(&mut Context::from_waker(waker)) {
        Poll::Ready(frame) => frame,
        Poll::Pending => panic!("the frame was not ready"),
    }
}

fn next_data<B: Body<Data = Bytes, Error = BoxError> + Unpin>(body: &mut B) -> Bytes {
    next(body)
        .expect("a frame")
        .expect("not an error")
        .into_data()
        .expect("a data frame")
}

/// Most frames a body in these tests has: one that goes on past this is broken (a replay that
/// never ends), and fails the test rather than spinning it, every frame being ready at once.
const MOST_FRAMES: usize = 1_000;

async fn collect<B: Body<Data = Bytes, Error = BoxError>>(body: B) -> (Bytes, Option<HeaderMap>) {
    let mut body = std::pin::pin!(body);
    let mut data = Vec::new();
    let mut trailers = None;
    for _ in 0..MOST_FRAMES {
        let Some(frame) = body.frame().await else {
            return (Bytes::from(data), trailers);
        };
        match frame.expect("no error").into_data() {
            Ok(chunk) => data.extend_from_slice(&chunk),
            Err(frame) => trailers = frame.into_trailers().ok(),
        }
    }
    panic!("the body never ended: more than {MOST_FRAMES} frames");
}

fn replayed<B>(replay: Option<Replay<B>>) -> ReplayBody<B> {
    replay
        .expect("replayable when recorded")
        .into_body()
        .expect("still replayable")
}

#[tokio::test]
async fn an_empty_body_replays_for_free() {
    let (first, replay) = ReplayBody::recorded(Empty::<Bytes>::new(), 64);
    assert!(matches!(replay, Some(Replay::Empty)));
    assert!(matches!(first.kind, Kind::Direct { .. }));
    assert!(first.is_end_stream());
    assert_eq!(collect(first).await.0, "");

    let retry = replayed(replay);
    assert!(retry.is_end_stream());
    assert_eq!(retry.size_hint().exact(), Some(0));
    assert_eq!(collect(retry).await.0, "");
}

#[tokio::test]
async fn a_full_body_replays_byte_for_byte() {
    let (first, replay) =
        ReplayBody::recorded(Full::new(Bytes::from_static(b"{\"title\":\"x\"}")), 64);
    assert_eq!(collect(first).await.0, "{\"title\":\"x\"}");
    let retry = replayed(replay);
    assert_eq!(retry.size_hint().exact(), Some(13));
    assert_eq!(collect(retry).await.0, "{\"title\":\"x\"}");
}

#[tokio::test]
async fn the_first_attempt_streams_chunks_as_the_caller_produces_them() {
    let (tx, body) = channel(SizeHint::new());
    let (first, _replay) = ReplayBody::recorded(body, 64);
    let mut first = tokio_test::task::spawn(first);

    assert_pending!(first.enter(|cx, body| body.poll_frame(cx)));
    tx.send(data("one")).unwrap();
    assert!(first.is_woken());
    let frame = assert_ready!(first.enter(|cx, body| body.poll_frame(cx)));
    assert_eq!(frame.unwrap().unwrap().into_data().unwrap(), "one");
    // The second chunk does not exist yet: nothing waits to collect the body.
    assert_pending!(first.enter(|cx, body| body.poll_frame(cx)));
    tx.send(data("two")).unwrap();
    let frame = assert_ready!(first.enter(|cx, body| body.poll_frame(cx)));
    assert_eq!(frame.unwrap().unwrap().into_data().unwrap(), "two");
}

#[tokio::test]
async fn a_replay_after_a_partial_read_sends_the_copies_then_the_rest() {
    let (tx, body) = channel(SizeHint::new());
    let (mut first, replay) = ReplayBody::recorded(body, 64);
    tx.send(data("a")).unwrap();
    tx.send(data("b")).unwrap();
    assert_eq!(next_data(&mut first), "a");
    assert_eq!(next_data(&mut first), "b");
    // The server answered before reading the rest.
    tx.send(data("c")).unwrap();
    tx.send(data("d")).unwrap();
    drop(tx);

    let retry = replayed(replay);
    assert_eq!(collect(retry).await.0, "abcd");
}

#[tokio::test]
async fn a_replay_before_the_first_attempt_read_anything_streams_the_whole_body() {
    let (tx, body) = channel(SizeHint::new());
    let (_first, replay) = ReplayBody::recorded(body, 64);
    tx.send(data("all")).unwrap();
    drop(tx);
    assert_eq!(collect(replayed(replay)).await.0, "all");
}

#[tokio::test]
async fn trailers_are_replayed() {
    let (tx, body) = channel(SizeHint::new());
    let (first, replay) = ReplayBody::recorded(body, 64);
    tx.send(data("x")).unwrap();
    tx.send(Ok(Frame::trailers(trailers()))).unwrap();
    drop(tx);
    assert_eq!(collect(first).await, (Bytes::from("x"), Some(trailers())));

    let retry = replayed(replay);
    assert!(!retry.is_end_stream());
    assert_eq!(collect(retry).await, (Bytes::from("x"), Some(trailers())));
}

#[tokio::test]
async fn trailers_the_first_attempt_never_reached_come_from_the_caller() {
    let (tx, body) = channel(SizeHint::new());
    let (mut first, replay) = ReplayBody::recorded(body, 64);
    tx.send(data("x")).unwrap();
    assert_eq!(next_data(&mut first), "x");
    tx.send(Ok(Frame::trailers(trailers()))).unwrap();
    drop(tx);
    assert_eq!(
        collect(replayed(replay)).await,
        (Bytes::from("x"), Some(trailers()))
    );
}

#[test]
fn a_body_over_the_limit_by_its_size_hint_is_not_recorded() {
    let (first, replay) = ReplayBody::recorded(Full::new(Bytes::from_static(b"12345")), 4);
    assert!(replay.is_none());
    assert!(matches!(first.kind, Kind::Direct { .. }));
}

#[tokio::test]
async fn a_body_exactly_at_the_limit_is_replayable() {
    let (first, replay) = ReplayBody::recorded(Full::new(Bytes::from_static(b"1234")), 4);
    assert_eq!(collect(first).await.0, "1234");
    assert_eq!(collect(replayed(replay)).await.0, "1234");
}

#[tokio::test]
async fn a_body_streaming_past_the_limit_stops_being_copied_and_cannot_be_replayed() {
    let (tx, body) = channel(SizeHint::new());
    let (mut first, replay) = ReplayBody::recorded(body, 4);
    let replay = replay.unwrap();
    tx.send(data("123")).unwrap();
    tx.send(data("45")).unwrap();
    assert_eq!(next_data(&mut first), "123");
    assert_eq!(next_data(&mut first), "45");
    let Replay::Recorded(shared) = &replay else {
        panic!("recorded")
    };
    {
        let recording = crate::sync::lock(shared);
        assert!(recording.discarded);
        assert!(recording.chunks.is_empty(), "nothing kept past the limit");
    }
    // The first attempt carries on streaming, unaffected.
    tx.send(data("678")).unwrap();
    drop(tx);
    assert_eq!(collect(first).await.0, "678");
    assert!(replay.into_body().is_none());
}

#[tokio::test]
async fn a_body_whose_first_chunk_is_past_the_limit_cannot_be_replayed() {
    // No size hint to tell beforehand: the first chunk alone is too large to keep.
    let (tx, body) = channel(SizeHint::new());
    let (mut first, replay) = ReplayBody::recorded(body, 4);
    tx.send(data("12345")).unwrap();
    drop(tx);
    assert_eq!(next_data(&mut first), "12345");
    assert!(next(&mut first).is_none());
    assert!(replay.unwrap().into_body().is_none());
}

#[tokio::test]
async fn a_failing_body_is_not_replayed_and_its_error_passes_through() {
    let (tx, body) = channel(SizeHint::new());
    let (mut first, replay) = ReplayBody::recorded(body, 64);
    tx.send(data("a")).unwrap();
    tx.send(Err("disk on fire")).unwrap();
    assert_eq!(next_data(&mut first), "a");
    let err = next(&mut first).unwrap().unwrap_err();
    assert_eq!(err.to_string(), "disk on fire");
    assert!(replay.unwrap().into_body().is_none());
}

#[tokio::test]
async fn the_first_attempt_fails_if_polled_after_the_retry_took_the_body() {
    let (tx, body) = channel(SizeHint::new());
    let (mut first, replay) = ReplayBody::recorded(body, 64);
    tx.send(data("a")).unwrap();
    let mut retry = replayed(replay);
    assert!(next(&mut first).unwrap().is_err());
    assert_eq!(next_data(&mut retry), "a");
}

#[tokio::test]
async fn once_no_retry_can_happen_the_copies_are_dropped() {
    let (tx, body) = channel(SizeHint::new());
    let (mut first, replay) = ReplayBody::recorded(body, 64);
    tx.send(data("a")).unwrap();
    assert_eq!(next_data(&mut first), "a");
    let Some(Replay::Recorded(shared)) = &replay else {
        panic!("recorded")
    };
    let shared = Arc::downgrade(shared);
    drop(replay);
    tx.send(data("b")).unwrap();
    assert_eq!(next_data(&mut first), "b");
    let shared = shared.upgrade().unwrap();
    assert!(crate::sync::lock(&shared).chunks.is_empty());
}

#[tokio::test]
async fn the_replay_reports_the_size_of_the_whole_body() {
    // hyper frames a request by its body's exact size: the retry must announce the same.
    let (first, replay) = ReplayBody::recorded(Full::new(Bytes::from_static(b"abcdef")), 64);
    assert_eq!(first.size_hint().exact(), Some(6));
    assert_eq!(collect(first).await.0, "abcdef");
    assert_eq!(replayed(replay).size_hint().exact(), Some(6));
}

/// A body of chunks all ready at once, whose size hint is exactly what is left of it.
struct Chunked(std::collections::VecDeque<Bytes>);

impl Body for Chunked {
    type Data = Bytes;
    type Error = &'static str;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, &'static str>>> {
        Poll::Ready(self.0.pop_front().map(|chunk| Ok(Frame::data(chunk))))
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.0.iter().map(|chunk| chunk.len() as u64).sum())
    }
}

#[tokio::test]
async fn a_replay_after_a_partial_read_reports_the_size_of_the_whole_body() {
    // What was copied, and what the caller's body has left.
    let body = Chunked([b"abc".as_slice(), b"defg"].map(Bytes::from_static).into());
    let (mut first, replay) = ReplayBody::recorded(body, 64);
    assert_eq!(next_data(&mut first), "abc");
    let retry = replayed(replay);
    assert_eq!(retry.size_hint().exact(), Some(7));
    assert_eq!(collect(retry).await.0, "abcdefg");
}

#[tokio::test]
async fn a_direct_body_passes_any_buf_through_as_bytes() {
    let body = ReplayBody::new(Full::new(&b"plain"[..]));
    assert_eq!(body.size_hint().exact(), Some(5));
    assert_eq!(collect(body).await.0, "plain");
}

#[tokio::test]
async fn is_end_stream_follows_the_recording_and_the_replay() {
    let (tx, body) = channel(SizeHint::new());
    let (mut first, replay) = ReplayBody::recorded(body, 64);
    assert!(!first.is_end_stream());
    tx.send(data("a")).unwrap();
    drop(tx);
    assert_eq!(next_data(&mut first), "a");
    assert!(next(&mut first).is_none());
    assert!(first.is_end_stream());

    let mut retry = replayed(replay);
    assert!(!retry.is_end_stream());
    assert_eq!(next_data(&mut retry), "a");
    assert!(retry.is_end_stream());
    assert!(next(&mut retry).is_none());
}

#[test]
fn debug_names_the_kind_and_nothing_else() {
    let (first, _) = ReplayBody::recorded(Full::new(Bytes::from_static(b"secret")), 64);
    let debug = format!("{first:?}");
    assert!(debug.contains("recording"), "{debug}");
    assert!(!debug.contains("secret"));
}

#[test]
fn recorded_chunks_come_back_in_order_and_sized_whether_one_or_many() {
    let mut chunks = Chunks::default();
    assert!(chunks.is_empty());
    chunks.push_back(Bytes::from_static(b"a"));
    assert_eq!((chunks.is_empty(), chunks.len()), (false, 1));
    assert_eq!(chunks.pop_front().unwrap(), "a");
    assert!(chunks.is_empty());

    for chunk in ["bb", "c", "ddd"] {
        chunks.push_back(Bytes::from_static(chunk.as_bytes()));
    }
    assert_eq!(chunks.len(), 6);
    assert_eq!(chunks.pop_front().unwrap(), "bb");
    // A chunk that arrives once the first has gone still goes after the others.
    chunks.push_back(Bytes::from_static(b"e"));
    assert_eq!(chunks.len(), 5);
    let rest: Vec<Bytes> = std::iter::from_fn(|| chunks.pop_front()).collect();
    assert_eq!(rest, ["c", "ddd", "e"]);
    assert_eq!((chunks.is_empty(), chunks.len()), (true, 0));
}
