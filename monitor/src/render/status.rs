//! `macdrop status` output: a table and findings for people, or one JSON
//! document for programs.

use std::{fmt::Write as _, time::SystemTime};

use serde::Serialize;

use super::{
    Numbers,
    json::{WorkloadJson, workload},
};
use crate::{
    finding::Finding,
    promisc::{IfaceHistory, TransitionKind, Verdict},
    status::{IfaceStatus, Status},
    sysfs::addr_assign_name,
};

fn log_json(h: &IfaceHistory, promisc_now: bool) -> LogJson {
    LogJson {
        entered: h.entered,
        left: h.left,
        last: h.last.as_ref().map(|t| match t.kind {
            TransitionKind::Entered => "entered",
            TransitionKind::Left => "left",
        }),
        last_ts: h
            .last
            .as_ref()
            .map(|t| humantime::format_rfc3339_seconds(t.wall).to_string()),
        complete: h.history_complete,
        agrees: match h.verdict(promisc_now) {
            Verdict::Agrees => Some(true),
            Verdict::Disagrees => Some(false),
            Verdict::Uncertain(_) => None,
        },
    }
}

#[derive(Serialize)]
struct StatusJson<'a> {
    schema: &'static str,
    ts: String,
    /// The hypervisor the firmware's DMI strings name; null on bare metal
    /// or without DMI.
    hypervisor: Option<&'static str>,
    interfaces: Vec<IfaceJson<'a>>,
    findings: Vec<StatusFinding<'a>>,
}

#[derive(Serialize)]
struct IfaceJson<'a> {
    name: &'a str,
    ifindex: u32,
    netns: String,
    role: &'static str,
    master: Option<&'a str>,
    kind: Option<&'a str>,
    mac: Option<String>,
    /// How it got its MAC (sysfs `addr_assign_type`): "permanent",
    /// "random", "stolen", "set" or "unknown"; null when unreadable.
    addr_assign_type: Option<&'static str>,
    /// The hardware's own MAC (IFLA_PERM_ADDRESS); null for devices that
    /// have none (veth, bridge).
    perm_mac: Option<String>,
    up: bool,
    /// Promiscuous now (the kernel's IFF_PROMISC: promiscuity > 0).
    promisc: bool,
    /// Number of holders: `ip link set promisc on`, packet sockets, a bridge
    /// for its ports, upper devices.
    promiscuity: u32,
    /// Absolute kernel counter; null before Linux 5.19.
    rx_otherhost_dropped: Option<u64>,
    bridge: Option<BridgeJson>,
    /// "promiscuity 2: bridge port, tcpdump (pid 4242)"; null when not
    /// promiscuous or /proc is unreadable.
    promisc_holders: Option<&'a str>,
    /// The kernel log's history for this name; null when /dev/kmsg is
    /// unreadable.
    promisc_log: Option<LogJson>,
    /// What owns the veth's peer namespace, as in `watch`; null when
    /// unknown.
    workload: Option<WorkloadJson<'a>>,
}

#[derive(Serialize)]
struct LogJson {
    entered: u32,
    left: u32,
    /// "entered" or "left".
    last: Option<&'static str>,
    last_ts: Option<String>,
    /// Whether the log covers everything since boot.
    complete: bool,
    /// Whether the log agrees with the current state; null when it cannot
    /// be told (log wrapped, or the name was shared by several devices).
    agrees: Option<bool>,
}

#[derive(Serialize)]
struct BridgeJson {
    local_fdb: Vec<String>,
    own_mac_in_fdb: bool,
    mac_pinned: Option<bool>,
}

fn iface(i: &IfaceStatus) -> IfaceJson<'_> {
    IfaceJson {
        name: &i.link.name,
        ifindex: i.link.ifindex,
        netns: i.netns.to_string(),
        role: i.role.as_str(),
        master: i.master.as_deref(),
        kind: i.link.kind.as_deref(),
        mac: i.link.mac.map(|m| m.to_string()),
        addr_assign_type: i.addr_assign_type.map(addr_assign_name),
        perm_mac: i.link.perm_mac.map(|m| m.to_string()),
        up: i.link.up,
        promisc: i.link.promisc,
        promiscuity: i.link.promiscuity,
        rx_otherhost_dropped: i.link.rx_otherhost_dropped,
        bridge: i.bridge.as_ref().map(|b| BridgeJson {
            local_fdb: b.local_fdb.iter().map(|m| m.to_string()).collect(),
            own_mac_in_fdb: b.own_mac_in_fdb,
            mac_pinned: b.mac_pinned,
        }),
        promisc_holders: i.promisc_holders.as_deref(),
        promisc_log: i
            .promisc_log
            .as_ref()
            .map(|h| log_json(h, i.link.promiscuity > 0)),
        workload: i.workload.as_ref().map(workload),
    }
}

