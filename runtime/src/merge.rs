//! Merging the exec tables of several bundles (`policyd run --bundle-dir`)
//! into one kernel table set (pure; no kernel access).
//!
//! Bundle `i`'s terms are renumbered by the number of terms of the bundles
//! before it, and its rules likewise; [`Merged::origin`] maps a merged rule
//! id back to `(bundle index, rule id in that bundle)`, so that events name
//! the rule's own bundle.
//!
//! Each dimension (today `process.binary`) is merged class by class. A
//! bundle's tables are complete per class: an exact entry's set is the
//! answer for that value, a prefix entry's set the answer for values whose
//! longest mentioned prefix it is (and that are no exact value), `default`
//! the answer for the rest. The merged dimension cuts the value space by
//! every value any bundle mentions:
//!
//! - merged exact values = the union of the bundles' exact values; a value's
//!   set = the union over bundles of that bundle's lookup of the value
//!   (its exact entry, else its longest prefix, else its default);
//! - merged prefixes = the union of the bundles' prefixes; a prefix `P`'s set
//!   = the union over bundles of that bundle's longest-prefix lookup of `P`
//!   *with its prefix table only* (a value reaching `P`'s entry in the merged
//!   trie is no exact value of any bundle, and every prefix of a bundle that
//!   it starts with is a prefix of `P`, since `P` is its longest);
//! - default = the union of the defaults.
//!
//! A bundle that does not test a dimension contributes all its terms to
//! every entry of it (its terms hold whatever the value). Verdict masks are
//! the union of the renumbered masks. So the merged lookup of any value is
//! the union of the bundles' lookups, and as verdicts are decided over the
//! matched set (kill over deny over allow), the bundles combine by
//! deny-overrides.

use std::collections::{BTreeMap, BTreeSet};

use policy_compiler::bundle::{
    Dimension, Entry, Hook, HookTable, PolicyBundle, RuleEntry, Term, TermSet, VerdictMasks,
};
use policy_compiler::limits::MAX_TERMS_PER_HOOK;

/// Several bundles as one exec table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Merged {
    /// The merged exec table (terms and rules renumbered).
    pub table: HookTable,
    /// The merged rule table: each bundle's rules in order, ids renumbered.
    pub rules: Vec<RuleEntry>,
    /// For merged rule id `r`: (index of its bundle, its id in that bundle).
    pub origin: Vec<(usize, u32)>,
}

/// Why bundles cannot be merged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MergeError {
    /// Together they have more exec terms than the kernel masks hold.
    #[error("together the bundles need {total} exec terms, the kernel holds at most {max}: {}", .bundles.iter().map(|(n, t)| format!("{n} ({t} terms)")).collect::<Vec<_>>().join(", "))]
    TooManyTerms {
        /// Terms of all bundles.
        total: usize,
        /// [`MAX_TERMS_PER_HOOK`].
        max: usize,
        /// Each bundle's name and exec term count.
        bundles: Vec<(String, usize)>,
    },
}

fn empty_table() -> HookTable {
    HookTable {
        terms: Vec::new(),
        dimensions: BTreeMap::new(),
        verdicts: VerdictMasks::default(),
    }
}

/// Merge the exec tables and rules of `bundles` (in this order).
///
/// # Errors
/// [`MergeError::TooManyTerms`] when the terms exceed [`MAX_TERMS_PER_HOOK`].
pub fn merge(bundles: &[&PolicyBundle]) -> Result<Merged, MergeError> {
    let empty = empty_table();
    let tables: Vec<&HookTable> = bundles
        .iter()
        .map(|b| b.spec.hooks.get(&Hook::Exec).unwrap_or(&empty))
        .collect();
    let total: usize = tables.iter().map(|t| t.terms.len()).sum();
    if total > MAX_TERMS_PER_HOOK {
        return Err(MergeError::TooManyTerms {
            total,
            max: MAX_TERMS_PER_HOOK,
            bundles: bundles
                .iter()
                .zip(&tables)
                .map(|(b, t)| (b.metadata.name.clone(), t.terms.len()))
                .collect(),
        });
    }
    let mut rule_offsets = Vec::with_capacity(bundles.len());
    let mut rules = Vec::new();
    let mut origin = Vec::new();
    for (i, b) in bundles.iter().enumerate() {
        rule_offsets.push(rules.len() as u32);
        for r in &b.spec.rules {
            let mut r = r.clone();
            origin.push((i, r.id));
            r.id = rules.len() as u32;
            rules.push(r);
        }
    }
    let table = merge_tables(&tables, &rule_offsets);
    Ok(Merged {
        table,
        rules,
        origin,
    })
}

