//! `policyc inspect`'s kernel model (`policy_compiler::inspect::kernel_model`)
//! counts what [`KernelTables`] stores: the entries of every kernel map, the
//! distinct masks, and each hook's kernel dimensions. Pure: no kernel.
//!
//! The shipped `policies/` (but `module-load.policy`: the runtime has no
//! program for its hook) and generated bundles of every dimension kind.

use std::cell::Cell;

use policy_compiler::bundle::{DimensionKind, Hook, PolicyBundle};
use policy_compiler::inspect::{inspect, kernel_model, MAPS};
use policy_compiler::SourceFile;
use policy_runtime::k8s::PodIndex;
use policy_runtime::tables::{parts_of, KernelTables, Names};

/// Every name resolves to an id of its own that no range of the bundle
/// covers: what the model assumes.
struct Distinct {
    next: Cell<u32>,
    ranges: Vec<(u64, u64)>,
}

impl Distinct {
    fn new(b: &PolicyBundle) -> Distinct {
        let ranges = b
            .spec
            .hooks
            .values()
            .flat_map(|t| t.dimensions.values())
            .filter(|d| d.kind == DimensionKind::Int)
            .flat_map(|d| d.ranges.iter().map(|r| (r.lo, r.hi)))
            .collect();
        Distinct {
            next: Cell::new(3_000_000_000),
            ranges,
        }
    }

    fn id(&self) -> Option<u32> {
        loop {
            let id = self.next.get();
            self.next.set(id + 1);
            let n = u64::from(id);
            if !self.ranges.iter().any(|&(lo, hi)| lo <= n && n <= hi) {
                return Some(id);
            }
        }
    }
}

impl Names for Distinct {
    fn uid(&self, _: &str) -> Option<u32> {
        self.id()
    }
    fn gid(&self, _: &str) -> Option<u32> {
        self.id()
    }
}

fn compile(name: &str, text: &str) -> PolicyBundle {
    policy_compiler::compile::compile_for_evaluation(
        &[SourceFile {
            name: name.into(),
            text: text.into(),
        }],
        "x",
    )
    .unwrap_or_else(|e| panic!("{name}: {e:?}"))
    .0
    .bundle
}

fn check(what: &str, b: &PolicyBundle) {
    let t = KernelTables::build(&parts_of(b), &Distinct::new(b), &PodIndex::default())
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    let model = kernel_model(b);
    let report = inspect(b);
    for (i, map) in MAPS.iter().enumerate() {
        assert_eq!(model.maps[map], t.entries(map), "{what}: map `{map}`");
        assert_eq!(report.maps[i].map, *map);
        assert_eq!(report.maps[i].entries, t.entries(map), "{what}: `{map}`");
    }
    let with_terms: Vec<&Hook> = t.hooks.keys().collect();
    assert_eq!(
        model.hooks.keys().collect::<Vec<_>>(),
        with_terms,
        "{what}: hooks"
    );
    for (hook, cfg) in &t.hooks {
        assert_eq!(
            model.hooks[hook].1, t.groups[cfg.group as usize].ndims as usize,
            "{what}: dimensions of {hook:?}"
        );
    }
}

#[test]
fn shipped_policies() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../policies");
    let mut n = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if !name.ends_with(".policy") || name == "module-load.policy" {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        check(&name, &compile(&name, &text));
        n += 1;
    }
    assert!(n >= 8, "{n} policies");
}

#[test]
fn every_dimension_kind() {
    let text = r#"policy g {}
rule s on exec { when process.binary endswith ".sh" and not process.binary startswith "/usr/" audit }
rule a on exec { when process.args startswith "rm -rf" and process.name == "rm" deny }
rule i on exec { when process.interactive and user.uid in 1000..1999 audit }
rule n on exec { when user.uid == "alice" or user.gid == "wheel" audit }
rule r on setuid { when cred.new_uid < user.uid and cred.new_uid == 0 deny }
rule c on capset { when cred.new_caps has CAP_SYS_ADMIN and not user.caps has CAP_NET_ADMIN kill }
rule ip on connect { when net.daddr in { 10.0.0.0/8, 169.254.169.254, fd00::/8 } and net.protocol == "tcp" and net.dport in 1..1023 deny }
rule k on exec { when k8s.namespace == "prod" and k8s.label["app"] startswith "web" and process.binary == "/bin/sh" audit count "prod_sh" }
rule o on open { when file.path startswith "/etc/" and file.write and process.binary not in { "/usr/bin/vi", "/bin/ed" } deny }
"#;
    check("kinds", &compile("g.policy", text));
}

#[test]
fn generated_bundles() {
    for n in [10, 60, 240] {
        let mut text = String::from("policy g {}\n");
        for i in 0..n {
            let rule = match i % 6 {
                0 => format!("when process.binary == \"/usr/bin/tool{i}\" deny"),
                1 => format!("when process.binary in {{ \"/a/{}\", \"/b/{}\" }} audit", i % 7, i),
                2 => format!(
                    "when process.binary startswith \"/opt/v{i}/\" and not process.binary == \"/opt/v{i}/bin/health\" audit"
                ),
                3 => format!("when user.uid in {{ {}..{} }} audit", i, i * 3 + 7),
                4 => format!("when process.binary endswith \".x{}\" allow", i % 13),
                _ => format!("when process.name == \"n{}\" and process.interactive deny", i % 11),
            };
            text.push_str(&format!("rule r{i} on exec {{ {rule} }}\n"));
        }
        check(&format!("generated {n}"), &compile("g.policy", &text));
    }
}

