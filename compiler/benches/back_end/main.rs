//! Back-end measures (issue 4): compile time, per-event evaluator time and
//! bytes per rule, for 10 … 100,000 generated rules.
//!
//! Run: `cargo bench -p policy-compiler --bench back_end` (all sizes), or
//! `benches/back_end.sh` at the repository root for the table of
//! docs/performance.md. `POLICYC_BENCH_SIZES=10,100` restricts the sizes.
//!
//! Groups, per number of rules `N`:
//! - `compile/N`: [`compile::compile`], what `policyc compile` does (parse,
//!   check, term limit, analysis, lowering, bundle, size check), on
//!   runtime-loadable rules, at every size: every generated rule is one term
//!   on the `exec` hook, and past one kernel mask the terms are split by an
//!   anchor (compiler/src/layout.rs), so `N` ≤ [`MAX_TERMS_PER_HOOK`] (2^20)
//!   holds for all default sizes. A size the compiler refuses (e.g.
//!   `policyc::kernel_limit`) is printed as `SIZE compile … skipped: why`.
//! - `compile_eval/N`: [`compile::compile_for_evaluation`] (`policyc test`)
//!   on rules that also test `user.uid`, same bound.
//! - `check/N`: parse + check ([`compile::check`]), every size.
//! - `lower/N`: lowering of all `N` rules into one hook's tables with the term
//!   limit lifted ([`lower::lower_program_with_limit`]), every size: how the
//!   table construction scales once the kernel mask is larger.
//! - `analysis/N`: the overlap/shadow analysis alone ([`overlap::warnings`]),
//!   part of `compile/N`, same bound (its term masks are kernel masks).
//! - `yaml/N`: writing the bundle of those tables as YAML, every size.
//! - `eval_bundle/N`: the bundle evaluator per event on those tables, for
//!   256 events cycling through hits of each rule kind and misses: an
//!   [`eval::Evaluator`] prepared once (its index built before the timing),
//!   then [`eval::Evaluator::eval`] per event, as `policyc test`, `diff` and
//!   the analysis use it.
//! - `eval_once/N`: [`eval::eval_bundle`] per event, which prepares the
//!   hook's index on every call (the cost of one-shot use, e.g. `policyc
//!   explain`).
//!
//! Bytes per rule are printed once per size (`SIZE` lines on stderr): the
//! bundle YAML and `policyc inspect`'s estimated kernel memory, and for the
//! `lower` bundle each kernel map's `name:entries:bytes` (`maps=`). A filter
//! matching no bench (`-- zzz`) prints only these lines.
//!
//! Warm repeated runs without criterion: `POLICYC_BENCH_WARM=check,lower,compile_eval,compile`
//! (any of these; `compile` is the `compile` row's whole `policyc compile`) times each named stage `POLICYC_BENCH_WARM_RUNS` times
//! (default 5) after one untimed run, per size, and prints `WARM stage
//! rules=N runs=R min_ms= median_ms= max_ms= minor_faults_per_run=`
//! lines on stderr. With a filter
//! matching no criterion bench (`-- zzz`) this gives warm figures at sizes
//! where criterion's samples take too long, and a process that runs one
//! stage a known number of times, for counting instructions per run with
//! `perf stat` (the difference of two run counts) or `valgrind
//! --tool=callgrind --toggle-collect=…`. In this mode the other measures
//! are skipped.

/// The allocator `policyc` ships with (compiler/src/bin/policyc.rs).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::collections::BTreeMap;
use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use policy_compiler::compile::{self, SourceFile};
use policy_compiler::limits::MAX_TERMS_PER_HOOK;
use policy_compiler::{eval, inspect, lower, overlap};
use policy_dsl::checked::{Event, FieldKey, Value};
use policy_dsl::schema::{Field, Hook};

mod generate;

/// Sizes measured unless `POLICYC_BENCH_SIZES` says otherwise (the largest
/// one bundle holds, [`MAX_TERMS_PER_HOOK`] = 2^20 one-term rules, is no
/// longer added: it is far past the sizes of the issue).
const SIZES: [usize; 5] = [10, 100, 1_000, 10_000, 100_000];

fn sizes() -> Vec<usize> {
    let mut sizes: Vec<usize> = match std::env::var("POLICYC_BENCH_SIZES") {
        Ok(s) => s.split(',').filter_map(|n| n.trim().parse().ok()).collect(),
        Err(_) => SIZES.to_vec(),
    };
    sizes.sort_unstable();
    sizes.dedup();
    sizes
}

