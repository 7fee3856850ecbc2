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
    help("strings accept `\\\"`, `\\\\`, `\\n`, `\\t`, `\\r` and `\\u{{HEX}}`")
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

/// An unqualified or qualified name in a condition resolves to nothing.
#[derive(Debug, Clone, PartialEq, Eq, ThisError, Diagnostic)]
#[error("unknown name `{name}`")]
#[diagnostic(code(policyc::unknown_name))]
pub struct UnknownName {
    /// The name as written.
    pub name: String,
    /// Where.
    #[label("not a `let`, a boolean field or a policy's declaration")]
    pub span: SourceSpan,
    /// Suggestion.
    #[help]
    pub help: String,
}

/// A field used on a hook that cannot supply it.
#[derive(Debug, Clone, PartialEq, Eq, ThisError, Diagnostic)]
#[error("field `{field}` is not available on hook `{hook}`")]
#[diagnostic(code(policyc::field_not_on_hook))]
pub struct FieldNotOnHook {
    /// The field.
    pub field: String,
    /// The hook.
    pub hook: String,
    /// Where the field is used.
    #[label("`{hook}` events have no `{field}`")]
    pub span: SourceSpan,
    /// Hooks that supply it.
    #[help]
    pub help: String,
}

/// An operator that does not apply to the field's type.
#[derive(Debug, Clone, PartialEq, Eq, ThisError, Diagnostic)]
#[error("`{op}` does not apply to `{field}`, which is {ty}")]
#[diagnostic(code(policyc::operator_not_applicable))]
pub struct OperatorNotApplicable {
    /// The operator.
    pub op: &'static str,
    /// The field.
    pub field: String,
    /// The field's type, with an article.
    pub ty: &'static str,
    /// The operator.
    #[label("not an operator for {ty}")]
    pub span: SourceSpan,
    /// The operators that apply.
    #[help]
    pub help: String,
}

/// A literal of the wrong type for its field.
#[derive(Debug, Clone, PartialEq, Eq, ThisError, Diagnostic)]
#[error("expected {expected}, found {found}")]
#[diagnostic(code(policyc::type_mismatch))]
pub struct TypeMismatch {
    /// What the field takes.
    pub expected: String,
    /// What was written.
    pub found: &'static str,
    /// The literal.
    #[label("{found}")]
    pub span: SourceSpan,
    /// How to write a value of the right type.
    #[help]
    pub help: String,
}

/// A number past the largest value of its type.
#[derive(Debug, Clone, PartialEq, Eq, ThisError, Diagnostic)]
#[error("`{value}` is out of range for {ty} (at most {max})")]
#[diagnostic(
    code(policyc::number_out_of_range),
    help("{ty} holds values from 0 to {max}")
)]
pub struct NumberOutOfRange {
    /// The number as written.
    pub value: String,
    /// The type, with an article.
    pub ty: &'static str,
    /// The largest value.
    pub max: u64,
    /// Where.
    #[label("too large")]
    pub span: SourceSpan,
}

/// A range whose start is past its end.
#[derive(Debug, Clone, PartialEq, Eq, ThisError, Diagnostic)]
#[error("range `{text}` is empty")]
#[diagnostic(
    code(policyc::empty_range),
    help("write the smaller bound first: `{lo}..{hi}`")
)]
pub struct EmptyRange {
    /// The range as written.
    pub text: String,
    /// The smaller bound.
    pub lo: String,
    /// The larger bound.
    pub hi: String,
    /// Where.
    #[label("start is past end")]
    pub span: SourceSpan,
}

/// An address or CIDR block that does not parse or is not canonical.
#[derive(Debug, Clone, PartialEq, Eq, ThisError, Diagnostic)]
#[error("invalid address `{text}`: {reason}")]
#[diagnostic(code(policyc::invalid_address))]
pub struct InvalidAddress {
    /// As written.
    pub text: String,
    /// What is wrong.
    pub reason: String,
    /// Where.
    #[label("{reason}")]
    pub span: SourceSpan,
    /// The fix.
    #[help]
    pub help: String,
}

