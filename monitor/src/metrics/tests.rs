use std::{
    collections::{BTreeMap, BTreeSet},
    time::{Duration, UNIX_EPOCH},
};

use monitor_common::FrameCounters;

use super::*;
use crate::{kernel::attach::Hook, mac::Mac, topology::Role};

const NS: u32 = 4026532177;

fn port(name: &str, ifindex: u32, frames: FrameCounters) -> Interface {
    let mut i = Interface::new(name.into(), ifindex, NS, Role::Port, Some("br0".into()));
    i.mac = Some(Mac([2, 0, 0, 0, 0x0a, ifindex as u8]));
    i.hook = Some(Hook::Tcx);
    i.promisc = true;
    i.promiscuity = 1;
    i.frames = frames;
    i.drops = Some(BTreeMap::from([("NO_TX_TARGET".to_owned(), 4)]));
    i.kernel_rx_otherhost_dropped = Some(0);
    i
}

fn world(interfaces: Vec<Interface>) -> World {
    World {
        ts: UNIX_EPOCH + Duration::from_millis(1_000_000_000_500),
        interfaces,
        events: Vec::new(),
        drop_source: Ok("tp_btf"),
        self_stats: None,
        evidence: None,
    }
}

fn render(world: Option<World>) -> String {
    let (publisher, latest) = channel();
    if let Some(w) = world {
        publisher.publish(w);
    }
    encode(&registry(latest)).unwrap()
}

/// `series -> value` for every sample line; panics on a duplicate series.
fn samples(text: &str) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let (series, value) = line.rsplit_once(' ').expect("series and value");
        let old = out.insert(series.to_owned(), value.parse().expect("a number"));
        assert!(old.is_none(), "duplicate series {series}");
    }
    out
}

fn value(text: &str, series: &str) -> Option<f64> {
    samples(text).get(series).copied()
}

