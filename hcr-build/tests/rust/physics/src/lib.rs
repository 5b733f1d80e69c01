//! Rust-ABI procs on shared types, a private one that panics, a C proc with
//! an imported type, and a global.

use std::ffi::c_char;
use std::sync::atomic::{AtomicU64, Ordering};

use hcr_abi::Global;
use sim_types::{Vec2, World};

include!(concat!(env!("OUT_DIR"), "/hcr_module.rs"));

/// Steps taken, across reloads.
static STEPS: Global<AtomicU64> = Global::new(|| AtomicU64::new(0));

/// Moves every body and returns the new tick.
#[hcr_abi::reload]
pub fn step(world: &mut World, dt: f32) -> u64 {
    for body in &mut world.bodies {
        body.pos.x += body.vel.x * dt;
        body.pos.y += body.vel.y * dt;
    }
    world.tick += 1;
    STEPS.fetch_add(1, Ordering::Relaxed);
    world.tick
}

/// The gravity vector.
#[hcr_abi::reload]
pub fn gravity() -> Vec2 {
    Vec2 { x: 0.0, y: -9.81 }
}

/// Panics when `n` is not zero.
#[hcr_abi::reload]
fn explode(n: u32) -> u32 {
    if n > 0 {
        panic!("physics exploded at {n}");
    }
    0
}

/// The module's name, NUL-terminated.
#[unsafe(no_mangle)]
pub extern "C" fn name() -> *const c_char {
    c"physics".as_ptr()
}
