//! The `PolicyBundle` document: what `policyc compile` writes and `policyd` loads.
//!
//! A bundle is a Kubernetes resource (`apiVersion: policyc.dev/v1alpha1`,
//! `kind: PolicyBundle`) whose `spec` holds the rule table and, per hook, the
//! classification tables the kernel runs (see `docs/bundle.md`). Term sets are
//! stored as sorted lists of term ids rather than bit words so that the file is
//! readable and diffable; the runtime expands them to [`MASK_WORDS`] `u64`
//! words when it fills the maps.
//!
//! Serialisation is deterministic: every collection is a `Vec` in a defined
//! order or a `BTreeMap`, so the same input gives byte-identical YAML. The
//! `digest` is the SHA-256 of the canonical JSON of the bundle's name and its
//! spec without the digest field, so any edit to a bundle after compilation
//! is detected on load.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::limits::{MASK_WORDS, MAX_PATH_LITERAL_LEN, MAX_TERMS_PER_HOOK};

/// `apiVersion` of every bundle this compiler writes and this runtime accepts.
pub const API_VERSION: &str = "policyc.dev/v1alpha1";
/// `kind` of the bundle resource.
pub const KIND: &str = "PolicyBundle";
/// Version of the `spec` layout. A runtime refuses any other value.
///
/// 2: every [`Dimension`] lists its `tested` terms and its entry sets hold
/// only those (1 listed every term that does not test the field in every
/// entry, which made bundles grow as rules × entries).
///
/// 3: an `exact`, `prefix` or `suffix` [`Entry`] holds how its value's set
/// differs from the set the value would get without the entry, and a
/// [`RangeEntry`] how its set differs from the previous interval's (`add`,
/// `remove`) instead of the whole set (2 repeated a short prefix's terms in
/// every longer prefix and exact value under it, and a wide range's in
/// every interval inside it, which made bundles grow as entries × terms).
pub const SCHEMA_VERSION: u32 = 3;

/// A whole bundle document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PolicyBundle {
    /// Always [`API_VERSION`].
    pub api_version: String,
    /// Always [`KIND`].
    pub kind: String,
    /// Kubernetes object metadata.
    pub metadata: Metadata,
    /// The compiled policy.
    pub spec: BundleSpec,
}

/// Kubernetes object metadata; the compiler sets the name and, with
/// `policyc compile --labels`, labels. Other fields (as the API server adds
/// them) are ignored on load.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Metadata {
    /// Object name, a DNS-1123 subdomain (lowercase alphanumerics, `-` and `.`).
    pub name: String,
    /// Kubernetes labels (`policyc compile --labels k=v,…`); absent when none.
    /// Not covered by the digest: labels may be edited on a cluster.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

/// The compiled content of a bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BundleSpec {
    /// Layout version, [`SCHEMA_VERSION`].
    pub schema_version: u32,
    /// Name and version of the compiler that wrote the bundle, e.g. `policyc 0.1.0`.
    pub compiler: String,
    /// `sha256:` followed by 64 lowercase hex digits: the SHA-256 of the canonical
    /// JSON of every other spec field (see [`BundleSpec::compute_digest`]).
    pub digest: String,
    /// The policies (source files) compiled into this bundle, in input order.
    pub policies: Vec<PolicyInfo>,
    /// Every rule, indexed by [`RuleEntry::id`] (ids are `0..rules.len()`).
    pub rules: Vec<RuleEntry>,
    /// Every `default deny` scope, indexed by [`ScopeEntry::id`]; absent when
    /// there is none (so bundles without scopes keep their layout).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scopes: Vec<ScopeEntry>,
    /// Classification tables per hook; hooks without rules are absent.
    #[schemars(with = "BTreeMap<crate::schema::HookName, HookTable>")]
    pub hooks: BTreeMap<Hook, HookTable>,
    /// Node labels a node must carry for its `policyd --kubernetes` to load
    /// the bundle (`policyc compile --node-selector k=v,…`); absent (every
    /// node) when not given. Covered by the digest.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
}

/// One compiled policy (the `policy NAME { … }` header of a source file).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PolicyInfo {
    /// Policy name from the header.
    pub name: String,
    /// `description` from the header, empty when absent.
    pub description: String,
    /// `mode`; written only for `monitor` (absent means `enforce`).
    #[serde(default, skip_serializing_if = "is_enforce")]
    #[schemars(with = "crate::schema::ModeName")]
    pub mode: Mode,
    /// Source file the policy came from, as given to the compiler.
    pub source: String,
}

fn is_enforce(m: &Mode) -> bool {
    *m == Mode::Enforce
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// One `default deny HOOK when COND` scope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ScopeEntry {
    /// Index of this scope in [`BundleSpec::scopes`].
    pub id: u32,
    /// `default_deny_HOOK_N`, N counting the policy's scopes from 1.
    pub name: String,
    /// Name of the policy the scope belongs to.
    pub policy: String,
    /// Hook the scope applies to.
    #[schemars(with = "crate::schema::HookName")]
    pub hook: Hook,
    /// Where the scope is written.
    pub source: SourceLocation,
}

/// `rate N per PERIOD` of a rule: at most `count` audit events per period.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RateLimit {
    /// Audit events allowed per period.
    pub count: u64,
    /// The period, in milliseconds.
    pub period_ms: u64,
}

pub use policy_dsl::schema::{Hook, Mode, Severity};

/// What a rule does to the event it matches.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Explicitly allowed (an allow never overrides a deny).
    Allow,
    /// Refused; on hooks that cannot return an error this is a kill.
    Deny,
    /// The acting process is killed with `SIGKILL`.
    Kill,
}

impl From<policy_dsl::ast::Action> for Verdict {
    /// The bundle's verdict for a rule's `allow`/`deny`/`kill` keyword.
    fn from(a: policy_dsl::ast::Action) -> Verdict {
        match a {
            policy_dsl::ast::Action::Allow => Verdict::Allow,
            policy_dsl::ast::Action::Deny => Verdict::Deny,
            policy_dsl::ast::Action::Kill => Verdict::Kill,
        }
    }
}

impl Verdict {
    /// The verdict's name as written in events and bundles.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Allow => "allow",
            Verdict::Deny => "deny",
            Verdict::Kill => "kill",
        }
    }
}

/// One rule of the rule table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RuleEntry {
    /// Index of this rule in [`BundleSpec::rules`].
    pub id: u32,
    /// Rule name from the source.
    pub name: String,
    /// Name of the policy the rule belongs to.
    pub policy: String,
    /// Hook the rule is evaluated on.
    #[schemars(with = "crate::schema::HookName")]
    pub hook: Hook,
    /// The rule's verdict, absent for a rule that only audits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verdict: Option<Verdict>,
    /// Whether a match is recorded as an audit event.
    pub audit: bool,
    /// Audit severity; `info` when the source gives none.
    #[schemars(with = "crate::schema::SeverityName")]
    pub severity: Severity,
    /// Audit message from the source, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Audit rate limit (`rate N per PERIOD`), applied by the node to the
    /// rule's audit events; absent when the rule has none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<RateLimit>,
    /// Where the rule is written.
    pub source: SourceLocation,
}

/// A place in a source file, 1-based.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SourceLocation {
    /// Source file as given to the compiler.
    pub file: String,
    /// 1-based line.
    pub line: u32,
    /// 1-based column, in characters.
    pub column: u32,
}

/// A sorted, duplicate-free list of term ids (bit positions in a term mask).
pub type TermSet = Vec<u32>;

