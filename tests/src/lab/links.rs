//! The steps every topology is built from, one `ip` command each: a veth
//! pair across two namespaces, a bridge, an IPv4 address (from the
//! documentation ranges only), a static neighbour.

use std::net::Ipv4Addr;

use anyhow::{Context as _, Result, ensure};

use crate::{
    frames::{Mac, mac_to_string},
    netns::NetNs,
};

/// One end of a veth pair: its name and, if fixed, its MAC.
#[derive(Clone, Copy, Debug)]
pub struct End<'a> {
    pub ns: &'a NetNs,
    pub name: &'a str,
    pub mac: Option<Mac>,
}

/// Adds the veth pair `a` <-> `b`. The `b` end is created directly in its
/// namespace, so ends of the same name in different namespaces never meet.
pub fn add_veth(a: End<'_>, b: End<'_>) -> Result<()> {
    add_veth_at(a, None, b)
}

/// `add_veth`, with end `a` at ifindex `a_index` if given (the kernel
/// picks the next free one otherwise).
pub fn add_veth_at(a: End<'_>, a_index: Option<u32>, b: End<'_>) -> Result<()> {
    let (a_mac, b_mac) = (
        a.mac.map(|m| mac_to_string(&m)),
        b.mac.map(|m| mac_to_string(&m)),
    );
    let b_ns = b.ns.path().to_string_lossy().into_owned();
    let a_index = a_index.map(|i| i.to_string());
    let mut argv = vec!["ip", "link", "add", a.name];
    if let Some(index) = &a_index {
        argv.extend(["index", index]);
    }
    if let Some(mac) = &a_mac {
        argv.extend(["address", mac]);
    }
    argv.extend(["type", "veth", "peer", "name", b.name]);
    if let Some(mac) = &b_mac {
        argv.extend(["address", mac]);
    }
    argv.extend(["netns", &b_ns]);
    a.ns.exec(&argv)?;
    Ok(())
}

/// Adds bridge `name` in `ns`, with `mac` if given (else the bridge takes
/// its lowest port's). STP off: ports forward at once instead of after the
/// listening and learning delays, and the bridge sends no BPDUs.
pub fn add_bridge(ns: &NetNs, name: &str, mac: Option<Mac>) -> Result<()> {
    let mac = mac.map(|m| mac_to_string(&m));
    let mut argv = vec!["ip", "link", "add", name];
    if let Some(mac) = &mac {
        argv.extend(["address", mac]);
    }
    argv.extend(["type", "bridge", "stp_state", "0"]);
    ns.exec(&argv)?;
    Ok(())
}

/// Adds macvlan `name` (bridge mode) with `mac` on `lower` in `ns`.
pub fn add_macvlan(ns: &NetNs, name: &str, lower: &str, mac: Mac) -> Result<()> {
    ns.exec(&[
        "ip",
        "link",
        "add",
        name,
        "link",
        lower,
        "address",
        &mac_to_string(&mac),
        "type",
        "macvlan",
        "mode",
        "bridge",
    ])?;
    Ok(())
}

/// Gives `dev` the address `addr/24`; labs never use an address outside
/// the documentation ranges, so no lab can collide with a real network.
pub fn add_ipv4(ns: &NetNs, dev: &str, addr: Ipv4Addr) -> Result<()> {
    ensure!(
        is_documentation(addr),
        "{addr} is not in a documentation range (RFC 5737)"
    );
    ns.exec(&["ip", "addr", "add", &format!("{addr}/24"), "dev", dev])?;
    Ok(())
}

/// `ip link set dev up`.
pub fn up(ns: &NetNs, dev: &str) -> Result<()> {
    ns.exec(&["ip", "link", "set", dev, "up"])?;
    Ok(())
}

/// A permanent neighbour entry `addr` -> `mac` on `dev`: no ARP while a
/// measurement or a test runs.
pub fn add_neighbour(ns: &NetNs, dev: &str, addr: Ipv4Addr, mac: Mac) -> Result<()> {
    ns.exec(&[
        "ip",
        "neigh",
        "replace",
        &addr.to_string(),
        "lladdr",
        &mac_to_string(&mac),
        "dev",
        dev,
        "nud",
        "permanent",
    ])?;
    Ok(())
}

/// `ip -batch -` in `ns` with `commands` on stdin: one process for
/// thousands of links where one `ip` each would take minutes.
pub fn ip_batch(ns: &NetNs, commands: &str) -> Result<()> {
    use std::{io::Write as _, process::Stdio};
    let mut cmd = ns.command(&["ip", "-batch", "-"]);
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot run {cmd:?}"))?;
    child
        .stdin
        .take()
        .expect("piped")
        .write_all(commands.as_bytes())?;
    let out = child.wait_with_output()?;
    ensure!(
        out.status.success(),
        "ip -batch in {} failed ({}): {}",
        ns.name(),
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(())
}

/// TEST-NET-1, -2 and -3 (RFC 5737).
pub fn is_documentation(addr: Ipv4Addr) -> bool {
    matches!(
        addr.octets(),
        [192, 0, 2, _] | [198, 51, 100, _] | [203, 0, 113, _]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documentation_ranges_only() {
        for ok in ["192.0.2.1", "198.51.100.2", "203.0.113.255"] {
            assert!(is_documentation(ok.parse().unwrap()), "{ok}");
        }
        for bad in ["10.0.0.1", "192.0.3.1", "198.51.101.1", "203.0.112.1"] {
            assert!(!is_documentation(bad.parse().unwrap()), "{bad}");
        }
    }
}
