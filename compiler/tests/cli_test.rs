//! `policyc test`: runs `test` blocks against the compiled bundle, prints a
//! line per test and `N passed, M failed`, exits 1 on a failure. Outputs are
//! compared with the golden files in `tests/golden/test/snapshots/`
//! (`cargo insta review` to update).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Run `policyc` from the workspace root, so file names in the output are
/// relative and stable.
fn policyc(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_policyc"))
        .args(args)
        .current_dir(workspace())
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn snapshot(name: &str, output: &str) {
    insta::with_settings!({
        snapshot_path => workspace().join("tests/golden/test/snapshots"),
        prepend_module_to_snapshot => false,
        omit_expression => true,
    }, {
        insta::assert_snapshot!(name, output);
    });
}

const CASES: [&str; 2] = [
    "tests/golden/test/network.policy",
    "tests/golden/test/monitor.policy",
];

#[test]
fn shipped_policies_pass_their_tests() {
    for p in std::fs::read_dir(workspace().join("policies")).unwrap() {
        let p = p.unwrap().path();
        let rel = p.strip_prefix(workspace()).unwrap().display().to_string();
        let out = policyc(&["test", &rel]);
        let stdout = text(&out.stdout);
        assert!(out.status.success(), "{rel}: {stdout}{}", text(&out.stderr));
        assert!(stdout.ends_with(" passed, 0 failed\n"), "{stdout}");
        assert!(!stdout.starts_with("0 passed"), "{rel} has no tests");
    }
    let out = policyc(&["test", "policies/sudo-audit.policy"]);
    snapshot("sudo_audit", &text(&out.stdout));
}

#[test]
fn failures_say_what_was_expected_and_what_happened() {
    let out = policyc(&["test", CASES[0], CASES[1]]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.ends_with("\n7 passed, 2 failed\n"), "{stdout}");
    snapshot("human", &stdout);
}

#[test]
fn json_report() {
    let out = policyc(&["test", "--format", "json", CASES[0], CASES[1]]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = text(&out.stdout);
    let doc: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(doc["passed"], 7);
    assert_eq!(doc["failed"], 2);
    assert_eq!(doc["tests"].as_array().unwrap().len(), 9);
    snapshot("json", &stdout);
}

#[test]
fn compile_errors_fail_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("bad.policy");
    std::fs::write(
        &f,
        "policy p {}\nrule r on exec { when process.binary matches \"/usr/*/sh\" audit }\n",
    )
    .unwrap();
    let out = policyc(&["test", f.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("policyc::unsupported_glob"),
        "{}",
        text(&out.stderr)
    );
    assert!(out.stdout.is_empty());
}

#[test]
fn compile_still_refuses_what_the_runtime_cannot_load() {
    // Every hook with a kernel program, monitor mode and counters compile.
    for case in CASES {
        let out = policyc(&["compile", case, "-o", "-"]);
        assert_eq!(out.status.code(), Some(0), "{case}: {}", text(&out.stderr));
    }
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("gaps.policy");
    std::fs::write(
        &f,
        "policy p {}\n\
         rule m on module_load { when module.name == \"x\" audit }\n\
         rule s on exec { when process.binary == parent.binary audit }\n",
    )
    .unwrap();
    let out = policyc(&["compile", f.to_str().unwrap(), "-o", "-"]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert_eq!(err.matches("policyc::unsupported").count(), 2, "{err}");
    assert!(err.contains("hook `module_load`"), "{err}");
    assert!(
        err.contains("a relation between `process.binary` and `parent.binary`"),
        "{err}"
    );
}
