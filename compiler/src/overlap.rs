//! Policy analysis on the lowered tables: allow/deny overlaps, shadowed
//! rules, unsatisfiable rules and rules that match every event of their hook.
//!
//! ```text
//! checked policies ──lower_program──► HookTable per hook (terms, dimensions)
//!   dimension ──► its classes: (term set, a concrete value of the class)
//!   classes × dimensions ──bounded search──► a region of events ──► finding
//!   finding + witness event ──eval_bundle and eval_program──► confirmed, reported
//! ```
//!
//! Each dimension's table cuts its value space into finitely many classes
//! (an exact value, the values whose longest prefix is `p` and longest suffix
//! `s`, an interval, a CIDR block, a capability combination, a relation's
//! truth, the default…), and every value of a class yields the same term set.
//! An event is one class per dimension; the terms it matches are the
//! intersection of its classes' sets. So questions about "some event" and
//! "every event" become a search over class combinations, projected onto the
//! terms of the rules in question (dimensions that do not separate those
//! terms drop out, equal projections are merged).
//!
//! Soundness over completeness:
//! - **Existential** findings (`deny_allow_overlap`, and the example event of
//!   `shadowed_rule`) carry a *witness*: one concrete value per class, the
//!   event checked with both reference evaluators (`eval_bundle`, the
//!   kernel's algorithm, as an [`Evaluator`], and `eval_program`, the
//!   language's meaning) before it is reported. A combination whose
//!   witness does not confirm is skipped.
//! - **Universal** findings (`shadowed_rule`, `unsatisfiable_rule`,
//!   `matches_every_event`) are proven over an *over-approximation* of the
//!   classes (combinations no real event can produce are included, never the
//!   other way round), so a proof holds for every event the kernel reports.
//!   Events always supply their hook's fields, except `k8s.*` outside a pod;
//!   ids are 32-bit, ports 16-bit, paths absolute.
//! - Every search is bounded ([`MAX_NODES_PER_QUESTION`] combinations per
//!   question, [`MAX_NODES_PER_ANALYSIS`] in all, [`MAX_CLASSES_PER_DIMENSION`]
//!   classes, [`MAX_CAP_MASKS`] capability masks). Past a bound the question
//!   is answered with silence, never a guess; a question cut short by the
//!   node bounds is reported once per hook (`policyc::analysis_incomplete`),
//!   so silence is never mistaken for a proof.
//!
//! Monitor-mode policies: a rule is compared with the rules that decide its
//! verdict, i.e. an enforced rule only with enforced rules; a rule of a
//! monitor policy with every rule (its verdict is the would-be verdict).

use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use ipnet::IpNet;
use miette::SourceSpan;
use policy_dsl::analysis::{constant, Constant};
use policy_dsl::ast::Action;
use policy_dsl::checked::{Cond, Event, FieldKey, Policy, Pred, Value};
use policy_dsl::schema::{Field, FieldType, Hook};

use crate::bundle::FastMap;
use crate::bundle::{
    Dimension, DimensionKind, HookTable, PolicyBundle, SortedSets, TermSet, Verdict,
};
use crate::compile::Located;
use crate::eval::{eval_program, lookup_value, Evaluator, Outcome};
use crate::limits::MASK_WORDS;
use crate::lower::{self, evaluation_bundle, Program, RuleRef, UNSET_ID};

/// Most class combinations visited to answer one question (one pair of
/// rules, one rule).
pub const MAX_NODES_PER_QUESTION: usize = 20_000;
/// Most class combinations visited in one analysis (all hooks, all
/// questions); later questions are not answered.
pub const MAX_NODES_PER_ANALYSIS: usize = 2_000_000;
/// Most classes of one dimension (prefix × suffix combinations of a string
/// dimension); past it, no universal claim involves the dimension.
pub const MAX_CLASSES_PER_DIMENSION: usize = 4096;
/// Most distinct capability masks of one dimension (2^n combinations).
pub const MAX_CAP_MASKS: usize = 10;

// ---------------------------------------------------------------------------
// Diagnostics.

/// A warning of the policy analysis.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, miette::Diagnostic)]
pub enum AnalysisWarning {
    /// An allow rule and a deny or kill rule can match the same event.
    #[error("allow rule `{rule}` and {verdict} rule `{other}` can match the same event")]
    #[diagnostic(code(policyc::deny_allow_overlap), severity(Warning))]
    DenyAllowOverlap {
        /// The allow rule.
        rule: String,
        /// The deny or kill rule (`policy.rule` when in another file).
        other: String,
        /// `deny` or `kill`.
        verdict: &'static str,
        /// Why, and the witness event.
        #[help]
        help: String,
        /// File index of the allow rule.
        file: usize,
        /// The allow rule's name.
        #[label("allows some events that `{other}` would {verdict}")]
        span: SourceSpan,
        /// The deny rule's name, when in the same file.
        #[label("{verdict} rule")]
        other_span: Option<SourceSpan>,
    },
    /// A rule whose verdict never takes effect.
    #[error("the `{action}` of rule `{rule}` never takes effect")]
    #[diagnostic(code(policyc::shadowed_rule), severity(Warning))]
    ShadowedRule {
        /// The shadowed rule.
        rule: String,
        /// `allow` or `deny`.
        action: &'static str,
        /// The rules that decide instead, and an example event.
        #[help]
        help: String,
        /// File index of the rule.
        file: usize,
        /// The rule's name.
        #[label("every event it matches is decided by other rules")]
        span: SourceSpan,
    },
    /// A rule that no event matches.
    #[error("rule `{rule}` matches no event")]
    #[diagnostic(
        code(policyc::unsatisfiable_rule),
        severity(Warning),
        help("in every `or` branch of its condition, some tests contradict each other for every value the event could carry, so the rule never applies; check the values, prefixes, ranges and `unless` clauses")
    )]
    Unsatisfiable {
        /// The rule.
        rule: String,
        /// File index of the rule.
        file: usize,
        /// The rule's name.
        #[label("never applies")]
        span: SourceSpan,
    },
    /// A hook has more terms than one kernel mask: the analysis, whose term
    /// sets are one mask of bits, does not look at it.
    #[error(
        "the policy analysis skips `{hook}`: its {terms} terms are more than the {max} it analyses per hook"
    )]
    #[diagnostic(
        code(policyc::analysis_incomplete),
        severity(Warning),
        help("no overlap, shadowed, unsatisfiable or all-matching rule of this hook is reported, whatever they are (nothing else changes: the bundle is complete); analyse a subset of the rules, e.g. `policyc check` on fewer files")
    )]
    Skipped {
        /// The hook.
        hook: &'static str,
        /// Its terms.
        terms: usize,
        /// [`crate::limits::MASK_TERMS`].
        max: usize,
        /// File index of the hook's first rule.
        file: usize,
        /// That rule's name.
        #[label("a rule of the hook not analysed")]
        span: SourceSpan,
    },
    /// The analysis hit a bound ([`MAX_NODES_PER_QUESTION`],
    /// [`MAX_NODES_PER_ANALYSIS`]) and left questions of a hook unanswered:
    /// its silence about them is no proof of absence.
    #[error(
        "the policy analysis of `{hook}` stopped at its bounds: {questions} question(s) unanswered"
    )]
    #[diagnostic(
        code(policyc::analysis_incomplete),
        severity(Warning),
        help("overlaps, shadowed, unsatisfiable and all-matching rules are searched over combinations of value classes, at most {per_question} per question and {per_analysis} per compile; from this rule on, some questions were cut short, so warnings about them may be missing (nothing else changes: the bundle is complete). Fewer rules per compile, or simpler conditions, let the analysis finish")
    )]
    Incomplete {
        /// The hook.
        hook: &'static str,
        /// Questions cut short.
        questions: usize,
        /// [`MAX_NODES_PER_QUESTION`].
        per_question: usize,
        /// [`MAX_NODES_PER_ANALYSIS`].
        per_analysis: usize,
        /// File index of the first rule whose question was cut.
        file: usize,
        /// That rule's name.
        #[label("first question cut short")]
        span: SourceSpan,
    },
    /// A rule that matches every event of its hook.
    #[error("rule `{rule}` matches every `{hook}` event")]
    #[diagnostic(code(policyc::matches_every_event), severity(Warning))]
    MatchesEveryEvent {
        /// The rule.
        rule: String,
        /// The hook.
        hook: &'static str,
        /// What that means for its verdict.
        #[help]
        help: String,
        /// File index of the rule.
        file: usize,
        /// The rule's name.
        #[label("its condition holds whatever the event")]
        span: SourceSpan,
    },
}

