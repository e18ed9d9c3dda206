//! The crate's one way to take a lock.

use std::sync::{Mutex, MutexGuard, PoisonError};

/// Locks `mutex`, whether or not a thread panicked while holding it.
///
/// Every lock in this crate guards state that stays whole if its holder panics: the holder
/// either panics before changing anything (polling a caller's body, say) or changes it in
/// single assignments. A poisoned lock is therefore used as it is, rather than spreading one
/// panic to every request that comes after it.
pub(crate) fn lock<T: ?Sized>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
