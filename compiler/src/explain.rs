//! `policyc explain`: what a bundle decides for one event, and why.
//!
//! The verdict and accounting come from [`eval_bundle`] (the kernel's
//! algorithm). The explanation re-runs each dimension's lookup with a trace
//! of the tables it consulted ([`trace_lookup`], checked against
//! [`eval::lookup_value`] by the tests), and for the deciding rules lists,
//! per matching term, the lookups that put the term in the matched set:
//! `exact`, `prefix`, `suffix`, `range`, `default`, `suffixDefault`,
//! `absent`, `held`/`lacking` (capabilities) or `relation`. Dimensions that
//! do not constrain a term (the term does not test the dimension, or every
//! table of the dimension holds it) are left out.
//!
//! The sets traced here are the bundle's stored sets: a dimension's tested
//! terms only (schema 2, see [`Dimension`]); the matched set adds back each
//! dimension's untested terms ([`Dimension::full_set`]). The sets are not
//! part of the output, only which lookup and entry held a term.
//!
//! JSON form (extra keys beyond the issue's `verdict`, `matched`, `audit`,
//! `counters`):
//!
//! ```text
//! {"verdict": "allow"|"deny"|"kill", "wouldVerdict": …,
//!  "matched": ["policy.rule"…], "audit": […], "counters": [name…],
//!  "wouldDeny": […], "scopes": ["policy.default_deny_exec_1"…],
//!  "decision": "rule"|"scope"|"no rule",    // what decided the verdict
//!  "deciding": [{"rule": "policy.rule", "scope": bool, "verdict": …,
//!                "terms": [{"term": id, "conditions": [
//!                   {"dimension": "process.binary", "value": <event JSON value or null>,
//!                    "lookup": "exact"|"prefix"|…, "entry": "/usr/bin/" or null}…]}…]}…]}
//! ```

use std::collections::{BTreeMap, BTreeSet};

use policy_dsl::checked::{Event, Value};
use serde::Serialize;

use crate::bundle::{Dimension, DimensionKind, HookTable, PolicyBundle, TermSet, Verdict};
use crate::eval::{self, eval_bundle, Outcome};
use crate::event_json::{key_name, value_to_json};
use crate::limits::MAX_PATH_LITERAL_LEN;
use crate::lower::{intersect, UNSET_ID};

/// One table consulted by a lookup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Step {
    /// `exact`, `prefix`, `suffix`, `range`, `default`, `suffixDefault`,
    /// `absent`, `held`, `lacking` or `relation`.
    pub lookup: &'static str,
    /// The entry that matched (`/usr/bin/`, `1000..1999`, `10.0.0.0/8`,
    /// `CAP_NET_RAW`, `true`), `None` for a default.
    pub entry: Option<String>,
    /// Terms of that entry, as stored: of the dimension's tested terms only
    /// (every other term passes the dimension whatever the lookup).
    #[serde(skip)]
    pub terms: TermSet,
}

fn step(lookup: &'static str, entry: Option<String>, terms: &TermSet) -> Step {
    Step {
        lookup,
        entry,
        terms: terms.clone(),
    }
}

/// A lookup with its trace: the resulting set is the intersection of the
/// steps' sets, of the dimension's tested terms (as [`eval::lookup_value`]).
pub fn trace_lookup(dim: &Dimension, value: Option<&Value>) -> (TermSet, Vec<Step>) {
    let steps = trace_steps(dim, value);
    let mut set: Option<TermSet> = None;
    for s in &steps {
        set = Some(match set {
            None => s.terms.clone(),
            Some(x) => intersect(&x, &s.terms),
        });
    }
    (set.unwrap_or_else(|| dim.default.clone()), steps)
}

fn none_steps(dim: &Dimension) -> Vec<Step> {
    if dim.kind == DimensionKind::Caps {
        return caps_steps(dim, &BTreeSet::new());
    }
    let mut out = vec![step("default", None, &dim.default)];
    if let Some(s) = &dim.suffix_default {
        out.push(step("suffixDefault", None, s));
    }
    out
}

