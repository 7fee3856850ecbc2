//! Reference evaluators: what a policy decides for one event.
//!
//! Two independent readings that must agree on every input:
//! - [`eval_program`] (and [`eval_rules`]) applies the checked rules' and
//!   scopes' conditions directly: the meaning of the language.
//! - [`eval_bundle`] runs the bundle's tables the way the kernel does (one
//!   lookup per dimension, AND across dimensions, verdict masks): a Rust
//!   mirror of `bpf-templates/`. It reads only the bundle.
//!
//! Decision (deny-overrides), over the *enforced* rules and scopes (those of
//! `mode = enforce` policies): a matching `kill` → kill; else a matching
//! `deny` → deny; else a matching `allow` → allow; else a matching
//! `default deny` scope → deny; else allow. The same decision over every rule
//! and scope, monitor ones included, is the *would-be* verdict. `audit` and
//! `count` apply whatever the verdict; a matching `deny`/`kill` rule of a
//! monitor policy is audited ("would deny") instead of enforced.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use ipnet::IpNet;
use policy_dsl::checked::{Event, FieldKey, Value};

use crate::bundle::{Dimension, DimensionKind, Entry, HookTable, PolicyBundle, TermSet, Verdict};
use crate::limits::MAX_PATH_LITERAL_LEN;
use crate::lower::{Program, RuleRef, UNSET_ID};
use policy_dsl::ast::Action;

/// What a policy decides for an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The enforced verdict: from rules and scopes of `mode = enforce`
    /// policies (`allow` when none decides).
    pub verdict: Verdict,
    /// The verdict if every policy were enforced (monitor ones included);
    /// equal to `verdict` when no monitor policy decides otherwise.
    pub would_verdict: Verdict,
    /// Ids of every rule that matched, ascending.
    pub matched: Vec<u32>,
    /// Ids of matched rules that are audited, ascending: rules with `audit`,
    /// and `deny`/`kill` rules of monitor policies (audited would-deny).
    pub audit: Vec<u32>,
    /// Ids of matched `deny`/`kill` rules of monitor policies, ascending:
    /// verdicts that were not enforced.
    pub would_deny: Vec<u32>,
    /// Ids of matched `default deny` scopes (any mode), ascending.
    pub scopes: Vec<u32>,
    /// Counters incremented (`count "name"` of matched rules), sorted, unique.
    pub counters: Vec<String>,
}

/// A matched rule as the decision sees it.
#[derive(Debug, Clone, Copy)]
struct Matched {
    action: Option<Action>,
    audit: bool,
    monitor: bool,
}

fn verdict_of(actions: impl Iterator<Item = Option<Action>> + Clone, scope: bool) -> Verdict {
    let has = |a: Action| actions.clone().any(|x| x == Some(a));
    if has(Action::Kill) {
        Verdict::Kill
    } else if has(Action::Deny) || (!has(Action::Allow) && scope) {
        Verdict::Deny
    } else {
        Verdict::Allow
    }
}

/// Combine matched rules (id → how it acts) and matched scopes (id →
/// monitor) into an outcome.
fn decide(
    rules: &BTreeMap<u32, Matched>,
    scopes: &BTreeMap<u32, bool>,
    counters: BTreeSet<String>,
) -> Outcome {
    let enforced = rules.values().filter(|m| !m.monitor).map(|m| m.action);
    let verdict = verdict_of(enforced, scopes.values().any(|m| !m));
    let would_verdict = verdict_of(rules.values().map(|m| m.action), !scopes.is_empty());
    let would_deny: Vec<u32> = rules
        .iter()
        .filter(|(_, m)| m.monitor && matches!(m.action, Some(Action::Deny | Action::Kill)))
        .map(|(id, _)| *id)
        .collect();
    Outcome {
        verdict,
        would_verdict,
        matched: rules.keys().copied().collect(),
        audit: rules
            .iter()
            .filter(|(id, m)| m.audit || would_deny.contains(id))
            .map(|(id, _)| *id)
            .collect(),
        would_deny,
        scopes: scopes.keys().copied().collect(),
        counters: counters.into_iter().collect(),
    }
}

