//! Reference evaluators: what a policy decides for one event.
//!
//! Two independent readings that must agree on every input:
//! - [`eval_program`] (and [`eval_rules`]) applies the checked rules' and
//!   scopes' conditions directly: the meaning of the language.
//! - [`eval_bundle`] runs the bundle's tables the way the kernel does (one
//!   lookup per dimension, AND across dimensions, verdict masks): a Rust
//!   mirror of `bpf-templates/`. It reads only the bundle. An [`Evaluator`]
//!   is the same algorithm with the bundle's tables indexed once, for many
//!   events (time per event flat in the number of rules).
//!
//! Decision (deny-overrides), over the *enforced* rules and scopes (those of
//! `mode = enforce` policies): a matching `kill` → kill; else a matching
//! `deny` → deny; else a matching `allow` → allow; else a matching
//! `default deny` scope → deny; else allow. The same decision over every rule
//! and scope, monitor ones included, is the *would-be* verdict. `audit` and
//! `count` apply whatever the verdict; a matching `deny`/`kill` rule of a
//! monitor policy is audited ("would deny") instead of enforced.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::IpAddr;
use std::sync::OnceLock;

use ipnet::IpNet;
use policy_dsl::checked::{Event, Value};

use crate::bundle::FastMap;
use crate::bundle::{
    AffixIndex, BlockIndex, Dimension, DimensionKind, Entry, EntryBases, HookTable, PolicyBundle,
    RangeSnapshots, TermSet, Verdict,
};
use crate::limits::MAX_PATH_LITERAL_LEN;
use crate::lower::{Program, RuleRef, UNSET_ID};
use policy_dsl::ast::Action;
use policy_dsl::schema::Hook;

/// What a policy decides for an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The enforced verdict: from rules and scopes of `mode = enforce`
    /// policies (`allow` when none decides).
    pub verdict: Verdict,
    /// The verdict if every policy were enforced (monitor ones included);
    /// equal to `verdict` when no monitor policy decides otherwise.
    pub would_verdict: Verdict,
    /// Ids of every rule that matched, ascending.
    pub matched: Vec<u32>,
    /// Ids of matched rules that are audited, ascending: rules with `audit`,
    /// and `deny`/`kill` rules of monitor policies (audited would-deny).
    pub audit: Vec<u32>,
    /// Ids of matched `deny`/`kill` rules of monitor policies, ascending:
    /// verdicts that were not enforced.
    pub would_deny: Vec<u32>,
    /// Ids of matched `default deny` scopes (any mode), ascending.
    pub scopes: Vec<u32>,
    /// Counters incremented (`count "name"` of matched rules), sorted, unique.
    pub counters: Vec<String>,
}

/// A matched rule as the decision sees it.
#[derive(Debug, Clone, Copy)]
struct Matched {
    action: Option<Action>,
    audit: bool,
    monitor: bool,
}

fn verdict_of(actions: impl Iterator<Item = Option<Action>> + Clone, scope: bool) -> Verdict {
    let has = |a: Action| actions.clone().any(|x| x == Some(a));
    if has(Action::Kill) {
        Verdict::Kill
    } else if has(Action::Deny) || (!has(Action::Allow) && scope) {
        Verdict::Deny
    } else {
        Verdict::Allow
    }
}

/// Combine matched rules (id → how it acts, ascending by id, unique) and
/// matched scopes (id → monitor, ascending, unique) into an outcome.
fn decide(rules: &[(u32, Matched)], scopes: &[(u32, bool)], counters: Vec<String>) -> Outcome {
    let enforced = rules
        .iter()
        .filter(|(_, m)| !m.monitor)
        .map(|(_, m)| m.action);
    let verdict = verdict_of(enforced, scopes.iter().any(|(_, m)| !m));
    let would_verdict = verdict_of(rules.iter().map(|(_, m)| m.action), !scopes.is_empty());
    let would_deny_rule =
        |m: &Matched| m.monitor && matches!(m.action, Some(Action::Deny | Action::Kill));
    Outcome {
        verdict,
        would_verdict,
        matched: rules.iter().map(|(id, _)| *id).collect(),
        audit: rules
            .iter()
            .filter(|(_, m)| m.audit || would_deny_rule(m))
            .map(|(id, _)| *id)
            .collect(),
        would_deny: rules
            .iter()
            .filter(|(_, m)| would_deny_rule(m))
            .map(|(id, _)| *id)
            .collect(),
        scopes: scopes.iter().map(|(id, _)| *id).collect(),
        counters,
    }
}

