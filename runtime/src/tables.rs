//! Turning bundles' hook tables into the contents of the kernel maps.
//!
//! Pure: no kernel access, so it is unit-tested here and the loader only
//! copies the result into the maps (see `bpf-templates/include/policy_abi.h`
//! and docs/runtime.md "Kernel tables").
//!
//! Every dimension of a bundle becomes one kernel dimension with its own key
//! namespace in the shared tables; every term set becomes a *mask id*, with
//! equal masks stored once. With several bundles (`--bundle-dir`) each
//! bundle's terms take a contiguous range of the hook's bits (a *part*), and
//! each part keeps its own dimensions: a part's dimension constrains only the
//! part's terms (the other parts' bits are set in all its masks), so the AND
//! over every dimension gives, in each part's range, exactly that bundle's
//! matched terms.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use ipnet::IpNet;
use policy_compiler::bundle::{
    Dimension, DimensionKind, Entry, Hook, HookTable, Resolve, SetAlgebra, TermSet,
};
use policy_compiler::lower::range_prefixes;
use policy_dsl::schema::{Field, FieldType};

use policy_compiler::layout::{self, AnchorKind, AnchorLayout, HookLayout, LayoutError};

use crate::abi::{
    dim_kind, field_index, rel_op, table_bits, AnchorConfig, AnchorValue, CapsEntry, CgroupKey,
    DimConfig, GroupConfig, HookConfig, IpLpmKey, Mask, NumLpmKey, StrKey, StrLpmKey, FIELD_CGROUP,
    MASK_WORDS, MAX_ANCHORS, MAX_CAPS_ENTRIES, MAX_DIMS, PATH_KEY_LEN, STR_LPM_LEN,
};
use crate::k8s::PodIndex;

/// One bundle's table of a hook and where its terms start among the hook's
/// merged terms (see `crate::merge`).
#[derive(Debug, Clone, Copy)]
pub struct Part<'a> {
    /// The bundle's hook table.
    pub table: &'a HookTable,
    /// Merged id of the part's term 0. When every part fits the hook's own
    /// words, also the bit of its term 0 there.
    pub offset: u32,
}

/// Node-side name resolution for `user.*`/`cred.*` ids written as names.
pub trait Names {
    /// The uid of user `name` on this node.
    fn uid(&self, name: &str) -> Option<u32>;
    /// The gid of group `name` on this node.
    fn gid(&self, name: &str) -> Option<u32>;
}

/// The node's passwd and group databases (`getpwnam_r`, `getgrnam_r`).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemNames;

impl Names for SystemNames {
    fn uid(&self, name: &str) -> Option<u32> {
        let c = std::ffi::CString::new(name).ok()?;
        let mut buf = vec![0 as libc::c_char; 16384];
        let mut pw: libc::passwd = unsafe { std::mem::zeroed() };
        let mut out: *mut libc::passwd = std::ptr::null_mut();
        // SAFETY: every pointer is valid for the call; `buf` outlives it.
        let rc =
            unsafe { libc::getpwnam_r(c.as_ptr(), &mut pw, buf.as_mut_ptr(), buf.len(), &mut out) };
        (rc == 0 && !out.is_null()).then_some(pw.pw_uid)
    }

    fn gid(&self, name: &str) -> Option<u32> {
        let c = std::ffi::CString::new(name).ok()?;
        let mut buf = vec![0 as libc::c_char; 16384];
        let mut gr: libc::group = unsafe { std::mem::zeroed() };
        let mut out: *mut libc::group = std::ptr::null_mut();
        // SAFETY: as in `uid`.
        let rc =
            unsafe { libc::getgrnam_r(c.as_ptr(), &mut gr, buf.as_mut_ptr(), buf.len(), &mut out) };
        (rc == 0 && !out.is_null()).then_some(gr.gr_gid)
    }
}

/// The kernel maps' contents for a set of bundles.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct KernelTables {
    /// `hook_config` values of the hooks that have terms; every other hook
    /// gets a config with `has_terms == 0`.
    pub hooks: BTreeMap<Hook, HookConfig>,
    /// Masks by id (`masks`). Id 0 is the empty mask.
    pub masks: Vec<Mask>,
    /// `str_exact` entries.
    pub str_exact: Vec<(StrKey, u32)>,
    /// `str_prefix` entries: (prefix length in bits, key data, mask id).
    pub str_prefix: Vec<(u32, StrLpmKey, u32)>,
    /// `str_suffix` entries, as `str_prefix` over reversed strings.
    pub str_suffix: Vec<(u32, StrLpmKey, u32)>,
    /// `num_lpm` entries.
    pub num_lpm: Vec<(u32, NumLpmKey, u32)>,
    /// `ip_lpm` entries.
    pub ip_lpm: Vec<(u32, IpLpmKey, u32)>,
    /// `cgroup_exact` entries.
    pub cgroup_exact: Vec<(CgroupKey, u32)>,
    /// `caps_table` entries, by index.
    pub caps: Vec<CapsEntry>,
    /// `anchor_exact` entries.
    pub anchor_exact: Vec<(StrKey, AnchorValue)>,
    /// `anchor_prefix` entries: (prefix length in bits, key data, value).
    pub anchor_prefix: Vec<(u32, StrLpmKey, AnchorValue)>,
    /// `group_config` values, by key: each hook's own dimensions
    /// ([`HookConfig::group`]) and every anchored group's.
    pub groups: Vec<GroupConfig>,
    /// What the bits of an event stand for.
    pub bits: EventBits,
    /// What name resolution did that an operator should know (a name not
    /// found on this node, a name whose id is also tested as a number).
    pub notes: Vec<String>,
}

/// What the matched bits of an event (`policy_event.matched` and
/// `.groups`) stand for: merged term ids (see `crate::merge`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EventBits {
    /// Per hook, the merged term id of each bit of its own words (bits past
    /// the end stand for nothing). A hook missing here maps bit `b` to term
    /// `b` (tables without anchors).
    pub own_terms: BTreeMap<Hook, Vec<u32>>,
    /// Per `group_config` key: the first bit of the group's window and the
    /// merged term id of each of its positions (empty for a hook's own group).
    pub group_terms: Vec<(u32, Vec<u32>)>,
}

