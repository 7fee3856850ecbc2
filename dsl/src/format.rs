//! The canonical formatter behind `policyc fmt`.
//!
//! [`format_source`] parses a file and prints it in one canonical layout,
//! keeping every comment; [`format_file`] prints a tree that has no source
//! (a generated policy). Both are pure: text in, text out.
//!
//! # Layout
//!
//! - Two spaces per indentation level; lines of at most [`MAX_WIDTH`] columns
//!   where the language allows a break (a single long string can exceed it).
//! - Top-level declarations are separated by exactly one blank line.
//!   Inside a block (policy attributes, rule clauses, test lines, the
//!   elements of a multi-line set) a blank line the author left between two
//!   lines is kept, and runs of blank lines collapse to one; blank lines
//!   right after `{` or inside a broken condition are dropped.
//! - `policy NAME {` has one attribute per line; `policy NAME {}` when empty.
//! - A rule has one clause per line, in the grammar's order: `when`,
//!   `unless`, the verdict, `audit`, each `count`, `rate`.
//! - A set literal is written on one line, `{ a, b }`, when it fits;
//!   otherwise one element per line, each followed by a comma, and `}` on a
//!   line of its own.
//! - A condition is written on one line when it fits. Otherwise it breaks at
//!   its top-level `or` (or `and`): every operand after the first goes on its
//!   own line, starting with the operator, indented two columns deeper than
//!   the clause; an operand that still does not fit breaks the same way two
//!   columns deeper again, and a parenthesised group breaks inside its
//!   parentheses. Operators are spaced, `not` is written before its operand,
//!   and parentheses are exactly those the author wrote.
//! - Strings are re-escaped canonically: `\"`, `\\`, `\n`, `\t`, `\r`, and
//!   `\u{…}` for other control characters; every other character is written
//!   as itself.
//! - A test's event is written over several lines, one `field = value,` per
//!   line (`exec {}` when it has no fields), then one `expect` per line.
//! - Output ends with a single newline; no line has trailing whitespace.
//!
//! # Comments
//!
//! Every `// …` comment of the input is written to the output, with its text
//! unchanged except for trailing whitespace, in the same order. The source is
//! scanned for comments (a `//` outside a string literal starts one; it ends
//! at the end of the line), and each comment is *attached by position* to the
//! lines the formatter emits. Every emitted line has an *anchor*: the source
//! offset of the construct it starts (a declaration, a clause keyword, an
//! attribute, a set element, a test field or expectation, a closing `}`, or
//! the operand after `or`/`and` on a broken condition's continuation line).
//!
//! - An **own-line comment** (only whitespace before it on its source line)
//!   is written on its own line just before the first emitted line whose
//!   anchor lies after it, at that line's indentation (inside the block when
//!   that line is a closing `}`); comments after the last line end the file.
//! - An **end-of-line comment** (code before it on its source line) is
//!   written at the end of the last emitted line whose anchor lies before it,
//!   after two spaces. A comment written between two tokens that end up on
//!   one line (for instance between `==` and its operand) thus moves to the
//!   end of that line.
//! - Order is never changed: a comment is never placed before the comment
//!   that precedes it in the source. If an end-of-line comment would land
//!   before an earlier own-line comment, or a line already has an end-of-line
//!   comment, it is written on its own line instead, right after.
//! - A blank line before an own-line comment is kept (collapsed to one),
//!   except right after `{`. Comments before a declaration stay with it: the
//!   blank line that separates declarations goes before them.
//! - Comments decide breaks: a set literal with a comment between its braces
//!   is written one element per line, and an `or`/`and` chain with a comment
//!   between its first operand and the start of its last one is broken one
//!   operand per line, so that such comments stay inside the construct they
//!   were written in. A `policy` header or test event with no entries but a
//!   comment inside its braces is written over two lines.
//!
//! These rules place every comment at a line boundary that, read again, leads
//! to the same placement, so formatting is idempotent:
//! `format_source(format_source(x)) == format_source(x)`.
//!
//! # Safety
//!
//! A file with syntax errors (or invalid string escapes) is refused with the
//! parser's diagnostics: the formatter never prints a tree it did not read in
//! full. Before returning, [`format_source`] parses its own output and checks
//! that the tree (up to spans) and the comments are those of the input; a
//! mismatch would be a formatter bug and is reported as
//! [`FormatError::Internal`] instead of returning text that lost something.

use crate::ast::*;
use crate::diagnostic::Error;
use crate::parser;

