//! Proptest strategies for policy ASTs, shared by the formatter and fast
//! parser properties: every declaration, clause, expression kind, operator
//! and literal kind, with names that are never keywords.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use policy_dsl::ast::*;
use proptest::collection::vec;
use proptest::prelude::*;

// ---- strategies for trees -------------------------------------------------

pub const KEYWORDS: &[&str] = &policy_dsl::parser::KEYWORDS;

pub fn id(name: String) -> Ident {
    Ident { name, span: 0..0 }
}

pub fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[a-z_][a-z0-9_]{0,7}",
        1 => "[a-z][a-z0-9_]{8,20}",
        // Keyword prefixes are names.
        1 => proptest::sample::select(KEYWORDS).prop_map(|k| format!("{k}_x")),
    ]
    .prop_filter("not a keyword", |s| !KEYWORDS.contains(&s.as_str()))
}

pub fn dotted() -> impl Strategy<Value = String> {
    vec(name(), 1..=3).prop_map(|parts| parts.join("."))
}

pub fn string_value() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[a-z/ .é\"\\\\\n\t\r{}()\u{feff}]{0,12}".prop_map(|s| s),
        1 => Just("//not a comment".to_string()),
        1 => "/[a-z/_.-]{20,50}",
    ]
}

pub fn string_lit() -> impl Strategy<Value = StringLit> {
    string_value().prop_map(|value| StringLit { value, span: 0..0 })
}

pub fn ip() -> impl Strategy<Value = String> {
    prop_oneof![
        (
            0u8..=255,
            0u8..=255,
            0u8..=255,
            0u8..=255,
            proptest::option::of(0u8..=40)
        )
            .prop_map(|(a, b, c, d, len)| match len {
                Some(l) => format!("{a}.{b}.{c}.{d}/{l}"),
                None => format!("{a}.{b}.{c}.{d}"),
            }),
        proptest::sample::select(
            &[
                "::1",
                "fe80::1",
                "2001:db8::/32",
                "::ffff:10.0.0.1",
                "1:2:3:4:5:6:7:8",
                "::"
            ][..]
        )
        .prop_map(str::to_string),
    ]
}

pub fn literal() -> impl Strategy<Value = Literal> {
    prop_oneof![
        3 => string_value().prop_map(LiteralKind::Str),
        1 => "[0-9]{1,6}".prop_map(LiteralKind::Int),
        1 => ("[0-9]{1,5}", "[0-9]{1,5}").prop_map(|(a, b)| LiteralKind::Range(a, b)),
        1 => ip().prop_map(LiteralKind::Ip),
        1 => "CAP_[A-Z0-9_]{1,12}".prop_map(LiteralKind::Cap),
        1 => Just(LiteralKind::Unset),
        1 => any::<bool>().prop_map(LiteralKind::Bool),
    ]
    .prop_map(|kind| Literal { kind, span: 0..0 })
}

pub fn set_literal() -> impl Strategy<Value = SetLiteral> {
    prop_oneof![vec(literal(), 0..4), vec(literal(), 4..10)].prop_map(|elements| SetLiteral {
        elements,
        span: 0..0,
    })
}

pub fn field() -> impl Strategy<Value = FieldRef> {
    (dotted(), proptest::option::of(string_lit())).prop_map(|(n, key)| FieldRef {
        name: id(n),
        key,
        span: 0..0,
    })
}

pub const OPS: [CompareOp; 12] = [
    CompareOp::Eq,
    CompareOp::Ne,
    CompareOp::Lt,
    CompareOp::Le,
    CompareOp::Gt,
    CompareOp::Ge,
    CompareOp::In,
    CompareOp::NotIn,
    CompareOp::StartsWith,
    CompareOp::EndsWith,
    CompareOp::Matches,
    CompareOp::Has,
];

pub fn e(kind: ExprKind) -> Expr {
    Expr { kind, span: 0..0 }
}