pub fn json(status: &Status, ts: SystemTime) -> String {
    let doc = StatusJson {
        schema: super::SCHEMA,
        ts: humantime::format_rfc3339_millis(ts).to_string(),
        hypervisor: status.host.dmi.hypervisor(),
        interfaces: status.interfaces.iter().map(iface).collect(),
        findings: status.findings.iter().map(status_finding).collect(),
    };
    serde_json::to_string(&doc).expect("status serializes")
}

/// The table and findings, counters written as `numbers` says.
pub fn table(status: &Status, numbers: Numbers) -> String {
    const HEADERS: [&str; 10] = [
        "IFACE",
        "ROLE",
        "MASTER",
        "WORKLOAD",
        "KIND",
        "MAC",
        "MAC_FROM",
        "STATE",
        "PROMISC",
        "RX_OTHERHOST_DROPPED",
    ];
    let mut rows: Vec<[String; 10]> = vec![HEADERS.map(str::to_owned)];
    for i in &status.interfaces {
        let l = &i.link;
        rows.push([
            l.name.clone(),
            i.role.as_str().to_owned(),
            i.master.clone().unwrap_or_else(|| "-".into()),
            // Escaped when resolved (`workload::clean`).
            i.workload
                .as_ref()
                .map_or_else(|| "-".into(), |w| w.label()),
            l.kind.clone().unwrap_or_else(|| "-".into()),
            l.mac.map(|m| m.to_string()).unwrap_or_else(|| "-".into()),
            mac_from(i),
            if l.up { "up" } else { "down" }.to_owned(),
            if l.promisc {
                format!("yes ({})", l.promiscuity)
            } else {
                "no".to_owned()
            },
            l.rx_otherhost_dropped
                .map(|n| numbers.count(n))
                .unwrap_or_else(|| "n/a".into()),
        ]);
    }
    let mut out = super::columns(&rows, |col| col == 9);
    if let Some(h) = status.host.dmi.hypervisor() {
        let _ = writeln!(out, "hypervisor: {h} ({})", status.host.dmi.describe());
    }
    for i in &status.interfaces {
        if let Some(who) = &i.promisc_holders {
            let _ = writeln!(out, "{}: {who}", i.link.name);
        }
        if let Some(h) = i.promisc_log.as_ref().filter(|h| h.entered + h.left > 0) {
            let j = log_json(h, i.link.promiscuity > 0);
            let agreement = match j.agrees {
                Some(true) => "agrees with its current state",
                Some(false) => "DISAGREES with its current state",
                None => "cannot be compared (log incomplete or name reused)",
            };
            let _ = writeln!(
                out,
                "{}: kernel log since boot: entered promiscuous mode {} time(s), left {} time(s), \
                 last {} at {}; {agreement}",
                i.link.name,
                j.entered,
                j.left,
                j.last.unwrap_or("-"),
                j.last_ts.as_deref().unwrap_or("-"),
            );
        }
    }
    out.push_str(&status_findings(&status.findings));
    out
}

/// The MAC_FROM cell: how the interface got its MAC, and its permanent
/// MAC when the current one is another ("set, perm 00:50:56:aa:bb:cc").
fn mac_from(i: &IfaceStatus) -> String {
    let how = i.addr_assign_type.map_or("-", addr_assign_name);
    match i.link.perm_mac {
        Some(perm) if Some(perm) != i.link.mac => format!("{how}, perm {perm}"),
        _ => how.to_owned(),
    }
}

/// One finding of `status`, its fields in this order.
#[derive(Serialize)]
pub struct StatusFinding<'a> {
    severity: &'static str,
    id: &'static str,
    interface: &'a str,
    message: &'a str,
    /// One string: `status` gives one remedy.
    remedy: String,
}

pub fn status_finding(f: &Finding) -> StatusFinding<'_> {
    StatusFinding {
        severity: f.severity().as_str(),
        id: f.id.as_str(),
        interface: &f.interface,
        message: &f.message,
        remedy: f.remedy.join("; "),
    }
}

