//! Text → [`ast::File`], reporting every syntax error of a file.
//!
//! pest stops at the first error, so the file is first cut into top-level
//! chunks (one per `policy`, `set` or `rule` declaration, see [`chunks`]) and
//! each chunk is parsed on its own: an error in one declaration does not hide
//! errors in the next.

use pest::iterators::Pair;
use pest::Parser as _;
use pest_derive::Parser;

use crate::ast::*;
use crate::diagnostic::{span, Error, InvalidEscape, SyntaxError};

#[derive(Parser)]
#[grammar = "grammar.pest"]
struct Grammar;

/// A declaration that did not parse: its keyword and, when it got that far,
/// its name. Checks use it to avoid follow-on errors ("unknown set `s`" when
/// `set s` itself had a syntax error).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedDecl {
    /// `policy`, `set`, `let`, `rule`, `default` or `test`; empty for text
    /// before the first declaration.
    pub keyword: String,
    /// The name after the keyword, if it is an identifier.
    pub name: Option<String>,
}

/// A parsed file: the items that parsed, the syntax errors of those that did
/// not, and which declarations failed.
#[derive(Debug, Clone, Default)]
pub struct Parsed {
    /// The tree of the declarations that parsed.
    pub file: File,
    /// Syntax errors (and invalid escapes), in source order.
    pub errors: Vec<Error>,
    /// Declarations that did not parse.
    pub failed: Vec<FailedDecl>,
}

/// Parse one file. Returns the items that parsed and the errors of those that
/// did not; the tree is usable for further checks even when errors exist.
pub fn parse(source: &str) -> (File, Vec<Error>) {
    let parsed = parse_declarations(source);
    (parsed.file, parsed.errors)
}

/// Which parser reads each declaration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// The hand-written fast path (`fast.rs`) for declarations it is sure
    /// of; pest for every other declaration, so all syntax errors are pest's.
    #[default]
    Fast,
    /// pest for every declaration: the reference the fast path is tested
    /// against.
    PestOnly,
}

/// Parse one file, also reporting which declarations failed.
pub fn parse_declarations(source: &str) -> Parsed {
    parse_declarations_with(source, Mode::Fast)
}

/// [`parse_declarations`] with a choice of parser. Both modes give the same
/// result (tree with spans, errors, failed declarations); `tests/fast_parser.rs`
/// checks it.
pub fn parse_declarations_with(source: &str, mode: Mode) -> Parsed {
    let mut parsed = Parsed::default();
    let ranges = chunks(source);
    parsed.file.items.reserve(ranges.len());
    for range in ranges {
        let text = &source[range.clone()];
        if mode == Mode::Fast {
            if let Some((item, errors)) = crate::fast::parse_item(text, range.start) {
                parsed.file.items.push(item);
                parsed.errors.extend(errors);
                continue;
            }
        }
        match Grammar::parse(Rule::item_only, text) {
            Ok(mut pairs) => {
                let item_only = pairs.next().expect("item_only matched");
                let mut builder = Builder {
                    base: range.start,
                    errors: &mut parsed.errors,
                };
                for pair in item_only.into_inner() {
                    if pair.as_rule() != Rule::EOI {
                        parsed.file.items.push(builder.item(pair));
                    }
                }
            }
            Err(e) => {
                parsed
                    .errors
                    .push(syntax_error(source, range.start, e).into());
                let mut words = text.split(|c: char| !(c.is_alphanumeric() || c == '_'));
                let keyword = words
                    .next()
                    .filter(|w| ITEM_KEYWORDS.contains(w))
                    .unwrap_or_default();
                let name = words
                    .find(|w| !w.is_empty())
                    .filter(|_| !keyword.is_empty());
                parsed.failed.push(FailedDecl {
                    keyword: keyword.to_string(),
                    name: name.map(str::to_string),
                });
            }
        }
    }
    parsed
}

/// How many of the file's declaration chunks the fast path parses, out of
/// how many chunks: for tests and benches, to see that the fast path is taken.
#[doc(hidden)]
pub fn fast_path_coverage(source: &str) -> (usize, usize) {
    let ranges = chunks(source);
    let fast = ranges
        .iter()
        .filter(|r| crate::fast::parse_item(&source[(*r).clone()], r.start).is_some())
        .count();
    (fast, ranges.len())
}

/// Whether each byte can be part of an identifier (`[A-Za-z0-9_]`), as a
/// table: the chunker and the fast parser test every byte of every name,
/// and one load is cheaper than `is_ascii_alphanumeric`'s range tests.
pub(crate) static IDENT_BYTE: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = c.is_ascii_alphanumeric() || c == b'_';
        b += 1;
    }
    table
};

