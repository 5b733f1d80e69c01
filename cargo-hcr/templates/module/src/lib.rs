//! The reloadable module. While `cargo hcr run` runs, change `tick` and
//! save: the host calls the new code from its next tick on. A panic (try
//! `panic!("not yet")`) is reported with its file and line, and the host
//! goes on with the old state; the next save brings the fix.

include!(concat!(env!("OUT_DIR"), "/hcr_module.rs"));

/// What the host keeps from tick to tick. The host owns it, so it survives
/// every reload of this library. (Changing its fields changes `tick`'s
/// signature: the reload is refused until the host is rebuilt.)
#[derive(Debug, Default)]
pub struct State {
    /// How many ticks there have been.
    pub ticks: u64,
}

/// Counts one tick and returns what the host prints: try `state.ticks * 10`.
#[hcr_abi::reload]
pub fn tick(state: &mut State) -> String {
    state.ticks += 1;
    format!("tick {}", state.ticks)
}
