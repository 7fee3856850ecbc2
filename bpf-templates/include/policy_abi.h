/* SPDX-License-Identifier: GPL-2.0 */
/*
 * policy_abi.h — the layout shared by policy.bpf.c and policyd
 * (runtime/src/abi.rs).
 *
 * Any change here must be mirrored in runtime/src/abi.rs; both sides assert
 * the sizes below. The limits come from compiler/src/limits.rs through
 * -DPOLICY_* flags set by runtime/build.rs; the defaults only serve editors.
 *
 * The model (docs/runtime.md "Kernel tables"): per hook, a list of
 * dimensions; each dimension looks its event value up in one of a few shared
 * tables, keyed by the dimension's key namespace `ns`, and gets a *mask id*;
 * masks (term bitmasks of MASK_WORDS u64) are stored once each in the masks
 * table. The matched terms are the AND of the dimensions' masks.
 */
#ifndef POLICYC_POLICY_ABI_H
#define POLICYC_POLICY_ABI_H

#ifndef POLICY_MASK_WORDS
#define POLICY_MASK_WORDS 64
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
#define STR_KEY_LEN POLICY_PATH_KEY_LEN
#define PATH_BUF_LEN POLICY_PATH_BUF_LEN
#define ARGS_BUF_LEN POLICY_ARGS_BUF_LEN

/*
 * Path walk limits. A path component takes at least 2 bytes ("/x"), so a path
 * of at most STR_KEY_LEN - 1 bytes (the longest literal a rule may name) has
 * at most 127 components: with PATH_MAX_DEPTH = 128 every path that can equal
 * an exact literal is always resolved completely.
 */
#define PATH_MAX_DEPTH 128
#define PATH_MAX_MOUNTS 32
#define PATH_NAME_MAX 255 /* NAME_MAX: longest d_name */

/* Hooks, in the order of policy_dsl::schema::Hook::ALL. */
#define HOOK_EXEC 0
#define HOOK_OPEN 1
#define HOOK_CONNECT 2
#define HOOK_BIND 3
#define HOOK_SETUID 4
#define HOOK_CAPSET 5
#define HOOK_MODULE_LOAD 6
#define HOOK_PTRACE 7
#define NHOOKS 8

/* Fields, in the order of policy_dsl::schema::Field::ALL; FIELD_CGROUP is the
 * cgroup id, which stands for every k8s.* field (resolved by the node). */
#define FIELD_PROCESS_BINARY 0
#define FIELD_PROCESS_NAME 1
#define FIELD_PROCESS_ARGS 2
#define FIELD_PROCESS_INTERACTIVE 3
#define FIELD_PARENT_BINARY 4
#define FIELD_USER_UID 5
#define FIELD_USER_EUID 6
#define FIELD_USER_GID 7
#define FIELD_USER_EGID 8
#define FIELD_USER_AUID 9
#define FIELD_USER_CAPS 10
#define FIELD_FILE_PATH 15
#define FIELD_FILE_WRITE 16
#define FIELD_NET_DADDR 17
#define FIELD_NET_DPORT 18
#define FIELD_NET_SADDR 19
#define FIELD_NET_SPORT 20
#define FIELD_NET_PROTOCOL 21
#define FIELD_NET_FAMILY 22
#define FIELD_CRED_NEW_UID 23
#define FIELD_CRED_NEW_EUID 24
#define FIELD_CRED_NEW_GID 25
#define FIELD_CRED_NEW_EGID 26
#define FIELD_CRED_NEW_CAPS 27
#define FIELD_MODULE_NAME 28
#define FIELD_TARGET_BINARY 29
#define FIELD_CGROUP 30
#define NFIELDS 32

/* Dimension kinds (dim_config.kind). */
#define DIM_STR 1      /* path or string: str_exact, str_prefix, str_suffix */
#define DIM_NUM 2      /* integer, enum index, bool: num_lpm */
#define DIM_IP 3       /* address: ip_lpm */
#define DIM_CAPS 4     /* capability set: caps entries */
#define DIM_RELATION 5 /* field OP field, 0/1: num_lpm */
#define DIM_CGROUP 6   /* cgroup id: cgroup_exact */
/* Anchor kind only (anchor_config.kind): a string looked up in
 * anchor_prefix, its first 255 bytes followed by a zero byte when shorter. */
