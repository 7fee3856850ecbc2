// SPDX-License-Identifier: GPL-2.0
/*
 * policy.bpf.c — every hook of policyc in one object, so that all programs
 * share the tables, the active slot, the ring buffer and the counters.
 *
 * Each program extracts the fields its hook supplies (only those the bundle's
 * dimensions read, plus what an event needs when one is written), classifies
 * the event against the slot in force (classify(): one table lookup per
 * dimension, AND of the masks), and enforces the verdict with the hook's
 * mechanism:
 *
 *   exec     raw_tracepoint/sched_process_exec      SIGKILL before the new image runs
 *   open     tracepoint/syscalls/sys_exit_open{,at,at2}, sys_exit_creat
 *                                                    SIGKILL before the fd is used
 *   connect  cgroup/connect4, cgroup/connect6        EPERM
 *   bind     cgroup/bind4, cgroup/bind6              EPERM
 *   setuid   tracepoint/syscalls/sys_enter_set{,re,res}{uid,gid}
 *                                                    SIGKILL queued at entry: the call
 *                                                    completes, the process dies before
 *                                                    it returns to user mode
 *   capset   tracepoint/syscalls/sys_enter_capset    likewise
 *   ptrace   tracepoint/syscalls/sys_{enter,exit}_ptrace
 *                                                    SIGKILL of the caller on return from
 *                                                    a successful ATTACH/SEIZE (the tracer)
 *                                                    or TRACEME (the tracee)
 *
 * (BPF-LSM would return -EPERM for all of these; our kernels refuse LSM and
 * fentry programs, see docs/runtime.md. `policyd probe` reports the choice.)
 *
 * Tables are double-buffered: `active` names the slot in force; a program
 * reads it once and uses only that slot, so an event is decided by exactly
 * one bundle, whose generation it carries (see docs/runtime.md "Updates").
 *
 * Classification (docs/runtime.md "Kernel tables"): per hook, up to MAX_DIMS
 * dimensions; each looks its value up in a shared table under its own key
 * namespace and yields a mask id; masks are stored once each in `masks`.
 * matched = terms & mask(dim 1) & ... & mask(dim n). The cost per event is
 * one lookup per dimension the bundle uses, whatever the number of rules.
 */
#include "vmlinux_min.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include "policy_abi.h"

char LICENSE[] SEC("license") = "GPL";

#define SIGKILL 9
#define READ_ONCE_U32(x) (*(volatile __u32 *)&(x))
#define FMODE_WRITE 0x2
#define FMODE_CREATED 0x100000
#define AF_INET 2
#define AF_INET6 10
#define IPPROTO_TCP 6
#define IPPROTO_UDP 17
#define PTRACE_TRACEME 0
#define PTRACE_ATTACH 16
#define PTRACE_SEIZE 0x4206

/* x86_64 syscall numbers of the setuid family (ctx->nr). */
#define NR_SETUID 105
#define NR_SETGID 106
#define NR_SETREUID 113
#define NR_SETREGID 114
#define NR_SETRESUID 117
#define NR_SETRESGID 119

/* String regions of strbuf, one per string the programs extract. */
#define R_BINARY 0
#define R_ARGS 1 /* raw argv, NUL-separated */
#define R_CWD 2  /* also the joined args during classification */
#define R_PARENT 3
#define R_OBJECT 4 /* file path, target binary */
#define NREGIONS 5
#define REGION 4096
#define STRBUF_LEN (NREGIONS * REGION + 512)

_Static_assert(PATH_BUF_LEN == REGION, "a path fits one region");
_Static_assert(ARGS_BUF_LEN <= REGION, "args fit one region");
_Static_assert((PATH_MAX_DEPTH & (PATH_MAX_DEPTH - 1)) == 0, "PATH_MAX_DEPTH is a power of two");
_Static_assert(sizeof(struct policy_event) == POLICY_EVENT_HEADER_SIZE, "event header layout");
_Static_assert(sizeof(struct dim_config) == 48, "dim_config layout");
_Static_assert(sizeof(struct hook_config) == 40 + 16 * MAX_ANCHORS, "hook_config layout");
_Static_assert(sizeof(struct group_config) == 32 + 48 * MAX_DIMS, "group_config layout");
_Static_assert((MAX_ANCHORS & (MAX_ANCHORS - 1)) == 0, "MAX_ANCHORS is a power of two");
_Static_assert(sizeof(struct active_slot) == 16, "active layout");
_Static_assert(sizeof(struct ip_lpm_key) == 28, "ip key layout");
_Static_assert((SLOTS & (SLOTS - 1)) == 0, "SLOTS is a power of two");
_Static_assert((MAX_DIMS & (MAX_DIMS - 1)) == 0, "MAX_DIMS is a power of two");
_Static_assert(STR_KEY_LEN == 256, "string keys are 256 bytes");

/* State of the path walk in progress (pointers kept as u64). */
struct walk_state {
	u64 dentry;
	u64 vfsmnt;
	u64 mnt;
	u64 root_dentry;
	u64 root_mnt;
	u32 n;    /* components collected */
	u32 off;  /* bytes written */
	u32 base; /* start of the region in strbuf */
	u32 complete;
	u32 too_long;
	u32 _pad;
};

/* What the matched terms hit in the verdict masks, over every phase of a
 * classification (in the scratch: the stack is short). */
struct verdict_sum {
	u64 k, d, a, sc, acct;
	u64 wd, wa, wsc; /* over every term, monitor ones included: the would-be verdict */
};

/* Per-CPU work area (too large for the 512-byte stack). */
struct scratch {
	struct walk_state walk;
	u64 acc[MASK_WORDS];     /* terms still matching */
	u64 num[NFIELDS];        /* numeric values: ids, ports, enum indices, bools, cgroup */
	u32 len[NFIELDS];        /* string lengths (regions of strbuf) */
	u64 present;             /* 1 << FIELD_*: the event supplies the field */
	u64 incomplete;          /* 1 << FIELD_*: path walk did not reach the root */
	u64 truncated;           /* 1 << FIELD_*: the string's tail was cut (too long) */
	u64 caps;                /* user.caps */
	u64 new_caps;            /* cred.new_caps */
	u8 ip[16];               /* net.daddr or net.saddr */
	u8 ip_family;            /* 4 or 6 */
	u8 _pad[7];
	char comm[16];
	u32 hook;
	u32 slot;
	u32 flags;               /* EV_* */
	u32 mask_missing;
	u32 busy;                /* 1 while a program run owns this CPU's scratch */
	u32 lo, hi;              /* acc's words that may be non-zero: [lo, hi) */
	u32 _pad_busy;
	u32 hook_lo, hook_hi;    /* the hook's own words' [lo, hi) after classification */
	u32 group_range[MAX_ANCHORS]; /* per anchor: its group's [lo, hi) as lo | hi << 16 */
	u32 phase;               /* classify(): the phase in progress (0: the hook's words) */
	u32 phase_group;         /* its group_config key */
	struct verdict_sum sum;  /* classify(): what the phases' matches hit */
	struct str_key skey;
	struct str_lpm_key lkey;
	u8 _lkey_slack;          /* rev_step's bound: index 255 of lkey.data lands here */
	struct num_lpm_key nkey;
	struct ip_lpm_key ikey;
	struct cgroup_key ckey;
	/* Unused: makes clang emit the full BTF of the caps table's value
	 * (it emits only a forward declaration for a type seen through pointers). */
	struct caps_entry _caps_btf;
	struct mask_value _mask_btf;
	struct anchor_value _anchor_btf;
	struct group_config _group_btf;
	struct policy_event ev;
	u64 names[PATH_MAX_DEPTH];
	u32 lens[PATH_MAX_DEPTH];
};

struct strbuf {
	char str[STRBUF_LEN];
};

/* Inner-map templates (policyd creates one of each per slot and bundle, with
 * max_entries = the bundle's entry count). */
struct masks_inner {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct mask_value);
};

struct str_exact_inner {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1);
	__type(key, struct str_key);
	__type(value, __u32);
};

struct str_lpm_inner {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 1);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct str_lpm_key);
	__type(value, __u32);
};

struct num_lpm_inner {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 1);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct num_lpm_key);
	__type(value, __u32);
};

struct ip_lpm_inner {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 1);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct ip_lpm_key);
	__type(value, __u32);
};

struct cgroup_inner {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1);
	__type(key, struct cgroup_key);
	__type(value, __u32);
};

