//! Runtime configuration.

use std::path::PathBuf;
use std::time::Duration;

use crate::error::{Error, Result};

/// Where the stub table is reserved unless configured otherwise: `0`, where
/// the system chooses.
///
/// The system maps the table where it maps libraries, so the stubs lie
/// within a few GiB of the modules they jump into. A jump to a target much
/// further away costs more: measured on x86-64 (AMD Zen 4), a call through
/// a stub took 1.5 to 1.65 times a call through a plain function pointer
/// with the table at `0x1000_0000` (about 128 TiB below the libraries), and
/// 1.0 to 1.3 times with the table next to them (`benches/README.md`); the
/// cost stays low up to 16 GiB away and is back at its worst 256 GiB away.
pub const DEFAULT_STUB_BASE: usize = 0;

/// How many stubs the table has room for unless configured otherwise. Only
/// address space is reserved up front; pages are committed as stubs are used.
pub const DEFAULT_STUB_CAPACITY: usize = 1 << 20;

/// How long a module file must have gone unmodified before it is loaded,
/// unless configured otherwise.
pub const DEFAULT_SETTLE_TIME: Duration = Duration::from_millis(30);

/// How long the runtime waits for one thread's answer to the safepoint
/// signal unless configured otherwise.
pub const DEFAULT_SAFEPOINT_TIMEOUT: Duration = Duration::from_millis(100);

/// The largest configurable capacity.
pub const MAX_STUB_CAPACITY: usize = 1 << 28;

/// The largest module file the runtime copies and loads unless configured
/// otherwise: 1 GiB.
///
/// Debug builds of large crates reach a few hundred MiB, nearly all of it
/// debug information, so real modules stay well below this. The limit
/// bounds what a wrong path (an endless file, a file some process keeps
/// appending to) can make the runtime copy into its private directory,
/// which often lives in memory (`tmpfs`).
pub const DEFAULT_MAX_MODULE_SIZE: u64 = 1 << 30;

/// The largest configurable module size limit (1 TiB).
pub const MAX_MODULE_SIZE_LIMIT: u64 = 1 << 40;

/// What happens to a module's old library, and to the storage of globals
/// the reload took out of use (migrated to new storage, no longer
/// registered, or of an unloaded module), after a reload replaced it (or
/// after the module was unloaded).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum UnloadPolicy {
    /// Close it and free the storage as soon as the reload commits. Only for
    /// hosts where no other thread runs module code while `perform_reload`
    /// runs.
    Immediate,
    /// Close it and free the storage together, once no thread can reach
    /// them: every thread registered with
    /// [`Runtime::register_thread`](crate::Runtime::register_thread) has
    /// passed a quiescent point after the commit, and every other thread
    /// was observed outside them (see
    /// [`Config::observe_unregistered_threads`]). The reload does not wait
    /// for that.
    #[default]
    Deferred,
    /// Keep every old library loaded, and every old global storage
    /// allocated, until the runtime is dropped: nothing can ever return into
    /// unloaded code, at the price of memory.
    Never,
}

