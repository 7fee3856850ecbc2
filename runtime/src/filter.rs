//! Export filters: `--export-allow FILTER` and `--export-deny FILTER`, as
//! Tetragon's export allow and deny lists.
//!
//! A filter is a JSON object whose fields are lists of alternatives:
//! `{"verdict": ["kill"], "binary_prefix": ["/tmp/"]}`. An event matches a
//! filter when every field the filter gives matches (a field matches when
//! one of its values does); `{}` matches every event. An event is exported
//! when it matches some allow filter (or there is none) and no deny filter.
//!
//! Filters only decide what is exported: metrics and per-rule counters count
//! every event, and what is filtered out is counted in
//! `policyd_events_filtered_total{hook}`.

use policy_compiler::bundle::Hook;
use serde::Deserialize;

/// Verdicts an event can carry.
pub const VERDICTS: [&str; 3] = ["allow", "deny", "kill"];

/// One filter. Every field given must match; values are alternatives.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Filter {
    /// Hook names (`exec`, …).
    #[serde(default)]
    pub hook: Option<Vec<String>>,
    /// Verdicts (`allow`, `deny`, `kill`).
    #[serde(default)]
    pub verdict: Option<Vec<String>>,
    /// Kubernetes namespaces (`""` until attribution exists).
    #[serde(default)]
    pub namespace: Option<Vec<String>>,
    /// `process.binary`, exactly.
    #[serde(default)]
    pub binary: Option<Vec<String>>,
    /// Prefixes of `process.binary`.
    #[serde(default)]
    pub binary_prefix: Option<Vec<String>>,
}

/// What a filter looks at in an event.
#[derive(Debug, Clone, Copy)]
pub struct EventKey<'a> {
    /// The event's hook (`exec`).
    pub hook: &'a str,
    /// The event's verdict.
    pub verdict: &'a str,
    /// The pod's namespace, `""` when none.
    pub namespace: &'a str,
    /// `process.binary`.
    pub binary: &'a str,
}

fn any_of(values: &Option<Vec<String>>, hit: impl Fn(&str) -> bool) -> bool {
    values.as_ref().is_none_or(|vs| vs.iter().any(|v| hit(v)))
}

impl Filter {
    /// Parse and check one filter given to `flag` (`--export-allow` or
    /// `--export-deny`).
    ///
    /// # Errors
    /// A message naming the flag and its value: not JSON, not an object,
    /// an unknown field, a field that is not a non-empty list of strings,
    /// an unknown hook or verdict.
    pub fn parse(flag: &str, text: &str) -> Result<Filter, String> {
        let bad = |why: String| format!("{flag} {text}: {why}");
        let f: Filter = serde_json::from_str(text).map_err(|e| {
            bad(format!(
                "{e} (a filter is a JSON object with lists of strings for any of the fields \
                 hook, verdict, namespace, binary, binary_prefix)"
            ))
        })?;
        for (name, values) in [
            ("hook", &f.hook),
            ("verdict", &f.verdict),
            ("namespace", &f.namespace),
            ("binary", &f.binary),
            ("binary_prefix", &f.binary_prefix),
        ] {
            if values.as_ref().is_some_and(Vec::is_empty) {
                return Err(bad(format!(
                    "`{name}` is an empty list, which no event matches; leave the field out to match any {name}"
                )));
            }
        }
        for h in f.hook.iter().flatten() {
            if Hook::from_name(h).is_none() {
                let known: Vec<&str> = Hook::ALL.iter().map(|(_, n)| *n).collect();
                return Err(bad(format!(
                    "unknown hook `{h}` (hooks: {})",
                    known.join(", ")
                )));
            }
        }
        for v in f.verdict.iter().flatten() {
            if !VERDICTS.contains(&v.as_str()) {
                return Err(bad(format!(
                    "unknown verdict `{v}` (verdicts: {})",
                    VERDICTS.join(", ")
                )));
            }
        }
        Ok(f)
    }

    /// Whether `ev` matches every field this filter gives.
    pub fn matches(&self, ev: &EventKey<'_>) -> bool {
        any_of(&self.hook, |h| h == ev.hook)
            && any_of(&self.verdict, |v| v == ev.verdict)
            && any_of(&self.namespace, |n| n == ev.namespace)
            && any_of(&self.binary, |b| b == ev.binary)
            && any_of(&self.binary_prefix, |p| ev.binary.starts_with(p))
    }
}

/// The allow and deny lists of the export.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExportFilters {
    /// `--export-allow`: when not empty, an event must match one.
    pub allow: Vec<Filter>,
    /// `--export-deny`: an event matching one is not exported.
    pub deny: Vec<Filter>,
}

impl ExportFilters {
    /// Parse every `--export-allow` and `--export-deny` value.
    ///
    /// # Errors
    /// The first value [`Filter::parse`] refuses.
    pub fn parse(allow: &[String], deny: &[String]) -> Result<ExportFilters, String> {
        Ok(ExportFilters {
            allow: allow
                .iter()
                .map(|t| Filter::parse("--export-allow", t))
                .collect::<Result<_, _>>()?,
            deny: deny
                .iter()
                .map(|t| Filter::parse("--export-deny", t))
                .collect::<Result<_, _>>()?,
        })
    }

