//! `bridge_mac_from_machine_id` end to end, from recorded facts: a bridge
//! br0 with ports p1 and p2 whose MAC systemd-udevd or systemd-networkd
//! derived from a recorded machine ID (the vectors of `machine_id`'s
//! tests, taken from the real programs).

use std::path::PathBuf;

use monitor_common::FrameCounters;

use super::tests::{BR, P1, P2, ids, lab, netstate, ns_on, run};
use crate::{
    diagnose::{finding::Severity, input::NsFacts},
    mac::Mac,
    machine_id::MachineId,
    netlink::{Link, NetState},
    status::{HostFacts, HostMachineId, PromiscFacts},
    sysfs::{NET_ADDR_RANDOM, NET_ADDR_SET},
};

const ID_A: &str = "0123456789abcdef0123456789abcdef";
const ID_B: &str = "5c0a3ac5e1b24b5f8c0d1e2f30415263";
/// What udev 252 and networkd 252 gave br0 on a host whose ID is `ID_A`.
const UDEVD_BR0: Mac = Mac([0x2e, 0x51, 0xd4, 0x17, 0xb5, 0x1e]);
const NETWORKD_BR0: Mac = Mac([0x52, 0x9c, 0x2f, 0x97, 0x80, 0xe3]);

fn host(id: Option<&str>) -> HostFacts {
    HostFacts {
        machine_id: id.map(|id| HostMachineId {
            id: MachineId::parse(id).unwrap(),
            source: PathBuf::from("/etc/machine-id"),
        }),
        ..Default::default()
    }
}

/// br0 with `mac`, ports p1 and p2.
fn lab_state(mac: Mac) -> NetState {
    let mut state = netstate(vec![mac, P1, P2], 0);
    state.links[0].mac = Some(mac);
    state
}

fn facts(state: &NetState, assign: u8, host: HostFacts) -> NsFacts {
    let assign = |l: &Link| {
        Some(if l.is_bridge() {
            assign
        } else {
            NET_ADDR_RANDOM
        })
    };
    ns_on(state, &assign, &PromiscFacts::default(), host)
}

fn own(n: u64) -> FrameCounters {
    FrameCounters {
        total: n,
        own: n,
        ..Default::default()
    }
}

#[test]
fn a_bridge_mac_udev_derived_from_the_machine_id_is_found_by_status() {
    let facts = facts(&lab_state(UDEVD_BR0), NET_ADDR_SET, host(Some(ID_A)));
    let found = &facts.status.findings;
    assert_eq!(ids(found), ["bridge_mac_from_machine_id"]);
    let f = &found[0];
    assert_eq!(f.severity(), Severity::Warning);
    assert_eq!(f.interface, "br0");
    assert_eq!(
        f.message,
        "br0's MAC 2e:51:d4:17:b5:1e is the one systemd-udevd derives from this host's \
         machine ID and the name br0: every host cloned with the same /etc/machine-id gives \
         its bridge br0 the same MAC, and their neighbours see it move between hosts (the \
         fleet alert MacdropBridgeMacOnSeveralNodes confirms it across nodes)"
    );
    assert_eq!(
        f.evidence,
        [
            "br0: MAC 2e:51:d4:17:b5:1e, addr_assign_type set (set by userspace), and none of \
             its 2 port(s) has it",
            "systemd-udevd derives 2e:51:d4:17:b5:1e for the name br0 from the machine ID in \
             /etc/machine-id (SipHash-2-4 of the ID and the name, MACAddressPolicy=persistent \
             in a .link file: 99-default.link)",
        ]
    );
    assert_eq!(
        f.remedy,
        [
            "give br0 a MAC of its own, unique in the fleet: a .link file that sorts before \
             99-default.link, e.g. /etc/systemd/network/10-br0.link with [Match] \
             OriginalName=br0 and [Link] MACAddress=<MAC> (or MACAddressPolicy=none to keep \
             the kernel's random one), then recreate br0",
            "on hosts cloned from one image, give each its own machine ID: `rm /etc/machine-id \
             && systemd-machine-id-setup` (and empty /etc/machine-id in the image), then reboot",
        ]
    );
    assert_eq!(
        serde_json::Value::Object(f.facts.clone()),
        serde_json::json!({
            "mac": "2e:51:d4:17:b5:1e",
            "addr_assign_type": "set",
            "derived_by": "systemd-udevd",
            "machine_id_source": "/etc/machine-id",
        })
    );
    // `diagnose` names it too, the window's frames changing nothing.
    let found = run(&facts, &lab(own(3)), &[], None);
    assert_eq!(ids(&found), ["bridge_mac_from_machine_id"]);
    assert_eq!(found[0].evidence, facts.status.findings[0].evidence);
}

