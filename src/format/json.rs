//! Strict JSON: the one entry point by which airlock reads JSON from media, the enclave's state,
//! the audit log and the files next to them.
//!
//! `serde_json` keeps the *last* of duplicated object keys (and a map type such as `BTreeMap`
//! accepts them silently), so `{"nightly": {…1000…}, "nightly": {…1…}}` would read as sequence 1
//! while another JSON reader (or the officer's eye) sees 1000. [`from_slice`] first walks the
//! whole document once, without building it, and refuses any object that names a key twice, at
//! any depth, naming the key (escaped with [`super::text::escape`]) and where it is; only then
//! does it deserialise. Keys are compared after unescaping, so `"a"` and `"\u0061"` are the same
//! key. The walk is linear in the input and keeps one set of keys per open object (nesting is
//! bounded by `serde_json`'s recursion limit of 128).

use std::cell::RefCell;
use std::collections::HashSet;
use std::fmt;

use serde::de::{self, DeserializeOwned, DeserializeSeed, MapAccess, SeqAccess, Visitor};

use super::text::escape;

/// Longest key shown in a message; longer ones are cut (with `…`).
const MAX_KEY_SHOWN: usize = 120;

/// Why a JSON document was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonError {
    what: String,
    detail: String,
    duplicate: Option<String>,
}

impl JsonError {
    /// What went wrong, without the name of the document (for callers that name it themselves).
    pub fn detail(&self) -> &str {
        &self.detail
    }

    /// The duplicated key, when that is the problem (unescaped, as in the document).
    pub fn duplicate_key(&self) -> Option<&str> {
        self.duplicate.as_deref()
    }
}

impl fmt::Display for JsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.what, self.detail)
    }
}

impl std::error::Error for JsonError {}

/// Deserialises `bytes` as a `T`, refusing duplicate object keys anywhere in the document.
/// `what` names the document in the error (e.g. the file's path).
pub fn from_slice<T: DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T, JsonError> {
    check_unique_keys(bytes).map_err(|(detail, duplicate)| JsonError {
        what: what.to_string(),
        detail,
        duplicate,
    })?;
    serde_json::from_slice(bytes).map_err(|e| JsonError {
        what: what.to_string(),
        // serde names unknown fields and variants as the document spells them.
        detail: crate::format::text::escape(&e.to_string()).to_string(),
        duplicate: None,
    })
}

/// Checks that `bytes` is one JSON value in which no object repeats a key.
pub fn check(bytes: &[u8], what: &str) -> Result<(), JsonError> {
    check_unique_keys(bytes).map_err(|(detail, duplicate)| JsonError {
        what: what.to_string(),
        detail,
        duplicate,
    })
}

enum Part {
    Key(String),
    Index(usize),
}

fn render_path(path: &[Part]) -> String {
    let mut s = String::new();
    for p in path {
        match p {
            Part::Key(k) => {
                if !s.is_empty() {
                    s.push('.');
                }
                s += &shown(k);
            }
            Part::Index(i) => s += &format!("[{i}]"),
        }
    }
    s
}

/// A key as shown in messages: escaped, and cut when long.
fn shown(key: &str) -> String {
    let mut end = key.len().min(MAX_KEY_SHOWN);
    while !key.is_char_boundary(end) {
        end -= 1;
    }
    let cut = if end < key.len() { "…" } else { "" };
    format!("{}{cut}", escape(&key[..end]))
}

struct Walk<'a> {
    path: &'a RefCell<Vec<Part>>,
    dup: &'a RefCell<Option<String>>,
}

fn check_unique_keys(bytes: &[u8]) -> Result<(), (String, Option<String>)> {
    let path = RefCell::new(Vec::new());
    let dup = RefCell::new(None);
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let walked = Walk {
        path: &path,
        dup: &dup,
    }
    .deserialize(&mut de)
    .and_then(|()| de.end());
    walked.map_err(|e| (e.to_string(), dup.into_inner()))
}

impl<'de> DeserializeSeed<'de> for Walk<'_> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Walk<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_i128<E>(self, _: i128) -> Result<(), E> {
        Ok(())
    }
    fn visit_u128<E>(self, _: u128) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_none<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut i = 0usize;
        loop {
            self.path.borrow_mut().push(Part::Index(i));
            let more = seq.next_element_seed(Walk {
                path: self.path,
                dup: self.dup,
            })?;
            self.path.borrow_mut().pop();
            if more.is_none() {
                return Ok(());
            }
            i += 1;
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen: HashSet<String> = HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            if seen.contains(&key) {
                // serde's own wording for a struct field given twice, for every object.
                let mut msg = format!("duplicate field `{}`", shown(&key));
                let at = render_path(&self.path.borrow());
                if !at.is_empty() {
                    msg += &format!(" in {at}");
                }
                *self.dup.borrow_mut() = Some(key);
                return Err(de::Error::custom(msg));
            }
            self.path.borrow_mut().push(Part::Key(key));
            map.next_value_seed(Walk {
                path: self.path,
                dup: self.dup,
            })?;
            let Some(Part::Key(key)) = self.path.borrow_mut().pop() else {
                unreachable!("the walk pushes and pops in pairs")
            };
            seen.insert(key);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn duplicates_refused_at_any_depth() {
        let e = from_slice::<serde_json::Value>(br#"{"a":1,"a":2}"#, "x.json").unwrap_err();
        assert_eq!(e.duplicate_key(), Some("a"));
        assert!(
            e.to_string().starts_with("x.json: duplicate field `a`"),
            "{e}"
        );
        let e = from_slice::<serde_json::Value>(
            br#"{"channels":{"nightly":{"s":1000},"nightly":{"s":1}}}"#,
            "state.json",
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .contains("duplicate field `nightly` in channels"),
            "{e}"
        );
        let e = from_slice::<serde_json::Value>(br#"[{"b":[1,{"k":1,"k":1}]}]"#, "f").unwrap_err();
        assert!(e.to_string().contains("in [0].b[1]"), "{e}");
        // The same key spelled with an escape is the same key.
        let e = from_slice::<serde_json::Value>(br#"{"a":1,"\u0061":2}"#, "f").unwrap_err();
        assert_eq!(e.duplicate_key(), Some("a"));
        // Typed maps, which serde_json would fill last-wins.
        assert!(from_slice::<BTreeMap<String, u32>>(br#"{"x":1,"x":2}"#, "f").is_err());
        // A hostile key is shown escaped.
        let e = from_slice::<serde_json::Value>(b"{\"\\u001b[2K\":1,\"\\u001b[2K\":2}", "f")
            .unwrap_err();
        assert!(e.to_string().contains("\\e[2K") && !e.to_string().contains('\x1b'));
    }

    #[test]
    fn same_key_in_different_objects_is_fine() {
        let v: serde_json::Value =
            from_slice(br#"{"a":{"k":1},"b":{"k":2},"c":[{"k":1},{"k":2}]}"#, "f").unwrap();
        assert_eq!(v["c"][1]["k"], 2);
        // Syntax errors and trailing data are still errors.
        assert!(from_slice::<serde_json::Value>(b"{\"a\":1} x", "f").is_err());
        assert!(from_slice::<serde_json::Value>(b"{\"a\":", "f").is_err());
        assert!(check(&b"[".repeat(10_000), "f").is_err());
    }
}
