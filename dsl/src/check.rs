//! Resolution and type checks: [`ast::File`]s → [`checked::Policy`]s.
//!
//! Files are checked together: each file is one policy and its own namespace,
//! and `policy_name.decl` reaches a `set` or `let` of another file. Every
//! problem is collected and checking goes on after an error, so that all of a
//! file's diagnostics arrive in one run. A declaration with an error is left
//! out of the checked policy (and compilation fails), but the names it
//! declares still resolve, so one typo does not cascade into more errors.
//!
//! Sets are typed where they are used: `set admins = { 0, "alice" }` is
//! checked as uids when compared with `user.uid`, and an element that does not
//! fit is reported at the element. `let` bodies are checked once on their own
//! (names, types) and again for each hook that uses them (field availability).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use foldhash::{HashMap as FastMap, HashMapExt as _, HashSet as FastSet, HashSetExt as _};

use ipnet::IpNet;

use crate::analysis::{constant, Constant};
use crate::ast::{
    self, AttrValue, CompareOp, ExpectKind, Expr, ExprKind, FieldRef, Item, Literal, LiteralKind,
    Operand, SetLiteral, Span, TestValue,
};
use crate::checked::{
    glob_tokens, Cond, DefaultScope, Event, Expect, FieldKey, Member, Policy, Pred, Rate, RelOp,
    Rule, Test, TestCase, Value,
};
use crate::diagnostic::*;
use crate::schema::{
    capability_bit, Field, FieldType, Hook, Mode, Severity, CAPABILITIES, FIELD_NAMESPACES,
};
use crate::suggest::{closest, did_you_mean};

/// The longest path literal, in bytes (the kernel key is one byte longer).
pub const MAX_PATH_LITERAL_LEN: usize = 255;

/// The result of checking a set of files.
#[derive(Debug, Clone, Default)]
pub struct Checked {
    /// Per input file, its checked policy when it has a header. Declarations
    /// with errors are left out; use only when no diagnostic is an error.
    pub policies: Vec<Option<Policy>>,
    /// Every diagnostic, with the index of the file it points into, in file
    /// order and then by position.
    pub diagnostics: Vec<(usize, Error)>,
}

impl Checked {
    /// Whether any diagnostic is an error.
    pub fn has_errors(&self) -> bool {
        self.diagnostics.iter().any(|(_, d)| !d.is_warning())
    }
}

/// Check one parsed file on its own.
pub fn check(file: &ast::File) -> (Option<Policy>, Vec<Error>) {
    let mut checked = check_files(std::slice::from_ref(file));
    (
        checked.policies.pop().flatten(),
        checked.diagnostics.into_iter().map(|(_, d)| d).collect(),
    )
}

/// Check files together (cross-file references resolve by policy name).
pub fn check_files(files: &[ast::File]) -> Checked {
    let mut cx = Checker::new(files);
    let policies = (0..files.len()).map(|i| cx.file(i)).collect();
    cx.unused();
    let mut diagnostics = cx.errors;
    // The same problem inside a `let` or a set can be found from several uses.
    let mut seen = BTreeSet::new();
    diagnostics.retain(|(f, d)| seen.insert((*f, d.offset(), d.to_string())));
    diagnostics.sort_by_key(|(f, d)| (*f, d.offset()));
    Checked {
        policies,
        diagnostics,
    }
}

/// Declarations of one file, by name.
///
/// The maps borrow names from the tree and hash them with foldhash: a large
/// file looks a name up for every reference, and ordered maps of `String`s
/// spent that time in `memcmp` and SipHash. Where an order is shown to the
/// author (suggestion lists) the names are sorted at that point, on the error
/// path only.
#[derive(Default)]
struct Scope<'a> {
    policy: Option<&'a ast::PolicyDecl>,
    sets: FastMap<&'a str, &'a ast::SetDecl>,
    lets: FastMap<&'a str, &'a ast::LetDecl>,
    rules: FastMap<&'a str, &'a ast::RuleDecl>,
    /// The file's items for each checking pass, in source order.
    passes: Passes<'a>,
}

/// A file's items split by the checking pass that reads them, collected by
/// `declare`. On a large file each walk of the whole item vector costs a
/// cache miss per item; the passes after `declare` walk these short vectors
/// of references instead.
#[derive(Default)]
struct Passes<'a> {
    /// `set` and `let` declarations (checked on their own, in order).
    sets_and_lets: Vec<&'a Item>,
    /// `rule` and `default deny` declarations.
    rules_and_defaults: Vec<&'a Item>,
    /// `test` blocks.
    tests: Vec<&'a ast::TestDecl>,
}

/// The keys of a name map in sorted order, for messages.
fn sorted_names<'a, T>(map: &FastMap<&'a str, T>) -> Vec<&'a str> {
    let mut names: Vec<&'a str> = map.keys().copied().collect();
    names.sort_unstable();
    names
}

