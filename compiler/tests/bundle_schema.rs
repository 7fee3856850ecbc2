//! The bundle's JSON Schema (`docs/bundle.schema.json`): generated from the
//! bundle types with schemars, checked in, and every bundle we produce
//! validates against it.
//!
//! When the bundle types change, regenerate the file with
//! `POLICYC_UPDATE_SCHEMA=1 cargo test -p policy-compiler --test bundle_schema`.

use std::path::{Path, PathBuf};

use policy_compiler::compile::{compile, compile_for_evaluation, SourceFile};
use policy_compiler::schema::{bundle_schema_json, SCHEMA_PATH};
use serde_json::Value;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn validator() -> jsonschema::Validator {
    let text = std::fs::read_to_string(workspace().join(SCHEMA_PATH)).unwrap();
    let schema: Value = serde_json::from_str(&text).unwrap();
    jsonschema::validator_for(&schema).expect("the checked-in schema compiles")
}

fn errors(validator: &jsonschema::Validator, doc: &Value) -> Vec<String> {
    validator
        .iter_errors(doc)
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect()
}

fn yaml_to_json(yaml: &str) -> Value {
    serde_yaml::from_str(yaml).unwrap()
}

#[test]
fn checked_in_schema_is_up_to_date() {
    let path = workspace().join(SCHEMA_PATH);
    let generated = bundle_schema_json();
    if std::env::var_os("POLICYC_UPDATE_SCHEMA").is_some() {
        std::fs::write(&path, &generated).unwrap();
    }
    let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        checked_in == generated,
        "{SCHEMA_PATH} is out of date with the bundle types; regenerate it with \
         `POLICYC_UPDATE_SCHEMA=1 cargo test -p policy-compiler --test bundle_schema`"
    );
}

/// Every `.policy` file (or directory case) under `dir`.
fn cases(dir: &Path) -> Vec<Vec<SourceFile>> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir() || p.extension().is_some_and(|e| e == "policy"))
        .collect();
    paths.sort();
    paths
        .into_iter()
        .filter_map(|p| {
            let mut files: Vec<PathBuf> = if p.is_dir() {
                std::fs::read_dir(&p)
                    .unwrap()
                    .map(|e| e.unwrap().path())
                    .filter(|f| f.extension().is_some_and(|e| e == "policy"))
                    .collect()
            } else {
                vec![p]
            };
            files.sort();
            (!files.is_empty()).then(|| {
                files
                    .into_iter()
                    .map(|f| SourceFile {
                        name: f.display().to_string(),
                        text: std::fs::read_to_string(&f).unwrap(),
                    })
                    .collect()
            })
        })
        .collect()
}

#[test]
fn shipped_and_evaluation_bundles_validate() {
    let validator = validator();
    let mut checked = 0;
    for dir in [
        "policies",
        "tests/golden/cases",
        "tests/golden/test",
        "tests/golden/tools",
    ] {
        for sources in cases(&workspace().join(dir)) {
            let name = &sources[0].name;
            let mut bundles = Vec::new();
            let runtime = compile(&sources, "schema-check");
            if dir == "policies" {
                // A shipped policy the runtime does not load yet is refused
                // with `policyc::unsupported` only (see policy_library.rs).
                if let Err(f) = &runtime {
                    assert!(
                        f.diagnostics.iter().all(|d| {
                            miette::Diagnostic::code(&d.diagnostic)
                                .is_some_and(|c| c.to_string() == "policyc::unsupported")
                        }),
                        "{name} does not compile: {f}"
                    );
                }
            }
            if let Ok(c) = runtime {
                bundles.push(c.bundle);
            }
            if let Ok((c, _)) = compile_for_evaluation(&sources, "schema-check") {
                bundles.push(c.bundle);
            } else if dir == "policies" {
                panic!("{name} does not compile for evaluation");
            }
            for b in bundles {
                let doc = yaml_to_json(&b.to_yaml());
                let errs = errors(&validator, &doc);
                assert!(errs.is_empty(), "{name}: {}", errs.join("\n"));
                checked += 1;
            }
        }
    }
    assert!(checked > 10, "only {checked} bundles checked");
}

#[test]
fn golden_bundles_validate() {
    let validator = validator();
    let mut checked = 0;
    let dir = workspace().join("tests/golden/snapshots");
    let mut snaps: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "snap"))
        .collect();
    snaps.sort();
    for snap in snaps {
        let text = std::fs::read_to_string(&snap).unwrap();
        let Some(start) = text.find("\napiVersion: ") else {
            continue;
        };
        let doc = yaml_to_json(&text[start + 1..]);
        let errs = errors(&validator, &doc);
        assert!(errs.is_empty(), "{}: {}", snap.display(), errs.join("\n"));
        checked += 1;
    }
    assert!(checked >= 2, "only {checked} golden bundles found");
}

#[test]
fn schema_refuses_what_the_loader_refuses() {
    let validator = validator();
    // The shipped sudo audit: an exec rule the runtime loads.
    let sources = cases(&workspace().join("policies"))
        .into_iter()
        .find(|c| c[0].name.ends_with("policies/sudo-audit.policy"))
        .unwrap();
    let good = yaml_to_json(&compile(&sources, "x").unwrap().bundle.to_yaml());
    assert!(validator.is_valid(&good));
    let breakages: Vec<(&str, Value)> = vec![
        ("/apiVersion", Value::from("policyc.dev/v2")),
        ("/kind", Value::from("Bundle")),
        ("/spec/schemaVersion", Value::from(1)),
        ("/spec/rules/0/severity", Value::from("urgent")),
        ("/spec/rules/0/hook", Value::from("boot")),
        ("/spec/rules/0/audit", Value::from("yes")),
        ("/spec/hooks/exec/terms/0/id", Value::from(-1)),
        (
            "/spec/hooks/exec/dimensions/process.binary/kind",
            Value::from("glob"),
        ),
    ];
    for (pointer, value) in breakages {
        let mut bad = good.clone();
        *bad.pointer_mut(pointer)
            .unwrap_or_else(|| panic!("{pointer}")) = value;
        assert!(!validator.is_valid(&bad), "{pointer} was not caught");
    }
    let mut extra = good.clone();
    extra["spec"]["extra"] = Value::from(1);
    assert!(!validator.is_valid(&extra), "unknown fields are refused");
    let mut hook = good;
    let table = hook["spec"]["hooks"]["exec"].clone();
    hook["spec"]["hooks"]["boot"] = table;
    assert!(!validator.is_valid(&hook), "unknown hooks are refused");
}