impl EventBits {
    /// The merged term ids of an event's matched bits: the hook's own words,
    /// and the window of each group the event names (`groups`: per anchor,
    /// `group_config` key + 1, or 0), ascending and without duplicates.
    pub fn terms(&self, hook: Hook, matched: &Mask, groups: &[u32; MAX_ANCHORS]) -> TermSet {
        let bits = policy_compiler::bundle::mask_terms(matched);
        let Some(own) = self.own_terms.get(&hook) else {
            return bits;
        };
        let mut out: TermSet = bits
            .iter()
            .filter_map(|&b| own.get(b as usize).copied())
            .collect();
        for &g in groups.iter().filter(|&&g| g != 0) {
            if let Some((start, terms)) = self.group_terms.get(g as usize - 1) {
                out.extend(
                    bits.iter()
                        .filter(|&&b| b >= *start)
                        .filter_map(|&b| terms.get((b - start) as usize).copied()),
                );
            }
        }
        out.sort_unstable();
        out.dedup();
        out
    }
}

/// Why bundles cannot be loaded into this runtime's kernel tables.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum TablesError {
    /// The bundle tests a dimension the kernel programs cannot supply.
    #[error("dimension `{field}` of hook `{hook}` is not supported by this policyd: {why}")]
    #[diagnostic(
        code(policyd::unsupported_dimension),
        help("upgrade policyd or recompile the bundle with a matching policyc")
    )]
    UnsupportedDimension {
        /// The hook.
        hook: &'static str,
        /// The dimension's name.
        field: String,
        /// Why.
        why: String,
    },
    /// A hook tests more dimensions than the kernel configuration holds.
    #[error("hook `{hook}` tests {count} dimensions, the kernel holds at most {max}")]
    #[diagnostic(
        code(policyd::too_many_dimensions),
        help("split the policies over fewer bundles, or test fewer distinct fields per hook")
    )]
    TooManyDimensions {
        /// The hook.
        hook: &'static str,
        /// Dimensions needed.
        count: usize,
        /// [`MAX_DIMS`] (for strings: 256 over all hooks).
        max: usize,
    },
    /// The bundle has rules for a hook this policyd has no kernel program
    /// for (`module_load`): they would never be decided.
    #[error("this policyd has no kernel program for hook `{hook}`: its rules would never apply")]
    #[diagnostic(
        code(policyd::no_program),
        help("`policyc compile` refuses such rules; the bundle was built another way, or by a newer policyc")
    )]
    NoProgram {
        /// The hook.
        hook: &'static str,
    },
    /// A bundle's terms have no layout in the words left to it.
    #[error(transparent)]
    #[diagnostic(transparent)]
    Layout(#[from] LayoutError),
    /// A value does not fit a map key (the compiler never writes one).
    #[error("`{value}` is {len} bytes, longer than the kernel key ({max} bytes)")]
    #[diagnostic(code(policyd::path_too_long))]
    PathTooLong {
        /// The value.
        value: String,
        /// Its length in bytes.
        len: usize,
        /// Longest value that fits.
        max: usize,
    },
}

/// Masks, deduplicated, by id.
struct MaskTable {
    masks: Vec<Mask>,
    ids: HashMap<Mask, u32>,
}

impl MaskTable {
    fn new() -> MaskTable {
        let mut t = MaskTable {
            masks: Vec::new(),
            ids: HashMap::new(),
        };
        t.id([0; MASK_WORDS]);
        t
    }

    fn id(&mut self, m: Mask) -> u32 {
        if let Some(&id) = self.ids.get(&m) {
            return id;
        }
        let id = self.masks.len() as u32;
        self.masks.push(m);
        self.ids.insert(m, id);
        id
    }
}

fn set_bit(m: &mut Mask, bit: u32) {
    m[bit as usize / 64] |= 1u64 << (bit % 64);
}

fn clear_bit(m: &mut Mask, bit: u32) {
    m[bit as usize / 64] &= !(1u64 << (bit % 64));
}

/// [`SetAlgebra`] over interned kernel masks (a set is its mask's id): a
/// dimension's entries are changes from their bases (bundle schema 3), so
/// each entry's mask is its base's with the entry's bits cleared and set,
/// parents first; per entry a mask's words and its changes, whatever the
/// number of terms above it.
struct MaskIds<'m> {
    masks: &'m mut MaskTable,
    /// The part's first bit: term `t` is bit `offset + t`.
    offset: u32,
}

impl MaskIds<'_> {
    fn changed(&self, mut m: Mask, add: &[u32], remove: &[u32]) -> Mask {
        for &t in remove {
            clear_bit(&mut m, self.offset + t);
        }
        for &t in add {
            set_bit(&mut m, self.offset + t);
        }
        m
    }
}

impl SetAlgebra for MaskIds<'_> {
    type Set = u32;

    fn apply(&mut self, base: &u32, add: &[u32], remove: &[u32]) -> u32 {
        let m = self.changed(self.masks.masks[*base as usize], add, remove);
        self.masks.id(m)
    }

    fn meet(&mut self, a: &u32, b: &u32) -> u32 {
        let m = and(
            &self.masks.masks[*a as usize],
            &self.masks.masks[*b as usize],
        );
        self.masks.id(m)
    }

    /// The intersection is no entry's mask: it is not stored.
    fn exact(&mut self, prefix: &u32, suffix: Option<&u32>, entry: &Entry) -> u32 {
        let p = self.masks.masks[*prefix as usize];
        let base = match suffix {
            Some(s) => and(&p, &self.masks.masks[*s as usize]),
            None => p,
        };
        let m = self.changed(base, &entry.add, &entry.remove);
        self.masks.id(m)
    }
}

fn and(a: &Mask, b: &Mask) -> Mask {
    std::array::from_fn(|w| a[w] & b[w])
}

/// The words a part's terms occupy, `[lo, hi)`.
fn part_words(part: &Part<'_>) -> (u32, u32) {
    let n = part.table.terms.len() as u32;
    (part.offset / 64, (part.offset + n).div_ceil(64))
}

/// A part's dimension window as the kernel takes it (`lo | hi << 16`).
fn window(part: &Part<'_>) -> u32 {
    let (lo, hi) = part_words(part);
    lo | hi << 16
}

/// The hook's bits of a dimension's term set, within the part's words (the
/// kernel ANDs a part's dimension only there): the part's terms in `set`,
/// and the other parts' terms that share those words (this dimension does
/// not constrain them).
fn dim_mask(set: &TermSet, part: &Part<'_>, total: u32) -> Mask {
    let mut m = [0u64; MASK_WORDS];
    let n = part.table.terms.len() as u32;
    let (lo, hi) = part_words(part);
    let shared = (lo * 64..part.offset).chain(part.offset + n..(hi * 64).min(total));
    for bit in shared {
        set_bit(&mut m, bit);
    }
    for &t in set {
        set_bit(&mut m, part.offset + t);
    }
    m
}

