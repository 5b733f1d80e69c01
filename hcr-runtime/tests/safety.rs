//! Reload safety: signature changes, layout changes and migrations, the
//! call-stack check, deferred unloading, private copies.

mod support;

use std::sync::{Arc, Mutex, OnceLock};

use hcr_runtime::{Config, Error, Runtime};
use support::{Scratch, fixture, fn0, fn1, mapped_copies, runtime};

fn first(err: &Error) -> &Error {
    err.failures()[0]
}

/// dep + user (user calls `dep::scale` through bindings bound at its init).
fn dep_and_user(name: &str) -> (Scratch, Runtime) {
    let s = Scratch::new(name);
    s.install(&fixture("dep", &[]), "dep");
    let path = s.install(&fixture("user", &[]), "user");
    let rt = runtime();
    rt.load(&path).unwrap();
    (s, rt)
}

fn signature_of(rt: &Runtime, module: &str, name: &str) -> (u64, String) {
    let stub = rt.inspect().stubs.into_iter().find(|s| s.module == module && s.name == name).unwrap();
    (stub.signature_hash, stub.signature)
}

#[test]
fn changing_the_signature_of_a_bound_proc_is_refused() {
    let (s, rt) = dep_and_user("sig-bound");
    let compute = fn1(&rt, "user", "compute");
    assert_eq!(compute(3), 31);
    s.install(&fixture("dep", &["sig-change"]), "dep");
    let err = rt.perform_reload().unwrap_err();
    match first(&err) {
        Error::SignatureMismatch { module, name, caller, expected, found } => {
            assert_eq!((module.as_str(), name.as_str()), ("dep", "scale"));
            assert_eq!(caller, "module `user`");
            assert_eq!(expected, "extern \"C\" fn(u64) -> u64");
            assert_eq!(found, "extern \"C\" fn(u32) -> u64");
        }
        other => panic!("{other}"),
    }
    assert!(err.to_string().contains("proc `dep::scale` has signature `extern \"C\" fn(u32) -> u64`, but module `user` was bound to it as `extern \"C\" fn(u64) -> u64`"), "{err}");
    assert_eq!(compute(3), 31, "the old code keeps running");
    assert_eq!(rt.generation(), 0);
}

#[test]
fn changing_a_caller_and_its_callee_together_is_accepted() {
    let (s, rt) = dep_and_user("sig-together");
    let compute = fn1(&rt, "user", "compute");
    s.install(&fixture("dep", &["sig-change"]), "dep");
    s.install(&fixture("user", &["scale-u32"]), "user");
    let report = rt.perform_reload().unwrap();
    assert_eq!(report.reloaded, ["dep", "user"]);
    assert_eq!(compute(3), 31);
    assert_eq!(signature_of(&rt, "dep", "scale").1, "extern \"C\" fn(u32) -> u64");
}

#[test]
fn procs_no_caller_is_bound_to_may_change_freely() {
    // `user` calls `dep::scale` only, so `dep::calls` is not pinned.
    let (s, rt) = dep_and_user("sig-free");
    s.install(&fixture("dep", &["free-change"]), "dep");
    rt.perform_reload().unwrap();
    assert_eq!(signature_of(&rt, "dep", "calls").1, "extern \"C\" fn() -> u32");
    assert_eq!(fn1(&rt, "user", "compute")(3), 31);

    // With nobody bound at all, even `scale` may change.
    let s = Scratch::new("sig-alone");
    let path = s.install(&fixture("dep", &[]), "dep");
    let rt = runtime();
    rt.load(&path).unwrap();
    rt.get_proc("dep", "scale").unwrap(); // untyped: no signature pinned
    s.install(&fixture("dep", &["sig-change"]), "dep");
    rt.perform_reload().unwrap();
}

#[test]
fn a_host_bound_with_a_signature_pins_it() {
    let s = Scratch::new("sig-host");
    let path = s.install(&fixture("dep", &[]), "dep");
    let rt = runtime();
    rt.load(&path).unwrap();
    let (hash, text) = signature_of(&rt, "dep", "scale");
    let err = rt.get_proc_with_signature("dep", "scale", hash ^ 1, "extern \"C\" fn(i64) -> u64").unwrap_err();
    assert!(matches!(err, Error::SignatureMismatch { ref caller, .. } if caller == "the host"), "{err}");
    // SAFETY: `dep::scale` is an `extern "C" fn(u64) -> u64` in this build.
    let scale: extern "C" fn(u64) -> u64 =
        unsafe { rt.get_proc_with_signature("dep", "scale", hash, &text).unwrap().cast() };
    s.install(&fixture("dep", &["sig-change"]), "dep");
    let err = rt.perform_reload().unwrap_err();
    assert!(err.to_string().contains("but the host was bound to it as `extern \"C\" fn(u64) -> u64`"), "{err}");
    assert_eq!(scale(2), 20);
}

