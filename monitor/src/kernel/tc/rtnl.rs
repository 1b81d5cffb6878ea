//! A small synchronous rtnetlink client for the tc objects macdrop manages
//! itself: the clsact qdisc and its cls_bpf filter. Messages are built and
//! parsed with netlink-packet-route; the socket is a plain blocking one, so
//! the attach code stays synchronous like the XDP path.
//!
//! A netlink socket belongs to the network namespace of the thread that
//! opened it, for its whole life: requests sent on it later name ifindexes
//! of that namespace wherever the caller runs. That is why an attachment
//! keeps the socket it was made with (aya's own netlink detach opens a new
//! socket in the calling thread's namespace, which may be another one).

use std::{io, os::fd::AsRawFd as _};

use anyhow::Context as _;
use netlink_packet_core::{
    NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_DUMP_INTR, NLM_F_EXCL, NLM_F_REQUEST, NetlinkBuffer,
    NetlinkHeader, NetlinkMessage, NetlinkPayload,
};
use netlink_packet_route::{
    RouteNetlinkMessage,
    tc::{TcAttribute, TcBpfFlags, TcFilterBpfOption, TcHandle, TcHeader, TcMessage, TcOption},
};
use rtnetlink::sys::{Socket, protocols::NETLINK_ROUTE};

const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
/// `NLM_F_CAPPED` / `NLM_F_ACK_TLVS` on an NLMSG_ERROR (same bits as
/// NLM_F_ROOT / NLM_F_MATCH on requests).
const NLM_F_CAPPED: u16 = 0x100;
const NLM_F_ACK_TLVS: u16 = 0x200;
/// `NLMSGERR_ATTR_MSG`: the kernel's extended-ack text.
const NLMSGERR_ATTR_MSG: u16 = 1;
/// `ETH_P_ALL` in network byte order, as tc filters carry their protocol.
const ETH_P_ALL_BE: u16 = 0x0003_u16.to_be();
/// How often a dump interrupted by a concurrent change is retried.
const DUMP_RETRIES: usize = 5;

/// Which hook of a clsact qdisc a filter sits on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    Ingress,
    Egress,
}

impl Direction {
    /// tc's word for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Ingress => "ingress",
            Direction::Egress => "egress",
        }
    }

    /// `TC_H_MAKE(TC_H_CLSACT, TC_H_MIN_INGRESS / TC_H_MIN_EGRESS)`.
    fn parent(self) -> TcHandle {
        TcHandle {
            major: TcHandle::CLSACT.major,
            minor: match self {
                Direction::Ingress => TcHandle::MIN_INGRESS,
                Direction::Egress => TcHandle::MIN_EGRESS,
            },
        }
    }
}

/// One entry of a filter dump. Entries with `handle == 0` describe a
/// classifier instance (a priority) rather than a filter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Filter {
    pub prio: u16,
    /// Protocol in network byte order, as the kernel reports it.
    pub protocol_be: u16,
    pub handle: u32,
    /// `TCA_KIND` ("bpf", "u32", "matchall", ...); empty if unparsable.
    pub kind: String,
    /// cls_bpf only: `TCA_BPF_NAME` and `TCA_BPF_ID`.
    pub bpf_name: Option<String>,
    pub bpf_prog_id: Option<u32>,
}

/// The filter macdrop adds: direct-action cls_bpf on ingress (or, for the
/// egress source-MAC counter, egress).
pub struct NewBpfFilter<'a> {
    pub ifindex: u32,
    pub dir: Direction,
    pub prio: u16,
    pub handle: u32,
    pub prog_fd: i32,
    pub name: &'a str,
}

pub struct RouteSocket {
    sock: Socket,
    seq: u32,
}

impl RouteSocket {
    /// Opens a route socket in the calling thread's network namespace.
    pub fn open() -> anyhow::Result<Self> {
        let mut sock = Socket::new(NETLINK_ROUTE).context("cannot open a netlink route socket")?;
        sock.bind_auto()
            .context("cannot bind a netlink route socket")?;
        // Best effort: the kernel's reason in words, and acks without a copy
        // of our request. Both exist since Linux 4.12.
        let _ = sock.set_ext_ack(true);
        let _ = sock.set_cap_ack(true);
        Ok(Self { sock, seq: 0 })
    }

