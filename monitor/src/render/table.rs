//! An aligned table per report, for people: one row of cumulative counts
//! per interface and, under it, the per-second rates of the last interval.

use std::fmt::Write as _;

use crate::model::{Interface, World};

const HEADERS: [&str; 13] = [
    "IFACE",
    "ROLE",
    "MASTER",
    "MAC",
    "PROMISC",
    "HOOK",
    "TOTAL",
    "OWN",
    "BCAST",
    "MCAST",
    "FOREIGN",
    "HOST_IP_WRONG_MAC",
    "RUNT",
];
/// Columns from this one on are numbers, right-aligned.
const FIRST_NUMERIC: usize = 6;

fn count_cells(i: &Interface) -> [String; 13] {
    let f = &i.frames;
    let name = if i.gone {
        format!("{} (gone)", i.name)
    } else {
        i.name.clone()
    };
    [
        name,
        i.role.as_str().to_owned(),
        i.master.clone().unwrap_or_else(|| "-".into()),
        i.mac.map(|m| m.to_string()).unwrap_or_else(|| "-".into()),
        if i.promisc { "yes" } else { "no" }.to_owned(),
        i.hook.map(|h| h.as_str()).unwrap_or("-").to_owned(),
        f.total.to_string(),
        f.own.to_string(),
        f.broadcast.to_string(),
        f.multicast.to_string(),
        f.foreign_unicast.to_string(),
        f.host_ip_wrong_mac.to_string(),
        f.runt.to_string(),
    ]
}

fn rate_cells(i: &Interface) -> [String; 13] {
    let r = &i.rates;
    let s = |x: f64| format!("{x:.1}/s");
    [
        String::new(),
        String::new(),
        String::new(),
        String::new(),
        String::new(),
        String::new(),
        s(r.total),
        s(r.own),
        s(r.broadcast),
        s(r.multicast),
        s(r.foreign_unicast),
        s(r.host_ip_wrong_mac),
        s(r.runt),
    ]
}

pub fn render(world: &World) -> String {
    let mut rows: Vec<[String; 13]> = vec![HEADERS.map(str::to_owned)];
    for i in &world.interfaces {
        rows.push(count_cells(i));
        rows.push(rate_cells(i));
    }
    let mut widths = [0usize; 13];
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{}  {} interface(s); counts since attach, rates per second",
        humantime::format_rfc3339_seconds(world.ts),
        world.interfaces.len()
    );
    for row in &rows {
        let mut line = String::new();
        for (col, (cell, w)) in row.iter().zip(widths).enumerate() {
            if col > 0 {
                line.push_str("  ");
            }
            if col >= FIRST_NUMERIC {
                let _ = write!(line, "{cell:>w$}");
            } else {
                let _ = write!(line, "{cell:<w$}");
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use monitor_common::FrameCounters;

    use super::*;
    use crate::topology::Role;

    #[test]
    fn columns_line_up() {
        let mut p1 = Interface::new("p1".into(), 3, 1, Role::Port, Some("br0".into()));
        p1.frames = FrameCounters {
            total: 12345,
            foreign_unicast: 12345,
            host_ip_wrong_mac: 7,
            ..Default::default()
        };
        let br0 = Interface::new("br0".into(), 2, 1, Role::Bridge, None);
        let text = render(&World {
            ts: SystemTime::now(),
            interfaces: vec![p1, br0],
        });
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 6, "{text}");
        assert!(lines[1].starts_with("IFACE"));
        assert!(lines[2].starts_with("p1 ") && lines[2].contains("br0"));
        // Right-aligned numeric columns end at the same offset.
        let end_of = |line: &str, pat: &str| line.find(pat).unwrap() + pat.len();
        assert_eq!(
            end_of(lines[1], "HOST_IP_WRONG_MAC"),
            end_of(lines[2], " 7")
        );
        assert!(lines[3].trim_start().starts_with("0.0/s"));
    }
}
