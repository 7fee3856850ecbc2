//! `policyd`: the policyc node runtime.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};
use policy_runtime::daemon::{self, RunOptions, DEFAULT_PIN_DIR};
use policy_runtime::export::{parse_size, ExportTarget, Rotation, DEFAULT_EXPORT_BACKUPS};
use policy_runtime::filter::ExportFilters;
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
// `Run` carries every option; the enum lives once, on the stack of main.
#[allow(clippy::large_enum_variant)]
enum Command {
    /// Enforce and audit a bundle until SIGINT, SIGTERM, SIGHUP or SIGQUIT.
    Run {
        /// PolicyBundle YAML written by `policyc compile`; watched for changes.
        #[arg(
            long,
            value_name = "BUNDLE",
            required_unless_present_any = ["bundle_dir", "kubernetes"],
            conflicts_with_all = ["bundle_dir", "kubernetes"]
        )]
        bundle: Option<PathBuf>,
        /// A directory of bundles (`*.yaml`, `*.yml`), all in force at once
        /// and followed as files are added, replaced and removed.
        #[arg(long, value_name = "DIR", conflicts_with = "kubernetes")]
        bundle_dir: Option<PathBuf>,
        /// Run the PolicyBundle objects of the cluster whose
        /// `spec.nodeSelector` matches this node's labels, all in force at
        /// once, write each one's status for this node, and attribute
        /// processes to pods (`process_exec.process.pod`).
        #[arg(long)]
        kubernetes: bool,
        /// Kubeconfig file for --kubernetes [default: in a pod the service
        /// account, else $KUBECONFIG or ~/.kube/config].
        #[arg(long, value_name = "PATH", requires = "kubernetes")]
        kubeconfig: Option<PathBuf>,
        /// The cgroup v2 mount where --kubernetes finds the pods' containers.
        #[arg(long, value_name = "DIR", default_value = policy_runtime::k8s::DEFAULT_CGROUP_ROOT)]
        cgroup_root: PathBuf,
        /// Where to write events, one JSON object per line: a file (appended
        /// to) or `-` for stdout.
        #[arg(long, value_name = "FILE|-", default_value = "-")]
        export: String,
        /// Rotate the export file before it would grow past this size:
        /// bytes, or with K, M, G, T (powers of 1024), e.g. `100M`. Rotation
        /// happens between lines: no event is ever split across files.
        #[arg(long, value_name = "BYTES", value_parser = parse_size)]
        export_max_size: Option<u64>,
        /// Rotated export files to keep (`FILE.1` newest … `FILE.N`); 0 keeps none.
        #[arg(long, value_name = "N", default_value_t = DEFAULT_EXPORT_BACKUPS, requires = "export_max_size")]
        export_backups: u32,
        /// Gzip rotated export files (`FILE.1.gz` …).
        #[arg(long, requires = "export_max_size")]
        export_compress: bool,
        /// Export only events matching this filter (repeatable: any of them),
        /// a JSON object such as `{"verdict":["kill"],"binary_prefix":["/tmp/"]}`
        /// with fields hook, verdict, namespace, binary, binary_prefix.
        #[arg(long, value_name = "FILTER")]
        export_allow: Vec<String>,
        /// Do not export events matching this filter (repeatable; same
        /// shape as --export-allow). Metrics still count them.
        #[arg(long, value_name = "FILTER")]
        export_deny: Vec<String>,
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
    /// Find which program types, attach types and helpers work on this
    /// kernel (by loading tiny programs) and print, per hook, the strongest
    /// mechanism: can deny, can only kill, audit only. Needs root.
    Probe {
        /// `human` (a table) or `json` (the file `policyc check
        /// --kernel-features` reads).
        #[arg(long, value_enum, default_value_t = ProbeFormat::Human)]
        format: ProbeFormat,
    },
}

/// Output of `policyd probe`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum ProbeFormat {
    Human,
    Json,
}

/// `policyd probe`.
fn probe(format: ProbeFormat) -> ExitCode {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        let _ = writeln!(
            std::io::stderr(),
            "policyd: probe needs root: as another user every program is refused with EPERM"
        );
        return ExitCode::from(1);
    }
    let features = policy_runtime::probe::run();
    let text = match format {
        ProbeFormat::Human => policy_runtime::probe::render(&features),
        ProbeFormat::Json => features.to_json(),
    };
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "policyd: cannot write to stdout: {e}");
            ExitCode::from(1)
        }
    }
}

/// `--metrics-addr`: `None` for `off`. An alias, so that clap does not take
/// the option for an optional one (it always has a value, `off` included).
type MetricsAddr = Option<SocketAddr>;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Probe { format } => probe(format),
        Command::Run {
            bundle,
            bundle_dir,
            kubernetes,
            kubeconfig,
            cgroup_root,
            export,
            export_max_size,
            export_backups,
            export_compress,
            export_allow,
            export_deny,
            node_name,
            pin_dir,
            metrics_addr,
        } => {
            let export = ExportTarget::parse(&export);
            if export_max_size.is_some() && export == ExportTarget::Stdout {
                Cli::command()
                    .error(
                        clap::error::ErrorKind::ArgumentConflict,
                        "--export-max-size rotates an export file: give --export FILE (stdout is never rotated)",
                    )
                    .exit();
            }
            let export_filters = match ExportFilters::parse(&export_allow, &export_deny) {
                Ok(f) => f,
                Err(msg) => {
                    let _ = writeln!(std::io::stderr(), "policyd: {msg}");
                    return ExitCode::from(1);
                }
            };
            let export_rotation = export_max_size.map(|max_size| Rotation {
                max_size,
                backups: export_backups,
                compress: export_compress,
            });
            let node_name = match daemon::node_name(node_name) {
                Ok(n) => n,
                Err(e) => return fail(e),
            };
            let kubernetes = kubernetes.then(|| policy_runtime::k8s::KubeOptions {
                kubeconfig,
                node: node_name.clone(),
                cgroup_root,
            });
            let (bundle, bundle_dir) = match (bundle, bundle_dir) {
                (_, Some(dir)) => (dir, true),
                (Some(file), None) => (file, false),
                (None, None) if kubernetes.is_some() => (PathBuf::new(), false),
                (None, None) => {
                    unreachable!("clap requires --bundle, --bundle-dir or --kubernetes")
                }
            };
            let opts = RunOptions {
                bundle,
                bundle_dir,
                kubernetes,
                export,
                export_rotation,
                export_filters,
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
