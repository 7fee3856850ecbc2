//! The `policybundles.policyc.dev` CRD (`charts/policyd/crds/policybundle.yaml`):
//! generated from the bundle types, checked in, and every bundle we produce
//! is a valid object of it.
//!
//! When the bundle types change, regenerate the file with
//! `POLICYC_UPDATE_SCHEMA=1 cargo test -p policy-compiler --test crd`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use policy_compiler::compile::{
    compile, compile_for_evaluation, compile_k8s, K8sOptions, SourceFile,
};
use policy_compiler::crd::{crd_yaml, CRD_PATH};
use policy_compiler::k8s::{BundleStatus, LoadState, NodeStatus};
use serde_json::{json, Value};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

#[test]
fn checked_in_crd_is_up_to_date() {
    let path = workspace().join(CRD_PATH);
    let generated = crd_yaml();
    if std::env::var_os("POLICYC_UPDATE_SCHEMA").is_some() {
        std::fs::write(&path, &generated).unwrap();
    }
    let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        checked_in == generated,
        "{CRD_PATH} is out of date with the bundle types; regenerate it with \
         `POLICYC_UPDATE_SCHEMA=1 cargo test -p policy-compiler --test crd`"
    );
}

/// The checked-in CRD's `openAPIV3Schema`, made strict the way the API
/// server's pruning is: a field the schema does not name would be dropped
/// silently, so here it is an error (`additionalProperties: false` wherever
/// `properties` is given). `nullable` is not JSON Schema; our bundles never
/// write `null`, so it is left to be ignored.
fn validator() -> jsonschema::Validator {
    fn strict(v: &mut Value) {
        if let Value::Object(o) = v {
            if o.contains_key("properties") && !o.contains_key("additionalProperties") {
                o.insert("additionalProperties".into(), Value::Bool(false));
            }
            for (_, child) in o.iter_mut() {
                strict(child);
            }
        }
    }
    let text = std::fs::read_to_string(workspace().join(CRD_PATH)).unwrap();
    let crd: Value = serde_yaml::from_str(&text).unwrap();
    assert_eq!(crd["spec"]["scope"], "Cluster");
    let version = &crd["spec"]["versions"][0];
    assert_eq!(version["name"], "v1alpha1");
    assert_eq!(version["served"], true);
    assert_eq!(version["storage"], true);
    assert_eq!(version["subresources"]["status"], json!({}));
    let mut schema = version["schema"]["openAPIV3Schema"].clone();
    // `metadata` is the API server's; only the keys we write are checked here.
    schema["properties"]["metadata"] = json!({"type": "object"});
    strict(&mut schema);
    schema["properties"]["metadata"] = json!({"type": "object"});
    jsonschema::validator_for(&schema).expect("the CRD's schema compiles")
}

fn errors(validator: &jsonschema::Validator, doc: &Value) -> Vec<String> {
    validator
        .iter_errors(doc)
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect()
}

fn sources(dir: &Path) -> Vec<SourceFile> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "policy"))
        .collect();
    paths.sort();
    paths
        .into_iter()
        .map(|f| SourceFile {
            name: f.display().to_string(),
            text: std::fs::read_to_string(&f).unwrap(),
        })
        .collect()
}

/// The shipped policies `policyd` loads today: the others are refused by
/// `policyc compile` with `policyc::unsupported` until the runtime loads
/// them (see docs/policies.md; `policy_library.rs` checks that nothing else
/// refuses them).
fn loadable(shipped: &[SourceFile]) -> Vec<SourceFile> {
    let loadable: Vec<SourceFile> = shipped
        .iter()
        .filter(|s| compile(std::slice::from_ref(*s), "x").is_ok())
        .cloned()
        .collect();
    assert!(!loadable.is_empty());
    loadable
}

#[test]
fn shipped_bundles_are_valid_objects() {
    let validator = validator();
    let all = sources(&workspace().join("policies"));
    assert!(!all.is_empty());
    // What `policyc test` compiles: every shipped policy, alone and together.
    let mut sets: Vec<Vec<SourceFile>> = all.iter().map(|s| vec![s.clone()]).collect();
    sets.push(all.clone());
    for set in &sets {
        let (compiled, _) = compile_for_evaluation(set, "shipped").unwrap();
        let doc: Value = serde_yaml::from_str(&compiled.bundle.to_yaml()).unwrap();
        let errs = errors(&validator, &doc);
        assert!(errs.is_empty(), "{}: {}", set[0].name, errs.join("\n"));
    }
    let shipped = loadable(&all);
    let labelled = K8sOptions {
        labels: BTreeMap::from([("app.kubernetes.io/part-of".into(), "policyc".into())]),
        node_selector: BTreeMap::from([("kubernetes.io/os".into(), "linux".into())]),
        object: true,
    };
    let mut checked = 0;
    // Each shipped policy alone, and all together.
    let mut sets: Vec<Vec<SourceFile>> = shipped.iter().map(|s| vec![s.clone()]).collect();
    sets.push(shipped.clone());
    for set in sets {
        for k8s in [K8sOptions::default(), labelled.clone()] {
            let bundle = compile_k8s(&set, "shipped", &k8s).unwrap().bundle;
            let mut doc: Value = serde_yaml::from_str(&bundle.to_yaml()).unwrap();
            let errs = errors(&validator, &doc);
            assert!(errs.is_empty(), "{}: {}", set[0].name, errs.join("\n"));
            // With a status as nodes write it.
            let status = BundleStatus {
                nodes: vec![NodeStatus {
                    node: "node-1".into(),
                    state: LoadState::Failed,
                    generation: 2,
                    digest: bundle.spec.digest.clone(),
                    message: "no BPF-LSM".into(),
                    last_transition_time: "2026-01-02T03:04:05Z".into(),
                }],
            };
            doc["status"] = serde_json::to_value(&status).unwrap();
            let errs = errors(&validator, &doc);
            assert!(errs.is_empty(), "{}: {}", set[0].name, errs.join("\n"));
            checked += 1;
        }
    }
    assert!(checked >= 4);
}

