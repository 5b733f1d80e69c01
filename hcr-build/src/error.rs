//! The code generator's error type.

use std::fmt;
use std::io;
use std::path::PathBuf;

/// Where in a source file something is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Location {
    /// The file, as found from the crate directory.
    pub file: PathBuf,
    /// Line, from 1.
    pub line: usize,
    /// Column, from 1.
    pub column: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file.display(), self.line, self.column)
    }
}

/// Everything code generation can refuse.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An item is marked reloadable (or is a `Global`) but cannot be.
    #[error("{location}: {message}")]
    Unsupported {
        /// Where the item is.
        location: Location,
        /// What is wrong and how to fix it.
        message: String,
    },

    /// Two reloadable items of one module have the same name.
    #[error("{location}: `{name}` is already declared at {first}; reloadable names must be unique in a module")]
    Duplicate {
        /// The name.
        name: String,
        /// The second declaration.
        location: Location,
        /// The first declaration.
        first: Location,
    },

    /// A source file does not parse.
    #[error("{location}: cannot parse: {message}")]
    Parse {
        /// Where the parser stopped.
        location: Location,
        /// The parser's message.
        message: String,
    },

    /// A file could not be read or written.
    #[error("cannot access {}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The system's error.
        #[source]
        source: io::Error,
    },

    /// A `Cargo.toml` is missing something code generation needs.
    #[error("{}: {message}", path.display())]
    Manifest {
        /// The manifest.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },

    /// A variable that cargo sets for build scripts is missing.
    #[error(
        "environment variable {name} is not set: run hcr-build from a build script, or set the directories explicitly"
    )]
    Env {
        /// The variable.
        name: &'static str,
    },

    /// Several of the above; each is reported.
    #[error("{}", list(.0))]
    Multiple(Vec<Error>),
}

impl Error {
    /// The individual errors.
    pub fn errors(&self) -> Vec<&Error> {
        match self {
            Error::Multiple(all) => all.iter().collect(),
            one => vec![one],
        }
    }

    /// Collapses a list of errors into one, or `None` when it is empty.
    pub(crate) fn collect(mut errors: Vec<Error>) -> Option<Error> {
        match errors.len() {
            0 => None,
            1 => errors.pop(),
            _ => Some(Error::Multiple(errors)),
        }
    }
}

fn list(errors: &[Error]) -> String {
    let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
    lines.join("\n")
}
