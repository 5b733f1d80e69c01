//! Loads, unloads and reloads: what surrounds the transaction (finding
//! changed files, copying them, handlers, retiring old libraries).

use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use hcr_abi::Phase;

use super::Runtime;
use super::detect::FileStatus;
use super::report::{ModuleInfo, ReloadReport, ReloadStage, ReloadTimings};
use super::state::State;
use super::txn::{Committed, Input, Role, check_stack};
use crate::config::UnloadPolicy;
use crate::error::{Error, Result};
use crate::loader::{ModuleLibrary, Quick};

/// The longest [`Runtime::perform_reload`] waits for module files that keep
/// being modified; after that they are tried as they are.
const MAX_SETTLE_WAIT: Duration = Duration::from_secs(5);

impl Runtime {
    pub(super) fn load_module(&self, path: &Path) -> Result<ModuleInfo> {
        let source = std::path::absolute(path).map_err(|e| Error::ReadModule { path: path.to_owned(), source: e })?;
        let _exclusive = self.exclusive()?;
        let mut state = self.state()?;
        if let Some(index) = state.modules.iter().position(|m| m.source == source) {
            state.modules[index].root = true;
            return Ok(state.modules[index].info(&state.procs, &state.globals));
        }
        let copy = state.private.copy_in(&source)?;
        let input = Input { copy, source: source.clone(), role: Role::Root };
        let (outcome, _) = state.transact(vec![input], self.generation());
        match outcome {
            Ok(committed) => {
                let index = state.modules.iter().position(|m| m.source == source).expect("just committed");
                let info = state.modules[index].info(&state.procs, &state.globals);
                tracing::info!(module = %info.name, loaded = ?committed.loaded, "loaded");
                let retired = self.retire(&mut state, committed.retired);
                drop(state);
                self.finish_retiring(retired);
                Ok(info)
            }
            Err(mut errors) => {
                let error = if errors.len() == 1 {
                    errors.remove(0)
                } else {
                    Error::rolled_back(errors).expect("at least one error")
                };
                tracing::warn!(error = %error, "load failed");
                Err(error)
            }
        }
    }

    pub(super) fn unload_module(&self, name: &str) -> Result<Vec<String>> {
        let _exclusive = self.exclusive()?;
        let mut state = self.state()?;
        let index = state.module_index(name).ok_or_else(|| Error::UnknownModule { name: name.to_owned() })?;
        state.modules[index].root = false;
        if let Err(e) = check_stack(state.leaving(&[])) {
            state.modules[index].root = true;
            return Err(e);
        }
        let mut committed = Committed::default();
        state.collect_unreachable(&mut committed);
        state.sync_watch();
        let retired = self.retire(&mut state, committed.retired);
        drop(state);
        self.finish_retiring(retired);
        Ok(committed.unloaded)
    }

    /// Sorts replaced libraries by policy: kept for good under
    /// [`UnloadPolicy::Never`], otherwise returned with the policy for
    /// [`Runtime::finish_retiring`] (once the state lock is released).
    fn retire(&self, state: &mut State, retired: Vec<ModuleLibrary>) -> (UnloadPolicy, Vec<ModuleLibrary>) {
        let policy = state.config.unload_policy;
        if policy == UnloadPolicy::Never {
            state.kept.extend(retired);
            return (policy, Vec::new());
        }
        (policy, retired)
    }

    fn finish_retiring(&self, (policy, retired): (UnloadPolicy, Vec<ModuleLibrary>)) {
        match policy {
            UnloadPolicy::Immediate => self.reclaim.close_now(retired),
            _ => self.reclaim.retire(retired),
        }
    }

