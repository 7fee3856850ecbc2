//! The kernel's classification in Rust: what `classify()` in
//! `bpf-templates/policy.bpf.c` computes from [`KernelTables`] for the
//! values a program extracted.
//!
//! Pure, and written to follow the C code step by step (one lookup per
//! dimension, longest-prefix matches, mask ids), so that tests can check the
//! tables against the bundle evaluator without a kernel
//! (`tests/tables_equivalence.rs`), and the kernel against this on real
//! events (`tests/kernel_equivalence.rs`).

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use policy_compiler::bundle::Hook;
use policy_dsl::checked::{Event, Value};
use policy_dsl::schema::{Field, FieldType};

use crate::abi::{
    dim_kind, field_index, num_lpm_key, rel_op, table_bits, DimConfig, Mask, FIELD_CGROUP,
    MASK_WORDS, MAX_ANCHORS, PATH_KEY_LEN, STR_LPM_LEN,
};
use crate::tables::{ip_key_addr, KernelTables};

/// The values a hook program extracted for one event (its scratch space).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KernelValues {
    /// String fields the event supplies, by field id (`process.args` joined
    /// by spaces, `process.name` at most 15 bytes).
    pub strings: BTreeMap<u32, Vec<u8>>,
    /// Path fields whose walk did not reach the root.
    pub incomplete: BTreeSet<u32>,
    /// String fields whose tail was cut (longer than the kernel buffer):
    /// their suffix side is the suffix default.
    pub truncated: BTreeSet<u32>,
    /// Numeric fields (ids, ports, enum indices, bools), by field id.
    pub nums: BTreeMap<u32, u64>,
    /// `net.daddr` (connect) or `net.saddr` (bind), when supplied.
    pub ip: Option<IpAddr>,
    /// `user.caps`, when supplied.
    pub caps: Option<u64>,
    /// `cred.new_caps`, when supplied.
    pub new_caps: Option<u64>,
    /// `bpf_get_current_cgroup_id()`.
    pub cgroup: u64,
}

impl KernelValues {
    fn present(&self, field: u32) -> bool {
        if field == FIELD_CGROUP {
            return true;
        }
        let f = Field::ALL.get(field as usize).copied();
        match f {
            Some(Field::NetDaddr | Field::NetSaddr) => self.ip.is_some(),
            Some(Field::UserCaps) => self.caps.is_some(),
            Some(Field::CredNewCaps) => self.new_caps.is_some(),
            _ => self.strings.contains_key(&field) || self.nums.contains_key(&field),
        }
    }

    /// The values a program extracts for `event` (k8s fields excepted:
    /// they come from `cgroup`, resolved by the tables). Names (`"root"`)
    /// are not kernel values: pass events with numbers.
    pub fn from_event(event: &Event, cgroup: u64) -> KernelValues {
        let mut v = KernelValues {
            cgroup,
            ..KernelValues::default()
        };
        for (key, value) in &event.fields {
            let id = field_index(key.field);
            match (key.field.info().ty, value) {
                (FieldType::Path | FieldType::Str { .. }, Value::Str(s)) => {
                    v.strings.insert(id, s.as_bytes().to_vec());
                }
                (FieldType::Bool, Value::Bool(b)) => {
                    v.nums.insert(id, u64::from(*b));
                }
                (FieldType::Enum(names), Value::Str(s)) => {
                    if let Some(i) = names.iter().position(|n| n == s) {
                        v.nums.insert(id, i as u64);
                    }
                }
                (_, Value::Int(n)) => {
                    v.nums.insert(id, *n);
                }
                (_, Value::Unset) => {
                    v.nums.insert(id, policy_compiler::lower::UNSET_ID);
                }
                (FieldType::Ip, Value::Ip(a)) => v.ip = Some(*a),
                (FieldType::Caps, Value::Caps(set)) => {
                    let bits = set
                        .iter()
                        .filter_map(|c| policy_dsl::schema::capability_bit(c))
                        .fold(0u64, |m, b| m | (1u64 << b));
                    if key.field == Field::CredNewCaps {
                        v.new_caps = Some(bits);
                    } else {
                        v.caps = Some(bits);
                    }
                }
                _ => {}
            }
        }
        v
    }
}

