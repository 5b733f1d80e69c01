//! The game example runs its loop and draws the field; one frame is one
//! `update` and one `draw` of the module, through the bindings.

use std::process::Command;

use game::{Event, Input, Particle, World};

#[test]
fn the_game_loop_runs_and_draws() {
    let out = Command::new(env!("CARGO_BIN_EXE_game")).args(["--frames", "5"]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("\nframe 5, "), "{stdout}");
    assert!(stdout.ends_with("\nedit examples/game/logic/src/lib.rs; cargo build -p game-logic\n"), "{stdout}");
    assert!(stdout.lines().all(|l| l.chars().count() <= 80), "every line fits in 80 columns:\n{stdout}");
    assert!(stdout.contains('o'), "particles are drawn:\n{stdout}");
    assert_eq!(stdout.matches("|=====").count(), 5, "one floor per frame:\n{stdout}");
}

#[test]
fn a_frame_is_an_update_and_a_draw_of_the_hosts_world() {
    let _hcr = game::hcr::Hcr::start().unwrap();
    // One particle, about to hit the right wall.
    let mut world = World::new(6, 3, 0);
    world.particles.push(Particle { x: 4.9, y: 0.0, vx: 10.0, vy: 0.0 });
    let frame = game::frame(&mut world, &Input { dt: 0.1 }).unwrap();
    assert_eq!(world.frames, 1, "the module updated the host's world");
    assert_eq!(frame.events, [Event::Bounced { particle: 0 }]);
    let p = world.particles[0];
    assert!(p.x == 5.0 && p.vx < 0.0, "bounced off the wall: {p:?}");
    assert_eq!(frame.screen, "+------+\n|     o|\n|      |\n|======|\n+------+\n");
}
