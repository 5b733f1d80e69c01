//! The game example's host: a fixed-step loop at 30 frames per second that
//! calls the module's `update` and draws the field cell by cell with its
//! `glyph`, in the terminal. Edit `logic/src/lib.rs` and run
//! `cargo build -p game-logic`: the particles keep their positions and
//! velocities, and follow the new rules from the next frame.
//!
//! `--frames N` runs N frames without clearing the screen, then stops.

mod hcr {
    include!(concat!(env!("OUT_DIR"), "/hcr.rs"));
}

use std::fmt::Write as _;
use std::io::Write as _;
use std::time::{Duration, Instant};

use hcr::{Hcr, game_logic};

const DT: f32 = 1.0 / 30.0;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let frames = std::env::args().skip_while(|a| a != "--frames").nth(1).map(|n| n.parse::<u64>()).transpose()?;
    let hcr = Hcr::start()?;
    let mut status = String::from(if hcr.is_hot() {
        "edit examples/game/logic/src/lib.rs, then: cargo build -p game-logic"
    } else {
        "static build: the game logic is linked in"
    });
    let mut done = 0;
    let mut next = Instant::now();
    while frames.is_none_or(|n| done < n) {
        match hcr.update() {
            Some(Ok(reload)) => status = format!("reloaded: {reload}"),
            Some(Err(e)) => status = format!("reload failed, old code kept: {e}"),
            None => {}
        }
        game_logic::update(DT);
        let screen = render(&status);
        let mut out = std::io::stdout().lock();
        if frames.is_none() {
            // Home the cursor and clear, then draw.
            write!(out, "\x1b[H\x1b[2J")?;
        }
        out.write_all(screen.as_bytes())?;
        out.flush()?;
        done += 1;
        next += Duration::from_secs_f32(DT);
        if frames.is_none() {
            std::thread::sleep(next.saturating_duration_since(Instant::now()));
        }
    }
    Ok(())
}

fn render(status: &str) -> String {
    let size = game_logic::field_size();
    let (width, height) = (size >> 16, size & 0xFFFF);
    let mut screen = String::with_capacity(((width + 3) * (height + 4)) as usize);
    let _ = writeln!(screen, "+{}+", "-".repeat(width as usize));
    for y in 0..height {
        screen.push('|');
        for x in 0..width {
            screen.push(char::from_u32(game_logic::glyph(x, y)).unwrap_or('?'));
        }
        screen.push_str("|\n");
    }
    let _ = writeln!(screen, "+{}+", "-".repeat(width as usize));
    let _ = writeln!(screen, "frame {}  {status}", game_logic::frames());
    screen
}
