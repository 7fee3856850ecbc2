//! `policyd run`: preflight checks, load, attach, event loop, shutdown.

use std::io;
use std::path::{Path, PathBuf};

use aya::maps::{MapData, RingBuf};
use policy_compiler::bundle::{BundleError, Hook, HookTable, PolicyBundle};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::signal::unix::{signal, SignalKind};

use crate::clock::boot_to_unix_offset_ns;
use crate::decision::decide;
use crate::event::ExecEvent;
use crate::export::{build, BundleRef, ExportError, ExportTarget, Exporter};
use crate::loader::{is_bpffs, ExecHook, LoadError, EXEC_MECHANISM};
use crate::tables::{ExecTables, TablesError};

/// Where the kernel exposes its BTF; CO-RE relocations need it.
pub const KERNEL_BTF: &str = "/sys/kernel/btf/vmlinux";
/// Default directory for map pins.
pub const DEFAULT_PIN_DIR: &str = "/sys/fs/bpf/policyd";

/// Options of `policyd run`.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The PolicyBundle YAML file.
    pub bundle: PathBuf,
    /// Where events go.
    pub export: ExportTarget,
    /// `node_name` of every event.
    pub node_name: String,
    /// Directory for map pins; used only when it is on a bpf filesystem.
    pub pin_dir: PathBuf,
}

