//! Prometheus metrics: the monitor's latest report (`World`), rendered at
//! scrape time into the Prometheus text format (0.0.4) by prometheus-client.
//!
//! The exporter is decoupled from the monitor: `watch` publishes each report
//! into a `tokio::sync::watch` channel ([`Publisher`]) and the HTTP server
//! ([`http`]) encodes whatever is latest when it is scraped. Nothing here
//! touches the kernel or the monitor's state.
//!
//! Series are identified by `{netns, interface, role}` (plus `class` or
//! `reason`): bounded labels only, never a MAC or an address on a counter.
//! Counters are monotonic per series: each interface's counts are
//! cumulative since attach, a gone interface keeps its final counts in the
//! report for the retention window (`crate::retention`), and interfaces
//! that share a label set (a port that left and came back, a device
//! re-created under the same name) are summed, with the counts of those
//! that expired meanwhile (`Interface::earlier`), so a series never goes
//! down while it exists. It ends when its last interface expires.

pub mod http;
pub mod web_config;

use std::{collections::BTreeMap, fmt, time::Instant};

use prometheus_client::{
    collector::Collector,
    encoding::DescriptorEncoder,
    metrics::{counter::ConstCounter, gauge::ConstGauge},
    registry::Registry,
};
use tokio::sync::watch;

use crate::kernel::attach::Hook;
use crate::workload::Workload;
use crate::{
    classes::{self, Class},
    model::{Interface, World},
    verdict::MAC_MISMATCH_REASONS,
};

/// `Content-Type` of what [`encode`] produces.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// The latest report and when it was published.
#[derive(Clone, Debug)]
pub struct Published {
    pub world: World,
    pub at: Instant,
}

/// What the HTTP side reads: `None` until the first report.
pub type Latest = watch::Receiver<Option<Published>>;

/// The monitor side of the channel.
#[derive(Debug)]
pub struct Publisher(watch::Sender<Option<Published>>);

impl Publisher {
    /// Replaces the latest report (readers never block the monitor).
    pub fn publish(&self, world: World) {
        self.0.send_replace(Some(Published {
            world,
            at: Instant::now(),
        }));
    }
}

/// A channel with no report yet.
pub fn channel() -> (Publisher, Latest) {
    let (tx, rx) = watch::channel(None);
    (Publisher(tx), rx)
}

/// A registry whose only collector renders the latest report.
pub fn registry(latest: Latest) -> Registry {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(WorldCollector { latest }));
    registry
}

/// The registry in the Prometheus text format.
pub fn encode(registry: &Registry) -> Result<String, fmt::Error> {
    let mut out = String::new();
    prometheus_client::encoding::prometheus_text::encode(&mut out, registry)?;
    Ok(out)
}

#[derive(Debug)]
struct WorldCollector {
    latest: Latest,
}

impl Collector for WorldCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        // Encoding is synchronous and short: the borrow is released before
        // the monitor can publish again.
        let latest = self.latest.borrow();
        encode_world(latest.as_ref().map(|p| &p.world), &mut encoder)
    }
}

/// Everything known under one label set `{netns, interface, role}`: every
/// instance the report holds (normally one; more when an interface left and
/// came back under the same name), summed.
struct Series<'a> {
    netns: String,
    name: &'a str,
    role: &'static str,
    /// Every instance, oldest first (report order), each after the
    /// expired instances it carries.
    instances: Vec<&'a Interface>,
}