struct caps_inner {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct caps_entry);
};

struct anchor_inner {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1);
	__type(key, struct str_key);
	__type(value, struct anchor_value);
};

struct anchor_lpm_inner {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 1);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct str_lpm_key);
	__type(value, struct anchor_value);
};

struct group_inner {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct group_config);
};

#define OUTER(name, inner)                                   \
	struct {                                             \
		__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);    \
		__uint(max_entries, SLOTS);                  \
		__type(key, __u32);                          \
		__array(values, struct inner);               \
	} name SEC(".maps")

OUTER(masks, masks_inner);
OUTER(str_exact, str_exact_inner);
OUTER(str_prefix, str_lpm_inner);
OUTER(str_suffix, str_lpm_inner);
OUTER(num_lpm, num_lpm_inner);
OUTER(ip_lpm, ip_lpm_inner);
OUTER(cgroup_exact, cgroup_inner);
OUTER(caps_table, caps_inner);
OUTER(anchor_exact, anchor_inner);
OUTER(anchor_prefix, anchor_lpm_inner);
OUTER(group_config, group_inner);

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, SLOTS * NHOOKS);
	__type(key, __u32);
	__type(value, struct hook_config);
} hook_config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct active_slot);
} active SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4 << 20); /* bytes */
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, STAT__COUNT);
	__type(key, __u32);
	__type(value, __u64);
} stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct scratch);
} scratch SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct strbuf);
} strbuf SEC(".maps");

/* ptrace: the request and pid of an attach in progress, by thread id,
 * from sys_enter_ptrace to sys_exit_ptrace. */
struct ptrace_call {
	u64 request;
	u64 pid;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, struct ptrace_call);
} ptrace_calls SEC(".maps");

static __always_inline void stat_inc(u32 idx)
{
	u64 *v = bpf_map_lookup_elem(&stats, &idx);
	if (v)
		*v += 1;
}

static __always_inline struct scratch *get_scratch(void)
{
	u32 zero = 0;
	return bpf_map_lookup_elem(&scratch, &zero);
}

/* Offset of region r in strbuf, bounded for the verifier. */
static __always_inline u32 region_base(u32 r)
{
	if (r >= NREGIONS)
		r = NREGIONS - 1;
	return r * REGION;
}

static __always_inline struct strbuf *get_strbuf(void)
{
	u32 zero = 0;
	return bpf_map_lookup_elem(&strbuf, &zero);
}

/* ---- Path resolution (like d_path, bounded) ---------------------------- */

static __always_inline struct mount *real_mount(struct vfsmount *vfsmnt)
{
	return (struct mount *)((char *)vfsmnt - bpf_core_field_offset(struct mount, mnt));
}

/* One step from the leaf towards the root: cross a mount or collect a name.
 * The walk state lives in the scratch map so that the verifier sees unknown
 * scalars and checks the callback once. */
static long walk_step(u32 i, void *data)
{
	struct scratch *s = get_scratch();
	if (!s)
		return 1;
	struct walk_state *w = &s->walk;
	struct dentry *dentry = (struct dentry *)w->dentry;
	struct vfsmount *vfsmnt = (struct vfsmount *)w->vfsmnt;
	struct mount *mnt = (struct mount *)w->mnt;
	if (w->dentry == w->root_dentry && w->vfsmnt == w->root_mnt) {
		w->complete = 1;
		return 1;
	}
	struct dentry *mnt_root = BPF_CORE_READ(vfsmnt, mnt_root);
	if (dentry == mnt_root) {
		struct mount *up = BPF_CORE_READ(mnt, mnt_parent);
		if (!up || up == mnt) {
			/* Root of the mount tree (of the namespace, or an
			 * internal mount such as pipefs). */
			w->complete = 1;
			return 1;
		}
		w->dentry = (u64)BPF_CORE_READ(mnt, mnt_mountpoint);
		w->mnt = (u64)up;
		w->vfsmnt = (u64)&up->mnt;
		return 0;
	}
	u32 n = w->n;
	if (n >= PATH_MAX_DEPTH)
		return 1;
	struct dentry *parent = BPF_CORE_READ(dentry, d_parent);
	u32 idx = n & (PATH_MAX_DEPTH - 1);
	s->names[idx] = (u64)BPF_CORE_READ(dentry, d_name.name);
	s->lens[idx] = BPF_CORE_READ(dentry, d_name.len);
	w->n = n + 1;
	if (!parent || parent == dentry) {
		/* A disconnected or pseudo dentry: its name is all there is. */
		w->complete = 1;
		return 1;
	}
	w->dentry = (u64)parent;
	return 0;
}

/* Write component n - 1 - j (root side first) as "/name". */
static long write_step(u32 j, void *data)
{
	struct scratch *s = get_scratch();
	struct strbuf *b = get_strbuf();
	if (!s || !b)
		return 1;
	struct walk_state *w = &s->walk;
	u32 n = w->n;
	if (j >= n)
		return 1;
	u32 idx = (n - 1 - j) & (PATH_MAX_DEPTH - 1);
	u32 len = s->lens[idx];
	u32 off = w->off;
	if (len > PATH_NAME_MAX || off + 1 + len > PATH_BUF_LEN - 1) {
		w->too_long = 1;
		return 1;
	}
	u32 base = region_base(w->base);
	b->str[base + (off & (REGION - 1))] = '/';
	off++;
	if (bpf_probe_read_kernel(&b->str[base + (off & (REGION - 1))], len & PATH_NAME_MAX,
				  (void *)s->names[idx]) < 0) {
		w->too_long = 1;
		return 1;
	}
	w->off = off + len;
	return 0;
}

/*
 * Resolve (dentry, vfsmnt) to an absolute path relative to the task's root
 * (like d_path) into region `region`. Returns its length (< PATH_BUF_LEN).
 * *incomplete: the walk did not reach the root; *too_long: components were
 * dropped because the path exceeds PATH_BUF_LEN - 1 bytes (leading part kept).
 */
static __always_inline u32 resolve_path(struct scratch *s, u32 region, struct dentry *dentry,
					struct vfsmount *vfsmnt, struct task_struct *task,
					bool *incomplete, bool *too_long)
{
	struct walk_state *w = &s->walk;
	*incomplete = true;
	*too_long = false;
	if (!dentry || !vfsmnt)
		return 0;
	w->dentry = (u64)dentry;
	w->vfsmnt = (u64)vfsmnt;
	w->mnt = (u64)real_mount(vfsmnt);
	w->root_dentry = (u64)BPF_CORE_READ(task, fs, root.dentry);
	w->root_mnt = (u64)BPF_CORE_READ(task, fs, root.mnt);
	w->n = 0;
	w->off = 0;
	w->base = region;
	w->complete = 0;
	w->too_long = 0;
	bpf_loop(PATH_MAX_DEPTH + PATH_MAX_MOUNTS, walk_step, NULL, 0);
	bpf_loop(PATH_MAX_DEPTH, write_step, NULL, 0);
	*incomplete = !w->complete;
	*too_long = w->too_long;
	u32 off = w->off & (REGION - 1);
	if (off == 0) {
		struct strbuf *b = get_strbuf();
		if (b)
			b->str[region_base(region)] = '/';
		off = 1;
	}
	return off;
}

/* Resolve a file's path into `region` as field `field`. */
static __always_inline void file_field(struct scratch *s, u32 field, u32 region, struct file *f,
				       struct task_struct *task, u32 trunc_flag, u32 trunc_stat)
{
	if (!f)
		return;
	bool incomplete, too_long;
	u32 len = resolve_path(s, region, BPF_CORE_READ(f, f_path.dentry),
			       BPF_CORE_READ(f, f_path.mnt), task, &incomplete, &too_long);
	s->len[field & (NFIELDS - 1)] = len;
	s->present |= 1ull << field;
	if (incomplete)
		s->incomplete |= 1ull << field;
	if (too_long)
		s->truncated |= 1ull << field;
	if (incomplete || too_long) {
		s->flags |= trunc_flag;
		stat_inc(trunc_stat);
	}
}

/* ---- Field extraction -------------------------------------------------- */

static __always_inline bool wants(u64 fields, u32 f)
{
	return fields & (1ull << f);
}

/* argv[1..] joined by single spaces (the `process.args` value), from the raw
 * NUL-separated argv in R_ARGS into R_CWD. */
