//! `game/frame`: one frame of the game example (`examples/game`), as its host
//! runs it, through hcr's generated bindings to the optimised `game_logic`
//! module: one `update(&mut World, &Input) -> Vec<Event>` call, then one
//! `draw(&World) -> String` call that returns the whole screen.
//!
//! Before the game's reloadable functions took the world by reference, the
//! host drew cell by cell: one `glyph(x, y)` call per cell of the 60 x 18
//! field (1,080 calls, each locking the world). That frame's figure is in
//! `benches/README.md`.

use std::hint::black_box;

use criterion::Criterion;
use game_types::{Input, World};

use super::hot::game_logic;

/// The game's fixed time step.
const DT: f32 = 1.0 / 30.0;

/// One frame, as `game::frame` runs it: `update`, then `draw`.
fn frame(world: &mut World) -> String {
    let events = game_logic::update(world, &Input { dt: DT });
    black_box(events);
    game_logic::draw(world)
}

/// The `game` group.
pub(super) fn bench(c: &mut Criterion) {
    let mut world = World::default();
    let screen = frame(&mut world);
    assert!(screen.contains('o'), "the frame shows the particles:\n{screen}");
    let mut g = c.benchmark_group("game");
    g.bench_function("frame", |b| b.iter(|| black_box(frame(&mut world)).len()));
    g.finish();
}
