//! The syntax tree, as written: every node keeps the byte span it came from.
//!
//! Spans are byte ranges into the source text of one file (what miette's
//! `SourceSpan` expects). Names are not resolved and literals are not
//! validated here; see [`crate::check`].

use std::ops::Range;

/// A byte range `start..end` into the source of one file.
pub type Span = Range<usize>;

/// An identifier or a dotted name (`process.binary`, `other_policy.shells`).
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

/// A literal value, typed only by its spelling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Literal {
    /// What was written.
    pub kind: LiteralKind,
    /// Where.
    pub span: Span,
}

/// The spellings a literal can have.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum LiteralKind {
    /// `"…"`, escapes decoded.
    Str(String),
    /// A decimal integer, as written (range checked by the checker).
    Int(String),
    /// `a..b`, both ends as written.
    Range(String, String),
    /// An IPv4/IPv6 address or CIDR block, as written.
    Ip(String),
    /// `CAP_…`, as written.
    Cap(String),
    /// `unset` (a login uid that was never set).
    Unset,
    /// `true` / `false`.
    Bool(bool),
}

/// A set literal `{ a, b, … }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetLiteral {
    /// Elements in source order (duplicates kept; the checker reports them).
    pub elements: Vec<Literal>,
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
    /// `let NAME = COND`
    Let(LetDecl),
    /// `rule NAME on HOOK { … }`
    Rule(RuleDecl),
    /// `default deny HOOK (when COND)?`
    Default(DefaultDecl),
    /// `test "name" { … }`
    Test(TestDecl),
}

impl Item {
    /// Span of the whole item.
    pub fn span(&self) -> &Span {
        match self {
            Item::Policy(d) => &d.span,
            Item::Set(d) => &d.span,
            Item::Let(d) => &d.span,
            Item::Rule(d) => &d.span,
            Item::Default(d) => &d.span,
            Item::Test(d) => &d.span,
        }
    }
}

/// The policy header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyDecl {
    /// Policy name.
    pub name: Ident,
    /// `NAME = VALUE` attributes in source order (`description`, `mode`, `tags`).
    pub attrs: Vec<Attr>,
    /// Span of the whole declaration.
    pub span: Span,
}

/// One `NAME = VALUE` attribute of the policy header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attr {
    /// Attribute name.
    pub name: Ident,
    /// Its value.
    pub value: AttrValue,
}

/// The value of a header attribute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttrValue {
    /// A string.
    Str(StringLit),
    /// A set literal (for `tags`).
    Set(SetLiteral),
    /// A bare name (for `mode`).
    Name(Ident),
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

/// A named predicate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LetDecl {
    /// Its name.
    pub name: Ident,
    /// The condition it stands for.
    pub body: Expr,
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

impl Action {
    /// The keyword.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Allow => "allow",
            Action::Deny => "deny",
            Action::Kill => "kill",
        }
    }
}

/// A rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleDecl {
    /// Rule name.
    pub name: Ident,
    /// Hook name after `on`.
    pub hook: Ident,
    /// The `when` condition.
    pub when: Expr,
    /// The `unless` condition, if any.
    pub unless: Option<Expr>,
    /// The verdict keyword, if any, with its span.
    pub action: Option<(Action, Span)>,
    /// The `audit` clause, if any.
    pub audit: Option<AuditClause>,
    /// `count "name"` clauses.
    pub counts: Vec<StringLit>,
    /// `rate N per DURATION`, if any.
    pub rate: Option<RateClause>,
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

/// `rate N per DURATION`: at most N audit events per period.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateClause {
    /// N, as written.
    pub count: Ident,
    /// The period as written, e.g. `1m`.
    pub per: Ident,
    /// Span of the clause.
    pub span: Span,
}

/// `default deny HOOK (when COND)?`: deny what no rule allows, in a scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DefaultDecl {
    /// The hook.
    pub hook: Ident,
    /// The scope; the whole hook when absent.
    pub when: Option<Expr>,
    /// Span of the whole declaration.
    pub span: Span,
}