struct join_ctx {
	u32 from; /* first byte after argv[0]'s NUL */
	u32 len;  /* raw length */
};

static long join_step(u32 i, void *data)
{
	struct join_ctx *c = data;
	struct strbuf *b = get_strbuf();
	if (!b)
		return 1;
	u32 src = c->from + i;
	if (src >= c->len)
		return 1;
	char ch = b->str[R_ARGS * REGION + (src & (REGION - 1))];
	b->str[R_CWD * REGION + (i & (REGION - 1))] = ch ? ch : ' ';
	return 0;
}

static long find_nul_step(u32 i, void *data)
{
	struct join_ctx *c = data;
	struct strbuf *b = get_strbuf();
	if (!b || i >= c->len)
		return 1;
	if (b->str[R_ARGS * REGION + (i & (REGION - 1))] == 0) {
		c->from = i + 1;
		return 1;
	}
	return 0;
}

/* Raw argv of the current task into R_ARGS; returns its length. */
static __always_inline u32 read_argv(struct scratch *s, struct task_struct *task)
{
	struct strbuf *b = get_strbuf();
	if (!b)
		return 0;
	struct mm_struct *mm = BPF_CORE_READ(task, mm);
	if (!mm)
		return 0;
	u64 arg_start = BPF_CORE_READ(mm, arg_start);
	u64 arg_end = BPF_CORE_READ(mm, arg_end);
	u64 alen = arg_end > arg_start ? arg_end - arg_start : 0;
	if (alen > ARGS_BUF_LEN) {
		alen = ARGS_BUF_LEN;
		s->truncated |= 1ull << FIELD_PROCESS_ARGS;
		s->flags |= EV_ARGS_TRUNCATED;
		stat_inc(STAT_ARGS_TRUNCATED);
	}
	alen &= 2 * ARGS_BUF_LEN - 1;
	if (bpf_probe_read_user(&b->str[R_ARGS * REGION], alen, (void *)arg_start) < 0)
		return 0;
	return alen;
}

/* The process fields every hook supplies. `exe` is the executable
 * (bprm->file on exec, mm->exe_file elsewhere). */
static __always_inline void extract_process(struct scratch *s, struct task_struct *task,
					    struct file *exe, u64 fields)
{
	const struct cred *cred = BPF_CORE_READ(task, cred);
	s->num[FIELD_USER_UID] = BPF_CORE_READ(cred, uid.val);
	s->num[FIELD_USER_EUID] = BPF_CORE_READ(cred, euid.val);
	s->num[FIELD_USER_GID] = BPF_CORE_READ(cred, gid.val);
	s->num[FIELD_USER_EGID] = BPF_CORE_READ(cred, egid.val);
	if (bpf_core_field_exists(task->loginuid))
		s->num[FIELD_USER_AUID] = BPF_CORE_READ(task, loginuid.val);
	else
		s->num[FIELD_USER_AUID] = AUID_UNSET;
	u64 caps = 0;
	bpf_core_read(&caps, sizeof(caps), &cred->cap_effective);
	s->caps = caps;
	s->num[FIELD_PROCESS_INTERACTIVE] = BPF_CORE_READ(task, signal, tty) != NULL;
	s->num[FIELD_CGROUP] = bpf_get_current_cgroup_id();
	s->present |= (1ull << FIELD_USER_UID) | (1ull << FIELD_USER_EUID) |
		      (1ull << FIELD_USER_GID) | (1ull << FIELD_USER_EGID) |
		      (1ull << FIELD_USER_AUID) | (1ull << FIELD_USER_CAPS) |
		      (1ull << FIELD_PROCESS_INTERACTIVE) | (1ull << FIELD_CGROUP) |
		      (1ull << FIELD_PROCESS_NAME);
	bpf_get_current_comm(s->comm, sizeof(s->comm));
	u32 clen = 0;
#pragma clang loop unroll(full)
	for (int i = 0; i < 16; i++) {
		if (s->comm[i] == 0)
			break;
		clen++;
	}
	s->len[FIELD_PROCESS_NAME] = clen;

	if (wants(fields, FIELD_PROCESS_BINARY)) {
		if (exe)
			file_field(s, FIELD_PROCESS_BINARY, R_BINARY, exe, task, EV_BINARY_TRUNCATED,
				   STAT_BINARY_TRUNCATED);
		else
			s->flags |= EV_NO_BINARY;
	}
	if (wants(fields, FIELD_PROCESS_ARGS)) {
		struct join_ctx c = {.from = 0, .len = read_argv(s, task)};
		s->len[FIELD_PROCESS_ARGS] = c.len; /* raw, for the event */
		if (BPF_CORE_READ(task, mm)) {
			c.from = c.len;
			bpf_loop(ARGS_BUF_LEN, find_nul_step, &c, 0);
			u32 n = c.len > c.from ? c.len - c.from : 0;
			bpf_loop(n & (2 * ARGS_BUF_LEN - 1), join_step, &c, 0);
			/* The raw area ends with argv[last]'s NUL (unless cut):
			 * drop its space. */
			struct strbuf *b = get_strbuf();
			if (n > 0 && b && b->str[R_ARGS * REGION + ((c.len - 1) & (REGION - 1))] == 0)
				n--;
			s->num[FIELD_PROCESS_ARGS] = n; /* joined length */
			s->present |= 1ull << FIELD_PROCESS_ARGS;
		}
	}
	if (wants(fields, FIELD_PARENT_BINARY))
		file_field(s, FIELD_PARENT_BINARY, R_PARENT,
			   BPF_CORE_READ(task, real_parent, mm, exe_file), task,
			   EV_PARENT_TRUNCATED, STAT_OTHER_PATH_TRUNCATED);
}

/* ---- Classification ---------------------------------------------------- */

static __always_inline struct mask_value *mask_of(u32 slot, u32 id)
{
	void *inner = bpf_map_lookup_elem(&masks, &slot);
	if (!inner)
		return NULL;
	return bpf_map_lookup_elem(inner, &id);
}

struct and_ctx {
	u64 *m;
	u64 *acc;
	u32 base; /* first word */
};

static long and_step(u32 i, void *data)
{
	struct and_ctx *c = data;
	u32 w = c->base + i;
	if (w >= MASK_WORDS)
		return 1;
	barrier_var(w);
	w &= MASK_WORDS - 1; /* for the verifier: clang may test a copy */
	c->acc[w] &= c->m[w];
	return 0;
}

struct and_mask_ctx {
	u32 id;
	u32 win;
};

/* acc &= mask(id) within the window `win` (words lo | hi << 16 of the
 * dimension's bundle; outside it acc is untouched): only the words both may
 * have set are visited (see struct mask_value), the match's range shrinks
 * from the edges the window covers, and an empty match ends the event's
 * classification. Run as a one-iteration bpf_loop callback: the verifier
 * checks its branches once, not at each of the many places that AND a mask. */
static long and_mask_cb(u32 i, void *data)
{
	struct and_mask_ctx *a = data;
	struct scratch *s = get_scratch();
	if (!s)
		return 1;
	struct mask_value *m = mask_of(s->slot, a->id);
	if (!m) {
		s->mask_missing = 1;
		return 1;
	}
	u32 wlo = a->win & 0xffff, whi = a->win >> 16;
	u32 alo = s->lo, ahi = s->hi;
	u32 lo = alo > wlo ? alo : wlo; /* acc's words inside the window */
	u32 hi = ahi < whi ? ahi : whi;
	if (lo >= hi)
		return 1; /* nothing of acc there: unchanged */
	u32 mlo = m->lo > lo ? m->lo : lo; /* the mask's non-zero words there */
	u32 mhi = m->hi < hi ? m->hi : hi;
	bool any = mlo < mhi;
	/* Where the window holds acc's edge, the words before mlo (after mhi)
	 * become zero: move the edge instead of writing them. */
	u32 nlo = alo >= wlo ? (any ? mlo : hi) : alo;
	u32 nhi = ahi <= whi ? (any ? mhi : lo) : ahi;
	if (nlo >= nhi) {
		s->lo = s->hi = 0;
		return 1;
	}
	u32 from = lo > nlo ? lo : nlo, to = hi < nhi ? hi : nhi;
	if (from < to) {
		struct and_ctx c = {.m = m->w, .acc = s->acc, .base = from};
		bpf_loop(to - from, and_step, &c, 0);
	}
	s->lo = nlo;
	s->hi = nhi;
	return 1;
}

