//! The one read of the namespace every interval: each link's
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

impl Netlink {
    /// `rx_otherhost_dropped` of every link, by ifindex. Empty on kernels
    /// without the counter (before 5.19), whose shorter struct the parser
    /// would pad with zeros.
    pub async fn read_otherhost(&self) -> anyhow::Result<HashMap<u32, u64>> {
        let mut out = HashMap::new();
        if !crate::kernel_version::has_otherhost_counter() {
            return Ok(out);
        }
        let mut request = StatsMessage::default();
        request.header.filter_mask = StatsFilterMask::Link64;
        let mut req = NetlinkMessage::from(RouteNetlinkMessage::GetStats(request));
        req.header.flags = NLM_F_REQUEST | NLM_F_DUMP;
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
                NetlinkPayload::Error(e) if e.code.is_some() => {
                    bail!("netlink statistics dump failed: {e}")
                }
                _ => {}
            }
        }
        Ok(out)
    }
}
