//! Pod attribution: which pod and container a cgroup belongs to.
//!
//! The kubelet puts every container in a cgroup v2 directory of its own,
//! named after the pod's UID and the container id the runtime reports in
//! the pod's status (`containerd://ID`, `cri-o://ID`, `docker://ID`). With
//! the systemd cgroup driver (the default of kubeadm, minikube, most
//! distributions):
//!
//! ```text
//! kubepods.slice/kubepods-pod<UID_>.slice/cri-containerd-<ID>.scope                  (Guaranteed)
//! kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<UID_>.slice/crio-<ID>.scope
//! kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod<UID_>.slice/docker-<ID>.scope
//! ```
//!
//! (`<UID_>`: the UID with `-` written `_`); with the cgroupfs driver
//! `kubepods/pod<UID>/<ID>`, `kubepods/burstable/pod<UID>/<ID>`,
//! `kubepods/besteffort/pod<UID>/<ID>` (CRI-O: `crio-<ID>`). A kubelet with
//! `--cgroup-root` (kind, some minikube drivers) nests these deeper: when no
//! known path exists, the tree is searched (bounded depth) for the pod's
//! directory.
//!
//! The **cgroup id** is the inode number of the directory: on cgroup v2 it
//! is the kernfs node id, which is what `bpf_get_current_cgroup_id()`
//! returns for a task in that cgroup.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::Pod;

/// Default cgroup v2 mount point (`policyd run --cgroup-root`).
pub const DEFAULT_CGROUP_ROOT: &str = "/sys/fs/cgroup";
/// How many times a container whose cgroup directory is not there yet is
/// looked for again (one try per [`super::RETRY_INTERVAL`]) before it is
/// given up on, logged and counted.
pub const MAX_CGROUP_TRIES: u32 = 10;
/// How deep under the cgroup root the search for a pod directory goes when
/// no known layout matches.
const SEARCH_DEPTH: usize = 6;

/// One container of a pod, as events name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodMeta {
    /// `metadata.namespace` of the pod.
    pub namespace: String,
    /// `metadata.name` of the pod.
    pub pod: String,
    /// The container's name (`spec.containers[].name`, init and ephemeral
    /// containers included).
    pub container: String,
    /// `metadata.labels` of the pod.
    pub labels: BTreeMap<String, String>,
    /// `metadata.uid` of the pod.
    pub pod_uid: String,
}

/// cgroup id → the container whose cgroup it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodIndex {
    by_cgroup: BTreeMap<u64, PodMeta>,
}

impl PodIndex {
    /// The container of cgroup `cgroup_id` (an event's `cgroup_id`), if
    /// it is a known pod's.
    pub fn lookup(&self, cgroup_id: u64) -> Option<&PodMeta> {
        self.by_cgroup.get(&cgroup_id)
    }

    /// Record that `cgroup_id` is `meta`'s cgroup.
    pub fn insert(&mut self, cgroup_id: u64, meta: PodMeta) {
        self.by_cgroup.insert(cgroup_id, meta);
    }

    /// Forget `cgroup_id`.
    pub fn remove(&mut self, cgroup_id: u64) -> Option<PodMeta> {
        self.by_cgroup.remove(&cgroup_id)
    }

    /// Every known cgroup and its container, by cgroup id.
    pub fn iter(&self) -> impl Iterator<Item = (u64, &PodMeta)> {
        self.by_cgroup.iter().map(|(k, v)| (*k, v))
    }

    /// Number of known container cgroups.
    pub fn len(&self) -> usize {
        self.by_cgroup.len()
    }

    /// Whether no cgroup is known.
    pub fn is_empty(&self) -> bool {
        self.by_cgroup.is_empty()
    }
}

/// The container runtime of a container id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Runtime {
    /// `containerd://ID`: `cri-containerd-ID.scope` (systemd), `ID` (cgroupfs).
    Containerd,
    /// `cri-o://ID`: `crio-ID.scope` (systemd), `crio-ID` (cgroupfs).
    CriO,
    /// `docker://ID`: `docker-ID.scope` (systemd), `ID` (cgroupfs).
    Docker,
}