static __always_inline void and_mask(struct scratch *s, u32 id, u32 win)
{
	struct and_mask_ctx a = {.id = id, .win = win};
	bpf_loop(1, and_mask_cb, &a, 0);
}

static __always_inline struct hook_config *config_of(u32 slot, u32 hook)
{
	u32 key = (slot & (SLOTS - 1)) * NHOOKS + (hook & (NHOOKS - 1));
	return bpf_map_lookup_elem(&hook_config, &key);
}

struct rev_ctx {
	u32 base; /* region start */
	u32 len;  /* string length */
};

/* key byte i = string byte len - 1 - i (suffixes as prefixes of the reversed string). */
static long rev_step(u32 i, void *data)
{
	struct rev_ctx *c = data;
	struct scratch *s = get_scratch();
	struct strbuf *b = get_strbuf();
	if (!s || !b || i >= c->len)
		return 1;
	u32 src = c->len - 1 - i;
	if (i >= STR_LPM_LEN)
		return 1;
	u32 idx = i;
	barrier_var(idx); /* keep the mask below: the verifier needs it */
	s->lkey.data[idx & (STR_KEY_LEN - 1)] = b->str[region_base(c->base) + (src & (REGION - 1))];
	return 0;
}

/* The region of a string field, or -1 (process.name lives in s->comm). */
static __always_inline int region_of(u32 field)
{
	switch (field) {
	case FIELD_PROCESS_BINARY:
		return R_BINARY;
	case FIELD_PROCESS_ARGS:
		return R_CWD; /* the joined form */
	case FIELD_PARENT_BINARY:
		return R_PARENT;
	default:
		return R_OBJECT;
	}
}

static __always_inline u32 str_len_of(struct scratch *s, u32 field)
{
	if (field == FIELD_PROCESS_ARGS)
		return s->num[FIELD_PROCESS_ARGS];
	return s->len[field & (NFIELDS - 1)];
}

/* Copy up to STR_KEY_LEN bytes of a string field to `dst`. */
static __always_inline void copy_key(struct scratch *s, u8 *dst, u32 field, u32 klen)
{
	if (field == FIELD_PROCESS_NAME) {
		barrier_var(klen);
		bpf_probe_read_kernel(dst, klen & 15, s->comm);
		return;
	}
	struct strbuf *b = get_strbuf();
	if (!b)
		return;
	u32 base = region_base(region_of(field));
	if (klen > STR_KEY_LEN)
		klen = STR_KEY_LEN;
	barrier_var(klen);
	bpf_probe_read_kernel(dst, klen & (2 * STR_KEY_LEN - 1), &b->str[base]);
}

static __always_inline void classify_str(struct scratch *s, struct dim_config *d, u32 win)
{
	u32 field = d->field & (NFIELDS - 1);
	u32 len = str_len_of(s, field);
	bool incomplete = s->incomplete & (1ull << field);
	u32 klen = len > STR_KEY_LEN ? STR_KEY_LEN : len;          /* exact key */
	u32 llen = len > STR_LPM_LEN ? STR_LPM_LEN : len;          /* LPM key */
	if (incomplete) {
		and_mask(s, d->dflt, win);
		if (d->tables & TABLE_SUFFIX)
			and_mask(s, d->suffix_dflt, win);
		return;
	}
	if ((d->tables & TABLE_EXACT) && len <= STR_KEY_LEN - 1) {
		void *t = bpf_map_lookup_elem(&str_exact, &s->slot);
		if (t) {
			__builtin_memset(&s->skey, 0, sizeof(s->skey));
			s->skey.ns = d->ns;
			copy_key(s, s->skey.data, field, klen);
			u32 *id = bpf_map_lookup_elem(t, &s->skey);
			if (id) {
				and_mask(s, *id, win);
				return;
			}
		}
	}
	u32 pid = d->dflt;
	if (d->tables & TABLE_PREFIX) {
		void *t = bpf_map_lookup_elem(&str_prefix, &s->slot);
		if (t) {
			__builtin_memset(&s->lkey, 0, sizeof(s->lkey));
			s->lkey.prefixlen = 8 + 8 * llen;
			s->lkey.ns = d->ns;
			copy_key(s, s->lkey.data, field, llen);
			u32 *id = bpf_map_lookup_elem(t, &s->lkey);
			if (id)
				pid = *id;
		}
	}
	and_mask(s, pid, win);
	if (d->tables & TABLE_SUFFIX) {
		u32 sid = d->suffix_dflt;
		/* A cut string's real end is unknown: no suffix is known to match
		 * (flagged and counted where it was cut). */
		void *t = (s->truncated & (1ull << field)) ? NULL :
							      bpf_map_lookup_elem(&str_suffix, &s->slot);
		if (t) {
			__builtin_memset(&s->lkey, 0, sizeof(s->lkey));
			s->lkey.prefixlen = 8 + 8 * llen;
			s->lkey.ns = d->ns;
			if (field == FIELD_PROCESS_NAME) {
				/* comm: at most 15 bytes, reversed here. */
#pragma clang loop unroll(full)
				for (int i = 0; i < 15; i++) {
					if (i < len)
						s->lkey.data[i] = s->comm[(len - 1 - i) & 15];
				}
			} else {
				/* The last klen bytes, reversed. */
				struct rev_ctx c = {.base = region_of(field), .len = len};
				bpf_loop(llen, rev_step, &c, 0);
			}
			u32 *id = bpf_map_lookup_elem(t, &s->lkey);
			if (id)
				sid = *id;
		}
		and_mask(s, sid, win);
	}
}

static __always_inline void classify_num(struct scratch *s, struct dim_config *d, u64 value,
					 u32 win)
{
	u32 id = d->dflt;
	void *t = bpf_map_lookup_elem(&num_lpm, &s->slot);
	if (t) {
		s->nkey.prefixlen = 32 + 64;
		s->nkey.ns = bpf_htonl(d->ns);
		s->nkey.value = bpf_cpu_to_be64(value);
		u32 *hit = bpf_map_lookup_elem(t, &s->nkey);
		if (hit)
			id = *hit;
	}
	and_mask(s, id, win);
}

struct caps_ctx {
	u32 first;
	u32 win;
	u64 have;
};

static long caps_step(u32 i, void *data)
{
	struct caps_ctx *c = data;
	struct scratch *s = get_scratch();
	if (!s || s->lo >= s->hi)
		return 1;
	void *t = bpf_map_lookup_elem(&caps_table, &s->slot);
	if (!t)
		return 1;
	u32 idx = c->first + i;
	struct caps_entry *e = bpf_map_lookup_elem(t, &idx);
	if (!e) {
		s->mask_missing = 1;
		return 1;
	}
	and_mask(s, (c->have & e->caps) == e->caps ? e->held : e->lacking, c->win);
	return 0;
}

/* The dimensions to AND: the hook's, or a group's (map values, looked up
 * once per event). */
struct dims_ctx {
	struct dim_config *dims;
};

