//! Build-script code generation for hcr.
//!
//! # In a module crate
//!
//! A module is a `cdylib` (add `rlib` to use the static switch of a host).
//! Mark what is reloadable:
//!
//! * **procs**: free functions marked `#[hcr_abi::reload]`, which keep the
//!   Rust ABI and Rust types (the module then needs `hcr-abi`'s feature
//!   `global-allocator`), or declared `#[unsafe(no_mangle)] pub extern "C"
//!   fn`;
//! * **reload hooks**: functions marked `#[hcr_abi::before_reload]`,
//!   `#[hcr_abi::after_reload]` or `#[hcr_abi::first_load]`;
//! * **globals**: `static NAME: hcr_abi::Global<T> = Global::new(|| value);`.
//!
//! Then, in the `main` of `build.rs`:
//!
//! ```no_run
//! hcr_build::Module::new().build();
//! ```
//!
//! and once, at the crate root:
//!
//! ```ignore
//! include!(concat!(env!("OUT_DIR"), "/hcr_module.rs"));
//! ```
//!
//! The generated file holds the module's descriptor (with the
//! [`toolchain_fingerprint`]) and its init, which installs the host's
//! allocator and the module's panic hook, registers every global (with a
//! layout hash), every proc (with a signature hash) and every hook, and
//! catches panics so that nothing unwinds into the runtime. Signature and
//! layout hashes cover the types of the module crate and of the local crates
//! it depends on (a shared types crate) field by field. A module that calls another module lists it with
//! [`Module::import`]; its bindings then appear next to the include, as
//! `<module>::<proc>(...)`, calling through the other module's stubs.
//!
//! # In a host crate
//!
//! List the module crates under `[dependencies]` (so that cargo builds each
//! module's library once, in the host's profile, with the host; a hot build
//! does not link it in) and depend on `hcr-runtime`, then in the `main` of
//! `build.rs`:
//!
//! ```no_run
//! hcr_build::Host::new().module("../game").build();
//! ```
//!
//! and include the bindings, e.g. `mod hcr { include!(concat!(env!("OUT_DIR"), "/hcr.rs")); }`.
//! For every module there is a module of bindings with, per C proc, a
//! function (`game::update(dt)`) and a `_ptr` accessor that returns the
//! proc's stable stub as a typed `extern "C" fn` (`game::update_ptr()`);
//! per Rust proc, `game::update(..)` (a panic in the proc is raised again in
//! the host), `game::try_update(..)` (it comes back as
//! `Err(hcr_abi::ProcPanic)`) and `game::update_ptr()` (the stub, as a
//! `fn(..) -> Result<R, ProcPanic>`); and an `Hcr` facade: `Hcr::start()`
//! loads and binds everything, `hcr.update()` reloads when a module changed.
//!
//! With the host feature `static` enabled (see [`Host::static_feature`]) the
//! same bindings call straight into the module crates, linked in as rlibs,
//! and `Hcr` does nothing: the same host source builds both ways. For that,
//! the module crates declare a `static` feature (which compiles their
//! registration out, so that several can be linked into one binary), and the
//! host's `static` feature enables it:
//!
//! ```toml
//! [dependencies]
//! hcr-runtime = { version = "0.1", optional = true }
//! game = { path = "../game" }
//!
//! [build-dependencies]
//! hcr-build = "0.1"
//!
//! [features]
//! default = ["hot"]
//! hot = ["dep:hcr-runtime"]
//! static = ["game/static"]
//! ```
//!
//! # Errors
//!
//! What cannot be reloaded is refused with an error that names the file and
//! line: generic, `async` or `impl Trait` reloadable functions, methods,
//! `#[no_mangle]` ones without `extern "C"`, duplicate names, globals whose
//! type cannot outlive the code that created it (references, trait objects,
//! unsized types), globals, procs and hooks inside function bodies, impl
//! blocks or block expressions (the registration cannot reach them), a
//! module's own `#[global_allocator]` next to Rust procs, and signatures
//! that use types the callers cannot name. A static build whose caller lacks
//! the module crate stops with a `compile_error!` naming the dependency.

