//! One JSON object per report, one per line. The field names are a public
//! contract (docs/json.md, docs/schema/watch.json): fields may be added;
//! renaming one changes `render::SCHEMA`.

use std::collections::BTreeMap;

use serde::{Serialize, Serializer, ser::SerializeMap as _};

use crate::{
    classes::{self, CLASSES, Class},
    kernel::attach::Hook,
    model::{Flow, Interface, World},
    tracker::{Event, EventKind},
    verdict::{MAC_MISMATCH_REASONS, verdict},
    workload::Workload,
};

#[derive(Serialize)]
struct Report<'a> {
    schema: &'static str,
    ts: String,
    interfaces: Vec<IfaceJson<'a>>,
    /// Events since the previous report.
    events: Vec<EventJson<'a>>,
    /// "tp_btf" or "raw_tracepoint"; null when drops are unavailable.
    drop_source: Option<&'static str>,
    /// Why confirmed drops are unavailable, or null.
    drops_unavailable: Option<&'a str>,
    /// With --self-stats: program name -> runs and average ns per run.
    self_stats: Option<BTreeMap<&'a str, SelfStatJson>>,
    /// With --pcap: what was captured so far; null without.
    pcap: Option<&'a crate::evidence::Summary>,
}

#[derive(Serialize)]
struct SelfStatJson {
    runs: u64,
    avg_ns: f64,
}

#[derive(Serialize)]
struct IfaceJson<'a> {
    name: &'a str,
    ifindex: u32,
    /// Decimal string: inode numbers are identifiers, not quantities.
    netns: String,
    /// The namespace's name under /run/netns (or as given to --netns);
    /// null for the namespace macdrop runs in.
    netns_name: Option<&'a str>,
    role: &'static str,
    master: Option<&'a str>,
    mac: Option<String>,
    promisc: bool,
    promiscuity: u32,
    /// Who holds promiscuous mode; null when not promiscuous.
    promisc_holders: Option<&'a str>,
    hook: Option<&'static str>,
    gone: bool,
    frames: Classes<u64>,
    rates: Classes<f64>,
    /// The kernel's own `skb->pkt_type` of the same frames (tc hooks only;
    /// null with XDP, which runs before there is an skb).
    pkt_type: Option<PktType>,
    /// Reason name -> confirmed drops since attach; null if unavailable.
    kernel_drops: Option<BTreeMap<&'a str, u64>>,
    /// The kernel's rx_otherhost_dropped since attach (status has the
    /// absolute counter under `rx_otherhost_dropped`).
    rx_otherhost_dropped_since_attach: Option<u64>,
    verdict: String,
    /// The top offenders since attach, most frames first; null when flows
    /// are not recorded (`--top-flows 0`).
    top_flows: Option<Vec<FlowJson>>,
    /// The flow table records one mismatched frame in this many, counted
    /// as many times: 1 (every frame, exact counts) unless the interface
    /// is flooded (docs/json.md); null when flows are not recorded.
    flow_sampling: Option<u32>,
    /// What owns the veth's peer namespace; null when unknown.
    workload: Option<WorkloadJson<'a>>,
    /// Frames that left the uplink per source-MAC class, since its egress
    /// counter attached; null unless it is an uplink (docs/json.md).
    egress: Option<EgressJson>,
}

#[derive(Serialize)]
struct EgressJson {
    own: u64,
    child: u64,
    other: u64,
    /// Of child and other: broadcast (ARP requests).
    broadcast: u64,
}

/// docs/json.md, `workload`: every key always present, null where it does
/// not apply.
#[derive(Serialize)]
pub(crate) struct WorkloadJson<'a> {
    kind: &'static str,
    id: Option<&'a str>,
    name: Option<&'a str>,
    namespace: Option<&'a str>,
    pod: Option<&'a str>,
    pid: Option<u32>,
    compose_project: Option<&'a str>,
    compose_service: Option<&'a str>,
}

