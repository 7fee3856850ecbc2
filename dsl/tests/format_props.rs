//! Properties of the formatter (`policy_dsl::format`):
//!
//! (a) a generated tree printed by `format_file` parses back to itself (up to
//!     spans), for trees covering every declaration, clause, expression kind,
//!     operator and literal kind;
//! (b) formatting is idempotent: on generated sources laid out badly (random
//!     whitespace between every two tokens) and on every `.policy` file of the
//!     repository;
//! (c) every comment survives, same text, same order: comments inserted at
//!     random line boundaries and between random tokens.

use std::path::Path;

use policy_dsl::ast::*;
use policy_dsl::format::{format_file, format_source, FormatError};
use policy_dsl::parser::parse;
use proptest::collection::vec;
use proptest::prelude::*;

mod common;
use common::*;

// ---- helpers -------------------------------------------------------------------

fn stripped(file: &File) -> File {
    let mut f = file.clone();
    f.strip_spans();
    f
}

/// Parse text that must parse; its tree without spans.
fn reparse(text: &str) -> File {
    let (file, errors) = parse(text);
    assert!(errors.is_empty(), "does not parse: {errors:?}\n{text}");
    stripped(&file)
}

/// The comments of a text, trailing whitespace removed (a test-side scanner,
/// independent of the formatter's).
fn comments(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut chars = text.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if c == '"' {
            while let Some((_, c)) = chars.next() {
                match c {
                    '\\' => {
                        chars.next();
                    }
                    '"' | '\n' => break,
                    _ => {}
                }
            }
        } else if c == '/' && text[i + 1..].starts_with('/') {
            let end = text[i..].find('\n').map_or(text.len(), |n| i + n);
            out.push(text[i..end].trim_end().to_string());
            while chars.peek().is_some_and(|&(j, _)| j < end) {
                chars.next();
            }
        }
    }
    out
}

/// Format, and check what every output must satisfy: same tree, same
/// comments, idempotent.
fn format_checked(src: &str) -> String {
    let out = match format_source(src) {
        Ok(out) => out,
        Err(e) => panic!("{e}: {e:?}\n--- input:\n{src}"),
    };
    assert_eq!(
        reparse(&out),
        reparse(src),
        "tree changed\n--- input:\n{src}\n--- output:\n{out}"
    );
    assert_eq!(
        comments(&out),
        comments(src),
        "comments changed\n--- input:\n{src}\n--- output:\n{out}"
    );
    let again = format_source(&out).unwrap_or_else(|e| panic!("{e}\n{out}"));
    assert_eq!(
        again, out,
        "not idempotent\n--- input:\n{src}\n--- first:\n{out}\n--- second:\n{again}"
    );
    out
}

// ---- properties -------------------------------------------------------------------

proptest! {
    // 512 cases by default; PROPTEST_CASES=… for a longer run.
    #![proptest_config(ProptestConfig::with_cases(
        std::env::var("PROPTEST_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(512)
    ))]

    /// (a) `parse(format_file(ast)) == ast` up to spans, and the output is
    /// already canonical for `format_source`.
    #[test]
    fn generated_trees_round_trip(file in file()) {
        let text = format_file(&file);
        prop_assert_eq!(reparse(&text), stripped(&file), "\n{}", text);
        let again = format_source(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        prop_assert_eq!(again, text);
    }

    /// (b) badly laid-out sources format to the canonical text, idempotently.
    #[test]
    fn messy_sources_format_canonically(file in file(), choices in vec(any::<u8>(), 1..64)) {
        let canonical = format_file(&file);
        let src = messy(&tokens(&canonical), &choices, &[String::new()], false);
        let out = format_checked(&src);
        // Blank lines the messy layout left inside blocks are kept; otherwise
        // the text is the canonical one.
        let non_blank = |t: &str| t.lines().filter(|l| !l.is_empty()).map(str::to_string).collect::<Vec<_>>();
        prop_assert_eq!(non_blank(&out), non_blank(&canonical));
    }

    /// (c) comments between random tokens all survive, in order, and the
    /// result is idempotent.
    #[test]
    fn comments_between_tokens_survive(
        file in file(),
        choices in vec(any::<u8>(), 1..64),
        suffixes in vec(suffix(), 1..8),
    ) {
        let canonical = format_file(&file);
        let src = messy(&tokens(&canonical), &choices, &suffixes, true);
        let out = format_checked(&src);
        prop_assert_eq!(comments(&out).len(), comments(&src).len());
    }

    /// (c) comments at random line boundaries (own-line or end-of-line) all
    /// survive, in order, and the result is idempotent.
    #[test]
    fn comments_at_line_boundaries_survive(
        file in file(),
        choices in vec(0u8..6, 1..64),
        suffixes in vec(suffix(), 1..8),
    ) {
        let canonical = format_file(&file);
        let mut src = String::new();
        let mut n = 0;
        for (i, line) in canonical.lines().enumerate() {
            let choice = choices[i % choices.len()];
            let mut comment = || {
                n += 1;
                format!("// c{n}{}", suffixes[n % suffixes.len()])
            };
            match choice {
                0 => src.push_str(&format!("{}\n", comment())),
                1 => src.push_str(&format!("\n  {}\n\n", comment())),
                _ => {}
            }
            src.push_str(line);
            if choice >= 4 {
                src.push_str(&format!(" {}", comment()));
            }
            src.push('\n');
        }
        if choices[0] == 3 {
            src.push_str("// at the end\n");
        }
        let out = format_checked(&src);
        prop_assert_eq!(comments(&out).len(), comments(&src).len());
    }
}

#[test]
fn tokens_keep_indexed_fields_and_operators_whole() {
    assert_eq!(
        tokens("when k8s.label[\"a b\"] != 10.0.0.0/8 and x not in { \"a\\\"b\", 1..2 }"),
        [
            "when",
            "k8s.label[\"a b\"]",
            "!=",
            "10.0.0.0/8",
            "and",
            "x",
            "not",
            "in",
            "{",
            "\"a\\\"b\"",
            ",",
            "1..2",
            "}"
        ]
    );
}

// ---- every policy file of the repository ------------------------------------------

/// (b) every `.policy` file of the repository that parses formats
/// idempotently, to the same tree, with its comments; one that does not
/// parse is refused.
#[test]
fn repository_policies_format_idempotently() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let mut files = Vec::new();
    policy_files(root, &mut files);
    assert!(files.len() > 10, "found only {files:?}");
    let mut formatted = 0;
    for path in files {
        let src = std::fs::read_to_string(&path).unwrap();
        if parse(&src).1.is_empty() {
            format_checked(&src);
            formatted += 1;
        } else {
            assert!(
                matches!(format_source(&src), Err(FormatError::Syntax(_))),
                "{} does not parse but was formatted",
                path.display()
            );
        }
    }
    assert!(formatted > 10);
}
