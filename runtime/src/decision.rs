//! Naming the outcome of an event from its matched term mask.
//!
//! The kernel decides (and kills or refuses) on the masks alone; this module
//! repeats the same rule in user space to name the verdict, the deciding
//! rule and the accounting of the exported event (as `policy_compiler::eval`
//! does over a bundle):
//! - over the terms of enforced (not `mode = monitor`) rules: a matched
//!   `kill` → kill; else a matched `deny` → deny; else a matched `allow` →
//!   allow; else a matched `default deny` scope → deny; else allow. A deny
//!   is enforced as a `SIGKILL` on the tracepoint hooks (exported `kill`)
//!   and as `EPERM` on connect and bind (exported `deny`, as a kill is);
//! - the same over every term is the would-be verdict; a matched
//!   `deny`/`kill` rule of a monitor policy is audited ("would deny");
//! - `audit` when a matched term audits or would deny;
//! - the deciding rule is the lowest rule id among matched enforced
//!   deny/kill terms, else among would-deny terms, else among audit terms;
//!   a verdict that a scope decides names the scope instead;
//! - the severity is the highest among the matched rules that audit, else
//!   the deciding rule's;
//! - counters: every `count "name"` of a matched rule.
//!
//! One event gives one exported line, whatever the number of rules it
//! matched: the line lists them all (`matched`) and names the deciding one.

use policy_compiler::bundle::{
    mask_terms, Hook, HookTable, RuleEntry, ScopeEntry, Severity, TermSet,
};

use crate::abi::Mask;

/// What an event's matched mask means under a bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision<'a> {
    /// `"allow"`, `"deny"` (connect, bind: refused with EPERM) or `"kill"`
    /// (the tracepoint hooks enforce a deny with `SIGKILL`).
    pub verdict: &'static str,
    /// The verdict if monitor policies were enforced.
    pub would_verdict: &'static str,
    /// Whether a matched term audits (or would deny).
    pub audit: bool,
    /// The deciding rule (see the module docs); `None` when nothing that
    /// denies or audits matched, or a scope decided.
    pub rule: Option<&'a RuleEntry>,
    /// The `default deny` scope that decided a deny, if one did.
    pub scope: Option<&'a ScopeEntry>,
    /// Every matched rule, by ascending id, without duplicates.
    pub matched: Vec<&'a RuleEntry>,
    /// Matched deny/kill rules of monitor policies (not enforced).
    pub would_deny: Vec<&'a RuleEntry>,
    /// The highest severity among matched rules that audit, else the
    /// deciding rule's; `None` without a deciding rule.
    pub severity: Option<Severity>,
    /// Counters incremented (`count "name"`), sorted.
    pub counters: Vec<&'a str>,
}

fn intersects(matched: &TermSet, set: &TermSet) -> Vec<u32> {
    matched
        .iter()
        .copied()
        .filter(|t| set.binary_search(t).is_ok())
        .collect()
}

fn verdict_name(hook: Hook, kill: bool, deny: bool) -> &'static str {
    match (kill || deny, hook) {
        (false, _) => "allow",
        (true, Hook::Connect | Hook::Bind) => "deny",
        (true, _) => "kill",
    }
}

/// Decide `matched` (kernel mask words) of an event of `hook` under the
/// hook's (merged) `table`, with the `rules` and `scopes` its terms name.
/// Terms unknown to `table` are ignored.
pub fn decide<'a>(
    hook: Hook,
    table: &'a HookTable,
    rules: &'a [RuleEntry],
    scopes: &'a [ScopeEntry],
    matched: &Mask,
) -> Decision<'a> {
    decide_terms(hook, table, rules, scopes, mask_terms(matched))
}