/// Keywords that start a top-level declaration.
const ITEM_KEYWORDS: [&str; 6] = ["policy", "set", "let", "rule", "default", "test"];

/// Cut `source` into byte ranges, one per top-level declaration.
///
/// A chunk starts at an item keyword outside braces, or at an item keyword that
/// is the first token of its line (a missing `}` then costs one declaration,
/// not the rest of the file). Strings and comments are skipped. Text before the
/// first keyword forms its own chunk so that it is reported, not ignored.
fn chunks(source: &str) -> Vec<std::ops::Range<usize>> {
    let bytes = source.as_bytes();
    let mut starts = Vec::new();
    let mut depth = 0usize;
    let mut line_start = true;
    // The previous word opened a declaration: the next word is its name, even
    // when it is a keyword (`rule policy on exec`), so it starts nothing.
    let mut after_item_keyword = false;
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        match c {
            b'\n' => {
                line_start = true;
                i += 1;
                continue;
            }
            b' ' | b'\t' | b'\r' => {
                i += 1;
                continue;
            }
            b'/' if bytes.get(i + 1) == Some(&b'/') => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
                continue;
            }
            b'"' => {
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' && bytes[i] != b'\n' {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
            }
            b'{' => {
                depth += 1;
                i += 1;
            }
            b'}' => {
                depth = depth.saturating_sub(1);
                i += 1;
            }
            c if c.is_ascii_alphabetic() || c == b'_' => {
                let start = i;
                i += bytes[i..]
                    .iter()
                    .position(|&b| !IDENT_BYTE[usize::from(b)])
                    .unwrap_or(bytes.len() - i);
                let is_item = matches!(
                    &bytes[start..i],
                    b"policy" | b"set" | b"let" | b"rule" | b"default" | b"test"
                );
                if is_item && !after_item_keyword && (depth == 0 || line_start) {
                    depth = 0;
                    starts.push(start);
                    after_item_keyword = true;
                    line_start = false;
                    continue;
                }
            }
            _ => i += 1,
        }
        after_item_keyword = false;
        line_start = false;
    }
    let mut ranges = Vec::new();
    let first = starts.first().copied().unwrap_or(source.len());
    let lead = source[..first].trim_start_matches('\u{feff}');
    if !lead.trim().is_empty() && !only_comments(lead) {
        ranges.push(0..first);
    }
    for (n, &s) in starts.iter().enumerate() {
        let end = starts.get(n + 1).copied().unwrap_or(source.len());
        ranges.push(s..end);
    }
    ranges
}

fn only_comments(text: &str) -> bool {
    text.lines().all(|l| {
        let l = l.trim();
        l.is_empty() || l.starts_with("//")
    })
}

/// Describe a pest error in the language's own words.
fn syntax_error(source: &str, base: usize, e: pest::error::Error<Rule>) -> SyntaxError {
    let pos = match e.location {
        pest::error::InputLocation::Pos(p) => p,
        pest::error::InputLocation::Span((s, _)) => s,
    } + base;
    let mut expected: Vec<&'static str> = match &e.variant {
        pest::error::ErrorVariant::ParsingError { positives, .. } => {
            positives.iter().filter_map(|r| describe(*r)).collect()
        }
        pest::error::ErrorVariant::CustomError { .. } => Vec::new(),
    };
    expected.sort_unstable();
    expected.dedup();
    let (found, found_span) = token_at(source, pos);
    // A value written where an operator belongs: the operator is the fix,
    // whatever else could also have ended the condition.
    let looks_like_value = found.starts_with("`\"")
        || found.starts_with("`{")
        || found[1..].starts_with(|c: char| c.is_ascii_digit());
    if looks_like_value && expected.contains(&OPERATOR) {
        expected = vec![OPERATOR];
    }
    // Many literal kinds at once read better as one word.
    let literals = expected.iter().filter(|e| LITERALS.contains(*e)).count();
    if literals >= 3 {
        expected.retain(|e| !LITERALS.contains(e));
        expected.push("a value");
        expected.sort_unstable();
    }
    let expected = match expected.len() {
        0 => "a declaration (`policy`, `set`, `let`, `rule`, `default`, `test`)".to_string(),
        1 => expected[0].to_string(),
        n => format!("{} or {}", expected[..n - 1].join(", "), expected[n - 1]),
    };
    let keyword = found.trim_matches('`');
    let help = if found == "end of file" {
        Some("the declaration is incomplete; check for a missing `}` or `\"`".to_string())
    } else if expected.contains("a name") && is_keyword(keyword) {
        Some(format!(
            "`{keyword}` is a keyword of the language and cannot be used as a name; choose another"
        ))
    } else if expected.starts_with("an operator") {
        Some(
            "compare the field with a value, e.g. `process.binary == \"/usr/bin/sudo\"`"
                .to_string(),
        )
    } else if expected.starts_with("`,`") {
        Some("separate the values of a set with `,`".to_string())
    } else if expected.contains("a verdict") {
        Some("a rule's clauses come in this order: `when`, `unless`, a verdict, `audit`, `count`, `rate`".to_string())
    } else {
        Some("docs/language.md gives the form of every declaration".to_string())
    };
    // A string that does not end on its line: say so, whatever pest expected.
    if found.starts_with("`\"") && !source[pos..].lines().next().unwrap_or("")[1..].contains('"') {
        return SyntaxError {
            expected: "a closing `\"`".into(),
            found: "a string that does not end on its line".into(),
            span: span(&found_span),
            help: Some(
                "strings end on the line they start; write a quote inside a string as `\\\"`"
                    .into(),
            ),
        };
    }
    SyntaxError {
        expected,
        found,
        span: span(&found_span),
        help,
    }
}

