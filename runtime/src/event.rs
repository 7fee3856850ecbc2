//! Decoding exec events from ring-buffer records.
//!
//! A record is `struct exec_event` (see `bpf-templates/include/exec_abi.h`,
//! [`EXEC_EVENT_HEADER_SIZE`] bytes, native endian) followed by four strings
//! back to back: binary path, argv, cwd, parent binary path, with the lengths
//! given in the header and no terminators.
//!
//! The kernel hands over bytes; events carry strings. A string that is not
//! valid UTF-8 is decoded with U+FFFD for each invalid sequence, and a
//! [`lossy`] flag says so.

use crate::abi::{Mask, EXEC_EVENT_HEADER_SIZE, MASK_WORDS};

/// One exec event as the kernel wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecEvent {
    /// Time of the exec, nanoseconds since boot including suspend
    /// (`bpf_ktime_get_boot_ns`, `CLOCK_BOOTTIME`).
    pub ktime_boot_ns: u64,
    /// cgroup v2 id of the task (`bpf_get_current_cgroup_id`).
    pub cgroup_id: u64,
    /// Terms the event matched, after ANDing every dimension.
    pub matched: Mask,
    /// Process id (`task_struct.tgid`).
    pub pid: u32,
    /// Thread id (`task_struct.pid`).
    pub tid: u32,
    /// Parent process id (`task_struct.real_parent->tgid`).
    pub ppid: u32,
    /// Real uid after exec (`task_struct.cred->uid`).
    pub uid: u32,
    /// Effective uid after exec (`cred->euid`; 0 for a setuid-root binary).
    pub euid: u32,
    /// Real gid (`cred->gid`).
    pub gid: u32,
    /// Effective gid (`cred->egid`).
    pub egid: u32,
    /// Login uid (`task_struct.loginuid`), [`AUID_UNSET`] when unset.
    pub auid: u32,
    /// `abi::flags` bits.
    pub flags: u32,
    /// `task_struct.comm` after exec, up to the first NUL.
    pub comm: String,
    /// Canonical absolute path of the executed file (`bprm->file`).
    pub binary: String,
    /// argv as laid out in the new image (`mm->arg_start..arg_end`): each
    /// argument followed by a NUL, possibly cut at `ARGS_BUF_LEN` bytes.
    pub args_raw: Vec<u8>,
    /// Working directory (`task_struct.fs->pwd`).
    pub cwd: String,
    /// Executable of the parent (`real_parent->mm->exe_file`), empty for a
    /// kernel thread.
    pub parent_binary: String,
    /// [`lossy`] bits: which strings were not valid UTF-8 (decoded with
    /// U+FFFD). Set by user space, not by the kernel.
    pub lossy: u32,
    /// Generation (bundle load number) of the tables that decided the event.
    pub generation: u64,
}

/// Flags of strings that were not valid UTF-8, exported beside the kernel's
/// `abi::flags` in `process.flags`.
pub mod lossy {
    /// `binary` had invalid UTF-8.
    pub const BINARY: u32 = 1 << 0;
    /// Some argument of argv\[1..\] had invalid UTF-8 (`argv`, `arguments`).
    pub const ARGS: u32 = 1 << 1;
    /// `cwd` had invalid UTF-8.
    pub const CWD: u32 = 1 << 2;
    /// The parent binary had invalid UTF-8.
    pub const PARENT: u32 = 1 << 3;
    /// `comm` had invalid UTF-8.
    pub const COMM: u32 = 1 << 4;

    /// Every flag with its exported name.
    pub const NAMES: [(u32, &str); 5] = [
        (BINARY, "binary_not_utf8"),
        (ARGS, "args_not_utf8"),
        (CWD, "cwd_not_utf8"),
        (PARENT, "parent_not_utf8"),
        (COMM, "comm_not_utf8"),
    ];

    /// The names of the flags set in `bits`.
    pub fn names(bits: u32) -> Vec<&'static str> {
        NAMES
            .iter()
            .filter(|(b, _)| bits & b != 0)
            .map(|(_, n)| *n)
            .collect()
    }
}

