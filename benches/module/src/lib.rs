//! The functions the call benchmarks call: as small as a function gets, so
//! that what is measured is the way it is called. [`trivial`] is a C proc,
//! [`add`] a reloadable Rust function.

include!(concat!(env!("OUT_DIR"), "/hcr_module.rs"));

/// `x + 1`, never inlined into a caller.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn trivial(x: u64) -> u64 {
    x.wrapping_add(1)
}

/// What [`add`] reads: host state handed to a reloadable Rust function by
/// reference.
#[derive(Clone, Copy, Debug, Default)]
pub struct Counter {
    /// Added to every argument.
    pub base: u64,
}

/// `counter.base + n`: the Rust-ABI twin of [`trivial`], of the shape
/// `fn(&T, u64) -> u64`. It cannot panic, so its guard compiles to the
/// function itself.
#[hcr_abi::reload]
pub fn add(counter: &Counter, n: u64) -> u64 {
    counter.base.wrapping_add(n)
}

/// [`add`] as a plain function pointer, for the benchmark that calls the
/// same code through it (`call_overhead/fn_pointer_rust_abi`): looked up in
/// the library with `dlsym`, it points into the library, as the stub does.
#[unsafe(no_mangle)]
pub static BENCH_MODULE_ADD: fn(&Counter, u64) -> u64 = add;
