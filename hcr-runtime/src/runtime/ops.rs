//! Loads, unloads and reloads: what surrounds the transaction (finding
//! changed files, copying them, handlers, which files to try together,
//! retiring old libraries, publishing the committed state).

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use hcr_abi::Phase;

use super::Runtime;
use super::checks::{Failure, check_stack};
use super::detect::FileStatus;
use super::lock::Held;
use super::report::{ModuleInfo, Refusal, ReloadReport, ReloadStage, ReloadTimings};
use super::state::State;
use super::txn::{Committed, Input, Role, TxnTimes};
use crate::config::UnloadPolicy;
use crate::error::{Error, Result};
use crate::loader::{ModuleLibrary, Quick};

/// The longest [`Runtime::perform_reload`] waits for module files that keep
/// being modified; after that they are tried as they are.
const MAX_SETTLE_WAIT: Duration = Duration::from_secs(5);

/// The modules one attempt loads, with the quick stamp of each file as it
/// was copied.
type Attempt = Vec<(Arc<str>, Quick)>;

impl Runtime {
    /// Publishes the committed state for readers.
    pub(super) fn publish(&self, state: &State) {
        let snapshot = state.snapshot(&state.stubs.read());
        self.committed.store(Arc::new(snapshot));
    }

    pub(super) fn load_module(&self, path: &Path) -> Result<ModuleInfo> {
        let source = std::path::absolute(path).map_err(|e| Error::ReadModule { path: path.to_owned(), source: e })?;
        let _exclusive = self.exclusive()?;
        let mut state = self.state()?;
        if let Some(index) = state.modules.iter().position(|m| m.source == source) {
            state.modules[index].root = true;
            self.publish(&state);
            let info = state.modules[index].info(&state.stubs.read(), &state.globals);
            return Ok(info);
        }
        let copy = state.private.copy_in(&source).map_err(|e| Error::load_failed(vec![e]).expect("one error"))?;
        let input = Input { copy, source: source.clone(), role: Role::Root };
        let (outcome, _) = state.transact(vec![input], self.generation());
        match outcome {
            Ok(committed) => {
                let index = state.modules.iter().position(|m| m.source == source).expect("just committed");
                let info = state.modules[index].info(&state.stubs.read(), &state.globals);
                tracing::info!(module = %info.name, loaded = ?committed.loaded, "loaded");
                let retired = self.retire(&mut state, committed.retired);
                self.publish(&state);
                drop(state);
                self.finish_retiring(retired);
                self.host_handlers.run_first_load(&committed.first_load, self.generation());
                Ok(info)
            }
            Err(failures) => {
                self.publish(&state);
                let error = Error::load_failed(failures.into_iter().map(|f| f.error).collect()).expect("errors");
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
        self.publish(&state);
        drop(state);
        self.finish_retiring(retired);
        Ok(committed.unloaded)
    }

    /// Sorts replaced libraries by policy: kept for good under
    /// [`UnloadPolicy::Never`], otherwise returned with the policy for
    /// [`Runtime::finish_retiring`] (once the state lock is released).
    pub(super) fn retire(&self, state: &mut State, retired: Vec<ModuleLibrary>) -> (UnloadPolicy, Vec<ModuleLibrary>) {
        let policy = state.config.unload_policy;
        if policy == UnloadPolicy::Never {
            state.kept.extend(retired);
            return (policy, Vec::new());
        }
        (policy, retired)
    }

    pub(super) fn finish_retiring(&self, (policy, retired): (UnloadPolicy, Vec<ModuleLibrary>)) {
        match policy {
            UnloadPolicy::Immediate => self.reclaim.close_now(retired),
            _ => self.reclaim.retire(retired),
        }
    }

    /// The modules whose files changed since they were loaded or last tried
    /// (waiting for files still being written), imports first. Files that
    /// failed before and did not change since are not among them.
    fn changed_modules<'a>(&'a self, mut state: Held<'a, State>) -> Result<(Held<'a, State>, Vec<Arc<str>>)> {
        let started = Instant::now();
        loop {
            let mut changed = Vec::new();
            let mut wait = Duration::ZERO;
            let limit = state.private.max_size();
            for i in state.topo_order() {
                match state.modules[i].file_status(self.settle, limit) {
                    FileStatus::Clean | FileStatus::Missing | FileStatus::FailedBefore => {}
                    FileStatus::Settling { left } if started.elapsed() < MAX_SETTLE_WAIT => wait = wait.max(left),
                    // Changed, or still being modified after all this time:
                    // try it as it is.
                    FileStatus::Changed | FileStatus::Settling { .. } => changed.push(state.modules[i].name.clone()),
                }
            }
            if wait.is_zero() {
                return Ok((state, changed));
            }
            // A file is being written: wait for it, without holding up the
            // threads that need the state, and look at everything again.
            drop(state);
            std::thread::sleep(wait);
            state = self.state()?;
        }
    }

    /// Copies the files of `modules` into transaction inputs. A file whose
    /// content is what is loaded (it was only touched) is skipped; one that
    /// cannot be copied is a failure of its module.
    fn prepare(state: &mut State, modules: &[Arc<str>]) -> (Vec<Input>, Attempt, Vec<Failure>) {
        let (mut inputs, mut attempt, mut failures) = (Vec::new(), Vec::new(), Vec::new());
        for name in modules {
            let Some(i) = state.module_index(name) else { continue };
            let source = state.modules[i].source.clone();
            match state.private.copy_in(&source) {
                Ok(copy) if copy.stamp.hash == state.modules[i].stamp.hash => {
                    state.modules[i].stamp.quick = copy.stamp.quick;
                    state.modules[i].failed = None;
                }
                Ok(copy) => {
                    attempt.push((name.clone(), copy.stamp.quick));
                    let role = Role::Replace { root: state.modules[i].root, expected: name.clone() };
                    inputs.push(Input { copy, source, role });
                }
                Err(error) => {
                    attempt.push((name.clone(), Quick::stat(&source)));
                    failures.push(Failure { error, blame: vec![name.clone()], with: Vec::new() });
                }
            }
        }
        (inputs, attempt, failures)
    }

    /// Marks the files of `blamed` modules as failed (as `attempt` copied
    /// them), remembering the modules each failure involved.
    fn mark_failed(state: &mut State, attempt: &Attempt, blamed: &HashSet<Arc<str>>, failures: &[Failure]) {
        for (name, quick) in attempt.iter().filter(|(n, _)| blamed.contains(n)) {
            let Some(i) = state.module_index(name) else { continue };
            let mut with: Vec<Arc<str>> =
                failures.iter().filter(|f| f.blame.contains(name)).flat_map(|f| f.with.iter().cloned()).collect();
            with.sort_unstable();
            with.dedup();
            state.modules[i].failed = Some(*quick);
            state.modules[i].failed_with = with;
        }
    }

    /// Finds the changed modules, runs the before-reload handlers and
    /// reloads them: as one transaction; if that fails, together with
    /// failed files the failure involved; if that fails too, the modules the
    /// failure is not attributed to, on their own.
    pub(super) fn reload(&self) -> Result<ReloadReport> {
        let started = Instant::now();
        let _exclusive = self.exclusive()?;
        let generation = self.generation();
        let mut timings = ReloadTimings::default();
        let state = self.state()?;
        let capture = self.services.panics.capture();

        let t = Instant::now();
        let (mut state, changed) = self.changed_modules(state)?;
        timings.detect = t.elapsed();
        if changed.is_empty() {
            self.publish(&state);
            timings.total = started.elapsed();
            drop(state);
            self.reclaim.collect();
            return Ok(ReloadReport::unchanged(generation, timings));
        }
        check_stack(changed.iter().filter_map(|n| state.module_index(n)).map(|i| &state.modules[i]))?;

        let t = Instant::now();
        let (inputs, attempt, copy_failures) = Self::prepare(&mut state, &changed);
        timings.copy = t.elapsed();
        let blamed: HashSet<Arc<str>> = copy_failures.iter().flat_map(|f| f.blame.iter().cloned()).collect();
        Self::mark_failed(&mut state, &attempt, &blamed, &copy_failures);
        let mut refused: Vec<Failure> = copy_failures;
        if inputs.is_empty() {
            self.publish(&state);
            timings.total = started.elapsed();
            return match Error::rolled_back(refused.into_iter().map(|f| f.error).collect()) {
                Some(error) => {
                    tracing::warn!(error = %error, "reload failed before loading anything");
                    Err(error)
                }
                None => Ok(ReloadReport::unchanged(generation, timings)),
            };
        }

        let before = state.handlers(Phase::BEFORE_RELOAD);
        drop(state);
        let t = Instant::now();
        self.host_handlers.run(&before, ReloadStage::Before, generation);
        timings.handlers = t.elapsed();
        let mut state = self.state()?;

        let new_generation = generation + 1;
        let names: Vec<Arc<str>> = attempt.iter().map(|(n, _)| n.clone()).filter(|n| !blamed.contains(n)).collect();
        let mut times = TxnTimes::default();
        let mut run = |state: &mut State, inputs: Vec<Input>| {
            let (outcome, t) = state.transact(inputs, new_generation);
            times.copy += t.copy;
            times.load += t.load;
            times.init += t.init;
            times.commit += t.commit;
            outcome
        };
        let committed = match run(&mut state, inputs) {
            Ok(committed) => Ok(committed),
            Err(failures) if failures.iter().any(|f| matches!(f.error, Error::CalledFromModule { .. })) => {
                // Nobody's fault: the same files may load from host code.
                Err(failures)
            }
            Err(failures) => {
                // Failed files the failure involved may belong with these.
                let failed_before: Vec<Arc<str>> = {
                    let mut with: Vec<Arc<str>> = failures
                        .iter()
                        .flat_map(|f| f.with.iter())
                        .filter(|m| !names.contains(m))
                        .filter(|m| state.module_index(m).is_some_and(|i| state.modules[i].failed.is_some()))
                        .cloned()
                        .collect();
                    with.sort_unstable();
                    with.dedup();
                    with
                };
                let together = if failed_before.is_empty() {
                    None
                } else {
                    let all: Vec<Arc<str>> = names.iter().chain(&failed_before).cloned().collect();
                    let (inputs, _, copy_failures) = Self::prepare(&mut state, &all);
                    if copy_failures.is_empty() && inputs.len() == all.len() {
                        run(&mut state, inputs).ok()
                    } else {
                        None
                    }
                };
                match together {
                    Some(committed) => Ok(committed),
                    None => {
                        let mut blamed: HashSet<Arc<str>> =
                            failures.iter().flat_map(|f| f.blame.iter().cloned()).collect();
                        if blamed.is_empty() {
                            blamed = names.iter().cloned().collect();
                        }
                        Self::mark_failed(&mut state, &attempt, &blamed, &failures);
                        let rest: Vec<Arc<str>> = names.iter().filter(|n| !blamed.contains(*n)).cloned().collect();
                        refused.extend(failures);
                        if rest.is_empty() {
                            Err(Vec::new())
                        } else {
                            // The valid changes, once more, on their own.
                            let (inputs, again, copy_failures) = Self::prepare(&mut state, &rest);
                            refused.extend(copy_failures);
                            match run(&mut state, inputs) {
                                Ok(committed) => Ok(committed),
                                Err(failures) => {
                                    let blamed: HashSet<Arc<str>> =
                                        failures.iter().flat_map(|f| f.blame.iter().cloned()).collect();
                                    Self::mark_failed(&mut state, &again, &blamed, &failures);
                                    refused.extend(failures);
                                    Err(Vec::new())
                                }
                            }
                        }
                    }
                }
            }
        };
        timings.copy += times.copy;
        timings.load = times.load;
        timings.register = times.init;
        timings.patch = times.commit;

        let committed = match committed {
            Ok(committed) => committed,
            Err(failures) => {
                refused.extend(failures);
                self.publish(&state);
                let after = state.handlers(Phase::AFTER_RELOAD);
                drop(state);
                self.host_handlers.run(&after, ReloadStage::RolledBack, generation);
                let error = Error::rolled_back(refused.into_iter().map(|f| f.error).collect())
                    .expect("a failed reload has errors");
                tracing::warn!(error = %error, "reload rolled back");
                return Err(error);
            }
        };
        // Release: whoever sees the new generation sees the commit.
        self.generation.store(new_generation, Ordering::Release);
        // Files that failed along with a module that just committed may load
        // now: they are tried again, in a transaction of their own.
        let done: HashSet<&str> = committed.reloaded.iter().chain(&committed.loaded).map(String::as_str).collect();
        for module in &mut state.modules {
            if module.failed.is_some() && module.failed_with.iter().any(|m| done.contains(&**m)) {
                module.failed = None;
                module.failed_with.clear();
            }
        }
        let after = state.handlers(Phase::AFTER_RELOAD);
        let retired = self.retire(&mut state, committed.retired);
        self.publish(&state);
        drop(state);

        let t = Instant::now();
        self.finish_retiring(retired);
        timings.unload = t.elapsed();
        let t = Instant::now();
        self.host_handlers.run_first_load(&committed.first_load, new_generation);
        self.host_handlers.run(&after, ReloadStage::Committed, new_generation);
        timings.handlers += t.elapsed();
        timings.total = started.elapsed();
        let refused: Vec<Refusal> = refused.into_iter().map(refusal).collect();
        for r in &refused {
            tracing::warn!(module = %r.module, error = %r.error, "a module's new build was refused");
        }
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
            reverted: Vec::new(),
            refused,
            panics: capture.finish(),
            timings,
        })
    }
}

/// A failure of a reload that committed other modules, for its report.
fn refusal(failure: Failure) -> Refusal {
    let module = failure.blame.iter().map(|m| m.to_string()).collect::<Vec<_>>().join(", ");
    Refusal { module, error: Arc::new(failure.error) }
}

/// Appends `line` to the report file at `path` (a regular file, opened so
/// that it cannot block); a failure is only logged.
pub(crate) fn append_line(path: &Path, line: &str) {
    crate::loader::append_report(path, line);
}
