//! Bundle updates: watching `--bundle FILE`, validating a new version, and
//! the bundles of recent generations that events are decided by.
//!
//! The file is polled ([`WATCH_INTERVAL`]): its content is compared with the
//! last content seen. Polling the content (not inotify on the file) follows
//! every way of replacing a file: editors and `kubectl cp` write a temp file
//! and rename it over the old one (a new inode, which an inotify watch on
//! the old inode would miss), `cp` and shells rewrite in place. The content
//! is read again only when the file's metadata (device, inode, size, mtime,
//! ctime) changed, or when [`FULL_READ_EVERY`] has passed since it was
//! last read: a rewrite of the same size within one timestamp tick is seen
//! within that bound, and an idle policyd does not re-read a bundle of tens
//! of megabytes four times a second ([`FileReader`]). A content is acted on
//! once it has been read the same twice in a row, so a file caught
//! half-written is not refused for that.
//!
//! The kernel side of a swap is [`crate::loader::PolicyHooks::swap`].

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use policy_compiler::bundle::{Hook, HookTable, PolicyBundle, RuleEntry, ScopeEntry, TermSet};

use crate::abi::{Mask, MAX_ANCHORS};
use crate::daemon::RunError;
use crate::k8s::PodIndex;
use crate::loader::{map_sizes, PolicyHooks};
use crate::merge::{merge, Merged};
use crate::metrics::Metrics;
use crate::tables::{EventBits, KernelTables, SystemNames, TablesError};

/// How often `--bundle FILE` is read.
pub const WATCH_INTERVAL: Duration = Duration::from_millis(250);

/// How many past generations are kept to name the rules of events still in
/// the ring buffer. An event of an older generation is counted as a decode
/// error (it would take this many swaps during one ring-buffer drain).
pub const KEPT_GENERATIONS: usize = 64;

/// One generation: the bundle (or, with `--bundle-dir`, the bundles) it
/// enforces.
#[derive(Debug)]
pub struct Version {
    /// Its load number (1 = the bundle loaded at start).
    pub generation: u64,
    /// Its bundles, in merge order (one with `--bundle FILE`).
    pub bundles: Vec<Arc<PolicyBundle>>,
    /// Per hook with terms, its merged terms and verdict sets (see
    /// [`Merged::hooks`]).
    pub hooks: BTreeMap<Hook, HookTable>,
    /// Its rule table (merged: ids renumbered).
    pub rules: Vec<RuleEntry>,
    /// Its `default deny` scopes (merged: ids renumbered).
    pub scopes: Vec<ScopeEntry>,
    /// For each rule id of [`Version::rules`]: the index of its bundle.
    pub rule_bundle: Vec<usize>,
    /// What its events' matched bits stand for (from its kernel tables).
    pub bits: EventBits,
}

/// A hook table without terms, for hooks a version has no rules for.
static NO_TERMS: std::sync::LazyLock<HookTable> = std::sync::LazyLock::new(HookTable::default);

impl Version {
    /// `bundle` alone as generation `generation`.
    ///
    /// # Panics
    /// When the bundle has more terms on a hook than the kernel holds, which
    /// bundle validation ([`PolicyBundle::from_yaml`]) refuses first.
    pub fn new(bundle: Arc<PolicyBundle>, generation: u64) -> Version {
        let merged = merge(&[&bundle]).expect("a valid bundle's terms fit the kernel masks");
        Version::merged(vec![bundle], merged, generation)
    }

    /// `bundles`, merged as `merged` (see [`crate::merge::merge`]), as
    /// generation `generation`.
    pub fn merged(bundles: Vec<Arc<PolicyBundle>>, merged: Merged, generation: u64) -> Version {
        Version {
            generation,
            bundles,
            hooks: merged.hooks,
            rules: merged.rules,
            scopes: merged.scopes,
            rule_bundle: merged.origin.iter().map(|(b, _)| *b).collect(),
            bits: EventBits::default(),
        }
    }

    /// This version with the event bits of its kernel tables (needed when
    /// they anchor terms in groups; without, bit `b` is merged term `b`).
    pub fn with_bits(mut self, tables: &KernelTables) -> Version {
        self.bits = tables.bits.clone();
        self
    }