/// A container id of a pod's status: `containerd://ID`, `cri-o://ID` or
/// `docker://ID` (ID lowercase hex). `None` for another runtime or an id
/// that could not name a directory.
pub fn parse_container_id(s: &str) -> Option<(Runtime, String)> {
    let (scheme, id) = s.split_once("://")?;
    let runtime = match scheme {
        "containerd" => Runtime::Containerd,
        "cri-o" => Runtime::CriO,
        "docker" => Runtime::Docker,
        _ => return None,
    };
    (!id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric()))
        .then(|| (runtime, id.to_string()))
}

/// Names the container's directory may have inside its pod's directory.
fn container_dir_names(runtime: Runtime, id: &str) -> Vec<String> {
    match runtime {
        Runtime::Containerd => vec![format!("cri-containerd-{id}.scope"), id.to_string()],
        Runtime::CriO => vec![
            format!("crio-{id}.scope"),
            format!("crio-{id}"),
            id.to_string(),
        ],
        Runtime::Docker => vec![format!("docker-{id}.scope"), id.to_string()],
    }
}

/// Whether directory name `name` is the pod directory of `uid` in some
/// layout (`pod<UID>`, `…-pod<UID_>.slice`).
fn is_pod_dir(name: &str, uid: &str) -> bool {
    let systemd = format!("-pod{}.slice", uid.replace('-', "_"));
    name == format!("pod{uid}") || name.ends_with(&systemd)
}

/// The known places of pod `uid`'s directory under `root`.
fn pod_dir_candidates(root: &Path, uid: &str) -> Vec<PathBuf> {
    let u = uid.replace('-', "_");
    let s = root.join("kubepods.slice");
    let c = root.join("kubepods");
    vec![
        s.join(format!(
            "kubepods-burstable.slice/kubepods-burstable-pod{u}.slice"
        )),
        s.join(format!(
            "kubepods-besteffort.slice/kubepods-besteffort-pod{u}.slice"
        )),
        s.join(format!("kubepods-pod{u}.slice")),
        c.join(format!("burstable/pod{uid}")),
        c.join(format!("besteffort/pod{uid}")),
        c.join(format!("pod{uid}")),
    ]
}

/// Search `dir` (at most `depth` levels) for pod `uid`'s directory.
fn search_pod_dir(dir: &Path, uid: &str, depth: usize) -> Option<PathBuf> {
    if depth == 0 {
        return None;
    }
    let mut subdirs = Vec::new();
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        if !entry.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if is_pod_dir(&name, uid) {
            return Some(entry.path());
        }
        // Container directories hold no pods: skip the leaves' siblings.
        if !name.ends_with(".scope") {
            subdirs.push(entry.path());
        }
    }
    subdirs.sort();
    subdirs
        .iter()
        .find_map(|d| search_pod_dir(d, uid, depth - 1))
}

/// The cgroup directory of container `id` (of `runtime`) of pod `uid` under
/// the cgroup v2 mount `root`, if it exists.
pub fn container_cgroup_dir(root: &Path, uid: &str, runtime: Runtime, id: &str) -> Option<PathBuf> {
    let names = container_dir_names(runtime, id);
    let in_pod = |pod: &Path| names.iter().map(|n| pod.join(n)).find(|p| p.is_dir());
    pod_dir_candidates(root, uid)
        .iter()
        .filter(|p| p.is_dir())
        .find_map(|p| in_pod(p))
        .or_else(|| search_pod_dir(root, uid, SEARCH_DEPTH).and_then(|p| in_pod(&p)))
}

/// The cgroup id of a cgroup directory: its inode number.
///
/// # Errors
/// When the directory cannot be examined.
pub fn cgroup_id(dir: &Path) -> std::io::Result<u64> {
    Ok(std::fs::metadata(dir)?.ino())
}

/// A running container of a pod, as its status reports it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ContainerRef {
    /// The container's name.
    pub name: String,
    /// Its runtime.
    pub runtime: Runtime,
    /// Its id (hex).
    pub id: String,
}

/// A pod as attribution needs it: its identity and its containers that
/// have an id (created by the runtime).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodInfo {
    /// `metadata.uid`.
    pub uid: String,
    /// `metadata.namespace`.
    pub namespace: String,
    /// `metadata.name`.
    pub name: String,
    /// `metadata.labels`.
    pub labels: BTreeMap<String, String>,
    /// Running containers, init and ephemeral ones included, with a known id.
    pub containers: Vec<ContainerRef>,
}

