//! The host process: started directly (not through `cargo run`), with the
//! environment that makes its runtime watch and report, and stopped
//! gently, then firmly.

use std::ffi::OsString;
use std::path::Path;
use std::process::{Child, Command, ExitStatus};
use std::thread;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::process;

/// The environment variable that makes the runtime watch its module files.
pub const WATCH_VAR: &str = "HCR_WATCH";
/// The environment variable naming the file the runtime reports reloads to.
pub const REPORT_VAR: &str = "HCR_REPORT_FILE";
/// The environment variable that sets how long the runtime waits for a
/// module file to stay unmodified before it loads it.
pub const SETTLE_VAR: &str = "HCR_SETTLE_MS";
/// The environment variable that makes the generated `Hcr::update` revert a
/// module whose new build panicked (and the runtime keep previous builds).
pub const REVERT_VAR: &str = "HCR_REVERT_ON_PANIC";

/// The running host.
#[derive(Debug)]
pub struct Host {
    child: Child,
    exited: Option<ExitStatus>,
}

impl Host {
    /// Starts `executable` with `args`, its standard streams those of
    /// cargo-hcr, `HCR_WATCH=1`, `HCR_REPORT_FILE=report_file`, and
    /// `HCR_SETTLE_MS=0` if `atomic` (every new module file appears whole,
    /// with one rename) and the variable is not set already, and
    /// `HCR_REVERT_ON_PANIC=1` if `revert_on_panic`.
    ///
    /// # Errors
    ///
    /// [`Error::Spawn`] if it cannot be started.
    pub fn spawn(
        executable: &Path,
        args: &[OsString],
        report_file: &Path,
        atomic: bool,
        revert_on_panic: bool,
    ) -> Result<Host> {
        let mut command = Command::new(executable);
        command.args(args).env(WATCH_VAR, "1").env(REPORT_VAR, report_file);
        if revert_on_panic {
            command.env(REVERT_VAR, "1");
        }
        if atomic && std::env::var_os(SETTLE_VAR).is_none() {
            command.env(SETTLE_VAR, "0");
        }
        process::die_with_parent(&mut command);
        let child =
            command.spawn().map_err(|source| Error::Spawn { program: executable.display().to_string(), source })?;
        Ok(Host { child, exited: None })
    }

    /// Its exit status, if it has exited.
    ///
    /// # Errors
    ///
    /// [`Error::Process`] if it cannot be waited for.
    pub fn try_wait(&mut self) -> Result<Option<ExitStatus>> {
        if self.exited.is_none() {
            self.exited = self.child.try_wait().map_err(|source| Error::Process { what: "the host".into(), source })?;
        }
        Ok(self.exited)
    }

    /// Stops it: sends `signal`, waits up to `grace` for it to exit (less if
    /// `hurry` says so; it is asked every few milliseconds), then kills it.
    /// Returns its exit status.
    ///
    /// # Errors
    ///
    /// [`Error::Process`] if it cannot be signalled or waited for.
    pub fn stop(
        &mut self,
        signal: libc::c_int,
        grace: Duration,
        mut hurry: impl FnMut() -> bool,
    ) -> Result<ExitStatus> {
        if let Some(status) = self.try_wait()? {
            return Ok(status);
        }
        // Not reaped, so the id is still the host's.
        let signalled = process::signal(self.child.id(), signal);
        let deadline = Instant::now() + grace;
        while signalled.is_ok() && Instant::now() < deadline && !hurry() {
            if let Some(status) = self.try_wait()? {
                return Ok(status);
            }
            thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let status = self.child.wait().map_err(|source| Error::Process { what: "the host".into(), source })?;
        self.exited = Some(status);
        Ok(status)
    }
}

/// Whether the linker that made the library `path` replaces its output
/// atomically: LLD (rustc's default on x86-64 Linux) and mold write a
/// temporary file and rename it into place, so a reader never sees half a
/// library. Read from the `.comment` section, where both sign; anything
/// else (GNU ld writes in place) or an unreadable file is `false`.
pub fn replaced_atomically(path: &Path) -> bool {
    use object::{Object, ObjectSection};

    let Ok(bytes) = std::fs::read(path) else { return false };
    let Ok(file) = object::File::parse(bytes.as_slice()) else { return false };
    let Some(comment) = file.section_by_name(".comment").and_then(|s| s.data().ok()) else { return false };
    comment.split(|&b| b == 0).any(|entry| entry.starts_with(b"Linker: LLD ") || entry.starts_with(b"mold "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_library_linked_by_lld_is_replaced_atomically() {
        // This test binary was linked like the modules are.
        let me = std::env::current_exe().unwrap();
        let lld = std::fs::read(&me).unwrap().windows(12).any(|w| w == b"Linker: LLD ");
        assert_eq!(replaced_atomically(&me), lld);
        let dir = tempfile::tempdir().unwrap();
        let text = dir.path().join("not-a-library");
        std::fs::write(&text, "Linker: LLD 1.0").unwrap();
        assert!(!replaced_atomically(&text));
        assert!(!replaced_atomically(&dir.path().join("missing")));
    }
}
