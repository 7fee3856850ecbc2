//! Converting kernel boot-time stamps to wall-clock time.

use chrono::{DateTime, SecondsFormat, Utc};

fn clock_ns(clock: libc::clockid_t) -> i128 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; both clocks exist on Linux.
    let rc = unsafe { libc::clock_gettime(clock, &mut ts) };
    debug_assert_eq!(rc, 0);
    i128::from(ts.tv_sec) * 1_000_000_000 + i128::from(ts.tv_nsec)
}

/// Nanoseconds to add to a `CLOCK_BOOTTIME` stamp to get Unix time, read now.
/// Re-read per event so that wall-clock steps (NTP) are followed.
pub fn boot_to_unix_offset_ns() -> i128 {
    clock_ns(libc::CLOCK_REALTIME) - clock_ns(libc::CLOCK_BOOTTIME)
}

/// The wall-clock time of `boot_ns` (nanoseconds since boot, as
/// `bpf_ktime_get_boot_ns`) given `offset_ns` from [`boot_to_unix_offset_ns`].
pub fn wall_time(boot_ns: u64, offset_ns: i128) -> DateTime<Utc> {
    let unix_ns = i128::from(boot_ns) + offset_ns;
    let secs = unix_ns.div_euclid(1_000_000_000) as i64;
    let nanos = unix_ns.rem_euclid(1_000_000_000) as u32;
    DateTime::from_timestamp(secs, nanos).unwrap_or_default()
}

/// RFC 3339 with nanoseconds and a `Z` suffix, e.g. `2024-05-01T12:00:00.000000001Z`.
pub fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Nanos, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_and_formats() {
        let t = wall_time(1_000_000_001, 1_700_000_000_000_000_000);
        assert_eq!(rfc3339(t), "2023-11-14T22:13:21.000000001Z");
    }

    #[test]
    fn offset_is_close_to_now() {
        let off = boot_to_unix_offset_ns();
        let now = wall_time(clock_ns(libc::CLOCK_BOOTTIME) as u64, off);
        let delta = (Utc::now() - now).num_milliseconds().abs();
        assert!(delta < 1000, "boot→wall conversion off by {delta} ms");
    }
}
