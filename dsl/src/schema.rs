//! What the language knows: hooks, the fields each hook supplies with their
//! types and kernel sources, severities, capabilities.
//!
//! This is the one table the checker, the compiler and the documentation read
//! (`docs/language.md` is checked against it by a test). Adding a field means
//! adding it here with its type, its hooks and where the kernel value comes from.

use serde::{Deserialize, Serialize};

/// A hook: the kernel event a rule is evaluated on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Hook {
    /// A successful `execve`/`execveat`, decided once the new image is mapped
    /// and before it runs user code.
    Exec,
    /// A file open (`openat`, `openat2`, `open`), with its read/write intent.
    Open,
    /// An outgoing `connect` on an IPv4/IPv6 TCP or UDP socket.
    Connect,
    /// A `bind` of an IPv4/IPv6 TCP or UDP socket.
    Bind,
    /// A credential change: `setuid`, `setreuid`, `setresuid` and the gid forms.
    Setuid,
    /// A `capset` changing a process's capabilities.
    Capset,
    /// A kernel module load (`init_module`, `finit_module`).
    ModuleLoad,
    /// `ptrace` attach to another process.
    Ptrace,
}

impl Hook {
    /// Every hook with its name in the language, in documentation order.
    pub const ALL: [(Hook, &'static str); 8] = [
        (Hook::Exec, "exec"),
        (Hook::Open, "open"),
        (Hook::Connect, "connect"),
        (Hook::Bind, "bind"),
        (Hook::Setuid, "setuid"),
        (Hook::Capset, "capset"),
        (Hook::ModuleLoad, "module_load"),
        (Hook::Ptrace, "ptrace"),
    ];

    /// Look a hook up by its name in the language.
    pub fn from_name(name: &str) -> Option<Hook> {
        Self::ALL.iter().find(|(_, n)| *n == name).map(|(h, _)| *h)
    }

    /// The hook's name in the language, bundles and events.
    pub fn as_str(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(h, _)| *h == self)
            .map(|(_, n)| *n)
            .expect("every hook is in ALL")
    }

    /// The fields this hook supplies, in documentation order.
    pub fn fields(self) -> Vec<Field> {
        Field::ALL
            .iter()
            .copied()
            .filter(|f| f.hooks().contains(&self))
            .collect()
    }
}

/// Hooks on which the acting process is known (all of them).
const PROCESS_HOOKS: &[Hook] = &[
    Hook::Exec,
    Hook::Open,
    Hook::Connect,
    Hook::Bind,
    Hook::Setuid,
    Hook::Capset,
    Hook::ModuleLoad,
    Hook::Ptrace,
];

/// The type of a field's value, which fixes its literals and operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FieldType {
    /// An absolute, canonical path of at most 255 bytes in literals.
    Path,
    /// A string of at most `max` bytes (the kernel's buffer for it).
    Str {
        /// Longest value the kernel can hold, in bytes.
        max: usize,
    },
    /// A user id: a number, or a user name resolved on each node.
    Uid,
    /// A login uid: like [`FieldType::Uid`], and `unset` (never logged in).
    LoginUid,
    /// A group id: a number, or a group name resolved on each node.
    Gid,
    /// A TCP/UDP port, `0..65535`.
    Port,
    /// An IPv4 or IPv6 address; literals may be CIDR blocks.
    Ip,
    /// A set of Linux capabilities (`CAP_*`).
    Caps,
    /// `true` or `false`.
    Bool,
    /// One of a fixed list of names.
    Enum(&'static [&'static str]),
}

impl FieldType {
    /// The type's name in messages, with an article: "a path", "a port".
    pub fn describe(self) -> &'static str {
        match self {
            FieldType::Path => "a path",
            FieldType::Str { .. } => "a string",
            FieldType::Uid => "a user id",
            FieldType::LoginUid => "a login user id",
            FieldType::Gid => "a group id",
            FieldType::Port => "a port",
            FieldType::Ip => "an IP address",
            FieldType::Caps => "a capability set",
            FieldType::Bool => "a boolean",
            FieldType::Enum(_) => "a name",
        }
    }

    /// Whether two types can be compared with each other (a relation).
    pub fn comparable_with(self, other: FieldType) -> bool {
        use FieldType::*;
        match (self, other) {
            (Uid | LoginUid, Uid | LoginUid) => true,
            (Str { .. }, Str { .. }) => true,
            (Path, Path) | (Gid, Gid) | (Port, Port) | (Ip, Ip) | (Bool, Bool) => true,
            (Enum(a), Enum(b)) => a == b,
            _ => false,
        }
    }

    /// Whether values of this type are ordered numbers (`<`, ranges).
    pub fn is_numeric(self) -> bool {
        matches!(
            self,
            FieldType::Uid | FieldType::LoginUid | FieldType::Gid | FieldType::Port
        )
    }

    /// Largest numeric value, for numeric types.
    pub fn max_number(self) -> u64 {
        match self {
            FieldType::Port => 65535,
            // (uid_t)-1 is "no id" in the kernel (and `unset` for the login uid).
            _ => u32::MAX as u64 - 1,
        }
    }
}

