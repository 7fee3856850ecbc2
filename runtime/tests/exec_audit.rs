//! End-to-end tests of the exec hook on the real kernel: compile a policy,
//! start `policyd`, run real binaries, and check the exported events.
//!
//! They need root and kernel BTF. Without them they are skipped with a
//! message, unless `CI=true`, where skipping is a failure.
//!
//! Waits use deadlines (how long we are willing to wait for something that
//! must happen), never timing assertions.

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use policy_compiler::{compile, SourceFile};
use serde_json::Value;

const SUDO: &str = "/usr/bin/sudo";
const DEADLINE: Duration = Duration::from_secs(30);
const SUDO_POLICY: &str = include_str!("../../policies/sudo-audit.policy");

/// Whether the kernel tests can run here; panics under `CI=true` when not.
fn kernel_tests_enabled(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let btf = Path::new("/sys/kernel/btf/vmlinux").exists();
    let sudo = Path::new(SUDO).exists();
    let why = match (root, btf, sudo) {
        (true, true, true) => return true,
        (false, _, _) => "not running as root",
        (_, false, _) => "no kernel BTF at /sys/kernel/btf/vmlinux",
        (_, _, false) => "no /usr/bin/sudo (apt-get install sudo)",
    };
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{test}: BPF tests are required under CI=true but cannot run: {why}");
    }
    eprintln!("{test}: skipped: {why} (set CI=true to make this a failure)");
    false
}

fn is_bpffs(dir: &Path) -> bool {
    let c = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()).unwrap();
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: valid C string and writable statfs.
    unsafe { libc::statfs(c.as_ptr(), &mut st) == 0 && st.f_type as i64 == 0xcafe_4a11 }
}

