//! The workspace as `cargo metadata` describes it (read with the
//! `cargo_metadata` crate): the host package, its binary, and the modules it
//! loads.

use std::ffi::OsStr;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use cargo_metadata::{DependencyKind, MetadataCommand, TargetKind};

use crate::error::{Error, Result};

/// The package whose build-script support every module uses.
const HCR_BUILD: &str = "hcr-build";

/// A package of the workspace or one of its dependencies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Package {
    /// Its name, as `cargo build -p` takes it.
    pub name: String,
    /// Cargo's id for it, as in build messages.
    pub id: String,
    /// The directory of its manifest.
    pub dir: PathBuf,
    /// Whether it comes from a path on this machine (not a registry or git).
    pub local: bool,
    /// Whether its library is built as a `cdylib`, the form hcr loads.
    pub cdylib: bool,
    /// Its library target's name (the crate name, `-` made `_`), if any.
    pub lib: Option<String>,
    /// Its library's root source file, if it has a library.
    pub lib_src: Option<PathBuf>,
    /// Its binary targets.
    pub bins: Vec<String>,
    /// Its `default-run` binary, if it names one.
    pub default_run: Option<String>,
}

impl Package {
    /// Whether hcr can load it as a module that can be edited here.
    pub fn is_module(&self) -> bool {
        self.local && self.cdylib
    }
}

/// How a host depends on a module it loads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listed {
    /// Under `[dependencies]`: cargo builds the module once, with the host.
    Normal,
    /// Only under `[build-dependencies]`, the older layout: cargo builds the
    /// module a second time, with build-script settings.
    BuildOnly,
}

/// What cargo-hcr needs of `cargo metadata`.
#[derive(Debug)]
pub struct Metadata {
    packages: Vec<Package>,
    members: Vec<String>,
    /// For each package id, its dependencies.
    deps: Vec<(String, Vec<Dep>)>,
}

/// A dependency in cargo's resolved graph.
#[derive(Debug)]
struct Dep {
    /// The package it resolved to.
    id: String,
    /// Whether it is a normal dependency.
    normal: bool,
    /// Whether it is a build dependency.
    build: bool,
}

impl Metadata {
    /// Runs `cargo metadata` in the current directory, for the platform
    /// `rustc` builds for by default (so that crates only other platforms
    /// use need not be downloaded).
    ///
    /// # Errors
    ///
    /// [`Error::Metadata`] if cargo fails or its output cannot be read.
    pub fn load(cargo: &OsStr) -> Result<Metadata> {
        let mut command = MetadataCommand::new();
        command.cargo_path(cargo);
        if let Some(triple) = host_triple() {
            command.other_options(vec!["--filter-platform".to_owned(), triple]);
        }
        Metadata::from(command.exec().map_err(Error::Metadata)?)
    }

    /// Reads the output of `cargo metadata --format-version 1` (with its
    /// dependency graph, that is, without `--no-deps`).
    ///
    /// # Errors
    ///
    /// [`Error::Metadata`] if it is not such output.
    #[cfg(test)]
    pub fn parse(json: &str) -> Result<Metadata> {
        Metadata::from(MetadataCommand::parse(json).map_err(Error::Metadata)?)
    }

    fn from(metadata: cargo_metadata::Metadata) -> Result<Metadata> {
        let packages = metadata.packages.iter().map(package).collect();
        let members = metadata.workspace_members.iter().map(|id| id.repr.clone()).collect();
        let Some(resolve) = &metadata.resolve else {
            return Err(Error::Metadata(cargo_metadata::Error::CargoMetadata {
                stderr: "no dependency graph in the output of cargo metadata".into(),
            }));
        };
        let deps = resolve
            .nodes
            .iter()
            .map(|node| {
                let deps = node
                    .deps
                    .iter()
                    .map(|dep| Dep {
                        id: dep.pkg.repr.clone(),
                        normal: dep.dep_kinds.iter().any(|k| k.kind == DependencyKind::Normal),
                        build: dep.dep_kinds.iter().any(|k| k.kind == DependencyKind::Build),
                    })
                    .collect();
                (node.id.repr.clone(), deps)
            })
            .collect();
        Ok(Metadata { packages, members, deps })
    }

