//! Deferred reclamation: old libraries and old global storage are freed
//! only once no thread can still reach them.
//!
//! Two kinds of threads are covered:
//!
//! * registered threads ([`ThreadGuard`]) pass quiescent points:
//!   quiescent-state-based reclamation, two atomic operations per point
//!   ([`protocol`] has the argument, and `tests/reclaim_model.rs` checks it
//!   with loom);
//! * every other thread is observed by the safepoint
//!   ([`crate::safepoint`]): one clean look at its registers and stack after
//!   the retirement proves it can never reach the retired memory again.
//!
//! The commit path hands everything one commit replaced to
//! [`Reclaimer::retire`] as one [`Retired`] batch, after re-pointing the
//! stubs, and never frees any of it itself.

pub(crate) mod protocol;
mod sync;

use std::collections::HashSet;
use std::marker::PhantomData;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use self::protocol::{Domain, Observer, Slot, TrustRegistered};
use self::sync::Arc;
use crate::config::Config;
use crate::loader::ModuleLibrary;
use crate::registry::GlobalBox;
use crate::safepoint::{self, Footprint, SignalObserver};

/// Everything one commit took out of use: freed together, once no thread
/// can reach any of it.
#[derive(Default)]
pub(crate) struct Retired {
    /// Libraries replaced or unloaded, in the order they should be closed
    /// (dependents first).
    pub(crate) libraries: Vec<ModuleLibrary>,
    /// Storage of globals that a migration moved, that disappeared from a
    /// new build, or whose module was unloaded.
    pub(crate) globals: Vec<GlobalBox>,
}

impl Retired {
    /// Whether there is nothing to free.
    pub(crate) fn is_empty(&self) -> bool {
        self.libraries.is_empty() && self.globals.is_empty()
    }
}

/// A retired batch with where it lies, taken while its libraries are
/// loaded.
struct Held {
    retired: Retired,
    ranges: Vec<Range<usize>>,
}

impl Footprint for Held {
    fn ranges(&self) -> Vec<Range<usize>> {
        self.ranges.clone()
    }
}

impl Held {
    fn new(retired: Retired) -> Held {
        let mut ranges: Vec<Range<usize>> =
            retired.libraries.iter().flat_map(|l| safepoint::library_ranges(l.path())).collect();
        ranges.extend(retired.globals.iter().map(GlobalBox::range));
        Held { retired, ranges }
    }
}

/// How threads that never registered are dealt with.
enum Unregistered {
    /// Observed with the safepoint signal.
    Observe(Mutex<SignalObserver>),
    /// Trusted not to run module code ([`Config::observe_unregistered_threads`]
    /// off).
    Trust(Mutex<TrustRegistered>),
}

/// Retired batches, the registered threads, and the observer of the others.
pub(crate) struct Reclaimer {
    domain: Domain<Held>,
    unregistered: Unregistered,
    settings: safepoint::Settings,
    unloads: AtomicU64,
    /// When quiescent points may next try a collection that observes
    /// threads (nanoseconds since `start`).
    retry_at: AtomicU64,
    start: Instant,
}

impl std::fmt::Debug for Reclaimer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reclaimer").field("pending", &self.pending()).finish_non_exhaustive()
    }
}

/// How long quiescent points leave an observing collection alone after one
/// that could not free everything.
const RETRY_INTERVAL: Duration = Duration::from_millis(5);

impl Reclaimer {
    pub(crate) fn new(config: &Config) -> Reclaimer {
        let settings = safepoint::Settings { timeout: config.safepoint_timeout };
        let unregistered = if config.observe_unregistered_threads {
            Unregistered::Observe(Mutex::new(SignalObserver::new(settings)))
        } else {
            Unregistered::Trust(Mutex::new(TrustRegistered))
        };
        Reclaimer {
            domain: Domain::new(),
            unregistered,
            settings,
            unloads: AtomicU64::new(0),
            retry_at: AtomicU64::new(0),
            start: Instant::now(),
        }
    }

    /// Frees a batch now (after a rollback, or under
    /// [`UnloadPolicy::Immediate`](crate::UnloadPolicy::Immediate)).
    pub(crate) fn free_now(&self, retired: Retired) {
        let Retired { libraries, globals } = retired;
        for library in libraries {
            library.close();
            // Ordering: relaxed; a statistic.
            self.unloads.fetch_add(1, Ordering::Relaxed);
        }
        // Globals after the code that used them.
        drop(globals);
    }

    /// Closes libraries now.
    pub(crate) fn close_now(&self, libraries: Vec<ModuleLibrary>) {
        self.free_now(Retired { libraries: libraries.into_iter().rev().collect(), globals: Vec::new() });
    }

    /// Retires what a commit replaced; it must already have re-pointed every
    /// stub. Freed once no thread can reach it (at once if possible).
    pub(crate) fn retire(&self, retired: Retired) {
        if retired.is_empty() {
            return;
        }
        self.domain.retire(Held::new(retired));
        self.collect();
    }

    /// Retires libraries replaced by a commit (dependents last, as the
    /// commit lists them).
    pub(crate) fn retire_libraries(&self, libraries: Vec<ModuleLibrary>) {
        self.retire(Retired { libraries: libraries.into_iter().rev().collect(), globals: Vec::new() });
    }

    /// Frees every batch no thread can reach any more; returns how many
    /// libraries were closed. May observe threads (signals): not for hot
    /// paths.
    pub(crate) fn collect(&self) -> usize {
        let ready = match &self.unregistered {
            Unregistered::Observe(observer) => {
                let mut observer = observer.lock();
                self.domain.collect(&mut *observer as &mut dyn Observer<Held>, true)
            }
            Unregistered::Trust(trust) => {
                let mut trust = trust.lock();
                self.domain.collect(&mut *trust as &mut dyn Observer<Held>, true)
            }
        };
        self.free(ready.unwrap_or_default())
    }

