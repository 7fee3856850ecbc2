//! Golden tests: every case under `tests/golden/cases/` is compiled and its
//! diagnostics (rendered without colour) or its bundle are compared with the
//! snapshot in `tests/golden/snapshots/`. Review changes with `cargo insta review`.
//!
//! A case is a `.policy` file or a directory of them (compiled together). A
//! first line `// golden: bundle-name = NAME` sets the bundle name (default
//! `golden`). Leading lines `// golden: kernel-features = PATH` (relative to
//! the workspace) check the case as `policyc check --kernel-features PATH`
//! does: the snapshot is the diagnostics only. The shipped
//! `policies/*.policy` are cases too.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use policy_compiler::compile::{analyze_for_kernel, compile, compile_for_evaluation, SourceFile};
use policy_compiler::render::{render, summary};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Load a case's sources, named relative to the workspace (no temp paths).
fn sources(path: &Path) -> Vec<SourceFile> {
    let mut files: Vec<PathBuf> = if path.is_dir() {
        std::fs::read_dir(path)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect()
    } else {
        vec![path.to_path_buf()]
    };
    files.sort();
    files
        .into_iter()
        .map(|f| SourceFile {
            name: f.strip_prefix(workspace()).unwrap().display().to_string(),
            text: std::fs::read_to_string(&f).unwrap(),
        })
        .collect()
}

/// The snapshot text of one case: diagnostics, then the bundle if it compiled.
fn run_case(sources: &[SourceFile]) -> String {
    let name = sources[0]
        .text
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("// golden: bundle-name = "))
        .unwrap_or("golden");
    let features = sources[0]
        .text
        .lines()
        .take_while(|l| l.starts_with("// golden: "))
        .find_map(|l| l.strip_prefix("// golden: kernel-features = "));
    if let Some(path) = features {
        let text = std::fs::read_to_string(workspace().join(path.trim())).unwrap();
        let features = policy_compiler::kernel_features::parse(&text).unwrap();
        let (_, diagnostics) = analyze_for_kernel(sources, &features);
        return format!(
            "{}{}\n",
            render(&diagnostics, sources, false, 100),
            summary(&diagnostics)
        );
    }
    match compile(sources, name) {
        Err(failure) => format!(
            "{}{}\n",
            render(&failure.diagnostics, sources, false, 100),
            summary(&failure.diagnostics)
        ),
        Ok(compiled) => format!(
            "{}{}\n---\n{}",
            render(&compiled.warnings, sources, false, 100),
            summary(&compiled.warnings),
            compiled.bundle.to_yaml()
        ),
    }
}

fn cases(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir() || p.extension().is_some_and(|e| e == "policy"))
        .collect();
    v.sort();
    v
}

fn snapshot(prefix: &str, path: &Path, output: &str) {
    let stem = path.file_stem().unwrap().to_string_lossy().into_owned();
    insta::with_settings!({
        snapshot_path => workspace().join("tests/golden/snapshots"),
        prepend_module_to_snapshot => false,
        omit_expression => true,
    }, {
        insta::assert_snapshot!(format!("{prefix}{stem}"), output);
    });
}

/// Codes documented in `docs/diagnostics.md` (`### `policyc::…`` headings).
fn documented_codes() -> BTreeSet<String> {
    let doc = std::fs::read_to_string(workspace().join("docs/diagnostics.md")).unwrap();
    doc.lines()
        .filter_map(|l| l.strip_prefix("### `"))
        .filter_map(|l| l.split('`').next())
        .map(str::to_string)
        .collect()
}

#[test]
fn golden_cases() {
    let mut seen = BTreeSet::new();
    for case in cases(&workspace().join("tests/golden/cases")) {
        let output = run_case(&sources(&case));
        for line in output.lines() {
            if let Some(code) = line.strip_prefix("policyc::") {
                seen.insert(format!("policyc::{}", code.trim()));
            }
        }
        snapshot("", &case, &output);
    }
    let documented = documented_codes();
    assert!(!documented.is_empty());
    let undocumented: Vec<_> = seen.difference(&documented).collect();
    let untested: Vec<_> = documented.difference(&seen).collect();
    assert!(
        undocumented.is_empty(),
        "codes without a section in docs/diagnostics.md: {undocumented:?}"
    );
    assert!(
        untested.is_empty(),
        "documented codes without a golden case: {untested:?}"
    );
}

/// The bundle of one shipped policy: the one `policyc compile` writes, or,
/// for a policy the runtime does not load yet (refused with
/// `policyc::unsupported` and nothing else, see docs/policies.md), the one
/// `policyc test` evaluates.
fn shipped_bundle(sources: &[SourceFile], name: &str) -> policy_compiler::compile::Compiled {
    match compile(sources, name) {
        Ok(compiled) => compiled,
        Err(failure) => {
            for d in &failure.diagnostics {
                let code = miette::Diagnostic::code(&d.diagnostic).map(|c| c.to_string());
                assert_eq!(code.as_deref(), Some("policyc::unsupported"), "{}", failure);
            }
            compile_for_evaluation(sources, name)
                .unwrap_or_else(|e| panic!("{e}"))
                .0
        }
    }
}

#[test]
fn shipped_policies_compile_to_golden_bundles() {
    let shipped = cases(&workspace().join("policies"));
    assert!(!shipped.is_empty());
    for policy in shipped {
        let sources = sources(&policy);
        let compiled = shipped_bundle(&sources, "golden");
        assert!(compiled.warnings.is_empty(), "{:?}", compiled.warnings);
        snapshot("policies__", &policy, &compiled.bundle.to_yaml());
    }
}

#[test]
fn compilation_is_deterministic() {
    for policy in cases(&workspace().join("policies")) {
        let sources = sources(&policy);
        let a = shipped_bundle(&sources, "x").bundle.to_yaml();
        let b = shipped_bundle(&sources, "x").bundle.to_yaml();
        assert_eq!(a, b);
    }
}

#[test]
fn shipped_policies_are_formatted() {
    for policy in cases(&workspace().join("policies")) {
        let text = std::fs::read_to_string(&policy).unwrap();
        let formatted = policy_dsl::format::format_source(&text).unwrap();
        assert!(
            formatted == text,
            "{} is not in `policyc fmt` layout; run `policyc fmt {}`",
            policy.display(),
            policy.display()
        );
    }
}
