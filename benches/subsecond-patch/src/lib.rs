//! subsecond's `apply_patch` loads a patch library and bases the jump table on
//! its `main` symbol. This library exists to be that patch, so that the
//! benchmark runs subsecond's call path with a jump table installed.

/// The symbol `apply_patch` looks up; never called.
#[unsafe(no_mangle)]
pub extern "C" fn main() {}