    /// Adds a clsact qdisc unless the device already has one (or another
    /// ingress qdisc). Returns whether this call created it.
    pub fn add_clsact(&mut self, ifindex: u32) -> anyhow::Result<bool> {
        let msg = clsact(ifindex);
        let flags = NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL;
        match self.request(RouteNetlinkMessage::NewQueueDiscipline(msg), flags) {
            Ok(_) => Ok(true),
            Err(e) if errno_of(&e) == Some(libc::EEXIST) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Deletes the device's clsact qdisc (and with it any filter on it).
    pub fn del_clsact(&mut self, ifindex: u32) -> anyhow::Result<()> {
        let msg = clsact(ifindex);
        self.request(RouteNetlinkMessage::DelQueueDiscipline(msg), NLM_F_ACK)
            .map(drop)
    }

    /// Whether the device has a clsact qdisc.
    pub fn has_clsact(&mut self, ifindex: u32) -> anyhow::Result<bool> {
        let msg = TcMessage::from_parts(
            header(ifindex, TcHandle::UNSPEC, TcHandle::UNSPEC, 0),
            vec![],
        );
        let qdiscs = self.dump(RouteNetlinkMessage::GetQueueDiscipline(msg))?;
        Ok(qdiscs.iter().any(|m| {
            m.header.index == ifindex as i32
                && m.attributes
                    .iter()
                    .any(|a| matches!(a, TcAttribute::Kind(k) if k == "clsact"))
        }))
    }

    /// Adds a direct-action cls_bpf filter on `f.dir` at exactly
    /// (`prio`, `handle`), never replacing one that is there (`EEXIST`).
    pub fn add_bpf_filter(&mut self, f: &NewBpfFilter<'_>) -> anyhow::Result<()> {
        let msg = TcMessage::from_parts(
            header(
                f.ifindex,
                f.dir.parent(),
                TcHandle::from(f.handle),
                info(f.prio, ETH_P_ALL_BE),
            ),
            vec![
                TcAttribute::Kind("bpf".into()),
                TcAttribute::Options(vec![
                    TcOption::Bpf(TcFilterBpfOption::ProgFd(f.prog_fd as u32)),
                    TcOption::Bpf(TcFilterBpfOption::ProgName(f.name.into())),
                    TcOption::Bpf(TcFilterBpfOption::Flags(TcBpfFlags::DirectAction)),
                ]),
            ],
        );
        let flags = NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL;
        self.request(RouteNetlinkMessage::NewTrafficFilter(msg), flags)
            .map(drop)
    }

    /// Deletes one cls_bpf filter on `dir`, named by all of its keys.
    pub fn del_bpf_filter(
        &mut self,
        ifindex: u32,
        dir: Direction,
        prio: u16,
        protocol_be: u16,
        handle: u32,
    ) -> anyhow::Result<()> {
        let msg = TcMessage::from_parts(
            header(
                ifindex,
                dir.parent(),
                TcHandle::from(handle),
                info(prio, protocol_be),
            ),
            // With the kind given, the kernel refuses to delete a filter of
            // another kind that happens to sit at the same keys.
            vec![TcAttribute::Kind("bpf".into())],
        );
        self.request(RouteNetlinkMessage::DelTrafficFilter(msg), NLM_F_ACK)
            .map(drop)
    }

    /// Every filter on one hook of the device's clsact qdisc (none if the
    /// device has no clsact qdisc, or no longer exists).
    pub fn filters(&mut self, ifindex: u32, dir: Direction) -> anyhow::Result<Vec<Filter>> {
        let msg = TcMessage::from_parts(header(ifindex, dir.parent(), TcHandle::UNSPEC, 0), vec![]);
        let msgs = self.dump(RouteNetlinkMessage::GetTrafficFilter(msg))?;
        Ok(msgs
            .into_iter()
            .filter(|m| m.header.index == ifindex as i32)
            .map(|m| filter_of(&m))
            .collect())
    }

    /// A dump, retried when the kernel flags it as interrupted by a
    /// concurrent change (NLM_F_DUMP_INTR: the result may be inconsistent).
    fn dump(&mut self, msg: RouteNetlinkMessage) -> anyhow::Result<Vec<TcMessage>> {
        for _ in 0..DUMP_RETRIES {
            let (msgs, interrupted) = self.exchange(msg.clone(), NLM_F_DUMP)?;
            if !interrupted {
                return Ok(msgs);
            }
        }
        anyhow::bail!("a netlink tc dump kept being interrupted by concurrent changes")
    }

    fn request(&mut self, msg: RouteNetlinkMessage, flags: u16) -> anyhow::Result<Vec<TcMessage>> {
        Ok(self.exchange(msg, flags)?.0)
    }

    /// Sends one request and reads replies up to its ACK or NLMSG_DONE.
    /// Returns the tc messages received and whether a dump was interrupted.
    fn exchange(
        &mut self,
        msg: RouteNetlinkMessage,
        flags: u16,
    ) -> anyhow::Result<(Vec<TcMessage>, bool)> {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | flags;
        header.sequence_number = seq;
        let mut nl = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(msg));
        nl.finalize();
        let mut buf = vec![0u8; nl.buffer_len()];
        nl.serialize(&mut buf);
        self.sock
            .send(&buf, 0)
            .context("cannot send a netlink tc request")?;

        let mut out = Vec::new();
        let mut interrupted = false;
        loop {
            let datagram = self.recv()?;
            let mut off = 0;
            while off + 16 <= datagram.len() {
                let nb = NetlinkBuffer::new_checked(&datagram[off..])
                    .map_err(|e| anyhow::anyhow!("malformed netlink reply: {e}"))?;
                let len = nb.length() as usize;
                let next = off + len.max(16).next_multiple_of(4);
                if nb.sequence_number() != seq {
                    // A late reply to an earlier request: not ours to read.
                    off = next;
                    continue;
                }
                interrupted |= nb.flags() & NLM_F_DUMP_INTR != 0;
                let payload = nb.payload();
                match nb.message_type() {
                    NLMSG_ERROR => {
                        let code = i32_at(payload, 0);
                        if code == 0 {
                            return Ok((out, interrupted));
                        }
                        return Err(kernel_error(code, ext_ack(nb.flags(), payload)));
                    }
                    NLMSG_DONE => {
                        let code = i32_at(payload, 0);
                        if code < 0 {
                            return Err(kernel_error(code, None));
                        }
                        return Ok((out, interrupted));
                    }
                    _ => out.push(parse_tc(payload)),
                }
                off = next;
            }
        }
    }

    /// One datagram, whatever its size.
    fn recv(&self) -> anyhow::Result<Vec<u8>> {
        let fd = self.sock.as_raw_fd();
        loop {
            // MSG_PEEK | MSG_TRUNC: the datagram's real length, left queued.
            // SAFETY: a zero-length read into a valid (dangling-free) pointer.
            let n = unsafe {
                libc::recv(
                    fd,
                    std::ptr::null_mut(),
                    0,
                    libc::MSG_PEEK | libc::MSG_TRUNC,
                )
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e).context("cannot read a netlink tc reply");
            }
            let mut buf = vec![0u8; n as usize];
            // SAFETY: `buf` has room for `buf.len()` bytes.
            let got =
                unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), libc::MSG_TRUNC) };
            if got < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e).context("cannot read a netlink tc reply");
            }
            anyhow::ensure!(
                got as usize == buf.len(),
                "a netlink reply changed size between peek and read"
            );
            return Ok(buf);
        }
    }
}

