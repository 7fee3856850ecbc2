//! Pod attribution against fake cgroup trees: the recorded pods of
//! `tests/data/k8s/pods-list.json` (containerd, CRI-O and Docker container
//! ids; Burstable, Guaranteed and BestEffort pods) laid out as the systemd
//! and the cgroupfs drivers do, in temporary directories. The cgroup id
//! of a container is its directory's inode number.

use std::collections::BTreeSet;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::Pod;
use policy_runtime::k8s::pods::{
    container_cgroup_dir, parse_container_id, PodInfo, PodTracker, Runtime, MAX_CGROUP_TRIES,
};

fn data(name: &str) -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data/k8s")
            .join(name),
    )
    .unwrap()
}

fn pods() -> Vec<Pod> {
    let list: serde_json::Value = serde_json::from_str(&data("pods-list.json")).unwrap();
    serde_json::from_value(list["items"].clone()).unwrap()
}

#[derive(Clone, Copy, PartialEq)]
enum Driver {
    Systemd,
    Cgroupfs,
    /// systemd with the kubelet's `--cgroup-root=/kubelet` (kind).
    NestedSystemd,
}

/// The directory the driver gives a container.
fn layout(
    root: &Path,
    driver: Driver,
    qos: &str,
    uid: &str,
    runtime: Runtime,
    id: &str,
) -> PathBuf {
    let u = uid.replace('-', "_");
    let q = qos.to_lowercase();
    match driver {
        Driver::Systemd | Driver::NestedSystemd => {
            let (base, pfx) = if driver == Driver::Systemd {
                (root.join("kubepods.slice"), "kubepods".to_string())
            } else {
                (
                    root.join("kubelet.slice/kubelet-kubepods.slice"),
                    "kubelet-kubepods".to_string(),
                )
            };
            let pod = if qos == "Guaranteed" {
                base.join(format!("{pfx}-pod{u}.slice"))
            } else {
                base.join(format!("{pfx}-{q}.slice/{pfx}-{q}-pod{u}.slice"))
            };
            pod.join(match runtime {
                Runtime::Containerd => format!("cri-containerd-{id}.scope"),
                Runtime::CriO => format!("crio-{id}.scope"),
                Runtime::Docker => format!("docker-{id}.scope"),
            })
        }
        Driver::Cgroupfs => {
            let pod = if qos == "Guaranteed" {
                root.join(format!("kubepods/pod{uid}"))
            } else {
                root.join(format!("kubepods/{q}/pod{uid}"))
            };
            pod.join(match runtime {
                Runtime::CriO => format!("crio-{id}"),
                _ => id.to_string(),
            })
        }
    }
}

/// Make every running container's directory (and a sibling pod sandbox
/// directory, which must not be taken for a container); returns
/// (namespace/pod/container, directory).
fn make_tree(root: &Path, driver: Driver) -> Vec<(String, PathBuf)> {
    let mut out = Vec::new();
    for p in pods() {
        let info = PodInfo::from_pod(&p).unwrap();
        let qos = p.status.as_ref().unwrap().qos_class.clone().unwrap();
        for c in &info.containers {
            let dir = layout(root, driver, &qos, &info.uid, c.runtime, &c.id);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::create_dir_all(
                dir.parent()
                    .unwrap()
                    .join("cri-containerd-0000sandbox.scope"),
            )
            .unwrap();
            out.push((format!("{}/{}/{}", info.namespace, info.name, c.name), dir));
        }
    }
    out
}

fn ino(p: &Path) -> u64 {
    std::fs::metadata(p).unwrap().ino()
}

fn check_driver(driver: Driver) {
    let tmp = tempfile::tempdir().unwrap();
    let dirs = make_tree(tmp.path(), driver);
    // nginx, istio-proxy, postgres, shell; istio-init (a completed init
    // container) has no processes, the pending pod's container no id yet.
    assert_eq!(dirs.len(), 4);
    let mut t = PodTracker::new(tmp.path());
    for p in pods() {
        t.apply(&p);
    }
    assert_eq!(t.index().len(), 4);
    assert!(t.pending().is_empty());
    for (name, dir) in &dirs {
        let m = t
            .index()
            .lookup(ino(dir))
            .unwrap_or_else(|| panic!("{name} at {}", dir.display()));
        assert_eq!(&format!("{}/{}/{}", m.namespace, m.pod, m.container), name);
    }
    let web = t.index().lookup(ino(&dirs[0].1)).unwrap();
    assert_eq!(web.pod_uid, "3f1c2a9e-8b7d-4e21-9c55-0a1b2c3d4e5f");
    assert_eq!(web.labels["app"], "web");
    let pg = dirs
        .iter()
        .find(|(n, _)| n == "payments/db-0/postgres")
        .unwrap();
    assert_eq!(
        t.index().lookup(ino(&pg.1)).unwrap().labels["statefulset.kubernetes.io/pod-name"],
        "db-0"
    );
    // Nothing else of the tree is a container.
    let ids: BTreeSet<u64> = t.index().iter().map(|(id, _)| id).collect();
    assert_eq!(ids, dirs.iter().map(|(_, d)| ino(d)).collect());
    assert_eq!(t.stats().resolved, 4);
}