/// The language's meaning for rules alone (every policy enforced, no scopes).
pub fn eval_rules(rules: &[RuleRef<'_>], event: &Event) -> Outcome {
    eval_program(&Program::from_rules(rules), event)
}

/// The language's meaning: evaluate each rule's and scope's condition on the
/// event.
pub fn eval_program(program: &Program<'_>, event: &Event) -> Outcome {
    let mut rules = BTreeMap::new();
    let mut counters = BTreeSet::new();
    for r in program
        .rules
        .iter()
        .filter(|r| r.rule.hook == event.hook && r.rule.condition.eval(event))
    {
        rules.insert(
            r.id,
            Matched {
                action: r.rule.action,
                audit: r.rule.audit,
                monitor: program.is_monitor(r.file),
            },
        );
        counters.extend(r.rule.counts.iter().cloned());
    }
    let scopes = program
        .scopes
        .iter()
        .filter(|s| s.scope.hook == event.hook && s.scope.condition.eval(event))
        .map(|s| (s.id, program.is_monitor(s.file)))
        .collect();
    decide(&rules, &scopes, counters)
}

/// The kernel's algorithm over the bundle's tables.
pub fn eval_bundle(bundle: &PolicyBundle, event: &Event) -> Outcome {
    let spec = &bundle.spec;
    let Some(table) = spec.hooks.get(&event.hook) else {
        return decide(&BTreeMap::new(), &BTreeMap::new(), BTreeSet::new());
    };
    let terms = matched_terms(table, event);
    let v = &table.verdicts;
    let has = |set: &TermSet, t: u32| set.binary_search(&t).is_ok();
    let monitor_policy = |policy: &str| {
        spec.policies
            .iter()
            .any(|p| p.name == policy && p.mode == crate::bundle::Mode::Monitor)
    };
    let mut rules: BTreeMap<u32, Matched> = BTreeMap::new();
    let mut scopes = BTreeMap::new();
    for &t in &terms {
        let term = &table.terms[t as usize];
        let monitor = has(&v.monitor, t);
        if term.scope {
            debug_assert!(has(&v.default_deny, t));
            scopes.insert(term.rule, monitor);
            continue;
        }
        let action = if has(&v.kill, t) {
            Some(Action::Kill)
        } else if has(&v.deny, t) {
            Some(Action::Deny)
        } else if has(&v.allow, t) {
            Some(Action::Allow)
        } else {
            None
        };
        debug_assert_eq!(
            monitor,
            monitor_policy(&spec.rules[term.rule as usize].policy)
        );
        rules.insert(
            term.rule,
            Matched {
                action,
                audit: has(&v.audit, t),
                monitor,
            },
        );
    }
    let counters = v
        .count
        .iter()
        .filter(|(_, set)| set.iter().any(|t| terms.contains(t)))
        .map(|(name, _)| name.clone())
        .collect();
    decide(&rules, &scopes, counters)
}

/// Terms that match: the intersection over the dimensions of each one's
/// lookup (each as [`dimension_lookup`] gives it).
///
/// Computed without building every dimension's full set: a lookup holds
/// only the dimension's tested terms (schema 2), and an untested term
/// passes any value, so per dimension only the tested terms its lookup
/// lacks are removed (`all − ∪_d (tested_d − lookup_d)`). The result starts
/// from the dimension with the smallest full set (its lookup plus its
/// untested terms, found from the `tested` list's gaps without a pass over
/// every term) and keeps a term when each other dimension either does not
/// test it or lets it through (binary searches). So an event costs about
/// the sizes of the sets it looks up, not the number of terms, as with
/// schema 1 (in the kernel it costs MASK_WORDS per dimension).
pub fn matched_terms(table: &HookTable, event: &Event) -> BTreeSet<u32> {
    let n = table.terms.len() as u32;
    let fields: BTreeMap<String, &Value> = event
        .fields
        .iter()
        .map(|(k, v): (&FieldKey, _)| (k.to_string(), v))
        .collect();
    let lookups: Vec<(&Dimension, std::borrow::Cow<'_, [u32]>)> = table
        .dimensions
        .iter()
        .map(|(name, dim)| {
            let set = match &dim.relation {
                Some(rel) => relation_lookup(
                    dim,
                    fields.get(&rel.left).copied(),
                    fields.get(&rel.right).copied(),
                    &rel.op,
                )
                .into(),
                None => match fields.get(name) {
                    Some(v) => match lookup_borrowed(dim, v) {
                        Some(set) => std::borrow::Cow::Borrowed(set.as_slice()),
                        None => lookup_value(dim, v).into(),
                    },
                    // An event without the field satisfies no test of it (as in
                    // `Cond::eval`).
                    None => dim
                        .absent
                        .clone()
                        .unwrap_or_else(|| lookup_none(dim))
                        .into(),
                },
            };
            (dim, set)
        })
        .collect();
    // Full set size of a dimension: its lookup and its untested terms.
    let full_len = |(dim, set): &(&Dimension, std::borrow::Cow<'_, [u32]>)| {
        set.len() + (n as usize).saturating_sub(dim.tested.len())
    };
    let Some(first) = (0..lookups.len()).min_by_key(|&i| full_len(&lookups[i])) else {
        return (0..n).collect(); // no dimension: every term
    };
    let (dim, set) = &lookups[first];
    let mut untested = Vec::new();
    push_untested(&dim.tested, n, &mut untested);
    let mut matched: BTreeSet<u32> = set.iter().chain(&untested).copied().collect();
    for (i, (dim, set)) in lookups.iter().enumerate() {
        if i != first {
            matched
                .retain(|t| dim.tested.binary_search(t).is_err() || set.binary_search(t).is_ok());
        }
    }
    matched
}

/// Push the ids in `0..n` that are not in `tested` (sorted, unique, below
/// `n`), ascending. Costs about their number times `log(tested.len())`: a
/// run of consecutive tested ids is skipped by a binary search (in a run,
/// `tested[j] - j` is constant).
fn push_untested(tested: &[u32], n: u32, out: &mut Vec<u32>) {
    let (mut i, mut next) = (0usize, 0u32);
    loop {
        // Skip the ids next, next + 1, … that are tested.
        let rest = &tested[i..];
        let (mut lo, mut hi) = (0usize, rest.len());
        while lo < hi {
            let mid = (lo + hi) / 2;
            if u64::from(rest[mid]) == u64::from(next) + mid as u64 {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        i += lo;
        next += lo as u32;
        match tested.get(i) {
            Some(&t) => {
                out.extend(next..t);
                next = t + 1;
                i += 1;
            }
            None => {
                out.extend(next..n);
                return;
            }
        }
    }
}

/// The entry whose value is the longest prefix (`prefix`) or suffix of
/// `value` among `entries` (sorted by value, as `PolicyBundle::validate`
/// requires). With many entries: prefixes by
/// a few binary searches, suffixes by one per length of `value`, instead of
/// a scan of every entry.
fn longest_affix<'d>(entries: &'d [Entry], value: &[u8], prefix: bool) -> Option<&'d Entry> {
    let affix = |e: &Entry| {
        let v = e.value.as_bytes();
        if prefix {
            value.starts_with(v)
        } else {
            value.ends_with(v)
        }
    };
    if entries.len() <= 32 {
        return entries
            .iter()
            .filter(|e| affix(e))
            .max_by_key(|e| e.value.len());
    }
    if prefix {
        // The greatest entry not after the key is the longest prefix if it
        // is one; else no prefix is longer than what it shares with the key.
        let mut key = value;
        loop {
            let i = entries.partition_point(|e| e.value.as_bytes() <= key);
            let e = &entries[i.checked_sub(1)?];
            let v = e.value.as_bytes();
            if key.starts_with(v) {
                return Some(e);
            }
            let common = v.iter().zip(key).take_while(|(a, b)| a == b).count();
            key = &key[..common];
        }
    }
    (0..=value.len()).rev().find_map(|n| {
        let key = if prefix {
            &value[..n]
        } else {
            &value[value.len() - n..]
        };
        entries
            .binary_search_by(|e| e.value.as_bytes().cmp(key))
            .ok()
            .map(|i| &entries[i])
    })
}

/// The terms dimension `name` lets through for an event whose fields are
/// `fields` (keyed by field name as the dimensions are, e.g.
/// `k8s.label["app"]`), in a hook of `n_terms` terms: the full set
/// ([`Dimension::full_set`] of [`tested_lookup`]), terms that do not test
/// the dimension included.
pub fn dimension_lookup(
    name: &str,
    dim: &Dimension,
    fields: &BTreeMap<String, &Value>,
    n_terms: u32,
) -> TermSet {
    dim.full_set(&tested_lookup(name, dim, fields), n_terms)
}

/// The tested terms (see [`Dimension::tested`]) dimension `name` lets
/// through for an event whose fields are `fields`: the lookup of the
/// field's value, the `absent` set (else a no-entry lookup) when the event
/// does not give the field, or for a relation the feature computed from its
/// two fields. A subset of `dim.tested`, as every stored set.
pub fn tested_lookup(name: &str, dim: &Dimension, fields: &BTreeMap<String, &Value>) -> TermSet {
    match &dim.relation {
        Some(rel) => relation_lookup(
            dim,
            fields.get(&rel.left).copied(),
            fields.get(&rel.right).copied(),
            &rel.op,
        ),
        None => match fields.get(name) {
            Some(v) => lookup_value(dim, v),
            // An event without the field satisfies no test of it (as in
            // `Cond::eval`).
            None => dim.absent.clone().unwrap_or_else(|| lookup_none(dim)),
        },
    }
}

/// The set of a value matching no entry of the dimension.
fn lookup_none(dim: &Dimension) -> TermSet {
    match dim.kind {
        DimensionKind::Caps => caps_lookup(dim, &BTreeSet::new()),
        _ => match &dim.suffix_default {
            Some(s) => crate::lower::intersect(&dim.default, s),
            None => dim.default.clone(),
        },
    }
}

/// One dimension lookup for a value of the event: the dimension's tested
/// terms the value satisfies (as stored in the bundle; terms that do not
/// test the dimension, satisfied by any value, are not listed).
pub fn lookup_value(dim: &Dimension, value: &Value) -> TermSet {
    match (dim.kind, value) {
        (DimensionKind::Path | DimensionKind::String, Value::Str(s)) => string_lookup(dim, s),
        (DimensionKind::Int, Value::Int(n)) => range_lookup(dim, *n),
        (DimensionKind::Int, Value::Unset) => range_lookup(dim, UNSET_ID),
        (DimensionKind::Int, Value::Name(n)) => exact(dim, n).unwrap_or(&dim.default).clone(),
        (DimensionKind::Ip, Value::Ip(a)) => ip_lookup(dim, a),
        (DimensionKind::Bool, Value::Bool(b)) => {
            exact(dim, &b.to_string()).unwrap_or(&dim.default).clone()
        }
        (DimensionKind::Enum, Value::Str(s)) => exact(dim, s).unwrap_or(&dim.default).clone(),
        (DimensionKind::Caps, Value::Caps(have)) => caps_lookup(dim, have),
        _ => lookup_none(dim),
    }
}

/// [`lookup_value`] without copying the set, for the lookups that return
/// one entry's set as it is (`None`: use [`lookup_value`]). A set can hold
/// most terms that test the dimension, so a copy per event would cost time
/// in the number of rules.
fn lookup_borrowed<'d>(dim: &'d Dimension, value: &Value) -> Option<&'d TermSet> {
    match (dim.kind, value) {
        (DimensionKind::Int, Value::Int(n)) => Some(range_entry(dim, *n)),
        (DimensionKind::Int, Value::Unset) => Some(range_entry(dim, UNSET_ID)),
        (DimensionKind::Path | DimensionKind::String, Value::Str(s))
            if dim.suffix_default.is_none() =>
        {
            // As `string_lookup` without suffixes.
            if dim.kind != DimensionKind::Path || s.len() <= MAX_PATH_LITERAL_LEN {
                if let Some(set) = exact(dim, s) {
                    return Some(set);
                }
            }
            Some(lookup(dim, s))
        }
        _ => None,
    }
}

