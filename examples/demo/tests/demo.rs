//! The README's main command: the self-driving demo shows a real reload,
//! and a build that panics, survived, reverted and fixed.

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
        // The build that panics: loaded, its panic reported with its
        // location, the program goes on, reverts, and loads the fix.
        "generation 2: reloaded [demo_module]",
        "transform(8) = 24",
        "try_transform(7) returned the panic: panic in demo_module::transform at src/lib.rs:23:5: attempt to divide by zero",
        "the runtime recorded it: panic in demo_module::transform at src/lib.rs:23:5: attempt to divide by zero",
        "the program goes on: calls so far (a global): 5",
        "sent the module back to its previous build: generation 3: reverted [demo_module]",
        "transform(7) = 21 again",
        "generation 4: reloaded [demo_module]",
        "transform(7) = 22 through the bindings, 22 through the old pointer",
        "refused: reload failed and was rolled back",
        "global `demo_module::CALLS` has layout `AtomicU64`",
        "still running the fixed build: transform(7) = 22, calls = 9",
        "cargo run -p cargo-hcr -- run -p game",
    ] {
        assert!(stdout.contains(expected), "missing {expected:?} in:\n{stdout}");
    }
}
