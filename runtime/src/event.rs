//! Decoding events from ring-buffer records.
//!
//! A record is `struct policy_event` (see `bpf-templates/include/policy_abi.h`,
//! [`POLICY_EVENT_HEADER_SIZE`] bytes, native endian) followed by five strings
//! back to back: binary path, argv, cwd, parent binary path, and the hook's
//! object (file path on `open`, target binary on `ptrace`), with the lengths
//! given in the header and no terminators.
//!
//! The kernel hands over bytes; events carry strings. A string that is not
//! valid UTF-8 is decoded with U+FFFD for each invalid sequence, and a
//! [`lossy`] flag says so.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use policy_compiler::bundle::Hook;

use crate::abi::{Mask, MASK_WORDS, MAX_ANCHORS, POLICY_EVENT_HEADER_SIZE};

/// One event as the kernel wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelEvent {
    /// The hook that decided it.
    pub hook: Hook,
    /// Time of the event, nanoseconds since boot including suspend
    /// (`bpf_ktime_get_boot_ns`, `CLOCK_BOOTTIME`).
    pub ktime_boot_ns: u64,
    /// cgroup v2 id of the task (`bpf_get_current_cgroup_id`).
    pub cgroup_id: u64,
    /// Bits the event matched, after ANDing every dimension: the hook's own
    /// words and the windows of `groups` (see
    /// [`crate::tables::EventBits::terms`] for the terms they stand for).
    pub matched: Mask,
    /// Per anchor, the `group_config` key + 1 of the group that decided the
    /// event, or 0.
    pub groups: [u32; MAX_ANCHORS],
    /// What the kernel enforced: `abi::verdict` value.
    pub verdict: u32,
    /// Process id (`task_struct.tgid`).
    pub pid: u32,
    /// Thread id (`task_struct.pid`).
    pub tid: u32,
    /// Parent process id (`task_struct.real_parent->tgid`).
    pub ppid: u32,
    /// Real uid (`task_struct.cred->uid`; after exec on `exec`).
    pub uid: u32,
    /// Effective uid (`cred->euid`; 0 for a setuid-root binary on `exec`).
    pub euid: u32,
    /// Real gid (`cred->gid`).
    pub gid: u32,
    /// Effective gid (`cred->egid`).
    pub egid: u32,
    /// Login uid (`task_struct.loginuid`), [`AUID_UNSET`] when unset.
    pub auid: u32,
    /// Effective capabilities (`cred->cap_effective`), bit n = capability n.
    pub caps: u64,
    /// `task_struct.signal->tty != NULL`.
    pub interactive: bool,
    /// `abi::flags` bits.
    pub flags: u32,
    /// `task_struct.comm`, up to the first NUL.
    pub comm: String,
    /// Canonical absolute path of the executable (`bprm->file` on exec,
    /// `mm->exe_file` elsewhere); empty for a kernel thread.
    pub binary: String,
    /// argv as laid out in the image (`mm->arg_start..arg_end`): each
    /// argument followed by a NUL, possibly cut at `ARGS_BUF_LEN` bytes.
    pub args_raw: Vec<u8>,
    /// Working directory (`task_struct.fs->pwd`).
    pub cwd: String,
    /// Executable of the parent (`real_parent->mm->exe_file`), empty for a
    /// kernel thread.
    pub parent_binary: String,
    /// `open`: the opened file's canonical path; `ptrace`: the traced
    /// process's executable; empty otherwise.
    pub object: String,
    /// Hook-specific values.
    pub detail: Detail,
    /// [`lossy`] bits: which strings were not valid UTF-8 (decoded with
    /// U+FFFD). Set by user space, not by the kernel.
    pub lossy: u32,
    /// Generation (bundle load number) of the tables that decided the event.
    pub generation: u64,
}