/// The clsact qdisc of `ifindex` (handle ffff:, parent clsact), as added
/// and deleted.
fn clsact(ifindex: u32) -> TcMessage {
    TcMessage::from_parts(
        header(
            ifindex,
            TcHandle::CLSACT,
            TcHandle {
                major: 0xffff,
                minor: 0,
            },
            0,
        ),
        vec![TcAttribute::Kind("clsact".into())],
    )
}

fn header(ifindex: u32, parent: TcHandle, handle: TcHandle, info: u32) -> TcHeader {
    TcHeader {
        index: ifindex as i32,
        handle,
        parent,
        info,
        ..TcHeader::default()
    }
}

/// `tcm_info` of a filter: `TC_H_MAKE(prio << 16, protocol)`.
fn info(prio: u16, protocol_be: u16) -> u32 {
    (u32::from(prio) << 16) | u32::from(protocol_be)
}

/// A tc message, or only its header when netlink-packet-route cannot parse
/// the attributes of someone else's filter: a filter we cannot read is
/// still a filter (and never one of ours).
fn parse_tc(payload: &[u8]) -> TcMessage {
    use netlink_packet_core::Parseable as _;
    TcMessage::parse(payload).unwrap_or_else(|_| {
        TcMessage::from_parts(TcHeader::parse(payload).unwrap_or_default(), Vec::new())
    })
}

