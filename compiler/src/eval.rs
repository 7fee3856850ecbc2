//! Reference evaluators: what a policy decides for one event.
//!
//! Two independent readings that must agree on every input:
//! - [`eval_rules`] applies the checked rules' conditions directly: the
//!   meaning of the language.
//! - [`eval_bundle`] runs the bundle's tables the way the kernel does (exact
//!   hash, then longest prefix, then default; AND across dimensions; verdict
//!   masks): a Rust mirror of `bpf-templates/`.
//!
//! Decision (deny-overrides): a matching `kill` → kill; else a matching `deny`
//! → deny; else allow. Audit applies whatever the verdict.

use std::collections::{BTreeMap, BTreeSet};

use policy_dsl::checked::{Event, FieldKey, Value};

use crate::bundle::{Dimension, HookTable, PolicyBundle, TermSet, Verdict};
use crate::limits::MAX_PATH_LITERAL_LEN;
use crate::lower::RuleRef;
use policy_dsl::ast::Action;

/// What a policy decides for an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The verdict (`allow` when no rule decides).
    pub verdict: Verdict,
    /// Ids of every rule that matched, ascending.
    pub matched: Vec<u32>,
    /// Ids of matched rules that audit, ascending.
    pub audit: Vec<u32>,
}

/// Combine the matched rules' actions into an outcome.
fn decide(matched: Vec<u32>, action_of: impl Fn(u32) -> (Option<Action>, bool)) -> Outcome {
    let actions: Vec<_> = matched.iter().map(|&r| action_of(r)).collect();
    let has = |a: Action| actions.iter().any(|(x, _)| *x == Some(a));
    let verdict = if has(Action::Kill) {
        Verdict::Kill
    } else if has(Action::Deny) {
        Verdict::Deny
    } else {
        Verdict::Allow
    };
    let audit = matched
        .iter()
        .zip(&actions)
        .filter(|(_, (_, a))| *a)
        .map(|(r, _)| *r)
        .collect();
    Outcome {
        verdict,
        matched,
        audit,
    }
}

/// The language's meaning: evaluate each rule's condition on the event.
pub fn eval_rules(rules: &[RuleRef<'_>], event: &Event) -> Outcome {
    let matched = rules
        .iter()
        .filter(|r| r.rule.hook == event.hook && r.rule.condition.eval(event))
        .map(|r| r.id)
        .collect();
    let by_id: BTreeMap<u32, _> = rules.iter().map(|r| (r.id, r.rule)).collect();
    decide(matched, |id| (by_id[&id].action, by_id[&id].audit))
}

/// The kernel's algorithm over the bundle's tables.
pub fn eval_bundle(bundle: &PolicyBundle, event: &Event) -> Outcome {
    let spec = &bundle.spec;
    let matched = match spec.hooks.get(&event.hook) {
        None => Vec::new(),
        Some(table) => matched_rules(table, event),
    };
    decide(matched, |id| {
        let r = &spec.rules[id as usize];
        let action = r.verdict.map(|v| match v {
            Verdict::Allow => Action::Allow,
            Verdict::Deny => Action::Deny,
            Verdict::Kill => Action::Kill,
        });
        (action, r.audit)
    })
}

/// Rules with at least one matched term.
fn matched_rules(table: &HookTable, event: &Event) -> Vec<u32> {
    let mut terms: BTreeSet<u32> = (0..table.terms.len() as u32).collect();
    let fields: BTreeMap<String, &Value> = event.fields.iter().map(|(k, v): (&FieldKey, _)| (k.to_string(), v)).collect();
    for (name, dim) in &table.dimensions {
        let set: BTreeSet<u32> = match fields.get(name) {
            Some(Value::Str(v)) => lookup(dim, v).iter().copied().collect(),
            // An event without the field satisfies no test of it (as in
            // `Cond::eval`), which is exactly the default class.
            _ => dim.default.iter().copied().collect(),
        };
        terms = terms.intersection(&set).copied().collect();
    }
    let rules: BTreeSet<u32> = terms
        .iter()
        .map(|&t| table.terms[t as usize].rule)
        .collect();
    rules.into_iter().collect()
}

/// One dimension lookup, as in the kernel: exact hash (only keys of at most
/// [`MAX_PATH_LITERAL_LEN`] bytes exist), then longest prefix, then default.
pub fn lookup<'d>(dim: &'d Dimension, value: &str) -> &'d TermSet {
    if value.len() <= MAX_PATH_LITERAL_LEN {
        if let Ok(i) = dim.exact.binary_search_by(|e| e.value.as_str().cmp(value)) {
            return &dim.exact[i].terms;
        }
    }
    dim.prefix
        .iter()
        .filter(|e| value.as_bytes().starts_with(e.value.as_bytes()))
        .max_by_key(|e| e.value.len())
        .map(|e| &e.terms)
        .unwrap_or(&dim.default)
}
