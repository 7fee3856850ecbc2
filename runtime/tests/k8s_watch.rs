//! `policyd run --kubernetes` against recorded Kubernetes API responses: an
//! axum server on 127.0.0.1 plays the API server (`tests/data/k8s/`: the
//! `Node`, the `PolicyBundle` list and watch events, the pod list and watch
//! events) and records the status patches. The kernel side is a function
//! that records the tables it is given.
//!
//! The recorded bundles' specs are compiled from `tests/data/k8s/policies/`
//! (annotation `policyc.dev/test-source`); `recorded_bundles_are_current`
//! fails when they are stale. Regenerate them with
//! `POLICYC_UPDATE_K8S_DATA=1 cargo test -p policy-runtime --test k8s_watch`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use policy_compiler::compile::{compile_k8s, K8sOptions};
use policy_compiler::SourceFile;
use policy_runtime::k8s::watch::field_manager;
use policy_runtime::k8s::{KubeOptions, KubeWatch};
use policy_runtime::metrics::Metrics;
use policy_runtime::reload::{Version, Versions};
use serde_json::{json, Value};
use tokio::sync::mpsc;

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/k8s")
}

fn read(name: &str) -> String {
    std::fs::read_to_string(data_dir().join(name)).unwrap()
}

/// A recorded object's spec as `policyc compile` makes it from its
/// annotations (`policyc.dev/test-source: FILE [K=V,…]` names the policy and
/// the node selector; `policyc.dev/test-tamper: NEW OLD` edits the compiled
/// spec, keeping its digest, as a `kubectl edit` would).
fn fresh_spec(obj: &Value) -> Value {
    let meta = &obj["metadata"];
    let name = meta["name"].as_str().unwrap();
    let source = meta["annotations"]["policyc.dev/test-source"]
        .as_str()
        .unwrap();
    let (file, selector) = source.split_once(' ').unwrap_or((source, ""));
    let node_selector = policy_compiler::k8s::parse_labels("node selector", selector).unwrap();
    let labels: BTreeMap<String, String> =
        serde_json::from_value(meta.get("labels").cloned().unwrap_or(json!({}))).unwrap();
    let text = std::fs::read_to_string(data_dir().join("policies").join(file)).unwrap();
    let compiled = compile_k8s(
        &[SourceFile {
            name: file.into(),
            text,
        }],
        name,
        &K8sOptions {
            labels,
            node_selector,
            object: true,
        },
    )
    .unwrap_or_else(|e| panic!("{e:?}"));
    let mut spec = serde_json::to_value(&compiled.bundle.spec).unwrap();
    if let Some(t) = meta["annotations"]["policyc.dev/test-tamper"].as_str() {
        let (new, old) = t.split_once(' ').unwrap();
        let text = spec.to_string().replace(old, new);
        spec = serde_json::from_str(&text).unwrap();
    }
    spec
}

/// Every recorded object of `file` (a list, or watch events one a line).
fn recorded_objects(text: &str) -> Vec<Value> {
    match serde_json::from_str::<Value>(text) {
        Ok(list) => list["items"].as_array().unwrap().clone(),
        Err(_) => text
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap()["object"].clone())
            .collect(),
    }
}

#[test]
fn recorded_bundles_are_current() {
    let update = std::env::var_os("POLICYC_UPDATE_K8S_DATA").is_some();
    for file in ["policybundles-list.json", "policybundles-watch.jsonl"] {
        let text = read(file);
        let mut stale = Vec::new();
        for obj in recorded_objects(&text) {
            if obj["spec"] != fresh_spec(&obj) {
                stale.push(obj["metadata"]["name"].as_str().unwrap().to_string());
            }
        }
        if update && !stale.is_empty() {
            let out = match serde_json::from_str::<Value>(&text) {
                Ok(mut list) => {
                    for o in list["items"].as_array_mut().unwrap() {
                        o["spec"] = fresh_spec(o);
                    }
                    serde_json::to_string_pretty(&list).unwrap() + "\n"
                }
                Err(_) => text
                    .lines()
                    .map(|l| {
                        let mut ev: Value = serde_json::from_str(l).unwrap();
                        ev["object"]["spec"] = fresh_spec(&ev["object"]);
                        ev.to_string() + "\n"
                    })
                    .collect(),
            };
            std::fs::write(data_dir().join(file), out).unwrap();
        } else {
            assert!(
                stale.is_empty(),
                "{file}: the specs of {stale:?} are stale; regenerate with \
                 POLICYC_UPDATE_K8S_DATA=1 cargo test -p policy-runtime --test k8s_watch"
            );
        }
    }
}