/// The hook's bits of a verdict set over every part.
fn verdict_mask<'t>(parts: &[Part<'t>], set: impl Fn(&'t HookTable) -> Vec<&'t TermSet>) -> Mask {
    let mut m = [0u64; MASK_WORDS];
    for p in parts {
        for s in set(p.table) {
            for &t in s {
                set_bit(&mut m, p.offset + t);
            }
        }
    }
    m
}

/// Zero-padded key bytes of `value`, at most `max` bytes.
fn key_bytes<const N: usize>(value: &[u8], max: usize) -> Result<[u8; N], TablesError> {
    if value.len() > max {
        return Err(TablesError::PathTooLong {
            value: String::from_utf8_lossy(value).into_owned(),
            len: value.len(),
            max,
        });
    }
    let mut key = [0u8; N];
    key[..value.len()].copy_from_slice(value);
    Ok(key)
}

/// The kernel id of a field a relation or dimension names, if the programs
/// supply it as a number.
fn numeric_field(name: &str) -> Option<u32> {
    let f = Field::from_name(name)?;
    (f.info().ty.is_numeric()).then(|| field_index(f))
}

struct Builder<'n> {
    masks: MaskTable,
    out: KernelTables,
    next_ns: u32,
    next_str_ns: u32,
    next_anchor_ns: u32,
    names: &'n dyn Names,
}

