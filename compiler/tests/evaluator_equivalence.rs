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
use policy_compiler::lower::{lower, lower_program, Program, RuleRef, ScopeRef};
use policy_dsl::ast::Action;
use policy_dsl::checked::{
    Cond, DefaultScope, Event, FieldKey, Member, Pred, RelOp, Rule, Test, Value,
};
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
        proptest::collection::btree_set(path.clone(), 1..4).prop_map(|s| Pred::In(
            s.into_iter()
                .map(|p| Member::Value(Value::Str(p)))
                .collect()
        )),
        path.prop_map(Pred::StartsWith),
    ]
}

fn cond() -> impl Strategy<Value = Cond> {
    let leaf = pred().prop_map(|pred| {
        Cond::Test(Test {
            field: FieldKey::plain(Field::ProcessBinary),
            pred,
        })
    });
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

const STRS: &[&str] = &["", "a", "ab", "b", "ba", "prod"];
const EVENT_STRS: &[&str] = &["", "a", "ab", "b", "ba", "prod", "abc", "bab", "x"];
const SUFFIXES: &[&str] = &["b", "/b", "sh", "c", "a/b"];
const GLOBS: &[&str] = &[
    "/a/**", "**/b", "/a/b", "**", "**b", "/[a]/**", "/**b", "/a**b", "a**a",
];
const IDS: &[u64] = &[0, 1, 2, 999, 1000, 1001, 4294967294];
const EVENT_IDS: &[u64] = &[0, 1, 2, 5, 999, 1000, 1001, 1099, 1100, 4294967294];
const ID_RANGES: &[(u64, u64)] = &[(0, 0), (1, 999), (1000, 1099), (2, 4294967294)];
const NAMES: &[&str] = &["alice", "bob"];
const PORTS: &[u64] = &[0, 80, 443, 1023, 1024, 65535];
const EVENT_PORTS: &[u64] = &[0, 1, 79, 80, 81, 443, 1023, 1024, 65535];
const PORT_RANGES: &[(u64, u64)] = &[(1, 1023), (80, 80), (1024, 65535)];
const IPS: &[&str] = &["10.0.0.1", "10.1.2.3", "169.254.169.254", "::1", "fd00::1"];
const EVENT_IPS: &[&str] = &[
    "10.0.5.5",
    "10.200.0.1",
    "10.0.0.1",
    "11.0.0.1",
    "fd00::5",
    "2001:db8::1",
    "169.254.1.1",
    "10.0.0.2",
];
const CIDRS: &[&str] = &[
    "10.0.0.0/8",
    "10.0.0.0/16",
    "0.0.0.0/0",
    "169.254.0.0/16",
    "fd00::/8",
    "::/0",
    "10.0.0.1/32",
];
const CAPS: &[&str] = &["CAP_NET_RAW", "CAP_SYS_ADMIN", "CAP_CHOWN"];
const EVENT_CAPS: &[&str] = &["CAP_NET_RAW", "CAP_SYS_ADMIN", "CAP_CHOWN", "CAP_KILL"];

fn s(v: &str) -> Value {
    Value::Str(v.to_string())
}

fn pick<T: Clone + std::fmt::Debug + 'static>(
    xs: &'static [T],
) -> impl Strategy<Value = T> + Clone {
    proptest::sample::select(xs)
}

fn test(field: FieldKey, pred: Pred) -> Cond {
    Cond::Test(Test { field, pred })
}

fn label(k: &str) -> FieldKey {
    FieldKey {
        field: Field::K8sLabel,
        key: Some(k.to_string()),
    }
}

/// Tests of strings and paths: values, sets, prefixes, suffixes, globs.
fn string_leaf(field: FieldKey, values: &'static [&'static str]) -> impl Strategy<Value = Cond> {
    let f = field.clone();
    let v = pick(values).prop_map(s);
    prop_oneof![
        v.clone().prop_map({
            let f = f.clone();
            move |v| test(f.clone(), Pred::Eq(v))
        }),
        proptest::collection::btree_set(v, 1..3).prop_map({
            let f = f.clone();
            move |set| {
                test(
                    f.clone(),
                    Pred::In(set.into_iter().map(Member::Value).collect()),
                )
            }
        }),
        pick(values).prop_map({
            let f = f.clone();
            move |p| test(f.clone(), Pred::StartsWith(p.into()))
        }),
        prop_oneof![pick(SUFFIXES), pick(values)].prop_map({
            let f = f.clone();
            move |p| test(f.clone(), Pred::EndsWith(p.into()))
        }),
        pick(GLOBS).prop_map(move |g| test(f.clone(), Pred::Glob(g.into()))),
    ]
}