impl<'a> Series<'a> {
    /// The instance whose identity and state the gauges show: the newest
    /// present one, else the newest gone one.
    fn current(&self) -> &'a Interface {
        self.instances
            .iter()
            .rev()
            .find(|i| !i.gone)
            .or(self.instances.last())
            .copied()
            .expect("a series has at least one instance")
    }

    fn gone(&self) -> bool {
        self.instances.iter().all(|i| i.gone)
    }

    fn labels(&self) -> Vec<(&'static str, &str)> {
        vec![
            ("netns", self.netns.as_str()),
            ("interface", self.name),
            ("role", self.role),
        ]
    }

    fn frames(&self, class: Class) -> u64 {
        self.instances.iter().map(|i| class.count(&i.frames)).sum()
    }

    /// Confirmed drops by reason (the three MAC-mismatch reasons always
    /// present); None when no instance has the drop layer.
    fn drops(&self) -> Option<BTreeMap<&'a str, u64>> {
        let mut any = false;
        let mut out: BTreeMap<&str, u64> = MAC_MISMATCH_REASONS.iter().map(|r| (*r, 0)).collect();
        for d in self.instances.iter().filter_map(|i| i.drops.as_ref()) {
            any = true;
            for (reason, n) in d {
                *out.entry(reason.as_str()).or_default() += n;
            }
        }
        any.then_some(out)
    }

    /// The kernel's `pkt_type` counts, when some instance ran on a tc hook
    /// (XDP runs before there is an skb).
    fn pkt_types(&self) -> Option<[(&'static str, u64); 5]> {
        let tc = |i: &&Interface| matches!(i.hook, Some(Hook::Tcx | Hook::TcClsact));
        if !self.instances.iter().any(tc) {
            return None;
        }
        let mut out = [
            ("host", 0),
            ("broadcast", 0),
            ("multicast", 0),
            ("otherhost", 0),
            ("other", 0),
        ];
        for i in &self.instances {
            let f = &i.frames;
            for (slot, n) in out.iter_mut().zip([
                f.pkt_host,
                f.pkt_broadcast,
                f.pkt_multicast,
                f.pkt_otherhost,
                f.pkt_other,
            ]) {
                slot.1 += n;
            }
        }
        Some(out)
    }

    /// Frames that left the uplink per source-MAC class, when some
    /// instance was counted as an uplink.
    fn egress(&self) -> Option<[(&'static str, u64); 3]> {
        let mut out = [("own", 0), ("child", 0), ("other", 0)];
        let mut any = false;
        for e in self.instances.iter().filter_map(|i| i.egress) {
            any = true;
            for (slot, n) in out.iter_mut().zip([e.own, e.child, e.other]) {
                slot.1 += n;
            }
        }
        any.then_some(out)
    }

    fn otherhost(&self) -> Option<u64> {
        self.instances
            .iter()
            .filter_map(|i| i.kernel_rx_otherhost_dropped)
            .reduce(|a, b| a + b)
    }
}

/// Groups the report's interfaces by label set, in a stable order.
fn series(world: &World) -> Vec<Series<'_>> {
    let mut by_key: BTreeMap<(u32, &str, &str), Series<'_>> = BTreeMap::new();
    for i in &world.interfaces {
        let role = i.role.as_str();
        let series = by_key
            .entry((i.netns, i.name.as_str(), role))
            .or_insert_with(|| Series {
                netns: i.netns.to_string(),
                name: &i.name,
                role,
                instances: Vec::new(),
            });
        series.instances.extend(i.earlier.as_deref());
        series.instances.push(i);
    }
    by_key.into_values().collect()
}

