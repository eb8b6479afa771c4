//! `allow_patterns` / `ignore_patterns` as huggingface_hub applies them: Python's
//! `fnmatch.fnmatchcase` on the whole repo path (so `*` also matches `/`), a pattern ending in
//! `/` gets a `*` appended, and backslashes count as `/`.

/// One compiled pattern.
#[derive(Debug, Clone, PartialEq)]
pub struct Pattern {
    tokens: Vec<Tok>,
    text: String,
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Char(char),
    Any,
    Star,
    Set {
        negated: bool,
        items: Vec<(char, char)>,
    },
}

impl Pattern {
    pub fn new(pattern: &str) -> Pattern {
        let mut p = pattern.replace('\\', "/");
        if p.ends_with('/') {
            p.push('*');
        }
        let chars: Vec<char> = p.chars().collect();
        let mut tokens = Vec::new();
        let mut i = 0;
        while i < chars.len() {
            match chars[i] {
                '*' => {
                    if tokens.last() != Some(&Tok::Star) {
                        tokens.push(Tok::Star);
                    }
                    i += 1;
                }
                '?' => {
                    tokens.push(Tok::Any);
                    i += 1;
                }
                '[' => match parse_set(&chars, i + 1) {
                    Some((tok, next)) => {
                        tokens.push(tok);
                        i = next;
                    }
                    None => {
                        tokens.push(Tok::Char('['));
                        i += 1;
                    }
                },
                c => {
                    tokens.push(Tok::Char(c));
                    i += 1;
                }
            }
        }
        Pattern {
            tokens,
            text: pattern.to_string(),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether the whole of `path` matches (case-sensitively).
    pub fn matches(&self, path: &str) -> bool {
        let s: Vec<char> = path.replace('\\', "/").chars().collect();
        match_from(&self.tokens, &s)
    }
}

/// Parses a set after `[` at `start`; `None` when there is no closing `]` (then `[` is literal).
fn parse_set(chars: &[char], start: usize) -> Option<(Tok, usize)> {
    let mut i = start;
    let negated = chars.get(i) == Some(&'!');
    if negated {
        i += 1;
    }
    let mut items = Vec::new();
    let first = i;
    loop {
        let c = *chars.get(i)?;
        if c == ']' && i > first {
            return Some((Tok::Set { negated, items }, i + 1));
        }
        if chars.get(i + 1) == Some(&'-') && chars.get(i + 2).is_some_and(|&e| e != ']') {
            let end = chars[i + 2];
            if c <= end {
                items.push((c, end));
            }
            i += 3;
        } else {
            items.push((c, c));
            i += 1;
        }
    }
}

fn match_from(toks: &[Tok], s: &[char]) -> bool {
    // Iterative wildcard matching with backtracking to the last `*`.
    let (mut t, mut i) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while i < s.len() {
        let ok = match toks.get(t) {
            Some(Tok::Star) => {
                star = Some((t, i));
                t += 1;
                continue;
            }
            Some(Tok::Any) => true,
            Some(Tok::Char(c)) => *c == s[i],
            Some(Tok::Set { negated, items }) => {
                items.iter().any(|&(a, b)| a <= s[i] && s[i] <= b) != *negated
            }
            None => false,
        };
        if ok {
            t += 1;
            i += 1;
        } else if let Some((st, si)) = star {
            t = st + 1;
            i = si + 1;
            star = Some((st, si + 1));
        } else {
            return false;
        }
    }
    toks[t..].iter().all(|k| *k == Tok::Star)
}

/// An allow list and an ignore list, applied like `filter_repo_objects`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Filter {
    allow: Vec<Pattern>,
    ignore: Vec<Pattern>,
}

impl Filter {
    pub fn new(include: &[String], exclude: &[String]) -> Filter {
        Filter {
            allow: include.iter().map(|p| Pattern::new(p)).collect(),
            ignore: exclude.iter().map(|p| Pattern::new(p)).collect(),
        }
    }

    /// True when no pattern is set (every file is kept).
    pub fn is_empty(&self) -> bool {
        self.allow.is_empty() && self.ignore.is_empty()
    }

    pub fn keeps(&self, path: &str) -> bool {
        (self.allow.is_empty() || self.allow.iter().any(|p| p.matches(path)))
            && !self.ignore.iter().any(|p| p.matches(path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(p: &str, s: &str) -> bool {
        Pattern::new(p).matches(s)
    }

    #[test]
    fn behaves_like_fnmatchcase() {
        assert!(m("*.json", "config.json"));
        assert!(m("*.json", "sub/dir/config.json"), "* crosses /");
        assert!(m("data/*.json", "data/sub/x.json"));
        assert!(!m("*.json", "config.JSON"), "case-sensitive");
        assert!(m(
            "model-?????-of-*.safetensors",
            "model-00001-of-00002.safetensors"
        ));
        assert!(m("[abc]x", "bx"));
        assert!(!m("[!abc]x", "bx"));
        assert!(m("[!abc]x", "dx"));
        assert!(m("[a-c]", "b"));
        assert!(m("[]]", "]"));
        assert!(m("[x", "[x"), "unclosed [ is literal");
        assert!(
            m("onnx/", "onnx/model.onnx"),
            "a trailing / means the folder"
        );
        assert!(m("*", ""));
        assert!(!m("a*b", "ac"));
        assert!(m("a*b*c", "aXbYbZc"));
        assert!(m("tokenizer*", "tokenizer.json"));
        assert!(!m("tokenizer", "tokenizer.json"));
    }

    #[test]
    fn filter_applies_allow_then_ignore() {
        let f = Filter::new(&["*.json".into(), "*.txt".into()], &["sub/*".into()]);
        assert!(f.keeps("a.json"));
        assert!(!f.keeps("sub/a.json"));
        assert!(!f.keeps("model.bin"));
        assert!(Filter::new(&[], &[]).keeps("anything"));
        assert!(!Filter::new(&[], &["*.bin".into()]).keeps("x.bin"));
    }
}
