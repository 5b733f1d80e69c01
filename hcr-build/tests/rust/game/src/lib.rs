//! Every kind of signature a reloadable Rust function may have, reload
//! hooks, globals with a migration, a C proc, and calls into `physics`.

use std::ffi::c_char;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use hcr_abi::{Global, Migration, ReloadEvent, reload};
use sim_types::{Event, Input, Logger, World};

mod shapes;
pub mod report;

pub use shapes::Circle;
use report::Report as Summary;

include!(concat!(env!("OUT_DIR"), "/hcr_module.rs"));

/// A score, defined at the root.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Score(pub u64);

/// Frames run, across reloads.
pub(crate) static FRAMES: Global<AtomicU64> = Global::new(|| AtomicU64::new(0));

/// The best score, with its holder.
static BEST: Global<Mutex<Best>> = Global::new(|| Mutex::new(Best { score: 0, holder: 0 }));

/// What `BEST` holds.
pub struct Best {
    score: u64,
    holder: u32,
}

/// What `BEST` held before it knew its holder.
pub struct BestV1 {
    score: u64,
}

static BEST_FROM_V1: Migration<Mutex<BestV1>, Mutex<Best>> =
    Migration::new(&BEST, |old| Mutex::new(Best { score: old.lock().unwrap().score, holder: 0 }));

/// One frame: steps the physics (another module) and reports events.
#[hcr_abi::reload]
pub fn update(world: &mut World, input: &Input) -> Vec<Event> {
    FRAMES.fetch_add(1, Ordering::Relaxed);
    let tick = physics::step(world, input.dt);
    let mut events = vec![Event::Spawned(tick as u32)];
    if input.keys.contains(&b'q') {
        events.push(Event::Quit);
    }
    events
}

/// The shape of the hot-path benchmark: `fn(&T, u64) -> u64`.
#[reload]
pub fn tick(world: &World, n: u64) -> u64 {
    world.tick.wrapping_add(n)
}

/// A description of the world.
#[reload]
pub fn describe(world: &World) -> String {
    format!("tick {} with {} bodies", world.tick, world.bodies.len())
}

/// The first key pressed, borrowed from the input.
#[reload]
pub fn first_key(input: &Input) -> Option<&u8> {
    input.keys.first()
}

/// Sum and count.
#[reload]
pub fn total(values: &[u64]) -> (u64, usize) {
    (values.iter().sum(), values.len())
}

/// Parses a score.
#[reload]
pub fn parse(text: &str) -> Result<Score, String> {
    text.trim().parse().map(Score).map_err(|e| format!("not a score: {e}"))
}

/// A circle's area.
#[reload]
pub fn area(circle: &Circle) -> f32 {
    std::f32::consts::PI * circle.r * circle.r
}

/// A boxed report, with the local type imported under another name.
#[reload]
pub fn summarize(lines: Vec<String>) -> Box<Summary> {
    Box::new(Summary { lines })
}

/// Logs through a trait object.
#[reload]
pub fn log_to(logger: &mut dyn Logger, n: u32) {
    for i in 0..n {
        logger.log(&format!("line {i}"));
    }
}

/// Reads through a raw pointer.
///
/// # Safety
///
/// `p` must be valid for reads.
#[reload]
pub unsafe fn peek(p: *const u64) -> u64 {
    // SAFETY: the caller's contract.
    unsafe { *p }
}

/// Records a score if it is the best, and returns the best holder; a
/// private proc.
#[reload]
fn record(score: Score, holder: u32) -> u32 {
    let mut best = BEST.lock().unwrap();
    if score.0 > best.score {
        *best = Best { score: score.0, holder };
    }
    best.holder
}

/// Calls a `physics` proc that panics: the panic passes through.
#[reload]
pub fn crash(n: u32) -> u32 {
    physics::explode(n) + 1
}

/// Panics; a private proc, so static builds call it through its guard.
#[reload]
fn refuse(n: u32) -> u32 {
    panic!("refused {n}")
}

/// Panics here.
#[reload]
pub fn fail(reason: String) -> u8 {
    panic!("game failed: {reason}")
}

/// The gravity, from `physics`, through the non-raising binding.
#[reload]
pub fn gravity_y() -> f32 {
    physics::try_gravity().map(|g| g.y).unwrap_or(0.0)
}

#[hcr_abi::before_reload]
fn save() {
    FRAMES.fetch_add(0, Ordering::Relaxed);
}

#[hcr_abi::after_reload]
fn restore(event: &ReloadEvent) {
    let _ = event.generation;
}

#[hcr_abi::first_load]
fn hello() {}

/// The module's version, NUL-terminated: a C proc with an imported type.
#[unsafe(no_mangle)]
pub extern "C" fn version() -> *const c_char {
    c"game 1".as_ptr()
}