pub fn leaf() -> impl Strategy<Value = Expr> {
    let operand = prop_oneof![
        3 => literal().prop_map(Operand::Literal),
        1 => set_literal().prop_map(Operand::Set),
        1 => dotted().prop_map(|n| Operand::Name(id(n))),
    ];
    prop_oneof![
        4 => (field(), proptest::sample::select(&OPS[..]), operand)
            .prop_map(|(field, op, operand)| e(ExprKind::Compare(Comparison { field, op: (op, 0..0), operand }))),
        1 => any::<bool>().prop_map(|b| e(ExprKind::Bool(b))),
        1 => dotted().prop_map(|n| e(ExprKind::Ref(id(n)))),
    ]
}

/// `x` where only a `not` operand / `and` operand can stand: `or` and `and`
/// need parentheses there (the parser's shape).
pub fn unary(x: Expr) -> Expr {
    match x.kind {
        ExprKind::Or(_) | ExprKind::And(_) => e(ExprKind::Paren(Box::new(x))),
        _ => x,
    }
}

pub fn or_operand(x: Expr) -> Expr {
    match x.kind {
        ExprKind::Or(_) => e(ExprKind::Paren(Box::new(x))),
        _ => x,
    }
}

/// Conditions of the shape the parser produces.
pub fn expr() -> impl Strategy<Value = Expr> {
    leaf().prop_recursive(4, 40, 4, |inner| {
        prop_oneof![
            inner
                .clone()
                .prop_map(|x| e(ExprKind::Not(Box::new(unary(x))))),
            inner.clone().prop_map(|x| e(ExprKind::Paren(Box::new(x)))),
            vec(inner.clone(), 2..5)
                .prop_map(|ops| e(ExprKind::And(ops.into_iter().map(unary).collect()))),
            vec(inner, 2..5)
                .prop_map(|ops| e(ExprKind::Or(ops.into_iter().map(or_operand).collect()))),
        ]
    })
}

pub fn action() -> impl Strategy<Value = Action> {
    proptest::sample::select(&[Action::Allow, Action::Deny, Action::Kill][..])
}

pub fn policy() -> impl Strategy<Value = Item> {
    let value = prop_oneof![
        string_lit().prop_map(AttrValue::Str),
        set_literal().prop_map(AttrValue::Set),
        name().prop_map(|n| AttrValue::Name(id(n))),
    ];
    (name(), vec((name(), value), 0..4)).prop_map(|(n, attrs)| {
        Item::Policy(PolicyDecl {
            name: id(n),
            attrs: attrs
                .into_iter()
                .map(|(n, value)| Attr { name: id(n), value })
                .collect(),
            span: 0..0,
        })
    })
}

pub fn rule() -> impl Strategy<Value = Item> {
    let audit = (
        proptest::option::of(name()),
        proptest::option::of(string_lit()),
    )
        .prop_map(|(s, message)| AuditClause {
            severity: s.map(id),
            message,
            span: 0..0,
        });
    let rate = ("[0-9]{1,4}", "[0-9]{1,3}(ms|s|m|h|d)").prop_map(|(c, p)| RateClause {
        count: id(c),
        per: id(p),
        span: 0..0,
    });
    (
        (name(), name(), expr(), proptest::option::of(expr())),
        (
            proptest::option::of(action()),
            proptest::option::of(audit),
            vec(string_lit(), 0..3),
            proptest::option::of(rate),
        ),
    )
        .prop_map(|((n, hook, when, unless), (action, audit, counts, rate))| {
            Item::Rule(RuleDecl {
                name: id(n),
                hook: id(hook),
                when,
                unless,
                action: action.map(|a| (a, 0..0)),
                audit,
                counts,
                rate,
                span: 0..0,
            })
        })
}

pub fn test_decl() -> impl Strategy<Value = Item> {
    let value = prop_oneof![3 => literal().prop_map(TestValue::Literal), 1 => set_literal().prop_map(TestValue::Set)];
    let expect = prop_oneof![
        action().prop_map(ExpectKind::Verdict),
        vec(dotted().prop_map(id), 1..4).prop_map(ExpectKind::Audit),
        Just(ExpectKind::NoAudit),
        string_lit().prop_map(ExpectKind::Count),
    ]
    .prop_map(|kind| Expectation { kind, span: 0..0 });
    (
        string_lit(),
        name(),
        vec((field(), value), 0..4),
        vec(expect, 0..4),
    )
        .prop_map(|(n, hook, fields, expects)| {
            Item::Test(TestDecl {
                name: n,
                hook: id(hook),
                fields,
                expects,
                span: 0..0,
            })
        })
}