fn write_bundle(dir: &Path, file: &str, text: &str, name: &str) -> PathBuf {
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

/// A running policyd; killed (and its pins removed) if the test fails early.
struct Policyd {
    child: Option<Child>,
    export: PathBuf,
    pin_dir: PathBuf,
    pinned: bool,
    stderr: mpsc::Receiver<String>,
    stderr_seen: Vec<String>,
}

impl Policyd {
    fn start(bundle: &Path, work: &Path, tag: &str) -> Policyd {
        static SEQ: AtomicU32 = AtomicU32::new(0);
        let export = work.join("events.jsonl");
        let pin_dir = PathBuf::from(format!(
            "/sys/fs/bpf/policyd-test-{}-{}-{tag}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let pinned = is_bpffs(Path::new("/sys/fs/bpf"));
        let mut child = Command::new(env!("CARGO_BIN_EXE_policyd"))
            .args(["run", "--bundle"])
            .arg(bundle)
            .arg("--export")
            .arg(&export)
            .arg("--pin-dir")
            .arg(&pin_dir)
            .args(["--node-name", "test-node"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
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
        let mut d = Policyd {
            child: Some(child),
            export,
            pin_dir,
            pinned,
            stderr: rx,
            stderr_seen: Vec::new(),
        };
        d.wait_ready();
        d
    }

    fn wait_ready(&mut self) {
        let end = Instant::now() + DEADLINE;
        loop {
            match self.stderr.recv_timeout(Duration::from_millis(200)) {
                Ok(line) => {
                    let ready = line.starts_with("policyd: ready");
                    self.stderr_seen.push(line);
                    if ready {
                        return;
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let status = self.child.as_mut().unwrap().wait().unwrap();
                    panic!(
                        "policyd exited ({status}) before ready:\n{}",
                        self.stderr_seen.join("\n")
                    );
                }
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!(
                    "policyd exited ({status}) before ready:\n{}",
                    self.stderr_seen.join("\n")
                );
            }
            assert!(
                Instant::now() < end,
                "policyd not ready within {DEADLINE:?}:\n{}",
                self.stderr_seen.join("\n")
            );
        }
    }

    /// Every complete event line exported so far.
    fn events(&self) -> Vec<Value> {
        let text = std::fs::read_to_string(&self.export).unwrap_or_default();
        text.split_inclusive('\n')
            .filter(|l| l.ends_with('\n'))
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l:?}: {e}")))
            .collect()
    }

    fn events_of(&self, pid: u32) -> Vec<Value> {
        self.events()
            .into_iter()
            .filter(|e| e["process_exec"]["process"]["pid"] == pid)
            .collect()
    }

    /// Wait until `pid` has at least one event; then return all of its events.
    fn wait_events_of(&self, pid: u32) -> Vec<Value> {
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
    fn stop(mut self) {
        let mut child = self.child.take().unwrap();
        if self.pinned {
            assert!(
                self.pin_dir.join("exec_config").exists(),
                "maps not pinned under {}",
                self.pin_dir.display()
            );
        }
        // SAFETY: sending a signal to our own child.
        assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
        let end = Instant::now() + DEADLINE;
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            assert!(
                Instant::now() < end,
                "policyd did not exit within {DEADLINE:?} of SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        assert!(
            status.success(),
            "policyd exited with {status} after SIGTERM"
        );
        assert!(
            !self.pin_dir.exists(),
            "pins left behind in {}",
            self.pin_dir.display()
        );
    }
}

impl Drop for Policyd {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
            let _ = std::fs::remove_dir_all(&self.pin_dir);
        }
    }
}

/// Spawn and wait, returning (pid, status). Retries ETXTBSY: a binary copied
/// just now may still be open for writing in a child forked concurrently by
/// another test thread.
fn run(cmd: &mut Command) -> (u32, ExitStatus) {
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

fn assert_one_sudo_event(d: &Policyd, pid: u32, uid: u32, cwd: &str) {
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

#[test]
fn sudo_invocations_are_audited_once_each() {
    if !kernel_tests_enabled("sudo_invocations_are_audited_once_each") {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let work_path = work.path().canonicalize().unwrap();
    let bundle = write_bundle(
        &work_path,
        "policies/sudo-audit.policy",
        SUDO_POLICY,
        "sudo-audit",
    );
    let d = Policyd::start(&bundle, &work_path, "sudo");
    // SAFETY: getuid has no preconditions.
    let me = unsafe { libc::getuid() };

    // 1. By absolute path.
    let (pid, _) = run(Command::new(SUDO)
        .args(["-n", "true"])
        .current_dir(&work_path));
    assert_one_sudo_event(&d, pid, me, work_path.to_str().unwrap());

    // 2. Relative to the cwd: the kernel path, not the execve string.
    let (pid, _) = run(Command::new("./sudo")
        .args(["-n", "true"])
        .current_dir("/usr/bin"));
    assert_one_sudo_event(&d, pid, me, "/usr/bin");

    // 3. Through a symlink in a temp dir.
    let link = work_path.join("my-sudo");
    std::os::unix::fs::symlink(SUDO, &link).unwrap();
    let (pid, _) = run(Command::new(&link)
        .args(["-n", "true"])
        .current_dir(&work_path));
    assert_one_sudo_event(&d, pid, me, work_path.to_str().unwrap());

    // 4. By PATH lookup, as user nobody: uid is the real uid after exec.
    let (pid, _) = run(Command::new("sudo")
        .args(["-n", "true"])
        .env("PATH", "/usr/bin:/bin")
        .current_dir("/")
        .uid(65534)
        .gid(65534));
    assert_one_sudo_event(&d, pid, 65534, "/");

    // 5. A binary no rule names yields no event: checked once a later
    //    sentinel event has arrived (events are ordered per ring buffer).
    let (true_pid, status) = run(&mut Command::new("/bin/true"));
    assert!(status.success());
    let (sentinel, _) = run(Command::new(SUDO)
        .args(["-n", "true"])
        .current_dir(&work_path));
    assert_one_sudo_event(&d, sentinel, me, work_path.to_str().unwrap());
    assert!(
        d.events_of(true_pid).is_empty(),
        "unexpected event for /bin/true: {:#?}",
        d.events_of(true_pid)
    );

    // Every sudo event names the canonical path, whoever ran it.
    let binaries: HashSet<String> = d
        .events()
        .iter()
        .map(|e| {
            e["process_exec"]["process"]["binary"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(binaries, HashSet::from([SUDO.to_string()]));
    d.stop();
}

#[test]
fn denied_binary_is_killed_before_it_runs() {
    if !kernel_tests_enabled("denied_binary_is_killed_before_it_runs") {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().canonicalize().unwrap();
    let victim = dir.join("victim");
    std::fs::copy("/usr/bin/touch", &victim).unwrap();
    let policy = format!(
        "policy deny_test {{ description = \"kill a copied binary\" }}\n\
         rule deny_victim on exec {{ when process.binary == \"{}\" deny }}\n",
        victim.display()
    );
    let bundle = write_bundle(&dir, "deny-test.policy", &policy, "deny-test");
    let d = Policyd::start(&bundle, &dir, "deny");

    let marker = dir.join("marker");
    let (pid, status) = run(Command::new(&victim).arg(&marker));
    assert_eq!(
        status.signal(),
        Some(libc::SIGKILL),
        "victim was not killed: {status}"
    );
    assert!(
        !marker.exists(),
        "the denied binary ran user code: {} exists",
        marker.display()
    );

    let evs = d.wait_events_of(pid);
    assert_eq!(evs.len(), 1, "{evs:#?}");
    let e = &evs[0];
    assert_eq!(
        e["process_exec"]["process"]["binary"],
        victim.to_str().unwrap(),
        "{e:#}"
    );
    assert_eq!(e["verdict"], "kill", "{e:#}");
    assert_eq!(e["rule"], "deny_victim", "{e:#}");
    assert_eq!(e["policy"], "deny_test", "{e:#}");
    assert_eq!(
        e["process_exec"]["process"]["flags"],
        serde_json::json!(["kill_sent"]),
        "{e:#}"
    );

    // The original binary is not affected.
    let marker2 = dir.join("marker2");
    let (pid2, status) = run(Command::new("/usr/bin/touch").arg(&marker2));
    assert!(status.success(), "/usr/bin/touch failed: {status}");
    assert!(marker2.exists());
    // Same for the victim's path through a symlink: still the victim, still killed.
    let link = dir.join("link-to-victim");
    std::os::unix::fs::symlink(&victim, &link).unwrap();
    let marker3 = dir.join("marker3");
    let (_, status) = run(Command::new(&link).arg(&marker3));
    assert_eq!(
        status.signal(),
        Some(libc::SIGKILL),
        "victim via symlink was not killed: {status}"
    );
    assert!(!marker3.exists());
    assert!(
        d.events_of(pid2).is_empty(),
        "touch is not denied nor audited"
    );
    d.stop();
}

#[test]
fn refuses_clearly_without_root_or_with_a_bad_bundle() {
    if !kernel_tests_enabled("refuses_clearly_without_root_or_with_a_bad_bundle") {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().canonicalize().unwrap();
    // Let nobody traverse the temp dir to read the bundle.
    std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();

    let bad = dir.join("bad.yaml");
    std::fs::write(
        &bad,
        "apiVersion: policyc.dev/v1alpha1\nkind: PolicyBundle\nspec: [",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_policyd"))
        .args(["run", "--bundle"])
        .arg(&bad)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("bundle") && !stderr.contains("panicked"),
        "{stderr}"
    );

    let good = write_bundle(
        &dir,
        "policies/sudo-audit.policy",
        SUDO_POLICY,
        "sudo-audit",
    );
    let out = Command::new(env!("CARGO_BIN_EXE_policyd"))
        .args(["run", "--bundle"])
        .arg(&good)
        .uid(65534)
        .gid(65534)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("must run as root") && !stderr.contains("panicked"),
        "{stderr}"
    );
}
