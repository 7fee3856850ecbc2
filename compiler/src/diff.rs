//! `policyc diff OLD NEW`: what changed between two bundles, and example
//! events whose verdict changes.
//!
//! Rules are matched by `policy.rule`. A rule in both is *changed* when its
//! hook, verdict, audit, severity, message or rate differ, or when its
//! condition does: some candidate event (below) is matched by one version
//! and not the other (the number of terms is reported too, but a different
//! DNF of the same condition is not a change).
//!
//! **Candidate events** are generated per hook from the union of both
//! bundles' tables, so that every class of values either bundle
//! distinguishes is tried: each exact value; each prefix, alone and followed
//! by `policyc-diff`; each suffix behind a neutral prefix, and each prefix
//! joined to each suffix; each range bound and its neighbours; the first and
//! last address of each CIDR block and the addresses just outside; each
//! enumeration value and both booleans; each capability mask, none and all;
//! a value matching no entry; and the field absent. From these, for every
//! term of either bundle, a *witness* event is built (for each dimension the
//! first candidate whose lookup holds the term, in the bundle the term is
//! from), and then every one-field variation of every witness. Both bundles
//! evaluate every candidate (one [`Evaluator`] each, as `eval_bundle`);
//! those whose enforced verdict differs are reported, at most one per
//! (hook, old verdict, new verdict, deciding rules) and at most
//! `max_examples` in all, in generation order (deterministic). The search
//! is bounded ([`MAX_CANDIDATES`] events per hook): a verdict change
//! needing a combination that no witness variation reaches can be missed,
//! so an empty list is evidence, not proof.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::net::IpAddr;

use policy_dsl::checked::{Event, FieldKey, Value};
use policy_dsl::schema::{Field, FieldType, Hook, CAPABILITIES};
use serde::Serialize;

use crate::bundle::{Dimension, DimensionKind, PolicyBundle, RuleEntry, TermSet, Verdict};
use crate::eval::{lookup_value, Evaluator, Outcome};
use crate::event_json::{event_to_json, event_to_line};
use crate::lower::UNSET_ID;

/// Most candidate events evaluated per hook.
pub const MAX_CANDIDATES: usize = 20_000;

/// A rule present in both bundles that differs.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RuleChange {
    /// `policy.rule`.
    pub rule: String,
    /// What changed: `{"verdict": ["deny", "allow"], "condition": …}`, each
    /// as `[old, new]` (JSON values).
    pub changes: BTreeMap<String, [serde_json::Value; 2]>,
    /// For a condition change, an event matched by one version only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub witness: Option<serde_json::Value>,
    /// The witness as one line, `hook` first (human output).
    #[serde(skip)]
    pub witness_line: Option<String>,
    /// Which version matches the witness: `old` or `new`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub witness_matched_by: Option<&'static str>,
}

/// An event whose enforced verdict changes.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VerdictChange {
    /// The event.
    pub event: serde_json::Value,
    /// The event as one line, `hook` first (human output).
    #[serde(skip)]
    pub event_line: String,
    /// Old verdict.
    pub old: Verdict,
    /// New verdict.
    pub new: Verdict,
    /// Rules that matched in the old bundle.
    pub old_matched: Vec<String>,
    /// Rules that matched in the new bundle.
    pub new_matched: Vec<String>,
}

/// What `policyc diff` reports.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BundleDiff {
    /// Rules only in the new bundle, `policy.rule`.
    pub added: Vec<String>,
    /// Rules only in the old bundle.
    pub removed: Vec<String>,
    /// Rules in both that differ.
    pub changed: Vec<RuleChange>,
    /// Example events whose verdict changes (bounded).
    pub verdict_changes: Vec<VerdictChange>,
    /// Candidate events whose verdict changes, in all (before the bound).
    pub verdict_changes_found: usize,
    /// Candidate events evaluated.
    pub candidates: usize,
}

impl BundleDiff {
    /// Whether some event's verdict changes (exit code 1).
    pub fn verdict_changed(&self) -> bool {
        self.verdict_changes_found > 0
    }

