//! Prometheus metrics and the `--metrics-addr` HTTP endpoint.
//!
//! [`Metrics`] holds every metric `policyd` exports (a `prometheus-client`
//! registry) and the readiness flag; [`serve`] answers `/metrics` (OpenMetrics
//! text), `/healthz` and `/readyz` with axum. The daemon feeds it: events as
//! they are decided ([`Metrics::record_event`]), the kernel's `stats` map and
//! the program's run statistics once a second ([`Metrics::set_kernel_stats`],
//! [`Metrics::set_program_stats`]). docs/runtime.md lists every metric.
//!
//! Label values are bounded: hooks, verdicts, severities and maps are fixed
//! sets; policies and rules come from the loaded bundle; binaries are capped at
//! [`BINARY_LABEL_LIMIT`] distinct values (the rest count as
//! [`OTHER_BINARY`]).

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use policy_compiler::bundle::{PolicyBundle, Verdict};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};

use crate::abi::Stat;
use crate::decision::Decision;

/// Default `--metrics-addr`.
pub const DEFAULT_METRICS_ADDR: &str = "0.0.0.0:2112";
/// At most this many distinct `binary` label values; later binaries are
/// counted under [`OTHER_BINARY`].
pub const BINARY_LABEL_LIMIT: usize = 100;
/// The `binary` label value of binaries past [`BINARY_LABEL_LIMIT`]. A real
/// binary path starts with `/` (or is empty), so it cannot be confused.
pub const OTHER_BINARY: &str = "other";
/// Content type of `/metrics`: prometheus-client writes OpenMetrics text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// How often the daemon reads the kernel counters and program statistics.
pub const KERNEL_REFRESH: Duration = Duration::from_secs(1);
/// The `namespace` label of events until Kubernetes attribution exists.
pub const NO_NAMESPACE: &str = "";

/// Parse `--metrics-addr`: `off` disables metrics, anything else is a socket
/// address (`0.0.0.0:2112`, `127.0.0.1:0`, `[::1]:2112`).
///
/// # Errors
/// A message for clap when the address does not parse.
pub fn parse_metrics_addr(arg: &str) -> Result<Option<SocketAddr>, String> {
    if arg == "off" {
        return Ok(None);
    }
    arg.parse::<SocketAddr>().map(Some).map_err(|e| {
        format!("`{arg}` is not `off` nor an address with a port such as 0.0.0.0:2112 ({e})")
    })
}

/// `{hook, verdict}`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HookVerdictLabels {
    /// `exec`.
    pub hook: String,
    /// `allow` or `kill` (`deny` for hooks that refuse).
    pub verdict: String,
}

/// `{policy, rule}`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RuleLabels {
    /// Policy name.
    pub policy: String,
    /// Rule name.
    pub rule: String,
}

/// `{hook, severity}`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SeverityLabels {
    /// `exec`.
    pub hook: String,
    /// `info` … `critical`.
    pub severity: String,
}

/// `{hook, namespace, policy, rule}`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DenyLabels {
    /// `exec`.
    pub hook: String,
    /// Kubernetes namespace of the pod (`--kubernetes` attribution); empty
    /// for a process in no known pod.
    pub namespace: String,
    /// Policy of the deciding rule.
    pub policy: String,
    /// The deciding rule.
    pub rule: String,
}

/// `{hook, binary, verdict}`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BinaryLabels {
    /// `exec`.
    pub hook: String,
    /// `process.binary`, or [`OTHER_BINARY`].
    pub binary: String,
    /// The event's verdict.
    pub verdict: String,
}

/// `{hook}`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HookLabels {
    /// `exec`.
    pub hook: String,
}

/// `{result}` of a bundle reload: `applied` or `refused`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReloadLabels {
    /// `applied` or `refused`.
    pub result: String,
}

/// `{bundle, digest}`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BundleLabels {
    /// `metadata.name`.
    pub bundle: String,
    /// `spec.digest`.
    pub digest: String,
}

/// `{hook, map}`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MapLabels {
    /// Map name, e.g. `str_exact` (the inner map of the slot in force).
    pub map: String,
}

/// `{name}` of a `count "name"` counter.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CounterLabels {
    /// The counter's name.
    pub name: String,
}

/// `{hook, program}`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProgramLabels {
    /// `exec`.
    pub hook: String,
    /// Program name in the object, e.g. `policy_exec`.
    pub program: String,
}

/// `{version}`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BuildLabels {
    /// `policyd`'s version.
    pub version: String,
}

type FloatCounter = Counter<f64, AtomicU64>;
type FloatGauge = Gauge<f64, AtomicU64>;

