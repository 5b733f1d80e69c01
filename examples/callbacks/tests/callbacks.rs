//! A host's callback table of stub pointers stays valid while either module
//! is rebuilt and reloaded; `ops` reaches the new `math` through its stubs.

use std::path::Path;
use std::time::Duration;

use callbacks::hcr::{Hcr, ops};
use callbacks::{callback_table, run_table};
use hcr_demo::scratch::ScratchCrate;
use hcr_runtime::{Config, Runtime};

fn reload(hcr: &Hcr) -> Vec<String> {
    for _ in 0..1000 {
        if let Some(result) = hcr.update() {
            return result.unwrap().reloaded;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    panic!("no change detected");
}

#[test]
fn stored_stub_pointers_survive_reloads_of_either_module() {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    let workspace = here.join("../..");
    let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("callbacks-{}", std::process::id()));
    // Shared with the demo, which has hcr-build's dependencies compiled there.
    let target = hcr_demo::scratch_root().join("target");
    // `ops` imports `../math`: keep the copies side by side.
    let math = ScratchCrate::copy(&here.join("math"), &workspace, &root.join("math"), &target).unwrap();
    let ops_crate = ScratchCrate::copy(&here.join("ops"), &workspace, &root.join("ops"), &target).unwrap();
    math.build().unwrap();
    ops_crate.build().unwrap();

    let runtime = Runtime::with_config(Config::new().with_stub_base(0)).unwrap();
    let (math_lib, ops_lib) = (math.library(), ops_crate.library());
    let hcr = Hcr::start_with(runtime, &[("math", math_lib.as_path()), ("ops", ops_lib.as_path())]).unwrap();
    let table = callback_table();
    let values = |x| run_table(&table, x).into_iter().map(|(_, v)| v).collect::<Vec<_>>();
    assert_eq!(values(3), [6, 9, 15, 12]);

    // Reload `math` alone: every entry follows, including `ops`'s calls.
    math.edit("x * 2", "x * 10").unwrap();
    math.build().unwrap();
    assert_eq!(reload(&hcr), ["math"]);
    assert_eq!(values(3), [30, 9, 39, 300]);

    // Reload `ops` alone: its global counter continues.
    let calls = ops::ops_calls();
    ops_crate.edit("math::double(x) + math::square(x)", "math::double(x) * math::square(x)").unwrap();
    ops_crate.build().unwrap();
    assert_eq!(reload(&hcr), ["ops"]);
    assert_eq!(values(3), [30, 9, 270, 300]);
    assert_eq!(ops::ops_calls(), calls + 2);

    let _ = std::fs::remove_dir_all(root);
}

#[test]
fn the_static_build_links_both_modules_and_runs() {
    let target_dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("static-switch");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = std::process::Command::new(cargo)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["run", "--quiet", "-p", "callbacks", "--no-default-features", "--features", "static", "--target-dir"])
        .arg(&target_dir)
        .args(["--", "--frames", "1"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        stdout.contains(
            "round 1: math::double(3) = 6, math::square(3) = 9, ops::double_plus_square(3) = 15, ops::quadruple(3) = 12"
        ),
        "{stdout}"
    );
}
