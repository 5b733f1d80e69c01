//! Reading a crate's sources: following `mod` declarations from the crate
//! root, collecting reloadable functions (procs: `#[reload]` Rust functions
//! and `#[no_mangle] extern "C"` ones), reload hooks, globals, the `use`
//! declarations (to name and resolve types), and the crate's own type
//! definitions with their public paths (for layout and signature hashes and
//! for callers in other crates).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use proc_macro2::{Span, TokenStream};
use quote::quote;
use syn::spanned::Spanned;
use syn::visit::Visit;
use syn::{Attribute, Ident, Item, Signature, Type, UseTree, Visibility};

use crate::cfg::Cfg;
use crate::error::{Error, Location};

/// How a proc is called.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Abi {
    /// `#[no_mangle] extern "C"`: called directly through its stub.
    C,
    /// `#[reload]`: the Rust ABI; its stub points at its guard, which
    /// returns `Result<R, ProcPanic>`.
    Rust,
}

/// A reloadable function.
#[derive(Clone, Debug)]
pub(crate) struct Proc {
    pub(crate) name: String,
    pub(crate) sig: Signature,
    pub(crate) location: Location,
    /// The module path from the crate root, when the proc and every module
    /// on the way are `pub` (so that other crates can call it by path).
    pub(crate) public_path: Option<Vec<String>>,
    pub(crate) abi: Abi,
}

/// When a reload hook runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum HookKind {
    BeforeReload,
    AfterReload,
    FirstLoad,
}

impl HookKind {
    /// The attribute, which is also the suffix of the hook's shim.
    pub(crate) fn attribute(self) -> &'static str {
        match self {
            HookKind::BeforeReload => "before_reload",
            HookKind::AfterReload => "after_reload",
            HookKind::FirstLoad => "first_load",
        }
    }

    /// The `hcr_abi::Phase` constant.
    pub(crate) fn phase(self) -> &'static str {
        match self {
            HookKind::BeforeReload => "BEFORE_RELOAD",
            HookKind::AfterReload => "AFTER_RELOAD",
            HookKind::FirstLoad => "FIRST_LOAD",
        }
    }

    fn of(attrs: &[Attribute]) -> Option<HookKind> {
        [HookKind::BeforeReload, HookKind::AfterReload, HookKind::FirstLoad]
            .into_iter()
            .find(|k| attrs.iter().any(|a| is_hcr_attribute(a, k.attribute())))
    }
}

/// A reload hook: `#[before_reload]`, `#[after_reload]` or `#[first_load]`.
#[derive(Clone, Debug)]
pub(crate) struct HookDef {
    pub(crate) name: String,
    pub(crate) kind: HookKind,
}

/// A `static NAME: Global<T>`.
#[derive(Clone, Debug)]
pub(crate) struct GlobalDef {
    pub(crate) name: String,
    /// Module path from the crate root.
    pub(crate) path: Vec<String>,
    /// `T`.
    pub(crate) ty: Type,
}

/// A `static NAME: Migration<Old, New> = Migration::new(&GLOBAL, ...)`.
#[derive(Clone, Debug)]
pub(crate) struct MigrationDef {
    pub(crate) name: String,
    /// Module path from the crate root.
    pub(crate) path: Vec<String>,
    pub(crate) old: Type,
    pub(crate) new: Type,
    /// The global it converts into.
    pub(crate) global: String,
    pub(crate) location: Location,
}

/// A `use` of something outside the crate, one name per entry.
#[derive(Clone, Debug)]
pub(crate) struct ExternalUse {
    pub(crate) tokens: TokenStream,
    /// The name it introduces; `None` for a glob.
    pub(crate) name: Option<String>,
    /// The path, without a leading `::` (for a glob, the prefix).
    pub(crate) path: Vec<String>,
}

/// Any `use`, one name per entry, for resolving names to definitions.
#[derive(Clone, Debug)]
pub(crate) struct UseEntry {
    /// The name it introduces; `None` for a glob.
    pub(crate) name: Option<String>,
    /// The path it names (for a glob, the prefix), without a leading `::`.
    pub(crate) path: Vec<String>,
}

/// What a crate's sources contain.
#[derive(Debug, Default)]
pub(crate) struct Scanned {
    pub(crate) files: Vec<PathBuf>,
    pub(crate) procs: Vec<Proc>,
    pub(crate) hooks: Vec<HookDef>,
    pub(crate) globals: Vec<GlobalDef>,
    pub(crate) migrations: Vec<MigrationDef>,
    pub(crate) external_uses: Vec<ExternalUse>,
    /// Every `use`, local or not.
    pub(crate) uses: Vec<UseEntry>,
    /// Type definitions of the crate, by name, normalised.
    pub(crate) local_types: BTreeMap<String, Vec<String>>,
    /// Names defined in the crate or imported from it (`use crate::...`).
    pub(crate) local_names: BTreeSet<String>,
    /// The names of the crate's modules.
    pub(crate) modules: BTreeSet<String>,
    /// For a local type (by name), the shortest path under which other
    /// crates can name it, from the crate root: where it is defined if that
    /// is public, or a public re-export (`pub use`). The last segment is the
    /// name there.
    pub(crate) public_types: BTreeMap<String, Vec<String>>,
    /// Where the crate declares a `#[global_allocator]`.
    pub(crate) global_allocator: Option<Location>,
    /// Every `a::b` pair of identifiers in the sources (macro bodies
    /// included); `(a, "*")` for `a::*` and for `a as ...`.
    pub(crate) path_pairs: BTreeSet<(String, String)>,
}

