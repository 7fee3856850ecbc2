//! Resolution and type checks: [`ast::File`] → [`checked::Policy`].
//!
//! Every problem is collected; checking goes on after an error so that a file's
//! diagnostics all arrive in one run. A declaration with an error is left out
//! of the checked policy (and the whole file fails to compile), but names it
//! declares still resolve, so one typo does not cascade into more errors.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::ast::{self, CompareOp, Expr, ExprKind, Item, Operand, SetLiteral, Span, StringLit};
use crate::checked::{Cond, Policy, Pred, Rule, Test};
use crate::diagnostic::*;
use crate::schema::{Field, FieldType, Hook, Severity};
use crate::suggest::did_you_mean;

/// The longest path literal, in bytes (the kernel key is one byte longer).
pub const MAX_PATH_LITERAL_LEN: usize = 255;

/// Check one parsed file. Returns the checked policy when the file has a
/// header, and every diagnostic (errors and warnings) found.
pub fn check(file: &ast::File) -> (Option<Policy>, Vec<Error>) {
    let mut cx = Checker::default();
    let policy = cx.file(file);
    (policy, cx.errors)
}

#[derive(Default)]
struct Checker {
    errors: Vec<Error>,
    /// Declared sets: name → (declaration, checked values or `None` if invalid).
    sets: BTreeMap<String, (Span, Option<BTreeSet<String>>)>,
    used_sets: BTreeSet<String>,
}

impl Checker {
    fn error(&mut self, e: impl Into<Error>) {
        self.errors.push(e.into());
    }

    fn file(&mut self, file: &ast::File) -> Option<Policy> {
        let mut header: Option<&ast::PolicyDecl> = None;
        for item in &file.items {
            if let Item::Policy(p) = item {
                match header {
                    None => header = Some(p),
                    Some(first) => self.error(DuplicatePolicy {
                        name: p.name.name.clone(),
                        span: span(&p.name.span),
                        first: span(&first.name.span),
                    }),
                }
            }
        }
        // Sets first: rules may use a set declared after them.
        for item in &file.items {
            if let Item::Set(s) = item {
                self.set_decl(s);
            }
        }
        let mut rules = Vec::new();
        let mut rule_names: HashMap<&str, &Span> = HashMap::new();
        for item in &file.items {
            if let Item::Rule(r) = item {
                if let Some(first) = rule_names.get(r.name.name.as_str()) {
                    self.error(DuplicateName {
                        kind: "rule",
                        name: r.name.name.clone(),
                        span: span(&r.name.span),
                        first: span(first),
                    });
                } else {
                    rule_names.insert(&r.name.name, &r.name.span);
                }
                if let Some(rule) = self.rule(r) {
                    rules.push(rule);
                }
            }
        }
        for (name, (decl, _)) in &self.sets {
            if !self.used_sets.contains(name) {
                self.errors.push(
                    UnusedSet {
                        name: name.clone(),
                        span: span(decl),
                    }
                    .into(),
                );
            }
        }
        let Some(header) = header else {
            self.error(MissingPolicy {
                span: span(&(0..0)),
            });
            return None;
        };
        Some(Policy {
            name: header.name.name.clone(),
            name_span: header.name.span.clone(),
            description: header
                .description
                .as_ref()
                .map(|d| d.value.clone())
                .unwrap_or_default(),
            rules,
        })
    }

    fn set_decl(&mut self, s: &ast::SetDecl) {
        if let Some((first, _)) = self.sets.get(&s.name.name) {
            let first = first.clone();
            self.error(DuplicateName {
                kind: "set",
                name: s.name.name.clone(),
                span: span(&s.name.span),
                first: span(&first),
            });
            return;
        }
        // Set elements are paths: the only element type of this language subset.
        let values = self.set_literal(&s.value, FieldType::Path, false);
        self.sets
            .insert(s.name.name.clone(), (s.name.span.clone(), values));
    }