/// The width the formatter fits lines into, in characters.
pub const MAX_WIDTH: usize = 100;

/// Why a source was not formatted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    /// The source does not parse: these are the parser's diagnostics
    /// (syntax errors and invalid escapes), ready for [`crate::render`].
    #[error("not formatted: the file has {} syntax error(s)", .0.len())]
    Syntax(Vec<Error>),
    /// The formatter's own output did not read back as the same policy with
    /// the same comments. This is a bug in the formatter; the input is left
    /// alone.
    #[error("internal formatter error (please report, the file was left unchanged): {0}")]
    Internal(String),
}

/// Format one file's text in the canonical layout, keeping its comments.
///
/// Returns [`FormatError::Syntax`] when the text does not parse. The result
/// parses to the same tree (up to spans) with the same comments, and
/// formatting it again returns it unchanged.
pub fn format_source(source: &str) -> Result<String, FormatError> {
    let (file, errors) = parser::parse(source);
    if !errors.is_empty() {
        return Err(FormatError::Syntax(errors));
    }
    let comments = scan_comments(source);
    let mut printer = Printer::new(Some(source), &comments);
    printer.file(&file);
    let out = printer.render();
    verify(&file, &comments, &out)?;
    Ok(out)
}

/// Print a tree in the canonical layout (no comments: a tree has none).
///
/// For a tree of the shape the parser produces, `parse(format_file(f))`
/// equals `f` up to spans. A tree of another shape (an `or` directly inside
/// an `and`, a one-operand `or`, …) is printed with the parentheses its
/// meaning needs; an empty `or` prints as `false` and an empty `and` as
/// `true`.
pub fn format_file(file: &File) -> String {
    let mut printer = Printer::new(None, &[]);
    printer.file(&shape_file(file));
    printer.render()
}

/// Check that `out` reads back as `file` with `comments`.
fn verify(file: &File, comments: &[Comment], out: &str) -> Result<(), FormatError> {
    let (mut again, errors) = parser::parse(out);
    if let Some(e) = errors.first() {
        return Err(FormatError::Internal(format!(
            "the output does not parse: {e}"
        )));
    }
    let mut before = file.clone();
    before.strip_spans();
    again.strip_spans();
    if before != again {
        return Err(FormatError::Internal(
            "the output parses to a different tree".into(),
        ));
    }
    let texts = |cs: &[Comment]| cs.iter().map(|c| c.text.clone()).collect::<Vec<_>>();
    if texts(comments) != texts(&scan_comments(out)) {
        return Err(FormatError::Internal(
            "the output does not keep the comments".into(),
        ));
    }
    Ok(())
}

// ---- comments ---------------------------------------------------------------

/// A `// …` comment of the source.
#[derive(Debug, Clone)]
struct Comment {
    /// Offset of `//`.
    start: usize,
    /// Offset just past the comment (its newline or the end of the file).
    end: usize,
    /// From `//` to the end of the line, trailing whitespace removed.
    text: String,
    /// Only whitespace precedes it on its line.
    own_line: bool,
    /// It is an own-line comment and the line above it is blank.
    blank_before: bool,
}

/// Whitespace as the grammar defines it (a byte-order mark included).
fn is_ws(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n' | '\u{feff}')
}

/// Every comment of `src`, in order. `//` inside a string literal is text.
fn scan_comments(src: &str) -> Vec<Comment> {
    let b = src.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'"' => {
                i += 1;
                while i < b.len() && b[i] != b'"' && b[i] != b'\n' {
                    i += if b[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
            }
            b'/' if b.get(i + 1) == Some(&b'/') => {
                let start = i;
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
                let own_line = first_on_line(src, start);
                out.push(Comment {
                    start,
                    end: i,
                    text: src[start..i].trim_end_matches(is_ws).to_string(),
                    own_line,
                    blank_before: own_line && blank_before(src, start),
                });
            }
            _ => i += 1,
        }
    }
    out
}

/// Offset of the start of the line holding `pos`.
fn line_start(src: &str, pos: usize) -> usize {
    src[..pos].rfind('\n').map_or(0, |n| n + 1)
}

/// Only whitespace precedes `pos` on its line.
fn first_on_line(src: &str, pos: usize) -> bool {
    src[line_start(src, pos)..pos].chars().all(is_ws)
}

/// `pos` starts its line and the line above is blank.
fn blank_before(src: &str, pos: usize) -> bool {
    let ls = line_start(src, pos);
    if ls == 0 || !src[ls..pos].chars().all(is_ws) {
        return false;
    }
    let prev = line_start(src, ls - 1);
    src[prev..ls - 1].chars().all(is_ws)
}

