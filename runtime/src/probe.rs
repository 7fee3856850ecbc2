//! `policyd probe`: which program types, attach types and helpers work on
//! this kernel, and per hook of the language the strongest mechanism.
//!
//! The kernel is asked, not assumed (DESIGN §6–§7): [`run`] loads the tiny
//! programs of `bpf-templates/probe.bpf.c` and, where attaching is the real
//! test, attaches and detaches them, recording the errno of each failure.
//! [`decide`] turns the outcomes into a mechanism per hook; it is pure.
//! The result is a [`KernelFeatures`] document, the format
//! `policyc check --kernel-features` reads.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use aya::programs::{
    BtfTracePoint, CgroupAttachMode, CgroupSockAddr, FEntry, Lsm, ProgramError, RawTracePoint,
    TracePoint,
};
use aya::{Btf, Ebpf, EbpfLoader};
use policy_compiler::kernel_features::{
    Hook, HookFeatures, KernelFeatures, Mechanism, ProbeOutcome, Refusal, FORMAT,
};

/// The compiled `bpf-templates/probe.bpf.o`, built by `build.rs`.
pub static PROBE_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/probe.bpf.o"));

/// Where the active LSMs are listed (securityfs).
pub const LSM_LIST: &str = "/sys/kernel/security/lsm";

/// One probe of [`PROBE_OBJECT`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Probe {
    /// `lsm/bprm_check_security`, loaded and attached, with `bpf` among the
    /// active LSMs when the list is readable. Stands for every LSM hook.
    Lsm,
    /// `fentry/security_bprm_check`, loaded and attached.
    Fentry,
    /// `tp_btf/sched_process_exec`, loaded and attached.
    TpBtfExec,
    /// `raw_tracepoint/sched_process_exec`, loaded and attached.
    RawTpExec,
    /// A `tracepoint` program attached to `syscalls/sys_enter_<syscall>` of
    /// the hook (see [`syscall_of`]).
    SyscallTp(Hook),
    /// `cgroup/connect4`, loaded and attached to a scratch cgroup.
    CgroupConnect4,
    /// `cgroup/bind4`, loaded and attached to a scratch cgroup.
    CgroupBind4,
    /// `bpf_send_signal` from a `tracepoint` program (loaded only).
    SignalTp,
    /// `bpf_send_signal` from a `raw_tracepoint` program (loaded only).
    SignalRawTp,
}

/// The syscall tracepoint (`sys_enter_<name>`) standing for a hook.
pub fn syscall_of(hook: Hook) -> &'static str {
    match hook {
        Hook::Exec => "execve",
        Hook::Open => "openat",
        Hook::Connect => "connect",
        Hook::Bind => "bind",
        Hook::Setuid => "setuid",
        Hook::Capset => "capset",
        Hook::ModuleLoad => "finit_module",
        Hook::Ptrace => "ptrace",
    }
}

/// The LSM hook a hook would use.
pub fn lsm_hook_of(hook: Hook) -> &'static str {
    match hook {
        Hook::Exec => "bprm_check_security",
        Hook::Open => "file_open",
        Hook::Connect => "socket_connect",
        Hook::Bind => "socket_bind",
        Hook::Setuid => "task_fix_setuid",
        Hook::Capset => "capset",
        Hook::ModuleLoad => "kernel_read_file",
        Hook::Ptrace => "ptrace_access_check",
    }
}

impl Probe {
    /// Every probe, in the order [`run`] does them.
    pub fn all() -> Vec<Probe> {
        let mut v = vec![
            Probe::Lsm,
            Probe::Fentry,
            Probe::TpBtfExec,
            Probe::RawTpExec,
        ];
        v.extend(Hook::ALL.iter().map(|(h, _)| Probe::SyscallTp(*h)));
        v.extend([
            Probe::CgroupConnect4,
            Probe::CgroupBind4,
            Probe::SignalTp,
            Probe::SignalRawTp,
        ]);
        v
    }