/// The language's meaning for rules alone (every policy enforced, no scopes).
pub fn eval_rules(rules: &[RuleRef<'_>], event: &Event) -> Outcome {
    eval_program(&Program::from_rules(rules), event)
}

/// The language's meaning: evaluate each rule's and scope's condition on the
/// event.
pub fn eval_program(program: &Program<'_>, event: &Event) -> Outcome {
    let mut rules = BTreeMap::new();
    let mut counters = BTreeSet::new();
    for r in program
        .rules
        .iter()
        .filter(|r| r.rule.hook == event.hook && r.rule.condition.eval(event))
    {
        rules.insert(
            r.id,
            Matched {
                action: r.rule.action,
                audit: r.rule.audit,
                monitor: program.is_monitor(r.file),
            },
        );
        counters.extend(r.rule.counts.iter().cloned());
    }
    let scopes = program
        .scopes
        .iter()
        .filter(|s| s.scope.hook == event.hook && s.scope.condition.eval(event))
        .map(|s| (s.id, program.is_monitor(s.file)))
        .collect::<BTreeMap<u32, bool>>();
    decide(
        &rules.into_iter().collect::<Vec<_>>(),
        &scopes.into_iter().collect::<Vec<_>>(),
        counters.into_iter().collect(),
    )
}

/// The kernel's algorithm over the bundle's tables, for one event.
///
/// Prepares the event's hook (see [`Evaluator`]) and evaluates: the
/// preparation costs about the size of the hook's tables, so to evaluate
/// more than a few events against one bundle, make one [`Evaluator`] and
/// call [`Evaluator::eval`] per event (time per event flat in the number
/// of rules).
pub fn eval_bundle(bundle: &PolicyBundle, event: &Event) -> Outcome {
    Evaluator::new(bundle).eval(event)
}

/// Terms that match: the intersection over the dimensions of each one's
/// lookup (each as [`dimension_lookup`] gives it), ascending.
///
/// Prepares the hook's index each call (see [`Evaluator`], whose
/// [`Evaluator::matched_terms`] is the per-event form).
pub fn matched_terms(table: &HookTable, event: &Event) -> BTreeSet<u32> {
    HookIndex::new(table)
        .matched_terms(event)
        .into_iter()
        .collect()
}

/// A bundle prepared for evaluating many events: [`eval_bundle`] with the
/// table lookups indexed once per hook, so that an event costs about its
/// number of fields, the hook's dimensions and the terms it matches, not
/// the number of rules.
///
/// A hook's index is built on the first event of that hook (about the size
/// of its tables: hash maps of the exact, prefix, suffix and CIDR entries,
/// a bit set of each dimension's tested terms, each term's verdict flags
/// and counters) and kept as long as the evaluator. Per event:
/// - exact values: one hash lookup (the bundle stores them sorted, which
///   costs a binary search of string comparisons, about log₂ of the
///   entries);
/// - longest prefix or suffix: one hash lookup per distinct entry length
///   up to the value's length, longest first (bounded by the value's
///   length, not the number of entries); CIDR blocks likewise per distinct
///   prefix length of the address's family;
/// - ranges (`int`) and capability masks: as in [`lookup_value`], a binary
///   search over the intervals and a pass over the masks (their number is
///   that of distinct literals, not of rules);
/// - matched terms: every term minus, per dimension, the tested terms its
///   lookup lacks (`all − ∪_d (tested_d − lookup_d)`, stored sets holding
///   tested terms only), from the dimension with the smallest full set (its
///   lookup plus its untested terms); a candidate stays when each other
///   dimension does not test it (a bit set) or its lookup holds it (a
///   binary search); stored sets are borrowed, not copied;
/// - the decision from per-term flags instead of binary searches of the
///   verdict sets.
///
/// The bundle must not change while the evaluator exists (it is borrowed).
#[derive(Debug)]
pub struct Evaluator<'b> {
    bundle: &'b PolicyBundle,
    hooks: BTreeMap<Hook, OnceLock<HookIndex<'b>>>,
}

impl<'b> Evaluator<'b> {
    /// An evaluator of `bundle`; builds nothing until an event comes.
    pub fn new(bundle: &'b PolicyBundle) -> Evaluator<'b> {
        Evaluator {
            bundle,
            hooks: bundle
                .spec
                .hooks
                .keys()
                .map(|&h| (h, OnceLock::new()))
                .collect(),
        }
    }

    /// The index of `hook`'s table, built on first use; `None` for a hook
    /// the bundle has no table for.
    fn hook(&self, hook: Hook) -> Option<&HookIndex<'b>> {
        let cell = self.hooks.get(&hook)?;
        Some(cell.get_or_init(|| HookIndex::new(&self.bundle.spec.hooks[&hook])))
    }

    /// What the bundle decides for `event` (the same as [`eval_bundle`]).
    pub fn eval(&self, event: &Event) -> Outcome {
        let Some(ix) = self.hook(event.hook) else {
            return decide(&[], &[], Vec::new());
        };
        let terms = ix.matched_terms(event);
        let mut rules: Vec<(u32, Matched)> = Vec::with_capacity(terms.len());
        let mut scopes: Vec<(u32, bool)> = Vec::new();
        let mut counters: Vec<u32> = Vec::new();
        for &t in &terms {
            let term = &ix.table.terms[t as usize];
            let flags = ix.flags[t as usize];
            let monitor = flags & MONITOR != 0;
            counters.extend_from_slice(ix.counters_of(t));
            if term.scope {
                debug_assert!(flags & DEFAULT_DENY != 0);
                scopes.push((term.rule, monitor));
                continue;
            }
            let action = if flags & KILL != 0 {
                Some(Action::Kill)
            } else if flags & DENY != 0 {
                Some(Action::Deny)
            } else if flags & ALLOW != 0 {
                Some(Action::Allow)
            } else {
                None
            };
            debug_assert_eq!(
                monitor,
                self.bundle.spec.policies.iter().any(|p| {
                    p.name == self.bundle.spec.rules[term.rule as usize].policy
                        && p.mode == crate::bundle::Mode::Monitor
                })
            );
            rules.push((
                term.rule,
                Matched {
                    action,
                    audit: flags & AUDIT != 0,
                    monitor,
                },
            ));
        }
        // A rule or scope with several matching terms is listed once (its
        // terms carry the same flags).
        rules.sort_by_key(|(id, _)| *id);
        rules.dedup_by_key(|(id, _)| *id);
        scopes.sort_unstable();
        scopes.dedup_by_key(|(id, _)| *id);
        counters.sort_unstable();
        counters.dedup();
        let counters = counters
            .iter()
            .map(|&c| ix.counter_names[c as usize].to_string())
            .collect();
        decide(&rules, &scopes, counters)
    }

