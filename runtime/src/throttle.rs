//! `rate N per PERIOD`: throttling the **export** of a rule's events.
//!
//! The kernel still sends every event and enforcement is unchanged (a
//! throttled exec that its rule kills is still killed); metrics and per-rule
//! match counters count every event. Only the exported line is held back.
//!
//! The limit is a **fixed window** per `(policy, rule)` of the event's
//! deciding rule (its `rule` field): the first event of the rule opens a
//! window `[since, since + PERIOD)`; the first N events in it are exported,
//! the others are counted (`policyd_events_throttled_total{policy,rule}`) and
//! suppressed. When the window has ended (checked at the rule's next event
//! and once a second by `policyd`), a window that suppressed events gives one
//! summary event ([`Summary`]); the next event of the rule opens a new window.
//! On shutdown every window with suppressed events is summarised at once,
//! with `until` the shutdown time, so nothing is lost silently.
//!
//! The key is the rule's policy and name, not its id: a window survives a
//! bundle swap (or a `--bundle-dir` change) when the rule is still there
//! with the same `rate`. A changed `rate` closes the old window (with its
//! summary) and opens a new one.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use policy_compiler::bundle::RateLimit;

/// The bundle an event was decided by, owned (kept for a summary).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleInfo {
    /// `metadata.name`.
    pub name: String,
    /// `spec.digest`.
    pub digest: String,
    /// Load generation.
    pub generation: u64,
}

/// What a window suppressed, to be exported as one summary event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// Policy of the throttled rule.
    pub policy: String,
    /// Name of the throttled rule.
    pub rule: String,
    /// Events not exported in the window.
    pub suppressed: u64,
    /// Start of the window.
    pub since: DateTime<Utc>,
    /// End of the window (the shutdown time when flushed early).
    pub until: DateTime<Utc>,
    /// The bundle of the last suppressed event.
    pub bundle: BundleInfo,
}

/// What to do with one event of a rate-limited rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Export the event (`false`: it is throttled; count it).
    pub export: bool,
    /// The summary of a window this event found ended, to export first.
    pub summary: Option<Summary>,
}

#[derive(Debug)]
struct Window {
    rate: RateLimit,
    start: Instant,
    exported: u64,
    suppressed: u64,
    bundle: Option<BundleInfo>,
}

impl Window {
    fn end(&self) -> Instant {
        self.start + Duration::from_millis(self.rate.period_ms)
    }
}

/// The windows of every rate-limited rule, by `(policy, rule)`.
#[derive(Debug)]
pub struct Throttle {
    windows: BTreeMap<(String, String), Window>,
    /// A monotonic instant and the wall-clock time it stands for: windows run
    /// on the monotonic clock, `since`/`until` are reported in wall time.
    anchor: (Instant, DateTime<Utc>),
}

impl Default for Throttle {
    fn default() -> Self {
        Throttle::new(Instant::now(), Utc::now())
    }
}

impl Throttle {
    /// An empty throttle whose monotonic `now` is wall-clock `wall`.
    pub fn new(now: Instant, wall: DateTime<Utc>) -> Throttle {
        Throttle {
            windows: BTreeMap::new(),
            anchor: (now, wall),
        }
    }

    fn wall(&self, t: Instant) -> DateTime<Utc> {
        let (i, w) = self.anchor;
        match t.checked_duration_since(i) {
            Some(d) => w + chrono::Duration::from_std(d).unwrap_or_default(),
            None => w - chrono::Duration::from_std(i - t).unwrap_or_default(),
        }
    }

    fn summary(&self, key: &(String, String), w: &Window, until: Instant) -> Option<Summary> {
        let bundle = w.bundle.clone()?;
        (w.suppressed > 0).then(|| Summary {
            policy: key.0.clone(),
            rule: key.1.clone(),
            suppressed: w.suppressed,
            since: self.wall(w.start),
            until: self.wall(until),
            bundle,
        })
    }

