//! The front end never panics, and every diagnostic points inside its input.

use miette::Diagnostic;
use proptest::prelude::*;

/// Tokens of the language and near-misses, to build plausible token soups.
const TOKENS: &[&str] = &[
    "policy",
    "set",
    "let",
    "rule",
    "on",
    "exec",
    "open",
    "connect",
    "when",
    "unless",
    "allow",
    "deny",
    "kill",
    "audit",
    "severity",
    "high",
    "count",
    "rate",
    "per",
    "5m",
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
    "process.binary",
    "process.binray",
    "user.uid",
    "k8s.label",
    "[",
    "]",
    "net.daddr",
    "==",
    "!=",
    "<",
    "<=",
    ">",
    ">=",
    "=",
    "{",
    "}",
    "(",
    ")",
    ",",
    "..",
    "\"/usr/bin/sudo\"",
    "\"rel\"",
    "\"/a/../b\"",
    "\"\\q\"",
    "\"",
    "description",
    "mode",
    "//c\n",
    "\n",
    " ",
    "x",
    "é",
    "\u{0}",
    "0",
    "65536",
    "1..9",
    "10.0.0.0/8",
    "::1",
    "300.1.1.1",
    "CAP_SYS_ADMIN",
    "CAP_NOPE",
];

fn check_spans(src: &str) {
    let report = policy_dsl::check_source(src);
    for d in &report.diagnostics {
        for label in d.labels().into_iter().flatten() {
            assert!(
                label.offset() + label.len() <= src.len(),
                "label {:?} outside input of {} bytes: {d:?}",
                (label.offset(), label.len()),
                src.len()
            );
            assert!(
                src.is_char_boundary(label.offset()),
                "label not on a char boundary: {d:?}"
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_text_never_panics(src in "\\PC{0,200}") {
        check_spans(&src);
    }

    #[test]
    fn token_soup_never_panics(tokens in proptest::collection::vec(proptest::sample::select(TOKENS), 0..60)) {
        check_spans(&tokens.join(" "));
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        check_spans(&String::from_utf8_lossy(&bytes));
    }
}