/// Settings for a [`Runtime`](crate::Runtime).
///
/// Start from [`Config::new`] (built-in defaults) or [`Config::from_env`]
/// (defaults overridden by `HCR_STUB_BASE`, `HCR_STUB_CAPACITY`, `HCR_WATCH`,
/// `HCR_SETTLE_MS`, `HCR_REPORT_FILE`, `HCR_MAX_MODULE_SIZE`,
/// `HCR_ALLOW_WRITABLE_CODE`, `HCR_KEEP_PREVIOUS` and `HCR_REVERT_ON_PANIC`),
/// then adjust with the `with_*` methods, which
/// override both.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Config {
    /// Preferred address of the stub table; `0` lets the system choose. If
    /// the range is taken, the table goes elsewhere and a `tracing` warning
    /// says where.
    pub stub_base: usize,
    /// Number of stubs the table can hold.
    pub stub_capacity: usize,
    /// Where the private directory for module copies is created; the system's
    /// temporary directory when `None`. Must allow executable mappings.
    pub private_dir_parent: Option<PathBuf>,
    /// Directories searched for imported modules after the importing
    /// module's own directory.
    pub search_paths: Vec<PathBuf>,
    /// What happens to replaced libraries.
    pub unload_policy: UnloadPolicy,
    /// Watch the loaded modules' files with the system's file notifications
    /// (inotify, FSEvents, ReadDirectoryChangesW), so that
    /// [`Runtime::reload_needed`](crate::Runtime::reload_needed) costs one
    /// atomic load while no file is touched, instead of one `stat` per
    /// module. Starts one background thread. If watching fails, the runtime
    /// falls back to checking the files (and says so in a `tracing` warning).
    pub watch_files: bool,
    /// How long a changed module file must have gone unmodified before it is
    /// loaded: a linker may still be writing a younger one. While a file is
    /// younger, [`Runtime::reload_needed`](crate::Runtime::reload_needed)
    /// answers `false` (the host is not held up) and
    /// [`Runtime::perform_reload`](crate::Runtime::perform_reload) waits for
    /// it. [`DEFAULT_SETTLE_TIME`] unless configured; zero loads a file as
    /// soon as it is seen.
    pub settle_time: Duration,
    /// A file to which every reload that did something appends one line, for
    /// development tools such as `cargo hcr`; see
    /// [`Runtime::perform_reload`](crate::Runtime::perform_reload).
    ///
    /// It must be a regular file (or not exist yet): it is opened without
    /// blocking, and a FIFO, socket or device there is skipped with a
    /// `tracing` warning.
    pub report_file: Option<PathBuf>,
    /// Keep each module's previous build loaded after a reload replaced it
    /// (one per module), so that [`Runtime::revert`](crate::Runtime::revert)
    /// can make it current again. Costs one more mapped library per
    /// reloaded module (its code and data, e.g. a few MB for a debug build;
    /// the pages of code are shared with the file cache) and a few bytes per
    /// proc and global for the record of what each build registered. Off
    /// unless configured.
    pub keep_previous_builds: bool,
    /// Under [`UnloadPolicy::Deferred`], observe the threads that never
    /// registered before freeing what a reload replaced (on by default).
    ///
    /// After a reload, the runtime's collector thread (started when first
    /// needed, stopped when the runtime is dropped; the reload itself does
    /// not wait) sends each such thread a real-time signal; its handler
    /// looks for pointers into the replaced libraries and global storage in
    /// the thread's registers and live stack. Replaced memory is freed once
    /// every such thread was seen without one (and every registered thread
    /// passed a quiescent point). A thread that blocks the signal, or runs
    /// on a stack that cannot be bounded (a coroutine), cannot be observed
    /// and keeps replaced memory alive while it runs. Signals interrupt
    /// blocking system calls: those that cannot be restarted fail with
    /// `EINTR`, which programs must retry (the standard library does).
    ///
    /// Off: only registered threads are waited for, and a thread that is
    /// not registered must never run module code while a reload runs.
    ///
    /// # Platform-specific behaviour
    ///
    /// Linux only. Elsewhere nothing can be observed, so with this on,
    /// replaced libraries stay loaded until the runtime is dropped.
    pub observe_unregistered_threads: bool,
    /// How long to wait for one thread's answer to the safepoint signal
    /// before counting it as not observed this time.
    /// [`DEFAULT_SAFEPOINT_TIMEOUT`] unless configured; at most 10 seconds.
    pub safepoint_timeout: Duration,
    /// Use the fallback process-wide memory barrier even where the fast one
    /// works: for testing the fallback.
    ///
    /// # Platform-specific behaviour
    ///
    /// On weakly ordered CPUs (AArch64) every commit makes each thread of the
    /// process execute a memory barrier. Linux:
    /// `membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED)`, falling back to
    /// `MEMBARRIER_CMD_GLOBAL` (slower: it waits for every CPU to pass through
    /// the scheduler). With neither, a commit is refused with
    /// [`Error::ProcessBarrier`]. On x86-64 no barrier is needed and this
    /// setting has no effect.
    pub force_barrier_fallback: bool,
    /// The largest module file, in bytes, that is copied and loaded
    /// ([`DEFAULT_MAX_MODULE_SIZE`] unless configured). Checked before the
    /// copy, and enforced while copying: a file that grows past it is
    /// refused with [`Error::ModuleTooLarge`].
    pub max_module_size: u64,
    /// Load libraries that would create writable and executable memory: a
    /// loadable segment that is both writable and executable, a request for
    /// an executable stack (`PT_GNU_STACK` with `PF_X`, or no `PT_GNU_STACK`
    /// on x86-64, where that means an executable stack), or text
    /// relocations. `false` unless configured: such libraries are refused
    /// with [`Error::WritableCode`] before the system loader sees them.
    ///
    /// Only for hosts that really load such code (old assembly, some JIT
    /// runtimes): an executable stack request makes the system loader turn
    /// every thread's stack executable for the rest of the process.
    pub allow_writable_code: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config::new()
    }
}

