//! The kernel means what the bundle means, on real events (issue #5).
//!
//! Each round generates, from a seed, two policy files (one of them
//! sometimes `mode = monitor`) with random rules on every hook the kernel
//! enforces here (exec, open, connect, bind, setuid, capset, ptrace) and
//! random `default deny` scopes, compiles them with the compiler the
//! runtime gates on, starts `policyd`, and performs real actions: execs of
//! temp binaries (directly, by relative path, through symlinks, with
//! random options), opens for reading and writing through `open`,
//! `openat`, `openat2` and `creat` (also through a symlink), loopback
//! connects and binds (IPv4, IPv6 and IPv4-mapped, TCP and UDP),
//! setuid-family calls and capsets (as root and as uid 1000), and ptrace
//! attaches. For each action the exported event (or its absence)
//! must be what `policy_compiler::eval::eval_bundle` says of the
//! [`Event`] describing the action — matched rules, verdict, would-be
//! verdict, would-deny rules, deciding scope, audit, counters and the
//! event's object — and the enforcement must have happened: killed before
//! the effect, refused with `EPERM`, or run.
//!
//! Every rule is scoped to this test's own processes: exec rules to
//! binaries under the round's `x/` directory, the other hooks' rules to the
//! round's helper binary `kq` (see `kernel_equivalence/kq.c`, built static
//! so that it opens nothing by itself), and network rules to loopback
//! addresses and ports chosen here.
//!
//! Absence of an event is checked after a marker exec (always audited) has
//! been exported: the ring buffer is ordered, so everything before it has
//! been drained.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use common::*;
use policy_compiler::bundle::{Mode, PolicyBundle, Verdict};
use policy_compiler::eval::{eval_bundle, Outcome};
use policy_compiler::event_json::event_from_json;
use policy_compiler::{compile, SourceFile};
use policy_dsl::schema::Hook;
use serde_json::{json, Value};

/// Rounds (one `policyd` each) and the seed; `KERNEL_EQ_SEED` (a
/// number) replays or explores another seed, `KERNEL_EQ_ROUNDS` runs more.
const ROUNDS: u64 = 4;
const SEED: u64 = 0x5eed_0005;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Capabilities a capset may keep (all in the bounding set of a root test).
const CAPS: [(&str, u8); 4] = [
    ("CAP_CHOWN", 0),
    ("CAP_KILL", 5),
    ("CAP_NET_RAW", 13),
    ("CAP_SYS_ADMIN", 21),
];

/// splitmix64: deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn chance(&mut self, num: usize, den: usize) -> bool {
        self.below(den) < num
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// The round's directory and what is in it.
struct Env {
    /// Canonical temp dir.
    dir: PathBuf,
    /// The helper that performs every non-exec action.
    kq: String,
    /// Exec targets live here (copies of `kq`, run without arguments).
    x: String,
    /// Files opened.
    f: String,
    /// Ptrace targets.
    t: String,
    /// The always-audited marker binary.
    marker: String,
    /// First of the round's 16 ports.
    port: u16,
    /// The test binary, parent of every action.
    parent: String,
}

/// One thing done, as the test sees it.
#[derive(Debug, Clone)]
enum Action {
    /// Run `program` (as written) with `args` in `cwd`; `binary` is the
    /// canonical path, `name` the task's comm after the exec.
    Exec {
        program: String,
        args: Vec<&'static str>,
        cwd: String,
        binary: String,
        name: String,
    },
    /// `kq open path r|w syscall`; `canonical` is what the kernel
    /// resolves.
    Open {
        path: String,
        canonical: String,
        write: bool,
        syscall: &'static str,
    },
    /// `kq connect|bind`.
    Net {
        hook: Hook,
        v6: bool,
        udp: bool,
        addr: &'static str,
        port: u16,
    },
    /// `kq id syscall a0 a1 a2` (-1 keeps an id), run as `uid` (and gid).
    Id {
        syscall: &'static str,
        args: [i64; 3],
        uid: u32,
    },
    /// `kq capset` keeping `caps`, run as `uid` (not root: it holds no
    /// capability, and the call fails after the hook).
    Capset { caps: Vec<usize>, uid: u32 },
    /// `kq ptrace target`.
    Ptrace { target: String },
}

impl Action {
    fn hook(&self) -> Hook {
        match self {
            Action::Exec { .. } => Hook::Exec,
            Action::Open { .. } => Hook::Open,
            Action::Net { hook, .. } => *hook,
            Action::Id { .. } => Hook::Setuid,
            Action::Capset { .. } => Hook::Capset,
            Action::Ptrace { .. } => Hook::Ptrace,
        }
    }

    /// The acting uid (and gid).
    fn uid(&self) -> u32 {
        match self {
            Action::Id { uid, .. } | Action::Capset { uid, .. } => *uid,
            _ => 0,
        }
    }