    /// Check a set's elements as literals of `ty`; `None` if any is invalid.
    fn set_literal(
        &mut self,
        set: &SetLiteral,
        ty: FieldType,
        prefix: bool,
    ) -> Option<BTreeSet<String>> {
        if set.elements.is_empty() {
            self.error(EmptySet {
                span: span(&set.span),
            });
            return None;
        }
        let mut seen: BTreeMap<&str, &Span> = BTreeMap::new();
        let mut ok = true;
        for element in &set.elements {
            ok &= self.literal(element, ty, prefix);
            if let Some(first) = seen.get(element.value.as_str()) {
                self.error(DuplicateElement {
                    value: element.value.clone(),
                    span: span(&element.span),
                    first: span(first),
                });
            } else {
                seen.insert(&element.value, &element.span);
            }
        }
        ok.then(|| set.elements.iter().map(|e| e.value.clone()).collect())
    }

    /// Validate one literal of type `ty`; `prefix` for `startswith` operands.
    fn literal(&mut self, lit: &StringLit, ty: FieldType, prefix: bool) -> bool {
        match ty {
            FieldType::Path => self.path_literal(lit, prefix),
        }
    }

    fn path_literal(&mut self, lit: &StringLit, prefix: bool) -> bool {
        let v = &lit.value;
        if !v.starts_with('/') {
            self.error(RelativePath {
                value: v.clone(),
                span: span(&lit.span),
                help: "the kernel reports canonical absolute paths, so a relative path never matches; write the full path, e.g. `/usr/bin/sudo`".into(),
            });
            return false;
        }
        if v.len() > MAX_PATH_LITERAL_LEN {
            self.error(PathTooLong {
                len: v.len(),
                max: MAX_PATH_LITERAL_LEN,
                span: span(&lit.span),
            });
            return false;
        }
        let problem = if v.contains('\0') {
            Some("contains a NUL byte".to_string())
        } else {
            // Components between slashes; a prefix may end in `/` or mid-name.
            let body = &v[1..];
            let mut comps: Vec<&str> = body.split('/').collect();
            let trailing_slash = v.len() > 1 && v.ends_with('/');
            if trailing_slash {
                comps.pop();
            }
            if v == "/" {
                (!prefix).then(|| "`/` is a directory, not a file".to_string())
            } else if trailing_slash && !prefix {
                Some("ends in `/`, so it names a directory, not a file".to_string())
            } else if comps.iter().any(|c| c.is_empty()) {
                Some("has an empty component (`//`)".to_string())
            } else if let Some(c) = comps.iter().enumerate().find_map(|(i, c)| {
                // A prefix may end in a partial name such as `/usr/bin/.`; only
                // whole components are checked.
                let last_partial = prefix && !trailing_slash && i == comps.len() - 1;
                (!last_partial && (*c == "." || *c == "..")).then_some(*c)
            }) {
                Some(format!("has a `{c}` component"))
            } else {
                None
            }
        };
        if let Some(problem) = problem {
            self.error(NonCanonicalPath {
                value: v.clone(),
                span: span(&lit.span),
                help: match canonical(v, prefix) {
                    Some(c) if c != *v => format!("the kernel reports canonical paths; write `{c}`"),
                    _ => "the kernel reports canonical paths; write the path without `.`, `..` or `//`".into(),
                },
                problem,
            });
            return false;
        }
        true
    }

