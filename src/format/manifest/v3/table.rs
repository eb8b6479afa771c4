//! The layout of version 3 manifest bytes: pretty JSON down to the tables, each row of a table
//! (a blob, an entry, a piece digest) compact on one line of its own.

use std::io;

/// Pretty JSON, except that an array inside an array is written on one line, compactly.
#[derive(Default)]
pub(super) struct TableFormatter {
    /// Per open container: compact, has a value.
    stack: Vec<(bool, bool, bool)>,
}

impl TableFormatter {
    fn open<W: ?Sized + io::Write>(&mut self, w: &mut W, array: bool) -> io::Result<()> {
        let compact = match self.stack.last() {
            Some(&(compact, is_array, _)) => compact || (array && is_array),
            None => false,
        };
        self.stack.push((compact, array, false));
        w.write_all(if array { b"[" } else { b"{" })
    }
    fn close<W: ?Sized + io::Write>(&mut self, w: &mut W, array: bool) -> io::Result<()> {
        let (compact, _, has_value) = self.stack.pop().unwrap_or_default();
        if !compact && has_value {
            w.write_all(b"\n")?;
            self.indent(w)?;
        }
        w.write_all(if array { b"]" } else { b"}" })
    }
    fn item<W: ?Sized + io::Write>(&mut self, w: &mut W, first: bool) -> io::Result<()> {
        let compact = self.stack.last().is_some_and(|t| t.0);
        if compact {
            if !first {
                w.write_all(b",")?;
            }
            return Ok(());
        }
        w.write_all(if first { b"\n" } else { b",\n" })?;
        self.indent(w)
    }
    fn indent<W: ?Sized + io::Write>(&self, w: &mut W) -> io::Result<()> {
        for _ in 0..self.stack.len() {
            w.write_all(b"  ")?;
        }
        Ok(())
    }
    fn valued(&mut self) {
        if let Some(t) = self.stack.last_mut() {
            t.2 = true;
        }
    }
}

impl serde_json::ser::Formatter for TableFormatter {
    fn begin_array<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.open(w, true)
    }
    fn end_array<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.close(w, true)
    }
    fn begin_array_value<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> io::Result<()> {
        self.item(w, first)
    }
    fn end_array_value<W: ?Sized + io::Write>(&mut self, _: &mut W) -> io::Result<()> {
        self.valued();
        Ok(())
    }
    fn begin_object<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.open(w, false)
    }
    fn end_object<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.close(w, false)
    }
    fn begin_object_key<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> io::Result<()> {
        self.item(w, first)
    }
    fn begin_object_value<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        let compact = self.stack.last().is_some_and(|t| t.0);
        w.write_all(if compact { b":" } else { b": " })
    }
    fn end_object_value<W: ?Sized + io::Write>(&mut self, _: &mut W) -> io::Result<()> {
        self.valued();
        Ok(())
    }
}
