//! The summary a session example prints at the end: how long it took, the example's own rows,
//! and the first errors.

use std::fmt::{Display, Write as _};
use std::io::{self, Write};

use super::load::Finished;

/// Rows of `label  value`, each label padded to one width.
pub(crate) struct Summary {
    text: String,
    width: usize,
}

impl Summary {
    /// `done in … s`, then rows whose labels take `width` columns.
    pub(crate) fn new(finished: &Finished, width: usize) -> Self {
        let mut summary = Summary {
            text: String::new(),
            width,
        };
        let elapsed = finished.elapsed.as_secs_f64();
        writeln!(summary.text, "done in {elapsed:.1} s").expect("writing to a String");
        summary
    }

    /// `  label    value`.
    pub(crate) fn row(&mut self, label: &str, value: impl Display) {
        let width = self.width;
        writeln!(self.text, "  {label:<width$}{value}").expect("writing to a String");
    }

    /// `  text`, unaligned.
    pub(crate) fn line(&mut self, text: impl Display) {
        writeln!(self.text, "  {text}").expect("writing to a String");
    }

    /// The latency row: the median and the 99th percentile of the calls.
    pub(crate) fn latency(&mut self, finished: &Finished) {
        self.row("latency", finished.tally.latency());
    }

    /// The first errors the calls met, one line each.
    pub(crate) fn errors(&mut self, finished: &Finished) {
        for error in finished.tally.first_errors() {
            self.line(format_args!("error: {error}"));
        }
    }

    pub(crate) fn print(&self, out: &mut dyn Write) -> io::Result<()> {
        out.write_all(self.text.as_bytes())
    }
}
