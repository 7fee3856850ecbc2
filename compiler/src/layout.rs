//! Where a hook's terms go in the kernel's term masks, and what the kernel
//! tables of a subset of terms are.
//!
//! A kernel mask holds [`MASK_TERMS`] terms. A hook with more terms is
//! *anchored* on one dimension: a `path`, `string` or integer field most of
//! its terms test with exact values only (`process.binary == "/usr/bin/x"`,
//! `net.dport in {80, 443}`).
//! Those terms are split into *groups* of at most a window's capacity, keyed
//! by the anchor's values; the other terms stay *unanchored*. Per event the
//! kernel classifies the unanchored terms as before, looks the anchor value up
//! once to find its group (and the group's terms that value satisfies), and
//! classifies that group alone: the work per event follows one group, not the
//! hook's term count.
//!
//! ```text
//! mask words:  [ unanchored terms | group window ]
//!                                   ▲ group g of value v: anchor(v) = (g, terms of g v satisfies)
//! ```
//!
//! [`restrict`] gives the tables of a subset of terms (the unanchored ones, or
//! one group) renumbered from 0, with the entries that do not change the
//! subset's lookups left out: a group's tables hold what its own terms test,
//! so kernel memory stays near linear in rules however many groups there are.
//!
//! Pure: used by `policyc compile` (a bundle that compiles has a layout) and by
//! policyd's table builder (runtime/src/tables.rs), so both decide alike.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use ipnet::IpNet;

use crate::bundle::{
    Dimension, DimensionKind, Entry, HookTable, MaskEntry, RangeEntry, Term, TermSet, VerdictMasks,
};
use crate::limits::MASK_TERMS;

/// Why a hook's terms have no kernel layout.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, miette::Diagnostic)]
pub enum LayoutError {
    /// More terms than a mask holds and no dimension to anchor them on.
    #[error(
        "hook `{hook}` has {terms} terms, more than the {max} one kernel mask holds, and no \
         path, string or number field that its rules test with exact values only"
    )]
    #[diagnostic(
        code(policyc::kernel_limit),
        help("past {max} terms per hook, the kernel splits rules by a field they test with `==` or `in` (such as `process.binary`)")
    )]
    NoAnchor {
        /// The hook.
        hook: String,
        /// Its terms.
        terms: usize,
        /// [`MASK_TERMS`].
        max: usize,
    },
    /// Too many terms do not test the anchor with exact values.
    #[error(
        "hook `{hook}`: {unanchored} terms do not test `{anchor}` with exact values; the kernel \
         holds at most {max} such terms (beside the ones split by `{anchor}`)"
    )]
    #[diagnostic(
        code(policyc::kernel_limit),
        help("give more of this hook's rules an exact `{anchor}` test (`==` or `in`)")
    )]
    TooManyUnanchored {
        /// The hook.
        hook: String,
        /// The anchor dimension.
        anchor: String,
        /// Terms not anchored.
        unanchored: usize,
        /// Most the mask holds next to one group word.
        max: usize,
    },
    /// One anchor value is tested by more terms than a group holds.
    #[error(
        "hook `{hook}`: {terms} terms test `{anchor}` == `{value}`; the kernel decides at most \
         {max} terms per value"
    )]
    #[diagnostic(
        code(policyc::kernel_limit),
        help("merge rules about `{value}` that share a verdict (sets cost one term)")
    )]
    ValueTooManyTerms {
        /// The hook.
        hook: String,
        /// The anchor dimension.
        anchor: String,
        /// The value.
        value: String,
        /// Terms testing it.
        terms: usize,
        /// Capacity of the group window.
        max: usize,
    },
}

/// The layout of one bundle's hook table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookLayout {
    /// Term ids (ascending) decided in the hook's own words: every term when
    /// `anchor` is `None`.
    pub unanchored: TermSet,
    /// The anchor and its groups, when the terms do not fit one mask.
    pub anchor: Option<AnchorLayout>,
}

/// Anchored terms, split into groups by the anchor's values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnchorLayout {
    /// Name of the anchor dimension (a `path`, `string` or integer field).
    pub dimension: String,
    /// The groups; each fits the window it was planned for.
    pub groups: Vec<GroupLayout>,
}

