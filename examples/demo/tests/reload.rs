//! A host built from generated bindings reloads a module whose registration
//! is generated, through real builds of edited sources.

use std::time::Duration;

use hcr_demo::hcr::{Hcr, demo_module};
use hcr_demo::scratch::ScratchCrate;
use hcr_demo::{module_source, scratch_root, workspace_dir};
use hcr_runtime::{Config, Runtime};

/// Waits until the runtime sees the rebuilt file, then reloads.
fn reload(hcr: &Hcr) -> Result<hcr_runtime::ReloadReport, hcr_runtime::Error> {
    for _ in 0..1000 {
        if let Some(result) = hcr.update() {
            return result;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    panic!("the rebuilt module was never detected");
}

#[test]
fn generated_bindings_follow_a_generated_module_across_rebuilds() {
    let root = scratch_root();
    let copy = ScratchCrate::copy(
        &module_source(),
        &workspace_dir(),
        &root.join(format!("test-{}", std::process::id())),
        &root.join("target"),
    )
    .unwrap();
    copy.build().unwrap();
    let runtime = Runtime::with_config(Config::new().with_stub_base(0)).unwrap();
    let library = copy.library();
    let hcr = Hcr::start_with(runtime, &[("demo_module", library.as_path())]).unwrap();

    assert_eq!(demo_module::transform(5), 10);
    let held = demo_module::transform_ptr();
    assert!(hcr.runtime().stub_region().contains(&(held as usize)), "bindings hand out stubs");

    // An edit that builds: new code, same pointer, state kept.
    copy.edit("x * 2", "x * 5 + 1").unwrap();
    copy.build().unwrap();
    let report = reload(&hcr).unwrap();
    assert_eq!(report.reloaded, ["demo_module"]);
    assert_eq!(demo_module::transform(5), 26);
    assert_eq!(held(5).unwrap(), 26, "the pointer taken before the reload runs the new code");
    assert_eq!(demo_module::transform_ptr() as usize, held as usize);
    assert_eq!(demo_module::calls(), 3, "the global kept counting");

    // An edit that does not build: nothing changes.
    copy.edit("x * 5 + 1", "x * 5 +").unwrap();
    assert!(copy.build().is_err());
    assert!(hcr.update().is_none(), "no new library, no reload");
    assert_eq!(held(5).unwrap(), 26);

    // An edit that builds but changes a global's layout: refused.
    copy.edit("x * 5 +", "x * 7").unwrap();
    copy.edit("Global<AtomicU64>", "Global<(AtomicU64, AtomicU64)>").unwrap();
    copy.edit("AtomicU64::new(0))", "(AtomicU64::new(0), AtomicU64::new(0)))").unwrap();
    copy.edit("CALLS.fetch_add", "CALLS.0.fetch_add").unwrap();
    copy.edit("CALLS.load", "CALLS.0.load").unwrap();
    copy.build().unwrap();
    let err = reload(&hcr).unwrap_err();
    assert!(err.to_string().contains("global `demo_module::CALLS` has layout"), "{err}");
    assert_eq!(held(5).unwrap(), 26, "the old code keeps running");
    assert_eq!(hcr.generation(), 1);

    let _ = std::fs::remove_dir_all(copy.dir());
}