/// One request the fake API server received.
#[derive(Debug, Clone)]
struct Request {
    method: Method,
    path: String,
    query: String,
    content_type: String,
    body: Value,
}

/// The fake API server's state.
#[derive(Default)]
struct Fake {
    requests: Mutex<Vec<Request>>,
    bundle_events: Mutex<Option<mpsc::UnboundedReceiver<String>>>,
    pod_events: Mutex<Option<mpsc::UnboundedReceiver<String>>>,
}

fn json_response(status: StatusCode, body: String) -> Response {
    (status, [("content-type", "application/json")], body).into_response()
}

/// A watch response: the lines of `rx` as they come; a second watch (a
/// reconnect) stays open with nothing.
fn watch_stream(rx: Option<mpsc::UnboundedReceiver<String>>) -> Response {
    let stream = futures::stream::unfold(rx, |rx| async move {
        match rx {
            Some(mut rx) => match rx.recv().await {
                Some(line) => Some((Ok::<_, std::io::Error>(Bytes::from(line + "\n")), Some(rx))),
                None => std::future::pending().await,
            },
            None => std::future::pending().await,
        }
    });
    (
        StatusCode::OK,
        [("content-type", "application/json")],
        Body::from_stream(stream),
    )
        .into_response()
}

async fn handle(
    fake: Arc<Fake>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_string();
    let query = uri.query().unwrap_or_default().to_string();
    fake.requests.lock().unwrap().push(Request {
        method: method.clone(),
        path: path.clone(),
        query: query.clone(),
        content_type: headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string(),
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
    });
    let watching = query.split('&').any(|q| q == "watch=true");
    match (method.as_str(), path.as_str()) {
        ("GET", "/api/v1/nodes/worker-1") => json_response(StatusCode::OK, read("node-worker-1.json")),
        ("GET", "/apis/policyc.dev/v1alpha1/policybundles") if watching => {
            watch_stream(fake.bundle_events.lock().unwrap().take())
        }
        ("GET", "/apis/policyc.dev/v1alpha1/policybundles") => {
            json_response(StatusCode::OK, read("policybundles-list.json"))
        }
        ("GET", "/api/v1/pods") if watching => watch_stream(fake.pod_events.lock().unwrap().take()),
        ("GET", "/api/v1/pods") => json_response(StatusCode::OK, read("pods-list.json")),
        ("PATCH", p) if p.starts_with("/apis/policyc.dev/v1alpha1/policybundles/") => {
            let mut obj: Value = serde_json::from_slice(&body).unwrap();
            obj["metadata"]["resourceVersion"] = "999".into();
            json_response(StatusCode::OK, obj.to_string())
        }
        _ => json_response(
            StatusCode::NOT_FOUND,
            json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404, "message": format!("{path} not found")}).to_string(),
        ),
    }
}

