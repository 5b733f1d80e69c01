//! The procs and their stubs, behind a lock of their own so that reads never
//! wait behind a running reload: the transaction takes it only for a moment
//! per registration and for the commit, never while module code runs.

use std::sync::Arc;

use crate::error::Result;
use crate::registry::{ProcRegistry, ProcState};
use crate::table::{StubTable, Target};

/// The proc registry and the stub table, which change together.
pub(super) struct Stubs {
    pub(super) procs: ProcRegistry,
    pub(super) table: StubTable,
}

impl Stubs {
    /// The stub of `(module, name)`, creating a pending one (and taking a
    /// stub from the table, for good) if there is none.
    pub(super) fn stub_for(&mut self, module: &Arc<str>, name: &str) -> Result<u32> {
        if let Some(stub) = self.procs.lookup(module, name) {
            return Ok(stub);
        }
        let stub = self.table.allocate()?;
        debug_assert_eq!(stub, self.procs.len(), "stubs and procs are created together");
        self.procs.insert(module, name, stub);
        Ok(stub)
    }

    /// Whether `stub`'s address may be handed out as it is: it has a target
    /// (its function, or its pad).
    pub(super) fn is_published(&self, stub: u32) -> bool {
        self.table.target(stub) != Target::Empty
    }

    /// Makes sure a stub whose address is about to be handed out has a
    /// target: its function, or its pad. Returns the stub's address.
    pub(super) fn publish(&mut self, stub: u32) -> usize {
        if !self.is_published(stub) {
            let label = self.procs.get(stub).label();
            self.table.unbind(stub, &label);
        }
        self.table.stub_address(stub)
    }

    /// Points a proc's stub at its pad: it is no longer there.
    fn remove_proc(&mut self, stub: u32) {
        self.procs.set_state(stub, ProcState::Removed);
        let label = self.procs.get(stub).label();
        self.table.unbind(stub, &label);
    }

    /// Unbinds every bound stub of `module` for which `keep` is false: its
    /// proc is gone (a new build no longer registers it, or the module was
    /// unloaded). The one place procs are removed.
    pub(super) fn remove_procs_of(&mut self, module: &str, keep: impl Fn(u32) -> bool) {
        let gone: Vec<u32> = self
            .procs
            .module_stubs(module)
            .filter(|&stub| !keep(stub) && self.procs.state(stub) == ProcState::Bound)
            .collect();
        for stub in gone {
            self.remove_proc(stub);
        }
    }

    /// How many procs of `module` are bound.
    pub(super) fn bound_count(&self, module: &str) -> usize {
        self.procs.module_stubs(module).filter(|&s| self.procs.state(s) == ProcState::Bound).count()
    }
}
