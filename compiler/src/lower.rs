//! Lowering: checked rules → per-hook classification tables.
//!
//! ```text
//! Cond ──globs→prefix/suffix──nnf──► literals under and/or ──dnf──► terms (one bit each)
//! terms × dimension ──evaluate at each class of values──► entries + default
//! entry vs its base ──ask the terms naming its key──► add / remove (schema 3)
//! ```
//!
//! Every literal belongs to one *dimension*: the field it tests
//! (`k8s.label["app"]` is its own dimension), or, for a relation between two
//! fields, the boolean feature `left op right`. A dimension's value space is
//! cut into classes by the values the rules mention: for strings, a value
//! either equals a mentioned exact value, or its longest mentioned prefix is
//! some `p` (and, separately, its longest mentioned suffix some `s`); for
//! integers, the elementary intervals between mentioned bounds; for addresses,
//! the longest mentioned block. Every value in one class satisfies the same
//! literals, so evaluating a term at a class's *representative* answers for
//! the whole class. Only the terms that test a dimension are evaluated and
//! listed in its sets (its `tested` terms); the others hold at every class
//! and are left implicit (schema 2, see [`crate::bundle::Dimension`]). An
//! entry is written as the change from its *base* (the class a value would
//! fall in without it: the nearest shorter prefix, the previous interval…,
//! see [`crate::bundle::Entry`]), and only the terms with a literal naming
//! the entry's key (or, for intervals, a bound between the two) can answer
//! differently there, so only those are asked (`index::Mentions`,
//! `index::IntBounds`; debug builds check every other term answers alike).
//! Both the tables and the work stay linear in the rules.
//!
//! [`runtime_unsupported`] is a separate gate: what `policyd` can load today.

use std::collections::{BTreeMap, BTreeSet};

use ipnet::IpNet;
use policy_dsl::checked::{
    glob_tokens, Cond, DefaultScope, FieldKey, GlobToken, Member, Policy, Pred, RelOp, Rule, Test,
    Value,
};
use policy_dsl::schema::{FieldType, Hook, Mode};

use crate::bundle::{
    Dimension, DimensionKind, Entry, HookTable, MaskEntry, RangeEntry, Relation, Resolve, Term,
    TermSet, VerdictMasks,
};
use crate::limits::MAX_TERMS_PER_HOOK;
use index::{DimTerms, Mentions, StringAnchors};
use policy_dsl::ast::Action;

mod index;

/// The kernel's key for the login uid `unset` ((uid_t)-1).
pub const UNSET_ID: u64 = u32::MAX as u64;

/// A test or its negation: one conjunct of a term.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Literal {
    /// The field tested.
    pub field: FieldKey,
    /// The predicate.
    pub pred: Pred,
    /// `false` for a negated test.
    pub positive: bool,
}

impl Literal {
    /// The dimension the literal is decided by: its field, or for a relation
    /// the feature `left op right`.
    pub fn dimension(&self) -> String {
        match &self.pred {
            Pred::Relation(op, other) => relation_name(&self.field, *op, other),
            _ => self.field.to_string(),
        }
    }
}

fn rel_op(op: RelOp) -> &'static str {
    match op {
        RelOp::Eq => "==",
        RelOp::Lt => "<",
        RelOp::Le => "<=",
    }
}

fn relation_name(left: &FieldKey, op: RelOp, right: &FieldKey) -> String {
    format!("{left} {} {right}", rel_op(op))
}

/// A conjunction of literals (an empty conjunction is true).
pub type Conjunction = Vec<Literal>;

/// Why lowering failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, miette::Diagnostic)]
pub enum LowerError {
    /// A hook's rules test more dimensions, or one field more capability
    /// sets, than the kernel's configuration holds.
    #[error("hook `{hook}` tests more than {max} {what}, the most the kernel holds")]
    #[diagnostic(
        code(policyc::kernel_limit),
        help("test fewer distinct fields, field relations or capability sets on this hook (several bundles on one node add up, so splitting does not help)")
    )]
    KernelLimit {
        /// The hook.
        hook: &'static str,
        /// `dimensions` or `capability sets of `user.caps``.
        what: String,
        /// The limit ([`crate::limits::MAX_DIMS_PER_HOOK`] or [`crate::limits::MAX_CAPS_SETS`]).
        max: usize,
        /// File index of the rule that crossed the limit.
        file: usize,
        /// Span of that rule's name.
        #[label("this rule crosses the limit")]
        span: miette::SourceSpan,
    },
    /// A hook's rules need more terms than the kernel mask holds.
    #[error("hook `{hook}` needs more than {max} terms, the most policyc lowers per hook")]
    #[diagnostic(
        code(policyc::too_many_terms),
        help("each `or` branch of a rule is one term; merge rules that share a verdict, or use sets (`in {{ … }}`), which cost one term whatever their size")
    )]
    TooManyTerms {
        /// The hook.
        hook: &'static str,
        /// Terms of the hook's earlier rules, before this one.
        before: usize,
        /// [`MAX_TERMS_PER_HOOK`].
        max: usize,
        /// File index of the rule that crossed the limit.
        file: usize,
        /// Span of that rule's name.
        #[label("this rule crosses the limit ({before} terms before it)")]
        span: miette::SourceSpan,
    },
    /// The rule uses something the node runtime cannot load yet (the bundle
    /// format and `policyc test` handle it).
    #[error("{what} is not loaded by the kernel runtime yet")]
    #[diagnostic(
        code(policyc::unsupported),
        help("`policyc check` accepts it and `policyc test` evaluates it, but `policyc compile` writes only bundles `policyd` loads: every hook but `module_load`; relations between ids or ports only; string literals of at most 255 bytes")
    )]
    Unsupported {
        /// What, e.g. "field `file.path`".
        what: String,
        /// File index of the declaration.
        file: usize,
        /// Span of the declaration's name.
        #[label("uses it")]
        span: miette::SourceSpan,
    },
    /// A glob that is not a prefix, a suffix or an exact value.
    #[error("glob `{glob}` cannot be compiled to the kernel's tables")]
    #[diagnostic(
        code(policyc::unsupported_glob),
        help("the kernel runs a glob as an exact value (no wildcard), a prefix (`/usr/bin/**`), a suffix (`**.conf`) or both (`/etc/**.conf`); `*`, `?` and classes elsewhere need a pattern engine it does not have. Write the test with `startswith`, `endswith` or a set")
    )]
    UnsupportedGlob {
        /// The glob.
        glob: String,
        /// File index of the declaration.
        file: usize,
        /// Span of the declaration's name.
        #[label("tests a path or string against it")]
        span: miette::SourceSpan,
    },
}

