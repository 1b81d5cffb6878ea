//! `macdrop diagnose`: watch for a short window, then say what is wrong.
//!
//! The window is an ordinary monitor run (`--duration`, default 10 s,
//! reports every tenth of it); afterwards `status` is gathered for every
//! namespace that was watched, and [`rules::analyse`] turns both into
//! findings ranked by severity, each with its evidence and a remedy. The
//! command (`cmd::diagnose`) decides the exit code.

/// The findings model lives at the crate's top (`status` shares it);
/// re-exported here, where the rules and renderers name it.
pub use crate::finding;
pub mod input;
pub mod render;
pub mod rules;
mod scope;
pub mod text;
pub mod timeline;

use std::time::{Duration, SystemTime};

use crate::{
    cli::SelectionArgs,
    evidence::EvidencePlan,
    monitor::{Monitor, Plan, Step},
    netlink::Netlink,
    netns::Namespace,
    promisc::{self, History},
    status::{self, PromiscFacts},
};
use input::{Flow, Input, NsFacts};
use rules::analyse;
use text::secs;
use timeline::{Observed, Timeline};

/// Everything a diagnosis printed.
pub struct Report {
    pub start: SystemTime,
    pub end: SystemTime,
    pub observed: Vec<Observed>,
    pub findings: Vec<finding::Finding>,
    pub drop_source: Result<&'static str, String>,
    /// With `--pcap`: what the evidence file holds.
    pub evidence: Option<crate::evidence::Summary>,
}

impl Report {
    pub fn seconds(&self) -> f64 {
        self.end
            .duration_since(self.start)
            .unwrap_or_default()
            .as_secs_f64()
    }
}

/// Watches for `duration` (less if a signal ends it), then analyses.
pub async fn diagnose(
    select: &SelectionArgs,
    duration: Duration,
    evidence: Option<EvidencePlan>,
) -> anyhow::Result<Report> {
    let interval = Duration::from_secs_f64((duration.as_secs_f64() / 10.0).clamp(0.1, 1.0));
    // The monitor drops CAP_SYSLOG once attached: read the kernel log's
    // promiscuous-mode history first (the window's own transitions are
    // events).
    let history = History::read().ok();
    let plan = Plan {
        evidence,
        ..select.plan(interval, Some(duration))
    };
    let mut monitor = Monitor::start(plan).await?;
    let start = SystemTime::now();
    crate::output::note(format_args!(
        "diagnosing for {} s: reproduce the failing traffic now",
        secs(duration.as_secs_f64())
    ));
    let mut timeline = Timeline::default();
    let mut evidence = None;
    while let Some(step) = monitor.next().await? {
        match step {
            Step::Report(world) | Step::Final(world) => {
                timeline.add(&world);
                evidence = world.evidence;
            }
        }
    }
    drop(monitor);
    let end = SystemTime::now();
    let observed = timeline.observed();
    let namespaces = namespace_facts(select, &observed, history.as_ref()).await?;
    let seconds = end.duration_since(start).unwrap_or_default().as_secs_f64();
    let flows = host_ip_flows(&observed);
    let findings = analyse(&Input {
        seconds,
        observed: &observed,
        events: timeline.events(),
        namespaces: &namespaces,
        flows: flows.as_deref(),
    });
    Ok(Report {
        start,
        end,
        observed,
        findings,
        drop_source: timeline
            .drop_source
            .clone()
            .unwrap_or_else(|| Err("no report".into())),
        evidence,
    })
}

/// The observed top offenders the wrong-MAC rules work from: the flows of
/// frames for this host's IP, except those to a stale MAC (the stale-MAC
/// finding has them). None when flows were not recorded (`--top-flows 0`).
fn host_ip_flows(observed: &[Observed]) -> Option<Vec<Flow>> {
    use monitor_common::{MISMATCH_HOST_IP, MISMATCH_STALE};
    let mut out = Vec::new();
    let mut recorded = false;
    for o in observed {
        let Some(flows) = &o.iface.flows else {
            continue;
        };
        recorded = true;
        out.extend(
            flows
                .iter()
                .filter(|f| f.mismatch & MISMATCH_HOST_IP != 0 && f.mismatch & MISMATCH_STALE == 0)
                .map(|f| Flow {
                    netns: o.iface.netns,
                    interface: o.iface.name.clone(),
                    src_mac: f.src_mac,
                    dst_mac: f.dst_mac,
                    vlan: f.vlan,
                    dst_ip: f.dst_ip,
                    frames: f.frames,
                }),
        );
    }
    recorded.then_some(out)
}

/// `status` of each watched namespace, limited to the watched interfaces
/// that still exist, and its addresses per interface.
async fn namespace_facts(
    select: &SelectionArgs,
    observed: &[Observed],
    history: Option<&History>,
) -> anyhow::Result<Vec<NsFacts>> {
    let namespaces = if select.all_netns {
        Namespace::all()?
    } else if select.netns.is_empty() {
        vec![Namespace::current()?]
    } else {
        select
            .netns
            .iter()
            .map(|spec| Namespace::open(spec).map_err(anyhow::Error::from))
            .collect::<anyhow::Result<_>>()?
    };
    let host = status::HostFacts::read();
    let mut out: Vec<NsFacts> = Vec::new();
    for ns in namespaces {
        if out.iter().any(|o| o.inode == ns.inode)
            || !observed.iter().any(|o| o.iface.netns == ns.inode)
        {
            continue;
        }
        let (netlink, promisc, netfilter) = {
            let _inside = ns.enter()?;
            let promisc = PromiscFacts {
                sockets: promisc::Snapshot::read().ok(),
                history: history.cloned(),
            };
            // /proc/sys/net and nft answer for the thread's namespace;
            // read only when a rule will look (it runs nft).
            let netfilter = rules::br_netfilter_forward_drop::needed(observed, ns.inode)
                .then(crate::netfilter::Facts::read);
            (Netlink::connect()?, promisc, netfilter)
        };
        let state = netlink.read_state().await?;
        let addrs = state.if_addrs.clone();
        // The watched interfaces, and the bridges of watched ports (whose
        // FDB decides what the ports deliver).
        let mut names: Vec<String> = Vec::new();
        for o in observed
            .iter()
            .filter(|o| o.iface.netns == ns.inode && !o.iface.gone)
        {
            for name in std::iter::once(&o.iface.name).chain(o.iface.master.as_ref()) {
                if !names.contains(name) && state.link_by_name(name).is_some() {
                    names.push(name.clone());
                }
            }
        }
        let status = rules::status(
            if names.is_empty() {
                Vec::new()
            } else {
                status::gather(
                    ns.inode,
                    &state,
                    &names,
                    &status::addr_assign_type_from_sysfs,
                    &promisc,
                )?
            },
            host.clone(),
        );
        out.push(NsFacts {
            inode: ns.inode,
            name: ns.name.clone(),
            status,
            addrs,
            netfilter,
        });
    }
    Ok(out)
}
