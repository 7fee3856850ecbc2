//! The parser's fast path: a hand-written, scannerless recursive-descent
//! parser for one declaration chunk (see `parser::chunks`).
//!
//! It mirrors `grammar.pest` rule by rule — same ordered choices, same
//! lookaheads, same implicit whitespace and comments, and the same spans pest
//! gives (including the trailing whitespace pest puts into a rule that ends
//! with an optional part, e.g. `audit` without a message). It accepts only a
//! subset of what pest accepts: whenever it is not certain that pest would
//! take the same path — an unknown token, a keyword where a name belongs
//! (pest, unlike this parser, takes `not` as a name), a nesting deeper than
//! [`MAX_DEPTH`], anything that fails — it returns `None`, and the chunk is
//! parsed by pest exactly as before. So every syntax error is still pest's;
//! when this parser returns a tree, it is the tree pest's builder would have
//! built, with the same invalid-escape errors. `tests/fast_parser.rs` checks
//! the equivalence on generated and mutated sources.

use crate::ast::*;
use crate::diagnostic::Error;
use crate::parser::decode_string;

/// Parenthesised conditions nested deeper than this go to pest (which guards
/// its own stack).
const MAX_DEPTH: usize = 32;

// Every keyword of the grammar. pest's `ident` refuses all of them except
// `not`; this parser refuses all of them and falls back.
use crate::parser::KEYWORDS;

/// Parse one declaration chunk `text` that starts at byte `base` of its file.
/// `Some` only when pest's `item_only` would match the whole chunk; then the
/// item and the invalid-escape errors of its strings, in source order.
pub(crate) fn parse_item(text: &str, base: usize) -> Option<(Item, Vec<Error>)> {
    let mut p = P {
        s: text.as_bytes(),
        text,
        base,
        errors: Vec::new(),
        depth: 0,
    };
    let i = p.skip(0);
    let (item, end) = match p.word(i) {
        b"policy" => p.policy(i)?,
        b"set" => p.set_decl(i)?,
        b"let" => p.let_decl(i)?,
        b"rule" => p.rule(i)?,
        b"default" => p.default_decl(i)?,
        b"test" => p.test_decl(i)?,
        _ => return None,
    };
    if p.skip(end) != text.len() {
        return None;
    }
    Some((item, p.errors))
}

/// Whether `w` is one of [`KEYWORDS`] (a `match`, which compiles to a few
/// comparisons, where a scan of the list costs 30).
fn is_keyword(w: &[u8]) -> bool {
    let hit = matches!(
        w,
        b"policy"
            | b"set"
            | b"let"
            | b"rule"
            | b"on"
            | b"when"
            | b"unless"
            | b"allow"
            | b"deny"
            | b"kill"
            | b"audit"
            | b"severity"
            | b"count"
            | b"rate"
            | b"per"
            | b"default"
            | b"test"
            | b"expect"
            | b"no"
            | b"and"
            | b"or"
            | b"not"
            | b"in"
            | b"startswith"
            | b"endswith"
            | b"matches"
            | b"has"
            | b"true"
            | b"false"
            | b"unset"
    );
    debug_assert_eq!(hit, KEYWORDS.iter().any(|k| k.as_bytes() == w));
    hit
}

#[inline]
fn ident_char(b: u8) -> bool {
    crate::parser::IDENT_BYTE[usize::from(b)]
}

struct P<'a> {
    s: &'a [u8],
    text: &'a str,
    base: usize,
    errors: Vec<Error>,
    depth: usize,
}

impl<'a> P<'a> {
    #[inline]
    fn at(&self, i: usize) -> u8 {
        self.s.get(i).copied().unwrap_or(0)
    }

    #[inline]
    fn span(&self, start: usize, end: usize) -> Span {
        self.base + start..self.base + end
    }

    fn ident_node(&self, start: usize, end: usize) -> Ident {
        Ident {
            name: self.text[start..end].to_string(),
            span: self.span(start, end),
        }
    }

    /// pest's implicit `(WHITESPACE | COMMENT)*`.
    #[inline]
    fn skip(&self, mut i: usize) -> usize {
        let s = self.s;
        loop {
            match s.get(i) {
                Some(b' ' | b'\t' | b'\r' | b'\n') => i += 1,
                Some(0xEF) if s.get(i + 1) == Some(&0xBB) && s.get(i + 2) == Some(&0xBF) => i += 3,
                Some(b'/') if s.get(i + 1) == Some(&b'/') => {
                    i += 2;
                    while i < s.len() && s[i] != b'\n' {
                        i += 1;
                    }
                }
                _ => return i,
            }
        }
    }

