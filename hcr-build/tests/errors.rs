//! Every kind of item code generation refuses, with the file and line in the
//! message.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use hcr_build::{Cfg, Error, Host, Module};

/// A throw-away crate made of `files` (path, content).
struct TempCrate(PathBuf);

impl TempCrate {
    fn new(files: &[(&str, &str)]) -> TempCrate {
        let manifest = "[package]\nname = \"broken\"\nversion = \"0.1.0\"\nedition = \"2024\"\n\n[lib]\ncrate-type = [\"cdylib\", \"rlib\"]\n";
        TempCrate::with_manifest(manifest, files)
    }

    fn with_manifest(manifest: &str, files: &[(&str, &str)]) -> TempCrate {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "hcr-build-errors-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        write(&dir.join("Cargo.toml"), manifest);
        for (path, content) in files {
            write(&dir.join(path), content);
        }
        TempCrate(dir)
    }

    fn module_error(&self) -> String {
        let err = Module::new().crate_dir(&self.0).cfg(Cfg::empty()).render().expect_err("generation must fail");
        err.to_string()
    }
}

impl Drop for TempCrate {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn write(path: &Path, content: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, content).unwrap();
}

fn assert_mentions(message: &str, parts: &[&str]) {
    for part in parts {
        assert!(message.contains(part), "missing {part:?} in:\n{message}");
    }
}

#[test]
fn a_generic_reloadable_function_is_refused() {
    let c =
        TempCrate::new(&[("src/lib.rs", "\n#[unsafe(no_mangle)]\npub extern \"C\" fn id<T: Copy>(x: T) -> T { x }\n")]);
    assert_mentions(&c.module_error(), &["src/lib.rs:3:21", "`id` is generic"]);
}

#[test]
fn a_reloadable_function_with_the_rust_abi_is_refused() {
    let c = TempCrate::new(&[("src/lib.rs", "#[unsafe(no_mangle)]\npub fn tick(x: u64) -> u64 { x }\n")]);
    assert_mentions(&c.module_error(), &["src/lib.rs:2:8", "`tick` must be `extern \"C\"`", "Rust ABI"]);
}

#[test]
fn a_reloadable_function_with_another_abi_is_refused() {
    let c = TempCrate::new(&[("src/lib.rs", "#[no_mangle]\npub extern \"system\" fn tick() {}\n")]);
    assert_mentions(&c.module_error(), &["src/lib.rs:2:12", "not `extern \"system\"`"]);
}

#[test]
fn duplicate_names_across_files_are_refused() {
    let c = TempCrate::new(&[
        ("src/lib.rs", "mod a;\nmod b;\n"),
        ("src/a.rs", "#[unsafe(no_mangle)]\npub extern \"C\" fn update() {}\n"),
        ("src/b.rs", "\n\n#[unsafe(no_mangle)]\npub extern \"C\" fn update() {}\n"),
    ]);
    assert_mentions(&c.module_error(), &["src/b.rs:4:19", "`update` is already declared at src/a.rs:2:19"]);
}

#[test]
fn duplicate_global_names_are_refused() {
    let c = TempCrate::new(&[(
        "src/lib.rs",
        "use hcr_abi::Global;\nstatic A: Global<u64> = Global::new(|| 0);\npub(crate) mod m {\n    pub(crate) static A: hcr_abi::Global<u32> = hcr_abi::Global::new(|| 0);\n}\n",
    )]);
    assert_mentions(&c.module_error(), &["src/lib.rs:4:23", "`A` is already declared at src/lib.rs:2:8"]);
}

#[test]
fn globals_whose_type_cannot_be_registered_are_refused() {
    let cases = [
        ("static NAME: Global<&'static str> = Global::new(|| \"\");", "references cannot be kept across reloads"),
        ("static HOOK: Global<Box<dyn Fn()>> = Global::new(|| Box::new(|| {}));", "trait objects keep a vtable"),
        ("static S: Global<str> = todo!();", "`str` is unsized"),
        ("static mut M: Global<u64> = Global::new(|| 0);", "cannot be `static mut`"),
    ];
    for (item, expected) in cases {
        let c = TempCrate::new(&[("src/lib.rs", &format!("use hcr_abi::Global;\n{item}\n"))]);
        assert_mentions(&c.module_error(), &["src/lib.rs:2:", expected]);
    }
}

