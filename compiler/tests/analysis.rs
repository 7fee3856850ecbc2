//! The policy analysis (`compiler/src/overlap.rs`): every warning is true.
//!
//! - Existential findings carry a witness event; it must produce the claimed
//!   outcome under both reference evaluators, and survive the flat JSON form.
//! - Universal findings (unsatisfiable, matches every event, shadowed) must
//!   hold for every random event the kernel could report (every field of the
//!   hook supplied, except `k8s.*`).
//! - The documentation's examples, the shipped policies and the `policyc test`
//!   golden cases raise no analysis warning.
//!
//! `cargo test -p policy-compiler --test analysis -- --ignored` runs the
//! long version.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use policy_compiler::bundle::{PolicyBundle, Verdict};
use policy_compiler::compile::{analyze, analyze_for_evaluation, SourceFile};
use policy_compiler::eval::{eval_bundle, eval_program, Outcome};
use policy_compiler::event_json::parse_event;
use policy_compiler::lower::{lower_program, Program, RuleRef};
use policy_compiler::overlap::{event_json, findings, Finding, FindingKind};
use policy_dsl::ast::Action;
use policy_dsl::checked::{Cond, Event, FieldKey, Member, Pred, RelOp, Rule, Test, Value};
use policy_dsl::schema::{Field, Hook, Severity};
use proptest::prelude::*;

const ANALYSIS_CODES: &[&str] = &[
    "policyc::deny_allow_overlap",
    "policyc::shadowed_rule",
    "policyc::unsatisfiable_rule",
    "policyc::matches_every_event",
];

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn codes(text: &str) -> Vec<String> {
    let sources = [SourceFile {
        name: "t.policy".into(),
        text: text.into(),
    }];
    let (_, diagnostics) = analyze_for_evaluation(&sources);
    diagnostics
        .iter()
        .filter_map(|d| miette::Diagnostic::code(&d.diagnostic).map(|c| c.to_string()))
        .collect()
}

fn help(text: &str, code: &str) -> String {
    let sources = [SourceFile {
        name: "t.policy".into(),
        text: text.into(),
    }];
    let (_, diagnostics) = analyze_for_evaluation(&sources);
    diagnostics
        .iter()
        .find(|d| miette::Diagnostic::code(&d.diagnostic).is_some_and(|c| c.to_string() == code))
        .and_then(|d| miette::Diagnostic::help(&d.diagnostic).map(|h| h.to_string()))
        .unwrap_or_default()
}

const HEADER: &str = "policy p {\n  description = \"t\"\n}\n";

