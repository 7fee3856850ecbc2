//! `policyc inspect BUNDLE`: what a bundle holds and what it costs the kernel.
//!
//! Prints the bundle's name, digest, policies and rules; per hook its terms,
//! dimensions, verdict masks and the kernel entries it contributes; and an
//! **estimated kernel memory** per kernel map, with the model below (also in
//! `docs/bundle.md`, "Kernel memory").
//!
//! ## Model: what the runtime stores
//!
//! [`kernel_model`] mirrors `KernelTables::build` (runtime/src/tables.rs) for
//! one bundle loaded alone (one part per hook, at bit 0); the compiler cannot
//! depend on the runtime crate, so it is recomputed here, and
//! `runtime/tests/inspect_matches_tables.rs` checks that both count the same
//! entries. The maps are those of `bpf-templates/policy.bpf.c`, shared by
//! every hook; each entry's value is a 4-byte **mask id**, and each distinct
//! term mask is stored once in `masks`:
//!
//! - `str_exact` (hash, key `{u32 ns; u8[256]}` = 260 bytes): one entry per
//!   `exact` value of a path or string dimension.
//! - `str_prefix`, `str_suffix` (LPM tries, data `{u8 ns; u8[255]}` = 256
//!   bytes): one entry per `prefix` value, and per `suffix` value of a
//!   dimension with a `suffixDefault` (over the reversed bytes).
//! - `num_lpm` (LPM trie, data `{u32 ns; u64 value}` = 12 bytes): per `int`
//!   range, its prefixes over a 64-bit value
//!   ([`crate::lower::range_prefixes`]`(lo, hi, 64)`); one single-value entry
//!   per user/group name (counted as if every name resolves on the node to an
//!   id no range covers, an upper bound: the node skips unknown, duplicate and
//!   covered ids), per `enum`/`bool` value, per relation value.
//! - `ip_lpm` (LPM trie, data `{u32 ns; u8 family; pad; u8[16]}` = 24 bytes):
//!   one entry per CIDR block.
//! - `cgroup_exact` (hash, 16-byte key): all `k8s.*` dimensions of a hook
//!   (and relations between two `k8s.*` fields) become one cgroup dimension
//!   whose entries, one per pod container, the node fills from its pods: 0
//!   at compile time, only its default (every `k8s.*` field absent) counted.
//! - `caps_table` (hash, key `u32`, value `{u64 caps; u32 held; u32
//!   lacking}` = 16 bytes): one entry per distinct capability set.
//! - `masks` (hash, key `u32`, value `u64[MASK_WORDS]`): the distinct term
//!   sets, **deduplicated over the whole bundle**: the empty set (id 0); per
//!   dimension its `default` and its set for an absent field, its
//!   `suffixDefault`, and the set of every entry above; per capability set
//!   `held` and `lacking`; per hook the set of all its terms and the verdict
//!   sets (`deny`, `kill`, `allow`, `audit`, `defaultDeny`, `monitor`, the
//!   union of the counters). A hook without terms stores nothing.
//!
//! ## Bytes
//!
//! Sizes are for a 64-bit kernel (6.x) and count the map elements only: not
//! the `struct bpf_map` header of each map, nor slab rounding.
//!
//! - **Hash map** (`BPF_MAP_TYPE_HASH`, preallocated): each element is a
//!   `struct htab_elem` (kernel/bpf/hashtab.c: `hash_node`/free-list union
//!   16 bytes, `lru_node`/`ptr_to_pptr` union 24, `u32 hash`, key aligned to
//!   8: [`HTAB_ELEM_BYTES`] = 48) followed by the key and the value, each
//!   rounded up to 8 bytes; plus one `struct bucket` (`hlist_nulls_head` and a
//!   spinlock, [`HTAB_BUCKET_BYTES`] = 16) per bucket, the entry count rounded
//!   up to a power of two:
//!   `entries × (48 + round8(key) + round8(value)) + pow2(entries) × 16`.
//!   Not counted: one spare element per possible CPU, and the one element an
//!   empty map still preallocates (policyd creates every map with at least
//!   one entry).
//! - **LPM trie** (`BPF_MAP_TYPE_LPM_TRIE`, `BPF_F_NO_PREALLOC`): each entry
//!   is a `struct lpm_trie_node` (kernel/bpf/lpm_trie.c: `child[2]`, `u32
//!   prefixlen`, `u32 flags`: [`LPM_NODE_BYTES`] = 24) followed by the key's
//!   data (the key less its `u32 prefixlen`) and the value:
//!   `entries × (24 + data + 4)`. The trie also allocates up to
//!   `entries − 1` intermediate nodes of the same size where two prefixes
//!   branch; `upperBytes` counts them, `bytes` does not.
//!
//! The tables are double-buffered (two slots): `bytes` is one slot, the
//! bundle in force; while a reload fills the other slot both exist. The
//! maps whose size does not depend on the bundle (`hook_config`, `active`,
//! `stats`, the `events` ring buffer) are reported apart as `fixedMaps`
//! and `fixedBytes`, not in `bytes`.
//!
//! `bytesPerRule` is `bytes` divided by the number of rules.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use policy_dsl::checked::Value;
use serde::Serialize;

use crate::bundle::{Dimension, DimensionKind, HookTable, PolicyBundle, SetAlgebra, TermSet};
use crate::layout::AnchorKind;
use crate::limits::{MASK_WORDS, MAX_DIMS_PER_HOOK, PATH_KEY_LEN};

