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

/// Conditions of at most this many nodes have their DNF terms enumerated
/// one at a time ([`each_term`], which recurses once per node of a term);
/// larger ones are expanded into a vector ([`dnf`], which recurses once per
/// level of nesting).
const ENUMERATE_NODES: usize = 256;

/// Whether `cond` (or its negation when `positive` is false) has no model.
fn unsatisfiable(cond: &Cond, positive: bool) -> bool {
    let Some(shape) = dnf_shape(cond, positive) else {
        // Too many terms: the analysis gives up (as `dnf` would).
        return false;
    };
    if shape.nodes > ENUMERATE_NODES {
        return match dnf(cond, positive) {
            Some(terms) => terms.iter().all(|t| term_unsatisfiable(t)),
            None => false,
        };
    }
    // The same terms as `dnf`, in the same order with their literals in the
    // same order, without building them all: the first satisfiable term
    // answers. Every rule of every file goes through here twice, and the
    // vectors of `dnf` were most of the analysis' cost.
    let mut pending = vec![(cond, positive)];
    let mut lits = Vec::new();
    each_term(&mut pending, &mut lits, &mut |term| {
        term_unsatisfiable(term)
    })
}

/// How large `dnf(cond, positive)` is: its number of terms, and the number
/// of condition nodes walked. `None` exactly when `dnf` gives up (the same
/// checks against [`LIMIT`] at the same steps).
struct Shape {
    terms: usize,
    nodes: usize,
}

fn dnf_shape(cond: &Cond, positive: bool) -> Option<Shape> {
    Some(match (cond, positive) {
        (Cond::True, true) | (Cond::False, false) => Shape { terms: 1, nodes: 1 },
        (Cond::True, false) | (Cond::False, true) => Shape { terms: 0, nodes: 1 },
        (Cond::Test(_), _) => Shape { terms: 1, nodes: 1 },
        (Cond::Not(c), p) => {
            let inner = dnf_shape(c, !p)?;
            Shape {
                terms: inner.terms,
                nodes: inner.nodes + 1,
            }
        }
        (Cond::Or(cs), true) | (Cond::And(cs), false) => {
            let mut shape = Shape { terms: 0, nodes: 1 };
            for c in cs {
                let part = dnf_shape(c, positive)?;
                shape.terms += part.terms;
                shape.nodes += part.nodes;
                if shape.terms > LIMIT {
                    return None;
                }
            }
            shape
        }
        (Cond::And(cs), true) | (Cond::Or(cs), false) => {
            let mut shape = Shape { terms: 1, nodes: 1 };
            for c in cs {
                let part = dnf_shape(c, positive)?;
                if shape.terms.saturating_mul(part.terms) > LIMIT {
                    return None;
                }
                shape.terms *= part.terms;
                shape.nodes += part.nodes;
            }
            shape
        }
    })
}