fn caps_steps(dim: &Dimension, have: &BTreeSet<String>) -> Vec<Step> {
    if dim.masks.is_empty() {
        return vec![step("default", None, &dim.default)];
    }
    dim.masks
        .iter()
        .map(|m| {
            let held = m.caps.iter().all(|c| have.contains(c));
            step(
                if held { "held" } else { "lacking" },
                Some(m.caps.join(" ")),
                if held { &m.held } else { &m.lacking },
            )
        })
        .collect()
}

/// The step of the exact entry of `key`, with its resolved set (entries
/// hold changes from their bases: [`crate::bundle::Entry`]).
fn exact_step(dim: &Dimension, key: &str) -> Option<Step> {
    let set = eval::exact(dim, key)?;
    Some(step("exact", Some(key.to_string()), &set))
}

fn exact_or_default(dim: &Dimension, key: &str) -> Vec<Step> {
    vec![exact_step(dim, key).unwrap_or_else(|| step("default", None, &dim.default))]
}

fn trace_steps(dim: &Dimension, value: Option<&Value>) -> Vec<Step> {
    let Some(value) = value else {
        return match &dim.absent {
            Some(a) => vec![step("absent", None, a)],
            None => none_steps(dim),
        };
    };
    match (dim.kind, value) {
        (DimensionKind::Path | DimensionKind::String, Value::Str(s)) => {
            if dim.kind != DimensionKind::Path || s.len() <= MAX_PATH_LITERAL_LEN {
                if let Some(st) = exact_step(dim, s) {
                    return vec![st];
                }
            }
            let affix = |list, prefix, root: &TermSet, name, root_name| match eval::longest_affix(
                list,
                s.as_bytes(),
                prefix,
            ) {
                Some(e) => step(
                    name,
                    Some(e.value.clone()),
                    &eval::affix_chain(list, e.value.as_bytes(), prefix, root),
                ),
                None => step(root_name, None, root),
            };
            let mut out = vec![affix(&dim.prefix, true, &dim.default, "prefix", "default")];
            if let Some(default) = &dim.suffix_default {
                out.push(affix(
                    &dim.suffix,
                    false,
                    default,
                    "suffix",
                    "suffixDefault",
                ));
            }
            out
        }
        (DimensionKind::Int, Value::Int(_) | Value::Unset) => {
            let n = match value {
                Value::Int(n) => *n,
                _ => UNSET_ID,
            };
            vec![match eval::range_index(dim, n) {
                Some(i) => {
                    let r = &dim.ranges[i];
                    step(
                        "range",
                        Some(format!("{}..{}", r.lo, r.hi)),
                        &dim.range_set(i),
                    )
                }
                None => step("default", None, &dim.default),
            }]
        }
        (DimensionKind::Int, Value::Name(n)) => exact_or_default(dim, n),
        (DimensionKind::Ip, Value::Ip(a)) => vec![dim
            .prefix
            .iter()
            .filter_map(|e| {
                e.value
                    .parse::<ipnet::IpNet>()
                    .ok()
                    .filter(|n| n.contains(a))
                    .map(|n| (n.prefix_len(), e))
            })
            .max_by_key(|(len, _)| *len)
            .map(|(_, e)| step("prefix", Some(e.value.clone()), &eval::ip_lookup(dim, a)))
            .unwrap_or_else(|| step("default", None, &dim.default))],
        (DimensionKind::Bool, Value::Bool(b)) => exact_or_default(dim, &b.to_string()),
        (DimensionKind::Enum, Value::Str(s)) => exact_or_default(dim, s),
        (DimensionKind::Caps, Value::Caps(have)) => caps_steps(dim, have),
        _ => none_steps(dim),
    }
}