/// Bytes of a `struct htab_elem` before its key, on a 64-bit kernel.
pub const HTAB_ELEM_BYTES: u64 = 48;
/// Bytes of a hash map's `struct bucket`.
pub const HTAB_BUCKET_BYTES: u64 = 16;
/// Bytes of a `struct lpm_trie_node` before its data.
pub const LPM_NODE_BYTES: u64 = 24;
/// Bytes of a value of `masks` (`struct mask_value`: the term mask,
/// `u64[MASK_WORDS]`, and its non-zero word range, two `u32`).
pub const MASK_BYTES: u64 = (MASK_WORDS * 8 + 8) as u64;
/// Bytes of a mask id (`u32`), the value of every lookup table.
pub const MASK_ID_BYTES: u64 = 4;
/// Key of `str_exact` (`struct str_key`: `u32 ns`, `u8[PATH_KEY_LEN]`).
pub const STR_KEY_BYTES: u64 = 4 + PATH_KEY_LEN as u64;
/// LPM data of `str_prefix`/`str_suffix` (`u8 ns`, `u8[STR_LPM_LEN]`).
pub const STR_LPM_DATA_BYTES: u64 = PATH_KEY_LEN as u64;
/// LPM data of `num_lpm` (`u32 ns`, big-endian `u64` value).
pub const NUM_LPM_DATA_BYTES: u64 = 12;
/// LPM data of `ip_lpm` (`u32 ns`, `u8 family`, padding, `u8[16]` address).
pub const IP_LPM_DATA_BYTES: u64 = 24;
/// Key of `cgroup_exact` (`struct cgroup_key`: `u32 ns`, pad, `u64` id).
pub const CGROUP_KEY_BYTES: u64 = 16;
/// Value of `caps_table` (`struct caps_entry`: `u64 caps`, `u32 held`,
/// `u32 lacking`).
pub const CAPS_ENTRY_BYTES: u64 = 16;
/// Value of `anchor_exact` and `anchor_prefix` (`struct anchor_value`:
/// group key and mask id).
pub const ANCHOR_VALUE_BYTES: u64 = 8;
/// Value of `group_config` (`struct group_config`: `ndims`, seven verdict
/// mask ids, [`MAX_DIMS_PER_HOOK`] dimensions of 48 bytes).
pub const GROUP_CONFIG_BYTES: u64 = 32 + 48 * MAX_DIMS_PER_HOOK as u64;
/// Value of `hook_config` (`struct hook_config`: 40 bytes of header and
/// four anchors of 16 bytes).
pub const HOOK_CONFIG_BYTES: u64 = 40 + 16 * 4;
/// Slots of `hook_config`: `SLOTS` (2) × `NHOOKS` (8).
pub const HOOK_CONFIG_SLOTS: u64 = 2 * 8;
/// Counters of `stats` (`STAT__COUNT`: one per hook and 11 others).
pub const STATS_COUNT: u64 = 8 + 11;
/// Bytes of the `events` ring buffer (`4 << 20`).
pub const EVENTS_BYTES: u64 = 4 << 20;

/// The kernel maps filled from a bundle, in `policy.bpf.c` order.
pub const MAPS: [&str; 11] = [
    "masks",
    "str_exact",
    "str_prefix",
    "str_suffix",
    "num_lpm",
    "ip_lpm",
    "cgroup_exact",
    "caps_table",
    "anchor_exact",
    "anchor_prefix",
    "group_config",
];

/// What `policyc inspect` reports.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Inspection {
    /// `metadata.name`.
    pub name: String,
    /// `spec.digest`.
    pub digest: String,
    /// `spec.compiler`.
    pub compiler: String,
    /// The policies.
    pub policies: Vec<PolicyView>,
    /// The rule table.
    pub rules: Vec<RuleView>,
    /// `default deny` scopes.
    pub scopes: Vec<ScopeView>,
    /// Per hook, in bundle order.
    pub hooks: Vec<HookView>,
    /// The kernel maps the bundle fills (one table slot), in [`MAPS`] order.
    pub maps: Vec<MapEstimate>,
    /// Estimated kernel memory of [`Inspection::maps`], in bytes.
    pub bytes: u64,
    /// Upper bound, LPM intermediate nodes included, in bytes.
    pub upper_bytes: u64,
    /// `bytes` / number of rules (0 without rules).
    pub bytes_per_rule: u64,
    /// Maps of the same size for any bundle (`hook_config`, `active`,
    /// `stats` per CPU, `events`).
    pub fixed_maps: Vec<MapEstimate>,
    /// Sum of the fixed maps' `bytes` (`stats` for one CPU).
    pub fixed_bytes: u64,
}

/// A policy of the bundle.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyView {
    /// Name.
    pub name: String,
    /// `enforce` or `monitor`.
    pub mode: String,
    /// Source file.
    pub source: String,
    /// Description.
    pub description: String,
}

/// A rule of the bundle.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RuleView {
    /// Rule id.
    pub id: u32,
    /// `policy.rule`.
    pub name: String,
    /// Hook.
    pub hook: String,
    /// `allow`, `deny`, `kill`, or `null` (audit/count only).
    pub verdict: Option<String>,
    /// Audited.
    pub audit: bool,
    /// Severity.
    pub severity: String,
    /// `file:line:column`.
    pub source: String,
    /// Number of terms (DNF conjunctions) of the rule.
    pub terms: usize,
}

/// A `default deny` scope.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ScopeView {
    /// Scope id.
    pub id: u32,
    /// `policy.default_deny_HOOK_N`.
    pub name: String,
    /// Hook.
    pub hook: String,
    /// `file:line:column`.
    pub source: String,
}

