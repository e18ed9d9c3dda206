//! What the providers' unit tests share: HTTP clients that answer at once, or never get ready.

use std::error::Error;
use std::future::{Pending, Ready};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use tower::{BoxError, Service, service_fn};
use tower_bearer_provider::NoAnswer;

/// A client whose every answer is an empty 200.
pub(crate) type Client = tower::util::ServiceFn<
    fn(Request<Full<Bytes>>) -> Ready<Result<Response<Full<Bytes>>, BoxError>>,
>;

pub(crate) fn client() -> Client {
    service_fn(|_| std::future::ready(Ok(Response::new(Full::default()))))
}

/// A client that fails while getting ready, as one whose connection pool is closed does.
#[derive(Clone)]
pub(crate) struct NotReady;

impl Service<Request<Full<Bytes>>> for NotReady {
    type Response = Response<Full<Bytes>>;
    type Error = BoxError;
    type Future = Pending<Result<Self::Response, BoxError>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Err("the connection pool is closed".into()))
    }

    fn call(&mut self, _: Request<Full<Bytes>>) -> Self::Future {
        unreachable!("never ready")
    }
}

/// `error`'s source, if it is an `S`.
pub(crate) fn source_as<S: Error + 'static>(error: &dyn Error) -> Option<&S> {
    error.source()?.downcast_ref()
}

/// The causes a provider's error chains: what is wrong with a malformed answer (an `M` that
/// `is_reason` accepts), and under [`NoAnswer`] the client's own error.
pub(crate) fn assert_causes<E, M>(malformed: E, is_reason: fn(&M) -> bool)
where
    E: Error + From<NoAnswer> + 'static,
    M: Error + 'static,
{
    let reason = source_as::<M>(&malformed);
    assert!(reason.is_some_and(is_reason), "{malformed:?}");
    let unanswered = E::from(NoAnswer::transport("refused", "http://endpoint/token"));
    let cause = unanswered.source().map(ToString::to_string);
    assert_eq!(cause.as_deref(), Some("refused"), "{unanswered:?}");
}
