//! The reloadable half of the game example: how particles move and how they
//! look. Their positions and velocities live in a runtime-owned global, so
//! they carry on from where they were when this code is replaced.
//!
//! Try, while `cargo run -p cargo-hcr -- run -p game` runs, and save:
//! * `GRAVITY` to `-40.0`, and everything floats up;
//! * `BOUNCE` to `1.0`, and nothing ever comes to rest;
//! * the glyph `'o'` to `'@'`.

use std::sync::Mutex;

use hcr_abi::Global;

include!(concat!(env!("OUT_DIR"), "/hcr_module.rs"));

/// Width of the field, in cells.
pub const WIDTH: u32 = 60;
/// Height of the field, in cells.
pub const HEIGHT: u32 = 18;
const GRAVITY: f32 = 25.0;
const BOUNCE: f32 = 0.8;
const COUNT: usize = 12;

/// One particle.
#[derive(Clone, Copy, Debug)]
pub struct Particle {
    x: f32,
    y: f32,
    vx: f32,
    vy: f32,
}

/// Everything that survives a reload.
#[derive(Debug)]
pub struct World {
    particles: [Particle; COUNT],
    frames: u64,
}

impl World {
    fn new() -> World {
        let particles = std::array::from_fn(|i| {
            let f = i as f32;
            Particle {
                x: 3.0 + f * 4.5,
                y: 2.0 + (f * 1.7) % 8.0,
                vx: 6.0 + (f * 3.1) % 9.0,
                vy: -4.0 + (f * 2.3) % 7.0,
            }
        });
        World { particles, frames: 0 }
    }
}

static WORLD: Global<Mutex<World>> = Global::new(|| Mutex::new(World::new()));

fn world() -> std::sync::MutexGuard<'static, World> {
    WORLD.lock().unwrap_or_else(|e| e.into_inner())
}

/// Advances the simulation by `dt` seconds.
#[unsafe(no_mangle)]
pub extern "C" fn update(dt: f32) {
    let mut world = world();
    world.frames += 1;
    let (w, h) = (WIDTH as f32 - 1.0, HEIGHT as f32 - 1.0);
    for p in &mut world.particles {
        p.vy += GRAVITY * dt;
        p.x += p.vx * dt;
        p.y += p.vy * dt;
        if p.x < 0.0 || p.x > w {
            p.x = p.x.clamp(0.0, w);
            p.vx = -p.vx * BOUNCE;
        }
        if p.y < 0.0 || p.y > h {
            p.y = p.y.clamp(0.0, h);
            p.vy = -p.vy * BOUNCE;
        }
    }
}

/// The character to draw at cell `(x, y)`, as a Unicode scalar value.
#[unsafe(no_mangle)]
pub extern "C" fn glyph(x: u32, y: u32) -> u32 {
    let world = world();
    let hit = world.particles.iter().any(|p| p.x.round() as u32 == x && p.y.round() as u32 == y);
    let c = if hit {
        'o'
    } else if y == HEIGHT - 1 {
        '='
    } else {
        ' '
    };
    c as u32
}

/// The field's size, packed as `width << 16 | height`.
#[unsafe(no_mangle)]
pub extern "C" fn field_size() -> u32 {
    WIDTH << 16 | HEIGHT
}

/// Frames simulated so far, across reloads.
#[unsafe(no_mangle)]
pub extern "C" fn frames() -> u64 {
    world().frames
}