    /// The terms of `event`'s hook that match it, ascending (the set
    /// [`matched_terms`] gives); empty for a hook without a table.
    pub fn matched_terms(&self, event: &Event) -> Vec<u32> {
        self.hook(event.hook)
            .map(|ix| ix.matched_terms(event))
            .unwrap_or_default()
    }
}

// Verdict flags of a term (`HookIndex::flags`).
const KILL: u8 = 1;
const DENY: u8 = 2;
const ALLOW: u8 = 4;
const AUDIT: u8 = 8;
const MONITOR: u8 = 16;
const DEFAULT_DENY: u8 = 32;

/// The per-event index of one hook's table (see [`Evaluator`]).
#[derive(Debug)]
struct HookIndex<'t> {
    table: &'t HookTable,
    /// Field names the dimensions read (their own, or a relation's two),
    /// each with its slot in the per-event value array.
    slots: FastMap<&'t str, usize>,
    dims: Vec<DimIndex<'t>>,
    /// Per term, its verdict flags (`KILL`…).
    flags: Vec<u8>,
    /// Per term `t`, its counters are `counter_ids[counter_start[t]..counter_start[t + 1]]`
    /// (indices into `counter_names`); empty vectors when the hook has no
    /// counter.
    counter_start: Vec<u32>,
    counter_ids: Vec<u32>,
    /// Counter names, sorted.
    counter_names: Vec<&'t str>,
}

/// Where a dimension's value comes from in the per-event slot array.
#[derive(Debug)]
enum Source {
    Field(usize),
    Relation(usize, usize),
}

/// The index of one dimension.
#[derive(Debug)]
struct DimIndex<'t> {
    dim: &'t Dimension,
    source: Source,
    /// Bit `t` set when term `t` tests the dimension (is in `dim.tested`).
    tested: Vec<u64>,
    /// The hook's terms that do not test the dimension, ascending.
    untested: Vec<u32>,
    /// Where each entry takes its base from (schema 3: entries hold
    /// changes, see [`Entry`]).
    bases: EntryBases,
    /// `exact` entries by value.
    exact: FastMap<&'t str, usize>,
    /// Longest-prefix and longest-suffix lookups of `path`/`string` entries.
    prefix: AffixIndex<'t>,
    suffix: AffixIndex<'t>,
    /// `ip`: longest-block lookup of the `prefix` entries.
    blocks: BlockIndex,
    /// `int`: resolved sets of every few intervals.
    ranges: RangeSnapshots,
    /// Entries' resolved sets (entries hold changes from their bases),
    /// each computed on first use and kept: an event costs a lookup, as in
    /// the kernel, once its entries have been seen.
    exact_sets: Vec<OnceLock<TermSet>>,
    prefix_sets: Vec<OnceLock<TermSet>>,
    suffix_sets: Vec<OnceLock<TermSet>>,
    range_sets: Vec<OnceLock<TermSet>>,
    /// The set of a value matching no entry ([`lookup_none`]).
    none: Cow<'t, [u32]>,
    /// The set of an event without the field (`absent`, else `none`).
    absent: Cow<'t, [u32]>,
}

impl<'t> HookIndex<'t> {
    fn new(table: &'t HookTable) -> HookIndex<'t> {
        let n = table.terms.len();
        let mut slots: FastMap<&'t str, usize> = FastMap::default();
        let mut slot = |name: &'t str| {
            let next = slots.len();
            *slots.entry(name).or_insert(next)
        };
        let dims = table
            .dimensions
            .iter()
            .map(|(name, dim)| {
                let source = match &dim.relation {
                    Some(rel) => Source::Relation(slot(&rel.left), slot(&rel.right)),
                    None => Source::Field(slot(name)),
                };
                DimIndex::new(dim, source, n)
            })
            .collect();
        let v = &table.verdicts;
        let mut flags = vec![0u8; n];
        for (set, flag) in [
            (&v.kill, KILL),
            (&v.deny, DENY),
            (&v.allow, ALLOW),
            (&v.audit, AUDIT),
            (&v.monitor, MONITOR),
            (&v.default_deny, DEFAULT_DENY),
        ] {
            for &t in set {
                flags[t as usize] |= flag;
            }
        }
        let counter_names: Vec<&str> = v.count.keys().map(String::as_str).collect();
        let (mut counter_start, mut counter_ids) = (Vec::new(), Vec::new());
        if !v.count.is_empty() {
            let mut pairs: Vec<(u32, u32)> = v
                .count
                .values()
                .enumerate()
                .flat_map(|(c, set)| set.iter().map(move |&t| (t, c as u32)))
                .collect();
            pairs.sort_unstable();
            counter_start = Vec::with_capacity(n + 1);
            let mut k = 0;
            for t in 0..=n as u32 {
                while k < pairs.len() && pairs[k].0 < t {
                    k += 1;
                }
                counter_start.push(k as u32);
            }
            counter_ids = pairs.into_iter().map(|(_, c)| c).collect();
        }
        HookIndex {
            table,
            slots,
            dims,
            flags,
            counter_start,
            counter_ids,
            counter_names,
        }
    }

