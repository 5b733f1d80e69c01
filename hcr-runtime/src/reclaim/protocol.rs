//! The core of deferred reclamation: epochs, registered threads and their
//! quiescent points, retired batches, and the handshake with which a thread
//! that never registered answers an observation request.
//!
//! This file is written against `super::sync` only. The runtime includes it
//! with std's atomics and parking_lot's mutex; `tests/reclaim_model.rs`
//! includes the very same file with loom's primitives and model-checks it.
//!
//! # The argument
//!
//! A commit first re-points stubs (release stores), then calls
//! [`Domain::retire`], which advances the epoch to `e` and records the batch
//! (old libraries, old global storage) under `e`. The batch is freed once
//!
//! * every registered thread has published an epoch `>= e` at a quiescent
//!   point, or is offline ([`OFFLINE`]) ([`Domain::advance`] checks this);
//!   and then
//! * the [`Observer`] found that no thread outside the registry can reach
//!   it any more ([`Domain::observe`], which may run on another thread and
//!   take its time: retiring never waits for it).
//!
//! Registered threads promise to run no module code at a quiescent point or
//! while offline: everything they did with the batch happened before the
//! release store of `seen`, which the collector reads with acquire, so the
//! free happens after it. Every later call goes through the re-pointed stubs.

use super::sync::{Arc, AtomicU32, AtomicU64, AtomicUsize, Mutex, Ordering, fence};

/// The `seen` value of an offline thread: it holds up no batch.
pub(crate) const OFFLINE: u64 = u64::MAX;

/// One registered thread.
#[derive(Debug)]
pub(crate) struct Slot {
    /// The last epoch this thread published at a quiescent point, or
    /// [`OFFLINE`]. Written only by its thread.
    seen: AtomicU64,
    /// The system's id of the thread (0 where there is none).
    tid: u64,
}

/// Items retired by one commit.
#[derive(Debug)]
pub(crate) struct Batch<T> {
    /// The epoch the commit advanced to.
    pub(crate) epoch: u64,
    /// What is freed together.
    pub(crate) items: T,
    /// Set by the [`Observer`] once no unregistered thread can reach the
    /// batch.
    pub(crate) unreachable: bool,
    /// For the observer: the threads (its keys) proven unable to reach it.
    pub(crate) proven: Vec<u64>,
}

/// Decides, for batches the registered threads no longer hold, whether any
/// other thread still can reach them.
pub(crate) trait Observer<T> {
    /// Sets [`Batch::unreachable`] on every batch of `batches` (oldest first)
    /// that no thread outside `registered` (system ids of the threads
    /// registered now) can reach any more. Every batch was retired, and then
    /// passed by every registered thread, before this call: a thread
    /// created from now on descends from threads that are either registered
    /// and past these batches, or observed by this call. A registered
    /// thread is past them too (it registered at a quiescent point after
    /// they were retired, or was past them when they were handed over).
    fn prove(&mut self, batches: &mut [Batch<T>], registered: &[u64]);
}

/// The observer of a host that promises that only registered threads run
/// module code.
pub(crate) struct TrustRegistered;

impl<T> Observer<T> for TrustRegistered {
    fn prove(&mut self, batches: &mut [Batch<T>], _registered: &[u64]) {
        for batch in batches {
            batch.unreachable = true;
        }
    }
}

/// Epochs, registered threads and retired batches.
///
/// A batch goes through two lists: `retired` while registered threads may
/// still reach it, then `observing` until the [`Observer`] proved that no
/// other thread can. The two steps are separate calls, [`Domain::advance`]
/// (cheap: two locks and a pass over the registered threads) and
/// [`Domain::observe`] (which may take long: it runs the observer with no
/// lock of the domain held), so that retiring never waits for an
/// observation.
#[derive(Debug)]
pub(crate) struct Domain<T> {
    epoch: AtomicU64,
    threads: Mutex<Vec<Arc<Slot>>>,
    /// Batches registered threads may still reach, oldest first.
    retired: Mutex<Vec<Batch<T>>>,
    /// Batches no registered thread can reach, waiting for the observer.
    observing: Mutex<Vec<Batch<T>>>,
    /// The length of `retired`, for the quiescent fast path.
    waiting: AtomicUsize,
    /// Batches retired and not yet handed out to be freed.
    pending: AtomicUsize,
}

impl<T> Default for Domain<T> {
    fn default() -> Self {
        Domain::new()
    }
}