impl AnalysisWarning {
    /// Index of the file the warning points into.
    pub fn file(&self) -> usize {
        match self {
            AnalysisWarning::DenyAllowOverlap { file, .. }
            | AnalysisWarning::ShadowedRule { file, .. }
            | AnalysisWarning::Unsatisfiable { file, .. }
            | AnalysisWarning::MatchesEveryEvent { file, .. }
            | AnalysisWarning::Incomplete { file, .. }
            | AnalysisWarning::Skipped { file, .. } => *file,
        }
    }
}

// ---------------------------------------------------------------------------
// Findings.

/// What the analysis found about one rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FindingKind {
    /// The allow rule and the deny/kill rule `deny` both match the witness,
    /// which is denied.
    Overlap {
        /// The deny or kill rule.
        deny: u32,
    },
    /// Every event the rule matches is decided by the rules `by` with
    /// precedence (an allow by deny/kill rules, a deny by kill rules).
    Shadowed {
        /// Deny/kill rules (for an allow) or kill rules (for a deny) that
        /// can match the same events, ascending.
        by: Vec<u32>,
    },
    /// No event matches the rule.
    Unsatisfiable,
    /// Every event of its hook matches the rule.
    MatchesEveryEvent,
}

/// One finding: a rule (bundle id), what holds, and a confirmed witness event
/// for existential findings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// The hook.
    pub hook: Hook,
    /// The rule the finding is about.
    pub rule: u32,
    /// What was found.
    pub kind: FindingKind,
    /// An event showing it (overlap: both rules match and the verdict is
    /// deny/kill; shadowed: the rule matches and a rule of `by` decides).
    pub witness: Option<Event>,
}

/// The analysis warnings of checked policies (which must lower without
/// error), with the file each points into.
pub fn warnings(policies: &[Policy]) -> Vec<Located> {
    let program = Program::new(policies);
    let (findings, cuts) = analyze(&program);
    let name = |id: u32, from: usize| {
        let r = program.rules[id as usize];
        if r.file == from {
            r.rule.name.clone()
        } else {
            format!("{}.{}", policies[r.file].name, r.rule.name)
        }
    };
    let span = |sp: &policy_dsl::ast::Span| SourceSpan::from(sp.start..sp.end);
    let mut out = Vec::new();
    for f in findings {
        let r = program.rules[f.rule as usize];
        let hook = f.hook.as_str();
        let example = f
            .witness
            .as_ref()
            .map(|w| format!(", e.g. {}", event_json(w)))
            .unwrap_or_default();
        let warning = match &f.kind {
            FindingKind::Overlap { deny } => {
                let d = program.rules[*deny as usize];
                let verdict = verdict_word(d.rule.action);
                let other = name(*deny, r.file);
                AnalysisWarning::DenyAllowOverlap {
                    help: format!(
                        "both match {}; deny overrides allow, so such an event is {} and `{}` has no effect on it; if these events should be allowed, narrow `{other}` (e.g. with `unless`), otherwise narrow `{}`",
                        f.witness.as_ref().map(event_json).unwrap_or_else(|| "some event".into()),
                        if verdict == "kill" { "killed" } else { "denied" },
                        r.rule.name,
                        r.rule.name,
                    ),
                    rule: r.rule.name.clone(),
                    other,
                    verdict,
                    file: r.file,
                    span: span(&r.rule.name_span),
                    other_span: (d.file == r.file).then(|| span(&d.rule.name_span)),
                }
            }
            FindingKind::Shadowed { by } => {
                let names: Vec<String> = by
                    .iter()
                    .map(|b| format!("`{}`", name(*b, r.file)))
                    .collect();
                // Several rules cover its events between them, not each all
                // of them (the example event may match only one).
                let (list, kill_list, kill_rules) = match names.len() {
                    1 => (
                        names[0].clone(),
                        format!("the kill rule {}", names[0]),
                        "the kill rule",
                    ),
                    _ => (
                        format!("one of {}", names.join(", ")),
                        format!("one of the kill rules {}", names.join(", ")),
                        "the kill rules",
                    ),
                };
                let (action, help) = match r.rule.action {
                    Some(Action::Allow) => (
                        "allow",
                        format!(
                            "every event it matches is also matched by {list} (deny overrides allow){example}; remove the rule, or narrow the deny/kill rules if these events should be allowed"
                        ),
                    ),
                    _ => (
                        "deny",
                        format!(
                            "every event it matches is also matched by {kill_list}, so it is killed rather than denied{example}; remove the rule or narrow {kill_rules}"
                        ),
                    ),
                };
                AnalysisWarning::ShadowedRule {
                    rule: r.rule.name.clone(),
                    action,
                    help,
                    file: r.file,
                    span: span(&r.rule.name_span),
                }
            }
            FindingKind::Unsatisfiable => AnalysisWarning::Unsatisfiable {
                rule: r.rule.name.clone(),
                file: r.file,
                span: span(&r.rule.name_span),
            },
            FindingKind::MatchesEveryEvent => {
                let help = match r.rule.action {
                    Some(Action::Deny) => format!(
                        "it would deny every `{hook}` on the node, system services included, and nothing can allow them (deny overrides allow); add the condition that was meant, or write `when true` if denying every `{hook}` really is intended"
                    ),
                    Some(Action::Kill) => format!(
                        "it would kill every process at every `{hook}` on the node, system services included, and nothing can allow them; add the condition that was meant, or write `when true` if that really is intended"
                    ),
                    Some(Action::Allow) => format!(
                        "it allows every `{hook}` event, so no `default deny` scope of `{hook}` ever applies; add the condition that was meant, or write `when true` if that is intended"
                    ),
                    None => format!(
                        "it applies to every `{hook}` event; add the condition that was meant, or write `when true` if that is intended"
                    ),
                };
                AnalysisWarning::MatchesEveryEvent {
                    rule: r.rule.name.clone(),
                    hook,
                    help,
                    file: r.file,
                    span: span(&r.rule.name_span),
                }
            }
        };
        out.push(Located {
            file: Some(warning.file()),
            diagnostic: warning.into(),
        });
    }
    // Never silent about a bound: one warning per hook where one was hit.
    for cut in cuts {
        let r = program.rules[cut.rule as usize];
        if cut.skipped {
            out.push(Located {
                file: Some(r.file),
                diagnostic: AnalysisWarning::Skipped {
                    hook: cut.hook.as_str(),
                    terms: cut.questions,
                    max: crate::limits::MASK_TERMS,
                    file: r.file,
                    span: span(&r.rule.name_span),
                }
                .into(),
            });
            continue;
        }
        out.push(Located {
            file: Some(r.file),
            diagnostic: AnalysisWarning::Incomplete {
                hook: cut.hook.as_str(),
                questions: cut.questions,
                per_question: MAX_NODES_PER_QUESTION,
                per_analysis: MAX_NODES_PER_ANALYSIS,
                file: r.file,
                span: span(&r.rule.name_span),
            }
            .into(),
        });
    }
    out
}