mod cache;
mod cfg;
mod error;
mod generate;
mod hash;
mod manifest;
mod scan;
mod types;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

pub use cfg::Cfg;
pub use error::{Error, Location};

use cache::TypesCache;
use generate::{Caller, ModuleSource};
use types::{CrateTypes, Universe};

/// The file a module's build script writes into `OUT_DIR`.
pub const MODULE_FILE: &str = "hcr_module.rs";

/// The file a host's build script writes into `OUT_DIR`.
pub const HOST_FILE: &str = "hcr.rs";

/// Generated source and what it was made from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Generated {
    /// The Rust source.
    pub source: String,
    /// Every file it depends on (sources and manifests).
    pub inputs: Vec<PathBuf>,
    /// Things that are probably mistakes but not errors.
    pub warnings: Vec<String>,
}

fn env_path(name: &'static str) -> Result<PathBuf, Error> {
    std::env::var_os(name).map(PathBuf::from).ok_or(Error::Env { name })
}

/// Reads and scans a module crate, with the given features on top of the
/// target's configuration, and the local crates it depends on (for their
/// types) with `dependency_cfg` and the features the dependencies ask for.
fn load_module(
    dir: &Path,
    cfg: &Cfg,
    use_default_features: bool,
    dependency_cfg: &Cfg,
    cache: Option<&TypesCache>,
) -> Result<ModuleSource, Error> {
    let info = manifest::read(dir)?;
    let mut cfg = cfg.clone();
    if use_default_features {
        for feature in &info.default_features {
            cfg = cfg.with_feature(feature);
        }
    }
    let scanned = scan::scan(&info.dir, &info.root, &cfg)?;
    let mut universe = Universe::single(CrateTypes::of(&info.lib_name, &scanned));
    let mut loader = DependencyLoader {
        cfg: dependency_cfg,
        seen: HashMap::new(),
        files: Vec::new(),
        enabled: enabled_dependency_features(&info, &cfg),
        cache,
    };
    if let Ok(dir) = info.dir.canonicalize() {
        loader.seen.insert(dir, 0);
    }
    loader.load(&info, 0, &mut universe)?;
    Ok(ModuleSource { info, scanned, universe, dependency_files: loader.files })
}

/// The features of its dependencies that the module's enabled features
/// turn on (`"dep/feature"` and `"dep?/feature"` in its `[features]`), by
/// dependency name (`-` as `_`).
fn enabled_dependency_features(info: &manifest::CrateInfo, cfg: &Cfg) -> HashMap<String, Vec<String>> {
    let mut out: HashMap<String, Vec<String>> = HashMap::new();
    let mut seen = std::collections::BTreeSet::new();
    let mut work: Vec<&String> = info.features.iter().filter(|f| cfg.has_feature(f)).collect();
    while let Some(feature) = work.pop() {
        if !seen.insert(feature) {
            continue;
        }
        for enabled in info.feature_map.get(feature).into_iter().flatten() {
            match enabled.split_once('/') {
                Some((dep, dep_feature)) => {
                    let dep = dep.trim_end_matches('?').strip_prefix("dep:").unwrap_or(dep.trim_end_matches('?'));
                    out.entry(dep.replace('-', "_")).or_default().push(dep_feature.to_owned());
                }
                None if !enabled.starts_with("dep:") => {
                    if let Some((name, _)) = info.feature_map.get_key_value(enabled) {
                        work.push(name);
                    }
                }
                None => {}
            }
        }
    }
    out
}

/// Loads the types of a crate's local dependencies, recursively, into a
/// [`Universe`].
struct DependencyLoader<'a> {
    cfg: &'a Cfg,
    /// Crates loaded, by directory.
    seen: HashMap<PathBuf, usize>,
    files: Vec<PathBuf>,
    /// Features of the module's direct dependencies that its own enabled
    /// features turn on.
    enabled: HashMap<String, Vec<String>>,
    /// What earlier runs of the build script scanned.
    cache: Option<&'a TypesCache>,
}

