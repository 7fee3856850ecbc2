//! Bundle updates: watching `--bundle FILE`, validating a new version, and
//! the bundles of recent generations that events are decided by.
//!
//! The file is polled ([`WATCH_INTERVAL`]): its whole content is read and
//! compared with the last content seen. Polling the content (not inotify on
//! the file, not the mtime) follows every way of replacing a file: editors
//! and `kubectl cp` write a temp file and rename it over the old one (a new
//! inode, which an inotify watch on the old inode would miss), `cp` and
//! shells rewrite in place, and two writes within one mtime tick still
//! differ in content. A content is acted on once it has been read the same
//! twice in a row, so a file caught half-written is not refused for that.
//!
//! The kernel side of a swap is [`crate::loader::ExecHook::swap`].

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use policy_compiler::bundle::{Hook, HookTable, PolicyBundle};

use crate::daemon::RunError;
use crate::loader::{map_sizes, ExecHook};
use crate::metrics::Metrics;
use crate::tables::ExecTables;

/// How often `--bundle FILE` is read.
pub const WATCH_INTERVAL: Duration = Duration::from_millis(250);

/// How many past generations are kept to name the rules of events still in
/// the ring buffer. An event of an older generation is counted as a decode
/// error (it would take this many swaps during one ring-buffer drain).
pub const KEPT_GENERATIONS: usize = 64;

/// One loaded bundle.
#[derive(Debug)]
pub struct Version {
    /// Its load number (1 = the bundle loaded at start).
    pub generation: u64,
    /// The bundle.
    pub bundle: Arc<PolicyBundle>,
    /// Its exec hook table (empty when it has no exec rules).
    pub exec: HookTable,
}

impl Version {
    /// `bundle` as generation `generation`.
    pub fn new(bundle: Arc<PolicyBundle>, generation: u64) -> Version {
        let exec = bundle
            .spec
            .hooks
            .get(&Hook::Exec)
            .cloned()
            .unwrap_or(HookTable {
                terms: Vec::new(),
                dimensions: Default::default(),
                verdicts: Default::default(),
            });
        Version {
            generation,
            bundle,
            exec,
        }
    }
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

/// Watches one bundle file by polling its content.
#[derive(Debug)]
pub struct BundleWatch {
    path: PathBuf,
    /// The content last acted on (applied or refused).
    handled: Seen,
    /// A different content read once; acted on when read again unchanged.
    pending: Option<Seen>,
}

/// A change of the watched file, read twice the same.
#[derive(Debug)]
pub enum Change {
    /// A valid bundle this runtime can enforce.
    Valid(Box<PolicyBundle>, Box<ExecTables>),
    /// Why the new content is refused: one line.
    Refused(String),
}

impl BundleWatch {
    /// Watch `path`, whose current content is `loaded` (the bundle in force).
    pub fn new(path: &Path, loaded: Vec<u8>) -> BundleWatch {
        BundleWatch {
            path: path.to_path_buf(),
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
        let now = match std::fs::read(&self.path) {
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
    match ExecTables::from_bundle(&bundle) {
        Ok(t) => Change::Valid(Box::new(bundle), Box::new(t)),
        Err(e) => Change::Refused(one_line(&e)),
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
    hook: &mut ExecHook,
    versions: &mut Versions,
    metrics: &Metrics,
) {
    let current = versions.current();
    let (old, old_gen) = (current.bundle.clone(), current.generation);
    let keep = |why: &str| {
        metrics.reload_refused();
        say!(
            "bundle {} refused, keeping generation {old_gen} (bundle={} digest={}): {why}",
            path.display(),
            old.metadata.name,
            old.spec.digest
        );
    };
    let (bundle, tables) = match change {
        Change::Refused(why) => return keep(&why),
        Change::Valid(b, t) => (b, t),
    };
    let generation = old_gen + 1;
    match hook.swap(&tables, generation) {
        Ok(swap) => {
            let bundle = Arc::new(*bundle);
            versions.push(Version::new(bundle.clone(), generation));
            for (map, entries, max) in map_sizes(&tables) {
                metrics.set_map(Hook::Exec.as_str(), map, entries, max);
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