/// One metric family: its descriptor, then one sample per label set.
fn family<L, M>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    samples: impl IntoIterator<Item = (L, M)>,
) -> Result<(), fmt::Error>
where
    L: prometheus_client::encoding::EncodeLabelSet,
    M: prometheus_client::encoding::EncodeMetric,
{
    let mut samples = samples.into_iter().peekable();
    let Some((_, first)) = samples.peek() else {
        // No descriptor without samples: promtool and Prometheus accept
        // either, but an empty family says nothing.
        return Ok(());
    };
    let kind = first.metric_type();
    let mut family = encoder.encode_descriptor(name, help, None, kind)?;
    for (labels, metric) in samples {
        metric.encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

fn counter(v: u64) -> ConstCounter<u64> {
    ConstCounter::new(v)
}

fn gauge(v: i64) -> ConstGauge<i64> {
    ConstGauge::new(v)
}

/// The hypervisor, read from DMI once: it does not change while running.
fn host_hypervisor() -> &'static str {
    static HYPERVISOR: std::sync::OnceLock<&'static str> = std::sync::OnceLock::new();
    HYPERVISOR.get_or_init(|| {
        crate::hypervisor::Dmi::read(std::path::Path::new(crate::hypervisor::DMI_DIR))
            .hypervisor()
            .unwrap_or("")
    })
}

fn encode_world(world: Option<&World>, enc: &mut DescriptorEncoder) -> Result<(), fmt::Error> {
    family(
        enc,
        "macdrop_build_info",
        "macdrop's version; always 1.",
        [(vec![("version", env!("CARGO_PKG_VERSION"))], gauge(1))],
    )?;
    let Some(world) = world else {
        return Ok(());
    };
    family(
        enc,
        "macdrop_host_info",
        "The hypervisor this host runs on, from its DMI tables (VMware, Hyper-V, QEMU/KVM, \
         Xen, VirtualBox; empty for none or unknown); always 1.",
        [(vec![("hypervisor", host_hypervisor())], gauge(1))],
    )?;
    let ts = world
        .ts
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    family(
        enc,
        "macdrop_last_report_timestamp_seconds",
        "When the monitor produced the report these metrics come from (Unix time).",
        [(Vec::<(&str, &str)>::new(), ConstGauge::new(ts))],
    )?;

    let all = series(world);
    family(
        enc,
        "macdrop_interface_info",
        "Identity of each watched interface, always 1: master bridge (ports), current MAC, \
         how a bridge got it (addr_assign_type: permanent, random, stolen or set; empty for \
         other roles or when unknown), hook the classifier is attached with (empty if none), \
         namespace name, and what owns a veth's peer namespace (workload kind, name, id, \
         Kubernetes namespace and pod; empty when unknown).",
        all.iter().map(|s| {
            let i = s.current();
            let mut labels = s.labels();
            labels.extend([
                ("master", i.master.as_deref().unwrap_or("")),
                (
                    "addr_assign_type",
                    i.addr_assign_type
                        .map_or("", crate::sysfs::addr_assign_name),
                ),
                ("hook", i.hook.map_or("", |h| h.as_str())),
                ("netns_name", i.netns_name.as_deref().unwrap_or("")),
            ]);
            let mac = i.mac.map(|m| m.to_string()).unwrap_or_default();
            // The MAC and the workload are on this info metric only, never
            // on a counter: they change, and a counter's series must not.
            let w = i.workload.as_ref();
            let text =
                |f: fn(&Workload) -> Option<&String>| w.and_then(f).cloned().unwrap_or_default();
            let owned = [
                ("mac", mac),
                (
                    "workload_kind",
                    w.map_or("", |w| w.kind.as_str()).to_owned(),
                ),
                ("workload_name", text(|w| w.name.as_ref())),
                ("workload_id", text(|w| w.id.as_ref())),
                ("k8s_namespace", text(|w| w.namespace.as_ref())),
                ("pod", text(|w| w.pod.as_ref())),
            ];
            ((labels, owned), gauge(1))
        }),
    )?;
    family(
        enc,
        "macdrop_interface_gone",
        "1 once the interface disappeared (its counters keep their final values), else 0.",
        all.iter().map(|s| (s.labels(), gauge(i64::from(s.gone())))),
    )?;
    let present = || all.iter().filter(|s| !s.gone());
    family(
        enc,
        "macdrop_promiscuity",
        "Holders of promiscuous mode (IFLA_PROMISCUITY): packet sockets such as tcpdump's, \
         `ip link set promisc on`, a bridge holding its port (1 on a port is normal).",
        present().map(|s| (s.labels(), gauge(i64::from(s.current().promiscuity)))),
    )?;
    family(
        enc,
        "macdrop_promiscuous",
        "1 while the interface is promiscuous (the kernel's IFF_PROMISC: promiscuity above 0), \
         else 0.",
        present().map(|s| (s.labels(), gauge(i64::from(s.current().promisc)))),
    )?;
    family(
        enc,
        "macdrop_flow_sampling",
        "The kernel records one mismatched frame in this many in the interface's flow table \
         (the top offenders), counted as many times: 1, every frame, unless the interface \
         receives more than 16,384 mismatched frames a second; the frame counters are exact \
         either way. Absent with --top-flows 0.",
        present().filter_map(|s| {
            let n = s.current().flow_sampling?;
            Some((s.labels(), gauge(i64::from(n))))
        }),
    )?;
    // The partition classes are disjoint, so summing over `class` gives
    // every frame received (the JSON's `total`), which is therefore not a
    // class here.
    family(
        enc,
        "macdrop_frames",
        "Frames received since macdrop attached, by destination-MAC class; the classes are \
         disjoint, their sum is every frame received.",
        all.iter().flat_map(|s| {
            classes::partition().map(move |class| {
                let mut labels = s.labels();
                labels.push(("class", class.name));
                (labels, counter(s.frames(class.class)))
            })
        }),
    )?;
    // A part of a class is a family of its own: as a `class` label it would
    // count its frames twice in a sum over `class`.
    for class in classes::subsets() {
        family(
            enc,
            &format!("macdrop_{}_frames", class.name),
            class.help,
            all.iter()
                .map(|s| (s.labels(), counter(s.frames(class.class)))),
        )?;
    }
    family(
        enc,
        "macdrop_kernel_drops",
        "Drops the kernel confirmed on the interface since attach, by drop reason \
         (OTHERHOST, NO_TX_TARGET, IPV6_NDISC_NS_OTHERHOST mean a MAC mismatch).",
        all.iter().flat_map(|s| {
            s.drops().into_iter().flatten().map(move |(reason, n)| {
                let mut labels = s.labels();
                labels.push(("reason", reason));
                (labels, counter(n))
            })
        }),
    )?;
    family(
        enc,
        "macdrop_kernel_pkt_type_frames",
        "The same frames as the kernel itself classed them (skb->pkt_type, relative to the \
         receiving device's own MAC); tc hooks only.",
        all.iter().flat_map(|s| {
            s.pkt_types()
                .into_iter()
                .flatten()
                .map(move |(pkt_type, n)| {
                    let mut labels = s.labels();
                    labels.push(("pkt_type", pkt_type));
                    (labels, counter(n))
                })
        }),
    )?;
    family(
        enc,
        "macdrop_egress_frames",
        "Frames that left an uplink (a macvlan parent, a bridge port that is a NIC) since its \
         egress counter attached, by source MAC: its own, a local child's, or another; \
         uplinks only.",
        all.iter().flat_map(|s| {
            s.egress().into_iter().flatten().map(move |(source, n)| {
                let mut labels = s.labels();
                labels.push(("source", source));
                (labels, counter(n))
            })
        }),
    )?;
    if let Some(stats) = &world.self_stats {
        family(
            enc,
            "macdrop_program_runs",
            "Runs of each of macdrop's eBPF programs since load (with --self-stats).",
            stats
                .iter()
                .map(|(name, s)| (vec![("program", name.as_str())], counter(s.runs))),
        )?;
        family(
            enc,
            "macdrop_program_run_time_seconds",
            "Time spent in each of macdrop's eBPF programs since load (with --self-stats).",
            stats.iter().map(|(name, s)| {
                (
                    vec![("program", name.as_str())],
                    ConstCounter::new(s.run_time_ns as f64 / 1e9),
                )
            }),
        )?;
    }
    family(
        enc,
        "macdrop_kernel_rx_otherhost_dropped",
        "The kernel's rx_otherhost_dropped counter of the interface, since attach \
         (Linux >= 5.19).",
        all.iter()
            .filter_map(|s| s.otherhost().map(|n| (s.labels(), counter(n)))),
    )?;
    Ok(())
}

#[cfg(test)]
mod tests;
