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
//! stubs, and never frees any of it itself. Retiring never waits for other
//! threads: observing them is the work of a collector thread of the
//! reclaimer, started when a batch first needs it, which frees each batch
//! as soon as it is proven.

pub(crate) mod protocol;
mod sync;

use std::collections::HashSet;
use std::marker::PhantomData;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

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

/// A retired batch with where it lies (taken while its libraries are
/// loaded) and when it was retired.
struct Held {
    retired: Retired,
    ranges: Vec<Range<usize>>,
    since: Instant,
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
        Held { retired, ranges, since: Instant::now() }
    }
}

/// What the collector thread is asked to do, and what it did.
#[derive(Default)]
struct Control {
    /// Rounds asked for (a counter).
    requested: u64,
    /// The request count the last round started at: a round asked for
    /// after it started has `requested > started`.
    started: u64,
    /// The request count the last finished round started at.
    done: u64,
    /// The thread is running.
    running: bool,
    /// The reclaimer is going away: the thread stops, none is started.
    stop: bool,
    thread: Option<JoinHandle<()>>,
}

/// Freed memory and waits, for [`Stats`](crate::Stats).
#[derive(Default)]
struct Counters {
    unloads: AtomicU64,
    globals_freed: AtomicU64,
    libraries_pending: AtomicUsize,
    globals_pending: AtomicUsize,
    /// Batches freed after waiting, their total and longest wait
    /// (nanoseconds).
    batches_freed: AtomicU64,
    wait_total: AtomicU64,
    wait_max: AtomicU64,
}

/// Retired batches, the registered threads, and the observer of the others.
pub(crate) struct Reclaimer {
    domain: Domain<Held>,
    /// `None`: threads that never registered are trusted not to run module
    /// code ([`Config::observe_unregistered_threads`] off).
    observer: Option<Mutex<SignalObserver>>,
    settings: safepoint::Settings,
    control: Mutex<Control>,
    /// Wakes the collector thread (new work, stop) and the threads that wait
    /// for a round.
    signal: Condvar,
    counters: Counters,
}

impl std::fmt::Debug for Reclaimer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reclaimer").field("batches", &self.domain.pending()).finish_non_exhaustive()
    }
}

/// How long the collector waits before observing again the threads that
/// still held retired memory: at first, and at most (doubling in between,
/// while they keep holding it; a new retirement starts over).
const RETRY_FIRST: Duration = Duration::from_millis(1);
const RETRY_MAX: Duration = Duration::from_millis(64);

/// How long [`Reclaimer::collect`] waits for a round at most.
const ROUND_WAIT: Duration = Duration::from_secs(60);

impl Reclaimer {
    pub(crate) fn new(config: &Config) -> Reclaimer {
        let settings = safepoint::Settings { timeout: config.safepoint_timeout };
        Reclaimer {
            domain: Domain::new(),
            observer: config.observe_unregistered_threads.then(|| Mutex::new(SignalObserver::new(settings))),
            settings,
            control: Mutex::new(Control::default()),
            signal: Condvar::new(),
            counters: Counters::default(),
        }
    }

    /// Frees a batch now (after a rollback, or under
    /// [`UnloadPolicy::Immediate`](crate::UnloadPolicy::Immediate)).
    pub(crate) fn free_now(&self, retired: Retired) {
        let Retired { libraries, globals } = retired;
        for library in libraries {
            library.close();
            // Ordering: relaxed; a statistic.
            self.counters.unloads.fetch_add(1, Ordering::Relaxed);
        }
        // Globals after the code that used them.
        // Ordering: relaxed; a statistic.
        self.counters.globals_freed.fetch_add(globals.len() as u64, Ordering::Relaxed);
        drop(globals);
    }

    /// Retires what a commit replaced; it must already have re-pointed every
    /// stub. Freed once no thread can reach it: at once when no thread is
    /// registered and threads that never registered are trusted; otherwise
    /// by a later quiescent point or by the collector thread. Never waits
    /// for another thread.
    pub(crate) fn retire(self: &Arc<Self>, retired: Retired) {
        if retired.is_empty() {
            return;
        }
        // Ordering (both): relaxed; statistics, decremented only after this
        // (the batch reaches the free through the domain's locks).
        self.counters.libraries_pending.fetch_add(retired.libraries.len(), Ordering::Relaxed);
        self.counters.globals_pending.fetch_add(retired.globals.len(), Ordering::Relaxed);
        // The thread that committed is not observed for this batch: it runs
        // runtime code, and the commit checked that none of its frames is
        // in the code it replaced (values the runtime left on its stack
        // would only keep the batch alive). Pointers into a module's memory
        // held otherwise are outside the guarantees (see docs/safety.md).
        let proven = match safepoint::current_key() {
            0 => Vec::new(),
            key => vec![key],
        };
        self.domain.retire(Held::new(retired), proven);
        self.advance(true);
    }

