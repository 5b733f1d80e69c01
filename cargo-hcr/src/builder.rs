//! Running `cargo build` in the background, reading its JSON messages, and
//! stopping it (with every compiler it started) when asked to.

use std::ffi::{OsStr, OsString};
use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::Sender;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::error::{Error, Result};
use crate::process;

/// How long a build that is asked to stop gets before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(2);

/// What the build should do and how.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// The cargo to run.
    pub cargo: OsString,
    /// Build with the release profile.
    pub release: bool,
    /// Render diagnostics with colours.
    pub color: bool,
}

/// An executable a build produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Executable {
    /// Cargo's id of its package.
    pub package_id: String,
    /// The name of its binary target.
    pub target: String,
    /// Where it is.
    pub path: PathBuf,
}

/// What a build printed, once it is over.
#[derive(Debug, Default)]
pub struct BuildOutput {
    /// The compiler's errors, rendered, in order.
    pub errors: Vec<String>,
    /// The executables it produced (or found up to date).
    pub executables: Vec<Executable>,
    /// What cargo printed on its standard error (its own errors, and those
    /// of build scripts), and anything on its standard output that was not
    /// a JSON message.
    pub other: String,
}

impl BuildOutput {
    /// The errors to show for a failed build.
    pub fn error_text(&self) -> String {
        let mut text: String = self.errors.iter().map(|e| e.trim_end().to_owned() + "\n\n").collect();
        text.push_str(self.other.trim_end());
        text.trim_end().to_owned()
    }

    /// Reads one line of cargo's standard output.
    fn message(&mut self, line: &str) {
        let Ok(message) = serde_json::from_str::<Value>(line) else {
            self.other.push_str(line);
            self.other.push('\n');
            return;
        };
        match message["reason"].as_str() {
            Some("compiler-message") => {
                let diagnostic = &message["message"];
                let level = diagnostic["level"].as_str().unwrap_or_default();
                if level.starts_with("error")
                    && let Some(rendered) = diagnostic["rendered"].as_str()
                {
                    self.errors.push(rendered.to_owned());
                }
            }
            Some("compiler-artifact") => {
                if let (Some(package_id), Some(target), Some(path)) =
                    (message["package_id"].as_str(), message["target"]["name"].as_str(), message["executable"].as_str())
                {
                    self.executables.push(Executable {
                        package_id: package_id.to_owned(),
                        target: target.to_owned(),
                        path: path.into(),
                    });
                }
            }
            _ => {}
        }
    }
}

/// A `cargo build` running in a process group of its own.
#[derive(Debug)]
pub struct Build {
    child: Child,
    /// The packages it builds.
    pub packages: Vec<String>,
    /// When it started.
    pub started: Instant,
}

impl Build {
    /// Starts `cargo build -p <package>...`. When cargo is done, what it
    /// printed is sent through `done` (wrapped by `event`); then call
    /// [`Build::finish`].
    ///
    /// # Errors
    ///
    /// [`Error::Spawn`] if cargo cannot be started.
    pub fn start<E: Send + 'static>(
        options: &BuildOptions,
        packages: &[String],
        done: Sender<E>,
        event: fn(BuildOutput) -> E,
    ) -> Result<Build> {
        let mut command = Command::new(&options.cargo);
        command.arg("build");
        for package in packages {
            command.args(["-p", package]);
        }
        if options.release {
            command.arg("--release");
        }
        let (format, color) =
            if options.color { ("json-diagnostic-rendered-ansi", "always") } else { ("json", "never") };
        command
            .args(["--quiet", "--message-format", format, "--color", color])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own group, so that stopping it stops the compilers too.
            .process_group(0);
        process::die_with_parent(&mut command);
        let started = Instant::now();
        let mut child = command.spawn().map_err(|source| Error::Spawn { program: program(&options.cargo), source })?;
        let stdout = child.stdout.take();
        let stderr = child.stderr.take();
        thread::spawn(move || {
            let stderr = thread::spawn(move || {
                let mut text = String::new();
                if let Some(mut stderr) = stderr {
                    let mut bytes = Vec::new();
                    let _ = stderr.read_to_end(&mut bytes);
                    text = String::from_utf8_lossy(&bytes).into_owned();
                }
                text
            });
            let mut output = BuildOutput::default();
            if let Some(stdout) = stdout {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    output.message(&line);
                }
            }
            let stderr = stderr.join().unwrap_or_default();
            output.other = stderr + &output.other;
            // The receiver is gone only when cargo-hcr is stopping.
            let _ = done.send(event(output));
        });
        Ok(Build { child, packages: packages.to_vec(), started })
    }

    /// Waits for cargo to exit, once its output was sent: whether it
    /// succeeded.
    ///
    /// # Errors
    ///
    /// [`Error::Process`] if it cannot be waited for.
    pub fn finish(mut self) -> Result<ExitStatus> {
        self.child.wait().map_err(|source| Error::Process { what: "cargo build".into(), source })
    }

    /// Stops the build and every process it started: `SIGTERM` to its
    /// process group, then `SIGKILL` if it is still there after a short
    /// grace period.
    pub fn stop(mut self) {
        let group = self.child.id();
        // An error means the group is gone already: there is only cargo to reap.
        if process::signal_group(group, libc::SIGTERM).is_ok() {
            let deadline = Instant::now() + STOP_GRACE;
            while Instant::now() < deadline {
                if !matches!(self.child.try_wait(), Ok(None)) {
                    // Reaped, and the compilers got the signal too. The
                    // group's id must not be signalled any more: it could be
                    // reused.
                    return;
                }
                thread::sleep(Duration::from_millis(10));
            }
            // Not reaped yet, so the group's id is still this group's. If
            // this fails, the group is gone anyway.
            let _ = process::signal_group(group, libc::SIGKILL);
        }
        let _ = self.child.wait();
    }
}

/// How to show `program` in messages.
fn program(program: &OsStr) -> String {
    format!("{} build", program.to_string_lossy())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_give_errors_and_executables() {
        let mut output = BuildOutput::default();
        for line in [
            r#"{"reason":"compiler-message","package_id":"m","message":{"level":"warning","rendered":"warning: unused\n"}}"#,
            r#"{"reason":"compiler-message","package_id":"m","message":{"level":"error","rendered":"error: expected expression\n --> src/lib.rs:3:5\n"}}"#,
            r#"{"reason":"compiler-artifact","package_id":"m","target":{"name":"m","kind":["cdylib"]},"executable":null}"#,
            r#"{"reason":"compiler-artifact","package_id":"h","target":{"name":"h","kind":["bin"]},"executable":"/t/debug/h"}"#,
            r#"{"reason":"build-finished","success":false}"#,
            "not json",
        ] {
            output.message(line);
        }
        output.other = "error: could not compile `m`\n".to_owned() + &output.other;
        assert_eq!(output.errors, ["error: expected expression\n --> src/lib.rs:3:5\n"]);
        assert_eq!(
            output.executables,
            [Executable { package_id: "h".into(), target: "h".into(), path: "/t/debug/h".into() }]
        );
        assert_eq!(
            output.error_text(),
            "error: expected expression\n --> src/lib.rs:3:5\n\nerror: could not compile `m`\nnot json"
        );
    }
}
