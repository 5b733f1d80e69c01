//! Machine-code encoders for the stub table, one module per architecture.
//!
//! These are pure functions (bytes in, bytes out) compiled on every host, so
//! both encoders are tested byte-exact wherever the tests run. The instruction
//! bytes are produced by `dynasmrt`; the tests compare them with encodings
//! computed independently from the architecture manuals.
//!
//! # Table geometry (shared by both architectures)
//!
//! The table is a sequence of *blocks* of three pages of `page` bytes:
//!
//! ```text
//! +--------------------+--------------------+--------------------------+
//! | code page (R+X)    | slot page (R+W)    | pad page (R+X, lazily)   |
//! | stub 0 | stub 1 |..| slot 0 | slot 1 |..| trampoline | pad 0 |..  |
//! +--------------------+--------------------+--------------------------+
//! ```
//!
//! Stub `j` of a block is [`STUB_SIZE`] bytes at offset `j * STUB_SIZE` of the
//! code page and jumps through the 8-byte slot at the same offset of the slot
//! page, exactly one page further on. Every stub therefore has the same bytes
//! and a code page is one repeated pattern.
//!
//! A stub whose function is not bound has its slot pointing at its own *pad*
//! in the pad page. A pad is a call into the page's trampoline; the return
//! address it leaves tells the trampoline which pad, hence which stub, was
//! reached. The trampoline passes that address and a context pointer to the
//! runtime's unbound-call handler, which reports the function's name.

/// Bytes per stub in a code page (and per slot in a slot page).
pub(crate) const STUB_SIZE: usize = 8;

/// Bytes at the start of a pad page taken by the trampoline and its two
/// 8-byte literals (context pointer, handler address).
pub(crate) const PAD_HEADER: usize = 32;

/// x86-64 encodings.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))] // compiled on every host, for the tests
pub(crate) mod x86_64 {
    use super::{PAD_HEADER, STUB_SIZE};
    use dynasmrt::x64::X64Relocation;
    use dynasmrt::{DynasmApi, DynasmLabelApi, VecAssembler, dynasm};

    /// Bytes per pad: `call rel32` (5) and one `int3`.
    pub(crate) const PAD_STRIDE: usize = 6;
    /// Length of the call instruction in a pad: its return address is
    /// `pad + CALL_LEN`.
    pub(crate) const CALL_LEN: usize = 5;
    /// Filler for unused code bytes: `int3`.
    const FILL: u8 = 0xCC;

    /// One stub: `jmp qword ptr [rip + disp32]` to the slot `slot_distance`
    /// bytes after the stub's first byte, padded with `int3`.
    pub(crate) fn stub(slot_distance: i32) -> [u8; STUB_SIZE] {
        let disp = slot_distance - 6; // rip points after the 6-byte jmp
        let mut ops = VecAssembler::<X64Relocation>::new(0);
        dynasm!(ops
            ; .arch x64
            ; jmp QWORD [rip + disp]
            ; int3
            ; int3
        );
        to_array(ops.finalize().expect("x86-64 stub has no relocations"))
    }

    /// A full code page of stubs whose slots are one page further on.
    pub(crate) fn stub_page(page: usize) -> Vec<u8> {
        let one = stub(page as i32);
        one.iter().copied().cycle().take(page).collect()
    }

    /// A full pad page: the trampoline, then `page / STUB_SIZE` pads.
    ///
    /// Trampoline: `pop rsi` (the pad's return address becomes the second
    /// argument), `mov rdi, [ctx]` (first argument), `jmp [handler]`. At the
    /// handler's entry the stack is aligned as after a normal call, because
    /// the pad's `call` pushed one word and `pop` removed it again.
    pub(crate) fn pad_page(page: usize, ctx: u64, handler: u64) -> Vec<u8> {
        let mut ops = VecAssembler::<X64Relocation>::new(0);
        dynasm!(ops
            ; .arch x64
            ; ->trampoline:
            ; pop rsi
            ; mov rdi, QWORD [->ctx]
            ; jmp QWORD [->handler]
            ; .align 8, FILL
            ; ->ctx:
            ; .u64 ctx
            ; ->handler:
            ; .u64 handler
        );
        for _ in 0..page / STUB_SIZE {
            dynasm!(ops
                ; .arch x64
                ; call ->trampoline
                ; int3
            );
        }
        finish_page(ops.finalize().expect("x86-64 pad page labels resolve"), page, FILL)
    }