/// One hook's tables.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HookView {
    /// Hook name.
    pub hook: String,
    /// Number of terms (mask bits in use).
    pub terms: usize,
    /// Rules on the hook.
    pub rules: usize,
    /// Dimensions, by name.
    pub dimensions: Vec<DimensionView>,
    /// Verdict masks: name → term ids (`count "c"` as `count:c`).
    pub verdicts: BTreeMap<String, TermSet>,
    /// Kernel dimensions of the hook's own words (`ndims` of its
    /// `group_config`): the bundle's, with every `k8s.*` one folded into one
    /// cgroup dimension.
    pub kernel_dimensions: usize,
    /// Entries the hook adds to each kernel map (only maps it adds to; for
    /// `masks`, the masks no earlier hook stored, the empty mask counted
    /// with the first hook).
    pub entries: BTreeMap<String, u64>,
    /// Past 4096 terms, how the kernel splits them (docs/runtime.md, "Past
    /// one mask"); absent when they fit one mask.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub layout: Option<LayoutView>,
}

/// The anchored layout of a hook.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LayoutView {
    /// Terms in the hook's own words (not anchored).
    pub own_terms: usize,
    /// The anchors, in window order.
    pub anchors: Vec<AnchorView>,
}

/// One anchor of a hook's layout.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AnchorView {
    /// The anchor dimension.
    pub dimension: String,
    /// `exact` (hash of the value) or `prefix` (longest key in an LPM trie).
    pub kind: String,
    /// Terms it anchors (a term in several groups counts once).
    pub terms: usize,
    /// Its groups.
    pub groups: usize,
    /// Terms one group holds (64 per word of the anchor's window).
    pub group_capacity: usize,
    /// The most terms one anchor key can match (at most `group_capacity`).
    pub largest_value: usize,
}

/// One dimension.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DimensionView {
    /// Field (or relation) name.
    pub name: String,
    /// Kind (`path`, `int`…).
    pub kind: String,
    /// Entries per bundle table (`exact`, `prefix`, `suffix`, `ranges`,
    /// `masks`), only tables that have entries.
    pub entries: BTreeMap<String, usize>,
}

/// One kernel map and its estimated memory.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MapEstimate {
    /// Map name in `policy.bpf.c` (`str_exact`).
    pub map: String,
    /// `hash`, `lpm_trie`, `array`, `percpu_array` or `ringbuf`.
    pub kind: String,
    /// Elements (for `num_lpm`: range prefixes and single values).
    pub entries: u64,
    /// Key bytes (LPM: the data after the `u32 prefixlen`; arrays: 4).
    pub key_bytes: u64,
    /// Value bytes.
    pub value_bytes: u64,
    /// Kernel bytes per element besides key and value (`struct htab_elem`,
    /// `struct lpm_trie_node`; 0 for arrays).
    pub overhead_bytes: u64,
    /// Hash buckets (`pow2(entries) × 16`), 0 for other maps.
    pub bucket_bytes: u64,
    /// Estimate, see the module docs.
    pub bytes: u64,
    /// Upper bound with LPM intermediate nodes.
    pub upper_bytes: u64,
    /// What the count leaves out, when something does.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

fn round8(n: u64) -> u64 {
    n.div_ceil(8) * 8
}

/// A hash map of `entries` elements.
pub fn hash_bytes(entries: u64, key: u64, value: u64) -> u64 {
    if entries == 0 {
        return 0;
    }
    entries * (HTAB_ELEM_BYTES + round8(key) + round8(value))
        + entries.next_power_of_two() * HTAB_BUCKET_BYTES
}

/// An LPM trie of `entries` prefixes with `data` key bytes: (estimate, upper
/// bound with intermediate nodes).
pub fn lpm_bytes(entries: u64, data: u64, value: u64) -> (u64, u64) {
    let node = LPM_NODE_BYTES + data + value;
    (entries * node, (2 * entries).saturating_sub(1) * node)
}

/// An array of `entries` slots.
pub fn array_bytes(entries: u64, value: u64) -> u64 {
    entries * round8(value)
}

/// Entry counts of the kernel maps, as `KernelTables::build` fills them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KernelCounts {
    /// Entries per map name ([`MAPS`]).
    pub maps: BTreeMap<&'static str, u64>,
    /// Per hook with terms: entries it adds per map, and its kernel
    /// dimensions.
    pub hooks: BTreeMap<crate::bundle::Hook, (BTreeMap<&'static str, u64>, usize)>,
    /// `num_lpm` entries of user/group names (resolved on the node).
    pub names: u64,
}

fn is_k8s(name: &str) -> bool {
    name.starts_with("k8s.")
}

/// Distinct masks, as tables.rs's `MaskTable`: bit sets (64-bit words,
/// trailing zero words dropped so that equal sets compare equal). `offset`
/// is the bit of term 0 of the table being modelled (an anchored group's
/// window).
struct Masks {
    seen: HashSet<Vec<u64>>,
    offset: u32,
}

impl Masks {
    fn set(bits: &mut Vec<u64>, bit: u32) {
        let w = (bit / 64) as usize;
        if bits.len() <= w {
            bits.resize(w + 1, 0);
        }
        bits[w] |= 1 << (bit % 64);
    }

    fn insert(&mut self, mut bits: Vec<u64>) -> u64 {
        while bits.last() == Some(&0) {
            bits.pop();
        }
        u64::from(self.seen.insert(bits))
    }

    /// Stores `set`; 1 when it is new.
    fn add(&mut self, set: &TermSet) -> u64 {
        let mut bits = Vec::new();
        for &t in set {
            Self::set(&mut bits, t + self.offset);
        }
        self.insert(bits)
    }

    /// The bits every mask of `dim` in a table of `nt` terms has: its
    /// untested terms, which any value satisfies.
    fn untested(&self, dim: &Dimension, nt: u32) -> Vec<u64> {
        let mut bits = Vec::new();
        let mut tested = dim.tested.iter().peekable();
        for t in 0..nt {
            if tested.next_if(|&&x| x == t).is_none() {
                Self::set(&mut bits, t + self.offset);
            }
        }
        bits
    }

