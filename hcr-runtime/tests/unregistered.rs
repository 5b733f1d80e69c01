//! Threads that never registered with the runtime call module code in tight
//! loops while the main thread reloads the module, under the default
//! configuration: none of them may crash, each must run every new build,
//! and replaced libraries must still be unloaded (each worker is observed
//! outside the old code after a while, by the runtime's collector thread,
//! while the reloads go on).

mod support;

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hcr_runtime::{Config, ReloadTimings, Runtime};
use support::{Scratch, fixture, fn1, mapped_copies};

const WORKERS: usize = 4;

/// The two tests take turns: each has its four workers to itself on a
/// small machine.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// 1,000 reloads natively; under an emulator (the AArch64 lane), where every
/// new library is translated again, fewer.
fn reloads() -> usize {
    if support::emulated() {
        println!("running under an emulator: 100 reloads instead of 1,000");
        100
    } else {
        1_000
    }
}

/// Calls between yields, for [`Work::Tiny`] and [`Work::Spin20`].
const YIELD_EVERY: [u64; 2] = [10_000, 2];

#[derive(Clone, Copy, PartialEq)]
enum Work {
    /// `answer(x)`: a few instructions.
    Tiny,
    /// `spin(20)`: 20 µs inside the module per call.
    Spin20,
}

/// Lowers the calling thread's scheduling priority a little (nice + 5):
/// the busy workers then run whenever the reloading thread waits for them,
/// but slow the reloads down less on a machine with fewer cores than
/// threads. They are still preempted at any instruction, inside module code
/// too.
fn lower_priority() {
    // SAFETY: on Linux, PRIO_PROCESS with id 0 reads and sets the calling
    // thread's nice value; lowering it needs no privilege.
    let rc = unsafe {
        let nice = libc::getpriority(libc::PRIO_PROCESS, 0);
        libc::setpriority(libc::PRIO_PROCESS, 0, (nice + 5).min(19))
    };
    assert_eq!(rc, 0, "setpriority: {}", std::io::Error::last_os_error());
}

fn reload_under(work: Work, reloads: usize, name: &str) {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let s = Scratch::new(name);
    let v1 = fixture("counter", &[]);
    let v2 = fixture("counter", &["v2"]);
    let path = s.install(&v1, "counter");
    // Files are installed whole: no settle wait in the measured latency.
    let config = Config::new().with_stub_base(0).with_stub_capacity(4096).with_settle_time(Duration::ZERO);
    let rt = Runtime::with_config(config).unwrap();
    rt.load(&path).unwrap();
    let answer = fn1(&rt, "counter", "answer");
    let spin = fn1(&rt, "counter", "spin");
    let stop = AtomicBool::new(false);
    // The version each worker saw last (1 or 2).
    let seen: [AtomicU64; WORKERS] = [const { AtomicU64::new(0) }; WORKERS];
    let started = Instant::now();
    let mut max_pending = 0;
    let mut latencies = Vec::with_capacity(reloads);
    let mut phases = ReloadTimings::default();
    let mut catch_up = Duration::ZERO;

    let calls: u64 = std::thread::scope(|scope| {
        // A failing assertion below stops the workers too (the scope waits
        // for them): the test fails instead of hanging.
        let _stop = support::SetOnDrop(&stop);
        let workers: Vec<_> = (0..WORKERS)
            .map(|w| {
                let (stop, seen) = (&stop, &seen);
                scope.spawn(move || {
                    lower_priority();
                    let mut calls = 0u64;
                    let mut x = w as u64;
                    while !stop.load(Ordering::Relaxed) {
                        let version = match work {
                            Work::Tiny => answer(x) - x,
                            Work::Spin20 => spin(20),
                        };
                        assert!(version == 1 || version == 2, "worker {w} got version {version}");
                        seen[w].store(version, Ordering::Relaxed);
                        calls += 1;
                        // Every 50 µs or so, let the other workers have the
                        // core: each runs the new build soon after a reload.
                        if calls.is_multiple_of(YIELD_EVERY[work as usize]) {
                            std::thread::yield_now();
                        }
                        x = (x + 7) % 1_000_003;
                    }
                    calls
                })
            })
            .collect();
        for i in 0..reloads {
            let (artifact, version) = if i % 2 == 0 { (&v2, 2) } else { (&v1, 1) };
            s.install(artifact, "counter");
            let t = Instant::now();
            let report = rt.perform_reload().expect("every reload commits");
            latencies.push(t.elapsed());
            assert_eq!(report.reloaded, ["counter"], "reload {i}");
            phases.copy += report.timings.copy;
            phases.load += report.timings.load;
            phases.register += report.timings.register;
            phases.patch += report.timings.patch;
            phases.unload += report.timings.unload;
            let t = Instant::now();
            // Every worker runs the new build before the next reload.
            let deadline = Instant::now() + Duration::from_secs(30);
            while seen.iter().any(|v| v.load(Ordering::Relaxed) != version) {
                assert!(Instant::now() < deadline, "reload {i}: a worker never ran version {version}");
                // Leave the cores to the workers meanwhile.
                std::thread::sleep(Duration::from_micros(50));
            }
            catch_up += t.elapsed();
            max_pending = max_pending.max(rt.stats().retired_pending);
        }
        stop.store(true, Ordering::Relaxed);
        workers.into_iter().map(|w| w.join().expect("no worker panicked")).sum()
    });

    let pending_before_end = rt.stats().retired_pending;
    // The workers are gone: whatever is still retired goes now.
    support::wait_until_reclaimed(&rt);
    let stats = rt.stats();
    latencies.sort_unstable();
    let mean = latencies.iter().sum::<Duration>() / reloads as u32;
    println!(
        "{name}: {reloads} reloads, {calls} calls from {WORKERS} unregistered threads in {:.1} s; \
         perform_reload mean {mean:.2?}, median {:.2?}, max {:.2?} \
         (mean copy {:.2?}, load {:.2?}, init {:.2?}, commit {:.2?}, retire {:.2?}); \
         workers ran the new build {:.2?} after the reload on average; \
         replaced libraries freed after {:.2?} on average (longest {:.2?}); \
         at most {max_pending} waited at once, {pending_before_end} at the end",
        started.elapsed().as_secs_f64(),
        latencies[reloads / 2],
        latencies[reloads - 1],
        phases.copy / reloads as u32,
        phases.load / reloads as u32,
        phases.register / reloads as u32,
        phases.patch / reloads as u32,
        phases.unload / reloads as u32,
        catch_up / reloads as u32,
        stats.retired_wait_mean,
        stats.retired_wait_max,
    );
    assert!(calls > 0);
    assert_eq!(stats.retired_pending, 0);
    assert_eq!(stats.unloads, reloads as u64, "every replaced library was unloaded");
    assert_eq!(mapped_copies(&rt.private_dir()), 1, "only the current library is still mapped");
    // Old libraries were unloaded while the workers ran, not all at the end.
    assert!(max_pending < reloads / 4, "{max_pending} replaced libraries waited at once");
}

