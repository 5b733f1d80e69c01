//! The host's reload report file (`HCR_REPORT_FILE`): what its lines say,
//! and reading the complete lines appended since the last look.
//!
//! The runtime appends one line per reload that did something, and one per
//! panic in module code, tab-separated:
//!
//! ```text
//! reloaded<TAB><generation><TAB><milliseconds><TAB><module>,<module>...
//! reverted<TAB><generation><TAB><milliseconds><TAB><module>
//! failed<TAB><milliseconds><TAB><error, newlines replaced by " | ">
//! panic<TAB><module><TAB><proc><TAB><file>:<line>:<column><TAB><message>
//! ```
//!
//! A panic's proc is `<init>` for an init, `<migration NAME>` for a
//! migration, the hook's name for a reload hook, and empty outside any
//! reloadable function; its location is empty when unknown.

use std::fmt;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// One line of the report.
#[derive(Debug, Clone, PartialEq)]
pub enum Report {
    /// A reload committed.
    Reloaded {
        /// The runtime's generation after it.
        generation: u64,
        /// How long it took, in milliseconds.
        millis: f64,
        /// The modules it reloaded.
        modules: Vec<String>,
    },
    /// A module was sent back to its previous build (after a panic).
    Reverted {
        /// The runtime's generation after it.
        generation: u64,
        /// How long it took, in milliseconds.
        millis: f64,
        /// The modules it reverted.
        modules: Vec<String>,
    },
    /// A reload was refused and rolled back: the host runs its old code.
    Failed {
        /// How long the attempt took, in milliseconds.
        millis: f64,
        /// The runtime's error.
        error: String,
    },
    /// Module code panicked; the host caught it and goes on.
    Panic {
        /// The module.
        module: String,
        /// The proc (or hook, `<init>`, `<migration NAME>`); empty outside
        /// any reloadable function.
        proc_name: String,
        /// `file:line:column`; empty when unknown.
        location: String,
        /// The panic message.
        message: String,
    },
}

impl Report {
    /// Parses one line (without its newline); `None` for a line this
    /// version does not understand.
    pub fn parse(line: &str) -> Option<Report> {
        let line = line.strip_suffix('\r').unwrap_or(line);
        let mut fields = line.splitn(4, '\t');
        match fields.next()? {
            "reloaded" => {
                let generation = fields.next()?.parse().ok()?;
                let millis = millis(fields.next()?)?;
                let modules = fields.next()?.split(',').filter(|m| !m.is_empty()).map(str::to_owned).collect();
                Some(Report::Reloaded { generation, millis, modules })
            }
            "reverted" => {
                let generation = fields.next()?.parse().ok()?;
                let millis = millis(fields.next()?)?;
                let modules = fields.next()?.split(',').filter(|m| !m.is_empty()).map(str::to_owned).collect();
                Some(Report::Reverted { generation, millis, modules })
            }
            "failed" => {
                let millis = millis(fields.next()?)?;
                // The message is the rest of the line, tabs and all.
                let error = line.splitn(3, '\t').nth(2)?.to_owned();
                Some(Report::Failed { millis, error })
            }
            "panic" => {
                let mut fields = line.splitn(5, '\t').skip(1);
                let module = fields.next().filter(|m| !m.is_empty())?.to_owned();
                let proc_name = fields.next()?.to_owned();
                let location = fields.next()?.to_owned();
                // The message is the rest of the line, tabs and all.
                let message = fields.next()?.to_owned();
                Some(Report::Panic { module, proc_name, location, message })
            }
            _ => None,
        }
    }
}

fn millis(field: &str) -> Option<f64> {
    field.parse::<f64>().ok().filter(|m| m.is_finite() && *m >= 0.0)
}

/// The status line for a report, without the `[hcr] ` prefix.
impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Report::Reloaded { millis, modules, .. } => {
                write!(f, "reloaded {} module(s) in {millis:.1} ms", modules.len())?;
                if !modules.is_empty() {
                    write!(f, ": {}", modules.join(", "))?;
                }
                Ok(())
            }
            Report::Reverted { millis, modules, .. } => {
                write!(f, "reverted {} to the previous build in {millis:.1} ms", modules.join(", "))
            }
            Report::Failed { error, .. } => write!(f, "reload refused: {error}"),
            Report::Panic { module, proc_name, location, message } => {
                write!(f, "panic in {module}")?;
                if !proc_name.is_empty() {
                    write!(f, "::{proc_name}")?;
                }
                if !location.is_empty() {
                    write!(f, " at {location}")?;
                }
                write!(f, ": {message}")
            }
        }
    }
}

/// Reads a growing file line by line: each call returns the lines
/// completed since the previous one.
#[derive(Debug)]
pub struct Follower {
    path: PathBuf,
    offset: u64,
    partial: Vec<u8>,
}

impl Follower {
    /// Follows `path` from its start. The file need not exist yet.
    pub fn new(path: impl Into<PathBuf>) -> Follower {
        Follower { path: path.into(), offset: 0, partial: Vec::new() }
    }