/// A resolved declaration: the file it is in and the declaration.
#[derive(Clone, Copy)]
enum Decl<'a> {
    Set(usize, &'a ast::SetDecl),
    Let(usize, &'a ast::LetDecl),
}

struct Checker<'a> {
    scopes: Vec<Scope<'a>>,
    /// Policy name → file index (first declaration wins).
    by_policy: FastMap<&'a str, usize>,
    errors: Vec<(usize, Error)>,
    /// How many of `errors` are errors (not warnings): a rule compares it
    /// before and after its checks, which must not rescan every diagnostic.
    error_total: usize,
    /// File whose text the current spans point into.
    file: usize,
    /// Sets and lets used somewhere, as (file, name borrowed from the tree).
    used: FastSet<(usize, &'a str)>,
    /// `let`s being expanded, for cycle detection.
    let_stack: Vec<(usize, &'a str)>,
    /// Counters incremented by some rule, for `expect count`.
    counters: FastSet<&'a str>,
    /// Cycles already reported, as sorted sets of `let`s.
    cycles: BTreeSet<Vec<(usize, &'a str)>>,
}

impl<'a> Checker<'a> {
    fn new(files: &'a [ast::File]) -> Self {
        let mut cx = Checker {
            scopes: Vec::new(),
            by_policy: FastMap::new(),
            errors: Vec::new(),
            error_total: 0,
            file: 0,
            used: FastSet::new(),
            let_stack: Vec::new(),
            counters: FastSet::new(),
            cycles: BTreeSet::new(),
        };
        for (i, f) in files.iter().enumerate() {
            cx.file = i;
            let scope = cx.declare(f);
            if let Some(p) = scope.policy {
                cx.by_policy.entry(p.name.name.as_str()).or_insert(i);
            }
            cx.scopes.push(scope);
        }
        cx
    }

    fn error(&mut self, e: impl Into<Error>) {
        self.error_in(self.file, e);
    }

    fn error_in(&mut self, file: usize, e: impl Into<Error>) {
        let e = e.into();
        if !e.is_warning() {
            self.error_total += 1;
        }
        self.errors.push((file, e));
    }

    /// Collect a file's declarations, reporting duplicates.
    ///
    /// One walk of the items sorts them into the checking passes; the name
    /// maps are then built from those lists, sized once. The diagnostics are
    /// the same as in one walk in source order: each namespace is still
    /// filled in source order, and diagnostics are sorted by position.
    fn declare(&mut self, f: &'a ast::File) -> Scope<'a> {
        let mut scope = Scope::default();
        let passes = &mut scope.passes;
        for item in &f.items {
            match item {
                Item::Policy(p) => match scope.policy {
                    None => scope.policy = Some(p),
                    Some(first) => self.error(DuplicatePolicy {
                        name: p.name.name.clone(),
                        span: span(&p.name.span),
                        first: span(&first.name.span),
                    }),
                },
                Item::Set(_) | Item::Let(_) => passes.sets_and_lets.push(item),
                Item::Rule(r) => {
                    passes.rules_and_defaults.push(item);
                    // Every file's counters, before any `expect count` is checked.
                    self.counters
                        .extend(r.counts.iter().map(|c| c.value.as_str()));
                }
                Item::Default(_) => passes.rules_and_defaults.push(item),
                Item::Test(t) => passes.tests.push(t),
            }
        }
        // Sets and lets share one namespace: both are used by name in conditions.
        scope.sets.reserve(scope.passes.sets_and_lets.len());
        scope.lets.reserve(scope.passes.sets_and_lets.len());
        for item in &scope.passes.sets_and_lets {
            let (kind, name) = match item {
                Item::Set(s) => ("set", &s.name),
                Item::Let(l) => ("let", &l.name),
                _ => continue,
            };
            let key = name.name.as_str();
            let first = match scope.sets.get(key) {
                Some(s) => Some(&s.name.span),
                None => scope.lets.get(key).map(|l| &l.name.span),
            };
            if let Some(first) = first {
                self.error(DuplicateName {
                    kind,
                    name: name.name.clone(),
                    span: span(&name.span),
                    first: span(first),
                });
                continue;
            }
            match item {
                Item::Set(s) => {
                    scope.sets.insert(key, s);
                }
                Item::Let(l) => {
                    scope.lets.insert(key, l);
                }
                _ => {}
            }
        }
        scope.rules.reserve(scope.passes.rules_and_defaults.len());
        for item in &scope.passes.rules_and_defaults {
            let Item::Rule(r) = item else { continue };
            if let Some(first) = scope.rules.get(r.name.name.as_str()) {
                self.error(DuplicateName {
                    kind: "rule",
                    name: r.name.name.clone(),
                    span: span(&r.name.span),
                    first: span(&first.name.span),
                });
                continue;
            }
            scope.rules.insert(&r.name.name, r);
        }
        scope
    }

    fn file(&mut self, i: usize) -> Option<Policy> {
        self.file = i;
        let passes = std::mem::take(&mut self.scopes[i].passes);
        let header = self.scopes[i].policy;
        let mut policy = Policy {
            name: String::new(),
            name_span: 0..0,
            description: String::new(),
            mode: Mode::Enforce,
            tags: Vec::new(),
            rules: Vec::new(),
            defaults: Vec::new(),
            tests: Vec::new(),
        };
        if let Some(h) = header {
            self.header(h, &mut policy);
        }
        for item in passes.sets_and_lets {
            match item {
                Item::Set(s) => self.set_decl(s),
                Item::Let(l) => {
                    // Names and types, once, independent of any hook.
                    self.file = i;
                    let _ = self.expr(&l.body, None);
                }
                _ => {}
            }
        }
        let mut defaults = 0;
        policy.rules.reserve(passes.rules_and_defaults.len());
        for item in passes.rules_and_defaults {
            self.file = i;
            match item {
                Item::Rule(r) => {
                    // The scope holds the first rule of each name.
                    let first = self.scopes[i]
                        .rules
                        .get(r.name.name.as_str())
                        .is_some_and(|f| std::ptr::eq(*f, r));
                    if let Some(rule) = self.rule(r) {
                        if first {
                            policy.rules.push(rule);
                        }
                    }
                }
                Item::Default(d) => {
                    defaults += 1;
                    if let Some(scope) = self.default_decl(d, defaults) {
                        policy.defaults.push(scope);
                    }
                }
                _ => {}
            }
        }
        let mut test_names: FastMap<&str, &Span> = FastMap::new();
        for t in passes.tests {
            self.file = i;
            if let Some(first) = test_names.get(t.name.value.as_str()) {
                self.error(DuplicateName {
                    kind: "test",
                    name: t.name.value.clone(),
                    span: span(&t.name.span),
                    first: span(first),
                });
                continue;
            }
            test_names.insert(&t.name.value, &t.name.span);
            if let Some(test) = self.test_decl(t) {
                policy.tests.push(test);
            }
        }
        match header {
            None => {
                self.error(MissingPolicy {
                    span: span(&(0..0)),
                });
                None
            }
            Some(_) => Some(policy),
        }
    }

    fn header(&mut self, h: &ast::PolicyDecl, policy: &mut Policy) {
        policy.name = h.name.name.clone();
        policy.name_span = h.name.span.clone();
        if FIELD_NAMESPACES.contains(&h.name.name.as_str()) {
            self.error(ReservedName {
                name: h.name.name.clone(),
                span: span(&h.name.span),
            });
        }
        let mut seen: HashMap<&str, &Span> = HashMap::new();
        for attr in &h.attrs {
            let name = attr.name.name.as_str();
            if let Some(first) = seen.get(name) {
                self.error(DuplicateName {
                    kind: "attribute",
                    name: name.into(),
                    span: span(&attr.name.span),
                    first: span(first),
                });
                continue;
            }
            seen.insert(name, &attr.name.span);
            let bad = |message: String, sp: &Span, help: &str| InvalidAttribute {
                message,
                span: span(sp),
                help: help.into(),
            };
            match (name, &attr.value) {
                ("description", AttrValue::Str(s)) => policy.description = s.value.clone(),
                ("mode", AttrValue::Name(m)) => match Mode::from_name(&m.name) {
                    Some(mode) => policy.mode = mode,
                    None => self.error(bad(
                        format!("unknown mode `{}`", m.name),
                        &m.span,
                        "`mode = enforce` (verdicts apply) or `mode = monitor` (deny and kill are only audited)",
                    )),
                },
                ("tags", AttrValue::Set(set)) => {
                    let mut tags = BTreeSet::new();
                    for e in &set.elements {
                        match &e.kind {
                            LiteralKind::Str(t) if !t.is_empty() => {
                                tags.insert(t.clone());
                            }
                            _ => self.error(bad("a tag must be a non-empty string".into(), &e.span, "`tags = { \"pci\", \"cis\" }`")),
                        }
                    }
                    policy.tags = tags.into_iter().collect();
                }
                ("description", v) => self.error(bad(
                    "`description` takes a string".into(),
                    attr_span(v),
                    "`description = \"what this policy is for\"`",
                )),
                ("mode", v) => self.error(bad(
                    "`mode` takes `enforce` or `monitor`".into(),
                    attr_span(v),
                    "write the mode without quotes: `mode = monitor`",
                )),
                ("tags", v) => self.error(bad("`tags` takes a set of strings".into(), attr_span(v), "`tags = { \"pci\", \"cis\" }`")),
                (other, _) => {
                    let help = did_you_mean(other, "attributes", &["description", "mode", "tags"]);
                    self.error(bad(format!("unknown policy attribute `{other}`"), &attr.name.span, &help))
                }
            }
        }
    }

    /// A set's own checks: not empty, no literal twice.
    fn set_decl(&mut self, s: &ast::SetDecl) {
        if s.value.elements.is_empty() {
            self.error(EmptySet {
                span: span(&s.value.span),
            });
        }
        self.duplicate_elements(&s.value);
    }

    /// One error per element spelled like an earlier one, pointing at the
    /// first, in source order. The first of each spelling is found in a map:
    /// a scan of the earlier elements made a set of `k` literals cost `k²`
    /// comparisons (docs/performance.md, "Back end").
    fn duplicate_elements(&mut self, set: &SetLiteral) {
        let mut seen: FastMap<&LiteralKind, &Literal> = FastMap::with_capacity(set.elements.len());
        for e in &set.elements {
            if let Some(first) = seen.get(&e.kind) {
                self.error(DuplicateElement {
                    value: literal_text(e),
                    span: span(&e.span),
                    first: span(&first.span),
                });
            } else {
                seen.insert(&e.kind, e);
            }
        }
    }

    fn rule(&mut self, r: &ast::RuleDecl) -> Option<Rule> {
        let errors_before = self.error_count();
        let hook = self.hook(&r.hook);
        let when = self.expr(&r.when, hook);
        let unless = r.unless.as_ref().map(|u| self.expr(u, hook));
        let severity = match r.audit.as_ref().and_then(|a| a.severity.as_ref()) {
            None => Severity::Info,
            Some(s) => Severity::from_name(&s.name).unwrap_or_else(|| {
                let names: Vec<&str> = Severity::ALL.iter().map(|(_, n)| *n).collect();
                self.error(UnknownSeverity {
                    name: s.name.clone(),
                    span: span(&s.span),
                    help: did_you_mean(&s.name, "severities", &names),
                });
                Severity::Info
            }),
        };
        for c in &r.counts {
            if !valid_counter_name(&c.value) {
                self.error(InvalidCounterName {
                    name: c.value.clone(),
                    span: span(&c.span),
                });
            }
        }
        let rate = r.rate.as_ref().and_then(|rate| self.rate(rate));
        if let Some(rc) = &r.rate {
            if r.audit.is_none() {
                self.error(RateWithoutAudit {
                    name: r.name.name.clone(),
                    span: span(&rc.span),
                });
            }
        }
        if r.action.is_none() && r.audit.is_none() && r.counts.is_empty() {
            self.error(RuleWithoutEffect {
                name: r.name.name.clone(),
                span: span(&r.name.span),
            });
        }
        let condition = match (when?, unless) {
            (w, None) => w,
            (w, Some(u)) => Cond::and(w, Cond::Not(Box::new(u?))),
        };
        let hook = hook?;
        // A literal `when true` is a deliberate "every event"; only derived
        // constants are suspicious.
        let literal_true = matches!(r.when.kind, ExprKind::Bool(true)) && r.unless.is_none();
        match constant(&condition) {
            Constant::True if !literal_true => self.error(AlwaysTrue {
                what: format!("rule `{}`", r.name.name),
                help: "the rule applies to every event of its hook; if that is meant, write `when true`".into(),
                span: span(&r.name.span),
                hook: hook.as_str().into(),
            }),
            Constant::False => self.error(AlwaysFalse {
                what: format!("rule `{}`", r.name.name),
                kind: "rule",
                span: span(&r.name.span),
            }),
            _ => {}
        }
        if self.error_count() > errors_before {
            return None;
        }
        Some(Rule {
            name: r.name.name.clone(),
            hook,
            condition,
            action: r.action.as_ref().map(|(a, _)| *a),
            audit: r.audit.is_some(),
            severity,
            message: r
                .audit
                .as_ref()
                .and_then(|a| a.message.as_ref())
                .map(|m| m.value.clone()),
            counts: r.counts.iter().map(|c| c.value.clone()).collect(),
            rate,
            name_span: r.name.span.clone(),
        })
    }

    fn error_count(&self) -> usize {
        self.error_total
    }

    fn rate(&mut self, rate: &ast::RateClause) -> Option<Rate> {
        let count: u64 = match rate.count.name.parse() {
            Ok(n) if n >= 1 => n,
            _ => {
                self.error(InvalidRate {
                    reason: "the count must be at least 1".into(),
                    span: span(&rate.count.span),
                });
                return None;
            }
        };
        let text = &rate.per.name;
        let digits_end = text
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len());
        let unit_ms: u64 = match &text[digits_end..] {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            _ => 86_400_000,
        };
        match text[..digits_end]
            .parse::<u64>()
            .ok()
            .and_then(|n| n.checked_mul(unit_ms))
        {
            Some(ms) if ms >= 1 => Some(Rate {
                count,
                period_ms: ms,
            }),
            Some(_) => {
                self.error(InvalidRate {
                    reason: "the period must be longer than zero".into(),
                    span: span(&rate.per.span),
                });
                None
            }
            None => {
                self.error(InvalidRate {
                    reason: "the period is too long".into(),
                    span: span(&rate.per.span),
                });
                None
            }
        }
    }

    fn default_decl(&mut self, d: &ast::DefaultDecl, n: usize) -> Option<DefaultScope> {
        let errors_before = self.error_count();
        let hook = self.hook(&d.hook);
        let condition = match &d.when {
            None => Some(Cond::True),
            Some(w) => self.expr(w, hook),
        };
        let (hook, condition) = (hook?, condition?);
        let what = format!("`default deny {}`", hook.as_str());
        match (&d.when, constant(&condition)) {
            (Some(w), Constant::True) if !matches!(w.kind, ExprKind::Bool(true)) => self.error(AlwaysTrue {
                what: what.clone(),
                help: "the scope covers every event of the hook; if that is meant, drop the `when`".into(),
                span: span(&d.hook.span),
                hook: hook.as_str().into(),
            }),
            (Some(_), Constant::False) => self.error(AlwaysFalse { what, kind: "scope", span: span(&d.hook.span) }),
            _ => {}
        }
        if self.error_count() > errors_before {
            return None;
        }
        Some(DefaultScope {
            name: format!("default_deny_{}_{n}", hook.as_str()),
            hook,
            condition,
            span: d.span.clone(),
        })
    }

    fn test_decl(&mut self, t: &ast::TestDecl) -> Option<TestCase> {
        let errors_before = self.error_count();
        let hook = self.hook(&t.hook);
        let mut fields = BTreeMap::new();
        let mut seen: HashMap<String, &Span> = HashMap::new();
        for (fref, value) in &t.fields {
            let Some(key) = self.field_key(fref, hook) else {
                continue;
            };
            if let Some(first) = seen.get(&key.to_string()) {
                self.error(DuplicateName {
                    kind: "field",
                    name: key.to_string(),
                    span: span(&fref.span),
                    first: span(first),
                });
                continue;
            }
            seen.insert(key.to_string(), &fref.span);
            let ty = key.field.ty();
            let v = match value {
                TestValue::Literal(l) => self.value(l, ty, &key),
                TestValue::Set(set) if ty == FieldType::Caps => {
                    let caps: Option<BTreeSet<String>> =
                        set.elements.iter().map(|e| self.capability(e)).collect();
                    caps.map(Value::Caps)
                }
                TestValue::Set(set) => {
                    self.error(TypeMismatch {
                        expected: ty.describe().into(),
                        found: "a set",
                        span: span(&set.span),
                        help: format!("an event holds one value for `{key}`"),
                    });
                    None
                }
            };
            if let Some(v) = v {
                fields.insert(key, v);
            }
        }
        let mut expects = Vec::new();
        let mut verdict: Option<&Span> = None;
        for e in &t.expects {
            match &e.kind {
                ExpectKind::Verdict(a) => {
                    if let Some(first) = verdict {
                        self.error(ConflictingExpectations {
                            span: span(&e.span),
                            first: span(first),
                        });
                    }
                    verdict = Some(&e.span);
                    expects.push(Expect::Verdict(*a));
                }
                ExpectKind::NoAudit => expects.push(Expect::NoAudit),
                ExpectKind::Count(c) => {
                    if !self.counters.contains(c.value.as_str()) {
                        let mut known: Vec<&str> = self.counters.iter().copied().collect();
                        known.sort_unstable();
                        let help = if known.is_empty() {
                            "no rule has a `count` clause".to_string()
                        } else {
                            did_you_mean(&c.value, "counters", &known)
                        };
                        self.error(UnknownCounter {
                            name: c.value.clone(),
                            span: span(&c.span),
                            help,
                        });
                    }
                    expects.push(Expect::Count(c.value.clone()));
                }
                ExpectKind::Audit(names) => {
                    let rules: Option<Vec<(String, String)>> =
                        names.iter().map(|n| self.rule_ref(n)).collect();
                    if let Some(rules) = rules {
                        expects.push(Expect::Audit(rules));
                    }
                }
            }
        }
        let hook = hook?;
        if self.error_count() > errors_before {
            return None;
        }
        Some(TestCase {
            name: t.name.value.clone(),
            event: Event { hook, fields },
            expects,
            span: t.span.clone(),
        })
    }

    /// Resolve `rule` or `policy.rule` to (policy name, rule name).
    fn rule_ref(&mut self, name: &ast::Ident) -> Option<(String, String)> {
        let (file, rule) = match name.name.rsplit_once('.') {
            Some((p, r)) => (self.by_policy.get(p).copied(), r),
            None => (Some(self.file), name.name.as_str()),
        };
        let found = file.filter(|f| self.scopes[*f].rules.contains_key(rule));
        match found {
            Some(f) => Some((
                self.scopes[f]
                    .policy
                    .map(|p| p.name.name.clone())
                    .unwrap_or_default(),
                rule.to_string(),
            )),
            None => {
                let names: Vec<&str> = file
                    .map(|f| sorted_names(&self.scopes[f].rules))
                    .unwrap_or_default();
                let help = did_you_mean(rule, "rules", &names);
                self.error(UnknownRule {
                    name: name.name.clone(),
                    span: span(&name.span),
                    help,
                });
                None
            }
        }
    }

    fn hook(&mut self, h: &ast::Ident) -> Option<Hook> {
        Hook::from_name(&h.name).or_else(|| {
            let names: Vec<&str> = Hook::ALL.iter().map(|(_, n)| *n).collect();
            self.error(UnknownHook {
                name: h.name.clone(),
                span: span(&h.span),
                help: did_you_mean(&h.name, "hooks", &names),
            });
            None
        })
    }

    /// Check a condition. With `hook` absent (an unknown hook, or a `let`
    /// checked on its own) fields are checked for existence and type only.
    fn expr(&mut self, e: &Expr, hook: Option<Hook>) -> Option<Cond> {
        match &e.kind {
            ExprKind::And(es) | ExprKind::Or(es) => {
                // Every operand is checked, so that all their errors are
                // reported, even after one has failed.
                let mut cs = Vec::with_capacity(es.len());
                let mut all_ok = true;
                for x in es {
                    match self.expr(x, hook) {
                        Some(c) if all_ok => cs.push(c),
                        Some(_) => {}
                        None => all_ok = false,
                    }
                }
                if !all_ok {
                    return None;
                }
                Some(if matches!(e.kind, ExprKind::And(_)) {
                    Cond::And(cs)
                } else {
                    Cond::Or(cs)
                })
            }
            ExprKind::Not(x) => Some(Cond::Not(Box::new(self.expr(x, hook)?))),
            ExprKind::Paren(x) => self.expr(x, hook),
            ExprKind::Bool(b) => Some(if *b { Cond::True } else { Cond::False }),
            ExprKind::Ref(name) => self.reference(name, hook),
            ExprKind::Compare(c) => self.comparison(c, hook),
        }
    }

    /// A bare name as a condition: a boolean field, or a `let`.
    fn reference(&mut self, name: &ast::Ident, hook: Option<Hook>) -> Option<Cond> {
        if is_field_name(&name.name) {
            let fref = FieldRef {
                name: name.clone(),
                key: None,
                span: name.span.clone(),
            };
            let key = self.field_key(&fref, hook)?;
            if key.field.ty() != FieldType::Bool {
                self.error(NotACondition {
                    name: name.name.clone(),
                    what: format!("a field holding {}", key.field.ty().describe()),
                    span: span(&name.span),
                    help: format!("compare it: `{} == …`", name.name),
                });
                return None;
            }
            return Some(Cond::Test(Test {
                field: key,
                pred: Pred::Eq(Value::Bool(true)),
            }));
        }
        match self.resolve(name) {
            Some(Decl::Let(file, l)) => self.expand_let(file, l, name, hook),
            Some(Decl::Set(file, s)) => {
                // The set resolved by its last segment, which is its name.
                self.used.insert((file, s.name.name.as_str()));
                self.error(NotACondition {
                    name: name.name.clone(),
                    what: "a set".into(),
                    span: span(&name.span),
                    help: format!("test membership: `FIELD in {}`", name.name),
                });
                None
            }
            None => {
                let help = self.suggest_decl(name, |s| sorted_names(&s.lets), "conditions");
                self.error(UnknownName {
                    name: name.name.clone(),
                    span: span(&name.span),
                    help,
                });
                None
            }
        }
    }

    fn expand_let(
        &mut self,
        file: usize,
        l: &'a ast::LetDecl,
        used_at: &ast::Ident,
        hook: Option<Hook>,
    ) -> Option<Cond> {
        let key = (file, l.name.name.as_str());
        self.used.insert(key);
        if let Some(pos) = self.let_stack.iter().position(|k| *k == key) {
            let mut members = self.let_stack[pos..].to_vec();
            members.sort();
            // One report per cycle, whichever `let` the walk entered it from.
            if self.cycles.insert(members) {
                let chain: Vec<String> = self.let_stack[pos..]
                    .iter()
                    .map(|(_, n)| n.to_string())
                    .chain([l.name.name.clone()])
                    .collect();
                self.error(LetCycle {
                    name: l.name.name.clone(),
                    chain: chain.join(" -> "),
                    span: span(&used_at.span),
                });
            }
            return None;
        }
        self.let_stack.push(key);
        let saved = self.file;
        self.file = file;
        let cond = self.expr(&l.body, hook);
        self.file = saved;
        self.let_stack.pop();
        cond
    }

    /// Resolve `name` or `policy.name` to a set or let.
    fn resolve(&self, name: &ast::Ident) -> Option<Decl<'a>> {
        let (file, local) = match name.name.rsplit_once('.') {
            Some((p, n)) => (*self.by_policy.get(p)?, n),
            None => (self.file, name.name.as_str()),
        };
        let scope = &self.scopes[file];
        if let Some(s) = scope.sets.get(local) {
            return Some(Decl::Set(file, s));
        }
        scope.lets.get(local).map(|l| Decl::Let(file, l))
    }

    /// "did you mean" over the declarations of the scope `name` points into.
    fn suggest_decl(
        &mut self,
        name: &ast::Ident,
        names: impl Fn(&Scope<'a>) -> Vec<&'a str>,
        what: &str,
    ) -> String {
        let (file, local, prefix) = match name.name.rsplit_once('.') {
            Some((p, n)) => match self.by_policy.get(p) {
                Some(f) => (*f, n, format!("{p}.")),
                None => {
                    let policies = sorted_names(&self.by_policy);
                    return did_you_mean(p, "policies", &policies);
                }
            },
            None => (self.file, name.name.as_str(), String::new()),
        };
        let candidates = names(&self.scopes[file]);
        if let Some(meant) = closest(local, candidates.iter().copied()) {
            // The declaration the author probably meant is not "unused":
            // one error is enough for one typo.
            self.used.insert((file, meant));
            return format!("did you mean `{prefix}{meant}`?");
        }
        if candidates.is_empty() {
            return format!(
                "declare it with `set` or `let`; there are none for {what} in this policy"
            );
        }
        let list = candidates
            .iter()
            .map(|c| format!("`{prefix}{c}`"))
            .collect::<Vec<_>>()
            .join(", ");
        format!("declared for {what}: {list}")
    }

    /// Resolve a field reference: known, on the hook, indexed when it must be.
    fn field_key(&mut self, f: &FieldRef, hook: Option<Hook>) -> Option<FieldKey> {
        let Some(field) = Field::from_name(&f.name.name) else {
            let names: Vec<&str> = match hook {
                Some(h) => h.fields().iter().map(|f| f.as_str()).collect(),
                None => Field::ALL.iter().map(|f| f.as_str()).collect(),
            };
            let all: Vec<&str> = Field::ALL.iter().map(|f| f.as_str()).collect();
            let help = match closest(&f.name.name, all.iter().copied()) {
                Some(c) => format!("did you mean `{c}`?"),
                None => did_you_mean(
                    &f.name.name,
                    &format!(
                        "fields of `{}`",
                        hook.map(Hook::as_str).unwrap_or("any hook")
                    ),
                    &names,
                ),
            };
            self.error(UnknownField {
                name: f.name.name.clone(),
                hook: hook.map(Hook::as_str).unwrap_or("any hook").into(),
                span: span(&f.name.span),
                help,
            });
            return None;
        };
        let info = field.info();
        let mut ok = true;
        if let Some(h) = hook {
            if !info.hooks.contains(&h) {
                let hooks = info
                    .hooks
                    .iter()
                    .map(|h| format!("`{}`", h.as_str()))
                    .collect::<Vec<_>>()
                    .join(", ");
                self.error(FieldNotOnHook {
                    field: info.name.into(),
                    hook: h.as_str().into(),
                    span: span(&f.span),
                    help: format!("`{}` is supplied by {hooks}", info.name),
                });
                ok = false;
            }
        }
        match (&f.key, info.indexed) {
            (None, true) => {
                self.error(FieldIndex {
                    message: format!("`{}` needs a key", info.name),
                    span: span(&f.span),
                    help: format!("write `{}[\"app\"]`", info.name),
                });
                ok = false;
            }
            (Some(k), false) => {
                self.error(FieldIndex {
                    message: format!("`{}` takes no key", info.name),
                    span: span(&k.span),
                    help: format!("write `{}` alone", info.name),
                });
                ok = false;
            }
            (Some(k), true) => {
                if let Err(why) = valid_label_key(&k.value) {
                    self.error(FieldIndex {
                        message: format!("`{}` is not a Kubernetes label key: {why}", k.value),
                        span: span(&k.span),
                        help: "label keys are an optional DNS prefix and `/`, then 1 to 63 characters of letters, digits, `-`, `_` and `.`".into(),
                    });
                    ok = false;
                }
            }
            (None, false) => {}
        }
        ok.then(|| FieldKey {
            field,
            key: f.key.as_ref().map(|k| k.value.clone()),
        })
    }

    fn comparison(&mut self, c: &ast::Comparison, hook: Option<Hook>) -> Option<Cond> {
        let key = self.field_key(&c.field, hook);
        let (op, op_span) = c.op.clone();
        let Some(key) = key else {
            // Still check the operand's names so their errors are not lost.
            if let Operand::Name(n) = &c.operand {
                if !is_field_name(&n.name) && self.resolve(n).is_none() {
                    let help = self.suggest_decl(n, |s| sorted_names(&s.sets), "sets");
                    self.error(UnknownSet {
                        name: n.name.clone(),
                        span: span(&n.span),
                        help,
                    });
                } else if let Some(Decl::Set(f, s)) = self.resolve(n) {
                    self.used.insert((f, s.name.name.as_str()));
                }
            }
            return None;
        };
        let ty = key.field.ty();
        if !operator_applies(op, ty) {
            self.error(OperatorNotApplicable {
                op: op.as_str(),
                field: key.to_string(),
                ty: ty.describe(),
                span: span(&op_span),
                help: format!("operators for {}: {}", ty.describe(), operators_for(ty)),
            });
            return None;
        }
        let is_relation = matches!(&c.operand, Operand::Name(n) if is_field_name(&n.name));
        let pred = match &c.operand {
            Operand::Name(n) if is_relation => self.relation(&key, op, &op_span, n, hook),
            operand => self.operand(&key, op, &op_span, operand),
        }?;
        let negate = matches!(op, CompareOp::Ne | CompareOp::NotIn)
            || (is_relation && matches!(op, CompareOp::Gt | CompareOp::Ge));
        let test = Cond::Test(Test { field: key, pred });
        Some(if negate {
            Cond::Not(Box::new(test))
        } else {
            test
        })
    }

    /// `field OP other_field`.
    fn relation(
        &mut self,
        key: &FieldKey,
        op: CompareOp,
        op_span: &Span,
        other: &ast::Ident,
        hook: Option<Hook>,
    ) -> Option<Pred> {
        let fref = FieldRef {
            name: other.clone(),
            key: None,
            span: other.span.clone(),
        };
        let other_key = self.field_key(&fref, hook)?;
        let (a, b) = (key.field.ty(), other_key.field.ty());
        if !a.comparable_with(b) {
            self.error(TypeMismatch {
                expected: a.describe().into(),
                found: b.describe(),
                span: span(&other.span),
                help: format!("`{key}` can be compared only with fields of the same type"),
            });
            return None;
        }
        // a > b is b < a: the relation is stored from the left field's view,
        // so `>`/`>=` swap into `<`/`<=` on the other field.
        Some(match op {
            CompareOp::Eq | CompareOp::Ne => Pred::Relation(RelOp::Eq, other_key),
            CompareOp::Lt => Pred::Relation(RelOp::Lt, other_key),
            CompareOp::Le => Pred::Relation(RelOp::Le, other_key),
            // x > y is not (x <= y); x >= y is not (x < y): `comparison`
            // negates these, keeping the left field first.
            CompareOp::Gt => Pred::Relation(RelOp::Le, other_key),
            CompareOp::Ge => Pred::Relation(RelOp::Lt, other_key),
            _ => {
                self.error(OperandType {
                    op: op.as_str(),
                    expected: "a value or a set",
                    found: "a field",
                    span: span(&other.span),
                    op_span: span(op_span),
                    help: "fields can be related with `==`, `!=`, `<` and `<=`".into(),
                });
                return None;
            }
        })
    }

    /// `field OP literal | set | set-name`.
    fn operand(
        &mut self,
        key: &FieldKey,
        op: CompareOp,
        op_span: &Span,
        operand: &Operand,
    ) -> Option<Pred> {
        let ty = key.field.ty();
        let set_op = matches!(op, CompareOp::In | CompareOp::NotIn);
        // The set's literal and the file its spans point into.
        let set: Option<(usize, &SetLiteral)> = match operand {
            Operand::Set(s) => {
                self.duplicate_elements(s);
                Some((self.file, s))
            }
            Operand::Name(n) => match self.resolve(n) {
                Some(Decl::Set(f, s)) => {
                    self.used.insert((f, s.name.name.as_str()));
                    Some((f, &s.value))
                }
                Some(Decl::Let(f, l)) => {
                    self.used.insert((f, l.name.name.as_str()));
                    self.error(OperandType {
                        op: op.as_str(),
                        expected: "a set",
                        found: "a `let` condition",
                        span: span(&n.span),
                        op_span: span(op_span),
                        help: format!("use the condition on its own: `… and {}`", n.name),
                    });
                    return None;
                }
                None => {
                    let help = self.suggest_decl(n, |s| sorted_names(&s.sets), "sets");
                    self.error(UnknownSet {
                        name: n.name.clone(),
                        span: span(&n.span),
                        help,
                    });
                    return None;
                }
            },
            Operand::Literal(_) => None,
        };
        match (op, set, operand) {
            (CompareOp::Has, Some((file, s)), _) => {
                let saved = std::mem::replace(&mut self.file, file);
                let caps: Option<BTreeSet<String>> =
                    s.elements.iter().map(|e| self.capability(e)).collect();
                self.file = saved;
                if s.elements.is_empty() {
                    self.error_in(
                        file,
                        EmptySet {
                            span: span(&s.span),
                        },
                    );
                    return None;
                }
                caps.map(Pred::Has)
            }
            (CompareOp::Has, None, Operand::Literal(l)) => {
                self.capability(l).map(|c| Pred::Has(BTreeSet::from([c])))
            }
            (_, Some((file, s)), _) if set_op => {
                if s.elements.is_empty() {
                    self.error_in(
                        file,
                        EmptySet {
                            span: span(&s.span),
                        },
                    );
                    return None;
                }
                let saved = std::mem::replace(&mut self.file, file);
                let members = set_of(s.elements.iter().map(|e| self.member(e, ty, key)));
                self.file = saved;
                members.map(Pred::In)
            }
            (_, None, Operand::Literal(l)) if set_op => match &l.kind {
                // `in 10.0.0.0/8`, `in 1..1024`: one block or range.
                LiteralKind::Range(..) | LiteralKind::Ip(_) => self
                    .member(l, ty, key)
                    .map(|m| Pred::In(BTreeSet::from([m]))),
                _ => {
                    self.error(OperandType {
                        op: op.as_str(),
                        expected: "a set, a range or a CIDR block",
                        found: literal_kind_name(&l.kind),
                        span: span(&l.span),
                        op_span: span(op_span),
                        help: format!(
                            "write `{key} {} {{ {} }}` or use `==`",
                            op.as_str(),
                            literal_text(l)
                        ),
                    });
                    None
                }
            },
            (_, Some(_), _) => {
                self.error(OperandType {
                    op: op.as_str(),
                    expected: "a single value",
                    found: "a set",
                    span: span(&operand.span()),
                    op_span: span(op_span),
                    help: format!("use `in` to test membership: `{key} in …`"),
                });
                None
            }
            (CompareOp::Eq | CompareOp::Ne, None, Operand::Literal(l)) => match &l.kind {
                LiteralKind::Range(..) => {
                    self.error(OperandType {
                        op: op.as_str(),
                        expected: "a single value",
                        found: "a range",
                        span: span(&l.span),
                        op_span: span(op_span),
                        help: format!("use `in` for a range: `{key} in {}`", literal_text(l)),
                    });
                    None
                }
                LiteralKind::Ip(text) if text.contains('/') => {
                    self.error(OperandType {
                        op: op.as_str(),
                        expected: "a single address",
                        found: "a CIDR block",
                        span: span(&l.span),
                        op_span: span(op_span),
                        help: format!("use `in` for a block: `{key} in {text}`"),
                    });
                    None
                }
                _ => self.value(l, ty, key).map(Pred::Eq),
            },
            (
                CompareOp::Lt | CompareOp::Le | CompareOp::Gt | CompareOp::Ge,
                None,
                Operand::Literal(l),
            ) => {
                let n = match self.value(l, ty, key)? {
                    Value::Int(n) => n,
                    _ => {
                        self.error(TypeMismatch {
                            expected: format!("{} as a number", ty.describe()),
                            found: literal_kind_name(&l.kind),
                            span: span(&l.span),
                            help: "ordering compares numeric ids and ports; names are resolved on each node".into(),
                        });
                        return None;
                    }
                };
                let max = ty.max_number();
                // Ordering becomes a range; an empty one is a constant false,
                // reported by the always-false check.
                let range = match op {
                    CompareOp::Lt if n == 0 => return Some(Pred::In(BTreeSet::new())),
                    CompareOp::Lt => (0, n - 1),
                    CompareOp::Le => (0, n),
                    CompareOp::Gt if n >= max => return Some(Pred::In(BTreeSet::new())),
                    CompareOp::Gt => (n + 1, max),
                    _ => (n, max),
                };
                Some(Pred::In(BTreeSet::from([Member::Range(range.0, range.1)])))
            }
            (
                CompareOp::StartsWith | CompareOp::EndsWith | CompareOp::Matches,
                None,
                Operand::Literal(l),
            ) => self.string_pattern(l, op, ty, key),
            _ => None,
        }
    }

    /// Operand of `startswith`, `endswith`, `matches` on a path or string.
    fn string_pattern(
        &mut self,
        l: &Literal,
        op: CompareOp,
        ty: FieldType,
        key: &FieldKey,
    ) -> Option<Pred> {
        let LiteralKind::Str(s) = &l.kind else {
            self.error(TypeMismatch {
                expected: "a string".into(),
                found: literal_kind_name(&l.kind),
                span: span(&l.span),
                help: format!("`{}` takes a string in double quotes", op.as_str()),
            });
            return None;
        };
        let lit = TextLit {
            value: s,
            span: &l.span,
        };
        match op {
            CompareOp::StartsWith => {
                if ty == FieldType::Path {
                    self.path_literal(&lit, PathUse::Prefix)
                        .then(|| Pred::StartsWith(s.clone()))
                } else {
                    self.string_len(&lit, ty, key)
                        .then(|| Pred::StartsWith(s.clone()))
                }
            }
            CompareOp::EndsWith => {
                let limit = if ty == FieldType::Path {
                    FieldType::Str {
                        max: MAX_PATH_LITERAL_LEN,
                    }
                } else {
                    ty
                };
                if s.is_empty() {
                    self.error(TypeMismatch {
                        expected: "a non-empty suffix".into(),
                        found: "an empty string",
                        span: span(&l.span),
                        help: "every value ends with the empty string; remove the test".into(),
                    });
                    return None;
                }
                self.string_len(&lit, limit, key)
                    .then(|| Pred::EndsWith(s.clone()))
            }
            _ => {
                if let Err(reason) = glob_tokens(s) {
                    self.error(InvalidGlob {
                        reason: reason.into(),
                        span: span(&l.span),
                    });
                    return None;
                }
                if ty == FieldType::Path {
                    self.path_literal(&lit, PathUse::Glob)
                        .then(|| Pred::Glob(s.clone()))
                } else {
                    self.string_len(
                        &lit,
                        FieldType::Str {
                            max: MAX_PATH_LITERAL_LEN,
                        },
                        key,
                    )
                    .then(|| Pred::Glob(s.clone()))
                }
            }
        }
    }

    /// One element of a set (or the single operand of `in`) as a member of `ty`.
    fn member(&mut self, l: &Literal, ty: FieldType, key: &FieldKey) -> Option<Member> {
        match (&l.kind, ty) {
            (LiteralKind::Range(a, b), t) if t.is_numeric() => {
                let lo = self.number(a, t, &l.span)?;
                let hi = self.number(b, t, &l.span)?;
                if lo > hi {
                    self.error(EmptyRange {
                        text: format!("{a}..{b}"),
                        lo: b.clone(),
                        hi: a.clone(),
                        span: span(&l.span),
                    });
                    return None;
                }
                Some(Member::Range(lo, hi))
            }
            (LiteralKind::Ip(text), FieldType::Ip) => {
                self.address(text, &l.span, true).map(|net| match net {
                    AddrOrNet::Addr(a) => Member::Value(Value::Ip(a)),
                    AddrOrNet::Net(n) => Member::Cidr(n),
                })
            }
            _ => self.value(l, ty, key).map(Member::Value),
        }
    }

    /// A single literal as a value of `ty`.
    fn value(&mut self, l: &Literal, ty: FieldType, key: &FieldKey) -> Option<Value> {
        let mismatch = |cx: &mut Self, help: String| {
            cx.error(TypeMismatch {
                expected: expected_text(ty),
                found: literal_kind_name(&l.kind),
                span: span(&l.span),
                help,
            });
            None
        };
        match (&l.kind, ty) {
            (LiteralKind::Str(s), FieldType::Path) => {
                let lit = TextLit {
                    value: s,
                    span: &l.span,
                };
                self.path_literal(&lit, PathUse::Exact)
                    .then(|| Value::Str(s.clone()))
            }
            (LiteralKind::Str(s), FieldType::Str { .. }) => {
                let lit = TextLit {
                    value: s,
                    span: &l.span,
                };
                self.string_len(&lit, ty, key)
                    .then(|| Value::Str(s.clone()))
            }
            (LiteralKind::Str(s), FieldType::Enum(values)) => {
                if values.contains(&s.as_str()) {
                    Some(Value::Str(s.clone()))
                } else {
                    self.error(UnknownValue {
                        value: s.clone(),
                        field: key.to_string(),
                        span: span(&l.span),
                        help: did_you_mean(s, "values", values),
                    });
                    None
                }
            }
            (LiteralKind::Int(n), t) if t.is_numeric() => {
                self.number(n, t, &l.span).map(Value::Int)
            }
            (LiteralKind::Str(name), FieldType::Uid | FieldType::LoginUid | FieldType::Gid) => {
                if valid_account_name(name) {
                    Some(Value::Name(name.clone()))
                } else {
                    self.error(InvalidAccountName {
                        name: name.clone(),
                        span: span(&l.span),
                    });
                    None
                }
            }
            (LiteralKind::Unset, FieldType::LoginUid) => Some(Value::Unset),
            (LiteralKind::Unset, _) => mismatch(
                self,
                "`unset` applies only to `user.auid`, the login uid".into(),
            ),
            (LiteralKind::Bool(b), FieldType::Bool) => Some(Value::Bool(*b)),
            (LiteralKind::Ip(text), FieldType::Ip) => match self.address(text, &l.span, false)? {
                AddrOrNet::Addr(a) => Some(Value::Ip(a)),
                AddrOrNet::Net(_) => None,
            },
            (LiteralKind::Cap(_), FieldType::Caps) => {
                self.capability(l).map(|c| Value::Caps(BTreeSet::from([c])))
            }
            (_, FieldType::Port) => {
                mismatch(self, "ports are numbers without quotes, e.g. `443`".into())
            }
            (_, FieldType::Ip) => mismatch(
                self,
                "addresses are written without quotes, e.g. `10.0.0.1` or `10.0.0.0/8` after `in`"
                    .into(),
            ),
            (_, FieldType::Bool) => mismatch(
                self,
                format!("write `{key} == true`, or use `{key}` alone as a condition"),
            ),
            (_, FieldType::Caps) => mismatch(self, format!("write `{key} has CAP_SYS_ADMIN`")),
            (_, FieldType::Path | FieldType::Str { .. } | FieldType::Enum(_)) => {
                mismatch(self, "write the value in double quotes".into())
            }
            (_, FieldType::Uid | FieldType::LoginUid | FieldType::Gid) => mismatch(
                self,
                "ids are numbers (`0`) or names in quotes (`\"root\"`)".into(),
            ),
        }
    }

    fn number(&mut self, text: &str, ty: FieldType, sp: &Span) -> Option<u64> {
        let max = ty.max_number();
        match text.parse::<u64>() {
            Ok(n) if n <= max => Some(n),
            _ => {
                self.error(NumberOutOfRange {
                    value: text.into(),
                    ty: ty.describe(),
                    max,
                    span: span(sp),
                });
                None
            }
        }
    }

    fn capability(&mut self, l: &Literal) -> Option<String> {
        match &l.kind {
            LiteralKind::Cap(name) if capability_bit(name).is_some() => Some(name.clone()),
            LiteralKind::Cap(name) => {
                let names: Vec<&str> = CAPABILITIES.iter().map(|(n, _)| *n).collect();
                let help = match closest(name, names.iter().copied()) {
                    Some(c) => format!("did you mean `{c}`?"),
                    None => "see capabilities(7) for the list".into(),
                };
                self.error(UnknownCapability {
                    name: name.clone(),
                    span: span(&l.span),
                    help,
                });
                None
            }
            other => {
                self.error(TypeMismatch {
                    expected: "a capability".into(),
                    found: literal_kind_name(other),
                    span: span(&l.span),
                    help: "capabilities are written without quotes, e.g. `CAP_SYS_ADMIN`".into(),
                });
                None
            }
        }
    }

    fn address(&mut self, text: &str, sp: &Span, allow_net: bool) -> Option<AddrOrNet> {
        let bad = |cx: &mut Self, reason: &str, help: String| {
            cx.error(InvalidAddress {
                text: text.into(),
                reason: reason.into(),
                span: span(sp),
                help,
            });
            None
        };
        if text.contains('/') {
            let Ok(net) = text.parse::<IpNet>() else {
                return bad(
                    self,
                    "not an address block",
                    "write an address and a prefix length, e.g. `10.0.0.0/8` or `fd00::/8`".into(),
                );
            };
            if !allow_net {
                return None;
            }
            if net.trunc() != net {
                return bad(
                    self,
                    "host bits are set",
                    format!("the block is `{}`", net.trunc()),
                );
            }
            Some(AddrOrNet::Net(net))
        } else {
            match text.parse() {
                Ok(a) => Some(AddrOrNet::Addr(a)),
                Err(_) => bad(
                    self,
                    "not an IPv4 or IPv6 address",
                    "e.g. `169.254.169.254` or `::1`".into(),
                ),
            }
        }
    }

    fn string_len(&mut self, lit: &TextLit, ty: FieldType, key: &FieldKey) -> bool {
        let FieldType::Str { max } = ty else {
            return true;
        };
        if lit.value.len() > max {
            let help = match key.field {
                Field::ProcessName => "the kernel keeps the first 15 bytes of a process name (`comm`): a longer literal never matches; compare `process.binary` instead".into(),
                _ => format!("the kernel holds at most {max} bytes of `{key}`: a longer literal never matches"),
            };
            self.error(StringTooLong {
                field: key.to_string(),
                len: lit.value.len(),
                max,
                span: span(lit.span),
                help,
            });
            return false;
        }
        true
    }

    fn path_literal(&mut self, lit: &TextLit, usage: PathUse) -> bool {
        let v = lit.value;
        if !v.starts_with('/') {
            self.error(RelativePath {
                value: v.to_string(),
                span: span(lit.span),
                help: "the kernel reports canonical absolute paths, so a relative path never matches; write the full path, e.g. `/usr/bin/sudo`".into(),
            });
            return false;
        }
        if v.len() > MAX_PATH_LITERAL_LEN {
            self.error(PathTooLong {
                len: v.len(),
                max: MAX_PATH_LITERAL_LEN,
                span: span(lit.span),
            });
            return false;
        }
        let prefix = usage != PathUse::Exact;
        let problem = if v.contains('\0') {
            Some("contains a NUL byte".to_string())
        } else {
            let trailing_slash = v.len() > 1 && v.ends_with('/');
            let mut comps: Vec<&str> = v[1..].split('/').collect();
            if trailing_slash {
                comps.pop();
            }
            if v == "/" {
                (!prefix).then(|| "`/` is a directory, not a file".to_string())
            } else if trailing_slash && !prefix {
                Some("ends in `/`, so it names a directory, not a file".to_string())
            } else if comps.iter().any(|c| c.is_empty()) {
                Some("has an empty component (`//`)".to_string())
            } else if let Some(c) = comps.iter().enumerate().find_map(|(i, c)| {
                // A prefix may end in a partial name such as `/usr/bin/.`; only
                // whole components are checked.
                let last_partial =
                    usage == PathUse::Prefix && !trailing_slash && i == comps.len() - 1;
                (!last_partial && (*c == "." || *c == "..")).then_some(*c)
            }) {
                Some(format!("has a `{c}` component"))
            } else {
                None
            }
        };
        if let Some(problem) = problem {
            self.error(NonCanonicalPath {
                value: v.to_string(),
                span: span(lit.span),
                help: match canonical(v, prefix) {
                    Some(c) if c != v => format!("the kernel reports canonical paths; write `{c}`"),
                    _ => "the kernel reports canonical paths; write the path without `.`, `..` or `//`".into(),
                },
                problem,
            });
            return false;
        }
        true
    }

    /// Warnings for sets and lets no rule uses.
    fn unused(&mut self) {
        for (i, scope) in self.scopes.iter().enumerate() {
            for (name, s) in &scope.sets {
                if !self.used.contains(&(i, *name)) {
                    self.errors.push((
                        i,
                        UnusedSet {
                            name: name.to_string(),
                            span: span(&s.name.span),
                        }
                        .into(),
                    ));
                }
            }
            for (name, l) in &scope.lets {
                if !self.used.contains(&(i, *name)) {
                    self.errors.push((
                        i,
                        UnusedLet {
                            name: name.to_string(),
                            span: span(&l.name.span),
                        }
                        .into(),
                    ));
                }
            }
        }
    }
}

/// `iter.collect::<Option<BTreeSet<T>>>()` (stops at the first `None`),
/// inserting one element at a time: `FromIterator` first gathers the
/// elements into a vector and sorts it, an allocation and a sort too many
/// for the few elements of a set literal.
fn set_of<T: Ord>(iter: impl Iterator<Item = Option<T>>) -> Option<BTreeSet<T>> {
    let mut set = BTreeSet::new();
    for element in iter {
        set.insert(element?);
    }
    Some(set)
}

/// A string literal's text and span, borrowed from the tree: the checks of
/// a literal need no copy of it.
struct TextLit<'s> {
    value: &'s str,
    span: &'s Span,
}

enum AddrOrNet {
    Addr(std::net::IpAddr),
    Net(IpNet),
}

/// How a path literal is used, which decides what is canonical.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PathUse {
    /// `==`, `in`: a whole path.
    Exact,
    /// `startswith`: may end in `/` or mid-name.
    Prefix,
    /// `matches`: may end in `/`.
    Glob,
}

fn attr_span(v: &AttrValue) -> &Span {
    match v {
        AttrValue::Str(s) => &s.span,
        AttrValue::Set(s) => &s.span,
        AttrValue::Name(n) => &n.span,
    }
}

/// Whether a dotted name starts like a field (`process.…`, `k8s.…`).
fn is_field_name(name: &str) -> bool {
    name.split('.')
        .next()
        .is_some_and(|first| FIELD_NAMESPACES.contains(&first))
        && name.contains('.')
}

fn operator_applies(op: CompareOp, ty: FieldType) -> bool {
    use CompareOp::*;
    match ty {
        FieldType::Path | FieldType::Str { .. } => {
            matches!(op, Eq | Ne | In | NotIn | StartsWith | EndsWith | Matches)
        }
        FieldType::Uid | FieldType::LoginUid | FieldType::Gid | FieldType::Port => {
            matches!(op, Eq | Ne | Lt | Le | Gt | Ge | In | NotIn)
        }
        FieldType::Ip | FieldType::Enum(_) => matches!(op, Eq | Ne | In | NotIn),
        FieldType::Caps => matches!(op, Has),
        FieldType::Bool => matches!(op, Eq | Ne),
    }
}

fn operators_for(ty: FieldType) -> String {
    use CompareOp::*;
    let all = [
        Eq, Ne, Lt, Le, Gt, Ge, In, NotIn, StartsWith, EndsWith, Matches, Has,
    ];
    all.iter()
        .filter(|op| operator_applies(**op, ty))
        .map(|op| format!("`{}`", op.as_str()))
        .collect::<Vec<_>>()
        .join(", ")
}

fn expected_text(ty: FieldType) -> String {
    match ty {
        FieldType::Port => "a port (a number from 0 to 65535)".into(),
        FieldType::Uid | FieldType::Gid => {
            format!("{} (a number or a name in quotes)", ty.describe())
        }
        FieldType::LoginUid => "a login user id (a number, a name in quotes, or `unset`)".into(),
        FieldType::Enum(values) => format!(
            "one of {}",
            values
                .iter()
                .map(|v| format!("`\"{v}\"`"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        t => t.describe().into(),
    }
}

fn literal_kind_name(k: &LiteralKind) -> &'static str {
    match k {
        LiteralKind::Str(_) => "a string",
        LiteralKind::Int(_) => "a number",
        LiteralKind::Range(..) => "a range",
        LiteralKind::Ip(t) if t.contains('/') => "a CIDR block",
        LiteralKind::Ip(_) => "an address",
        LiteralKind::Cap(_) => "a capability",
        LiteralKind::Unset => "`unset`",
        LiteralKind::Bool(_) => "a boolean",
    }
}

/// A literal as the author wrote it (strings re-quoted).
pub fn literal_text(l: &Literal) -> String {
    match &l.kind {
        LiteralKind::Str(s) => format!("{s:?}"),
        LiteralKind::Int(n) => n.clone(),
        LiteralKind::Range(a, b) => format!("{a}..{b}"),
        LiteralKind::Ip(t) | LiteralKind::Cap(t) => t.clone(),
        LiteralKind::Unset => "unset".into(),
        LiteralKind::Bool(b) => b.to_string(),
    }
}

/// Whether `name` can be a user or group name: 1 to 32 letters, digits,
/// `_`, `-` and `.`, not starting with `-` or a digit.
pub fn valid_account_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= 32
        && !b[0].is_ascii_digit()
        && b[0] != b'-'
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'.'))
}

