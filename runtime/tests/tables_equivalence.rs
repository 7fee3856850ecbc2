//! The kernel tables mean what the bundle means: for random rule sets of
//! every field kind (the compiler's generators) and random events, the
//! kernel's classification over [`KernelTables`] (its Rust mirror,
//! `policy_runtime::classify`) matches exactly the terms the bundle
//! evaluator matches, and the decision named from them agrees with the
//! bundle evaluator's verdict, audited rules and counters; also when the
//! rules come as two bundles stacked as `--bundle-dir` loads them.
//!
//! Pure (no kernel): `tests/kernel_equivalence.rs` checks the kernel
//! against the same mirror on real events.

use std::collections::BTreeSet;

use policy_compiler::bundle::{PolicyBundle, Verdict};
use policy_compiler::eval::{eval_bundle, matched_terms};
use policy_compiler::lower::{Program, RuleRef, ScopeRef};
use policy_dsl::checked::{Cond, DefaultScope, Event, FieldKey, Member, Pred, Rule, Value};
use policy_dsl::schema::Field;
use policy_runtime::abi::MASK_WORDS;
use policy_runtime::classify::{classify, KernelValues};
use policy_runtime::decision::decide_terms;
use policy_runtime::k8s::{PodIndex, PodMeta};
use policy_runtime::merge::merge;
use policy_runtime::tables::{KernelTables, Names, TablesError};
use proptest::prelude::*;

#[path = "../../compiler/tests/strategies/mod.rs"]
mod strategies;
use strategies::*;

/// A node where no user or group name exists: names match no process, as
/// the bundle evaluator says of a number tested against a name.
struct NoNames;

impl Names for NoNames {
    fn uid(&self, _: &str) -> Option<u32> {
        None
    }
    fn gid(&self, _: &str) -> Option<u32> {
        None
    }
}

/// The cgroup of the event's pod: a process in a pod has a namespace (the
/// generators give no `k8s.pod`/`k8s.container` tests, so those values do
/// not matter); `None` for an event the kernel cannot have (labels without
/// a pod).
fn pod_of(event: &Event) -> Option<Option<PodMeta>> {
    let mut namespace = None;
    let mut labels = std::collections::BTreeMap::new();
    for (k, v) in &event.fields {
        match (k.field, v) {
            (Field::K8sNamespace, Value::Str(s)) => namespace = Some(s.clone()),
            (Field::K8sLabel, Value::Str(s)) => {
                labels.insert(k.key.clone().unwrap_or_default(), s.clone());
            }
            _ => {}
        }
    }
    match namespace {
        Some(namespace) => Some(Some(PodMeta {
            namespace,
            pod: "p".into(),
            container: "c".into(),
            labels,
            pod_uid: "u".into(),
        })),
        None if labels.is_empty() => Some(None),
        None => None,
    }
}

fn kernel_verdict(v: &str) -> Verdict {
    match v {
        "allow" => Verdict::Allow,
        "kill" => Verdict::Kill,
        _ => Verdict::Deny,
    }
}