    /// The followed file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The lines completed since the last call (an unfinished last line
    /// waits for its newline).
    ///
    /// # Errors
    ///
    /// Reading the file failed; a file that does not exist has no lines.
    pub fn read_new_lines(&mut self) -> std::io::Result<Vec<String>> {
        let mut file = match File::open(&self.path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        if file.metadata()?.len() < self.offset {
            // Truncated: start over.
            self.offset = 0;
            self.partial.clear();
        }
        file.seek(SeekFrom::Start(self.offset))?;
        let mut fresh = Vec::new();
        self.offset += file.read_to_end(&mut fresh)? as u64;
        self.partial.extend_from_slice(&fresh);
        let Some(end) = self.partial.iter().rposition(|&b| b == b'\n') else { return Ok(Vec::new()) };
        let complete: Vec<u8> = self.partial.drain(..=end).collect();
        Ok(String::from_utf8_lossy(&complete).lines().map(str::to_owned).collect())
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    #[test]
    fn a_reloaded_line() {
        let report = Report::parse("reloaded\t3\t12.3\tgame_logic,physics").unwrap();
        assert_eq!(
            report,
            Report::Reloaded { generation: 3, millis: 12.3, modules: vec!["game_logic".into(), "physics".into()] }
        );
        assert_eq!(report.to_string(), "reloaded 2 module(s) in 12.3 ms: game_logic, physics");
        let one = Report::parse("reloaded\t7\t2.04\thello_module\r").unwrap();
        assert_eq!(one.to_string(), "reloaded 1 module(s) in 2.0 ms: hello_module");
    }

    #[test]
    fn a_failed_line_keeps_its_whole_message() {
        let line = "failed\t4.0\treload failed and was rolled back | global `W` changed\tlayout";
        let report = Report::parse(line).unwrap();
        assert_eq!(
            report,
            Report::Failed {
                millis: 4.0,
                error: "reload failed and was rolled back | global `W` changed\tlayout".into()
            }
        );
        assert!(report.to_string().starts_with("reload refused: reload failed and was rolled back | global"));
    }

    #[test]
    fn a_panic_line_reads_like_the_panic() {
        let line = "panic\tgame_logic\tupdate\tsrc/lib.rs:42:5\tindex out of bounds: the len is 3 but the index is 7";
        let report = Report::parse(line).unwrap();
        assert_eq!(
            report,
            Report::Panic {
                module: "game_logic".into(),
                proc_name: "update".into(),
                location: "src/lib.rs:42:5".into(),
                message: "index out of bounds: the len is 3 but the index is 7".into()
            }
        );
        assert_eq!(
            report.to_string(),
            "panic in game_logic::update at src/lib.rs:42:5: index out of bounds: the len is 3 but the index is 7"
        );
        // Unknown location, outside any proc, a message with a tab.
        let report = Report::parse("panic\tgame\t\t\tgave\tup").unwrap();
        assert_eq!(report.to_string(), "panic in game: gave\tup");
        let init = Report::parse("panic\tgame\t<init>\tsrc/lib.rs:3:9\tboom").unwrap();
        assert_eq!(init.to_string(), "panic in game::<init> at src/lib.rs:3:9: boom");
    }

    #[test]
    fn a_reverted_line() {
        let report = Report::parse("reverted\t5\t0.31\tgame_logic").unwrap();
        assert_eq!(report, Report::Reverted { generation: 5, millis: 0.31, modules: vec!["game_logic".into()] });
        assert_eq!(report.to_string(), "reverted game_logic to the previous build in 0.3 ms");
    }

    #[test]
    fn lines_not_understood_are_none() {
        for line in [
            "",
            "reloaded",
            "reloaded\tx\t1.0\tm",
            "reloaded\t1\tfast\tm",
            "reloaded\t1\t-1\tm",
            "reloaded\t1\tNaN\tm",
            "reloaded\t1\t2.0",
            "failed\t1.0",
            "failed\tsoon\toops",
            "panic\tgame\tupdate\tsrc/lib.rs:1:1",
            "panic\t\tupdate\tsrc/lib.rs:1:1\tno module",
            "reverted\tx\t1.0\tm",
            "unloaded\t1\t2",
            "RELOADED\t1\t1.0\tm",
        ] {
            assert_eq!(Report::parse(line), None, "{line:?}");
        }
    }

    #[test]
    fn the_follower_returns_complete_lines_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("report");
        let mut follower = Follower::new(&path);
        assert!(follower.read_new_lines().unwrap().is_empty(), "no file yet");

        let mut file = std::fs::OpenOptions::new().create(true).append(true).open(&path).unwrap();
        file.write_all(b"reloaded\t2\t1.5\ta\nfail").unwrap();
        assert_eq!(follower.read_new_lines().unwrap(), ["reloaded\t2\t1.5\ta"]);
        assert!(follower.read_new_lines().unwrap().is_empty(), "half a line waits");
        file.write_all(b"ed\t2.0\tno\nreloaded\t3\t1.0\tb\n").unwrap();
        assert_eq!(follower.read_new_lines().unwrap(), ["failed\t2.0\tno", "reloaded\t3\t1.0\tb"]);
        assert!(follower.read_new_lines().unwrap().is_empty());

        // A truncated file is read again from its start.
        std::fs::write(&path, "reloaded\t9\t1.0\tc\n").unwrap();
        assert_eq!(follower.read_new_lines().unwrap(), ["reloaded\t9\t1.0\tc"]);
    }
}