#[test]
fn golden_bundles_are_valid_objects() {
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
        let doc: Value = serde_yaml::from_str(&text[start + 1..]).unwrap();
        let errs = errors(&validator, &doc);
        assert!(errs.is_empty(), "{}: {}", snap.display(), errs.join("\n"));
        checked += 1;
    }
    assert!(checked >= 2, "only {checked} golden bundles found");
}

#[test]
fn crd_refuses_what_the_loader_refuses() {
    let validator = validator();
    let shipped = loadable(&sources(&workspace().join("policies")));
    let good: Value =
        serde_yaml::from_str(&compile(&shipped, "x").unwrap().bundle.to_yaml()).unwrap();
    assert!(validator.is_valid(&good));
    for (pointer, value) in [
        ("/spec/schemaVersion", json!(1)),
        ("/spec/rules/0/severity", json!("urgent")),
        ("/spec/rules/0/audit", json!("yes")),
        ("/spec/hooks/exec/terms/0/id", json!(-1)),
    ] {
        let mut bad = good.clone();
        *bad.pointer_mut(pointer)
            .unwrap_or_else(|| panic!("{pointer}")) = value;
        assert!(!validator.is_valid(&bad), "{pointer} was not caught");
    }
    let mut bad = good.clone();
    bad["status"] = json!({"nodes": [{"node": "n", "state": "Loading", "generation": 1,
        "digest": "d", "lastTransitionTime": "2026-01-02T03:04:05Z"}]});
    assert!(!validator.is_valid(&bad), "an unknown state was not caught");
}

#[test]
fn node_selector_is_in_the_digest_and_absent_by_default() {
    let shipped = loadable(&sources(&workspace().join("policies")));
    let plain = compile(&shipped, "x").unwrap().bundle;
    let same = compile_k8s(&shipped, "x", &K8sOptions::default())
        .unwrap()
        .bundle;
    assert_eq!(plain.to_yaml(), same.to_yaml());
    assert!(!plain.to_yaml().contains("nodeSelector"));
    assert!(!plain.to_yaml().contains("labels"));
    let k8s = K8sOptions {
        labels: BTreeMap::from([("team".into(), "sec".into())]),
        node_selector: BTreeMap::from([("pool".into(), "a".into())]),
        object: true,
    };
    let selected = compile_k8s(&shipped, "x", &k8s).unwrap().bundle;
    assert_ne!(selected.spec.digest, plain.spec.digest);
    // Labels are metadata, outside the digest.
    let only_labels = compile_k8s(
        &shipped,
        "x",
        &K8sOptions {
            labels: k8s.labels.clone(),
            ..K8sOptions::default()
        },
    )
    .unwrap()
    .bundle;
    assert_eq!(only_labels.spec.digest, plain.spec.digest);
    // Both survive a round trip through the loader.
    let back = policy_compiler::bundle::PolicyBundle::from_yaml(&selected.to_yaml()).unwrap();
    assert_eq!(back, selected);
    // Invalid labels are compile errors.
    let bad = K8sOptions {
        node_selector: BTreeMap::from([("a b".into(), "c".into())]),
        ..K8sOptions::default()
    };
    let failure = compile_k8s(&shipped, "x", &bad).unwrap_err();
    assert!(failure
        .diagnostics
        .iter()
        .any(|d| d.diagnostic.to_string().contains("node selector `a b=c`")));
}

#[test]
fn oversized_bundle_is_an_error_for_kubernetes_and_a_warning_for_files() {
    // Long audit messages make a large rule table cheaply.
    let message = "m".repeat(8 * 1024);
    let mut text = String::from("policy big {\n}\n");
    for i in 0..140 {
        text.push_str(&format!(
            "rule r{i} on exec {{\n  when process.binary == \"/bin/b{i}\"\n  audit \"{message}\"\n}}\n"
        ));
    }
    let src = vec![SourceFile {
        name: "big.policy".into(),
        text,
    }];
    let object = K8sOptions {
        object: true,
        ..K8sOptions::default()
    };
    match compile_k8s(&src, "big", &object) {
        Ok(c) => panic!("a {} byte bundle compiled", c.bundle.to_yaml().len()),
        Err(f) => {
            let msgs: Vec<String> = f
                .diagnostics
                .iter()
                .map(|d| d.diagnostic.to_string())
                .collect();
            assert!(
                msgs.iter().any(|m| m.contains("one Kubernetes API object")),
                "{msgs:?}"
            );
        }
    }
    // For files (`policyd --bundle`): compiled, with the warning.
    let compiled = compile(&src, "big").expect("a bundle for files has no size limit");
    assert!(compiled.bundle.to_yaml().len() > policy_compiler::k8s::MAX_BUNDLE_BYTES);
    let warning = compiled
        .warnings
        .iter()
        .find(|d| {
            d.diagnostic
                .to_string()
                .contains("one Kubernetes API object")
        })
        .expect("a size warning");
    assert!(warning.diagnostic.is_warning());
}
