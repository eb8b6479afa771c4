//! Ollama model names, as both sides use them: the source parses `ollama://` arguments, the
//! targets name store paths and model directories from a bundle's `image.reference`.
//!
//! Names follow ollama's `types/model/name.go`: the defaults are `registry.ollama.ai`, `library`
//! and `latest`; a tag is the text after the last `:` when that comes after the last `/`; the
//! rest splits from the right on `/` into model, namespace and host. Each part starts with a
//! letter, digit or `_` and continues with letters, digits, `_`, `-`, `.` (not in a namespace)
//! and `:` (only in a host); host 1 to 350 bytes, the others 1 to 80. Case is kept as given,
//! as ollama keeps it.

use serde::Serialize;

use crate::error::{Error, Result};

pub const DEFAULT_HOST: &str = "registry.ollama.ai";
pub const DEFAULT_NAMESPACE: &str = "library";
pub const DEFAULT_TAG: &str = "latest";

/// The media type prefix of every Ollama layer.
pub const LAYER_PREFIX: &str = "application/vnd.ollama.image.";

/// A fully qualified Ollama model name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OllamaName {
    pub host: String,
    pub namespace: String,
    pub model: String,
    pub tag: String,
}

#[derive(Clone, Copy, PartialEq)]
enum Part {
    Host,
    Namespace,
    Model,
    Tag,
}

impl Part {
    fn as_str(self) -> &'static str {
        match self {
            Part::Host => "host",
            Part::Namespace => "namespace",
            Part::Model => "model",
            Part::Tag => "tag",
        }
    }
}

/// ollama's `isValidPart`.
fn valid_part(kind: Part, s: &str) -> bool {
    let max = if kind == Part::Host { 350 } else { 80 };
    if s.is_empty() || s.len() > max {
        return false;
    }
    let word = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    s.bytes().enumerate().all(|(i, c)| {
        if i == 0 {
            return word(c);
        }
        match c {
            b'_' | b'-' => true,
            b'.' => kind != Part::Namespace,
            b':' => kind == Part::Host,
            c => word(c),
        }
    })
}

impl OllamaName {
    /// Parses `[HOST/][NAMESPACE/]MODEL[:TAG]` as ollama does (`ParseName`), filling in the
    /// defaults, and refuses a name that is not fully qualified and valid.
    pub fn parse(s: &str) -> Result<OllamaName> {
        let bad = |why: String| {
            Error::Usage(format!(
                "ollama://{s}: {why} (expected [HOST/][NAMESPACE/]MODEL[:TAG], e.g. llama3.2 or registry.ollama.ai/library/llama3.2:1b)"
            ))
        };
        if s.contains("://") {
            return Err(bad("a scheme in the host is not supported".into()));
        }
        let mut rest = s;
        let mut tag = None;
        if let Some(i) = rest.rfind(':') {
            if rest.rfind('/').is_none_or(|j| i > j) {
                tag = Some(&rest[i + 1..]);
                rest = &rest[..i];
            }
        }
        let mut parts = rest.rsplitn(3, '/');
        let model = parts.next().unwrap_or_default();
        let namespace = parts.next();
        let host = parts.next();
        let n = OllamaName {
            host: host.unwrap_or(DEFAULT_HOST).to_string(),
            namespace: namespace.unwrap_or(DEFAULT_NAMESPACE).to_string(),
            model: model.to_string(),
            tag: tag.unwrap_or(DEFAULT_TAG).to_string(),
        };
        n.check().map_err(bad)?;
        Ok(n)
    }

    /// Parses the normalised form `HOST/NAMESPACE/MODEL:TAG` (an artifact's `image.reference`),
    /// every part required.
    pub fn parse_reference(s: &str) -> Result<OllamaName> {
        let bad = || {
            Error::Other(format!(
                "{s:?} is not an Ollama model reference HOST/NAMESPACE/MODEL:TAG"
            ))
        };
        let (path, tag) = s.rsplit_once(':').ok_or_else(bad)?;
        let mut it = path.split('/');
        let (Some(host), Some(namespace), Some(model), None) =
            (it.next(), it.next(), it.next(), it.next())
        else {
            return Err(bad());
        };
        let n = OllamaName {
            host: host.into(),
            namespace: namespace.into(),
            model: model.into(),
            tag: tag.into(),
        };
        n.check().map_err(|e| Error::Other(format!("{s:?}: {e}")))?;
        Ok(n)
    }

