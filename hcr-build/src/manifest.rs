//! What code generation needs from a `Cargo.toml`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::error::Error;

/// A crate, as its manifest describes it.
#[derive(Clone, Debug)]
pub(crate) struct CrateInfo {
    pub(crate) dir: PathBuf,
    pub(crate) manifest: PathBuf,
    pub(crate) package: String,
    /// The library target's name: the module's name and file-name stem.
    pub(crate) lib_name: String,
    /// The library's root source file.
    pub(crate) root: PathBuf,
    pub(crate) crate_types: Vec<String>,
    /// A procedural-macro crate (`[lib] proc-macro = true`): it runs in the
    /// compiler, so none of its types can reach a module's signatures.
    pub(crate) proc_macro: bool,
    /// Names under which it depends on other packages (keys and package
    /// names, as written and with `-` as `_`).
    pub(crate) dependencies: BTreeSet<String>,
    /// Those of `dependencies` that are optional.
    pub(crate) optional_dependencies: BTreeSet<String>,
    /// Names under which its build script depends on other packages.
    pub(crate) build_dependencies: BTreeSet<String>,
    /// Every feature it declares.
    pub(crate) features: BTreeSet<String>,
    /// The features `default` enables, transitively.
    pub(crate) default_features: BTreeSet<String>,
    /// What each feature enables, as written.
    pub(crate) feature_map: BTreeMap<String, Vec<String>>,
    /// Its `[dependencies]` that are local crates (a `path`, directly or
    /// through the workspace), whose types code generation reads.
    pub(crate) path_dependencies: Vec<PathDependency>,
}

/// A dependency on a local crate.
#[derive(Clone, Debug)]
pub(crate) struct PathDependency {
    /// The name code uses for it (the dependency's key, `-` as `_`).
    pub(crate) name: String,
    /// Its directory.
    pub(crate) dir: PathBuf,
    /// Whether its default features are on.
    pub(crate) default_features: bool,
    /// The features the dependency asks for.
    pub(crate) features: Vec<String>,
}

impl CrateInfo {
    /// Whether the crate can name crate `name` (`-` or `_`) in every build:
    /// a non-optional dependency.
    pub(crate) fn always_depends_on(&self, name: &str) -> bool {
        let name = name.replace('-', "_");
        self.dependencies.contains(&name) && !self.optional_dependencies.contains(&name)
    }

    /// Whether the crate can name crate `name` when `feature` is on: a
    /// non-optional dependency, or an optional one that the feature enables
    /// (directly or through the features it enables).
    pub(crate) fn depends_on_with(&self, name: &str, feature: &str) -> bool {
        let name = name.replace('-', "_");
        if !self.dependencies.contains(&name) {
            return false;
        }
        if !self.optional_dependencies.contains(&name) {
            return true;
        }
        let mut seen = BTreeSet::new();
        let mut work = vec![feature.to_owned()];
        while let Some(f) = work.pop() {
            if !seen.insert(f.clone()) {
                continue;
            }
            for enabled in self.feature_map.get(&f).into_iter().flatten() {
                let target = enabled.strip_prefix("dep:").unwrap_or(enabled);
                let target = target.split('/').next().unwrap_or(target).trim_end_matches('?');
                if target.replace('-', "_") == name {
                    return true;
                }
                work.push(enabled.clone());
            }
        }
        false
    }
}

/// The `[workspace.dependencies]` of the workspace that `dir` is in, with
/// the workspace root, if `dir` is in one.
fn workspace_dependencies(dir: &Path) -> Option<(PathBuf, toml::Table)> {
    for ancestor in dir.ancestors() {
        let manifest = ancestor.join("Cargo.toml");
        let Ok(text) = std::fs::read_to_string(&manifest) else { continue };
        let Ok(table) = text.parse::<toml::Table>() else { continue };
        if let Some(workspace) = table.get("workspace") {
            let deps = workspace.get("dependencies").and_then(|d| d.as_table()).cloned().unwrap_or_default();
            return Some((ancestor.to_owned(), deps));
        }
    }
    None
}