    /// Its name in reports: the section, and the attach point when it differs.
    pub fn name(self) -> String {
        match self {
            Probe::Lsm => "lsm/bprm_check_security".into(),
            Probe::Fentry => "fentry/security_bprm_check".into(),
            Probe::TpBtfExec => "tp_btf/sched_process_exec".into(),
            Probe::RawTpExec => "raw_tracepoint/sched_process_exec".into(),
            Probe::SyscallTp(h) => format!("tracepoint/syscalls/sys_enter_{}", syscall_of(h)),
            Probe::CgroupConnect4 => "cgroup/connect4".into(),
            Probe::CgroupBind4 => "cgroup/bind4".into(),
            Probe::SignalTp => "tracepoint+bpf_send_signal".into(),
            Probe::SignalRawTp => "raw_tracepoint+bpf_send_signal".into(),
        }
    }
}

/// The outcomes of the probes (a probe absent from the map was not run and
/// counts as failed).
pub type Outcomes = BTreeMap<Probe, ProbeOutcome>;

struct Candidate {
    mechanism: Mechanism,
    program: String,
    requires: Vec<Probe>,
}

/// The mechanisms a hook could use, strongest first.
fn candidates(hook: Hook) -> Vec<Candidate> {
    let c = |mechanism, program: String, requires: Vec<Probe>| Candidate {
        mechanism,
        program,
        requires,
    };
    let mut v = vec![c(
        Mechanism::Lsm,
        format!("lsm/{}", lsm_hook_of(hook)),
        vec![Probe::Lsm],
    )];
    if hook == Hook::Exec {
        let tp = Probe::RawTpExec.name();
        v.push(c(
            Mechanism::TracepointKill,
            tp.clone(),
            vec![Probe::RawTpExec, Probe::SignalRawTp],
        ));
        v.push(c(Mechanism::Audit, tp, vec![Probe::RawTpExec]));
        v.push(c(
            Mechanism::Audit,
            Probe::TpBtfExec.name(),
            vec![Probe::TpBtfExec],
        ));
        return v;
    }
    let sock = match hook {
        Hook::Connect => Some(Probe::CgroupConnect4),
        Hook::Bind => Some(Probe::CgroupBind4),
        _ => None,
    };
    if let Some(p) = sock {
        v.push(c(Mechanism::CgroupSockAddr, p.name(), vec![p]));
    }
    let tp = Probe::SyscallTp(hook);
    v.push(c(
        Mechanism::TracepointKill,
        tp.name(),
        vec![tp, Probe::SignalTp],
    ));
    v.push(c(Mechanism::Audit, tp.name(), vec![tp]));
    v
}

fn failed(outcomes: &Outcomes, p: Probe) -> Option<(Option<i32>, String)> {
    match outcomes.get(&p) {
        Some(o) if o.ok() => None,
        Some(o) => Some((o.errno, o.error.clone().unwrap_or_else(|| "failed".into()))),
        None => Some((None, "not probed".into())),
    }
}

/// The strongest mechanism of `hook` whose probes all succeeded, and the
/// stronger ones that did not (each with its first failed probe). Pure.
pub fn decide_hook(hook: Hook, outcomes: &Outcomes) -> HookFeatures {
    let mut refused: Vec<Refusal> = Vec::new();
    for cand in candidates(hook) {
        let first_failure = cand
            .requires
            .iter()
            .find_map(|p| failed(outcomes, *p).map(|f| (*p, f)));
        match first_failure {
            None => {
                return HookFeatures {
                    hook: hook.as_str().into(),
                    mechanism: cand.mechanism,
                    program: Some(cand.program),
                    capability: cand.mechanism.capability().into(),
                    refused,
                }
            }
            Some((probe, (errno, error))) => {
                // One refusal per mechanism: the strongest program's reason.
                if !refused.iter().any(|r| r.mechanism == cand.mechanism) {
                    refused.push(Refusal {
                        mechanism: cand.mechanism,
                        probe: probe.name(),
                        errno,
                        error,
                    });
                }
            }
        }
    }
    HookFeatures {
        hook: hook.as_str().into(),
        mechanism: Mechanism::Unavailable,
        program: None,
        capability: Mechanism::Unavailable.capability().into(),
        refused,
    }
}

