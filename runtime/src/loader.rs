//! Loading the exec template into the kernel with aya, filling its maps,
//! attaching it, and pinning its maps for operators.

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

use aya::maps::lpm_trie::{Key, LpmTrie};
use aya::maps::{Array, HashMap, MapData, MapError, PerCpuArray, RingBuf};
use aya::programs::raw_trace_point::RawTracePointLinkId;
use aya::programs::{ProgramError, RawTracePoint};
use aya::{Ebpf, EbpfError, EbpfLoader};

use crate::abi::{map_names, ExecConfig, Mask, PathKey, Stat, EXEC_PROGRAM, EXEC_TRACEPOINT};
use crate::tables::ExecTables;

/// The compiled `bpf-templates/exec.bpf.o`, built by `build.rs`.
pub static EXEC_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/exec.bpf.o"));

/// How the exec hook enforces and observes, for the readiness line and logs.
pub const EXEC_MECHANISM: &str = "raw_tracepoint/sched_process_exec+bpf_send_signal(SIGKILL)";

/// `f_type` of a bpf filesystem (`BPF_FS_MAGIC`).
const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

/// Why the exec hook could not be loaded, attached or pinned.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum LoadError {
    /// The object could not be loaded (parse, BTF relocation, map creation).
    #[error("cannot load the exec BPF object")]
    #[diagnostic(
        code(policyd::bpf_load),
        help("policyd needs a kernel with BTF and BPF ring buffers (5.8 or later)")
    )]
    Object(#[source] EbpfError),
    /// A map the template declares is missing or has another type.
    #[error("map `{name}` of the exec object is unusable")]
    #[diagnostic(code(policyd::bpf_map))]
    Map {
        /// Map name.
        name: &'static str,
        /// aya's error.
        #[source]
        source: MapError,
    },
    /// A map the template declares is absent.
    #[error("map `{0}` is missing from the exec object")]
    #[diagnostic(code(policyd::bpf_map))]
    MissingMap(&'static str),
    /// The object has no program named [`EXEC_PROGRAM`].
    #[error("program `{EXEC_PROGRAM}` is missing from the exec object")]
    #[diagnostic(code(policyd::bpf_program))]
    MissingProgram,
    /// The program was refused by the verifier, or could not be attached.
    #[error("cannot {action} program `{EXEC_PROGRAM}`")]
    #[diagnostic(code(policyd::bpf_program))]
    Program {
        /// `load`, `attach` or `detach`.
        action: &'static str,
        /// aya's error (includes the verifier log for `load`).
        #[source]
        source: ProgramError,
    },
    /// Pinning a map failed.
    #[error("cannot pin map `{name}` at {path}: {message}")]
    #[diagnostic(code(policyd::pin))]
    Pin {
        /// Map name.
        name: &'static str,
        /// Pin path.
        path: PathBuf,
        /// What failed.
        message: String,
    },
}

/// The exec hook, loaded (and after [`ExecHook::attach`], attached).
///
/// Dropping it detaches the program and frees the maps that are not pinned.
pub struct ExecHook {
    ebpf: Ebpf,
    link: Option<RawTracePointLinkId>,
    pins: Vec<PathBuf>,
    pin_dir: Option<PathBuf>,
    /// Ancestors of `pin_dir` that `pin` created, deepest first.
    created_dirs: Vec<PathBuf>,
}

fn map_err(name: &'static str) -> impl Fn(MapError) -> LoadError {
    move |source| LoadError::Map { name, source }
}

impl ExecHook {
    /// Load [`EXEC_OBJECT`] with map sizes taken from `tables`, fill the
    /// maps, and load (verify) the program. Nothing is attached yet.
    ///
    /// # Errors
    /// [`LoadError`] when the kernel refuses the object, a map or the program.
    pub fn load(tables: &ExecTables) -> Result<ExecHook, LoadError> {
        let mut ebpf = EbpfLoader::new()
            .map_max_entries(map_names::EXEC_PATH_EXACT, tables.exact_capacity())
            .map_max_entries(map_names::EXEC_PATH_PREFIX, tables.prefix_capacity())
            .load(EXEC_OBJECT)
            .map_err(LoadError::Object)?;
        fill(&mut ebpf, tables)?;
        let prog: &mut RawTracePoint = ebpf
            .program_mut(EXEC_PROGRAM)
            .ok_or(LoadError::MissingProgram)?
            .try_into()
            .map_err(|source| LoadError::Program {
                action: "load",
                source,
            })?;
        prog.load().map_err(|source| LoadError::Program {
            action: "load",
            source,
        })?;
        Ok(ExecHook {
            ebpf,
            link: None,
            pins: Vec::new(),
            pin_dir: None,
            created_dirs: Vec::new(),
        })
    }

    /// Attach the program to the `sched_process_exec` raw tracepoint. From
    /// here on every exec is decided.
    ///
    /// # Errors
    /// [`LoadError::Program`] when the kernel refuses the attachment.
    pub fn attach(&mut self) -> Result<(), LoadError> {
        let prog = self.program("attach")?;
        let link = prog
            .attach(EXEC_TRACEPOINT)
            .map_err(|source| LoadError::Program {
                action: "attach",
                source,
            })?;
        self.link = Some(link);
        Ok(())
    }

    /// Detach the program (idempotent). Execs are no longer decided.
    ///
    /// # Errors
    /// [`LoadError::Program`] when the link cannot be released.
    pub fn detach(&mut self) -> Result<(), LoadError> {
        if let Some(link) = self.link.take() {
            self.program("detach")?
                .detach(link)
                .map_err(|source| LoadError::Program {
                    action: "detach",
                    source,
                })?;
        }
        Ok(())
    }

    fn program(&mut self, action: &'static str) -> Result<&mut RawTracePoint, LoadError> {
        self.ebpf
            .program_mut(EXEC_PROGRAM)
            .ok_or(LoadError::MissingProgram)?
            .try_into()
            .map_err(|source| LoadError::Program { action, source })
    }

    /// Pin the maps named in [`map_names::PINNED`] as `dir/<map name>`,
    /// creating `dir` and its missing ancestors. A pin that already exists
    /// is an error: remove stale pins first (see
    /// [`crate::pins::remove_stale_pins`]). Returns the pinned paths.
    ///
    /// # Errors
    /// [`LoadError::Pin`] when `dir` cannot be created or a pin fails.
    pub fn pin(&mut self, dir: &Path) -> Result<Vec<PathBuf>, LoadError> {
        let mut missing = Vec::new();
        let mut p = dir;
        while std::fs::symlink_metadata(p).is_err() {
            missing.push(p.to_path_buf());
            match p.parent() {
                Some(q) => p = q,
                None => break,
            }
        }
        std::fs::create_dir_all(dir).map_err(|e| LoadError::Pin {
            name: "-",
            path: dir.to_path_buf(),
            message: e.to_string(),
        })?;
        self.pin_dir = Some(dir.to_path_buf());
        // `dir` itself is removed (when empty) whether or not we created it.
        self.created_dirs = missing.into_iter().filter(|m| m != dir).collect();
        for name in map_names::PINNED {
            let path = dir.join(name);
            let map = self.ebpf.map(name).ok_or(LoadError::MissingMap(name))?;
            map.pin(&path).map_err(|e| LoadError::Pin {
                name,
                path: path.clone(),
                message: e.to_string(),
            })?;
            self.pins.push(path);
        }
        Ok(self.pins.clone())
    }

    /// Remove the pins made by [`ExecHook::pin`], then the pin directory
    /// and the ancestors `pin` created, each if it is then empty. Returns
    /// the paths that could not be removed.
    pub fn unpin(&mut self) -> Vec<(PathBuf, std::io::Error)> {
        let mut failed = Vec::new();
        for path in self.pins.drain(..) {
            if let Err(e) = std::fs::remove_file(&path) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    failed.push((path, e));
                }
            }
        }
        if let Some(dir) = self.pin_dir.take() {
            // Each fails when not empty: someone else's files.
            let _ = std::fs::remove_dir(dir);
            for created in self.created_dirs.drain(..) {
                let _ = std::fs::remove_dir(created);
            }
        }
        failed
    }

    /// Take the `events` ring buffer for reading (once).
    ///
    /// # Errors
    /// [`LoadError::MissingMap`] when it was already taken.
    pub fn take_events(&mut self) -> Result<RingBuf<MapData>, LoadError> {
        let map = self
            .ebpf
            .take_map(map_names::EVENTS)
            .ok_or(LoadError::MissingMap(map_names::EVENTS))?;
        RingBuf::try_from(map).map_err(map_err(map_names::EVENTS))
    }

    /// The `stats` counters summed over CPUs, indexed by [`Stat`].
    ///
    /// # Errors
    /// [`LoadError::Map`] when the map cannot be read.
    pub fn stats(&self) -> Result<Vec<(Stat, u64)>, LoadError> {
        let map = self
            .ebpf
            .map(map_names::STATS)
            .ok_or(LoadError::MissingMap(map_names::STATS))?;
        let arr: PerCpuArray<_, u64> =
            PerCpuArray::try_from(map).map_err(map_err(map_names::STATS))?;
        Stat::ALL
            .iter()
            .map(|&s| {
                let per_cpu = arr.get(&(s as u32), 0).map_err(map_err(map_names::STATS))?;
                Ok((s, per_cpu.iter().sum()))
            })
            .collect()
    }

    /// The program's `bpf_prog_info.run_time_ns` and `run_cnt` (zero unless
    /// run-time statistics are enabled, see [`RunStats`]).
    ///
    /// # Errors
    /// [`LoadError::Program`] when the kernel refuses `BPF_OBJ_GET_INFO_BY_FD`.
    pub fn program_stats(&self) -> Result<(Duration, u64), LoadError> {
        let info = self
            .ebpf
            .program(EXEC_PROGRAM)
            .ok_or(LoadError::MissingProgram)?
            .info()
            .map_err(|source| LoadError::Program {
                action: "read the info of",
                source,
            })?;
        Ok((info.run_time(), info.run_count()))
    }
}

