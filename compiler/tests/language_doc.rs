//! `docs/language.md` stays true: every ```policy example checks with no
//! diagnostic, and every hook and field of the schema has a row in its tables.

use std::path::Path;

use policy_compiler::compile::{check, SourceFile};
use policy_compiler::render::render;
use policy_dsl::schema::{Field, Hook};

fn doc() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/language.md");
    std::fs::read_to_string(path).unwrap()
}

/// The ```policy blocks of the document, with their first line number.
fn examples(doc: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut current: Option<(usize, String)> = None;
    for (i, line) in doc.lines().enumerate() {
        match (&mut current, line.trim_end()) {
            (None, "```policy") => current = Some((i + 2, String::new())),
            (Some(_), "```") => out.push(current.take().unwrap()),
            (Some((_, text)), l) => {
                text.push_str(l);
                text.push('\n');
            }
            (None, _) => {}
        }
    }
    assert!(current.is_none(), "unclosed ```policy block");
    out
}

#[test]
fn every_example_checks_cleanly() {
    let doc = doc();
    let examples = examples(&doc);
    assert!(examples.len() >= 3, "found {} examples", examples.len());
    for (line, text) in examples {
        let sources = [SourceFile {
            name: format!("docs/language.md:{line}"),
            text,
        }];
        let (policies, diagnostics) = check(&sources);
        assert!(
            diagnostics.is_empty() && policies.is_some(),
            "example at docs/language.md:{line}:\n{}",
            render(&diagnostics, &sources, false, 100)
        );
    }
}

#[test]
fn every_hook_and_field_is_documented() {
    let doc = doc();
    for (_, name) in Hook::ALL {
        assert!(
            doc.contains(&format!("| `{name}` |")),
            "hook `{name}` has no row in docs/language.md"
        );
    }
    for field in Field::ALL {
        let name = field.as_str();
        assert!(
            doc.contains(&format!("| `{name}` |")),
            "field `{name}` has no row in docs/language.md"
        );
    }
}