/// The classification tables of one hook.
///
/// For an event, each dimension yields a term set (see [`Dimension`]); the
/// intersection over all dimensions is the set of terms that match. A rule
/// matches when any of its terms does.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HookTable {
    /// Terms, indexed by id (`0..terms.len()`, at most [`MAX_TERMS_PER_HOOK`]).
    pub terms: Vec<Term>,
    /// One table per field the hook's rules test, keyed by field name.
    pub dimensions: BTreeMap<String, Dimension>,
    /// Terms whose match yields each outcome.
    pub verdicts: VerdictMasks,
}

/// One term: a conjunction of field tests taken from a rule's condition in
/// disjunctive normal form.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Term {
    /// Bit position of the term in the hook's masks.
    pub id: u32,
    /// [`RuleEntry::id`] of the rule the term belongs to, or, when `scope`
    /// is set, [`ScopeEntry::id`] of the `default deny` scope.
    pub rule: u32,
    /// The term is a conjunction of a `default deny` scope's condition, not of
    /// a rule's (written only when true).
    #[serde(default, skip_serializing_if = "is_false")]
    pub scope: bool,
}

/// Per-outcome term sets of a hook.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VerdictMasks {
    /// Terms of `deny` rules.
    pub deny: TermSet,
    /// Terms of `kill` rules.
    pub kill: TermSet,
    /// Terms of `allow` rules.
    pub allow: TermSet,
    /// Terms of rules that `audit`.
    pub audit: TermSet,
    /// Terms of `default deny` scopes: when no enforced deny, kill or allow
    /// term matches, a matching scope term denies.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub default_deny: TermSet,
    /// Terms of rules and scopes of `mode = monitor` policies: they take part
    /// in the would-be verdict and accounting, never in the enforced verdict.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub monitor: TermSet,
    /// Per counter name (`count "name"`), the terms that increment it.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub count: BTreeMap<String, TermSet>,
}

/// The kind of value a dimension classifies, which fixes its kernel tables.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum DimensionKind {
    /// An absolute path: exact entries in a hash map keyed by the zero-padded
    /// path, prefix entries in an LPM trie over the path bytes, suffix entries
    /// in an LPM trie over the reversed path bytes.
    #[default]
    Path,
    /// A string (`process.name`, `k8s.*`, `module.name`…): exact, prefix and
    /// suffix tables as for paths, keyed by the field's kernel buffer size.
    String,
    /// A uid, gid, login uid or port: `ranges` (sorted disjoint intervals; in
    /// the kernel, an LPM trie over big-endian keys, see
    /// [`crate::lower::range_prefixes`]), `exact` entries keyed by user or
    /// group *name*, resolved on the node (see [`Dimension::resolve`]). The
    /// login uid `unset` is the key 4294967295.
    Int,
    /// An IPv4 or IPv6 address: `prefix` entries are CIDR blocks
    /// (`10.0.0.0/8`, an address is a `/32` or `/128`), longest block wins;
    /// in the kernel one LPM trie per family.
    Ip,
    /// One of a fixed list of names: `exact` entries (a hash map or array).
    Enum,
    /// `true` / `false`: `exact` entries keyed `"true"` and `"false"`.
    Bool,
    /// A capability set, tested with `has`: one `masks` entry per distinct
    /// required set; the value's term set is the AND over the masks of
    /// `held` (value ⊇ mask) or `lacking`.
    Caps,
    /// A boolean feature of the event, a relation between two of its fields
    /// (`user.uid == user.euid`), computed by the hook program: `exact`
    /// entries `"false"` and `"true"`; `default` when a field is missing.
    Relation,
}

/// What the node resolves the names of an `int` dimension's `exact` entries
/// against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Resolve {
    /// User names (the node's passwd database).
    User,
    /// Group names (the node's group database).
    Group,
}

/// The two fields and the operator of a [`DimensionKind::Relation`] feature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Relation {
    /// Left field, e.g. `user.uid`.
    pub left: String,
    /// `==`, `<` or `<=`.
    pub op: String,
    /// Right field, e.g. `user.euid`.
    pub right: String,
}

/// An interval of integer values and how the set of terms its values
/// satisfy differs from the previous interval's (the dimension's `default`
/// for the first): `(set(previous) − remove) ∪ add`
/// ([`Dimension::resolve_ranges`]). A rule over a wide range is written
/// where its range starts and ends, not in every narrower interval inside
/// it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RangeEntry {
    /// Lowest value, inclusive.
    pub lo: u64,
    /// Highest value, inclusive.
    pub hi: u64,
    /// Terms every value in `lo..=hi` satisfies that the previous
    /// interval's set lacks.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub add: TermSet,
    /// Terms of the previous interval's set that these values do not
    /// satisfy.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remove: TermSet,
}

impl RangeEntry {
    /// The interval's set given the previous one's.
    pub fn apply(&self, previous: &[u32]) -> TermSet {
        apply_change(previous, &self.add, &self.remove)
    }
}

/// Resolved sets of some of a dimension's `ranges` (every
/// [`RangeSnapshots::EVERY`]-th), so that one interval's set costs at most
/// that many changes from the nearest snapshot instead of a walk from the
/// first interval: for evaluators that look up many values.
#[derive(Debug, Clone, Default)]
pub struct RangeSnapshots {
    snapshots: Vec<TermSet>,
}

impl RangeSnapshots {
    /// Intervals between two snapshots.
    pub const EVERY: usize = 32;

    /// The snapshots of `dim`'s ranges (one pass over them).
    pub fn new(dim: &Dimension) -> RangeSnapshots {
        let mut snapshots = Vec::with_capacity(dim.ranges.len() / Self::EVERY + 1);
        let mut set = dim.default.clone();
        for (i, r) in dim.ranges.iter().enumerate() {
            set = r.apply(&set);
            if i % Self::EVERY == 0 {
                snapshots.push(set.clone());
            }
        }
        RangeSnapshots { snapshots }
    }

    /// The resolved set of interval `i` of `dim` (the dimension the
    /// snapshots were made of).
    pub fn set(&self, dim: &Dimension, i: usize) -> TermSet {
        let from = i / Self::EVERY * Self::EVERY;
        let mut set = self.snapshots[i / Self::EVERY].clone();
        for r in &dim.ranges[from + 1..=i] {
            set = r.apply(&set);
        }
        set
    }
}

/// A required capability set and the terms a value holding it, or not,
/// satisfies (as far as `has` tests of this set go).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MaskEntry {
    /// The capabilities (`CAP_*`, sorted); in the kernel a 64-bit mask.
    pub caps: Vec<String>,
    /// Terms whose tests of this set hold when the value holds every capability.
    pub held: TermSet,
    /// Terms whose tests of this set hold when it does not.
    pub lacking: TermSet,
}