    /// Stores the kernel mask of a dimension's stored set `set`: `untested`
    /// (from [`Masks::untested`]) with the set's bits; 1 when new. Per entry
    /// the mask's words and the set, not the table's terms.
    fn add_dim(&mut self, untested: &[u64], set: &TermSet) -> u64 {
        let mut bits = untested.to_vec();
        for &t in set {
            Self::set(&mut bits, t + self.offset);
        }
        self.insert(bits)
    }
}

/// [`SetAlgebra`] over kernel masks as [`Masks`] keeps them (bits from
/// `offset`), to resolve a dimension's entries parents first as policyd
/// does: per entry its mask's words and its changes, not its whole set.
struct MaskBits {
    offset: u32,
}

impl SetAlgebra for MaskBits {
    type Set = Vec<u64>;

    fn apply(&mut self, base: &Vec<u64>, add: &[u32], remove: &[u32]) -> Vec<u64> {
        let mut bits = base.clone();
        for &t in remove {
            let bit = t + self.offset;
            if let Some(w) = bits.get_mut((bit / 64) as usize) {
                *w &= !(1u64 << (bit % 64));
            }
        }
        for &t in add {
            Masks::set(&mut bits, t + self.offset);
        }
        bits
    }

    fn meet(&mut self, a: &Vec<u64>, b: &Vec<u64>) -> Vec<u64> {
        a.iter().zip(b).map(|(x, y)| x & y).collect()
    }
}

/// The entries `KernelTables::build` stores for `bundle` alone (see the
/// module docs), with no pods known and every user/group name resolved to
/// an id of its own.
pub fn kernel_model(bundle: &PolicyBundle) -> KernelCounts {
    let mut masks = Masks {
        seen: HashSet::new(),
        offset: 0,
    };
    let mut out = KernelCounts::default();
    let mut first = masks.add(&Vec::new());
    for (&hook, table) in &bundle.spec.hooks {
        if table.terms.is_empty() {
            continue;
        }
        let mut n: BTreeMap<&'static str, u64> = BTreeMap::new();
        let mut m = std::mem::take(&mut first);
        n.insert("group_config", 1);
        // Past one mask: the hook's own words and its anchored groups
        // (crate::layout), each with its own tables.
        let layout = crate::layout::plan(hook.as_str(), table, crate::limits::MASK_WORDS)
            .ok()
            .filter(|l| !l.anchors.is_empty());
        let ndims = match &layout {
            None => hook_model(table, &mut masks, &mut n, &mut m, true),
            Some(l) => {
                let own = crate::layout::restrict(table, &l.unanchored, None);
                let ndims = hook_model(&own, &mut masks, &mut n, &mut m, true);
                for anchor in &l.anchors {
                    masks.offset = anchor.window.0 * 64;
                    let map = match anchor.kind {
                        AnchorKind::Exact => "anchor_exact",
                        AnchorKind::Prefix => "anchor_prefix",
                    };
                    let ranges = table.dimensions[&anchor.dimension].kind == DimensionKind::Int;
                    for g in &anchor.groups {
                        let t = crate::layout::restrict(table, &g.terms, anchor.skip());
                        hook_model(&t, &mut masks, &mut n, &mut m, false);
                        *n.entry("group_config").or_default() += 1;
                        for (key, positions) in g.values.iter().chain(&g.prefixes) {
                            // A range key is one LPM entry per aligned block.
                            let entries = match crate::layout::range_blocks(key) {
                                Some(blocks) if ranges => blocks.len() as u64,
                                _ => 1,
                            };
                            *n.entry(map).or_default() += entries;
                            m += masks.add(positions);
                        }
                    }
                }
                masks.offset = 0;
                ndims
            }
        };
        out.names += n.remove("names").unwrap_or(0);
        n.insert("masks", m);
        n.retain(|_, v| *v > 0);
        for (k, v) in &n {
            *out.maps.entry(k).or_default() += v;
        }
        out.hooks.insert(hook, (n, ndims));
    }
    for name in MAPS {
        out.maps.entry(name).or_default();
    }
    out
}

