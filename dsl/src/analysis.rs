//! Constant conditions: does a condition hold for every event, or for none?
//!
//! Used for the `always_true` / `always_false` warnings. The check is sound
//! but not complete: `Constant::True`/`False` are only claimed when proven,
//! from the condition's disjunctive normal form (each term checked for
//! contradictions among its tests on one field); anything it cannot prove
//! (or a form too large to expand) is `Unknown`.

use crate::checked::{Cond, FieldKey, Member, Pred, Value};
use crate::schema::FieldType;

/// What is known about a condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Constant {
    /// Holds for every event.
    True,
    /// Holds for no event.
    False,
    /// Depends on the event (or could not be proven constant).
    Unknown,
}

/// Most DNF terms expanded before giving up.
const LIMIT: usize = 512;

/// Decide whether `cond` is constant.
pub fn constant(cond: &Cond) -> Constant {
    if unsatisfiable(cond, true) {
        Constant::False
    } else if unsatisfiable(cond, false) {
        Constant::True
    } else {
        Constant::Unknown
    }
}

/// One literal of a term: a test or its negation (`None` for the constants).
type Lit<'c> = (Option<(&'c FieldKey, &'c Pred)>, bool);

/// Whether `cond` (or its negation when `positive` is false) has no model.
fn unsatisfiable(cond: &Cond, positive: bool) -> bool {
    match dnf(cond, positive) {
        Some(terms) => terms.iter().all(|t| term_unsatisfiable(t)),
        None => false,
    }
}

fn dnf(cond: &Cond, positive: bool) -> Option<Vec<Vec<Lit<'_>>>> {
    Some(match (cond, positive) {
        (Cond::True, true) | (Cond::False, false) => vec![vec![]],
        (Cond::True, false) | (Cond::False, true) => vec![],
        (Cond::Test(t), p) => vec![vec![(Some((&t.field, &t.pred)), p)]],
        (Cond::Not(c), p) => dnf(c, !p)?,
        (Cond::Or(cs), true) | (Cond::And(cs), false) => {
            let mut out = Vec::new();
            for c in cs {
                out.extend(dnf(c, positive)?);
                if out.len() > LIMIT {
                    return None;
                }
            }
            out
        }
        (Cond::And(cs), true) | (Cond::Or(cs), false) => {
            let mut out: Vec<Vec<Lit>> = vec![vec![]];
            for c in cs {
                let rhs = dnf(c, positive)?;
                if out.len().saturating_mul(rhs.len()) > LIMIT {
                    return None;
                }
                out = out
                    .iter()
                    .flat_map(|l| {
                        rhs.iter()
                            .map(move |r| l.iter().chain(r).cloned().collect())
                    })
                    .collect();
            }
            out
        }
    })
}