fn exact<'d>(dim: &'d Dimension, key: &str) -> Option<&'d TermSet> {
    dim.exact
        .binary_search_by(|e| e.value.as_str().cmp(key))
        .ok()
        .map(|i| &dim.exact[i].terms)
}

/// Exact hash (for paths only keys of at most [`MAX_PATH_LITERAL_LEN`] bytes
/// exist); else the longest prefix's set (or `default`) AND, when the
/// dimension tests suffixes, the longest suffix's set (or `suffix_default`;
/// in the kernel an LPM trie over the reversed bytes).
fn string_lookup(dim: &Dimension, value: &str) -> TermSet {
    if dim.kind != DimensionKind::Path || value.len() <= MAX_PATH_LITERAL_LEN {
        if let Some(set) = exact(dim, value) {
            return set.clone();
        }
    }
    let prefix = lookup(dim, value).clone();
    match &dim.suffix_default {
        None => prefix,
        Some(default) => {
            let suffix = longest_affix(&dim.suffix, value.as_bytes(), false)
                .map(|e| &e.terms)
                .unwrap_or(default);
            crate::lower::intersect(&prefix, suffix)
        }
    }
}

/// The prefix side of a path or string lookup, as in the kernel: exact hash
/// (only keys of at most [`MAX_PATH_LITERAL_LEN`] bytes exist), then longest
/// prefix, then default. Suffix entries are not consulted.
pub fn lookup<'d>(dim: &'d Dimension, value: &str) -> &'d TermSet {
    if value.len() <= MAX_PATH_LITERAL_LEN {
        if let Ok(i) = dim.exact.binary_search_by(|e| e.value.as_str().cmp(value)) {
            return &dim.exact[i].terms;
        }
    }
    longest_affix(&dim.prefix, value.as_bytes(), true)
        .map(|e| &e.terms)
        .unwrap_or(&dim.default)
}