impl DependencyLoader<'_> {
    fn load(&mut self, info: &manifest::CrateInfo, index: usize, universe: &mut Universe) -> Result<(), Error> {
        for dep in &info.path_dependencies {
            let dir = dep.dir.canonicalize().unwrap_or_else(|_| dep.dir.clone());
            if let Some(&known) = self.seen.get(&dir) {
                universe.link(index, &dep.name, known);
                continue;
            }
            // A dependency that cannot be read is cargo's to report. A
            // procedural-macro crate has no types a module can use.
            let Ok(dep_info) = manifest::read(&dep.dir) else { continue };
            if dep_info.proc_macro {
                continue;
            }
            let mut cfg = self.cfg.clone();
            if dep.default_features {
                for feature in &dep_info.default_features {
                    cfg = cfg.with_feature(feature);
                }
            }
            for feature in &dep.features {
                cfg = cfg.with_feature(feature);
            }
            if index == 0 {
                for feature in self.enabled.get(&dep.name).into_iter().flatten() {
                    cfg = cfg.with_feature(feature);
                }
            }
            let cached = self.cache.and_then(|c| c.get(&dep_info.dir, &dep_info.root, &cfg));
            let scanned = match cached {
                Some(scanned) => scanned,
                None => {
                    let scanned = scan::scan_types(&dep_info.dir, &dep_info.root, &cfg)?;
                    if let Some(cache) = self.cache {
                        cache.put(&dep_info.dir, &dep_info.root, &cfg, &scanned);
                    }
                    scanned
                }
            };
            self.files.push(dep_info.manifest.clone());
            self.files.extend(scanned.files.iter().cloned());
            let added = universe.push(CrateTypes::of(&dep_info.lib_name, &scanned));
            self.seen.insert(dir, added);
            universe.link(index, &dep.name, added);
            self.load(&dep_info, added, universe)?;
        }
        Ok(())
    }
}

/// Where a build script keeps what it scanned of its dependencies: in its
/// output directory, which it writes to anyway. (cargo-hcr knows the name:
/// rustc never reads it, so a change there does not make rustc's build,
/// started alongside the build script, wrong.)
fn types_cache(out: &Path) -> TypesCache {
    TypesCache::new(out.join("hcr-types-cache"))
}

/// `cfg` without its features: what a dependency sees before its own.
fn strip_features(cfg: &Cfg) -> Cfg {
    cfg.without_features()
}

/// The target-only part of the build script's configuration: what another
/// crate's sources see, apart from their own features.
fn target_cfg() -> Cfg {
    let mut cfg = Cfg::empty();
    for (key, value) in std::env::vars() {
        let Some(name) = key.strip_prefix("CARGO_CFG_") else { continue };
        let name = name.to_ascii_lowercase();
        if value.is_empty() {
            cfg = cfg.with_flag(&name);
        } else {
            for v in value.split(',') {
                cfg = cfg.with_value(&name, v);
            }
        }
    }
    cfg
}

fn inputs(sources: &[&ModuleSource]) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for s in sources {
        files.push(s.info.manifest.clone());
        files.extend(s.scanned.files.iter().cloned());
        files.extend(s.dependency_files.iter().cloned());
    }
    files.dedup();
    files
}

/// Writes `source` to `path` unless it already holds exactly that, so that
/// an unchanged result does not trigger a rebuild, and otherwise replaces
/// the file with one rename: a compiler reading it at the same time (a
/// development loop may start rustc while the build script still runs)
/// reads the old file or the new one, never half of one.
fn write_if_changed(path: &Path, source: &str) -> Result<(), Error> {
    if std::fs::read_to_string(path).is_ok_and(|old| old == source) {
        return Ok(());
    }
    replace_file(path, source).map_err(|source| Error::Io { path: path.to_owned(), source })
}

/// Replaces `path` with a file holding `contents`, whole or not at all: it
/// is written aside (named after this process), then renamed over `path`.
pub(crate) fn replace_file(path: &Path, contents: &str) -> std::io::Result<()> {
    let mut partial = path.as_os_str().to_owned();
    partial.push(format!(".{}.partial", std::process::id()));
    let partial = PathBuf::from(partial);
    let written = std::fs::write(&partial, contents).and_then(|()| std::fs::rename(&partial, path));
    if written.is_err() {
        let _ = std::fs::remove_file(&partial);
    }
    written
}

