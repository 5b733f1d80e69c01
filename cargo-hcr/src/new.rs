//! `cargo hcr new <path>`: a workspace with a host and one module, ready for
//! `cargo hcr run`.
//!
//! Every file comes from `templates/` (compiled in; the manifests are not
//! named `Cargo.toml` there, which would make cargo take them for packages
//! of their own and leave them out of cargo-hcr's), with `{{host}}`,
//! `{{module}}`, `{{module_crate}}` and `{{hcr_deps}}` filled in: what the
//! module looks like is one file, `templates/module/src/lib.rs`.

use std::path::{Path, PathBuf};

use crate::cli::NewArgs;
use crate::error::{Error, Result};

/// The files of a new workspace: where each goes, and its template.
const FILES: &[(&str, &str)] = &[
    ("Cargo.toml", include_str!("../templates/workspace.toml")),
    ("README.md", include_str!("../templates/README.md")),
    (".gitignore", include_str!("../templates/gitignore")),
    ("{{host}}/Cargo.toml", include_str!("../templates/host/manifest.toml")),
    ("{{host}}/build.rs", include_str!("../templates/host/build.rs")),
    ("{{host}}/src/main.rs", include_str!("../templates/host/src/main.rs")),
    ("{{module}}/Cargo.toml", include_str!("../templates/module/manifest.toml")),
    ("{{module}}/build.rs", include_str!("../templates/module/build.rs")),
    ("{{module}}/src/lib.rs", include_str!("../templates/module/src/lib.rs")),
];

/// The hcr crates a new workspace depends on.
const HCR_CRATES: [&str; 3] = ["hcr-abi", "hcr-build", "hcr-runtime"];

/// Where the new workspace takes the hcr crates from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A checkout of the hcr repository.
    Path(PathBuf),
    /// A git repository.
    Git(String),
    /// The registry, with this version requirement.
    Registry(String),
}

impl Source {
    /// The source `args` ask for; by default the checkout cargo-hcr was
    /// built from if it is still there, else the registry at this
    /// cargo-hcr's version.
    pub fn of(args: &NewArgs) -> Source {
        if let Some(path) = &args.hcr_path {
            Source::Path(path.clone())
        } else if let Some(url) = &args.hcr_git {
            Source::Git(url.clone())
        } else if let Some(version) = &args.hcr_version {
            Source::Registry(version.clone())
        } else {
            match built_from_checkout() {
                Some(checkout) => Source::Path(checkout),
                None => Source::Registry(env!("CARGO_PKG_VERSION").to_owned()),
            }
        }
    }

    /// The `[workspace.dependencies]` lines for the hcr crates.
    fn dependencies(&self) -> Result<String> {
        let mut lines = String::new();
        for krate in HCR_CRATES {
            let spec = match self {
                Source::Path(checkout) => {
                    let dir = std::path::absolute(checkout.join(krate))
                        .map_err(|source| Error::Io { path: checkout.clone(), source })?;
                    if !dir.join("Cargo.toml").is_file() {
                        return Err(Error::Usage(format!(
                            "{} is not a checkout of hcr (it has no {krate}/Cargo.toml): give the repository's root with --hcr-path",
                            checkout.display()
                        )));
                    }
                    format!("{{ path = {} }}", toml_string(&dir.to_string_lossy()))
                }
                Source::Git(url) => format!("{{ git = {} }}", toml_string(url)),
                Source::Registry(version) => toml_string(version),
            };
            lines.push_str(&format!("{krate} = {spec}\n"));
        }
        Ok(lines)
    }
}

/// The repository cargo-hcr was built from, if it is still there.
fn built_from_checkout() -> Option<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent()?;
    HCR_CRATES.iter().all(|k| root.join(k).join("Cargo.toml").is_file()).then(|| root.to_owned())
}

/// A TOML basic string holding `text`.
fn toml_string(text: &str) -> String {
    let mut quoted = String::from('"');
    for c in text.chars() {
        match c {
            '"' => quoted.push_str("\\\""),
            '\\' => quoted.push_str("\\\\"),
            c if c.is_control() => quoted.push_str(&format!("\\u{:04X}", c as u32)),
            c => quoted.push(c),
        }
    }
    quoted.push('"');
    quoted
}

/// Whether `name` can name a package (letters, digits, `-` and `_`, not
/// starting with a digit) without clashing with what a workspace needs.
fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        && !matches!(name, "test" | "std" | "core" | "alloc" | "proc_macro" | "build" | "src" | "target")
}