impl LowerError {
    /// Index of the file the error points into.
    pub fn file(&self) -> usize {
        match self {
            LowerError::TooManyTerms { file, .. }
            | LowerError::KernelLimit { file, .. }
            | LowerError::Unsupported { file, .. }
            | LowerError::UnsupportedGlob { file, .. } => *file,
        }
    }
}

fn span_of(sp: &policy_dsl::ast::Span) -> miette::SourceSpan {
    miette::SourceSpan::from(sp.start..sp.end)
}

/// What the node runtime (`policyd`) cannot load today, if anything: the
/// first such construct of each declaration. `policyc compile` refuses these
/// so that every bundle it writes loads; `compile_for_evaluation` (used by
/// `policyc test`) does not apply this gate. The runtime loads every hook but
/// `module_load` (no kernel program yet), every field, `default deny`,
/// `mode = monitor`, `count` and `rate`; it cannot compare non-numeric fields
/// with each other (`process.binary == parent.binary`), nor hold a
/// `process.args` literal longer than its 255-byte key.
pub fn runtime_unsupported(file: usize, policy: &Policy) -> Vec<LowerError> {
    let mut out = Vec::new();
    let at = |what: String, sp: &policy_dsl::ast::Span| LowerError::Unsupported {
        what,
        file,
        span: span_of(sp),
    };
    for rule in &policy.rules {
        let what = if rule.hook == Hook::ModuleLoad {
            Some(format!("hook `{}`", rule.hook.as_str()))
        } else {
            // A glob that is no prefix, suffix or value has its own error.
            rewrite_globs(&rule.condition)
                .ok()
                .and_then(|c| runtime_unsupported_in(&c))
        };
        if let Some(what) = what {
            out.push(at(what, &rule.name_span));
        }
    }
    for scope in &policy.defaults {
        let what = if scope.hook == Hook::ModuleLoad {
            Some(format!("hook `{}`", scope.hook.as_str()))
        } else {
            rewrite_globs(&scope.condition)
                .ok()
                .and_then(|c| runtime_unsupported_in(&c))
        };
        if let Some(what) = what {
            out.push(at(what, &scope.span));
        }
    }
    out
}

/// The kernel's per-hook limits on what rules test (see
/// [`crate::limits::MAX_DIMS_PER_HOOK`], [`crate::limits::MAX_CAPS_SETS`]):
/// one error per hook and limit, at the rule (or scope) that crosses it, in
/// file order. All `k8s.*` fields count as one dimension (the node resolves
/// them together by cgroup).
pub fn kernel_limits(policies: &[Policy]) -> Vec<LowerError> {
    use crate::limits::{MAX_CAPS_SETS, MAX_DIMS_PER_HOOK};
    fn walk(
        cond: &Cond,
        dims: &mut BTreeSet<String>,
        caps: &mut BTreeMap<String, BTreeSet<BTreeSet<String>>>,
    ) {
        match cond {
            Cond::True | Cond::False => {}
            Cond::And(cs) | Cond::Or(cs) => cs.iter().for_each(|c| walk(c, dims, caps)),
            Cond::Not(c) => walk(c, dims, caps),
            Cond::Test(Test { field, pred }) => {
                let name = match pred {
                    Pred::Relation(op, other) => relation_name(field, *op, other),
                    _ if field.field.as_str().starts_with("k8s.") => "k8s".to_string(),
                    _ => field.to_string(),
                };
                dims.insert(name);
                if let Pred::Has(set) = pred {
                    caps.entry(field.to_string())
                        .or_default()
                        .insert(set.clone());
                }
            }
        }
    }
    let mut out = Vec::new();
    for (hook, _) in Hook::ALL {
        let mut dims = BTreeSet::new();
        let mut caps: BTreeMap<String, BTreeSet<BTreeSet<String>>> = BTreeMap::new();
        let (mut dims_done, mut caps_done) = (false, false);
        let decls = policies.iter().enumerate().flat_map(|(i, p)| {
            p.rules
                .iter()
                .filter(move |r| r.hook == hook)
                .map(move |r| (i, &r.condition, &r.name_span))
                .chain(
                    p.defaults
                        .iter()
                        .filter(move |s| s.hook == hook)
                        .map(move |s| (i, &s.condition, &s.span)),
                )
        });
        for (file, cond, span) in decls {
            let cond = rewrite_globs(cond).unwrap_or_else(|_| cond.clone());
            walk(&cond, &mut dims, &mut caps);
            let at = |what: String, max: usize| LowerError::KernelLimit {
                hook: hook.as_str(),
                what,
                max,
                file,
                span: span_of(span),
            };
            if !dims_done && dims.len() > MAX_DIMS_PER_HOOK {
                dims_done = true;
                out.push(at("dimensions".into(), MAX_DIMS_PER_HOOK));
            }
            if !caps_done {
                if let Some((field, _)) = caps.iter().find(|(_, s)| s.len() > MAX_CAPS_SETS) {
                    caps_done = true;
                    out.push(at(format!("capability sets of `{field}`"), MAX_CAPS_SETS));
                }
            }
        }
    }
    out
}

/// Longest string the kernel's string keys hold (`PATH_KEY_LEN - 1`).
const MAX_KERNEL_STRING: usize = crate::limits::PATH_KEY_LEN - 1;

fn runtime_unsupported_in(cond: &Cond) -> Option<String> {
    match cond {
        Cond::True | Cond::False => None,
        Cond::And(cs) | Cond::Or(cs) => cs.iter().find_map(runtime_unsupported_in),
        Cond::Not(c) => runtime_unsupported_in(c),
        Cond::Test(Test { field, pred }) => {
            let long = |s: &str| s.len() > MAX_KERNEL_STRING;
            match pred {
                Pred::Relation(_, other) => {
                    let numeric = |f: &policy_dsl::checked::FieldKey| f.field.info().ty.is_numeric();
                    (!numeric(field) || !numeric(other)).then(|| {
                        format!("a relation between `{field}` and `{other}` (the kernel compares ids and ports only)")
                    })
                }
                Pred::Eq(Value::Str(s)) | Pred::StartsWith(s) | Pred::EndsWith(s) if long(s) => {
                    Some(format!(
                        "a `{field}` literal of {} bytes (the kernel's string keys hold {MAX_KERNEL_STRING})",
                        s.len()
                    ))
                }
                Pred::In(set) => set.iter().find_map(|m| match m {
                    Member::Value(Value::Str(s)) if long(s) => Some(format!(
                        "a `{field}` literal of {} bytes (the kernel's string keys hold {MAX_KERNEL_STRING})",
                        s.len()
                    )),
                    _ => None,
                }),
                _ => None,
            }
        }
    }
}