/// A `CAP_*` name that is not a Linux capability.
#[derive(Debug, Clone, PartialEq, Eq, ThisError, Diagnostic)]
#[error("unknown capability `{name}`")]
#[diagnostic(code(policyc::unknown_capability))]
pub struct UnknownCapability {
    /// As written.
    pub name: String,
    /// Where.
    #[label("not a Linux capability")]
    pub span: SourceSpan,
    /// Suggestion.
    #[help]
    pub help: String,
}

/// A value outside a field's fixed list (`net.protocol == "sctp"`).
#[derive(Debug, Clone, PartialEq, Eq, ThisError, Diagnostic)]
#[error("`{value}` is not a value of `{field}`")]
#[diagnostic(code(policyc::unknown_value))]
pub struct UnknownValue {
    /// As written.
    pub value: String,
    /// The field.
    pub field: String,
    /// Where.
    #[label("not one of the allowed values")]
    pub span: SourceSpan,
    /// The allowed values.
    #[help]
    pub help: String,
}

/// A string literal longer than the kernel's buffer for its field.
#[derive(Debug, Clone, PartialEq, Eq, ThisError, Diagnostic)]
#[error("`{field}` holds at most {max} bytes, this string has {len}")]
#[diagnostic(code(policyc::string_too_long))]
pub struct StringTooLong {
    /// The field.
    pub field: String,
    /// Length in bytes.
    pub len: usize,
    /// Limit in bytes.
    pub max: usize,
    /// Where.
    #[label("{len} bytes")]
    pub span: SourceSpan,
    /// Why the limit exists.
    #[help]
    pub help: String,
}

/// A glob that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, ThisError, Diagnostic)]
#[error("invalid glob: {reason}")]
#[diagnostic(
    code(policyc::invalid_glob),
    help("globs use `*` (within one path component), `**` (across components), `?` and `[a-z]` / `[!a-z]` classes")
)]
pub struct InvalidGlob {
    /// What is wrong.
    pub reason: String,
    /// Where.
    #[label("{reason}")]
    pub span: SourceSpan,
}

/// A user or group name that cannot be one.
#[derive(Debug, Clone, PartialEq, Eq, ThisError, Diagnostic)]
#[error("`{name}` is not a valid user or group name")]
#[diagnostic(
    code(policyc::invalid_account_name),
    help("names are 1 to 32 characters of letters, digits, `_`, `-` and `.`, not starting with `-` or a digit; write numeric ids without quotes")
)]
pub struct InvalidAccountName {
    /// As written.
    pub name: String,
    /// Where.
    #[label("not an account name")]
    pub span: SourceSpan,
}

/// An indexed field without an index, or an index on a plain field, or a
/// label key that Kubernetes would refuse.
#[derive(Debug, Clone, PartialEq, Eq, ThisError, Diagnostic)]
#[error("{message}")]
#[diagnostic(code(policyc::field_index))]
pub struct FieldIndex {
    /// What is wrong.
    pub message: String,
    /// Where.
    #[label("here")]
    pub span: SourceSpan,
    /// How to write it.
    #[help]
    pub help: String,
}

/// `let` declarations that refer to each other in a cycle.
#[derive(Debug, Clone, PartialEq, Eq, ThisError, Diagnostic)]
#[error("`let {name}` refers to itself: {chain}")]
#[diagnostic(
    code(policyc::let_cycle),
    help("a `let` may use other `let`s, but not itself, directly or through others")
)]
pub struct LetCycle {
    /// The let that closes the cycle.
    pub name: String,
    /// The cycle, `a -> b -> a`.
    pub chain: String,
    /// The reference that closes it.
    #[label("refers back to `{name}`")]
    pub span: SourceSpan,
}

/// A `let` is never used (warning).
#[derive(Debug, Clone, PartialEq, Eq, ThisError, Diagnostic)]
#[error("let `{name}` is never used")]
#[diagnostic(
    code(policyc::unused_let),
    severity(Warning),
    help("use it in a condition or remove it")
)]
pub struct UnusedLet {
    /// Its name.
    pub name: String,
    /// Its declaration.
    #[label("declared here")]
    pub span: SourceSpan,
}

/// A name used as a condition is not a condition.
#[derive(Debug, Clone, PartialEq, Eq, ThisError, Diagnostic)]
#[error("`{name}` is {what}, not a condition")]
#[diagnostic(code(policyc::not_a_condition))]
pub struct NotACondition {
    /// The name.
    pub name: String,
    /// What it is.
    pub what: String,
    /// Where.
    #[label("used as a condition")]
    pub span: SourceSpan,
    /// How to make a condition of it.
    #[help]
    pub help: String,
}

