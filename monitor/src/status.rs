//! `macdrop status`: a one-shot look at the namespace, no eBPF needed — the
//! first command on a broken host. Every interface's role, MAC and
//! promiscuous state, the kernel's otherhost counter, and findings: an
//! error for each bridge whose own MAC is not a local FDB entry (the
//! README's incident), a warning for each bridge whose MAC is not pinned.

use std::path::{Path, PathBuf};

use crate::{
    finding::Finding,
    hypervisor::{self, Dmi},
    mac::Mac,
    machine_id::{self, MachineId},
    netlink::{Link, NetState},
    promisc::{self, History, IfaceHistory},
    sysfs,
    topology::{self, Role},
};

/// What `status` knows about a bridge beyond the link itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BridgeFacts {
    /// Local FDB entries: what the bridge delivers to the host.
    pub local_fdb: Vec<Mac>,
    pub own_mac_in_fdb: bool,
    /// None when it cannot be told (sysfs of another namespace).
    pub mac_pinned: Option<bool>,
    /// Its ports' MACs: a bridge's own MAC is a port's when it follows
    /// its ports or was pinned to one.
    pub port_macs: Vec<Mac>,
}

#[derive(Clone, Debug)]
pub struct IfaceStatus {
    pub link: Link,
    pub netns: u32,
    pub role: Role,
    pub master: Option<String>,
    pub bridge: Option<BridgeFacts>,
    /// How the device got its MAC (sysfs `addr_assign_type`,
    /// `sysfs::NET_ADDR_*`); None when it cannot be told.
    pub addr_assign_type: Option<u8>,
    /// Who holds promiscuous mode ("promiscuity 2: bridge port, tcpdump
    /// (pid 4242)"), when the interface is promiscuous and /proc could be
    /// read.
    pub promisc_holders: Option<String>,
    /// The kernel log's promiscuous-mode history for this name, when
    /// /dev/kmsg could be read.
    pub promisc_log: Option<IfaceHistory>,
    /// What owns a veth's peer namespace (filled by `cmd::status` from the
    /// workload resolver; None when nothing does or it was not asked).
    pub workload: Option<crate::workload::Workload>,
    /// What the frame's path through it looks like (macvlan children
    /// elsewhere, VLAN-filtering gaps, Open vSwitch).
    pub path: crate::path::PathFacts,
}

/// Best-effort facts about promiscuous mode: each may be missing (no
/// permission to read /dev/kmsg or other processes' fds).
#[derive(Default)]
pub struct PromiscFacts {
    pub sockets: Option<promisc::Snapshot>,
    pub history: Option<History>,
}

impl PromiscFacts {
    pub fn read() -> Self {
        Self {
            sockets: promisc::Snapshot::read().ok(),
            history: History::read().ok(),
        }
    }
}

#[derive(Clone, Debug)]
pub struct Status {
    pub interfaces: Vec<IfaceStatus>,
    pub findings: Vec<Finding>,
    pub host: HostFacts,
}

/// What `status` knows about the machine itself.
#[derive(Clone, Debug, Default)]
pub struct HostFacts {
    /// The firmware's identification: the hypervisor, if any.
    pub dmi: Dmi,
    /// The machine ID systemd derives persistent MACs from, and the file
    /// it came from; None when it could not be read.
    pub machine_id: Option<HostMachineId>,
}

/// The host's machine ID and where it was read.
#[derive(Clone, Debug)]
pub struct HostMachineId {
    pub id: MachineId,
    pub source: PathBuf,
}

impl HostFacts {
    /// The real host's: /sys/class/dmi/id and /etc/machine-id.
    pub fn read() -> Self {
        Self::read_from(
            Path::new(hypervisor::DMI_DIR),
            Path::new(machine_id::MACHINE_ID_PATH),
        )
    }

    /// From these places instead (recorded fixtures in tests).
    pub fn read_from(dmi_dir: &Path, machine_id_file: &Path) -> Self {
        // Unreadable or invalid: no MAC is derived from it, by systemd
        // either, so there is nothing to check.
        let machine_id = MachineId::read(machine_id_file)
            .ok()
            .map(|id| HostMachineId {
                id,
                source: machine_id_file.to_owned(),
            });
        Self {
            dmi: Dmi::read(dmi_dir),
            machine_id,
        }
    }
}

