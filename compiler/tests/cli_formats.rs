//! `policyc check|compile --format human|json|sarif`, `--deny-warnings`: the
//! built binary, run on the fixtures in `tests/golden/format/`.
//!
//! - Golden snapshots (`tests/golden/snapshots/format__*.snap`) of the JSON
//!   and SARIF documents; review changes with `cargo insta review`.
//! - Every SARIF document is validated against the SARIF 2.1.0 JSON schema
//!   vendored in `tests/data/` (see `tests/data/sarif-schema-2.1.0.NOTICE.md`).
//! - Exit codes: 0 ok, 1 errors (or warnings with `--deny-warnings`), 2 usage
//!   or IO; in json/sarif mode stdout holds exactly one document.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

const ERROR_AND_WARNING: &str = "tests/golden/format/error_and_warning.policy";
const WARNING_ONLY: &str = "tests/golden/format/warning_only.policy";
const CLEAN: &str = "tests/golden/format/clean.policy";

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Run `policyc ARGS` in the workspace root, so file names in the output are
/// the relative names given here.
fn policyc(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_policyc"))
        .args(args)
        .current_dir(workspace())
        .env_remove("NO_COLOR")
        .output()
        .expect("run policyc")
}

fn code(out: &Output) -> i32 {
    out.status.code().expect("policyc exited normally")
}

fn stdout(out: &Output) -> &str {
    std::str::from_utf8(&out.stdout).expect("stdout is UTF-8")
}

fn stderr(out: &Output) -> &str {
    std::str::from_utf8(&out.stderr).expect("stderr is UTF-8")
}

/// Stdout must be exactly one JSON document (serde_json refuses trailing
/// text), and nothing must go to stderr.
fn document(out: &Output) -> Value {
    assert_eq!(stderr(out), "", "stderr in a machine-readable mode");
    serde_json::from_str(stdout(out))
        .unwrap_or_else(|e| panic!("stdout is not one JSON document: {e}\n{}", stdout(out)))
}

/// The vendored schema, with the one correction of SARIF 2.1.0 Errata 01
/// that a validator needs: the `language` pattern of the original 2.1.0 schema,
/// `^[a-zA-Z]{2}|^[a-zA-Z]{2}-[a-zA-Z]{2}]?$`, has a stray `]` that the
/// `regex` format check of the draft-04 meta-schema refuses, so the schema
/// would not compile; errata 01 replaced it with `^[a-zA-Z]{2}(-[a-zA-Z]{2})?$`.
fn sarif_schema() -> Value {
    let mut schema: Value = serde_json::from_str(
        &std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/sarif-schema-2.1.0.json"),
        )
        .unwrap(),
    )
    .unwrap();
    for definition in ["run", "toolComponent"] {
        let pattern = &mut schema["definitions"][definition]["properties"]["language"]["pattern"];
        assert_eq!(pattern, "^[a-zA-Z]{2}|^[a-zA-Z]{2}-[a-zA-Z]{2}]?$");
        *pattern = Value::from("^[a-zA-Z]{2}(-[a-zA-Z]{2})?$");
    }
    schema
}

fn validate_sarif(sarif: &Value) {
    let schema = sarif_schema();
    let validator = jsonschema::draft4::options()
        .should_validate_formats(true)
        .build(&schema)
        .expect("the vendored schema compiles");
    let errors: Vec<String> = validator
        .iter_errors(sarif)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "SARIF does not match the 2.1.0 schema:\n{}\n{sarif:#}",
        errors.join("\n")
    );
    // The OASIS errata 01 schema also requires every region to have a start
    // (`startLine`, `charOffset` or `byteOffset`); ours always has startLine.
    for result in sarif["runs"][0]["results"].as_array().unwrap() {
        let locations = result["locations"].as_array().into_iter().flatten();
        let related = result["relatedLocations"].as_array().into_iter().flatten();
        for location in locations.chain(related) {
            let region = &location["physicalLocation"]["region"];
            if !region.is_null() {
                assert!(
                    region["startLine"].as_u64().is_some_and(|l| l >= 1),
                    "{region}"
                );
                assert!(
                    region["startColumn"].as_u64().is_some_and(|c| c >= 1),
                    "{region}"
                );
            }
        }
    }
}

