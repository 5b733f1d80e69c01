//! Reload handlers: those modules register in their inits, and the host's
//! callbacks ([`Runtime::on_reload`](super::Runtime::on_reload)).

use std::ffi::c_void;

use hcr_abi::{HandlerFn, Phase};
use parking_lot::Mutex;

use super::report::{ReloadEvent, ReloadStage};
use super::state::State;

/// A reload handler registered by a module.
#[derive(Clone, Copy)]
pub(super) struct Handler {
    pub(super) phase: Phase,
    pub(super) f: HandlerFn,
    pub(super) user: usize,
}

/// A host-side reload callback.
type HostHandler = Box<dyn FnMut(&ReloadEvent) + Send>;

/// The host's callbacks.
#[derive(Default)]
pub(super) struct HostHandlers(Mutex<Vec<HostHandler>>);

impl HostHandlers {
    pub(super) fn add(&self, handler: impl FnMut(&ReloadEvent) + Send + 'static) {
        self.0.lock().push(Box::new(handler));
    }

    /// Runs the modules' `handlers`, then the host's callbacks, for `stage`.
    /// Callbacks may add callbacks (they run from the next event on).
    pub(super) fn run(&self, handlers: &[Handler], stage: ReloadStage, generation: u64) {
        let (phase, outcome) = match stage {
            ReloadStage::Before => (Phase::BEFORE_RELOAD, hcr_abi::Outcome::PENDING),
            ReloadStage::Committed => (Phase::AFTER_RELOAD, hcr_abi::Outcome::COMMITTED),
            ReloadStage::RolledBack => (Phase::AFTER_RELOAD, hcr_abi::Outcome::ROLLED_BACK),
        };
        run_modules(handlers, phase, outcome, generation);
        let mut host = std::mem::take(&mut *self.0.lock());
        let event = ReloadEvent { stage, generation };
        for handler in &mut host {
            handler(&event);
        }
        let mut slot = self.0.lock();
        host.append(&mut slot);
        *slot = host;
    }

    /// Runs the first-load handlers of the modules a load or reload brought
    /// in (imports first), once, after it committed. Host callbacks are not
    /// told: the host knows what it loaded.
    pub(super) fn run_first_load(&self, handlers: &[Handler], generation: u64) {
        run_modules(handlers, Phase::FIRST_LOAD, hcr_abi::Outcome::COMMITTED, generation);
    }
}

/// Runs module handlers with one event.
fn run_modules(handlers: &[Handler], phase: Phase, outcome: hcr_abi::Outcome, generation: u64) {
    let event = hcr_abi::ReloadEvent {
        size: size_of::<hcr_abi::ReloadEvent>() as u32,
        phase,
        outcome,
        reserved: 0,
        generation,
    };
    for handler in handlers {
        // SAFETY: the handler was registered by a module that is still
        // loaded (loads and reloads are excluded while handlers run), and
        // the module contract makes it callable with its `user` pointer
        // from any thread, without unwinding.
        unsafe { (handler.f)(handler.user as *mut c_void, &event) };
    }
}

impl State {
    /// The loaded modules' handlers for `phase`, imports' handlers first.
    pub(super) fn handlers(&self, phase: Phase) -> Vec<Handler> {
        self.topo_order()
            .into_iter()
            .flat_map(|i| self.modules[i].handlers.iter().copied())
            .filter(|h| h.phase == phase)
            .collect()
    }
}