static long dim_step(u32 i, void *data)
{
	struct dims_ctx *c = data;
	struct scratch *s = get_scratch();
	if (!s)
		return 1;
	if (s->lo >= s->hi)
		return 1; /* nothing left that could match */
	struct dim_config *d = &c->dims[i & (MAX_DIMS - 1)];
	u32 win = d->window;
	u32 field = d->field & (NFIELDS - 1);
	u32 kind = d->kind;
	if (kind != DIM_RELATION && !(s->present & (1ull << field))) {
		and_mask(s, d->absent, win);
		return 0;
	}
	switch (kind) {
	case DIM_STR:
		classify_str(s, d, win);
		break;
	case DIM_NUM:
		classify_num(s, d, s->num[field], win);
		break;
	case DIM_RELATION: {
		u32 f2 = d->field2 & (NFIELDS - 1);
		if (!(s->present & (1ull << field)) || !(s->present & (1ull << f2))) {
			and_mask(s, d->dflt, win);
			break;
		}
		u64 a = s->num[field], b = s->num[f2];
		bool unset = (field == FIELD_USER_AUID && a == AUID_UNSET) ||
			     (f2 == FIELD_USER_AUID && b == AUID_UNSET);
		bool holds;
		if (d->op == REL_EQ)
			holds = a == b;
		else if (unset)
			holds = false; /* `unset` compares only by == */
		else if (d->op == REL_LT)
			holds = a < b;
		else
			holds = a <= b;
		classify_num(s, d, holds, win);
		break;
	}
	case DIM_IP: {
		u32 id = d->dflt;
		void *t = bpf_map_lookup_elem(&ip_lpm, &s->slot);
		if (t) {
			__builtin_memcpy(s->ikey.addr, s->ip, 16);
			s->ikey.family = s->ip_family;
			s->ikey._pad[0] = s->ikey._pad[1] = s->ikey._pad[2] = 0;
			s->ikey.ns = bpf_htonl(d->ns);
			s->ikey.prefixlen = 32 + 8 + (s->ip_family == 4 ? 32 : 128);
			u32 *hit = bpf_map_lookup_elem(t, &s->ikey);
			if (hit)
				id = *hit;
		}
		and_mask(s, id, win);
		break;
	}
	case DIM_CAPS: {
		if (d->caps_count == 0) {
			and_mask(s, d->dflt, win);
			break;
		}
		struct caps_ctx c = {
			.first = d->caps_first,
			.win = win,
			.have = field == FIELD_CRED_NEW_CAPS ? s->new_caps : s->caps,
		};
		u32 n = d->caps_count;
		if (n > MAX_CAPS_ENTRIES)
			n = MAX_CAPS_ENTRIES;
		bpf_loop(n, caps_step, &c, 0);
		break;
	}
	case DIM_CGROUP: {
		u32 id = d->dflt;
		void *t = bpf_map_lookup_elem(&cgroup_exact, &s->slot);
		if (t) {
			s->ckey.ns = d->ns;
			s->ckey._pad = 0;
			s->ckey.cgroup_id = s->num[FIELD_CGROUP];
			u32 *hit = bpf_map_lookup_elem(t, &s->ckey);
			if (hit)
				id = *hit;
		}
		and_mask(s, id, win);
		break;
	}
	default:
		/* Unknown kind: match nothing rather than everything. */
		s->lo = s->hi = 0;
		break;
	}
	return 0;
}

static long copy_step(u32 i, void *data)
{
	struct and_ctx *c = data;
	u32 w = c->base + i;
	if (w >= MASK_WORDS)
		return 1;
	barrier_var(w);
	w &= MASK_WORDS - 1; /* for the verifier: clang may test a copy */
	c->acc[w] = c->m[w];
	return 0;
}

/* The verdict masks and what the matched terms hit in them. */
struct verdict_ctx {
	u64 *acc, *deny, *kill, *allow, *audit, *scope, *monitor, *count;
	struct verdict_sum *sum;
	u32 base;
};

static long verdict_step(u32 i, void *data)
{
	struct verdict_ctx *v = data;
	u32 w = v->base + i;
	if (w >= MASK_WORDS)
		return 1;
	barrier_var(w);
	w &= MASK_WORDS - 1; /* for the verifier: clang may test a copy */
	struct verdict_sum *r = v->sum;
	u64 m = v->acc[w];
	u64 enforced = m & ~v->monitor[w];
	r->k |= enforced & v->kill[w];
	r->d |= enforced & v->deny[w];
	r->a |= enforced & v->allow[w];
	r->sc |= enforced & v->scope[w];
	r->acct |= m & (v->audit[w] | v->count[w]);
	r->wd |= m & (v->kill[w] | v->deny[w]);
	r->wa |= m & v->allow[w];
	r->wsc |= m & v->scope[w];
	return 0;
}

/* Add what acc's words [lo, hi) hit in the verdict masks `ids` (the seven
 * consecutive mask ids deny, kill, allow, audit, default_deny, monitor,
 * count of a hook_config or group_config). Returns -1 when a mask is missing. */
static __always_inline int verdict_range(struct scratch *s, u32 *ids, u32 lo, u32 hi)
{
	if (lo >= hi)
		return 0;
	struct mask_value *deny = mask_of(s->slot, ids[0]);
	struct mask_value *kill = mask_of(s->slot, ids[1]);
	struct mask_value *allow = mask_of(s->slot, ids[2]);
	struct mask_value *audit = mask_of(s->slot, ids[3]);
	struct mask_value *scope = mask_of(s->slot, ids[4]);
	struct mask_value *monitor = mask_of(s->slot, ids[5]);
	struct mask_value *count = mask_of(s->slot, ids[6]);
	if (!deny || !kill || !allow || !audit || !scope || !monitor || !count)
		return -1;
	struct verdict_ctx v = {
		.acc = s->acc, .deny = deny->w, .kill = kill->w, .allow = allow->w,
		.audit = audit->w, .scope = scope->w, .monitor = monitor->w, .count = count->w,
		.sum = &s->sum, .base = lo,
	};
	bpf_loop(hi - lo, verdict_step, &v, 0);
	return 0;
}

/* The phases of one classification (their verdicts add up in s->sum). */
struct phases_ctx {
	struct hook_config *cfg;
	u32 missing;
};

/*
 * Phase 0 classifies the hook's own words: acc starts from every term there.
 * Phase i > 0 is anchor i - 1: its field's value is looked up (the exact
 * value, or the longest prefix key); on a hit, the group's words of acc
 * start from the key's mask (the group's terms that value can satisfy). A
 * value the table lacks, a missing field or a path whose walk did not reach
 * the root satisfies no anchored term (they test exact values and
 * prefixes only; a value longer than a key equals no exact value). Either
 * way the phase's group_config dimensions are ANDed over its words and its
 * verdicts added (a prefix anchor's group tests its field again). One
 * callback for every phase, so that the verifier checks the dimension loop
 * once.
 */
static long phase_step(u32 i, void *data)
{
	struct phases_ctx *c = data;
	struct scratch *s = get_scratch();
	if (!s)
		return 1;
	struct hook_config *cfg = c->cfg;
	u32 gkey, mid, wlo, whi;
	if (i == 0) {
		gkey = cfg->group;
		mid = cfg->terms;
		wlo = 0;
		whi = cfg->words;
	} else {
		struct anchor_config *a = &cfg->anchors[(i - 1) & (MAX_ANCHORS - 1)];
		u32 field = a->field & (NFIELDS - 1);
		if (!(s->present & (1ull << field)) || (s->incomplete & (1ull << field)))
			return 0;
		struct anchor_value *av;
		if (a->kind == ANCHOR_PREFIX || a->kind == ANCHOR_IP || a->kind == ANCHOR_RANGE) {
			void *t = bpf_map_lookup_elem(&anchor_prefix, &s->slot);
			if (!t)
				return 0;
			__builtin_memset(&s->lkey, 0, sizeof(s->lkey));
			s->lkey.ns = a->ns;
			if (a->kind == ANCHOR_RANGE) {
				/* As DIM_NUM: the number, big-endian. */
				u64 v = bpf_cpu_to_be64(s->num[field]);
				__builtin_memcpy(s->lkey.data, &v, 8);
				s->lkey.prefixlen = 8 + 64;
			} else if (a->kind == ANCHOR_IP) {
				/* As DIM_IP: the family, then the address. */
				s->lkey.data[0] = s->ip_family;
				__builtin_memcpy(&s->lkey.data[1], s->ip, 16);
				s->lkey.prefixlen = 8 + 8 + (s->ip_family == 4 ? 32 : 128);
			} else {
				/* As classify_str's prefix side: the first 255 bytes, and
				 * the zero after a shorter string, which exact keys end
				 * with. */
				u32 len = str_len_of(s, field);
				u32 llen = len > STR_LPM_LEN ? STR_LPM_LEN : len;
				s->lkey.prefixlen = 8 + 8 * (llen < STR_LPM_LEN ? llen + 1 : llen);
				copy_key(s, s->lkey.data, field, llen);
			}
			av = bpf_map_lookup_elem(t, &s->lkey);
		} else {
			void *t = bpf_map_lookup_elem(&anchor_exact, &s->slot);
			if (!t)
				return 0;
			__builtin_memset(&s->skey, 0, sizeof(s->skey));
			s->skey.ns = a->ns;
			if (a->kind == DIM_NUM) {
				u64 v = bpf_cpu_to_be64(s->num[field]);
				__builtin_memcpy(s->skey.data, &v, 8);
			} else {
				u32 len = str_len_of(s, field);
				if (len > STR_KEY_LEN - 1)
					return 0;
				copy_key(s, s->skey.data, field, len);
			}
			av = bpf_map_lookup_elem(t, &s->skey);
		}
		if (!av)
			return 0;
		gkey = av->group;
		mid = av->mask;
		wlo = a->window & 0xffff;
		whi = a->window >> 16;
	}
	void *gt = bpf_map_lookup_elem(&group_config, &s->slot);
	struct group_config *g = gt ? bpf_map_lookup_elem(gt, &gkey) : NULL;
	struct mask_value *m = mask_of(s->slot, mid);
	if (!g || !m) {
		c->missing = 1;
		return 1;
	}
	u32 lo = m->lo > wlo ? m->lo : wlo;
	u32 hi = m->hi < whi ? m->hi : whi;
	if (hi > MASK_WORDS)
		hi = MASK_WORDS;
	if (lo >= hi)
		return 0;
	struct and_ctx init = {.m = m->w, .acc = s->acc, .base = lo};
	bpf_loop(hi - lo, copy_step, &init, 0);
	s->lo = lo;
	s->hi = hi;
	u32 ndims = g->ndims;
	if (ndims > MAX_DIMS)
		ndims = MAX_DIMS;
	/* Past this point the two kinds of phase run the same code: keep
	 * what differs in the scratch, not in registers, so that the verifier
	 * sees one state at the dimension loop and checks it once. */
	s->phase = i;
	s->phase_group = gkey;
	struct dims_ctx dc = {.dims = g->dims};
	bpf_loop(ndims, dim_step, &dc, 0);
	if (verdict_range(s, &g->deny, s->lo, s->hi))
		c->missing = 1;
	if (s->lo < s->hi) {
		u32 p = s->phase;
		if (p == 0) {
			s->hook_lo = s->lo;
			s->hook_hi = s->hi;
		} else {
			s->group_range[(p - 1) & (MAX_ANCHORS - 1)] = s->lo | s->hi << 16;
			s->ev.groups[(p - 1) & (MAX_ANCHORS - 1)] = s->phase_group + 1;
		}
	}
	return 0;
}

