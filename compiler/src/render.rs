//! Diagnostics → text, for terminals and golden files.

use miette::{GraphicalReportHandler, GraphicalTheme, NamedSource};

use crate::compile::{Located, SourceFile};

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
    let mut out = String::new();
    for d in diagnostics {
        let report = miette::Report::new(d.diagnostic.clone());
        let report = match d.file.and_then(|i| sources.get(i)) {
            Some(s) => report.with_source_code(NamedSource::new(&s.name, s.text.clone())),
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