// ---- tree shape ---------------------------------------------------------------

/// Binding strength: `or` < `and` < `not` and primaries.
fn precedence(kind: &ExprKind) -> u8 {
    match kind {
        ExprKind::Or(_) => 1,
        ExprKind::And(_) => 2,
        _ => 3,
    }
}

/// The tree with parentheses added where a generated tree's structure could
/// not otherwise be written, and degenerate `or`/`and` nodes simplified.
/// Trees from the parser come out unchanged.
fn shape_file(file: &File) -> File {
    let mut file = file.clone();
    for item in &mut file.items {
        match item {
            Item::Let(d) => d.body = shape(d.body.clone(), 1),
            Item::Rule(r) => {
                r.when = shape(r.when.clone(), 1);
                r.unless = r.unless.take().map(|u| shape(u, 1));
            }
            Item::Default(d) => d.when = d.when.take().map(|w| shape(w, 1)),
            Item::Policy(_) | Item::Set(_) | Item::Test(_) => {}
        }
    }
    file
}

/// `e` made writable where an operand of binding strength `min` is expected.
fn shape(e: Expr, min: u8) -> Expr {
    let Expr { kind, span } = e;
    let kind = match kind {
        ExprKind::Or(ops) | ExprKind::And(ops) if ops.len() == 1 => {
            return shape(ops.into_iter().next().expect("one operand"), min);
        }
        ExprKind::Or(ops) if ops.is_empty() => ExprKind::Bool(false),
        ExprKind::And(ops) if ops.is_empty() => ExprKind::Bool(true),
        ExprKind::Or(ops) => ExprKind::Or(ops.into_iter().map(|o| shape(o, 2)).collect()),
        ExprKind::And(ops) => ExprKind::And(ops.into_iter().map(|o| shape(o, 3)).collect()),
        ExprKind::Not(x) => ExprKind::Not(Box::new(shape(*x, 3))),
        ExprKind::Paren(x) => ExprKind::Paren(Box::new(shape(*x, 1))),
        k => k,
    };
    if precedence(&kind) < min {
        Expr {
            kind: ExprKind::Paren(Box::new(Expr {
                kind,
                span: span.clone(),
            })),
            span,
        }
    } else {
        Expr { kind, span }
    }
}

// ---- flat text ----------------------------------------------------------------

/// A string literal, canonically escaped.
fn string(value: &str) -> String {
    let mut s = String::with_capacity(value.len() + 2);
    s.push('"');
    for c in value.chars() {
        match c {
            '"' => s.push_str("\\\""),
            '\\' => s.push_str("\\\\"),
            '\n' => s.push_str("\\n"),
            '\t' => s.push_str("\\t"),
            '\r' => s.push_str("\\r"),
            // Other control characters may not appear raw in a string.
            c if c.is_control() => s.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => s.push(c),
        }
    }
    s.push('"');
    s
}

fn literal(l: &Literal) -> String {
    match &l.kind {
        LiteralKind::Str(v) => string(v),
        LiteralKind::Int(s) | LiteralKind::Ip(s) | LiteralKind::Cap(s) => s.clone(),
        LiteralKind::Range(a, b) => format!("{a}..{b}"),
        LiteralKind::Unset => "unset".into(),
        LiteralKind::Bool(b) => b.to_string(),
    }
}

fn flat_set(s: &SetLiteral) -> String {
    if s.elements.is_empty() {
        return "{}".into();
    }
    let elements: Vec<String> = s.elements.iter().map(literal).collect();
    format!("{{ {} }}", elements.join(", "))
}

fn field_ref(f: &FieldRef) -> String {
    match &f.key {
        Some(k) => format!("{}[{}]", f.name.name, string(&k.value)),
        None => f.name.name.clone(),
    }
}

fn operand(o: &Operand) -> String {
    match o {
        Operand::Literal(l) => literal(l),
        Operand::Set(s) => flat_set(s),
        Operand::Name(i) => i.name.clone(),
    }
}

