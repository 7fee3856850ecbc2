//! The binary layout shared with `bpf-templates/include/policy_abi.h`.
//!
//! Everything here mirrors a C definition; both sides assert the sizes, so a
//! change on one side that is not made on the other fails the build (C) or the
//! unit tests (Rust).

use policy_compiler::bundle::Hook;
use policy_dsl::schema::Field;

pub use policy_compiler::limits::{ARGS_BUF_LEN, MASK_WORDS, PATH_BUF_LEN, PATH_KEY_LEN};

/// A term bitmask as the kernel stores it: bit `t % 64` of word `t / 64` is term `t`.
pub type Mask = [u64; MASK_WORDS];

/// Names of the maps of the policy object, as declared in `policy.bpf.c`.
pub mod map_names {
    /// `ARRAY_OF_MAPS[SLOTS]`: per slot a `HASH` mask id (`u32`) → [`super::MaskValue`].
    pub const MASKS: &str = "masks";
    /// `ARRAY_OF_MAPS[SLOTS]`: per slot a `HASH` [`super::StrKey`] → mask id.
    pub const STR_EXACT: &str = "str_exact";
    /// `ARRAY_OF_MAPS[SLOTS]`: per slot an `LPM_TRIE` [`super::StrLpmKey`] → mask id.
    pub const STR_PREFIX: &str = "str_prefix";
    /// As [`STR_PREFIX`], over the reversed bytes (suffixes).
    pub const STR_SUFFIX: &str = "str_suffix";
    /// `ARRAY_OF_MAPS[SLOTS]`: per slot an `LPM_TRIE` [`super::NumLpmKey`] → mask id.
    pub const NUM_LPM: &str = "num_lpm";
    /// `ARRAY_OF_MAPS[SLOTS]`: per slot an `LPM_TRIE` [`super::IpLpmKey`] → mask id.
    pub const IP_LPM: &str = "ip_lpm";
    /// `ARRAY_OF_MAPS[SLOTS]`: per slot a `HASH` [`super::CgroupKey`] → mask id.
    pub const CGROUP_EXACT: &str = "cgroup_exact";
    /// `ARRAY_OF_MAPS[SLOTS]`: per slot a `HASH` index (`u32`) → [`super::CapsEntry`].
    pub const CAPS_TABLE: &str = "caps_table";
    /// `ARRAY_OF_MAPS[SLOTS]`: per slot a `HASH` [`super::StrKey`] → [`super::AnchorValue`].
    pub const ANCHOR_EXACT: &str = "anchor_exact";
    /// `ARRAY_OF_MAPS[SLOTS]`: per slot an `LPM_TRIE` [`super::StrLpmKey`] →
    /// [`super::AnchorValue`] (prefix anchors: prefixes as they are, exact
    /// values followed by a zero byte).
    pub const ANCHOR_PREFIX: &str = "anchor_prefix";
    /// `ARRAY_OF_MAPS[SLOTS]`: per slot a `HASH` key (`u32`) → [`super::GroupConfig`].
    pub const GROUP_CONFIG: &str = "group_config";
    /// `ARRAY[SLOTS * NHOOKS]` of [`super::HookConfig`], key `slot * NHOOKS + hook`.
    pub const HOOK_CONFIG: &str = "hook_config";
    /// `ARRAY[1]` of [`super::ActiveSlot`]: the slot in force.
    pub const ACTIVE: &str = "active";
    /// `RINGBUF` of events (see [`crate::event`]).
    pub const EVENTS: &str = "events";
    /// `PERCPU_ARRAY` of `u64` counters indexed by [`super::Stat`].
    pub const STATS: &str = "stats";
    /// The outer maps of the double-buffered tables, one inner map per slot.
    pub const TABLES: [&str; 11] = [
        MASKS,
        STR_EXACT,
        STR_PREFIX,
        STR_SUFFIX,
        NUM_LPM,
        IP_LPM,
        CGROUP_EXACT,
        CAPS_TABLE,
        ANCHOR_EXACT,
        ANCHOR_PREFIX,
        GROUP_CONFIG,
    ];
    /// The maps `policyd` pins (all but the scratch space).
    pub const PINNED: [&str; 15] = [
        MASKS,
        STR_EXACT,
        STR_PREFIX,
        STR_SUFFIX,
        NUM_LPM,
        IP_LPM,
        CGROUP_EXACT,
        CAPS_TABLE,
        ANCHOR_EXACT,
        ANCHOR_PREFIX,
        GROUP_CONFIG,
        HOOK_CONFIG,
        ACTIVE,
        EVENTS,
        STATS,
    ];
    /// Pins of the exec-only policyd (before the generic engine), removed
    /// as stale pins when a crashed old instance left them.
    pub const LEGACY_PINNED: [&str; 4] = [
        "exec_path_exact",
        "exec_path_prefix",
        "exec_config",
        "exec_active",
    ];
    /// Per-CPU scratch space of the programs (not for user space).
    pub const SCRATCH: [&str; 3] = ["scratch", "strbuf", "ptrace_calls"];
}