/// The decision table: the mechanism of every hook of the language. Pure.
pub fn decide(outcomes: &Outcomes) -> Vec<HookFeatures> {
    Hook::ALL
        .iter()
        .map(|(h, _)| decide_hook(*h, outcomes))
        .collect()
}

/// The exec mechanism `policyd run` uses, for its readiness line: the
/// runtime implements exec with `raw_tracepoint/sched_process_exec` and
/// `bpf_send_signal` only, so this is that when the probe allows it (and
/// `strongest=…` is appended when the kernel offers a stronger one the
/// runtime does not implement yet), else what the probe found.
pub fn exec_mechanism(features: &KernelFeatures) -> String {
    let Some(exec) = features.mechanism(Hook::Exec) else {
        return "unknown".into();
    };
    let raw_tp = Probe::RawTpExec.name();
    let kill = |program: &str| format!("{program}+bpf_send_signal(SIGKILL)");
    match exec.mechanism {
        Mechanism::TracepointKill => kill(exec.program.as_deref().unwrap_or(&raw_tp)),
        Mechanism::Lsm | Mechanism::CgroupSockAddr => {
            let kill_ok = features
                .probes
                .iter()
                .filter(|p| p.name == raw_tp || p.name == Probe::SignalRawTp.name())
                .filter(|p| p.ok())
                .count()
                == 2;
            let strongest = exec.program.as_deref().unwrap_or("lsm");
            if kill_ok {
                format!("{} strongest={strongest}", kill(&raw_tp))
            } else {
                format!("unavailable strongest={strongest}")
            }
        }
        Mechanism::Audit | Mechanism::Unavailable => exec.mechanism.as_str().into(),
    }
}

/// The errno in an error's source chain, if any.
fn errno_of(e: &(dyn std::error::Error + 'static)) -> Option<i32> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            if let Some(n) = io.raw_os_error() {
                return Some(n);
            }
        }
        cur = err.source();
    }
    None
}

/// `EPERM`, `EINVAL`, … for the errnos a probe can meet.
pub fn errno_name(n: i32) -> String {
    let name = match n {
        libc::EPERM => "EPERM",
        libc::ENOENT => "ENOENT",
        libc::ESRCH => "ESRCH",
        libc::EBADF => "EBADF",
        libc::EACCES => "EACCES",
        libc::EBUSY => "EBUSY",
        libc::EINVAL => "EINVAL",
        libc::ENOSPC => "ENOSPC",
        libc::ENOSYS => "ENOSYS",
        libc::E2BIG => "E2BIG",
        libc::EOPNOTSUPP => "EOPNOTSUPP",
        524 => "ENOTSUPP",
        _ => return format!("errno {n}"),
    };
    name.into()
}