    fn check(&self) -> std::result::Result<(), String> {
        for (kind, v) in [
            (Part::Host, &self.host),
            (Part::Namespace, &self.namespace),
            (Part::Model, &self.model),
            (Part::Tag, &self.tag),
        ] {
            if !valid_part(kind, v) {
                return Err(format!(
                    "{} {v:?} is not valid: it must start with a letter, digit or '_' and \
                     continue with letters, digits, '_', '-'{}{}",
                    kind.as_str(),
                    if kind == Part::Namespace { "" } else { ", '.'" },
                    if kind == Part::Host { ", ':'" } else { "" }
                ));
            }
        }
        Ok(())
    }

    /// `HOST/NAMESPACE/MODEL:TAG`.
    pub fn reference(&self) -> String {
        format!(
            "{}/{}/{}:{}",
            self.host, self.namespace, self.model, self.tag
        )
    }

    /// The registry repository, `NAMESPACE/MODEL`.
    pub fn repository(&self) -> String {
        format!("{}/{}", self.namespace, self.model)
    }

    /// `HOST/NAMESPACE/MODEL/TAG`: the manifest's path under `manifests/` in an Ollama store.
    pub fn manifest_rel_path(&self) -> String {
        format!(
            "{}/{}/{}/{}",
            self.host, self.namespace, self.model, self.tag
        )
    }

    /// The default artifact name: `ollama_NAMESPACE_MODEL_TAG` for the default host,
    /// `ollama_HOST_NAMESPACE_MODEL_TAG` otherwise (`:` in a host becomes `_`).
    pub fn artifact_name(&self) -> String {
        let mut parts = vec!["ollama".to_string()];
        if self.host != DEFAULT_HOST {
            parts.push(self.host.replace(':', "_"));
        }
        parts.extend([self.namespace.clone(), self.model.clone(), self.tag.clone()]);
        parts.join("_")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> String {
        OllamaName::parse(s).unwrap().reference()
    }

    #[test]
    fn names_parse_as_ollama_parses_them() {
        assert_eq!(n("llama3.2"), "registry.ollama.ai/library/llama3.2:latest");
        assert_eq!(n("llama3.2:1b"), "registry.ollama.ai/library/llama3.2:1b");
        assert_eq!(n("me/m:q4_K_M"), "registry.ollama.ai/me/m:q4_K_M");
        assert_eq!(
            n("hf.co/bartowski/Llama-3.2-1B-Instruct-GGUF:Q4_K_M"),
            "hf.co/bartowski/Llama-3.2-1B-Instruct-GGUF:Q4_K_M"
        );
        assert_eq!(
            n("localhost:5000/library/tiny"),
            "localhost:5000/library/tiny:latest"
        );
        assert_eq!(
            n("localhost:5000/library/tiny:v1"),
            "localhost:5000/library/tiny:v1"
        );
        for bad in [
            "",
            ":t",
            "m:",
            "/m",
            "ns/",
            "a/b/c/d",
            "na.me/m",
            "-m",
            "m:t/x",
            "localhost:5000/m",
            "m@sha256:00",
            "http://h/n/m",
            &"m".repeat(81),
        ] {
            assert!(OllamaName::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn references_paths_and_names() {
        let x = OllamaName::parse("llama3.2").unwrap();
        assert_eq!(x.artifact_name(), "ollama_library_llama3.2_latest");
        assert_eq!(
            x.manifest_rel_path(),
            "registry.ollama.ai/library/llama3.2/latest"
        );
        assert_eq!(x.repository(), "library/llama3.2");
        let y = OllamaName::parse("localhost:5000/team/m:v1").unwrap();
        assert_eq!(y.artifact_name(), "ollama_localhost_5000_team_m_v1");
        assert_eq!(OllamaName::parse_reference(&y.reference()).unwrap(), y);
        for bad in [
            "registry.ollama.ai/library/m",
            "library/m:t",
            "h/a/b/m:t",
            "h/../m:t",
            "h/n/..:t",
        ] {
            assert!(OllamaName::parse_reference(bad).is_err(), "{bad:?}");
        }
    }
}