impl PodInfo {
    /// Read a pod object; `None` without a UID or name.
    pub fn from_pod(pod: &Pod) -> Option<PodInfo> {
        let m = &pod.metadata;
        let mut containers = Vec::new();
        if let Some(status) = &pod.status {
            let lists = [
                &status.container_statuses,
                &status.init_container_statuses,
                &status.ephemeral_container_statuses,
            ];
            // Only running containers have processes (and a cgroup: a
            // terminated container's, such as a completed init
            // container's, is removed).
            let running = lists
                .into_iter()
                .flatten()
                .flatten()
                .filter(|s| s.state.as_ref().is_some_and(|st| st.running.is_some()));
            for s in running {
                if let Some((runtime, id)) = s.container_id.as_deref().and_then(parse_container_id)
                {
                    containers.push(ContainerRef {
                        name: s.name.clone(),
                        runtime,
                        id,
                    });
                }
            }
        }
        containers.sort();
        Some(PodInfo {
            uid: m.uid.clone()?,
            namespace: m.namespace.clone().unwrap_or_default(),
            name: m.name.clone()?,
            labels: m.labels.clone().unwrap_or_default(),
            containers,
        })
    }

    fn meta(&self, container: &str) -> PodMeta {
        PodMeta {
            namespace: self.namespace.clone(),
            pod: self.name.clone(),
            container: container.to_string(),
            labels: self.labels.clone(),
            pod_uid: self.uid.clone(),
        }
    }
}

/// Counters of attribution, for logs and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AttributionStats {
    /// Containers whose cgroup was found.
    pub resolved: u64,
    /// Looks that found no directory and were scheduled again.
    pub retries: u64,
    /// Containers given up on after [`MAX_CGROUP_TRIES`] looks.
    pub unresolved: u64,
}

/// Keeps a [`PodIndex`] current from the pods of this node: each pod
/// added, changed or deleted, and containers whose cgroup is not there yet
/// looked for again ([`PodTracker::retry`]).
#[derive(Debug)]
pub struct PodTracker {
    root: PathBuf,
    pods: BTreeMap<String, PodInfo>,
    /// (pod uid, container) → its cgroup id, for what is in the index.
    resolved: BTreeMap<(String, ContainerRef), u64>,
    /// (pod uid, container) → looks so far, for what is not found yet.
    pending: BTreeMap<(String, ContainerRef), u32>,
    index: PodIndex,
    stats: AttributionStats,
}

impl PodTracker {
    /// A tracker of the cgroup v2 tree mounted at `root`.
    pub fn new(root: &Path) -> PodTracker {
        PodTracker {
            root: root.to_path_buf(),
            pods: BTreeMap::new(),
            resolved: BTreeMap::new(),
            pending: BTreeMap::new(),
            index: PodIndex::default(),
            stats: AttributionStats::default(),
        }
    }

    /// The index: cgroup id → container.
    pub fn index(&self) -> &PodIndex {
        &self.index
    }

    /// The counters so far.
    pub fn stats(&self) -> AttributionStats {
        self.stats
    }

    /// Containers still looked for, as `namespace/pod/container`.
    pub fn pending(&self) -> Vec<String> {
        self.pending
            .keys()
            .filter_map(|(uid, c)| {
                self.pods
                    .get(uid)
                    .map(|p| format!("{}/{}/{}", p.namespace, p.name, c.name))
            })
            .collect()
    }

    /// A pod was added or changed.
    pub fn apply(&mut self, pod: &Pod) {
        if let Some(info) = PodInfo::from_pod(pod) {
            self.apply_info(info);
        }
    }

    /// A pod was added or changed (its containers' cgroups are looked up).
    pub fn apply_info(&mut self, info: PodInfo) {
        let uid = info.uid.clone();
        let now: BTreeSet<&ContainerRef> = info.containers.iter().collect();
        // Containers gone (or restarted under a new id): out of the index.
        let gone: Vec<(String, ContainerRef)> = self
            .resolved
            .keys()
            .chain(self.pending.keys())
            .filter(|(u, c)| *u == uid && !now.contains(c))
            .cloned()
            .collect();
        for key in gone {
            if let Some(id) = self.resolved.remove(&key) {
                self.index.remove(id);
            }
            self.pending.remove(&key);
        }
        let changed_meta = self
            .pods
            .get(&uid)
            .is_some_and(|old| old.labels != info.labels || old.name != info.name);
        for c in &info.containers {
            let key = (uid.clone(), c.clone());
            match self.resolved.get(&key) {
                Some(id) if changed_meta => {
                    self.index.insert(*id, info.meta(&c.name));
                }
                Some(_) => {}
                None => {
                    self.pending.entry(key).or_insert(0);
                }
            }
        }
        self.pods.insert(uid.clone(), info);
        self.look(Some(&uid));
    }

