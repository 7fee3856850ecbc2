//! Which `PolicyBundle` objects a node runs, and what it reports in their
//! status (pure: objects in, decisions out; the API calls are in
//! [`super::watch`]).
//!
//! An object is *selected* when every `key: value` of its
//! `spec.nodeSelector` is a label of this node (no selector: every node).
//! A selected object is validated exactly as a file of `--bundle-dir` is
//! ([`crate::reload::validate`]: shape, versions, digest, what this runtime
//! can enforce), from the document `apiVersion`, `kind`, `metadata.name`
//! and `labels`, and `spec` of the object (the API server's other metadata
//! and the `status` are not part of a bundle). Then, as for a directory
//! ([`crate::reload::plan`], keyed by object name instead of file name):
//! a version in force that did not change stays; a new or changed valid
//! one comes in unless one of its policies is already in force from another
//! object; a refused one leaves the previous version of that object (if
//! any) in force; an object deleted or no longer selected leaves.

use std::collections::BTreeMap;
use std::sync::Arc;

use policy_compiler::bundle::{PolicyBundle, API_VERSION, KIND};
use policy_compiler::k8s::{LoadState, NodeStatus};
use serde_json::{json, Value};

use crate::reload::{validate, Change};

/// A `PolicyBundle` object as the API server returned it (list or watch).
#[derive(Debug, Clone, PartialEq)]
pub struct BundleObject {
    /// `metadata.name`.
    pub name: String,
    /// `metadata.generation` (0 when absent).
    pub generation: i64,
    /// The bundle document of the object (see the module doc), as compact
    /// JSON: what is validated, and what tells versions apart.
    pub bytes: Vec<u8>,
    /// `spec.nodeSelector`; `None` when the spec has none; `Err` when it is
    /// not a map of strings (the object is then validated, and refused).
    pub node_selector: Result<BTreeMap<String, String>, ()>,
    /// `spec.digest` as written (empty when missing).
    pub digest: String,
    /// This node's entry of `status.nodes`, if any.
    pub our_status: Option<NodeStatus>,
}

impl BundleObject {
    /// Read an object (`apiVersion`, `kind`, `metadata`, `spec`, `status`,
    /// the JSON the API server sends); `node` picks this node's status entry.
    /// `None` without a name.
    pub fn from_json(obj: &Value, node: &str) -> Option<BundleObject> {
        let meta = obj.get("metadata")?;
        let name = meta.get("name")?.as_str()?.to_string();
        let generation = meta.get("generation").and_then(Value::as_i64).unwrap_or(0);
        let spec = obj.get("spec").cloned().unwrap_or(Value::Null);
        let mut metadata = json!({ "name": name });
        if let Some(labels) = meta.get("labels").filter(|l| !l.is_null()) {
            metadata["labels"] = labels.clone();
        }
        let doc = json!({
            "apiVersion": obj.get("apiVersion").and_then(Value::as_str).unwrap_or(API_VERSION),
            "kind": obj.get("kind").and_then(Value::as_str).unwrap_or(KIND),
            "metadata": metadata,
            "spec": spec,
        });
        let node_selector = match spec.get("nodeSelector") {
            None | Some(Value::Null) => Ok(BTreeMap::new()),
            Some(v) => serde_json::from_value(v.clone()).map_err(|_| ()),
        };
        let digest = spec
            .get("digest")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let our_status = obj
            .pointer("/status/nodes")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter(|e| e.get("node").and_then(Value::as_str) == Some(node))
            .find_map(|e| serde_json::from_value(e.clone()).ok());
        Some(BundleObject {
            name,
            generation,
            bytes: serde_json::to_vec(&doc).expect("JSON values serialise"),
            node_selector,
            digest,
            our_status,
        })
    }

    /// Whether a node with `labels` runs this object (a malformed selector
    /// counts as selecting, so that the object is refused and reported).
    pub fn selects(&self, labels: &BTreeMap<String, String>) -> bool {
        match &self.node_selector {
            Ok(sel) => sel.iter().all(|(k, v)| labels.get(k) == Some(v)),
            Err(()) => true,
        }
    }
}

/// One object's bundle in force.
#[derive(Debug, Clone)]
pub struct Active {
    /// `metadata.name`.
    pub name: String,
    /// `metadata.generation` of the version in force.
    pub generation: i64,
    /// The document it was validated from ([`BundleObject::bytes`]).
    pub bytes: Vec<u8>,
    /// The bundle.
    pub bundle: Arc<PolicyBundle>,
}

