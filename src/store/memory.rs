//! The in-process store: a reference implementation, and a shared token for caches in one
//! process.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;

use super::{
    Notifications, Notifier, Publish, SharedFailure, SharedToken, StoreError, StoreFuture,
    TokenStore,
};
use crate::Token;

/// A [`TokenStore`] in this process's memory.
///
/// Clones share one token and one lease. Caches in one process can share it; for replicas in
/// several processes, use a store they can all reach (with the `redis` feature, `RedisStore`).
/// Its lease runs on tokio's clock, so tests can drive it with a paused clock.
///
/// See the [module documentation](super) for an example.
#[derive(Clone, Default)]
pub struct MemoryStore {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    state: Mutex<Shared>,
    notifier: Notifier,
    unavailable: AtomicBool,
}

/// The shared token and the lease, as the store holds them.
#[derive(Default)]
struct Shared {
    token: Option<SharedToken>,
    lease: Option<(String, Instant)>,
    /// The published failure, and when the store forgets it.
    failure: Option<(SharedFailure, Instant)>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        MemoryStore::default()
    }

    /// Makes every call fail, as an unreachable store would (`true`), or work again (`false`).
    ///
    /// A testing aid, for tests of what a cache does when its store is down.
    pub fn set_unavailable(&self, unavailable: bool) {
        self.inner.unavailable.store(unavailable, Ordering::Relaxed);
    }

    /// The current generation: how many tokens have been published.
    ///
    /// For tests and diagnostics: caches read the store through [`TokenStore`].
    pub fn generation(&self) -> u64 {
        self.state().generation()
    }

    /// The owner of the lease, if one is held and has not run out.
    ///
    /// For tests and diagnostics: caches read the store through [`TokenStore`].
    pub fn lease_holder(&self) -> Option<String> {
        self.state().lease_holder()
    }

    fn state(&self) -> MutexGuard<'_, Shared> {
        crate::sync::lock(&self.inner.state)
    }

    fn run<T: Send + 'static>(&self, f: impl FnOnce(&mut Shared) -> T) -> StoreFuture<'static, T> {
        let result = if self.inner.unavailable.load(Ordering::Relaxed) {
            Err(StoreError::msg("memory store set unavailable"))
        } else {
            Ok(f(&mut self.state()))
        };
        Box::pin(std::future::ready(result))
    }
}

impl TokenStore for MemoryStore {
    fn load(&self) -> StoreFuture<'_, Option<SharedToken>> {
        self.run(|state| state.token.clone())
    }

    fn try_lease<'a>(&'a self, owner: &'a str, ttl: Duration) -> StoreFuture<'a, bool> {
        self.run(|state| {
            let now = Instant::now();
            if state.lease.as_ref().is_some_and(|(_, until)| now < *until) {
                return false;
            }
            state.lease = Some((owner.to_owned(), now + ttl));
            true
        })
    }

    fn renew<'a>(&'a self, owner: &'a str, ttl: Duration) -> StoreFuture<'a, bool> {
        self.run(|state| {
            let now = Instant::now();
            match &mut state.lease {
                Some((holder, until)) if holder == owner && now < *until => {
                    *until = now + ttl;
                    true
                }
                _ => false,
            }
        })
    }

    fn release<'a>(&'a self, owner: &'a str) -> StoreFuture<'a, ()> {
        self.run(|state| {
            if state
                .lease
                .as_ref()
                .is_some_and(|(holder, _)| holder == owner)
            {
                state.lease = None;
            }
        })
    }

    fn publish<'a>(&'a self, replaces: u64, token: &'a Token) -> StoreFuture<'a, Publish> {
        let token = token.clone();
        let notifier = self.inner.notifier.clone();
        self.run(move |state| {
            let current = state.token.as_ref().map_or(0, |t| t.generation);
            if current != replaces {
                return Publish::Refused { current };
            }
            let generation = current + 1;
            state.token = Some(SharedToken {
                token,
                generation,
                obtained: Instant::now(),
            });
            notifier.notify();
            Publish::Published { generation }
        })
    }

    fn load_failure(&self) -> StoreFuture<'_, Option<SharedFailure>> {
        self.run(|state| {
            let now = Instant::now();
            state.failure.take_if(|(_, ends)| *ends <= now);
            state.failure.as_ref().map(|(failure, _)| failure.clone())
        })
    }

    fn publish_failure<'a>(
        &'a self,
        failure: &'a SharedFailure,
        keep: Duration,
    ) -> StoreFuture<'a, bool> {
        let failure = failure.clone();
        let notifier = self.inner.notifier.clone();
        self.run(move |state| {
            let ends = Instant::now() + keep;
            state.failure = Some((failure, ends));
            notifier.notify();
            true
        })
    }

    fn clear_failure(&self) -> StoreFuture<'_, ()> {
        self.run(|state| state.failure = None)
    }

    fn notifications(&self) -> Notifications {
        self.inner.notifier.subscribe()
    }
}

impl Shared {
    fn generation(&self) -> u64 {
        self.token.as_ref().map_or(0, |t| t.generation)
    }

    fn lease_holder(&self) -> Option<String> {
        let now = Instant::now();
        self.lease
            .as_ref()
            .filter(|(_, until)| now < *until)
            .map(|(owner, _)| owner.clone())
    }
}

impl fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shared = self.state();
        f.debug_struct("MemoryStore")
            .field("generation", &shared.generation())
            .field("lease_holder", &shared.lease_holder())
            .finish_non_exhaustive()
    }
}
