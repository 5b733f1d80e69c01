//! The context of one module's init: the `ctx` of its
//! [`hcr_abi::HostApi`]. Everything it registers goes into the running
//! transaction.

use std::ffi::c_void;
use std::sync::Arc;

use hcr_abi::{
    GlobalDesc, GlobalImport, GlobalMigration, GlobalSlot, HandlerFn, Phase, ProcDesc, ProcImport, Services, Str,
};

use super::handlers::Handler;
use super::state::State;
use super::txn::{StagedProc, Txn};
use crate::api::InitContext;
use crate::error::{Error, GlobalLayout, Result};
use crate::loader;
use crate::names::{MAX_MODULE_NAME, MAX_NAME, check_module_name, check_name};
use crate::registry::{Binder, Caller, GlobalEntry, GlobalRegistry, layout_fits};

/// The init of staged module `index` of `txn`.
pub(super) struct Session<'a> {
    pub(super) state: &'a mut State,
    pub(super) txn: &'a mut Txn,
    pub(super) index: usize,
}

impl Session<'_> {
    fn module(&self) -> Arc<str> {
        self.txn.staged[self.index].record.name.clone()
    }

    fn text(&self, s: Str, max: usize, what: &str) -> Result<String> {
        loader::read_str(s, max, what).map_err(|r| self.invalid(r))
    }

    /// A proc or global name.
    fn name(&self, s: Str, what: &str) -> Result<String> {
        let name = self.text(s, MAX_NAME, what)?;
        check_name(&name, what).map_err(|r| self.invalid(r))?;
        Ok(name)
    }

    /// The name of a module.
    fn module_name(&self, s: Str) -> Result<String> {
        let name = self.text(s, MAX_MODULE_NAME, "module name")?;
        check_module_name(&name, "module name").map_err(|r| self.invalid(r))?;
        Ok(name)
    }
}

