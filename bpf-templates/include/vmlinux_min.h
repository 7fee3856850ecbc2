/* SPDX-License-Identifier: GPL-2.0 */
/*
 * vmlinux_min.h — the few kernel types the policyc BPF templates touch.
 *
 * Hand-written instead of `bpftool btf dump file /sys/kernel/btf/vmlinux`
 * so that the build does not depend on the build host's kernel. Every record
 * is marked preserve_access_index: field offsets are CO-RE relocations that
 * the loader (aya) resolves against the *running* kernel's BTF, so only the
 * names and types of the fields used here must match the kernel, not their
 * positions or the other fields of each struct.
 *
 * Add a field here only when a template reads it.
 */
#ifndef POLICYC_VMLINUX_MIN_H
#define POLICYC_VMLINUX_MIN_H

typedef unsigned char __u8;
typedef signed char __s8;
typedef unsigned short __u16;
typedef signed short __s16;
typedef unsigned int __u32;
typedef signed int __s32;
typedef unsigned long long __u64;
typedef signed long long __s64;
typedef __u16 __be16;
typedef __u32 __be32;
typedef __u32 __wsum;

typedef __u8 u8;
typedef __u16 u16;
typedef __u32 u32;
typedef __u64 u64;
typedef __s32 s32;
typedef __s64 s64;
typedef int pid_t;
typedef unsigned int uid_t;
typedef unsigned int gid_t;
typedef _Bool bool;
#define true 1
#define false 0
#define NULL ((void *)0)

/* UAPI constants from <linux/bpf.h> (stable ABI, not CO-RE relocated). */
enum {
	BPF_MAP_TYPE_HASH = 1,
	BPF_MAP_TYPE_ARRAY = 2,
	BPF_MAP_TYPE_PERCPU_ARRAY = 6,
	BPF_MAP_TYPE_LPM_TRIE = 11,
	BPF_MAP_TYPE_ARRAY_OF_MAPS = 12,
	BPF_MAP_TYPE_LRU_HASH = 9,
	BPF_MAP_TYPE_RINGBUF = 27,
};
enum {
	BPF_ANY = 0,
	BPF_NOEXIST = 1,
	BPF_EXIST = 2,
};
enum {
	BPF_F_NO_PREALLOC = 1,
};

/* Context of BPF_PROG_TYPE_RAW_TRACEPOINT programs. */
struct bpf_raw_tracepoint_args {
	__u64 args[0];
};

/* Context of tracepoint/syscalls/sys_enter_* (see the tracepoint's format
 * file: common fields, `int __syscall_nr` at 8, arguments at 16). */
struct syscall_enter_ctx {
	__u64 _common;
	__s32 nr;
	__s32 _pad;
	__u64 args[6];
};

/* Context of tracepoint/syscalls/sys_exit_*: `long ret` at 16. */
struct syscall_exit_ctx {
	__u64 _common;
	__s32 nr;
	__s32 _pad;
	__s64 ret;
};

/* Context of cgroup sock_addr programs (UAPI struct bpf_sock_addr: the
 * verifier rewrites these offsets, so they must be exactly the UAPI's). */
struct bpf_sock_addr {
	__u32 user_family;  /* AF_INET or AF_INET6 */
	__u32 user_ip4;     /* network order */
	__u32 user_ip6[4];  /* network order */
	__u32 user_port;    /* network order, in the low 16 bits */
	__u32 family;
	__u32 type;         /* SOCK_STREAM, SOCK_DGRAM, ... */
	__u32 protocol;     /* IPPROTO_* */
	__u32 msg_src_ip4;
	__u32 msg_src_ip6[4];
	__u64 sk;
};

/* Opaque handle of bpf_ringbuf_reserve_dynptr (UAPI struct bpf_dynptr). */
struct bpf_dynptr {
	__u64 __opaque[2];
} __attribute__((aligned(8)));

#pragma clang attribute push(__attribute__((preserve_access_index)), apply_to = record)

typedef struct {
	uid_t val;
} kuid_t;

typedef struct {
	gid_t val;
} kgid_t;

struct qstr {
	union {
		struct {
			u32 hash;
			u32 len;
		};
		u64 hash_len;
	};
	const unsigned char *name;
};

struct hlist_bl_node {
	struct hlist_bl_node *next;
	struct hlist_bl_node **pprev;
};

struct dentry {
	struct hlist_bl_node d_hash;
	struct dentry *d_parent;
	struct qstr d_name;
};

struct vfsmount {
	struct dentry *mnt_root;
};

/* fs/mount.h: the kernel-private mount that embeds each vfsmount. */
struct mount {
	struct mount *mnt_parent;
	struct dentry *mnt_mountpoint;
	struct vfsmount mnt;
};

struct path {
	struct vfsmount *mnt;
	struct dentry *dentry;
};

struct file {
	struct path f_path;
	unsigned int f_mode; /* fmode_t: FMODE_WRITE, FMODE_CREATED */
};

struct fdtable {
	unsigned int max_fds;
	struct file **fd;
};

struct files_struct {
	struct fdtable *fdt;
};

struct tty_struct;

struct signal_struct {
	struct tty_struct *tty;
};

struct list_head {
	struct list_head *next;
	struct list_head *prev;
};

/* kernel_cap_t: a u64 since 6.3 (two u32 words before, same bytes on little
 * endian); read as 8 bytes at the field's relocated offset. */
typedef struct {
	u64 val;
} kernel_cap_t;

struct fs_struct {
	struct path root;
	struct path pwd;
};

struct cred {
	kuid_t uid;
	kgid_t gid;
	kuid_t euid;
	kgid_t egid;
	kernel_cap_t cap_effective;
};

struct mm_struct {
	unsigned long arg_start;
	unsigned long arg_end;
	struct file *exe_file;
};

struct task_struct {
	pid_t pid;
	pid_t tgid;
	struct task_struct *real_parent;
	struct task_struct *parent; /* the tracer when ptraced */
	struct list_head ptraced;   /* tracees, newest first */
	struct list_head ptrace_entry;
	const struct cred *cred;
	char comm[16];
	struct fs_struct *fs;
	struct files_struct *files;
	struct signal_struct *signal;
	struct mm_struct *mm;
	kuid_t loginuid;
};

struct linux_binprm {
	struct file *file;
	const char *filename;
};

#pragma clang attribute pop

#endif /* POLICYC_VMLINUX_MIN_H */
