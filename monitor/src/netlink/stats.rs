//! The one read of the namespace every interval: the watched links'
//! `rx_otherhost_dropped`, from RTM_GETSTATS with only IFLA_STATS_LINK_64
//! asked for. A link dump carries every attribute of every link (bridge
//! port options, IPv6 configuration, ...: 1.9 KB a link on the wire, all of
//! it parsed); this carries the 64-bit counters alone, and the topology is
//! re-read only when a notification says it changed (`monitor`).

use std::collections::HashMap;

use anyhow::{Context as _, bail};
use futures::StreamExt as _;
use netlink_packet_core::{NLM_F_DUMP, NLM_F_REQUEST, NetlinkMessage, NetlinkPayload};
use netlink_packet_route::{
    RouteNetlinkMessage,
    stats::{StatsAttribute, StatsFilterMask, StatsMessage},
};

use super::Netlink;

/// Up to this many links are read one request each; more, one dump of
/// every link (a dump costs the kernel `dev_get_stats` of every link of
/// the namespace: most of a 1,000-port bridge's per-interval read).
pub const ONE_BY_ONE: usize = 32;

impl Netlink {
    /// `rx_otherhost_dropped` of the links `ifindexes`, by ifindex (a link
    /// that went meanwhile is left out); with more than `ONE_BY_ONE` of
    /// them, of every link. Empty on kernels without the counter (before
    /// 5.19), whose shorter struct the parser would pad with zeros.
    pub async fn read_otherhost(&self, ifindexes: &[u32]) -> anyhow::Result<HashMap<u32, u64>> {
        let mut out = HashMap::new();
        if !crate::kernel_version::has_otherhost_counter() || ifindexes.is_empty() {
            return Ok(out);
        }
        if ifindexes.len() > ONE_BY_ONE {
            self.read_link64(None, &mut out).await?;
        } else {
            for &ifindex in ifindexes {
                self.read_link64(Some(ifindex), &mut out).await?;
            }
        }
        Ok(out)
    }

    /// One RTM_GETSTATS for IFLA_STATS_LINK_64: of `ifindex`, or a dump of
    /// every link; the counters into `out`. A link that is gone (ENODEV)
    /// adds nothing.
    async fn read_link64(
        &self,
        ifindex: Option<u32>,
        out: &mut HashMap<u32, u64>,
    ) -> anyhow::Result<()> {
        let mut request = StatsMessage::default();
        request.header.filter_mask = StatsFilterMask::Link64;
        request.header.ifindex = ifindex.unwrap_or(0);
        let mut req = NetlinkMessage::from(RouteNetlinkMessage::GetStats(request));
        req.header.flags = match ifindex {
            Some(_) => NLM_F_REQUEST,
            None => NLM_F_REQUEST | NLM_F_DUMP,
        };
        let mut responses = self
            .handle
            .clone()
            .request(req)
            .context("cannot send a netlink statistics request (the socket closed)")?;
        while let Some(msg) = responses.next().await {
            match msg.payload {
                NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewStats(stats)) => {
                    for attr in stats.attributes {
                        if let StatsAttribute::Link64(s) = attr {
                            out.insert(stats.header.ifindex, s.rx_otherhost_dropped);
                        }
                    }
                }
                NetlinkPayload::Error(e)
                    if ifindex.is_some() && e.code.is_some_and(|c| c.get() == -libc::ENODEV) => {}
                NetlinkPayload::Error(e) if e.code.is_some() => {
                    bail!("netlink statistics read failed: {e}")
                }
                _ => {}
            }
        }
        Ok(())
    }
}