/* Per-event outcome of classify(). */
struct outcome {
	u32 verdict; /* VERDICT_* to enforce */
	bool emit;   /* write an event */
};

/*
 * Decide the event in s (fields extracted, s->slot and s->hook set) with the
 * hook config cfg. Leaves the matched terms in s->acc: the hook's own words
 * in [hook_lo, hook_hi), each decided group's in its group_range.
 */
static __always_inline struct outcome classify(struct scratch *s, struct hook_config *cfg)
{
	struct outcome o = {.verdict = VERDICT_ALLOW, .emit = false};
	s->mask_missing = 0;
	s->hook_lo = s->hook_hi = 0;
#pragma clang loop unroll(full)
	for (int i = 0; i < MAX_ANCHORS; i++) {
		s->group_range[i] = 0;
		s->ev.groups[i] = 0;
	}
	__builtin_memset(&s->sum, 0, sizeof(s->sum));
	struct phases_ctx ac = {.cfg = cfg};
	u32 nanchors = cfg->nanchors;
	if (nanchors > MAX_ANCHORS)
		nanchors = MAX_ANCHORS;
	bpf_loop(1 + nanchors, phase_step, &ac, 0);
	if (ac.missing || s->mask_missing) {
		stat_inc(STAT_MASK_MISSING);
		return o;
	}
	struct verdict_sum *v = &s->sum;
	if (v->k)
		o.verdict = VERDICT_KILL;
	else if (v->d || (v->sc && !v->a))
		o.verdict = VERDICT_DENY;
	/* An event when something is enforced, audited or counted, or when
	 * monitor policies would deny (a matched monitor deny/kill rule is
	 * audited as would-deny; a monitor scope that nothing allows would
	 * deny). A matched monitor term that changes nothing (an allow, or a
	 * scope an allow overrides) says nothing: no event, as for an
	 * enforced allow. */
	bool would_deny = v->wd || (v->wsc && !v->wa);
	o.emit = o.verdict != VERDICT_ALLOW || v->acct || would_deny;
	return o;
}

/* The slot in force and its config for `hook`, or NULL (counted). */
static __always_inline struct hook_config *begin(struct scratch **sp, u32 hook)
{
	u32 zero = 0;
	stat_inc(hook);
	struct active_slot *act = bpf_map_lookup_elem(&active, &zero);
	if (!act) {
		stat_inc(STAT_NO_CONFIG);
		return NULL;
	}
	u32 slot = READ_ONCE_U32(act->slot) & (SLOTS - 1);
	struct hook_config *cfg = config_of(slot, hook);
	if (!cfg) {
		stat_inc(STAT_NO_CONFIG);
		return NULL;
	}
	if (!cfg->has_terms)
		return NULL;
	struct scratch *s = get_scratch();
	if (!s) {
		stat_inc(STAT_SCRATCH_MISSING);
		return NULL;
	}
	/*
	 * Programs run with migration, not preemption, disabled: on a
	 * preemptible kernel another task's run on this CPU could start while
	 * this one is mid-way and overwrite the per-CPU scratch. The flag makes
	 * that run step aside (allowed, counted as scratch_busy) instead of
	 * deciding on mixed values. Every program that got a config from here
	 * calls release() before it returns.
	 */
	if (__sync_val_compare_and_swap(&s->busy, 0, 1) != 0) {
		stat_inc(STAT_SCRATCH_BUSY);
		return NULL;
	}
	s->slot = slot;
	s->hook = hook;
	s->present = 0;
	s->incomplete = 0;
	s->truncated = 0;
	s->flags = 0;
	/* Hook-specific values of an earlier event on this CPU must not leak. */
	s->new_caps = 0;
	s->ip_family = 0;
	__builtin_memset(s->ip, 0, 16);
	s->num[FIELD_CRED_NEW_UID] = 0;
	s->num[FIELD_CRED_NEW_EUID] = 0;
	s->num[FIELD_CRED_NEW_GID] = 0;
	s->num[FIELD_CRED_NEW_EGID] = 0;
	s->ev.op = 0;
	s->ev.port = 0;
	s->ev.protocol = 0;
	s->ev.target_pid = 0;
	*sp = s;
	return cfg;
}

/* Give the scratch back (see begin()). */
static __always_inline void release(struct scratch *s)
{
	/* Only the owner clears it, on the CPU it runs on: a plain store. */
	*(volatile u32 *)&s->busy = 0;
}

/* Send SIGKILL to the current task for a deny/kill verdict (tracepoint hooks). */
static __always_inline void enforce_kill(struct scratch *s, struct outcome o)
{
	if (o.verdict == VERDICT_ALLOW)
		return;
	if (bpf_send_signal(SIGKILL) == 0) {
		s->flags |= EV_KILL_SENT;
		stat_inc(STAT_KILLS);
	} else {
		s->flags |= EV_KILL_FAILED;
		stat_inc(STAT_KILL_FAILED);
	}
}

/* ---- Events ------------------------------------------------------------- */

static __always_inline long put_str(struct bpf_dynptr *p, u32 off, u32 region, u32 len)
{
	struct strbuf *b = get_strbuf();
	if (!b || len == 0)
		return 0;
	return bpf_dynptr_write(p, off, &b->str[region_base(region)], len & (REGION - 1), 0);
}

/*
 * Write the event of the current task: extract the strings the
 * classification did not need, fill the header, reserve a record of the
 * exact size and copy header and strings into it.
 */
static __always_inline void emit(struct scratch *s, struct hook_config *cfg, struct task_struct *task,
				 struct file *exe, struct outcome o)
{
	if (!(s->present & (1ull << FIELD_PROCESS_BINARY)) && !(s->flags & EV_NO_BINARY)) {
		if (exe)
			file_field(s, FIELD_PROCESS_BINARY, R_BINARY, exe, task, EV_BINARY_TRUNCATED,
				   STAT_BINARY_TRUNCATED);
		else
			s->flags |= EV_NO_BINARY;
	}
	if (!(s->present & (1ull << FIELD_PARENT_BINARY)))
		file_field(s, FIELD_PARENT_BINARY, R_PARENT,
			   BPF_CORE_READ(task, real_parent, mm, exe_file), task,
			   EV_PARENT_TRUNCATED, STAT_OTHER_PATH_TRUNCATED);
	u32 alen = s->len[FIELD_PROCESS_ARGS];
	if (!(cfg->fields & (1ull << FIELD_PROCESS_ARGS)))
		alen = read_argv(s, task);
	/* cwd last: R_CWD held the joined args until now. */
	bool incomplete, too_long;
	u32 clen = resolve_path(s, R_CWD, BPF_CORE_READ(task, fs, pwd.dentry),
				BPF_CORE_READ(task, fs, pwd.mnt), task, &incomplete, &too_long);
	if (incomplete || too_long) {
		s->flags |= EV_CWD_TRUNCATED;
		stat_inc(STAT_OTHER_PATH_TRUNCATED);
	}

