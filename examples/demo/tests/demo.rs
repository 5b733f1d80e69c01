//! The README's main command: the self-driving demo shows a real reload.

use std::process::Command;

#[test]
fn the_demo_reloads_edited_code_and_shows_what_survived() {
    let out = Command::new(env!("CARGO_BIN_EXE_hcr-demo")).output().expect("run the demo");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "demo failed:\n{stdout}\n{stderr}");
    for expected in [
        "module says: \"Hello from the first build!\"",
        "transform(7) = 14",
        "module says: \"Hello from the second build, reloaded live!\"",
        "transform(7) = 21 through the bindings (was 14)",
        "(same address), returns 21",
        "calls so far (a global): 3 (kept across the reload)",
        "source change -> new code running:",
        "refused: reload failed and was rolled back",
        "global `demo_module::CALLS` has layout `AtomicU64`",
        "still running the second build: transform(7) = 21, calls = 4",
        "cargo run -p cargo-hcr -- run -p game",
    ] {
        assert!(stdout.contains(expected), "missing {expected:?} in:\n{stdout}");
    }
}
