//! Turning a bundle's exec [`HookTable`] into the contents of the exec maps.
//!
//! Pure: no kernel access, so it is unit-tested here and the loader only
//! copies the result into the maps.

use policy_compiler::bundle::{mask_words, DimensionKind, Hook, HookTable, PolicyBundle};

use crate::abi::{
    ExecConfig, Mask, PathKey, EXEC_BINARY_EXACT, EXEC_BINARY_PREFIX, EXEC_DIM_BINARY, PATH_KEY_LEN,
};

/// Name of the only exec dimension the kernel template implements.
pub const DIM_PROCESS_BINARY: &str = "process.binary";

/// The exec maps' contents for one bundle.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ExecTables {
    /// Value of `exec_config[0]`.
    pub config: ExecConfig,
    /// Entries of `exec_path_exact`: zero-padded path → mask, in bundle order.
    pub exact: Vec<(PathKey, Mask)>,
    /// Entries of `exec_path_prefix`: (prefix length in bits, zero-padded
    /// path) → mask, in bundle order.
    pub prefix: Vec<(u32, PathKey, Mask)>,
}

/// Why a bundle cannot be loaded by this runtime's exec template.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum TablesError {
    /// The bundle tests an exec field the kernel template does not implement.
    #[error("exec dimension `{field}` is not supported by this policyd (it implements `{DIM_PROCESS_BINARY}`)")]
    #[diagnostic(
        code(policyd::unsupported_dimension),
        help("upgrade policyd or recompile the bundle with a matching policyc")
    )]
    UnsupportedDimension {
        /// The dimension's field name.
        field: String,
    },
    /// The bundle uses something this runtime cannot enforce yet: another
    /// hook, a `default deny` scope, monitor mode, counters, suffix tables. Loading it would silently drop those rules.
    #[error("this policyd cannot enforce {what} yet")]
    #[diagnostic(
        code(policyd::unsupported_feature),
        help("`policyc compile` refuses such policies for this runtime; the bundle was built another way, or by a newer policyc")
    )]
    UnsupportedFeature {
        /// What, e.g. "hook `open`".
        what: String,
    },
    /// A path value does not fit a map key (the compiler never writes one).
    #[error("path `{value}` is {len} bytes, longer than the kernel key ({max} bytes)")]
    #[diagnostic(code(policyd::path_too_long))]
    PathTooLong {
        /// The value.
        value: String,
        /// Its length in bytes.
        len: usize,
        /// Longest value that fits, `PATH_KEY_LEN - 1`.
        max: usize,
    },
}

impl ExecTables {
    /// Build the exec tables of `bundle`. A bundle without exec rules gives
    /// an empty configuration (`has_terms == 0`): the program then only
    /// counts execs.
    ///
    /// # Errors
    /// [`TablesError::UnsupportedDimension`] for a dimension other than
    /// `process.binary`; [`TablesError::PathTooLong`] for a value of
    /// `PATH_KEY_LEN` bytes or more (excluded by bundle validation).
    pub fn from_bundle(bundle: &PolicyBundle) -> Result<ExecTables, TablesError> {
        let unsupported = |what: String| Err(TablesError::UnsupportedFeature { what });
        if let Some(hook) = bundle.spec.hooks.keys().find(|h| **h != Hook::Exec) {
            return unsupported(format!("hook `{}`", hook.as_str()));
        }
        if !bundle.spec.scopes.is_empty() {
            return unsupported("`default deny` scopes".into());
        }
        if let Some(p) = bundle
            .spec
            .policies
            .iter()
            .find(|p| p.mode != policy_compiler::bundle::Mode::Enforce)
        {
            return unsupported(format!("`mode = monitor` (policy `{}`)", p.name));
        }
        match bundle.spec.hooks.get(&Hook::Exec) {
            Some(table) => Self::from_hook_table(table),
            None => Ok(ExecTables::default()),
        }
    }

