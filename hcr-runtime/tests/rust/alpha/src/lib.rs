//! Module `alpha`: one reloadable function per kind of signature, globals
//! that outlive reloads, reload hooks, and functions that panic. Its
//! features make the other builds the tests reload (see `Cargo.toml`).

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use hcr_abi::{Global, reload};
use rt_types::{Event, Input, Logger, World};

include!(concat!(env!("OUT_DIR"), "/hcr_module.rs"));

/// Which build this is.
#[cfg(not(feature = "v2"))]
pub const BUILD: u64 = 1;
/// Which build this is.
#[cfg(feature = "v2")]
pub const BUILD: u64 = 2;

/// A score, defined in the module.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Score(pub u64);

/// A shape, an enum of the module.
#[derive(Clone, Debug, PartialEq)]
pub enum Shape {
    Square(f32),
    Rect { w: f32, h: f32 },
}

/// Points, kept in a global.
#[derive(Debug)]
pub struct Points {
    pub points: u64,
    #[cfg(feature = "migrate")]
    pub bonus: u64,
}

/// What `Points` was before it had a bonus.
#[cfg(feature = "migrate")]
pub struct PointsV1 {
    pub points: u64,
}

/// How often the hooks ran.
pub struct Hooks {
    before: AtomicU64,
    after: AtomicU64,
    first: AtomicU64,
}

/// Counted by `bump`, across reloads.
static COUNT: Global<AtomicU64> = Global::new(|| AtomicU64::new(0));

/// Counted by the hooks.
static HOOKS: Global<Hooks> =
    Global::new(|| Hooks { before: AtomicU64::new(0), after: AtomicU64::new(0), first: AtomicU64::new(0) });

/// Points, with a bonus from the `migrate` build on.
static SCORE: Global<Mutex<Points>> = Global::new(|| {
    Mutex::new(Points {
        points: 0,
        #[cfg(feature = "migrate")]
        bonus: 0,
    })
});

/// From the points without a bonus.
#[cfg(feature = "migrate")]
static SCORE_FROM_V1: hcr_abi::Migration<Mutex<PointsV1>, Mutex<Points>> = hcr_abi::Migration::new(&SCORE, |old| {
    let points = old.lock().unwrap().points;
    if cfg!(feature = "migrate-panics") {
        panic!("migration refused {points} points");
    }
    Mutex::new(Points { points, bonus: 7 })
});

/// Its initial value panics, so the init of this build panics.
#[cfg(feature = "init-panics")]
static BOOM: Global<u64> = Global::new(|| panic!("no initial value for BOOM"));

/// The build: a plain value.
#[reload]
pub fn version() -> u64 {
    BUILD
}

/// The hot-path shape: a shared reference and a value.
#[reload]
pub fn tick(world: &World, n: u64) -> u64 {
    world.tick + n * BUILD
}

/// A frame: `&mut` a shared type, `&` another, a `Vec` of a shared enum.
#[reload]
pub fn update(world: &mut World, input: &Input) -> Vec<Event> {
    world.tick += BUILD;
    let mut events = vec![Event::Spawned(world.bodies.len() as u32)];
    for (index, body) in world.bodies.iter_mut().enumerate() {
        body.pos.x += input.dt * BUILD as f32;
        events.push(Event::Moved { index: index as u32, x: body.pos.x });
    }
    if input.keys.contains(&b'q') {
        events.push(Event::Quit);
    }
    events
}

/// A `String`.
#[reload]
pub fn describe(world: &World) -> String {
    format!("v{BUILD}: tick {} with {} bodies", world.tick, world.bodies.len())
}

/// An `Option` of a reference into the argument.
#[reload]
pub fn first_key(input: &Input) -> Option<&u8> {
    input.keys.get(BUILD as usize - 1)
}

/// A slice and a tuple.
#[reload]
pub fn total(values: &[u64]) -> (u64, usize) {
    (values.iter().sum::<u64>() * BUILD, values.len())
}

/// A `&str`, and a `Result` of a type of the module.
#[reload]
pub fn parse(text: &str) -> Result<Score, String> {
    text.trim().parse::<u64>().map(|n| Score(n * BUILD)).map_err(|e| format!("v{BUILD}: not a score: {e}"))
}

/// An enum of the module, by reference.
#[reload]
pub fn area(shape: &Shape) -> f32 {
    let area = match shape {
        Shape::Square(side) => side * side,
        Shape::Rect { w, h } => w * h,
    };
    area * BUILD as f32
}