/// Number of hooks (`NHOOKS`), indexed as [`hook_index`].
pub const NHOOKS: u32 = 8;
/// Number of table slots (`SLOTS`): the tables are double-buffered.
pub const SLOTS: u32 = 2;
/// Most dimensions one hook may test (`MAX_DIMS`).
pub const MAX_DIMS: usize = 32;
/// Most entries of one capability dimension (`MAX_CAPS_ENTRIES`).
pub const MAX_CAPS_ENTRIES: usize = 64;
/// Bytes of a string in an LPM key (`STR_LPM_LEN`): the kernel limits LPM
/// data to 256 bytes, one of which is the namespace.
pub const STR_LPM_LEN: usize = PATH_KEY_LEN - 1;
/// Number of field slots (`NFIELDS`).
pub const NFIELDS: u32 = 32;
/// The field id of the cgroup id (`FIELD_CGROUP`), which stands for every
/// `k8s.*` field.
pub const FIELD_CGROUP: u32 = 30;

/// The kernel's index of a hook (`HOOK_*`): its position in `Hook::ALL`.
pub fn hook_index(hook: Hook) -> u32 {
    Hook::ALL
        .iter()
        .position(|(h, _)| *h == hook)
        .expect("every hook is in ALL") as u32
}

/// The kernel's id of a field (`FIELD_*`): its position in `Field::ALL`.
pub fn field_index(field: Field) -> u32 {
    Field::ALL
        .iter()
        .position(|f| *f == field)
        .expect("every field is in ALL") as u32
}

/// `dim_config.kind` values (`DIM_*`).
pub mod dim_kind {
    /// Path or string: `str_exact`, `str_prefix`, `str_suffix`.
    pub const STR: u32 = 1;
    /// Integer, enum index or bool: `num_lpm`.
    pub const NUM: u32 = 2;
    /// Address: `ip_lpm`.
    pub const IP: u32 = 3;
    /// Capability set: `caps_table`.
    pub const CAPS: u32 = 4;
    /// Relation between two numeric fields, 0 or 1: `num_lpm`.
    pub const RELATION: u32 = 5;
    /// cgroup id (every `k8s.*` field): `cgroup_exact`.
    pub const CGROUP: u32 = 6;
    /// Anchors only (`anchor_config.kind`, `ANCHOR_PREFIX`): a string looked
    /// up in `anchor_prefix`, its bytes followed by a zero byte.
    pub const ANCHOR_PREFIX: u32 = 7;
    /// Anchors only (`ANCHOR_IP`): the address looked up in
    /// `anchor_prefix` as its family byte (4 or 6) and 16 address bytes.
    pub const ANCHOR_IP: u32 = 8;
    /// Anchors only (`ANCHOR_RANGE`): the number looked up in
    /// `anchor_prefix` as 8 big-endian bytes (keys: a range's aligned blocks).
    pub const ANCHOR_RANGE: u32 = 9;
}

/// `dim_config.tables` bits of a string dimension (`TABLE_*`).
pub mod table_bits {
    /// `str_exact` holds entries of the dimension.
    pub const EXACT: u32 = 1 << 0;
    /// `str_prefix` holds entries.
    pub const PREFIX: u32 = 1 << 1;
    /// `str_suffix` holds entries (and `suffix_dflt` is set).
    pub const SUFFIX: u32 = 1 << 2;
}

/// `dim_config.op` of a relation (`REL_*`).
pub mod rel_op {
    /// `==`
    pub const EQ: u32 = 0;
    /// `<`
    pub const LT: u32 = 1;
    /// `<=`
    pub const LE: u32 = 2;
}