/// Merge hook tables: table `i`'s term ids are offset by the terms of the
/// tables before it, and its terms' rule ids by `rule_offsets[i]`. The
/// caller checks the term count.
pub fn merge_tables(tables: &[&HookTable], rule_offsets: &[u32]) -> HookTable {
    let mut term_offsets = Vec::with_capacity(tables.len());
    let mut terms = Vec::new();
    for (i, t) in tables.iter().enumerate() {
        let off = terms.len() as u32;
        term_offsets.push(off);
        for term in &t.terms {
            terms.push(Term {
                id: off + term.id,
                rule: if term.scope {
                    term.rule
                } else {
                    term.rule + rule_offsets.get(i).copied().unwrap_or(0)
                },
                scope: term.scope,
            });
        }
    }
    let shift =
        |i: usize, set: &TermSet| set.iter().map(|t| t + term_offsets[i]).collect::<Vec<_>>();
    let union = |sets: Vec<Vec<u32>>| -> TermSet {
        sets.into_iter()
            .flatten()
            .collect::<BTreeSet<u32>>()
            .into_iter()
            .collect()
    };
    // All of table i's terms: its answer for a dimension it does not test.
    let all: Vec<TermSet> = tables
        .iter()
        .enumerate()
        .map(|(i, t)| shift(i, &t.terms.iter().map(|x| x.id).collect()))
        .collect();

    let names: BTreeSet<&String> = tables.iter().flat_map(|t| t.dimensions.keys()).collect();
    let mut dimensions = BTreeMap::new();
    for name in names {
        let dims: Vec<Option<&Dimension>> = tables.iter().map(|t| t.dimensions.get(name)).collect();
        let kind = dims
            .iter()
            .flatten()
            .next()
            .map(|d| d.kind)
            .unwrap_or_default();
        let exact_values: BTreeSet<&str> = dims
            .iter()
            .flatten()
            .flat_map(|d| d.exact.iter().map(|e| e.value.as_str()))
            .collect();
        let prefix_values: BTreeSet<&str> = dims
            .iter()
            .flatten()
            .flat_map(|d| d.prefix.iter().map(|e| e.value.as_str()))
            .collect();
        let per_bundle = |f: &dyn Fn(&Dimension) -> TermSet| -> TermSet {
            union(
                dims.iter()
                    .enumerate()
                    .map(|(i, d)| match d {
                        Some(d) => shift(i, &f(d)),
                        None => all[i].clone(),
                    })
                    .collect(),
            )
        };
        let exact = exact_values
            .iter()
            .map(|v| Entry {
                value: (*v).to_string(),
                terms: per_bundle(&|d| lookup(d, v).clone()),
            })
            .collect();
        let prefix = prefix_values
            .iter()
            .map(|p| Entry {
                value: (*p).to_string(),
                terms: per_bundle(&|d| prefix_lookup(d, p).clone()),
            })
            .collect();
        let default = per_bundle(&|d| d.default.clone());
        dimensions.insert(
            name.clone(),
            Dimension {
                kind,
                exact,
                prefix,
                default,
                ..Dimension::default()
            },
        );
    }
    let v = |f: &dyn Fn(&VerdictMasks) -> &TermSet| -> TermSet {
        union(
            tables
                .iter()
                .enumerate()
                .map(|(i, t)| shift(i, f(&t.verdicts)))
                .collect(),
        )
    };
    let mut count: BTreeMap<String, TermSet> = BTreeMap::new();
    for (i, t) in tables.iter().enumerate() {
        for (name, set) in &t.verdicts.count {
            let e = count.entry(name.clone()).or_default();
            let merged = union(vec![e.clone(), shift(i, set)]);
            *e = merged;
        }
    }
    HookTable {
        terms,
        dimensions,
        verdicts: VerdictMasks {
            deny: v(&|m| &m.deny),
            kill: v(&|m| &m.kill),
            allow: v(&|m| &m.allow),
            audit: v(&|m| &m.audit),
            default_deny: v(&|m| &m.default_deny),
            monitor: v(&|m| &m.monitor),
            count,
        },
    }
}

/// A bundle's lookup of a value: exact entry, else longest prefix, else
/// default (the kernel's and the evaluator's rule).
pub fn lookup<'d>(dim: &'d Dimension, value: &str) -> &'d TermSet {
    policy_compiler::eval::lookup(dim, value)
}