/// The predicate a glob is exactly equivalent to, when the kernel's tables
/// can run it: no wildcard → equality; `LIT**` → prefix; `**LIT` → suffix
/// (`**` matches any run of bytes, `/` included, so these are exact; `*`
/// stops at `/` and `?`/classes match one byte, so they are never rewritten).
/// `[c]` counts as the literal byte `c`.
pub fn glob_as(glob: &str) -> Option<Pred> {
    let tokens = glob_tokens(glob).ok()?;
    // Collapse runs of `**` (`****` is `**`).
    let mut toks: Vec<&GlobToken> = Vec::new();
    for t in &tokens {
        let cross = matches!(t, GlobToken::Star { cross_slash: true });
        if cross && matches!(toks.last(), Some(GlobToken::Star { cross_slash: true })) {
            continue;
        }
        toks.push(t);
    }
    let literal = |ts: &[&GlobToken]| -> Option<String> {
        let bytes: Option<Vec<u8>> = ts
            .iter()
            .map(|t| match t {
                GlobToken::One(c)
                    if !c.negated && c.ranges.len() == 1 && c.ranges[0].0 == c.ranges[0].1 =>
                {
                    Some(c.ranges[0].0)
                }
                _ => None,
            })
            .collect();
        String::from_utf8(bytes?).ok()
    };
    let star = |t: &GlobToken| matches!(t, GlobToken::Star { cross_slash: true });
    match toks.as_slice() {
        [] => Some(Pred::Eq(Value::Str(String::new()))),
        [rest @ .., last] if star(last) => literal(rest).map(Pred::StartsWith),
        [first, rest @ ..] if star(first) => literal(rest).map(Pred::EndsWith),
        all => literal(all).map(|l| Pred::Eq(Value::Str(l))),
    }
}

/// `LIT1**LIT2` as `startswith LIT1 and endswith LIT2`, when that is exact:
/// when no value shorter than `LIT1LIT2` can start with LIT1 and end with
/// LIT2 (the two never overlap), e.g. `/**.conf` (absolute path globs need
/// this form for suffixes).
pub fn glob_as_affixes(glob: &str) -> Option<(String, String)> {
    let (head, tail) = glob.split_once("**")?;
    let tail = tail.trim_start_matches('*');
    let (Some(Pred::Eq(Value::Str(p))), Some(Pred::Eq(Value::Str(s)))) =
        (glob_as(head), glob_as(tail))
    else {
        return None;
    };
    // Literals must also have been written without wildcards (glob_as of a
    // literal gives Eq), and must not overlap.
    let (a, b) = (p.as_bytes(), s.as_bytes());
    let overlap = (1..=a.len().min(b.len())).any(|k| a[a.len() - k..] == b[..k]);
    (!overlap && !p.is_empty() && !s.is_empty()).then_some((p, s))
}

/// `cond` with every glob replaced by its equivalent prefix, suffix or
/// equality; `Err` holds the first glob that has none.
pub fn rewrite_globs(cond: &Cond) -> Result<Cond, String> {
    Ok(match cond {
        Cond::True => Cond::True,
        Cond::False => Cond::False,
        Cond::And(cs) => Cond::And(cs.iter().map(rewrite_globs).collect::<Result<_, _>>()?),
        Cond::Or(cs) => Cond::Or(cs.iter().map(rewrite_globs).collect::<Result<_, _>>()?),
        Cond::Not(c) => Cond::Not(Box::new(rewrite_globs(c)?)),
        Cond::Test(Test {
            field,
            pred: Pred::Glob(g),
        }) => match glob_as(g) {
            Some(pred) => Cond::Test(Test {
                field: field.clone(),
                pred,
            }),
            None => {
                let (p, s) = glob_as_affixes(g).ok_or_else(|| g.clone())?;
                Cond::And(vec![
                    Cond::Test(Test {
                        field: field.clone(),
                        pred: Pred::StartsWith(p),
                    }),
                    Cond::Test(Test {
                        field: field.clone(),
                        pred: Pred::EndsWith(s),
                    }),
                ])
            }
        },
        Cond::Test(t) => Cond::Test(t.clone()),
    })
}

/// Globs of a policy that the tables cannot run: one error per declaration.
pub fn glob_errors(file: usize, policy: &Policy) -> Vec<LowerError> {
    let rules = policy.rules.iter().map(|r| (&r.condition, &r.name_span));
    let scopes = policy.defaults.iter().map(|s| (&s.condition, &s.span));
    rules
        .chain(scopes)
        .filter_map(|(c, sp)| {
            rewrite_globs(c)
                .err()
                .map(|glob| LowerError::UnsupportedGlob {
                    glob,
                    file,
                    span: span_of(sp),
                })
        })
        .collect()
}

/// A rule placed in the bundle: its global id and where it came from.
#[derive(Debug, Clone, Copy)]
pub struct RuleRef<'a> {
    /// Bundle rule id.
    pub id: u32,
    /// Index of the source file.
    pub file: usize,
    /// The checked rule.
    pub rule: &'a Rule,
}

/// A `default deny` scope placed in the bundle.
#[derive(Debug, Clone, Copy)]
pub struct ScopeRef<'a> {
    /// Bundle scope id.
    pub id: u32,
    /// Index of the source file.
    pub file: usize,
    /// The checked scope.
    pub scope: &'a DefaultScope,
}

/// Everything that decides events: rules, `default deny` scopes, and which
/// files are in `mode = monitor`.
#[derive(Debug, Clone, Default)]
pub struct Program<'a> {
    /// Rules, numbered in input order.
    pub rules: Vec<RuleRef<'a>>,
    /// Scopes, numbered in input order.
    pub scopes: Vec<ScopeRef<'a>>,
    /// Per file index: the policy is in `mode = monitor` (missing: enforce).
    pub monitor: Vec<bool>,
}