/// Snapshot text of a document: the compiler version is replaced, so a
/// version bump does not churn the snapshots.
fn stable(doc: &str) -> String {
    doc.replace(
        &format!("\"version\": \"{}\"", env!("CARGO_PKG_VERSION")),
        "\"version\": \"[policyc version]\"",
    )
}

fn snapshot(name: &str, text: &str) {
    insta::with_settings!({
        snapshot_path => workspace().join("tests/golden/snapshots"),
        prepend_module_to_snapshot => false,
        omit_expression => true,
    }, {
        insta::assert_snapshot!(format!("format__{name}"), text);
    });
}

#[test]
fn json_document_of_an_error_and_a_warning() {
    let out = policyc(&["check", "--format", "json", ERROR_AND_WARNING]);
    assert_eq!(code(&out), 1);
    let doc = document(&out);
    assert_eq!(doc["errors"], 1);
    assert_eq!(doc["warnings"], 1);
    let diagnostics = doc["diagnostics"].as_array().unwrap();
    assert_eq!(diagnostics.len(), 2);
    for d in diagnostics {
        assert!(d["code"].as_str().unwrap().starts_with("policyc::"));
        assert!(["error", "warning"].contains(&d["severity"].as_str().unwrap()));
        assert_eq!(d["file"], ERROR_AND_WARNING);
        assert!(!d["labels"].as_array().unwrap().is_empty());
    }
    // The warning's label sits after `è` and `—` on line 1: the column counts
    // characters, the offset bytes.
    let warning = diagnostics
        .iter()
        .find(|d| d["severity"] == "warning")
        .unwrap();
    let text = std::fs::read_to_string(workspace().join(ERROR_AND_WARNING)).unwrap();
    let label = &warning["labels"][0];
    let offset = label["start"]["offset"].as_u64().unwrap() as usize;
    assert!(text[offset..].starts_with("unused"));
    assert_eq!(label["start"]["line"], 1);
    assert_eq!(
        label["start"]["column"].as_u64().unwrap() as usize,
        text[..offset].chars().count() + 1
    );
    assert_ne!(
        label["start"]["column"].as_u64().unwrap() as usize,
        offset + 1
    );
    assert_eq!(
        label["end"]["offset"].as_u64().unwrap() as usize,
        offset + "unused".len()
    );
    // Primary label first: the duplicate, then the first declaration.
    let duplicate = diagnostics
        .iter()
        .find(|d| d["code"] == "policyc::duplicate_name")
        .unwrap();
    assert_eq!(duplicate["labels"][0]["start"]["line"], 3);
    assert_eq!(duplicate["labels"][1]["start"]["line"], 2);

    snapshot("error_and_warning_json", &stable(stdout(&out)));
}