#[test]
fn a_global_that_the_registration_cannot_reach_is_refused() {
    let c = TempCrate::new(&[
        ("src/lib.rs", "mod outer;\n"),
        (
            "src/outer.rs",
            "mod inner {\n    pub(crate) static G: hcr_abi::Global<u64> = hcr_abi::Global::new(|| 0);\n}\n",
        ),
    ]);
    assert_mentions(&c.module_error(), &["src/outer.rs:2:23", "must be visible from the crate root"]);
}

#[test]
fn async_and_impl_trait_functions_are_refused() {
    let c = TempCrate::new(&[(
        "src/lib.rs",
        "#[unsafe(no_mangle)]\npub async extern \"C\" fn a() {}\n#[unsafe(no_mangle)]\npub extern \"C\" fn b(x: impl Copy) {}\n",
    )]);
    let message = c.module_error();
    assert_mentions(&message, &["src/lib.rs:2:25", "cannot be `async`", "src/lib.rs:4:24", "`impl Trait`"]);
}

#[test]
fn a_file_that_does_not_parse_is_reported_where_it_stops() {
    let c = TempCrate::new(&[("src/lib.rs", "mod ok;\n"), ("src/ok.rs", "pub fn f( {\n")]);
    assert_mentions(&c.module_error(), &["src/ok.rs:1:", "cannot parse"]);
}

#[test]
fn a_missing_module_file_is_reported_at_its_declaration() {
    let c = TempCrate::new(&[("src/lib.rs", "\nmod missing;\n")]);
    assert_mentions(&c.module_error(), &["src/lib.rs:2:5", "cannot read module file", "missing"]);
}

#[test]
fn a_type_local_to_the_module_is_refused_in_host_bindings() {
    let c = TempCrate::new(&[(
        "src/lib.rs",
        "pub struct State { x: u32 }\n#[unsafe(no_mangle)]\npub extern \"C\" fn read(s: *const State) -> u32 { unsafe { (*s).x } }\n",
    )]);
    // Registering the module itself is fine ...
    Module::new().crate_dir(&c.0).cfg(Cfg::empty()).render().unwrap();
    // ... but a host cannot name `State`.
    let host = TempCrate::new(&[("src/main.rs", "fn main() {}\n")]);
    let err = Host::new()
        .crate_dir(&host.0)
        .out_dir(host.0.join("target/debug/build/h-0/out"))
        .cfg(Cfg::empty())
        .module(&c.0)
        .render()
        .unwrap_err();
    assert_mentions(&err.to_string(), &["src/lib.rs:3:19", "uses type `State`", "defined in module crate `broken`"]);
}

#[test]
fn every_error_is_reported_not_just_the_first() {
    let c =
        TempCrate::new(&[("src/lib.rs", "#[unsafe(no_mangle)]\npub fn a() {}\n#[unsafe(no_mangle)]\npub fn b() {}\n")]);
    let err = Module::new().crate_dir(&c.0).cfg(Cfg::empty()).render().unwrap_err();
    assert!(matches!(err, Error::Multiple(ref all) if all.len() == 2), "{err}");
}

#[test]
fn items_behind_a_disabled_cfg_are_not_checked_or_registered() {
    let c = TempCrate::new(&[(
        "src/lib.rs",
        "#[cfg(feature = \"experimental\")]\n#[unsafe(no_mangle)]\npub fn broken() {}\n#[unsafe(no_mangle)]\npub extern \"C\" fn fine() {}\n",
    )]);
    let generated = Module::new().crate_dir(&c.0).cfg(Cfg::empty()).render().unwrap();
    assert!(generated.source.contains("procs::fine") && !generated.source.contains("procs::broken"));
    let err = Module::new().crate_dir(&c.0).cfg(Cfg::empty().with_feature("experimental")).render().unwrap_err();
    assert_mentions(&err.to_string(), &["src/lib.rs:3:8", "`broken` must be `extern \"C\"`"]);
}

#[test]
fn a_migration_must_target_a_global_of_its_type() {
    let c = TempCrate::new(&[(
        "src/lib.rs",
        "use hcr_abi::{Global, Migration};\nstatic G: Global<u64> = Global::new(|| 0);\nstatic TO_G: Migration<u32, u32> = Migration::new(&G, |o| *o);\nstatic TO_NOTHING: Migration<u32, u64> = Migration::new(&MISSING, |o| u64::from(*o));\n",
    )]);
    assert_mentions(
        &c.module_error(),
        &[
            "src/lib.rs:3:8",
            "migration `TO_G` produces `u32`, but global `G` holds `u64`",
            "src/lib.rs:4:8",
            "`MISSING`, which is not a `Global` of this module",
        ],
    );
}