/// Every metric of `policyd`, and whether it is ready.
pub struct Metrics {
    registry: Registry,
    events: Family<HookVerdictLabels, Counter>,
    rule_matches: Family<RuleLabels, Counter>,
    audit_events: Family<SeverityLabels, Counter>,
    denies: Family<DenyLabels, Counter>,
    binary_events: Family<BinaryLabels, Counter>,
    binaries: Mutex<HashSet<String>>,
    kernel: Vec<(Stat, Counter)>,
    kernel_runs: Family<HookLabels, Counter>,
    counters: Family<CounterLabels, Counter>,
    decode_errors: Counter,
    export_errors: Counter,
    events_filtered: Family<HookLabels, Counter>,
    events_throttled: Family<RuleLabels, Counter>,
    policy_loaded: Family<BundleLabels, Gauge>,
    load_generation: Gauge,
    bundle_reloads: Family<ReloadLabels, Counter>,
    pod_cgroups: Gauge,
    pod_cgroups_unresolved: Gauge,
    map_entries: Family<MapLabels, Gauge>,
    map_max_entries: Family<MapLabels, Gauge>,
    run_time: Family<ProgramLabels, FloatCounter>,
    runs: Family<ProgramLabels, Counter>,
    run_stats_enabled: Gauge,
    start_time: FloatGauge,
    ready: AtomicBool,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// Register every metric. `process_start_time_seconds` is now;
    /// `policyd_build_info` is set.
    pub fn new() -> Metrics {
        let mut r = Registry::default();
        let events = Family::<HookVerdictLabels, Counter>::default();
        r.register(
            "policyd_events",
            "Events decided in user space, by hook and verdict",
            events.clone(),
        );
        let rule_matches = Family::<RuleLabels, Counter>::default();
        r.register(
            "policyd_rule_matches",
            "Events each rule matched (every matched rule of an event counts)",
            rule_matches.clone(),
        );
        let audit_events = Family::<SeverityLabels, Counter>::default();
        r.register(
            "policyd_audit_events",
            "Events with an auditing match, by hook and event severity",
            audit_events.clone(),
        );
        let denies = Family::<DenyLabels, Counter>::default();
        r.register(
            "policyd_denies",
            "Events whose verdict stopped the operation (deny or kill), by namespace and deciding rule",
            denies.clone(),
        );
        let binary_events = Family::<BinaryLabels, Counter>::default();
        r.register(
            "policyd_binary_events",
            format!(
                "Events by process.binary and verdict; at most {BINARY_LABEL_LIMIT} binaries, the rest as binary=\"{OTHER_BINARY}\""
            ),
            binary_events.clone(),
        );
        let kernel = Stat::ALL
            .iter()
            .map(|&s| {
                let c = Counter::default();
                r.register(
                    format!("policyd_bpf_{}", s.name()),
                    format!(
                        "Kernel counter `{}` of the stats map, summed over CPUs: {}",
                        s.name(),
                        stat_help(s)
                    ),
                    c.clone(),
                );
                (s, c)
            })
            .collect();
        let counters = Family::<CounterLabels, Counter>::default();
        r.register(
            "policyd_counter",
            "Named counters of the rules (`count \"name\"` in the language): events that matched a rule with the counter",
            counters.clone(),
        );
        let kernel_runs = Family::<HookLabels, Counter>::default();
        r.register(
            "policyd_bpf_runs",
            "Runs of each hook's programs (from the stats map, summed over CPUs; counted before the program looks for rules; `open` counts successful opens only)",
            kernel_runs.clone(),
        );
        let decode_errors = Counter::default();
        r.register(
            "policyd_decode_errors",
            "Ring-buffer records that could not be decoded (dropped)",
            decode_errors.clone(),
        );
        let export_errors = Counter::default();
        r.register(
            "policyd_export_errors",
            "Events that could not be written to the export target",
            export_errors.clone(),
        );
        let events_filtered = Family::<HookLabels, Counter>::default();
        r.register(
            "policyd_events_filtered",
            "Events not exported because of --export-allow / --export-deny (still counted by every other metric)",
            events_filtered.clone(),
        );
        let events_throttled = Family::<RuleLabels, Counter>::default();
        r.register(
            "policyd_events_throttled",
            "Events not exported because their deciding rule's `rate` was reached (still counted by every other metric)",
            events_throttled.clone(),
        );
        let policy_loaded = Family::<BundleLabels, Gauge>::default();
        r.register(
            "policyd_policy_loaded",
            "1 while the bundle is loaded and attached, 0 otherwise",
            policy_loaded.clone(),
        );
        let load_generation = Gauge::default();
        r.register(
            "policyd_policy_load_generation",
            "Number of successful bundle loads since start (0 before the first)",
            load_generation.clone(),
        );
        let bundle_reloads = Family::<ReloadLabels, Counter>::default();
        r.register(
            "policyd_bundle_reloads",
            "Changes of the watched bundle file, by result: applied (swapped in) or refused (the previous bundle stays in force)",
            bundle_reloads.clone(),
        );
        for result in ["applied", "refused"] {
            bundle_reloads
                .get_or_create(&ReloadLabels {
                    result: result.into(),
                })
                .inc_by(0);
        }
        let pod_cgroups = Gauge::default();
        r.register(
            "policyd_pod_cgroups",
            "Container cgroups of this node's pods known to attribution (--kubernetes; 0 without it)",
            pod_cgroups.clone(),
        );
        let pod_cgroups_unresolved = Gauge::default();
        r.register(
            "policyd_pod_cgroups_unresolved",
            "Running containers whose cgroup directory was not found after every retry since start: their processes are attributed to no pod",
            pod_cgroups_unresolved.clone(),
        );
        let map_entries = Family::<MapLabels, Gauge>::default();
        r.register(
            "policyd_map_entries",
            "Entries policyd wrote to each BPF map",
            map_entries.clone(),
        );
        let map_max_entries = Family::<MapLabels, Gauge>::default();
        r.register(
            "policyd_map_max_entries",
            "max_entries of each BPF map",
            map_max_entries.clone(),
        );
        let run_time = Family::<ProgramLabels, FloatCounter>::default();
        r.register_with_unit(
            "policyd_bpf_program_run_time",
            "Time the kernel spent in the BPF program (bpf_prog_info.run_time_ns); counts only while run-time stats are enabled",
            Unit::Seconds,
            run_time.clone(),
        );
        let runs = Family::<ProgramLabels, Counter>::default();
        r.register(
            "policyd_bpf_program_runs",
            "Runs of the BPF program (bpf_prog_info.run_cnt); counts only while run-time stats are enabled",
            runs.clone(),
        );
        let run_stats_enabled = Gauge::default();
        r.register(
            "policyd_bpf_run_stats_enabled",
            "1 when kernel BPF run-time statistics are enabled (BPF_ENABLE_STATS or kernel.bpf_stats_enabled)",
            run_stats_enabled.clone(),
        );
        let start_time = FloatGauge::default();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        start_time.set(now.as_secs_f64());
        r.register_with_unit(
            "process_start_time",
            "Start time of the process since the Unix epoch",
            Unit::Seconds,
            start_time.clone(),
        );
        let build_info = Family::<BuildLabels, Gauge>::default();
        build_info
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION").to_string(),
            })
            .set(1);
        r.register(
            "policyd_build_info",
            "policyd's version (always 1)",
            build_info,
        );
        Metrics {
            registry: r,
            events,
            rule_matches,
            audit_events,
            denies,
            binary_events,
            binaries: Mutex::new(HashSet::new()),
            kernel,
            kernel_runs,
            counters,
            decode_errors,
            export_errors,
            events_filtered,
            events_throttled,
            policy_loaded,
            load_generation,
            bundle_reloads,
            pod_cgroups,
            pod_cgroups_unresolved,
            map_entries,
            map_max_entries,
            run_time,
            runs,
            run_stats_enabled,
            start_time,
            ready: AtomicBool::new(false),
        }
    }

    /// The OpenMetrics text of every metric, ending with `# EOF`.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// Create the zero series of `bundle` so that dashboards and rate()
    /// see them from the first scrape: every rule's match counter, the
    /// verdicts of each hook, the denies of its deny/kill rules, and
    /// `policyd_policy_loaded{…} 0` until [`Metrics::loaded`].
    pub fn prepare(&self, bundle: &PolicyBundle) {
        for rule in &bundle.spec.rules {
            self.rule_matches
                .get_or_create(&RuleLabels {
                    policy: rule.policy.clone(),
                    rule: rule.name.clone(),
                })
                .inc_by(0);
            if rule.rate.is_some() {
                self.events_throttled
                    .get_or_create(&RuleLabels {
                        policy: rule.policy.clone(),
                        rule: rule.name.clone(),
                    })
                    .inc_by(0);
            }
            let hook = rule.hook.as_str().to_string();
            self.events_filtered
                .get_or_create(&HookLabels { hook: hook.clone() })
                .inc_by(0);
            let denied = if matches!(
                rule.hook,
                policy_compiler::bundle::Hook::Connect | policy_compiler::bundle::Hook::Bind
            ) {
                "deny"
            } else {
                "kill"
            };
            for verdict in ["allow", denied] {
                self.events
                    .get_or_create(&HookVerdictLabels {
                        hook: hook.clone(),
                        verdict: verdict.into(),
                    })
                    .inc_by(0);
            }
            if matches!(rule.verdict, Some(Verdict::Deny | Verdict::Kill)) {
                self.denies
                    .get_or_create(&DenyLabels {
                        hook,
                        namespace: NO_NAMESPACE.into(),
                        policy: rule.policy.clone(),
                        rule: rule.name.clone(),
                    })
                    .inc_by(0);
            }
        }
        self.policy_loaded
            .get_or_create(&bundle_labels(bundle))
            .set(0);
        for table in bundle.spec.hooks.values() {
            for name in table.verdicts.count.keys() {
                self.counters
                    .get_or_create(&CounterLabels { name: name.clone() })
                    .inc_by(0);
            }
        }
        for (_, c) in &self.kernel {
            c.inc_by(0);
        }
        for hook in bundle.spec.hooks.keys() {
            self.kernel_runs
                .get_or_create(&HookLabels {
                    hook: hook.as_str().into(),
                })
                .inc_by(0);
        }
        self.decode_errors.inc_by(0);
    }

    /// `bundle` is loaded and attached as load number `generation`.
    pub fn loaded(&self, bundle: &PolicyBundle, generation: i64) {
        self.policy_loaded
            .get_or_create(&bundle_labels(bundle))
            .set(1);
        self.load_generation.set(generation);
    }

    /// A changed bundle file was refused; the bundle in force stays.
    pub fn reload_refused(&self) {
        self.bundle_reloads
            .get_or_create(&ReloadLabels {
                result: "refused".into(),
            })
            .inc();
    }

    /// `new` replaced `old` as load number `generation`: `old`'s
    /// `policyd_policy_loaded` series goes (unless it is the same bundle).
    pub fn swapped(&self, old: &PolicyBundle, new: &PolicyBundle, generation: i64) {
        self.bundle_reloads
            .get_or_create(&ReloadLabels {
                result: "applied".into(),
            })
            .inc();
        if bundle_labels(old) != bundle_labels(new) {
            self.policy_loaded.remove(&bundle_labels(old));
        }
        self.prepare(new);
        self.loaded(new, generation);
    }

    /// The bundles `new` replaced the bundles `old` as load number
    /// `generation` (`--bundle-dir`): the `policyd_policy_loaded` series of
    /// the old ones that are not among the new ones go.
    pub fn swapped_set(
        &self,
        old: &[std::sync::Arc<PolicyBundle>],
        new: &[std::sync::Arc<PolicyBundle>],
        generation: i64,
    ) {
        self.bundle_reloads
            .get_or_create(&ReloadLabels {
                result: "applied".into(),
            })
            .inc();
        let keep: Vec<BundleLabels> = new.iter().map(|b| bundle_labels(b)).collect();
        for o in old {
            if !keep.contains(&bundle_labels(o)) {
                self.policy_loaded.remove(&bundle_labels(o));
            }
        }
        for n in new {
            self.prepare(n);
            self.loaded(n, generation);
        }
        self.load_generation.set(generation);
    }

    /// Pod attribution now: `known` container cgroups, `unresolved`
    /// containers given up on since start.
    pub fn set_pod_attribution(&self, known: u64, unresolved: u64) {
        self.pod_cgroups.set(known as i64);
        self.pod_cgroups_unresolved.set(unresolved as i64);
    }

    /// `bundle` is no longer enforced (detached at exit).
    pub fn unloaded(&self, bundle: &PolicyBundle) {
        self.policy_loaded
            .get_or_create(&bundle_labels(bundle))
            .set(0);
    }

    /// Count one decided event of `hook` about `binary`, from `namespace`
    /// ([`NO_NAMESPACE`] for a process in no known pod).
    pub fn record_event(&self, hook: &str, decision: &Decision<'_>, binary: &str, namespace: &str) {
        let verdict = decision.verdict;
        self.events
            .get_or_create(&HookVerdictLabels {
                hook: hook.into(),
                verdict: verdict.into(),
            })
            .inc();
        for rule in &decision.matched {
            self.rule_matches
                .get_or_create(&RuleLabels {
                    policy: rule.policy.clone(),
                    rule: rule.name.clone(),
                })
                .inc();
        }
        if decision.audit {
            let severity = decision.severity.map_or("none", |s| s.as_str());
            self.audit_events
                .get_or_create(&SeverityLabels {
                    hook: hook.into(),
                    severity: severity.into(),
                })
                .inc();
        }
        for name in &decision.counters {
            self.counters
                .get_or_create(&CounterLabels {
                    name: (*name).into(),
                })
                .inc();
        }
        if verdict != "allow" {
            let (policy, rule) = match (decision.rule, decision.scope) {
                (_, Some(s)) => (s.policy.clone(), s.name.clone()),
                (Some(r), None) => (r.policy.clone(), r.name.clone()),
                (None, None) => (String::new(), String::new()),
            };
            self.denies
                .get_or_create(&DenyLabels {
                    hook: hook.into(),
                    namespace: namespace.into(),
                    policy,
                    rule,
                })
                .inc();
        }
        self.binary_events
            .get_or_create(&BinaryLabels {
                hook: hook.into(),
                binary: self.binary_label(binary),
                verdict: verdict.into(),
            })
            .inc();
    }

    /// `binary` if it already has a series or there is room for one, else
    /// [`OTHER_BINARY`].
    fn binary_label(&self, binary: &str) -> String {
        let mut seen = self.binaries.lock().unwrap_or_else(|e| e.into_inner());
        if seen.contains(binary) {
            return binary.to_string();
        }
        if seen.len() < BINARY_LABEL_LIMIT {
            seen.insert(binary.to_string());
            return binary.to_string();
        }
        OTHER_BINARY.to_string()
    }

    /// Count one undecodable ring-buffer record.
    pub fn decode_error(&self) {
        self.decode_errors.inc();
    }

    /// Count one failed export.
    pub fn export_error(&self) {
        self.export_errors.inc();
    }

    /// Count one event of `hook` that the export filters left out.
    pub fn event_filtered(&self, hook: &str) {
        self.events_filtered
            .get_or_create(&HookLabels { hook: hook.into() })
            .inc();
    }

    /// Count one event of `policy`/`rule` held back by the rule's `rate`.
    pub fn event_throttled(&self, policy: &str, rule: &str) {
        self.events_throttled
            .get_or_create(&RuleLabels {
                policy: policy.into(),
                rule: rule.into(),
            })
            .inc();
    }

    /// Mirror the kernel's `stats` counters (summed over CPUs). Counters
    /// never go back: a smaller value than the last is ignored. Runs are
    /// mirrored for hooks that ran at least once or have a series already.
    pub fn set_kernel_stats(&self, stats: &crate::loader::KernelStats) {
        for (stat, value) in &stats.counters {
            if let Some((_, c)) = self.kernel.iter().find(|(s, _)| s == stat) {
                c.inner().fetch_max(*value, Ordering::Relaxed);
            }
        }
        for (hook, runs) in &stats.runs {
            if *runs > 0 {
                self.kernel_runs
                    .get_or_create(&HookLabels {
                        hook: hook.as_str().into(),
                    })
                    .inner()
                    .fetch_max(*runs, Ordering::Relaxed);
            }
        }
    }

    /// Mirror `bpf_prog_info.run_time_ns` and `run_cnt` of `program`.
    pub fn set_program_stats(&self, hook: &str, program: &str, run_time: Duration, runs: u64) {
        let labels = ProgramLabels {
            hook: hook.into(),
            program: program.into(),
        };
        // Non-negative f64s order like their bit patterns.
        self.run_time
            .get_or_create(&labels)
            .inner()
            .fetch_max(run_time.as_secs_f64().to_bits(), Ordering::Relaxed);
        self.runs
            .get_or_create(&labels)
            .inner()
            .fetch_max(runs, Ordering::Relaxed);
    }

    /// Whether run-time statistics are being collected.
    pub fn set_run_stats_enabled(&self, on: bool) {
        self.run_stats_enabled.set(i64::from(on));
    }

    /// Entries written to `map` and its `max_entries`.
    pub fn set_map(&self, map: &str, entries: u64, max_entries: u64) {
        let labels = MapLabels { map: map.into() };
        self.map_entries.get_or_create(&labels).set(entries as i64);
        self.map_max_entries
            .get_or_create(&labels)
            .set(max_entries as i64);
    }

    /// Set readiness (`/readyz`): the program attached and the bundle loaded.
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
    }

    /// Whether `/readyz` answers 200.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    /// `process_start_time_seconds`.
    pub fn start_time(&self) -> f64 {
        self.start_time.get()
    }
}

