//! Reload behaviour with real modules built by cargo and loaded with dlopen.

mod support;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use hcr_runtime::{Config, ReloadStage, Runtime, StubState, UnloadPolicy};
use support::{Scratch, fixture, fn0, fn1, runtime, wait_for_reload_needed};

/// Handler log of the counter fixture: (before, after, last outcome).
fn handler_log(rt: &Runtime) -> (u64, u64, u64) {
    let log = fn0(rt, "counter", "handler_log")();
    (log & 0xFFFF, (log >> 16) & 0xFFFF, log >> 32)
}

#[test]
fn a_stub_taken_before_a_reload_calls_the_new_code_after_it() {
    let s = Scratch::new("stub-survives");
    let path = s.install(&fixture("counter", &[]), "counter");
    let rt = runtime();
    let info = rt.load(&path).unwrap();
    assert_eq!(info.name, "counter");
    assert!(info.root);

    let answer = fn1(&rt, "counter", "answer");
    let held = rt.get_proc("counter", "answer").unwrap();
    assert!(rt.stub_region().contains(&(held.addr() as usize)));
    assert_eq!(answer(40), 41);
    assert!(!rt.reload_needed());

    s.install(&fixture("counter", &["v2"]), "counter");
    assert!(wait_for_reload_needed(&rt));
    assert!(rt.has_module_changed("counter").unwrap());
    let report = rt.perform_reload().unwrap();
    assert_eq!(report.reloaded, ["counter"]);
    assert_eq!(report.generation, 1);
    assert_eq!(rt.generation(), 1);

    assert_eq!(answer(40), 42, "the old pointer runs the new code");
    assert_eq!(rt.get_proc("counter", "answer").unwrap(), held, "same stub");
    assert!(!rt.reload_needed());
    assert!(!rt.has_module_changed("counter").unwrap());
}

#[test]
fn a_global_keeps_its_value_and_address_across_100_reloads() {
    let s = Scratch::new("hundred");
    let v1 = fixture("counter", &[]);
    let v2 = fixture("counter", &["v2"]);
    let path = s.install(&v1, "counter");
    let rt = runtime();
    rt.load(&path).unwrap();
    let bump = fn0(&rt, "counter", "bump");
    let count = fn0(&rt, "counter", "count");
    let global = rt.get_global("counter", "COUNT").unwrap();
    for _ in 0..5 {
        bump();
    }
    for i in 0..100u64 {
        s.install(if i % 2 == 0 { &v2 } else { &v1 }, "counter");
        let report = rt.perform_reload().unwrap();
        assert_eq!(report.reloaded, ["counter"], "reload {i}");
        assert_eq!(bump(), 6 + i, "reload {i}");
    }
    assert_eq!(count(), 105);
    assert_eq!(rt.generation(), 100);
    let after = rt.get_global("counter", "COUNT").unwrap();
    assert_eq!(after.as_ptr::<u64>(), global.as_ptr::<u64>(), "the slot never moved");
    // SAFETY: `COUNT` is a u64 slot owned by the runtime, not written
    // concurrently here.
    assert_eq!(unsafe { after.as_ptr::<AtomicU64>().as_ref().unwrap() }.load(Ordering::Relaxed), 105);
    assert_eq!(rt.stats().unloads, 100, "every replaced library was closed");
    assert_eq!(support::file_count(&rt.private_dir()), 1, "only the current copy is left");
}

#[test]
fn a_global_added_in_v2_is_initialised_exactly_once() {
    let s = Scratch::new("added-global");
    let path = s.install(&fixture("counter", &[]), "counter");
    let rt = runtime();
    rt.load(&path).unwrap();
    let inits = fn0(&rt, "counter", "inits");
    assert_eq!(inits(), 0);
    assert!(rt.get_global("counter", "ADDED").is_err());

    s.install(&fixture("counter", &["v2"]), "counter");
    rt.perform_reload().unwrap();
    let added = fn0(&rt, "counter", "added");
    let add_to_added = fn1(&rt, "counter", "add_to_added");
    assert_eq!(inits(), 1);
    assert_eq!(added(), 1000, "initialised by its first registration");
    assert_eq!(add_to_added(5), 1005);

    // Another build that registers `ADDED` again must not re-initialise it.
    s.install(&fixture("counter", &["v3"]), "counter");
    rt.perform_reload().unwrap();
    assert_eq!(fn1(&rt, "counter", "answer")(1), 4, "v3 is running");
    assert_eq!(inits(), 1);
    assert_eq!(added(), 1005);

    // Dropping it in v1 frees it; bringing it back initialises it afresh.
    s.install(&fixture("counter", &[]), "counter");
    rt.perform_reload().unwrap();
    assert!(rt.get_global("counter", "ADDED").is_err(), "freed when it disappeared");
    s.install(&fixture("counter", &["v2"]), "counter");
    rt.perform_reload().unwrap();
    assert_eq!(inits(), 2);
    assert_eq!(added(), 1000);
}