    /// Hands batches the registered threads are past to the observer: frees
    /// them at once if threads that never registered are trusted, otherwise
    /// wakes the collector thread. Never observes threads itself.
    fn advance(self: &Arc<Self>, wait: bool) {
        let Some(observing) = self.domain.advance(wait) else { return };
        if observing == 0 {
            return;
        }
        if self.observer.is_none() {
            let ready = self.domain.observe(&mut TrustRegistered as &mut dyn Observer<Held>);
            self.free(ready);
        } else {
            self.wake_collector();
        }
    }

    /// Asks the collector thread for a round that starts after this call,
    /// starting the thread if needed; returns the request number (0 if the
    /// reclaimer is stopping).
    fn wake_collector(self: &Arc<Self>) -> u64 {
        let mut control = self.control.lock();
        if control.stop {
            return 0;
        }
        if control.requested == control.started {
            control.requested += 1;
        }
        let ticket = control.requested;
        if !control.running {
            let me = self.clone();
            let spawned = std::thread::Builder::new().name("hcr-reclaim".into()).spawn(move || me.collector_loop());
            match spawned {
                Ok(handle) => {
                    control.running = true;
                    control.thread = Some(handle);
                }
                Err(e) => {
                    // Observe on this thread instead: slower, still right.
                    tracing::warn!(error = %e, "cannot start the reclamation thread; observing threads on this one");
                    drop(control);
                    self.round();
                    return ticket;
                }
            }
        }
        drop(control);
        self.signal.notify_all();
        ticket
    }

    /// The collector thread: runs a round whenever one is asked for, and
    /// again a little later while retired memory waits for observation.
    fn collector_loop(self: Arc<Self>) {
        let mut retry = RETRY_FIRST;
        let mut control = self.control.lock();
        loop {
            if control.stop {
                break;
            }
            if control.requested == control.started {
                if self.domain.has_observing() {
                    // Batches still held by some thread: look again soon.
                    let timed_out = self.signal.wait_for(&mut control, retry).timed_out();
                    if timed_out && !control.stop {
                        control.requested += 1;
                        retry = (retry * 2).min(RETRY_MAX);
                    } else {
                        retry = RETRY_FIRST;
                    }
                } else {
                    retry = RETRY_FIRST;
                    self.signal.wait(&mut control);
                }
                continue;
            }
            let started = control.requested;
            control.started = started;
            drop(control);
            self.round();
            control = self.control.lock();
            control.done = started;
            self.signal.notify_all();
        }
        control.running = false;
    }

    /// One collection: hands on what registered threads are past, observes
    /// the other threads, frees what is proven. Returns how many libraries
    /// it closed.
    fn round(&self) -> usize {
        let ready = match &self.observer {
            Some(observer) => {
                let mut observer = observer.lock();
                self.domain.collect(&mut *observer as &mut dyn Observer<Held>, true)
            }
            None => self.domain.collect(&mut TrustRegistered as &mut dyn Observer<Held>, true),
        };
        self.free(ready.unwrap_or_default())
    }

    /// Frees every batch no thread can reach any more and waits for that
    /// (observing threads, up to the safepoint timeout each); returns how
    /// many libraries this closed.
    pub(crate) fn collect(self: &Arc<Self>) -> usize {
        if self.observer.is_none() {
            return self.round();
        }
        // Ordering: relaxed; a statistic read twice around the round.
        let before = self.counters.unloads.load(Ordering::Relaxed);
        if self.domain.pending() == 0 {
            return 0;
        }
        // A round that starts after this call (batches a round in progress
        // has taken out are looked at again by the next one).
        let ticket = self.wake_collector();
        let deadline = Instant::now() + ROUND_WAIT;
        let mut control = self.control.lock();
        while control.done < ticket && control.running && Instant::now() < deadline {
            self.signal.wait_until(&mut control, deadline);
        }
        drop(control);
        // Ordering: relaxed, as above.
        (self.counters.unloads.load(Ordering::Relaxed) - before) as usize
    }

    /// Hands on what registered threads are past (to the collector thread,
    /// or freed at once when threads that never registered are trusted);
    /// never observes threads.
    pub(crate) fn nudge(self: &Arc<Self>) {
        self.advance(true);
    }

    /// A collection from a quiescent point: nothing if no batch waits for
    /// registered threads; never waits for another collection, never
    /// observes threads.
    fn poll(self: &Arc<Self>) {
        if self.domain.has_waiting() {
            self.advance(false);
        }
    }