fn flat_expr(e: &Expr) -> String {
    match &e.kind {
        ExprKind::Or(ops) => ops.iter().map(flat_expr).collect::<Vec<_>>().join(" or "),
        ExprKind::And(ops) => ops.iter().map(flat_expr).collect::<Vec<_>>().join(" and "),
        ExprKind::Not(x) => format!("not {}", flat_expr(x)),
        ExprKind::Paren(x) => format!("({})", flat_expr(x)),
        ExprKind::Compare(c) => format!(
            "{} {} {}",
            field_ref(&c.field),
            c.op.0.as_str(),
            operand(&c.operand)
        ),
        ExprKind::Bool(b) => b.to_string(),
        ExprKind::Ref(i) => i.name.clone(),
    }
}

fn width(s: &str) -> usize {
    s.chars().count()
}

// ---- printer --------------------------------------------------------------------

/// Whether a blank line may precede an emitted line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sep {
    /// Never (continuation lines, closing braces).
    Never,
    /// When the author left one (lines of a block).
    Keep,
    /// Always, unless first in the file (top-level declarations).
    Item,
}

/// One emitted line before comments are attached.
#[derive(Debug)]
struct Line {
    indent: usize,
    text: String,
    /// Comments are attached relative to this source offset.
    anchor: usize,
    /// Source offset of the line's first token (for blank lines).
    first: usize,
    sep: Sep,
    /// Indentation of own-line comments written before this line.
    comment_indent: usize,
}

struct Printer<'a> {
    /// The source, when formatting one (anchors point into it).
    src: Option<&'a str>,
    comments: &'a [Comment],
    lines: Vec<Line>,
}

impl<'a> Printer<'a> {
    fn new(src: Option<&'a str>, comments: &'a [Comment]) -> Self {
        Printer {
            src,
            comments,
            lines: Vec::new(),
        }
    }

    // -- lines --

    fn line(
        &mut self,
        indent: usize,
        anchor: usize,
        first: usize,
        sep: Sep,
        comment_indent: usize,
    ) {
        self.lines.push(Line {
            indent,
            text: String::new(),
            anchor,
            first,
            sep,
            comment_indent,
        });
    }

    /// A block-level line whose anchor is its first token.
    fn block_line(&mut self, indent: usize, at: usize) {
        self.line(indent, at, at, Sep::Keep, indent);
    }

    /// A closing `}` at `at`, closing a block indented at `indent`.
    fn close_line(&mut self, indent: usize, at: usize) {
        self.line(indent, at, at, Sep::Never, indent + 2);
        self.push("}");
    }

    fn push(&mut self, s: &str) {
        self.lines
            .last_mut()
            .expect("a line is open")
            .text
            .push_str(s);
    }

    fn col(&self) -> usize {
        self.lines.last().map_or(0, |l| l.indent + width(&l.text))
    }

    fn fits(&self, text: &str, trail: usize) -> bool {
        self.col() + width(text) + trail <= MAX_WIDTH
    }

    // -- source queries (no-ops for a tree without source) --

    /// A comment starts in `lo..hi`.
    fn comment_in(&self, lo: usize, hi: usize) -> bool {
        let i = self.comments.partition_point(|c| c.start < lo);
        self.comments.get(i).is_some_and(|c| c.start < hi)
    }

    /// The offset of the next token at or after `pos`, skipping whitespace
    /// and comments.
    fn next_token(&self, mut pos: usize) -> usize {
        let Some(src) = self.src else { return pos };
        while let Some(c) = src[pos..].chars().next() {
            if is_ws(c) {
                pos += c.len_utf8();
            } else if src[pos..].starts_with("//") {
                pos += src[pos..].find('\n').unwrap_or(src.len() - pos);
            } else {
                break;
            }
        }
        pos
    }

    /// The start of the keyword written before `pos` (skipping whitespace and
    /// comments), e.g. `when` before a rule's condition.
    fn keyword_before(&self, pos: usize) -> usize {
        let Some(src) = self.src else { return pos };
        let mut p = pos;
        loop {
            let before = src[..p].trim_end_matches(is_ws);
            p = before.len();
            // Inside a comment? Jump to its start.
            let i = self.comments.partition_point(|c| c.end < p);
            match self.comments.get(i) {
                Some(c) if c.start < p && p <= c.end => p = c.start,
                _ => break,
            }
        }
        src[..p]
            .trim_end_matches(|c: char| c.is_ascii_alphanumeric() || c == '_')
            .len()
    }

    // -- declarations --

    fn file(&mut self, file: &File) {
        for item in &file.items {
            self.item(item);
        }
    }

