//! x86-64: stubs are `jmp qword ptr [rip+disp32]`.

use iced_x86::{Decoder, DecoderOptions, Formatter, IntelFormatter};

pub(crate) use crate::encode::x86_64::{CALL_LEN, PAD_STRIDE, pad_page, stub_page};

/// Architecture name used in messages.
pub(crate) const NAME: &str = "x86-64";

/// The architecture that module files must be built for.
#[cfg(any(windows, target_vendor = "apple"))]
pub(crate) const FILE_ARCHITECTURE: object::Architecture = object::Architecture::X86_64;

/// The ELF machine whose libraries this process loads, and its loader's
/// relocation rules.
#[cfg_attr(any(windows, target_vendor = "apple"), allow(dead_code))]
pub(crate) const ELF_MACHINE: &crate::elf::Machine = &crate::elf::X86_64;

/// x86-64 is TSO: a thread that sees a re-pointed stub also sees every store
/// the reloading thread made before it, so no process-wide barrier is needed.
pub(crate) const WEAKLY_ORDERED: bool = false;

/// Instruction and data caches are coherent on x86-64; nothing to do.
///
/// # Safety
///
/// Always safe; `unsafe` to match the AArch64 signature.
pub(crate) unsafe fn flush_icache(_start: *const u8, _len: usize) {}

/// Decodes a stub's first instruction (Intel syntax), with the absolute
/// address of the slot it jumps through.
pub(crate) fn describe_stub(bytes: &[u8], ip: u64) -> String {
    let mut decoder = Decoder::with_ip(64, bytes, ip, DecoderOptions::NONE);
    let insn = decoder.decode();
    let mut text = String::new();
    IntelFormatter::new().format(&insn, &mut text);
    text
}