    /// The workspace member called `name`.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownPackage`] if there is none.
    pub fn member(&self, name: &str) -> Result<&Package> {
        self.members()
            .find(|p| p.name == name)
            .ok_or_else(|| Error::UnknownPackage { name: name.to_owned(), known: self.member_names() })
    }

    fn members(&self) -> impl Iterator<Item = &Package> {
        self.packages.iter().filter(|p| self.members.contains(&p.id))
    }

    fn member_names(&self) -> String {
        let mut names: Vec<&str> = self.members().map(|p| p.name.as_str()).collect();
        names.sort_unstable();
        names.join(", ")
    }

    /// The host to run when none was named: the only workspace member with
    /// a binary and a module among its dependencies.
    ///
    /// # Errors
    ///
    /// [`Error::NoHost`] when there is none or there are several.
    pub fn default_host(&self) -> Result<&Package> {
        let hosts: Vec<&Package> =
            self.members().filter(|p| !p.bins.is_empty() && !self.modules_of(p).is_empty()).collect();
        match hosts.as_slice() {
            [only] => Ok(only),
            [] => Err(Error::NoHost(format!(
                "no package of this workspace has a binary that depends on a module: name the host with -p (one of {})",
                self.member_names()
            ))),
            several => {
                let names: Vec<&str> = several.iter().map(|p| p.name.as_str()).collect();
                Err(Error::NoHost(format!(
                    "several hosts in this workspace ({}): choose one with -p",
                    names.join(", ")
                )))
            }
        }
    }

    /// The module package called `name`: a workspace member, or else any
    /// package of the dependency graph.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownPackage`] if there is none, [`Error::NotAModule`] if
    /// its library is not a local `cdylib`.
    pub fn module(&self, name: &str) -> Result<&Package> {
        let package = self
            .member(name)
            .ok()
            .or_else(|| self.packages.iter().find(|p| p.name == name))
            .ok_or_else(|| Error::UnknownPackage { name: name.to_owned(), known: self.member_names() })?;
        if package.is_module() { Ok(package) } else { Err(Error::NotAModule(name.to_owned())) }
    }

    /// The modules `host` depends on, in the order cargo lists them, and how
    /// it lists them: its normal or build dependencies that are local
    /// packages with a `cdylib` library and build their registration with
    /// `hcr-build` (which leaves out `hcr-runtime`'s own `cdylib`, for hosts
    /// in other languages).
    pub fn modules_of(&self, host: &Package) -> Vec<(&Package, Listed)> {
        self.deps_of(&host.id)
            .iter()
            .filter(|dep| dep.normal || dep.build)
            .filter_map(|dep| {
                let package = self.by_id(&dep.id)?;
                let listed = if dep.normal { Listed::Normal } else { Listed::BuildOnly };
                Some((package, listed))
            })
            .filter(|(p, _)| p.is_module() && self.builds_with_hcr_build(p))
            .collect()
    }

    /// The local packages (path dependencies) that `roots` depend on,
    /// directly or through other local packages, as normal or build
    /// dependencies, other than `roots` themselves: a crate of types the
    /// host and its modules share, say. Their sources are the host's too.
    pub fn local_dependencies(&self, roots: &[&Package]) -> Vec<&Package> {
        let mut found = Vec::new();
        let mut stack: Vec<&str> = roots.iter().map(|p| p.id.as_str()).collect();
        let mut seen: std::collections::BTreeSet<&str> = stack.iter().copied().collect();
        while let Some(id) = stack.pop() {
            for dep in self.deps_of(id).iter().filter(|d| d.normal || d.build) {
                if !seen.insert(dep.id.as_str()) {
                    continue;
                }
                // Registry and git packages cannot depend on local ones.
                if let Some(package) = self.by_id(&dep.id).filter(|p| p.local) {
                    found.push(package);
                    stack.push(&package.id);
                }
            }
        }
        found
    }

    fn deps_of(&self, id: &str) -> &[Dep] {
        self.deps.iter().find(|(node, _)| node == id).map(|(_, deps)| deps.as_slice()).unwrap_or_default()
    }

    fn by_id(&self, id: &str) -> Option<&Package> {
        self.packages.iter().find(|p| p.id == id)
    }

