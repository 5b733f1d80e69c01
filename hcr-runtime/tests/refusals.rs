//! What a refused build leaves, and what it never does: hand a stub to
//! another proc, let a bound caller lose its proc, hold up another module's
//! reload. And errors that read well.

mod support;

use hcr_runtime::{Error, Runtime, StubState};
use support::{Scratch, fixture, fn0, fn1, runtime, wait_for_reload_needed};

fn first(err: &Error) -> &Error {
    err.failures()[0]
}

fn stub_of(rt: &Runtime, module: &str, name: &str) -> hcr_runtime::StubInfo {
    rt.inspect().stubs.into_iter().find(|s| s.module == module && s.name == name).expect("a stub")
}

#[test]
fn a_stub_created_by_a_rolled_back_reload_is_the_one_its_proc_gets_later() {
    let s = Scratch::new("kept-stub");
    let path = s.install(&fixture("counter", &[]), "counter");
    let rt = runtime();
    rt.load(&path).unwrap();
    // v2 registers `added`, then its init fails.
    s.install(&fixture("counter", &["v2", "init-fails"]), "counter");
    rt.perform_reload().unwrap_err();
    let kept = stub_of(&rt, "counter", "added");
    assert_eq!(kept.state, StubState::Pending, "unbound, with its name");
    let early = rt.get_proc("counter", "added").unwrap();
    assert_eq!(early.index(), kept.index, "the host gets that stub");
    // SAFETY: `counter::added` is an `extern "C" fn() -> u64` in every build.
    let added = unsafe { early.typed::<extern "C" fn() -> u64>() };

    s.install(&fixture("counter", &["v2"]), "counter");
    assert!(wait_for_reload_needed(&rt));
    rt.perform_reload().unwrap();
    assert_eq!(stub_of(&rt, "counter", "added").index, kept.index, "the registration took the same stub");
    assert_eq!(added(), 1000, "the address taken after the rollback reaches the proc of that name");
    assert_eq!(rt.get_proc("counter", "added").unwrap(), early);
}

#[test]
fn removing_a_proc_the_host_is_bound_to_is_refused() {
    let s = Scratch::new("bound-removed");
    let path = s.install(&fixture("counter", &[]), "counter");
    let rt = runtime();
    rt.load(&path).unwrap();
    let only_v1 = stub_of(&rt, "counter", "only_v1");
    rt.get_proc_with_signature("counter", "only_v1", only_v1.signature_hash, &only_v1.signature).unwrap();
    s.install(&fixture("counter", &["v2"]), "counter");
    let err = rt.perform_reload().unwrap_err();
    match first(&err) {
        Error::BoundProcRemoved { module, name, binder } => {
            assert_eq!((module.as_str(), name.as_str(), binder.as_str()), ("counter", "only_v1", "the host"));
        }
        other => panic!("{other}"),
    }
    assert!(
        err.to_string().contains(
            "proc `counter::only_v1` would be gone after this reload, but the host is bound to it; restore the function, or restart to rebuild the host"
        ),
        "{err}"
    );
    assert_eq!(fn0(&rt, "counter", "only_v1")(), 7, "the old code keeps running");
    assert_eq!(rt.generation(), 0);
}

/// `counter` and `state`, both loaded by the host.
fn two_modules(name: &str) -> (Scratch, Runtime) {
    let s = Scratch::new(name);
    let counter = s.install(&fixture("counter", &[]), "counter");
    let state = s.install(&fixture("state", &[]), "state");
    let rt = runtime();
    rt.load(&counter).unwrap();
    rt.load(&state).unwrap();
    (s, rt)
}

fn packed(rt: &Runtime) -> (u64, u64, u64) {
    let p = fn0(rt, "state", "packed")();
    (p & 0xFFFF, (p >> 16) & 0xFFFF, p >> 32)
}

#[test]
fn a_refused_build_never_holds_up_another_modules_reload() {
    let (s, rt) = two_modules("refused-alone");
    let answer = fn1(&rt, "counter", "answer");
    s.install(&fixture("counter", &["v2", "init-fails"]), "counter");
    assert!(matches!(first(&rt.perform_reload().unwrap_err()), Error::InitFailed { .. }));
    assert!(!rt.reload_needed());
    assert!(rt.has_module_changed("counter").unwrap());

    // Another module changes: it reloads alone, the refused file is not
    // tried again.
    s.install(&fixture("state", &["gain"]), "state");
    assert!(wait_for_reload_needed(&rt));
    let report = rt.perform_reload().unwrap();
    assert_eq!((report.reloaded.as_slice(), report.refused.len()), (&["state".to_owned()][..], 0), "{report}");
    assert_eq!(packed(&rt), (1, 2, 100));
    assert_eq!(answer(1), 2, "counter's old code keeps running");
    assert!(!rt.reload_needed());
    assert!(rt.has_module_changed("counter").unwrap(), "its file still differs from the loaded code");
    assert!(!rt.has_module_changed("state").unwrap());

    // The refused module is fixed: it reloads.
    s.install(&fixture("counter", &["v2"]), "counter");
    assert!(wait_for_reload_needed(&rt));
    assert_eq!(rt.perform_reload().unwrap().reloaded, ["counter"]);
    assert_eq!(answer(1), 3);
    assert!(!rt.has_module_changed("counter").unwrap());
    assert_eq!(rt.generation(), 2);
}

