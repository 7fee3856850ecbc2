//! The checked program: names resolved, `let`s inlined, sets expanded,
//! literals validated and typed.
//!
//! This is what the compiler lowers and what the reference evaluator
//! ([`Cond::eval`]) gives meaning to. It carries no syntax, only meaning, plus
//! the spans needed to point back at the source.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use ipnet::IpNet;

use crate::ast::{Action, Span};
use crate::schema::{Field, Hook, Mode, Severity};

/// One checked source file: its policy and everything it declares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Name from the `policy` header.
    pub name: String,
    /// Span of that name in its file.
    pub name_span: Span,
    /// `description`, empty when absent.
    pub description: String,
    /// `mode`, [`Mode::Enforce`] when absent.
    pub mode: Mode,
    /// `tags`, sorted.
    pub tags: Vec<String>,
    /// Rules in source order.
    pub rules: Vec<Rule>,
    /// `default deny` scopes in source order.
    pub defaults: Vec<DefaultScope>,
    /// `test` blocks in source order.
    pub tests: Vec<TestCase>,
}

/// A checked rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// Rule name, unique in its policy.
    pub name: String,
    /// Hook it runs on.
    pub hook: Hook,
    /// `when` and not `unless`, with `let`s inlined.
    pub condition: Cond,
    /// Verdict, if any.
    pub action: Option<Action>,
    /// Whether a match is audited.
    pub audit: bool,
    /// Audit severity ([`Severity::Info`] when not given).
    pub severity: Severity,
    /// Audit message.
    pub message: Option<String>,
    /// Counters incremented on a match (`count "name"`), in source order.
    pub counts: Vec<String>,
    /// Audit rate limit, if any.
    pub rate: Option<Rate>,
    /// Span of the rule's name in its file.
    pub name_span: Span,
}

/// `rate N per PERIOD`: at most `count` audit events of the rule per period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Events allowed per period (at least 1).
    pub count: u64,
    /// Period in milliseconds (at least 1).
    pub period_ms: u64,
}

/// `default deny HOOK when COND`: events of the hook in the scope are denied
/// unless a rule allows them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DefaultScope {
    /// Name used in bundles and events: `default_deny_HOOK_N` (N counts the
    /// file's default scopes from 1).
    pub name: String,
    /// The hook.
    pub hook: Hook,
    /// The scope ([`Cond::True`] for the whole hook).
    pub condition: Cond,
    /// Span of the declaration.
    pub span: Span,
}

/// A checked `test` block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestCase {
    /// The test's name.
    pub name: String,
    /// The event.
    pub event: Event,
    /// What must happen.
    pub expects: Vec<Expect>,
    /// Span of the declaration.
    pub span: Span,
}

/// An event as the language sees it: a hook and typed field values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The hook.
    pub hook: Hook,
    /// Field values; a field absent here satisfies no test of it.
    pub fields: BTreeMap<FieldKey, Value>,
}

/// A checked expectation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expect {
    /// The verdict.
    Verdict(Action),
    /// These rules (policy name, rule name) audit the event.
    Audit(Vec<(String, String)>),
    /// No rule audits the event.
    NoAudit,
    /// This counter is incremented.
    Count(String),
}

/// A field, with its index for indexed fields (`k8s.label["app"]`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FieldKey {
    /// The field.
    pub field: Field,
    /// The index key, for [`crate::schema::FieldInfo::indexed`] fields.
    pub key: Option<String>,
}

impl FieldKey {
    /// A field without index.
    pub fn plain(field: Field) -> FieldKey {
        FieldKey { field, key: None }
    }
}

impl std::fmt::Display for FieldKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.key {
            None => f.write_str(self.field.as_str()),
            Some(k) => write!(f, "{}[{k:?}]", self.field.as_str()),
        }
    }
}

/// A condition over one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cond {
    /// Always holds.
    True,
    /// Never holds.
    False,
    /// All operands hold.
    And(Vec<Cond>),
    /// Some operand holds.
    Or(Vec<Cond>),
    /// The operand does not hold.
    Not(Box<Cond>),
    /// A test on one field.
    Test(Test),
}

/// A test of one field's value.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Test {
    /// The field.
    pub field: FieldKey,
    /// What its value must satisfy.
    pub pred: Pred,
}

/// A positive predicate on a value; negations are [`Cond::Not`].
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Pred {
    /// Equal to the value.
    Eq(Value),
    /// A member of the set (never empty as written; `<`/`>` become ranges).
    In(BTreeSet<Member>),
    /// Starts with the string (byte-wise).
    StartsWith(String),
    /// Ends with the string (byte-wise).
    EndsWith(String),
    /// Matches the glob (see [`glob_match`]).
    Glob(String),
    /// A capability set holding every one of these.
    Has(BTreeSet<String>),
    /// A relation to another field of the same event.
    Relation(RelOp, FieldKey),
}

/// Relations between two fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RelOp {
    /// `==`
    Eq,
    /// `<`
    Lt,
    /// `<=`
    Le,
}

