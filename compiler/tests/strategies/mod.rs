//! Generators of random rule sets and events shared by the evaluator
//! equivalence tests (`compiler/tests/evaluator_equivalence.rs`: rule
//! evaluator ≡ bundle evaluator) and the runtime's
//! (`runtime/tests/tables_equivalence.rs`: kernel tables ≡ bundle
//! evaluator), which includes this file by path.
#![allow(dead_code)]

use std::collections::BTreeSet;

use policy_compiler::bundle::PolicyBundle;
use policy_compiler::lower::{lower_program, Program, RuleRef, ScopeRef};
use policy_dsl::ast::Action;
use policy_dsl::checked::{
    Cond, DefaultScope, Event, FieldKey, Member, Pred, RelOp, Rule, Test, Value,
};
use policy_dsl::schema::{Field, Hook, Severity};
use proptest::prelude::*;

/// A small path alphabet so that values, prefixes and events collide often.
pub const PATHS: &[&str] = &[
    "/", "/a", "/a/", "/a/b", "/a/bc", "/ab", "/b", "/b/a", "/bin/sh", "/a/b/c",
];

pub fn pred() -> impl Strategy<Value = Pred> {
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

pub fn cond() -> impl Strategy<Value = Cond> {
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

pub fn rule() -> impl Strategy<Value = Rule> {
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
pub fn event_path() -> impl Strategy<Value = String> {
    prop_oneof![
        proptest::sample::select(PATHS).prop_map(str::to_string),
        (proptest::sample::select(PATHS), "[a-c/]{1,3}").prop_map(|(p, s)| format!("{p}{s}")),
        proptest::sample::select(PATHS).prop_map(|p| format!("{p}{}", "x".repeat(300))),
    ]
}

pub const STRS: &[&str] = &["", "a", "ab", "b", "ba", "prod"];
pub const EVENT_STRS: &[&str] = &["", "a", "ab", "b", "ba", "prod", "abc", "bab", "x"];
pub const SUFFIXES: &[&str] = &["b", "/b", "sh", "c", "a/b"];
pub const GLOBS: &[&str] = &[
    "/a/**", "**/b", "/a/b", "**", "**b", "/[a]/**", "/**b", "/a**b", "a**a",
];
pub const IDS: &[u64] = &[0, 1, 2, 999, 1000, 1001, 4294967294];
pub const EVENT_IDS: &[u64] = &[0, 1, 2, 5, 999, 1000, 1001, 1099, 1100, 4294967294];
pub const ID_RANGES: &[(u64, u64)] = &[(0, 0), (1, 999), (1000, 1099), (2, 4294967294)];
pub const NAMES: &[&str] = &["alice", "bob"];
pub const PORTS: &[u64] = &[0, 80, 443, 1023, 1024, 65535];
pub const EVENT_PORTS: &[u64] = &[0, 1, 79, 80, 81, 443, 1023, 1024, 65535];
pub const PORT_RANGES: &[(u64, u64)] = &[(1, 1023), (80, 80), (1024, 65535)];
pub const IPS: &[&str] = &["10.0.0.1", "10.1.2.3", "169.254.169.254", "::1", "fd00::1"];
pub const EVENT_IPS: &[&str] = &[
    "10.0.5.5",
    "10.200.0.1",
    "10.0.0.1",
    "11.0.0.1",
    "fd00::5",
    "2001:db8::1",
    "169.254.1.1",
    "10.0.0.2",
];
pub const CIDRS: &[&str] = &[
    "10.0.0.0/8",
    "10.0.0.0/16",
    "0.0.0.0/0",
    "169.254.0.0/16",
    "fd00::/8",
    "::/0",
    "10.0.0.1/32",
];
pub const CAPS: &[&str] = &["CAP_NET_RAW", "CAP_SYS_ADMIN", "CAP_CHOWN"];
pub const EVENT_CAPS: &[&str] = &["CAP_NET_RAW", "CAP_SYS_ADMIN", "CAP_CHOWN", "CAP_KILL"];

pub fn s(v: &str) -> Value {
    Value::Str(v.to_string())
}

pub fn pick<T: Clone + std::fmt::Debug + 'static>(
    xs: &'static [T],
) -> impl Strategy<Value = T> + Clone {
    proptest::sample::select(xs)
}

pub fn test(field: FieldKey, pred: Pred) -> Cond {
    Cond::Test(Test { field, pred })
}

pub fn label(k: &str) -> FieldKey {
    FieldKey {
        field: Field::K8sLabel,
        key: Some(k.to_string()),
    }
}

/// Tests of strings and paths: values, sets, prefixes, suffixes, globs.
pub fn string_leaf(
    field: FieldKey,
    values: &'static [&'static str],
) -> impl Strategy<Value = Cond> {
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

pub fn id_member(unset: bool) -> impl Strategy<Value = Member> {
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

pub fn id_leaf(field: Field, unset: bool) -> impl Strategy<Value = Cond> {
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

pub fn port_leaf() -> impl Strategy<Value = Cond> {
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

pub fn ip(v: &str) -> std::net::IpAddr {
    v.parse().unwrap()
}

pub fn ip_leaf() -> impl Strategy<Value = Cond> {
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

pub fn relation_leaf() -> impl Strategy<Value = Cond> {
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

pub fn multi_leaf() -> impl Strategy<Value = Cond> {
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

pub fn multi_cond() -> impl Strategy<Value = Cond> {
    multi_leaf().prop_recursive(3, 16, 3, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 2..4).prop_map(Cond::And),
            proptest::collection::vec(inner.clone(), 2..4).prop_map(Cond::Or),
            inner.prop_map(|c| Cond::Not(Box::new(c))),
        ]
    })
}

pub fn hook() -> impl Strategy<Value = Hook> {
    prop_oneof![3 => Just(Hook::Connect), 1 => Just(Hook::Exec)]
}

/// A rule and the file (policy) it belongs to.
pub fn multi_rule() -> impl Strategy<Value = (usize, Rule)> {
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

pub fn multi_scope() -> impl Strategy<Value = (usize, DefaultScope)> {
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

pub fn event_value(field: Field) -> BoxedStrategy<Value> {
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

pub fn multi_event() -> impl Strategy<Value = Event> {
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
pub fn program_bundle(program: &Program<'_>) -> Option<PolicyBundle> {
    Some(policy_compiler::lower::evaluation_bundle(
        program,
        lower_program(program).ok()?,
    ))
}

/// The program of generated rules and scopes (each with its file, 0 or 1),
/// rule and scope ids in order, with files' `mode = monitor` as given.
pub fn program_of<'a>(
    rules: &'a [(usize, Rule)],
    scopes: &'a [(usize, DefaultScope)],
    monitor: [bool; 2],
) -> Program<'a> {
    Program {
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
    }
}
