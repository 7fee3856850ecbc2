//! The whole pipeline over a set of source files.
//!
//! ```text
//! SourceFile… ──policy_dsl::check_source──► checked::Policy…
//!             ──lower::number_rules / lower──► HookTable per hook
//!             ──assemble──► PolicyBundle (digest last)
//! ```
//!
//! Pure: sources come in as text, the bundle and diagnostics go out.

use miette::{Diagnostic as _, SourceSpan};

use crate::bundle::{
    BundleSpec, Metadata, PolicyBundle, PolicyInfo, RateLimit, RuleEntry, ScopeEntry,
    SourceLocation, Verdict, API_VERSION, KIND, SCHEMA_VERSION,
};
use crate::lower::{self, LowerError};

/// One source file: its name as the user gave it (used in diagnostics and the
/// bundle's source locations) and its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceFile {
    /// Path or label, e.g. `policies/sudo-audit.policy`.
    pub name: String,
    /// UTF-8 source text.
    pub text: String,
}

/// Two files declare policies of the same name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, miette::Diagnostic)]
#[error("policy `{name}` is also declared in `{other_file}`")]
#[diagnostic(
    code(policyc::duplicate_policy_name),
    help("policy names identify events and metrics; rename one")
)]
pub struct DuplicatePolicyName {
    /// The name.
    pub name: String,
    /// The file that declared it first.
    pub other_file: String,
    /// This declaration's name.
    #[label("declared again here")]
    pub span: SourceSpan,
}

/// The bundle's name is not a Kubernetes object name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, miette::Diagnostic)]
#[error("bundle name `{name}` is not a valid Kubernetes object name")]
#[diagnostic(
    code(policyc::invalid_bundle_name),
    help("use at most 253 lowercase letters, digits, `-` and `.`, starting and ending with a letter or digit")
)]
pub struct InvalidBundleName {
    /// The name.
    pub name: String,
}

/// A policy with no rule and no `default deny` (warning): it compiles to
/// nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, miette::Diagnostic)]
#[error("policy `{name}` has no rules")]
#[diagnostic(
    code(policyc::empty_policy),
    severity(Warning),
    help("add a `rule`, or leave the file out of the bundle")
)]
pub struct EmptyPolicy {
    /// The policy.
    pub name: String,
    /// Its name in the header.
    #[label("nothing to enforce or audit")]
    pub span: SourceSpan,
}

