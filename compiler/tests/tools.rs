//! `policyc inspect`, `explain` and `diff`, run as the built binary on the
//! cases in `tests/golden/tools/`; outputs compared with the snapshots
//! `tests/golden/snapshots/tools__*.snap` (`cargo insta review` to update).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use policy_compiler::compile::{compile_for_evaluation, SourceFile};
use policy_compiler::{diff, eval, event_json, explain};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Run `policyc` from the workspace root (relative, stable names).
fn policyc(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_policyc"))
        .args(args)
        .current_dir(workspace())
        .output()
        .unwrap()
}

fn policyc_stdin(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_policyc"))
        .args(args)
        .current_dir(workspace())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn snapshot(name: &str, output: &str) {
    insta::with_settings!({
        snapshot_path => workspace().join("tests/golden/snapshots"),
        prepend_module_to_snapshot => false,
        omit_expression => true,
    }, {
        insta::assert_snapshot!(format!("tools__{name}"), output);
    });
}

const V1: &str = "tests/golden/tools/v1.policy";
const V2: &str = "tests/golden/tools/v2.policy";

/// Compile the shipped sudo policy for the runtime into a temp bundle file.
fn sudo_bundle(dir: &Path) -> PathBuf {
    let out = dir.join("sudo.yaml");
    let o = policyc(&[
        "compile",
        "policies/sudo-audit.policy",
        "--name",
        "sudo-audit",
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    out
}

#[test]
fn inspect_a_runtime_bundle() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = sudo_bundle(dir.path());
    let o = policyc(&["inspect", bundle.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    snapshot("inspect_sudo_audit", &text(&o.stdout));
    // From standard input, same report.
    let yaml = std::fs::read_to_string(&bundle).unwrap();
    let s = policyc_stdin(&["inspect", "-"], &yaml);
    assert_eq!(text(&s.stdout), text(&o.stdout));
    // JSON.
    let j = policyc(&["inspect", "--format", "json", bundle.to_str().unwrap()]);
    let doc: serde_json::Value = serde_json::from_slice(&j.stdout).unwrap();
    assert_eq!(doc["name"], "sudo-audit");
    assert_eq!(doc["rules"][0]["name"], "sudo_audit.sudo_invoked");
    // 3 exact paths in `str_exact`: 3 × (48 + round8(4 + 256) + round8(4))
    // + 4 buckets × 16; masks: the empty set, {0} (the entries, audit, all
    // terms): 2 × (48 + 8 + 8 × MASK_WORDS + 8) + 2 × 16.
    let maps = &doc["maps"];
    assert_eq!(maps[1]["map"], "str_exact");
    assert_eq!(maps[1]["entries"], 3);
    assert_eq!(maps[1]["bytes"], 3 * (48 + 264 + 8) + 64);
    assert_eq!(maps[0]["map"], "masks");
    assert_eq!(maps[0]["entries"], 2);
    let w = 8 * policy_compiler::limits::MASK_WORDS as u64 + 8;
    assert_eq!(maps[0]["bytes"], 2 * (48 + 8 + w) + 32);
    assert_eq!(doc["hooks"][0]["entries"]["str_exact"], 3);
    // group_config: the hook's dimensions, 1 × (48 + 8 + 1568) + 1 bucket.
    assert_eq!(maps[10]["map"], "group_config");
    assert_eq!(maps[10]["bytes"], 48 + 8 + 1568 + 16);
    assert_eq!(
        doc["bytes"],
        3 * 320 + 64 + 2 * (56 + w) + 32 + (48 + 8 + 1568 + 16)
    );
    assert!(doc["bytesPerRule"].as_u64().unwrap() > 0);
}

#[test]
fn inspect_refuses_a_tampered_bundle() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = sudo_bundle(dir.path());
    let yaml = std::fs::read_to_string(&bundle)
        .unwrap()
        .replace("/usr/bin/sudo", "/usr/bin/sudp");
    std::fs::write(&bundle, yaml).unwrap();
    let o = policyc(&["inspect", bundle.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o.stderr).contains("digest mismatch"),
        "{}",
        text(&o.stderr)
    );
}

#[test]
fn inspect_sources_every_kind() {
    let o = policyc(&["inspect", V1]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    snapshot("inspect_v1", &text(&o.stdout));
    let j = policyc(&["inspect", "--format", "json", V1]);
    assert!(j.status.success());
    snapshot("inspect_v1_json", &text(&j.stdout));
}

#[test]
fn explain_events() {
    let cases = [
        ("explain_shell", V1, "tests/golden/tools/shell.event.json"),
        ("explain_imds", V2, "tests/golden/tools/imds.event.json"),
    ];
    for (name, bundle, event) in cases {
        let o = policyc(&["explain", "--bundle", bundle, "--event", event]);
        assert!(o.status.success(), "{}", text(&o.stderr));
        snapshot(name, &text(&o.stdout));
        let j = policyc(&[
            "explain", "--bundle", bundle, "--event", event, "--format", "json",
        ]);
        let doc: serde_json::Value = serde_json::from_slice(&j.stdout).unwrap();
        assert_eq!(doc["verdict"], "deny");
        for key in ["matched", "audit", "counters"] {
            assert!(doc[key].is_array(), "{key}");
        }
        snapshot(&format!("{name}_json"), &text(&j.stdout));
    }
    // Nothing matches: allow, no deciding rule.
    let o = policyc_stdin(
        &["explain", "--bundle", V1, "--event", "-"],
        r#"{"hook": "exec", "process.binary": "/usr/bin/id"}"#,
    );
    assert!(o.status.success());
    snapshot("explain_allow", &text(&o.stdout));
    // A kill with its counter.
    let o = policyc_stdin(
        &[
            "explain", "--bundle", V1, "--event", "-", "--format", "json",
        ],
        r#"{"hook": "exec", "process.binary": "/tmp/x"}"#,
    );
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(doc["verdict"], "kill");
    assert_eq!(doc["counters"], serde_json::json!(["tmp_exec"]));
    assert_eq!(
        doc["deciding"][0]["terms"][0]["conditions"][0]["lookup"],
        "prefix"
    );
}

#[test]
fn explain_refuses_bad_events() {
    let cases = [
        (
            r#"{"hook": "exec", "process.binray": "/x"}"#,
            "process.binray",
        ),
        (
            r#"{"hook": "exec", "user.uid": "alice", "user.caps": "CAP_NET_RAW"}"#,
            "user.caps",
        ),
        (r#"{"hook": "exec", "user.uid": "x y"}"#, "user.uid"),
        (r#"{"hook": "exec", "user.uid": "0x10"}"#, "user.uid"),
        (r#"{"hook": "connect", "net.dport": 80.5}"#, "net.dport"),
        (r#"{"process.binary": "/x"}"#, "hook"),
    ];
    for (event, field) in cases {
        let o = policyc_stdin(&["explain", "--bundle", V1, "--event", "-"], event);
        assert_eq!(o.status.code(), Some(2), "{event}");
        let err = text(&o.stderr);
        assert!(err.contains(&format!("`{field}`")), "{event}: {err}");
    }
}

#[test]
fn diff_sources() {
    let o = policyc(&["diff", V1, V2]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stderr));
    snapshot("diff_v1_v2", &text(&o.stdout));
    let j = policyc(&["diff", "--format", "json", V1, V2]);
    assert_eq!(j.status.code(), Some(1));
    let doc: serde_json::Value = serde_json::from_slice(&j.stdout).unwrap();
    assert_eq!(doc["added"], serde_json::json!(["guard.setuid_root"]));
    assert_eq!(doc["removed"], serde_json::json!(["guard.raw_caps"]));
    snapshot("diff_v1_v2_json", &text(&j.stdout));
    // Same version: no change, exit 0; `--old`/`--new` lists of files.
    let same = policyc(&["diff", "--old", V1, "--new", V1]);
    assert_eq!(same.status.code(), Some(0), "{}", text(&same.stderr));
    assert!(text(&same.stdout).contains("no rule changes"));
}

#[test]
fn diff_a_bundle_against_its_sources() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = sudo_bundle(dir.path());
    let o = policyc(&[
        "diff",
        bundle.to_str().unwrap(),
        "policies/sudo-audit.policy",
    ]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}{}",
        text(&o.stdout),
        text(&o.stderr)
    );
    // The bundle without its extension is still recognised by its content.
    let plain = dir.path().join("sudo");
    std::fs::copy(&bundle, &plain).unwrap();
    let o = policyc(&["diff", plain.to_str().unwrap(), V1]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stderr));
    assert!(text(&o.stdout).contains("- rule sudo_audit.sudo_invoked"));
}

fn tool_sources(path: &str) -> Vec<SourceFile> {
    vec![SourceFile {
        name: path.into(),
        text: std::fs::read_to_string(workspace().join(path)).unwrap(),
    }]
}

/// The explanation's traced lookups give exactly the evaluator's sets, and
/// its deciding rules are among the matched ones, on every candidate event
/// `diff` generates for the two versions.
#[test]
fn explain_agrees_with_the_evaluator() {
    let old = compile_for_evaluation(&tool_sources(V1), "a")
        .unwrap()
        .0
        .bundle;
    let new = compile_for_evaluation(&tool_sources(V2), "b")
        .unwrap()
        .0
        .bundle;
    let mut n = 0;
    for hook in [
        policy_dsl::schema::Hook::Exec,
        policy_dsl::schema::Hook::Connect,
        policy_dsl::schema::Hook::Capset,
        policy_dsl::schema::Hook::Setuid,
    ] {
        for event in diff::candidate_events(&old, &new, hook) {
            // The event survives a JSON round trip.
            let line = event_json::event_to_line(&event);
            assert_eq!(event_json::parse_event(&line).unwrap(), event, "{line}");
            for bundle in [&old, &new] {
                let Some(table) = bundle.spec.hooks.get(&hook) else {
                    continue;
                };
                for (name, dim) in &table.dimensions {
                    if dim.relation.is_some() {
                        continue;
                    }
                    let value = event
                        .fields
                        .iter()
                        .find(|(k, _)| k.to_string() == *name)
                        .map(|(_, v)| v);
                    if let Some(v) = value {
                        assert_eq!(
                            explain::traced_set(dim, Some(v)),
                            explain::evaluator_set(dim, v),
                            "{name} = {v:?}"
                        );
                    }
                }
                let outcome = eval::eval_bundle(bundle, &event);
                let e = explain::explain(bundle, &event);
                assert_eq!(e.verdict, outcome.verdict);
                for d in &e.deciding {
                    assert!(d.scope || e.matched.contains(&d.rule), "{line}");
                    assert!(!d.terms.is_empty());
                }
                assert_eq!(e.decision == "no rule", e.deciding.is_empty(), "{line}");
                n += 1;
            }
        }
    }
    assert!(n > 100, "{n}");
}
