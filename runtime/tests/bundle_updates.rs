//! Bundle updates on the real kernel: `policyd run --bundle FILE` follows
//! the file, swaps the kernel tables atomically, refuses a bad file and
//! keeps the bundle in force, and every event carries the generation that
//! decided it.
//!
//! Only binaries copied into temp dirs are ever killed. Waits use deadlines,
//! never timing assertions.

mod common;

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, ExitStatus};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

/// Bundle A audits (and allows) `victim`; bundle B kills it.
fn bundles(victim: &Path) -> (String, String) {
    let a = format!(
        "policy swap_a {{ description = \"audit the victim\" }}\n\
         rule victim_seen on exec {{ when process.binary == \"{}\" audit severity info \"victim ran\" }}\n",
        victim.display()
    );
    let b = format!(
        "policy swap_b {{ description = \"kill the victim\" }}\n\
         rule victim_denied on exec {{ when process.binary == \"{}\" deny }}\n",
        victim.display()
    );
    (
        bundle_yaml("swap-a.policy", &a, "swap-a"),
        bundle_yaml("swap-b.policy", &b, "swap-b"),
    )
}

/// As [`bundles`], and A audits connects to 127.0.0.1:`port` while B
/// refuses them (EPERM).
fn bundles_with_port(victim: &Path, port: u16) -> (String, String) {
    let a = format!(
        "policy swap_a {{ description = \"audit the victim\" }}\n\
         rule victim_seen on exec {{ when process.binary == \"{}\" audit severity info \"victim ran\" }}\n\
         rule port_seen on connect {{ when net.daddr == 127.0.0.1 and net.dport == {port} audit }}\n",
        victim.display()
    );
    let b = format!(
        "policy swap_b {{ description = \"kill the victim\" }}\n\
         rule victim_denied on exec {{ when process.binary == \"{}\" deny }}\n\
         rule port_denied on connect {{ when net.daddr == 127.0.0.1 and net.dport == {port} deny }}\n",
        victim.display()
    );
    (
        bundle_yaml("swap-a.policy", &a, "swap-a"),
        bundle_yaml("swap-b.policy", &b, "swap-b"),
    )
}

/// A loopback port nothing listens on (bound once by us, then released).
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// Connect events of this process to `port`, in ring-buffer order.
fn port_events(d: &Policyd, port: u16) -> Vec<Value> {
    d.events()
        .into_iter()
        .filter(|e| {
            e["process_connect"]["sock"]["port"] == port
                && e["process_connect"]["process"]["pid"] == std::process::id()
        })
        .collect()
}

fn victim_events(d: &Policyd, victim: &Path) -> Vec<Value> {
    d.events()
        .into_iter()
        .filter(|e| e["process_exec"]["process"]["binary"] == victim.to_str().unwrap())
        .collect()
}

fn wait_applied(d: &mut Policyd, generation: u64) -> String {
    let want = format!("applied: generation={generation} ");
    d.wait_stderr(&format!("generation {generation} applied"), |l| {
        l.contains(&want)
    })
}

fn assert_a(e: &Value) {
    assert_eq!(e["verdict"], "allow", "{e:#}");
    assert_eq!(e["audit"], true, "{e:#}");
    assert_eq!(e["rule"], "victim_seen", "{e:#}");
    assert_eq!(e["bundle"]["name"], "swap-a", "{e:#}");
}

fn assert_b(e: &Value) {
    assert_eq!(e["verdict"], "kill", "{e:#}");
    assert_eq!(e["rule"], "victim_denied", "{e:#}");
    assert_eq!(e["bundle"]["name"], "swap-b", "{e:#}");
}

fn killed(s: &ExitStatus) -> bool {
    s.signal() == Some(libc::SIGKILL)
}

