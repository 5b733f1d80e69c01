//! Attributes for hcr modules, re-exported by `hcr-abi` (feature `macros`):
//!
//! * [`macro@reload`] marks a free function as a reloadable proc with the
//!   Rust ABI;
//! * [`macro@before_reload`], [`macro@after_reload`] and [`macro@first_load`]
//!   mark reload hooks.
//!
//! Each leaves the function as it is and adds, next to it, an exported
//! *shim* that the module's generated registration (`hcr-build`) hands to the
//! runtime. Shims are named after the crate (`CARGO_CRATE_NAME`, which cargo
//! sets) and the function, so that several module crates can be linked into
//! one binary:
//!
//! | attribute | shim |
//! |---|---|
//! | `#[reload]` on `fn update(..) -> R` | `__hcr_<crate>__update(..) -> Result<R, ProcPanic>` |
//! | `#[before_reload]` on `fn save()` | `__hcr_<crate>__save__before_reload` |
//! | `#[after_reload]` on `fn load()` | `__hcr_<crate>__load__after_reload` |
//! | `#[first_load]` on `fn setup()` | `__hcr_<crate>__setup__first_load` |
//!
//! The shim of a proc runs the function under `catch_unwind`: a panic comes
//! back to the caller as `Err(hcr_abi::ProcPanic)` with its message and
//! location, since a panic cannot unwind from one copy of `std` (the
//! module's) into another (the caller's). Hook shims are `extern "C"`
//! reload handlers that report a panic to the runtime instead.

use proc_macro::TokenStream;
use proc_macro2::{Span, TokenStream as TokenStream2};
use quote::{ToTokens, format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::visit::Visit;
use syn::{FnArg, ItemFn, Pat, ReturnType, Type};

/// Marks a free function as a reloadable proc that keeps the Rust ABI and
/// its Rust types.
///
/// ```ignore
/// #[hcr_abi::reload]
/// pub fn update(world: &mut World, input: &Input) -> Vec<Event> { .. }
/// ```
///
/// The function stays as written (the module calls it directly). Next to it
/// comes `__hcr_<crate>__update(world: &mut World, input: &Input) ->
/// Result<Vec<Event>, hcr_abi::ProcPanic>`, exported unmangled, which calls
/// it under `catch_unwind` and turns a panic into a `ProcPanic`. A
/// `ProcPanic` that reaches it as a panic payload (a proc of another module,
/// called through bindings, panicked) is passed on unchanged.
///
/// Refused, with an error at the offending tokens: generic functions
/// (lifetime, type or const parameters; elided lifetimes are fine), `async
/// fn`, `impl Trait` in the signature, variadic functions and methods
/// (`self`). `unsafe fn` is allowed; its shim is `unsafe` too.
///
/// The module needs `hcr-abi`'s feature `global-allocator` (values cross
/// between module and host); `hcr-build` generates the registration.
#[proc_macro_attribute]
pub fn reload(attr: TokenStream, item: TokenStream) -> TokenStream {
    expand_reload(attr.into(), item.into(), crate_name()).into()
}

/// Marks a function that runs before every reload, while the old code is
/// still current: `fn()` or `fn(&hcr_abi::ReloadEvent)`.
///
/// A panic in it is caught and reported to the runtime; the reload goes on.
#[proc_macro_attribute]
pub fn before_reload(attr: TokenStream, item: TokenStream) -> TokenStream {
    expand_hook(Hook::BeforeReload, attr.into(), item.into(), crate_name()).into()
}

/// Marks a function that runs after every reload (committed or rolled back,
/// see `ReloadEvent::outcome`), in the code that is current afterwards:
/// `fn()` or `fn(&hcr_abi::ReloadEvent)`.
///
/// A panic in it is caught and reported to the runtime.
#[proc_macro_attribute]
pub fn after_reload(attr: TokenStream, item: TokenStream) -> TokenStream {
    expand_hook(Hook::AfterReload, attr.into(), item.into(), crate_name()).into()
}

/// Marks a function that runs once, after the load that first brought its
/// module in committed (not after later reloads): `fn()` or
/// `fn(&hcr_abi::ReloadEvent)`.
///
/// A panic in it is caught and reported to the runtime.
#[proc_macro_attribute]
pub fn first_load(attr: TokenStream, item: TokenStream) -> TokenStream {
    expand_hook(Hook::FirstLoad, attr.into(), item.into(), crate_name()).into()
}

/// The crate being compiled, as cargo names it for rustc.
fn crate_name() -> Option<String> {
    std::env::var("CARGO_CRATE_NAME").ok().filter(|n| !n.is_empty())
}

/// The kinds of hooks, with the suffix of their shims.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Hook {
    BeforeReload,
    AfterReload,
    FirstLoad,
}