/// The table of one dimension (field) of a hook.
///
/// Lookup for a value `v`: if `v` equals an `exact` entry, that entry's set;
/// else if some `prefix` entries are prefixes of `v`, the set of the longest;
/// else `default`. An entry's set is its *base* (the set `v` would get if
/// the entry were not there: for a prefix entry its nearest shorter prefix
/// entry's set, or `default`) with the entry's `remove` terms taken out and
/// its `add` terms put in (see [`Entry`], [`Dimension::bases`]): a term is
/// written where the answer changes, not in every entry under a prefix. The
/// kernel's tables hold each entry's resolved set (policyd resolves them,
/// parents first), so one lookup answers there.
///
/// **Stored sets hold tested terms only.** `tested` lists the hook's terms
/// that have a literal on this dimension; every stored set (`exact[].terms`,
/// `prefix[].terms`, `suffix[].terms`, `default`, `suffix_default`,
/// `absent`, `ranges[].terms`, `masks[].held`/`lacking`) is a subset of it.
/// A term that does not test the dimension is satisfied by any value, so
/// the set a lookup *means* is `stored ∪ (all terms of the hook − tested)`
/// ([`Dimension::full_set`]). Storing only the tested part keeps a bundle
/// linear in its rules: listing untested terms in every entry made it grow
/// as rules × entries. An evaluator need not build full sets: the terms
/// that match are every term minus, per dimension, the tested terms its
/// lookup lacks (`all − ∪_d (tested_d − lookup_d)`).
///
/// Kinds other than `path` use more tables (see [`DimensionKind`] and
/// `docs/bundle.md`); each is written only when it is not empty, so a `path`
/// dimension without suffixes has the layout the runtime loads.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Dimension {
    /// Value kind.
    pub kind: DimensionKind,
    /// The hook's terms that test this dimension (sorted ids): every stored
    /// set of the dimension is a subset; the others are in every lookup's
    /// result (see [`Dimension::full_set`]). Always written.
    pub tested: TermSet,
    /// Exact-value entries, sorted by value.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exact: Vec<Entry>,
    /// Prefix entries (CIDR blocks for `ip`), sorted by value.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub prefix: Vec<Entry>,
    /// Terms satisfied by a value matching no entry. For `path` and `string`
    /// with suffix tests: the prefix side only (see `suffix_default`).
    pub default: TermSet,
    /// Suffix entries (`path`, `string`), sorted by value: on an exact miss the
    /// longest matching suffix's set (or `suffix_default`) is intersected with
    /// the prefix side's.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub suffix: Vec<Entry>,
    /// Suffix side of a value with no matching suffix entry; present exactly
    /// when some term tests a suffix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suffix_default: Option<TermSet>,
    /// `int`: sorted, disjoint intervals.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ranges: Vec<RangeEntry>,
    /// `caps`: one entry per distinct required set, sorted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub masks: Vec<MaskEntry>,
    /// Terms satisfied when the event does not supply the field, when that
    /// differs from a value matching no entry (e.g. `startswith ""`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub absent: Option<TermSet>,
    /// `int`: the `exact` entries are names the node resolves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolve: Option<Resolve>,
    /// `relation`: the feature's fields and operator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relation: Option<Relation>,
}

impl Dimension {
    /// The stored set (tested terms only) an event without the field gets:
    /// `absent` when written; else, for `path` and `string`, the default of
    /// both the prefix and the suffix side (`default ∩ suffixDefault`); else
    /// `default`: the kernel's `dim_config.absent` mask (runtime
    /// tables.rs), as `policyc inspect` models it and `layout::restrict`
    /// carries it over. (The programs supply capabilities on every hook
    /// that has them, so a `caps` dimension's absent set is never read
    /// there.)
    pub fn absent_set(&self) -> TermSet {
        if let Some(a) = &self.absent {
            return a.clone();
        }
        match (self.kind, &self.suffix_default) {
            (DimensionKind::Path | DimensionKind::String, Some(sd)) => {
                crate::lower::intersect(&self.default, sd)
            }
            _ => self.default.clone(),
        }
    }

    /// The set a stored set of this dimension means, for a hook of
    /// `n_terms` terms: `stored ∪ (0..n_terms − tested)`, sorted. `stored`
    /// is one of the dimension's sets (or a lookup of it, such as an
    /// intersection of them), so a subset of `tested` (a term outside it,
    /// which [`PolicyBundle::validate`] refuses, is dropped). Costs
    /// `n_terms`: for building dense kernel masks and for display, not per
    /// event.
    pub fn full_set(&self, stored: &[u32], n_terms: u32) -> TermSet {
        let mut out = Vec::with_capacity(
            n_terms as usize - self.tested.len().min(n_terms as usize) + stored.len(),
        );
        let (mut tested, mut stored) = (self.tested.iter().peekable(), stored.iter().peekable());
        for t in 0..n_terms {
            if tested.next_if(|&&x| x == t).is_none() {
                out.push(t); // untested: any value satisfies it
            } else if stored.next_if(|&&x| x == t).is_some() {
                out.push(t);
            }
        }
        out
    }

    /// Term ids stored in the dimension's entries (exact, prefix, suffix,
    /// ranges): what its share of a bundle's size follows.
    pub fn stored_ids(&self) -> usize {
        let entries = self.exact.iter().chain(&self.prefix).chain(&self.suffix);
        entries.map(|e| e.add.len() + e.remove.len()).sum::<usize>()
            + self
                .ranges
                .iter()
                .map(|r| r.add.len() + r.remove.len())
                .sum::<usize>()
    }

    /// Every interval's resolved set in `alg`'s representation, in order
    /// (each from the previous one's; `default` is the dimension's
    /// `default` in that representation).
    pub fn resolve_ranges<A: SetAlgebra>(&self, alg: &mut A, default: &A::Set) -> Vec<A::Set> {
        let mut out: Vec<A::Set> = Vec::with_capacity(self.ranges.len());
        for r in &self.ranges {
            let set = alg.apply(out.last().unwrap_or(default), &r.add, &r.remove);
            out.push(set);
        }
        out
    }

    /// The resolved set of interval `i` (a walk from the first interval;
    /// [`RangeSnapshots`] for many lookups).
    pub fn range_set(&self, i: usize) -> TermSet {
        self.ranges[..=i]
            .iter()
            .fold(self.default.clone(), |set, r| r.apply(&set))
    }

