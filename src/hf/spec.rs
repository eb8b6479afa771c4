//! `hf://` source specs and how to reach the Hub (endpoint, token), without touching the process
//! environment unless asked to ([`HfOptions::from_env`]).

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::format::paths::validate_rel_path;
use crate::format::{validate_repo_id, HfRepoType};

/// The Hub huggingface_hub talks to when `HF_ENDPOINT` is not set.
pub const DEFAULT_ENDPOINT: &str = "https://huggingface.co";
/// huggingface_hub's default revision.
pub const DEFAULT_REVISION: &str = "main";

/// A repository snapshot to carry: `hf://[datasets/]ORG/NAME[@REVISION]` or `hf://NAME`, plus
/// the optional allow/ignore patterns (`--include`/`--exclude`).
#[derive(Debug, Clone, PartialEq)]
pub struct HfSpec {
    pub repo_type: HfRepoType,
    pub repo_id: String,
    /// A branch, tag or commit; `main` when none was given.
    pub revision: String,
    /// fnmatch patterns a file must match one of (none: every file).
    pub include: Vec<String>,
    /// fnmatch patterns a file must match none of.
    pub exclude: Vec<String>,
    /// The source as given.
    pub given: String,
}

impl HfSpec {
    /// Parses `hf://ORG/NAME[@REV]`, `hf://NAME[@REV]`, `hf://datasets/ORG/NAME[@REV]` (and
    /// `hf://models/…`). The revision runs to the end, so `@refs/pr/1` works.
    pub fn parse(arg: &str) -> Result<HfSpec> {
        let usage = |why: &str| {
            Error::Usage(format!(
                "{arg}: {why} (expected hf://ORG/NAME[@REVISION] or hf://datasets/ORG/NAME[@REVISION])"
            ))
        };
        let rest = arg
            .strip_prefix("hf://")
            .ok_or_else(|| usage("not an hf:// source"))?;
        let (repo, revision) = match rest.split_once('@') {
            Some((r, rev)) => (r, rev),
            None => (rest, DEFAULT_REVISION),
        };
        let (repo_type, repo_id) = if let Some(id) = repo.strip_prefix("datasets/") {
            (HfRepoType::Dataset, id)
        } else if let Some(id) = repo.strip_prefix("models/") {
            (HfRepoType::Model, id)
        } else if repo.starts_with("spaces/") {
            return Err(usage("Spaces are not carried"));
        } else {
            (HfRepoType::Model, repo)
        };
        validate_repo_id(repo_id).map_err(|e| usage(&format!("repo id {repo_id:?}: {e}")))?;
        if revision.is_empty()
            || !revision.bytes().all(|b| b.is_ascii_graphic())
            || validate_rel_path(revision).is_err()
        {
            return Err(usage(&format!("revision {revision:?} is not usable")));
        }
        Ok(HfSpec {
            repo_type,
            repo_id: repo_id.to_string(),
            revision: revision.to_string(),
            include: Vec::new(),
            exclude: Vec::new(),
            given: arg.to_string(),
        })
    }

    /// Sets the allow and ignore patterns.
    pub fn with_patterns(mut self, include: Vec<String>, exclude: Vec<String>) -> HfSpec {
        self.include = include;
        self.exclude = exclude;
        self
    }

    /// URL prefix of the repo type: `""` for models, `"datasets/"` for datasets.
    pub fn url_prefix(&self) -> &'static str {
        url_prefix(self.repo_type)
    }

    /// The default artifact name: huggingface_hub's cache folder name
    /// (`models--ORG--NAME`, `datasets--ORG--NAME`), plus `@REVISION` (`/` → `_`, commits
    /// shortened to 12 digits) when the revision is not `main`.
    pub fn default_name(&self) -> String {
        let mut n = format!(
            "{}s--{}",
            self.repo_type.as_str(),
            self.repo_id.replace('/', "--")
        );
        if self.revision != DEFAULT_REVISION {
            let rev = if super::is_hex(&self.revision, 40) {
                self.revision[..12].to_string()
            } else {
                self.revision.replace('/', "_")
            };
            n.push('@');
            n.push_str(&rev);
        }
        n
    }
}

pub fn url_prefix(t: HfRepoType) -> &'static str {
    match t {
        HfRepoType::Model => "",
        HfRepoType::Dataset => "datasets/",
    }
}

/// How to reach the Hub. `Debug` never shows the token.
#[derive(Clone, Default)]
pub struct HfOptions {
    /// Base URL without trailing `/` (`HF_ENDPOINT`); empty means [`DEFAULT_ENDPOINT`].
    pub endpoint: String,
    /// Sent as `Authorization: Bearer` to the endpoint's origin only.
    pub token: Option<String>,
    /// Extra CA certificates (PEM files) to trust.
    pub ca_certs: Vec<PathBuf>,
    /// Regular files downloaded at once (0: the default, 4).
    pub parallel: usize,
    /// The speed limit of every download ([`crate::net::Transfer`]).
    pub transfer: crate::net::Transfer,
}

