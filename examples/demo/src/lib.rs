//! The hcr demo: hot code reloading, shown without editing anything by hand.
//!
//! [`run_demo`] copies the demo module into a scratch directory, builds and
//! loads it, edits its source, rebuilds and reloads it, and shows that the
//! new code runs, that a function pointer taken before the reload still
//! works at the same address, and that a global kept its value. It then
//! loads a build that panics, shows the panic with its location while the
//! program goes on, reverts to the build before it, loads the fix, and
//! shows an edit that the runtime refuses. [`run_interactive`] does the same
//! with your own edits.

pub mod scratch;

/// Generated bindings to `demo_module`.
pub mod hcr {
    include!(concat!(env!("OUT_DIR"), "/hcr.rs"));
}

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use hcr::{Hcr, demo_module};
use hcr_runtime::{Config, Runtime};
use scratch::ScratchCrate;

/// The workspace this demo belongs to.
pub fn workspace_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Where the demo keeps its scratch copies and their builds: under the
/// workspace's target directory (derived from where this crate was built).
pub fn scratch_root() -> PathBuf {
    // OUT_DIR is <target>/<profile>/build/<package>-<hash>/out.
    let out = Path::new(env!("OUT_DIR"));
    out.ancestors().nth(4).unwrap_or(out).join("hcr-demo")
}

/// The demo module's crate.
pub fn module_source() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("module")
}

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

/// The demo's numbered steps.
const STEPS: u32 = 7;

fn step(n: u32, text: &str) {
    println!("\n[{n}/{STEPS}] {text}");
    let _ = std::io::stdout().flush();
}

/// The self-driving demo.
///
/// # Errors
///
/// If the scratch copy cannot be made or built, or the runtime fails.
pub fn run_demo() -> Result<()> {
    println!("hcr demo: hot code reloading through a stable jump table");
    println!("=========================================================");
    let root = scratch_root();
    let copy = ScratchCrate::copy(
        &module_source(),
        &workspace_dir(),
        &root.join(format!("run-{}", std::process::id())),
        &root.join("target"),
    )?;
    let result = demo(&copy);
    let _ = std::fs::remove_dir_all(copy.dir());
    result
}