impl<'a> Program<'a> {
    /// Number the rules and scopes of all policies in input order.
    pub fn new(policies: &'a [Policy]) -> Program<'a> {
        let mut scopes = Vec::new();
        for (file, p) in policies.iter().enumerate() {
            for scope in &p.defaults {
                scopes.push(ScopeRef {
                    id: scopes.len() as u32,
                    file,
                    scope,
                });
            }
        }
        Program {
            rules: number_rules(policies),
            scopes,
            monitor: policies.iter().map(|p| p.mode == Mode::Monitor).collect(),
        }
    }

    /// Rules only, every file enforced.
    pub fn from_rules(rules: &[RuleRef<'a>]) -> Program<'a> {
        Program {
            rules: rules.to_vec(),
            ..Program::default()
        }
    }

    /// Whether file `file` is in monitor mode.
    pub fn is_monitor(&self, file: usize) -> bool {
        self.monitor.get(file).copied().unwrap_or(false)
    }
}

/// Number the rules of all policies in input order.
pub fn number_rules(policies: &[Policy]) -> Vec<RuleRef<'_>> {
    let mut out = Vec::new();
    for (file, p) in policies.iter().enumerate() {
        for rule in &p.rules {
            out.push(RuleRef {
                id: out.len() as u32,
                file,
                rule,
            });
        }
    }
    out
}

/// What a term comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    /// A rule, by bundle id.
    Rule(u32),
    /// A `default deny` scope, by bundle id.
    Scope(u32),
}

/// Build the table of every hook that has rules (every file enforced, no
/// scopes): see [`lower_program`].
///
/// # Errors
/// As [`lower_program`].
pub fn lower(rules: &[RuleRef<'_>]) -> Result<BTreeMap<Hook, HookTable>, LowerError> {
    lower_program(&Program::from_rules(rules))
}

/// Build the table of every hook that has rules or scopes.
///
/// # Errors
/// [`LowerError::TooManyTerms`] when a hook needs more than
/// [`MAX_TERMS_PER_HOOK`] terms, [`LowerError::UnsupportedGlob`] for a glob
/// the tables cannot run.
pub fn lower_program(program: &Program<'_>) -> Result<BTreeMap<Hook, HookTable>, LowerError> {
    lower_program_with_limit(program, MAX_TERMS_PER_HOOK)
}

/// [`lower_program`] with `max_terms` terms per hook instead of the kernel's
/// [`MAX_TERMS_PER_HOOK`]. The tables are the same; only the point where
/// [`LowerError::TooManyTerms`] stops lowering moves. For measuring how
/// lowering scales past today's kernel limit (`compiler/benches/back_end/`)
/// and for a larger future mask: a bundle with more terms than the kernel
/// holds does not validate and must not be written.
///
/// # Errors
/// As [`lower_program`], with `max_terms` as the limit.
pub fn lower_program_with_limit(
    program: &Program<'_>,
    max_terms: usize,
) -> Result<BTreeMap<Hook, HookTable>, LowerError> {
    let per_hook = terms_per_hook_with_limit(program, max_terms)?;
    Ok(per_hook
        .into_iter()
        .map(|(hook, terms)| (hook, hook_table(&terms, program)))
        .collect())
}

/// The terms of every hook: each rule's DNF in rule order, then each scope's.
///
/// # Errors
/// [`LowerError::TooManyTerms`] for the first declaration that takes a hook
/// past [`MAX_TERMS_PER_HOOK`]; expansion stops there, so a condition with an
/// exponential DNF costs no more than the limit.
/// [`LowerError::UnsupportedGlob`] for the first glob with no table form.
pub fn terms_per_hook(
    program: &Program<'_>,
) -> Result<BTreeMap<Hook, Vec<(Owner, Conjunction)>>, LowerError> {
    terms_per_hook_with_limit(program, MAX_TERMS_PER_HOOK)
}

/// [`terms_per_hook`] with `max_terms` terms per hook (see
/// [`lower_program_with_limit`]).
///
/// # Errors
/// As [`terms_per_hook`], with `max_terms` as the limit.
pub fn terms_per_hook_with_limit(
    program: &Program<'_>,
    max_terms: usize,
) -> Result<BTreeMap<Hook, Vec<(Owner, Conjunction)>>, LowerError> {
    let mut per_hook: BTreeMap<Hook, Vec<(Owner, Conjunction)>> = BTreeMap::new();
    let rules = program.rules.iter().map(|r| {
        (
            Owner::Rule(r.id),
            r.file,
            r.rule.hook,
            &r.rule.condition,
            &r.rule.name_span,
        )
    });
    let scopes = program.scopes.iter().map(|s| {
        (
            Owner::Scope(s.id),
            s.file,
            s.scope.hook,
            &s.scope.condition,
            &s.scope.span,
        )
    });
    for (owner, file, hook, condition, sp) in rules.chain(scopes) {
        let condition = rewrite_globs(condition).map_err(|glob| LowerError::UnsupportedGlob {
            glob,
            file,
            span: span_of(sp),
        })?;
        let terms = per_hook.entry(hook).or_default();
        let room = max_terms.saturating_sub(terms.len());
        let Some(dnf) = dnf(&condition, true, room) else {
            return Err(LowerError::TooManyTerms {
                hook: hook.as_str(),
                before: terms.len(),
                max: max_terms,
                file,
                span: span_of(sp),
            });
        };
        terms.extend(dnf.into_iter().map(|c| (owner, c)));
    }
    Ok(per_hook)
}

fn hook_table(terms: &[(Owner, Conjunction)], program: &Program<'_>) -> HookTable {
    let rules: BTreeMap<u32, &RuleRef<'_>> = program.rules.iter().map(|r| (r.id, r)).collect();
    let scopes: BTreeMap<u32, &ScopeRef<'_>> = program.scopes.iter().map(|s| (s.id, s)).collect();
    let mut verdicts = VerdictMasks::default();
    for (id, (owner, _)) in terms.iter().enumerate() {
        let id = id as u32;
        match owner {
            Owner::Rule(r) => {
                let r = rules[r];
                match r.rule.action {
                    Some(Action::Deny) => verdicts.deny.push(id),
                    Some(Action::Kill) => verdicts.kill.push(id),
                    Some(Action::Allow) => verdicts.allow.push(id),
                    None => {}
                }
                if r.rule.audit {
                    verdicts.audit.push(id);
                }
                for c in r.rule.counts.iter().collect::<BTreeSet<_>>() {
                    verdicts.count.entry(c.clone()).or_default().push(id);
                }
                if program.is_monitor(r.file) {
                    verdicts.monitor.push(id);
                }
            }
            Owner::Scope(s) => {
                verdicts.default_deny.push(id);
                if program.is_monitor(scopes[s].file) {
                    verdicts.monitor.push(id);
                }
            }
        }
    }
    // Each dimension with its terms (their literals all share field and
    // predicate kind), in name order.
    let dimensions = index::by_dimension(terms)
        .into_iter()
        .map(|(name, d)| {
            let dim = dimension(&d);
            (name, dim)
        })
        .collect();
    HookTable {
        terms: terms
            .iter()
            .enumerate()
            .map(|(id, (owner, _))| match owner {
                Owner::Rule(r) => Term {
                    id: id as u32,
                    rule: *r,
                    scope: false,
                },
                Owner::Scope(s) => Term {
                    id: id as u32,
                    rule: *s,
                    scope: true,
                },
            })
            .collect(),
        dimensions,
        verdicts,
    }
}

/// Values of `Eq` and value members of `In`.
fn mentioned_values<'t>(d: &DimTerms<'t>) -> BTreeSet<&'t Value> {
    let mut out = BTreeSet::new();
    for p in d.preds() {
        match p {
            Pred::Eq(v) => {
                out.insert(v);
            }
            Pred::In(set) => out.extend(set.iter().filter_map(|m| match m {
                Member::Value(v) => Some(v),
                _ => None,
            })),
            _ => {}
        }
    }
    out
}