    /// The run of identifier characters starting at `i` (possibly empty).
    #[inline]
    fn word(&self, i: usize) -> &'a [u8] {
        let rest = &self.s[i.min(self.s.len())..];
        let len = rest
            .iter()
            .position(|&b| !ident_char(b))
            .unwrap_or(rest.len());
        &rest[..len]
    }

    /// `"kw" ~ !ident_char` at `i`.
    #[inline]
    fn kw(&self, i: usize, kw: &str) -> bool {
        self.s[i.min(self.s.len())..].starts_with(kw.as_bytes())
            && !ident_char(self.at(i + kw.len()))
    }

    /// `ident` at `i`: its end. `None` for anything pest might read otherwise.
    fn ident(&self, i: usize) -> Option<usize> {
        let c = self.at(i);
        if !(c.is_ascii_alphabetic() || c == b'_') {
            return None;
        }
        let w = self.word(i);
        if is_keyword(w) {
            return None;
        }
        Some(i + w.len())
    }

    /// `dotted` at `i`: its end. A `.` not followed by an identifier falls
    /// back (pest would stop before it and then fail, or, for `a.not`, read
    /// a name this parser does not).
    fn dotted(&self, i: usize) -> Option<usize> {
        let mut end = self.ident(i)?;
        while self.at(end) == b'.' {
            end = self.ident(end + 1)?;
        }
        Some(end)
    }

    /// `expect` a byte at `i` (no skip).
    #[inline]
    fn byte(&self, i: usize, b: u8) -> Option<usize> {
        (self.at(i) == b).then_some(i + 1)
    }

    fn digits(&self, mut i: usize) -> usize {
        while self.at(i).is_ascii_digit() {
            i += 1;
        }
        i
    }

    // ---- literals -------------------------------------------------------

    /// `string` at `i`: the literal and its end.
    fn string(&mut self, i: usize) -> Option<(StringLit, usize)> {
        if self.at(i) != b'"' {
            return None;
        }
        let s = self.s;
        let body_start = i + 1;
        let mut j = body_start;
        let mut escaped = false;
        loop {
            let c = *s.get(j)?;
            match c {
                b'"' => break,
                b'\\' => {
                    // `"\\" ~ ANY`: any character, newline included.
                    if j + 1 >= s.len() {
                        return None;
                    }
                    escaped = true;
                    j += 2;
                }
                0x00..=0x08 | 0x0A..=0x1F | 0x7F => return None,
                _ => j += 1,
            }
        }
        let body = &self.text[body_start..j];
        let value = if escaped {
            let (value, errors) = decode_string(body, self.base + body_start);
            self.errors.extend(errors);
            value
        } else {
            body.to_string()
        };
        Some((
            StringLit {
                value,
                span: self.span(i, j + 1),
            },
            j + 1,
        ))
    }

    /// `ASCII_DIGIT{min,max}` (greedy) at `i`.
    fn digits_upto(&self, i: usize, min: usize, max: usize) -> Option<usize> {
        let mut n = 0;
        while n < max && self.at(i + n).is_ascii_digit() {
            n += 1;
        }
        (n >= min).then_some(i + n)
    }

    fn hex_upto(&self, i: usize, max: usize) -> usize {
        let mut n = 0;
        while n < max && self.at(i + n).is_ascii_hexdigit() {
            n += 1;
        }
        i + n
    }

    fn ipv4(&self, i: usize) -> Option<usize> {
        let mut j = self.digits_upto(i, 1, 3)?;
        for _ in 0..3 {
            if self.at(j) != b'.' {
                return None;
            }
            j = self.digits_upto(j + 1, 1, 3)?;
        }
        Some(j)
    }

    fn ipv6(&self, i: usize) -> Option<usize> {
        let mut j = i;
        let mut reps = 0;
        while reps < 7 {
            let h = self.hex_upto(j, 4);
            if self.at(h) != b':' {
                break;
            }
            j = h + 1;
            reps += 1;
        }
        if reps < 2 {
            return None;
        }
        if let Some(e) = self.ipv4(j) {
            return Some(e);
        }
        Some(self.hex_upto(j, 4))
    }

    /// `ip` at `i`: its end.
    fn ip(&self, i: usize) -> Option<usize> {
        let mut e = self.ipv6(i).or_else(|| self.ipv4(i))?;
        if self.at(e) == b'/' {
            let d = self.digits(e + 1);
            if d > e + 1 {
                e = d;
            }
        }
        (self.at(e) != b'/').then_some(e)
    }

    /// `literal` at `i`, trying pest's alternatives in pest's order. `None`
    /// when no alternative matches (exactly when pest's `literal` fails).
    fn literal(&mut self, i: usize) -> Option<(Literal, usize)> {
        let c = self.at(i);
        if c == b'"' {
            let (s, end) = self.string(i)?;
            return Some((
                Literal {
                    kind: LiteralKind::Str(s.value),
                    span: s.span,
                },
                end,
            ));
        }
        let lit = |p: &Self, kind, end| {
            Some((
                Literal {
                    kind,
                    span: p.span(i, end),
                },
                end,
            ))
        };
        if c.is_ascii_digit() {
            // range = range_bound ~ ".." ~ range_bound
            let d1 = self.digits(i);
            if !ident_char(self.at(d1)) && self.at(d1) == b'.' && self.at(d1 + 1) == b'.' {
                let d2 = self.digits(d1 + 2);
                if d2 > d1 + 2 && !ident_char(self.at(d2)) {
                    let kind = LiteralKind::Range(
                        self.text[i..d1].to_string(),
                        self.text[d1 + 2..d2].to_string(),
                    );
                    return lit(self, kind, d2);
                }
            }
        }
        if c.is_ascii_hexdigit() || c == b':' {
            if let Some(end) = self.ip(i) {
                return lit(self, LiteralKind::Ip(self.text[i..end].to_string()), end);
            }
        }
        if c.is_ascii_digit() {
            let d = self.digits(i);
            let next = self.at(d);
            if !(ident_char(next) || next == b'.') {
                return lit(self, LiteralKind::Int(self.text[i..d].to_string()), d);
            }
            return None;
        }
        if self.s[i..].starts_with(b"CAP_") && ident_char(self.at(i + 4)) {
            let end = i + 4 + self.word(i + 4).len();
            return lit(self, LiteralKind::Cap(self.text[i..end].to_string()), end);
        }
        if self.kw(i, "unset") {
            return lit(self, LiteralKind::Unset, i + 5);
        }
        if self.kw(i, "true") {
            return lit(self, LiteralKind::Bool(true), i + 4);
        }
        if self.kw(i, "false") {
            return lit(self, LiteralKind::Bool(false), i + 5);
        }
        None
    }

    /// `set_literal` at `i`.
    fn set_literal(&mut self, i: usize) -> Option<(SetLiteral, usize)> {
        let mut j = self.skip(self.byte(i, b'{')?);
        let mut elements = Vec::new();
        if self.at(j) != b'}' {
            let (l, end) = self.literal(j)?;
            elements.push(l);
            j = self.skip(end);
            while self.at(j) == b',' {
                j = self.skip(j + 1);
                match self.literal(j) {
                    Some((l, end)) => {
                        elements.push(l);
                        j = self.skip(end);
                    }
                    None => break,
                }
            }
        }
        let end = self.byte(j, b'}')?;
        Some((
            SetLiteral {
                elements,
                span: self.span(i, end),
            },
            end,
        ))
    }

    /// `field_ref` at `i` (`dotted ~ index?`, no space before `[`).
    fn field_ref(&mut self, i: usize) -> Option<(FieldRef, usize)> {
        let dend = self.dotted(i)?;
        let name = self.ident_node(i, dend);
        let mut end = dend;
        let mut key = None;
        if self.at(dend) == b'[' {
            // index = !{ "[" ~ string ~ "]" }: anything unusual falls back.
            let j = self.skip(dend + 1);
            let (k, kend) = self.string(j)?;
            end = self.byte(self.skip(kend), b']')?;
            key = Some(k);
        }
        Some((
            FieldRef {
                name,
                key,
                span: self.span(i, end),
            },
            end,
        ))
    }

    // ---- conditions ------------------------------------------------------

    /// `expr` at `i`: the tree the builder makes of it and the end of pest's
    /// `expr` pair (which includes trailing whitespace when it has no `or`).
    fn expr(&mut self, i: usize) -> Option<(Expr, usize)> {
        let (first, first_end) = self.and_expr(i)?;
        let mut j = self.skip(first_end);
        if !self.kw(j, "or") {
            return Some((first, j));
        }
        let mut ops = Vec::with_capacity(4);
        ops.push(first);
        let mut last_end = first_end;
        while self.kw(j, "or") {
            let (e, end) = self.and_expr(self.skip(j + 2))?;
            ops.push(e);
            last_end = end;
            j = self.skip(end);
        }
        Some((
            Expr {
                kind: ExprKind::Or(ops),
                span: self.span(i, last_end),
            },
            last_end,
        ))
    }

    /// `and_expr` at `i`, as [`P::expr`].
    fn and_expr(&mut self, i: usize) -> Option<(Expr, usize)> {
        let (first, first_end) = self.unary(i)?;
        let mut j = self.skip(first_end);
        if !self.kw(j, "and") {
            return Some((first, j));
        }
        let mut ops = Vec::with_capacity(4);
        ops.push(first);
        let mut last_end = first_end;
        while self.kw(j, "and") {
            let (e, end) = self.unary(self.skip(j + 3))?;
            ops.push(e);
            last_end = end;
            j = self.skip(end);
        }
        Some((
            Expr {
                kind: ExprKind::And(ops),
                span: self.span(i, last_end),
            },
            last_end,
        ))
    }

    /// `unary` at `i`: `not_op* ~ primary`.
    fn unary(&mut self, i: usize) -> Option<(Expr, usize)> {
        let mut nots = Vec::new();
        let mut j = i;
        while self.kw(j, "not") {
            let k = self.skip(j + 3);
            if self.kw(k, "in") {
                // pest would read `not` as a field name here.
                return None;
            }
            nots.push(j);
            j = k;
        }
        let (mut e, end) = self.primary(j)?;
        for start in nots.into_iter().rev() {
            e = Expr {
                kind: ExprKind::Not(Box::new(e)),
                span: self.span(start, end),
            };
        }
        Some((e, end))
    }

    /// `primary` at `i`.
    fn primary(&mut self, i: usize) -> Option<(Expr, usize)> {
        let c = self.at(i);
        if c == b'(' {
            if self.depth >= MAX_DEPTH {
                return None;
            }
            self.depth += 1;
            let inner = self.expr(self.skip(i + 1));
            self.depth -= 1;
            let (e, end) = inner?;
            let close = self.byte(self.skip(end), b')')?;
            return Some((
                Expr {
                    kind: ExprKind::Paren(Box::new(e)),
                    span: self.span(i, close),
                },
                close,
            ));
        }
        if self.kw(i, "true") || self.kw(i, "false") {
            let len = if c == b't' { 4 } else { 5 };
            return Some((
                Expr {
                    kind: ExprKind::Bool(c == b't'),
                    span: self.span(i, i + len),
                },
                i + len,
            ));
        }
        let (field, fend) = self.field_ref(i)?;
        let k = self.skip(fend);
        let Some((op, op_end)) = self.operator(k) else {
            // Not a comparison: a reference (pest's `reference = { dotted }`).
            if field.key.is_some() {
                return None;
            }
            return Some((
                Expr {
                    kind: ExprKind::Ref(field.name),
                    span: self.span(i, fend),
                },
                fend,
            ));
        };
        let m = self.skip(op_end);
        let (operand, end) = if self.at(m) == b'{' {
            let (s, end) = self.set_literal(m)?;
            (Operand::Set(s), end)
        } else if let Some((l, end)) = self.literal(m) {
            (Operand::Literal(l), end)
        } else {
            let end = self.dotted(m)?;
            (Operand::Name(self.ident_node(m, end)), end)
        };
        Some((
            Expr {
                kind: ExprKind::Compare(Comparison {
                    field,
                    op: (op, self.span(k, op_end)),
                    operand,
                }),
                span: self.span(i, end),
            },
            end,
        ))
    }

    /// `operator` at `i`, in pest's order.
    fn operator(&self, i: usize) -> Option<(CompareOp, usize)> {
        let two = [self.at(i), self.at(i + 1)];
        let op = match &two {
            b"==" => return Some((CompareOp::Eq, i + 2)),
            b"!=" => return Some((CompareOp::Ne, i + 2)),
            b"<=" => return Some((CompareOp::Le, i + 2)),
            b">=" => return Some((CompareOp::Ge, i + 2)),
            [b'<', _] => return Some((CompareOp::Lt, i + 1)),
            [b'>', _] => return Some((CompareOp::Gt, i + 1)),
            _ => match self.word(i) {
                b"not" => {
                    let k = self.skip(i + 3);
                    return self.kw(k, "in").then_some((CompareOp::NotIn, k + 2));
                }
                b"in" => CompareOp::In,
                b"startswith" => CompareOp::StartsWith,
                b"endswith" => CompareOp::EndsWith,
                b"matches" => CompareOp::Matches,
                b"has" => CompareOp::Has,
                _ => return None,
            },
        };
        Some((op, i + op.as_str().len()))
    }

    // ---- declarations ----------------------------------------------------

    /// `name` (an `ident`) at `i`, then the position after the skip.
    fn name(&self, i: usize) -> Option<(Ident, usize)> {
        let end = self.ident(i)?;
        Some((self.ident_node(i, end), self.skip(end)))
    }

    /// Keyword `kw` at `i`, then the position after the skip.
    fn expect_kw(&self, i: usize, kw: &str) -> Option<usize> {
        self.kw(i, kw).then(|| self.skip(i + kw.len()))
    }

    fn policy(&mut self, i: usize) -> Option<(Item, usize)> {
        let j = self.expect_kw(i, "policy")?;
        let (name, j) = self.name(j)?;
        let mut j = self.skip(self.byte(j, b'{')?);
        let mut attrs = Vec::new();
        while self.at(j) != b'}' {
            let (attr_name, k) = self.name(j)?;
            let k = self.skip(self.byte(k, b'=')?);
            let (value, end) = match self.at(k) {
                b'"' => {
                    let (s, end) = self.string(k)?;
                    (AttrValue::Str(s), end)
                }
                b'{' => {
                    let (s, end) = self.set_literal(k)?;
                    (AttrValue::Set(s), end)
                }
                _ => {
                    let end = self.ident(k)?;
                    (AttrValue::Name(self.ident_node(k, end)), end)
                }
            };
            attrs.push(Attr {
                name: attr_name,
                value,
            });
            j = self.skip(end);
        }
        let end = j + 1;
        Some((
            Item::Policy(PolicyDecl {
                name,
                attrs,
                span: self.span(i, end),
            }),
            end,
        ))
    }

    fn set_decl(&mut self, i: usize) -> Option<(Item, usize)> {
        let j = self.expect_kw(i, "set")?;
        let (name, j) = self.name(j)?;
        let j = self.skip(self.byte(j, b'=')?);
        let (value, end) = self.set_literal(j)?;
        Some((
            Item::Set(SetDecl {
                name,
                value,
                span: self.span(i, end),
            }),
            end,
        ))
    }

    fn let_decl(&mut self, i: usize) -> Option<(Item, usize)> {
        let j = self.expect_kw(i, "let")?;
        let (name, j) = self.name(j)?;
        let j = self.skip(self.byte(j, b'=')?);
        let (body, end) = self.expr(j)?;
        Some((
            Item::Let(LetDecl {
                name,
                body,
                span: self.span(i, end),
            }),
            end,
        ))
    }

    fn action(&self, i: usize) -> Option<(Action, usize)> {
        if self.kw(i, "allow") {
            Some((Action::Allow, i + 5))
        } else if self.kw(i, "deny") {
            Some((Action::Deny, i + 4))
        } else if self.kw(i, "kill") {
            Some((Action::Kill, i + 4))
        } else {
            None
        }
    }

    fn rule(&mut self, i: usize) -> Option<(Item, usize)> {
        let j = self.expect_kw(i, "rule")?;
        let (name, j) = self.name(j)?;
        let j = self.expect_kw(j, "on")?;
        let (hook, j) = self.name(j)?;
        let j = self.skip(self.byte(j, b'{')?);
        let j = self.expect_kw(j, "when")?;
        let (when, end) = self.expr(j)?;
        let mut j = self.skip(end);
        let mut unless = None;
        if self.kw(j, "unless") {
            let (e, end) = self.expr(self.skip(j + 6))?;
            unless = Some(e);
            j = self.skip(end);
        }
        let mut action = None;
        if let Some((a, end)) = self.action(j) {
            action = Some((a, self.span(j, end)));
            j = self.skip(end);
        }
        let mut audit = None;
        if self.kw(j, "audit") {
            let start = j;
            let mut k = self.skip(j + 5);
            let mut severity = None;
            if self.kw(k, "severity") {
                let m = self.skip(k + 8);
                let send = self.ident(m)?;
                severity = Some(self.ident_node(m, send));
                k = self.skip(send);
            }
            let mut message = None;
            let mut end = k;
            if self.at(k) == b'"' {
                let (s, send) = self.string(k)?;
                message = Some(s);
                end = send;
            }
            audit = Some(AuditClause {
                severity,
                message,
                span: self.span(start, end),
            });
            j = self.skip(end);
        }
        let mut counts = Vec::new();
        while self.kw(j, "count") {
            let (s, end) = self.string(self.skip(j + 5))?;
            counts.push(s);
            j = self.skip(end);
        }
        let mut rate = None;
        if self.kw(j, "rate") {
            let start = j;
            let k = self.skip(j + 4);
            let kend = self.digits(k);
            let next = self.at(kend);
            if kend == k || ident_char(next) || next == b'.' {
                return None;
            }
            let m = self.expect_kw(self.skip(kend), "per")?;
            let mend = self.digits(m);
            if mend == m {
                return None;
            }
            let suffix = self.word(mend);
            if !matches!(suffix, b"ms" | b"s" | b"m" | b"h" | b"d") {
                return None;
            }
            let dend = mend + suffix.len();
            rate = Some(RateClause {
                count: self.ident_node(k, kend),
                per: self.ident_node(m, dend),
                span: self.span(start, dend),
            });
            j = self.skip(dend);
        }
        let end = self.byte(j, b'}')?;
        Some((
            Item::Rule(RuleDecl {
                name,
                hook,
                when,
                unless,
                action,
                audit,
                counts,
                rate,
                span: self.span(i, end),
            }),
            end,
        ))
    }

    fn default_decl(&mut self, i: usize) -> Option<(Item, usize)> {
        let j = self.expect_kw(i, "default")?;
        let j = self.expect_kw(j, "deny")?;
        let (hook, j) = self.name(j)?;
        let (when, end) = if self.kw(j, "when") {
            let (e, end) = self.expr(self.skip(j + 4))?;
            (Some(e), end)
        } else {
            (None, j)
        };
        Some((
            Item::Default(DefaultDecl {
                hook,
                when,
                span: self.span(i, end),
            }),
            end,
        ))
    }

    fn test_decl(&mut self, i: usize) -> Option<(Item, usize)> {
        let j = self.expect_kw(i, "test")?;
        let (name, end) = self.string(j)?;
        let j = self.skip(self.byte(self.skip(end), b'{')?);
        // test_event
        let (hook, j) = self.name(j)?;
        let mut j = self.skip(self.byte(j, b'{')?);
        let mut fields = Vec::new();
        if self.at(j) != b'}' {
            loop {
                let (field, fend) = self.field_ref(j)?;
                let k = self.skip(self.byte(self.skip(fend), b'=')?);
                let (value, vend) = if self.at(k) == b'{' {
                    let (s, end) = self.set_literal(k)?;
                    (TestValue::Set(s), end)
                } else {
                    let (l, end) = self.literal(k)?;
                    (TestValue::Literal(l), end)
                };
                fields.push((field, value));
                j = self.skip(vend);
                if self.at(j) != b',' {
                    break;
                }
                j = self.skip(j + 1);
                // `comma?` before `}`; a field_ref cannot start with `}`.
                if self.at(j) == b'}' {
                    break;
                }
            }
        }
        let mut j = self.skip(self.byte(j, b'}')?);
        let mut expects = Vec::new();
        while self.kw(j, "expect") {
            let start = j;
            let k = self.skip(j + 6);
            let (kind, end) = if let Some((a, end)) = self.action(k) {
                (ExpectKind::Verdict(a), end)
            } else if self.kw(k, "no") {
                let m = self.skip(k + 2);
                if !self.kw(m, "audit") {
                    return None;
                }
                (ExpectKind::NoAudit, m + 5)
            } else if self.kw(k, "audit") {
                let m = self.skip(k + 5);
                let dend = self.dotted(m)?;
                let mut rules = vec![self.ident_node(m, dend)];
                let mut last = dend;
                let mut n = self.skip(dend);
                while self.at(n) == b',' {
                    let q = self.skip(n + 1);
                    let qend = self.dotted(q)?;
                    rules.push(self.ident_node(q, qend));
                    last = qend;
                    n = self.skip(qend);
                }
                // A single name: pest's pair ends after the whitespace.
                let end = if rules.len() == 1 { n } else { last };
                (ExpectKind::Audit(rules), end)
            } else if self.kw(k, "count") {
                let (s, end) = self.string(self.skip(k + 5))?;
                (ExpectKind::Count(s), end)
            } else {
                return None;
            };
            expects.push(Expectation {
                kind,
                span: self.span(start, end),
            });
            j = self.skip(end);
        }
        let end = self.byte(j, b'}')?;
        Some((
            Item::Test(TestDecl {
                name,
                hook,
                fields,
                expects,
                span: self.span(i, end),
            }),
            end,
        ))
    }
}
