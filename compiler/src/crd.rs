//! The `policybundles.policyc.dev` CustomResourceDefinition, built from the
//! bundle types' schemars schemas.
//!
//! Why not `kube`'s `CustomResource` derive: it generates the top-level
//! resource type itself (with `k8s-openapi`'s `ObjectMeta`), which would
//! replace [`PolicyBundle`](crate::bundle::PolicyBundle) and its strict layout, and pull in `kube` and
//! `k8s-openapi` for a file we can write from the schemas we already have.
//! So the CRD is assembled here from [`BundleSpec`]'s and [`BundleStatus`]'s
//! JSON Schemas, made *structural* as Kubernetes requires: every `$ref`
//! inlined, a `type` on every node, `nullable` instead of `null` types,
//! `enum` instead of `const`/`oneOf` of constants, and no keyword Kubernetes
//! refuses (`additionalProperties: false`, `uniqueItems`, `propertyNames`,
//! `default`, schemars' numeric formats).
//!
//! The file is checked in at [`CRD_PATH`] (a Helm chart's `crds/`); when the
//! types change, regenerate it with
//! `POLICYC_UPDATE_SCHEMA=1 cargo test -p policy-compiler --test crd`.

use serde_json::{json, Map, Value};

use crate::bundle::{BundleSpec, API_VERSION, KIND, SCHEMA_VERSION};
use crate::k8s::BundleStatus;

/// Where the CRD is checked in, relative to the workspace root.
pub const CRD_PATH: &str = "charts/policyd/crds/policybundle.yaml";
/// API group of the bundle resource.
pub const GROUP: &str = "policyc.dev";
/// Plural resource name.
pub const PLURAL: &str = "policybundles";

/// Keywords kept from the schemars output; any other is dropped.
const KEPT: &[&str] = &[
    "type",
    "format",
    "description",
    "properties",
    "required",
    "items",
    "additionalProperties",
    "enum",
    "minimum",
    "maximum",
    "minLength",
    "maxLength",
    "minItems",
    "maxItems",
    "pattern",
    "nullable",
];

/// Formats Kubernetes knows; schemars' `uint32` and the like are dropped
/// (the `minimum: 0` they come with stays).
const FORMATS: &[&str] = &["date-time", "int32", "int64"];

/// The structural form of a schemars schema node, `$ref`s resolved in `defs`.
///
/// # Panics
/// On a `$ref` to a missing definition (a bug in the types' derives).
pub fn structural(node: &Value, defs: &Map<String, Value>) -> Value {
    let Value::Object(o) = node else {
        // `true` / `{}`: anything goes.
        return json!({ "x-kubernetes-preserve-unknown-fields": true });
    };
    let mut o = o.clone();
    // Inline a reference; keys beside it (a field's description) win.
    if let Some(Value::String(r)) = o.remove("$ref") {
        let name = r.rsplit('/').next().unwrap_or_default();
        let Some(Value::Object(def)) = defs.get(name) else {
            panic!("schema reference `{r}` has no definition");
        };
        for (k, v) in def {
            o.entry(k.clone()).or_insert_with(|| v.clone());
        }
        if node.get("description").is_some() {
            o.insert("description".into(), node["description"].clone());
        }
        return structural(&Value::Object(o), defs);
    }
    let mut nullable = false;
    // `Option<T>` of a referenced T: `anyOf: [T, {type: null}]`.
    for key in ["anyOf", "oneOf"] {
        let Some(Value::Array(branches)) = o.get(key).cloned() else {
            continue;
        };
        let (nulls, rest): (Vec<_>, Vec<_>) = branches
            .iter()
            .partition(|b| b.get("type") == Some(&json!("null")));
        nullable |= !nulls.is_empty();
        let constants: Option<Vec<Value>> = rest
            .iter()
            .map(|b| {
                b.get("const")
                    .map(|c| vec![c.clone()])
                    .or_else(|| b.get("enum").and_then(Value::as_array).cloned())
            })
            .collect::<Option<Vec<_>>>()
            .map(|v| v.into_iter().flatten().collect());
        o.remove(key);
        if let Some(values) = constants {
            // An enum whose variants are documented: `oneOf` of constants.
            o.insert("type".into(), json!("string"));
            o.insert("enum".into(), Value::Array(values));
        } else if rest.len() == 1 {
            let inner = structural(rest[0], defs);
            for (k, v) in inner.as_object().into_iter().flatten() {
                if k != "description" || !o.contains_key("description") {
                    o.insert(k.clone(), v.clone());
                }
            }
        } else {
            panic!("cannot make `{key}` of several schemas structural: {node}");
        }
    }
    if let Some(c) = o.remove("const") {
        o.insert("enum".into(), json!([c]));
    }
    // `type: [T, "null"]`.
    if let Some(Value::Array(types)) = o.get("type").cloned() {
        let real: Vec<&Value> = types.iter().filter(|t| *t != "null").collect();
        nullable |= real.len() < types.len();
        assert!(real.len() == 1, "a schema of several types: {node}");
        o.insert("type".into(), real[0].clone());
    }
    if o.get("type").is_none() && o.get("enum").is_some() {
        o.insert("type".into(), json!("string"));
    }
    let mut out = Map::new();
    for (k, v) in o {
        if !KEPT.contains(&k.as_str()) {
            continue;
        }
        let v = match k.as_str() {
            "properties" => Value::Object(
                v.as_object()
                    .into_iter()
                    .flatten()
                    .map(|(p, s)| (p.clone(), structural(s, defs)))
                    .collect(),
            ),
            "items" => structural(&v, defs),
            "additionalProperties" if v == Value::Bool(false) => continue,
            "additionalProperties" => structural(&v, defs),
            "format" if !FORMATS.contains(&v.as_str().unwrap_or_default()) => continue,
            _ => v,
        };
        out.insert(k, v);
    }
    if nullable {
        out.insert("nullable".into(), json!(true));
    }
    let ty = out.get("type").cloned();
    if ty == Some(json!("object"))
        && !out.contains_key("properties")
        && !out.contains_key("additionalProperties")
    {
        out.insert("x-kubernetes-preserve-unknown-fields".into(), json!(true));
    }
    assert!(ty.is_some(), "schema node without a type: {node}");
    Value::Object(out)
}