#[test]
fn reloading_an_import_keeps_its_importer_working_through_the_stub() {
    let s = Scratch::new("imports");
    s.install(&fixture("dep", &[]), "dep");
    let user_path = s.install(&fixture("user", &[]), "user");
    let rt = runtime();
    let info = rt.load(&user_path).unwrap();
    assert_eq!(info.imports, ["dep"]);
    let modules: Vec<String> = rt.modules().into_iter().map(|m| m.name).collect();
    assert_eq!(modules, ["dep", "user"], "imports load first");
    assert!(!rt.modules()[0].root);

    let compute = fn1(&rt, "user", "compute");
    let scale_stub = fn0(&rt, "user", "scale_stub");
    let host_scale = rt.get_proc("dep", "scale").unwrap();
    assert_eq!(compute(3), 31);
    assert_eq!(scale_stub(), host_scale.addr() as u64, "user holds dep's stub");

    s.install(&fixture("dep", &["v2"]), "dep");
    let report = rt.perform_reload().unwrap();
    assert_eq!(report.reloaded, ["dep"], "only dep is reloaded");
    assert_eq!(compute(3), 61, "user reaches the new dep through the stub");
    assert_eq!(scale_stub(), host_scale.addr() as u64, "user's pointer is unchanged");
    assert_eq!(rt.get_proc("user", "compute").unwrap().addr() as usize, compute as usize);
    assert_eq!(fn0(&rt, "dep", "calls")(), 2, "dep's global survived");
}

#[test]
fn a_module_nothing_imports_any_more_is_unloaded() {
    let s = Scratch::new("gc");
    s.install(&fixture("dep", &[]), "dep");
    let user_path = s.install(&fixture("user", &[]), "user");
    let rt = runtime();
    rt.load(&user_path).unwrap();
    let before = rt.stats();
    assert_eq!(before.modules, 2);

    s.install(&fixture("user", &["no-dep"]), "user");
    let report = rt.perform_reload().unwrap();
    assert_eq!(report.reloaded, ["user"]);
    assert_eq!(report.unloaded, ["dep"]);
    assert_eq!(rt.stats().modules, 1);
    assert!(rt.get_global("dep", "CALLS").is_err(), "dep's globals were freed");
    let scale = rt.inspect().stubs.into_iter().find(|s| s.module == "dep" && s.name == "scale").unwrap();
    assert_eq!(scale.state, StubState::Removed);
    assert_eq!(fn1(&rt, "user", "compute")(3), 4);

    // Unloading the root unloads everything.
    assert_eq!(rt.unload("user").unwrap(), ["user"]);
    assert_eq!(rt.stats().modules, 0);
    assert_eq!(support::file_count(&rt.private_dir()), 0);
}

#[test]
fn touching_a_module_without_changing_it_does_not_reload() {
    let s = Scratch::new("touch");
    let artifact = fixture("counter", &[]);
    let path = s.install(&artifact, "counter");
    let rt = runtime();
    rt.load(&path).unwrap();
    let file = std::fs::File::options().write(true).open(&path).unwrap();
    file.set_modified(SystemTime::now() + Duration::from_secs(60)).unwrap();
    drop(file);
    // `reload_needed` only `stat`s: a touched file needs a look...
    assert!(rt.reload_needed());
    // ...which finds the same content: nothing to do.
    assert!(!rt.has_module_changed("counter").unwrap());
    assert!(rt.perform_reload().unwrap().is_empty());
    assert!(!rt.reload_needed(), "the new timestamp is remembered");
    // Replaced by an identical file (new inode, new time): still no reload.
    s.install(&artifact, "counter");
    assert!(wait_for_reload_needed(&rt));
    let report = rt.perform_reload().unwrap();
    assert!(report.is_empty());
    assert!(!rt.reload_needed());
    assert_eq!(rt.generation(), 0);
    assert_eq!(handler_log(&rt), (0, 0, 0), "no handler ran");
}

