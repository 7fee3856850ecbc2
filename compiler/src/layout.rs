//! Where a hook's terms go in the kernel's term masks, and what the kernel
//! tables of a subset of terms are.
//!
//! A kernel mask holds [`MASK_TERMS`] terms. A hook with more terms is
//! *anchored*: most of its terms are split into *groups* by a field they
//! test with a finite set of values or prefixes, the *anchor*; the others
//! stay *unanchored* in the hook's own words. Per event the kernel
//! classifies the unanchored terms as before, looks the anchor's value up
//! once to find its group (and the group's terms that value can satisfy),
//! and classifies that group alone: the work per event follows one group
//! per anchor, not the hook's term count.
//!
//! Two kinds of anchor ([`AnchorKind`]):
//! - **exact**: a `path`, `string` or integer field its terms test with
//!   exact values only (`process.binary == "/usr/bin/x"`, `net.dport in
//!   {80, 443}`). The kernel hashes the value (`anchor_exact`); the value's
//!   mask is exactly the terms it satisfies, and a group's tables leave the
//!   anchor out.
//! - **prefix**: a `path` or `string` field its terms test with exact values
//!   and prefixes only (`file.path startswith "/home/alice/"`), whatever
//!   else they exclude (`and not == …`, `endswith`), an `ip` field they
//!   test with CIDR blocks only (`net.daddr in 10.1.0.0/16`), or an integer
//!   field they test with ranges only (`user.uid in 1000..1999`). The
//!   kernel finds the longest key in an LPM trie (`anchor_prefix`: a prefix
//!   as it is, an exact value followed by a zero byte; for addresses the
//!   family byte and the block; for integers the aligned blocks of each
//!   range, which are disjoint). A key's mask holds its own terms and those of
//!   every key that is a prefix of it, so the longest match holds every
//!   term that *can* match; the group's tables test the field again to
//!   decide which do.
//!
//! ```text
//! mask words:  [ unanchored terms | anchor 1's window | anchor 2's window … ]
//!                                   ▲ group g of value v: anchor(v) = (g, terms of g v can satisfy)
//! ```
//!
//! The plan ([`plan_parts`]) takes candidate anchors, those anchoring the
//! most terms first, until the unanchored terms fit next to one window per
//! anchor, at most [`MAX_ANCHORS`] per hook over every bundle on a node. A
//! prefix key with more than [`MAX_PREFIX_FANOUT`] longer keys under it
//! (`startswith "/"` among many paths) leaves its terms unanchored: they
//! would be in the mask, and the group, of every key under it.
//!
//! [`restrict`] gives the tables of a subset of terms (the unanchored ones, or
//! one group) renumbered from 0, with the entries that do not change the
//! subset's lookups left out: a group's tables hold what its own terms test,
//! so kernel memory stays near linear in rules however many groups there are.
//!
//! Pure: used by `policyc compile` (a bundle that compiles has a layout) and by
//! policyd's table builder (runtime/src/tables.rs), so both decide alike.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use ipnet::IpNet;

use crate::bundle::{
    Dimension, DimensionKind, Entry, HookTable, MaskEntry, RangeEntry, Term, TermSet, VerdictMasks,
};
use crate::limits::{MASK_TERMS, PATH_KEY_LEN};

/// Most anchors per hook, over every bundle a node loads (the kernel's
/// `MAX_ANCHORS`, `struct hook_config.anchors`).
pub const MAX_ANCHORS: usize = 4;

/// Most keys of a prefix anchor that may lie under one key (have it as a
/// prefix) for that key's terms to be anchored: each such key's mask, and
/// its group, holds them too. Past it they stay unanchored, which bounds
/// the copies per term and keeps kernel memory linear in rules.
pub const MAX_PREFIX_FANOUT: usize = 16;

/// Bytes of an `anchor_prefix` key after its namespace byte (`STR_LPM_LEN`
/// in the C header): an LPM trie holds at most 256 bytes of data.
pub const PREFIX_KEY_LEN: usize = PATH_KEY_LEN - 1;

/// Why a hook's terms have no kernel layout.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, miette::Diagnostic)]
pub enum LayoutError {
    /// More terms than a mask holds and no dimension to anchor them on.
    #[error(
        "hook `{hook}` has {terms} terms, more than the {max} one kernel mask holds, and no \
         path, string, address or number field that its rules test with exact values, \
         prefixes, CIDR blocks or ranges only"
    )]
    #[diagnostic(
        code(policyc::kernel_limit),
        help("past {max} terms per hook, the kernel splits rules by a field they test with `==`, `in` (values, CIDR blocks, ranges) or `startswith` (such as `process.binary`)")
    )]
    NoAnchor {
        /// The hook.
        hook: String,
        /// Its terms.
        terms: usize,
        /// [`MASK_TERMS`].
        max: usize,
    },
    /// Too many terms are left out by every anchor.
    #[error(
        "hook `{hook}`: {unanchored} terms do not test {anchors} with exact values, prefixes, \
         CIDR blocks or ranges only; the kernel holds at most {max} such terms (beside the ones \
         split by {anchors}){note}"
    )]
    #[diagnostic(
        code(policyc::kernel_limit),
        help(
            "give more of this hook's rules an `==`, `in` or narrow `startswith` test of {anchors}"
        )
    )]
    TooManyUnanchored {
        /// The hook.
        hook: String,
        /// The anchor fields, each in backticks, comma-separated.
        anchors: String,
        /// Terms not anchored.
        unanchored: usize,
        /// Most the mask holds next to one window per anchor.
        max: usize,
        /// Why more terms could not be anchored, when known: `; …` or
        /// empty.
        note: String,
    },
    /// One anchor key can match more terms than a group holds.
    #[error(
        "hook `{hook}`: {terms} terms test `{anchor}` against `{value}`; the kernel decides at \
         most {max} terms per value"
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
        /// The value (for a prefix anchor, an exact value or a prefix).
        value: String,
        /// Terms that value can match.
        terms: usize,
        /// Capacity of the group window.
        max: usize,
    },
}

/// How the kernel looks an anchor's value up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum AnchorKind {
    /// `anchor_exact`, a hash of the value (zero-padded string, or the
    /// number as 8 big-endian bytes): terms test the field with exact values
    /// only, and a value's mask is the terms it satisfies.
    Exact,
    /// `anchor_prefix`, an LPM trie over the string (or the address family
    /// and address, or the number): terms test the field with exact values
    /// and prefixes (CIDR blocks, integer ranges) only; a key's mask is the terms that can match a value
    /// it is the longest key of, and the group tests the field again.
    Prefix,
}

