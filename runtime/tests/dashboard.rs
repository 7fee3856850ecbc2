//! The Grafana dashboard (`charts/policyd/dashboards/policyd.json`) queries
//! only metrics and labels that policyd exports.
//!
//! Every PromQL expression of the dashboard (panel targets and template
//! variables) is tokenized; each metric name it selects must be a sample
//! name of policyd's `/metrics` text, each label it matches on must be a
//! label of that metric, and each label it groups by or shows in a legend
//! must be a label of some metric of the expression. `/metrics` is the
//! registry as the daemon builds it ([`Metrics`]), prepared for a bundle with
//! an auditing and a denying rule and fed one event of each kind, so every
//! family has a series. `instance` and `job` are the labels Prometheus adds
//! to every scraped series.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use policy_compiler::bundle::{mask_words, Hook, PolicyBundle};
use policy_compiler::{compile, SourceFile};
use policy_runtime::abi::Stat;
use policy_runtime::decision::decide;
use policy_runtime::loader::map_sizes;
use policy_runtime::loader::KernelStats;
use policy_runtime::metrics::{Metrics, NO_NAMESPACE};
use policy_runtime::tables::KernelTables;
use serde_json::Value;

const DASHBOARD: &str = include_str!("../../charts/policyd/dashboards/policyd.json");
/// Labels Prometheus attaches to every series of a target.
const TARGET_LABELS: [&str; 2] = ["instance", "job"];

fn bundle() -> PolicyBundle {
    let text = "policy audit_and_deny {}\n\
                rule sudo_invoked on exec { when process.binary == \"/usr/bin/sudo\" audit }\n\
                rule no_tmp on exec { when process.binary startswith \"/tmp/\" deny }\n";
    compile(
        &[SourceFile {
            name: "t.policy".into(),
            text: text.into(),
        }],
        "dashboard-test",
    )
    .unwrap()
    .bundle
}

/// policyd's `/metrics` text with a series in every family.
fn metrics_text() -> String {
    let bundle = bundle();
    let m = Metrics::new();
    m.prepare(&bundle);
    let exec = &bundle.spec.hooks[&Hook::Exec];
    let terms_of = |rule: &str| -> Vec<u32> {
        let id = bundle
            .spec
            .rules
            .iter()
            .find(|r| r.name == rule)
            .unwrap()
            .id;
        exec.terms
            .iter()
            .filter(|t| t.rule == id)
            .map(|t| t.id)
            .collect()
    };
    let rules = &bundle.spec.rules;
    let audit = decide(
        Hook::Exec,
        exec,
        rules,
        &[],
        &mask_words(&terms_of("sudo_invoked")),
    );
    let deny = decide(
        Hook::Exec,
        exec,
        rules,
        &[],
        &mask_words(&terms_of("no_tmp")),
    );
    assert_eq!((audit.verdict, deny.verdict), ("allow", "kill"));
    m.record_event("exec", &audit, "/usr/bin/sudo", NO_NAMESPACE);
    m.record_event("exec", &deny, "/tmp/x", NO_NAMESPACE);
    m.decode_error();
    m.export_error();
    m.set_kernel_stats(&KernelStats {
        runs: vec![(Hook::Exec, 1)],
        counters: Stat::ALL.map(|s| (s, 1)).to_vec(),
    });
    m.set_program_stats("exec", "policy_exec", Duration::from_micros(3), 2);
    m.set_run_stats_enabled(true);
    for (map, entries, max) in map_sizes(&KernelTables::from_bundle(&bundle).unwrap()) {
        m.set_map(map, entries, max);
    }
    m.loaded(&bundle, 1);
    m.encode()
}

/// Sample name → label names, from OpenMetrics text.
fn exported(text: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let end = line.find(['{', ' ']).unwrap();
        let labels = out.entry(line[..end].to_string()).or_default();
        let mut rest = &line[end..];
        if let Some(r) = rest.strip_prefix('{') {
            rest = r;
            while let Some((key, after)) = rest.split_once("=\"") {
                labels.insert(key.trim_start_matches(',').to_string());
                // Skip the value, honouring escapes.
                let mut chars = after.char_indices();
                let mut close = after.len();
                while let Some((i, c)) = chars.next() {
                    match c {
                        '\\' => {
                            chars.next();
                        }
                        '"' => {
                            close = i;
                            break;
                        }
                        _ => {}
                    }
                }
                rest = &after[close + 1..];
                if rest.starts_with('}') {
                    break;
                }
            }
        }
    }
    out
}

