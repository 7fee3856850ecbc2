//! Parse + check throughput of the front end on a large generated policy.
//!
//! Target (issue 3): at least 50 MB/s of policy source per core. Results and
//! method: docs/performance.md. Run: `cargo bench -p policy-dsl --bench front_end`.
//! `rules` and `parse_only` use the parser's fast path; `pest_only` and
//! `pest_only_parse` the same work with pest for every declaration.

/// The allocator `policyc` ships with (see compiler/src/bin/policyc.rs), so
/// the bench measures what users run.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

/// A policy of `rules` rules mixing every declaration kind and most operators,
/// about 300 bytes per rule.
pub fn generate(rules: usize) -> String {
    let mut s = String::from("policy generated {\n  description = \"generated for the front-end bench\"\n  mode = enforce\n}\n\n");
    for i in 0..rules / 10 + 1 {
        s.push_str(&format!("set bins_{i} = {{ \"/usr/bin/tool{i}a\", \"/usr/bin/tool{i}b\", \"/opt/app{i}/bin/run\" }}\n"));
        s.push_str(&format!("let admin_{i} = user.uid in {{ 0, \"admin{i}\", 1000..1099 }} and process.interactive\n"));
    }
    for i in 0..rules {
        let set = i / 10;
        let rule = match i % 5 {
            0 => format!(
                "rule exec_{i} on exec {{\n  when process.binary in bins_{set} and not process.binary startswith \"/tmp/{i}/\"\n  unless admin_{set}\n  deny\n  audit severity high \"rule {i}\"\n}}\n"
            ),
            1 => format!(
                "rule open_{i} on open {{\n  when file.path == \"/etc/app{i}/secret\" and file.write and process.name != \"app{}\"\n  audit severity medium\n  count \"open_{i}\"\n}}\n",
                i % 1000
            ),
            2 => format!(
                "rule connect_{i} on connect {{\n  when net.daddr in 10.{}.0.0/16 and net.dport in {{ 80, 443, 8000..8999 }} and net.protocol == \"tcp\"\n  kill\n}}\n",
                i % 256
            ),
            3 => format!(
                "rule setuid_{i} on setuid {{\n  when cred.new_euid == 0 and user.uid != user.euid and parent.binary matches \"/usr/*/app{i}\"\n  audit\n  rate 10 per 1m\n}}\n"
            ),
            _ => format!(
                "rule caps_{i} on capset {{\n  when cred.new_caps has {{ CAP_NET_RAW, CAP_SYS_ADMIN }} or user.auid == unset and k8s.label[\"app\"] == \"svc{i}\"\n  audit severity low\n}}\n"
            ),
        };
        s.push_str(&rule);
    }
    s
}

fn front_end(c: &mut Criterion) {
    let mut group = c.benchmark_group("parse_and_check");
    group.sample_size(10);
    for rules in [1_000usize, 10_000] {
        let source = generate(rules);
        // The generated policy must be valid, or the bench measures error paths.
        let report = policy_dsl::check_source(&source);
        assert!(!report.has_errors(), "{:?}", report.diagnostics.first());
        group.throughput(Throughput::Bytes(source.len() as u64));
        group.bench_with_input(BenchmarkId::new("rules", rules), &source, |b, s| {
            b.iter(|| policy_dsl::check_source(std::hint::black_box(s)))
        });
        group.bench_with_input(BenchmarkId::new("parse_only", rules), &source, |b, s| {
            b.iter(|| policy_dsl::parser::parse(std::hint::black_box(s)))
        });
        // The same with pest for every declaration (no fast path): the
        // reference the fast path is measured against.
        let (fast, chunks) = policy_dsl::parser::fast_path_coverage(&source);
        assert_eq!(fast, chunks, "the fast path must take every declaration");
        group.bench_with_input(BenchmarkId::new("pest_only", rules), &source, |b, s| {
            b.iter(|| {
                let parsed = policy_dsl::parser::parse_declarations_with(
                    std::hint::black_box(s),
                    policy_dsl::parser::Mode::PestOnly,
                );
                policy_dsl::check::check(&parsed.file)
            })
        });
        group.bench_with_input(
            BenchmarkId::new("pest_only_parse", rules),
            &source,
            |b, s| {
                b.iter(|| {
                    policy_dsl::parser::parse_declarations_with(
                        std::hint::black_box(s),
                        policy_dsl::parser::Mode::PestOnly,
                    )
                })
            },
        );
    }
    group.finish();
}

criterion_group!(benches, front_end);
criterion_main!(benches);