fn fail(stage: &str, e: &(dyn std::error::Error + 'static)) -> (Option<i32>, String) {
    let errno = errno_of(e);
    let what = match errno {
        Some(n) => {
            let msg = std::io::Error::from_raw_os_error(n).to_string();
            let msg = msg.split(" (os error").next().unwrap_or("").to_string();
            format!("{stage}: {} ({msg})", errno_name(n))
        }
        // The first line only: a load error carries the verifier log.
        None => format!("{stage}: {}", e.to_string().lines().next().unwrap_or("")),
    };
    (errno, what)
}

fn outcome(
    name: String,
    load: Result<(), ProgramError>,
    attach: Option<Result<(), ProgramError>>,
) -> ProbeOutcome {
    match (load, attach) {
        (Err(e), _) => {
            let (errno, error) = fail("load", &e);
            ProbeOutcome {
                name,
                loaded: false,
                attached: None,
                errno,
                error: Some(error),
            }
        }
        (Ok(()), None) => ProbeOutcome {
            name,
            loaded: true,
            attached: None,
            errno: None,
            error: None,
        },
        (Ok(()), Some(Ok(()))) => ProbeOutcome {
            name,
            loaded: true,
            attached: Some(true),
            errno: None,
            error: None,
        },
        (Ok(()), Some(Err(e))) => {
            let (errno, error) = fail("attach", &e);
            ProbeOutcome {
                name,
                loaded: true,
                attached: Some(false),
                errno,
                error: Some(error),
            }
        }
    }
}

fn failure(name: String, errno: Option<i32>, error: String) -> ProbeOutcome {
    ProbeOutcome {
        name,
        loaded: false,
        attached: None,
        errno,
        error: Some(error),
    }
}

fn program<'a, T>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut T, ProgramError>
where
    &'a mut T: TryFrom<&'a mut aya::programs::Program, Error = ProgramError>,
{
    ebpf.program_mut(name)
        .ok_or(ProgramError::UnexpectedProgramType)?
        .try_into()
}

/// The mount point of the cgroup v2 hierarchy, from /proc/self/mountinfo.
fn cgroup2_mount() -> Option<PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    info.lines().find_map(|l| {
        let (left, right) = l.split_once(" - ")?;
        if right.split(' ').next() != Some("cgroup2") {
            return None;
        }
        left.split(' ').nth(4).map(PathBuf::from)
    })
}

/// A scratch cgroup for attach tests, removed on drop.
struct ScratchCgroup(PathBuf);

impl ScratchCgroup {
    fn create() -> Result<ScratchCgroup, String> {
        let root = cgroup2_mount().ok_or("no cgroup2 hierarchy is mounted")?;
        let dir = root.join(format!("policyd-probe-{}", std::process::id()));
        std::fs::create_dir(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        Ok(ScratchCgroup(dir))
    }
}

impl Drop for ScratchCgroup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.0);
    }
}

fn active_lsms(path: &Path) -> Option<Vec<String>> {
    let text = std::fs::read_to_string(path).ok()?;
    Some(
        text.trim()
            .split(',')
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect(),
    )
}

fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// Run every probe on this kernel (needs root), and decide.
pub fn run() -> KernelFeatures {
    let lsm = active_lsms(Path::new(LSM_LIST));
    let outcomes = probe_all(lsm.as_deref());
    let hooks = decide(&outcomes);
    KernelFeatures {
        format: FORMAT.into(),
        kernel: kernel_release(),
        lsm,
        probes: outcomes.into_values().collect(),
        hooks,
    }
}

