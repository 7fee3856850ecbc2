//! The `PolicyBundle` document: what `policyc compile` writes and `policyd` loads.
//!
//! A bundle is a Kubernetes resource (`apiVersion: policyc.dev/v1alpha1`,
//! `kind: PolicyBundle`) whose `spec` holds the rule table and, per hook, the
//! classification tables the kernel runs (see `docs/bundle.md`). Term sets are
//! stored as sorted lists of term ids rather than bit words so that the file is
//! readable and diffable; the runtime expands them to [`MASK_WORDS`] `u64`
//! words when it fills the maps.
//!
//! Serialisation is deterministic: every collection is a `Vec` in a defined
//! order or a `BTreeMap`, so the same input gives byte-identical YAML. The
//! `digest` is the SHA-256 of the canonical JSON of the bundle's name and its
//! spec without the digest field, so any edit to a bundle after compilation
//! is detected on load.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::limits::{MASK_WORDS, MAX_PATH_LITERAL_LEN, MAX_TERMS_PER_HOOK};

/// `apiVersion` of every bundle this compiler writes and this runtime accepts.
pub const API_VERSION: &str = "policyc.dev/v1alpha1";
/// `kind` of the bundle resource.
pub const KIND: &str = "PolicyBundle";
/// Version of the `spec` layout. A runtime refuses any other value.
pub const SCHEMA_VERSION: u32 = 1;

/// A whole bundle document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PolicyBundle {
    /// Always [`API_VERSION`].
    pub api_version: String,
    /// Always [`KIND`].
    pub kind: String,
    /// Kubernetes object metadata.
    pub metadata: Metadata,
    /// The compiled policy.
    pub spec: BundleSpec,
}

/// Kubernetes object metadata; only the name is set by the compiler.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Metadata {
    /// Object name, a DNS-1123 subdomain (lowercase alphanumerics, `-` and `.`).
    pub name: String,
}

/// The compiled content of a bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BundleSpec {
    /// Layout version, [`SCHEMA_VERSION`].
    pub schema_version: u32,
    /// Name and version of the compiler that wrote the bundle, e.g. `policyc 0.1.0`.
    pub compiler: String,
    /// `sha256:` followed by 64 lowercase hex digits: the SHA-256 of the canonical
    /// JSON of every other spec field (see [`BundleSpec::compute_digest`]).
    pub digest: String,
    /// The policies (source files) compiled into this bundle, in input order.
    pub policies: Vec<PolicyInfo>,
    /// Every rule, indexed by [`RuleEntry::id`] (ids are `0..rules.len()`).
    pub rules: Vec<RuleEntry>,
    /// Classification tables per hook; hooks without rules are absent.
    pub hooks: BTreeMap<Hook, HookTable>,
}

/// One compiled policy (the `policy NAME { … }` header of a source file).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PolicyInfo {
    /// Policy name from the header.
    pub name: String,
    /// `description` from the header, empty when absent.
    pub description: String,
    /// Source file the policy came from, as given to the compiler.
    pub source: String,
}

pub use policy_dsl::schema::{Hook, Severity};

/// What a rule does to the event it matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Explicitly allowed (an allow never overrides a deny).
    Allow,
    /// Refused; on hooks that cannot return an error this is a kill.
    Deny,
    /// The acting process is killed with `SIGKILL`.
    Kill,
}

impl Verdict {
    /// The verdict's name as written in events and bundles.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Allow => "allow",
            Verdict::Deny => "deny",
            Verdict::Kill => "kill",
        }
    }
}

/// One rule of the rule table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RuleEntry {
    /// Index of this rule in [`BundleSpec::rules`].
    pub id: u32,
    /// Rule name from the source.
    pub name: String,
    /// Name of the policy the rule belongs to.
    pub policy: String,
    /// Hook the rule is evaluated on.
    pub hook: Hook,
    /// The rule's verdict, absent for a rule that only audits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verdict: Option<Verdict>,
    /// Whether a match is recorded as an audit event.
    pub audit: bool,
    /// Audit severity; `info` when the source gives none.
    pub severity: Severity,
    /// Audit message from the source, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Where the rule is written.
    pub source: SourceLocation,
}