#[test]
fn a_networkd_bridge_is_found_with_its_own_remedy() {
    let facts = facts(&lab_state(NETWORKD_BR0), NET_ADDR_SET, host(Some(ID_A)));
    let f = &facts.status.findings;
    assert_eq!(ids(f), ["bridge_mac_from_machine_id"]);
    assert_eq!(f[0].facts["derived_by"], "systemd-networkd");
    assert!(
        f[0].evidence[1]
            .ends_with("(SipHash-2-4 of the ID and the name, a .netdev without MACAddress=)")
    );
    assert_eq!(
        f[0].remedy[0],
        "give br0 a MAC of its own, unique in the fleet: MACAddress=<MAC> in the [NetDev] \
         section of its .netdev, then recreate br0"
    );
}

/// Each condition on its own keeps the rule quiet: the kernel's random MAC
/// (then `bridge_mac_not_pinned` speaks, never both), a pinned MAC not
/// derived here, another host's machine ID, no machine ID, a port that has
/// the MAC.
#[test]
fn no_finding_without_every_condition() {
    let quiet = |facts: NsFacts, want: &[&str]| {
        assert_eq!(
            ids(&facts.status.findings),
            want,
            "{:#?}",
            facts.status.findings
        );
    };
    quiet(
        facts(&lab_state(UDEVD_BR0), NET_ADDR_RANDOM, host(Some(ID_A))),
        &["bridge_mac_not_pinned"],
    );
    quiet(facts(&lab_state(BR), NET_ADDR_SET, host(Some(ID_A))), &[]);
    quiet(
        facts(&lab_state(UDEVD_BR0), NET_ADDR_SET, host(Some(ID_B))),
        &[],
    );
    quiet(facts(&lab_state(UDEVD_BR0), NET_ADDR_SET, host(None)), &[]);
    let mut state = lab_state(UDEVD_BR0);
    state.links[1].mac = Some(UDEVD_BR0);
    quiet(facts(&state, NET_ADDR_SET, host(Some(ID_A))), &[]);
    // Another name with br0's MAC: derived for br0, not for it.
    let mut state = lab_state(UDEVD_BR0);
    state.links[0].name = "br1".into();
    quiet(facts(&state, NET_ADDR_SET, host(Some(ID_A))), &[]);
}

/// The machine ID comes from the file `HostFacts::read_from` is given,
/// never from this host's.
#[test]
fn the_machine_id_file_is_injected() {
    let dir = std::env::temp_dir().join(format!("macdrop-rule-mid-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("machine-id");
    std::fs::write(&file, format!("{ID_A}\n")).unwrap();
    let host = HostFacts::read_from(&dir.join("no-dmi"), &file);
    let facts = facts(&lab_state(UDEVD_BR0), NET_ADDR_SET, host);
    let f = &facts.status.findings;
    assert_eq!(ids(f), ["bridge_mac_from_machine_id"]);
    assert_eq!(f[0].facts["machine_id_source"], file.display().to_string());
    std::fs::write(&file, "uninitialized\n").unwrap();
    let host = HostFacts::read_from(&dir.join("no-dmi"), &file);
    assert!(host.machine_id.is_none());
    std::fs::remove_dir_all(&dir).unwrap();
}
