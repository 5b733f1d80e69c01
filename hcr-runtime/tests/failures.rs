//! Every way a reload can fail leaves the old code running with its state,
//! and releases whatever the failed attempt allocated.

mod support;

use std::path::Path;

use hcr_runtime::{Config, Error, Runtime, StubState};
use support::{Scratch, fixture, fn0, fn1, runtime, wait_for_reload_needed};

/// A runtime running counter v1 with some state.
struct Running {
    scratch: Scratch,
    rt: Runtime,
}

impl Running {
    fn new(name: &str) -> Running {
        Running::with(name, runtime())
    }

    fn with(name: &str, rt: Runtime) -> Running {
        let scratch = Scratch::new(name);
        let path = scratch.install(&fixture("counter", &[]), "counter");
        rt.load(&path).unwrap();
        let bump = fn0(&rt, "counter", "bump");
        for _ in 0..3 {
            bump();
        }
        Running { scratch, rt }
    }

    /// Installs `bytes` as the counter module, reloads, and checks that the
    /// reload failed cleanly (twice: the same build installed again fails
    /// the same way and takes no new stub). Returns the error.
    fn fail_with(&self, bytes: &[u8]) -> Error {
        let answer = fn1(&self.rt, "counter", "answer");
        let before = self.rt.stats();
        let copies = support::file_count(&self.rt.private_dir());
        self.scratch.install_bytes(bytes, "counter");
        assert!(wait_for_reload_needed(&self.rt));
        let err = self.rt.perform_reload().expect_err("the reload must fail");
        assert!(matches!(err, Error::ReloadFailed { .. }), "{err}");
        self.assert_v1_intact(answer);
        let after = self.rt.stats();
        // The stubs the attempt created stay, unbound, with their names.
        for stub in &self.rt.inspect().stubs[before.stubs_in_use..] {
            assert_eq!((stub.module.as_str(), stub.state), ("counter", StubState::Pending), "{stub:?}");
        }
        assert_eq!(after.globals, before.globals, "globals allocated by the attempt were freed");
        assert_eq!(after.modules, before.modules);
        assert_eq!(support::file_count(&self.rt.private_dir()), copies, "the attempt's copies were deleted");
        assert!(!self.rt.reload_needed(), "a failed file is not retried until it changes");
        assert!(self.rt.has_module_changed("counter").unwrap());

        self.scratch.install_bytes(bytes, "counter");
        assert!(wait_for_reload_needed(&self.rt), "a new file is tried again");
        let again = self.rt.perform_reload().expect_err("the same build fails again");
        assert_eq!(again.to_string(), err.to_string());
        assert_eq!(self.rt.stats().stubs_in_use, after.stubs_in_use, "the same procs got the same stubs");
        self.assert_v1_intact(answer);
        err
    }

    fn fail_with_artifact(&self, artifact: &Path) -> Error {
        self.fail_with(&std::fs::read(artifact).unwrap())
    }

    fn assert_v1_intact(&self, old_answer: extern "C" fn(u64) -> u64) {
        assert_eq!(old_answer(1), 2, "v1 still runs through the old pointer");
        assert_eq!(fn0(&self.rt, "counter", "count")(), 3, "state kept");
        assert_eq!(fn0(&self.rt, "counter", "only_v1")(), 7);
        assert_eq!(self.rt.generation(), 0);
    }

    /// After a failure, a good build still reloads.
    fn recovers(&self) {
        self.scratch.install(&fixture("counter", &["v2"]), "counter");
        assert!(wait_for_reload_needed(&self.rt));
        self.rt.perform_reload().unwrap();
        assert_eq!(fn1(&self.rt, "counter", "answer")(1), 3);
        assert_eq!(fn0(&self.rt, "counter", "count")(), 3);
    }
}

fn first(err: &Error) -> &Error {
    err.failures()[0]
}

#[test]
fn a_file_that_is_not_a_library_rolls_back() {
    let r = Running::new("not-a-library");
    let err = r.fail_with(b"this is a text file, not a shared library\n");
    assert!(matches!(first(&err), Error::NotLoadable { .. }), "{err}");
    assert!(err.to_string().contains("libcounter"), "the error names the file: {err}");
    r.recovers();
}

#[test]
fn a_truncated_library_rolls_back_without_reaching_the_system_loader() {
    let r = Running::new("truncated");
    // Cut inside the loadable segments (what comes after them, debug
    // information and section headers, the system loader never reads).
    let bytes = std::fs::read(fixture("counter", &["v2"])).unwrap();
    let err = r.fail_with(&bytes[..support::loaded_end(&bytes) - 100]);
    match first(&err) {
        Error::NotLoadable { reason, .. } => assert!(reason.contains("truncated"), "{reason}"),
        other => panic!("{other}"),
    }
    r.recovers();
}