impl Scanned {
    /// Whether the sources name `module::item` (or may, through a glob or a
    /// renaming `use` of the module).
    pub(crate) fn names(&self, module: &str, item: &str) -> bool {
        let has = |second: &str| self.path_pairs.contains(&(module.to_owned(), second.to_owned()));
        has(item) || has("*")
    }
}

/// Records `a::b` pairs of a token stream, descending into groups.
fn collect_path_pairs(tokens: TokenStream, out: &mut BTreeSet<(String, String)>) {
    use proc_macro2::TokenTree;
    let tokens: Vec<TokenTree> = tokens.into_iter().collect();
    for (i, token) in tokens.iter().enumerate() {
        match token {
            TokenTree::Group(g) => collect_path_pairs(g.stream(), out),
            TokenTree::Ident(first) => {
                let colons = matches!(
                    (tokens.get(i + 1), tokens.get(i + 2)),
                    (Some(TokenTree::Punct(a)), Some(TokenTree::Punct(b))) if a.as_char() == ':' && b.as_char() == ':'
                );
                match (colons, tokens.get(i + 3)) {
                    (true, Some(TokenTree::Ident(second))) => {
                        out.insert((first.to_string(), second.to_string()));
                    }
                    (true, Some(TokenTree::Punct(p))) if p.as_char() == '*' => {
                        out.insert((first.to_string(), "*".into()));
                    }
                    (true, Some(TokenTree::Group(_))) => {
                        // `a::{b, c}`: any of its items may be used.
                        out.insert((first.to_string(), "*".into()));
                    }
                    _ => {}
                }
                if matches!(tokens.get(i + 1), Some(TokenTree::Ident(kw)) if kw == "as") {
                    out.insert((first.to_string(), "*".into()));
                }
            }
            _ => {}
        }
    }
}

/// Scans the crate whose root file is `root`.
pub(crate) fn scan(crate_dir: &Path, root: &Path, cfg: &Cfg) -> Result<Scanned, Error> {
    scan_as(crate_dir, root, cfg, false)
}

/// Scans a crate that is not a module (a dependency whose types signatures
/// use): only its types and `use`s, without checking anything else.
pub(crate) fn scan_types(crate_dir: &Path, root: &Path, cfg: &Cfg) -> Result<Scanned, Error> {
    scan_as(crate_dir, root, cfg, true)
}

fn scan_as(crate_dir: &Path, root: &Path, cfg: &Cfg, types_only: bool) -> Result<Scanned, Error> {
    let mut walker = Walker {
        crate_dir,
        cfg,
        types_only,
        out: Scanned::default(),
        errors: Vec::new(),
        proc_names: HashMap::new(),
        global_names: HashMap::new(),
        pending_reexports: Vec::new(),
    };
    let child_dir = root.parent().unwrap_or(crate_dir).to_path_buf();
    walker.file(root, &[], &child_dir, Reach { crate_root: true, public: true }, None);
    walker.resolve_reexports();
    if !types_only {
        walker.check_migrations();
        walker.check_allocator();
    }
    if let Some(error) = Error::collect(walker.errors) {
        return Err(error);
    }
    Ok(walker.out)
}

/// How the items of a module can be reached.
#[derive(Clone, Copy)]
struct Reach {
    /// From the crate root (by generated code in the crate).
    crate_root: bool,
    /// From other crates.
    public: bool,
}

struct Walker<'a> {
    crate_dir: &'a Path,
    cfg: &'a Cfg,
    /// Only types and `use`s matter (a dependency, not a module).
    types_only: bool,
    out: Scanned,
    errors: Vec<Error>,
    proc_names: HashMap<String, Location>,
    global_names: HashMap<String, Location>,
    /// `pub use` of a local path in a public module: (original name, the
    /// path under which it is re-exported).
    pending_reexports: Vec<(String, Vec<String>)>,
}

