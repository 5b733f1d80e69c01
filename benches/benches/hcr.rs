//! hcr's benchmarks, in one process and one run:
//!
//! ```sh
//! cargo bench -p hcr-benches
//! ```
//!
//! * `call_overhead`: the same trivial `u64 -> u64` function called directly,
//!   through a plain pointer, through hcr's generated bindings (which read the
//!   stub's slot and call its target), through the stub's address (what
//!   callbacks hold), through the static switch, through hot-lib-reloader's
//!   `hot_module` wrapper and through subsecond's `HotFn` with a jump table
//!   installed; and a reloadable Rust function, `add(&Counter, u64) -> u64`,
//!   through a plain pointer, hcr's bindings and its stub;
//! * `call_threads`: throughput of hcr and hot-lib-reloader calls from 1 and 2
//!   threads;
//! * `game`: one frame of the game example (`update`, then the field drawn);
//! * `reload`: `perform_reload` for modules of 10, 1,000 and 10,000 procs
//!   (each with 100 globals), `reload_needed` with 50 modules, registration
//!   of 10,000 procs, and reloads of the game example's debug module in a
//!   debug host built without the workspace's opt-level override
//!   (`debug_host_game`, timed inside that host);
//! * `reload_busy`: `perform_reload` of the 10-proc module while four other
//!   threads call it in tight loops, unregistered (observed by the
//!   runtime's collector thread) or registered, against no such threads;
//!   and how long replaced libraries waited to be freed;
//! * edit-to-live for the hello example (median of 10 edits);
//! * memory per stub with 1,000,000 stubs registered.
//!
//! At the end it prints the results against the project's targets and writes
//! them, with a plot of reload latency, into `benches/README.md`. Given a
//! filter (`cargo bench -p hcr-benches --bench hcr -- call_overhead`), it
//! builds and runs only the groups the filter names and prints their medians
//! against the targets instead.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use std::hint::black_box;

use bench_module::Counter;
use criterion::{Criterion, Throughput};
use hcr_benches::{
    DebugHostGame, Filter, GeneratedModule, bench_dir, build_release, generate_modules, heap_bytes, install,
    modules_target, resident_in, rss_bytes, workspace_dir,
};
use hcr_runtime::{Config, ReloadTimings, Runtime};

/// Bindings through stubs.
mod hot {
    include!(concat!(env!("OUT_DIR"), "/hcr.rs"));
}

/// The same bindings with the static switch on.
mod stat {
    include!(concat!(env!("OUT_DIR"), "/hcr_static.rs"));
}

/// hot-lib-reloader's wrapper around the same function, as its users write it.
#[hot_lib_reloader::hot_module(dylib = "bench_hlr", lib_dir = concat!(env!("HCR_BENCH_DIR"), "/target/release"))]
mod hlr {
    hot_functions_from_file!("benches/hlr/src/lib.rs");
}

const INPUT: u64 = 41;

struct Setup {
    module: PathBuf,
    patch: PathBuf,
    game_logic: PathBuf,
    /// What only the `reload` group needs (built when it runs).
    reload: Option<ReloadSetup>,
}

struct ReloadSetup {
    scaling: Vec<GeneratedModule>,
    tiny: Vec<GeneratedModule>,
    game: DebugHostGame,
}