/// Past one mask (4096 terms): the model follows the anchored layout, its
/// groups' own tables and the anchor entries.
#[test]
fn anchored_bundle() {
    let mut text = String::from("policy g {}\n");
    for i in 0..5000 {
        let rule = match i % 5 {
            0 => format!(
                "when process.binary == \"/usr/bin/t{i}\" and user.uid == {} deny",
                i % 50
            ),
            1 => format!(
                "when process.binary in {{ \"/a/{}\", \"/b/{i}\" }} audit",
                i % 7
            ),
            2 => format!(
                "when process.binary == \"/c/{i}\" and process.name startswith \"n{}\" audit",
                i % 9
            ),
            3 => format!("when process.binary == \"/d/{i}\" and not user.uid in 0..99 kill"),
            _ => format!(
                "when process.binary == \"/e/{}\" and process.interactive allow",
                i % 300
            ),
        };
        text.push_str(&format!("rule r{i} on exec {{ {rule} }}\n"));
    }
    // Suffix tests key on no value: these stay in the hook's own words.
    for i in 0..40 {
        text.push_str(&format!(
            "rule p{i} on exec {{ when process.binary endswith \"/p{i}\" audit }}\n"
        ));
    }
    let bundle = compile("g.policy", &text);
    assert!(bundle.spec.hooks[&Hook::Exec].terms.len() > 4096);
    check("anchored 5040", &bundle);
    // inspect names the layout: 40 suffix rules own, the rest anchored.
    let layout = inspect(&bundle).hooks[0].layout.clone().expect("a layout");
    assert_eq!(layout.own_terms, 40);
    assert_eq!(layout.anchors.len(), 1);
    let a = &layout.anchors[0];
    assert_eq!(
        (a.dimension.as_str(), a.kind.as_str()),
        ("process.binary", "exact")
    );
    assert_eq!(a.terms, 5000);
    assert_eq!(a.group_capacity, 63 * 64);
    assert_eq!(a.groups, 2);
}

/// Prefix anchors: `startswith` rules (some nested, some excepting a path)
/// split by the longest key, exact values under them, and a broad prefix
/// over too many keys left in the hook's own words. The exact values alone
/// (a quarter of the rules) would leave too many terms for one mask.
#[test]
fn prefix_anchored_bundle() {
    let mut text = String::from("policy g {}\n");
    for i in 0..6000 {
        let rule = match i % 4 {
            0 => format!("when file.path startswith \"/srv/t{i}/\" deny"),
            1 => format!(
                "when file.path startswith \"/srv/t{}/sub/\" and not file.path == \"/srv/t{}/sub/ok\" audit",
                i - 1,
                i - 1
            ),
            2 => format!("when file.path == \"/srv/t{}/x\" and file.write allow", i - 2),
            _ => format!("when file.path startswith \"/var/v{i}/\" audit"),
        };
        text.push_str(&format!("rule r{i} on open {{ {rule} }}\n"));
    }
    // Over every key under `/srv/`: unanchored.
    text.push_str("rule broad on open { when file.path startswith \"/srv/\" audit }\n");
    let bundle = compile("g.policy", &text);
    assert!(bundle.spec.hooks[&Hook::Open].terms.len() > 4096);
    check("prefix anchored 6001", &bundle);
    let layout = inspect(&bundle).hooks[0].layout.clone().expect("a layout");
    assert_eq!(layout.own_terms, 1);
    assert_eq!(layout.anchors.len(), 1);
    let a = &layout.anchors[0];
    assert_eq!(
        (a.dimension.as_str(), a.kind.as_str()),
        ("file.path", "prefix")
    );
    assert_eq!(a.terms, 6000);
    assert_eq!(a.groups, 2);
    // The deepest key, `/srv/tI/sub/` (or an exact value under it), can
    // match its own term and those of `/srv/tI/`.
    assert_eq!(a.largest_value, 2);
}

/// Range anchors: port ranges past one mask, each range one key and its
/// aligned blocks LPM entries; the model counts the same blocks.
#[test]
fn range_anchored_bundle() {
    let mut text = String::from("policy g {}\n");
    for i in 0..5000 {
        let lo = 20000 + 3 * i;
        text += &format!(
            "rule r{i} on connect {{ when net.dport in {lo}..{} deny }}\n",
            lo + 1
        );
    }
    let bundle = compile("g.policy", &text);
    check("range anchored 5000", &bundle);
    let layout = inspect(&bundle).hooks[0].layout.clone().expect("a layout");
    assert_eq!(layout.own_terms, 0);
    let a = &layout.anchors[0];
    assert_eq!(
        (a.dimension.as_str(), a.kind.as_str()),
        ("net.dport", "prefix")
    );
    assert_eq!(a.terms, 5000);
}