    fn item(&mut self, item: &Item) {
        let start = item.span().start;
        self.line(0, start, start, Sep::Item, 0);
        match item {
            Item::Policy(p) => {
                self.push(&format!("policy {} {{", p.name.name));
                let open = self.next_token(p.name.span.end);
                let close = p.span.end.saturating_sub(1);
                if p.attrs.is_empty() && !self.comment_in(open + 1, close) {
                    self.push("}");
                    return;
                }
                for a in &p.attrs {
                    self.block_line(2, a.name.span.start);
                    self.push(&format!("{} = ", a.name.name));
                    match &a.value {
                        AttrValue::Str(s) => self.push(&string(&s.value)),
                        AttrValue::Name(n) => self.push(&n.name),
                        AttrValue::Set(s) => self.set(s, 2, 0),
                    }
                }
                self.close_line(0, close);
            }
            Item::Set(d) => {
                self.push(&format!("set {} = ", d.name.name));
                self.set(&d.value, 0, 0);
            }
            Item::Let(d) => {
                self.push(&format!("let {} = ", d.name.name));
                self.expr(&d.body, 2, 0);
            }
            Item::Default(d) => {
                self.push(&format!("default deny {}", d.hook.name));
                if let Some(w) = &d.when {
                    self.push(" when ");
                    self.expr(w, 2, 0);
                }
            }
            Item::Rule(r) => self.rule(r),
            Item::Test(t) => self.test(t),
        }
    }

    fn rule(&mut self, r: &RuleDecl) {
        self.push(&format!("rule {} on {} {{", r.name.name, r.hook.name));
        for (keyword, cond) in [("when", Some(&r.when)), ("unless", r.unless.as_ref())] {
            if let Some(cond) = cond {
                self.block_line(2, self.keyword_before(cond.span.start));
                self.push(keyword);
                self.push(" ");
                self.expr(cond, 4, 0);
            }
        }
        if let Some((action, span)) = &r.action {
            self.block_line(2, span.start);
            self.push(action.as_str());
        }
        if let Some(a) = &r.audit {
            self.block_line(2, a.span.start);
            self.push("audit");
            if let Some(s) = &a.severity {
                self.push(&format!(" severity {}", s.name));
            }
            if let Some(m) = &a.message {
                self.push(" ");
                self.push(&string(&m.value));
            }
        }
        for c in &r.counts {
            self.block_line(2, self.keyword_before(c.span.start));
            self.push("count ");
            self.push(&string(&c.value));
        }
        if let Some(rate) = &r.rate {
            self.block_line(2, rate.span.start);
            self.push(&format!("rate {} per {}", rate.count.name, rate.per.name));
        }
        self.close_line(0, r.span.end.saturating_sub(1));
    }

    fn test(&mut self, t: &TestDecl) {
        self.push(&format!("test {} {{", string(&t.name.value)));
        self.block_line(2, t.hook.span.start);
        self.push(&format!("{} {{", t.hook.name));
        let open = self.next_token(t.hook.span.end);
        let close = self.event_close(t, open);
        if !t.fields.is_empty() || self.comment_in(open + 1, close) {
            for (field, value) in &t.fields {
                self.block_line(4, field.span.start);
                self.push(&field_ref(field));
                self.push(" = ");
                match value {
                    TestValue::Literal(l) => self.push(&literal(l)),
                    TestValue::Set(s) => self.set(s, 4, 1),
                }
                self.push(",");
            }
            self.close_line(2, close);
        } else {
            self.push("}");
        }
        for e in &t.expects {
            self.block_line(2, e.span.start);
            self.push("expect ");
            match &e.kind {
                ExpectKind::Verdict(a) => self.push(a.as_str()),
                ExpectKind::NoAudit => self.push("no audit"),
                ExpectKind::Count(s) => self.push(&format!("count {}", string(&s.value))),
                ExpectKind::Audit(rules) => {
                    let names: Vec<&str> = rules.iter().map(|r| r.name.as_str()).collect();
                    self.push(&format!("audit {}", names.join(", ")));
                }
            }
        }
        self.close_line(0, t.span.end.saturating_sub(1));
    }

    /// Offset of the `}` that closes a test's event (not in the tree), given
    /// the offset of its `{`.
    fn event_close(&self, t: &TestDecl, open: usize) -> usize {
        let after = t.fields.last().map_or(open + 1, |(f, v)| match v {
            TestValue::Literal(l) => l.span.end.max(f.span.end),
            TestValue::Set(s) => s.span.end.max(f.span.end),
        });
        let Some(src) = self.src else { return after };
        let mut p = self.next_token(after);
        if src[p..].starts_with(',') {
            p = self.next_token(p + 1);
        }
        p
    }

    // -- sets --