/// Questions of one hook that a bound cut short.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Cut {
    hook: Hook,
    /// The rule of the first question cut.
    rule: u32,
    /// How many questions were cut (the hook's terms when `skipped`).
    questions: usize,
    /// The hook was not analysed at all (more terms than one mask).
    skipped: bool,
}

fn verdict_word(a: Option<Action>) -> &'static str {
    match a {
        Some(Action::Kill) => "kill",
        Some(Action::Deny) => "deny",
        Some(Action::Allow) => "allow",
        None => "audit",
    }
}

/// The findings of a program, per hook in hook order, per rule in id order.
/// Empty when the program does not lower (its errors are reported elsewhere).
pub fn findings(program: &Program<'_>) -> Vec<Finding> {
    analyze(program).0
}

/// [`findings`], and where bounds cut questions short.
fn analyze(program: &Program<'_>) -> (Vec<Finding>, Vec<Cut>) {
    let Ok(tables) = lower::lower_program(program) else {
        return (Vec::new(), Vec::new());
    };
    let Ok(terms) = lower::terms_per_hook(program) else {
        return (Vec::new(), Vec::new());
    };
    let mut cuts = Vec::new();
    let bundle = evaluation_bundle(program, tables);
    let mut budget = MAX_NODES_PER_ANALYSIS;
    let mut out = Vec::new();
    for (hook, table) in &bundle.spec.hooks {
        if table.terms.len() > crate::limits::MASK_TERMS {
            // Term sets are one mask of bits here; a hook past one mask is
            // not analysed, and says so.
            if let Some(t) = table.terms.iter().find(|t| !t.scope) {
                cuts.push(Cut {
                    hook: *hook,
                    rule: t.rule,
                    questions: table.terms.len(),
                    skipped: true,
                });
            }
            continue;
        }
        let fields: BTreeMap<String, (FieldKey, Option<FieldKey>)> = terms[hook]
            .iter()
            .flat_map(|(_, c)| c)
            .map(|l| {
                let other = match &l.pred {
                    Pred::Relation(_, other) => Some(other.clone()),
                    _ => None,
                };
                (l.dimension(), (l.field.clone(), other))
            })
            .collect();
        let analysis = HookAnalysis::new(*hook, table, &fields, program, &bundle);
        analysis.run(&mut budget, &mut out);
        let (questions, rule) = analysis.cut.get();
        if let Some(rule) = rule {
            cuts.push(Cut {
                hook: *hook,
                rule,
                questions,
                skipped: false,
            });
        }
    }
    (out, cuts)
}

/// The flat JSON form of an event: `{"hook": "exec", "process.binary": "/x"}`
/// (the event format of `policyc explain`, see [`crate::event_json`]).
pub fn event_json(event: &Event) -> String {
    crate::event_json::event_to_line(event)
}

// ---------------------------------------------------------------------------
// Term sets as bit words.

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct Bits([u64; MASK_WORDS]);

impl Default for Bits {
    fn default() -> Bits {
        Bits([0; MASK_WORDS])
    }
}

impl Bits {
    fn of(set: &[u32]) -> Bits {
        Bits(crate::bundle::mask_words(&set.to_vec()))
    }
    fn and(self, o: Bits) -> Bits {
        let mut w = self.0;
        for (a, b) in w.iter_mut().zip(o.0) {
            *a &= b;
        }
        Bits(w)
    }
    fn or(self, o: Bits) -> Bits {
        let mut w = self.0;
        for (a, b) in w.iter_mut().zip(o.0) {
            *a |= b;
        }
        Bits(w)
    }
    fn is_empty(self) -> bool {
        self.0.iter().all(|w| *w == 0)
    }
    fn meets(self, o: Bits) -> bool {
        !self.and(o).is_empty()
    }
    /// The term ids in the set, ascending.
    fn ones(self) -> impl Iterator<Item = usize> {
        self.0.into_iter().enumerate().flat_map(|(i, mut w)| {
            std::iter::from_fn(move || {
                (w != 0).then(|| {
                    let b = w.trailing_zeros() as usize;
                    w &= w - 1;
                    i * 64 + b
                })
            })
        })
    }
}

// ---------------------------------------------------------------------------
// Classes.

/// A concrete representative of a class.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Rep {
    /// The field has this value.
    Value(Value),
    /// The event does not supply the field.
    Absent,
    /// A relation feature with this truth.
    Relation(bool),
}

#[derive(Debug, Clone)]
struct Class {
    terms: Bits,
    /// A value of the class, checked with the dimension's lookup; `None`
    /// when none was found (the class still counts for universal claims).
    rep: Option<Rep>,
}

#[derive(Debug, Clone)]
struct Dim {
    /// The field (left field of a relation).
    field: FieldKey,
    /// For a relation: its operator and right field.
    relation: Option<(String, FieldKey)>,
    classes: Vec<Class>,
    /// Every value the kernel can report falls in one of `classes`.
    complete: bool,
    /// Per term id, the indices of the classes holding it, ascending: a
    /// question about a few rules looks at their classes only, instead of
    /// every class of the dimension (rules × classes, quadratic in rules).
    by_term: Vec<Vec<usize>>,
    /// The classes with a representative value, ascending.
    with_rep: Vec<usize>,
    /// Per term in more than half the classes (a wide rule's), the classes
    /// lacking it, ascending: a question reads those instead of the term's
    /// long `by_term` list.
    lacking: Vec<Option<Vec<usize>>>,
}

