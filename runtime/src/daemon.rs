//! `policyd run`: preflight checks, load, attach, event loop, shutdown.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use aya::maps::{MapData, RingBuf};
use policy_compiler::bundle::{BundleError, Hook, PolicyBundle};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::signal::unix::{signal, SignalKind};

use crate::clock::boot_to_unix_offset_ns;
use crate::decision::decide_terms;
use crate::event::KernelEvent;
use crate::export::{
    build, build_throttled, BundleRef, ExportError, ExportErrors, ExportTarget, Exporter, Rotation,
};
use crate::filter::{EventKey, ExportFilters};
use crate::loader::{map_sizes, LoadError, PolicyHooks, RunStats};
use crate::metrics::{self, Metrics, KERNEL_REFRESH, NO_NAMESPACE};
use crate::pins::{self, PinError, PinLock, PinPlan};
use crate::reload::{self, BundleWatch, Version, Versions};
use crate::tables::TablesError;
use crate::throttle::{BundleInfo, Summary, Throttle};

/// Where the kernel exposes its BTF; CO-RE relocations need it.
pub const KERNEL_BTF: &str = "/sys/kernel/btf/vmlinux";
/// Default directory for map pins.
pub const DEFAULT_PIN_DIR: &str = "/sys/fs/bpf/policyd";

/// Options of `policyd run`.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The PolicyBundle YAML file (with `bundle_dir`: the directory).
    pub bundle: PathBuf,
    /// `--bundle-dir`: `bundle` is a directory whose `*.yaml`/`*.yml`
    /// bundles are all in force at once (see [`reload::DirWatch`]).
    pub bundle_dir: bool,
    /// `--kubernetes`: bundles are `PolicyBundle` objects selected for this
    /// node (`bundle` is unused; see [`crate::k8s::KubeWatch`]).
    pub kubernetes: Option<crate::k8s::KubeOptions>,
    /// Where events go.
    pub export: ExportTarget,
    /// Size rotation of an export file (`--export-max-size` …); `None`: the
    /// file grows.
    pub export_rotation: Option<Rotation>,
    /// `--export-allow` / `--export-deny`.
    pub export_filters: ExportFilters,
    /// `node_name` of every event; not empty.
    pub node_name: String,
    /// Directory for map pins; used only when it is on a bpf filesystem.
    /// One `policyd` per pin directory (see [`crate::pins`]).
    pub pin_dir: PathBuf,
    /// Where to serve `/metrics`, `/healthz` and `/readyz`; `None` disables
    /// them (and BPF run-time statistics).
    pub metrics_addr: Option<SocketAddr>,
}

