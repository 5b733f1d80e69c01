//! Reads that never wait behind a reload, and what every method does when
//! called from a module's init or a reload handler: it works or it returns
//! `Error::Reentrant`, and never deadlocks.

mod support;

use std::path::PathBuf;
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use hcr_runtime::{Error, Runtime};
use support::{Scratch, fixture, fn1, runtime};

/// How long a call that must not wait may take (generous: CI machines are
/// shared, and the reads stat files).
const PROMPT: Duration = Duration::from_secs(10);

fn marker(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("hcr-init-{name}-{}", std::process::id()))
}

/// Runs `f` on another thread and waits for it at most `PROMPT`.
fn promptly<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(PROMPT).unwrap_or_else(|_| panic!("{what} did not return within {PROMPT:?}"))
}

/// Removes these init markers of this process when dropped.
struct Markers(&'static [&'static str]);

impl Drop for Markers {
    fn drop(&mut self) {
        for name in self.0 {
            let _ = std::fs::remove_file(marker(name));
        }
    }
}

#[test]
fn reads_answer_while_a_reload_waits_in_an_init() {
    let _markers = Markers(&["started", "release"]);
    let s = Scratch::new("blocked-init");
    let path = s.install(&fixture("counter", &[]), "counter");
    let rt: &'static Runtime = Box::leak(Box::new(runtime()));
    rt.load(&path).unwrap();
    let answer = fn1(rt, "counter", "answer");
    let index = rt.get_proc("counter", "answer").unwrap().index();
    s.install(&fixture("counter", &["v2", "init-blocks"]), "counter");
    let reload = std::thread::spawn(move || rt.perform_reload().map(|r| r.reloaded));

    // The new init runs, and waits.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !marker("started").exists() {
        assert!(Instant::now() < deadline, "the init never started");
        assert!(!reload.is_finished(), "the reload ended before its init started");
        std::thread::sleep(Duration::from_millis(2));
    }

    assert!(promptly("reload_needed", move || rt.reload_needed()), "the new build is not committed yet");
    assert!(promptly("has_module_changed", move || rt.has_module_changed("counter").unwrap()));
    assert_eq!(promptly("generation", move || rt.generation()), 0);
    let proc = promptly("get_proc", move || rt.get_proc("counter", "answer").map(|p| p.index()));
    assert_eq!(proc.unwrap(), index, "the existing stub");
    let stats = promptly("stats", move || rt.stats());
    assert_eq!((stats.modules, stats.globals), (1, 5));
    let modules = promptly("modules", move || rt.modules());
    assert_eq!((modules[0].name.as_str(), modules[0].generation), ("counter", 0));
    let listing = promptly("inspect", move || rt.inspect());
    assert!(listing.stubs.iter().any(|s| s.name == "answer"));
    promptly("stub_region", move || rt.stub_region());
    promptly("private_dir", move || rt.private_dir());
    assert_eq!(answer(1), 2, "the old code runs meanwhile");
    assert!(!reload.is_finished(), "the init is still waiting");

    std::fs::write(marker("release"), b"").unwrap();
    assert_eq!(reload.join().unwrap().unwrap(), ["counter"]);
    assert_eq!(answer(1), 3, "the new code is current");
    assert_eq!(rt.generation(), 1);
    assert!(!rt.reload_needed());
    assert_eq!(rt.modules()[0].generation, 1);
}

/// What the host function called from the init saw.
static FROM_INIT: Mutex<Vec<String>> = Mutex::new(Vec::new());
static INIT_RUNTIME: OnceLock<(Runtime, PathBuf)> = OnceLock::new();

