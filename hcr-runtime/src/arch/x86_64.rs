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

/// Bytes below the stack pointer that a leaf function may use without
/// moving it (the System V red zone): part of the live stack.
#[cfg(target_os = "linux")]
pub(crate) const RED_ZONE: usize = 128;

/// Words [`context_words`] may write: 23 general registers (with `rip` and
/// `rsp`) and the 16 `xmm` registers, two words each.
#[cfg(target_os = "linux")]
pub(crate) const CONTEXT_WORDS: usize = 23 + 32;

/// The calling thread's thread pointer: the address of its thread control
/// block, which glibc and musl place at the top of a thread's stack block
/// (above its frames) for every thread but the main one. Async-signal-safe.
#[cfg(target_os = "linux")]
pub(crate) fn thread_pointer() -> usize {
    let tp: usize;
    // SAFETY: the x86-64 TLS ABI keeps the TCB's own address in its first
    // word, at `fs:0`, for every thread; reading it has no side effects.
    unsafe { core::arch::asm!("mov {}, qword ptr fs:[0]", out(reg) tp, options(nostack, readonly, preserves_flags)) };
    tp
}

/// Copies the interrupted thread's registers out of a signal handler's
/// context into `out`; returns how many words were written and the
/// interrupted stack pointer. Async-signal-safe.
///
/// # Safety
///
/// `context` must be the `ucontext_t` the kernel passed to the running
/// `SA_SIGINFO` handler.
#[cfg(target_os = "linux")]
pub(crate) unsafe fn context_words(
    context: *const core::ffi::c_void,
    out: &mut [usize; CONTEXT_WORDS],
) -> (usize, usize) {
    // SAFETY: the caller passes the handler's context, a valid ucontext_t.
    let uc = unsafe { &*context.cast::<libc::ucontext_t>() };
    let gregs = &uc.uc_mcontext.gregs;
    for (slot, &reg) in out.iter_mut().zip(gregs.iter()) {
        *slot = reg as usize;
    }
    let sp = gregs[libc::REG_RSP as usize] as usize;
    let mut count = gregs.len();
    let fp = uc.uc_mcontext.fpregs;
    if !fp.is_null() {
        // SAFETY: a non-null `fpregs` points at the saved FPU state inside
        // the same signal frame.
        let xmm = unsafe { &(*fp)._xmm };
        for reg in xmm {
            let e = reg.element.map(|w| w as usize);
            out[count] = e[0] | (e[1] << 32);
            out[count + 1] = e[2] | (e[3] << 32);
            count += 2;
        }
    }
    (count, sp)
}