    /// Where each entry takes its base from (see [`Entry`]). Costs one hash
    /// per distinct entry length per entry.
    pub fn bases(&self) -> EntryBases {
        let mut out = EntryBases {
            exact: vec![(None, None); self.exact.len()],
            ..EntryBases::default()
        };
        match self.kind {
            DimensionKind::Path | DimensionKind::String => {
                let prefixes = AffixIndex::new(&self.prefix, true);
                let suffixes = AffixIndex::new(&self.suffix, false);
                let shorter = |ix: &AffixIndex<'_>, e: &Entry| {
                    let v = e.value.as_bytes();
                    ix.longest(v, v.len().checked_sub(1)?)
                };
                out.prefix = self.prefix.iter().map(|e| shorter(&prefixes, e)).collect();
                out.suffix = self.suffix.iter().map(|e| shorter(&suffixes, e)).collect();
                out.exact = self
                    .exact
                    .iter()
                    .map(|e| {
                        let v = e.value.as_bytes();
                        (prefixes.longest(v, v.len()), suffixes.longest(v, v.len()))
                    })
                    .collect();
                out.prefix_order = by_len(&self.prefix, |e| e.value.len());
                out.suffix_order = by_len(&self.suffix, |e| e.value.len());
            }
            DimensionKind::Ip => {
                let blocks = BlockIndex::new(&self.prefix);
                let net = |e: &Entry| e.value.parse::<ipnet::IpNet>().ok();
                out.prefix = self
                    .prefix
                    .iter()
                    .map(|e| {
                        let n = net(e)?;
                        blocks.longest(n.network(), n.prefix_len().checked_sub(1)?)
                    })
                    .collect();
                out.prefix_order = by_len(&self.prefix, |e| {
                    net(e).map_or(0, |n| usize::from(n.prefix_len()))
                });
            }
            _ => {}
        }
        out
    }

    /// Every entry's resolved set in `alg`'s representation, each computed
    /// once from its base's (parents first): `default` and `suffix_default`
    /// are the dimension's `default` and `suffixDefault` in that
    /// representation (`suffix_default` is read only when the dimension
    /// tests suffixes).
    pub fn resolve<A: SetAlgebra>(
        &self,
        bases: &EntryBases,
        alg: &mut A,
        default: &A::Set,
        suffix_default: Option<&A::Set>,
    ) -> ResolvedEntries<A::Set> {
        let side = |list: &[Entry],
                    parents: &[Option<usize>],
                    order: &[usize],
                    root: &A::Set,
                    alg: &mut A| {
            let mut sets: Vec<Option<A::Set>> = vec![None; list.len()];
            for &i in order {
                let base = match parents[i] {
                    Some(p) => sets[p].as_ref().expect("parents come first"),
                    None => root,
                };
                sets[i] = Some(alg.apply(base, &list[i].add, &list[i].remove));
            }
            sets.into_iter()
                .map(|s| s.expect("every entry is in the order"))
                .collect::<Vec<_>>()
        };
        let prefix = side(
            &self.prefix,
            &bases.prefix,
            &bases.prefix_order,
            default,
            alg,
        );
        let suffix_root = suffix_default.unwrap_or(default);
        let suffix = side(
            &self.suffix,
            &bases.suffix,
            &bases.suffix_order,
            suffix_root,
            alg,
        );
        let strings = matches!(self.kind, DimensionKind::Path | DimensionKind::String);
        let exact = self
            .exact
            .iter()
            .zip(&bases.exact)
            .map(|(e, &(p, s))| {
                if !strings {
                    return alg.apply(default, &e.add, &e.remove);
                }
                let p = p.map_or(default, |i| &prefix[i]);
                let s = match (self.suffix_default.is_some(), suffix_default) {
                    (true, Some(sd)) => Some(s.map_or(sd, |i| &suffix[i])),
                    _ => None,
                };
                alg.exact(p, s, e)
            })
            .collect();
        ResolvedEntries {
            exact,
            prefix,
            suffix,
        }
    }

    /// Every stored set of the dimension with where it is, for checks (the
    /// place is described only when a check fails: no text per entry).
    fn stored_sets(&self) -> Vec<(SetPlace<'_>, &TermSet)> {
        let mut out = vec![(SetPlace::Named("default"), &self.default)];
        if let Some(s) = &self.suffix_default {
            out.push((SetPlace::Named("suffixDefault"), s));
        }
        if let Some(s) = &self.absent {
            out.push((SetPlace::Named("absent"), s));
        }
        for (what, list) in [
            ("exact", &self.exact),
            ("prefix", &self.prefix),
            ("suffix", &self.suffix),
        ] {
            for e in list {
                out.push((SetPlace::Entry(what, &e.value, "add"), &e.add));
                out.push((SetPlace::Entry(what, &e.value, "remove"), &e.remove));
            }
        }
        for r in &self.ranges {
            out.push((SetPlace::Range(r.lo, r.hi, "add"), &r.add));
            out.push((SetPlace::Range(r.lo, r.hi, "remove"), &r.remove));
        }
        for m in &self.masks {
            out.push((SetPlace::Mask(&m.caps, true), &m.held));
            out.push((SetPlace::Mask(&m.caps, false), &m.lacking));
        }
        out
    }

    /// The first entry that breaks the dimension kind's rules, described.
    fn kind_problem(&self) -> Option<String> {
        let tables = |exact: bool, prefix: bool, suffix: bool, ranges: bool, masks: bool| {
            let bad = (!exact && !self.exact.is_empty())
                || (!prefix && !self.prefix.is_empty())
                || (!suffix && (!self.suffix.is_empty() || self.suffix_default.is_some()))
                || (!ranges && !self.ranges.is_empty())
                || (!masks && !self.masks.is_empty());
            bad.then(|| format!("a `{:?}` dimension has tables of another kind", self.kind))
        };
        match self.kind {
            DimensionKind::Path => tables(true, true, true, false, false).or_else(|| {
                self.exact
                    .iter()
                    .chain(&self.prefix)
                    .find(|e| {
                        // The empty prefix (a glob matching every path) is the trie's root.
                        let root =
                            e.value.is_empty() && self.prefix.iter().any(|p| std::ptr::eq(p, *e));
                        !root
                            && (!e.value.starts_with('/')
                                || e.value.len() > MAX_PATH_LITERAL_LEN
                                || e.value.contains('\0')
                                || e.value.contains("//")
                                || e.value.split('/').any(|c| c == "." || c == ".."))
                    })
                    .map(|e| {
                        format!(
                            "`{}` is not an absolute path of at most {MAX_PATH_LITERAL_LEN} bytes",
                            e.value
                        )
                    })
            }),
            DimensionKind::String => tables(true, true, true, false, false),
            DimensionKind::Int => tables(true, false, false, true, false).or_else(|| {
                if self.ranges.iter().any(|r| r.lo > r.hi)
                    || self.ranges.windows(2).any(|w| w[0].hi >= w[1].lo)
                {
                    Some("ranges are not sorted, disjoint intervals".into())
                } else if !self.exact.is_empty() && self.resolve.is_none() {
                    Some("names without `resolve`".into())
                } else {
                    None
                }
            }),
            DimensionKind::Ip => tables(false, true, false, false, false).or_else(|| {
                self.prefix
                    .iter()
                    .find(|e| {
                        !e.value
                            .parse::<ipnet::IpNet>()
                            .is_ok_and(|n| n.trunc() == n)
                    })
                    .map(|e| format!("`{}` is not a CIDR block without host bits", e.value))
            }),
            DimensionKind::Enum => tables(true, false, false, false, false),
            DimensionKind::Bool | DimensionKind::Relation => {
                tables(true, false, false, false, false).or_else(|| {
                    self.exact
                        .iter()
                        .find(|e| e.value != "true" && e.value != "false")
                        .map(|e| format!("`{}` is not `true` or `false`", e.value))
                        .or_else(|| {
                            (self.kind == DimensionKind::Relation && self.relation.is_none())
                                .then(|| "a relation without its fields".to_string())
                        })
                })
            }
            DimensionKind::Caps => tables(false, false, false, false, true).or_else(|| {
                self.masks
                    .iter()
                    .flat_map(|m| &m.caps)
                    .find(|c| policy_dsl::schema::capability_bit(c).is_none())
                    .map(|c| format!("`{c}` is not a capability"))
            }),
        }
    }
}

/// A value and how the set of terms it satisfies differs from its *base*,
/// the set the value would get if this entry were not in the table:
///
/// - a `prefix` entry (a CIDR block for `ip`): the set of the nearest
///   shorter `prefix` entry that is a prefix of it (a block containing it),
///   else the dimension's `default`;
/// - a `suffix` entry: the nearest shorter `suffix` entry that ends it,
///   else `suffixDefault`;
/// - an `exact` entry of a `path` or `string`: the value's prefix side (its
///   longest `prefix` entry's set, or `default`) intersected, when the
///   dimension tests suffixes, with its suffix side (longest `suffix`
///   entry's set, or `suffixDefault`);
/// - an `exact` entry of any other kind: `default`.
///
/// The entry's set is `(base − remove) ∪ add` ([`Entry::apply`]); both lists
/// are sorted tested term ids. A term is written only at the entries where
/// the answer changes: a rule's `startswith "/usr/"` adds its term at the
/// `/usr/` entry, and every longer prefix or path under it inherits it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Entry {
    /// The value (for paths: absolute, at most [`MAX_PATH_LITERAL_LEN`] bytes).
    pub value: String,
    /// Terms this value satisfies that its base lacks.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub add: TermSet,
    /// Terms of its base this value does not satisfy.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remove: TermSet,
}

impl Entry {
    /// The entry's set given its base's (`(base − remove) ∪ add`, sorted).
    pub fn apply(&self, base: &[u32]) -> TermSet {
        apply_change(base, &self.add, &self.remove)
    }

    /// Whether the entry changes nothing (its set is its base's).
    pub fn is_empty(&self) -> bool {
        self.add.is_empty() && self.remove.is_empty()
    }
}