/// What one PromQL expression refers to.
#[derive(Debug, Default)]
struct Refs {
    /// Metric name → labels used in its matchers.
    metrics: BTreeMap<String, BTreeSet<String>>,
    /// Labels in `by (…)`, `without (…)`, `on (…)`, `ignoring (…)`.
    grouping: BTreeSet<String>,
}

/// Words that are not metric names where they are not followed by `(`:
/// binary operators and modifiers, and aggregations (`sum by (…) (…)`).
const KEYWORDS: [&str; 21] = [
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "group_left",
    "group_right",
    "by",
    "without",
    "on",
    "ignoring",
    "sum",
    "min",
    "max",
    "avg",
    "count",
    "group",
    "stddev",
    "stdvar",
    "topk",
    "bottomk",
];

/// Tokenize `expr` and collect its metric names, matcher labels and
/// grouping labels. Strings, durations in `[…]` and `$variables` are skipped.
fn refs(expr: &str) -> Refs {
    let mut r = Refs::default();
    let b = expr.as_bytes();
    let mut i = 0;
    let mut last_metric: Option<String> = None;
    let ident = |i: usize| {
        let mut j = i;
        while j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == b'_' || b[j] == b':') {
            j += 1;
        }
        j
    };
    let skip_ws = |mut i: usize| {
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        i
    };
    while i < b.len() {
        let c = b[i];
        if c == b'"' {
            i += 1;
            while i < b.len() && b[i] != b'"' {
                i += if b[i] == b'\\' { 2 } else { 1 };
            }
            i += 1;
        } else if c == b'[' {
            while i < b.len() && b[i] != b']' {
                i += 1;
            }
            i += 1;
        } else if c == b'$' {
            i = ident(i + 1);
        } else if c == b'{' {
            // Matchers of the metric just read (or of no metric: `{__name__=…}`).
            let metric = last_metric
                .clone()
                .expect("a selector without a metric name");
            i += 1;
            loop {
                i = skip_ws(i);
                if i >= b.len() || b[i] == b'}' {
                    i += 1;
                    break;
                }
                if b[i] == b',' {
                    i += 1;
                    continue;
                }
                let j = ident(i);
                assert!(j > i, "cannot read the matchers of {expr}");
                r.metrics
                    .get_mut(&metric)
                    .unwrap()
                    .insert(expr[i..j].to_string());
                i = skip_ws(j);
                while i < b.len() && matches!(b[i], b'=' | b'!' | b'~') {
                    i += 1;
                }
                i = skip_ws(i);
                assert_eq!(b[i], b'"', "matcher value of {expr}");
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    i += if b[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
            }
        } else if c.is_ascii_alphabetic() || c == b'_' {
            let j = ident(i);
            let word = &expr[i..j];
            let next = skip_ws(j);
            let call = next < b.len() && b[next] == b'(';
            if matches!(word, "by" | "without" | "on" | "ignoring") && call {
                let close = next + expr[next..].find(')').unwrap();
                for label in expr[next + 1..close].split(',') {
                    let label = label.trim();
                    if !label.is_empty() {
                        r.grouping.insert(label.to_string());
                    }
                }
                i = close + 1;
                continue;
            }
            if !call && !KEYWORDS.contains(&word) && !word.chars().all(|c| c.is_ascii_digit()) {
                r.metrics.entry(word.to_string()).or_default();
                last_metric = Some(word.to_string());
            }
            i = j;
        } else {
            i += 1;
        }
    }
    r
}

/// Every (PromQL expression, legend) of the dashboard, and every
/// `label_values(metric, label)` of its template variables.
/// (expression, legend) pairs, or (metric, label) pairs.
type Pairs = Vec<(String, String)>;