#[test]
fn an_empty_file_rolls_back() {
    let r = Running::new("empty");
    let err = r.fail_with(b"");
    match first(&err) {
        Error::NotLoadable { reason, .. } => assert!(reason.contains("empty"), "{reason}"),
        other => panic!("{other}"),
    }
    r.recovers();
}

#[test]
fn a_library_that_is_not_an_hcr_module_rolls_back() {
    let r = Running::new("plain");
    let err = r.fail_with_artifact(&fixture("plain", &[]));
    match first(&err) {
        Error::NotAModule { reason, .. } => assert!(reason.contains("HCR_MODULE_DESCRIPTOR"), "{reason}"),
        other => panic!("{other}"),
    }
    r.recovers();
}

#[test]
fn a_module_for_another_abi_major_rolls_back() {
    let r = Running::new("abi");
    let err = r.fail_with_artifact(&fixture("counter", &["abi-major"]));
    match first(&err) {
        Error::AbiMismatch { found_major, .. } => assert_eq!(*found_major, hcr_runtime::abi::ABI_MAJOR + 1),
        other => panic!("{other}"),
    }
    r.recovers();
}

#[test]
fn an_init_that_reports_failure_rolls_back_and_frees_what_it_registered() {
    let r = Running::new("init-fails");
    // v2 + failure: registers a new global and new procs, then fails.
    let err = r.fail_with_artifact(&fixture("counter", &["v2", "init-fails"]));
    match first(&err) {
        Error::InitFailed { module, message, .. } => {
            assert_eq!(module, "counter");
            assert!(message.contains("configuration file is missing"), "{message}");
        }
        other => panic!("{other}"),
    }
    assert!(r.rt.get_global("counter", "ADDED").is_err());
    // Before-handlers of v1 ran, and v1's after-handlers saw the rollback,
    // once for each of the two attempts `fail_with` makes.
    let log = fn0(&r.rt, "counter", "handler_log")();
    assert_eq!((log & 0xFFFF, (log >> 16) & 0xFFFF), (2, 2));
    assert_eq!(log >> 32, u64::from(hcr_runtime::abi::Outcome::ROLLED_BACK.0));
    r.recovers();
}

#[test]
fn an_init_that_panics_rolls_back() {
    let r = Running::new("init-panics");
    let err = r.fail_with_artifact(&fixture("counter", &["init-panics"]));
    match first(&err) {
        Error::InitFailed { message, .. } => assert!(message.contains("deliberate panic in init"), "{message}"),
        other => panic!("{other}"),
    }
    r.recovers();
}

#[test]
fn an_init_that_registers_a_name_twice_rolls_back() {
    let r = Running::new("dup-proc");
    let err = r.fail_with_artifact(&fixture("counter", &["dup-proc"]));
    match first(&err) {
        Error::DuplicateProc { module, name } => assert_eq!((module.as_str(), name.as_str()), ("counter", "answer")),
        other => panic!("{other}"),
    }
    r.recovers();
}

#[test]
fn a_global_registered_with_another_layout_rolls_back() {
    let r = Running::new("layout");
    let err = r.fail_with_artifact(&fixture("counter", &["layout-change"]));
    match first(&err) {
        Error::GlobalLayoutMismatch { name, existing, requested, .. } => {
            assert_eq!(name, "COUNT");
            assert_eq!((existing.size, requested.size), (8, 4));
        }
        other => panic!("{other}"),
    }
    r.recovers();
}

#[test]
fn a_file_that_now_holds_another_module_rolls_back() {
    let r = Running::new("renamed");
    let err = r.fail_with_artifact(&fixture("dep", &[]));
    assert!(matches!(first(&err), Error::ModuleNameMismatch { .. }), "{err}");
    r.recovers();
}

#[test]
fn running_out_of_stubs_during_a_reload_rolls_back() {
    // v1 registers 8 procs; v2 registers 9, one more than the table has.
    let rt = Runtime::with_config(Config::new().with_stub_base(0).with_stub_capacity(8)).unwrap();
    let r = Running::with("capacity", rt);
    let err = r.fail_with_artifact(&fixture("counter", &["v2"]));
    assert!(matches!(first(&err), Error::CapacityExhausted { capacity: 8 }), "{err}");
}

#[test]
fn a_deleted_module_file_is_no_change_and_a_restored_one_reloads() {
    // Builds delete their output first, and a failed build leaves nothing.
    let r = Running::new("deleted");
    let answer = fn1(&r.rt, "counter", "answer");
    std::fs::remove_file(r.scratch.module_path("counter")).unwrap();
    assert!(!r.rt.reload_needed(), "nothing to load");
    assert!(!r.rt.has_module_changed("counter").unwrap());
    let report = r.rt.perform_reload().unwrap();
    assert!(report.is_empty(), "{report}");
    r.assert_v1_intact(answer);
    r.recovers();
}