/// A policy header attribute that does not exist or has the wrong value.
#[derive(Debug, Clone, PartialEq, Eq, ThisError, Diagnostic)]
#[error("{message}")]
#[diagnostic(code(policyc::invalid_attribute))]
pub struct InvalidAttribute {
    /// What is wrong.
    pub message: String,
    /// Where.
    #[label("here")]
    pub span: SourceSpan,
    /// What is accepted.
    #[help]
    pub help: String,
}

/// A `rate` clause that cannot be enforced.
#[derive(Debug, Clone, PartialEq, Eq, ThisError, Diagnostic)]
#[error("invalid rate: {reason}")]
#[diagnostic(
    code(policyc::invalid_rate),
    help("write `rate N per DURATION` with N ≥ 1 and a duration such as `30s`, `5m`, `1h`, `1d`")
)]
pub struct InvalidRate {
    /// What is wrong.
    pub reason: String,
    /// Where.
    #[label("{reason}")]
    pub span: SourceSpan,
}

/// A `rate` on a rule that does not audit (warning).
#[derive(Debug, Clone, PartialEq, Eq, ThisError, Diagnostic)]
#[error("`rate` limits audit events, and rule `{name}` does not audit")]
#[diagnostic(
    code(policyc::rate_without_audit),
    severity(Warning),
    help("add an `audit` clause or remove the `rate`")
)]
pub struct RateWithoutAudit {
    /// The rule.
    pub name: String,
    /// The rate clause.
    #[label("has no effect")]
    pub span: SourceSpan,
}

/// A counter name unusable as a metric label value.
#[derive(Debug, Clone, PartialEq, Eq, ThisError, Diagnostic)]
#[error("invalid counter name `{name}`")]
#[diagnostic(
    code(policyc::invalid_counter_name),
    help("counter names are 1 to 64 characters of letters, digits, `_`, `-`, `.` and `:`")
)]
pub struct InvalidCounterName {
    /// As written.
    pub name: String,
    /// Where.
    #[label("not a counter name")]
    pub span: SourceSpan,
}

/// `expect audit RULE` names no rule.
#[derive(Debug, Clone, PartialEq, Eq, ThisError, Diagnostic)]
#[error("unknown rule `{name}`")]
#[diagnostic(code(policyc::unknown_rule))]
pub struct UnknownRule {
    /// As written.
    pub name: String,
    /// Where.
    #[label("no rule of this name")]
    pub span: SourceSpan,
    /// Suggestion.
    #[help]
    pub help: String,
}

/// `expect count "name"` names a counter no rule increments.
#[derive(Debug, Clone, PartialEq, Eq, ThisError, Diagnostic)]
#[error("no rule counts `{name}`")]
#[diagnostic(code(policyc::unknown_counter))]
pub struct UnknownCounter {
    /// As written.
    pub name: String,
    /// Where.
    #[label("never incremented")]
    pub span: SourceSpan,
    /// Suggestion.
    #[help]
    pub help: String,
}

/// Two expectations of a test that cannot both hold.
#[derive(Debug, Clone, PartialEq, Eq, ThisError, Diagnostic)]
#[error("test expects two verdicts")]
#[diagnostic(
    code(policyc::conflicting_expectations),
    help("an event has one verdict; keep one `expect allow|deny|kill`")
)]
pub struct ConflictingExpectations {
    /// The second expectation.
    #[label("second verdict")]
    pub span: SourceSpan,
    /// The first.
    #[label("first verdict")]
    pub first: SourceSpan,
}

/// A policy named like a field namespace, which would make qualified names
/// ambiguous.
#[derive(Debug, Clone, PartialEq, Eq, ThisError, Diagnostic)]
#[error("policy name `{name}` is reserved")]
#[diagnostic(
    code(policyc::reserved_name),
    help("`process`, `parent`, `user`, `k8s`, `file`, `net`, `cred`, `module` and `target` begin field names; choose another policy name")
)]
pub struct ReservedName {
    /// The name.
    pub name: String,
    /// Where.
    #[label("reserved")]
    pub span: SourceSpan,
}