impl<T> Domain<T> {
    pub(crate) fn new() -> Domain<T> {
        Domain {
            epoch: AtomicU64::new(0),
            threads: Mutex::new(Vec::new()),
            retired: Mutex::new(Vec::new()),
            observing: Mutex::new(Vec::new()),
            waiting: AtomicUsize::new(0),
            pending: AtomicUsize::new(0),
        }
    }

    /// Registers the calling thread (system id `tid`), which must not be
    /// running module code: registration is a quiescent point.
    pub(crate) fn register(&self, tid: u64) -> Arc<Slot> {
        let slot = Arc::new(Slot { seen: AtomicU64::new(OFFLINE), tid });
        // Ordering: the lock orders this push with every collector's read of
        // the list. A collector that reads the list before the push sees no
        // slot, and everything it did before (re-pointing stubs) happens
        // before this thread's loads below (release and acquire of the lock).
        // One that reads it after sees OFFLINE or the epoch stored by
        // `online`, which is then argued as for any thread coming online.
        self.threads.lock().push(slot.clone());
        self.online(&slot);
        slot
    }

    /// Removes a registered thread.
    pub(crate) fn unregister(&self, slot: &Arc<Slot>) {
        // Ordering: the lock's release orders everything this thread did
        // before (its module code) before any collector that reads the list
        // without this slot.
        self.threads.lock().retain(|t| !Arc::ptr_eq(t, slot));
    }

    /// A quiescent point of an online registered thread: no module code of
    /// this thread is running, and none will from before.
    #[inline]
    pub(crate) fn quiescent(&self, slot: &Slot) {
        // Ordering: acquire pairs with the release half of the bump in
        // `retire`: having read epoch `e`, this thread sees every stub the
        // commit of `e` re-pointed before it, so its later calls reach the
        // new code.
        let epoch = self.epoch.load(Ordering::Acquire);
        // Ordering: release: this thread's accesses to every batch retired
        // up to `epoch` happen before the free, whose collector reads this
        // value (or a later one) with acquire.
        slot.seen.store(epoch, Ordering::Release);
    }

    /// Marks a registered thread offline: it runs no module code until
    /// [`Domain::online`], and holds up no batch meanwhile.
    pub(crate) fn offline(&self, slot: &Slot) {
        // Ordering: release: this thread's accesses to every library so far
        // happen before a free whose collector read OFFLINE with acquire.
        slot.seen.store(OFFLINE, Ordering::Release);
    }

    /// Brings an offline registered thread back: from here on it may run
    /// module code again.
    pub(crate) fn online(&self, slot: &Slot) {
        // Ordering: acquire, as in `quiescent`.
        let epoch = self.epoch.load(Ordering::Acquire);
        // Ordering: release, as in `quiescent`.
        slot.seen.store(epoch, Ordering::Release);
        // Ordering: a store-load barrier, paired with the fence in
        // `advance`. A collector may have read OFFLINE (the value before the
        // store above) and be about to free a batch retired after `epoch`,
        // while this thread is about to load a stub's target. Both fences
        // are in one total order. If the collector's comes first, the stub
        // stores that happened before it are visible to this thread's loads
        // after this fence: it calls the new code. If this one comes first,
        // the collector's load of `seen` after its fence reads `epoch` (or
        // later), not OFFLINE, and it waits for this thread. Without the
        // fences both sides could read the old values (store buffering,
        // which x86-64 allows too) and the thread would jump into a freed
        // library.
        fence(Ordering::SeqCst);
    }

    /// Records a batch retired by a commit that has re-pointed its stubs;
    /// returns its epoch. `proven`: threads (observer keys) known unable to
    /// reach it.
    pub(crate) fn retire(&self, items: T, proven: Vec<u64>) -> u64 {
        // Ordering: counted first, so that the decrement when the batch is
        // handed out (which happens after this, through the locks) never
        // finds the count below it: the count never wraps around. Relaxed:
        // a statistic and a hint; both changes are read-modify-writes of
        // one atomic, ordered by happens-before.
        self.pending.fetch_add(1, Ordering::Relaxed);
        // Ordering: AcqRel. The release half publishes the stubs re-pointed
        // before this call to every thread that loads the new epoch with
        // acquire (`quiescent`, `online`); the acquire half keeps the epochs
        // of successive commits in order.
        let epoch = self.epoch.fetch_add(1, Ordering::AcqRel) + 1;
        let mut retired = self.retired.lock();
        retired.push(Batch { epoch, items, unreachable: false, proven });
        // Ordering: relaxed. Only a hint for the quiescent fast path; it is
        // written under the lock, so it is always the length the list had at
        // some point.
        self.waiting.store(retired.len(), Ordering::Relaxed);
        epoch
    }