/// The relation feature's lookup (mirrors the evaluator's).
fn relation_steps(dim: &Dimension, left: Option<&Value>, right: Option<&Value>) -> Vec<Step> {
    let Some(rel) = &dim.relation else {
        return none_steps(dim);
    };
    let (Some(a), Some(b)) = (left, right) else {
        return vec![step("default", None, &dim.default)];
    };
    let holds = match (a, b) {
        (Value::Int(a), Value::Int(b)) => match rel.op.as_str() {
            "==" => a == b,
            "<" => a < b,
            _ => a <= b,
        },
        (a, b) => rel.op == "==" && a == b,
    };
    let key = if holds { "true" } else { "false" };
    match exact_step(dim, key) {
        Some(mut s) => {
            s.lookup = "relation";
            vec![s]
        }
        None => vec![step("default", None, &dim.default)],
    }
}

/// One dimension's contribution to a term.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// Dimension (field, or relation) name.
    pub dimension: String,
    /// The event's value (JSON), `null` when absent; for a relation, the two
    /// values `[left, right]`.
    pub value: serde_json::Value,
    /// Table that answered.
    pub lookup: &'static str,
    /// The entry that matched, `null` for a default.
    pub entry: Option<String>,
}

/// A matching term of a deciding rule or scope and the conditions that held.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TermWhy {
    /// Term id.
    pub term: u32,
    /// Lookups that put the term in the matched set.
    pub conditions: Vec<Condition>,
}

/// A deciding rule (or scope).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Deciding {
    /// `policy.rule` (or `policy.default_deny_HOOK_N`).
    pub rule: String,
    /// A `default deny` scope rather than a rule.
    pub scope: bool,
    /// The rule's verdict (`deny` for a scope).
    pub verdict: Option<Verdict>,
    /// Its matching terms.
    pub terms: Vec<TermWhy>,
}

/// What `policyc explain` reports.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Explanation {
    /// Enforced verdict.
    pub verdict: Verdict,
    /// Verdict with monitor policies enforced.
    pub would_verdict: Verdict,
    /// Rules that matched, `policy.rule`.
    pub matched: Vec<String>,
    /// Rules that audit the event.
    pub audit: Vec<String>,
    /// Counters incremented.
    pub counters: Vec<String>,
    /// Monitor-mode deny/kill rules that matched (not enforced).
    pub would_deny: Vec<String>,
    /// The event's hook (for the text form's note on how `policyd`
    /// enforces a deny there).
    #[serde(skip)]
    pub hook: Option<policy_dsl::schema::Hook>,
    /// `default deny` scopes that matched.
    pub scopes: Vec<String>,
    /// `rule` (an enforced rule decided), `scope` (a `default deny` scope
    /// denied) or `no rule` (nothing decided: allow).
    pub decision: &'static str,
    /// The rules (or scopes) that decided the verdict, with why.
    pub deciding: Vec<Deciding>,
    /// The rules that audit the event and did not decide it, with why
    /// (their matching terms, as for `deciding`).
    pub audited: Vec<Deciding>,
    /// The event, echoed.
    pub event: serde_json::Value,
}

fn rule_name(bundle: &PolicyBundle, id: u32) -> String {
    let r = &bundle.spec.rules[id as usize];
    format!("{}.{}", r.policy, r.name)
}

fn scope_name(bundle: &PolicyBundle, id: u32) -> String {
    let s = &bundle.spec.scopes[id as usize];
    format!("{}.{}", s.policy, s.name)
}

/// Per dimension of the hook: (name, event value JSON, steps, set of tested
/// terms).
type Traced = Vec<(String, serde_json::Value, Vec<Step>, TermSet)>;

