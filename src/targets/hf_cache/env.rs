//! Where the Hugging Face cache is: huggingface_hub's environment rules.

use std::ffi::OsString;
use std::path::PathBuf;

/// The cache directory huggingface_hub uses, from the environment `env` gives (so it can be
/// tested without touching the process environment): `HF_HUB_CACHE`, else the legacy
/// `HUGGINGFACE_HUB_CACHE`, else `$HF_HOME/hub`, else `$XDG_CACHE_HOME/huggingface/hub`, else
/// `~/.cache/huggingface/hub` (`constants.py`). A leading `~` and `$VAR`/`${VAR}` are expanded
/// as Python's `expanduser`/`expandvars` do; empty variables count as unset.
pub fn default_dir(env: &dyn Fn(&str) -> Option<OsString>) -> PathBuf {
    let get = |k: &str| {
        env(k)
            .filter(|v| !v.is_empty())
            .map(|v| v.to_string_lossy().into_owned())
    };
    let home = get("HOME").unwrap_or_else(|| "~".to_string());
    let expand = |s: String| PathBuf::from(expand_vars(&expand_user(&s, &home), &get));
    if let Some(dir) = get("HF_HUB_CACHE").or_else(|| get("HUGGINGFACE_HUB_CACHE")) {
        return expand(dir);
    }
    let hf_home = get("HF_HOME").unwrap_or_else(|| {
        let xdg = get("XDG_CACHE_HOME").unwrap_or_else(|| format!("{home}/.cache"));
        format!("{xdg}/huggingface")
    });
    expand(hf_home).join("hub")
}

/// Whether `HF_HUB_DISABLE_SYMLINKS` asks for [`SnapshotLayout::Files`] (`1`, `ON`, `YES`,
/// `TRUE`, any case, as `constants._is_true`).
pub fn symlinks_disabled(env: &dyn Fn(&str) -> Option<OsString>) -> bool {
    env("HF_HUB_DISABLE_SYMLINKS").is_some_and(|v| {
        matches!(
            v.to_string_lossy().to_ascii_uppercase().as_str(),
            "1" | "ON" | "YES" | "TRUE"
        )
    })
}

fn expand_user(s: &str, home: &str) -> String {
    match s.strip_prefix('~') {
        Some(rest) if rest.is_empty() || rest.starts_with('/') => format!("{home}{rest}"),
        _ => s.to_string(),
    }
}

/// `$NAME` and `${NAME}` replaced when set, left as they are otherwise (`os.path.expandvars`).
fn expand_vars(s: &str, get: &dyn Fn(&str) -> Option<String>) -> String {
    let is_name = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let (name, raw_len) = if let Some(braced) = after.strip_prefix('{') {
            match braced.find('}') {
                Some(j) => (&braced[..j], j + 2),
                None => ("", 0),
            }
        } else {
            let n = after.find(|c: char| !is_name(c)).unwrap_or(after.len());
            (&after[..n], n)
        };
        match (name.is_empty(), get(name)) {
            (false, Some(v)) => out.push_str(&v),
            _ => out.push_str(&rest[i..i + 1 + raw_len]),
        }
        rest = &after[raw_len..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<OsString> + 'a {
        move |k| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| OsString::from(v))
        }
    }

    #[test]
    fn the_default_dir_follows_huggingface_hub() {
        let d = |vars: &[(&str, &str)]| default_dir(&env(vars));
        assert_eq!(
            d(&[("HOME", "/h")]),
            PathBuf::from("/h/.cache/huggingface/hub")
        );
        assert_eq!(
            d(&[("HOME", "/h"), ("XDG_CACHE_HOME", "/x")]),
            PathBuf::from("/x/huggingface/hub")
        );
        assert_eq!(
            d(&[
                ("HOME", "/h"),
                ("XDG_CACHE_HOME", "/x"),
                ("HF_HOME", "~/hf")
            ]),
            PathBuf::from("/h/hf/hub")
        );
        assert_eq!(
            d(&[("HF_HOME", "/hf"), ("HUGGINGFACE_HUB_CACHE", "/legacy")]),
            PathBuf::from("/legacy")
        );
        assert_eq!(
            d(&[
                ("HF_HOME", "/hf"),
                ("HF_HUB_CACHE", "$BASE/c"),
                ("BASE", "/b")
            ]),
            PathBuf::from("/b/c")
        );
        assert_eq!(
            d(&[("HF_HUB_CACHE", "${BASE}/c/$NOPE"), ("BASE", "/b")]),
            PathBuf::from("/b/c/$NOPE")
        );
        assert_eq!(
            d(&[("HF_HUB_CACHE", ""), ("HF_HOME", "/hf")]),
            PathBuf::from("/hf/hub")
        );
    }

    #[test]
    fn symlinks_can_be_disabled_as_in_the_client() {
        assert!(symlinks_disabled(&env(&[(
            "HF_HUB_DISABLE_SYMLINKS",
            "yes"
        )])));
        assert!(symlinks_disabled(&env(&[("HF_HUB_DISABLE_SYMLINKS", "1")])));
        assert!(!symlinks_disabled(&env(&[(
            "HF_HUB_DISABLE_SYMLINKS",
            "0"
        )])));
        assert!(!symlinks_disabled(&env(&[])));
    }
}