impl Walker<'_> {
    fn display_path(&self, file: &Path) -> PathBuf {
        file.strip_prefix(self.crate_dir).unwrap_or(file).to_path_buf()
    }

    fn location(&self, file: &Path, span: Span) -> Location {
        let start = span.start();
        Location { file: self.display_path(file), line: start.line, column: start.column + 1 }
    }

    fn unsupported(&mut self, file: &Path, span: Span, message: String) {
        let location = self.location(file, span);
        self.errors.push(Error::Unsupported { location, message });
    }

    /// Scans one file. `declared_at` is the `mod` item that pulled it in.
    fn file(&mut self, path: &Path, module: &[String], child_dir: &Path, reach: Reach, declared_at: Option<Location>) {
        let source = match std::fs::read_to_string(path) {
            Ok(source) => source,
            Err(source) => {
                let error = match declared_at {
                    Some(location) => Error::Unsupported {
                        location,
                        message: format!("cannot read module file {}: {source}", path.display()),
                    },
                    None => Error::Io { path: path.to_owned(), source },
                };
                self.errors.push(error);
                return;
            }
        };
        self.out.files.push(path.to_owned());
        if let Ok(tokens) = source.parse::<TokenStream>() {
            collect_path_pairs(tokens, &mut self.out.path_pairs);
        }
        let file = match syn::parse_file(&source) {
            Ok(file) => file,
            Err(e) => {
                let location = self.location(path, e.span());
                self.errors.push(Error::Parse { location, message: e.to_string() });
                return;
            }
        };
        self.items(&file.items, path, module, child_dir, reach);
    }

    fn enabled(&mut self, file: &Path, attrs: &[Attribute]) -> bool {
        match self.cfg.enabled(attrs) {
            Ok(enabled) => enabled,
            Err(e) => {
                self.unsupported(file, e.span(), format!("cannot evaluate cfg: {e}"));
                false
            }
        }
    }

    fn items(&mut self, items: &[Item], file: &Path, module: &[String], child_dir: &Path, reach: Reach) {
        // Module names first: a `use` of a child module may come before its
        // `mod` item.
        for item in items {
            if let Item::Mod(m) = item {
                self.out.modules.insert(m.ident.to_string());
            }
        }
        for item in items {
            let attrs = item_attrs(item);
            if !self.enabled(file, attrs) {
                continue;
            }
            match item {
                Item::Mod(m) => self.module(m, file, module, child_dir, reach),
                Item::Fn(f) if !self.types_only => self.function(f, file, module, reach),
                Item::Static(s) if !self.types_only => self.static_item(s, file, module, reach),
                Item::Use(u) => {
                    let public = reach.public && matches!(u.vis, Visibility::Public(_));
                    self.use_tree(&u.tree, &mut Vec::new(), u.leading_colon.is_some(), public.then_some(module));
                }
                Item::Struct(_) | Item::Enum(_) | Item::Union(_) | Item::Type(_) => {
                    self.type_def(item, module, reach);
                }
                Item::Impl(_) | Item::Trait(_) | Item::Const(_) if !self.types_only => self.nested(item, file),
                _ => {}
            }
        }
    }

    /// A free function: a Rust proc, a C proc, a hook, or none of them; in
    /// every case, its body must not hide reloadable items.
    fn function(&mut self, f: &syn::ItemFn, file: &Path, module: &[String], reach: Reach) {
        let public = reach.public && matches!(f.vis, Visibility::Public(_));
        let reload = f.attrs.iter().any(|a| is_hcr_attribute(a, "reload"));
        let hook = HookKind::of(&f.attrs);
        if reload {
            self.proc(&f.sig, file, public.then(|| module.to_vec()), Abi::Rust);
        } else if let Some(kind) = hook {
            self.hook(f, kind, file);
        } else if is_no_mangle(&f.attrs) {
            self.proc(&f.sig, file, public.then(|| module.to_vec()), Abi::C);
        }
        let mut finder = NestedFinder::default();
        finder.visit_block(&f.block);
        self.report_nested(finder, file);
    }

    fn static_item(&mut self, s: &syn::ItemStatic, file: &Path, module: &[String], reach: Reach) {
        if s.attrs.iter().any(|a| a.path().is_ident("global_allocator")) {
            let location = self.location(file, s.ident.span());
            self.out.global_allocator.get_or_insert(location);
        }
        let visible = module.is_empty() || !is_private(&s.vis);
        if let Some(ty) = global_type(&s.ty) {
            self.global(s, ty, file, module, reach.crate_root && visible);
        } else if let Some((old, new)) = migration_types(&s.ty) {
            self.migration(s, old, new, file, module, reach.crate_root && visible);
        }
        let mut finder = NestedFinder::default();
        finder.visit_expr(&s.expr);
        self.report_nested(finder, file);
    }

    /// Items in impl blocks, traits and constants: none can be registered.
    fn nested(&mut self, item: &Item, file: &Path) {
        let mut finder = NestedFinder::default();
        match item {
            Item::Impl(i) => {
                for item in &i.items {
                    if let syn::ImplItem::Fn(f) = item {
                        finder.function(&f.attrs, &f.sig, "an impl block");
                        finder.visit_block(&f.block);
                    } else {
                        finder.visit_impl_item(item);
                    }
                }
            }
            Item::Trait(t) => {
                for item in &t.items {
                    if let syn::TraitItem::Fn(f) = item {
                        finder.function(&f.attrs, &f.sig, "a trait");
                    }
                    finder.visit_trait_item(item);
                }
            }
            Item::Const(c) => finder.visit_expr(&c.expr),
            _ => {}
        }
        self.report_nested(finder, file);
    }

    fn report_nested(&mut self, finder: NestedFinder, file: &Path) {
        for (span, message) in finder.found {
            self.unsupported(file, span, message);
        }
        if let Some(span) = finder.allocator {
            let location = self.location(file, span);
            self.out.global_allocator.get_or_insert(location);
        }
    }

    fn hook(&mut self, f: &syn::ItemFn, kind: HookKind, file: &Path) {
        let name = f.sig.ident.to_string();
        let location = self.location(file, f.sig.ident.span());
        let before = self.errors.len();
        let mut finder = ImplTraitFinder(None);
        finder.visit_signature(&f.sig);
        let typed = f.sig.inputs.iter().filter(|i| matches!(i, syn::FnArg::Typed(_))).count();
        let unit = match &f.sig.output {
            syn::ReturnType::Default => true,
            syn::ReturnType::Type(_, ty) => matches!(&**ty, Type::Tuple(t) if t.elems.is_empty()),
        };
        if !f.sig.generics.params.is_empty()
            || f.sig.asyncness.is_some()
            || f.sig.unsafety.is_some()
            || f.sig.receiver().is_some()
            || finder.0.is_some()
            || typed > 1
            || !unit
        {
            self.unsupported(
                file,
                f.sig.ident.span(),
                format!("reload hook `{name}` must be a plain `fn()` or `fn(&hcr_abi::ReloadEvent)`: not generic, async, unsafe or a method, returning nothing"),
            );
        }
        if self.errors.len() != before {
            return;
        }
        if let Some(first) = self.proc_names.get(&format!("hook {name}")) {
            self.errors.push(Error::Duplicate { name, location, first: first.clone() });
            return;
        }
        self.proc_names.insert(format!("hook {name}"), location);
        self.out.hooks.push(HookDef { name, kind });
    }

    fn module(&mut self, m: &syn::ItemMod, file: &Path, module: &[String], child_dir: &Path, reach: Reach) {
        let name = m.ident.to_string();
        let mut path = module.to_vec();
        path.push(name.clone());
        let reach = Reach {
            // Items below are reachable from the crate root if every module
            // after the first is visible to its parent's parent (not private).
            crate_root: reach.crate_root && (module.is_empty() || !is_private(&m.vis)),
            public: reach.public && matches!(m.vis, Visibility::Public(_)),
        };
        if let Some((_, items)) = &m.content {
            self.items(items, file, &path, &child_dir.join(&name), reach);
            return;
        }
        let declared_at = self.location(file, m.ident.span());
        let (target, nested_dir) = match path_attribute(&m.attrs) {
            Some(relative) => {
                let target = file.parent().unwrap_or(self.crate_dir).join(relative);
                let dir = target.parent().unwrap_or(self.crate_dir).to_path_buf();
                (target, dir)
            }
            None => {
                let flat = child_dir.join(format!("{name}.rs"));
                if flat.is_file() {
                    (flat, child_dir.join(&name))
                } else {
                    (child_dir.join(&name).join("mod.rs"), child_dir.join(&name))
                }
            }
        };
        self.file(&target, &path, &nested_dir, reach, Some(declared_at));
    }

    fn proc(&mut self, sig: &Signature, file: &Path, public_path: Option<Vec<String>>, abi: Abi) {
        let name = sig.ident.to_string();
        let span = sig.ident.span();
        let before = self.errors.len();
        match &sig.abi {
            _ if abi == Abi::Rust => {
                if let Some(receiver) = sig.receiver() {
                    self.unsupported(
                        file,
                        receiver.span(),
                        format!("reloadable function `{name}` cannot take `self`: make it a free function"),
                    );
                }
            }
            None => self.unsupported(
                file,
                span,
                format!(
                    "reloadable function `{name}` must be `extern \"C\"`: it is #[no_mangle] but uses the Rust ABI; mark it `#[hcr_abi::reload]` (without #[no_mangle]) to keep the Rust ABI"
                ),
            ),
            Some(abi) => {
                if let Some(lit) = &abi.name
                    && lit.value() != "C"
                {
                    self.unsupported(
                        file,
                        lit.span(),
                        format!("reloadable function `{name}` must be `extern \"C\"`, not `extern \"{}\"`", lit.value()),
                    );
                }
            }
        }
        if !sig.generics.params.is_empty() || sig.generics.where_clause.is_some() {
            self.unsupported(
                file,
                sig.generics.span(),
                format!(
                    "reloadable function `{name}` is generic; a stub has one address, so reloadable functions cannot have type, const or lifetime parameters (elided references are fine)"
                ),
            );
        }
        if sig.asyncness.is_some() {
            self.unsupported(file, span, format!("reloadable function `{name}` cannot be `async`"));
        }
        if sig.variadic.is_some() {
            self.unsupported(file, span, format!("reloadable function `{name}` cannot be variadic"));
        }
        let mut finder = ImplTraitFinder(None);
        for input in &sig.inputs {
            finder.visit_fn_arg(input);
        }
        finder.visit_return_type(&sig.output);
        if let Some(span) = finder.0 {
            self.unsupported(file, span, format!("reloadable function `{name}` cannot use `impl Trait` types"));
        }
        if self.errors.len() != before {
            return;
        }
        let location = self.location(file, span);
        if let Some(first) = self.proc_names.get(&name) {
            self.errors.push(Error::Duplicate { name, location, first: first.clone() });
            return;
        }
        self.proc_names.insert(name.clone(), location.clone());
        let mut sig = sig.clone();
        for input in &mut sig.inputs {
            if let syn::FnArg::Typed(pat) = input {
                pat.attrs.clear();
            }
        }
        self.out.procs.push(Proc { name, sig, location, public_path, abi });
    }

    fn global(&mut self, s: &syn::ItemStatic, ty: &Type, file: &Path, module: &[String], reachable: bool) {
        let name = s.ident.to_string();
        let span = s.ident.span();
        let before = self.errors.len();
        if matches!(s.mutability, syn::StaticMutability::Mut(_)) {
            self.unsupported(
                file,
                span,
                format!("global `{name}` cannot be `static mut`; `Global` already gives shared access"),
            );
        }
        let mut check = GlobalTypeCheck(None);
        check.visit_type(ty);
        if let Some((span, why)) = check.0 {
            self.unsupported(file, span, format!("global `{name}` cannot be registered: {why}"));
        }
        if !reachable {
            self.unsupported(
                file,
                span,
                format!(
                    "global `{name}` must be visible from the crate root for the generated registration: make it and its modules at least `pub(crate)`"
                ),
            );
        }
        if self.errors.len() != before {
            return;
        }
        let location = self.location(file, span);
        if let Some(first) = self.global_names.get(&name) {
            self.errors.push(Error::Duplicate { name, location, first: first.clone() });
            return;
        }
        self.global_names.insert(name.clone(), location);
        self.out.globals.push(GlobalDef { name, path: module.to_vec(), ty: ty.clone() });
    }

    fn migration(
        &mut self,
        s: &syn::ItemStatic,
        old: &Type,
        new: &Type,
        file: &Path,
        module: &[String],
        reachable: bool,
    ) {
        let name = s.ident.to_string();
        let span = s.ident.span();
        if !reachable {
            self.unsupported(
                file,
                span,
                format!("migration `{name}` must be visible from the crate root: make it and its modules at least `pub(crate)`"),
            );
            return;
        }
        let Some(global) = migration_target(&s.expr) else {
            self.unsupported(
                file,
                s.expr.span(),
                format!("migration `{name}` must be written `Migration::new(&GLOBAL, conversion)`"),
            );
            return;
        };
        let location = self.location(file, span);
        self.out.migrations.push(MigrationDef {
            name,
            path: module.to_vec(),
            old: old.clone(),
            new: new.clone(),
            global,
            location,
        });
    }

    /// Every migration must convert into a known global of its type, and a
    /// global cannot have two migrations from the same layout.
    fn check_migrations(&mut self) {
        let mut seen: HashMap<(String, u64), Location> = HashMap::new();
        for m in &self.out.migrations {
            let Some(global) = self.out.globals.iter().find(|g| g.name == m.global) else {
                self.errors.push(Error::Unsupported {
                    location: m.location.clone(),
                    message: format!(
                        "migration `{}` converts into `{}`, which is not a `Global` of this module",
                        m.name, m.global
                    ),
                });
                continue;
            };
            let (want, got) = (crate::types::pretty_type(&global.ty), crate::types::pretty_type(&m.new));
            if want != got {
                self.errors.push(Error::Unsupported {
                    location: m.location.clone(),
                    message: format!(
                        "migration `{}` produces `{got}`, but global `{}` holds `{want}`",
                        m.name, m.global
                    ),
                });
                continue;
            }
            let universe = crate::types::Universe::single(crate::types::CrateTypes::of("", &self.out));
            let key = crate::types::structural_key(&m.old, &universe);
            let hash = crate::hash::hash_str(&key);
            if let Some(first) = seen.insert((m.global.clone(), hash), m.location.clone()) {
                self.errors.push(Error::Duplicate {
                    name: format!("migration of `{}` from this layout", m.global),
                    location: m.location.clone(),
                    first,
                });
            }
        }
    }

    fn use_tree(&mut self, tree: &UseTree, prefix: &mut Vec<Ident>, leading_colon: bool, public: Option<&[String]>) {
        match tree {
            UseTree::Path(p) => {
                prefix.push(p.ident.clone());
                self.use_tree(&p.tree, prefix, leading_colon, public);
                prefix.pop();
            }
            UseTree::Group(g) => {
                for tree in &g.items {
                    self.use_tree(tree, prefix, leading_colon, public);
                }
            }
            UseTree::Name(n) => {
                let (path, introduced) = if n.ident == "self" {
                    let Some(last) = prefix.last() else { return };
                    (prefix.clone(), last.clone())
                } else {
                    let mut path = prefix.clone();
                    path.push(n.ident.clone());
                    (path, n.ident.clone())
                };
                self.use_entry(&path, Some(&introduced), None, leading_colon, public);
            }
            UseTree::Rename(r) => {
                let mut path = prefix.clone();
                if r.ident != "self" {
                    path.push(r.ident.clone());
                }
                self.use_entry(&path, Some(&r.rename), Some(&r.rename), leading_colon, public);
            }
            UseTree::Glob(_) => self.use_entry(prefix, None, None, leading_colon, public),
        }
    }

    fn use_entry(
        &mut self,
        path: &[Ident],
        name: Option<&Ident>,
        rename: Option<&Ident>,
        leading_colon: bool,
        public: Option<&[String]>,
    ) {
        let Some(first) = path.first() else { return };
        let segments: Vec<String> = path.iter().map(ToString::to_string).collect();
        self.out.uses.push(UseEntry { name: name.map(ToString::to_string), path: segments.clone() });
        let local = !leading_colon
            && (first == "crate"
                || first == "self"
                || first == "super"
                || self.out.modules.contains(&first.to_string()));
        if local {
            if let Some(name) = name {
                self.out.local_names.insert(name.to_string());
                if let (Some(module), Some(original)) = (public, segments.last()) {
                    let mut at = module.to_vec();
                    at.push(name.to_string());
                    self.pending_reexports.push((original.clone(), at));
                }
            }
            return;
        }
        let colon = leading_colon.then(|| quote!(::));
        let tokens = match (name, rename) {
            (_, Some(rename)) => quote!(use #colon #(#path)::* as #rename;),
            (Some(_), None) => quote!(use #colon #(#path)::*;),
            (None, None) => quote!(use #colon #(#path)::* ::*;),
        };
        self.out.external_uses.push(ExternalUse { tokens, name: name.map(ToString::to_string), path: segments });
    }

    /// `item` without the fields and variants whose `#[cfg]` does not hold:
    /// they are not part of the type rustc compiles. A `#[cfg]` that cannot
    /// be evaluated keeps its field (the item's own cfg already reported it
    /// if it is wrong).
    fn configured(&self, item: &Item) -> Item {
        let keep = |attrs: &[Attribute]| self.cfg.enabled(attrs).unwrap_or(true);
        let fields = |fields: &mut syn::Fields| match fields {
            syn::Fields::Named(named) => {
                named.named = std::mem::take(&mut named.named).into_iter().filter(|f| keep(&f.attrs)).collect();
            }
            syn::Fields::Unnamed(unnamed) => {
                unnamed.unnamed = std::mem::take(&mut unnamed.unnamed).into_iter().filter(|f| keep(&f.attrs)).collect();
            }
            syn::Fields::Unit => {}
        };
        let mut item = item.clone();
        match &mut item {
            Item::Struct(s) => fields(&mut s.fields),
            Item::Enum(e) => {
                e.variants = std::mem::take(&mut e.variants).into_iter().filter(|v| keep(&v.attrs)).collect();
                for variant in &mut e.variants {
                    fields(&mut variant.fields);
                }
            }
            Item::Union(u) => {
                u.fields.named = std::mem::take(&mut u.fields.named).into_iter().filter(|f| keep(&f.attrs)).collect();
            }
            _ => {}
        }
        item
    }

    fn type_def(&mut self, item: &Item, module: &[String], reach: Reach) {
        let configured = self.configured(item);
        let Some((name, text)) = type_definition(&configured) else { return };
        let public = reach.public
            && matches!(
                item,
                Item::Struct(syn::ItemStruct { vis: Visibility::Public(_), .. })
                    | Item::Enum(syn::ItemEnum { vis: Visibility::Public(_), .. })
                    | Item::Union(syn::ItemUnion { vis: Visibility::Public(_), .. })
                    | Item::Type(syn::ItemType { vis: Visibility::Public(_), .. })
            );
        if public {
            let mut path = module.to_vec();
            path.push(name.clone());
            self.offer_public_path(&name, path);
        }
        self.out.local_names.insert(name.clone());
        self.out.local_types.entry(name).or_default().push(text);
    }

    /// Keeps the shortest public path of a local type.
    fn offer_public_path(&mut self, name: &str, path: Vec<String>) {
        let shorter = self.out.public_types.get(name).is_none_or(|old| path.len() < old.len());
        if shorter {
            self.out.public_types.insert(name.to_owned(), path);
        }
    }

    /// Public re-exports of local types count once all types are known.
    fn resolve_reexports(&mut self) {
        for (original, path) in std::mem::take(&mut self.pending_reexports) {
            if self.out.local_types.contains_key(&original) {
                self.offer_public_path(&original, path);
            }
        }
    }

    /// A module with reloadable Rust functions allocates through the host's
    /// allocator (hcr-abi's, declared by its feature `global-allocator`):
    /// it cannot have its own.
    fn check_allocator(&mut self) {
        let rust = self.out.procs.iter().any(|p| p.abi == Abi::Rust);
        if let (true, Some(location)) = (rust, &self.out.global_allocator) {
            self.errors.push(Error::Unsupported {
                location: location.clone(),
                message: "a module with reloadable Rust functions cannot declare its own #[global_allocator]: values it returns are freed by the host, so it allocates through the host's allocator (hcr-abi's feature `global-allocator` declares it); remove this one, or give the host this allocator".into(),
            });
        }
    }
}

/// Whether `attr` is hcr's attribute `name`, however spelled: `#[name]`,
/// `#[hcr_abi::name]`, `#[::hcr_abi::name]`, `#[hcr_macros::name]`.
pub(crate) fn is_hcr_attribute(attr: &Attribute, name: &str) -> bool {
    let path = attr.path();
    let Some(last) = path.segments.last() else { return false };
    if last.ident != name {
        return false;
    }
    match path.segments.len() {
        1 => path.leading_colon.is_none(),
        2 => path.segments[0].ident == "hcr_abi" || path.segments[0].ident == "hcr_macros",
        _ => false,
    }
}

/// Finds what must not hide inside function bodies, impl blocks, traits
/// and constants: globals (they would never be registered, and would start
/// again from their initial value after every reload), reloadable
/// functions and hooks (never registered), and global allocators.
#[derive(Default)]
struct NestedFinder {
    found: Vec<(Span, String)>,
    allocator: Option<Span>,
}

impl NestedFinder {
    /// A function declared in `place`, which cannot be reloadable.
    fn function(&mut self, attrs: &[Attribute], sig: &Signature, place: &str) {
        let name = &sig.ident;
        if attrs.iter().any(|a| is_hcr_attribute(a, "reload")) {
            self.found.push((
                name.span(),
                format!("reloadable function `{name}` is declared in {place}; only free functions at module level can be registered: move it out"),
            ));
        } else if let Some(kind) = HookKind::of(attrs) {
            self.found.push((
                name.span(),
                format!("reload hook `{name}` (#[{}]) is declared in {place}; only free functions at module level can be registered: move it out", kind.attribute()),
            ));
        }
    }
}

impl Visit<'_> for NestedFinder {
    fn visit_item_static(&mut self, s: &syn::ItemStatic) {
        if s.attrs.iter().any(|a| a.path().is_ident("global_allocator")) {
            self.allocator.get_or_insert(s.ident.span());
        }
        if global_type(&s.ty).is_some() {
            self.found.push((
                s.ident.span(),
                format!(
                    "global `{}` is declared inside a function, impl block or block expression, where the generated registration cannot reach it (it would start again from its initial value after every reload): move it to module level",
                    s.ident
                ),
            ));
        }
        syn::visit::visit_item_static(self, s);
    }

    fn visit_item_fn(&mut self, f: &syn::ItemFn) {
        self.function(&f.attrs, &f.sig, "a function body or block");
        syn::visit::visit_item_fn(self, f);
    }

    fn visit_impl_item_fn(&mut self, f: &syn::ImplItemFn) {
        self.function(&f.attrs, &f.sig, "an impl block");
        syn::visit::visit_impl_item_fn(self, f);
    }
}

/// The name and normalised text of a type definition: only `#[repr]` kept,
/// no visibility, no documentation, formatted.
pub(crate) fn type_definition(item: &Item) -> Option<(String, String)> {
    let mut item = item.clone();
    let name = match &mut item {
        Item::Struct(s) => {
            normalize(&mut s.attrs, &mut s.vis);
            for field in s.fields.iter_mut() {
                normalize(&mut field.attrs, &mut field.vis);
            }
            s.ident.to_string()
        }
        Item::Enum(e) => {
            normalize(&mut e.attrs, &mut e.vis);
            for variant in &mut e.variants {
                variant.attrs.clear();
                for field in variant.fields.iter_mut() {
                    normalize(&mut field.attrs, &mut field.vis);
                }
            }
            e.ident.to_string()
        }
        Item::Union(u) => {
            normalize(&mut u.attrs, &mut u.vis);
            for field in u.fields.named.iter_mut() {
                normalize(&mut field.attrs, &mut field.vis);
            }
            u.ident.to_string()
        }
        Item::Type(t) => {
            normalize(&mut t.attrs, &mut t.vis);
            t.ident.to_string()
        }
        _ => return None,
    };
    Some((name, crate::types::pretty_item(&item)))
}

/// Keeps only `#[repr]` (which changes layout) and drops visibility, so that
/// documentation or visibility edits do not change a layout hash.
fn normalize(attrs: &mut Vec<Attribute>, vis: &mut Visibility) {
    attrs.retain(|a| a.path().is_ident("repr"));
    *vis = Visibility::Inherited;
}

fn item_attrs(item: &Item) -> &[Attribute] {
    match item {
        Item::Const(i) => &i.attrs,
        Item::Enum(i) => &i.attrs,
        Item::ExternCrate(i) => &i.attrs,
        Item::Fn(i) => &i.attrs,
        Item::ForeignMod(i) => &i.attrs,
        Item::Impl(i) => &i.attrs,
        Item::Macro(i) => &i.attrs,
        Item::Mod(i) => &i.attrs,
        Item::Static(i) => &i.attrs,
        Item::Struct(i) => &i.attrs,
        Item::Trait(i) => &i.attrs,
        Item::TraitAlias(i) => &i.attrs,
        Item::Type(i) => &i.attrs,
        Item::Union(i) => &i.attrs,
        Item::Use(i) => &i.attrs,
        _ => &[],
    }
}

/// `#[no_mangle]` or `#[unsafe(no_mangle)]`.
pub(crate) fn is_no_mangle(attrs: &[Attribute]) -> bool {
    attrs.iter().any(|a| {
        a.path().is_ident("no_mangle")
            || (a.path().is_ident("unsafe")
                && a.meta.require_list().is_ok_and(|l| l.tokens.to_string().trim() == "no_mangle"))
    })
}

fn is_private(vis: &Visibility) -> bool {
    match vis {
        Visibility::Inherited => true,
        Visibility::Restricted(r) => r.path.is_ident("self"),
        Visibility::Public(_) => false,
    }
}

fn path_attribute(attrs: &[Attribute]) -> Option<String> {
    attrs.iter().find(|a| a.path().is_ident("path")).and_then(|a| match &a.meta {
        syn::Meta::NameValue(nv) => match &nv.value {
            syn::Expr::Lit(syn::ExprLit { lit: syn::Lit::Str(s), .. }) => Some(s.value()),
            _ => None,
        },
        _ => None,
    })
}

/// `T` of a `Global<T>` (however the path to `Global` is spelled).
fn global_type(ty: &Type) -> Option<&Type> {
    let Type::Path(path) = ty else { return None };
    let last = path.path.segments.last()?;
    if last.ident != "Global" {
        return None;
    }
    let syn::PathArguments::AngleBracketed(args) = &last.arguments else { return None };
    match args.args.iter().collect::<Vec<_>>().as_slice() {
        [syn::GenericArgument::Type(inner)] => Some(inner),
        _ => None,
    }
}

/// `Old` and `New` of a `Migration<Old, New>`.
fn migration_types(ty: &Type) -> Option<(&Type, &Type)> {
    let Type::Path(path) = ty else { return None };
    let last = path.path.segments.last()?;
    if last.ident != "Migration" {
        return None;
    }
    let syn::PathArguments::AngleBracketed(args) = &last.arguments else { return None };
    match args.args.iter().collect::<Vec<_>>().as_slice() {
        [syn::GenericArgument::Type(old), syn::GenericArgument::Type(new)] => Some((old, new)),
        _ => None,
    }
}

/// `GLOBAL` in `Migration::new(&GLOBAL, ...)` (however `GLOBAL` is reached).
fn migration_target(expr: &syn::Expr) -> Option<String> {
    let syn::Expr::Call(call) = expr else { return None };
    let syn::Expr::Reference(reference) = call.args.first()? else { return None };
    let syn::Expr::Path(path) = &*reference.expr else { return None };
    path.path.segments.last().map(|s| s.ident.to_string())
}

/// Finds `impl Trait` in a signature.
struct ImplTraitFinder(Option<Span>);

impl Visit<'_> for ImplTraitFinder {
    fn visit_type_impl_trait(&mut self, i: &syn::TypeImplTrait) {
        self.0.get_or_insert(i.span());
    }
}