/// Entries `policyd` writes to each map of the exec hook for `tables`, and
/// each map's `max_entries`: `(map, entries, max_entries)`. The ring buffer
/// has no entries and is left out.
pub fn map_sizes(tables: &ExecTables) -> Vec<(&'static str, u64, u64)> {
    use map_names::*;
    vec![
        (
            EXEC_PATH_EXACT,
            tables.exact.len() as u64,
            u64::from(tables.exact_capacity()),
        ),
        (
            EXEC_PATH_PREFIX,
            tables.prefix.len() as u64,
            u64::from(tables.prefix_capacity()),
        ),
        (EXEC_CONFIG, 1, 1),
        (STATS, u64::from(Stat::COUNT), u64::from(Stat::COUNT)),
    ]
}

/// Path of the sysctl that turns BPF run-time statistics on for the host.
pub const BPF_STATS_SYSCTL: &str = "/proc/sys/kernel/bpf_stats_enabled";

/// How BPF run-time statistics (`run_time_ns`, `run_cnt`) were turned on.
/// They cost two clock reads per program run, for every BPF program of the
/// host, so `policyd` turns them on only when it exports metrics.
#[derive(Debug)]
pub enum RunStats {
    /// `bpf(BPF_ENABLE_STATS, BPF_STATS_RUN_TIME)`, as bpftool does: on while
    /// this fd is open, so the kernel turns them off again when `policyd`
    /// exits, however it exits.
    EnableStatsFd(OwnedFd),
    /// `BPF_ENABLE_STATS` failed; `kernel.bpf_stats_enabled` was 0 and
    /// `policyd` set it to 1. Dropping this writes 0 back (not after SIGKILL).
    Sysctl,
    /// `BPF_ENABLE_STATS` failed and the sysctl was already 1: left alone.
    AlreadyOn,
    /// Neither worked; run time and run count stay 0.
    Unavailable(String),
}