    /// Counter indices of term `t`.
    fn counters_of(&self, t: u32) -> &[u32] {
        match self.counter_start.get(t as usize..t as usize + 2) {
            Some(&[a, b]) => &self.counter_ids[a as usize..b as usize],
            _ => &[],
        }
    }

    /// Terms that match `event` (of this hook), ascending: as
    /// [`matched_terms`], computed without building every dimension's full
    /// set. A lookup holds only the dimension's tested terms, and an
    /// untested term passes any value, so per dimension only the tested
    /// terms its lookup lacks are removed (`all − ∪_d (tested_d −
    /// lookup_d)`). The result starts from the dimension with the smallest
    /// full set (its lookup plus its untested terms) and keeps a term when
    /// each other dimension either does not test it (a bit) or lets it
    /// through (a binary search of that dimension's lookup).
    fn matched_terms(&self, event: &Event) -> Vec<u32> {
        // The event's values by slot. Field keys print as the dimensions
        // are named (`k8s.label["app"]`); plain fields need no printing.
        let mut values: Vec<Option<&Value>> = vec![None; self.slots.len()];
        let mut name = String::new();
        for (key, value) in &event.fields {
            let key_name = match &key.key {
                None => key.field.as_str(),
                Some(_) => {
                    name.clear();
                    write!(name, "{key}").expect("writing to a String cannot fail");
                    name.as_str()
                }
            };
            if let Some(&s) = self.slots.get(key_name) {
                values[s] = Some(value);
            }
        }
        let lookups: Vec<Cow<'_, [u32]>> = self.dims.iter().map(|d| d.lookup(&values)).collect();
        let full_len = |i: usize| lookups[i].len() + self.dims[i].untested.len();
        let Some(first) = (0..lookups.len()).min_by_key(|&i| full_len(i)) else {
            return (0..self.table.terms.len() as u32).collect(); // no dimension: every term
        };
        let mut matched = merge(&lookups[first], &self.dims[first].untested);
        for (i, (dim, set)) in self.dims.iter().zip(&lookups).enumerate() {
            if i != first {
                matched.retain(|&t| !dim.tests(t) || set.binary_search(&t).is_ok());
            }
        }
        matched
    }
}

/// The union of two sorted, disjoint sets, sorted.
fn merge(a: &[u32], b: &[u32]) -> Vec<u32> {
    let mut out = Vec::with_capacity(a.len() + b.len());
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        if a[i] < b[j] {
            out.push(a[i]);
            i += 1;
        } else {
            out.push(b[j]);
            j += 1;
        }
    }
    out.extend_from_slice(&a[i..]);
    out.extend_from_slice(&b[j..]);
    out
}

impl<'t> DimIndex<'t> {
    fn new(dim: &'t Dimension, source: Source, n: usize) -> DimIndex<'t> {
        let mut tested = vec![0u64; n.div_ceil(64)];
        for &t in &dim.tested {
            tested[t as usize / 64] |= 1 << (t % 64);
        }
        let untested = (0..n as u32)
            .filter(|&t| tested[t as usize / 64] & (1 << (t % 64)) == 0)
            .collect();
        let exact = dim
            .exact
            .iter()
            .enumerate()
            .map(|(i, e)| (e.value.as_str(), i))
            .collect();
        let strings = matches!(dim.kind, DimensionKind::Path | DimensionKind::String);
        let no_entries: &'t [Entry] = &[];
        let blocks = BlockIndex::new(if dim.kind == DimensionKind::Ip {
            &dim.prefix
        } else {
            no_entries
        });
        let none: Cow<'t, [u32]> = match (dim.kind, &dim.suffix_default) {
            (DimensionKind::Caps, _) | (_, Some(_)) => Cow::Owned(lookup_none(dim)),
            _ => Cow::Borrowed(&dim.default),
        };
        let absent = match &dim.absent {
            Some(a) => Cow::Borrowed(a.as_slice()),
            None => none.clone(),
        };
        DimIndex {
            dim,
            source,
            tested,
            untested,
            bases: dim.bases(),
            exact,
            prefix: AffixIndex::new(if strings { &dim.prefix } else { no_entries }, true),
            suffix: AffixIndex::new(&dim.suffix, false),
            blocks,
            ranges: RangeSnapshots::new(dim),
            exact_sets: cells(dim.exact.len()),
            prefix_sets: cells(dim.prefix.len()),
            suffix_sets: cells(dim.suffix.len()),
            range_sets: cells(dim.ranges.len()),
            none,
            absent,
        }
    }

    /// Whether term `t` tests the dimension.
    fn tests(&self, t: u32) -> bool {
        self.tested[t as usize / 64] & (1 << (t % 64)) != 0
    }

    /// The resolved set of the exact entry of `key`, if any.
    fn exact(&self, key: &str) -> Option<&[u32]> {
        let &i = self.exact.get(key)?;
        Some(self.exact_set(i))
    }

    /// The resolved set of exact entry `i`, computed on first use.
    fn exact_set(&self, i: usize) -> &[u32] {
        self.exact_sets[i].get_or_init(|| {
            let dim: &'t Dimension = self.dim;
            let e = &dim.exact[i];
            if !matches!(dim.kind, DimensionKind::Path | DimensionKind::String) {
                return e.apply(&dim.default);
            }
            let (p, s) = self.bases.exact[i];
            e.apply(&self.sides(p, s))
        })
    }