#[test]
fn reloadable_rust_functions_that_cannot_have_a_stub_are_refused() {
    let c = TempCrate::new(&[(
        "src/lib.rs",
        "use hcr_abi::reload;\n#[reload]\npub fn id<T: Copy>(x: T) -> T { x }\n#[hcr_abi::reload]\npub async fn later() {}\n#[reload]\npub fn hidden(x: impl Copy) {}\n",
    )]);
    assert_mentions(
        &c.module_error(),
        &[
            "src/lib.rs:3:10",
            "`id` is generic",
            "src/lib.rs:5:14",
            "cannot be `async`",
            "src/lib.rs:7:18",
            "`impl Trait`",
        ],
    );
}

#[test]
fn reloadable_items_where_the_registration_cannot_reach_them_are_refused() {
    let c = TempCrate::new(&[(
        "src/lib.rs",
        "use hcr_abi::{Global, reload};\n\
         pub struct S;\n\
         impl S {\n    #[reload]\n    pub fn method_like() {}\n}\n\
         pub fn f() {\n    static LOST: Global<u64> = Global::new(|| 0);\n}\n\
         const _: () = {\n    static ALSO_LOST: hcr_abi::Global<u32> = hcr_abi::Global::new(|| 0);\n};\n\
         pub fn g() {\n    #[hcr_abi::before_reload]\n    fn inner_hook() {}\n}\n",
    )]);
    assert_mentions(
        &c.module_error(),
        &[
            "src/lib.rs:5:12",
            "reloadable function `method_like` is declared in an impl block",
            "src/lib.rs:8:12",
            "global `LOST` is declared inside a function",
            "src/lib.rs:11:12",
            "global `ALSO_LOST`",
            "src/lib.rs:15:8",
            "reload hook `inner_hook` (#[before_reload])",
        ],
    );
}

#[test]
fn a_module_with_rust_procs_cannot_bring_its_own_allocator() {
    let c = TempCrate::new(&[(
        "src/lib.rs",
        "use std::alloc::System;\n#[global_allocator]\nstatic MINE: System = System;\n#[hcr_abi::reload]\npub fn f() {}\n",
    )]);
    assert_mentions(&c.module_error(), &["src/lib.rs:3:8", "cannot declare its own #[global_allocator]"]);
}

#[test]
fn a_hook_with_another_signature_is_refused() {
    let c = TempCrate::new(&[("src/lib.rs", "\n#[hcr_abi::after_reload]\nfn count() -> u32 { 0 }\n")]);
    assert_mentions(&c.module_error(), &["src/lib.rs:3:4", "reload hook `count` must be a plain `fn()`"]);
}

/// A host crate named `host` with `deps` under [dependencies] and a
/// feature `static` enabling `static_deps`.
fn host(deps: &str, static_deps: &str) -> TempCrate {
    let manifest = format!(
        "[package]\nname = \"host\"\nversion = \"0.1.0\"\nedition = \"2024\"\n\n[dependencies]\n{deps}\n[features]\nstatic = [{static_deps}]\n"
    );
    TempCrate::with_manifest(&manifest, &[("src/main.rs", "fn main() {}\n")])
}

fn host_render(host: &TempCrate, module: &TempCrate) -> Result<hcr_build::Generated, Error> {
    Host::new()
        .crate_dir(&host.0)
        .out_dir(host.0.join("target/debug/build/h-0/out"))
        .cfg(Cfg::empty())
        .module(&module.0)
        .render()
}

#[test]
fn a_host_must_be_able_to_name_every_type_of_a_rust_signature() {
    let module = TempCrate::new(&[
        (
            "src/lib.rs",
            "mod inner;\nuse shared::Thing;\nuse inner::Hidden;\n#[hcr_abi::reload]\npub fn take(t: &Thing) -> Hidden { todo!() }\n",
        ),
        ("src/inner.rs", "pub struct Hidden;\n"),
    ]);
    let path = module.0.display().to_string();
    let h = host(&format!("broken = {{ path = \"{path}\" }}\n"), "");
    let err = host_render(&h, &module).unwrap_err().to_string();
    assert_mentions(
        &err,
        &[
            "src/lib.rs:5:8",
            "uses `Thing` from crate `shared`, which crate `host` cannot name: add `shared` to its [dependencies]",
            "uses type `Hidden`, which is defined in module crate `broken` but is not public",
        ],
    );
    // Public (by re-export), and the host depends on both crates: fine,
    // and the bindings name the type through the module crate.
    let module = TempCrate::new(&[
        (
            "src/lib.rs",
            "mod inner;\npub use inner::Hidden;\nuse shared::Thing;\n#[hcr_abi::reload]\npub fn take(t: &Thing) -> Hidden { todo!() }\n",
        ),
        ("src/inner.rs", "pub struct Hidden;\n"),
    ]);
    let path = module.0.display().to_string();
    let h = host(&format!("broken = {{ path = \"{path}\" }}\nshared = \"1\"\n"), "");
    let source = host_render(&h, &module).unwrap().source;
    assert!(source.contains("use ::broken::Hidden;") && source.contains("use shared::Thing;"), "{source}");
    // A host that lists the module only as an optional dependency cannot
    // name its types in a hot build.
    let h = host(&format!("broken = {{ path = \"{path}\", optional = true }}\nshared = \"1\"\n"), "\"dep:broken\"");
    assert_mentions(
        &host_render(&h, &module).unwrap_err().to_string(),
        &["must depend on `broken` (a normal, not optional, dependency)"],
    );
}

