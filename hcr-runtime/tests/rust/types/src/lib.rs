//! Types that the host and both modules share.

/// A 2D vector.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Vec2 {
    pub x: f32,
    pub y: f32,
}

/// One simulated body.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Body {
    pub pos: Vec2,
    pub name: String,
}

/// The whole simulation.
#[derive(Clone, Debug, Default)]
pub struct World {
    pub tick: u64,
    pub bodies: Vec<Body>,
    #[cfg(feature = "extra-field")]
    pub gravity: f32,
}

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
    Moved { index: u32, x: f32 },
    Quit,
}

/// Something that takes log lines.
pub trait Logger {
    fn log(&mut self, line: &str);
}