/// `loginuid` of a task that never logged in: `(uid_t)-1`.
pub const AUID_UNSET: u32 = u32::MAX;

/// Why a ring-buffer record could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The record is shorter than the header.
    #[error(
        "event record of {len} bytes is shorter than the {EXEC_EVENT_HEADER_SIZE}-byte header"
    )]
    ShortHeader {
        /// Record length.
        len: usize,
    },
    /// The header's string lengths exceed the record.
    #[error("event record of {len} bytes cannot hold the {need} bytes its header announces")]
    ShortStrings {
        /// Record length.
        len: usize,
        /// Header plus string lengths.
        need: usize,
    },
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> [u8; N] {
        let out: [u8; N] = self.buf[self.pos..self.pos + N]
            .try_into()
            .expect("length checked");
        self.pos += N;
        out
    }
    fn u64(&mut self) -> u64 {
        u64::from_ne_bytes(self.take())
    }
    fn u32(&mut self) -> u32 {
        u32::from_ne_bytes(self.take())
    }
    fn u16(&mut self) -> u16 {
        u16::from_ne_bytes(self.take())
    }
}

fn decode_lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Split NUL-separated argv (a trailing NUL ends the last argument).
fn split_args(raw: &[u8]) -> Vec<&[u8]> {
    let raw = raw.strip_suffix(&[0]).unwrap_or(raw);
    if raw.is_empty() {
        return Vec::new();
    }
    raw.split(|&b| b == 0).collect()
}

impl ExecEvent {
    /// Decode one ring-buffer record.
    ///
    /// # Errors
    /// [`DecodeError`] when the record is shorter than its header says.
    /// Bytes past the announced strings are ignored. Non-UTF-8 strings are
    /// decoded lossily (U+FFFD) and flagged in [`ExecEvent::lossy`].
    pub fn decode(buf: &[u8]) -> Result<ExecEvent, DecodeError> {
        if buf.len() < EXEC_EVENT_HEADER_SIZE {
            return Err(DecodeError::ShortHeader { len: buf.len() });
        }
        let mut r = Reader { buf, pos: 0 };
        let ktime_boot_ns = r.u64();
        let cgroup_id = r.u64();
        let mut matched = [0u64; MASK_WORDS];
        for w in &mut matched {
            *w = r.u64();
        }
        let pid = r.u32();
        let tid = r.u32();
        let ppid = r.u32();
        let uid = r.u32();
        let euid = r.u32();
        let gid = r.u32();
        let egid = r.u32();
        let auid = r.u32();
        let flags = r.u32();
        let lens = [r.u16(), r.u16(), r.u16(), r.u16()].map(usize::from);
        let _pad = r.u32();
        let comm_raw: [u8; 16] = r.take();
        let generation = r.u64();
        debug_assert_eq!(r.pos, EXEC_EVENT_HEADER_SIZE);
        let comm_len = comm_raw.iter().position(|&b| b == 0).unwrap_or(16);

        let need = EXEC_EVENT_HEADER_SIZE + lens.iter().sum::<usize>();
        if buf.len() < need {
            return Err(DecodeError::ShortStrings {
                len: buf.len(),
                need,
            });
        }
        let mut pos = EXEC_EVENT_HEADER_SIZE;
        let mut next = |len: usize| {
            let s = &buf[pos..pos + len];
            pos += len;
            s
        };
        let mut lossy_bits = 0;
        let mut text = |bytes: &[u8], bit: u32| {
            if std::str::from_utf8(bytes).is_err() {
                lossy_bits |= bit;
            }
            decode_lossy(bytes)
        };
        let binary = text(next(lens[0]), lossy::BINARY);
        let args_raw = next(lens[1]).to_vec();
        let cwd = text(next(lens[2]), lossy::CWD);
        let parent_binary = text(next(lens[3]), lossy::PARENT);
        let comm = text(&comm_raw[..comm_len], lossy::COMM);
        if split_args(&args_raw)
            .iter()
            .skip(1)
            .any(|a| std::str::from_utf8(a).is_err())
        {
            lossy_bits |= lossy::ARGS;
        }
        Ok(ExecEvent {
            ktime_boot_ns,
            cgroup_id,
            matched,
            pid,
            tid,
            ppid,
            uid,
            euid,
            gid,
            egid,
            auid,
            flags,
            comm,
            binary,
            args_raw,
            cwd,
            parent_binary,
            lossy: lossy_bits,
            generation,
        })
    }

