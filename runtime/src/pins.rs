//! The pin directory: one `policyd` per directory, and where maps can be pinned.
//!
//! - [`PinLock`]: an exclusive, non-blocking `flock` on
//!   `/run/policyd/<escaped pin dir>.lock`, held for the life of the process
//!   (the kernel releases it when the process dies, however it dies). A
//!   second instance with the same pin directory is refused with the
//!   holder's pid, which the holder writes into the lock file.
//! - [`check_pin_dir`]: whether maps can be pinned in the directory, and if
//!   not, exactly why.
//! - [`remove_stale_pins`]: with the lock held, pins that are still there
//!   can only be left by an instance that died without cleaning up.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use crate::abi::map_names;
use crate::loader::is_bpffs;

/// Directory of the lock files.
pub const LOCK_DIR: &str = "/run/policyd";

/// Why the pin directory cannot be used.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum PinError {
    /// Another live instance holds the lock of this pin directory.
    #[error(
        "pin directory {} is in use by another policyd ({})",
        pin_dir.display(),
        match pid { Some(p) => format!("pid {p}"), None => "pid unknown".to_string() }
    )]
    #[diagnostic(
        code(policyd::pin_dir_in_use),
        help("stop that instance first (it holds {}), or give this one another --pin-dir", lock.display())
    )]
    Held {
        /// The pin directory.
        pin_dir: PathBuf,
        /// The lock file.
        lock: PathBuf,
        /// The holder's pid, as it wrote it in the lock file.
        pid: Option<u32>,
    },
    /// The lock file could not be created, opened, locked or written.
    #[error("cannot {what} lock file {}", path.display())]
    #[diagnostic(code(policyd::pin_lock))]
    Lock {
        /// What failed.
        what: &'static str,
        /// The lock file (or its directory).
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// `--pin-dir` is the root of a bpf filesystem mount.
    #[error(
        "--pin-dir {} is the root of a bpf filesystem; policyd pins its maps in a directory of its own and removes that directory on exit",
        dir.display()
    )]
    #[diagnostic(
        code(policyd::pin_dir_is_bpffs_root),
        help("give a directory below it, e.g. --pin-dir {}", dir.join("policyd").display())
    )]
    BpffsRoot {
        /// The directory.
        dir: PathBuf,
    },
    /// `--pin-dir`, or an ancestor of it, exists and is not a directory.
    #[error("--pin-dir {}: {} exists and is not a directory", dir.display(), path.display())]
    #[diagnostic(code(policyd::pin_dir_not_a_directory))]
    NotADirectory {
        /// The pin directory.
        dir: PathBuf,
        /// The offending path.
        path: PathBuf,
    },
    /// The pin directory or one of its ancestors cannot be examined.
    #[error("cannot examine {} (for --pin-dir)", path.display())]
    #[diagnostic(code(policyd::pin_dir_io))]
    Inspect {
        /// The path.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// A stale pin could not be removed.
    #[error("cannot remove stale pin {}", path.display())]
    #[diagnostic(code(policyd::stale_pin))]
    Stale {
        /// The pin.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
}

/// `dir` made absolute (relative to the cwd), with `.` and `..` resolved
/// lexically and the longest existing prefix canonicalised (symlinks
/// resolved), so that every spelling of a directory names the same lock.
///
/// # Errors
/// When the cwd cannot be read or an existing prefix cannot be resolved.
pub fn absolute(dir: &Path) -> io::Result<PathBuf> {
    let joined = if dir.is_absolute() {
        dir.to_path_buf()
    } else {
        std::env::current_dir()?.join(dir)
    };
    let mut norm = PathBuf::from("/");
    for c in joined.components() {
        match c {
            Component::Normal(n) => norm.push(n),
            Component::ParentDir => {
                norm.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    let mut existing = norm;
    let mut rest = Vec::new();
    loop {
        match existing.canonicalize() {
            Ok(mut p) => {
                p.extend(rest.iter().rev());
                return Ok(p);
            }
            Err(e) if gone(&e) => match existing.file_name() {
                Some(name) => {
                    rest.push(name.to_os_string());
                    existing.pop();
                }
                None => return Err(e),
            },
            Err(e) => return Err(e),
        }
    }
}

/// Whether `e` says that a path does not exist (as a directory).
fn gone(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
    )
}

/// The lock file name of the (absolute) pin directory `dir`: the path
/// without its leading `/`, `/` written `-`, and every byte other than
/// ASCII letters, digits, `_` and `.` written `%XX` (so `-` is `%2D`), plus
/// `.lock`. `/sys/fs/bpf/policyd` gives `sys-fs-bpf-policyd.lock`. Names
/// longer than 200 bytes keep their first 180 bytes and a hash of the path.
pub fn lock_file_name(dir: &Path) -> String {
    let bytes = dir.as_os_str().as_encoded_bytes();
    let trimmed = bytes.strip_prefix(b"/").unwrap_or(bytes);
    let mut name = String::new();
    for &b in trimmed {
        match b {
            b'/' => name.push('-'),
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' => name.push(b as char),
            b'.' if !name.is_empty() => name.push('.'),
            _ => name.push_str(&format!("%{b:02X}")),
        }
    }
    if name.is_empty() {
        name.push('-');
    }
    if name.len() > 200 {
        // FNV-1a: stable across builds, unlike std's hasher.
        let hash = bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
        name.truncate(180);
        name.push_str(&format!("~{hash:016x}"));
    }
    name.push_str(".lock");
    name
}

/// The lock file of the (absolute) pin directory `dir`.
pub fn lock_path(dir: &Path) -> PathBuf {
    Path::new(LOCK_DIR).join(lock_file_name(dir))
}

/// The exclusive lock of a pin directory, held until dropped (or the
/// process ends). The lock file stays: removing it would let two
/// instances lock two different files of the same name.
#[derive(Debug)]
pub struct PinLock {
    _file: File,
    path: PathBuf,
}

impl PinLock {
    /// Lock the (absolute) pin directory `pin_dir` without waiting, and
    /// write our pid into the lock file.
    ///
    /// # Errors
    /// [`PinError::Held`] when another process holds it;
    /// [`PinError::Lock`] when the lock file cannot be used.
    pub fn acquire(pin_dir: &Path) -> Result<PinLock, PinError> {
        let path = lock_path(pin_dir);
        Self::acquire_at(pin_dir, &path)
    }

    /// [`PinLock::acquire`] with an explicit lock file (tests).
    ///
    /// # Errors
    /// As [`PinLock::acquire`].
    pub fn acquire_at(pin_dir: &Path, path: &Path) -> Result<PinLock, PinError> {
        let lock_err = |what, path: &Path| {
            let path = path.to_path_buf();
            move |source| PinError::Lock { what, path, source }
        };
        if let Some(parent) = path.parent() {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(parent)
                .map_err(lock_err("create the directory of the", path))?;
        }
        // No truncation before the lock is ours: the holder's pid is in it.
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o644)
            .open(path)
            .map_err(lock_err("open", path))?;
        loop {
            // SAFETY: flock on an fd we own.
            let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
            if rc == 0 {
                break;
            }
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EINTR) => continue,
                Some(libc::EWOULDBLOCK) => {
                    return Err(PinError::Held {
                        pin_dir: pin_dir.to_path_buf(),
                        lock: path.to_path_buf(),
                        pid: holder_pid(path),
                    })
                }
                _ => return Err(lock_err("lock", path)(e)),
            }
        }
        file.set_len(0)
            .and_then(|()| writeln!(file, "{}", std::process::id()))
            .map_err(lock_err("write our pid into the", path))?;
        Ok(PinLock {
            _file: file,
            path: path.to_path_buf(),
        })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// The pid in a held lock file. The holder writes it right after locking,
/// so an empty file is re-read for a short while.
fn holder_pid(path: &Path) -> Option<u32> {
    for _ in 0..10 {
        if let Some(pid) = fs::read_to_string(path)
            .ok()
            .and_then(|s| s.trim().parse().ok())
        {
            return Some(pid);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

/// Whether maps can be pinned in the pin directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PinPlan {
    /// The directory is on a bpf filesystem, or does not exist and its
    /// nearest existing ancestor is: pin there, creating what is missing.
    Pin,
    /// Not on a bpf filesystem: run without pins; the text says why.
    NoPin(String),
}

/// Decide where the maps go for the (absolute, see [`absolute`]) pin
/// directory `dir`.
///
/// # Errors
/// [`PinError::BpffsRoot`] when `dir` is the root of a bpf filesystem
/// mount; [`PinError::NotADirectory`] when it or its nearest existing
/// ancestor is not a directory; [`PinError::Inspect`] on other errors.
pub fn check_pin_dir(dir: &Path) -> Result<PinPlan, PinError> {
    let mut anc = dir;
    let meta = loop {
        match fs::metadata(anc) {
            Ok(m) => break m,
            Err(e) if gone(&e) => match anc.parent() {
                Some(p) => anc = p,
                None => {
                    return Err(PinError::Inspect {
                        path: anc.to_path_buf(),
                        source: e,
                    })
                }
            },
            Err(source) => {
                return Err(PinError::Inspect {
                    path: anc.to_path_buf(),
                    source,
                })
            }
        }
    };
    if !meta.is_dir() {
        return Err(PinError::NotADirectory {
            dir: dir.to_path_buf(),
            path: anc.to_path_buf(),
        });
    }
    if !is_bpffs(anc) {
        return Ok(PinPlan::NoPin(not_bpffs_reason(dir, anc, &mounts())));
    }
    if anc == dir && is_mount_root(dir, &meta)? {
        return Err(PinError::BpffsRoot {
            dir: dir.to_path_buf(),
        });
    }
    Ok(PinPlan::Pin)
}

fn is_mount_root(dir: &Path, meta: &fs::Metadata) -> Result<bool, PinError> {
    let Some(parent) = dir.parent() else {
        return Ok(true);
    };
    let pmeta = fs::metadata(parent).map_err(|source| PinError::Inspect {
        path: parent.to_path_buf(),
        source,
    })?;
    Ok(pmeta.dev() != meta.dev() || pmeta.ino() == meta.ino())
}

/// One line of `/proc/self/mountinfo`, the fields we use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// Mount point.
    pub point: PathBuf,
    /// Filesystem type (`bpf`, `tmpfs`, `ext4`, …).
    pub fstype: String,
}

/// Parse `/proc/self/mountinfo` text (see proc(5)); bad lines are skipped.
pub fn parse_mountinfo(text: &str) -> Vec<Mount> {
    text.lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let point = left.split(' ').nth(4)?;
            let fstype = right.split(' ').next()?;
            Some(Mount {
                point: PathBuf::from(unescape_octal(point)),
                fstype: fstype.to_string(),
            })
        })
        .collect()
}

/// mountinfo writes space, tab, newline and backslash as `\ooo`.
fn unescape_octal(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let digits = b
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match digits {
            Some(d) if b[i] == b'\\' => {
                let v = d.iter().fold(0u32, |v, c| v * 8 + u32::from(c - b'0'));
                out.push(v as u8);
                i += 4;
            }
            _ => {
                out.push(b[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn mounts() -> Vec<Mount> {
    fs::read("/proc/self/mountinfo")
        .map(|t| parse_mountinfo(&String::from_utf8_lossy(&t)))
        .unwrap_or_default()
}

/// The mount `path` is on: the longest mount point that is a prefix of it
/// (the later one when equal: it is stacked on top).
pub fn mount_of<'a>(mounts: &'a [Mount], path: &Path) -> Option<&'a Mount> {
    mounts
        .iter()
        .filter(|m| path.starts_with(&m.point))
        .fold(None, |best: Option<&Mount>, m| match best {
            Some(b) if b.point.as_os_str().len() > m.point.as_os_str().len() => Some(b),
            _ => Some(m),
        })
}

/// Why `dir` (whose nearest existing ancestor is `anc`) is not on a bpf
/// filesystem, and what to do, for the log.
pub fn not_bpffs_reason(dir: &Path, anc: &Path, mounts: &[Mount]) -> String {
    let on = match mount_of(mounts, anc) {
        Some(m) => format!("on {} (mounted at {})", m.fstype, m.point.display()),
        None => "on a filesystem that is not bpf".to_string(),
    };
    let what = if anc == dir {
        format!("{} is {on}, not on a bpf filesystem", dir.display())
    } else {
        format!(
            "{} does not exist and its nearest existing ancestor {} is {on}, not on a bpf filesystem",
            dir.display(),
            anc.display()
        )
    };
    let bpf: Vec<String> = mounts
        .iter()
        .filter(|m| m.fstype == "bpf")
        .map(|m| m.point.display().to_string())
        .collect();
    let hint = if mounts.is_empty() {
        "is a bpf filesystem mounted? `mount -t bpf bpf /sys/fs/bpf`".to_string()
    } else if bpf.is_empty() {
        "no bpf filesystem is mounted: mount one with `mount -t bpf bpf /sys/fs/bpf`".to_string()
    } else {
        format!(
            "bpf filesystems are mounted at {}: give a --pin-dir below one",
            bpf.join(", ")
        )
    };
    format!("{what}; maps are not pinned ({hint})")
}

/// Remove the pins (names of [`map_names::PINNED`], and of
/// [`map_names::LEGACY_PINNED`], those of the exec-only policyd before the
/// generic engine) found in `dir`. Call with the [`PinLock`] held: they were
/// left by an instance that died. Returns the names removed.
///
/// # Errors
/// [`PinError::Stale`] when one exists and cannot be removed.
pub fn remove_stale_pins(dir: &Path) -> Result<Vec<&'static str>, PinError> {
    let mut removed = Vec::new();
    for name in map_names::PINNED.iter().chain(&map_names::LEGACY_PINNED) {
        let name: &'static str = name;
        let path = dir.join(name);
        match fs::remove_file(&path) {
            Ok(()) => removed.push(name),
            Err(e) if gone(&e) => {}
            Err(source) => return Err(PinError::Stale { path, source }),
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_names_are_escaped_and_distinct() {
        assert_eq!(
            lock_file_name(Path::new("/sys/fs/bpf/policyd")),
            "sys-fs-bpf-policyd.lock"
        );
        assert_eq!(lock_file_name(Path::new("/")), "-.lock");
        assert_eq!(
            lock_file_name(Path::new("/sys/fs/bpf/a-b")),
            "sys-fs-bpf-a%2Db.lock"
        );
        assert_ne!(
            lock_file_name(Path::new("/sys/fs/bpf/a-b")),
            lock_file_name(Path::new("/sys/fs/bpf/a/b"))
        );
        assert_eq!(lock_file_name(Path::new("/x/.y z")), "x-.y%20z.lock");
        assert_eq!(lock_file_name(Path::new("/.x")), "%2Ex.lock");
        let long = PathBuf::from(format!("/{}", "d/".repeat(300)));
        let name = lock_file_name(&long);
        assert!(name.len() <= 255 && name.ends_with(".lock"), "{name}");
        let other = PathBuf::from(format!("/{}e", "d/".repeat(300)));
        assert_ne!(name, lock_file_name(&other));
    }

    #[test]
    fn absolute_normalises_and_resolves_symlinks() {
        let tmp = tempfile::tempdir().unwrap();
        let real = tmp.path().canonicalize().unwrap();
        std::os::unix::fs::symlink(&real, real.join("link")).unwrap();
        let spelled = real.join("link/./x/../y/z");
        assert_eq!(absolute(&spelled).unwrap(), real.join("y/z"));
        assert_eq!(absolute(&real).unwrap(), real);
    }

    #[test]
    fn second_lock_is_refused_with_the_holders_pid() {
        let tmp = tempfile::tempdir().unwrap();
        let lock = tmp.path().join("locks/x.lock");
        let pin = Path::new("/sys/fs/bpf/x");
        let held = PinLock::acquire_at(pin, &lock).unwrap();
        assert_eq!(
            fs::read_to_string(&lock).unwrap(),
            format!("{}\n", std::process::id())
        );
        // flock locks belong to the open file: a second open conflicts even
        // in the same process.
        match PinLock::acquire_at(pin, &lock) {
            Err(PinError::Held { pid, .. }) => assert_eq!(pid, Some(std::process::id())),
            other => panic!("expected Held, got {other:?}"),
        }
        drop(held);
        PinLock::acquire_at(pin, &lock).unwrap();
    }

    #[test]
    fn plain_directories_are_not_pinned_and_say_why() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().canonicalize().unwrap();
        match check_pin_dir(&dir.join("a/b")).unwrap() {
            PinPlan::NoPin(why) => {
                assert!(why.contains("nearest existing ancestor"), "{why}");
                assert!(why.contains("maps are not pinned"), "{why}");
            }
            PinPlan::Pin => panic!("a temp dir is not bpffs"),
        }
        let file = dir.join("f");
        fs::write(&file, "").unwrap();
        assert!(matches!(
            check_pin_dir(&file.join("sub")),
            Err(PinError::NotADirectory { path, .. }) if path == file
        ));
    }

    #[test]
    fn reasons_name_the_filesystem_and_the_bpf_mounts() {
        let info = "\
22 1 0:21 / / rw,relatime shared:1 - ext4 /dev/vda rw
25 22 0:22 / /sys rw shared:2 - sysfs sysfs rw
30 25 0:25 / /sys/fs/bpf rw shared:9 - bpf bpf rw,mode=700
31 22 0:26 / /tmp/with\\040space rw shared:10 - tmpfs tmpfs rw
";
        let mounts = parse_mountinfo(info);
        assert_eq!(mounts.len(), 4);
        assert_eq!(mounts[3].point, Path::new("/tmp/with space"));
        assert_eq!(
            mount_of(&mounts, Path::new("/sys/fs/bpf/x"))
                .unwrap()
                .fstype,
            "bpf"
        );
        assert_eq!(
            mount_of(&mounts, Path::new("/sysx")).unwrap().fstype,
            "ext4"
        );
        let why = not_bpffs_reason(
            Path::new("/tmp/with space/p"),
            Path::new("/tmp/with space/p"),
            &mounts,
        );
        assert_eq!(
            why,
            "/tmp/with space/p is on tmpfs (mounted at /tmp/with space), not on a bpf filesystem; \
             maps are not pinned (bpf filesystems are mounted at /sys/fs/bpf: give a --pin-dir below one)"
        );
        let none = parse_mountinfo(&info.replace("- bpf", "- tmpfs"));
        let why = not_bpffs_reason(Path::new("/sys/fs/bpf/p"), Path::new("/sys"), &none);
        assert!(
            why.starts_with(
                "/sys/fs/bpf/p does not exist and its nearest existing ancestor /sys is on sysfs"
            ),
            "{why}"
        );
        assert!(why.contains("mount -t bpf bpf /sys/fs/bpf"), "{why}");
    }
}
