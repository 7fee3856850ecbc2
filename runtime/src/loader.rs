//! Loading the exec template into the kernel with aya, filling its maps,
//! attaching it, and pinning its maps for operators.

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use aya::maps::lpm_trie::{Key, LpmTrie};
use aya::maps::{Array, ArrayOfMaps, HashMap, MapData, MapError, PerCpuArray, RingBuf};
use aya::programs::raw_trace_point::RawTracePointLinkId;
use aya::programs::{ProgramError, RawTracePoint};
use aya::{Ebpf, EbpfError, EbpfLoader};

use crate::abi::{
    map_names, ExecActive, ExecConfig, Mask, PathKey, Stat, EXEC_PROGRAM, EXEC_SLOTS,
    EXEC_TRACEPOINT,
};
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

/// `BPF_F_NO_PREALLOC`, required for LPM tries.
const BPF_F_NO_PREALLOC: u32 = 1;

/// What one [`ExecHook::swap`] did, for logs and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Swap {
    /// The slot now in force.
    pub slot: u32,
    /// The generation now in force.
    pub generation: u64,
    /// Waiting for an RCU grace period before touching the inactive slot.
    pub grace: Duration,
    /// Creating and filling the inactive slot.
    pub fill: Duration,
    /// The switch itself: one update of `exec_active`.
    pub switch: Duration,
}

/// The exec hook, loaded (and after [`ExecHook::attach`], attached).
///
/// Its tables are double-buffered (see [`ExecHook::swap`]). Dropping it
/// detaches the program and frees the maps that are not pinned.
pub struct ExecHook {
    ebpf: Ebpf,
    /// The slot `exec_active` names; `None` before the first swap.
    active: Option<(u32, u64)>,
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
    /// Load [`EXEC_OBJECT`], install `tables` as generation 1 (see
    /// [`ExecHook::swap`]), and load (verify) the program. Nothing is
    /// attached yet.
    ///
    /// # Errors
    /// [`LoadError`] when the kernel refuses the object, a map or the program.
    pub fn load(tables: &ExecTables) -> Result<ExecHook, LoadError> {
        let ebpf = EbpfLoader::new()
            .load(EXEC_OBJECT)
            .map_err(LoadError::Object)?;
        let mut hook = ExecHook {
            ebpf,
            active: None,
            link: None,
            pins: Vec::new(),
            pin_dir: None,
            created_dirs: Vec::new(),
        };
        hook.swap(tables, 1)?;
        let prog: &mut RawTracePoint = hook
            .ebpf
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
        Ok(hook)
    }

    /// The slot and generation in force (`None` before the first swap).
    pub fn active(&self) -> Option<(u32, u64)> {
        self.active
    }