/// One group of anchored terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupLayout {
    /// Term ids of the bundle's hook table, ascending: position `i` in the
    /// group window is `terms[i]`. A term whose anchor values fall in several
    /// groups is in each.
    pub terms: TermSet,
    /// Anchor values of the group and, per value, the positions (indices in
    /// `terms`) of the terms it satisfies; sorted by value.
    pub values: Vec<(String, TermSet)>,
}

/// The anchor of `table`: the `path`, `string` or integer dimension (not
/// one of user or group names) that most terms test with exact values only,
/// and those terms (ascending). `None` when no term does.
pub fn choose_anchor(table: &HookTable) -> Option<(String, TermSet)> {
    let mut best: Option<(String, TermSet)> = None;
    for (name, dim) in &table.dimensions {
        // Names resolve on the node: a number is an anchor value only when
        // the bundle says it.
        let keyed = match dim.kind {
            DimensionKind::Path | DimensionKind::String => !dim.exact.is_empty(),
            DimensionKind::Int => dim.resolve.is_none() && dim.ranges.iter().any(|r| r.lo == r.hi),
            _ => false,
        };
        if !keyed {
            continue;
        }
        let anchored = exact_only_terms(dim);
        if anchored.len() > best.as_ref().map_or(0, |b| b.1.len()) {
            best = Some((name.clone(), anchored));
        }
    }
    best
}

/// Terms of `dim` satisfied by its exact values and by nothing else: not by
/// a value matching no exact entry (whose set is its prefix side, the default
/// or a prefix entry, intersected with its suffix side: a term the prefix
/// side excludes is excluded whatever the suffix), nor by a missing field.
fn exact_only_terms(dim: &Dimension) -> TermSet {
    let mut other: BTreeSet<u32> = dim.default.iter().copied().collect();
    other.extend(dim.absent.iter().flatten());
    for e in &dim.prefix {
        other.extend(&e.terms);
    }
    // An integer's exact values are its one-value ranges.
    for r in dim.ranges.iter().filter(|r| r.lo != r.hi) {
        other.extend(&r.terms);
    }
    let exact: BTreeSet<u32> = exact_values(dim)
        .flat_map(|(_, ts)| ts.iter().copied())
        .collect();
    exact.difference(&other).copied().collect()
}

/// The exact values of an anchor dimension and their sets: `exact` entries
/// of strings, one-value ranges of integers (as decimal text), in order.
fn exact_values(dim: &Dimension) -> Box<dyn Iterator<Item = (String, &TermSet)> + '_> {
    match dim.kind {
        DimensionKind::Int => Box::new(
            dim.ranges
                .iter()
                .filter(|r| r.lo == r.hi)
                .map(|r| (r.lo.to_string(), &r.terms)),
        ),
        _ => Box::new(dim.exact.iter().map(|e| (e.value.clone(), &e.terms))),
    }
}

/// The layout of `table` when `words` mask words are free for it: flat when
/// its terms fit, else anchored, with the unanchored terms in the first words
/// and groups as large as the remaining words.
///
/// # Errors
/// [`LayoutError`] when the terms do not fit any layout.
pub fn plan(hook: &str, table: &HookTable, words: usize) -> Result<HookLayout, LayoutError> {
    let n = table.terms.len();
    if n <= words * 64 {
        return Ok(HookLayout {
            unanchored: (0..n as u32).collect(),
            anchor: None,
        });
    }
    let Some((anchor, anchored)) = choose_anchor(table) else {
        return Err(LayoutError::NoAnchor {
            hook: hook.to_string(),
            terms: n,
            max: words * 64,
        });
    };
    let unanchored = complement(n as u32, &anchored);
    let unanchored_words = unanchored.len().div_ceil(64);
    if unanchored_words >= words {
        return Err(LayoutError::TooManyUnanchored {
            hook: hook.to_string(),
            anchor,
            unanchored: unanchored.len(),
            max: (words - 1) * 64,
        });
    }
    let capacity = (words - unanchored_words) * 64;
    let groups = groups(hook, table, &anchor, &anchored, capacity)?;
    Ok(HookLayout {
        unanchored,
        anchor: Some(AnchorLayout {
            dimension: anchor,
            groups,
        }),
    })
}

/// Whether `table` has a kernel layout in a whole mask ([`MASK_TERMS`]).
///
/// # Errors
/// As [`plan`].
pub fn check(hook: &str, table: &HookTable) -> Result<(), LayoutError> {
    plan(hook, table, MASK_TERMS / 64).map(|_| ())
}