impl Config {
    /// Built-in defaults; ignores the environment.
    pub fn new() -> Config {
        Config {
            stub_base: DEFAULT_STUB_BASE,
            stub_capacity: DEFAULT_STUB_CAPACITY,
            private_dir_parent: None,
            search_paths: Vec::new(),
            unload_policy: UnloadPolicy::default(),
            watch_files: false,
            settle_time: DEFAULT_SETTLE_TIME,
            report_file: None,
            keep_previous_builds: false,
            observe_unregistered_threads: true,
            safepoint_timeout: DEFAULT_SAFEPOINT_TIMEOUT,
            force_barrier_fallback: false,
            max_module_size: DEFAULT_MAX_MODULE_SIZE,
            allow_writable_code: false,
        }
    }

    /// Defaults overridden by the environment: `HCR_STUB_BASE` (an address,
    /// hexadecimal with `0x` or decimal; `0` for "anywhere"),
    /// `HCR_STUB_CAPACITY` (a number of stubs), `HCR_WATCH` (`1`/`true`/`on`
    /// or `0`/`false`/`off`: [`Config::watch_files`]), `HCR_SETTLE_MS` (a
    /// number of milliseconds: [`Config::settle_time`]), `HCR_REPORT_FILE`
    /// (a path: [`Config::report_file`]), `HCR_MAX_MODULE_SIZE` (bytes, or
    /// with a `K`, `M` or `G` suffix for KiB, MiB, GiB:
    /// [`Config::max_module_size`]), `HCR_ALLOW_WRITABLE_CODE` (a switch
    /// like `HCR_WATCH`: [`Config::allow_writable_code`]) and
    /// `HCR_KEEP_PREVIOUS` (a switch: [`Config::keep_previous_builds`]),
    /// which `HCR_REVERT_ON_PANIC=1` (set by `cargo hcr run
    /// --revert-on-panic` for the generated `Hcr`) turns on too.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] naming the variable when a value does not
    /// parse or is out of range.
    pub fn from_env() -> Result<Config> {
        let mut config = Config::new();
        if let Some(value) = env("HCR_STUB_BASE") {
            config.stub_base = parse_number(&value).ok_or_else(|| Error::InvalidConfig {
                name: "HCR_STUB_BASE",
                value: value.clone(),
                reason: "expected an address such as 0x10000000",
            })?;
        }
        if let Some(value) = env("HCR_STUB_CAPACITY") {
            config.stub_capacity = parse_number(&value).ok_or_else(|| Error::InvalidConfig {
                name: "HCR_STUB_CAPACITY",
                value: value.clone(),
                reason: "expected a number of stubs",
            })?;
            check_capacity("HCR_STUB_CAPACITY", config.stub_capacity)?;
        }
        if let Some(value) = env("HCR_WATCH") {
            config.watch_files = parse_switch(&value).ok_or_else(|| Error::InvalidConfig {
                name: "HCR_WATCH",
                value: value.clone(),
                reason: "expected 1, true, on, 0, false or off",
            })?;
        }
        if let Some(value) = env("HCR_SETTLE_MS") {
            let millis = value.trim().parse::<u64>().ok().filter(|&ms| ms <= MAX_SETTLE_MS);
            config.settle_time = Duration::from_millis(millis.ok_or_else(|| Error::InvalidConfig {
                name: "HCR_SETTLE_MS",
                value: value.clone(),
                reason: "expected a number of milliseconds, at most 10000",
            })?);
        }
        if let Some(value) = std::env::var_os("HCR_REPORT_FILE").filter(|v| !v.is_empty()) {
            config.report_file = Some(PathBuf::from(value));
        }
        for name in ["HCR_KEEP_PREVIOUS", "HCR_REVERT_ON_PANIC"] {
            if let Some(value) = env(name) {
                let on = parse_switch(&value).ok_or_else(|| Error::InvalidConfig {
                    name,
                    value: value.clone(),
                    reason: "expected 1, true, on, 0, false or off",
                })?;
                config.keep_previous_builds |= on;
            }
        }
        if let Some(value) = env("HCR_MAX_MODULE_SIZE") {
            config.max_module_size = parse_size(&value).ok_or_else(|| Error::InvalidConfig {
                name: "HCR_MAX_MODULE_SIZE",
                value: value.clone(),
                reason: "expected a number of bytes, optionally with a K, M or G suffix",
            })?;
            check_module_size("HCR_MAX_MODULE_SIZE", config.max_module_size)?;
        }
        if let Some(value) = env("HCR_ALLOW_WRITABLE_CODE") {
            config.allow_writable_code = parse_switch(&value).ok_or_else(|| Error::InvalidConfig {
                name: "HCR_ALLOW_WRITABLE_CODE",
                value: value.clone(),
                reason: "expected 1, true, on, 0, false or off",
            })?;
        }
        Ok(config)
    }

