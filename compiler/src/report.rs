//! Diagnostics → machine-readable documents, for CI: JSON and SARIF 2.1.0.
//!
//! ```text
//! Located… ──report()──► Report (JSON shape: code, severity, message, help, file,
//!                                 labels with line/column/offset)
//!                  └──sarif_log()──► SARIF 2.1.0 log (one run, rules, results)
//! ```
//!
//! Diagnostics are read only through the [`miette::Diagnostic`] trait (code,
//! severity, help, labels, `Display` for the message), so new codes need no
//! change here. The shape of both documents is described in
//! `docs/diagnostics.md`, section "Output formats".

use std::collections::BTreeMap;

use miette::Diagnostic as _;
use serde::{Deserialize, Serialize};
use serde_sarif::sarif;

use crate::compile::{Located, SourceFile};

/// `$schema` of the SARIF documents we write.
pub const SARIF_SCHEMA: &str = "https://json.schemastore.org/sarif-2.1.0.json";

/// `tool.driver.informationUri` of the SARIF documents.
pub const INFORMATION_URI: &str = "https://policyc.dev/";

/// Where `docs/diagnostics.md` is published; each SARIF rule's `helpUri` is
/// this plus the anchor of the code's section.
pub const DIAGNOSTICS_DOC_URI: &str = "https://policyc.dev/docs/diagnostics.md";

/// The text of `docs/diagnostics.md`, for rule descriptions and anchors.
const DIAGNOSTICS_DOC: &str = include_str!("../../docs/diagnostics.md");

/// Severity of a diagnostic in the machine-readable documents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Stops compilation.
    Error,
    /// Reported; fails the run only with `--deny-warnings`.
    Warning,
}

/// A place in a source file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    /// 1-based line.
    pub line: usize,
    /// 1-based column, counted in characters (Unicode scalar values), not bytes.
    pub column: usize,
    /// 0-based byte offset into the file.
    pub offset: usize,
}

/// A labelled span of a diagnostic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Label {
    /// The label text (`null` for a bare underline).
    pub message: Option<String>,
    /// First character of the span.
    pub start: Position,
    /// Just past the last character of the span (exclusive; equal to `start`
    /// for an empty span).
    pub end: Position,
}

/// One diagnostic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Diagnostic {
    /// Stable code, e.g. `policyc::unused_set`.
    pub code: Option<String>,
    /// `error` or `warning`.
    pub severity: Severity,
    /// One-line message.
    pub message: String,
    /// How to fix it, when known.
    pub help: Option<String>,
    /// The file as given on the command line (`null`: not tied to a file).
    pub file: Option<String>,
    /// Labels, primary first (empty when not tied to a file).
    pub labels: Vec<Label>,
}

/// The JSON document: every diagnostic in order, and the counts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    /// The diagnostics.
    pub diagnostics: Vec<Diagnostic>,
    /// How many are errors.
    pub errors: usize,
    /// How many are warnings.
    pub warnings: usize,
}

/// Byte offsets → line and character column, for one text.
struct LineIndex<'a> {
    text: &'a str,
    /// Byte offset of the start of each line.
    starts: Vec<usize>,
}

impl<'a> LineIndex<'a> {
    fn new(text: &'a str) -> Self {
        let starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        Self { text, starts }
    }

    /// The position of byte `offset`, clamped into the text and back to a
    /// character boundary (a label never points outside its file).
    fn position(&self, offset: usize) -> Position {
        let mut offset = offset.min(self.text.len());
        while !self.text.is_char_boundary(offset) {
            offset -= 1;
        }
        let line = self.starts.partition_point(|&s| s <= offset) - 1;
        let column = self.text[self.starts[line]..offset].chars().count() + 1;
        Position {
            line: line + 1,
            column,
            offset,
        }
    }
}

fn severity_of(d: &Located) -> Severity {
    if d.diagnostic.is_warning() {
        Severity::Warning
    } else {
        Severity::Error
    }
}

