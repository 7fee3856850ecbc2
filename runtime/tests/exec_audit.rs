//! End-to-end tests of the exec hook on the real kernel: compile a policy,
//! start `policyd`, run real binaries, and check the exported events.
//!
//! They need root and kernel BTF. Without them they are skipped with a
//! message, unless `CI=true`, where skipping is a failure.
//!
//! Waits use deadlines (how long we are willing to wait for something that
//! must happen), never timing assertions.

mod common;

use std::collections::HashSet;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::*;

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

/// Past one kernel mask, rules that share one binary and differ by a uid
/// range are split by `user.uid`'s ranges (`anchor_prefix` keyed by the
/// ranges' aligned blocks; the binary, tested by all, is too crowded to be
/// the anchor): 7,000 kill rules on uid ranges decide execs by real
/// processes of three users.
#[test]
fn uid_range_rules_past_one_mask_are_decided_through_range_anchors() {
    if !kernel_tests_enabled("uid_range_rules_past_one_mask_are_decided_through_range_anchors") {
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().canonicalize().unwrap();
    // Other users run the binary too.
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let victim = dir.join("victim");
    std::fs::copy("/bin/true", &victim).unwrap();
    let v = victim.to_str().unwrap();
    let mut text = String::from("policy ranges {}\n");
    // Rule i kills uids 10i+1 ..= 10i+9; uids 10i pass.
    for i in 0..7000 {
        let lo = 10 * i + 1;
        text += &format!(
            "rule r{i} on exec {{ when process.binary == \"{v}\" and user.uid in {lo}..{} kill }}\n",
            lo + 8
        );
    }
    text += &format!(
        "rule root on exec {{ when process.binary == \"{v}\" and user.uid == 0 audit }}\n"
    );
    let bundle = write_bundle(&dir, "ranges.policy", &text, "ranges");
    let d = Policyd::start(&bundle, &dir, "ranges");
    // nobody (65534) is in 65531..65539 (r6553); 12345 in 12341..12349 (r1234).
    for (uid, rule) in [(65534u32, "r6553"), (12345, "r1234")] {
        let (pid, status) = run(Command::new(&victim).uid(uid).gid(uid));
        assert_eq!(
            status.signal(),
            Some(libc::SIGKILL),
            "uid {uid}: {status:?}"
        );
        let events = d.wait_events_of(pid);
        assert_eq!(events[0]["rule"], rule, "{:#}", events[0]);
        assert_eq!(events[0]["verdict"], "kill", "{:#}", events[0]);
    }
    // 12340 is in no range: it runs, and nothing matches.
    let (_, status) = run(Command::new(&victim).uid(12340).gid(12340));
    assert!(status.success(), "uid 12340: {status:?}");
    // root matches only the audit rule.
    let (pid, status) = run(&mut Command::new(&victim));
    assert!(status.success(), "root: {status:?}");
    let events = d.wait_events_of(pid);
    assert_eq!(events[0]["rule"], "root", "{:#}", events[0]);
    assert_eq!(events[0]["verdict"], "allow", "{:#}", events[0]);
    d.stop();
}

/// A temp dir with a copy of `/usr/bin/touch` named `victim` and a bundle
/// that denies it: (temp dir guard, canonical dir, victim, bundle).
fn deny_victim_setup(name: &str) -> (tempfile::TempDir, PathBuf, PathBuf, PathBuf) {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().canonicalize().unwrap();
    let victim = dir.join("victim");
    std::fs::copy("/usr/bin/touch", &victim).unwrap();
    let policy = format!(
        "policy deny_test {{ description = \"kill a copied binary\" }}\n\
         rule deny_victim on exec {{ when process.binary == \"{}\" deny }}\n",
        victim.display()
    );
    let bundle = write_bundle(&dir, "deny-test.policy", &policy, name);
    (work, dir, victim, bundle)
}

/// Run the victim with a marker argument; assert it was killed before it
/// could create the marker.
fn assert_victim_killed(victim: &Path, marker: &Path) -> u32 {
    let (pid, status) = run(Command::new(victim).arg(marker));
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
    pid
}

#[test]
fn one_instance_per_pin_dir_and_stale_pins_are_removed() {
    if !kernel_tests_enabled("one_instance_per_pin_dir_and_stale_pins_are_removed") {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().canonicalize().unwrap();
    let bundle = write_bundle(
        &dir,
        "policies/sudo-audit.policy",
        SUDO_POLICY,
        "sudo-audit",
    );
    let first = Policyd::start(&bundle, &dir, "lock");
    let pin_dir = first.pin_dir.clone();

    // A second instance on the same pin directory is refused, naming the first.
    let second = Policyd::spawn(
        &bundle,
        &pin_dir,
        dir.join("second.jsonl").as_os_str(),
        Stdio::null(),
    );
    let (status, stderr) = second.wait_exit();
    let stderr = unwrapped(&stderr);
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("in use by another policyd")
            && stderr.contains(&format!("pid {}", first.pid()))
            && !stderr.contains("panicked"),
        "{stderr}"
    );
    assert!(!stderr.contains("policyd: ready"), "{stderr}");
    // ... and left the first one's pins and hook alone.
    assert!(pin_dir.join("hook_config").exists());
    let (pid, _) = run(Command::new(SUDO).args(["-n", "true"]).current_dir(&dir));
    assert_one_sudo_event(
        &first,
        pid,
        unsafe { libc::getuid() },
        dir.to_str().unwrap(),
    );

    // A crash leaves pins; the next instance removes them and says so.
    let pin_dir = first.crash();
    let _guard = PinDirGuard(pin_dir.clone());
    let pinned = is_bpffs(Path::new("/sys/fs/bpf"));
    if pinned {
        assert!(
            pin_dir.join("hook_config").exists(),
            "no stale pins to test"
        );
    }
    let mut third = Policyd::spawn(
        &bundle,
        &pin_dir,
        dir.join("third.jsonl").as_os_str(),
        Stdio::null(),
    );
    third.wait_ready();
    if pinned {
        let line = third.wait_stderr("the stale pin line", |l| l.contains("stale pins"));
        assert!(
            line.contains(pin_dir.to_str().unwrap()) && line.contains("hook_config"),
            "{line}"
        );
    }
    third.stop();
}

#[test]
fn hangup_and_quit_detach_and_unpin_like_sigterm() {
    if !kernel_tests_enabled("hangup_and_quit_detach_and_unpin_like_sigterm") {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().canonicalize().unwrap();
    let bundle = write_bundle(
        &dir,
        "policies/sudo-audit.policy",
        SUDO_POLICY,
        "sudo-audit",
    );
    for (sig, name) in [(libc::SIGHUP, "SIGHUP"), (libc::SIGQUIT, "SIGQUIT")] {
        let d = Policyd::start(&bundle, &dir, name);
        let stderr = d.stop_with(sig);
        assert!(
            stderr
                .iter()
                .any(|l| l.starts_with(&format!("policyd: {name}: detached"))),
            "{stderr:#?}"
        );
    }
}

#[test]
fn pin_dir_problems_are_named_precisely() {
    if !kernel_tests_enabled("pin_dir_problems_are_named_precisely") {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().canonicalize().unwrap();
    let bundle = write_bundle(
        &dir,
        "policies/sudo-audit.policy",
        SUDO_POLICY,
        "sudo-audit",
    );
    assert!(
        is_bpffs(Path::new("/sys/fs/bpf")),
        "this test needs bpffs on /sys/fs/bpf (mount -t bpf bpf /sys/fs/bpf)"
    );

    // The bpffs root itself: refused, and the message says so.
    let root = Path::new("/sys/fs/bpf");
    let d = Policyd::spawn(
        &bundle,
        root,
        dir.join("e.jsonl").as_os_str(),
        Stdio::null(),
    );
    let (status, stderr) = d.wait_exit();
    let stderr = unwrapped(&stderr);
    remove_lock_file(root);
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("is the root of a bpf filesystem") && !stderr.contains("mount -t bpf"),
        "{stderr}"
    );

    // Missing parents inside bpffs: created, used, and removed on exit.
    let top = test_pin_dir("nested");
    let nested = top.join("a/b/c");
    let mut d = Policyd::spawn(
        &bundle,
        &nested,
        dir.join("n.jsonl").as_os_str(),
        Stdio::null(),
    );
    d.cleanup = top.clone();
    d.wait_ready();
    assert!(
        nested.join("events").exists(),
        "not pinned in {}",
        nested.display()
    );
    let stderr = d.stop();
    assert!(!top.exists(), "{} left behind", top.display());
    assert!(
        !stderr.iter().any(|l| l.contains("not on a bpf filesystem")),
        "{stderr:#?}"
    );

    // Not on bpffs at all: runs unpinned, naming the filesystem and where bpffs is.
    let plain = dir.join("pins");
    let mut d = Policyd::spawn(
        &bundle,
        &plain,
        dir.join("p.jsonl").as_os_str(),
        Stdio::null(),
    );
    d.wait_ready();
    let line = d.wait_stderr("the not-pinned line", |l| l.contains("maps are not pinned"));
    assert!(
        line.contains(&format!(
            "{} does not exist and its nearest existing ancestor {} is on",
            plain.display(),
            dir.display()
        )) && line.contains("bpf filesystems are mounted at /sys/fs/bpf"),
        "{line}"
    );
    d.stop();
}

#[test]
fn export_write_errors_do_not_stop_enforcement() {
    if !kernel_tests_enabled("export_write_errors_do_not_stop_enforcement") {
        return;
    }
    let (_work, dir, victim, bundle) = deny_victim_setup("deny-full");
    let mut d = Policyd::spawn(
        &bundle,
        &test_pin_dir("full"),
        OsStr::new("/dev/full"),
        Stdio::null(),
    );
    d.wait_ready();
    assert_victim_killed(&victim, &dir.join("marker1"));
    let line = d.wait_stderr("the export failure", |l| {
        l.contains("cannot export an event")
    });
    assert!(
        line.contains("/dev/full") && line.contains("enforcement continues"),
        "{line}"
    );
    // The first event failed to write; policyd still enforces.
    assert_victim_killed(&victim, &dir.join("marker2"));
    assert_victim_killed(&victim, &dir.join("marker3"));
    let stderr = d.stop();
    assert_eq!(exit_stat(&stderr, "export_errors"), 3, "{stderr:#?}");
    assert_eq!(exit_stat(&stderr, "kills"), 3, "{stderr:#?}");
    // Logged once, not per event.
    assert_eq!(
        stderr
            .iter()
            .filter(|l| l.contains("cannot export"))
            .count(),
        1,
        "{stderr:#?}"
    );
}

#[test]
fn stdout_reader_going_away_is_said_and_enforcement_goes_on() {
    if !kernel_tests_enabled("stdout_reader_going_away_is_said_and_enforcement_goes_on") {
        return;
    }
    let (_work, dir, victim, bundle) = deny_victim_setup("deny-epipe");
    let mut d = Policyd::spawn(
        &bundle,
        &test_pin_dir("epipe"),
        OsStr::new("-"),
        Stdio::piped(),
    );
    d.wait_ready();
    // Like `policyd run … | head -1` once head has exited.
    drop(d.child.as_mut().unwrap().stdout.take());
    assert_victim_killed(&victim, &dir.join("marker1"));
    let line = d.wait_stderr("the broken pipe", |l| {
        l.contains("reader of stdout went away")
    });
    assert!(line.contains("enforcement continues"), "{line}");
    assert_victim_killed(&victim, &dir.join("marker2"));
    let stderr = d.stop();
    assert_eq!(exit_stat(&stderr, "export_errors"), 2, "{stderr:#?}");
}

#[test]
fn events_carry_exact_argv_lossy_flags_and_the_top_severity() {
    if !kernel_tests_enabled("events_carry_exact_argv_lossy_flags_and_the_top_severity") {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().canonicalize().unwrap();
    let victim = dir.join("victim");
    std::fs::copy("/usr/bin/touch", &victim).unwrap();
    // Rule 0 kills the victim and audits low; rule 1 audits critical anything in the dir.
    let policy = format!(
        "policy sev_test {{ description = \"severity and argv\" }}\n\
         rule deny_victim on exec {{\n  when process.binary == \"{victim}\"\n  deny\n  audit severity low \"victim\"\n}}\n\
         rule in_work on exec {{\n  when process.binary startswith \"{dir}/\"\n  audit severity critical \"ran from the work dir\"\n}}\n",
        victim = victim.display(),
        dir = dir.display(),
    );
    let bundle = write_bundle(&dir, "sev.policy", &policy, "sev-test");
    let d = Policyd::start(&bundle, &dir, "argv");

    let pid = assert_victim_killed(&victim, &dir.join("marker"));
    let evs = d.wait_events_of(pid);
    assert_eq!(evs.len(), 1, "one event per exec: {evs:#?}");
    let e = &evs[0];
    assert_eq!(e["rule"], "deny_victim", "{e:#}");
    assert_eq!(
        e["matched"],
        serde_json::json!(["deny_victim", "in_work"]),
        "{e:#}"
    );
    assert_eq!(e["verdict"], "kill", "{e:#}");
    assert_eq!(e["severity"], "critical", "{e:#}");
    assert_eq!(e["message"], "victim", "{e:#}");

    // A binary and cwd whose names are not UTF-8, with awkward arguments.
    let odd_dir = dir.join(OsStr::from_bytes(b"dir-\xff"));
    std::fs::create_dir(&odd_dir).unwrap();
    let odd = odd_dir.join(OsStr::from_bytes(b"true-\xfe"));
    std::fs::copy("/bin/true", &odd).unwrap();
    let (pid, status) = run(Command::new(&odd)
        .args([
            OsStr::new("a b"),
            OsStr::new(""),
            OsStr::new("c"),
            OsStr::from_bytes(b"\xff"),
        ])
        .current_dir(&odd_dir));
    assert!(status.success(), "{status}");
    let evs = d.wait_events_of(pid);
    assert_eq!(evs.len(), 1, "{evs:#?}");
    let e = &evs[0];
    let p = &e["process_exec"]["process"];
    let odd_dir_lossy = format!("{}/dir-\u{fffd}", dir.display());
    assert_eq!(
        p["binary"],
        format!("{odd_dir_lossy}/true-\u{fffd}"),
        "{e:#}"
    );
    assert_eq!(p["cwd"], odd_dir_lossy, "{e:#}");
    assert_eq!(
        p["argv"],
        serde_json::json!(["a b", "", "c", "\u{fffd}"]),
        "{e:#}"
    );
    assert_eq!(p["arguments"], "a b  c \u{fffd}", "{e:#}");
    assert_eq!(
        p["flags"],
        serde_json::json!([
            "binary_not_utf8",
            "args_not_utf8",
            "cwd_not_utf8",
            "comm_not_utf8"
        ]),
        "{e:#}"
    );
    assert_eq!(e["rule"], "in_work", "{e:#}");
    assert_eq!(e["severity"], "critical", "{e:#}");
    assert_eq!(e["verdict"], "allow", "{e:#}");
    d.stop();
}

#[test]
fn an_empty_node_name_is_refused() {
    // Checked before anything needs root or the kernel.
    let out = Command::new(env!("CARGO_BIN_EXE_policyd"))
        .args([
            "run",
            "--bundle",
            "/nonexistent/bundle.yaml",
            "--node-name",
            "",
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("node name is empty") && !stderr.contains("panicked"),
        "{stderr}"
    );
}

/// Run `path`; it must be killed, and its event name `rule` with `kill`.
fn assert_killed_by(d: &Policyd, path: &Path, rule: &str) {
    let (pid, status) = run(&mut Command::new(path));
    assert_eq!(
        status.signal(),
        Some(libc::SIGKILL),
        "{}: {status:?}",
        path.display()
    );
    let events = d.wait_events_of(pid);
    assert_eq!(events[0]["rule"], rule, "{:#}", events[0]);
    assert_eq!(events[0]["verdict"], "kill", "{:#}", events[0]);
}

/// Run `path`; it must succeed, and its event name `rule` with `allow`.
fn assert_allowed_by(d: &Policyd, path: &Path, rule: &str) {
    let (pid, status) = run(&mut Command::new(path));
    assert!(status.success(), "{}: {status:?}", path.display());
    let events = d.wait_events_of(pid);
    assert_eq!(events[0]["rule"], rule, "{:#}", events[0]);
    assert_eq!(events[0]["verdict"], "allow", "{:#}", events[0]);
}

/// Past one kernel mask (4096 terms), exact-path rules are split into
/// groups by `process.binary`: 5,000 kill rules on distinct binaries of a
/// temp dir, and one audit rule on the dir's prefix, still decide each exec
/// exactly (the matched rule in a far group, a binary no group names).
#[test]
fn rules_past_one_mask_are_decided_through_anchored_groups() {
    if !kernel_tests_enabled("rules_past_one_mask_are_decided_through_anchored_groups") {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().canonicalize().unwrap();
    let bin = |name: &str| {
        let p = dir.join(name);
        std::fs::copy("/bin/true", &p).unwrap();
        p
    };
    let (near, far, free) = (bin("b17"), bin("b4321"), bin("free"));
    let d_str = dir.to_str().unwrap();
    let mut text = String::from("policy anchored {}\n");
    for i in 0..5000 {
        text += &format!("rule r{i} on exec {{ when process.binary == \"{d_str}/b{i}\" kill }}\n");
    }
    text +=
        &format!("rule in_dir on exec {{ when process.binary startswith \"{d_str}/\" audit }}\n");
    let bundle = write_bundle(&dir, "anchored.policy", &text, "anchored");
    let d = Policyd::start(&bundle, &dir, "anchored");
    for (path, rule) in [(&near, "r17"), (&far, "r4321")] {
        assert_killed_by(&d, path, rule);
    }
    assert_allowed_by(&d, &free, "in_dir");
    d.stop();
}

/// Past one kernel mask, prefix rules are split by `process.binary`'s
/// longest key (`anchor_prefix`): 5,000 kill rules on subdirectories of a
/// temp dir, each excepting one binary, decide each exec exactly (the
/// matched rule in a far group, the excepted binary, a binary under no
/// key); the rule on the whole dir, over every key, stays in the hook's own
/// words and audits them all.
#[test]
fn prefix_rules_past_one_mask_are_decided_through_prefix_anchors() {
    if !kernel_tests_enabled("prefix_rules_past_one_mask_are_decided_through_prefix_anchors") {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().canonicalize().unwrap();
    let bin = |name: &str| {
        let p = dir.join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::copy("/bin/true", &p).unwrap();
        p
    };
    let (near, far, ok, free) = (
        bin("d17/x"),
        bin("d4321/sub/y"),
        bin("d4321/ok"),
        bin("free"),
    );
    let d_str = dir.to_str().unwrap();
    let mut text = String::from("policy prefixed {}\n");
    for i in 0..5000 {
        text += &format!(
            "rule r{i} on exec {{ when process.binary startswith \"{d_str}/d{i}/\" and \
             not process.binary == \"{d_str}/d{i}/ok\" kill }}\n"
        );
    }
    text +=
        &format!("rule in_dir on exec {{ when process.binary startswith \"{d_str}/\" audit }}\n");
    let bundle = write_bundle(&dir, "prefixed.policy", &text, "prefixed");
    let d = Policyd::start(&bundle, &dir, "prefixed");
    for (path, rule) in [(&near, "r17"), (&far, "r4321")] {
        assert_killed_by(&d, path, rule);
    }
    for path in [&ok, &free] {
        assert_allowed_by(&d, path, "in_dir");
    }
    d.stop();
}
