//! What the checks before `dlopen` catch: one damaged structure at a time,
//! in a real module, each refused with a reason that names it, before the
//! system loader sees the file (each of these made glibc's loader fault or
//! abort the process, or would have).
#![cfg(target_os = "linux")]

mod support;

use hcr_runtime::Error;
use support::{PT_LOAD, Scratch, fixture, fn1, runtime, sole_failure};

const DT_NEEDED: u64 = 1;
const DT_HASH: u64 = 4;
const DT_STRSZ: u64 = 10;
const DT_SYMTAB: u64 = 6;
const DT_RELA: u64 = 7;
const DT_RELASZ: u64 = 8;
const DT_INIT_ARRAY: u64 = 25;
const DT_GNU_HASH: u64 = 0x6fff_fef5;
const DT_VERSYM: u64 = 0x6fff_fff0;
const DT_RELACOUNT: u64 = 0x6fff_fff9;
const DT_VERNEED: u64 = 0x6fff_fffe;
const PT_TLS: u32 = 7;
const PT_GNU_RELRO: u32 = 0x6474_e552;

#[cfg(target_arch = "x86_64")]
const R_RELATIVE: u64 = 8;
#[cfg(target_arch = "x86_64")]
const R_IRELATIVE: u64 = 37;
#[cfg(target_arch = "aarch64")]
const R_RELATIVE: u64 = 1027;
#[cfg(target_arch = "aarch64")]
const R_IRELATIVE: u64 = 1032;

fn read_u64(bytes: &[u8], at: usize) -> u64 {
    u64::from_ne_bytes(bytes[at..at + 8].try_into().unwrap())
}

fn dynamic(bytes: &[u8], tag: u64) -> Option<(usize, u64)> {
    support::dynamic_entries(bytes).into_iter().find(|(_, t, _)| *t == tag).map(|(at, _, value)| (at, value))
}

/// The file offset of the table that dynamic entry `tag` points at.
fn table(bytes: &[u8], tag: u64) -> usize {
    let (_, addr) = dynamic(bytes, tag).unwrap();
    support::file_offset(bytes, addr).unwrap()
}

/// The relocations of `DT_RELA`: (file offset, r_offset, r_info, r_addend).
fn relocations(bytes: &[u8]) -> Vec<(usize, u64, u64, u64)> {
    let start = table(bytes, DT_RELA);
    let size = dynamic(bytes, DT_RELASZ).unwrap().1 as usize;
    (start..start + size)
        .step_by(24)
        .map(|at| (at, read_u64(bytes, at), read_u64(bytes, at + 8), read_u64(bytes, at + 16)))
        .collect()
}

type Patch = fn(&mut Vec<u8>);

