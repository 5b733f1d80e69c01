//! The game example's host: a fixed-step loop at 30 frames per second that
//! calls the module's `update` and draws the field cell by cell with its
//! `glyph`, in the terminal. Run it with `cargo hcr run -p game` (or
//! `cargo run -p cargo-hcr -- run -p game`), edit `logic/src/lib.rs` and
//! save (or, without cargo-hcr, run `cargo build -p game-logic`): the
//! particles keep their positions and velocities, and follow the new rules
//! from the next frame.
//!
//! The field stays at the top of the terminal; below it, the rest of the
//! terminal scrolls on its own, so that what cargo-hcr prints (builds,
//! compiler errors, reloads) stays readable. Ctrl-C ends the game and gives
//! the terminal back as it was.
//!
//! `--frames N` runs N frames, at the same pace, one after the other without
//! any terminal control, then stops.

mod hcr {
    include!(concat!(env!("OUT_DIR"), "/hcr.rs"));
}

use std::fmt::Write as _;
use std::io::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use hcr::{Hcr, game_logic};

const DT: f32 = 1.0 / 30.0;
/// How often the loop asks, between frames, whether new code is there (one
/// atomic load when the runtime watches its files).
const POLL: Duration = Duration::from_millis(2);

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let frames = std::env::args().skip_while(|a| a != "--frames").nth(1).map(|n| n.parse::<u64>()).transpose()?;
    let stop = Arc::new(AtomicBool::new(false));
    for &signal in signal_hook::consts::TERM_SIGNALS {
        signal_hook::flag::register(signal, stop.clone())?;
    }
    let hcr = Hcr::start()?;
    // Run by cargo-hcr, which rebuilds the module on every save and prints
    // every reload and its errors.
    let cargo_hcr = std::env::var_os("HCR_REPORT_FILE").is_some();
    // At most 80 columns with the frame number in front.
    let mut status = String::from(if !hcr.is_hot() {
        "static build: the game logic is linked in"
    } else if cargo_hcr {
        "edit examples/game/logic/src/lib.rs and save"
    } else {
        "edit examples/game/logic/src/lib.rs; cargo build -p game-logic"
    });
    let mut terminal = frames.is_none().then(Terminal::default);
    let mut done = 0;
    let mut next = Instant::now();
    while frames.is_none_or(|n| done < n) && !stop.load(Ordering::Relaxed) {
        game_logic::update(DT);
        draw(&mut terminal, &status)?;
        done += 1;
        next += Duration::from_secs_f32(DT);
        // Until the next step: new code is drawn as soon as it is loaded,
        // not a frame later (the simulation keeps its fixed pace).
        loop {
            if let Some(result) = hcr.update() {
                match result {
                    Ok(reload) => status = format!("reloaded: {reload}"),
                    Err(e) => {
                        status = "reload failed, the old code keeps running".into();
                        if !cargo_hcr {
                            // Below the field, where it can be read in full.
                            eprintln!("reload failed, the old code keeps running: {e}");
                        }
                    }
                }
                draw(&mut terminal, &status)?;
            }
            let left = next.saturating_duration_since(Instant::now());
            if left.is_zero() || stop.load(Ordering::Relaxed) {
                break;
            }
            std::thread::sleep(left.min(POLL));
        }
    }
    if let Some(terminal) = terminal {
        terminal.restore(&mut std::io::stdout().lock())?;
    }
    Ok(())
}

/// Draws the frame, in place on a terminal or as lines of text.
fn draw(terminal: &mut Option<Terminal>, status: &str) -> std::io::Result<()> {
    let screen = render(status);
    let mut out = std::io::stdout().lock();
    match terminal {
        Some(terminal) => terminal.draw(&mut out, &screen)?,
        None => out.write_all(screen.as_bytes())?,
    }
    out.flush()
}

/// The frame: the field in a border, then one status line of at most 80
/// columns.
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
    let status = format!("frame {}  {status}", game_logic::frames());
    let room = 80;
    if status.chars().count() > room {
        let cut: String = status.chars().take(room - 3).collect();
        let _ = writeln!(screen, "{cut}...");
    } else {
        let _ = writeln!(screen, "{status}");
    }
    screen
}

/// The terminal, split in two: the frame at the top, redrawn in place, and
/// below it a region that scrolls by itself, where the cursor stays, so that
/// anything else printed to the terminal lands there.
#[derive(Default)]
struct Terminal {
    /// The lines the frame takes, once the terminal is set up for it.
    rows: Option<usize>,
}

impl Terminal {
    fn draw(&mut self, out: &mut impl std::io::Write, frame: &str) -> std::io::Result<()> {
        let rows = frame.lines().count();
        if self.rows != Some(rows) {
            // Clear, let only the lines below the frame scroll, and put the
            // cursor in them.
            write!(out, "\x1b[2J\x1b[{};r\x1b[{};1H", rows + 1, rows + 1)?;
            self.rows = Some(rows);
        }
        // Save the cursor, draw from the top-left corner, restore the cursor.
        write!(out, "\x1b7\x1b[H")?;
        for line in frame.lines() {
            writeln!(out, "{line}\x1b[K")?;
        }
        write!(out, "\x1b8")
    }

    /// Lets the whole terminal scroll again, the cursor where it was.
    fn restore(self, out: &mut impl std::io::Write) -> std::io::Result<()> {
        if self.rows.is_some() {
            writeln!(out, "\x1b7\x1b[r\x1b8")?;
            out.flush()?;
        }
        Ok(())
    }
}
