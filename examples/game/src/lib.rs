//! The game example's host, as a library: the bindings to the module and
//! one frame of the game ([`frame`]), which the game loop (`src/main.rs`)
//! and the benchmarks call.
//!
//! ```no_run
//! use game::{Input, World};
//!
//! let hcr = game::hcr::Hcr::start()?; // loads the module, binds `frame`'s calls
//! let mut world = World::default();
//! let frame = game::frame(&mut world, &Input { dt: 1.0 / 30.0 })?;
//! print!("{}", frame.screen);
//! # drop(hcr);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

/// Generated bindings to module `game_logic` (`update`, `draw`) and the
/// `Hcr` facade that loads and reloads it.
pub mod hcr {
    include!(concat!(env!("OUT_DIR"), "/hcr.rs"));
}

pub use game_types::{Event, Input, Particle, World};
pub use hcr_abi::ProcPanic;

use hcr::game_logic;

/// What one frame produced.
#[derive(Debug)]
pub struct Frame {
    /// What happened during the frame.
    pub events: Vec<Event>,
    /// The field, drawn: one line per row, each ending in `\n`.
    pub screen: String,
}

/// One frame: the module's `update` of `world`, then its `draw`; two calls
/// through the bindings.
///
/// # Errors
///
/// The panic of the module's code, with its message and location. An
/// `update` that panicked may have changed part of `world`; nothing was
/// drawn.
pub fn frame(world: &mut World, input: &Input) -> Result<Frame, ProcPanic> {
    let events = game_logic::try_update(world, input)?;
    let screen = game_logic::try_draw(world)?;
    Ok(Frame { events, screen })
}
