//! `policyc inspect BUNDLE`: what a bundle holds and what it costs the kernel.
//!
//! Prints the bundle's name, digest, policies and rules; per hook its terms,
//! dimensions with the entry count of each table, verdict masks, and an
//! **estimated kernel memory** per map, with the model below (also in
//! `docs/bundle.md`, "Kernel memory").
//!
//! ## Memory model
//!
//! `W` = [`MASK_WORDS`] × 8 bytes, the value of every table entry (a term
//! mask). Sizes are for a 64-bit kernel (6.x) and count the map elements only:
//! not the `struct bpf_map` header of each map, nor slab rounding.
//!
//! - **Hash map** (`BPF_MAP_TYPE_HASH`), exact entries: each element is a
//!   `struct htab_elem` (kernel/bpf/hashtab.c: `hash_node`/free-list union
//!   16 bytes, `lru_node`/`ptr_to_pptr` union 24, `u32 hash`, key aligned to
//!   8: [`HTAB_ELEM_BYTES`] = 48) followed by the key and the value, each
//!   rounded up to 8 bytes; plus one `struct bucket` (`hlist_nulls_head` and a
//!   spinlock, [`HTAB_BUCKET_BYTES`] = 16) per bucket, the entry count rounded
//!   up to a power of two:
//!   `entries × (48 + round8(key) + round8(W)) + pow2(entries) × 16`.
//!   A preallocated map also holds one spare element per possible CPU, not
//!   counted.
//! - **LPM trie** (`BPF_MAP_TYPE_LPM_TRIE`), prefix, suffix, CIDR and range
//!   entries: each entry is a `struct lpm_trie_node` (kernel/bpf/lpm_trie.c:
//!   `child[2]`, `u32 prefixlen`, `u32 flags`: [`LPM_NODE_BYTES`] = 24)
//!   followed by the key's data (the key less its `u32 prefixlen`) and the
//!   value: `entries × (24 + data + W)`. The trie also allocates up to
//!   `entries − 1` intermediate nodes of the same size where two prefixes
//!   branch; `upperBytes` counts them, `bytes` does not.
//! - **Array** (`BPF_MAP_TYPE_ARRAY`), enum, bool, relation and capability
//!   tables and the per-hook configuration: `entries × round8(value)`.
//!
//! Keys: paths 256 bytes (`PATH_KEY_LEN`); strings the field's kernel buffer
//! (its longest value + NUL); uids, gids and login uids 4 bytes, ports 2
//! (ranges as LPM prefixes over the big-endian key, see
//! [`crate::lower::range_prefixes`]); names resolved on the node to 4-byte
//! ids; IPv4 4, IPv6 16. Enum and bool arrays have one slot per possible
//! value; a relation has two (false, true); a capability table one
//! `(u64 mask, held, lacking)` per distinct mask. The configuration array of
//! a hook holds each dimension's default masks (`default`, `suffixDefault`,
//! `absent`) and the verdict masks (`deny`, `kill`, `allow`, `audit`, and
//! `defaultDeny`, `monitor` and each counter when present).
//!
//! `bytesPerRule` is the estimate over every hook divided by the number of
//! rules.

use std::collections::BTreeMap;

use policy_dsl::schema::{Field, FieldType};
use serde::Serialize;

use crate::bundle::{Dimension, DimensionKind, HookTable, PolicyBundle, TermSet};
use crate::limits::{MASK_WORDS, PATH_KEY_LEN};

/// Bytes of a `struct htab_elem` before its key, on a 64-bit kernel.
pub const HTAB_ELEM_BYTES: u64 = 48;
/// Bytes of a hash map's `struct bucket`.
pub const HTAB_BUCKET_BYTES: u64 = 16;
/// Bytes of a `struct lpm_trie_node` before its data.
pub const LPM_NODE_BYTES: u64 = 24;
/// Bytes of a term mask, the value of every table entry.
pub const MASK_BYTES: u64 = (MASK_WORDS * 8) as u64;

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
    /// Estimated kernel memory of every hook's maps, in bytes.
    pub bytes: u64,
    /// Upper bound, LPM intermediate nodes included.
    pub upper_bytes: u64,
    /// `bytes` / number of rules (0 without rules).
    pub bytes_per_rule: u64,
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
    /// The hook's maps with their estimated memory.
    pub maps: Vec<MapEstimate>,
    /// Sum of the maps' `bytes`.
    pub bytes: u64,
    /// Sum of the maps' `upperBytes`.
    pub upper_bytes: u64,
}