/// The token that starts at `pos`, described for a message, and its span.
fn token_at(source: &str, pos: usize) -> (String, std::ops::Range<usize>) {
    let rest = &source[pos.min(source.len())..];
    let Some(c) = rest.chars().next() else {
        return ("end of file".into(), source.len()..source.len());
    };
    let len = if c.is_alphanumeric() || c == '_' {
        rest.find(|ch: char| !(ch.is_alphanumeric() || ch == '_' || ch == '.'))
            .unwrap_or(rest.len())
    } else if c == '"' {
        rest[1..]
            .find(['"', '\n'])
            .map(|n| n + 2)
            .unwrap_or(rest.len())
            .min(rest.len())
    } else {
        c.len_utf8()
    };
    let text = &rest[..len];
    let shown: String = if text.chars().count() > 40 {
        text.chars().take(40).chain("…".chars()).collect()
    } else {
        text.to_string()
    };
    (format!("`{shown}`"), pos..pos + len)
}

/// Every keyword of the language: the `keyword` rule of grammar.pest (a
/// test checks the two agree). None can be a name.
pub const KEYWORDS: [&str; 30] = [
    "policy",
    "set",
    "let",
    "rule",
    "on",
    "when",
    "unless",
    "allow",
    "deny",
    "kill",
    "audit",
    "severity",
    "count",
    "rate",
    "per",
    "default",
    "test",
    "expect",
    "no",
    "and",
    "or",
    "not",
    "in",
    "startswith",
    "endswith",
    "matches",
    "has",
    "true",
    "false",
    "unset",
];

/// Whether `word` is a keyword of the language.
fn is_keyword(word: &str) -> bool {
    KEYWORDS.contains(&word)
}

/// How operators are named in messages.
const OPERATOR: &str =
    "an operator (`==`, `!=`, `<`, `<=`, `>`, `>=`, `in`, `not in`, `startswith`, `endswith`, `matches`, `has`)";

/// How literal kinds are named in messages (collapsed to "a value" when many).
const LITERALS: [&str; 7] = [
    "a string in double quotes",
    "a number",
    "a range such as `1..1024`",
    "an address such as `10.0.0.0/8`",
    "a capability such as `CAP_SYS_ADMIN`",
    "`unset`",
    "`true` or `false`",
];