/// The local crates among `deps` (a `[dependencies]` table).
fn path_dependencies(dir: &Path, deps: Option<&toml::Value>) -> Vec<PathDependency> {
    let Some(deps) = deps.and_then(|d| d.as_table()) else { return Vec::new() };
    let mut workspace = None;
    let mut out = Vec::new();
    for (key, spec) in deps {
        let features = |spec: &toml::Value| -> Vec<String> {
            spec.get("features")
                .and_then(|f| f.as_array())
                .map(|a| a.iter().filter_map(|x| x.as_str().map(str::to_owned)).collect())
                .unwrap_or_default()
        };
        let mut wanted = features(spec);
        let mut default_features = spec.get("default-features").and_then(|d| d.as_bool()).unwrap_or(true);
        let path = if let Some(path) = spec.get("path").and_then(|p| p.as_str()) {
            dir.join(path)
        } else if spec.get("workspace").and_then(|w| w.as_bool()) == Some(true) {
            let (root, table) = match workspace.get_or_insert_with(|| workspace_dependencies(dir)) {
                Some(found) => found.clone(),
                None => continue,
            };
            let Some(inherited) = table.get(key) else { continue };
            let Some(path) = inherited.get("path").and_then(|p| p.as_str()) else { continue };
            wanted.extend(features(inherited));
            if inherited.get("default-features").and_then(|d| d.as_bool()) == Some(false) {
                default_features = spec.get("default-features").and_then(|d| d.as_bool()).unwrap_or(false);
            }
            root.join(path)
        } else {
            continue;
        };
        out.push(PathDependency { name: key.replace('-', "_"), dir: path, default_features, features: wanted });
    }
    out
}

pub(crate) fn read(dir: &Path) -> Result<CrateInfo, Error> {
    let manifest = dir.join("Cargo.toml");
    let text = std::fs::read_to_string(&manifest).map_err(|source| Error::Io { path: manifest.clone(), source })?;
    let bad = |message: String| Error::Manifest { path: manifest.clone(), message };
    let table: toml::Table = text.parse().map_err(|e| bad(format!("not valid TOML: {e}")))?;
    let package = table
        .get("package")
        .and_then(|p| p.get("name"))
        .and_then(|n| n.as_str())
        .ok_or_else(|| bad("no [package] name".into()))?
        .to_owned();
    let lib = table.get("lib");
    let lib_name = lib
        .and_then(|l| l.get("name"))
        .and_then(|n| n.as_str())
        .map_or_else(|| package.replace('-', "_"), str::to_owned);
    let root = dir.join(lib.and_then(|l| l.get("path")).and_then(|p| p.as_str()).unwrap_or("src/lib.rs"));
    let crate_types = lib
        .and_then(|l| l.get("crate-type"))
        .and_then(|t| t.as_array())
        .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
        .unwrap_or_default();
    let proc_macro = lib
        .and_then(|l| l.get("proc-macro").or_else(|| l.get("proc_macro")))
        .and_then(|p| p.as_bool())
        .unwrap_or(false);
    let names = |section: &str, only_optional: bool| {
        let mut names = BTreeSet::new();
        let mut add = |deps: Option<&toml::Value>| {
            if let Some(deps) = deps.and_then(|d| d.as_table()) {
                for (name, spec) in deps {
                    if only_optional && spec.get("optional").and_then(|o| o.as_bool()) != Some(true) {
                        continue;
                    }
                    names.insert(name.clone());
                    names.insert(name.replace('-', "_"));
                    if let Some(package) = spec.get("package").and_then(|p| p.as_str()) {
                        names.insert(package.to_owned());
                        names.insert(package.replace('-', "_"));
                    }
                }
            }
        };
        add(table.get(section));
        if let Some(targets) = table.get("target").and_then(|t| t.as_table()) {
            for target in targets.values() {
                add(target.get(section));
            }
        }
        names
    };
    let dependencies = names("dependencies", false);
    let optional_dependencies = names("dependencies", true);
    let mut path_deps = path_dependencies(dir, table.get("dependencies"));
    if let Some(targets) = table.get("target").and_then(|t| t.as_table()) {
        for target in targets.values() {
            path_deps.extend(path_dependencies(dir, target.get("dependencies")));
        }
    }
    let build_dependencies = names("build-dependencies", false);
    let features: BTreeMap<String, Vec<String>> = table
        .get("features")
        .and_then(|f| f.as_table())
        .map(|f| {
            f.iter()
                .map(|(k, v)| {
                    let list = v
                        .as_array()
                        .map(|a| a.iter().filter_map(|x| x.as_str().map(str::to_owned)).collect())
                        .unwrap_or_default();
                    (k.clone(), list)
                })
                .collect()
        })
        .unwrap_or_default();
    let mut default_features = BTreeSet::new();
    let mut work: Vec<String> = features.get("default").cloned().unwrap_or_default();
    while let Some(feature) = work.pop() {
        if feature.contains(':') || feature.contains('/') {
            continue;
        }
        if default_features.insert(feature.clone()) {
            work.extend(features.get(&feature).cloned().unwrap_or_default());
        }
    }
    Ok(CrateInfo {
        dir: dir.to_owned(),
        manifest,
        package,
        lib_name,
        root,
        crate_types,
        proc_macro,
        dependencies,
        optional_dependencies,
        build_dependencies,
        features: features.keys().cloned().collect(),
        default_features,
        feature_map: features,
        path_dependencies: path_deps,
    })
}