/// One hook of [`kernel_model`]: entries into `n`, new masks into `m`;
/// returns the number of kernel dimensions.
fn hook_model(
    table: &HookTable,
    masks: &mut Masks,
    n: &mut BTreeMap<&'static str, u64>,
    m: &mut u64,
    own: bool,
) -> usize {
    let mut add = |map: &'static str, k: u64| *n.entry(map).or_default() += k;
    let mut ndims = 0;
    // `k8s.*` dimensions and relations between two `k8s.*` fields: one
    // cgroup dimension (runtime/src/k8s/terms.rs).
    let k8s: Vec<&String> = table
        .dimensions
        .iter()
        .filter(|(name, dim)| match &dim.relation {
            Some(rel) => is_k8s(&rel.left) && is_k8s(&rel.right),
            None => is_k8s(name),
        })
        .map(|(name, _)| name)
        .collect();
    // The kernel stores a dense mask per entry: the stored set plus every
    // term that does not test the dimension (`Dimension::full_set`).
    let nt = table.terms.len() as u32;
    for (name, dim) in &table.dimensions {
        if k8s.contains(&name) {
            continue;
        }
        ndims += 1;
        let untested = masks.untested(dim, nt);
        *m += masks.add_dim(&untested, &dim.default) + masks.add_dim(&untested, &dim.absent_set());
        // Entries hold changes from their bases: resolve their masks.
        let with = |set: &TermSet| {
            let mut bits = untested.clone();
            for &t in set {
                Masks::set(&mut bits, t + masks.offset);
            }
            bits
        };
        let (dflt, sd) = (with(&dim.default), dim.suffix_default.as_ref().map(with));
        let resolved = dim.resolve(
            &dim.bases(),
            &mut MaskBits {
                offset: masks.offset,
            },
            &dflt,
            sd.as_ref(),
        );
        if dim.relation.is_some() {
            for bits in resolved.exact {
                add("num_lpm", 1);
                *m += masks.insert(bits);
            }
            continue;
        }
        match dim.kind {
            DimensionKind::Path | DimensionKind::String => {
                for bits in resolved.exact {
                    add("str_exact", 1);
                    *m += masks.insert(bits);
                }
                for bits in resolved.prefix {
                    add("str_prefix", 1);
                    *m += masks.insert(bits);
                }
                if let Some(sd) = sd {
                    *m += masks.insert(sd);
                    for bits in resolved.suffix {
                        add("str_suffix", 1);
                        *m += masks.insert(bits);
                    }
                }
            }
            DimensionKind::Int => {
                let sets = dim.resolve_ranges(
                    &mut MaskBits {
                        offset: masks.offset,
                    },
                    &dflt,
                );
                for (r, bits) in dim.ranges.iter().zip(sets) {
                    *m += masks.insert(bits);
                    add(
                        "num_lpm",
                        crate::lower::range_prefixes(r.lo, r.hi, 64).len() as u64,
                    );
                }
                if dim.resolve.is_some() {
                    for bits in resolved.exact {
                        add("num_lpm", 1);
                        add("names", 1);
                        *m += masks.insert(bits);
                    }
                }
            }
            DimensionKind::Enum | DimensionKind::Bool => {
                for bits in resolved.exact {
                    add("num_lpm", 1);
                    *m += masks.insert(bits);
                }
            }
            DimensionKind::Ip => {
                for bits in resolved.prefix {
                    add("ip_lpm", 1);
                    *m += masks.insert(bits);
                }
            }
            DimensionKind::Caps => {
                for c in &dim.masks {
                    add("caps_table", 1);
                    *m += masks.add_dim(&untested, &c.held) + masks.add_dim(&untested, &c.lacking);
                }
            }
            DimensionKind::Relation => {}
        }
    }
    if !k8s.is_empty() {
        // Outside every pod (all the node knows at compile time): every
        // `k8s.*` field absent. Entries per pod container come on the node.
        ndims += 1;
        let none: BTreeMap<String, &Value> = BTreeMap::new();
        let mut set: TermSet = (0..table.terms.len() as u32).collect();
        for name in &k8s {
            let got = crate::eval::dimension_lookup(name, &table.dimensions[*name], &none, nt);
            set = crate::lower::intersect(&set, &got);
        }
        add("cgroup_exact", 0);
        *m += masks.add(&set);
    }
    let v = &table.verdicts;
    // A group has no mask of all its terms: the anchor value's mask starts it.
    let all: TermSet = if own {
        (0..table.terms.len() as u32).collect()
    } else {
        Vec::new()
    };
    let mut count: TermSet = v.count.values().flatten().copied().collect();
    count.sort_unstable();
    count.dedup();
    for s in [
        &all,
        &v.deny,
        &v.kill,
        &v.allow,
        &v.audit,
        &v.default_deny,
        &v.monitor,
        &count,
    ] {
        *m += masks.add(s);
    }
    ndims
}

/// The estimate of kernel map `name` holding `entries` elements.
pub fn map_estimate(name: &str, entries: u64) -> MapEstimate {
    let (kind, key, value) = match name {
        "masks" => ("hash", 4, MASK_BYTES),
        "str_exact" => ("hash", STR_KEY_BYTES, MASK_ID_BYTES),
        "str_prefix" | "str_suffix" => ("lpm_trie", STR_LPM_DATA_BYTES, MASK_ID_BYTES),
        "num_lpm" => ("lpm_trie", NUM_LPM_DATA_BYTES, MASK_ID_BYTES),
        "ip_lpm" => ("lpm_trie", IP_LPM_DATA_BYTES, MASK_ID_BYTES),
        "cgroup_exact" => ("hash", CGROUP_KEY_BYTES, MASK_ID_BYTES),
        "caps_table" => ("hash", 4, CAPS_ENTRY_BYTES),
        "anchor_exact" => ("hash", STR_KEY_BYTES, ANCHOR_VALUE_BYTES),
        "anchor_prefix" => ("lpm_trie", STR_LPM_DATA_BYTES, ANCHOR_VALUE_BYTES),
        "group_config" => ("hash", 4, GROUP_CONFIG_BYTES),
        "hook_config" => ("array", 4, HOOK_CONFIG_BYTES),
        "active" => ("array", 4, 16),
        "stats" => ("percpu_array", 4, 8),
        _ => ("ringbuf", 0, 0),
    };
    let (overhead_bytes, bucket_bytes, bytes, upper_bytes) = match kind {
        "hash" => {
            let b = hash_bytes(entries, key, value);
            let buckets = if entries > 0 {
                entries.next_power_of_two() * HTAB_BUCKET_BYTES
            } else {
                0
            };
            (HTAB_ELEM_BYTES, buckets, b, b)
        }
        "lpm_trie" => {
            let (b, u) = lpm_bytes(entries, key, value);
            (LPM_NODE_BYTES, 0, b, u)
        }
        "ringbuf" => (0, 0, EVENTS_BYTES, EVENTS_BYTES),
        _ => {
            let b = array_bytes(entries, value);
            (0, 0, b, b)
        }
    };
    let note = match name {
        "cgroup_exact" => {
            Some("one entry per pod container, filled on the node: 0 here".to_string())
        }
        "stats" => Some("per possible CPU".to_string()),
        "events" => Some("ring buffer data pages".to_string()),
        _ => None,
    };
    MapEstimate {
        map: name.to_string(),
        kind: kind.into(),
        entries,
        key_bytes: key,
        value_bytes: value,
        overhead_bytes,
        bucket_bytes,
        bytes,
        upper_bytes,
        note,
    }
}