/// Reports `error` to cargo. A source that does not parse is left to rustc,
/// whose diagnostics for syntax errors are better: the previous output is
/// kept (or an empty one written) and the build script succeeds with a
/// warning. Anything else fails the build.
fn report(error: &Error, out_file: Option<PathBuf>) {
    if error.errors().iter().all(|e| matches!(e, Error::Parse { .. })) {
        for e in error.errors() {
            println!("cargo:warning=hcr-build could not parse the sources, rustc will report: {e}");
        }
        if let Some(file) = out_file
            && !file.exists()
        {
            let _ = std::fs::write(&file, "// hcr-build: the sources did not parse\n");
        }
        return;
    }
    fail(error)
}

/// Prints the errors for cargo, each on its own line with its location, and
/// exits the build script.
fn fail(error: &Error) -> ! {
    for e in error.errors() {
        for line in e.to_string().lines() {
            println!("cargo::error={line}");
        }
    }
    std::process::exit(1)
}

/// The toolchain part of a module's fingerprint, as the build script that
/// runs computes it: `rustc <release> (<commit-hash>); <target triple>;
/// panic=<strategy>; target-features=<list>[; <layout flags>]`. The generated
/// registration stores it in the descriptor, followed by `; hcr-abi
/// <version>` (see `hcr_abi::Fingerprint`). The same text as
/// `hcr_abi::toolchain::toolchain_text`, which `hcr-runtime`'s build script
/// uses for the runtime's own, except that the compiler's version is the
/// one recorded when hcr-build was compiled (by the compiler that builds
/// the module too) instead of a run of `rustc -vV` on every build.
pub fn toolchain_fingerprint() -> String {
    // What `rustc -vV` said when this crate was compiled: cargo compiles a
    // build script and its crate with the same compiler, and this crate
    // again when the compiler changes (see build.rs).
    let recorded = include_str!(concat!(env!("OUT_DIR"), "/rustc-version.txt"));
    if recorded.contains("commit-hash:") {
        hcr_abi::toolchain::toolchain_text_for(recorded)
    } else {
        hcr_abi::toolchain::toolchain_text()
    }
}

/// Code generation for a module crate (from its `build.rs`).
#[derive(Clone, Debug)]
pub struct Module {
    crate_dir: Option<PathBuf>,
    out_dir: Option<PathBuf>,
    cfg: Option<Cfg>,
    imports: Vec<(PathBuf, Vec<String>)>,
    static_feature: Option<String>,
    toolchain: Option<String>,
}

impl Default for Module {
    fn default() -> Module {
        Module {
            crate_dir: None,
            out_dir: None,
            cfg: None,
            imports: Vec::new(),
            static_feature: Some("static".into()),
            toolchain: None,
        }
    }
}

impl Module {
    /// For the crate whose build script is running. If the crate declares a
    /// feature `static`, the registration is compiled out when that feature
    /// is on (for hosts that link modules in, see [`Host::static_feature`]).
    pub fn new() -> Module {
        Module::default()
    }

    /// The module feature that marks a static build, or `None`. It only has
    /// an effect if the crate declares the feature.
    pub fn static_feature(mut self, feature: Option<&str>) -> Module {
        self.static_feature = feature.map(str::to_owned);
        self
    }

    /// The crate to scan, instead of `CARGO_MANIFEST_DIR`.
    pub fn crate_dir(mut self, dir: impl Into<PathBuf>) -> Module {
        self.crate_dir = Some(dir.into());
        self
    }

    /// Where to write, instead of `OUT_DIR`.
    pub fn out_dir(mut self, dir: impl Into<PathBuf>) -> Module {
        self.out_dir = Some(dir.into());
        self
    }

    /// The configuration to evaluate `#[cfg]` with, instead of what cargo
    /// tells the build script.
    pub fn cfg(mut self, cfg: Cfg) -> Module {
        self.cfg = Some(cfg);
        self
    }

