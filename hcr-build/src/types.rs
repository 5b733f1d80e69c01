//! Type-level helpers: normalised text of types and signatures, and the
//! layout descriptions that signature and layout hashes are computed from.

use std::collections::{BTreeMap, BTreeSet};

use proc_macro2::TokenStream;
use quote::quote;
use syn::visit::Visit;
use syn::{Item, Signature, Type};

use crate::hash::hash_str;
use crate::scan::{Abi, Scanned, UseEntry};

/// Formats an item the way `rustfmt` would, on one logical unit.
pub(crate) fn pretty_item(item: &Item) -> String {
    let file = syn::File { shebang: None, attrs: Vec::new(), items: vec![item.clone()] };
    prettyplease::unparse(&file).trim().to_owned()
}

/// A type as source text: `extern "C" fn(u64) -> u64`, `*mut u8`, ...
pub(crate) fn pretty_type(ty: &Type) -> String {
    let item: Item = syn::parse_quote!(type __T = #ty;);
    let text = pretty_item(&item);
    let text = text.strip_prefix("type __T = ").unwrap_or(&text);
    text.strip_suffix(';').unwrap_or(text).to_owned()
}

/// The function-pointer type of a reloadable function's signature:
/// `extern "C" fn(u64) -> u64` for a C proc, `fn(&World) -> u64` for a Rust
/// one.
pub(crate) fn fn_pointer_type(sig: &Signature, abi: Abi) -> Type {
    let unsafety = &sig.unsafety;
    let inputs = sig.inputs.iter().filter_map(|arg| match arg {
        syn::FnArg::Typed(t) => Some(&t.ty),
        syn::FnArg::Receiver(_) => None,
    });
    let output = &sig.output;
    match abi {
        Abi::C => syn::parse_quote!(#unsafety extern "C" fn(#(#inputs),*) #output),
        Abi::Rust => syn::parse_quote!(#unsafety fn(#(#inputs),*) #output),
    }
}

/// The type a Rust proc's stub really has: its guard's, which returns
/// `Result<R, ProcPanic>` (`proc_panic` is the path to `ProcPanic`).
pub(crate) fn guard_pointer_type(sig: &Signature, proc_panic: &TokenStream) -> Type {
    let unsafety = &sig.unsafety;
    let inputs = sig.inputs.iter().filter_map(|arg| match arg {
        syn::FnArg::Typed(t) => Some(&t.ty),
        syn::FnArg::Receiver(_) => None,
    });
    let output = return_type(sig);
    syn::parse_quote!(#unsafety fn(#(#inputs),*) -> ::core::result::Result<#output, #proc_panic>)
}

/// `R` of `-> R`, `()` without one.
pub(crate) fn return_type(sig: &Signature) -> TokenStream {
    match &sig.output {
        syn::ReturnType::Default => quote!(()),
        syn::ReturnType::Type(_, ty) => quote!(#ty),
    }
}

/// The paths (as segments) that a type mentions, generic arguments and
/// trait bounds (`dyn Trait`) included.
pub(crate) fn type_paths(ty: &Type) -> Vec<(bool, Vec<String>)> {
    struct Finder(Vec<(bool, Vec<String>)>);
    impl Visit<'_> for Finder {
        fn visit_type_path(&mut self, p: &syn::TypePath) {
            if p.qself.is_none() {
                let segments = p.path.segments.iter().map(|s| s.ident.to_string()).collect();
                self.0.push((p.path.leading_colon.is_some(), segments));
            }
            syn::visit::visit_type_path(self, p);
        }
        fn visit_trait_bound(&mut self, b: &syn::TraitBound) {
            let segments = b.path.segments.iter().map(|s| s.ident.to_string()).collect();
            self.0.push((b.path.leading_colon.is_some(), segments));
            syn::visit::visit_trait_bound(self, b);
        }
    }
    let mut f = Finder(Vec::new());
    f.visit_type(ty);
    f.0
}

/// The types a signature or layout hash can see: the crate being described
/// (index 0) and the local crates it depends on (a shared `types` crate of
/// the workspace, say), each with its definitions and `use`s, so that names
/// resolve to definitions across crates.
#[derive(Clone, Debug, Default)]
pub(crate) struct Universe {
    crates: Vec<CrateTypes>,
}

/// One crate of a [`Universe`].
#[derive(Clone, Debug, Default)]
pub(crate) struct CrateTypes {
    /// The name code uses for it.
    pub(crate) name: String,
    /// Its type definitions by name, normalised.
    pub(crate) types: BTreeMap<String, Vec<String>>,
    /// Its `use`s.
    pub(crate) uses: Vec<UseEntry>,
    /// Its modules' names.
    pub(crate) modules: BTreeSet<String>,
    /// Its local dependencies: name in code, index in the universe.
    pub(crate) deps: BTreeMap<String, usize>,
}

impl CrateTypes {
    /// The types and `use`s of a scanned crate.
    pub(crate) fn of(name: &str, scanned: &Scanned) -> CrateTypes {
        CrateTypes {
            name: name.to_owned(),
            types: scanned.local_types.clone(),
            uses: scanned.uses.clone(),
            modules: scanned.modules.clone(),
            deps: BTreeMap::new(),
        }
    }
}

impl Universe {
    /// A universe of one crate.
    pub(crate) fn single(krate: CrateTypes) -> Universe {
        Universe { crates: vec![krate] }
    }

    /// Adds a crate; its index.
    pub(crate) fn push(&mut self, krate: CrateTypes) -> usize {
        self.crates.push(krate);
        self.crates.len() - 1
    }

    /// Records that crate `from` depends on crate `to` under `name`.
    pub(crate) fn link(&mut self, from: usize, name: &str, to: usize) {
        self.crates[from].deps.insert(name.to_owned(), to);
    }

    /// The crate at `index`.
    pub(crate) fn krate(&self, index: usize) -> &CrateTypes {
        &self.crates[index]
    }

    /// The definition a path names from crate `krate`, as (crate, name).
    fn resolve_path(
        &self,
        krate: usize,
        leading_colon: bool,
        segments: &[String],
        depth: u32,
    ) -> Option<(usize, String)> {
        let c = &self.crates[krate];
        let (first, last) = (segments.first()?, segments.last()?);
        if segments.len() == 1 && !leading_colon {
            return self.resolve_name(krate, first, depth);
        }
        if !leading_colon && (first == "crate" || first == "self" || first == "super" || c.modules.contains(first)) {
            return self.resolve_name(krate, last, depth);
        }
        let dep = *c.deps.get(first)?;
        if segments.len() == 1 {
            return None;
        }
        self.resolve_name(dep, last, depth)
    }

    /// The definition a name means in crate `krate`: its own type, or one it
    /// imports by `use` (named, or through a glob of a local dependency).
    fn resolve_name(&self, krate: usize, name: &str, depth: u32) -> Option<(usize, String)> {
        if depth > 16 {
            return None;
        }
        let c = &self.crates[krate];
        if c.types.contains_key(name) {
            return Some((krate, name.to_owned()));
        }
        for u in &c.uses {
            if u.name.as_deref() == Some(name)
                && u.path.last().is_some_and(|l| l != name || u.path.len() > 1)
                && let Some(found) = self.resolve_path(krate, false, &u.path, depth + 1)
            {
                return Some(found);
            }
        }
        for u in c.uses.iter().filter(|u| u.name.is_none()) {
            let target = match u.path.first().map(String::as_str) {
                Some("crate" | "self" | "super") => continue,
                Some(first) => c.deps.get(first).copied(),
                None => None,
            };
            if let Some(dep) = target
                && u.path.len() == 1
                && let Some(found) = self.resolve_name(dep, name, depth + 1)
            {
                return Some(found);
            }
        }
        None
    }
}

/// Text and hash describing a type. The text is the type as written,
/// followed by the definitions of the local types it uses (the crate's own
/// and those of local dependencies, marked with their crate), for messages.
/// The hash is computed from a *structural* key in which local types are
/// replaced by their fields (so adding, removing, reordering or retyping a
/// field changes it, but renaming a type does not: a migration names the
/// old layout under a new name).
pub(crate) fn describe_type(ty: &Type, universe: &Universe) -> (String, u64) {
    describe(pretty_type(ty), ty, universe)
}

/// Text and hash describing a proc's signature, in the same way.
pub(crate) fn describe_signature(sig: &Signature, abi: Abi, universe: &Universe) -> (String, u64) {
    let fn_type = fn_pointer_type(sig, abi);
    describe(pretty_type(&fn_type), &fn_type, universe)
}

fn describe(mut text: String, ty: &Type, universe: &Universe) -> (String, u64) {
    let mut keyer = Keyer { universe, stack: Vec::new(), reached: BTreeSet::new() };
    let mut key = String::new();
    keyer.ty(0, ty, &mut key);
    for (krate, name) in &keyer.reached {
        let c = universe.krate(*krate);
        for def in &c.types[name] {
            text.push_str("; ");
            if *krate != 0 {
                text.push_str(&c.name);
                text.push_str(": ");
            }
            text.push_str(&one_line(def));
        }
    }
    (text, hash_str(&key))
}

/// The structural key of a type: see [`describe_type`].
pub(crate) fn structural_key(ty: &Type, universe: &Universe) -> String {
    let mut key = String::new();
    Keyer { universe, stack: Vec::new(), reached: BTreeSet::new() }.ty(0, ty, &mut key);
    key
}

struct Keyer<'a> {
    universe: &'a Universe,
    /// Local types being expanded, to stop on recursive types.
    stack: Vec<(usize, String)>,
    /// Every local type expanded.
    reached: BTreeSet<(usize, String)>,
}

impl Keyer<'_> {
    /// Appends the key of `ty`, written in crate `krate`.
    fn ty(&mut self, krate: usize, ty: &Type, out: &mut String) {
        match ty {
            Type::Path(p) if p.qself.is_none() => {
                let segments: Vec<String> = p.path.segments.iter().map(|s| s.ident.to_string()).collect();
                if let Some(found) = self.universe.resolve_path(krate, p.path.leading_colon.is_some(), &segments, 0) {
                    self.local(found, out);
                    return;
                }
                for (i, segment) in p.path.segments.iter().enumerate() {
                    if i > 0 || p.path.leading_colon.is_some() {
                        out.push_str("::");
                    }
                    out.push_str(&segment.ident.to_string());
                    if let syn::PathArguments::AngleBracketed(args) = &segment.arguments {
                        out.push('<');
                        for (j, arg) in args.args.iter().enumerate() {
                            if j > 0 {
                                out.push(',');
                            }
                            match arg {
                                syn::GenericArgument::Type(t) => self.ty(krate, t, out),
                                other => out.push_str(&quote!(#other).to_string()),
                            }
                        }
                        out.push('>');
                    }
                }
            }
            Type::Array(a) => {
                out.push('[');
                self.ty(krate, &a.elem, out);
                let len = &a.len;
                out.push_str(&format!(";{}]", quote!(#len)));
            }
            Type::Slice(s) => {
                out.push('[');
                self.ty(krate, &s.elem, out);
                out.push(']');
            }
            Type::Tuple(t) => {
                out.push('(');
                for (i, elem) in t.elems.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    self.ty(krate, elem, out);
                }
                out.push(')');
            }
            Type::Ptr(p) => {
                out.push_str(if p.mutability.is_some() { "*mut " } else { "*const " });
                self.ty(krate, &p.elem, out);
            }
            Type::Reference(r) => {
                out.push_str(if r.mutability.is_some() { "&mut " } else { "&" });
                self.ty(krate, &r.elem, out);
            }
            Type::Paren(p) => self.ty(krate, &p.elem, out),
            Type::Group(g) => self.ty(krate, &g.elem, out),
            Type::BareFn(f) => {
                if f.unsafety.is_some() {
                    out.push_str("unsafe ");
                }
                if let Some(abi) = &f.abi {
                    out.push_str(&quote!(#abi).to_string());
                    out.push(' ');
                }
                out.push_str("fn(");
                for (i, input) in f.inputs.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    self.ty(krate, &input.ty, out);
                }
                out.push(')');
                if let syn::ReturnType::Type(_, ret) = &f.output {
                    out.push_str("->");
                    self.ty(krate, ret, out);
                }
            }
            other => out.push_str(&pretty_type(other)),
        }
    }

    fn local(&mut self, (krate, name): (usize, String), out: &mut String) {
        if self.stack.iter().any(|(k, n)| *k == krate && *n == name) {
            out.push_str("<recursive>");
            return;
        }
        self.reached.insert((krate, name.clone()));
        self.stack.push((krate, name.clone()));
        let defs = self.universe.krate(krate).types[&name].clone();
        for (i, def) in defs.iter().enumerate() {
            if i > 0 {
                out.push('|');
            }
            match syn::parse_str::<Item>(def) {
                Ok(item) => self.item(krate, &item, out),
                Err(_) => out.push_str(&one_line(def)),
            }
        }
        self.stack.pop();
    }

    fn item(&mut self, krate: usize, item: &Item, out: &mut String) {
        let reprs = |attrs: &[syn::Attribute]| -> String {
            attrs.iter().map(|a| quote!(#a).to_string()).collect::<Vec<_>>().join("")
        };
        match item {
            Item::Struct(s) => {
                out.push_str(&reprs(&s.attrs));
                out.push_str("struct");
                self.fields(krate, &s.fields, out);
            }
            Item::Union(u) => {
                out.push_str(&reprs(&u.attrs));
                out.push_str("union");
                self.fields(krate, &syn::Fields::Named(u.fields.clone()), out);
            }
            Item::Enum(e) => {
                out.push_str(&reprs(&e.attrs));
                out.push_str("enum{");
                for variant in &e.variants {
                    out.push_str(&variant.ident.to_string());
                    self.fields(krate, &variant.fields, out);
                    if let Some((_, discriminant)) = &variant.discriminant {
                        out.push_str(&format!("={}", quote!(#discriminant)));
                    }
                    out.push(',');
                }
                out.push('}');
            }
            Item::Type(t) => self.ty(krate, &t.ty, out),
            other => out.push_str(&pretty_item(other)),
        }
    }

    fn fields(&mut self, krate: usize, fields: &syn::Fields, out: &mut String) {
        let (open, close) = match fields {
            syn::Fields::Named(_) => ('{', '}'),
            syn::Fields::Unnamed(_) => ('(', ')'),
            syn::Fields::Unit => return,
        };
        out.push(open);
        for field in fields {
            if let Some(ident) = &field.ident {
                out.push_str(&ident.to_string());
                out.push(':');
            }
            self.ty(krate, &field.ty, out);
            out.push(',');
        }
        out.push(close);
    }
}

/// Source text on one line: `struct World { x: u32, y: u32 }`.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ").replace(", }", " }").replace(",)", ")")
}

/// A proc's parameters as `(name, type)`, with names usable in a binding.
pub(crate) fn binding_params(sig: &Signature) -> Vec<(syn::Ident, Type)> {
    sig.inputs
        .iter()
        .enumerate()
        .filter_map(|(i, arg)| match arg {
            syn::FnArg::Typed(t) => {
                let name = match &*t.pat {
                    syn::Pat::Ident(p) if p.ident != "_" && p.subpat.is_none() => p.ident.clone(),
                    _ => quote::format_ident!("arg{i}"),
                };
                Some((name, (*t.ty).clone()))
            }
            syn::FnArg::Receiver(_) => None,
        })
        .collect()
}

/// The `quote` of a literal `u64` in hexadecimal, for readable output.
pub(crate) fn hex_u64(value: u64) -> proc_macro2::TokenStream {
    let lit = proc_macro2::Literal::u64_unsuffixed(value);
    let text = format!("0x{value:016x}");
    text.parse().unwrap_or_else(|_| quote!(#lit))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn types(defs: &[&str]) -> BTreeMap<String, Vec<String>> {
        defs.iter()
            .map(|d| {
                let (name, text) = crate::scan::type_definition(&syn::parse_str(d).unwrap()).unwrap();
                (name, vec![text])
            })
            .collect()
    }

    fn locals(defs: &[&str]) -> Universe {
        Universe::single(CrateTypes { name: "m".into(), types: types(defs), ..CrateTypes::default() })
    }

    fn uses(list: &[(&str, &str)]) -> Vec<UseEntry> {
        list.iter()
            .map(|(name, path)| UseEntry {
                name: (!name.is_empty()).then(|| (*name).to_owned()),
                path: path.split("::").map(str::to_owned).collect(),
            })
            .collect()
    }

    #[test]
    fn signatures_print_as_function_pointer_types() {
        let sig: Signature = syn::parse_str("unsafe extern \"C\" fn f(mut a: u64, _: *mut   u8) -> u64").unwrap();
        assert_eq!(describe_signature(&sig, Abi::C, &locals(&[])).0, "unsafe extern \"C\" fn(u64, *mut u8) -> u64");
        let names: Vec<String> = binding_params(&sig).iter().map(|(n, _)| n.to_string()).collect();
        assert_eq!(names, ["a", "arg1"]);
        let rust: Signature = syn::parse_str("fn f(w: &mut World, n: u64) -> Vec<u8>").unwrap();
        let u = locals(&["struct World { x: f32 }"]);
        let (text, hash) = describe_signature(&rust, Abi::Rust, &u);
        assert_eq!(text, "fn(&mut World, u64) -> Vec<u8>; struct World { x: f32 }");
        assert_ne!(hash, describe_signature(&rust, Abi::C, &u).1, "the ABI is part of the hash");
    }

    #[test]
    fn a_field_added_or_reordered_changes_the_layout_hash() {
        let ty: Type = syn::parse_str("World").unwrap();
        let a = describe_type(&ty, &locals(&["struct World { x: f32, y: f32 }"]));
        let same = describe_type(&ty, &locals(&["pub struct World { pub x: f32, pub y: f32 }"]));
        let added = describe_type(&ty, &locals(&["struct World { x: f32, y: f32, z: f32 }"]));
        let reordered = describe_type(&ty, &locals(&["struct World { y: f32, x: f32 }"]));
        assert_eq!(a.1, same.1, "visibility does not matter");
        assert_ne!(a.1, added.1);
        assert_ne!(a.1, reordered.1);
        assert!(a.0.starts_with("World; struct World"), "{}", a.0);
    }

    #[test]
    fn renaming_a_type_keeps_its_layout_hash_but_not_its_text() {
        let old =
            describe_type(&syn::parse_str("Mutex<World>").unwrap(), &locals(&["struct World { x: f32, y: f32 }"]));
        let renamed =
            describe_type(&syn::parse_str("Mutex<WorldV1>").unwrap(), &locals(&["struct WorldV1 { x: f32, y: f32 }"]));
        assert_eq!(old.1, renamed.1);
        assert_ne!(old.0, renamed.0);
        let external = describe_type(&syn::parse_str("Mutex<u64>").unwrap(), &locals(&[]));
        assert_ne!(old.1, external.1);
    }

    #[test]
    fn recursive_types_terminate() {
        let l = locals(&["struct Node { next: *mut Node, value: u32 }"]);
        let key = structural_key(&syn::parse_str("Node").unwrap(), &l);
        assert_eq!(key, "struct{next:*mut <recursive>,value:u32,}");
    }

    #[test]
    fn nested_local_types_are_followed() {
        let ty: Type = syn::parse_str("[Particle; 4]").unwrap();
        let l = locals(&["struct Particle { pos: Vec2 }", "struct Vec2 { x: f32, y: f32 }"]);
        let text = describe_type(&ty, &l).0;
        assert!(text.contains("struct Particle") && text.contains("struct Vec2"), "{text}");
    }

    /// A module using `World` from a local `types` crate, which re-exports it
    /// from a submodule and uses `Vec2` from a third crate by glob.
    fn workspace(world: &str) -> Universe {
        let module = CrateTypes {
            name: "game".into(),
            uses: uses(&[("World", "game_types::World"), ("Event", "game_types::events::Event")]),
            ..CrateTypes::default()
        };
        let mut u = Universe::single(module);
        let shared = u.push(CrateTypes {
            name: "game_types".into(),
            types: types(&[world, "enum Event { Hit(u32), Quit }"]),
            uses: uses(&[("", "math"), ("World", "crate::world::World")]),
            modules: ["world".to_owned(), "events".to_owned()].into(),
            ..CrateTypes::default()
        });
        let math = u.push(CrateTypes {
            name: "math".into(),
            types: types(&["#[repr(C)] struct Vec2 { x: f32, y: f32 }"]),
            ..CrateTypes::default()
        });
        u.link(0, "game_types", shared);
        u.link(shared, "math", math);
        u
    }

    #[test]
    fn types_of_local_dependencies_are_expanded_field_by_field() {
        let sig: Signature =
            syn::parse_str("fn update(w: &mut World, e: &[Event]) -> Option<game_types::Event>").unwrap();
        let (text, hash) = describe_signature(&sig, Abi::Rust, &workspace("struct World { pos: Vec2, tick: u64 }"));
        assert_eq!(
            text,
            "fn(&mut World, &[Event]) -> Option<game_types::Event>; game_types: enum Event { Hit(u32), Quit }; \
             game_types: struct World { pos: Vec2, tick: u64 }; math: #[repr(C)] struct Vec2 { x: f32, y: f32 }"
        );
        let (_, grown) =
            describe_signature(&sig, Abi::Rust, &workspace("struct World { pos: Vec2, tick: u64, score: u32 }"));
        assert_ne!(hash, grown, "a field added to the shared World changes the hash");
        let (_, renamed_field) =
            describe_signature(&sig, Abi::Rust, &workspace("struct World { pos: Vec2, ticks: u64 }"));
        assert_ne!(hash, renamed_field);
    }
}
