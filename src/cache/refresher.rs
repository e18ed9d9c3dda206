//! The refresher, with its type erased.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use tower::{BoxError, Service};

use crate::{Token, TokenRequest};

/// A service that can feed a [`TokenCache`](crate::TokenCache): from [`TokenRequest`] to
/// [`Token`], sendable, with any error that converts into a [`BoxError`].
///
/// Implemented for every such service, so it is never implemented by hand: it only names
/// the bounds that [`TokenCache::new`](crate::TokenCache::new),
/// [`TokenCache::builder`](crate::TokenCache::builder) and
/// [`BearerAuthLayer::new`](crate::BearerAuthLayer::new) ask of a refresher, once.
pub trait Refresher:
    Service<TokenRequest, Response = Token, Error: Into<BoxError>, Future: Send + 'static>
    + Send
    + 'static
{
}

impl<R> Refresher for R where
    R: Service<TokenRequest, Response = Token, Error: Into<BoxError>, Future: Send + 'static>
        + Send
        + 'static
{
}

/// A refresher's call, boxed.
pub(crate) type RefreshFuture = Pin<Box<dyn Future<Output = Result<Token, BoxError>> + Send>>;

/// A refresher the cache can hold without naming its type.
pub(super) trait Refresh: Send + Sync + 'static {
    fn refresh(&self, request: TokenRequest) -> RefreshFuture;
}

pub(super) fn boxed(refresher: impl Refresher) -> Box<dyn Refresh> {
    Box::new(Arc::new(tokio::sync::Mutex::new(refresher)))
}

impl<R: Refresher> Refresh for Arc<tokio::sync::Mutex<R>> {
    fn refresh(&self, request: TokenRequest) -> RefreshFuture {
        let refresher = self.clone();
        Box::pin(async move {
            // Never contended: there is one refresh at a time. It is a lock only so that
            // the one refresher instance can be driven ready across an await.
            let mut refresher = refresher.lock_owned().await;
            std::future::poll_fn(|cx| refresher.poll_ready(cx))
                .await
                .map_err(Into::into)?;
            let call = refresher.call(request);
            drop(refresher);
            call.await.map_err(Into::into)
        })
    }
}
