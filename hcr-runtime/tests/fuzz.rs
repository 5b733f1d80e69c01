//! Hostile module files: deterministic single-byte mutations of a real
//! module (half of them in its first 8 KiB, where the headers and the
//! tables the system loader trusts are), loaded and reloaded in child
//! processes. No mutation may crash the host inside the system loader, and a
//! refused reload must leave the old code and its state running.
//!
//! One child runs attempts one after another and reports each before and
//! after it; when a child dies, the parent classifies the death and starts a
//! new child from the next attempt. A crash handler in the child reports the
//! signal and which object the faulting instruction is in:
//!
//! * with a frame of the module's copy on the stack, or the faulting
//!   instruction in it or in no object at all: the module's own (mutated)
//!   code crashed or jumped astray, in a constructor or its init, or called
//!   the runtime or libc with what it corrupted; outside the target,
//!   counted separately;
//! * otherwise in the dynamic loader or libc, or glibc's `Inconsistency
//!   detected by ld.so` (exit 127): a loader crash, which the checks must
//!   prevent;
//! * anywhere else (the runtime, the test): a host crash.
//!
//! The short campaigns run in `cargo test`; the full ones (2,500 attempts
//! each, the figures in `docs/safety.md`) are `#[ignore]`d:
//!
//! ```sh
//! cargo test -p hcr-runtime --test fuzz -- --ignored full_ --nocapture
//! ```
#![cfg(target_os = "linux")]

mod support;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use hcr_runtime::{Config, Error, Runtime};
use support::{PT_LOAD, PT_NOTE, Scratch, fixture, fn0, fn1, is_child, spawn_child};

/// The seed of every campaign.
const SEED: u64 = 0x6863_725f_656c_6631;
/// Attempts of the campaigns that run in `cargo test`.
const SHORT: usize = 100;
/// Attempts of the full campaigns.
const FULL: usize = 2500;
/// Longest an attempt may take before the child counts as hung.
const HANG: Duration = Duration::from_secs(60);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Load,
    Reload,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Load => "load",
            Mode::Reload => "reload",
        }
    }
}