/// Waits (up to 10 s) until the runtime sees a rebuilt library; how long
/// that took.
fn detect(hcr: &Hcr) -> Result<Duration> {
    let t = Instant::now();
    while !hcr.runtime().reload_needed() {
        if t.elapsed() > Duration::from_secs(10) {
            return Err("the rebuilt module was not detected".into());
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    Ok(t.elapsed())
}

fn demo(copy: &ScratchCrate) -> Result<()> {
    step(1, "Build the module from a scratch copy of its source");
    println!("      {}", copy.lib_rs().display());
    if !copy.library().exists() {
        println!("      (the first build also compiles hcr-build's dependencies; later builds are quick)");
    }
    let built = copy.build()?;
    println!("      built in {}", ms(built));

    step(2, "Load it and call it through its stubs");
    // Keep each module's previous build, to revert to it (step 6).
    let runtime = Runtime::with_config(Config::from_env()?.with_keep_previous_builds(true))?;
    let library = copy.library();
    let hcr = Hcr::start_with(runtime, &[("demo_module", library.as_path())])?;
    let region = hcr.runtime().stub_region();
    println!("      stub table at {:#x}..{:#x}", region.start, region.end);
    println!("      module says: \"{}\"", demo_module::describe());
    let before = demo_module::transform(7);
    println!("      transform(7) = {before}");
    let held = demo_module::transform_ptr();
    println!("      took a function pointer to transform: {:#x}", held as usize);
    println!("      calls so far (a global): {}", demo_module::calls());

    step(3, "Edit the source: `x * 2` becomes `x * 3`, and a new greeting");
    copy.edit("x * 2", "x * 3")?;
    copy.edit("Hello from the first build!", "Hello from the second build, reloaded live!")?;
    let edited = Instant::now();

    step(4, "Rebuild and reload, while the program keeps running");
    let build = copy.build()?;
    let detect_took = detect(&hcr)?;
    let t = Instant::now();
    let report = hcr.runtime().perform_reload()?;
    let after = demo_module::transform(7);
    let reload = t.elapsed();
    let live = edited.elapsed();
    println!("      {report}");
    println!(
        "      source change -> new code running: {} (build {}, detect {}, reload {})",
        ms(live),
        ms(build),
        ms(detect_took),
        ms(reload)
    );

    step(5, "The new code runs; the old pointer and the state survived");
    println!("      module says: \"{}\"", demo_module::describe());
    println!("      transform(7) = {after} through the bindings (was {before})");
    let through_old = held(7)?;
    let same =
        if demo_module::transform_ptr() as usize == held as usize { "same address" } else { "DIFFERENT address" };
    println!("      the pointer taken before the reload: {:#x} ({same}), returns {through_old}", held as usize);
    println!("      calls so far (a global): {} (kept across the reload)", demo_module::calls());
    println!("      generation {}", hcr.generation());

    step(6, "A build that panics: loaded, the panic reported, the program goes on");
    copy.edit("x * 3", "x * 3 / (x - 7)")?;
    println!("      `x * 3` became `x * 3 / (x - 7)`, which divides by zero at 7; rebuilt and reloaded:");
    copy.build()?;
    detect(&hcr)?;
    println!("      {}", hcr.runtime().perform_reload()?);
    println!("      transform(8) = {}", demo_module::transform(8));
    match demo_module::try_transform(7) {
        Ok(value) => println!("      transform(7) unexpectedly returned {value}"),
        Err(panic) => println!("      try_transform(7) returned the panic: {panic}"),
    }
    for panic in hcr.panics() {
        println!("      the runtime recorded it: {panic}");
    }
    println!("      the program goes on: calls so far (a global): {}", demo_module::calls());
    let reverted = hcr.runtime().revert("demo_module")?;
    println!("      sent the module back to its previous build: {reverted}");
    println!("      transform(7) = {} again", demo_module::transform(7));

    step(7, "The fix, rebuilt and reloaded");
    copy.edit("x * 3 / (x - 7)", "x * 3 + 1")?;
    println!("      `x * 3 / (x - 7)` became `x * 3 + 1`:");
    copy.build()?;
    detect(&hcr)?;
    println!("      {}", hcr.runtime().perform_reload()?);
    println!(
        "      transform(7) = {} through the bindings, {} through the old pointer",
        demo_module::transform(7),
        held(7)?
    );
    println!("      calls so far (a global): {}", demo_module::calls());

    println!("\nBonus: an edit the runtime refuses");
    copy.edit("Global<AtomicU64>", "Global<std::sync::atomic::AtomicU32>")?;
    copy.edit("use std::sync::atomic::{AtomicU64, Ordering};", "use std::sync::atomic::Ordering;")?;
    copy.edit("AtomicU64::new(0)", "std::sync::atomic::AtomicU32::new(0)")?;
    copy.edit("CALLS.load(Ordering::Relaxed)", "u64::from(CALLS.load(Ordering::Relaxed))")?;
    println!("      changed the global `CALLS` from AtomicU64 to AtomicU32, rebuilt:");
    copy.build()?;
    match hcr.runtime().perform_reload() {
        Ok(report) => println!("      unexpectedly accepted: {report}"),
        Err(e) => println!("      refused: {e}"),
    }
    println!("      still running the fixed build: transform(7) = {}, calls = {}", held(7)?, demo_module::calls());

    println!("\nYour turn: `cargo run -p cargo-hcr -- run -p game` runs a small game; edit");
    println!("examples/game/logic/src/lib.rs and every save is rebuilt and reloaded into it.");
    println!("(`cargo run -p hcr-demo -- --interactive` does the same with a copy of this demo's module.)");
    Ok(())
}

/// Interactive mode: rebuilds and reloads a copy of the module whenever its
/// source changes, and shows what the module does once a second.
///
/// # Errors
///
/// If the copy cannot be made, the first build fails, or the runtime fails.
pub fn run_interactive(reset: bool) -> Result<()> {
    let root = scratch_root();
    let dir = root.join("interactive");
    let copy = if reset {
        ScratchCrate::copy(&module_source(), &workspace_dir(), &dir, &root.join("target"))?
    } else {
        ScratchCrate::open_or_copy(&module_source(), &workspace_dir(), &dir, &root.join("target"))?
    };
    println!("hcr demo, interactive");
    println!("  edit:  {}", copy.lib_rs().display());
    println!("  every save is rebuilt and reloaded; Ctrl-C quits; --reset starts from a fresh copy");
    println!("building...");
    copy.build()?;
    let library = copy.library();
    let hcr = Hcr::start_with(Runtime::with_config(Config::from_env()?)?, &[("demo_module", library.as_path())])?;
    let mut built_from = copy.sources_modified();
    let mut last_show = Instant::now() - Duration::from_secs(1);
    loop {
        let modified = copy.sources_modified();
        if modified != built_from {
            built_from = modified;
            println!("change detected, building...");
            match copy.build() {
                Ok(took) => println!("built in {}", ms(took)),
                Err(e) => println!("{e}\nthe old code keeps running; fix the source and save again"),
            }
        }
        if let Some(result) = hcr.update() {
            match result {
                Ok(report) => println!("reloaded: {report}"),
                Err(e) => println!("reload refused, the old code keeps running: {e}"),
            }
        }
        if last_show.elapsed() >= Duration::from_secs(1) {
            last_show = Instant::now();
            match (demo_module::try_describe(), demo_module::try_transform(7)) {
                (Ok(says), Ok(value)) => {
                    println!("module says: \"{says}\"; transform(7) = {value}, calls = {}", demo_module::calls());
                }
                // The module's code panicked: say where, and go on.
                (Err(panic), _) | (_, Err(panic)) => println!("{panic}"),
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
