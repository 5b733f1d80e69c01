//! Observing threads that never registered with the runtime.
//!
//! After a commit retired libraries (and global storage) and the registered
//! threads let them go, the runtime's collector thread (never the thread
//! that reloads) sends every thread of the process that is not a registered
//! thread a signal, all at once, each with a request in a mailbox of its
//! own. Its handler
//! looks at the thread itself, at that instant: the interrupted registers
//! (program counter, general and vector registers: a thread that loaded a
//! stub's old target and is about to call it counts) and its live stack,
//! from the interrupted stack pointer (and the red zone below it) to the top
//! of its stack. If no word points into a retired range, the thread cannot
//! reach that memory any more: to execute old code it would need an address
//! in it, and the stubs it loads from now on hold the new targets (the
//! request it answered was published after the stubs were re-pointed). One
//! such clean observation per thread, taken after the retirement, plus a
//! listing of the threads taken after the registered threads passed their
//! quiescent points in which every thread is proven, lets the batch go.
//!
//! The handler is async-signal-safe: it reads tables the collector wrote
//! before the request (atomics), its own context and stack, and answers
//! through its [`Mailbox`]; it never blocks, allocates or takes a lock.
//! The collector never stops a thread: it waits for the answers, with a
//! deadline, and a thread that does not answer (it blocks the signal, or is
//! not scheduled in time) is simply not proven this time.
//!
//! The scan is conservative: every word of the live stack counts, dead
//! slots of live frames included, so a stale address can keep memory alive
//! (never the other way round).
//!
//! Stack bounds: the main thread's stack is the `[stack]` mapping; any other
//! thread's live stack runs from its stack pointer up to its thread pointer,
//! which glibc and musl keep at the top of the stack block, provided both lie
//! in one mapping (read from `/proc/self/maps` before the round). A thread
//! running on another stack (a signal's alternate stack, a coroutine) is not
//! proven.
//!
//! Linux only; elsewhere nothing is proven, so unregistered threads keep
//! retired memory alive until the runtime is dropped.

#[cfg(target_os = "linux")]
#[path = "linux.rs"]
mod imp;

#[cfg(not(target_os = "linux"))]
#[path = "unsupported.rs"]
mod imp;

use std::collections::HashSet;
use std::ops::Range;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::reclaim::protocol::{Answer, Batch, Mailbox, Observer};

pub(crate) use imp::{current_tid, library_ranges};

/// The calling thread's key, as [`ThreadInfo`] computes it for a listed
/// thread (0 where threads are not observed).
pub(crate) fn current_key() -> u64 {
    thread_local! {
        static KEY: u64 = imp::start_time(current_tid()).map_or(0, |start| key(current_tid(), start));
    }
    KEY.with(|k| *k)
}

/// Identifies a thread: its id and when it started (ids are reused).
fn key(tid: u64, start: u64) -> u64 {
    (start << 32) ^ tid
}

/// The answer of a thread that holds nothing of what is looked for.
pub(crate) const CLEAN: u32 = 0;
/// It holds a pointer into one of the ranges (see the hit bits).
pub(crate) const HOLDS: u32 = 1;
/// Its stack could not be bounded: not proven.
pub(crate) const UNKNOWN_STACK: u32 = 2;
/// It was interrupted on its alternate signal stack: not proven.
pub(crate) const ALTERNATE_STACK: u32 = 3;

/// Ranges looked for at most (more are merged, which only looks for more).
const MAX_RANGES: usize = 512;
/// Stack-like mappings known at most.
const MAX_STACKS: usize = 8192;
/// A flag in a stack mapping's end (page-aligned): the main thread's stack.
const MAIN_STACK: usize = 1;

/// What the handler checks against, written by the collector before each
/// request and read by the handler that claimed it (ordered by the
/// mailbox's release and acquire). Atomics, so that a handler can never
/// race with a collector in the sense of the memory model.
struct Tables {
    /// `start, end` pairs, sorted, disjoint.
    ranges: [AtomicUsize; 2 * MAX_RANGES],
    /// The batch groups (bits) each range belongs to.
    groups: [AtomicU64; MAX_RANGES],
    range_count: AtomicUsize,
    /// `start, end | MAIN_STACK` pairs of writable anonymous mappings,
    /// sorted.
    stacks: [AtomicUsize; 2 * MAX_STACKS],
    stack_count: AtomicUsize,
}