/// A field that terms of one table can be anchored on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// The dimension (field) name.
    pub dimension: String,
    /// How its values are looked up.
    pub kind: AnchorKind,
    /// The terms it anchors (ids of the table, ascending).
    pub terms: TermSet,
}

/// The layout of one bundle's hook table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookLayout {
    /// Term ids (ascending) decided in the hook's own words: every term when
    /// `anchors` is empty.
    pub unanchored: TermSet,
    /// The anchors and their groups, when the terms do not fit one mask.
    pub anchors: Vec<AnchorLayout>,
}

/// Anchored terms, split into groups by the anchor's values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnchorLayout {
    /// Name of the anchor dimension (a `path`, `string` or integer field).
    pub dimension: String,
    /// How its values are looked up.
    pub kind: AnchorKind,
    /// The mask words of its group window, `lo..hi`.
    pub window: (u32, u32),
    /// The groups; each fits the window.
    pub groups: Vec<GroupLayout>,
}

impl AnchorLayout {
    /// The dimension a group's tables leave out ([`restrict`]'s `skip`): an
    /// exact anchor's, whose value masks decide it; none for a prefix
    /// anchor, whose groups test the field again.
    pub fn skip(&self) -> Option<&str> {
        (self.kind == AnchorKind::Exact).then_some(self.dimension.as_str())
    }
}

/// One group of anchored terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupLayout {
    /// Term ids of the bundle's hook table, ascending: position `i` in the
    /// group window is `terms[i]`. A term whose anchor keys fall in several
    /// groups is in each.
    pub terms: TermSet,
    /// Exact keys of the group and, per key, the positions (indices in
    /// `terms`) of the terms a value equal to it satisfies (exact anchor) or
    /// can satisfy (prefix anchor); sorted by value.
    pub values: Vec<(String, TermSet)>,
    /// Prefix keys (prefix anchors only) and the positions of the terms a
    /// value whose longest key it is can satisfy; sorted by prefix.
    pub prefixes: Vec<(String, TermSet)>,
}

/// The candidate anchors of `table`, at most [`MAX_ANCHORS`] + 1, each anchoring
/// terms the ones before it do not: greedily the field and kind that anchor
/// the most terms left (an exact anchor when a prefix anchor of the same
/// field would take no more); exact anchors only unless `prefix`. The terms
/// of a value (or prefix) that more than `max_key` terms test are left out:
/// a group could not hold them. Names of users and groups resolve on the
/// node, so such fields are not exact anchors (a number is an anchor value
/// only when the bundle says it).
pub fn candidates(table: &HookTable, prefix: bool, max_key: usize) -> Vec<Candidate> {
    let mut left = vec![true; table.terms.len()];
    let mut out: Vec<Candidate> = Vec::new();
    // One past the cap, so that a plan can say that the cap left one out.
    while out.len() <= MAX_ANCHORS {
        let mut best: Option<Candidate> = None;
        for (name, dim) in &table.dimensions {
            for kind in [AnchorKind::Exact, AnchorKind::Prefix] {
                let terms = match kind {
                    AnchorKind::Exact => exact_candidate(dim, &left, max_key),
                    AnchorKind::Prefix if prefix => prefix_candidate(dim, &left, max_key),
                    AnchorKind::Prefix => continue,
                };
                if terms.len() > best.as_ref().map_or(0, |b| b.terms.len()) {
                    best = Some(Candidate {
                        dimension: name.clone(),
                        kind,
                        terms,
                    });
                }
            }
        }
        let Some(best) = best else { break };
        for &t in &best.terms {
            left[t as usize] = false;
        }
        out.push(best);
    }
    out
}

/// Terms still `left` that `dim` can anchor exactly: satisfied by its exact
/// values and by nothing else: not by a value matching no exact entry
/// (whose set is its prefix side, the default or a prefix entry,
/// intersected with its suffix side: a term the prefix side excludes is
/// excluded whatever the suffix), nor by a missing field; and no value of
/// theirs tested by more than `max_key` such terms. Empty when `dim` has no
/// exact values to key on.
fn exact_candidate(dim: &Dimension, left: &[bool], max_key: usize) -> TermSet {
    let keyed = match dim.kind {
        DimensionKind::Path | DimensionKind::String => !dim.exact.is_empty(),
        DimensionKind::Int => dim.resolve.is_none() && dim.ranges.iter().any(|r| r.lo == r.hi),
        _ => false,
    };
    if !keyed {
        return TermSet::new();
    }
    let mut other: HashSet<u32> = dim.default.iter().copied().collect();
    other.extend(dim.absent.iter().flatten());
    // A prefix entry's set is its base's with its `add` terms: over all of
    // them, the default's terms and every `add`.
    for e in &dim.prefix {
        other.extend(&e.add);
    }
    // An integer's exact values are its one-value ranges.
    other.extend(in_some_range(dim, |r| r.lo != r.hi));
    let ok = |t: &u32| left[*t as usize] && !other.contains(t);
    let mut exact: BTreeSet<u32> = BTreeSet::new();
    let mut crowded: HashSet<u32> = HashSet::new();
    for (_, ts) in exact_values(dim) {
        let n = ts.iter().filter(|t| ok(t)).count();
        exact.extend(ts.iter().filter(|t| ok(t)));
        if n > max_key {
            crowded.extend(ts.iter().copied());
        }
    }
    exact.into_iter().filter(|t| !crowded.contains(t)).collect()
}

/// The exact values of an anchor dimension and the terms they let through
/// that no value without an exact entry does, in order: the `add` terms of
/// `exact` entries of strings (a base is a prefix and suffix lookup, whose
/// terms are not exact-anchored); for integers each one-value range (as
/// decimal text) with the terms of its set that are in no default and in
/// no range of several values.
fn exact_values(dim: &Dimension) -> Vec<(String, TermSet)> {
    match dim.kind {
        DimensionKind::Int => {
            let mut wide = in_some_range(dim, |r| r.lo != r.hi);
            wide.extend(&dim.default);
            let sets = ranges_kept(dim, |t| !wide.contains(&t));
            dim.ranges
                .iter()
                .zip(sets)
                .filter(|(r, _)| r.lo == r.hi)
                .map(|(r, set)| (r.lo.to_string(), set))
                .collect()
        }
        _ => dim
            .exact
            .iter()
            .map(|e| (e.value.clone(), e.add.clone()))
            .collect(),
    }
}

