//! Naming the outcome of an event from its matched term mask.
//!
//! The kernel decides (and kills) on the masks alone; this module repeats the
//! same rule in user space to name the verdict and the deciding rule for the
//! exported event:
//! - any matched `deny`/`kill` term → `kill` (on the tracepoint mechanism a
//!   deny is enforced by `SIGKILL` before the new image runs);
//! - else `allow` (an explicit allow or the default);
//! - `audit` when a matched term audits;
//! - the deciding rule is the lowest rule id among matched deny/kill terms,
//!   else among matched audit terms;
//! - the severity is the highest among the matched rules that audit (so an
//!   exec that a `low` deny rule kills and a `critical` audit rule records
//!   is `critical`), else the deciding rule's.
//!
//! One exec gives one event, whatever the number of rules it matched: the
//! event lists them all (`matched`) and names the deciding one (`rule`).

use policy_compiler::bundle::{mask_terms, HookTable, RuleEntry, Severity, TermSet};

use crate::abi::Mask;

/// What an event's matched mask means under a bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision<'a> {
    /// `"allow"` or `"kill"` (exec deny is enforced as a kill).
    pub verdict: &'static str,
    /// Whether a matched term audits.
    pub audit: bool,
    /// The deciding rule (see the module docs); `None` when nothing that
    /// denies or audits matched.
    pub rule: Option<&'a RuleEntry>,
    /// Every matched rule, by ascending id, without duplicates.
    pub matched: Vec<&'a RuleEntry>,
    /// The highest severity among matched rules that audit, else the
    /// deciding rule's; `None` without a deciding rule.
    pub severity: Option<Severity>,
}

fn intersects(matched: &TermSet, set: &TermSet) -> Vec<u32> {
    matched
        .iter()
        .copied()
        .filter(|t| set.binary_search(t).is_ok())
        .collect()
}