    /// The merged term ids an event of `hook` matched.
    pub fn event_terms(&self, hook: Hook, matched: &Mask, groups: &[u32; MAX_ANCHORS]) -> TermSet {
        self.bits.terms(hook, matched, groups)
    }

    /// The merged table of `hook` (empty when the version has no rules for it).
    pub fn hook(&self, hook: Hook) -> &HookTable {
        self.hooks.get(&hook).unwrap_or(&NO_TERMS)
    }

    /// The bundle of merged rule `rule`.
    pub fn bundle_of(&self, rule: u32) -> Option<&Arc<PolicyBundle>> {
        self.rule_bundle
            .get(rule as usize)
            .and_then(|b| self.bundles.get(*b))
    }

    /// `name digest` pairs for logs: `bundle=a digest=… bundle=b digest=…`,
    /// or `bundles=none`.
    pub fn describe(&self) -> String {
        if self.bundles.is_empty() {
            return "bundles=none".into();
        }
        self.bundles
            .iter()
            .map(|b| format!("bundle={} digest={}", b.metadata.name, b.spec.digest))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// The kernel tables of `bundles` merged as `merged`, with the node's names
/// and the pods known (see [`KernelTables::build`]).
///
/// # Errors
/// [`TablesError`] when the kernel cannot hold them.
pub fn kernel_tables(
    bundles: &[Arc<PolicyBundle>],
    merged: &Merged,
    pods: &PodIndex,
) -> Result<KernelTables, TablesError> {
    let refs: Vec<&PolicyBundle> = bundles.iter().map(|b| &**b).collect();
    KernelTables::build(&merged.kernel_parts(&refs), &SystemNames, pods)
}

/// One bundle merged alone, and its kernel tables.
///
/// # Errors
/// A line saying why the bundle cannot be loaded.
pub fn single(bundle: &Arc<PolicyBundle>) -> Result<(Merged, KernelTables), String> {
    let merged = merge(&[bundle]).map_err(|e| e.to_string())?;
    let tables = kernel_tables(std::slice::from_ref(bundle), &merged, &PodIndex::default())
        .map_err(|e| one_line(&e))?;
    Ok((merged, tables))
}

/// The bundle in force and the recent ones, newest last.
#[derive(Debug, Default)]
pub struct Versions {
    list: VecDeque<Version>,
}

impl Versions {
    /// Start with `first`.
    pub fn new(first: Version) -> Versions {
        let mut v = Versions::default();
        v.push(first);
        v
    }

    /// `v` is now in force.
    pub fn push(&mut self, v: Version) {
        self.list.push_back(v);
        while self.list.len() > KEPT_GENERATIONS {
            self.list.pop_front();
        }
    }

    /// The version in force.
    ///
    /// # Panics
    /// Never: there is always one.
    pub fn current(&self) -> &Version {
        self.list.back().expect("a version is always in force")
    }

    /// The version of `generation`, if still kept.
    pub fn get(&self, generation: u64) -> Option<&Version> {
        self.list.iter().rev().find(|v| v.generation == generation)
    }
}

/// What the file holds now, as far as the watcher cares.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seen {
    Content(Vec<u8>),
    Unreadable(String),
}

/// Longest time a watched file's content is trusted from its unchanged
/// metadata before it is read again.
pub const FULL_READ_EVERY: Duration = Duration::from_secs(10);

/// The metadata that changes when a file is replaced or rewritten.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    dev: u64,
    ino: u64,
    len: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Stamp {
    fn of(m: &std::fs::Metadata) -> Stamp {
        use std::os::unix::fs::MetadataExt;
        Stamp {
            dev: m.dev(),
            ino: m.ino(),
            len: m.len(),
            mtime: (m.mtime(), m.mtime_nsec()),
            ctime: (m.ctime(), m.ctime_nsec()),
        }
    }
}

/// Reads watched files, reusing the bytes last read from a file whose
/// metadata has not changed for at most [`FULL_READ_EVERY`].
#[derive(Debug, Default)]
pub struct FileReader {
    cache: BTreeMap<PathBuf, (Stamp, std::time::Instant, Vec<u8>)>,
}

impl FileReader {
    /// The content of `path`, read from disk unless its metadata is the
    /// one of the last read and that read is recent.
    ///
    /// # Errors
    /// As [`std::fs::metadata`] and [`std::fs::read`].
    pub fn read(&mut self, path: &Path) -> std::io::Result<Vec<u8>> {
        let stamp = match std::fs::metadata(path) {
            Ok(m) => Stamp::of(&m),
            Err(e) => {
                self.cache.remove(path);
                return Err(e);
            }
        };
        if let Some((s, at, bytes)) = self.cache.get(path) {
            if *s == stamp && at.elapsed() < FULL_READ_EVERY {
                return Ok(bytes.clone());
            }
        }
        let bytes = std::fs::read(path)?;
        // The stamp before the read: a write during the read changes the
        // metadata, so the next poll reads again.
        self.cache.insert(
            path.to_path_buf(),
            (stamp, std::time::Instant::now(), bytes.clone()),
        );
        Ok(bytes)
    }

