//! `WWW-Authenticate` challenges (RFC 7235 / RFC 6750) as registries send them:
//! `Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:x:pull"`
//! or `Basic realm="test-realm"`.

use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// Lowercased scheme: `bearer` or `basic` (others are kept but unused).
    pub scheme: String,
    /// Parameters with lowercased names.
    pub params: BTreeMap<String, String>,
}

impl Challenge {
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params.get(name).map(String::as_str)
    }
}

/// Parses one header value into its challenges. Malformed parts are skipped, never panicked on.
pub fn parse(header: &str) -> Vec<Challenge> {
    let mut out: Vec<Challenge> = Vec::new();
    let s = header.as_bytes();
    let mut i = 0;
    let skip_ws = |i: &mut usize| {
        while *i < s.len() && (s[*i] == b' ' || s[*i] == b'\t' || s[*i] == b',') {
            *i += 1;
        }
    };
    loop {
        skip_ws(&mut i);
        if i >= s.len() {
            break;
        }
        // A token: either a new scheme (followed by space or end) or a parameter name (followed by '=').
        let start = i;
        while i < s.len() && !matches!(s[i], b' ' | b'\t' | b'=' | b',') {
            i += 1;
        }
        let token = header[start..i].to_ascii_lowercase();
        let mut j = i;
        while j < s.len() && (s[j] == b' ' || s[j] == b'\t') {
            j += 1;
        }
        if j < s.len() && s[j] == b'=' && !out.is_empty() {
            // name = value
            i = j + 1;
            while i < s.len() && (s[i] == b' ' || s[i] == b'\t') {
                i += 1;
            }
            let value = if i < s.len() && s[i] == b'"' {
                i += 1;
                let mut v = String::new();
                while i < s.len() && s[i] != b'"' {
                    if s[i] == b'\\' && i + 1 < s.len() {
                        i += 1;
                    }
                    let ch_len = header[i..].chars().next().map_or(1, char::len_utf8);
                    v.push_str(&header[i..i + ch_len]);
                    i += ch_len;
                }
                i += 1; // closing quote (or end)
                v
            } else {
                let vs = i;
                while i < s.len() && s[i] != b',' {
                    i += 1;
                }
                header[vs..i].trim().to_string()
            };
            out.last_mut()
                .expect("checked non-empty")
                .params
                .insert(token, value);
        } else if !token.is_empty() {
            out.push(Challenge {
                scheme: token,
                params: BTreeMap::new(),
            });
        } else {
            i += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_hub_bearer() {
        let c = parse(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:samalba/my-app:pull,push""#,
        );
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].scheme, "bearer");
        assert_eq!(c[0].param("realm"), Some("https://auth.docker.io/token"));
        assert_eq!(c[0].param("service"), Some("registry.docker.io"));
        assert_eq!(
            c[0].param("scope"),
            Some("repository:samalba/my-app:pull,push")
        );
    }

    #[test]
    fn basic_and_error_params_and_odd_input() {
        assert_eq!(parse(r#"Basic realm="test-realm""#)[0].scheme, "basic");
        let c = parse(
            r#"Bearer realm="http://127.0.0.1:5003/token",service="s",error="insufficient_scope",scope="repository:x:pull,push""#,
        );
        assert_eq!(c[0].param("error"), Some("insufficient_scope"));
        let two = parse(r#"Basic realm="a", Bearer realm="b""#);
        assert_eq!(two.len(), 2);
        assert_eq!(two[1].param("realm"), Some("b"));
        for junk in [
            "",
            "=",
            "\"",
            "Bearer realm=\"unterminated",
            ",,,",
            "Bearer =x",
            "Bearer realm=ü\"ß",
        ] {
            let _ = parse(junk);
        }
    }

    proptest::proptest! {
        #[test]
        fn never_panics(header in ".{0,200}") {
            let _ = parse(&header);
            let _ = crate::oci::reference::Reference::parse(&header);
        }
    }
}