/// The terms in the resolved set of some range `pick` accepts (ranges are
/// changes from the previous one, see [`RangeEntry`]).
fn in_some_range(dim: &Dimension, pick: impl Fn(&RangeEntry) -> bool) -> HashSet<u32> {
    picked_ranges(dim, pick)
        .into_iter()
        .filter(|&(_, n)| n > 0)
        .map(|(t, _)| t)
        .collect()
}

/// How many of the ranges `pick` accepts each term is in (a term of the
/// default from the first range on): per term the runs of ranges it is
/// in, checked against a running count of picked ranges, so the cost
/// follows the changes, not ranges × terms.
fn picked_ranges(dim: &Dimension, pick: impl Fn(&RangeEntry) -> bool) -> HashMap<u32, usize> {
    // picked[i]: picked ranges before range i.
    let mut picked = Vec::with_capacity(dim.ranges.len() + 1);
    picked.push(0usize);
    for r in &dim.ranges {
        picked.push(picked.last().copied().unwrap_or(0) + usize::from(pick(r)));
    }
    // The range each present term entered at.
    let mut since: HashMap<u32, usize> = dim.default.iter().map(|&t| (t, 0)).collect();
    let mut counts: HashMap<u32, usize> = HashMap::new();
    for (i, r) in dim.ranges.iter().enumerate() {
        for t in &r.remove {
            if let Some(s) = since.remove(t) {
                *counts.entry(*t).or_default() += picked[i] - picked[s];
            }
        }
        for &t in &r.add {
            since.entry(t).or_insert(i);
        }
    }
    let n = dim.ranges.len();
    for (t, s) in since {
        *counts.entry(t).or_default() += picked[n] - picked[s];
    }
    counts
}

/// Per range, the terms of its resolved set that `keep` accepts,
/// ascending: a walk over the changes keeping only those terms.
fn ranges_kept(dim: &Dimension, keep: impl Fn(u32) -> bool) -> Vec<TermSet> {
    let mut current: BTreeSet<u32> = dim.default.iter().copied().filter(|&t| keep(t)).collect();
    dim.ranges
        .iter()
        .map(|r| {
            for t in &r.remove {
                current.remove(t);
            }
            current.extend(r.add.iter().copied().filter(|&t| keep(t)));
            current.iter().copied().collect()
        })
        .collect()
}

/// One key of a prefix anchor.
struct PrefixKey<'d> {
    /// What the key is a prefix of, one element per unit of the LPM key:
    /// for strings its bytes (a prefix as it is; an exact value followed by
    /// a zero byte, at most [`PREFIX_KEY_LEN`] bytes in all: a value of that
    /// length keeps all its bytes and no zero, and may match longer values
    /// too, which the group's own test of the field sorts out); for
    /// addresses its bits, 0 or 1 (the family's 8, then the block's); for
    /// an integer range `lo` and `hi` big-endian (ranges are disjoint: no
    /// key is a prefix of another).
    bytes: Vec<u8>,
    /// The literal: a string, a CIDR block, or an integer range `lo..hi`.
    value: std::borrow::Cow<'d, str>,
    /// Whether it is a prefix (`startswith`) rather than an exact value.
    prefix: bool,
    /// The anchored terms this key is the first to let through: its entry's
    /// `add` terms (an anchored term is in no default, so a value reaches it
    /// only through the key that adds it or a longer one).
    own: Vec<u32>,
}

/// The LPM blocks of an integer anchor's range key `lo..hi` (as a group's
/// `prefixes` name it): `(value, prefix length in bits)` of the 64-bit
/// value, from [`crate::lower::range_prefixes`]. `None` when `key` is not
/// such a range.
pub fn range_blocks(key: &str) -> Option<Vec<(u64, u32)>> {
    let (lo, hi) = key.split_once("..")?;
    let (lo, hi): (u64, u64) = (lo.parse().ok()?, hi.parse().ok()?);
    (lo <= hi).then(|| crate::lower::range_prefixes(lo, hi, 64))
}

/// LPM bytes of an exact value in `anchor_prefix`.
fn exact_key(value: &str) -> Vec<u8> {
    let mut b = value.as_bytes().to_vec();
    if b.len() < PREFIX_KEY_LEN {
        b.push(0);
    }
    b.truncate(PREFIX_KEY_LEN);
    b
}

/// The bits of CIDR block `value` as an anchor key sees them: the address
/// family (4 or 6) as 8 bits, then the block's leading bits. `None` for a
/// value that is not a block (the bundle's validation refuses those).
fn ip_key_bits(value: &str) -> Option<Vec<u8>> {
    let net: IpNet = value.parse().ok()?;
    let (family, octets): (u8, Vec<u8>) = match net {
        IpNet::V4(n) => (4, n.network().octets().to_vec()),
        IpNet::V6(n) => (6, n.network().octets().to_vec()),
    };
    let bit = |bytes: &[u8], i: usize| (bytes[i / 8] >> (7 - i % 8)) & 1;
    let mut out: Vec<u8> = (0..8).map(|i| bit(&[family], i)).collect();
    out.extend((0..usize::from(net.prefix_len())).map(|i| bit(&octets, i)));
    Some(out)
}