impl Builder<'_> {
    fn ns(&mut self) -> u32 {
        self.next_ns += 1;
        self.next_ns
    }

    fn str_ns(&mut self, hook: Hook) -> Result<u32, TablesError> {
        if self.next_str_ns > 255 {
            return Err(TablesError::TooManyDimensions {
                hook: hook.as_str(),
                count: self.next_str_ns as usize + 1,
                max: 256,
            });
        }
        self.next_str_ns += 1;
        Ok(self.next_str_ns - 1)
    }

    /// One bundle dimension (not `k8s.*`) as a kernel dimension.
    fn dimension(
        &mut self,
        hook: Hook,
        name: &str,
        dim: &Dimension,
        part: &Part<'_>,
        total: u32,
    ) -> Result<(DimConfig, u64), TablesError> {
        let unsupported = |why: &str| TablesError::UnsupportedDimension {
            hook: hook.as_str(),
            field: name.to_string(),
            why: why.to_string(),
        };
        // A stored set holds tested terms only: every entry's mask is this
        // one (the untested terms and the other parts' shared bits) with the
        // set's bits, per entry the set's size rather than the terms'.
        let untested = layout::complement(part.table.terms.len() as u32, &dim.tested);
        let base = dim_mask(&untested, part, total);
        let mask = |set: &TermSet, b: &mut Self| {
            let mut m = base;
            for &t in set {
                set_bit(&mut m, part.offset + t);
            }
            b.masks.id(m)
        };
        let mut d = DimConfig {
            dflt: mask(&dim.default, self),
            absent: mask(&dim.absent_set(), self),
            ..DimConfig::default()
        };
        let suffix_dflt = dim.suffix_default.as_ref().map(|sd| mask(sd, self));
        let resolved = dim.resolve(
            &dim.bases(),
            &mut MaskIds {
                masks: &mut self.masks,
                offset: part.offset,
            },
            &d.dflt,
            suffix_dflt.as_ref(),
        );
        if let Some(rel) = &dim.relation {
            let (Some(l), Some(r)) = (numeric_field(&rel.left), numeric_field(&rel.right)) else {
                return Err(unsupported(
                    "the kernel compares numeric fields only (ids and ports)",
                ));
            };
            d.kind = dim_kind::RELATION;
            d.field = l;
            d.field2 = r;
            d.op = match rel.op.as_str() {
                "==" => rel_op::EQ,
                "<" => rel_op::LT,
                "<=" => rel_op::LE,
                other => return Err(unsupported(&format!("operator `{other}`"))),
            };
            d.ns = self.ns();
            for (e, &id) in dim.exact.iter().zip(&resolved.exact) {
                let v = u64::from(e.value == "true");
                self.out
                    .num_lpm
                    .push((96, crate::abi::num_lpm_key(d.ns, v), id));
            }
            return Ok((d, (1u64 << l) | (1u64 << r)));
        }
        let field = Field::from_name(name).ok_or_else(|| unsupported("unknown field"))?;
        d.field = field_index(field);
        let bits = 1u64 << d.field;
        match dim.kind {
            DimensionKind::Path | DimensionKind::String => {
                d.kind = dim_kind::STR;
                // LPM keys have one namespace byte; `str_exact` keys a u32, so
                // a dimension of exact values only takes a number past the
                // LPM ones and leaves those to dimensions that need them.
                d.ns = if dim.prefix.is_empty() && dim.suffix_default.is_none() {
                    256 + self.ns()
                } else {
                    self.str_ns(hook)?
                };
                for (e, &id) in dim.exact.iter().zip(&resolved.exact) {
                    let key = StrKey {
                        ns: d.ns,
                        data: key_bytes(e.value.as_bytes(), PATH_KEY_LEN - 1)?,
                    };
                    self.out.str_exact.push((key, id));
                    d.tables |= table_bits::EXACT;
                }
                for (e, &id) in dim.prefix.iter().zip(&resolved.prefix) {
                    let key = StrLpmKey {
                        ns: d.ns as u8,
                        data: key_bytes(e.value.as_bytes(), STR_LPM_LEN)?,
                    };
                    self.out
                        .str_prefix
                        .push((8 + 8 * e.value.len() as u32, key, id));
                    d.tables |= table_bits::PREFIX;
                }
                if let Some(sd) = suffix_dflt {
                    d.suffix_dflt = sd;
                    d.tables |= table_bits::SUFFIX;
                    for (e, &id) in dim.suffix.iter().zip(&resolved.suffix) {
                        let reversed: Vec<u8> = e.value.bytes().rev().collect();
                        let key = StrLpmKey {
                            ns: d.ns as u8,
                            data: key_bytes(&reversed, STR_LPM_LEN)?,
                        };
                        self.out
                            .str_suffix
                            .push((8 + 8 * e.value.len() as u32, key, id));
                    }
                }
            }
            DimensionKind::Int => {
                d.kind = dim_kind::NUM;
                d.ns = self.ns();
                let ids = dim.resolve_ranges(
                    &mut MaskIds {
                        masks: &mut self.masks,
                        offset: part.offset,
                    },
                    &d.dflt,
                );
                for (r, id) in dim.ranges.iter().zip(ids) {
                    for (v, plen) in range_prefixes(r.lo, r.hi, 64) {
                        self.out
                            .num_lpm
                            .push((32 + plen, crate::abi::num_lpm_key(d.ns, v), id));
                    }
                }
                self.resolve_names(name, dim, d.ns, &resolved.exact)?;
            }
            DimensionKind::Enum | DimensionKind::Bool => {
                d.kind = dim_kind::NUM;
                d.ns = self.ns();
                for (e, &id) in dim.exact.iter().zip(&resolved.exact) {
                    let v = match (dim.kind, field.info().ty) {
                        (DimensionKind::Bool, _) => match e.value.as_str() {
                            "true" => 1,
                            "false" => 0,
                            _ => return Err(unsupported("a boolean other than true/false")),
                        },
                        (_, FieldType::Enum(names)) => names
                            .iter()
                            .position(|n| *n == e.value)
                            .ok_or_else(|| unsupported(&format!("value `{}`", e.value)))?
                            as u64,
                        _ => return Err(unsupported("an enumeration of another field type")),
                    };
                    self.out
                        .num_lpm
                        .push((96, crate::abi::num_lpm_key(d.ns, v), id));
                }
            }
            DimensionKind::Ip => {
                d.kind = dim_kind::IP;
                d.ns = self.ns();
                for (e, &id) in dim.prefix.iter().zip(&resolved.prefix) {
                    let net: IpNet = e
                        .value
                        .parse()
                        .map_err(|_| unsupported(&format!("`{}` is not a CIDR block", e.value)))?;
                    self.out.ip_lpm.push((
                        32 + 8 + u32::from(net.prefix_len()),
                        crate::abi::ip_lpm_key(d.ns, net.network()),
                        id,
                    ));
                }
            }
            DimensionKind::Caps => {
                d.kind = dim_kind::CAPS;
                if dim.masks.len() > MAX_CAPS_ENTRIES {
                    return Err(unsupported(&format!(
                        "{} distinct capability sets, the kernel holds {MAX_CAPS_ENTRIES}",
                        dim.masks.len()
                    )));
                }
                d.caps_first = self.out.caps.len() as u32;
                d.caps_count = dim.masks.len() as u32;
                for m in &dim.masks {
                    let mut caps = 0u64;
                    for c in &m.caps {
                        let bit = policy_dsl::schema::capability_bit(c)
                            .ok_or_else(|| unsupported(&format!("capability `{c}`")))?;
                        caps |= 1u64 << bit;
                    }
                    let held = mask(&m.held, self);
                    let lacking = mask(&m.lacking, self);
                    self.out.caps.push(CapsEntry {
                        caps,
                        held,
                        lacking,
                    });
                }
            }
            DimensionKind::Relation => return Err(unsupported("a relation without its fields")),
        }
        Ok((d, bits))
    }

    /// `exact` entries of an `int` dimension are user or group names: their
    /// ids on this node become single-value entries. An id that a range
    /// entry already covers keeps the range's set (the number's tests), and
    /// this is noted; a name unknown here can match no process, also noted.
    fn resolve_names(
        &mut self,
        field: &str,
        dim: &Dimension,
        ns: u32,
        masks: &[u32],
    ) -> Result<(), TablesError> {
        let Some(kind) = dim.resolve else {
            return Ok(());
        };
        let mut seen: BTreeMap<u32, String> = BTreeMap::new();
        for (e, &m) in dim.exact.iter().zip(masks) {
            let id = match kind {
                Resolve::User => self.names.uid(&e.value),
                Resolve::Group => self.names.gid(&e.value),
            };
            let Some(id) = id else {
                self.out.notes.push(format!(
                    "`{field}`: {} `{}` does not exist on this node; its tests match no process",
                    if kind == Resolve::User {
                        "user"
                    } else {
                        "group"
                    },
                    e.value
                ));
                continue;
            };
            let n = u64::from(id);
            if dim.ranges.iter().any(|r| r.lo <= n && n <= r.hi) {
                self.out.notes.push(format!(
                    "`{field}`: `{}` is id {id} on this node, which the rules also test as a number; \
                     the number's tests decide",
                    e.value
                ));
                continue;
            }
            if let Some(other) = seen.insert(id, e.value.clone()) {
                self.out.notes.push(format!(
                    "`{field}`: `{other}` and `{}` are both id {id} on this node; `{other}`'s tests decide",
                    e.value
                ));
                seen.insert(id, other);
                continue;
            }
            self.out
                .num_lpm
                .push((96, crate::abi::num_lpm_key(ns, n), m));
        }
        Ok(())
    }

    /// The `k8s.*` dimensions of a part as one cgroup dimension (see
    /// [`crate::k8s::k8s_cgroup_terms`]): per known pod container, the terms
    /// they let through; for any other cgroup, those of absent fields.
    fn cgroup_dimension(
        &mut self,
        k: &crate::k8s::K8sTerms,
        part: &Part<'_>,
        total: u32,
    ) -> DimConfig {
        let ns = self.ns();
        let dflt = self.masks.id(dim_mask(&k.outside_pods, part, total));
        for (cgroup_id, set) in &k.per_cgroup {
            let id = self.masks.id(dim_mask(set, part, total));
            self.out.cgroup_exact.push((
                CgroupKey {
                    ns,
                    pad: 0,
                    cgroup_id: *cgroup_id,
                },
                id,
            ));
        }
        DimConfig {
            kind: dim_kind::CGROUP,
            field: FIELD_CGROUP,
            ns,
            dflt,
            absent: dflt,
            ..DimConfig::default()
        }
    }
}

