//! [`ProcPanic`]: a panic caught at the edge of a reloadable Rust function.

use alloc::borrow::ToOwned;
use alloc::boxed::Box;
use alloc::string::String;
use core::fmt;

/// A panic in a reloadable Rust function (a proc marked `#[reload]`), caught
/// by the function's guard in its module and handed to the caller as an
/// error.
///
/// Every module has its own copy of the standard library, so a panic cannot
/// unwind from a module into its caller. The module's generated guard catches
/// it where it happens and returns it as `Err(ProcPanic)`: the generated
/// bindings' `try_<proc>` hands that to the caller, `<proc>` raises it again
/// as a panic of the caller.
///
/// It is one thin pointer, so `Result<u64, ProcPanic>` comes back in
/// registers. Its layout is that of this crate's version, which is part of
/// the toolchain fingerprint that host and module must share.
///
/// ```
/// use hcr_abi::ProcPanic;
///
/// let p = ProcPanic::new("game", "update", "index out of bounds").with_location("src/lib.rs", 12, 5);
/// assert_eq!(p.to_string(), "panic in game::update at src/lib.rs:12:5: index out of bounds");
/// assert_eq!((p.module(), p.proc_name(), p.line()), ("game", "update", 12));
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ProcPanic(Box<Inner>);

#[derive(Clone, PartialEq, Eq, Hash)]
struct Inner {
    module: String,
    proc_name: String,
    message: String,
    file: String,
    line: u32,
    column: u32,
}

impl ProcPanic {
    /// A panic of proc `proc_name` of `module` with `message`, without a
    /// location.
    pub fn new(module: &str, proc_name: &str, message: &str) -> ProcPanic {
        ProcPanic(Box::new(Inner {
            module: module.to_owned(),
            proc_name: proc_name.to_owned(),
            message: message.to_owned(),
            file: String::new(),
            line: 0,
            column: 0,
        }))
    }

    /// The same panic, located at `file:line:column`.
    pub fn with_location(mut self, file: &str, line: u32, column: u32) -> ProcPanic {
        file.clone_into(&mut self.0.file);
        self.0.line = line;
        self.0.column = column;
        self
    }

    /// The module whose proc panicked.
    pub fn module(&self) -> &str {
        &self.0.module
    }

    /// The proc that panicked: the one whose guard caught the panic first (a
    /// panic passed on through the procs that called it keeps this name).
    pub fn proc_name(&self) -> &str {
        &self.0.proc_name
    }

    /// The panic message; `"Box<dyn Any>"` when the payload was not a string.
    pub fn message(&self) -> &str {
        &self.0.message
    }

    /// The source file of the panic, as the compiler recorded it; empty when
    /// the location is unknown (see [`ProcPanic::has_location`]).
    pub fn file(&self) -> &str {
        &self.0.file
    }

    /// The line of the panic, from 1; 0 when unknown.
    pub fn line(&self) -> u32 {
        self.0.line
    }

    /// The column of the panic, from 1; 0 when unknown.
    pub fn column(&self) -> u32 {
        self.0.column
    }

    /// Whether the location is known. It is not for a panic caught in a
    /// static build (where the host's panic hook reported the location), or
    /// one raised with `std::panic::resume_unwind`, which runs no hook.
    pub fn has_location(&self) -> bool {
        !self.0.file.is_empty()
    }
}

impl fmt::Display for ProcPanic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let i = &self.0;
        write!(f, "panic in {}::{}", i.module, i.proc_name)?;
        if self.has_location() {
            write!(f, " at {}:{}:{}", i.file, i.line, i.column)?;
        }
        write!(f, ": {}", i.message)
    }
}

impl fmt::Debug for ProcPanic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let i = &self.0;
        f.debug_struct("ProcPanic")
            .field("module", &i.module)
            .field("proc", &i.proc_name)
            .field("message", &i.message)
            .field("file", &i.file)
            .field("line", &i.line)
            .field("column", &i.column)
            .finish()
    }
}

impl core::error::Error for ProcPanic {}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    #[test]
    fn displays_where_and_what() {
        let p = ProcPanic::new("game", "update", "boom");
        assert_eq!(p.to_string(), "panic in game::update: boom");
        assert!(!p.has_location());
        let located = p.clone().with_location("src/a.rs", 3, 9);
        assert_eq!(located.to_string(), "panic in game::update at src/a.rs:3:9: boom");
        assert_eq!((located.file(), located.line(), located.column()), ("src/a.rs", 3, 9));
        assert_ne!(p, located);
        let e: &dyn core::error::Error = &located;
        assert!(e.source().is_none());
        assert!(alloc::format!("{located:?}").contains("proc: \"update\""));
    }
}