fn setup(filter: &Filter) -> Setup {
    eprintln!("building the benchmark modules (optimised) ...");
    let module = build_release(
        &["hcr-bench-module", "hcr-bench-hlr", "hcr-bench-subsecond-patch", "game-logic"],
        "bench_module",
    );
    let release = modules_target().join("release");
    let patch = release.join(hcr_benches::library_file("bench_subsecond_patch"));
    let game_logic = release.join(hcr_benches::library_file("game_logic"));
    let reload = filter.selects("reload").then(|| {
        eprintln!("generating and building the reload modules (debug, as a development loop builds them) ...");
        let mut specs: Vec<(String, usize, usize)> =
            vec![("procs_10".into(), 10, 100), ("procs_1000".into(), 1000, 100), ("procs_10000".into(), 10_000, 100)];
        specs.extend((0..50).map(|i| (format!("tiny_{i}"), 1, 1)));
        let refs: Vec<(&str, usize, usize)> = specs.iter().map(|(n, p, g)| (n.as_str(), *p, *g)).collect();
        let mut generated = generate_modules(&refs);
        let tiny = generated.split_off(3);
        eprintln!("building the game module (debug) and a debug host without opt-level overrides ...");
        let game = hcr_benches::debug_host_game();
        ReloadSetup { scaling: generated, tiny, game }
    });
    Setup { module, patch, game_logic, reload }
}

/// Installs a subsecond jump table, as a patch would: a thousand entries,
/// none of which is the benchmarked function.
fn install_subsecond_table(patch: &Path) {
    let mut table = subsecond::JumpTable {
        lib: patch.to_owned(),
        map: Default::default(),
        aslr_reference: subsecond::aslr_reference() as u64,
        new_base_address: 0,
        ifunc_count: 0,
    };
    for i in 0..1000u64 {
        table.map.insert(0x1000 + i * 16, 0x2000 + i * 16);
    }
    // SAFETY: the table maps no address this process calls, so no call is
    // ever redirected; the patch library only exports an empty `main`.
    unsafe { subsecond::apply_patch(table) }.expect("install a subsecond jump table");
    // SAFETY: reading the table just installed.
    assert!(unsafe { subsecond::get_jump_table() }.is_some());
}

/// `bench_module::trivial(x)` as a true direct call: `call rel32` (`bl` on
/// AArch64) to the function's own address, written out so that the compiler
/// cannot hoist the address into a register and call through it (which is
/// what it does with a call by path in a loop: a call to another crate's
/// function goes through its GOT entry, and the load of the entry is hoisted
/// out of the loop).
#[inline(always)]
fn direct_call(x: u64) -> u64 {
    imp::direct_call(x)
}

#[cfg(target_arch = "x86_64")]
mod imp {
    /// See [`super::direct_call`].
    #[inline(always)]
    pub(super) fn direct_call(x: u64) -> u64 {
        let out: u64;
        // SAFETY: `trivial` is `extern "C" fn(u64) -> u64`: its argument in
        // rdi, its result in rax; `clobber_abi("C")` declares every register
        // a C call may change, and an `asm!` block starts with the stack
        // aligned for a call (it may push below the stack pointer: no
        // `nostack`).
        unsafe {
            core::arch::asm!(
                "call {f}",
                f = sym bench_module::trivial,
                inout("rdi") x => _,
                lateout("rax") out,
                clobber_abi("C"),
            );
        }
        out
    }
}

#[cfg(target_arch = "aarch64")]
mod imp {
    /// See [`super::direct_call`].
    #[inline(always)]
    pub(super) fn direct_call(x: u64) -> u64 {
        let out: u64;
        // SAFETY: `trivial` is `extern "C" fn(u64) -> u64`: its argument and
        // its result in x0; `clobber_abi("C")` declares every register a C
        // call may change, the link register x30 included, and an `asm!`
        // block starts with the stack aligned for a call.
        unsafe {
            core::arch::asm!(
                "bl {f}",
                f = sym bench_module::trivial,
                inout("x0") x => out,
                clobber_abi("C"),
            );
        }
        out
    }
}

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
mod imp {
    /// See [`super::direct_call`]; elsewhere, a call by path (which the
    /// compiler may make through a register).
    #[inline(always)]
    pub(super) fn direct_call(x: u64) -> u64 {
        bench_module::trivial(x)
    }
}