	struct policy_event *ev = &s->ev;
	ev->ktime_boot_ns = bpf_ktime_get_boot_ns();
	ev->cgroup_id = s->num[FIELD_CGROUP];
	ev->generation = cfg->generation;
	ev->caps = s->caps;
	ev->new_caps = s->new_caps;
	ev->hook = s->hook;
	ev->flags = s->flags;
	ev->verdict = o.verdict;
	ev->pid = BPF_CORE_READ(task, tgid);
	ev->tid = BPF_CORE_READ(task, pid);
	ev->ppid = BPF_CORE_READ(task, real_parent, tgid);
	ev->uid = s->num[FIELD_USER_UID];
	ev->euid = s->num[FIELD_USER_EUID];
	ev->gid = s->num[FIELD_USER_GID];
	ev->egid = s->num[FIELD_USER_EGID];
	ev->auid = s->num[FIELD_USER_AUID];
	ev->new_uid = s->num[FIELD_CRED_NEW_UID];
	ev->new_euid = s->num[FIELD_CRED_NEW_EUID];
	ev->new_gid = s->num[FIELD_CRED_NEW_GID];
	ev->new_egid = s->num[FIELD_CRED_NEW_EGID];
	ev->interactive = s->num[FIELD_PROCESS_INTERACTIVE];
	__builtin_memcpy(ev->comm, s->comm, 16);
	__builtin_memcpy(ev->addr, s->ip, 16);
	ev->family = s->ip_family;
	u64 have = s->present;
	ev->binary_len = have & (1ull << FIELD_PROCESS_BINARY) ? s->len[FIELD_PROCESS_BINARY] : 0;
	ev->args_len = alen;
	ev->cwd_len = clen;
	ev->parent_len = have & (1ull << FIELD_PARENT_BINARY) ? s->len[FIELD_PARENT_BINARY] : 0;
	ev->object_len = have & (1ull << FIELD_FILE_PATH)	   ? s->len[FIELD_FILE_PATH] :
			 have & (1ull << FIELD_TARGET_BINARY) ? s->len[FIELD_TARGET_BINARY] :
								  0;
	/* The matched terms: acc's words in the hook's range and in each
	 * decided group's, zero elsewhere. */
	__builtin_memset(ev->matched, 0, sizeof(ev->matched));
	if (s->hook_lo < s->hook_hi) {
		struct and_ctx c = {.m = s->acc, .acc = ev->matched, .base = s->hook_lo};
		bpf_loop(s->hook_hi - s->hook_lo, copy_step, &c, 0);
	}
#pragma clang loop unroll(full)
	for (int i = 0; i < MAX_ANCHORS; i++) {
		u32 r = s->group_range[i];
		u32 glo = r & 0xffff, ghi = r >> 16;
		if (glo < ghi) {
			struct and_ctx c = {.m = s->acc, .acc = ev->matched, .base = glo};
			bpf_loop(ghi - glo, copy_step, &c, 0);
		}
	}

	u32 blen = ev->binary_len & (REGION - 1), plen = ev->parent_len & (REGION - 1);
	u32 olen = ev->object_len & (REGION - 1);
	alen &= REGION - 1;
	clen &= REGION - 1;
	u32 size = sizeof(*ev) + blen + alen + clen + plen + olen;
	struct bpf_dynptr p;
	if (bpf_ringbuf_reserve_dynptr(&events, size, 0, &p) != 0) {
		bpf_ringbuf_discard_dynptr(&p, 0);
		stat_inc(STAT_RINGBUF_DROPS);
		return;
	}
	u32 off = sizeof(*ev);
	long err = bpf_dynptr_write(&p, 0, ev, sizeof(*ev), 0);
	err |= put_str(&p, off, R_BINARY, blen);
	off += blen;
	err |= put_str(&p, off, R_ARGS, alen);
	off += alen;
	err |= put_str(&p, off, R_CWD, clen);
	off += clen;
	err |= put_str(&p, off, R_PARENT, plen);
	off += plen;
	err |= put_str(&p, off, R_OBJECT, olen);
	if (err) {
		bpf_ringbuf_discard_dynptr(&p, 0);
		stat_inc(STAT_RINGBUF_DROPS);
		return;
	}
	bpf_ringbuf_submit_dynptr(&p, 0);
	stat_inc(STAT_EVENTS);
}

/* Classify the current event, kill on deny (tracepoint hooks), write the
 * event when the outcome asks for one. */
static __always_inline void finish_tp(struct scratch *s, struct hook_config *cfg,
				      struct task_struct *task, struct file *exe)
{
	struct outcome o = classify(s, cfg);
	enforce_kill(s, o);
	if (o.emit)
		emit(s, cfg, task, exe, o);
}

static __always_inline struct file *exe_of(struct task_struct *task)
{
	return BPF_CORE_READ(task, mm, exe_file);
}

/* ---- Hooks ------------------------------------------------------------ */

SEC("raw_tracepoint/sched_process_exec")
int policy_exec(struct bpf_raw_tracepoint_args *ctx)
{
	struct scratch *s;
	struct hook_config *cfg = begin(&s, HOOK_EXEC);
	if (!cfg)
		return 0;
	struct linux_binprm *bprm = (struct linux_binprm *)ctx->args[2];
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct file *exe = BPF_CORE_READ(bprm, file);
	extract_process(s, task, exe, cfg->fields);
	if (exe) {
		struct dentry *d = BPF_CORE_READ(exe, f_path.dentry);
		if (d && BPF_CORE_READ(d, d_hash.pprev) == NULL && BPF_CORE_READ(d, d_parent) != d)
			s->flags |= EV_BINARY_UNLINKED;
	}
	finish_tp(s, cfg, task, exe);
	release(s);
	return 0;
}