    /// Forget files not in `keep` (removed from a watched directory).
    fn retain(&mut self, keep: &Snapshot) {
        self.cache.retain(|p, _| keep.contains_key(p));
    }
}

/// Watches one bundle file by polling its content.
#[derive(Debug)]
pub struct BundleWatch {
    path: PathBuf,
    reader: FileReader,
    /// The content last acted on (applied or refused).
    handled: Seen,
    /// A different content read once; acted on when read again unchanged.
    pending: Option<Seen>,
}

/// A change of the watched file, read twice the same.
#[derive(Debug)]
pub enum Change {
    /// A valid bundle this runtime can enforce: the bundle, its merge (of
    /// one) and its kernel tables.
    Valid(Arc<PolicyBundle>, Box<Merged>, Box<KernelTables>),
    /// Why the new content is refused: one line.
    Refused(String),
}

impl BundleWatch {
    /// Watch `path`, whose current content is `loaded` (the bundle in force).
    pub fn new(path: &Path, loaded: Vec<u8>) -> BundleWatch {
        BundleWatch {
            path: path.to_path_buf(),
            reader: FileReader::default(),
            handled: Seen::Content(loaded),
            pending: None,
        }
    }

    /// The watched file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Read the file; a change seen on two polls in a row is returned once.
    pub fn poll(&mut self) -> Option<Change> {
        let now = match self.reader.read(&self.path) {
            Ok(bytes) => Seen::Content(bytes),
            Err(e) => Seen::Unreadable(e.to_string()),
        };
        if now == self.handled {
            self.pending = None;
            return None;
        }
        if self.pending.as_ref() != Some(&now) {
            self.pending = Some(now);
            return None;
        }
        self.pending = None;
        self.handled = now.clone();
        Some(match now {
            Seen::Unreadable(e) => Change::Refused(format!("cannot read it: {e}")),
            Seen::Content(bytes) => validate(&bytes),
        })
    }
}

/// Parse, verify and translate a bundle the way `policyd run` does at start.
pub fn validate(bytes: &[u8]) -> Change {
    let text = match std::str::from_utf8(bytes) {
        Ok(t) => t,
        Err(e) => return Change::Refused(format!("not UTF-8: {e}")),
    };
    let bundle = match PolicyBundle::from_yaml(text) {
        Ok(b) => b,
        Err(e) => return Change::Refused(one_line(&e)),
    };
    let bundle = Arc::new(bundle);
    match single(&bundle) {
        Ok((m, t)) => Change::Valid(bundle, Box::new(m), Box::new(t)),
        Err(why) => Change::Refused(why),
    }
}

/// An error and its sources on one line, `: `-separated.
pub fn one_line(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        out.push_str(": ");
        out.push_str(&s.to_string());
        src = s.source();
    }
    out.replace('\n', " ")
}