impl Dim {
    /// The classes projected onto `relevant`: each distinct projection with
    /// the first class giving it, or the first such class with a
    /// representative. The same map as projecting every class in order.
    fn project(&self, relevant: Bits) -> BTreeMap<Bits, usize> {
        let terms: Vec<usize> = relevant.ones().collect();
        if terms.len() <= 64 {
            let seen = self.project_merged(&terms);
            debug_assert_eq!(
                seen,
                self.project_all(relevant),
                "class index missed a class"
            );
            return seen;
        }
        let (mut seen, meeting) = self.project_meeting(relevant);
        // Every other class projects to nothing.
        if let Some(j) = self.first_outside(&meeting) {
            seen.insert(Bits::default(), j);
        }
        debug_assert_eq!(
            seen,
            self.project_all(relevant),
            "class index missed a class"
        );
        seen
    }

    /// [`Dim::project`] for at most 64 terms, from short lists only. Bit
    /// `i` of a class's key says it holds `terms[i]`. A merge of the
    /// terms' sorted lists finds the *special* classes: for a term in at
    /// most half the classes its `by_term` list (the key gets its bit), for
    /// a wider one its `lacking` list (the key loses its bit, which every
    /// other class has). Every class in no list has the key of the wide
    /// terms alone, and no special class has that key, so the first of
    /// them (with a representative, when one has) comes from the gaps
    /// between the special classes. The cost follows the short lists: a
    /// question about a wide rule used to visit every class.
    fn project_merged(&self, terms: &[usize]) -> BTreeMap<Bits, usize> {
        let mut wide = 0u64;
        let lists: Vec<&[usize]> = terms
            .iter()
            .enumerate()
            .map(|(i, &t)| match self.lacking.get(t) {
                Some(Some(lacking)) => {
                    wide |= 1 << i;
                    lacking.as_slice()
                }
                _ => self.by_term.get(t).map_or(&[][..], Vec::as_slice),
            })
            .collect();
        let mut pos = vec![0usize; lists.len()];
        let mut by_key: FastMap<u64, usize> = FastMap::default();
        let mut special = Vec::new();
        let first = |by_key: &mut FastMap<u64, usize>, key: u64, j: usize| {
            let e = by_key.entry(key).or_insert(j);
            if self.classes[*e].rep.is_none() && self.classes[j].rep.is_some() {
                *e = j;
            }
        };
        while let Some(j) = lists
            .iter()
            .zip(&pos)
            .filter_map(|(l, &p)| l.get(p))
            .min()
            .copied()
        {
            let mut key = wide;
            for (i, l) in lists.iter().enumerate() {
                if l.get(pos[i]) == Some(&j) {
                    key ^= 1 << i; // sets a narrow term's bit, clears a wide one's
                    pos[i] += 1;
                }
            }
            special.push(j);
            first(&mut by_key, key, j);
        }
        // The classes in no list.
        if let Some(j) = self.first_outside(&special) {
            first(&mut by_key, wide, j);
        }
        by_key
            .into_iter()
            .map(|(key, j)| {
                let ids: TermSet = (0..terms.len())
                    .filter(|i| key & (1 << i) != 0)
                    .map(|i| terms[i] as u32)
                    .collect();
                (Bits::of(&ids), j)
            })
            .collect()
    }

    /// [`Dim::project_merged`] for more terms: the meeting classes sorted,
    /// each projected by a mask.
    fn project_meeting(&self, relevant: Bits) -> (BTreeMap<Bits, usize>, Vec<usize>) {
        // The meeting classes as a bit set over the classes, read in order
        // (no sort of the lists' classes, which repeat).
        let mut marked = vec![0u64; self.classes.len().div_ceil(64)];
        for t in relevant.ones() {
            for &j in self.by_term.get(t).into_iter().flatten() {
                marked[j / 64] |= 1 << (j % 64);
            }
        }
        let meeting: Vec<usize> = marked
            .iter()
            .enumerate()
            .flat_map(|(w, &bits)| {
                (0..64)
                    .filter(move |b| bits & (1 << b) != 0)
                    .map(move |b| w * 64 + b)
            })
            .collect();
        // A class's projection is keyed by the words where `relevant` has
        // bits (a few of the 64), and becomes a mask once per distinct key.
        let words: Vec<usize> = (0..MASK_WORDS).filter(|&w| relevant.0[w] != 0).collect();
        let mut by_key: FastMap<Vec<u64>, usize> = FastMap::default();
        let mut key: Vec<u64> = Vec::with_capacity(words.len());
        for &j in &meeting {
            key.clear();
            key.extend(
                words
                    .iter()
                    .map(|&w| self.classes[j].terms.0[w] & relevant.0[w]),
            );
            match by_key.get_mut(key.as_slice()) {
                Some(e) => {
                    if self.classes[*e].rep.is_none() && self.classes[j].rep.is_some() {
                        *e = j;
                    }
                }
                None => {
                    by_key.insert(key.clone(), j);
                }
            }
        }
        let seen = by_key
            .into_iter()
            .map(|(key, j)| {
                let mut bits = Bits::default();
                for (&w, v) in words.iter().zip(key) {
                    bits.0[w] = v;
                }
                (bits, j)
            })
            .collect();
        (seen, meeting)
    }

    /// The first class not in `listed` (ascending) with a representative,
    /// else the first not in it: by merges with `listed`, not a pass over
    /// every class.
    fn first_outside(&self, listed: &[usize]) -> Option<usize> {
        let outside = |candidates: &mut dyn Iterator<Item = usize>| {
            let mut m = listed.iter().peekable();
            for j in candidates {
                while m.next_if(|&&x| x < j).is_some() {}
                if m.peek() != Some(&&j) {
                    return Some(j);
                }
            }
            None
        };
        outside(&mut self.with_rep.iter().copied())
            .or_else(|| outside(&mut (0..self.classes.len())))
    }

    /// [`Dim::project`] by asking every class (the reference for debug builds).
    fn project_all(&self, relevant: Bits) -> BTreeMap<Bits, usize> {
        let mut seen: BTreeMap<Bits, usize> = BTreeMap::new();
        for (j, c) in self.classes.iter().enumerate() {
            let e = seen.entry(c.terms.and(relevant)).or_insert(j);
            if self.classes[*e].rep.is_none() && c.rep.is_some() {
                *e = j;
            }
        }
        seen
    }
}

/// Fields an event may lack: Kubernetes metadata outside a pod, labels.
fn optional(field: &FieldKey) -> bool {
    matches!(
        field.field,
        Field::K8sNamespace | Field::K8sPod | Field::K8sContainer | Field::K8sLabel
    )
}