    /// The new ids `(uid, euid, gid, egid)` of a setuid-family call by
    /// `uid` (all of its ids equal to it): root holds CAP_SETUID and
    /// CAP_SETGID, so setuid/setgid set every id; others only the
    /// effective one.
    fn new_ids(syscall: &str, a: [i64; 3], uid: u32) -> [i64; 4] {
        let old = i64::from(uid);
        let mut ids = [old; 4];
        let keep = |v: i64| if v == -1 { old } else { v };
        match syscall {
            "setuid" if uid == 0 => (ids[0], ids[1]) = (a[0], a[0]),
            "setuid" => ids[1] = a[0],
            "setgid" if uid == 0 => (ids[2], ids[3]) = (a[0], a[0]),
            "setgid" => ids[3] = a[0],
            "setreuid" | "setresuid" => (ids[0], ids[1]) = (keep(a[0]), keep(a[1])),
            _ => (ids[2], ids[3]) = (keep(a[0]), keep(a[1])),
        }
        ids
    }

    /// The event the action gives the kernel, for the bundle evaluator.
    fn event(&self, env: &Env) -> Value {
        let mut e = json!({
            "hook": self.hook().as_str(),
            "process.binary": env.kq,
            "process.name": "kq",
            "user.uid": self.uid(), "user.euid": self.uid(),
            "user.gid": self.uid(), "user.egid": self.uid(),
            "process.interactive": false,
            "parent.binary": env.parent,
        });
        let m = e.as_object_mut().unwrap();
        // Root keeps the test's effective set across exec; uid 1000 has none.
        let caps = if self.uid() == 0 { effective_caps() } else { 0 };
        m.insert(
            "user.caps".into(),
            json!(policy_dsl::schema::CAPABILITIES
                .iter()
                .filter(|(_, b)| caps & (1u64 << b) != 0)
                .map(|(n, _)| *n)
                .collect::<Vec<_>>()),
        );
        match self {
            Action::Exec {
                binary, name, args, ..
            } => {
                m.insert("process.binary".into(), json!(binary));
                m.insert("process.name".into(), json!(name));
                m.insert("process.args".into(), json!(args.join(" ")));
            }
            Action::Open {
                canonical, write, ..
            } => {
                m.insert("file.path".into(), json!(canonical));
                m.insert("file.write".into(), json!(write));
            }
            Action::Net {
                hook,
                v6,
                udp,
                addr,
                port,
            } => {
                let (a, p) = match hook {
                    Hook::Connect => ("net.daddr", "net.dport"),
                    _ => ("net.saddr", "net.sport"),
                };
                m.insert(a.into(), json!(addr));
                m.insert(p.into(), json!(port));
                m.insert(
                    "net.protocol".into(),
                    json!(if *udp { "udp" } else { "tcp" }),
                );
                m.insert(
                    "net.family".into(),
                    json!(if *v6 { "ipv6" } else { "ipv4" }),
                );
            }
            Action::Id { syscall, args, uid } => {
                let ids = Action::new_ids(syscall, *args, *uid);
                for (k, v) in ["new_uid", "new_euid", "new_gid", "new_egid"]
                    .iter()
                    .zip(ids)
                {
                    m.insert(format!("cred.{k}"), json!(v));
                }
            }
            Action::Capset { caps, .. } => {
                let names: Vec<&str> = caps.iter().map(|&i| CAPS[i].0).collect();
                m.insert("cred.new_caps".into(), json!(names));
            }
            Action::Ptrace { target } => {
                m.insert("target.binary".into(), json!(target));
            }
        }
        e
    }

    fn command(&self, env: &Env) -> Command {
        let mut c;
        match self {
            Action::Exec {
                program, args, cwd, ..
            } => {
                c = Command::new(program);
                c.args(args).current_dir(cwd);
            }
            Action::Open {
                path,
                write,
                syscall,
                ..
            } => {
                c = Command::new(&env.kq);
                c.arg("open")
                    .arg(path)
                    .arg(if *write { "w" } else { "r" })
                    .arg(syscall);
            }
            Action::Net {
                hook,
                v6,
                udp,
                addr,
                port,
            } => {
                c = Command::new(&env.kq);
                c.arg(if *hook == Hook::Connect {
                    "connect"
                } else {
                    "bind"
                })
                .arg(if *v6 { "6" } else { "4" })
                .arg(if *udp { "udp" } else { "tcp" })
                .arg(addr)
                .arg(port.to_string());
            }
            Action::Id { syscall, args, .. } => {
                c = Command::new(&env.kq);
                c.args(["id", *syscall]).args(args.map(|a| a.to_string()));
            }
            Action::Capset { caps, .. } => {
                let bits = caps.iter().fold(0u64, |m, &i| m | 1 << CAPS[i].1);
                c = Command::new(&env.kq);
                c.arg("capset").arg(format!("{bits:x}"));
            }
            Action::Ptrace { target } => {
                c = Command::new(&env.kq);
                c.arg("ptrace").arg(target);
            }
        }
        if self.uid() != 0 {
            c.uid(self.uid()).gid(self.uid());
        }
        c
    }
}