#[test]
fn a_module_relative_path_in_a_signature_is_refused() {
    let module = TempCrate::new(&[
        ("src/lib.rs", "pub mod shapes;\n#[hcr_abi::reload]\npub fn area(c: &shapes::Circle) -> f32 { c.r }\n"),
        ("src/shapes.rs", "pub struct Circle { pub r: f32 }\n"),
    ]);
    let path = module.0.display().to_string();
    let h = host(&format!("broken = {{ path = \"{path}\" }}\n"), "");
    assert_mentions(
        &host_render(&h, &module).unwrap_err().to_string(),
        &["src/lib.rs:3:8", "names `shapes::Circle` through a module of crate `broken`"],
    );
}

#[test]
fn a_static_build_without_the_module_crate_stops_with_the_dependency_to_add() {
    let module = TempCrate::new(&[("src/lib.rs", "#[hcr_abi::reload]\npub fn f() -> u32 { 1 }\n")]);
    let h = host("", "");
    let source = host_render(&h, &module).unwrap().source;
    assert!(source.contains("#[cfg(feature = \"static\")]\n    ::core::compile_error!("), "{source}");
    assert!(
        source.contains(
            "the static build of crate `host` (feature `static`) calls module `broken` directly and needs its crate: add `broken` to [dependencies] (`optional = true`) and `\\\"dep:broken\\\"` to feature `static`"
        ),
        "{source}"
    );
    // With the dependency (optional, enabled by `static`): direct calls.
    let path = module.0.display().to_string();
    let h = host(&format!("broken = {{ path = \"{path}\", optional = true }}\n"), "\"dep:broken\"");
    let source = host_render(&h, &module).unwrap().source;
    assert!(!source.contains("compile_error") && source.contains("::broken::f()"), "{source}");
}

#[test]
fn fields_behind_a_disabled_cfg_and_features_a_module_enables_in_its_dependencies_are_seen() {
    let manifest = "[package]\nname = \"m\"\nversion = \"0.1.0\"\nedition = \"2024\"\n\n[lib]\ncrate-type = [\"cdylib\", \"rlib\"]\n\n[dependencies]\nshared = { path = \"shared\" }\n\n[features]\nbig = [\"wide\"]\nwide = [\"shared/big\"]\n";
    let c = TempCrate::with_manifest(
        manifest,
        &[
            (
                "shared/Cargo.toml",
                "[package]\nname = \"shared\"\nversion = \"0.1.0\"\nedition = \"2024\"\n\n[features]\nbig = []\n",
            ),
            (
                "shared/src/lib.rs",
                "pub struct W {\n    pub a: u64,\n    #[cfg(feature = \"big\")]\n    pub b: u64,\n}\n",
            ),
            (
                "src/lib.rs",
                "use hcr_abi::reload;\nuse shared::W;\npub enum Local {\n    X(u8, #[cfg(feature = \"big\")] u8),\n    #[cfg(feature = \"big\")]\n    Y,\n}\n#[reload]\npub fn f(w: &W, l: &Local) -> u64 {\n    0\n}\n",
            ),
        ],
    );
    let small = Module::new().crate_dir(&c.0).cfg(Cfg::empty()).render().unwrap().source;
    assert!(small.contains("fn(&W, &Local) -> u64; enum Local { X(u8) }; shared: struct W { a: u64 }\""), "{small}");
    // `big` turns on `wide`, which turns on `shared/big`.
    let big = Module::new().crate_dir(&c.0).cfg(Cfg::empty().with_feature("big")).render().unwrap().source;
    assert!(
        big.contains("fn(&W, &Local) -> u64; enum Local { X(u8, u8), Y }; shared: struct W { a: u64, b: u64 }\""),
        "{big}"
    );
}
