//! The shipped policy library (`policies/`): every file's `test` blocks pass
//! through the library API ([`policy_compiler::testing::run_tests`]), alone
//! and all files together (as `policyc test policies/*.policy` and the
//! demo's bundle see them), with the number of tests each file is known to
//! have; outcomes the language's `expect` cannot state (a rule that must
//! *not* audit while another does, a monitor policy's would-be verdict) are
//! checked here; every file is either loaded by the runtime today or refused
//! only with `policyc::unsupported`; and every file has its line in
//! `docs/policies.md`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use policy_compiler::bundle::Verdict;
use policy_compiler::compile::{compile, SourceFile};
use policy_compiler::testing::{run_tests, TestReport};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Every shipped file and its number of `test` blocks. A file added to
/// `policies/` must be added here (and to docs/policies.md).
const LIBRARY: &[(&str, usize)] = &[
    ("policies/container-shell.policy", 6),
    ("policies/interactive-no-auid.policy", 6),
    ("policies/metadata-connect.policy", 5),
    ("policies/module-load.policy", 4),
    ("policies/ptrace.policy", 4),
    ("policies/setuid-root.policy", 7),
    ("policies/shadow-read.policy", 8),
    ("policies/su-audit.policy", 5),
    ("policies/sudo-audit.policy", 2),
];

/// The shipped sources, named relative to the workspace, sorted.
fn shipped() -> Vec<SourceFile> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(workspace().join("policies"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "policy"))
        .collect();
    paths.sort();
    paths
        .into_iter()
        .map(|p| SourceFile {
            name: p.strip_prefix(workspace()).unwrap().display().to_string(),
            text: std::fs::read_to_string(&p).unwrap(),
        })
        .collect()
}

