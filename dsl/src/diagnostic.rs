//! Every problem the front end can report, each with a stable code.
//!
//! Each diagnostic is its own struct deriving [`thiserror::Error`] and
//! [`miette::Diagnostic`]: a lowercase message with user text in backticks, a
//! primary label at the exact span, and a `help` line. [`Error`] gathers them.
//! Codes are documented in `docs/diagnostics.md`; renaming one is a breaking
//! change for CI pipelines that filter on it.

use miette::{Diagnostic, SourceSpan};
use thiserror::Error as ThisError;

/// A source text could not be parsed at `span`.
#[derive(Debug, Clone, PartialEq, Eq, ThisError, Diagnostic)]
#[error("syntax error: expected {expected}, found {found}")]
#[diagnostic(code(policyc::syntax))]
pub struct SyntaxError {
    /// What the language allows here, in its own terms.
    pub expected: String,
    /// What is written there instead.
    pub found: String,
    /// The offending token.
    #[label("expected {expected} here")]
    pub span: SourceSpan,
    /// How to fix it.
    #[help]
    pub help: Option<String>,
}

/// A string literal holds an escape other than `\"`, `\\`, `\n`, `\t`.
#[derive(Debug, Clone, PartialEq, Eq, ThisError, Diagnostic)]
#[error("unknown escape `{escape}` in string")]
#[diagnostic(
    code(policyc::invalid_escape),
    help("strings accept `\\\"`, `\\\\`, `\\n` and `\\t`")
)]
pub struct InvalidEscape {
    /// The escape as written.
    pub escape: String,
    /// Where.
    #[label("unknown escape")]
    pub span: SourceSpan,
}

/// A file has no `policy NAME { … }` header.
#[derive(Debug, Clone, PartialEq, Eq, ThisError, Diagnostic)]
#[error("file has no `policy` header")]
#[diagnostic(
    code(policyc::missing_policy),
    help("start the file with `policy NAME {{ description = \"…\" }}`")
)]
pub struct MissingPolicy {
    /// Start of the file.
    #[label("a policy header is expected in this file")]
    pub span: SourceSpan,
}

/// A file has more than one `policy` header.
#[derive(Debug, Clone, PartialEq, Eq, ThisError, Diagnostic)]
#[error("second `policy` header `{name}` in one file")]
#[diagnostic(
    code(policyc::duplicate_policy),
    help("each file holds exactly one policy; split it into two files")
)]
pub struct DuplicatePolicy {
    /// Name in the second header.
    pub name: String,
    /// The second header.
    #[label("second header")]
    pub span: SourceSpan,
    /// The first header.
    #[label("first header")]
    pub first: SourceSpan,
}

/// Two declarations of the same kind share a name.
#[derive(Debug, Clone, PartialEq, Eq, ThisError, Diagnostic)]
#[error("{kind} `{name}` is declared twice")]
#[diagnostic(code(policyc::duplicate_name), help("rename one of them"))]
pub struct DuplicateName {
    /// `rule` or `set`.
    pub kind: &'static str,
    /// The name.
    pub name: String,
    /// The second declaration's name.
    #[label("declared again here")]
    pub span: SourceSpan,
    /// The first declaration's name.
    #[label("first declared here")]
    pub first: SourceSpan,
}

/// `on HOOK` names no hook.
#[derive(Debug, Clone, PartialEq, Eq, ThisError, Diagnostic)]
#[error("unknown hook `{name}`")]
#[diagnostic(code(policyc::unknown_hook))]
pub struct UnknownHook {
    /// The name as written.
    pub name: String,
    /// Where.
    #[label("not a hook")]
    pub span: SourceSpan,
    /// Suggestion and the list of hooks.
    #[help]
    pub help: String,
}

/// A comparison names no field of its hook.
#[derive(Debug, Clone, PartialEq, Eq, ThisError, Diagnostic)]
#[error("unknown field `{name}` on hook `{hook}`")]
#[diagnostic(code(policyc::unknown_field))]
pub struct UnknownField {
    /// The field as written.
    pub name: String,
    /// The rule's hook.
    pub hook: String,
    /// Where.
    #[label("not a field of `{hook}`")]
    pub span: SourceSpan,
    /// Suggestion and the hook's fields.
    #[help]
    pub help: String,
}

