//! The bundle (the kernel's algorithm) means what the source says: for random
//! rule sets and random events, the rule evaluator and the bundle evaluator
//! agree on verdict, matched rules and audited rules. Also: bundles survive a
//! YAML round trip unchanged and with a valid digest.

use std::collections::{BTreeMap, BTreeSet};

use policy_compiler::bundle::PolicyBundle;
use policy_compiler::compile::{compile, SourceFile};
use policy_compiler::eval::{eval_bundle, eval_rules};
use policy_compiler::lower::{lower, RuleRef};
use policy_dsl::ast::Action;
use policy_dsl::checked::{Cond, Event, FieldKey, Member, Pred, Rule, Test, Value};
use policy_dsl::schema::{Field, Hook, Severity};
use proptest::prelude::*;

/// A small path alphabet so that values, prefixes and events collide often.
const PATHS: &[&str] = &[
    "/", "/a", "/a/", "/a/b", "/a/bc", "/ab", "/b", "/b/a", "/bin/sh", "/a/b/c",
];

fn pred() -> impl Strategy<Value = Pred> {
    let path = proptest::sample::select(PATHS).prop_map(str::to_string);
    prop_oneof![
        path.clone().prop_map(|p| Pred::Eq(Value::Str(p))),
        proptest::collection::btree_set(path.clone(), 1..4)
            .prop_map(|s| Pred::In(s.into_iter().map(|p| Member::Value(Value::Str(p))).collect())),
        path.prop_map(Pred::StartsWith),
    ]
}

fn cond() -> impl Strategy<Value = Cond> {
    let leaf = pred().prop_map(|pred| Cond::Test(Test { field: FieldKey::plain(Field::ProcessBinary), pred }));
    leaf.prop_recursive(4, 24, 3, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 2..4).prop_map(Cond::And),
            proptest::collection::vec(inner.clone(), 2..4).prop_map(Cond::Or),
            inner.prop_map(|c| Cond::Not(Box::new(c))),
        ]
    })
}

fn rule() -> impl Strategy<Value = Rule> {
    let action = proptest::option::of(prop_oneof![
        Just(Action::Allow),
        Just(Action::Deny),
        Just(Action::Kill)
    ]);
    (cond(), action, any::<bool>()).prop_map(|(condition, action, audit)| Rule {
        name: String::new(),
        hook: Hook::Exec,
        condition,
        action,
        audit,
        severity: Severity::Info,
        message: None,
        counts: Vec::new(),
        rate: None,
        name_span: 0..0,
    })
}

/// An event path: from the alphabet, or an alphabet path with a suffix (values
/// no literal names), or longer than the kernel's exact key.
fn event_path() -> impl Strategy<Value = String> {
    prop_oneof![
        proptest::sample::select(PATHS).prop_map(str::to_string),
        (proptest::sample::select(PATHS), "[a-c/]{1,3}").prop_map(|(p, s)| format!("{p}{s}")),
        proptest::sample::select(PATHS).prop_map(|p| format!("{p}{}", "x".repeat(300))),
    ]
}

fn bundle_for(rules: &[RuleRef<'_>]) -> Option<PolicyBundle> {
    let hooks = lower(rules).ok()?;
    let mut spec = policy_compiler::bundle::BundleSpec {
        schema_version: policy_compiler::bundle::SCHEMA_VERSION,
        compiler: "test".into(),
        digest: String::new(),
        policies: vec![policy_compiler::bundle::PolicyInfo { name: "p".into(), description: String::new(), source: "t".into() }],
        rules: rules
            .iter()
            .map(|r| policy_compiler::bundle::RuleEntry {
                id: r.id,
                name: format!("r{}", r.id),
                policy: "p".into(),
                hook: Hook::Exec,
                verdict: r.rule.action.map(|a| match a {
                    Action::Allow => policy_compiler::bundle::Verdict::Allow,
                    Action::Deny => policy_compiler::bundle::Verdict::Deny,
                    Action::Kill => policy_compiler::bundle::Verdict::Kill,
                }),
                audit: r.rule.audit,
                severity: Severity::Info,
                message: None,
                source: policy_compiler::bundle::SourceLocation {
                    file: "t".into(),
                    line: 1,
                    column: 1,
                },
            })
            .collect(),
        hooks,
    };
    spec.digest = spec.compute_digest("t");
    Some(PolicyBundle {
        api_version: policy_compiler::bundle::API_VERSION.into(),
        kind: policy_compiler::bundle::KIND.into(),
        metadata: policy_compiler::bundle::Metadata { name: "t".into() },
        spec,
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(10_000))]

    #[test]
    fn rule_and_bundle_evaluators_agree(
        rules in proptest::collection::vec(rule(), 1..6),
        paths in proptest::collection::vec(event_path(), 1..8),
    ) {
        let refs: Vec<RuleRef> = rules.iter().enumerate().map(|(i, rule)| RuleRef { id: i as u32, file: 0, rule }).collect();
        // Random conditions can exceed the term limit; that is a compile error, tested elsewhere.
        let Some(bundle) = bundle_for(&refs) else { return Ok(()) };
        bundle.validate().unwrap();
        for path in paths {
            let event = Event {
                hook: Hook::Exec,
                fields: BTreeMap::from([(FieldKey::plain(Field::ProcessBinary), Value::Str(path.clone()))]),
            };
            prop_assert_eq!(eval_rules(&refs, &event), eval_bundle(&bundle, &event), "event {}", path);
        }
    }

    #[test]
    fn bundles_round_trip_through_yaml(rules in proptest::collection::vec(rule(), 1..4)) {
        let refs: Vec<RuleRef> = rules.iter().enumerate().map(|(i, rule)| RuleRef { id: i as u32, file: 0, rule }).collect();
        let Some(bundle) = bundle_for(&refs) else { return Ok(()) };
        let parsed = PolicyBundle::from_yaml(&bundle.to_yaml()).unwrap();
        prop_assert_eq!(parsed, bundle);
    }
}

#[test]
fn edited_bundle_is_refused() {
    let src = SourceFile {
        name: "p.policy".into(),
        text: "policy p {}\nrule r on exec { when process.binary == \"/usr/bin/sudo\" deny }"
            .into(),
    };
    let yaml = compile(&[src], "p").unwrap().bundle.to_yaml();
    let edited = yaml.replace("/usr/bin/sudo", "/usr/bin/sudx");
    let err = PolicyBundle::from_yaml(&edited).unwrap_err();
    assert!(
        matches!(
            err,
            policy_compiler::bundle::BundleError::DigestMismatch { .. }
        ),
        "{err}"
    );
    let future = yaml.replace("schemaVersion: 1", "schemaVersion: 2");
    let err = PolicyBundle::from_yaml(&future).unwrap_err();
    assert!(
        matches!(
            err,
            policy_compiler::bundle::BundleError::UnsupportedVersion { .. }
        ),
        "{err}"
    );
    let err = PolicyBundle::from_yaml("apiVersion: [").unwrap_err();
    assert!(
        matches!(err, policy_compiler::bundle::BundleError::Malformed { .. }),
        "{err}"
    );
    let _ = BTreeSet::<u8>::new();
}