/// Writes the workspace `args` ask for.
///
/// # Errors
///
/// [`Error::Exists`] if the directory holds something, [`Error::Usage`]
/// for a name that cannot be a package's or a checkout that is not one,
/// [`Error::Io`] if a file cannot be written.
pub fn new(args: &NewArgs) -> Result<()> {
    let name = match &args.name {
        Some(name) => name.clone(),
        None => args.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
    };
    if !valid_name(&name) {
        return Err(Error::Usage(format!(
            "`{name}` cannot name a package: use letters, digits, `-` and `_`, starting with a letter (give one with --name)"
        )));
    }
    let source = Source::of(args);
    write(&args.path, &name, &source)?;
    let module = format!("{name}-logic");
    status!("created {} with the host `{name}` and the module `{module}`", args.path.display());
    status!("next: cd {} && cargo hcr run, then edit {module}/src/lib.rs and save", args.path.display());
    Ok(())
}

/// Writes the workspace of host `name` into `dir`.
fn write(dir: &Path, name: &str, source: &Source) -> Result<()> {
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| Error::Io { path, source }
    };
    if dir.exists() && std::fs::read_dir(dir).map_err(io(dir))?.next().is_some() {
        return Err(Error::Exists(dir.to_owned()));
    }
    let module = format!("{name}-logic");
    let vars = [
        ("{{hcr_deps}}", source.dependencies()?),
        ("{{module_crate}}", module.replace('-', "_")),
        ("{{module}}", module.clone()),
        ("{{host}}", name.to_owned()),
    ];
    let fill = |text: &str| vars.iter().fold(text.to_owned(), |text, (key, value)| text.replace(key, value));
    for (path, template) in FILES {
        let path = dir.join(fill(path));
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io(parent))?;
        }
        std::fs::write(&path, fill(template)).map_err(io(&path))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_placeholder_is_filled() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("space-game");
        write(&root, "space-game", &Source::Git("https://example.invalid/hcr.git".into())).unwrap();
        let mut files = Vec::new();
        for (path, _) in FILES {
            let path = root.join(path.replace("{{host}}", "space-game").replace("{{module}}", "space-game-logic"));
            let text = std::fs::read_to_string(&path).unwrap();
            assert!(!text.contains("{{"), "{}: {text}", path.display());
            files.push(text);
        }
        assert!(files[0].contains("hcr-runtime = { git = \"https://example.invalid/hcr.git\" }"), "{}", files[0]);
        assert!(files[0].contains("members = [\"space-game\", \"space-game-logic\"]"));
        assert!(files[5].contains("use space_game_logic::State;"));
        assert!(files[5].contains("hcr::space_game_logic::try_tick(&mut state)"));
        assert!(files[3].contains("static = [\"space-game-logic/static\"]"));
    }

    #[test]
    fn sources_of_hcr() {
        let registry = Source::Registry("0.1".into()).dependencies().unwrap();
        assert_eq!(registry, "hcr-abi = \"0.1\"\nhcr-build = \"0.1\"\nhcr-runtime = \"0.1\"\n");
        let checkout = built_from_checkout().expect("the tests run in a checkout");
        let path = Source::Path(checkout.clone()).dependencies().unwrap();
        assert!(
            path.contains(&format!(
                "hcr-abi = {{ path = {} }}",
                toml_string(&checkout.join("hcr-abi").to_string_lossy())
            ))
        );
        let not = Source::Path(checkout.join("docs")).dependencies().unwrap_err();
        assert!(not.to_string().contains("is not a checkout of hcr"), "{not}");
        assert_eq!(Source::of(&NewArgs::default()), Source::Path(checkout));
        assert_eq!(toml_string("a\"b\\c"), "\"a\\\"b\\\\c\"");
    }

    #[test]
    fn names_and_places() {
        assert!(valid_name("game") && valid_name("my_game-2"));
        assert!(!valid_name("2game") && !valid_name("a b") && !valid_name("") && !valid_name("test"));
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("file"), "").unwrap();
        assert!(matches!(write(dir.path(), "x", &Source::Registry("0.1".into())), Err(Error::Exists(_))));
        let empty = dir.path().join("empty");
        std::fs::create_dir(&empty).unwrap();
        write(&empty, "x", &Source::Registry("0.1".into())).unwrap();
        assert!(empty.join("x-logic/src/lib.rs").is_file());
    }
}
