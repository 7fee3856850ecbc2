//! Deterministic generator of realistic policies for the back-end bench.
//!
//! Each rule is one `exec` rule on `process.binary` (the runtime-loadable
//! subset: `==`, `in`, `startswith`, `not`), one term each, with a verdict
//! mix close to what fleets write: mostly audits, some denies and allows,
//! shared sets (one per [`SET_EVERY`] rules) and inline sets. With `uid`,
//! some rules also test `user.uid` (root, a team's uid range, nobody), which
//! `policyc test` evaluates but `policyd` does not load yet.

/// Rules per shared `set`.
pub const SET_EVERY: usize = 25;

/// A small seeded xorshift generator: the same seed, the same policy.
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed` (any value).
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    /// The next value.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    /// A value in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

/// A policy of `rules` rules (seeded, so byte-identical on every run).
pub fn policy(rules: usize, uid: bool) -> String {
    let mut rng = Rng::new(42);
    let mut s = String::from(
        "policy generated {\n  description = \"generated for the back-end bench\"\n  mode = enforce\n}\n\n",
    );
    for k in 0..rules.div_ceil(SET_EVERY) {
        s.push_str(&format!(
            "set team_{k} = {{ \"/opt/team{k}/bin/a\", \"/opt/team{k}/bin/b\", \"/opt/team{k}/bin/c\", \"/opt/team{k}/bin/d\" }}\n"
        ));
    }
    s.push('\n');
    for i in 0..rules {
        let uid_test = |rng: &mut Rng| -> &'static str {
            if !uid {
                return "";
            }
            match rng.below(10) {
                0 => " and user.uid == 0",
                1 => " and user.uid in { 1000..1999 }",
                2 => " and user.uid != 65534",
                _ => "",
            }
        };
        let roll = rng.below(100);
        let rule = if roll < 35 {
            let (verdict, sev) = if rng.below(4) == 0 {
                ("deny\n  ", "high")
            } else {
                ("", "low")
            };
            let u = uid_test(&mut rng);
            format!("rule tool_{i} on exec {{\n  when process.binary == \"/usr/bin/tool{i}\"{u}\n  {verdict}audit severity {sev}\n}}\n")
        } else if roll < 55 {
            let u = uid_test(&mut rng);
            format!(
                "rule team_{i} on exec {{\n  when process.binary in team_{}{u}\n  audit severity medium \"team binary\"\n}}\n",
                i / SET_EVERY
            )
        } else if roll < 70 {
            let u = uid_test(&mut rng);
            format!("rule local_{i} on exec {{\n  when process.binary in {{ \"/usr/local/bin/x{i}\", \"/usr/local/sbin/x{i}\" }}{u}\n  deny\n  audit severity high\n}}\n")
        } else if roll < 88 {
            let u = uid_test(&mut rng);
            format!("rule vendor_{i} on exec {{\n  when process.binary startswith \"/opt/vendor{i}/\" and not process.binary == \"/opt/vendor{i}/bin/health\"{u}\n  audit\n}}\n")
        } else {
            let u = uid_test(&mut rng);
            format!("rule ok_{i} on exec {{\n  when process.binary == \"/usr/bin/ok{i}\"{u}\n  allow\n}}\n")
        };
        s.push_str(&rule);
    }
    s
}