/// A bundle's longest-prefix lookup of `value` with its prefix table only
/// (its exact entries are not consulted), else its default.
pub fn prefix_lookup<'d>(dim: &'d Dimension, value: &str) -> &'d TermSet {
    dim.prefix
        .iter()
        .filter(|e| value.as_bytes().starts_with(e.value.as_bytes()))
        .max_by_key(|e| e.value.len())
        .map(|e| &e.terms)
        .unwrap_or(&dim.default)
}

#[cfg(test)]
mod tests {
    use policy_compiler::bundle::{mask_words, Verdict};
    use policy_compiler::SourceFile;
    use proptest::prelude::*;

    use super::*;

    fn compile(name: &str, rules: &[String]) -> PolicyBundle {
        let mut text = format!("policy {name} {{}}\n");
        for r in rules {
            text.push_str(r);
            text.push('\n');
        }
        policy_compiler::compile(
            &[SourceFile {
                name: format!("{name}.policy"),
                text,
            }],
            name,
        )
        .unwrap_or_else(|e| panic!("{e:?}"))
        .bundle
    }

    /// The matched terms of `table` for a binary (one dimension, or none).
    fn matched(table: &HookTable, value: &str) -> TermSet {
        match table.dimensions.get("process.binary") {
            Some(d) => lookup(d, value).clone(),
            None => table.terms.iter().map(|t| t.id).collect(),
        }
    }

    fn verdict(table: &HookTable, m: &TermSet) -> Option<Verdict> {
        let has = |set: &TermSet| m.iter().any(|t| set.binary_search(t).is_ok());
        let v = &table.verdicts;
        if has(&v.kill) {
            Some(Verdict::Kill)
        } else if has(&v.deny) {
            Some(Verdict::Deny)
        } else if has(&v.allow) {
            Some(Verdict::Allow)
        } else {
            None
        }
    }

    #[test]
    fn a_prefix_entry_excludes_the_other_bundles_exact_values() {
        let a = compile(
            "a",
            &[
                "rule tmp on exec { when process.binary startswith \"/tmp/\" audit }".into(),
                "rule x on exec { when process.binary == \"/tmp/x\" deny }".into(),
            ],
        );
        let b = compile(
            "b",
            &["rule y on exec { when process.binary startswith \"/tmp/y\" deny }".into()],
        );
        let m = merge(&[&a, &b]).unwrap();
        let d = &m.table.dimensions["process.binary"];
        let na = a.spec.hooks[&Hook::Exec].terms.len() as u32;
        // "/tmp/y" as a prefix: a's prefix table gives "/tmp/" (not a's exact).
        let tmp_a = prefix_lookup(
            &a.spec.hooks[&Hook::Exec].dimensions["process.binary"],
            "/tmp/",
        )
        .clone();
        let y = d.prefix.iter().find(|e| e.value == "/tmp/y").unwrap();
        let mut want = tmp_a.clone();
        want.push(na);
        assert_eq!(y.terms, want);
        // "/tmp/x" exact: a's exact set, b's default (empty).
        assert_eq!(
            lookup(d, "/tmp/x"),
            lookup(
                &a.spec.hooks[&Hook::Exec].dimensions["process.binary"],
                "/tmp/x"
            )
        );
        assert_eq!(m.origin, vec![(0, 0), (0, 1), (1, 0)]);
        assert_eq!(m.rules[2].id, 2);
        assert_eq!(m.table.terms[na as usize].rule, 2);
    }

