//! Kernel-side limits shared by the compiler, the runtime and the BPF templates.
//!
//! This file has no dependencies so that `runtime/build.rs` can include it and
//! pass the same numbers to clang (`-DPOLICY_MASK_WORDS=…`), keeping the three
//! sides of the ABI in one place. A bundle that respects these limits loads; the
//! compiler refuses anything past them with a diagnostic instead of truncating.

/// Number of `u64` words in a term bitmask, in the kernel and in the bundle
/// evaluator. Fixed at build time because it sizes BPF map values.
pub const MASK_WORDS: usize = 64;

/// Terms one kernel mask holds: one bit per term.
pub const MASK_TERMS: usize = MASK_WORDS * 64;

/// Most terms (rule conjunctions) one hook can hold. Past [`MASK_TERMS`] the
/// kernel splits them into groups by an anchor field (see `layout`), so the
/// real bound is whether a layout exists (`policyc::kernel_limit`); this one
/// only caps lowering's work (262,144: past the 100,000 rules a hook is
/// measured with).
pub const MAX_TERMS_PER_HOOK: usize = 1 << 18;

/// Size in bytes of the path key used by the exact-path hash map and the data
/// part of the path-prefix LPM trie. Keys are zero-padded to this size.
pub const PATH_KEY_LEN: usize = 256;

/// Longest path literal (exact or prefix), in bytes. One byte less than the key
/// so that a key always ends in NUL: a kernel path longer than this can never
/// equal a literal, which keeps exact matching sound for long paths.
pub const MAX_PATH_LITERAL_LEN: usize = PATH_KEY_LEN - 1;

/// Size in bytes of the kernel's path buffer (`PATH_MAX`). A path that does not
/// fit is reported as truncated in the event and counted.
pub const PATH_BUF_LEN: usize = 4096;

/// Most bytes of `argv` copied into an event; longer argument lists are
/// truncated, flagged in the event and counted.
pub const ARGS_BUF_LEN: usize = 1024;

/// Most dimensions (distinct fields, label keys counting as one `k8s`
/// dimension with the other `k8s.*` fields, and field relations) one hook's
/// rules may test: the kernel's per-hook configuration holds this many.
pub const MAX_DIMS_PER_HOOK: usize = 32;

/// Most distinct capability sets tested with `has` on one field of a hook:
/// the kernel checks each per event.
pub const MAX_CAPS_SETS: usize = 64;