fn check(
    rules: &[(usize, Rule)],
    scopes: &[(usize, DefaultScope)],
    monitor: [bool; 2],
    events: &[Event],
    split: bool,
    words: usize,
) -> Result<bool, TestCaseError> {
    let mut anchored = false;
    let program = program_of(rules, scopes, monitor);
    let Some(whole) = program_bundle(&program) else {
        return Ok(anchored);
    };
    // As one bundle, or as two (the rules of file 0, of file 1) stacked;
    // `ids` maps the merged rule ids back to the program's.
    let mut ids: Vec<u32> = Vec::new();
    let bundles: Vec<PolicyBundle> = if split {
        let mut out = Vec::new();
        for f in 0..2 {
            let rules: Vec<RuleRef> = program
                .rules
                .iter()
                .filter(|r| r.file == f)
                .cloned()
                .collect();
            let scopes: Vec<ScopeRef> = program
                .scopes
                .iter()
                .filter(|s| s.file == f)
                .cloned()
                .collect();
            if rules.is_empty() && scopes.is_empty() {
                continue;
            }
            let part = Program {
                rules: rules
                    .iter()
                    .enumerate()
                    .map(|(i, r)| RuleRef {
                        id: i as u32,
                        ..r.clone()
                    })
                    .collect(),
                scopes: scopes
                    .iter()
                    .enumerate()
                    .map(|(i, s)| ScopeRef {
                        id: i as u32,
                        ..s.clone()
                    })
                    .collect(),
                monitor: program.monitor.clone(),
            };
            let Some(b) = program_bundle(&part) else {
                return Ok(anchored);
            };
            ids.extend(rules.iter().map(|r| r.id));
            out.push(b);
        }
        out
    } else {
        ids.extend(0..program.rules.len() as u32);
        vec![whole.clone()]
    };
    let refs: Vec<&PolicyBundle> = bundles.iter().collect();
    let Ok(merged) = merge(&refs) else {
        return Ok(anchored);
    };
    for event in events {
        if event.fields.values().any(|v| matches!(v, Value::Name(_))) {
            continue; // the kernel sees ids
        }
        let Some(pod) = pod_of(event) else { continue };
        let mut pods = PodIndex::default();
        let cgroup = match pod {
            Some(meta) => {
                pods.insert(7, meta);
                7
            }
            None => 1,
        };
        let tables =
            match KernelTables::build_in(&merged.kernel_parts(&refs), &NoNames, &pods, words) {
                Ok(t) => t,
                // Too many terms that no anchor splits: refused, as `policyc
                // compile` refuses them (the whole-bundle layout check).
                Err(TablesError::Layout(_)) if words < MASK_WORDS => return Ok(anchored),
                // A relation between a k8s field and another field: refused
                // (`policyc compile` refuses it too).
                Err(e) => {
                    prop_assert!(e.to_string().contains("k8s"), "{e}");
                    return Ok(anchored);
                }
            };
        anchored |= tables.hooks.values().any(|h| h.nanchors > 0);
        let values = KernelValues::from_event(event, cgroup);
        let expected = eval_bundle(&whole, event);
        let Some(c) = classify(&tables, event.hook, &values) else {
            // No terms for the hook: nothing matches, the default verdict.
            prop_assert!(expected.matched.is_empty() && expected.scopes.is_empty());
            prop_assert_eq!(expected.verdict, Verdict::Allow);
            continue;
        };
        let terms = tables.bits.terms(event.hook, &c.matched, &c.groups);
        if !split {
            let want: BTreeSet<u32> = matched_terms(&whole.spec.hooks[&event.hook], event);
            let got: BTreeSet<u32> = terms.iter().copied().collect();
            prop_assert_eq!(&got, &want, "terms of {:?}", event);
        }
        let table = &merged.hooks[&event.hook];
        let d = decide_terms(event.hook, table, &merged.rules, &merged.scopes, terms);
        let v = kernel_verdict(d.verdict);
        let expected_v = match (expected.verdict, event.hook) {
            // A deny on a tracepoint hook is enforced as a kill.
            (Verdict::Deny, h)
                if !matches!(
                    h,
                    policy_compiler::bundle::Hook::Connect | policy_compiler::bundle::Hook::Bind
                ) =>
            {
                Verdict::Kill
            }
            (
                Verdict::Kill,
                policy_compiler::bundle::Hook::Connect | policy_compiler::bundle::Hook::Bind,
            ) => Verdict::Deny,
            (v, _) => v,
        };
        prop_assert_eq!(v, expected_v, "verdict of {:?}", event);
        let mut matched: Vec<u32> = d.matched.iter().map(|r| ids[r.id as usize]).collect();
        matched.sort_unstable();
        prop_assert_eq!(
            matched,
            expected.matched.clone(),
            "matched rules of {:?}",
            event
        );
        let mut counters: Vec<String> = d.counters.iter().map(|c| c.to_string()).collect();
        counters.sort();
        prop_assert_eq!(
            counters,
            expected.counters.clone(),
            "counters of {:?}",
            event
        );
        prop_assert_eq!(d.audit, !expected.audit.is_empty(), "audit of {:?}", event);
    }
    Ok(anchored)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3_000, max_shrink_iters: 2_000, ..ProptestConfig::default() })]

    #[test]
    fn kernel_tables_agree_with_the_bundle_evaluator(
        rules in proptest::collection::vec(multi_rule(), 1..6),
        scopes in proptest::collection::vec(multi_scope(), 0..2),
        monitor in any::<[bool; 2]>(),
        events in proptest::collection::vec(multi_event(), 1..8),
        split in any::<bool>(),
    ) {
        check(&rules, &scopes, monitor, &events, split, MASK_WORDS)?;
    }
}