#define ANCHOR_PREFIX 7
/* Anchor kind only: the address looked up in anchor_prefix as its family
 * byte (4 or 6) and 16 address bytes. */
#define ANCHOR_IP 8
/* Anchor kind only: the number looked up in anchor_prefix as 8 bytes
 * big-endian (keys: the aligned blocks of integer ranges). */
#define ANCHOR_RANGE 9

/* dim_config.tables bits for DIM_STR. */
#define TABLE_EXACT (1u << 0)
#define TABLE_PREFIX (1u << 1)
#define TABLE_SUFFIX (1u << 2)

/* dim_config.op for DIM_RELATION. */
#define REL_EQ 0
#define REL_LT 1
#define REL_LE 2

/* Most dimensions one hook may test (a bundle needing more is refused). */
#define MAX_DIMS 32
/* Most capability-set entries of one caps dimension. */
#define MAX_CAPS_ENTRIES 64

/* The login uid of a task that never logged in. */
#define AUID_UNSET 0xffffffffu

struct dim_config {
	__u32 kind;        /* DIM_* */
	__u32 field;       /* FIELD_* (the left field of a relation) */
	__u32 field2;      /* DIM_RELATION: the right field */
	__u32 op;          /* DIM_RELATION: REL_* */
	__u32 ns;          /* key namespace of this dimension in the tables (< 256 for DIM_STR) */
	__u32 tables;      /* DIM_STR: TABLE_* bits */
	__u32 dflt;        /* mask id: a value matching no entry (prefix side for DIM_STR) */
	__u32 suffix_dflt; /* mask id: DIM_STR suffix side without a matching suffix */
	__u32 absent;      /* mask id: the event does not supply the field */
	__u32 caps_first;  /* DIM_CAPS: first index in the caps table */
	__u32 caps_count;  /* DIM_CAPS: number of entries (<= MAX_CAPS_ENTRIES) */
	__u32 window;      /* words of its bundle's terms: lo | hi << 16; its masks hold
			    * only those words (others' bits in shared words set), and
			    * an AND leaves the words outside untouched */
};

/* Most anchors per hook (bundles whose terms are split into groups). */
#define MAX_ANCHORS 4

/*
 * A hook's terms past one mask are split into groups by anchor fields
 * (compiler/src/layout.rs): the field's value is looked up once, in
 * anchor_exact (exact anchors) or anchor_prefix (prefix anchors: longest
 * key), which gives the group (its dimensions and verdict masks in
 * group_config) and the group's terms that value can satisfy. The group's
 * terms live in the words of `window`, apart from the hook's own words.
 */
struct anchor_config {
	__u32 field;  /* FIELD_* of the anchor */
	__u32 ns;     /* key namespace: anchor_exact's str_key.ns, or anchor_prefix's ns byte */
	__u32 window; /* group words: lo | hi << 16 */
	__u32 kind;   /* DIM_STR: anchor_exact, key data = the string;
		       * DIM_NUM: anchor_exact, the value as 8 bytes big-endian;
		       * ANCHOR_PREFIX: anchor_prefix, the string and a zero byte;
		       * ANCHOR_IP: anchor_prefix, the family byte and the address;
		       * ANCHOR_RANGE: anchor_prefix, the number, 8 bytes big-endian */
};

/* Value of anchor_exact (HASH struct str_key -> this) and anchor_prefix
 * (LPM_TRIE struct str_lpm_key -> this). */
struct anchor_value {
	__u32 group; /* key in group_config */
	__u32 mask;  /* mask id: the group's terms this value can satisfy */
};

/* Value of group_config (HASH u32 -> this, per slot): the dimensions and
 * verdict masks of a hook's own words (key hook_config.group) or of one
 * anchored group (key anchor_value.group). */
