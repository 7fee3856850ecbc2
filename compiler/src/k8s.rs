//! Kubernetes facts about a bundle: label syntax (`policyc compile --labels`
//! and `--node-selector`), the size one API object may have, and the shape of
//! the `status` that each node's `policyd --kubernetes` writes back (see
//! [`crate::crd`] for the CustomResourceDefinition built from these types).

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::compile::is_dns1123_subdomain;

/// Largest bundle `policyc compile` writes, in bytes of YAML (and of compact
/// JSON, the form the API server stores), so that it fits one API object.
///
/// etcd refuses requests over 1.5 MiB by default (`--max-request-bytes`
/// 1572864); the API server stores the object as JSON with its metadata,
/// `managedFields` and the per-node `status` (about 250 bytes per node). One
/// MiB leaves half a MiB for those: room for some 2000 nodes' status entries.
/// (`kubectl apply` without `--server-side` also copies the whole object into
/// an annotation, which Kubernetes limits to 256 KiB: apply larger bundles
/// with `kubectl apply --server-side` or `kubectl create`.)
pub const MAX_BUNDLE_BYTES: usize = 1024 * 1024;

/// A Kubernetes problem with what `policyc compile` was asked to write.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, miette::Diagnostic)]
pub enum K8sError {
    /// A label (or node-selector) key or value is not valid Kubernetes syntax.
    #[error("{what} `{key}={value}` is not a valid Kubernetes label: {why}")]
    #[diagnostic(
        code(policyc::invalid_label),
        help(
            "keys are `[PREFIX/]NAME`: NAME at most 63 letters, digits, `-`, `_`, `.`, \
             starting and ending with a letter or digit; PREFIX a DNS subdomain; \
             values are empty or like NAME"
        )
    )]
    InvalidLabel {
        /// `label` or `node selector`.
        what: &'static str,
        /// The key.
        key: String,
        /// The value.
        value: String,
        /// What is wrong.
        why: String,
    },
    /// The bundle does not fit one Kubernetes API object.
    #[error(
        "the bundle is {bytes} bytes, more than the {limit} bytes one Kubernetes API object \
         may hold here (etcd's 1.5 MiB request limit, less room for metadata and status){note}"
    )]
    #[diagnostic(
        code(policyc::bundle_too_large),
        help("split the policies into several bundles (one `policyc compile` per group of files)")
    )]
    BundleTooLarge {
        /// Size of the bundle (the larger of its YAML and compact JSON forms).
        bytes: usize,
        /// [`MAX_BUNDLE_BYTES`].
        limit: usize,
        /// What makes it large, when one dimension does: `; …` or empty
        /// (see [`crate::bundle::PolicyBundle::repeated_sets_note`]).
        note: String,
    },
    /// The bundle does not fit one Kubernetes API object, and was not
    /// compiled for one (no `--labels` nor `--node-selector`): a warning, as
    /// `policyd --bundle` and `--bundle-dir` load it.
    #[error(
        "the bundle is {bytes} bytes, more than the {limit} bytes one Kubernetes API object \
         may hold: `policyd --bundle`/`--bundle-dir` load it, `kubectl apply` would not{note}"
    )]
    #[diagnostic(
        code(policyc::bundle_too_large),
        severity(Warning),
        help("for a `PolicyBundle` object, split the policies into several bundles (one `policyc compile` per group of files)")
    )]
    BundleTooLargeForObject {
        /// Size of the bundle (the larger of its YAML and compact JSON forms).
        bytes: usize,
        /// [`MAX_BUNDLE_BYTES`].
        limit: usize,
        /// As for [`K8sError::BundleTooLarge`].
        note: String,
    },
}

/// Whether `s` is a label name: at most 63 characters, alphanumerics, `-`,
/// `_` and `.`, beginning and ending with an alphanumeric.
fn is_label_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

/// Why `key` is not a label key, if it is not.
pub fn label_key_problem(key: &str) -> Option<String> {
    let (prefix, name) = match key.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    if let Some(p) = prefix {
        if !is_dns1123_subdomain(p) {
            return Some(format!("prefix `{p}` is not a DNS subdomain"));
        }
    }
    (!is_label_name(name)).then(|| format!("name `{name}` is not a label name"))
}

/// Why `value` is not a label value, if it is not.
pub fn label_value_problem(value: &str) -> Option<String> {
    (!value.is_empty() && !is_label_name(value))
        .then(|| format!("value `{value}` is not a label value"))
}