/// One damage per case, and what the refusal must say (one of `|`-separated
/// phrases: linkers order their headers differently).
fn cases() -> Vec<(&'static str, Patch, &'static str)> {
    vec![
        (
            "the type of program header 1",
            |b| {
                let at = support::phdrs(b)[1].at;
                support::put_u32(b, at, 0x4000_0001);
            },
            "does not know",
        ),
        (
            "a first loadable segment that is no longer one",
            |b| {
                let first = support::phdrs(b).into_iter().find(|p| p.p_type == PT_LOAD).unwrap();
                support::put_u32(b, first.at, 0);
            },
            "not inside|does not map",
        ),
        (
            "a segment alignment",
            |b| {
                let load = support::phdrs(b).into_iter().filter(|p| p.p_type == PT_LOAD).nth(1).unwrap();
                support::put_u64(b, load.at + 48, 0x1001);
            },
            "alignment",
        ),
        (
            "a segment past the end of the file",
            |b| {
                let load = support::phdrs(b).into_iter().filter(|p| p.p_type == PT_LOAD).nth(1).unwrap();
                support::put_u64(b, load.at + 32, load.filesz + (1 << 40));
            },
            "file size",
        ),
        ("the number of program headers", |b| b[56..58].copy_from_slice(&0xfff0u16.to_ne_bytes()), "program headers"),
        (
            "the thread-local template size",
            |b| {
                let tls = support::phdrs(b).into_iter().find(|p| p.p_type == PT_TLS).unwrap();
                support::put_u64(b, tls.at + 40, 1 << 40);
            },
            "per thread",
        ),
        (
            "the RELRO range",
            |b| {
                let relro = support::phdrs(b).into_iter().find(|p| p.p_type == PT_GNU_RELRO).unwrap();
                support::put_u64(b, relro.at + 16, 0x10);
            },
            "writable",
        ),
        (
            "the dynamic section's terminator",
            |b| {
                let dynamic = support::phdrs(b).into_iter().find(|p| p.p_type == support::PT_DYNAMIC).unwrap();
                let start = support::file_offset(b, dynamic.vaddr).unwrap();
                for at in (start..start + dynamic.filesz as usize).step_by(16) {
                    if read_u64(b, at) == 0 {
                        support::put_u64(b, at, 21); // DT_DEBUG
                    }
                }
            },
            "DT_NULL",
        ),
        (
            "a DT_NEEDED name",
            |b| {
                let (at, _) = dynamic(b, DT_NEEDED).unwrap();
                support::put_u64(b, at + 8, 1 << 30);
            },
            "outside the string table",
        ),
        (
            "the string table size",
            |b| {
                let (at, size) = dynamic(b, DT_STRSZ).unwrap();
                support::put_u64(b, at + 8, size - 1);
            },
            "NUL",
        ),
        (
            "a symbol name",
            |b| {
                let symtab = table(b, DT_SYMTAB);
                support::put_u32(b, symtab + 24, 0x7fff_ffff);
            },
            "name outside the string table",
        ),
        (
            "a hash bucket",
            |b| {
                if let Some((_, addr)) = dynamic(b, DT_GNU_HASH) {
                    let at = support::file_offset(b, addr).unwrap();
                    let words = u32::from_ne_bytes(b[at + 8..at + 12].try_into().unwrap()) as usize;
                    support::put_u32(b, at + 16 + words * 8, 0x00ff_ffff);
                } else {
                    let at = table(b, DT_HASH);
                    support::put_u32(b, at + 8, 0x00ff_ffff);
                }
            },
            "hash",
        ),
        (
            "a symbol's version index",
            |b| {
                let versym = table(b, DT_VERSYM);
                b[versym + 2..versym + 4].copy_from_slice(&0x7ff0u16.to_ne_bytes());
            },
            "version index",
        ),
        (
            "a version need link",
            |b| {
                if dynamic(b, DT_VERNEED).is_some() {
                    let verneed = table(b, DT_VERNEED);
                    support::put_u32(b, verneed + 12, 0x4000_0000);
                }
            },
            "version need",
        ),
        (
            "DT_RELACOUNT",
            |b| {
                let (at, count) = dynamic(b, DT_RELACOUNT).unwrap();
                support::put_u64(b, at + 8, count + 100_000);
            },
            "DT_RELACOUNT",
        ),
        (
            "the type of a relocation counted as relative",
            |b| {
                let (at, ..) = relocations(b)[0];
                support::put_u64(b, at + 8, 6 | (1 << 32));
            },
            "DT_RELACOUNT",
        ),
        (
            "a relocation's target",
            |b| {
                let (at, ..) = relocations(b)[0];
                support::put_u64(b, at, 0x10);
            },
            "outside the library's writable segments",
        ),
        (
            "a relative relocation's addend",
            |b| {
                let (at, ..) = relocations(b)[0];
                support::put_u64(b, at + 16, 1 << 40);
            },
            "outside the library",
        ),
        (
            "a relocation turned into an ifunc call",
            |b| {
                let (at, ..) = *relocations(b).last().unwrap();
                support::put_u64(b, at + 8, R_IRELATIVE);
                if let Some((count_at, count)) = dynamic(b, DT_RELACOUNT) {
                    let total = relocations(b).len() as u64;
                    if count == total {
                        support::put_u64(b, count_at + 8, total - 1);
                    }
                }
            },
            "ifunc",
        ),
        (
            "an init function pointer",
            |b| {
                let (_, init) = dynamic(b, DT_INIT_ARRAY).unwrap();
                let (at, ..) = *relocations(b)
                    .iter()
                    .find(|(_, offset, info, _)| *offset == init && info & 0xffff_ffff == R_RELATIVE)
                    .expect("init arrays are relocated");
                // Point it at the dynamic section: data, not code.
                let data = support::phdrs(b).into_iter().find(|p| p.p_type == support::PT_DYNAMIC).unwrap().vaddr;
                support::put_u64(b, at + 16, data);
            },
            "DT_INIT_ARRAY entry 0",
        ),
        (
            "an init function pointer moved into its function",
            |b| {
                // An init function the symbol table knows (it has unwind
                // information, as Rust functions do), entered 4 bytes in.
                use object::{Object, ObjectSymbol};
                let (_, init) = dynamic(b, DT_INIT_ARRAY).unwrap();
                let functions: Vec<u64> = object::File::parse(&b[..])
                    .unwrap()
                    .symbols()
                    .filter(|s| s.kind() == object::SymbolKind::Text && s.size() >= 8)
                    .map(|s| s.address())
                    .collect();
                let (at, ..) = *relocations(b)
                    .iter()
                    .find(|(_, offset, info, addend)| {
                        (init..init + 64).contains(offset)
                            && info & 0xffff_ffff == R_RELATIVE
                            && functions.contains(addend)
                    })
                    .expect("an init function with a symbol");
                let addend = read_u64(b, at + 16);
                support::put_u64(b, at + 16, addend + 4);
            },
            "from the middle",
        ),
    ]
}

#[test]
fn each_damaged_structure_is_refused_with_a_reason_that_names_it() {
    let s = Scratch::new("elf-checks");
    let original = std::fs::read(fixture("counter", &[])).unwrap();
    let rt = runtime();
    for (what, patch, expected) in cases() {
        let mut bytes = original.clone();
        patch(&mut bytes);
        assert_ne!(bytes, original, "{what}: the patch changed nothing");
        let path = s.install_bytes(&bytes, "counter");
        match rt.load(&path).map_err(sole_failure) {
            Err(Error::NotLoadable { reason, .. }) => {
                assert!(expected.split('|').any(|e| reason.contains(e)), "{what}: expected {expected:?} in: {reason}")
            }
            Err(other) => panic!("{what}: {other}"),
            Ok(_) => panic!("{what}: the damaged module was loaded"),
        }
        let stats = rt.stats();
        assert_eq!((stats.modules, stats.stubs_in_use), (0, 0), "{what}: nothing remains");
    }
    let path = s.install_bytes(&original, "counter");
    rt.load(&path).unwrap();
    assert_eq!(fn1(&rt, "counter", "answer")(1), 2);
}
