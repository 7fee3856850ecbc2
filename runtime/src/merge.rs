//! Several bundles as one rule set (`policyd run --bundle-dir`; one bundle
//! is the case of one), pure: no kernel access.
//!
//! Per hook, bundle `i`'s terms take the bits after those of the bundles
//! before it (its *part*, see [`crate::tables::Part`]); its rules and
//! `default deny` scopes are renumbered likewise, and [`Merged::origin`] maps
//! a merged rule id back to `(bundle index, rule id in that bundle)`, so that
//! events name the rule's own bundle.
//!
//! The kernel tables keep each bundle's dimensions as they are (a part's
//! dimension constrains only the part's terms), so the matched terms of the
//! merged set are, part by part, each bundle's own matched terms, whatever
//! the dimension kinds; and as verdicts are decided over the matched set
//! (kill over deny over allow over default deny), the bundles combine by
//! deny-overrides. [`Merged::hooks`] holds, per hook, the merged term list
//! and verdict sets that name an event's outcome in user space.

use std::collections::BTreeMap;

use policy_compiler::bundle::{
    Hook, HookTable, PolicyBundle, RuleEntry, ScopeEntry, Term, TermSet, VerdictMasks,
};
use policy_compiler::limits::MAX_TERMS_PER_HOOK;

use crate::tables::Part;

/// Several bundles as one rule set.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Merged {
    /// Per hook with terms: the merged terms (rule and scope ids
    /// renumbered) and verdict sets; no dimensions (those stay per bundle,
    /// see [`Merged::parts`]).
    pub hooks: BTreeMap<Hook, HookTable>,
    /// Per hook: (bundle index, bit of its first term) of each bundle with
    /// terms for the hook.
    pub parts: BTreeMap<Hook, Vec<(usize, u32)>>,
    /// The merged rule table: each bundle's rules in order, ids renumbered.
    pub rules: Vec<RuleEntry>,
    /// The merged `default deny` scopes, ids renumbered.
    pub scopes: Vec<ScopeEntry>,
    /// For merged rule id `r`: (index of its bundle, its id in that bundle).
    pub origin: Vec<(usize, u32)>,
}

/// Why bundles cannot be merged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MergeError {
    /// Together they have more terms on a hook than the kernel masks hold.
    #[error("together the bundles need {total} `{hook}` terms, the kernel holds at most {max}: {}", .bundles.iter().map(|(n, t)| format!("{n} ({t} terms)")).collect::<Vec<_>>().join(", "))]
    TooManyTerms {
        /// The hook.
        hook: &'static str,
        /// Terms of all bundles.
        total: usize,
        /// [`MAX_TERMS_PER_HOOK`].
        max: usize,
        /// Each bundle's name and term count on the hook.
        bundles: Vec<(String, usize)>,
    },
}

/// Merge the rules, scopes and hook tables of `bundles` (in this order).
///
/// # Errors
/// [`MergeError::TooManyTerms`] when a hook's terms exceed [`MAX_TERMS_PER_HOOK`].
pub fn merge(bundles: &[&PolicyBundle]) -> Result<Merged, MergeError> {
    let mut m = Merged::default();
    let mut rule_offsets = Vec::with_capacity(bundles.len());
    let mut scope_offsets = Vec::with_capacity(bundles.len());
    for (i, b) in bundles.iter().enumerate() {
        rule_offsets.push(m.rules.len() as u32);
        scope_offsets.push(m.scopes.len() as u32);
        for r in &b.spec.rules {
            let mut r = r.clone();
            m.origin.push((i, r.id));
            r.id = m.rules.len() as u32;
            m.rules.push(r);
        }
        for s in &b.spec.scopes {
            let mut s = s.clone();
            s.id = m.scopes.len() as u32;
            m.scopes.push(s);
        }
    }
    let hooks: std::collections::BTreeSet<Hook> = bundles
        .iter()
        .flat_map(|b| b.spec.hooks.keys().copied())
        .collect();
    for hook in hooks {
        let tables: Vec<(usize, &HookTable)> = bundles
            .iter()
            .enumerate()
            .filter_map(|(i, b)| b.spec.hooks.get(&hook).map(|t| (i, t)))
            .filter(|(_, t)| !t.terms.is_empty())
            .collect();
        let total: usize = tables.iter().map(|(_, t)| t.terms.len()).sum();
        if total > MAX_TERMS_PER_HOOK {
            return Err(MergeError::TooManyTerms {
                hook: hook.as_str(),
                total,
                max: MAX_TERMS_PER_HOOK,
                bundles: tables
                    .iter()
                    .map(|(i, t)| (bundles[*i].metadata.name.clone(), t.terms.len()))
                    .collect(),
            });
        }
        if total == 0 {
            continue;
        }
        let mut merged = HookTable::default();
        let mut parts = Vec::new();
        for (i, t) in tables {
            let off = merged.terms.len() as u32;
            parts.push((i, off));
            for term in &t.terms {
                merged.terms.push(Term {
                    id: off + term.id,
                    rule: term.rule
                        + if term.scope {
                            scope_offsets[i]
                        } else {
                            rule_offsets[i]
                        },
                    scope: term.scope,
                });
            }
            let v = &mut merged.verdicts;
            fn shift(set: &TermSet, off: u32) -> impl Iterator<Item = u32> + '_ {
                set.iter().map(move |t| t + off)
            }
            v.deny.extend(shift(&t.verdicts.deny, off));
            v.kill.extend(shift(&t.verdicts.kill, off));
            v.allow.extend(shift(&t.verdicts.allow, off));
            v.audit.extend(shift(&t.verdicts.audit, off));
            v.default_deny.extend(shift(&t.verdicts.default_deny, off));
            v.monitor.extend(shift(&t.verdicts.monitor, off));
            for (name, set) in &t.verdicts.count {
                v.count
                    .entry(name.clone())
                    .or_default()
                    .extend(shift(set, off));
            }
        }
        // Parts are appended in order, so every set is still sorted.
        debug_assert!(is_sorted(&merged.verdicts));
        m.hooks.insert(hook, merged);
        m.parts.insert(hook, parts);
    }
    Ok(m)
}