/// Transport protocols a socket hook reports.
pub const PROTOCOLS: &[&str] = &["tcp", "udp"];
/// Address families a socket hook reports.
pub const FAMILIES: &[&str] = &["ipv4", "ipv6"];

/// A field an event supplies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[allow(missing_docs)]
pub enum Field {
    #[serde(rename = "process.binary")]
    ProcessBinary,
    #[serde(rename = "process.name")]
    ProcessName,
    #[serde(rename = "process.args")]
    ProcessArgs,
    #[serde(rename = "process.interactive")]
    ProcessInteractive,
    #[serde(rename = "parent.binary")]
    ParentBinary,
    #[serde(rename = "user.uid")]
    UserUid,
    #[serde(rename = "user.euid")]
    UserEuid,
    #[serde(rename = "user.gid")]
    UserGid,
    #[serde(rename = "user.egid")]
    UserEgid,
    #[serde(rename = "user.auid")]
    UserAuid,
    #[serde(rename = "user.caps")]
    UserCaps,
    #[serde(rename = "k8s.namespace")]
    K8sNamespace,
    #[serde(rename = "k8s.pod")]
    K8sPod,
    #[serde(rename = "k8s.container")]
    K8sContainer,
    #[serde(rename = "k8s.label")]
    K8sLabel,
    #[serde(rename = "file.path")]
    FilePath,
    #[serde(rename = "file.write")]
    FileWrite,
    #[serde(rename = "net.daddr")]
    NetDaddr,
    #[serde(rename = "net.dport")]
    NetDport,
    #[serde(rename = "net.saddr")]
    NetSaddr,
    #[serde(rename = "net.sport")]
    NetSport,
    #[serde(rename = "net.protocol")]
    NetProtocol,
    #[serde(rename = "net.family")]
    NetFamily,
    #[serde(rename = "cred.new_uid")]
    CredNewUid,
    #[serde(rename = "cred.new_euid")]
    CredNewEuid,
    #[serde(rename = "cred.new_gid")]
    CredNewGid,
    #[serde(rename = "cred.new_egid")]
    CredNewEgid,
    #[serde(rename = "cred.new_caps")]
    CredNewCaps,
    #[serde(rename = "module.name")]
    ModuleName,
    #[serde(rename = "target.binary")]
    TargetBinary,
}

/// Static description of one field.
#[derive(Debug, Clone, Copy)]
pub struct FieldInfo {
    /// Dotted name in the language.
    pub name: &'static str,
    /// Value type.
    pub ty: FieldType,
    /// Hooks that supply it.
    pub hooks: &'static [Hook],
    /// Whether it takes an index (`k8s.label["app"]`).
    pub indexed: bool,
    /// Where the kernel (or the node) takes the value from.
    pub source: &'static str,
}

impl Field {
    /// Every field, in documentation order.
    pub const ALL: [Field; 30] = [
        Field::ProcessBinary,
        Field::ProcessName,
        Field::ProcessArgs,
        Field::ProcessInteractive,
        Field::ParentBinary,
        Field::UserUid,
        Field::UserEuid,
        Field::UserGid,
        Field::UserEgid,
        Field::UserAuid,
        Field::UserCaps,
        Field::K8sNamespace,
        Field::K8sPod,
        Field::K8sContainer,
        Field::K8sLabel,
        Field::FilePath,
        Field::FileWrite,
        Field::NetDaddr,
        Field::NetDport,
        Field::NetSaddr,
        Field::NetSport,
        Field::NetProtocol,
        Field::NetFamily,
        Field::CredNewUid,
        Field::CredNewEuid,
        Field::CredNewGid,
        Field::CredNewEgid,
        Field::CredNewCaps,
        Field::ModuleName,
        Field::TargetBinary,
    ];

