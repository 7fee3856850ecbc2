// SPDX-License-Identifier: GPL-2.0
/*
 * exec.bpf.c — the exec hook of policyc: classify every successful execve and
 * kill, audit or let it pass according to the bundle's exec tables.
 *
 * Attach point: raw_tracepoint/sched_process_exec, args
 *   (struct task_struct *p, pid_t old_pid, struct linux_binprm *bprm).
 * It fires in exec_binprm() after begin_new_exec(): the new mm, credentials
 * and comm are installed and the thread group has been de-threaded, but the
 * new image has not run a single user instruction. A SIGKILL queued here
 * (bpf_send_signal) is delivered on the way back to user mode, so a denied
 * binary never runs its own code. That is how "deny" is enforced on kernels
 * where BPF-LSM is not available (fentry/LSM are refused on our hosts).
 *
 * Why raw_tracepoint and not tp_btf: both are available on our kernels and both
 * can call bpf_send_signal; raw_tracepoint needs no attach-time BTF id (the
 * loader does not have to resolve `btf_trace_sched_process_exec`), attaches on
 * every kernel since 4.17, and all our reads go through CO-RE
 * bpf_probe_read_kernel anyway (the dentry/mount walk dereferences pointers
 * that tp_btf would not treat as trusted either).
 *
 * process.binary is the canonical absolute path of bprm->file, resolved here
 * by walking dentries and mounts the way d_path() does (bpf_d_path is not
 * allowed in tracepoints). So `./sudo`, a symlink to sudo and a PATH lookup all
 * yield /usr/bin/sudo. For a `#!` script, bprm->file is the interpreter at
 * this point, so process.binary is the interpreter (the file the kernel maps).
 *
 * Lookup (one dimension today, the others AND in the same way):
 *   key = the path zero-padded to PATH_KEY_LEN bytes;
 *   if len <= PATH_KEY_LEN - 1 and key is in exec_path_exact -> that mask;
 *   else LPM lookup with prefixlen 8 * min(len, PATH_KEY_LEN) -> that mask;
 *   else the dimension's default mask.
 *   If the walk did not reach the root (more than PATH_MAX_DEPTH components
 *   or PATH_MAX_MOUNTS mount crossings), the leading part of the path is
 *   unknown: the default mask is used, the event is flagged
 *   EV_BINARY_TRUNCATED and STAT_BINARY_TRUNCATED is counted. A path that
 *   is complete but longer than PATH_BUF_LEN - 1 keeps its leading
 *   PATH_BUF_LEN - 1 bytes, so the prefix lookup still applies (it is flagged
 *   and counted too). Exact literals are at most PATH_KEY_LEN - 1 bytes,
 *   hence at most 127 components, so they are never affected by the depth
 *   limit.
 *
 * Tables are double-buffered (two slots, see the maps below); the event
 * carries the generation of the slot that decided it.
 *
 * Decision: matched = terms & binary mask. Any deny|kill term -> SIGKILL.
 * An event goes to the ring buffer iff matched & (audit|deny|kill) != 0; user
 * space names the rules and the verdict from the matched mask.
 *
 * Loops: the two halves of the path walk run under bpf_loop() (kernel 5.17+),
 * whose callbacks are verified independently of the iteration count; a plain
 * bounded loop of PATH_MAX_DEPTH + PATH_MAX_MOUNTS iterations, three walks per
 * event, exceeds the verifier's 1M-instruction budget on 6.x.
 *
 * Events are variable length (bpf_ringbuf_output from per-CPU scratch): a
 * fixed header and the four strings back to back, so an event costs its real
 * size in the ring buffer (typically ~200 bytes), not the ~13 KiB worst case.
 */
#include "vmlinux_min.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include "exec_abi.h"

char LICENSE[] SEC("license") = "GPL";

#define SIGKILL 9
#define READ_ONCE_U32(x) (*(volatile __u32 *)&(x))

/* Strings are packed from the start of scratch.str. Each starts below
 * STR_BASE_SPAN; the area has room for the largest write past any start the
 * verifier can prove (a path component at offset PATH_BUF_LEN - 1). */