/// The interval holding `n` (in the kernel: one LPM lookup of the big-endian
/// key, see [`crate::lower::range_prefixes`]), else `default`.
fn range_lookup(dim: &Dimension, n: u64) -> TermSet {
    range_entry(dim, n).clone()
}

fn range_entry(dim: &Dimension, n: u64) -> &TermSet {
    let i = dim.ranges.partition_point(|r| r.hi < n);
    match dim.ranges.get(i) {
        Some(r) if r.lo <= n => &r.terms,
        _ => &dim.default,
    }
}

/// The longest block holding the address, else `default`.
fn ip_lookup(dim: &Dimension, a: &IpAddr) -> TermSet {
    dim.prefix
        .iter()
        .filter_map(|e| {
            e.value
                .parse::<IpNet>()
                .ok()
                .filter(|n| n.contains(a))
                .map(|n| (n.prefix_len(), &e.terms))
        })
        .max_by_key(|(len, _)| *len)
        .map(|(_, t)| t.clone())
        .unwrap_or_else(|| dim.default.clone())
}

/// AND over the masks of `held` (the value has every capability of the mask)
/// or `lacking`.
fn caps_lookup(dim: &Dimension, have: &BTreeSet<String>) -> TermSet {
    let mut set: Option<TermSet> = None;
    for m in &dim.masks {
        let side = if m.caps.iter().all(|c| have.contains(c)) {
            &m.held
        } else {
            &m.lacking
        };
        set = Some(match set {
            None => side.clone(),
            Some(s) => crate::lower::intersect(&s, side),
        });
    }
    set.unwrap_or_else(|| dim.default.clone())
}