#[test]
fn unregistered_threads_calling_tiny_procs_survive_a_thousand_reloads() {
    reload_under(Work::Tiny, reloads(), "unregistered-tiny");
}

#[test]
fn unregistered_threads_calling_20_us_procs_survive_a_thousand_reloads() {
    reload_under(Work::Spin20, reloads(), "unregistered-spin");
}

/// Prints how long `perform_reload` takes with no other thread, with four
/// unregistered threads and with four registered threads calling module
/// code in tight loops (at normal priority, never yielding), and how long
/// replaced libraries waited to be freed. A measurement, no assertion on
/// time (the benchmark `reload_busy` of `hcr-benches` measures the same in
/// a release build):
/// `cargo test -p hcr-runtime --test unregistered -- --ignored --nocapture reload_latency`.
#[test]
#[ignore = "a measurement; run by hand"]
fn reload_latency_with_busy_threads() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let reloads = 300;
    for (case, threads, registered) in
        [("no other thread", 0, false), ("4 unregistered", 4, false), ("4 registered", 4, true)]
    {
        let s = Scratch::new("latency");
        let (v1, v2) = (fixture("counter", &[]), fixture("counter", &["v2"]));
        let path = s.install(&v1, "counter");
        let config = Config::new().with_stub_base(0).with_stub_capacity(4096).with_settle_time(Duration::ZERO);
        let rt = Runtime::with_config(config).unwrap();
        rt.load(&path).unwrap();
        let answer = fn1(&rt, "counter", "answer");
        let stop = AtomicBool::new(false);
        let mut latencies = Vec::with_capacity(reloads);
        std::thread::scope(|scope| {
            let _stop = support::SetOnDrop(&stop);
            for w in 0..threads {
                let (rt, stop) = (&rt, &stop);
                scope.spawn(move || {
                    let guard = registered.then(|| rt.register_thread());
                    let mut x = w as u64;
                    while !stop.load(Ordering::Relaxed) {
                        for _ in 0..64 {
                            x = answer(x) % 1_000_003;
                        }
                        if let Some(guard) = &guard {
                            guard.quiescent();
                        }
                    }
                });
            }
            for i in 0..reloads {
                s.install(if i % 2 == 0 { &v2 } else { &v1 }, "counter");
                let t = Instant::now();
                rt.perform_reload().expect("every reload commits");
                latencies.push(t.elapsed());
            }
        });
        support::wait_until_reclaimed(&rt);
        let stats = rt.stats();
        latencies.sort_unstable();
        println!(
            "{case}: perform_reload median {:.2?}, 90th percentile {:.2?}, max {:.2?}; replaced libraries freed after {:.2?} on average (longest {:.2?})",
            latencies[reloads / 2],
            latencies[reloads * 9 / 10],
            latencies[reloads - 1],
            stats.retired_wait_mean,
            stats.retired_wait_max,
        );
    }
}