/// One dimension of a hook (`struct dim_config`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DimConfig {
    /// [`dim_kind`] value.
    pub kind: u32,
    /// Field id ([`field_index`], or [`FIELD_CGROUP`]); a relation's left field.
    pub field: u32,
    /// A relation's right field.
    pub field2: u32,
    /// A relation's [`rel_op`].
    pub op: u32,
    /// Key namespace of the dimension in its tables (< 256 for strings).
    pub ns: u32,
    /// [`table_bits`] of a string dimension.
    pub tables: u32,
    /// Mask id of a value matching no entry (prefix side for strings).
    pub dflt: u32,
    /// Mask id of the suffix side without a matching suffix.
    pub suffix_dflt: u32,
    /// Mask id when the event does not supply the field.
    pub absent: u32,
    /// Capability dimension: first index in `caps_table`.
    pub caps_first: u32,
    /// Capability dimension: number of entries.
    pub caps_count: u32,
    /// The words of its bundle's terms, `lo | hi << 16`: its masks hold
    /// only those words, and an AND leaves the others untouched.
    pub window: u32,
}

/// Most anchors per hook over every bundle (`MAX_ANCHORS`), as the
/// compiler plans them.
pub const MAX_ANCHORS: usize = policy_compiler::layout::MAX_ANCHORS;

/// An anchor of a hook (`struct anchor_config`): a string or integer field
/// whose value selects one group of the hook's terms (see
/// `policy_compiler::layout`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AnchorConfig {
    /// Field id ([`field_index`]) of the anchor, a path or string field.
    pub field: u32,
    /// Key namespace of its values in `anchor_exact` (any `u32`), or in
    /// `anchor_prefix` (0..=255, the key's namespace byte).
    pub ns: u32,
    /// The group words, `lo | hi << 16`.
    pub window: u32,
    /// [`dim_kind::STR`]: `anchor_exact`, the key data is the string;
    /// [`dim_kind::NUM`]: `anchor_exact`, the value as 8 big-endian bytes;
    /// [`dim_kind::ANCHOR_PREFIX`]: `anchor_prefix`, the string's first 255
    /// bytes followed by a zero byte when shorter; [`dim_kind::ANCHOR_IP`]:
    /// `anchor_prefix`, the address family byte and the address;
    /// [`dim_kind::ANCHOR_RANGE`]: `anchor_prefix`, the number as 8
    /// big-endian bytes.
    pub kind: u32,
}

/// A value of `anchor_exact` and `anchor_prefix` (`struct anchor_value`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AnchorValue {
    /// Key of the group in `group_config`.
    pub group: u32,
    /// Mask id of the group's terms this value satisfies.
    pub mask: u32,
}

/// A value of `group_config` (`struct group_config`): the dimensions and
/// verdict masks of a hook's own words ([`HookConfig::group`]) or of one
/// anchored group ([`AnchorValue::group`]).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupConfig {
    /// Dimensions in use.
    pub ndims: u32,
    /// Mask id of the terms of `deny` rules.
    pub deny: u32,
    /// Mask id of the terms of `kill` rules.
    pub kill: u32,
    /// Mask id of the terms of `allow` rules.
    pub allow: u32,
    /// Mask id of the terms of auditing rules.
    pub audit: u32,
    /// Mask id of the terms of `default deny` scopes.
    pub default_deny: u32,
    /// Mask id of the terms of monitor-mode policies (never enforced).
    pub monitor: u32,
    /// Mask id of the terms of rules with counters.
    pub count: u32,
    /// The dimensions, `ndims` used.
    pub dims: [DimConfig; MAX_DIMS],
}

impl Default for GroupConfig {
    fn default() -> Self {
        GroupConfig {
            ndims: 0,
            deny: 0,
            kill: 0,
            allow: 0,
            audit: 0,
            default_deny: 0,
            monitor: 0,
            count: 0,
            dims: [DimConfig::default(); MAX_DIMS],
        }
    }
}

