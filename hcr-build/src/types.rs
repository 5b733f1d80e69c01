//! Type-level helpers: normalised text of types and signatures, and the
//! layout descriptions that signature and layout hashes are computed from.

use std::collections::{BTreeMap, BTreeSet};

use quote::quote;
use syn::visit::Visit;
use syn::{Item, Signature, Type};

use crate::hash::hash_str;

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

/// The function-pointer type of a reloadable function's signature.
pub(crate) fn fn_pointer_type(sig: &Signature) -> Type {
    let unsafety = &sig.unsafety;
    let inputs = sig.inputs.iter().filter_map(|arg| match arg {
        syn::FnArg::Typed(t) => Some(&t.ty),
        syn::FnArg::Receiver(_) => None,
    });
    let output = &sig.output;
    syn::parse_quote!(#unsafety extern "C" fn(#(#inputs),*) #output)
}

/// Every identifier used in a path inside `node` (type names, generic
/// arguments, path segments).
fn idents_of(visit: impl FnOnce(&mut IdentCollector)) -> BTreeSet<String> {
    let mut collector = IdentCollector(BTreeSet::new());
    visit(&mut collector);
    collector.0
}

struct IdentCollector(BTreeSet<String>);

impl Visit<'_> for IdentCollector {
    fn visit_path_segment(&mut self, i: &syn::PathSegment) {
        self.0.insert(i.ident.to_string());
        syn::visit::visit_path_segment(self, i);
    }
}

/// Identifiers in a type.
pub(crate) fn type_idents(ty: &Type) -> BTreeSet<String> {
    idents_of(|c| c.visit_type(ty))
}

/// Identifiers in a signature's types.
pub(crate) fn signature_idents(sig: &Signature) -> BTreeSet<String> {
    type_idents(&fn_pointer_type(sig))
}

/// Whether a type mentions a path rooted at the crate itself.
pub(crate) fn mentions_crate_paths(ty: &Type) -> bool {
    struct Finder(bool);
    impl Visit<'_> for Finder {
        fn visit_path(&mut self, p: &syn::Path) {
            if p.leading_colon.is_none()
                && p.segments.first().is_some_and(|s| s.ident == "crate" || s.ident == "self" || s.ident == "super")
            {
                self.0 = true;
            }
            syn::visit::visit_path(self, p);
        }
    }
    let mut f = Finder(false);
    f.visit_type(ty);
    f.0
}

/// The crate's own type definitions that `idents` reach, transitively,
/// in a stable order.
fn local_closure(idents: BTreeSet<String>, locals: &BTreeMap<String, Vec<String>>) -> Vec<String> {
    let mut seen = BTreeSet::new();
    let mut work: Vec<String> = idents.into_iter().collect();
    while let Some(name) = work.pop() {
        let Some(defs) = locals.get(&name) else { continue };
        if !seen.insert(name) {
            continue;
        }
        for def in defs {
            if let Ok(item) = syn::parse_str::<Item>(def) {
                work.extend(idents_of(|c| c.visit_item(&item)));
            }
        }
    }
    seen.into_iter().flat_map(|name| locals[&name].clone()).collect()
}

/// Text and hash describing a type. The text is the type as written,
/// followed by the definitions of the crate's own types it uses, for
/// messages. The hash is computed from a *structural* key in which the
/// crate's own types are replaced by their fields (so adding, removing,
/// reordering or retyping a field changes it, but renaming a type does not:
/// a migration names the old layout under a new name).
pub(crate) fn describe_type(ty: &Type, locals: &BTreeMap<String, Vec<String>>) -> (String, u64) {
    let mut text = pretty_type(ty);
    for def in local_closure(type_idents(ty), locals) {
        text.push_str("; ");
        text.push_str(&one_line(&def));
    }
    let hash = hash_str(&structural_key(ty, locals));
    (text, hash)
}

/// Text and hash describing a signature, in the same way.
pub(crate) fn describe_signature(sig: &Signature, locals: &BTreeMap<String, Vec<String>>) -> (String, u64) {
    let fn_type = fn_pointer_type(sig);
    (pretty_type(&fn_type), hash_str(&structural_key(&fn_type, locals)))
}

/// The structural key of a type: see [`describe_type`].
pub(crate) fn structural_key(ty: &Type, locals: &BTreeMap<String, Vec<String>>) -> String {
    let mut key = String::new();
    Keyer { locals, stack: Vec::new() }.ty(ty, &mut key);
    key
}

struct Keyer<'a> {
    locals: &'a BTreeMap<String, Vec<String>>,
    /// Local types being expanded, to stop on recursive types.
    stack: Vec<String>,
}