/// `test "name" { HOOK { field = value, … } expect … }`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestDecl {
    /// The test's name.
    pub name: StringLit,
    /// The event's hook.
    pub hook: Ident,
    /// The event's field values.
    pub fields: Vec<(FieldRef, TestValue)>,
    /// What must happen.
    pub expects: Vec<Expectation>,
    /// Span of the whole declaration.
    pub span: Span,
}

/// A value in a test event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TestValue {
    /// A single value.
    Literal(Literal),
    /// A set of values (capability sets).
    Set(SetLiteral),
}

/// One `expect …` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expectation {
    /// What is expected.
    pub kind: ExpectKind,
    /// Span of the line.
    pub span: Span,
}

/// The expectations a test can state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExpectKind {
    /// `expect allow|deny|kill`
    Verdict(Action),
    /// `expect audit RULE, …`: these rules audit the event (others may too).
    Audit(Vec<Ident>),
    /// `expect no audit`: no rule audits the event.
    NoAudit,
    /// `expect count "name"`: the counter is incremented.
    Count(StringLit),
}

/// A condition node with its span.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expr {
    /// The node.
    pub kind: ExprKind,
    /// Span of the whole sub-expression (with its parentheses, if any).
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
    /// `( a )`: kept so that the formatter can keep the author's parentheses.
    Paren(Box<Expr>),
    /// `field OP operand`.
    Compare(Comparison),
    /// `true` / `false`.
    Bool(bool),
    /// A bare name: a boolean field or a `let` (possibly qualified).
    Ref(Ident),
}

/// Comparison operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CompareOp {
    /// `==`
    Eq,
    /// `!=`
    Ne,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `in`
    In,
    /// `not in`
    NotIn,
    /// `startswith`
    StartsWith,
    /// `endswith`
    EndsWith,
    /// `matches` (glob)
    Matches,
    /// `has` (capabilities)
    Has,
}

impl CompareOp {
    /// The operator as written.
    pub fn as_str(self) -> &'static str {
        match self {
            CompareOp::Eq => "==",
            CompareOp::Ne => "!=",
            CompareOp::Lt => "<",
            CompareOp::Le => "<=",
            CompareOp::Gt => ">",
            CompareOp::Ge => ">=",
            CompareOp::In => "in",
            CompareOp::NotIn => "not in",
            CompareOp::StartsWith => "startswith",
            CompareOp::EndsWith => "endswith",
            CompareOp::Matches => "matches",
            CompareOp::Has => "has",
        }
    }
}

/// A field reference, optionally indexed: `k8s.label["app"]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldRef {
    /// The dotted name.
    pub name: Ident,
    /// The index key, if any.
    pub key: Option<StringLit>,
    /// Span of the whole reference.
    pub span: Span,
}

/// `field OP operand`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Comparison {
    /// Left-hand side.
    pub field: FieldRef,
    /// Operator and its span.
    pub op: (CompareOp, Span),
    /// Right-hand side.
    pub operand: Operand,
}

/// Right-hand side of a comparison.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Operand {
    /// A literal.
    Literal(Literal),
    /// A set literal.
    Set(SetLiteral),
    /// A name: a `set` (possibly qualified) or a field (a relation between
    /// two fields, `user.uid != user.euid`).
    Name(Ident),
}

impl Operand {
    /// Span of the operand.
    pub fn span(&self) -> Span {
        match self {
            Operand::Literal(l) => l.span.clone(),
            Operand::Set(s) => s.span.clone(),
            Operand::Name(i) => i.span.clone(),
        }
    }
}

impl File {
    /// Sets every span in the tree to `0..0`, so that two trees which differ
    /// only in layout (what the formatter changes) compare equal.
    pub fn strip_spans(&mut self) {
        self.for_each_span_mut(&mut |s| *s = 0..0);
    }