/// A place in a source file, 1-based.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SourceLocation {
    /// Source file as given to the compiler.
    pub file: String,
    /// 1-based line.
    pub line: u32,
    /// 1-based column, in characters.
    pub column: u32,
}

/// A sorted, duplicate-free list of term ids (bit positions in a term mask).
pub type TermSet = Vec<u32>;

/// The classification tables of one hook.
///
/// For an event, each dimension yields a term set (see [`Dimension`]); the
/// intersection over all dimensions is the set of terms that match. A rule
/// matches when any of its terms does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HookTable {
    /// Terms, indexed by id (`0..terms.len()`, at most [`MAX_TERMS_PER_HOOK`]).
    pub terms: Vec<Term>,
    /// One table per field the hook's rules test, keyed by field name.
    pub dimensions: BTreeMap<String, Dimension>,
    /// Terms whose match yields each outcome.
    pub verdicts: VerdictMasks,
}

/// One term: a conjunction of field tests taken from a rule's condition in
/// disjunctive normal form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Term {
    /// Bit position of the term in the hook's masks.
    pub id: u32,
    /// [`RuleEntry::id`] of the rule the term belongs to.
    pub rule: u32,
}

/// Per-outcome term sets of a hook.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VerdictMasks {
    /// Terms of `deny` rules.
    pub deny: TermSet,
    /// Terms of `kill` rules.
    pub kill: TermSet,
    /// Terms of `allow` rules.
    pub allow: TermSet,
    /// Terms of rules that `audit`.
    pub audit: TermSet,
}

/// The kind of value a dimension classifies, which fixes its kernel tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DimensionKind {
    /// An absolute path: exact entries in a hash map keyed by the zero-padded
    /// path, prefix entries in an LPM trie over the path bytes.
    Path,
}

/// The table of one dimension (field) of a hook.
///
/// Lookup for a value `v`: if `v` equals an `exact` entry, that entry's terms;
/// else if some `prefix` entries are prefixes of `v`, the terms of the longest;
/// else `default`. Each entry's set is complete (already closed over every
/// shorter prefix and every negative test), so one lookup answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Dimension {
    /// Value kind.
    pub kind: DimensionKind,
    /// Exact-value entries, sorted by value.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exact: Vec<Entry>,
    /// Prefix entries, sorted by value.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub prefix: Vec<Entry>,
    /// Terms satisfied by a value matching no entry.
    pub default: TermSet,
}

/// A value and the terms it satisfies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Entry {
    /// The value (for paths: absolute, at most [`MAX_PATH_LITERAL_LEN`] bytes).
    pub value: String,
    /// Terms satisfied by this value.
    pub terms: TermSet,
}

/// Why a bundle was refused.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum BundleError {
    /// The text is not a YAML document of the bundle's shape.
    #[error("bundle is not valid YAML of kind `PolicyBundle`: {message}")]
    #[diagnostic(code(bundle::malformed), help("regenerate it with `policyc compile`"))]
    Malformed {
        /// The parser's message, with line and column.
        message: String,
    },
    /// `apiVersion`, `kind` or `schemaVersion` is not one this build understands.
    #[error("unsupported bundle version: {found}")]
    #[diagnostic(
        code(bundle::unsupported_version),
        help("this build reads `apiVersion: {API_VERSION}`, `kind: {KIND}`, `schemaVersion: {SCHEMA_VERSION}`")
    )]
    UnsupportedVersion {
        /// What the bundle declares.
        found: String,
    },
    /// The stored digest does not match the content.
    #[error("bundle digest mismatch: declared `{declared}`, content hashes to `{actual}`")]
    #[diagnostic(
        code(bundle::digest_mismatch),
        help("the bundle was edited after compilation; recompile it from source")
    )]
    DigestMismatch {
        /// `spec.digest` as written.
        declared: String,
        /// Digest of the content as read.
        actual: String,
    },
    /// The content breaks an invariant the compiler guarantees.
    #[error("invalid bundle: {message}")]
    #[diagnostic(code(bundle::invalid), help("regenerate it with `policyc compile`"))]
    Invalid {
        /// Which invariant, and where.
        message: String,
    },
}

