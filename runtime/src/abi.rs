//! The binary layout shared with `bpf-templates/include/exec_abi.h`.
//!
//! Everything here mirrors a C definition; both sides assert the sizes, so a
//! change on one side that is not made on the other fails the build (C) or the
//! unit tests (Rust).

pub use policy_compiler::limits::{ARGS_BUF_LEN, MASK_WORDS, PATH_BUF_LEN, PATH_KEY_LEN};

/// A term bitmask as the kernel stores it: bit `t % 64` of word `t / 64` is term `t`.
pub type Mask = [u64; MASK_WORDS];

/// Names of the maps of the exec program, as declared in `exec.bpf.c`.
pub mod map_names {
    /// `ARRAY_OF_MAPS[EXEC_SLOTS]`: per slot, a `HASH`, key `[u8; PATH_KEY_LEN]`
    /// (zero-padded path), value [`super::Mask`], created per bundle.
    pub const EXEC_PATH_EXACT: &str = "exec_path_exact";
    /// `ARRAY_OF_MAPS[EXEC_SLOTS]`: per slot, an `LPM_TRIE`, key
    /// [`super::PathLpmKey`], value [`super::Mask`], created per bundle.
    pub const EXEC_PATH_PREFIX: &str = "exec_path_prefix";
    /// `ARRAY[EXEC_SLOTS]` of [`super::ExecConfig`], indexed by slot.
    pub const EXEC_CONFIG: &str = "exec_config";
    /// `ARRAY[1]` of [`super::ExecActive`]: the slot in force.
    pub const EXEC_ACTIVE: &str = "exec_active";
    /// `RINGBUF` of exec events (see [`crate::event`]).
    pub const EVENTS: &str = "events";
    /// `PERCPU_ARRAY` of `u64` counters indexed by [`super::Stat`].
    pub const STATS: &str = "stats";
    /// `PERCPU_ARRAY[1]` scratch space of the program (not for user space).
    pub const EXEC_SCRATCH: &str = "exec_scratch";
    /// The maps `policyd` pins (all but the scratch).
    pub const PINNED: [&str; 6] = [
        EXEC_PATH_EXACT,
        EXEC_PATH_PREFIX,
        EXEC_CONFIG,
        EXEC_ACTIVE,
        EVENTS,
        STATS,
    ];
}

/// Name of the exec program in the object.
pub const EXEC_PROGRAM: &str = "policy_exec";
/// Tracepoint the exec program attaches to (raw tracepoint).
pub const EXEC_TRACEPOINT: &str = "sched_process_exec";

/// `exec_config.dims` bit: rules test `process.binary`.
pub const EXEC_DIM_BINARY: u32 = 1 << 0;
/// `exec_config.binary_tables` bit: `exec_path_exact` holds entries.
pub const EXEC_BINARY_EXACT: u32 = 1 << 0;
/// `exec_config.binary_tables` bit: `exec_path_prefix` holds entries.
pub const EXEC_BINARY_PREFIX: u32 = 1 << 1;

/// Number of table slots (`EXEC_SLOTS`): the tables are double-buffered.
pub const EXEC_SLOTS: u32 = 2;

/// A value of the `exec_config` array, one per slot (`struct exec_config`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ExecConfig {
    /// Every term of the exec hook.
    pub terms: Mask,
    /// `process.binary` mask of a path that matches no entry.
    pub binary_default: Mask,
    /// Terms of `deny` rules.
    pub deny: Mask,
    /// Terms of `kill` rules.
    pub kill: Mask,
    /// Terms of `allow` rules.
    pub allow: Mask,
    /// Terms of auditing rules.
    pub audit: Mask,
    /// 1 when the hook has terms; 0 makes the program only count execs.
    pub has_terms: u32,
    /// `EXEC_DIM_*` bits: the dimensions the rules test.
    pub dims: u32,
    /// `EXEC_BINARY_*` bits: which `process.binary` tables hold entries.
    pub binary_tables: u32,
    /// Padding, zero.
    pub pad: u32,
    /// Load number of the bundle in this slot (1 = the first); copied into
    /// every event the slot decides.
    pub generation: u64,
}

// SAFETY: plain old data, `repr(C)`, no padding (asserted below), any bit
// pattern is valid.
unsafe impl aya::Pod for ExecConfig {}