/// The keys of `dim` for the terms `member` accepts, sorted by bytes: each
/// key's longer keys follow it.
fn prefix_keys<'d>(dim: &'d Dimension, member: impl Fn(u32) -> bool) -> Vec<PrefixKey<'d>> {
    let mut keys = Vec::new();
    for p in &dim.prefix {
        let own: Vec<u32> = p.add.iter().copied().filter(|&t| member(t)).collect();
        let bytes = match dim.kind {
            DimensionKind::Ip => ip_key_bits(&p.value),
            _ => Some(p.value.as_bytes().to_vec()),
        };
        if let (false, Some(bytes)) = (own.is_empty(), bytes) {
            keys.push(PrefixKey {
                bytes,
                value: p.value.as_str().into(),
                prefix: true,
                own,
            });
        }
    }
    // An integer's ranges: each value is in one, and no range key is a
    // prefix of another, so each key has the anchored terms of its whole
    // (resolved) set. A term in more than [`MAX_PREFIX_FANOUT`] + 1 ranges
    // (a wide range over narrower ones) is left out, as a broad prefix is:
    // it would be copied into every key (ranges × terms), and stays in the
    // hook's own words.
    let spans = picked_ranges(dim, |_| true);
    let narrow = |t: u32| member(t) && spans.get(&t).is_none_or(|&n| n <= MAX_PREFIX_FANOUT + 1);
    for (r, own) in dim.ranges.iter().zip(ranges_kept(dim, narrow)) {
        if !own.is_empty() {
            let mut bytes = r.lo.to_be_bytes().to_vec();
            bytes.extend(r.hi.to_be_bytes());
            keys.push(PrefixKey {
                bytes,
                value: format!("{}..{}", r.lo, r.hi).into(),
                prefix: true,
                own,
            });
        }
    }
    // (An integer's `exact` entries are names resolved on the node: such a
    // dimension is no anchor.)
    for e in dim.exact.iter().filter(|_| dim.kind != DimensionKind::Int) {
        let own: Vec<u32> = e.add.iter().copied().filter(|&t| member(t)).collect();
        if !own.is_empty() {
            keys.push(PrefixKey {
                bytes: exact_key(&e.value),
                value: e.value.as_str().into(),
                prefix: false,
                own,
            });
        }
    }
    keys.sort_by(|a, b| a.bytes.cmp(&b.bytes));
    keys
}

