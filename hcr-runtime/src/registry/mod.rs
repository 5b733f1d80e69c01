//! Name-keyed records of procs (stub indices) and globals (runtime-owned
//! slots).
//!
//! * [`procs`]: one record per stub, compactly, with lookups by name;
//! * [`arena`]: the proc names, in stub order, and the index of the names a
//!   running transaction added;
//! * [`signatures`]: interned signatures and one id per stub;
//! * [`globals`]: runtime-owned storage of globals, by name.

mod arena;
mod globals;
mod procs;
mod signatures;

use std::sync::Arc;

pub(crate) use globals::{GlobalBox, GlobalEntry, GlobalRegistry, layout_fits};
pub(crate) use procs::ProcRegistry;

/// How a proc's stub is bound.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ProcState {
    /// Asked for (or registered in an uncommitted load), not bound yet.
    Pending,
    /// Bound to the owning module's current code.
    Bound,
    /// The module no longer has it; the stub reports calls and aborts.
    Removed,
}

/// Who called `get_proc` (or bound bindings) for a proc.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Caller {
    /// The host program; never reloaded.
    Host,
    /// A module; its bindings are replaced when it is reloaded.
    Module(Arc<str>),
}

impl std::fmt::Display for Caller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Caller::Host => write!(f, "the host"),
            Caller::Module(m) => write!(f, "module `{m}`"),
        }
    }
}

/// A caller bound to a proc with the signature it was compiled against.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Binder {
    pub(crate) caller: Caller,
    pub(crate) hash: u64,
    pub(crate) signature: Arc<str>,
}

/// One proc, as the registry can describe it.
#[derive(Debug)]
pub(crate) struct ProcView<'a> {
    pub(crate) stub: u32,
    pub(crate) module: &'a Arc<str>,
    pub(crate) name: &'a str,
    pub(crate) state: ProcState,
    pub(crate) signature_hash: u64,
    pub(crate) signature: &'a str,
}

impl ProcView<'_> {
    /// `module::name`, as the unbound handler prints it.
    pub(crate) fn label(&self) -> String {
        format!("{}::{}", self.module, self.name)
    }
}