/// A set reference names no `set` declaration of the file.
#[derive(Debug, Clone, PartialEq, Eq, ThisError, Diagnostic)]
#[error("unknown set `{name}`")]
#[diagnostic(code(policyc::unknown_set))]
pub struct UnknownSet {
    /// The name as written.
    pub name: String,
    /// Where.
    #[label("no set of this name")]
    pub span: SourceSpan,
    /// Suggestion, or how to declare one.
    #[help]
    pub help: String,
}

/// `severity LEVEL` names no severity.
#[derive(Debug, Clone, PartialEq, Eq, ThisError, Diagnostic)]
#[error("unknown severity `{name}`")]
#[diagnostic(code(policyc::unknown_severity))]
pub struct UnknownSeverity {
    /// The name as written.
    pub name: String,
    /// Where.
    #[label("not a severity")]
    pub span: SourceSpan,
    /// Suggestion and the severities.
    #[help]
    pub help: String,
}

/// An operator got the wrong kind of operand (`in "x"`, `== { … }`).
#[derive(Debug, Clone, PartialEq, Eq, ThisError, Diagnostic)]
#[error("`{op}` expects {expected}, found {found}")]
#[diagnostic(code(policyc::operand_type))]
pub struct OperandType {
    /// The operator.
    pub op: &'static str,
    /// What it takes.
    pub expected: &'static str,
    /// What it got.
    pub found: &'static str,
    /// The operand.
    #[label("{found}")]
    pub span: SourceSpan,
    /// The operator.
    #[label("this operator")]
    pub op_span: SourceSpan,
    /// How to write it.
    #[help]
    pub help: String,
}

/// A path literal does not start with `/`.
#[derive(Debug, Clone, PartialEq, Eq, ThisError, Diagnostic)]
#[error("path `{value}` is not absolute")]
#[diagnostic(code(policyc::relative_path))]
pub struct RelativePath {
    /// The literal.
    pub value: String,
    /// Where.
    #[label("paths start with `/`")]
    pub span: SourceSpan,
    /// Why and how to fix it.
    #[help]
    pub help: String,
}

/// A path literal has empty, `.` or `..` components (or a trailing `/` where a
/// file is meant): the kernel reports canonical paths, so it could never match.
#[derive(Debug, Clone, PartialEq, Eq, ThisError, Diagnostic)]
#[error("path `{value}` is not canonical")]
#[diagnostic(code(policyc::non_canonical_path))]
pub struct NonCanonicalPath {
    /// The literal.
    pub value: String,
    /// Where.
    #[label("{problem}")]
    pub span: SourceSpan,
    /// Which component is wrong.
    pub problem: String,
    /// The canonical spelling, when there is one.
    #[help]
    pub help: String,
}

/// A path literal is longer than the kernel's path key.
#[derive(Debug, Clone, PartialEq, Eq, ThisError, Diagnostic)]
#[error("path is {len} bytes long, the kernel key holds at most {max}")]
#[diagnostic(
    code(policyc::path_too_long),
    help("policies compare paths of at most {max} bytes; use `startswith` with a shorter prefix")
)]
pub struct PathTooLong {
    /// Length in bytes.
    pub len: usize,
    /// Limit in bytes.
    pub max: usize,
    /// Where.
    #[label("{len} bytes")]
    pub span: SourceSpan,
}

/// A set has no elements.
#[derive(Debug, Clone, PartialEq, Eq, ThisError, Diagnostic)]
#[error("empty set")]
#[diagnostic(
    code(policyc::empty_set),
    help("an empty set matches nothing; list at least one value, or remove the test")
)]
pub struct EmptySet {
    /// The set literal.
    #[label("no values")]
    pub span: SourceSpan,
}

/// A set lists the same value twice (warning).
#[derive(Debug, Clone, PartialEq, Eq, ThisError, Diagnostic)]
#[error("`{value}` is listed twice in one set")]
#[diagnostic(
    code(policyc::duplicate_element),
    severity(Warning),
    help("remove the second one")
)]
pub struct DuplicateElement {
    /// The value.
    pub value: String,
    /// The second occurrence.
    #[label("again here")]
    pub span: SourceSpan,
    /// The first occurrence.
    #[label("first here")]
    pub first: SourceSpan,
}