/// Read the bundle file at start: its bytes (the watcher's baseline) and
/// the bundle parsed from those same bytes.
///
/// # Errors
/// [`RunError::ReadBundle`], [`RunError::Bundle`].
pub fn read_initial(path: &Path) -> Result<(Vec<u8>, PolicyBundle), RunError> {
    let bytes = std::fs::read(path).map_err(|source| RunError::ReadBundle {
        path: path.to_path_buf(),
        source,
    })?;
    let text = std::str::from_utf8(&bytes).map_err(|e| RunError::ReadBundle {
        path: path.to_path_buf(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
    })?;
    let bundle = PolicyBundle::from_yaml(text).map_err(|source| RunError::Bundle {
        path: path.to_path_buf(),
        source,
    })?;
    Ok((bytes, bundle))
}

/// Act on a change of the watched file: swap a valid bundle in as the next
/// generation, or refuse it. Either way one line is logged and counted; on
/// refusal (or if the kernel refuses the new tables) the bundle in force
/// stays.
pub fn apply(
    change: Change,
    path: &Path,
    hooks: &mut PolicyHooks,
    versions: &mut Versions,
    metrics: &Metrics,
) {
    let current = versions.current();
    let (old, old_gen) = (current.bundles[0].clone(), current.generation);
    let keep = |why: &str| {
        metrics.reload_refused();
        say!(
            "bundle {} refused, keeping generation {old_gen} (bundle={} digest={}): {why}",
            path.display(),
            old.metadata.name,
            old.spec.digest
        );
    };
    let (bundle, merged, tables) = match change {
        Change::Refused(why) => return keep(&why),
        Change::Valid(b, m, t) => (b, m, t),
    };
    let generation = old_gen + 1;
    match hooks.swap(&tables, generation) {
        Ok(swap) => {
            versions.push(
                Version::merged(vec![bundle.clone()], *merged, generation).with_bits(&tables),
            );
            for note in &tables.notes {
                say!("bundle {}: {note}", path.display());
            }
            for (map, entries, max) in map_sizes(&tables) {
                metrics.set_map(map, entries, max);
            }
            metrics.swapped(&old, &bundle, generation as i64);
            say!(
                "bundle {} applied: generation={generation} bundle={} digest={} slot={} grace={}us fill={}us switch={}us",
                path.display(),
                bundle.metadata.name,
                bundle.spec.digest,
                swap.slot,
                swap.grace.as_micros(),
                swap.fill.as_micros(),
                swap.switch.as_micros(),
            );
        }
        Err(e) => keep(&format!("the kernel refused its tables: {}", one_line(&e))),
    }
}

/// The bundle files of a directory and what each holds.
pub type Snapshot = BTreeMap<PathBuf, SeenFile>;

/// What one file of a watched directory holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SeenFile {
    /// Its bytes.
    Content(Vec<u8>),
    /// Why it could not be read.
    Unreadable(String),
}

/// Whether `name` is a bundle file of a `--bundle-dir`: `*.yaml` or `*.yml`,
/// not hidden (editors' and `kubectl cp`'s temp files are).
pub fn is_bundle_file(name: &str) -> bool {
    !name.starts_with('.') && (name.ends_with(".yaml") || name.ends_with(".yml"))
}

/// Read every bundle file of `dir` (regular files and symlinks to them).
///
/// # Errors
/// When `dir` cannot be listed.
pub fn read_dir(dir: &Path) -> std::io::Result<Snapshot> {
    read_dir_with(dir, &mut FileReader::default())
}

/// [`read_dir`] through `reader` (which skips unchanged files' reads).
///
/// # Errors
/// When `dir` cannot be listed.
pub fn read_dir_with(dir: &Path, reader: &mut FileReader) -> std::io::Result<Snapshot> {
    let mut out = Snapshot::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if !is_bundle_file(name) {
            continue;
        }
        let path = entry.path();
        match std::fs::metadata(&path) {
            Ok(m) if m.is_file() => {}
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => {
                out.insert(path, SeenFile::Unreadable(e.to_string()));
                continue;
            }
        }
        let seen = match reader.read(&path) {
            Ok(bytes) => SeenFile::Content(bytes),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => SeenFile::Unreadable(e.to_string()),
        };
        out.insert(path, seen);
    }
    reader.retain(&out);
    Ok(out)
}

/// One file's bundle in force.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The file.
    pub path: PathBuf,
    /// The content the bundle was read from.
    pub bytes: Vec<u8>,
    /// The bundle.
    pub bundle: Arc<PolicyBundle>,
}

/// The bundles of the next generation.
#[derive(Debug, Default)]
pub struct Plan {
    /// The bundles in force next, by file name.
    pub set: Vec<Loaded>,
    /// Log lines (without the `policyd: ` prefix), one per refused or
    /// removed file.
    pub log: Vec<String>,
    /// How many files were refused (counted as refused reloads).
    pub refused: u64,
}