#[test]
fn a_directory_in_place_of_the_module_rolls_back() {
    let r = Running::new("unreadable");
    let answer = fn1(&r.rt, "counter", "answer");
    let path = r.scratch.module_path("counter");
    std::fs::remove_file(&path).unwrap();
    std::fs::create_dir(&path).unwrap();
    assert!(wait_for_reload_needed(&r.rt));
    let err = r.rt.perform_reload().unwrap_err();
    assert!(matches!(first(&err), Error::NotRegularFile { kind: "directory", .. }), "{err}");
    r.assert_v1_intact(answer);
    std::fs::remove_dir(&path).unwrap();
    r.recovers();
}

#[test]
fn a_missing_import_rolls_back() {
    let s = Scratch::new("missing-import");
    s.install(&fixture("dep", &[]), "dep");
    let path = s.install(&fixture("user", &[]), "user");
    let rt = runtime();
    rt.load(&path).unwrap();
    let compute = fn1(&rt, "user", "compute");
    s.install(&fixture("user", &["missing-import"]), "user");
    let err = rt.perform_reload().unwrap_err();
    match first(&err) {
        Error::ImportNotFound { importer, import, searched } => {
            assert_eq!((importer.as_str(), import.as_str()), ("user", "nonexistent"));
            assert!(!searched.is_empty());
        }
        other => panic!("{other}"),
    }
    assert_eq!(compute(3), 31);
    assert_eq!(rt.stats().modules, 2);
}

#[test]
fn an_import_cycle_is_refused_on_load_and_on_reload() {
    // On load: user -> dep -> user.
    let s = Scratch::new("cycle-load");
    s.install(&fixture("dep", &["cycle"]), "dep");
    let path = s.install(&fixture("user", &[]), "user");
    let rt = runtime();
    let err = rt.load(&path).unwrap_err();
    match first(&err) {
        Error::ImportCycle { cycle } => assert_eq!(cycle, &["user", "dep", "user"]),
        other => panic!("{other}"),
    }
    assert!(err.to_string().starts_with("load failed and was rolled back, nothing changed: import cycle"), "{err}");
    let stats = rt.stats();
    assert_eq!((stats.modules, stats.stubs_in_use, stats.globals), (0, 0, 0), "nothing of the load remains");
    assert_eq!(support::file_count(&rt.private_dir()), 0);

    // On reload: dep gains an import of user while both are loaded.
    let s = Scratch::new("cycle-reload");
    s.install(&fixture("dep", &[]), "dep");
    let path = s.install(&fixture("user", &[]), "user");
    let rt = runtime();
    rt.load(&path).unwrap();
    let compute = fn1(&rt, "user", "compute");
    s.install(&fixture("dep", &["cycle"]), "dep");
    let err = rt.perform_reload().unwrap_err();
    assert!(matches!(first(&err), Error::ImportCycle { .. }), "{err}");
    assert_eq!(compute(3), 31);
}

#[test]
fn a_failed_load_leaves_nothing_behind_but_pending_stubs() {
    let s = Scratch::new("failed-load");
    let rt = runtime();
    let init_fails = fixture("counter", &["init-fails"]);
    let mut stubs = None;
    for (artifact, is_expected) in [
        (&init_fails, (|e| matches!(e, Error::InitFailed { .. })) as fn(&Error) -> bool),
        (&fixture("plain", &[]), |e| matches!(e, Error::NotAModule { .. })),
        (&init_fails, |e| matches!(e, Error::InitFailed { .. })),
    ] {
        let path = s.install(artifact, "counter");
        let err = rt.load(&path).unwrap_err();
        assert!(matches!(err, Error::LoadFailed { .. }), "{err}");
        assert!(is_expected(first(&err)), "{err}");
        assert!(err.to_string().starts_with("load failed and was rolled back, nothing changed: "), "{err}");
        let stats = rt.stats();
        assert_eq!((stats.modules, stats.globals), (0, 0));
        assert_eq!(support::file_count(&rt.private_dir()), 0);
        // The procs the failed init registered keep their stubs, unbound.
        let listing = rt.inspect();
        assert!(listing.stubs.iter().all(|s| s.state == StubState::Pending), "{listing}");
        assert!(stats.stubs_in_use > 0);
        assert_eq!(*stubs.get_or_insert(stats.stubs_in_use), stats.stubs_in_use, "a later load takes the same stubs");
    }
}

#[test]
fn errors_chain_their_cause() {
    let r = Running::new("chain");
    let err = r.fail_with(b"not a library");
    let source = std::error::Error::source(&err).expect("a reload error has its cause as source");
    assert_eq!(source.to_string(), first(&err).to_string());
}