/// The structural schema of a type, its definitions inlined.
fn type_schema<T: schemars::JsonSchema>() -> Value {
    let schema = schemars::schema_for!(T);
    let root = schema.as_value().clone();
    let defs = root
        .get("$defs")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    structural(&root, &defs)
}

/// The `openAPIV3Schema` of the `v1alpha1` version.
pub fn open_api_schema() -> Value {
    let mut spec = type_schema::<BundleSpec>();
    spec["properties"]["schemaVersion"]["enum"] = json!([SCHEMA_VERSION]);
    let mut status = type_schema::<BundleStatus>();
    // Each node server-side-applies its own entry.
    let nodes = &mut status["properties"]["nodes"];
    nodes["x-kubernetes-list-type"] = json!("map");
    nodes["x-kubernetes-list-map-keys"] = json!(["node"]);
    json!({
        "type": "object",
        "description": "A compiled policy bundle (`policyc compile`), loaded by `policyd` on every node its nodeSelector matches.",
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": spec,
            "status": status,
        }
    })
}

/// The CustomResourceDefinition as a JSON value.
pub fn crd() -> Value {
    let version = API_VERSION.rsplit('/').next().unwrap_or_default();
    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": format!("{PLURAL}.{GROUP}")},
        "spec": {
            "group": GROUP,
            "scope": "Cluster",
            "names": {
                "kind": KIND,
                "listKind": format!("{KIND}List"),
                "plural": PLURAL,
                "singular": "policybundle",
                "shortNames": ["pb"],
                "categories": ["policyc"],
            },
            "versions": [{
                "name": version,
                "served": true,
                "storage": true,
                "subresources": {"status": {}},
                "additionalPrinterColumns": [
                    {"name": "Digest", "type": "string", "jsonPath": ".spec.digest",
                     "description": "SHA-256 of the bundle's content"},
                    {"name": "Rules", "type": "string", "jsonPath": ".spec.rules[*].name",
                     "description": "Names of the bundle's rules (a count cannot be expressed as a JSONPath)"},
                    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
                ],
                "schema": {"openAPIV3Schema": open_api_schema()},
            }],
        }
    })
}

/// [`crd`] as the text of [`CRD_PATH`]: a header comment, then YAML.
pub fn crd_yaml() -> String {
    let mut s = String::from(
        "# Generated by policyc from the bundle types (compiler/src/crd.rs); do not edit.\n\
         # Regenerate: POLICYC_UPDATE_SCHEMA=1 cargo test -p policy-compiler --test crd\n",
    );
    s.push_str(&serde_yaml::to_string(&crd()).expect("the CRD serialises"));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every node has a type and no keyword Kubernetes refuses.
    fn assert_structural(v: &Value, at: &str) {
        let o = v
            .as_object()
            .unwrap_or_else(|| panic!("{at}: not an object"));
        assert!(
            o.contains_key("type") || o.contains_key("x-kubernetes-preserve-unknown-fields"),
            "{at}: no type"
        );
        for k in o.keys() {
            assert!(
                KEPT.contains(&k.as_str()) || k.starts_with("x-kubernetes-"),
                "{at}: keyword `{k}`"
            );
        }
        assert!(
            !(o.contains_key("properties") && o.contains_key("additionalProperties")),
            "{at}: properties and additionalProperties"
        );
        for (p, s) in o
            .get("properties")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
        {
            assert_structural(s, &format!("{at}.{p}"));
        }
        for k in ["items", "additionalProperties"] {
            if let Some(s) = o.get(k) {
                assert_structural(s, &format!("{at}[{k}]"));
            }
        }
    }

    #[test]
    fn schema_is_structural() {
        assert_structural(&open_api_schema(), "openAPIV3Schema");
        let text = serde_json::to_string(&crd()).unwrap();
        assert!(!text.contains("$ref") && !text.contains("$defs"));
    }
}
