//! What differs between the machines the runtime supports: the ELF machine
//! number, the relocation types the system loader handles for a shared
//! library, the default stack permission, extra program header types.
//!
//! Plain data, compiled on every host so that both tables are tested on any
//! of them; [`crate::arch`] picks the one of the running machine.

/// How the validator treats a relocation type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Reloc {
    /// Does nothing.
    None,
    /// Base address plus addend, 8 bytes.
    Relative,
    /// A symbol's address (plus addend), 8 bytes: absolute words, GOT
    /// entries, PLT slots.
    Symbol,
    /// A thread-local storage relocation writing `width` bytes.
    Tls { width: u64 },
    /// Calls a resolver function of the library during loading.
    Irelative,
    /// Copies a symbol's data: only meaningful in executables.
    Copy,
    /// Not a type the system loader handles in shared libraries.
    Unsupported,
}

/// A machine's relocation rules.
#[derive(Debug)]
pub(crate) struct Machine {
    /// `e_machine`.
    pub(crate) e_machine: u16,
    /// Relocation type to treatment.
    pub(crate) classify: fn(u32) -> Reloc,
    /// Relocation type to name, for messages.
    pub(crate) reloc_name: fn(u32) -> Option<&'static str>,
    /// Whether a library without `PT_GNU_STACK` makes the loader turn every
    /// thread's stack executable (glibc's `DEFAULT_STACK_PERMS`).
    pub(crate) stack_executable_by_default: bool,
    /// Processor-specific program header types the loader accepts.
    pub(crate) segment_types: &'static [u32],
}

/// x86-64 (`EM_X86_64`).
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
pub(crate) const X86_64: Machine = Machine {
    e_machine: 62,
    classify: x86_64_classify,
    reloc_name: x86_64_name,
    stack_executable_by_default: true,
    segment_types: &[],
};

/// AArch64 (`EM_AARCH64`).
#[cfg_attr(not(target_arch = "aarch64"), allow(dead_code))]
pub(crate) const AARCH64: Machine = Machine {
    e_machine: 183,
    classify: aarch64_classify,
    reloc_name: aarch64_name,
    stack_executable_by_default: false,
    // PT_AARCH64_MEMTAG_MTE.
    segment_types: &[0x7000_0002],
};

#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
fn x86_64_classify(r_type: u32) -> Reloc {
    match r_type {
        0 => Reloc::None,
        8 => Reloc::Relative,
        // R_X86_64_64, GLOB_DAT, JUMP_SLOT.
        1 | 6 | 7 => Reloc::Symbol,
        // DTPMOD64, DTPOFF64, TPOFF64.
        16..=18 => Reloc::Tls { width: 8 },
        // TLSDESC: a function pointer and its argument.
        36 => Reloc::Tls { width: 16 },
        37 => Reloc::Irelative,
        5 => Reloc::Copy,
        _ => Reloc::Unsupported,
    }
}

#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
fn x86_64_name(r_type: u32) -> Option<&'static str> {
    Some(match r_type {
        0 => "R_X86_64_NONE",
        1 => "R_X86_64_64",
        2 => "R_X86_64_PC32",
        5 => "R_X86_64_COPY",
        6 => "R_X86_64_GLOB_DAT",
        7 => "R_X86_64_JUMP_SLOT",
        8 => "R_X86_64_RELATIVE",
        10 => "R_X86_64_32",
        16 => "R_X86_64_DTPMOD64",
        17 => "R_X86_64_DTPOFF64",
        18 => "R_X86_64_TPOFF64",
        36 => "R_X86_64_TLSDESC",
        37 => "R_X86_64_IRELATIVE",
        38 => "R_X86_64_RELATIVE64",
        _ => return None,
    })
}

#[cfg_attr(not(target_arch = "aarch64"), allow(dead_code))]
fn aarch64_classify(r_type: u32) -> Reloc {
    match r_type {
        0 => Reloc::None,
        1027 => Reloc::Relative,
        // R_AARCH64_ABS64, GLOB_DAT, JUMP_SLOT.
        257 | 1025 | 1026 => Reloc::Symbol,
        // TLS_DTPMOD, TLS_DTPREL, TLS_TPREL.
        1028..=1030 => Reloc::Tls { width: 8 },
        1031 => Reloc::Tls { width: 16 },
        1032 => Reloc::Irelative,
        1024 => Reloc::Copy,
        _ => Reloc::Unsupported,
    }
}

#[cfg_attr(not(target_arch = "aarch64"), allow(dead_code))]
fn aarch64_name(r_type: u32) -> Option<&'static str> {
    Some(match r_type {
        0 => "R_AARCH64_NONE",
        257 => "R_AARCH64_ABS64",
        1024 => "R_AARCH64_COPY",
        1025 => "R_AARCH64_GLOB_DAT",
        1026 => "R_AARCH64_JUMP_SLOT",
        1027 => "R_AARCH64_RELATIVE",
        1028 => "R_AARCH64_TLS_DTPMOD",
        1029 => "R_AARCH64_TLS_DTPREL",
        1030 => "R_AARCH64_TLS_TPREL",
        1031 => "R_AARCH64_TLSDESC",
        1032 => "R_AARCH64_IRELATIVE",
        _ => return None,
    })
}

impl Machine {
    /// `R_X86_64_RELATIVE (8)` or `type 99`.
    pub(crate) fn describe(&self, r_type: u32) -> String {
        match (self.reloc_name)(r_type) {
            Some(name) => format!("{name} ({r_type})"),
            None => format!("type {r_type}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_and_symbol_relocations_are_accepted_on_both_machines() {
        assert_eq!((X86_64.classify)(8), Reloc::Relative);
        assert_eq!((AARCH64.classify)(1027), Reloc::Relative);
        for t in [1, 6, 7] {
            assert_eq!((X86_64.classify)(t), Reloc::Symbol, "{}", X86_64.describe(t));
        }
        for t in [257, 1025, 1026] {
            assert_eq!((AARCH64.classify)(t), Reloc::Symbol, "{}", AARCH64.describe(t));
        }
        assert_eq!((X86_64.classify)(36), Reloc::Tls { width: 16 });
        assert_eq!((AARCH64.classify)(1031), Reloc::Tls { width: 16 });
    }

    #[test]
    fn ifunc_copy_and_unknown_relocations_are_singled_out() {
        assert_eq!((X86_64.classify)(37), Reloc::Irelative);
        assert_eq!((AARCH64.classify)(1032), Reloc::Irelative);
        assert_eq!((X86_64.classify)(5), Reloc::Copy);
        assert_eq!((AARCH64.classify)(1024), Reloc::Copy);
        // Types another machine uses, 32-bit forms and garbage.
        for t in [2, 10, 38, 1027, 0xffff_ffff] {
            assert_eq!((X86_64.classify)(t), Reloc::Unsupported, "{t}");
        }
        for t in [1, 8, 258, 0x7fff] {
            assert_eq!((AARCH64.classify)(t), Reloc::Unsupported, "{t}");
        }
        assert_eq!(X86_64.describe(37), "R_X86_64_IRELATIVE (37)");
        assert_eq!(AARCH64.describe(9), "type 9");
    }
}
