//! The read side of the runtime. Most reads never wait behind a reload:
//! they answer from the published snapshot or take the stubs' lock, which
//! a reload holds only for moments and never while module code runs.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::Runtime;
use super::detect::FileStatus;
use super::handles::{GlobalRef, Proc};
use super::report::{Inspection, ModuleInfo, Stats, StubInfo, StubState};
use crate::arch;
use crate::error::{Error, Result};
use crate::names::{check_module_name, check_name};
use crate::registry::{Binder, Caller, ProcState};
use crate::table::Target;

impl Runtime {
    /// See [`Runtime::reload_needed`]: `stat`s the snapshot's files.
    pub(super) fn files_changed(&self) -> bool {
        let events = self.watch.as_ref().and_then(|w| w.events());
        // Acquire: pairs with the release half of the `fetch_max` below, so
        // the clean check that stored `events` happened before this answer.
        if let Some(events) = events
            && events == self.watch_checked.load(Ordering::Acquire)
        {
            return false;
        }
        let snapshot = self.committed.load();
        let mut changed = false;
        let mut settling = false;
        for file in &snapshot.files {
            match file.quick_status(self.settle) {
                FileStatus::Changed => changed = true,
                // No event may come when it settles: ask again next time.
                FileStatus::Settling { .. } => settling = true,
                FileStatus::Clean | FileStatus::Missing | FileStatus::FailedBefore => {}
            }
        }
        if let Some(events) = events
            && !changed
            && !settling
        {
            // Everything up to `events` is accounted for. AcqRel: the
            // release half publishes this clean check (see above).
            self.watch_checked.fetch_max(events, Ordering::AcqRel);
        }
        changed
    }

    /// See [`Runtime::has_module_changed`].
    pub(super) fn module_changed(&self, name: &str) -> Result<bool> {
        let snapshot = self.committed.load();
        let file = snapshot
            .files
            .iter()
            .find(|f| &*f.name == name)
            .ok_or_else(|| Error::UnknownModule { name: name.to_owned() })?;
        Ok(file.differs(self.settle, self.max_module_size))
    }

    /// The stub of a proc that has one, without waiting for the state lock.
    fn existing_proc(&self, module: &str, name: &str) -> Option<Proc<'_>> {
        let stubs = self.stubs.read();
        let stub = stubs.procs.lookup(module, name)?;
        if stubs.is_published(stub) {
            return Some(Proc::new(stubs.table.stub_address(stub), stubs.table.slot_address(stub), stub));
        }
        // Created by a running transaction and not handed out yet: give it
        // its pad first.
        drop(stubs);
        let mut stubs = self.stubs.write();
        let addr = stubs.publish(stub);
        Some(Proc::new(addr, stubs.table.slot_address(stub), stub))
    }

    /// See [`Runtime::get_proc_with_signature`].
    pub(super) fn proc_with_signature(
        &self,
        module: &str,
        name: &str,
        signature_hash: u64,
        signature: &str,
    ) -> Result<Proc<'_>> {
        let checked = check_module_name(module, "module name").and_then(|()| check_name(name, "proc name"));
        if let Err(reason) = checked {
            return Err(Error::InvalidArgument { module: "<host>".into(), reason });
        }
        if signature_hash == 0
            && let Some(proc) = self.existing_proc(module, name)
        {
            return Ok(proc);
        }
        // Creating a stub or binding a signature: in step with transactions,
        // which check binders before they commit.
        let state = self.state()?;
        let mut stubs = state.stubs.write();
        let module = stubs.procs.module_name(module).unwrap_or_else(|| Arc::from(module));
        let created = stubs.procs.lookup(&module, name).is_none();
        let stub = stubs.stub_for(&module, name)?;
        if created {
            stubs.procs.merge();
        }
        if signature_hash != 0 {
            let entry = stubs.procs.get(stub);
            if entry.state == ProcState::Bound && entry.signature_hash != 0 && entry.signature_hash != signature_hash {
                return Err(Error::SignatureMismatch {
                    module: entry.module.to_string(),
                    name: entry.name.to_string(),
                    caller: Caller::Host.to_string(),
                    expected: signature.to_owned(),
                    found: entry.signature.to_owned(),
                });
            }
            let binder = Binder { caller: Caller::Host, hash: signature_hash, signature: signature.into() };
            stubs.procs.add_binder(stub, binder);
        }
        let addr = stubs.publish(stub);
        Ok(Proc::new(addr, stubs.table.slot_address(stub), stub))
    }

    /// See [`Runtime::get_global`].
    pub(super) fn global(&self, module: &str, name: &str) -> Result<GlobalRef<'_>> {
        let state = self.state()?;
        let entry = state
            .globals
            .get(module, name)
            .ok_or_else(|| Error::UnknownGlobal { module: module.to_owned(), name: name.to_owned() })?;
        Ok(GlobalRef::new(entry.slot.as_ptr() as usize, entry.layout.clone()))
    }

    /// See [`Runtime::modules`].
    pub(super) fn module_infos(&self) -> Vec<ModuleInfo> {
        self.committed.load().modules.clone()
    }

    /// See [`Runtime::inspect`].
    pub(super) fn inspection(&self) -> Inspection {
        let stubs = self.stubs.read();
        let listed: Vec<StubInfo> = (0..stubs.procs.len())
            .map(|stub| {
                let entry = stubs.procs.get(stub);
                let address = stubs.table.stub_address(entry.stub);
                let target = match stubs.table.target(entry.stub) {
                    Target::Function(t) => Some(t),
                    Target::Empty | Target::Unbound => None,
                };
                StubInfo {
                    index: entry.stub,
                    address,
                    slot: stubs.table.slot_address(entry.stub),
                    module: entry.module.to_string(),
                    name: entry.name.to_string(),
                    state: match entry.state {
                        ProcState::Pending => StubState::Pending,
                        ProcState::Bound => StubState::Bound,
                        ProcState::Removed => StubState::Removed,
                    },
                    signature: entry.signature.to_string(),
                    signature_hash: entry.signature_hash,
                    target,
                    instruction: arch::describe_stub(&stubs.table.code(entry.stub), address as u64),
                }
            })
            .collect();
        Inspection {
            region: stubs.table.range(),
            capacity: stubs.table.capacity(),
            in_use: stubs.table.in_use(),
            stubs: listed,
        }
    }

    /// See [`Runtime::stats`].
    pub(super) fn counters(&self) -> Stats {
        let snapshot = self.committed.load();
        let (stubs_in_use, stub_capacity) = {
            let stubs = self.stubs.read();
            (stubs.table.in_use(), stubs.table.capacity())
        };
        Stats {
            modules: snapshot.modules.len(),
            stubs_in_use,
            stub_capacity,
            globals: snapshot.globals,
            kept_libraries: snapshot.kept,
            retired_pending: self.reclaim.pending(),
            threads: self.reclaim.thread_count(),
            unloads: self.reclaim.unloads(),
        }
    }
}