/// `(base − remove) ∪ add` of sorted sets, sorted; of a term in both
/// `add` and `remove` (which the compiler never writes), `add` wins.
pub fn apply_change(base: &[u32], add: &[u32], remove: &[u32]) -> TermSet {
    let mut out = Vec::with_capacity(base.len() + add.len());
    let (mut remove, mut add) = (remove.iter().peekable(), add.iter().peekable());
    for &t in base {
        while let Some(&&a) = add.peek() {
            if a >= t {
                break;
            }
            out.push(a);
            add.next();
        }
        if add.next_if(|&&a| a == t).is_some() {
            out.push(t);
            continue;
        }
        while remove.next_if(|&&r| r < t).is_some() {}
        if remove.next_if(|&&r| r == t).is_none() {
            out.push(t);
        }
    }
    out.extend(add);
    out
}

/// Where each entry of a [`Dimension`] takes its base from (see [`Entry`]),
/// as indices into the dimension's lists; `None` is `default` (for a suffix
/// entry, `suffixDefault`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EntryBases {
    /// Per `prefix` entry, its nearest shorter prefix (containing block).
    pub prefix: Vec<Option<usize>>,
    /// Per `suffix` entry, its nearest shorter suffix.
    pub suffix: Vec<Option<usize>>,
    /// Per `exact` entry of a `path` or `string`, its longest prefix entry
    /// and longest suffix entry; `(None, None)` for other kinds.
    pub exact: Vec<(Option<usize>, Option<usize>)>,
    /// `prefix` indices parents first (by length).
    pub prefix_order: Vec<usize>,
    /// `suffix` indices parents first.
    pub suffix_order: Vec<usize>,
}

/// How a consumer represents a set while resolving entries
/// ([`Dimension::resolve`]): sorted term lists ([`SortedSets`]), kernel
/// masks, …
pub trait SetAlgebra {
    /// One resolved set.
    type Set: Clone;
    /// `(base − remove) ∪ add` (the changes of an [`Entry`] or a
    /// [`RangeEntry`]).
    fn apply(&mut self, base: &Self::Set, add: &[u32], remove: &[u32]) -> Self::Set;
    /// The intersection of two sets (an exact value's prefix and suffix sides).
    fn meet(&mut self, a: &Self::Set, b: &Self::Set) -> Self::Set;
    /// The set of exact entry `entry` of a `path` or `string` whose prefix
    /// side is `prefix` and suffix side `suffix` (`None` when the dimension
    /// tests no suffix): `entry` applied to their intersection. Override to
    /// keep the intersection out of a store of sets (it is no entry's).
    fn exact(
        &mut self,
        prefix: &Self::Set,
        suffix: Option<&Self::Set>,
        entry: &Entry,
    ) -> Self::Set {
        match suffix {
            Some(s) => {
                let base = self.meet(prefix, s);
                self.apply(&base, &entry.add, &entry.remove)
            }
            None => self.apply(prefix, &entry.add, &entry.remove),
        }
    }
}

/// [`SetAlgebra`] over sorted term-id lists.
pub struct SortedSets;

impl SetAlgebra for SortedSets {
    type Set = TermSet;
    fn apply(&mut self, base: &TermSet, add: &[u32], remove: &[u32]) -> TermSet {
        apply_change(base, add, remove)
    }
    fn meet(&mut self, a: &TermSet, b: &TermSet) -> TermSet {
        crate::lower::intersect(a, b)
    }
}

/// Every entry's resolved set, in the order of the dimension's lists.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResolvedEntries<S> {
    /// Per `exact` entry.
    pub exact: Vec<S>,
    /// Per `prefix` entry.
    pub prefix: Vec<S>,
    /// Per `suffix` entry.
    pub suffix: Vec<S>,
}

/// A hash map with a fast, non-cryptographic hash (keys come from the
/// bundle and the events of one process; lookups are per event).
pub(crate) type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// Longest-affix lookup over a list of values: by hashing each candidate
/// length, longest first (at most one hash per distinct length).
#[derive(Debug)]
pub struct AffixIndex<'d> {
    by_value: FastMap<&'d [u8], usize>,
    /// Distinct lengths, longest first.
    lens: Vec<usize>,
    prefix: bool,
}

impl<'d> AffixIndex<'d> {
    /// Index `entries` for longest-prefix (`prefix`) or longest-suffix
    /// lookups; of equal values the last wins.
    pub fn new(entries: &'d [Entry], prefix: bool) -> AffixIndex<'d> {
        let by_value = entries
            .iter()
            .enumerate()
            .map(|(i, e)| (e.value.as_bytes(), i))
            .collect();
        let mut lens: Vec<usize> = entries.iter().map(|e| e.value.len()).collect();
        lens.sort_unstable_by(|a, b| b.cmp(a));
        lens.dedup();
        AffixIndex {
            by_value,
            lens,
            prefix,
        }
    }

    /// The index of the entry whose value is the longest prefix (suffix) of
    /// `value` of at most `max_len` bytes.
    pub fn longest(&self, value: &[u8], max_len: usize) -> Option<usize> {
        let limit = max_len.min(value.len());
        self.lens.iter().skip_while(|&&l| l > limit).find_map(|&l| {
            let key = if self.prefix {
                &value[..l]
            } else {
                &value[value.len() - l..]
            };
            self.by_value.get(key).copied()
        })
    }
}

/// Longest-block lookup over an `ip` dimension's `prefix` entries.
#[derive(Debug)]
pub struct BlockIndex {
    by_block: FastMap<ipnet::IpNet, usize>,
    /// Distinct prefix lengths per family (IPv4, IPv6), longest first.
    lens: [Vec<u8>; 2],
}

impl BlockIndex {
    /// Index the CIDR blocks of `entries` (values that do not parse, which
    /// validation refuses, are left out; a block with host bits covers its
    /// truncation; of equal blocks the last wins).
    pub fn new(entries: &[Entry]) -> BlockIndex {
        let mut out = BlockIndex {
            by_block: FastMap::default(),
            lens: [Vec::new(), Vec::new()],
        };
        for (i, e) in entries.iter().enumerate() {
            if let Ok(net) = e.value.parse::<ipnet::IpNet>() {
                out.lens[usize::from(matches!(net, ipnet::IpNet::V6(_)))].push(net.prefix_len());
                out.by_block.insert(net.trunc(), i);
            }
        }
        for lens in &mut out.lens {
            lens.sort_unstable_by(|a, b| b.cmp(a));
            lens.dedup();
        }
        out
    }

    /// The entry of the longest block of at most `max_len` bits holding
    /// `addr`.
    pub fn longest(&self, addr: std::net::IpAddr, max_len: u8) -> Option<usize> {
        self.lens[usize::from(addr.is_ipv6())]
            .iter()
            .skip_while(|&&l| l > max_len)
            .find_map(|&l| {
                let net = ipnet::IpNet::new(addr, l).ok()?.trunc();
                self.by_block.get(&net).copied()
            })
    }
}

/// Entry indices of `list` ordered by `len` (stable): a base is shorter
/// than what it is the base of, so it comes first.
fn by_len(list: &[Entry], len: impl Fn(&Entry) -> usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..list.len()).collect();
    order.sort_by_key(|&i| len(&list[i]));
    order
}

/// Where a stored set of a dimension is, as a validation message names it.
enum SetPlace<'d> {
    /// `default`, `suffixDefault`, `absent`.
    Named(&'static str),
    /// An `exact`, `prefix` or `suffix` entry, its value and which list
    /// (`add`, `remove`).
    Entry(&'static str, &'d str, &'static str),
    /// A range entry and which list (`add`, `remove`).
    Range(u64, u64, &'static str),
    /// A capability mask's `held` (true) or `lacking` set.
    Mask(&'d [String], bool),
}

impl std::fmt::Display for SetPlace<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SetPlace::Named(n) => f.write_str(n),
            SetPlace::Entry(what, value, list) => write!(f, "{what} entry `{value}` {list}"),
            SetPlace::Range(lo, hi, list) => write!(f, "range {lo}..{hi} {list}"),
            SetPlace::Mask(caps, held) => write!(
                f,
                "mask `{}` {}",
                caps.join(", "),
                if *held { "held" } else { "lacking" }
            ),
        }
    }
}

