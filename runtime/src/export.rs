//! Exported events: one JSON object per line, in the field shapes that
//! consumers of Tetragon's `process_exec` events already use.
//!
//! ```json
//! {"time":"2024-05-01T12:00:00.000000001Z","node_name":"n1",
//!  "process_exec":{"process":{"binary":"/usr/bin/sudo","arguments":"-n true",
//!     "argv":["-n","true"],"pid":4242,
//!     "tid":4242,"uid":1000,"euid":0,"gid":1000,"egid":1000,"auid":1000,"cwd":"/home/u",
//!     "comm":"sudo","cgroup_id":1234},"parent":{"binary":"/usr/bin/bash","pid":4200}},
//!  "policy":"sudo_audit","rule":"sudo_invoked","matched":["sudo_invoked"],
//!  "verdict":"allow","audit":true,"severity":"info","message":"sudo invoked",
//!  "bundle":{"name":"sudo-audit","digest":"sha256:…"}}
//! ```
//!
//! Events of the other hooks have the same `process` and `parent` under
//! `process_open` (with `file`), `process_connect` / `process_bind` (with
//! `sock`), `process_setuid` (with `cred`), `process_capset` (with `caps`)
//! and `process_ptrace` (with `target`); see docs/runtime.md.
//!
//! `process.flags` (names of `abi::flags`, then of `event::lossy`) is
//! present only when some flag is set. `auid` is 4294967295 when the login
//! uid is unset. `would_verdict`, `would_deny`, `scope` and `counters` are
//! present only when they say something: a monitor policy would have
//! decided otherwise, a `default deny` scope decided, a counter counted.
//!
//! A failed write never stops `policyd`: enforcement does not depend on the
//! reader of the events. [`ExportErrors`] counts failures and decides what
//! to log.
//!
//! A file target can be rotated by size ([`Rotation`]): before a line that
//! would take the file past `max_size`, the file is renamed `FILE.1` (older
//! backups shift to `FILE.2` … `FILE.N`, the oldest is removed), optionally
//! gzipped to `FILE.1.gz`, and a new `FILE` is started. Rotation happens only
//! between whole lines, so no line is ever split across files.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::abi::flags;
use crate::clock::{rfc3339, wall_time};
use crate::decision::Decision;
use crate::event::{lossy, KernelEvent};
use policy_compiler::bundle::Hook;

/// One exported event line.
#[derive(Debug, Serialize)]
pub struct ExportEvent<'a> {
    /// Wall-clock time of the exec, RFC 3339 with nanoseconds, UTC.
    pub time: String,
    /// The node's name (`--node-name`, `$NODE_NAME` or the hostname).
    pub node_name: &'a str,
    /// The event, Tetragon-shaped, under `process_<hook>`.
    #[serde(flatten)]
    pub body: HookBody<'a>,
    /// Policy of the deciding rule.
    pub policy: Option<&'a str>,
    /// Name of the deciding rule (see [`crate::decision`]).
    pub rule: Option<&'a str>,
    /// Names of every matched rule, by rule id.
    pub matched: Vec<&'a str>,
    /// `"allow"`, `"kill"` (a deny on a tracepoint hook is a SIGKILL) or
    /// `"deny"` (connect and bind refused with EPERM).
    pub verdict: &'static str,
    /// The verdict had monitor policies been enforced, when it differs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub would_verdict: Option<&'static str>,
    /// Matched deny/kill rules of monitor policies (audited, not enforced).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub would_deny: Vec<&'a str>,
    /// The `default deny` scope that denied, if one did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<&'a str>,
    /// Counters incremented (`count "name"` of matched rules).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub counters: Vec<&'a str>,
    /// Whether a matched rule audits.
    pub audit: bool,
    /// Highest severity among the matched rules that audit, else the
    /// deciding rule's (see [`crate::decision`]).
    pub severity: Option<&'static str>,
    /// Message of the deciding rule, if it has one.
    pub message: Option<&'a str>,
    /// The bundle that decided.
    pub bundle: BundleRef<'a>,
    /// Load generation of that bundle (1 for the first load; grows with
    /// reloads).
    pub generation: u64,
}

/// The hook-specific body of an exported event, keyed `process_<hook>`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HookBody<'a> {
    /// An exec: the process after exec and its parent.
    ProcessExec(ProcessExec<'a>),
    /// An open.
    ProcessOpen(WithObject<'a, FileInfo<'a>>),
    /// A connect.
    ProcessConnect(WithObject<'a, SockInfo>),
    /// A bind.
    ProcessBind(WithObject<'a, SockInfo>),
    /// A credential change (setuid family).
    ProcessSetuid(WithObject<'a, CredInfo>),
    /// A capset.
    ProcessCapset(WithObject<'a, CapsInfo>),
    /// A ptrace attach.
    ProcessPtrace(WithObject<'a, TargetInfo<'a>>),
}

impl<'a> HookBody<'a> {
    /// The acting process, whatever the hook.
    pub fn process_mut(&mut self) -> &mut Process<'a> {
        match self {
            HookBody::ProcessExec(e) => &mut e.process,
            HookBody::ProcessOpen(e) => &mut e.process,
            HookBody::ProcessConnect(e) | HookBody::ProcessBind(e) => &mut e.process,
            HookBody::ProcessSetuid(e) => &mut e.process,
            HookBody::ProcessCapset(e) => &mut e.process,
            HookBody::ProcessPtrace(e) => &mut e.process,
        }
    }
}

/// `process_exec`: the process and its parent.
#[derive(Debug, Serialize)]
pub struct ProcessExec<'a> {
    /// The process after exec.
    pub process: Process<'a>,
    /// Its parent.
    pub parent: Parent<'a>,
}

/// The process, its parent and what the hook acted on (exported under the
/// key the field's name gives: `file`, `sock`, `cred`, `caps`, `target`).
#[derive(Debug, Serialize)]
pub struct WithObject<'a, T: Serialize> {
    /// The acting process.
    pub process: Process<'a>,
    /// Its parent.
    pub parent: Parent<'a>,
    /// What it acted on.
    #[serde(flatten)]
    pub object: T,
}

/// `file` of `process_open`.
#[derive(Debug, Serialize)]
pub struct FileInfo<'a> {
    /// `file`.
    pub file: FileFields<'a>,
}