/// The JSON report of `diagnostics` over `sources` (the files they index).
pub fn report(diagnostics: &[Located], sources: &[SourceFile]) -> Report {
    let diagnostics: Vec<Diagnostic> = diagnostics
        .iter()
        .map(|d| {
            let source = d.file.and_then(|i| sources.get(i));
            let mut labels: Vec<miette::LabeledSpan> = d
                .diagnostic
                .labels()
                .map(Iterator::collect)
                .unwrap_or_default();
            // Primary first: the one marked primary, else the first given
            // (the convention of the front end's diagnostics).
            if let Some(i) = labels.iter().position(miette::LabeledSpan::primary) {
                let primary = labels.remove(i);
                labels.insert(0, primary);
            }
            let labels = match source {
                None => Vec::new(),
                Some(s) => {
                    let index = LineIndex::new(&s.text);
                    labels
                        .iter()
                        .map(|l| {
                            let start = index.position(l.offset());
                            Label {
                                message: l.label().map(str::to_string),
                                start,
                                end: index.position(start.offset.max(l.offset() + l.len())),
                            }
                        })
                        .collect()
                }
            };
            Diagnostic {
                code: d.diagnostic.code().map(|c| c.to_string()),
                severity: severity_of(d),
                message: d.diagnostic.to_string(),
                help: d.diagnostic.help().map(|h| h.to_string()),
                file: source.map(|s| s.name.clone()),
                labels,
            }
        })
        .collect();
    let warnings = diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Warning)
        .count();
    Report {
        errors: diagnostics.len() - warnings,
        warnings,
        diagnostics,
    }
}

/// The JSON document, pretty-printed, ending in a newline.
pub fn json(diagnostics: &[Located], sources: &[SourceFile]) -> String {
    let mut out =
        serde_json::to_string_pretty(&report(diagnostics, sources)).expect("the report serialises");
    out.push('\n');
    out
}

/// The SARIF document, pretty-printed, ending in a newline.
pub fn sarif(diagnostics: &[Located], sources: &[SourceFile]) -> String {
    let mut out = serde_json::to_string_pretty(&sarif_log(&report(diagnostics, sources)))
        .expect("the SARIF log serialises");
    out.push('\n');
    out
}

/// What `docs/diagnostics.md` says about a code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleDoc {
    /// Anchor of the code's section (GitHub's heading slug).
    pub anchor: String,
    /// First sentence of the section.
    pub short: Option<String>,
    /// First paragraph of the section.
    pub full: Option<String>,
}

/// Every `### `code`` section of `docs/diagnostics.md`, by code.
pub fn documented_rules() -> BTreeMap<String, RuleDoc> {
    parse_rule_docs(DIAGNOSTICS_DOC)
}

fn parse_rule_docs(doc: &str) -> BTreeMap<String, RuleDoc> {
    let mut rules = BTreeMap::new();
    let mut lines = doc.lines().peekable();
    while let Some(line) = lines.next() {
        let Some(heading) = line.strip_prefix("### ") else {
            continue;
        };
        let Some(code) = heading.strip_prefix('`').and_then(|h| h.split('`').next()) else {
            continue;
        };
        let mut paragraph = Vec::new();
        while let Some(next) = lines.peek() {
            let next = next.trim();
            if next.is_empty() || next.starts_with("```") || next.starts_with('#') {
                break;
            }
            paragraph.push(next);
            lines.next();
        }
        let full = (!paragraph.is_empty()).then(|| paragraph.join(" "));
        let short = full.as_ref().map(|f| match f.find(". ") {
            Some(i) => f[..=i].to_string(),
            None => f.clone(),
        });
        rules.insert(
            code.to_string(),
            RuleDoc {
                anchor: github_slug(heading),
                short,
                full,
            },
        );
    }
    rules
}

