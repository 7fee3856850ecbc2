//! Past one kernel mask on a cgroup hook: CIDR rules split into groups by
//! the longest block (`anchor_prefix` keyed by address family and address),
//! enforced with EPERM on real loopback connects.
//!
//! They need root and kernel BTF. Without them they are skipped with a
//! message, unless `CI=true`, where skipping is a failure.

mod common;

use std::io::ErrorKind;
use std::net::{Ipv4Addr, SocketAddrV4, TcpStream};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

/// A loopback port nothing listens on (bound once by us, then released).
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// The error kind of a connect to `addr:port` (every address of
/// 127.0.0.0/8 is loopback).
fn connect(addr: Ipv4Addr, port: u16) -> ErrorKind {
    match TcpStream::connect_timeout(
        &SocketAddrV4::new(addr, port).into(),
        Duration::from_secs(5),
    ) {
        Ok(_) => panic!("{addr}:{port}: nothing listens there"),
        Err(e) => e.kind(),
    }
}

/// This process's connect events to `addr`.
fn events_to(d: &Policyd, addr: Ipv4Addr, want: usize) -> Vec<Value> {
    let end = Instant::now() + Duration::from_secs(20);
    loop {
        let evs: Vec<Value> = d
            .events()
            .into_iter()
            .filter(|e| {
                e["process_connect"]["sock"]["addr"] == addr.to_string()
                    && e["process_connect"]["process"]["pid"] == std::process::id()
            })
            .collect();
        if evs.len() >= want || Instant::now() >= end {
            return evs;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// 5,000 deny rules on /24 blocks of 127.0.0.0/8 for one closed port decide
/// each connect exactly: a block near the start and one in a far group are
/// refused with EPERM, an address in no block reaches the port (refused by
/// the closed port), and the audit rule on 127.0.0.0/8, over every block,
/// stays in the hook's own words and sees all three.
#[test]
fn cidr_rules_past_one_mask_refuse_connects_through_prefix_anchors() {
    if !kernel_tests_enabled("cidr_rules_past_one_mask_refuse_connects_through_prefix_anchors") {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().canonicalize().unwrap();
    let port = closed_port();
    let mut text = String::from("policy blocks {}\n");
    for i in 0..5000 {
        let (b, c) = (1 + i / 256, i % 256);
        text += &format!(
            "rule r{i} on connect {{ when net.daddr in 127.{b}.{c}.0/24 and net.dport == {port} deny }}\n"
        );
    }
    text += &format!(
        "rule loopback on connect {{ when net.daddr in 127.0.0.0/8 and net.dport == {port} audit }}\n"
    );
    let bundle = write_bundle(&dir, "blocks.policy", &text, "blocks");
    let d = Policyd::start(&bundle, &dir, "blocks");
    // r17 (127.1.17.0/24), r4321 (127.17.225.0/24), none (127.200.0.0/24).
    let near = Ipv4Addr::new(127, 1, 17, 9);
    let far = Ipv4Addr::new(127, 17, 225, 1);
    let free = Ipv4Addr::new(127, 200, 0, 1);
    for (addr, rule) in [(near, "r17"), (far, "r4321")] {
        assert_eq!(connect(addr, port), ErrorKind::PermissionDenied, "{addr}");
        let evs = events_to(&d, addr, 1);
        assert_eq!(evs.len(), 1, "{addr}: {evs:#?}");
        assert_eq!(evs[0]["rule"], rule, "{:#}", evs[0]);
        assert_eq!(evs[0]["verdict"], "deny", "{:#}", evs[0]);
    }
    assert_eq!(connect(free, port), ErrorKind::ConnectionRefused, "{free}");
    let evs = events_to(&d, free, 1);
    assert_eq!(evs.len(), 1, "{free}: {evs:#?}");
    assert_eq!(evs[0]["rule"], "loopback", "{:#}", evs[0]);
    assert_eq!(evs[0]["verdict"], "allow", "{:#}", evs[0]);
    d.stop();
}
