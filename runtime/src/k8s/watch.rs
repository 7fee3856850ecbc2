//! The API side of `policyd run --kubernetes`.
//!
//! Background tasks (on the daemon's tokio runtime):
//! - a watcher of the cluster-scoped `PolicyBundle` objects (group
//!   `policyc.dev`, version `v1alpha1`; list, then watch, relisting after
//!   errors with kube's default backoff);
//! - a reader of this node's `Node` object every [`NODE_REFRESH`] (its
//!   labels select bundles; `get` is all the RBAC it needs);
//! - a watcher of this node's pods (`spec.nodeName=<node>`) keeping the
//!   [`PodIndex`] current, looking again every [`RETRY_INTERVAL`] for
//!   containers whose cgroup is not there yet;
//! - a writer of this node's status entries (server-side apply of the
//!   `status` subresource, field manager `policyd-<node>`).
//!
//! [`KubeWatch::poll_apply`] is the source the daemon polls, as
//! [`crate::reload::DirWatch::poll_apply`]: when the objects or the node's
//! labels changed, the selected set is planned ([`super::bundles::plan`]),
//! merged and swapped in as one generation, and each selected object's
//! status entry is written when it changed.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams};
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::Client;
use policy_compiler::bundle::{PolicyBundle, API_VERSION, KIND};
use policy_compiler::k8s::NodeStatus;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::bundles::{node_status, plan, same_report, status_patch, Active, BundleObject};
use super::pods::{PodIndex, PodTracker};
use super::{K8sError, NODE_REFRESH, RETRY_INTERVAL, START_TIMEOUT};
use crate::loader::{map_sizes, PolicyHooks};
use crate::merge::{merge, Merged};
use crate::metrics::Metrics;
use crate::reload::{one_line, Version, Versions};
use crate::tables::KernelTables;

/// Options of the Kubernetes source.
#[derive(Debug, Clone)]
pub struct KubeOptions {
    /// `--kubeconfig PATH`; `None`: in-cluster config, else `$KUBECONFIG`
    /// or `~/.kube/config` (`kube::Config::infer`).
    pub kubeconfig: Option<PathBuf>,
    /// This node's name (`--node-name`, `$NODE_NAME`, the hostname).
    pub node: String,
    /// The cgroup v2 mount (`--cgroup-root`, default `/sys/fs/cgroup`).
    pub cgroup_root: PathBuf,
}

/// The `PolicyBundle` resource.
pub fn bundle_resource() -> ApiResource {
    ApiResource {
        group: "policyc.dev".into(),
        version: "v1alpha1".into(),
        api_version: API_VERSION.into(),
        kind: KIND.into(),
        plural: "policybundles".into(),
    }
}

/// A client from `--kubeconfig PATH`, else `kube::Config::infer()`
/// (in-cluster service account, `$KUBECONFIG`, `~/.kube/config`).
///
/// # Errors
/// [`K8sError::Config`].
pub async fn client(kubeconfig: Option<&PathBuf>) -> Result<Client, K8sError> {
    let err = |message: String| K8sError::Config {
        kubeconfig: kubeconfig.cloned(),
        message,
    };
    let config = match kubeconfig {
        Some(path) => {
            let kc = kube::config::Kubeconfig::read_from(path).map_err(|e| err(one_line(&e)))?;
            kube::Config::from_custom_kubeconfig(kc, &Default::default())
                .await
                .map_err(|e| err(one_line(&e)))?
        }
        None => kube::Config::infer().await.map_err(|e| err(one_line(&e)))?,
    };
    Client::try_from(config).map_err(|e| err(one_line(&e)))
}

/// What the watchers know, as [`KubeWatch`] reads it.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// This node's labels.
    pub labels: BTreeMap<String, String>,
    /// The `PolicyBundle` objects, by name.
    pub objects: BTreeMap<String, BundleObject>,
    /// Whether a full list of the objects has been seen.
    pub synced: bool,
    /// The last error of the bundle watcher, for the start timeout.
    pub last_error: Option<String>,
}

/// One status write: this node's entry of object `name` (`None`: remove it).
#[derive(Debug, Clone, PartialEq)]
pub struct StatusWrite {
    /// The object.
    pub name: String,
    /// The entry.
    pub entry: Option<NodeStatus>,
}