    /// Calls `f` on every span in the tree.
    pub fn for_each_span_mut(&mut self, f: &mut impl FnMut(&mut Span)) {
        for item in &mut self.items {
            spans::item(item, f);
        }
    }
}

/// The span walk behind [`File::for_each_span_mut`].
mod spans {
    use super::*;

    pub(super) fn item(item: &mut Item, f: &mut impl FnMut(&mut Span)) {
        match item {
            Item::Policy(d) => {
                f(&mut d.span);
                f(&mut d.name.span);
                for a in &mut d.attrs {
                    f(&mut a.name.span);
                    match &mut a.value {
                        AttrValue::Str(s) => f(&mut s.span),
                        AttrValue::Set(s) => set(s, f),
                        AttrValue::Name(i) => f(&mut i.span),
                    }
                }
            }
            Item::Set(d) => {
                f(&mut d.span);
                f(&mut d.name.span);
                set(&mut d.value, f);
            }
            Item::Let(d) => {
                f(&mut d.span);
                f(&mut d.name.span);
                expr(&mut d.body, f);
            }
            Item::Rule(r) => {
                f(&mut r.span);
                f(&mut r.name.span);
                f(&mut r.hook.span);
                expr(&mut r.when, f);
                if let Some(u) = &mut r.unless {
                    expr(u, f);
                }
                if let Some((_, s)) = &mut r.action {
                    f(s);
                }
                if let Some(a) = &mut r.audit {
                    f(&mut a.span);
                    if let Some(s) = &mut a.severity {
                        f(&mut s.span);
                    }
                    if let Some(m) = &mut a.message {
                        f(&mut m.span);
                    }
                }
                for c in &mut r.counts {
                    f(&mut c.span);
                }
                if let Some(rate) = &mut r.rate {
                    f(&mut rate.span);
                    f(&mut rate.count.span);
                    f(&mut rate.per.span);
                }
            }
            Item::Default(d) => {
                f(&mut d.span);
                f(&mut d.hook.span);
                if let Some(w) = &mut d.when {
                    expr(w, f);
                }
            }
            Item::Test(t) => {
                f(&mut t.span);
                f(&mut t.name.span);
                f(&mut t.hook.span);
                for (field, value) in &mut t.fields {
                    field_ref(field, f);
                    match value {
                        TestValue::Literal(l) => f(&mut l.span),
                        TestValue::Set(s) => set(s, f),
                    }
                }
                for e in &mut t.expects {
                    f(&mut e.span);
                    match &mut e.kind {
                        ExpectKind::Audit(rules) => rules.iter_mut().for_each(|r| f(&mut r.span)),
                        ExpectKind::Count(s) => f(&mut s.span),
                        ExpectKind::Verdict(_) | ExpectKind::NoAudit => {}
                    }
                }
            }
        }
    }

    fn set(s: &mut SetLiteral, f: &mut impl FnMut(&mut Span)) {
        f(&mut s.span);
        s.elements.iter_mut().for_each(|l| f(&mut l.span));
    }

    fn field_ref(r: &mut FieldRef, f: &mut impl FnMut(&mut Span)) {
        f(&mut r.span);
        f(&mut r.name.span);
        if let Some(k) = &mut r.key {
            f(&mut k.span);
        }
    }

    fn expr(e: &mut Expr, f: &mut impl FnMut(&mut Span)) {
        f(&mut e.span);
        match &mut e.kind {
            ExprKind::Or(ops) | ExprKind::And(ops) => ops.iter_mut().for_each(|o| expr(o, f)),
            ExprKind::Not(x) | ExprKind::Paren(x) => expr(x, f),
            ExprKind::Compare(c) => {
                field_ref(&mut c.field, f);
                f(&mut c.op.1);
                match &mut c.operand {
                    Operand::Literal(l) => f(&mut l.span),
                    Operand::Set(s) => set(s, f),
                    Operand::Name(i) => f(&mut i.span),
                }
            }
            ExprKind::Bool(_) => {}
            ExprKind::Ref(i) => f(&mut i.span),
        }
    }
}
