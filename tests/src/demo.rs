//! The demo behind `cargo xtask demo`: the README's incident, live.
//!
//! A bridge loses its own MAC from its forwarding database, so traffic to the
//! host through the bridge is silently flooded away; promiscuous mode (what
//! tcpdump turns on) hides the bug. The demo shows this with pings while
//! macdrop's table streams to the terminal, then says what the reader saw.
//! Everything runs in throwaway namespaces that are removed on every path.

use std::{path::Path, process::Stdio, time::Duration};

use anyhow::{Context as _, Result, bail};

use crate::{
    lab::{BRIDGE, BRIDGE_IPV4, BridgeLab, BridgeLabOptions},
    macdrop::{Macdrop, Output},
    netns::describe,
};

/// How long to let macdrop's one-second table catch up after a step, so the
/// reader sees each step's effect before the next one starts.
const TABLE_CATCH_UP: Duration = Duration::from_millis(1500);

/// Builds the lab, runs macdrop against it and narrates on stdout.
pub fn run_demo(macdrop_bin: &Path) -> Result<()> {
    // SAFETY: plain syscall without arguments.
    if unsafe { libc::geteuid() } != 0 {
        bail!("the demo needs root (it creates network namespaces and attaches XDP programs)");
    }
    let ping_available = std::process::Command::new("ping")
        .arg("-V")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    if !ping_available {
        bail!("the demo needs `ping` (Debian: apt-get install iputils-ping)");
    }

    say("building a throwaway lab: bridge br0 (192.0.2.1/24) with port p1 to namespace");
    say("ctr1 (192.0.2.11) and port p2 to namespace ctr2 (192.0.2.12)");
    let lab = BridgeLab::with_options(BridgeLabOptions {
        ports: 2,
        ns_prefix: "macdrop-demo".to_owned(),
        ..BridgeLabOptions::default()
    })?;
    lab.set_peer_address(1, "192.0.2.11/24")?;
    lab.set_peer_address(2, "192.0.2.12/24")?;
    say(&format!(
        "  host = {}, ctr1 = {}, ctr2 = {} (see `ip netns list`)",
        lab.host().name(),
        lab.peer(1).name(),
        lab.peer(2).name()
    ));

    say("breaking it: `bridge fdb del 02:00:00:00:0b:01 dev br0 self` removes br0's own MAC");
    say("from its forwarding database (as when a bridge's MAC changes under its peers)");
    lab.remove_bridge_mac_from_fdb()?;

    say("starting `macdrop watch --bridge br0 --interval 1` in the host namespace");
    // Declared after `lab`, so it is dropped (killed) before the lab goes.
    let macdrop = Macdrop::spawn_bin(
        macdrop_bin,
        lab.host(),
        &["--bridge", BRIDGE, "--interval", "1"],
        Output::Terminal,
    )?;

    say("step 1: ctr1 pings 192.0.2.1, br0 not promiscuous");
    let first = ping_from_ctr1(&lab)?;
    std::thread::sleep(TABLE_CATCH_UP);

    say("step 2: `ip link set br0 promisc on` (what tcpdump -i br0 does), ping again");
    lab.set_promisc(true)?;
    let second = ping_from_ctr1(&lab)?;
    std::thread::sleep(TABLE_CATCH_UP);

    say("step 3: `ip link set br0 promisc off`, ping again");
    lab.set_promisc(false)?;
    let third = ping_from_ctr1(&lab)?;
    std::thread::sleep(TABLE_CATCH_UP);

    say("stopping macdrop (SIGINT) so it prints its last table");
    macdrop.interrupt()?;

    say(&format!(
        "pings answered: step 1 {}, step 2 {}, step 3 {}",
        yes_no(first),
        yes_no(second),
        yes_no(third)
    ));
    say("What you saw: ctr1's pings reached port p1, but with br0's own MAC gone from its");
    say("forwarding database the bridge flooded them to the other port instead of handing them");
    say(
        "to the host, and no kernel drop counter moved. macdrop's host_ip_wrong_mac climbed on p1:",
    );
    say("frames carrying the host's IP address but a destination MAC the bridge does not deliver.");
    say("Promiscuous mode made the bridge pass every frame up, so the pings worked only while it");
    say("was on, which is why tcpdump seemed to fix the real incident. Removing the lab.");
    Ok(())
}

/// Three pings from ctr1 to the bridge's address. Prints ping's own summary
/// (how many replies came back) and returns whether any reply came.
fn ping_from_ctr1(lab: &BridgeLab) -> Result<bool> {
    let target = BRIDGE_IPV4.to_string();
    let mut cmd = lab
        .peer(1)
        .command(&["ping", "-q", "-c", "3", "-i", "0.2", "-W", "1", &target]);
    let output = cmd
        .output()
        .with_context(|| format!("cannot run {}", describe(&cmd)))?;
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        if !line.trim().is_empty() {
            say(&format!("  | {line}"));
        }
    }
    // iputils ping: 0 = replies received, 1 = no reply, anything else = error.
    match output.status.code() {
        Some(0) => {
            say("  -> replies received");
            Ok(true)
        }
        Some(1) => {
            say("  -> no reply");
            Ok(false)
        }
        _ => bail!(
            "{} failed ({}): {}",
            describe(&cmd),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ),
    }
}

fn yes_no(answered: bool) -> &'static str {
    if answered { "yes" } else { "no" }
}

/// One line of narration, prefixed so it stands apart from macdrop's table.
fn say(text: &str) {
    println!("demo: {text}");
}