pub(crate) fn workload(w: &Workload) -> WorkloadJson<'_> {
    WorkloadJson {
        kind: w.kind.as_str(),
        id: w.id.as_deref(),
        name: w.name.as_deref(),
        namespace: w.namespace.as_deref(),
        pod: w.pod.as_deref(),
        pid: w.pid,
        compose_project: w.compose_project.as_deref(),
        compose_service: w.compose_service.as_deref(),
    }
}

#[derive(Serialize)]
struct FlowJson {
    src_mac: String,
    dst_mac: String,
    /// Outermost VLAN ID; null if untagged.
    vlan: Option<u16>,
    /// IPv4/IPv6 destination or ARP target; null for other protocols.
    dst_ip: Option<String>,
    frames: u64,
    bytes: u64,
    /// Whether `frames` and `bytes` are every frame since attach; false:
    /// an estimate when `sampled`, else a lower bound (the kernel's
    /// bounded table evicted the flow once).
    exact: bool,
    /// Some frames were recorded under flow sampling (one in N counted N
    /// times, the interface's `flow_sampling` under a flood): `frames` and
    /// `bytes` are estimates.
    sampled: bool,
    first_seen: String,
    last_seen: String,
    /// "foreign_unicast", "host_ip_wrong_mac", "stale_mac".
    reasons: Vec<&'static str>,
}

fn flow(f: &Flow) -> FlowJson {
    FlowJson {
        src_mac: f.src_mac.to_string(),
        dst_mac: f.dst_mac.to_string(),
        vlan: f.vlan,
        dst_ip: f.dst_ip.map(|ip| ip.to_string()),
        frames: f.frames,
        bytes: f.bytes,
        exact: f.exact,
        sampled: f.sampled,
        first_seen: humantime::format_rfc3339_millis(f.first_seen).to_string(),
        last_seen: humantime::format_rfc3339_millis(f.last_seen).to_string(),
        reasons: f.reasons(),
    }
}

/// One value per frame class: an object keyed by the classes' names, in
/// the class table's order (`frames` and `rates` as documented).
struct Classes<T>([T; classes::COUNT]);

impl<T> Classes<T> {
    fn of(value: impl Fn(Class) -> T) -> Self {
        Self(std::array::from_fn(|at| value(CLASSES[at].class)))
    }
}

impl<T: Serialize> Serialize for Classes<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(classes::COUNT))?;
        for (info, value) in CLASSES.iter().zip(&self.0) {
            map.serialize_entry(info.name, value)?;
        }
        map.end()
    }
}

#[derive(Serialize)]
struct PktType {
    host: u64,
    broadcast: u64,
    multicast: u64,
    otherhost: u64,
    other: u64,
}

#[derive(Serialize)]
struct EventJson<'a> {
    ts: String,
    interface: &'a str,
    ifindex: u32,
    /// "promisc_entered", "promisc_left", "promiscuity_changed",
    /// "mac_changed", "fdb_moved", "attached" (with `hook`), "gone" or
    /// "expired".
    kind: &'static str,
    description: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    promiscuity_from: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    promiscuity_to: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    old_mac: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    new_mac: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    hook: Option<&'static str>,
    /// `hook_changed`: the hook that counted before (`hook`: after).
    #[serde(skip_serializing_if = "Option::is_none")]
    hook_from: Option<&'static str>,
    /// `fdb_moved`: the MAC, its VLAN (0: none), how many times it moved
    /// and the ports it was learned on.
    #[serde(skip_serializing_if = "Option::is_none")]
    mac: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    vlan: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    moves: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ports: Option<&'a [String]>,
}