/// Why a bundle was refused.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum BundleError {
    /// The text is not a YAML document of the bundle's shape.
    #[error("bundle is not valid YAML of kind `PolicyBundle`: {message}")]
    #[diagnostic(code(bundle::malformed), help("regenerate it with `policyc compile`"))]
    Malformed {
        /// The parser's message, with line and column.
        message: String,
    },
    /// `apiVersion`, `kind` or `schemaVersion` is not one this build understands.
    #[error("unsupported bundle version: {found}")]
    #[diagnostic(
        code(bundle::unsupported_version),
        help("this build reads `apiVersion: {API_VERSION}`, `kind: {KIND}`, `schemaVersion: {SCHEMA_VERSION}`")
    )]
    UnsupportedVersion {
        /// What the bundle declares.
        found: String,
    },
    /// The stored digest does not match the content.
    #[error("bundle digest mismatch: declared `{declared}`, content hashes to `{actual}`")]
    #[diagnostic(
        code(bundle::digest_mismatch),
        help("the bundle was edited after compilation; recompile it from source")
    )]
    DigestMismatch {
        /// `spec.digest` as written.
        declared: String,
        /// Digest of the content as read.
        actual: String,
    },
    /// The content breaks an invariant the compiler guarantees.
    #[error("invalid bundle: {message}")]
    #[diagnostic(code(bundle::invalid), help("regenerate it with `policyc compile`"))]
    Invalid {
        /// Which invariant, and where.
        message: String,
    },
}

/// The fields the digest covers: the bundle's name and every spec field but
/// the digest itself.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct DigestInput<'a> {
    name: &'a str,
    schema_version: u32,
    compiler: &'a str,
    policies: &'a [PolicyInfo],
    rules: &'a [RuleEntry],
    #[serde(skip_serializing_if = "<[ScopeEntry]>::is_empty")]
    scopes: &'a [ScopeEntry],
    hooks: &'a BTreeMap<Hook, HookTable>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    node_selector: &'a BTreeMap<String, String>,
}

impl BundleSpec {
    /// SHA-256 of the canonical JSON of the bundle's `name` (`metadata.name`)
    /// and every spec field except `digest`, as `sha256:<64 hex digits>`.
    pub fn compute_digest(&self, name: &str) -> String {
        let input = DigestInput {
            name,
            schema_version: self.schema_version,
            compiler: &self.compiler,
            policies: &self.policies,
            rules: &self.rules,
            scopes: &self.scopes,
            hooks: &self.hooks,
            node_selector: &self.node_selector,
        };
        // Serialising plain structs, vectors and string-keyed maps cannot fail.
        let json = serde_json::to_vec(&input).expect("bundle content serialises to JSON");
        format!("sha256:{}", hex::encode(Sha256::digest(&json)))
    }
}

/// Stored term ids past which one dimension is named as what makes a
/// bundle large ([`PolicyBundle::repeated_sets_note`]).
const REPEATED_IDS: usize = 1_000_000;

impl PolicyBundle {
    /// `; …` naming the dimension whose entries hold the most term ids when
    /// they are more than a million and more than 16 per term of its hook
    /// (a large set tested by many rules lists each of their terms at each
    /// of its values: docs/bundle.md, "Known limit: shared sets"); else
    /// empty.
    pub fn repeated_sets_note(&self) -> String {
        self.repeated_sets_note_over(REPEATED_IDS)
    }

    fn repeated_sets_note_over(&self, min_ids: usize) -> String {
        let worst = self
            .spec
            .hooks
            .iter()
            .flat_map(|(h, t)| {
                t.dimensions
                    .iter()
                    .map(move |(name, d)| (d.stored_ids(), t.terms.len(), h, name))
            })
            .max_by_key(|(ids, ..)| *ids);
        match worst {
            Some((ids, terms, hook, name)) if ids > min_ids && ids > 16 * terms => format!(
                "; {ids} term ids ({} per term) are in the entries of `{name}` on `{}`: \
                 each value of a set is an entry listing every term that tests the set \
                 (see docs/bundle.md, \"Known limit: shared sets\")",
                ids / terms.max(1),
                hook.as_str()
            ),
            _ => String::new(),
        }
    }

    /// Render the bundle as YAML. Deterministic: same bundle, same bytes.
    pub fn to_yaml(&self) -> String {
        serde_yaml::to_string(self).expect("bundle serialises to YAML")
    }

    /// Parse and validate a bundle.
    ///
    /// # Errors
    /// [`BundleError::Malformed`] when the YAML does not have the bundle's shape,
    /// [`BundleError::UnsupportedVersion`] for another `apiVersion`, `kind` or
    /// `schemaVersion`, [`BundleError::DigestMismatch`] when the content was
    /// changed after compilation, [`BundleError::Invalid`] when an invariant
    /// (dense ids, term references, kernel limits) does not hold.
    pub fn from_yaml(text: &str) -> Result<PolicyBundle, BundleError> {
        // Check the header first so that a future schema is reported as a
        // version problem, not as a shape error.
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Header {
            api_version: Option<String>,
            kind: Option<String>,
            spec: Option<SpecHeader>,
        }
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct SpecHeader {
            schema_version: Option<u32>,
        }
        if text.trim().is_empty() {
            return Err(BundleError::Malformed {
                message: "the file is empty".into(),
            });
        }
        let header: Header = serde_yaml::from_str(text).map_err(|e| BundleError::Malformed {
            message: e.to_string(),
        })?;
        let api = header.api_version.unwrap_or_default();
        let kind = header.kind.unwrap_or_default();
        let schema = header.spec.and_then(|s| s.schema_version);
        if api != API_VERSION || kind != KIND || schema != Some(SCHEMA_VERSION) {
            return Err(BundleError::UnsupportedVersion {
                found: format!(
                    "apiVersion `{api}`, kind `{kind}`, schemaVersion `{}`",
                    schema
                        .map(|v| v.to_string())
                        .unwrap_or_else(|| "missing".into())
                ),
            });
        }
        let bundle: PolicyBundle =
            serde_yaml::from_str(text).map_err(|e| BundleError::Malformed {
                message: e.to_string(),
            })?;
        bundle.validate()?;
        Ok(bundle)
    }

