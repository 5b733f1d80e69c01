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
    /// Names under which it depends on other packages.
    pub(crate) dependencies: BTreeSet<String>,
    /// Names under which its build script depends on other packages.
    pub(crate) build_dependencies: BTreeSet<String>,
    /// Every feature it declares.
    pub(crate) features: BTreeSet<String>,
    /// The features `default` enables, transitively.
    pub(crate) default_features: BTreeSet<String>,
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
    let names = |section: &str| {
        let mut names = BTreeSet::new();
        let mut add = |deps: Option<&toml::Value>| {
            if let Some(deps) = deps.and_then(|d| d.as_table()) {
                for (name, spec) in deps {
                    names.insert(name.clone());
                    if let Some(package) = spec.get("package").and_then(|p| p.as_str()) {
                        names.insert(package.to_owned());
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
    let dependencies = names("dependencies");
    let build_dependencies = names("build-dependencies");
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
        dependencies,
        build_dependencies,
        features: features.keys().cloned().collect(),
        default_features,
    })
}
