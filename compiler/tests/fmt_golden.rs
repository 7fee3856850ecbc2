//! Golden tests for `policyc fmt`: every `tests/golden/fmt/*.policy` is
//! formatted with `policy_dsl::format::format_source` and compared with the
//! snapshot `tests/golden/snapshots/fmt__<stem>.snap`. A file that does not
//! parse is refused; its snapshot holds the diagnostics instead. Review
//! changes with `cargo insta review`.

use std::path::{Path, PathBuf};

use policy_dsl::format::{format_source, FormatError};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn inputs() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(workspace().join("tests/golden/fmt"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "policy"))
        .collect();
    v.sort();
    v
}

/// The snapshot text: the formatted file, or the reason it was refused.
fn run(path: &Path) -> String {
    let name = path
        .strip_prefix(workspace())
        .unwrap()
        .display()
        .to_string();
    let source = std::fs::read_to_string(path).unwrap();
    match format_source(&source) {
        Ok(out) => {
            assert_eq!(
                format_source(&out).unwrap(),
                out,
                "{name}: formatting is not idempotent"
            );
            out
        }
        Err(FormatError::Syntax(diagnostics)) => {
            format!(
                "not formatted:\n{}",
                policy_dsl::render(&diagnostics, &name, &source, false, 100)
            )
        }
        Err(e) => panic!("{name}: {e}"),
    }
}

#[test]
fn fmt_golden() {
    let inputs = inputs();
    assert!(!inputs.is_empty());
    for path in inputs {
        let stem = path.file_stem().unwrap().to_string_lossy().into_owned();
        let output = run(&path);
        insta::with_settings!({
            snapshot_path => workspace().join("tests/golden/snapshots"),
            prepend_module_to_snapshot => false,
            omit_expression => true,
        }, {
            insta::assert_snapshot!(format!("fmt__{stem}"), output);
        });
    }
}
