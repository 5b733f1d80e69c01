//! The game example's host: a fixed-step loop at 30 frames per second. The
//! host owns the world; each frame is one call of the module's `update` and
//! one of its `draw`, and the host puts the drawing on the terminal. Run it
//! with `cargo hcr run -p game` (or `cargo run -p cargo-hcr -- run -p game`),
//! edit `logic/src/lib.rs` and save (or, without cargo-hcr, run
//! `cargo build -p game-logic`): the particles keep their positions and
//! velocities, and follow the new rules from the next frame. A panic in the
//! module's code is shown below the field; the game goes on with the world
//! as the panic left it, and the next save brings the fix.
//!
//! The field stays at the top of the terminal; below it, the rest of the
//! terminal scrolls on its own, so that what cargo-hcr prints (builds,
//! compiler errors, reloads, panics) stays readable. Ctrl-C ends the game
//! and gives the terminal back as it was.
//!
//! `--frames N` runs N frames, at the same pace, one after the other without
//! any terminal control, then stops.

use std::io::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use game::hcr::Hcr;
use game::{Event, Input, World};

const DT: f32 = 1.0 / 30.0;
/// How often the loop asks, between frames, whether new code is there (one
/// atomic load when the runtime watches its files).
const POLL: Duration = Duration::from_millis(2);
/// The terminal's width the text below the field fits in.
const COLUMNS: usize = 80;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let frames = std::env::args().skip_while(|a| a != "--frames").nth(1).map(|n| n.parse::<u64>()).transpose()?;
    let stop = Arc::new(AtomicBool::new(false));
    for &signal in signal_hook::consts::TERM_SIGNALS {
        signal_hook::flag::register(signal, stop.clone())?;
    }
    let hcr = Hcr::start()?;
    // Run by cargo-hcr, which rebuilds the module on every save and prints
    // every reload, its errors and every panic.
    let cargo_hcr = std::env::var_os("HCR_REPORT_FILE").is_some();
    let hint = if !hcr.is_hot() {
        "static build: the game logic is linked in"
    } else if cargo_hcr {
        "edit examples/game/logic/src/lib.rs and save"
    } else {
        "edit examples/game/logic/src/lib.rs; cargo build -p game-logic"
    };
    let mut status = String::new();
    let mut world = World::default();
    let mut bounces = 0u64;
    let mut screen = String::new();
    let mut terminal = frames.is_none().then(Terminal::default);
    let mut done = 0;
    let mut next = Instant::now();
    while frames.is_none_or(|n| done < n) && !stop.load(Ordering::Relaxed) {
        match game::frame(&mut world, &Input { dt: DT }) {
            Ok(frame) => {
                bounces += frame.events.iter().filter(|e| matches!(e, Event::Bounced { .. })).count() as u64;
                screen = frame.screen;
            }
            Err(panic) => {
                // The last field drawn stays; the world is as the panic left it.
                status = "the module's code panicked; the game goes on: fix it and save".into();
                if !cargo_hcr {
                    // Below the field, where it can be read in full
                    // (cargo-hcr prints it there itself).
                    eprintln!("{panic}");
                }
            }
        }
        show(&mut terminal, &screen, &world, bounces, &status, hint)?;
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
                            eprintln!("reload failed, the old code keeps running: {e}");
                        }
                    }
                }
                if let Ok(drawn) = game::hcr::game_logic::try_draw(&world) {
                    screen = drawn;
                }
                show(&mut terminal, &screen, &world, bounces, &status, hint)?;
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

/// Shows the frame, in place on a terminal or as lines of text: the field,
/// then a status line and the hint, each cut to 80 columns.
fn show(
    terminal: &mut Option<Terminal>,
    field: &str,
    world: &World,
    bounces: u64,
    status: &str,
    hint: &str,
) -> std::io::Result<()> {
    let mut screen = String::with_capacity(field.len() + 2 * COLUMNS);
    screen.push_str(field);
    let counts = format!("frame {}, {bounces} bounces", world.frames);
    let status = if status.is_empty() { counts } else { format!("{counts}  {status}") };
    for line in [&status, hint] {
        screen.push_str(&fit(line));
        screen.push('\n');
    }
    let mut out = std::io::stdout().lock();
    match terminal {
        Some(terminal) => terminal.draw(&mut out, &screen)?,
        None => out.write_all(screen.as_bytes())?,
    }
    out.flush()
}

/// `line`, cut to 80 columns.
fn fit(line: &str) -> String {
    if line.chars().count() > COLUMNS {
        let cut: String = line.chars().take(COLUMNS - 3).collect();
        format!("{cut}...")
    } else {
        line.to_owned()
    }
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
