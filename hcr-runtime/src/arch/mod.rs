//! Architecture services: which encoder the stub table uses, instruction-cache
//! maintenance, and decoding stubs for the inspect listing.
//!
//! One file per architecture behind a private `imp` selection; the encoders
//! themselves live in [`crate::encode`] and are compiled on every host.

#[cfg(target_arch = "x86_64")]
#[path = "x86_64.rs"]
mod imp;

#[cfg(target_arch = "aarch64")]
#[path = "aarch64.rs"]
mod imp;

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
compile_error!("hcr-runtime supports x86-64 and AArch64");

#[cfg(any(windows, target_vendor = "apple"))]
pub(crate) use imp::FILE_ARCHITECTURE;
pub(crate) use imp::{
    CALL_LEN, ELF_MACHINE, NAME, PAD_STRIDE, WEAKLY_ORDERED, describe_stub, flush_icache, pad_page, stub_page,
};