    /// The resolved set of prefix (`prefix`) or suffix entry `i`, computed
    /// on first use from its base's.
    fn affix_set(&self, prefix: bool, i: usize) -> &[u32] {
        let (cells, list, parents) = if prefix {
            (&self.prefix_sets, &self.dim.prefix, &self.bases.prefix)
        } else {
            (&self.suffix_sets, &self.dim.suffix, &self.bases.suffix)
        };
        cells[i].get_or_init(|| list[i].apply(self.chain(prefix, parents[i])))
    }

    /// The resolved set of the interval holding `n`, else the default.
    fn range(&self, n: u64) -> &[u32] {
        match range_index(self.dim, n) {
            Some(i) => self.range_sets[i].get_or_init(|| self.ranges.set(self.dim, i)),
            None => &self.dim.default,
        }
    }

    /// The resolved set of prefix (`prefix`) or suffix entry `i`, else the
    /// side's default.
    fn chain(&self, prefix: bool, i: Option<usize>) -> &[u32] {
        let dim: &'t Dimension = self.dim;
        match i {
            Some(i) => self.affix_set(prefix, i),
            None if prefix => &dim.default,
            None => dim.suffix_default.as_deref().unwrap_or(&dim.default),
        }
    }

    /// A string's set from its longest prefix entry `p` and longest suffix
    /// entry `s` (the suffix side only when the dimension tests suffixes).
    fn sides(&self, p: Option<usize>, s: Option<usize>) -> Cow<'_, [u32]> {
        let prefix = self.chain(true, p);
        if self.dim.suffix_default.is_none() {
            return Cow::Borrowed(prefix);
        }
        Cow::Owned(crate::lower::intersect(prefix, self.chain(false, s)))
    }

    /// The dimension's tested terms the event lets through, as
    /// [`tested_lookup`] gives them.
    fn lookup(&self, values: &[Option<&Value>]) -> Cow<'_, [u32]> {
        let dim: &'t Dimension = self.dim;
        let value = match self.source {
            Source::Relation(l, r) => {
                let (Some(a), Some(b), Some(rel)) = (values[l], values[r], &dim.relation) else {
                    return Cow::Borrowed(&dim.default);
                };
                let key = if relation_holds(a, b, &rel.op) {
                    "true"
                } else {
                    "false"
                };
                return Cow::Borrowed(self.exact(key).unwrap_or(&dim.default));
            }
            Source::Field(s) => values[s],
        };
        // An event without the field satisfies no test of it (as in
        // `Cond::eval`).
        let Some(value) = value else {
            return self.absent.clone();
        };
        let default: &[u32] = &dim.default;
        match (dim.kind, value) {
            (DimensionKind::Path | DimensionKind::String, Value::Str(s)) => self.string(s),
            (DimensionKind::Int, Value::Int(n)) => Cow::Borrowed(self.range(*n)),
            (DimensionKind::Int, Value::Unset) => Cow::Borrowed(self.range(UNSET_ID)),
            (DimensionKind::Int, Value::Name(n)) => Cow::Borrowed(self.exact(n).unwrap_or(default)),
            (DimensionKind::Ip, Value::Ip(a)) => {
                Cow::Borrowed(self.chain(true, self.blocks.longest(*a, 128)))
            }
            (DimensionKind::Bool, Value::Bool(b)) => Cow::Borrowed(
                self.exact(if *b { "true" } else { "false" })
                    .unwrap_or(default),
            ),
            (DimensionKind::Enum, Value::Str(s)) => Cow::Borrowed(self.exact(s).unwrap_or(default)),
            (DimensionKind::Caps, Value::Caps(have)) => Cow::Owned(caps_lookup(dim, have)),
            _ => self.none.clone(),
        }
    }

    /// As [`string_lookup`]: exact (for paths only values of at most
    /// [`MAX_PATH_LITERAL_LEN`] bytes have one), else the longest prefix's
    /// set (or `default`), AND the longest suffix's (or `suffix_default`)
    /// when the dimension tests suffixes.
    fn string(&self, value: &str) -> Cow<'_, [u32]> {
        let dim: &'t Dimension = self.dim;
        if dim.kind != DimensionKind::Path || value.len() <= MAX_PATH_LITERAL_LEN {
            if let Some(set) = self.exact(value) {
                return Cow::Borrowed(set);
            }
        }
        let bytes = value.as_bytes();
        self.sides(
            self.prefix.longest(bytes, bytes.len()),
            self.suffix.longest(bytes, bytes.len()),
        )
    }
}

/// The entry whose value is the longest prefix (`prefix`) or suffix of
/// `value` among `entries` (sorted by value, as `PolicyBundle::validate`
/// requires). With many entries: prefixes by
/// a few binary searches, suffixes by one per length of `value`, instead of
/// a scan of every entry.
pub(crate) fn longest_affix<'d>(
    entries: &'d [Entry],
    value: &[u8],
    prefix: bool,
) -> Option<&'d Entry> {
    let affix = |e: &Entry| {
        let v = e.value.as_bytes();
        if prefix {
            value.starts_with(v)
        } else {
            value.ends_with(v)
        }
    };
    if entries.len() <= 32 {
        return entries
            .iter()
            .filter(|e| affix(e))
            .max_by_key(|e| e.value.len());
    }
    if prefix {
        // The greatest entry not after the key is the longest prefix if it
        // is one; else no prefix is longer than what it shares with the key.
        let mut key = value;
        loop {
            let i = entries.partition_point(|e| e.value.as_bytes() <= key);
            let e = &entries[i.checked_sub(1)?];
            let v = e.value.as_bytes();
            if key.starts_with(v) {
                return Some(e);
            }
            let common = v.iter().zip(key).take_while(|(a, b)| a == b).count();
            key = &key[..common];
        }
    }
    (0..=value.len()).rev().find_map(|n| {
        let key = if prefix {
            &value[..n]
        } else {
            &value[value.len() - n..]
        };
        entries
            .binary_search_by(|e| e.value.as_bytes().cmp(key))
            .ok()
            .map(|i| &entries[i])
    })
}