    /// The human report.
    pub fn human(&self) -> String {
        let mut o = String::new();
        for r in &self.added {
            o.push_str(&format!("+ rule {r}\n"));
        }
        for r in &self.removed {
            o.push_str(&format!("- rule {r}\n"));
        }
        for c in &self.changed {
            o.push_str(&format!("~ rule {}\n", c.rule));
            for (what, [a, b]) in &c.changes {
                o.push_str(&format!("    {what}: {a} -> {b}\n"));
            }
            if let (Some(w), Some(by)) = (&c.witness_line, c.witness_matched_by) {
                o.push_str(&format!("    e.g. only the {by} version matches {w}\n"));
            }
        }
        if self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty() {
            o.push_str("no rule changes\n");
        }
        if self.verdict_changes.is_empty() {
            o.push_str(&format!(
                "no verdict changes found ({} candidate events)\n",
                self.candidates
            ));
        } else {
            o.push_str(&format!(
                "verdict changes ({} of {} candidate events; {} shown):\n",
                self.verdict_changes_found,
                self.candidates,
                self.verdict_changes.len()
            ));
            for v in &self.verdict_changes {
                let list = |l: &[String]| {
                    if l.is_empty() {
                        "no rule".to_string()
                    } else {
                        l.join(", ")
                    }
                };
                o.push_str(&format!(
                    "  {} -> {}: {}\n    old: {}; new: {}\n",
                    v.old.as_str(),
                    v.new.as_str(),
                    v.event_line,
                    list(&v.old_matched),
                    list(&v.new_matched)
                ));
            }
        }
        o
    }

    /// The JSON report.
    pub fn json(&self) -> String {
        let mut s = serde_json::to_string_pretty(self).expect("diff serialises");
        s.push('\n');
        s
    }
}

fn key(r: &RuleEntry) -> String {
    format!("{}.{}", r.policy, r.name)
}

fn names(bundle: &PolicyBundle, ids: &[u32]) -> Vec<String> {
    ids.iter()
        .map(|&i| key(&bundle.spec.rules[i as usize]))
        .collect()
}

