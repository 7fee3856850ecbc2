//! The checked program: names resolved, sets expanded, literals validated.
//!
//! This is what the compiler lowers. It carries no syntax, only meaning, plus
//! the spans needed to point back at the source.

use std::collections::BTreeSet;

use crate::ast::{Action, Span};
use crate::schema::{Field, Hook, Severity};

/// One checked source file: its policy and rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Name from the `policy` header.
    pub name: String,
    /// Span of that name in its file.
    pub name_span: Span,
    /// Description from the header, empty when absent.
    pub description: String,
    /// Rules in source order.
    pub rules: Vec<Rule>,
}

/// A checked rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// Rule name, unique in its policy.
    pub name: String,
    /// Hook it runs on.
    pub hook: Hook,
    /// The `when` condition.
    pub condition: Cond,
    /// Verdict, if any.
    pub action: Option<Action>,
    /// Whether a match is audited.
    pub audit: bool,
    /// Audit severity ([`Severity::Info`] when not given).
    pub severity: Severity,
    /// Audit message.
    pub message: Option<String>,
    /// Span of the rule's name in its file.
    pub name_span: Span,
}

/// A condition over one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cond {
    /// All operands hold (two or more).
    And(Vec<Cond>),
    /// Some operand holds (two or more).
    Or(Vec<Cond>),
    /// The operand does not hold.
    Not(Box<Cond>),
    /// A test on one field.
    Test(Test),
}

/// A test of one field's value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Test {
    /// The field.
    pub field: Field,
    /// What its value must satisfy.
    pub pred: Pred,
}

/// A positive predicate on a value; negations are [`Cond::Not`].
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Pred {
    /// Equal to the value.
    Eq(String),
    /// Equal to one of the values (never empty).
    In(BTreeSet<String>),
    /// Starts with the value (byte-wise).
    StartsWith(String),
}

impl Pred {
    /// Whether `value` satisfies the predicate.
    pub fn holds(&self, value: &str) -> bool {
        match self {
            Pred::Eq(v) => value == v,
            Pred::In(set) => set.contains(value),
            Pred::StartsWith(p) => value.starts_with(p.as_str()),
        }
    }
}

impl Cond {
    /// Evaluate against an event given as a field lookup: the meaning of the
    /// language, used as the reference the compiled tables must agree with.
    /// A field the event does not supply makes its tests false.
    pub fn eval(&self, value_of: &dyn Fn(Field) -> Option<String>) -> bool {
        match self {
            Cond::And(cs) => cs.iter().all(|c| c.eval(value_of)),
            Cond::Or(cs) => cs.iter().any(|c| c.eval(value_of)),
            Cond::Not(c) => !c.eval(value_of),
            Cond::Test(t) => value_of(t.field).is_some_and(|v| t.pred.holds(&v)),
        }
    }
}