/// Serve `fake` on 127.0.0.1; returns its URL.
async fn serve(fake: Arc<Fake>) -> String {
    let app = Router::new().fallback(
        move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
            let fake = fake.clone();
            async move { handle(fake, method, uri, headers, body).await }
        },
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

fn patches(fake: &Fake) -> Vec<Request> {
    fake.requests
        .lock()
        .unwrap()
        .iter()
        .filter(|r| r.method == Method::PATCH)
        .cloned()
        .collect()
}

/// Wait (at most 10 s) until `cond` holds (it may act first).
async fn until(mut cond: impl FnMut() -> bool, what: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        if cond() {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The status entry of a patch body with `lastTransitionTime` checked
/// (RFC 3339) and replaced by `T`.
fn entry_of(body: &Value) -> Value {
    let mut e = body["status"]["nodes"][0].clone();
    if let Some(t) = e.get("lastTransitionTime").and_then(Value::as_str) {
        assert!(chrono::DateTime::parse_from_rfc3339(t).is_ok(), "{t}");
        e["lastTransitionTime"] = "T".into();
    }
    e
}

fn digest_of(file: &str, name: &str) -> String {
    recorded_objects(&read(file))
        .into_iter()
        .find(|o| o["metadata"]["name"] == name)
        .map(|o| o["spec"]["digest"].as_str().unwrap().to_string())
        .unwrap()
}

#[tokio::test]
async fn bundles_status_and_pods_follow_the_api_server() {
    let fake = Arc::new(Fake::default());
    let (bundle_tx, bundle_rx) = mpsc::unbounded_channel();
    let (pod_tx, pod_rx) = mpsc::unbounded_channel();
    *fake.bundle_events.lock().unwrap() = Some(bundle_rx);
    *fake.pod_events.lock().unwrap() = Some(pod_rx);
    let url = serve(fake.clone()).await;
    // The client as `--kubeconfig PATH` makes it.
    let home = tempfile::tempdir().unwrap();
    let kubeconfig = home.path().join("config");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: {url}\n\
             users:\n- name: u\n  user: {{}}\ncontexts:\n- name: c\n  context:\n    cluster: fake\n    user: u\n\
             current-context: c\n"
        ),
    )
    .unwrap();
    let client = policy_runtime::k8s::watch::client(Some(&kubeconfig))
        .await
        .unwrap();

    // The cgroup tree of the recorded pods (systemd driver).
    let cgroups = tempfile::tempdir().unwrap();
    let pods: Value = serde_json::from_str(&read("pods-list.json")).unwrap();
    let mut dirs = BTreeMap::new();
    let mut make = |p: &Value| {
        let uid = p["metadata"]["uid"].as_str().unwrap().replace('-', "_");
        let qos = p["status"]["qosClass"].as_str().unwrap().to_lowercase();
        let statuses = ["containerStatuses", "initContainerStatuses"]
            .iter()
            .flat_map(|k| p["status"][k].as_array().cloned().unwrap_or_default());
        for c in statuses {
            let Some(id) = c["containerID"].as_str() else {
                continue;
            };
            let (rt, id) = id.split_once("://").unwrap();
            let scope = match rt {
                "containerd" => format!("cri-containerd-{id}.scope"),
                "cri-o" => format!("crio-{id}.scope"),
                _ => format!("docker-{id}.scope"),
            };
            let dir = cgroups.path().join(format!(
                "kubepods.slice/kubepods-{qos}.slice/kubepods-{qos}-pod{uid}.slice/{scope}"
            ));
            std::fs::create_dir_all(&dir).unwrap();
            let name = format!(
                "{}/{}",
                p["metadata"]["name"].as_str().unwrap(),
                c["name"].as_str().unwrap()
            );
            dirs.insert(
                name,
                std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&dir).unwrap()),
            );
        }
    };
    for p in pods["items"].as_array().unwrap() {
        make(p);
    }
    let pod_events: Vec<String> = read("pods-watch.jsonl").lines().map(String::from).collect();
    let added: Value = serde_json::from_str(&pod_events[0]).unwrap();
    make(&added["object"]);

    let opts = KubeOptions {
        kubeconfig: None,
        node: "worker-1".into(),
        cgroup_root: cgroups.path().to_path_buf(),
    };
    let loaded = "exec: raw_tracepoint/sched_process_exec+bpf_send_signal(SIGKILL)";
    let (mut kw, bundles, merged) =
        KubeWatch::start_with(client, &opts, loaded, Duration::from_secs(10))
            .await
            .unwrap();
    // worker-1 has pool=a: pool-b-curl is not selected.
    assert_eq!(kw.active(), ["pool-a-tmp", "sudo-audit"]);
    let names = |v: &Version| v.rules.iter().map(|r| r.name.clone()).collect::<Vec<_>>();
    let mut versions = Versions::new(Version::merged(bundles, merged, 1));
    assert_eq!(names(versions.current()), ["tmp_exec", "sudo_invoked"]);
    let metrics = Metrics::new();
    let swaps: Arc<Mutex<Vec<(u64, usize, usize)>>> = Arc::default();
    let record = swaps.clone();
    let mut swap = move |t: &policy_runtime::tables::KernelTables, generation: u64| {
        record
            .lock()
            .unwrap()
            .push((generation, t.str_exact.len(), t.str_prefix.len()));
        Ok::<_, String>(format!("test swap to {generation}"))
    };

    // First poll: the statuses of the start. Loaded for both selected
    // objects; pool-b-curl loses this node's (stale) entry.
    kw.poll_apply_with(&mut swap, &mut versions, &metrics);
    until(|| patches(&fake).len() == 3, "3 status patches").await;
    let p = patches(&fake);
    for r in &p {
        assert_eq!(r.content_type, "application/apply-patch+yaml");
        let mut query: Vec<&str> = r.query.split('&').filter(|q| !q.is_empty()).collect();
        query.sort();
        assert_eq!(
            query,
            [
                format!("fieldManager={}", field_manager("worker-1")).as_str(),
                "force=true"
            ]
        );
    }
    let by_name: BTreeMap<String, &Request> = p
        .iter()
        .map(|r| (r.path.split('/').nth(5).unwrap().to_string(), r))
        .collect();
    assert_eq!(
        by_name.keys().collect::<Vec<_>>(),
        ["pool-a-tmp", "pool-b-curl", "sudo-audit"]
    );
    for (name, r) in &by_name {
        assert_eq!(
            r.path,
            format!("/apis/policyc.dev/v1alpha1/policybundles/{name}/status")
        );
    }
    let sudo_digest = digest_of("policybundles-list.json", "sudo-audit");
    let tmp_digest = digest_of("policybundles-list.json", "pool-a-tmp");
    assert_eq!(
        entry_of(&by_name["sudo-audit"].body),
        json!({"node": "worker-1", "state": "Loaded", "generation": 1, "digest": sudo_digest,
               "message": loaded, "lastTransitionTime": "T"})
    );
    assert_eq!(
        by_name["sudo-audit"].body["metadata"],
        json!({"name": "sudo-audit"})
    );
    assert_eq!(
        by_name["sudo-audit"].body["apiVersion"],
        "policyc.dev/v1alpha1"
    );
    assert_eq!(by_name["sudo-audit"].body["kind"], "PolicyBundle");
    assert_eq!(
        entry_of(&by_name["pool-a-tmp"].body),
        json!({"node": "worker-1", "state": "Loaded", "generation": 1, "digest": tmp_digest,
               "message": loaded, "lastTransitionTime": "T"})
    );
    assert_eq!(
        by_name["pool-b-curl"].body,
        json!({"apiVersion": "policyc.dev/v1alpha1", "kind": "PolicyBundle",
               "metadata": {"name": "pool-b-curl"}})
    );
    assert!(
        swaps.lock().unwrap().is_empty(),
        "the start set was loaded by the daemon"
    );

    // The pods of worker-1 (listed with its field selector) are indexed.
    // (Not istio-init: a completed init container has no cgroup left.)
    until(|| kw.pod_index().len() == 4, "4 container cgroups").await;
    let idx = kw.pod_index();
    let nginx = idx.lookup(dirs["web-6d4cf56db6-x7k2p/nginx"]).unwrap();
    assert_eq!(
        (
            nginx.namespace.as_str(),
            nginx.pod.as_str(),
            nginx.container.as_str()
        ),
        ("prod", "web-6d4cf56db6-x7k2p", "nginx")
    );
    assert_eq!(
        idx.lookup(dirs["db-0/postgres"]).unwrap().namespace,
        "payments"
    );
    let pod_list = fake
        .requests
        .lock()
        .unwrap()
        .iter()
        .find(|r| r.path == "/api/v1/pods")
        .cloned()
        .unwrap();
    assert!(
        pod_list
            .query
            .contains("fieldSelector=spec.nodeName%3Dworker-1"),
        "{}",
        pod_list.query
    );
    // A pod added, one deleted.
    for e in &pod_events {
        pod_tx.send(e.clone()).unwrap();
    }
    until(
        || {
            let idx = kw.pod_index();
            idx.lookup(dirs["web-6d4cf56db6-q9z8w/nginx"]).is_some()
                && idx.lookup(dirs["debug/shell"]).is_none()
        },
        "the added pod in, the deleted one out",
    )
    .await;
    assert_eq!(kw.pod_index().len(), 4);

    // pool-a-tmp edited after compilation: refused, its previous version
    // stays in force; reported Failed with the reason.
    let events: Vec<String> = read("policybundles-watch.jsonl")
        .lines()
        .map(String::from)
        .collect();
    bundle_tx.send(events[0].clone()).unwrap();
    until(
        || {
            kw.poll_apply_with(&mut swap, &mut versions, &metrics);
            patches(&fake).len() == 4
        },
        "the Failed status",
    )
    .await;
    assert!(swaps.lock().unwrap().is_empty(), "nothing swapped");
    assert_eq!(versions.current().generation, 1);
    assert_eq!(kw.active(), ["pool-a-tmp", "sudo-audit"]);
    let failed = &patches(&fake)[3];
    assert!(failed.path.ends_with("/pool-a-tmp/status"));
    let tampered: Value = serde_json::from_str(&events[0]).unwrap();
    let actual = serde_json::from_value::<policy_compiler::bundle::BundleSpec>(
        tampered["object"]["spec"].clone(),
    )
    .unwrap()
    .compute_digest("pool-a-tmp");
    assert_ne!(actual, tmp_digest);
    assert_eq!(
        entry_of(&failed.body),
        json!({"node": "worker-1", "state": "Failed", "generation": 2, "digest": tmp_digest,
               "message": format!("bundle digest mismatch: declared `{tmp_digest}`, content hashes to `{actual}`; keeping its previous version (generation 1 digest={tmp_digest})"),
               "lastTransitionTime": "T"})
    );

    // ssh-audit added: one new generation with the three bundles merged
    // (pool-a-tmp's version in force, not the tampered one).
    bundle_tx.send(events[1].clone()).unwrap();
    until(
        || {
            kw.poll_apply_with(&mut swap, &mut versions, &metrics);
            versions.current().generation == 2 && patches(&fake).len() == 5
        },
        "generation 2",
    )
    .await;
    assert_eq!(kw.active(), ["pool-a-tmp", "ssh-audit", "sudo-audit"]);
    assert_eq!(
        names(versions.current()),
        ["tmp_exec", "ssh", "sudo_invoked"]
    );
    // Exact: /usr/bin/ssh, /usr/bin/sudo, /bin/sudo; prefix: /tmp/.
    assert_eq!(*swaps.lock().unwrap(), [(2, 3, 1)]);
    let tmp = versions.current().bundles[0].clone();
    assert_eq!(tmp.spec.digest, tmp_digest);
    let added = &patches(&fake)[4];
    assert!(added.path.ends_with("/ssh-audit/status"));
    assert_eq!(
        entry_of(&added.body),
        json!({"node": "worker-1", "state": "Loaded", "generation": 1,
               "digest": digest_of("policybundles-watch.jsonl", "ssh-audit"),
               "message": loaded, "lastTransitionTime": "T"})
    );

    // sudo-audit deleted: out of the next generation; no status to write.
    bundle_tx.send(events[2].clone()).unwrap();
    until(
        || {
            kw.poll_apply_with(&mut swap, &mut versions, &metrics);
            versions.current().generation == 3
        },
        "generation 3",
    )
    .await;
    assert_eq!(kw.active(), ["pool-a-tmp", "ssh-audit"]);
    assert_eq!(names(versions.current()), ["tmp_exec", "ssh"]);
    assert_eq!(*swaps.lock().unwrap(), [(2, 3, 1), (3, 1, 1)]);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(patches(&fake).len(), 5);
    let text = metrics.encode();
    assert!(text.contains("policyd_policy_load_generation 3"), "{text}");
    assert!(text.contains("policyd_pod_cgroups 4"), "{text}");
    assert!(text.contains("policyd_pod_cgroups_unresolved 0"), "{text}");
}