/// The stages named in `POLICYC_BENCH_WARM`, and `POLICYC_BENCH_WARM_RUNS`.
fn warm_stages() -> (Vec<String>, usize) {
    let stages = std::env::var("POLICYC_BENCH_WARM")
        .map(|s| s.split(',').map(|t| t.trim().to_string()).collect())
        .unwrap_or_default();
    let runs = std::env::var("POLICYC_BENCH_WARM_RUNS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(5);
    (stages, runs)
}

/// Minor page faults of this process so far (`/proc/self/stat` field 10;
/// 0 where there is none): first touches of fresh memory.
fn minor_faults() -> u64 {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            // Fields after the command name, which is in parentheses.
            let rest = s.rsplit_once(')')?.1;
            rest.split_whitespace().nth(7)?.parse().ok()
        })
        .unwrap_or(0)
}

/// Runs `f` once untimed, then `runs` times, and prints the `WARM` line
/// (times, and minor page faults per timed run).
fn warm(stage: &str, n: usize, runs: usize, mut f: impl FnMut() -> bool) {
    black_box(f());
    let faults = minor_faults();
    let mut ms: Vec<f64> = (0..runs)
        .map(|_| {
            let t0 = std::time::Instant::now();
            black_box(f());
            t0.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    let faults = (minor_faults() - faults) / runs.max(1) as u64;
    ms.sort_by(f64::total_cmp);
    if let (Some(min), Some(max)) = (ms.first(), ms.last()) {
        eprintln!(
            "WARM {stage} rules={n} runs={runs} min_ms={min:.2} median_ms={:.2} max_ms={max:.2} minor_faults_per_run={faults}",
            ms[runs / 2]
        );
    }
}

/// The warm runs of `POLICYC_BENCH_WARM` at size `n` (see the module docs);
/// `false` when it names no stage.
fn warm_runs(n: usize, mixed: &[SourceFile], loadable: &[SourceFile]) -> bool {
    let (stages, runs) = warm_stages();
    for stage in &stages {
        match stage.as_str() {
            "check" => warm("check", n, runs, || compile::check(mixed).0.is_some()),
            "lower" => {
                let (policies, _) = compile::check(mixed);
                let policies = policies.expect("generated policy must check");
                let program = lower::Program::new(&policies);
                warm("lower", n, runs, || {
                    lower::lower_program_with_limit(&program, usize::MAX).is_ok()
                })
            }
            "compile_eval" => warm("compile_eval", n, runs, || {
                compile::compile_for_evaluation(mixed, "bench").is_ok()
            }),
            // All of `policyc compile` on the loadable rules (layout check
            // included); a refusal is timed too, so say whether it accepts.
            "compile" => {
                let ok = compile::compile(loadable, "bench").is_ok();
                eprintln!("WARM compile rules={n} accepted={ok}");
                warm("compile", n, runs, || {
                    compile::compile(loadable, "bench").is_ok()
                })
            }
            other => eprintln!("WARM {other}: unknown stage (check, lower, compile_eval, compile)"),
        }
    }
    !stages.is_empty()
}

fn source(text: String) -> Vec<SourceFile> {
    vec![SourceFile {
        name: "generated.policy".into(),
        text,
    }]
}

/// `count` exec events cycling through hits of each rule kind and misses.
fn events(rules: usize, count: usize, uid: bool) -> Vec<Event> {
    let mut rng = generate::Rng::new(7);
    (0..count)
        .map(|k| {
            let i = rng.below(rules.max(1) as u64) as usize;
            let binary = match k % 5 {
                0 => format!("/usr/bin/tool{i}"),
                1 => format!("/opt/team{}/bin/b", i / generate::SET_EVERY),
                2 => format!("/opt/vendor{i}/bin/run"),
                3 => format!("/usr/local/bin/x{i}"),
                _ => format!("/home/user{i}/a.out"),
            };
            let mut fields = BTreeMap::new();
            fields.insert(FieldKey::plain(Field::ProcessBinary), Value::Str(binary));
            if uid {
                let u = [0, 1000 + (i as u64 % 1000), 65534][k % 3];
                fields.insert(FieldKey::plain(Field::UserUid), Value::Int(u));
            }
            Event {
                hook: Hook::Exec,
                fields,
            }
        })
        .collect()
}

fn back_end(c: &mut Criterion) {
    let mut group = c.benchmark_group("back_end");
    group.sample_size(10);
    for n in sizes() {
        let loadable = source(generate::policy(n, false));
        let mixed = source(generate::policy(n, true));
        if warm_runs(n, &mixed, &loadable) {
            continue;
        }
        // One term per rule, all on `exec`: the bundle holds them iff n ≤ the limit.
        let fits = n <= MAX_TERMS_PER_HOOK;
        if fits {
            // Within the term limit a bundle can still be refused, as one
            // Kubernetes object too large (k8s::MAX_BUNDLE_BYTES, 1 MiB):
            // reported, not benched (the other stages still are).
            // Timed once as well, so that `-- zzz` (no criterion bench) still
            // gives a figure at sizes where 10 samples take too long.
            let t0 = std::time::Instant::now();
            let once = compile::compile(&loadable, "bench");
            let once_ms = t0.elapsed().as_secs_f64() * 1e3;
            match once {
                Ok(compiled) => {
                    let yaml = compiled.bundle.to_yaml().len();
                    let kernel = inspect::inspect(&compiled.bundle).bytes;
                    eprintln!(
                        "SIZE compile rules={n} once_ms={once_ms:.1} yaml_bytes={yaml} kernel_bytes={kernel} yaml_per_rule={} kernel_per_rule={} warnings={}",
                        yaml / n,
                        kernel / n as u64,
                        compiled.warnings.len()
                    );
                    group.bench_with_input(BenchmarkId::new("compile", n), &loadable, |b, s| {
                        b.iter(|| compile::compile(black_box(s), "bench").is_ok())
                    });
                }
                Err(e) => {
                    let why = e
                        .diagnostics
                        .iter()
                        .find(|d| !d.diagnostic.is_warning())
                        .map(|d| d.diagnostic.to_string())
                        .unwrap_or_default();
                    eprintln!("SIZE compile rules={n} once_ms={once_ms:.1} skipped: {why}");
                }
            }
            let t0 = std::time::Instant::now();
            compile::compile_for_evaluation(&mixed, "bench")
                .unwrap_or_else(|e| panic!("generated policy must compile: {e}"));
            eprintln!(
                "SIZE compile_eval rules={n} once_ms={:.1}",
                t0.elapsed().as_secs_f64() * 1e3
            );
            group.bench_with_input(BenchmarkId::new("compile_eval", n), &mixed, |b, s| {
                b.iter(|| compile::compile_for_evaluation(black_box(s), "bench").is_ok())
            });
        } else {
            eprintln!(
                "SIZE compile rules={n} skipped: {n} terms on `exec` exceed MAX_TERMS_PER_HOOK = {MAX_TERMS_PER_HOOK}"
            );
        }
        group.bench_with_input(BenchmarkId::new("check", n), &mixed, |b, s| {
            b.iter(|| compile::check(black_box(s)).0.is_some())
        });
        let (policies, diagnostics) = compile::check(&mixed);
        let policies =
            policies.unwrap_or_else(|| panic!("generated policy must check: {diagnostics:?}"));
        if fits {
            group.bench_with_input(BenchmarkId::new("analysis", n), &policies, |b, p| {
                b.iter(|| overlap::warnings(black_box(p)).len())
            });
        }
        let program = lower::Program::new(&policies);
        group.bench_with_input(BenchmarkId::new("lower", n), &program, |b, p| {
            b.iter(|| lower::lower_program_with_limit(black_box(p), usize::MAX).is_ok())
        });
        let hooks = lower::lower_program_with_limit(&program, usize::MAX).expect("lowers");
        let bundle = lower::evaluation_bundle(&program, hooks);
        group.bench_with_input(BenchmarkId::new("yaml", n), &bundle, |b, bundle| {
            b.iter(|| black_box(bundle).to_yaml().len())
        });
        let yaml = bundle.to_yaml().len();
        let report = inspect::inspect(&bundle);
        let kernel = report.bytes;
        // Entries and bytes per kernel map, for the reading of the column.
        let maps: Vec<String> = report
            .maps
            .iter()
            .filter(|m| m.entries > 0)
            .map(|m| format!("{}:{}:{}", m.map, m.entries, m.bytes))
            .collect();
        eprintln!(
            "SIZE lower rules={n} yaml_bytes={yaml} kernel_bytes={kernel} yaml_per_rule={} kernel_per_rule={} maps={}",
            yaml / n,
            kernel / n as u64,
            maps.join(",")
        );
        let events = events(n, 256, true);
        let evaluator = eval::Evaluator::new(&bundle);
        for e in &events {
            evaluator.eval(e); // builds the index: not part of the per-event time
        }
        group.bench_with_input(BenchmarkId::new("eval_bundle", n), &events, |b, evs| {
            let mut k = 0;
            b.iter(|| {
                k = (k + 1) % evs.len();
                black_box(&evaluator).eval(&evs[k])
            })
        });
        group.bench_with_input(BenchmarkId::new("eval_once", n), &events, |b, evs| {
            let mut k = 0;
            b.iter(|| {
                k = (k + 1) % evs.len();
                eval::eval_bundle(black_box(&bundle), &evs[k])
            })
        });
    }
    group.finish();
}

criterion_group!(benches, back_end);
criterion_main!(benches);