    fn to_array(bytes: Vec<u8>) -> [u8; STUB_SIZE] {
        bytes.try_into().expect("an x86-64 stub is 8 bytes")
    }

    fn finish_page(mut bytes: Vec<u8>, page: usize, fill: u8) -> Vec<u8> {
        assert!(bytes.len() <= page, "pad page overflows");
        debug_assert_eq!(bytes.len(), PAD_HEADER + page / STUB_SIZE * PAD_STRIDE);
        bytes.resize(page, fill);
        bytes
    }
}

/// AArch64 encodings.
#[cfg_attr(not(target_arch = "aarch64"), allow(dead_code))] // compiled on every host, for the tests
pub(crate) mod aarch64 {
    use super::{PAD_HEADER, STUB_SIZE};
    use dynasmrt::aarch64::Aarch64Relocation;
    use dynasmrt::{DynasmApi, DynasmLabelApi, VecAssembler, dynasm};

    /// Bytes per pad: one `bl`.
    pub(crate) const PAD_STRIDE: usize = 4;
    /// Length of the `bl` in a pad: its return address is `pad + CALL_LEN`.
    pub(crate) const CALL_LEN: usize = 4;

    /// One stub: `ldr x16, <slot>; br x16`, with the slot `slot_distance`
    /// bytes after the stub's first byte (a multiple of 4 within +-1 MiB).
    ///
    /// x16 (IP0) is the intra-procedure-call scratch register, so clobbering
    /// it between caller and callee is allowed by the AAPCS64, and `br x16`
    /// is a valid branch to a `bti c` landing pad.
    pub(crate) fn stub(slot_distance: i32) -> [u8; STUB_SIZE] {
        let mut ops = VecAssembler::<Aarch64Relocation>::new(0);
        dynasm!(ops
            ; .arch aarch64
            ; ldr x16, slot_distance
            ; br x16
        );
        ops.finalize().expect("AArch64 stub has no relocations").try_into().expect("an AArch64 stub is 8 bytes")
    }

    /// A full code page of stubs whose slots are one page further on.
    pub(crate) fn stub_page(page: usize) -> Vec<u8> {
        let one = stub(page as i32);
        one.iter().copied().cycle().take(page).collect()
    }