static TABLES: Tables = Tables {
    ranges: [const { AtomicUsize::new(0) }; 2 * MAX_RANGES],
    groups: [const { AtomicU64::new(0) }; MAX_RANGES],
    range_count: AtomicUsize::new(0),
    stacks: [const { AtomicUsize::new(0) }; 2 * MAX_STACKS],
    stack_count: AtomicUsize::new(0),
};

/// Threads asked at once in a round (more are asked in turns).
const SLOTS: usize = 64;

/// The handshakes of the process (signal handlers are process-wide), one
/// per thread asked at once.
static MAILBOXES: OnceLock<Box<[Mailbox]>> = OnceLock::new();

/// Counts answers: what a waiting collector sleeps on.
static ANSWERS: AtomicU32 = AtomicU32::new(0);

/// Serialises observation rounds of every runtime in the process.
static ROUND: Mutex<()> = Mutex::new(());

impl Tables {
    // Ordering (all loads and stores of the tables): relaxed. The collector
    // writes them before `Mailbox::request` (release) and rewrites them only
    // after the request was answered (acquire) or abandoned unclaimed; the
    // one handler that reads them does so between its acquire claim and its
    // release answer.

    fn publish_ranges(&self, ranges: &[(Range<usize>, u64)]) {
        for (i, (range, groups)) in ranges.iter().enumerate() {
            self.ranges[2 * i].store(range.start, Ordering::Relaxed);
            self.ranges[2 * i + 1].store(range.end, Ordering::Relaxed);
            self.groups[i].store(*groups, Ordering::Relaxed);
        }
        self.range_count.store(ranges.len(), Ordering::Relaxed);
    }

    fn publish_stacks(&self, stacks: &[(usize, usize, bool)]) {
        let n = stacks.len().min(MAX_STACKS);
        for (i, &(start, end, main)) in stacks[..n].iter().enumerate() {
            self.stacks[2 * i].store(start, Ordering::Relaxed);
            self.stacks[2 * i + 1].store(end | (usize::from(main) * MAIN_STACK), Ordering::Relaxed);
        }
        self.stack_count.store(n, Ordering::Relaxed);
    }

