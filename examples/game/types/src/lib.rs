//! What the game's host and its module share: the world the host owns and
//! keeps across reloads, what it feeds a frame, and what a frame reports.
//!
//! Both crates depend on this one as an ordinary dependency. A reload whose
//! module was built against other definitions of these types (a field
//! added, say) is refused, naming both definitions: rebuild the host too.

/// One particle.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Particle {
    /// Column, from the left, in cells.
    pub x: f32,
    /// Row, from the top, in cells.
    pub y: f32,
    /// Horizontal speed, in cells per second.
    pub vx: f32,
    /// Vertical speed, in cells per second (down is positive).
    pub vy: f32,
}

/// Everything the game keeps from frame to frame. The host owns it: a
/// reload replaces the code that updates and draws it, never the world.
#[derive(Clone, Debug, PartialEq)]
pub struct World {
    /// Width of the field, in cells.
    pub width: u32,
    /// Height of the field, in cells.
    pub height: u32,
    /// The particles.
    pub particles: Vec<Particle>,
    /// Frames simulated so far.
    pub frames: u64,
}

impl World {
    /// A field of `width` by `height` cells with `count` particles spread
    /// over it.
    pub fn new(width: u32, height: u32, count: usize) -> World {
        let particles = (0..count)
            .map(|i| {
                let f = i as f32;
                Particle {
                    x: (3.0 + f * 4.5) % width as f32,
                    y: (2.0 + (f * 1.7) % 8.0) % height as f32,
                    vx: 6.0 + (f * 3.1) % 9.0,
                    vy: -4.0 + (f * 2.3) % 7.0,
                }
            })
            .collect();
        World { width, height, particles, frames: 0 }
    }
}

impl Default for World {
    /// The game's field: 60 by 18 cells, 12 particles.
    fn default() -> World {
        World::new(60, 18, 12)
    }
}

/// What the host feeds a frame.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Input {
    /// The time the frame advances the world by, in seconds.
    pub dt: f32,
}

/// Something that happened during a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// Particle `particle` (its index) hit a wall or the floor.
    Bounced {
        /// The particle's index in [`World::particles`].
        particle: u32,
    },
}
