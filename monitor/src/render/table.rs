//! An aligned table per report, for people: one row of cumulative counts
//! per interface and, under it, the per-second rates of the last interval;
//! then one verdict line per interface and the events of the interval.

use std::fmt::Write as _;

use super::Numbers;
use crate::{
    classes::{self, Class},
    model::{Flow, Interface, World},
    verdict::{MAC_MISMATCH_REASONS, verdict},
};

/// The columns before the classes' (text), and after them (numbers).
const LEADING: [&str; 7] = [
    "IFACE", "ROLE", "MASTER", "WORKLOAD", "MAC", "PROMISC", "HOOK",
];
const TRAILING: [&str; 2] = ["KERNEL_DROPS", "OTHERHOST_CTR"];
const COLUMNS: usize = LEADING.len() + classes::COUNT + TRAILING.len();
/// Columns from this one on are numbers, right-aligned.
const FIRST_NUMERIC: usize = LEADING.len();

/// One row: the leading cells, one per class in table order, the trailing
/// cells.
fn row(
    leading: [String; LEADING.len()],
    class: impl Fn(Class) -> String,
    trailing: [String; TRAILING.len()],
) -> [String; COLUMNS] {
    let cells: Vec<String> = leading
        .into_iter()
        .chain(classes::all().map(class))
        .chain(trailing)
        .collect();
    cells.try_into().expect("COLUMNS cells")
}

fn headers() -> [String; COLUMNS] {
    row(
        LEADING.map(str::to_owned),
        |c| c.info().heading.to_owned(),
        TRAILING.map(str::to_owned),
    )
}

fn count_cells(i: &Interface, numbers: Numbers) -> [String; COLUMNS] {
    let f = &i.frames;
    // Interfaces of other namespaces carry the namespace's name.
    let mut name = match &i.netns_name {
        Some(ns) => format!("{ns}/{}", i.name),
        None => i.name.clone(),
    };
    if i.gone {
        name.push_str(" (gone)");
    }
    let promisc = if i.promisc {
        format!("yes ({})", i.promiscuity)
    } else {
        "no".to_owned()
    };
    // Confirmed drops for a MAC mismatch, all reasons together.
    let drops = i
        .drops
        .as_ref()
        .map(|d| {
            MAC_MISMATCH_REASONS
                .iter()
                .map(|r| d.get(*r).copied().unwrap_or(0))
                .sum::<u64>()
        })
        .map(|n| numbers.count(n))
        .unwrap_or_else(|| "n/a".into());
    let otherhost = i
        .kernel_rx_otherhost_dropped
        .map(|n| numbers.count(n))
        .unwrap_or_else(|| "n/a".into());
    row(
        [
            name,
            i.role.as_str().to_owned(),
            i.master.clone().unwrap_or_else(|| "-".into()),
            // Escaped when resolved (`workload::clean`).
            i.workload
                .as_ref()
                .map_or_else(|| "-".into(), |w| w.label()),
            i.mac.map(|m| m.to_string()).unwrap_or_else(|| "-".into()),
            promisc,
            i.hook.map(|h| h.as_str()).unwrap_or("-").to_owned(),
        ],
        |c| numbers.count(c.count(f)),
        [drops, otherhost],
    )
}

/// The rates under the counts: the classes' cells only.
fn rate_cells(i: &Interface, numbers: Numbers) -> [String; COLUMNS] {
    row(
        Default::default(),
        |c| numbers.rate(i.rates.get(c)),
        Default::default(),
    )
}

/// The top offenders of every interface with mismatched frames: one line
/// per flow, most frames first.
fn offenders(out: &mut String, world: &World, name_width: usize, numbers: Numbers) {
    let with_flows: Vec<(&Interface, &Vec<Flow>)> = world
        .interfaces
        .iter()
        .filter_map(|i| i.flows.as_ref().filter(|f| !f.is_empty()).map(|f| (i, f)))
        .collect();
    if with_flows.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "  top offenders (mismatched frames since attach, by flow: source > destination MAC, VLAN, destination IP):"
    );
    let frames_width = with_flows
        .iter()
        .flat_map(|(_, fs)| fs.iter().map(|f| frames_shown(f, numbers).chars().count()))
        .max()
        .unwrap_or(1);
    for (i, flows) in with_flows {
        for f in flows {
            let _ = writeln!(
                out,
                "  {:<name_width$}  {:>frames_width$}  {}  [{}]",
                i.name,
                frames_shown(f, numbers),
                f.describe(),
                f.reasons().join(", ")
            );
        }
    }
}
/// A flow's frames as the table shows them: a count the kernel kept
/// exactly as is, an estimate (recorded under flow sampling) as "~N", a
/// lower bound (the flow took an evicted flow's slot) as "≥N".
fn frames_shown(f: &crate::kernel::flows::Flow, numbers: Numbers) -> String {
    format!("{}{}", f.count_mark(), numbers.count(f.frames))
}