impl Keyer<'_> {
    fn ty(&mut self, ty: &Type, out: &mut String) {
        match ty {
            Type::Path(p) if p.qself.is_none() => {
                if let Some(name) = self.local_name(&p.path) {
                    self.local(&name, out);
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
                                syn::GenericArgument::Type(t) => self.ty(t, out),
                                other => out.push_str(&quote!(#other).to_string()),
                            }
                        }
                        out.push('>');
                    }
                }
            }
            Type::Array(a) => {
                out.push('[');
                self.ty(&a.elem, out);
                let len = &a.len;
                out.push_str(&format!(";{}]", quote!(#len)));
            }
            Type::Tuple(t) => {
                out.push('(');
                for (i, elem) in t.elems.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    self.ty(elem, out);
                }
                out.push(')');
            }
            Type::Ptr(p) => {
                out.push_str(if p.mutability.is_some() { "*mut " } else { "*const " });
                self.ty(&p.elem, out);
            }
            Type::Reference(r) => {
                out.push_str(if r.mutability.is_some() { "&mut " } else { "&" });
                self.ty(&r.elem, out);
            }
            Type::Paren(p) => self.ty(&p.elem, out),
            Type::Group(g) => self.ty(&g.elem, out),
            Type::BareFn(f) => {
                out.push_str(if f.unsafety.is_some() { "unsafe fn(" } else { "fn(" });
                for (i, input) in f.inputs.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    self.ty(&input.ty, out);
                }
                out.push(')');
                if let syn::ReturnType::Type(_, ret) = &f.output {
                    out.push_str("->");
                    self.ty(ret, out);
                }
            }
            other => out.push_str(&pretty_type(other)),
        }
    }

    /// The crate-local type a path names, if any.
    fn local_name(&self, path: &syn::Path) -> Option<String> {
        if path.leading_colon.is_some() {
            return None;
        }
        let mut segments: Vec<&syn::PathSegment> = path.segments.iter().collect();
        while segments.first().is_some_and(|s| s.ident == "crate" || s.ident == "self" || s.ident == "super") {
            segments.remove(0);
        }
        let last = segments.last()?;
        let rooted_locally = segments.len() < path.segments.len() || segments.len() == 1;
        let name = last.ident.to_string();
        (rooted_locally && self.locals.contains_key(&name)).then_some(name)
    }

    fn local(&mut self, name: &str, out: &mut String) {
        if self.stack.iter().any(|n| n == name) {
            out.push_str("<recursive>");
            return;
        }
        self.stack.push(name.to_owned());
        let defs = self.locals[name].clone();
        for (i, def) in defs.iter().enumerate() {
            if i > 0 {
                out.push('|');
            }
            match syn::parse_str::<Item>(def) {
                Ok(item) => self.item(&item, out),
                Err(_) => out.push_str(&one_line(def)),
            }
        }
        self.stack.pop();
    }

    fn item(&mut self, item: &Item, out: &mut String) {
        let reprs = |attrs: &[syn::Attribute]| -> String {
            attrs.iter().map(|a| quote!(#a).to_string()).collect::<Vec<_>>().join("")
        };
        match item {
            Item::Struct(s) => {
                out.push_str(&reprs(&s.attrs));
                out.push_str("struct");
                self.fields(&s.fields, out);
            }
            Item::Union(u) => {
                out.push_str(&reprs(&u.attrs));
                out.push_str("union");
                self.fields(&syn::Fields::Named(u.fields.clone()), out);
            }
            Item::Enum(e) => {
                out.push_str(&reprs(&e.attrs));
                out.push_str("enum{");
                for variant in &e.variants {
                    out.push_str(&variant.ident.to_string());
                    self.fields(&variant.fields, out);
                    if let Some((_, discriminant)) = &variant.discriminant {
                        out.push_str(&format!("={}", quote!(#discriminant)));
                    }
                    out.push(',');
                }
                out.push('}');
            }
            Item::Type(t) => self.ty(&t.ty, out),
            other => out.push_str(&pretty_item(other)),
        }
    }

    fn fields(&mut self, fields: &syn::Fields, out: &mut String) {
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
            self.ty(&field.ty, out);
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

    fn locals(defs: &[&str]) -> BTreeMap<String, Vec<String>> {
        defs.iter()
            .map(|d| {
                let (name, text) = crate::scan::type_definition(&syn::parse_str(d).unwrap()).unwrap();
                (name, vec![text])
            })
            .collect()
    }

    #[test]
    fn signatures_print_as_function_pointer_types() {
        let sig: Signature = syn::parse_str("unsafe extern \"C\" fn f(mut a: u64, _: *mut   u8) -> u64").unwrap();
        assert_eq!(describe_signature(&sig, &BTreeMap::new()).0, "unsafe extern \"C\" fn(u64, *mut u8) -> u64");
        let names: Vec<String> = binding_params(&sig).iter().map(|(n, _)| n.to_string()).collect();
        assert_eq!(names, ["a", "arg1"]);
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
        let external = describe_type(&syn::parse_str("Mutex<u64>").unwrap(), &BTreeMap::new());
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
}
