//! Model check of the reclamation protocol with loom: the very file the
//! runtime uses (`src/reclaim/protocol.rs`), included here against loom's
//! atomics and mutex instead of std's.
//!
//! Libraries are loom cells: a thread "calls" one by reading it, the
//! collector "closes" one by writing it. Loom explores the interleavings
//! (and the values weak memory lets each load return) and fails on any read
//! that is not ordered before the write, or that sees a closed library.
//! Covered: registration, quiescent points, offline and back online
//! (including the store-load fence, whose removal the last test shows is
//! caught), retirement, collection (handing batches on, then observing,
//! with commits going on meanwhile), and the observation handshake of a
//! thread that never registered (request, claim, answer, abandon).

use std::cell::Cell;

use loom::cell::UnsafeCell;
use loom::sync::atomic::AtomicUsize;

mod sync {
    pub(crate) use loom::sync::Arc;
    pub(crate) use loom::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};

    thread_local! {
        /// Set by the mutation test: SeqCst fences do nothing.
        pub(crate) static WITHOUT_FENCES: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    }

    pub(crate) fn fence(order: Ordering) {
        if !WITHOUT_FENCES.with(|w| w.get()) {
            loom::sync::atomic::fence(order);
        }
    }

    #[derive(Debug)]
    pub(crate) struct Mutex<T>(loom::sync::Mutex<T>);

    impl<T> Mutex<T> {
        pub(crate) fn new(value: T) -> Mutex<T> {
            Mutex(loom::sync::Mutex::new(value))
        }

        pub(crate) fn lock(&self) -> loom::sync::MutexGuard<'_, T> {
            self.0.lock().unwrap()
        }

        pub(crate) fn try_lock(&self) -> Option<loom::sync::MutexGuard<'_, T>> {
            self.0.try_lock().ok()
        }
    }
}

#[path = "../src/reclaim/protocol.rs"]
#[allow(dead_code)]
mod protocol;

use protocol::{Answer, Batch, Domain, Mailbox, Observer, TrustRegistered};
use sync::{Arc, Ordering};

const LIVE: u64 = 0x11;
const CLOSED: u64 = 0xDEAD;

/// A library: its code, which callers read and closing overwrites.
struct Library(UnsafeCell<u64>);

impl Library {
    fn new() -> Library {
        Library(UnsafeCell::new(LIVE))
    }

    fn call(&self) {
        // SAFETY: loom checks that this read is ordered with `close`.
        self.0.with(|code| assert_eq!(unsafe { *code }, LIVE, "called a closed library"));
    }

    fn close(&self) {
        // SAFETY: loom checks that this write is ordered after every call.
        self.0.with_mut(|code| unsafe {
            assert_eq!(*code, LIVE, "closed twice");
            *code = CLOSED;
        });
    }

    fn is_closed(&self) -> bool {
        // SAFETY: as for `call`.
        self.0.with(|code| unsafe { *code == CLOSED })
    }
}

/// Libraries (0 current, then its replacements) and a stub pointing at 0.
struct World {
    libraries: Vec<Library>,
    stub: AtomicUsize,
    domain: Domain<usize>,
}

impl World {
    fn new() -> Arc<World> {
        World::with_libraries(2)
    }

    fn with_libraries(count: usize) -> Arc<World> {
        Arc::new(World {
            libraries: (0..count).map(|_| Library::new()).collect(),
            stub: AtomicUsize::new(0),
            domain: Domain::new(),
        })
    }

    /// A call through the stub.
    fn call(&self) -> usize {
        let target = self.stub.load(Ordering::Acquire);
        self.libraries[target].call();
        target
    }

    /// The commit: re-point the stub, retire library 0.
    fn reload(&self) {
        self.reload_to(1);
    }

    /// A commit from library `to - 1` to library `to`; as the runtime does,
    /// it then hands on what registered threads are past.
    fn reload_to(&self, to: usize) {
        self.stub.store(to, Ordering::Release);
        self.domain.retire(to - 1, Vec::new());
        self.domain.advance(true);
    }

    fn collect(&self, observer: &mut dyn Observer<usize>) -> usize {
        let freed = self.domain.collect(observer, true).unwrap();
        for &library in &freed {
            self.libraries[library].close();
        }
        freed.len()
    }
}

fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(3);
    builder.check(f);
}

#[test]
fn a_registered_thread_never_calls_a_closed_library() {
    model(|| {
        let world = World::new();
        let reader = {
            let world = world.clone();
            loom::thread::spawn(move || {
                let slot = world.domain.register(1);
                world.call();
                world.domain.quiescent(&slot);
                world.call();
                world.domain.offline(&slot);
                world.domain.online(&slot);
                world.call();
                world.domain.unregister(&slot);
            })
        };
        world.reload();
        world.collect(&mut TrustRegistered);
        reader.join().unwrap();
        // With the reader gone, library 0 goes (unless it already went).
        world.collect(&mut TrustRegistered);
        assert_eq!(world.domain.pending(), 0);
    });
}

