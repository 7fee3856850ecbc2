//! Loading the policy object into the kernel with aya, filling its maps,
//! attaching each hook's programs, and pinning the maps for operators.

use std::collections::BTreeSet;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use aya::maps::lpm_trie::{Key, LpmTrie};
use aya::maps::{Array, ArrayOfMaps, HashMap, MapData, MapError, PerCpuArray, RingBuf};
use aya::programs::cgroup_sock_addr::CgroupSockAddrLinkId;
use aya::programs::raw_trace_point::RawTracePointLinkId;
use aya::programs::trace_point::TracePointLinkId;
use aya::programs::{CgroupAttachMode, CgroupSockAddr, ProgramError, RawTracePoint, TracePoint};
use aya::{Ebpf, EbpfError, EbpfLoader};
use policy_compiler::bundle::Hook;

use crate::abi::{
    hook_index, map_names, ActiveSlot, AnchorValue, CapsEntry, CgroupKey, GroupConfig, HookConfig,
    IpLpmKey, MaskValue, NumLpmKey, Stat, StrKey, StrLpmKey, NHOOKS, SLOTS,
};
use crate::tables::KernelTables;

/// The compiled `bpf-templates/policy.bpf.o`, built by `build.rs`.
pub static POLICY_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/policy.bpf.o"));

/// `f_type` of a bpf filesystem (`BPF_FS_MAGIC`).
const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

/// Where a program attaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttachPoint {
    /// A raw tracepoint, by name.
    RawTracepoint(&'static str),
    /// A tracepoint, by category and name; skipped when this kernel has no
    /// such tracepoint (e.g. `sys_exit_open` on architectures without `open`).
    Tracepoint(&'static str, &'static str),
    /// The root of the cgroup v2 hierarchy (every process of the host).
    CgroupRoot,
}

/// One program of a hook and where it attaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HookProgram {
    /// Program name in the object.
    pub program: &'static str,
    /// Attach point.
    pub point: AttachPoint,
}

/// The programs of `hook` (none for `module_load`: see [`mechanism`]).
pub fn hook_programs(hook: Hook) -> Vec<HookProgram> {
    use AttachPoint::*;
    let p = |program, point| HookProgram { program, point };
    let tp = |program, name| p(program, Tracepoint("syscalls", name));
    match hook {
        Hook::Exec => vec![p("policy_exec", RawTracepoint("sched_process_exec"))],
        Hook::Open => [
            "sys_exit_openat",
            "sys_exit_openat2",
            "sys_exit_open",
            "sys_exit_creat",
        ]
        .into_iter()
        .map(|n| tp("policy_open", n))
        .collect(),
        Hook::Connect => vec![
            p("policy_connect4", CgroupRoot),
            p("policy_connect6", CgroupRoot),
        ],
        Hook::Bind => vec![p("policy_bind4", CgroupRoot), p("policy_bind6", CgroupRoot)],
        // One program per argument count (see policy.bpf.c on_setid).
        Hook::Setuid => [
            ("policy_setuid", "sys_enter_setuid"),
            ("policy_setuid", "sys_enter_setgid"),
            ("policy_setreuid", "sys_enter_setreuid"),
            ("policy_setreuid", "sys_enter_setresuid"),
            ("policy_setreuid", "sys_enter_setregid"),
            ("policy_setreuid", "sys_enter_setresgid"),
        ]
        .into_iter()
        .map(|(p, n)| tp(p, n))
        .collect(),
        Hook::Capset => vec![tp("policy_capset", "sys_enter_capset")],
        Hook::Ptrace => vec![
            tp("policy_ptrace_enter", "sys_enter_ptrace"),
            tp("policy_ptrace", "sys_exit_ptrace"),
        ],
        Hook::ModuleLoad => Vec::new(),
    }
}

