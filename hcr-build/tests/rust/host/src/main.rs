//! Calls every binding. In a static build it runs them (the modules are
//! linked in); in a hot build it needs a runtime that loads Rust-ABI
//! modules, and only the build is checked.

mod hcr {
    include!(concat!(env!("OUT_DIR"), "/hcr.rs"));
}

use game::{Circle, Score};
use sim_types::{Body, Input, Logger, Vec2, World};

/// What a hot call through the bindings compiles to (see `tests/rust.rs`).
#[inline(never)]
#[unsafe(no_mangle)]
pub fn hcr_fixture_call_tick(world: &World, n: u64) -> u64 {
    hcr::game::tick(world, n)
}

/// The same through `try_`.
#[inline(never)]
#[unsafe(no_mangle)]
pub fn hcr_fixture_try_tick(world: &World, n: u64) -> Option<u64> {
    hcr::game::try_tick(world, n).ok()
}

struct Lines(Vec<String>);

impl Logger for Lines {
    fn log(&mut self, line: &str) {
        self.0.push(line.to_owned());
    }
}

fn main() {
    let hcr = match hcr::Hcr::start() {
        Ok(hcr) => hcr,
        Err(e) => {
            eprintln!("start: {e}");
            std::process::exit(2);
        }
    };
    println!("hot: {}", hcr.is_hot());
    let mut world = World {
        tick: 0,
        bodies: vec![Body { pos: Vec2::default(), vel: Vec2 { x: 1.0, y: 2.0 }, name: "a".into() }],
    };
    let input = Input { dt: 0.5, keys: b"xq".to_vec() };
    println!("update: {:?}", hcr::game::update(&mut world, &input));
    println!("pos: {:?}", world.bodies[0].pos);
    println!("try_update: {:?}", hcr::game::try_update(&mut world, &input).map(|e| e.len()));
    let by_pointer = hcr::game::update_ptr();
    println!("update_ptr: {:?}", by_pointer(&mut world, &input).map(|e| e.len()));
    println!("tick: {} {:?}", hcr_fixture_call_tick(&world, 2), hcr_fixture_try_tick(&world, 3));
    println!("describe: {}", hcr::game::describe(&world));
    println!("first_key: {:?}", hcr::game::first_key(&input));
    println!("total: {:?}", hcr::game::total(&[1, 2, 3]));
    println!("parse: {:?} {:?}", hcr::game::parse(" 42 "), hcr::game::parse("x").is_err());
    println!("area: {:.3}", hcr::game::area(&Circle { r: 1.0 }));
    println!("summarize: {:?}", hcr::game::summarize(vec!["a".into()]).lines);
    let mut lines = Lines(Vec::new());
    hcr::game::log_to(&mut lines, 2);
    println!("log_to: {:?}", lines.0);
    let value = 7u64;
    // SAFETY: a valid pointer.
    println!("peek: {}", unsafe { hcr::game::peek(&value) });
    println!("record: {}", hcr::game::record(Score(3), 1));
    println!("gravity_y: {}", hcr::game::gravity_y());
    println!("gravity: {:?}", hcr::physics::gravity());
    println!("step: {}", hcr::physics::step(&mut world, 1.0));
    let crash = hcr::game::try_crash(3).unwrap_err();
    println!("try_crash: {} / {} / {}", crash.module(), crash.proc_name(), crash.message());
    let fail = hcr::game::try_fail("on purpose".into()).unwrap_err();
    println!("try_fail: {} / {} / {}", fail.module(), fail.proc_name(), fail.message());
    // SAFETY: the C proc returns a static NUL-terminated string.
    let version = unsafe { std::ffi::CStr::from_ptr(hcr::game::version()) };
    println!("version: {version:?}");
    if std::env::args().any(|a| a == "--raise") {
        hcr::game::refuse(5);
    }
    println!("done");
}