fn filter_of(m: &TcMessage) -> Filter {
    let mut f = Filter {
        prio: (m.header.info >> 16) as u16,
        protocol_be: m.header.info as u16,
        handle: m.header.handle.into(),
        kind: String::new(),
        bpf_name: None,
        bpf_prog_id: None,
    };
    for attr in &m.attributes {
        match attr {
            TcAttribute::Kind(k) => f.kind = k.clone(),
            TcAttribute::Options(opts) => {
                for o in opts {
                    match o {
                        TcOption::Bpf(TcFilterBpfOption::ProgName(n)) => {
                            f.bpf_name = Some(n.clone())
                        }
                        TcOption::Bpf(TcFilterBpfOption::ProgId(id)) => f.bpf_prog_id = Some(*id),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    f
}

fn i32_at(buf: &[u8], off: usize) -> i32 {
    buf.get(off..off + 4)
        .and_then(|b| b.try_into().ok())
        .map(i32::from_ne_bytes)
        .unwrap_or(0)
}

/// The kernel's extended-ack message of an NLMSG_ERROR, if it sent one.
fn ext_ack(flags: u16, payload: &[u8]) -> Option<String> {
    if flags & NLM_F_ACK_TLVS == 0 {
        return None;
    }
    // error code, then the request's header (and, uncapped, its payload).
    let request_len = if flags & NLM_F_CAPPED != 0 {
        16
    } else {
        u32::from_ne_bytes(payload.get(4..8)?.try_into().ok()?) as usize
    };
    let mut off = 4 + request_len.next_multiple_of(4);
    while off + 4 <= payload.len() {
        let len = u16::from_ne_bytes(payload[off..off + 2].try_into().ok()?) as usize;
        let kind = u16::from_ne_bytes(payload[off + 2..off + 4].try_into().ok()?) & 0x3fff;
        if len < 4 || off + len > payload.len() {
            return None;
        }
        if kind == NLMSGERR_ATTR_MSG {
            let text = &payload[off + 4..off + len];
            let text = text.split(|b| *b == 0).next().unwrap_or_default();
            return Some(String::from_utf8_lossy(text).into_owned());
        }
        off += len.next_multiple_of(4);
    }
    None
}

/// An error whose chain holds the errno as an `io::Error` (what callers
/// match on), with the kernel's own words when it gave some.
fn kernel_error(code: i32, text: Option<String>) -> anyhow::Error {
    let io = io::Error::from_raw_os_error(code.saturating_neg());
    match text {
        Some(t) if !t.is_empty() => anyhow::Error::new(io).context(format!("the kernel says: {t}")),
        _ => anyhow::Error::new(io),
    }
}

/// The errno in an error's chain, if any.
pub fn errno_of(e: &anyhow::Error) -> Option<i32> {
    e.chain().find_map(|c| {
        c.downcast_ref::<io::Error>()
            .and_then(io::Error::raw_os_error)
    })
}
