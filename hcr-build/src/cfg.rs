//! Evaluation of `#[cfg(...)]` on scanned items, the way rustc will see them.
//!
//! In a build script, cargo describes the target and the enabled features in
//! environment variables (`CARGO_CFG_*`, `CARGO_FEATURE_*`); [`Cfg::from_env`]
//! reads them, so items behind a disabled feature are neither registered nor
//! bound.

use std::collections::{BTreeMap, BTreeSet};

use syn::punctuated::Punctuated;
use syn::{Attribute, Meta, Token};

/// The configuration predicates that hold for a build.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Cfg {
    flags: BTreeSet<String>,
    values: BTreeMap<String, BTreeSet<String>>,
}

impl Cfg {
    /// No predicate holds: every `#[cfg(...)]` item except `not(...)` ones is
    /// left out.
    pub fn empty() -> Cfg {
        Cfg::default()
    }

    /// What cargo tells a build script: enabled features and target cfgs.
    pub fn from_env() -> Cfg {
        let mut cfg = Cfg::default();
        for (key, value) in std::env::vars() {
            if let Some(feature) = key.strip_prefix("CARGO_FEATURE_") {
                cfg.values.entry("feature".into()).or_default().insert(normalize_feature(feature));
            } else if let Some(name) = key.strip_prefix("CARGO_CFG_") {
                let name = name.to_ascii_lowercase();
                if value.is_empty() {
                    cfg.flags.insert(name);
                } else {
                    let set = cfg.values.entry(name.clone()).or_default();
                    set.extend(value.split(',').map(str::to_owned));
                    // Single-valued keys may also appear as flags (e.g. `unix`
                    // comes as CARGO_CFG_UNIX=""), handled above.
                }
            }
        }
        cfg
    }

    /// Adds an enabled feature.
    pub fn with_feature(mut self, feature: &str) -> Cfg {
        self.values.entry("feature".into()).or_default().insert(normalize_feature(feature));
        self
    }

    /// Whether feature `feature` is enabled.
    pub(crate) fn has_feature(&self, feature: &str) -> bool {
        self.values.get("feature").is_some_and(|f| f.contains(&normalize_feature(feature)))
    }

    /// The same configuration without any feature.
    pub(crate) fn without_features(&self) -> Cfg {
        let mut cfg = self.clone();
        cfg.values.remove("feature");
        cfg
    }

    /// Adds a flag such as `unix`.
    pub fn with_flag(mut self, flag: &str) -> Cfg {
        self.flags.insert(flag.into());
        self
    }

    /// Adds a `key = "value"` pair such as `target_os = "linux"`.
    pub fn with_value(mut self, key: &str, value: &str) -> Cfg {
        self.values.entry(key.into()).or_default().insert(value.into());
        self
    }

    /// Whether every `#[cfg]` among `attrs` holds.
    pub(crate) fn enabled(&self, attrs: &[Attribute]) -> syn::Result<bool> {
        for attr in attrs.iter().filter(|a| a.path().is_ident("cfg")) {
            let predicate: Meta = attr.parse_args()?;
            if !self.eval(&predicate)? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    fn eval(&self, predicate: &Meta) -> syn::Result<bool> {
        match predicate {
            Meta::Path(path) => Ok(path.get_ident().is_some_and(|i| self.flags.contains(&i.to_string()))),
            Meta::NameValue(nv) => {
                let Some(key) = nv.path.get_ident() else { return Ok(false) };
                let syn::Expr::Lit(syn::ExprLit { lit: syn::Lit::Str(value), .. }) = &nv.value else {
                    return Err(syn::Error::new_spanned(&nv.value, "expected a string in a cfg predicate"));
                };
                let key = key.to_string();
                let value = if key == "feature" { normalize_feature(&value.value()) } else { value.value() };
                Ok(self.values.get(&key).is_some_and(|set| set.contains(&value)))
            }
            Meta::List(list) => {
                let args = list.parse_args_with(Punctuated::<Meta, Token![,]>::parse_terminated)?;
                let op = list.path.get_ident().map(ToString::to_string).unwrap_or_default();
                match op.as_str() {
                    "all" => args.iter().try_fold(true, |acc, p| Ok(acc && self.eval(p)?)),
                    "any" => args.iter().try_fold(false, |acc, p| Ok(acc || self.eval(p)?)),
                    "not" if args.len() == 1 => Ok(!self.eval(&args[0])?),
                    _ => Err(syn::Error::new_spanned(list, "unknown cfg predicate")),
                }
            }
        }
    }
}

/// Cargo's spelling of a feature in `CARGO_FEATURE_*`: upper case, `-` as `_`.
fn normalize_feature(name: &str) -> String {
    name.to_ascii_uppercase().replace('-', "_")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn holds(cfg: &Cfg, attr: &str) -> bool {
        let item: syn::ItemFn = syn::parse_str(&format!("{attr} fn f() {{}}")).unwrap();
        cfg.enabled(&item.attrs).unwrap()
    }

    #[test]
    fn predicates_evaluate_like_rustc() {
        let cfg = Cfg::empty().with_feature("fast-math").with_flag("unix").with_value("target_os", "linux");
        assert!(holds(&cfg, r#"#[cfg(feature = "fast-math")]"#));
        assert!(holds(&cfg, r#"#[cfg(feature = "fast_math")]"#));
        assert!(!holds(&cfg, r#"#[cfg(feature = "slow")]"#));
        assert!(holds(&cfg, r#"#[cfg(all(unix, target_os = "linux"))]"#));
        assert!(!holds(&cfg, r#"#[cfg(any(windows, target_os = "macos"))]"#));
        assert!(holds(&cfg, r#"#[cfg(not(test))]"#));
        assert!(!holds(&cfg, "#[cfg(unix)] #[cfg(windows)]"));
        assert!(holds(&cfg, "#[inline]"));
    }
}