/// Why `policyd run` stopped with an error. Every variant exits with status 1.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum RunError {
    /// Not running as root.
    #[error("policyd must run as root to load BPF programs (running as euid {euid})")]
    #[diagnostic(
        code(policyd::not_root),
        help("run it as root, e.g. `sudo policyd run --bundle …`")
    )]
    NotRoot {
        /// The effective uid.
        euid: u32,
    },
    /// No kernel BTF.
    #[error("kernel BTF not found at {KERNEL_BTF}")]
    #[diagnostic(
        code(policyd::no_btf),
        help("policyd's BPF programs are CO-RE: run a kernel built with CONFIG_DEBUG_INFO_BTF=y")
    )]
    NoBtf,
    /// `--node-name` is empty.
    #[error("the node name is empty")]
    #[diagnostic(
        code(policyd::empty_node_name),
        help("give --node-name a name, or leave it out to use $NODE_NAME or the hostname")
    )]
    EmptyNodeName,
    /// The bundle file cannot be read.
    #[error("cannot read bundle {path}")]
    #[diagnostic(code(policyd::bundle_read))]
    ReadBundle {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// The bundle is malformed or fails validation.
    #[error("bundle {path} is refused")]
    #[diagnostic(code(policyd::bundle_invalid))]
    Bundle {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        #[diagnostic_source]
        source: BundleError,
    },
    /// The valid bundles of `--bundle-dir` cannot be merged at start.
    #[error("the bundles in {dir} cannot be loaded together: {message}")]
    #[diagnostic(
        code(policyd::bundle_dir),
        help("remove or split bundles so that together they fit the kernel's limits")
    )]
    BundleDir {
        /// The directory.
        dir: PathBuf,
        /// Why, naming the bundles.
        message: String,
    },
    /// The Kubernetes source could not start.
    #[error(transparent)]
    #[diagnostic(transparent)]
    Kubernetes(#[from] crate::k8s::K8sError),
    /// The bundle needs something this runtime's templates do not implement.
    #[error(transparent)]
    #[diagnostic(transparent)]
    Tables(#[from] TablesError),
    /// The kernel refused the BPF object.
    #[error(transparent)]
    #[diagnostic(transparent)]
    Load(#[from] LoadError),
    /// The export target could not be opened.
    #[error(transparent)]
    #[diagnostic(transparent)]
    Export(#[from] ExportError),
    /// The pin directory cannot be used (held by another instance, the
    /// root of a bpf filesystem, not a directory).
    #[error(transparent)]
    #[diagnostic(transparent)]
    Pins(#[from] PinError),
    /// The metrics address cannot be bound.
    #[error("cannot serve metrics on {addr}")]
    #[diagnostic(
        code(policyd::metrics_bind),
        help("give another --metrics-addr (e.g. 127.0.0.1:2113), or `--metrics-addr off`")
    )]
    MetricsBind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: io::Error,
    },
    /// Signal handling or ring-buffer polling failed.
    #[error("{what}")]
    #[diagnostic(code(policyd::io))]
    Io {
        /// What was being set up.
        what: &'static str,
        /// The OS error.
        source: io::Error,
    },
}

/// Checks that need no bundle: root and kernel BTF.
///
/// # Errors
/// [`RunError::NotRoot`], [`RunError::NoBtf`].
pub fn preflight() -> Result<(), RunError> {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    if euid != 0 {
        return Err(RunError::NotRoot { euid });
    }
    if !Path::new(KERNEL_BTF).exists() {
        return Err(RunError::NoBtf);
    }
    Ok(())
}

/// Read and validate a bundle file.
///
/// # Errors
/// [`RunError::ReadBundle`], [`RunError::Bundle`].
pub fn read_bundle(path: &Path) -> Result<PolicyBundle, RunError> {
    let text = std::fs::read_to_string(path).map_err(|source| RunError::ReadBundle {
        path: path.to_path_buf(),
        source,
    })?;
    PolicyBundle::from_yaml(&text).map_err(|source| RunError::Bundle {
        path: path.to_path_buf(),
        source,
    })
}

/// The node name: `explicit`, else `$NODE_NAME` when not blank, else the
/// hostname.
///
/// # Errors
/// [`RunError::EmptyNodeName`] when `explicit` is empty or blank.
pub fn node_name(explicit: Option<String>) -> Result<String, RunError> {
    choose_node_name(explicit, std::env::var("NODE_NAME").ok(), hostname)
}

fn choose_node_name(
    explicit: Option<String>,
    env: Option<String>,
    hostname: impl FnOnce() -> String,
) -> Result<String, RunError> {
    match explicit {
        Some(name) => {
            check_node_name(&name)?;
            Ok(name)
        }
        None => Ok(env
            .filter(|s| !s.trim().is_empty())
            .unwrap_or_else(hostname)),
    }
}

fn check_node_name(name: &str) -> Result<(), RunError> {
    if name.trim().is_empty() {
        return Err(RunError::EmptyNodeName);
    }
    Ok(())
}

fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: buf is writable for its length.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "unknown".into();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

/// Everything needed to turn a ring-buffer record into an exported line.
struct Pipeline<'a> {
    /// The bundle in force and the recent ones: each event is decided by
    /// the version of its generation.
    versions: Versions,
    node_name: &'a str,
    exporter: Exporter,
    target: &'a ExportTarget,
    decode_errors: u64,
    export_errors: ExportErrors,
    metrics: Arc<Metrics>,
    filters: &'a ExportFilters,
    /// Export windows of the rules with a `rate`.
    throttle: Throttle,
    /// With `--kubernetes`: the pods of this node by cgroup id.
    pods: Option<Arc<std::sync::RwLock<crate::k8s::pods::PodTracker>>>,
}