/// Random rules and scopes of one hook; each condition starts with the
/// hook's scope (our processes only).
fn atoms(env: &Env, hook: Hook) -> (String, Vec<String>) {
    let (x, f, t, p) = (&env.x, &env.f, &env.t, env.port);
    let kq = format!("process.binary == \"{}\"", env.kq);
    match hook {
        Hook::Exec => (
            format!("process.binary startswith \"{x}/\""),
            vec![
                format!("process.binary == \"{x}/t1\""),
                format!("process.binary in {{ \"{x}/t2\", \"{x}/sub/t3\" }}"),
                format!("process.binary not in {{ \"{x}/t1\", \"{x}/t2\" }}"),
                format!("process.binary startswith \"{x}/sub/\""),
                format!("process.binary startswith \"{x}/t\""),
                "process.binary endswith \"t1\"".into(),
                "process.binary endswith \"/t3\"".into(),
                "process.name == \"l1\"".into(),
                "process.name startswith \"t\"".into(),
                "process.name endswith \"2\"".into(),
                "user.uid == 0".into(),
                "process.args == \"-a\"".into(),
                "process.args startswith \"-a\"".into(),
                "process.args endswith \"-a\"".into(),
                "process.args != \"-a -b\"".into(),
                format!("parent.binary == \"{}\"", env.parent),
                "parent.binary endswith \"/nothing\"".into(),
            ],
        ),
        Hook::Open => (
            kq,
            vec![
                format!("file.path == \"{f}/a.txt\""),
                format!("file.path in {{ \"{f}/b.log\", \"{f}/sub/c.txt\" }}"),
                format!("file.path not in {{ \"{f}/a.txt\", \"{f}/sub/d.conf\" }}"),
                format!("file.path startswith \"{f}/sub/\""),
                format!("file.path startswith \"{f}/\""),
                "file.path endswith \".txt\"".into(),
                "file.path endswith \"/d.conf\"".into(),
                "file.path != \"/nowhere\"".into(),
                "file.write".into(),
                "not file.write".into(),
            ],
        ),
        Hook::Connect | Hook::Bind => {
            let (a, port) = if hook == Hook::Connect {
                ("net.daddr", "net.dport")
            } else {
                ("net.saddr", "net.sport")
            };
            (
                format!(
                    "{kq} and {port} in {p}..{} and {a} in {{ 127.0.0.0/8, ::1/128 }}",
                    p + 15
                ),
                vec![
                    format!("{a} in 127.0.0.0/8"),
                    format!("{a} == 127.0.0.2"),
                    format!("{a} in {{ 127.0.0.2/31, ::1 }}"),
                    format!("{a} in ::1/128"),
                    format!("{a} != 127.0.0.1"),
                    format!("{port} == {}", p + 1),
                    format!("{port} in {}..{}", p + 2, p + 6),
                    format!("{port} >= {}", p + 8),
                    format!("{port} not in {{ {}, {} }}", p, p + 3),
                    "net.protocol == \"udp\"".into(),
                    "net.protocol == \"tcp\"".into(),
                    "net.family == \"ipv6\"".into(),
                    "net.family != \"ipv6\"".into(),
                ],
            )
        }
        Hook::Setuid => (
            kq,
            vec![
                "cred.new_uid == 65534".into(),
                "cred.new_uid in { 1000, 65534 }".into(),
                "cred.new_euid == 0".into(),
                "cred.new_euid >= 1000".into(),
                "cred.new_gid == 65534".into(),
                "cred.new_egid != 0".into(),
                "cred.new_egid in 1..1000".into(),
                "cred.new_uid != user.uid".into(),
                "cred.new_euid < cred.new_uid".into(),
                "user.uid == 0".into(),
                "user.euid != 0".into(),
                "user.caps has CAP_SETUID".into(),
                "not process.interactive".into(),
            ],
        ),
        Hook::Capset => (
            kq,
            vec![
                "cred.new_caps has CAP_NET_RAW".into(),
                "cred.new_caps has { CAP_CHOWN, CAP_KILL }".into(),
                "cred.new_caps has CAP_SYS_ADMIN".into(),
                "not cred.new_caps has CAP_CHOWN".into(),
                "user.caps has { CAP_SYS_ADMIN, CAP_NET_RAW }".into(),
                "user.uid in 1..65534".into(),
            ],
        ),
        Hook::Ptrace => (
            kq,
            vec![
                format!("target.binary == \"{t}/a\""),
                format!("target.binary startswith \"{t}/\""),
                "target.binary endswith \"/b\"".into(),
                format!("target.binary != \"{t}/a\""),
            ],
        ),
        Hook::ModuleLoad => unreachable!("not exercised"),
    }
}