    fn free(&self, ready: Vec<Held>) -> usize {
        let mut closed = 0;
        for held in ready {
            let waited = held.since.elapsed().as_nanos().min(u128::from(u64::MAX)) as u64;
            let (libraries, globals) = (held.retired.libraries.len(), held.retired.globals.len());
            closed += libraries;
            self.free_now(held.retired);
            // Ordering (all counters): relaxed; statistics. No longer
            // pending once freed (and counted as freed).
            self.counters.libraries_pending.fetch_sub(libraries, Ordering::Relaxed);
            self.counters.globals_pending.fetch_sub(globals, Ordering::Relaxed);
            self.counters.batches_freed.fetch_add(1, Ordering::Relaxed);
            self.counters.wait_total.fetch_add(waited, Ordering::Relaxed);
            self.counters.wait_max.fetch_max(waited, Ordering::Relaxed);
        }
        closed
    }

    /// Stops the collector thread and waits for it (its round in progress
    /// ends first); no other is started afterwards.
    fn stop_collector(&self) {
        let handle = {
            let mut control = self.control.lock();
            control.stop = true;
            control.thread.take()
        };
        self.signal.notify_all();
        if let Some(handle) = handle
            && handle.join().is_err()
        {
            tracing::warn!("the reclamation thread panicked");
        }
    }

    /// The runtime goes away: stops the collector, then frees every retired
    /// batch if no thread can still reach it or anything in `live` (the
    /// stub table and the loaded libraries), and leaks them otherwise. `Err`
    /// says why the table, the libraries and the globals must stay.
    pub(crate) fn shut_down(&self, live: Vec<Range<usize>>) -> Result<(), String> {
        self.stop_collector();
        let batches = self.domain.take_all();
        let verdict = self.may_unmap(live, &batches);
        for held in batches {
            let (libraries, globals) = (held.retired.libraries.len(), held.retired.globals.len());
            if verdict.is_ok() {
                self.free_now(held.retired);
            } else {
                // Libraries stay mapped, globals allocated.
                for library in held.retired.libraries {
                    library.leak();
                }
                std::mem::forget(held.retired.globals);
            }
            // Ordering (both): relaxed; statistics.
            self.counters.libraries_pending.fetch_sub(libraries, Ordering::Relaxed);
            self.counters.globals_pending.fetch_sub(globals, Ordering::Relaxed);
        }
        verdict
    }

    /// Whether the table, the libraries and the globals may be unmapped and
    /// freed: no thread registered and, if they are observed, every other
    /// thread seen holding no address in `live` or in `batches`.
    fn may_unmap(&self, live: Vec<Range<usize>>, batches: &[Held]) -> Result<(), String> {
        let threads = self.domain.thread_count();
        if threads > 0 {
            return Err(format!("{threads} registered thread(s) still exist"));
        }
        if self.observer.is_some() {
            let mut ranges = live;
            ranges.extend(batches.iter().flat_map(|held| held.ranges.iter().cloned()));
            if !safepoint::all_threads_clear_of(ranges, &HashSet::new(), self.settings) {
                return Err("a thread that never registered may still be running module code or hold a stub".into());
            }
        }
        Ok(())
    }

    /// Libraries closed so far.
    pub(crate) fn unloads(&self) -> u64 {
        // Ordering: relaxed; a statistic.
        self.counters.unloads.load(Ordering::Relaxed)
    }

    /// Retired global storages freed so far.
    pub(crate) fn globals_freed(&self) -> u64 {
        // Ordering: relaxed; a statistic.
        self.counters.globals_freed.load(Ordering::Relaxed)
    }

    /// Retired libraries not closed yet.
    pub(crate) fn pending(&self) -> usize {
        // Ordering: relaxed; a statistic.
        self.counters.libraries_pending.load(Ordering::Relaxed)
    }

    /// Retired global storages not freed yet.
    pub(crate) fn globals_pending(&self) -> usize {
        // Ordering: relaxed; a statistic.
        self.counters.globals_pending.load(Ordering::Relaxed)
    }

    /// How long freed batches waited: mean and longest.
    pub(crate) fn waits(&self) -> (Duration, Duration) {
        // Ordering (all): relaxed; statistics.
        let count = self.counters.batches_freed.load(Ordering::Relaxed);
        let total = self.counters.wait_total.load(Ordering::Relaxed);
        let max = self.counters.wait_max.load(Ordering::Relaxed);
        (Duration::from_nanos(total.checked_div(count).unwrap_or(0)), Duration::from_nanos(max))
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
    /// atomic operations; while retired memory waits for registered
    /// threads, also a check whether it can be handed on (which frees it on
    /// this thread when threads that never registered are not observed, and
    /// otherwise leaves that to the runtime's collector thread).
    #[inline]
    pub fn quiescent(&self) {
        self.reclaimer.domain.quiescent(&self.slot);
        self.reclaimer.poll();
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