fn probe_all(lsm: Option<&[String]>) -> Outcomes {
    let mut out = Outcomes::new();
    let mut ebpf = match EbpfLoader::new().load(PROBE_OBJECT) {
        Ok(e) => e,
        Err(e) => {
            let (errno, error) = fail("object", &e);
            for p in Probe::all() {
                out.insert(p, failure(p.name(), errno, error.clone()));
            }
            return out;
        }
    };
    let btf = Btf::from_sys_fs().map_err(|e| format!("no kernel BTF: {e}"));

    // BPF-LSM.
    let lsm_outcome = match &btf {
        Err(e) => failure(Probe::Lsm.name(), None, e.clone()),
        Ok(btf) => {
            let r = program::<Lsm>(&mut ebpf, "probe_lsm").and_then(|p| {
                p.load("bprm_check_security", btf)?;
                Ok(p)
            });
            match r {
                Err(e) => outcome(Probe::Lsm.name(), Err(e), None),
                Ok(p) => {
                    let attach = p.attach().and_then(|l| p.detach(l));
                    let mut o = outcome(Probe::Lsm.name(), Ok(()), Some(attach));
                    if o.ok() {
                        if let Some(list) = lsm.filter(|l| !l.iter().any(|s| s == "bpf")) {
                            o.error = Some(format!(
                                "loads and attaches, but `bpf` is not among the active LSMs ({})",
                                list.join(",")
                            ));
                        }
                    }
                    o
                }
            }
        }
    };
    out.insert(Probe::Lsm, lsm_outcome);

    // fentry.
    let fentry = match &btf {
        Err(e) => failure(Probe::Fentry.name(), None, e.clone()),
        Ok(btf) => match program::<FEntry>(&mut ebpf, "probe_fentry")
            .and_then(|p| p.load("security_bprm_check", btf).map(|()| p))
        {
            Err(e) => outcome(Probe::Fentry.name(), Err(e), None),
            Ok(p) => {
                let attach = p.attach().and_then(|l| p.detach(l));
                outcome(Probe::Fentry.name(), Ok(()), Some(attach))
            }
        },
    };
    out.insert(Probe::Fentry, fentry);

    // tp_btf.
    let tp_btf = match &btf {
        Err(e) => failure(Probe::TpBtfExec.name(), None, e.clone()),
        Ok(btf) => match program::<BtfTracePoint>(&mut ebpf, "probe_tp_btf_exec")
            .and_then(|p| p.load("sched_process_exec", btf).map(|()| p))
        {
            Err(e) => outcome(Probe::TpBtfExec.name(), Err(e), None),
            Ok(p) => {
                let attach = p.attach().and_then(|l| p.detach(l));
                outcome(Probe::TpBtfExec.name(), Ok(()), Some(attach))
            }
        },
    };
    out.insert(Probe::TpBtfExec, tp_btf);

    // raw_tracepoint.
    let raw = match program::<RawTracePoint>(&mut ebpf, "probe_raw_tp_exec")
        .and_then(|p| p.load().map(|()| p))
    {
        Err(e) => outcome(Probe::RawTpExec.name(), Err(e), None),
        Ok(p) => {
            let attach = p.attach("sched_process_exec").and_then(|l| p.detach(l));
            outcome(Probe::RawTpExec.name(), Ok(()), Some(attach))
        }
    };
    out.insert(Probe::RawTpExec, raw);

    // Syscall tracepoints: one program, attached to each in turn.
    match program::<TracePoint>(&mut ebpf, "probe_tp_syscall").and_then(|p| p.load().map(|()| p)) {
        Err(e) => {
            let (errno, error) = fail("load", &e);
            for (h, _) in Hook::ALL {
                let p = Probe::SyscallTp(h);
                out.insert(p, failure(p.name(), errno, error.clone()));
            }
        }
        Ok(prog) => {
            for (h, _) in Hook::ALL {
                let tp = format!("sys_enter_{}", syscall_of(h));
                let attach = prog.attach("syscalls", &tp).and_then(|l| prog.detach(l));
                let p = Probe::SyscallTp(h);
                out.insert(p, outcome(p.name(), Ok(()), Some(attach)));
            }
        }
    }

    // cgroup sock_addr, attached to a scratch cgroup (not to the host's).
    let scratch = ScratchCgroup::create();
    for (probe, prog_name) in [
        (Probe::CgroupConnect4, "probe_connect4"),
        (Probe::CgroupBind4, "probe_bind4"),
    ] {
        let o = match program::<CgroupSockAddr>(&mut ebpf, prog_name)
            .and_then(|p| p.load().map(|()| p))
        {
            Err(e) => outcome(probe.name(), Err(e), None),
            Ok(p) => match &scratch {
                Err(why) => ProbeOutcome {
                    name: probe.name(),
                    loaded: true,
                    attached: None,
                    errno: None,
                    error: Some(format!("attach not tested: {why}")),
                },
                Ok(cg) => {
                    let attach = std::fs::File::open(&cg.0)
                        .map_err(|e| {
                            ProgramError::SyscallError(aya::sys::SyscallError {
                                call: "open",
                                io_error: e,
                            })
                        })
                        .and_then(|f| p.attach(f, CgroupAttachMode::Single))
                        .and_then(|l| p.detach(l));
                    outcome(probe.name(), Ok(()), Some(attach))
                }
            },
        };
        out.insert(probe, o);
    }
    drop(scratch);

    // Helpers: loaded (verified) only, never attached.
    let sig_tp = program::<TracePoint>(&mut ebpf, "probe_signal_tp").and_then(|p| p.load());
    out.insert(
        Probe::SignalTp,
        outcome(Probe::SignalTp.name(), sig_tp, None),
    );
    let sig_raw = program::<RawTracePoint>(&mut ebpf, "probe_signal_raw_tp").and_then(|p| p.load());
    out.insert(
        Probe::SignalRawTp,
        outcome(Probe::SignalRawTp.name(), sig_raw, None),
    );
    out
}

