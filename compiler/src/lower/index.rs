//! One hook's terms grouped by dimension, and indexes of which terms can
//! answer where, so that building a table costs about its size.
//!
//! Asking every term at every class of values costs classes × terms, which
//! is quadratic in the number of rules since classes grow with the values
//! the rules mention (`compiler/benches/back_end/`: 76 ms for 1,000 rules,
//! 100× per 10× rules). A table entry is the change from its base
//! (schema 3), so an entry asks only the terms whose answer can differ
//! there: those with a literal naming its key ([`Mentions`]), or for a
//! number interval a bound since the previous one ([`IntBounds`]). The
//! defaults of a string dimension ask only the terms that *can* hold with
//! no key ([`StringAnchors`]). The answers are computed by the same truth
//! functions; only terms that certainly answer alike (or fail) are
//! skipped, which debug builds check.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use policy_dsl::checked::{Member, Pred, Value};

use super::{Conjunction, Literal, Owner};
use crate::bundle::TermSet;

/// The terms of one hook as one dimension sees them. Terms with no literal
/// on the dimension are not here at all: they are in every class's set, so
/// the bundle leaves them out of the dimension's sets (schema 2, see
/// [`crate::bundle::Dimension`]); listing them in every entry would make the
/// tables grow as rules × entries.
pub(super) struct DimTerms<'t> {
    /// The terms with literals on the dimension, ascending by id, with those
    /// literals.
    constrained: Vec<(u32, Vec<&'t Literal>)>,
}

/// Every dimension of a hook's terms, by name, in one pass over the
/// literals (computing each literal's dimension name once).
pub(super) fn by_dimension(terms: &[(Owner, Conjunction)]) -> BTreeMap<String, DimTerms<'_>> {
    let mut dims: BTreeMap<String, DimTerms<'_>> = BTreeMap::new();
    for (id, (_, conj)) in terms.iter().enumerate() {
        let id = id as u32;
        for lit in conj {
            let d = dims.entry(lit.dimension()).or_insert_with(|| DimTerms {
                constrained: Vec::new(),
            });
            match d.constrained.last_mut() {
                Some((last, lits)) if *last == id => lits.push(lit),
                _ => d.constrained.push((id, vec![lit])),
            }
        }
    }
    dims
}

