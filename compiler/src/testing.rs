//! `policyc test`: run the `test` blocks of policy files against the compiled
//! bundle (the bundle evaluator, the kernel's algorithm), not the AST.
//!
//! ```text
//! sources ──compile_for_evaluation──► bundle + checked tests
//!         ──eval_bundle per test event──► Outcome ──expects──► ok / FAILED
//! ```

use serde::Serialize;

use crate::bundle::{PolicyBundle, Verdict};
use crate::compile::{compile_for_evaluation, CompileFailure, Located, SourceFile};
use crate::eval::{Evaluator, Outcome};
use policy_dsl::checked::Expect;

/// Name of the bundle `policyc test` compiles (never written).
pub const TEST_BUNDLE_NAME: &str = "policyc-test";

/// The result of every test of the files.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TestReport {
    /// One entry per `test` block, in file order then source order.
    pub tests: Vec<TestResult>,
    /// Number of tests whose expectations all held.
    pub passed: usize,
    /// Number of tests with a failed expectation.
    pub failed: usize,
    /// Compile warnings (not printed by [`TestReport::human`]).
    #[serde(skip)]
    pub warnings: Vec<Located>,
}

/// One test's result.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TestResult {
    /// Source file, as given.
    pub file: String,
    /// The policy (file) the test belongs to.
    pub policy: String,
    /// The test's name.
    pub name: String,
    /// 1-based line of the `test` keyword.
    pub line: u32,
    /// Whether every expectation held.
    pub passed: bool,
    /// The expectations that did not hold, each as written (`deny`,
    /// `audit p.r`, `no audit`, `count "c"`).
    pub failures: Vec<String>,
    /// What the bundle decided.
    pub outcome: OutcomeView,
}

/// An [`Outcome`] with rules named `policy.rule`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OutcomeView {
    /// Enforced verdict.
    pub verdict: Verdict,
    /// Verdict with monitor-mode policies enforced too.
    pub would_verdict: Verdict,
    /// Rules that matched.
    pub matched: Vec<String>,
    /// Rules that audited (including monitor-mode would-deny rules).
    pub audit: Vec<String>,
    /// Monitor-mode deny/kill rules that matched, not enforced.
    pub would_deny: Vec<String>,
    /// `default deny` scopes that matched.
    pub scopes: Vec<String>,
    /// Counters incremented.
    pub counters: Vec<String>,
}

impl OutcomeView {
    fn new(bundle: &PolicyBundle, o: &Outcome) -> OutcomeView {
        let rules = |ids: &[u32]| -> Vec<String> {
            ids.iter()
                .map(|&i| {
                    let r = &bundle.spec.rules[i as usize];
                    format!("{}.{}", r.policy, r.name)
                })
                .collect()
        };
        OutcomeView {
            verdict: o.verdict,
            would_verdict: o.would_verdict,
            matched: rules(&o.matched),
            audit: rules(&o.audit),
            would_deny: rules(&o.would_deny),
            scopes: o
                .scopes
                .iter()
                .map(|&i| {
                    let s = &bundle.spec.scopes[i as usize];
                    format!("{}.{}", s.policy, s.name)
                })
                .collect(),
            counters: o.counters.clone(),
        }
    }

    /// One line: `verdict allow; audited: p.r; counters: c` (and the
    /// would-be verdict, would-deny rules and scopes when there are any).
    pub fn describe(&self) -> String {
        let list = |v: &[String]| {
            if v.is_empty() {
                "none".to_string()
            } else {
                v.join(", ")
            }
        };
        let mut out = format!("verdict {}", self.verdict.as_str());
        if self.would_verdict != self.verdict {
            out.push_str(&format!(
                " (would be {} with monitor policies enforced)",
                self.would_verdict.as_str()
            ));
        }
        out.push_str(&format!(
            "; audited: {}; counters: {}",
            list(&self.audit),
            list(&self.counters)
        ));
        if !self.would_deny.is_empty() {
            out.push_str(&format!("; would deny: {}", list(&self.would_deny)));
        }
        if !self.scopes.is_empty() {
            out.push_str(&format!("; default deny scopes: {}", list(&self.scopes)));
        }
        out
    }
}

/// Compile the sources for evaluation and run every test.
///
/// # Errors
/// The [`CompileFailure`] when the sources do not compile.
pub fn run_tests(sources: &[SourceFile]) -> Result<TestReport, CompileFailure> {
    let (compiled, policies) = compile_for_evaluation(sources, TEST_BUNDLE_NAME)?;
    let bundle = &compiled.bundle;
    let evaluator = Evaluator::new(bundle);
    let mut tests = Vec::new();
    for (file, policy) in policies.iter().enumerate() {
        for t in &policy.tests {
            let outcome = evaluator.eval(&t.event);
            let view = OutcomeView::new(bundle, &outcome);
            let failures: Vec<String> =
                t.expects.iter().filter_map(|e| failure(e, &view)).collect();
            let (line, _) = crate::compile::line_column(&sources[file].text, t.span.start);
            tests.push(TestResult {
                file: sources[file].name.clone(),
                policy: policy.name.clone(),
                name: t.name.clone(),
                line,
                passed: failures.is_empty(),
                failures,
                outcome: view,
            });
        }
    }
    let passed = tests.iter().filter(|t| t.passed).count();
    Ok(TestReport {
        failed: tests.len() - passed,
        passed,
        tests,
        warnings: compiled.warnings,
    })
}

/// The expectation as written, when it does not hold.
fn failure(expect: &Expect, o: &OutcomeView) -> Option<String> {
    match expect {
        Expect::Verdict(a) => {
            let want = Verdict::from(*a);
            (o.verdict != want).then(|| want.as_str().to_string())
        }
        Expect::Audit(rules) => {
            let missing: Vec<String> = rules
                .iter()
                .map(|(p, r)| format!("{p}.{r}"))
                .filter(|r| !o.audit.contains(r))
                .collect();
            (!missing.is_empty()).then(|| format!("audit {}", missing.join(", ")))
        }
        Expect::NoAudit => (!o.audit.is_empty()).then(|| "no audit".to_string()),
        Expect::Count(c) => (!o.counters.contains(c)).then(|| format!("count {c:?}")),
    }
}

impl TestReport {
    /// Whether every test passed.
    pub fn ok(&self) -> bool {
        self.failed == 0
    }

    /// The human report: a line per test, for each failure the expectation
    /// and what happened, then `N passed, M failed`.
    pub fn human(&self) -> String {
        let mut out = String::new();
        for t in &self.tests {
            let status = if t.passed { "ok" } else { "FAILED" };
            out.push_str(&format!(
                "test {}:{} {} ... {status}\n",
                t.file, t.line, t.name
            ));
            for f in &t.failures {
                out.push_str(&format!("  expected {f}\n"));
            }
            if !t.passed {
                out.push_str(&format!("  got {}\n", t.outcome.describe()));
            }
        }
        out.push_str(&format!("{} passed, {} failed\n", self.passed, self.failed));
        out
    }

    /// The JSON report, documented in `docs/language.md` (Tests):
    /// `{"tests": [...], "passed": N, "failed": M}`.
    pub fn json(&self) -> String {
        let mut s = serde_json::to_string_pretty(self).expect("test report serialises");
        s.push('\n');
        s
    }
}