/// Called by the `init-calls-host` init: calls every method of the runtime
/// that is loading it, and records what happened.
extern "C" fn call_everything_from_init() {
    let (rt, other) = INIT_RUNTIME.get().expect("runtime set up");
    let mut seen = FROM_INIT.lock().unwrap();
    let reentrant = |r: Result<(), Error>| match r {
        Err(Error::Reentrant) => "reentrant".to_owned(),
        Err(e) => format!("error: {e}"),
        Ok(()) => "ok".to_owned(),
    };
    seen.push(format!("load {}", reentrant(rt.load(other).map(drop))));
    seen.push(format!("unload {}", reentrant(rt.unload("counter").map(drop))));
    seen.push(format!("perform_reload {}", reentrant(rt.perform_reload().map(drop))));
    seen.push(format!("get_global {}", reentrant(rt.get_global("counter", "COUNT").map(drop))));
    seen.push(format!("new get_proc {}", reentrant(rt.get_proc("counter", "fresh").map(drop))));
    seen.push(format!("get_proc {}", reentrant(rt.get_proc("counter", "answer").map(drop))));
    seen.push(format!("has_module_changed {}", reentrant(rt.has_module_changed("counter").map(drop))));
    seen.push(format!("reload_needed {}", rt.reload_needed()));
    seen.push(format!("generation {}", rt.generation()));
    seen.push(format!("modules {}", rt.modules().len()));
    seen.push(format!("stats {}", rt.stats().modules));
    seen.push(format!("inspect {}", rt.inspect().stubs.len()));
    seen.push(format!("stub_region {}", !rt.stub_region().is_empty()));
    seen.push(format!("private_dir {}", rt.private_dir().exists()));
    seen.push(format!("collect_retired {}", rt.collect_retired()));
    drop(rt.register_thread());
    rt.on_reload(|_| {});
    seen.push("register_thread, on_reload ok".to_owned());
}

#[test]
fn every_method_works_or_refuses_from_an_init() {
    let _markers = Markers(&["hook"]);
    let s = Scratch::new("from-init");
    let path = s.install(&fixture("counter", &["init-calls-host"]), "counter");
    let other = Scratch::new("from-init-other");
    let other_path = other.install(&fixture("state", &[]), "state");
    let (rt, _) = INIT_RUNTIME.get_or_init(|| (runtime(), other_path));
    // A stub that exists before the init runs.
    rt.get_proc("counter", "answer").unwrap();
    std::fs::write(marker("hook"), (call_everything_from_init as *const () as usize).to_string()).unwrap();
    let info = promptly("a load whose init calls the runtime", move || rt.load(path).map(|i| i.name));
    assert_eq!(info.unwrap(), "counter");
    let seen = FROM_INIT.lock().unwrap().clone();
    assert_eq!(
        seen,
        [
            "load reentrant",
            "unload reentrant",
            "perform_reload reentrant",
            "get_global reentrant",
            "new get_proc reentrant",
            "get_proc ok",
            "has_module_changed error: no module named `counter` is loaded; load it first (Runtime::modules lists what is loaded)",
            "reload_needed false",
            "generation 0",
            "modules 0",
            "stats 0",
            "inspect 1",
            "stub_region true",
            "private_dir true",
            "collect_retired 0",
            "register_thread, on_reload ok",
        ]
    );
    assert_eq!(fn1(rt, "counter", "answer")(1), 2, "the load went through");
}

#[test]
fn every_method_works_or_refuses_from_a_handler() {
    let s = Scratch::new("from-handler");
    let path = s.install(&fixture("counter", &[]), "counter");
    let rt = Arc::new(runtime());
    rt.load(&path).unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (weak, sink) = (Arc::downgrade(&rt), seen.clone());
    rt.on_reload(move |event| {
        let Some(rt) = weak.upgrade() else { return };
        let reentrant = |r: Result<(), Error>| matches!(r, Err(Error::Reentrant));
        let outcome = [
            reentrant(rt.load(&path).map(drop)),
            reentrant(rt.unload("counter").map(drop)),
            reentrant(rt.perform_reload().map(drop)),
            rt.get_global("counter", "COUNT").is_ok(),
            rt.get_proc("counter", "from_handler").is_ok(),
            rt.get_proc("counter", "answer").is_ok(),
            rt.has_module_changed("counter").is_ok(),
            rt.modules().len() == 1,
            rt.stats().modules == 1,
            !rt.inspect().stubs.is_empty(),
            !rt.stub_region().is_empty(),
        ];
        sink.lock().unwrap().push((event.stage, outcome.iter().all(|&ok| ok), rt.generation()));
    });
    s.install(&fixture("counter", &["v2"]), "counter");
    let rt2 = rt.clone();
    promptly("a reload whose handlers call the runtime", move || rt2.perform_reload().unwrap());
    let seen = seen.lock().unwrap();
    assert_eq!(*seen, [(hcr_runtime::ReloadStage::Before, true, 0), (hcr_runtime::ReloadStage::Committed, true, 1)]);
}