/// One call of `u64 -> u64`, made every way hcr and the crates compared with
/// it make it. What each case executes per iteration, beyond criterion's
/// loop (`objdump -d` of the optimised bench binary, x86-64; `INPUT` goes
/// through `black_box`, one store and one load on the stack, in every case):
///
/// * `direct`: `call trivial` (rel32) into the linked-in module crate;
/// * `fn_pointer`: `call *%reg`, the `dlsym` address held in a register, into
///   the loaded library;
/// * `hcr_binding`: the generated binding: load the cell's slot pointer,
///   load the target from the stub's slot, `call *%reg` into the library;
///   the stub's code is not executed;
/// * `hcr_stub_pointer`: `call *%reg` to the stub (the address `_ptr()`,
///   `Runtime::get_proc(..).cast()` and the C API hand out, held in a
///   register), whose `jmp *slot(%rip)` goes on into the library;
/// * `hcr_stub_pointer_far`: the same, with the stub in a second runtime's
///   table reserved at `0x1000_0000`, far from the library: the call to the
///   stub and its jump each cross some 128 TiB;
/// * `hcr_static`: the static switch: the binding is a call by path to the
///   linked-in crate, which the compiler makes as it likes (here it hoists the
///   address into a register: `call *%reg`);
/// * `hot_lib_reloader`: its `hot_module` wrapper: a read lock, a symbol
///   lookup, the call;
/// * `subsecond`: `HotFn::call`: a look-up of the closure's address in the
///   installed jump table, then the call.
///
/// And one call of `add(&Counter, u64) -> u64`, a `#[reload]` function:
///
/// * `fn_pointer_rust_abi`: `call *%reg`, a `fn(&Counter, u64) -> u64`
///   pointer to `add` in the loaded library (read from the module's
///   `BENCH_MODULE_ADD`);
/// * `hcr_rust_abi`: the generated binding, panic check included: as
///   `hcr_binding`, into the guard (which is `add` itself: `add` cannot
///   panic), then a test of the returned `Result`'s tag;
/// * `hcr_rust_abi_stub`: the stub's address as `add_ptr()` hands it out
///   (a callback table holds it): `call *%reg` to the stub, its jump, the
///   guard, the test of the tag.
fn call_overhead(c: &mut Criterion, setup: &Setup) {
    // SAFETY: the benchmark module exports `trivial` as `extern "C" fn(u64) -> u64`.
    let library = unsafe { libloading::Library::new(&setup.module) }.expect("load the module with libloading");
    // SAFETY: as above.
    let pointer: extern "C" fn(u64) -> u64 = *unsafe { library.get(b"trivial\0") }.expect("find `trivial`");
    let stub = hot::bench_module::trivial_ptr();
    assert_eq!(stub(INPUT), INPUT + 1, "the stub reaches the module");
    assert_eq!(direct_call(INPUT), INPUT + 1, "the direct call reaches the function");
    install_subsecond_table(&setup.patch);

    let mut g = c.benchmark_group("call_overhead");
    g.bench_function("direct", |b| b.iter(|| direct_call(black_box(INPUT))));
    g.bench_function("fn_pointer", |b| b.iter(|| pointer(black_box(INPUT))));
    g.bench_function("hcr_binding", |b| b.iter(|| hot::bench_module::trivial(black_box(INPUT))));
    g.bench_function("hcr_stub_pointer", |b| b.iter(|| stub(black_box(INPUT))));
    // The same through a stub table reserved far from the libraries.
    let far = Runtime::with_config(Config::new().with_stub_base(FAR_STUB_BASE)).expect("create a second runtime");
    far.load(&setup.module).expect("load the benchmark module into the second runtime");
    // SAFETY: `trivial` is `extern "C" fn(u64) -> u64`; the stub lives as
    // long as `far`, which outlives the benchmark.
    let far_stub: extern "C" fn(u64) -> u64 = unsafe { far.get_proc("bench_module", "trivial").unwrap().cast() };
    let distance = (far_stub as *const () as usize).abs_diff(stub as *const () as usize);
    assert!(distance > 1 << 40, "the second table is far from the libraries ({distance:#x} bytes)");
    assert_eq!(far_stub(INPUT), INPUT + 1, "the far stub reaches the module");
    g.bench_function("hcr_stub_pointer_far", |b| b.iter(|| far_stub(black_box(INPUT))));
    g.bench_function("hcr_static", |b| b.iter(|| stat::bench_module::trivial(black_box(INPUT))));
    g.bench_function("hot_lib_reloader", |b| b.iter(|| hlr::trivial(black_box(INPUT))));
    // A closure (subsecond's HotFn takes Rust callables), inlined into
    // subsecond's dispatch, around the same function.
    let trivial = |x: u64| bench_module::trivial(x);
    g.bench_function("subsecond", |b| b.iter(|| subsecond::HotFn::current(trivial).call((black_box(INPUT),))));

    // The Rust ABI: `add(&Counter, u64) -> u64`, a `#[reload]` function.
    // SAFETY: the module exports `BENCH_MODULE_ADD` as a
    // `fn(&Counter, u64) -> u64` static, built by the same compiler as this
    // benchmark (the runtime checked its toolchain fingerprint on load).
    let add: fn(&Counter, u64) -> u64 = unsafe {
        **library.get::<*const fn(&Counter, u64) -> u64>(b"BENCH_MODULE_ADD\0").expect("find `BENCH_MODULE_ADD`")
    };
    let add_stub = hot::bench_module::add_ptr();
    let counter = Counter { base: 1 };
    assert_eq!(add(&counter, INPUT), INPUT + 1, "the pointer reaches the module");
    assert_eq!(add_stub(&counter, INPUT).ok(), Some(INPUT + 1), "the stub reaches the module");
    g.bench_function("fn_pointer_rust_abi", |b| b.iter(|| add(black_box(&counter), black_box(INPUT))));
    g.bench_function("hcr_rust_abi", |b| b.iter(|| hot::bench_module::add(black_box(&counter), black_box(INPUT))));
    g.bench_function("hcr_rust_abi_stub", |b| {
        b.iter(|| match add_stub(black_box(&counter), black_box(INPUT)) {
            Ok(value) => value,
            Err(panic) => panic!("{panic}"),
        })
    });
    g.finish();
    drop(far);
    drop(library);
}

