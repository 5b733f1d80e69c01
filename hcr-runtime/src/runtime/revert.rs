//! Reverts: a module sent back to its previous build, which the runtime
//! kept loaded, as one transaction with the checks of a reload.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use hcr_abi::Phase;

use super::Runtime;
use super::checks::{self, Failure, check_stack};
use super::report::{ReloadReport, ReloadStage, ReloadTimings};
use super::state::State;
use super::txn::{Committed, Replace, Staged, Txn};
use crate::error::{Error, Result};
use crate::mapped_vec::MappedVec;

impl Runtime {
    /// See [`Runtime::revert`].
    pub(super) fn revert_module(&self, name: &str) -> Result<ReloadReport> {
        let started = Instant::now();
        let _exclusive = self.exclusive()?;
        let generation = self.generation();
        let mut timings = ReloadTimings::default();
        let state = self.state()?;
        let index = state.module_index(name).ok_or_else(|| Error::UnknownModule { name: name.to_owned() })?;
        if state.modules[index].previous.is_none() {
            return Err(Error::NoPreviousBuild { module: name.to_owned(), keeping: state.config.keep_previous_builds });
        }
        check_stack([&state.modules[index]])?;
        let capture = self.services.panics.capture();

        let before = state.handlers(Phase::BEFORE_RELOAD);
        drop(state);
        let t = Instant::now();
        self.host_handlers.run(&before, ReloadStage::Before, generation);
        timings.handlers = t.elapsed();
        let mut state = self.state()?;

        let new_generation = generation + 1;
        let t = Instant::now();
        let outcome = state.transact_revert(name, new_generation);
        timings.patch = t.elapsed();
        let committed = match outcome {
            Ok(committed) => committed,
            Err(failures) => {
                self.publish(&state);
                let after = state.handlers(Phase::AFTER_RELOAD);
                drop(state);
                self.host_handlers.run(&after, ReloadStage::RolledBack, generation);
                drop(capture);
                let error = Error::rolled_back(failures.into_iter().map(|f| f.error).collect())
                    .expect("a refused revert has errors");
                tracing::warn!(module = name, error = %error, "revert refused");
                return Err(error);
            }
        };
        // Release: whoever sees the new generation sees the commit.
        self.generation.store(new_generation, Ordering::Release);
        let after = state.handlers(Phase::AFTER_RELOAD);
        let retired = self.retire(&mut state, committed.retired);
        self.publish(&state);
        drop(state);

        let t = Instant::now();
        self.finish_retiring(retired);
        timings.unload = t.elapsed();
        let t = Instant::now();
        self.host_handlers.run(&after, ReloadStage::Committed, new_generation);
        timings.handlers += t.elapsed();
        timings.total = started.elapsed();
        tracing::info!(module = name, generation = new_generation, "reverted to the previous build");
        Ok(ReloadReport {
            generation: new_generation,
            reloaded: Vec::new(),
            loaded: Vec::new(),
            unloaded: committed.unloaded,
            reverted: committed.reverted,
            refused: Vec::new(),
            panics: capture.finish(),
            timings,
        })
    }
}

impl State {
    /// Makes the previous build of module `name` current: checks that every
    /// global it had is as it left it and that its imports are loaded,
    /// then the checks of a reload, then commits (as `generation`). On
    /// failure nothing changed and the previous build is kept.
    fn transact_revert(&mut self, name: &str, generation: u64) -> std::result::Result<Committed, Vec<Failure>> {
        let index = self.module_index(name).expect("the caller found the module");
        let mut previous = *self.modules[index].previous.take().expect("the caller checked the previous build");
        let current = &self.modules[index];
        let module: Arc<str> = current.name.clone();
        previous.root = current.root;
        let newer = current.stamp.quick;
        let blame = |error| Failure { error, blame: vec![module.clone()], with: Vec::new() };

        let mut failures = Vec::new();
        let registration = previous.registration.take().unwrap_or_default();
        for (global, ptr, layout) in &registration.globals {
            let change = match self.globals.get(&module, global) {
                None => Some("went away (the newer build no longer registers it)".to_owned()),
                Some(entry) if entry.slot.as_ptr() as usize == *ptr => None,
                Some(entry) if entry.layout != *layout => {
                    Some(format!("changed layout from {layout} to {}", entry.layout))
                }
                Some(_) => Some("moved to new storage".to_owned()),
            };
            if let Some(change) = change {
                failures.push(blame(Error::RevertGlobalChanged {
                    module: module.to_string(),
                    name: global.to_string(),
                    change,
                }));
            }
        }
        for import in &previous.imports {
            if self.module_index(import).is_none() {
                failures
                    .push(blame(Error::RevertImportGone { module: module.to_string(), import: import.to_string() }));
            }
        }

        let mut txn = Txn::new();
        let mut procs = MappedVec::new();
        for p in &registration.procs {
            txn.registered.insert(p.stub);
            procs.push(*p);
        }
        txn.binds = registration.binds.clone();
        previous.registration = Some(registration);
        txn.staged.push(Staged {
            record: previous,
            owner: Some(module.clone()),
            broken: false,
            procs,
            global_slots: Vec::new(),
            messages: Vec::new(),
            errors: Vec::new(),
        });
        if failures.is_empty() {
            failures.extend(self.check_graph(&txn));
        }
        if failures.is_empty() {
            let leaving = self.leaving(&txn.staged);
            let stubs = self.stubs.read();
            failures.extend(checks::check_signatures(&stubs, &txn));
            failures.extend(checks::check_removals(&stubs, &txn, &leaving));
            drop(stubs);
            if failures.is_empty()
                && let Err(error) = check_stack(leaving)
            {
                failures.push(Failure::unattributed(error));
            }
        }
        if !failures.is_empty() {
            let staged = txn.staged.pop().expect("the previous build");
            self.modules[index].previous = Some(Box::new(staged.record));
            return Err(failures);
        }
        let committed = self.commit(txn, generation, Replace::Revert);
        // The newer build's file stays as it is: not loaded again until it
        // changes.
        if let Some(index) = self.module_index(name) {
            self.modules[index].failed = Some(newer);
            self.modules[index].failed_with.clear();
        }
        Ok(committed)
    }
}
