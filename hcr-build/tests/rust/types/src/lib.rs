//! Types that the host and both modules share.

pub mod math;
mod world;

pub use math::*;
pub use world::{Body, World};

/// What the host feeds a frame.
#[derive(Clone, Debug, Default)]
pub struct Input {
    pub dt: f32,
    pub keys: Vec<u8>,
}

/// What a frame produces.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    Spawned(u32),
    Collided { a: u32, b: u32 },
    Quit,
}

/// Something that takes log lines.
pub trait Logger {
    fn log(&mut self, line: &str);
}
