//! What a target kernel can do per hook, as `policyd probe --format json`
//! reports it, and the diagnostics `policyc check --kernel-features FILE`
//! derives from it (`policyc::deny_is_kill`, `policyc::deny_not_enforced`).
//!
//! Pure: the CLI reads the file, [`parse`] turns its text into
//! [`KernelFeatures`], [`diagnostics`] checks policies against it. The
//! runtime (`runtime/src/probe.rs`) writes the same types, so the file
//! format has one definition.

use miette::SourceSpan;
use policy_dsl::ast::Action;
use policy_dsl::checked::Policy;
pub use policy_dsl::schema::Hook;
use serde::{Deserialize, Serialize};

use crate::compile::Located;

/// The `format` of a kernel features document.
pub const FORMAT: &str = "policyd.kernel-features/v1";

/// How a hook is enforced on a kernel, strongest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mechanism {
    /// A BPF-LSM program refuses the action with `-EPERM`.
    Lsm,
    /// A cgroup `sock_addr` program (connect4/6, bind4/6) refuses with `-EPERM`.
    CgroupSockAddr,
    /// A tracepoint program sends SIGKILL: the process is killed, the action
    /// itself is not refused.
    TracepointKill,
    /// A tracepoint program can observe but not stop: audit only.
    Audit,
    /// Nothing loads: the hook can neither be enforced nor audited.
    Unavailable,
}

impl Mechanism {
    /// Its name in the JSON document.
    pub fn as_str(self) -> &'static str {
        match self {
            Mechanism::Lsm => "lsm",
            Mechanism::CgroupSockAddr => "cgroup_sock_addr",
            Mechanism::TracepointKill => "tracepoint_kill",
            Mechanism::Audit => "audit",
            Mechanism::Unavailable => "unavailable",
        }
    }

    /// What a `deny` becomes: `can deny`, `can only kill`, `audit only`, `none`.
    pub fn capability(self) -> &'static str {
        match self {
            Mechanism::Lsm | Mechanism::CgroupSockAddr => "can deny",
            Mechanism::TracepointKill => "can only kill",
            Mechanism::Audit => "audit only",
            Mechanism::Unavailable => "none",
        }
    }
}

/// One probe: a tiny program loaded (and maybe attached) by `policyd probe`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeOutcome {
    /// `SECTION` or `SECTION@attach-point`, e.g. `lsm/bprm_check_security`.
    pub name: String,
    /// Whether the kernel accepted the program (`BPF_PROG_LOAD`).
    pub loaded: bool,
    /// Whether attaching worked; `None` when not tried.
    pub attached: Option<bool>,
    /// The errno of the failing step, if any.
    pub errno: Option<i32>,
    /// What failed, in words (`EPERM: Operation not permitted`, …).
    pub error: Option<String>,
}

impl ProbeOutcome {
    /// Whether the probe succeeded: loaded, attached if that was tried, and
    /// no other condition failed (`error` is `None`).
    pub fn ok(&self) -> bool {
        self.loaded && self.attached != Some(false) && self.error.is_none()
    }
}

/// A stronger mechanism that was not available for a hook, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refusal {
    /// The mechanism.
    pub mechanism: Mechanism,
    /// The probe that failed.
    pub probe: String,
    /// Its errno, if the kernel gave one.
    pub errno: Option<i32>,
    /// What failed.
    pub error: String,
}

/// The chosen mechanism of one hook.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HookFeatures {
    /// The hook's name in the language (`exec`, `connect`, …).
    pub hook: String,
    /// The strongest mechanism that works.
    pub mechanism: Mechanism,
    /// The program (section and attach point) it uses, if any.
    pub program: Option<String>,
    /// [`Mechanism::capability`], for readers.
    #[serde(default)]
    pub capability: String,
    /// Stronger mechanisms that were refused.
    #[serde(default)]
    pub refused: Vec<Refusal>,
}

/// A kernel features document (`policyd probe --format json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KernelFeatures {
    /// [`FORMAT`].
    pub format: String,
    /// `uname -r` of the probed kernel.
    #[serde(default)]
    pub kernel: String,
    /// Active LSMs (`/sys/kernel/security/lsm`); `None` when unreadable.
    #[serde(default)]
    pub lsm: Option<Vec<String>>,
    /// Every probe.
    #[serde(default)]
    pub probes: Vec<ProbeOutcome>,
    /// The mechanism per hook.
    pub hooks: Vec<HookFeatures>,
}

