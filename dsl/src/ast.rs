//! The syntax tree, as written: every node keeps the byte span it came from.
//!
//! Spans are byte ranges into the source text of one file (what miette's
//! `SourceSpan` expects). Names are not resolved here; see [`crate::check`].

use std::ops::Range;

/// A byte range `start..end` into the source of one file.
pub type Span = Range<usize>;

/// An identifier or a dotted field name, with its span.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ident {
    /// The text as written.
    pub name: String,
    /// Where it is written.
    pub span: Span,
}

/// A string literal with escapes already decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StringLit {
    /// Decoded value.
    pub value: String,
    /// Span of the literal including its quotes.
    pub span: Span,
}

/// A set literal `{ "a", "b" }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetLiteral {
    /// Elements in source order (duplicates kept; the checker reports them).
    pub elements: Vec<StringLit>,
    /// Span from `{` to `}`.
    pub span: Span,
}

/// One parsed source file. Items that failed to parse are absent; their
/// syntax errors are reported beside the tree.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct File {
    /// Top-level items in source order.
    pub items: Vec<Item>,
}

/// A top-level item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    /// `policy NAME { … }`
    Policy(PolicyDecl),
    /// `set NAME = { … }`
    Set(SetDecl),
    /// `rule NAME on HOOK { … }`
    Rule(RuleDecl),
}

/// The policy header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyDecl {
    /// Policy name.
    pub name: Ident,
    /// `description = "…"`, if given.
    pub description: Option<StringLit>,
    /// Span of the whole declaration.
    pub span: Span,
}

/// A named set of values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetDecl {
    /// Set name.
    pub name: Ident,
    /// The values.
    pub value: SetLiteral,
    /// Span of the whole declaration.
    pub span: Span,
}

/// What a matching rule does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// `allow`
    Allow,
    /// `deny`
    Deny,
    /// `kill`
    Kill,
}

/// A rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleDecl {
    /// Rule name.
    pub name: Ident,
    /// Hook name after `on`.
    pub hook: Ident,
    /// The `when` condition.
    pub condition: Expr,
    /// The verdict keyword, if any, with its span.
    pub action: Option<(Action, Span)>,
    /// The `audit` clause, if any.
    pub audit: Option<AuditClause>,
    /// Span of the whole rule.
    pub span: Span,
}

/// `audit (severity LEVEL)? ("message")?`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditClause {
    /// Severity name, unchecked.
    pub severity: Option<Ident>,
    /// Message.
    pub message: Option<StringLit>,
    /// Span of the clause.
    pub span: Span,
}

/// A condition node with its span.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expr {
    /// The node.
    pub kind: ExprKind,
    /// Span of the whole sub-expression.
    pub span: Span,
}

/// Condition shapes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExprKind {
    /// `a or b or …` (two or more operands).
    Or(Vec<Expr>),
    /// `a and b and …` (two or more operands).
    And(Vec<Expr>),
    /// `not a`.
    Not(Box<Expr>),
    /// `field OP operand`.
    Compare(Comparison),
}

/// Comparison operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompareOp {
    /// `==`
    Eq,
    /// `!=`
    Ne,
    /// `in`
    In,
    /// `not in`
    NotIn,
    /// `startswith`
    StartsWith,
}

impl CompareOp {
    /// The operator as written.
    pub fn as_str(self) -> &'static str {
        match self {
            CompareOp::Eq => "==",
            CompareOp::Ne => "!=",
            CompareOp::In => "in",
            CompareOp::NotIn => "not in",
            CompareOp::StartsWith => "startswith",
        }
    }
}

/// `field OP operand`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Comparison {
    /// Dotted field name, e.g. `process.binary`.
    pub field: Ident,
    /// Operator and its span.
    pub op: (CompareOp, Span),
    /// Right-hand side.
    pub operand: Operand,
}

/// Right-hand side of a comparison.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Operand {
    /// A string literal.
    String(StringLit),
    /// A set literal.
    Set(SetLiteral),
    /// A reference to a `set` declaration.
    SetRef(Ident),
}

impl Operand {
    /// Span of the operand.
    pub fn span(&self) -> Span {
        match self {
            Operand::String(s) => s.span.clone(),
            Operand::Set(s) => s.span.clone(),
            Operand::SetRef(i) => i.span.clone(),
        }
    }
}