fn trace_table(table: &HookTable, event: &Event) -> Traced {
    let fields: BTreeMap<String, &Value> =
        event.fields.iter().map(|(k, v)| (key_name(k), v)).collect();
    let fields_debug: BTreeMap<String, &Value> = event
        .fields
        .iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    let get = |name: &str| fields.get(name).or_else(|| fields_debug.get(name)).copied();
    table
        .dimensions
        .iter()
        .map(|(name, dim)| {
            let (value, steps) = match &dim.relation {
                Some(rel) => {
                    let (l, r) = (get(&rel.left), get(&rel.right));
                    let json = serde_json::json!([l.map(value_to_json), r.map(value_to_json)]);
                    (json, relation_steps(dim, l, r))
                }
                None => {
                    let v = get(name);
                    (
                        v.map(value_to_json).unwrap_or(serde_json::Value::Null),
                        trace_steps(dim, v),
                    )
                }
            };
            let mut set: Option<TermSet> = None;
            for s in &steps {
                set = Some(match set {
                    None => s.terms.clone(),
                    Some(x) => intersect(&x, &s.terms),
                });
            }
            (
                name.clone(),
                value,
                steps,
                set.unwrap_or_else(|| dim.default.clone()),
            )
        })
        .collect()
}

/// Whether the dimension does not constrain term `t`: `t` does not test it
/// (so no stored set lists it), or every table of the dimension holds it
/// (the defaults do and no entry removes it: entries are changes from
/// their bases, which start at the defaults).
fn unconstrained(dim: &Dimension, t: u32) -> bool {
    let has = |s: &TermSet| s.binary_search(&t).is_ok();
    !has(&dim.tested)
        || (has(&dim.default)
            && dim.suffix_default.as_ref().is_none_or(has)
            && dim.absent.as_ref().is_none_or(has)
            && !dim
                .exact
                .iter()
                .chain(&dim.prefix)
                .chain(&dim.suffix)
                .any(|e| has(&e.remove))
            && !dim.ranges.iter().any(|r| has(&r.remove))
            && dim.masks.iter().all(|m| has(&m.held) && has(&m.lacking)))
}

