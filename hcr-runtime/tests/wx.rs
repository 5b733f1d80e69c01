//! W^X holds for modules too: a library with a writable and executable
//! segment, one that asks for an executable stack, or one with text
//! relocations is refused before the system loader sees it, unless the host
//! opts out.
#![cfg(target_os = "linux")]

mod support;

use std::path::Path;

use hcr_runtime::{Config, Error, Runtime};
use support::{PF_W, PF_X, PT_GNU_STACK, PT_LOAD, Scratch, fixture, fn1, is_child, run_child, runtime, sole_failure};

/// The counter fixture with its last writable segment (the one that is
/// not made read-only after relocation) made executable too.
fn rwx_segment() -> (Vec<u8>, usize) {
    let mut bytes = std::fs::read(fixture("counter", &[])).unwrap();
    let (index, ph) = support::phdrs(&bytes)
        .into_iter()
        .enumerate()
        .rfind(|(_, p)| p.p_type == PT_LOAD && p.flags & PF_W != 0)
        .unwrap();
    support::put_u32(&mut bytes, ph.at + 4, ph.flags | PF_X);
    (bytes, index)
}

/// The counter fixture asking for an executable stack.
fn executable_stack() -> Vec<u8> {
    let mut bytes = std::fs::read(fixture("counter", &[])).unwrap();
    let ph = support::phdrs(&bytes).into_iter().find(|p| p.p_type == PT_GNU_STACK).unwrap();
    support::put_u32(&mut bytes, ph.at + 4, ph.flags | PF_X);
    bytes
}

/// The counter fixture without a `PT_GNU_STACK` (turned into `PT_NULL`).
fn no_stack_header() -> Vec<u8> {
    let mut bytes = std::fs::read(fixture("counter", &[])).unwrap();
    let ph = support::phdrs(&bytes).into_iter().find(|p| p.p_type == PT_GNU_STACK).unwrap();
    support::put_u32(&mut bytes, ph.at, 0);
    bytes
}

/// The counter fixture with `DF_TEXTREL` added to its `DT_FLAGS`.
fn text_relocations() -> Vec<u8> {
    const DT_FLAGS: u64 = 30;
    const DF_TEXTREL: u64 = 4;
    let mut bytes = std::fs::read(fixture("counter", &[])).unwrap();
    let (at, _, flags) = support::dynamic_entries(&bytes)
        .into_iter()
        .find(|(_, tag, _)| *tag == DT_FLAGS)
        .expect("the fixture has DT_FLAGS (rustc links with -z now)");
    support::put_u64(&mut bytes, at + 8, flags | DF_TEXTREL);
    bytes
}

/// The mappings of this process that are writable and executable, and
/// whether the stack of a new thread is executable.
fn wx_state() -> (Vec<String>, bool) {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    let rwx = maps
        .lines()
        .filter(|l| l.split_whitespace().nth(1).is_some_and(|p| p.contains('w') && p.contains('x')))
        .map(str::to_owned)
        .collect();
    let stack_executable = std::thread::spawn(move || {
        let local = 0u8;
        let addr = &local as *const u8 as usize;
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
        maps.lines()
            .find(|l| {
                let range = l.split_whitespace().next().unwrap();
                let (lo, hi) = range.split_once('-').unwrap();
                let (lo, hi) = (usize::from_str_radix(lo, 16).unwrap(), usize::from_str_radix(hi, 16).unwrap());
                (lo..hi).contains(&addr)
            })
            .map(|l| l.split_whitespace().nth(1).unwrap().contains('x'))
            .expect("the thread's stack is mapped")
    })
    .join()
    .unwrap();
    (rwx, stack_executable)
}

fn assert_wx_intact() {
    let (rwx, stack_executable) = wx_state();
    assert!(rwx.is_empty(), "writable and executable mappings: {rwx:#?}");
    assert!(!stack_executable, "a thread stack is executable");
}

fn expect_refused(rt: &Runtime, s: &Scratch, bytes: &[u8], expected: &str) {
    let path = s.install_bytes(bytes, "counter");
    match sole_failure(rt.load(&path).unwrap_err()) {
        Error::WritableCode { reason, .. } => assert!(reason.contains(expected), "{reason}"),
        other => panic!("expected WritableCode ({expected}): {other}"),
    }
    assert_eq!(rt.stats().modules, 0);
    assert_wx_intact();
}

#[test]
fn writable_code_and_executable_stacks_are_refused_before_loading() {
    let s = Scratch::new("wx");
    let rt = runtime();
    let (bytes, index) = rwx_segment();
    expect_refused(&rt, &s, &bytes, &format!("program header {index} (PT_LOAD)"));
    let err = rt.load(s.module_path("counter")).unwrap_err();
    assert!(err.to_string().contains("writable and executable"), "{err}");
    assert!(err.to_string().contains("allow_writable_code"), "the message says how to opt out: {err}");
    expect_refused(&rt, &s, &executable_stack(), "executable stack");
    expect_refused(&rt, &s, &text_relocations(), "DF_TEXTREL");
    if cfg!(target_arch = "x86_64") {
        // No PT_GNU_STACK means an executable stack to glibc on x86-64.
        expect_refused(&rt, &s, &no_stack_header(), "no PT_GNU_STACK");
    } else {
        // AArch64 defaults to a non-executable one.
        let path = s.install_bytes(&no_stack_header(), "counter");
        rt.load(&path).unwrap();
        rt.unload("counter").unwrap();
    }

    // The module as built loads, and nothing is writable and executable.
    let path = s.install(&fixture("counter", &[]), "counter");
    rt.load(&path).unwrap();
    assert_eq!(fn1(&rt, "counter", "answer")(1), 2);
    assert_wx_intact();
}

#[test]
fn the_opt_out_loads_writable_code() {
    // In a child: what the opt-out allows cannot be undone in a process.
    let out = run_child("child_loads_writable_code", &[("HCR_ALLOW_WRITABLE_CODE", "1")]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("rwx mapping of the module copy"), "{stdout}");
}

#[test]
#[ignore = "run by the_opt_out_loads_writable_code in a child process"]
fn child_loads_writable_code() {
    if !is_child() {
        return;
    }
    let s = Scratch::new("wx-child");
    let (bytes, _) = rwx_segment();
    let path = s.install_bytes(&bytes, "counter");
    let config = Config::from_env().unwrap().with_stub_base(0);
    assert!(config.allow_writable_code, "HCR_ALLOW_WRITABLE_CODE=1 sets it");
    let rt = Runtime::with_config(config).unwrap();
    rt.load(&path).unwrap();
    assert_eq!(fn1(&rt, "counter", "answer")(1), 2);
    let dir = rt.private_dir();
    let (rwx, _) = wx_state();
    assert!(rwx.iter().any(|l| Path::new(l.split_whitespace().last().unwrap()).starts_with(&dir)), "{rwx:#?}");
    println!("rwx mapping of the module copy");
}
