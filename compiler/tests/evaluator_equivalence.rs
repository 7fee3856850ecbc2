//! The bundle (the kernel's algorithm) means what the source says: for random
//! rule sets and random events, the rule evaluator and the bundle evaluator
//! agree on the whole outcome (verdicts, matched, audited and would-deny
//! rules, scopes, counters). Two generators: paths only (the runtime's subset)
//! and many fields of every kind (strings with prefixes and suffixes, globs,
//! uids with ranges, names and `unset`, ports, addresses with CIDR blocks,
//! capabilities, booleans, enumerations, relations, labels) with `count`,
//! `default deny` scopes and monitor-mode policies. Also: bundles survive a
//! YAML round trip unchanged and with a valid digest.
//!
//! `cargo test -p policy-compiler --test evaluator_equivalence -- --ignored`
//! runs the long version.

use std::collections::{BTreeMap, BTreeSet};

use policy_compiler::bundle::PolicyBundle;
use policy_compiler::compile::{compile, SourceFile};
use policy_compiler::eval::{eval_bundle, eval_program, eval_rules};
use policy_compiler::lower::{lower, RuleRef};
use policy_dsl::ast::Action;
use policy_dsl::checked::{DefaultScope, Event, FieldKey, Pred, Rule, Value};
use policy_dsl::schema::{Field, Hook, Severity};
use proptest::prelude::*;

mod strategies;
use strategies::*;

fn bundle_for(rules: &[RuleRef<'_>]) -> Option<PolicyBundle> {
    let program = policy_compiler::lower::Program::from_rules(rules);
    Some(policy_compiler::lower::evaluation_bundle(
        &program,
        lower(rules).ok()?,
    ))
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

// ---------------------------------------------------------------------------
// Every kind of field.

fn check_program(
    rules: &[(usize, Rule)],
    scopes: &[(usize, DefaultScope)],
    monitor: [bool; 2],
    events: &[Event],
) -> Result<(), TestCaseError> {
    let program = program_of(rules, scopes, monitor);
    // Random conditions can exceed the term limit; that is a compile error, tested elsewhere.
    let Some(bundle) = program_bundle(&program) else {
        return Ok(());
    };
    bundle.validate().unwrap();
    for event in events {
        prop_assert_eq!(
            eval_program(&program, event),
            eval_bundle(&bundle, event),
            "event {:?}",
            event
        );
    }
    Ok(())
}

fn multi_config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        max_shrink_iters: 2_000,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(multi_config(10_000))]

    #[test]
    fn every_kind_of_field_agrees(
        rules in proptest::collection::vec(multi_rule(), 1..6),
        scopes in proptest::collection::vec(multi_scope(), 0..2),
        monitor in any::<[bool; 2]>(),
        events in proptest::collection::vec(multi_event(), 1..8),
    ) {
        check_program(&rules, &scopes, monitor, &events)?;
    }
}

proptest! {
    #![proptest_config(multi_config(200_000))]

    #[test]
    #[ignore = "long run: cargo test -p policy-compiler --test evaluator_equivalence -- --ignored"]
    fn every_kind_of_field_agrees_long(
        rules in proptest::collection::vec(multi_rule(), 1..10),
        scopes in proptest::collection::vec(multi_scope(), 0..3),
        monitor in any::<[bool; 2]>(),
        events in proptest::collection::vec(multi_event(), 1..16),
    ) {
        check_program(&rules, &scopes, monitor, &events)?;
    }
}

#[test]
fn unsupported_globs_are_refused_not_dropped() {
    let rule = Rule {
        name: String::new(),
        hook: Hook::Exec,
        condition: test(
            FieldKey::plain(Field::ProcessBinary),
            Pred::Glob("/usr/*/sh".into()),
        ),
        action: Some(Action::Deny),
        audit: false,
        severity: Severity::Info,
        message: None,
        counts: Vec::new(),
        rate: None,
        name_span: 0..0,
    };
    let refs = [RuleRef {
        id: 0,
        file: 0,
        rule: &rule,
    }];
    assert!(matches!(
        lower(&refs),
        Err(policy_compiler::lower::LowerError::UnsupportedGlob { .. })
    ));
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
    // A future layout, schema 2 (whole sets in entries) and schema 1 (entry
    // sets listing untested terms) are all refused as versions.
    for other in ["schemaVersion: 4", "schemaVersion: 2", "schemaVersion: 1"] {
        let future = yaml.replace("schemaVersion: 3", other);
        assert_ne!(future, yaml);
        let err = PolicyBundle::from_yaml(&future).unwrap_err();
        assert!(
            matches!(
                err,
                policy_compiler::bundle::BundleError::UnsupportedVersion { .. }
            ),
            "{other}: {err}"
        );
    }
    let err = PolicyBundle::from_yaml("apiVersion: [").unwrap_err();
    assert!(
        matches!(err, policy_compiler::bundle::BundleError::Malformed { .. }),
        "{err}"
    );
    let _ = BTreeSet::<u8>::new();
}