/// Inspect a (validated) bundle.
pub fn inspect(bundle: &PolicyBundle) -> Inspection {
    let spec = &bundle.spec;
    let location =
        |s: &crate::bundle::SourceLocation| format!("{}:{}:{}", s.file, s.line, s.column);
    // Terms per rule, counted once (not per rule over the hook's terms).
    let mut rule_terms: HashMap<u32, usize> = HashMap::new();
    for table in spec.hooks.values() {
        for t in table.terms.iter().filter(|t| !t.scope) {
            *rule_terms.entry(t.rule).or_default() += 1;
        }
    }
    let rules: Vec<RuleView> = spec
        .rules
        .iter()
        .map(|r| RuleView {
            id: r.id,
            name: format!("{}.{}", r.policy, r.name),
            hook: r.hook.as_str().into(),
            verdict: r.verdict.map(|v| v.as_str().to_string()),
            audit: r.audit,
            severity: r.severity.as_str().into(),
            source: location(&r.source),
            terms: rule_terms.get(&r.id).copied().unwrap_or(0),
        })
        .collect();
    let model = kernel_model(bundle);
    let mut hooks = Vec::new();
    for (hook, table) in &spec.hooks {
        let mut dimensions = Vec::new();
        for (name, dim) in &table.dimensions {
            let mut entries = BTreeMap::new();
            for (t, n) in [
                ("exact", dim.exact.len()),
                ("prefix", dim.prefix.len()),
                ("suffix", dim.suffix.len()),
                ("ranges", dim.ranges.len()),
                ("masks", dim.masks.len()),
            ] {
                if n > 0 {
                    entries.insert(t.to_string(), n);
                }
            }
            dimensions.push(DimensionView {
                name: name.clone(),
                kind: serde_json::to_value(dim.kind)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default(),
                entries,
            });
        }
        let v = &table.verdicts;
        let mut verdicts = BTreeMap::new();
        for (name, set) in [
            ("deny", &v.deny),
            ("kill", &v.kill),
            ("allow", &v.allow),
            ("audit", &v.audit),
            ("defaultDeny", &v.default_deny),
            ("monitor", &v.monitor),
        ] {
            if !set.is_empty() || ["deny", "kill", "allow", "audit"].contains(&name) {
                verdicts.insert(name.to_string(), set.clone());
            }
        }
        for (c, set) in &v.count {
            verdicts.insert(format!("count:{c}"), set.clone());
        }
        let (entries, kernel_dimensions) = model
            .hooks
            .get(hook)
            .map(|(e, d)| (e.iter().map(|(k, v)| (k.to_string(), *v)).collect(), *d))
            .unwrap_or_default();
        let layout = crate::layout::plan(hook.as_str(), table, MASK_WORDS)
            .ok()
            .filter(|l| !l.anchors.is_empty())
            .map(|l| LayoutView {
                own_terms: l.unanchored.len(),
                anchors: l
                    .anchors
                    .iter()
                    .map(|a| AnchorView {
                        dimension: a.dimension.clone(),
                        kind: match a.kind {
                            AnchorKind::Exact => "exact",
                            AnchorKind::Prefix => "prefix",
                        }
                        .into(),
                        terms: a
                            .groups
                            .iter()
                            .flat_map(|g| &g.terms)
                            .collect::<BTreeSet<_>>()
                            .len(),
                        groups: a.groups.len(),
                        group_capacity: (a.window.1 - a.window.0) as usize * 64,
                        largest_value: a
                            .groups
                            .iter()
                            .flat_map(|g| g.values.iter().chain(&g.prefixes).map(|(_, p)| p.len()))
                            .max()
                            .unwrap_or(0),
                    })
                    .collect(),
            });
        hooks.push(HookView {
            hook: hook.as_str().into(),
            terms: table.terms.len(),
            rules: spec.rules.iter().filter(|r| r.hook == *hook).count(),
            dimensions,
            verdicts,
            kernel_dimensions,
            entries,
            layout,
        });
    }
    let mut maps: Vec<MapEstimate> = MAPS
        .iter()
        .map(|name| map_estimate(name, model.maps[name]))
        .collect();
    if model.names > 0 {
        maps[4].note = Some(format!(
            "{} user/group names counted as resolved on the node to ids of their own",
            model.names
        ));
    }
    let fixed_maps = vec![
        map_estimate("hook_config", HOOK_CONFIG_SLOTS),
        map_estimate("active", 1),
        map_estimate("stats", STATS_COUNT),
        map_estimate("events", 0),
    ];
    let bytes: u64 = maps.iter().map(|m| m.bytes).sum();
    Inspection {
        name: bundle.metadata.name.clone(),
        digest: spec.digest.clone(),
        compiler: spec.compiler.clone(),
        policies: spec
            .policies
            .iter()
            .map(|p| PolicyView {
                name: p.name.clone(),
                mode: p.mode.as_str().into(),
                source: p.source.clone(),
                description: p.description.clone(),
            })
            .collect(),
        scopes: spec
            .scopes
            .iter()
            .map(|s| ScopeView {
                id: s.id,
                name: format!("{}.{}", s.policy, s.name),
                hook: s.hook.as_str().into(),
                source: location(&s.source),
            })
            .collect(),
        upper_bytes: maps.iter().map(|m| m.upper_bytes).sum(),
        bytes_per_rule: if rules.is_empty() {
            0
        } else {
            bytes / rules.len() as u64
        },
        bytes,
        fixed_bytes: fixed_maps.iter().map(|m| m.bytes).sum(),
        fixed_maps,
        maps,
        rules,
        hooks,
    }
}