/// Calls `f` on each term of the DNF of the conjunction of `pending` (a
/// stack: the last entry comes first), with `lits` before it, in `dnf`'s
/// order, until `f` returns false; returns false when it did. `pending` and
/// `lits` are left as they were.
fn each_term<'c>(
    pending: &mut Vec<(&'c Cond, bool)>,
    lits: &mut Vec<Lit<'c>>,
    f: &mut impl FnMut(&[Lit<'c>]) -> bool,
) -> bool {
    let Some((cond, positive)) = pending.pop() else {
        return f(lits);
    };
    let go_on = match (cond, positive) {
        (Cond::True, true) | (Cond::False, false) => each_term(pending, lits, f),
        // No term.
        (Cond::True, false) | (Cond::False, true) => true,
        (Cond::Test(t), p) => {
            lits.push((Some((&t.field, &t.pred)), p));
            let go_on = each_term(pending, lits, f);
            lits.pop();
            go_on
        }
        (Cond::Not(c), p) => {
            pending.push((c, !p));
            let go_on = each_term(pending, lits, f);
            pending.pop();
            go_on
        }
        (Cond::Or(cs), true) | (Cond::And(cs), false) => {
            let mut go_on = true;
            for c in cs {
                pending.push((c, positive));
                go_on = each_term(pending, lits, f);
                pending.pop();
                if !go_on {
                    break;
                }
            }
            go_on
        }
        (Cond::And(cs), true) | (Cond::Or(cs), false) => {
            let depth = pending.len();
            // Reversed: the first operand is popped first, so its literals
            // come first, as in `dnf`'s products.
            pending.extend(cs.iter().rev().map(|c| (c, positive)));
            let go_on = each_term(pending, lits, f);
            pending.truncate(depth);
            go_on
        }
    };
    pending.push((cond, positive));
    go_on
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
                let mut rhs = dnf(c, positive)?;
                if out.len().saturating_mul(rhs.len()) > LIMIT {
                    return None;
                }
                // One term on the right (a test, or a conjunction of tests:
                // most operands of a rule's `and`) extends every term in
                // place instead of rebuilding the product.
                if let [single] = rhs.as_mut_slice() {
                    for term in &mut out {
                        term.extend_from_slice(single);
                    }
                    continue;
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
fn term_unsatisfiable<'c>(term: &[Lit<'c>]) -> bool {
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
    // Each field, in order of first appearance, with its positive and
    // negative tests in term order. Terms are short: rescanning them beats
    // grouping into a vector of vectors per term (the allocations were most
    // of the cost), and two buffers serve every field.
    let (mut pos, mut neg): (Vec<&'c Pred>, Vec<&'c Pred>) = (Vec::new(), Vec::new());
    let field_of = |lit: &Lit<'c>| -> Option<&'c FieldKey> { lit.0.map(|(field, _)| field) };
    term.iter().enumerate().any(|(i, lit)| {
        let Some(field) = field_of(lit) else {
            return false;
        };
        if term[..i].iter().any(|l| field_of(l) == Some(field)) {
            return false; // Checked with its first appearance.
        }
        pos.clear();
        neg.clear();
        for (l, positive) in &term[i..] {
            match l {
                Some((f, pred)) if *f == field => {
                    if *positive {
                        pos.push(pred);
                    } else {
                        neg.push(pred);
                    }
                }
                _ => {}
            }
        }
        field_unsatisfiable(field, &pos, &neg)
    })
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
    // The first positive equality or finite set pins the field's values.
    let pinning = pos.iter().find(|p| match p {
        Pred::Eq(_) => true,
        Pred::In(set) => set.iter().all(|m| matches!(m, Member::Value(_))),
        _ => false,
    });
    let Some(pinning) = pinning else {
        return false;
    };
    // With one positive test and no other, the pinned values satisfy it.
    if pos.len() == 1 && neg.is_empty() {
        return false;
    }
    let candidates: Vec<&Value> = match pinning {
        Pred::Eq(v) => vec![v],
        Pred::In(set) => set
            .iter()
            .filter_map(|m| match m {
                Member::Value(v) => Some(v),
                _ => None,
            })
            .collect(),
        _ => unreachable!("`pinning` is an equality or a set"),
    };
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

    /// A pseudo-random condition of about `budget` nodes over a few tests.
    fn random_cond(seed: &mut u64, budget: usize) -> Cond {
        *seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let pick = (*seed >> 33) as usize;
        if budget <= 1 {
            return match pick % 6 {
                0 => Cond::True,
                1 => Cond::False,
                n => t(Pred::StartsWith(format!("/{n}/"))),
            };
        }
        match pick % 4 {
            0 => Cond::Not(Box::new(random_cond(seed, budget - 1))),
            kind => {
                let n = 2 + pick / 4 % 3;
                let cs = (0..n).map(|_| random_cond(seed, budget / n)).collect();
                if kind == 1 {
                    Cond::Or(cs)
                } else {
                    Cond::And(cs)
                }
            }
        }
    }

    #[test]
    fn enumerated_terms_are_dnf_terms_in_order() {
        let mut seed = 7;
        for i in 0..2_000 {
            let cond = random_cond(&mut seed, 1 + i % 40);
            for positive in [true, false] {
                let expected = dnf(&cond, positive);
                assert_eq!(
                    dnf_shape(&cond, positive).map(|s| s.terms),
                    expected.as_ref().map(Vec::len),
                    "{cond:?}"
                );
                let Some(expected) = expected else { continue };
                let mut terms = Vec::new();
                let mut pending = vec![(&cond, positive)];
                let mut lits = Vec::new();
                assert!(each_term(&mut pending, &mut lits, &mut |term| {
                    terms.push(term.to_vec());
                    true
                }));
                assert_eq!(terms, expected, "{cond:?}");
                assert_eq!(pending.len(), 1);
                assert!(lits.is_empty());
            }
        }
    }
}