/// The terms dimension `name` lets through for an event whose fields are
/// `fields` (keyed by field name as the dimensions are, e.g.
/// `k8s.label["app"]`), in a hook of `n_terms` terms: the full set
/// ([`Dimension::full_set`] of [`tested_lookup`]), terms that do not test
/// the dimension included.
pub fn dimension_lookup(
    name: &str,
    dim: &Dimension,
    fields: &BTreeMap<String, &Value>,
    n_terms: u32,
) -> TermSet {
    dim.full_set(&tested_lookup(name, dim, fields), n_terms)
}

/// The tested terms (see [`Dimension::tested`]) dimension `name` lets
/// through for an event whose fields are `fields`: the lookup of the
/// field's value, the `absent` set (else a no-entry lookup) when the event
/// does not give the field, or for a relation the feature computed from its
/// two fields. A subset of `dim.tested`, as every stored set.
pub fn tested_lookup(name: &str, dim: &Dimension, fields: &BTreeMap<String, &Value>) -> TermSet {
    match &dim.relation {
        Some(rel) => relation_lookup(
            dim,
            fields.get(&rel.left).copied(),
            fields.get(&rel.right).copied(),
            &rel.op,
        ),
        None => match fields.get(name) {
            Some(v) => lookup_value(dim, v),
            // An event without the field satisfies no test of it (as in
            // `Cond::eval`).
            None => dim.absent.clone().unwrap_or_else(|| lookup_none(dim)),
        },
    }
}

/// The set of a value matching no entry of the dimension.
fn lookup_none(dim: &Dimension) -> TermSet {
    match dim.kind {
        DimensionKind::Caps => caps_lookup(dim, &BTreeSet::new()),
        _ => match &dim.suffix_default {
            Some(s) => crate::lower::intersect(&dim.default, s),
            None => dim.default.clone(),
        },
    }
}

/// One dimension lookup for a value of the event: the dimension's tested
/// terms the value satisfies (as stored in the bundle; terms that do not
/// test the dimension, satisfied by any value, are not listed).
pub fn lookup_value(dim: &Dimension, value: &Value) -> TermSet {
    match (dim.kind, value) {
        (DimensionKind::Path | DimensionKind::String, Value::Str(s)) => string_lookup(dim, s),
        (DimensionKind::Int, Value::Int(n)) => range_lookup(dim, *n),
        (DimensionKind::Int, Value::Unset) => range_lookup(dim, UNSET_ID),
        (DimensionKind::Int, Value::Name(n)) => exact(dim, n).unwrap_or(dim.default.clone()),
        (DimensionKind::Ip, Value::Ip(a)) => ip_lookup(dim, a),
        (DimensionKind::Bool, Value::Bool(b)) => {
            exact(dim, &b.to_string()).unwrap_or(dim.default.clone())
        }
        (DimensionKind::Enum, Value::Str(s)) => exact(dim, s).unwrap_or(dim.default.clone()),
        (DimensionKind::Caps, Value::Caps(have)) => caps_lookup(dim, have),
        _ => lookup_none(dim),
    }
}

/// `n` empty cells.
fn cells(n: usize) -> Vec<OnceLock<TermSet>> {
    (0..n).map(|_| OnceLock::new()).collect()
}

/// The resolved set of the exact entry of `key`, if any (see [`Entry`]).
pub(crate) fn exact(dim: &Dimension, key: &str) -> Option<TermSet> {
    let i = dim
        .exact
        .binary_search_by(|e| e.value.as_str().cmp(key))
        .ok()?;
    let base = match dim.kind {
        DimensionKind::Path | DimensionKind::String => sides(dim, key),
        _ => dim.default.clone(),
    };
    Some(dim.exact[i].apply(&base))
}

/// The resolved set of the longest entry of `list` that is a prefix
/// (`prefix`) or suffix of `value`, else `root`: the entries on the way from
/// the root, each found by [`longest_affix`].
pub(crate) fn affix_chain(list: &[Entry], value: &[u8], prefix: bool, root: &TermSet) -> TermSet {
    let mut chain: Vec<&Entry> = Vec::new();
    let mut key = value;
    while let Some(e) = longest_affix(list, key, prefix) {
        chain.push(e);
        let v = e.value.as_bytes();
        // The entry's own base: the longest entry strictly shorter.
        if v.is_empty() {
            break;
        }
        key = if prefix { &v[..v.len() - 1] } else { &v[1..] };
    }
    let mut set = root.clone();
    for e in chain.iter().rev() {
        set = e.apply(&set);
    }
    set
}

/// A non-exact string's set: its prefix side, AND its suffix side when the
/// dimension tests suffixes.
fn sides(dim: &Dimension, value: &str) -> TermSet {
    let prefix = affix_chain(&dim.prefix, value.as_bytes(), true, &dim.default);
    match &dim.suffix_default {
        None => prefix,
        Some(sd) => {
            let suffix = affix_chain(&dim.suffix, value.as_bytes(), false, sd);
            crate::lower::intersect(&prefix, &suffix)
        }
    }
}