impl Builder<'_> {
    /// The dimensions of `parts` (each at its bits) as a `group_config`
    /// value; adds the fields they read to `fields`.
    fn group(
        &mut self,
        hook: Hook,
        parts: &[Part<'_>],
        total: u32,
        pods: &PodIndex,
        fields: &mut u64,
    ) -> Result<GroupConfig, TablesError> {
        let mut dims = Vec::new();
        for part in parts {
            let k8s = crate::k8s::k8s_cgroup_terms(part.table, pods);
            if let Some(name) = k8s.per_event.first() {
                return Err(TablesError::UnsupportedDimension {
                    hook: hook.as_str(),
                    field: name.clone(),
                    why: "a relation between a `k8s.*` field and another field".into(),
                });
            }
            for (name, dim) in &part.table.dimensions {
                if k8s.dimensions.contains(name) {
                    continue;
                }
                let (d, bits) = self.dimension(hook, name, dim, part, total)?;
                *fields |= bits;
                dims.push(DimConfig {
                    window: window(part),
                    ..d
                });
            }
            if !k8s.dimensions.is_empty() {
                dims.push(DimConfig {
                    window: window(part),
                    ..self.cgroup_dimension(&k8s, part, total)
                });
                *fields |= 1u64 << FIELD_CGROUP;
            }
        }
        if dims.len() > MAX_DIMS {
            return Err(TablesError::TooManyDimensions {
                hook: hook.as_str(),
                count: dims.len(),
                max: MAX_DIMS,
            });
        }
        let mut g = GroupConfig {
            ndims: dims.len() as u32,
            ..GroupConfig::default()
        };
        g.dims[..dims.len()].copy_from_slice(&dims);
        let mut v = |f: fn(&HookTable) -> Vec<&TermSet>| self.masks.id(verdict_mask(parts, f));
        g.deny = v(|t| vec![&t.verdicts.deny]);
        g.kill = v(|t| vec![&t.verdicts.kill]);
        g.allow = v(|t| vec![&t.verdicts.allow]);
        g.audit = v(|t| vec![&t.verdicts.audit]);
        g.default_deny = v(|t| vec![&t.verdicts.default_deny]);
        g.monitor = v(|t| vec![&t.verdicts.monitor]);
        g.count = v(|t| t.verdicts.count.values().collect());
        Ok(g)
    }

    /// The config of one hook laid out by `plans`, its groups and anchor
    /// entries added to the output.
    fn hook(
        &mut self,
        hook: Hook,
        parts: &[Part<'_>],
        plans: &[HookLayout],
        pods: &PodIndex,
    ) -> Result<HookConfig, TablesError> {
        let mut cfg = HookConfig {
            has_terms: 1,
            ..HookConfig::default()
        };
        // The hook's own words: each part's own terms, one after another.
        let restricted: Vec<Option<HookTable>> = parts
            .iter()
            .zip(plans)
            .map(|(p, plan)| {
                (!plan.anchors.is_empty())
                    .then(|| layout::restrict(p.table, &plan.unanchored, None))
            })
            .collect();
        let mut own_parts = Vec::new();
        let mut own_terms = Vec::new();
        for ((part, plan), table) in parts.iter().zip(plans).zip(&restricted) {
            if plan.unanchored.is_empty() {
                continue;
            }
            own_parts.push(Part {
                table: table.as_ref().unwrap_or(part.table),
                offset: own_terms.len() as u32,
            });
            own_terms.extend(plan.unanchored.iter().map(|t| part.offset + t));
        }
        let total = own_terms.len() as u32;
        let mut all = [0u64; MASK_WORDS];
        for bit in 0..total {
            set_bit(&mut all, bit);
        }
        cfg.words = total.div_ceil(64);
        cfg.terms = self.masks.id(all);
        let own_group = self.group(hook, &own_parts, total, pods, &mut cfg.fields)?;
        cfg.group = self.out.groups.len() as u32;
        self.out.groups.push(own_group);
        self.out.bits.group_terms.push((0, Vec::new()));
        self.out.bits.own_terms.insert(hook, own_terms);
        // Anchored groups, each in its anchor's window.
        for (part, plan) in parts.iter().zip(plans) {
            for anchor in &plan.anchors {
                self.anchor(hook, part, anchor, &mut cfg, pods)?;
            }
        }
        Ok(cfg)
    }

    /// One anchor of `part`: its `anchor_config` in `cfg`, its groups in
    /// `group_config` and its keys in `anchor_exact` or `anchor_prefix`.
    fn anchor(
        &mut self,
        hook: Hook,
        part: &Part<'_>,
        anchor: &AnchorLayout,
        cfg: &mut HookConfig,
        pods: &PodIndex,
    ) -> Result<(), TablesError> {
        let dim = &anchor.dimension;
        let field = Field::from_name(dim).ok_or_else(|| TablesError::UnsupportedDimension {
            hook: hook.as_str(),
            field: dim.clone(),
            why: "unknown field".into(),
        })?;
        let numeric = field.info().ty.is_numeric();
        let ip = field.info().ty == policy_dsl::schema::FieldType::Ip;
        let (kind, ns) = match anchor.kind {
            AnchorKind::Exact if numeric => (dim_kind::NUM, self.ns()),
            AnchorKind::Exact => (dim_kind::STR, self.ns()),
            AnchorKind::Prefix => {
                if self.next_anchor_ns > 255 {
                    return Err(TablesError::TooManyDimensions {
                        hook: hook.as_str(),
                        count: self.next_anchor_ns as usize + 1,
                        max: 256,
                    });
                }
                self.next_anchor_ns += 1;
                let kind = if ip {
                    dim_kind::ANCHOR_IP
                } else if numeric {
                    dim_kind::ANCHOR_RANGE
                } else {
                    dim_kind::ANCHOR_PREFIX
                };
                (kind, self.next_anchor_ns - 1)
            }
        };
        let (lo, hi) = anchor.window;
        cfg.anchors[cfg.nanchors as usize] = AnchorConfig {
            field: field_index(field),
            ns,
            window: lo | hi << 16,
            kind,
        };
        cfg.nanchors += 1;
        cfg.fields |= 1u64 << field_index(field);
        let start = lo * 64;
        for gl in &anchor.groups {
            let table = layout::restrict(part.table, &gl.terms, anchor.skip());
            let gp = Part {
                table: &table,
                offset: start,
            };
            // `total` ends at the group's last term: no padding bits, so
            // equal sets of different groups share masks.
            let total = start + gl.terms.len() as u32;
            let g = self.group(hook, &[gp], total, pods, &mut cfg.fields)?;
            let key = self.out.groups.len() as u32;
            self.out.groups.push(g);
            self.out
                .bits
                .group_terms
                .push((start, gl.terms.iter().map(|t| part.offset + t).collect()));
            let keys = gl.values.iter().map(|v| (v, false));
            for ((value, positions), prefix) in keys.chain(gl.prefixes.iter().map(|v| (v, true))) {
                let mut m = [0u64; MASK_WORDS];
                for p in positions {
                    set_bit(&mut m, start + p);
                }
                let av = AnchorValue {
                    group: key,
                    mask: self.masks.id(m),
                };
                match kind {
                    dim_kind::ANCHOR_RANGE => {
                        // The range's aligned blocks of the 64-bit value.
                        let blocks = layout::range_blocks(value).ok_or_else(|| {
                            TablesError::UnsupportedDimension {
                                hook: hook.as_str(),
                                field: dim.clone(),
                                why: format!("anchor value `{value}` is not a range `lo..hi`"),
                            }
                        })?;
                        for (v, plen) in blocks {
                            let mut data = [0u8; STR_LPM_LEN];
                            data[..8].copy_from_slice(&v.to_be_bytes());
                            self.out.anchor_prefix.push((
                                8 + plen,
                                StrLpmKey { ns: ns as u8, data },
                                av,
                            ));
                        }
                    }
                    dim_kind::ANCHOR_IP => {
                        // The family byte, then the block's bits.
                        let net: ipnet::IpNet =
                            value
                                .parse()
                                .map_err(|_| TablesError::UnsupportedDimension {
                                    hook: hook.as_str(),
                                    field: dim.clone(),
                                    why: format!("anchor value `{value}` is not a CIDR block"),
                                })?;
                        let (family, addr) = ip_key_addr(net.network());
                        let mut data = [0u8; STR_LPM_LEN];
                        data[0] = family;
                        data[1..17].copy_from_slice(&addr);
                        self.out.anchor_prefix.push((
                            8 + 8 + u32::from(net.prefix_len()),
                            StrLpmKey { ns: ns as u8, data },
                            av,
                        ));
                    }
                    dim_kind::ANCHOR_PREFIX => {
                        // An exact value ends with the zero byte after it
                        // (when it fits), which no prefix of a longer value has.
                        let mut bytes = value.as_bytes().to_vec();
                        if !prefix && bytes.len() < STR_LPM_LEN {
                            bytes.push(0);
                        }
                        let data = key_bytes(&bytes, STR_LPM_LEN)?;
                        self.out.anchor_prefix.push((
                            8 + 8 * bytes.len() as u32,
                            StrLpmKey { ns: ns as u8, data },
                            av,
                        ));
                    }
                    dim_kind::NUM => {
                        let n: u64 =
                            value
                                .parse()
                                .map_err(|_| TablesError::UnsupportedDimension {
                                    hook: hook.as_str(),
                                    field: dim.clone(),
                                    why: format!("anchor value `{value}` is not a number"),
                                })?;
                        let data = key_bytes(&n.to_be_bytes(), 8)?;
                        self.out.anchor_exact.push((StrKey { ns, data }, av));
                    }
                    _ => {
                        let data = key_bytes(value.as_bytes(), PATH_KEY_LEN - 1)?;
                        self.out.anchor_exact.push((StrKey { ns, data }, av));
                    }
                }
            }
        }
        Ok(())
    }
}

/// The input of [`KernelTables::build`] for `bundle` alone: per hook, its
/// table as the only part, from merged term 0.
pub fn parts_of(bundle: &policy_compiler::bundle::PolicyBundle) -> BTreeMap<Hook, Vec<Part<'_>>> {
    bundle
        .spec
        .hooks
        .iter()
        .map(|(h, table)| (*h, vec![Part { table, offset: 0 }]))
        .collect()
}

