//! Helpers shared by the integration tests that run `policyd` on the real
//! kernel (`exec_audit.rs`, `prometheus.rs`).
//!
//! They need root and kernel BTF. Without them the tests are skipped with a
//! message, unless `CI=true`, where skipping is a failure.
//!
//! Waits use deadlines (how long we are willing to wait for something that
//! must happen), never timing assertions.
#![allow(dead_code)]

use std::ffi::OsStr;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use policy_compiler::{compile, SourceFile};
use policy_runtime::pins;
use serde_json::Value;

pub const SUDO: &str = "/usr/bin/sudo";
pub const DEADLINE: Duration = Duration::from_secs(30);
pub const SUDO_POLICY: &str = include_str!("../../../policies/sudo-audit.policy");

/// Whether the kernel tests can run here; panics under `CI=true` when not.
pub fn kernel_tests_enabled(test: &str) -> bool {
    kernel_tests_enabled_with(test, &[])
}

/// As [`kernel_tests_enabled`], also requiring each `(file, why it is
/// missing)` of `more`.
pub fn kernel_tests_enabled_with(test: &str, more: &[(&str, &str)]) -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let btf = Path::new("/sys/kernel/btf/vmlinux").exists();
    let sudo = Path::new(SUDO).exists();
    let missing = more.iter().find(|(file, _)| !Path::new(file).exists());
    let why = match (root, btf, sudo, missing) {
        (true, true, true, None) => return true,
        (false, _, _, _) => "not running as root",
        (_, false, _, _) => "no kernel BTF at /sys/kernel/btf/vmlinux",
        (_, _, false, _) => "no /usr/bin/sudo (apt-get install sudo)",
        (_, _, _, Some((_, why))) => why,
    };
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{test}: BPF tests are required under CI=true but cannot run: {why}");
    }
    eprintln!("{test}: skipped: {why} (set CI=true to make this a failure)");
    false
}

pub fn is_bpffs(dir: &Path) -> bool {
    let c = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()).unwrap();
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: valid C string and writable statfs.
    unsafe { libc::statfs(c.as_ptr(), &mut st) == 0 && st.f_type as i64 == 0xcafe_4a11 }
}

pub fn write_bundle(dir: &Path, file: &str, text: &str, name: &str) -> PathBuf {
    let compiled = compile(
        &[SourceFile {
            name: file.into(),
            text: text.into(),
        }],
        name,
    )
    .unwrap_or_else(|e| panic!("policy does not compile:\n{e}"));
    let path = dir.join(format!("{name}.yaml"));
    std::fs::write(&path, compiled.bundle.to_yaml()).unwrap();
    path
}

