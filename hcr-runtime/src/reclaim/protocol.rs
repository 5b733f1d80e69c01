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
//!   point, or is offline ([`OFFLINE`]); and
//! * the [`Observer`] found that no thread outside the registry can reach
//!   it any more.
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
    /// that no thread outside `registered` can reach any more. `registered`
    /// lists the registered threads as `(tid, seen)`, read after their
    /// quiescent points were checked: a thread created from now on descends
    /// from threads that are either registered and past these batches, or
    /// observed by this call.
    fn prove(&mut self, batches: &mut [Batch<T>], registered: &[(u64, u64)]);
}

/// The observer of a host that promises that only registered threads run
/// module code.
pub(crate) struct TrustRegistered;

impl<T> Observer<T> for TrustRegistered {
    fn prove(&mut self, batches: &mut [Batch<T>], _registered: &[(u64, u64)]) {
        for batch in batches {
            batch.unreachable = true;
        }
    }
}

/// Epochs, registered threads and retired batches.
#[derive(Debug)]
pub(crate) struct Domain<T> {
    epoch: AtomicU64,
    threads: Mutex<Vec<Arc<Slot>>>,
    retired: Mutex<Vec<Batch<T>>>,
    /// The number of retired batches, for the quiescent fast path.
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
        // Ordering: a store-load barrier, paired with the fence in `collect`.
        // A collector may have read OFFLINE (the value before the store
        // above) and be about to free a batch retired after `epoch`, while
        // this thread is about to load a stub's target. Both fences are in
        // one total order. If the collector's comes first, the stub stores
        // that happened before it are visible to this thread's loads after
        // this fence: it calls the new code. If this one comes first, the
        // collector's load of `seen` after its fence reads `epoch` (or
        // later), not OFFLINE, and it waits for this thread. Without the
        // fences both sides could read the old values (store buffering,
        // which x86-64 allows too) and the thread would jump into a freed
        // library.
        fence(Ordering::SeqCst);
    }

    /// Records a batch retired by a commit that has re-pointed its stubs;
    /// returns its epoch.
    pub(crate) fn retire(&self, items: T) -> u64 {
        // Ordering: AcqRel. The release half publishes the stubs re-pointed
        // before this call to every thread that loads the new epoch with
        // acquire (`quiescent`, `online`); the acquire half keeps the epochs
        // of successive commits in order.
        let epoch = self.epoch.fetch_add(1, Ordering::AcqRel) + 1;
        let mut retired = self.retired.lock();
        retired.push(Batch { epoch, items, unreachable: false, proven: Vec::new() });
        // Ordering: relaxed. Only a hint for the quiescent fast path; it is
        // written under the lock, so it is always the length the list had at
        // some point and never wraps around.
        self.pending.store(retired.len(), Ordering::Relaxed);
        epoch
    }

    /// Whether batches are waiting (a hint: relaxed).
    #[inline]
    pub(crate) fn has_pending(&self) -> bool {
        // Ordering: relaxed; a stale answer only delays or adds a collection.
        self.pending.load(Ordering::Relaxed) != 0
    }

    /// The number of batches waiting.
    pub(crate) fn pending(&self) -> usize {
        self.retired.lock().len()
    }

    /// The number of registered threads.
    pub(crate) fn thread_count(&self) -> usize {
        self.threads.lock().len()
    }

    /// Takes out every batch that no thread can reach any more, oldest
    /// first. `None` if another collection is running and `wait` is false.
    pub(crate) fn collect(&self, observer: &mut dyn Observer<T>, wait: bool) -> Option<Vec<T>> {
        let mut retired = if wait { self.retired.lock() } else { self.retired.try_lock()? };
        if retired.is_empty() {
            return Some(Vec::new());
        }
        // Ordering: the lock (acquired after the `retire` that pushed each
        // batch released it) makes the stub stores of every batch's commit
        // happen before this fence; see `online` for what it pairs with.
        fence(Ordering::SeqCst);
        let registered: Vec<(u64, u64)> = {
            let threads = self.threads.lock();
            // Ordering: acquire pairs with the release stores of `seen`: what
            // a thread did before its quiescent point happens before the free.
            threads.iter().map(|t| (t.tid, t.seen.load(Ordering::Acquire))).collect()
        };
        let horizon = registered.iter().map(|&(_, seen)| seen).min().unwrap_or(OFFLINE);
        // Batches are pushed in epoch order.
        let held = retired.iter().position(|b| b.epoch > horizon).unwrap_or(retired.len());
        if held > 0 {
            observer.prove(&mut retired[..held], &registered);
        }
        let mut ready = Vec::new();
        let mut kept = Vec::with_capacity(retired.len());
        for batch in retired.drain(..) {
            if batch.epoch <= horizon && batch.unreachable {
                ready.push(batch.items);
            } else {
                kept.push(batch);
            }
        }
        *retired = kept;
        // Ordering: relaxed, under the lock (see `retire`).
        self.pending.store(retired.len(), Ordering::Relaxed);
        Some(ready)
    }

    /// Takes out every batch, whatever the threads are doing.
    pub(crate) fn take_all(&self) -> Vec<T> {
        let mut retired = self.retired.lock();
        let all = retired.drain(..).map(|b| b.items).collect();
        // Ordering: relaxed, under the lock (see `retire`).
        self.pending.store(0, Ordering::Relaxed);
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

/// The handshake between a collector and one thread at a time: the
/// collector publishes what to look for, then a request naming the thread;
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
    /// Counts answers: what a waiting collector sleeps on.
    answers: AtomicU32,
    sequence: AtomicU32,
}

impl Mailbox {
    pub(crate) fn new() -> Mailbox {
        Mailbox {
            word: AtomicU64::new(IDLE),
            verdict: AtomicU32::new(0),
            hits: AtomicU64::new(0),
            answers: AtomicU32::new(0),
            sequence: AtomicU32::new(0),
        }
    }

    /// The answer counter, for a collector that sleeps until it changes.
    pub(crate) fn answers(&self) -> &AtomicU32 {
        &self.answers
    }

    /// Collector (one at a time): asks thread `tid` to answer. What the
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
        // Ordering: release; a collector woken by the count re-reads `word`
        // with acquire anyway.
        self.answers.fetch_add(1, Ordering::Release);
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