/// The fields the digest covers: the bundle's name and every spec field but
/// the digest itself.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct DigestInput<'a> {
    name: &'a str,
    schema_version: u32,
    compiler: &'a str,
    policies: &'a [PolicyInfo],
    rules: &'a [RuleEntry],
    hooks: &'a BTreeMap<Hook, HookTable>,
}

impl BundleSpec {
    /// SHA-256 of the canonical JSON of the bundle's `name` (`metadata.name`)
    /// and every spec field except `digest`, as `sha256:<64 hex digits>`.
    pub fn compute_digest(&self, name: &str) -> String {
        let input = DigestInput {
            name,
            schema_version: self.schema_version,
            compiler: &self.compiler,
            policies: &self.policies,
            rules: &self.rules,
            hooks: &self.hooks,
        };
        // Serialising plain structs, vectors and string-keyed maps cannot fail.
        let json = serde_json::to_vec(&input).expect("bundle content serialises to JSON");
        format!("sha256:{}", hex::encode(Sha256::digest(&json)))
    }
}

impl PolicyBundle {
    /// Render the bundle as YAML. Deterministic: same bundle, same bytes.
    pub fn to_yaml(&self) -> String {
        serde_yaml::to_string(self).expect("bundle serialises to YAML")
    }

    /// Parse and validate a bundle.
    ///
    /// # Errors
    /// [`BundleError::Malformed`] when the YAML does not have the bundle's shape,
    /// [`BundleError::UnsupportedVersion`] for another `apiVersion`, `kind` or
    /// `schemaVersion`, [`BundleError::DigestMismatch`] when the content was
    /// changed after compilation, [`BundleError::Invalid`] when an invariant
    /// (dense ids, term references, kernel limits) does not hold.
    pub fn from_yaml(text: &str) -> Result<PolicyBundle, BundleError> {
        // Check the header first so that a future schema is reported as a
        // version problem, not as a shape error.
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Header {
            api_version: Option<String>,
            kind: Option<String>,
            spec: Option<SpecHeader>,
        }
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct SpecHeader {
            schema_version: Option<u32>,
        }
        if text.trim().is_empty() {
            return Err(BundleError::Malformed { message: "the file is empty".into() });
        }
        let header: Header = serde_yaml::from_str(text).map_err(|e| BundleError::Malformed {
            message: e.to_string(),
        })?;
        let api = header.api_version.unwrap_or_default();
        let kind = header.kind.unwrap_or_default();
        let schema = header.spec.and_then(|s| s.schema_version);
        if api != API_VERSION || kind != KIND || schema != Some(SCHEMA_VERSION) {
            return Err(BundleError::UnsupportedVersion {
                found: format!(
                    "apiVersion `{api}`, kind `{kind}`, schemaVersion `{}`",
                    schema
                        .map(|v| v.to_string())
                        .unwrap_or_else(|| "missing".into())
                ),
            });
        }
        let bundle: PolicyBundle =
            serde_yaml::from_str(text).map_err(|e| BundleError::Malformed {
                message: e.to_string(),
            })?;
        bundle.validate()?;
        Ok(bundle)
    }