fn id_member(unset: bool) -> impl Strategy<Value = Member> {
    prop_oneof![
        pick(IDS).prop_map(|n| Member::Value(Value::Int(n))),
        pick(NAMES).prop_map(|n| Member::Value(Value::Name(n.into()))),
        pick(ID_RANGES).prop_map(|(lo, hi)| Member::Range(lo, hi)),
        Just(if unset {
            Member::Value(Value::Unset)
        } else {
            Member::Value(Value::Int(0))
        }),
    ]
}

fn id_leaf(field: Field, unset: bool) -> impl Strategy<Value = Cond> {
    let f = FieldKey::plain(field);
    let g = f.clone();
    prop_oneof![
        id_member(unset).prop_map(move |m| match m {
            Member::Value(v) => test(f.clone(), Pred::Eq(v)),
            m => test(f.clone(), Pred::In(BTreeSet::from([m]))),
        }),
        proptest::collection::btree_set(id_member(unset), 1..4)
            .prop_map(move |set| test(g.clone(), Pred::In(set))),
    ]
}

fn port_leaf() -> impl Strategy<Value = Cond> {
    let f = FieldKey::plain(Field::NetDport);
    let member = prop_oneof![
        pick(PORTS).prop_map(|n| Member::Value(Value::Int(n))),
        pick(PORT_RANGES).prop_map(|(lo, hi)| Member::Range(lo, hi)),
    ];
    let g = f.clone();
    prop_oneof![
        pick(PORTS).prop_map(move |n| test(f.clone(), Pred::Eq(Value::Int(n)))),
        proptest::collection::btree_set(member, 1..3)
            .prop_map(move |set| test(g.clone(), Pred::In(set))),
    ]
}

fn ip(v: &str) -> std::net::IpAddr {
    v.parse().unwrap()
}

fn ip_leaf() -> impl Strategy<Value = Cond> {
    let f = FieldKey::plain(Field::NetDaddr);
    let member = prop_oneof![
        pick(IPS).prop_map(|a| Member::Value(Value::Ip(ip(a)))),
        pick(CIDRS).prop_map(|c| Member::Cidr(c.parse().unwrap())),
    ];
    let g = f.clone();
    prop_oneof![
        pick(IPS).prop_map(move |a| test(f.clone(), Pred::Eq(Value::Ip(ip(a))))),
        proptest::collection::btree_set(member, 1..3)
            .prop_map(move |set| test(g.clone(), Pred::In(set))),
    ]
}

fn relation_leaf() -> impl Strategy<Value = Cond> {
    let op = prop_oneof![Just(RelOp::Eq), Just(RelOp::Lt), Just(RelOp::Le)];
    prop_oneof![
        op.prop_map(|op| test(
            FieldKey::plain(Field::UserUid),
            Pred::Relation(op, FieldKey::plain(Field::UserEuid))
        )),
        Just(test(
            FieldKey::plain(Field::UserAuid),
            Pred::Relation(RelOp::Eq, FieldKey::plain(Field::UserUid))
        )),
        Just(test(
            FieldKey::plain(Field::ProcessName),
            Pred::Relation(RelOp::Eq, FieldKey::plain(Field::K8sNamespace))
        )),
    ]
}

fn multi_leaf() -> impl Strategy<Value = Cond> {
    prop_oneof![
        string_leaf(FieldKey::plain(Field::ProcessBinary), PATHS),
        string_leaf(FieldKey::plain(Field::ProcessName), STRS),
        string_leaf(FieldKey::plain(Field::K8sNamespace), STRS),
        string_leaf(label("app"), STRS),
        string_leaf(label("tier"), STRS),
        id_leaf(Field::UserUid, false),
        id_leaf(Field::UserGid, false),
        id_leaf(Field::UserAuid, true),
        port_leaf(),
        ip_leaf(),
        proptest::collection::btree_set(pick(CAPS).prop_map(str::to_string), 1..3)
            .prop_map(|c| test(FieldKey::plain(Field::UserCaps), Pred::Has(c))),
        any::<bool>().prop_map(|b| test(
            FieldKey::plain(Field::ProcessInteractive),
            Pred::Eq(Value::Bool(b))
        )),
        pick(&["tcp", "udp"])
            .prop_map(|p| test(FieldKey::plain(Field::NetProtocol), Pred::Eq(s(p)))),
        relation_leaf(),
    ]
}

fn multi_cond() -> impl Strategy<Value = Cond> {
    multi_leaf().prop_recursive(3, 16, 3, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 2..4).prop_map(Cond::And),
            proptest::collection::vec(inner.clone(), 2..4).prop_map(Cond::Or),
            inner.prop_map(|c| Cond::Not(Box::new(c))),
        ]
    })
}

