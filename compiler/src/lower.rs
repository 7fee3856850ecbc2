//! Lowering: checked rules → per-hook classification tables.
//!
//! ```text
//! Cond ──nnf──► literals under and/or ──dnf──► terms (one bit each)
//! terms × dimension ──evaluate at each representative value──► entries + default
//! ```
//!
//! A dimension's value space is cut by the values the rules mention: a value
//! either equals a mentioned exact value, or its longest mentioned prefix is
//! some prefix `p`, or neither. Every value in one class satisfies the same
//! terms, so evaluating each term once per class (the class's
//! *representative*) gives complete, exact tables: one lookup in the kernel
//! answers, with no closure or post-processing to get wrong.

use std::collections::{BTreeMap, BTreeSet};

use policy_dsl::checked::{Cond, FieldKey, Member, Policy, Pred, Rule, Test, Value};
use policy_dsl::schema::{Field, FieldType, Hook};

use crate::bundle::{Dimension, DimensionKind, Entry, HookTable, Term, TermSet, VerdictMasks};
use crate::limits::MAX_TERMS_PER_HOOK;
use policy_dsl::ast::Action;

/// A test or its negation: one conjunct of a term.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Literal {
    /// The field tested.
    pub field: FieldKey,
    /// The predicate.
    pub pred: Pred,
    /// `false` for a negated test.
    pub positive: bool,
}

/// A conjunction of literals (an empty conjunction is true).
pub type Conjunction = Vec<Literal>;

/// Why lowering failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, miette::Diagnostic)]
pub enum LowerError {
    /// A hook's rules need more terms than the kernel mask holds.
    #[error("hook `{hook}` needs more than {max} terms, the most the kernel holds")]
    #[diagnostic(
        code(policyc::too_many_terms),
        help("each `or` branch of a rule is one term; merge rules that share a verdict, or use sets (`in {{ … }}`), which cost one term whatever their size")
    )]
    TooManyTerms {
        /// The hook.
        hook: &'static str,
        /// Terms of the hook's earlier rules, before this one.
        before: usize,
        /// [`MAX_TERMS_PER_HOOK`].
        max: usize,
        /// File index of the rule that crossed the limit.
        file: usize,
        /// Span of that rule's name.
        #[label("this rule crosses the limit ({before} terms before it)")]
        span: miette::SourceSpan,
    },
    /// The rule uses something the kernel templates cannot enforce yet.
    #[error("{what} is not supported by the kernel back end yet")]
    #[diagnostic(
        code(policyc::unsupported),
        help("`policyc check` accepts it, but no bundle is written rather than one that silently drops it; the back end supports `exec` rules testing `process.binary` with `==`, `!=`, `in`, `not in` and `startswith`")
    )]
    Unsupported {
        /// What, e.g. "field `file.path`".
        what: String,
        /// File index of the declaration.
        file: usize,
        /// Span of the declaration's name.
        #[label("uses it")]
        span: miette::SourceSpan,
    },
}

impl LowerError {
    /// Index of the file the error points into.
    pub fn file(&self) -> usize {
        match self {
            LowerError::TooManyTerms { file, .. } | LowerError::Unsupported { file, .. } => *file,
        }
    }
}

/// Why a checked policy cannot be lowered yet, if it cannot: the first
/// construct of each declaration that the kernel templates do not implement.
pub fn unsupported(file: usize, policy: &Policy) -> Vec<LowerError> {
    let mut out = Vec::new();
    let at = |what: String, sp: &policy_dsl::ast::Span| LowerError::Unsupported {
        what,
        file,
        span: miette::SourceSpan::from(sp.start..sp.end),
    };
    for rule in &policy.rules {
        let what = if rule.hook != Hook::Exec {
            Some(format!("hook `{}`", rule.hook.as_str()))
        } else if !rule.counts.is_empty() {
            Some("`count`".to_string())
        } else if rule.rate.is_some() {
            Some("`rate`".to_string())
        } else {
            unsupported_in(&rule.condition)
        };
        if let Some(what) = what {
            out.push(at(what, &rule.name_span));
        }
    }
    for scope in &policy.defaults {
        out.push(at("`default deny`".into(), &scope.span));
    }
    if policy.mode != policy_dsl::schema::Mode::Enforce {
        out.push(at("`mode = monitor`".into(), &policy.name_span));
    }
    out
}

fn unsupported_in(cond: &Cond) -> Option<String> {
    match cond {
        Cond::True | Cond::False => None,
        Cond::And(cs) | Cond::Or(cs) => cs.iter().find_map(unsupported_in),
        Cond::Not(c) => unsupported_in(c),
        Cond::Test(Test { field, pred }) => {
            if field.field != Field::ProcessBinary {
                return Some(format!("field `{field}`"));
            }
            let strings = |set: &BTreeSet<Member>| set.iter().all(|m| matches!(m, Member::Value(Value::Str(_))));
            match pred {
                Pred::Eq(Value::Str(_)) | Pred::StartsWith(_) => None,
                Pred::In(set) if strings(set) => None,
                Pred::EndsWith(_) => Some("`endswith`".into()),
                Pred::Glob(_) => Some("`matches`".into()),
                Pred::Relation(..) => Some("a relation between fields".into()),
                _ => Some(format!("this test of `{field}`")),
            }
        }
    }
}