/// Where `hcr_stub_pointer_far` reserves its stub table: low in the address
/// space, some 128 TiB below where the system maps libraries on x86-64
/// Linux.
const FAR_STUB_BASE: usize = 0x1000_0000;

/// Runs `calls` calls on each of `threads` threads, started together;
/// returns the wall time until the last finished.
struct Pool {
    threads: usize,
    start: Arc<Barrier>,
    done: Arc<Barrier>,
    calls: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    handles: Vec<std::thread::JoinHandle<()>>,
}

impl Pool {
    fn new(threads: usize, call: fn(u64) -> u64) -> Pool {
        let start = Arc::new(Barrier::new(threads + 1));
        let done = Arc::new(Barrier::new(threads + 1));
        let calls = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let handles = (0..threads)
            .map(|_| {
                let (start, done, calls, stop) = (start.clone(), done.clone(), calls.clone(), stop.clone());
                std::thread::spawn(move || {
                    loop {
                        start.wait();
                        if stop.load(Ordering::Relaxed) {
                            return;
                        }
                        let n = calls.load(Ordering::Relaxed);
                        let mut x = INPUT;
                        for _ in 0..n {
                            x = call(black_box(x));
                        }
                        black_box(x);
                        done.wait();
                    }
                })
            })
            .collect();
        Pool { threads, start, done, calls, stop, handles }
    }

    fn run(&self, calls: u64) -> Duration {
        self.calls.store(calls, Ordering::Relaxed);
        let t = Instant::now();
        self.start.wait();
        self.done.wait();
        t.elapsed()
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.start.wait();
        for h in self.handles.drain(..) {
            let _ = h.join();
        }
    }
}