fn queries(dash: &Value) -> (Pairs, Pairs) {
    fn walk(v: &Value, out: &mut Vec<(String, String)>) {
        match v {
            Value::Object(o) => {
                if let Some(Value::String(expr)) = o.get("expr") {
                    let legend = o.get("legendFormat").and_then(Value::as_str).unwrap_or("");
                    out.push((expr.clone(), legend.to_string()));
                }
                o.values().for_each(|v| walk(v, out));
            }
            Value::Array(a) => a.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    let mut exprs = Vec::new();
    walk(&dash["panels"], &mut exprs);
    let mut label_values = Vec::new();
    for var in dash["templating"]["list"].as_array().unwrap() {
        let q = match &var["query"] {
            Value::String(s) => s.clone(),
            Value::Object(o) => o["query"].as_str().unwrap_or("").to_string(),
            _ => continue,
        };
        if let Some(args) = q
            .strip_prefix("label_values(")
            .and_then(|s| s.strip_suffix(')'))
        {
            let (metric, label) = args.split_once(',').unwrap();
            label_values.push((metric.trim().to_string(), label.trim().to_string()));
        }
    }
    (exprs, label_values)
}

fn legend_labels(legend: &str) -> Vec<String> {
    legend
        .split("{{")
        .skip(1)
        .filter_map(|s| s.split_once("}}"))
        .map(|(l, _)| l.trim().to_string())
        .collect()
}

#[test]
fn every_metric_and_label_of_the_dashboard_is_exported() {
    let dash: Value = serde_json::from_str(DASHBOARD).expect("dashboard is JSON");
    let exported = exported(&metrics_text());
    let (exprs, label_values) = queries(&dash);
    assert!(exprs.len() >= 10, "too few queries found: {exprs:#?}");
    let mut problems = Vec::new();
    let mut used = BTreeSet::new();
    let has_label = |metric: &str, label: &str| {
        TARGET_LABELS.contains(&label) || exported[metric].contains(label)
    };
    for (expr, legend) in &exprs {
        let r = refs(expr);
        assert!(!r.metrics.is_empty(), "no metric in {expr}");
        for (metric, labels) in &r.metrics {
            used.insert(metric.clone());
            let Some(known) = exported.get(metric) else {
                problems.push(format!("{expr}: metric {metric} is not exported"));
                continue;
            };
            for l in labels {
                if !TARGET_LABELS.contains(&l.as_str()) && !known.contains(l) {
                    problems.push(format!("{expr}: {metric} has no label {l}"));
                }
            }
        }
        let present = |l: &str| {
            r.metrics
                .keys()
                .any(|m| exported.contains_key(m) && has_label(m, l))
        };
        for l in &r.grouping {
            if !present(l) {
                problems.push(format!(
                    "{expr}: groups by {l}, which none of its metrics has"
                ));
            }
        }
        for l in legend_labels(legend) {
            if !present(&l) {
                problems.push(format!(
                    "{expr}: legend uses {{{{{l}}}}}, which none of its metrics has"
                ));
            }
        }
    }
    for (metric, label) in &label_values {
        used.insert(metric.clone());
        if !exported.contains_key(metric) || !has_label(metric, label) {
            problems.push(format!("label_values({metric}, {label}): not exported"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    // The panels the dashboard promises (issue 6).
    for m in [
        "policyd_events_total",
        "policyd_rule_matches_total",
        "policyd_binary_events_total",
        "policyd_denies_total",
        "policyd_bpf_ringbuf_drops_total",
        "policyd_policy_loaded",
        "policyd_bpf_program_run_time_seconds_total",
        "policyd_bpf_program_runs_total",
    ] {
        assert!(used.contains(m), "the dashboard does not query {m}");
    }
}

#[test]
fn the_checker_catches_unknown_metrics_and_labels() {
    let r = refs(
        r#"topk(10, sum by (policy, rule) (increase(policyd_rule_matches_total{instance=~"$instance", x!="a,b"}[$__range]))) / on (rule) other_metric"#,
    );
    assert_eq!(
        r.metrics.keys().collect::<Vec<_>>(),
        ["other_metric", "policyd_rule_matches_total"]
    );
    assert_eq!(
        r.metrics["policyd_rule_matches_total"],
        BTreeSet::from(["instance".to_string(), "x".to_string()])
    );
    assert_eq!(
        r.grouping,
        BTreeSet::from(["policy".to_string(), "rule".to_string()])
    );
    let e = exported("# TYPE a counter\na_total{x=\"1,\\\"y=\\\"\",z=\"\"} 1\nb 2\n# EOF\n");
    assert_eq!(
        e["a_total"],
        BTreeSet::from(["x".to_string(), "z".to_string()])
    );
    assert!(e["b"].is_empty());
    assert_eq!(legend_labels("{{policy}}/{{ rule }}"), ["policy", "rule"]);
}