impl RunStats {
    /// Turn run-time statistics on: `BPF_ENABLE_STATS` first, else the sysctl.
    pub fn enable() -> RunStats {
        let fd_err = match aya::sys::enable_stats(aya::sys::Stats::RunTime) {
            Ok(fd) => return RunStats::EnableStatsFd(fd),
            Err(e) => e.to_string(),
        };
        match std::fs::read_to_string(BPF_STATS_SYSCTL) {
            Ok(v) if v.trim() == "1" => RunStats::AlreadyOn,
            Ok(_) => match std::fs::write(BPF_STATS_SYSCTL, "1\n") {
                Ok(()) => RunStats::Sysctl,
                Err(e) => RunStats::Unavailable(format!(
                    "BPF_ENABLE_STATS: {fd_err}; writing {BPF_STATS_SYSCTL}: {e}"
                )),
            },
            Err(e) => RunStats::Unavailable(format!(
                "BPF_ENABLE_STATS: {fd_err}; reading {BPF_STATS_SYSCTL}: {e}"
            )),
        }
    }

    /// Whether statistics are being collected.
    pub fn enabled(&self) -> bool {
        !matches!(self, RunStats::Unavailable(_))
    }

    /// Short name for the readiness line.
    pub fn how(&self) -> &'static str {
        match self {
            RunStats::EnableStatsFd(_) => "bpf_enable_stats",
            RunStats::Sysctl => "sysctl",
            RunStats::AlreadyOn => "sysctl-already-on",
            RunStats::Unavailable(_) => "unavailable",
        }
    }
}

impl Drop for RunStats {
    fn drop(&mut self) {
        if let RunStats::Sysctl = self {
            let _ = std::fs::write(BPF_STATS_SYSCTL, "0\n");
        }
    }
}

impl Drop for ExecHook {
    fn drop(&mut self) {
        let _ = self.detach();
        let _ = self.unpin();
    }
}