/// Write one line; a failure is counted and logged, never fatal.
fn export_line(
    exporter: &mut Exporter,
    errors: &mut ExportErrors,
    metrics: &Metrics,
    target: &ExportTarget,
    line: &impl serde::Serialize,
) {
    if let Err(e) = exporter.write(line) {
        metrics.export_error();
        if let Some(msg) = errors.failed(&e, target, Instant::now()) {
            say!("{msg}");
        }
    }
}

impl Pipeline<'_> {
    /// Export one record. Never fails: an undecodable record or a failed
    /// write is counted and logged, and enforcement goes on.
    fn handle(&mut self, record: &[u8]) {
        let ev = match KernelEvent::decode(record) {
            Ok(ev) => ev,
            Err(e) => {
                self.decode_errors += 1;
                self.metrics.decode_error();
                say!("dropping undecodable event: {e}");
                return;
            }
        };
        let Some(version) = self.versions.get(ev.generation) else {
            self.decode_errors += 1;
            self.metrics.decode_error();
            say!(
                "dropping an event of generation {}, which is no longer known",
                ev.generation
            );
            return;
        };
        let hook = ev.hook;
        let decision = decide_terms(
            hook,
            version.hook(hook),
            &version.rules,
            &version.scopes,
            version.event_terms(hook, &ev.matched, &ev.groups),
        );
        let pod = self.pod_of(ev.cgroup_id);
        let namespace = pod.as_ref().map_or(NO_NAMESPACE, |p| p.namespace.as_str());
        self.metrics
            .record_event(hook.as_str(), &decision, &ev.binary, namespace);
        let key = EventKey {
            hook: hook.as_str(),
            verdict: decision.verdict,
            namespace,
            binary: &ev.binary,
        };
        if !self.filters.exports(&key) {
            self.metrics.event_filtered(hook.as_str());
            return;
        }
        // The bundle of the deciding rule (with `--bundle-dir` the rules
        // matched may span bundles), else of the first rule matched.
        let named = decision
            .rule
            .or(decision.matched.first().copied())
            .and_then(|r| version.bundle_of(r.id))
            .or(version.bundles.first());
        let bundle = match named {
            Some(b) => BundleRef {
                name: &b.metadata.name,
                digest: &b.spec.digest,
                generation: ev.generation,
            },
            None => BundleRef {
                name: "",
                digest: "",
                generation: ev.generation,
            },
        };
        // `rate`: the deciding rule's export window (see crate::throttle).
        if let Some((rule, rate)) = decision.rule.and_then(|r| r.rate.map(|rate| (r, rate))) {
            let info = BundleInfo {
                name: bundle.name.to_string(),
                digest: bundle.digest.to_string(),
                generation: bundle.generation,
            };
            let outcome =
                self.throttle
                    .check(&rule.policy, &rule.name, rate, &info, Instant::now());
            if let Some(summary) = &outcome.summary {
                let line = build_throttled(summary, self.node_name, chrono::Utc::now());
                export_line(
                    &mut self.exporter,
                    &mut self.export_errors,
                    &self.metrics,
                    self.target,
                    &line,
                );
            }
            if !outcome.export {
                self.metrics.event_throttled(&rule.policy, &rule.name);
                return;
            }
        }
        let mut out = build(
            &ev,
            &decision,
            self.node_name,
            bundle,
            boot_to_unix_offset_ns(),
        );
        out.body.process_mut().pod = pod.as_ref().map(crate::k8s::pod_json);
        export_line(
            &mut self.exporter,
            &mut self.export_errors,
            &self.metrics,
            self.target,
            &out,
        );
    }

    /// The pod and container of `cgroup_id`, with `--kubernetes`.
    fn pod_of(&self, cgroup_id: u64) -> Option<crate::k8s::PodMeta> {
        let pods = self
            .pods
            .as_ref()?
            .read()
            .unwrap_or_else(|e| e.into_inner());
        pods.index().lookup(cgroup_id).cloned()
    }

    fn export_summaries(&mut self, summaries: Vec<Summary>) {
        let now = chrono::Utc::now();
        for s in &summaries {
            let line = build_throttled(s, self.node_name, now);
            export_line(
                &mut self.exporter,
                &mut self.export_errors,
                &self.metrics,
                self.target,
                &line,
            );
        }
    }

    /// Export the summaries of the `rate` windows that have ended.
    fn expire_windows(&mut self) {
        let summaries = self.throttle.expire(Instant::now());
        self.export_summaries(summaries);
    }

    /// Shutdown: export the summary of every `rate` window that suppressed
    /// events, ended or not.
    fn flush_windows(&mut self) {
        let summaries = self.throttle.flush(Instant::now());
        self.export_summaries(summaries);
    }

    fn drain(&mut self, ring: &mut RingBuf<MapData>) {
        while let Some(item) = ring.next() {
            self.handle(&item);
        }
    }
}