/// The classes of `dim` in a hook of `n_terms` terms. A class's `terms` is
/// the full set (the stored set, of tested terms, with every term that
/// does not test the dimension), so that intersections over dimensions
/// give the terms an event matches.
fn dim_classes(dim: &Dimension, field: &FieldKey, right: Option<&FieldKey>, n_terms: u32) -> Dim {
    let mut classes = Vec::new();
    let mut complete = true;
    let untested = Bits::of(&dim.full_set(&[], n_terms));
    let full = |set: &TermSet| Bits::of(set).or(untested);
    // Entries hold changes from their bases: their sets, resolved.
    let resolved = dim.resolve(
        &dim.bases(),
        &mut SortedSets,
        &dim.default,
        dim.suffix_default.as_ref(),
    );
    let push_value = |classes: &mut Vec<Class>, set: &TermSet, candidates: Vec<Value>| {
        // Both stored sets (tested terms only), so comparable as they are.
        let rep = candidates
            .into_iter()
            .find(|v| lookup_value(dim, v) == *set)
            .map(Rep::Value);
        classes.push(Class {
            terms: full(set),
            rep,
        });
    };
    let ty = field.field.ty();
    match dim.kind {
        DimensionKind::Path | DimensionKind::String => {
            let path = dim.kind == DimensionKind::Path;
            let max = match ty {
                FieldType::Str { max } => max,
                _ => usize::MAX,
            };
            for (e, set) in dim.exact.iter().zip(&resolved.exact) {
                push_value(&mut classes, set, vec![Value::Str(e.value.clone())]);
            }
            // Prefix side: the default is unreachable when the empty prefix
            // (or, for paths, `/`) is an entry.
            let universal_prefix = dim
                .prefix
                .iter()
                .any(|e| e.value.is_empty() || (path && e.value == "/"));
            let mut prefixes: Vec<(Option<&str>, &TermSet)> = Vec::new();
            if !universal_prefix {
                prefixes.push((None, &dim.default));
            }
            prefixes.extend(
                dim.prefix
                    .iter()
                    .zip(&resolved.prefix)
                    .map(|(e, set)| (Some(e.value.as_str()), set)),
            );
            let mut suffixes: Vec<(Option<&str>, Option<&TermSet>)> = Vec::new();
            match &dim.suffix_default {
                None => suffixes.push((None, None)),
                Some(sd) => {
                    if !dim.suffix.iter().any(|e| e.value.is_empty()) {
                        suffixes.push((None, Some(sd)));
                    }
                    suffixes.extend(
                        dim.suffix
                            .iter()
                            .zip(&resolved.suffix)
                            .map(|(e, set)| (Some(e.value.as_str()), Some(set))),
                    );
                }
            }
            if prefixes.len() * suffixes.len() > MAX_CLASSES_PER_DIMENSION {
                complete = false;
            }
            'outer: for (p, pset) in &prefixes {
                for (s, sset) in &suffixes {
                    if classes.len() >= MAX_CLASSES_PER_DIMENSION {
                        complete = false;
                        break 'outer;
                    }
                    let set = match sset {
                        Some(s) => lower::intersect(pset, s),
                        None => (*pset).clone(),
                    };
                    let base = p.unwrap_or(if path { "/" } else { "" });
                    let candidates = ["x", "policyc-witness", "y", "_", "", "x/x", "0"]
                        .iter()
                        .map(|f| format!("{base}{f}{}", s.unwrap_or("")))
                        .filter(|v| (!path || v.starts_with('/')) && v.len() <= max)
                        .map(Value::Str)
                        .collect();
                    push_value(&mut classes, &set, candidates);
                }
            }
        }
        DimensionKind::Int => {
            // The kernel's values: 16-bit ports, 32-bit ids (the "no id"
            // 4294967295 included, which only the login uid names: `unset`).
            let max = if ty == FieldType::Port {
                65535
            } else {
                UNSET_ID
            };
            let int = |n: u64| {
                if n == UNSET_ID && ty == FieldType::LoginUid {
                    Value::Unset
                } else {
                    Value::Int(n)
                }
            };
            // Values an event (and `policyc explain`) can carry.
            let writable =
                |n: &u64| *n <= ty.max_number() || (*n == UNSET_ID && ty == FieldType::LoginUid);
            for (r, set) in dim
                .ranges
                .iter()
                .zip(dim.resolve_ranges(&mut SortedSets, &dim.default))
            {
                // Both ends lie in the interval, whose set `set` is: no
                // lookup to check them (a walk over the intervals before
                // it, per interval).
                let rep = [r.lo, r.hi]
                    .into_iter()
                    .find(writable)
                    .map(|n| Rep::Value(int(n)));
                debug_assert!(rep.as_ref().is_none_or(|v| match v {
                    Rep::Value(v) => lookup_value(dim, v) == set,
                    _ => false,
                }));
                classes.push(Class {
                    terms: full(&set),
                    rep,
                });
            }
            let inside = |n: u64| {
                let i = dim.ranges.partition_point(|r| r.hi < n);
                dim.ranges.get(i).is_some_and(|r| r.lo <= n)
            };
            let gaps: Vec<u64> = std::iter::once(0)
                .chain(dim.ranges.iter().map(|r| r.hi.saturating_add(1)))
                .filter(|&n| n <= max && !inside(n))
                .collect();
            if !gaps.is_empty() {
                let candidates = gaps.into_iter().filter(writable).map(int).collect();
                push_value(&mut classes, &dim.default, candidates);
            }
            for (e, set) in dim.exact.iter().zip(&resolved.exact) {
                push_value(&mut classes, set, vec![Value::Name(e.value.clone())]);
            }
        }
        DimensionKind::Ip => {
            for (e, set) in dim.prefix.iter().zip(&resolved.prefix) {
                let candidates = e
                    .value
                    .parse::<IpNet>()
                    .map(|n| {
                        // A host address first (`10.0.0.1` rather than `10.0.0.0`).
                        let mut v: Vec<IpAddr> = bump(n.network())
                            .filter(|a| n.contains(a))
                            .into_iter()
                            .collect();
                        v.extend([n.network(), n.broadcast()]);
                        v.into_iter().map(Value::Ip).collect()
                    })
                    .unwrap_or_default();
                push_value(&mut classes, set, candidates);
            }
            let all = |s: &str| dim.prefix.iter().any(|e| e.value == s);
            if !(all("0.0.0.0/0") && all("::/0")) {
                let candidates = ["192.0.2.1", "198.51.100.7", "2001:db8::1", "0.0.0.1"]
                    .iter()
                    .map(|a| Value::Ip(a.parse().expect("an address")))
                    .collect();
                push_value(&mut classes, &dim.default, candidates);
            }
        }
        DimensionKind::Enum | DimensionKind::Bool => {
            for (e, set) in dim.exact.iter().zip(&resolved.exact) {
                let v = if dim.kind == DimensionKind::Bool {
                    Value::Bool(e.value == "true")
                } else {
                    Value::Str(e.value.clone())
                };
                push_value(&mut classes, set, vec![v]);
            }
            let domain: Vec<Value> = match ty {
                FieldType::Bool => vec![Value::Bool(false), Value::Bool(true)],
                FieldType::Enum(list) => list.iter().map(|s| Value::Str(s.to_string())).collect(),
                _ => Vec::new(),
            };
            let key = |v: &Value| match v {
                Value::Bool(b) => b.to_string(),
                Value::Str(s) => s.clone(),
                _ => String::new(),
            };
            let rest: Vec<Value> = domain
                .into_iter()
                .filter(|v| !dim.exact.iter().any(|e| e.value == key(v)))
                .collect();
            if !rest.is_empty() {
                push_value(&mut classes, &dim.default, rest);
            }
        }
        DimensionKind::Caps => {
            if dim.masks.len() > MAX_CAP_MASKS {
                complete = false;
            }
            let n = dim.masks.len().min(MAX_CAP_MASKS);
            for bits in 0u32..(1 << n) {
                let held: BTreeSet<String> = (0..n)
                    .filter(|i| bits & (1 << i) != 0)
                    .flat_map(|i| dim.masks[i].caps.iter().cloned())
                    .collect();
                let v = Value::Caps(held);
                let set = lookup_value(dim, &v);
                push_value(&mut classes, &set, vec![v]);
            }
        }
        DimensionKind::Relation => {
            for (e, set) in dim.exact.iter().zip(&resolved.exact) {
                classes.push(Class {
                    terms: full(set),
                    rep: Some(Rep::Relation(e.value == "true")),
                });
            }
            if optional(field) || right.is_some_and(optional) {
                classes.push(Class {
                    terms: full(&dim.default),
                    rep: None,
                });
            }
        }
    }
    if dim.kind != DimensionKind::Relation && optional(field) {
        let set = dim.absent.clone().unwrap_or_else(|| {
            let mut s = dim.default.clone();
            if let Some(sd) = &dim.suffix_default {
                s = lower::intersect(&s, sd);
            }
            s
        });
        classes.push(Class {
            terms: full(&set),
            rep: Some(Rep::Absent),
        });
    }
    Dim {
        field: field.clone(),
        relation: dim
            .relation
            .as_ref()
            .zip(right)
            .map(|(r, right)| (r.op.clone(), right.clone())),
        classes,
        complete,
        by_term: Vec::new(),
        with_rep: Vec::new(),
        lacking: Vec::new(),
    }
}