/// The report as text, its counts and rates written as `numbers` says.
pub fn render(world: &World, numbers: Numbers) -> String {
    let mut rows: Vec<[String; COLUMNS]> = vec![headers()];
    for i in &world.interfaces {
        rows.push(count_cells(i, numbers));
        rows.push(rate_cells(i, numbers));
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{}  {} interface(s); counts since attach, rates per second",
        humantime::format_rfc3339_seconds(world.ts),
        world.interfaces.len()
    );
    out.push_str(&super::columns(&rows, |col| col >= FIRST_NUMERIC));
    let name_width = world
        .interfaces
        .iter()
        .map(|i| i.name.len())
        .max()
        .unwrap_or(0);
    for i in &world.interfaces {
        let _ = writeln!(out, "  {:<name_width$}  {}", i.name, verdict(i));
    }
    offenders(&mut out, world, name_width, numbers);
    if let Some(stats) = &world.self_stats {
        let parts: Vec<String> = stats
            .iter()
            .map(|(name, s)| format!("{name} {} runs, {:.1} ns/run", s.runs, s.avg_ns()))
            .collect();
        let _ = writeln!(out, "  self: {}", parts.join("; "));
    }
    if let Err(why) = &world.drop_source {
        let _ = writeln!(out, "  (confirmed kernel drops unavailable: {why})");
    }
    if let Some(evidence) = &world.evidence {
        let _ = writeln!(out, "  {}", evidence.line());
    }
    for e in &world.events {
        let _ = writeln!(
            out,
            "  event {}  {}",
            humantime::format_rfc3339_millis(e.ts),
            e.describe()
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use monitor_common::FrameCounters;

    use super::*;
    use crate::{
        topology::Role,
        tracker::{Event, EventKind},
    };

    #[test]
    fn columns_line_up_and_verdicts_and_events_follow() {
        let mut p1 = Interface::new("p1".into(), 3, 1, Role::Port, Some("br0".into()));
        p1.frames = FrameCounters {
            total: 12345,
            foreign_unicast: 12345,
            host_ip_wrong_mac: 7,
            ..Default::default()
        };
        let br0 = Interface::new("br0".into(), 2, 1, Role::Bridge, None);
        let text = render(
            &World {
                ts: SystemTime::now(),
                interfaces: vec![p1, br0],
                events: vec![Event {
                    ts: SystemTime::now(),
                    ifname: "br0".into(),
                    ifindex: 2,
                    kind: EventKind::PromiscEntered { from: 0, to: 1 },
                }],
                drop_source: Err("no BTF".into()),
                self_stats: None,
                evidence: None,
            },
            Numbers::Exact,
        );
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 10, "{text}");
        assert!(lines[1].starts_with("IFACE"));
        assert!(lines[2].starts_with("p1 ") && lines[2].contains("br0"));
        // Right-aligned numeric columns end at the same offset.
        let end_of = |line: &str, pat: &str| line.find(pat).unwrap() + pat.len();
        assert_eq!(
            end_of(lines[1], "HOST_IP_WRONG_MAC"),
            end_of(lines[2], " 7")
        );
        assert!(lines[3].trim_start().starts_with("0.0/s"));
        assert!(
            lines[6].trim_start().starts_with("p1   ALERT: 7 frame(s)"),
            "{}",
            lines[6]
        );
        assert!(lines[7].contains("ok: no MAC-mismatch frames"));
        assert!(lines[8].contains("unavailable: no BTF"));
        assert!(lines[9].contains("br0 entered promiscuous mode"));
    }

    /// `--human` changes the counts, the kernel's counters and the rates,
    /// and nothing else.
    #[test]
    fn human_numbers_in_counts_and_rates() {
        let mut p1 = Interface::new("p1".into(), 3, 1, Role::Port, Some("br0".into()));
        p1.frames.total = 12_345;
        p1.frames.foreign_unicast = 999;
        p1.kernel_rx_otherhost_dropped = Some(3_400_000);
        p1.drops = Some([("NO_TX_TARGET".to_owned(), 1000)].into());
        p1.rates.set(Class::Total, 2_500.0);
        let world = World {
            ts: SystemTime::UNIX_EPOCH,
            interfaces: vec![p1],
            events: Vec::new(),
            drop_source: Ok("tp_btf"),
            self_stats: None,
            evidence: None,
        };
        let cells = |numbers| {
            let text = render(&world, numbers);
            let lines: Vec<String> = text.lines().map(str::to_owned).collect();
            let words = |l: &str| l.split_whitespace().map(str::to_owned).collect::<Vec<_>>();
            (words(&lines[2]), words(&lines[3]))
        };
        let (exact, exact_rates) = cells(Numbers::Exact);
        let (human, human_rates) = cells(Numbers::Human);
        assert!(exact.contains(&"12345".to_owned()), "{exact:?}");
        assert!(human.contains(&"12.3K".to_owned()), "{human:?}");
        assert!(exact.contains(&"999".to_owned()) && human.contains(&"999".to_owned()));
        assert_eq!(exact[exact.len() - 2..], ["1000", "3400000"]);
        assert_eq!(human[human.len() - 2..], ["1.0K", "3.4M"]);
        assert!(
            exact_rates.contains(&"2500.0/s".to_owned()),
            "{exact_rates:?}"
        );
        assert!(
            human_rates.contains(&"2.5K/s".to_owned()),
            "{human_rates:?}"
        );
        // The text columns are the same.
        assert_eq!(exact[..7], human[..7]);
    }

    #[test]
    fn the_workload_column_names_the_peers_owner() {
        use crate::workload::{Kind, Workload};
        let owner = |name: Option<&str>| Workload {
            kind: Kind::Process,
            id: None,
            name: name.map(Into::into),
            namespace: None,
            pod: None,
            pid: Some(42),
            compose_project: None,
            compose_service: None,
        };
        let mut p1 = Interface::new("p1".into(), 3, 1, Role::Port, Some("br0".into()));
        p1.workload = Some(owner(Some("web1")));
        let mut p2 = Interface::new("p2".into(), 4, 1, Role::Port, Some("br0".into()));
        p2.workload = Some(owner(None));
        let br0 = Interface::new("br0".into(), 2, 1, Role::Bridge, None);
        let text = render(
            &World {
                ts: SystemTime::now(),
                interfaces: vec![p1, p2, br0],
                events: vec![],
                drop_source: Ok("tp_btf"),
                self_stats: None,
                evidence: None,
            },
            Numbers::Exact,
        );
        let lines: Vec<&str> = text.lines().collect();
        let column = lines[1].find("WORKLOAD").unwrap();
        assert!(lines[2][column..].starts_with("web1 "), "{text}");
        assert!(lines[4][column..].starts_with("process:42 "), "{text}");
        assert!(lines[6][column..].starts_with("- "), "{text}");
    }

    #[test]
    fn top_offenders_follow_the_verdicts() {
        let mut p1 = Interface::new("p1".into(), 3, 1, Role::Port, Some("br0".into()));
        p1.frames.host_ip_wrong_mac = 12;
        let flow = |dst: [u8; 6], vlan, frames| Flow {
            src_mac: crate::mac::Mac([2, 0, 0, 0, 0x0c, 1]),
            dst_mac: crate::mac::Mac(dst),
            vlan,
            dst_ip: Some("192.0.2.1".parse().unwrap()),
            frames,
            bytes: frames * 60,
            first_seen: SystemTime::UNIX_EPOCH,
            last_seen: SystemTime::UNIX_EPOCH,
            mismatch: monitor_common::MISMATCH_HOST_IP,
            exact: true,
            sampled: false,
        };
        p1.flows = Some(vec![
            flow([0, 0x50, 0x56, 0xaa, 0xbb, 0xcc], Some(10), 10),
            flow([2, 0, 0, 0, 0x0b, 1], None, 2),
            Flow {
                sampled: true,
                exact: false,
                ..flow([2, 0, 0, 0, 0x0b, 2], None, 64)
            },
            Flow {
                exact: false,
                ..flow([2, 0, 0, 0, 0x0b, 3], None, 1)
            },
        ]);
        let mut br0 = Interface::new("br0".into(), 2, 1, Role::Bridge, None);
        br0.flows = Some(Vec::new());
        let text = render(
            &World {
                ts: SystemTime::now(),
                interfaces: vec![p1, br0],
                events: Vec::new(),
                drop_source: Ok("tp_btf"),
                self_stats: None,
                evidence: None,
            },
            Numbers::Exact,
        );
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[8].starts_with("  top offenders"), "{text}");
        assert_eq!(
            lines[9],
            "  p1    10  02:00:00:00:0c:01 > 00:50:56:aa:bb:cc (VMware) vlan 10 192.0.2.1  \
             [host_ip_wrong_mac]"
        );
        assert_eq!(
            lines[10],
            "  p1     2  02:00:00:00:0c:01 > 02:00:00:00:0b:01 192.0.2.1  [host_ip_wrong_mac]"
        );
        assert_eq!(
            lines[11],
            "  p1   ~64  02:00:00:00:0c:01 > 02:00:00:00:0b:02 192.0.2.1  [host_ip_wrong_mac]",
            "an estimate says so"
        );
        assert_eq!(
            lines[12],
            "  p1    ≥1  02:00:00:00:0c:01 > 02:00:00:00:0b:03 192.0.2.1  [host_ip_wrong_mac]",
            "a lower bound says so"
        );
        assert_eq!(lines.len(), 13, "no section line for br0 without flows");
    }
}