#[test]
fn handlers_run_around_a_committed_reload_in_the_right_code() {
    let s = Scratch::new("handlers");
    let path = s.install(&fixture("counter", &[]), "counter");
    let rt = runtime();
    rt.load(&path).unwrap();
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = events.clone();
    rt.on_reload(move |e| sink.lock().unwrap().push(*e));

    s.install(&fixture("counter", &["v2"]), "counter");
    rt.perform_reload().unwrap();
    // The v1 before-handler and the v2 after-handler ran once each.
    assert_eq!(handler_log(&rt), (1, 1, u64::from(hcr_runtime::abi::Outcome::COMMITTED.0)));
    let stages: Vec<(ReloadStage, u64)> = events.lock().unwrap().iter().map(|e| (e.stage, e.generation)).collect();
    assert_eq!(stages, [(ReloadStage::Before, 0), (ReloadStage::Committed, 1)]);
}

#[test]
fn a_reload_from_inside_a_handler_is_refused() {
    let s = Scratch::new("reentrant");
    let path = s.install(&fixture("counter", &[]), "counter");
    let rt = Arc::new(runtime());
    rt.load(&path).unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (rt2, seen2) = (Arc::downgrade(&rt), seen.clone());
    rt.on_reload(move |e| {
        if let Some(rt) = rt2.upgrade() {
            let nested = rt.perform_reload().err().map(|e| e.to_string());
            // Other calls are fine from a handler.
            let stub = rt.get_proc("counter", "answer").is_ok();
            seen2.lock().unwrap().push((e.stage, nested, stub));
        }
    });
    s.install(&fixture("counter", &["v2"]), "counter");
    rt.perform_reload().unwrap();
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 2);
    for (_, nested, stub) in seen.iter() {
        assert!(nested.as_deref().unwrap().contains("re-entered"), "{nested:?}");
        assert!(stub);
    }
    assert_eq!(rt.generation(), 1);
}

#[test]
fn inspect_lists_every_stub_with_its_target() {
    let s = Scratch::new("inspect");
    let path = s.install(&fixture("counter", &[]), "counter");
    let rt = runtime();
    rt.load(&path).unwrap();
    let pending = rt.get_proc("counter", "not_yet").unwrap();
    let listing = rt.inspect();
    let answer = listing.stubs.iter().find(|s| s.name == "answer").unwrap();
    assert_eq!(answer.module, "counter");
    assert_eq!(answer.state, StubState::Bound);
    assert!(answer.target.is_some());
    assert_eq!(answer.address, rt.get_proc("counter", "answer").unwrap().addr() as usize);
    let not_yet = listing.stubs.iter().find(|s| s.name == "not_yet").unwrap();
    assert_eq!(not_yet.state, StubState::Pending);
    assert_eq!(not_yet.address, pending.addr() as usize);
    #[cfg(target_arch = "x86_64")]
    assert_eq!(answer.instruction, format!("jmp qword ptr [{:X}h]", answer.slot));
    #[cfg(target_arch = "aarch64")]
    assert_eq!(answer.instruction, format!("ldr x16, #{:+#x}; br x16", answer.slot - answer.address));
    let text = listing.to_string();
    assert!(text.contains("counter::answer") && text.contains("unbound (pending)"), "{text}");
}