#[tokio::test]
async fn a_set_the_kernel_refuses_leaves_the_generation_and_reports_failed() {
    let fake = Arc::new(Fake::default());
    let (bundle_tx, bundle_rx) = mpsc::unbounded_channel();
    *fake.bundle_events.lock().unwrap() = Some(bundle_rx);
    let url = serve(fake.clone()).await;
    let client = kube::Client::try_from(kube::Config::new(url.parse().unwrap())).unwrap();
    let opts = KubeOptions {
        kubeconfig: None,
        node: "worker-1".into(),
        cgroup_root: tempfile::tempdir().unwrap().path().to_path_buf(),
    };
    let (mut kw, bundles, merged) =
        KubeWatch::start_with(client, &opts, "m", Duration::from_secs(10))
            .await
            .unwrap();
    let mut versions = Versions::new(Version::merged(bundles, merged, 1));
    let metrics = Metrics::new();
    let mut refuse = |_: &policy_runtime::tables::KernelTables, _: u64| {
        Err::<String, _>("cannot update map exec_path_exact_1: EPERM".to_string())
    };
    kw.poll_apply_with(&mut refuse, &mut versions, &metrics);
    until(|| patches(&fake).len() == 3, "the start statuses").await;
    let events: Vec<String> = read("policybundles-watch.jsonl")
        .lines()
        .map(String::from)
        .collect();
    bundle_tx.send(events[1].clone()).unwrap();
    until(
        || {
            kw.poll_apply_with(&mut refuse, &mut versions, &metrics);
            patches(&fake).len() == 4
        },
        "the Failed status",
    )
    .await;
    assert_eq!(versions.current().generation, 1);
    assert_eq!(kw.active(), ["pool-a-tmp", "sudo-audit"]);
    let failed = &patches(&fake)[3];
    assert!(failed.path.ends_with("/ssh-audit/status"));
    assert_eq!(
        entry_of(&failed.body),
        json!({"node": "worker-1", "state": "Failed", "generation": 1,
               "digest": digest_of("policybundles-watch.jsonl", "ssh-audit"),
               "message": "cannot be loaded with the other bundles of this node: the kernel refused the tables: cannot update map exec_path_exact_1: EPERM",
               "lastTransitionTime": "T"})
    );
    assert!(metrics
        .encode()
        .contains("policyd_bundle_reloads_total{result=\"refused\"} 1"));
}

#[tokio::test]
async fn a_missing_kubeconfig_is_named() {
    let path = PathBuf::from("/nonexistent/kubeconfig");
    let Err(err) = policy_runtime::k8s::watch::client(Some(&path)).await else {
        panic!("a client from a missing file");
    };
    let msg = err.to_string();
    assert!(
        msg.starts_with("cannot configure a Kubernetes client from `/nonexistent/kubeconfig`: "),
        "{msg}"
    );
}

#[tokio::test]
async fn an_unknown_node_stops_the_start() {
    let fake = Arc::new(Fake::default());
    let url = serve(fake.clone()).await;
    let client = kube::Client::try_from(kube::Config::new(url.parse().unwrap())).unwrap();
    let opts = KubeOptions {
        kubeconfig: None,
        node: "worker-9".into(),
        cgroup_root: PathBuf::from("/nonexistent"),
    };
    let err = KubeWatch::start_with(client, &opts, "m", Duration::from_secs(5))
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(msg.starts_with("cannot read node `worker-9`: "), "{msg}");
    assert!(msg.contains("/api/v1/nodes/worker-9 not found"), "{msg}");
}
