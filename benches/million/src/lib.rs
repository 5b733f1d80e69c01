//! Registers `HCR_BENCH_PROCS` procs (default 1,000,000), named `p0`,
//! `p1`, ..., all bound to one function: the stubs are real and registered,
//! without a million functions to compile. Written against `hcr-abi` by hand
//! because its registration is a loop.

use std::ffi::c_void;
use std::io::Write;

use hcr_abi::{HostApi, ModuleDescriptor, ProcDesc, Status, Str};

const SIGNATURE: &str = "extern \"C\" fn(u64) -> u64";

/// The function every proc is bound to.
pub extern "C" fn echo(x: u64) -> u64 {
    x
}

fn register(api: &HostApi) -> Result<(), Status> {
    let count: usize = std::env::var("HCR_BENCH_PROCS").ok().and_then(|n| n.parse().ok()).unwrap_or(1_000_000);
    let mut name = Vec::with_capacity(16);
    for i in 0..count {
        name.clear();
        let _ = write!(name, "p{i}");
        let desc = ProcDesc {
            name: Str { ptr: name.as_ptr(), len: name.len() },
            addr: echo as *const c_void,
            signature_hash: 0x6a09_e667_f3bc_c908,
            signature: Str::new(SIGNATURE),
        };
        // SAFETY: `api` is the table of the running init; `name` lives
        // through the call.
        unsafe { api.register_proc(&desc) }.ok()?;
    }
    Ok(())
}

unsafe extern "C" fn init(api: *const HostApi) -> Status {
    // SAFETY: the runtime passes a valid table for the duration of init.
    let api = unsafe { &*api };
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| register(api))) {
        Ok(Ok(())) => Status::OK,
        Ok(Err(status)) => status,
        Err(_) => Status::FAILED,
    }
}

/// The module's descriptor.
#[unsafe(no_mangle)]
pub static HCR_MODULE_DESCRIPTOR: ModuleDescriptor = ModuleDescriptor::new("bench_million", "1", &[], init);