const HOOKS: [Hook; 7] = [
    Hook::Exec,
    Hook::Open,
    Hook::Connect,
    Hook::Bind,
    Hook::Setuid,
    Hook::Capset,
    Hook::Ptrace,
];

fn cond(rng: &mut Rng, atoms: &[String]) -> String {
    let a = rng.pick(atoms).clone();
    let b = rng.pick(atoms).clone();
    match rng.below(5) {
        0 | 1 => a,
        2 => format!("{a} and {b}"),
        3 => format!("{a} or {b}"),
        _ => format!("not ({a})"),
    }
}

/// The policy files of a round: file 0 also holds the marker rule.
fn policies(rng: &mut Rng, env: &Env, round: u64) -> Vec<SourceFile> {
    let mut files = Vec::new();
    for file in 0..2 {
        let monitor = file == 1 && rng.chance(1, 2);
        let mut text = format!(
            "policy eq{round}_{file} {{\n  description = \"kernel equivalence round {round}\"\n  mode = {}\n}}\n\n",
            if monitor { "monitor" } else { "enforce" }
        );
        if file == 0 {
            text += &format!(
                "rule marker on exec {{\n  when process.binary == \"{}\"\n  audit\n}}\n\n",
                env.marker
            );
        }
        let mut n = 0;
        for hook in HOOKS {
            let (scope, hook_atoms) = atoms(env, hook);
            for _ in 0..rng.below(4) {
                n += 1;
                let mut body = format!("  when {scope} and ({})\n", cond(rng, &hook_atoms));
                if rng.chance(1, 4) {
                    body += &format!("  unless {}\n", rng.pick(&hook_atoms));
                }
                let verdict = *rng.pick(&["", "", "allow", "deny", "kill"]);
                if !verdict.is_empty() {
                    body += &format!("  {verdict}\n");
                }
                let audit = rng.chance(1, 2);
                if audit {
                    body += &format!("  audit severity {}\n", rng.pick(&["info", "low", "high"]));
                }
                if rng.chance(1, 3) || (verdict.is_empty() && !audit) {
                    body += &format!("  count \"c{}\"\n", rng.below(3));
                }
                text += &format!("rule r{file}_{n} on {} {{\n{body}}}\n\n", hook.as_str());
            }
            if rng.chance(1, 5) {
                text += &format!(
                    "default deny {} when {scope} and ({})\n\n",
                    hook.as_str(),
                    cond(rng, &hook_atoms)
                );
            }
        }
        files.push(SourceFile {
            name: format!("eq{round}_{file}.policy"),
            text,
        });
    }
    files
}

/// Every action of a round: all exec and open variants, and random network,
/// credential, capability and ptrace actions.
fn actions(rng: &mut Rng, env: &Env) -> Vec<Action> {
    let x = &env.x;
    let exec = |program: &str, cwd: &str, binary: &str, name: &str| Action::Exec {
        program: program.into(),
        args: Vec::new(),
        cwd: cwd.into(),
        binary: format!("{x}/{binary}"),
        name: name.into(),
    };
    let mut out = vec![
        exec(&format!("{x}/t1"), "/", "t1", "t1"),
        exec(&format!("{x}/t2"), "/", "t2", "t2"),
        exec(&format!("{x}/sub/t3"), "/", "sub/t3", "t3"),
        exec("./t1", x, "t1", "t1"),
        exec("./sub/t3", x, "sub/t3", "t3"),
        exec("../t2", &format!("{x}/sub"), "t2", "t2"),
        // Through symlinks: the binary is the target, the name the link's.
        exec(&format!("{x}/l1"), "/", "t1", "l1"),
        exec("./l2", &format!("{x}/sub"), "t2", "l2"),
    ];
    for a in &mut out {
        if let Action::Exec { args, .. } = a {
            *args = rng
                .pick(&[&[][..], &["-a"], &["-a", "-b"], &["-x", "-a"]])
                .to_vec();
        }
    }
    let f = &env.f;
    // Every open syscall the hook attaches to (creat only writes).
    let syscall = |rng: &mut Rng, write: bool| {
        *rng.pick(if write {
            &["openat", "open", "openat2", "creat"][..]
        } else {
            &["openat", "open", "openat2"][..]
        })
    };
    for name in ["a.txt", "b.log", "sub/c.txt", "sub/d.conf"] {
        for write in [false, true] {
            out.push(Action::Open {
                path: format!("{f}/{name}"),
                canonical: format!("{f}/{name}"),
                write,
                syscall: syscall(rng, write),
            });
        }
    }
    let write = rng.chance(1, 2);
    out.push(Action::Open {
        path: format!("{f}/ln.txt"),
        canonical: format!("{f}/sub/d.conf"),
        write,
        syscall: syscall(rng, write),
    });
    for hook in [Hook::Connect, Hook::Bind] {
        for _ in 0..8 {
            let v6 = rng.chance(1, 3);
            let addr = if v6 {
                // An IPv4-mapped address is an IPv6 one (connect6/bind6).
                *rng.pick(&["::1", "::1", "::ffff:127.0.0.1"])
            } else {
                *rng.pick(&["127.0.0.1", "127.0.0.2", "127.0.0.3"])
            };
            out.push(Action::Net {
                hook,
                v6,
                udp: rng.chance(1, 2),
                addr,
                port: env.port + rng.below(16) as u16,
            });
        }
    }
    for _ in 0..6 {
        let syscall = *rng.pick(&[
            "setuid",
            "setgid",
            "setreuid",
            "setregid",
            "setresuid",
            "setresgid",
        ]);
        let mut args = [0i64; 3];
        for (i, a) in args.iter_mut().enumerate() {
            // setuid/setgid take no "keep".
            let keep = i > 0 || syscall.starts_with("setre");
            *a = *rng.pick(if keep {
                &[0, 1000, 65534, -1][..]
            } else {
                &[0, 1000, 65534][..]
            });
        }
        out.push(Action::Id {
            syscall,
            args,
            uid: *rng.pick(&[0, 0, 1000]),
        });
    }
    for _ in 0..3 {
        out.push(Action::Capset {
            caps: (0..CAPS.len()).filter(|_| rng.chance(1, 2)).collect(),
            uid: *rng.pick(&[0, 0, 1000]),
        });
    }
    for target in ["a", "b"] {
        out.push(Action::Ptrace {
            target: format!("{}/{target}", env.t),
        });
    }
    out
}