fn call_threads(c: &mut Criterion) {
    let mut g = c.benchmark_group("call_threads");
    type Call = fn(u64) -> u64;
    let cases: [(&str, Call); 2] = [("hcr_binding", hot::bench_module::trivial), ("hot_lib_reloader", hlr::trivial)];
    for (name, call) in cases {
        for threads in [1usize, 2] {
            let pool = Pool::new(threads, call);
            g.throughput(Throughput::Elements(pool.threads as u64));
            g.bench_function(format!("{name}_{threads}t"), |b| b.iter_custom(|iters| pool.run(iters)));
        }
    }
    g.finish();
}

#[derive(Default)]
struct PhaseTotals {
    timings: Vec<ReloadTimings>,
}

impl PhaseTotals {
    fn mean(&self) -> [f64; 8] {
        let n = self.timings.len().max(1) as f64;
        let mut sum = [0.0; 8];
        for t in &self.timings {
            for (s, d) in
                sum.iter_mut().zip([t.detect, t.copy, t.load, t.register, t.patch, t.handlers, t.unload, t.total])
            {
                *s += d.as_secs_f64() * 1e3;
            }
        }
        sum.map(|s| s / n)
    }
}

/// A runtime with a generated module loaded, reloading it from its two builds
/// in turn.
struct Reloader {
    rt: Runtime,
    module: GeneratedModule,
    path: PathBuf,
    next: std::cell::Cell<usize>,
}

impl Reloader {
    fn new(module: &GeneratedModule) -> Reloader {
        let dir = bench_dir().join("reload").join(&module.name);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(hcr_benches::library_file(&module.name));
        install(&module.builds[0], &path);
        // What is timed is the reload a host performs once `reload_needed()`
        // said yes, that is, after the file has settled. The builds are
        // installed whole (by a rename), so nothing needs to settle: without
        // the wait, `perform_reload` can be called right after the install.
        let config = Config::new().with_stub_base(0).with_settle_time(Duration::ZERO);
        let rt = Runtime::with_config(config).unwrap();
        rt.load(&path).unwrap();
        Reloader { rt, module: module.clone(), path, next: std::cell::Cell::new(1) }
    }

    /// One reload (installing the other build first, untimed).
    fn reload(&self) -> ReloadTimings {
        let next = self.next.get();
        install(&self.module.builds[next], &self.path);
        self.next.set(1 - next);
        let report = self.rt.perform_reload().expect("reload");
        assert_eq!(report.reloaded, [self.module.name.as_str()]);
        report.timings
    }
}

/// Phase means (as [`PhaseTotals::mean`]) of the reloads of one benchmark.
type Phases = [f64; 8];

/// The debug host of `debug_host_game`, a child process that reloads the
/// game module on command and reports the timings it measured.
struct DebugHost {
    child: std::process::Child,
    stdin: std::process::ChildStdin,
    stdout: std::io::Lines<std::io::BufReader<std::process::ChildStdout>>,
    reloads: u64,
    /// Sums in nanoseconds: total, detect, copy, load, register, patch,
    /// handlers, unload.
    sums: [u64; 8],
}

impl DebugHost {
    fn start(game: &DebugHostGame) -> DebugHost {
        use std::io::BufRead;
        use std::process::Stdio;
        let mut child = std::process::Command::new(&game.host)
            .arg(&game.module)
            .args(&game.builds)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the debug host");
        let stdin = child.stdin.take().unwrap();
        let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
        assert_eq!(stdout.next().unwrap().unwrap(), "ready");
        DebugHost { child, stdin, stdout, reloads: 0, sums: [0; 8] }
    }

    /// `n` reloads; the time they took in the host.
    fn reload(&mut self, n: u64) -> Duration {
        use std::io::Write;
        writeln!(self.stdin, "reload {n}").unwrap();
        let line = self.stdout.next().expect("the debug host answers").unwrap();
        let fields: Vec<u64> = line.split_whitespace().map(|f| f.parse().unwrap()).collect();
        for (sum, field) in self.sums.iter_mut().zip(&fields) {
            *sum += field;
        }
        self.reloads += n;
        Duration::from_nanos(fields[0])
    }