impl KernelFeatures {
    /// The mechanism of `hook`; `None` when the document does not list it
    /// (then nothing is assumed and nothing is reported).
    pub fn mechanism(&self, hook: Hook) -> Option<&HookFeatures> {
        self.hooks.iter().find(|h| h.hook == hook.as_str())
    }

    /// Pretty JSON, with a final newline.
    pub fn to_json(&self) -> String {
        let mut s = serde_json::to_string_pretty(self).expect("serialisable");
        s.push('\n');
        s
    }
}

/// Parse a kernel features document.
///
/// # Errors
/// Not JSON of this shape, another `format`, an unknown hook or a hook
/// listed twice.
pub fn parse(text: &str) -> Result<KernelFeatures, String> {
    let f: KernelFeatures =
        serde_json::from_str(text).map_err(|e| format!("not a kernel features document: {e}"))?;
    if f.format != FORMAT {
        return Err(format!(
            "kernel features format `{}` is not supported (expected `{FORMAT}`)",
            f.format
        ));
    }
    let mut seen = std::collections::BTreeSet::new();
    for h in &f.hooks {
        if Hook::from_name(&h.hook).is_none() {
            return Err(format!("kernel features: unknown hook `{}`", h.hook));
        }
        if !seen.insert(h.hook.as_str()) {
            return Err(format!(
                "kernel features: hook `{}` is listed twice",
                h.hook
            ));
        }
    }
    Ok(f)
}

/// A `deny` whose hook can only kill on the target (warning).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, miette::Diagnostic)]
#[error("`deny` on `{hook}` can only kill on this kernel: the process is killed, the action is not refused")]
#[diagnostic(
    code(policyc::deny_is_kill),
    severity(Warning),
    help("the target enforces `{hook}` with {program} + SIGKILL ({refused}); write `kill` to say so, or run on a kernel with BPF-LSM")
)]
pub struct DenyIsKill {
    /// The hook.
    pub hook: String,
    /// The program used instead.
    pub program: String,
    /// What was refused, e.g. `lsm: EPERM`.
    pub refused: String,
    /// The rule's name (or the `default deny` declaration).
    #[label("this deny kills the process")]
    pub span: SourceSpan,
}

/// A `deny` or `kill` on a hook the target can only audit, or not observe
/// at all (error: it would not be enforced).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, miette::Diagnostic)]
#[error("`{action}` on `{hook}` is not enforced on this kernel ({capability})")]
#[diagnostic(
    code(policyc::deny_not_enforced),
    help("the target can only {what} `{hook}` ({refused}); make the rule `audit`, or target a kernel that can enforce `{hook}`")
)]
pub struct DenyNotEnforced {
    /// `deny` or `kill`.
    pub action: String,
    /// The hook.
    pub hook: String,
    /// [`Mechanism::capability`].
    pub capability: String,
    /// `audit` or `ignore`.
    pub what: String,
    /// What was refused.
    pub refused: String,
    /// The rule's name (or the `default deny` declaration).
    #[label("would not be enforced")]
    pub span: SourceSpan,
}