/// The grammar rule's meaning for a reader, or `None` for rules that are never
/// the thing a user is missing.
fn describe(rule: Rule) -> Option<&'static str> {
    Some(match rule {
        Rule::EOI => "end of file",
        Rule::policy_decl | Rule::kw_policy => "`policy`",
        Rule::set_decl | Rule::kw_set => "`set`",
        Rule::let_decl | Rule::kw_let => "`let`",
        Rule::rule_decl | Rule::kw_rule => "`rule`",
        Rule::default_decl | Rule::kw_default => "`default`",
        Rule::test_decl | Rule::kw_test => "`test`",
        Rule::policy_attr | Rule::attr_name => "an attribute (`description`, `mode`, `tags`)",
        Rule::kw_on => "`on`",
        Rule::when_clause | Rule::kw_when => "`when`",
        Rule::unless_clause | Rule::kw_unless => "`unless`",
        Rule::action | Rule::kw_allow | Rule::kw_deny | Rule::kw_kill | Rule::expect_verdict => {
            "a verdict (`allow`, `deny`, `kill`)"
        }
        Rule::audit_clause | Rule::kw_audit | Rule::expect_audit => "`audit`",
        Rule::severity_clause | Rule::kw_severity => "`severity`",
        Rule::count_clause | Rule::kw_count | Rule::expect_count => "`count`",
        Rule::rate_clause | Rule::kw_rate => "`rate`",
        Rule::kw_per => "`per`",
        Rule::expectation | Rule::kw_expect => "`expect`",
        Rule::expect_no_audit | Rule::kw_no => "`no audit`",
        Rule::test_event => "an event such as `exec { process.binary = \"/usr/bin/id\" }`",
        Rule::field_assign => "a field value such as `process.binary = \"/usr/bin/id\"`",
        Rule::kw_and => "`and`",
        Rule::kw_or => "`or`",
        Rule::kw_not | Rule::not_op => "`not`",
        Rule::kw_in => "`in`",
        Rule::operator
        | Rule::op_eq
        | Rule::op_ne
        | Rule::op_lt
        | Rule::op_le
        | Rule::op_gt
        | Rule::op_ge
        | Rule::op_in
        | Rule::op_not_in
        | Rule::op_startswith
        | Rule::op_endswith
        | Rule::op_matches
        | Rule::op_has => OPERATOR,
        Rule::expr | Rule::and_expr | Rule::unary | Rule::comparison | Rule::reference => {
            "a condition"
        }
        Rule::field_ref => "a field such as `process.binary`",
        Rule::index => "`[`",
        Rule::dotted => "a name",
        Rule::name | Rule::ident => "a name",
        Rule::hook_name => "a hook name such as `exec`",
        Rule::severity_name => "a severity (`info`, `low`, `medium`, `high`, `critical`)",
        Rule::string | Rule::string_body => "a string in double quotes",
        Rule::set_literal => "a set such as `{ \"/usr/bin/sudo\" }`",
        Rule::range | Rule::range_bound => "a range such as `1..1024`",
        Rule::ip | Rule::ipv4 | Rule::ipv6 => "an address such as `10.0.0.0/8`",
        Rule::int => "a number",
        Rule::duration => "a duration such as `30s`, `5m`, `1h`",
        Rule::cap_name => "a capability such as `CAP_SYS_ADMIN`",
        Rule::kw_unset => "`unset`",
        Rule::bool_lit | Rule::kw_true | Rule::kw_false => "`true` or `false`",
        Rule::lbrace => "`{`",
        Rule::rbrace => "`}`",
        Rule::lparen => "`(`",
        Rule::rparen => "`)`",
        Rule::comma => "`,`",
        Rule::assign => "`=`",
        Rule::file | Rule::item_only | Rule::WHITESPACE | Rule::COMMENT => return None,
        #[allow(unreachable_patterns)]
        _ => return None,
    })
}

/// Decode the body of a string literal starting at byte `base` of the file.
/// Escapes: `\"`, `\\`, `\n`, `\t`, `\r`, `\u{HEX}` (1 to 6 hex digits, a
/// Unicode scalar value). Anything else after `\` is reported and kept as
/// written.
pub(crate) fn decode_string(raw: &str, base: usize) -> (String, Vec<Error>) {
    let mut value = String::with_capacity(raw.len());
    let mut errors = Vec::new();
    let mut rest = raw;
    while let Some(at) = rest.find('\\') {
        value.push_str(&rest[..at]);
        let offset = base + (raw.len() - rest.len()) + at;
        let after = &rest[at + 1..];
        let Some(c) = after.chars().next() else {
            value.push('\\');
            rest = after;
            continue;
        };
        let (decoded, used) = match c {
            '"' => (Some('"'), 1),
            '\\' => (Some('\\'), 1),
            'n' => (Some('\n'), 1),
            't' => (Some('\t'), 1),
            'r' => (Some('\r'), 1),
            'u' if after[1..].starts_with('{') => match after[2..].find('}') {
                Some(end) => {
                    let hex = &after[2..2 + end];
                    let c = (1..=6)
                        .contains(&hex.len())
                        .then(|| u32::from_str_radix(hex, 16).ok().and_then(char::from_u32))
                        .flatten();
                    (c, 3 + end)
                }
                None => (None, 1),
            },
            other => (None, other.len_utf8()),
        };
        match decoded {
            Some(d) => value.push(d),
            None => {
                value.push('\\');
                value.push_str(&after[..used]);
                errors.push(
                    InvalidEscape {
                        escape: format!("\\{}", &after[..used]),
                        span: crate::diagnostic::span(&(offset..offset + 1 + used)),
                    }
                    .into(),
                );
            }
        }
        rest = &after[used..];
    }
    value.push_str(rest);
    (value, errors)
}

