//! `macdrop::promisc::holders` against the real kernel: tcpdump's packet
//! sockets and this process's own, in a lab namespace.

use std::{fs, time::Duration};

use anyhow::{Context as _, Result};
use macdrop::promisc::{Holder, Holders, describe, holders};
use macdrop_tests::{
    lab::{STANDALONE_IFACE, StandaloneLab},
    wait::poll_until,
};

use crate::{Capture, ifindex_in, promisc_packet_socket, promiscuity};

const TIMEOUT: Duration = Duration::from_secs(10);

/// Polls until nobody holds `v0` promiscuous any more.
fn assert_released(lab: &StandaloneLab, ifindex: u32) -> Result<()> {
    let after = poll_until(
        TIMEOUT,
        || {
            Ok((
                promiscuity(lab.host(), STANDALONE_IFACE)?,
                holders_in(lab, ifindex)?,
            ))
        },
        |(p, h)| *p == 0 && *h == Holders::default(),
    )?;
    assert_eq!(after, (0, Holders::default()));
    Ok(())
}

fn holders_in(lab: &StandaloneLab, ifindex: u32) -> Result<Holders> {
    lab.host().enter_thread(|| holders(ifindex))?
}

#[test]
fn tcpdump_holds_promiscuity_and_tcpdump_p_does_not() -> Result<()> {
    let lab = StandaloneLab::new()?;
    let ifindex = ifindex_in(lab.host(), STANDALONE_IFACE)?;
    assert_eq!(promiscuity(lab.host(), STANDALONE_IFACE)?, 0);

    let tcpdump = Capture::start(lab.host(), &["-i", STANDALONE_IFACE])?;
    let found = poll_until(
        TIMEOUT,
        || holders_in(&lab, ifindex),
        |h| h.bound.iter().any(|h| h.pid == tcpdump.pid()),
    )?;
    let holder = found
        .bound
        .iter()
        .find(|h| h.pid == tcpdump.pid())
        .with_context(|| format!("tcpdump (pid {}) not found: {found:?}", tcpdump.pid()))?;
    assert_eq!(holder.comm, "tcpdump");
    assert_eq!(holder.ifindex, ifindex);
    assert_eq!(holder.promisc, Some(true), "{found:?}");
    assert_eq!(promiscuity(lab.host(), STANDALONE_IFACE)?, 1);
    assert_eq!(
        describe(1, false, &found.promiscuous()),
        format!("promiscuity 1: tcpdump (pid {})", tcpdump.pid())
    );

    // `-p`: a bound socket just like tcpdump's, but no promiscuity.
    let quiet = Capture::start(lab.host(), &["-p", "-i", STANDALONE_IFACE])?;
    let found = poll_until(
        TIMEOUT,
        || holders_in(&lab, ifindex),
        |h| h.bound.iter().any(|h| h.pid == quiet.pid()),
    )?;
    let holder = found
        .bound
        .iter()
        .find(|h| h.pid == quiet.pid())
        .with_context(|| format!("tcpdump -p (pid {}) not found: {found:?}", quiet.pid()))?;
    assert_eq!(holder.comm, "tcpdump");
    assert_eq!(holder.promisc, Some(false));
    assert_eq!(promiscuity(lab.host(), STANDALONE_IFACE)?, 1);
    assert_eq!(found.promiscuous().len(), 1, "{found:?}");

    drop(tcpdump);
    drop(quiet);
    assert_released(&lab, ifindex)?;
    Ok(())
}

#[test]
fn own_packet_sockets_are_found_with_this_pid() -> Result<()> {
    let lab = StandaloneLab::new()?;
    let ifindex = ifindex_in(lab.host(), STANDALONE_IFACE)?;
    let me = std::process::id();

    // Bound to v0 and promiscuous on it: promiscuity 1.
    let bound = lab
        .host()
        .enter_thread(|| promisc_packet_socket(ifindex, Some(ifindex)))??;
    // Bound to all interfaces, promiscuous on v0: promiscuity 2, yet
    // /proc/net/packet shows it under Iface 0.
    let everywhere = lab
        .host()
        .enter_thread(|| promisc_packet_socket(0, Some(ifindex)))??;
    // Bound to all interfaces, no membership: sees v0, holds nothing.
    let watcher = lab
        .host()
        .enter_thread(|| promisc_packet_socket(0, None))??;
    assert_eq!(promiscuity(lab.host(), STANDALONE_IFACE)?, 2);

    let found = holders_in(&lab, ifindex)?;
    let comm = fs::read_to_string("/proc/self/comm")?;
    let comm = comm.trim_end();
    // Only this process: a child another test is spawning holds copies
    // of our fds between its fork and its exec.
    let summary = |list: &[Holder]| {
        let mut mine: Vec<_> = list
            .iter()
            .filter(|h| h.pid == me)
            .map(|h| (h.pid, h.comm.clone(), h.ifindex, h.promisc))
            .collect();
        // Same process: order by membership, not by inode.
        mine.sort_by_key(|(.., promisc)| std::cmp::Reverse(*promisc));
        mine
    };
    assert_eq!(
        summary(&found.bound),
        vec![(me, comm.to_owned(), ifindex, Some(true))]
    );
    assert_eq!(
        summary(&found.all_interfaces),
        vec![
            (me, comm.to_owned(), 0, Some(true)),
            (me, comm.to_owned(), 0, Some(false)),
        ]
    );
    assert!(found.others.is_empty(), "{found:?}");
    assert!(found.unowned.is_empty(), "{found:?}");
    let mine: Vec<Holder> = found
        .promiscuous()
        .into_iter()
        .filter(|h| h.pid == me)
        .collect();
    assert_eq!(
        describe(2, false, &mine),
        format!("promiscuity 2: {comm} (pid {me}, 2 sockets)")
    );

    drop((bound, everywhere, watcher));
    assert_released(&lab, ifindex)?;
    Ok(())
}
