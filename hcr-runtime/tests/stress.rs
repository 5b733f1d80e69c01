//! Reloading under load: worker threads call reloadable functions in tight
//! loops while the main thread reloads the module back and forth.
//!
//! The normal test reloads 1,000 times; the soak variant 100,000 times.
//! After each commit, every worker must run the new version before the next
//! reload (counted per worker), every answer must be one version's, and
//! memory must stay flat (RSS, and the heap's own accounting, which is
//! what is checked under an emulator):
//!
//! ```sh
//! cargo test -p hcr-runtime --test stress -- --ignored --nocapture soak
//! ```

mod support;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hcr_runtime::{Config, Runtime};
use support::{Scratch, emulated, fixture, fn0, fn1, mapped_copies};

const WORKERS: usize = 4;

/// Heap memory in use by this process, in KiB (glibc's own accounting; under
/// an emulator, the emulated program's heap only).
fn heap_kib() -> u64 {
    // SAFETY: mallinfo2 has no preconditions.
    let info = unsafe { libc::mallinfo2() };
    ((info.uordblks + info.hblkhd) / 1024) as u64
}

/// Resident memory of this process, in KiB.
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

struct Outcome {
    calls: u64,
    wrong_answers: u64,
    /// Per worker: how many commits it saw the new version of.
    observed: Vec<u64>,
    rss_kib: Vec<u64>,
    heap_kib: Vec<u64>,
    elapsed: Duration,
}

/// Packs a commit number and the version it made current.
fn expectation(commit: u64, version: u64) -> u64 {
    commit << 8 | version
}

fn stress(reloads: usize, name: &str) -> Outcome {
    let s = Scratch::new(name);
    let v1 = fixture("counter", &[]);
    let v2 = fixture("counter", &["v2"]);
    let path = s.install(&v1, "counter");
    // Files are installed whole (renamed into place): no settle wait.
    let rt = Runtime::with_config(Config::new().with_stub_base(0).with_settle_time(Duration::ZERO)).unwrap();
    rt.load(&path).unwrap();
    let answer = fn1(&rt, "counter", "answer");
    let bump = fn0(&rt, "counter", "bump");
    let count = fn0(&rt, "counter", "count");
    let stop = AtomicBool::new(false);
    // The last commit and the version it made current, published by the
    // reloading thread after the commit (release), read by the workers
    // (acquire): a worker that reads commit `n` calls after it.
    let expected = AtomicU64::new(expectation(0, 1));
    // Per worker: the last commit whose version it saw answer.
    let seen: Vec<AtomicU64> = (0..WORKERS).map(|_| AtomicU64::new(0)).collect();
    let started = Instant::now();

    let (calls, wrong_answers, observed, rss, heap) = std::thread::scope(|scope| {
        // A failing assertion below stops the workers too (the scope waits
        // for them): the test fails instead of hanging.
        let _stop = support::SetOnDrop(&stop);
        let workers: Vec<_> = (0..WORKERS)
            .map(|w| {
                let (rt, stop, expected, seen) = (&rt, &stop, &expected, &seen[w]);
                scope.spawn(move || {
                    // Registered before the first call into module code.
                    let guard = rt.register_thread();
                    let (mut calls, mut wrong, mut observed) = (0u64, 0u64, 0u64);
                    let mut x = w as u64;
                    // Relaxed: `stop` only ends the loop; joining the
                    // thread orders everything after it.
                    while !stop.load(Ordering::Relaxed) {
                        let now = expected.load(Ordering::Acquire);
                        let (commit, version) = (now >> 8, now & 0xFF);
                        for _ in 0..64 {
                            let r = answer(x);
                            if r != x + 1 && r != x + 2 {
                                wrong += 1;
                            }
                            // Relaxed load: only this thread stores `seen`.
                            // Release store: pairs with the reloading
                            // thread's acquire load, which waits for it.
                            if r == x + version && seen.load(Ordering::Relaxed) < commit {
                                observed += 1;
                                seen.store(commit, Ordering::Release);
                            }
                            bump();
                            calls += 1;
                            x = (x + 7) % 1_000_003;
                        }
                        guard.quiescent();
                    }
                    (calls, wrong, observed)
                })
            })
            .collect();
        while rt.stats().threads < WORKERS {
            std::thread::yield_now();
        }
        let (mut rss, mut heap) = (Vec::new(), Vec::new());
        let sample_every = (reloads / 20).max(1);
        for i in 0..reloads {
            s.install(if i % 2 == 0 { &v2 } else { &v1 }, "counter");
            let report = rt.perform_reload().expect("every reload commits");
            assert_eq!(report.reloaded, ["counter"], "reload {i}");
            let commit = i as u64 + 1;
            expected.store(expectation(commit, if i % 2 == 0 { 2 } else { 1 }), Ordering::Release);
            // Every worker runs the new code before the next reload.
            let deadline = Instant::now() + Duration::from_secs(30);
            while seen.iter().any(|w| w.load(Ordering::Acquire) < commit) {
                assert!(Instant::now() < deadline, "a worker never ran the code of commit {commit}");
                std::thread::yield_now();
            }
            if i % sample_every == 0 {
                rss.push(rss_kib());
                heap.push(heap_kib());
            }
        }
        stop.store(true, Ordering::Relaxed);
        let mut totals = (0, 0, Vec::new());
        for worker in workers {
            let (calls, wrong, observed) = worker.join().expect("no worker crashed");
            totals.0 += calls;
            totals.1 += wrong;
            totals.2.push(observed);
        }
        (totals.0, totals.1, totals.2, rss, heap)
    });

    // Every increment made through module code is in the global.
    assert_eq!(count(), calls, "the counter equals the exact number of increments");
    // The workers are gone: everything retired can be closed, and is.
    support::wait_until_reclaimed(&rt);
    let stats = rt.stats();
    assert_eq!(stats.retired_pending, 0);
    assert_eq!(stats.unloads, reloads as u64, "every replaced library was unloaded");
    assert_eq!(mapped_copies(&rt.private_dir()), 1, "only the current library is still mapped");
    assert_eq!(stats.threads, 0);
    Outcome { calls, wrong_answers, observed, rss_kib: rss, heap_kib: heap, elapsed: started.elapsed() }
}