/// Runs of a term set shown before the human report says how many more
/// there are (the JSON report lists every id).
const SHOWN_RUNS: usize = 32;

/// A term set for the human report: runs of three or more consecutive ids
/// as `a-b`, at most [`SHOWN_RUNS`] runs, then how many ids and runs were
/// left out (a large hook's verdict sets hold thousands of ids).
fn set(s: &TermSet) -> String {
    let mut runs: Vec<(u32, u32)> = Vec::new();
    for &t in s {
        match runs.last_mut() {
            Some((_, hi)) if *hi + 1 == t => *hi = t,
            _ => runs.push((t, t)),
        }
    }
    let show = |&(lo, hi): &(u32, u32)| match hi - lo {
        0 => lo.to_string(),
        1 => format!("{lo}, {hi}"),
        _ => format!("{lo}-{hi}"),
    };
    let mut items: Vec<String> = runs.iter().take(SHOWN_RUNS).map(show).collect();
    if runs.len() > SHOWN_RUNS {
        let rest = &runs[SHOWN_RUNS..];
        let ids: u32 = rest.iter().map(|(lo, hi)| hi - lo + 1).sum();
        items.push(format!(
            "… {ids} more ids in {} more runs ({} in all; `--format json` lists them)",
            rest.len(),
            s.len()
        ));
    }
    format!("[{}]", items.join(", "))
}

/// One map line of the human report.
fn map_line(m: &MapEstimate) -> String {
    let overhead = if m.overhead_bytes > 0 {
        format!("{} + ", m.overhead_bytes)
    } else {
        String::new()
    };
    let buckets = if m.bucket_bytes > 0 {
        format!(" + buckets {}", m.bucket_bytes)
    } else {
        String::new()
    };
    let mut o = match m.kind.as_str() {
        "ringbuf" => format!("    {} ({}): {} bytes", m.map, m.kind, m.bytes),
        // An array stores values only: its index is not a stored key.
        "array" | "percpu_array" => format!(
            "    {} ({}): {} × value {} = {} bytes",
            m.map, m.kind, m.entries, m.value_bytes, m.bytes
        ),
        _ => format!(
            "    {} ({}): {} × ({overhead}key {} + value {}){buckets} = {} bytes",
            m.map, m.kind, m.entries, m.key_bytes, m.value_bytes, m.bytes
        ),
    };
    if m.upper_bytes != m.bytes {
        o.push_str(&format!(" (≤ {} with intermediate nodes)", m.upper_bytes));
    }
    if let Some(note) = &m.note {
        o.push_str(&format!("; {note}"));
    }
    o.push('\n');
    o
}

impl Inspection {
    /// The human report.
    pub fn human(&self) -> String {
        let mut o = String::new();
        o.push_str(&format!("bundle {}\n", self.name));
        o.push_str(&format!("digest {}\n", self.digest));
        o.push_str(&format!("compiler {}\n", self.compiler));
        o.push_str(&format!("\npolicies ({}):\n", self.policies.len()));
        for p in &self.policies {
            o.push_str(&format!("  {} ({}) {}", p.name, p.mode, p.source));
            if !p.description.is_empty() {
                o.push_str(&format!(" - {}", p.description));
            }
            o.push('\n');
        }
        o.push_str(&format!("\nrules ({}):\n", self.rules.len()));
        for r in &self.rules {
            o.push_str(&format!(
                "  #{} {} on {}: {}, {}, severity {}, {} term{}, {}\n",
                r.id,
                r.name,
                r.hook,
                r.verdict.as_deref().unwrap_or("no verdict"),
                if r.audit { "audit" } else { "no audit" },
                r.severity,
                r.terms,
                if r.terms == 1 { "" } else { "s" },
                r.source
            ));
        }
        if !self.scopes.is_empty() {
            o.push_str(&format!("\nscopes ({}):\n", self.scopes.len()));
            for s in &self.scopes {
                o.push_str(&format!(
                    "  #{} {} on {}, {}\n",
                    s.id, s.name, s.hook, s.source
                ));
            }
        }
        for h in &self.hooks {
            let n = |n: usize, what: &str| format!("{n} {what}{}", if n == 1 { "" } else { "s" });
            o.push_str(&format!(
                "\nhook {}: {}, {}\n",
                h.hook,
                n(h.terms, "term"),
                n(h.rules, "rule")
            ));
            o.push_str("  dimensions:\n");
            for d in &h.dimensions {
                let entries: Vec<String> =
                    d.entries.iter().map(|(t, n)| format!("{t} {n}")).collect();
                o.push_str(&format!(
                    "    {} ({}): {}\n",
                    d.name,
                    d.kind,
                    if entries.is_empty() {
                        "default only".to_string()
                    } else {
                        entries.join(", ")
                    }
                ));
            }
            o.push_str("  verdicts:\n");
            for (name, s) in &h.verdicts {
                o.push_str(&format!("    {name}: {}\n", set(s)));
            }
            let entries: Vec<String> = h
                .entries
                .iter()
                .map(|(map, n)| {
                    if map == "masks" {
                        format!("{map} {n} new")
                    } else {
                        format!("{map} {n}")
                    }
                })
                .collect();
            o.push_str(&format!(
                "  kernel: {}, entries: {}\n",
                n(h.kernel_dimensions, "dimension"),
                if entries.is_empty() {
                    "none".to_string()
                } else {
                    entries.join(", ")
                }
            ));
            if let Some(l) = &h.layout {
                o.push_str(&format!(
                    "  layout: {} own, the rest anchored\n",
                    n(l.own_terms, "term")
                ));
                for a in &l.anchors {
                    o.push_str(&format!(
                        "    {} anchor `{}`: {} in {} of at most {} terms (largest key: {})\n",
                        a.kind,
                        a.dimension,
                        n(a.terms, "term"),
                        n(a.groups, "group"),
                        a.group_capacity,
                        n(a.largest_value, "term")
                    ));
                }
            }
        }
        o.push_str("\nestimated kernel memory (one table slot):\n");
        for m in &self.maps {
            o.push_str(&map_line(m));
        }
        o.push_str(&format!("    total: {} bytes\n", self.bytes));
        o.push_str("fixed maps (any bundle):\n");
        for m in &self.fixed_maps {
            o.push_str(&map_line(m));
        }
        o.push_str(&format!(
            "\nestimated kernel memory: {} bytes (≤ {}), {} bytes per rule; fixed maps {} bytes\n",
            self.bytes, self.upper_bytes, self.bytes_per_rule, self.fixed_bytes
        ));
        o.push_str("(model: docs/bundle.md, \"Kernel memory\")\n");
        o
    }

