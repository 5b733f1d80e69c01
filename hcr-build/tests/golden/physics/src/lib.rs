//! A representative module: nested modules, a `#[path]` module, globals of
//! local types, cfg-gated items, an unsafe proc and external types.

use std::ffi::c_char;
use std::sync::Mutex;
use std::sync::atomic::AtomicU64;

use hcr_abi::{Global, Migration};

pub mod integrate;
#[path = "shapes/circle.rs"]
mod circle;
mod body;

pub use body::Body;

include!(concat!(env!("OUT_DIR"), "/hcr_module.rs"));

/// Steps taken, across reloads.
static STEPS: Global<AtomicU64> = Global::new(|| AtomicU64::new(0));

/// The simulated bodies.
pub(crate) static WORLD: Global<Mutex<World>> = Global::new(|| Mutex::new(World { bodies: [Body::ZERO; 4], count: 0 }));

/// What `WORLD` holds.
pub struct World {
    bodies: [Body; 4],
    count: u32,
}

/// What `WORLD` held in an earlier build, before `count` existed.
pub struct WorldV1 {
    bodies: [Body; 4],
}

/// Carries `WORLD` over from builds that had no `count`.
static WORLD_FROM_V1: Migration<Mutex<WorldV1>, Mutex<World>> = Migration::new(&WORLD, |old| {
    let old = old.lock().unwrap();
    Mutex::new(World { bodies: old.bodies, count: 4 })
});

/// The module's name, NUL-terminated.
#[unsafe(no_mangle)]
pub extern "C" fn name() -> *const c_char {
    c"physics".as_ptr()
}

#[cfg(feature = "gravity")]
#[unsafe(no_mangle)]
pub extern "C" fn gravity() -> f32 {
    -9.81
}

#[cfg(feature = "debug-draw")]
#[unsafe(no_mangle)]
pub extern "C" fn debug_draw() {}

/// Not reloadable: no `#[no_mangle]`.
pub extern "C" fn helper() {}