/// Longest LPM match among `entries` (`(prefix bits, key data, value)`)
/// for `key` with `bits` significant bits.
fn lpm<const N: usize, V: Copy>(
    entries: &[(u32, [u8; N], V)],
    key: &[u8; N],
    bits: u32,
) -> Option<V> {
    entries
        .iter()
        .filter(|(plen, data, _)| {
            *plen <= bits && {
                let full = (*plen / 8) as usize;
                let rest = plen % 8;
                data[..full] == key[..full]
                    && (rest == 0 || {
                        let m = 0xffu8 << (8 - rest);
                        data[full] & m == key[full] & m
                    })
            }
        })
        .max_by_key(|(plen, _, _)| *plen)
        .map(|(_, _, id)| *id)
}

/// String LPM entries with the namespace byte and data as one array, as the
/// kernel's key data after the prefix length.
fn as_arrays<V: Copy>(entries: &[(u32, crate::abi::StrLpmKey, V)]) -> Vec<(u32, [u8; 256], V)> {
    entries
        .iter()
        .map(|(p, k, v)| {
            let mut a = [0u8; 256];
            a[0] = k.ns;
            a[1..].copy_from_slice(&k.data);
            (*p, a, *v)
        })
        .collect()
}

struct Run<'t> {
    t: &'t KernelTables,
    acc: Mask,
    /// Words the current dimension ANDs: its bundle's window.
    window: (usize, usize),
    missing: bool,
}

impl Run<'_> {
    fn and(&mut self, id: u32) {
        match self.t.masks.get(id as usize) {
            Some(m) => {
                for w in self.window.0..self.window.1 {
                    self.acc[w] &= m[w];
                }
            }
            None => self.missing = true,
        }
    }

    fn num(&mut self, d: &DimConfig, value: u64) {
        let key = num_lpm_key(d.ns, value);
        let id = lpm(&self.t.num_lpm, &key, 96).unwrap_or(d.dflt);
        self.and(id);
    }

    fn string(&mut self, d: &DimConfig, s: &[u8], incomplete: bool, truncated: bool) {
        if incomplete {
            self.and(d.dflt);
            if d.tables & table_bits::SUFFIX != 0 {
                self.and(d.suffix_dflt);
            }
            return;
        }
        if d.tables & table_bits::EXACT != 0 && s.len() < PATH_KEY_LEN {
            let mut data = [0u8; PATH_KEY_LEN];
            data[..s.len()].copy_from_slice(s);
            if let Some((_, id)) = self
                .t
                .str_exact
                .iter()
                .find(|(k, _)| k.ns == d.ns && k.data == data)
            {
                let id = *id;
                self.and(id);
                return;
            }
        }
        let llen = s.len().min(STR_LPM_LEN);
        let lpm_key = |bytes: &[u8]| {
            let mut k = [0u8; 256];
            k[0] = d.ns as u8;
            k[1..1 + bytes.len()].copy_from_slice(bytes);
            k
        };
        let prefix = if d.tables & table_bits::PREFIX != 0 {
            lpm(
                &as_arrays(&self.t.str_prefix),
                &lpm_key(&s[..llen]),
                8 + 8 * llen as u32,
            )
        } else {
            None
        };
        self.and(prefix.unwrap_or(d.dflt));
        if d.tables & table_bits::SUFFIX != 0 {
            let reversed: Vec<u8> = s.iter().rev().take(llen).copied().collect();
            let suffix = if truncated {
                None
            } else {
                lpm(
                    &as_arrays(&self.t.str_suffix),
                    &lpm_key(&reversed),
                    8 + 8 * llen as u32,
                )
            };
            self.and(suffix.unwrap_or(d.suffix_dflt));
        }
    }
}