/// [`decide`] for the merged term ids an event matched (see
/// [`crate::tables::EventBits::terms`]), ascending.
pub fn decide_terms<'a>(
    hook: Hook,
    table: &'a HookTable,
    rules: &'a [RuleEntry],
    scopes: &'a [ScopeEntry],
    terms: TermSet,
) -> Decision<'a> {
    let terms: TermSet = terms
        .into_iter()
        .filter(|&t| (t as usize) < table.terms.len())
        .collect();
    let v = &table.verdicts;
    let is = |set: &TermSet, t: u32| set.binary_search(&t).is_ok();
    let term = |t: u32| &table.terms[t as usize];
    let (scope_terms, rule_terms): (Vec<u32>, Vec<u32>) =
        terms.iter().partition(|&&t| term(t).scope);
    let enforced = |t: &u32| !is(&v.monitor, *t);
    let any = |ts: &[u32], set: &TermSet, only_enforced: bool| {
        ts.iter()
            .any(|t| is(set, *t) && (!only_enforced || enforced(t)))
    };
    let decide_with = |only_enforced: bool| {
        let kill = any(&rule_terms, &v.kill, only_enforced);
        let deny = any(&rule_terms, &v.deny, only_enforced);
        let allow = any(&rule_terms, &v.allow, only_enforced);
        let scope = scope_terms.iter().any(|t| !only_enforced || enforced(t));
        (kill, deny || (!allow && scope && !kill))
    };
    let (kill, deny) = decide_with(true);
    let (would_kill, would_denied) = decide_with(false);

    let rule_of = |t: &u32| term(*t).rule;
    let lowest = |ts: Vec<u32>| ts.iter().map(rule_of).min();
    let deny_kill: Vec<u32> = rule_terms
        .iter()
        .copied()
        .filter(|t| (is(&v.deny, *t) || is(&v.kill, *t)) && enforced(t))
        .collect();
    let would: Vec<u32> = rule_terms
        .iter()
        .copied()
        .filter(|t| (is(&v.deny, *t) || is(&v.kill, *t)) && !enforced(t))
        .collect();
    let audit_terms = intersects(&rule_terms, &v.audit);
    let get = |id: u32| rules.get(id as usize);
    let deciding = lowest(deny_kill.clone())
        .or_else(|| lowest(would.clone()))
        .or_else(|| lowest(audit_terms.clone()));
    let rule = deciding.and_then(get);
    let scope = if deny && deny_kill.is_empty() {
        scope_terms
            .iter()
            .filter(|t| enforced(t))
            .map(rule_of)
            .min()
            .and_then(|id| scopes.get(id as usize))
    } else {
        None
    };
    let mut rule_ids: Vec<u32> = rule_terms.iter().map(rule_of).collect();
    rule_ids.sort_unstable();
    rule_ids.dedup();
    let mut would_ids: Vec<u32> = would.iter().map(rule_of).collect();
    would_ids.sort_unstable();
    would_ids.dedup();
    let severity = audit_terms
        .iter()
        .chain(&would)
        .filter_map(|t| get(rule_of(t)))
        .map(|r| r.severity)
        .max()
        .or_else(|| rule.map(|r| r.severity));
    let counters = v
        .count
        .iter()
        .filter(|(_, set)| terms.iter().any(|t| is(set, *t)))
        .map(|(name, _)| name.as_str())
        .collect();
    Decision {
        verdict: verdict_name(hook, kill, deny),
        would_verdict: verdict_name(hook, would_kill, would_denied),
        audit: !audit_terms.is_empty() || !would.is_empty(),
        rule,
        scope,
        matched: rule_ids.into_iter().filter_map(get).collect(),
        would_deny: would_ids.into_iter().filter_map(get).collect(),
        severity,
        counters,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::BTreeMap;

    use policy_compiler::bundle::{mask_words, SourceLocation, Term, Verdict, VerdictMasks};

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
        let d = decide(Hook::Exec, &t, &r, &[], &mask_words(&vec![0]));
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
        let d = decide(Hook::Exec, &t, &r, &[], &mask_words(&vec![0, 2, 3]));
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
        let d = decide(Hook::Exec, &t, &r, &[], &mask_words(&vec![0, 1, 3]));
        assert_eq!(d.rule.unwrap().name, "deny_victim");
        assert_eq!(d.severity, Some(Severity::Critical));
        let d = decide(Hook::Exec, &t, &r, &[], &mask_words(&vec![1, 3]));
        assert_eq!(d.severity, Some(Severity::Low));
        // A deciding rule that does not audit gives its own severity.
        let mut t2 = t.clone();
        t2.verdicts.audit = vec![0];
        r[1].severity = Severity::Medium;
        let d = decide(Hook::Exec, &t2, &r, &[], &mask_words(&vec![1, 3]));
        assert_eq!((d.audit, d.severity), (false, Some(Severity::Medium)));
        let d = decide(Hook::Exec, &t2, &r, &[], &mask_words(&vec![0, 1]));
        assert_eq!(d.severity, Some(Severity::Critical));
    }

    #[test]
    fn allow_alone_has_no_deciding_rule() {
        let (t, r) = fixture();
        let d = decide(Hook::Exec, &t, &r, &[], &mask_words(&vec![3]));
        assert_eq!(
            (d.verdict, d.audit, d.rule, d.severity),
            ("allow", false, None, None)
        );
    }

    #[test]
    fn unknown_terms_are_ignored() {
        let (t, r) = fixture();
        let d = decide(Hook::Exec, &t, &r, &[], &mask_words(&vec![200]));
        assert_eq!(d.counters, Vec::<&str>::new());
        assert_eq!(
            (d.verdict, d.audit, d.rule, d.matched.len()),
            ("allow", false, None, 0)
        );
    }

    #[test]
    fn monitor_terms_would_deny_and_scopes_decide_when_nothing_allows() {
        let (mut t, r) = fixture();
        // Term 4: a scope (id 0); rule 1 (terms 1, 2) becomes monitor-only.
        t.terms.push(Term {
            id: 4,
            rule: 0,
            scope: true,
        });
        t.verdicts.default_deny = vec![4];
        t.verdicts.monitor = vec![1, 2];
        t.verdicts.count.insert("denied".into(), vec![1]);
        let scopes = vec![ScopeEntry {
            id: 0,
            name: "default_deny_exec_1".into(),
            policy: "p".into(),
            hook: Hook::Exec,
            source: SourceLocation {
                file: "p.policy".into(),
                line: 3,
                column: 1,
            },
        }];
        // The monitor deny does not enforce; the scope does (nothing allows).
        let d = decide(Hook::Exec, &t, &r, &scopes, &mask_words(&vec![1, 4]));
        assert_eq!((d.verdict, d.would_verdict), ("kill", "kill"));
        assert_eq!(d.scope.unwrap().name, "default_deny_exec_1");
        assert_eq!(d.rule.unwrap().name, "deny_victim");
        assert_eq!(d.would_deny.len(), 1);
        assert!(d.audit);
        assert_eq!(d.counters, ["denied"]);
        // An allow beats the scope; the would-be verdict still denies.
        let d = decide(Hook::Connect, &t, &r, &scopes, &mask_words(&vec![1, 3, 4]));
        assert_eq!((d.verdict, d.would_verdict), ("allow", "deny"));
        assert_eq!(d.scope, None);
        // A scope alone on connect is an EPERM.
        let d = decide(Hook::Connect, &t, &r, &scopes, &mask_words(&vec![4]));
        assert_eq!((d.verdict, d.rule, d.audit), ("deny", None, false));
        assert!(d.matched.is_empty());
    }
}