    #[test]
    fn too_many_terms_are_refused_naming_the_bundles() {
        let mut t = empty_table();
        t.terms = (0..200)
            .map(|id| Term {
                id,
                rule: 0,
                scope: false,
            })
            .collect();
        let mut a = compile("a", &[]);
        a.spec.hooks.insert(Hook::Exec, t.clone());
        let mut b = compile("b", &[]);
        b.spec.hooks.insert(Hook::Exec, t);
        let err = merge(&[&a, &b]).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("400 exec terms") && msg.contains("a (200 terms), b (200 terms)"),
            "{msg}"
        );
    }

    fn path() -> impl Strategy<Value = String> {
        prop::collection::vec(prop::sample::select(vec!["a", "b", "ab", "c"]), 1..4)
            .prop_map(|parts| format!("/{}", parts.join("/")))
    }

    fn rule() -> impl Strategy<Value = (String, bool, u8, u8)> {
        (path(), any::<bool>(), 0u8..3, 0u8..3)
    }

    fn policy(name: &str, rules: &[(String, bool, u8, u8)]) -> PolicyBundle {
        let rules: Vec<String> = rules
            .iter()
            .enumerate()
            .map(|(i, (p, prefix, op, action))| {
                let test = if *prefix {
                    format!("process.binary startswith \"{p}\"")
                } else {
                    format!("process.binary == \"{p}\"")
                };
                let test = match op {
                    0 => test,
                    1 => format!("not {test}"),
                    _ => format!("{test} or process.binary == \"{p}/c\""),
                };
                let action = ["audit", "deny", "allow"][*action as usize];
                format!("rule r{i} on exec {{ when {test} {action} }}")
            })
            .collect();
        compile(name, &rules)
    }

    /// The merged tables as one bundle, for the evaluator.
    fn as_bundle(bundles: &[PolicyBundle], m: &Merged) -> PolicyBundle {
        let mut b = bundles[0].clone();
        b.spec.rules = m.rules.clone();
        b.spec.policies = bundles
            .iter()
            .flat_map(|b| b.spec.policies.clone())
            .collect();
        b.spec.hooks = [(Hook::Exec, m.table.clone())].into_iter().collect();
        b
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]
        #[test]
        fn merged_lookup_is_the_union_of_the_bundles_lookups(
            bundles in prop::collection::vec(prop::collection::vec(rule(), 0..4), 1..4),
            values in prop::collection::vec(prop_oneof![path(), path().prop_map(|p| format!("{p}/")), path().prop_map(|p| format!("{p}b"))], 1..12),
        ) {
            let compiled: Vec<PolicyBundle> = bundles
                .iter()
                .enumerate()
                .map(|(i, r)| policy(&format!("p{i}"), r))
                .collect();
            let refs: Vec<&PolicyBundle> = compiled.iter().collect();
            let m = merge(&refs).unwrap();
            let empty = empty_table();
            let mut values = values;
            // Every mentioned value too, and the empty extension of each.
            for b in &compiled {
                if let Some(d) = b.spec.hooks.get(&Hook::Exec).and_then(|t| t.dimensions.get("process.binary")) {
                    values.extend(d.exact.iter().chain(&d.prefix).map(|e| e.value.clone()));
                }
            }
            for v in &values {
                let mut want = BTreeSet::new();
                let mut want_verdict = None;
                let mut want_rules = BTreeSet::new();
                let mut off = 0u32;
                for (i, b) in compiled.iter().enumerate() {
                    let t = b.spec.hooks.get(&Hook::Exec).unwrap_or(&empty);
                    let got = matched(t, v);
                    want.extend(got.iter().map(|x| x + off));
                    want_verdict = want_verdict.max(verdict(t, &got));
                    want_rules.extend(got.iter().map(|x| (i, t.terms[*x as usize].rule)));
                    off += t.terms.len() as u32;
                }
                let got = matched(&m.table, v);
                prop_assert_eq!(&got, &want.into_iter().collect::<Vec<_>>(), "value {}", v);
                prop_assert_eq!(verdict(&m.table, &got), want_verdict, "value {}", v);
                let got_rules: BTreeSet<(usize, u32)> = got
                    .iter()
                    .map(|x| m.origin[m.table.terms[*x as usize].rule as usize])
                    .collect();
                prop_assert_eq!(got_rules, want_rules);
                let _ = mask_words(&got);
                // The evaluator agrees: deny-overrides across bundles.
                let event = policy_compiler::event_json::parse_event(
                    &serde_json::json!({"hook": "exec", "process.binary": v}).to_string(),
                ).unwrap();
                let each: Vec<_> = compiled.iter().map(|b| policy_compiler::eval::eval_bundle(b, &event)).collect();
                let whole = policy_compiler::eval::eval_bundle(&as_bundle(&compiled, &m), &event);
                prop_assert_eq!(whole.verdict, each.iter().map(|o| o.verdict).max().unwrap(), "value {}", v);
                let mut each_rules = BTreeSet::new();
                for (i, o) in each.iter().enumerate() {
                    each_rules.extend(o.matched.iter().map(|r| (i, *r)));
                }
                let whole_rules: BTreeSet<(usize, u32)> = whole.matched.iter().map(|r| m.origin[*r as usize]).collect();
                prop_assert_eq!(whole_rules, each_rules, "value {}", v);
            }
            prop_assert!(crate::tables::ExecTables::from_hook_table(&m.table).is_ok());
        }
    }
}