fn refused_text(h: &HookFeatures) -> String {
    if h.refused.is_empty() {
        return "nothing stronger was probed".into();
    }
    h.refused
        .iter()
        .map(|r| match r.errno {
            Some(e) => format!("{} refused: {} (errno {e})", r.mechanism.as_str(), r.error),
            None => format!("{} refused: {}", r.mechanism.as_str(), r.error),
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// The diagnostics of `policies` (policy `i` is file `i`) on a target with
/// `features`: [`DenyIsKill`] for each `deny` rule or `default deny` on a
/// hook that can only kill, [`DenyNotEnforced`] for each `deny`/`kill` on a
/// hook that is audit-only or unavailable.
pub fn diagnostics(policies: &[Policy], features: &KernelFeatures) -> Vec<Located> {
    let mut out = Vec::new();
    for (file, p) in policies.iter().enumerate() {
        let rules = p.rules.iter().filter_map(|r| match r.action {
            Some(a @ (Action::Deny | Action::Kill)) => Some((r.hook, a, &r.name_span)),
            _ => None,
        });
        let defaults = p.defaults.iter().map(|d| (d.hook, Action::Deny, &d.span));
        for (hook, action, span) in rules.chain(defaults) {
            let Some(h) = features.mechanism(hook) else {
                continue;
            };
            let span = SourceSpan::from(span.start..span.end);
            let diagnostic = match (h.mechanism, action) {
                (Mechanism::TracepointKill, Action::Deny) => DenyIsKill {
                    hook: hook.as_str().into(),
                    program: h.program.clone().unwrap_or_else(|| "a tracepoint".into()),
                    refused: refused_text(h),
                    span,
                }
                .into(),
                (Mechanism::Audit | Mechanism::Unavailable, _) => DenyNotEnforced {
                    action: action.as_str().into(),
                    hook: hook.as_str().into(),
                    capability: h.mechanism.capability().into(),
                    what: if h.mechanism == Mechanism::Audit {
                        "audit"
                    } else {
                        "ignore"
                    }
                    .into(),
                    refused: refused_text(h),
                    span,
                }
                .into(),
                _ => continue,
            };
            out.push(Located {
                file: Some(file),
                diagnostic,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(mechanism: &str) -> String {
        format!(
            r#"{{"format":"{FORMAT}","kernel":"6.18.0","lsm":null,"probes":[
              {{"name":"lsm/bprm_check_security","loaded":false,"attached":null,"errno":1,"error":"EPERM"}}],
              "hooks":[{{"hook":"exec","mechanism":"{mechanism}","program":"raw_tracepoint/sched_process_exec",
              "capability":"can only kill","refused":[{{"mechanism":"lsm","probe":"lsm/bprm_check_security","errno":1,"error":"EPERM"}}]}}]}}"#
        )
    }

    #[test]
    fn parses_what_it_writes() {
        let f = parse(&doc("tracepoint_kill")).unwrap();
        assert_eq!(f.hooks[0].mechanism, Mechanism::TracepointKill);
        assert_eq!(f.probes[0].errno, Some(1));
        assert!(!f.probes[0].ok());
        assert_eq!(parse(&f.to_json()).unwrap(), f);
        assert_eq!(
            f.mechanism(Hook::Exec).unwrap().refused[0].mechanism,
            Mechanism::Lsm
        );
        assert!(f.mechanism(Hook::Open).is_none());
    }

    #[test]
    fn rejects_bad_documents() {
        assert!(parse("{")
            .unwrap_err()
            .contains("not a kernel features document"));
        assert!(parse(&doc("teleport")).is_err());
        let other = doc("lsm").replace(FORMAT, "policyd.kernel-features/v9");
        assert!(parse(&other).unwrap_err().contains("not supported"));
        let unknown = doc("lsm").replace(r#""hook":"exec""#, r#""hook":"exce""#);
        assert!(parse(&unknown).unwrap_err().contains("unknown hook `exce`"));
        let f = parse(&doc("lsm")).unwrap();
        let mut twice = f.clone();
        twice.hooks.push(f.hooks[0].clone());
        assert!(parse(&twice.to_json()).unwrap_err().contains("twice"));
    }

    fn policies(src: &str) -> Vec<Policy> {
        let sources = [crate::compile::SourceFile {
            name: "t.policy".into(),
            text: src.into(),
        }];
        crate::compile::check(&sources).0.expect("checks")
    }

    fn codes(src: &str, mechanism: &str) -> Vec<String> {
        let f = parse(&doc(mechanism)).unwrap();
        diagnostics(&policies(src), &f)
            .iter()
            .map(|d| miette::Diagnostic::code(&d.diagnostic).unwrap().to_string())
            .collect()
    }

    const DENY: &str = "policy p {}\nrule d on exec { when process.binary == \"/usr/bin/a\" deny }\nrule k on exec { when process.binary == \"/usr/bin/b\" kill }\nrule a on exec { when process.binary == \"/usr/bin/c\" audit }\nrule o on ptrace { when process.binary == \"/usr/bin/gdb\" deny }\n";

    #[test]
    fn deny_on_kill_only_hook_warns() {
        assert_eq!(codes(DENY, "tracepoint_kill"), ["policyc::deny_is_kill"]);
    }

    #[test]
    fn deny_and_kill_on_audit_only_hook_are_errors() {
        assert_eq!(
            codes(DENY, "audit"),
            ["policyc::deny_not_enforced", "policyc::deny_not_enforced"]
        );
        assert_eq!(codes(DENY, "unavailable").len(), 2);
    }

    #[test]
    fn enforcing_mechanisms_say_nothing() {
        assert!(codes(DENY, "lsm").is_empty());
        assert!(codes(DENY, "cgroup_sock_addr").is_empty());
    }
}