impl<'t> DimTerms<'t> {
    /// The dimension's first literal (of its first term): they all share
    /// field and predicate kind.
    pub(super) fn literal(&self) -> &'t Literal {
        self.constrained[0].1[0]
    }

    /// Ids of the terms with literals on the dimension, ascending: the
    /// dimension's `tested` set.
    pub(super) fn tested(&self) -> TermSet {
        self.constrained.iter().map(|(id, _)| *id).collect()
    }

    /// How many terms test the dimension.
    pub(super) fn len(&self) -> usize {
        self.constrained.len()
    }

    /// The predicates of the dimension's literals.
    pub(super) fn preds(&self) -> impl Iterator<Item = &'t Pred> + '_ {
        self.constrained
            .iter()
            .flat_map(|(_, lits)| lits.iter().map(|l| &l.pred))
    }

    /// The terms whose literals on the dimension all hold for a class of
    /// values, given each literal's truth for the class (`None`: decided
    /// elsewhere, does not constrain this set). Only terms with literals on
    /// the dimension (the tested ones) are listed.
    pub(super) fn class(&self, truth: impl Fn(&Pred) -> Option<bool>) -> TermSet {
        self.select(0..self.constrained.len(), truth)
    }

    /// [`DimTerms::class`] asking only the constrained terms at `candidates`
    /// (indices into the constrained terms, ascending, no repeats): every
    /// other constrained term must fail `truth`.
    pub(super) fn class_among(
        &self,
        candidates: &[usize],
        truth: impl Fn(&Pred) -> Option<bool>,
    ) -> TermSet {
        let set = self.select(candidates.iter().copied(), &truth);
        // Debug builds (every test) check the index against asking everyone.
        debug_assert_eq!(set, self.class(&truth), "index missed a term");
        set
    }

    /// How the set at a class differs from the set at its *base* class
    /// (see [`crate::bundle::Entry`]): `(add, remove)`, the terms that hold
    /// at `at` but not at `base` and the reverse. Only `candidates` (indices
    /// into the constrained terms, in any order) are asked: the terms with a
    /// literal naming the entry's key, the only ones whose answer can change
    /// between an entry and its base (the callers' [`Mentions`]). Debug
    /// builds check that every other term answers alike at both.
    pub(super) fn delta(
        &self,
        candidates: &[usize],
        at: impl Fn(&Pred) -> Option<bool>,
        base: impl Fn(&Pred) -> Option<bool>,
    ) -> (TermSet, TermSet) {
        let holds = |lits: &[&Literal], truth: &dyn Fn(&Pred) -> Option<bool>| {
            lits.iter()
                .all(|l| truth(&l.pred).is_none_or(|t| t == l.positive))
        };
        let mut candidates = candidates.to_vec();
        candidates.sort_unstable();
        candidates.dedup();
        let (mut add, mut remove) = (Vec::new(), Vec::new());
        for &i in &candidates {
            let (id, lits) = &self.constrained[i];
            match (holds(lits, &at), holds(lits, &base)) {
                (true, false) => add.push(*id),
                (false, true) => remove.push(*id),
                _ => {}
            }
        }
        debug_assert!(
            self.constrained.iter().enumerate().all(|(i, (_, lits))| {
                candidates.binary_search(&i).is_ok() || holds(lits, &at) == holds(lits, &base)
            }),
            "a term whose answer changes names no key of the entry"
        );
        (add, remove)
    }

    fn select(
        &self,
        candidates: impl Iterator<Item = usize>,
        truth: impl Fn(&Pred) -> Option<bool>,
    ) -> TermSet {
        let holds = |lits: &[&Literal]| {
            lits.iter()
                .all(|l| truth(&l.pred).is_none_or(|t| t == l.positive))
        };
        // Candidates are ascending indices into the ascending constrained
        // terms, so the ids come out sorted.
        candidates
            .filter_map(|i| {
                let (id, lits) = &self.constrained[i];
                holds(lits).then_some(*id)
            })
            .collect()
    }
}

/// Which constrained terms of a path or string dimension can hold where.
///
/// For the defaults (the entries are changes from them, asked through
/// [`Mentions`]). Each term is filed under one *anchor*, the first of its
/// positive literals in this order: `==`/`in` (holds at its exact values
/// only, so at no default), `startswith` (under its prefix), `endswith`;
/// a term with none of these is *loose* and asked everywhere. For the
/// suffix side of the table, terms are filed separately under their first
/// positive `endswith`.
pub(super) struct StringAnchors<'t> {
    by_prefix: HashMap<&'t [u8], Vec<usize>>,
    prefix_lens: BTreeSet<usize>,
    /// Anchored by a suffix: may hold on the prefix side of any class.
    suffix_anchored: Vec<usize>,
    loose: Vec<usize>,
    /// Suffix side: terms filed under their first positive `endswith`.
    by_end: HashMap<&'t [u8], Vec<usize>>,
    end_lens: BTreeSet<usize>,
    /// Suffix side: terms with no positive `endswith`.
    no_end: Vec<usize>,
}