fn bump(a: IpAddr) -> Option<IpAddr> {
    match a {
        IpAddr::V4(v) => u32::from(v).checked_add(1).map(|n| IpAddr::V4(n.into())),
        IpAddr::V6(v) => u128::from(v).checked_add(1).map(|n| IpAddr::V6(n.into())),
    }
}

// ---------------------------------------------------------------------------
// Search.

/// What a visit of a partial or complete combination decides.
enum Step<T> {
    /// Go on (into the next dimension, or to the next combination).
    Continue,
    /// Do not extend this partial combination.
    Prune,
    /// Stop: the answer.
    Found(T),
}

/// The outcome of a bounded search.
enum Search<T> {
    Found(T),
    /// Every combination was visited without an answer.
    Exhausted,
    /// A bound was hit, or a dimension's classes are incomplete for a
    /// universal question.
    Aborted,
}

/// One dimension's classes projected onto the terms in question.
struct Projected {
    dim: usize,
    /// (projected terms, index of a class with that projection, preferring
    /// one with a representative).
    classes: Vec<(Bits, usize)>,
}

struct HookAnalysis<'a, 'p> {
    /// The rule whose questions are being asked.
    current: Cell<u32>,
    /// Questions cut short by a bound, and the rule of the first.
    cut: Cell<(usize, Option<u32>)>,
    hook: Hook,
    dims: Vec<Dim>,
    rule_terms: BTreeMap<u32, Bits>,
    program: &'a Program<'p>,
    /// The bundle's evaluator, prepared once for every witness of the hook.
    evaluator: Evaluator<'a>,
}

impl<'a, 'p> HookAnalysis<'a, 'p> {
    fn new(
        hook: Hook,
        table: &HookTable,
        fields: &BTreeMap<String, (FieldKey, Option<FieldKey>)>,
        program: &'a Program<'p>,
        bundle: &'a PolicyBundle,
    ) -> Self {
        let dims = table
            .dimensions
            .iter()
            .filter_map(|(name, dim)| {
                let (field, right) = fields.get(name)?;
                let mut d = dim_classes(dim, field, right.as_ref(), table.terms.len() as u32);
                let mut by_term = vec![Vec::new(); table.terms.len()];
                for (j, c) in d.classes.iter().enumerate() {
                    for t in c.terms.ones() {
                        by_term[t].push(j);
                    }
                }
                let n = d.classes.len();
                d.lacking = by_term
                    .iter()
                    .map(|holding| {
                        (holding.len() > n / 2).then(|| {
                            let mut h = holding.iter().peekable();
                            (0..n).filter(|j| h.next_if_eq(&j).is_none()).collect()
                        })
                    })
                    .collect();
                d.by_term = by_term;
                d.with_rep = (0..d.classes.len())
                    .filter(|&j| d.classes[j].rep.is_some())
                    .collect();
                Some(d)
            })
            .collect();
        let mut rule_terms: BTreeMap<u32, Bits> = BTreeMap::new();
        for t in table.terms.iter().filter(|t| !t.scope) {
            let e = rule_terms.entry(t.rule).or_default();
            *e = e.or(Bits::of(&[t.id]));
        }
        HookAnalysis {
            current: Cell::new(0),
            cut: Cell::new((0, None)),
            hook,
            dims,
            rule_terms,
            program,
            evaluator: Evaluator::new(bundle),
        }
    }

    /// The terms that can match an event together with one of `terms`:
    /// per dimension, the union of the classes holding one of `terms`,
    /// intersected over the dimensions. A rule none of whose terms is in it
    /// matches no event that a term of `terms` matches, so no search about
    /// the two can succeed. `None` (no filter) when a dimension's classes are
    /// incomplete, where a value outside them could still bring both.
    fn co_match(&self, terms: Bits) -> Option<Bits> {
        let mut out: Option<Bits> = None;
        for d in &self.dims {
            if !d.complete {
                return None;
            }
            let mut union = Bits::default();
            for t in terms.ones() {
                for &j in d.by_term.get(t).into_iter().flatten() {
                    union = union.or(d.classes[j].terms);
                }
            }
            out = Some(out.map_or(union, |o| o.and(union)));
        }
        out
    }