/// One dimension.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DimensionView {
    /// Field (or relation) name.
    pub name: String,
    /// Kind (`path`, `int`…).
    pub kind: String,
    /// Entries per table (`exact`, `prefix`, `suffix`, `ranges`, `masks`),
    /// only tables that have entries.
    pub entries: BTreeMap<String, usize>,
}

/// One kernel map and its estimated memory.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MapEstimate {
    /// `DIMENSION.TABLE` (`process.binary.exact`), or `config`.
    pub map: String,
    /// `hash`, `lpm_trie` or `array`.
    pub kind: String,
    /// Elements (for ranges: LPM prefixes; for arrays: slots).
    pub entries: u64,
    /// Key bytes (LPM: the data after the `u32 prefixlen`; array: 4).
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

/// The field a dimension name (`k8s.label["app"]`) is about.
pub fn dimension_field(name: &str) -> Option<Field> {
    Field::from_name(name.split('[').next().unwrap_or(name))
}

/// Key bytes of the field's exact hash map and LPM data.
fn key_bytes(field: Option<Field>) -> u64 {
    match field.map(|f| f.info().ty) {
        Some(FieldType::Str { max }) => max as u64 + 1,
        Some(FieldType::Port) => 2,
        Some(FieldType::Uid | FieldType::Gid | FieldType::LoginUid) => 4,
        _ => PATH_KEY_LEN as u64,
    }
}

fn map(
    name: String,
    kind: &str,
    entries: u64,
    key: u64,
    value: u64,
    bytes: (u64, u64),
) -> MapEstimate {
    let (overhead_bytes, bucket_bytes) = match kind {
        "hash" if entries > 0 => (
            HTAB_ELEM_BYTES,
            entries.next_power_of_two() * HTAB_BUCKET_BYTES,
        ),
        "lpm_trie" => (LPM_NODE_BYTES, 0),
        _ => (0, 0),
    };
    MapEstimate {
        map: name,
        kind: kind.into(),
        entries,
        key_bytes: key,
        value_bytes: value,
        overhead_bytes,
        bucket_bytes,
        bytes: bytes.0,
        upper_bytes: bytes.1,
    }
}

/// The maps of one dimension.
pub fn dimension_maps(name: &str, dim: &Dimension) -> Vec<MapEstimate> {
    let w = MASK_BYTES;
    let field = dimension_field(name);
    let key = key_bytes(field);
    let mut out = Vec::new();
    let hash = |table: &str, n: usize, key: u64| {
        let n = n as u64;
        let b = hash_bytes(n, key, w);
        map(format!("{name}.{table}"), "hash", n, key, w, (b, b))
    };
    let lpm = |table: &str, n: u64, data: u64| {
        map(
            format!("{name}.{table}"),
            "lpm_trie",
            n,
            data,
            w,
            lpm_bytes(n, data, w),
        )
    };
    let array = |table: &str, n: u64, value: u64| {
        let b = array_bytes(n, value);
        map(format!("{name}.{table}"), "array", n, 4, value, (b, b))
    };
    match dim.kind {
        DimensionKind::Path | DimensionKind::String => {
            if !dim.exact.is_empty() {
                out.push(hash("exact", dim.exact.len(), key));
            }
            if !dim.prefix.is_empty() {
                out.push(lpm("prefix", dim.prefix.len() as u64, key));
            }
            if !dim.suffix.is_empty() {
                out.push(lpm("suffix", dim.suffix.len() as u64, key));
            }
        }
        DimensionKind::Int => {
            let bits = if key == 2 { 16 } else { 32 };
            let prefixes: u64 = dim
                .ranges
                .iter()
                .map(|r| {
                    let hi = r.hi.min((1u64 << bits) - 1);
                    if r.lo > hi {
                        0
                    } else {
                        crate::lower::range_prefixes(r.lo, hi, bits).len() as u64
                    }
                })
                .sum();
            if prefixes > 0 {
                out.push(lpm("ranges", prefixes, key));
            }
            if !dim.exact.is_empty() {
                // Names, resolved on the node to 4-byte ids.
                out.push(hash("exact", dim.exact.len(), 4));
            }
        }
        DimensionKind::Ip => {
            let v6 = dim.prefix.iter().filter(|e| e.value.contains(':')).count() as u64;
            let v4 = dim.prefix.len() as u64 - v6;
            if v4 > 0 {
                out.push(lpm("prefix4", v4, 4));
            }
            if v6 > 0 {
                out.push(lpm("prefix6", v6, 16));
            }
        }
        DimensionKind::Enum | DimensionKind::Bool => {
            let slots = match field.map(|f| f.info().ty) {
                Some(FieldType::Enum(names)) => names.len() as u64,
                _ => 2,
            };
            out.push(array("values", slots, w));
        }
        DimensionKind::Relation => out.push(array("values", 2, w)),
        DimensionKind::Caps => out.push(array("masks", dim.masks.len() as u64, 8 + 2 * w)),
    }
    out
}