#define STR_BASE_SPAN 16384
#define STR_AREA (STR_BASE_SPAN + PATH_BUF_LEN + PATH_NAME_MAX + 1)

_Static_assert(3 * PATH_BUF_LEN + ARGS_BUF_LEN <= STR_BASE_SPAN, "strings fit the span");
_Static_assert((PATH_BUF_LEN & (PATH_BUF_LEN - 1)) == 0, "PATH_BUF_LEN is a power of two");
_Static_assert(ARGS_BUF_LEN <= PATH_BUF_LEN, "args fit the slack");
_Static_assert((PATH_MAX_DEPTH & (PATH_MAX_DEPTH - 1)) == 0, "PATH_MAX_DEPTH is a power of two");
_Static_assert(sizeof(struct exec_event) == EXEC_EVENT_HEADER_SIZE, "event header layout");
_Static_assert(sizeof(struct exec_config) == 6 * 8 * MASK_WORDS + 24, "config layout");
_Static_assert(sizeof(struct exec_active) == 16, "active layout");
_Static_assert((EXEC_SLOTS & (EXEC_SLOTS - 1)) == 0, "EXEC_SLOTS is a power of two");
_Static_assert(PATH_KEY_LEN <= PATH_BUF_LEN, "key fits the path buffer");

/* Per-CPU work area: the event being built, the path walk's component list
 * and the lookup key. Too large for the 512-byte BPF stack. */
/* State of the path walk in progress (pointers kept as u64). */
struct walk_state {
	u64 dentry;
	u64 vfsmnt;
	u64 mnt;
	u64 root_dentry;
	u64 root_mnt;
	u32 n;    /* components collected */
	u32 off;  /* bytes written */
	u32 base; /* start of the string in scratch.str */
	u32 complete;
	u32 too_long;
};

struct scratch {
	struct walk_state walk;
	struct exec_event ev;
	char str[STR_AREA];
	struct path_lpm_key key;
	u64 names[PATH_MAX_DEPTH];
	u32 lens[PATH_MAX_DEPTH];
};

/*
 * Double-buffered tables (atomic updates, see docs/runtime.md "Updates").
 * Two slots, 0 and 1, each {exact HASH, prefix LPM_TRIE, config}. The hash
 * and LPM tables are inner maps of ARRAY_OF_MAPS[2] outer maps: policyd
 * creates them per bundle with max_entries = the bundle's entry count (the
 * kernel compares type, key/value size and flags of an inner map with the
 * template below, not max_entries). The config is a plain ARRAY[2], one
 * value per slot. exec_active[0].slot names the slot in force; the program
 * reads it once per event and uses only that slot, so an event is decided
 * by exactly one bundle, whose generation (exec_config[slot].generation) it
 * carries. policyd fills the inactive slot completely, then switches
 * exec_active with one map update (only the low byte of `slot` changes, so
 * a reader can never see a torn value), and waits for an RCU grace period
 * before it touches the now inactive slot again.
 */
struct exact_inner {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1); /* template: per bundle at swap */
	__type(key, __u8[PATH_KEY_LEN]);
	__type(value, __u64[MASK_WORDS]);
};

struct prefix_inner {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 1); /* template: per bundle at swap */
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct path_lpm_key);
	__type(value, __u64[MASK_WORDS]);
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, EXEC_SLOTS);
	__type(key, __u32);
	__array(values, struct exact_inner);
} exec_path_exact SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, EXEC_SLOTS);
	__type(key, __u32);
	__array(values, struct prefix_inner);
} exec_path_prefix SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, EXEC_SLOTS);
	__type(key, __u32);
	__type(value, struct exec_config);
} exec_config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct exec_active);
} exec_active SEC(".maps");

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
} exec_scratch SEC(".maps");

static __always_inline void stat_inc(u32 idx)
{
	u64 *v = bpf_map_lookup_elem(&stats, &idx);
	if (v)
		*v += 1;
}