/// Spawn and wait, with stdout captured; retries ETXTBSY (copies made just
/// now may be open for writing in a child forked by another test thread).
fn run_capture(cmd: &mut Command) -> (u32, ExitStatus, String) {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut tries = 0;
    let child = loop {
        match cmd.spawn() {
            Ok(c) => break c,
            Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) && tries < 50 => {
                tries += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("cannot spawn {cmd:?}: {e}"),
        }
    };
    let pid = child.id();
    let out = child.wait_with_output().unwrap();
    (
        pid,
        out.status,
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// A tracer killed after its attach leaves the tracee stopped (and
/// orphaned): kill it, if the pid `kq ptrace` printed still runs `target`.
fn reap_tracee(stdout: &str, target: &str) {
    let Ok(pid) = stdout.trim().parse::<i32>() else {
        return;
    };
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).ok();
    if exe.as_deref() == Some(Path::new(target)) {
        // SAFETY: kill has no memory preconditions; the pid runs our target.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
}

/// This (root) test's effective capabilities, which its root children
/// keep across exec.
fn effective_caps() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let hex = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .unwrap()
        .trim();
    u64::from_str_radix(hex, 16).unwrap()
}

/// The exported name of a verdict on `hook`.
fn verdict_name(hook: Hook, v: Verdict) -> &'static str {
    match (v, hook) {
        (Verdict::Allow, _) => "allow",
        (_, Hook::Connect | Hook::Bind) => "deny",
        _ => "kill",
    }
}

/// The pid an exported event is about, and its `process_<hook>` key.
fn pid_of(e: &Value) -> (u64, String) {
    let (key, body) = e
        .as_object()
        .unwrap()
        .iter()
        .find(|(k, _)| k.starts_with("process_"))
        .unwrap_or_else(|| panic!("no process_<hook> in {e:#}"));
    (body["process"]["pid"].as_u64().unwrap(), key.clone())
}

/// Build the helper and lay out the round's directory.
fn setup(dir: &Path, round: u64, kq_bin: &Path) -> Env {
    let s = |p: PathBuf| p.to_str().unwrap().to_string();
    let env = Env {
        dir: dir.to_path_buf(),
        kq: s(dir.join("kq")),
        x: s(dir.join("x")),
        f: s(dir.join("f")),
        t: s(dir.join("tgt")),
        marker: s(dir.join("marker")),
        port: 42_000 + 16 * round as u16,
        parent: s(std::env::current_exe().unwrap().canonicalize().unwrap()),
    };
    // Traversable by the unprivileged actions (tempdir makes it 0700).
    std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    for sub in ["x/sub", "f/sub", "tgt"] {
        std::fs::create_dir_all(dir.join(sub)).unwrap();
    }
    for copy in ["kq", "marker", "x/t1", "x/t2", "x/sub/t3", "tgt/a", "tgt/b"] {
        std::fs::copy(kq_bin, dir.join(copy)).unwrap();
    }
    std::os::unix::fs::symlink("t1", dir.join("x/l1")).unwrap();
    std::os::unix::fs::symlink("../t2", dir.join("x/sub/l2")).unwrap();
    for file in ["a.txt", "b.log", "sub/c.txt", "sub/d.conf"] {
        std::fs::write(dir.join("f").join(file), "x").unwrap();
    }
    std::os::unix::fs::symlink("sub/d.conf", dir.join("f/ln.txt")).unwrap();
    env
}

