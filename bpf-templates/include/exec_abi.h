/* SPDX-License-Identifier: GPL-2.0 */
/*
 * exec_abi.h — the layout shared by exec.bpf.c and policyd (runtime/src/abi.rs).
 *
 * Any change here must be mirrored in runtime/src/abi.rs; both sides assert
 * the sizes below. The limits come from compiler/src/limits.rs through
 * -DPOLICY_* flags set by runtime/build.rs; the defaults only serve editors.
 */
#ifndef POLICYC_EXEC_ABI_H
#define POLICYC_EXEC_ABI_H

#ifndef POLICY_MASK_WORDS
#define POLICY_MASK_WORDS 4
#endif
#ifndef POLICY_PATH_KEY_LEN
#define POLICY_PATH_KEY_LEN 256
#endif
#ifndef POLICY_PATH_BUF_LEN
#define POLICY_PATH_BUF_LEN 4096
#endif
#ifndef POLICY_ARGS_BUF_LEN
#define POLICY_ARGS_BUF_LEN 1024
#endif

#define MASK_WORDS POLICY_MASK_WORDS
#define PATH_KEY_LEN POLICY_PATH_KEY_LEN
#define PATH_BUF_LEN POLICY_PATH_BUF_LEN
#define ARGS_BUF_LEN POLICY_ARGS_BUF_LEN

/*
 * Path walk limits. A path component takes at least 2 bytes ("/x"), so a path
 * of at most PATH_KEY_LEN - 1 bytes (the longest literal a rule may name) has
 * at most 127 components: with PATH_MAX_DEPTH = 128 every path that can equal
 * an exact literal is always resolved completely. PATH_MAX_MOUNTS bounds the
 * mount crossings of one walk.
 */
#define PATH_MAX_DEPTH 128
#define PATH_MAX_MOUNTS 32
#define PATH_NAME_MAX 255 /* NAME_MAX: longest d_name */

/* exec_config.dims: which dimensions the bundle's exec rules test. */
#define EXEC_DIM_BINARY (1u << 0)
/* exec_config.binary_tables: which process.binary tables hold entries. */
#define EXEC_BINARY_EXACT (1u << 0)
#define EXEC_BINARY_PREFIX (1u << 1)

/* Value of an exec_config entry (ARRAY[EXEC_SLOTS], key = slot). Masks are term bitmasks:
 * bit t % 64 of word t / 64 is term t of the bundle's exec hook. */
struct exec_config {
	__u64 terms[MASK_WORDS];          /* every term of the hook */
	__u64 binary_default[MASK_WORDS]; /* process.binary: value matching no entry */
	__u64 deny[MASK_WORDS];
	__u64 kill[MASK_WORDS];
	__u64 allow[MASK_WORDS];
	__u64 audit[MASK_WORDS];
	__u32 has_terms;     /* 0: the hook has no rules, only count execs */
	__u32 dims;          /* EXEC_DIM_* */
	__u32 binary_tables; /* EXEC_BINARY_* */
	__u32 _pad;
	__u64 generation;    /* bundle load number of this slot (1 = first) */
};

/* Number of table slots (double buffering). */
#define EXEC_SLOTS 2

/* Value of exec_active (ARRAY[1], key 0): the slot in force. The program
 * reads only `slot`; `generation` mirrors exec_config[slot].generation for
 * operators (bpftool map dump). */
struct exec_active {
	__u32 slot;
	__u32 _pad;
	__u64 generation;
};

/* Key of exec_path_prefix (LPM_TRIE). prefixlen is in bits. */
struct path_lpm_key {
	__u32 prefixlen;
	__u8 data[PATH_KEY_LEN];
};

/* exec_event.flags */
#define EV_BINARY_TRUNCATED (1u << 0) /* deeper than PATH_MAX_DEPTH or longer than PATH_BUF_LEN - 1 */
#define EV_ARGS_TRUNCATED (1u << 1)   /* argv longer than ARGS_BUF_LEN */
#define EV_CWD_TRUNCATED (1u << 2)
#define EV_PARENT_TRUNCATED (1u << 3)
#define EV_KILL_SENT (1u << 4)        /* bpf_send_signal(SIGKILL) returned 0 */
#define EV_KILL_FAILED (1u << 5)      /* bpf_send_signal(SIGKILL) failed */
#define EV_BINARY_UNLINKED (1u << 6)  /* the executed file was unlinked (d_path's " (deleted)") */
#define EV_NO_BINARY (1u << 7)        /* bprm->file unreadable: binary path empty */

/*
 * Ring buffer record: this fixed header followed by the strings binary, args,
 * cwd and parent binary, back to back, with the lengths given in the header
 * (no NUL terminators; args holds argv NUL-separated as in mm->arg_start).
 * Records are variable length: header + sum of the four lengths.
 */
struct exec_event {
	__u64 ktime_boot_ns;       /* bpf_ktime_get_boot_ns() */
	__u64 cgroup_id;           /* bpf_get_current_cgroup_id() (cgroup v2) */
	__u64 matched[MASK_WORDS]; /* terms matched by the event */
	__u32 pid;                 /* task->tgid */
	__u32 tid;                 /* task->pid */
	__u32 ppid;                /* task->real_parent->tgid */
	__u32 uid;                 /* task->cred->uid */
	__u32 euid;
	__u32 gid;
	__u32 egid;
	__u32 auid;                /* task->loginuid, 4294967295 when unset */
	__u32 flags;               /* EV_* */
	__u16 binary_len;
	__u16 args_len;
	__u16 cwd_len;
	__u16 parent_len;
	__u32 _pad;
	char comm[16];             /* task->comm after exec */
	__u64 generation;          /* exec_config[slot].generation that decided */
};

#define EXEC_EVENT_HEADER_SIZE (88 + 8 * MASK_WORDS)

/* Indices of the stats PERCPU_ARRAY (u64 counters). */
enum exec_stat {
	STAT_EXECS = 0,             /* sched_process_exec runs */
	STAT_EVENTS = 1,            /* events written to the ring buffer */
	STAT_RINGBUF_DROPS = 2,     /* bpf_ringbuf_output failures (buffer full) */
	STAT_BINARY_TRUNCATED = 3,  /* binary path truncated: decided on the default mask */
	STAT_ARGS_TRUNCATED = 4,
	STAT_KILLS = 5,             /* SIGKILL sent */
	STAT_KILL_FAILED = 6,
	STAT_OTHER_PATH_TRUNCATED = 7, /* cwd or parent binary path truncated */
	STAT_NO_CONFIG = 8,         /* exec_active, exec_config or an inner table missing (never expected) */
	STAT_SCRATCH_MISSING = 9,   /* per-CPU scratch missing (never expected) */
	STAT__COUNT = 10,
};

#endif /* POLICYC_EXEC_ABI_H */