static __always_inline struct mount *real_mount(struct vfsmount *vfsmnt)
{
	return (struct mount *)((char *)vfsmnt - bpf_core_field_offset(struct mount, mnt));
}

/* One step from the leaf towards the root: cross a mount or collect a name.
 * The verifier checks a bpf_loop callback until its state converges, not once
 * per iteration. The walk state lives in the scratch map, not on the stack, so
 * that the counters are unknown scalars to the verifier and it converges at
 * once (with precise stack counters it walks all iterations and runs out of
 * its instruction budget). */
static long walk_step(u32 i, void *data)
{
	u32 zero = 0;
	struct scratch *s = bpf_map_lookup_elem(&exec_scratch, &zero);
	if (!s)
		return 1;
	struct walk_state *w = &s->walk;

	/* Copy to locals: CO-RE reads must not see walk_state (not a kernel type). */
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
			/* Root of the mount tree (of the namespace, or an internal
			 * mount such as pipefs or the memfd shmem mount). */
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
		/* A disconnected or pseudo dentry (memfd, anon inode): its own
		 * name is all the path there is. */
		w->complete = 1;
		return 1;
	}
	w->dentry = (u64)parent;
	return 0;
}

/* Write component n - 1 - j (root side first) as "/name". */
static long write_step(u32 j, void *data)
{
	u32 zero = 0;
	struct scratch *s = bpf_map_lookup_elem(&exec_scratch, &zero);
	if (!s)
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
	u32 base = w->base & (STR_BASE_SPAN - 1);
	s->str[base + (off & (PATH_BUF_LEN - 1))] = '/';
	off++;
	if (bpf_probe_read_kernel(&s->str[base + (off & (PATH_BUF_LEN - 1))], len & PATH_NAME_MAX,
				  (void *)s->names[idx]) < 0) {
		w->too_long = 1;
		return 1;
	}
	w->off = off + len;
	return 0;
}

/*
 * Resolve (dentry, vfsmnt) to an absolute path relative to (root_dentry,
 * root_mnt), the task's root (like d_path), and write it to s->str at `base`.
 * Returns its length (no NUL, < PATH_BUF_LEN). *incomplete is set when the
 * walk did not reach the root; *too_long when components were dropped
 * because the path exceeds PATH_BUF_LEN - 1 bytes (the leading part is kept).
 */
static __always_inline u32 resolve_path(struct scratch *s, u32 base, struct dentry *dentry,
					struct vfsmount *vfsmnt, struct dentry *root_dentry,
					struct vfsmount *root_mnt, bool *incomplete, bool *too_long)
{
	struct walk_state *w = &s->walk;

	*incomplete = true;
	*too_long = false;
	if (!dentry || !vfsmnt)
		return 0;
	w->dentry = (u64)dentry;
	w->vfsmnt = (u64)vfsmnt;
	w->mnt = (u64)real_mount(vfsmnt);
	w->root_dentry = (u64)root_dentry;
	w->root_mnt = (u64)root_mnt;
	w->n = 0;
	w->off = 0;
	w->base = base & (STR_BASE_SPAN - 1);
	w->complete = 0;
	w->too_long = 0;
	bpf_loop(PATH_MAX_DEPTH + PATH_MAX_MOUNTS, walk_step, NULL, 0);
	bpf_loop(PATH_MAX_DEPTH, write_step, NULL, 0);
	*incomplete = !w->complete;
	*too_long = w->too_long;

	u32 off = w->off & (PATH_BUF_LEN - 1);
	if (off == 0) {
		s->str[base & (STR_BASE_SPAN - 1)] = '/';
		off = 1;
	}
	return off;
}

static __always_inline bool dentry_unlinked(struct dentry *d)
{
	/* d_unhashed(): hlist_bl_unhashed(&d->d_hash). */
	return BPF_CORE_READ(d, d_hash.pprev) == NULL && BPF_CORE_READ(d, d_parent) != d;
}