fn failures(report: &TestReport) -> String {
    report
        .tests
        .iter()
        .filter(|t| !t.passed)
        .map(|t| {
            format!(
                "{}:{} {}: expected {:?}, got {}",
                t.file,
                t.line,
                t.name,
                t.failures,
                t.outcome.describe()
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn every_shipped_file_is_in_the_library_table() {
    let files: Vec<String> = shipped().into_iter().map(|s| s.name).collect();
    let listed: Vec<String> = LIBRARY.iter().map(|(f, _)| f.to_string()).collect();
    assert_eq!(files, listed, "policies/ and LIBRARY differ");
}

#[test]
fn each_file_passes_its_tests_alone() {
    for source in shipped() {
        let expected = LIBRARY
            .iter()
            .find(|(f, _)| *f == source.name)
            .map(|(_, n)| *n)
            .unwrap_or_else(|| panic!("{} is not in LIBRARY", source.name));
        let report = run_tests(std::slice::from_ref(&source)).unwrap_or_else(|e| panic!("{e}"));
        assert!(report.ok(), "{}", failures(&report));
        assert_eq!(report.failed, 0);
        assert_eq!(report.passed, expected, "{}: number of tests", source.name);
        assert!(
            report.warnings.is_empty(),
            "{}: {:?}",
            source.name,
            report.warnings
        );
    }
}

#[test]
fn all_files_pass_their_tests_together() {
    // One bundle of every file, as the node runs them: a test's `expect no
    // audit` must hold against the other files' rules too.
    let report = run_tests(&shipped()).unwrap_or_else(|e| panic!("{e}"));
    assert!(report.ok(), "{}", failures(&report));
    let total: usize = LIBRARY.iter().map(|(_, n)| n).sum();
    assert_eq!(report.passed, total);
    assert_eq!(report.failed, 0);
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);
    // Per file, in the combined report too.
    let mut per_file: BTreeMap<&str, usize> = BTreeMap::new();
    for t in &report.tests {
        *per_file.entry(t.file.as_str()).or_default() += 1;
    }
    let expected: BTreeMap<&str, usize> = LIBRARY.iter().copied().collect();
    assert_eq!(per_file, expected);
}

/// Exact outcomes of some tests, against the bundle of every shipped file:
/// the rules that audit (the language can say which rules must audit, and
/// that none does, not that one rule does while another does not) and the
/// would-be verdict of monitor policies (the language checks only the
/// enforced verdict).
#[test]
fn exact_outcomes_of_the_library() {
    let report = run_tests(&shipped()).unwrap_or_else(|e| panic!("{e}"));
    let cases: &[(&str, &str, &[&str], Verdict)] = &[
        (
            "su-audit",
            "su is audited and allowed",
            &["su_audit.su_invoked"],
            Verdict::Allow,
        ),
        (
            "container-shell",
            "kubectl exec -it bash is audited high",
            &["container_shell.interactive_shell_in_pod"],
            Verdict::Allow,
        ),
        (
            "container-shell",
            "an sh -c entrypoint is audited low",
            &["container_shell.shell_in_pod"],
            Verdict::Allow,
        ),
        (
            "interactive-no-auid",
            "a shell on a terminal with no login uid is audited",
            &["interactive_no_auid.unattributed_interactive_shell"],
            Verdict::Allow,
        ),
        (
            "shadow-read",
            "cat /etc/shadow would be denied, is audited, runs",
            &["shadow_read.shadow_read"],
            Verdict::Deny,
        ),
        (
            "shadow-read",
            "writing /etc/shadow with an editor is audited",
            &["shadow_read.shadow_write"],
            Verdict::Deny,
        ),
        (
            "metadata-connect",
            "curl from a pod to IMDS would be denied, is audited, runs",
            &["metadata_connect.metadata_from_pod"],
            Verdict::Deny,
        ),
        (
            "metadata-connect",
            "kubelet on the host is audited as info, not as a pod",
            &["metadata_connect.metadata_from_host"],
            Verdict::Allow,
        ),
        (
            "module-load",
            "modprobe on the host is accounted",
            &["module_load.module_loaded"],
            Verdict::Allow,
        ),
        (
            "ptrace",
            "strace of a web server is audited low",
            &["ptrace_attach.ptrace_by_debugger"],
            Verdict::Allow,
        ),
        (
            "ptrace",
            "an unknown program attaching is audited medium",
            &["ptrace_attach.ptrace_by_other"],
            Verdict::Allow,
        ),
    ];
    for (file, name, audit, would) in cases {
        let file = format!("policies/{file}.policy");
        let t = report
            .tests
            .iter()
            .find(|t| t.file == file && t.name == *name)
            .unwrap_or_else(|| panic!("no test {name:?} in {file}"));
        assert_eq!(t.outcome.audit, *audit, "{file}: {name}");
        assert_eq!(t.outcome.verdict, Verdict::Allow, "{file}: {name}");
        assert_eq!(t.outcome.would_verdict, *would, "{file}: {name}");
    }
    // Shipped policies never refuse anything on a node: every test's
    // enforced verdict is allow.
    for t in &report.tests {
        assert_eq!(
            t.outcome.verdict,
            Verdict::Allow,
            "{}:{} {}",
            t.file,
            t.line,
            t.name
        );
    }
}

/// Each file compiles for the runtime, or is refused only because the
/// runtime cannot load it yet (`policyc::unsupported`): no other error.
#[test]
fn each_file_loads_or_waits_only_for_the_runtime() {
    let mut loadable = Vec::new();
    for source in shipped() {
        match compile(std::slice::from_ref(&source), "library") {
            Ok(c) => {
                assert!(c.warnings.is_empty(), "{}: {:?}", source.name, c.warnings);
                loadable.push(source.name);
            }
            Err(e) => {
                for d in &e.diagnostics {
                    let code = miette::Diagnostic::code(&d.diagnostic).map(|c| c.to_string());
                    assert_eq!(
                        code.as_deref(),
                        Some("policyc::unsupported"),
                        "{}: {}",
                        source.name,
                        d.diagnostic
                    );
                }
            }
        }
    }
    // The exec-only audits load today.
    for f in ["policies/sudo-audit.policy", "policies/su-audit.policy"] {
        assert!(loadable.iter().any(|l| l == f), "{f} no longer loads");
    }
}

#[test]
fn every_file_has_its_line_in_docs_policies_md() {
    let doc = std::fs::read_to_string(workspace().join("docs/policies.md")).unwrap();
    let files: Vec<String> = shipped().into_iter().map(|s| s.name).collect();
    for f in &files {
        let mention = format!("`{f}`");
        let lines = doc.lines().filter(|l| l.contains(&mention)).count();
        assert_eq!(
            lines, 1,
            "{f} must have exactly one line in docs/policies.md (found {lines})"
        );
    }
    // And the document names no file that is not shipped.
    for word in doc.split('`') {
        if word.starts_with("policies/") && word.ends_with(".policy") {
            assert!(
                files.iter().any(|f| f == word),
                "docs/policies.md names {word}, which is not in policies/"
            );
        }
    }
}
