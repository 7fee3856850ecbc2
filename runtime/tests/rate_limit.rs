//! `rate N per PERIOD` on the real kernel: `policyd` exports at most N events
//! of the rule per window, counts the rest in
//! `policyd_events_throttled_total`, still enforces every exec, and on
//! SIGTERM writes the summary of the window that is still open.
//!
//! Needs root and kernel BTF (skipped otherwise, a failure under `CI=true`).
//! Only rules on binaries copied into a temp dir are installed.

mod common;

use std::os::unix::process::ExitStatusExt;
use std::process::Command;
use std::time::Instant;

use common::*;

fn metric(body: &str, line_prefix: &str) -> Option<u64> {
    body.lines()
        .find_map(|l| l.strip_prefix(line_prefix))
        .and_then(|v| v.trim().parse().ok())
}

#[test]
fn rate_throttles_the_export_and_summarises_on_shutdown() {
    if !kernel_tests_enabled("rate_throttles_the_export_and_summarises_on_shutdown") {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().canonicalize().unwrap();
    let bin = dir.join("bin");
    std::fs::create_dir(&bin).unwrap();
    let noisy = bin.join("noisy");
    let victim = bin.join("victim");
    std::fs::copy("/bin/true", &noisy).unwrap();
    std::fs::copy("/bin/true", &victim).unwrap();
    let policy = format!(
        "policy rate_test {{ description = \"rate limits\" }}\n\
         rule noisy on exec {{\n  when process.binary == \"{noisy}\"\n  audit \"noisy ran\"\n  rate 3 per 1m\n}}\n\
         rule victim on exec {{\n  when process.binary == \"{victim}\"\n  kill\n  audit\n  rate 1 per 1m\n}}\n",
        noisy = noisy.display(),
        victim = victim.display(),
    );
    let bundle = write_bundle(&dir, "rate.policy", &policy, "rate-test");
    let mut d = Policyd::start(&bundle, &dir, "rate");
    let addr = d.metrics_addr();

    const N: u64 = 10;
    let mut pids = Vec::new();
    for _ in 0..N {
        let (pid, status) = run(&mut Command::new(&noisy));
        assert!(status.success(), "{status}");
        pids.push(pid);
    }
    // Throttling never weakens enforcement: every victim exec is killed.
    for _ in 0..3 {
        let (_, status) = run(&mut Command::new(&victim));
        assert_eq!(status.signal(), Some(libc::SIGKILL), "{status}");
    }

    let throttled = "policyd_events_throttled_total{policy=\"rate_test\",rule=\"noisy\"} ";
    let throttled_victim = "policyd_events_throttled_total{policy=\"rate_test\",rule=\"victim\"} ";
    let matches = "policyd_rule_matches_total{policy=\"rate_test\",rule=\"noisy\"} ";
    let end = Instant::now() + DEADLINE;
    let body = loop {
        let (status, body) = http_get(addr, "/metrics").unwrap();
        assert_eq!(status, 200);
        if metric(&body, throttled) == Some(N - 3) && metric(&body, throttled_victim) == Some(2) {
            break body;
        }
        assert!(
            Instant::now() < end,
            "throttled events not counted within {DEADLINE:?}:\n{body}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    // Metrics count every event, throttled or not.
    assert_eq!(metric(&body, matches), Some(N), "{body}");

    let events = d.events();
    let of = |rule: &str| -> Vec<&serde_json::Value> {
        events
            .iter()
            .filter(|e| e.get("process_exec").is_some() && e["rule"] == rule)
            .collect()
    };
    let noisy_events = of("noisy");
    assert_eq!(noisy_events.len(), 3, "{events:#?}");
    let exported: Vec<u64> = noisy_events
        .iter()
        .map(|e| e["process_exec"]["process"]["pid"].as_u64().unwrap())
        .collect();
    let first3: Vec<u64> = pids[..3].iter().map(|&p| u64::from(p)).collect();
    assert_eq!(exported, first3, "the first 3 of the window are exported");
    let victim_events = of("victim");
    assert_eq!(victim_events.len(), 1, "{events:#?}");
    assert_eq!(victim_events[0]["verdict"], "kill");
    // The 1m window is still open: no summary yet.
    assert!(
        events.iter().all(|e| e.get("throttled").is_none()),
        "{events:#?}"
    );

    let export = d.export.clone();
    let stderr = d.stop();
    assert_eq!(exit_stat(&stderr, "export_errors"), 0, "{stderr:#?}");
    let events: Vec<serde_json::Value> = std::fs::read_to_string(&export)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
        .collect();
    let summaries: Vec<&serde_json::Value> = events
        .iter()
        .filter(|e| e.get("throttled").is_some())
        .collect();
    assert_eq!(
        summaries.len(),
        2,
        "one summary per throttled rule: {events:#?}"
    );
    let summary_of = |rule: &str| {
        *summaries
            .iter()
            .find(|s| s["throttled"]["rule"] == rule)
            .unwrap_or_else(|| panic!("no summary for {rule}: {events:#?}"))
    };
    let s = summary_of("noisy");
    assert_eq!(s["throttled"]["policy"], "rate_test", "{s:#}");
    assert_eq!(s["throttled"]["suppressed"], N - 3, "{s:#}");
    assert_eq!(s["node_name"], "test-node");
    assert_eq!(s["bundle"]["name"], "rate-test");
    assert!(s["bundle"]["digest"]
        .as_str()
        .unwrap()
        .starts_with("sha256:"));
    assert_eq!(s["generation"], 1);
    let time = |v: &serde_json::Value| {
        chrono::DateTime::parse_from_rfc3339(v.as_str().unwrap())
            .unwrap_or_else(|e| panic!("{v}: {e}"))
    };
    let since = time(&s["throttled"]["since"]);
    let until = time(&s["throttled"]["until"]);
    assert!(since <= until, "{s:#}");
    assert!(
        until - since < chrono::Duration::seconds(60),
        "flushed at shutdown, before the window's end: {s:#}"
    );
    assert_eq!(summary_of("victim")["throttled"]["suppressed"], 2);
    // Still exactly 3 exported events of the rule after shutdown.
    let exported = events
        .iter()
        .filter(|e| e.get("process_exec").is_some() && e["rule"] == "noisy")
        .count();
    assert_eq!(exported, 3, "{events:#?}");
}