#[test]
fn loading_a_module_bound_with_another_signature_is_refused() {
    // `user` built with `scale-u32` calls `dep::scale` as `fn(u32) -> u64`.
    let s = Scratch::new("sig-load");
    let dep = s.install(&fixture("dep", &[]), "dep");
    let user = s.install(&fixture("user", &["scale-u32"]), "user");
    let rt = runtime();
    rt.load(&dep).unwrap();
    let scale = fn1(&rt, "dep", "scale");
    let err = rt.load(&user).unwrap_err();
    match first(&err) {
        Error::SignatureMismatch { module, name, caller, .. } => {
            assert_eq!((module.as_str(), name.as_str(), caller.as_str()), ("dep", "scale", "module `user`"));
        }
        other => panic!("{other}"),
    }
    let names: Vec<String> = rt.modules().into_iter().map(|m| m.name).collect();
    assert_eq!(names, ["dep"], "nothing of the refused load remains");
    assert_eq!(scale(2), 20);

    // A host pinned to a signature before the module is loaded.
    let (hash, text) = signature_of(&rt, "dep", "scale");
    let rt = runtime();
    rt.get_proc_with_signature("dep", "scale", hash, &text).unwrap();
    s.install(&fixture("dep", &["sig-change"]), "dep");
    let err = rt.load(&dep).unwrap_err();
    assert!(err.to_string().contains("but the host was bound to it as `extern \"C\" fn(u64) -> u64`"), "{err}");
    assert!(rt.modules().is_empty());
}

/// state v1 with fields set to (7, 8).
fn state_v1(name: &str) -> (Scratch, Runtime) {
    let s = Scratch::new(name);
    let path = s.install(&fixture("state", &[]), "state");
    let rt = runtime();
    rt.load(&path).unwrap();
    // SAFETY: `state::set` is an `extern "C" fn(u32, u32)`.
    let set: extern "C" fn(u32, u32) = unsafe { rt.get_proc("state", "set").unwrap().cast() };
    set(7, 8);
    (s, rt)
}

fn packed(rt: &Runtime) -> (u64, u64, u64) {
    let p = fn0(rt, "state", "packed")();
    (p & 0xFFFF, (p >> 16) & 0xFFFF, p >> 32)
}

#[test]
fn a_struct_that_gains_a_field_is_migrated() {
    let (s, rt) = state_v1("migrate-gain");
    assert_eq!(packed(&rt), (7, 8, 0));
    let before = rt.get_global("state", "WORLD").unwrap();
    s.install(&fixture("state", &["gain"]), "state");
    rt.perform_reload().unwrap();
    assert_eq!(packed(&rt), (7, 8, 100), "old fields kept, new field from the migration");
    let after = rt.get_global("state", "WORLD").unwrap();
    assert_ne!(before.layout(), after.layout());
    assert!(after.layout().size > before.layout().size);
    assert_eq!(rt.stats().globals, 1, "the old storage was freed");
    // Another build with the same layout keeps the migrated value.
    s.install(&fixture("state", &["gain"]), "state");
    let file = std::fs::OpenOptions::new().append(true).open(s.module_path("state")).unwrap();
    use std::io::Write;
    (&file).write_all(b"\0").unwrap();
    rt.perform_reload().unwrap();
    assert_eq!(packed(&rt), (7, 8, 100));
}

#[test]
fn a_struct_that_reorders_its_fields_is_migrated() {
    let (s, rt) = state_v1("migrate-reorder");
    s.install(&fixture("state", &["reorder"]), "state");
    rt.perform_reload().unwrap();
    assert_eq!(packed(&rt), (7, 8, 0), "each field kept its value in its new place");
}

#[test]
fn a_layout_change_without_a_migration_is_refused_naming_both_layouts() {
    let (s, rt) = state_v1("migrate-none");
    s.install(&fixture("state", &["gain-without-migration"]), "state");
    let err = rt.perform_reload().unwrap_err();
    match first(&err) {
        Error::GlobalLayoutMismatch { module, name, existing, requested } => {
            assert_eq!((module.as_str(), name.as_str()), ("state", "WORLD"));
            assert!(existing.text.contains("struct World { x: u32, y: u32 }"), "{}", existing.text);
            assert!(requested.text.contains("struct World { x: u32, y: u32, z: u32 }"), "{}", requested.text);
        }
        other => panic!("{other}"),
    }
    assert_eq!(packed(&rt), (7, 8, 0), "old code and state kept");
}

#[test]
fn a_failing_migration_rolls_back() {
    let (s, rt) = state_v1("migrate-panics");
    let globals = rt.stats().globals;
    s.install(&fixture("state", &["gain-panics"]), "state");
    let err = rt.perform_reload().unwrap_err();
    assert!(matches!(first(&err), Error::MigrationFailed { name, .. } if name == "WORLD"), "{err}");
    assert_eq!(packed(&rt), (7, 8, 0));
    assert_eq!(rt.stats().globals, globals);
}