    /// A comment lies between the braces of `s`.
    fn set_must_break(&self, s: &SetLiteral) -> bool {
        self.comment_in(s.span.start + 1, s.span.end.saturating_sub(1))
    }

    /// Append set `s`, on one line if it fits before `trail` more columns,
    /// else one element per line at `indent + 2` and `}` at `indent`.
    fn set(&mut self, s: &SetLiteral, indent: usize, trail: usize) {
        let flat = flat_set(s);
        if !self.set_must_break(s) && self.fits(&flat, trail) {
            self.push(&flat);
            return;
        }
        self.push("{");
        for e in &s.elements {
            self.block_line(indent + 2, e.span.start);
            self.push(&literal(e));
            self.push(",");
        }
        self.close_line(indent, s.span.end.saturating_sub(1));
    }

    // -- conditions --

    /// `e` cannot be written on one line because of a comment inside it.
    fn must_break(&self, e: &Expr) -> bool {
        match &e.kind {
            ExprKind::Or(ops) | ExprKind::And(ops) => {
                let (Some(first), Some(last)) = (ops.first(), ops.last()) else {
                    return false;
                };
                self.comment_in(first.span.start, last.span.start)
                    || ops.iter().any(|o| self.must_break(o))
            }
            ExprKind::Not(x) | ExprKind::Paren(x) => self.must_break(x),
            ExprKind::Compare(c) => matches!(&c.operand, Operand::Set(s) if self.set_must_break(s)),
            ExprKind::Bool(_) | ExprKind::Ref(_) => false,
        }
    }

    /// Append condition `e`; continuation lines are indented at `cont`, and
    /// `trail` columns (closing parentheses) follow its last line.
    fn expr(&mut self, e: &Expr, cont: usize, trail: usize) {
        let flat = flat_expr(e);
        if !self.must_break(e) && self.fits(&flat, trail) {
            self.push(&flat);
            return;
        }
        match &e.kind {
            ExprKind::Or(ops) | ExprKind::And(ops) if ops.len() >= 2 => {
                let keyword = if matches!(e.kind, ExprKind::Or(_)) {
                    "or "
                } else {
                    "and "
                };
                self.expr(&ops[0], cont + 2, 0);
                for (n, op) in ops.iter().enumerate().skip(1) {
                    let at = op.span.start;
                    self.line(cont, at, at, Sep::Never, cont);
                    self.push(keyword);
                    self.expr(op, cont + 2, if n + 1 == ops.len() { trail } else { 0 });
                }
            }
            ExprKind::Not(x) => {
                self.push("not ");
                self.expr(x, cont, trail);
            }
            ExprKind::Paren(x) => {
                self.push("(");
                self.expr(x, cont, trail + 1);
                self.push(")");
            }
            ExprKind::Compare(c) if matches!(c.operand, Operand::Set(_)) => {
                let Operand::Set(s) = &c.operand else {
                    unreachable!()
                };
                self.push(&format!("{} {} ", field_ref(&c.field), c.op.0.as_str()));
                self.set(s, cont.saturating_sub(2), trail);
            }
            _ => self.push(&flat),
        }
    }

    // -- output --