/// Finds what makes a type unfit for a global that outlives the code that
/// created it.
struct GlobalTypeCheck(Option<(Span, &'static str)>);

impl Visit<'_> for GlobalTypeCheck {
    fn visit_type_reference(&mut self, i: &syn::TypeReference) {
        self.0.get_or_insert((
            i.span(),
            "references cannot be kept across reloads (they would point into the old code's memory); store values, or raw pointers you manage",
        ));
    }
    fn visit_type_trait_object(&mut self, i: &syn::TypeTraitObject) {
        self.0.get_or_insert((i.span(), "trait objects keep a vtable in the module's code, which a reload unloads"));
    }
    fn visit_type_impl_trait(&mut self, i: &syn::TypeImplTrait) {
        self.0.get_or_insert((i.span(), "`impl Trait` has no nameable layout"));
    }
    fn visit_type_slice(&mut self, i: &syn::TypeSlice) {
        self.0.get_or_insert((i.span(), "slices are unsized; use an array or a fixed-capacity type"));
    }
    fn visit_type_infer(&mut self, i: &syn::TypeInfer) {
        self.0.get_or_insert((i.span(), "the type must be written out, not inferred"));
    }
    fn visit_type_path(&mut self, i: &syn::TypePath) {
        if i.qself.is_none() && i.path.is_ident("str") {
            self.0.get_or_insert((i.span(), "`str` is unsized; use `String` or a byte array"));
        }
        syn::visit::visit_type_path(self, i);
    }
}
