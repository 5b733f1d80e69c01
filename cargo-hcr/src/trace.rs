//! A trace of the loop's events with wall-clock times, for measuring where
//! the time between a save and the new code goes: set `CARGO_HCR_TRACE` to
//! a file, and cargo-hcr appends one line per event:
//!
//! ```text
//! <microseconds since the Unix epoch><TAB><event><TAB><detail>
//! ```
//!
//! Events: `change` (a watched file's contents changed), `unchanged` (a
//! file whose events had left its contents as they were built), `build-start`,
//! `build-end` (with `rustc` or `cargo` and the build's microseconds),
//! `linked` (the library the linker finished was moved into place while
//! rustc was still running), `installed` (a new library is in place, said
//! once the build is over), `reloaded` (the host's
//! runtime reported a reload). Wall-clock times, so that other processes
//! (the host, a benchmark) can be put on the same axis.

use std::fs::File;
use std::io::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

/// The environment variable naming the trace file.
pub const TRACE_VAR: &str = "CARGO_HCR_TRACE";

/// The trace file, if one was asked for.
#[derive(Debug, Default)]
pub struct Trace(Option<File>);

impl Trace {
    /// Appends to the file `CARGO_HCR_TRACE` names, if it names one that
    /// can be opened (otherwise, says so once and traces nothing).
    pub fn from_env() -> Trace {
        let Some(path) = std::env::var_os(TRACE_VAR).filter(|p| !p.is_empty()) else { return Trace(None) };
        match File::options().create(true).append(true).open(&path) {
            Ok(file) => Trace(Some(file)),
            Err(e) => {
                status!("cannot open the trace file {}: {e}; tracing nothing", path.to_string_lossy());
                Trace(None)
            }
        }
    }

    /// Appends one event, with the time now.
    pub fn event(&self, event: &str, detail: &str) {
        if let Some(mut file) = self.0.as_ref() {
            let micros = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros());
            // One write per line: lines of concurrent writers stay whole.
            let _ = file.write_all(format!("{micros}\t{event}\t{detail}\n").as_bytes());
        }
    }
}