/// A rule placed in the bundle: its global id and where it came from.
#[derive(Debug, Clone, Copy)]
pub struct RuleRef<'a> {
    /// Bundle rule id.
    pub id: u32,
    /// Index of the source file.
    pub file: usize,
    /// The checked rule.
    pub rule: &'a Rule,
}

/// Number the rules of all policies in input order.
pub fn number_rules(policies: &[Policy]) -> Vec<RuleRef<'_>> {
    let mut out = Vec::new();
    for (file, p) in policies.iter().enumerate() {
        for rule in &p.rules {
            out.push(RuleRef {
                id: out.len() as u32,
                file,
                rule,
            });
        }
    }
    out
}

/// Build the table of every hook that has rules.
///
/// # Errors
/// [`LowerError::TooManyTerms`] when a hook needs more than
/// [`MAX_TERMS_PER_HOOK`] terms.
pub fn lower(rules: &[RuleRef<'_>]) -> Result<BTreeMap<Hook, HookTable>, LowerError> {
    let per_hook = terms_per_hook(rules)?;
    let actions: BTreeMap<u32, (Option<Action>, bool)> =
        rules.iter().map(|r| (r.id, (r.rule.action, r.rule.audit))).collect();
    Ok(per_hook.into_iter().map(|(hook, terms)| (hook, hook_table(&terms, &actions))).collect())
}

/// The terms of every hook: each rule's DNF, in rule order.
///
/// # Errors
/// [`LowerError::TooManyTerms`] for the first rule that takes a hook past
/// [`MAX_TERMS_PER_HOOK`]; expansion stops there, so a condition with an
/// exponential DNF costs no more than the limit.
pub fn terms_per_hook(rules: &[RuleRef<'_>]) -> Result<BTreeMap<Hook, Vec<(u32, Conjunction)>>, LowerError> {
    let mut per_hook: BTreeMap<Hook, Vec<(u32, Conjunction)>> = BTreeMap::new();
    for r in rules {
        let terms = per_hook.entry(r.rule.hook).or_default();
        let room = MAX_TERMS_PER_HOOK - terms.len();
        let Some(dnf) = dnf(&r.rule.condition, true, room) else {
            return Err(LowerError::TooManyTerms {
                hook: r.rule.hook.as_str(),
                before: terms.len(),
                max: MAX_TERMS_PER_HOOK,
                file: r.file,
                span: miette::SourceSpan::from(r.rule.name_span.start..r.rule.name_span.end),
            });
        };
        terms.extend(dnf.into_iter().map(|c| (r.id, c)));
    }
    Ok(per_hook)
}

fn hook_table(
    terms: &[(u32, Conjunction)],
    actions: &BTreeMap<u32, (Option<Action>, bool)>,
) -> HookTable {
    let mut verdicts = VerdictMasks::default();
    for (id, (rule, _)) in terms.iter().enumerate() {
        let id = id as u32;
        let (action, audit) = actions[rule];
        match action {
            Some(Action::Deny) => verdicts.deny.push(id),
            Some(Action::Kill) => verdicts.kill.push(id),
            Some(Action::Allow) => verdicts.allow.push(id),
            None => {}
        }
        if audit {
            verdicts.audit.push(id);
        }
    }
    let fields: BTreeSet<&FieldKey> = terms.iter().flat_map(|(_, c)| c.iter().map(|l| &l.field)).collect();
    let dimensions = fields.into_iter().map(|f| (f.to_string(), dimension(f, terms))).collect();
    HookTable {
        terms: terms
            .iter()
            .enumerate()
            .map(|(id, (rule, _))| Term {
                id: id as u32,
                rule: *rule,
            })
            .collect(),
        dimensions,
        verdicts,
    }
}

/// A class of values of one dimension, described by what its members satisfy.
enum Representative<'a> {
    /// Exactly this value.
    Exact(&'a str),
    /// Any value whose longest mentioned prefix is this one and that equals no
    /// mentioned exact value.
    Prefix(&'a str),
    /// A value that equals no mentioned value and has no mentioned prefix.
    Other,
}

impl Representative<'_> {
    fn satisfies(&self, pred: &Pred) -> bool {
        match (self, pred) {
            (Representative::Exact(v), p) => p.holds(&Value::Str(v.to_string()), &|_| None),
            // Mentioned prefix q holds iff q is a prefix of p: both are prefixes
            // of the value, and p is the longest of them.
            (Representative::Prefix(p), Pred::StartsWith(q)) => p.starts_with(q.as_str()),
            (Representative::Prefix(_), _) => false,
            (Representative::Other, _) => false,
        }
    }

    /// Terms whose literals on `field` all hold for this class. Terms that do
    /// not test `field` are unconstrained by it and always included.
    fn terms(&self, field: &FieldKey, terms: &[(u32, Conjunction)]) -> TermSet {
        terms
            .iter()
            .enumerate()
            .filter(|(_, (_, conj))| {
                conj.iter()
                    .filter(|l| l.field == *field)
                    .all(|l| self.satisfies(&l.pred) == l.positive)
            })
            .map(|(id, _)| id as u32)
            .collect()
    }
}

/// Build one path dimension. Callers have checked with [`unsupported`] that
/// only string equality, membership and prefixes occur.
fn dimension(field: &FieldKey, terms: &[(u32, Conjunction)]) -> Dimension {
    let mut exact = BTreeSet::new();
    let mut prefix = BTreeSet::new();
    for lit in terms.iter().flat_map(|(_, c)| c).filter(|l| l.field == *field) {
        match &lit.pred {
            Pred::Eq(Value::Str(v)) => {
                exact.insert(v.as_str());
            }
            Pred::In(set) => exact.extend(set.iter().filter_map(|m| match m {
                Member::Value(Value::Str(v)) => Some(v.as_str()),
                _ => None,
            })),
            Pred::StartsWith(p) => {
                prefix.insert(p.as_str());
            }
            _ => {}
        }
    }
    let entries = |values: BTreeSet<&str>, exact: bool| -> Vec<Entry> {
        values
            .into_iter()
            .map(|v| {
                let class = if exact {
                    Representative::Exact(v)
                } else {
                    Representative::Prefix(v)
                };
                Entry {
                    value: v.to_string(),
                    terms: class.terms(field, terms),
                }
            })
            .collect()
    };
    let kind = match field.field.ty() {
        FieldType::Path => DimensionKind::Path,
        other => unreachable!("`unsupported` refuses dimensions of type {other:?}"),
    };
    Dimension {
        kind,
        exact: entries(exact, true),
        prefix: entries(prefix, false),
        default: Representative::Other.terms(field, terms),
    }
}

/// Disjunctive normal form of `cond` (negated when `positive` is false), or
/// `None` once it would exceed `limit` terms.
pub fn dnf(cond: &Cond, positive: bool, limit: usize) -> Option<Vec<Conjunction>> {
    let out = match (cond, positive) {
        (Cond::True, true) | (Cond::False, false) => vec![Vec::new()],
        (Cond::True, false) | (Cond::False, true) => Vec::new(),
        (Cond::Test(Test { field, pred }), positive) => {
            vec![vec![Literal {
                field: field.clone(),
                pred: pred.clone(),
                positive,
            }]]
        }
        (Cond::Not(c), p) => dnf(c, !p, limit)?,
        // Or, or the negation of an And: a union of the operands' terms.
        (Cond::Or(cs), true) | (Cond::And(cs), false) => {
            let mut out = Vec::new();
            for c in cs {
                out.extend(dnf(c, positive, limit)?);
                if out.len() > limit {
                    return None;
                }
            }
            out
        }
        // And, or the negation of an Or: the cross product of the operands' terms.
        (Cond::And(cs), true) | (Cond::Or(cs), false) => {
            let mut out: Vec<Conjunction> = vec![Vec::new()];
            for c in cs {
                let rhs = dnf(c, positive, limit)?;
                if out.len().saturating_mul(rhs.len()) > limit {
                    return None;
                }
                out = out
                    .iter()
                    .flat_map(|l| {
                        rhs.iter()
                            .map(move |r| l.iter().chain(r).cloned().collect())
                    })
                    .collect();
            }
            out
        }
    };
    (out.len() <= limit).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eq(v: &str) -> Cond {
        Cond::Test(Test {
            field: FieldKey::plain(Field::ProcessBinary),
            pred: Pred::Eq(Value::Str(v.into())),
        })
    }

    #[test]
    fn dnf_distributes_and_over_or() {
        let c = Cond::And(vec![
            Cond::Or(vec![eq("/a"), eq("/b")]),
            Cond::Not(Box::new(eq("/c"))),
        ]);
        let d = dnf(&c, true, 16).unwrap();
        assert_eq!(d.len(), 2);
        assert!(d.iter().all(|t| t.len() == 2 && !t[1].positive));
    }

    #[test]
    fn dnf_stops_at_limit() {
        let wide = |n: usize| Cond::Or((0..n).map(|i| eq(&format!("/{i}"))).collect());
        // (4 alternatives)^5 = 1024 terms.
        let c = Cond::And((0..5).map(|_| wide(4)).collect());
        assert!(dnf(&c, true, 256).is_none());
        assert_eq!(dnf(&c, true, 1024).unwrap().len(), 1024);
    }
}