impl InitContext for Session<'_> {
    fn record(&mut self, error: Error) {
        self.txn.staged[self.index].errors.push(error);
    }

    fn invalid(&self, reason: String) -> Error {
        Error::InvalidArgument { module: self.module().to_string(), reason }
    }

    fn register_proc(&mut self, desc: &ProcDesc) -> Result<()> {
        let module = self.module();
        let name = self.name(desc.name, "proc name")?;
        if desc.addr.is_null() {
            return Err(self.invalid(format!("proc `{name}` has a null address")));
        }
        let signature = self.text(desc.signature, 4096, "signature")?;
        let mut stubs = self.state.stubs.write();
        let stub = stubs.stub_for(&module, &name)?;
        if !self.txn.registered.insert(stub) {
            return Err(Error::DuplicateProc { module: module.to_string(), name });
        }
        let signature = stubs.procs.intern_signature(desc.signature_hash, &signature);
        drop(stubs);
        self.txn.staged[self.index].procs.push(StagedProc { stub, addr: desc.addr as usize, signature });
        Ok(())
    }

    fn get_proc(&mut self, import: &ProcImport) -> Result<*const c_void> {
        let module: Arc<str> = self.module_name(import.module)?.into();
        let name = self.name(import.name, "proc name")?;
        let signature = self.text(import.signature, 4096, "signature")?;
        let mut stubs = self.state.stubs.write();
        let stub = stubs.stub_for(&module, &name)?;
        let address = stubs.publish(stub);
        drop(stubs);
        if import.signature_hash != 0 {
            let binder = Binder {
                caller: Caller::Module(self.module()),
                hash: import.signature_hash,
                signature: signature.into(),
            };
            self.txn.binds.push((stub, binder));
        }
        Ok(address as *const c_void)
    }

    fn register_global(&mut self, desc: &GlobalDesc, migrations: &[GlobalMigration]) -> Result<GlobalSlot> {
        let module = self.module();
        let name = self.name(desc.name, "global name")?;
        let requested = GlobalLayout {
            size: desc.size,
            align: desc.align,
            hash: desc.layout_hash,
            text: self.text(desc.layout, 4096, "layout")?,
        };
        let globals = &mut self.txn.staged[self.index].record.globals;
        if globals.iter().any(|g| **g == *name) {
            return Err(Error::DuplicateGlobal { module: module.to_string(), name });
        }
        let Some(existing) = self.state.globals.get(&module, &name) else {
            let slot = GlobalRegistry::new_slot(&module, &name, &requested)?;
            let ptr = slot.as_ptr();
            let layout = requested.clone();
            self.state.globals.insert(module.clone(), &name, GlobalEntry { slot, layout: requested });
            self.txn.created_globals.push((module, name.as_str().into()));
            let staged = &mut self.txn.staged[self.index];
            staged.record.globals.push(name.as_str().into());
            staged.global_slots.push((name.into(), ptr as usize, layout));
            return Ok(GlobalSlot { ptr: ptr.cast(), initialize: 1 });
        };
        if layout_fits(&existing.layout, &requested) {
            let ptr = existing.slot.as_ptr();
            globals.push(name.as_str().into());
            self.txn.staged[self.index].global_slots.push((name.into(), ptr as usize, requested));
            return Ok(GlobalSlot { ptr: ptr.cast(), initialize: 0 });
        }
        let from = &existing.layout;
        let migration = migrations
            .iter()
            .find(|m| m.from_layout_hash == from.hash && m.from_size == from.size && m.from_align == from.align);
        let Some(migration) = migration else {
            return Err(Error::GlobalLayoutMismatch {
                module: module.to_string(),
                name,
                existing: Box::new(existing.layout.clone()),
                requested: Box::new(requested),
            });
        };
        // The old value stays where it is (the old code keeps using it until
        // the commit, and keeps it after a rollback); the migration writes
        // the new value into new storage.
        let slot = GlobalRegistry::new_slot(&module, &name, &requested)?;
        let old = existing.slot.as_ptr();
        let panics_before = self.state.services.panics.captured();
        // SAFETY: `old` holds the global's value in the layout this migration
        // declares it reads (hash, size and alignment matched), and `slot` is
        // fresh storage of the new layout. Migrations are module code that
        // must not unwind; generated ones catch panics.
        let status = unsafe { (migration.migrate)(old.cast(), slot.as_ptr().cast()) };
        if !status.is_ok() {
            // A generated migration reports its panic before it returns.
            let panic = self
                .state
                .services
                .panics
                .captured_since(panics_before)
                .into_iter()
                .rfind(|p| p.kind == crate::PanicKind::Migration && *p.module == *module);
            let reason = match panic {
                Some(p) => match p.location() {
                    Some(at) => format!("it panicked at {at}: {}", p.message),
                    None => format!("it panicked: {}", p.message),
                },
                None => format!("it returned status {}", status.0),
            };
            return Err(Error::MigrationFailed {
                module: module.to_string(),
                name,
                from: Box::new(existing.layout.clone()),
                reason,
            });
        }
        let ptr = slot.as_ptr();
        let layout = requested.clone();
        self.txn.migrated.push((module, name.as_str().into(), GlobalEntry { slot, layout: requested }));
        let staged = &mut self.txn.staged[self.index];
        staged.record.globals.push(name.as_str().into());
        staged.global_slots.push((name.into(), ptr as usize, layout));
        Ok(GlobalSlot { ptr: ptr.cast(), initialize: 0 })
    }

    fn get_global(&mut self, import: &GlobalImport) -> Result<*mut c_void> {
        let module = self.module_name(import.module)?;
        let name = self.name(import.name, "global name")?;
        let requested = GlobalLayout {
            size: import.size,
            align: import.align,
            hash: import.layout_hash,
            text: self.text(import.layout, 4096, "layout")?,
        };
        let Some(existing) = self.state.globals.get(&module, &name) else {
            return Err(Error::UnknownGlobal { module, name });
        };
        if !layout_fits(&existing.layout, &requested) {
            return Err(Error::GlobalLayoutMismatch {
                module,
                name,
                existing: Box::new(existing.layout.clone()),
                requested: Box::new(requested),
            });
        }
        Ok(existing.slot.as_ptr().cast())
    }

    fn services(&self) -> *const Services {
        self.state.services.table()
    }

    fn add_handler(&mut self, phase: Phase, f: HandlerFn, user: *mut c_void) -> Result<()> {
        if phase != Phase::BEFORE_RELOAD && phase != Phase::AFTER_RELOAD && phase != Phase::FIRST_LOAD {
            return Err(self.invalid(format!("handler phase {} is unknown", phase.0)));
        }
        self.txn.staged[self.index].record.handlers.push(Handler { phase, f, user: user as usize });
        Ok(())
    }

    fn report(&mut self, message: Str) {
        let text = loader::read_str(message, 64 * 1024, "error message")
            .unwrap_or_else(|reason| format!("<unreadable message: {reason}>"));
        self.txn.staged[self.index].messages.push(text);
    }
}
