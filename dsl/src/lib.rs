//! policy-dsl: the front end of the policy language.
//!
//! ```text
//! source text ──parser──► ast::File ──check──► checked::Policy
//!                 │                    │
//!                 └──── diagnostic::Error (all of them, with spans) ───► render
//! ```
//!
//! Pure: no IO, no kernel. Callers hand in text and get trees and diagnostics
//! back; [`render`] turns diagnostics into text for a terminal or a file.

pub mod analysis;
pub mod ast;
pub mod check;
pub mod checked;
pub mod diagnostic;
mod fast;
pub mod format;
pub mod parser;
pub mod schema;
pub mod suggest;

use miette::{GraphicalReportHandler, GraphicalTheme, NamedSource};

pub use diagnostic::Error;

/// The result of parsing and checking one file.
#[derive(Debug, Clone)]
pub struct FileReport {
    /// The checked policy, when the file has a header. Rules with errors are
    /// left out; use it only when [`FileReport::has_errors`] is false.
    pub policy: Option<checked::Policy>,
    /// Every error and warning, ordered by position in the file.
    pub diagnostics: Vec<Error>,
}

impl FileReport {
    /// Whether any diagnostic is an error (not a warning).
    pub fn has_errors(&self) -> bool {
        self.diagnostics.iter().any(|d| !d.is_warning())
    }
}

/// Parse and check one file's text.
pub fn check_source(source: &str) -> FileReport {
    let (file, mut diagnostics) = parser::parse(source);
    let (policy, more) = check::check(&file);
    diagnostics.extend(more);
    diagnostics.sort_by_key(|d| d.offset());
    FileReport {
        policy,
        diagnostics,
    }
}

/// Render diagnostics of one file as miette's graphical report, with or
/// without ANSI colour, `width` columns wide. Output ends with a newline per
/// diagnostic.
pub fn render(
    diagnostics: &[Error],
    file_name: &str,
    source: &str,
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
        let report = miette::Report::new(d.clone())
            .with_source_code(NamedSource::new(file_name, source.to_string()));
        // Writing into a String cannot fail.
        let _ = handler.render_report(&mut out, report.as_ref());
        out.push('\n');
    }
    out
}