// The call-stack check: the host runs `perform_reload` from inside a module.

static REENTERING: OnceLock<Runtime> = OnceLock::new();
static OUTCOME: Mutex<Option<String>> = Mutex::new(None);

extern "C" fn reload_from_inside_the_module() {
    let rt = REENTERING.get().unwrap();
    let outcome = match rt.perform_reload() {
        Ok(report) => format!("reloaded {:?}", report.reloaded),
        Err(e) => e.to_string(),
    };
    let unload = rt.unload("counter").err().map(|e| e.to_string()).unwrap_or_default();
    *OUTCOME.lock().unwrap() = Some(format!("{outcome}\n{unload}"));
}

#[test]
fn a_reload_from_code_of_a_module_it_would_unload_is_refused() {
    let s = Scratch::new("stack-check");
    let path = s.install(&fixture("counter", &[]), "counter");
    let rt = REENTERING.get_or_init(runtime);
    rt.load(&path).unwrap();
    // SAFETY: `counter::call_back` is an `extern "C" fn(extern "C" fn()) -> u64`.
    let call_back: extern "C" fn(extern "C" fn()) -> u64 =
        unsafe { rt.get_proc("counter", "call_back").unwrap().cast() };
    s.install(&fixture("counter", &["v2"]), "counter");
    assert_eq!(call_back(reload_from_inside_the_module), 1, "still v1 when it returned");
    let outcome = OUTCOME.lock().unwrap().take().unwrap();
    let (reload, unload) = outcome.split_once('\n').unwrap();
    assert!(
        reload.contains("refusing to unload module `counter` while the calling thread is running its code"),
        "{reload}"
    );
    assert!(unload.contains("refusing to unload module `counter`"), "{unload}");
    assert_eq!(rt.generation(), 0);
    assert_eq!(rt.stats().modules, 1);
    // From host code, the same reload goes through.
    rt.perform_reload().unwrap();
    assert_eq!(call_back(reload_from_inside_the_module), 2);
}

#[test]
fn a_replaced_library_stays_until_every_registered_thread_is_quiescent() {
    let s = Scratch::new("deferred");
    let path = s.install(&fixture("counter", &[]), "counter");
    // Registered threads only: the quiescent points decide alone (the
    // other threads of this test process are observed in the next test).
    let config = Config::new().with_stub_base(0).with_observe_unregistered_threads(false);
    let rt = Arc::new(Runtime::with_config(config).unwrap());
    rt.load(&path).unwrap();
    let answer = fn1(&rt, "counter", "answer");
    let worker_guard = rt.register_thread();
    let offline_guard = rt.register_thread();
    assert_eq!(rt.stats().threads, 2);

    s.install(&fixture("counter", &["v2"]), "counter");
    rt.perform_reload().unwrap();
    assert_eq!(answer(1), 3);
    assert_eq!(rt.stats().retired_pending, 1, "v1 waits for the registered threads");
    assert_eq!(mapped_copies(&rt.private_dir()), 2, "v1 is still mapped");

    worker_guard.quiescent();
    assert_eq!(rt.stats().retired_pending, 1, "one thread has not passed a quiescent point");
    offline_guard.offline(|| {
        // An offline thread is not waited for.
        assert_eq!(rt.stats().retired_pending, 0);
    });
    assert_eq!(rt.stats().unloads, 1);
    assert_eq!(mapped_copies(&rt.private_dir()), 1, "v1 is unmapped");

    // A thread that goes away is not waited for either.
    s.install(&fixture("counter", &[]), "counter");
    rt.perform_reload().unwrap();
    assert_eq!(rt.stats().retired_pending, 1);
    drop(worker_guard);
    offline_guard.quiescent();
    assert_eq!(rt.stats().retired_pending, 0);
    assert_eq!(rt.stats().unloads, 2);
}

#[test]
fn with_the_default_policy_other_threads_are_observed_before_a_library_is_unloaded() {
    let s = Scratch::new("observed");
    let path = s.install(&fixture("counter", &[]), "counter");
    let rt = runtime();
    rt.load(&path).unwrap();
    let answer = fn1(&rt, "counter", "answer");
    let guard = rt.register_thread();
    s.install(&fixture("counter", &["v2"]), "counter");
    rt.perform_reload().unwrap();
    assert_eq!(answer(1), 3);
    assert_eq!(rt.stats().retired_pending, 1, "v1 waits for the registered thread");
    guard.quiescent();
    // The other threads of this process (other tests run in parallel) are
    // observed too; one may hold a stale address for a while.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while rt.stats().retired_pending != 0 {
        assert!(std::time::Instant::now() < deadline, "v1 was never unloaded");
        rt.collect_retired();
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    assert_eq!(rt.stats().unloads, 1);
    assert_eq!(mapped_copies(&rt.private_dir()), 1, "v1 is unmapped");
}

