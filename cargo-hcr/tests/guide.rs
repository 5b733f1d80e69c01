//! The guide (`docs/guide.md`), followed as a reader would: every file it
//! shows under a "`path`:" line is written, as shown, into a directory
//! outside the repository (the hcr crates taken from this checkout instead
//! of the guide's placeholder git URL), `cargo hcr run` builds and starts
//! the host, and the guide's edits are made to the module, in its words:
//! the change that reloads, the change that panics, and its fix.
#![cfg(target_os = "linux")]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

mod support;
use support::{Running, Stream};

/// The first build: the hcr crates are usually built already in the target
/// directory this test shares with `dev_loop.rs`; when they are not, 170 to
/// 220 s measured on two busy cores, three times that.
const FIRST_BUILD: Duration = Duration::from_secs(600);
/// A rebuild of the module, a reload, a few frames of the host.
const REBUILD: Duration = Duration::from_secs(60);
/// The git URL the guide tells the reader to replace.
const PLACEHOLDER: &str = "{ git = \"https://example.com/hcr.git\" }";
/// The files a reader writes, in the order the guide shows them.
const FILES: [&str; 9] = [
    "Cargo.toml",
    "shared/Cargo.toml",
    "shared/src/lib.rs",
    "logic/Cargo.toml",
    "logic/build.rs",
    "logic/src/lib.rs",
    "host/Cargo.toml",
    "host/build.rs",
    "host/src/main.rs",
];

fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_owned()
}

fn guide() -> String {
    std::fs::read_to_string(repository().join("docs/guide.md")).unwrap()
}

/// Every file the guide shows: a line "`path`:" and the fenced block after
/// it.
fn files(guide: &str) -> Vec<(String, String)> {
    let lines: Vec<&str> = guide.lines().collect();
    let mut files = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let named = lines[i].strip_prefix('`').and_then(|l| l.strip_suffix("`:")).filter(|p| !p.contains('`'));
        if let Some(path) = named {
            let open = i + 1 + lines[i + 1..].iter().position(|l| l.starts_with("```")).unwrap();
            let close = open + 1 + lines[open + 1..].iter().position(|l| l.starts_with("```")).unwrap();
            let mut text = lines[open + 1..close].join("\n");
            text.push('\n');
            files.push((path.to_owned(), text));
            i = close;
        }
        i += 1;
    }
    files
}

/// The guide's edits of the module, in order: "change `A` to `B` and save".
fn edits(guide: &str) -> Vec<(String, String)> {
    let mut edits = Vec::new();
    let mut rest = guide;
    while let Some(at) = rest.find("change `") {
        rest = &rest[at + "change `".len()..];
        let (from, after) = rest.split_once('`').unwrap();
        if let Some(after) = after.strip_prefix(" to `") {
            let (to, after) = after.split_once('`').unwrap();
            if after.starts_with(" and save") {
                edits.push((from.to_owned(), to.to_owned()));
            }
        }
    }
    edits
}

/// A line of `text` starting with `prefix`, in a fenced block.
fn shown_line<'a>(text: &'a str, prefix: &str) -> &'a str {
    text.lines().find(|l| l.starts_with(prefix)).unwrap_or_else(|| panic!("the guide shows no `{prefix}...` line"))
}

#[test]
fn the_guide_shows_every_file_of_its_program_once() {
    let guide = guide();
    let files = files(&guide);
    let paths: Vec<&str> = files.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(paths, FILES);
    let root = &files[0].1;
    for krate in ["hcr-abi", "hcr-build", "hcr-runtime"] {
        assert!(root.contains(&format!("{krate} = {PLACEHOLDER}\n")), "{root}");
    }
    assert_eq!(edits(&guide).len(), 2, "one edit that reloads, one that panics");
}

/// `dir`, removed when dropped.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Starts `cargo hcr run` in `dir`.
fn start(dir: &Path) -> Running {
    let mut command = Command::new(env!("CARGO_BIN_EXE_cargo-hcr"));
    command
        .args(["hcr", "run"])
        .current_dir(dir)
        // The target directory of dev_loop.rs: the hcr crates are built
        // there with a project's settings, as this one needs them.
        .env("CARGO_TARGET_DIR", Path::new(env!("CARGO_TARGET_TMPDIR")).join("cargo-hcr/target"))
        .env_remove("CARGO_HCR_TRACE");
    Running::spawn(command)
}

/// Waits for two frames in a row, at or after `from`, whose scores differ
/// by `step`; the second one's tick.
fn wait_for_step(hcr: &mut Running, from: usize, step: u64) -> u64 {
    let deadline = Instant::now() + REBUILD;
    let mut at = from;
    let mut last: Option<(u64, u64)> = None;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = hcr.wait_for(at, Stream::Out, left, |l| l.starts_with("tick "));
        at = line + 1;
        let frame = parse_frame(&hcr.seen[line].1);
        if let (Some((tick, score)), Some((t, s))) = (last, frame)
            && t == tick + 1
            && s == score + step
        {
            return t;
        }
        last = frame;
    }
}