/// splitmix64: one independent stream per attempt.
fn random(seed: u64, n: u64) -> u64 {
    let mut z = seed.wrapping_add(n.wrapping_add(1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Attempt `i`'s mutation: the offset and the byte written there (never the
/// byte that was there). Even attempts hit the first 8 KiB.
fn mutation(mode: Mode, original: &[u8], i: usize) -> (usize, u8) {
    let seed = SEED ^ mode as u64;
    let r = random(seed, i as u64);
    let span = if i.is_multiple_of(2) { original.len().min(8192) } else { original.len() };
    let offset = (r % span as u64) as usize;
    let flip = 1 + ((r >> 32) % 255) as u8;
    (offset, original[offset] ^ flip)
}

/// The file offsets of the original's loadable bytes: a mutation elsewhere
/// (debug information, section headers) changes nothing that is mapped.
fn loaded_ranges(original: &[u8]) -> Vec<std::ops::Range<usize>> {
    support::phdrs(original)
        .into_iter()
        .filter(|p| p.p_type == PT_LOAD)
        .map(|p| p.offset as usize..(p.offset + p.filesz) as usize)
        .collect()
}

/// The file offsets of the original's build id bytes.
fn build_id_range(original: &[u8]) -> std::ops::Range<usize> {
    for note in support::phdrs(original).into_iter().filter(|p| p.p_type == PT_NOTE) {
        let mut at = note.offset as usize;
        let end = at + note.filesz as usize;
        while at + 12 <= end {
            let word = |o: usize| u32::from_ne_bytes(original[o..o + 4].try_into().unwrap()) as usize;
            let (namesz, descsz, kind) = (word(at), word(at + 4), word(at + 8));
            let desc = at + 12 + namesz.next_multiple_of(4);
            if kind == 3 && &original[at + 12..at + 12 + namesz] == b"GNU\0" {
                return desc..desc + descsz;
            }
            at = desc + descsz.next_multiple_of(4);
        }
    }
    panic!("the fixture has no build id");
}

/// How an attempt ended.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Outcome {
    /// The runtime refused the file with a typed error (its kind).
    Refused(String),
    /// The mutated module loaded (and its code ran).
    Loaded,
    /// The system loader crashed (signal in ld.so or libc, or its
    /// assertion).
    LoaderCrash(String),
    /// The module's own code crashed.
    ModuleCrash(String),
    /// The process crashed elsewhere, or died otherwise.
    HostCrash(String),
    /// A refused reload did not leave the old code and state intact.
    Corrupted(String),
    /// The attempt did not finish in time.
    Hang,
}

impl Outcome {
    fn category(&self) -> &'static str {
        match self {
            Outcome::Refused(_) => "refused",
            Outcome::Loaded => "loaded",
            Outcome::LoaderCrash(_) => "loader crash",
            Outcome::ModuleCrash(_) => "module-code crash",
            Outcome::HostCrash(_) => "host crash",
            Outcome::Corrupted(_) => "state lost",
            Outcome::Hang => "hang",
        }
    }
}

/// Runs attempts `0..count` of a campaign and returns each outcome.
fn campaign(mode: Mode, count: usize) -> Vec<(usize, Outcome)> {
    let s = Scratch::new(&format!("fuzz-{}", mode.name()));
    let module = fixture("counter", &[]);
    let original = std::fs::read(&module).unwrap();
    let mut outcomes: Vec<(usize, Outcome)> = Vec::with_capacity(count);
    let mut next = 0;
    while next < count {
        let (from, to) = (next.to_string(), count.to_string());
        let mut child = spawn_child(
            "fuzz_child",
            &[
                ("HCR_FUZZ_MODE", mode.name()),
                ("HCR_FUZZ_FROM", &from),
                ("HCR_FUZZ_TO", &to),
                ("HCR_FUZZ_MODULE", module.to_str().unwrap()),
                ("HCR_FUZZ_DIR", s.dir.to_str().unwrap()),
            ],
        );
        let stderr = {
            let mut pipe = child.stderr.take().unwrap();
            std::thread::spawn(move || {
                let mut text = String::new();
                let _ = pipe.read_to_string(&mut text);
                text
            })
        };
        let (tx, rx) = mpsc::channel();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        std::thread::spawn(move || {
            for line in stdout.lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut current = None;
        let mut crash = None;
        let mut module_frame = false;
        let mut last = Instant::now();
        let mut hung = false;
        loop {
            match rx.recv_timeout(Duration::from_millis(200)) {
                Ok(line) => {
                    let mut words = line.splitn(3, ' ');
                    let (word, n, rest) = (words.next(), words.next(), words.next().unwrap_or(""));
                    let n: Option<usize> = n.and_then(|n| n.parse().ok());
                    match (word, n) {
                        (Some("try"), Some(i)) => {
                            current = Some(i);
                            last = Instant::now();
                        }
                        (Some("refused"), Some(i)) => outcomes.push((i, Outcome::Refused(rest.to_owned()))),
                        (Some("loaded"), Some(i)) => outcomes.push((i, Outcome::Loaded)),
                        (Some("corrupted"), Some(i)) => outcomes.push((i, Outcome::Corrupted(rest.to_owned()))),
                        (Some("crash"), _) => crash = Some(line.clone()),
                        (Some("frames"), _) => module_frame = true,
                        _ => {}
                    }
                    if outcomes.last().is_some_and(|(i, _)| Some(*i) == current) {
                        current = None;
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    if current.is_some() && last.elapsed() > HANG {
                        let _ = child.kill();
                        hung = true;
                    }
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        let status = child.wait().unwrap();
        let stderr = stderr.join().unwrap();
        let resume = outcomes.iter().map(|(i, _)| i + 1).max().unwrap_or(next).max(next);
        match current {
            Some(i) => {
                let outcome =
                    if hung { Outcome::Hang } else { classify(crash.as_deref(), module_frame, &status, &stderr) };
                outcomes.push((i, outcome));
                next = i + 1;
            }
            None if status.success() => next = resume,
            None => panic!("the fuzzing child failed between attempts ({status}):\n{stderr}"),
        }
    }
    outcomes.sort();
    outcomes.dedup_by_key(|(i, _)| *i);
    assert_eq!(outcomes.len(), count, "every attempt has an outcome");
    let mut report = String::new();
    for (i, outcome) in &outcomes {
        if !matches!(outcome, Outcome::Refused(_) | Outcome::Loaded) {
            let (offset, byte) = mutation(mode, &original, *i);
            report.push_str(&format!("  attempt {i}: byte {offset:#x} -> {byte:#04x}: {outcome:?}\n"));
        }
    }
    let mut tally: BTreeMap<&str, usize> = BTreeMap::new();
    for (_, outcome) in &outcomes {
        *tally.entry(outcome.category()).or_default() += 1;
    }
    println!("{} campaign, {count} attempts (seed {SEED:#x}): {tally:?}\n{report}", mode.name());
    outcomes
}

/// What a child's death means.
fn classify(crash: Option<&str>, module_frame: bool, status: &std::process::ExitStatus, stderr: &str) -> Outcome {
    use std::os::unix::process::ExitStatusExt;
    if status.code() == Some(127) && stderr.contains("Inconsistency detected by ld.so") {
        let line = stderr.lines().find(|l| l.contains("Inconsistency")).unwrap_or_default();
        return Outcome::LoaderCrash(line.to_owned());
    }
    if let Some(line) = crash {
        // "crash <signal> <pc> <object> [<symbol>+<offset>]"
        let object = line.split(' ').nth(3).unwrap_or("?");
        let file = Path::new(object).file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
        if module_frame {
            return Outcome::ModuleCrash(format!("{line} (called from the module)"));
        }
        if file.ends_with("-libcounter.so") {
            return Outcome::ModuleCrash(line.to_owned());
        }
        if object == "?" {
            // The PC is in no object: a jump through a pointer the mutated
            // module produced.
            return Outcome::ModuleCrash(line.to_owned());
        }
        if file.starts_with("ld-linux") || file.starts_with("ld-") || file.starts_with("libc.so") {
            return Outcome::LoaderCrash(line.to_owned());
        }
        return Outcome::HostCrash(line.to_owned());
    }
    Outcome::HostCrash(format!("{status} (signal {:?}): {}", status.signal(), stderr.lines().last().unwrap_or("")))
}

fn check(mode: Mode, count: usize) {
    let outcomes = campaign(mode, count);
    let bad: Vec<_> = outcomes
        .iter()
        .filter(|(_, o)| {
            matches!(o, Outcome::LoaderCrash(_) | Outcome::HostCrash(_) | Outcome::Corrupted(_) | Outcome::Hang)
        })
        .collect();
    assert!(bad.is_empty(), "{} of {count} {} attempts failed the host: {bad:#?}", bad.len(), mode.name());
    // Most mutations in the first 8 KiB hit something the checks refuse.
    assert!(outcomes.iter().any(|(_, o)| matches!(o, Outcome::Refused(_))), "nothing was refused");
    assert!(outcomes.iter().any(|(_, o)| *o == Outcome::Loaded), "nothing loaded");
}

#[test]
fn mutated_modules_never_crash_the_loader_on_load() {
    check(Mode::Load, SHORT);
}

#[test]
fn mutated_modules_never_crash_the_loader_on_reload() {
    check(Mode::Reload, SHORT);
}

#[test]
#[ignore = "2,500 attempts: minutes"]
fn full_load_campaign() {
    check(Mode::Load, FULL);
}

#[test]
#[ignore = "2,500 attempts: minutes"]
fn full_reload_campaign() {
    check(Mode::Reload, FULL);
}

#[test]
#[ignore = "run by the campaigns in a child process"]
fn fuzz_child() {
    if !is_child() {
        return;
    }
    crash_report::install();
    let mode = if std::env::var("HCR_FUZZ_MODE").unwrap() == "load" { Mode::Load } else { Mode::Reload };
    let from: usize = std::env::var("HCR_FUZZ_FROM").unwrap().parse().unwrap();
    let to: usize = std::env::var("HCR_FUZZ_TO").unwrap().parse().unwrap();
    let original = std::fs::read(std::env::var("HCR_FUZZ_MODULE").unwrap()).unwrap();
    let dir = PathBuf::from(std::env::var("HCR_FUZZ_DIR").unwrap());
    let loaded = loaded_ranges(&original);
    let build_id = build_id_range(&original);
    let path = dir.join(format!("{}counter{}", std::env::consts::DLL_PREFIX, std::env::consts::DLL_SUFFIX));
    let install = |bytes: &[u8]| {
        let tmp = dir.join(".partial");
        std::fs::write(&tmp, bytes).unwrap();
        std::fs::rename(&tmp, &path).unwrap();
    };
    let config = Config::new()
        .with_stub_base(0)
        .with_stub_capacity(4096)
        .with_settle_time(Duration::ZERO)
        .with_private_dir_parent(&dir);
    let rt = Runtime::with_config(config).unwrap();
    let say = |line: String| {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        out.write_all(format!("{line}\n").as_bytes()).unwrap();
        out.flush().unwrap();
    };
    // End libtest's "test fuzz_child ... " line.
    say(String::new());
    let kind = |e: &Error| {
        let first = e.failures()[0];
        let name = format!("{first:?}");
        name.split([' ', '{', '(']).next().unwrap_or_default().to_owned()
    };

    // Reload campaigns start from the module as built, with some state.
    let mut answer = None;
    if mode == Mode::Reload {
        install(&original);
        rt.load(&path).unwrap();
        let bump = fn0(&rt, "counter", "bump");
        for _ in 0..3 {
            bump();
        }
        answer = Some((fn1(&rt, "counter", "answer"), fn0(&rt, "counter", "count")));
    }

    for i in from..to {
        let (offset, byte) = mutation(mode, &original, i);
        let mut bytes = original.clone();
        bytes[offset] = byte;
        if mode == Mode::Reload && !build_id.contains(&offset) {
            // A new build has a new build id: without one, the runtime
            // would see the same build and not reload at all.
            bytes[build_id.end - 1] ^= 0x5a;
        }
        install(&bytes);
        say(format!("try {i}"));
        let mapped = loaded.iter().any(|r| r.contains(&offset));
        match mode {
            Mode::Load => match rt.load(&path) {
                Err(e) => say(format!("refused {i} {}", kind(&e))),
                Ok(_) => {
                    say(format!("loaded {i}"));
                    if mapped {
                        // Mutated code ran: start afresh.
                        exit_now();
                    }
                    rt.unload("counter").unwrap();
                }
            },
            Mode::Reload => {
                let (answer, count) = answer.unwrap();
                match rt.perform_reload() {
                    Err(e) => {
                        if answer(1) != 2 || count() != 3 {
                            say(format!("corrupted {i} answer {} count {}", answer(1), count()));
                            exit_now();
                        }
                        say(format!("refused {i} {}", kind(&e)));
                    }
                    Ok(report) if report.reloaded.is_empty() => {
                        say(format!("corrupted {i} the new build was not seen"));
                        exit_now();
                    }
                    Ok(_) => {
                        say(format!("loaded {i}"));
                        if mapped {
                            exit_now();
                        }
                        // Back to the module as built, for the next attempt.
                        install(&original);
                        rt.perform_reload().unwrap();
                        assert_eq!((answer(1), count()), (2, 3));
                    }
                }
            }
        }
    }
}

/// Ends the child at once, without running the finalisers of libraries
/// whose mutated code ran (the parent starts a new child).
fn exit_now() -> ! {
    // SAFETY: ends the process; everything the parent needs was flushed.
    unsafe { libc::_exit(0) }
}

/// Reports a fatal signal, and the object the faulting instruction is in,
/// on stdout before the process dies.
mod crash_report {
    use std::ffi::{CStr, c_int, c_void};
    use std::fmt::Write;

    /// Formats into a fixed buffer: no allocation in the handler.
    struct Buf {
        bytes: [u8; 1024],
        len: usize,
    }

    impl Write for Buf {
        fn write_str(&mut self, s: &str) -> std::fmt::Result {
            let n = s.len().min(self.bytes.len() - self.len);
            self.bytes[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
            self.len += n;
            Ok(())
        }
    }

    /// The object holding `addr`, if any, and the nearest exported symbol
    /// before it with the distance from it.
    fn lookup(addr: usize) -> Option<(&'static CStr, Option<(&'static CStr, usize)>)> {
        // SAFETY: plain data; zeroes are a valid start.
        let mut info: libc::Dl_info = unsafe { std::mem::zeroed() };
        // SAFETY: dladdr only reads the loader's tables (the process is
        // dying anyway).
        let found = unsafe { libc::dladdr(addr as *const c_void, &mut info) } != 0 && !info.dli_fname.is_null();
        if !found {
            return None;
        }
        // SAFETY: NUL-terminated strings owned by the loader, which live as
        // long as the object is loaded.
        let object = unsafe { CStr::from_ptr(info.dli_fname) };
        let symbol = (!info.dli_sname.is_null())
            // SAFETY: as above.
            .then(|| (unsafe { CStr::from_ptr(info.dli_sname) }, addr.wrapping_sub(info.dli_saddr as usize)));
        Some((object, symbol))
    }

    fn object_of(addr: usize) -> Option<&'static CStr> {
        lookup(addr).map(|(object, _)| object)
    }

    type TraceFn = extern "C" fn(ctx: *mut c_void, arg: *mut c_void) -> c_int;
    unsafe extern "C" {
        fn _Unwind_Backtrace(trace: TraceFn, arg: *mut c_void) -> c_int;
        fn _Unwind_GetIP(ctx: *mut c_void) -> usize;
    }

    /// Notes whether a frame of the module's copy is on the stack.
    extern "C" fn visit(ctx: *mut c_void, arg: *mut c_void) -> c_int {
        // SAFETY: `arg` is the state passed below, alive for the walk.
        let (found, frames) = unsafe { &mut *arg.cast::<(bool, u32)>() };
        // SAFETY: `ctx` is the unwinder's context for the current frame.
        let ip = unsafe { _Unwind_GetIP(ctx) };
        *frames += 1;
        if ip > 1 && object_of(ip - 1).is_some_and(|o| o.to_bytes().ends_with(b"-libcounter.so")) {
            *found = true;
        }
        // _URC_NORMAL_STOP once found, or after enough frames.
        if *found || *frames > 256 { 4 } else { 0 }
    }

    fn pc_of(ctx: *mut c_void) -> usize {
        let uc = ctx.cast::<libc::ucontext_t>();
        // SAFETY: the kernel passes the interrupted context to a SA_SIGINFO
        // handler.
        #[cfg(target_arch = "x86_64")]
        return unsafe { (*uc).uc_mcontext.gregs[libc::REG_RIP as usize] as usize };
        // SAFETY: as above.
        #[cfg(target_arch = "aarch64")]
        return unsafe { (*uc).uc_mcontext.pc as usize };
    }

    extern "C" fn handler(sig: c_int, _info: *mut libc::siginfo_t, ctx: *mut c_void) {
        let pc = pc_of(ctx);
        let mut buf = Buf { bytes: [0; 1024], len: 0 };
        let _ = write!(buf, "crash {sig} {pc:#x} ");
        let text = |s: &'static CStr| std::str::from_utf8(s.to_bytes()).unwrap_or("?");
        match lookup(pc) {
            Some((object, Some((symbol, offset)))) => {
                let _ = write!(buf, "{} {}+{offset:#x}", text(object), text(symbol));
            }
            Some((object, None)) => {
                let _ = buf.write_str(text(object));
            }
            None => {
                let _ = buf.write_str("?");
            }
        }
        let _ = buf.write_str("\n");
        // SAFETY: writes our own buffer to stdout.
        unsafe { libc::write(1, buf.bytes.as_ptr().cast(), buf.len) };
        // Then whether module code is on the stack (walking a damaged stack
        // may fault again: that ends the process, with the line above
        // already written).
        let mut state = (false, 0u32);
        // SAFETY: `visit` only touches `state` and the unwinder's context.
        unsafe { _Unwind_Backtrace(visit, (&mut state as *mut (bool, u32)).cast()) };
        if state.0 {
            let line = b"frames module\n";
            // SAFETY: writes a static buffer to stdout.
            unsafe { libc::write(1, line.as_ptr().cast(), line.len()) };
        }
        // SAFETY: the default action of the signal ends the process once
        // this handler returns.
        unsafe {
            libc::signal(sig, libc::SIG_DFL);
            libc::raise(sig);
        }
    }

    pub fn install() {
        const STACK: usize = 256 * 1024;
        // SAFETY: an anonymous mapping for the alternate signal stack, kept
        // for the life of the process; sigaction with a handler of the right
        // type.
        unsafe {
            let stack = libc::mmap(
                std::ptr::null_mut(),
                STACK,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            );
            assert_ne!(stack, libc::MAP_FAILED);
            let ss = libc::stack_t { ss_sp: stack, ss_flags: 0, ss_size: STACK };
            assert_eq!(libc::sigaltstack(&ss, std::ptr::null_mut()), 0);
            for sig in
                [libc::SIGSEGV, libc::SIGBUS, libc::SIGILL, libc::SIGFPE, libc::SIGTRAP, libc::SIGSYS, libc::SIGABRT]
            {
                let mut action: libc::sigaction = std::mem::zeroed();
                action.sa_sigaction = handler as extern "C" fn(c_int, *mut libc::siginfo_t, *mut c_void) as usize;
                action.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
                libc::sigemptyset(&mut action.sa_mask);
                assert_eq!(libc::sigaction(sig, &action, std::ptr::null_mut()), 0);
            }
        }
    }
}
