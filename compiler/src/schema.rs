//! The JSON Schema of the bundle document (`docs/bundle.schema.json`).
//!
//! Generated with `schemars` from the bundle types in [`crate::bundle`], so
//! the schema cannot drift from what serde reads and writes: a test
//! (`compiler/tests/bundle_schema.rs`) fails when the checked-in file differs
//! from [`bundle_schema_json`]; regenerate it with
//! `POLICYC_UPDATE_SCHEMA=1 cargo test -p policy-compiler --test bundle_schema`.
//!
//! The schema describes the document's shape (fields, types, enumerations,
//! no unknown fields); the invariants that span fields (dense ids, sorted term
//! sets, the digest) are checked by [`crate::bundle::PolicyBundle::validate`].

use std::borrow::Cow;

use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};

use crate::bundle::{Hook, Mode, PolicyBundle, Severity, API_VERSION, KIND, SCHEMA_VERSION};

/// Path of the checked-in schema, relative to the workspace root.
pub const SCHEMA_PATH: &str = "docs/bundle.schema.json";

fn names_schema(description: &str, names: Vec<&'static str>) -> Schema {
    json_schema!({
        "type": "string",
        "description": description,
        "enum": names,
    })
}

/// Schema stand-in for [`Hook`] (a type of `policy-dsl`, which does not
/// depend on `schemars`): its names as written in bundles.
pub struct HookName;

impl JsonSchema for HookName {
    fn schema_name() -> Cow<'static, str> {
        "Hook".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        names_schema(
            "A hook: the kernel event a rule is evaluated on.",
            Hook::ALL.iter().map(|(_, n)| *n).collect(),
        )
    }
}

/// Schema stand-in for [`Mode`].
pub struct ModeName;

impl JsonSchema for ModeName {
    fn schema_name() -> Cow<'static, str> {
        "Mode".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        names_schema(
            "A policy's mode; absent means `enforce`.",
            Mode::ALL.iter().map(|(_, n)| *n).collect(),
        )
    }
}

/// Schema stand-in for [`Severity`].
pub struct SeverityName;

impl JsonSchema for SeverityName {
    fn schema_name() -> Cow<'static, str> {
        "Severity".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        names_schema(
            "Audit severity, from least to most severe.",
            Severity::ALL.iter().map(|(_, n)| *n).collect(),
        )
    }
}

/// The JSON Schema (draft 2020-12) of a [`PolicyBundle`] document.
pub fn bundle_schema() -> Schema {
    let mut schema = schemars::schema_for!(PolicyBundle);
    schema.insert(
        "$id".into(),
        "https://policyc.dev/schemas/bundle.schema.json".into(),
    );
    // Values the types cannot say: the fixed header a runtime checks first.
    let fixed = [
        ("/properties/apiVersion", serde_json::json!(API_VERSION)),
        ("/properties/kind", serde_json::json!(KIND)),
        (
            "/$defs/BundleSpec/properties/schemaVersion",
            serde_json::json!(SCHEMA_VERSION),
        ),
    ];
    for (pointer, value) in fixed {
        if let Some(serde_json::Value::Object(o)) = schema.pointer_mut(pointer) {
            o.insert("const".into(), value);
        }
    }
    schema
}

/// [`bundle_schema`] as the text of `docs/bundle.schema.json`: pretty JSON
/// with a final newline.
pub fn bundle_schema_json() -> String {
    let mut s = serde_json::to_string_pretty(&bundle_schema()).expect("a schema serialises");
    s.push('\n');
    s
}
