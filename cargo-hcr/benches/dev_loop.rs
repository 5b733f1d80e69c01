//! Save to new code, measured: `cargo hcr run` on a scratch copy of the
//! game example, a series of edits of its module (the floor's glyph, so that
//! every frame shows which code drew it), and for each edit the time from
//! the file write to the first frame drawn by the new code, split with
//! cargo-hcr's trace (`CARGO_HCR_TRACE`) and the runtime's reports.
//!
//! `cargo bench -p cargo-hcr --bench dev_loop` prints the results and
//! rewrites the dev-loop section of `benches/README.md`. Three sessions:
//!
//! * cold: the scratch copy built for the first time; its first save, then
//!   ten more;
//! * warm restart: `cargo hcr run` again on the built copy, where cargo finds
//!   the module up to date and so runs no command to record: its first save;
//! * cargo: ten saves with `CARGO_HCR_DIRECT=0`, every rebuild by
//!   `cargo build`, for comparison.
//!
//! Not a criterion benchmark: one sample is a file edit, a build and a
//! reload, seconds apart, and the distribution of ten is the result.
#![cfg(target_os = "linux")]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The edits of one session after the first.
const EDITS: usize = 10;
/// Floor glyphs, one per edit, none of them drawn otherwise.
const GLYPHS: &[char] = &['#', '%', '&', '*', '+', '-', ':', '~', '^', '$', '!', '?', '/', ';', '<', '>', '@', 'x'];

fn now_micros() -> u128 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_micros()
}

fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_owned()
}

/// A copy of the game and its module in a workspace of their own, with the
/// repository's settings (profiles, lints, dependency versions, lock file).
fn scratch(root: &Path) {
    let _ = std::fs::remove_dir_all(root);
    let repo = repository();
    for (from, to) in
        [("examples/game", "game"), ("examples/game/logic", "game/logic"), ("examples/game/types", "game/types")]
    {
        for file in ["Cargo.toml", "build.rs"] {
            if repo.join(from).join(file).exists() {
                std::fs::create_dir_all(root.join(to)).unwrap();
                std::fs::copy(repo.join(from).join(file), root.join(to).join(file)).unwrap();
            }
        }
        std::fs::create_dir_all(root.join(to).join("src")).unwrap();
        for entry in std::fs::read_dir(repo.join(from).join("src")).unwrap().flatten() {
            std::fs::copy(entry.path(), root.join(to).join("src").join(entry.file_name())).unwrap();
        }
    }
    let manifest = std::fs::read_to_string(repo.join("Cargo.toml")).unwrap();
    let mut out = String::new();
    let mut in_members = false;
    let mut skipping = false;
    for line in manifest.lines() {
        // The benchmarks' settings for subsecond, a package this copy lacks.
        if line.starts_with('[') && line.ends_with(".package.subsecond]") {
            skipping = true;
            continue;
        }
        if skipping {
            skipping = !line.is_empty();
            continue;
        }
        if line.starts_with("members = [") {
            in_members = true;
            out.push_str("members = [\"game\", \"game/logic\", \"game/types\"]\n");
            continue;
        }
        if in_members {
            in_members = !line.starts_with(']');
            continue;
        }
        match line.split_once(" = { path = \"") {
            Some((name, rest)) => {
                let (path, rest) = rest.split_once('"').unwrap();
                out.push_str(&format!("{name} = {{ path = {:?}{rest}\n", repo.join(path).to_str().unwrap()));
            }
            None => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    std::fs::write(root.join("Cargo.toml"), out).unwrap();
    std::fs::copy(repo.join("Cargo.lock"), root.join("Cargo.lock")).unwrap();
}

/// A running `cargo hcr run -p game`: its frames and status lines, each
/// with the time it arrived.
struct Session {
    child: Child,
    lines: Receiver<(bool, String, u128)>,
    trace: PathBuf,
    status: Vec<(String, u128)>,
}

impl Session {
    fn start(root: &Path, target: &Path, trace: &Path, direct: bool) -> Session {
        let _ = std::fs::remove_file(trace);
        let mut command = Command::new(env!("CARGO_BIN_EXE_cargo-hcr"));
        command
            .args(["hcr", "run", "-p", "game", "--", "--frames", "100000000"])
            .current_dir(root)
            .env("CARGO_TARGET_DIR", target)
            .env("CARGO_HCR_TRACE", trace)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if !direct {
            command.env("CARGO_HCR_DIRECT", "0");
        }
        let mut child = command.spawn().unwrap();
        let (tx, lines) = mpsc::channel();
        let out = child.stdout.take().unwrap();
        let err = child.stderr.take().unwrap();
        let tx2 = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                // The floor line (and only it) starts with `|` and has no space.
                if line.starts_with('|') && !line.contains(' ') && tx.send((true, line, now_micros())).is_err() {
                    break;
                }
            }
        });
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines() {
                let Ok(line) = line else { break };
                if tx2.send((false, line, now_micros())).is_err() {
                    break;
                }
            }
        });
        Session { child, lines, trace: trace.to_owned(), status: Vec::new() }
    }

    /// Waits for a floor drawn with `glyph`; when it arrived.
    fn floor_with(&mut self, glyph: char, timeout: Duration) -> u128 {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok((true, line, at)) if line.contains(glyph) => return at,
                Ok((true, ..)) => {}
                Ok((false, line, at)) => {
                    eprintln!("  {line}");
                    self.status.push((line, at));
                }
                Err(_) => panic!("no floor of {glyph:?} within {timeout:?}"),
            }
        }
    }

    fn trace(&self) -> Vec<(u128, String, String)> {
        std::fs::read_to_string(&self.trace)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| {
                let mut f = l.splitn(3, '\t');
                Some((f.next()?.parse().ok()?, f.next()?.to_owned(), f.next().unwrap_or_default().to_owned()))
            })
            .collect()
    }

    fn stop(mut self) {
        // SAFETY: `kill` has no memory-safety preconditions; the child is
        // not reaped, so its id is still its own.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGINT) };
        let _ = self.child.wait();
    }
}