    /// Attach comments to lines and produce the text.
    fn render(self) -> String {
        let Printer {
            src,
            comments,
            lines,
        } = self;
        debug_assert!(
            lines.windows(2).all(|w| w[0].anchor <= w[1].anchor),
            "anchors in order"
        );
        // Slot 2k: own-line comments before line k; slot 2k+1: the end of
        // line k. Comments keep their order: slots never decrease.
        let mut slots = Vec::with_capacity(comments.len());
        let mut prev: Option<usize> = None;
        for c in comments {
            let natural = if c.own_line {
                2 * lines.partition_point(|l| l.anchor < c.start)
            } else {
                match lines.partition_point(|l| l.anchor <= c.start) {
                    0 => 0,
                    m => 2 * (m - 1) + 1,
                }
            };
            let mut slot = prev.map_or(natural, |p| natural.max(p));
            if slot % 2 == 1 && prev == Some(slot) {
                slot += 1; // that line's end is taken: the next comment line
            }
            slots.push(slot);
            prev = Some(slot);
        }

        let blank = |pos: usize| src.is_some_and(|s| blank_before(s, pos));
        let mut out = String::new();
        let mut emitted = false; // anything written yet
        let mut after_open = false; // the last line written ends with `{`
        let mut ci = 0;
        for k in 0..=lines.len() {
            let line = lines.get(k);
            let is_item = line.is_some_and(|l| l.sep == Sep::Item);
            let mut group = 0;
            while ci < comments.len() && slots[ci] == 2 * k {
                let c = &comments[ci];
                let sep = if group == 0 && is_item {
                    true
                } else {
                    c.blank_before && !after_open
                };
                if sep && emitted {
                    out.push('\n');
                }
                let indent = line.map_or(0, |l| l.comment_indent);
                out.extend(std::iter::repeat_n(' ', indent));
                out.push_str(&c.text);
                out.push('\n');
                emitted = true;
                after_open = false;
                group += 1;
                ci += 1;
            }
            let Some(line) = line else { break };
            let sep = match line.sep {
                Sep::Never => false,
                Sep::Keep => !after_open && blank(line.first),
                Sep::Item => group == 0 || blank(line.first),
            };
            if sep && emitted {
                out.push('\n');
            }
            out.extend(std::iter::repeat_n(' ', line.indent));
            out.push_str(&line.text);
            if ci < comments.len() && slots[ci] == 2 * k + 1 {
                out.push_str("  ");
                out.push_str(&comments[ci].text);
                ci += 1;
            }
            out.push('\n');
            emitted = true;
            after_open = line.text.ends_with('{');
        }
        debug_assert_eq!(ci, comments.len(), "every comment written");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fmt(src: &str) -> String {
        let out = format_source(src).unwrap_or_else(|e| panic!("{e}: {e:?}"));
        assert_eq!(
            format_source(&out).unwrap(),
            out,
            "idempotent, first output:\n{out}"
        );
        out
    }

    #[test]
    fn canonical_layout() {
        let src = "policy p{description=\"d\" mode=enforce tags={\"a\",\"b\"}}\n\
                   set s={\"/bin/sh\",\"/bin/bash\"}\nlet l=a.b==1 and not(c.d in s)\n\
                   rule r on exec{when process.binary in s unless l deny audit severity high \"m\" count \"c\" rate 5 per 1m}\n\
                   default deny exec when k8s.namespace==\"locked\"\n\
                   test \"t\"{exec{process.binary=\"/bin/sh\",user.uid=0} expect deny expect audit r, q expect no audit expect count \"c\"}";
        let expected = r#"policy p {
  description = "d"
  mode = enforce
  tags = { "a", "b" }
}

set s = { "/bin/sh", "/bin/bash" }

let l = a.b == 1 and not (c.d in s)

rule r on exec {
  when process.binary in s
  unless l
  deny
  audit severity high "m"
  count "c"
  rate 5 per 1m
}

default deny exec when k8s.namespace == "locked"

test "t" {
  exec {
    process.binary = "/bin/sh",
    user.uid = 0,
  }
  expect deny
  expect audit r, q
  expect no audit
  expect count "c"
}
"#;
        assert_eq!(fmt(src), expected);
    }

    #[test]
    fn refuses_syntax_errors_and_bad_escapes() {
        assert!(matches!(
            format_source("rule r on exec { when a.b \"x\" }"),
            Err(FormatError::Syntax(_))
        ));
        assert!(
            matches!(format_source("set s = { \"\\q\" }"), Err(FormatError::Syntax(e)) if e.len() == 1)
        );
    }

    #[test]
    fn empty_and_comment_only_files() {
        assert_eq!(fmt(""), "");
        assert_eq!(fmt("  \n\n"), "");
        assert_eq!(fmt("// a\n\n\n// b   \n"), "// a\n\n// b\n");
    }

    #[test]
    fn strings_are_re_escaped() {
        assert_eq!(
            fmt("set s = { \"a\\\"b\\\\c\\n\\t\té//\" }"),
            "set s = { \"a\\\"b\\\\c\\n\\t\\té//\" }\n"
        );
    }

    #[test]
    fn long_sets_break_one_element_per_line() {
        let elements: Vec<String> = (0..8)
            .map(|n| format!("\"/usr/local/bin/tool{n}\""))
            .collect();
        let out = fmt(&format!("set s = {{ {} }}", elements.join(",")));
        assert!(
            out.starts_with("set s = {\n  \"/usr/local/bin/tool0\",\n"),
            "{out}"
        );
        assert!(out.ends_with("  \"/usr/local/bin/tool7\",\n}\n"), "{out}");
    }