    /// Build the exec tables from the exec hook's table; see [`ExecTables::from_bundle`].
    ///
    /// # Errors
    /// As [`ExecTables::from_bundle`].
    pub fn from_hook_table(table: &HookTable) -> Result<ExecTables, TablesError> {
        let v = &table.verdicts;
        if !v.default_deny.is_empty() || !v.monitor.is_empty() || !v.count.is_empty() {
            return Err(TablesError::UnsupportedFeature {
                what: "default-deny, monitor or counter masks".into(),
            });
        }
        let all_terms: Vec<u32> = table.terms.iter().map(|t| t.id).collect();
        let mut config = ExecConfig {
            terms: mask_words(&all_terms),
            deny: mask_words(&table.verdicts.deny),
            kill: mask_words(&table.verdicts.kill),
            allow: mask_words(&table.verdicts.allow),
            audit: mask_words(&table.verdicts.audit),
            has_terms: u32::from(!table.terms.is_empty()),
            ..ExecConfig::default()
        };
        let mut exact = Vec::new();
        let mut prefix = Vec::new();
        for (field, dim) in &table.dimensions {
            if field != DIM_PROCESS_BINARY || dim.kind != DimensionKind::Path {
                return Err(TablesError::UnsupportedDimension {
                    field: field.clone(),
                });
            }
            if !dim.suffix.is_empty() || dim.suffix_default.is_some() || dim.absent.is_some() {
                return Err(TablesError::UnsupportedFeature {
                    what: format!("suffix tables of `{field}`"),
                });
            }
            config.dims |= EXEC_DIM_BINARY;
            config.binary_default = mask_words(&dim.default);
            for entry in &dim.exact {
                exact.push((path_key(&entry.value)?, mask_words(&entry.terms)));
            }
            for entry in &dim.prefix {
                let key = path_key(&entry.value)?;
                prefix.push((8 * entry.value.len() as u32, key, mask_words(&entry.terms)));
            }
        }
        if !exact.is_empty() {
            config.binary_tables |= EXEC_BINARY_EXACT;
        }
        if !prefix.is_empty() {
            config.binary_tables |= EXEC_BINARY_PREFIX;
        }
        Ok(ExecTables {
            config,
            exact,
            prefix,
        })
    }

    /// `max_entries` for `exec_path_exact`: the entry count, at least 1 (the
    /// kernel refuses empty hash maps).
    pub fn exact_capacity(&self) -> u32 {
        (self.exact.len() as u32).max(1)
    }

    /// `max_entries` for `exec_path_prefix`: the entry count, at least 1.
    pub fn prefix_capacity(&self) -> u32 {
        (self.prefix.len() as u32).max(1)
    }
}

