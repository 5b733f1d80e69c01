//! The static switch: the same host source, built hot (through the runtime)
//! and static (the module linked in, no runtime at all), runs the same way.

use std::path::{Path, PathBuf};
use std::process::Command;

use object::{Object, ObjectSymbol};

fn run(binary: &Path) -> String {
    let out = Command::new(binary).args(["--frames", "3"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Builds this host with `--no-default-features --features static`, in a
/// target directory of its own (the outer build holds the normal one).
fn static_binary() -> PathBuf {
    let target_dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("static-switch");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(cargo)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["build", "--quiet", "-p", "hello", "--no-default-features", "--features", "static", "--target-dir"])
        .arg(&target_dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    target_dir.join("debug").join(format!("hello{}", std::env::consts::EXE_SUFFIX))
}

/// Whether any symbol of the binary comes from the hcr runtime.
fn links_the_runtime(binary: &Path) -> bool {
    let data = std::fs::read(binary).unwrap();
    let file = object::File::parse(&*data).unwrap();
    file.symbols().chain(file.dynamic_symbols()).any(|s| s.name().is_ok_and(|n| n.contains("hcr_runtime")))
}

#[test]
fn the_same_host_runs_hot_and_static() {
    let greetings = [
        "Hello from the module! frame 1, greeting number 1",
        "Hello from the module! frame 3, greeting number 3",
        "3 greetings",
    ];

    let hot = Path::new(env!("CARGO_BIN_EXE_hello"));
    let output = run(hot);
    assert!(output.contains("hot reloading is on"), "{output}");
    for line in greetings {
        assert!(output.contains(line), "hot: missing {line:?} in {output}");
    }
    assert!(links_the_runtime(hot), "the hot build goes through the runtime");

    let stat = static_binary();
    let output = run(&stat);
    assert!(output.contains("static build: the module is linked in"), "{output}");
    for line in greetings {
        assert!(output.contains(line), "static: missing {line:?} in {output}");
    }
    assert!(!links_the_runtime(&stat), "the static build has no runtime at all");
}
