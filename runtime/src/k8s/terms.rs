//! What the Kubernetes dimensions of a hook table let through, per cgroup
//! (pure; no kernel, no API server).
//!
//! A process's `k8s.namespace`, `k8s.pod`, `k8s.container` and
//! `k8s.label["KEY"]` are properties of the cgroup it runs in, known in user
//! space from the [`PodIndex`]. So instead of one kernel lookup per such
//! dimension, the kernel needs one lookup by cgroup id
//! (`bpf_get_current_cgroup_id()`) giving the intersection of all of them:
//! [`k8s_cgroup_terms`] computes it with the bundle evaluator's own lookups
//! ([`policy_compiler::eval::dimension_lookup`]), so the product equals what
//! [`policy_compiler::eval::eval_bundle`] gives for those dimensions.

use std::collections::{BTreeMap, BTreeSet};

use policy_compiler::bundle::{HookTable, TermSet};
use policy_compiler::eval::dimension_lookup;
use policy_dsl::checked::{FieldKey, Value};
use policy_dsl::schema::Field;

use super::pods::{PodIndex, PodMeta};

/// The Kubernetes part of a hook table, resolved per cgroup.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct K8sTerms {
    /// The Kubernetes dimensions of the table (dimension names as in the
    /// bundle, e.g. `k8s.namespace`, `k8s.label["app"]`, and relations
    /// between two `k8s.*` fields), sorted. Empty: the table does not test
    /// Kubernetes fields, and the kernel need not consult the cgroup map.
    pub dimensions: Vec<String>,
    /// For every cgroup id of a container the [`PodIndex`] knows: the terms
    /// that all of [`K8sTerms::dimensions`] let through for its pod and
    /// container (sorted term ids; every term when `dimensions` is empty).
    pub per_cgroup: BTreeMap<u64, TermSet>,
    /// The same for a process in no known pod's container (a host process,
    /// or a cgroup the index does not know yet): every `k8s.*` field absent.
    pub outside_pods: TermSet,
    /// Relations between a `k8s.*` field and a field of the event (e.g.
    /// `k8s.pod == process.name`): they depend on the event, not only on
    /// the cgroup, so they are left out of [`K8sTerms::per_cgroup`] and
    /// [`K8sTerms::outside_pods`] and stay dimensions of their own.
    pub per_event: Vec<String>,
}

/// Whether a dimension or relation field name is a Kubernetes field.
fn is_k8s(name: &str) -> bool {
    name.starts_with("k8s.")
}

/// The dimension name of label `key` (`k8s.label["key"]`, as the compiler
/// writes it).
pub fn label_dimension(key: &str) -> String {
    FieldKey {
        field: Field::K8sLabel,
        key: Some(key.to_string()),
    }
    .to_string()
}

/// The event fields a process in `meta`'s container has, by dimension name.
pub fn pod_fields(meta: &PodMeta) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    out.insert(
        "k8s.namespace".to_string(),
        Value::Str(meta.namespace.clone()),
    );
    out.insert("k8s.pod".to_string(), Value::Str(meta.pod.clone()));
    out.insert(
        "k8s.container".to_string(),
        Value::Str(meta.container.clone()),
    );
    for (k, v) in &meta.labels {
        out.insert(label_dimension(k), Value::Str(v.clone()));
    }
    out
}

