//! Runtime configuration.

use std::path::PathBuf;

use crate::error::{Error, Result};

/// Where the stub table is reserved unless configured otherwise.
pub const DEFAULT_STUB_BASE: usize = 0x1000_0000;

/// How many stubs the table has room for unless configured otherwise. Only
/// address space is reserved up front; pages are committed as stubs are used.
pub const DEFAULT_STUB_CAPACITY: usize = 1 << 20;

/// The largest configurable capacity.
pub const MAX_STUB_CAPACITY: usize = 1 << 28;

/// What happens to a module's old library after a reload replaced it (or
/// after the module was unloaded).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum UnloadPolicy {
    /// Close it as soon as the reload commits. Only for hosts where no other
    /// thread runs module code while `perform_reload` runs.
    Immediate,
    /// Close it once every thread registered with
    /// [`Runtime::register_thread`](crate::Runtime::register_thread) has
    /// passed a quiescent point after the commit. With no registered thread
    /// this is the same as `Immediate`. Threads that are not registered are
    /// not waited for.
    #[default]
    Deferred,
    /// Keep every old library loaded until the runtime is dropped: nothing
    /// can ever return into unloaded code, at the price of memory.
    Never,
}

/// Settings for a [`Runtime`](crate::Runtime).
///
/// Start from [`Config::new`] (built-in defaults) or [`Config::from_env`]
/// (defaults overridden by `HCR_STUB_BASE` and `HCR_STUB_CAPACITY`), then
/// adjust with the `with_*` methods, which override both.
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
        }
    }

    /// Defaults overridden by the environment: `HCR_STUB_BASE` (an address,
    /// hexadecimal with `0x` or decimal; `0` for "anywhere") and
    /// `HCR_STUB_CAPACITY` (a number of stubs).
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

    pub(crate) fn validate(&self) -> Result<()> {
        check_capacity("stub_capacity", self.stub_capacity)
    }
}

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
    fn capacity_bounds_are_checked() {
        assert!(check_capacity("c", 1).is_ok());
        assert!(check_capacity("c", MAX_STUB_CAPACITY).is_ok());
        assert!(matches!(check_capacity("c", 0), Err(Error::InvalidConfig { name: "c", .. })));
        assert!(check_capacity("c", MAX_STUB_CAPACITY + 1).is_err());
    }

    #[test]
    fn defaults_reserve_room_for_a_million_stubs_at_the_hint() {
        let c = Config::new();
        assert!(c.stub_capacity >= 1_000_000);
        assert_eq!(c.stub_base, 0x1000_0000);
    }
}