/// What the kernel leaves for an event: the matched bits (the hook's own
/// words and each decided group's window) and, per anchor, the
/// `group_config` key + 1 of the group it decided (0: none), as in
/// `struct policy_event`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Classified {
    /// `policy_event.matched`.
    pub matched: Mask,
    /// `policy_event.groups`.
    pub groups: [u32; MAX_ANCHORS],
}

/// AND dimension `d` for the event's `values` (`dim_step()`).
fn dimension(run: &mut Run<'_>, d: &DimConfig, values: &KernelValues) {
    let t = run.t;
    if d.kind != dim_kind::RELATION && !values.present(d.field) {
        run.and(d.absent);
        return;
    }
    match d.kind {
        dim_kind::STR => {
            let s = values.strings.get(&d.field).cloned().unwrap_or_default();
            run.string(
                d,
                &s,
                values.incomplete.contains(&d.field),
                values.truncated.contains(&d.field),
            );
        }
        dim_kind::NUM => run.num(d, values.nums.get(&d.field).copied().unwrap_or(0)),
        dim_kind::RELATION => {
            let (Some(&a), Some(&b)) = (values.nums.get(&d.field), values.nums.get(&d.field2))
            else {
                run.and(d.dflt);
                return;
            };
            let auid = field_index(Field::UserAuid);
            let unset = policy_compiler::lower::UNSET_ID;
            let is_unset = (d.field == auid && a == unset) || (d.field2 == auid && b == unset);
            let holds = match d.op {
                rel_op::EQ => a == b,
                _ if is_unset => false,
                rel_op::LT => a < b,
                _ => a <= b,
            };
            run.num(d, u64::from(holds));
        }
        dim_kind::IP => {
            let id = values
                .ip
                .map(|a| {
                    let key = crate::abi::ip_lpm_key(d.ns, a);
                    let bits = 32 + 8 + if ip_key_addr(a).0 == 4 { 32 } else { 128 };
                    lpm(&t.ip_lpm, &key, bits)
                })
                .unwrap_or(None)
                .unwrap_or(d.dflt);
            run.and(id);
        }
        dim_kind::CAPS => {
            if d.caps_count == 0 {
                run.and(d.dflt);
                return;
            }
            let have = if d.field == field_index(Field::CredNewCaps) {
                values.new_caps.unwrap_or(0)
            } else {
                values.caps.unwrap_or(0)
            };
            let first = d.caps_first as usize;
            for e in &t.caps[first..first + d.caps_count as usize] {
                run.and(if have & e.caps == e.caps {
                    e.held
                } else {
                    e.lacking
                });
            }
        }
        dim_kind::CGROUP => {
            let id = t
                .cgroup_exact
                .iter()
                .find(|(k, _)| k.ns == d.ns && k.cgroup_id == values.cgroup)
                .map(|(_, id)| *id)
                .unwrap_or(d.dflt);
            run.and(id);
        }
        _ => run.acc = [0; MASK_WORDS],
    }
}