fn bundle_labels(bundle: &PolicyBundle) -> BundleLabels {
    BundleLabels {
        bundle: bundle.metadata.name.clone(),
        digest: bundle.spec.digest.clone(),
    }
}

fn stat_help(s: Stat) -> &'static str {
    match s {
        Stat::Events => "events written to the ring buffer",
        Stat::RingbufDrops => "events lost because the ring buffer was full",
        Stat::BinaryTruncated => "binary paths truncated or walked incompletely",
        Stat::ArgsTruncated => "argument lists longer than ARGS_BUF_LEN",
        Stat::Kills => "SIGKILLs sent",
        Stat::KillFailed => "SIGKILLs that could not be sent",
        Stat::OtherPathTruncated => "cwd, parent, file or target paths truncated",
        Stat::NoConfig => "runs that found no active slot, hook config or inner table",
        Stat::ScratchMissing => "runs that found no scratch space",
        Stat::Refused => "connects and binds refused with EPERM",
        Stat::MaskMissing => "runs that found a mask id without its mask (decided on no terms)",
        Stat::ScratchBusy => "runs that found the CPU's scratch space in use by a preempted run: not decided (allowed)",
    }
}

/// The axum application: `/metrics`, `/healthz`, `/readyz`.
pub fn router(metrics: Arc<Metrics>) -> Router {
    let m = metrics.clone();
    let r = metrics;
    Router::new()
        .route(
            "/metrics",
            get(move || {
                let m = m.clone();
                async move { ([(header::CONTENT_TYPE, CONTENT_TYPE)], m.encode()).into_response() }
            }),
        )
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/readyz",
            get(move || {
                let r = r.clone();
                async move { readyz(&r) }
            }),
        )
}