/// Decide which bundles a directory `snapshot` puts in force, given the
/// files in force (`active`); `invalid` remembers contents that failed
/// validation so that an unchanged bad file is not logged again.
///
/// The rule, per file (in file-name order):
/// - unchanged and in force: stays (these are checked first, so a new file
///   never displaces one in force);
/// - new or changed, and valid (as `--bundle FILE` validates) and none of
///   its policies is already loaded from another file: its new version is
///   in force;
/// - new or changed but malformed, refused by this runtime, unreadable, or
///   naming a policy another file in force already has: logged and
///   skipped, and the version of that file in force before (if any, and if
///   its policies clash with no other file) stays;
/// - gone from the directory: dropped.
pub fn plan(
    snapshot: &Snapshot,
    active: &[Loaded],
    invalid: &mut BTreeMap<PathBuf, Vec<u8>>,
) -> Plan {
    invalid.retain(|p, _| snapshot.contains_key(p));
    let mut plan = Plan::default();
    let mut accepted: BTreeMap<PathBuf, Loaded> = BTreeMap::new();
    let mut names: BTreeMap<String, PathBuf> = BTreeMap::new();
    let clash = |b: &PolicyBundle, names: &BTreeMap<String, PathBuf>| {
        b.spec
            .policies
            .iter()
            .find_map(|p| names.get(&p.name).map(|f| (p.name.clone(), f.clone())))
    };
    fn take(
        l: Loaded,
        accepted: &mut BTreeMap<PathBuf, Loaded>,
        names: &mut BTreeMap<String, PathBuf>,
    ) {
        for p in &l.bundle.spec.policies {
            names.insert(p.name.clone(), l.path.clone());
        }
        accepted.insert(l.path.clone(), l);
    }
    for a in active {
        if snapshot.get(&a.path) == Some(&SeenFile::Content(a.bytes.clone())) {
            take(a.clone(), &mut accepted, &mut names);
        }
    }
    for a in active {
        if !snapshot.contains_key(&a.path) {
            plan.log.push(format!(
                "bundle {} removed: bundle={} digest={} no longer in force",
                a.path.display(),
                a.bundle.metadata.name,
                a.bundle.spec.digest
            ));
        }
    }
    for (path, seen) in snapshot {
        if accepted.contains_key(path) {
            continue;
        }
        let previous = active.iter().find(|a| &a.path == path);
        // Err(None): refused before for this same content, not logged again.
        let candidate: Result<Loaded, Option<String>> = match seen {
            SeenFile::Unreadable(e) => Err(Some(format!("cannot read it: {e}"))),
            SeenFile::Content(bytes) if invalid.get(path) == Some(bytes) => Err(None),
            SeenFile::Content(bytes) => match validate(bytes) {
                Change::Refused(why) => {
                    invalid.insert(path.clone(), bytes.clone());
                    Err(Some(why))
                }
                Change::Valid(b, _, _) => {
                    invalid.remove(path);
                    match clash(&b, &names) {
                        Some((policy, other)) => Err(Some(format!(
                            "policy `{policy}` is also in {}, which is in force",
                            other.display()
                        ))),
                        None => Ok(Loaded {
                            path: path.clone(),
                            bytes: bytes.clone(),
                            bundle: b,
                        }),
                    }
                }
            },
        };
        match candidate {
            Ok(l) => take(l, &mut accepted, &mut names),
            Err(why) => {
                let kept = previous.filter(|p| clash(&p.bundle, &names).is_none());
                if let Some(why) = why {
                    plan.refused += 1;
                    let what = match kept {
                        Some(p) => format!(
                            "keeping its previous version (bundle={} digest={})",
                            p.bundle.metadata.name, p.bundle.spec.digest
                        ),
                        None => "not loaded".to_string(),
                    };
                    plan.log
                        .push(format!("bundle {} refused, {what}: {why}", path.display()));
                }
                if let Some(p) = kept {
                    take(p.clone(), &mut accepted, &mut names);
                }
            }
        }
    }
    plan.set = accepted.into_values().collect();
    plan
}

