//! The read side of the runtime: changed files, procs, globals, listings and
//! counters.

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
    pub(super) fn files_changed(&self) -> bool {
        let events = self.watch.as_ref().and_then(|w| w.events());
        // Acquire: pairs with the release half of the `fetch_max` below, so
        // the clean check that stored `events` happened before this answer.
        if let Some(events) = events
            && events == self.watch_checked.load(Ordering::Acquire)
        {
            return false;
        }
        let Ok(mut state) = self.state() else { return false };
        let mut changed = false;
        let mut settling = false;
        for module in &mut state.modules {
            match module.file_status(self.settle) {
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

    pub(super) fn module_changed(&self, name: &str) -> Result<bool> {
        let mut state = self.state()?;
        let index = state.module_index(name).ok_or_else(|| Error::UnknownModule { name: name.to_owned() })?;
        Ok(!matches!(state.modules[index].file_status(self.settle), FileStatus::Clean | FileStatus::Missing))
    }

    pub(super) fn proc_with_signature(
        &self,
        module: &str,
        name: &str,
        signature_hash: u64,
        signature: &str,
    ) -> Result<Proc> {
        let checked = check_module_name(module, "module name").and_then(|()| check_name(name, "proc name"));
        if let Err(reason) = checked {
            return Err(Error::InvalidArgument { module: "<host>".into(), reason });
        }
        let mut state = self.state()?;
        let module = state.procs.module_name(module).unwrap_or_else(|| Arc::from(module));
        let stub = state.proc_stub(&module, name, false)?;
        if signature_hash != 0 {
            let entry = state.procs.get(stub);
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
            state.procs.add_binder(stub, binder);
        }
        let addr = state.publish(stub);
        Ok(Proc { addr, slot: state.table.slot_address(stub), index: stub })
    }

    pub(super) fn global(&self, module: &str, name: &str) -> Result<GlobalRef> {
        let state = self.state()?;
        let entry = state
            .globals
            .get(module, name)
            .ok_or_else(|| Error::UnknownGlobal { module: module.to_owned(), name: name.to_owned() })?;
        Ok(GlobalRef { addr: entry.slot.as_ptr() as usize, layout: entry.layout.clone() })
    }

    pub(super) fn module_infos(&self) -> Vec<ModuleInfo> {
        let Ok(state) = self.state() else { return Vec::new() };
        state.topo_order().into_iter().map(|i| state.modules[i].info(&state.procs, &state.globals)).collect()
    }

    pub(super) fn inspection(&self) -> Inspection {
        let Ok(state) = self.state() else {
            return Inspection::default();
        };
        let stubs: Vec<StubInfo> = (0..state.procs.len())
            .map(|stub| {
                let entry = state.procs.get(stub);
                let address = state.table.stub_address(entry.stub);
                let target = match state.table.target(entry.stub) {
                    Target::Function(t) => Some(t),
                    Target::Empty | Target::Unbound => None,
                };
                StubInfo {
                    index: entry.stub,
                    address,
                    slot: state.table.slot_address(entry.stub),
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
                    instruction: arch::describe_stub(&state.table.code(entry.stub), address as u64),
                }
            })
            .collect();
        Inspection {
            region: state.table.range(),
            capacity: state.table.capacity(),
            in_use: state.table.in_use(),
            stubs,
        }
    }

    pub(super) fn counters(&self) -> Stats {
        let unloads = self.reclaim.unloads();
        let retired_pending = self.reclaim.pending();
        let threads = self.reclaim.thread_count();
        let Ok(state) = self.state() else {
            return Stats { unloads, retired_pending, threads, ..Stats::default() };
        };
        Stats {
            modules: state.modules.len(),
            stubs_in_use: state.table.in_use(),
            stub_capacity: state.table.capacity(),
            globals: state.globals.len(),
            kept_libraries: state.kept.len(),
            retired_pending,
            threads,
            unloads,
        }
    }
}