/// A term is contradictory when, for one field, its positive tests cannot
/// hold together or a negative test excludes every value the positives allow.
fn term_unsatisfiable(term: &[Lit<'_>]) -> bool {
    // A term of one literal contradicts itself only in the few cases
    // `field_unsatisfiable` knows; most rules have such terms, so answer
    // without grouping (this runs for every rule of every file).
    if let [(Some((field, pred)), positive)] = term {
        let (pos, neg): (&[&Pred], &[&Pred]) = if *positive {
            (&[*pred], &[])
        } else {
            (&[], &[*pred])
        };
        return field_unsatisfiable(field, pos, neg);
    }
    // Group by field; terms are short, so a vector beats a map.
    let mut by_field: Vec<(&FieldKey, Vec<&Pred>, Vec<&Pred>)> = Vec::new();
    for (lit, positive) in term {
        let Some((field, pred)) = lit else { continue };
        let i = match by_field.iter().position(|(f, _, _)| f == field) {
            Some(i) => i,
            None => {
                by_field.push((field, Vec::new(), Vec::new()));
                by_field.len() - 1
            }
        };
        if *positive {
            by_field[i].1.push(pred);
        } else {
            by_field[i].2.push(pred);
        }
    }
    by_field
        .iter()
        .any(|(field, pos, neg)| field_unsatisfiable(field, pos, neg))
}

fn field_unsatisfiable(field: &FieldKey, pos: &[&Pred], neg: &[&Pred]) -> bool {
    // The same predicate asserted and denied.
    if pos.iter().any(|p| neg.contains(p)) {
        return true;
    }
    // Every path starts with `/`: denying it is a contradiction.
    if field.field.ty() == FieldType::Path
        && neg
            .iter()
            .any(|p| matches!(p, Pred::StartsWith(q) if q == "/"))
    {
        return true;
    }
    // Two prefixes of one value: one must be a prefix of the other.
    fn prefix<'p>(p: &&'p Pred) -> Option<&'p str> {
        match p {
            Pred::StartsWith(q) => Some(q.as_str()),
            _ => None,
        }
    }
    if pos.iter().filter_map(prefix).any(|a| {
        pos.iter()
            .filter_map(prefix)
            .any(|b| !a.starts_with(b) && !b.starts_with(a))
    }) {
        return true;
    }
    if pos
        .iter()
        .any(|p| matches!(p, Pred::In(set) if set.is_empty()))
    {
        return true;
    }
    // Values a positive equality or finite set pins the field to.
    let pinned: Option<Vec<&Value>> = pos.iter().find_map(|p| match p {
        Pred::Eq(v) => Some(vec![v]),
        Pred::In(set) if set.iter().all(|m| matches!(m, Member::Value(_))) => Some(
            set.iter()
                .filter_map(|m| match m {
                    Member::Value(v) => Some(v),
                    _ => None,
                })
                .collect(),
        ),
        _ => None,
    });
    let Some(candidates) = pinned else {
        return false;
    };
    // With one positive test and no other, the pinned values satisfy it.
    if pos.len() == 1 && neg.is_empty() {
        return false;
    }
    // Symbolic names and relations cannot be decided here.
    if candidates.iter().any(|v| matches!(v, Value::Name(_))) {
        return false;
    }
    if pos
        .iter()
        .chain(neg)
        .any(|p| matches!(p, Pred::Relation(..)))
    {
        return false;
    }
    let other = |_: &FieldKey| None;
    candidates.iter().all(|v| {
        !(pos.iter().all(|p| p.holds(v, &other)) && neg.iter().all(|p| !p.holds(v, &other)))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checked::Test;
    use crate::schema::Field;

    fn t(pred: Pred) -> Cond {
        Cond::Test(Test {
            field: FieldKey::plain(Field::ProcessBinary),
            pred,
        })
    }

    #[test]
    fn contradictions() {
        let a = t(Pred::Eq(Value::Str("/a".into())));
        let b = t(Pred::Eq(Value::Str("/b".into())));
        assert_eq!(
            constant(&Cond::And(vec![a.clone(), b.clone()])),
            Constant::False
        );
        assert_eq!(
            constant(&Cond::Or(vec![a.clone(), Cond::Not(Box::new(a.clone()))])),
            Constant::True
        );
        assert_eq!(constant(&Cond::Or(vec![a.clone(), b])), Constant::Unknown);
        let prefix = t(Pred::StartsWith("/usr/".into()));
        assert_eq!(
            constant(&Cond::And(vec![a, prefix.clone()])),
            Constant::False
        );
        let tmp = t(Pred::StartsWith("/tmp/".into()));
        assert_eq!(
            constant(&Cond::And(vec![prefix.clone(), tmp])),
            Constant::False
        );
        let nested = t(Pred::StartsWith("/usr/bin/".into()));
        assert_eq!(
            constant(&Cond::And(vec![prefix, nested])),
            Constant::Unknown
        );
        // Every path starts with `/`.
        assert_eq!(constant(&t(Pred::StartsWith("/".into()))), Constant::True);
    }
}