/// The hook-specific part of an event.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Detail {
    /// `open`: the file's `f_mode`; `setuid`: the syscall number;
    /// `ptrace`: the request.
    pub op: u32,
    /// `setuid`: real uid after the call.
    pub new_uid: u32,
    /// `setuid`: effective uid after the call.
    pub new_euid: u32,
    /// `setuid`: real gid after the call.
    pub new_gid: u32,
    /// `setuid`: effective gid after the call.
    pub new_egid: u32,
    /// `capset`: the requested effective set.
    pub new_caps: u64,
    /// `ptrace`: the traced process.
    pub target_pid: u32,
    /// `connect`: destination; `bind`: the bound address (`None` elsewhere).
    pub addr: Option<IpAddr>,
    /// `connect`: destination port; `bind`: the bound port (host order).
    pub port: u16,
    /// `connect`/`bind`: `IPPROTO_*` of the socket.
    pub protocol: u8,
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
    /// The file path or target binary had invalid UTF-8.
    pub const OBJECT: u32 = 1 << 5;

    /// Every flag with its exported name.
    pub const NAMES: [(u32, &str); 6] = [
        (BINARY, "binary_not_utf8"),
        (ARGS, "args_not_utf8"),
        (CWD, "cwd_not_utf8"),
        (PARENT, "parent_not_utf8"),
        (COMM, "comm_not_utf8"),
        (OBJECT, "object_not_utf8"),
    ];

    /// The names of the flags set in `bits`.
    pub fn names(bits: u32) -> Vec<&'static str> {
        crate::abi::flags::names_in(bits, &NAMES)
    }
}

/// `loginuid` of a task that never logged in: `(uid_t)-1`.
pub const AUID_UNSET: u32 = u32::MAX;

/// Why a ring-buffer record could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The record is shorter than the header.
    #[error(
        "event record of {len} bytes is shorter than the {POLICY_EVENT_HEADER_SIZE}-byte header"
    )]
    ShortHeader {
        /// Record length.
        len: usize,
    },
    /// The header names a hook this build does not know.
    #[error("event record names unknown hook {0}")]
    UnknownHook(u32),
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