    /// Check the invariants the compiler guarantees and the kernel relies on.
    ///
    /// # Errors
    /// See [`PolicyBundle::from_yaml`].
    pub fn validate(&self) -> Result<(), BundleError> {
        let actual = self.spec.compute_digest(&self.metadata.name);
        if actual != self.spec.digest {
            return Err(BundleError::DigestMismatch {
                declared: self.spec.digest.clone(),
                actual,
            });
        }
        let invalid = |message: String| Err(BundleError::Invalid { message });
        for (i, rule) in self.spec.rules.iter().enumerate() {
            if !self.spec.policies.iter().any(|p| p.name == rule.policy) {
                return invalid(format!(
                    "rule `{}` belongs to policy `{}`, which the bundle does not list",
                    rule.name, rule.policy
                ));
            }
            if rule.id as usize != i {
                return invalid(format!(
                    "rule `{}` has id {} at index {i}",
                    rule.name, rule.id
                ));
            }
        }
        for (hook, table) in &self.spec.hooks {
            let hook = hook.as_str();
            if table.terms.len() > MAX_TERMS_PER_HOOK {
                return invalid(format!(
                    "hook `{hook}` has {} terms, policyc lowers at most {MAX_TERMS_PER_HOOK}",
                    table.terms.len()
                ));
            }
            for (i, term) in table.terms.iter().enumerate() {
                if term.id as usize != i {
                    return invalid(format!("hook `{hook}`: term {} at index {i}", term.id));
                }
                if term.scope {
                    match self.spec.scopes.get(term.rule as usize) {
                        Some(scope) if scope.hook.as_str() == hook => {}
                        _ => return invalid(format!(
                            "hook `{hook}`: term {i} refers to scope {}, which is not an `{hook}` scope",
                            term.rule
                        )),
                    }
                    continue;
                }
                match self.spec.rules.get(term.rule as usize) {
                    Some(rule) if rule.hook.as_str() == hook => {}
                    _ => {
                        return invalid(format!(
                        "hook `{hook}`: term {i} refers to rule {}, which is not an `{hook}` rule",
                        term.rule
                    ))
                    }
                }
            }
            let n = table.terms.len() as u32;
            let check_set =
                |what: &dyn std::fmt::Display, set: &TermSet| -> Result<(), BundleError> {
                    if set.windows(2).any(|w| w[0] >= w[1]) || set.iter().any(|&t| t >= n) {
                        return Err(BundleError::Invalid {
                            message: format!(
                                "hook `{hook}`: {what} is not a sorted set of term ids below {n}"
                            ),
                        });
                    }
                    Ok(())
                };
            let v = &table.verdicts;
            check_set(&"verdicts.deny", &v.deny)?;
            check_set(&"verdicts.kill", &v.kill)?;
            check_set(&"verdicts.allow", &v.allow)?;
            check_set(&"verdicts.audit", &v.audit)?;
            check_set(&"verdicts.defaultDeny", &v.default_deny)?;
            check_set(&"verdicts.monitor", &v.monitor)?;
            for (name, set) in &v.count {
                check_set(&format!("verdicts.count `{name}`"), set)?;
            }
            for (field, dim) in &table.dimensions {
                check_set(&format!("dimension `{field}` tested"), &dim.tested)?;
                for (what, set) in dim.stored_sets() {
                    check_set(&format_args!("dimension `{field}` {what}"), set)?;
                    // A search per term: the set is usually far smaller than
                    // `tested`, so a merge from its start would cost
                    // entries × tested.
                    let outside = set.iter().find(|t| dim.tested.binary_search(t).is_err());
                    if let Some(t) = outside {
                        return invalid(format!(
                            "hook `{hook}`: dimension `{field}` {what} holds term {t}, which does not test the dimension (not in `tested`)"
                        ));
                    }
                }
                // The compiler writes a term as added or removed, not both.
                let both = dim
                    .exact
                    .iter()
                    .chain(&dim.prefix)
                    .chain(&dim.suffix)
                    .map(|e| (&e.value, &e.add, &e.remove))
                    .find(|(_, add, remove)| !crate::lower::intersect(add, remove).is_empty());
                if let Some((value, ..)) = both {
                    return invalid(format!(
                        "hook `{hook}`: dimension `{field}` entry `{value}` both adds and removes a term"
                    ));
                }
                if let Some(r) = dim
                    .ranges
                    .iter()
                    .find(|r| !crate::lower::intersect(&r.add, &r.remove).is_empty())
                {
                    return invalid(format!(
                        "hook `{hook}`: dimension `{field}` range {}..{} both adds and removes a term",
                        r.lo, r.hi
                    ));
                }
                if let Some(message) = dim.kind_problem() {
                    return invalid(format!("dimension `{field}`: {message}"));
                }
                for (what, list) in [
                    ("exact", &dim.exact),
                    ("prefix", &dim.prefix),
                    ("suffix", &dim.suffix),
                ] {
                    if list.windows(2).any(|w| w[0].value >= w[1].value) {
                        return invalid(format!(
                            "dimension `{field}`: {what} entries are not sorted and unique"
                        ));
                    }
                }
            }
        }
        // What policyd can lay out in its masks (crate::layout): past 4096
        // terms a hook needs an anchor, as `policyc compile` checks.
        for (hook, table) in &self.spec.hooks {
            if let Err(e) = crate::layout::check(hook.as_str(), table) {
                return invalid(e.to_string());
            }
        }
        Ok(())
    }
}

/// Expand a term set into the kernel's mask words: bit `t % 64` of word `t / 64`.
///
/// Term ids are below [`MAX_TERMS_PER_HOOK`] in a validated bundle; larger ids
/// are a caller bug and panic.
pub fn mask_words(set: &TermSet) -> [u64; MASK_WORDS] {
    let mut words = [0u64; MASK_WORDS];
    for &t in set {
        words[t as usize / 64] |= 1u64 << (t % 64);
    }
    words
}