SEC("raw_tracepoint/sched_process_exec")
int policy_exec(struct bpf_raw_tracepoint_args *ctx)
{
	u32 zero = 0;
	struct linux_binprm *bprm = (struct linux_binprm *)ctx->args[2];
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();

	stat_inc(STAT_EXECS);

	/* The one read of the active slot: everything below uses `slot` only. */
	struct exec_active *active = bpf_map_lookup_elem(&exec_active, &zero);
	if (!active) {
		stat_inc(STAT_NO_CONFIG);
		return 0;
	}
	u32 slot = READ_ONCE_U32(active->slot) & (EXEC_SLOTS - 1);
	struct exec_config *cfg = bpf_map_lookup_elem(&exec_config, &slot);
	if (!cfg) {
		stat_inc(STAT_NO_CONFIG);
		return 0;
	}
	if (!cfg->has_terms)
		return 0;
	struct scratch *s = bpf_map_lookup_elem(&exec_scratch, &zero);
	if (!s) {
		stat_inc(STAT_SCRATCH_MISSING);
		return 0;
	}

	u32 flags = 0;
	struct dentry *root_dentry = BPF_CORE_READ(task, fs, root.dentry);
	struct vfsmount *root_mnt = BPF_CORE_READ(task, fs, root.mnt);
	bool incomplete = false, too_long = false;

	/* process.binary */
	struct file *file = BPF_CORE_READ(bprm, file);
	u32 blen = 0;
	if (file) {
		struct dentry *d = BPF_CORE_READ(file, f_path.dentry);
		blen = resolve_path(s, 0, d, BPF_CORE_READ(file, f_path.mnt), root_dentry, root_mnt,
				    &incomplete, &too_long);
		if (d && dentry_unlinked(d))
			flags |= EV_BINARY_UNLINKED;
	} else {
		flags |= EV_NO_BINARY;
		incomplete = true;
	}
	if (incomplete || too_long) {
		flags |= EV_BINARY_TRUNCATED;
		stat_inc(STAT_BINARY_TRUNCATED);
	}

	/* Lookup of dimension process.binary. */
	u64 *bin_mask = cfg->binary_default;
	if ((cfg->dims & EXEC_DIM_BINARY) && !incomplete) {
		u32 klen = blen;
		if (klen > PATH_KEY_LEN)
			klen = PATH_KEY_LEN;
		__builtin_memset(&s->key, 0, sizeof(s->key));
		bpf_probe_read_kernel(s->key.data, klen & (2 * PATH_KEY_LEN - 1), s->str);
		u64 *m = NULL;
		if (blen <= PATH_KEY_LEN - 1 && (cfg->binary_tables & EXEC_BINARY_EXACT)) {
			void *exact = bpf_map_lookup_elem(&exec_path_exact, &slot);
			if (exact)
				m = bpf_map_lookup_elem(exact, s->key.data);
			else
				stat_inc(STAT_NO_CONFIG);
		}
		if (!m && (cfg->binary_tables & EXEC_BINARY_PREFIX)) {
			void *prefix = bpf_map_lookup_elem(&exec_path_prefix, &slot);
			s->key.prefixlen = klen * 8;
			if (prefix)
				m = bpf_map_lookup_elem(prefix, &s->key);
			else
				stat_inc(STAT_NO_CONFIG);
		}
		if (m)
			bin_mask = m;
	}

	/* AND the dimensions, then read the verdict masks. */
	u64 any_dk = 0, any_emit = 0;
#pragma clang loop unroll(full)
	for (int w = 0; w < MASK_WORDS; w++) {
		u64 m = cfg->terms[w];
		if (cfg->dims & EXEC_DIM_BINARY)
			m &= bin_mask[w];
		s->ev.matched[w] = m;
		any_dk |= m & (cfg->deny[w] | cfg->kill[w]);
		any_emit |= m & (cfg->deny[w] | cfg->kill[w] | cfg->audit[w]);
	}

	if (any_dk) {
		if (bpf_send_signal(SIGKILL) == 0) {
			flags |= EV_KILL_SENT;
			stat_inc(STAT_KILLS);
		} else {
			flags |= EV_KILL_FAILED;
			stat_inc(STAT_KILL_FAILED);
		}
	}
	if (!any_emit)
		return 0;

	/* Build the event. */
	struct exec_event *ev = &s->ev;
	ev->ktime_boot_ns = bpf_ktime_get_boot_ns();
	ev->cgroup_id = bpf_get_current_cgroup_id();
	ev->pid = BPF_CORE_READ(task, tgid);
	ev->tid = BPF_CORE_READ(task, pid);
	ev->ppid = BPF_CORE_READ(task, real_parent, tgid);
	ev->uid = BPF_CORE_READ(task, cred, uid.val);
	ev->euid = BPF_CORE_READ(task, cred, euid.val);
	ev->gid = BPF_CORE_READ(task, cred, gid.val);
	ev->egid = BPF_CORE_READ(task, cred, egid.val);
	if (bpf_core_field_exists(task->loginuid))
		ev->auid = BPF_CORE_READ(task, loginuid.val);
	else
		ev->auid = 0xffffffff;
	ev->_pad = 0;
	ev->generation = cfg->generation;
	bpf_get_current_comm(ev->comm, sizeof(ev->comm));

	/* argv, NUL-separated, from the new image's stack. */
	struct mm_struct *mm = BPF_CORE_READ(task, mm);
	u64 arg_start = BPF_CORE_READ(mm, arg_start);
	u64 arg_end = BPF_CORE_READ(mm, arg_end);
	u64 alen = arg_end > arg_start ? arg_end - arg_start : 0;
	if (alen > ARGS_BUF_LEN) {
		alen = ARGS_BUF_LEN;
		flags |= EV_ARGS_TRUNCATED;
		stat_inc(STAT_ARGS_TRUNCATED);
	}
	u32 abase = blen & (STR_BASE_SPAN - 1);
	alen &= 2 * ARGS_BUF_LEN - 1;
	if (bpf_probe_read_user(&s->str[abase], alen, (void *)arg_start) < 0)
		alen = 0;

	/* cwd: task->fs->pwd. */
	u32 cbase = (abase + (u32)alen) & (STR_BASE_SPAN - 1);
	u32 clen = resolve_path(s, cbase, BPF_CORE_READ(task, fs, pwd.dentry),
				BPF_CORE_READ(task, fs, pwd.mnt), root_dentry, root_mnt,
				&incomplete, &too_long);
	if (incomplete || too_long) {
		flags |= EV_CWD_TRUNCATED;
		stat_inc(STAT_OTHER_PATH_TRUNCATED);
	}

	/* Parent binary: task->real_parent->mm->exe_file (none for kernel threads). */
	u32 pbase = (cbase + clen) & (STR_BASE_SPAN - 1);
	u32 plen = 0;
	struct file *pexe = BPF_CORE_READ(task, real_parent, mm, exe_file);
	if (pexe) {
		plen = resolve_path(s, pbase, BPF_CORE_READ(pexe, f_path.dentry),
				    BPF_CORE_READ(pexe, f_path.mnt), root_dentry, root_mnt,
				    &incomplete, &too_long);
		if (incomplete || too_long) {
			flags |= EV_PARENT_TRUNCATED;
			stat_inc(STAT_OTHER_PATH_TRUNCATED);
		}
	}

	ev->flags = flags;
	ev->binary_len = blen;
	ev->args_len = alen;
	ev->cwd_len = clen;
	ev->parent_len = plen;

	u64 size = sizeof(*ev) + (u64)pbase + plen;
	if (size > sizeof(*ev) + STR_BASE_SPAN + PATH_BUF_LEN) {
		/* Unreachable (pbase < STR_BASE_SPAN, plen < PATH_BUF_LEN); the bound
		 * is for the verifier. Counted as a drop so it could never be silent. */
		stat_inc(STAT_RINGBUF_DROPS);
		return 0;
	}
	if (bpf_ringbuf_output(&events, ev, size, 0) == 0)
		stat_inc(STAT_EVENTS);
	else
		stat_inc(STAT_RINGBUF_DROPS);
	return 0;
}