pub fn item() -> impl Strategy<Value = Item> {
    prop_oneof![
        1 => policy(),
        1 => (name(), set_literal()).prop_map(|(n, value)| Item::Set(SetDecl { name: id(n), value, span: 0..0 })),
        1 => (name(), expr()).prop_map(|(n, body)| Item::Let(LetDecl { name: id(n), body, span: 0..0 })),
        3 => rule(),
        1 => (name(), proptest::option::of(expr()))
            .prop_map(|(hook, when)| Item::Default(DefaultDecl { hook: id(hook), when, span: 0..0 })),
        1 => test_decl(),
    ]
}

pub fn file() -> impl Strategy<Value = File> {
    vec(item(), 0..6).prop_map(|items| File { items })
}

// ---- layouts and files ---------------------------------------------------------

/// Cut formatter output (which has no comments) into tokens that may be
/// separated by any whitespace or comments. A field with an index,
/// `k8s.label["app"]`, stays one token.
pub fn tokens(text: &str) -> Vec<String> {
    let b: Vec<char> = text.chars().collect();
    let word = |c: char| c.is_alphanumeric() || matches!(c, '_' | '.' | ':' | '/');
    let string_end = |mut i: usize| {
        i += 1;
        while b[i] != '"' {
            i += if b[i] == '\\' { 2 } else { 1 };
        }
        i + 1
    };
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let start = i;
        if matches!(c, ' ' | '\n') {
            i += 1;
            continue;
        } else if c == '"' {
            i = string_end(i);
        } else if word(c) {
            while i < b.len() && word(b[i]) {
                i += 1;
            }
            if b.get(i) == Some(&'[') {
                i = string_end(i + 1) + 1;
            }
        } else if "=!<>".contains(c) && b.get(i + 1) == Some(&'=') {
            i += 2;
        } else {
            i += 1;
        }
        out.push(b[start..i].iter().collect());
    }
    out
}

pub const SEPARATORS: &[&str] = &[
    " ",
    " ",
    " ",
    "  ",
    "\n",
    "\n  ",
    "\n\n",
    "\n\n\n    ",
    "\t",
    " \r\n",
];

/// Join tokens with separators picked by `choices`; where the choice says so,
/// a comment (numbered, with `suffix`) goes between the two tokens.
pub fn messy(
    tokens: &[String],
    choices: &[u8],
    suffixes: &[String],
    with_comments: bool,
) -> String {
    let mut out = String::new();
    let mut n = 0;
    for (i, t) in tokens.iter().enumerate() {
        if i > 0 {
            let choice = choices[i % choices.len()] as usize;
            if with_comments && choice.is_multiple_of(5) {
                let text = format!("// c{n}{}", suffixes[n % suffixes.len()]);
                n += 1;
                if choice.is_multiple_of(2) {
                    out.push_str(&format!(" {text}\n"));
                } else {
                    out.push_str(&format!(
                        "\n{}{text}\n",
                        if choice.is_multiple_of(3) { "\n" } else { "" }
                    ));
                }
            } else {
                out.push_str(SEPARATORS[choice % SEPARATORS.len()]);
            }
        }
        out.push_str(t);
    }
    out
}

pub fn suffix() -> impl Strategy<Value = String> {
    "[ a-z\"/{}()=]{0,10}"
}

/// Every `.policy` file under `dir`, skipping `target` and hidden directories.
pub fn policy_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let skip = path
            .file_name()
            .is_some_and(|n| n == "target" || n.to_string_lossy().starts_with('.'));
        if path.is_dir() && !skip {
            policy_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "policy") {
            out.push(path);
        }
    }
}