fn iface(i: &Interface) -> IfaceJson<'_> {
    let f = &i.frames;
    let r = &i.rates;
    // Rates rounded to milli-frames per second keep the lines short.
    let q = |x: f64| (x * 1000.0).round() / 1000.0;
    IfaceJson {
        name: &i.name,
        ifindex: i.ifindex,
        netns: i.netns.to_string(),
        netns_name: i.netns_name.as_deref(),
        role: i.role.as_str(),
        master: i.master.as_deref(),
        mac: i.mac.map(|m| m.to_string()),
        promisc: i.promisc,
        promiscuity: i.promiscuity,
        promisc_holders: i.promisc_holders.as_deref(),
        hook: i.hook.map(|h| h.as_str()),
        gone: i.gone,
        frames: Classes::of(|c| c.count(f)),
        rates: Classes::of(|c| q(r.get(c))),
        pkt_type: i
            .hook
            .filter(|h| matches!(h, Hook::Tcx | Hook::TcClsact))
            .map(|_| PktType {
                host: f.pkt_host,
                broadcast: f.pkt_broadcast,
                multicast: f.pkt_multicast,
                otherhost: f.pkt_otherhost,
                other: f.pkt_other,
            }),
        kernel_drops: kernel_drops(i),
        rx_otherhost_dropped_since_attach: i.kernel_rx_otherhost_dropped,
        verdict: verdict(i),
        top_flows: i.flows.as_ref().map(|fs| fs.iter().map(flow).collect()),
        flow_sampling: i.flow_sampling,
        workload: i.workload.as_ref().map(workload),
        egress: i.egress.map(|e| EgressJson {
            own: e.own,
            child: e.child,
            other: e.other,
            broadcast: e.broadcast,
        }),
    }
}

/// `kernel_drops` of `watch` and `diagnose`: the kernel's drops on the
/// interface by reason, the MAC-mismatch reasons always present (zero or
/// not); None without the drop layer.
pub(crate) fn kernel_drops(i: &Interface) -> Option<BTreeMap<&str, u64>> {
    i.drops.as_ref().map(|d| {
        let mut out: BTreeMap<&str, u64> = MAC_MISMATCH_REASONS.iter().map(|r| (*r, 0)).collect();
        out.extend(d.iter().map(|(k, v)| (k.as_str(), *v)));
        out
    })
}

fn event(e: &Event) -> EventJson<'_> {
    let mut out = EventJson {
        ts: humantime::format_rfc3339_millis(e.ts).to_string(),
        interface: &e.ifname,
        ifindex: e.ifindex,
        kind: e.kind_name(),
        description: e.describe(),
        promiscuity_from: None,
        promiscuity_to: None,
        old_mac: None,
        new_mac: None,
        hook: None,
        hook_from: None,
        mac: None,
        vlan: None,
        moves: None,
        ports: None,
    };
    match &e.kind {
        EventKind::PromiscEntered { from, to }
        | EventKind::PromiscLeft { from, to }
        | EventKind::PromiscuityChanged { from, to } => {
            out.promiscuity_from = Some(*from);
            out.promiscuity_to = Some(*to);
        }
        EventKind::MacChanged { old, new } => {
            out.old_mac = Some(old.to_string());
            out.new_mac = Some(new.to_string());
        }
        EventKind::FdbMoved {
            mac,
            vid,
            moves,
            ports,
        } => {
            out.mac = Some(mac.to_string());
            out.vlan = Some(*vid);
            out.moves = Some(*moves);
            out.ports = Some(ports);
        }
        EventKind::Attached { hook } => out.hook = Some(hook),
        EventKind::HookChanged { from, to } => {
            out.hook_from = Some(from);
            out.hook = Some(to);
        }
        EventKind::Gone | EventKind::Expired => {}
    }
    out
}