    /// The toolchain text of the descriptor's fingerprint, instead of
    /// [`toolchain_fingerprint`] (for tests that need stable output; a
    /// module with another text than the runtime's is refused).
    pub fn toolchain(mut self, text: &str) -> Module {
        self.toolchain = Some(text.to_owned());
        self
    }

    /// Another module (its crate directory, relative to this crate) whose
    /// procs this module calls. The module imports it (the runtime loads it
    /// first) and gets bindings to it.
    pub fn import(mut self, crate_dir: impl Into<PathBuf>) -> Module {
        self.imports.push((crate_dir.into(), Vec::new()));
        self
    }

    /// Like [`Module::import`], scanning the imported crate with `features`
    /// enabled (on top of its default features): the bindings must match
    /// the imported module as it is built.
    pub fn import_with_features(mut self, crate_dir: impl Into<PathBuf>, features: &[&str]) -> Module {
        self.imports.push((crate_dir.into(), features.iter().map(|f| (*f).to_owned()).collect()));
        self
    }

    /// Generates the registration source without writing it.
    ///
    /// # Errors
    ///
    /// Every problem found, with file and line; see [`Error`].
    pub fn render(&self) -> Result<Generated, Error> {
        self.render_with(None)
    }

    /// [`Module::render`], with what earlier runs scanned of dependencies.
    fn render_with(&self, cache: Option<TypesCache>) -> Result<Generated, Error> {
        let dir = match &self.crate_dir {
            Some(dir) => dir.clone(),
            None => env_path("CARGO_MANIFEST_DIR")?,
        };
        let cfg = self.cfg.clone().unwrap_or_else(Cfg::from_env);
        let import_cfg = if self.cfg.is_some() { strip_features(&cfg) } else { target_cfg() };
        let this = load_module(&dir, &cfg, false, &import_cfg, cache.as_ref())?;
        let imports = self
            .imports
            .iter()
            .map(|(d, features)| {
                let cfg = features.iter().fold(import_cfg.clone(), |cfg, f| cfg.with_feature(f));
                load_module(&dir.join(d), &cfg, true, &import_cfg, cache.as_ref())
            })
            .collect::<Result<Vec<_>, _>>()?;
        let static_feature = self.static_feature.as_deref().filter(|f| this.info.features.contains(*f));
        let toolchain = match &self.toolchain {
            Some(text) => text.clone(),
            None => toolchain_fingerprint(),
        };
        let source = generate::module_file(&this, &imports, static_feature, &toolchain)?;
        let mut warnings = Vec::new();
        if !this.info.crate_types.iter().any(|t| t == "cdylib") {
            warnings.push(format!(
                "module crate `{}` is not a cdylib: add `crate-type = [\"cdylib\", \"rlib\"]` to its [lib] section",
                this.info.package
            ));
        }
        let mut all = vec![&this];
        all.extend(imports.iter());
        Ok(Generated { source, inputs: inputs(&all), warnings })
    }

    /// Writes [`MODULE_FILE`] into the output directory and tells cargo when
    /// to run the build script again. Returns the file's path.
    ///
    /// # Errors
    ///
    /// As for [`Module::render`], and [`Error::Io`] if the file cannot be
    /// written.
    pub fn generate(&self) -> Result<PathBuf, Error> {
        let out = match &self.out_dir {
            Some(dir) => dir.clone(),
            None => env_path("OUT_DIR")?,
        };
        let generated = self.render_with(Some(types_cache(&out)))?;
        let path = out.join(MODULE_FILE);
        write_if_changed(&path, &generated.source)?;
        for warning in &generated.warnings {
            println!("cargo:warning={warning}");
        }
        for input in &generated.inputs {
            println!("cargo:rerun-if-changed={}", input.display());
        }
        if self.toolchain.is_none() {
            hcr_abi::toolchain::rerun_if_toolchain_changes();
        }
        Ok(path)
    }