    /// A pod was deleted.
    pub fn delete(&mut self, pod: &Pod) {
        if let Some(uid) = &pod.metadata.uid {
            self.delete_uid(uid);
        }
    }

    /// The pod of `uid` was deleted: its containers leave the index.
    pub fn delete_uid(&mut self, uid: &str) {
        self.pods.remove(uid);
        let keys: Vec<(String, ContainerRef)> = self
            .resolved
            .keys()
            .filter(|(u, _)| u == uid)
            .cloned()
            .collect();
        for key in keys {
            if let Some(id) = self.resolved.remove(&key) {
                self.index.remove(id);
            }
        }
        self.pending.retain(|(u, _), _| u != uid);
    }

    /// After a full list: the pods of `uids` are all there are.
    pub fn retain(&mut self, uids: &BTreeSet<String>) {
        let gone: Vec<String> = self
            .pods
            .keys()
            .filter(|u| !uids.contains(*u))
            .cloned()
            .collect();
        for uid in gone {
            self.delete_uid(&uid);
        }
    }

    /// Look again for every container whose cgroup was not found; one that
    /// reaches [`MAX_CGROUP_TRIES`] is given up on. Returns log lines (one
    /// per container given up on).
    pub fn retry(&mut self) -> Vec<String> {
        self.look(None)
    }

    /// Look for the pending containers (of pod `only`, or all).
    fn look(&mut self, only: Option<&str>) -> Vec<String> {
        let mut log = Vec::new();
        let keys: Vec<(String, ContainerRef)> = self
            .pending
            .keys()
            .filter(|(u, _)| only.is_none_or(|o| o == u))
            .cloned()
            .collect();
        for key in keys {
            let (uid, c) = &key;
            let Some(info) = self.pods.get(uid) else {
                self.pending.remove(&key);
                continue;
            };
            let found = container_cgroup_dir(&self.root, uid, c.runtime, &c.id)
                .and_then(|d| cgroup_id(&d).ok());
            match found {
                Some(id) => {
                    self.index.insert(id, info.meta(&c.name));
                    self.pending.remove(&key);
                    self.resolved.insert(key, id);
                    self.stats.resolved += 1;
                }
                None => {
                    let tries = self.pending.get_mut(&key).expect("pending key");
                    *tries += 1;
                    if *tries >= MAX_CGROUP_TRIES {
                        self.stats.unresolved += 1;
                        log.push(format!(
                            "no cgroup found under {} for container {}/{}/{} ({:?} id {}) after {MAX_CGROUP_TRIES} looks: its processes are attributed to no pod",
                            self.root.display(),
                            info.namespace,
                            info.name,
                            c.name,
                            c.runtime,
                            c.id
                        ));
                        self.pending.remove(&key);
                    } else {
                        self.stats.retries += 1;
                    }
                }
            }
        }
        log
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_ids_of_the_three_runtimes() {
        assert_eq!(
            parse_container_id("containerd://abc123"),
            Some((Runtime::Containerd, "abc123".into()))
        );
        assert_eq!(
            parse_container_id("cri-o://ff"),
            Some((Runtime::CriO, "ff".into()))
        );
        assert_eq!(
            parse_container_id("docker://0a"),
            Some((Runtime::Docker, "0a".into()))
        );
        assert_eq!(parse_container_id("rkt://x"), None);
        assert_eq!(parse_container_id("containerd://"), None);
        assert_eq!(parse_container_id("containerd://../x"), None);
    }

    #[test]
    fn pod_directory_names() {
        let uid = "1f2e-3d";
        assert!(is_pod_dir("pod1f2e-3d", uid));
        assert!(is_pod_dir("kubepods-burstable-pod1f2e_3d.slice", uid));
        assert!(is_pod_dir("kubelet-kubepods-pod1f2e_3d.slice", uid));
        assert!(!is_pod_dir("pod1f2e-3e", uid));
    }
}