    /// Whether batches wait for registered threads (a hint: relaxed).
    #[inline]
    pub(crate) fn has_waiting(&self) -> bool {
        // Ordering: relaxed; a stale answer only delays or adds an advance.
        self.waiting.load(Ordering::Relaxed) != 0
    }

    /// The number of batches retired and not handed out yet.
    pub(crate) fn pending(&self) -> usize {
        // Ordering: relaxed; a statistic (see `retire`).
        self.pending.load(Ordering::Relaxed)
    }

    /// Whether batches wait for the observer.
    pub(crate) fn has_observing(&self) -> bool {
        !self.observing.lock().is_empty()
    }

    /// The number of registered threads.
    pub(crate) fn thread_count(&self) -> usize {
        self.threads.lock().len()
    }

    /// Hands every batch that no registered thread can reach any more over
    /// to the observer's list; returns how many there are now. `None` if
    /// another thread is advancing and `wait` is false.
    pub(crate) fn advance(&self, wait: bool) -> Option<usize> {
        let mut retired = if wait { self.retired.lock() } else { self.retired.try_lock()? };
        if retired.is_empty() {
            drop(retired);
            return Some(self.observing.lock().len());
        }
        // Ordering: the lock (acquired after the `retire` that pushed each
        // batch released it) makes the stub stores of every batch's commit
        // happen before this fence; see `online` for what it pairs with.
        fence(Ordering::SeqCst);
        let horizon = {
            let threads = self.threads.lock();
            // Ordering: acquire pairs with the release stores of `seen`: what
            // a thread did before its quiescent point happens before the
            // free, which comes after this.
            threads.iter().map(|t| t.seen.load(Ordering::Acquire)).min().unwrap_or(OFFLINE)
        };
        // Batches are pushed in epoch order.
        let passed = retired.iter().position(|b| b.epoch > horizon).unwrap_or(retired.len());
        let mut observing = self.observing.lock();
        observing.extend(retired.drain(..passed));
        // Ordering: relaxed, under the lock (see `retire`).
        self.waiting.store(retired.len(), Ordering::Relaxed);
        Some(observing.len())
    }

    /// Runs `observer` on the batches handed over by [`Domain::advance`],
    /// with no lock of the domain held, and takes out the ones it proved
    /// unreachable, oldest first.
    pub(crate) fn observe(&self, observer: &mut dyn Observer<T>) -> Vec<T> {
        let mut batches = std::mem::take(&mut *self.observing.lock());
        if batches.is_empty() {
            return Vec::new();
        }
        // The system ids of the threads registered now, which are past
        // every batch taken above (see `Observer::prove`).
        let registered: Vec<u64> = self.threads.lock().iter().map(|t| t.tid).collect();
        observer.prove(&mut batches, &registered);
        let mut ready = Vec::new();
        let mut kept = Vec::with_capacity(batches.len());
        for batch in batches {
            if batch.unreachable {
                ready.push(batch.items);
            } else {
                kept.push(batch);
            }
        }
        let mut observing = self.observing.lock();
        // Batches handed over meanwhile are younger: after the kept ones.
        kept.append(&mut observing);
        *observing = kept;
        drop(observing);
        // Ordering: relaxed, see `retire`.
        self.pending.fetch_sub(ready.len(), Ordering::Relaxed);
        ready
    }

    /// [`Domain::advance`], then [`Domain::observe`].
    pub(crate) fn collect(&self, observer: &mut dyn Observer<T>, wait: bool) -> Option<Vec<T>> {
        self.advance(wait)?;
        Some(self.observe(observer))
    }

    /// Takes out every batch, whatever the threads are doing.
    pub(crate) fn take_all(&self) -> Vec<T> {
        let mut retired = self.retired.lock();
        let mut observing = self.observing.lock();
        let all: Vec<T> = observing.drain(..).chain(retired.drain(..)).map(|b| b.items).collect();
        // Ordering: relaxed, under the lock (see `retire`).
        self.waiting.store(0, Ordering::Relaxed);
        // Ordering: relaxed, see `retire`.
        self.pending.fetch_sub(all.len(), Ordering::Relaxed);
        all
    }
}

/// Phases of an observation request, in the low byte of [`Mailbox::word`].
const IDLE: u64 = 0;
const REQUESTED: u64 = 1;
const SCANNING: u64 = 2;
const ANSWERED: u64 = 3;
const ABANDONED: u64 = 4;

/// A request handed out by [`Mailbox::request`] or claimed by
/// [`Mailbox::begin`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Ticket(u64);