/// A `set` is never referenced (warning).
#[derive(Debug, Clone, PartialEq, Eq, ThisError, Diagnostic)]
#[error("set `{name}` is never used")]
#[diagnostic(
    code(policyc::unused_set),
    severity(Warning),
    help("use it in a rule or remove it")
)]
pub struct UnusedSet {
    /// The set's name.
    pub name: String,
    /// Its declaration.
    #[label("declared here")]
    pub span: SourceSpan,
}

/// A rule neither decides nor audits, so it has no effect (warning).
#[derive(Debug, Clone, PartialEq, Eq, ThisError, Diagnostic)]
#[error("rule `{name}` has no effect")]
#[diagnostic(
    code(policyc::rule_without_effect),
    severity(Warning),
    help("add a verdict (`allow`, `deny`, `kill`) or an `audit` clause")
)]
pub struct RuleWithoutEffect {
    /// The rule's name.
    pub name: String,
    /// The rule's name in its declaration.
    #[label("matches, but does nothing")]
    pub span: SourceSpan,
}

/// Any front-end diagnostic.
#[derive(Debug, Clone, PartialEq, Eq, ThisError, Diagnostic)]
#[allow(missing_docs)]
pub enum Error {
    #[error(transparent)]
    #[diagnostic(transparent)]
    Syntax(#[from] SyntaxError),
    #[error(transparent)]
    #[diagnostic(transparent)]
    InvalidEscape(#[from] InvalidEscape),
    #[error(transparent)]
    #[diagnostic(transparent)]
    MissingPolicy(#[from] MissingPolicy),
    #[error(transparent)]
    #[diagnostic(transparent)]
    DuplicatePolicy(#[from] DuplicatePolicy),
    #[error(transparent)]
    #[diagnostic(transparent)]
    DuplicateName(#[from] DuplicateName),
    #[error(transparent)]
    #[diagnostic(transparent)]
    UnknownHook(#[from] UnknownHook),
    #[error(transparent)]
    #[diagnostic(transparent)]
    UnknownField(#[from] UnknownField),
    #[error(transparent)]
    #[diagnostic(transparent)]
    UnknownSet(#[from] UnknownSet),
    #[error(transparent)]
    #[diagnostic(transparent)]
    UnknownSeverity(#[from] UnknownSeverity),
    #[error(transparent)]
    #[diagnostic(transparent)]
    OperandType(#[from] OperandType),
    #[error(transparent)]
    #[diagnostic(transparent)]
    RelativePath(#[from] RelativePath),
    #[error(transparent)]
    #[diagnostic(transparent)]
    NonCanonicalPath(#[from] NonCanonicalPath),
    #[error(transparent)]
    #[diagnostic(transparent)]
    PathTooLong(#[from] PathTooLong),
    #[error(transparent)]
    #[diagnostic(transparent)]
    EmptySet(#[from] EmptySet),
    #[error(transparent)]
    #[diagnostic(transparent)]
    DuplicateElement(#[from] DuplicateElement),
    #[error(transparent)]
    #[diagnostic(transparent)]
    UnusedSet(#[from] UnusedSet),
    #[error(transparent)]
    #[diagnostic(transparent)]
    RuleWithoutEffect(#[from] RuleWithoutEffect),
}

impl Error {
    /// Whether this diagnostic is a warning (the file still compiles).
    pub fn is_warning(&self) -> bool {
        matches!(self.severity(), Some(miette::Severity::Warning))
    }

    /// Start of the primary span, for ordering diagnostics by position.
    pub fn offset(&self) -> usize {
        self.labels()
            .and_then(|mut l| l.next())
            .map(|l| l.offset())
            .unwrap_or(0)
    }
}

/// Convert a byte range into miette's span type.
pub(crate) fn span(range: &std::ops::Range<usize>) -> SourceSpan {
    SourceSpan::from(range.start..range.end)
}
