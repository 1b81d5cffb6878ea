//! `standalone`: exact frames of each class into a standalone veth, exact
//! counts, and the kernel's own OTHERHOST accounting where it has it.

use std::path::Path;

use anyhow::{Context as _, Result, ensure};

use super::{
    Attach, KernelFacts, Outcome, expect_counts, expect_nothing_left, max_mtu, observe, settle,
    spawn,
};
use crate::{
    frames::{BROADCAST, MULTICAST_V4, MULTICAST_V4_GROUP, ipv4_udp},
    lab::{
        FOREIGN_IPV4, FOREIGN_MAC, PEER_IFACE, STANDALONE_IFACE, STANDALONE_IPV4, STANDALONE_MAC,
        STANDALONE_PEER_IPV4, STANDALONE_PEER_MAC, StandaloneLab,
    },
    macdrop::{self, FrameCounts},
    sender::RawSender,
};

/// Frames into the standalone veth: own, broadcast, multicast, foreign with
/// a foreign IP, foreign with the veth's IP.
pub mod plan {
    pub const OWN: u64 = 4;
    pub const BROADCAST: u64 = 5;
    pub const MULTICAST: u64 = 1;
    pub const FOREIGN_NOT_LOCAL: u64 = 3;
    pub const FOREIGN_HOST_IP: u64 = 2;
    pub const FOREIGN: u64 = FOREIGN_NOT_LOCAL + FOREIGN_HOST_IP;
}

pub fn run(bin: &Path, attach: &Attach, kernel: &KernelFacts) -> Result<Outcome> {
    use plan as m;
    let lab = StandaloneLab::new()?;
    let mut macdrop = match spawn(bin, lab.host(), &["--iface", STANDALONE_IFACE], attach)? {
        Ok(macdrop) => macdrop,
        Err(why) => return Ok(Outcome::Unsupported(why)),
    };

    let tx = RawSender::new(lab.peer(), PEER_IFACE)?;
    let (src, sip) = (STANDALONE_PEER_MAC, STANDALONE_PEER_IPV4);
    let n = |count: u64| count as usize;
    tx.send(
        &ipv4_udp(STANDALONE_MAC, src, sip, STANDALONE_IPV4),
        n(m::OWN),
    )?;
    tx.send(
        &ipv4_udp(BROADCAST, src, sip, STANDALONE_IPV4),
        n(m::BROADCAST),
    )?;
    tx.send(
        &ipv4_udp(MULTICAST_V4, src, sip, MULTICAST_V4_GROUP),
        n(m::MULTICAST),
    )?;
    tx.send(
        &ipv4_udp(FOREIGN_MAC, src, sip, FOREIGN_IPV4),
        n(m::FOREIGN_NOT_LOCAL),
    )?;
    tx.send(
        &ipv4_udp(FOREIGN_MAC, src, sip, STANDALONE_IPV4),
        n(m::FOREIGN_HOST_IP),
    )?;

    let expected = FrameCounts {
        own: m::OWN,
        broadcast: m::BROADCAST,
        multicast: m::MULTICAST,
        foreign_unicast: m::FOREIGN,
        host_ip_wrong_mac: m::FOREIGN_HOST_IP,
        ..FrameCounts::default()
    }
    .with_total();
    // What this kernel has, read independently of macdrop, is what macdrop
    // must report: the confirmed drops where the BTF has drop reasons, the
    // otherhost counter where IFLA_STATS64 carries it, each equal to the
    // foreign unicast sent (every such frame is dropped as OTHERHOST on a
    // plain veth); and null, not a made-up 0, where the kernel lacks it.
    let want_drops = kernel.want_drops_otherhost(m::FOREIGN);
    let want_counter = kernel.want_otherhost_counter(m::FOREIGN);
    let drops_otherhost = |i: &macdrop::InterfaceReport| {
        i.kernel_drops
            .as_ref()
            .map(|d| d.get("OTHERHOST").copied().unwrap_or(0))
    };
    // The kernel-side layers count the same foreign frames, a little later.
    let report = settle(&mut macdrop, |r| {
        r.frames(STANDALONE_IFACE) == Some(expected)
            && r.interface(STANDALONE_IFACE).is_some_and(|i| {
                drops_otherhost(i) == want_drops
                    && i.rx_otherhost_dropped_since_attach == want_counter
            })
    })?;
    expect_counts(
        &macdrop,
        STANDALONE_IFACE,
        report.frames(STANDALONE_IFACE),
        expected,
    )?;

    let mut observed = observe(&macdrop, kernel)?;
    observed.peer_max_mtu = max_mtu(lab.peer(), PEER_IFACE)?;
    let v0 = report
        .interface(STANDALONE_IFACE)
        .context("v0 missing from the report")?;
    observed.drops_otherhost = drops_otherhost(v0);
    observed.otherhost_value = v0.rx_otherhost_dropped_since_attach;
    ensure!(
        drops_otherhost(v0) == want_drops,
        "v0: confirmed OTHERHOST drops {:?}, required {want_drops:?} (the kernel's BTF: drop \
         reasons {}, SKB_DROP_REASON_OTHERHOST {}); drops {:?}",
        drops_otherhost(v0),
        kernel.btf.drop_reasons,
        kernel.btf.reason_otherhost,
        v0.kernel_drops
    );
    ensure!(
        v0.rx_otherhost_dropped_since_attach == want_counter,
        "v0: rx_otherhost_dropped_since_attach {:?}, required {want_counter:?} (the kernel's \
         IFLA_STATS64 is {} bytes: rx_otherhost_dropped {})",
        v0.rx_otherhost_dropped_since_attach,
        kernel.stats64_len,
        if kernel.otherhost_counter {
            "present"
        } else {
            "absent"
        }
    );
    let last = macdrop.stop()?;
    expect_nothing_left(lab.host())?;
    ensure!(
        last.frames(STANDALONE_IFACE) == Some(expected),
        "v0: the final report after SIGTERM says {:?}, expected {expected:?}",
        last.frames(STANDALONE_IFACE)
    );
    Ok(Outcome::Ran(Box::new(observed)))
}