    /// The JSON report (the [`Inspection`] fields, camelCase).
    pub fn json(&self) -> String {
        let mut s = serde_json::to_string_pretty(self).expect("inspection serialises");
        s.push('\n');
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formulas() {
        // 3 str_exact entries: 3 × (48 + round8(260) + round8(4)) + 4 buckets × 16.
        assert_eq!(hash_bytes(3, STR_KEY_BYTES, 4), 3 * (48 + 264 + 8) + 64);
        assert_eq!(hash_bytes(0, 256, 32), 0);
        assert_eq!(lpm_bytes(2, 12, 4), (2 * 40, 3 * 40));
        assert_eq!(array_bytes(2, 1600), 3200);
        assert_eq!(HOOK_CONFIG_BYTES, 104);
        assert_eq!(GROUP_CONFIG_BYTES, 1568);
    }

    fn bundle(text: &str) -> PolicyBundle {
        crate::compile::evaluation_bundle_of(&format!("policy p {{}}\n{text}\n"))
            .unwrap_or_else(|e| panic!("{e:?}"))
    }

    #[test]
    fn counts_by_hand() {
        let b = bundle(
            "rule a on exec { when process.binary in { \"/a\", \"/b\" } audit }\n\
             rule p on exec { when process.binary startswith \"/tmp/\" deny }\n\
             rule c on connect { when net.dport in 1..1023 deny }",
        );
        let k = kernel_model(&b);
        // exec: terms 0 (rule a), 1 (rule p). process.binary: "/a", "/b"
        // exact → {0} each; prefix "/tmp/" → {1}; default {} (nothing else
        // matches).
        // connect: term 0; net.dport 1..1023 → 10 prefixes of a 64-bit value
        // (1, 2–3, 4–7, …, 512–1023), default {}.
        assert_eq!(k.maps["str_exact"], 2);
        assert_eq!(k.maps["str_prefix"], 1);
        assert_eq!(k.maps["str_suffix"], 0);
        assert_eq!(k.maps["num_lpm"], 10);
        assert_eq!(k.maps["ip_lpm"], 0);
        assert_eq!(k.maps["caps_table"], 0);
        // Masks: {} (id 0, also every default/absent and empty verdict),
        // {0} (exact entries, exec audit, connect's entries, all and deny),
        // {1} (prefix entry, exec deny), {0, 1} (exec's all terms).
        assert_eq!(k.maps["masks"], 4);
        let exec = &k.hooks[&crate::bundle::Hook::Exec];
        assert_eq!(exec.0["masks"], 4);
        assert_eq!(exec.1, 1);
        let connect = &k.hooks[&crate::bundle::Hook::Connect];
        assert_eq!(connect.0.get("masks"), None, "{connect:?}");
        assert_eq!(connect.0["num_lpm"], 10);
        let i = inspect(&b);
        // masks: 4 × (48 + 8 + 520) + 4 × 16; str_exact 2 × (48 + 264 + 8)
        // + 2 × 16; str_prefix 24 + 256 + 4; num_lpm 10 × (24 + 12 + 4);
        // group_config (one per hook) 2 × (48 + 8 + 1568) + 2 × 16.
        assert_eq!(k.maps["group_config"], 2);
        let expected = 4 * 576 + 64 + 2 * 320 + 32 + 284 + 400 + 2 * 1624 + 32;
        assert_eq!(i.bytes, expected);
        assert_eq!(i.bytes_per_rule, expected / 3);
    }

    #[test]
    fn k8s_dimensions_are_one_cgroup_dimension() {
        let b = bundle(
            "rule k on exec { when k8s.namespace in { \"a\", \"b\" } and k8s.pod == \"x\" \
             and process.binary == \"/bin/sh\" deny }",
        );
        let k = kernel_model(&b);
        let exec = &k.hooks[&crate::bundle::Hook::Exec];
        // process.binary and the cgroup dimension.
        assert_eq!(exec.1, 2);
        assert_eq!(k.maps["str_exact"], 1);
        assert_eq!(k.maps["cgroup_exact"], 0);
        // {} and {0}: outside pods nothing matches, as with the defaults.
        assert_eq!(k.maps["masks"], 2);
    }

    #[test]
    fn human_term_sets_collapse_runs_and_say_what_they_leave_out() {
        assert_eq!(set(&vec![]), "[]");
        assert_eq!(set(&vec![0, 1, 2, 4, 6, 7]), "[0-2, 4, 6, 7]");
        // 100 runs of one id each and a run of 1,000: 32 runs shown.
        let mut big: TermSet = (0..100).map(|i| i * 2).collect();
        big.extend(1000..2000);
        let s = set(&big);
        assert!(s.starts_with("[0, 2, 4,"), "{s}");
        assert!(
            s.ends_with(
                "… 1068 more ids in 69 more runs (1100 in all; `--format json` lists them)]"
            ),
            "{s}"
        );
    }
}
