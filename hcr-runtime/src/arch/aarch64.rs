//! AArch64: stubs are `ldr x16, <literal>; br x16`.

pub(crate) use crate::encode::aarch64::{CALL_LEN, PAD_STRIDE, pad_page, stub_page};

/// Architecture name used in messages.
pub(crate) const NAME: &str = "AArch64";

/// The architecture that module files must be built for.
#[cfg(any(windows, target_vendor = "apple"))]
pub(crate) const FILE_ARCHITECTURE: object::Architecture = object::Architecture::Aarch64;

/// The ELF machine whose libraries this process loads, and its loader's
/// relocation rules.
#[cfg_attr(any(windows, target_vendor = "apple"), allow(dead_code))]
pub(crate) const ELF_MACHINE: &crate::elf::Machine = &crate::elf::AARCH64;

/// AArch64 is weakly ordered: before re-pointing stubs, the runtime makes every
/// thread execute a barrier so that the new code sees the globals its init
/// wrote.
pub(crate) const WEAKLY_ORDERED: bool = true;

/// Makes freshly written code visible to instruction fetch: clean the data
/// cache to the point of unification, invalidate the instruction cache, and
/// synchronise, line by line as `CTR_EL0` describes.
///
/// The runtime only writes code into pages that were never executable before,
/// so no other core can hold stale instructions for them in its pipeline; the
/// broadcast invalidation (`ic ivau` is inner-shareable) covers their caches.
///
/// # Safety
///
/// `start..start+len` must be mapped and readable.
#[cfg(not(windows))]
pub(crate) unsafe fn flush_icache(start: *const u8, len: usize) {
    use core::arch::asm;
    let ctr: u64;
    // SAFETY: CTR_EL0 is readable from EL0 on Linux and macOS.
    unsafe { asm!("mrs {}, ctr_el0", out(reg) ctr, options(nomem, nostack, preserves_flags)) };
    let dline = 4usize << ((ctr >> 16) & 0xF);
    let iline = 4usize << (ctr & 0xF);
    let begin = start as usize;
    let end = begin + len;
    let idc = ctr & (1 << 28) != 0; // no D-cache clean needed for I/D coherence
    let dic = ctr & (1 << 29) != 0; // no I-cache invalidation needed
    if !idc {
        let mut line = begin & !(dline - 1);
        while line < end {
            // SAFETY: cache maintenance by address on mapped memory.
            unsafe { asm!("dc cvau, {}", in(reg) line, options(nostack, preserves_flags)) };
            line += dline;
        }
    }
    // SAFETY: barriers have no memory operands.
    unsafe { asm!("dsb ish", options(nostack, preserves_flags)) };
    if !dic {
        let mut line = begin & !(iline - 1);
        while line < end {
            // SAFETY: cache maintenance by address on mapped memory.
            unsafe { asm!("ic ivau, {}", in(reg) line, options(nostack, preserves_flags)) };
            line += iline;
        }
        // SAFETY: barrier, no memory operands.
        unsafe { asm!("dsb ish", options(nostack, preserves_flags)) };
    }
    // SAFETY: barrier, no memory operands.
    unsafe { asm!("isb", options(nostack, preserves_flags)) };
}

/// Windows on Arm: the system call does the maintenance.
///
/// # Safety
///
/// `start..start+len` must be mapped.
#[cfg(windows)]
pub(crate) unsafe fn flush_icache(start: *const u8, len: usize) {
    use windows_sys::Win32::System::Diagnostics::Debug::FlushInstructionCache;
    use windows_sys::Win32::System::Threading::GetCurrentProcess;
    // SAFETY: flushing a mapped range of our own process.
    unsafe { FlushInstructionCache(GetCurrentProcess(), start.cast(), len) };
}

/// Describes a stub's two instructions.
pub(crate) fn describe_stub(bytes: &[u8], _ip: u64) -> String {
    let word = |i: usize| u32::from_le_bytes(bytes[i * 4..i * 4 + 4].try_into().expect("4 bytes"));
    let (ldr, br) = (word(0), word(1));
    if ldr & 0xFF00_001F == 0x5800_0010 && br == 0xD61F_0200 {
        // imm19 is a signed word offset.
        let imm19 = ((ldr >> 5) & 0x7_FFFF) as i32;
        let offset = (imm19 << 13) >> 11;
        format!("ldr x16, #{offset:+#x}; br x16")
    } else {
        format!(".inst {ldr:#010x}; .inst {br:#010x}")
    }
}