    /// The groups of the range containing `word`, or 0. Async-signal-safe.
    #[inline]
    fn hit(&self, word: usize, count: usize, low: usize, high: usize) -> u64 {
        if word < low || word >= high {
            return 0;
        }
        let (mut lo, mut hi) = (0, count);
        while lo < hi {
            let mid = (lo + hi) / 2;
            if self.ranges[2 * mid + 1].load(Ordering::Relaxed) <= word {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        if lo < count && self.ranges[2 * lo].load(Ordering::Relaxed) <= word {
            self.groups[lo].load(Ordering::Relaxed)
        } else {
            0
        }
    }

    /// The top of the live stack of the calling thread, whose stack pointer
    /// is `sp` and thread pointer `tp`. Async-signal-safe.
    fn stack_top(&self, sp: usize, tp: usize) -> Option<usize> {
        let count = self.stack_count.load(Ordering::Relaxed);
        let (mut lo, mut hi) = (0, count);
        while lo < hi {
            let mid = (lo + hi) / 2;
            if self.stacks[2 * mid + 1].load(Ordering::Relaxed) & !MAIN_STACK <= sp {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        if lo == count {
            return None;
        }
        let start = self.stacks[2 * lo].load(Ordering::Relaxed);
        let end = self.stacks[2 * lo + 1].load(Ordering::Relaxed);
        if sp < start {
            return None;
        }
        if end & MAIN_STACK != 0 {
            return Some(end & !MAIN_STACK);
        }
        (sp < tp && tp <= end).then_some(tp)
    }
}

/// The body of the signal handler: answers the request addressed to the
/// calling thread, if there is one. Async-signal-safe.
///
/// # Safety
///
/// `context` must be the `ucontext_t` the kernel passed to the running
/// `SA_SIGINFO` handler.
#[cfg(target_os = "linux")]
unsafe fn on_request(context: *const std::ffi::c_void) {
    let Some(mailboxes) = MAILBOXES.get() else { return };
    let tid = imp::current_tid() as u32;
    // A request names one thread in one mailbox at a time.
    let Some((mailbox, ticket)) = mailboxes.iter().find_map(|m| m.begin(tid).map(|t| (m, t))) else { return };
    // SAFETY: forwarded from the caller.
    let (verdict, hits) = unsafe { observe_self(context) };
    mailbox.answer(ticket, verdict, hits);
    // Ordering: release; a collector woken by the count re-reads the
    // mailboxes with acquire anyway.
    ANSWERS.fetch_add(1, Ordering::Release);
    imp::wake(&ANSWERS);
}

/// Looks for the published ranges in the calling thread's registers and
/// live stack. Async-signal-safe.
///
/// # Safety
///
/// As for [`on_request`].
#[cfg(target_os = "linux")]
unsafe fn observe_self(context: *const std::ffi::c_void) -> (u32, u64) {
    use crate::arch;
    if imp::on_alternate_stack() {
        return (ALTERNATE_STACK, 0);
    }
    // Ordering: relaxed, see `Tables`.
    let count = TABLES.range_count.load(Ordering::Relaxed);
    if count == 0 {
        return (CLEAN, 0);
    }
    let low = TABLES.ranges[0].load(Ordering::Relaxed);
    let high = TABLES.ranges[2 * count - 1].load(Ordering::Relaxed);
    let mut words = [0usize; arch::CONTEXT_WORDS];
    // SAFETY: forwarded from the caller.
    let (n, sp) = unsafe { arch::context_words(context, &mut words) };
    let mut hits = 0;
    for &word in &words[..n] {
        hits |= TABLES.hit(word, count, low, high);
    }
    let Some(top) = TABLES.stack_top(sp, arch::thread_pointer()) else {
        return (UNKNOWN_STACK, hits);
    };
    let mut at = sp.saturating_sub(arch::RED_ZONE) & !(size_of::<usize>() - 1);
    while at < top {
        // SAFETY: `at` lies in this thread's own stack, between the red zone
        // below the interrupted stack pointer (the kernel placed the signal
        // frame below it, so it is mapped) and the top of the stack block
        // (the thread pointer of a thread whose stack pointer lies in the
        // same mapping, or the end of the main thread's `[stack]`); the
        // whole range is mapped while the thread runs. Volatile: other
        // threads may write to this stack (a shared local); a word read
        // while it changes is one value or the other, either of which is
        // fine to look at.
        let word = unsafe { (at as *const usize).read_volatile() };
        hits |= TABLES.hit(word, count, low, high);
        at += size_of::<usize>();
    }
    (if hits == 0 { CLEAN } else { HOLDS }, hits)
}

/// Something retired that threads may still reach: where it lies.
pub(crate) trait Footprint {
    /// The address ranges a thread would hold a pointer into if it could
    /// still reach this.
    fn ranges(&self) -> Vec<Range<usize>>;
}

/// A thread found in the process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ThreadInfo {
    /// The system's thread id.
    pub(crate) tid: u64,
    /// Distinguishes threads that reuse an id.
    pub(crate) start: u64,
    /// Its signal mask blocks the safepoint signal: it cannot answer.
    pub(crate) blocks_signal: bool,
    /// A thread of an emulator running this program (qemu-user), which never
    /// runs the program's code: never signalled, never waited for.
    pub(crate) emulator: bool,
}

impl ThreadInfo {
    fn key(&self) -> u64 {
        key(self.tid, self.start)
    }
}

/// How many times a round asks a thread that holds what is looked for.
const ATTEMPTS: u32 = 4;

/// Settings of the observer.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Settings {
    /// How long to wait for one thread's answer.
    pub(crate) timeout: Duration,
}

/// Proves batches unreachable by observing every unregistered thread.
pub(crate) struct SignalObserver {
    pub(crate) settings: Settings,
    /// Threads already reported as unobservable, by key.
    pub(crate) warned: HashSet<u64>,
}

/// The outcome of one [`SignalObserver::observe_all`].
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct RoundReport {
    /// Threads asked.
    pub(crate) asked: usize,
    /// Threads that could not be proven.
    pub(crate) unproven: usize,
}

impl SignalObserver {
    pub(crate) fn new(settings: Settings) -> SignalObserver {
        SignalObserver { settings, warned: HashSet::new() }
    }

    /// Asks every thread of `asked` (`(tid, wanted)`: the groups to prove for
    /// it) to observe itself, all at once (in turns of [`SLOTS`]), and again
    /// a few times those that hold what is looked for; returns, for each,
    /// the groups it was seen without at least once (`None`: no answer, or a
    /// stack it could not bound).
    fn observe_many(&self, signal: i32, asked: &[(u64, u64)]) -> Vec<Option<u64>> {
        let mailboxes = MAILBOXES.get_or_init(|| (0..SLOTS).map(|_| Mailbox::new()).collect());
        let mut free: Vec<Option<u64>> = vec![Some(0); asked.len()];
        for attempt in 0..ATTEMPTS {
            let again: Vec<usize> =
                (0..asked.len()).filter(|&i| free[i].is_some_and(|f| f & asked[i].1 != asked[i].1)).collect();
            if again.is_empty() {
                break;
            }
            if attempt > 0 {
                // Give threads inside old code a moment to return from it.
                std::thread::sleep(Duration::from_micros(50 << attempt));
            }
            for turn in again.chunks(SLOTS) {
                let answers = self.ask(signal, mailboxes, turn.iter().map(|&i| asked[i].0));
                for (&i, answer) in turn.iter().zip(answers) {
                    free[i] = match answer {
                        Some((CLEAN | HOLDS, hits)) => free[i].map(|f| f | !hits),
                        _ => None,
                    };
                }
            }
        }
        free
    }

    /// Signals every thread of `tids` with a request in a mailbox of its
    /// own, then waits for every answer (up to the timeout for a request
    /// nobody claimed); returns each thread's `(verdict, hits)`, `None` if it
    /// did not answer. A thread that is gone answers `(CLEAN, 0)`: an exited
    /// thread runs nothing.
    fn ask(&self, signal: i32, mailboxes: &[Mailbox], tids: impl Iterator<Item = u64>) -> Vec<Option<(u32, u64)>> {
        let mut tickets = Vec::new();
        let mut out = Vec::new();
        for (mailbox, tid) in mailboxes.iter().zip(tids) {
            let ticket = mailbox.request(tid as u32);
            match imp::send(tid, signal) {
                Ok(true) => {
                    tickets.push(Some(ticket));
                    out.push(None);
                }
                Ok(false) => {
                    mailbox.abandon(ticket);
                    tickets.push(None);
                    out.push(Some((CLEAN, 0)));
                }
                Err(e) => {
                    tracing::debug!(tid, error = %e, "cannot signal a thread");
                    mailbox.abandon(ticket);
                    tickets.push(None);
                    out.push(None);
                }
            }
        }
        let deadline = Instant::now() + self.settings.timeout;
        loop {
            // Ordering: acquire; a count read before the mailboxes, so that
            // an answer after the checks below wakes the wait.
            let seen = ANSWERS.load(Ordering::Acquire);
            let mut waiting = false;
            let late = Instant::now() >= deadline;
            for (i, mailbox) in mailboxes.iter().enumerate().take(tickets.len()) {
                let Some(ticket) = tickets[i] else { continue };
                match mailbox.poll(ticket) {
                    Answer::Answered { verdict, hits } => {
                        out[i] = Some((verdict, hits));
                        tickets[i] = None;
                    }
                    // Claimed: the handler cannot block, wait for it.
                    Answer::Scanning => waiting = true,
                    Answer::Waiting => {
                        if late && mailbox.abandon(ticket) {
                            tracing::debug!("a thread did not answer the safepoint signal in time");
                            tickets[i] = None;
                        } else {
                            waiting = true;
                        }
                    }
                }
            }
            if !waiting {
                return out;
            }
            let left = deadline.saturating_duration_since(Instant::now()).max(Duration::from_micros(100));
            imp::wait(&ANSWERS, seen, left.min(Duration::from_millis(10)));
        }
    }

    /// Observes every thread of the process but the caller and `exempt`
    /// for `batches`; marks what is proven. Returns `None` if observation is
    /// not possible here.
    fn observe_all<T: Footprint>(&mut self, batches: &mut [Batch<T>], exempt: &HashSet<u64>) -> Option<RoundReport> {
        let _round = ROUND.lock().unwrap_or_else(|e| e.into_inner());
        let signal = imp::signal()?;
        // Group bits: batch `i` is group `i % 64`. The oldest batches whose
        // ranges fit the table are looked for; the others wait for a later
        // round (merging ranges to fit could swallow the current code, in
        // which every busy thread is found).
        let mut ranges: Vec<(Range<usize>, u64)> = Vec::new();
        let mut looked_for = batches.len();
        for (i, batch) in batches.iter().enumerate() {
            if batch.unreachable {
                continue;
            }
            let bit = 1u64 << (i % 64);
            let own: Vec<Range<usize>> = batch.items.ranges().into_iter().filter(|r| !r.is_empty()).collect();
            if !ranges.is_empty() && ranges.len() + own.len() > MAX_RANGES {
                looked_for = i;
                break;
            }
            ranges.extend(own.into_iter().map(|r| (r, bit)));
        }
        let batches = &mut batches[..looked_for];
        if ranges.is_empty() {
            for batch in batches.iter_mut() {
                batch.unreachable = true;
            }
            return Some(RoundReport::default());
        }
        let ranges = normalise(ranges, MAX_RANGES);
        let stacks = match imp::stack_mappings() {
            Ok(stacks) => stacks,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the process's mappings; threads that never registered cannot be observed");
                return None;
            }
        };
        TABLES.publish_ranges(&ranges);
        TABLES.publish_stacks(&stacks);
        let me = current_tid();
        let mut report = RoundReport::default();
        for _ in 0..4 {
            let threads = match imp::list_threads(signal) {
                Ok(threads) => threads,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot list the process's threads; threads that never registered cannot be observed");
                    return None;
                }
            };
            let listed: Vec<&ThreadInfo> =
                threads.iter().filter(|t| t.tid != me && !exempt.contains(&t.tid) && !t.emulator).collect();
            let mut asked_now = 0;
            let mut failed = false;
            // `(key, tid, wanted)` of the threads to ask.
            let mut asked: Vec<(u64, u64, u64)> = Vec::new();
            for thread in &listed {
                let key = thread.key();
                let mut wanted = 0u64;
                for (i, batch) in batches.iter().enumerate() {
                    if !batch.unreachable && !batch.proven.contains(&key) {
                        wanted |= 1 << (i % 64);
                    }
                }
                if wanted == 0 {
                    continue;
                }
                asked_now += 1;
                // A mask that blocks the signal may be for a moment only: the
                // thread runs the handler of an earlier request (which blocks
                // the signal until it returns), or is starting a thread.
                if thread.blocks_signal && still_blocks(thread.tid, signal) {
                    if self.warned.insert(key) {
                        tracing::warn!(
                            tid = thread.tid,
                            "a thread that never registered blocks the safepoint signal: replaced modules stay loaded while it lives (register it with Runtime::register_thread)"
                        );
                    }
                    failed = true;
                    continue;
                }
                asked.push((key, thread.tid, wanted));
            }
            report.asked += asked.len();
            let tids: Vec<(u64, u64)> = asked.iter().map(|&(_, tid, wanted)| (tid, wanted)).collect();
            let answers = self.observe_many(signal, &tids);
            for (&(key, _, wanted), free) in asked.iter().zip(answers) {
                let Some(free) = free else {
                    failed = true;
                    continue;
                };
                for (i, batch) in batches.iter_mut().enumerate() {
                    if free & (1 << (i % 64)) != 0 && !batch.proven.contains(&key) {
                        batch.proven.push(key);
                    }
                }
                if free & wanted != wanted {
                    failed = true;
                }
            }
            if asked_now == 0 {
                // Every thread of this listing, taken after the registered
                // threads were checked, is proven for these batches.
                let keys: HashSet<u64> = listed.iter().map(|t| t.key()).collect();
                for batch in batches.iter_mut() {
                    batch.proven.retain(|k| keys.contains(k));
                    if listed.iter().all(|t| batch.proven.contains(&t.key())) {
                        batch.unreachable = true;
                    }
                }
                return Some(report);
            }
            if failed {
                let keys: HashSet<u64> = listed.iter().map(|t| t.key()).collect();
                for batch in batches.iter_mut() {
                    batch.proven.retain(|k| keys.contains(k));
                }
                report.unproven = listed
                    .iter()
                    .filter(|t| batches.iter().any(|b| !b.unreachable && !b.proven.contains(&t.key())))
                    .count();
                return Some(report);
            }
            // Everything asked was proven: list again, for threads started
            // meanwhile.
        }
        report.unproven = 1;
        Some(report)
    }
}