    /// Whether `package` has `hcr-build` among its build dependencies.
    fn builds_with_hcr_build(&self, package: &Package) -> bool {
        self.deps_of(&package.id).iter().any(|d| d.build && self.by_id(&d.id).is_some_and(|p| p.name == HCR_BUILD))
    }
}

/// The binary of `host` to run: `bin` if given, else its `default-run`, its
/// only binary, or the one named like the package.
///
/// # Errors
///
/// [`Error::Usage`] for an unknown `bin`, [`Error::NoBinary`] or
/// [`Error::SeveralBinaries`].
pub fn host_binary(host: &Package, bin: Option<&str>) -> Result<String> {
    if let Some(bin) = bin {
        return if host.bins.iter().any(|b| b == bin) {
            Ok(bin.to_owned())
        } else {
            Err(Error::Usage(format!(
                "package `{}` has no binary `{bin}`: choose one of {} with --bin",
                host.name,
                host.bins.join(", ")
            )))
        };
    }
    if let Some(default) = &host.default_run {
        return Ok(default.clone());
    }
    match host.bins.as_slice() {
        [] => Err(Error::NoBinary(host.name.clone())),
        [only] => Ok(only.clone()),
        several => several
            .iter()
            .find(|b| **b == host.name)
            .cloned()
            .ok_or_else(|| Error::SeveralBinaries { package: host.name.clone(), names: several.join(", ") }),
    }
}

/// The target triple `rustc` builds for by default, from `rustc -vV`.
pub fn host_triple() -> Option<String> {
    let rustc = std::env::var_os("RUSTC").filter(|r| !r.is_empty()).unwrap_or_else(|| "rustc".into());
    let output = Command::new(rustc).arg("-vV").stdin(Stdio::null()).stderr(Stdio::null()).output().ok()?;
    let text = String::from_utf8(output.stdout).ok()?;
    text.lines().find_map(|line| line.strip_prefix("host: ")).map(str::to_owned)
}