#[test]
fn sarif_document_of_an_error_and_a_warning() {
    let out = policyc(&["check", "--format", "sarif", ERROR_AND_WARNING]);
    assert_eq!(code(&out), 1);
    let sarif = document(&out);
    validate_sarif(&sarif);
    assert_eq!(sarif["version"], "2.1.0");
    assert_eq!(
        sarif["$schema"],
        "https://json.schemastore.org/sarif-2.1.0.json"
    );
    let runs = sarif["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 1);
    let run = &runs[0];
    assert_eq!(run["columnKind"], "unicodeCodePoints");
    let driver = &run["tool"]["driver"];
    assert_eq!(driver["name"], "policyc");
    assert_eq!(driver["version"], env!("CARGO_PKG_VERSION"));
    let rules = driver["rules"].as_array().unwrap();
    let results = run["results"].as_array().unwrap();
    assert_eq!(results.len(), 2);
    // One rule per code that occurs; every result points at its rule.
    let mut codes: Vec<&str> = results
        .iter()
        .map(|r| r["ruleId"].as_str().unwrap())
        .collect();
    codes.sort_unstable();
    codes.dedup();
    assert_eq!(
        rules
            .iter()
            .map(|r| r["id"].as_str().unwrap())
            .collect::<Vec<_>>(),
        codes
    );
    for rule in rules {
        let help = rule["helpUri"].as_str().unwrap();
        assert!(help.contains("docs/diagnostics.md#policyc"), "{help}");
        assert!(!rule["shortDescription"]["text"]
            .as_str()
            .unwrap()
            .is_empty());
    }
    for result in results {
        let index = result["ruleIndex"].as_u64().unwrap() as usize;
        assert_eq!(rules[index]["id"], result["ruleId"]);
        let location = &result["locations"][0]["physicalLocation"];
        assert_eq!(location["artifactLocation"]["uri"], ERROR_AND_WARNING);
        assert!(result["message"]["text"]
            .as_str()
            .unwrap()
            .contains("\nhelp: "));
    }
    let duplicate = results
        .iter()
        .find(|r| r["ruleId"] == "policyc::duplicate_name")
        .unwrap();
    assert_eq!(duplicate["level"], "error");
    assert_eq!(
        duplicate["locations"][0]["physicalLocation"]["region"]["startLine"],
        3
    );
    let related = duplicate["relatedLocations"].as_array().unwrap();
    assert_eq!(related.len(), 1);
    assert_eq!(related[0]["physicalLocation"]["region"]["startLine"], 2);
    let warning = results.iter().find(|r| r["level"] == "warning").unwrap();
    assert_eq!(warning["ruleId"], "policyc::unused_set");

    snapshot("error_and_warning_sarif", &stable(stdout(&out)));
}

#[test]
fn clean_sources_give_empty_documents_and_exit_0() {
    let human = policyc(&["check", "--color", "never", CLEAN]);
    assert_eq!(code(&human), 0);
    assert_eq!(stdout(&human), "");

    let json = policyc(&["check", "--format", "json", "--deny-warnings", CLEAN]);
    assert_eq!(code(&json), 0);
    let doc = document(&json);
    assert_eq!(doc["diagnostics"].as_array().unwrap().len(), 0);
    assert_eq!(doc["errors"], 0);
    assert_eq!(doc["warnings"], 0);

    let sarif = policyc(&["check", "--format", "sarif", CLEAN]);
    assert_eq!(code(&sarif), 0);
    let log = document(&sarif);
    validate_sarif(&log);
    assert_eq!(log["runs"][0]["results"].as_array().unwrap().len(), 0);
}

#[test]
fn deny_warnings_turns_warnings_into_exit_1() {
    for format in ["human", "json", "sarif"] {
        let plain = policyc(&[
            "check",
            "--color",
            "never",
            "--format",
            format,
            WARNING_ONLY,
        ]);
        assert_eq!(code(&plain), 0, "{format}");
        let denied = policyc(&[
            "check",
            "--color",
            "never",
            "--format",
            format,
            "--deny-warnings",
            WARNING_ONLY,
        ]);
        assert_eq!(code(&denied), 1, "{format}: {}", stderr(&denied));
        // The report itself does not change; only the exit code does.
        assert_eq!(stdout(&plain), stdout(&denied), "{format}");
        match format {
            "human" => {
                assert_eq!(stdout(&denied), "");
                assert!(stderr(&denied).contains("0 errors, 1 warning"));
                assert!(stderr(&denied).contains("--deny-warnings"));
            }
            "json" => {
                let doc = document(&denied);
                assert_eq!(doc["errors"], 0);
                assert_eq!(doc["warnings"], 1);
                assert_eq!(doc["diagnostics"][0]["severity"], "warning");
            }
            _ => {
                let log = document(&denied);
                validate_sarif(&log);
                assert_eq!(log["runs"][0]["results"][0]["level"], "warning");
            }
        }
    }
    // Errors fail with or without the flag.
    for deny in [false, true] {
        let mut args = vec!["check", "--format", "json", ERROR_AND_WARNING];
        if deny {
            args.insert(1, "--deny-warnings");
        }
        assert_eq!(code(&policyc(&args)), 1);
    }
}

#[test]
fn compile_reports_in_the_same_formats() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("bundle.yaml");
    let bundle_arg = bundle.to_str().unwrap();

    // Warnings only: the bundle is written, the document is on stdout.
    let out = policyc(&[
        "compile",
        "--format",
        "json",
        "-o",
        bundle_arg,
        WARNING_ONLY,
    ]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(document(&out)["warnings"], 1);
    assert!(bundle.exists());
    std::fs::remove_file(&bundle).unwrap();

    // --deny-warnings: exit 1 and no bundle.
    let out = policyc(&[
        "compile",
        "--format",
        "sarif",
        "--deny-warnings",
        "-o",
        bundle_arg,
        WARNING_ONLY,
    ]);
    assert_eq!(code(&out), 1);
    validate_sarif(&document(&out));
    assert!(!bundle.exists());

    // Errors: exit 1, no bundle, same diagnostics as `check`.
    let out = policyc(&[
        "compile",
        "--format",
        "json",
        "-o",
        bundle_arg,
        ERROR_AND_WARNING,
    ]);
    assert_eq!(code(&out), 1);
    let checked = policyc(&["check", "--format", "json", ERROR_AND_WARNING]);
    assert_eq!(document(&out), document(&checked));
    assert!(!bundle.exists());

    // A diagnostic tied to no file (the bundle name): `file` is null, and
    // the SARIF result has no location but is still valid.
    let out = policyc(&[
        "compile",
        "--format",
        "json",
        "--name",
        "Not_A_Name",
        "-o",
        bundle_arg,
        CLEAN,
    ]);
    assert_eq!(code(&out), 1);
    let doc = document(&out);
    assert_eq!(doc["errors"], 1);
    assert!(doc["diagnostics"][0]["file"].is_null());
    assert_eq!(doc["diagnostics"][0]["labels"].as_array().unwrap().len(), 0);
    let out = policyc(&[
        "compile",
        "--format",
        "sarif",
        "--name",
        "Not_A_Name",
        "-o",
        bundle_arg,
        CLEAN,
    ]);
    assert_eq!(code(&out), 1);
    let log = document(&out);
    validate_sarif(&log);
    assert!(log["runs"][0]["results"][0]["locations"].is_null());

    // Success with the human format to stdout still prints only the bundle.
    let out = policyc(&["compile", "--color", "never", "-o", "-", CLEAN]);
    assert_eq!(code(&out), 0);
    assert!(stdout(&out).starts_with("apiVersion: "));
}

#[test]
fn usage_and_io_errors_exit_2() {
    // The document and a bundle cannot share stdout.
    let out = policyc(&["compile", "--format", "json", "-o", "-", CLEAN]);
    assert_eq!(code(&out), 2);
    assert_eq!(stdout(&out), "");
    // Unknown format.
    let out = policyc(&["check", "--format", "xml", CLEAN]);
    assert_eq!(code(&out), 2);
    // Unreadable file: no document, a message on stderr.
    let out = policyc(&[
        "check",
        "--format",
        "json",
        "tests/golden/format/missing.policy",
    ]);
    assert_eq!(code(&out), 2);
    assert_eq!(stdout(&out), "");
    assert!(stderr(&out).contains("cannot read"));
}

#[test]
fn several_files_in_one_document() {
    let out = policyc(&[
        "check",
        "--format",
        "sarif",
        WARNING_ONLY,
        ERROR_AND_WARNING,
        CLEAN,
    ]);
    assert_eq!(code(&out), 1);
    let log = document(&out);
    validate_sarif(&log);
    let uris: Vec<&str> = log["runs"][0]["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
                .as_str()
                .unwrap()
        })
        .collect();
    assert_eq!(uris, [WARNING_ONLY, ERROR_AND_WARNING, ERROR_AND_WARNING]);
    // unused_set occurs twice but is one rule.
    let rules = log["runs"][0]["tool"]["driver"]["rules"]
        .as_array()
        .unwrap();
    assert_eq!(rules.len(), 2);
}

#[test]
fn the_schema_check_rejects_broken_logs() {
    let out = policyc(&["check", "--format", "sarif", ERROR_AND_WARNING]);
    let good = document(&out);
    let region = "/runs/0/results/0/locations/0/physicalLocation/region";
    let breakages = [
        ("/version".to_string(), Value::from("2.0.0")),
        ("/runs/0/results/0/level".to_string(), Value::from("fatal")),
        (format!("{region}/startLine"), Value::from(0)),
        (
            "/runs/0/tool/driver/rules/0/helpUri".to_string(),
            Value::from("not a uri"),
        ),
    ];
    let schema = sarif_schema();
    let validator = jsonschema::draft4::options()
        .should_validate_formats(true)
        .build(&schema)
        .unwrap();
    assert!(validator.is_valid(&good));
    for (pointer, value) in breakages {
        let mut bad = good.clone();
        *bad.pointer_mut(&pointer)
            .unwrap_or_else(|| panic!("{pointer}")) = value;
        assert!(!validator.is_valid(&bad), "{pointer} was not caught");
    }
}
