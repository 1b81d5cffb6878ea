//! `diagnose` output: text for people (what was watched, the counts per
//! interface, then the findings, most severe first), or one JSON document
//! with the same findings under stable ids.

use std::fmt::Write as _;

use serde_json::{Map, Value, json};

use super::{
    Report,
    finding::Finding,
    text::{clock, secs},
    timeline::Observed,
};
use crate::{
    classes::{self, Class},
    topology::Role,
    verdict::MAC_MISMATCH_REASONS,
};

fn drops(o: &Observed) -> Option<u64> {
    o.iface.drops.as_ref().map(|d| {
        MAC_MISMATCH_REASONS
            .iter()
            .map(|r| d.get(*r).copied().unwrap_or(0))
            .sum()
    })
}

fn name(o: &Observed) -> String {
    let mut n = match &o.iface.netns_name {
        Some(ns) => format!("{ns}/{}", o.iface.name),
        None => o.iface.name.clone(),
    };
    if o.iface.gone {
        n.push_str(" (gone)");
    }
    n
}

/// The one line when nothing is wrong.
pub fn healthy_line(report: &Report) -> String {
    let kernel: u64 = report.observed.iter().filter_map(drops).sum();
    let mut line = format!(
        "no MAC-mismatch drops in {} s on {} interface{}",
        secs(report.seconds().round()),
        report.observed.len(),
        if report.observed.len() == 1 { "" } else { "s" }
    );
    if kernel > 0 {
        line = format!(
            "no finding in {} s on {} interface(s), but the kernel confirmed {kernel} MAC-mismatch \
             drop(s): `macdrop watch` shows where",
            secs(report.seconds().round()),
            report.observed.len()
        );
    }
    line
}

pub fn table(report: &Report) -> String {
    let mut out = String::new();
    let mut namespaces: Vec<String> = Vec::new();
    for o in &report.observed {
        let ns = match &o.iface.netns_name {
            Some(n) => format!("netns {} ({n})", o.iface.netns),
            None => format!("netns {}", o.iface.netns),
        };
        if !namespaces.contains(&ns) {
            namespaces.push(ns);
        }
    }
    let _ = writeln!(
        out,
        "macdrop diagnose: {} interface(s) in {} watched for {} s ({} to {})",
        report.observed.len(),
        namespaces.join(", "),
        secs((report.seconds() * 10.0).round() / 10.0),
        clock(report.start),
        clock(report.end)
    );
    if let Err(why) = &report.drop_source {
        let _ = writeln!(out, "(confirmed kernel drops unavailable: {why})");
    }
    out.push('\n');
    out.push_str(&counts_table(&report.observed));
    if let Some(evidence) = &report.evidence {
        let _ = writeln!(out, "{}", evidence.line());
    }
    out.push('\n');
    if report.findings.is_empty() {
        let _ = writeln!(out, "{}", healthy_line(report));
        return out;
    }
    let _ = writeln!(
        out,
        "{} finding(s), most severe first:",
        report.findings.len()
    );
    for (rank, f) in report.findings.iter().enumerate() {
        out.push('\n');
        finding_text(&mut out, rank + 1, f);
    }
    out
}

fn finding_text(out: &mut String, rank: usize, f: &Finding) {
    let where_ = match &f.netns_name {
        Some(ns) => format!("{ns}/{}", f.interface),
        None => f.interface.clone(),
    };
    let _ = writeln!(
        out,
        "{rank}. {} {} on {where_}",
        f.severity().as_str().to_uppercase(),
        f.id.as_str()
    );
    let _ = writeln!(out, "   {}", f.message);
    if !f.evidence.is_empty() {
        let _ = writeln!(out, "   evidence:");
        for e in &f.evidence {
            let _ = writeln!(out, "   - {e}");
        }
    }
    if !f.remedy.is_empty() {
        let _ = writeln!(out, "   remedy:");
        for r in &f.remedy {
            let _ = writeln!(out, "   - {r}");
        }
    }
}

/// The classes the counts table shows: what a MAC mismatch is about
/// (unicast, and the parts of foreign unicast that are for this host or a
/// previous MAC); the JSON has every class.
const COUNTED: [Class; 5] = [
    Class::Total,
    Class::Own,
    Class::ForeignUnicast,
    Class::HostIpWrongMac,
    Class::StaleMac,
];
const COLUMNS: usize = 3 + COUNTED.len() + 1;

fn counts_table(observed: &[Observed]) -> String {
    let row = |lead: [String; 3], class: &dyn Fn(Class) -> String, drops: String| {
        let cells: Vec<String> = lead
            .into_iter()
            .chain(COUNTED.map(class))
            .chain([drops])
            .collect();
        <[String; COLUMNS]>::try_from(cells).expect("COLUMNS cells")
    };
    let mut rows = vec![row(
        ["IFACE", "ROLE", "PROMISC"].map(str::to_owned),
        &|c| c.info().heading.to_owned(),
        "KERNEL_DROPS".to_owned(),
    )];
    for o in observed {
        let i = &o.iface;
        rows.push(row(
            [
                name(o),
                match (i.role, &i.master) {
                    (Role::Port, Some(m)) => format!("port:{m}"),
                    (role, _) => role.as_str().to_owned(),
                },
                if i.promisc {
                    format!("yes ({})", i.promiscuity)
                } else {
                    "no".to_owned()
                },
            ],
            &|c| c.count(&i.frames).to_string(),
            drops(o).map_or_else(|| "n/a".into(), |d| d.to_string()),
        ));
    }
    crate::render::columns(&rows, |col| col >= 3)
}