/// `cond` with every glob replaced by a prefix test (among ~170 rules
/// some glob would be one the tables cannot run, refusing the program),
/// and relations with `k8s.*` fields by a plain test.
fn runnable(cond: &Cond) -> Cond {
    match cond {
        Cond::And(cs) => Cond::And(cs.iter().map(runnable).collect()),
        Cond::Or(cs) => Cond::Or(cs.iter().map(runnable).collect()),
        Cond::Not(c) => Cond::Not(Box::new(runnable(c))),
        Cond::Test(t) if matches!(t.pred, Pred::Glob(_)) => {
            test(t.field.clone(), Pred::StartsWith("/a".into()))
        }
        // The kernel refuses relations with `k8s.*` fields (so does
        // `policyc compile`): one among ~170 rules would refuse the case.
        Cond::Test(t)
            if matches!(&t.pred, Pred::Relation(_, other)
                if other.field.as_str().starts_with("k8s.") || t.field.field.as_str().starts_with("k8s.")) =>
        {
            test(
                FieldKey::plain(Field::ProcessName),
                Pred::StartsWith("a".into()),
            )
        }
        c => c.clone(),
    }
}

/// A generated event with numbers for user names (the kernel sees ids).
fn id_event() -> impl Strategy<Value = Event> {
    multi_event().prop_map(|mut e| {
        for v in e.fields.values_mut() {
            if matches!(v, Value::Name(_)) {
                *v = Value::Int(1000);
            }
        }
        e
    })
}

/// A rule whose condition mostly also tests `process.binary` with exact
/// values (`==`, `in`) or a prefix (`startswith`, some excepting a path):
/// the kinds of term exact and prefix anchors split into groups. The
/// paths nest (`/`, `/a`, `/a/`, `/a/b` …), so prefix keys lie under
/// others.
fn anchorable_rule() -> impl Strategy<Value = (usize, Rule)> {
    let binary = FieldKey::plain(Field::ProcessBinary);
    let (b2, b3, b4) = (binary.clone(), binary.clone(), binary.clone());
    let exact = prop_oneof![
        3 => pick(PATHS).prop_map(move |p| test(binary.clone(), Pred::Eq(s(p)))),
        3 => proptest::collection::btree_set(pick(PATHS), 1..3).prop_map(move |set| {
            test(
                b2.clone(),
                Pred::In(set.into_iter().map(|p| Member::Value(s(p))).collect()),
            )
        }),
        1 => pick(PATHS).prop_map(move |p| test(b3.clone(), Pred::StartsWith(p.to_string()))),
        1 => (pick(PATHS), pick(PATHS)).prop_map(move |(p, q)| {
            Cond::And(vec![
                test(b4.clone(), Pred::StartsWith(p.to_string())),
                Cond::Not(Box::new(test(b4.clone(), Pred::Eq(s(q))))),
            ])
        }),
    ];
    (multi_rule(), proptest::option::weighted(0.9, exact)).prop_map(|((file, mut rule), exact)| {
        rule.condition = runnable(&rule.condition);
        if let Some(e) = exact {
            rule.condition = Cond::And(vec![e, rule.condition]);
        }
        (file, rule)
    })
}