    /// A full pad page: the trampoline, then `page / STUB_SIZE` pads.
    ///
    /// Trampoline: `mov x1, x30` (the pad's return address, second
    /// argument), `ldr x0, <ctx>` (first argument), `ldr x16, <handler>`,
    /// `br x16`. Unused bytes are zero, which is `udf #0`.
    pub(crate) fn pad_page(page: usize, ctx: u64, handler: u64) -> Vec<u8> {
        let mut ops = VecAssembler::<Aarch64Relocation>::new(0);
        dynasm!(ops
            ; .arch aarch64
            ; ->trampoline:
            ; mov x1, x30
            ; ldr x0, ->ctx
            ; ldr x16, ->handler
            ; br x16
            ; .align 8
            ; ->ctx:
            ; .u64 ctx
            ; ->handler:
            ; .u64 handler
        );
        for _ in 0..page / STUB_SIZE {
            dynasm!(ops
                ; .arch aarch64
                ; bl ->trampoline
            );
        }
        let mut bytes = ops.finalize().expect("AArch64 pad page labels resolve");
        assert!(bytes.len() <= page, "pad page overflows");
        debug_assert_eq!(bytes.len(), PAD_HEADER + page / STUB_SIZE * PAD_STRIDE);
        bytes.resize(page, 0);
        bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use iced_x86::{Decoder, DecoderOptions, Formatter, Instruction, IntelFormatter, Mnemonic};

    fn decode_x86(bytes: &[u8], ip: u64) -> Vec<Instruction> {
        let mut decoder = Decoder::with_ip(64, bytes, ip, DecoderOptions::NONE);
        let mut out = Vec::new();
        while decoder.can_decode() {
            out.push(decoder.decode());
        }
        out
    }

    fn words(bytes: &[u8]) -> Vec<u32> {
        bytes.chunks_exact(4).map(|w| u32::from_le_bytes(w.try_into().unwrap())).collect()
    }

    // AArch64 encodings from the Arm ARM, computed without dynasm.
    fn a64_ldr_literal(rt: u32, offset: i32) -> u32 {
        assert_eq!(offset % 4, 0);
        0x5800_0000 | ((((offset / 4) as u32) & 0x7_FFFF) << 5) | rt
    }
    fn a64_br(rn: u32) -> u32 {
        0xD61F_0000 | (rn << 5)
    }
    fn a64_bl(offset: i32) -> u32 {
        0x9400_0000 | (((offset / 4) as u32) & 0x3FF_FFFF)
    }
    const A64_MOV_X1_X30: u32 = 0xAA1E_03E1; // orr x1, xzr, x30

    #[test]
    fn x86_64_stub_is_jmp_through_slot_exactly() {
        assert_eq!(x86_64::stub(4096), [0xFF, 0x25, 0xFA, 0x0F, 0x00, 0x00, 0xCC, 0xCC]);
        assert_eq!(x86_64::stub(16384), [0xFF, 0x25, 0xFA, 0x3F, 0x00, 0x00, 0xCC, 0xCC]);
        assert_eq!(x86_64::stub(-16), [0xFF, 0x25, 0xEA, 0xFF, 0xFF, 0xFF, 0xCC, 0xCC]);
    }

    #[test]
    fn x86_64_stub_decodes_to_memory_indirect_jump_at_the_slot() {
        let stub_addr = 0x1000_0000u64;
        let insns = decode_x86(&x86_64::stub(4096), stub_addr);
        assert_eq!(insns.len(), 3);
        let jmp = insns[0];
        assert_eq!(jmp.mnemonic(), Mnemonic::Jmp);
        assert_eq!(jmp.len(), 6);
        assert!(jmp.is_ip_rel_memory_operand());
        assert_eq!(jmp.ip_rel_memory_address(), stub_addr + 4096);
        let mut text = String::new();
        IntelFormatter::new().format(&jmp, &mut text);
        assert_eq!(text, "jmp qword ptr [10001000h]");
        assert!(insns[1..].iter().all(|i| i.mnemonic() == Mnemonic::Int3));
    }

    #[test]
    fn x86_64_stub_page_repeats_the_stub_and_every_stub_reaches_its_slot() {
        let page = 4096;
        let bytes = x86_64::stub_page(page);
        assert_eq!(bytes.len(), page);
        for (j, chunk) in bytes.chunks_exact(STUB_SIZE).enumerate() {
            let ip = (j * STUB_SIZE) as u64;
            let jmp = decode_x86(chunk, ip)[0];
            assert_eq!(jmp.ip_rel_memory_address(), ip + page as u64, "stub {j}");
        }
    }

    #[test]
    fn x86_64_pad_page_layout_is_exact() {
        let page = 4096;
        let ctx = 0x1122_3344_5566_7788u64;
        let handler = 0x99AA_BBCC_DDEE_FF00u64;
        let bytes = x86_64::pad_page(page, ctx, handler);
        assert_eq!(bytes.len(), page);
        // pop rsi; mov rdi, [rip+8]; jmp [rip+10]; int3 int3; ctx; handler
        let mut header = vec![0x5E, 0x48, 0x8B, 0x3D, 0x08, 0x00, 0x00, 0x00];
        header.extend([0xFF, 0x25, 0x0A, 0x00, 0x00, 0x00, 0xCC, 0xCC]);
        header.extend(ctx.to_le_bytes());
        header.extend(handler.to_le_bytes());
        assert_eq!(&bytes[..PAD_HEADER], &header[..]);
        // Every pad is `call trampoline; int3`.
        let pads = page / STUB_SIZE;
        for j in 0..pads {
            let at = PAD_HEADER + j * x86_64::PAD_STRIDE;
            let rel = -((at + x86_64::CALL_LEN) as i32);
            let mut expect = vec![0xE8];
            expect.extend(rel.to_le_bytes());
            expect.push(0xCC);
            assert_eq!(&bytes[at..at + x86_64::PAD_STRIDE], &expect[..], "pad {j}");
        }
        let end = PAD_HEADER + pads * x86_64::PAD_STRIDE;
        assert!(bytes[end..].iter().all(|&b| b == 0xCC));
        // And iced agrees on the meaning.
        let insns = decode_x86(&bytes[..14], 0);
        assert_eq!(insns[1].ip_rel_memory_address(), 16);
        assert_eq!(insns[2].ip_rel_memory_address(), 24);
        let call = decode_x86(&bytes[PAD_HEADER..PAD_HEADER + 5], PAD_HEADER as u64)[0];
        assert_eq!(call.mnemonic(), Mnemonic::Call);
        assert_eq!(call.near_branch_target(), 0);
    }

    #[test]
    fn aarch64_stub_is_ldr_literal_and_br_exactly() {
        assert_eq!(aarch64::stub(4096), [0x10, 0x80, 0x00, 0x58, 0x00, 0x02, 0x1F, 0xD6]);
        for distance in [4096, 16384, 65536, -8] {
            let w = words(&aarch64::stub(distance));
            assert_eq!(w, vec![a64_ldr_literal(16, distance), a64_br(16)], "distance {distance}");
        }
    }

    #[test]
    fn aarch64_stub_page_repeats_the_stub() {
        for page in [4096, 16384, 65536] {
            let bytes = aarch64::stub_page(page);
            assert_eq!(bytes.len(), page);
            let expect = [a64_ldr_literal(16, page as i32), a64_br(16)];
            for pair in words(&bytes).chunks_exact(2) {
                assert_eq!(pair, expect);
            }
        }
    }

    #[test]
    fn aarch64_pad_page_layout_is_exact() {
        let page = 16384;
        let ctx = 0x0102_0304_0506_0708u64;
        let handler = 0x1112_1314_1516_1718u64;
        let bytes = aarch64::pad_page(page, ctx, handler);
        assert_eq!(bytes.len(), page);
        let w = words(&bytes[..16]);
        assert_eq!(w, vec![A64_MOV_X1_X30, a64_ldr_literal(0, 12), a64_ldr_literal(16, 16), a64_br(16)]);
        assert_eq!(&bytes[16..24], &ctx.to_le_bytes());
        assert_eq!(&bytes[24..32], &handler.to_le_bytes());
        let pads = page / STUB_SIZE;
        for j in 0..pads {
            let at = PAD_HEADER + j * aarch64::PAD_STRIDE;
            let w = words(&bytes[at..at + 4])[0];
            assert_eq!(w, a64_bl(-(at as i32)), "pad {j}");
        }
        let end = PAD_HEADER + pads * aarch64::PAD_STRIDE;
        assert!(bytes[end..].iter().all(|&b| b == 0), "udf filler");
    }

    #[test]
    fn pads_fit_in_a_page_for_every_supported_page_size() {
        for page in [4096usize, 16384, 65536] {
            let pads = page / STUB_SIZE;
            assert!(PAD_HEADER + pads * x86_64::PAD_STRIDE <= page);
            assert!(PAD_HEADER + pads * aarch64::PAD_STRIDE <= page);
        }
    }
}