#[test]
fn when_two_modules_change_and_one_is_refused_the_other_commits() {
    let (s, rt) = two_modules("refused-together");
    let answer = fn1(&rt, "counter", "answer");
    s.install(&fixture("counter", &["v2", "init-fails"]), "counter");
    s.install(&fixture("state", &["reorder"]), "state");
    assert!(wait_for_reload_needed(&rt));
    let report = rt.perform_reload().unwrap();
    assert_eq!(report.reloaded, ["state"], "{report}");
    assert_eq!(report.refused.len(), 1, "{report}");
    assert_eq!(report.refused[0].module, "counter");
    assert!(matches!(*report.refused[0].error, Error::InitFailed { .. }), "{}", report.refused[0].error);
    assert!(report.to_string().contains("refused [counter]"), "{report}");
    assert_eq!(answer(1), 2);
    assert_eq!(packed(&rt), (1, 2, 0));
    assert!(!rt.reload_needed(), "the refused file waits for a change");
    assert!(rt.has_module_changed("counter").unwrap());
}

#[test]
fn a_caller_and_its_callee_changed_one_after_the_other_reload_together() {
    let s = Scratch::new("two-steps");
    s.install(&fixture("dep", &[]), "dep");
    let path = s.install(&fixture("user", &[]), "user");
    let rt = runtime();
    rt.load(&path).unwrap();
    let compute = fn1(&rt, "user", "compute");
    // The callee first: refused, `user` is bound to the old signature.
    s.install(&fixture("dep", &["sig-change"]), "dep");
    assert!(matches!(first(&rt.perform_reload().unwrap_err()), Error::SignatureMismatch { .. }));
    assert!(!rt.reload_needed());
    // Then the caller: tried with the refused callee, both commit.
    s.install(&fixture("user", &["scale-u32"]), "user");
    assert!(wait_for_reload_needed(&rt));
    let report = rt.perform_reload().unwrap();
    assert_eq!(report.reloaded, ["dep", "user"], "{report}");
    assert_eq!(compute(3), 31);
    assert!(!rt.has_module_changed("dep").unwrap());
}

#[test]
fn errors_read_like_their_message_in_debug_output() {
    let s = Scratch::new("debug");
    let path = s.module_path("missing");
    let rt = runtime();
    let err = rt.load(&path).unwrap_err();
    let debug = format!("{err:?}");
    assert!(debug.starts_with(&err.to_string()), "{debug}");
    assert!(debug.starts_with("load failed and was rolled back, nothing changed: "), "{debug}");
    assert!(debug.contains("cannot read module file"), "{debug}");
    assert!(debug.contains("\n  caused by: "), "the operating system's error is shown: {debug}");
    assert!(!debug.contains("ReadModule {"), "{debug}");
    // What `fn main() -> Result<(), Box<dyn Error>>` prints.
    let boxed: Box<dyn std::error::Error> = Box::new(err);
    assert_eq!(format!("{boxed:?}"), debug);
}

#[test]
fn a_refused_build_is_tried_again_once_a_module_its_failure_involved_commits() {
    let s = Scratch::new("retry-after");
    s.install(&fixture("dep", &[]), "dep");
    let path = s.install(&fixture("user", &[]), "user");
    let rt = runtime();
    rt.load(&path).unwrap();
    // The caller alone: refused, `dep::scale` still takes a u64.
    s.install(&fixture("user", &["scale-u32"]), "user");
    assert!(matches!(first(&rt.perform_reload().unwrap_err()), Error::SignatureMismatch { .. }));
    assert!(!rt.reload_needed());
    // `dep` commits a new build: the refused `user` may load now, so it is
    // tried again, on its own, at the next reload.
    s.install(&fixture("dep", &["v2"]), "dep");
    assert!(wait_for_reload_needed(&rt));
    assert_eq!(rt.perform_reload().unwrap().reloaded, ["dep"]);
    assert!(rt.reload_needed(), "the refused file is due again");
    let err = rt.perform_reload().unwrap_err();
    assert!(matches!(first(&err), Error::SignatureMismatch { .. }), "still refused: {err}");
    assert!(!rt.reload_needed(), "and waits for a change again");
    assert_eq!(fn1(&rt, "user", "compute")(3), 61, "the old user calls the new dep");
}