/// Check every entry of a label map; `what` names it in the error.
///
/// # Errors
/// The first entry that is not a valid label.
pub fn check_labels(what: &'static str, labels: &BTreeMap<String, String>) -> Result<(), K8sError> {
    for (key, value) in labels {
        if let Some(why) = label_key_problem(key).or_else(|| label_value_problem(value)) {
            return Err(K8sError::InvalidLabel {
                what,
                key: key.clone(),
                value: value.clone(),
                why,
            });
        }
    }
    Ok(())
}

/// Parse `k=v,k2=v2` (as given to `--labels` and `--node-selector`) and check
/// each entry.
///
/// # Errors
/// A message naming the malformed or invalid entry, or a key given twice.
pub fn parse_labels(what: &'static str, text: &str) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    for item in text.split(',').filter(|i| !i.trim().is_empty()) {
        let Some((k, v)) = item.split_once('=') else {
            return Err(format!("{what} `{item}` is not `KEY=VALUE`"));
        };
        let (k, v) = (k.trim().to_string(), v.trim().to_string());
        if out.insert(k.clone(), v).is_some() {
            return Err(format!("{what} key `{k}` is given twice"));
        }
    }
    check_labels(what, &out).map_err(|e| e.to_string())?;
    Ok(out)
}

/// Whether a bundle of this YAML text fits one API object.
///
/// # Errors
/// [`K8sError::BundleTooLarge`] with the size found.
pub fn check_size(yaml: &str, json_len: usize) -> Result<(), K8sError> {
    let bytes = yaml.len().max(json_len);
    if bytes > MAX_BUNDLE_BYTES {
        return Err(K8sError::BundleTooLarge {
            bytes,
            limit: MAX_BUNDLE_BYTES,
            note: String::new(),
        });
    }
    Ok(())
}

/// The `status` of a `PolicyBundle` object: one entry per node whose
/// `policyd --kubernetes` has tried to load it. Written by the nodes (the
/// status subresource), never by `policyc`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BundleStatus {
    /// Per node, what happened the last time its runtime loaded this bundle;
    /// a list map keyed by `node`, so each node patches only its own entry.
    #[serde(default)]
    pub nodes: Vec<NodeStatus>,
}

/// Whether a node runs a bundle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum LoadState {
    /// The bundle's maps are filled and its generation is the one enforced.
    Loaded,
    /// The node refused or could not load it (see `message`); the node keeps
    /// enforcing what it had before.
    Failed,
}

/// One node's entry in [`BundleStatus::nodes`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeStatus {
    /// Node name (`spec.nodeName` of the runtime's pod).
    pub node: String,
    /// `Loaded` or `Failed`.
    pub state: LoadState,
    /// `metadata.generation` of the object this entry reports on.
    pub generation: i64,
    /// `spec.digest` of the bundle this entry reports on.
    pub digest: String,
    /// Why loading failed, or what the node chose (mechanisms per hook).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// When `state` last changed, RFC 3339 (e.g. `2026-01-02T03:04:05Z`).
    #[schemars(extend("format" = "date-time"))]
    pub last_transition_time: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_syntax() {
        for good in ["app", "policyc.dev/tier", "a.b_c-d", "x/y"] {
            assert_eq!(label_key_problem(good), None, "{good}");
        }
        for bad in [
            "",
            "-a",
            "a-",
            "Foo_/x",
            "a/b/c",
            &"k".repeat(64),
            "/x",
            "x/",
        ] {
            assert!(label_key_problem(bad).is_some(), "{bad}");
        }
        assert_eq!(label_value_problem(""), None);
        assert_eq!(label_value_problem("Prod_1"), None);
        assert!(label_value_problem("a b").is_some());
        assert!(label_value_problem(&"v".repeat(64)).is_some());
    }

    #[test]
    fn parse_lists() {
        let m = parse_labels("label", "team=sec, env=prod,").unwrap();
        assert_eq!(m.len(), 2);
        assert_eq!(m["env"], "prod");
        assert!(parse_labels("label", "a")
            .unwrap_err()
            .contains("KEY=VALUE"));
        assert!(parse_labels("label", "a=1,a=2")
            .unwrap_err()
            .contains("twice"));
        assert!(parse_labels("node selector", "a=b c")
            .unwrap_err()
            .contains("node selector `a=b c`"));
        assert!(parse_labels("label", "").unwrap().is_empty());
    }

    #[test]
    fn size_limit() {
        assert!(check_size("x", 1).is_ok());
        let big = "x".repeat(MAX_BUNDLE_BYTES + 1);
        assert!(matches!(
            check_size(&big, 0),
            Err(K8sError::BundleTooLarge { .. })
        ));
        assert!(check_size("x", MAX_BUNDLE_BYTES + 1).is_err());
    }
}