/// The bundles of the next generation and what to report.
#[derive(Debug, Default)]
pub struct KubePlan {
    /// The bundles in force next, by object name.
    pub set: Vec<Active>,
    /// Objects refused (selected but not in force at the version the API
    /// server has), with why: one line each.
    pub refused: BTreeMap<String, String>,
    /// Log lines (without the `policyd: ` prefix).
    pub log: Vec<String>,
}

/// Decide which bundles `objects` put in force on a node with `labels`,
/// given those in force (`active`); `invalid` remembers documents that
/// failed validation (by object name) so that an unchanged refused object
/// is not validated and logged again. See the module doc for the rule.
pub fn plan(
    objects: &BTreeMap<String, BundleObject>,
    labels: &BTreeMap<String, String>,
    active: &[Active],
    invalid: &mut BTreeMap<String, (Vec<u8>, String)>,
) -> KubePlan {
    let selected: BTreeMap<&String, &BundleObject> =
        objects.iter().filter(|(_, o)| o.selects(labels)).collect();
    invalid.retain(|n, _| selected.contains_key(n));
    let mut out = KubePlan::default();
    let mut accepted: BTreeMap<String, Active> = BTreeMap::new();
    let mut policies: BTreeMap<String, String> = BTreeMap::new();
    let clash = |b: &PolicyBundle, policies: &BTreeMap<String, String>| {
        b.spec
            .policies
            .iter()
            .find_map(|p| policies.get(&p.name).map(|o| (p.name.clone(), o.clone())))
    };
    fn take(
        a: Active,
        accepted: &mut BTreeMap<String, Active>,
        policies: &mut BTreeMap<String, String>,
    ) {
        for p in &a.bundle.spec.policies {
            policies.insert(p.name.clone(), a.name.clone());
        }
        accepted.insert(a.name.clone(), a);
    }
    for a in active {
        match selected.get(&a.name) {
            Some(o) if o.bytes == a.bytes => {
                let mut a = a.clone();
                a.generation = o.generation;
                take(a, &mut accepted, &mut policies);
            }
            Some(_) => {}
            None => out.log.push(format!(
                "bundle {} {}: digest={} no longer in force",
                a.name,
                if objects.contains_key(&a.name) {
                    "no longer selects this node"
                } else {
                    "deleted"
                },
                a.bundle.spec.digest
            )),
        }
    }
    for (name, obj) in &selected {
        if accepted.contains_key(*name) {
            continue;
        }
        let previous = active.iter().find(|a| &a.name == *name);
        // Err((why, log it)).
        let candidate: Result<Active, (String, bool)> = match invalid.get(*name) {
            Some((bytes, why)) if *bytes == obj.bytes => Err((why.clone(), false)),
            _ => match validate(&obj.bytes) {
                Change::Refused(why) => {
                    invalid.insert((*name).clone(), (obj.bytes.clone(), why.clone()));
                    Err((why, true))
                }
                Change::Valid(b, _, _) => {
                    invalid.remove(*name);
                    match clash(&b, &policies) {
                        Some((policy, other)) => Err((
                            format!("policy `{policy}` is already loaded from bundle `{other}`"),
                            true,
                        )),
                        None => Ok(Active {
                            name: (*name).clone(),
                            generation: obj.generation,
                            bytes: obj.bytes.clone(),
                            bundle: b,
                        }),
                    }
                }
            },
        };
        match candidate {
            Ok(a) => take(a, &mut accepted, &mut policies),
            Err((why, log)) => {
                let kept = previous.filter(|p| clash(&p.bundle, &policies).is_none());
                let what = match kept {
                    Some(p) => format!(
                        "keeping its previous version (generation {} digest={})",
                        p.generation, p.bundle.spec.digest
                    ),
                    None => "not loaded".to_string(),
                };
                if log {
                    out.log
                        .push(format!("bundle {name} refused, {what}: {why}"));
                }
                out.refused
                    .insert((*name).clone(), format!("{why}; {what}"));
                if let Some(p) = kept {
                    take(p.clone(), &mut accepted, &mut policies);
                }
            }
        }
    }
    out.set = accepted.into_values().collect();
    out
}