impl std::fmt::Debug for HfOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HfOptions")
            .field("endpoint", &self.endpoint())
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("ca_certs", &self.ca_certs)
            .field("parallel", &self.parallel)
            .field("transfer", &self.transfer)
            .finish()
    }
}

impl HfOptions {
    /// An endpoint and an optional token.
    pub fn new(endpoint: &str, token: Option<&str>) -> HfOptions {
        HfOptions {
            endpoint: endpoint.trim_end_matches('/').to_string(),
            token: token.map(str::to_string),
            ..HfOptions::default()
        }
    }

    /// The endpoint in effect.
    pub fn endpoint(&self) -> &str {
        if self.endpoint.is_empty() {
            DEFAULT_ENDPOINT
        } else {
            &self.endpoint
        }
    }

    /// As huggingface_hub reads its configuration: `HF_ENDPOINT`; the token from `HF_TOKEN`,
    /// else the file `HF_TOKEN_PATH` (default `$HF_HOME/token`, `HF_HOME` defaulting to
    /// `$XDG_CACHE_HOME/huggingface` or `~/.cache/huggingface`).
    pub fn from_env() -> Result<HfOptions> {
        Self::from_vars(|k| std::env::var(k).ok())
    }

    /// [`from_env`](Self::from_env) with the variables looked up through `var`.
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<HfOptions> {
        let get = |k: &str| var(k).filter(|v| !v.is_empty());
        let endpoint = get("HF_ENDPOINT").unwrap_or_else(|| DEFAULT_ENDPOINT.to_string());
        let token = match get("HF_TOKEN") {
            Some(t) => Some(t.trim().to_string()),
            None => {
                let path = match get("HF_TOKEN_PATH") {
                    Some(p) => PathBuf::from(p),
                    None => hf_home(&get)?.join("token"),
                };
                read_token_file(&path)?
            }
        };
        Ok(HfOptions::new(&endpoint, token.as_deref()))
    }
}

fn hf_home(get: &impl Fn(&str) -> Option<String>) -> Result<PathBuf> {
    if let Some(h) = get("HF_HOME") {
        return Ok(PathBuf::from(h));
    }
    if let Some(x) = get("XDG_CACHE_HOME") {
        return Ok(Path::new(&x).join("huggingface"));
    }
    match get("HOME") {
        Some(home) => Ok(Path::new(&home).join(".cache/huggingface")),
        None => Ok(PathBuf::from(".cache/huggingface")),
    }
}

fn read_token_file(path: &Path) -> Result<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(s) => Ok(Some(s.trim().to_string()).filter(|t| !t.is_empty())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io("read token file", path, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn parses_specs() {
        let s = HfSpec::parse("hf://org/name").unwrap();
        assert_eq!(
            (s.repo_type, s.repo_id.as_str(), s.revision.as_str()),
            (HfRepoType::Model, "org/name", "main")
        );
        assert_eq!(s.default_name(), "models--org--name");
        let s = HfSpec::parse("hf://gpt2@v1.0").unwrap();
        assert_eq!((s.repo_id.as_str(), s.revision.as_str()), ("gpt2", "v1.0"));
        assert_eq!(s.default_name(), "models--gpt2@v1.0");
        let s = HfSpec::parse("hf://datasets/org/set@refs/pr/1").unwrap();
        assert_eq!(s.repo_type, HfRepoType::Dataset);
        assert_eq!(s.revision, "refs/pr/1");
        assert_eq!(s.default_name(), "datasets--org--set@refs_pr_1");
        let c = "0123456789abcdef0123456789abcdef01234567";
        let s = HfSpec::parse(&format!("hf://o/n@{c}")).unwrap();
        assert_eq!(s.default_name(), "models--o--n@0123456789ab");
        for bad in [
            "hf://",
            "hf://a/b/c",
            "hf://a--b/c",
            "hf://o/n@",
            "hf://o/n@../x",
            "hf://spaces/o/n",
            "https://x",
        ] {
            assert!(HfSpec::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn options_from_variables() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("token"), "hf_file\n").unwrap();
        let home = dir.path().to_str().unwrap().to_string();
        let vars = |pairs: &[(&str, &str)]| {
            let m: HashMap<String, String> = pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            move |k: &str| m.get(k).cloned()
        };
        let o = HfOptions::from_vars(vars(&[("HF_HOME", &home)])).unwrap();
        assert_eq!(o.endpoint(), DEFAULT_ENDPOINT);
        assert_eq!(o.token.as_deref(), Some("hf_file"));
        let o = HfOptions::from_vars(vars(&[
            ("HF_HOME", &home),
            ("HF_TOKEN", "hf_env"),
            ("HF_ENDPOINT", "http://127.0.0.1:9/"),
        ]))
        .unwrap();
        assert_eq!(o.endpoint(), "http://127.0.0.1:9");
        assert_eq!(o.token.as_deref(), Some("hf_env"));
        assert!(!format!("{o:?}").contains("hf_env"));
        let o = HfOptions::from_vars(vars(&[("HOME", "/nonexistent")])).unwrap();
        assert_eq!(o.token, None);
    }
}