/// What one action must have given.
struct Expected {
    action: Action,
    pid: u32,
    status: ExitStatus,
    stdout: String,
    outcome: Outcome,
    /// An event must be exported.
    emit: bool,
}

/// Check one action's enforcement and event against the bundle evaluator.
fn check(bundle: &PolicyBundle, env: &Env, x: &Expected, events: &[&Value]) {
    let hook = x.action.hook();
    let o = &x.outcome;
    let verdict = verdict_name(hook, o.verdict);
    let what = format!("{:?} (pid {})", x.action, x.pid);
    // Enforcement.
    match (hook, verdict) {
        (Hook::Connect | Hook::Bind, "deny") => {
            assert_eq!(x.status.code(), Some(1), "{what}: not refused with EPERM")
        }
        (Hook::Connect | Hook::Bind, _) => assert!(
            matches!(x.status.code(), Some(0 | 3)),
            "{what}: refused although allowed ({})",
            x.status
        ),
        (_, "kill") => assert_eq!(x.status.signal(), Some(libc::SIGKILL), "{what}: not killed"),
        // Not root: the call may fail after the hook allowed it.
        _ if x.action.uid() != 0 => assert!(
            matches!(x.status.code(), Some(0 | 2)),
            "{what}: did not run ({})",
            x.status
        ),
        _ => assert_eq!(x.status.code(), Some(0), "{what}: did not run"),
    }
    if !x.emit {
        assert!(events.is_empty(), "{what}: unexpected events {events:#?}");
        return;
    }
    assert_eq!(events.len(), 1, "{what}: expected one event: {events:#?}");
    let e = events[0];
    let name = |id: &u32| bundle.spec.rules[*id as usize].name.clone();
    let names = |ids: &[u32]| ids.iter().map(name).collect::<Vec<_>>();
    let strs = |v: &Value| -> Vec<String> {
        v.as_array()
            .map(|a| a.iter().map(|s| s.as_str().unwrap().to_string()).collect())
            .unwrap_or_default()
    };
    let key = format!("process_{}", hook.as_str());
    let body = &e[&key];
    assert!(body.is_object(), "{what}: not a {key} event: {e:#}");
    assert_eq!(
        strs(&e["matched"]),
        names(&o.matched),
        "{what}: matched: {e:#}"
    );
    assert_eq!(e["verdict"], verdict, "{what}: verdict: {e:#}");
    let would = verdict_name(hook, o.would_verdict);
    assert_eq!(
        e.get("would_verdict").and_then(Value::as_str),
        (would != verdict).then_some(would),
        "{what}: would_verdict: {e:#}"
    );
    assert_eq!(
        strs(&e["would_deny"]),
        names(&o.would_deny),
        "{what}: would_deny: {e:#}"
    );
    assert_eq!(e["audit"], !o.audit.is_empty(), "{what}: audit: {e:#}");
    assert_eq!(strs(&e["counters"]), o.counters, "{what}: counters: {e:#}");
    // The deciding scope: a deny that no enforced deny/kill rule made.
    let monitor = |policy: &str| {
        bundle
            .spec
            .policies
            .iter()
            .any(|p| p.name == policy && p.mode == Mode::Monitor)
    };
    let rule_denies = o.matched.iter().any(|id| {
        let r = &bundle.spec.rules[*id as usize];
        r.verdict.is_some_and(|v| v != Verdict::Allow) && !monitor(&r.policy)
    });
    let scope = (o.verdict != Verdict::Allow && !rule_denies)
        .then(|| {
            o.scopes
                .iter()
                .map(|id| &bundle.spec.scopes[*id as usize])
                .find(|s| !monitor(&s.policy))
                .map(|s| s.name.clone())
        })
        .flatten();
    assert_eq!(
        e.get("scope").and_then(Value::as_str),
        scope.as_deref(),
        "{what}: scope: {e:#}"
    );
    let flags = strs(&body["process"]["flags"]);
    let killed = verdict == "kill";
    assert_eq!(
        flags.contains(&"kill_sent".to_string()),
        killed,
        "{what}: {e:#}"
    );
    assert_eq!(
        flags.contains(&"refused".to_string()),
        verdict == "deny",
        "{what}: {e:#}"
    );
    // The object, as the kernel saw it.
    let p = &body["process"];
    match &x.action {
        Action::Exec {
            binary, name, args, ..
        } => {
            assert_eq!(p["binary"], *binary, "{what}: {e:#}");
            assert_eq!(p["comm"], *name, "{what}: {e:#}");
            assert_eq!(p["argv"], json!(args), "{what}: {e:#}");
        }
        a => {
            assert_eq!(p["binary"], env.kq, "{what}: {e:#}");
            match a {
                Action::Open {
                    canonical, write, ..
                } => {
                    assert_eq!(body["file"]["path"], *canonical, "{what}: {e:#}");
                    assert_eq!(body["file"]["write"], *write, "{what}: {e:#}");
                }
                Action::Net {
                    v6,
                    udp,
                    addr,
                    port,
                    ..
                } => {
                    let s = &body["sock"];
                    assert_eq!(s["family"], if *v6 { "ipv6" } else { "ipv4" }, "{e:#}");
                    assert_eq!(s["protocol"], if *udp { "udp" } else { "tcp" }, "{e:#}");
                    assert_eq!(s["addr"], *addr, "{what}: {e:#}");
                    assert_eq!(s["port"], *port, "{what}: {e:#}");
                }
                Action::Id { syscall, args, uid } => {
                    let ids = Action::new_ids(syscall, *args, *uid);
                    let c = &body["cred"];
                    assert_eq!(c["syscall"], *syscall, "{what}: {e:#}");
                    let got: Vec<i64> = ["new_uid", "new_euid", "new_gid", "new_egid"]
                        .iter()
                        .map(|k| c[k].as_i64().unwrap())
                        .collect();
                    assert_eq!(got, ids, "{what}: {e:#}");
                }
                Action::Capset { caps, .. } => {
                    let want: BTreeSet<&str> = caps.iter().map(|&i| CAPS[i].0).collect();
                    let got: BTreeSet<String> =
                        strs(&body["caps"]["new_effective"]).into_iter().collect();
                    assert_eq!(
                        got,
                        want.iter().map(|s| s.to_string()).collect(),
                        "{what}: {e:#}"
                    );
                }
                Action::Ptrace { target } => {
                    let t = &body["target"];
                    assert_eq!(t["binary"], *target, "{what}: {e:#}");
                    assert_eq!(t["request"], "PTRACE_ATTACH", "{what}: {e:#}");
                    assert_eq!(
                        t["pid"].to_string(),
                        x.stdout.trim(),
                        "{what}: traced pid: {e:#}"
                    );
                }
                Action::Exec { .. } => unreachable!(),
            }
        }
    }
}