impl Hook {
    fn attribute(self) -> &'static str {
        match self {
            Hook::BeforeReload => "before_reload",
            Hook::AfterReload => "after_reload",
            Hook::FirstLoad => "first_load",
        }
    }
}

fn error(span: Span, message: impl std::fmt::Display) -> syn::Error {
    syn::Error::new(span, message)
}

/// Collects everything about `function` that cannot have a shim.
fn check_signature(function: &ItemFn, what: &str) -> Vec<syn::Error> {
    let sig = &function.sig;
    let name = &sig.ident;
    let mut errors = Vec::new();
    if let Some(receiver) = sig.receiver() {
        errors.push(error(
            receiver.span(),
            format!("{what} `{name}` cannot be a method: a stub has one address; make it a free function that takes the value as an argument"),
        ));
    }
    if !sig.generics.params.is_empty() || sig.generics.where_clause.is_some() {
        errors.push(error(
            sig.generics.span(),
            format!("{what} `{name}` cannot be generic: a stub has one address, so it cannot have type, const or lifetime parameters (elided lifetimes are fine)"),
        ));
    }
    if let Some(asyncness) = &sig.asyncness {
        errors.push(error(asyncness.span(), format!("{what} `{name}` cannot be `async`")));
    }
    if let Some(variadic) = &sig.variadic {
        errors.push(error(variadic.span(), format!("{what} `{name}` cannot be variadic")));
    }
    let mut finder = ImplTraitFinder(None);
    finder.visit_signature(sig);
    if let Some(span) = finder.0 {
        errors.push(error(
            span,
            format!("{what} `{name}` cannot use `impl Trait`: its type has no name the caller can use"),
        ));
    }
    errors
}

/// Finds `impl Trait` in a signature.
struct ImplTraitFinder(Option<Span>);

impl Visit<'_> for ImplTraitFinder {
    fn visit_type_impl_trait(&mut self, i: &syn::TypeImplTrait) {
        self.0.get_or_insert(i.span());
    }
}

fn combine(errors: Vec<syn::Error>) -> Option<syn::Error> {
    errors.into_iter().reduce(|mut all, e| {
        all.combine(e);
        all
    })
}

