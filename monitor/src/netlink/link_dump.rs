//! The link dump, read one datagram at a time on a blocking socket of its
//! own. netlink-proto (under rtnetlink) reads and parses a whole dump
//! before the first message is handed over, and a parsed link message is
//! large (every attribute an enum as big as the largest, the IPv6
//! configuration and the bridge port's options among them): about 40 KB
//! of heap per link, 40 MB for 1,000 interfaces, the largest part of
//! macdrop's peak RSS. Here each message becomes a `Link` as it is read,
//! so a dump holds one datagram's messages at a time, whatever the number
//! of links.
//!
//! The read blocks the thread for as long as the kernel takes to write
//! the dump (it writes it as the socket is read, a few milliseconds for
//! thousands of links): no longer than netlink-proto's parse of the same
//! dump kept the runtime busy.

use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::{Context as _, bail};
use netlink_packet_core::{NLM_F_DUMP, NLM_F_REQUEST, NetlinkMessage, NetlinkPayload};
use netlink_packet_route::{RouteNetlinkMessage, link::LinkMessage};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};

pub struct LinkDump {
    socket: Socket,
    /// The sequence number of the last request; replies to an older one
    /// (none in practice: each dump is read to its end) are skipped.
    seq: AtomicU32,
}

impl LinkDump {
    /// Opens the socket in the current namespace (it stays there, whichever
    /// thread reads it).
    pub fn open() -> anyhow::Result<Self> {
        let mut socket =
            Socket::new(NETLINK_ROUTE).context("cannot open a netlink route socket")?;
        socket
            .bind_auto()
            .context("cannot bind a netlink route socket")?;
        socket
            .connect(&SocketAddr::new(0, 0))
            .context("cannot connect a netlink route socket")?;
        Ok(Self {
            socket,
            seq: AtomicU32::new(0),
        })
    }

    /// Dumps every link, handing each message to `each` as it is parsed.
    pub fn each(&self, mut each: impl FnMut(&LinkMessage)) -> anyhow::Result<()> {
        let seq = self.seq.fetch_add(1, Ordering::Relaxed).wrapping_add(1);
        let mut req = NetlinkMessage::from(RouteNetlinkMessage::GetLink(LinkMessage::default()));
        req.header.flags = NLM_F_REQUEST | NLM_F_DUMP;
        req.header.sequence_number = seq;
        req.finalize();
        let mut buf = vec![0; req.buffer_len()];
        req.serialize(&mut buf);
        self.socket
            .send(&buf, 0)
            .context("cannot send a netlink link dump request")?;
        loop {
            let (datagram, _) = self
                .socket
                .recv_from_full()
                .context("netlink link dump failed")?;
            let mut rest = datagram.as_slice();
            while !rest.is_empty() {
                let msg = NetlinkMessage::<RouteNetlinkMessage>::deserialize(rest)
                    .context("netlink link dump: a message does not parse")?;
                // Messages are 4-byte aligned in a datagram.
                let len = (msg.header.length as usize).next_multiple_of(4);
                rest = rest.get(len..).unwrap_or_default();
                if msg.header.sequence_number != seq {
                    continue;
                }
                match msg.payload {
                    NetlinkPayload::Done(_) => return Ok(()),
                    NetlinkPayload::Error(e) if e.code.is_some() => {
                        bail!("netlink link dump failed: {e}")
                    }
                    NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewLink(link)) => each(&link),
                    _ => {}
                }
            }
        }
    }
}
