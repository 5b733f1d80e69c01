//! hcr: hot code reloading for Rust, with a stable jump table.
//!
//! The runtime is linked into the host program and never reloaded. It
//! reserves executable memory (next to the libraries by default) and hands out
//! one jump *stub* per registered function, plus runtime-owned storage for
//! globals. Reloadable modules are dynamic libraries (`cdylib`s) that export
//! an [`hcr_abi::ModuleDescriptor`]. When a new build of a module is loaded it
//! registers again, and its stubs are re-pointed in place: every function
//! pointer anyone holds stays valid and every global keeps its value.
//!
//! ```no_run
//! # fn main() -> Result<(), hcr_runtime::Error> {
//! let runtime = hcr_runtime::Runtime::new()?;
//! runtime.load("target/debug/libgame.so")?;
//! // SAFETY: `game::update` is an `extern "C" fn(f32)`.
//! let update = unsafe { runtime.get_proc("game", "update")?.typed::<extern "C" fn(f32)>() };
//! loop {
//!     if runtime.reload_needed() {
//!         match runtime.perform_reload() {
//!             Ok(report) => println!("reloaded {:?} in {}", report.reloaded, report.timings),
//!             Err(e) => eprintln!("{e}"), // the old code keeps running
//!         }
//!     }
//!     update(1.0 / 60.0); // always the current code
//! }
//! # }
//! ```
//!
//! # Guarantees
//!
//! * Stub code pages are written once and then read+execute; targets live in
//!   separate read+write pages and are patched with one atomic store. No page
//!   is ever writable and executable at the same time.
//! * A load or reload is a transaction: if anything fails (the file, the
//!   loader, the descriptor, the ABI version, the module's init, a
//!   registration, a signature or a proc a caller is bound to), nothing is
//!   patched and everything the attempt allocated is released, except the
//!   stubs it created: they stay with their names, unbound, and the same
//!   procs get them back later.
//! * Calling a function that is not (or no longer) registered prints
//!   `hcr: call to unbound function <module>::<name>` and aborts, instead of
//!   jumping into unmapped memory.
//!
//! The crate also builds as a shared library with a C API
//! (`include/hcr.h`) for hosts in other languages, and `include/hcr_module.h`
//! lets modules be written in C.
//!
//! See `docs/` in the repository for the design and the exact safety edges.
#![deny(unsafe_op_in_unsafe_fn)]

mod api;
mod arch;
mod capi;
mod config;
// Only the build-id reader is used where libraries are not ELF files.
#[cfg_attr(any(windows, target_vendor = "apple"), allow(dead_code))]
mod elf;
mod encode;
mod error;
mod host;
mod loader;
mod mapped_vec;
mod names;
mod os;
mod panics;
mod reclaim;
mod registry;
mod runtime;
mod safepoint;
mod services;
mod table;
mod watch;

pub use config::{
    Config, DEFAULT_MAX_MODULE_SIZE, DEFAULT_SAFEPOINT_TIMEOUT, DEFAULT_SETTLE_TIME, DEFAULT_STUB_BASE,
    DEFAULT_STUB_CAPACITY, MAX_MODULE_SIZE_LIMIT, MAX_STUB_CAPACITY, UnloadPolicy,
};
pub use error::{Error, GlobalLayout, Result};
pub use host::ModuleBindings;
pub use panics::{PanicEvent, PanicKind};
pub use reclaim::ThreadGuard;
pub use runtime::{
    GlobalRef, Inspection, ModuleInfo, Proc, Refusal, ReloadEvent, ReloadReport, ReloadStage, ReloadTimings, Runtime,
    Stats, Stub, StubInfo, StubState,
};

/// The ABI crate, re-exported for hosts that also speak to modules directly.
pub use hcr_abi as abi;