/// Per cgroup of `pods`, the terms of `table` that its Kubernetes dimensions
/// let through (see [`K8sTerms`]). The kernel ANDs the entry of the current
/// cgroup (else [`K8sTerms::outside_pods`]) with the other dimensions'
/// lookups, and skips the `k8s.*` dimensions themselves.
pub fn k8s_cgroup_terms(table: &HookTable, pods: &PodIndex) -> K8sTerms {
    let n = table.terms.len() as u32;
    let all: TermSet = (0..n).collect();
    let mut dimensions = Vec::new();
    let mut per_event = Vec::new();
    for (name, dim) in &table.dimensions {
        match &dim.relation {
            Some(rel) if is_k8s(&rel.left) && is_k8s(&rel.right) => dimensions.push(name),
            Some(rel) if is_k8s(&rel.left) || is_k8s(&rel.right) => per_event.push(name.clone()),
            Some(_) => {}
            None if is_k8s(name) => dimensions.push(name),
            None => {}
        }
    }
    let terms_for = |fields: &BTreeMap<String, Value>| -> TermSet {
        let refs: BTreeMap<String, &Value> = fields.iter().map(|(k, v)| (k.clone(), v)).collect();
        let mut set: BTreeSet<u32> = all.iter().copied().collect();
        for name in &dimensions {
            let got = dimension_lookup(name, &table.dimensions[*name], &refs, n);
            let got: BTreeSet<u32> = got.into_iter().collect();
            set = set.intersection(&got).copied().collect();
        }
        set.into_iter().collect()
    };
    let per_cgroup = pods
        .iter()
        .map(|(id, meta)| (id, terms_for(&pod_fields(meta))))
        .collect();
    K8sTerms {
        outside_pods: terms_for(&BTreeMap::new()),
        dimensions: dimensions.into_iter().cloned().collect(),
        per_cgroup,
        per_event,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use policy_compiler::bundle::{Hook, PolicyBundle};
    use policy_compiler::eval::{eval_bundle, matched_terms};
    use policy_compiler::event_json::parse_event;
    use policy_compiler::SourceFile;

    fn compile(text: &str) -> PolicyBundle {
        // The runtime cannot load `k8s.*` fields yet: the evaluation
        // compile has no runtime gate, and its tables are the same.
        policy_compiler::compile::compile_for_evaluation(
            &[SourceFile {
                name: "k.policy".into(),
                text: text.into(),
            }],
            "k",
        )
        .unwrap_or_else(|e| panic!("{e:?}"))
        .0
        .bundle
    }

    const POLICY: &str = r#"policy k {}
rule prod_shell on exec {
  when k8s.namespace in { "prod", "payments" } and process.binary in { "/bin/sh", "/bin/bash" }
  deny
}
rule web_tmp on exec {
  when k8s.label["app"] == "web" and process.binary startswith "/tmp/"
  kill
}
rule no_tier on exec {
  when not k8s.label["tier"] startswith "fr" and k8s.container != "debug"
  audit
}
rule sidecar on exec {
  when k8s.pod startswith "api-" or k8s.label["app.kubernetes.io/name"] == "x\"y"
  audit
}
rule host on exec {
  when process.binary == "/usr/bin/sudo"
  audit
}
"#;

    fn meta(ns: &str, pod: &str, container: &str, labels: &[(&str, &str)]) -> PodMeta {
        PodMeta {
            namespace: ns.into(),
            pod: pod.into(),
            container: container.into(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            pod_uid: format!("uid-{pod}"),
        }
    }

    /// The event JSON of `binary` run in `meta`'s container (or in no pod).
    fn event_json(binary: &str, meta: Option<&PodMeta>) -> String {
        let mut ev = serde_json::json!({"hook": "exec", "process.binary": binary});
        if let Some(m) = meta {
            ev["k8s.namespace"] = m.namespace.clone().into();
            ev["k8s.pod"] = m.pod.clone().into();
            ev["k8s.container"] = m.container.clone().into();
            for (k, v) in &m.labels {
                ev[label_dimension(k)] = v.clone().into();
            }
        }
        ev.to_string()
    }

    #[test]
    fn label_dimensions_are_named_as_the_compiler_names_them() {
        let b = compile(POLICY);
        let t = &b.spec.hooks[&Hook::Exec];
        for key in ["app", "tier", "app.kubernetes.io/name"] {
            assert!(
                t.dimensions.contains_key(&label_dimension(key)),
                "{key}: {:?}",
                t.dimensions.keys().collect::<Vec<_>>()
            );
        }
        assert_eq!(label_dimension("a\"b"), "k8s.label[\"a\\\"b\"]");
    }

    #[test]
    fn cgroup_terms_agree_with_the_bundle_evaluator() {
        let b = compile(POLICY);
        let table = &b.spec.hooks[&Hook::Exec];
        let pods = [
            meta("prod", "api-1", "app", &[("app", "web"), ("tier", "front")]),
            meta("payments", "db-0", "debug", &[("tier", "back")]),
            meta("dev", "web-7", "nginx", &[("app", "web")]),
            meta("dev", "x", "c", &[("app.kubernetes.io/name", "x\"y")]),
            meta("kube-system", "coredns", "coredns", &[]),
        ];
        let mut index = PodIndex::default();
        for (i, m) in pods.iter().enumerate() {
            index.insert(1000 + i as u64, m.clone());
        }
        let k = k8s_cgroup_terms(table, &index);
        assert_eq!(
            k.dimensions,
            [
                "k8s.container",
                "k8s.label[\"app\"]",
                "k8s.label[\"app.kubernetes.io/name\"]",
                "k8s.label[\"tier\"]",
                "k8s.namespace",
                "k8s.pod"
            ]
        );
        assert!(k.per_event.is_empty());
        assert_eq!(k.per_cgroup.len(), pods.len());
        let other: Vec<&String> = table
            .dimensions
            .keys()
            .filter(|n| !k.dimensions.contains(n))
            .collect();
        assert_eq!(other, ["process.binary"]);
        let binaries = ["/bin/sh", "/tmp/x", "/usr/bin/sudo", "/opt/y"];
        for bin in binaries {
            for (i, m) in pods.iter().map(Some).chain([None]).enumerate() {
                let event = parse_event(&event_json(bin, m)).unwrap();
                let k8s = match m {
                    Some(_) => &k.per_cgroup[&(1000 + i as u64)],
                    None => &k.outside_pods,
                };
                // The kernel's product: the other dimensions' lookups AND
                // the cgroup's entry.
                let mut fields = BTreeMap::new();
                fields.insert("process.binary".to_string(), Value::Str(bin.to_string()));
                let refs: BTreeMap<String, &Value> =
                    fields.iter().map(|(k, v)| (k.clone(), v)).collect();
                let rest = dimension_lookup(
                    "process.binary",
                    &table.dimensions["process.binary"],
                    &refs,
                    table.terms.len() as u32,
                );
                let product: BTreeSet<u32> = rest
                    .iter()
                    .filter(|t| k8s.binary_search(t).is_ok())
                    .copied()
                    .collect();
                assert_eq!(product, matched_terms(table, &event), "{bin} in {m:?}");
                let rules: Vec<u32> = product
                    .iter()
                    .map(|t| table.terms[*t as usize].rule)
                    .collect::<BTreeSet<u32>>()
                    .into_iter()
                    .collect();
                assert_eq!(rules, eval_bundle(&b, &event).matched, "{bin} in {m:?}");
            }
        }
        // Spot checks of values, by rule name.
        let rule_names = |set: &TermSet| -> Vec<&str> {
            set.iter()
                .map(|t| {
                    b.spec.rules[table.terms[*t as usize].rule as usize]
                        .name
                        .as_str()
                })
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect()
        };
        // prod api-1 app=web tier=front: every rule's k8s part but no_tier.
        assert_eq!(
            rule_names(&k.per_cgroup[&1000]),
            ["host", "prod_shell", "sidecar", "web_tmp"]
        );
        // payments db-0, container `debug`: prod_shell, host.
        assert_eq!(rule_names(&k.per_cgroup[&1001]), ["host", "prod_shell"]);
        // Outside pods: the label is absent, so `not … startswith` holds,
        // and `k8s.container != "debug"` holds on an absent container.
        let outside = eval_bundle(&b, &parse_event(&event_json("/opt/y", None)).unwrap());
        assert_eq!(rule_names(&k.outside_pods), ["host", "no_tier"]);
        assert_eq!(outside.matched.len(), 1);
    }

    #[test]
    fn a_table_without_k8s_dimensions_lets_every_term_through() {
        let b = compile(
            "policy p {}\nrule r on exec { when process.binary == \"/a\" audit }\nrule s on exec { when process.binary == \"/b\" deny }\n",
        );
        let table = &b.spec.hooks[&Hook::Exec];
        let mut index = PodIndex::default();
        index.insert(7, meta("a", "b", "c", &[]));
        let k = k8s_cgroup_terms(table, &index);
        assert!(k.dimensions.is_empty());
        assert_eq!(k.outside_pods, vec![0, 1]);
        assert_eq!(k.per_cgroup[&7], vec![0, 1]);
    }

    #[test]
    fn relations_between_k8s_fields_are_per_cgroup_others_per_event() {
        let b = compile(
            "policy p {}\nrule same on exec { when k8s.pod == k8s.container audit }\nrule mixed on exec { when k8s.container == process.name audit }\n",
        );
        let table = &b.spec.hooks[&Hook::Exec];
        let mut index = PodIndex::default();
        index.insert(1, meta("ns", "web", "web", &[]));
        index.insert(2, meta("ns", "web", "side", &[]));
        let k = k8s_cgroup_terms(table, &index);
        assert_eq!(k.dimensions, ["k8s.pod == k8s.container"]);
        assert_eq!(k.per_event, ["k8s.container == process.name"]);
        for (cg, m) in [
            (1u64, index.lookup(1).unwrap()),
            (2, index.lookup(2).unwrap()),
        ] {
            let mut ev: serde_json::Value =
                serde_json::from_str(&event_json("/x", Some(m))).unwrap();
            ev["process.name"] = "web".into();
            let event = parse_event(&ev.to_string()).unwrap();
            let want: BTreeSet<u32> = matched_terms(table, &event);
            let mixed = &table.dimensions["k8s.container == process.name"];
            let fields = pod_fields(m);
            let mut refs: BTreeMap<String, &Value> =
                fields.iter().map(|(k, v)| (k.clone(), v)).collect();
            let name = Value::Str("web".into());
            refs.insert("process.name".into(), &name);
            let rest = dimension_lookup(
                "k8s.container == process.name",
                mixed,
                &refs,
                table.terms.len() as u32,
            );
            let got: BTreeSet<u32> = rest
                .into_iter()
                .filter(|t| k.per_cgroup[&cg].binary_search(t).is_ok())
                .collect();
            assert_eq!(got, want, "cgroup {cg}");
        }
        assert_eq!(k.per_cgroup[&1].len(), 2, "web == web: both terms pass it");
        assert_eq!(k.per_cgroup[&2].len(), 1, "web != side: only `mixed`");
    }
}
