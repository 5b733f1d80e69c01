//! Reading a crate's sources: following `mod` declarations from the crate
//! root, collecting reloadable functions (procs), globals, the `use`
//! declarations that name external types, and the crate's own type
//! definitions (for layout and signature hashes).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use proc_macro2::{Span, TokenStream};
use quote::quote;
use syn::spanned::Spanned;
use syn::visit::Visit;
use syn::{Attribute, Ident, Item, Signature, Type, UseTree, Visibility};

use crate::cfg::Cfg;
use crate::error::{Error, Location};
use crate::hash::Fnv;

/// A reloadable function.
#[derive(Clone, Debug)]
pub(crate) struct Proc {
    pub(crate) name: String,
    pub(crate) sig: Signature,
    pub(crate) location: Location,
    /// The module path from the crate root, when the proc and every module
    /// on the way are `pub` (so that other crates can call it by path).
    pub(crate) public_path: Option<Vec<String>>,
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
}

/// What a crate's sources contain.
#[derive(Debug, Default)]
pub(crate) struct Scanned {
    pub(crate) files: Vec<PathBuf>,
    pub(crate) content_hash: u64,
    pub(crate) procs: Vec<Proc>,
    pub(crate) globals: Vec<GlobalDef>,
    pub(crate) migrations: Vec<MigrationDef>,
    pub(crate) external_uses: Vec<ExternalUse>,
    /// Type definitions of the crate, by name, normalised.
    pub(crate) local_types: BTreeMap<String, Vec<String>>,
    /// Names defined in the crate or imported from it (`use crate::...`).
    pub(crate) local_names: BTreeSet<String>,
    /// Every `a::b` pair of identifiers in the sources (macro bodies
    /// included); `(a, "*")` for `a::*` and for `a as ...`.
    pub(crate) path_pairs: BTreeSet<(String, String)>,
}

impl Scanned {
    /// A copy of what bindings need (types, uses, names), without procs,
    /// globals or migrations.
    pub(crate) fn shallow_clone(&self) -> Scanned {
        Scanned {
            files: self.files.clone(),
            content_hash: self.content_hash,
            procs: Vec::new(),
            globals: Vec::new(),
            migrations: Vec::new(),
            external_uses: self.external_uses.clone(),
            local_types: self.local_types.clone(),
            local_names: self.local_names.clone(),
            path_pairs: BTreeSet::new(),
        }
    }

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
    let mut walker = Walker {
        crate_dir,
        cfg,
        out: Scanned::default(),
        errors: Vec::new(),
        proc_names: HashMap::new(),
        global_names: HashMap::new(),
        hash: Fnv::new(),
    };
    let child_dir = root.parent().unwrap_or(crate_dir).to_path_buf();
    walker.file(root, &[], &child_dir, Reach { crate_root: true, public: true }, None);
    walker.check_migrations();
    if let Some(error) = Error::collect(walker.errors) {
        return Err(error);
    }
    walker.out.content_hash = walker.hash.finish();
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
    out: Scanned,
    errors: Vec<Error>,
    proc_names: HashMap<String, Location>,
    global_names: HashMap<String, Location>,
    hash: Fnv,
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
        let shown = self.display_path(path);
        self.hash.write(shown.to_string_lossy().as_bytes());
        self.hash.write(source.as_bytes());
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
        for item in items {
            let attrs = item_attrs(item);
            if !self.enabled(file, attrs) {
                continue;
            }
            match item {
                Item::Mod(m) => self.module(m, file, module, child_dir, reach),
                Item::Fn(f) if is_no_mangle(&f.attrs) => {
                    let public = reach.public && matches!(f.vis, Visibility::Public(_));
                    self.proc(&f.sig, file, public.then(|| module.to_vec()));
                }
                Item::Static(s) => {
                    let visible = module.is_empty() || !is_private(&s.vis);
                    if let Some(ty) = global_type(&s.ty) {
                        self.global(s, ty, file, module, reach.crate_root && visible);
                    } else if let Some((old, new)) = migration_types(&s.ty) {
                        self.migration(s, old, new, file, module, reach.crate_root && visible);
                    }
                }
                Item::Use(u) => self.use_tree(&u.tree, &mut Vec::new(), u.leading_colon.is_some()),
                Item::Struct(_) | Item::Enum(_) | Item::Union(_) | Item::Type(_) => self.type_def(item),
                _ => {}
            }
        }
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

    fn proc(&mut self, sig: &Signature, file: &Path, public_path: Option<Vec<String>>) {
        let name = sig.ident.to_string();
        let span = sig.ident.span();
        let before = self.errors.len();
        match &sig.abi {
            None => self.unsupported(
                file,
                span,
                format!(
                    "reloadable function `{name}` must be `extern \"C\"`: it is #[no_mangle] but uses the Rust ABI, which has no stable layout"
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
        self.out.procs.push(Proc { name, sig, location, public_path });
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
            let key = crate::types::structural_key(&m.old, &self.out.local_types);
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

    fn use_tree(&mut self, tree: &UseTree, prefix: &mut Vec<Ident>, leading_colon: bool) {
        match tree {
            UseTree::Path(p) => {
                prefix.push(p.ident.clone());
                self.use_tree(&p.tree, prefix, leading_colon);
                prefix.pop();
            }
            UseTree::Group(g) => {
                for tree in &g.items {
                    self.use_tree(tree, prefix, leading_colon);
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
                self.use_entry(&path, Some(&introduced), None, leading_colon);
            }
            UseTree::Rename(r) => {
                let mut path = prefix.clone();
                if r.ident != "self" {
                    path.push(r.ident.clone());
                }
                self.use_entry(&path, Some(&r.rename), Some(&r.rename), leading_colon);
            }
            UseTree::Glob(_) => self.use_entry(prefix, None, None, leading_colon),
        }
    }

    fn use_entry(&mut self, path: &[Ident], name: Option<&Ident>, rename: Option<&Ident>, leading_colon: bool) {
        let Some(first) = path.first() else { return };
        let local = !leading_colon && (first == "crate" || first == "self" || first == "super");
        if local {
            if let Some(name) = name {
                self.out.local_names.insert(name.to_string());
            }
            return;
        }
        let colon = leading_colon.then(|| quote!(::));
        let tokens = match (name, rename) {
            (_, Some(rename)) => quote!(use #colon #(#path)::* as #rename;),
            (Some(_), None) => quote!(use #colon #(#path)::*;),
            (None, None) => quote!(use #colon #(#path)::* ::*;),
        };
        self.out.external_uses.push(ExternalUse { tokens, name: name.map(ToString::to_string) });
    }

    fn type_def(&mut self, item: &Item) {
        if let Some((name, text)) = type_definition(item) {
            self.out.local_names.insert(name.clone());
            self.out.local_types.entry(name).or_default().push(text);
        }
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