/// Where a request is, from the collector's side.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Answer {
    /// Not claimed by the thread yet.
    Waiting,
    /// The thread is looking at itself; it cannot block, wait for it.
    Scanning,
    /// The thread answered: a verdict and a bit set of what it holds.
    Answered { verdict: u32, hits: u64 },
}

/// The handshake between a collector and one thread (a collector may use
/// several mailboxes at once, one per thread): the collector publishes what
/// to look for, then a request naming the thread;
/// the thread (its signal handler) claims the request, looks at its own
/// registers and stack, and answers. A collector that waited long enough
/// abandons a request nobody claimed; a handler that comes late finds the
/// request gone and returns at once.
#[derive(Debug)]
pub(crate) struct Mailbox {
    /// `tid << 32 | sequence << 8 | phase`.
    word: AtomicU64,
    verdict: AtomicU32,
    hits: AtomicU64,
    sequence: AtomicU32,
}

impl Mailbox {
    pub(crate) fn new() -> Mailbox {
        Mailbox {
            word: AtomicU64::new(IDLE),
            verdict: AtomicU32::new(0),
            hits: AtomicU64::new(0),
            sequence: AtomicU32::new(0),
        }
    }

    /// Collector (one per mailbox at a time): asks thread `tid` to answer. What the
    /// answer is checked against must be written before this call.
    pub(crate) fn request(&self, tid: u32) -> Ticket {
        // Ordering: relaxed; collectors are serialised by a lock.
        let sequence = self.sequence.fetch_add(1, Ordering::Relaxed).wrapping_add(1) & 0xFF_FFFF;
        let word = (u64::from(tid) << 32) | (u64::from(sequence) << 8) | REQUESTED;
        // Ordering: release: what the collector wrote before (the ranges to
        // look for) is visible to a handler whose acquire in `begin` reads
        // this word.
        self.word.store(word, Ordering::Release);
        Ticket(word)
    }

    /// Thread side: claims the request addressed to thread `tid`, if one is
    /// waiting. Async-signal-safe.
    pub(crate) fn begin(&self, tid: u32) -> Option<Ticket> {
        // Ordering: acquire, see `request` (and the CAS below).
        let word = self.word.load(Ordering::Acquire);
        if word >> 32 != u64::from(tid) || word & 0xFF != REQUESTED {
            return None;
        }
        let scanning = (word & !0xFF) | SCANNING;
        // Ordering: acquire on success pairs with the release in `request`;
        // on failure (abandoned or replaced) nothing is read.
        self.word.compare_exchange(word, scanning, Ordering::Acquire, Ordering::Relaxed).ok().map(|_| Ticket(word))
    }

    /// Thread side: answers a claimed request. Async-signal-safe.
    pub(crate) fn answer(&self, ticket: Ticket, verdict: u32, hits: u64) {
        // Ordering: relaxed; published by the release CAS below.
        self.verdict.store(verdict, Ordering::Relaxed);
        self.hits.store(hits, Ordering::Relaxed);
        let scanning = (ticket.0 & !0xFF) | SCANNING;
        let answered = (ticket.0 & !0xFF) | ANSWERED;
        // Ordering: release: the verdict and the end of this thread's reads
        // of the collector's ranges happen before the collector's acquire
        // load that sees ANSWERED (after which it may rewrite them). Only
        // this handler can move the word away from its SCANNING value.
        let _ = self.word.compare_exchange(scanning, answered, Ordering::Release, Ordering::Relaxed);
    }

    /// Collector: where the request is.
    pub(crate) fn poll(&self, ticket: Ticket) -> Answer {
        // Ordering: acquire pairs with the release CAS in `answer`.
        let word = self.word.load(Ordering::Acquire);
        match word & 0xFF {
            ANSWERED if word & !0xFF == ticket.0 & !0xFF => Answer::Answered {
                // Ordering: relaxed; ordered by the acquire load above.
                verdict: self.verdict.load(Ordering::Relaxed),
                hits: self.hits.load(Ordering::Relaxed),
            },
            SCANNING => Answer::Scanning,
            _ => Answer::Waiting,
        }
    }

    /// Collector: gives up on a request that no handler has claimed; false
    /// if a handler has (then wait for its answer: it cannot block).
    pub(crate) fn abandon(&self, ticket: Ticket) -> bool {
        let abandoned = (ticket.0 & !0xFF) | ABANDONED;
        // Ordering: relaxed. Success means no handler claimed the request (a
        // claim changes the word), so none reads the ranges under it; a
        // late handler's `begin` fails.
        self.word.compare_exchange(ticket.0, abandoned, Ordering::Relaxed, Ordering::Relaxed).is_ok()
    }
}
