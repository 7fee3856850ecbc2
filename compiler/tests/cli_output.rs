//! `policyc` at the edges: what it reads, where it writes, and that `check`
//! refuses what `compile` refuses.

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;
use std::process::{Command, Output};

const VALID: &str =
    "policy p {}\nrule r on exec { when process.binary == \"/usr/bin/sudo\" audit }\n";

fn policyc(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_policyc"))
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn output_through_a_symlink_replaces_the_target_and_keeps_the_link() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("p.policy"), VALID).unwrap();
    std::fs::write(dir.path().join("target.yaml"), "old").unwrap();
    std::os::unix::fs::symlink("target.yaml", dir.path().join("link.yaml")).unwrap();
    let out = policyc(
        &["compile", "p.policy", "-o", "link.yaml", "--name", "p"],
        dir.path(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let link = std::fs::symlink_metadata(dir.path().join("link.yaml")).unwrap();
    assert!(link.file_type().is_symlink(), "the symlink was replaced");
    let target = std::fs::read_to_string(dir.path().join("target.yaml")).unwrap();
    assert!(
        target.starts_with("apiVersion: policyc.dev/v1alpha1"),
        "{target}"
    );
}

#[test]
fn output_to_a_device_writes_to_it_and_leaves_it_a_device() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("p.policy"), VALID).unwrap();
    let before = std::fs::metadata("/dev/null").unwrap();
    let out = policyc(
        &["compile", "p.policy", "-o", "/dev/null", "--name", "p"],
        dir.path(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let after = std::fs::metadata("/dev/null").unwrap();
    assert!(after.file_type().is_char_device());
    assert_eq!(before.ino(), after.ino());
}

#[test]
fn never_overwrites_a_source_and_names_a_missing_directory() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("p.policy"), VALID).unwrap();
    let out = policyc(
        &["compile", "p.policy", "-o", "./p.policy", "--name", "p"],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("over the source file"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("p.policy")).unwrap(),
        VALID
    );

    let out = policyc(
        &[
            "compile",
            "p.policy",
            "-o",
            "missing/dir/b.yaml",
            "--name",
            "p",
        ],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("directory `missing/dir` does not exist"),
        "{}",
        stderr(&out)
    );
    assert!(
        !stderr(&out).contains(".tmp-"),
        "internal temp name leaked: {}",
        stderr(&out)
    );
}

#[test]
fn a_name_that_cannot_be_derived_asks_for_name() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("p.policy"), VALID).unwrap();
    let out = policyc(&["compile", "p.policy", "-o", "___.yaml"], dir.path());
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--name"), "{}", stderr(&out));
    assert!(!dir.path().join("___.yaml").exists());
}

#[test]
fn input_problems_are_all_reported_with_places() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("latin1.policy"),
        b"policy p {}\n// caf\xe9\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("p.policy"), VALID).unwrap();
    let out = policyc(
        &[
            "check",
            "latin1.policy",
            "missing.policy",
            "p.policy",
            "./p.policy",
        ],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains("invalid byte 0xe9 at line 2, column 7"),
        "{err}"
    );
    assert!(err.contains("cannot read `missing.policy`"), "{err}");
    assert!(err.contains("given twice"), "{err}");
}

#[test]
fn check_reads_standard_input() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_policyc"))
        .args(["check", "-"])
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .current_dir(dir.path())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"policy p {}\nrule r on exec { when process.binray == \"/x\" audit }\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("<stdin>:2:"), "{}", stderr(&out));
}

#[test]
fn check_refuses_what_compile_refuses() {
    let dir = tempfile::tempdir().unwrap();
    // (a or b) and … thirteen times: 2^13 = 8192 terms on one hook, past the
    // 4096 of one kernel mask, and none tests a field with exact values only
    // (no anchor to split them by).
    let cond = (0..13)
        .map(|i| format!("(process.binary != \"/{i}a\" or process.binary startswith \"/{i}b\")"))
        .collect::<Vec<_>>()
        .join(" and ");
    let src = format!("policy p {{}}\nrule r on exec {{ when {cond} audit }}\n");
    std::fs::write(dir.path().join("wide.policy"), src).unwrap();
    let check = policyc(&["check", "wide.policy"], dir.path());
    let compile = policyc(&["compile", "wide.policy", "-o", "b.yaml"], dir.path());
    assert_eq!(compile.status.code(), Some(1), "{}", stderr(&compile));
    assert_eq!(
        check.status.code(),
        Some(1),
        "check passed what compile refused: {}",
        stderr(&check)
    );
    assert!(
        stderr(&check).contains("policyc::kernel_limit"),
        "{}",
        stderr(&check)
    );
}