/// One save, split.
#[derive(Debug, Clone, Copy, Default)]
struct Sample {
    /// Write to the first frame of the new code.
    total: f64,
    /// Write to cargo-hcr seeing the change.
    notice: f64,
    /// Change seen to the build's start (the wait for the end of the save).
    debounce: f64,
    /// The build, until the new library is complete.
    build: f64,
    /// The library complete to the new frame: it put in place, the host
    /// noticing it, its reload and the frame drawn.
    load: f64,
    /// The library complete to cargo-hcr moving it into place (while rustc
    /// still runs; 0 when the linker wrote it in place itself).
    install: f64,
    /// The reload, as the host's runtime timed it.
    reload: f64,
}

/// Rewrites the floor glyph and measures until a frame shows it; `library`
/// is the module's library, whose modification time says when the new one
/// was complete (the linker's last write; a rename puts it in place).
fn edit(session: &mut Session, lib: &Path, library: &Path, from: char, to: char) -> Sample {
    let source = std::fs::read_to_string(lib).unwrap();
    // `if y + 1 == height { '=' } else { ' ' }` in `ground`.
    let edited = source.replace(&format!("{{ '{from}' }} else"), &format!("{{ '{to}' }} else"));
    assert_ne!(source, edited, "the floor glyph {from:?} is in the source");
    let mark = session.trace().len();
    let status_mark = session.status.len();
    let written = now_micros();
    std::fs::write(lib, edited).unwrap();
    let frame = session.floor_with(to, Duration::from_secs(120));
    // The trace and the report of this save are written by then, or soon.
    let deadline = Instant::now() + Duration::from_secs(10);
    let (events, reload) = loop {
        let events: Vec<_> = session.trace().into_iter().skip(mark).collect();
        while let Ok((false, line, at)) = session.lines.try_recv() {
            eprintln!("  {line}");
            session.status.push((line, at));
        }
        let reload = session.status[status_mark..].iter().find_map(|(l, _)| {
            l.strip_prefix("[hcr] reloaded 1 module(s) in ")
                .and_then(|r| r.split(' ').next())
                .and_then(|m| m.parse::<f64>().ok())
        });
        if (events.iter().any(|e| e.1 == "build-end") && reload.is_some()) || Instant::now() > deadline {
            break (events, reload.unwrap_or(f64::NAN));
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let at = |name: &str| events.iter().find(|e| e.1 == name).map(|e| e.0);
    let built = std::fs::metadata(library)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_micros());
    let ms = |a: u128, b: u128| (b as f64 - a as f64) / 1000.0;
    let change = at("change").unwrap_or(written);
    let start = at("build-start").unwrap_or(change);
    let end = built.unwrap_or(frame);
    Sample {
        total: ms(written, frame),
        notice: ms(written, change),
        debounce: ms(change, start),
        build: ms(start, end),
        load: ms(end, frame),
        install: at("linked").map_or(0.0, |linked| ms(end, linked).max(0.0)),
        reload,
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 { values[n / 2] } else { (values[n / 2 - 1] + values[n / 2]) / 2.0 }
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg").unwrap_or_default().split(' ').take(3).collect::<Vec<_>>().join(" ")
}

fn row(name: &str, samples: &[Sample]) -> String {
    let m = |f: fn(&Sample) -> f64| median(samples.iter().map(f).collect());
    format!(
        "| {name} | {} | **{:.0}** | {:.1} | {:.1} | {:.0} | {:.1} | {:.1} | {:.1} |",
        samples.len(),
        m(|s| s.total),
        m(|s| s.notice),
        m(|s| s.debounce),
        m(|s| s.build),
        m(|s| s.install),
        m(|s| s.load - s.install - s.reload),
        m(|s| s.reload),
    )
}

fn main() {
    // `cargo bench` passes `--bench`; a plain `cargo test` runs nothing.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let base = Path::new(env!("CARGO_TARGET_TMPDIR")).join("dev-loop-bench");
    let root = base.join("game");
    let target = base.join("target");
    let trace = base.join("trace.tsv");
    scratch(&root);
    let lib = root.join("game/logic/src/lib.rs");
    let library = target.join("debug/deps").join(format!("libgame_logic.{}", std::env::consts::DLL_EXTENSION));
    let load_before = load_average();

    eprintln!("cold session (first build of the copy)...");
    let mut session = Session::start(&root, &target, &trace, true);
    session.floor_with('=', Duration::from_secs(1800));
    let first = edit(&mut session, &lib, &library, '=', GLYPHS[0]);
    let mut direct = Vec::new();
    for i in 0..EDITS {
        direct.push(edit(&mut session, &lib, &library, GLYPHS[i], GLYPHS[i + 1]));
    }
    session.stop();

    eprintln!("warm restart (the module is up to date)...");
    // Direct rebuilds leave cargo's fingerprint stale: bring it up to date,
    // as a `cargo build` between two sessions would.
    let status = Command::new(env!("CARGO"))
        .args(["build", "-p", "game-logic", "-p", "game"])
        .current_dir(&root)
        .env("CARGO_TARGET_DIR", &target)
        .status()
        .unwrap();
    assert!(status.success());
    let mut session = Session::start(&root, &target, &trace, true);
    let mut glyph = GLYPHS[EDITS];
    session.floor_with(glyph, Duration::from_secs(600));
    let warm_first = edit(&mut session, &lib, &library, glyph, GLYPHS[EDITS + 1]);
    glyph = GLYPHS[EDITS + 1];
    session.stop();

    eprintln!("every rebuild by cargo (CARGO_HCR_DIRECT=0)...");
    let mut session = Session::start(&root, &target, &trace, false);
    session.floor_with(glyph, Duration::from_secs(600));
    let mut by_cargo = Vec::new();
    for i in 0..EDITS {
        let next = if i % 2 == 0 { 'A' } else { 'B' };
        let from = if i == 0 {
            glyph
        } else if i % 2 == 0 {
            'B'
        } else {
            'A'
        };
        by_cargo.push(edit(&mut session, &lib, &library, from, next));
    }
    session.stop();
    let load_after = load_average();

    let table = [
        "| session | saves | save to new frame (ms) | notice | debounce | build | install | detect + draw | reload |"
            .to_owned(),
        "|---|---|---|---|---|---|---|---|---|".to_owned(),
        row("first save, cold session", &[first]),
        row("first save, warm restart (cargo)", &[warm_first]),
        row("later saves (rustc directly)", &direct),
        row("later saves, `CARGO_HCR_DIRECT=0` (cargo)", &by_cargo),
    ]
    .join("\n");
    let each: Vec<String> = direct.iter().map(|s| format!("{:.0}", s.total)).collect();
    let each_cargo: Vec<String> = by_cargo.iter().map(|s| format!("{:.0}", s.total)).collect();
    let section = format!(
        "Measured by `cargo bench -p cargo-hcr --bench dev_loop`: the game example, debug profile; \
         medians in milliseconds; load average {load_before} before, {load_after} after (2 cores).\n\n\
         {table}\n\nEach save, rustc directly: {}. Each save by cargo: {}.\n",
        each.join(", "),
        each_cargo.join(", ")
    );
    println!("{section}");
    let readme = repository().join("benches/README.md");
    if let Ok(text) = std::fs::read_to_string(&readme)
        && let (Some(start), Some(end)) = (text.find("<!-- dev-loop:start -->"), text.find("<!-- dev-loop:end -->"))
    {
        let start = start + "<!-- dev-loop:start -->".len();
        let text = format!("{}\n{section}{}", &text[..start], &text[end..]);
        std::fs::write(&readme, text).unwrap();
    }
}