fn valid_counter_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'.' | b':'))
}

/// Kubernetes label key: `[prefix/]name`, prefix a DNS subdomain (≤ 253),
/// name 1–63 of `[A-Za-z0-9._-]` starting and ending alphanumeric.
fn valid_label_key(key: &str) -> Result<(), &'static str> {
    let (prefix, name) = match key.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    if let Some(p) = prefix {
        let ok = !p.is_empty()
            && p.len() <= 253
            && p.split('.').all(|l| {
                !l.is_empty()
                    && l.bytes()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
                    && !l.starts_with('-')
                    && !l.ends_with('-')
            });
        if !ok {
            return Err("the prefix is not a DNS subdomain");
        }
    }
    let b = name.as_bytes();
    if b.is_empty() || b.len() > 63 {
        return Err("the name must be 1 to 63 characters");
    }
    if !b[0].is_ascii_alphanumeric() || !b[b.len() - 1].is_ascii_alphanumeric() {
        return Err("the name must start and end with a letter or digit");
    }
    if !b
        .iter()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
    {
        return Err("the name may hold only letters, digits, `-`, `_` and `.`");
    }
    Ok(())
}

/// The canonical spelling of a path literal, if `.`/`..`/empty components can
/// be removed without leaving the root.
fn canonical(v: &str, prefix: bool) -> Option<String> {
    let mut out: Vec<&str> = Vec::new();
    for c in v.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                out.pop()?;
            }
            c => out.push(c),
        }
    }
    let mut s = format!("/{}", out.join("/"));
    if prefix && v.ends_with('/') && s != "/" {
        s.push('/');
    }
    Some(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parser::parse;

    fn codes(src: &str) -> Vec<String> {
        let (file, mut errors) = parse(src);
        let (_, more) = check(&file);
        errors.extend(more);
        errors
            .iter()
            .map(|e| {
                miette::Diagnostic::code(e)
                    .map(|c| c.to_string())
                    .unwrap_or_default()
            })
            .collect()
    }

    const HEADER: &str = "policy p { description = \"d\" }\n";

    #[test]
    fn valid_file_has_no_diagnostics() {
        let src = format!(
            "{HEADER}set s = {{ \"/usr/bin/sudo\" }}\nlet admin = user.uid == 0 and process.interactive\n\
             rule r on exec {{ when process.binary in s unless admin audit }}\n\
             rule c on connect {{ when net.daddr in 169.254.169.254/32 and net.dport == 80 deny }}\n\
             default deny exec when k8s.namespace == \"locked\"\n\
             test \"t\" {{ exec {{ process.binary = \"/usr/bin/sudo\", user.uid = 1000 }} expect audit r expect allow }}"
        );
        assert!(codes(&src).is_empty(), "{:?}", codes(&src));
    }

    #[test]
    fn duplicates_in_a_large_set_are_each_reported_once() {
        // Every repeat is an error, a third spelling of the same value too;
        // distinct spellings of one number (`7`, `07`) are not repeats here.
        let members: Vec<String> = (0..2000).map(|i| format!("\"/bin/b{i}\"")).collect();
        let src = format!(
            "{HEADER}set s = {{ {}, \"/bin/b5\", \"/bin/b1999\", \"/bin/b5\" }}\n\
             rule r on exec {{ when process.binary in s and user.uid in {{ 7, 07, 7 }} audit }}\n",
            members.join(", ")
        );
        let dups = codes(&src)
            .into_iter()
            .filter(|c| c == "policyc::duplicate_element")
            .count();
        assert_eq!(dups, 4);
    }

    #[test]
    fn every_error_in_a_file_is_reported() {
        let src = format!(
            "{HEADER}rule a on exce {{ when process.binary == \"/x\" deny }}\n\
             rule b on exec {{ when process.binray == \"/x\" deny }}\n\
             rule c on exec {{ when process.binary in sudo_bins deny }}\n\
             rule d on exec {{ when process.binary == \"x\" deny }}\n\
             rule e on exec {{ when file.path == \"/etc/shadow\" deny }}\n"
        );
        assert_eq!(
            codes(&src),
            [
                "policyc::unknown_hook",
                "policyc::unknown_field",
                "policyc::unknown_set",
                "policyc::relative_path",
                "policyc::field_not_on_hook"
            ]
        );
    }

    #[test]
    fn let_cycles_are_reported() {
        let src = format!(
            "{HEADER}let a = b\nlet b = a or user.uid == 0\nrule r on exec {{ when a audit }}"
        );
        assert!(
            codes(&src).contains(&"policyc::let_cycle".to_string()),
            "{:?}",
            codes(&src)
        );
    }

    #[test]
    fn typed_literals() {
        let cases = [
            ("net.dport == \"80\"", "policyc::type_mismatch"),
            ("net.dport == 70000", "policyc::number_out_of_range"),
            ("net.daddr in 10.0.0.1/8", "policyc::invalid_address"),
            ("net.daddr == 10.0.0.0/8", "policyc::operand_type"),
            ("user.caps has CAP_SYS_ADMN", "policyc::unknown_capability"),
            ("net.protocol == \"sctp\"", "policyc::unknown_value"),
            (
                "user.uid startswith \"1\"",
                "policyc::operator_not_applicable",
            ),
            ("user.uid in 10..1", "policyc::empty_range"),
        ];
        for (cond, code) in cases {
            let hook = if cond.contains("net.") {
                "connect"
            } else {
                "exec"
            };
            let src = format!("{HEADER}rule r on {hook} {{ when {cond} audit }}");
            assert_eq!(codes(&src), [code], "{cond}");
        }
    }

    #[test]
    fn canonical_paths() {
        assert_eq!(
            canonical("/usr//bin/./sudo", false).as_deref(),
            Some("/usr/bin/sudo")
        );
        assert_eq!(
            canonical("/usr/lib/../bin/", true).as_deref(),
            Some("/usr/bin/")
        );
        assert_eq!(canonical("/..", false), None);
        let src = format!(
            "{HEADER}rule r on exec {{ when process.binary startswith \"/usr/bin/.\" audit }}"
        );
        assert!(codes(&src).is_empty());
        let src =
            format!("{HEADER}rule r on exec {{ when process.binary == \"/usr/bin/\" audit }}");
        assert_eq!(codes(&src), ["policyc::non_canonical_path"]);
    }

    #[test]
    fn not_in_and_ne_become_negations() {
        let (file, _) = parse(&format!(
            "{HEADER}rule r on exec {{ when process.binary != \"/a\" audit }}"
        ));
        let (policy, errors) = check(&file);
        assert!(errors.is_empty());
        let rule = &policy.unwrap().rules[0];
        assert!(matches!(&rule.condition, Cond::Not(t) if matches!(**t, Cond::Test(_))));
    }

    #[test]
    fn unless_is_and_not() {
        let (file, _) = parse(&format!(
            "{HEADER}rule r on exec {{ when process.binary == \"/a\" unless user.uid == 0 audit }}"
        ));
        let (policy, errors) = check(&file);
        assert!(errors.is_empty(), "{errors:?}");
        let Cond::And(parts) = &policy.unwrap().rules[0].condition else {
            panic!()
        };
        assert!(matches!(parts[1], Cond::Not(_)));
    }

    #[test]
    fn constant_conditions_warn() {
        let src = format!("{HEADER}rule r on exec {{ when process.binary == \"/a\" and process.binary == \"/b\" audit }}");
        assert_eq!(codes(&src), ["policyc::always_false"]);
        let src = format!("{HEADER}rule r on exec {{ when process.binary == \"/a\" or process.binary != \"/a\" audit }}");
        assert_eq!(codes(&src), ["policyc::always_true"]);
        let src = format!("{HEADER}rule r on exec {{ when true audit }}");
        assert!(codes(&src).is_empty());
    }

    #[test]
    fn labels_and_keys() {
        assert!(valid_label_key("app").is_ok());
        assert!(valid_label_key("app.kubernetes.io/name").is_ok());
        assert!(valid_label_key("-bad").is_err());
        assert!(valid_label_key("Bad.Prefix/x").is_err());
    }
}