impl<'t> StringAnchors<'t> {
    /// The anchors of `d`'s terms.
    pub(super) fn new(d: &DimTerms<'t>) -> Self {
        let mut a = StringAnchors {
            by_prefix: HashMap::new(),
            prefix_lens: BTreeSet::new(),
            suffix_anchored: Vec::new(),
            loose: Vec::new(),
            by_end: HashMap::new(),
            end_lens: BTreeSet::new(),
            no_end: Vec::new(),
        };
        for (i, (_, lits)) in d.constrained.iter().enumerate() {
            let positive = || lits.iter().filter(|l| l.positive).map(|l| &l.pred);
            // Only sets made entirely of strings anchor: any other member
            // kind is asked everywhere, as before.
            let values = positive().any(|p| match p {
                Pred::Eq(Value::Str(_)) => true,
                Pred::In(set) => set
                    .iter()
                    .all(|m| matches!(m, Member::Value(Value::Str(_)))),
                _ => false,
            });
            let starts = || {
                positive().find_map(|p| match p {
                    Pred::StartsWith(s) => Some(s.as_bytes()),
                    _ => None,
                })
            };
            let ends = positive().find_map(|p| match p {
                Pred::EndsWith(s) => Some(s.as_bytes()),
                _ => None,
            });
            if values {
                // Holds only where its value is (an exact entry).
            } else if let Some(p) = starts() {
                a.prefix_lens.insert(p.len());
                a.by_prefix.entry(p).or_default().push(i);
            } else if ends.is_some() {
                a.suffix_anchored.push(i);
            } else {
                a.loose.push(i);
            }
            match ends {
                Some(s) => {
                    a.end_lens.insert(s.len());
                    a.by_end.entry(s).or_default().push(i);
                }
                None => a.no_end.push(i),
            }
        }
        a
    }

    /// Candidates for the prefix side of the values whose longest mentioned
    /// prefix is `prefix` (`None`: no mentioned prefix), where `==`/`in` are
    /// false and `endswith` does not decide.
    pub(super) fn below_prefix(&self, prefix: Option<&str>) -> Vec<usize> {
        let mut out = self.loose.clone();
        out.extend(&self.suffix_anchored);
        if let Some(p) = prefix.map(str::as_bytes) {
            push_under(&mut out, &self.by_prefix, &self.prefix_lens, p, true);
        }
        out.sort_unstable();
        out.dedup();
        out
    }

    /// Candidates for the suffix side of the values whose longest mentioned
    /// suffix is `suffix` (`None`: none), where only `endswith` decides.
    pub(super) fn above_suffix(&self, suffix: Option<&str>) -> Vec<usize> {
        let mut out = self.no_end.clone();
        if let Some(s) = suffix.map(str::as_bytes) {
            push_under(&mut out, &self.by_end, &self.end_lens, s, false);
        }
        out.sort_unstable();
        out.dedup();
        out
    }

    /// Candidates when the event has no value: only terms without positive
    /// literals can hold.
    pub(super) fn absent(&self) -> &[usize] {
        &self.loose
    }
}

/// Add the terms filed under each prefix (`prefix`) or suffix of `v` whose
/// length is in `lens`.
fn push_under(
    out: &mut Vec<usize>,
    map: &HashMap<&[u8], Vec<usize>>,
    lens: &BTreeSet<usize>,
    v: &[u8],
    prefix: bool,
) {
    for &n in lens.iter().take_while(|n| **n <= v.len()) {
        let key = if prefix { &v[..n] } else { &v[v.len() - n..] };
        if let Some(terms) = map.get(key) {
            out.extend(terms);
        }
    }
}

/// The bounds of an integer dimension's literals, whatever their sign:
/// for each number or range a literal names, its first value and the value
/// after its last (`unset` is `unset`'s number). A term's answer can only
/// change between two values if one of its bounds lies after the first and
/// not after the second.
pub(super) struct IntBounds {
    /// `(bound, constrained index)`, sorted.
    bounds: Vec<(u64, usize)>,
}

impl IntBounds {
    /// The bounds of `d`'s terms; `unset` is the number the login uid
    /// `unset` stands for.
    pub(super) fn new(d: &DimTerms<'_>, unset: u64) -> IntBounds {
        let mut bounds = Vec::new();
        for (i, (_, lits)) in d.constrained.iter().enumerate() {
            let value = |v: &Value| match v {
                Value::Int(n) => Some((*n, *n)),
                Value::Unset => Some((unset, unset)),
                _ => None,
            };
            let intervals = lits.iter().flat_map(|l| match &l.pred {
                Pred::Eq(v) => value(v).into_iter().collect::<Vec<_>>(),
                Pred::In(set) => set
                    .iter()
                    .filter_map(|m| match m {
                        Member::Value(v) => value(v),
                        Member::Range(lo, hi) => Some((*lo, *hi)),
                        Member::Cidr(_) => None,
                    })
                    .collect(),
                _ => Vec::new(),
            });
            for (lo, hi) in intervals {
                bounds.push((lo, i));
                if let Some(after) = hi.checked_add(1) {
                    bounds.push((after, i));
                }
            }
        }
        bounds.sort_unstable();
        IntBounds { bounds }
    }