pub fn render(world: &World) -> String {
    let report = Report {
        schema: super::SCHEMA,
        ts: humantime::format_rfc3339_millis(world.ts).to_string(),
        interfaces: world.interfaces.iter().map(iface).collect(),
        events: world.events.iter().map(event).collect(),
        drop_source: world.drop_source.as_ref().ok().copied(),
        drops_unavailable: world.drop_source.as_ref().err().map(String::as_str),
        self_stats: world.self_stats.as_ref().map(|stats| {
            stats
                .iter()
                .map(|(name, s)| {
                    let avg_ns = (s.avg_ns() * 10.0).round() / 10.0;
                    (
                        name.as_str(),
                        SelfStatJson {
                            runs: s.runs,
                            avg_ns,
                        },
                    )
                })
                .collect()
        }),
        pcap: world.evidence.as_ref(),
    };
    // About 0.8 KB an interface: written into a buffer of that order, not
    // one grown by doubling from empty (twenty copies of a 1,000-port
    // report), with room for the newline `watch` appends.
    let mut out = Vec::with_capacity(1024 * (world.interfaces.len() + 1));
    serde_json::to_writer(&mut out, &report).expect("report serializes");
    String::from_utf8(out).expect("serde_json writes UTF-8")
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use monitor_common::FrameCounters;

    use super::*;
    use crate::{mac::Mac, topology::Role};

    fn world() -> World {
        let mut br0 = Interface::new("br0".into(), 3, 4026531840, Role::Bridge, None);
        br0.mac = Some(Mac([2, 0, 0, 0, 0x0b, 1]));
        br0.frames = FrameCounters {
            total: 5,
            own: 2,
            foreign_unicast: 3,
            host_ip_wrong_mac: 1,
            stale_mac: 1,
            ..Default::default()
        };
        br0.drops = Some(BTreeMap::from([
            ("OTHERHOST".to_owned(), 3),
            ("NO_SOCKET".to_owned(), 1),
        ]));
        br0.kernel_rx_otherhost_dropped = Some(3);
        br0.promiscuity = 1;
        br0.promisc = true;
        World {
            ts: UNIX_EPOCH + Duration::from_millis(1_000_000_000_123),
            interfaces: vec![br0],
            events: vec![Event {
                ts: UNIX_EPOCH + Duration::from_millis(1_000_000_000_000),
                ifname: "br0".into(),
                ifindex: 3,
                kind: EventKind::PromiscEntered { from: 0, to: 1 },
            }],
            drop_source: Ok("tp_btf"),
            self_stats: None,
            evidence: None,
        }
    }

    #[test]
    fn matches_the_documented_shape() {
        let v: serde_json::Value = serde_json::from_str(&render(&world())).unwrap();
        assert_eq!(v["ts"], "2001-09-09T01:46:40.123Z");
        assert_eq!(v["drop_source"], "tp_btf");
        assert!(v["drops_unavailable"].is_null());
        let i = &v["interfaces"][0];
        assert_eq!(i["name"], "br0");
        assert_eq!(i["ifindex"], 3);
        assert_eq!(i["netns"], "4026531840");
        assert_eq!(i["role"], "bridge");
        assert!(i["master"].is_null());
        assert_eq!(i["mac"], "02:00:00:00:0b:01");
        assert_eq!(i["promisc"], true);
        assert_eq!(i["promiscuity"], 1);
        assert_eq!(i["rx_otherhost_dropped_since_attach"], 3);
        let f = &i["frames"];
        for (k, want) in [
            ("total", 5),
            ("own", 2),
            ("broadcast", 0),
            ("multicast", 0),
            ("foreign_unicast", 3),
            ("host_ip_wrong_mac", 1),
            ("stale_mac", 1),
            ("runt", 0),
        ] {
            assert_eq!(f[k], want, "{k}");
        }
        let d = &i["kernel_drops"];
        assert_eq!(d["OTHERHOST"], 3);
        assert_eq!(d["NO_TX_TARGET"], 0, "mismatch reasons are always present");
        assert_eq!(d["IPV6_NDISC_NS_OTHERHOST"], 0);
        assert_eq!(d["NO_SOCKET"], 1, "other reasons by their BTF name");
        assert!(i["verdict"].as_str().unwrap().starts_with("ALERT"));
        let e = &v["events"][0];
        assert_eq!(e["kind"], "promisc_entered");
        assert_eq!(e["interface"], "br0");
        assert_eq!(
            e["description"],
            "br0 entered promiscuous mode, promiscuity 0 -> 1"
        );
        assert_eq!(e["promiscuity_to"], 1);
        assert_eq!(e["ts"], "2001-09-09T01:46:40.000Z");
    }

    #[test]
    fn frames_and_rates_keep_their_keys_and_order() {
        let mut w = world();
        w.interfaces[0].rates.set(Class::ForeignUnicast, 2.0 / 3.0);
        let text = render(&w);
        assert!(
            text.contains(
                r#""frames":{"total":5,"own":2,"broadcast":0,"multicast":0,"foreign_unicast":3,"host_ip_wrong_mac":1,"stale_mac":1,"runt":0},"#
            ),
            "{text}"
        );
        assert!(
            text.contains(
                r#""rates":{"total":0.0,"own":0.0,"broadcast":0.0,"multicast":0.0,"foreign_unicast":0.667,"host_ip_wrong_mac":0.0,"stale_mac":0.0,"runt":0.0},"#
            ),
            "{text}"
        );
    }

    #[test]
    fn unavailable_drops_are_null_with_a_reason() {
        let mut w = world();
        w.interfaces[0].drops = None;
        w.interfaces[0].kernel_rx_otherhost_dropped = None;
        w.drop_source = Err("kernel has no BTF".into());
        let v: serde_json::Value = serde_json::from_str(&render(&w)).unwrap();
        assert!(v["drop_source"].is_null());
        assert_eq!(v["drops_unavailable"], "kernel has no BTF");
        assert!(v["interfaces"][0]["kernel_drops"].is_null());
        assert!(v["interfaces"][0]["rx_otherhost_dropped_since_attach"].is_null());
    }

    #[test]
    fn top_flows_with_their_key_and_reasons() {
        let mut w = world();
        assert!(
            serde_json::from_str::<serde_json::Value>(&render(&w)).unwrap()["interfaces"][0]
                ["top_flows"]
                .is_null(),
            "null when flows are not recorded"
        );
        let at = UNIX_EPOCH + Duration::from_millis(1_000_000_000_000);
        w.interfaces[0].flows = Some(vec![
            Flow {
                src_mac: Mac([2, 0, 0, 0, 0x0c, 1]),
                dst_mac: Mac([0, 0x50, 0x56, 0, 0, 1]),
                vlan: Some(10),
                dst_ip: Some("2001:db8::1".parse().unwrap()),
                frames: 7,
                bytes: 700,
                first_seen: at,
                last_seen: at + Duration::from_secs(2),
                mismatch: monitor_common::MISMATCH_FOREIGN | monitor_common::MISMATCH_HOST_IP,
                exact: true,
                sampled: false,
            },
            Flow {
                src_mac: Mac([2, 0, 0, 0, 0x0c, 2]),
                dst_mac: Mac([2, 0, 0, 0, 0x0b, 0x99]),
                vlan: None,
                dst_ip: None,
                frames: 1,
                bytes: 60,
                first_seen: at,
                last_seen: at,
                mismatch: monitor_common::MISMATCH_STALE,
                exact: false,
                sampled: false,
            },
        ]);
        let lower_bound = w.interfaces[0].flows.as_ref().unwrap()[1].clone();
        w.interfaces[0].flows.as_mut().unwrap().push(Flow {
            src_mac: Mac([2, 0, 0, 0, 0x0c, 3]),
            frames: 64,
            bytes: 3840,
            sampled: true,
            ..lower_bound
        });
        w.interfaces[0].flow_sampling = Some(64);
        let v: serde_json::Value = serde_json::from_str(&render(&w)).unwrap();
        let f = &v["interfaces"][0]["top_flows"];
        assert_eq!(
            f[0],
            serde_json::json!({
                "src_mac": "02:00:00:00:0c:01", "dst_mac": "00:50:56:00:00:01", "vlan": 10,
                "dst_ip": "2001:db8::1", "frames": 7, "bytes": 700, "exact": true,
                "sampled": false, "first_seen": "2001-09-09T01:46:40.000Z", "last_seen": "2001-09-09T01:46:42.000Z",
                "reasons": ["foreign_unicast", "host_ip_wrong_mac"],
            })
        );
        assert!(f[1]["vlan"].is_null() && f[1]["dst_ip"].is_null());
        assert_eq!(f[1]["reasons"], serde_json::json!(["stale_mac"]));
        assert_eq!(f[1]["exact"], false, "a lower bound says so");
    }
}