    /// [`Module::generate`], reporting errors to cargo (with file and line)
    /// and failing the build; a syntax error is left for rustc to report.
    /// For `build.rs`.
    pub fn build(self) {
        if let Err(e) = self.generate() {
            let out = self.out_dir.clone().or_else(|| env_path("OUT_DIR").ok());
            report(&e, out.map(|d| d.join(MODULE_FILE)));
        }
    }
}

/// Code generation for a host crate (from its `build.rs`): typed bindings to
/// its modules and the `Hcr` facade.
#[derive(Clone, Debug)]
pub struct Host {
    crate_dir: Option<PathBuf>,
    out_dir: Option<PathBuf>,
    cfg: Option<Cfg>,
    modules: Vec<PathBuf>,
    static_feature: Option<String>,
    file_name: String,
}

impl Default for Host {
    fn default() -> Host {
        Host {
            crate_dir: None,
            out_dir: None,
            cfg: None,
            modules: Vec::new(),
            static_feature: Some("static".into()),
            file_name: HOST_FILE.into(),
        }
    }
}

impl Host {
    /// For the crate whose build script is running, with the static switch
    /// on feature `static`.
    pub fn new() -> Host {
        Host::default()
    }

    /// The host crate, instead of `CARGO_MANIFEST_DIR`.
    pub fn crate_dir(mut self, dir: impl Into<PathBuf>) -> Host {
        self.crate_dir = Some(dir.into());
        self
    }

    /// Where to write, instead of `OUT_DIR`. Module libraries are expected in
    /// `deps/` of the profile directory three levels above it.
    pub fn out_dir(mut self, dir: impl Into<PathBuf>) -> Host {
        self.out_dir = Some(dir.into());
        self
    }

    /// The configuration to evaluate the modules' `#[cfg]` with, instead of
    /// the target's configuration and each module's default features.
    pub fn cfg(mut self, cfg: Cfg) -> Host {
        self.cfg = Some(cfg);
        self
    }

    /// A module crate (its directory, relative to the host crate).
    pub fn module(mut self, crate_dir: impl Into<PathBuf>) -> Host {
        self.modules.push(crate_dir.into());
        self
    }

    /// The file to write in the output directory, instead of [`HOST_FILE`]
    /// (for a crate that includes several sets of bindings).
    pub fn file_name(mut self, name: &str) -> Host {
        self.file_name = name.to_owned();
        self
    }

    /// The host feature that turns bindings into direct calls, or `None` for
    /// a host without a static build.
    pub fn static_feature(mut self, feature: Option<&str>) -> Host {
        self.static_feature = feature.map(str::to_owned);
        self
    }

    /// Generates the bindings without writing them.
    ///
    /// # Errors
    ///
    /// Every problem found, with file and line; see [`Error`].
    pub fn render(&self) -> Result<Generated, Error> {
        self.render_with(None)
    }

    /// [`Host::render`], with what earlier runs scanned of dependencies.
    fn render_with(&self, cache: Option<TypesCache>) -> Result<Generated, Error> {
        let dir = match &self.crate_dir {
            Some(dir) => dir.clone(),
            None => env_path("CARGO_MANIFEST_DIR")?,
        };
        let out = match &self.out_dir {
            Some(dir) => dir.clone(),
            None => env_path("OUT_DIR")?,
        };
        let (cfg, defaults) = match &self.cfg {
            Some(cfg) => (cfg.clone(), false),
            None => (target_cfg(), true),
        };
        let dependency_cfg = strip_features(&cfg);
        let modules = self
            .modules
            .iter()
            .map(|d| load_module(&dir.join(d), &cfg, defaults, &dependency_cfg, cache.as_ref()))
            .collect::<Result<Vec<_>, _>>()?;
        // OUT_DIR is <profile>/build/<package>-<hash>/out.
        let profile = out.ancestors().nth(3).unwrap_or(&out);
        let host = manifest::read(&dir).ok();
        let static_feature =
            self.static_feature.as_deref().filter(|f| host.as_ref().is_none_or(|h| h.features.contains(*f)));
        let caller = Caller { info: host.as_ref(), static_feature };
        let source = generate::host_file(&modules, caller, &profile.join("deps"), dll_affixes())?;
        let mut all: Vec<&ModuleSource> = modules.iter().collect();
        all.sort_by(|a, b| a.info.lib_name.cmp(&b.info.lib_name));
        let mut generated_inputs = inputs(&all);
        generated_inputs.push(dir.join("Cargo.toml"));
        Ok(Generated { source, inputs: generated_inputs, warnings: Vec::new() })
    }

