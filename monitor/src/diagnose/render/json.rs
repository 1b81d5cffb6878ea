//! JSON for programs: `diagnose`'s document, and `status`'s findings.

use serde_json::{Map, Value, json};

use super::{drops, healthy_line};
use crate::{
    classes,
    diagnose::{Report, finding::Finding, timeline::Observed},
};

fn ts(t: std::time::SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

/// One finding of `diagnose`, ranked.
fn finding(rank: usize, f: &Finding) -> Value {
    json!({
        "rank": rank,
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
                "kernel_drops": crate::render::json::kernel_drops(i),
                "mac_mismatch_drops": drops(o),
                "workload": i.workload.as_ref().map(crate::render::json::workload),
            })
        })
        .collect();
    let findings: Vec<Value> = report
        .findings
        .iter()
        .enumerate()
        .map(|(rank, f)| finding(rank + 1, f))
        .collect();
    let sum = |field: fn(&Observed) -> u64| -> u64 { report.observed.iter().map(field).sum() };
    let doc = json!({
        "schema": crate::render::SCHEMA,
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
            "mac_mismatch_drops": report.drop_source.is_ok().then(|| sum(|o| drops(o).unwrap_or(0))),
            "drop_source": report.drop_source.as_ref().ok(),
            "text": if report.findings.is_empty() { Some(healthy_line(report)) } else { None },
        },
        "interfaces": interfaces,
        "findings": findings,
        "pcap": report.evidence,
    });
    serde_json::to_string(&doc).expect("diagnosis serializes")
}