/// The opened file.
#[derive(Debug, Serialize)]
pub struct FileFields<'a> {
    /// Canonical absolute path (`file.f_path`).
    pub path: &'a str,
    /// Opened for writing (`FMODE_WRITE`) or created (`FMODE_CREATED`).
    pub write: bool,
    /// `file.f_mode`.
    pub f_mode: u32,
}

/// `sock` of `process_connect` / `process_bind`.
#[derive(Debug, Serialize)]
pub struct SockInfo {
    /// `sock`.
    pub sock: SockFields,
}

/// The socket address of a connect or bind.
#[derive(Debug, Serialize)]
pub struct SockFields {
    /// `ipv4` or `ipv6`.
    pub family: &'static str,
    /// `tcp`, `udp`, or the `IPPROTO_*` number.
    pub protocol: String,
    /// Destination (connect) or bound (bind) address.
    pub addr: String,
    /// Destination (connect) or bound (bind) port.
    pub port: u16,
}

/// `cred` of `process_setuid`.
#[derive(Debug, Serialize)]
pub struct CredInfo {
    /// `cred`.
    pub cred: CredFields,
}

/// The ids after a setuid-family call.
#[derive(Debug, Serialize)]
pub struct CredFields {
    /// The syscall: `setuid`, `setreuid`, `setresuid`, `setgid`, …
    pub syscall: &'static str,
    /// Real uid after the call.
    pub new_uid: u32,
    /// Effective uid after the call.
    pub new_euid: u32,
    /// Real gid after the call.
    pub new_gid: u32,
    /// Effective gid after the call.
    pub new_egid: u32,
}

/// `caps` of `process_capset`.
#[derive(Debug, Serialize)]
pub struct CapsInfo {
    /// `caps`.
    pub caps: CapsFields,
}

/// The capabilities of a capset.
#[derive(Debug, Serialize)]
pub struct CapsFields {
    /// The requested effective set, by name.
    pub new_effective: Vec<&'static str>,
    /// The effective set before the call, by name.
    pub effective: Vec<&'static str>,
}

/// `target` of `process_ptrace`.
#[derive(Debug, Serialize)]
pub struct TargetInfo<'a> {
    /// `target`.
    pub target: TargetFields<'a>,
}

/// The traced process.
#[derive(Debug, Serialize)]
pub struct TargetFields<'a> {
    /// Its process id.
    pub pid: u32,
    /// Its executable.
    pub binary: &'a str,
    /// `PTRACE_ATTACH`, `PTRACE_SEIZE` or `PTRACE_TRACEME`.
    pub request: &'static str,
}

/// The capability names set in `bits`.
pub fn cap_names(bits: u64) -> Vec<&'static str> {
    policy_dsl::schema::CAPABILITIES
        .iter()
        .filter(|(_, b)| bits & (1u64 << b) != 0)
        .map(|(n, _)| *n)
        .collect()
}

fn syscall_name(nr: u32) -> &'static str {
    match nr {
        105 => "setuid",
        106 => "setgid",
        113 => "setreuid",
        114 => "setregid",
        117 => "setresuid",
        119 => "setresgid",
        _ => "unknown",
    }
}

fn ptrace_request(r: u32) -> &'static str {
    match r {
        0 => "PTRACE_TRACEME",
        16 => "PTRACE_ATTACH",
        0x4206 => "PTRACE_SEIZE",
        _ => "unknown",
    }
}

/// `process_exec.process`.
#[derive(Debug, Serialize)]
pub struct Process<'a> {
    /// Canonical absolute path of the executable.
    pub binary: &'a str,
    /// argv\[1..\] joined with spaces (Tetragon's field; ambiguous when an
    /// argument holds a space).
    pub arguments: String,
    /// argv\[1..\], one string per argument.
    pub argv: Vec<String>,
    /// Process id (tgid).
    pub pid: u32,
    /// Thread id.
    pub tid: u32,
    /// Real uid.
    pub uid: u32,
    /// Effective uid.
    pub euid: u32,
    /// Real gid.
    pub gid: u32,
    /// Effective gid.
    pub egid: u32,
    /// Login uid, 4294967295 when unset.
    pub auid: u32,
    /// Working directory.
    pub cwd: &'a str,
    /// Task command name after exec (at most 15 bytes).
    pub comm: &'a str,
    /// cgroup v2 id.
    pub cgroup_id: u64,
    /// Names of the event flags that are set; absent when none is.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub flags: Vec<&'static str>,
    /// The pod and container whose cgroup the process runs in, with
    /// `--kubernetes` when the pod index knows the cgroup
    /// ([`crate::k8s::pod_json`]); absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pod: Option<serde_json::Value>,
}

/// `process_exec.parent`.
#[derive(Debug, Serialize)]
pub struct Parent<'a> {
    /// Parent's executable, empty for a kernel thread.
    pub binary: &'a str,
    /// Parent process id.
    pub pid: u32,
}

/// `bundle`: which bundle decided.
#[derive(Debug, Clone, Serialize)]
pub struct BundleRef<'a> {
    /// `metadata.name`.
    pub name: &'a str,
    /// `spec.digest`.
    pub digest: &'a str,
    /// Load generation (exported as the event's top-level `generation`).
    #[serde(skip)]
    pub generation: u64,
}

