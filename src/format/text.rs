//! Characters that may not appear in names or free text of a manifest, and the one escaping rule
//! by which strings that came from outside (media, a bundle, a registry, a hub, a policy) are
//! rendered on a terminal.
//!
//! A terminal interprets control characters (CR, ESC sequences) and a text renderer reorders or
//! hides Unicode *format* characters (bidi overrides, zero-width characters), so either can make
//! an officer read something other than what the bytes say. [`escape`] turns every such
//! character into a visible `\u{…}` escape (`\n`, `\r`, `\t`, `\e` and `\\` in short form); the
//! printer (`output`) applies it to every string from outside, and to whole lines as a last line
//! of defence.

use std::fmt;

/// Unicode general category Cf (format characters), plus the line and paragraph separators
/// (Zl, Zp): invisible characters that change how the text around them is displayed. The
/// ranges are those of Unicode 15.1.
pub fn is_format_char(c: char) -> bool {
    matches!(c as u32,
        0x00AD
        | 0x0600..=0x0605
        | 0x061C
        | 0x06DD
        | 0x070F
        | 0x0890..=0x0891
        | 0x08E2
        | 0x180E
        | 0x200B..=0x200F
        | 0x2028..=0x202E
        | 0x2060..=0x2064
        | 0x2066..=0x206F
        | 0xFEFF
        | 0xFFF9..=0xFFFB
        | 0x110BD
        | 0x110CD
        | 0x13430..=0x1343F
        | 0x1BCA0..=0x1BCA3
        | 0x1D173..=0x1D17A
        | 0xE0001
        | 0xE0020..=0xE007F)
}

/// A character that a terminal or text renderer does not show as itself: C0/C1 controls, DEL,
/// format characters and separators.
pub fn is_unsafe_char(c: char) -> bool {
    c.is_control() || is_format_char(c)
}

/// The first character of `s` that [`is_unsafe_char`], if any.
pub fn find_unsafe(s: &str) -> Option<char> {
    s.chars().find(|&c| is_unsafe_char(c))
}

/// Renders `s` with every unsafe character (and the backslash) escaped. See [`Escaped`].
pub fn escape(s: &str) -> Escaped<'_> {
    Escaped(s)
}

/// `Display` for a string from outside: printable characters as they are, a backslash as `\\`,
/// `\n` `\r` `\t` and ESC as `\n` `\r` `\t` `\e`, every other unsafe character as `\u{XXXX}`.
/// The result never contains a control or format character, so it is one line that reads the
/// same on every terminal.
#[derive(Clone, Copy)]
pub struct Escaped<'a>(pub &'a str);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.0;
        let mut start = 0;
        for (i, c) in s.char_indices() {
            let esc: Option<&str> = match c {
                '\\' => Some("\\\\"),
                '\n' => Some("\\n"),
                '\r' => Some("\\r"),
                '\t' => Some("\\t"),
                '\x1b' => Some("\\e"),
                _ => None,
            };
            if esc.is_none() && !is_unsafe_char(c) {
                continue;
            }
            f.write_str(&s[start..i])?;
            match esc {
                Some(e) => f.write_str(e)?,
                None => write!(f, "\\u{{{:04x}}}", c as u32)?,
            }
            start = i + c.len_utf8();
        }
        f.write_str(&s[start..])
    }
}

impl fmt::Debug for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{self}\"")
    }
}

/// Makes a whole block of text safe for a terminal while keeping its line structure: every
/// unsafe character except `\n` is escaped as [`escape`] does. The printer passes everything it
/// writes through this, so text assembled without [`escape`] still cannot move the cursor,
/// recolour, erase or reorder what is shown (a raw string can at worst start a new line).
pub fn sanitize_lines(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(|c| c != '\n' && is_unsafe_char(c)) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for (i, line) in text.split('\n').enumerate() {
        if i > 0 {
            out.push('\n');
        }
        // Backslashes stay as they are here: only strings from outside go through `escape`.
        for c in line.chars() {
            if is_unsafe_char(c) {
                out.push_str(&escape(c.encode_utf8(&mut [0; 4])).to_string());
            } else {
                out.push(c);
            }
        }
    }
    std::borrow::Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_controls_and_format_characters() {
        assert_eq!(
            escape("a\r\x1b[2Kb\n\t\\c\u{202e}d\u{200b}e\u{7f}\u{9b}").to_string(),
            "a\\r\\e[2Kb\\n\\t\\\\c\\u{202e}d\\u{200b}e\\u{007f}\\u{009b}"
        );
        assert_eq!(
            escape("model.safetensors ünï 模型").to_string(),
            "model.safetensors ünï 模型"
        );
    }

    #[test]
    fn sanitize_keeps_lines_and_backslashes() {
        assert_eq!(sanitize_lines("a\\b\nc\rd\n"), "a\\b\nc\\rd\n");
        assert!(matches!(
            sanitize_lines("plain\n"),
            std::borrow::Cow::Borrowed(_)
        ));
    }

    #[test]
    fn every_escaped_string_is_free_of_unsafe_characters() {
        let all: String = (0u32..0x11_0000).filter_map(char::from_u32).collect();
        assert!(find_unsafe(&escape(&all).to_string()).is_none());
        assert!(find_unsafe(&sanitize_lines(&all).replace('\n', "")).is_none());
    }
}