/// Watches `--bundle-dir DIR` by polling its files' contents; all valid
/// bundles in it are in force at once, merged into one generation.
#[derive(Debug)]
pub struct DirWatch {
    dir: PathBuf,
    reader: FileReader,
    /// The snapshot last acted on (`Err`: the directory could not be listed).
    handled: Result<Snapshot, String>,
    /// A different snapshot read once; acted on when read again unchanged.
    pending: Option<Result<Snapshot, String>>,
    /// The files in force, by file name.
    active: Vec<Loaded>,
    invalid: BTreeMap<PathBuf, Vec<u8>>,
}

/// The merge of `set`, or why it is refused (one line naming the bundles).
fn merge_set(set: &[Loaded]) -> Result<Merged, String> {
    let bundles: Vec<&PolicyBundle> = set.iter().map(|l| &*l.bundle).collect();
    merge(&bundles).map_err(|e| {
        let files: Vec<String> = set
            .iter()
            .map(|l| format!("{}={}", l.path.display(), l.bundle.metadata.name))
            .collect();
        format!("{e} (files: {})", files.join(", "))
    })
}

impl DirWatch {
    /// Read `dir` at start: the watcher, and the bundles in force with
    /// their merge. Refused files are logged and skipped.
    ///
    /// # Errors
    /// [`RunError::ReadBundle`] when `dir` cannot be listed;
    /// [`RunError::BundleDir`] when its valid bundles cannot be merged.
    pub fn start(dir: &Path) -> Result<(DirWatch, Vec<Arc<PolicyBundle>>, Merged), RunError> {
        let mut reader = FileReader::default();
        let snapshot = read_dir_with(dir, &mut reader).map_err(|source| RunError::ReadBundle {
            path: dir.to_path_buf(),
            source,
        })?;
        let mut invalid = BTreeMap::new();
        let plan = plan(&snapshot, &[], &mut invalid);
        for line in &plan.log {
            say!("{line}");
        }
        let merged = merge_set(&plan.set).map_err(|message| RunError::BundleDir {
            dir: dir.to_path_buf(),
            message,
        })?;
        let bundles = plan.set.iter().map(|l| l.bundle.clone()).collect();
        Ok((
            DirWatch {
                dir: dir.to_path_buf(),
                reader,
                handled: Ok(snapshot),
                pending: None,
                active: plan.set,
                invalid,
            },
            bundles,
            merged,
        ))
    }