/// The summary of a rule's throttled events (see [`crate::throttle`]):
///
/// ```json
/// {"time":"2024-05-01T12:01:00.000000000Z","node_name":"n1",
///  "throttled":{"policy":"p","rule":"r","suppressed":7,
///     "since":"2024-05-01T12:00:00.000000000Z","until":"2024-05-01T12:01:00.000000000Z"},
///  "bundle":{"name":"b","digest":"sha256:…"},"generation":1}
/// ```
#[derive(Debug, Serialize)]
pub struct ThrottledEvent<'a> {
    /// When the summary was written, RFC 3339 with nanoseconds, UTC.
    pub time: String,
    /// The node's name.
    pub node_name: &'a str,
    /// What was throttled.
    pub throttled: Throttled<'a>,
    /// The bundle of the last suppressed event.
    pub bundle: BundleRef<'a>,
    /// Its load generation.
    pub generation: u64,
}

/// `throttled`: one rule's window.
#[derive(Debug, Serialize)]
pub struct Throttled<'a> {
    /// Policy of the rule.
    pub policy: &'a str,
    /// Name of the rule.
    pub rule: &'a str,
    /// Events of the rule not exported in the window.
    pub suppressed: u64,
    /// Start of the window.
    pub since: String,
    /// End of the window (the shutdown time for a window closed early).
    pub until: String,
}

/// The exported form of `summary`, written at `now`.
pub fn build_throttled<'a>(
    summary: &'a crate::throttle::Summary,
    node_name: &'a str,
    now: chrono::DateTime<chrono::Utc>,
) -> ThrottledEvent<'a> {
    ThrottledEvent {
        time: rfc3339(now),
        node_name,
        throttled: Throttled {
            policy: &summary.policy,
            rule: &summary.rule,
            suppressed: summary.suppressed,
            since: rfc3339(summary.since),
            until: rfc3339(summary.until),
        },
        bundle: BundleRef {
            name: &summary.bundle.name,
            digest: &summary.bundle.digest,
            generation: summary.bundle.generation,
        },
        generation: summary.bundle.generation,
    }
}

/// Assemble the exported form of `ev` decided as `decision`.
/// `boot_offset_ns` converts boot time to Unix time (see [`crate::clock`]).
pub fn build<'a>(
    ev: &'a KernelEvent,
    decision: &Decision<'a>,
    node_name: &'a str,
    bundle: BundleRef<'a>,
    boot_offset_ns: i128,
) -> ExportEvent<'a> {
    let rule = decision.rule;
    let process = Process {
        binary: &ev.binary,
        arguments: ev.arguments(),
        argv: ev.args(),
        pid: ev.pid,
        tid: ev.tid,
        uid: ev.uid,
        euid: ev.euid,
        gid: ev.gid,
        egid: ev.egid,
        auid: ev.auid,
        cwd: &ev.cwd,
        comm: &ev.comm,
        cgroup_id: ev.cgroup_id,
        flags: flags::names(ev.flags)
            .into_iter()
            .chain(lossy::names(ev.lossy))
            .collect(),
        pod: None,
    };
    let parent = Parent {
        binary: &ev.parent_binary,
        pid: ev.ppid,
    };
    let d = &ev.detail;
    let sock = || SockInfo {
        sock: SockFields {
            family: match d.addr {
                Some(std::net::IpAddr::V6(_)) => "ipv6",
                _ => "ipv4",
            },
            protocol: match d.protocol {
                6 => "tcp".into(),
                17 => "udp".into(),
                p => p.to_string(),
            },
            addr: d.addr.map(|a| a.to_string()).unwrap_or_default(),
            port: d.port,
        },
    };
    let body = match ev.hook {
        Hook::Exec | Hook::ModuleLoad => HookBody::ProcessExec(ProcessExec { process, parent }),
        Hook::Open => HookBody::ProcessOpen(WithObject {
            process,
            parent,
            object: FileInfo {
                file: FileFields {
                    path: &ev.object,
                    write: d.op & (0x2 | 0x10_0000) != 0,
                    f_mode: d.op,
                },
            },
        }),
        Hook::Connect => HookBody::ProcessConnect(WithObject {
            process,
            parent,
            object: sock(),
        }),
        Hook::Bind => HookBody::ProcessBind(WithObject {
            process,
            parent,
            object: sock(),
        }),
        Hook::Setuid => HookBody::ProcessSetuid(WithObject {
            process,
            parent,
            object: CredInfo {
                cred: CredFields {
                    syscall: syscall_name(d.op),
                    new_uid: d.new_uid,
                    new_euid: d.new_euid,
                    new_gid: d.new_gid,
                    new_egid: d.new_egid,
                },
            },
        }),
        Hook::Capset => HookBody::ProcessCapset(WithObject {
            process,
            parent,
            object: CapsInfo {
                caps: CapsFields {
                    new_effective: cap_names(d.new_caps),
                    effective: cap_names(ev.caps),
                },
            },
        }),
        Hook::Ptrace => HookBody::ProcessPtrace(WithObject {
            process,
            parent,
            object: TargetInfo {
                target: TargetFields {
                    pid: d.target_pid,
                    binary: &ev.object,
                    request: ptrace_request(d.op),
                },
            },
        }),
    };
    ExportEvent {
        time: rfc3339(wall_time(ev.ktime_boot_ns, boot_offset_ns)),
        node_name,
        body,
        policy: rule
            .map(|r| r.policy.as_str())
            .or(decision.scope.map(|s| s.policy.as_str())),
        rule: rule.map(|r| r.name.as_str()),
        matched: decision.matched.iter().map(|r| r.name.as_str()).collect(),
        verdict: decision.verdict,
        would_verdict: (decision.would_verdict != decision.verdict)
            .then_some(decision.would_verdict),
        would_deny: decision
            .would_deny
            .iter()
            .map(|r| r.name.as_str())
            .collect(),
        scope: decision.scope.map(|s| s.name.as_str()),
        counters: decision.counters.clone(),
        audit: decision.audit,
        severity: decision.severity.map(|s| s.as_str()),
        message: rule.and_then(|r| r.message.as_deref()),
        generation: bundle.generation,
        bundle,
    }
}