    /// Check the invariants the compiler guarantees and the kernel relies on.
    ///
    /// # Errors
    /// See [`PolicyBundle::from_yaml`].
    pub fn validate(&self) -> Result<(), BundleError> {
        let actual = self.spec.compute_digest(&self.metadata.name);
        if actual != self.spec.digest {
            return Err(BundleError::DigestMismatch {
                declared: self.spec.digest.clone(),
                actual,
            });
        }
        let invalid = |message: String| Err(BundleError::Invalid { message });
        for (i, rule) in self.spec.rules.iter().enumerate() {
            if !self.spec.policies.iter().any(|p| p.name == rule.policy) {
                return invalid(format!("rule `{}` belongs to policy `{}`, which the bundle does not list", rule.name, rule.policy));
            }
            if rule.id as usize != i {
                return invalid(format!(
                    "rule `{}` has id {} at index {i}",
                    rule.name, rule.id
                ));
            }
        }
        for (hook, table) in &self.spec.hooks {
            let hook = hook.as_str();
            if table.terms.len() > MAX_TERMS_PER_HOOK {
                return invalid(format!(
                    "hook `{hook}` has {} terms, the kernel holds at most {MAX_TERMS_PER_HOOK}",
                    table.terms.len()
                ));
            }
            for (i, term) in table.terms.iter().enumerate() {
                if term.id as usize != i {
                    return invalid(format!("hook `{hook}`: term {} at index {i}", term.id));
                }
                match self.spec.rules.get(term.rule as usize) {
                    Some(rule) if rule.hook.as_str() == hook => {}
                    _ => return invalid(format!(
                        "hook `{hook}`: term {i} refers to rule {}, which is not an `{hook}` rule",
                        term.rule
                    )),
                }
            }
            let n = table.terms.len() as u32;
            let check_set = |what: &str, set: &TermSet| -> Result<(), BundleError> {
                if set.windows(2).any(|w| w[0] >= w[1]) || set.iter().any(|&t| t >= n) {
                    return Err(BundleError::Invalid {
                        message: format!(
                            "hook `{hook}`: {what} is not a sorted set of term ids below {n}"
                        ),
                    });
                }
                Ok(())
            };
            let v = &table.verdicts;
            check_set("verdicts.deny", &v.deny)?;
            check_set("verdicts.kill", &v.kill)?;
            check_set("verdicts.allow", &v.allow)?;
            check_set("verdicts.audit", &v.audit)?;
            for (field, dim) in &table.dimensions {
                check_set(&format!("dimension `{field}` default"), &dim.default)?;
                for entry in dim.exact.iter().chain(&dim.prefix) {
                    check_set(
                        &format!("dimension `{field}` entry `{}`", entry.value),
                        &entry.terms,
                    )?;
                    match dim.kind {
                        DimensionKind::Path => {
                            if !entry.value.starts_with('/')
                                || entry.value.len() > MAX_PATH_LITERAL_LEN
                                || entry.value.contains('\0')
                                || entry.value.contains("//")
                                || entry.value.split('/').any(|c| c == "." || c == "..")
                            {
                                return invalid(format!(
                                    "dimension `{field}`: `{}` is not an absolute path of at most {MAX_PATH_LITERAL_LEN} bytes",
                                    entry.value
                                ));
                            }
                        }
                    }
                }
                for (what, list) in [("exact", &dim.exact), ("prefix", &dim.prefix)] {
                    if list.windows(2).any(|w| w[0].value >= w[1].value) {
                        return invalid(format!(
                            "dimension `{field}`: {what} entries are not sorted and unique"
                        ));
                    }
                }
            }
        }
        Ok(())
    }
}

/// Expand a term set into the kernel's mask words: bit `t % 64` of word `t / 64`.
///
/// Term ids are below [`MAX_TERMS_PER_HOOK`] in a validated bundle; larger ids
/// are a caller bug and panic.
pub fn mask_words(set: &TermSet) -> [u64; MASK_WORDS] {
    let mut words = [0u64; MASK_WORDS];
    for &t in set {
        words[t as usize / 64] |= 1u64 << (t % 64);
    }
    words
}

/// The term ids set in `words`, ascending: the inverse of [`mask_words`].
pub fn mask_terms(words: &[u64; MASK_WORDS]) -> TermSet {
    let mut out = Vec::new();
    for (w, word) in words.iter().enumerate() {
        for b in 0..64 {
            if word & (1u64 << b) != 0 {
                out.push((w * 64 + b) as u32);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mask_round_trip() {
        let set = vec![0, 1, 63, 64, 200, 255];
        let words = mask_words(&set);
        assert_eq!(words[0], 0x8000_0000_0000_0003);
        assert_eq!(words[1], 1);
        assert_eq!(mask_terms(&words), set);
    }
}