    /// A collection from a quiescent point: nothing if no batch waits; never
    /// waits for another collection; observing threads is spaced out while
    /// it cannot prove everything.
    fn poll(&self) {
        if !self.domain.has_pending() {
            return;
        }
        let now = self.start.elapsed().as_nanos() as u64;
        // Ordering: relaxed; a rate limit, any value read is fine.
        if now < self.retry_at.load(Ordering::Relaxed) {
            return;
        }
        let ready = match &self.unregistered {
            Unregistered::Observe(observer) => {
                let Some(mut observer) = observer.try_lock() else { return };
                observer.incomplete = false;
                let ready = self.domain.collect(&mut *observer as &mut dyn Observer<Held>, false);
                if observer.incomplete {
                    // Ordering: relaxed, as above.
                    self.retry_at.store(now + RETRY_INTERVAL.as_nanos() as u64, Ordering::Relaxed);
                }
                ready
            }
            Unregistered::Trust(trust) => {
                let Some(mut trust) = trust.try_lock() else { return };
                self.domain.collect(&mut *trust as &mut dyn Observer<Held>, false)
            }
        };
        if let Some(ready) = ready {
            self.free(ready);
        }
    }

    fn free(&self, ready: Vec<Held>) -> usize {
        let mut closed = 0;
        for held in ready {
            closed += held.retired.libraries.len();
            self.free_now(held.retired);
        }
        closed
    }

    /// Whether the stub table, the libraries and the globals may be unmapped
    /// and freed as the runtime goes away: `Err` says why not. `live` are
    /// the ranges of the table and the loaded libraries.
    pub(crate) fn may_unmap(&self, live: Vec<Range<usize>>) -> Result<(), String> {
        let threads = self.domain.thread_count();
        if threads > 0 {
            return Err(format!("{threads} registered thread(s) still exist"));
        }
        if let Unregistered::Observe(_) = self.unregistered {
            let mut ranges = live;
            ranges.extend(self.domain.take_all().into_iter().flat_map(|held| {
                let ranges = held.ranges.clone();
                self.free_now(held.retired);
                ranges
            }));
            if !safepoint::all_threads_clear_of(ranges, &HashSet::new(), self.settings) {
                return Err("a thread that never registered may still be running module code or hold a stub".into());
            }
        }
        Ok(())
    }

    /// Frees every batch, whatever the threads are doing.
    pub(crate) fn close_all(&self) {
        for held in self.domain.take_all() {
            self.free_now(held.retired);
        }
    }

    /// Leaks every batch: libraries stay mapped, globals allocated.
    pub(crate) fn leak_all(&self) {
        for held in self.domain.take_all() {
            for library in held.retired.libraries {
                library.leak();
            }
            std::mem::forget(held.retired.globals);
        }
    }

    pub(crate) fn unloads(&self) -> u64 {
        // Ordering: relaxed; a statistic.
        self.unloads.load(Ordering::Relaxed)
    }

    pub(crate) fn pending(&self) -> usize {
        self.domain.pending()
    }

    pub(crate) fn thread_count(&self) -> usize {
        self.domain.thread_count()
    }
}

/// A thread registered with [`Runtime::register_thread`](crate::Runtime::register_thread).
///
/// While a guard exists, memory retired by a reload (old libraries, old
/// global storage) stays until this thread calls [`ThreadGuard::quiescent`].
/// Call it regularly, at a point where the thread is not inside module code
/// (typically once per iteration of its loop); a thread that blocks for long
/// should do so inside [`ThreadGuard::offline`]. Dropping the guard
/// unregisters the thread.
///
/// A registered thread is never signalled by the runtime (threads that never
/// registered are: see [`Config::observe_unregistered_threads`]).
///
/// # Thread-safety
///
/// The guard belongs to the thread that registered: it is neither `Send`
/// nor `Sync`.
#[derive(Debug)]
pub struct ThreadGuard {
    reclaimer: Arc<Reclaimer>,
    slot: Arc<Slot>,
    /// Registration is per thread.
    _thread: PhantomData<*const ()>,
}

impl ThreadGuard {
    pub(crate) fn register(reclaimer: &Arc<Reclaimer>) -> ThreadGuard {
        let slot = reclaimer.domain.register(safepoint::current_tid());
        ThreadGuard { reclaimer: reclaimer.clone(), slot, _thread: PhantomData }
    }

    /// Declares that this thread is not running module code: every reload
    /// that committed before this call is complete for this thread. Two
    /// atomic operations, plus a collection attempt while retired memory
    /// waits (which may close libraries).
    #[inline]
    pub fn quiescent(&self) {
        self.reclaimer.domain.quiescent(&self.slot);
        if self.reclaimer.domain.has_pending() {
            self.reclaimer.poll();
        }
    }

    /// Runs `f` (which must not run module code) with this thread marked
    /// offline, so that reloads meanwhile do not wait for it; then comes
    /// back online, which is a quiescent point.
    pub fn offline<R>(&self, f: impl FnOnce() -> R) -> R {
        self.reclaimer.domain.offline(&self.slot);
        self.reclaimer.poll();
        let result = f();
        self.reclaimer.domain.online(&self.slot);
        self.reclaimer.poll();
        result
    }
}

impl Drop for ThreadGuard {
    fn drop(&mut self) {
        self.reclaimer.domain.unregister(&self.slot);
        self.reclaimer.poll();
    }
}
