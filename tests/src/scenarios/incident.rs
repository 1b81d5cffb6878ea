//! `incident`: the README's incident, end to end.

use std::{path::Path, time::Duration};

use anyhow::{Context as _, Result, ensure};

use super::{
    Attach, KernelFacts, Outcome, expect_counts, expect_nothing_left, observe, settle, spawn,
};
use crate::{
    frames::ipv4_udp,
    lab::{
        BRIDGE, BRIDGE_IPV4, BRIDGE_MAC, FOREIGN_IPV4, FOREIGN_MAC, PEER_IFACE, peer_ipv4, peer_mac,
    },
    macdrop::{self, FrameCounts},
    sender::RawSender,
};

/// The README's incident: br0's MAC is not in its FDB, so frames to it
/// carrying br0's IP are flooded instead of delivered.
pub fn run(bin: &Path, attach: &Attach, kernel: &KernelFacts) -> Result<Outcome> {
    const TO_BRIDGE_MAC: u64 = 7;
    const FOREIGN_NOT_LOCAL: u64 = 2;
    let lab = super::two_port_lab()?;
    lab.remove_bridge_mac_from_fdb()?;

    // `macdrop status` (no eBPF) names the finding.
    let status = macdrop::run_command(
        lab.host(),
        &[
            bin.to_str().context("macdrop path is not UTF-8")?,
            "status",
            "--format",
            "json",
        ],
        Duration::from_secs(60),
    )?;
    ensure!(
        status.status.success() && status.stdout.contains("bridge_mac_not_in_fdb"),
        "`macdrop status --format json` exited {} without naming bridge_mac_not_in_fdb; stdout: {}; stderr: {}",
        status.status,
        status.stdout.trim(),
        status.stderr.trim()
    );

    let mut macdrop = match spawn(bin, lab.host(), &["--bridge", BRIDGE], attach)? {
        Ok(macdrop) => macdrop,
        Err(why) => return Ok(Outcome::Unsupported(why)),
    };
    let tx = RawSender::new(lab.peer(1), PEER_IFACE)?;
    let (src, sip) = (peer_mac(1), peer_ipv4(1));
    tx.send(
        &ipv4_udp(BRIDGE_MAC, src, sip, BRIDGE_IPV4),
        TO_BRIDGE_MAC as usize,
    )?;
    tx.send(
        &ipv4_udp(FOREIGN_MAC, src, sip, FOREIGN_IPV4),
        FOREIGN_NOT_LOCAL as usize,
    )?;
    let on_p1 = FrameCounts {
        foreign_unicast: TO_BRIDGE_MAC + FOREIGN_NOT_LOCAL,
        host_ip_wrong_mac: TO_BRIDGE_MAC,
        ..FrameCounts::default()
    }
    .with_total();
    let zero = FrameCounts::default();
    let report = settle(&mut macdrop, |r| {
        r.frames("p1") == Some(on_p1)
            && r.frames(BRIDGE) == Some(zero)
            && r.frames("p2") == Some(zero)
    })?;
    expect_counts(&macdrop, "p1", report.frames("p1"), on_p1)?;
    expect_counts(&macdrop, BRIDGE, report.frames(BRIDGE), zero)?;
    expect_counts(&macdrop, "p2", report.frames("p2"), zero)?;
    let observed = observe(&macdrop, kernel)?;
    macdrop.stop()?;
    expect_nothing_left(lab.host())?;
    Ok(Outcome::Ran(Box::new(observed)))
}