/// The offline thread comes back while the collector decides.
fn offline_and_back() {
    let world = World::new();
    let slot = world.domain.register(1);
    world.domain.offline(&slot);
    let reader = {
        let world = world.clone();
        loom::thread::spawn(move || {
            world.domain.online(&slot);
            world.call();
            world.domain.quiescent(&slot);
        })
    };
    world.reload();
    world.collect(&mut TrustRegistered);
    reader.join().unwrap();
}

#[test]
fn a_thread_coming_back_online_never_calls_a_closed_library() {
    model(offline_and_back);
}

#[test]
#[should_panic(expected = "Causality violation")]
fn without_the_fences_a_thread_coming_back_online_can_call_a_closed_library() {
    model(|| {
        sync::WITHOUT_FENCES.with(|w| w.set(true));
        offline_and_back();
    });
}

/// The observer of the model: asks thread 7 whether it holds the retired
/// library (the "ranges" are the library's number).
struct Asker {
    mailbox: Arc<Mailbox>,
    looked_for: Arc<AtomicUsize>,
}

const NOTHING: usize = usize::MAX;

impl Observer<usize> for Asker {
    fn prove(&mut self, batches: &mut [Batch<usize>], registered: &[u64]) {
        assert!(registered.is_empty());
        for batch in batches {
            self.looked_for.store(batch.items, Ordering::Relaxed);
            let ticket = self.mailbox.request(7);
            let mut tries = 0;
            loop {
                match self.mailbox.poll(ticket) {
                    Answer::Answered { hits, .. } => {
                        batch.unreachable = hits == 0;
                        break;
                    }
                    Answer::Waiting if tries >= 2 && self.mailbox.abandon(ticket) => break,
                    _ => {}
                }
                tries += 1;
                loom::thread::yield_now();
            }
        }
    }
}

/// A thread that never registered calls through the stub while the
/// collector retires library 0 and asks `observer` whether it may go.
fn unregistered_worker(trust: bool) {
    let world = World::new();
    let mailbox = Arc::new(Mailbox::new());
    let looked_for = Arc::new(AtomicUsize::new(NOTHING));
    let worker = {
        let (world, mailbox, looked_for) = (world.clone(), mailbox.clone(), looked_for.clone());
        loom::thread::spawn(move || {
            // What the thread holds in a register, and its "signal handler",
            // which may run between any two steps.
            let held = Cell::new(NOTHING);
            let interrupt = || {
                if let Some(ticket) = mailbox.begin(7) {
                    let hits = u64::from(held.get() == looked_for.load(Ordering::Relaxed));
                    mailbox.answer(ticket, hits as u32, hits);
                }
            };
            interrupt();
            held.set(world.stub.load(Ordering::Acquire));
            interrupt();
            world.libraries[held.get()].call();
            interrupt();
            held.set(NOTHING);
            interrupt();
        })
    };
    world.reload();
    if trust {
        world.collect(&mut TrustRegistered);
    } else {
        world.collect(&mut Asker { mailbox, looked_for });
    }
    worker.join().unwrap();
}

#[test]
fn a_thread_that_never_registered_is_observed_before_its_library_is_closed() {
    model(|| unregistered_worker(false));
}

#[test]
#[should_panic(expected = "Causality violation")]
fn without_observing_it_a_thread_that_never_registered_can_call_a_closed_library() {
    model(|| unregistered_worker(true));
}

/// A collector hands batches on and observes on its own thread while the
/// main thread commits twice and a registered thread calls through the
/// stub: no batch is lost or freed twice, and no library is closed while
/// the reader can reach it.
#[test]
fn commits_while_the_collector_runs_lose_no_batch() {
    model(|| {
        let world = World::with_libraries(3);
        let slot = world.domain.register(1);
        let reader = {
            let world = world.clone();
            loom::thread::spawn(move || {
                world.call();
                world.domain.quiescent(&slot);
                world.domain.unregister(&slot);
            })
        };
        let collector = {
            let world = world.clone();
            loom::thread::spawn(move || world.collect(&mut TrustRegistered))
        };
        world.reload_to(1);
        world.reload_to(2);
        collector.join().unwrap();
        reader.join().unwrap();
        world.collect(&mut TrustRegistered);
        assert_eq!(world.domain.pending(), 0);
        assert!(world.libraries[0].is_closed() && world.libraries[1].is_closed());
        assert!(!world.libraries[2].is_closed());
    });
}