impl<T: Footprint> Observer<T> for SignalObserver {
    fn prove(&mut self, batches: &mut [Batch<T>], registered: &[u64]) {
        let exempt: HashSet<u64> = registered.iter().copied().collect();
        let report = self.observe_all(batches, &exempt);
        if let Some(report) = report
            && report.unproven > 0
        {
            tracing::debug!(asked = report.asked, unproven = report.unproven, "some threads still hold retired code");
        }
    }
}

/// Whether thread `tid` keeps blocking `signal` for a little while (a few
/// looks, 200 µs apart).
fn still_blocks(tid: u64, signal: i32) -> bool {
    for _ in 0..5 {
        if !imp::blocks(tid, signal) {
            return false;
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    true
}

/// Sorts ranges, merges overlapping ones (uniting their groups), and merges
/// neighbours until at most `max` remain.
fn normalise(mut ranges: Vec<(Range<usize>, u64)>, max: usize) -> Vec<(Range<usize>, u64)> {
    ranges.sort_by_key(|(r, _)| r.start);
    let mut out: Vec<(Range<usize>, u64)> = Vec::with_capacity(ranges.len());
    for (range, groups) in ranges {
        match out.last_mut() {
            Some((last, g)) if range.start < last.end => {
                last.end = last.end.max(range.end);
                *g |= groups;
            }
            _ => out.push((range, groups)),
        }
    }
    while out.len() > max {
        // Merge the pair with the smallest gap.
        let i = (0..out.len() - 1).min_by_key(|&i| out[i + 1].0.start - out[i].0.end).expect("two ranges");
        let (next, groups) = out.remove(i + 1);
        out[i].0.end = next.end;
        out[i].1 |= groups;
    }
    out
}

/// Observes every thread but the caller and `exempt` for `ranges`,
/// retrying a few times; whether all of them were seen without a pointer
/// into any range. False where threads cannot be observed.
pub(crate) fn all_threads_clear_of(ranges: Vec<Range<usize>>, exempt: &HashSet<u64>, settings: Settings) -> bool {
    struct Plain(Vec<Range<usize>>);
    impl Footprint for Plain {
        fn ranges(&self) -> Vec<Range<usize>> {
            self.0.clone()
        }
    }
    let mut batch = [Batch { epoch: 0, items: Plain(ranges), unreachable: false, proven: Vec::new() }];
    let mut observer = SignalObserver::new(settings);
    for _ in 0..3 {
        if observer.observe_all(&mut batch, exempt).is_none() {
            return false;
        }
        if batch[0].unreachable {
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::AtomicBool;

    const SETTINGS: Settings = Settings { timeout: Duration::from_millis(500) };

    /// 4 KiB of addresses that no pointer of the process can ever hold: they
    /// lie outside the user address space of x86-64 and AArch64 (bit 62
    /// set), so no stale word on a thread's stack (stacks of exited threads
    /// are reused, dead slots are not cleared) can fall into them by
    /// accident. The observation never dereferences what it looks for. A
    /// different block each time.
    fn fresh_memory() -> Range<usize> {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let start = 0x4000_5AFE_0000_0000 + NEXT.fetch_add(1, Ordering::Relaxed) * 0x1_0000;
        start..start + 4096
    }

    /// Waits (with a deadline) until `f` is true.
    fn eventually(mut f: impl FnMut() -> bool) -> bool {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if f() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        false
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_thread_holding_an_address_is_not_proven_until_it_lets_go() {
        let range = fresh_memory();
        let (stop, started) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)));
        // Like a stub's slot: the thread loads the address from it again
        // and again and keeps it in its frame meanwhile; re-pointing the
        // slot makes it let go.
        let slot = Arc::new(AtomicUsize::new(range.start + 24));
        let thread = {
            let (stop, started, slot) = (stop.clone(), started.clone(), slot.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Acquire) {
                    let mut kept = std::hint::black_box(slot.load(Ordering::Acquire));
                    std::hint::black_box(&mut kept);
                    started.store(true, Ordering::Release);
                }
            })
        };
        while !started.load(Ordering::Acquire) {
            std::hint::spin_loop();
        }
        for _ in 0..3 {
            assert!(!all_threads_clear_of(vec![range.clone()], &HashSet::new(), SETTINGS), "the address was found");
        }
        slot.store(0, Ordering::Release);
        assert!(eventually(|| all_threads_clear_of(vec![range.clone()], &HashSet::new(), SETTINGS)));
        stop.store(true, Ordering::Release);
        thread.join().unwrap();
    }

    /// Prints what one observation of every thread costs, with idle and
    /// with busy threads (no assertion on time):
    /// `cargo test -p hcr-runtime --lib -- --ignored --nocapture observation_cost`.
    #[cfg(target_os = "linux")]
    #[test]
    #[ignore = "a measurement; run by hand"]
    fn observation_cost() {
        let range = fresh_memory();
        for (threads, busy) in [(0, false), (4, false), (4, true), (16, false)] {
            let stop = Arc::new(AtomicBool::new(false));
            let handles: Vec<_> = (0..threads)
                .map(|_| {
                    let stop = stop.clone();
                    std::thread::spawn(move || {
                        while !stop.load(Ordering::Acquire) {
                            if busy {
                                std::hint::spin_loop();
                            } else {
                                std::thread::sleep(Duration::from_millis(1));
                            }
                        }
                    })
                })
                .collect();
            let rounds = 200;
            let started = Instant::now();
            for _ in 0..rounds {
                assert!(all_threads_clear_of(vec![range.clone()], &HashSet::new(), SETTINGS));
            }
            let per_round = started.elapsed() / rounds;
            let total = std::fs::read_dir("/proc/self/task").unwrap().count() - 1;
            println!(
                "{threads} extra {} threads ({total} observed): {per_round:?} per round, {:?} per observed thread",
                if busy { "busy" } else { "sleeping" },
                per_round / total.max(1) as u32
            );
            stop.store(true, Ordering::Release);
            handles.into_iter().for_each(|h| h.join().unwrap());
        }
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_thread_that_blocks_the_signal_is_never_proven_and_never_waited_for_long() {
        let range = fresh_memory();
        let (blocked, unblock, done) =
            (Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)));
        let thread = {
            let (blocked, unblock, done) = (blocked.clone(), unblock.clone(), done.clone());
            std::thread::spawn(move || {
                // SAFETY: plain signal-mask calls on a valid set.
                unsafe {
                    let mut all: libc::sigset_t = std::mem::zeroed();
                    libc::sigfillset(&mut all);
                    let mut old: libc::sigset_t = std::mem::zeroed();
                    libc::pthread_sigmask(libc::SIG_BLOCK, &all, &mut old);
                    blocked.store(true, Ordering::Release);
                    while !unblock.load(Ordering::Acquire) {
                        std::hint::spin_loop();
                    }
                    libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
                }
                while !done.load(Ordering::Acquire) {
                    std::hint::spin_loop();
                }
            })
        };
        while !blocked.load(Ordering::Acquire) {
            std::hint::spin_loop();
        }
        let started = Instant::now();
        assert!(!all_threads_clear_of(vec![range.clone()], &HashSet::new(), SETTINGS), "it cannot be observed");
        assert!(started.elapsed() < Duration::from_secs(10), "not waited for: it is never signalled");
        unblock.store(true, Ordering::Release);
        assert!(eventually(|| all_threads_clear_of(vec![range.clone()], &HashSet::new(), SETTINGS)));
        done.store(true, Ordering::Release);
        thread.join().unwrap();
    }

    #[test]
    fn ranges_are_sorted_merged_and_bounded() {
        let ranges = vec![(30..40, 2), (0..10, 1), (5..12, 4), (50..60, 1), (100..110, 8)];
        let merged = normalise(ranges.clone(), 16);
        assert_eq!(merged, vec![(0..12, 5), (30..40, 2), (50..60, 1), (100..110, 8)]);
        let bounded = normalise(ranges, 2);
        assert_eq!(bounded, vec![(0..60, 7), (100..110, 8)]);
    }
}