/// A value of `hook_config` (`struct hook_config`): one hook in one slot.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HookConfig {
    /// Load number of the bundle in this slot (1 = the first); copied into
    /// every event the slot decides.
    pub generation: u64,
    /// `1 << field id` of every field the dimensions and anchors read.
    pub fields: u64,
    /// 1 when the hook has terms; 0 makes the program only count runs.
    pub has_terms: u32,
    /// The hook's own mask words in use, `0..=MASK_WORDS` (anchored
    /// groups' windows come after).
    pub words: u32,
    /// Mask id of every term of the hook's own words.
    pub terms: u32,
    /// `group_config` key of the hook's own dimensions and verdict masks.
    pub group: u32,
    /// Anchors in use.
    pub nanchors: u32,
    /// Padding, zero.
    pub pad: u32,
    /// The anchors, `nanchors` used.
    pub anchors: [AnchorConfig; MAX_ANCHORS],
}

/// The value of `active[0]` (`struct active_slot`): the slot in force.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ActiveSlot {
    /// The slot the programs use (0 or 1). The programs read only this.
    pub slot: u32,
    /// Padding, zero.
    pub pad: u32,
    /// The slot's generation, for operators.
    pub generation: u64,
}

/// A value of the `masks` table (`struct mask_value`): the mask and the
/// range of its words that are not zero, which the programs use to AND only
/// the words that can matter.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MaskValue {
    /// The term mask.
    pub words: Mask,
    /// First word not zero (`lo == hi` for the empty mask).
    pub lo: u32,
    /// One past the last word not zero.
    pub hi: u32,
}

impl MaskValue {
    /// `mask` with its range of non-zero words.
    pub fn new(mask: Mask) -> MaskValue {
        let lo = mask.iter().position(|&w| w != 0);
        let hi = mask.iter().rposition(|&w| w != 0);
        let (lo, hi) = match (lo, hi) {
            (Some(lo), Some(hi)) => (lo as u32, hi as u32 + 1),
            _ => (0, 0),
        };
        MaskValue {
            words: mask,
            lo,
            hi,
        }
    }
}

/// Key of `str_exact` (`struct str_key`): namespace and zero-padded string.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StrKey {
    /// The dimension's namespace.
    pub ns: u32,
    /// The string, zero-padded (at most `PATH_KEY_LEN - 1` bytes).
    pub data: [u8; PATH_KEY_LEN],
}

/// Data of a `str_prefix`/`str_suffix` key after the prefix length (which
/// aya's `lpm_trie::Key` adds): namespace byte and string bytes.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StrLpmKey {
    /// The dimension's namespace (string dimensions are numbered 0..=255).
    pub ns: u8,
    /// The string (reversed for suffixes), zero-padded.
    pub data: [u8; STR_LPM_LEN],
}

/// Data of a `num_lpm` key after the prefix length: namespace (4 bytes) and
/// value (8 bytes), both big-endian (`struct num_lpm_key` without `prefixlen`).
pub type NumLpmKey = [u8; 12];

/// A `num_lpm` key's data for `value` in namespace `ns`.
pub fn num_lpm_key(ns: u32, value: u64) -> NumLpmKey {
    let mut k = [0u8; 12];
    k[..4].copy_from_slice(&ns.to_be_bytes());
    k[4..].copy_from_slice(&value.to_be_bytes());
    k
}

/// Data of an `ip_lpm` key after the prefix length: namespace (4 bytes,
/// big-endian), family (4 or 6), address (16 bytes, network order, IPv4 in
/// the first 4) and 3 zero bytes (`struct ip_lpm_key` without `prefixlen`).
pub type IpLpmKey = [u8; 24];

/// An `ip_lpm` key's data for `addr` in namespace `ns`.
pub fn ip_lpm_key(ns: u32, addr: std::net::IpAddr) -> IpLpmKey {
    let mut k = [0u8; 24];
    k[..4].copy_from_slice(&ns.to_be_bytes());
    match addr {
        std::net::IpAddr::V4(a) => {
            k[4] = 4;
            k[5..9].copy_from_slice(&a.octets());
        }
        std::net::IpAddr::V6(a) => {
            k[4] = 6;
            k[5..21].copy_from_slice(&a.octets());
        }
    }
    k
}

/// Key of `cgroup_exact`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CgroupKey {
    /// The dimension's namespace.
    pub ns: u32,
    /// Padding, zero.
    pub pad: u32,
    /// cgroup v2 id (the cgroup directory's inode number).
    pub cgroup_id: u64,
}