/// Per key of `keys` (sorted), how many keys it is a prefix of.
fn descendants(keys: &[PrefixKey<'_>]) -> Vec<usize> {
    let mut out = vec![0; keys.len()];
    let mut open: Vec<usize> = Vec::new();
    for (i, k) in keys.iter().enumerate() {
        while let Some(&top) = open.last() {
            if k.bytes.starts_with(&keys[top].bytes) {
                break;
            }
            out[top] = i - top - 1;
            open.pop();
        }
        open.push(i);
    }
    for top in open {
        out[top] = keys.len() - top - 1;
    }
    out
}

/// Terms still `left` that `dim` (a `path`, `string`, `ip` or integer
/// field) can anchor by prefix: tested by it, not satisfied by a value
/// matching no entry nor by a missing field (so every value that satisfies
/// one has an exact or prefix key of the term: a CIDR block for addresses,
/// a range for integers), without a key over more than
/// [`MAX_PREFIX_FANOUT`] others nor one of more than `max_key` terms.
/// Empty when `dim` has no prefix entries or ranges of several values (an
/// exact anchor does as well then), and for integers named on the node.
fn prefix_candidate(dim: &Dimension, left: &[bool], max_key: usize) -> TermSet {
    let keyed = match dim.kind {
        DimensionKind::Path | DimensionKind::String | DimensionKind::Ip => !dim.prefix.is_empty(),
        DimensionKind::Int => dim.resolve.is_none() && dim.ranges.iter().any(|r| r.lo != r.hi),
        _ => false,
    };
    if !keyed {
        return TermSet::new();
    }
    let mut other: HashSet<u32> = dim.default.iter().copied().collect();
    other.extend(dim.absent_set());
    let keys = prefix_keys(dim, |t| left[t as usize] && !other.contains(&t));
    let broad: HashSet<u32> = keys
        .iter()
        .zip(descendants(&keys))
        .filter(|(k, d)| *d > MAX_PREFIX_FANOUT || k.own.len() > max_key)
        .flat_map(|(k, _)| k.own.iter().copied())
        .collect();
    let terms: BTreeSet<u32> = keys
        .iter()
        .flat_map(|k| k.own.iter().copied())
        .filter(|t| !broad.contains(t))
        .collect();
    terms.into_iter().collect()
}

/// The layout of `table` when `words` mask words are free for it: flat when
/// its terms fit, else anchored (see [`plan_parts`]).
///
/// # Errors
/// [`LayoutError`] when the terms do not fit any layout.
pub fn plan(hook: &str, table: &HookTable, words: usize) -> Result<HookLayout, LayoutError> {
    Ok(plan_parts(hook, &[table], words)?.remove(0))
}

/// The layouts of several bundles' tables of one hook sharing `words` mask
/// words: every term in the hook's own words when they fit; else the
/// candidate anchors of all tables, those anchoring the most terms first,
/// until the unanchored terms fit beside one window per anchor (at most
/// [`MAX_ANCHORS`]): exact anchors alone when they are enough (a hash
/// lookup, and groups that need not test the field again), else exact and
/// prefix anchors. The words left are split evenly into the anchors'
/// windows, in table order. The unanchored terms of the tables follow one
/// another in the own words, as do the tables' windows.
///
/// # Errors
/// [`LayoutError::NoAnchor`] when no table has a candidate,
/// [`LayoutError::TooManyUnanchored`] when the anchors leave too many
/// terms, [`LayoutError::ValueTooManyTerms`] when one key alone can match
/// more terms than a window holds.
pub fn plan_parts(
    hook: &str,
    tables: &[&HookTable],
    words: usize,
) -> Result<Vec<HookLayout>, LayoutError> {
    let n: Vec<usize> = tables.iter().map(|t| t.terms.len()).collect();
    let count: usize = n.iter().sum();
    if count <= words * 64 {
        return Ok(n
            .iter()
            .map(|&k| HookLayout {
                unanchored: (0..k as u32).collect(),
                anchors: Vec::new(),
            })
            .collect());
    }
    // A value too crowded for the window it got is left out of the
    // candidates, and the plan made again: each retry lowers the bound.
    // (When leaving crowded values out leaves no anchor at all, `plan_with`
    // names the most crowded one.)
    let mut last = None;
    for prefix in [false, true] {
        let mut max_key = words * 64;
        loop {
            match plan_with(hook, tables, words, prefix, max_key) {
                Ok(plan) => return Ok(plan),
                Err(LayoutError::ValueTooManyTerms { max, .. }) if max < max_key => max_key = max,
                Err(e) => {
                    last = Some(e);
                    break;
                }
            }
        }
    }
    Err(last.expect("an error from the last plan"))
}

/// [`plan_parts`] past one mask, with prefix anchors or without, leaving
/// out values of more than `max_key` terms.
fn plan_with(
    hook: &str,
    tables: &[&HookTable],
    words: usize,
    prefix: bool,
    max_key: usize,
) -> Result<Vec<HookLayout>, LayoutError> {
    let n: Vec<usize> = tables.iter().map(|t| t.terms.len()).collect();
    let count: usize = n.iter().sum();
    let cands: Vec<Vec<Candidate>> = tables
        .iter()
        .map(|t| candidates(t, prefix, max_key))
        .collect();
    if cands.iter().all(Vec::is_empty) {
        // Crowded values left out everything: name the most crowded.
        let crowded = tables
            .iter()
            .flat_map(|t| {
                candidates(t, prefix, usize::MAX)
                    .into_iter()
                    .flat_map(move |c| {
                        keyed_terms(t, &c)
                            .into_iter()
                            .map(move |k| (c.dimension.clone(), k))
                    })
            })
            .max_by_key(|(_, (_, _, ts))| ts.len());
        if let Some((anchor, (value, _, ts))) = crowded {
            return Err(LayoutError::ValueTooManyTerms {
                hook: hook.to_string(),
                anchor,
                value,
                terms: ts.len(),
                max: max_key,
            });
        }
        return Err(LayoutError::NoAnchor {
            hook: hook.to_string(),
            terms: count,
            max: words * 64,
        });
    }
    // A table's candidates are taken in its own order; each anchors no more
    // than the one before, so taking the largest first respects it.
    let mut order: Vec<(usize, usize)> = cands
        .iter()
        .enumerate()
        .flat_map(|(p, cs)| (0..cs.len()).map(move |j| (p, j)))
        .collect();
    order.sort_by_key(|&(p, j)| (std::cmp::Reverse(cands[p][j].terms.len()), p, j));
    let mut taken = vec![0usize; tables.len()];
    let own_words = |taken: &[usize]| {
        let bits: usize = (0..tables.len())
            .map(|p| {
                n[p] - cands[p][..taken[p]]
                    .iter()
                    .map(|c| c.terms.len())
                    .sum::<usize>()
            })
            .sum();
        bits.div_ceil(64)
    };
    let mut chosen = 0;
    for &(p, j) in &order {
        if chosen == MAX_ANCHORS || (chosen > 0 && own_words(&taken) + chosen <= words) {
            break;
        }
        if j == taken[p] {
            taken[p] += 1;
            chosen += 1;
        }
    }
    let own = own_words(&taken);
    if own + chosen > words {
        // Each field once, in the order taken.
        let mut anchors: Vec<String> = Vec::new();
        for c in (0..tables.len()).flat_map(|p| &cands[p][..taken[p]]) {
            let name = format!("`{}`", c.dimension);
            if !anchors.contains(&name) {
                anchors.push(name);
            }
        }
        let unanchored = (0..tables.len())
            .map(|p| {
                n[p] - cands[p][..taken[p]]
                    .iter()
                    .map(|c| c.terms.len())
                    .sum::<usize>()
            })
            .sum();
        let left_out = cands.iter().map(Vec::len).sum::<usize>() - chosen;
        let note = if left_out > 0 {
            format!(
                "; {left_out} more candidate anchors were left out: at most {MAX_ANCHORS} anchors \
                 per hook over every bundle on a node"
            )
        } else {
            String::new()
        };
        return Err(LayoutError::TooManyUnanchored {
            hook: hook.to_string(),
            anchors: anchors.join(", "),
            unanchored,
            max: words.saturating_sub(chosen) * 64,
            note,
        });
    }
    let per = (words - own) / chosen;
    let mut next = 0;
    let mut out = Vec::with_capacity(tables.len());
    for (p, table) in tables.iter().enumerate() {
        let mut anchored: Vec<u32> = Vec::new();
        let mut anchors = Vec::new();
        for c in &cands[p][..taken[p]] {
            let lo = (own + next * per) as u32;
            next += 1;
            anchors.push(AnchorLayout {
                dimension: c.dimension.clone(),
                kind: c.kind,
                window: (lo, lo + per as u32),
                groups: groups(hook, table, c, per * 64)?,
            });
            anchored.extend(&c.terms);
        }
        anchored.sort_unstable();
        out.push(HookLayout {
            unanchored: complement(n[p] as u32, &anchored),
            anchors,
        });
    }
    Ok(out)
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

/// A key of a group being packed: its literal, whether it is a prefix, and
/// the term ids a value it is the key of can satisfy (ascending).
type KeyTerms = (String, bool, Vec<u32>);

/// The keys of candidate `c` of `table` with their term sets, in key order:
/// an exact anchor's values and the anchored terms each satisfies; a prefix
/// anchor's keys, each with the anchored terms of itself and of the keys
/// that are prefixes of it.
fn keyed_terms(table: &HookTable, c: &Candidate) -> Vec<KeyTerms> {
    let dim = &table.dimensions[&c.dimension];
    let is_anchored = |t: u32| c.terms.binary_search(&t).is_ok();
    match c.kind {
        AnchorKind::Exact => exact_values(dim)
            .into_iter()
            .map(|(v, set)| {
                (
                    v,
                    false,
                    set.iter().copied().filter(|&t| is_anchored(t)).collect(),
                )
            })
            .filter(|(_, _, ts): &KeyTerms| !ts.is_empty())
            .collect(),
        AnchorKind::Prefix => {
            let keys = prefix_keys(dim, is_anchored);
            let mut out: Vec<KeyTerms> = Vec::with_capacity(keys.len());
            // Keys open above the current one: index in `keys` and in `out`.
            let mut open: Vec<(usize, usize)> = Vec::new();
            for (i, k) in keys.iter().enumerate() {
                while open
                    .last()
                    .is_some_and(|&(top, _)| !k.bytes.starts_with(&keys[top].bytes))
                {
                    open.pop();
                }
                let mut set = open
                    .last()
                    .map_or_else(Vec::new, |&(_, o)| out[o].2.clone());
                set.extend(&k.own);
                set.sort_unstable();
                set.dedup();
                open.push((i, out.len()));
                out.push((k.value.to_string(), k.prefix, set));
            }
            out
        }
    }
}

/// Split the terms of candidate `c` into groups of at most `capacity` by
/// its keys, in key order.
///
/// # Errors
/// [`LayoutError::ValueTooManyTerms`] when one key alone can match more.
pub fn groups(
    hook: &str,
    table: &HookTable,
    c: &Candidate,
    capacity: usize,
) -> Result<Vec<GroupLayout>, LayoutError> {
    let mut out = Vec::new();
    let mut cur: BTreeSet<u32> = BTreeSet::new();
    let mut keys: Vec<KeyTerms> = Vec::new();
    let close = |cur: &mut BTreeSet<u32>, keys: &mut Vec<KeyTerms>, out: &mut Vec<GroupLayout>| {
        if keys.is_empty() {
            return;
        }
        let terms: TermSet = std::mem::take(cur).into_iter().collect();
        let mut g = GroupLayout {
            terms,
            values: Vec::new(),
            prefixes: Vec::new(),
        };
        for (v, prefix, ts) in std::mem::take(keys) {
            let pos = ts
                .iter()
                .map(|t| g.terms.binary_search(t).expect("in group") as u32)
                .collect();
            if prefix {
                g.prefixes.push((v, pos));
            } else {
                g.values.push((v, pos));
            }
        }
        g.values.sort_by(|a, b| a.0.cmp(&b.0));
        g.prefixes.sort_by(|a, b| a.0.cmp(&b.0));
        out.push(g);
    };
    for (value, prefix, ts) in keyed_terms(table, c) {
        if ts.len() > capacity {
            return Err(LayoutError::ValueTooManyTerms {
                hook: hook.to_string(),
                anchor: c.dimension.clone(),
                value,
                terms: ts.len(),
                max: capacity,
            });
        }
        let new = ts.iter().filter(|t| !cur.contains(t)).count();
        if cur.len() + new > capacity {
            close(&mut cur, &mut keys, &mut out);
        }
        cur.extend(&ts);
        keys.push((value, prefix, ts));
    }
    close(&mut cur, &mut keys, &mut out);
    Ok(out)
}

/// A subset of a table's terms (ids, ascending): position `i` is `terms[i]`.
struct Subset<'a> {
    terms: &'a [u32],
}

impl Subset<'_> {
    /// Positions of the subset's terms in `set` (sorted ids), ascending:
    /// positions follow ids, so they come out sorted.
    fn of(&self, set: &[u32]) -> TermSet {
        set.iter()
            .filter_map(|t| self.terms.binary_search(t).ok().map(|p| p as u32))
            .collect()
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
    let sub = Subset { terms };
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

/// `e` over `sub`, or `None` when it changes nothing there (a lookup that
/// would reach it gives its base's set instead, which is the same: the
/// entry's set over `sub` is its base's, so an entry whose base it was
/// inherits the same set through the next one up).
fn restrict_entry(e: &Entry, sub: &Subset<'_>) -> Option<Entry> {
    let out = Entry {
        value: e.value.clone(),
        add: sub.of(&e.add),
        remove: sub.of(&e.remove),
    };
    (!out.is_empty()).then_some(out)
}

/// `ranges` over `sub` (`n`: its number of terms), keeping only the intervals
/// whose restricted set differs from the restricted `default` (a value in
/// no interval gets the default: no table entry is needed), each written
/// as the change from the previous kept interval, and adjacent kept
/// intervals without a change merged. A walk over the restricted changes:
/// whether the running set equals the default is a count of the terms
/// where they differ, and a kept interval's change is read off the terms
/// touched since the last one.
fn restrict_ranges(
    ranges: &[RangeEntry],
    sub: &Subset<'_>,
    default: &[u32],
    n: usize,
) -> Vec<RangeEntry> {
    let mut in_default = vec![false; n];
    for &t in default {
        in_default[t as usize] = true;
    }
    let (mut current, mut kept) = (in_default.clone(), in_default.clone());
    let mut differ = 0usize; // |current Δ default|
    let mut touched: Vec<u32> = Vec::new();
    let mut out: Vec<RangeEntry> = Vec::new();
    for r in ranges {
        let changes = sub
            .of(&r.remove)
            .into_iter()
            .map(|t| (t, false))
            .chain(sub.of(&r.add).into_iter().map(|t| (t, true)));
        for (t, present) in changes {
            let i = t as usize;
            if current[i] != present {
                current[i] = present;
                if present == in_default[i] {
                    differ -= 1;
                } else {
                    differ += 1;
                }
                touched.push(t);
            }
        }
        if differ == 0 {
            continue;
        }
        touched.sort_unstable();
        touched.dedup();
        let (mut add, mut remove) = (Vec::new(), Vec::new());
        for t in touched.drain(..) {
            let i = t as usize;
            if current[i] != kept[i] {
                kept[i] = current[i];
                if current[i] {
                    add.push(t);
                } else {
                    remove.push(t);
                }
            }
        }
        match out.last_mut() {
            Some(last) if last.hi + 1 == r.lo && add.is_empty() && remove.is_empty() => {
                last.hi = r.hi;
            }
            _ => out.push(RangeEntry {
                lo: r.lo,
                hi: r.hi,
                add,
                remove,
            }),
        }
    }
    out
}

/// `dim` over `sub`, or `None` when no term of the subset tests it. Its sets
/// hold tested terms only, as the bundle's (schema 2): a lookup means the
/// stored set with the subset's untested terms, which both sides of every
/// comparison below share, so comparing the tested parts is enough, and
/// the work is about the dimension's entries, not entries × subset.
fn restrict_dimension(dim: &Dimension, sub: &Subset<'_>) -> Option<Dimension> {
    let all = sub.of(&dim.tested);
    if all.is_empty() {
        return None;
    }
    let default = sub.of(&dim.default);
    // Written out whatever the kind: the implied form (`default`, or for
    // strings the default of both sides) would read the restricted default,
    // which a `caps` dimension replaces below.
    let absent_set = dim.absent_set();
    let absent = Some(sub.of(&absent_set));
    let suffix_default = dim.suffix_default.as_ref().map(|s| sub.of(s));
    // `all`: the subset's tested terms, what a lookup of an unconstrained
    // value gives.
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
    // Entries are changes from their bases (schema 3), and restriction
    // commutes with both: an entry's set over the subset is its base's over
    // the subset with its restricted changes. Entries left without a change
    // are dropped.
    let kept = |list: &[Entry]| -> Vec<Entry> {
        list.iter().filter_map(|e| restrict_entry(e, sub)).collect()
    };
    match dim.kind {
        DimensionKind::Path | DimensionKind::String => {
            out.exact = kept(&dim.exact);
            out.prefix = kept(&dim.prefix);
            out.suffix = kept(&dim.suffix);
        }
        DimensionKind::Ip => out.prefix = kept(&dim.prefix),
        DimensionKind::Int => {
            if dim.resolve.is_some() {
                // Names resolve on the node against the ranges: keep both whole
                // so that the node decides as for the full table.
                out.ranges = dim
                    .ranges
                    .iter()
                    .map(|r| RangeEntry {
                        add: sub.of(&r.add),
                        remove: sub.of(&r.remove),
                        ..r.clone()
                    })
                    .collect();
                out.exact = dim
                    .exact
                    .iter()
                    .map(|e| Entry {
                        value: e.value.clone(),
                        add: sub.of(&e.add),
                        remove: sub.of(&e.remove),
                    })
                    .collect();
            } else {
                out.ranges = restrict_ranges(&dim.ranges, sub, &default, sub.terms.len());
            }
        }
        DimensionKind::Enum | DimensionKind::Bool | DimensionKind::Relation => {
            out.exact = kept(&dim.exact);
        }
        DimensionKind::Caps => {
            // With masks, a present value never reads `default`: dropping
            // every mask must leave `all`, not the default.
            if !dim.masks.is_empty() {
                out.default = all.clone();
            }
            for m in &dim.masks {
                let held = sub.of(&m.held);
                let lacking = sub.of(&m.lacking);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bundle::Hook;

    /// The table of `hook` compiled from rule declarations `text`.
    fn hook_table(text: &str, hook: Hook) -> HookTable {
        let b = crate::compile::evaluation_bundle_of(&format!("policy p {{}}\n{text}")).unwrap();
        b.spec.hooks[&hook].clone()
    }

    /// The exec table of one rule per condition-and-verdict in `rules`.
    fn table(rules: &[String]) -> HookTable {
        let text = rules
            .iter()
            .enumerate()
            .map(|(i, r)| format!("rule r{i} on exec {{ when {r} }}\n"))
            .collect::<String>();
        hook_table(&text, Hook::Exec)
    }

    /// Rule `i`'s term id (one term per rule, in order).
    fn ids(t: &HookTable, rules: &[usize]) -> TermSet {
        let mut out: TermSet = rules
            .iter()
            .map(|&r| t.terms.iter().find(|x| x.rule == r as u32).unwrap().id)
            .collect();
        out.sort_unstable();
        out
    }

    #[test]
    fn exact_anchors_when_they_are_enough() {
        // A prefix anchor would take every term; exact values alone fit.
        let mut rules: Vec<String> = (0..200)
            .map(|i| format!("process.binary == \"/bin/b{i}\" audit"))
            .collect();
        rules.push("process.binary startswith \"/opt/\" audit".into());
        let t = table(&rules);
        let l = plan("exec", &t, 2).unwrap();
        assert_eq!(l.anchors.len(), 1);
        assert_eq!(l.anchors[0].kind, AnchorKind::Exact);
        assert_eq!(l.anchors[0].skip(), Some("process.binary"));
        assert_eq!(l.unanchored, ids(&t, &[200]));
        assert_eq!(l.anchors[0].window, (1, 2));
        assert_eq!(l.anchors[0].groups.len(), 4);
    }

    #[test]
    fn prefix_keys_hold_the_terms_of_the_keys_above_them() {
        // 0: /a/, 1: /a/b/ except /a/b/ok, 2: == /a/b/c, 3: == /z; and
        // enough exact-only filler that the prefix rules do not fit beside it.
        let mut rules = vec![
            "process.binary startswith \"/a/\" audit".to_string(),
            "process.binary startswith \"/a/b/\" and not process.binary == \"/a/b/ok\" audit"
                .into(),
            "process.binary == \"/a/b/c\" audit".into(),
            "process.binary == \"/z\" audit".into(),
        ];
        rules.extend((0..200).map(|i| format!("process.binary startswith \"/f{i}/\" audit")));
        let t = table(&rules);
        let l = plan("exec", &t, 2).unwrap();
        assert_eq!(l.unanchored.len(), 0);
        let a = &l.anchors[0];
        assert_eq!((a.kind, a.skip()), (AnchorKind::Prefix, None));
        let keys: BTreeMap<(String, bool), TermSet> = a
            .groups
            .iter()
            .flat_map(|g| {
                let ids = |pos: &TermSet| pos.iter().map(|&p| g.terms[p as usize]).collect();
                g.values
                    .iter()
                    .map(move |(v, p)| ((v.clone(), false), ids(p)))
                    .chain(
                        g.prefixes
                            .iter()
                            .map(move |(v, p)| ((v.clone(), true), ids(p))),
                    )
            })
            .collect();
        assert_eq!(keys[&("/a/".into(), true)], ids(&t, &[0]));
        assert_eq!(keys[&("/a/b/".into(), true)], ids(&t, &[0, 1]));
        assert_eq!(keys[&("/a/b/c".into(), false)], ids(&t, &[0, 1, 2]));
        assert_eq!(keys[&("/z".into(), false)], ids(&t, &[3]));
        // `/a/b/ok` adds no term of its own: the group's test of the field
        // leaves rule 1 out there.
        assert!(!keys.contains_key(&("/a/b/ok".into(), false)));
        // Every key in the group of its terms.
        for g in &a.groups {
            for (_, pos) in g.values.iter().chain(&g.prefixes) {
                assert!(pos.iter().all(|&p| (p as usize) < g.terms.len()));
            }
        }
    }

    #[test]
    fn a_prefix_over_too_many_keys_stays_unanchored() {
        let mut rules: Vec<String> = (0..300)
            .map(|i| format!("process.binary startswith \"/srv/s{i}/\" audit"))
            .collect();
        rules.push("process.binary startswith \"/srv/\" deny".into());
        let t = table(&rules);
        let l = plan("exec", &t, 2).unwrap();
        assert_eq!(l.unanchored, ids(&t, &[300]));
        assert_eq!(l.anchors[0].kind, AnchorKind::Prefix);
        // With as many keys under it as allowed, the same prefix is
        // anchored (beside other prefixes and unanchored suffix tests).
        let few: Vec<String> = rules[..MAX_PREFIX_FANOUT]
            .iter()
            .cloned()
            .chain(std::iter::once(rules[300].clone()))
            .chain((0..150).map(|i| format!("process.binary startswith \"/opt/o{i}/\" audit")))
            .chain((0..60).map(|i| format!("process.binary endswith \"/e{i}\" audit")))
            .collect();
        let t = table(&few);
        let l = plan("exec", &t, 3).unwrap();
        assert_eq!(l.anchors[0].kind, AnchorKind::Prefix);
        assert_eq!(l.unanchored.len(), 60);
        assert!(!l.unanchored.contains(&ids(&t, &[MAX_PREFIX_FANOUT])[0]));
    }

    #[test]
    fn a_value_no_window_holds_leaves_its_terms_to_other_anchors() {
        // Every rule tests port 443: a port anchor would put 200 terms in one
        // 64-term group; the blocks take them instead.
        let text: String = (0..200)
            .map(|i| format!("rule r{i} on connect {{ when net.dport == 443 and net.daddr in 10.{i}.0.0/16 deny }}\n"))
            .collect();
        let t = &hook_table(&text, Hook::Connect);
        let l = plan("connect", t, 2).unwrap();
        assert_eq!(l.anchors.len(), 1);
        assert_eq!(l.anchors[0].dimension, "net.daddr");
        assert_eq!(l.anchors[0].kind, AnchorKind::Prefix);
        assert!(l.unanchored.is_empty());
        assert_eq!(l.anchors[0].groups.len(), 2);
    }

    #[test]
    fn a_crowded_value_is_the_reason_given_when_nothing_else_anchors() {
        // 200 terms on one binary: no group of 64 holds them, and nothing
        // else keys them.
        let rules: Vec<String> = (0..200)
            .map(|i| format!("process.binary == \"/one\" and process.name endswith \"e{i}\" audit"))
            .collect();
        let e = plan("exec", &table(&rules), 2).unwrap_err();
        assert!(
            matches!(&e, LayoutError::ValueTooManyTerms { value, terms: 200, .. } if value == "/one"),
            "{e}"
        );
    }

    #[test]
    fn the_anchor_cap_is_named_when_it_leaves_terms_out() {
        // Five fields of 70 exact rules each in 5 words: four anchors leave
        // 70 terms for 64 bits; a fifth anchor is not allowed.
        let fields = [
            "process.binary",
            "process.name",
            "parent.binary",
            "process.args",
        ];
        let mut rules: Vec<String> = Vec::new();
        for f in fields {
            rules.extend((0..70).map(|i| format!("{f} == \"/v{i}\" audit")));
        }
        rules.extend((0..70).map(|i| format!("user.uid == {} audit", 5000 + i)));
        let e = plan("exec", &table(&rules), 5).unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains("1 more candidate anchors were left out: at most 4 anchors per hook"),
            "{text}"
        );
    }

    #[test]
    fn terms_no_anchor_takes_are_named_in_the_error() {
        // Suffix tests key on no value: 70 of them do not fit one word.
        let mut rules: Vec<String> = (0..70)
            .map(|i| format!("process.binary endswith \"/e{i}\" audit"))
            .collect();
        rules.extend((0..70).map(|i| format!("process.binary == \"/b{i}\" audit")));
        let t = table(&rules);
        let e = plan("exec", &t, 2).unwrap_err();
        assert_eq!(
            e,
            LayoutError::TooManyUnanchored {
                hook: "exec".into(),
                anchors: "`process.binary`".into(),
                unanchored: 70,
                max: 64,
                note: String::new(),
            }
        );
        assert!(
            e.to_string()
                .contains("70 terms do not test `process.binary`"),
            "{e}"
        );
    }

    #[test]
    fn a_restricted_table_matches_what_the_whole_table_matches_of_its_terms() {
        // Entries are changes from their bases: nested prefixes with an
        // exception, exact paths under them, a suffix, nested and
        // overlapping uid ranges, a negated range. Restriction keeps only
        // the changes of the subset's terms and drops entries without any.
        let rules: Vec<String> = [
            "process.binary startswith \"/x/\" and user.uid in 1000..1999",
            "process.binary startswith \"/x/a/\" and not process.binary startswith \"/x/a/b/\"",
            "process.binary == \"/x/a/b/tool\"",
            "process.binary endswith \"/sh\" and user.uid in 0..499",
            "user.uid == 1500",
            "user.uid in 1200..1300 and process.binary == \"/bin/ls\"",
            "not user.uid in 1000..1999",
            "user.uid == 0",
            "process.binary in { \"/x/a/c\", \"/bin/ls\" }",
            "process.binary startswith \"/x/a/b/\" and not user.uid == 1500",
        ]
        .iter()
        .map(|c| format!("{c} audit"))
        .collect();
        let t = table(&rules);
        let n = t.terms.len() as u32;
        let subsets: Vec<TermSet> = vec![
            (0..n).step_by(2).collect(),
            (1..n).step_by(3).collect(),
            (0..n / 2).collect(),
            (n / 2..n).collect(),
            vec![4],
            vec![0, 6],
        ];
        let key = |f| policy_dsl::checked::FieldKey::plain(f);
        let mut events = Vec::new();
        for binary in [
            "/x/a/b/tool",
            "/x/a/c",
            "/x/a/b/z",
            "/x/q",
            "/bin/ls",
            "/bin/sh",
            "/o",
        ] {
            for uid in [0, 1, 499, 500, 1000, 1250, 1500, 1999, 2000, 65534] {
                events.push(policy_dsl::checked::Event {
                    hook: Hook::Exec,
                    fields: BTreeMap::from([
                        (
                            key(policy_dsl::schema::Field::ProcessBinary),
                            policy_dsl::checked::Value::Str(binary.into()),
                        ),
                        (
                            key(policy_dsl::schema::Field::UserUid),
                            policy_dsl::checked::Value::Int(uid),
                        ),
                    ]),
                });
            }
        }
        let mut matched = 0;
        for sub in &subsets {
            let r = restrict(&t, sub, None);
            for e in &events {
                let full = crate::eval::matched_terms(&t, e);
                let want: Vec<u32> = (0..sub.len() as u32)
                    .filter(|&i| full.contains(&sub[i as usize]))
                    .collect();
                let got: Vec<u32> = crate::eval::matched_terms(&r, e).into_iter().collect();
                assert_eq!(got, want, "subset {sub:?}, event {e:?}");
                matched += want.len();
            }
        }
        assert!(matched > 100, "the events match something: {matched}");
        // A subset of terms that share no uid interval keeps no range entry
        // equal to its default.
        let r = restrict(&t, &[4], None);
        let uid = &r.dimensions["user.uid"];
        assert_eq!(uid.ranges.len(), 1, "{:?}", uid.ranges);
        assert_eq!((uid.ranges[0].lo, uid.ranges[0].hi), (1500, 1500));
    }
}