    /// Means in milliseconds, in the order of [`PhaseTotals::mean`].
    fn phases(mut self) -> Phases {
        drop(self.stdin);
        self.child.wait().unwrap();
        let ms = |i: usize| self.sums[i] as f64 / 1e6 / self.reloads.max(1) as f64;
        [ms(1), ms(2), ms(3), ms(4), ms(5), ms(6), ms(7), ms(0)]
    }
}

fn reload(c: &mut Criterion, setup: &ReloadSetup) -> (Vec<(usize, Phases)>, Phases) {
    let mut phases = Vec::new();
    let mut g = c.benchmark_group("reload");
    g.sample_size(20).measurement_time(Duration::from_secs(8));
    for module in &setup.scaling {
        let reloader = Reloader::new(module);
        let mut totals = PhaseTotals::default();
        g.bench_function(format!("procs_{}", module.procs), |b| {
            b.iter_custom(|iters| {
                let mut spent = Duration::ZERO;
                for _ in 0..iters {
                    let timings = reloader.reload();
                    spent += timings.total;
                    totals.timings.push(timings);
                }
                spent
            })
        });
        phases.push((module.procs, totals.mean()));
    }

    // reload_needed with 50 unchanged modules.
    let rt = Runtime::with_config(Config::new().with_stub_base(0)).unwrap();
    let dir = bench_dir().join("reload").join("fifty");
    std::fs::create_dir_all(&dir).unwrap();
    for m in &setup.tiny {
        let path = dir.join(hcr_benches::library_file(&m.name));
        install(&m.builds[0], &path);
        rt.load(&path).unwrap();
    }
    g.sample_size(100).measurement_time(Duration::from_secs(5));
    g.bench_function("reload_needed_50", |b| b.iter(|| assert!(!rt.reload_needed())));
    drop(rt);
    // The same, with the runtime watching the files (`HCR_WATCH=1`).
    let rt = Runtime::with_config(Config::new().with_stub_base(0).with_watch_files(true)).unwrap();
    for m in &setup.tiny {
        rt.load(dir.join(hcr_benches::library_file(&m.name))).unwrap();
    }
    assert!(!rt.reload_needed(), "the first answer checks the files");
    g.bench_function("reload_needed_50_watched", |b| b.iter(|| assert!(!rt.reload_needed())));

    // Registration of 10,000 procs (the init phase of a reload).
    let big = setup.scaling.iter().find(|m| m.procs == 10_000).expect("the 10,000-proc module");
    let reloader = Reloader::new(big);
    g.sample_size(20).measurement_time(Duration::from_secs(8)).throughput(Throughput::Elements(10_000));
    g.bench_function("register_10000", |b| b.iter_custom(|iters| (0..iters).map(|_| reloader.reload().register).sum()));
    drop(reloader);

    // The game's debug module reloaded by a debug host: time measured in
    // the host, detection and copy included.
    let mut host = DebugHost::start(&setup.game);
    g.sample_size(20).measurement_time(Duration::from_secs(8)).throughput(Throughput::Bytes(setup.game.size));
    g.bench_function("debug_host_game", |b| b.iter_custom(|iters| host.reload(iters)));
    g.finish();
    (phases, host.phases())
}

