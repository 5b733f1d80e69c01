//! Deferred unloading: old libraries are closed only once no registered
//! thread can still be running their code.
//!
//! This is quiescent-state-based reclamation. Every commit that retires
//! libraries advances an epoch. A registered thread records the epoch it has
//! seen each time it passes a quiescent point (a place in its loop where it
//! runs no module code). A library retired at epoch `e` is closed once every
//! registered thread has seen `e`: each of them has, since the commit,
//! been outside module code, and every call it makes afterwards goes through
//! the re-pointed stubs.
//!
//! Ordering: stubs are re-pointed (release stores) before the epoch is
//! advanced (sequentially consistent); a thread loads the epoch with acquire
//! ordering, so its later calls see the new targets; and it publishes the
//! epoch it saw with release ordering, which the collector reads with
//! acquire ordering before closing anything.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use parking_lot::Mutex;

use crate::loader::ModuleLibrary;

/// One registered thread.
#[derive(Debug)]
struct ThreadSlot {
    /// The last epoch this thread saw at a quiescent point; `u64::MAX` while
    /// it is offline (promises not to run module code).
    seen: AtomicU64,
}

/// Libraries waiting to be closed, and the threads they wait for.
#[derive(Debug, Default)]
pub(crate) struct Reclaimer {
    epoch: AtomicU64,
    threads: Mutex<Vec<Arc<ThreadSlot>>>,
    retired: Mutex<Vec<(u64, ModuleLibrary)>>,
    pending: AtomicUsize,
    unloads: AtomicU64,
}

impl Reclaimer {
    /// Closes libraries now (after a rollback, or under the immediate policy).
    pub(crate) fn close_now(&self, libraries: Vec<ModuleLibrary>) {
        for library in libraries.into_iter().rev() {
            library.close();
            self.unloads.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Retires libraries replaced by a commit: they are closed once every
    /// registered thread has passed a quiescent point (at once if there are
    /// none).
    pub(crate) fn retire(&self, libraries: Vec<ModuleLibrary>) {
        if libraries.is_empty() {
            return;
        }
        let epoch = self.epoch.fetch_add(1, Ordering::SeqCst) + 1;
        let count = libraries.len();
        self.retired.lock().extend(libraries.into_iter().map(|l| (epoch, l)));
        self.pending.fetch_add(count, Ordering::SeqCst);
        self.collect();
    }

    /// Closes every retired library that no registered thread can still be
    /// running. Returns how many were closed.
    pub(crate) fn collect(&self) -> usize {
        let horizon = self.threads.lock().iter().map(|t| t.seen.load(Ordering::Acquire)).min().unwrap_or(u64::MAX);
        let ready: Vec<ModuleLibrary> = {
            let mut retired = self.retired.lock();
            let (ready, waiting): (Vec<_>, Vec<_>) =
                std::mem::take(&mut *retired).into_iter().partition(|(e, _)| *e <= horizon);
            *retired = waiting;
            ready.into_iter().map(|(_, l)| l).collect()
        };
        let closed = ready.len();
        self.pending.fetch_sub(closed, Ordering::SeqCst);
        self.close_now(ready);
        closed
    }

    /// Closes every retired library, whatever the threads are doing: the
    /// runtime is going away.
    pub(crate) fn close_all(&self) {
        let all: Vec<ModuleLibrary> = std::mem::take(&mut *self.retired.lock()).into_iter().map(|(_, l)| l).collect();
        self.pending.store(0, Ordering::SeqCst);
        self.close_now(all);
    }

    pub(crate) fn unloads(&self) -> u64 {
        self.unloads.load(Ordering::Relaxed)
    }

    pub(crate) fn pending(&self) -> usize {
        self.pending.load(Ordering::SeqCst)
    }

    pub(crate) fn thread_count(&self) -> usize {
        self.threads.lock().len()
    }
}

/// A thread registered with [`Runtime::register_thread`](crate::Runtime::register_thread).
///
/// While a guard exists, libraries replaced by a reload (under
/// [`UnloadPolicy::Deferred`](crate::UnloadPolicy::Deferred)) stay loaded
/// until this thread calls [`ThreadGuard::quiescent`]. Call it regularly, at
/// a point where the thread is not inside module code (typically once per
/// iteration of its loop); a thread that blocks for long should do so inside
/// [`ThreadGuard::offline`]. Dropping the guard unregisters the thread.
#[derive(Debug)]
pub struct ThreadGuard {
    reclaimer: Arc<Reclaimer>,
    slot: Arc<ThreadSlot>,
}

impl ThreadGuard {
    pub(crate) fn register(reclaimer: &Arc<Reclaimer>) -> ThreadGuard {
        let slot = Arc::new(ThreadSlot { seen: AtomicU64::new(reclaimer.epoch.load(Ordering::Acquire)) });
        reclaimer.threads.lock().push(slot.clone());
        ThreadGuard { reclaimer: reclaimer.clone(), slot }
    }

    /// Declares that this thread is not running module code: every reload
    /// that committed before this call is complete for this thread. Cheap
    /// (two atomic operations) unless retired libraries are waiting, in
    /// which case it may close them.
    #[inline]
    pub fn quiescent(&self) {
        let epoch = self.reclaimer.epoch.load(Ordering::Acquire);
        self.slot.seen.store(epoch, Ordering::Release);
        if self.reclaimer.pending.load(Ordering::Relaxed) != 0 {
            self.reclaimer.collect();
        }
    }

    /// Runs `f` (which must not run module code) with this thread marked
    /// offline, so that reloads meanwhile do not wait for it; then passes a
    /// quiescent point.
    pub fn offline<R>(&self, f: impl FnOnce() -> R) -> R {
        self.slot.seen.store(u64::MAX, Ordering::Release);
        if self.reclaimer.pending.load(Ordering::Relaxed) != 0 {
            self.reclaimer.collect();
        }
        let result = f();
        self.quiescent();
        result
    }
}

impl Drop for ThreadGuard {
    fn drop(&mut self) {
        self.reclaimer.threads.lock().retain(|t| !Arc::ptr_eq(t, &self.slot));
        if self.reclaimer.pending.load(Ordering::Relaxed) != 0 {
            self.reclaimer.collect();
        }
    }
}
