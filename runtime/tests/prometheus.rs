//! A real Prometheus (Debian's `prometheus` package) scrapes a real
//! `policyd` on loopback: after N real `sudo -n true`, the per-rule counter
//! read through Prometheus's HTTP query API is exactly N.
//!
//! Needs root, kernel BTF and `/usr/bin/prometheus`; skipped with a message
//! without them, unless `CI=true`, where that is a failure. Waits are
//! deadlines, never timing assertions.

mod common;

use std::ffi::OsStr;
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

const PROMETHEUS: &str = "/usr/bin/prometheus";
/// How many sudo invocations the test counts.
const N: u64 = 5;

/// A Prometheus server; killed when dropped.
struct Prometheus {
    child: Child,
    addr: SocketAddr,
    log: std::path::PathBuf,
}

impl Prometheus {
    /// Start Prometheus on a free loopback port, storing in `dir`, scraping
    /// `target` every second.
    fn start(dir: &Path, target: SocketAddr) -> Prometheus {
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
                 scrape_configs:\n  - job_name: policyd\n    static_configs:\n      - targets: ['{target}']\n"
            ),
        )
        .unwrap();
        let storage = dir.join("data");
        let log = dir.join("prometheus.log");
        // A free port: bind :0, read it, release it. Prometheus binds it
        // right after; a collision shows as Prometheus exiting, reported below.
        let addr = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let child = Command::new(PROMETHEUS)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", storage.display()))
            .arg(format!("--web.listen-address={addr}"))
            .arg("--log.level=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("spawn prometheus");
        Prometheus { child, addr, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Wait until Prometheus answers `/-/ready`.
    fn wait_ready(&mut self) {
        let end = Instant::now() + DEADLINE;
        loop {
            if let Ok((200, _)) = http_get(self.addr, "/-/ready") {
                return;
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("prometheus exited ({status}):\n{}", self.log());
            }
            assert!(
                Instant::now() < end,
                "prometheus not ready within {DEADLINE:?}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The value of the single sample of instant `query`, if there is one.
    fn query(&self, query: &str) -> Option<f64> {
        let path = format!("/api/v1/query?query={}", url_encode(query));
        let (status, body) = http_get(self.addr, &path).ok()?;
        assert_eq!(status, 200, "{query}: {body}");
        let v: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{body}: {e}"));
        assert_eq!(v["status"], "success", "{query}: {body}");
        let result = v["data"]["result"].as_array()?;
        assert!(result.len() <= 1, "{query}: more than one series: {body}");
        result.first()?["value"][1].as_str()?.parse().ok()
    }

    /// Poll `query` until `want` holds for its value (deadline); the last value.
    fn wait_for(&self, query: &str, want: impl Fn(f64) -> bool) -> f64 {
        let end = Instant::now() + DEADLINE;
        loop {
            let v = self.query(query);
            if let Some(v) = v.filter(|&v| want(v)) {
                return v;
            }
            assert!(
                Instant::now() < end,
                "`{query}` is {v:?} after {DEADLINE:?}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[test]
fn prometheus_counts_every_sudo_invocation_per_rule() {
    if !kernel_tests_enabled_with(
        "prometheus_counts_every_sudo_invocation_per_rule",
        &[(
            PROMETHEUS,
            "no /usr/bin/prometheus (apt-get install prometheus)",
        )],
    ) {
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
    let mut d = Policyd::spawn_with(
        &bundle,
        &test_pin_dir("prom"),
        dir.join("events.jsonl").as_os_str(),
        Stdio::null(),
        &["--metrics-addr", "127.0.0.1:0"],
    );
    d.wait_ready();
    let metrics = d.metrics_addr();
    assert!(metrics.ip().is_loopback(), "{metrics}");
    assert_eq!(http_get(metrics, "/healthz").unwrap().0, 200);
    assert_eq!(http_get(metrics, "/readyz").unwrap().0, 200);

    let mut prom = Prometheus::start(&dir, metrics);
    prom.wait_ready();
    // Scraped, and the rule's series exists (at 0) before any sudo.
    prom.wait_for(r#"up{job="policyd"}"#, |v| v == 1.0);
    let rule = r#"policyd_rule_matches_total{policy="sudo_audit",rule="sudo_invoked"}"#;
    assert_eq!(prom.wait_for(rule, |_| true), 0.0);

    for _ in 0..N {
        let (pid, status) = run(Command::new(SUDO).args(["-n", "true"]).current_dir(&dir));
        // sudo -n true exits 0 as root; as anyone else it may refuse, and
        // is audited all the same.
        let _ = status;
        d.wait_events_of(pid);
    }
    let got = prom.wait_for(rule, |v| v >= N as f64);
    assert_eq!(got, N as f64, "{rule}");
    // Other views of the same events, and of the kernel.
    assert_eq!(
        prom.wait_for(
            r#"policyd_events_total{hook="exec",verdict="allow"}"#,
            |v| v >= N as f64
        ),
        N as f64
    );
    assert_eq!(
        prom.wait_for(
            r#"policyd_binary_events_total{binary="/usr/bin/sudo",verdict="allow"}"#,
            |v| v >= N as f64
        ),
        N as f64
    );
    let loaded = r#"policyd_policy_loaded{bundle="sudo-audit"}"#;
    assert_eq!(prom.wait_for(loaded, |_| true), 1.0);
    assert!(prom.wait_for("policyd_bpf_events_total", |v| v >= N as f64) >= N as f64);
    assert_eq!(
        prom.wait_for("policyd_bpf_ringbuf_drops_total", |_| true),
        0.0
    );
    // Run-time statistics are on while policyd runs: the program has runs
    // (at least the N sudo execs) and a cost.
    assert_eq!(
        prom.wait_for("policyd_bpf_run_stats_enabled", |_| true),
        1.0
    );
    prom.wait_for("policyd_bpf_program_runs_total", |v| v >= N as f64);
    prom.wait_for("policyd_bpf_program_run_time_seconds_total", |v| v > 0.0);

    drop(prom);
    let stderr = d.stop();
    assert_eq!(exit_stat(&stderr, "events"), N, "{stderr:#?}");
    assert_eq!(exit_stat(&stderr, "ringbuf_drops"), 0, "{stderr:#?}");
}

#[test]
fn metrics_can_be_turned_off_and_a_busy_port_is_refused() {
    if !kernel_tests_enabled("metrics_can_be_turned_off_and_a_busy_port_is_refused") {
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
    let mut d = Policyd::spawn_with(
        &bundle,
        &test_pin_dir("metrics-off"),
        dir.join("off.jsonl").as_os_str(),
        Stdio::null(),
        &["--metrics-addr", "off"],
    );
    let line = d.wait_stderr("the readiness line", |l| l.starts_with("policyd: ready"));
    assert!(line.contains(" metrics=off run_stats=off"), "{line}");
    d.stop();

    let busy = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = busy.local_addr().unwrap().to_string();
    let pin_dir = test_pin_dir("metrics-busy");
    let _guard = PinDirGuard(pin_dir.clone());
    let d = Policyd::spawn_with(
        &bundle,
        &pin_dir,
        OsStr::new("-"),
        Stdio::null(),
        &["--metrics-addr", &addr],
    );
    let (status, stderr) = d.wait_exit();
    let stderr = unwrapped(&stderr);
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("cannot serve metrics on {addr}"))
            && !stderr.contains("policyd: ready")
            && !stderr.contains("panicked"),
        "{stderr}"
    );
}