/// The human table of `policyd probe`.
pub fn render(f: &KernelFeatures) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let lsm = f.lsm.as_ref().map_or_else(
        || format!("unknown ({LSM_LIST} unreadable)"),
        |l| l.join(","),
    );
    let _ = writeln!(s, "kernel {}  active LSMs: {lsm}\n", f.kernel);
    let _ = writeln!(
        s,
        "{:<12} {:<17} {:<14} {:<45} refused",
        "hook", "mechanism", "deny", "program"
    );
    for h in &f.hooks {
        let refused = h
            .refused
            .iter()
            .map(|r| format!("{} ({}: {})", r.mechanism.as_str(), r.probe, r.error))
            .collect::<Vec<_>>()
            .join("; ");
        let _ = writeln!(
            s,
            "{:<12} {:<17} {:<14} {:<45} {}",
            h.hook,
            h.mechanism.as_str(),
            h.mechanism.capability(),
            h.program.as_deref().unwrap_or("-"),
            if refused.is_empty() { "-" } else { &refused }
        );
    }
    let _ = writeln!(s, "\n{:<46} {:<6} {:<7} error", "probe", "load", "attach");
    for p in &f.probes {
        let yn = |b: bool| if b { "ok" } else { "no" };
        let _ = writeln!(
            s,
            "{:<46} {:<6} {:<7} {}",
            p.name,
            yn(p.loaded),
            p.attached.map_or("-", yn),
            p.error.as_deref().unwrap_or("-")
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcomes(ok: &[Probe]) -> Outcomes {
        Probe::all()
            .into_iter()
            .map(|p| {
                let o = if ok.contains(&p) {
                    ProbeOutcome {
                        name: p.name(),
                        loaded: true,
                        attached: Some(true),
                        errno: None,
                        error: None,
                    }
                } else {
                    failure(p.name(), Some(libc::EPERM), "load: EPERM".into())
                };
                (p, o)
            })
            .collect()
    }

    fn mechanisms(o: &Outcomes) -> Vec<(String, Mechanism)> {
        decide(o)
            .into_iter()
            .map(|h| (h.hook, h.mechanism))
            .collect()
    }

    fn everything_but(not: &[Probe]) -> Vec<Probe> {
        Probe::all()
            .into_iter()
            .filter(|p| !not.contains(p))
            .collect()
    }

    #[test]
    fn lsm_wins_everywhere_it_loads() {
        let o = outcomes(&Probe::all());
        for (hook, m) in mechanisms(&o) {
            assert_eq!(m, Mechanism::Lsm, "{hook}");
        }
        let exec = decide_hook(Hook::Exec, &o);
        assert_eq!(exec.program.as_deref(), Some("lsm/bprm_check_security"));
        assert!(exec.refused.is_empty());
    }

    #[test]
    fn this_kernel_without_lsm_and_fentry() {
        // DESIGN §7: LSM and fentry refused with EPERM, the rest works.
        let o = outcomes(&everything_but(&[Probe::Lsm, Probe::Fentry]));
        let m: BTreeMap<_, _> = mechanisms(&o).into_iter().collect();
        assert_eq!(m["exec"], Mechanism::TracepointKill);
        assert_eq!(m["connect"], Mechanism::CgroupSockAddr);
        assert_eq!(m["bind"], Mechanism::CgroupSockAddr);
        for h in ["open", "setuid", "capset", "module_load", "ptrace"] {
            assert_eq!(m[h], Mechanism::TracepointKill, "{h}");
        }
        let exec = decide_hook(Hook::Exec, &o);
        assert_eq!(
            exec.program.as_deref(),
            Some("raw_tracepoint/sched_process_exec")
        );
        assert_eq!(exec.refused.len(), 1);
        assert_eq!(exec.refused[0].mechanism, Mechanism::Lsm);
        assert_eq!(exec.refused[0].errno, Some(libc::EPERM));
        let f = KernelFeatures {
            format: FORMAT.into(),
            kernel: String::new(),
            lsm: None,
            probes: o.values().cloned().collect(),
            hooks: decide(&o),
        };
        assert_eq!(
            exec_mechanism(&f),
            crate::loader::mechanism(Hook::Exec),
            "the readiness line keeps today's text on this kernel"
        );
    }

    #[test]
    fn without_send_signal_hooks_are_audit_only() {
        let o = outcomes(&everything_but(&[
            Probe::Lsm,
            Probe::SignalTp,
            Probe::SignalRawTp,
        ]));
        let m: BTreeMap<_, _> = mechanisms(&o).into_iter().collect();
        assert_eq!(m["exec"], Mechanism::Audit);
        assert_eq!(m["open"], Mechanism::Audit);
        assert_eq!(m["connect"], Mechanism::CgroupSockAddr);
        let open = decide_hook(Hook::Open, &o);
        let refused: Vec<_> = open.refused.iter().map(|r| r.mechanism).collect();
        assert_eq!(refused, [Mechanism::Lsm, Mechanism::TracepointKill]);
        assert_eq!(open.refused[1].probe, "tracepoint+bpf_send_signal");
    }

    #[test]
    fn nothing_loads_nothing_is_available() {
        let o = outcomes(&[]);
        for (hook, m) in mechanisms(&o) {
            assert_eq!(m, Mechanism::Unavailable, "{hook}");
        }
        assert!(decide(&Outcomes::new())
            .iter()
            .all(|h| h.mechanism == Mechanism::Unavailable));
    }

    #[test]
    fn tp_btf_alone_audits_exec() {
        let o = outcomes(&[Probe::TpBtfExec, Probe::SignalRawTp]);
        let exec = decide_hook(Hook::Exec, &o);
        assert_eq!(exec.mechanism, Mechanism::Audit);
        assert_eq!(exec.program.as_deref(), Some("tp_btf/sched_process_exec"));
    }

    #[test]
    fn lsm_not_active_is_a_refusal() {
        let mut o = outcomes(&Probe::all());
        o.get_mut(&Probe::Lsm).unwrap().error = Some("bpf not active".into());
        assert_eq!(
            decide_hook(Hook::Exec, &o).mechanism,
            Mechanism::TracepointKill
        );
    }

    #[test]
    fn probe_object_has_every_program() {
        let obj = aya_obj::Object::parse(PROBE_OBJECT).expect("probe object parses");
        for name in [
            "probe_lsm",
            "probe_fentry",
            "probe_tp_btf_exec",
            "probe_raw_tp_exec",
            "probe_tp_syscall",
            "probe_connect4",
            "probe_bind4",
            "probe_signal_tp",
            "probe_signal_raw_tp",
        ] {
            assert!(obj.programs.contains_key(name), "{name}");
        }
    }
}