/// The dimension's tables, its sets listing only its tested terms.
fn dimension(d: &DimTerms<'_>) -> Dimension {
    Dimension {
        tested: d.tested(),
        ..dimension_tables(d)
    }
}

fn dimension_tables(d: &DimTerms<'_>) -> Dimension {
    let lit = d.literal();
    if let Pred::Relation(op, other) = &lit.pred {
        let t = d.class(|_| Some(true));
        let f = d.class(|_| Some(false));
        return Dimension {
            kind: DimensionKind::Relation,
            exact: vec![
                default_based("false".into(), &f, &f),
                default_based("true".into(), &t, &f),
            ],
            default: f,
            relation: Some(Relation {
                left: lit.field.to_string(),
                op: rel_op(*op).into(),
                right: other.to_string(),
            }),
            ..Dimension::default()
        };
    }
    match lit.field.field.ty() {
        FieldType::Path => string_dimension(DimensionKind::Path, d),
        FieldType::Str { .. } => string_dimension(DimensionKind::String, d),
        FieldType::Uid | FieldType::LoginUid => int_dimension(d, Resolve::User),
        FieldType::Gid => int_dimension(d, Resolve::Group),
        FieldType::Port => int_dimension(d, Resolve::User),
        FieldType::Ip => ip_dimension(d),
        FieldType::Bool => exact_dimension(DimensionKind::Bool, d),
        FieldType::Enum(_) => exact_dimension(DimensionKind::Enum, d),
        FieldType::Caps => caps_dimension(d),
    }
}

/// Paths and strings: exact, prefix and suffix tables.
fn string_dimension(kind: DimensionKind, d: &DimTerms<'_>) -> Dimension {
    // The mentioned strings, prefixes and suffixes, each sorted and without
    // repeats (the order of the entries), collected straight from the
    // literals: the exact values used to go through a set of `Value`s first
    // (`mentioned_values`), a second tree of the same strings.
    let mut exact: BTreeSet<&str> = BTreeSet::new();
    let mut prefixes = BTreeSet::new();
    let mut suffixes = BTreeSet::new();
    for p in d.preds() {
        match p {
            Pred::Eq(Value::Str(s)) => {
                exact.insert(s.as_str());
            }
            Pred::In(set) => exact.extend(set.iter().filter_map(|m| match m {
                Member::Value(Value::Str(s)) => Some(s.as_str()),
                _ => None,
            })),
            Pred::StartsWith(s) => {
                prefixes.insert(s.as_str());
            }
            Pred::EndsWith(s) => {
                suffixes.insert(s.as_str());
            }
            _ => {}
        }
    }
    // Each class asks only the terms that can hold there (see `index`).
    let anchors = StringAnchors::new(d);
    let default = d.class_among(&anchors.below_prefix(None), prefix_truth(None));
    let suffix_default = (!suffixes.is_empty())
        .then(|| d.class_among(&anchors.above_suffix(None), suffix_truth(None)));
    let absent = d.class_among(anchors.absent(), |_| Some(false));
    let nothing = match &suffix_default {
        Some(s) => intersect(&default, s),
        None => default.clone(),
    };
    let bare = |value: &str| Entry {
        value: value.to_string(),
        add: TermSet::new(),
        remove: TermSet::new(),
    };
    let mut dim = Dimension {
        kind,
        exact: exact.iter().map(|v| bare(v)).collect(),
        prefix: prefixes.iter().map(|p| bare(p)).collect(),
        suffix: suffixes.iter().map(|s| bare(s)).collect(),
        default,
        suffix_default,
        absent: (absent != nothing).then_some(absent),
        ..Dimension::default()
    };
    // Each entry as the change from its base (schema 3): only the terms
    // naming its key can answer differently there (`index::Mentions`).
    let mentions = Mentions::new(d);
    let bases = dim.bases();
    let prefix_changes = affix_changes(d, &mentions, &dim.prefix, &bases.prefix, true);
    let suffix_changes = affix_changes(d, &mentions, &dim.suffix, &bases.suffix, false);
    for (e, (add, remove)) in dim.prefix.iter_mut().zip(prefix_changes) {
        (e.add, e.remove) = (add, remove);
    }
    for (e, (add, remove)) in dim.suffix.iter_mut().zip(suffix_changes) {
        (e.add, e.remove) = (add, remove);
    }
    for e in &mut dim.exact {
        // The base of an exact value is what its prefix and suffix sides
        // give: every affix test answered at the value, equality false.
        let value = Value::Str(e.value.clone());
        let v = e.value.as_str();
        let (add, remove) = d.delta(
            mentions.value(v),
            |pred| Some(pred.holds(&value, &|_| None)),
            |pred| match pred {
                Pred::StartsWith(q) => Some(v.starts_with(q.as_str())),
                Pred::EndsWith(q) => Some(v.ends_with(q.as_str())),
                _ => Some(false),
            },
        );
        (e.add, e.remove) = (add, remove);
    }
    dim
}

/// The changes (`add`, `remove`) of each prefix (`prefix`) or suffix entry
/// of `list` from its base entry (`parents`, `None`: the side's default):
/// the terms that name its key, asked with the side's truth at the entry
/// and at the base.
fn affix_changes(
    d: &DimTerms<'_>,
    mentions: &Mentions<'_>,
    list: &[Entry],
    parents: &[Option<usize>],
    prefix: bool,
) -> Vec<(TermSet, TermSet)> {
    list.iter()
        .zip(parents)
        .map(|(e, parent)| {
            let (at, base) = (
                Some(e.value.as_str()),
                parent.map(|p| list[p].value.as_str()),
            );
            if prefix {
                d.delta(
                    mentions.prefix(&e.value),
                    prefix_truth(at),
                    prefix_truth(base),
                )
            } else {
                d.delta(
                    mentions.suffix(&e.value),
                    suffix_truth(at),
                    suffix_truth(base),
                )
            }
        })
        .collect()
}

