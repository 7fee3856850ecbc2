//! What the language knows: hooks, the fields each hook supplies, severities.
//!
//! This is the one table the checker, the compiler and the documentation read.
//! Adding a field means adding it here with its type and the kernel source of
//! its value.

use serde::{Deserialize, Serialize};

/// A hook: the kernel event a rule is evaluated on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Hook {
    /// A successful `execve`/`execveat`, decided at the `sched_process_exec`
    /// tracepoint once the new image is mapped and before it runs user code.
    Exec,
}

impl Hook {
    /// Every hook with its name in the language.
    pub const ALL: [(Hook, &'static str); 1] = [(Hook::Exec, "exec")];

    /// Look a hook up by its name in the language.
    pub fn from_name(name: &str) -> Option<Hook> {
        Self::ALL.iter().find(|(_, n)| *n == name).map(|(h, _)| *h)
    }

    /// The hook's name in the language, bundles and events.
    pub fn as_str(self) -> &'static str {
        match self {
            Hook::Exec => "exec",
        }
    }

    /// The fields this hook supplies.
    pub fn fields(self) -> &'static [Field] {
        match self {
            Hook::Exec => &[Field::ProcessBinary],
        }
    }
}

/// The type of a field's value, which fixes its literals and operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldType {
    /// An absolute, canonical path (no `.`, `..` or empty components).
    Path,
}

/// A field an event supplies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Field {
    /// `process.binary`: canonical absolute path of the file the kernel executed
    /// (`linux_binprm.file`, resolved through dentries and mounts), whatever
    /// string was passed to `execve`. For a script, the interpreter.
    #[serde(rename = "process.binary")]
    ProcessBinary,
}

impl Field {
    /// Every field with its name in the language.
    pub const ALL: [(Field, &'static str); 1] = [(Field::ProcessBinary, "process.binary")];

    /// Look a field up by its dotted name.
    pub fn from_name(name: &str) -> Option<Field> {
        Self::ALL.iter().find(|(_, n)| *n == name).map(|(f, _)| *f)
    }

    /// The field's dotted name.
    pub fn as_str(self) -> &'static str {
        match self {
            Field::ProcessBinary => "process.binary",
        }
    }

    /// The field's value type.
    pub fn ty(self) -> FieldType {
        match self {
            Field::ProcessBinary => FieldType::Path,
        }
    }
}

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
        match self {
            Severity::Info => "info",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}