/// `cond` with user and group names replaced by the id 1000: a dimension
/// with names resolves on the node and is never an anchor.
fn ids_for_names(cond: &Cond) -> Cond {
    let id = |v: &Value| match v {
        Value::Name(_) => Value::Int(1000),
        v => v.clone(),
    };
    match cond {
        Cond::And(cs) => Cond::And(cs.iter().map(ids_for_names).collect()),
        Cond::Or(cs) => Cond::Or(cs.iter().map(ids_for_names).collect()),
        Cond::Not(c) => Cond::Not(Box::new(ids_for_names(c))),
        Cond::Test(t) => {
            let pred = match &t.pred {
                Pred::Eq(v) => Pred::Eq(id(v)),
                Pred::In(set) => Pred::In(
                    set.iter()
                        .map(|m| match m {
                            Member::Value(v) => Member::Value(id(v)),
                            m => m.clone(),
                        })
                        .collect(),
                ),
                p => p.clone(),
            };
            test(t.field.clone(), pred)
        }
        c => c.clone(),
    }
}

/// A rule whose condition mostly also tests `user.uid` with a range (most
/// far from the events' uids, some around them) or one uid: range anchors.
fn range_rule() -> impl Strategy<Value = (usize, Rule)> {
    let uid = FieldKey::plain(Field::UserUid);
    let (u2, u3) = (uid.clone(), uid.clone());
    let range = prop_oneof![
        // Mostly narrow ranges far from the events' uids (distinct keys) …
        3 => (0u64..200_000, 0u64..6).prop_map(move |(lo, w)| {
            test(uid.clone(), Pred::In([Member::Range(lo, lo + w)].into_iter().collect()))
        }),
        // … some around them, and single uids.
        1 => (pick(EVENT_IDS), 0u64..3).prop_map(move |(id, w)| {
            // Ids stop at 4294967294 (4294967295 is `unset`).
            let r = Member::Range(id.saturating_sub(w), (id + w).min(4_294_967_294));
            test(u2.clone(), Pred::In([r].into_iter().collect()))
        }),
        1 => pick(EVENT_IDS).prop_map(move |n| test(u3.clone(), Pred::Eq(Value::Int(n)))),
    ];
    (multi_rule(), proptest::option::weighted(0.9, range)).prop_map(|((file, mut rule), r)| {
        rule.condition = ids_for_names(&runnable(&rule.condition));
        if let Some(r) = r {
            rule.condition = Cond::And(vec![r, rule.condition]);
        }
        (file, rule)
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 40, max_shrink_iters: 200, ..ProptestConfig::default() })]

    /// Past the words given, the tables anchor terms on `process.binary`
    /// (exact or prefix anchors, or both) and split them into groups (the
    /// layout the kernel uses past 4096 terms, here past 192): still
    /// exactly the bundle evaluator's terms, verdicts, rules and counters.
    #[test]
    fn anchored_tables_agree_with_the_bundle_evaluator(
        rules in proptest::collection::vec(anchorable_rule(), 140..200),
        scopes in proptest::collection::vec(multi_scope(), 0..2),
        monitor in any::<[bool; 2]>(),
        events in proptest::collection::vec(id_event(), 1..12),
        split in any::<bool>(),
    ) {
        // Cases the tables did not anchor (too few terms, or too many
        // unanchored ones) are rejected: too many rejections fail the test.
        prop_assume!(check(&rules, &scopes, monitor, &events, split, 3)?);
    }

    /// The same with `user.uid` ranges as the likely anchor.
    #[test]
    fn range_anchored_tables_agree_with_the_bundle_evaluator(
        rules in proptest::collection::vec(range_rule(), 140..200),
        scopes in proptest::collection::vec(multi_scope(), 0..2),
        monitor in any::<[bool; 2]>(),
        events in proptest::collection::vec(id_event(), 1..12),
        split in any::<bool>(),
    ) {
        prop_assume!(check(&rules, &scopes, monitor, &events, split, 3)?);
    }
}