/// Where `--export` sends events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExportTarget {
    /// Standard output (`--export -`, the default).
    Stdout,
    /// A file, created if absent and appended to.
    File(PathBuf),
}

impl ExportTarget {
    /// `-` means stdout, anything else a file path.
    pub fn parse(arg: &str) -> ExportTarget {
        if arg == "-" {
            ExportTarget::Stdout
        } else {
            ExportTarget::File(PathBuf::from(arg))
        }
    }
}

impl std::fmt::Display for ExportTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExportTarget::Stdout => f.write_str("stdout"),
            ExportTarget::File(p) => write!(f, "{}", p.display()),
        }
    }
}

/// Writes JSON lines, one `write` loop per line on an unbuffered file, so
/// that a reader (`tail -f`, `jq`, a test) sees every event as soon as it is
/// decided. After a write that failed part-way, the next line starts with a
/// newline, so the cut line stays alone on its line.
pub struct Exporter {
    out: Box<dyn Write + Send>,
    partial: bool,
    rotor: Option<Rotor>,
}

/// `--export-max-size`, `--export-backups`, `--export-compress`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rotation {
    /// Rotate before a line that would take the file past this many bytes
    /// (a single line longer than this still gets a file of its own).
    pub max_size: u64,
    /// Rotated files kept: `FILE.1` (newest) … `FILE.N`; 0 keeps none.
    pub backups: u32,
    /// Gzip rotated files (`FILE.1.gz` …).
    pub compress: bool,
}

/// Default `--export-backups`.
pub const DEFAULT_EXPORT_BACKUPS: u32 = 5;

/// Parse `--export-max-size`: bytes, or a number with `K`, `M`, `G` or `T`
/// (powers of 1024; `KB`, `KiB`, … and lower case accepted too), not 0.
///
/// # Errors
/// A message for clap.
pub fn parse_size(arg: &str) -> Result<u64, String> {
    let bad = || {
        format!("`{arg}` is not a size: give bytes or a number with K, M, G or T (powers of 1024), e.g. 100M")
    };
    let t = arg.trim();
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(digits);
    let n: u64 = num.parse().map_err(|_| bad())?;
    let unit = unit.trim().to_ascii_lowercase();
    let unit = unit
        .strip_suffix("ib")
        .or_else(|| unit.strip_suffix('b'))
        .unwrap_or(&unit);
    let shift = match unit {
        "" => 0,
        "k" => 10,
        "m" => 20,
        "g" => 30,
        "t" => 40,
        _ => return Err(bad()),
    };
    let size = n.checked_mul(1 << shift).ok_or_else(bad)?;
    if size == 0 {
        return Err(format!(
            "`{arg}`: the export file size limit must be at least 1 byte"
        ));
    }
    Ok(size)
}

/// Size-based rotation of an export file.
struct Rotor {
    path: PathBuf,
    rotation: Rotation,
    /// Bytes in the current file.
    size: u64,
}

impl Rotor {
    /// `FILE.i`, or `FILE.i.gz`.
    fn backup(&self, i: u32, gz: bool) -> PathBuf {
        let mut name = self.path.as_os_str().to_owned();
        name.push(format!(".{i}{}", if gz { ".gz" } else { "" }));
        PathBuf::from(name)
    }

