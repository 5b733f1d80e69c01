//! Behaviour that needs a process of its own: calls that must abort, the
//! default base address, and configuration from the environment.
//!
//! Each `child_*` test is ignored in normal runs; its parent test runs it in
//! a child process (through the target's cargo runner, e.g. qemu).

#![cfg(unix)]

mod support;

use std::os::unix::process::ExitStatusExt;

use hcr_runtime::{DEFAULT_STUB_BASE, Error, Runtime};
use support::{Scratch, fixture, fn0, is_child, run_child, runtime};

const SIGABRT: i32 = 6;

fn assert_aborted_with(out: &std::process::Output, message: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(message), "missing {message:?} in stderr:\n{stderr}");
    assert_eq!(out.status.signal(), Some(SIGABRT), "must abort, not crash: {:?}\n{stderr}", out.status);
    assert!(!stderr.contains("CHILD SURVIVED"), "{stderr}");
}

#[test]
#[ignore = "child process of a_call_to_a_removed_proc_aborts_with_its_name"]
fn child_calls_a_removed_proc() {
    if !is_child() {
        return;
    }
    let s = Scratch::new("child-removed");
    let path = s.install(&fixture("counter", &[]), "counter");
    let rt = runtime();
    rt.load(&path).unwrap();
    let only_v1 = fn0(&rt, "counter", "only_v1");
    assert_eq!(only_v1(), 7);
    s.install(&fixture("counter", &["v2"]), "counter");
    rt.perform_reload().unwrap();
    eprintln!("calling the removed proc");
    only_v1();
    eprintln!("CHILD SURVIVED");
}

#[test]
fn a_call_to_a_removed_proc_aborts_with_its_name() {
    fixture("counter", &[]);
    fixture("counter", &["v2"]);
    let out = run_child("child_calls_a_removed_proc", &[]);
    assert_aborted_with(&out, "hcr: call to unbound function counter::only_v1");
    assert!(String::from_utf8_lossy(&out.stderr).contains("calling the removed proc"));
}

#[test]
#[ignore = "child process of a_call_through_unbound_bindings_aborts_with_a_message"]
fn child_calls_through_unbound_bindings() {
    if !is_child() {
        return;
    }
    // What generated bindings hold for `game::update` before `Hcr::start`.
    static CELL: hcr_runtime::abi::ProcCell = hcr_runtime::abi::ProcCell::new("game", "update", 1, "extern \"C\" fn()");
    // SAFETY: an unbound cell's target takes nothing and never returns.
    let update: extern "C" fn() = unsafe { std::mem::transmute(CELL.target()) };
    eprintln!("calling through unbound bindings");
    update();
    eprintln!("CHILD SURVIVED");
}

#[test]
fn a_call_through_unbound_bindings_aborts_with_a_message() {
    let out = run_child("child_calls_through_unbound_bindings", &[]);
    assert_aborted_with(&out, "hcr: a proc was called through bindings that are not bound yet");
    assert!(String::from_utf8_lossy(&out.stderr).contains("calling through unbound bindings"));
}

#[test]
#[ignore = "child process of a_call_to_a_never_registered_proc_aborts_with_its_name"]
fn child_calls_a_pending_proc() {
    if !is_child() {
        return;
    }
    let rt = runtime();
    let proc = rt.get_proc("game", "update").unwrap();
    // SAFETY: deliberately calling an unbound stub; it aborts.
    let f: extern "C" fn() = unsafe { proc.cast() };
    f();
    eprintln!("CHILD SURVIVED");
}

#[test]
fn a_call_to_a_never_registered_proc_aborts_with_its_name() {
    let out = run_child("child_calls_a_pending_proc", &[]);
    assert_aborted_with(&out, "hcr: call to unbound function game::update");
}

#[test]
#[ignore = "child process of the_default_table_lands_next_to_the_libraries"]
fn child_reports_its_stub_base() {
    if !is_child() {
        return;
    }
    if let Ok(config) = hcr_runtime::Config::from_env() {
        println!("SETTLE {} ms, WATCH {}", config.settle_time.as_millis(), config.watch_files);
    }
    match Runtime::new() {
        Ok(rt) => {
            println!("STUB BASE {:#x}", rt.stub_region().start);
            println!("LIBC {:#x}", libc::getpid as *const () as usize);
        }
        Err(e) => println!("RUNTIME ERROR {e}"),
    }
}

fn child_output(envs: &[(&str, &str)]) -> String {
    let out = run_child("child_reports_its_stub_base", envs);
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn the_default_table_lands_next_to_the_libraries() {
    assert_eq!(DEFAULT_STUB_BASE, 0, "the system chooses by default");
    let stdout = child_output(&[]);
    let field = |name: &str| {
        let line = stdout.lines().find_map(|l| l.strip_prefix(name)).unwrap_or_else(|| panic!("no {name}: {stdout}"));
        usize::from_str_radix(line.trim().trim_start_matches("0x"), 16).unwrap()
    };
    let (base, libc) = (field("STUB BASE "), field("LIBC "));
    // A stub's jump to code this close costs no more than one next to it
    // (on x86-64, AMD Zen 4: the same up to 16 GiB, more 256 GiB away).
    assert!(base.abs_diff(libc) < 4 << 30, "stub table at {base:#x}, the C library's code at {libc:#x}");
}

#[test]
fn the_environment_overrides_base_and_capacity() {
    let stdout = child_output(&[("HCR_STUB_BASE", "0x20000000"), ("HCR_STUB_CAPACITY", "1000")]);
    assert!(stdout.contains("STUB BASE 0x20000000"), "{stdout}");
    let stdout = child_output(&[("HCR_STUB_CAPACITY", "lots")]);
    assert!(stdout.contains("RUNTIME ERROR invalid configuration HCR_STUB_CAPACITY = \"lots\""), "{stdout}");
    let stdout = child_output(&[("HCR_STUB_CAPACITY", "0")]);
    assert!(stdout.contains("RUNTIME ERROR invalid configuration HCR_STUB_CAPACITY"), "{stdout}");
}

#[test]
fn the_environment_sets_watching_and_the_settle_time() {
    let stdout = child_output(&[]);
    assert!(stdout.contains("SETTLE 30 ms, WATCH false"), "{stdout}");
    let stdout = child_output(&[("HCR_SETTLE_MS", "250"), ("HCR_WATCH", "on")]);
    assert!(stdout.contains("SETTLE 250 ms, WATCH true"), "{stdout}");
    let stdout = child_output(&[("HCR_SETTLE_MS", "soon")]);
    assert!(stdout.contains("RUNTIME ERROR invalid configuration HCR_SETTLE_MS = \"soon\""), "{stdout}");
    let stdout = child_output(&[("HCR_SETTLE_MS", "10001")]);
    assert!(stdout.contains("RUNTIME ERROR invalid configuration HCR_SETTLE_MS"), "{stdout}");
}

#[test]
fn an_invalid_environment_value_is_a_typed_error() {
    // Checked in-process through the public type as well: `from_env` is what
    // `Runtime::new` uses, and with no variables set it succeeds.
    if std::env::var_os("HCR_STUB_BASE").is_none() && std::env::var_os("HCR_STUB_CAPACITY").is_none() {
        assert!(hcr_runtime::Config::from_env().is_ok());
    }
    let err = Runtime::with_config(hcr_runtime::Config::new().with_stub_capacity(0)).unwrap_err();
    assert!(matches!(err, Error::InvalidConfig { name: "stub_capacity", .. }), "{err}");
}