/// One round: policies, policyd, actions, marker, comparison.
fn round(round: u64, kq_bin: &Path) -> usize {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().canonicalize().unwrap();
    let env = setup(&dir, round, kq_bin);
    let seed = env_u64("KERNEL_EQ_SEED", SEED);
    let mut rng = Rng(seed ^ round.wrapping_mul(0x1000_0001));
    let files = policies(&mut rng, &env, round);
    let actions = actions(&mut rng, &env);
    play(&env, round, &format!("seed {seed}"), &files, actions)
}

/// Compile `files`, start policyd, perform `actions` and compare; the
/// number of events exported for them.
fn play(env: &Env, round: u64, origin: &str, files: &[SourceFile], actions: Vec<Action>) -> usize {
    let dir = &env.dir;
    let compiled = compile(files, &format!("eq{round}")).unwrap_or_else(|e| {
        let text: Vec<&str> = files.iter().map(|f| f.text.as_str()).collect();
        panic!(
            "round {round}: the compiler refuses:\n{e}\n{}",
            text.join("\n")
        )
    });
    let bundle = compiled.bundle;
    let bundle_path = dir.join("bundle.yaml");
    std::fs::write(&bundle_path, bundle.to_yaml()).unwrap();

    let d = Policyd::start(&bundle_path, &env.dir, &format!("eq{round}"));
    let mut expected = Vec::new();
    for action in actions {
        let event = event_from_json(&action.event(env))
            .unwrap_or_else(|e| panic!("{action:?}: bad event: {e}"));
        let outcome = eval_bundle(&bundle, &event);
        let emit = outcome.verdict != Verdict::Allow
            || !outcome.audit.is_empty()
            || !outcome.counters.is_empty()
            || outcome.would_verdict != outcome.verdict;
        let (pid, status, stdout) = run_capture(&mut action.command(env));
        if let Action::Ptrace { target } = &action {
            reap_tracee(&stdout, target);
        }
        expected.push(Expected {
            action,
            pid,
            status,
            stdout,
            outcome,
            emit,
        });
    }
    let (marker, status, _) = run_capture(&mut Command::new(&env.marker));
    assert!(status.success(), "marker: {status}");
    let end = Instant::now() + DEADLINE;
    let events = loop {
        let events = d.events();
        if events.iter().any(|e| pid_of(e).0 == u64::from(marker)) {
            break events;
        }
        assert!(
            Instant::now() < end,
            "round {round}: no marker event within {DEADLINE:?}: {events:#?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut by_pid: BTreeMap<u64, Vec<&Value>> = BTreeMap::new();
    for e in &events {
        by_pid.entry(pid_of(e).0).or_default().push(e);
    }
    let known: BTreeSet<u64> = expected
        .iter()
        .map(|x| u64::from(x.pid))
        .chain([u64::from(marker)])
        .collect();
    let stray: Vec<_> = by_pid
        .iter()
        .filter(|(pid, _)| !known.contains(pid))
        .collect();
    let report = || {
        files
            .iter()
            .map(|f| f.text.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert!(
        stray.is_empty(),
        "round {round}: events of processes that did nothing: {stray:#?}\n{}",
        report()
    );
    let mut emitted = 0;
    for x in &expected {
        let evs = by_pid.get(&u64::from(x.pid)).cloned().unwrap_or_default();
        emitted += usize::from(x.emit);
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            check(&bundle, env, x, &evs)
        }));
        if let Err(e) = result {
            eprintln!("round {round} ({origin}) policies:\n{}", report());
            std::panic::resume_unwind(e);
        }
    }
    let mut tally: BTreeMap<(String, &str), usize> = BTreeMap::new();
    for x in expected.iter().filter(|x| x.emit) {
        let hook = x.action.hook();
        *tally
            .entry((
                hook.as_str().to_string(),
                verdict_name(hook, x.outcome.verdict),
            ))
            .or_default() += 1;
    }
    eprintln!(
        "round {round}: {} actions, {emitted} events: {tally:?}",
        expected.len()
    );
    d.stop();
    emitted
}

/// Build `kq` (static) into `dir`.
fn build_kq(dir: &Path) -> PathBuf {
    let kq = dir.join("kq");
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/kernel_equivalence/kq.c");
    let out = Command::new("/usr/bin/clang")
        .args(["-O1", "-static", "-o"])
        .arg(&kq)
        .arg(&src)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "clang {}: {}",
        src.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    kq
}

#[test]
fn kernel_verdicts_and_events_equal_the_bundle_evaluator() {
    if !kernel_tests_enabled_with(
        "kernel_verdicts_and_events_equal_the_bundle_evaluator",
        &[(
            "/usr/bin/clang",
            "no clang to build the helper (scripts/setup.sh installs it)",
        )],
    ) {
        return;
    }
    let build = tempfile::tempdir().unwrap();
    let kq = build_kq(build.path());
    let rounds = env_u64("KERNEL_EQ_ROUNDS", ROUNDS);
    let mut emitted = 0;
    for r in 0..rounds {
        emitted += round(r, &kq);
    }
    // The generator must exercise events, not only silence.
    assert!(emitted > 20, "only {emitted} events in {rounds} rounds");
}

/// Regressions found by the generator, as fixed scenarios: connect and
/// setuid rules load (their programs attach), and a matched monitor term
/// that changes nothing (a monitor allow; a monitor `default deny` scope
/// that an allow overrides) exports no event.
#[test]
fn fixed_scenarios_equal_the_bundle_evaluator() {
    if !kernel_tests_enabled_with(
        "fixed_scenarios_equal_the_bundle_evaluator",
        &[(
            "/usr/bin/clang",
            "no clang to build the helper (scripts/setup.sh installs it)",
        )],
    ) {
        return;
    }
    let build = tempfile::tempdir().unwrap();
    let kq = build_kq(build.path());
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().canonicalize().unwrap();
    let env = setup(&dir, 7, &kq);
    let (k, p) = (&env.kq, env.port);
    let file = |name: &str, text: String| SourceFile {
        name: name.into(),
        text,
    };
    let files = [
        file(
            "fixed_0.policy",
            format!(
                "policy fixed_0 {{ description = \"enforced\" }}\n\
                 rule marker on exec {{ when process.binary == \"{}\" audit }}\n\
                 rule bind_ok on bind {{ when process.binary == \"{k}\" and net.sport == {p} allow }}\n\
                 rule no_connect on connect {{ when process.binary == \"{k}\" and net.dport == {p} deny }}\n\
                 rule to_nobody on setuid {{ when process.binary == \"{k}\" and cred.new_uid == 65534 count \"nobody\" }}\n",
                env.marker
            ),
        ),
        file(
            "fixed_1.policy",
            format!(
                "policy fixed_1 {{ description = \"monitor\" mode = monitor }}\n\
                 default deny bind when process.binary == \"{k}\" and net.sport in {p}..{}\n\
                 rule bind_mon on bind {{ when process.binary == \"{k}\" and net.sport == {} allow }}\n",
                p + 2,
                p + 1
            ),
        ),
    ];
    let bind = |port: u16| Action::Net {
        hook: Hook::Bind,
        v6: false,
        udp: true,
        addr: "127.0.0.1",
        port,
    };
    let actions = vec![
        // Enforced allow + monitor scope: nothing to say.
        bind(p),
        // Monitor allow + monitor scope: nothing to say.
        bind(p + 1),
        // The monitor scope alone would deny: an event.
        bind(p + 2),
        Action::Net {
            hook: Hook::Connect,
            v6: true,
            udp: false,
            addr: "::1",
            port: p,
        },
        Action::Id {
            syscall: "setuid",
            args: [65534, 0, 0],
            uid: 0,
        },
        Action::Id {
            syscall: "setgid",
            args: [65534, 0, 0],
            uid: 1000,
        },
    ];
    let emitted = play(&env, 0, "fixed", &files, actions);
    assert_eq!(emitted, 3);
}
