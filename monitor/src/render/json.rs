//! One JSON object per report, one per line. The field names are a public
//! contract (see README): fields may be added, never renamed.

use serde::Serialize;

use crate::model::{Interface, World};

#[derive(Serialize)]
struct Report<'a> {
    ts: String,
    interfaces: Vec<IfaceJson<'a>>,
}

#[derive(Serialize)]
struct IfaceJson<'a> {
    name: &'a str,
    ifindex: u32,
    /// Decimal string: inode numbers are identifiers, not quantities.
    netns: String,
    role: &'static str,
    master: Option<&'a str>,
    mac: Option<String>,
    promisc: bool,
    hook: Option<&'static str>,
    gone: bool,
    frames: Classes<u64>,
    rates: Classes<f64>,
}

#[derive(Serialize)]
struct Classes<T> {
    total: T,
    own: T,
    broadcast: T,
    multicast: T,
    foreign_unicast: T,
    host_ip_wrong_mac: T,
    runt: T,
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
        role: i.role.as_str(),
        master: i.master.as_deref(),
        mac: i.mac.map(|m| m.to_string()),
        promisc: i.promisc,
        hook: i.hook.map(|h| h.as_str()),
        gone: i.gone,
        frames: Classes {
            total: f.total,
            own: f.own,
            broadcast: f.broadcast,
            multicast: f.multicast,
            foreign_unicast: f.foreign_unicast,
            host_ip_wrong_mac: f.host_ip_wrong_mac,
            runt: f.runt,
        },
        rates: Classes {
            total: q(r.total),
            own: q(r.own),
            broadcast: q(r.broadcast),
            multicast: q(r.multicast),
            foreign_unicast: q(r.foreign_unicast),
            host_ip_wrong_mac: q(r.host_ip_wrong_mac),
            runt: q(r.runt),
        },
    }
}

pub fn render(world: &World) -> String {
    let report = Report {
        ts: humantime::format_rfc3339_millis(world.ts).to_string(),
        interfaces: world.interfaces.iter().map(iface).collect(),
    };
    serde_json::to_string(&report).expect("report serializes")
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use monitor_common::FrameCounters;

    use super::*;
    use crate::{mac::Mac, topology::Role};

    #[test]
    fn matches_the_documented_shape() {
        let mut br0 = Interface::new("br0".into(), 3, 4026531840, Role::Bridge, None);
        br0.mac = Some(Mac([2, 0, 0, 0, 0x0b, 1]));
        br0.frames = FrameCounters {
            total: 5,
            own: 2,
            foreign_unicast: 3,
            host_ip_wrong_mac: 1,
            ..Default::default()
        };
        let world = World {
            ts: UNIX_EPOCH + Duration::from_millis(1_000_000_000_123),
            interfaces: vec![br0],
        };
        let v: serde_json::Value = serde_json::from_str(&render(&world)).unwrap();
        assert_eq!(v["ts"], "2001-09-09T01:46:40.123Z");
        let i = &v["interfaces"][0];
        assert_eq!(i["name"], "br0");
        assert_eq!(i["ifindex"], 3);
        assert_eq!(i["netns"], "4026531840");
        assert_eq!(i["role"], "bridge");
        assert!(i["master"].is_null());
        assert_eq!(i["mac"], "02:00:00:00:0b:01");
        assert_eq!(i["promisc"], false);
        let f = &i["frames"];
        for (k, want) in [
            ("total", 5),
            ("own", 2),
            ("broadcast", 0),
            ("multicast", 0),
            ("foreign_unicast", 3),
            ("host_ip_wrong_mac", 1),
            ("runt", 0),
        ] {
            assert_eq!(f[k], want, "{k}");
        }
    }
}
