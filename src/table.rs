//! Aligned text tables for reports (`inspect --files`, `audit show`): the one table renderer.
//!
//! Cells are report text: a caller embeds every string from outside (media, a bundle, a
//! registry, a hub) through [`escape`](crate::format::text::escape) before it becomes a cell, as
//! for any report line. Widths are display widths (`unicode-width`), so wide characters keep the
//! columns aligned. When the table is wider than the terminal, the one *flexible* column (a
//! name or path) wraps onto continuation lines: nothing is cut off, an officer sees every byte
//! of every name. Piped output (no terminal width) never wraps.

use unicode_width::{UnicodeWidthChar, UnicodeWidthStr};

/// Gap between columns.
const GAP: &str = "  ";
/// The narrowest a flexible column is squeezed to before the table simply overflows.
const MIN_FLEX: usize = 16;

pub struct Table {
    headers: Vec<String>,
    rows: Vec<Vec<String>>,
    right: Vec<bool>,
    flex: Option<usize>,
}

impl Table {
    pub fn new(headers: &[&str]) -> Table {
        Table {
            headers: headers.iter().map(|h| h.to_string()).collect(),
            rows: Vec::new(),
            right: vec![false; headers.len()],
            flex: None,
        }
    }

    /// Right-align column `col` (sizes, counts).
    pub fn right(mut self, col: usize) -> Table {
        self.right[col] = true;
        self
    }

    /// Column `col` wraps when the table is wider than the terminal.
    pub fn flexible(mut self, col: usize) -> Table {
        self.flex = Some(col);
        self
    }

    /// Adds a row; missing cells are empty, extra cells are a bug.
    pub fn row(&mut self, cells: Vec<String>) {
        assert!(
            cells.len() <= self.headers.len(),
            "row wider than its table"
        );
        self.rows.push(cells);
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The table as lines, each ending in `\n`. `width` is the terminal's width, if any.
    pub fn render(&self, width: Option<usize>) -> String {
        let mut out = String::new();
        self.render_to(width, &mut |line| out.push_str(line));
        out
    }

    /// [`Table::render`] one line at a time (each ending in `\n`), for a table too large to
    /// hold twice (`inspect --files` over a million files).
    pub fn render_to(&self, width: Option<usize>, out: &mut dyn FnMut(&str)) {
        let n = self.headers.len();
        fn cell(r: &[String], c: usize) -> &str {
            r.get(c).map(String::as_str).unwrap_or("")
        }
        let mut widths: Vec<usize> = (0..n)
            .map(|c| {
                self.rows
                    .iter()
                    .map(|r| cell(r, c).width())
                    .chain([self.headers[c].width()])
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        if let (Some(total), Some(f)) = (width, self.flex) {
            let others: usize = (0..n).filter(|&c| c != f).map(|c| widths[c]).sum::<usize>()
                + GAP.len() * n.saturating_sub(1);
            let room = total.saturating_sub(others).max(MIN_FLEX);
            widths[f] = widths[f].min(room);
        }
        let header: Vec<String> = self.headers.clone();
        for r in std::iter::once(&header).chain(self.rows.iter()) {
            let pieces: Vec<Vec<String>> = (0..n)
                .map(|c| {
                    if Some(c) == self.flex {
                        wrap(cell(r, c), widths[c])
                    } else {
                        vec![cell(r, c).to_string()]
                    }
                })
                .collect();
            let lines = pieces.iter().map(Vec::len).max().unwrap_or(1);
            for l in 0..lines {
                let mut line = String::new();
                for c in 0..n {
                    let text = pieces[c].get(l).map(String::as_str).unwrap_or("");
                    let pad = widths[c].saturating_sub(text.width());
                    if c > 0 {
                        line.push_str(GAP);
                    }
                    if self.right[c] {
                        line.extend(std::iter::repeat_n(' ', pad));
                        line.push_str(text);
                    } else {
                        line.push_str(text);
                        line.extend(std::iter::repeat_n(' ', pad));
                    }
                }
                line.truncate(line.trim_end().len());
                line.push('\n');
                out(&line);
            }
        }
    }
}

/// Splits `s` into pieces of at most `width` display columns (at least one character each).
fn wrap(s: &str, width: usize) -> Vec<String> {
    if s.width() <= width || width == 0 {
        return vec![s.to_string()];
    }
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut w = 0;
    for ch in s.chars() {
        let cw = ch.width().unwrap_or(0);
        if w + cw > width && !cur.is_empty() {
            out.push(std::mem::take(&mut cur));
            w = 0;
        }
        cur.push(ch);
        w += cw;
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// The width of the terminal on stdout, or `None` when stdout is not a terminal (a pipe, a
/// file): reports for programs are never wrapped. (In `output`, the one module that touches
/// stdout.)
pub use crate::output::terminal_width;

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Table {
        let mut t = Table::new(&["NAME", "SIZE", "SHA256"]).right(1).flexible(0);
        t.row(vec!["a".into(), "1 B".into(), "ab".into()]);
        t.row(vec![
            "a-very-long-name/with/dirs.safetensors".into(),
            "4.00 GiB".into(),
            "cd".into(),
        ]);
        t.row(vec!["日本語.txt".into(), "10 B".into(), "ef".into()]);
        t
    }

    #[test]
    fn columns_align_without_a_terminal() {
        let text = sample().render(None);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        let col = |l: &str| {
            l.find("ab")
                .or(l.find("cd"))
                .or(l.find("ef"))
                .or(l.find("SHA256"))
        };
        let first = col(lines[0]).unwrap();
        for l in &lines[1..] {
            // Byte offsets differ for wide characters; display columns must not.
            let prefix = &l[..col(l).unwrap()];
            assert_eq!(prefix.width(), lines[0][..first].width(), "{text}");
        }
        assert!(lines[1].contains("   1 B"), "sizes right-aligned: {text}");
    }

    #[test]
    fn a_narrow_terminal_wraps_the_name_and_loses_nothing() {
        let text = sample().render(Some(40));
        assert!(text.lines().all(|l| l.width() <= 40), "{text}");
        let joined: String = text
            .lines()
            .map(|l| l.split("  ").next().unwrap_or(""))
            .collect();
        assert!(joined.contains("a-very-long-name/"), "{text}");
        assert!(text.contains("dirs.safetensors"), "{text}");
        assert!(text.lines().count() > 4, "{text}");
    }
}
