//! `policyd probe --format json` on the real kernel: the facts DESIGN §7
//! measured, and consistency between the probes and the chosen mechanisms
//! (not hard-coded to this machine: if LSM loads, the table must choose it).

mod common;

use policy_compiler::kernel_features::{parse, Mechanism};

#[test]
fn probe_json_matches_the_kernel() {
    if !common::kernel_tests_enabled("probe_json_matches_the_kernel") {
        return;
    }
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_policyd"))
        .args(["probe", "--format", "json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let f = parse(&String::from_utf8(out.stdout).unwrap()).expect("parses");
    let probe = |name: &str| {
        f.probes
            .iter()
            .find(|p| p.name == name)
            .unwrap_or_else(|| panic!("no probe {name}"))
    };
    let hook = |name: &str| f.hooks.iter().find(|h| h.hook == name).unwrap();
    // Measured facts (DESIGN §7).
    assert!(probe("raw_tracepoint/sched_process_exec").ok());
    assert!(probe("tracepoint/syscalls/sys_enter_openat").ok());
    assert!(probe("cgroup/connect4").loaded);
    assert!(probe("raw_tracepoint+bpf_send_signal").ok());
    assert_eq!(f.hooks.len(), 8);
    for name in ["lsm/bprm_check_security", "fentry/security_bprm_check"] {
        let p = probe(name);
        assert!(
            p.ok() || (!p.loaded && p.errno == Some(libc::EPERM)),
            "{name}: either works or is refused with EPERM: {p:?}"
        );
    }
    // Consistency of the table with the probes.
    let lsm = probe("lsm/bprm_check_security").ok();
    for h in &f.hooks {
        if lsm {
            assert_eq!(h.mechanism, Mechanism::Lsm, "{}", h.hook);
        } else {
            assert_ne!(h.mechanism, Mechanism::Lsm, "{}", h.hook);
            assert_eq!(h.refused[0].mechanism, Mechanism::Lsm, "{}", h.hook);
            assert_eq!(h.refused[0].errno, probe("lsm/bprm_check_security").errno);
        }
        assert_eq!(h.capability, h.mechanism.capability());
    }
    if !lsm {
        assert_eq!(hook("exec").mechanism, Mechanism::TracepointKill);
        assert_eq!(
            hook("exec").program.as_deref(),
            Some("raw_tracepoint/sched_process_exec")
        );
        let connect = hook("connect");
        assert_eq!(
            connect.mechanism == Mechanism::CgroupSockAddr,
            probe("cgroup/connect4").ok()
        );
        assert_eq!(
            hook("open").mechanism == Mechanism::TracepointKill,
            probe("tracepoint+bpf_send_signal").ok()
        );
    }
}