/// The function, unchanged, followed by the errors (so that rustc still sees
/// the function and reports nothing else about its uses).
fn with_errors(item: &ItemFn, error: syn::Error) -> TokenStream2 {
    let errors = error.to_compile_error();
    quote!(#item #errors)
}

fn parse_function(attr: TokenStream2, item: TokenStream2, attribute: &str) -> Result<ItemFn, TokenStream2> {
    let function: ItemFn = match syn::parse2(item.clone()) {
        Ok(f) => f,
        Err(_) => {
            let e =
                error(Span::call_site(), format!("#[{attribute}] goes on a free function (`fn name(..) {{ .. }}`)"));
            let errors = e.to_compile_error();
            return Err(quote!(#item #errors));
        }
    };
    if !attr.is_empty() {
        let e = error(attr.span(), format!("#[{attribute}] takes no arguments"));
        return Err(with_errors(&function, e));
    }
    Ok(function)
}

fn missing_crate_name(function: &ItemFn, attribute: &str) -> TokenStream2 {
    let e = error(
        function.sig.ident.span(),
        format!("#[{attribute}] needs the crate's name from cargo (CARGO_CRATE_NAME); build the module with cargo"),
    );
    with_errors(function, e)
}

/// A parameter name the shim can pass on: the function's own when it is a
/// plain identifier, otherwise `__hcr_arg<i>`.
fn parameter_names(function: &ItemFn) -> Vec<(syn::Ident, Type)> {
    function
        .sig
        .inputs
        .iter()
        .enumerate()
        .filter_map(|(i, input)| match input {
            FnArg::Typed(t) => {
                let name = match &*t.pat {
                    Pat::Ident(p) if p.by_ref.is_none() && p.subpat.is_none() && p.ident != "self" => p.ident.clone(),
                    _ => format_ident!("__hcr_arg{i}"),
                };
                Some((name, (*t.ty).clone()))
            }
            FnArg::Receiver(_) => None,
        })
        .collect()
}

fn expand_reload(attr: TokenStream2, item: TokenStream2, crate_name: Option<String>) -> TokenStream2 {
    let function = match parse_function(attr, item, "reload") {
        Ok(f) => f,
        Err(tokens) => return tokens,
    };
    if let Some(e) = combine(check_signature(&function, "reloadable function")) {
        return with_errors(&function, e);
    }
    let Some(crate_name) = crate_name else { return missing_crate_name(&function, "reload") };
    let sig = &function.sig;
    let ident = &sig.ident;
    let name = ident.to_string();
    let shim = format_ident!("__hcr_{}__{}", crate_name, ident, span = ident.span());
    let vis = &function.vis;
    let unsafety = &sig.unsafety;
    let params = parameter_names(&function);
    let declared = params.iter().map(|(n, t)| quote!(#n: #t));
    let args = params.iter().map(|(n, _)| n);
    let output = match &sig.output {
        ReturnType::Default => quote!(()),
        ReturnType::Type(_, ty) => ty.to_token_stream(),
    };
    let call = if unsafety.is_some() { quote!(unsafe { #ident(#(#args),*) }) } else { quote!(#ident(#(#args),*)) };
    let doc = format!(" The guard of reloadable function `{name}`: what the runtime's stub calls.");
    let span = ident.span();
    let shim_item = quote_spanned! {span=>
        #[doc = #doc]
        #[doc(hidden)]
        #[unsafe(no_mangle)]
        #[allow(non_snake_case, clippy::missing_safety_doc, clippy::too_many_arguments, unused_unsafe)]
        #vis #unsafety fn #shim(#(#declared),*) -> ::core::result::Result<#output, ::hcr_abi::ProcPanic> {
            ::hcr_abi::__private::guard(::core::env!("CARGO_CRATE_NAME"), #name, move || #call)
        }
    };
    quote! {
        #function
        #shim_item
    }
}

fn expand_hook(hook: Hook, attr: TokenStream2, item: TokenStream2, crate_name: Option<String>) -> TokenStream2 {
    let attribute = hook.attribute();
    let function = match parse_function(attr, item, attribute) {
        Ok(f) => f,
        Err(tokens) => return tokens,
    };
    let what = "reload hook";
    let mut errors = check_signature(&function, what);
    let sig = &function.sig;
    let ident = &sig.ident;
    if let Some(unsafety) = &sig.unsafety {
        errors.push(error(
            unsafety.span(),
            format!("{what} `{ident}` cannot be `unsafe`: the runtime calls it with no contract"),
        ));
    }
    let typed: Vec<&syn::PatType> = sig
        .inputs
        .iter()
        .filter_map(|i| match i {
            FnArg::Typed(t) => Some(t),
            FnArg::Receiver(_) => None,
        })
        .collect();
    match typed.as_slice() {
        [] => {}
        [one] if matches!(&*one.ty, Type::Reference(r) if r.mutability.is_none()) => {}
        _ => errors.push(error(
            sig.inputs.span(),
            format!("{what} `{ident}` takes no argument or one `&hcr_abi::ReloadEvent`"),
        )),
    }
    if let ReturnType::Type(_, ty) = &sig.output
        && !matches!(&**ty, Type::Tuple(t) if t.elems.is_empty())
    {
        errors.push(error(
            ty.span(),
            format!("{what} `{ident}` returns nothing; report problems from it by panicking or logging"),
        ));
    }
    if let Some(e) = combine(errors) {
        return with_errors(&function, e);
    }
    let Some(crate_name) = crate_name else { return missing_crate_name(&function, attribute) };
    let name = ident.to_string();
    let shim = format_ident!("__hcr_{}__{}__{}", crate_name, ident, attribute, span = ident.span());
    let vis = &function.vis;
    let call = if typed.is_empty() { quote!(|_| #ident()) } else { quote!(|event| #ident(event)) };
    let doc = format!(" The reload handler of hook `{name}` (#[{attribute}]): what the runtime calls.");
    let span = ident.span();
    let shim_item = quote_spanned! {span=>
        #[doc = #doc]
        #[doc(hidden)]
        #[unsafe(no_mangle)]
        #[allow(non_snake_case, clippy::missing_safety_doc)]
        #vis unsafe extern "C" fn #shim(_user: *mut ::core::ffi::c_void, event: *const ::hcr_abi::ReloadEvent) {
            #[allow(clippy::undocumented_unsafe_blocks)]
            unsafe { ::hcr_abi::__private::hook_guard(::core::env!("CARGO_CRATE_NAME"), #name, event, #call) }
        }
    };
    quote! {
        #function
        #shim_item
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reload(source: &str) -> String {
        expand_reload(TokenStream2::new(), source.parse().unwrap(), Some("game".into())).to_string()
    }

    fn hook(kind: Hook, source: &str) -> String {
        expand_hook(kind, TokenStream2::new(), source.parse().unwrap(), Some("game".into())).to_string()
    }

    /// The lines (from 1) of the `compile_error!`s in `tokens`.
    fn error_lines(tokens: &TokenStream2) -> Vec<usize> {
        let mut lines = Vec::new();
        for token in tokens.clone() {
            if let proc_macro2::TokenTree::Ident(i) = &token
                && i == "compile_error"
            {
                lines.push(i.span().start().line);
            }
        }
        lines
    }

    #[test]
    fn a_proc_keeps_its_function_and_gains_a_named_guard() {
        let out = reload("pub fn update(world: &mut World, mut n: u64, (a, b): (u8, u8)) -> Vec<Event> { todo!() }");
        assert!(out.starts_with("pub fn update"), "{out}");
        assert!(
            out.contains("pub fn __hcr_game__update (world : & mut World , n : u64 , __hcr_arg2 : (u8 , u8))"),
            "{out}"
        );
        assert!(out.contains(":: core :: result :: Result < Vec < Event > , :: hcr_abi :: ProcPanic >"), "{out}");
        assert!(
            out.contains(
                "guard (:: core :: env ! (\"CARGO_CRATE_NAME\") , \"update\" , move || update (world , n , __hcr_arg2))"
            ),
            "{out}"
        );
        assert!(out.contains("# [unsafe (no_mangle)]"), "{out}");
    }

    #[test]
    fn an_unsafe_proc_has_an_unsafe_guard_and_a_unit_proc_returns_unit() {
        let out = reload("unsafe fn poke(p: *mut u8) { }");
        assert!(
            out.contains("unsafe fn __hcr_game__poke (p : * mut u8) -> :: core :: result :: Result < () ,"),
            "{out}"
        );
        assert!(out.contains("move || unsafe { poke (p) }"), "{out}");
    }

    #[test]
    fn unsupported_signatures_are_refused_where_they_are_written() {
        let source = "fn generic<T: Copy>(x: T) -> T { x }\n\
                      async fn later() {}\n\
                      fn hidden(x: impl Copy) {}\n\
                      fn method(&self) {}";
        let file: syn::File = syn::parse_str(source).unwrap();
        let mut seen = Vec::new();
        for item in file.items {
            let out = expand_reload(TokenStream2::new(), item.to_token_stream(), Some("game".into()));
            let text = out.to_string();
            assert!(!text.contains("__hcr_game__"), "no guard for a refused function: {text}");
            seen.push((error_lines(&out), text));
        }
        assert_eq!(seen[0].0, vec![1]);
        assert!(seen[0].1.contains("cannot be generic"));
        assert_eq!(seen[1].0, vec![2]);
        assert!(seen[1].1.contains("cannot be `async`"));
        assert_eq!(seen[2].0, vec![3]);
        assert!(seen[2].1.contains("cannot use `impl Trait`"));
        assert_eq!(seen[3].0, vec![4]);
        assert!(seen[3].1.contains("cannot be a method"));
        // The function itself is kept, so its callers see no second error.
        assert!(seen[1].1.starts_with("async fn later"));
    }

    #[test]
    fn a_missing_crate_name_or_a_non_function_is_an_error() {
        let out = expand_reload(TokenStream2::new(), "fn f() {}".parse().unwrap(), None).to_string();
        assert!(out.contains("CARGO_CRATE_NAME") && out.contains("compile_error"), "{out}");
        let out = reload("struct S;");
        assert!(out.contains("goes on a free function"), "{out}");
        let out = expand_reload("fast".parse().unwrap(), "fn f() {}".parse().unwrap(), Some("g".into())).to_string();
        assert!(out.contains("takes no arguments"), "{out}");
    }

    #[test]
    fn hooks_become_extern_c_handlers() {
        let out = hook(Hook::BeforeReload, "fn save() { }");
        assert!(out.contains("unsafe extern \"C\" fn __hcr_game__save__before_reload (_user : * mut :: core :: ffi :: c_void , event : * const :: hcr_abi :: ReloadEvent)"), "{out}");
        assert!(out.contains("| _ | save ()"), "{out}");
        let out = hook(Hook::FirstLoad, "pub(crate) fn setup(e: &hcr_abi::ReloadEvent) { }");
        assert!(out.contains("pub (crate) unsafe extern \"C\" fn __hcr_game__setup__first_load"), "{out}");
        assert!(out.contains("| event | setup (event)"), "{out}");
        for bad in [
            "fn f(a: u32) {}",
            "fn f(a: &mut u32) {}",
            "fn f() -> u32 { 0 }",
            "unsafe fn f() {}",
            "fn f(a: &u8, b: &u8) {}",
        ] {
            let out = hook(Hook::AfterReload, bad);
            assert!(out.contains("compile_error") && !out.contains("__hcr_game__"), "{bad}: {out}");
        }
    }
}