struct group_config {
	__u32 ndims;
	__u32 deny;         /* mask ids: terms of deny rules, */
	__u32 kill;         /* of kill rules, */
	__u32 allow;        /* of allow rules, */
	__u32 audit;        /* of auditing rules, */
	__u32 default_deny; /* of default-deny scopes, */
	__u32 monitor;      /* of monitor-mode policies (never enforced), */
	__u32 count;        /* of rules with counters */
	struct dim_config dims[MAX_DIMS];
};

/* Value of hook_config (ARRAY[SLOTS * NHOOKS], key slot * NHOOKS + hook). */
struct hook_config {
	__u64 generation;   /* bundle load number of this slot (1 = first) */
	__u64 fields;       /* 1 << FIELD_*: what the dimensions and anchors read */
	__u32 has_terms;    /* 0: the hook has no rules, only count runs */
	__u32 words;        /* the hook's own mask words in use, 0..MASK_WORDS */
	__u32 terms;        /* mask id: every term of the hook's own words */
	__u32 group;        /* group_config key of the hook's own dimensions and verdicts */
	__u32 nanchors;     /* anchors in use, <= MAX_ANCHORS */
	__u32 _pad;
	struct anchor_config anchors[MAX_ANCHORS];
};

/* Number of table slots (double buffering). */
#define SLOTS 2

/* Value of `active` (ARRAY[1], key 0): the slot in force. Programs read only
 * `slot`; `generation` mirrors the slot's generation for operators. */
struct active_slot {
	__u32 slot;
	__u32 _pad;
	__u64 generation;
};

/* Keys. LPM keys start with the prefix length in bits, which counts the
 * namespace first, so each dimension has its own subtree. */
struct str_key {
	__u32 ns;
	__u8 data[STR_KEY_LEN];
};

/* The kernel limits LPM trie data to 256 bytes: one byte of namespace (string
 * dimensions are numbered 0..255 separately) and the first 255 bytes of the
 * string (or of its reverse, for suffixes). Literals are at most 255 bytes. */
#define STR_LPM_LEN (STR_KEY_LEN - 1)
struct str_lpm_key {
	__u32 prefixlen; /* 8 + 8 * bytes */
	__u8 ns;
	__u8 data[STR_LPM_LEN];
};

struct num_lpm_key {
	__u32 prefixlen;
	__u32 ns;    /* big-endian */
	__u64 value; /* big-endian */
};

struct ip_lpm_key {
	__u32 prefixlen;
	__u32 ns;        /* big-endian */
	__u8 family;     /* 4 or 6 */
	__u8 addr[16];   /* network order; IPv4 in the first 4 bytes */
	__u8 _pad[3];
};

struct cgroup_key {
	__u32 ns;
	__u32 _pad;
	__u64 cgroup_id;
};

/* Value of the masks table: a term mask and the range of its words that
 * are not zero (lo == hi for the empty mask), so that the programs AND only
 * the words both sides can have set: an event's cost follows the words
 * its matching terms span, not the hook's term count. */
struct mask_value {
	__u64 w[MASK_WORDS];
	__u32 lo; /* first word not zero */
	__u32 hi; /* one past the last word not zero */
};

struct caps_entry {
	__u64 caps;    /* required set: bit n = capability n */
	__u32 held;    /* mask id when the value holds every capability of `caps` */
	__u32 lacking; /* mask id otherwise */
};

/* policy_event.flags */
#define EV_BINARY_TRUNCATED (1u << 0) /* binary path incomplete or longer than PATH_BUF_LEN - 1 */
#define EV_ARGS_TRUNCATED (1u << 1)   /* argv longer than ARGS_BUF_LEN */
#define EV_CWD_TRUNCATED (1u << 2)
#define EV_PARENT_TRUNCATED (1u << 3)
#define EV_KILL_SENT (1u << 4)        /* bpf_send_signal(SIGKILL) returned 0 */
#define EV_KILL_FAILED (1u << 5)      /* bpf_send_signal(SIGKILL) failed */
#define EV_BINARY_UNLINKED (1u << 6)  /* the executed file was unlinked */
#define EV_NO_BINARY (1u << 7)        /* no executable (kernel thread, bprm->file unreadable) */
#define EV_OBJECT_TRUNCATED (1u << 8) /* file path / target binary incomplete or too long */
#define EV_REFUSED (1u << 9)          /* the operation was refused with EPERM (cgroup hooks) */