    /// Finds the changed modules (waiting for files still being written),
    /// runs the before-reload handlers and reloads them as one transaction.
    pub(super) fn reload(&self) -> Result<ReloadReport> {
        let started = Instant::now();
        let _exclusive = self.exclusive()?;
        let generation = self.generation();
        let mut timings = ReloadTimings::default();
        let mut state = self.state()?;

        let t = Instant::now();
        let (trigger, candidates) = loop {
            let mut trigger = false;
            let mut candidates = Vec::new();
            let mut wait = Duration::ZERO;
            for i in state.topo_order() {
                match state.modules[i].file_status(self.settle) {
                    FileStatus::Clean | FileStatus::Missing => {}
                    FileStatus::Changed => {
                        trigger = true;
                        candidates.push(i);
                    }
                    FileStatus::Settling { left } if t.elapsed() < MAX_SETTLE_WAIT => wait = wait.max(left),
                    // Still being modified after all this time: try it as it is.
                    FileStatus::Settling { .. } => {
                        trigger = true;
                        candidates.push(i);
                    }
                    FileStatus::FailedBefore => candidates.push(i),
                }
            }
            if wait.is_zero() {
                break (trigger, candidates);
            }
            // A file is being written: wait for it, without holding up the
            // threads that need the state, and look at everything again.
            drop(state);
            std::thread::sleep(wait);
            state = self.state()?;
        };
        timings.detect = t.elapsed();
        if !trigger {
            timings.total = started.elapsed();
            self.reclaim.collect();
            return Ok(ReloadReport::unchanged(generation, timings));
        }
        check_stack(candidates.iter().map(|&i| &state.modules[i]))?;

        let t = Instant::now();
        let mut prepared = Vec::new();
        let mut failures = Vec::new();
        for i in candidates {
            let source = state.modules[i].source.clone();
            match state.private.copy_in(&source) {
                Ok(copy) if copy.stamp.hash == state.modules[i].stamp.hash => {
                    state.modules[i].stamp.quick = copy.stamp.quick;
                    state.modules[i].failed = None;
                }
                Ok(copy) => prepared.push((i, copy)),
                Err(e) => {
                    state.modules[i].failed = Some(Quick::stat(&source));
                    failures.push(e);
                }
            }
        }
        timings.copy = t.elapsed();
        if let Some(error) = Error::rolled_back(failures) {
            tracing::warn!(error = %error, "reload failed before loading anything");
            return Err(error);
        }
        if prepared.is_empty() {
            timings.total = started.elapsed();
            return Ok(ReloadReport::unchanged(generation, timings));
        }

        let before = state.handlers(Phase::BEFORE_RELOAD);
        drop(state);
        let t = Instant::now();
        self.host_handlers.run(&before, ReloadStage::Before, generation);
        timings.handlers = t.elapsed();
        let mut state = self.state()?;

        let attempted: Vec<(usize, Quick)> = prepared.iter().map(|(i, c)| (*i, c.stamp.quick)).collect();
        let inputs: Vec<Input> = prepared
            .into_iter()
            .map(|(i, copy)| {
                let module = &state.modules[i];
                let role = Role::Replace { root: module.root, expected: module.name.clone() };
                Input { copy, source: module.source.clone(), role }
            })
            .collect();
        let new_generation = generation + 1;
        let (outcome, times) = state.transact(inputs, new_generation);
        timings.copy += times.copy;
        timings.load = times.load;
        timings.register = times.init;
        let committed = match outcome {
            Ok(committed) => committed,
            Err(failures) => {
                let error = Error::rolled_back(failures).expect("a failed transaction has errors");
                for (i, quick) in attempted {
                    state.modules[i].failed = Some(quick);
                }
                let after = state.handlers(Phase::AFTER_RELOAD);
                drop(state);
                self.host_handlers.run(&after, ReloadStage::RolledBack, generation);
                tracing::warn!(error = %error, "reload rolled back");
                return Err(error);
            }
        };
        // Release: whoever sees the new generation sees the commit.
        self.generation.store(new_generation, Ordering::Release);
        timings.patch = times.commit;
        let after = state.handlers(Phase::AFTER_RELOAD);
        let retired = self.retire(&mut state, committed.retired);
        drop(state);

        let t = Instant::now();
        self.finish_retiring(retired);
        timings.unload = t.elapsed();
        let t = Instant::now();
        self.host_handlers.run(&after, ReloadStage::Committed, new_generation);
        timings.handlers += t.elapsed();
        timings.total = started.elapsed();
        tracing::info!(
            generation = new_generation,
            reloaded = ?committed.reloaded,
            total_ms = timings.total.as_secs_f64() * 1e3,
            "reload committed"
        );
        Ok(ReloadReport {
            generation: new_generation,
            reloaded: committed.reloaded,
            loaded: committed.loaded,
            unloaded: committed.unloaded,
            timings,
        })
    }
}

/// Appends `line` to the report file at `path`; a failure is only logged.
pub(super) fn append_line(path: &Path, line: &str) {
    use std::io::Write;
    let written = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .and_then(|mut file| file.write_all(format!("{line}\n").as_bytes()));
    if let Err(e) = written {
        tracing::warn!(path = %path.display(), error = %e, "cannot write the reload report");
    }
}
