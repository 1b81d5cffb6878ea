//! `jumbo`: a veth whose peer has a jumbo MTU.

use std::path::Path;

use anyhow::Result;

use super::{
    Attach, KernelFacts, Observed, Outcome, expect_counts, expect_nothing_left, observe, settle,
    spawn,
};
use crate::{
    frames::ipv4_udp,
    lab::{
        FOREIGN_IPV4, FOREIGN_MAC, PEER_IFACE, STANDALONE_IFACE, STANDALONE_IPV4, STANDALONE_MAC,
        STANDALONE_PEER_IPV4, STANDALONE_PEER_MAC, StandaloneLab,
    },
    macdrop::FrameCounts,
    sender::RawSender,
};

/// A standalone veth whose peer has a jumbo MTU (9000): macdrop must
/// either watch it and count frames larger than a page (native XDP on veth
/// needs multi-buffer support for that, Linux >= 5.18) or refuse cleanly
/// (exit 3, an environment error). Exit 1 is a failure.
pub fn run(bin: &Path, attach: &Attach, kernel: &KernelFacts) -> Result<Outcome> {
    const MTU: &str = "9000";
    const BIG: usize = 8000;
    let lab = StandaloneLab::new()?;
    lab.peer()
        .exec(&["ip", "link", "set", PEER_IFACE, "mtu", MTU])?;
    lab.host()
        .exec(&["ip", "link", "set", STANDALONE_IFACE, "mtu", MTU])?;
    let mut macdrop = match spawn(bin, lab.host(), &["--iface", STANDALONE_IFACE], attach) {
        Ok(Ok(macdrop)) => macdrop,
        Ok(Err(why)) => return Ok(Outcome::Unsupported(why)),
        Err(error) if format!("{error:#}").contains("exit status: 3") => {
            let why = format!("{error:#}");
            let line = why
                .lines()
                .find(|l| l.starts_with("macdrop: "))
                .unwrap_or(&why)
                .to_owned();
            return Ok(Outcome::Ran(Box::new(Observed {
                jumbo: Some(format!("refused: {line}")),
                ..Observed::default()
            })));
        }
        Err(error) => return Err(error.context(format!("peer MTU {MTU}"))),
    };

    let tx = RawSender::new(lab.peer(), PEER_IFACE)?;
    let (src, sip) = (STANDALONE_PEER_MAC, STANDALONE_PEER_IPV4);
    // IP and UDP lengths stay those of the small datagram: the rest is
    // Ethernet padding, which the IP layer trims.
    let big = |mut frame: Vec<u8>| {
        frame.resize(BIG, 0);
        frame
    };
    let own = ipv4_udp(STANDALONE_MAC, src, sip, STANDALONE_IPV4);
    tx.send(&own, 2)?;
    tx.send(&big(own), 1)?;
    tx.send(&big(ipv4_udp(FOREIGN_MAC, src, sip, FOREIGN_IPV4)), 1)?;
    tx.send(&ipv4_udp(FOREIGN_MAC, src, sip, STANDALONE_IPV4), 1)?;
    let expected = FrameCounts {
        own: 3,
        foreign_unicast: 2,
        host_ip_wrong_mac: 1,
        ..FrameCounts::default()
    }
    .with_total();
    let report = settle(&mut macdrop, |r| {
        r.frames(STANDALONE_IFACE) == Some(expected)
    })?;
    expect_counts(
        &macdrop,
        STANDALONE_IFACE,
        report.frames(STANDALONE_IFACE),
        expected,
    )?;
    let mut observed = observe(&macdrop, kernel)?;
    let hook = observed
        .hooks
        .get("standalone")
        .cloned()
        .unwrap_or_else(|| "?".to_owned());
    observed.jumbo = Some(format!("counted ({hook})"));
    // Only the jumbo facts: hooks and the rest come from the other scenarios.
    let observed = Observed {
        jumbo: observed.jumbo,
        ..Observed::default()
    };
    macdrop.stop()?;
    expect_nothing_left(lab.host())?;
    Ok(Outcome::Ran(Box::new(observed)))
}