    /// The field's static description.
    pub fn info(self) -> FieldInfo {
        use FieldType::*;
        use Hook::*;
        let f = |name, ty, hooks, source| FieldInfo {
            name,
            ty,
            hooks,
            indexed: false,
            source,
        };
        match self {
            Field::ProcessBinary => f(
                "process.binary",
                Path,
                PROCESS_HOOKS,
                "canonical absolute path of the executable: on `exec`, `linux_binprm.file` (the file the kernel executed, however it was named); elsewhere `task_struct.mm->exe_file`; resolved through dentries and mounts like `d_path`",
            ),
            Field::ProcessName => f("process.name", Str { max: 15 }, PROCESS_HOOKS, "`task_struct.comm` (at most 15 bytes, `TASK_COMM_LEN - 1`)"),
            Field::ProcessArgs => f(
                "process.args",
                Str { max: 1024 },
                PROCESS_HOOKS,
                "arguments after `argv[0]`, joined by single spaces, from `mm_struct.arg_start..arg_end` (first 1024 bytes)",
            ),
            Field::ProcessInteractive => f("process.interactive", Bool, PROCESS_HOOKS, "the process has a controlling terminal: `task_struct.signal->tty != NULL`"),
            Field::ParentBinary => f("parent.binary", Path, PROCESS_HOOKS, "`task_struct.real_parent->mm->exe_file`, resolved like `process.binary`"),
            Field::UserUid => f("user.uid", Uid, PROCESS_HOOKS, "real uid, `task_struct.cred->uid` (before the change on `setuid`)"),
            Field::UserEuid => f("user.euid", Uid, PROCESS_HOOKS, "effective uid, `task_struct.cred->euid`"),
            Field::UserGid => f("user.gid", Gid, PROCESS_HOOKS, "real gid, `task_struct.cred->gid`"),
            Field::UserEgid => f("user.egid", Gid, PROCESS_HOOKS, "effective gid, `task_struct.cred->egid`"),
            Field::UserAuid => f("user.auid", LoginUid, PROCESS_HOOKS, "login uid, `task_struct.loginuid` (`unset` = 4294967295, never logged in)"),
            Field::UserCaps => f("user.caps", Caps, PROCESS_HOOKS, "effective capabilities, `task_struct.cred->cap_effective`"),
            Field::K8sNamespace => f("k8s.namespace", Str { max: 63 }, PROCESS_HOOKS, "namespace of the pod whose cgroup holds the process (node-side attribution by cgroup id)"),
            Field::K8sPod => f("k8s.pod", Str { max: 253 }, PROCESS_HOOKS, "name of the pod whose cgroup holds the process"),
            Field::K8sContainer => f("k8s.container", Str { max: 63 }, PROCESS_HOOKS, "name of the container whose cgroup holds the process"),
            Field::K8sLabel => FieldInfo {
                name: "k8s.label",
                ty: Str { max: 63 },
                hooks: PROCESS_HOOKS,
                indexed: true,
                source: "value of a label of the pod whose cgroup holds the process: `k8s.label[\"app\"]`",
            },
            Field::FilePath => f("file.path", Path, &[Open], "canonical absolute path of the opened file, `file.f_path` resolved through dentries and mounts"),
            Field::FileWrite => f("file.write", Bool, &[Open], "opened for writing (`O_WRONLY`, `O_RDWR`) or created by this open (`O_CREAT` of a file that did not exist): `file.f_mode & (FMODE_WRITE | FMODE_CREATED)`"),
            Field::NetDaddr => f("net.daddr", Ip, &[Connect], "destination address, `sockaddr_in.sin_addr` / `sockaddr_in6.sin6_addr` of `connect`"),
            Field::NetDport => f("net.dport", Port, &[Connect], "destination port of `connect`"),
            Field::NetSaddr => f("net.saddr", Ip, &[Bind], "address being bound, from the `bind` sockaddr"),
            Field::NetSport => f("net.sport", Port, &[Bind], "port being bound (0: any free port)"),
            Field::NetProtocol => f("net.protocol", Enum(PROTOCOLS), &[Connect, Bind], "`tcp` or `udp`, from the socket type"),
            Field::NetFamily => f("net.family", Enum(FAMILIES), &[Connect, Bind], "`ipv4` or `ipv6`, from the sockaddr family"),
            Field::CredNewUid => f("cred.new_uid", Uid, &[Setuid], "real uid after the change (the `setuid`/`setreuid`/`setresuid` argument; unchanged ids keep their value)"),
            Field::CredNewEuid => f("cred.new_euid", Uid, &[Setuid], "effective uid after the change"),
            Field::CredNewGid => f("cred.new_gid", Gid, &[Setuid], "real gid after the change (`setgid`, `setregid`, `setresgid`)"),
            Field::CredNewEgid => f("cred.new_egid", Gid, &[Setuid], "effective gid after the change"),
            Field::CredNewCaps => f("cred.new_caps", Caps, &[Capset], "effective capability set requested by `capset`"),
            Field::ModuleName => f("module.name", Str { max: 55 }, &[ModuleLoad], "module name, `module.name` (at most 55 bytes, `MODULE_NAME_LEN - 1`)"),
            Field::TargetBinary => f("target.binary", Path, &[Ptrace], "executable of the traced process, `task_struct.mm->exe_file` of the target"),
        }
    }

