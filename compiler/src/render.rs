//! Diagnostics → text, for terminals and golden files.

use std::sync::Arc;

use miette::{
    GraphicalReportHandler, GraphicalTheme, MietteError, MietteSpanContents, SourceCode,
    SourceSpan, SpanContents,
};

use crate::compile::{Located, SourceFile};

/// A source file shared by every diagnostic that points into it, with the
/// offsets of its lines. miette's own `SourceCode` for text finds a span's
/// lines by scanning from the start, and a `NamedSource` per diagnostic
/// copies the text: thousands of warnings on a large file cost warnings ×
/// file size. Here a span's lines are found by binary search, and miette
/// scans only a window of them, with the same result.
struct IndexedSource {
    name: String,
    text: Arc<str>,
    /// Byte offset of each line's start; a line ends at `\n`, `\r\n` or a
    /// lone `\r`, as miette counts them.
    line_starts: Arc<Vec<usize>>,
}

fn line_starts(text: &str) -> Vec<usize> {
    let b = text.as_bytes();
    let mut out = vec![0];
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'\n' => out.push(i + 1),
            b'\r' if b.get(i + 1) == Some(&b'\n') => {
                out.push(i + 2);
                i += 1;
            }
            b'\r' => out.push(i + 1),
            _ => {}
        }
        i += 1;
    }
    out
}

impl SourceCode for IndexedSource {
    fn read_span<'a>(
        &'a self,
        span: &SourceSpan,
        context_lines_before: usize,
        context_lines_after: usize,
    ) -> Result<Box<dyn SpanContents<'a> + 'a>, MietteError> {
        let bytes = self.text.as_bytes();
        let line_of = |off: usize| {
            self.line_starts
                .partition_point(|&s| s <= off)
                .saturating_sub(1)
        };
        // A window from well before the span's first line to well after its
        // last: miette's scan of it stops where a scan of the file would.
        let first = line_of(span.offset()).saturating_sub(context_lines_before + 1);
        let last = line_of(span.offset() + span.len()) + context_lines_after + 2;
        let lo = self.line_starts[first];
        let hi = self.line_starts.get(last).copied().unwrap_or(bytes.len());
        let window = &bytes[lo..hi.max(lo)];
        let shifted = SourceSpan::new(span.offset().saturating_sub(lo).into(), span.len());
        let inner = window.read_span(&shifted, context_lines_before, context_lines_after)?;
        Ok(Box::new(MietteSpanContents::new_named(
            self.name.clone(),
            inner.data(),
            SourceSpan::new((inner.span().offset() + lo).into(), inner.span().len()),
            inner.line() + first,
            inner.column(),
            inner.line_count() + first,
        )))
    }
}

/// Render every diagnostic with miette's graphical handler, `width` columns
/// wide, with ANSI colour when `color`. Each diagnostic ends with a blank line.
pub fn render(
    diagnostics: &[Located],
    sources: &[SourceFile],
    color: bool,
    width: usize,
) -> String {
    let theme = if color {
        GraphicalTheme::unicode()
    } else {
        GraphicalTheme::unicode_nocolor()
    };
    let handler = GraphicalReportHandler::new_themed(theme).with_width(width);
    // One shared copy and line index per file that diagnostics point into.
    let mut indexed: Vec<Option<(Arc<str>, Arc<Vec<usize>>)>> = vec![None; sources.len()];
    let mut out = String::new();
    for d in diagnostics {
        let report = miette::Report::new(d.diagnostic.clone());
        let report = match d.file.filter(|&i| i < sources.len()) {
            Some(i) => {
                let s = &sources[i];
                let (text, starts) = indexed[i]
                    .get_or_insert_with(|| {
                        (Arc::from(s.text.as_str()), Arc::new(line_starts(&s.text)))
                    })
                    .clone();
                report.with_source_code(IndexedSource {
                    name: s.name.clone(),
                    text,
                    line_starts: starts,
                })
            }
            None => report,
        };
        // Writing into a String cannot fail.
        let _ = handler.render_report(&mut out, report.as_ref());
        out.push('\n');
    }
    out
}

/// `N errors, M warnings` for the end of a check run.
pub fn summary(diagnostics: &[Located]) -> String {
    let warnings = diagnostics
        .iter()
        .filter(|d| d.diagnostic.is_warning())
        .count();
    let errors = diagnostics.len() - warnings;
    let plural = |n: usize, w: &str| format!("{n} {w}{}", if n == 1 { "" } else { "s" });
    format!(
        "{}, {}",
        plural(errors, "error"),
        plural(warnings, "warning")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The indexed source reads exactly what miette's own reading of the
    /// whole text gives, for every span of texts with `\n`, `\r\n`, lone
    /// `\r`, blank lines and no final newline.
    #[test]
    fn indexed_source_reads_as_miette_does() {
        let texts = [
            "a\nbb\n\nccc\ndd",
            "x\r\ny\rz\n\r\nlast\n",
            "one line only",
            "\n\n\nfoo\n\nbar baz\nqux\n\n",
        ];
        for text in texts {
            let indexed = IndexedSource {
                name: "f".into(),
                text: Arc::from(text),
                line_starts: Arc::new(line_starts(text)),
            };
            for offset in 0..=text.len() {
                for len in 0..=(text.len() - offset).min(6) {
                    for (before, after) in [(0, 0), (1, 1), (2, 3)] {
                        let span = SourceSpan::new(offset.into(), len);
                        let want = text.as_bytes().read_span(&span, before, after);
                        let got = indexed.read_span(&span, before, after);
                        match (want, got) {
                            (Ok(w), Ok(g)) => {
                                let at = format!("{text:?} {offset}+{len} ({before}, {after})");
                                assert_eq!(w.data(), g.data(), "{at}");
                                assert_eq!(w.span(), g.span(), "{at}");
                                assert_eq!(w.line(), g.line(), "{at}");
                                assert_eq!(w.column(), g.column(), "{at}");
                                assert_eq!(w.line_count(), g.line_count(), "{at}");
                                assert_eq!(g.name(), Some("f"));
                            }
                            (Err(_), Err(_)) => {}
                            (w, g) => panic!(
                                "{text:?} {offset}+{len}: miette {:?}, indexed {:?}",
                                w.is_ok(),
                                g.is_ok()
                            ),
                        }
                    }
                }
            }
        }
    }
}
