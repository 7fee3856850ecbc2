//! `policyd run --bundle-dir DIR` on the real kernel: every bundle of the
//! directory is in force at once (merged into one generation), removing a
//! file swaps its rules out, and a malformed file changes nothing.
//!
//! Only binaries copied into temp dirs are ever killed. Waits use deadlines,
//! never timing assertions.

mod common;

use std::os::unix::process::ExitStatusExt;
use std::process::Command;

use common::*;

#[test]
fn a_directory_of_bundles_is_enforced_at_once_and_followed() {
    if !kernel_tests_enabled("a_directory_of_bundles_is_enforced_at_once_and_followed") {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().canonicalize().unwrap();
    let (x, y) = (dir.join("x"), dir.join("y"));
    std::fs::copy("/usr/bin/touch", &x).unwrap();
    std::fs::copy("/usr/bin/touch", &y).unwrap();
    let bundles = dir.join("bundles");
    std::fs::create_dir(&bundles).unwrap();
    let a = bundle_yaml(
        "dir-a.policy",
        &format!(
            "policy dir_a {{ description = \"audit x\" }}\n\
             rule x_seen on exec {{ when process.binary == \"{}\" audit severity info \"x ran\" }}\n",
            x.display()
        ),
        "dir-a",
    );
    let b = bundle_yaml(
        "dir-b.policy",
        &format!(
            "policy dir_b {{ description = \"kill y\" }}\n\
             rule y_denied on exec {{ when process.binary == \"{}\" deny }}\n",
            y.display()
        ),
        "dir-b",
    );
    std::fs::write(bundles.join("a.yaml"), &a).unwrap();
    std::fs::write(bundles.join("b.yml"), &b).unwrap();
    let mut d = Policyd::start_dir(&bundles, &dir, "bdir");
    let ready = d.wait_stderr("the readiness line", |l| l.starts_with("policyd: ready"));
    assert!(
        ready.contains("bundle=dir-a ") && ready.contains("bundle=dir-b "),
        "{ready}"
    );
    let addr = d.metrics_addr();

    let digest_of = |yaml: &str| {
        policy_compiler::bundle::PolicyBundle::from_yaml(yaml)
            .unwrap()
            .spec
            .digest
    };
    // Both behaviours at once: X audited (bundle A), Y killed (bundle B).
    let check_x = |d: &Policyd, marker: &str, generation: u64| {
        let marker = dir.join(marker);
        let (pid, status) = run(Command::new(&x).arg(&marker));
        assert!(status.success(), "x failed: {status}");
        assert!(marker.exists());
        let evs = d.wait_events_of(pid);
        assert_eq!(evs.len(), 1, "{evs:#?}");
        let e = &evs[0];
        assert_eq!(e["verdict"], "allow", "{e:#}");
        assert_eq!(e["audit"], true, "{e:#}");
        assert_eq!(e["rule"], "x_seen", "{e:#}");
        assert_eq!(e["policy"], "dir_a", "{e:#}");
        assert_eq!(e["bundle"]["name"], "dir-a", "{e:#}");
        assert_eq!(e["bundle"]["digest"], digest_of(&a).as_str(), "{e:#}");
        assert_eq!(e["generation"], generation, "{e:#}");
    };
    check_x(&d, "x1", 1);
    let marker = dir.join("y1");
    let (pid, status) = run(Command::new(&y).arg(&marker));
    assert_eq!(
        status.signal(),
        Some(libc::SIGKILL),
        "y not killed: {status}"
    );
    assert!(!marker.exists());
    let evs = d.wait_events_of(pid);
    assert_eq!(evs.len(), 1, "{evs:#?}");
    let e = &evs[0];
    assert_eq!(e["verdict"], "kill", "{e:#}");
    assert_eq!(e["rule"], "y_denied", "{e:#}");
    assert_eq!(e["bundle"]["name"], "dir-b", "{e:#}");
    assert_eq!(e["bundle"]["digest"], digest_of(&b).as_str(), "{e:#}");
    assert_eq!(e["generation"], 1, "{e:#}");

    // Removing B's file: a new generation without it; Y runs again.
    std::fs::remove_file(bundles.join("b.yml")).unwrap();
    let line = d.wait_stderr("generation 2 applied", |l| {
        l.contains(" applied: generation=2 ")
    });
    assert!(
        line.contains("bundle=dir-a ") && !line.contains("dir-b"),
        "{line}"
    );
    let marker = dir.join("y2");
    let (_, status) = run(Command::new(&y).arg(&marker));
    assert!(
        status.success(),
        "y still killed after B's removal: {status}"
    );
    assert!(marker.exists());
    check_x(&d, "x2", 2);

    // A malformed file: logged and skipped; nothing else changes.
    replace_file(
        &bundles.join("c.yaml"),
        "apiVersion: policyc.dev/v1alpha1\nkind: PolicyBundle\nspec: [",
    );
    let line = d.wait_stderr("the refusal", |l| l.contains("c.yaml refused"));
    assert!(line.contains("not loaded"), "{line}");
    check_x(&d, "x3", 2);
    let (_, text) = http_get(addr, "/metrics").unwrap();
    let has = |line: &str| assert!(text.lines().any(|l| l == line), "no `{line}` in:\n{text}");
    has("policyd_policy_load_generation 2");
    has(r#"policyd_bundle_reloads_total{result="applied"} 1"#);
    has(r#"policyd_bundle_reloads_total{result="refused"} 1"#);
    let loaded = metric_lines(&text, "policyd_policy_loaded");
    assert_eq!(loaded.len(), 1, "{loaded:?}");
    assert!(
        loaded[0].starts_with(r#"policyd_policy_loaded{bundle="dir-a","#),
        "{loaded:?}"
    );
    let stderr = d.stop();
    assert!(
        !stderr.iter().any(|l| l.contains("generation=3")),
        "{stderr:#?}"
    );
    assert_eq!(exit_stat(&stderr, "decode_errors"), 0);
}