/// Builds AST nodes from pest pairs of one chunk starting at byte `base`.
struct Builder<'e> {
    base: usize,
    errors: &'e mut Vec<Error>,
}

impl Builder<'_> {
    fn span(&self, pair: &Pair<Rule>) -> Span {
        let s = pair.as_span();
        self.base + s.start()..self.base + s.end()
    }

    fn ident(&self, pair: Pair<Rule>) -> Ident {
        Ident {
            name: pair.as_str().to_string(),
            span: self.span(&pair),
        }
    }

    fn item(&mut self, pair: Pair<Rule>) -> Item {
        match pair.as_rule() {
            Rule::policy_decl => Item::Policy(self.policy(pair)),
            Rule::set_decl => Item::Set(self.set_decl(pair)),
            Rule::let_decl => Item::Let(self.let_decl(pair)),
            Rule::rule_decl => Item::Rule(self.rule(pair)),
            Rule::default_decl => Item::Default(self.default_decl(pair)),
            Rule::test_decl => Item::Test(self.test_decl(pair)),
            r => unreachable!("grammar yields only declarations as items, got {r:?}"),
        }
    }

    fn policy(&mut self, pair: Pair<Rule>) -> PolicyDecl {
        let span = self.span(&pair);
        let mut name = None;
        let mut attrs = Vec::new();
        for p in pair.into_inner() {
            match p.as_rule() {
                Rule::name => name = Some(self.ident(p)),
                Rule::policy_attr => {
                    let mut inner = p.into_inner();
                    let attr_name = self.ident(inner.next().expect("attribute name"));
                    let v = inner
                        .find(|q| q.as_rule() != Rule::assign)
                        .expect("attribute value");
                    let value = match v.as_rule() {
                        Rule::string => AttrValue::Str(self.string(v)),
                        Rule::set_literal => AttrValue::Set(self.set_literal(v)),
                        _ => AttrValue::Name(self.ident(v)),
                    };
                    attrs.push(Attr {
                        name: attr_name,
                        value,
                    });
                }
                _ => {}
            }
        }
        PolicyDecl {
            name: name.expect("policy has a name"),
            attrs,
            span,
        }
    }

    fn set_decl(&mut self, pair: Pair<Rule>) -> SetDecl {
        let span = self.span(&pair);
        let mut name = None;
        let mut value = None;
        for p in pair.into_inner() {
            match p.as_rule() {
                Rule::name => name = Some(self.ident(p)),
                Rule::set_literal => value = Some(self.set_literal(p)),
                _ => {}
            }
        }
        SetDecl {
            name: name.expect("set has a name"),
            value: value.expect("set has a value"),
            span,
        }
    }

    fn let_decl(&mut self, pair: Pair<Rule>) -> LetDecl {
        let span = self.span(&pair);
        let mut name = None;
        let mut body = None;
        for p in pair.into_inner() {
            match p.as_rule() {
                Rule::name => name = Some(self.ident(p)),
                Rule::expr => body = Some(self.expr(p)),
                _ => {}
            }
        }
        LetDecl {
            name: name.expect("let has a name"),
            body: body.expect("let has a body"),
            span,
        }
    }

    fn first_expr(&mut self, pair: Pair<Rule>) -> Expr {
        let e = pair
            .into_inner()
            .find(|q| q.as_rule() == Rule::expr)
            .expect("clause has a condition");
        self.expr(e)
    }

    fn rule(&mut self, pair: Pair<Rule>) -> RuleDecl {
        let span = self.span(&pair);
        let (mut name, mut hook, mut when, mut unless, mut action, mut audit, mut rate) =
            (None, None, None, None, None, None, None);
        let mut counts = Vec::new();
        for p in pair.into_inner() {
            match p.as_rule() {
                Rule::name => name = Some(self.ident(p)),
                Rule::hook_name => hook = Some(self.ident(p)),
                Rule::when_clause => when = Some(self.first_expr(p)),
                Rule::unless_clause => unless = Some(self.first_expr(p)),
                Rule::action => {
                    let sp = self.span(&p);
                    action = Some((self.action(p), sp));
                }
                Rule::audit_clause => audit = Some(self.audit(p)),
                Rule::count_clause => {
                    let s = p
                        .into_inner()
                        .find(|q| q.as_rule() == Rule::string)
                        .expect("count name");
                    counts.push(self.string(s));
                }
                Rule::rate_clause => {
                    let sp = self.span(&p);
                    let mut inner = p
                        .into_inner()
                        .filter(|q| matches!(q.as_rule(), Rule::int | Rule::duration));
                    let count = self.ident(inner.next().expect("rate count"));
                    let per = self.ident(inner.next().expect("rate period"));
                    rate = Some(RateClause {
                        count,
                        per,
                        span: sp,
                    });
                }
                _ => {}
            }
        }
        RuleDecl {
            name: name.expect("rule has a name"),
            hook: hook.expect("rule has a hook"),
            when: when.expect("rule has a condition"),
            unless,
            action,
            audit,
            counts,
            rate,
            span,
        }
    }

    /// The verdict keyword inside an `action` or `expect_verdict` pair.
    fn action(&mut self, pair: Pair<Rule>) -> Action {
        match pair.into_inner().next().expect("verdict keyword").as_rule() {
            Rule::kw_allow => Action::Allow,
            Rule::kw_deny => Action::Deny,
            _ => Action::Kill,
        }
    }

    fn audit(&mut self, pair: Pair<Rule>) -> AuditClause {
        let span = self.span(&pair);
        let mut severity = None;
        let mut message = None;
        for p in pair.into_inner() {
            match p.as_rule() {
                Rule::severity_clause => {
                    severity = p
                        .into_inner()
                        .find(|q| q.as_rule() == Rule::severity_name)
                        .map(|q| self.ident(q));
                }
                Rule::string => message = Some(self.string(p)),
                _ => {}
            }
        }
        AuditClause {
            severity,
            message,
            span,
        }
    }

    fn default_decl(&mut self, pair: Pair<Rule>) -> DefaultDecl {
        let span = self.span(&pair);
        let mut hook = None;
        let mut when = None;
        for p in pair.into_inner() {
            match p.as_rule() {
                Rule::hook_name => hook = Some(self.ident(p)),
                Rule::expr => when = Some(self.expr(p)),
                _ => {}
            }
        }
        DefaultDecl {
            hook: hook.expect("default has a hook"),
            when,
            span,
        }
    }

    fn test_decl(&mut self, pair: Pair<Rule>) -> TestDecl {
        let span = self.span(&pair);
        let mut name = None;
        let mut hook = None;
        let mut fields = Vec::new();
        let mut expects = Vec::new();
        for p in pair.into_inner() {
            match p.as_rule() {
                Rule::string => name = Some(self.string(p)),
                Rule::test_event => {
                    for q in p.into_inner() {
                        match q.as_rule() {
                            Rule::hook_name => hook = Some(self.ident(q)),
                            Rule::field_assign => {
                                let mut inner = q.into_inner();
                                let field = self.field_ref(inner.next().expect("field"));
                                let v = inner.find(|r| r.as_rule() != Rule::assign).expect("value");
                                let value = if v.as_rule() == Rule::set_literal {
                                    TestValue::Set(self.set_literal(v))
                                } else {
                                    TestValue::Literal(self.literal(v))
                                };
                                fields.push((field, value));
                            }
                            _ => {}
                        }
                    }
                }
                Rule::expectation => {
                    let sp = self.span(&p);
                    let e = p
                        .into_inner()
                        .find(|q| q.as_rule() != Rule::kw_expect)
                        .expect("expectation");
                    let kind = match e.as_rule() {
                        Rule::expect_verdict => ExpectKind::Verdict(self.action(e)),
                        Rule::expect_no_audit => ExpectKind::NoAudit,
                        Rule::expect_audit => ExpectKind::Audit(
                            e.into_inner()
                                .filter(|q| q.as_rule() == Rule::dotted)
                                .map(|q| self.ident(q))
                                .collect(),
                        ),
                        _ => {
                            let s = e
                                .into_inner()
                                .find(|q| q.as_rule() == Rule::string)
                                .expect("counter");
                            ExpectKind::Count(self.string(s))
                        }
                    };
                    expects.push(Expectation { kind, span: sp });
                }
                _ => {}
            }
        }
        TestDecl {
            name: name.expect("test has a name"),
            hook: hook.expect("test has a hook"),
            fields,
            expects,
            span,
        }
    }

    fn expr(&mut self, pair: Pair<Rule>) -> Expr {
        let span = self.span(&pair);
        match pair.as_rule() {
            Rule::expr | Rule::and_expr => {
                let is_or = pair.as_rule() == Rule::expr;
                let operands: Vec<Expr> = pair
                    .into_inner()
                    .filter(|p| !matches!(p.as_rule(), Rule::kw_or | Rule::kw_and))
                    .map(|p| self.expr(p))
                    .collect();
                if operands.len() == 1 {
                    return operands.into_iter().next().expect("one operand");
                }
                let kind = if is_or {
                    ExprKind::Or(operands)
                } else {
                    ExprKind::And(operands)
                };
                Expr { kind, span }
            }
            Rule::unary => {
                let mut nots = Vec::new();
                let mut paren: Option<(usize, usize)> = None;
                let mut inner = None;
                for p in pair.into_inner() {
                    match p.as_rule() {
                        Rule::not_op => nots.push(self.span(&p).start),
                        Rule::lparen => paren = Some((self.span(&p).start, 0)),
                        Rule::rparen => {
                            if let Some((open, _)) = paren {
                                paren = Some((open, self.span(&p).end));
                            }
                        }
                        _ => inner = Some(self.expr(p)),
                    }
                }
                let mut e = inner.expect("unary has an operand");
                if let Some((open, close)) = paren {
                    e = Expr {
                        kind: ExprKind::Paren(Box::new(e)),
                        span: open..close,
                    };
                }
                for start in nots.into_iter().rev() {
                    e = Expr {
                        kind: ExprKind::Not(Box::new(e)),
                        span: start..span.end,
                    };
                }
                e
            }
            Rule::comparison => Expr {
                kind: ExprKind::Compare(self.comparison(pair)),
                span,
            },
            Rule::bool_lit => {
                let value = pair
                    .into_inner()
                    .next()
                    .map(|k| k.as_rule() == Rule::kw_true)
                    .unwrap_or(false);
                Expr {
                    kind: ExprKind::Bool(value),
                    span,
                }
            }
            Rule::reference => {
                let ident = self.ident(pair.into_inner().next().expect("reference name"));
                Expr {
                    kind: ExprKind::Ref(ident),
                    span,
                }
            }
            r => unreachable!("not an expression rule: {r:?}"),
        }
    }

    fn field_ref(&mut self, pair: Pair<Rule>) -> FieldRef {
        let span = self.span(&pair);
        let mut inner = pair.into_inner();
        let name = self.ident(inner.next().expect("field name"));
        let key = inner
            .next()
            .and_then(|idx| idx.into_inner().find(|q| q.as_rule() == Rule::string))
            .map(|s| self.string(s));
        FieldRef { name, key, span }
    }

    fn comparison(&mut self, pair: Pair<Rule>) -> Comparison {
        let mut inner = pair.into_inner();
        let field = self.field_ref(inner.next().expect("field"));
        let op_pair = inner.next().expect("operator");
        let op_span = self.span(&op_pair);
        let op = match op_pair
            .into_inner()
            .next()
            .expect("operator kind")
            .as_rule()
        {
            Rule::op_eq => CompareOp::Eq,
            Rule::op_ne => CompareOp::Ne,
            Rule::op_lt => CompareOp::Lt,
            Rule::op_le => CompareOp::Le,
            Rule::op_gt => CompareOp::Gt,
            Rule::op_ge => CompareOp::Ge,
            Rule::op_in => CompareOp::In,
            Rule::op_not_in => CompareOp::NotIn,
            Rule::op_startswith => CompareOp::StartsWith,
            Rule::op_endswith => CompareOp::EndsWith,
            Rule::op_matches => CompareOp::Matches,
            _ => CompareOp::Has,
        };
        let rhs = inner.next().expect("operand");
        let operand = match rhs.as_rule() {
            Rule::set_literal => Operand::Set(self.set_literal(rhs)),
            Rule::dotted => Operand::Name(self.ident(rhs)),
            _ => Operand::Literal(self.literal(rhs)),
        };
        Comparison {
            field,
            op: (op, op_span),
            operand,
        }
    }

    fn set_literal(&mut self, pair: Pair<Rule>) -> SetLiteral {
        let span = self.span(&pair);
        let elements = pair
            .into_inner()
            .filter(|p| !matches!(p.as_rule(), Rule::lbrace | Rule::rbrace | Rule::comma))
            .map(|p| self.literal(p))
            .collect();
        SetLiteral { elements, span }
    }

    fn literal(&mut self, pair: Pair<Rule>) -> Literal {
        let span = self.span(&pair);
        let kind = match pair.as_rule() {
            Rule::string => LiteralKind::Str(self.string(pair).value),
            Rule::int => LiteralKind::Int(pair.as_str().to_string()),
            Rule::range => {
                let mut ends = pair.into_inner().map(|p| p.as_str().to_string());
                LiteralKind::Range(
                    ends.next().expect("range start"),
                    ends.next().expect("range end"),
                )
            }
            Rule::ip => LiteralKind::Ip(pair.as_str().to_string()),
            Rule::cap_name => LiteralKind::Cap(pair.as_str().to_string()),
            Rule::kw_unset => LiteralKind::Unset,
            Rule::bool_lit => LiteralKind::Bool(
                pair.into_inner()
                    .next()
                    .map(|k| k.as_rule() == Rule::kw_true)
                    .unwrap_or(false),
            ),
            r => unreachable!("not a literal rule: {r:?}"),
        };
        Literal { kind, span }
    }

    /// Decode a string literal; unknown escapes are reported and kept verbatim.
    fn string(&mut self, pair: Pair<Rule>) -> StringLit {
        let span = self.span(&pair);
        let body = pair.into_inner().next().expect("string body");
        let body_start = self.span(&body).start;
        let (value, errors) = decode_string(body.as_str(), body_start);
        self.errors.extend(errors);
        StringLit { value, span }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keywords_are_the_grammars() {
        let grammar = include_str!("grammar.pest");
        let rule = &grammar[grammar.find("keyword = _{").unwrap()..];
        let rule = &rule[..rule.find('}').unwrap()];
        let mut in_grammar: Vec<&str> = rule.split('"').skip(1).step_by(2).collect();
        in_grammar.sort_unstable();
        let mut ours = KEYWORDS.to_vec();
        ours.sort_unstable();
        assert_eq!(ours, in_grammar);
    }

    #[test]
    fn chunks_split_at_top_level_keywords() {
        let src = "policy p { }\nset s = { \"rule\" }\n// rule in comment\nrule r on exec { when a.b == \"x\" }\n";
        let c = chunks(src);
        assert_eq!(c.len(), 3);
        assert!(src[c[1].clone()].starts_with("set s"));
        assert!(src[c[2].clone()].starts_with("rule r"));
    }

    #[test]
    fn missing_brace_costs_one_declaration() {
        let src = "policy p {\n\nrule a on exec { when process.binary == \"/x\"\nrule b on exec { when process.binary == \"/y\" deny }\n";
        let (file, errors) = parse(src);
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert_eq!(file.items.len(), 1);
    }

    #[test]
    fn precedence_and_binds_tighter_than_or() {
        let src = "rule r on exec { when a.b == \"/1\" or a.b == \"/2\" and not a.b == \"/3\" }";
        let (file, errors) = parse(src);
        assert!(errors.is_empty(), "{errors:?}");
        let Item::Rule(r) = &file.items[0] else {
            panic!()
        };
        let ExprKind::Or(ops) = &r.when.kind else {
            panic!("{:?}", r.when)
        };
        assert_eq!(ops.len(), 2);
        let ExprKind::And(ands) = &ops[1].kind else {
            panic!()
        };
        assert!(matches!(ands[1].kind, ExprKind::Not(_)));
        assert_eq!(&src[ands[1].span.clone()], "not a.b == \"/3\"");
    }

    #[test]
    fn syntax_error_names_language_terms() {
        let (_, errors) = parse("rule r on exec { when process.binary is \"/x\" }");
        let Error::Syntax(e) = &errors[0] else {
            panic!("{errors:?}")
        };
        assert!(
            e.expected.contains("an operator (`==`, `!=`"),
            "{}",
            e.expected
        );
        assert_eq!(e.found, "`is`");
    }

    #[test]
    fn every_escape_decodes_and_bad_ones_are_reported_in_place() {
        let (v, e) = decode_string(r#"a\"b\\c\n\t\r\u{41}\u{1F600}"#, 10);
        assert_eq!(v, "a\"b\\c\n\t\rA\u{1F600}");
        assert!(e.is_empty());
        let (v, e) = decode_string(r"x\q\u{110000}", 10);
        assert_eq!(v, r"x\q\u{110000}");
        assert_eq!(e.len(), 2);
        assert_eq!(e[0].offset(), 11);
        assert_eq!(e[1].offset(), 13);
    }

    #[test]
    fn escapes_are_decoded() {
        let (file, errors) = parse("set s = { \"a\\\"b\\\\c\" }");
        assert!(errors.is_empty());
        let Item::Set(s) = &file.items[0] else {
            panic!()
        };
        assert_eq!(s.value.elements[0].kind, LiteralKind::Str("a\"b\\c".into()));
    }
}