/// Prefix side of a non-exact value whose longest mentioned prefix is `p`
/// (None: no prefix): equality is false, `startswith q` holds iff q is a
/// prefix of p (both prefix the value, p is the longest); suffixes are the
/// other side's.
fn prefix_truth(p: Option<&str>) -> impl Fn(&Pred) -> Option<bool> + '_ {
    move |pred: &Pred| match pred {
        Pred::StartsWith(q) => Some(p.is_some_and(|p| p.starts_with(q.as_str()))),
        Pred::EndsWith(_) => None,
        _ => Some(false),
    }
}

/// Suffix side of a value whose longest mentioned suffix is `s`: only
/// `endswith` decides.
fn suffix_truth(s: Option<&str>) -> impl Fn(&Pred) -> Option<bool> + '_ {
    move |pred: &Pred| match pred {
        Pred::EndsWith(q) => Some(s.is_some_and(|s| s.ends_with(q.as_str()))),
        _ => None,
    }
}

/// `full` as a change from `base` (both sorted): `(add, remove)`.
fn delta_of(full: &[u32], base: &[u32]) -> (TermSet, TermSet) {
    let missing = |a: &[u32], b: &[u32]| -> TermSet {
        a.iter()
            .copied()
            .filter(|t| b.binary_search(t).is_err())
            .collect()
    };
    (missing(full, base), missing(base, full))
}

/// An exact entry of a kind whose base is `default` (enumerations,
/// booleans, relations, user and group names).
fn default_based(value: String, full: &[u32], default: &[u32]) -> Entry {
    let (add, remove) = delta_of(full, default);
    Entry { value, add, remove }
}

/// Sorted intersection of two sorted sets.
pub fn intersect(a: &[u32], b: &[u32]) -> TermSet {
    // One merge pass: no set to build per call (the bundle evaluator calls
    // this per event).
    let mut out = Vec::with_capacity(a.len().min(b.len()));
    let mut b = b.iter().peekable();
    for &t in a {
        while b.next_if(|x| **x < t).is_some() {}
        if b.peek() == Some(&&t) {
            out.push(t);
        }
    }
    out
}

/// Ids and ports: sorted disjoint intervals (the elementary intervals cut by
/// every mentioned bound, equal neighbours merged), names as exact entries.
fn int_dimension(d: &DimTerms<'_>, resolve: Resolve) -> Dimension {
    let mut intervals: Vec<(u64, u64)> = Vec::new();
    let mut names = BTreeSet::new();
    for v in mentioned_values(d) {
        match v {
            Value::Int(n) => intervals.push((*n, *n)),
            Value::Unset => intervals.push((UNSET_ID, UNSET_ID)),
            Value::Name(n) => {
                names.insert(n.as_str());
            }
            _ => {}
        }
    }
    for p in d.preds() {
        if let Pred::In(set) = p {
            intervals.extend(set.iter().filter_map(|m| match m {
                Member::Range(lo, hi) => Some((*lo, *hi)),
                _ => None,
            }));
        }
    }
    let mut bounds: BTreeSet<u64> = BTreeSet::new();
    for (lo, hi) in &intervals {
        bounds.insert(*lo);
        bounds.insert(hi.saturating_add(1));
    }
    let bounds: Vec<u64> = bounds.into_iter().collect();
    // Whether a mentioned interval covers a window, by a sweep: every
    // interval starts at a bound and ends just before one, so the number of
    // intervals open at a window's start says (no scan of every interval
    // per window).
    let mut opens: BTreeMap<u64, i64> = BTreeMap::new();
    for (lo, hi) in &intervals {
        *opens.entry(*lo).or_default() += 1;
        *opens.entry(hi.saturating_add(1)).or_default() -= 1;
    }
    let mut open = 0;
    let mut ranges: Vec<RangeEntry> = Vec::new();
    // Each interval as the change from the previous one (schema 3): only
    // the terms with a bound between the two can answer differently
    // (`index::IntBounds`); the first against the default (all false).
    let term_bounds = index::IntBounds::new(d, UNSET_ID);
    let mut previous: Option<(u64, Value)> = None;
    for w in bounds.windows(2) {
        let (lo, hi) = (w[0], w[1] - 1);
        open += opens[&lo];
        if open <= 0 {
            continue;
        }
        let rep = if lo == UNSET_ID {
            Value::Unset
        } else {
            Value::Int(lo)
        };
        let (add, remove) = match &previous {
            None => d.delta(
                &(0..d.len()).collect::<Vec<_>>(),
                |pred| Some(pred.holds(&rep, &|_| None)),
                |_| Some(false),
            ),
            Some((before, prev)) => d.delta(
                &term_bounds.between(*before, lo),
                |pred| Some(pred.holds(&rep, &|_| None)),
                |pred| Some(pred.holds(prev, &|_| None)),
            ),
        };
        match ranges.last_mut() {
            Some(last) if last.hi + 1 == lo && add.is_empty() && remove.is_empty() => last.hi = hi,
            _ => ranges.push(RangeEntry {
                lo,
                hi,
                add,
                remove,
            }),
        }
        previous = Some((lo, rep));
    }
    let default = d.class(|_| Some(false));
    let exact: Vec<Entry> = names
        .iter()
        .map(|n| {
            let value = Value::Name(n.to_string());
            let full = d.class(|pred| Some(pred.holds(&value, &|_| None)));
            default_based(n.to_string(), &full, &default)
        })
        .collect();
    Dimension {
        kind: DimensionKind::Int,
        resolve: (!exact.is_empty()).then_some(resolve),
        exact,
        ranges,
        default,
        ..Dimension::default()
    }
}