#[test]
fn no_mapping_is_ever_writable_and_executable() {
    let s = Scratch::new("maps");
    let path = s.install(&fixture("counter", &[]), "counter");
    let rt = runtime();
    rt.load(&path).unwrap();
    rt.get_proc("counter", "pending_forever").unwrap();
    s.install(&fixture("counter", &["v2"]), "counter");
    rt.perform_reload().unwrap();
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    let rwx: Vec<&str> =
        maps.lines().filter(|l| l.split_whitespace().nth(1).is_some_and(|p| p.starts_with("rwx"))).collect();
    assert!(rwx.is_empty(), "writable+executable mappings: {rwx:#?}");
    // The table itself shows code (r-x) and slot (rw-) pages.
    let region = rt.stub_region();
    let perms: Vec<&str> = maps
        .lines()
        .filter_map(|l| {
            let (range, rest) = l.split_once(' ')?;
            let start = usize::from_str_radix(range.split('-').next()?, 16).ok()?;
            region.contains(&start).then(|| rest.split_whitespace().next())?
        })
        .collect();
    assert!(perms.iter().any(|p| p.starts_with("r-x")), "{perms:?}");
    assert!(perms.iter().any(|p| p.starts_with("rw-")), "{perms:?}");
}

#[test]
fn never_policy_keeps_replaced_libraries_loaded() {
    let s = Scratch::new("never");
    let path = s.install(&fixture("counter", &[]), "counter");
    let config = Config::new().with_stub_base(0).with_stub_capacity(1024).with_unload_policy(UnloadPolicy::Never);
    let rt = Runtime::with_config(config).unwrap();
    rt.load(&path).unwrap();
    s.install(&fixture("counter", &["v2"]), "counter");
    rt.perform_reload().unwrap();
    s.install(&fixture("counter", &[]), "counter");
    rt.perform_reload().unwrap();
    let stats = rt.stats();
    assert_eq!((stats.kept_libraries, stats.unloads), (2, 0));
    assert_eq!(support::file_count(&rt.private_dir()), 3);
}

#[test]
fn loading_the_same_path_twice_is_idempotent_and_a_second_copy_of_a_name_is_refused() {
    let s = Scratch::new("twice");
    let path = s.install(&fixture("counter", &[]), "counter");
    let rt = runtime();
    rt.load(&path).unwrap();
    rt.load(&path).unwrap();
    assert_eq!(rt.stats().modules, 1);
    let other = Scratch::new("twice-other");
    let other_path = other.install(&fixture("counter", &[]), "counter");
    let err = rt.load(&other_path).unwrap_err();
    assert!(matches!(err.failures()[0], hcr_runtime::Error::DuplicateModule { .. }), "{err}");
    assert_eq!(rt.stats().modules, 1);
}

/// A build of `counter` whose descriptor says it was built against ABI 1.1
/// (or 1.0): as short as descriptors were then, without flags or
/// fingerprint.
fn as_older_abi(variant: &[&str], minor: u16, size: usize) -> Vec<u8> {
    let mut bytes = std::fs::read(fixture("counter", variant)).unwrap();
    let at = support::descriptor_offset(&bytes, hcr_runtime::abi::DESCRIPTOR_SYMBOL);
    assert_eq!(&bytes[at..at + 8], &hcr_runtime::abi::MAGIC);
    bytes[at + 10..at + 12].copy_from_slice(&minor.to_ne_bytes());
    bytes[at + 12..at + 16].copy_from_slice(&(size as u32).to_ne_bytes());
    bytes
}

#[test]
fn modules_built_for_older_minor_versions_load_and_reload() {
    use hcr_runtime::abi::ModuleDescriptor;
    let short = std::mem::offset_of!(ModuleDescriptor, flags);
    let s = Scratch::new("older-abi");
    let path = s.install_bytes(&as_older_abi(&[], 1, short), "counter");
    let rt = runtime();
    let info = rt.load(&path).unwrap();
    assert_eq!(info.abi_minor, 1);
    assert_eq!(fn1(&rt, "counter", "answer")(1), 2);
    s.install_bytes(&as_older_abi(&["v2"], 0, short), "counter");
    assert!(wait_for_reload_needed(&rt));
    rt.perform_reload().unwrap();
    assert_eq!(fn1(&rt, "counter", "answer")(1), 3);
    assert_eq!(rt.modules()[0].abi_minor, 0);

    // Shorter than any version's descriptor: refused before it runs.
    let s = Scratch::new("older-abi-short");
    let path = s.install_bytes(&as_older_abi(&[], 1, short - 8), "counter");
    let err = runtime().load(&path).unwrap_err();
    assert!(
        matches!(err.failures()[0], hcr_runtime::Error::NotAModule { reason, .. } if reason.contains("too small")),
        "{err}"
    );
}