/// This node's status entry for `obj`: `Loaded` when the version the API
/// server has is in force (`message`: what the node chose), `Failed` with
/// `why` otherwise. `lastTransitionTime` is kept from the entry the object
/// has when the state did not change, else `now` (RFC 3339).
pub fn node_status(
    node: &str,
    obj: &BundleObject,
    failed: Option<&str>,
    loaded_message: &str,
    now: &str,
) -> NodeStatus {
    let (state, message) = match failed {
        None => (LoadState::Loaded, loaded_message.to_string()),
        Some(why) => (LoadState::Failed, why.to_string()),
    };
    let last_transition_time = match &obj.our_status {
        Some(s) if s.state == state => s.last_transition_time.clone(),
        _ => now.to_string(),
    };
    NodeStatus {
        node: node.to_string(),
        state,
        generation: obj.generation,
        digest: obj.digest.clone(),
        message,
        last_transition_time,
    }
}

/// Whether two entries say the same but for `lastTransitionTime`.
pub fn same_report(a: &NodeStatus, b: &NodeStatus) -> bool {
    a.state == b.state
        && a.generation == b.generation
        && a.digest == b.digest
        && a.message == b.message
        && a.node == b.node
}

/// The body of the server-side apply patch of `name`'s `status` by this
/// node's field manager. `status.nodes` is a list map keyed by `node`, so
/// the API server merges the applied entry by key: only this node's entry
/// is set, other nodes' entries (owned by their own managers) are never
/// touched. With `entry` `None` the body names no entry: fields that only
/// this manager owned and that an apply no longer names are removed, so
/// this node's entry goes.
///
/// (A JSON merge patch would replace the whole list, and custom resources
/// have no strategic merge patch; a JSON patch would need the entry's index,
/// which other nodes' writes shift.)
pub fn status_patch(name: &str, entry: Option<&NodeStatus>) -> Value {
    let mut body = json!({
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": { "name": name },
    });
    if let Some(e) = entry {
        body["status"] = json!({ "nodes": [e] });
    }
    body
}

#[cfg(test)]
mod tests {
    use super::*;
    use policy_compiler::compile::{compile_k8s, K8sOptions};
    use policy_compiler::SourceFile;

    /// The API object of a bundle compiled from one rule.
    fn object(name: &str, policy: &str, selector: &str, status: Value) -> Value {
        let node_selector = policy_compiler::k8s::parse_labels("node selector", selector).unwrap();
        let text = format!(
            "policy {policy} {{}}\nrule r on exec {{ when process.binary == \"/x/{name}\" audit }}\n"
        );
        let b = compile_k8s(
            &[SourceFile {
                name: "p.policy".into(),
                text,
            }],
            name,
            &K8sOptions {
                node_selector,
                ..K8sOptions::default()
            },
        )
        .unwrap()
        .bundle;
        let mut v = serde_json::to_value(&b).unwrap();
        v["metadata"]["generation"] = 4.into();
        v["metadata"]["resourceVersion"] = "77".into();
        v["metadata"]["uid"] = "u".into();
        v["status"] = status;
        v
    }

    fn objects(list: &[Value]) -> BTreeMap<String, BundleObject> {
        list.iter()
            .map(|o| BundleObject::from_json(o, "n1").unwrap())
            .map(|o| (o.name.clone(), o))
            .collect()
    }

    fn labels(s: &str) -> BTreeMap<String, String> {
        policy_compiler::k8s::parse_labels("label", s).unwrap()
    }

    fn names(p: &KubePlan) -> Vec<&str> {
        p.set.iter().map(|a| a.name.as_str()).collect()
    }

    #[test]
    fn objects_are_read_without_server_metadata_and_status() {
        let entry = json!({"node": "n1", "state": "Loaded", "generation": 3, "digest": "d",
                           "lastTransitionTime": "2026-01-02T03:04:05Z"});
        let other = json!({"node": "n2", "state": "Failed", "generation": 3, "digest": "d",
                           "message": "m", "lastTransitionTime": "2026-01-02T03:04:05Z"});
        let o = BundleObject::from_json(
            &object("a", "pa", "pool=x", json!({"nodes": [other, entry]})),
            "n1",
        )
        .unwrap();
        assert_eq!(o.generation, 4);
        assert_eq!(o.node_selector, Ok(labels("pool=x")));
        let s = o.our_status.clone().unwrap();
        assert_eq!((s.node.as_str(), s.generation), ("n1", 3));
        // The document validated is the bundle as compiled: it validates.
        assert!(matches!(validate(&o.bytes), Change::Valid(..)));
        let doc: Value = serde_json::from_slice(&o.bytes).unwrap();
        assert_eq!(doc["metadata"], json!({"name": "a"}));
        assert!(doc.get("status").is_none());
    }