/// Explain the bundle's decision for an event.
pub fn explain(bundle: &PolicyBundle, event: &Event) -> Explanation {
    let outcome: Outcome = eval_bundle(bundle, event);
    let names =
        |ids: &[u32]| -> Vec<String> { ids.iter().map(|&i| rule_name(bundle, i)).collect() };
    let mut deciding = Vec::new();
    let mut audited = Vec::new();
    let mut decision = "no rule";
    if let Some(table) = bundle.spec.hooks.get(&event.hook) {
        let traced = trace_table(table, event);
        let n = table.terms.len() as u32;
        let mut matched: BTreeSet<u32> = (0..n).collect();
        for (name, _, _, set) in &traced {
            // One event: the full sets (untested terms added back) are cheap.
            let full = table.dimensions[name].full_set(set, n);
            matched = matched
                .intersection(&full.iter().copied().collect())
                .copied()
                .collect();
        }
        let v = &table.verdicts;
        let has = |s: &TermSet, t: u32| s.binary_search(&t).is_ok();
        let enforced = |t: u32| !has(&v.monitor, t);
        // The verdict set that decided, over enforced terms.
        let deciding_set: Option<(&TermSet, bool)> = match outcome.verdict {
            Verdict::Kill => Some((&v.kill, false)),
            Verdict::Deny
                if matched
                    .iter()
                    .any(|&t| enforced(t) && (has(&v.deny, t) || has(&v.kill, t))) =>
            {
                Some((&v.deny, false))
            }
            Verdict::Deny => Some((&v.default_deny, true)),
            Verdict::Allow if matched.iter().any(|&t| enforced(t) && has(&v.allow, t)) => {
                Some((&v.allow, false))
            }
            Verdict::Allow => None,
        };
        // The lookups that put term `t` in the matched set.
        let why = |t: u32| TermWhy {
            term: t,
            conditions: traced
                .iter()
                .filter(|(name, ..)| !unconstrained(&table.dimensions[name], t))
                .flat_map(|(name, value, steps, _)| {
                    steps
                        .iter()
                        .filter(|s| has(&s.terms, t))
                        .map(|s| Condition {
                            dimension: name.clone(),
                            value: value.clone(),
                            lookup: s.lookup,
                            entry: s.entry.clone(),
                        })
                })
                .collect(),
        };
        if let Some((set, scope)) = deciding_set {
            decision = if scope { "scope" } else { "rule" };
            let mut by_owner: BTreeMap<u32, Vec<TermWhy>> = BTreeMap::new();
            for &t in matched.iter().filter(|&&t| enforced(t) && has(set, t)) {
                let term = &table.terms[t as usize];
                if term.scope != scope {
                    continue;
                }
                by_owner.entry(term.rule).or_default().push(why(t));
            }
            for (owner, terms) in by_owner {
                deciding.push(Deciding {
                    rule: if scope {
                        scope_name(bundle, owner)
                    } else {
                        rule_name(bundle, owner)
                    },
                    scope,
                    verdict: if scope {
                        Some(Verdict::Deny)
                    } else {
                        bundle.spec.rules[owner as usize].verdict
                    },
                    terms,
                });
            }
        }
        // Auditing rules that did not decide: why they matched too.
        let decided: BTreeSet<&str> = deciding.iter().map(|d| d.rule.as_str()).collect();
        let audit_rules: BTreeSet<u32> = outcome.audit.iter().copied().collect();
        let mut by_rule: BTreeMap<u32, Vec<TermWhy>> = BTreeMap::new();
        for &t in matched.iter().filter(|&&t| has(&v.audit, t)) {
            let term = &table.terms[t as usize];
            if !term.scope
                && audit_rules.contains(&term.rule)
                && !decided.contains(rule_name(bundle, term.rule).as_str())
            {
                by_rule.entry(term.rule).or_default().push(why(t));
            }
        }
        for (rule, terms) in by_rule {
            audited.push(Deciding {
                rule: rule_name(bundle, rule),
                scope: false,
                verdict: bundle.spec.rules[rule as usize].verdict,
                terms,
            });
        }
    }
    Explanation {
        verdict: outcome.verdict,
        would_verdict: outcome.would_verdict,
        matched: names(&outcome.matched),
        audit: names(&outcome.audit),
        counters: outcome.counters.clone(),
        would_deny: names(&outcome.would_deny),
        hook: Some(event.hook),
        scopes: outcome
            .scopes
            .iter()
            .map(|&i| scope_name(bundle, i))
            .collect(),
        decision,
        deciding,
        audited,
        event: crate::event_json::event_to_json(event),
    }
}

/// The set a traced lookup gives, for tests: must equal the evaluator's.
pub fn traced_set(dim: &Dimension, value: Option<&Value>) -> TermSet {
    trace_lookup(dim, value).0
}

/// The evaluator's set for a present value (re-exported for the tests).
pub fn evaluator_set(dim: &Dimension, value: &Value) -> TermSet {
    eval::lookup_value(dim, value)
}

impl Explanation {
    /// The human report.
    pub fn human(&self) -> String {
        let list = |v: &[String]| {
            if v.is_empty() {
                "none".to_string()
            } else {
                v.join(", ")
            }
        };
        let mut o = format!("verdict: {}", self.verdict.as_str());
        // The language's verdict; on a tracepoint hook the kernel cannot
        // refuse, and policyd's events say `kill`.
        match self.hook {
            Some(h)
                if self.verdict == Verdict::Deny
                    && !matches!(
                        h,
                        policy_dsl::schema::Hook::Connect | policy_dsl::schema::Hook::Bind
                    ) =>
            {
                o.push_str(&format!(
                    " (policyd enforces a deny on `{}` as a kill: its tracepoint cannot refuse the call)",
                    h.as_str()
                ));
            }
            _ => {}
        }
        o.push('\n');
        if self.would_verdict != self.verdict {
            o.push_str(&format!(
                "would be: {} (with monitor policies enforced)\n",
                self.would_verdict.as_str()
            ));
        }
        o.push_str(&format!("matched: {}\n", list(&self.matched)));
        o.push_str(&format!("audit: {}\n", list(&self.audit)));
        o.push_str(&format!("counters: {}\n", list(&self.counters)));
        if !self.would_deny.is_empty() {
            o.push_str(&format!("would deny: {}\n", list(&self.would_deny)));
        }
        if !self.scopes.is_empty() {
            o.push_str(&format!("default deny scopes: {}\n", list(&self.scopes)));
        }
        match self.decision {
            "no rule" => o.push_str("decided by: no enforced rule or scope matched (allow)\n"),
            _ => {
                for d in &self.deciding {
                    o.push_str(&format!(
                        "decided by: {} ({})\n",
                        d.rule,
                        if d.scope {
                            "default deny scope".to_string()
                        } else {
                            d.verdict.map(|v| v.as_str()).unwrap_or("-").to_string()
                        }
                    ));
                    terms_human(&mut o, &d.terms);
                }
            }
        }
        for a in &self.audited {
            o.push_str(&format!("audited by: {}\n", a.rule));
            terms_human(&mut o, &a.terms);
        }
        o
    }