fn labels(interface: &str, role: &str) -> String {
    format!(r#"netns="{NS}",interface="{interface}",role="{role}""#)
}

#[test]
fn before_the_first_report_only_build_info() {
    let text = render(None);
    assert_eq!(
        samples(&text),
        BTreeMap::from([(
            format!(
                r#"macdrop_build_info{{version="{}"}}"#,
                env!("CARGO_PKG_VERSION")
            ),
            1.0
        )])
    );
}

#[test]
fn one_port_exactly() {
    let p1 = port(
        "p1",
        3,
        FrameCounters {
            total: 20,
            own: 2,
            broadcast: 3,
            multicast: 4,
            foreign_unicast: 10,
            host_ip_wrong_mac: 6,
            stale_mac: 1,
            runt: 1,
            ..Default::default()
        },
    );
    let text = render(Some(world(vec![p1])));
    let l = labels("p1", "port");
    let got = samples(&text);
    let mut want: BTreeMap<String, f64> = [
        ("own", 2.0),
        ("broadcast", 3.0),
        ("multicast", 4.0),
        ("foreign_unicast", 10.0),
        ("runt", 1.0),
    ]
    .into_iter()
    .map(|(c, v)| (format!(r#"macdrop_frames_total{{{l},class="{c}"}}"#), v))
    .collect();
    want.extend([
        (format!("macdrop_host_ip_wrong_mac_frames_total{{{l}}}"), 6.0),
        (format!("macdrop_stale_mac_frames_total{{{l}}}"), 1.0),
        (
            format!(r#"macdrop_kernel_drops_total{{{l},reason="NO_TX_TARGET"}}"#),
            4.0,
        ),
        (
            format!(r#"macdrop_kernel_drops_total{{{l},reason="OTHERHOST"}}"#),
            0.0,
        ),
        (
            format!(r#"macdrop_kernel_drops_total{{{l},reason="IPV6_NDISC_NS_OTHERHOST"}}"#),
            0.0,
        ),
        (
            format!("macdrop_kernel_rx_otherhost_dropped_total{{{l}}}"),
            0.0,
        ),
        (
            format!(r#"macdrop_kernel_pkt_type_frames_total{{{l},pkt_type="host"}}"#),
            0.0,
        ),
        (
            format!(r#"macdrop_kernel_pkt_type_frames_total{{{l},pkt_type="broadcast"}}"#),
            0.0,
        ),
        (
            format!(r#"macdrop_kernel_pkt_type_frames_total{{{l},pkt_type="multicast"}}"#),
            0.0,
        ),
        (
            format!(r#"macdrop_kernel_pkt_type_frames_total{{{l},pkt_type="otherhost"}}"#),
            0.0,
        ),
        (
            format!(r#"macdrop_kernel_pkt_type_frames_total{{{l},pkt_type="other"}}"#),
            0.0,
        ),
        (format!("macdrop_promiscuity{{{l}}}"), 1.0),
        (format!("macdrop_promiscuous{{{l}}}"), 1.0),
        (format!("macdrop_interface_gone{{{l}}}"), 0.0),
        (
            format!(
                r#"macdrop_interface_info{{{l},master="br0",addr_assign_type="",hook="tcx",netns_name="",mac="02:00:00:00:0a:03",workload_kind="",workload_name="",workload_id="",k8s_namespace="",pod=""}}"#
            ),
            1.0,
        ),
        (
            format!(
                r#"macdrop_build_info{{version="{}"}}"#,
                env!("CARGO_PKG_VERSION")
            ),
            1.0,
        ),
        (
            "macdrop_last_report_timestamp_seconds".to_owned(),
            1_000_000_000.5,
        ),
        (
            format!(r#"macdrop_host_info{{hypervisor="{}"}}"#, super::host_hypervisor()),
            1.0,
        ),
    ]);
    assert_eq!(got, want);
    // The classes of macdrop_frames_total add up to the JSON's total.
    let sum: f64 = got
        .iter()
        .filter(|(k, _)| k.starts_with("macdrop_frames_total{"))
        .map(|(_, v)| v)
        .sum();
    assert_eq!(sum, 20.0);
}

#[test]
fn every_family_is_typed_and_counters_end_in_total() {
    let text = render(Some(world(vec![port("p1", 3, FrameCounters::default())])));
    let mut typed = BTreeMap::new();
    for line in text.lines().filter_map(|l| l.strip_prefix("# TYPE ")) {
        let (name, kind) = line.split_once(' ').unwrap();
        assert!(typed.insert(name.to_owned(), kind.to_owned()).is_none());
    }
    for series in samples(&text).keys() {
        let name = series.split('{').next().unwrap();
        let kind = typed
            .get(name)
            .unwrap_or_else(|| panic!("{name} has no TYPE"));
        assert_eq!(
            kind == "counter",
            name.ends_with("_total"),
            "{name}: {kind}"
        );
        assert!(name.starts_with("macdrop_"), "{name}");
    }
}

#[test]
fn macs_only_on_the_info_metric() {
    let text = render(Some(world(vec![port("p1", 3, FrameCounters::default())])));
    for series in samples(&text).keys() {
        if series.contains("mac=") {
            assert!(series.starts_with("macdrop_interface_info{"), "{series}");
        }
    }
}

/// A port that left and came back under the same name (a new device) keeps
/// one series whose counters never go down; a gone interface keeps its
/// final counts and is marked gone.
#[test]
fn counters_are_monotonic_across_gone_and_recreated_interfaces() {
    let frames = |foreign: u64| FrameCounters {
        total: foreign,
        foreign_unicast: foreign,
        host_ip_wrong_mac: foreign,
        ..Default::default()
    };
    let l = labels("p1", "port");
    let foreign = format!(r#"macdrop_frames_total{{{l},class="foreign_unicast"}}"#);
    let wrong = format!("macdrop_host_ip_wrong_mac_frames_total{{{l}}}");
    let drops = format!(r#"macdrop_kernel_drops_total{{{l},reason="NO_TX_TARGET"}}"#);
    let gone = format!("macdrop_interface_gone{{{l}}}");
    let promiscuity = format!("macdrop_promiscuity{{{l}}}");

    let first = render(Some(world(vec![port("p1", 3, frames(5))])));
    assert_eq!(value(&first, &foreign), Some(5.0));
    assert_eq!(value(&first, &gone), Some(0.0));

    let t0 = std::time::Instant::now();
    let mut old = port("p1", 3, frames(7));
    old.mark_gone(t0);
    let left = render(Some(world(vec![old.clone()])));
    assert_eq!(value(&left, &foreign), Some(7.0), "final counts kept");
    assert_eq!(value(&left, &gone), Some(1.0));
    assert_eq!(value(&left, &promiscuity), None, "no state for a gone one");

    let mut new = port("p1", 9, frames(2));
    new.hook = Some(Hook::XdpDriver);
    let back = render(Some(world(vec![old.clone(), new.clone()])));
    assert_eq!(value(&back, &foreign), Some(9.0));
    assert_eq!(value(&back, &wrong), Some(9.0));
    assert_eq!(value(&back, &drops), Some(8.0));
    assert_eq!(value(&back, &gone), Some(0.0));
    assert_eq!(value(&back, &promiscuity), Some(1.0));
    let info: Vec<String> = samples(&back)
        .into_keys()
        .filter(|k| k.starts_with("macdrop_interface_info{"))
        .collect();
    assert_eq!(info.len(), 1, "{info:?}");
    assert!(
        info[0].contains(r#"hook="xdp-driver""#) && info[0].contains("02:00:00:00:0a:09"),
        "the present device's identity: {}",
        info[0]
    );

    // The old one's retention ends: the series keeps its counts.
    let retention = Duration::from_secs(600);
    let mut interfaces = vec![old, new];
    interfaces.iter_mut().for_each(Interface::mark_shown);
    let expired = crate::retention::expire(&mut interfaces, |i| i, retention, t0 + retention);
    assert_eq!((expired.len(), interfaces.len()), (1, 1));
    let after = render(Some(world(interfaces.clone())));
    for (series, want) in [(&foreign, 9.0), (&wrong, 9.0), (&drops, 8.0), (&gone, 0.0)] {
        assert_eq!(value(&after, series), Some(want), "{series}");
    }
    let pkt = format!(r#"macdrop_kernel_pkt_type_frames_total{{{l},pkt_type="host"}}"#);
    assert!(
        value(&after, &pkt).is_some(),
        "the expired instance ran at tc"
    );

    // Then the last one goes and expires: the series ends.
    interfaces[0].mark_gone(t0 + retention);
    interfaces[0].mark_shown();
    crate::retention::expire(&mut interfaces, |i| i, retention, t0 + 2 * retention);
    let ended = render(Some(world(interfaces)));
    assert!(
        samples(&ended)
            .keys()
            .all(|k| !k.contains(r#"interface="p1""#)),
        "{ended}"
    );
}

#[test]
fn unavailable_kernel_counters_are_absent_not_zero() {
    let mut p1 = port("p1", 3, FrameCounters::default());
    p1.drops = None;
    p1.kernel_rx_otherhost_dropped = None;
    let text = render(Some(world(vec![p1])));
    let names: BTreeSet<&str> = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| l.split(['{', ' ']).next().unwrap())
        .collect();
    assert!(!names.contains("macdrop_kernel_drops_total"));
    assert!(!names.contains("macdrop_kernel_rx_otherhost_dropped_total"));
    assert!(names.contains("macdrop_frames_total"));
}

/// An uplink's egress counts, one series per source class; none on an
/// interface that is not an uplink.
#[test]
fn egress_frames_by_source_on_uplinks_only() {
    let mut eth0 = port("eth0", 3, FrameCounters::default());
    eth0.egress = Some(monitor_common::egress::EgressCounters {
        own: 5,
        child: 7,
        other: 2,
        broadcast: 1,
    });
    let text = render(Some(world(vec![
        eth0,
        port("p2", 4, FrameCounters::default()),
    ])));
    let l = labels("eth0", "port");
    for (source, n) in [("own", 5.0), ("child", 7.0), ("other", 2.0)] {
        let series = format!(r#"macdrop_egress_frames_total{{{l},source="{source}"}}"#);
        assert_eq!(value(&text, &series), Some(n), "{text}");
    }
    assert!(!text.contains(r#"macdrop_egress_frames_total{netns="4026532177",interface="p2""#));
}

#[test]
fn namespaces_and_roles_are_separate_series() {
    let mut other = port("p1", 3, FrameCounters::default());
    other.netns = NS + 1;
    other.netns_name = Some("blue".into());
    let mut bridge = Interface::new("br0".into(), 2, NS, Role::Bridge, None);
    bridge.frames.own = 4;
    let text = render(Some(world(vec![
        port("p1", 3, FrameCounters::default()),
        other,
        bridge,
    ])));
    let got = samples(&text);
    assert!(got.contains_key(&format!(
        r#"macdrop_frames_total{{netns="{}",interface="p1",role="port",class="own"}}"#,
        NS + 1
    )));
    assert_eq!(
        got.get(&format!(
            r#"macdrop_frames_total{{{},class="own"}}"#,
            labels("br0", "bridge")
        )),
        Some(&4.0)
    );
    assert!(got.contains_key(&format!(
        r#"macdrop_interface_info{{netns="{}",interface="p1",role="port",master="br0",addr_assign_type="",hook="tcx",netns_name="blue",mac="02:00:00:00:0a:03",workload_kind="",workload_name="",workload_id="",k8s_namespace="",pod=""}}"#,
        NS + 1
    )));
    // Not attached: an empty hook, no MAC.
    assert!(got.contains_key(&format!(
        r#"macdrop_interface_info{{{},master="",addr_assign_type="",hook="",netns_name="",mac="",workload_kind="",workload_name="",workload_id="",k8s_namespace="",pod=""}}"#,
        labels("br0", "bridge")
    )));
}

#[test]
fn flow_sampling_is_stated_where_flows_are_recorded() {
    let mut p1 = port("p1", 3, FrameCounters::default());
    let p2 = port("p2", 4, FrameCounters::default());
    p1.flow_sampling = Some(64);
    let got = samples(&render(Some(world(vec![p1, p2]))));
    let sampling: Vec<(&String, &f64)> = got
        .iter()
        .filter(|(k, _)| k.starts_with("macdrop_flow_sampling"))
        .collect();
    let want = format!("macdrop_flow_sampling{{{}}}", labels("p1", "port"));
    assert_eq!(
        sampling,
        [(&want, &64.0)],
        "none for p2, whose flows are off"
    );
}