/// How `hook` is decided and enforced, for logs, metrics and docs.
pub fn mechanism(hook: Hook) -> &'static str {
    match hook {
        Hook::Exec => "raw_tracepoint/sched_process_exec+bpf_send_signal(SIGKILL)",
        Hook::Open => "tracepoint/syscalls/sys_exit_open*+bpf_send_signal(SIGKILL)",
        Hook::Connect => "cgroup/connect4,connect6 (EPERM)",
        Hook::Bind => "cgroup/bind4,bind6 (EPERM)",
        Hook::Setuid => "tracepoint/syscalls/sys_enter_set*id+bpf_send_signal(SIGKILL)",
        Hook::Capset => "tracepoint/syscalls/sys_enter_capset+bpf_send_signal(SIGKILL)",
        Hook::Ptrace => "tracepoint/syscalls/sys_exit_ptrace+bpf_send_signal(SIGKILL)",
        Hook::ModuleLoad => "none (this policyd has no module_load program)",
    }
}

/// Why the policy object could not be loaded, attached or pinned.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum LoadError {
    /// The object could not be loaded (parse, BTF relocation, map creation).
    #[error("cannot load the policy BPF object")]
    #[diagnostic(
        code(policyd::bpf_load),
        help("policyd needs a kernel with BTF, bpf_loop and ring-buffer dynptrs (5.19 or later)")
    )]
    Object(#[source] EbpfError),
    /// A map the object declares is missing or has another type.
    #[error("map `{name}` of the policy object is unusable")]
    #[diagnostic(code(policyd::bpf_map))]
    Map {
        /// Map name.
        name: &'static str,
        /// aya's error.
        #[source]
        source: MapError,
    },
    /// A map the object declares is absent.
    #[error("map `{0}` is missing from the policy object")]
    #[diagnostic(code(policyd::bpf_map))]
    MissingMap(&'static str),
    /// The object has no program of this name.
    #[error("program `{0}` is missing from the policy object")]
    #[diagnostic(code(policyd::bpf_program))]
    MissingProgram(&'static str),
    /// A program was refused by the verifier, or could not be attached.
    #[error("cannot {action} program `{program}`")]
    #[diagnostic(code(policyd::bpf_program))]
    Program {
        /// `load`, `attach` or `detach`.
        action: &'static str,
        /// The program.
        program: &'static str,
        /// aya's error (includes the verifier log for `load`).
        #[source]
        source: ProgramError,
    },
    /// No cgroup v2 hierarchy to attach the connect/bind programs to.
    #[error("no cgroup v2 hierarchy is mounted: the `{hook}` hook attaches to its root")]
    #[diagnostic(
        code(policyd::no_cgroup2),
        help("mount it: `mount -t cgroup2 none /sys/fs/cgroup` (scripts/setup.sh does)")
    )]
    NoCgroup2 {
        /// The hook.
        hook: &'static str,
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

/// What one [`PolicyHooks::swap`] did, for logs and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Swap {
    /// The slot now in force.
    pub slot: u32,
    /// The generation now in force.
    pub generation: u64,
    /// Waiting for an RCU grace period before touching the inactive slot.
    pub grace: Duration,
    /// Creating and filling the inactive slot (and loading and attaching
    /// the programs of hooks that had none).
    pub fill: Duration,
    /// The switch itself: one update of `active`.
    pub switch: Duration,
}

/// An attachment, to detach it.
enum Link {
    Raw(&'static str, RawTracePointLinkId),
    Tp(&'static str, TracePointLinkId),
    Cgroup(&'static str, CgroupSockAddrLinkId),
}

/// The policy object, loaded: its maps exist; each hook's programs are
/// loaded and attached when a bundle first has rules for the hook (see
/// [`PolicyHooks::swap`]), and stay attached (a hook without terms in the
/// slot in force costs one map lookup per event).
///
/// Tables are double-buffered. Dropping it detaches the programs and frees
/// the maps that are not pinned.
pub struct PolicyHooks {
    ebpf: Ebpf,
    /// The slot `active` names; `None` before the first swap.
    active: Option<(u32, u64)>,
    /// Hooks whose programs are attached.
    attached: BTreeSet<Hook>,
    /// Whether programs are attached as soon as they are loaded.
    attach_enabled: bool,
    links: Vec<Link>,
    pins: Vec<PathBuf>,
    pin_dir: Option<PathBuf>,
    /// Ancestors of `pin_dir` that `pin` created, deepest first.
    created_dirs: Vec<PathBuf>,
}

fn map_err(name: &'static str) -> impl Fn(MapError) -> LoadError {
    move |source| LoadError::Map { name, source }
}

fn prog_err(action: &'static str, program: &'static str) -> impl Fn(ProgramError) -> LoadError {
    move |source| LoadError::Program {
        action,
        program,
        source,
    }
}

/// Program `name` of `ebpf` as its type `P` (`RawTracePoint`, `TracePoint`,
/// `CgroupSockAddr`).
fn program_as<'a, P>(
    ebpf: &'a mut Ebpf,
    name: &'static str,
    action: &'static str,
) -> Result<&'a mut P, LoadError>
where
    &'a mut P: TryFrom<&'a mut aya::programs::Program, Error = ProgramError>,
{
    ebpf.program_mut(name)
        .ok_or(LoadError::MissingProgram(name))?
        .try_into()
        .map_err(prog_err(action, name))
}

/// Whether tracefs has the tracepoint (when no tracefs is found, assume so
/// and let the attach report).
fn tracepoint_exists(category: &str, name: &str) -> bool {
    let roots = ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"];
    let mut any_root = false;
    for root in roots {
        if Path::new(root).join("events").is_dir() {
            any_root = true;
            if Path::new(root)
                .join("events")
                .join(category)
                .join(name)
                .is_dir()
            {
                return true;
            }
        }
    }
    !any_root
}

/// The mount point of the cgroup v2 hierarchy (`/sys/fs/cgroup`, or
/// `/sys/fs/cgroup/unified` on hybrid hosts).
pub fn cgroup2_root() -> Option<PathBuf> {
    let mounts = std::fs::read_to_string("/proc/self/mounts").ok()?;
    mounts
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|f| f.len() > 2 && f[2] == "cgroup2")
        .map(|f| PathBuf::from(f[1]))
}

impl PolicyHooks {
    /// Load [`POLICY_OBJECT`] (maps only) and install `tables` as
    /// generation 1 (see [`PolicyHooks::swap`]); the programs of the hooks
    /// with terms are loaded (verified) now and attached by
    /// [`PolicyHooks::attach`].
    ///
    /// # Errors
    /// [`LoadError`] when the kernel refuses the object, a map or a program.
    pub fn load(tables: &KernelTables) -> Result<PolicyHooks, LoadError> {
        let ebpf = EbpfLoader::new()
            .load(POLICY_OBJECT)
            .map_err(LoadError::Object)?;
        let mut hooks = PolicyHooks {
            ebpf,
            active: None,
            attached: BTreeSet::new(),
            attach_enabled: false,
            links: Vec::new(),
            pins: Vec::new(),
            pin_dir: None,
            created_dirs: Vec::new(),
        };
        hooks.swap(tables, 1)?;
        Ok(hooks)
    }

    /// The slot and generation in force (`None` before the first swap).
    pub fn active(&self) -> Option<(u32, u64)> {
        self.active
    }

    /// Hooks whose programs are loaded (and, after [`PolicyHooks::attach`], attached).
    pub fn hooks(&self) -> &BTreeSet<Hook> {
        &self.attached
    }

    /// Load (and, once attaching is enabled, attach) the programs of
    /// `hook` if not done yet.
    fn ensure(&mut self, hook: Hook) -> Result<(), LoadError> {
        if self.attached.contains(&hook) {
            return Ok(());
        }
        for hp in hook_programs(hook) {
            self.load_program(hp.program)?;
        }
        self.attached.insert(hook);
        if self.attach_enabled {
            self.attach_hook(hook)?;
        }
        Ok(())
    }

    fn load_program(&mut self, name: &'static str) -> Result<(), LoadError> {
        let prog = self
            .ebpf
            .program_mut(name)
            .ok_or(LoadError::MissingProgram(name))?;
        if prog.fd().is_ok() {
            return Ok(());
        }
        let err = prog_err("load", name);
        match prog {
            aya::programs::Program::RawTracePoint(p) => p.load().map_err(err),
            aya::programs::Program::TracePoint(p) => p.load().map_err(err),
            aya::programs::Program::CgroupSockAddr(p) => p.load().map_err(err),
            _ => Err(LoadError::MissingProgram(name)),
        }
    }

    fn attach_hook(&mut self, hook: Hook) -> Result<(), LoadError> {
        for hp in hook_programs(hook) {
            let name = hp.program;
            let err = prog_err("attach", name);
            let link = match hp.point {
                AttachPoint::RawTracepoint(tp) => {
                    let p: &mut RawTracePoint = program_as(&mut self.ebpf, name, "attach")?;
                    Link::Raw(name, p.attach(tp).map_err(&err)?)
                }
                AttachPoint::Tracepoint(cat, tp) => {
                    if !tracepoint_exists(cat, tp) {
                        continue;
                    }
                    let p: &mut TracePoint = program_as(&mut self.ebpf, name, "attach")?;
                    Link::Tp(name, p.attach(cat, tp).map_err(&err)?)
                }
                AttachPoint::CgroupRoot => {
                    let root = cgroup2_root().ok_or(LoadError::NoCgroup2 {
                        hook: hook.as_str(),
                    })?;
                    let dir = std::fs::File::open(&root).map_err(|_| LoadError::NoCgroup2 {
                        hook: hook.as_str(),
                    })?;
                    let p: &mut CgroupSockAddr = program_as(&mut self.ebpf, name, "attach")?;
                    // aya attaches with a bpf_link (kernel 5.7+), which the
                    // kernel always adds next to other programs of the
                    // cgroup (as BPF_F_ALLOW_MULTI) and which refuses any
                    // flag: `Single` passes none.
                    Link::Cgroup(
                        name,
                        p.attach(&dir, CgroupAttachMode::Single).map_err(&err)?,
                    )
                }
            };
            self.links.push(link);
        }
        Ok(())
    }

    /// Put `tables` in force as `generation`, atomically:
    ///
    /// 1. wait for an RCU grace period (`membarrier(MEMBARRIER_CMD_GLOBAL)`,
    ///    which is `synchronize_rcu()`), so that no program run that read
    ///    `active` before the previous switch still uses the inactive slot;
    /// 2. create the inactive slot's inner maps with `max_entries` = this
    ///    bundle's entry counts, fill them, put them in the outer
    ///    `ARRAY_OF_MAPS` at the slot, and write every hook's `hook_config`
    ///    of the slot (with `generation`);
    /// 3. load and attach the programs of hooks that get terms for the
    ///    first time (they read the old slot, where the hook has none, until
    ///    the switch);
    /// 4. switch: one update of `active` to `{slot, generation}`.
    ///
    /// Until step 4 every event is decided by the previous tables; from it
    /// on, by the new ones; a program reads `active` once per event. On
    /// error nothing is switched and the previous tables stay in force.
    ///
    /// # Errors
    /// [`LoadError`] when the kernel refuses a map, an update or a program.
    pub fn swap(&mut self, tables: &KernelTables, generation: u64) -> Result<Swap, LoadError> {
        let t0 = Instant::now();
        if self.active.is_some() {
            grace_period();
        }
        let t1 = Instant::now();
        let slot = match self.active {
            Some((s, _)) => (s + 1) % SLOTS,
            None => 1,
        };
        fill_slot(&mut self.ebpf, slot, tables, generation)?;
        for &hook in tables.hooks.keys() {
            self.ensure(hook)?;
        }
        let t2 = Instant::now();
        use map_names::ACTIVE;
        let map = self
            .ebpf
            .map_mut(ACTIVE)
            .ok_or(LoadError::MissingMap(ACTIVE))?;
        let mut active: Array<_, ActiveSlot> = Array::try_from(map).map_err(map_err(ACTIVE))?;
        active
            .set(
                0,
                ActiveSlot {
                    slot,
                    pad: 0,
                    generation,
                },
                0,
            )
            .map_err(map_err(ACTIVE))?;
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

    /// Attach the loaded programs (and, from now on, those of hooks that
    /// later get rules). From here on every event of those hooks is decided.
    ///
    /// # Errors
    /// [`LoadError::Program`] when the kernel refuses an attachment.
    pub fn attach(&mut self) -> Result<(), LoadError> {
        if self.attach_enabled {
            return Ok(());
        }
        self.attach_enabled = true;
        let hooks: Vec<Hook> = self.attached.iter().copied().collect();
        for hook in hooks {
            self.attach_hook(hook)?;
        }
        Ok(())
    }

    /// Detach every program (idempotent). Events are no longer decided.
    ///
    /// # Errors
    /// [`LoadError::Program`] when a link cannot be released.
    pub fn detach(&mut self) -> Result<(), LoadError> {
        self.attach_enabled = false;
        for link in std::mem::take(&mut self.links) {
            match link {
                Link::Raw(name, id) => program_as::<RawTracePoint>(&mut self.ebpf, name, "detach")?
                    .detach(id)
                    .map_err(prog_err("detach", name))?,
                Link::Tp(name, id) => program_as::<TracePoint>(&mut self.ebpf, name, "detach")?
                    .detach(id)
                    .map_err(prog_err("detach", name))?,
                Link::Cgroup(name, id) => {
                    program_as::<CgroupSockAddr>(&mut self.ebpf, name, "detach")?
                        .detach(id)
                        .map_err(prog_err("detach", name))?
                }
            }
        }
        Ok(())
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

    /// Remove the pins made by [`PolicyHooks::pin`], then the pin directory
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

    /// The `stats` counters summed over CPUs: the runs per hook, then the
    /// [`Stat`] counters.
    ///
    /// # Errors
    /// [`LoadError::Map`] when the map cannot be read.
    pub fn stats(&self) -> Result<KernelStats, LoadError> {
        let map = self
            .ebpf
            .map(map_names::STATS)
            .ok_or(LoadError::MissingMap(map_names::STATS))?;
        let arr: PerCpuArray<_, u64> =
            PerCpuArray::try_from(map).map_err(map_err(map_names::STATS))?;
        let read = |i: u32| -> Result<u64, LoadError> {
            Ok(arr
                .get(&i, 0)
                .map_err(map_err(map_names::STATS))?
                .iter()
                .sum())
        };
        let mut runs = Vec::new();
        for (hook, _) in Hook::ALL {
            runs.push((hook, read(hook_index(hook))?));
        }
        let mut counters = Vec::new();
        for s in Stat::ALL {
            counters.push((s, read(s as u32)?));
        }
        Ok(KernelStats { runs, counters })
    }

    /// Each loaded program's `bpf_prog_info.run_time_ns` and `run_cnt`
    /// (zero unless run-time statistics are enabled, see [`RunStats`]), with
    /// its hook.
    ///
    /// # Errors
    /// [`LoadError::Program`] when the kernel refuses `BPF_OBJ_GET_INFO_BY_FD`.
    pub fn program_stats(&self) -> Result<Vec<(Hook, &'static str, Duration, u64)>, LoadError> {
        let mut out = Vec::new();
        for &hook in &self.attached {
            let mut seen = BTreeSet::new();
            for hp in hook_programs(hook) {
                if !seen.insert(hp.program) {
                    continue;
                }
                let info = self
                    .ebpf
                    .program(hp.program)
                    .ok_or(LoadError::MissingProgram(hp.program))?
                    .info()
                    .map_err(prog_err("read the info of", hp.program))?;
                out.push((hook, hp.program, info.run_time(), info.run_count()));
            }
        }
        Ok(out)
    }
}

/// The kernel's counters, summed over CPUs.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct KernelStats {
    /// Program runs per hook.
    pub runs: Vec<(Hook, u64)>,
    /// The other counters.
    pub counters: Vec<(Stat, u64)>,
}

impl KernelStats {
    /// The value of counter `s`.
    pub fn get(&self, s: Stat) -> u64 {
        self.counters
            .iter()
            .find(|(c, _)| *c == s)
            .map(|(_, v)| *v)
            .unwrap_or(0)
    }

    /// Runs of `hook`'s programs.
    pub fn runs(&self, hook: Hook) -> u64 {
        self.runs
            .iter()
            .find(|(h, _)| *h == hook)
            .map(|(_, v)| *v)
            .unwrap_or(0)
    }
}

/// Entries `policyd` writes to each table of `tables`, and each table's
/// `max_entries`: `(map, entries, max_entries)`, for the inner maps of the
/// slot in force. The ring buffer has no entries and is left out.
pub fn map_sizes(tables: &KernelTables) -> Vec<(&'static str, u64, u64)> {
    let mut out: Vec<(&'static str, u64, u64)> = map_names::TABLES
        .iter()
        .map(|&m| (m, tables.entries(m), u64::from(tables.capacity(m))))
        .collect();
    let configs = u64::from(SLOTS * NHOOKS);
    out.push((map_names::HOOK_CONFIG, configs, configs));
    out.push((map_names::ACTIVE, 1, 1));
    out.push((
        map_names::STATS,
        u64::from(Stat::COUNT),
        u64::from(Stat::COUNT),
    ));
    out
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

impl Drop for PolicyHooks {
    fn drop(&mut self) {
        let _ = self.detach();
        let _ = self.unpin();
    }
}

/// Wait until every BPF program run that started before now has ended.
/// Tracepoint and cgroup programs run inside RCU read-side critical
/// sections; `membarrier(MEMBARRIER_CMD_GLOBAL)` is `synchronize_rcu()`.
/// Where it is unavailable (nohz_full kernels refuse it), sleep instead: a
/// run takes microseconds.
fn grace_period() {
    const MEMBARRIER_CMD_GLOBAL: libc::c_long = 1;
    // SAFETY: membarrier takes two integers and touches no memory of ours.
    let rc = unsafe { libc::syscall(libc::SYS_membarrier, MEMBARRIER_CMD_GLOBAL, 0, 0) };
    if rc != 0 {
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Put `inner` at `slot` of the outer map `name`.
fn install<T: aya::maps::InnerMap>(
    ebpf: &mut Ebpf,
    name: &'static str,
    slot: u32,
    inner: &T,
) -> Result<(), LoadError> {
    let map = ebpf.map_mut(name).ok_or(LoadError::MissingMap(name))?;
    let mut outer: ArrayOfMaps<_, T> = ArrayOfMaps::try_from(map).map_err(map_err(name))?;
    outer.set(slot, inner, 0).map_err(map_err(name))
}

fn hash<K: aya::Pod, V: aya::Pod>(
    name: &'static str,
    capacity: u32,
    entries: impl Iterator<Item = (K, V)>,
) -> Result<HashMap<MapData, K, V>, LoadError> {
    let mut m: HashMap<MapData, K, V> = HashMap::create(capacity, 0).map_err(map_err(name))?;
    for (k, v) in entries {
        m.insert(k, v, 0).map_err(map_err(name))?;
    }
    Ok(m)
}

fn lpm<K: aya::Pod, V: aya::Pod>(
    name: &'static str,
    capacity: u32,
    entries: &[(u32, K, V)],
) -> Result<LpmTrie<MapData, K, V>, LoadError> {
    let mut m: LpmTrie<MapData, K, V> =
        LpmTrie::create(capacity, BPF_F_NO_PREALLOC).map_err(map_err(name))?;
    for (bits, key, id) in entries {
        m.insert(&Key::new(*bits, *key), id, 0)
            .map_err(map_err(name))?;
    }
    Ok(m)
}

/// Create and fill slot `slot`'s inner maps, install them, write its configs.
fn fill_slot(
    ebpf: &mut Ebpf,
    slot: u32,
    tables: &KernelTables,
    generation: u64,
) -> Result<(), LoadError> {
    use map_names::*;
    let cap = |m| tables.capacity(m);
    let masks: HashMap<MapData, u32, MaskValue> = hash(
        MASKS,
        cap(MASKS),
        tables
            .masks
            .iter()
            .enumerate()
            .map(|(i, m)| (i as u32, MaskValue::new(*m))),
    )?;
    install(ebpf, MASKS, slot, &masks)?;
    let exact: HashMap<MapData, StrKey, u32> =
        hash(STR_EXACT, cap(STR_EXACT), tables.str_exact.iter().copied())?;
    install(ebpf, STR_EXACT, slot, &exact)?;
    let prefix: LpmTrie<MapData, StrLpmKey, u32> =
        lpm(STR_PREFIX, cap(STR_PREFIX), &tables.str_prefix)?;
    install(ebpf, STR_PREFIX, slot, &prefix)?;
    let suffix: LpmTrie<MapData, StrLpmKey, u32> =
        lpm(STR_SUFFIX, cap(STR_SUFFIX), &tables.str_suffix)?;
    install(ebpf, STR_SUFFIX, slot, &suffix)?;
    let num: LpmTrie<MapData, NumLpmKey, u32> = lpm(NUM_LPM, cap(NUM_LPM), &tables.num_lpm)?;
    install(ebpf, NUM_LPM, slot, &num)?;
    let ip: LpmTrie<MapData, IpLpmKey, u32> = lpm(IP_LPM, cap(IP_LPM), &tables.ip_lpm)?;
    install(ebpf, IP_LPM, slot, &ip)?;
    let cg: HashMap<MapData, CgroupKey, u32> = hash(
        CGROUP_EXACT,
        cap(CGROUP_EXACT),
        tables.cgroup_exact.iter().copied(),
    )?;
    install(ebpf, CGROUP_EXACT, slot, &cg)?;
    let caps: HashMap<MapData, u32, CapsEntry> = hash(
        CAPS_TABLE,
        cap(CAPS_TABLE),
        tables.caps.iter().enumerate().map(|(i, c)| (i as u32, *c)),
    )?;
    install(ebpf, CAPS_TABLE, slot, &caps)?;
    let anchors: HashMap<MapData, StrKey, AnchorValue> = hash(
        ANCHOR_EXACT,
        cap(ANCHOR_EXACT),
        tables.anchor_exact.iter().copied(),
    )?;
    install(ebpf, ANCHOR_EXACT, slot, &anchors)?;
    let anchor_lpm: LpmTrie<MapData, StrLpmKey, AnchorValue> =
        lpm(ANCHOR_PREFIX, cap(ANCHOR_PREFIX), &tables.anchor_prefix)?;
    install(ebpf, ANCHOR_PREFIX, slot, &anchor_lpm)?;
    let groups: HashMap<MapData, u32, GroupConfig> = hash(
        GROUP_CONFIG,
        cap(GROUP_CONFIG),
        tables
            .groups
            .iter()
            .enumerate()
            .map(|(i, g)| (i as u32, *g)),
    )?;
    install(ebpf, GROUP_CONFIG, slot, &groups)?;
    // The outer maps now hold the inner maps; our fds can go.
    let map = ebpf
        .map_mut(HOOK_CONFIG)
        .ok_or(LoadError::MissingMap(HOOK_CONFIG))?;
    let mut config: Array<_, HookConfig> = Array::try_from(map).map_err(map_err(HOOK_CONFIG))?;
    for (hook, _) in Hook::ALL {
        let cfg = tables.hooks.get(&hook).copied().unwrap_or_default();
        config
            .set(
                slot * NHOOKS + hook_index(hook),
                HookConfig { generation, ..cfg },
                0,
            )
            .map_err(map_err(HOOK_CONFIG))?;
    }
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
    use crate::abi::{MASK_WORDS, MAX_ANCHORS, MAX_DIMS, PATH_KEY_LEN};

    #[test]
    fn map_sizes_follow_the_tables() {
        let t = KernelTables::default();
        let sizes = map_sizes(&t);
        assert_eq!(sizes[0], (map_names::MASKS, 0, 1));
        assert_eq!(sizes.len(), map_names::TABLES.len() + 3);
        assert_eq!(
            &sizes[map_names::TABLES.len()..],
            [
                (map_names::HOOK_CONFIG, 16, 16),
                (map_names::ACTIVE, 1, 1),
                (map_names::STATS, 20, 20),
            ]
        );
        let t = KernelTables {
            str_exact: vec![
                (
                    StrKey {
                        ns: 0,
                        data: [0; PATH_KEY_LEN]
                    },
                    0
                );
                3
            ],
            ..KernelTables::default()
        };
        assert_eq!(map_sizes(&t)[1], (map_names::STR_EXACT, 3, 3));
    }

    /// The compiled object agrees with the Rust mirror of its ABI.
    #[test]
    fn object_matches_abi() {
        let obj = aya_obj::Object::parse(POLICY_OBJECT).expect("embedded object parses");
        let map = |name: &str| {
            obj.maps
                .get(name)
                .unwrap_or_else(|| panic!("map {name} missing"))
        };
        let inner = |name: &str| {
            map(name)
                .inner()
                .unwrap_or_else(|| panic!("map {name} has no inner map"))
        };
        let sizes = [
            (map_names::MASKS, 4, 8 * MASK_WORDS + 8),
            (map_names::STR_EXACT, std::mem::size_of::<StrKey>(), 4),
            (
                map_names::STR_PREFIX,
                4 + std::mem::size_of::<StrLpmKey>(),
                4,
            ),
            (
                map_names::STR_SUFFIX,
                4 + std::mem::size_of::<StrLpmKey>(),
                4,
            ),
            (map_names::NUM_LPM, 4 + std::mem::size_of::<NumLpmKey>(), 4),
            (map_names::IP_LPM, 4 + std::mem::size_of::<IpLpmKey>(), 4),
            (map_names::CGROUP_EXACT, std::mem::size_of::<CgroupKey>(), 4),
            (map_names::CAPS_TABLE, 4, std::mem::size_of::<CapsEntry>()),
            (
                map_names::ANCHOR_EXACT,
                std::mem::size_of::<StrKey>(),
                std::mem::size_of::<AnchorValue>(),
            ),
            (
                map_names::ANCHOR_PREFIX,
                4 + std::mem::size_of::<StrLpmKey>(),
                std::mem::size_of::<AnchorValue>(),
            ),
            (
                map_names::GROUP_CONFIG,
                4,
                std::mem::size_of::<GroupConfig>(),
            ),
        ];
        for (name, key, value) in sizes {
            assert_eq!(map(name).max_entries(), SLOTS, "{name}");
            assert_eq!(inner(name).key_size() as usize, key, "{name} key");
            assert_eq!(inner(name).value_size() as usize, value, "{name} value");
        }
        for name in [
            map_names::STR_PREFIX,
            map_names::STR_SUFFIX,
            map_names::NUM_LPM,
            map_names::IP_LPM,
            map_names::ANCHOR_PREFIX,
        ] {
            assert_eq!(inner(name).map_flags(), BPF_F_NO_PREALLOC, "{name}");
        }
        assert_eq!(
            map(map_names::HOOK_CONFIG).value_size() as usize,
            std::mem::size_of::<HookConfig>()
        );
        assert_eq!(std::mem::size_of::<HookConfig>(), 40 + 16 * MAX_ANCHORS);
        assert_eq!(std::mem::size_of::<GroupConfig>(), 32 + 48 * MAX_DIMS);
        assert_eq!(map(map_names::HOOK_CONFIG).max_entries(), SLOTS * NHOOKS);
        assert_eq!(
            map(map_names::ACTIVE).value_size() as usize,
            std::mem::size_of::<ActiveSlot>()
        );
        assert_eq!(map(map_names::STATS).max_entries(), Stat::COUNT);
        for name in map_names::PINNED.iter().chain(&map_names::SCRATCH) {
            map(name);
        }
        for (hook, _) in Hook::ALL {
            for hp in hook_programs(hook) {
                assert!(
                    obj.programs.contains_key(hp.program),
                    "program {} missing",
                    hp.program
                );
            }
        }
    }
}
