//! `policyd`: the policyc node runtime.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use policy_runtime::daemon::{self, RunOptions, DEFAULT_PIN_DIR};
use policy_runtime::export::ExportTarget;
use policy_runtime::metrics::{parse_metrics_addr, DEFAULT_METRICS_ADDR};
use std::net::SocketAddr;

/// Load compiled policy bundles into the kernel and export their decisions.
#[derive(Debug, Parser)]
#[command(name = "policyd", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Enforce and audit a bundle until SIGINT, SIGTERM, SIGHUP or SIGQUIT.
    Run {
        /// PolicyBundle YAML written by `policyc compile`.
        #[arg(long, value_name = "BUNDLE")]
        bundle: PathBuf,
        /// Where to write events, one JSON object per line: a file (appended
        /// to) or `-` for stdout.
        #[arg(long, value_name = "FILE|-", default_value = "-")]
        export: String,
        /// `node_name` of events, not empty [default: $NODE_NAME, else the hostname].
        #[arg(long, value_name = "NAME")]
        node_name: Option<String>,
        /// Directory for map pins, on a bpf filesystem (missing parents are
        /// created); one policyd per directory.
        #[arg(long, value_name = "DIR", default_value = DEFAULT_PIN_DIR)]
        pin_dir: PathBuf,
        /// Serve Prometheus metrics on /metrics, and /healthz and /readyz,
        /// at this address; `off` disables them.
        #[arg(long, value_name = "ADDR|off", default_value = DEFAULT_METRICS_ADDR, value_parser = parse_metrics_addr)]
        metrics_addr: MetricsAddr,
    },
}

/// `--metrics-addr`: `None` for `off`. An alias, so that clap does not take
/// the option for an optional one (it always has a value, `off` included).
type MetricsAddr = Option<SocketAddr>;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run {
            bundle,
            export,
            node_name,
            pin_dir,
            metrics_addr,
        } => {
            let node_name = match daemon::node_name(node_name) {
                Ok(n) => n,
                Err(e) => return fail(e),
            };
            let opts = RunOptions {
                bundle,
                export: ExportTarget::parse(&export),
                node_name,
                pin_dir,
                metrics_addr,
            };
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = writeln!(
                        std::io::stderr(),
                        "policyd: cannot start the async runtime: {e}"
                    );
                    return ExitCode::from(1);
                }
            };
            match runtime.block_on(daemon::run(opts)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => fail(e),
            }
        }
    }
}

/// Report `e` on stderr (never panicking: stderr may be gone) and exit 1.
fn fail(e: daemon::RunError) -> ExitCode {
    let _ = writeln!(std::io::stderr(), "{:?}", miette::Report::new(e));
    ExitCode::from(1)
}