#[test]
fn fmt_check_lists_unformatted_files_and_fmt_fixes_them() {
    let dir = tempfile::tempdir().unwrap();
    let messy = "policy   x{description=\"a\"}\n// kept\nrule r on exec{when process.binary==\"/a\" audit}\n";
    std::fs::write(dir.path().join("m.policy"), messy).unwrap();
    std::fs::write(
        dir.path().join("bad.policy"),
        "policy x {\nrule r on exec { when }\n",
    )
    .unwrap();
    let out = policyc(&["fmt", "--check", "m.policy"], dir.path());
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "m.policy\n");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("m.policy")).unwrap(),
        messy,
        "--check changed the file"
    );
    let out = policyc(&["fmt", "m.policy"], dir.path());
    assert!(out.status.success(), "{}", stderr(&out));
    let formatted = std::fs::read_to_string(dir.path().join("m.policy")).unwrap();
    assert!(
        formatted.contains("// kept") && formatted.contains("  when process.binary == \"/a\"\n"),
        "{formatted}"
    );
    let out = policyc(&["fmt", "--check", "m.policy"], dir.path());
    assert!(
        out.status.success(),
        "not idempotent: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let out = policyc(&["fmt", "bad.policy"], dir.path());
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("not formatted"), "{}", stderr(&out));
}

#[test]
fn check_kernel_features_warns_where_deny_only_kills() {
    let dir = tempfile::tempdir().unwrap();
    let ws = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let deny = "policy p {}\nrule r on exec { when process.binary == \"/usr/bin/nc\" deny }\n";
    std::fs::write(dir.path().join("p.policy"), deny).unwrap();
    let kill_only = ws.join("tests/golden/kernel-features/this-kernel.json");
    let audit_only = ws.join("tests/golden/kernel-features/audit-only.json");
    // Without the file: clean.
    let out = policyc(&["check", "p.policy"], dir.path());
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!stderr(&out).contains("deny_is_kill"));
    // Kill-only target: a warning, exit 0; exit 1 with --deny-warnings.
    let k = kill_only.to_str().unwrap();
    let out = policyc(&["check", "p.policy", "--kernel-features", k], dir.path());
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("policyc::deny_is_kill"),
        "{}",
        stderr(&out)
    );
    let out = policyc(
        &[
            "check",
            "p.policy",
            "--kernel-features",
            k,
            "--deny-warnings",
        ],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(1));
    // Audit-only target: an error.
    let a = audit_only.to_str().unwrap();
    let out = policyc(&["check", "p.policy", "--kernel-features", a], dir.path());
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("policyc::deny_not_enforced"));
    // JSON diagnostics carry the code.
    let out = policyc(
        &[
            "check",
            "p.policy",
            "--kernel-features",
            k,
            "--format",
            "json",
        ],
        dir.path(),
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("policyc::deny_is_kill"));
    // A bad file is a usage error (exit 2) naming it.
    std::fs::write(dir.path().join("bad.json"), "{}").unwrap();
    let out = policyc(
        &["check", "p.policy", "--kernel-features", "bad.json"],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("bad.json"), "{}", stderr(&out));
}

#[test]
fn check_reports_front_end_and_runtime_problems_in_one_run() {
    let dir = tempfile::tempdir().unwrap();
    let src = "policy p {}\nset s = { \"/a\" }\nset s = { \"/b\" }\n\
               rule r on exec { when process.binary in s audit }\n\
               rule m on module_load { when module.name == \"x\" deny }\n";
    std::fs::write(dir.path().join("p.policy"), src).unwrap();
    let out = policyc(&["check", "p.policy"], dir.path());
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("policyc::duplicate_name"), "{err}");
    assert!(
        err.contains("policyc::unsupported"),
        "the runtime gate waited for a clean front end: {err}"
    );
}

#[test]
fn diff_old_new_lists_accept_a_bundle() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.policy"), VALID).unwrap();
    std::fs::write(
        dir.path().join("b.policy"),
        VALID.replace(" audit ", " deny "),
    )
    .unwrap();
    let out = policyc(&["compile", "a.policy", "-o", "a.yaml"], dir.path());
    assert!(out.status.success(), "{}", stderr(&out));
    let out = policyc(
        &["diff", "--old", "a.yaml", "--new", "b.policy"],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("allow -> deny"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let out = policyc(
        &["diff", "--old", "a.yaml", "a.policy", "--new", "b.policy"],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("looks like a bundle"),
        "{}",
        stderr(&out)
    );
}