    /// An event at `now` whose deciding rule `policy`/`rule` has `rate`,
    /// decided by `bundle`.
    pub fn check(
        &mut self,
        policy: &str,
        rule: &str,
        rate: RateLimit,
        bundle: &BundleInfo,
        now: Instant,
    ) -> Outcome {
        let key = (policy.to_string(), rule.to_string());
        let mut summary = None;
        if let Some(w) = self.windows.get(&key) {
            if now >= w.end() || w.rate != rate {
                let until = if w.rate != rate {
                    now.min(w.end())
                } else {
                    w.end()
                };
                summary = self.summary(&key, w, until);
                self.windows.remove(&key);
            }
        }
        let w = self.windows.entry(key).or_insert(Window {
            rate,
            start: now,
            exported: 0,
            suppressed: 0,
            bundle: None,
        });
        let export = w.exported < rate.count;
        if export {
            w.exported += 1;
        } else {
            w.suppressed += 1;
            w.bundle = Some(bundle.clone());
        }
        Outcome { export, summary }
    }

    /// Close the windows that ended by `now`: the summaries of those that
    /// suppressed events, oldest window first.
    pub fn expire(&mut self, now: Instant) -> Vec<Summary> {
        let ended: Vec<(String, String)> = self
            .windows
            .iter()
            .filter(|(_, w)| now >= w.end())
            .map(|(k, _)| k.clone())
            .collect();
        let mut out = Vec::new();
        for key in ended {
            if let Some(w) = self.windows.remove(&key) {
                out.extend(self.summary(&key, &w, w.end()).map(|s| (w.start, s)));
            }
        }
        sort(out)
    }

    /// Close every window (shutdown): summaries of those that suppressed
    /// events, `until` `now` for a window that had not ended yet.
    pub fn flush(&mut self, now: Instant) -> Vec<Summary> {
        let windows = std::mem::take(&mut self.windows);
        let mut out = Vec::new();
        for (key, w) in &windows {
            let until = now.min(w.end());
            out.extend(self.summary(key, w, until).map(|s| (w.start, s)));
        }
        sort(out)
    }

    /// Number of open windows.
    pub fn open_windows(&self) -> usize {
        self.windows.len()
    }
}

