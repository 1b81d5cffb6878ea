//! One line per interface that puts macdrop's prediction (the frame
//! classes), the kernel's confirmation (drop reasons) and the kernel's own
//! counter side by side, in words an on-call engineer can act on.

use std::fmt::Write as _;

use crate::{model::Interface, topology::Role};

/// Drop reasons that mean "dropped for a MAC mismatch".
pub const MAC_MISMATCH_REASONS: [&str; 3] =
    ["OTHERHOST", "NO_TX_TARGET", "IPV6_NDISC_NS_OTHERHOST"];

pub fn verdict(i: &Interface) -> String {
    // One string written in place: `watch` renders this for every
    // interface in every report (1,000 ports: 1,000 lines a second), where
    // a string per part was a tenth of its CPU time.
    let mut out = String::with_capacity(160);
    // Writing to a String cannot fail.
    let _ = write_verdict(&mut out, i);
    out
}

fn write_verdict(out: &mut String, i: &Interface) -> std::fmt::Result {
    let f = &i.frames;
    if i.gone {
        out.push_str("gone (final counts kept); ");
    }
    if f.host_ip_wrong_mac > 0 {
        let receiver = if i.role == Role::Standalone {
            "the interface"
        } else {
            "the bridge"
        };
        write!(
            out,
            "ALERT: {} frame(s) for this host's IP carried a MAC {receiver} will not deliver",
            f.host_ip_wrong_mac
        )?;
        if f.stale_mac > 0 {
            write!(out, " ({} to a previous MAC)", f.stale_mac)?;
        }
    } else if f.foreign_unicast > 0 && i.role != Role::Port {
        write!(
            out,
            "{} frame(s) for other MACs reached {} (the kernel drops these as OTHERHOST)",
            f.foreign_unicast, i.name
        )?;
    } else if f.foreign_unicast > 0 {
        write!(
            out,
            "ok: {} frame(s) for other MACs bridged on (normal), none for this host",
            f.foreign_unicast
        )?;
    } else {
        out.push_str("ok: no MAC-mismatch frames");
    }
    out.push_str(" | kernel drops: ");
    match &i.drops {
        Some(drops) => {
            for (n, r) in MAC_MISMATCH_REASONS.iter().enumerate() {
                let sep = if n == 0 { "" } else { ", " };
                write!(out, "{sep}{} {r}", drops.get(*r).copied().unwrap_or(0))?;
            }
        }
        None => out.push_str("n/a"),
    }
    match i.kernel_rx_otherhost_dropped {
        Some(n) => write!(out, " | rx_otherhost_dropped +{n}")?,
        None => out.push_str(" | rx_otherhost_dropped n/a"),
    }
    // A bridge holding its port is the normal case, not worth a mention.
    match &i.promisc_holders {
        _ if !i.promisc || (i.role == Role::Port && i.promiscuity <= 1) => {}
        Some(who) => write!(out, " | promiscuous: {who}")?,
        None => write!(out, " | promiscuous (promiscuity {})", i.promiscuity)?,
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use monitor_common::FrameCounters;

    use super::*;

    fn port() -> Interface {
        Interface::new("p1".into(), 3, 1, Role::Port, Some("br0".into()))
    }

    #[test]
    fn healthy_port() {
        let mut i = port();
        i.drops = Some(BTreeMap::new());
        i.kernel_rx_otherhost_dropped = Some(0);
        assert_eq!(
            verdict(&i),
            "ok: no MAC-mismatch frames | kernel drops: 0 OTHERHOST, 0 NO_TX_TARGET, \
             0 IPV6_NDISC_NS_OTHERHOST | rx_otherhost_dropped +0"
        );
    }

    #[test]
    fn the_incident_on_a_port() {
        let mut i = port();
        i.frames = FrameCounters {
            total: 9,
            foreign_unicast: 9,
            host_ip_wrong_mac: 9,
            stale_mac: 2,
            ..Default::default()
        };
        i.drops = Some(BTreeMap::from([("NO_TX_TARGET".to_owned(), 9)]));
        i.promisc = true;
        i.promiscuity = 2;
        i.promisc_holders = Some("promiscuity 2: bridge port, tcpdump (pid 42)".into());
        let v = verdict(&i);
        assert!(
            v.starts_with("ALERT: 9 frame(s) for this host's IP carried a MAC the bridge"),
            "{v}"
        );
        assert!(v.contains("(2 to a previous MAC)"), "{v}");
        assert!(v.contains("9 NO_TX_TARGET"), "{v}");
        assert!(v.contains("rx_otherhost_dropped n/a"), "{v}");
        assert!(
            v.ends_with("promiscuous: promiscuity 2: bridge port, tcpdump (pid 42)"),
            "{v}"
        );
        // A port held only by its bridge is not news.
        i.promiscuity = 1;
        assert!(!verdict(&i).contains("promiscuous"));
        // The whole line, gone: every part in its place.
        i.gone = true;
        i.kernel_rx_otherhost_dropped = Some(4);
        assert_eq!(
            verdict(&i),
            "gone (final counts kept); ALERT: 9 frame(s) for this host's IP carried a MAC \
             the bridge will not deliver (2 to a previous MAC) | kernel drops: 0 OTHERHOST, \
             9 NO_TX_TARGET, 0 IPV6_NDISC_NS_OTHERHOST | rx_otherhost_dropped +4"
        );
    }

    #[test]
    fn foreign_on_a_standalone_interface_is_a_drop() {
        let mut i = Interface::new("v0".into(), 2, 1, Role::Standalone, None);
        i.frames.foreign_unicast = 5;
        assert!(verdict(&i).starts_with("5 frame(s) for other MACs reached v0"));
    }
}