/// The terms the kernel matches for an event of `hook` with `values`, or
/// `None` when the hook has no terms (the program returns at once). Phase 0
/// is the hook's own words; phase `i > 0` is anchor `i - 1` (see
/// `phase_step()` in the C code).
pub fn classify(t: &KernelTables, hook: Hook, values: &KernelValues) -> Option<Classified> {
    let cfg = t.hooks.get(&hook)?;
    let mut out = Classified {
        matched: [0; MASK_WORDS],
        groups: [0; MAX_ANCHORS],
    };
    let mut missing = false;
    for i in 0..=cfg.nanchors.min(MAX_ANCHORS as u32) as usize {
        let (gkey, mid, wlo, whi) = if i == 0 {
            (cfg.group, cfg.terms, 0, cfg.words as usize)
        } else {
            let a = &cfg.anchors[i - 1];
            if !values.present(a.field) || values.incomplete.contains(&a.field) {
                continue;
            }
            let lpm_kinds = [
                dim_kind::ANCHOR_PREFIX,
                dim_kind::ANCHOR_IP,
                dim_kind::ANCHOR_RANGE,
            ];
            let hit = if lpm_kinds.contains(&a.kind) {
                let mut key = [0u8; 256];
                key[0] = a.ns as u8;
                let bits = if a.kind == dim_kind::ANCHOR_RANGE {
                    // The number, 8 bytes big-endian.
                    let v = values.nums.get(&a.field).copied().unwrap_or(0);
                    key[1..9].copy_from_slice(&v.to_be_bytes());
                    8 + 64
                } else if a.kind == dim_kind::ANCHOR_IP {
                    // The family byte and the address.
                    let Some(ip) = values.ip else { continue };
                    let (family, addr) = ip_key_addr(ip);
                    key[1] = family;
                    key[2..18].copy_from_slice(&addr);
                    8 + 8 + if family == 4 { 32 } else { 128 }
                } else {
                    // The first 255 bytes and, when shorter, the zero after them.
                    let s = values.strings.get(&a.field).cloned().unwrap_or_default();
                    let llen = s.len().min(STR_LPM_LEN);
                    key[1..1 + llen].copy_from_slice(&s[..llen]);
                    8 + 8 * (if llen < STR_LPM_LEN { llen + 1 } else { llen }) as u32
                };
                lpm(&as_arrays(&t.anchor_prefix), &key, bits)
            } else {
                let mut data = [0u8; PATH_KEY_LEN];
                if a.kind == dim_kind::NUM {
                    let v = values.nums.get(&a.field).copied().unwrap_or(0);
                    data[..8].copy_from_slice(&v.to_be_bytes());
                } else {
                    let s = values.strings.get(&a.field).cloned().unwrap_or_default();
                    if s.len() > PATH_KEY_LEN - 1 {
                        continue;
                    }
                    data[..s.len()].copy_from_slice(&s);
                }
                t.anchor_exact
                    .iter()
                    .find(|(k, _)| k.ns == a.ns && k.data == data)
                    .map(|(_, av)| *av)
            };
            let Some(av) = hit else {
                continue;
            };
            let (lo, hi) = ((a.window & 0xffff) as usize, (a.window >> 16) as usize);
            (av.group, av.mask, lo, hi)
        };
        let (Some(g), Some(m)) = (t.groups.get(gkey as usize), t.masks.get(mid as usize)) else {
            missing = true;
            break;
        };
        let whi = whi.min(MASK_WORDS);
        let mut run = Run {
            t,
            acc: [0; MASK_WORDS],
            window: (0, 0),
            missing: false,
        };
        run.acc[wlo..whi].copy_from_slice(&m[wlo..whi]);
        for d in &g.dims[..g.ndims as usize] {
            let (lo, hi) = ((d.window & 0xffff) as usize, (d.window >> 16) as usize);
            run.window = (lo.min(whi), hi.min(whi));
            dimension(&mut run, d, values);
        }
        missing |= run.missing;
        out.matched[wlo..whi].copy_from_slice(&run.acc[wlo..whi]);
        if i > 0 && run.acc[wlo..whi].iter().any(|w| *w != 0) {
            out.groups[i - 1] = gkey + 1;
        }
    }
    if missing {
        out.matched = [0; MASK_WORDS];
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longest_prefix_wins_and_bits_count() {
        let e = [
            (8u32, [1u8, 0, 0], 10u32),
            (16, [1, 2, 0], 11),
            (12, [1, 0x20, 0], 12),
        ];
        assert_eq!(lpm(&e, &[1, 2, 3], 24), Some(11));
        assert_eq!(lpm(&e, &[1, 0x2f, 3], 24), Some(12));
        assert_eq!(lpm(&e, &[1, 0x30, 3], 24), Some(10));
        assert_eq!(lpm(&e, &[2, 2, 3], 24), None);
        // A key with fewer significant bits than an entry does not match it.
        assert_eq!(lpm(&e, &[1, 2, 0], 8), Some(10));
    }
}