fn sort(mut v: Vec<(Instant, Summary)>) -> Vec<Summary> {
    v.sort_by_key(|(start, _)| *start);
    v.into_iter().map(|(_, s)| s).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Duration = Duration::from_secs(60);

    fn rate(count: u64, period: Duration) -> RateLimit {
        RateLimit {
            count,
            period_ms: period.as_millis() as u64,
        }
    }

    fn bundle(generation: u64) -> BundleInfo {
        BundleInfo {
            name: "b".into(),
            digest: "sha256:00".into(),
            generation,
        }
    }

    fn wall0() -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000, 0).unwrap()
    }

    fn exports(t: &mut Throttle, r: RateLimit, at: Instant, n: usize) -> Vec<bool> {
        (0..n)
            .map(|_| {
                let o = t.check("p", "r", r, &bundle(1), at);
                assert_eq!(o.summary, None);
                o.export
            })
            .collect()
    }

    #[test]
    fn n_per_window_then_a_summary_at_the_window_end() {
        let t0 = Instant::now();
        let mut t = Throttle::new(t0, wall0());
        let r = rate(3, MIN);
        let got = exports(&mut t, r, t0, 10);
        assert_eq!(got.iter().filter(|e| **e).count(), 3);
        assert_eq!(&got[..3], &[true, true, true]);
        // Just before the end: still the same window, nothing to summarise.
        let before = t0 + MIN - Duration::from_nanos(1);
        assert!(!t.check("p", "r", r, &bundle(1), before).export);
        assert!(t.expire(before).is_empty());
        // At the end: the window closes with its summary.
        let s = t.expire(t0 + MIN);
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].suppressed, 8);
        assert_eq!((s[0].policy.as_str(), s[0].rule.as_str()), ("p", "r"));
        assert_eq!(s[0].since, wall0());
        assert_eq!(s[0].until, wall0() + chrono::Duration::seconds(60));
        assert_eq!(t.open_windows(), 0);
        // The next event opens a new window and is exported.
        assert_eq!(
            exports(&mut t, r, t0 + 2 * MIN, 4),
            [true, true, true, false]
        );
    }

    #[test]
    fn the_next_event_after_the_end_carries_the_summary() {
        let t0 = Instant::now();
        let mut t = Throttle::new(t0, wall0());
        let r = rate(1, MIN);
        exports(&mut t, r, t0, 3);
        let o = t.check("p", "r", r, &bundle(2), t0 + MIN);
        assert!(o.export, "first event of a new window");
        let s = o.summary.unwrap();
        assert_eq!(s.suppressed, 2);
        assert_eq!(s.bundle.generation, 1);
        assert!(t.expire(t0 + MIN).is_empty(), "the new window is open");
    }

    #[test]
    fn a_window_without_suppressed_events_ends_silently() {
        let t0 = Instant::now();
        let mut t = Throttle::new(t0, wall0());
        let r = rate(3, MIN);
        exports(&mut t, r, t0, 3);
        assert!(t.expire(t0 + MIN).is_empty());
        assert!(t.flush(t0 + MIN).is_empty());
        assert_eq!(t.open_windows(), 0);
    }

    #[test]
    fn flush_summarises_open_windows_until_now() {
        let t0 = Instant::now();
        let mut t = Throttle::new(t0, wall0());
        exports(&mut t, rate(1, MIN), t0, 4);
        let later = t0 + Duration::from_secs(5);
        for _ in 0..2 {
            t.check("p", "other", rate(1, MIN), &bundle(1), later);
        }
        let s = t.flush(t0 + Duration::from_secs(10));
        assert_eq!(s.len(), 2);
        assert_eq!((s[0].rule.as_str(), s[0].suppressed), ("r", 3));
        assert_eq!((s[1].rule.as_str(), s[1].suppressed), ("other", 1));
        assert_eq!(s[0].until, wall0() + chrono::Duration::seconds(10));
        assert_eq!(s[1].since, wall0() + chrono::Duration::seconds(5));
        assert_eq!(t.open_windows(), 0);
    }

    #[test]
    fn rules_are_throttled_separately_and_by_policy() {
        let t0 = Instant::now();
        let mut t = Throttle::new(t0, wall0());
        let r = rate(1, MIN);
        assert!(t.check("p", "a", r, &bundle(1), t0).export);
        assert!(t.check("p", "b", r, &bundle(1), t0).export);
        assert!(t.check("q", "a", r, &bundle(1), t0).export);
        assert!(!t.check("p", "a", r, &bundle(1), t0).export);
    }

    #[test]
    fn a_window_survives_a_swap_but_not_a_new_rate() {
        let t0 = Instant::now();
        let mut t = Throttle::new(t0, wall0());
        let r = rate(2, MIN);
        exports(&mut t, r, t0, 3);
        // Same rule and rate in a later generation: same window.
        let o = t.check("p", "r", r, &bundle(2), t0 + Duration::from_secs(1));
        assert!(!o.export);
        assert_eq!(o.summary, None);
        // A new rate: the old window is summarised, a new one opens.
        let t1 = t0 + Duration::from_secs(2);
        let o = t.check("p", "r", rate(5, MIN), &bundle(3), t1);
        assert!(o.export);
        let s = o.summary.unwrap();
        assert_eq!(s.suppressed, 2);
        assert_eq!(s.bundle.generation, 2);
        assert_eq!(s.until, wall0() + chrono::Duration::seconds(2));
    }

    #[test]
    fn short_periods() {
        let t0 = Instant::now();
        let mut t = Throttle::new(t0, wall0());
        let r = rate(1, Duration::from_millis(500));
        assert_eq!(exports(&mut t, r, t0, 2), [true, false]);
        let o = t.check("p", "r", r, &bundle(1), t0 + Duration::from_millis(500));
        assert!(o.export);
        assert_eq!(o.summary.unwrap().suppressed, 1);
    }
}