fn report(what: &str, reloads: usize, o: &Outcome) {
    let warm = |v: &[u64]| v.get(2).copied().unwrap_or(0);
    let last = |v: &[u64]| v.last().copied().unwrap_or(0);
    println!(
        "{what}: {reloads} reloads, {} calls from {WORKERS} threads in {:.1} s; after warm-up -> end: RSS {} -> {} KiB, heap {} -> {} KiB",
        o.calls,
        o.elapsed.as_secs_f64(),
        warm(&o.rss_kib),
        last(&o.rss_kib),
        warm(&o.heap_kib),
        last(&o.heap_kib),
    );
}

#[test]
fn four_threads_call_through_stubs_while_the_module_reloads_a_thousand_times() {
    // Under an emulator (the AArch64 lane) every new library is translated
    // again, which makes each reload a hundred times slower.
    let reloads = if emulated() {
        println!("running under an emulator: 100 reloads instead of 1,000");
        100
    } else {
        1_000
    };
    let outcome = stress(reloads, "stress");
    report("stress", reloads, &outcome);
    assert_eq!(outcome.wrong_answers, 0, "every call returned a v1 or a v2 answer");
    assert_eq!(outcome.observed, [reloads as u64; WORKERS], "every worker ran the new code of every commit");
    // Memory does not grow with the number of reloads: compare the end
    // with the first samples after warm-up.
    let (warm, last) = (outcome.heap_kib[2], *outcome.heap_kib.last().unwrap());
    assert!(last < warm + 1024, "the heap grew from {warm} KiB to {last} KiB over {reloads} reloads");
    if emulated() {
        println!("RSS not checked: under an emulator it includes the emulator's translation cache");
    } else {
        let (warm, last) = (outcome.rss_kib[2], *outcome.rss_kib.last().unwrap());
        assert!(last < warm + 8 * 1024, "RSS grew from {warm} KiB to {last} KiB over {reloads} reloads");
    }
}

#[test]
#[ignore = "soak: 100,000 reloads; run with `cargo test -p hcr-runtime --test stress -- --ignored soak`"]
fn soak() {
    let reloads = 100_000;
    let outcome = stress(reloads, "soak");
    report("soak", reloads, &outcome);
    assert_eq!(outcome.wrong_answers, 0);
    assert_eq!(outcome.observed, [reloads as u64; WORKERS]);
    // Flat: the end of the run uses no more memory than the first tenth
    // after warm-up, give or take allocator noise.
    let (early, late) = (outcome.heap_kib[2], *outcome.heap_kib.last().unwrap());
    assert!(late < early + 1024, "the heap grew from {early} KiB to {late} KiB over {reloads} reloads");
    let (early, late) = (outcome.rss_kib[2], *outcome.rss_kib.last().unwrap());
    assert!(late < early + 8 * 1024, "RSS grew from {early} KiB to {late} KiB over {reloads} reloads");
}