/// A typed value.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Value {
    /// A path, string or enumeration name.
    Str(String),
    /// A number (uid, gid, port).
    Int(u64),
    /// A user or group name, resolved to an id on each node.
    Name(String),
    /// The login uid of a process that never logged in.
    Unset,
    /// A boolean.
    Bool(bool),
    /// An address.
    Ip(IpAddr),
    /// A set of capability names.
    Caps(BTreeSet<String>),
}

/// A member of a set.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Member {
    /// One value.
    Value(Value),
    /// An inclusive numeric range `lo..hi`.
    Range(u64, u64),
    /// An address block.
    Cidr(IpNet),
}

impl Member {
    /// Whether `v` is this member.
    pub fn contains(&self, v: &Value) -> bool {
        match (self, v) {
            (Member::Value(m), v) => m == v,
            (Member::Range(lo, hi), Value::Int(n)) => lo <= n && n <= hi,
            (Member::Cidr(net), Value::Ip(ip)) => net.contains(ip),
            _ => false,
        }
    }
}

/// Sets up to this size are scanned: cheaper than building the member to
/// look up.
const SCAN_SET: usize = 16;

/// Whether some member of `set` contains `v` ([`Member::contains`]). A
/// larger set is searched for `v` itself, then only its ranges and blocks
/// are asked (they sort after every value): lowering asks a set once per
/// value it names, so a scan made a set of `k` values cost `k²`
/// (docs/performance.md, "Back end").
fn set_contains(set: &BTreeSet<Member>, v: &Value) -> bool {
    if set.len() <= SCAN_SET {
        return set.iter().any(|m| m.contains(v));
    }
    set.contains(&Member::Value(v.clone()))
        || (matches!(v, Value::Int(_) | Value::Ip(_))
            && set.range(Member::Range(0, 0)..).any(|m| m.contains(v)))
}

impl Pred {
    /// Whether `value` satisfies the predicate; `other` looks up the other
    /// field of a relation.
    pub fn holds(&self, value: &Value, other: &dyn Fn(&FieldKey) -> Option<Value>) -> bool {
        match (self, value) {
            (Pred::Eq(v), value) => v == value,
            (Pred::In(set), value) => set_contains(set, value),
            (Pred::StartsWith(p), Value::Str(s)) => s.as_bytes().starts_with(p.as_bytes()),
            (Pred::EndsWith(p), Value::Str(s)) => s.as_bytes().ends_with(p.as_bytes()),
            (Pred::Glob(g), Value::Str(s)) => glob_match(g, s),
            (Pred::Has(caps), Value::Caps(have)) => caps.is_subset(have),
            (Pred::Relation(op, key), value) => match (other(key), value) {
                (Some(Value::Int(b)), Value::Int(a)) => match op {
                    RelOp::Eq => *a == b,
                    RelOp::Lt => *a < b,
                    RelOp::Le => *a <= b,
                },
                (Some(b), a) => *op == RelOp::Eq && *a == b,
                (None, _) => false,
            },
            _ => false,
        }
    }
}

impl Cond {
    /// Evaluate against an event: the meaning of the language, used as the
    /// reference the compiled tables must agree with. A field the event does
    /// not supply makes its tests false.
    pub fn eval(&self, event: &Event) -> bool {
        match self {
            Cond::True => true,
            Cond::False => false,
            Cond::And(cs) => cs.iter().all(|c| c.eval(event)),
            Cond::Or(cs) => cs.iter().any(|c| c.eval(event)),
            Cond::Not(c) => !c.eval(event),
            Cond::Test(t) => event
                .fields
                .get(&t.field)
                .is_some_and(|v| t.pred.holds(v, &|k| event.fields.get(k).cloned())),
        }
    }

    /// `a and b`, flattening nested conjunctions.
    pub fn and(a: Cond, b: Cond) -> Cond {
        let mut parts = Vec::new();
        for c in [a, b] {
            match c {
                Cond::And(cs) => parts.extend(cs),
                Cond::True => {}
                c => parts.push(c),
            }
        }
        match parts.len() {
            0 => Cond::True,
            1 => parts.pop().expect("one part"),
            _ => Cond::And(parts),
        }
    }
}

/// Glob matching, byte-wise: `*` matches any run of bytes except `/`, `**`
/// any run including `/`, `?` one byte except `/`, `[abc]`/`[a-z]`/`[!a]` one
/// byte of (or not of) a class. Everything else matches itself. Runs in
/// O(len(glob) × len(text)).
pub fn glob_match(glob: &str, text: &str) -> bool {
    let tokens = match glob_tokens(glob) {
        Ok(t) => t,
        Err(_) => return false,
    };
    let t = text.as_bytes();
    // reachable[i]: the tokens so far can match exactly t[..i].
    let mut reachable = vec![false; t.len() + 1];
    reachable[0] = true;
    for tok in &tokens {
        let mut next = vec![false; t.len() + 1];
        match tok {
            GlobToken::Star { cross_slash } => {
                // Either the star starts here (matches nothing yet), or it
                // extends the run that ended one byte earlier.
                for i in 0..=t.len() {
                    next[i] = reachable[i]
                        || (i > 0 && next[i - 1] && (*cross_slash || t[i - 1] != b'/'));
                }
            }
            GlobToken::One(set) => {
                for i in 0..t.len() {
                    if reachable[i] && set.matches(t[i]) {
                        next[i + 1] = true;
                    }
                }
            }
        }
        reachable = next;
    }
    reachable[t.len()]
}

