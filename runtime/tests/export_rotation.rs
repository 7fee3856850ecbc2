//! Export rotation and filters on the real kernel: `policyd` with a small
//! `--export-max-size`, compression and a deny filter for one binary; real
//! execs of temp binaries under an audit rule; the rotated files must hold
//! exactly the allowed events, each once, in whole lines.
//!
//! Needs root and kernel BTF (skipped otherwise, a failure under `CI=true`).
//! Only an audit rule on binaries copied into a temp dir is installed.

mod common;

use std::collections::HashSet;
use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};

use common::*;

/// Every line of `FILE` and its rotated files (`.gz` decompressed), oldest
/// file first; checks each file ends with a newline and every line is JSON.
fn all_exported(export: &Path, max_size: u64) -> (usize, Vec<serde_json::Value>) {
    let dir = export.parent().unwrap();
    let base = export.file_name().unwrap().to_str().unwrap();
    let mut rotated: Vec<(u32, std::path::PathBuf)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter_map(|p| {
            let name = p.file_name()?.to_str()?.to_string();
            let n = name.strip_prefix(base)?.strip_prefix('.')?;
            let n = n
                .strip_suffix(".gz")
                .unwrap_or_else(|| panic!("rotated file {name} is not compressed"));
            Some((n.parse().unwrap(), p))
        })
        .collect();
    rotated.sort();
    let mut files: Vec<std::path::PathBuf> = rotated.into_iter().rev().map(|(_, p)| p).collect();
    files.push(export.to_path_buf());
    let mut events = Vec::new();
    for path in &files {
        let mut text = String::new();
        if path.extension().is_some_and(|e| e == "gz") {
            flate2::read::GzDecoder::new(std::fs::File::open(path).unwrap())
                .read_to_string(&mut text)
                .unwrap();
        } else {
            text = std::fs::read_to_string(path).unwrap();
        }
        assert!(
            text.is_empty() || text.ends_with('\n'),
            "{} ends in a partial line: {text:?}",
            path.display()
        );
        assert!(
            text.len() as u64 <= max_size,
            "{} holds {} bytes, over the {max_size}-byte limit",
            path.display(),
            text.len()
        );
        for line in text.lines() {
            events.push(
                serde_json::from_str(line)
                    .unwrap_or_else(|e| panic!("bad line in {}: {line:?}: {e}", path.display())),
            );
        }
    }
    (files.len(), events)
}

#[test]
fn rotated_export_holds_exactly_the_unfiltered_events() {
    if !kernel_tests_enabled("rotated_export_holds_exactly_the_unfiltered_events") {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().canonicalize().unwrap();
    let bin = dir.join("bin");
    std::fs::create_dir(&bin).unwrap();
    let kept = bin.join("kept");
    let noisy = bin.join("noisy");
    std::fs::copy("/bin/true", &kept).unwrap();
    std::fs::copy("/bin/true", &noisy).unwrap();
    let policy = format!(
        "policy rot_test {{ description = \"export rotation\" }}\n\
         rule in_bin on exec {{\n  when process.binary startswith \"{bin}/\"\n  audit severity info \"ran from the test bin dir\"\n}}\n",
        bin = bin.display(),
    );
    let bundle = write_bundle(&dir, "rot.policy", &policy, "rot-test");
    let export = dir.join("events.jsonl");
    const MAX: u64 = 2048;
    let deny = format!(r#"{{"binary":["{}"]}}"#, noisy.display());
    let mut d = Policyd::spawn_with(
        &bundle,
        &test_pin_dir("rot"),
        export.as_os_str(),
        Stdio::null(),
        &[
            "--metrics-addr",
            "127.0.0.1:0",
            "--export-max-size",
            "2K",
            "--export-backups",
            "1000",
            "--export-compress",
            "--export-deny",
            &deny,
        ],
    );
    d.wait_ready();
    let metrics = d.metrics_addr();

    const N: usize = 15;
    let mut kept_pids = Vec::new();
    let mut noisy_pids = HashSet::new();
    for _ in 0..N {
        let (pid, status) = run(&mut Command::new(&kept));
        assert!(status.success(), "{status}");
        kept_pids.push(pid);
        let (pid, status) = run(&mut Command::new(&noisy));
        assert!(status.success(), "{status}");
        noisy_pids.insert(pid);
    }
    // Events are exported in order: once the last one is there, all are.
    let last = *kept_pids.last().unwrap();
    d.wait_events_of(last);

    let (status, body) = http_get(metrics, "/metrics").unwrap();
    assert_eq!(status, 200);
    assert!(
        body.lines()
            .any(|l| l == format!("policyd_events_filtered_total{{hook=\"exec\"}} {N}")),
        "filtered events not counted:\n{body}"
    );
    // Filters only affect the export: metrics count every event.
    assert!(
        body.lines().any(|l| l
            == format!(
                "policyd_rule_matches_total{{policy=\"rot_test\",rule=\"in_bin\"}} {}",
                2 * N
            )),
        "rule matches must count filtered events too:\n{body}"
    );

    let stderr = d.stop();
    assert_eq!(exit_stat(&stderr, "export_errors"), 0, "{stderr:#?}");
    let (files, events) = all_exported(&export, MAX);
    assert!(files >= 3, "expected several rotations, got {files} files");
    let pids: Vec<u32> = events
        .iter()
        .map(|e| e["process_exec"]["process"]["pid"].as_u64().unwrap() as u32)
        .collect();
    assert_eq!(
        pids, kept_pids,
        "exactly the kept execs, once each, in order"
    );
    for e in &events {
        assert_eq!(
            e["process_exec"]["process"]["binary"],
            kept.to_str().unwrap()
        );
        assert_eq!(e["policy"], "rot_test");
        assert_eq!(e["rule"], "in_bin");
        assert_eq!(e["verdict"], "allow");
        assert_eq!(e["generation"], 1);
        assert!(e["bundle"]["digest"]
            .as_str()
            .unwrap()
            .starts_with("sha256:"));
    }
    assert!(pids.iter().all(|p| !noisy_pids.contains(p)));
}

/// Bad filters and rotation of stdout are refused before anything is loaded
/// (no root needed).
#[test]
fn bad_export_options_are_refused() {
    let policyd = env!("CARGO_BIN_EXE_policyd");
    let out = Command::new(policyd)
        .args(["run", "--bundle", "/nonexistent.yaml", "--export-deny"])
        .arg(r#"{"binery":["/x"]}"#)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(r#"--export-deny {"binery":["/x"]}: unknown field `binery`"#),
        "{err}"
    );
    let out = Command::new(policyd)
        .args([
            "run",
            "--bundle",
            "/nonexistent.yaml",
            "--export-allow",
            "{",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--export-allow {: "));
    let out = Command::new(policyd)
        .args(["run", "--bundle", "/x.yaml", "--export-max-size", "1M"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("stdout is never rotated"), "{err}");
    let out = Command::new(policyd)
        .args([
            "run",
            "--bundle",
            "/x.yaml",
            "--export",
            "/tmp/e",
            "--export-max-size",
            "1Q",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = Command::new(policyd)
        .args([
            "run",
            "--bundle",
            "/x.yaml",
            "--export",
            "/tmp/e",
            "--export-compress",
        ])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "--export-compress needs --export-max-size"
    );
}