#[test]
fn editing_the_bundle_file_swaps_and_a_bad_file_is_refused() {
    if !kernel_tests_enabled("editing_the_bundle_file_swaps_and_a_bad_file_is_refused") {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().canonicalize().unwrap();
    let victim = dir.join("victim");
    std::fs::copy("/usr/bin/touch", &victim).unwrap();
    let (a, b) = bundles(&victim);
    let bundle = dir.join("bundle.yaml");
    std::fs::write(&bundle, &a).unwrap();
    let mut d = Policyd::start(&bundle, &dir, "swap");
    let addr = d.metrics_addr();

    // Under A: runs, audited, generation 1.
    let marker = dir.join("m1");
    let (pid, status) = run(Command::new(&victim).arg(&marker));
    assert!(status.success(), "victim failed under A: {status}");
    assert!(marker.exists());
    let evs = d.wait_events_of(pid);
    assert_eq!(evs.len(), 1, "{evs:#?}");
    assert_a(&evs[0]);
    assert_eq!(evs[0]["generation"], 1, "{:#}", evs[0]);

    // Edit the file (rename over it, as editors do): B is in force.
    replace_file(&bundle, &b);
    let line = wait_applied(&mut d, 2);
    assert!(line.contains("bundle=swap-b"), "{line}");
    let marker = dir.join("m2");
    let (pid, status) = run(Command::new(&victim).arg(&marker));
    assert!(killed(&status), "victim not killed under B: {status}");
    assert!(!marker.exists(), "the victim ran user code under B");
    let evs = d.wait_events_of(pid);
    assert_eq!(evs.len(), 1, "{evs:#?}");
    assert_b(&evs[0]);
    assert_eq!(evs[0]["generation"], 2, "{:#}", evs[0]);

    // A malformed file: refused, reported once, B stays in force.
    replace_file(
        &bundle,
        "apiVersion: policyc.dev/v1alpha1\nkind: PolicyBundle\nspec: [",
    );
    let line = d.wait_stderr("the refusal", |l| l.contains("refused"));
    assert!(
        line.contains(bundle.to_str().unwrap()) && line.contains("keeping generation 2"),
        "{line}"
    );
    let marker = dir.join("m3");
    let (pid, status) = run(Command::new(&victim).arg(&marker));
    assert!(
        killed(&status),
        "victim not killed after the refusal: {status}"
    );
    assert!(!marker.exists());
    let evs = d.wait_events_of(pid);
    assert_eq!(evs.len(), 1, "{evs:#?}");
    assert_b(&evs[0]);
    assert_eq!(evs[0]["generation"], 2, "{:#}", evs[0]);

    // A digest mismatch (content changed after compilation) is refused too.
    let tampered = b.replacen("victim_denied", "victim_tamper", 1);
    assert_ne!(tampered, b);
    replace_file(&bundle, &tampered);
    let line = d.wait_stderr("the second refusal", |l| {
        l.contains("refused") && l.contains("digest mismatch")
    });
    assert!(line.contains("keeping generation 2"), "{line}");

    let (_, text) = http_get(addr, "/metrics").unwrap();
    let has = |line: &str| assert!(text.lines().any(|l| l == line), "no `{line}` in:\n{text}");
    has(r#"policyd_bundle_reloads_total{result="applied"} 1"#);
    has(r#"policyd_bundle_reloads_total{result="refused"} 2"#);
    has("policyd_policy_load_generation 2");
    let loaded = metric_lines(&text, "policyd_policy_loaded");
    assert_eq!(loaded.len(), 1, "{loaded:?}");
    assert!(
        loaded[0].starts_with(r#"policyd_policy_loaded{bundle="swap-b","#)
            && loaded[0].ends_with(" 1"),
        "{loaded:?}"
    );
    d.stop();
}

#[test]
fn swaps_under_load_never_mix_versions_nor_let_a_denied_run_through() {
    if !kernel_tests_enabled("swaps_under_load_never_mix_versions_nor_let_a_denied_run_through") {
        return;
    }
    const SWAPS: u64 = 20;
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().canonicalize().unwrap();
    let victim = dir.join("victim");
    std::fs::copy("/usr/bin/true", &victim).unwrap();
    let port = closed_port();
    let (a, b) = bundles_with_port(&victim, port);
    let bundle = dir.join("bundle.yaml");
    std::fs::write(&bundle, &a).unwrap();
    let mut d = Policyd::start(&bundle, &dir, "swapload");

    // The exec loop: (pid, exit status) of every run.
    let stop = Arc::new(AtomicBool::new(false));
    let runs = Arc::new(Mutex::new(Vec::<(u32, ExitStatus)>::new()));
    let looper = {
        let (stop, runs, victim) = (stop.clone(), runs.clone(), victim.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let r = run(&mut Command::new(&victim));
                runs.lock().unwrap().push(r);
            }
        })
    };
    // The connect loop: the error kind of every connect (refused by the
    // closed port under A, EPERM under B).
    let connects = Arc::new(Mutex::new(Vec::<std::io::ErrorKind>::new()));
    let connecter = {
        let (stop, connects) = (stop.clone(), connects.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let kind = match std::net::TcpStream::connect(("127.0.0.1", port)) {
                    Ok(_) => std::io::ErrorKind::Other, // nothing listens: never expected
                    Err(e) => e.kind(),
                };
                connects.lock().unwrap().push(kind);
                std::thread::sleep(Duration::from_millis(1));
            }
        })
    };
    let runs_so_far = || runs.lock().unwrap().len();
    // Generation g is A when odd (1 is A), B when even.
    for generation in 2..=SWAPS + 1 {
        replace_file(&bundle, if generation % 2 == 0 { &b } else { &a });
        wait_applied(&mut d, generation);
        // Counted from the switch, so that this generation decides some.
        let before = runs_so_far();
        // Let some execs happen under this generation.
        let end = Instant::now() + DEADLINE;
        while runs_so_far() < before + 20 {
            assert!(Instant::now() < end, "the exec loop is stuck");
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    stop.store(true, Ordering::Relaxed);
    looper.join().unwrap();
    connecter.join().unwrap();
    let runs = runs.lock().unwrap().clone();
    let connects = connects.lock().unwrap().clone();

    // Every connect has its event (A audits, B refuses: both emit), in
    // order (one thread connects); its generation says what happened.
    let end = Instant::now() + DEADLINE;
    let cevents = loop {
        let evs = port_events(&d, port);
        if evs.len() >= connects.len() || Instant::now() >= end {
            break evs;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(cevents.len(), connects.len(), "one event per connect");
    let mut connect_generations = std::collections::BTreeSet::new();
    for (kind, e) in connects.iter().zip(&cevents) {
        let generation = e["generation"].as_u64().unwrap_or_else(|| panic!("{e:#}"));
        connect_generations.insert(generation);
        if generation % 2 == 1 {
            assert_eq!(
                (e["verdict"].as_str(), e["rule"].as_str()),
                (Some("allow"), Some("port_seen")),
                "{e:#}"
            );
            assert_eq!(*kind, std::io::ErrorKind::ConnectionRefused, "{e:#}");
        } else {
            assert_eq!(
                (e["verdict"].as_str(), e["rule"].as_str()),
                (Some("deny"), Some("port_denied")),
                "{e:#}"
            );
            assert_eq!(*kind, std::io::ErrorKind::PermissionDenied, "{e:#}");
        }
    }
    assert!(
        connect_generations.len() > 1,
        "connects ran under several generations: {connect_generations:?}"
    );

    // Every run has its event (A audits, B kills: both emit).
    let end = Instant::now() + DEADLINE;
    let events = loop {
        let evs = victim_events(&d, &victim);
        if evs.len() >= runs.len() || Instant::now() >= end {
            break evs;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    // Runs are sequential, so their events are in run order (one ring
    // buffer); pids are compared too (they wrap during the test).
    assert_eq!(
        events.len(),
        runs.len(),
        "one event per run (A audits, B kills)"
    );
    let mut generations = std::collections::BTreeSet::new();
    let (mut allowed, mut killed_runs) = (0, 0);
    for ((pid, status), e) in runs.iter().zip(&events) {
        assert_eq!(e["process_exec"]["process"]["pid"], *pid, "{e:#}");
        let generation = e["generation"].as_u64().unwrap_or_else(|| panic!("{e:#}"));
        assert!((1..=SWAPS + 1).contains(&generation), "{e:#}");
        generations.insert(generation);
        if generation % 2 == 1 {
            // A: allowed and audited, and the run was not killed.
            assert_a(e);
            assert!(
                status.success(),
                "run {pid} under A (generation {generation}) ended {status}"
            );
            allowed += 1;
        } else {
            // B: killed, and the process did not survive.
            assert_b(e);
            assert!(
                killed(status),
                "run {pid} survived while generation {generation} (B) was in force: {status}\n{e:#}"
            );
            killed_runs += 1;
        }
    }
    assert_eq!(
        generations.len() as u64,
        SWAPS + 1,
        "every generation decided some run: {generations:?}"
    );
    eprintln!(
        "{} runs over {} generations: {allowed} allowed under A, {killed_runs} killed under B",
        runs.len(),
        SWAPS + 1
    );
    let stderr = d.stop();
    assert_eq!(exit_stat(&stderr, "ringbuf_drops"), 0);
    assert_eq!(exit_stat(&stderr, "decode_errors"), 0);
    let swaps: Vec<&String> = stderr.iter().filter(|l| l.contains(" applied: ")).collect();
    assert_eq!(swaps.len() as u64, SWAPS, "{swaps:#?}");
}

/// Swaps between tables of different layouts: an anchored bundle (5,000
/// kill rules on temp binaries, past one mask) and a flat one (one audit
/// rule), back and forth: each generation decides with its own layout, and
/// the events name the rule of the generation that decided.
#[test]
fn swaps_between_anchored_and_flat_tables() {
    if !kernel_tests_enabled("swaps_between_anchored_and_flat_tables") {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().canonicalize().unwrap();
    let victim = dir.join("b4321");
    std::fs::copy("/usr/bin/touch", &victim).unwrap();
    let d_str = dir.to_str().unwrap();
    let mut big = String::from("policy swap_big {}\n");
    for i in 0..5000 {
        big += &format!("rule r{i} on exec {{ when process.binary == \"{d_str}/b{i}\" kill }}\n");
    }
    let big = bundle_yaml("big.policy", &big, "swap-big");
    let (small, _) = bundles(&victim);
    let bundle = dir.join("bundle.yaml");
    std::fs::write(&bundle, &big).unwrap();
    let mut d = Policyd::start(&bundle, &dir, "anchorswap");
    for generation in 1..=5u64 {
        if generation > 1 {
            replace_file(&bundle, if generation % 2 == 1 { &big } else { &small });
            wait_applied(&mut d, generation);
        }
        let marker = dir.join(format!("m{generation}"));
        let (pid, status) = run(Command::new(&victim).arg(&marker));
        let evs = d.wait_events_of(pid);
        assert_eq!(evs.len(), 1, "{evs:#?}");
        assert_eq!(evs[0]["generation"], generation, "{:#}", evs[0]);
        if generation % 2 == 1 {
            assert!(killed(&status), "generation {generation}: {status}");
            assert!(!marker.exists());
            assert_eq!(evs[0]["rule"], "r4321", "{:#}", evs[0]);
            assert_eq!(evs[0]["verdict"], "kill", "{:#}", evs[0]);
        } else {
            assert!(status.success(), "generation {generation}: {status}");
            assert!(marker.exists());
            assert_a(&evs[0]);
        }
    }
    d.stop();
}