    /// Look a field up by its dotted name.
    pub fn from_name(name: &str) -> Option<Field> {
        Self::ALL.iter().copied().find(|f| f.info().name == name)
    }

    /// The field's dotted name.
    pub fn as_str(self) -> &'static str {
        self.info().name
    }

    /// The field's value type.
    pub fn ty(self) -> FieldType {
        self.info().ty
    }

    /// Hooks that supply the field.
    pub fn hooks(self) -> &'static [Hook] {
        self.info().hooks
    }
}

/// First components of field names: a dotted name starting with one of these
/// is a field, anything else is a (qualified) declaration name.
pub const FIELD_NAMESPACES: &[&str] = &[
    "process", "parent", "user", "k8s", "file", "net", "cred", "module", "target",
];

/// Audit severity, ordered from least to most severe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Informational; the default.
    Info,
    /// Low.
    Low,
    /// Medium.
    Medium,
    /// High.
    High,
    /// Critical.
    Critical,
}

impl Severity {
    /// Every severity, in order, with its name in the language.
    pub const ALL: [(Severity, &'static str); 5] = [
        (Severity::Info, "info"),
        (Severity::Low, "low"),
        (Severity::Medium, "medium"),
        (Severity::High, "high"),
        (Severity::Critical, "critical"),
    ];

    /// Parse a severity name as written in the language.
    pub fn from_name(name: &str) -> Option<Severity> {
        Self::ALL.iter().find(|(_, n)| *n == name).map(|(s, _)| *s)
    }

    /// The severity's name in the language, events and bundles.
    pub fn as_str(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(s, _)| *s == self)
            .map(|(_, n)| *n)
            .expect("every severity is in ALL")
    }
}

/// Policy modes.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default,
)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Verdicts are enforced.
    #[default]
    Enforce,
    /// Deny and kill are not enforced; they are audited as "would deny".
    Monitor,
}

impl Mode {
    /// Every mode with its name.
    pub const ALL: [(Mode, &'static str); 2] =
        [(Mode::Enforce, "enforce"), (Mode::Monitor, "monitor")];

    /// Parse a mode name.
    pub fn from_name(name: &str) -> Option<Mode> {
        Self::ALL.iter().find(|(_, n)| *n == name).map(|(m, _)| *m)
    }

    /// The mode's name.
    pub fn as_str(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(m, _)| *m == self)
            .map(|(_, n)| *n)
            .expect("every mode is in ALL")
    }
}

/// Linux capabilities by name and bit number (`include/uapi/linux/capability.h`).
pub const CAPABILITIES: [(&str, u8); 41] = [
    ("CAP_CHOWN", 0),
    ("CAP_DAC_OVERRIDE", 1),
    ("CAP_DAC_READ_SEARCH", 2),
    ("CAP_FOWNER", 3),
    ("CAP_FSETID", 4),
    ("CAP_KILL", 5),
    ("CAP_SETGID", 6),
    ("CAP_SETUID", 7),
    ("CAP_SETPCAP", 8),
    ("CAP_LINUX_IMMUTABLE", 9),
    ("CAP_NET_BIND_SERVICE", 10),
    ("CAP_NET_BROADCAST", 11),
    ("CAP_NET_ADMIN", 12),
    ("CAP_NET_RAW", 13),
    ("CAP_IPC_LOCK", 14),
    ("CAP_IPC_OWNER", 15),
    ("CAP_SYS_MODULE", 16),
    ("CAP_SYS_RAWIO", 17),
    ("CAP_SYS_CHROOT", 18),
    ("CAP_SYS_PTRACE", 19),
    ("CAP_SYS_PACCT", 20),
    ("CAP_SYS_ADMIN", 21),
    ("CAP_SYS_BOOT", 22),
    ("CAP_SYS_NICE", 23),
    ("CAP_SYS_RESOURCE", 24),
    ("CAP_SYS_TIME", 25),
    ("CAP_SYS_TTY_CONFIG", 26),
    ("CAP_MKNOD", 27),
    ("CAP_LEASE", 28),
    ("CAP_AUDIT_WRITE", 29),
    ("CAP_AUDIT_CONTROL", 30),
    ("CAP_SETFCAP", 31),
    ("CAP_MAC_OVERRIDE", 32),
    ("CAP_MAC_ADMIN", 33),
    ("CAP_SYSLOG", 34),
    ("CAP_WAKE_ALARM", 35),
    ("CAP_BLOCK_SUSPEND", 36),
    ("CAP_AUDIT_READ", 37),
    ("CAP_PERFMON", 38),
    ("CAP_BPF", 39),
    ("CAP_CHECKPOINT_RESTORE", 40),
];

/// Bit number of a capability name.
pub fn capability_bit(name: &str) -> Option<u8> {
    CAPABILITIES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, b)| *b)
}