/* open: the fd returned by the syscall names the opened file. */
static __always_inline int on_open_exit(struct syscall_exit_ctx *ctx)
{
	s64 fd = ctx->ret;
	if (fd < 0)
		return 0;
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct fdtable *fdt = BPF_CORE_READ(task, files, fdt);
	if (!fdt || fd >= BPF_CORE_READ(fdt, max_fds))
		return 0;
	struct file **fds = BPF_CORE_READ(fdt, fd);
	struct file *f = NULL;
	bpf_probe_read_kernel(&f, sizeof(f), &fds[fd]);
	if (!f)
		return 0;
	struct scratch *s;
	struct hook_config *cfg = begin(&s, HOOK_OPEN);
	if (!cfg)
		return 0;
	struct file *exe = exe_of(task);
	extract_process(s, task, exe, cfg->fields);
	u32 mode = BPF_CORE_READ(f, f_mode);
	s->num[FIELD_FILE_WRITE] = (mode & (FMODE_WRITE | FMODE_CREATED)) != 0;
	s->present |= 1ull << FIELD_FILE_WRITE;
	s->ev.op = mode;
	file_field(s, FIELD_FILE_PATH, R_OBJECT, f, task, EV_OBJECT_TRUNCATED,
		   STAT_OTHER_PATH_TRUNCATED);
	finish_tp(s, cfg, task, exe);
	release(s);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_openat")
int policy_open(struct syscall_exit_ctx *ctx)
{
	return on_open_exit(ctx);
}

/* connect/bind: cgroup sock_addr programs return 1 to let the call
 * proceed, 0 to fail it with EPERM. */
static __always_inline int on_sock_addr(struct bpf_sock_addr *ctx, u32 hook, bool v6)
{
	struct scratch *s;
	struct hook_config *cfg = begin(&s, hook);
	if (!cfg)
		return 1;
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct file *exe = exe_of(task);
	extract_process(s, task, exe, cfg->fields);
	u32 addr_field = hook == HOOK_CONNECT ? FIELD_NET_DADDR : FIELD_NET_SADDR;
	u32 port_field = hook == HOOK_CONNECT ? FIELD_NET_DPORT : FIELD_NET_SPORT;
	__builtin_memset(s->ip, 0, 16);
	if (v6) {
		u32 a0 = ctx->user_ip6[0], a1 = ctx->user_ip6[1];
		u32 a2 = ctx->user_ip6[2], a3 = ctx->user_ip6[3];
		__builtin_memcpy(&s->ip[0], &a0, 4);
		__builtin_memcpy(&s->ip[4], &a1, 4);
		__builtin_memcpy(&s->ip[8], &a2, 4);
		__builtin_memcpy(&s->ip[12], &a3, 4);
		s->ip_family = 6;
		s->num[FIELD_NET_FAMILY] = 1;
	} else {
		u32 a = ctx->user_ip4;
		__builtin_memcpy(&s->ip[0], &a, 4);
		s->ip_family = 4;
		s->num[FIELD_NET_FAMILY] = 0;
	}
	u32 port = bpf_ntohs(ctx->user_port & 0xffff);
	s->num[port_field & (NFIELDS - 1)] = port;
	u32 proto = ctx->protocol;
	s->ev.port = port;
	s->ev.protocol = proto;
	s->present |= (1ull << addr_field) | (1ull << port_field) | (1ull << FIELD_NET_FAMILY);
	if (proto == IPPROTO_TCP || proto == IPPROTO_UDP) {
		s->num[FIELD_NET_PROTOCOL] = proto == IPPROTO_TCP ? 0 : 1;
		s->present |= 1ull << FIELD_NET_PROTOCOL;
	}
	struct outcome o = classify(s, cfg);
	if (o.verdict != VERDICT_ALLOW) {
		s->flags |= EV_REFUSED;
		stat_inc(STAT_REFUSED);
	}
	if (o.emit)
		emit(s, cfg, task, exe, o);
	release(s);
	return o.verdict == VERDICT_ALLOW ? 1 : 0;
}

SEC("cgroup/connect4")
int policy_connect4(struct bpf_sock_addr *ctx)
{
	return on_sock_addr(ctx, HOOK_CONNECT, false);
}

SEC("cgroup/connect6")
int policy_connect6(struct bpf_sock_addr *ctx)
{
	return on_sock_addr(ctx, HOOK_CONNECT, true);
}

SEC("cgroup/bind4")
int policy_bind4(struct bpf_sock_addr *ctx)
{
	return on_sock_addr(ctx, HOOK_BIND, false);
}

SEC("cgroup/bind6")
int policy_bind6(struct bpf_sock_addr *ctx)
{
	return on_sock_addr(ctx, HOOK_BIND, true);
}

/* setuid family: the ids after the call, from its arguments ((uid_t)-1
 * keeps an id); decided before the kernel changes anything. `two_args`:
 * setre*id and setres*id; setuid/setgid have one argument, and a tracepoint
 * program may not read past its tracepoint's record (the attach fails with
 * EACCES), hence two programs. */
static __always_inline int on_setid(struct syscall_enter_ctx *ctx, bool two_args)
{
	struct scratch *s;
	struct hook_config *cfg = begin(&s, HOOK_SETUID);
	if (!cfg)
		return 0;
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct file *exe = exe_of(task);
	extract_process(s, task, exe, cfg->fields);
	u64 uid = s->num[FIELD_USER_UID], euid = s->num[FIELD_USER_EUID];
	u64 gid = s->num[FIELD_USER_GID], egid = s->num[FIELD_USER_EGID];
	u32 a0 = ctx->args[0], a1 = two_args ? ctx->args[1] : 0;
	const u32 keep = 0xffffffff;
	/* CAP_SETUID (7) / CAP_SETGID (6) in the effective set: setuid/setgid
	 * set every id; without it only the effective one. */
	bool cap_setuid = s->caps & (1ull << 7), cap_setgid = s->caps & (1ull << 6);
	switch (ctx->nr) {
	case NR_SETUID:
		euid = a0;
		if (cap_setuid)
			uid = a0;
		break;
	case NR_SETREUID:
	case NR_SETRESUID:
		if (a0 != keep)
			uid = a0;
		if (a1 != keep)
			euid = a1;
		break;
	case NR_SETGID:
		egid = a0;
		if (cap_setgid)
			gid = a0;
		break;
	case NR_SETREGID:
	case NR_SETRESGID:
		if (a0 != keep)
			gid = a0;
		if (a1 != keep)
			egid = a1;
		break;
	default:
		release(s);
		return 0;
	}
	s->num[FIELD_CRED_NEW_UID] = uid;
	s->num[FIELD_CRED_NEW_EUID] = euid;
	s->num[FIELD_CRED_NEW_GID] = gid;
	s->num[FIELD_CRED_NEW_EGID] = egid;
	s->present |= (1ull << FIELD_CRED_NEW_UID) | (1ull << FIELD_CRED_NEW_EUID) |
		      (1ull << FIELD_CRED_NEW_GID) | (1ull << FIELD_CRED_NEW_EGID);
	s->ev.op = ctx->nr;
	finish_tp(s, cfg, task, exe);
	release(s);
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_setuid")
int policy_setuid(struct syscall_enter_ctx *ctx)
{
	return on_setid(ctx, false);
}

SEC("tracepoint/syscalls/sys_enter_setreuid")
int policy_setreuid(struct syscall_enter_ctx *ctx)
{
	return on_setid(ctx, true);
}

/* capset(header, data): data[0].effective is the low word, data[1] the high
 * word (versions 2 and 3; version 1 has one word). */
SEC("tracepoint/syscalls/sys_enter_capset")
int policy_capset(struct syscall_enter_ctx *ctx)
{
	struct scratch *s;
	struct hook_config *cfg = begin(&s, HOOK_CAPSET);
	if (!cfg)
		return 0;
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct file *exe = exe_of(task);
	u32 version = 0, lo = 0, hi = 0;
	bpf_probe_read_user(&version, 4, (void *)ctx->args[0]);
	bpf_probe_read_user(&lo, 4, (void *)ctx->args[1]);
	if (version != 0x19980330)
		bpf_probe_read_user(&hi, 4, (void *)(ctx->args[1] + 12));
	extract_process(s, task, exe, cfg->fields);
	s->new_caps = ((u64)hi << 32) | lo;
	s->present |= 1ull << FIELD_CRED_NEW_CAPS;
	finish_tp(s, cfg, task, exe);
	release(s);
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_ptrace")
int policy_ptrace_enter(struct syscall_enter_ctx *ctx)
{
	u64 req = ctx->args[0];
	if (req != PTRACE_ATTACH && req != PTRACE_SEIZE && req != PTRACE_TRACEME)
		return 0;
	u32 tid = (u32)bpf_get_current_pid_tgid();
	struct ptrace_call c = {.request = req, .pid = ctx->args[1]};
	bpf_map_update_elem(&ptrace_calls, &tid, &c, BPF_ANY);
	return 0;
}

/* After a successful attach the tracee is the newest entry of the tracer's
 * `ptraced` list (PTRACE_TRACEME: the tracer is our parent). */
SEC("tracepoint/syscalls/sys_exit_ptrace")
int policy_ptrace(struct syscall_exit_ctx *ctx)
{
	u32 tid = (u32)bpf_get_current_pid_tgid();
	struct ptrace_call *c = bpf_map_lookup_elem(&ptrace_calls, &tid);
	if (!c)
		return 0;
	u64 req = c->request;
	bpf_map_delete_elem(&ptrace_calls, &tid);
	if (ctx->ret != 0)
		return 0;
	struct scratch *s;
	struct hook_config *cfg = begin(&s, HOOK_PTRACE);
	if (!cfg)
		return 0;
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct task_struct *target;
	if (req == PTRACE_TRACEME) {
		target = BPF_CORE_READ(task, parent);
	} else {
		struct list_head *first = BPF_CORE_READ(task, ptraced.next);
		target = (struct task_struct *)((char *)first -
						bpf_core_field_offset(struct task_struct, ptrace_entry));
	}
	struct file *exe = exe_of(task);
	extract_process(s, task, exe, cfg->fields);
	s->ev.target_pid = BPF_CORE_READ(target, tgid);
	s->ev.op = req;
	file_field(s, FIELD_TARGET_BINARY, R_OBJECT, BPF_CORE_READ(target, mm, exe_file), task,
		   EV_OBJECT_TRUNCATED, STAT_OTHER_PATH_TRUNCATED);
	finish_tp(s, cfg, task, exe);
	release(s);
	return 0;
}