/// One token of a parsed glob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GlobToken {
    /// `*` (not crossing `/`) or `**` (crossing).
    Star {
        /// `**`
        cross_slash: bool,
    },
    /// One byte from a class.
    One(ByteClass),
}

/// A set of bytes matched by one glob position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ByteClass {
    /// Inclusive byte ranges.
    pub ranges: Vec<(u8, u8)>,
    /// `[!…]`: match bytes outside the ranges.
    pub negated: bool,
}

impl ByteClass {
    fn matches(&self, b: u8) -> bool {
        self.ranges.iter().any(|(lo, hi)| *lo <= b && b <= *hi) != self.negated
    }
}

/// Parse a glob into tokens; `Err` names the problem (unclosed `[`, empty class).
pub fn glob_tokens(glob: &str) -> Result<Vec<GlobToken>, &'static str> {
    let b = glob.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'*' => {
                let cross = b.get(i + 1) == Some(&b'*');
                i += if cross { 2 } else { 1 };
                out.push(GlobToken::Star { cross_slash: cross });
            }
            b'?' => {
                out.push(GlobToken::One(ByteClass {
                    ranges: vec![(b'/', b'/')],
                    negated: true,
                }));
                i += 1;
            }
            b'[' => {
                let mut j = i + 1;
                let negated = matches!(b.get(j), Some(b'!') | Some(b'^'));
                if negated {
                    j += 1;
                }
                let mut ranges = Vec::new();
                let start = j;
                while j < b.len() && (b[j] != b']' || j == start) {
                    if j + 2 < b.len() && b[j + 1] == b'-' && b[j + 2] != b']' {
                        ranges.push((b[j].min(b[j + 2]), b[j].max(b[j + 2])));
                        j += 3;
                    } else {
                        ranges.push((b[j], b[j]));
                        j += 1;
                    }
                }
                if j >= b.len() {
                    return Err("`[` is not closed by `]`");
                }
                if ranges.is_empty() {
                    return Err("empty character class `[]`");
                }
                out.push(GlobToken::One(ByteClass { ranges, negated }));
                i = j + 1;
            }
            c => {
                out.push(GlobToken::One(ByteClass {
                    ranges: vec![(c, c)],
                    negated: false,
                }));
                i += 1;
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob_match("/usr/*/sudo", "/usr/bin/sudo"));
        assert!(!glob_match("/usr/*/sudo", "/usr/local/bin/sudo"));
        assert!(glob_match("/usr/**/sudo", "/usr/local/bin/sudo"));
        assert!(glob_match("/tmp/*.sh", "/tmp/x.sh"));
        assert!(!glob_match("/tmp/*.sh", "/tmp/a/x.sh"));
        assert!(glob_match("/dev/tty[0-9]", "/dev/tty3"));
        assert!(!glob_match("/dev/tty[!0-9]", "/dev/tty3"));
        assert!(glob_match("a?c", "abc"));
        assert!(!glob_match("a?c", "a/c"));
        assert!(glob_match("*", ""));
        assert!(glob_match("**", "/a/b"));
        assert!(!glob_match("/a", "/a/b"));
        assert!(glob_tokens("[abc").is_err());
    }

    #[test]
    fn large_sets_answer_as_a_scan_does() {
        // Values, ranges and blocks mixed, past the size that is scanned.
        let mut set = BTreeSet::new();
        for i in 0..40u64 {
            set.insert(Member::Value(Value::Int(i * 10)));
            set.insert(Member::Value(Value::Str(format!("/bin/b{i}"))));
        }
        set.insert(Member::Range(1000, 1999));
        set.insert(Member::Range(5, 7));
        set.insert(Member::Cidr("10.0.0.0/8".parse().unwrap()));
        set.insert(Member::Value(Value::Ip("192.168.1.1".parse().unwrap())));
        set.insert(Member::Value(Value::Unset));
        assert!(set.len() > SCAN_SET);
        let mut probes: Vec<Value> = (0..2100).map(Value::Int).collect();
        probes.extend((0..45).map(|i| Value::Str(format!("/bin/b{i}"))));
        probes.extend(
            ["10.1.2.3", "11.0.0.1", "192.168.1.1", "192.168.1.2"]
                .map(|a| Value::Ip(a.parse().unwrap())),
        );
        probes.extend([Value::Unset, Value::Bool(true), Value::Name("root".into())]);
        for v in &probes {
            let scan = set.iter().any(|m| m.contains(v));
            assert_eq!(set_contains(&set, v), scan, "{v:?}");
        }
        assert!(set_contains(&set, &Value::Int(6)));
        assert!(set_contains(&set, &Value::Int(1500)));
        assert!(!set_contains(&set, &Value::Int(2000)));
    }
}
