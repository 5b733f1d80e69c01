//! Golden tests: the generated source for a representative module, a module
//! that imports it, and a host. Run with `HCR_BLESS=1` to accept new output
//! after a deliberate change, and review the diff.

use std::path::{Path, PathBuf};

use hcr_build::{Cfg, Host, Module};

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

fn check(name: &str, actual: &str) {
    let path = golden_dir().join(name);
    if std::env::var_os("HCR_BLESS").is_some() {
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_default();
    if expected != actual {
        let first = expected.lines().zip(actual.lines()).position(|(e, a)| e != a).unwrap_or(0);
        panic!(
            "{name} differs from the golden file at line {}:\n  expected: {:?}\n  actual:   {:?}\n(run with HCR_BLESS=1 to accept)",
            first + 1,
            expected.lines().nth(first),
            actual.lines().nth(first)
        );
    }
    // The output is valid Rust.
    syn::parse_file(actual).unwrap();
}

/// A deterministic configuration: a Linux target with default features.
fn cfg() -> Cfg {
    Cfg::empty().with_flag("unix").with_value("target_os", "linux")
}

/// A fixed toolchain text, so that the golden files do not depend on the
/// compiler that runs the tests.
const TOOLCHAIN: &str = "rustc 1.0.0 (golden); x86_64-unknown-linux-gnu; panic=unwind; target-features=fxsr,sse,sse2";

#[test]
fn module_registration_for_a_representative_module() {
    let generated = Module::new()
        .crate_dir(golden_dir().join("physics"))
        .cfg(cfg().with_feature("gravity"))
        .toolchain(TOOLCHAIN)
        .render()
        .unwrap();
    check("physics.module.rs", &generated.source);
    // Every scanned file is an input, and the cfg'd-out item is absent.
    let inputs: Vec<String> =
        generated.inputs.iter().map(|p| p.file_name().unwrap().to_string_lossy().into_owned()).collect();
    for file in ["Cargo.toml", "lib.rs", "mod.rs", "circle.rs", "body.rs"] {
        assert!(inputs.iter().any(|i| i == file), "{file} in {inputs:?}");
    }
    assert!(!generated.source.contains("debug_draw"));
    assert!(generated.source.contains("\"gravity\""));
}

#[test]
fn module_registration_with_an_import() {
    let generated = Module::new()
        .crate_dir(golden_dir().join("game"))
        .cfg(cfg())
        .toolchain(TOOLCHAIN)
        .import("../physics")
        .render()
        .unwrap();
    check("game.module.rs", &generated.source);
}

#[test]
fn host_bindings_with_a_static_switch() {
    let generated = Host::new()
        .crate_dir(golden_dir().join("host"))
        .out_dir("/project/target/debug/build/host-0123456789abcdef/out")
        .cfg(cfg())
        .module("../game")
        .module("../physics")
        .render();
    // `physics::positions` is fine, but `name()` returns `*const c_char`,
    // which the host names through the copied `use std::ffi::c_char`.
    let generated = generated.unwrap();
    check("host.rs", &generated.source);
    assert!(generated.source.contains("/project/target/debug/deps/libphysics.so"));
}

#[test]
fn a_layout_change_of_a_local_type_changes_the_generated_hash() {
    let original = Module::new().crate_dir(golden_dir().join("physics")).cfg(cfg()).render().unwrap().source;
    let dir = std::env::temp_dir().join(format!("hcr-golden-{}", std::process::id()));
    copy_dir(&golden_dir().join("physics"), &dir);
    let body = dir.join("src/body.rs");
    let text = std::fs::read_to_string(&body).unwrap();
    std::fs::write(&body, text.replace("pub vel: Vec2,", "pub vel: Vec2,\n    pub mass: f32,")).unwrap();
    let changed = Module::new().crate_dir(&dir).cfg(cfg()).render().unwrap().source;
    std::fs::remove_dir_all(&dir).unwrap();
    let hash_of =
        |src: &str| src.lines().skip_while(|l| !l.contains("\"WORLD\"")).nth(1).unwrap_or_default().to_owned();
    assert_ne!(hash_of(&original), hash_of(&changed), "adding a field to Body changes WORLD's layout hash");
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}