impl KernelTables {
    /// The tables of one bundle (every hook it has), names resolved with
    /// the node's databases and no pods known.
    ///
    /// # Errors
    /// As [`KernelTables::build`].
    pub fn from_bundle(
        bundle: &policy_compiler::bundle::PolicyBundle,
    ) -> Result<KernelTables, TablesError> {
        KernelTables::build(&parts_of(bundle), &SystemNames, &PodIndex::default())
    }

    /// The tables of `hooks` (per hook, each bundle's table and the merged id
    /// of its first term; parts must not overlap).
    ///
    /// # Errors
    /// [`TablesError`] when a hook has more terms or dimensions than the
    /// kernel holds, a dimension the programs cannot supply, or a value
    /// longer than a key.
    pub fn build(
        hooks: &BTreeMap<Hook, Vec<Part<'_>>>,
        names: &dyn Names,
        pods: &PodIndex,
    ) -> Result<KernelTables, TablesError> {
        KernelTables::build_in(hooks, names, pods, MASK_WORDS)
    }

    /// [`KernelTables::build`] with `words` (at most [`MASK_WORDS`]) mask
    /// words per hook: tests use few words so that small bundles take the
    /// anchored layout the kernel uses past one mask.
    ///
    /// # Errors
    /// As [`KernelTables::build`].
    pub fn build_in(
        hooks: &BTreeMap<Hook, Vec<Part<'_>>>,
        names: &dyn Names,
        pods: &PodIndex,
        words: usize,
    ) -> Result<KernelTables, TablesError> {
        let words = words.clamp(1, MASK_WORDS);
        let mut b = Builder {
            masks: MaskTable::new(),
            out: KernelTables::default(),
            next_ns: 0,
            next_str_ns: 0,
            next_anchor_ns: 0,
            names,
        };
        for (&hook, parts) in hooks {
            let count: usize = parts.iter().map(|p| p.table.terms.len()).sum();
            if count == 0 {
                continue;
            }
            if crate::loader::hook_programs(hook).is_empty() {
                return Err(TablesError::NoProgram {
                    hook: hook.as_str(),
                });
            }
            let tables: Vec<&HookTable> = parts.iter().map(|p| p.table).collect();
            let plans = layout::plan_parts(hook.as_str(), &tables, words)?;
            let cfg = b.hook(hook, parts, &plans, pods)?;
            b.out.hooks.insert(hook, cfg);
        }
        b.out.masks = b.masks.masks;
        Ok(b.out)
    }

    /// `max_entries` of `map`: its entry count, at least 1 (the kernel
    /// refuses empty hash maps and tries).
    pub fn capacity(&self, map: &str) -> u32 {
        (self.entries(map) as u32).max(1)
    }

    /// Entries of each table.
    pub fn entries(&self, map: &str) -> u64 {
        use crate::abi::map_names::*;
        (match map {
            MASKS => self.masks.len(),
            STR_EXACT => self.str_exact.len(),
            STR_PREFIX => self.str_prefix.len(),
            STR_SUFFIX => self.str_suffix.len(),
            NUM_LPM => self.num_lpm.len(),
            IP_LPM => self.ip_lpm.len(),
            CGROUP_EXACT => self.cgroup_exact.len(),
            CAPS_TABLE => self.caps.len(),
            ANCHOR_EXACT => self.anchor_exact.len(),
            ANCHOR_PREFIX => self.anchor_prefix.len(),
            GROUP_CONFIG => self.groups.len(),
            _ => 0,
        }) as u64
    }
}

