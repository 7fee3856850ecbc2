//! policy-runtime: the node runtime of policyc.
//!
//! `policyd` loads a [`PolicyBundle`](policy_compiler::bundle::PolicyBundle)
//! into the kernel with eBPF and exports the events its rules audit or
//! enforce. Modules, in the order data flows:
//!
//! - [`tables`]: bundle exec tables → map contents (pure);
//! - [`loader`]: load `bpf-templates/exec.bpf.c` with aya, fill maps, attach, pin;
//! - [`event`]: decode ring-buffer records (pure);
//! - [`decision`]: name verdict and rules from the matched mask (pure);
//! - [`export`]: the JSON line shape and its writer (with size rotation);
//! - [`filter`]: `--export-allow` / `--export-deny` filters (pure);
//! - [`throttle`]: `rate N per PERIOD`, per-rule export windows (pure);
//! - [`pins`]: the pin directory's lock and checks;
//! - [`probe`]: `policyd probe`, kernel features and the mechanism per hook;
//! - [`metrics`]: Prometheus metrics, `/metrics`, `/healthz`, `/readyz`;
//! - [`reload`]: watching the bundle file or directory, generations of bundles;
//! - [`k8s`]: `--kubernetes`: PolicyBundle objects, status per node, pod attribution;
//! - [`merge`]: several bundles' exec tables as one (pure);
//! - [`daemon`]: `policyd run`, tying it together with tokio;
//! - [`abi`], [`clock`]: the kernel ABI mirror and time conversion.

/// Print `policyd: …` on stderr, ignoring errors: after SIGHUP the terminal
/// may be gone, and `eprintln!` would panic.
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::say_args(format_args!($($arg)*))
    };
}

#[doc(hidden)]
pub fn say_args(args: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr().lock(), "policyd: {args}");
}

pub mod abi;
pub mod classify;
pub mod clock;
pub mod daemon;
pub mod decision;
pub mod event;
pub mod export;
pub mod filter;
pub mod k8s;
pub mod loader;
pub mod merge;
pub mod metrics;
pub mod pins;
pub mod probe;
pub mod reload;
pub mod tables;
pub mod throttle;