/// A value of `caps_table` (`struct caps_entry`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CapsEntry {
    /// Required set: bit n = capability n.
    pub caps: u64,
    /// Mask id when the value holds every capability of `caps`.
    pub held: u32,
    /// Mask id otherwise.
    pub lacking: u32,
}

// SAFETY: plain old data, `repr(C)`, no implicit padding (sizes asserted
// below), any bit pattern is valid.
unsafe impl aya::Pod for HookConfig {}
// SAFETY: as HookConfig.
unsafe impl aya::Pod for ActiveSlot {}
// SAFETY: as HookConfig.
unsafe impl aya::Pod for MaskValue {}
// SAFETY: as HookConfig.
unsafe impl aya::Pod for StrKey {}
// SAFETY: as HookConfig.
unsafe impl aya::Pod for StrLpmKey {}
// SAFETY: as HookConfig.
unsafe impl aya::Pod for CgroupKey {}
// SAFETY: as HookConfig.
unsafe impl aya::Pod for CapsEntry {}
// SAFETY: as HookConfig.
unsafe impl aya::Pod for AnchorValue {}
// SAFETY: as HookConfig.
unsafe impl aya::Pod for GroupConfig {}

/// Size in bytes of `struct policy_event`, the fixed header of a ring-buffer record.
pub const POLICY_EVENT_HEADER_SIZE: usize = 176 + 8 * MASK_WORDS;

/// `policy_event.verdict` values (`VERDICT_*`).
pub mod verdict {
    /// Let through.
    pub const ALLOW: u32 = 0;
    /// Refused (EPERM on cgroup hooks, SIGKILL on tracepoint hooks).
    pub const DENY: u32 = 1;
    /// Killed.
    pub const KILL: u32 = 2;
}

/// `policy_event.flags` bits, with the names used in exported events.
pub mod flags {
    /// process.binary's walk did not reach the root, or the path is longer
    /// than `PATH_BUF_LEN - 1`; an incomplete path was decided on the
    /// dimension's default.
    pub const BINARY_TRUNCATED: u32 = 1 << 0;
    /// `argv` was longer than `ARGS_BUF_LEN` bytes.
    pub const ARGS_TRUNCATED: u32 = 1 << 1;
    /// The cwd path was truncated.
    pub const CWD_TRUNCATED: u32 = 1 << 2;
    /// The parent binary path was truncated.
    pub const PARENT_TRUNCATED: u32 = 1 << 3;
    /// `bpf_send_signal(SIGKILL)` succeeded.
    pub const KILL_SENT: u32 = 1 << 4;
    /// `bpf_send_signal(SIGKILL)` failed: the process was not killed.
    pub const KILL_FAILED: u32 = 1 << 5;
    /// The executed file had been unlinked.
    pub const BINARY_UNLINKED: u32 = 1 << 6;
    /// No executable (kernel thread, unreadable `bprm->file`); the binary is empty.
    pub const NO_BINARY: u32 = 1 << 7;
    /// The file path or target binary was truncated.
    pub const OBJECT_TRUNCATED: u32 = 1 << 8;
    /// The operation was refused with EPERM (connect, bind).
    pub const REFUSED: u32 = 1 << 9;

    /// Every flag with its exported name, in bit order.
    pub const NAMES: [(u32, &str); 10] = [
        (BINARY_TRUNCATED, "binary_truncated"),
        (ARGS_TRUNCATED, "args_truncated"),
        (CWD_TRUNCATED, "cwd_truncated"),
        (PARENT_TRUNCATED, "parent_truncated"),
        (KILL_SENT, "kill_sent"),
        (KILL_FAILED, "kill_failed"),
        (BINARY_UNLINKED, "binary_unlinked"),
        (NO_BINARY, "no_binary"),
        (OBJECT_TRUNCATED, "object_truncated"),
        (REFUSED, "refused"),
    ];