impl KernelEvent {
    /// Decode one ring-buffer record.
    ///
    /// # Errors
    /// [`DecodeError`] when the record is shorter than its header says or
    /// names an unknown hook. Bytes past the announced strings are ignored.
    /// Non-UTF-8 strings are decoded lossily (U+FFFD) and flagged in
    /// [`KernelEvent::lossy`].
    pub fn decode(buf: &[u8]) -> Result<KernelEvent, DecodeError> {
        if buf.len() < POLICY_EVENT_HEADER_SIZE {
            return Err(DecodeError::ShortHeader { len: buf.len() });
        }
        let mut r = Reader { buf, pos: 0 };
        let ktime_boot_ns = r.u64();
        let cgroup_id = r.u64();
        let generation = r.u64();
        let caps = r.u64();
        let new_caps = r.u64();
        let hook_id = r.u32();
        let hook = Hook::ALL
            .get(hook_id as usize)
            .map(|(h, _)| *h)
            .ok_or(DecodeError::UnknownHook(hook_id))?;
        let flags = r.u32();
        let verdict = r.u32();
        let [pid, tid, ppid, uid, euid, gid, egid, auid] = [(); 8].map(|_| r.u32());
        let [new_uid, new_euid, new_gid, new_egid, target_pid, op] = [(); 6].map(|_| r.u32());
        let port = r.u16();
        let [family, protocol]: [u8; 2] = r.take();
        let addr_raw: [u8; 16] = r.take();
        let [interactive, _, _, _]: [u8; 4] = r.take();
        let lens = [r.u16(), r.u16(), r.u16(), r.u16(), r.u16()].map(usize::from);
        let _pad = r.u16();
        let comm_raw: [u8; 16] = r.take();
        let groups = [(); MAX_ANCHORS].map(|_| r.u32());
        let mut matched = [0u64; MASK_WORDS];
        for w in &mut matched {
            *w = r.u64();
        }
        debug_assert_eq!(r.pos, POLICY_EVENT_HEADER_SIZE);
        let comm_len = comm_raw.iter().position(|&b| b == 0).unwrap_or(16);
        let addr = match family {
            4 => Some(IpAddr::V4(Ipv4Addr::new(
                addr_raw[0],
                addr_raw[1],
                addr_raw[2],
                addr_raw[3],
            ))),
            6 => Some(IpAddr::V6(Ipv6Addr::from(addr_raw))),
            _ => None,
        };

        let need = POLICY_EVENT_HEADER_SIZE + lens.iter().sum::<usize>();
        if buf.len() < need {
            return Err(DecodeError::ShortStrings {
                len: buf.len(),
                need,
            });
        }
        let mut pos = POLICY_EVENT_HEADER_SIZE;
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
        let object = text(next(lens[4]), lossy::OBJECT);
        let comm = text(&comm_raw[..comm_len], lossy::COMM);
        if split_args(&args_raw)
            .iter()
            .skip(1)
            .any(|a| std::str::from_utf8(a).is_err())
        {
            lossy_bits |= lossy::ARGS;
        }
        Ok(KernelEvent {
            hook,
            ktime_boot_ns,
            cgroup_id,
            matched,
            groups,
            verdict,
            pid,
            tid,
            ppid,
            uid,
            euid,
            gid,
            egid,
            auid,
            caps,
            interactive: interactive != 0,
            flags,
            comm,
            binary,
            args_raw,
            cwd,
            parent_binary,
            object,
            detail: Detail {
                op,
                new_uid,
                new_euid,
                new_gid,
                new_egid,
                new_caps,
                target_pid,
                addr,
                port,
                protocol,
            },
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
    /// (ambiguous when an argument holds a space: see [`KernelEvent::args`]).
    pub fn arguments(&self) -> String {
        self.args().join(" ")
    }
}

/// Encode an event the way the kernel does; for tests of the consumers.
#[doc(hidden)]
pub fn encode(ev: &KernelEvent) -> Vec<u8> {
    let mut out = Vec::new();
    for v in [
        ev.ktime_boot_ns,
        ev.cgroup_id,
        ev.generation,
        ev.caps,
        ev.detail.new_caps,
    ] {
        out.extend(v.to_ne_bytes());
    }
    let d = &ev.detail;
    let hook = Hook::ALL.iter().position(|(h, _)| *h == ev.hook).unwrap() as u32;
    for v in [
        hook,
        ev.flags,
        ev.verdict,
        ev.pid,
        ev.tid,
        ev.ppid,
        ev.uid,
        ev.euid,
        ev.gid,
        ev.egid,
        ev.auid,
        d.new_uid,
        d.new_euid,
        d.new_gid,
        d.new_egid,
        d.target_pid,
        d.op,
    ] {
        out.extend(v.to_ne_bytes());
    }
    out.extend(d.port.to_ne_bytes());
    let (family, addr) = match d.addr {
        Some(a) => crate::tables::ip_key_addr(a),
        None => (0, [0; 16]),
    };
    out.extend([family, d.protocol]);
    out.extend(addr);
    out.extend([u8::from(ev.interactive), 0, 0, 0]);
    let strings = [
        ev.binary.as_bytes(),
        &ev.args_raw,
        ev.cwd.as_bytes(),
        ev.parent_binary.as_bytes(),
        ev.object.as_bytes(),
    ];
    for s in strings {
        out.extend((s.len() as u16).to_ne_bytes());
    }
    out.extend(0u16.to_ne_bytes());
    let mut comm = [0u8; 16];
    let c = ev.comm.as_bytes();
    comm[..c.len().min(15)].copy_from_slice(&c[..c.len().min(15)]);
    out.extend(comm);
    for g in ev.groups {
        out.extend(g.to_ne_bytes());
    }
    for w in ev.matched {
        out.extend(w.to_ne_bytes());
    }
    for s in strings {
        out.extend(s);
    }
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn sample() -> KernelEvent {
        let mut matched = [0u64; MASK_WORDS];
        matched[0] = 1;
        matched[3] = 1 << 63;
        KernelEvent {
            hook: Hook::Exec,
            ktime_boot_ns: 123_456_789,
            cgroup_id: 42,
            matched,
            groups: [0; MAX_ANCHORS],
            verdict: 0,
            caps: 1 << 21,
            interactive: true,
            object: String::new(),
            detail: Detail::default(),
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
        assert_eq!(bytes.len(), POLICY_EVENT_HEADER_SIZE + 13 + 13 + 7 + 13);
        assert_eq!(KernelEvent::decode(&bytes).unwrap(), ev);
        let connect = KernelEvent {
            hook: Hook::Connect,
            object: "/etc/x".into(),
            detail: Detail {
                addr: Some("::1".parse().unwrap()),
                port: 443,
                protocol: 6,
                op: 3,
                ..Detail::default()
            },
            ..sample()
        };
        assert_eq!(KernelEvent::decode(&encode(&connect)).unwrap(), connect);
        let v4 = KernelEvent {
            detail: Detail {
                addr: Some("169.254.169.254".parse().unwrap()),
                ..Detail::default()
            },
            ..connect
        };
        assert_eq!(KernelEvent::decode(&encode(&v4)).unwrap(), v4);
    }

    #[test]
    fn header_field_offsets_match_c() {
        // Offsets from struct policy_event in policy_abi.h.
        let bytes = encode(&sample());
        let u64_at = |o: usize| u64::from_ne_bytes(bytes[o..o + 8].try_into().unwrap());
        let u32_at = |o: usize| u32::from_ne_bytes(bytes[o..o + 4].try_into().unwrap());
        let u16_at = |o: usize| u16::from_ne_bytes(bytes[o..o + 2].try_into().unwrap());
        assert_eq!(u64_at(0), 123_456_789);
        assert_eq!(u64_at(8), 42);
        assert_eq!(u64_at(16), 7); // generation
        assert_eq!(u64_at(24), 1 << 21); // caps
        assert_eq!(u32_at(40), 0); // hook: exec
        assert_eq!(u32_at(52), 1000); // pid
        assert_eq!(u32_at(80), AUID_UNSET);
        assert_eq!(bytes[128], 1); // interactive
        assert_eq!(u16_at(132), 13); // binary_len
        assert_eq!(&bytes[144..148], b"sudo"); // comm
        assert_eq!(u64_at(176), 1); // matched[0], after groups
        assert_eq!(bytes.len(), POLICY_EVENT_HEADER_SIZE + 46);
    }

    #[test]
    fn arguments_skip_argv0() {
        let ev = sample();
        assert_eq!(ev.argv(), ["sudo", "-n", "true"]);
        assert_eq!(ev.arguments(), "-n true");
        let truncated = KernelEvent {
            args_raw: b"sudo\0-n\0tr".to_vec(),
            ..sample()
        };
        assert_eq!(truncated.arguments(), "-n tr");
        let none = KernelEvent {
            args_raw: vec![],
            ..sample()
        };
        assert_eq!(none.arguments(), "");
    }

    #[test]
    fn short_records_are_errors() {
        let bytes = encode(&sample());
        assert_eq!(
            KernelEvent::decode(&bytes[..10]),
            Err(DecodeError::ShortHeader { len: 10 })
        );
        let cut = bytes.len() - 1;
        assert!(matches!(
            KernelEvent::decode(&bytes[..cut]),
            Err(DecodeError::ShortStrings { need, .. }) if need == bytes.len()
        ));
    }

    #[test]
    fn comm_stops_at_nul_and_paths_decode_lossily() {
        let mut bytes = encode(&KernelEvent {
            binary: "/x".into(),
            ..sample()
        });
        let o = POLICY_EVENT_HEADER_SIZE;
        bytes[o + 1] = 0xff;
        let ev = KernelEvent::decode(&bytes).unwrap();
        assert_eq!(ev.binary, "/\u{fffd}");
        assert_eq!(ev.comm, "sudo");
        assert_eq!(ev.lossy, lossy::BINARY);
        assert_eq!(lossy::names(ev.lossy), ["binary_not_utf8"]);
        assert_eq!(KernelEvent::decode(&encode(&sample())).unwrap().lossy, 0);
    }

    #[test]
    fn every_lossy_string_is_flagged() {
        // Same lengths as sample(): one byte of each string is made invalid.
        let base = encode(&sample());
        let o = POLICY_EVENT_HEADER_SIZE;
        let at = |off: usize| {
            let mut b = base.clone();
            b[off] = 0xfe;
            KernelEvent::decode(&b).unwrap()
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
        let comm = 144; // comm, then the groups and matched terms, then the strings
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
        let ev = KernelEvent {
            args_raw: b"prog\0a b\0\0c\0".to_vec(),
            ..sample()
        };
        assert_eq!(ev.args(), ["a b", "", "c"]);
        assert_eq!(ev.arguments(), "a b  c");
    }
}