/// Why `policyd run` stopped with an error. Every variant exits with status 1.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum RunError {
    /// Not running as root.
    #[error("policyd must run as root to load BPF programs (running as euid {euid})")]
    #[diagnostic(
        code(policyd::not_root),
        help("run it as root, e.g. `sudo policyd run --bundle …`")
    )]
    NotRoot {
        /// The effective uid.
        euid: u32,
    },
    /// No kernel BTF.
    #[error("kernel BTF not found at {KERNEL_BTF}")]
    #[diagnostic(
        code(policyd::no_btf),
        help("policyd's BPF programs are CO-RE: run a kernel built with CONFIG_DEBUG_INFO_BTF=y")
    )]
    NoBtf,
    /// The bundle file cannot be read.
    #[error("cannot read bundle {path}")]
    #[diagnostic(code(policyd::bundle_read))]
    ReadBundle {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// The bundle is malformed or fails validation.
    #[error("bundle {path} is refused")]
    #[diagnostic(code(policyd::bundle_invalid))]
    Bundle {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        #[diagnostic_source]
        source: BundleError,
    },
    /// The bundle needs something this runtime's templates do not implement.
    #[error(transparent)]
    #[diagnostic(transparent)]
    Tables(#[from] TablesError),
    /// The kernel refused the BPF object.
    #[error(transparent)]
    #[diagnostic(transparent)]
    Load(#[from] LoadError),
    /// Events could not be exported.
    #[error(transparent)]
    #[diagnostic(transparent)]
    Export(#[from] ExportError),
    /// Signal handling or ring-buffer polling failed.
    #[error("{what}")]
    #[diagnostic(code(policyd::io))]
    Io {
        /// What was being set up.
        what: &'static str,
        /// The OS error.
        source: io::Error,
    },
}

/// Checks that need no bundle: root and kernel BTF.
///
/// # Errors
/// [`RunError::NotRoot`], [`RunError::NoBtf`].
pub fn preflight() -> Result<(), RunError> {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    if euid != 0 {
        return Err(RunError::NotRoot { euid });
    }
    if !Path::new(KERNEL_BTF).exists() {
        return Err(RunError::NoBtf);
    }
    Ok(())
}

/// Read and validate a bundle file.
///
/// # Errors
/// [`RunError::ReadBundle`], [`RunError::Bundle`].
pub fn read_bundle(path: &Path) -> Result<PolicyBundle, RunError> {
    let text = std::fs::read_to_string(path).map_err(|source| RunError::ReadBundle {
        path: path.to_path_buf(),
        source,
    })?;
    PolicyBundle::from_yaml(&text).map_err(|source| RunError::Bundle {
        path: path.to_path_buf(),
        source,
    })
}

/// The node name: `explicit`, else `$NODE_NAME`, else the hostname.
pub fn node_name(explicit: Option<String>) -> String {
    explicit
        .or_else(|| std::env::var("NODE_NAME").ok().filter(|s| !s.is_empty()))
        .unwrap_or_else(hostname)
}

fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: buf is writable for its length.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "unknown".into();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

/// Everything needed to turn a ring-buffer record into an exported line.
struct Pipeline<'a> {
    bundle: &'a PolicyBundle,
    exec: HookTable,
    node_name: &'a str,
    exporter: Exporter,
    decode_errors: u64,
}

impl Pipeline<'_> {
    fn handle(&mut self, record: &[u8]) -> Result<(), ExportError> {
        let ev = match ExecEvent::decode(record) {
            Ok(ev) => ev,
            Err(e) => {
                self.decode_errors += 1;
                eprintln!("policyd: dropping undecodable event: {e}");
                return Ok(());
            }
        };
        let decision = decide(&self.exec, &self.bundle.spec.rules, &ev.matched);
        let bundle = BundleRef {
            name: &self.bundle.metadata.name,
            digest: &self.bundle.spec.digest,
        };
        let out = build(
            &ev,
            &decision,
            self.node_name,
            bundle,
            boot_to_unix_offset_ns(),
        );
        self.exporter.write(&out)
    }

    fn drain(&mut self, ring: &mut RingBuf<MapData>) -> Result<(), ExportError> {
        while let Some(item) = ring.next() {
            self.handle(&item)?;
        }
        Ok(())
    }
}

/// Run until SIGINT or SIGTERM: load `opts.bundle`, attach, export events.
/// Prints `policyd: ready …` to stderr once attached. On a signal: detach,
/// export what is left in the ring buffer, remove the pins, return `Ok`.
///
/// # Errors
/// Any [`RunError`]; the hook is detached and unpinned before returning.
pub async fn run(opts: RunOptions) -> Result<(), RunError> {
    preflight()?;
    let bundle = read_bundle(&opts.bundle)?;
    let tables = ExecTables::from_bundle(&bundle)?;
    let exporter = Exporter::open(&opts.export)?;
    let io_err = |what| move |source| RunError::Io { what, source };
    // Handlers first, so that a signal right after readiness is not fatal.
    let mut sigterm = signal(SignalKind::terminate()).map_err(io_err("cannot handle SIGTERM"))?;
    let mut sigint = signal(SignalKind::interrupt()).map_err(io_err("cannot handle SIGINT"))?;

    let mut hook = ExecHook::load(&tables)?;
    let pinned = is_bpffs(opts.pin_dir.parent().unwrap_or(Path::new("/")));
    let pins = if pinned {
        hook.pin(&opts.pin_dir)?;
        opts.pin_dir.display().to_string()
    } else {
        eprintln!(
            "policyd: {} is not on a bpf filesystem; maps are not pinned (mount -t bpf bpf /sys/fs/bpf)",
            opts.pin_dir.display()
        );
        "none".to_string()
    };
    // After pinning: pinning needs every map still in the Ebpf.
    let ring = hook.take_events()?;
    // SAFETY: the RingBuf owns its map fd for its whole life and always
    // returns that same fd from as_raw_fd(); the AsyncFd owns the RingBuf.
    let mut ring =
        unsafe { AsyncFd::register_with_interest(ring, Interest::READABLE) }.map_err(|e| {
            RunError::Io {
                what: "cannot poll the ring buffer",
                source: e.into(),
            }
        })?;
    hook.attach()?;

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
    eprintln!(
        "policyd: ready hook=exec mechanism={EXEC_MECHANISM} bundle={} digest={} rules={} terms={} pins={pins}",
        bundle.metadata.name,
        bundle.spec.digest,
        bundle.spec.rules.len(),
        exec.terms.len(),
    );
    let mut pipeline = Pipeline {
        bundle: &bundle,
        exec,
        node_name: &opts.node_name,
        exporter,
        decode_errors: 0,
    };

    let result = loop {
        tokio::select! {
            guard = ring.readable_mut() => {
                let mut guard = match guard {
                    Ok(g) => g,
                    Err(e) => break Err(RunError::Io { what: "cannot poll the ring buffer", source: e }),
                };
                if let Err(e) = pipeline.drain(guard.get_inner_mut()) {
                    break Err(e.into());
                }
                guard.clear_ready();
            }
            _ = sigterm.recv() => break Ok("SIGTERM"),
            _ = sigint.recv() => break Ok("SIGINT"),
        }
    };

    hook.detach()?;
    let drained = pipeline.drain(ring.get_mut());
    let failed = hook.unpin();
    for (path, e) in &failed {
        eprintln!("policyd: cannot remove pin {}: {e}", path.display());
    }
    if let Ok(stats) = hook.stats() {
        let line: Vec<String> = stats
            .iter()
            .map(|(s, v)| format!("{}={v}", s.name()))
            .collect();
        eprintln!(
            "policyd: stats {} decode_errors={}",
            line.join(" "),
            pipeline.decode_errors
        );
    }
    let signal = result?;
    drained?;
    let unpinned = if pinned { ", pins removed" } else { "" };
    eprintln!("policyd: {signal}: detached{unpinned}, exiting");
    Ok(())
}