    fn rule(&self, id: u32) -> &RuleRef<'p> {
        &self.program.rules[id as usize]
    }

    fn monitor(&self, id: u32) -> bool {
        self.program.is_monitor(self.rule(id).file)
    }

    /// Depth-first search over the class combinations of the dimensions that
    /// separate the terms of `relevant`. `visit` sees the running
    /// intersection (within `relevant`) and the chosen (dimension, class)
    /// pairs; `complete` is true once every dimension has a class.
    fn search<T>(
        &self,
        relevant: Bits,
        universal: bool,
        budget: &mut usize,
        mut visit: impl FnMut(Bits, &[(usize, usize)], bool) -> Step<T>,
    ) -> Search<T> {
        let mut projected: Vec<Projected> = Vec::new();
        for (i, d) in self.dims.iter().enumerate() {
            let seen = d.project(relevant);
            if seen.len() == 1 && seen.contains_key(&relevant) {
                continue; // the dimension does not separate these terms
            }
            if universal && (!d.complete || seen.is_empty()) {
                return Search::Aborted;
            }
            projected.push(Projected {
                dim: i,
                classes: seen.into_iter().collect(),
            });
        }
        // Fewest classes first: contradictions show early.
        projected.sort_by_key(|p| p.classes.len());
        let mut left = MAX_NODES_PER_QUESTION.min(*budget);
        let mut chosen = Vec::new();
        let r = dfs(&projected, 0, relevant, &mut chosen, &mut left, &mut visit);
        *budget -= MAX_NODES_PER_QUESTION.min(*budget) - left;
        if matches!(r, Search::Aborted) {
            // `dfs` aborts only when out of nodes.
            let (n, first) = self.cut.get();
            self.cut.set((n + 1, first.or(Some(self.current.get()))));
        }
        r
    }

    /// A concrete event for the chosen classes, when every class has a
    /// representative; `fill` also gives a value to every other dimension.
    fn event(&self, chosen: &[(usize, usize)], fill: bool) -> Option<Event> {
        let mut fields: BTreeMap<FieldKey, Value> = BTreeMap::new();
        let mut relations = Vec::new();
        let mut chosen_dims = BTreeSet::new();
        for &(d, c) in chosen {
            chosen_dims.insert(d);
            match self.dims[d].classes[c].rep.as_ref()? {
                Rep::Value(v) => {
                    fields.insert(self.dims[d].field.clone(), v.clone());
                }
                Rep::Absent => {}
                Rep::Relation(t) => relations.push((d, *t)),
            }
        }
        if fill {
            for (d, dim) in self.dims.iter().enumerate() {
                if chosen_dims.contains(&d) || dim.relation.is_some() {
                    continue;
                }
                if let Some(Rep::Value(v)) = dim
                    .classes
                    .iter()
                    .find_map(|c| c.rep.as_ref().filter(|r| matches!(r, Rep::Value(_))))
                {
                    fields.entry(dim.field.clone()).or_insert_with(|| v.clone());
                }
            }
        }
        for (d, truth) in relations {
            let dim = &self.dims[d];
            let (op, right) = dim.relation.as_ref()?;
            let left = &dim.field;
            match (fields.get(left).cloned(), fields.get(right).cloned()) {
                (Some(l), Some(r)) => {
                    if relation_holds(&l, &r, op) != truth {
                        return None;
                    }
                }
                (None, Some(r)) => {
                    let l = neighbours(&r, left)
                        .into_iter()
                        .find(|l| relation_holds(l, &r, op) == truth)?;
                    fields.insert(left.clone(), l);
                }
                (l, None) => {
                    let l = l.or_else(|| sample(left))?;
                    let r = neighbours(&l, right)
                        .into_iter()
                        .find(|r| relation_holds(&l, r, op) == truth)?;
                    fields.insert(left.clone(), l);
                    fields.insert(right.clone(), r);
                }
            }
        }
        Some(Event {
            hook: self.hook,
            fields,
        })
    }

    /// Both evaluators' outcomes for `event`, when `holds` accepts both.
    fn confirm(&self, event: &Event, holds: &dyn Fn(&Outcome) -> bool) -> bool {
        holds(&self.evaluator.eval(event)) && holds(&eval_program(self.program, event))
    }

    /// A witness for the chosen classes that `holds` accepts.
    fn witness(
        &self,
        chosen: &[(usize, usize)],
        holds: &dyn Fn(&Outcome) -> bool,
    ) -> Option<Event> {
        [false, true]
            .into_iter()
            .find_map(|fill| self.event(chosen, fill).filter(|e| self.confirm(e, holds)))
    }

    fn run(&self, budget: &mut usize, out: &mut Vec<Finding>) {
        let decisive = |a: Option<Action>| matches!(a, Some(Action::Deny | Action::Kill));
        let mut skip: BTreeSet<u32> = BTreeSet::new();
        // Unsatisfiable, or matching every event.
        for (&id, &terms) in &self.rule_terms {
            self.current.set(id);
            let rule = self.rule(id).rule;
            if constant(&rule.condition) != Constant::Unknown
                || matches!(rule.condition, Cond::True | Cond::False)
            {
                // Reported by `always_true` / `always_false`, or meant.
                if constant(&rule.condition) == Constant::False {
                    skip.insert(id);
                }
                continue;
            }
            let unsat = self.search(terms, true, budget, |cur, _, complete| {
                if !cur.meets(terms) {
                    Step::Prune
                } else if complete {
                    Step::Found(())
                } else {
                    Step::Continue
                }
            });
            if matches!(unsat, Search::Exhausted) {
                skip.insert(id);
                out.push(Finding {
                    hook: self.hook,
                    rule: id,
                    kind: FindingKind::Unsatisfiable,
                    witness: None,
                });
                continue;
            }
            let every = self.search(terms, true, budget, |cur, _, _| {
                if cur.meets(terms) {
                    Step::Continue
                } else {
                    Step::Found(())
                }
            });
            if matches!(every, Search::Exhausted) {
                out.push(Finding {
                    hook: self.hook,
                    rule: id,
                    kind: FindingKind::MatchesEveryEvent,
                    witness: None,
                });
            }
        }
        // Shadowed allow and deny rules, and allow/deny overlaps.
        for (&id, &terms) in &self.rule_terms {
            self.current.set(id);
            let rule = self.rule(id).rule;
            if skip.contains(&id) {
                continue;
            }
            let monitor = self.monitor(id);
            // The rules that decide over this one: for an allow, deny/kill
            // rules; for a deny, kill rules. An enforced rule is decided only
            // by enforced ones.
            let over: Vec<u32> = self
                .rule_terms
                .keys()
                .copied()
                .filter(|&o| o != id && !skip.contains(&o) && (monitor || !self.monitor(o)))
                .filter(|&o| {
                    let a = self.rule(o).rule.action;
                    match rule.action {
                        Some(Action::Allow) => decisive(a),
                        Some(Action::Deny) => a == Some(Action::Kill),
                        _ => false,
                    }
                })
                .collect();
            // Rules of `over` that cannot match an event with this one
            // decide none of its events: when none can, it is neither
            // shadowed nor overlapping (what the searches below would find,
            // at a cost of every class per question). The searches keep the
            // whole `over`, so their witnesses are those found before.
            let co = self.co_match(terms);
            let can_meet = |o: &u32| co.is_none_or(|co| co.meets(self.rule_terms[o]));
            if !over.iter().any(can_meet) {
                continue;
            }
            let verdict_of = move |o: &Outcome| if monitor { o.would_verdict } else { o.verdict };
            let wanted = move |v: Verdict| match rule.action {
                Some(Action::Allow) => v != Verdict::Allow,
                _ => v == Verdict::Kill,
            };
            let over_bits = over
                .iter()
                .fold(Bits::default(), |b, o| b.or(self.rule_terms[o]));
            // Shadowed: no combination where this rule matches and none of
            // `over` does.
            let relevant = terms.or(over_bits);
            let escape = self.search(relevant, true, budget, |cur, _, complete| {
                if !cur.meets(terms) {
                    Step::Prune
                } else if complete && !cur.meets(over_bits) {
                    Step::Found(())
                } else {
                    Step::Continue
                }
            });
            if matches!(escape, Search::Exhausted) {
                let holds = |o: &Outcome| o.matched.contains(&id) && wanted(verdict_of(o));
                let witness = self.search(relevant, false, budget, |cur, chosen, complete| {
                    if !cur.meets(terms) {
                        Step::Prune
                    } else if complete {
                        self.witness(chosen, &holds)
                            .map_or(Step::Continue, Step::Found)
                    } else {
                        Step::Continue
                    }
                });
                let witness = match witness {
                    Search::Found(w) => Some(w),
                    _ => None,
                };
                // Name the rules that can match the same events.
                let by: Vec<u32> = over
                    .iter()
                    .copied()
                    .filter(can_meet)
                    .filter(|o| {
                        let both = terms.or(self.rule_terms[o]);
                        let ot = self.rule_terms[o];
                        !matches!(
                            self.search(both, false, budget, |cur, _, complete| {
                                if !cur.meets(terms) || !cur.meets(ot) {
                                    Step::Prune
                                } else if complete {
                                    Step::Found(())
                                } else {
                                    Step::Continue
                                }
                            }),
                            Search::Exhausted
                        )
                    })
                    .collect();
                out.push(Finding {
                    hook: self.hook,
                    rule: id,
                    kind: FindingKind::Shadowed { by },
                    witness,
                });
                continue;
            }
            if rule.action != Some(Action::Allow) {
                continue;
            }
            for &d in over.iter().filter(|o| can_meet(o)) {
                let dt = self.rule_terms[&d];
                let holds = |o: &Outcome| {
                    o.matched.contains(&id) && o.matched.contains(&d) && wanted(verdict_of(o))
                };
                let found = self.search(terms.or(dt), false, budget, |cur, chosen, complete| {
                    if !cur.meets(terms) || !cur.meets(dt) {
                        Step::Prune
                    } else if complete {
                        self.witness(chosen, &holds)
                            .map_or(Step::Continue, Step::Found)
                    } else {
                        Step::Continue
                    }
                });
                if let Search::Found(w) = found {
                    out.push(Finding {
                        hook: self.hook,
                        rule: id,
                        kind: FindingKind::Overlap { deny: d },
                        witness: Some(w),
                    });
                }
            }
        }
    }
}

