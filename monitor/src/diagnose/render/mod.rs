//! `diagnose` output, one renderer per format: [`text`] for people (what
//! was watched, the counts per interface, then the findings, most severe
//! first), [`json`] for programs (one document with the same findings
//! under stable ids). Both read [`Finding`](super::finding::Finding)s only;
//! `status`'s findings are rendered here too, in its own shapes.

pub mod json;
pub mod text;

pub use json::json;
pub use text::table;

use super::{Report, text::secs, timeline::Observed};
use crate::verdict::MAC_MISMATCH_REASONS;

/// The kernel's MAC-mismatch drops on `o`; None when they are unknown.
pub(super) fn drops(o: &Observed) -> Option<u64> {
    o.iface.drops.as_ref().map(|d| {
        MAC_MISMATCH_REASONS
            .iter()
            .map(|r| d.get(*r).copied().unwrap_or(0))
            .sum()
    })
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

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use serde_json::{Value, json};

    use super::*;
    use crate::{
        diagnose::finding::{Finding, FindingId},
        model::Interface,
        topology::Role,
    };

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
        let text = table(&r, crate::render::Numbers::Exact);
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
        let text = table(&r, crate::render::Numbers::Exact);
        assert!(text.contains(
            "1. ERROR bridge_mac_not_in_fdb on br0\n   msg\n   evidence:\n   - p1: 9\n   remedy:\n   \
             - bridge fdb add 02:00:00:00:0b:01 dev br0 self local\n"
        ), "{text}");
        let v: Value = serde_json::from_str(&json(&r)).unwrap();
        assert_eq!(v["healthy"], false);
        assert_eq!(v["findings"][0]["rank"], 1);
        assert_eq!(v["findings"][0]["facts"]["host_ip_wrong_mac"], 9);
        assert_eq!(v["summary"]["mac_mismatch_drops"], 9);
        assert_eq!(v["interfaces"][0]["frames"]["host_ip_wrong_mac"], 9);
    }
}