/// Compare two bundles.
pub fn diff(old: &PolicyBundle, new: &PolicyBundle, max_examples: usize) -> BundleDiff {
    let old_rules: BTreeMap<String, &RuleEntry> =
        old.spec.rules.iter().map(|r| (key(r), r)).collect();
    let new_rules: BTreeMap<String, &RuleEntry> =
        new.spec.rules.iter().map(|r| (key(r), r)).collect();
    let added = new_rules
        .keys()
        .filter(|k| !old_rules.contains_key(*k))
        .cloned()
        .collect();
    let removed = old_rules
        .keys()
        .filter(|k| !new_rules.contains_key(*k))
        .cloned()
        .collect();

    // Candidates and outcomes per hook.
    let hooks: BTreeSet<Hook> = old
        .spec
        .hooks
        .keys()
        .chain(new.spec.hooks.keys())
        .copied()
        .collect();
    let mut candidates = 0;
    let mut found = 0;
    let mut examples = Vec::new();
    let mut groups = HashSet::new();
    // (rule key) → first event where exactly one version matches.
    let mut condition_witness: BTreeMap<String, (Event, &'static str)> = BTreeMap::new();
    let (old_eval, new_eval) = (Evaluator::new(old), Evaluator::new(new));
    for hook in hooks {
        let events = candidate_events(old, new, hook);
        candidates += events.len();
        for event in &events {
            let a: Outcome = old_eval.eval(event);
            let b: Outcome = new_eval.eval(event);
            let am: BTreeSet<String> = names(old, &a.matched).into_iter().collect();
            let bm: BTreeSet<String> = names(new, &b.matched).into_iter().collect();
            for r in am.symmetric_difference(&bm) {
                if old_rules.contains_key(r) && new_rules.contains_key(r) {
                    condition_witness.entry(r.clone()).or_insert_with(|| {
                        (event.clone(), if am.contains(r) { "old" } else { "new" })
                    });
                }
            }
            if a.verdict != b.verdict {
                found += 1;
                let group = (
                    hook,
                    a.verdict,
                    b.verdict,
                    am.iter().cloned().collect::<Vec<_>>(),
                    bm.iter().cloned().collect::<Vec<_>>(),
                );
                if examples.len() < max_examples && groups.insert(group) {
                    examples.push(VerdictChange {
                        event: event_to_json(event),
                        event_line: event_to_line(event),
                        old: a.verdict,
                        new: b.verdict,
                        old_matched: am.into_iter().collect(),
                        new_matched: bm.into_iter().collect(),
                    });
                }
            }
        }
    }

    let mut changed = Vec::new();
    for (k, a) in &old_rules {
        let Some(b) = new_rules.get(k) else { continue };
        let mut changes: BTreeMap<String, [serde_json::Value; 2]> = BTreeMap::new();
        let mut field = |name: &str, x: serde_json::Value, y: serde_json::Value| {
            if x != y {
                changes.insert(name.into(), [x, y]);
            }
        };
        field("hook", j(&a.hook), j(&b.hook));
        field("verdict", j(&a.verdict), j(&b.verdict));
        field("audit", j(&a.audit), j(&b.audit));
        field("severity", j(&a.severity), j(&b.severity));
        field("message", j(&a.message), j(&b.message));
        field("rate", j(&a.rate), j(&b.rate));
        let terms = |bundle: &PolicyBundle, r: &RuleEntry| {
            bundle
                .spec
                .hooks
                .get(&r.hook)
                .map(|t| {
                    t.terms
                        .iter()
                        .filter(|t| !t.scope && t.rule == r.id)
                        .count()
                })
                .unwrap_or(0)
        };
        let witness = condition_witness.get(k);
        if witness.is_some() {
            let n = |n: usize| format!("{n} term{}", if n == 1 { "" } else { "s" });
            changes.insert(
                "condition".into(),
                [n(terms(old, a)).into(), n(terms(new, b)).into()],
            );
        }
        if !changes.is_empty() {
            changed.push(RuleChange {
                rule: k.clone(),
                changes,
                witness: witness.map(|(e, _)| event_to_json(e)),
                witness_line: witness.map(|(e, _)| event_to_line(e)),
                witness_matched_by: witness.map(|(_, by)| *by),
            });
        }
    }
    BundleDiff {
        added,
        removed,
        changed,
        verdict_changes: examples,
        verdict_changes_found: found,
        candidates,
    }
}

/// A field's JSON, for comparison and display.
fn j<T: Serialize>(v: &T) -> serde_json::Value {
    serde_json::to_value(v).unwrap_or(serde_json::Value::Null)
}

/// The field keys of a dimension name (`k8s.label["app"]`), and for a
/// relation the two fields.
fn dimension_keys(name: &str, dim: &Dimension) -> Vec<FieldKey> {
    let parse = |n: &str| -> Option<FieldKey> {
        let (base, index) = match n.split_once('[') {
            None => (n, None),
            Some((b, rest)) => {
                let inner = rest.strip_suffix(']')?;
                (b, Some(serde_json::from_str::<String>(inner).ok()?))
            }
        };
        Some(FieldKey {
            field: Field::from_name(base)?,
            key: index,
        })
    };
    match &dim.relation {
        Some(rel) => [&rel.left, &rel.right]
            .into_iter()
            .filter_map(|n| parse(n))
            .collect(),
        None => parse(name).into_iter().collect(),
    }
}

fn push(out: &mut Vec<Value>, v: Value) {
    if !out.contains(&v) {
        out.push(v);
    }
}

/// Candidate values of a field from one dimension's tables.
fn dimension_values(ty: FieldType, dim: &Dimension, out: &mut Vec<Value>) {
    match dim.kind {
        DimensionKind::Path | DimensionKind::String => {
            let path = dim.kind == DimensionKind::Path;
            let neutral = if path {
                "/policyc-diff"
            } else {
                "policyc-diff"
            };
            let max = match ty {
                FieldType::Str { max } => max,
                _ => 4095,
            };
            let mut add = |s: String| {
                if s.len() <= max && (!path || s.starts_with('/')) {
                    push(out, Value::Str(s));
                }
            };
            for e in &dim.exact {
                add(e.value.clone());
            }
            for p in &dim.prefix {
                add(p.value.clone());
                add(format!("{}policyc-diff", p.value));
                for s in &dim.suffix {
                    add(format!("{}{}", p.value, s.value));
                    add(format!("{}x{}", p.value, s.value));
                }
            }
            for s in &dim.suffix {
                add(format!("{neutral}{}", s.value));
            }
            add(format!("{neutral}/none"));
        }
        DimensionKind::Int => {
            let max = ty.max_number();
            for r in &dim.ranges {
                for n in [
                    r.lo.checked_sub(1),
                    Some(r.lo),
                    Some(r.lo.saturating_add(1)),
                    Some(r.hi.saturating_sub(1)),
                    Some(r.hi),
                    r.hi.checked_add(1),
                ]
                .into_iter()
                .flatten()
                {
                    if n <= max {
                        push(out, Value::Int(n));
                    } else if n == UNSET_ID && ty == FieldType::LoginUid {
                        push(out, Value::Unset);
                    }
                }
            }
            for e in &dim.exact {
                push(out, Value::Name(e.value.clone()));
            }
            push(out, Value::Int(0));
            if ty == FieldType::LoginUid {
                push(out, Value::Unset);
            }
        }
        DimensionKind::Ip => {
            for e in &dim.prefix {
                if let Ok(net) = e.value.parse::<ipnet::IpNet>() {
                    let (first, last) = (net.network(), net.broadcast());
                    for a in [prev(first), Some(first), Some(last), next(last)]
                        .into_iter()
                        .flatten()
                    {
                        push(out, Value::Ip(a));
                    }
                }
            }
            push(out, Value::Ip("192.0.2.1".parse().expect("an address")));
            push(out, Value::Ip("2001:db8::1".parse().expect("an address")));
        }
        DimensionKind::Enum | DimensionKind::Bool | DimensionKind::Relation => match ty {
            FieldType::Enum(names) => {
                for n in names {
                    push(out, Value::Str(n.to_string()));
                }
            }
            FieldType::Bool => {
                push(out, Value::Bool(false));
                push(out, Value::Bool(true));
            }
            _ => {}
        },
        DimensionKind::Caps => {
            let mut all = BTreeSet::new();
            for m in &dim.masks {
                push(out, Value::Caps(m.caps.iter().cloned().collect()));
                all.extend(m.caps.iter().cloned());
            }
            push(out, Value::Caps(BTreeSet::new()));
            push(out, Value::Caps(all));
            push(
                out,
                Value::Caps(CAPABILITIES.iter().map(|(c, _)| c.to_string()).collect()),
            );
        }
    }
}

/// Values a relation's fields take so that it holds and fails either way.
fn relation_values(ty: FieldType, out: &mut Vec<Value>) {
    match ty {
        FieldType::Uid | FieldType::Gid | FieldType::LoginUid | FieldType::Port => {
            for n in [0, 1, 1000] {
                push(out, Value::Int(n));
            }
        }
        FieldType::Bool => {
            push(out, Value::Bool(false));
            push(out, Value::Bool(true));
        }
        FieldType::Path => {
            push(out, Value::Str("/policyc-diff/a".into()));
            push(out, Value::Str("/policyc-diff/b".into()));
        }
        FieldType::Str { .. } => {
            push(out, Value::Str("a".into()));
            push(out, Value::Str("b".into()));
        }
        FieldType::Ip => {
            push(out, Value::Ip("192.0.2.1".parse().expect("an address")));
            push(out, Value::Ip("192.0.2.2".parse().expect("an address")));
        }
        FieldType::Enum(names) => {
            for n in names {
                push(out, Value::Str(n.to_string()));
            }
        }
        FieldType::Caps => {}
    }
}

fn prev(a: IpAddr) -> Option<IpAddr> {
    match a {
        IpAddr::V4(v) => u32::from(v).checked_sub(1).map(|n| IpAddr::V4(n.into())),
        IpAddr::V6(v) => u128::from(v).checked_sub(1).map(|n| IpAddr::V6(n.into())),
    }
}

fn next(a: IpAddr) -> Option<IpAddr> {
    match a {
        IpAddr::V4(v) => u32::from(v).checked_add(1).map(|n| IpAddr::V4(n.into())),
        IpAddr::V6(v) => u128::from(v).checked_add(1).map(|n| IpAddr::V6(n.into())),
    }
}

/// The candidate events of one hook (see the module docs).
pub fn candidate_events(old: &PolicyBundle, new: &PolicyBundle, hook: Hook) -> Vec<Event> {
    let tables: Vec<(&PolicyBundle, &crate::bundle::HookTable)> = [old, new]
        .into_iter()
        .filter_map(|b| b.spec.hooks.get(&hook).map(|t| (b, t)))
        .collect();
    // Candidate values per field key (None = absent, always last).
    let mut values: BTreeMap<FieldKey, Vec<Value>> = BTreeMap::new();
    for (_, table) in &tables {
        for (name, dim) in &table.dimensions {
            for k in dimension_keys(name, dim) {
                let ty = k.field.info().ty;
                let list = values.entry(k).or_default();
                if dim.relation.is_some() {
                    relation_values(ty, list);
                } else {
                    dimension_values(ty, dim, list);
                }
            }
        }
    }
    let mut out: Vec<Event> = Vec::new();
    let mut seen: HashSet<String> = HashSet::new();
    let mut add = |e: Event, out: &mut Vec<Event>| {
        if out.len() < MAX_CANDIDATES && seen.insert(crate::event_json::event_to_line(&e)) {
            out.push(e);
        }
    };
    let empty = Event {
        hook,
        fields: BTreeMap::new(),
    };
    // Every field absent, and every field at a value matching no entry.
    add(empty.clone(), &mut out);
    // Witnesses: per term, per dimension the first candidate holding it.
    let mut witnesses: Vec<Event> = Vec::new();
    for (bundle, table) in &tables {
        let _ = bundle;
        // A dimension's lookup of a candidate value does not depend on the
        // term: each is computed once (on first use) and kept, as is the
        // set of an absent field and a relation's two sets.
        let lookups: BTreeMap<&str, Vec<std::cell::OnceCell<TermSet>>> = table
            .dimensions
            .iter()
            .filter_map(|(name, dim)| {
                let k = dimension_keys(name, dim).into_iter().next()?;
                let n = values.get(&k).map_or(0, Vec::len);
                Some((
                    name.as_str(),
                    (0..n).map(|_| std::cell::OnceCell::new()).collect(),
                ))
            })
            .collect();
        let absent: BTreeMap<&str, TermSet> = table
            .dimensions
            .iter()
            .map(|(name, dim)| {
                let set = dim
                    .absent
                    .clone()
                    .unwrap_or_else(|| crate::explain::traced_set(dim, None));
                (name.as_str(), set)
            })
            .collect();
        let relation_sets: BTreeMap<&str, [TermSet; 2]> = table
            .dimensions
            .iter()
            .filter(|(_, d)| d.relation.is_some())
            .map(|(name, dim)| {
                let set = |key| crate::eval::exact(dim, key).unwrap_or_default();
                (name.as_str(), [set("true"), set("false")])
            })
            .collect();
        for t in 0..table.terms.len() as u32 {
            let mut event = empty.clone();
            for (name, dim) in &table.dimensions {
                if dim.relation.is_some() {
                    continue;
                }
                let Some(k) = dimension_keys(name, dim).into_iter().next() else {
                    continue;
                };
                // A term that does not test the dimension holds for any
                // value (no stored set lists it): the first candidate.
                let untested = dim.tested.binary_search(&t).is_err();
                let candidates = values.get(&k).map(Vec::as_slice).unwrap_or(&[]);
                let cells = &lookups[name.as_str()];
                let holds = |i: Option<usize>| {
                    if untested {
                        return true;
                    }
                    let set = match i {
                        Some(i) => cells[i].get_or_init(|| lookup_value(dim, &candidates[i])),
                        None => &absent[name.as_str()],
                    };
                    set.binary_search(&t).is_ok()
                };
                if let Some(v) = (0..candidates.len())
                    .find(|&i| holds(Some(i)))
                    .map(|i| &candidates[i])
                {
                    event.fields.insert(k, v.clone());
                } else if !holds(None) {
                    // No candidate holds it: leave a value anyway (the term
                    // may need another dimension's help, e.g. a relation).
                    if let Some(v) = candidates.first() {
                        event.fields.insert(k, v.clone());
                    }
                }
            }
            // Relations: try to satisfy them by copying or adjusting values.
            for (name, dim) in table
                .dimensions
                .iter()
                .filter(|(_, d)| d.relation.is_some())
            {
                let rel = dim.relation.as_ref().expect("a relation");
                let [when_true, when_false] = &relation_sets[name.as_str()];
                let (wants_true, wants_false) = (
                    when_true.binary_search(&t).is_ok(),
                    when_false.binary_search(&t).is_ok(),
                );
                let keys = dimension_keys("", dim);
                if keys.len() != 2 || wants_true == wants_false {
                    continue;
                }
                let left = event
                    .fields
                    .get(&keys[0])
                    .cloned()
                    .or_else(|| values.get(&keys[0]).and_then(|v| v.first().cloned()));
                let Some(left) = left else { continue };
                let right = match (wants_true, rel.op.as_str(), &left) {
                    (true, "==", l) | (false, "<", l) => l.clone(),
                    (true, _, Value::Int(n)) => Value::Int(n + 1),
                    (false, "==", Value::Int(n)) => Value::Int(n + 1),
                    (false, _, Value::Int(n)) if *n > 0 => Value::Int(n - 1),
                    _ => continue,
                };
                event.fields.insert(keys[0].clone(), left);
                event.fields.insert(keys[1].clone(), right);
            }
            witnesses.push(event);
        }
    }
    for w in &witnesses {
        add(w.clone(), &mut out);
    }
    // One-field variations of every witness (and of the empty event).
    for w in std::iter::once(&empty).chain(&witnesses) {
        for (k, list) in &values {
            for v in list.iter().map(Some).chain([None]) {
                let mut e = w.clone();
                match v {
                    Some(v) => {
                        e.fields.insert(k.clone(), v.clone());
                    }
                    None => {
                        e.fields.remove(k);
                    }
                }
                add(e, &mut out);
            }
        }
    }
    out
}