/* policy_event.verdict: what the kernel enforced. */
#define VERDICT_ALLOW 0
#define VERDICT_DENY 1
#define VERDICT_KILL 2

/*
 * Ring buffer record: this fixed header followed by the strings binary, args,
 * cwd, parent binary and object (file path, target binary or module name),
 * back to back, with the lengths given in the header (no NUL terminators;
 * args holds argv NUL-separated as in mm->arg_start).
 */
struct policy_event {
	__u64 ktime_boot_ns;  /* bpf_ktime_get_boot_ns() */
	__u64 cgroup_id;      /* bpf_get_current_cgroup_id() (cgroup v2) */
	__u64 generation;     /* hook_config.generation of the slot that decided */
	__u64 caps;           /* task->cred->cap_effective */
	__u64 new_caps;       /* capset: requested effective set */
	__u32 hook;           /* HOOK_* */
	__u32 flags;          /* EV_* */
	__u32 verdict;        /* VERDICT_* enforced */
	__u32 pid;            /* task->tgid */
	__u32 tid;            /* task->pid */
	__u32 ppid;           /* task->real_parent->tgid */
	__u32 uid;            /* task->cred->uid */
	__u32 euid;
	__u32 gid;
	__u32 egid;
	__u32 auid;           /* task->loginuid, AUID_UNSET when unset */
	__u32 new_uid;        /* setuid: ids after the change */
	__u32 new_euid;
	__u32 new_gid;
	__u32 new_egid;
	__u32 target_pid;     /* ptrace: the traced process */
	__u32 op;             /* open: file f_mode; setuid/ptrace: syscall or request */
	__u16 port;           /* connect: destination, bind: bound port (host order) */
	__u8 family;          /* connect/bind: 4 or 6 */
	__u8 protocol;        /* connect/bind: IPPROTO_* */
	__u8 addr[16];        /* connect: destination, bind: bound address */
	__u8 interactive;     /* task->signal->tty != NULL */
	__u8 _pad8[3];
	__u16 binary_len;
	__u16 args_len;
	__u16 cwd_len;
	__u16 parent_len;
	__u16 object_len;
	__u16 _pad16;
	char comm[16];        /* task->comm */
	__u32 groups[MAX_ANCHORS]; /* per anchor: group_config key + 1 of the group decided, 0 none */
	__u64 matched[MASK_WORDS]; /* terms the event matched (group windows: of those groups) */
};

#define POLICY_EVENT_HEADER_SIZE (176 + 8 * MASK_WORDS)

/* Indices of the stats PERCPU_ARRAY (u64 counters); 0..NHOOKS-1 count runs
 * per hook. */
enum policy_stat {
	STAT_EVENTS = NHOOKS,       /* events written to the ring buffer */
	STAT_RINGBUF_DROPS,         /* bpf_ringbuf_output failures (buffer full) */
	STAT_BINARY_TRUNCATED,      /* process.binary incomplete: decided on the default mask */
	STAT_ARGS_TRUNCATED,
	STAT_KILLS,                 /* SIGKILL sent */
	STAT_KILL_FAILED,
	STAT_OTHER_PATH_TRUNCATED,  /* cwd, parent, file or target path truncated */
	STAT_NO_CONFIG,             /* active slot or hook config missing (never expected; a missing
				     * inner table falls back to the dimension's default) */
	STAT_SCRATCH_MISSING,       /* per-CPU scratch missing (never expected) */
	STAT_REFUSED,               /* operations refused with EPERM */
	STAT_MASK_MISSING,          /* a mask id with no mask (never expected): decided on no terms */
	STAT_SCRATCH_BUSY,          /* runs that found this CPU's scratch in use (a preempted run): allowed */
	STAT__COUNT,
};

#endif /* POLICYC_POLICY_ABI_H */