fn hook() -> impl Strategy<Value = Hook> {
    prop_oneof![3 => Just(Hook::Connect), 1 => Just(Hook::Exec)]
}

/// A rule and the file (policy) it belongs to.
fn multi_rule() -> impl Strategy<Value = (usize, Rule)> {
    let action = proptest::option::of(prop_oneof![
        Just(Action::Allow),
        Just(Action::Deny),
        Just(Action::Kill)
    ]);
    let counts =
        proptest::collection::btree_set(pick(&["c1", "c2"]).prop_map(str::to_string), 0..3);
    (
        0..2usize,
        hook(),
        multi_cond(),
        action,
        any::<bool>(),
        counts,
    )
        .prop_map(|(file, hook, condition, action, audit, counts)| {
            (
                file,
                Rule {
                    name: String::new(),
                    hook,
                    condition,
                    action,
                    audit,
                    severity: Severity::Info,
                    message: None,
                    counts: counts.into_iter().collect(),
                    rate: None,
                    name_span: 0..0,
                },
            )
        })
}

fn multi_scope() -> impl Strategy<Value = (usize, DefaultScope)> {
    (
        0..2usize,
        hook(),
        prop_oneof![1 => Just(Cond::True), 3 => multi_cond()],
    )
        .prop_map(|(file, hook, condition)| {
            (
                file,
                DefaultScope {
                    name: format!("default_deny_{}_1", hook.as_str()),
                    hook,
                    condition,
                    span: 0..0,
                },
            )
        })
}

fn event_value(field: Field) -> BoxedStrategy<Value> {
    let id = || {
        prop_oneof![
            pick(EVENT_IDS).prop_map(Value::Int),
            pick(IDS).prop_map(Value::Int),
            pick(&["alice", "bob", "carol"]).prop_map(|n| Value::Name(n.into())),
        ]
    };
    match field {
        Field::ProcessBinary => event_path().prop_map(Value::Str).boxed(),
        Field::UserUid | Field::UserEuid | Field::UserGid => id().boxed(),
        Field::UserAuid => prop_oneof![3 => id(), 1 => Just(Value::Unset)].boxed(),
        Field::NetDport => pick(EVENT_PORTS).prop_map(Value::Int).boxed(),
        Field::NetDaddr => prop_oneof![pick(IPS), pick(EVENT_IPS)]
            .prop_map(|a| Value::Ip(ip(a)))
            .boxed(),
        Field::UserCaps => {
            proptest::collection::btree_set(pick(EVENT_CAPS).prop_map(str::to_string), 0..4)
                .prop_map(Value::Caps)
                .boxed()
        }
        Field::ProcessInteractive => any::<bool>().prop_map(Value::Bool).boxed(),
        Field::NetProtocol => pick(&["tcp", "udp"]).prop_map(s).boxed(),
        _ => pick(EVENT_STRS).prop_map(s).boxed(),
    }
}

fn multi_event() -> impl Strategy<Value = Event> {
    let keys: Vec<FieldKey> = [
        Field::ProcessBinary,
        Field::ProcessName,
        Field::K8sNamespace,
        Field::UserUid,
        Field::UserEuid,
        Field::UserGid,
        Field::UserAuid,
        Field::NetDport,
        Field::NetDaddr,
        Field::UserCaps,
        Field::ProcessInteractive,
        Field::NetProtocol,
    ]
    .into_iter()
    .map(FieldKey::plain)
    .chain([label("app"), label("tier")])
    .collect();
    let values: Vec<_> = keys
        .iter()
        .map(|k| proptest::option::weighted(0.85, event_value(k.field)))
        .collect();
    (hook(), values).prop_map(move |(hook, values)| Event {
        hook,
        fields: keys
            .iter()
            .cloned()
            .zip(values)
            .filter_map(|(k, v)| v.map(|v| (k, v)))
            .collect(),
    })
}

/// The bundle of a program, with policies `p0`, `p1` (monitor as given).
fn program_bundle(program: &Program<'_>) -> Option<PolicyBundle> {
    Some(policy_compiler::lower::evaluation_bundle(
        program,
        lower_program(program).ok()?,
    ))
}

fn check_program(
    rules: &[(usize, Rule)],
    scopes: &[(usize, DefaultScope)],
    monitor: [bool; 2],
    events: &[Event],
) -> Result<(), TestCaseError> {
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
        scopes: scopes
            .iter()
            .enumerate()
            .map(|(i, (file, scope))| ScopeRef {
                id: i as u32,
                file: *file,
                scope,
            })
            .collect(),
        monitor: monitor.to_vec(),
    };
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