fn is_sorted(v: &VerdictMasks) -> bool {
    [
        &v.deny,
        &v.kill,
        &v.allow,
        &v.audit,
        &v.default_deny,
        &v.monitor,
    ]
    .into_iter()
    .chain(v.count.values())
    .all(|s| s.windows(2).all(|w| w[0] < w[1]))
}

impl Merged {
    /// The kernel tables' input: per hook, each bundle's table and offset.
    pub fn kernel_parts<'b>(
        &self,
        bundles: &'b [&'b PolicyBundle],
    ) -> BTreeMap<Hook, Vec<Part<'b>>> {
        self.parts
            .iter()
            .map(|(hook, parts)| {
                (
                    *hook,
                    parts
                        .iter()
                        .map(|&(i, offset)| Part {
                            table: &bundles[i].spec.hooks[hook],
                            offset,
                        })
                        .collect(),
                )
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use policy_compiler::SourceFile;

    use super::*;

    fn compile(name: &str, rules: &[&str]) -> PolicyBundle {
        let text = format!("policy {name} {{}}\n{}\n", rules.join("\n"));
        let sources = [SourceFile {
            name: format!("{name}.policy"),
            text,
        }];
        policy_compiler::compile::compile_for_evaluation(&sources, name)
            .unwrap()
            .0
            .bundle
    }

    #[test]
    fn parts_follow_each_other_and_ids_are_renumbered() {
        let a = compile(
            "a",
            &[
                "rule a1 on exec { when process.binary == \"/a\" deny }",
                "rule a2 on connect { when net.dport == 22 audit }",
            ],
        );
        let b = compile(
            "b",
            &[
                "rule b1 on exec { when process.binary == \"/b\" or user.uid == 0 audit }",
                "default deny exec when process.binary startswith \"/tmp/\"",
            ],
        );
        let m = merge(&[&a, &b]).unwrap();
        assert_eq!(
            m.rules
                .iter()
                .map(|r| (r.id, r.name.as_str()))
                .collect::<Vec<_>>(),
            [(0, "a1"), (1, "a2"), (2, "b1")]
        );
        assert_eq!(m.origin, [(0, 0), (0, 1), (1, 0)]);
        assert_eq!(m.scopes.len(), 1);
        assert_eq!(m.parts[&Hook::Exec], [(0, 0), (1, 1)]);
        assert_eq!(m.parts[&Hook::Connect], [(0, 0)]);
        let exec = &m.hooks[&Hook::Exec];
        // a1: one term; b1: two terms (or), the scope: one term.
        assert_eq!(
            exec.terms
                .iter()
                .map(|t| (t.id, t.rule, t.scope))
                .collect::<Vec<_>>(),
            [(0, 0, false), (1, 2, false), (2, 2, false), (3, 0, true)]
        );
        assert_eq!(exec.verdicts.deny, [0]);
        assert_eq!(exec.verdicts.audit, [1, 2]);
        assert_eq!(exec.verdicts.default_deny, [3]);
        assert!(exec.dimensions.is_empty());
        let both = [&a, &b];
        let parts = m.kernel_parts(&both);
        assert_eq!(parts[&Hook::Exec][1].offset, 1);
        assert!(std::ptr::eq(
            parts[&Hook::Exec][1].table,
            &b.spec.hooks[&Hook::Exec]
        ));
    }

    #[test]
    fn too_many_terms_are_refused_naming_the_bundles() {
        // Half the limit and one term each (the check counts terms only:
        // compiling 2^19 rules would take minutes).
        let n = MAX_TERMS_PER_HOOK / 2 + 1;
        let big = |name: &str| {
            let mut b = compile(
                name,
                &["rule r on exec { when process.binary == \"/x\" audit }"],
            );
            let exec = b.spec.hooks.get_mut(&Hook::Exec).unwrap();
            exec.terms = vec![exec.terms[0].clone(); n];
            b
        };
        let (a, b) = (big("a"), big("b"));
        let err = merge(&[&a, &b]).unwrap_err();
        assert_eq!(
            err,
            MergeError::TooManyTerms {
                hook: "exec",
                total: 2 * n,
                max: MAX_TERMS_PER_HOOK,
                bundles: vec![("a".into(), n), ("b".into(), n)],
            }
        );
    }
}