    /// Put `tables` in force as `generation`, atomically:
    ///
    /// 1. wait for an RCU grace period (`membarrier(MEMBARRIER_CMD_GLOBAL)`,
    ///    which is `synchronize_rcu()`), so that no program run that read
    ///    `exec_active` before the previous switch still uses the inactive slot;
    /// 2. create the inactive slot's hash and LPM maps with `max_entries` =
    ///    this bundle's entry counts, fill them, put them in the outer
    ///    `ARRAY_OF_MAPS` at the slot, and write the slot's `exec_config`
    ///    (with `generation`);
    /// 3. switch: one update of `exec_active` to `{slot, generation}`.
    ///
    /// Until step 3 every exec is decided by the previous tables; from it on,
    /// by the new ones; the program reads `exec_active` once per event. On
    /// error nothing is switched and the previous tables stay in force.
    ///
    /// # Errors
    /// [`LoadError::Map`] when the kernel refuses a map or an update.
    pub fn swap(&mut self, tables: &ExecTables, generation: u64) -> Result<Swap, LoadError> {
        let t0 = Instant::now();
        if self.active.is_some() {
            grace_period();
        }
        let t1 = Instant::now();
        let slot = match self.active {
            Some((s, _)) => (s + 1) % EXEC_SLOTS,
            None => 1,
        };
        fill_slot(&mut self.ebpf, slot, tables, generation)?;
        let t2 = Instant::now();
        use map_names::EXEC_ACTIVE;
        let map = self
            .ebpf
            .map_mut(EXEC_ACTIVE)
            .ok_or(LoadError::MissingMap(EXEC_ACTIVE))?;
        let mut active: Array<_, ExecActive> =
            Array::try_from(map).map_err(map_err(EXEC_ACTIVE))?;
        active
            .set(
                0,
                ExecActive {
                    slot,
                    pad: 0,
                    generation,
                },
                0,
            )
            .map_err(map_err(EXEC_ACTIVE))?;
        let t3 = Instant::now();
        self.active = Some((slot, generation));
        Ok(Swap {
            slot,
            generation,
            grace: t1 - t0,
            fill: t2 - t1,
            switch: t3 - t2,
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
/// each map's `max_entries`: `(map, entries, max_entries)`. For the outer
/// maps `exec_path_exact` and `exec_path_prefix`, the inner map of the slot
/// in force. The ring buffer has no entries and is left out.
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
        (EXEC_CONFIG, u64::from(EXEC_SLOTS), u64::from(EXEC_SLOTS)),
        (EXEC_ACTIVE, 1, 1),
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

/// Wait until every BPF program run that started before now has ended.
/// Raw tracepoint programs run inside an RCU read-side critical section;
/// `membarrier(MEMBARRIER_CMD_GLOBAL)` is `synchronize_rcu()`. Where it is
/// unavailable (nohz_full kernels refuse it), sleep instead: a run takes
/// microseconds.
fn grace_period() {
    const MEMBARRIER_CMD_GLOBAL: libc::c_long = 1;
    // SAFETY: membarrier takes two integers and touches no memory of ours.
    let rc = unsafe { libc::syscall(libc::SYS_membarrier, MEMBARRIER_CMD_GLOBAL, 0, 0) };
    if rc != 0 {
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Create and fill slot `slot`'s inner maps, install them, write its config.
fn fill_slot(
    ebpf: &mut Ebpf,
    slot: u32,
    tables: &ExecTables,
    generation: u64,
) -> Result<(), LoadError> {
    use map_names::*;
    let mut exact: HashMap<MapData, PathKey, Mask> =
        HashMap::create(tables.exact_capacity(), 0).map_err(map_err(EXEC_PATH_EXACT))?;
    for (key, mask) in &tables.exact {
        exact
            .insert(key, mask, 0)
            .map_err(map_err(EXEC_PATH_EXACT))?;
    }
    let mut prefix: LpmTrie<MapData, PathKey, Mask> =
        LpmTrie::create(tables.prefix_capacity(), BPF_F_NO_PREALLOC)
            .map_err(map_err(EXEC_PATH_PREFIX))?;
    for (bits, key, mask) in &tables.prefix {
        prefix
            .insert(&Key::new(*bits, *key), mask, 0)
            .map_err(map_err(EXEC_PATH_PREFIX))?;
    }
    {
        let map = ebpf
            .map_mut(EXEC_PATH_EXACT)
            .ok_or(LoadError::MissingMap(EXEC_PATH_EXACT))?;
        let mut outer: ArrayOfMaps<_, HashMap<MapData, PathKey, Mask>> =
            ArrayOfMaps::try_from(map).map_err(map_err(EXEC_PATH_EXACT))?;
        outer
            .set(slot, &exact, 0)
            .map_err(map_err(EXEC_PATH_EXACT))?;
    }
    {
        let map = ebpf
            .map_mut(EXEC_PATH_PREFIX)
            .ok_or(LoadError::MissingMap(EXEC_PATH_PREFIX))?;
        let mut outer: ArrayOfMaps<_, LpmTrie<MapData, PathKey, Mask>> =
            ArrayOfMaps::try_from(map).map_err(map_err(EXEC_PATH_PREFIX))?;
        outer
            .set(slot, &prefix, 0)
            .map_err(map_err(EXEC_PATH_PREFIX))?;
    }
    // The outer maps now hold the inner maps; our fds can go.
    let map = ebpf
        .map_mut(EXEC_CONFIG)
        .ok_or(LoadError::MissingMap(EXEC_CONFIG))?;
    let mut config: Array<_, ExecConfig> = Array::try_from(map).map_err(map_err(EXEC_CONFIG))?;
    config
        .set(
            slot,
            ExecConfig {
                generation,
                ..tables.config
            },
            0,
        )
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
                (map_names::EXEC_CONFIG, 2, 2),
                (map_names::EXEC_ACTIVE, 1, 1),
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
        let inner = |name: &str| {
            map(name)
                .inner()
                .unwrap_or_else(|| panic!("map {name} has no inner map"))
        };
        assert_eq!(map(map_names::EXEC_PATH_EXACT).max_entries(), EXEC_SLOTS);
        assert_eq!(map(map_names::EXEC_PATH_PREFIX).max_entries(), EXEC_SLOTS);
        assert_eq!(
            inner(map_names::EXEC_PATH_EXACT).key_size(),
            PATH_KEY_LEN as u32
        );
        assert_eq!(inner(map_names::EXEC_PATH_EXACT).value_size(), mask);
        assert_eq!(
            inner(map_names::EXEC_PATH_PREFIX).key_size(),
            4 + PATH_KEY_LEN as u32
        );
        assert_eq!(inner(map_names::EXEC_PATH_PREFIX).value_size(), mask);
        assert_eq!(
            inner(map_names::EXEC_PATH_PREFIX).map_flags(),
            BPF_F_NO_PREALLOC,
            "BPF_F_NO_PREALLOC"
        );
        assert_eq!(
            map(map_names::EXEC_CONFIG).value_size() as usize,
            std::mem::size_of::<ExecConfig>()
        );
        assert_eq!(map(map_names::EXEC_CONFIG).max_entries(), EXEC_SLOTS);
        assert_eq!(
            map(map_names::EXEC_ACTIVE).value_size() as usize,
            std::mem::size_of::<ExecActive>()
        );
        assert_eq!(map(map_names::EXEC_ACTIVE).max_entries(), 1);
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
