//! The rules for the names modules and the host give the runtime: one
//! function per rule, with shared length limits.

/// The longest proc or global name, in bytes.
pub(crate) const MAX_NAME: usize = 1024;

/// The longest module name, in bytes (it is also a file-name stem).
pub(crate) const MAX_MODULE_NAME: usize = 255;

/// A proc or global name: not empty, at most [`MAX_NAME`] bytes. `what`
/// says which name it is, for the message.
pub(crate) fn check_name(name: &str, what: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err(format!("its {what} is empty"));
    }
    if name.len() > MAX_NAME {
        return Err(format!("its {what} is {} bytes long (at most {MAX_NAME})", name.len()));
    }
    Ok(())
}

/// A module name: also the stem of its file name (`lib<name>.so`), so at
/// most [`MAX_MODULE_NAME`] bytes of ASCII letters, digits, `_`, `-` and `.`,
/// not starting with `.`.
pub(crate) fn check_module_name(name: &str, what: &str) -> Result<(), String> {
    if name.len() > MAX_MODULE_NAME {
        return Err(format!("its {what} is {} bytes long (at most {MAX_MODULE_NAME})", name.len()));
    }
    let valid = !name.is_empty()
        && !name.starts_with('.')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if !valid {
        return Err(format!(
            "its {what} `{name}` is not a valid module name: use ASCII letters, digits, `_`, `-` and `.`, not starting with `.`"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_by_one_rule_each() {
        assert!(check_name("f", "proc name").is_ok());
        assert_eq!(check_name("", "proc name").unwrap_err(), "its proc name is empty");
        assert!(check_name(&"x".repeat(MAX_NAME), "n").is_ok());
        assert!(check_name(&"x".repeat(MAX_NAME + 1), "n").unwrap_err().contains("at most 1024"));
        assert!(check_module_name("game_logic-2.x", "n").is_ok());
        for bad in ["", "../etc", "a/b", "a\\b", ".hidden", "sp ace", "ü"] {
            assert!(check_module_name(bad, "n").is_err(), "{bad:?}");
        }
        assert!(check_module_name(&"m".repeat(MAX_MODULE_NAME + 1), "n").unwrap_err().contains("at most 255"));
    }
}