#[test]
fn overlap_is_reported_at_the_allow_rule_with_a_witness() {
    let src = format!(
        "{HEADER}rule no_tmp on exec {{\n  when process.binary startswith \"/tmp/\"\n  deny\n}}\nrule tools on exec {{\n  when process.binary startswith \"/tmp/tools/\" or process.binary == \"/usr/bin/x\"\n  allow\n}}\n"
    );
    assert_eq!(codes(&src), ["policyc::deny_allow_overlap"]);
    let h = help(&src, "policyc::deny_allow_overlap");
    assert!(h.contains("deny overrides allow"), "{h}");
    assert!(
        h.contains(r#"{"hook": "exec", "process.binary": "/tmp/tools/x"}"#),
        "{h}"
    );
}

#[test]
fn shadowed_allow_and_deny_inside_kill() {
    let src = format!(
        "{HEADER}rule no_tmp on exec {{\n  when process.binary startswith \"/tmp/\"\n  kill\n}}\nrule tools on exec {{\n  when process.binary startswith \"/tmp/tools/\"\n  allow\n}}\nrule x on exec {{\n  when process.binary == \"/tmp/x\"\n  deny\n}}\n"
    );
    assert_eq!(
        codes(&src),
        ["policyc::shadowed_rule", "policyc::shadowed_rule"]
    );
    // Not shadowed: part of the allow escapes the deny.
    let src = format!(
        "{HEADER}rule no_tmp on exec {{\n  when process.binary startswith \"/tmp/\"\n  deny\n}}\nrule tools on exec {{\n  when process.binary startswith \"/tmp/\" or process.binary == \"/usr/bin/x\"\n  allow\n}}\n"
    );
    assert_eq!(codes(&src), ["policyc::deny_allow_overlap"]);
}

#[test]
fn unsatisfiable_and_every_event() {
    // Beyond `always_false`: a range and a comparison, a prefix and a
    // negated shorter prefix.
    let src = format!(
        "{HEADER}rule low on connect {{\n  when net.dport in {{ 1..1023 }} and net.dport > 2000\n  deny\n}}\nrule nested on exec {{\n  when process.binary startswith \"/usr/bin/\" and not process.binary startswith \"/usr/\"\n  audit\n}}\n"
    );
    assert_eq!(
        codes(&src),
        ["policyc::unsatisfiable_rule", "policyc::unsatisfiable_rule"]
    );
    let src = format!(
        "{HEADER}rule all_ports on connect {{\n  when net.dport < 1024 or net.dport >= 1024\n  deny\n}}\n"
    );
    let c = codes(&src);
    assert!(
        c.contains(&"policyc::matches_every_event".to_string()),
        "{c:?}"
    );
    assert!(help(&src, "policyc::matches_every_event").contains("deny every `connect`"));
    // `when true` is meant; an optional field is not every event.
    let src = format!(
        "{HEADER}rule all on module_load {{\n  when true\n  deny\n}}\nrule ns on exec {{\n  when k8s.namespace == \"a\" or k8s.namespace != \"a\"\n  audit\n}}\n"
    );
    assert!(codes(&src)
        .iter()
        .all(|c| !ANALYSIS_CODES.contains(&c.as_str())));
}

#[test]
fn examples_and_shipped_policies_have_no_analysis_warnings() {
    let mut cases: Vec<(String, String)> = Vec::new();
    let doc = std::fs::read_to_string(workspace().join("docs/language.md")).unwrap();
    let mut current: Option<(usize, String)> = None;
    for (i, line) in doc.lines().enumerate() {
        match (&mut current, line.trim_end()) {
            (None, "```policy") => current = Some((i + 2, String::new())),
            (Some((n, text)), "```") => {
                cases.push((format!("docs/language.md:{n}"), std::mem::take(text)));
                current = None;
            }
            (Some((_, text)), l) => {
                text.push_str(l);
                text.push('\n');
            }
            (None, _) => {}
        }
    }
    for dir in ["policies", "tests/golden/test"] {
        for e in std::fs::read_dir(workspace().join(dir)).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|e| e == "policy") {
                cases.push((
                    p.display().to_string(),
                    std::fs::read_to_string(&p).unwrap(),
                ));
            }
        }
    }
    assert!(cases.len() >= 5);
    for (name, text) in cases {
        let sources = [SourceFile {
            name: name.clone(),
            text,
        }];
        for (_, diagnostics) in [analyze(&sources), analyze_for_evaluation(&sources)] {
            for d in diagnostics {
                let code = miette::Diagnostic::code(&d.diagnostic).map(|c| c.to_string());
                assert!(
                    !code.as_deref().is_some_and(|c| ANALYSIS_CODES.contains(&c)),
                    "{name}: {}",
                    d.diagnostic
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Random policies.

const PATHS: &[&str] = &["/", "/a", "/a/", "/a/b", "/ab", "/b", "/b/a", "/bin/sh"];
const EVENT_PATHS: &[&str] = &[
    "/", "/a", "/a/", "/a/b", "/ab", "/b", "/b/a", "/bin/sh", "/a/bx", "/ax", "/x", "/b/", "/bin/",
];
const IDS: &[u64] = &[0, 1, 999, 1000, 4294967294];
const EVENT_IDS: &[u64] = &[0, 1, 2, 998, 999, 1000, 1001, 5000, 4294967294, 4294967295];
const RANGES: &[(u64, u64)] = &[(0, 999), (1000, 4294967294), (1, 1000)];
const CAPS: &[&str] = &["CAP_NET_RAW", "CAP_SYS_ADMIN"];
const NS: &[&str] = &["a", "ab", "b"];

fn pick<T: Clone + std::fmt::Debug + 'static>(
    xs: &'static [T],
) -> impl Strategy<Value = T> + Clone {
    proptest::sample::select(xs)
}

fn test(field: Field, pred: Pred) -> Cond {
    Cond::Test(Test {
        field: FieldKey::plain(field),
        pred,
    })
}

fn leaf() -> impl Strategy<Value = Cond> {
    let path = pick(PATHS).prop_map(str::to_string);
    prop_oneof![
        path.clone()
            .prop_map(|p| test(Field::ProcessBinary, Pred::Eq(Value::Str(p)))),
        path.clone()
            .prop_map(|p| test(Field::ProcessBinary, Pred::StartsWith(p))),
        proptest::collection::btree_set(path, 1..3).prop_map(|s| test(
            Field::ProcessBinary,
            Pred::In(
                s.into_iter()
                    .map(|p| Member::Value(Value::Str(p)))
                    .collect()
            )
        )),
        pick(IDS).prop_map(|n| test(Field::UserUid, Pred::Eq(Value::Int(n)))),
        pick(RANGES).prop_map(|(lo, hi)| test(
            Field::UserUid,
            Pred::In(BTreeSet::from([Member::Range(lo, hi)]))
        )),
        any::<bool>().prop_map(|b| test(Field::ProcessInteractive, Pred::Eq(Value::Bool(b)))),
        proptest::collection::btree_set(pick(CAPS).prop_map(str::to_string), 1..3)
            .prop_map(|c| test(Field::UserCaps, Pred::Has(c))),
        pick(NS).prop_map(|n| test(Field::K8sNamespace, Pred::Eq(Value::Str(n.into())))),
        pick(NS).prop_map(|n| test(Field::K8sNamespace, Pred::StartsWith(n.into()))),
        prop_oneof![Just(RelOp::Eq), Just(RelOp::Lt)].prop_map(|op| test(
            Field::UserUid,
            Pred::Relation(op, FieldKey::plain(Field::UserEuid))
        )),
    ]
}

fn cond() -> impl Strategy<Value = Cond> {
    leaf().prop_recursive(3, 12, 3, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 2..4).prop_map(Cond::And),
            proptest::collection::vec(inner.clone(), 2..3).prop_map(Cond::Or),
            inner.prop_map(|c| Cond::Not(Box::new(c))),
        ]
    })
}