/// How long replaced libraries waited to be freed in one `reload_busy` case:
/// mean and longest, in milliseconds.
type Waits = (&'static str, f64, f64);

/// `perform_reload` of the 10-proc module while four threads call its proc
/// `p0` in tight loops: unregistered (the runtime's collector thread
/// observes them, off the reloading thread), registered (a quiescent point
/// every 64 calls), or none. Returns each case's waits.
fn reload_busy(c: &mut Criterion, setup: &ReloadSetup) -> Vec<Waits> {
    let module = setup.scaling.iter().find(|m| m.procs == 10).expect("the 10-proc module");
    let mut waits = Vec::new();
    let mut g = c.benchmark_group("reload_busy");
    g.sample_size(20).measurement_time(Duration::from_secs(8));
    for (case, threads, registered) in [("idle", 0, false), ("4_unregistered", 4, false), ("4_registered", 4, true)] {
        let reloader = Reloader::new(module);
        let rt = &reloader.rt;
        // SAFETY: generated procs are `extern "C" fn(u64) -> u64`.
        let p0: extern "C" fn(u64) -> u64 = unsafe { rt.get_proc(&module.name, "p0").unwrap().cast() };
        let stop = AtomicBool::new(false);
        let running = AtomicU64::new(0);
        std::thread::scope(|scope| {
            for _ in 0..threads {
                let (stop, running) = (&stop, &running);
                scope.spawn(move || {
                    let guard = registered.then(|| rt.register_thread());
                    running.fetch_add(1, Ordering::Relaxed);
                    let mut x = INPUT;
                    while !stop.load(Ordering::Relaxed) {
                        for _ in 0..64 {
                            x = p0(black_box(x));
                        }
                        if let Some(guard) = &guard {
                            guard.quiescent();
                        }
                    }
                    black_box(x);
                });
            }
            while running.load(Ordering::Relaxed) < threads {
                std::thread::yield_now();
            }
            g.bench_function(case, |b| b.iter_custom(|iters| (0..iters).map(|_| reloader.reload().total).sum()));
            stop.store(true, Ordering::Relaxed);
        });
        // The threads are gone: what is left can be freed.
        let deadline = Instant::now() + Duration::from_secs(60);
        while rt.stats().retired_pending > 0 && Instant::now() < deadline {
            rt.collect_retired();
        }
        let stats = rt.stats();
        waits.push((case, stats.retired_wait_mean.as_secs_f64() * 1e3, stats.retired_wait_max.as_secs_f64() * 1e3));
    }
    g.finish();
    waits
}

/// Times source edit -> new code running for the hello example, `edits`
/// times: (build, detect, reload, total) per edit, in milliseconds.
fn edit_to_live(edits: usize) -> Vec<[f64; 4]> {
    use hcr_demo::scratch::ScratchCrate;
    let source = workspace_dir().join("examples/hello/module");
    let root = hcr_demo::scratch_root();
    let copy = ScratchCrate::copy(&source, &workspace_dir(), &root.join("bench-hello"), &root.join("target"))
        .expect("copy the hello module");
    copy.build().expect("first build of the hello module");
    let rt = Runtime::with_config(Config::new().with_stub_base(0)).unwrap();
    let library = copy.library();
    rt.load(&library).unwrap();
    // SAFETY: `greetings` is `extern "C" fn() -> u64` in every edit.
    let greetings: extern "C" fn() -> u64 = unsafe { rt.get_proc("hello_module", "greetings").unwrap().cast() };
    let mut current = "GREETINGS.load(Ordering::Relaxed)".to_owned();
    let mut results = Vec::new();
    for i in 1..=edits {
        let offset = i as u64 * 1000;
        let next = format!("GREETINGS.load(Ordering::Relaxed) + {offset}");
        let edited = Instant::now();
        copy.edit(&current, &next).expect("edit the source");
        current = next;
        let t = Instant::now();
        copy.build().expect("rebuild");
        let build = t.elapsed();
        let t = Instant::now();
        while !rt.reload_needed() {
            assert!(t.elapsed() < Duration::from_secs(10), "the rebuilt module was not detected");
        }
        let detect = t.elapsed();
        let t = Instant::now();
        rt.perform_reload().expect("reload");
        let reload = t.elapsed();
        assert_eq!(greetings(), offset, "the new code runs");
        let total = edited.elapsed();
        results.push([build, detect, reload, total].map(|d| d.as_secs_f64() * 1e3));
    }
    let _ = std::fs::remove_dir_all(copy.dir());
    results
}

/// Memory per registered stub, measured in a child process that registers
/// `stubs` procs: (total RSS, stub table, heap) per stub, in bytes.
fn memory(stubs: usize) -> serde_json::Value {
    let million = build_release(&["hcr-bench-million"], "bench_million");
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .env("HCR_BENCH_CHILD", "memory")
        .env("HCR_BENCH_PROCS", stubs.to_string())
        .env("HCR_BENCH_MILLION", &million)
        .output()
        .expect("run the memory child");
    assert!(out.status.success(), "memory child failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("the child prints JSON")
}

fn memory_child() {
    let stubs: usize = std::env::var("HCR_BENCH_PROCS").unwrap().parse().unwrap();
    let library = PathBuf::from(std::env::var_os("HCR_BENCH_MILLION").unwrap());
    let rt = Runtime::with_config(Config::new().with_stub_base(0).with_stub_capacity(stubs + 4096)).unwrap();
    let (rss0, heap0) = (rss_bytes(), heap_bytes());
    let info = rt.load(&library).unwrap();
    let (rss1, heap1) = (rss_bytes(), heap_bytes());
    let table = resident_in(rt.stub_region());
    assert_eq!(info.procs, stubs);
    assert_eq!(rt.stats().stubs_in_use, stubs);
    let per = |bytes: u64| bytes as f64 / stubs as f64;
    println!(
        "{}",
        serde_json::json!({
            "stubs": stubs,
            "rss_per_stub": per(rss1.saturating_sub(rss0)),
            "table_per_stub": per(table),
            "heap_per_stub": per(heap1.saturating_sub(heap0)),
        })
    );
}

/// The median estimate of a criterion benchmark, in nanoseconds.
fn estimate(group: &str, id: &str) -> Option<(f64, f64, f64)> {
    let path = bench_dir().join("criterion").join(group).join(id).join("new/estimates.json");
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
    let median = &json["median"];
    Some((
        median["point_estimate"].as_f64()?,
        median["confidence_interval"]["lower_bound"].as_f64()?,
        median["confidence_interval"]["upper_bound"].as_f64()?,
    ))
}

fn main() {
    if std::env::var("HCR_BENCH_CHILD").as_deref() == Ok("memory") {
        memory_child();
        return;
    }
    let filter = Filter::from_args(std::env::args().skip(1));
    let setup = setup(&filter);
    let mut c = Criterion::default().output_directory(&bench_dir().join("criterion")).configure_from_args();
    // The installed runtime the generated bindings use.
    let runtime = Runtime::with_config(Config::new()).expect("create the runtime");
    hot::Hcr::start_with(
        runtime,
        &[("bench_module", setup.module.as_path()), ("game_logic", setup.game_logic.as_path())],
    )
    .expect("load the benchmark modules");

    if filter.selects("call_overhead") {
        call_overhead(&mut c, &setup);
    }
    if filter.selects("call_threads") {
        call_threads(&mut c);
    }
    if filter.selects("game") {
        game::bench(&mut c);
    }
    let reloads = setup.reload.as_ref().map(|r| (reload(&mut c, r), reload_busy(&mut c, r)));
    c.final_summary();
    if filter.selects("call_overhead") {
        report::print_calls();
    }
    if filter.selects("game") {
        report::print_game();
    }
    let Some(((phases, game), waits)) = reloads else { return };
    if filter.0.is_some() || std::env::var_os("HCR_BENCH_ONLY_CRITERION").is_some() {
        // For iterating on one group (`cargo bench -p hcr-benches -- reload`).
        return;
    }

    eprintln!("edit-to-live: 10 edits of the hello module ...");
    let edits = edit_to_live(10);
    eprintln!("memory: 1,000,000 stubs ...");
    let memory = memory(1_000_000);
    report::write(&phases, &game, setup.reload.as_ref().map_or(0, |r| r.game.size), &waits, &edits, &memory);
}

#[path = "hcr/game.rs"]
mod game;
#[path = "hcr/report.rs"]
mod report;