    #[test]
    fn long_conditions_break_at_top_level_operators() {
        let cond = (0..4)
            .map(|n| format!("process.binary startswith \"/some/long/prefix/{n}\""))
            .collect::<Vec<_>>();
        let src = format!(
            "rule r on exec {{ when user.uid == 0 and ({}) deny }}",
            cond.join(" or ")
        );
        let out = fmt(&src);
        let expected = "rule r on exec {
  when user.uid == 0
    and (process.binary startswith \"/some/long/prefix/0\"
      or process.binary startswith \"/some/long/prefix/1\"
      or process.binary startswith \"/some/long/prefix/2\"
      or process.binary startswith \"/some/long/prefix/3\")
  deny
}
";
        assert_eq!(out, expected);
        assert!(out.lines().all(|l| l.len() <= MAX_WIDTH));
    }

    #[test]
    fn comments_are_attached_to_the_next_line_or_trail_their_line() {
        let src = "// header\n\n// about p\npolicy p { // eol after brace\n  description = \"d\" // eol\n  // before mode\n  mode = enforce\n  // last in block\n}\n// about r\nrule r on exec {\n  when a.b == 1 // one\n    or a.b == 2\n  deny\n}\n// trailing\n";
        let expected = "// header\n\n// about p\npolicy p {  // eol after brace\n  description = \"d\"  // eol\n  // before mode\n  mode = enforce\n  // last in block\n}\n\n// about r\nrule r on exec {\n  when a.b == 1  // one\n    or a.b == 2\n  deny\n}\n// trailing\n";
        assert_eq!(fmt(src), expected);
    }

    #[test]
    fn comments_inside_sets_force_one_element_per_line() {
        let out = fmt("set s = { \"a\", // the a\n \"b\" }\n");
        assert_eq!(out, "set s = {\n  \"a\",  // the a\n  \"b\",\n}\n");
        let out = fmt("policy p { // nothing yet\n}\n");
        assert_eq!(out, "policy p {  // nothing yet\n}\n");
        let out = fmt("test \"t\" { exec {\n// no fields\n} expect allow }\n");
        assert_eq!(
            out,
            "test \"t\" {\n  exec {\n    // no fields\n  }\n  expect allow\n}\n"
        );
        let out = fmt("test \"t\" { exec { a.b = 1, // last\n} }\n");
        assert_eq!(
            out,
            "test \"t\" {\n  exec {\n    a.b = 1,  // last\n  }\n}\n"
        );
    }

    #[test]
    fn comments_between_tokens_move_to_the_end_of_the_line() {
        let out = fmt("rule r on exec { when a.b == // odd place\n 1 deny }");
        assert_eq!(
            out,
            "rule r on exec {\n  when a.b == 1  // odd place\n  deny\n}\n"
        );
        // Two end-of-line comments for one line: the second gets its own line.
        let out = fmt("rule r on exec { when a.b == // one\n 1 // two\n deny }");
        assert_eq!(
            out,
            "rule r on exec {\n  when a.b == 1  // one\n  // two\n  deny\n}\n"
        );
        // An end-of-line comment never jumps over an earlier own-line one.
        let out = fmt("rule r on exec { when a.b ==\n // own\n 1 // eol\n deny }");
        assert_eq!(
            out,
            "rule r on exec {\n  when a.b == 1\n  // own\n  // eol\n  deny\n}\n"
        );
    }

    #[test]
    fn blank_lines_inside_blocks_are_kept_once() {
        let out = fmt("rule r on exec {\n\n  when a.b\n\n\n  deny\n  audit\n\n}\n");
        assert_eq!(out, "rule r on exec {\n  when a.b\n\n  deny\n  audit\n}\n");
    }

    #[test]
    fn format_file_parenthesises_generated_shapes() {
        let e = |kind| Expr { kind, span: 0..0 };
        let r = |n: &str| {
            e(ExprKind::Ref(Ident {
                name: n.into(),
                span: 0..0,
            }))
        };
        let when = e(ExprKind::And(vec![
            e(ExprKind::Or(vec![r("a"), r("b")])),
            e(ExprKind::Not(Box::new(e(ExprKind::And(vec![
                r("c"),
                r("d"),
            ]))))),
            e(ExprKind::Or(vec![r("x")])),
            e(ExprKind::Or(vec![])),
        ]));
        let file = File {
            items: vec![Item::Let(LetDecl {
                name: Ident {
                    name: "l".into(),
                    span: 0..0,
                },
                body: when,
                span: 0..0,
            })],
        };
        assert_eq!(
            format_file(&file),
            "let l = (a or b) and not (c and d) and x and false\n"
        );
    }
}
