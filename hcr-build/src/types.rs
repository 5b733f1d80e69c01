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

/// Text and hash describing a type: its source text, followed by the
/// definitions of the crate's own types it uses (so that adding, removing or
/// reordering a field changes the hash).
pub(crate) fn describe_type(ty: &Type, locals: &BTreeMap<String, Vec<String>>) -> (String, u64) {
    let mut text = pretty_type(ty);
    for def in local_closure(type_idents(ty), locals) {
        text.push_str("; ");
        text.push_str(&one_line(&def));
    }
    let hash = hash_str(&text);
    (text, hash)
}

/// Text and hash describing a signature, in the same way.
pub(crate) fn describe_signature(sig: &Signature, locals: &BTreeMap<String, Vec<String>>) -> (String, u64) {
    let text = pretty_type(&fn_pointer_type(sig));
    let mut hashed = text.clone();
    for def in local_closure(signature_idents(sig), locals) {
        hashed.push_str("; ");
        hashed.push_str(&one_line(&def));
    }
    (text, hash_str(&hashed))
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
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
    fn nested_local_types_are_followed() {
        let ty: Type = syn::parse_str("[Particle; 4]").unwrap();
        let l = locals(&["struct Particle { pos: Vec2 }", "struct Vec2 { x: f32, y: f32 }"]);
        let text = describe_type(&ty, &l).0;
        assert!(text.contains("struct Particle") && text.contains("struct Vec2"), "{text}");
    }
}
