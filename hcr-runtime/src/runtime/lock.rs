//! The re-entrancy-aware locks of the runtime: a thread that already holds
//! one gets [`Error::Reentrant`] instead of a deadlock.

use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::{Mutex, MutexGuard};

use crate::error::{Error, Result};

/// A process-unique number for the calling thread (never zero).
fn thread_token() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    thread_local! {
        // Relaxed: only uniqueness matters, which the atomic read-modify-write
        // gives in any ordering.
        static TOKEN: u64 = NEXT.fetch_add(1, Ordering::Relaxed);
    }
    TOKEN.with(|t| *t)
}

/// A lock guard that remembers which thread holds it, so re-entry from that
/// thread is an error instead of a deadlock.
pub(super) struct Held<'a, T> {
    guard: MutexGuard<'a, T>,
    holder: &'a AtomicU64,
}

impl<T> Drop for Held<'_, T> {
    fn drop(&mut self) {
        // Relaxed: `holder` is only ever compared with the calling thread's
        // own token. A thread sees its own stores in program order, and no
        // other thread's token can equal it, so a stale value read by
        // another thread can never match that thread.
        self.holder.store(0, Ordering::Relaxed);
    }
}

impl<T> std::ops::Deref for Held<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.guard
    }
}

impl<T> std::ops::DerefMut for Held<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.guard
    }
}

/// Locks `mutex`, unless the calling thread holds it (`holder`) or one of
/// the locks `others` must never be taken under.
pub(super) fn hold<'a, T>(mutex: &'a Mutex<T>, holder: &'a AtomicU64, others: &[&AtomicU64]) -> Result<Held<'a, T>> {
    let me = thread_token();
    // Relaxed: see `Held::drop`; only equality with our own token matters.
    if holder.load(Ordering::Relaxed) == me || others.iter().any(|o| o.load(Ordering::Relaxed) == me) {
        return Err(Error::Reentrant);
    }
    let guard = mutex.lock();
    // Relaxed: as above; the mutex orders everything it protects.
    holder.store(me, Ordering::Relaxed);
    Ok(Held { guard, holder })
}