    /// The JSON report (`audited` lists the auditing rules that did not
    /// decide, with their conditions).
    pub fn json(&self) -> String {
        let mut s = serde_json::to_string_pretty(self).expect("explanation serialises");
        s.push('\n');
        s
    }
}

/// The matching terms of a rule and the lookups that held, indented.
fn terms_human(o: &mut String, terms: &[TermWhy]) {
    for t in terms {
        o.push_str(&format!("  term {}:\n", t.term));
        if t.conditions.is_empty() {
            o.push_str("    no condition (matches every event of the hook)\n");
        }
        for c in &t.conditions {
            let value = if c.value.is_null() {
                "absent".to_string()
            } else {
                c.value.to_string()
            };
            o.push_str(&format!(
                "    {} = {}: {}{}\n",
                c.dimension,
                value,
                c.lookup,
                c.entry
                    .as_ref()
                    .map(|e| format!(" {e:?}"))
                    .unwrap_or_default()
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use policy_dsl::checked::{FieldKey, Value};
    use policy_dsl::schema::{Field, Hook};

    #[test]
    fn auditing_rules_that_did_not_decide_say_why_they_matched() {
        let b = crate::compile::evaluation_bundle_of(
            "policy p {}\n\
             rule seen on exec { when process.binary startswith \"/usr/\" and user.uid == 0 audit }\n\
             rule deny_x on exec { when process.binary == \"/usr/bin/x\" deny audit }\n",
        )
        .unwrap();
        let event = |binary: &str| Event {
            hook: Hook::Exec,
            fields: [
                (
                    FieldKey::plain(Field::ProcessBinary),
                    Value::Str(binary.into()),
                ),
                (FieldKey::plain(Field::UserUid), Value::Int(0)),
            ]
            .into_iter()
            .collect(),
        };
        // Only the audit rule matches: it did not decide, it says why.
        let e = explain(&b, &event("/usr/bin/y"));
        assert_eq!(e.decision, "no rule");
        assert_eq!(e.audited.len(), 1);
        assert_eq!(e.audited[0].rule, "p.seen");
        let c = &e.audited[0].terms[0].conditions;
        let got: Vec<(&str, &str, Option<&str>)> = c
            .iter()
            .map(|c| (c.dimension.as_str(), c.lookup, c.entry.as_deref()))
            .collect();
        assert_eq!(
            got,
            [
                ("process.binary", "prefix", Some("/usr/")),
                ("user.uid", "range", Some("0..0"))
            ]
        );
        // The deny rule decides and audits: listed once, under `deciding`.
        let e = explain(&b, &event("/usr/bin/x"));
        assert_eq!(e.deciding[0].rule, "p.deny_x");
        let audited: Vec<&str> = e.audited.iter().map(|a| a.rule.as_str()).collect();
        assert_eq!(audited, ["p.seen"]);
        assert!(
            e.human().contains("audited by: p.seen\n  term 0:\n"),
            "{}",
            e.human()
        );
    }
}
