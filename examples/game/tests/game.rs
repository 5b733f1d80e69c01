//! The game example runs its loop and draws the field.

use std::process::Command;

#[test]
fn the_game_loop_runs_and_draws() {
    let out = Command::new(env!("CARGO_BIN_EXE_game")).args(["--frames", "5"]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("frame 5  edit examples/game/logic/src/lib.rs; cargo build -p game-logic\n"), "{stdout}");
    assert!(stdout.lines().all(|l| l.chars().count() <= 80), "every line fits in 80 columns:\n{stdout}");
    assert!(stdout.contains('o'), "particles are drawn:\n{stdout}");
    assert_eq!(stdout.matches("|=====").count(), 5, "one floor per frame:\n{stdout}");
}