    /// The names of the flags set in `bits`, in bit order (unknown bits are ignored).
    pub fn names(bits: u32) -> Vec<&'static str> {
        names_in(bits, &NAMES)
    }

    /// The names of `table` (bit, name) whose bit is set in `bits`, in
    /// table order.
    pub fn names_in(bits: u32, table: &[(u32, &'static str)]) -> Vec<&'static str> {
        table
            .iter()
            .filter(|(b, _)| bits & b != 0)
            .map(|(_, n)| *n)
            .collect()
    }
}

/// Indices of the `stats` per-CPU counters (`enum policy_stat`); indices
/// `0..NHOOKS` count the runs of each hook's program(s).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum Stat {
    /// Events written to the ring buffer.
    Events = 8,
    /// Events lost because the ring buffer was full.
    RingbufDrops = 9,
    /// Binary paths truncated.
    BinaryTruncated = 10,
    /// Argument lists truncated.
    ArgsTruncated = 11,
    /// `SIGKILL`s sent.
    Kills = 12,
    /// `SIGKILL`s that could not be sent.
    KillFailed = 13,
    /// cwd, parent, file or target paths truncated.
    OtherPathTruncated = 14,
    /// Runs that found no active slot, config or inner table.
    NoConfig = 15,
    /// Runs that found no scratch space.
    ScratchMissing = 16,
    /// Operations refused with EPERM.
    Refused = 17,
    /// Runs that found a mask id without a mask (decided on no terms).
    MaskMissing = 18,
    /// Runs that found this CPU's scratch space in use by a preempted run
    /// of another program: not decided (allowed), counted.
    ScratchBusy = 19,
}

impl Stat {
    /// Number of counters (`STAT__COUNT`), the per-hook run counters included.
    pub const COUNT: u32 = 20;
    /// Every counter but the per-hook run counters, in index order.
    pub const ALL: [Stat; 12] = [
        Stat::Events,
        Stat::RingbufDrops,
        Stat::BinaryTruncated,
        Stat::ArgsTruncated,
        Stat::Kills,
        Stat::KillFailed,
        Stat::OtherPathTruncated,
        Stat::NoConfig,
        Stat::ScratchMissing,
        Stat::Refused,
        Stat::MaskMissing,
        Stat::ScratchBusy,
    ];

    /// The counter's name in logs and metrics.
    pub fn name(self) -> &'static str {
        match self {
            Stat::Events => "events",
            Stat::RingbufDrops => "ringbuf_drops",
            Stat::BinaryTruncated => "binary_truncated",
            Stat::ArgsTruncated => "args_truncated",
            Stat::Kills => "kills",
            Stat::KillFailed => "kill_failed",
            Stat::OtherPathTruncated => "other_path_truncated",
            Stat::NoConfig => "no_config",
            Stat::ScratchMissing => "scratch_missing",
            Stat::Refused => "refused",
            Stat::MaskMissing => "mask_missing",
            Stat::ScratchBusy => "scratch_busy",
        }
    }
}

const _: () = assert!(std::mem::size_of::<DimConfig>() == 48);
const _: () = assert!(std::mem::size_of::<HookConfig>() == 40 + 16 * MAX_ANCHORS);
const _: () = assert!(std::mem::size_of::<GroupConfig>() == 32 + 48 * MAX_DIMS);
const _: () = assert!(std::mem::size_of::<AnchorValue>() == 8);
const _: () = assert!(std::mem::size_of::<ActiveSlot>() == 16);
const _: () = assert!(std::mem::size_of::<MaskValue>() == 8 * MASK_WORDS + 8);
const _: () = assert!(std::mem::size_of::<StrKey>() == 4 + PATH_KEY_LEN);
const _: () = assert!(std::mem::size_of::<StrLpmKey>() == 256);
const _: () = assert!(std::mem::size_of::<CgroupKey>() == 16);
const _: () = assert!(std::mem::size_of::<CapsEntry>() == 16);
const _: () = assert!(PATH_KEY_LEN <= PATH_BUF_LEN);
// String lengths travel as u16 in the event header.
const _: () = assert!(PATH_BUF_LEN <= u16::MAX as usize);
const _: () = assert!(ARGS_BUF_LEN <= u16::MAX as usize);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mask_value_spans_its_non_zero_words() {
        let mut m = [0u64; MASK_WORDS];
        assert_eq!(MaskValue::new(m).lo, MaskValue::new(m).hi);
        m[3] = 1;
        m[9] = 1 << 63;
        let v = MaskValue::new(m);
        assert_eq!((v.lo, v.hi), (3, 10));
        assert_eq!(v.words, m);
    }
}