/// Addresses: every mentioned block (an address is a host block); the class
/// of a block is the values whose longest mentioned block it is.
fn ip_dimension(d: &DimTerms<'_>) -> Dimension {
    let host = |a: &std::net::IpAddr| IpNet::from(*a);
    let mut blocks: BTreeSet<IpNet> = BTreeSet::new();
    for v in mentioned_values(d) {
        if let Value::Ip(a) = v {
            blocks.insert(host(a));
        }
    }
    for p in d.preds() {
        if let Pred::In(set) = p {
            blocks.extend(set.iter().filter_map(|m| match m {
                Member::Cidr(n) => Some(n.trunc()),
                _ => None,
            }));
        }
    }
    // A value whose longest mentioned block is `b`: `== a` holds iff b is a's
    // host block; `in c` iff c contains all of b.
    let covers =
        |c: &IpNet, b: &IpNet| c.prefix_len() <= b.prefix_len() && c.contains(&b.network());
    let holds = |pred: &Pred, b: &IpNet| match pred {
        Pred::Eq(Value::Ip(a)) => host(a) == *b,
        Pred::In(set) => set.iter().any(|m| match m {
            Member::Value(Value::Ip(a)) => host(a) == *b,
            Member::Cidr(c) => covers(&c.trunc(), b),
            _ => false,
        }),
        _ => false,
    };
    let mut dim = Dimension {
        kind: DimensionKind::Ip,
        prefix: blocks
            .iter()
            .map(|b| Entry {
                value: b.to_string(),
                add: TermSet::new(),
                remove: TermSet::new(),
            })
            .collect(),
        default: d.class(|_| Some(false)),
        ..Dimension::default()
    };
    dim.prefix.sort_by(|a, b| a.value.cmp(&b.value));
    // Each block as the change from its nearest containing block (schema
    // 3): only the terms naming the block itself can answer differently.
    let mentions = Mentions::new(d);
    let bases = dim.bases();
    let nets: Vec<IpNet> = dim
        .prefix
        .iter()
        .map(|e| e.value.parse().expect("written from a block above"))
        .collect();
    for (i, b) in nets.iter().enumerate() {
        let parent = bases.prefix[i].map(|p| nets[p]);
        let (add, remove) = d.delta(
            mentions.block(b),
            |p| Some(holds(p, b)),
            |p| Some(parent.is_some_and(|c| holds(p, &c))),
        );
        (dim.prefix[i].add, dim.prefix[i].remove) = (add, remove);
    }
    dim
}

/// Booleans and enumerations: exact entries.
fn exact_dimension(kind: DimensionKind, d: &DimTerms<'_>) -> Dimension {
    let values = mentioned_values(d);
    let default = d.class(|_| Some(false));
    Dimension {
        kind,
        exact: values
            .iter()
            .filter_map(|v| {
                let key = match v {
                    Value::Bool(b) => b.to_string(),
                    Value::Str(s) => s.clone(),
                    _ => return None,
                };
                let full = d.class(|p| Some(p.holds(v, &|_| None)));
                Some((key.clone(), default_based(key, &full, &default)))
            })
            .collect::<BTreeMap<String, Entry>>()
            .into_values()
            .collect(),
        default,
        ..Dimension::default()
    }
}

/// Capability sets: per distinct required set, the terms when the value holds
/// it and when it does not.
fn caps_dimension(d: &DimTerms<'_>) -> Dimension {
    let masks: BTreeSet<&BTreeSet<String>> = d
        .preds()
        .filter_map(|p| match p {
            Pred::Has(s) => Some(s),
            _ => None,
        })
        .collect();
    let side = |mask: &BTreeSet<String>, held: bool| {
        d.class(|p| match p {
            Pred::Has(s) if s == mask => Some(held),
            Pred::Has(_) => None,
            _ => Some(false),
        })
    };
    Dimension {
        kind: DimensionKind::Caps,
        masks: masks
            .iter()
            .map(|m| MaskEntry {
                caps: m.iter().cloned().collect(),
                held: side(m, true),
                lacking: side(m, false),
            })
            .collect(),
        default: d.class(|_| Some(false)),
        ..Dimension::default()
    }
}

/// The LPM prefixes that cover exactly `lo..=hi` among `bits`-bit unsigned
/// integers, as (value, prefix length) with the value's host bits zero: the
/// kernel form of a [`RangeEntry`] in an LPM trie keyed by the big-endian
/// value. Disjoint intervals give disjoint prefixes, so the longest (the only)
/// match finds the interval. At most `2 * bits - 2` prefixes per interval.
///
/// # Panics
/// When `bits` is not in `1..=64` or `hi` does not fit in `bits` bits or
/// `lo > hi`.
pub fn range_prefixes(lo: u64, hi: u64, bits: u32) -> Vec<(u64, u32)> {
    assert!((1..=64).contains(&bits) && lo <= hi && (bits == 64 || hi >> bits == 0));
    let mut out = Vec::new();
    let mut lo = lo as u128;
    let hi = hi as u128;
    while lo <= hi {
        // The largest aligned block starting at lo that stays within hi.
        let mut size: u32 = if lo == 0 {
            bits
        } else {
            (lo.trailing_zeros()).min(bits)
        };
        while lo + (1u128 << size) - 1 > hi {
            size -= 1;
        }
        out.push((lo as u64, bits - size));
        lo += 1u128 << size;
    }
    out
}

/// Disjunctive normal form of `cond` (negated when `positive` is false), or
/// `None` once it would exceed `limit` terms.
pub fn dnf(cond: &Cond, positive: bool, limit: usize) -> Option<Vec<Conjunction>> {
    let out = match (cond, positive) {
        (Cond::True, true) | (Cond::False, false) => vec![Vec::new()],
        (Cond::True, false) | (Cond::False, true) => Vec::new(),
        (Cond::Test(Test { field, pred }), positive) => {
            vec![vec![Literal {
                field: field.clone(),
                pred: pred.clone(),
                positive,
            }]]
        }
        (Cond::Not(c), p) => dnf(c, !p, limit)?,
        // Or, or the negation of an And: a union of the operands' terms.
        (Cond::Or(cs), true) | (Cond::And(cs), false) => {
            let mut out = Vec::new();
            for c in cs {
                out.extend(dnf(c, positive, limit)?);
                if out.len() > limit {
                    return None;
                }
            }
            out
        }
        // And, or the negation of an Or: the cross product of the operands' terms.
        (Cond::And(cs), true) | (Cond::Or(cs), false) => {
            let mut out: Vec<Conjunction> = vec![Vec::new()];
            for c in cs {
                let rhs = dnf(c, positive, limit)?;
                if out.len().saturating_mul(rhs.len()) > limit {
                    return None;
                }
                out = out
                    .iter()
                    .flat_map(|l| {
                        rhs.iter()
                            .map(move |r| l.iter().chain(r).cloned().collect())
                    })
                    .collect();
            }
            out
        }
    };
    (out.len() <= limit).then_some(out)
}