    /// Constrained terms with a bound in `after + 1 ..= upto`, ascending,
    /// no repeats.
    pub(super) fn between(&self, after: u64, upto: u64) -> Vec<usize> {
        let start = self.bounds.partition_point(|&(b, _)| b <= after);
        let end = self.bounds.partition_point(|&(b, _)| b <= upto);
        let mut out: Vec<usize> = self.bounds[start..end].iter().map(|&(_, i)| i).collect();
        out.sort_unstable();
        out.dedup();
        out
    }
}

/// The constrained terms of a dimension by the keys their literals name,
/// whatever the literal's sign: exact strings (`==`, `in`), prefixes
/// (`startswith`), suffixes (`endswith`), and CIDR blocks (an address as its
/// host block). Between an entry and its base only the terms naming the
/// entry's key can change answer (a longer prefix lets through the same
/// shorter ones, a smaller block lies in the same larger ones), so an entry
/// asks only those: the work and the entry's size follow the rules that
/// name it.
#[derive(Default)]
pub(super) struct Mentions<'t> {
    values: HashMap<&'t [u8], Vec<usize>>,
    prefixes: HashMap<&'t [u8], Vec<usize>>,
    suffixes: HashMap<&'t [u8], Vec<usize>>,
    blocks: HashMap<ipnet::IpNet, Vec<usize>>,
}

impl<'t> Mentions<'t> {
    /// Files every literal of `d`'s terms under the key it names.
    pub(super) fn new(d: &DimTerms<'t>) -> Mentions<'t> {
        let mut m = Mentions::default();
        for (i, (_, lits)) in d.constrained.iter().enumerate() {
            for l in lits {
                match &l.pred {
                    Pred::Eq(v) => m.value_of(v, i),
                    Pred::In(set) => {
                        for member in set {
                            match member {
                                Member::Value(v) => m.value_of(v, i),
                                Member::Cidr(n) => {
                                    m.blocks.entry(n.trunc()).or_default().push(i);
                                }
                                Member::Range(..) => {}
                            }
                        }
                    }
                    Pred::StartsWith(p) => m.prefixes.entry(p.as_bytes()).or_default().push(i),
                    Pred::EndsWith(p) => m.suffixes.entry(p.as_bytes()).or_default().push(i),
                    _ => {}
                }
            }
        }
        m
    }

    /// Files term `i` under the string or host block of `v`.
    fn value_of(&mut self, v: &'t Value, i: usize) {
        match v {
            Value::Str(s) => self.values.entry(s.as_bytes()).or_default().push(i),
            Value::Ip(a) => self
                .blocks
                .entry(ipnet::IpNet::from(*a))
                .or_default()
                .push(i),
            _ => {}
        }
    }

    /// Terms naming exact string `v`.
    pub(super) fn value(&self, v: &str) -> &[usize] {
        self.values.get(v.as_bytes()).map_or(&[], Vec::as_slice)
    }

    /// Terms naming prefix `p`.
    pub(super) fn prefix(&self, p: &str) -> &[usize] {
        self.prefixes.get(p.as_bytes()).map_or(&[], Vec::as_slice)
    }

    /// Terms naming suffix `s`.
    pub(super) fn suffix(&self, s: &str) -> &[usize] {
        self.suffixes.get(s.as_bytes()).map_or(&[], Vec::as_slice)
    }

    /// Terms naming block `b` (truncated).
    pub(super) fn block(&self, b: &ipnet::IpNet) -> &[usize] {
        self.blocks.get(b).map_or(&[], Vec::as_slice)
    }
}