/// `tick T: score S` as `(T, S)`.
fn parse_frame(line: &str) -> Option<(u64, u64)> {
    let (tick, score) = line.strip_prefix("tick ")?.split_once(": score ")?;
    Some((tick.parse().ok()?, score.parse().ok()?))
}

#[test]
fn following_the_guide_builds_runs_and_reloads() {
    let guide = guide();
    let dir = TempDir(std::env::temp_dir().join(format!("hcr-guide-{}", std::process::id())));
    let _ = std::fs::remove_dir_all(&dir.0);
    for (path, mut text) in files(&guide) {
        if path == "Cargo.toml" {
            for krate in ["hcr-abi", "hcr-build", "hcr-runtime"] {
                let checkout = format!("{{ path = {:?} }}", repository().join(krate).to_str().unwrap());
                text = text.replace(&format!("{krate} = {PLACEHOLDER}"), &format!("{krate} = {checkout}"));
            }
            assert!(!text.contains("example.com"), "{text}");
        }
        let file = dir.0.join(path);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(file, text).unwrap();
    }
    // The repository's versions of every dependency: no network, and the
    // builds of the shared target directory fit.
    std::fs::copy(repository().join("Cargo.lock"), dir.0.join("Cargo.lock")).unwrap();

    // "cargo hcr run": the host prints a frame every half second.
    let mut hcr = start(&dir.0);
    hcr.wait_for(0, Stream::Out, FIRST_BUILD, |l| l == "tick 2: score 2");

    // The edit that reloads: the state carries on, the score grows by ten.
    let edits = edits(&guide);
    let lib = dir.0.join("logic/src/lib.rs");
    let edit = |from: &str, to: &str| {
        let source = std::fs::read_to_string(&lib).unwrap();
        assert!(source.contains(from), "the guide's edit finds `{from}` in logic/src/lib.rs:\n{source}");
        std::fs::write(&lib, source.replace(from, to)).unwrap();
    };
    let reload = hcr.seen.len();
    edit(&edits[0].0, &edits[0].1);
    hcr.wait_for(reload, Stream::Err, REBUILD, |l| l.starts_with("[hcr] reloaded 1 module(s) in "));
    // The host's own report comes before the frames of the new code.
    let reloaded = hcr.wait_for(reload, Stream::Out, REBUILD, |l| l.starts_with("reloaded: generation 1: "));
    let tick = wait_for_step(&mut hcr, reloaded, 10);
    assert!(tick > 2, "the tick carried on from where it was");

    // The edit that panics: cargo-hcr prints the line the guide shows, the
    // host its own, and the frames go on.
    let panic = hcr.seen.len();
    edit(&edits[1].0, &edits[1].1);
    let shown = shown_line(&guide, "[hcr] panic in ");
    hcr.wait_for(panic, Stream::Err, REBUILD, |l| l == shown);
    let own = shown.strip_prefix("[hcr] ").unwrap();
    let line = hcr.wait_for(panic, Stream::Err, REBUILD, |l| l == own);
    hcr.wait_for(line, Stream::Out, REBUILD, |l| l.starts_with("tick "));

    // The fix: loaded as usual.
    let fixed = hcr.seen.len();
    edit(&edits[1].1, &edits[1].0);
    hcr.wait_for(fixed, Stream::Err, REBUILD, |l| l.starts_with("[hcr] reloaded 1 module(s) in "));
    let reloaded = hcr.wait_for(fixed, Stream::Out, REBUILD, |l| l.starts_with("reloaded: generation 3: "));
    let after = wait_for_step(&mut hcr, reloaded, 10);
    assert!(after > tick);

    // A change of the shared types: the host is rebuilt and restarted, as
    // the guide says, and starts over with the fixed module.
    let restart = hcr.seen.len();
    let shared = dir.0.join("shared/src/lib.rs");
    let types = std::fs::read_to_string(&shared).unwrap();
    assert!(types.contains("    pub score: u64,\n"), "{types}");
    std::fs::write(&shared, types.replace("    pub score: u64,\n", "    pub score: u64,\n    pub best: u64,\n"))
        .unwrap();
    assert!(guide.contains("`[hcr] host's own code changed: restarting"), "the guide says what is printed");
    hcr.wait_for(restart, Stream::Err, REBUILD, |l| {
        l.starts_with("[hcr] host's own code changed: restarting it, its state is not kept")
    });
    hcr.wait_for(restart, Stream::Out, REBUILD, |l| l == "tick 1: score 10");
    // The old host saw the rebuilt module before it was stopped, and refused
    // it (its types changed): that is not shown, the new host loads it.
    let refused =
        hcr.seen[restart..].iter().filter(|(s, l)| *s == Stream::Err && l.starts_with("[hcr] reload refused"));
    assert_eq!(refused.count(), 0, "{}", hcr.transcript());

    hcr.signal(libc::SIGINT);
    let status = hcr.wait_exit(REBUILD);
    assert_eq!(status.code(), Some(130), "{}", hcr.transcript());
}