/// Builds the facts of `names` (all interfaces when empty); the findings
/// over them are the rules' (`diagnose::rules::status`), which read these
/// facts, so this module does not call them.
/// `addr_assign_type(link)` answers how a device got its MAC (a bridge's
/// is pinned when userspace set it).
pub fn gather(
    netns: u32,
    state: &NetState,
    names: &[String],
    addr_assign_type: &dyn Fn(&Link) -> Option<u8>,
    promisc_facts: &PromiscFacts,
) -> Result<Vec<IfaceStatus>, crate::error::Failure> {
    let links: Vec<&Link> = if names.is_empty() {
        state.links.iter().collect()
    } else {
        names
            .iter()
            .map(|n| {
                state.link_by_name(n).ok_or_else(|| {
                    let all: Vec<&str> = state.links.iter().map(|l| l.name.as_str()).collect();
                    crate::error::Failure::environment(format!(
                        "no interface named {n} in this network namespace; candidates: {}",
                        all.join(", ")
                    ))
                })
            })
            .collect::<Result<_, _>>()?
    };
    let mut interfaces = Vec::new();
    for link in links {
        let w = topology::describe(state, link);
        let assigned = addr_assign_type(link);
        let bridge = link.is_bridge().then(|| {
            let local_fdb = state
                .local_fdb
                .get(&link.ifindex)
                .cloned()
                .unwrap_or_default();
            BridgeFacts {
                own_mac_in_fdb: link.mac.is_some_and(|m| local_fdb.contains(&m)),
                local_fdb,
                mac_pinned: assigned.map(|t| t == sysfs::NET_ADDR_SET),
                port_macs: state
                    .links
                    .iter()
                    .filter(|p| p.master == Some(link.ifindex))
                    .filter_map(|p| p.mac)
                    .collect(),
            }
        });
        let promisc_holders = (link.promiscuity > 0)
            .then(|| {
                let sockets = promisc_facts.sockets.as_ref()?;
                let holders = sockets.holders(link.ifindex).promiscuous();
                Some(promisc::describe_with_flag(
                    link.promiscuity,
                    link.promisc_flag,
                    w.role == Role::Port,
                    &holders,
                ))
            })
            .flatten();
        let iface = IfaceStatus {
            link: link.clone(),
            netns,
            role: w.role,
            master: link
                .master
                .and_then(|m| state.link(m))
                .map(|m| m.name.clone()),
            bridge,
            addr_assign_type: assigned,
            promisc_holders,
            promisc_log: promisc_facts
                .history
                .as_ref()
                .map(|h| h.interface(&link.name)),
            workload: None,
            path: crate::path::facts(state, link),
        };
        interfaces.push(iface);
    }
    Ok(interfaces)
}

/// The real `addr_assign_type`, from sysfs.
pub fn addr_assign_type_from_sysfs(link: &Link) -> Option<u8> {
    sysfs::addr_assign_type(&link.name, link.ifindex)
}

/// A bridge br0 with one port p1, shared with the rules' tests of the
/// findings `status` shows (`diagnose::rules`).
#[cfg(test)]
pub(crate) mod tests {
    use std::collections::BTreeMap;

    use super::*;

    pub(crate) const BR: Mac = Mac([2, 0, 0, 0, 0x0b, 1]);
    pub(crate) const P1: Mac = Mac([2, 0, 0, 0, 0x0a, 1]);

    /// br0 and p1, with `fdb` as br0's local entries.
    pub(crate) fn state(fdb: Vec<Mac>) -> NetState {
        NetState {
            links: vec![
                Link::fake(2, "br0", "bridge", None, BR),
                Link::fake(3, "p1", "veth", Some(2), P1),
            ],
            local_fdb: BTreeMap::from([(2, fdb)]),
            ..Default::default()
        }
    }

    #[test]
    fn facts_of_a_bridge_and_its_port() {
        let s = gather(
            7,
            &state(vec![BR, P1]),
            &[],
            &|_| Some(sysfs::NET_ADDR_SET),
            &PromiscFacts::default(),
        )
        .unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(s[1].role, Role::Port);
        assert_eq!(s[1].master.as_deref(), Some("br0"));
        assert!(s[0].bridge.as_ref().unwrap().own_mac_in_fdb);
        let s = gather(
            7,
            &state(vec![P1]),
            &[],
            &|_| Some(sysfs::NET_ADDR_RANDOM),
            &PromiscFacts::default(),
        )
        .unwrap();
        assert!(!s[0].bridge.as_ref().unwrap().own_mac_in_fdb);
    }

    #[test]
    fn named_interfaces_only_and_unknown_names_fail() {
        let s = gather(
            7,
            &state(vec![BR]),
            &["p1".into()],
            &|_| None,
            &PromiscFacts::default(),
        )
        .unwrap();
        assert_eq!(s.len(), 1);
        assert!(
            gather(
                7,
                &state(vec![BR]),
                &["nope".into()],
                &|_| None,
                &PromiscFacts::default()
            )
            .is_err()
        );
    }
}
