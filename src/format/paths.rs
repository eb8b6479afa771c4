//! Validation of names and relative paths taken from a manifest.
//!
//! A path that passes [`validate_rel_path`] can be joined under a destination directory without
//! escaping it: it is relative, has no `.`/`..`/empty components, no NUL, no backslash, no control
//! characters, and is bounded in length and depth. Names and paths also hold no Unicode format
//! characters (bidi overrides, zero-width characters: [`is_format_char`]), which would make a name
//! display as another (`readme\u{202e}txt.sh` as `readmehs.txt`, `mo\u{200b}del.bin` as `model.bin`). (Symlinks already present in a destination are
//! the importer's concern: see `fsutil::safe_join`.)

use unicode_normalization::UnicodeNormalization;

use super::limits::{MAX_COMPONENT_BYTES, MAX_DEPTH, MAX_PATH_BYTES};
use super::text::is_format_char;

/// The form in which names and paths are compared for uniqueness: lower-cased, then in Unicode
/// NFC. Two names with the same key would be one file on a case-insensitive or
/// normalising file system (macOS, Windows, ZFS with `normalization=formD`), so a manifest may
/// not hold both: `Config.json` and `config.json`, or `café` spelled with a precomposed `é`
/// (U+00E9) and with `e` + U+0301, are the same name.
pub fn name_key(name: &str) -> String {
    name.to_lowercase().nfc().collect()
}

fn validate_component(c: &str) -> Result<(), String> {
    if c.is_empty() {
        return Err("empty path component".into());
    }
    if c == "." || c == ".." {
        return Err(format!("{c:?} component"));
    }
    if c.len() > MAX_COMPONENT_BYTES {
        return Err(format!("component longer than {MAX_COMPONENT_BYTES} bytes"));
    }
    if let Some(ch) = c.chars().find(|&ch| ch == '\\' || ch.is_control()) {
        return Err(format!("forbidden character {ch:?}"));
    }
    if let Some(ch) = c.chars().find(|&ch| is_format_char(ch)) {
        return Err(format!(
            "forbidden format character '\\u{{{:04x}}}' (a bidi control, zero-width or other invisible character that changes how a name displays)",
            ch as u32
        ));
    }
    Ok(())
}

/// Checks a `/`-separated relative path from a manifest.
pub fn validate_rel_path(path: &str) -> Result<(), String> {
    if path.is_empty() {
        return Err("empty path".into());
    }
    if path.len() > MAX_PATH_BYTES {
        return Err(format!("longer than {MAX_PATH_BYTES} bytes"));
    }
    if path.starts_with('/') {
        return Err("absolute path".into());
    }
    let mut depth = 0;
    for c in path.split('/') {
        validate_component(c)?;
        depth += 1;
    }
    if depth > MAX_DEPTH {
        return Err(format!("deeper than {MAX_DEPTH} levels"));
    }
    Ok(())
}

/// Checks an artifact name: one path component, not hidden.
pub fn validate_name(name: &str) -> Result<(), String> {
    validate_component(name)?;
    if name.starts_with('.') {
        return Err("names may not start with '.'".into());
    }
    if name.contains('/') {
        return Err("names may not contain '/'".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_paths() {
        for p in [
            "a",
            "a/b/c.json",
            "dir with space/ünïcödé.txt",
            "..a/b..",
            ".hidden",
        ] {
            assert_eq!(validate_rel_path(p), Ok(()), "{p}");
        }
    }

    #[test]
    fn refuses_escaping_and_odd_paths() {
        let long = "x".repeat(300);
        let deep = vec!["d"; 200].join("/");
        for p in [
            "",
            "/etc/passwd",
            "../x",
            "a/../../x",
            "a//b",
            "a/./b",
            "a/",
            "a\\b",
            "a\0b",
            "a\nb",
            "readme\u{202e}txt.sh",
            "mo\u{200b}del.bin",
            "d\u{2066}ir/x",
            "x/\u{feff}y",
            long.as_str(),
            deep.as_str(),
        ] {
            assert!(validate_rel_path(p).is_err(), "{p:?} should be refused");
        }
    }

    #[test]
    fn keys_fold_case_and_normalisation() {
        assert_eq!(name_key("Caf\u{e9}"), name_key("CAFE\u{301}"));
        assert_eq!(name_key("\u{c9}t\u{e9}"), name_key("e\u{301}TE\u{301}"));
        assert_ne!(name_key("cafe"), name_key("caf\u{e9}"));
    }

    #[test]
    fn names_are_single_visible_components() {
        assert!(validate_name("model-v1.bin").is_ok());
        for n in [
            "",
            ".",
            "..",
            ".hidden",
            "a/b",
            "a\\b",
            "mo\u{200b}del.bin",
            "a\u{202e}b",
        ] {
            assert!(validate_name(n).is_err(), "{n:?}");
        }
    }
}
