//! "Did you mean …" suggestions for misspelt names.

/// The candidate closest to `name`, if it is close enough to be a likely typo:
/// an edit distance of at most a third of the name's length (at least 1).
pub fn closest<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let limit = (name.chars().count() / 3).max(1);
    candidates
        .into_iter()
        .map(|c| (strsim::damerau_levenshtein(name, c), c))
        .filter(|(d, _)| *d <= limit)
        .min()
        .map(|(_, c)| c)
}

/// A help line: "did you mean `x`?" when a candidate is close, followed by the
/// list of what is allowed (`what` names the kind, e.g. "hooks").
pub fn did_you_mean<'a>(name: &str, what: &str, candidates: &[&'a str]) -> String {
    let list = candidates
        .iter()
        .map(|c| format!("`{c}`"))
        .collect::<Vec<_>>()
        .join(", ");
    match closest(name, candidates.iter().copied()) {
        Some(c) => format!("did you mean `{c}`? {what}: {list}"),
        None if candidates.is_empty() => format!("there are no {what}"),
        None => format!("{what}: {list}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_near_names_only() {
        assert_eq!(closest("exce", ["exec", "open"]), Some("exec"));
        assert_eq!(
            closest("sudo_binaris", ["sudo_binaries", "shells"]),
            Some("sudo_binaries")
        );
        assert_eq!(closest("network", ["exec"]), None);
    }
}