/// The term ids set in `words`, ascending: the inverse of [`mask_words`].
pub fn mask_terms(words: &[u64; MASK_WORDS]) -> TermSet {
    let mut out = Vec::new();
    for (w, word) in words.iter().enumerate() {
        for b in 0..64 {
            if word & (1u64 << b) != 0 {
                out.push((w * 64 + b) as u32);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    /// 110 narrow prefixes under `/w/` and 100 rules that test `/w/` (and
    /// a name each); also exact paths under them.
    fn nested_prefix_policy(exact: bool) -> String {
        let mut text = String::from("policy p {}\n");
        for i in 0..110 {
            text += &format!(
                "rule n{i} on exec {{ when process.binary startswith \"/w/n{i}/\" audit }}\n"
            );
            if exact {
                text += &format!(
                    "rule e{i} on exec {{ when process.binary == \"/w/n{i}/bin\" audit }}\n"
                );
            }
        }
        for i in 0..100 {
            text += &format!(
                "rule w{i} on exec {{ when process.binary startswith \"/w/\" and process.name == \"c{i}\" audit }}\n"
            );
        }
        text
    }

    #[test]
    fn nested_prefixes_store_each_term_once() {
        // Whole sets (schema 2) repeated the 100 `/w/` terms in each of the
        // 110 narrow prefixes and each exact path under them (22,000 ids);
        // as changes from their bases each term is written where it starts.
        for exact in [false, true] {
            let b = crate::compile::evaluation_bundle_of(&nested_prefix_policy(exact)).unwrap();
            let exec = &b.spec.hooks[&Hook::Exec];
            let dim = &exec.dimensions["process.binary"];
            let rules = if exact { 320 } else { 210 };
            assert_eq!(dim.stored_ids(), rules, "exact values: {exact}");
            let wide = dim.prefix.iter().find(|e| e.value == "/w/").unwrap();
            assert_eq!(wide.add.len(), 100);
            // And they resolve to the whole sets: `/w/n7/` holds its own
            // term and the 100 of `/w/`.
            let sets = dim.resolve(
                &dim.bases(),
                &mut SortedSets,
                &dim.default,
                dim.suffix_default.as_ref(),
            );
            let i = dim.prefix.iter().position(|e| e.value == "/w/n7/").unwrap();
            let set = &sets.prefix[i];
            assert_eq!(set.len(), 101);
            assert!(wide.add.iter().all(|t| set.binary_search(t).is_ok()));
            if exact {
                let j = dim
                    .exact
                    .iter()
                    .position(|e| e.value == "/w/n7/bin")
                    .unwrap();
                assert_eq!(dim.exact[j].add.len(), 1);
                assert_eq!(sets.exact[j].len(), 102);
            }
            assert_eq!(b.repeated_sets_note_over(100), "");
        }
    }

    #[test]
    fn nested_ranges_store_each_term_once() {
        // 110 single uids and 100 rules over a range holding them: whole
        // sets (schema 2) repeated the 100 in each one-value interval
        // (11,000 ids); as changes from the previous interval each term is
        // written where its answer changes.
        let mut text = String::from("policy p {}\n");
        for i in 0..110 {
            text += &format!(
                "rule n{i} on exec {{ when user.uid == {} audit }}\n",
                1000 + i
            );
        }
        for i in 0..100 {
            text += &format!(
                "rule w{i} on exec {{ when user.uid in 0..100000 and process.name == \"c{i}\" audit }}\n"
            );
        }
        let b = crate::compile::evaluation_bundle_of(&text).unwrap();
        let uid = &b.spec.hooks[&Hook::Exec].dimensions["user.uid"];
        // Each single uid enters and leaves once; the wide range enters.
        assert_eq!(uid.stored_ids(), 110 * 2 + 100);
        let at = |n: u64| {
            let i = crate::eval::range_index(uid, n).unwrap();
            uid.range_set(i)
        };
        assert_eq!(at(1007).len(), 101, "the uid's own term and the 100");
        assert_eq!(at(500).len(), 100);
        assert_eq!(at(5000).len(), 100);
        let snapshots = RangeSnapshots::new(uid);
        for i in 0..uid.ranges.len() {
            assert_eq!(snapshots.set(uid, i), uid.range_set(i), "interval {i}");
        }
        assert_eq!(b.repeated_sets_note_over(100), "");
    }

    #[test]
    fn shared_sets_are_named_as_what_makes_a_bundle_large() {
        // A 110-path set tested by 100 rules: each path's entry lists the
        // 100 terms (11,000 ids; the threshold scaled down from a million).
        let paths: Vec<String> = (0..110).map(|i| format!("\"/w/p{i}\"")).collect();
        let mut text = format!("policy p {{}}\nset big = {{ {} }}\n", paths.join(", "));
        for i in 0..100 {
            text += &format!(
                "rule w{i} on exec {{ when process.binary in big and process.name == \"c{i}\" audit }}\n"
            );
        }
        let b = crate::compile::evaluation_bundle_of(&text).unwrap();
        let note = b.repeated_sets_note_over(10_000);
        assert!(
            note.contains("in the entries of `process.binary` on `exec`")
                && note.contains("(110 per term)")
                && note.contains("Known limit: shared sets"),
            "{note}"
        );
        assert_eq!(b.repeated_sets_note(), "", "under a million ids");
    }

    #[test]
    fn a_hook_without_a_kernel_layout_is_invalid() {
        // 5,000 suffix rules: past one mask and nothing to anchor them on
        // (a suffix keys on no value).
        let text: String = std::iter::once("policy p {}\n".to_string())
            .chain((0..5000).map(|i| {
                format!("rule r{i} on exec {{ when process.binary endswith \"/p{i}\" audit }}\n")
            }))
            .collect();
        let b = crate::compile::evaluation_bundle_of(&text).unwrap();
        let err = PolicyBundle::from_yaml(&b.to_yaml()).unwrap_err();
        assert!(
            matches!(&err, BundleError::Invalid { message } if message.contains("5000 terms")
                && message.contains("process.binary") || message.contains("no path")),
            "{}",
            err.to_string().chars().take(400).collect::<String>()
        );
    }

    use super::*;

    #[test]
    fn mask_round_trip() {
        let set = vec![0, 1, 63, 64, 200, 255];
        let words = mask_words(&set);
        assert_eq!(words[0], 0x8000_0000_0000_0003);
        assert_eq!(words[1], 1);
        assert_eq!(mask_terms(&words), set);
    }

    fn compiled(text: &str) -> PolicyBundle {
        let sources = [crate::compile::SourceFile {
            name: "p.policy".into(),
            text: text.into(),
        }];
        crate::compile::compile(&sources, "p")
            .unwrap_or_else(|e| panic!("{e:?}"))
            .bundle
    }

    /// Three rules testing three different fields: each dimension's sets
    /// list only the term that tests its field (schema 2), and the full set
    /// adds the other two back.
    const THREE_FIELDS: &str = "policy p {}\n\
        rule a on exec { when process.binary == \"/usr/bin/sudo\" deny }\n\
        rule b on exec { when process.name == \"nc\" deny }\n\
        rule c on exec { when user.uid == 0 audit }\n";

    #[test]
    fn entry_sets_hold_only_their_dimension_s_tested_terms() {
        let b = compiled(THREE_FIELDS);
        let exec = &b.spec.hooks[&Hook::Exec];
        assert_eq!(exec.terms.len(), 3);
        for (field, term) in [
            ("process.binary", 0u32),
            ("process.name", 1),
            ("user.uid", 2),
        ] {
            let dim = &exec.dimensions[field];
            assert_eq!(dim.tested, vec![term], "{field}");
            for (what, set) in dim.stored_sets() {
                assert!(set.iter().all(|&t| t == term), "{field} {what}: {set:?}");
            }
            // A value matching no entry: only the untested terms pass.
            let others: TermSet = (0..3).filter(|&t| t != term).collect();
            assert_eq!(dim.full_set(&dim.default, 3), others, "{field}");
        }
        let binary = &b.spec.hooks[&Hook::Exec].dimensions["process.binary"];
        // The exact entry adds its term to the default (empty over `tested`).
        assert_eq!(binary.exact[0].add, vec![0]);
        assert!(binary.exact[0].remove.is_empty());
        let sets = binary.resolve(&binary.bases(), &mut SortedSets, &binary.default, None);
        assert_eq!(binary.full_set(&sets.exact[0], 3), vec![0, 1, 2]);
        let uid = &b.spec.hooks[&Hook::Exec].dimensions["user.uid"];
        assert_eq!(uid.ranges.len(), 1);
        assert_eq!((uid.ranges[0].lo, uid.ranges[0].add.clone()), (0, vec![2]));
        assert!(b.validate().is_ok());
    }

    /// Re-digest an edited bundle, so that validation reaches the invariants.
    fn redigest(mut b: PolicyBundle) -> PolicyBundle {
        b.spec.digest = b.spec.compute_digest(&b.metadata.name);
        b
    }

    /// `field`'s dimension on `exec`, to edit.
    fn exec_dimension<'b>(b: &'b mut PolicyBundle, field: &str) -> &'b mut Dimension {
        b.spec
            .hooks
            .get_mut(&Hook::Exec)
            .unwrap()
            .dimensions
            .get_mut(field)
            .unwrap()
    }

    #[test]
    fn validate_refuses_a_stored_term_outside_tested() {
        let b = compiled(THREE_FIELDS);
        let mut bad = b.clone();
        // Term 1 (`process.name`) in a `process.binary` entry.
        let dim = exec_dimension(&mut bad, "process.binary");
        dim.exact[0].add = vec![0, 1];
        let err = redigest(bad).validate().unwrap_err();
        let msg = err.to_string();
        assert!(
            matches!(err, BundleError::Invalid { .. })
                && msg.contains(
                    "dimension `process.binary` exact entry `/usr/bin/sudo` add holds term 1"
                )
                && msg.contains("not in `tested`"),
            "{msg}"
        );
        // `tested` itself: sorted, unique, below the term count.
        for tested in [vec![0, 0], vec![3], vec![1, 0]] {
            let mut bad = b.clone();
            exec_dimension(&mut bad, "user.uid").tested = tested.clone();
            let msg = redigest(bad).validate().unwrap_err().to_string();
            assert!(
                msg.contains("dimension `user.uid` tested is not a sorted set of term ids below 3"),
                "{tested:?}: {msg}"
            );
        }
        // A term both added and removed by one entry.
        let mut bad = b.clone();
        let dim = exec_dimension(&mut bad, "process.binary");
        dim.exact[0].remove = dim.exact[0].add.clone();
        let msg = redigest(bad).validate().unwrap_err().to_string();
        assert!(
            msg.contains("entry `/usr/bin/sudo` both adds and removes a term"),
            "{msg}"
        );
        // A v2 bundle (whole sets in entries) is refused as a version.
        let v1 = b.to_yaml().replace("schemaVersion: 3", "schemaVersion: 2");
        assert!(matches!(
            PolicyBundle::from_yaml(&v1),
            Err(BundleError::UnsupportedVersion { .. })
        ));
    }
}