fn rule() -> impl Strategy<Value = (usize, Rule)> {
    let action = prop_oneof![
        Just(Some(Action::Allow)),
        Just(Some(Action::Deny)),
        Just(Some(Action::Kill)),
        Just(None),
    ];
    (0..2usize, cond(), action).prop_map(|(file, condition, action)| {
        (
            file,
            Rule {
                name: String::new(),
                hook: Hook::Exec,
                condition,
                action,
                audit: action.is_none(),
                severity: Severity::Info,
                message: None,
                counts: Vec::new(),
                rate: None,
                name_span: 0..0,
            },
        )
    })
}

/// An event the kernel could report: every field of the exec hook the
/// rules use, `k8s.namespace` sometimes absent.
fn event() -> impl Strategy<Value = Event> {
    (
        pick(EVENT_PATHS),
        pick(EVENT_IDS),
        pick(EVENT_IDS),
        any::<bool>(),
        proptest::collection::btree_set(pick(&["CAP_NET_RAW", "CAP_SYS_ADMIN", "CAP_KILL"]), 0..3),
        proptest::option::of(pick(&["a", "ab", "b", "x", ""])),
    )
        .prop_map(|(path, uid, euid, interactive, caps, ns)| {
            let mut fields = BTreeMap::from([
                (
                    FieldKey::plain(Field::ProcessBinary),
                    Value::Str(path.into()),
                ),
                (FieldKey::plain(Field::UserUid), Value::Int(uid)),
                (FieldKey::plain(Field::UserEuid), Value::Int(euid)),
                (
                    FieldKey::plain(Field::ProcessInteractive),
                    Value::Bool(interactive),
                ),
                (
                    FieldKey::plain(Field::UserCaps),
                    Value::Caps(caps.into_iter().map(str::to_string).collect()),
                ),
            ]);
            if let Some(ns) = ns {
                fields.insert(FieldKey::plain(Field::K8sNamespace), Value::Str(ns.into()));
            }
            Event {
                hook: Hook::Exec,
                fields,
            }
        })
}