    /// Sets [`Config::stub_base`].
    pub fn with_stub_base(mut self, base: usize) -> Config {
        self.stub_base = base;
        self
    }

    /// Sets [`Config::stub_capacity`].
    pub fn with_stub_capacity(mut self, capacity: usize) -> Config {
        self.stub_capacity = capacity;
        self
    }

    /// Sets [`Config::private_dir_parent`].
    pub fn with_private_dir_parent(mut self, dir: impl Into<PathBuf>) -> Config {
        self.private_dir_parent = Some(dir.into());
        self
    }

    /// Appends to [`Config::search_paths`].
    pub fn with_search_path(mut self, dir: impl Into<PathBuf>) -> Config {
        self.search_paths.push(dir.into());
        self
    }

    /// Sets [`Config::unload_policy`].
    pub fn with_unload_policy(mut self, policy: UnloadPolicy) -> Config {
        self.unload_policy = policy;
        self
    }

    /// Sets [`Config::watch_files`].
    pub fn with_watch_files(mut self, watch: bool) -> Config {
        self.watch_files = watch;
        self
    }

    /// Sets [`Config::settle_time`].
    pub fn with_settle_time(mut self, settle: Duration) -> Config {
        self.settle_time = settle;
        self
    }

    /// Sets [`Config::report_file`].
    pub fn with_report_file(mut self, path: impl Into<PathBuf>) -> Config {
        self.report_file = Some(path.into());
        self
    }

    /// Sets [`Config::keep_previous_builds`].
    pub fn with_keep_previous_builds(mut self, keep: bool) -> Config {
        self.keep_previous_builds = keep;
        self
    }

    /// Sets [`Config::observe_unregistered_threads`].
    pub fn with_observe_unregistered_threads(mut self, observe: bool) -> Config {
        self.observe_unregistered_threads = observe;
        self
    }

    /// Sets [`Config::safepoint_timeout`].
    pub fn with_safepoint_timeout(mut self, timeout: Duration) -> Config {
        self.safepoint_timeout = timeout;
        self
    }

    /// Sets [`Config::force_barrier_fallback`].
    pub fn with_force_barrier_fallback(mut self, force: bool) -> Config {
        self.force_barrier_fallback = force;
        self
    }

    /// Sets [`Config::max_module_size`].
    pub fn with_max_module_size(mut self, bytes: u64) -> Config {
        self.max_module_size = bytes;
        self
    }

    /// Sets [`Config::allow_writable_code`].
    pub fn with_allow_writable_code(mut self, allow: bool) -> Config {
        self.allow_writable_code = allow;
        self
    }

    pub(crate) fn validate(&self) -> Result<()> {
        if self.safepoint_timeout.is_zero() || self.safepoint_timeout > Duration::from_secs(10) {
            return Err(Error::InvalidConfig {
                name: "safepoint_timeout",
                value: format!("{:?}", self.safepoint_timeout),
                reason: "must be more than zero and at most 10 seconds",
            });
        }
        check_capacity("stub_capacity", self.stub_capacity)?;
        check_module_size("max_module_size", self.max_module_size)?;
        if self.settle_time > Duration::from_millis(MAX_SETTLE_MS) {
            return Err(Error::InvalidConfig {
                name: "settle_time",
                value: format!("{:?}", self.settle_time),
                reason: "must be at most 10 seconds",
            });
        }
        Ok(())
    }
}