/// Number of masks in the hook's configuration array.
fn config_masks(table: &HookTable) -> u64 {
    let defaults: u64 = table
        .dimensions
        .values()
        .map(|d| 1 + d.suffix_default.is_some() as u64 + d.absent.is_some() as u64)
        .sum();
    let v = &table.verdicts;
    let verdicts =
        4 + !v.default_deny.is_empty() as u64 + !v.monitor.is_empty() as u64 + v.count.len() as u64;
    defaults + verdicts
}

/// Inspect a (validated) bundle.
pub fn inspect(bundle: &PolicyBundle) -> Inspection {
    let spec = &bundle.spec;
    let location =
        |s: &crate::bundle::SourceLocation| format!("{}:{}:{}", s.file, s.line, s.column);
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
            terms: spec
                .hooks
                .get(&r.hook)
                .map(|t| {
                    t.terms
                        .iter()
                        .filter(|t| !t.scope && t.rule == r.id)
                        .count()
                })
                .unwrap_or(0),
        })
        .collect();
    let mut hooks = Vec::new();
    for (hook, table) in &spec.hooks {
        let mut maps = Vec::new();
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
            maps.extend(dimension_maps(name, dim));
        }
        let n = config_masks(table);
        let b = array_bytes(n, MASK_BYTES);
        maps.push(map("config".into(), "array", n, 4, MASK_BYTES, (b, b)));
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
        hooks.push(HookView {
            hook: hook.as_str().into(),
            terms: table.terms.len(),
            rules: spec.rules.iter().filter(|r| r.hook == *hook).count(),
            dimensions,
            verdicts,
            bytes: maps.iter().map(|m| m.bytes).sum(),
            upper_bytes: maps.iter().map(|m| m.upper_bytes).sum(),
            maps,
        });
    }
    let bytes: u64 = hooks.iter().map(|h| h.bytes).sum();
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
        upper_bytes: hooks.iter().map(|h| h.upper_bytes).sum(),
        bytes_per_rule: if rules.is_empty() {
            0
        } else {
            bytes / rules.len() as u64
        },
        bytes,
        rules,
        hooks,
    }
}

fn set(s: &TermSet) -> String {
    let items: Vec<String> = s.iter().map(u32::to_string).collect();
    format!("[{}]", items.join(", "))
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
            o.push_str("  estimated kernel memory:\n");
            for m in &h.maps {
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
                // An array stores values only: its index is not a stored key.
                let per_entry = if m.kind == "array" {
                    format!("value {}", m.value_bytes)
                } else {
                    format!("({overhead}key {} + value {})", m.key_bytes, m.value_bytes)
                };
                o.push_str(&format!(
                    "    {} ({}): {} × {per_entry}{buckets} = {} bytes",
                    m.map, m.kind, m.entries, m.bytes
                ));
                if m.upper_bytes != m.bytes {
                    o.push_str(&format!(" (≤ {} with intermediate nodes)", m.upper_bytes));
                }
                o.push('\n');
            }
            o.push_str(&format!("    total: {} bytes\n", h.bytes));
        }
        o.push_str(&format!(
            "\nestimated kernel memory: {} bytes (≤ {}), {} bytes per rule\n",
            self.bytes, self.upper_bytes, self.bytes_per_rule
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
        // 3 paths: 3 × (48 + 256 + 32) + 4 buckets × 16.
        assert_eq!(hash_bytes(3, 256, 32), 3 * 336 + 64);
        assert_eq!(hash_bytes(0, 256, 32), 0);
        assert_eq!(lpm_bytes(2, 4, 32), (2 * 60, 3 * 60));
        assert_eq!(array_bytes(2, 32), 64);
        assert_eq!(key_bytes(dimension_field("k8s.label[\"app\"]")), 64);
        assert_eq!(key_bytes(dimension_field("process.name")), 16);
    }
}