/// `value` as a zero-padded map key; at most `PATH_KEY_LEN - 1` bytes so that
/// a key always ends in NUL.
///
/// # Errors
/// [`TablesError::PathTooLong`] when `value` has `PATH_KEY_LEN` bytes or more.
pub fn path_key(value: &str) -> Result<PathKey, TablesError> {
    let bytes = value.as_bytes();
    if bytes.len() >= PATH_KEY_LEN {
        return Err(TablesError::PathTooLong {
            value: value.to_string(),
            len: bytes.len(),
            max: PATH_KEY_LEN - 1,
        });
    }
    let mut key = [0u8; PATH_KEY_LEN];
    key[..bytes.len()].copy_from_slice(bytes);
    Ok(key)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use policy_compiler::bundle::{Dimension, Entry, Term, VerdictMasks};

    use super::*;

    /// Bundles `policyc compile` refuses for this runtime, built with the
    /// evaluation-only compiler: each must be refused here too.
    #[test]
    fn what_the_kernel_cannot_enforce_is_refused() {
        let cases = [
            (
                "rule r on open { when file.path == \"/etc/shadow\" deny }",
                "hook `open`",
            ),
            (
                "default deny exec when process.binary startswith \"/tmp/\"",
                "`default deny` scopes",
            ),
            (
                "rule r on exec { when process.binary endswith \"/nc\" deny }",
                "suffix tables of `process.binary`",
            ),
            (
                "rule r on exec { when process.binary == \"/a\" count \"c\" }",
                "default-deny, monitor or counter masks",
            ),
        ];
        for (rule, what) in cases {
            let text = format!("policy p {{}}\n{rule}\n");
            let sources = [policy_compiler::SourceFile {
                name: "p.policy".into(),
                text,
            }];
            let (compiled, _) =
                policy_compiler::compile::compile_for_evaluation(&sources, "p").unwrap();
            let err = ExecTables::from_bundle(&compiled.bundle).unwrap_err();
            assert!(
                matches!(&err, TablesError::UnsupportedFeature { what: w } if w == what),
                "{rule}: {err}"
            );
        }
    }

    /// `rate` is applied by policyd to the export (see `crate::throttle`):
    /// the kernel tables are those of the same rule without it.
    #[test]
    fn a_rate_is_loaded() {
        let tables = |rule: &str| {
            let sources = [policy_compiler::SourceFile {
                name: "p.policy".into(),
                text: format!("policy p {{}}\n{rule}\n"),
            }];
            let compiled = policy_compiler::compile::compile(&sources, "p").unwrap();
            ExecTables::from_bundle(&compiled.bundle).unwrap()
        };
        assert_eq!(
            tables("rule r on exec { when process.binary == \"/a\" audit rate 1 per 1m }"),
            tables("rule r on exec { when process.binary == \"/a\" audit }"),
        );
    }

    fn table() -> HookTable {
        let mut dimensions = BTreeMap::new();
        dimensions.insert(
            DIM_PROCESS_BINARY.to_string(),
            Dimension {
                kind: DimensionKind::Path,
                exact: vec![
                    Entry {
                        value: "/bin/sudo".into(),
                        terms: vec![0],
                    },
                    Entry {
                        value: "/usr/bin/sudo".into(),
                        terms: vec![0, 2],
                    },
                ],
                prefix: vec![Entry {
                    value: "/tmp/".into(),
                    terms: vec![1, 2],
                }],
                default: vec![2],
                ..Dimension::default()
            },
        );
        HookTable {
            terms: vec![
                Term {
                    id: 0,
                    rule: 0,
                    scope: false,
                },
                Term {
                    id: 1,
                    rule: 1,
                    scope: false,
                },
                Term {
                    id: 2,
                    rule: 2,
                    scope: false,
                },
            ],
            dimensions,
            verdicts: VerdictMasks {
                deny: vec![1],
                kill: vec![],
                allow: vec![],
                audit: vec![0, 1],
                ..VerdictMasks::default()
            },
        }
    }

    #[test]
    fn fills_config_and_entries() {
        let t = ExecTables::from_hook_table(&table()).unwrap();
        assert_eq!(t.config.terms, [0b111, 0, 0, 0]);
        assert_eq!(t.config.binary_default, [0b100, 0, 0, 0]);
        assert_eq!(t.config.deny, [0b010, 0, 0, 0]);
        assert_eq!(t.config.audit, [0b011, 0, 0, 0]);
        assert_eq!(t.config.kill, [0; 4]);
        assert_eq!(t.config.has_terms, 1);
        assert_eq!(t.config.dims, EXEC_DIM_BINARY);
        assert_eq!(
            t.config.binary_tables,
            EXEC_BINARY_EXACT | EXEC_BINARY_PREFIX
        );

        assert_eq!(t.exact.len(), 2);
        assert_eq!(&t.exact[1].0[..13], b"/usr/bin/sudo");
        assert!(t.exact[1].0[13..].iter().all(|&b| b == 0));
        assert_eq!(t.exact[1].1, [0b101, 0, 0, 0]);

        assert_eq!(t.prefix.len(), 1);
        assert_eq!(t.prefix[0].0, 5 * 8);
        assert_eq!(&t.prefix[0].1[..5], b"/tmp/");
        assert_eq!(t.prefix[0].2, [0b110, 0, 0, 0]);
        assert_eq!((t.exact_capacity(), t.prefix_capacity()), (2, 1));
    }

    #[test]
    fn high_term_ids_land_in_later_words() {
        let mut tab = table();
        tab.verdicts.audit = vec![0, 64, 200];
        let t = ExecTables::from_hook_table(&tab).unwrap();
        assert_eq!(t.config.audit, [1, 1, 0, 1 << (200 - 192)]);
    }

    #[test]
    fn empty_hook_only_counts() {
        let tab = HookTable {
            terms: vec![],
            dimensions: BTreeMap::new(),
            verdicts: VerdictMasks::default(),
        };
        let t = ExecTables::from_hook_table(&tab).unwrap();
        assert_eq!(t.config.has_terms, 0);
        assert_eq!(t.config.dims, 0);
        assert_eq!((t.exact_capacity(), t.prefix_capacity()), (1, 1));
    }

    #[test]
    fn unknown_dimension_is_refused() {
        let mut tab = table();
        let dim = tab.dimensions.remove(DIM_PROCESS_BINARY).unwrap();
        tab.dimensions.insert("process.name".into(), dim);
        let err = ExecTables::from_hook_table(&tab).unwrap_err();
        assert!(
            matches!(err, TablesError::UnsupportedDimension { ref field } if field == "process.name")
        );
        assert!(err.to_string().contains("process.name"));
    }

    #[test]
    fn path_key_bounds() {
        assert!(path_key(&format!("/{}", "a".repeat(254))).is_ok());
        let err = path_key(&format!("/{}", "a".repeat(255))).unwrap_err();
        assert!(matches!(
            err,
            TablesError::PathTooLong {
                len: 256,
                max: 255,
                ..
            }
        ));
    }
}