/// The Kubernetes source of `policyd run`.
#[derive(Debug)]
pub struct KubeWatch {
    node: String,
    loaded_message: String,
    rx: watch::Receiver<Snapshot>,
    /// The objects in force, by name.
    active: Vec<Active>,
    /// Documents refused, by object name: (document, why).
    invalid: BTreeMap<String, (Vec<u8>, String)>,
    /// The last entry sent per object.
    sent: BTreeMap<String, Option<NodeStatus>>,
    status_tx: mpsc::UnboundedSender<StatusWrite>,
    /// Refusals of the merge or the kernel for objects not in force, until
    /// the set changes: reported in their status.
    set_refused: BTreeMap<String, String>,
    /// Statuses not written yet (the first poll writes those of the start).
    report_due: bool,
    pods: Arc<RwLock<PodTracker>>,
    /// The pods the tables in force were built with (`k8s.*` dimensions).
    applied_pods: super::PodIndex,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for KubeWatch {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Collects one watcher's events into a map (keyed by `key`), replacing it
/// whole at the end of each (re)list.
struct Collector<K> {
    init: Option<Vec<K>>,
}

/// What one watcher event means for the map.
enum Fed<K> {
    /// Added or changed.
    Apply(K),
    /// Deleted.
    Delete(K),
    /// A (re)list ended: these are all there are.
    List(Vec<K>),
}

impl<K> Collector<K> {
    fn new() -> Self {
        Collector { init: None }
    }

    /// Feed one event.
    fn feed(&mut self, ev: Event<K>) -> Option<Fed<K>> {
        match ev {
            Event::Init => self.init = Some(Vec::new()),
            Event::InitApply(k) => self.init.get_or_insert_with(Vec::new).push(k),
            Event::InitDone => return Some(Fed::List(self.init.take().unwrap_or_default())),
            Event::Apply(k) => return Some(Fed::Apply(k)),
            Event::Delete(k) => return Some(Fed::Delete(k)),
        }
        None
    }
}

/// Convert a dynamic object to the JSON the API server sent.
fn object_json(o: &DynamicObject) -> serde_json::Value {
    serde_json::to_value(o).unwrap_or(serde_json::Value::Null)
}

async fn watch_bundles(client: Client, node: String, tx: watch::Sender<Snapshot>) {
    let api: Api<DynamicObject> = Api::all_with(client, &bundle_resource());
    let mut stream = watcher::watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    let mut c = Collector::new();
    let mut errors = 0u64;
    while let Some(ev) = stream.next().await {
        let ev = match ev {
            Ok(ev) => ev,
            Err(e) => {
                errors += 1;
                let msg = one_line(&e);
                // The first error and then one in 60 (backoff caps at minutes).
                if errors == 1 || errors.is_multiple_of(60) {
                    say!("watching policybundles failed ({errors} errors so far), retrying: {msg}");
                }
                tx.send_modify(|s| s.last_error = Some(msg));
                continue;
            }
        };
        let read = |o: &DynamicObject| BundleObject::from_json(&object_json(o), &node);
        match c.feed(ev) {
            Some(Fed::List(list)) => tx.send_modify(|s| {
                s.objects = list
                    .iter()
                    .filter_map(read)
                    .map(|b| (b.name.clone(), b))
                    .collect();
                s.synced = true;
                s.last_error = None;
            }),
            Some(Fed::Apply(o)) => {
                if let Some(b) = read(&o) {
                    tx.send_modify(|s| {
                        s.objects.insert(b.name.clone(), b);
                    });
                }
            }
            Some(Fed::Delete(o)) => {
                if let Some(name) = o.metadata.name {
                    tx.send_modify(|s| {
                        s.objects.remove(&name);
                    });
                }
            }
            None => {}
        }
    }
}

/// Read `node`'s labels.
async fn node_labels(api: &Api<Node>, node: &str) -> Result<BTreeMap<String, String>, K8sError> {
    api.get(node)
        .await
        .map(|n| n.metadata.labels.unwrap_or_default())
        .map_err(|e| K8sError::Node {
            node: node.to_string(),
            message: one_line(&e),
        })
}

async fn refresh_node(api: Api<Node>, node: String, tx: watch::Sender<Snapshot>) {
    let mut tick = tokio::time::interval(NODE_REFRESH);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        match node_labels(&api, &node).await {
            Ok(labels) => {
                tx.send_if_modified(|s| {
                    let changed = s.labels != labels;
                    if changed {
                        say!("node {node}: labels changed, selecting bundles again");
                        s.labels = labels;
                    }
                    changed
                });
            }
            Err(e) => say!("{e}; keeping its last known labels"),
        }
    }
}

/// Keep `tracker` current from the pods of `node`.
pub async fn watch_pods(client: Client, node: String, tracker: Arc<RwLock<PodTracker>>) {
    let api: Api<Pod> = Api::all(client);
    let config = watcher::Config::default().fields(&format!("spec.nodeName={node}"));
    let mut stream = watcher::watcher(api, config).default_backoff().boxed();
    let mut c = Collector::new();
    let mut retry = tokio::time::interval(RETRY_INTERVAL);
    retry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut errors = 0u64;
    loop {
        tokio::select! {
            ev = stream.next() => {
                let Some(ev) = ev else { break };
                let ev = match ev {
                    Ok(ev) => ev,
                    Err(e) => {
                        errors += 1;
                        if errors == 1 || errors.is_multiple_of(60) {
                            say!("watching the pods of node {node} failed ({errors} errors so far), retrying: {}", one_line(&e));
                        }
                        continue;
                    }
                };
                let mut t = tracker.write().unwrap_or_else(|e| e.into_inner());
                let mut log = Vec::new();
                let list = match c.feed(ev) {
                    Some(Fed::Apply(p)) => { t.apply(&p); None }
                    Some(Fed::Delete(p)) => { t.delete(&p); None }
                    Some(Fed::List(list)) => Some(list),
                    None => None,
                };
                if let Some(list) = list {
                    let uids: BTreeSet<String> = list.iter().filter_map(|p| p.metadata.uid.clone()).collect();
                    t.retain(&uids);
                    for p in &list {
                        t.apply(p);
                    }
                    log.push(format!(
                        "node {node}: {} pods, {} container cgroups known, {} looked for",
                        uids.len(),
                        t.index().len(),
                        t.pending().len()
                    ));
                }
                drop(t);
                for line in log {
                    say!("{line}");
                }
            }
            _ = retry.tick() => {
                let log = tracker.write().unwrap_or_else(|e| e.into_inner()).retry();
                for line in log {
                    say!("{line}");
                }
            }
        }
    }
}

/// How many times a failed status write is tried.
const STATUS_TRIES: u32 = 5;

async fn write_status(client: Client, node: String, mut rx: mpsc::UnboundedReceiver<StatusWrite>) {
    let api: Api<DynamicObject> = Api::all_with(client, &bundle_resource());
    let params = PatchParams::apply(&field_manager(&node)).force();
    while let Some(w) = rx.recv().await {
        let body = status_patch(&w.name, w.entry.as_ref());
        let mut delay = std::time::Duration::from_millis(500);
        for attempt in 1..=STATUS_TRIES {
            match api
                .patch_status(&w.name, &params, &Patch::Apply(&body))
                .await
            {
                Ok(_) => break,
                Err(kube::Error::Api(e)) if e.code == 404 => break,
                Err(e) if attempt == STATUS_TRIES => {
                    say!(
                        "cannot write the status of bundle {} after {STATUS_TRIES} tries: {}",
                        w.name,
                        one_line(&e)
                    );
                }
                Err(_) => {
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                }
            }
        }
    }
}

/// The field manager of this node's status entries: `policyd-<node>`
/// (field managers are at most 128 characters).
pub fn field_manager(node: &str) -> String {
    let mut m = format!("policyd-{node}");
    m.truncate(128);
    m
}

/// `set`'s bundles merged, or why not (one line naming the objects).
fn merge_set(set: &[Active]) -> Result<Merged, String> {
    let bundles: Vec<&PolicyBundle> = set.iter().map(|a| &*a.bundle).collect();
    merge(&bundles).map_err(|e| {
        let names: Vec<&str> = set.iter().map(|a| a.name.as_str()).collect();
        format!("{e} (bundles: {})", names.join(", "))
    })
}

impl KubeWatch {
    /// Start with a client from `opts.kubeconfig` or the environment.
    ///
    /// # Errors
    /// See [`KubeWatch::start_with`].
    pub async fn start(
        opts: &KubeOptions,
        loaded_message: &str,
    ) -> Result<(KubeWatch, Vec<Arc<PolicyBundle>>, Merged), K8sError> {
        let client = client(opts.kubeconfig.as_ref()).await?;
        KubeWatch::start_with(client, opts, loaded_message, START_TIMEOUT).await
    }