/// `status`'s findings: severity, message and the fix, or the line that
/// says there is none.
pub fn status_findings(findings: &[Finding]) -> String {
    let mut out = String::new();
    if findings.is_empty() {
        out.push_str("\nno findings: every bridge delivers its own MAC and has it pinned\n");
    } else {
        out.push('\n');
        for f in findings {
            let _ = writeln!(out, "{}: {}", f.severity().as_str(), f.message);
            let _ = writeln!(out, "  fix: {}", f.remedy.join("; "));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::finding::FindingId;

    /// How each interface got its MAC, its permanent MAC and the host's
    /// hypervisor: in JSON exactly, in the table compactly.
    #[test]
    fn identity_facts_are_shown() {
        use crate::{
            hypervisor::Dmi,
            mac::Mac,
            netlink::{Link, NetState},
            status::{HostFacts, PromiscFacts, gather},
            sysfs::{NET_ADDR_PERM, NET_ADDR_SET},
        };
        let perm = Mac([0x00, 0x50, 0x56, 0xaa, 0xbb, 0xcc]);
        let mut eth0 = Link::fake(2, "eth0", "", None, Mac([2, 0, 0, 0, 0, 0x77]));
        eth0.kind = None;
        eth0.perm_mac = Some(perm);
        let mut eth1 = Link::fake(3, "eth1", "", None, perm);
        eth1.kind = None;
        eth1.perm_mac = Some(perm);
        let state = NetState {
            links: vec![
                eth0,
                eth1,
                Link::fake(4, "v0", "veth", None, Mac([2, 0, 0, 0, 0, 1])),
            ],
            ..Default::default()
        };
        let interfaces = gather(
            7,
            &state,
            &[],
            &|l| match l.ifindex {
                2 => Some(NET_ADDR_SET),
                3 => Some(NET_ADDR_PERM),
                _ => None,
            },
            &PromiscFacts::default(),
        )
        .unwrap();
        let host = HostFacts {
            dmi: Dmi {
                vendor: Some("VMware, Inc.".into()),
                product: Some("VMware7,1".into()),
            },
            machine_id: None,
        };
        let status = Status {
            interfaces,
            findings: Vec::new(),
            host,
        };
        let doc: serde_json::Value =
            serde_json::from_str(&json(&status, SystemTime::UNIX_EPOCH)).unwrap();
        assert_eq!(doc["hypervisor"], "VMware");
        let facts: Vec<_> = doc["interfaces"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| (i["addr_assign_type"].clone(), i["perm_mac"].clone()))
            .collect();
        assert_eq!(
            facts,
            [
                (json!("set"), json!("00:50:56:aa:bb:cc")),
                (json!("permanent"), json!("00:50:56:aa:bb:cc")),
                (json!(null), json!(null)),
            ]
        );
        let text = table(&status, Numbers::Exact);
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines[0].contains("  MAC  ") && lines[0].contains("  MAC_FROM  "),
            "{text}"
        );
        let col = lines[0].find("MAC_FROM").unwrap();
        let cell = |row: &str| row[col..].split("  ").next().unwrap().to_owned();
        assert_eq!(cell(lines[1]), "set, perm 00:50:56:aa:bb:cc");
        assert_eq!(cell(lines[2]), "permanent");
        assert_eq!(cell(lines[3]), "-");
        assert_eq!(
            lines[4],
            "hypervisor: VMware (DMI: sys_vendor \"VMware, Inc.\", product_name \"VMware7,1\")"
        );
        // Without DMI, no hypervisor line and null in JSON.
        let status = Status {
            host: HostFacts::default(),
            ..status
        };
        assert!(!table(&status, Numbers::Exact).contains("hypervisor"));
        assert!(json(&status, SystemTime::UNIX_EPOCH).contains(r#""hypervisor":null"#));
    }

    /// `status` shows its findings in its own shapes: one line and its
    /// fix, and JSON with the remedy as one string, fields in this order.
    #[test]
    fn status_findings_keep_their_shape() {
        let mut f = Finding::new(FindingId::BridgeMacNotPinned, 7, "br0", "msg".into());
        f.remedy.push("pin it".into());
        assert_eq!(
            status_findings(std::slice::from_ref(&f)),
            "\nwarning: msg\n  fix: pin it\n"
        );
        assert_eq!(
            status_findings(&[]),
            "\nno findings: every bridge delivers its own MAC and has it pinned\n"
        );
        assert_eq!(
            serde_json::to_string(&status_finding(&f)).unwrap(),
            r#"{"severity":"warning","id":"bridge_mac_not_pinned","interface":"br0","message":"msg","remedy":"pin it"}"#
        );
    }
}
