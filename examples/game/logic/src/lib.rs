//! The reloadable half of the game example: how particles move and how the
//! field looks. The world itself belongs to the host, so it carries on from
//! where it was when this code is replaced.
//!
//! Try, while `cargo hcr run -p game` runs, and save:
//! * `GRAVITY` to `-40.0`, and everything floats up;
//! * `BOUNCE` to `1.0`, and nothing ever comes to rest;
//! * the particles' `'o'` to `'@'`, or the floor's `'='` to `'#'`;
//!   reported with its line, the game goes on with the world as it was, and
//!   the next save brings the fix.

use game_types::{Event, Input, World};

include!(concat!(env!("OUT_DIR"), "/hcr_module.rs"));

const GRAVITY: f32 = 25.0;
const BOUNCE: f32 = 0.8;

/// Advances the world by one frame; reports the bounces.
#[hcr_abi::reload]
pub fn update(world: &mut World, input: &Input) -> Vec<Event> {
    world.frames += 1;
    let (w, h) = (world.width as f32 - 1.0, world.height as f32 - 1.0);
    let mut events = Vec::new();
    for (i, p) in world.particles.iter_mut().enumerate() {
        p.vy += GRAVITY * input.dt;
        p.x += p.vx * input.dt;
        p.y += p.vy * input.dt;
        let mut bounced = false;
        if p.x < 0.0 || p.x > w {
            p.x = p.x.clamp(0.0, w);
            p.vx = -p.vx * BOUNCE;
            bounced = true;
        }
        if p.y < 0.0 || p.y > h {
            p.y = p.y.clamp(0.0, h);
            p.vy = -p.vy * BOUNCE;
            bounced = true;
        }
        if bounced {
            events.push(Event::Bounced { particle: i as u32 });
        }
    }
    events
}

/// The field, in a border: one line per row, each ending in `\n`.
#[hcr_abi::reload]
pub fn draw(world: &World) -> String {
    let (width, height) = (world.width as usize, world.height as usize);
    let mut cells: Vec<char> = (0..height).flat_map(|y| (0..width).map(move |_| ground(y, height))).collect();
    for p in &world.particles {
        let (x, y) = (p.x.round() as usize, p.y.round() as usize);
        if x < width && y < height {
            cells[y * width + x] = 'o';
        }
    }
    let border = format!("+{}+\n", "-".repeat(width));
    let mut screen = String::with_capacity((width + 3) * (height + 2));
    screen.push_str(&border);
    for row in cells.chunks(width.max(1)) {
        screen.push('|');
        screen.extend(row);
        screen.push_str("|\n");
    }
    screen.push_str(&border);
    screen
}

/// What row `y` of `height` shows where no particle is.
fn ground(y: usize, height: usize) -> char {
    if y + 1 == height { '=' } else { ' ' }
}