fn dfs<T>(
    dims: &[Projected],
    depth: usize,
    cur: Bits,
    chosen: &mut Vec<(usize, usize)>,
    left: &mut usize,
    visit: &mut impl FnMut(Bits, &[(usize, usize)], bool) -> Step<T>,
) -> Search<T> {
    if *left == 0 {
        return Search::Aborted;
    }
    *left -= 1;
    let complete = depth == dims.len();
    match visit(cur, chosen, complete) {
        Step::Found(t) => return Search::Found(t),
        Step::Prune => return Search::Exhausted,
        Step::Continue if complete => return Search::Exhausted,
        Step::Continue => {}
    }
    let p = &dims[depth];
    let mut aborted = false;
    for &(bits, class) in &p.classes {
        chosen.push((p.dim, class));
        let r = dfs(dims, depth + 1, cur.and(bits), chosen, left, visit);
        chosen.pop();
        match r {
            Search::Found(t) => return Search::Found(t),
            Search::Aborted => {
                aborted = true;
                break;
            }
            Search::Exhausted => {}
        }
    }
    if aborted {
        Search::Aborted
    } else {
        Search::Exhausted
    }
}

/// A plausible value of a field, for a relation side no dimension fixes.
fn sample(field: &FieldKey) -> Option<Value> {
    Some(match field.field.ty() {
        FieldType::Uid | FieldType::LoginUid | FieldType::Gid => Value::Int(1000),
        FieldType::Port => Value::Int(8080),
        FieldType::Path => Value::Str("/x".into()),
        FieldType::Str { .. } => Value::Str("x".into()),
        FieldType::Bool => Value::Bool(true),
        FieldType::Enum(list) => Value::Str(list.first()?.to_string()),
        FieldType::Ip => Value::Ip("192.0.2.1".parse().ok()?),
        FieldType::Caps => return None,
    })
}

/// Values near `v` for the other side of a relation.
fn neighbours(v: &Value, field: &FieldKey) -> Vec<Value> {
    let mut out = vec![v.clone()];
    match v {
        Value::Int(n) => {
            out.push(Value::Int(n + 1));
            out.extend(n.checked_sub(1).map(Value::Int));
        }
        Value::Unset => out.push(Value::Int(0)),
        Value::Str(s) => out.push(Value::Str(format!("{s}x"))),
        Value::Bool(b) => out.push(Value::Bool(!b)),
        Value::Ip(a) => out.extend(bump(*a).map(Value::Ip)),
        _ => {}
    }
    out.extend(sample(field));
    // Only values an event of that field can carry.
    let ty = field.field.ty();
    out.retain(|v| match v {
        Value::Int(n) => *n <= ty.max_number(),
        Value::Unset => ty == FieldType::LoginUid,
        Value::Str(s) => ty != FieldType::Path || s.starts_with('/'),
        _ => true,
    });
    out
}

/// A relation's truth, as the evaluators compute it.
fn relation_holds(a: &Value, b: &Value, op: &str) -> bool {
    match (a, b) {
        (Value::Int(a), Value::Int(b)) => match op {
            "==" => a == b,
            "<" => a < b,
            _ => a <= b,
        },
        (a, b) => op == "==" && a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compile::{check, SourceFile};

    /// A question cut short by the node bounds is counted, at its rule.
    #[test]
    fn bounds_are_reported() {
        let text = "policy p {}\n\
            rule d on exec { when process.binary startswith \"/tmp/\" deny }\n\
            rule a on exec { when process.binary == \"/tmp/x\" allow }\n";
        let sources = [SourceFile {
            name: "p.policy".into(),
            text: text.into(),
        }];
        let (policies, diagnostics) = check(&sources);
        let policies = policies.unwrap_or_else(|| panic!("{diagnostics:?}"));
        let program = Program::new(&policies);
        // With the usual budget the analysis finishes: no cut.
        let (found, cuts) = analyze(&program);
        assert!(!found.is_empty() && cuts.is_empty(), "{found:?} {cuts:?}");
        // With no budget left every question is cut, from the first rule on.
        let tables = lower::lower_program(&program).unwrap();
        let terms = lower::terms_per_hook(&program).unwrap();
        let bundle = evaluation_bundle(&program, tables);
        let table = &bundle.spec.hooks[&Hook::Exec];
        let fields = terms[&Hook::Exec]
            .iter()
            .flat_map(|(_, c)| c)
            .map(|l| (l.dimension(), (l.field.clone(), None)))
            .collect();
        let analysis = HookAnalysis::new(Hook::Exec, table, &fields, &program, &bundle);
        let mut out = Vec::new();
        analysis.run(&mut 0, &mut out);
        let (questions, first) = analysis.cut.get();
        assert!(questions > 0 && out.is_empty());
        assert_eq!(first, Some(0));
    }
}