fn ts(t: std::time::SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

pub fn json(report: &Report) -> String {
    let interfaces: Vec<Value> = report
        .observed
        .iter()
        .map(|o| {
            let i = &o.iface;
            json!({
                "name": i.name,
                "netns": i.netns.to_string(),
                "netns_name": i.netns_name,
                "role": i.role.as_str(),
                "master": i.master,
                "mac": i.mac.map(|m| m.to_string()),
                "promisc": i.promisc,
                "promiscuity": i.promiscuity,
                "gone": i.gone,
                "frames": classes::all()
                    .map(|c| (c.name().to_owned(), Value::from(c.count(&i.frames))))
                    .collect::<Map<_, _>>(),
                "kernel_drops": drops(o),
            })
        })
        .collect();
    let findings: Vec<Value> = report
        .findings
        .iter()
        .enumerate()
        .map(|(rank, f)| {
            json!({
                "rank": rank + 1,
                "id": f.id.as_str(),
                "severity": f.severity().as_str(),
                "interface": f.interface,
                "netns": f.netns.to_string(),
                "netns_name": f.netns_name,
                "message": f.message,
                "evidence": f.evidence,
                "facts": f.facts,
                "remedy": f.remedy,
            })
        })
        .collect();
    let sum = |field: fn(&Observed) -> u64| -> u64 { report.observed.iter().map(field).sum() };
    let doc = json!({
        "ts": ts(report.end),
        "window": {
            "start": ts(report.start),
            "end": ts(report.end),
            "seconds": (report.seconds() * 1000.0).round() / 1000.0,
        },
        "healthy": report.findings.is_empty(),
        "summary": {
            "interfaces": report.observed.len(),
            "host_ip_wrong_mac": sum(|o| o.iface.frames.host_ip_wrong_mac),
            "stale_mac": sum(|o| o.iface.frames.stale_mac),
            "kernel_drops": report.drop_source.is_ok().then(|| sum(|o| drops(o).unwrap_or(0))),
            "drop_source": report.drop_source.as_ref().ok(),
            "text": if report.findings.is_empty() { Some(healthy_line(report)) } else { None },
        },
        "interfaces": interfaces,
        "findings": findings,
        "pcap": report.evidence,
    });
    serde_json::to_string(&doc).expect("diagnosis serializes")
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::*;
    use crate::{diagnose::finding::FindingId, model::Interface};

    fn report(findings: Vec<Finding>) -> Report {
        let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let mut p1 = Interface::new("p1".into(), 3, 7, Role::Port, Some("br0".into()));
        p1.frames.total = 9;
        p1.frames.foreign_unicast = 9;
        p1.frames.host_ip_wrong_mac = 9;
        p1.drops = Some([("NO_TX_TARGET".to_owned(), 9)].into());
        let o = Observed {
            iface: p1,
            first_wrong: None,
            last_wrong: None,
            first_stale: None,
            last_stale: None,
            while_promisc: Default::default(),
            promisc_seen: false,
        };
        Report {
            start,
            end: start + Duration::from_millis(2004),
            observed: vec![o],
            findings,
            drop_source: Ok("tp_btf"),
            evidence: None,
        }
    }

    #[test]
    fn healthy_text_and_json() {
        let mut r = report(vec![]);
        r.observed[0].iface.drops = Some(Default::default());
        let text = table(&r);
        assert!(
            text.ends_with("no MAC-mismatch drops in 2 s on 1 interface\n"),
            "{text}"
        );
        assert!(text.contains("p1     port:br0  no"), "{text}");
        let v: Value = serde_json::from_str(&json(&r)).unwrap();
        assert_eq!(v["healthy"], true);
        assert_eq!(v["findings"], json!([]));
        assert_eq!(v["window"]["seconds"], 2.004);
        assert_eq!(
            v["summary"]["text"],
            "no MAC-mismatch drops in 2 s on 1 interface"
        );
    }

    #[test]
    fn findings_are_numbered_with_evidence_and_remedy() {
        let f = Finding {
            id: FindingId::BridgeMacNotInFdb,
            interface: "br0".into(),
            netns: 7,
            netns_name: None,
            message: "msg".into(),
            evidence: vec!["p1: 9".into()],
            facts: [("host_ip_wrong_mac".to_owned(), json!(9))]
                .into_iter()
                .collect(),
            remedy: vec!["bridge fdb add 02:00:00:00:0b:01 dev br0 self local".into()],
            weight: 9,
        };
        let r = report(vec![f]);
        let text = table(&r);
        assert!(text.contains(
            "1. ERROR bridge_mac_not_in_fdb on br0\n   msg\n   evidence:\n   - p1: 9\n   remedy:\n   \
             - bridge fdb add 02:00:00:00:0b:01 dev br0 self local\n"
        ), "{text}");
        let v: Value = serde_json::from_str(&json(&r)).unwrap();
        assert_eq!(v["healthy"], false);
        assert_eq!(v["findings"][0]["rank"], 1);
        assert_eq!(v["findings"][0]["facts"]["host_ip_wrong_mac"], 9);
        assert_eq!(v["summary"]["kernel_drops"], 9);
        assert_eq!(v["interfaces"][0]["frames"]["host_ip_wrong_mac"], 9);
    }
}
