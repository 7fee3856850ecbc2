//! The parser's fast path (`src/fast.rs`) changes nothing: for every input,
//! `parse_declarations` (fast path, pest for the rest) and
//! `parse_declarations_with(_, Mode::PestOnly)` give the same trees *with
//! spans*, the same errors (equal values, same Display, same labels) and the
//! same failed-declaration lists.
//!
//! Inputs: generated trees printed by `format_file`; the same laid out badly,
//! with comments between tokens; random token soups (keywords as names,
//! every literal kind and near-misses, comments, odd whitespace, unterminated
//! strings, bad escapes); random mutations of valid files; every `.policy`
//! file of the repository and every fenced block of `docs/*.md`.
//!
//! The generators of trees are shared with `format_props.rs` (tests/common).

use std::path::Path;

use miette::Diagnostic;
use policy_dsl::format::format_file;
use policy_dsl::parser::{fast_path_coverage, parse_declarations_with, Mode, Parsed};
use proptest::collection::vec;
use proptest::prelude::*;

// ---- the property ---------------------------------------------------------------

fn labels(e: &policy_dsl::Error) -> Vec<(Option<String>, usize, usize)> {
    e.labels()
        .into_iter()
        .flatten()
        .map(|l| (l.label().map(str::to_string), l.offset(), l.len()))
        .collect()
}

/// Both modes agree on `src`. Returns the fast path's coverage.
fn same(src: &str) -> (usize, usize) {
    let fast: Parsed = parse_declarations_with(src, Mode::Fast);
    let pest: Parsed = parse_declarations_with(src, Mode::PestOnly);
    assert_eq!(fast.file, pest.file, "trees differ\n--- input:\n{src}");
    assert_eq!(fast.errors, pest.errors, "errors differ\n--- input:\n{src}");
    let shown = |p: &Parsed| {
        p.errors
            .iter()
            .map(|e| (e.to_string(), labels(e), e.help().map(|h| h.to_string())))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        shown(&fast),
        shown(&pest),
        "diagnostics differ\n--- input:\n{src}"
    );
    assert_eq!(
        fast.failed, pest.failed,
        "failed lists differ\n--- input:\n{src}"
    );
    fast_path_coverage(src)
}

mod common;
use common::*;

/// Tokens of the language, near-misses and layout, for token soups.
const TOKENS: &[&str] = &[
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
    "description",
    "mode",
    "tags",
    "exec",
    "open",
    "connect",
    "high",
    "p",
    "s",
    "x",
    "not_x",
    "no_audit",
    "process.binary",
    "process.binray",
    "user.uid",
    "k8s.label",
    "k8s.label[\"app\"]",
    "k8s.label [\"app\"]",
    "k8s.label[ \"a\" ]",
    "a.not",
    "a.in",
    "a..b",
    "a.",
    ".b",
    "[",
    "]",
    "==",
    "!=",
    "<",
    "<=",
    ">",
    ">=",
    "=",
    "=<",
    "!",
    "{",
    "}",
    "(",
    ")",
    ",",
    "..",
    ".",
    ":",
    "/",
    "\"/usr/bin/sudo\"",
    "\"rel\"",
    "\"a b\"",
    "\"\\q\"",
    "\"\\u{41}\"",
    "\"\\u{110000}\"",
    "\"\\u{zz}\"",
    "\"\\\"\"",
    "\"é\"",
    "\"tab\there\"",
    "\"",
    "\"open",
    "\"\\",
    "//c\n",
    "// rule x on exec {\n",
    "/",
    "\n",
    " ",
    "\t",
    "\r\n",
    "\u{feff}",
    "é",
    "\u{0}",
    "0",
    "7",
    "65536",
    "007",
    "1..9",
    "1..",
    "..9",
    "1..9a",
    "1.2",
    "10.0.0.0/8",
    "10.0.0.0//8",
    "10.0.0.0/",
    "10.0.0.1a",
    "10.0.0.1234",
    "300.1.1.1",
    "::1",
    "fe80::1",
    "2001:db8::/32",
    "::ffff:10.0.0.1",
    "1:2:3:4:5:6:7:8",
    "1:2:3:4:5:6:7:8:9",
    "::",
    "a:b",
    "dead:beef::",
    "cafe",
    "CAP_SYS_ADMIN",
    "CAP_",
    "CAP_x.y",
    "5m",
    "5ms",
    "5mss",
    "10s",
    "1h",
    "2d",
    "3x",
    "9",
    "unset_x",
    "true_",
    "false.x",
];

/// Mutations of a valid text: (position fraction, kind, token).
fn mutate(text: &str, edits: &[(f64, u8, usize)]) -> String {
    let mut t = text.to_string();
    for &(at, kind, tok) in edits {
        if t.is_empty() {
            t.push_str(TOKENS[tok % TOKENS.len()]);
            continue;
        }
        let mut i = ((t.len() as f64) * at) as usize;
        while !t.is_char_boundary(i) {
            i -= 1;
        }
        let mut j = (i + 1 + tok % 7).min(t.len());
        while !t.is_char_boundary(j) {
            j += 1;
        }
        match kind % 4 {
            0 => t.insert_str(i, TOKENS[tok % TOKENS.len()]),
            1 => t.replace_range(i..j, ""),
            2 => t.replace_range(i..j, TOKENS[tok % TOKENS.len()]),
            _ => {
                let piece = t[i..j].to_string();
                t.insert_str(j, &piece);
            }
        }
    }
    t
}