fn package(p: &cargo_metadata::Package) -> Package {
    let lib = p.targets.iter().find(|t| t.is_lib() || t.is_cdylib() || t.is_dylib() || t.is_staticlib());
    Package {
        name: p.name.to_string(),
        id: p.id.repr.clone(),
        dir: p.manifest_path.parent().map(|d| d.as_std_path().to_owned()).unwrap_or_default(),
        local: p.source.is_none(),
        cdylib: p.targets.iter().any(|t| t.kind.contains(&TargetKind::CDyLib)),
        lib: lib.map(|t| t.name.replace('-', "_")),
        lib_src: lib.map(|t| t.src_path.as_std_path().to_owned()),
        bins: p.targets.iter().filter(|t| t.is_bin()).map(|t| t.name.clone()).collect(),
        default_run: p.default_run.clone(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    fn target(name: &str, kinds: &[&str]) -> Value {
        json!({ "name": name, "kind": kinds, "crate_types": kinds, "src_path": format!("/ws/{name}/src/lib.rs"),
                "edition": "2024", "doctest": false, "test": false, "doc": false })
    }

    fn package(name: &str, source: Option<&str>, targets: Vec<Value>) -> Value {
        json!({
            "name": name,
            "version": "0.1.0",
            "id": format!("id-{name}"),
            "manifest_path": format!("/ws/{name}/Cargo.toml"),
            "source": source,
            "targets": targets,
            "default_run": null,
            "dependencies": [],
            "features": {},
            "license": null, "license_file": null, "description": null,
            "edition": "2024", "metadata": null, "publish": null,
            "authors": [], "categories": [], "keywords": [], "readme": null, "repository": null,
            "homepage": null, "documentation": null, "links": null, "rust_version": null,
        })
    }

    fn dep(name: &str, kinds: &[Option<&str>]) -> Value {
        let kinds: Vec<Value> = kinds.iter().map(|k| json!({ "kind": k, "target": null })).collect();
        json!({ "name": name, "pkg": format!("id-{name}"), "dep_kinds": kinds })
    }

    fn node(name: &str, deps: Vec<Value>) -> Value {
        json!({ "id": format!("id-{name}"), "deps": deps, "dependencies": [], "features": [] })
    }

    fn metadata(packages: Vec<Value>, members: &[&str], nodes: Vec<Value>) -> Metadata {
        let root = json!({
            "packages": packages,
            "workspace_members": members.iter().map(|m| format!("id-{m}")).collect::<Vec<_>>(),
            "workspace_default_members": [],
            "resolve": { "nodes": nodes, "root": null },
            "workspace_root": "/ws",
            "target_directory": "/ws/target",
            "version": 1,
            "metadata": null,
        });
        Metadata::parse(&root.to_string()).unwrap()
    }

    /// A host with one dependency of every sort; only `normal`, `build` and
    /// `both` are modules.
    fn workspace() -> Metadata {
        let with_hcr_build = |name: &str| node(name, vec![dep("hcr-build", &[Some("build")])]);
        metadata(
            vec![
                package("host", None, vec![target("host", &["bin"]), target("tool", &["bin"])]),
                package("normal", None, vec![target("normal", &["cdylib", "rlib"])]),
                package(
                    "build",
                    None,
                    vec![target("build", &["cdylib"]), target("build-script-build", &["custom-build"])],
                ),
                package("both", None, vec![target("both", &["cdylib"])]),
                package("dev", None, vec![target("dev", &["cdylib"])]),
                package("plain", None, vec![target("plain", &["lib"])]),
                package(
                    "registry",
                    Some("registry+https://example.invalid/index"),
                    vec![target("registry", &["cdylib"])],
                ),
                package("runtime", None, vec![target("runtime", &["rlib", "cdylib"])]),
                package("unused", None, vec![target("unused", &["cdylib"])]),
                package("hcr-build", None, vec![target("hcr_build", &["lib"])]),
            ],
            &["host", "normal", "build", "unused", "hcr-build"],
            vec![
                node(
                    "host",
                    vec![
                        dep("normal", &[None]),
                        dep("build", &[Some("build")]),
                        dep("both", &[Some("dev"), Some("build")]),
                        dep("dev", &[Some("dev")]),
                        dep("plain", &[None]),
                        dep("registry", &[None]),
                        dep("runtime", &[None]),
                        dep("hcr-build", &[Some("build")]),
                    ],
                ),
                with_hcr_build("normal"),
                with_hcr_build("build"),
                with_hcr_build("both"),
                with_hcr_build("dev"),
                with_hcr_build("plain"),
                with_hcr_build("registry"),
                // A cdylib that uses no hcr-build, like hcr-runtime's own.
                node("runtime", vec![dep("normal", &[None])]),
            ],
        )
    }

    #[test]
    fn modules_are_local_cdylibs_among_normal_and_build_dependencies() {
        let ws = workspace();
        let host = ws.member("host").unwrap();
        let found: Vec<(&str, Listed)> = ws.modules_of(host).iter().map(|(p, l)| (p.name.as_str(), *l)).collect();
        assert_eq!(found, [("normal", Listed::Normal), ("build", Listed::BuildOnly), ("both", Listed::BuildOnly)]);
        assert!(ws.modules_of(ws.member("normal").unwrap()).is_empty());
        assert_eq!(ws.member("build").unwrap().dir, PathBuf::from("/ws/build"));
        assert_eq!(ws.member("normal").unwrap().lib.as_deref(), Some("normal"));
    }

    #[test]
    fn local_dependencies_are_found_through_local_packages() {
        let ws = metadata(
            vec![
                package("host", None, vec![target("host", &["bin"])]),
                package("logic", None, vec![target("logic", &["cdylib", "rlib"])]),
                package("shared", None, vec![target("shared", &["lib"])]),
                package("math", None, vec![target("math", &["lib"])]),
                package("codegen", None, vec![target("codegen", &["lib"])]),
                package("tests-only", None, vec![target("tests-only", &["lib"])]),
                package("registry", Some("registry+https://example.invalid/index"), vec![target("registry", &["lib"])]),
            ],
            &["host", "logic", "shared"],
            vec![
                node(
                    "host",
                    vec![
                        dep("logic", &[None]),
                        dep("shared", &[None]),
                        dep("registry", &[None]),
                        dep("tests-only", &[Some("dev")]),
                    ],
                ),
                node("logic", vec![dep("shared", &[None]), dep("codegen", &[Some("build")])]),
                node("shared", vec![dep("math", &[None])]),
                node("math", vec![]),
                node("codegen", vec![]),
                node("tests-only", vec![]),
                node("registry", vec![]),
            ],
        );
        let roots = [ws.member("logic").unwrap(), ws.member("host").unwrap()];
        let mut found: Vec<&str> = ws.local_dependencies(&roots).iter().map(|p| p.name.as_str()).collect();
        found.sort_unstable();
        assert_eq!(found, ["codegen", "math", "shared"]);
    }

    #[test]
    fn named_modules_must_be_local_cdylibs() {
        let ws = workspace();
        assert_eq!(ws.module("unused").unwrap().name, "unused");
        assert_eq!(ws.module("runtime").unwrap().name, "runtime", "named, hcr-build is not needed");
        assert_eq!(ws.module("dev").unwrap().name, "dev", "any package of the graph");
        assert!(matches!(ws.module("plain"), Err(Error::NotAModule(n)) if n == "plain"));
        assert!(matches!(ws.module("registry"), Err(Error::NotAModule(_))));
        let unknown = ws.module("nothing").unwrap_err();
        assert_eq!(
            unknown.to_string(),
            "no package `nothing` in this workspace: choose one of build, hcr-build, host, normal, unused"
        );
        assert!(matches!(ws.member("dev"), Err(Error::UnknownPackage { .. })), "not a member");
    }

    #[test]
    fn the_default_host_is_the_only_one() {
        assert_eq!(workspace().default_host().unwrap().name, "host");
        let none =
            metadata(vec![package("lib", None, vec![target("lib", &["lib"])])], &["lib"], vec![node("lib", vec![])]);
        assert!(none.default_host().unwrap_err().to_string().contains("name the host with -p (one of lib)"));
        let module = |name: &str| node(name, vec![dep("m", &[None])]);
        let two = metadata(
            vec![
                package("a", None, vec![target("a", &["bin"])]),
                package("b", None, vec![target("b", &["bin"])]),
                package("m", None, vec![target("m", &["cdylib", "rlib"])]),
                package("hcr-build", None, vec![target("hcr_build", &["lib"])]),
            ],
            &["a", "b", "m"],
            vec![module("a"), module("b"), node("m", vec![dep("hcr-build", &[Some("build")])])],
        );
        assert_eq!(
            two.default_host().unwrap_err().to_string(),
            "several hosts in this workspace (a, b): choose one with -p"
        );
    }

    #[test]
    fn the_host_binary() {
        let ws = workspace();
        let host = ws.member("host").unwrap();
        assert_eq!(host.bins, ["host", "tool"]);
        assert_eq!(host_binary(host, None).unwrap(), "host", "named like the package");
        assert_eq!(host_binary(host, Some("tool")).unwrap(), "tool");
        assert!(
            matches!(host_binary(host, Some("nope")), Err(Error::Usage(m)) if m.ends_with("choose one of host, tool with --bin"))
        );

        let mut other = host.clone();
        other.name = "other".into();
        assert!(matches!(host_binary(&other, None), Err(Error::SeveralBinaries { .. })));
        other.default_run = Some("tool".into());
        assert_eq!(host_binary(&other, None).unwrap(), "tool");
        other.default_run = None;
        other.bins = vec!["only".into()];
        assert_eq!(host_binary(&other, None).unwrap(), "only");
        other.bins.clear();
        assert!(matches!(host_binary(&other, None), Err(Error::NoBinary(_))));
    }

    #[test]
    fn output_without_a_graph_is_refused() {
        let no_deps = json!({ "packages": [], "workspace_members": [], "resolve": null, "workspace_root": "/ws",
                              "target_directory": "/ws/target", "version": 1, "metadata": null });
        assert!(matches!(Metadata::parse(&no_deps.to_string()), Err(Error::Metadata(_))));
        assert!(matches!(Metadata::parse("cargo says no"), Err(Error::Metadata(_))));
    }

    #[test]
    fn the_host_triple_is_rustcs() {
        let triple = host_triple().expect("rustc runs");
        assert!(triple.contains('-'), "{triple}");
    }
}
