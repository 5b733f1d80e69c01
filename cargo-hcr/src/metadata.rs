//! The workspace as `cargo metadata` describes it: the host package, its
//! binary, and the modules it loads.

use std::ffi::OsStr;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use serde_json::Value;

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
    /// Runs `cargo metadata` in the current directory.
    ///
    /// # Errors
    ///
    /// [`Error::Spawn`] if cargo cannot be run, [`Error::Metadata`] if it
    /// fails or its output cannot be understood.
    pub fn load(cargo: &OsStr) -> Result<Metadata> {
        let output = Command::new(cargo)
            .args(["metadata", "--format-version", "1"])
            .stdin(Stdio::null())
            .output()
            .map_err(|source| Error::Spawn { program: "cargo metadata".into(), source })?;
        if !output.status.success() {
            return Err(Error::Metadata(String::from_utf8_lossy(&output.stderr).trim().to_owned()));
        }
        Metadata::parse(&String::from_utf8_lossy(&output.stdout))
    }

    /// Reads the output of `cargo metadata --format-version 1` (with its
    /// dependency graph, that is, without `--no-deps`).
    ///
    /// # Errors
    ///
    /// [`Error::Metadata`] if it is not such output.
    pub fn parse(json: &str) -> Result<Metadata> {
        let root: Value = serde_json::from_str(json).map_err(|e| Error::Metadata(e.to_string()))?;
        let bad = |what: &str| Error::Metadata(format!("unexpected output: {what}"));
        let packages = root["packages"]
            .as_array()
            .ok_or_else(|| bad("no packages"))?
            .iter()
            .map(|p| package(p).ok_or_else(|| bad("a package without name, id or manifest path")))
            .collect::<Result<Vec<_>>>()?;
        let members = strings(&root["workspace_members"]);
        let nodes = root["resolve"]["nodes"].as_array().ok_or_else(|| bad("no dependency graph"))?;
        let deps = nodes
            .iter()
            .filter_map(|node| {
                let id = node["id"].as_str()?.to_owned();
                let deps = node["deps"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|dep| {
                        let kinds: Vec<&Value> = dep["dep_kinds"].as_array().into_iter().flatten().collect();
                        Some(Dep {
                            id: dep["pkg"].as_str()?.to_owned(),
                            normal: kinds.iter().any(|k| k["kind"].is_null()),
                            build: kinds.iter().any(|k| k["kind"] == "build"),
                        })
                    })
                    .collect();
                Some((id, deps))
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
        self.packages
            .iter()
            .find(|p| p.name == name && self.members.contains(&p.id))
            .ok_or_else(|| Error::UnknownPackage(name.to_owned()))
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
            .ok_or_else(|| Error::UnknownPackage(name.to_owned()))?;
        if package.is_module() { Ok(package) } else { Err(Error::NotAModule(name.to_owned())) }
    }

    /// The modules `host` depends on, in the order cargo lists them: its
    /// normal or build dependencies that are local packages with a `cdylib`
    /// library and build their registration with `hcr-build` (which leaves
    /// out `hcr-runtime`'s own `cdylib`, for hosts in other languages).
    pub fn modules_of(&self, host: &Package) -> Vec<&Package> {
        self.deps_of(&host.id)
            .iter()
            .filter(|dep| dep.normal || dep.build)
            .filter_map(|dep| self.by_id(&dep.id))
            .filter(|p| p.is_module() && self.builds_with_hcr_build(p))
            .collect()
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
/// [`Error::NoBinary`] or [`Error::SeveralBinaries`].
pub fn host_binary(host: &Package, bin: Option<&str>) -> Result<String> {
    if let Some(bin) = bin {
        return if host.bins.iter().any(|b| b == bin) {
            Ok(bin.to_owned())
        } else {
            Err(Error::Usage(format!("package `{}` has no binary `{bin}`", host.name)))
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

fn package(p: &Value) -> Option<Package> {
    let targets = p["targets"].as_array().map(Vec::as_slice).unwrap_or_default();
    let has = |target: &Value, field: &str, value: &str| strings(&target[field]).iter().any(|s| s == value);
    Some(Package {
        name: p["name"].as_str()?.to_owned(),
        id: p["id"].as_str()?.to_owned(),
        dir: PathBuf::from(p["manifest_path"].as_str()?).parent()?.to_owned(),
        local: p["source"].is_null(),
        cdylib: targets.iter().any(|t| has(t, "kind", "cdylib") && has(t, "crate_types", "cdylib")),
        bins: targets
            .iter()
            .filter(|t| has(t, "kind", "bin"))
            .filter_map(|t| Some(t["name"].as_str()?.to_owned()))
            .collect(),
        default_run: p["default_run"].as_str().map(str::to_owned),
    })
}

fn strings(value: &Value) -> Vec<String> {
    value.as_array().into_iter().flatten().filter_map(|s| s.as_str().map(str::to_owned)).collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn target(name: &str, kinds: &[&str]) -> Value {
        json!({ "name": name, "kind": kinds, "crate_types": kinds })
    }

    fn package(name: &str, source: Option<&str>, targets: Vec<Value>) -> Value {
        json!({
            "name": name,
            "id": format!("id-{name}"),
            "manifest_path": format!("/ws/{name}/Cargo.toml"),
            "source": source,
            "targets": targets,
            "default_run": null,
        })
    }

    fn dep(name: &str, kinds: &[Option<&str>]) -> Value {
        let kinds: Vec<Value> = kinds.iter().map(|k| json!({ "kind": k, "target": null })).collect();
        json!({ "name": name, "pkg": format!("id-{name}"), "dep_kinds": kinds })
    }

    /// A host with one dependency of every sort; only `normal`, `build` and
    /// `both` are modules.
    fn workspace() -> Metadata {
        let with_hcr_build =
            |name: &str| json!({ "id": format!("id-{name}"), "deps": [dep("hcr-build", &[Some("build")])] });
        let root = json!({
            "packages": [
                package("host", None, vec![target("host", &["bin"]), target("tool", &["bin"])]),
                package("normal", None, vec![json!({ "name": "normal", "kind": ["cdylib", "rlib"], "crate_types": ["cdylib", "rlib"] })]),
                package("build", None, vec![target("build", &["cdylib"]), target("build", &["custom-build"])]),
                package("both", None, vec![target("both", &["cdylib"])]),
                package("dev", None, vec![target("dev", &["cdylib"])]),
                package("plain", None, vec![target("plain", &["lib"])]),
                package("registry", Some("registry+https://example.invalid/index"), vec![target("registry", &["cdylib"])]),
                package("runtime", None, vec![target("runtime", &["rlib", "cdylib"])]),
                package("unused", None, vec![target("unused", &["cdylib"])]),
                package("hcr-build", None, vec![target("hcr_build", &["lib"])]),
            ],
            "workspace_members": ["id-host", "id-normal", "id-build", "id-unused", "id-hcr-build"],
            "resolve": { "nodes": [
                { "id": "id-host", "deps": [
                    dep("normal", &[None]),
                    dep("build", &[Some("build")]),
                    dep("both", &[Some("dev"), Some("build")]),
                    dep("dev", &[Some("dev")]),
                    dep("plain", &[None]),
                    dep("registry", &[None]),
                    dep("runtime", &[None]),
                    dep("hcr-build", &[Some("build")]),
                ] },
                with_hcr_build("normal"),
                with_hcr_build("build"),
                with_hcr_build("both"),
                with_hcr_build("dev"),
                with_hcr_build("plain"),
                with_hcr_build("registry"),
                // A cdylib that uses no hcr-build, like hcr-runtime's own.
                { "id": "id-runtime", "deps": [dep("normal", &[None])] },
            ] },
        });
        Metadata::parse(&root.to_string()).unwrap()
    }

    #[test]
    fn modules_are_local_cdylibs_among_normal_and_build_dependencies() {
        let ws = workspace();
        let host = ws.member("host").unwrap();
        let names: Vec<&str> = ws.modules_of(host).iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["normal", "build", "both"]);
        assert_eq!(ws.modules_of(ws.member("normal").unwrap()), Vec::<&Package>::new());
        assert_eq!(ws.member("build").unwrap().dir, PathBuf::from("/ws/build"));
    }

    #[test]
    fn named_modules_must_be_local_cdylibs() {
        let ws = workspace();
        assert_eq!(ws.module("unused").unwrap().name, "unused");
        assert_eq!(ws.module("runtime").unwrap().name, "runtime", "named, hcr-build is not needed");
        assert_eq!(ws.module("dev").unwrap().name, "dev", "any package of the graph");
        assert!(matches!(ws.module("plain"), Err(Error::NotAModule(n)) if n == "plain"));
        assert!(matches!(ws.module("registry"), Err(Error::NotAModule(_))));
        assert!(matches!(ws.module("nothing"), Err(Error::UnknownPackage(_))));
        assert!(matches!(ws.member("dev"), Err(Error::UnknownPackage(_))), "not a member");
    }

    #[test]
    fn the_host_binary() {
        let ws = workspace();
        let host = ws.member("host").unwrap();
        assert_eq!(host.bins, ["host", "tool"]);
        assert_eq!(host_binary(host, None).unwrap(), "host", "named like the package");
        assert_eq!(host_binary(host, Some("tool")).unwrap(), "tool");
        assert!(matches!(host_binary(host, Some("nope")), Err(Error::Usage(_))));

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
        let no_deps = json!({ "packages": [], "workspace_members": [], "resolve": null });
        assert!(matches!(Metadata::parse(&no_deps.to_string()), Err(Error::Metadata(_))));
        assert!(matches!(Metadata::parse("cargo says no"), Err(Error::Metadata(_))));
    }
}