/// Owned arguments and a `Box` of a type of the module.
#[reload]
pub fn boxed(name: String, extra: Vec<u64>) -> Box<Score> {
    Box::new(Score(name.len() as u64 + extra.iter().sum::<u64>() + BUILD))
}

/// A trait object of the host.
#[reload]
pub fn log_to(logger: &mut dyn Logger, n: u32) {
    for i in 0..n {
        logger.log(&format!("v{BUILD} line {i}"));
    }
}

/// An `unsafe fn` with a raw pointer.
///
/// # Safety
///
/// `p` must be valid for reads.
#[reload]
pub unsafe fn peek(p: *const u64) -> u64 {
    // SAFETY: the caller's contract.
    unsafe { *p * BUILD }
}

/// Counts, in a global that outlives reloads.
#[reload]
pub fn bump() -> u64 {
    COUNT.fetch_add(1, Ordering::Relaxed) + 1
}

/// Adds points, in a global whose layout the `migrate` build changes.
#[reload]
pub fn add_points(n: u64) -> u64 {
    let mut score = SCORE.lock().unwrap();
    score.points += n;
    score.points
}

/// The bonus (0 before the `migrate` build).
#[reload]
pub fn bonus() -> u64 {
    #[cfg(feature = "migrate")]
    let bonus = SCORE.lock().unwrap().bonus;
    #[cfg(not(feature = "migrate"))]
    let bonus = 0;
    bonus
}

/// How often each hook ran: before reloads, after reloads, first load.
#[reload]
pub fn hooks() -> (u64, u64, u64) {
    let h = &*HOOKS;
    (h.before.load(Ordering::Relaxed), h.after.load(Ordering::Relaxed), h.first.load(Ordering::Relaxed))
}

/// Values of every kind, allocated here and freed by the caller.
#[reload]
pub fn allocate(n: usize) -> (String, Vec<u64>, Box<[u8; 40]>) {
    ("x".repeat(n), vec![BUILD; n], Box::new([BUILD as u8; 40]))
}

/// Panics here, with the reason.
#[reload]
pub fn fail(reason: String) -> u8 {
    panic!("alpha failed: {reason}")
}

/// Panics here: what `beta::relay` calls.
#[reload]
pub fn explode(n: u32) -> u32 {
    panic!("exploded {n}")
}

/// Indexes out of bounds for `i` of 3 and more.
#[reload]
pub fn pick(i: usize) -> u64 {
    let values = [BUILD, 20, 30];
    values[i]
}

/// Panics on a thread of its own, where nothing of hcr catches it; whether
/// that thread panicked.
#[reload]
pub fn panic_in_thread() -> bool {
    std::thread::spawn(|| panic!("thread of alpha gave up")).join().is_err()
}

/// A C proc.
#[unsafe(no_mangle)]
pub extern "C" fn alpha_c_build() -> u64 {
    BUILD
}

#[hcr_abi::before_reload]
fn save() {
    HOOKS.before.fetch_add(1, Ordering::Relaxed);
    if cfg!(feature = "hook-panics") {
        panic!("before-reload hook refused");
    }
}

#[hcr_abi::after_reload]
fn restore() {
    HOOKS.after.fetch_add(1, Ordering::Relaxed);
    if cfg!(feature = "hook-panics") {
        panic!("after-reload hook refused");
    }
}

#[hcr_abi::first_load]
fn hello() {
    HOOKS.first.fetch_add(1, Ordering::Relaxed);
    if cfg!(feature = "hook-panics") {
        panic!("first-load hook refused");
    }
}

/// Creates the file named by `RT_MARKER` when the library is opened,
/// without allocating (nothing may allocate before the module's init).
#[cfg(all(feature = "marker", target_os = "linux"))]
#[used]
#[unsafe(link_section = ".init_array")]
static MARKER: extern "C" fn() = {
    extern "C" fn mark() {
        // SAFETY: `getenv` returns null or a NUL-terminated string; `open`
        // and `close` are called with valid arguments.
        unsafe {
            let path = libc::getenv(c"RT_MARKER".as_ptr());
            if !path.is_null() {
                let fd = libc::open(path, libc::O_CREAT | libc::O_WRONLY, 0o644);
                if fd >= 0 {
                    libc::close(fd);
                }
            }
        }
    }
    mark
};