/// What `policyd run` follows: `--bundle FILE`, `--bundle-dir DIR` or
/// `--kubernetes`.
enum Source {
    File(BundleWatch),
    Dir(reload::DirWatch),
    Kube(crate::k8s::KubeWatch),
}

/// Copy the kernel's counters and the programs' run statistics into `metrics`.
/// Read errors are ignored: the previous values stay.
fn refresh_kernel_metrics(hooks: &PolicyHooks, metrics: &Metrics) {
    if let Ok(stats) = hooks.stats() {
        metrics.set_kernel_stats(&stats);
    }
    if let Ok(programs) = hooks.program_stats() {
        for (hook, program, run_time, runs) in programs {
            metrics.set_program_stats(hook.as_str(), program, run_time, runs);
        }
    }
}

/// Run until SIGINT, SIGTERM, SIGHUP or SIGQUIT: lock the pin directory,
/// load `opts.bundle`, attach, export events. Prints `policyd: ready …` to
/// stderr once attached. On a signal: detach, export what is left in the
/// ring buffer, remove the pins, print the stats, return `Ok`. Failing to
/// export events never stops it (see [`ExportErrors`]).
///
/// # Errors
/// Any [`RunError`]; the hook is detached and unpinned before returning.
pub async fn run(opts: RunOptions) -> Result<(), RunError> {
    preflight()?;
    // The exec mechanism in the readiness line comes from probing the kernel.
    let exec_mechanism = crate::probe::exec_mechanism(&crate::probe::run());
    check_node_name(&opts.node_name)?;
    // `--bundle FILE`: the file's bytes and bundle; `--bundle-dir`: the
    // directory's watcher and its merged bundles.
    let (first, tables, source) = if let Some(k) = &opts.kubernetes {
        let message = format!("exec: {exec_mechanism}");
        let (watch, bundles, merged) = crate::k8s::KubeWatch::start(k, &message).await?;
        let tables = reload::kernel_tables(&bundles, &merged, &crate::k8s::PodIndex::default())?;
        (
            Version::merged(bundles, merged, 1).with_bits(&tables),
            tables,
            Source::Kube(watch),
        )
    } else if opts.bundle_dir {
        let (watch, bundles, merged) = reload::DirWatch::start(&opts.bundle)?;
        let tables = reload::kernel_tables(&bundles, &merged, &crate::k8s::PodIndex::default())?;
        (
            Version::merged(bundles, merged, 1).with_bits(&tables),
            tables,
            Source::Dir(watch),
        )
    } else {
        let (bundle_bytes, bundle) = reload::read_initial(&opts.bundle)?;
        let bundle = Arc::new(bundle);
        let merged = crate::merge::merge(&[&bundle]).map_err(|e| RunError::BundleDir {
            dir: opts.bundle.clone(),
            message: e.to_string(),
        })?;
        let tables = reload::kernel_tables(
            std::slice::from_ref(&bundle),
            &merged,
            &crate::k8s::PodIndex::default(),
        )?;
        let watch = BundleWatch::new(&opts.bundle, bundle_bytes);
        (
            Version::merged(vec![bundle], merged, 1).with_bits(&tables),
            tables,
            Source::File(watch),
        )
    };
    for note in &tables.notes {
        say!("{note}");
    }
    let exporter = Exporter::open_with(&opts.export, opts.export_rotation.as_ref())?;
    let pin_dir = pins::absolute(&opts.pin_dir).map_err(|source| PinError::Inspect {
        path: opts.pin_dir.clone(),
        source,
    })?;
    // One instance per pin directory; the lock lives as long as the process.
    let _lock = PinLock::acquire(&pin_dir)?;
    let plan = pins::check_pin_dir(&pin_dir)?;
    if plan == PinPlan::Pin {
        // With the lock ours, pins still there were left by a dead instance.
        let stale = pins::remove_stale_pins(&pin_dir)?;
        if !stale.is_empty() {
            say!(
                "removed stale pins left in {} by a policyd that did not exit cleanly: {}",
                pin_dir.display(),
                stale.join(", ")
            );
        }
    }
    let metrics = Arc::new(Metrics::new());
    for bundle in &first.bundles {
        metrics.prepare(bundle);
    }
    let listener = match opts.metrics_addr {
        Some(addr) => {
            Some(metrics::bind(addr).map_err(|source| RunError::MetricsBind { addr, source })?)
        }
        None => None,
    };
    let metrics_at = match &listener {
        Some(l) => l
            .local_addr()
            .map_or_else(|_| "?".to_string(), |a| a.to_string()),
        None => "off".to_string(),
    };
    // Served from here on: /readyz says 503 until the hook is attached.
    let server = listener.map(|l| tokio::spawn(metrics::serve(l, metrics.clone())));
    // Run-time statistics cost something for every BPF program of the host:
    // only when someone can read them.
    let run_stats = server.as_ref().map(|_| RunStats::enable());
    if let Some(RunStats::Unavailable(why)) = &run_stats {
        say!("BPF run-time statistics are unavailable ({why}): policyd_bpf_program_* stay 0");
    }
    metrics.set_run_stats_enabled(run_stats.as_ref().is_some_and(RunStats::enabled));
    let io_err = |what| move |source| RunError::Io { what, source };
    // Handlers first, so that a signal right after readiness is not fatal.
    let mut sigterm = signal(SignalKind::terminate()).map_err(io_err("cannot handle SIGTERM"))?;
    let mut sigint = signal(SignalKind::interrupt()).map_err(io_err("cannot handle SIGINT"))?;
    let mut sighup = signal(SignalKind::hangup()).map_err(io_err("cannot handle SIGHUP"))?;
    let mut sigquit = signal(SignalKind::quit()).map_err(io_err("cannot handle SIGQUIT"))?;

    let mut hook = PolicyHooks::load(&tables)?;
    let pinned = plan == PinPlan::Pin;
    let pins = match &plan {
        PinPlan::Pin => {
            hook.pin(&pin_dir)?;
            pin_dir.display().to_string()
        }
        PinPlan::NoPin(why) => {
            say!("{why}");
            "none".to_string()
        }
    };
    // After pinning: pinning needs every map still in the Ebpf.
    let ring = hook.take_events()?;
    // SAFETY: the RingBuf owns its map fd for its whole life and always
    // returns that same fd from as_raw_fd(); the AsyncFd owns the RingBuf.
    let mut ring =
        unsafe { AsyncFd::register_with_interest(ring, Interest::READABLE) }.map_err(|e| {
            RunError::Io {
                what: "cannot poll the ring buffer",
                source: e.into(),
            }
        })?;
    hook.attach()?;
    for (map, entries, max) in map_sizes(&tables) {
        metrics.set_map(map, entries, max);
    }
    refresh_kernel_metrics(&hook, &metrics);
    for bundle in &first.bundles {
        metrics.loaded(bundle, 1);
    }
    metrics.set_ready(true);

    let hooks_line: Vec<String> = first
        .hooks
        .iter()
        .map(|(h, t)| format!("{}:{}", h.as_str(), t.terms.len()))
        .collect();
    let hooks_line = if hooks_line.is_empty() {
        "none".to_string()
    } else {
        hooks_line.join(",")
    };
    say!(
        "ready hooks={hooks_line} exec_mechanism={exec_mechanism} {} rules={} terms={} pins={pins} export={} metrics={metrics_at} run_stats={}",
        first.describe(),
        first.rules.len(),
        first.hooks.values().map(|t| t.terms.len()).sum::<usize>(),
        opts.export,
        run_stats.as_ref().map_or("off", RunStats::how),
    );
    let mut pipeline = Pipeline {
        versions: Versions::new(first),
        node_name: &opts.node_name,
        exporter,
        target: &opts.export,
        decode_errors: 0,
        export_errors: ExportErrors::default(),
        metrics: metrics.clone(),
        filters: &opts.export_filters,
        throttle: Throttle::default(),
        pods: match &source {
            Source::Kube(watch) => Some(watch.pods()),
            _ => None,
        },
    };
    let mut refresh = tokio::time::interval(KERNEL_REFRESH);
    refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut source = source;
    let mut watch_tick = tokio::time::interval(reload::WATCH_INTERVAL);
    watch_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);

    let result = loop {
        tokio::select! {
            guard = ring.readable_mut() => {
                let mut guard = match guard {
                    Ok(g) => g,
                    Err(e) => break Err(RunError::Io { what: "cannot poll the ring buffer", source: e }),
                };
                pipeline.drain(guard.get_inner_mut());
                guard.clear_ready();
            }
            _ = refresh.tick() => {
                refresh_kernel_metrics(&hook, &metrics);
                pipeline.expire_windows();
            }
            _ = watch_tick.tick() => {
                match &mut source {
                    Source::File(watch) => {
                        if let Some(change) = watch.poll() {
                            reload::apply(change, watch.path(), &mut hook, &mut pipeline.versions, &metrics);
                        }
                    }
                    Source::Dir(watch) => {
                        watch.poll_apply(&mut hook, &mut pipeline.versions, &metrics);
                    }
                    Source::Kube(watch) => {
                        watch.poll_apply(&mut hook, &mut pipeline.versions, &metrics);
                    }
                }
            }
            _ = sigterm.recv() => break Ok("SIGTERM"),
            _ = sigint.recv() => break Ok("SIGINT"),
            _ = sighup.recv() => break Ok("SIGHUP"),
            _ = sigquit.recv() => break Ok("SIGQUIT"),
        }
    };

    metrics.set_ready(false);
    hook.detach()?;
    for bundle in &pipeline.versions.current().bundles {
        metrics.unloaded(bundle);
    }
    pipeline.drain(ring.get_mut());
    pipeline.flush_windows();
    if let Some(server) = server {
        server.abort();
    }
    drop(run_stats);
    let failed = hook.unpin();
    for (path, e) in &failed {
        say!("cannot remove pin {}: {e}", path.display());
    }
    if let Ok(stats) = hook.stats() {
        let line: Vec<String> = stats
            .runs
            .iter()
            .filter(|(h, v)| *v > 0 || *h == Hook::Exec)
            .map(|(h, v)| format!("runs_{}={v}", h.as_str()))
            .chain(
                stats
                    .counters
                    .iter()
                    .map(|(s, v)| format!("{}={v}", s.name())),
            )
            .collect();
        say!(
            "stats {} decode_errors={} export_errors={}",
            line.join(" "),
            pipeline.decode_errors,
            pipeline.export_errors.count,
        );
    }
    let signal = result?;
    let unpinned = if pinned { ", pins removed" } else { "" };
    say!("{signal}: detached{unpinned}, exiting");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_name_is_never_empty() {
        let host = || "host".to_string();
        let pick = |explicit: Option<&str>, env: Option<&str>| {
            choose_node_name(explicit.map(Into::into), env.map(Into::into), host)
        };
        assert_eq!(pick(Some("n1"), Some("env")).unwrap(), "n1");
        assert!(matches!(
            pick(Some(""), Some("env")),
            Err(RunError::EmptyNodeName)
        ));
        assert!(matches!(
            pick(Some("  "), None),
            Err(RunError::EmptyNodeName)
        ));
        assert_eq!(pick(None, Some("env")).unwrap(), "env");
        assert_eq!(pick(None, Some("")).unwrap(), "host");
        assert_eq!(pick(None, Some(" ")).unwrap(), "host");
        assert_eq!(pick(None, None).unwrap(), "host");
    }
}