    #[test]
    fn node_labels_select_and_a_label_change_reselects() {
        let list = objects(&[
            object("a", "pa", "", Value::Null),
            object("b", "pb", "pool=x", Value::Null),
            object("c", "pc", "pool=y,zone=1", Value::Null),
        ]);
        let mut invalid = BTreeMap::new();
        let p1 = plan(&list, &labels("pool=x,zone=1"), &[], &mut invalid);
        assert_eq!(names(&p1), ["a", "b"]);
        assert!(p1.log.is_empty() && p1.refused.is_empty());
        let p2 = plan(&list, &labels("pool=y,zone=1"), &p1.set, &mut invalid);
        assert_eq!(names(&p2), ["a", "c"]);
        assert_eq!(
            p2.log,
            [format!(
                "bundle b no longer selects this node: digest={} no longer in force",
                p1.set[1].bundle.spec.digest
            )]
        );
        // In force objects keep their Arc (no revalidation).
        assert!(Arc::ptr_eq(&p1.set[0].bundle, &p2.set[0].bundle));
    }

    #[test]
    fn malformed_and_clashing_objects_are_refused() {
        let mut bad = object("bad", "pbad", "", Value::Null);
        bad["spec"]["nodeSelector"] = json!(["not", "a", "map"]);
        let list = objects(&[
            object("a", "shared", "", Value::Null),
            bad,
            object("b", "shared", "", Value::Null),
        ]);
        let mut invalid = BTreeMap::new();
        let p = plan(&list, &labels("pool=x"), &[], &mut invalid);
        assert_eq!(names(&p), ["a"]);
        assert!(
            p.refused["bad"].starts_with("bundle is not valid YAML of kind `PolicyBundle`")
                && p.refused["bad"].ends_with("; not loaded"),
            "{}",
            p.refused["bad"]
        );
        assert_eq!(
            p.refused["b"],
            "policy `shared` is already loaded from bundle `a`; not loaded"
        );
        assert_eq!(p.log.len(), 2);
        // Unchanged: refused again without a log line.
        let p = plan(&list, &labels("pool=x"), &p.set, &mut invalid);
        assert_eq!(p.refused.len(), 2);
        assert_eq!(p.log.len(), 1, "{:?}", p.log);
    }

    #[test]
    fn status_entries_and_patches() {
        let entry = json!({"node": "n1", "state": "Loaded", "generation": 3, "digest": "d",
                           "lastTransitionTime": "2026-01-02T03:04:05Z"});
        let o = BundleObject::from_json(&object("a", "pa", "", json!({"nodes": [entry]})), "n1")
            .unwrap();
        let loaded = node_status("n1", &o, None, "exec: m", "NOW");
        assert_eq!(loaded.state, LoadState::Loaded);
        assert_eq!(loaded.generation, 4);
        assert_eq!(loaded.digest, o.digest);
        assert_eq!(
            loaded.last_transition_time, "2026-01-02T03:04:05Z",
            "same state: kept"
        );
        let failed = node_status("n1", &o, Some("why"), "exec: m", "NOW");
        assert_eq!(
            (
                failed.state,
                failed.message.as_str(),
                failed.last_transition_time.as_str()
            ),
            (LoadState::Failed, "why", "NOW")
        );
        assert!(!same_report(&loaded, &failed));
        assert_eq!(
            status_patch("a", Some(&failed)),
            json!({"apiVersion": API_VERSION, "kind": KIND, "metadata": {"name": "a"},
                   "status": {"nodes": [{"node": "n1", "state": "Failed", "generation": 4,
                   "digest": o.digest, "message": "why", "lastTransitionTime": "NOW"}]}})
        );
        assert_eq!(
            status_patch("a", None),
            json!({"apiVersion": API_VERSION, "kind": KIND, "metadata": {"name": "a"}})
        );
    }
}
