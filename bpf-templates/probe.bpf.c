// SPDX-License-Identifier: GPL-2.0
/*
 * probe.bpf.c — tiny programs that `policyd probe` (runtime/src/probe.rs)
 * loads, and where attaching is the real test attaches, to find which
 * program types, attach types and helpers this kernel allows. Every program
 * does nothing (returns "allow"); the bpf_send_signal ones are only loaded
 * (verified), never attached, so they never run.
 */
#include "vmlinux_min.h"
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

/* BPF-LSM: stands for every LSM hook (bprm_check_security, file_open, …). */
SEC("lsm/bprm_check_security")
int probe_lsm(void *ctx)
{
	return 0;
}

/* fentry/fexit trampolines. */
SEC("fentry/security_bprm_check")
int probe_fentry(void *ctx)
{
	return 0;
}

SEC("tp_btf/sched_process_exec")
int probe_tp_btf_exec(void *ctx)
{
	return 0;
}

SEC("raw_tracepoint/sched_process_exec")
int probe_raw_tp_exec(void *ctx)
{
	return 0;
}

/* Attached in turn to syscalls/sys_enter_{openat,connect,bind,setuid,…}. */
SEC("tracepoint/syscalls/sys_enter_openat")
int probe_tp_syscall(void *ctx)
{
	return 0;
}

SEC("cgroup/connect4")
int probe_connect4(void *ctx)
{
	return 1;
}

SEC("cgroup/bind4")
int probe_bind4(void *ctx)
{
	return 1;
}

/* Helpers: loaded only, never attached. */
SEC("tracepoint/syscalls/sys_enter_openat")
int probe_signal_tp(void *ctx)
{
	bpf_send_signal(9);
	return 0;
}

SEC("raw_tracepoint/sched_process_exec")
int probe_signal_raw_tp(void *ctx)
{
	bpf_send_signal(9);
	return 0;
}