/// A condition that holds for every event (warning).
#[derive(Debug, Clone, PartialEq, Eq, ThisError, Diagnostic)]
#[error("condition of {what} is always true")]
#[diagnostic(code(policyc::always_true), severity(Warning), help("{help}"))]
pub struct AlwaysTrue {
    /// `rule NAME`, `default deny exec`.
    pub what: String,
    /// Why it matters.
    pub help: String,
    /// The declaration's name.
    #[label("matches every `{hook}` event")]
    pub span: SourceSpan,
    /// The hook.
    pub hook: String,
}

/// A condition that holds for no event (warning).
#[derive(Debug, Clone, PartialEq, Eq, ThisError, Diagnostic)]
#[error("condition of {what} is always false")]
#[diagnostic(
    code(policyc::always_false),
    severity(Warning),
    help("it contradicts itself, so the {kind} never applies; check `and`/`or` and the values")
)]
pub struct AlwaysFalse {
    /// `rule NAME`, `default deny exec`.
    pub what: String,
    /// `rule` or `scope`.
    pub kind: &'static str,
    /// The declaration's name.
    #[label("never matches")]
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
    #[error(transparent)]
    #[diagnostic(transparent)]
    UnknownName(#[from] UnknownName),
    #[error(transparent)]
    #[diagnostic(transparent)]
    FieldNotOnHook(#[from] FieldNotOnHook),
    #[error(transparent)]
    #[diagnostic(transparent)]
    OperatorNotApplicable(#[from] OperatorNotApplicable),
    #[error(transparent)]
    #[diagnostic(transparent)]
    TypeMismatch(#[from] TypeMismatch),
    #[error(transparent)]
    #[diagnostic(transparent)]
    NumberOutOfRange(#[from] NumberOutOfRange),
    #[error(transparent)]
    #[diagnostic(transparent)]
    EmptyRange(#[from] EmptyRange),
    #[error(transparent)]
    #[diagnostic(transparent)]
    InvalidAddress(#[from] InvalidAddress),
    #[error(transparent)]
    #[diagnostic(transparent)]
    UnknownCapability(#[from] UnknownCapability),
    #[error(transparent)]
    #[diagnostic(transparent)]
    UnknownValue(#[from] UnknownValue),
    #[error(transparent)]
    #[diagnostic(transparent)]
    StringTooLong(#[from] StringTooLong),
    #[error(transparent)]
    #[diagnostic(transparent)]
    InvalidGlob(#[from] InvalidGlob),
    #[error(transparent)]
    #[diagnostic(transparent)]
    InvalidAccountName(#[from] InvalidAccountName),
    #[error(transparent)]
    #[diagnostic(transparent)]
    FieldIndex(#[from] FieldIndex),
    #[error(transparent)]
    #[diagnostic(transparent)]
    LetCycle(#[from] LetCycle),
    #[error(transparent)]
    #[diagnostic(transparent)]
    UnusedLet(#[from] UnusedLet),
    #[error(transparent)]
    #[diagnostic(transparent)]
    NotACondition(#[from] NotACondition),
    #[error(transparent)]
    #[diagnostic(transparent)]
    InvalidAttribute(#[from] InvalidAttribute),
    #[error(transparent)]
    #[diagnostic(transparent)]
    InvalidRate(#[from] InvalidRate),
    #[error(transparent)]
    #[diagnostic(transparent)]
    RateWithoutAudit(#[from] RateWithoutAudit),
    #[error(transparent)]
    #[diagnostic(transparent)]
    InvalidCounterName(#[from] InvalidCounterName),
    #[error(transparent)]
    #[diagnostic(transparent)]
    UnknownRule(#[from] UnknownRule),
    #[error(transparent)]
    #[diagnostic(transparent)]
    UnknownCounter(#[from] UnknownCounter),
    #[error(transparent)]
    #[diagnostic(transparent)]
    ConflictingExpectations(#[from] ConflictingExpectations),
    #[error(transparent)]
    #[diagnostic(transparent)]
    ReservedName(#[from] ReservedName),
    #[error(transparent)]
    #[diagnostic(transparent)]
    AlwaysTrue(#[from] AlwaysTrue),
    #[error(transparent)]
    #[diagnostic(transparent)]
    AlwaysFalse(#[from] AlwaysFalse),
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