/// A relation feature: computed from the two fields (numbers compare as
/// numbers; other values, names and `unset` included, only by `==`); a
/// missing field gives `default`.
fn relation_lookup(
    dim: &Dimension,
    left: Option<&Value>,
    right: Option<&Value>,
    op: &str,
) -> TermSet {
    let (Some(a), Some(b)) = (left, right) else {
        return dim.default.clone();
    };
    let holds = match (a, b) {
        (Value::Int(a), Value::Int(b)) => match op {
            "==" => a == b,
            "<" => a < b,
            _ => a <= b,
        },
        (a, b) => op == "==" && a == b,
    };
    exact(dim, if holds { "true" } else { "false" })
        .unwrap_or(&dim.default)
        .clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every string over {a, b, /} up to `len` bytes.
    fn strings(len: u32) -> Vec<String> {
        (0..=len)
            .flat_map(|l| {
                (0..3usize.pow(l)).map(move |n| {
                    (0..l)
                        .map(|i| ["a", "b", "/"][(n / 3usize.pow(i)) % 3])
                        .collect()
                })
            })
            .collect()
    }

    #[test]
    fn longest_affix_agrees_with_a_scan() {
        let all = strings(4);
        // Entry sets past the scan threshold, deterministic subsets.
        for step in [1, 2, 3] {
            let mut values: Vec<String> = all.iter().step_by(step).cloned().collect();
            values.sort();
            let entries: Vec<Entry> = values
                .into_iter()
                .map(|value| Entry {
                    value,
                    terms: Vec::new(),
                })
                .collect();
            assert!(entries.len() > 32);
            for v in strings(5) {
                for prefix in [true, false] {
                    let scan = entries
                        .iter()
                        .filter(|e| {
                            if prefix {
                                v.starts_with(&e.value)
                            } else {
                                v.ends_with(&e.value)
                            }
                        })
                        .max_by_key(|e| e.value.len());
                    let got = longest_affix(&entries, v.as_bytes(), prefix);
                    assert_eq!(
                        got.map(|e| &e.value),
                        scan.map(|e| &e.value),
                        "{v} {prefix}"
                    );
                }
            }
        }
    }

    #[test]
    fn untested_terms_are_the_gaps_of_tested() {
        let mut rng = 0x9e37_79b9_7f4a_7c15u64;
        for n in [0u32, 1, 2, 5, 64, 200] {
            for _ in 0..50 {
                let tested: Vec<u32> = (0..n)
                    .filter(|_| {
                        rng ^= rng << 13;
                        rng ^= rng >> 7;
                        rng ^= rng << 17;
                        !rng.is_multiple_of(3)
                    })
                    .collect();
                let mut got = Vec::new();
                push_untested(&tested, n, &mut got);
                let want: Vec<u32> = (0..n).filter(|t| !tested.contains(t)).collect();
                assert_eq!(got, want, "{n} {tested:?}");
            }
        }
    }
}