/// The anchor GitHub gives a Markdown heading: lower case, punctuation other
/// than `-` and `_` dropped, spaces turned into `-`.
pub fn github_slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

/// A file name as given → a SARIF `uri`: relative paths stay relative (a
/// relative reference, resolved by the consumer against its checkout),
/// absolute ones become `file://` URIs; characters a URI cannot hold are
/// percent-encoded.
fn artifact_uri(name: &str) -> String {
    let mut out = String::new();
    if name.starts_with('/') {
        out.push_str("file://");
    }
    for b in name.bytes() {
        let keep = b.is_ascii_alphanumeric() || b"-._~/!$&'()*+,;=:@".contains(&b);
        if keep {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn as_i64(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn location(file: &str, label: &Label, id: Option<i64>) -> sarif::Location {
    // SARIF lines and columns are 1-based; the run declares
    // `columnKind: unicodeCodePoints`, so columns count characters (Unicode
    // scalar values) like ours, not UTF-16 code units. endColumn is exclusive
    // (the column just past the region), as our `end` is.
    let region = sarif::Region::builder()
        .start_line(as_i64(label.start.line))
        .start_column(as_i64(label.start.column))
        .end_line(as_i64(label.end.line))
        .end_column(as_i64(label.end.column))
        .build();
    let physical = sarif::PhysicalLocation::builder()
        .artifact_location(
            sarif::ArtifactLocation::builder()
                .uri(artifact_uri(file))
                .build(),
        )
        .region(region)
        .build();
    sarif::Location {
        id,
        message: label
            .message
            .as_ref()
            .map(|m| sarif::Message::builder().text(m.clone()).build()),
        physical_location: Some(physical),
        annotations: None,
        logical_locations: None,
        properties: None,
        relationships: None,
    }
}

fn level(severity: Severity) -> sarif::ResultLevel {
    match severity {
        Severity::Error => sarif::ResultLevel::Error,
        Severity::Warning => sarif::ResultLevel::Warning,
    }
}

/// The SARIF 2.1.0 log of a report: one run of `policyc`, one rule per code
/// that occurs (sorted by code), one result per diagnostic.
pub fn sarif_log(report: &Report) -> sarif::Sarif {
    let docs = documented_rules();
    // code → (severity, message) of its first occurrence
    let mut codes: BTreeMap<&str, (Severity, &str)> = BTreeMap::new();
    for d in &report.diagnostics {
        if let Some(code) = &d.code {
            codes.entry(code).or_insert((d.severity, &d.message));
        }
    }
    let rule_index: BTreeMap<&str, i64> = codes
        .keys()
        .enumerate()
        .map(|(i, c)| (*c, as_i64(i)))
        .collect();
    let rules: Vec<sarif::ReportingDescriptor> = codes
        .iter()
        .map(|(code, (severity, message))| {
            let doc = docs.get(*code);
            let anchor = doc
                .map(|d| d.anchor.clone())
                .unwrap_or_else(|| github_slug(&format!("`{code}`")));
            let short = doc
                .and_then(|d| d.short.clone())
                .unwrap_or_else(|| (*message).to_string());
            let mut rule = sarif::ReportingDescriptor::builder()
                .id(*code)
                .short_description(
                    sarif::MultiformatMessageString::builder()
                        .text(short)
                        .build(),
                )
                .help_uri(format!("{DIAGNOSTICS_DOC_URI}#{anchor}"))
                .default_configuration(
                    sarif::ReportingConfiguration::builder()
                        .level(serde_json::to_value(level(*severity)).expect("a level"))
                        .build(),
                )
                .build();
            rule.full_description = doc
                .and_then(|d| d.full.clone())
                .filter(|f| doc.and_then(|d| d.short.as_ref()) != Some(f))
                .map(|f| sarif::MultiformatMessageString::builder().text(f).build());
            rule
        })
        .collect();
    let results: Vec<sarif::Result> = report
        .diagnostics
        .iter()
        .map(|d| {
            let text = match &d.help {
                Some(help) => format!("{}\nhelp: {help}", d.message),
                None => d.message.clone(),
            };
            let mut result = sarif::Result::builder()
                .level(level(d.severity))
                .message(sarif::Message::builder().text(text).build())
                .build();
            if let Some(code) = &d.code {
                result.rule_id = Some(code.clone());
                result.rule_index = rule_index.get(code.as_str()).copied();
            }
            if let Some(file) = &d.file {
                let mut labels = d.labels.iter();
                result.locations = Some(vec![match labels.next() {
                    Some(primary) => location(file, primary, None),
                    // Tied to a file but to no place in it.
                    None => sarif::Location::builder()
                        .physical_location(
                            sarif::PhysicalLocation::builder()
                                .artifact_location(
                                    sarif::ArtifactLocation::builder()
                                        .uri(artifact_uri(file))
                                        .build(),
                                )
                                .build(),
                        )
                        .build(),
                }]);
                let related: Vec<sarif::Location> = labels
                    .enumerate()
                    .map(|(i, l)| location(file, l, Some(as_i64(i + 1))))
                    .collect();
                if !related.is_empty() {
                    result.related_locations = Some(related);
                }
            }
            result
        })
        .collect();
    let driver = sarif::ToolComponent::builder()
        .name("policyc")
        .version(env!("CARGO_PKG_VERSION"))
        .information_uri(INFORMATION_URI)
        .rules(rules)
        .build();
    let run = sarif::Run::builder()
        .tool(sarif::Tool::builder().driver(driver).build())
        .results(results)
        .column_kind(serde_json::Value::from("unicodeCodePoints"))
        .build();
    sarif::Sarif::builder()
        .schema(SARIF_SCHEMA)
        .version(serde_json::Value::from("2.1.0"))
        .runs(vec![run])
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_count_characters_from_one() {
        let text = "ab\né€x\n";
        let index = LineIndex::new(text);
        let at = |o| {
            let p = index.position(o);
            (p.line, p.column, p.offset)
        };
        assert_eq!(at(0), (1, 1, 0));
        assert_eq!(at(2), (1, 3, 2)); // the newline itself
        assert_eq!(at(3), (2, 1, 3));
        assert_eq!(at(5), (2, 2, 5)); // after `é` (2 bytes)
        assert_eq!(at(8), (2, 3, 8)); // after `€` (3 bytes)
        assert_eq!(at(6), (2, 2, 5)); // inside `€`: back to its start
        assert_eq!(at(10), (3, 1, 10)); // end of text
        assert_eq!(at(99), (3, 1, 10)); // clamped
    }

    #[test]
    fn slugs_match_github() {
        assert_eq!(github_slug("`policyc::syntax`"), "policycsyntax");
        assert_eq!(
            github_slug("`policyc::unused_set` (warning)"),
            "policycunused_set-warning"
        );
        assert_eq!(github_slug("Output formats"), "output-formats");
    }

    #[test]
    fn every_documented_code_has_a_description() {
        let rules = documented_rules();
        assert!(!rules.is_empty());
        for (code, doc) in &rules {
            assert!(code.starts_with("policyc::"), "{code}");
            assert!(
                doc.short.as_deref().is_some_and(|s| !s.is_empty()),
                "the section of `{code}` in docs/diagnostics.md must start with a \
                 sentence (it is the SARIF rule's shortDescription)"
            );
            assert!(doc.anchor.starts_with("policyc"), "{code}: {}", doc.anchor);
        }
    }

    #[test]
    fn uris_are_references() {
        assert_eq!(artifact_uri("a/b.policy"), "a/b.policy");
        assert_eq!(artifact_uri("my dir/ü.policy"), "my%20dir/%C3%BC.policy");
        assert_eq!(artifact_uri("/abs/x.policy"), "file:///abs/x.policy");
    }
}