    fn rule(&mut self, r: &ast::RuleDecl) -> Option<Rule> {
        let before = self.errors.iter().filter(|e| !e.is_warning()).count();
        let hook = match Hook::from_name(&r.hook.name) {
            Some(h) => Some(h),
            None => {
                let names: Vec<&str> = Hook::ALL.iter().map(|(_, n)| *n).collect();
                self.error(UnknownHook {
                    name: r.hook.name.clone(),
                    span: span(&r.hook.span),
                    help: did_you_mean(&r.hook.name, "hooks", &names),
                });
                None
            }
        };
        let condition = self.expr(&r.condition, hook);
        let severity = match r.audit.as_ref().and_then(|a| a.severity.as_ref()) {
            None => Severity::Info,
            Some(s) => match Severity::from_name(&s.name) {
                Some(sev) => sev,
                None => {
                    let names: Vec<&str> = Severity::ALL.iter().map(|(_, n)| *n).collect();
                    self.error(UnknownSeverity {
                        name: s.name.clone(),
                        span: span(&s.span),
                        help: did_you_mean(&s.name, "severities", &names),
                    });
                    Severity::Info
                }
            },
        };
        if r.action.is_none() && r.audit.is_none() {
            self.error(RuleWithoutEffect {
                name: r.name.name.clone(),
                span: span(&r.name.span),
            });
        }
        let after = self.errors.iter().filter(|e| !e.is_warning()).count();
        if after > before {
            return None;
        }
        Some(Rule {
            name: r.name.name.clone(),
            hook: hook?,
            condition: condition?,
            action: r.action.as_ref().map(|(a, _)| *a),
            audit: r.audit.is_some(),
            severity,
            message: r
                .audit
                .as_ref()
                .and_then(|a| a.message.as_ref())
                .map(|m| m.value.clone()),
            name_span: r.name.span.clone(),
        })
    }

    /// Check a condition. With an unknown hook (`None`), fields cannot be
    /// checked, but set references and literals still are.
    fn expr(&mut self, e: &Expr, hook: Option<Hook>) -> Option<Cond> {
        match &e.kind {
            ExprKind::And(es) | ExprKind::Or(es) => {
                let checked: Vec<Option<Cond>> = es.iter().map(|x| self.expr(x, hook)).collect();
                let checked: Option<Vec<Cond>> = checked.into_iter().collect();
                let cs = checked?;
                Some(if matches!(e.kind, ExprKind::And(_)) {
                    Cond::And(cs)
                } else {
                    Cond::Or(cs)
                })
            }
            ExprKind::Not(x) => Some(Cond::Not(Box::new(self.expr(x, hook)?))),
            ExprKind::Compare(c) => self.comparison(c, hook),
        }
    }

    fn comparison(&mut self, c: &ast::Comparison, hook: Option<Hook>) -> Option<Cond> {
        let field = match hook {
            None => None,
            Some(h) => match Field::from_name(&c.field.name).filter(|f| h.fields().contains(f)) {
                Some(f) => Some(f),
                None => {
                    let names: Vec<&str> = h.fields().iter().map(|f| f.as_str()).collect();
                    self.error(UnknownField {
                        name: c.field.name.clone(),
                        hook: h.as_str().into(),
                        span: span(&c.field.span),
                        help: did_you_mean(
                            &c.field.name,
                            &format!("fields of `{}`", h.as_str()),
                            &names,
                        ),
                    });
                    None
                }
            },
        };
        let ty = field.map(|f| f.ty()).unwrap_or(FieldType::Path);
        let (op, op_span) = c.op.clone();
        let wants_set = matches!(op, CompareOp::In | CompareOp::NotIn);
        let pred = match (&c.operand, wants_set) {
            (Operand::String(s), false) => {
                let prefix = op == CompareOp::StartsWith;
                self.literal(s, ty, prefix).then(|| {
                    if prefix {
                        Pred::StartsWith(s.value.clone())
                    } else {
                        Pred::Eq(s.value.clone())
                    }
                })
            }
            (Operand::Set(s), true) => self.set_literal(s, ty, false).map(Pred::In),
            (Operand::SetRef(name), true) => self.set_ref(name).map(Pred::In),
            (operand, _) => {
                let found = match operand {
                    Operand::String(_) => "a string",
                    Operand::Set(_) => "a set",
                    Operand::SetRef(name) => {
                        self.used_sets.insert(name.name.clone());
                        "a set name"
                    }
                };
                let (expected, help) = if wants_set {
                    (
                        "a set",
                        format!(
                            "write `{} {} {{ \"…\" }}` or use `==`",
                            c.field.name,
                            op.as_str()
                        ),
                    )
                } else {
                    (
                        "a string",
                        format!("use `in` to test membership: `{} in …`", c.field.name),
                    )
                };
                self.error(OperandType {
                    op: op.as_str(),
                    expected,
                    found,
                    span: span(&operand.span()),
                    op_span: span(&op_span),
                    help,
                });
                None
            }
        };
        let test = Cond::Test(Test {
            field: field?,
            pred: pred?,
        });
        Some(match op {
            CompareOp::Ne | CompareOp::NotIn => Cond::Not(Box::new(test)),
            _ => test,
        })
    }