/// Exact hash (for paths only keys of at most [`MAX_PATH_LITERAL_LEN`] bytes
/// exist); else the longest prefix's set (or `default`) AND, when the
/// dimension tests suffixes, the longest suffix's set (or `suffix_default`;
/// in the kernel an LPM trie over the reversed bytes).
fn string_lookup(dim: &Dimension, value: &str) -> TermSet {
    if dim.kind != DimensionKind::Path || value.len() <= MAX_PATH_LITERAL_LEN {
        if let Some(set) = exact(dim, value) {
            return set;
        }
    }
    sides(dim, value)
}

/// The prefix side of a path or string lookup, as in the kernel: exact hash
/// (only keys of at most [`MAX_PATH_LITERAL_LEN`] bytes exist), then longest
/// prefix, then default. Suffix entries are not consulted (an exact entry's
/// set is resolved as in [`lookup_value`]).
pub fn lookup(dim: &Dimension, value: &str) -> TermSet {
    if value.len() <= MAX_PATH_LITERAL_LEN {
        if let Some(set) = exact(dim, value) {
            return set;
        }
    }
    affix_chain(&dim.prefix, value.as_bytes(), true, &dim.default)
}

/// The interval holding `n` (in the kernel: one LPM lookup of the big-endian
/// key, see [`crate::lower::range_prefixes`]), else `default`.
fn range_lookup(dim: &Dimension, n: u64) -> TermSet {
    match range_index(dim, n) {
        Some(i) => dim.range_set(i),
        None => dim.default.clone(),
    }
}

/// The index of the interval holding `n`, if any.
pub(crate) fn range_index(dim: &Dimension, n: u64) -> Option<usize> {
    let i = dim.ranges.partition_point(|r| r.hi < n);
    dim.ranges.get(i).filter(|r| r.lo <= n).map(|_| i)
}

/// The longest block holding the address, else `default`: resolved from
/// the blocks containing it, outermost first.
pub(crate) fn ip_lookup(dim: &Dimension, a: &IpAddr) -> TermSet {
    let mut holding: Vec<(u8, &Entry)> = dim
        .prefix
        .iter()
        .filter_map(|e| {
            e.value
                .parse::<IpNet>()
                .ok()
                .filter(|n| n.contains(a))
                .map(|n| (n.prefix_len(), e))
        })
        .collect();
    holding.sort_by_key(|(len, _)| *len);
    holding
        .iter()
        .fold(dim.default.clone(), |set, (_, e)| e.apply(&set))
}

/// AND over the masks of `held` (the value has every capability of the mask)
/// or `lacking`.
fn caps_lookup(dim: &Dimension, have: &BTreeSet<String>) -> TermSet {
    let mut set: Option<TermSet> = None;
    for m in &dim.masks {
        let side = if m.caps.iter().all(|c| have.contains(c)) {
            &m.held
        } else {
            &m.lacking
        };
        set = Some(match set {
            None => side.clone(),
            Some(s) => crate::lower::intersect(&s, side),
        });
    }
    set.unwrap_or_else(|| dim.default.clone())
}

/// A relation feature: computed from the two fields (numbers compare as
/// numbers; other values, names and `unset` included, only by `==`); a
/// missing field gives `default`.
fn relation_lookup(
    dim: &Dimension,
    left: Option<&Value>,
    right: Option<&Value>,
    op: &str,
) -> TermSet {
    let (Some(a), Some(b)) = (left, right) else {
        return dim.default.clone();
    };
    exact(
        dim,
        if relation_holds(a, b, op) {
            "true"
        } else {
            "false"
        },
    )
    .unwrap_or_else(|| dim.default.clone())
}