    /// Writes [`HOST_FILE`] into the output directory and tells cargo when to
    /// run the build script again. Warns (through cargo) about a module the
    /// host does not list under `[dependencies]`, which cargo would then not
    /// build with the host (or would build twice, in two profiles, when it is
    /// listed under `[build-dependencies]`).
    ///
    /// # Errors
    ///
    /// As for [`Host::render`], and [`Error::Io`] if the file cannot be
    /// written.
    pub fn generate(&self) -> Result<PathBuf, Error> {
        let out = match &self.out_dir {
            Some(dir) => dir.clone(),
            None => env_path("OUT_DIR")?,
        };
        let generated = self.render_with(Some(types_cache(&out)))?;
        let dir = match &self.crate_dir {
            Some(dir) => dir.clone(),
            None => env_path("CARGO_MANIFEST_DIR")?,
        };
        if let Ok(host) = manifest::read(&dir) {
            for module in &self.modules {
                let Ok(m) = manifest::read(&dir.join(module)) else { continue };
                let listed =
                    |set: &std::collections::BTreeSet<String>| set.contains(&m.package) || set.contains(&m.lib_name);
                if !listed(&host.dependencies) {
                    let instead = if listed(&host.build_dependencies) { ", not [build-dependencies]," } else { "" };
                    println!(
                        "cargo:warning=host `{}` should list module crate `{}` under [dependencies]{instead} so that cargo builds the module's library once, with the host: add `{} = {{ path = {:?} }}` there",
                        host.package,
                        m.package,
                        m.package,
                        module.display().to_string()
                    );
                }
            }
        }
        let path = out.join(&self.file_name);
        write_if_changed(&path, &generated.source)?;
        for input in &generated.inputs {
            println!("cargo:rerun-if-changed={}", input.display());
        }
        Ok(path)
    }

    /// [`Host::generate`], reporting errors to cargo (with file and line) and
    /// failing the build; a syntax error in a module is left for rustc to
    /// report when it builds that module. For `build.rs`.
    pub fn build(self) {
        if let Err(e) = self.generate() {
            let out = self.out_dir.clone().or_else(|| env_path("OUT_DIR").ok());
            report(&e, out.map(|d| d.join(&self.file_name)));
        }
    }
}

/// File-name prefix and suffix of dynamic libraries for the target being
/// built (cargo tells build scripts the target OS).
fn dll_affixes() -> (&'static str, &'static str) {
    match std::env::var("CARGO_CFG_TARGET_OS").as_deref() {
        Ok("windows") => ("", ".dll"),
        Ok("macos" | "ios") => ("lib", ".dylib"),
        Ok(_) => ("lib", ".so"),
        Err(_) => (std::env::consts::DLL_PREFIX, std::env::consts::DLL_SUFFIX),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_toolchain_fingerprint_names_this_compiler_and_fits_a_descriptor() {
        let text = super::toolchain_fingerprint();
        assert!(text.starts_with("rustc ") && text.contains("; panic="), "{text}");
        assert!(text.len() <= hcr_abi::TOOLCHAIN_TEXT_CAPACITY, "{text}");
        // What a module stores: the text and this hcr-abi's version.
        let stored = hcr_abi::Fingerprint::new(&text);
        assert_eq!(stored.as_str(), format!("{text}; hcr-abi {}", hcr_abi::VERSION));
    }

    #[test]
    fn the_recorded_compiler_is_the_one_rustc_names() {
        // Compiled and tested by the same toolchain: the recorded version
        // and a run of `rustc -vV` now agree.
        assert!(include_str!(concat!(env!("OUT_DIR"), "/rustc-version.txt")).contains("commit-hash:"));
        assert_eq!(super::toolchain_fingerprint(), hcr_abi::toolchain::toolchain_text());
    }
}