fn readyz(m: &Metrics) -> Response {
    if m.is_ready() {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: the program is not attached or the bundle is not loaded\n",
        )
            .into_response()
    }
}

/// Bind `addr` for the metrics endpoint (synchronously, so that an address
/// in use is reported before anything is loaded).
///
/// # Errors
/// The OS error of `bind` or of making the socket non-blocking.
pub fn bind(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let l = std::net::TcpListener::bind(addr)?;
    l.set_nonblocking(true)?;
    tokio::net::TcpListener::from_std(l)
}

/// Serve [`router`] on `listener` until the task is dropped or aborted.
pub async fn serve(
    listener: tokio::net::TcpListener,
    metrics: Arc<Metrics>,
) -> std::io::Result<()> {
    axum::serve(listener, router(metrics)).await
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};

    use policy_compiler::bundle::{mask_words, Hook, Severity};

    use super::*;
    use crate::decision::{decide, tests::fixture};

    /// Sample lines of `text` for metric `name` (exact name, then `{` or space).
    fn samples<'a>(text: &'a str, name: &str) -> Vec<&'a str> {
        text.lines()
            .filter(|l| {
                l.strip_prefix(name)
                    .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
            })
            .collect()
    }

    /// A bundle with an auditing and a denying rule.
    fn bundle() -> PolicyBundle {
        let sources = [policy_compiler::SourceFile {
            name: "t.policy".into(),
            text: "policy t {}\n\
                   rule audit_sudo on exec { when process.binary == \"/usr/bin/sudo\" audit count \"sudo\" }\n\
                   rule deny_tmp on exec { when process.binary startswith \"/tmp/\" deny }\n"
                .into(),
        }];
        policy_compiler::compile(&sources, "test-bundle")
            .unwrap()
            .bundle
    }

    /// Metrics with a series in every family: prepared for [`bundle`], one
    /// audited and one denied event, kernel and map values.
    fn populated() -> Metrics {
        let (table, rules) = fixture();
        let m = Metrics::new();
        m.prepare(&bundle());
        m.record_event(
            "exec",
            &decide(Hook::Exec, &table, &rules, &[], &mask_words(&vec![0])),
            "/usr/bin/sudo",
            NO_NAMESPACE,
        );
        m.record_event(
            "exec",
            &decide(Hook::Exec, &table, &rules, &[], &mask_words(&vec![1])),
            "/tmp/x",
            NO_NAMESPACE,
        );
        m.set_program_stats("exec", "policy_exec", Duration::from_nanos(100), 1);
        m.set_map("hook_config", 16, 16);
        m
    }

    #[test]
    fn every_metric_is_registered_with_its_type() {
        assert!(!Metrics::new().encode().contains("policyd_events_total"));
        let text = populated().encode();
        let types = [
            ("policyd_events", "counter"),
            ("policyd_rule_matches", "counter"),
            ("policyd_audit_events", "counter"),
            ("policyd_denies", "counter"),
            ("policyd_binary_events", "counter"),
            ("policyd_bpf_runs", "counter"),
            ("policyd_counter", "counter"),
            ("policyd_bpf_events", "counter"),
            ("policyd_bpf_ringbuf_drops", "counter"),
            ("policyd_bpf_binary_truncated", "counter"),
            ("policyd_bpf_args_truncated", "counter"),
            ("policyd_bpf_kills", "counter"),
            ("policyd_bpf_kill_failed", "counter"),
            ("policyd_bpf_other_path_truncated", "counter"),
            ("policyd_bpf_no_config", "counter"),
            ("policyd_bpf_scratch_missing", "counter"),
            ("policyd_bpf_refused", "counter"),
            ("policyd_bpf_mask_missing", "counter"),
            ("policyd_bpf_scratch_busy", "counter"),
            ("policyd_decode_errors", "counter"),
            ("policyd_export_errors", "counter"),
            ("policyd_events_filtered", "counter"),
            ("policyd_policy_loaded", "gauge"),
            ("policyd_policy_load_generation", "gauge"),
            ("policyd_bundle_reloads", "counter"),
            ("policyd_pod_cgroups", "gauge"),
            ("policyd_pod_cgroups_unresolved", "gauge"),
            ("policyd_map_entries", "gauge"),
            ("policyd_map_max_entries", "gauge"),
            ("policyd_bpf_program_run_time_seconds", "counter"),
            ("policyd_bpf_program_runs", "counter"),
            ("policyd_bpf_run_stats_enabled", "gauge"),
            ("process_start_time_seconds", "gauge"),
            ("policyd_build_info", "gauge"),
        ];
        for (name, ty) in types {
            assert!(
                text.contains(&format!("# TYPE {name} {ty}\n")),
                "{name} {ty} missing:\n{text}"
            );
        }
        assert_eq!(
            text.lines().filter(|l| l.starts_with("# TYPE ")).count(),
            types.len(),
            "a metric is missing from the list above:\n{text}"
        );
        assert!(text.ends_with("# EOF\n"));
        assert_eq!(
            samples(&text, "policyd_decode_errors_total"),
            ["policyd_decode_errors_total 0"]
        );
        let has = |line: &str| {
            assert!(text.lines().any(|l| l == line), "no `{line}` in:\n{text}");
        };
        // Zero series of the bundle's rules, before they match anything.
        has(r#"policyd_rule_matches_total{policy="t",rule="audit_sudo"} 0"#);
        has(r#"policyd_denies_total{hook="exec",namespace="",policy="t",rule="deny_tmp"} 0"#);
        has(
            r#"policyd_policy_loaded{bundle="test-bundle",digest="BUNDLE_DIGEST"} 0"#
                .replace("BUNDLE_DIGEST", &bundle().spec.digest)
                .as_str(),
        );
        has(r#"policyd_bpf_ringbuf_drops_total 0"#);
        has(r#"policyd_bpf_runs_total{hook="exec"} 0"#);
        let start = samples(&text, "process_start_time_seconds");
        assert_eq!(start.len(), 1);
        let t: f64 = start[0].split(' ').nth(1).unwrap().parse().unwrap();
        assert!(t > 1.6e9, "{t}");
    }

    #[test]
    fn load_state_follows_the_bundle() {
        let m = Metrics::new();
        let b = bundle();
        m.prepare(&b);
        let loaded = |m: &Metrics| {
            let text = m.encode();
            let line = samples(&text, "policyd_policy_loaded")[0].to_string();
            let generation = samples(&text, "policyd_policy_load_generation")[0].to_string();
            (line.rsplit(' ').next().unwrap().to_string(), generation)
        };
        assert_eq!(
            loaded(&m),
            ("0".into(), "policyd_policy_load_generation 0".into())
        );
        m.loaded(&b, 1);
        assert_eq!(
            loaded(&m),
            ("1".into(), "policyd_policy_load_generation 1".into())
        );
        m.unloaded(&b);
        assert_eq!(loaded(&m).0, "0");
    }

    #[test]
    fn events_are_counted_by_hook_verdict_rule_severity_and_binary() {
        let (table, mut rules) = fixture();
        rules[0].policy = "sudo_audit".into();
        rules[0].severity = Severity::High;
        let m = Metrics::new();
        let audit = decide(Hook::Exec, &table, &rules, &[], &mask_words(&vec![0]));
        let kill = decide(Hook::Exec, &table, &rules, &[], &mask_words(&vec![0, 2]));
        for _ in 0..3 {
            m.record_event("exec", &audit, "/usr/bin/sudo", NO_NAMESPACE);
        }
        m.record_event("exec", &kill, "/tmp/x", NO_NAMESPACE);
        let text = m.encode();
        let has = |line: &str| {
            assert!(text.lines().any(|l| l == line), "no `{line}` in:\n{text}");
        };
        has(r#"policyd_events_total{hook="exec",verdict="allow"} 3"#);
        has(r#"policyd_events_total{hook="exec",verdict="kill"} 1"#);
        has(r#"policyd_rule_matches_total{policy="sudo_audit",rule="sudo_invoked"} 4"#);
        has(r#"policyd_rule_matches_total{policy="p",rule="deny_victim"} 1"#);
        has(r#"policyd_audit_events_total{hook="exec",severity="high"} 4"#);
        has(r#"policyd_denies_total{hook="exec",namespace="",policy="p",rule="deny_victim"} 1"#);
        has(r#"policyd_binary_events_total{hook="exec",binary="/usr/bin/sudo",verdict="allow"} 3"#);
        has(r#"policyd_binary_events_total{hook="exec",binary="/tmp/x",verdict="kill"} 1"#);
    }

    #[test]
    fn binary_labels_are_bounded() {
        let (table, rules) = fixture();
        let d = decide(Hook::Exec, &table, &rules, &[], &mask_words(&vec![0]));
        let m = Metrics::new();
        for i in 0..BINARY_LABEL_LIMIT + 10 {
            m.record_event("exec", &d, &format!("/bin/b{i}"), NO_NAMESPACE);
        }
        // A binary seen before the limit keeps its own series.
        m.record_event("exec", &d, "/bin/b0", NO_NAMESPACE);
        let text = m.encode();
        let series = samples(&text, "policyd_binary_events_total");
        assert_eq!(series.len(), BINARY_LABEL_LIMIT + 1, "{text}");
        assert!(series.contains(
            &r#"policyd_binary_events_total{hook="exec",binary="other",verdict="allow"} 10"#
        ));
        assert!(series.contains(
            &r#"policyd_binary_events_total{hook="exec",binary="/bin/b0",verdict="allow"} 2"#
        ));
    }

    #[test]
    fn label_values_are_escaped() {
        let (table, rules) = fixture();
        let d = decide(Hook::Exec, &table, &rules, &[], &mask_words(&vec![0]));
        let m = Metrics::new();
        m.record_event("exec", &d, "/tmp/a\"b\\c\nd", NO_NAMESPACE);
        let text = m.encode();
        assert!(text.contains(r#"binary="/tmp/a\"b\\c\nd""#), "{text}");
    }

    #[test]
    fn kernel_counters_mirror_the_map_and_never_go_back() {
        let m = Metrics::new();
        let stats = |runs: u64, drops: u64| crate::loader::KernelStats {
            runs: vec![(Hook::Exec, runs), (Hook::Open, 0)],
            counters: vec![(Stat::RingbufDrops, drops)],
        };
        m.set_kernel_stats(&stats(10, 2));
        m.set_kernel_stats(&stats(7, 5));
        m.set_program_stats("exec", "policy_exec", Duration::from_micros(1500), 30);
        m.set_program_stats("exec", "policy_exec", Duration::from_micros(1000), 20);
        m.set_map("str_exact", 3, 3);
        let text = m.encode();
        let has = |line: &str| {
            assert!(text.lines().any(|l| l == line), "no `{line}` in:\n{text}");
        };
        has(r#"policyd_bpf_runs_total{hook="exec"} 10"#);
        assert!(
            !text.contains(r#"hook="open""#),
            "no series for a hook that never ran:\n{text}"
        );
        has(r#"policyd_bpf_ringbuf_drops_total 5"#);
        has(r#"policyd_bpf_program_runs_total{hook="exec",program="policy_exec"} 30"#);
        has(
            r#"policyd_bpf_program_run_time_seconds_total{hook="exec",program="policy_exec"} 0.0015"#,
        );
        has(r#"policyd_map_entries{map="str_exact"} 3"#);
        has(r#"policyd_map_max_entries{map="str_exact"} 3"#);
    }

    #[test]
    fn parse_addr() {
        assert_eq!(parse_metrics_addr("off"), Ok(None));
        assert_eq!(
            parse_metrics_addr("0.0.0.0:2112"),
            Ok(Some("0.0.0.0:2112".parse().unwrap()))
        );
        assert_eq!(
            parse_metrics_addr("[::1]:9"),
            Ok(Some("[::1]:9".parse().unwrap()))
        );
        assert!(parse_metrics_addr("2112").unwrap_err().contains("`2112`"));
        assert!(parse_metrics_addr(DEFAULT_METRICS_ADDR).unwrap().is_some());
    }

    fn get(addr: SocketAddr, path: &str) -> (u32, String) {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        let status = out.split(' ').nth(1).unwrap().parse().unwrap();
        (status, out)
    }

    #[test]
    fn endpoints_answer_health_readiness_and_metrics() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let m = Arc::new(populated());
        let listener = rt
            .block_on(async { bind("127.0.0.1:0".parse().unwrap()) })
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let server = rt.spawn(serve(listener, m.clone()));
        let check = |path: &'static str| {
            rt.block_on(async move {
                tokio::task::spawn_blocking(move || get(addr, path))
                    .await
                    .unwrap()
            })
        };
        assert_eq!(check("/healthz").0, 200);
        let (status, body) = check("/readyz");
        assert_eq!(status, 503, "{body}");
        m.set_ready(true);
        assert_eq!(check("/readyz").0, 200);
        let (status, body) = check("/metrics");
        assert_eq!(status, 200);
        assert!(
            body.to_ascii_lowercase()
                .contains(&format!("content-type: {CONTENT_TYPE}")),
            "{body}"
        );
        assert!(body.contains("# TYPE policyd_events counter"), "{body}");
        assert_eq!(check("/nope").0, 404);
        server.abort();
    }
}