fn bundle(program: &Program<'_>) -> Option<PolicyBundle> {
    Some(policy_compiler::lower::evaluation_bundle(
        program,
        lower_program(program).ok()?,
    ))
}

/// Whether `outcome` shows what `finding` claims about one event that the
/// finding's rule matched.
fn decided_as_claimed(program: &Program<'_>, f: &Finding, o: &Outcome) -> bool {
    let r = program.rules[f.rule as usize];
    let v = if program.is_monitor(r.file) {
        o.would_verdict
    } else {
        o.verdict
    };
    match (&f.kind, r.rule.action) {
        (FindingKind::Overlap { deny }, _) => o.matched.contains(deny) && v != Verdict::Allow,
        (FindingKind::Shadowed { .. }, Some(Action::Allow)) => v != Verdict::Allow,
        (FindingKind::Shadowed { .. }, _) => v == Verdict::Kill,
        _ => true,
    }
}

fn check(
    rules: &[(usize, Rule)],
    monitor: [bool; 2],
    events: &[Event],
) -> Result<usize, TestCaseError> {
    let program = Program {
        rules: rules
            .iter()
            .enumerate()
            .map(|(i, (file, rule))| RuleRef {
                id: i as u32,
                file: *file,
                rule,
            })
            .collect(),
        scopes: Vec::new(),
        monitor: monitor.to_vec(),
    };
    let Some(bundle) = bundle(&program) else {
        return Ok(0);
    };
    let found = findings(&program);
    for f in &found {
        if let Some(w) = &f.witness {
            let json = event_json(w);
            prop_assert_eq!(&parse_event(&json).unwrap(), w, "{}", json);
            for o in [eval_bundle(&bundle, w), eval_program(&program, w)] {
                prop_assert!(o.matched.contains(&f.rule), "{f:?}: {o:?}");
                prop_assert!(decided_as_claimed(&program, f, &o), "{f:?}: {o:?}");
            }
        } else {
            prop_assert!(
                !matches!(f.kind, FindingKind::Overlap { .. }),
                "an overlap without witness: {f:?}"
            );
        }
        for e in events {
            let o = eval_program(&program, e);
            let matched = o.matched.contains(&f.rule);
            match f.kind {
                FindingKind::Unsatisfiable => prop_assert!(!matched, "{f:?} matches {e:?}"),
                FindingKind::MatchesEveryEvent => {
                    prop_assert!(matched, "{f:?} does not match {e:?}")
                }
                FindingKind::Shadowed { .. } if matched => {
                    prop_assert!(decided_as_claimed(&program, f, &o), "{f:?} on {e:?}: {o:?}")
                }
                _ => {}
            }
        }
    }
    Ok(found.len())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4_000))]

    #[test]
    fn every_finding_is_true(
        rules in proptest::collection::vec(rule(), 1..6),
        monitor in any::<[bool; 2]>(),
        events in proptest::collection::vec(event(), 16..32),
    ) {
        check(&rules, monitor, &events)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(50_000))]

    #[test]
    #[ignore]
    fn every_finding_is_true_long(
        rules in proptest::collection::vec(rule(), 1..8),
        monitor in any::<[bool; 2]>(),
        events in proptest::collection::vec(event(), 32..64),
    ) {
        check(&rules, monitor, &events)?;
    }
}

/// The random policies do produce findings of every kind (the property is
/// not vacuous).
#[test]
fn random_policies_produce_every_kind() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let mut kinds = BTreeSet::new();
    for _ in 0..400 {
        let rules = proptest::collection::vec(rule(), 2..6)
            .new_tree(&mut runner)
            .unwrap()
            .current();
        let program = Program {
            rules: rules
                .iter()
                .enumerate()
                .map(|(i, (file, rule))| RuleRef {
                    id: i as u32,
                    file: *file,
                    rule,
                })
                .collect(),
            scopes: Vec::new(),
            monitor: vec![false, false],
        };
        for f in findings(&program) {
            kinds.insert(match f.kind {
                FindingKind::Overlap { .. } => "overlap",
                FindingKind::Shadowed { .. } => "shadowed",
                FindingKind::Unsatisfiable => "unsatisfiable",
                FindingKind::MatchesEveryEvent => "every",
            });
        }
    }
    assert_eq!(kinds.len(), 4, "{kinds:?}");
}