    /// argv split at NULs (a trailing NUL ends the last argument), each
    /// argument decoded lossily.
    pub fn argv(&self) -> Vec<String> {
        split_args(&self.args_raw)
            .into_iter()
            .map(decode_lossy)
            .collect()
    }

    /// argv\[1..\], each argument exactly (but for lossy decoding): the
    /// exported `argv`.
    pub fn args(&self) -> Vec<String> {
        self.argv().into_iter().skip(1).collect()
    }

    /// argv\[1..\] joined with single spaces, as Tetragon's `arguments`
    /// (ambiguous when an argument holds a space: see [`ExecEvent::args`]).
    pub fn arguments(&self) -> String {
        self.args().join(" ")
    }
}

/// Encode an event the way the kernel does; for tests of the consumers.
#[doc(hidden)]
pub fn encode(ev: &ExecEvent) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend(ev.ktime_boot_ns.to_ne_bytes());
    out.extend(ev.cgroup_id.to_ne_bytes());
    for w in ev.matched {
        out.extend(w.to_ne_bytes());
    }
    for v in [
        ev.pid, ev.tid, ev.ppid, ev.uid, ev.euid, ev.gid, ev.egid, ev.auid, ev.flags,
    ] {
        out.extend(v.to_ne_bytes());
    }
    let strings = [
        ev.binary.as_bytes(),
        &ev.args_raw,
        ev.cwd.as_bytes(),
        ev.parent_binary.as_bytes(),
    ];
    for s in strings {
        out.extend((s.len() as u16).to_ne_bytes());
    }
    out.extend(0u32.to_ne_bytes());
    let mut comm = [0u8; 16];
    let c = ev.comm.as_bytes();
    comm[..c.len().min(15)].copy_from_slice(&c[..c.len().min(15)]);
    out.extend(comm);
    out.extend(ev.generation.to_ne_bytes());
    for s in strings {
        out.extend(s);
    }
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn sample() -> ExecEvent {
        ExecEvent {
            ktime_boot_ns: 123_456_789,
            cgroup_id: 42,
            matched: [0b1, 0, 0, 1 << 63],
            pid: 1000,
            tid: 1000,
            ppid: 999,
            uid: 1000,
            euid: 0,
            gid: 100,
            egid: 100,
            auid: AUID_UNSET,
            flags: crate::abi::flags::ARGS_TRUNCATED,
            comm: "sudo".into(),
            binary: "/usr/bin/sudo".into(),
            args_raw: b"sudo\0-n\0true\0".to_vec(),
            cwd: "/home/u".into(),
            parent_binary: "/usr/bin/bash".into(),
            lossy: 0,
            generation: 7,
        }
    }

    #[test]
    fn round_trip() {
        let ev = sample();
        let bytes = encode(&ev);
        assert_eq!(bytes.len(), EXEC_EVENT_HEADER_SIZE + 13 + 13 + 7 + 13);
        assert_eq!(ExecEvent::decode(&bytes).unwrap(), ev);
    }

    #[test]
    fn header_field_offsets_match_c() {
        // Offsets from struct exec_event in exec_abi.h.
        let bytes = encode(&sample());
        assert_eq!(
            u64::from_ne_bytes(bytes[0..8].try_into().unwrap()),
            123_456_789
        );
        assert_eq!(u64::from_ne_bytes(bytes[8..16].try_into().unwrap()), 42);
        let o = 16 + 8 * MASK_WORDS;
        assert_eq!(
            u32::from_ne_bytes(bytes[o..o + 4].try_into().unwrap()),
            1000
        ); // pid
        assert_eq!(
            u32::from_ne_bytes(bytes[o + 28..o + 32].try_into().unwrap()),
            AUID_UNSET
        );
        assert_eq!(
            u16::from_ne_bytes(bytes[o + 36..o + 38].try_into().unwrap()),
            13
        ); // binary_len
        assert_eq!(&bytes[o + 48..o + 52], b"sudo"); // comm
        assert_eq!(
            u64::from_ne_bytes(bytes[o + 64..o + 72].try_into().unwrap()),
            7
        ); // generation
    }

    #[test]
    fn arguments_skip_argv0() {
        let ev = sample();
        assert_eq!(ev.argv(), ["sudo", "-n", "true"]);
        assert_eq!(ev.arguments(), "-n true");
        let truncated = ExecEvent {
            args_raw: b"sudo\0-n\0tr".to_vec(),
            ..sample()
        };
        assert_eq!(truncated.arguments(), "-n tr");
        let none = ExecEvent {
            args_raw: vec![],
            ..sample()
        };
        assert_eq!(none.arguments(), "");
    }

    #[test]
    fn short_records_are_errors() {
        let bytes = encode(&sample());
        assert_eq!(
            ExecEvent::decode(&bytes[..10]),
            Err(DecodeError::ShortHeader { len: 10 })
        );
        let cut = bytes.len() - 1;
        assert!(matches!(
            ExecEvent::decode(&bytes[..cut]),
            Err(DecodeError::ShortStrings { need, .. }) if need == bytes.len()
        ));
    }

    #[test]
    fn comm_stops_at_nul_and_paths_decode_lossily() {
        let mut bytes = encode(&ExecEvent {
            binary: "/x".into(),
            ..sample()
        });
        let o = EXEC_EVENT_HEADER_SIZE;
        bytes[o + 1] = 0xff;
        let ev = ExecEvent::decode(&bytes).unwrap();
        assert_eq!(ev.binary, "/\u{fffd}");
        assert_eq!(ev.comm, "sudo");
        assert_eq!(ev.lossy, lossy::BINARY);
        assert_eq!(lossy::names(ev.lossy), ["binary_not_utf8"]);
        assert_eq!(ExecEvent::decode(&encode(&sample())).unwrap().lossy, 0);
    }

    #[test]
    fn every_lossy_string_is_flagged() {
        // Same lengths as sample(): one byte of each string is made invalid.
        let base = encode(&sample());
        let o = EXEC_EVENT_HEADER_SIZE;
        let at = |off: usize| {
            let mut b = base.clone();
            b[off] = 0xfe;
            ExecEvent::decode(&b).unwrap()
        };
        // "/usr/bin/sudo" (13), "sudo\0-n\0true\0" (13), "/home/u" (7), "/usr/bin/bash".
        assert_eq!(at(o + 1).lossy, lossy::BINARY);
        assert_eq!(at(o + 13 + 6).lossy, lossy::ARGS);
        let ev = at(o + 13 + 6);
        assert_eq!(ev.args(), ["-\u{fffd}", "true"]);
        assert_eq!(ev.arguments(), "-\u{fffd} true");
        // argv[0] is not exported, so it is not flagged.
        assert_eq!(at(o + 13).lossy, 0);
        assert_eq!(at(o + 26 + 2).lossy, lossy::CWD);
        assert_eq!(at(o + 33 + 3).lossy, lossy::PARENT);
        let comm = o - 8 - 16; // comm, then the generation, then the strings
        let ev = at(comm + 1);
        assert_eq!((ev.lossy, ev.comm.as_str()), (lossy::COMM, "s\u{fffd}do"));
        assert_eq!(
            lossy::names(lossy::BINARY | lossy::ARGS | lossy::CWD | lossy::PARENT | lossy::COMM),
            [
                "binary_not_utf8",
                "args_not_utf8",
                "cwd_not_utf8",
                "parent_not_utf8",
                "comm_not_utf8"
            ]
        );
    }

    #[test]
    fn args_keep_spaces_and_empty_arguments() {
        let ev = ExecEvent {
            args_raw: b"prog\0a b\0\0c\0".to_vec(),
            ..sample()
        };
        assert_eq!(ev.args(), ["a b", "", "c"]);
        assert_eq!(ev.arguments(), "a b  c");
    }
}