/// Decide `matched` (kernel mask words) under the hook `table` with the
/// bundle's `rules` table. Terms unknown to `table` are ignored.
pub fn decide<'a>(table: &HookTable, rules: &'a [RuleEntry], matched: &Mask) -> Decision<'a> {
    let terms: TermSet = mask_terms(matched)
        .into_iter()
        .filter(|&t| (t as usize) < table.terms.len())
        .collect();
    let rule_of = |t: &u32| table.terms[*t as usize].rule;
    let v = &table.verdicts;
    let mut deny_kill = intersects(&terms, &v.deny);
    deny_kill.extend(intersects(&terms, &v.kill));
    let audit_terms = intersects(&terms, &v.audit);

    let lowest_rule = |ts: &[u32]| ts.iter().map(rule_of).min();
    let deciding = lowest_rule(&deny_kill).or_else(|| lowest_rule(&audit_terms));

    let mut rule_ids: Vec<u32> = terms.iter().map(rule_of).collect();
    rule_ids.sort_unstable();
    rule_ids.dedup();
    let get = |id: u32| rules.get(id as usize);
    let rule = deciding.and_then(get);
    let severity = audit_terms
        .iter()
        .filter_map(|t| get(rule_of(t)))
        .map(|r| r.severity)
        .max()
        .or_else(|| rule.map(|r| r.severity));
    Decision {
        verdict: if deny_kill.is_empty() {
            "allow"
        } else {
            "kill"
        },
        audit: !audit_terms.is_empty(),
        rule,
        matched: rule_ids.into_iter().filter_map(get).collect(),
        severity,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::BTreeMap;

    use policy_compiler::bundle::{
        mask_words, Hook, Severity, SourceLocation, Term, Verdict, VerdictMasks,
    };

    use super::*;

    pub(crate) fn rule(id: u32, name: &str, verdict: Option<Verdict>, audit: bool) -> RuleEntry {
        RuleEntry {
            id,
            name: name.into(),
            policy: "p".into(),
            hook: Hook::Exec,
            verdict,
            audit,
            severity: Severity::Info,
            message: None,
            rate: None,
            source: SourceLocation {
                file: "p.policy".into(),
                line: 1,
                column: 1,
            },
        }
    }

    pub(crate) fn fixture() -> (HookTable, Vec<RuleEntry>) {
        // rule 0 audits (term 0), rule 1 denies and audits (terms 1, 2), rule 2 allows (term 3).
        let rules = vec![
            rule(0, "sudo_invoked", None, true),
            rule(1, "deny_victim", Some(Verdict::Deny), true),
            rule(2, "allow_tools", Some(Verdict::Allow), false),
        ];
        let table = HookTable {
            terms: vec![
                Term {
                    id: 0,
                    rule: 0,
                    scope: false,
                },
                Term {
                    id: 1,
                    rule: 1,
                    scope: false,
                },
                Term {
                    id: 2,
                    rule: 1,
                    scope: false,
                },
                Term {
                    id: 3,
                    rule: 2,
                    scope: false,
                },
            ],
            dimensions: BTreeMap::new(),
            verdicts: VerdictMasks {
                deny: vec![1, 2],
                kill: vec![],
                allow: vec![3],
                audit: vec![0, 1, 2],
                ..VerdictMasks::default()
            },
        };
        (table, rules)
    }

    #[test]
    fn audit_only() {
        let (t, r) = fixture();
        let d = decide(&t, &r, &mask_words(&vec![0]));
        assert_eq!(d.verdict, "allow");
        assert!(d.audit);
        assert_eq!(d.rule.unwrap().name, "sudo_invoked");
        assert_eq!(
            d.matched
                .iter()
                .map(|r| r.name.as_str())
                .collect::<Vec<_>>(),
            ["sudo_invoked"]
        );
    }

    #[test]
    fn deny_overrides_and_decides() {
        let (t, r) = fixture();
        let d = decide(&t, &r, &mask_words(&vec![0, 2, 3]));
        assert_eq!(d.verdict, "kill");
        assert!(d.audit);
        assert_eq!(d.rule.unwrap().name, "deny_victim");
        assert_eq!(
            d.matched
                .iter()
                .map(|r| r.name.as_str())
                .collect::<Vec<_>>(),
            ["sudo_invoked", "deny_victim", "allow_tools"]
        );
    }

    #[test]
    fn severity_is_the_highest_among_auditing_matches() {
        let (t, mut r) = fixture();
        r[0].severity = Severity::Critical; // audits
        r[1].severity = Severity::Low; // denies and audits: decides
        r[2].severity = Severity::High; // allows, does not audit: ignored
        let d = decide(&t, &r, &mask_words(&vec![0, 1, 3]));
        assert_eq!(d.rule.unwrap().name, "deny_victim");
        assert_eq!(d.severity, Some(Severity::Critical));
        let d = decide(&t, &r, &mask_words(&vec![1, 3]));
        assert_eq!(d.severity, Some(Severity::Low));
        // A deciding rule that does not audit gives its own severity.
        let mut t2 = t.clone();
        t2.verdicts.audit = vec![0];
        r[1].severity = Severity::Medium;
        let d = decide(&t2, &r, &mask_words(&vec![1, 3]));
        assert_eq!((d.audit, d.severity), (false, Some(Severity::Medium)));
        let d = decide(&t2, &r, &mask_words(&vec![0, 1]));
        assert_eq!(d.severity, Some(Severity::Critical));
    }

    #[test]
    fn allow_alone_has_no_deciding_rule() {
        let (t, r) = fixture();
        let d = decide(&t, &r, &mask_words(&vec![3]));
        assert_eq!(
            (d.verdict, d.audit, d.rule, d.severity),
            ("allow", false, None, None)
        );
    }

    #[test]
    fn unknown_terms_are_ignored() {
        let (t, r) = fixture();
        let d = decide(&t, &r, &mask_words(&vec![200]));
        assert_eq!(
            (d.verdict, d.audit, d.rule, d.matched.len()),
            ("allow", false, None, 0)
        );
    }
}