/// Whether `a op b` holds: numbers compare as numbers; other values, names
/// and `unset` included, only by `==`.
fn relation_holds(a: &Value, b: &Value, op: &str) -> bool {
    match (a, b) {
        (Value::Int(a), Value::Int(b)) => match op {
            "==" => a == b,
            "<" => a < b,
            _ => a <= b,
        },
        (a, b) => op == "==" && a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every string over {a, b, /} up to `len` bytes.
    fn strings(len: u32) -> Vec<String> {
        (0..=len)
            .flat_map(|l| {
                (0..3usize.pow(l)).map(move |n| {
                    (0..l)
                        .map(|i| ["a", "b", "/"][(n / 3usize.pow(i)) % 3])
                        .collect()
                })
            })
            .collect()
    }

    #[test]
    fn longest_affix_agrees_with_a_scan() {
        let all = strings(4);
        // Entry sets past the scan threshold, deterministic subsets.
        for step in [1, 2, 3] {
            let mut values: Vec<String> = all.iter().step_by(step).cloned().collect();
            values.sort();
            let entries: Vec<Entry> = values
                .into_iter()
                .map(|value| Entry {
                    value,
                    add: Vec::new(),
                    remove: Vec::new(),
                })
                .collect();
            assert!(entries.len() > 32);
            for v in strings(5) {
                for prefix in [true, false] {
                    let scan = entries
                        .iter()
                        .filter(|e| {
                            if prefix {
                                v.starts_with(&e.value)
                            } else {
                                v.ends_with(&e.value)
                            }
                        })
                        .max_by_key(|e| e.value.len());
                    let got = longest_affix(&entries, v.as_bytes(), prefix);
                    assert_eq!(
                        got.map(|e| &e.value),
                        scan.map(|e| &e.value),
                        "{v} {prefix}"
                    );
                }
            }
        }
    }

    /// A bundle with many exact, prefix and suffix paths, suffixes on a
    /// string and CIDR blocks of both families.
    fn indexed_bundle() -> PolicyBundle {
        let mut text = String::from("policy p {}\n");
        for i in 0..60 {
            text.push_str(&format!(
                "rule e{i} on exec {{ when process.binary == \"/usr/bin/t{i}\" audit }}\n\
                 rule p{i} on exec {{ when process.binary startswith \"/opt/v{i}/\" and not process.binary == \"/opt/v{i}/health\" audit }}\n\
                 rule s{i} on exec {{ when process.binary endswith \"/b{i}\" and process.name endswith \"x{}\" deny }}\n\
                 rule n{i} on connect {{ when net.daddr in {{ 10.{i}.0.0/16, 10.{i}.1.0/24, fd00:{i}::/32 }} deny }}\n",
                i % 7
            ));
        }
        crate::compile::evaluation_bundle_of(&text).unwrap_or_else(|e| panic!("{e:?}"))
    }

    #[test]
    fn indexed_lookups_agree_with_the_stored_tables() {
        let b = indexed_bundle();
        let mut paths: Vec<String> = vec!["/".into(), "/opt/".into(), String::new()];
        for i in 0..70 {
            for p in [
                format!("/usr/bin/t{i}"),
                format!("/usr/bin/t{i}x"),
                format!("/opt/v{i}/health"),
                format!("/opt/v{i}/bin/b{}", i % 9),
                format!("/opt/v{i}"),
                format!("/home/u/b{i}"),
                format!("/b{i}"),
                format!("b{i}"),
                format!("/opt/v{i}/{}", "a".repeat(300)),
            ] {
                paths.push(p);
            }
        }
        let addrs: Vec<IpAddr> = (0..70)
            .flat_map(|i| {
                [
                    format!("10.{i}.0.1"),
                    format!("10.{i}.1.7"),
                    format!("10.{i}.2.7"),
                    format!("fd00:{i}::1"),
                    format!("fd01:{i}::1"),
                    "::ffff:10.1.1.1".to_string(),
                ]
            })
            .map(|a| a.parse().unwrap())
            .collect();
        let mut values: Vec<Value> = paths.iter().cloned().map(Value::Str).collect();
        values.extend(addrs.into_iter().map(Value::Ip));
        values.extend([Value::Int(3), Value::Bool(true), Value::Unset]);
        for table in b.spec.hooks.values() {
            let ix = HookIndex::new(table);
            for (d, (name, dim)) in ix.dims.iter().zip(&table.dimensions) {
                let Source::Field(slot) = d.source else {
                    continue;
                };
                assert_eq!(ix.slots[name.as_str()], slot);
                // Absent, then each value.
                let mut slots = vec![None; ix.slots.len()];
                assert_eq!(
                    *d.lookup(&slots),
                    tested_lookup(name, dim, &BTreeMap::new()),
                    "{name} absent"
                );
                for v in &values {
                    slots[slot] = Some(v);
                    let fields = BTreeMap::from([(name.clone(), v)]);
                    assert_eq!(
                        *d.lookup(&slots),
                        tested_lookup(name, dim, &fields),
                        "{name} = {v:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn an_evaluator_agrees_with_one_shot_evaluation() {
        let b = indexed_bundle();
        let evaluator = Evaluator::new(&b);
        for i in 0..70 {
            let binary = |p: String| Event {
                hook: Hook::Exec,
                fields: BTreeMap::from([
                    (
                        policy_dsl::checked::FieldKey::plain(
                            policy_dsl::schema::Field::ProcessBinary,
                        ),
                        Value::Str(p),
                    ),
                    (
                        policy_dsl::checked::FieldKey::plain(
                            policy_dsl::schema::Field::ProcessName,
                        ),
                        Value::Str(format!("ax{}", i % 5)),
                    ),
                ]),
            };
            for e in [
                binary(format!("/usr/bin/t{i}")),
                binary(format!("/opt/v{i}/bin/b{}", i % 9)),
                binary(format!("/opt/v{i}/health")),
                Event {
                    hook: Hook::Connect,
                    fields: BTreeMap::from([(
                        policy_dsl::checked::FieldKey::plain(policy_dsl::schema::Field::NetDaddr),
                        Value::Ip(format!("10.{i}.1.9").parse().unwrap()),
                    )]),
                },
                Event {
                    hook: Hook::Open,
                    fields: BTreeMap::new(),
                },
            ] {
                let table = b.spec.hooks.get(&e.hook);
                let want: Vec<u32> = table
                    .map(|t| {
                        // Every term that every dimension's full set holds.
                        let fields = e.fields.iter().map(|(k, v)| (k.to_string(), v)).collect();
                        let n = t.terms.len() as u32;
                        (0..n)
                            .filter(|x| {
                                t.dimensions.iter().all(|(name, dim)| {
                                    dimension_lookup(name, dim, &fields, n).contains(x)
                                })
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                assert_eq!(evaluator.matched_terms(&e), want, "{e:?}");
                assert_eq!(evaluator.eval(&e), eval_bundle(&b, &e), "{e:?}");
            }
        }
    }
}
