//! `policyd run --kubernetes`: bundles from `PolicyBundle` objects, status
//! written back per node, and pod attribution by cgroup.
//!
//! - [`bundles`]: which objects this node runs (node selectors), validation
//!   and the per-node status entries (pure);
//! - [`watch`]: the API side: watching objects, this node's `Node` and its
//!   pods, writing status, and [`KubeWatch`], the source the daemon polls;
//! - [`pods`]: cgroup directory → pod and container ([`PodIndex`]);
//! - [`terms`]: the `k8s.*` dimensions of a hook table resolved per cgroup
//!   ([`k8s_cgroup_terms`], pure);
//! - [`pod_json`]: the `process_exec.process.pod` object of events.

use std::path::PathBuf;
use std::time::Duration;

pub mod bundles;
pub mod pods;
pub mod terms;
pub mod watch;

pub use pods::{PodIndex, PodMeta, DEFAULT_CGROUP_ROOT};
pub use terms::{k8s_cgroup_terms, K8sTerms};
pub use watch::{KubeOptions, KubeWatch};

/// How often containers whose cgroup was not found are looked for again.
pub const RETRY_INTERVAL: Duration = Duration::from_secs(1);
/// How often this node's `Node` object is read again (its labels select
/// bundles).
pub const NODE_REFRESH: Duration = Duration::from_secs(30);
/// How long `policyd run --kubernetes` waits at start for the first full
/// list of `PolicyBundle` objects.
pub const START_TIMEOUT: Duration = Duration::from_secs(60);

/// Why the Kubernetes source could not start.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum K8sError {
    /// No usable client configuration.
    #[error("cannot configure a Kubernetes client{}: {message}", .kubeconfig.as_ref().map(|p| format!(" from `{}`", p.display())).unwrap_or_default())]
    #[diagnostic(
        code(policyd::k8s_config),
        help("in a pod, the service account is used; elsewhere give `--kubeconfig PATH` or set `KUBECONFIG`")
    )]
    Config {
        /// `--kubeconfig`, when given.
        kubeconfig: Option<PathBuf>,
        /// What went wrong.
        message: String,
    },
    /// This node's `Node` object cannot be read.
    #[error("cannot read node `{node}`: {message}")]
    #[diagnostic(
        code(policyd::k8s_node),
        help("the node name (`--node-name`, `$NODE_NAME`, the hostname) must be the Kubernetes node's name, and the service account needs `get` on nodes")
    )]
    Node {
        /// The node name.
        node: String,
        /// The API error.
        message: String,
    },
    /// The `PolicyBundle` objects could not be listed in time.
    #[error("cannot list `policybundles.policyc.dev` within {}s: {message}", .timeout.as_secs())]
    #[diagnostic(
        code(policyd::k8s_list),
        help("is the CRD installed (`kubectl get crd policybundles.policyc.dev`), and may the service account list and watch policybundles?")
    )]
    List {
        /// How long it waited.
        timeout: Duration,
        /// The last API error, if any.
        message: String,
    },
    /// The selected bundles cannot be loaded together at start.
    #[error("the bundles selected for node `{node}` cannot be loaded together: {message}")]
    #[diagnostic(
        code(policyd::k8s_bundles),
        help("change the bundles' node selectors or split them so that together they fit the kernel's limits")
    )]
    Merge {
        /// The node name.
        node: String,
        /// Why, naming the bundles.
        message: String,
    },
}

/// The `pod` object of an exported event, in the shape of Tetragon's
/// `process_exec.process.pod`:
/// `{"namespace": …, "name": …, "container": {"name": …}, "pod_labels": {…}}`.
pub fn pod_json(meta: &PodMeta) -> serde_json::Value {
    serde_json::json!({
        "namespace": meta.namespace,
        "name": meta.pod,
        "container": { "name": meta.container },
        "pod_labels": meta.labels,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_json_has_tetragons_shape() {
        let meta = PodMeta {
            namespace: "prod".into(),
            pod: "web-1".into(),
            container: "nginx".into(),
            labels: [("app".to_string(), "web".to_string())].into(),
            pod_uid: "7c1f".into(),
        };
        assert_eq!(
            pod_json(&meta).to_string(),
            r#"{"container":{"name":"nginx"},"name":"web-1","namespace":"prod","pod_labels":{"app":"web"}}"#
        );
    }
}
