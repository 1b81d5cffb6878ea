//! `macdrop::promisc::history`: real transitions in a lab namespace, read
//! back from the real /dev/kmsg.

use std::{
    sync::atomic::{AtomicU32, Ordering},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use anyhow::{Context as _, Result};
use macdrop::promisc::{History, IfaceHistory, LogState, TransitionKind, Verdict};
use macdrop_tests::{netns::NetNs, wait::poll_until};

use crate::{ifindex_in, promisc_packet_socket, promiscuity};

const TIMEOUT: Duration = Duration::from_secs(10);

/// An interface name no earlier record can carry: the kernel log
/// outlives test runs and other labs on this machine use `p1`, `v0`...
/// 15 bytes at most: "mp" + 6 base-36 digits of time + pid + counter.
fn unique_name() -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let mut value = nanos ^ (u128::from(std::process::id()) << 40);
    value = value.wrapping_add(u128::from(COUNTER.fetch_add(1, Ordering::Relaxed)) << 20);
    let mut name = String::from("mp");
    for _ in 0..12 {
        let digit = (value % 36) as u32;
        name.push(char::from_digit(digit, 36).unwrap_or('x'));
        value /= 36;
    }
    name
}

/// A veth pair with a fresh name, both ends in `ns`; returns the name.
fn veth(ns: &NetNs) -> Result<String> {
    let name = unique_name();
    let peer = format!("{}-", &name[..13]); // "-" is never in a unique name
    ns.exec(&[
        "ip", "link", "add", &name, "type", "veth", "peer", "name", &peer,
    ])?;
    Ok(name)
}

fn read_until(name: &str, done: impl Fn(&IfaceHistory) -> bool) -> Result<IfaceHistory> {
    poll_until(TIMEOUT, || Ok(History::read()?.interface(name)), done)
}

fn set_promisc(ns: &NetNs, name: &str, on: bool) -> Result<()> {
    let state = if on { "on" } else { "off" };
    ns.exec(&["ip", "link", "set", name, "promisc", state])?;
    Ok(())
}

#[test]
fn promisc_on_and_off_are_counted_exactly() -> Result<()> {
    let ns = NetNs::new()?;
    let name = veth(&ns)?;
    let before = History::read()?;
    let start = before.interface(&name);
    assert_eq!(
        (start.entered, start.left, start.last.clone()),
        (0, 0, None)
    );

    set_promisc(&ns, &name, true)?;
    let on = read_until(&name, |h| h.entered == 1)?;
    assert_eq!((on.entered, on.left), (1, 0));
    let last = on.last.clone().context("no transition")?;
    assert_eq!(last.kind, TransitionKind::Entered);
    assert!(!last.unregistering);
    // veth has no parent device, so no dictionary.
    assert_eq!((last.ifindex_hint, last.device.clone()), (None, None));
    // Decided by the record itself, whether or not the log wrapped.
    assert_eq!(on.verdict(true), Verdict::Agrees);
    assert_eq!(on.verdict(false), Verdict::Disagrees);
    // Timestamps: close to now, on both clocks.
    let wall_age = SystemTime::now()
        .duration_since(last.wall)
        .unwrap_or_default();
    assert!(wall_age < Duration::from_secs(30), "{last:?}");

    set_promisc(&ns, &name, false)?;
    let off = read_until(&name, |h| h.left == 1)?;
    assert_eq!((off.entered, off.left), (1, 1));
    assert_eq!(
        off.last.as_ref().map(|t| t.kind),
        Some(TransitionKind::Left)
    );
    assert!(off.last.as_ref().unwrap().seq > last.seq);

    set_promisc(&ns, &name, true)?;
    set_promisc(&ns, &name, true)?; // a second "on" adds no holder
    set_promisc(&ns, &name, false)?;
    let twice = read_until(&name, |h| h.left == 2)?;
    assert_eq!((twice.entered, twice.left, twice.conflicts), (2, 2, 0));
    assert_eq!(twice.verdict(false), Verdict::Agrees);
    assert_eq!(promiscuity(&ns, &name)?, 0);
    Ok(())
}

/// The log records the flag, not the counter: a second holder on an
/// already promiscuous interface logs nothing, and neither does losing
/// it while another remains.
#[test]
fn only_flag_changes_are_logged() -> Result<()> {
    let ns = NetNs::new()?;
    let name = veth(&ns)?;
    let ifindex = ifindex_in(&ns, &name)?;
    set_promisc(&ns, &name, true)?;
    let socket = ns.enter_thread(|| promisc_packet_socket(ifindex, Some(ifindex)))??;
    assert_eq!(promiscuity(&ns, &name)?, 2);
    drop(socket);
    poll_until(TIMEOUT, || promiscuity(&ns, &name), |p| *p == 1)?;
    set_promisc(&ns, &name, false)?;
    let h = read_until(&name, |h| h.left == 1)?;
    assert_eq!((h.entered, h.left), (1, 1));
    Ok(())
}

#[test]
fn a_rename_moves_the_state() -> Result<()> {
    let ns = NetNs::new()?;
    let old = veth(&ns)?;
    let new = unique_name();
    set_promisc(&ns, &old, true)?;
    ns.exec(&["ip", "link", "set", &old, "name", &new])?;
    let renamed = read_until(&new, |h| h.renamed_from.is_some())?;
    assert_eq!(renamed.renamed_from.as_deref(), Some(old.as_str()));
    assert_eq!((renamed.entered, renamed.left), (0, 0));
    assert_eq!(renamed.state, LogState::Promiscuous);
    assert_eq!(renamed.verdict(true), Verdict::Agrees);
    let history = History::read()?;
    let gone = history.interface(&old);
    assert_eq!((gone.entered, gone.left), (1, 0));
    assert_eq!(gone.verdict(false), Verdict::Agrees);
    Ok(())
}