    /// Read the node, list the bundles (waiting at most `timeout`), start
    /// the watchers, and return the source with the bundles selected for
    /// this node and their merge. Statuses are written at the first
    /// [`KubeWatch::poll_apply`] (once the daemon has loaded them);
    /// `loaded_message` is the `message` of `Loaded` entries: what the node
    /// enforces with (e.g. `exec: raw_tracepoint/sched_process_exec+…`).
    ///
    /// # Errors
    /// [`K8sError::Node`], [`K8sError::List`], [`K8sError::Merge`].
    pub async fn start_with(
        client: Client,
        opts: &KubeOptions,
        loaded_message: &str,
        timeout: std::time::Duration,
    ) -> Result<(KubeWatch, Vec<Arc<PolicyBundle>>, Merged), K8sError> {
        let node_api: Api<Node> = Api::all(client.clone());
        let labels = node_labels(&node_api, &opts.node).await?;
        let (tx, mut rx) = watch::channel(Snapshot {
            labels,
            ..Snapshot::default()
        });
        let mut tasks = vec![tokio::spawn(watch_bundles(
            client.clone(),
            opts.node.clone(),
            tx.clone(),
        ))];
        let abort = |tasks: &[JoinHandle<()>]| tasks.iter().for_each(JoinHandle::abort);
        let synced = tokio::time::timeout(timeout, rx.wait_for(|s| s.synced))
            .await
            .is_ok_and(|r| r.is_ok());
        if !synced {
            abort(&tasks);
            return Err(K8sError::List {
                timeout,
                message: rx
                    .borrow()
                    .last_error
                    .clone()
                    .unwrap_or_else(|| "no answer".into()),
            });
        }
        tasks.push(tokio::spawn(refresh_node(node_api, opts.node.clone(), tx)));
        let snap = rx.borrow_and_update().clone();
        let mut invalid = BTreeMap::new();
        let p = plan(&snap.objects, &snap.labels, &[], &mut invalid);
        for line in &p.log {
            say!("{line}");
        }
        let merged = match merge_set(&p.set) {
            Ok(m) => m,
            Err(message) => {
                abort(&tasks);
                return Err(K8sError::Merge {
                    node: opts.node.clone(),
                    message,
                });
            }
        };
        let pods = Arc::new(RwLock::new(PodTracker::new(&opts.cgroup_root)));
        tasks.push(tokio::spawn(watch_pods(
            client.clone(),
            opts.node.clone(),
            pods.clone(),
        )));
        let (status_tx, status_rx) = mpsc::unbounded_channel();
        tasks.push(tokio::spawn(write_status(
            client,
            opts.node.clone(),
            status_rx,
        )));
        let bundles = p.set.iter().map(|a| a.bundle.clone()).collect();
        say!(
            "kubernetes: node {} selects {} of {} bundles: {}",
            opts.node,
            p.set.len(),
            snap.objects.len(),
            p.set
                .iter()
                .map(|a| a.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
        Ok((
            KubeWatch {
                node: opts.node.clone(),
                loaded_message: loaded_message.to_string(),
                rx,
                active: p.set,
                invalid,
                sent: BTreeMap::new(),
                status_tx,
                set_refused: BTreeMap::new(),
                report_due: true,
                pods,
                applied_pods: super::PodIndex::default(),
                tasks,
            },
            bundles,
            merged,
        ))
    }

    /// The pods of this node by cgroup id (kept current in the background).
    pub fn pods(&self) -> Arc<RwLock<PodTracker>> {
        self.pods.clone()
    }

    /// The names of the objects in force.
    pub fn active(&self) -> Vec<&str> {
        self.active.iter().map(|a| a.name.as_str()).collect()
    }

    /// A copy of the pod index now.
    pub fn pod_index(&self) -> PodIndex {
        self.pods
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .index()
            .clone()
    }

    /// Act on what changed since the last call (see the module doc), with
    /// the kernel's swap of `hook`.
    pub fn poll_apply(
        &mut self,
        hook: &mut PolicyHooks,
        versions: &mut Versions,
        metrics: &Metrics,
    ) {
        self.poll_apply_with(
            &mut |tables, generation| {
                hook.swap(tables, generation)
                    .map(|s| {
                        format!(
                            "slot={} grace={}us fill={}us switch={}us",
                            s.slot,
                            s.grace.as_micros(),
                            s.fill.as_micros(),
                            s.switch.as_micros()
                        )
                    })
                    .map_err(|e| one_line(&e))
            },
            versions,
            metrics,
        );
    }

    /// [`KubeWatch::poll_apply`] with the kernel side as a function: `swap`
    /// puts `tables` in force as `generation` and says how (one line), or
    /// why the kernel refused them.
    pub fn poll_apply_with(
        &mut self,
        swap: &mut dyn FnMut(&KernelTables, u64) -> Result<String, String>,
        versions: &mut Versions,
        metrics: &Metrics,
    ) {
        {
            let pods = self.pods.read().unwrap_or_else(|e| e.into_inner());
            metrics.set_pod_attribution(pods.index().len() as u64, pods.stats().unresolved);
        }
        // A bundle with `k8s.*` rules is re-applied when the node's pods
        // change: its cgroup table is built from them.
        let pods = self
            .pods
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .index()
            .clone();
        let k8s_rules = versions.current().bundles.iter().any(|b| {
            b.spec
                .hooks
                .values()
                .any(|t| t.dimensions.keys().any(|d| d.starts_with("k8s.")))
        });
        let pods_changed = k8s_rules && pods != self.applied_pods;
        if !self.rx.has_changed().unwrap_or(false) && !self.report_due && !pods_changed {
            return;
        }
        self.report_due = false;
        let snap = self.rx.borrow_and_update().clone();
        let p = plan(&snap.objects, &snap.labels, &self.active, &mut self.invalid);
        for line in &p.log {
            if line.contains(" refused, ") {
                metrics.reload_refused();
            }
            say!("{line}");
        }
        let same = p.set.len() == self.active.len()
            && p.set
                .iter()
                .zip(&self.active)
                .all(|(a, b)| a.name == b.name && a.bytes == b.bytes);
        if !same || pods_changed {
            let current = versions.current();
            let old_gen = current.generation;
            let bundles: Vec<Arc<PolicyBundle>> = p.set.iter().map(|a| a.bundle.clone()).collect();
            let tried = merge_set(&p.set).and_then(|m| {
                crate::reload::kernel_tables(&bundles, &m, &pods)
                    .map(|t| (m, t))
                    .map_err(|e| one_line(&e))
            });
            let outcome = tried.and_then(|(m, t)| {
                swap(&t, old_gen + 1)
                    .map(|how| (m, t, how))
                    .map_err(|e| format!("the kernel refused the tables: {e}"))
            });
            match outcome {
                Ok((merged, tables, how)) => {
                    let generation = old_gen + 1;
                    let old = current.bundles.clone();
                    let version = Version::merged(bundles, merged, generation).with_bits(&tables);
                    for (map, entries, max) in map_sizes(&tables) {
                        metrics.set_map(map, entries, max);
                    }
                    self.applied_pods = pods;
                    metrics.swapped_set(&old, &version.bundles, generation as i64);
                    say!(
                        "kubernetes: node {} applied generation={generation} bundles={} {} {how}",
                        self.node,
                        p.set.len(),
                        version.describe()
                    );
                    versions.push(version);
                    self.active = p.set;
                    self.set_refused.clear();
                }
                Err(why) => {
                    metrics.reload_refused();
                    say!(
                        "kubernetes: node {} keeps generation {old_gen} ({}): the selected bundles are refused: {why}",
                        self.node,
                        current.describe()
                    );
                    for a in &p.set {
                        if !self
                            .active
                            .iter()
                            .any(|b| b.name == a.name && b.bytes == a.bytes)
                        {
                            self.set_refused.insert(
                                a.name.clone(),
                                format!(
                                    "cannot be loaded with the other bundles of this node: {why}"
                                ),
                            );
                        }
                    }
                }
            }
        }
        self.report(&snap, &p.refused);
    }

    /// Write each object's entry that is not what it should be.
    fn report(&mut self, snap: &Snapshot, refused: &BTreeMap<String, String>) {
        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        for (name, obj) in &snap.objects {
            let want = if obj.selects(&snap.labels) {
                let in_force = self
                    .active
                    .iter()
                    .any(|a| &a.name == name && a.bytes == obj.bytes);
                let failed = if in_force {
                    None
                } else {
                    Some(
                        refused
                            .get(name)
                            .or_else(|| self.set_refused.get(name))
                            .map_or("not in force on this node", String::as_str),
                    )
                };
                Some(node_status(
                    &self.node,
                    obj,
                    failed,
                    &self.loaded_message,
                    &now,
                ))
            } else {
                None
            };
            let same = |a: &Option<NodeStatus>, b: &Option<NodeStatus>| match (a, b) {
                (Some(a), Some(b)) => same_report(a, b),
                (None, None) => true,
                _ => false,
            };
            if same(&want, &obj.our_status) || self.sent.get(name).is_some_and(|s| same(s, &want)) {
                continue;
            }
            self.sent.insert(name.clone(), want.clone());
            let _ = self.status_tx.send(StatusWrite {
                name: name.clone(),
                entry: want,
            });
        }
        self.sent.retain(|n, _| snap.objects.contains_key(n));
    }
}