/// Any compile diagnostic.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, miette::Diagnostic)]
#[allow(missing_docs)]
pub enum Diagnostic {
    #[error(transparent)]
    #[diagnostic(transparent)]
    Front(#[from] policy_dsl::Error),
    #[error(transparent)]
    #[diagnostic(transparent)]
    Lower(#[from] LowerError),
    #[error(transparent)]
    #[diagnostic(transparent)]
    DuplicatePolicyName(#[from] DuplicatePolicyName),
    #[error(transparent)]
    #[diagnostic(transparent)]
    InvalidBundleName(#[from] InvalidBundleName),
    #[error(transparent)]
    #[diagnostic(transparent)]
    EmptyPolicy(#[from] EmptyPolicy),
    #[error(transparent)]
    #[diagnostic(transparent)]
    Analysis(#[from] crate::overlap::AnalysisWarning),
    #[error(transparent)]
    #[diagnostic(transparent)]
    Kubernetes(#[from] crate::k8s::K8sError),
    #[error(transparent)]
    #[diagnostic(transparent)]
    DenyIsKill(#[from] crate::kernel_features::DenyIsKill),
    #[error(transparent)]
    #[diagnostic(transparent)]
    DenyNotEnforced(#[from] crate::kernel_features::DenyNotEnforced),
    #[error(transparent)]
    #[diagnostic(transparent)]
    Layout(#[from] crate::layout::LayoutError),
}

impl Diagnostic {
    /// Whether this is a warning rather than an error.
    pub fn is_warning(&self) -> bool {
        matches!(self.severity(), Some(miette::Severity::Warning))
    }
}

/// A diagnostic and the file it points into (`None`: not tied to a file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located {
    /// Index into the compiled [`SourceFile`]s.
    pub file: Option<usize>,
    /// The diagnostic.
    pub diagnostic: Diagnostic,
}

/// A successful compilation.
#[derive(Debug, Clone)]
pub struct Compiled {
    /// The bundle.
    pub bundle: PolicyBundle,
    /// Warnings found on the way.
    pub warnings: Vec<Located>,
}

/// A failed compilation: every error and warning, per file, in order.
#[derive(Debug, Clone)]
pub struct CompileFailure {
    /// The diagnostics (at least one error).
    pub diagnostics: Vec<Located>,
    /// The sources, kept for rendering.
    pub sources: Vec<SourceFile>,
}

impl std::fmt::Display for CompileFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&crate::render::render(
            &self.diagnostics,
            &self.sources,
            false,
            100,
        ))
    }
}

impl std::error::Error for CompileFailure {}

/// Parse and check every file (together: qualified names reach across
/// files). Returns the checked policies when no file has an error, and all
/// diagnostics in any case, per file in input order.
pub fn check(sources: &[SourceFile]) -> (Option<Vec<policy_dsl::checked::Policy>>, Vec<Located>) {
    let (policies, located, ok) = check_partial(sources);
    (
        ok.then(|| policies.into_iter().map(|(_, p)| p).collect()),
        located,
    )
}

/// [`check`], also returning the policies of files that checked with errors
/// (their declarations with errors left out), each with its file index, and
/// whether everything checked cleanly.
fn check_partial(
    sources: &[SourceFile],
) -> (
    Vec<(usize, policy_dsl::checked::Policy)>,
    Vec<Located>,
    bool,
) {
    let mut files = Vec::with_capacity(sources.len());
    let mut diagnostics: Vec<(usize, policy_dsl::Error)> = Vec::new();
    let mut failed = Vec::with_capacity(sources.len());
    for (i, source) in sources.iter().enumerate() {
        let parsed = policy_dsl::parser::parse_declarations(&source.text);
        diagnostics.extend(parsed.errors.into_iter().map(|d| (i, d)));
        files.push(parsed.file);
        failed.push(parsed.failed);
    }
    let checked = policy_dsl::check::check_files(&files);
    // A declaration that did not parse has its syntax error; do not also
    // report it as missing, or names it declares as unknown.
    diagnostics.extend(checked.diagnostics.into_iter().filter(|(f, d)| {
        let failed = &failed[*f];
        match d {
            policy_dsl::Error::MissingPolicy(_) => !failed.iter().any(|x| x.keyword == "policy"),
            policy_dsl::Error::UnknownSet(policy_dsl::diagnostic::UnknownSet { name, .. })
            | policy_dsl::Error::UnknownName(policy_dsl::diagnostic::UnknownName {
                name, ..
            }) => !failed
                .iter()
                .any(|x| x.name.as_deref() == Some(name.as_str())),
            _ => true,
        }
    }));
    diagnostics.sort_by_key(|(f, d)| (*f, d.offset()));
    let mut ok = !diagnostics.iter().any(|(_, d)| !d.is_warning())
        && failed
            .iter()
            .all(|f| !f.iter().any(|x| x.keyword == "policy"));
    let mut located: Vec<Located> = diagnostics
        .into_iter()
        .map(|(f, d)| Located {
            file: Some(f),
            diagnostic: d.into(),
        })
        .collect();
    let mut policies: Vec<(usize, policy_dsl::checked::Policy)> = Vec::new();
    for (i, p) in checked.policies.into_iter().enumerate() {
        let Some(p) = p else {
            ok = false;
            continue;
        };
        if let Some((first, _)) = policies.iter().find(|(_, q)| q.name == p.name) {
            ok = false;
            located.push(Located {
                file: Some(i),
                diagnostic: DuplicatePolicyName {
                    name: p.name.clone(),
                    other_file: sources[*first].name.clone(),
                    span: SourceSpan::from(p.name_span.start..p.name_span.end),
                }
                .into(),
            });
        }
        policies.push((i, p));
    }
    (policies, located, ok)
}

/// Everything `compile` checks: the front end, the term limit on every
/// hook and, for a hook past one kernel mask, whether it has a kernel layout
/// ([`crate::layout::check`]; only then are tables built), globs the tables
/// cannot run, and what the node runtime cannot load yet
/// ([`lower::runtime_unsupported`]).
/// `policyc check` reports this, so a clean check means a compile that
/// succeeds.
pub fn analyze(sources: &[SourceFile]) -> (Option<Vec<policy_dsl::checked::Policy>>, Vec<Located>) {
    analyze_with(sources, true, true)
}

/// [`analyze`] for a target kernel: also `policyc::deny_is_kill` (warning)
/// and `policyc::deny_not_enforced` (error) from `features`
/// ([`crate::kernel_features::diagnostics`]).
pub fn analyze_for_kernel(
    sources: &[SourceFile],
    features: &crate::kernel_features::KernelFeatures,
) -> (Option<Vec<policy_dsl::checked::Policy>>, Vec<Located>) {
    let (policies, mut diagnostics) = analyze(sources);
    let Some(policies) = policies else {
        return (None, diagnostics);
    };
    let extra = crate::kernel_features::diagnostics(&policies, features);
    let failed = extra.iter().any(|d| !d.diagnostic.is_warning());
    diagnostics.extend(extra);
    diagnostics.sort_by_key(|d| (d.file, label_offset(&d.diagnostic)));
    ((!failed).then_some(policies), diagnostics)
}

/// What [`compile_for_evaluation`] checks: as [`analyze`], without the
/// runtime gate.
pub fn analyze_for_evaluation(
    sources: &[SourceFile],
) -> (Option<Vec<policy_dsl::checked::Policy>>, Vec<Located>) {
    analyze_with(sources, false, false)
}

/// `layout`: also check past-one-mask hooks for a kernel layout, which
/// lowers the program; `compile_with` checks its own lowered tables instead
/// of lowering twice.
fn analyze_with(
    sources: &[SourceFile],
    runtime: bool,
    layout: bool,
) -> (Option<Vec<policy_dsl::checked::Policy>>, Vec<Located>) {
    let (partial, mut diagnostics, clean) = check_partial(sources);
    if !clean {
        // Report what the runtime cannot load too, for the declarations that
        // did check, so one run shows every problem (the term limit needs the
        // whole program and waits for a clean front end).
        if runtime {
            for (i, p) in &partial {
                for e in lower::runtime_unsupported(*i, p) {
                    diagnostics.push(Located {
                        file: Some(e.file()),
                        diagnostic: e.into(),
                    });
                }
            }
            diagnostics.sort_by_key(|d| (d.file, label_offset(&d.diagnostic)));
        }
        return (None, diagnostics);
    }
    let policies: Vec<policy_dsl::checked::Policy> = partial.into_iter().map(|(_, p)| p).collect();
    let mut ok = true;
    for (i, p) in policies.iter().enumerate() {
        if p.rules.is_empty() && p.defaults.is_empty() {
            diagnostics.push(Located {
                file: Some(i),
                diagnostic: EmptyPolicy {
                    name: p.name.clone(),
                    span: SourceSpan::from(p.name_span.start..p.name_span.end),
                }
                .into(),
            });
        }
    }
    let mut globs = Vec::new();
    for (i, p) in policies.iter().enumerate() {
        globs.extend(lower::glob_errors(i, p));
    }
    if globs.is_empty() {
        let program = lower::Program::new(&policies);
        let terms = lower::terms_per_hook(&program);
        if let Err(e) = terms {
            ok = false;
            diagnostics.push(Located {
                file: Some(e.file()),
                diagnostic: e.into(),
            });
        } else {
            // Past one mask of terms the kernel needs an anchored layout
            // (crate::layout): the tables decide whether one exists.
            let big = terms
                .as_ref()
                .is_ok_and(|t| t.values().any(|ts| ts.len() > crate::limits::MASK_TERMS));
            if runtime && layout && big {
                if let Ok(hooks) = lower::lower_program(&program) {
                    for (hook, table) in &hooks {
                        if let Err(e) = crate::layout::check(hook.as_str(), table) {
                            ok = false;
                            diagnostics.push(Located {
                                file: None,
                                diagnostic: e.into(),
                            });
                        }
                    }
                }
            }
            // Overlaps, shadowed, unsatisfiable and all-matching rules.
            diagnostics.extend(crate::overlap::warnings(&policies));
        }
    }
    for e in globs {
        ok = false;
        diagnostics.push(Located {
            file: Some(e.file()),
            diagnostic: e.into(),
        });
    }
    if runtime {
        for (i, p) in policies.iter().enumerate() {
            for e in lower::runtime_unsupported(i, p) {
                ok = false;
                diagnostics.push(Located {
                    file: Some(e.file()),
                    diagnostic: e.into(),
                });
            }
        }
        for e in lower::kernel_limits(&policies) {
            ok = false;
            diagnostics.push(Located {
                file: Some(e.file()),
                diagnostic: e.into(),
            });
        }
    }
    diagnostics.sort_by_key(|d| (d.file, label_offset(&d.diagnostic)));
    (ok.then_some(policies), diagnostics)
}

fn label_offset(d: &Diagnostic) -> usize {
    d.labels()
        .and_then(|mut l| l.next())
        .map(|l| l.offset())
        .unwrap_or(0)
}

/// Compile `sources` into a bundle named `name` that the node runtime loads.
///
/// # Errors
/// A [`CompileFailure`] holding every diagnostic when any file has an error,
/// a hook exceeds a kernel limit, something cannot be loaded by the runtime
/// yet, or `name` is not a Kubernetes object name.
pub fn compile(sources: &[SourceFile], name: &str) -> Result<Compiled, CompileFailure> {
    compile_with(sources, name, &K8sOptions::default(), true).map(|(c, _)| c)
}

/// What `policyc compile` writes besides the policies: Kubernetes labels
/// (`--labels`) and the node selector (`--node-selector`). Both empty by
/// default, and then absent from the bundle.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct K8sOptions {
    /// `metadata.labels`.
    pub labels: std::collections::BTreeMap<String, String>,
    /// `spec.nodeSelector` (covered by the digest).
    pub node_selector: std::collections::BTreeMap<String, String>,
    /// The bundle is meant to be a Kubernetes `PolicyBundle` object: a
    /// bundle larger than one object may be is an error, not a warning.
    pub object: bool,
}

/// [`compile`] with labels and a node selector. Also refuses a bundle too
/// large for one Kubernetes API object ([`crate::k8s::MAX_BUNDLE_BYTES`]).
///
/// # Errors
/// As [`compile`], and a diagnostic for an invalid label or an oversized
/// bundle.
pub fn compile_k8s(
    sources: &[SourceFile],
    name: &str,
    k8s: &K8sOptions,
) -> Result<Compiled, CompileFailure> {
    compile_with(sources, name, k8s, true).map(|(c, _)| c)
}

/// Compile `sources` into a bundle for the bundle evaluator (`policyc test`):
/// every hook, field and operator of the language, `count`, `rate`,
/// `default deny` and `mode = monitor`, without the runtime gate of
/// [`compile`]. Also returns the checked policies (their `test` blocks).
///
/// # Errors
/// As [`compile`], except for what only the runtime cannot load.
pub fn compile_for_evaluation(
    sources: &[SourceFile],
    name: &str,
) -> Result<(Compiled, Vec<policy_dsl::checked::Policy>), CompileFailure> {
    compile_with(sources, name, &K8sOptions::default(), false)
}

/// The bundle [`compile_for_evaluation`] makes, named `p`, of one in-memory
/// file `p.policy` holding `text` (policy header included): for tests and
/// tools that write policies as generated text.
///
/// # Errors
/// As [`compile_for_evaluation`].
pub fn evaluation_bundle_of(text: &str) -> Result<PolicyBundle, CompileFailure> {
    let sources = [SourceFile {
        name: "p.policy".into(),
        text: text.into(),
    }];
    compile_for_evaluation(&sources, "p").map(|(c, _)| c.bundle)
}

fn compile_with(
    sources: &[SourceFile],
    name: &str,
    k8s: &K8sOptions,
    runtime: bool,
) -> Result<(Compiled, Vec<policy_dsl::checked::Policy>), CompileFailure> {
    let fail = |diagnostics| CompileFailure {
        diagnostics,
        sources: sources.to_vec(),
    };
    let (policies, mut diagnostics) = analyze_with(sources, runtime, false);
    if !is_dns1123_subdomain(name) {
        diagnostics.push(Located {
            file: None,
            diagnostic: InvalidBundleName { name: name.into() }.into(),
        });
    }
    for (what, labels) in [
        ("label", &k8s.labels),
        ("node selector", &k8s.node_selector),
    ] {
        if let Err(e) = crate::k8s::check_labels(what, labels) {
            diagnostics.push(Located {
                file: None,
                diagnostic: e.into(),
            });
        }
    }
    let Some(policies) =
        policies.filter(|_| !diagnostics.iter().any(|d| !d.diagnostic.is_warning()))
    else {
        return Err(fail(diagnostics));
    };
    let program = lower::Program::new(&policies);
    let hooks = match lower::lower_program(&program) {
        Ok(h) => h,
        Err(e) => {
            diagnostics.push(Located {
                file: Some(e.file()),
                diagnostic: e.into(),
            });
            return Err(fail(diagnostics));
        }
    };
    // The layout check `policyc check` runs in `analyze`, on these tables.
    if runtime {
        let before = diagnostics.len();
        for (hook, table) in &hooks {
            if let Err(e) = crate::layout::check(hook.as_str(), table) {
                diagnostics.push(Located {
                    file: None,
                    diagnostic: e.into(),
                });
            }
        }
        if diagnostics.len() > before {
            return Err(fail(diagnostics));
        }
    }
    // One line index per file: `line_column` scans the text up to the
    // offset, which for one location per rule is quadratic in file size.
    let lines: Vec<LineIndex<'_>> = sources.iter().map(|s| LineIndex::new(&s.text)).collect();
    let location = |file: usize, offset: usize| {
        let source = &sources[file];
        let (line, column) = lines[file].line_column(offset);
        SourceLocation {
            file: source.name.clone(),
            line,
            column,
        }
    };
    let rule_entries = program
        .rules
        .iter()
        .map(|r| RuleEntry {
            id: r.id,
            name: r.rule.name.clone(),
            policy: policies[r.file].name.clone(),
            hook: r.rule.hook,
            verdict: r.rule.action.map(Verdict::from),
            audit: r.rule.audit,
            severity: r.rule.severity,
            message: r.rule.message.clone(),
            rate: r.rule.rate.map(|rate| RateLimit {
                count: rate.count,
                period_ms: rate.period_ms,
            }),
            source: location(r.file, r.rule.name_span.start),
        })
        .collect();
    let scopes = program
        .scopes
        .iter()
        .map(|s| ScopeEntry {
            id: s.id,
            name: s.scope.name.clone(),
            policy: policies[s.file].name.clone(),
            hook: s.scope.hook,
            source: location(s.file, s.scope.span.start),
        })
        .collect();
    let mut spec = BundleSpec {
        schema_version: SCHEMA_VERSION,
        compiler: format!("policyc {}", env!("CARGO_PKG_VERSION")),
        digest: String::new(),
        policies: policies
            .iter()
            .zip(sources)
            .map(|(p, s)| PolicyInfo {
                name: p.name.clone(),
                description: p.description.clone(),
                mode: p.mode,
                source: s.name.clone(),
            })
            .collect(),
        rules: rule_entries,
        scopes,
        hooks,
        node_selector: k8s.node_selector.clone(),
    };
    spec.digest = spec.compute_digest(name);
    let bundle = PolicyBundle {
        api_version: API_VERSION.into(),
        kind: KIND.into(),
        metadata: Metadata {
            name: name.into(),
            labels: k8s.labels.clone(),
        },
        spec,
    };
    drop(program);
    if runtime {
        // A bundle for Kubernetes is one API object: past its size it is
        // refused; a bundle for files is only warned about.
        let yaml = bundle.to_yaml();
        let json_len = serde_json::to_vec(&bundle).map_or(0, |j| j.len());
        if let Err(mut e) = crate::k8s::check_size(&yaml, json_len) {
            if let crate::k8s::K8sError::BundleTooLarge { note, .. } = &mut e {
                *note = bundle.repeated_sets_note();
            }
            if k8s.object {
                diagnostics.push(Located {
                    file: None,
                    diagnostic: e.into(),
                });
                return Err(fail(diagnostics));
            }
            if let crate::k8s::K8sError::BundleTooLarge { bytes, limit, note } = e {
                diagnostics.push(Located {
                    file: None,
                    diagnostic: crate::k8s::K8sError::BundleTooLargeForObject {
                        bytes,
                        limit,
                        note,
                    }
                    .into(),
                });
            }
        }
    }
    Ok((
        Compiled {
            bundle,
            warnings: diagnostics,
        },
        policies,
    ))
}

/// 1-based line and column (in characters) of byte `offset` in `text`.
pub fn line_column(text: &str, offset: usize) -> (u32, u32) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
    (line as u32, column as u32)
}

/// The start of every line of a text, for many [`line_column`] lookups.
pub struct LineIndex<'a> {
    text: &'a str,
    /// Byte offset of the first byte of each line, ascending.
    starts: Vec<usize>,
}

impl<'a> LineIndex<'a> {
    /// Index `text` (one pass).
    pub fn new(text: &'a str) -> LineIndex<'a> {
        let starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        LineIndex { text, starts }
    }

    /// [`line_column`] of `offset`, in time proportional to the line's length.
    pub fn line_column(&self, offset: usize) -> (u32, u32) {
        let offset = offset.min(self.text.len());
        // Lines starting at or before `offset`; the last is offset's line.
        let line = self.starts.partition_point(|s| *s <= offset);
        let start = self.starts[line - 1];
        let column = self.text[start..offset].chars().count() + 1;
        (line as u32, column as u32)
    }
}

/// Whether `name` is a Kubernetes object name (RFC 1123 subdomain).
pub fn is_dns1123_subdomain(name: &str) -> bool {
    name.len() <= 253
        && !name.is_empty()
        && name.split('.').all(|label| {
            let b = label.as_bytes();
            !b.is_empty()
                && b.iter()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
                && b[0] != b'-'
                && b[b.len() - 1] != b'-'
        })
}

/// Turn a file stem such as `sudo_audit` into a bundle name (`sudo-audit`):
/// lowercase, runs of other characters become `-`. Result may still be
/// invalid (e.g. empty); [`compile`] checks it.
pub fn bundle_name_from(stem: &str) -> String {
    let mut out = String::new();
    for c in stem.chars() {
        if c.is_ascii_alphanumeric() || c == '.' {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    out.trim_matches(['-', '.']).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(is_dns1123_subdomain("sudo-audit"));
        assert!(!is_dns1123_subdomain("Sudo"));
        assert!(!is_dns1123_subdomain("-a"));
        assert_eq!(bundle_name_from("Sudo_Audit.bundle"), "sudo-audit.bundle");
        assert_eq!(line_column("ab\ncd", 4), (2, 2));
        let text = "ab\ncé\n\nx";
        let index = LineIndex::new(text);
        for offset in (0..=text.len() + 2).filter(|o| text.is_char_boundary(*o.min(&text.len()))) {
            assert_eq!(
                index.line_column(offset),
                line_column(text, offset),
                "{offset}"
            );
        }
    }
}
