//! Text for people: `diagnose`'s report, and `status`'s findings.

use std::fmt::Write as _;

use super::{drops, healthy_line};
use crate::{
    classes::Class,
    diagnose::{
        Report,
        finding::Finding,
        text::{clock, secs},
        timeline::Observed,
    },
    render::Numbers,
    topology::Role,
};

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

/// The report for people, counts written as `numbers` says.
pub fn table(report: &Report, numbers: Numbers) -> String {
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
    out.push_str(&counts_table(&report.observed, numbers));
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
        finding(&mut out, rank + 1, f);
    }
    out
}

fn finding(out: &mut String, rank: usize, f: &Finding) {
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

fn counts_table(observed: &[Observed], numbers: Numbers) -> String {
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
            &|c| numbers.count(c.count(&i.frames)),
            drops(o).map_or_else(|| "n/a".into(), |d| numbers.count(d)),
        ));
    }
    crate::render::columns(&rows, |col| col >= 3)
}