/// The address family and bytes a kernel key uses for `a`.
pub fn ip_key_addr(a: IpAddr) -> (u8, [u8; 16]) {
    let mut out = [0u8; 16];
    match a {
        IpAddr::V4(v) => {
            out[..4].copy_from_slice(&v.octets());
            (4, out)
        }
        IpAddr::V6(v) => (6, v.octets()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn evaluation_bundle(text: &str) -> policy_compiler::bundle::PolicyBundle {
        policy_compiler::compile::evaluation_bundle_of(&format!("policy p {{}}\n{text}\n")).unwrap()
    }

    #[test]
    fn a_hook_without_a_program_is_refused_not_ignored() {
        let b = evaluation_bundle("rule m on module_load { when module.name == \"x\" deny }");
        let err = KernelTables::from_bundle(&b).unwrap_err();
        assert!(
            matches!(
                err,
                TablesError::NoProgram {
                    hook: "module_load"
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn equal_masks_are_stored_once_and_entries_point_at_them() {
        let b = evaluation_bundle(
            "rule a on exec { when process.binary in { \"/a\", \"/b\" } audit }\n\
             rule c on connect { when net.dport in 1..1023 deny }",
        );
        let t = KernelTables::from_bundle(&b).unwrap();
        // "/a" and "/b" have the same set: one mask for both entries.
        assert_eq!(t.str_exact.len(), 2);
        assert_eq!(t.str_exact[0].1, t.str_exact[1].1);
        let distinct: std::collections::BTreeSet<&Mask> = t.masks.iter().collect();
        assert_eq!(distinct.len(), t.masks.len(), "every mask once");
        // 1..1023 is 10 LPM prefixes of a 64-bit value, all with one mask.
        assert_eq!(t.num_lpm.len(), 10);
        assert!(t.num_lpm.iter().all(|e| e.2 == t.num_lpm[0].2));
        let exec = &t.hooks[&Hook::Exec];
        let exec_group = &t.groups[exec.group as usize];
        assert_eq!((exec.has_terms, exec.words, exec_group.ndims), (1, 1, 1));
        assert_eq!(
            exec.fields,
            1 << crate::abi::field_index(Field::ProcessBinary)
        );
        assert_eq!(t.masks[exec_group.audit as usize][0], 1);
        let connect = &t.hooks[&Hook::Connect];
        assert_eq!(
            t.masks[t.groups[connect.group as usize].deny as usize][0],
            1
        );
    }
}

#[cfg(test)]
mod anchored_tests {
    use super::*;
    use crate::classify::{classify, KernelValues};
    use policy_dsl::checked::{Event, FieldKey, Value};

    /// 300 rules on distinct binaries (each also testing a uid) and 10 on
    /// prefixes, in 3 words: anchored on `process.binary`.
    fn bundle() -> policy_compiler::bundle::PolicyBundle {
        let mut text = String::from("policy p {}\n");
        for i in 0..300 {
            text += &format!(
                "rule r{i} on exec {{ when process.binary == \"/opt/b{i}\" and user.uid == {i} deny }}\n"
            );
        }
        for i in 0..10 {
            text += &format!(
                "rule p{i} on exec {{ when process.binary startswith \"/p{i}/\" audit }}\n"
            );
        }
        policy_compiler::compile::evaluation_bundle_of(&text).unwrap()
    }

    fn event(binary: &str, uid: u64) -> Event {
        Event {
            hook: Hook::Exec,
            fields: [
                (
                    FieldKey::plain(Field::ProcessBinary),
                    Value::Str(binary.into()),
                ),
                (FieldKey::plain(Field::UserUid), Value::Int(uid)),
            ]
            .into_iter()
            .collect(),
        }
    }

    #[test]
    fn terms_past_the_words_are_split_into_groups_by_an_anchor() {
        let b = bundle();
        let table = &b.spec.hooks[&Hook::Exec];
        let t =
            KernelTables::build_in(&parts_of(&b), &SystemNames, &PodIndex::default(), 3).unwrap();
        let cfg = &t.hooks[&Hook::Exec];
        assert_eq!(cfg.nanchors, 1);
        assert_eq!(
            cfg.words, 1,
            "the 10 prefix rules stay in the hook's own word"
        );
        // 300 anchored terms in windows of 2 words: 3 groups.
        assert_eq!(t.groups.len(), 1 + 3);
        assert_eq!(t.anchor_exact.len(), 300);
        let window = cfg.anchors[0].window;
        assert_eq!((window & 0xffff, window >> 16), (1, 3));
        let terms_of = |binary: &str, uid: u64| {
            let e = event(binary, uid);
            let c = classify(&t, Hook::Exec, &KernelValues::from_event(&e, 1)).unwrap();
            t.bits.terms(Hook::Exec, &c.matched, &c.groups)
        };
        let want = |binary: &str, uid: u64| {
            policy_compiler::eval::matched_terms(table, &event(binary, uid))
                .into_iter()
                .collect::<TermSet>()
        };
        for (binary, uid) in [
            ("/opt/b7", 7),
            ("/opt/b7", 8),
            ("/opt/b299", 299),
            ("/opt/b150", 150),
            ("/p3/x", 0),
            ("/opt/b1000", 1000),
        ] {
            assert_eq!(terms_of(binary, uid), want(binary, uid), "{binary} {uid}");
        }
        assert_eq!(terms_of("/opt/b7", 7).len(), 1);
        assert!(terms_of("/opt/b7", 8).is_empty());
    }

    #[test]
    fn port_rules_past_the_words_are_split_by_port() {
        let mut text = String::from("policy p {}\n");
        for i in 0..300 {
            text += &format!(
                "rule r{i} on connect {{ when net.dport == {} deny }}\n",
                20000 + i
            );
        }
        text += "rule low on connect { when net.dport in 1..1023 audit }\n";
        let b = policy_compiler::compile::evaluation_bundle_of(&text).unwrap();
        let table = &b.spec.hooks[&Hook::Connect];
        let t =
            KernelTables::build_in(&parts_of(&b), &SystemNames, &PodIndex::default(), 3).unwrap();
        let cfg = &t.hooks[&Hook::Connect];
        assert_eq!(cfg.nanchors, 1);
        assert_eq!(cfg.anchors[0].kind, dim_kind::NUM);
        assert_eq!(cfg.anchors[0].field, field_index(Field::NetDport));
        assert_eq!(t.anchor_exact.len(), 300);
        // The key of port 20005: its 8 big-endian bytes.
        let key = t
            .anchor_exact
            .iter()
            .find(|(k, _)| k.data[..8] == 20005u64.to_be_bytes())
            .expect("port 20005 is an anchor value");
        assert_eq!(key.0.data[8..], [0u8; PATH_KEY_LEN - 8]);
        for (port, matched) in [(20005u64, 1), (20299, 1), (443, 1), (80, 1), (19999, 0)] {
            let e = Event {
                hook: Hook::Connect,
                fields: [(FieldKey::plain(Field::NetDport), Value::Int(port))]
                    .into_iter()
                    .collect(),
            };
            let c = classify(&t, Hook::Connect, &KernelValues::from_event(&e, 1)).unwrap();
            let got = t.bits.terms(Hook::Connect, &c.matched, &c.groups);
            let want: TermSet = policy_compiler::eval::matched_terms(table, &e)
                .into_iter()
                .collect();
            assert_eq!(got, want, "port {port}");
            assert_eq!(got.len(), matched, "port {port}");
        }
    }

    /// The tables of `text` in `words` mask words, and a check that each
    /// event's terms are the bundle evaluator's (and how many).
    fn check_anchored(
        text: &str,
        words: usize,
        hook: Hook,
        events: &[(Event, usize)],
    ) -> KernelTables {
        let b = policy_compiler::compile::evaluation_bundle_of(&format!("policy p {{}}\n{text}"))
            .unwrap();
        let table = &b.spec.hooks[&hook];
        let t = KernelTables::build_in(&parts_of(&b), &SystemNames, &PodIndex::default(), words)
            .unwrap();
        for (e, n) in events {
            let c = classify(&t, hook, &KernelValues::from_event(e, 1)).unwrap();
            let got = t.bits.terms(hook, &c.matched, &c.groups);
            let want: TermSet = policy_compiler::eval::matched_terms(table, e)
                .into_iter()
                .collect();
            assert_eq!(got, want, "{e:?}");
            assert_eq!(got.len(), *n, "{e:?}");
        }
        t
    }

    #[test]
    fn prefix_rules_past_the_words_are_split_by_the_longest_key() {
        let mut text = String::new();
        for i in 0..200 {
            text += &format!(
                "rule r{i} on exec {{ when process.binary startswith \"/srv/s{i}/\" and \
                 not process.binary == \"/srv/s{i}/ok\" deny }}\n"
            );
        }
        text += "rule sub on exec { when process.binary startswith \"/srv/s7/bin/\" audit }\n";
        text += "rule one on exec { when process.binary == \"/srv/s7/bin/x\" audit }\n";
        let bin = |p: &str| Event {
            hook: Hook::Exec,
            fields: [(FieldKey::plain(Field::ProcessBinary), Value::Str(p.into()))]
                .into_iter()
                .collect(),
        };
        let t = check_anchored(
            &text,
            3,
            Hook::Exec,
            &[
                (bin("/srv/s7/bin/x"), 3),
                (bin("/srv/s7/bin/y"), 2),
                (bin("/srv/s7/ok"), 0),
                (bin("/srv/s199/a/b"), 1),
                (bin("/srv/s2000/a"), 0),
                (bin("/srv/s7"), 0),
            ],
        );
        let cfg = &t.hooks[&Hook::Exec];
        assert_eq!(cfg.nanchors, 1);
        assert_eq!(cfg.anchors[0].kind, dim_kind::ANCHOR_PREFIX);
        // 202 keys: the exact value ends with a zero byte and counts it.
        assert_eq!(t.anchor_prefix.len(), 202);
        let x = t
            .anchor_prefix
            .iter()
            .find(|(_, k, _)| k.data.starts_with(b"/srv/s7/bin/x"))
            .unwrap();
        assert_eq!(x.0, 8 + 8 * ("/srv/s7/bin/x".len() as u32 + 1));
        assert!(t.anchor_exact.is_empty());
    }

    #[test]
    fn cidr_rules_past_the_words_are_split_by_block() {
        let mut text = String::new();
        for i in 0..200 {
            text += &format!("rule r{i} on connect {{ when net.daddr in 10.{i}.0.0/16 deny }}\n");
        }
        text += "rule host on connect { when net.daddr in 10.7.1.2 audit }\n";
        text += "rule v6 on connect { when net.daddr in fd00::/8 audit }\n";
        let addr = |a: &str| Event {
            hook: Hook::Connect,
            fields: [(
                FieldKey::plain(Field::NetDaddr),
                Value::Ip(a.parse().unwrap()),
            )]
            .into_iter()
            .collect(),
        };
        let t = check_anchored(
            &text,
            3,
            Hook::Connect,
            &[
                (addr("10.7.1.2"), 2),
                (addr("10.7.1.3"), 1),
                (addr("10.199.255.255"), 1),
                (addr("10.200.0.1"), 0),
                (addr("fd01::1"), 1),
                (addr("::ffff:10.7.1.2"), 0),
            ],
        );
        let cfg = &t.hooks[&Hook::Connect];
        assert_eq!(cfg.nanchors, 1);
        assert_eq!(cfg.anchors[0].kind, dim_kind::ANCHOR_IP);
        let host = t
            .anchor_prefix
            .iter()
            .find(|(bits, _, _)| *bits == 8 + 8 + 32)
            .unwrap();
        assert_eq!(host.1.data[..5], [4, 10, 7, 1, 2]);
    }

    #[test]
    fn range_rules_past_the_words_are_split_by_aligned_blocks() {
        let mut text = String::new();
        for i in 0..200 {
            let lo = 1000 + 10 * i;
            text += &format!(
                "rule r{i} on exec {{ when user.uid in {lo}..{} deny }}\n",
                lo + 4
            );
        }
        // Across every range: in the group of each piece it covers.
        text += "rule wide on exec { when user.uid in 0..99999 audit }\n";
        text += "rule login on exec { when user.auid == unset and user.uid == 1002 audit }\n";
        let uid = |n: u64| Event {
            hook: Hook::Exec,
            fields: [
                (FieldKey::plain(Field::UserUid), Value::Int(n)),
                (FieldKey::plain(Field::UserAuid), Value::Unset),
            ]
            .into_iter()
            .collect(),
        };
        let t = check_anchored(
            &text,
            3,
            Hook::Exec,
            &[
                (uid(1002), 3),
                (uid(1003), 2),
                (uid(1005), 1),
                (uid(2994), 2),
                (uid(0), 1),
                (uid(100_000), 0),
                (uid(u64::from(u32::MAX)), 0),
            ],
        );
        let cfg = &t.hooks[&Hook::Exec];
        assert_eq!(cfg.nanchors, 1);
        assert_eq!(cfg.anchors[0].kind, dim_kind::ANCHOR_RANGE);
        assert_eq!(cfg.anchors[0].field, field_index(Field::UserUid));
        // 1000..1004 is three pieces (rule `login` tests 1002): 1000..1001
        // is one block (/63); 1003..1004 starts a block at 1004 (/64).
        let blocks: Vec<u32> = t
            .anchor_prefix
            .iter()
            .filter(|(_, k, _)| {
                k.data[..8] == 1000u64.to_be_bytes() || k.data[..8] == 1004u64.to_be_bytes()
            })
            .map(|(bits, _, _)| *bits)
            .collect();
        assert_eq!(blocks, [8 + 63, 8 + 64]);
    }
}