    /// The watched directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Read the directory; a change seen on two polls in a row is acted on
    /// once: the next generation is swapped in when the set of bundles in
    /// force changes (see [`plan`]); when they cannot be merged (too many
    /// terms) or the kernel refuses the tables, the generation in force
    /// stays, and so do the files in force.
    pub fn poll_apply(
        &mut self,
        hooks: &mut PolicyHooks,
        versions: &mut Versions,
        metrics: &Metrics,
    ) {
        let now = read_dir_with(&self.dir, &mut self.reader).map_err(|e| e.to_string());
        if now == self.handled {
            self.pending = None;
            return;
        }
        if self.pending.as_ref() != Some(&now) {
            self.pending = Some(now);
            return;
        }
        self.pending = None;
        self.handled = now.clone();
        let current = versions.current();
        let old_gen = current.generation;
        let snapshot = match now {
            Ok(s) => s,
            Err(e) => {
                metrics.reload_refused();
                say!(
                    "bundle dir {} cannot be listed, keeping generation {old_gen}: {e}",
                    self.dir.display()
                );
                return;
            }
        };
        let plan = plan(&snapshot, &self.active, &mut self.invalid);
        for _ in 0..plan.refused {
            metrics.reload_refused();
        }
        for line in &plan.log {
            say!("{line}");
        }
        let same = plan.set.len() == self.active.len()
            && plan
                .set
                .iter()
                .zip(&self.active)
                .all(|(a, b)| a.path == b.path && a.bytes == b.bytes);
        if same {
            return;
        }
        let keep = |why: &str| {
            metrics.reload_refused();
            say!(
                "bundle dir {} refused, keeping generation {old_gen} ({}): {why}",
                self.dir.display(),
                current.describe()
            );
        };
        let merged = match merge_set(&plan.set) {
            Ok(m) => m,
            Err(why) => return keep(&why),
        };
        let bundles: Vec<Arc<PolicyBundle>> = plan.set.iter().map(|l| l.bundle.clone()).collect();
        let tables = match kernel_tables(&bundles, &merged, &PodIndex::default()) {
            Ok(t) => t,
            Err(e) => return keep(&one_line(&e)),
        };
        let generation = old_gen + 1;
        match hooks.swap(&tables, generation) {
            Ok(swap) => {
                let old = current.bundles.clone();
                let version = Version::merged(bundles, merged, generation).with_bits(&tables);
                for note in &tables.notes {
                    say!("bundle dir {}: {note}", self.dir.display());
                }
                for (map, entries, max) in map_sizes(&tables) {
                    metrics.set_map(map, entries, max);
                }
                metrics.swapped_set(&old, &version.bundles, generation as i64);
                say!(
                    "bundle dir {} applied: generation={generation} files={} {} slot={} grace={}us fill={}us switch={}us",
                    self.dir.display(),
                    plan.set.len(),
                    version.describe(),
                    swap.slot,
                    swap.grace.as_micros(),
                    swap.fill.as_micros(),
                    swap.switch.as_micros(),
                );
                versions.push(version);
                self.active = plan.set;
            }
            Err(e) => keep(&format!("the kernel refused its tables: {}", one_line(&e))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_is_acted_on_once_after_two_equal_reads() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b.yaml");
        std::fs::write(&path, "one").unwrap();
        let mut w = BundleWatch::new(&path, b"one".to_vec());
        assert!(w.poll().is_none());
        std::fs::write(&path, "two: [").unwrap();
        assert!(w.poll().is_none(), "first sight only");
        match w.poll() {
            Some(Change::Refused(why)) => assert!(!why.contains('\n'), "{why}"),
            other => panic!("{other:?}"),
        }
        assert!(w.poll().is_none(), "reported once");
        std::fs::remove_file(&path).unwrap();
        assert!(w.poll().is_none());
        assert!(matches!(w.poll(), Some(Change::Refused(why)) if why.contains("cannot read")));
        assert!(w.poll().is_none());
    }

    #[test]
    fn unchanged_files_are_not_read_again() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b.yaml");
        std::fs::write(&path, "one").unwrap();
        let mut r = FileReader::default();
        assert_eq!(r.read(&path).unwrap(), b"one");
        // The bytes come from the cache while the metadata stays: mark them.
        r.cache.get_mut(&path).unwrap().2 = b"cached".to_vec();
        assert_eq!(r.read(&path).unwrap(), b"cached");
        // A rewrite of the same size in a later timestamp tick (coarse
        // clock ticks are at most 10 ms) is read; within one tick, it is
        // seen once the read is FULL_READ_EVERY old (below).
        std::thread::sleep(std::time::Duration::from_millis(50));
        std::fs::write(&path, "two").unwrap();
        assert_eq!(r.read(&path).unwrap(), b"two");
        // So is a rename over it (a new inode).
        std::fs::write(dir.path().join("new"), "three").unwrap();
        std::fs::rename(dir.path().join("new"), &path).unwrap();
        assert_eq!(r.read(&path).unwrap(), b"three");
        // A trusted read is at most FULL_READ_EVERY old.
        r.cache.get_mut(&path).unwrap().1 -= FULL_READ_EVERY;
        r.cache.get_mut(&path).unwrap().2 = b"stale".to_vec();
        assert_eq!(r.read(&path).unwrap(), b"three");
        std::fs::remove_file(&path).unwrap();
        assert!(r.read(&path).is_err());
        assert!(r.cache.is_empty());
    }

    #[test]
    fn versions_keep_the_recent_generations() {
        let b = Arc::new(PolicyBundle::from_yaml(&sample_yaml()).unwrap());
        let mut v = Versions::new(Version::new(b.clone(), 1));
        for g in 2..=(KEPT_GENERATIONS as u64 + 5) {
            v.push(Version::new(b.clone(), g));
        }
        assert_eq!(v.current().generation, KEPT_GENERATIONS as u64 + 5);
        assert!(v.get(1).is_none());
        assert!(v.get(6).is_some());
    }

    fn yaml(policy: &str, path: &str, name: &str) -> Vec<u8> {
        let sources = [policy_compiler::SourceFile {
            name: "p.policy".into(),
            text: format!("policy {policy} {{}}\nrule r on exec {{ when process.binary == \"{path}\" audit }}\n"),
        }];
        policy_compiler::compile(&sources, name)
            .unwrap()
            .bundle
            .to_yaml()
            .into_bytes()
    }

    fn names(plan: &Plan) -> Vec<String> {
        plan.set
            .iter()
            .map(|l| format!("{}:{}", l.path.display(), l.bundle.metadata.name))
            .collect()
    }

    #[test]
    fn a_directory_plan_keeps_what_is_in_force_and_skips_bad_files() {
        let (a, b) = (PathBuf::from("/d/a.yaml"), PathBuf::from("/d/b.yaml"));
        let c = PathBuf::from("/d/c.yml");
        let mut invalid = BTreeMap::new();
        let snap = |files: &[(&PathBuf, Vec<u8>)]| -> Snapshot {
            files
                .iter()
                .map(|(p, b)| ((*p).clone(), SeenFile::Content(b.clone())))
                .collect()
        };
        let (ya, yb) = (yaml("pa", "/x", "a"), yaml("pb", "/y", "b"));
        // Both load.
        let p1 = plan(
            &snap(&[(&a, ya.clone()), (&b, yb.clone())]),
            &[],
            &mut invalid,
        );
        assert_eq!(names(&p1), ["/d/a.yaml:a", "/d/b.yaml:b"]);
        assert!(p1.log.is_empty() && p1.refused == 0);
        // A malformed new file: refused once, the others stay.
        let bad = b"spec: [".to_vec();
        let s2 = snap(&[(&a, ya.clone()), (&b, yb.clone()), (&c, bad.clone())]);
        let p2 = plan(&s2, &p1.set, &mut invalid);
        assert_eq!(names(&p2), names(&p1));
        assert_eq!(p2.refused, 1);
        assert!(
            p2.log[0].starts_with("bundle /d/c.yml refused, not loaded: "),
            "{:?}",
            p2.log
        );
        let p2 = plan(&s2, &p2.set, &mut invalid);
        assert!(
            p2.log.is_empty() && p2.refused == 0,
            "not logged again: {:?}",
            p2.log
        );
        // b replaced by a malformed file: its previous version stays.
        let s3 = snap(&[(&a, ya.clone()), (&b, bad.clone())]);
        let p3 = plan(&s3, &p2.set, &mut invalid);
        assert_eq!(names(&p3), names(&p1));
        assert!(
            p3.log[0].contains("keeping its previous version (bundle=b "),
            "{:?}",
            p3.log
        );
        // A later file reusing a policy name of a file in force: refused.
        let dup = yaml("pa", "/z", "dup");
        let s4 = snap(&[(&a, ya.clone()), (&b, yb.clone()), (&c, dup)]);
        let p4 = plan(&s4, &p1.set, &mut invalid);
        assert_eq!(names(&p4), names(&p1));
        assert!(
            p4.log[0].contains("policy `pa` is also in /d/a.yaml, which is in force"),
            "{:?}",
            p4.log
        );
        // Removed: dropped, logged.
        let p5 = plan(&snap(&[(&b, yb)]), &p1.set, &mut invalid);
        assert_eq!(names(&p5), ["/d/b.yaml:b"]);
        assert!(
            p5.log[0].starts_with("bundle /d/a.yaml removed"),
            "{:?}",
            p5.log
        );
    }

    #[test]
    fn only_visible_yaml_files_are_bundles() {
        assert!(is_bundle_file("a.yaml") && is_bundle_file("b.yml"));
        assert!(!is_bundle_file(".a.yaml") && !is_bundle_file("a.yaml.tmp1-0"));
        assert!(!is_bundle_file("a.json"));
    }

    fn sample_yaml() -> String {
        let sources = [policy_compiler::SourceFile {
            name: "p.policy".into(),
            text: "policy p {}\nrule r on exec { when process.binary == \"/a\" audit }\n".into(),
        }];
        policy_compiler::compile(&sources, "p")
            .unwrap()
            .bundle
            .to_yaml()
    }
}