    fn set_ref(&mut self, name: &ast::Ident) -> Option<BTreeSet<String>> {
        self.used_sets.insert(name.name.clone());
        match self.sets.get(&name.name) {
            Some((_, values)) => values.clone(),
            None => {
                let names: Vec<&str> = self.sets.keys().map(String::as_str).collect();
                // The set the author probably meant is not "unused": one error
                // is enough for one typo.
                if let Some(meant) = crate::suggest::closest(&name.name, names.iter().copied()) {
                    self.used_sets.insert(meant.to_string());
                }
                let help = if names.is_empty() {
                    format!("declare it: `set {} = {{ \"…\" }}`", name.name)
                } else {
                    did_you_mean(&name.name, "sets in this file", &names)
                };
                self.error(UnknownSet {
                    name: name.name.clone(),
                    span: span(&name.span),
                    help,
                });
                None
            }
        }
    }
}

/// The canonical spelling of a path literal, if `.`/`..`/empty components can
/// be removed without leaving the root.
fn canonical(v: &str, prefix: bool) -> Option<String> {
    let mut out: Vec<&str> = Vec::new();
    for c in v.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                out.pop()?;
            }
            c => out.push(c),
        }
    }
    let mut s = format!("/{}", out.join("/"));
    if prefix && v.ends_with('/') && s != "/" {
        s.push('/');
    }
    Some(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parser::parse;

    fn codes(src: &str) -> Vec<String> {
        let (file, mut errors) = parse(src);
        let (_, more) = check(&file);
        errors.extend(more);
        errors
            .iter()
            .map(|e| {
                miette::Diagnostic::code(e)
                    .map(|c| c.to_string())
                    .unwrap_or_default()
            })
            .collect()
    }

    const HEADER: &str = "policy p { description = \"d\" }\n";

    #[test]
    fn valid_file_has_no_diagnostics() {
        let src = format!("{HEADER}set s = {{ \"/usr/bin/sudo\" }}\nrule r on exec {{ when process.binary in s audit }}");
        assert!(codes(&src).is_empty(), "{:?}", codes(&src));
    }

    #[test]
    fn every_error_in_a_file_is_reported() {
        let src = format!(
            "{HEADER}rule a on exce {{ when process.binary == \"/x\" deny }}\n\
             rule b on exec {{ when process.binray == \"/x\" deny }}\n\
             rule c on exec {{ when process.binary in sudo_bins deny }}\n\
             rule d on exec {{ when process.binary == \"x\" deny }}\n"
        );
        assert_eq!(
            codes(&src),
            [
                "policyc::unknown_hook",
                "policyc::unknown_field",
                "policyc::unknown_set",
                "policyc::relative_path"
            ]
        );
    }

    #[test]
    fn canonical_paths() {
        assert_eq!(
            canonical("/usr//bin/./sudo", false).as_deref(),
            Some("/usr/bin/sudo")
        );
        assert_eq!(
            canonical("/usr/lib/../bin/", true).as_deref(),
            Some("/usr/bin/")
        );
        assert_eq!(canonical("/..", false), None);
        let src = format!(
            "{HEADER}rule r on exec {{ when process.binary startswith \"/usr/bin/.\" audit }}"
        );
        assert!(codes(&src).is_empty());
        let src =
            format!("{HEADER}rule r on exec {{ when process.binary == \"/usr/bin/\" audit }}");
        assert_eq!(codes(&src), ["policyc::non_canonical_path"]);
    }

    #[test]
    fn not_in_and_ne_become_negations() {
        let (file, _) = parse(&format!(
            "{HEADER}rule r on exec {{ when process.binary != \"/a\" audit }}"
        ));
        let (policy, errors) = check(&file);
        assert!(errors.is_empty());
        let rule = &policy.unwrap().rules[0];
        assert!(matches!(&rule.condition, Cond::Not(t) if matches!(**t, Cond::Test(_))));
    }
}