// ---- properties -----------------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig::with_cases(
        std::env::var("PROPTEST_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(512)
    ))]

    /// Canonical text of generated trees: the same result, and the fast path
    /// takes every declaration (it is not silently falling back).
    #[test]
    fn generated_trees(file in file()) {
        let text = format_file(&file);
        let (fast, total) = same(&text);
        prop_assert_eq!(fast, total, "fast path fell back on canonical text:\n{}", text);
    }

    /// The same laid out badly: any whitespace between tokens, comments
    /// between tokens (end-of-line and own-line).
    #[test]
    fn messy_layouts(
        file in file(),
        choices in vec(any::<u8>(), 1..64),
        suffixes in vec("[ a-z\"/{}()=]{0,10}", 1..8),
        comments in any::<bool>(),
    ) {
        let canonical = format_file(&file);
        let src = messy(&tokens(&canonical), &choices, &suffixes, comments);
        same(&src);
    }

    /// Random token soups, joined by a space or by nothing.
    #[test]
    fn token_soups(
        tokens in vec(proptest::sample::select(TOKENS), 0..80),
        glue in proptest::sample::select(&["", " ", "\n"][..]),
    ) {
        same(&tokens.join(glue));
    }

    /// Token soups that start like declarations, so the fast path gets deep.
    #[test]
    fn declaration_like_soups(
        starts in vec((proptest::sample::select(&[
            "rule r on exec { when ", "let l = ", "set s = { ", "default deny exec ",
            "test \"t\" { exec { ", "policy p { ", "rule r on open { when a.b == 1 ",
        ][..]), vec(proptest::sample::select(TOKENS), 0..12)), 1..6),
    ) {
        let mut src = String::new();
        for (start, rest) in starts {
            src.push_str(start);
            src.push_str(&rest.join(" "));
            src.push('\n');
        }
        same(&src);
    }

    /// Random edits of valid files.
    #[test]
    fn mutated_files(
        file in file(),
        edits in vec((0.0f64..1.0, any::<u8>(), any::<usize>()), 1..4),
    ) {
        let text = format_file(&file);
        same(&mutate(&text, &edits));
    }

    /// Arbitrary text.
    #[test]
    fn arbitrary_text(src in "\\PC{0,200}") {
        same(&src);
    }
}

// ---- files of the repository ----------------------------------------------------

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap()
}

#[test]
fn repository_policies() {
    let mut files = Vec::new();
    policy_files(root(), &mut files);
    assert!(files.len() > 10, "found only {files:?}");
    let (mut fast, mut total) = (0, 0);
    for path in files {
        let src = std::fs::read_to_string(&path).unwrap();
        let (f, t) = same(&src);
        fast += f;
        total += t;
    }
    // Most declarations of the repository take the fast path.
    assert!(
        fast * 10 >= total * 8,
        "fast path took {fast} of {total} declarations"
    );
}

/// Every fenced block of every document in docs/ (policies and fragments).
#[test]
fn docs_examples() {
    let mut blocks = 0;
    for entry in std::fs::read_dir(root().join("docs")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "md") {
            continue;
        }
        let doc = std::fs::read_to_string(&path).unwrap();
        let mut current: Option<String> = None;
        for line in doc.lines() {
            match (&mut current, line.trim_start().starts_with("```")) {
                (None, true) => current = Some(String::new()),
                (Some(block), true) => {
                    same(block);
                    blocks += 1;
                    current = None;
                }
                (Some(block), false) => {
                    block.push_str(line);
                    block.push('\n');
                }
                (None, false) => {}
            }
        }
        same(&doc);
    }
    assert!(blocks > 10);
}

/// Spans pest puts trailing whitespace into (optional parts at the end of a
/// rule) and other corners, spelled out.
#[test]
fn corners() {
    // (source, whether the fast path takes it: pest reads `not` as a name,
    // unterminated strings and deep nesting go to pest).
    for (src, fast) in [
        ("let l = a.b // c\n\n", true),
        ("let l = a and b  \n", true),
        ("let l = a or b // x\n", true),
        ("let l = a or b and c\n", true),
        ("let l = (a or b) and not not (c)\n", true),
        ("let l = not in { 1 }\n", false),
        ("let not = a\n", false),
        ("let l = x == not\n", false),
        ("let l = a.not == 1\n", false),
        ("default deny exec  // c\n", true),
        ("default deny exec when a == 1 or b\n  ", true),
        ("rule r on exec { when a audit }", true),
        ("rule r on exec { when a audit severity high // c\n count \"x\" }", true),
        ("rule r on exec { when a audit severity high \"m\\q\" rate 1 per 5ms }", true),
        ("rule r on exec { when k8s.label[ // c\n \"a\\z\" ] == 10.0.0.1and b }", true),
        ("rule r on exec { when a in { 1, 2, } unless b not in {CAP_X,unset,true,::1,1..2} kill }", true),
        ("test \"t\" { exec { a = 1, b = { 1 }, } expect audit r  expect audit a, b expect no audit expect count \"c\" }", true),
        ("test \"t\" { exec { } expect allow }", true),
        ("policy p { description = \"d\" mode = enforce tags = { \"a\" } }", true),
        ("\u{feff}policy p { }\u{feff}", true),
        ("set s = { \"a\\u{41}\\n\" }", true),
        ("rule r on exec { when a == \"\\", false),
        ("rule r on exec { when ((((((((((((((((((((((((((((((((((((((a)))))))))))))))))))))))))))))))))))))) }", false),
    ] {
        let (took, total) = same(src);
        assert_eq!(took == total, fast, "{src:?}: fast path took {took} of {total}");
    }
}