    /// Whether `ev` is exported.
    pub fn exports(&self, ev: &EventKey<'_>) -> bool {
        (self.allow.is_empty() || self.allow.iter().any(|f| f.matches(ev)))
            && !self.deny.iter().any(|f| f.matches(ev))
    }

    /// Whether no filter is given (every event is exported).
    pub fn is_empty(&self) -> bool {
        self.allow.is_empty() && self.deny.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key<'a>(verdict: &'a str, binary: &'a str) -> EventKey<'a> {
        EventKey {
            hook: "exec",
            verdict,
            namespace: "",
            binary,
        }
    }

    #[test]
    fn parse_accepts_every_field() {
        let f = Filter::parse(
            "--export-allow",
            r#"{"hook":["exec"],"verdict":["kill","allow"],"namespace":[""],"binary":["/usr/bin/sudo"],"binary_prefix":["/tmp/"]}"#,
        )
        .unwrap();
        assert_eq!(f.verdict.as_deref().unwrap().len(), 2);
        assert_eq!(
            Filter::parse("--export-deny", "{}").unwrap(),
            Filter::default()
        );
    }

    #[test]
    fn parse_errors_name_the_flag_and_value() {
        let e = Filter::parse("--export-deny", "{\"binery\":[\"/x\"]}").unwrap_err();
        assert!(
            e.starts_with("--export-deny {\"binery\":[\"/x\"]}: "),
            "{e}"
        );
        assert!(e.contains("unknown field `binery`"), "{e}");
        let e = Filter::parse("--export-allow", "not json").unwrap_err();
        assert!(e.starts_with("--export-allow not json: "), "{e}");
        let e = Filter::parse("--export-allow", "[1]").unwrap_err();
        assert!(e.contains("a filter is a JSON object"), "{e}");
        let e = Filter::parse("--export-allow", r#"{"binary":"/x"}"#).unwrap_err();
        assert!(e.contains("invalid type"), "{e}");
        let e = Filter::parse("--export-allow", r#"{"verdict":[]}"#).unwrap_err();
        assert!(e.contains("`verdict` is an empty list"), "{e}");
        let e = Filter::parse("--export-allow", r#"{"verdict":["denied"]}"#).unwrap_err();
        assert!(e.contains("unknown verdict `denied`"), "{e}");
        let e = Filter::parse("--export-allow", r#"{"hook":["exek"]}"#).unwrap_err();
        assert!(e.contains("unknown hook `exek`"), "{e}");
        let e = ExportFilters::parse(&["{}".into()], &["{\"x\":[]}".into()]).unwrap_err();
        assert!(e.starts_with("--export-deny "), "{e}");
    }

    #[test]
    fn fields_and_values() {
        let f = Filter::parse(
            "--export-allow",
            r#"{"verdict":["kill"],"binary_prefix":["/tmp/","/var/tmp/"]}"#,
        )
        .unwrap();
        assert!(f.matches(&key("kill", "/tmp/x")));
        assert!(f.matches(&key("kill", "/var/tmp/y")));
        assert!(
            !f.matches(&key("allow", "/tmp/x")),
            "every field must match"
        );
        assert!(!f.matches(&key("kill", "/usr/bin/x")));
        let exact = Filter::parse("--export-allow", r#"{"binary":["/tmp/x"]}"#).unwrap();
        assert!(exact.matches(&key("allow", "/tmp/x")));
        assert!(!exact.matches(&key("allow", "/tmp/xy")), "binary is exact");
        let ns = Filter::parse("--export-allow", r#"{"namespace":["kube-system"]}"#).unwrap();
        assert!(!ns.matches(&key("allow", "/tmp/x")));
        let hook = Filter::parse("--export-allow", r#"{"hook":["open"]}"#).unwrap();
        assert!(!hook.matches(&key("allow", "/tmp/x")));
        assert!(Filter::default().matches(&key("allow", "/tmp/x")));
    }

    #[test]
    fn allow_and_deny_lists() {
        let none = ExportFilters::default();
        assert!(none.is_empty() && none.exports(&key("allow", "/a")));

        let fs = ExportFilters::parse(
            &[
                r#"{"verdict":["kill"]}"#.into(),
                r#"{"binary_prefix":["/usr/bin/"]}"#.into(),
            ],
            &[r#"{"binary":["/usr/bin/noisy"]}"#.into()],
        )
        .unwrap();
        assert!(fs.exports(&key("kill", "/tmp/a")), "first allow");
        assert!(fs.exports(&key("allow", "/usr/bin/sudo")), "second allow");
        assert!(!fs.exports(&key("allow", "/tmp/a")), "no allow matches");
        assert!(!fs.exports(&key("kill", "/usr/bin/noisy")), "deny wins");

        let deny_only = ExportFilters::parse(&[], &[r#"{"verdict":["allow"]}"#.into()]).unwrap();
        assert!(deny_only.exports(&key("kill", "/a")));
        assert!(!deny_only.exports(&key("allow", "/a")));
    }
}