/// `0..n` without the ids of `set` (sorted, unique), ascending.
pub fn complement(n: u32, set: &[u32]) -> TermSet {
    let mut out = Vec::with_capacity(n as usize - set.len());
    let mut it = set.iter().peekable();
    for t in 0..n {
        if it.peek() == Some(&&t) {
            it.next();
        } else {
            out.push(t);
        }
    }
    out
}

/// Split the `anchored` terms into groups of at most `capacity` by the anchor
/// dimension's exact values, in value order.
///
/// # Errors
/// [`LayoutError::ValueTooManyTerms`] when one value alone has more.
pub fn groups(
    hook: &str,
    table: &HookTable,
    anchor: &str,
    anchored: &[u32],
    capacity: usize,
) -> Result<Vec<GroupLayout>, LayoutError> {
    let dim = &table.dimensions[anchor];
    let is_anchored = |t: &u32| anchored.binary_search(t).is_ok();
    let mut out = Vec::new();
    let mut cur: BTreeSet<u32> = BTreeSet::new();
    let mut cur_values: Vec<(String, Vec<u32>)> = Vec::new();
    let close = |cur: &mut BTreeSet<u32>, vals: &mut Vec<(String, Vec<u32>)>, out: &mut Vec<_>| {
        if vals.is_empty() {
            return;
        }
        let terms: TermSet = std::mem::take(cur).into_iter().collect();
        let values = std::mem::take(vals)
            .into_iter()
            .map(|(v, ts)| {
                let pos = ts
                    .iter()
                    .map(|t| terms.binary_search(t).expect("in group") as u32)
                    .collect();
                (v, pos)
            })
            .collect();
        out.push(GroupLayout { terms, values });
    };
    for (value, set) in exact_values(dim) {
        let ts: Vec<u32> = set.iter().copied().filter(is_anchored).collect();
        if ts.is_empty() {
            continue;
        }
        if ts.len() > capacity {
            return Err(LayoutError::ValueTooManyTerms {
                hook: hook.to_string(),
                anchor: anchor.to_string(),
                value: value.clone(),
                terms: ts.len(),
                max: capacity,
            });
        }
        let new = ts.iter().filter(|t| !cur.contains(t)).count();
        if cur.len() + new > capacity {
            close(&mut cur, &mut cur_values, &mut out);
        }
        cur.extend(&ts);
        cur_values.push((value, ts));
    }
    close(&mut cur, &mut cur_values, &mut out);
    Ok(out)
}

/// A subset of a table's terms, as positions.
struct Subset<'a> {
    /// Term id → position.
    pos: HashMap<u32, u32>,
    terms: &'a [u32],
}

impl Subset<'_> {
    fn n(&self) -> u32 {
        self.terms.len() as u32
    }

    /// Positions of the subset's terms in `set`, ascending.
    fn of(&self, set: &[u32]) -> TermSet {
        let mut out: TermSet = set
            .iter()
            .filter_map(|t| self.pos.get(t).copied())
            .collect();
        out.sort_unstable();
        out
    }

    fn all(&self) -> TermSet {
        (0..self.n()).collect()
    }
}

/// The tables of `terms` (ids of `table`, ascending) alone, renumbered from 0
/// (position `i` is `terms[i]`): every dimension a term of the subset tests,
/// with the entries whose set, over the subset, differs from what a lookup
/// would give without them (the next longer-matching entry or the default).
/// `skip` leaves a dimension out (a group's anchor: its value is looked up
/// before the group is chosen).
///
/// For every event, the matched terms of the result are the positions of the
/// subset's terms among the matched terms of `table`.
pub fn restrict(table: &HookTable, terms: &[u32], skip: Option<&str>) -> HookTable {
    let sub = Subset {
        pos: terms
            .iter()
            .enumerate()
            .map(|(i, &t)| (t, i as u32))
            .collect(),
        terms,
    };
    let mut dimensions = BTreeMap::new();
    for (name, dim) in &table.dimensions {
        if Some(name.as_str()) == skip {
            continue;
        }
        if let Some(d) = restrict_dimension(dim, &sub) {
            dimensions.insert(name.clone(), d);
        }
    }
    let v = &table.verdicts;
    let verdicts = VerdictMasks {
        deny: sub.of(&v.deny),
        kill: sub.of(&v.kill),
        allow: sub.of(&v.allow),
        audit: sub.of(&v.audit),
        default_deny: sub.of(&v.default_deny),
        monitor: sub.of(&v.monitor),
        count: v
            .count
            .iter()
            .map(|(k, s)| (k.clone(), sub.of(s)))
            .filter(|(_, s)| !s.is_empty())
            .collect(),
    };
    HookTable {
        terms: terms
            .iter()
            .enumerate()
            .map(|(i, &t)| Term {
                id: i as u32,
                ..table.terms[t as usize].clone()
            })
            .collect(),
        dimensions,
        verdicts,
    }
}