/// A fresh pin directory name under /sys/fs/bpf for one policyd of a test.
pub fn test_pin_dir(tag: &str) -> PathBuf {
    static SEQ: AtomicU32 = AtomicU32::new(0);
    PathBuf::from(format!(
        "/sys/fs/bpf/policyd-test-{}-{}-{tag}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ))
}

/// A running policyd; killed (and its pins removed) if the test fails early.
pub struct Policyd {
    pub child: Option<Child>,
    pub export: PathBuf,
    pub pin_dir: PathBuf,
    /// Removed (recursively) if the test fails early: `pin_dir` or the
    /// first directory of it that policyd creates.
    pub cleanup: PathBuf,
    pub pinned: bool,
    pub stderr: mpsc::Receiver<String>,
    pub stderr_seen: Vec<String>,
}

impl Policyd {
    /// Start with events appended to `work/events.jsonl`, pins in a fresh
    /// directory; wait until ready.
    pub fn start(bundle: &Path, work: &Path, tag: &str) -> Policyd {
        let mut d = Policyd::spawn(
            bundle,
            &test_pin_dir(tag),
            work.join("events.jsonl").as_os_str(),
            Stdio::null(),
        );
        d.wait_ready();
        d
    }

    /// Spawn `policyd run` without waiting for it; `export` is `--export`.
    /// Metrics are served on a loopback port the kernel picks (see
    /// [`Policyd::metrics_addr`]).
    pub fn spawn(bundle: &Path, pin_dir: &Path, export: &OsStr, stdout: Stdio) -> Policyd {
        Policyd::spawn_with(
            bundle,
            pin_dir,
            export,
            stdout,
            &["--metrics-addr", "127.0.0.1:0"],
        )
    }

    /// [`Policyd::spawn`] with `args` added to `policyd run`.
    pub fn spawn_with(
        bundle: &Path,
        pin_dir: &Path,
        export: &OsStr,
        stdout: Stdio,
        args: &[&str],
    ) -> Policyd {
        Policyd::spawn_source("--bundle", bundle, pin_dir, export, stdout, args)
    }

    /// Start `policyd run --bundle-dir dir` with events appended to
    /// `work/events.jsonl`, pins in a fresh directory; wait until ready.
    pub fn start_dir(dir: &Path, work: &Path, tag: &str) -> Policyd {
        let mut d = Policyd::spawn_source(
            "--bundle-dir",
            dir,
            &test_pin_dir(tag),
            work.join("events.jsonl").as_os_str(),
            Stdio::null(),
            &["--metrics-addr", "127.0.0.1:0"],
        );
        d.wait_ready();
        d
    }

    /// [`Policyd::spawn_with`] with the bundle given as `flag path`
    /// (`--bundle FILE` or `--bundle-dir DIR`).
    pub fn spawn_source(
        flag: &str,
        bundle: &Path,
        pin_dir: &Path,
        export: &OsStr,
        stdout: Stdio,
        args: &[&str],
    ) -> Policyd {
        let mut child = Command::new(env!("CARGO_BIN_EXE_policyd"))
            .args(["run", flag])
            .arg(bundle)
            .arg("--export")
            .arg(export)
            .arg("--pin-dir")
            .arg(pin_dir)
            .args(["--node-name", "test-node"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn policyd");
        let (tx, rx) = mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("[policyd] {line}");
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let pinned = pin_dir.starts_with("/sys/fs/bpf/") && is_bpffs(Path::new("/sys/fs/bpf"));
        Policyd {
            child: Some(child),
            export: PathBuf::from(export),
            pin_dir: pin_dir.to_path_buf(),
            cleanup: pin_dir.to_path_buf(),
            pinned,
            stderr: rx,
            stderr_seen: Vec::new(),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    pub fn wait_ready(&mut self) {
        self.wait_stderr("the readiness line", |l| l.starts_with("policyd: ready"));
    }

    /// The address policyd serves metrics on, from its readiness line.
    pub fn metrics_addr(&mut self) -> std::net::SocketAddr {
        let line = self.wait_stderr("the readiness line", |l| l.starts_with("policyd: ready"));
        let addr = line
            .split(' ')
            .find_map(|kv| kv.strip_prefix("metrics="))
            .unwrap_or_else(|| panic!("no metrics= in {line}"));
        addr.parse()
            .unwrap_or_else(|e| panic!("metrics={addr} in {line}: {e}"))
    }

    /// Wait until policyd prints a line that satisfies `want`; return it.
    pub fn wait_stderr(&mut self, what: &str, want: impl Fn(&str) -> bool) -> String {
        if let Some(l) = self.stderr_seen.iter().find(|l| want(l)) {
            return l.clone();
        }
        let end = Instant::now() + DEADLINE;
        loop {
            match self.stderr.recv_timeout(Duration::from_millis(200)) {
                Ok(line) => {
                    let hit = want(&line);
                    self.stderr_seen.push(line.clone());
                    if hit {
                        return line;
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let status = self.child.as_mut().unwrap().wait().unwrap();
                    panic!(
                        "policyd exited ({status}) before printing {what}:\n{}",
                        self.stderr_seen.join("\n")
                    );
                }
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!(
                    "policyd exited ({status}) before printing {what}:\n{}",
                    self.stderr_seen.join("\n")
                );
            }
            assert!(
                Instant::now() < end,
                "policyd did not print {what} within {DEADLINE:?}:\n{}",
                self.stderr_seen.join("\n")
            );
        }
    }

    /// Wait for policyd to exit on its own; its status and whole stderr.
    pub fn wait_exit(mut self) -> (ExitStatus, String) {
        let mut child = self.child.take().unwrap();
        let end = Instant::now() + DEADLINE;
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            if Instant::now() >= end {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "policyd did not exit within {DEADLINE:?}:\n{}",
                    self.stderr_seen.join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        // The reader thread ends at EOF: collect what it still has.
        while let Ok(line) = self.stderr.recv_timeout(DEADLINE) {
            self.stderr_seen.push(line);
        }
        (status, self.stderr_seen.join("\n"))
    }

    /// Every complete event line exported so far.
    pub fn events(&self) -> Vec<Value> {
        let text = std::fs::read_to_string(&self.export).unwrap_or_default();
        text.split_inclusive('\n')
            .filter(|l| l.ends_with('\n'))
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l:?}: {e}")))
            .collect()
    }

    pub fn events_of(&self, pid: u32) -> Vec<Value> {
        self.events()
            .into_iter()
            .filter(|e| e["process_exec"]["process"]["pid"] == pid)
            .collect()
    }

    /// Wait until `pid` has at least one event; then return all of its events.
    pub fn wait_events_of(&self, pid: u32) -> Vec<Value> {
        let end = Instant::now() + DEADLINE;
        loop {
            let evs = self.events_of(pid);
            if !evs.is_empty() {
                return evs;
            }
            assert!(
                Instant::now() < end,
                "no event for pid {pid} within {DEADLINE:?}; events so far: {:#?}",
                self.events()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM, wait for the exit, and check it was clean and unpinned.
    pub fn stop(self) -> Vec<String> {
        self.stop_with(libc::SIGTERM)
    }

    /// Send `sig`, wait for the exit, and check it was clean (status 0) and
    /// unpinned. Returns every stderr line.
    pub fn stop_with(self, sig: i32) -> Vec<String> {
        if self.pinned {
            assert!(
                self.pin_dir.join("hook_config").exists(),
                "maps not pinned under {}",
                self.pin_dir.display()
            );
        }
        // SAFETY: sending a signal to our own child.
        assert_eq!(unsafe { libc::kill(self.pid() as i32, sig) }, 0);
        let pin_dir = self.pin_dir.clone();
        let cleanup = self.cleanup.clone();
        let (status, stderr) = self.wait_exit();
        let left_pins = pin_dir.exists();
        let left_parents = cleanup.exists();
        // Clean up before asserting, so that a failure leaves nothing behind.
        if cleanup.starts_with("/sys/fs/bpf/") {
            let _ = std::fs::remove_dir_all(&cleanup);
        }
        remove_lock_file(&pin_dir);
        assert!(
            status.success(),
            "policyd exited with {status} after signal {sig}:\n{stderr}"
        );
        assert!(!left_pins, "pins left behind in {}", pin_dir.display());
        assert!(
            !left_parents,
            "pin directory parents left behind: {}",
            cleanup.display()
        );
        stderr.lines().map(str::to_string).collect()
    }

    /// SIGKILL, as a crash: the pins stay. Returns the pin directory.
    pub fn crash(mut self) -> PathBuf {
        let mut child = self.child.take().unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
        self.pin_dir.clone()
    }
}

impl Drop for Policyd {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
            if self.cleanup.starts_with("/sys/fs/bpf/") {
                let _ = std::fs::remove_dir_all(&self.cleanup);
            }
            remove_lock_file(&self.pin_dir);
        }
    }
}

/// Removes a test pin directory and its lock file when dropped.
pub struct PinDirGuard(pub PathBuf);

impl Drop for PinDirGuard {
    fn drop(&mut self) {
        if self.0.starts_with("/sys/fs/bpf/") {
            let _ = std::fs::remove_dir_all(&self.0);
        }
        remove_lock_file(&self.0);
    }
}

/// Remove the lock file of a test pin directory once its policyd is gone.
pub fn remove_lock_file(pin_dir: &Path) {
    if let Ok(abs) = pins::absolute(pin_dir) {
        let _ = std::fs::remove_file(pins::lock_path(&abs));
    }
}

/// miette's report with its line wrapping and frame undone, for searching.
pub fn unwrapped(report: &str) -> String {
    report
        .split(|c: char| c.is_whitespace() || c == '│')
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The value of `name=` in policyd's exit stats line.
pub fn exit_stat(stderr: &[String], name: &str) -> u64 {
    let line = stderr
        .iter()
        .find(|l| l.starts_with("policyd: stats "))
        .unwrap_or_else(|| panic!("no stats line in:\n{}", stderr.join("\n")));
    line.split(' ')
        .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
        .unwrap_or_else(|| panic!("no {name} in {line}"))
        .parse()
        .unwrap()
}

/// `GET path` from `addr` over HTTP/1.1 with `Connection: close`: the status
/// and the body.
pub fn http_get(addr: std::net::SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad HTTP response: {head}")))?;
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    Ok((status, body))
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].strip_prefix("\r\n").unwrap_or(&rest[n..]);
    }
    out
}

/// Spawn and wait, returning (pid, status). Retries ETXTBSY: a binary copied
/// just now may still be open for writing in a child forked concurrently by
/// another test thread.
pub fn run(cmd: &mut Command) -> (u32, ExitStatus) {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut tries = 0;
    let mut child = loop {
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
    (pid, child.wait().unwrap())
}

pub fn assert_one_sudo_event(d: &Policyd, pid: u32, uid: u32, cwd: &str) {
    d.wait_events_of(pid);
    let evs = d.events_of(pid);
    assert_eq!(
        evs.len(),
        1,
        "expected exactly one event for pid {pid}: {evs:#?}"
    );
    let e = &evs[0];
    let p = &e["process_exec"]["process"];
    assert_eq!(p["binary"], SUDO, "{e:#}");
    assert_eq!(p["pid"], pid, "{e:#}");
    assert_eq!(p["uid"], uid, "{e:#}");
    assert_eq!(p["euid"], 0, "sudo is setuid root: {e:#}");
    assert_eq!(p["arguments"], "-n true", "{e:#}");
    assert_eq!(p["argv"], serde_json::json!(["-n", "true"]), "{e:#}");
    assert_eq!(p["cwd"], cwd, "{e:#}");
    assert_eq!(
        e["process_exec"]["parent"]["pid"],
        std::process::id(),
        "{e:#}"
    );
    assert_eq!(e["node_name"], "test-node");
    assert_eq!(e["policy"], "sudo_audit");
    assert_eq!(e["rule"], "sudo_invoked");
    assert_eq!(e["matched"], serde_json::json!(["sudo_invoked"]));
    assert_eq!(e["verdict"], "allow");
    assert_eq!(e["audit"], true);
    assert_eq!(e["bundle"]["name"], "sudo-audit");
    assert!(e["bundle"]["digest"]
        .as_str()
        .unwrap()
        .starts_with("sha256:"));
    let time = e["time"].as_str().unwrap();
    let t = chrono::DateTime::parse_from_rfc3339(time)
        .unwrap_or_else(|err| panic!("time {time:?}: {err}"));
    let skew = (chrono::Utc::now() - t.with_timezone(&chrono::Utc))
        .num_seconds()
        .abs();
    assert!(skew < 300, "event time {time} is {skew}s away from now");
}

/// Compile `text` (one policy file) into bundle YAML named `name`.
pub fn bundle_yaml(file: &str, text: &str, name: &str) -> String {
    compile(
        &[SourceFile {
            name: file.into(),
            text: text.into(),
        }],
        name,
    )
    .unwrap_or_else(|e| panic!("policy does not compile:\n{e}"))
    .bundle
    .to_yaml()
}

/// Replace `path` with `text` the way editors do: write a temp file next to
/// it, then rename it over `path` (a new inode, never half-written).
pub fn replace_file(path: &Path, text: &str) {
    static SEQ: AtomicU32 = AtomicU32::new(0);
    let tmp = path.with_extension(format!(
        "tmp{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// Every sample line of metric `name` (with or without labels) in `text`.
pub fn metric_lines<'a>(text: &'a str, name: &str) -> Vec<&'a str> {
    text.lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|r| r.starts_with(' ') || r.starts_with('{'))
        })
        .collect()
}