    /// Rotate: shift the backups, rename the file to `FILE.1`, open a new
    /// file and make it `out`, then gzip `FILE.1` if asked. The old file
    /// stays open (and is written to) until the new one is open, so a
    /// failure at any step loses nothing.
    fn rotate(&mut self, out: &mut Box<dyn Write + Send>) -> io::Result<()> {
        let gone_ok = |r: io::Result<()>| match r {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        };
        let n = self.rotation.backups;
        if n == 0 {
            gone_ok(std::fs::remove_file(&self.path))?;
        } else {
            for i in (1..=n).rev() {
                for gz in [false, true] {
                    let from = self.backup(i, gz);
                    if i == n {
                        gone_ok(std::fs::remove_file(&from))?;
                    } else {
                        gone_ok(std::fs::rename(&from, self.backup(i + 1, gz)))?;
                    }
                }
            }
            gone_ok(std::fs::rename(&self.path, self.backup(1, false)))?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        self.size = file.metadata().map_or(0, |m| m.len());
        *out = Box::new(file);
        if self.rotation.compress && n > 0 {
            let plain = self.backup(1, false);
            let gz = self.backup(1, true);
            if let Err(e) = gzip(&plain, &gz) {
                let _ = std::fs::remove_file(&gz);
                return Err(io::Error::new(
                    e.kind(),
                    format!("cannot compress {}: {e}", plain.display()),
                ));
            }
            std::fs::remove_file(&plain)?;
        }
        Ok(())
    }
}

/// Gzip `from` into a new file `to`.
fn gzip(from: &Path, to: &Path) -> io::Result<()> {
    let mut src = File::open(from)?;
    let dst = OpenOptions::new().write(true).create_new(true).open(to)?;
    let mut enc = flate2::write::GzEncoder::new(dst, flate2::Compression::default());
    io::copy(&mut src, &mut enc)?;
    enc.finish()?.sync_all()
}

/// Why an event could not be exported.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum ExportError {
    /// The export file could not be opened.
    #[error("cannot open export file {path}")]
    #[diagnostic(code(policyd::export_open))]
    Open {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// Standard output could not be duplicated for exporting.
    #[error("cannot export to stdout")]
    #[diagnostic(code(policyd::export_open))]
    Stdout(#[source] io::Error),
    /// Writing a line failed.
    #[error("cannot write event")]
    #[diagnostic(code(policyd::export_write))]
    Write(#[from] io::Error),
    /// Rotating the export file failed; the event was still written, to the
    /// current file, and the next event tries again.
    #[error("cannot rotate export file {path}: {source}")]
    #[diagnostic(code(policyd::export_rotate))]
    Rotate {
        /// The export file.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
}

impl Exporter {
    /// Open `target`.
    ///
    /// # Errors
    /// [`ExportError::Open`] when the file cannot be created or opened for
    /// appending; [`ExportError::Stdout`] when stdout is closed.
    pub fn open(target: &ExportTarget) -> Result<Exporter, ExportError> {
        Exporter::open_with(target, None)
    }

    /// Open `target`, rotating it by size when it is a file and `rotation`
    /// is given (stdout is never rotated).
    ///
    /// # Errors
    /// As [`Exporter::open`].
    pub fn open_with(
        target: &ExportTarget,
        rotation: Option<&Rotation>,
    ) -> Result<Exporter, ExportError> {
        let (out, rotor): (Box<dyn Write + Send>, _) = match target {
            ExportTarget::Stdout => (Box::new(stdout_file()?), None),
            ExportTarget::File(path) => {
                let file = open_append(path)?;
                let rotor = rotation.map(|r| Rotor {
                    path: path.clone(),
                    rotation: r.clone(),
                    size: file.metadata().map_or(0, |m| m.len()),
                });
                (Box::new(file), rotor)
            }
        };
        Ok(Exporter {
            out,
            partial: false,
            rotor,
        })
    }

    /// An exporter writing to any sink (tests).
    pub fn from_writer(out: Box<dyn Write + Send>) -> Exporter {
        Exporter {
            out,
            partial: false,
            rotor: None,
        }
    }

    /// Write `event` (an [`ExportEvent`] or a [`ThrottledEvent`]) as one
    /// line and flush.
    ///
    /// # Errors
    /// [`ExportError::Write`] on an I/O error.
    pub fn write<E: Serialize>(&mut self, event: &E) -> Result<(), ExportError> {
        let mut line = Vec::with_capacity(1024);
        if self.partial {
            line.push(b'\n');
        }
        let prefix = line.len();
        serde_json::to_writer(&mut line, event).map_err(io::Error::other)?;
        line.push(b'\n');
        // Rotate only between whole lines: a cut line is ended in its file.
        let mut rotate_failed = None;
        if let Some(rotor) = self.rotor.as_mut().filter(|_| !self.partial) {
            if rotor.size > 0 && rotor.size + line.len() as u64 > rotor.rotation.max_size {
                if let Err(source) = rotor.rotate(&mut self.out) {
                    rotate_failed = Some(ExportError::Rotate {
                        path: rotor.path.clone(),
                        source,
                    });
                }
            }
        }
        let mut done = 0;
        let result = loop {
            if done == line.len() {
                break Ok(());
            }
            match self.out.write(&line[done..]) {
                Ok(0) => break Err(io::Error::from(io::ErrorKind::WriteZero)),
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => break Err(e),
            }
        };
        if let Some(rotor) = &mut self.rotor {
            rotor.size += done as u64;
        }
        if let Err(e) = result {
            self.partial = done != prefix;
            return Err(e.into());
        }
        self.partial = false;
        self.out.flush()?;
        match rotate_failed {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

/// fd 1 as an unbuffered file (a duplicate, so fd 1 itself stays open).
fn stdout_file() -> Result<File, ExportError> {
    // SAFETY: F_DUPFD_CLOEXEC on fd 1 returns a new fd or -1.
    let fd = unsafe { libc::fcntl(libc::STDOUT_FILENO, libc::F_DUPFD_CLOEXEC, 3) };
    if fd < 0 {
        return Err(ExportError::Stdout(io::Error::last_os_error()));
    }
    // SAFETY: `fd` is a fresh descriptor that nothing else owns.
    Ok(File::from(unsafe { OwnedFd::from_raw_fd(fd) }))
}

fn open_append(path: &Path) -> Result<File, ExportError> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|source| ExportError::Open {
            path: path.to_path_buf(),
            source,
        })
}

/// How often, at most, a run of export failures is logged after the first.
pub const EXPORT_ERROR_LOG_INTERVAL: Duration = Duration::from_secs(60);

/// Counts failed exports and rate-limits what is said about them: the first
/// failure is logged at once, then at most one line per
/// [`EXPORT_ERROR_LOG_INTERVAL`] with the running count.
#[derive(Debug, Default)]
pub struct ExportErrors {
    /// Failed writes so far (`export_errors` in the exit stats).
    pub count: u64,
    last_logged: Option<Instant>,
}

impl ExportErrors {
    /// Record a failed write to `target` at `now`; the line to log, if any
    /// (without the `policyd: ` prefix).
    pub fn failed(
        &mut self,
        err: &ExportError,
        target: &ExportTarget,
        now: Instant,
    ) -> Option<String> {
        self.count += 1;
        let cause = match err {
            ExportError::Write(e) => e.to_string(),
            other => other.to_string(),
        };
        let Some(last) = self.last_logged else {
            self.last_logged = Some(now);
            let broken_pipe =
                matches!(err, ExportError::Write(e) if e.kind() == io::ErrorKind::BrokenPipe);
            let what = if broken_pipe && *target == ExportTarget::Stdout {
                "the reader of stdout went away (broken pipe): events are no longer exported"
                    .to_string()
            } else if let ExportError::Rotate { path, source } = err {
                format!(
                    "cannot rotate the export file {}: {source} (events are still appended to it)",
                    path.display()
                )
            } else {
                format!("cannot export an event to {target}: {cause}")
            };
            return Some(format!(
                "{what}; enforcement continues, failed writes are counted as export_errors \
                 (logged at most once a minute from now on)"
            ));
        };
        if now.saturating_duration_since(last) < EXPORT_ERROR_LOG_INTERVAL {
            return None;
        }
        self.last_logged = Some(now);
        Some(format!(
            "export_errors={}: events still cannot be exported to {target} ({cause}); enforcement continues",
            self.count
        ))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use policy_compiler::bundle::mask_words;

    use super::*;
    use crate::decision::{decide, tests::fixture};
    use crate::event::tests::sample;

    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);
    impl Write for Sink {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn json_shape() {
        let (table, mut rules) = fixture();
        rules[0].message = Some("sudo invoked".into());
        rules[0].policy = "sudo_audit".into();
        let ev = KernelEvent {
            matched: mask_words(&vec![0]),
            ..sample()
        };
        let d = decide(Hook::Exec, &table, &rules, &[], &ev.matched);
        let bundle = BundleRef {
            name: "sudo-audit",
            digest: "sha256:00",
            generation: 1,
        };
        let out = build(&ev, &d, "node-1", bundle, 1_700_000_000_000_000_000);

        let sink = Sink::default();
        let mut exp = Exporter::from_writer(Box::new(sink.clone()));
        exp.write(&out).unwrap();
        let text = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        assert!(text.ends_with('\n') && text.matches('\n').count() == 1);
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();

        assert_eq!(v["time"], "2023-11-14T22:13:20.123456789Z");
        assert_eq!(v["node_name"], "node-1");
        let p = &v["process_exec"]["process"];
        assert_eq!(p["binary"], "/usr/bin/sudo");
        assert_eq!(p["arguments"], "-n true");
        assert_eq!(p["argv"], serde_json::json!(["-n", "true"]));
        assert_eq!(p["pid"], 1000);
        assert_eq!(p["uid"], 1000);
        assert_eq!(p["euid"], 0);
        assert_eq!(p["auid"], 4294967295u32);
        assert_eq!(p["cwd"], "/home/u");
        assert_eq!(p["flags"], serde_json::json!(["args_truncated"]));
        assert_eq!(v["process_exec"]["parent"]["binary"], "/usr/bin/bash");
        assert_eq!(v["process_exec"]["parent"]["pid"], 999);
        assert_eq!(v["policy"], "sudo_audit");
        assert_eq!(v["rule"], "sudo_invoked");
        assert_eq!(v["matched"], serde_json::json!(["sudo_invoked"]));
        assert_eq!(v["verdict"], "allow");
        assert_eq!(v["audit"], true);
        assert_eq!(v["severity"], "info");
        assert_eq!(v["message"], "sudo invoked");
        assert_eq!(v["bundle"]["name"], "sudo-audit");
        assert_eq!(v["bundle"]["digest"], "sha256:00");
        assert_eq!(v["generation"], 1);
        assert!(v["bundle"].get("generation").is_none());
    }

    #[test]
    fn throttled_summary_shape() {
        use crate::throttle::{BundleInfo, Summary};
        let t = |s: i64| chrono::DateTime::from_timestamp(1_700_000_000 + s, 0).unwrap();
        let summary = Summary {
            policy: "p".into(),
            rule: "r".into(),
            suppressed: 7,
            since: t(0),
            until: t(60),
            bundle: BundleInfo {
                name: "b".into(),
                digest: "sha256:00".into(),
                generation: 3,
            },
        };
        let v = serde_json::to_value(build_throttled(&summary, "n", t(61))).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "time": "2023-11-14T22:14:21.000000000Z",
                "node_name": "n",
                "throttled": {
                    "policy": "p", "rule": "r", "suppressed": 7,
                    "since": "2023-11-14T22:13:20.000000000Z",
                    "until": "2023-11-14T22:14:20.000000000Z",
                },
                "bundle": {"name": "b", "digest": "sha256:00"},
                "generation": 3,
            })
        );
    }

    #[test]
    fn no_flags_no_field() {
        let (table, rules) = fixture();
        let ev = KernelEvent {
            flags: 0,
            matched: mask_words(&vec![1]),
            ..sample()
        };
        let d = decide(Hook::Exec, &table, &rules, &[], &ev.matched);
        let out = build(
            &ev,
            &d,
            "n",
            BundleRef {
                name: "b",
                digest: "d",
                generation: 1,
            },
            0,
        );
        let v = serde_json::to_value(&out).unwrap();
        assert!(v["process_exec"]["process"].get("flags").is_none());
        assert_eq!(v["verdict"], "kill");
        assert_eq!(v["rule"], "deny_victim");
        assert_eq!(v["message"], serde_json::Value::Null);
        assert!(v["process_exec"]["process"].get("pod").is_none());
    }

    #[test]
    fn a_known_cgroup_gets_the_pod_object() {
        let (table, rules) = fixture();
        let ev = sample();
        let d = decide(Hook::Exec, &table, &rules, &[], &ev.matched);
        let b = BundleRef {
            name: "b",
            digest: "d",
            generation: 1,
        };
        let mut out = build(&ev, &d, "n", b, 0);
        let meta = crate::k8s::PodMeta {
            namespace: "prod".into(),
            pod: "web-1".into(),
            container: "nginx".into(),
            labels: [("app".to_string(), "web".to_string())].into(),
            pod_uid: "u".into(),
        };
        out.body.process_mut().pod = Some(crate::k8s::pod_json(&meta));
        let v = serde_json::to_value(&out).unwrap();
        assert_eq!(
            v["process_exec"]["process"]["pod"],
            serde_json::json!({"namespace": "prod", "name": "web-1",
                "container": {"name": "nginx"}, "pod_labels": {"app": "web"}})
        );
    }

    #[test]
    fn severity_and_lossy_flags() {
        use policy_compiler::bundle::Severity;
        let (table, mut rules) = fixture();
        rules[0].severity = Severity::High;
        rules[1].severity = Severity::Low;
        let ev = KernelEvent {
            matched: mask_words(&vec![0, 1]),
            flags: flags::KILL_SENT,
            lossy: lossy::BINARY | lossy::ARGS,
            args_raw: b"x\0a b\0\xef\xbf\xbd\0".to_vec(),
            ..sample()
        };
        let d = decide(Hook::Exec, &table, &rules, &[], &ev.matched);
        let bundle = BundleRef {
            name: "b",
            digest: "d",
            generation: 1,
        };
        let v = serde_json::to_value(build(&ev, &d, "n", bundle, 0)).unwrap();
        assert_eq!(v["rule"], "deny_victim");
        assert_eq!(v["severity"], "high");
        let p = &v["process_exec"]["process"];
        assert_eq!(
            p["flags"],
            serde_json::json!(["kill_sent", "binary_not_utf8", "args_not_utf8"])
        );
        assert_eq!(p["argv"], serde_json::json!(["a b", "\u{fffd}"]));
        assert_eq!(p["arguments"], "a b \u{fffd}");
    }

    /// Accepts `room` bytes, then fails every write with ENOSPC.
    struct Full {
        data: Arc<Mutex<Vec<u8>>>,
        room: Arc<Mutex<usize>>,
    }
    impl Write for Full {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let mut room = self.room.lock().unwrap();
            if *room == 0 {
                return Err(io::Error::from_raw_os_error(libc::ENOSPC));
            }
            let n = buf.len().min(*room);
            *room -= n;
            self.data.lock().unwrap().extend_from_slice(&buf[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_cut_line_stays_alone_on_its_line() {
        let (table, rules) = fixture();
        let ev = sample();
        let d = decide(Hook::Exec, &table, &rules, &[], &ev.matched);
        let b = || BundleRef {
            name: "b",
            digest: "d",
            generation: 1,
        };
        let out = build(&ev, &d, "n", b(), 0);
        let data = Arc::new(Mutex::new(Vec::new()));
        let room = Arc::new(Mutex::new(10));
        let mut exp = Exporter::from_writer(Box::new(Full {
            data: data.clone(),
            room: room.clone(),
        }));
        assert!(exp.write(&out).is_err()); // 10 bytes written
        assert!(exp.write(&out).is_err()); // nothing written
        *room.lock().unwrap() = 1;
        assert!(exp.write(&out).is_err()); // only the newline
        *room.lock().unwrap() = usize::MAX;
        exp.write(&out).unwrap();
        exp.write(&out).unwrap();
        let text = String::from_utf8(data.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert_eq!(lines[0].len(), 10);
        for l in &lines[1..] {
            serde_json::from_str::<serde_json::Value>(l).unwrap();
        }
    }

    #[test]
    fn export_errors_are_counted_and_logged_once_a_minute() {
        let mut errs = ExportErrors::default();
        let t0 = Instant::now();
        let epipe = || ExportError::Write(io::Error::from_raw_os_error(libc::EPIPE));
        let first = errs.failed(&epipe(), &ExportTarget::Stdout, t0).unwrap();
        assert!(first.contains("reader of stdout went away"), "{first}");
        assert!(first.contains("enforcement continues"), "{first}");
        assert_eq!(
            errs.failed(&epipe(), &ExportTarget::Stdout, t0 + Duration::from_secs(1)),
            None
        );
        assert_eq!(
            errs.failed(
                &epipe(),
                &ExportTarget::Stdout,
                t0 + Duration::from_secs(59)
            ),
            None
        );
        let again = errs
            .failed(
                &epipe(),
                &ExportTarget::Stdout,
                t0 + Duration::from_secs(60),
            )
            .unwrap();
        assert!(again.starts_with("export_errors=4:"), "{again}");
        assert_eq!(
            errs.failed(
                &epipe(),
                &ExportTarget::Stdout,
                t0 + Duration::from_secs(61)
            ),
            None
        );
        assert_eq!(errs.count, 5);

        let mut errs = ExportErrors::default();
        let full = ExportError::Write(io::Error::from_raw_os_error(libc::ENOSPC));
        let file = ExportTarget::File("/dev/full".into());
        let first = errs.failed(&full, &file, t0).unwrap();
        assert!(
            first.starts_with("cannot export an event to /dev/full: No space left on device"),
            "{first}"
        );
        // EPIPE on a file (a FIFO) is not "stdout's reader".
        let mut errs = ExportErrors::default();
        let first = errs.failed(&epipe(), &file, t0).unwrap();
        assert!(first.contains("Broken pipe"), "{first}");
    }

    /// Every line of every file of `dir` (`.gz` decompressed), by file name.
    fn files(dir: &Path) -> Vec<(String, Vec<String>)> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(dir).unwrap() {
            let path = e.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let mut text = String::new();
            if name.ends_with(".gz") {
                use std::io::Read;
                flate2::read::GzDecoder::new(File::open(&path).unwrap())
                    .read_to_string(&mut text)
                    .unwrap();
            } else {
                text = std::fs::read_to_string(&path).unwrap();
            }
            assert!(text.is_empty() || text.ends_with('\n'), "{name}: {text:?}");
            out.push((name, text.lines().map(str::to_string).collect()));
        }
        out.sort();
        out
    }

    fn write_n(exp: &mut Exporter, from: u32, n: u32) {
        let (table, rules) = fixture();
        for pid in from..from + n {
            let ev = KernelEvent { pid, ..sample() };
            let d = decide(Hook::Exec, &table, &rules, &[], &ev.matched);
            let b = BundleRef {
                name: "b",
                digest: "d",
                generation: 1,
            };
            exp.write(&build(&ev, &d, "n", b, 0)).unwrap();
        }
    }

    fn pids(lines: &[String]) -> Vec<u64> {
        lines
            .iter()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                v["process_exec"]["process"]["pid"].as_u64().unwrap()
            })
            .collect()
    }

    #[test]
    fn parse_size_units() {
        assert_eq!(parse_size("512").unwrap(), 512);
        assert_eq!(parse_size("4K").unwrap(), 4096);
        assert_eq!(parse_size("100M").unwrap(), 100 << 20);
        assert_eq!(parse_size("1g").unwrap(), 1 << 30);
        assert_eq!(parse_size("2MiB").unwrap(), 2 << 20);
        assert_eq!(parse_size("3kb").unwrap(), 3072);
        assert_eq!(parse_size("1T").unwrap(), 1 << 40);
        for bad in [
            "",
            "M",
            "10X",
            "-1",
            "1.5M",
            "99999999999999999999",
            "0",
            "0K",
        ] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
        assert!(parse_size("10X").unwrap_err().contains("`10X`"));
    }

    #[test]
    fn rotation_keeps_whole_lines_and_n_backups() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ev.jsonl");
        let target = ExportTarget::File(path.clone());
        // Find one line's length, then allow 3 lines (and a bit) per file.
        let mut probe = Exporter::open(&target).unwrap();
        write_n(&mut probe, 0, 1);
        let len = std::fs::metadata(&path).unwrap().len();
        std::fs::remove_file(&path).unwrap();
        let rot = Rotation {
            max_size: 3 * len + len / 2,
            backups: 2,
            compress: false,
        };
        let mut exp = Exporter::open_with(&target, Some(&rot)).unwrap();
        write_n(&mut exp, 1, 10);
        let got = files(dir.path());
        let names: Vec<&str> = got.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["ev.jsonl", "ev.jsonl.1", "ev.jsonl.2"]);
        // 10 lines, 3 per file: 1-3 (removed), 4-6, 7-9, 10.
        assert_eq!(pids(&got[2].1), [4, 5, 6]);
        assert_eq!(pids(&got[1].1), [7, 8, 9]);
        assert_eq!(pids(&got[0].1), [10]);
        for (_, lines) in &got {
            assert!(lines.len() as u64 * len <= rot.max_size);
        }

        // Reopening continues the current file's size.
        drop(exp);
        let mut exp = Exporter::open_with(&target, Some(&rot)).unwrap();
        write_n(&mut exp, 11, 3);
        let got = files(dir.path());
        assert_eq!(pids(&got[0].1), [13]);
        assert_eq!(pids(&got[1].1), [10, 11, 12]);
        assert_eq!(pids(&got[2].1), [7, 8, 9]);

        // A line longer than the limit still goes out, alone in its file.
        let tiny = Rotation {
            max_size: 1,
            backups: 1,
            compress: false,
        };
        let mut exp = Exporter::open_with(&target, Some(&tiny)).unwrap();
        write_n(&mut exp, 20, 2);
        let got = files(dir.path());
        assert_eq!(pids(&got[0].1), [21]);
        assert_eq!(pids(&got[1].1), [20]);
        // Backups past the new N, from an earlier run, are left alone.
        assert_eq!(pids(&got[2].1), [7, 8, 9]);
    }

    #[test]
    fn rotation_compresses_and_zero_backups_keeps_none() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ev.jsonl");
        let target = ExportTarget::File(path.clone());
        let rot = Rotation {
            max_size: 1,
            backups: 3,
            compress: true,
        };
        let mut exp = Exporter::open_with(&target, Some(&rot)).unwrap();
        write_n(&mut exp, 1, 5);
        let got = files(dir.path());
        let names: Vec<&str> = got.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "ev.jsonl",
                "ev.jsonl.1.gz",
                "ev.jsonl.2.gz",
                "ev.jsonl.3.gz"
            ]
        );
        let all: Vec<u64> = got.iter().rev().flat_map(|(_, l)| pids(l)).collect();
        assert_eq!(all, [2, 3, 4, 5]);