/// The value of `exec_active[0]` (`struct exec_active`): the slot in force.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ExecActive {
    /// The slot the program uses (0 or 1). The program reads only this.
    pub slot: u32,
    /// Padding, zero.
    pub pad: u32,
    /// `exec_config[slot].generation`, for operators.
    pub generation: u64,
}

// SAFETY: as ExecConfig.
unsafe impl aya::Pod for ExecActive {}

/// Key of `exec_path_prefix` (`struct path_lpm_key`) without the prefix
/// length, which aya's [`aya::maps::lpm_trie::Key`] adds.
pub type PathKey = [u8; PATH_KEY_LEN];

/// Size in bytes of `struct exec_event`, the fixed header of a ring-buffer record.
pub const EXEC_EVENT_HEADER_SIZE: usize = 88 + 8 * MASK_WORDS;

/// `exec_event.flags` bits, with the names used in exported events.
pub mod flags {
    /// The binary path walk did not reach the root, or the path is longer
    /// than `PATH_BUF_LEN - 1`; the decision used the default mask when the
    /// walk was incomplete.
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
    /// `bprm->file` was unreadable; the binary path is empty.
    pub const NO_BINARY: u32 = 1 << 7;

    /// Every flag with its exported name, in bit order.
    pub const NAMES: [(u32, &str); 8] = [
        (BINARY_TRUNCATED, "binary_truncated"),
        (ARGS_TRUNCATED, "args_truncated"),
        (CWD_TRUNCATED, "cwd_truncated"),
        (PARENT_TRUNCATED, "parent_truncated"),
        (KILL_SENT, "kill_sent"),
        (KILL_FAILED, "kill_failed"),
        (BINARY_UNLINKED, "binary_unlinked"),
        (NO_BINARY, "no_binary"),
    ];

    /// The names of the flags set in `bits`, in bit order (unknown bits are ignored).
    pub fn names(bits: u32) -> Vec<&'static str> {
        NAMES
            .iter()
            .filter(|(b, _)| bits & b != 0)
            .map(|(_, n)| *n)
            .collect()
    }
}

/// Indices of the `stats` per-CPU counters (`enum exec_stat`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum Stat {
    /// `sched_process_exec` runs.
    Execs = 0,
    /// Events written to the ring buffer.
    Events = 1,
    /// Events lost because the ring buffer was full.
    RingbufDrops = 2,
    /// Binary paths truncated.
    BinaryTruncated = 3,
    /// Argument lists truncated.
    ArgsTruncated = 4,
    /// `SIGKILL`s sent.
    Kills = 5,
    /// `SIGKILL`s that could not be sent.
    KillFailed = 6,
    /// cwd or parent binary paths truncated.
    OtherPathTruncated = 7,
    /// Runs that found no `exec_active`, `exec_config` or inner table.
    NoConfig = 8,
    /// Runs that found no scratch space.
    ScratchMissing = 9,
}

impl Stat {
    /// Number of counters (`STAT__COUNT`).
    pub const COUNT: u32 = 10;
    /// Every counter, in index order.
    pub const ALL: [Stat; 10] = [
        Stat::Execs,
        Stat::Events,
        Stat::RingbufDrops,
        Stat::BinaryTruncated,
        Stat::ArgsTruncated,
        Stat::Kills,
        Stat::KillFailed,
        Stat::OtherPathTruncated,
        Stat::NoConfig,
        Stat::ScratchMissing,
    ];

    /// The counter's name in logs and metrics.
    pub fn name(self) -> &'static str {
        match self {
            Stat::Execs => "execs",
            Stat::Events => "events",
            Stat::RingbufDrops => "ringbuf_drops",
            Stat::BinaryTruncated => "binary_truncated",
            Stat::ArgsTruncated => "args_truncated",
            Stat::Kills => "kills",
            Stat::KillFailed => "kill_failed",
            Stat::OtherPathTruncated => "other_path_truncated",
            Stat::NoConfig => "no_config",
            Stat::ScratchMissing => "scratch_missing",
        }
    }
}

const _: () = assert!(std::mem::size_of::<ExecConfig>() == 6 * 8 * MASK_WORDS + 24);
const _: () = assert!(std::mem::size_of::<ExecActive>() == 16);
const _: () = assert!(PATH_KEY_LEN <= PATH_BUF_LEN);
// String lengths travel as u16 in the event header.
const _: () = assert!(PATH_BUF_LEN <= u16::MAX as usize);
const _: () = assert!(ARGS_BUF_LEN <= u16::MAX as usize);