/// The full sets of one dimension over a subset: a stored set (tested
/// terms only) with the subset's terms the dimension does not test, which
/// any value satisfies, as positions.
struct Full<'s> {
    sub: &'s Subset<'s>,
    untested: TermSet,
}

impl Full<'_> {
    fn of(&self, set: &[u32]) -> TermSet {
        let mut out = self.sub.of(set);
        out.extend(&self.untested);
        out.sort_unstable();
        out.dedup();
        out
    }
}

/// Longest entry of `entries` whose value is a prefix of `value` (by bytes).
fn longest<'e>(index: &HashMap<&[u8], &'e Entry>, value: &[u8]) -> Option<&'e Entry> {
    (0..=value.len())
        .rev()
        .find_map(|i| index.get(&value[..i]).copied())
}

/// LPM entries (`prefix` or `suffix`, given as byte keys) kept over `sub`:
/// an entry stays when its set differs from its nearest kept ancestor's (or
/// `root`'s). Entries must be sorted by key so ancestors come first.
fn lpm_keep<'e>(
    full: &Full<'_>,
    entries: &mut [(Vec<u8>, &'e Entry)],
    root: &TermSet,
) -> Vec<(&'e Entry, TermSet)> {
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    let mut stack: Vec<(Vec<u8>, TermSet)> = Vec::new();
    let mut kept = Vec::new();
    for (key, e) in entries.iter() {
        while stack.last().is_some_and(|(k, _)| !key.starts_with(k)) {
            stack.pop();
        }
        let set = full.of(&e.terms);
        let parent = stack.last().map_or(root, |(_, s)| s);
        if &set != parent {
            stack.push((key.clone(), set.clone()));
            kept.push((*e, set));
        }
    }
    kept
}

fn entry(e: &Entry, terms: TermSet) -> Entry {
    Entry {
        value: e.value.clone(),
        terms,
    }
}

fn restrict_dimension(dim: &Dimension, sub: &Subset<'_>) -> Option<Dimension> {
    let all = sub.all();
    let full = Full {
        sub,
        untested: (0..sub.n())
            .filter(|&i| dim.tested.binary_search(&sub.terms[i as usize]).is_err())
            .collect(),
    };
    let default = full.of(&dim.default);
    // Written out whatever the kind: the implied form (`default`, or for
    // strings the default of both sides) would read the restricted default,
    // which a `caps` dimension replaces below.
    let absent_set = dim.absent_set();
    let absent = Some(full.of(&absent_set));
    let suffix_default = dim.suffix_default.as_ref().map(|s| full.of(s));
    // Every set below is full over the subset, so every term counts as tested.
    let mut out = Dimension {
        kind: dim.kind,
        tested: all.clone(),
        default: default.clone(),
        absent: absent.clone(),
        suffix_default: suffix_default.clone(),
        resolve: dim.resolve,
        relation: dim.relation.clone(),
        ..Dimension::default()
    };
    match dim.kind {
        DimensionKind::Path | DimensionKind::String => {
            let mut prefixes: Vec<(Vec<u8>, &Entry)> = dim
                .prefix
                .iter()
                .map(|e| (e.value.as_bytes().to_vec(), e))
                .collect();
            let kept_prefix = lpm_keep(&full, &mut prefixes, &default);
            let sd = suffix_default.clone().unwrap_or_else(|| all.clone());
            let mut suffixes: Vec<(Vec<u8>, &Entry)> = dim
                .suffix
                .iter()
                .map(|e| (e.value.bytes().rev().collect(), e))
                .collect();
            let kept_suffix = lpm_keep(&full, &mut suffixes, &sd);
            let prefix_index: HashMap<&[u8], &Entry> =
                dim.prefix.iter().map(|e| (e.value.as_bytes(), e)).collect();
            let suffix_index: HashMap<Vec<u8>, &Entry> = dim
                .suffix
                .iter()
                .map(|e| (e.value.bytes().rev().collect(), e))
                .collect();
            for e in &dim.exact {
                let set = full.of(&e.terms);
                let p = longest(&prefix_index, e.value.as_bytes())
                    .map_or_else(|| default.clone(), |p| full.of(&p.terms));
                let fallback = if dim.suffix_default.is_some() {
                    let rev: Vec<u8> = e.value.bytes().rev().collect();
                    let s = (0..=rev.len())
                        .rev()
                        .find_map(|i| suffix_index.get(&rev[..i]))
                        .map_or_else(|| sd.clone(), |s| full.of(&s.terms));
                    crate::lower::intersect(&p, &s)
                } else {
                    p
                };
                if set != fallback {
                    out.exact.push(entry(e, set));
                }
            }
            out.prefix = kept_prefix.into_iter().map(|(e, s)| entry(e, s)).collect();
            out.suffix = kept_suffix.into_iter().map(|(e, s)| entry(e, s)).collect();
            out.prefix.sort_by(|a, b| a.value.cmp(&b.value));
            out.suffix.sort_by(|a, b| a.value.cmp(&b.value));
        }
        DimensionKind::Ip => {
            let nets: HashMap<IpNet, &Entry> = dim
                .prefix
                .iter()
                .filter_map(|e| e.value.parse::<IpNet>().ok().map(|n| (n, e)))
                .collect();
            let mut order: Vec<(&IpNet, &&Entry)> = nets.iter().collect();
            order.sort_by_key(|(n, _)| (n.prefix_len(), **n));
            let mut kept: HashMap<IpNet, TermSet> = HashMap::new();
            for (net, e) in order {
                let set = full.of(&e.terms);
                let parent = (0..net.prefix_len())
                    .rev()
                    .find_map(|l| {
                        let up = IpNet::new(net.network(), l).ok()?.trunc();
                        kept.get(&up)
                    })
                    .unwrap_or(&default);
                if &set != parent {
                    kept.insert(*net, set.clone());
                    out.prefix.push(entry(e, set));
                }
            }
            out.prefix.sort_by(|a, b| a.value.cmp(&b.value));
        }
        DimensionKind::Int => {
            if dim.resolve.is_some() {
                // Names resolve on the node against the ranges: keep both whole
                // so that the node decides as for the full table.
                out.ranges = dim
                    .ranges
                    .iter()
                    .map(|r| RangeEntry {
                        terms: full.of(&r.terms),
                        ..r.clone()
                    })
                    .collect();
                out.exact = dim
                    .exact
                    .iter()
                    .map(|e| entry(e, full.of(&e.terms)))
                    .collect();
            } else {
                for r in &dim.ranges {
                    let set = full.of(&r.terms);
                    if set != default {
                        out.ranges.push(RangeEntry {
                            terms: set,
                            ..r.clone()
                        });
                    }
                }
            }
        }
        DimensionKind::Enum | DimensionKind::Bool | DimensionKind::Relation => {
            for e in &dim.exact {
                let set = full.of(&e.terms);
                if set != default {
                    out.exact.push(entry(e, set));
                }
            }
        }
        DimensionKind::Caps => {
            // With masks, a present value never reads `default`: dropping
            // every mask must leave `all`, not the default.
            if !dim.masks.is_empty() {
                out.default = all.clone();
            }
            for m in &dim.masks {
                let held = full.of(&m.held);
                let lacking = full.of(&m.lacking);
                if held != all || lacking != all {
                    out.masks.push(MaskEntry {
                        caps: m.caps.clone(),
                        held,
                        lacking,
                    });
                }
            }
        }
    }
    let unconstrained = out.exact.is_empty()
        && out.prefix.is_empty()
        && out.suffix.is_empty()
        && out.ranges.is_empty()
        && out.masks.is_empty()
        && out.default == all
        && out.absent.as_ref().is_none_or(|a| *a == all)
        && out.suffix_default.as_ref().is_none_or(|s| *s == all);
    (!unconstrained).then_some(out)
}