        let dir = tempfile::tempdir().unwrap();
        let target = ExportTarget::File(dir.path().join("ev.jsonl"));
        let rot = Rotation {
            max_size: 1,
            backups: 0,
            compress: true,
        };
        let mut exp = Exporter::open_with(&target, Some(&rot)).unwrap();
        write_n(&mut exp, 1, 3);
        let got = files(dir.path());
        assert_eq!(got.len(), 1);
        assert_eq!(pids(&got[0].1), [3]);
    }

    #[test]
    fn a_failed_rotation_is_reported_and_loses_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ev.jsonl");
        let target = ExportTarget::File(path.clone());
        // FILE.1 is a non-empty directory: renaming FILE onto it fails.
        std::fs::create_dir(dir.path().join("ev.jsonl.1")).unwrap();
        std::fs::write(dir.path().join("ev.jsonl.1/x"), "").unwrap();
        let rot = Rotation {
            max_size: 1,
            backups: 1,
            compress: false,
        };
        let mut exp = Exporter::open_with(&target, Some(&rot)).unwrap();
        write_n(&mut exp, 1, 1);
        let (table, rules) = fixture();
        let ev = KernelEvent { pid: 2, ..sample() };
        let d = decide(Hook::Exec, &table, &rules, &[], &ev.matched);
        let b = BundleRef {
            name: "b",
            digest: "d",
            generation: 1,
        };
        let err = exp.write(&build(&ev, &d, "n", b, 0)).unwrap_err();
        assert!(matches!(err, ExportError::Rotate { .. }), "{err:?}");
        let mut errs = ExportErrors::default();
        let line = errs.failed(&err, &target, Instant::now()).unwrap();
        assert!(line.starts_with("cannot rotate the export file "), "{line}");
        assert!(line.contains("enforcement continues"), "{line}");
        // Once the obstacle is gone, rotation works again.
        std::fs::remove_dir_all(dir.path().join("ev.jsonl.1")).unwrap();
        write_n(&mut exp, 3, 1);
        let text1 = std::fs::read_to_string(dir.path().join("ev.jsonl.1")).unwrap();
        let lines1: Vec<String> = text1.lines().map(str::to_string).collect();
        assert_eq!(pids(&lines1), [1, 2]);
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<String> = text.lines().map(str::to_string).collect();
        assert_eq!(pids(&lines), [3]);
    }

    #[test]
    fn export_target_parse() {
        assert_eq!(ExportTarget::parse("-"), ExportTarget::Stdout);
        assert_eq!(
            ExportTarget::parse("/tmp/x"),
            ExportTarget::File("/tmp/x".into())
        );
    }
}