#[test]
fn a_reload_commits_with_the_fallback_barrier() {
    // On AArch64 every commit makes all threads execute a barrier; this
    // forces membarrier(GLOBAL) instead of the expedited one.
    let s = Scratch::new("barrier-fallback");
    let path = s.install(&fixture("counter", &[]), "counter");
    let config = Config::new().with_stub_base(0).with_force_barrier_fallback(true);
    let rt = Runtime::with_config(config).unwrap();
    rt.load(&path).unwrap();
    let answer = fn1(&rt, "counter", "answer");
    assert_eq!(answer(1), 2);
    s.install(&fixture("counter", &["v2"]), "counter");
    rt.perform_reload().unwrap();
    assert_eq!(answer(1), 3);
}

#[test]
fn the_immediate_policy_unloads_at_once_whatever_threads_are_registered() {
    let s = Scratch::new("immediate");
    let path = s.install(&fixture("counter", &[]), "counter");
    let config = Config::new().with_stub_base(0).with_unload_policy(hcr_runtime::UnloadPolicy::Immediate);
    let rt = Runtime::with_config(config).unwrap();
    rt.load(&path).unwrap();
    let _guard = rt.register_thread();
    s.install(&fixture("counter", &["v2"]), "counter");
    rt.perform_reload().unwrap();
    assert_eq!((rt.stats().retired_pending, rt.stats().unloads), (0, 1));
}

#[cfg(unix)]
#[test]
fn private_copies_are_private_and_planted_names_do_not_make_reloads_fail() {
    use std::os::unix::fs::PermissionsExt;
    let s = Scratch::new("private");
    let path = s.install(&fixture("counter", &[]), "counter");
    let rt = runtime();
    let dir = rt.private_dir();
    assert_eq!(std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777, 0o700);
    // Plant 16 names a guesser might try (the names copies used to get, and
    // names shaped like today's random ones), as links to a victim and as
    // files.
    let victim = s.dir.join("victim");
    std::fs::write(&victim, b"untouched").unwrap();
    let mut planted = Vec::new();
    for i in 0..16 {
        let name = if i % 2 == 0 { format!("{i:05}-libcounter.so") } else { format!("{:0>12}-libcounter.so", i) };
        let at = dir.join(&name);
        if i % 4 < 2 {
            std::os::unix::fs::symlink(&victim, &at).unwrap();
        } else {
            std::fs::write(&at, b"planted").unwrap();
        }
        planted.push(std::ffi::OsString::from(name));
    }
    rt.load(&path).unwrap();
    let answer = fn1(&rt, "counter", "answer");
    for round in 0..16 {
        let features: &[&str] = if round % 2 == 0 { &["v2"] } else { &[] };
        s.install(&fixture("counter", features), "counter");
        rt.perform_reload().unwrap();
        assert_eq!(answer(1), if round % 2 == 0 { 3 } else { 2 });
    }
    assert_eq!(std::fs::read(&victim).unwrap(), b"untouched");
    // Replaced builds are freed by the collector once no thread can reach
    // them; wait for that round (no other thread runs module code here).
    // Other tests' threads of this process are observed too; a round may
    // have to wait for them, so ask again until a deadline.
    let copies = || -> Vec<_> {
        std::fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .filter(|e| !planted.contains(&e.file_name()) && !e.file_name().to_string_lossy().starts_with('.'))
            .collect()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while copies().len() > 1 && std::time::Instant::now() < deadline {
        rt.collect_retired();
    }
    let copies = copies();
    assert_eq!(copies.len(), 1, "one copy: the loaded one");
    assert_eq!(copies[0].metadata().unwrap().permissions().mode() & 0o777, 0o600);
    for name in &planted {
        assert!(dir.join(name).symlink_metadata().is_ok(), "{name:?} is left alone");
    }
}

#[test]
fn bound_callers_of_a_removed_module_no_longer_pin_signatures() {
    // `user` stops importing `dep`; later `dep` (loaded again as a root)
    // may change `scale` freely.
    let (s, rt) = dep_and_user("sig-forget");
    s.install(&fixture("user", &["no-dep"]), "user");
    assert_eq!(rt.perform_reload().unwrap().unloaded, ["dep"]);
    let dep_path = s.module_path("dep");
    s.install(&fixture("dep", &["sig-change"]), "dep");
    rt.load(&dep_path).unwrap();
    assert_eq!(signature_of(&rt, "dep", "scale").1, "extern \"C\" fn(u32) -> u64");
    assert_eq!(fn0(&rt, "dep", "calls")(), 0, "the new dep runs, with its global afresh");
}
