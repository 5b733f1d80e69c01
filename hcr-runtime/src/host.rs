//! Support for generated host bindings (see `hcr-build`): a process-wide
//! runtime and binding [`ProcCell`]s.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use hcr_abi::ProcCell;

use crate::error::{Error, Result};
use crate::runtime::Runtime;

static INSTALLED: OnceLock<Runtime> = OnceLock::new();

/// A module as a host's generated bindings know it.
#[derive(Debug)]
pub struct ModuleBindings {
    /// The module's name.
    pub name: &'static str,
    /// Where its library is built (`target/<profile>/deps/lib<name>.so`),
    /// as seen when the host was built.
    pub default_path: &'static str,
    /// The cells of every proc the host calls.
    pub procs: &'static [&'static ProcCell],
}

impl ModuleBindings {
    /// Where to load the module from: the entry for it in `overrides`, else
    /// `$HCR_MODULE_DIR/<file name>` when that variable is set, else
    /// [`ModuleBindings::default_path`].
    pub fn path(&self, overrides: &[(&str, &Path)]) -> PathBuf {
        if let Some((_, path)) = overrides.iter().find(|(name, _)| *name == self.name) {
            return path.to_path_buf();
        }
        let default = Path::new(self.default_path);
        match (std::env::var_os("HCR_MODULE_DIR"), default.file_name()) {
            (Some(dir), Some(file)) if !dir.is_empty() => Path::new(&dir).join(file),
            _ => default.to_path_buf(),
        }
    }
}

impl Runtime {
    /// Makes this runtime the process-wide one that generated bindings use,
    /// for the rest of the program.
    ///
    /// # Errors
    ///
    /// [`Error::AlreadyInstalled`] if a runtime was installed before.
    pub fn install(self) -> Result<&'static Runtime> {
        let mut slot = Some(self);
        let installed = INSTALLED.get_or_init(|| slot.take().expect("first installation"));
        match slot {
            None => Ok(installed),
            Some(_) => Err(Error::AlreadyInstalled),
        }
    }

    /// The runtime installed with [`Runtime::install`], if any.
    pub fn installed() -> Option<&'static Runtime> {
        INSTALLED.get()
    }

    /// Binds a generated binding's cell to its proc's stub, with the
    /// signature the bindings were generated for. The cell is `'static`, so
    /// the runtime must be too (an installed runtime is): the cell keeps the
    /// stub's address for good.
    ///
    /// # Errors
    ///
    /// As for [`Runtime::get_proc_with_signature`].
    pub fn bind(&'static self, cell: &'static ProcCell) -> Result<()> {
        let proc = self.get_proc_with_signature(cell.module(), cell.name(), cell.signature_hash(), cell.signature())?;
        // SAFETY: the slot is the stub's own, in the table this runtime owns;
        // the runtime is `'static`, so the table outlives the cell's use.
        unsafe { cell.bind_slot(proc.addr().cast(), proc.slot()) };
        Ok(())
    }

    /// Loads every module of a host's bindings (paths as
    /// [`ModuleBindings::path`] chooses) and binds all their cells.
    ///
    /// # Errors
    ///
    /// The first failing load or bind; modules loaded before it stay loaded.
    pub fn load_bindings(&'static self, modules: &[ModuleBindings], overrides: &[(&str, &Path)]) -> Result<()> {
        for module in modules {
            self.load(module.path(overrides))?;
        }
        for cell in modules.iter().flat_map(|m| m.procs) {
            self.bind(cell)?;
        }
        Ok(())
    }
}