/// The largest `HCR_SETTLE_MS`.
const MAX_SETTLE_MS: u64 = 10_000;

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn check_capacity(name: &'static str, capacity: usize) -> Result<()> {
    if capacity == 0 || capacity > MAX_STUB_CAPACITY {
        return Err(Error::InvalidConfig {
            name,
            value: capacity.to_string(),
            reason: "must be between 1 and 268435456",
        });
    }
    Ok(())
}

fn check_module_size(name: &'static str, bytes: u64) -> Result<()> {
    if bytes == 0 || bytes > MAX_MODULE_SIZE_LIMIT {
        return Err(Error::InvalidConfig {
            name,
            value: bytes.to_string(),
            reason: "must be between 1 byte and 1 TiB",
        });
    }
    Ok(())
}

/// `1048576`, `64K`, `512M`, `1G` (binary units).
fn parse_size(text: &str) -> Option<u64> {
    let text = text.trim().replace('_', "");
    let (digits, shift) = match text.chars().last()?.to_ascii_uppercase() {
        'K' => (&text[..text.len() - 1], 10),
        'M' => (&text[..text.len() - 1], 20),
        'G' => (&text[..text.len() - 1], 30),
        _ => (&text[..], 0),
    };
    digits.trim().parse::<u64>().ok()?.checked_mul(1 << shift)
}

fn parse_switch(text: &str) -> Option<bool> {
    match text.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "on" | "yes" => Some(true),
        "0" | "false" | "off" | "no" => Some(false),
        _ => None,
    }
}

fn parse_number(text: &str) -> Option<usize> {
    let text = text.trim().replace('_', "");
    match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(hex) => usize::from_str_radix(hex, 16).ok(),
        None => text.parse().ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_parse_in_hex_and_decimal() {
        assert_eq!(parse_number("0x10000000"), Some(0x1000_0000));
        assert_eq!(parse_number(" 1_000_000 "), Some(1_000_000));
        assert_eq!(parse_number("0XfF"), Some(255));
        assert_eq!(parse_number("ten"), None);
        assert_eq!(parse_number("0x"), None);
    }

    #[test]
    fn switches_parse_in_either_spelling() {
        assert_eq!(parse_switch(" ON "), Some(true));
        assert_eq!(parse_switch("1"), Some(true));
        assert_eq!(parse_switch("False"), Some(false));
        assert_eq!(parse_switch("maybe"), None);
    }

    #[test]
    fn sizes_parse_with_binary_suffixes() {
        assert_eq!(parse_size("4096"), Some(4096));
        assert_eq!(parse_size(" 64k "), Some(64 << 10));
        assert_eq!(parse_size("512M"), Some(512 << 20));
        assert_eq!(parse_size("1_G"), Some(1 << 30));
        assert_eq!(parse_size("G"), None);
        assert_eq!(parse_size("1T"), None);
        assert_eq!(parse_size("99999999999999999999G"), None);
        assert!(check_module_size("m", DEFAULT_MAX_MODULE_SIZE).is_ok());
        assert!(check_module_size("m", 0).is_err());
        assert!(check_module_size("m", MAX_MODULE_SIZE_LIMIT + 1).is_err());
    }

    #[test]
    fn capacity_bounds_are_checked() {
        assert!(check_capacity("c", 1).is_ok());
        assert!(check_capacity("c", MAX_STUB_CAPACITY).is_ok());
        assert!(matches!(check_capacity("c", 0), Err(Error::InvalidConfig { name: "c", .. })));
        assert!(check_capacity("c", MAX_STUB_CAPACITY + 1).is_err());
    }

    #[test]
    fn the_safepoint_timeout_is_bounded() {
        assert!(Config::new().validate().is_ok());
        let zero = Config::new().with_safepoint_timeout(Duration::ZERO).validate();
        assert!(matches!(zero, Err(Error::InvalidConfig { name: "safepoint_timeout", .. })));
        assert!(Config::new().with_safepoint_timeout(Duration::from_secs(11)).validate().is_err());
        let c = Config::new().with_observe_unregistered_threads(false).with_force_barrier_fallback(true);
        assert!(!c.observe_unregistered_threads && c.force_barrier_fallback);
    }

    #[test]
    fn defaults_reserve_room_for_a_million_stubs_where_the_system_chooses() {
        let c = Config::new();
        assert!(c.stub_capacity >= 1_000_000);
        assert_eq!(c.stub_base, 0);
    }
}
