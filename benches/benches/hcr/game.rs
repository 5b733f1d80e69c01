//! `game/frame`: one frame of the game example (`examples/game`), as its host
//! runs it, through hcr's generated bindings to the optimised `game_logic`
//! module: one `update`, then the frame drawn into a string.
//!
//! The game's host draws cell by cell: one `glyph(x, y)` call per cell of
//! the 60 × 18 field (1,080 calls, each locking the world), plus
//! `field_size` and `frames`. [`frame`] below is that host's `render`
//! without the terminal: the only part to change when the game's module
//! exposes another frame (one `update` and one `draw` per frame, say).

use std::fmt::Write as _;
use std::hint::black_box;

use criterion::Criterion;

use super::hot::game_logic;

/// The game's fixed time step.
const DT: f32 = 1.0 / 30.0;

/// One frame: `update`, then the field drawn as the game's host draws it
/// (`render` in `examples/game/src/main.rs`, without the status line's
/// text), into `screen`.
fn frame(screen: &mut String) {
    game_logic::update(DT);
    screen.clear();
    let size = game_logic::field_size();
    let (width, height) = (size >> 16, size & 0xFFFF);
    let _ = writeln!(screen, "+{}+", "-".repeat(width as usize));
    for y in 0..height {
        screen.push('|');
        for x in 0..width {
            screen.push(char::from_u32(game_logic::glyph(x, y)).unwrap_or('?'));
        }
        screen.push_str("|\n");
    }
    let _ = writeln!(screen, "+{}+", "-".repeat(width as usize));
    let _ = writeln!(screen, "frame {}", game_logic::frames());
}

/// The `game` group.
pub(super) fn bench(c: &mut Criterion) {
    let mut screen = String::new();
    frame(&mut screen);
    assert!(screen.contains('o'), "the frame shows the particles:\n{screen}");
    let mut g = c.benchmark_group("game");
    g.bench_function("frame", |b| {
        b.iter(|| {
            frame(&mut screen);
            black_box(screen.len())
        })
    });
    g.finish();
}