/// A bundle of `program`'s tables for the bundle evaluator, without source
/// files: policies are named `p0`, `p1`, … by file index (in monitor mode as
/// the program says), rules keep their names (`r{id}` when unnamed), source
/// locations are `<program>:1:1`, and the digest is filled in, so the bundle
/// validates. Used by the analysis and by tests; `compile` builds its own with
/// real names and locations.
pub fn evaluation_bundle(
    program: &Program<'_>,
    hooks: BTreeMap<Hook, HookTable>,
) -> crate::bundle::PolicyBundle {
    use crate::bundle::*;
    let files = program
        .rules
        .iter()
        .map(|r| r.file + 1)
        .chain(program.scopes.iter().map(|s| s.file + 1))
        .chain([program.monitor.len()])
        .max()
        .unwrap_or(0);
    let here = SourceLocation {
        file: "<program>".into(),
        line: 1,
        column: 1,
    };
    let mut spec = BundleSpec {
        schema_version: SCHEMA_VERSION,
        compiler: format!("policyc {}", env!("CARGO_PKG_VERSION")),
        digest: String::new(),
        policies: (0..files)
            .map(|f| PolicyInfo {
                name: format!("p{f}"),
                description: String::new(),
                mode: if program.is_monitor(f) {
                    Mode::Monitor
                } else {
                    Mode::Enforce
                },
                source: String::new(),
            })
            .collect(),
        rules: program
            .rules
            .iter()
            .map(|r| RuleEntry {
                id: r.id,
                name: if r.rule.name.is_empty() {
                    format!("r{}", r.id)
                } else {
                    r.rule.name.clone()
                },
                policy: format!("p{}", r.file),
                hook: r.rule.hook,
                verdict: r.rule.action.map(Verdict::from),
                audit: r.rule.audit,
                severity: r.rule.severity,
                message: None,
                rate: None,
                source: here.clone(),
            })
            .collect(),
        scopes: program
            .scopes
            .iter()
            .map(|s| ScopeEntry {
                id: s.id,
                name: s.scope.name.clone(),
                policy: format!("p{}", s.file),
                hook: s.scope.hook,
                source: here.clone(),
            })
            .collect(),
        hooks,
        node_selector: Default::default(),
    };
    let name = "evaluation";
    spec.digest = spec.compute_digest(name);
    PolicyBundle {
        api_version: API_VERSION.into(),
        kind: KIND.into(),
        metadata: Metadata {
            name: name.into(),
            ..Default::default()
        },
        spec,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_prefixes_cover_exactly() {
        assert_eq!(range_prefixes(0, 65535, 16), vec![(0, 0)]);
        assert_eq!(range_prefixes(80, 80, 16), vec![(80, 16)]);
        assert_eq!(range_prefixes(1, 1023, 16).len(), 10);
        assert_eq!(range_prefixes(0, u32::MAX as u64, 32), vec![(0, 0)]);
        // Brute force on 8-bit keys: the prefixes cover lo..=hi and nothing else, disjointly.
        for lo in 0..=255u64 {
            for hi in lo..=255u64 {
                let ps = range_prefixes(lo, hi, 8);
                assert!(ps.len() <= 14, "{lo}..{hi}: {ps:?}");
                for v in 0..=255u64 {
                    let n = ps
                        .iter()
                        .filter(|(p, len)| *len == 0 || v >> (8 - len) == p >> (8 - len))
                        .count();
                    assert_eq!(
                        n,
                        usize::from(lo <= v && v <= hi),
                        "{lo}..{hi} at {v}: {ps:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn globs_become_prefixes_suffixes_or_values() {
        let s = |x: &str| Some(x.to_string());
        assert_eq!(glob_as("/usr/bin/**"), s("/usr/bin/").map(Pred::StartsWith));
        assert_eq!(glob_as("**.conf"), s(".conf").map(Pred::EndsWith));
        assert_eq!(
            glob_as("/etc/[p]asswd"),
            s("/etc/passwd").map(|v| Pred::Eq(Value::Str(v)))
        );
        assert_eq!(glob_as("/a/****"), s("/a/").map(Pred::StartsWith));
        assert_eq!(glob_as("**"), s("").map(Pred::StartsWith));
        for refused in [
            "/usr/bin/*",
            "*.conf",
            "/usr/**/sudo",
            "/a?",
            "**/x/**",
            "/dev/tty[0-9]",
        ] {
            assert_eq!(glob_as(refused), None, "{refused}");
        }
        assert_eq!(
            glob_as_affixes("/**.conf"),
            Some(("/".into(), ".conf".into()))
        );
        assert_eq!(
            glob_as_affixes("/etc/**.conf"),
            Some(("/etc/".into(), ".conf".into()))
        );
        // `/a/**/b` would be `startswith "/a/" and endswith "/b"`, but `/a/b`
        // has both and does not match: the literals overlap.
        assert_eq!(glob_as_affixes("/a/**/b"), None);
        assert_eq!(glob_as_affixes("/a**a"), None);
        assert_eq!(glob_as_affixes("/usr/*/**.conf"), None);
        // Exhaustive check over a small alphabet.
        for g in ["/**.c", "/a**b", "ab**ba", "a**b", "/**/"] {
            let Some((p, s)) = glob_as_affixes(g) else {
                continue;
            };
            for len in 0..6 {
                for n in 0..(3usize.pow(len)) {
                    let v: String = (0..len)
                        .map(|i| ["/", "a", "b"][(n / 3usize.pow(i)) % 3])
                        .collect::<String>();
                    let v = v.replace('b', if g.contains('c') { "c" } else { "b" });
                    let want = policy_dsl::checked::glob_match(g, &v);
                    assert_eq!(v.starts_with(&p) && v.ends_with(&s), want, "{g} on {v}");
                }
            }
        }
    }

    fn eq(v: &str) -> Cond {
        Cond::Test(Test {
            field: FieldKey::plain(policy_dsl::schema::Field::ProcessBinary),
            pred: Pred::Eq(Value::Str(v.into())),
        })
    }

    #[test]
    fn dnf_distributes_and_over_or() {
        let c = Cond::And(vec![
            Cond::Or(vec![eq("/a"), eq("/b")]),
            Cond::Not(Box::new(eq("/c"))),
        ]);
        let d = dnf(&c, true, 16).unwrap();
        assert_eq!(d.len(), 2);
        assert!(d.iter().all(|t| t.len() == 2 && !t[1].positive));
    }

    #[test]
    fn dnf_stops_at_limit() {
        let wide = |n: usize| Cond::Or((0..n).map(|i| eq(&format!("/{i}"))).collect());
        // (4 alternatives)^5 = 1024 terms.
        let c = Cond::And((0..5).map(|_| wide(4)).collect());
        assert!(dnf(&c, true, 256).is_none());
        assert_eq!(dnf(&c, true, 1024).unwrap().len(), 1024);
    }
}