fn fill(ebpf: &mut Ebpf, tables: &ExecTables) -> Result<(), LoadError> {
    use map_names::*;
    {
        let map = ebpf
            .map_mut(EXEC_PATH_EXACT)
            .ok_or(LoadError::MissingMap(EXEC_PATH_EXACT))?;
        let mut exact: HashMap<_, PathKey, Mask> =
            HashMap::try_from(map).map_err(map_err(EXEC_PATH_EXACT))?;
        for (key, mask) in &tables.exact {
            exact
                .insert(key, mask, 0)
                .map_err(map_err(EXEC_PATH_EXACT))?;
        }
    }
    {
        let map = ebpf
            .map_mut(EXEC_PATH_PREFIX)
            .ok_or(LoadError::MissingMap(EXEC_PATH_PREFIX))?;
        let mut prefix: LpmTrie<_, PathKey, Mask> =
            LpmTrie::try_from(map).map_err(map_err(EXEC_PATH_PREFIX))?;
        for (bits, key, mask) in &tables.prefix {
            prefix
                .insert(&Key::new(*bits, *key), mask, 0)
                .map_err(map_err(EXEC_PATH_PREFIX))?;
        }
    }
    // The config goes last: the program ignores execs until has_terms is set.
    let map = ebpf
        .map_mut(EXEC_CONFIG)
        .ok_or(LoadError::MissingMap(EXEC_CONFIG))?;
    let mut config: Array<_, ExecConfig> = Array::try_from(map).map_err(map_err(EXEC_CONFIG))?;
    config
        .set(0, tables.config, 0)
        .map_err(map_err(EXEC_CONFIG))?;
    Ok(())
}

/// Whether `dir` is on a bpf filesystem (where maps can be pinned).
pub fn is_bpffs(dir: &Path) -> bool {
    let Ok(c) = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()) else {
        return false;
    };
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a valid NUL-terminated path and `st` a writable statfs.
    let rc = unsafe { libc::statfs(c.as_ptr(), &mut st) };
    rc == 0 && st.f_type as i64 == BPF_FS_MAGIC
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::abi::{MASK_WORDS, PATH_KEY_LEN};

    #[test]
    fn map_sizes_follow_the_tables() {
        let t = ExecTables::default();
        let sizes = map_sizes(&t);
        assert_eq!(
            sizes,
            [
                (map_names::EXEC_PATH_EXACT, 0, 1),
                (map_names::EXEC_PATH_PREFIX, 0, 1),
                (map_names::EXEC_CONFIG, 1, 1),
                (map_names::STATS, 10, 10),
            ]
        );
        let t = ExecTables {
            exact: vec![([0; PATH_KEY_LEN], [0; MASK_WORDS]); 3],
            ..ExecTables::default()
        };
        assert_eq!(map_sizes(&t)[0], (map_names::EXEC_PATH_EXACT, 3, 3));
    }

    /// The compiled object agrees with the Rust mirror of its ABI.
    #[test]
    fn object_matches_abi() {
        let obj = aya_obj::Object::parse(EXEC_OBJECT).expect("embedded object parses");
        let map = |name: &str| {
            obj.maps
                .get(name)
                .unwrap_or_else(|| panic!("map {name} missing"))
        };
        let mask = (8 * MASK_WORDS) as u32;
        assert_eq!(
            map(map_names::EXEC_PATH_EXACT).key_size(),
            PATH_KEY_LEN as u32
        );
        assert_eq!(map(map_names::EXEC_PATH_EXACT).value_size(), mask);
        assert_eq!(
            map(map_names::EXEC_PATH_PREFIX).key_size(),
            4 + PATH_KEY_LEN as u32
        );
        assert_eq!(map(map_names::EXEC_PATH_PREFIX).value_size(), mask);
        assert_eq!(
            map(map_names::EXEC_PATH_PREFIX).map_flags() & 1,
            1,
            "BPF_F_NO_PREALLOC"
        );
        assert_eq!(
            map(map_names::EXEC_CONFIG).value_size() as usize,
            std::mem::size_of::<ExecConfig>()
        );
        assert_eq!(map(map_names::EXEC_CONFIG).max_entries(), 1);
        assert_eq!(map(map_names::STATS).max_entries(), Stat::COUNT);
        assert_eq!(map(map_names::STATS).value_size(), 8);
        for name in map_names::PINNED.iter().chain([&map_names::EXEC_SCRATCH]) {
            map(name);
        }
        assert!(
            obj.programs.contains_key(EXEC_PROGRAM),
            "program {EXEC_PROGRAM} missing"
        );
    }
}