#[test]
fn systemd_layout_with_containerd_crio_and_docker() {
    check_driver(Driver::Systemd);
}

#[test]
fn cgroupfs_layout_with_containerd_crio_and_docker() {
    check_driver(Driver::Cgroupfs);
}

#[test]
fn a_kubelet_cgroup_root_is_found_by_searching() {
    check_driver(Driver::NestedSystemd);
}

#[test]
fn container_directories_are_found_by_id() {
    let tmp = tempfile::tempdir().unwrap();
    let uid = "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d";
    let dir = tmp.path().join(
        "kubepods.slice/kubepods-pod9a8b7c6d_5e4f_4a3b_8c2d_1e0f9a8b7c6d.slice/crio-abc.scope",
    );
    std::fs::create_dir_all(&dir).unwrap();
    assert_eq!(
        container_cgroup_dir(tmp.path(), uid, Runtime::CriO, "abc"),
        Some(dir)
    );
    assert_eq!(
        container_cgroup_dir(tmp.path(), uid, Runtime::CriO, "abd"),
        None
    );
    assert_eq!(
        container_cgroup_dir(tmp.path(), "other", Runtime::CriO, "abc"),
        None
    );
    assert_eq!(
        parse_container_id("cri-o://abc"),
        Some((Runtime::CriO, "abc".to_string()))
    );
}

#[test]
fn pods_come_and_go_and_late_cgroups_are_retried() {
    let tmp = tempfile::tempdir().unwrap();
    let mut t = PodTracker::new(tmp.path());
    let all = pods();
    let web = &all[0];
    let info = PodInfo::from_pod(web).unwrap();
    // The status names the containers before their cgroups exist.
    t.apply(web);
    assert_eq!(t.index().len(), 0);
    assert_eq!(
        t.pending(),
        [
            "prod/web-6d4cf56db6-x7k2p/istio-proxy",
            "prod/web-6d4cf56db6-x7k2p/nginx"
        ]
    );
    assert_eq!(t.stats().retries, 2);
    // nginx's cgroup appears: found at the next retry.
    let nginx = info.containers.iter().find(|c| c.name == "nginx").unwrap();
    let dir = layout(
        tmp.path(),
        Driver::Systemd,
        "Burstable",
        &info.uid,
        nginx.runtime,
        &nginx.id,
    );
    std::fs::create_dir_all(&dir).unwrap();
    assert!(t.retry().is_empty());
    assert_eq!(t.index().lookup(ino(&dir)).unwrap().container, "nginx");
    assert_eq!(t.pending().len(), 1);
    // The other never appears: given up after MAX_CGROUP_TRIES looks, logged.
    let mut log = Vec::new();
    for _ in 0..MAX_CGROUP_TRIES {
        log.extend(t.retry());
    }
    assert_eq!(log.len(), 1, "{log:?}");
    assert!(
        log[0].contains("container prod/web-6d4cf56db6-x7k2p/istio-proxy")
            && log[0].contains(&format!("after {MAX_CGROUP_TRIES} looks")),
        "{}",
        log[0]
    );
    assert_eq!(t.stats().unresolved, 1);
    assert!(t.pending().is_empty());
    // Labels change: the index follows.
    let mut relabelled = web.clone();
    relabelled
        .metadata
        .labels
        .as_mut()
        .unwrap()
        .insert("app".into(), "web-v2".into());
    t.apply(&relabelled);
    assert_eq!(t.index().lookup(ino(&dir)).unwrap().labels["app"], "web-v2");
    // nginx restarts under a new id: the old cgroup leaves the index.
    let mut restarted = relabelled.clone();
    let statuses = restarted
        .status
        .as_mut()
        .unwrap()
        .container_statuses
        .as_mut()
        .unwrap();
    statuses[0].container_id = Some("containerd://feedface".into());
    let new_dir = layout(
        tmp.path(),
        Driver::Systemd,
        "Burstable",
        &info.uid,
        Runtime::Containerd,
        "feedface",
    );
    std::fs::create_dir_all(&new_dir).unwrap();
    t.apply(&restarted);
    assert!(t.index().lookup(ino(&dir)).is_none());
    assert_eq!(t.index().lookup(ino(&new_dir)).unwrap().container, "nginx");
    // Deleted: gone from the index.
    t.delete(&restarted);
    assert!(t.index().is_empty());
}

#[test]
fn a_relist_drops_pods_no_longer_there() {
    let tmp = tempfile::tempdir().unwrap();
    make_tree(tmp.path(), Driver::Systemd);
    let mut t = PodTracker::new(tmp.path());
    for p in pods() {
        t.apply(&p);
    }
    assert_eq!(t.index().len(), 4);
    let keep: BTreeSet<String> = ["9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d".to_string()].into();
    t.retain(&keep);
    let left: Vec<String> = t.index().iter().map(|(_, m)| m.container.clone()).collect();
    assert_eq!(left, ["postgres"]);
}
