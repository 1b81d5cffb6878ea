//! Gone interfaces expire (`--retention`): a gone port (or a gone
//! namespace's) stays in the reports and the metrics with its final
//! counts for the window and leaves both after it, and 10,000 ports
//! coming and going leave
//! macdrop's memory, its metric series and its kernel maps where they
//! were. A test binary of its own: the churn keeps the machine busy for
//! minutes, which must not slow the timed tests of `churn.rs` beside it.

mod common;

use std::{
    collections::BTreeMap,
    io::{Read as _, Write as _},
    net::TcpStream,
    time::{Duration, Instant, SystemTime},
};

use common::{SETTLE, time_of};
use macdrop_tests::{
    bpf,
    frames::{ipv4_udp, mac_to_string},
    lab::{
        BRIDGE, BRIDGE_IPV4, BRIDGE_MAC, BridgeLab, PEER_IFACE, StandaloneLab, links, peer_ipv4,
        peer_mac, port_mac,
    },
    macdrop::{EventReport, Macdrop, Report},
    netns::NetNs,
    sender::RawSender,
    wait::poll_until,
};

/// Runs `ip -batch` with `commands` inside `ns`.
fn ip_batch(ns: &NetNs, commands: &[String]) {
    links::ip_batch(ns, &commands.join("\n")).unwrap();
}

fn ts(e: &EventReport) -> SystemTime {
    time_of(&e.ts)
}

/// Where `--metrics` without a value serves (in the lab's own namespace).
const METRICS_ADDR: &str = "127.0.0.1:9815";

/// One scrape of macdrop's /metrics, from inside `ns`.
struct Scrape(String);

impl Scrape {
    /// HTTP/1.0: the server sends the body and closes the connection.
    fn take(ns: &NetNs) -> anyhow::Result<Self> {
        let mut stream = ns.enter_thread(|| TcpStream::connect(METRICS_ADDR))??;
        stream.set_read_timeout(Some(SETTLE))?;
        write!(
            stream,
            "GET /metrics HTTP/1.0\r\nHost: {METRICS_ADDR}\r\n\r\n"
        )?;
        let mut raw = String::new();
        stream.read_to_string(&mut raw)?;
        let (head, body) = raw
            .split_once("\r\n\r\n")
            .ok_or_else(|| anyhow::anyhow!("no end of headers in {raw:?}"))?;
        anyhow::ensure!(head.starts_with("HTTP/1.0 200"), "GET /metrics: {head}");
        Ok(Self(body.to_owned()))
    }

    /// Every sample line, `name{labels} value`.
    fn series(&self) -> impl Iterator<Item = &str> {
        self.0
            .lines()
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
    }

    /// The value of the series written exactly `series` (name and labels).
    fn value(&self, series: &str) -> Option<f64> {
        self.series()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    }

    /// When the report it serves was made.
    fn report_ts(&self) -> SystemTime {
        let secs = self
            .value("macdrop_last_report_timestamp_seconds")
            .expect("a report is served");
        SystemTime::UNIX_EPOCH + Duration::from_secs_f64(secs)
    }

    /// Whether any series is about interface `name`.
    fn names(&self, name: &str) -> bool {
        let label = format!(r#"interface="{name}""#);
        self.series().any(|l| l.contains(&label))
    }
}

/// The retention window of the test below.
const RETENTION: Duration = Duration::from_secs(3);
/// Slack for comparing a time macdrop measured with its monotonic clock
/// (when an interface went) against its wall-clock timestamps.
const CLOCKS: Duration = Duration::from_millis(20);

/// With `--retention 3s`: p1 is deleted; p2 is deleted and at once
/// re-created under the same name and ifindex (one `ip -batch`, so one
/// re-read may see only the new device). Until the window ends every
/// report and every scrape keeps the gone ones with their final counts;
/// from then on p1 is in neither, the new p2 counts from zero, and p2's
/// series keeps the old device's counts (it never goes down).
#[test]
fn a_gone_port_leaves_reports_and_metrics_when_its_retention_ends() {
    const FRAMES: [(usize, usize); 2] = [(1, 5), (2, 7)];
    let lab = BridgeLab::new(2).unwrap();
    let host = lab.host();
    let retention = format!("{}s", RETENTION.as_secs());
    let mut macdrop = Macdrop::spawn(
        host,
        &["--bridge", BRIDGE, "--metrics", "--retention", &retention],
    )
    .unwrap();
    for (i, n) in FRAMES {
        let frame = ipv4_udp(BRIDGE_MAC, peer_mac(i), peer_ipv4(i), BRIDGE_IPV4);
        RawSender::new(lab.peer(i), PEER_IFACE)
            .unwrap()
            .send(&frame, n)
            .unwrap();
    }
    let own = |r: &Report, name: &str| r.frames(name).map(|f| f.own);
    let before = macdrop.settle(
        |r| own(r, "p1") == Some(5) && own(r, "p2") == Some(7),
        SETTLE,
    );
    assert_eq!((own(&before, "p1"), own(&before, "p2")), (Some(5), Some(7)));
    let p2 = before.interface("p2").unwrap().ifindex;

    ip_batch(
        host,
        &[
            "link del p1".into(),
            "link del p2".into(),
            format!(
                "link add p2 index {p2} address {} type veth peer name {PEER_IFACE} netns {}",
                mac_to_string(&port_mac(2)),
                lab.peer(2).name()
            ),
            format!("link set p2 master {BRIDGE} up"),
        ],
    );
    let gone = |name: &'static str| move |e: &EventReport| e.kind == "gone" && e.interface == name;
    let p1_gone = ts(&macdrop.wait_for_event(gone("p1"), SETTLE).unwrap());
    let p2_gone = ts(&macdrop.wait_for_event(gone("p2"), SETTLE).unwrap());
    macdrop
        .wait_for_event(
            |e| e.kind == "attached" && e.interface == "p2" && ts(e) >= p2_gone,
            SETTLE,
        )
        .unwrap();

    // The reports, until both gone ones are out.
    let mut shown_gone = 0;
    let last = macdrop
        .wait_for(
            |r| {
                let at = time_of(&r.ts);
                let p1: Vec<_> = r.interfaces.iter().filter(|i| i.name == "p1").collect();
                let p2: Vec<_> = r.interfaces.iter().filter(|i| i.name == "p2").collect();
                let old_p2: Vec<_> = p2.iter().filter(|i| i.gone).collect();
                let new_p2: Vec<_> = p2.iter().filter(|i| !i.gone).collect();
                assert_eq!(new_p2.len(), 1, "the new p2, from zero: {r:?}");
                assert_eq!(new_p2[0].frames.total, 0, "nothing inherited: {r:?}");
                if at + CLOCKS < p1_gone + RETENTION {
                    assert_eq!(p1.len(), 1, "p1 kept in the window: {r:?}");
                    assert!(p1[0].gone && p1[0].frames.own == 5, "{r:?}");
                    shown_gone += 1;
                } else if at >= p1_gone + RETENTION + CLOCKS {
                    assert!(p1.is_empty(), "p1 out after the window: {r:?}");
                }
                if at + CLOCKS < p2_gone + RETENTION {
                    assert_eq!(old_p2.len(), 1, "the old p2 kept in the window: {r:?}");
                    assert_eq!(old_p2[0].frames.own, 7, "{r:?}");
                } else if at >= p2_gone + RETENTION + CLOCKS {
                    assert!(old_p2.is_empty(), "the old p2 out after the window: {r:?}");
                }
                p1.is_empty() && old_p2.is_empty()
            },
            RETENTION + SETTLE,
        )
        .unwrap();
    assert!(shown_gone > 0, "no report showed p1 gone with its counts");
    assert!(time_of(&last.ts) + CLOCKS >= p1_gone + RETENTION);
    for (name, went) in [("p1", p1_gone), ("p2", p2_gone)] {
        let expired = macdrop
            .events()
            .iter()
            .find(|e| e.kind == "expired" && e.interface == name)
            .unwrap_or_else(|| panic!("no expired event for {name}"));
        assert!(ts(expired) + CLOCKS >= went + RETENTION, "{expired:?}");
    }

    // The metrics: scraped until p1 is out, each scrape judged by the
    // time of the report it serves.
    let netns = host.inode();
    let own_series = |name: &str| {
        format!(
            r#"macdrop_frames_total{{netns="{netns}",interface="{name}",role="port",class="own"}}"#
        )
    };
    let gone_series = |name: &str| {
        format!(r#"macdrop_interface_gone{{netns="{netns}",interface="{name}",role="port"}}"#)
    };
    let after = poll_until(
        SETTLE,
        || {
            let scrape = Scrape::take(host)?;
            let at = scrape.report_ts();
            if at + CLOCKS < p1_gone + RETENTION {
                assert_eq!(scrape.value(&own_series("p1")), Some(5.0), "{}", scrape.0);
                assert_eq!(scrape.value(&gone_series("p1")), Some(1.0), "{}", scrape.0);
            } else if at >= p1_gone + RETENTION + CLOCKS {
                assert!(!scrape.names("p1"), "p1 out of the metrics: {}", scrape.0);
            }
            Ok(scrape)
        },
        |scrape| !scrape.names("p1"),
    )
    .unwrap();
    assert!(!after.names("p1"), "p1 still in the metrics: {}", after.0);
    assert_eq!(
        after.value(&own_series("p2")),
        Some(7.0),
        "p2's series keeps the old device's counts: {}",
        after.0
    );
    assert_eq!(after.value(&gone_series("p2")), Some(0.0));
    macdrop.stop().unwrap();
}

/// With `--all-netns --retention 3s`, a namespace that goes away: its
/// port stays in the reports, gone with its final counts, until the window
/// ends, then leaves them, as a deleted port does.
#[test]
fn a_gone_namespaces_ports_leave_the_reports_when_their_retention_ends() {
    let quiet = StandaloneLab::new().unwrap();
    let retention = format!("{}s", RETENTION.as_secs());
    let mut macdrop =
        Macdrop::spawn(quiet.host(), &["--all-netns", "--retention", &retention]).unwrap();
    let lab = BridgeLab::new(1).unwrap();
    let inode = lab.host().inode().to_string();
    let p1_of_lab = |r: &Report| {
        r.interfaces
            .iter()
            .find(|i| i.name == "p1" && i.netns == inode)
            .cloned()
    };
    macdrop
        .wait_for(|r| p1_of_lab(r).is_some_and(|i| i.hook.is_some()), SETTLE)
        .expect("the new namespace is watched");
    let frame = ipv4_udp(BRIDGE_MAC, peer_mac(1), peer_ipv4(1), BRIDGE_IPV4);
    RawSender::new(lab.peer(1), PEER_IFACE)
        .unwrap()
        .send(&frame, 3)
        .unwrap();
    macdrop
        .wait_for(|r| p1_of_lab(r).is_some_and(|i| i.frames.own == 3), SETTLE)
        .unwrap();
    // When it went lies between the last report with it present and the
    // first with it gone (events name no namespace, and other tests'
    // namespaces, which `--all-netns` watches too, have a p1 as well).
    let mut present_at = time_of(&macdrop.latest().unwrap().ts);
    drop(lab);
    let gone_at = time_of(
        &macdrop
            .wait_for(
                |r| match p1_of_lab(r) {
                    Some(p1) if !p1.gone => {
                        present_at = time_of(&r.ts);
                        false
                    }
                    _ => true,
                },
                SETTLE,
            )
            .unwrap()
            .ts,
    );
    let mut shown_gone = 0;
    macdrop
        .wait_for(
            |r| {
                let at = time_of(&r.ts);
                let p1 = p1_of_lab(r);
                if at + CLOCKS < present_at + RETENTION {
                    let kept = p1.as_ref();
                    let kept = kept.unwrap_or_else(|| panic!("p1 kept in the window: {r:?}"));
                    assert!(kept.gone && kept.frames.own == 3, "{r:?}");
                    shown_gone += 1;
                } else if at >= gone_at + RETENTION + CLOCKS {
                    assert!(p1.is_none(), "p1 out after the window: {r:?}");
                }
                p1.is_none()
            },
            RETENTION + SETTLE,
        )
        .unwrap();
    assert!(shown_gone > 0, "no report showed p1 gone with its counts");
    macdrop.stop().unwrap();
}

/// Port create/delete cycles of the churn below, in batches.
const CYCLES: usize = 10_000;
const BATCH: usize = 100;
/// Where the first sample is taken: enough cycles for every buffer and
/// map to have reached its working size.
const FIRST_SAMPLE: usize = 1_000;
/// The churn's retention window: short, so the samples come soon.
const CHURN_RETENTION: &str = "2s";
/// The link group the churned ports are created in, so one `ip link del
/// group` removes a whole batch (one RTNL section, one batch of RCU waits).
const GROUP: u32 = 77;
/// How much macdrop's RSS may grow from the first sample to the end. Kept
/// for ever, each gone port costs its model, its session member and its
/// share of every report and JSON line: with a retention of a year, RSS
/// grew by 14.5 MiB from 1,000 to 3,000 cycles here (2026-12-05, debug
/// build), so the 9,000 cycles between the samples would add some 60 MiB.
/// Within this bound is only what the allocator keeps from peaks (the
/// ports of one batch at a time).
const RSS_SLACK_KIB: u64 = 2 * 1024;

/// What macdrop holds at a quiet moment (every churned port expired).
#[derive(Debug)]
struct Held {
    rss_kib: u64,
    fds: usize,
    /// Lines of /metrics (samples, not comments).
    series: usize,
    /// Entries of its kernel hash maps, by map name.
    maps: BTreeMap<String, usize>,
}

/// Waits until no churned port (`c*`) is in the reports or the metrics
/// any more, then reads what macdrop holds.
fn quiet(macdrop: &mut Macdrop, host: &NetNs) -> Held {
    let churned = |name: &str| name.starts_with('c');
    macdrop
        .wait_for(
            |r| !r.interfaces.iter().any(|i| churned(&i.name)),
            Duration::from_secs(2) + SETTLE,
        )
        .expect("every churned port expires from the reports");
    // Before the scrape, whose connection is a file descriptor of its own
    // until the server closes it.
    let fds = macdrop.open_fds().unwrap();
    let label = r#"interface="c"#;
    let scrape = poll_until(
        SETTLE,
        || Scrape::take(host),
        |s| !s.series().any(|l| l.contains(label)),
    )
    .unwrap();
    assert!(
        !scrape.series().any(|l| l.contains(label)),
        "churned ports left in the metrics: {}",
        scrape.0
    );
    Held {
        rss_kib: macdrop.rss_kib().unwrap(),
        fds,
        series: scrape.series().count(),
        maps: bpf::hash_map_entries(macdrop.pid()).unwrap(),
    }
}

/// 10,000 veth ports (peers in another namespace, as a pod's) are
/// created on a watched bridge, attached, and deleted, 100 at a time,
/// under `watch --metrics --retention 2s`. Sampled at quiet moments after
/// 1,000 cycles and at the end: the metrics' series and the entries of
/// macdrop's kernel hash maps are exactly the same, its file descriptors
/// no more, its RSS within `RSS_SLACK_KIB`. Kept for ever (a long
/// retention), the gone ports fail the series (18 more per port) and the
/// RSS.
#[test]
fn ten_thousand_port_cycles_leave_memory_and_series_flat() {
    let lab = BridgeLab::new(2).unwrap();
    let host = lab.host();
    let crowd = NetNs::new().unwrap();
    let mut macdrop = Macdrop::spawn(
        host,
        &[
            "--bridge",
            BRIDGE,
            "--metrics",
            "--retention",
            CHURN_RETENTION,
        ],
    )
    .unwrap();
    let start = Instant::now();
    let mut first = None;
    for batch in 0..CYCLES / BATCH {
        let names: Vec<String> = (0..BATCH)
            .map(|n| format!("c{}", batch * BATCH + n))
            .collect();
        let add: Vec<String> = names
            .iter()
            .enumerate()
            .flat_map(|(n, name)| {
                [
                    format!(
                        "link add {name} group {GROUP} type veth peer name x{n} netns {}",
                        crowd.name()
                    ),
                    format!("link set {name} master {BRIDGE} up"),
                ]
            })
            .collect();
        ip_batch(host, &add);
        macdrop
            .wait_for(
                |r| {
                    names
                        .iter()
                        .all(|n| r.interface(n).is_some_and(|i| !i.gone && i.hook.is_some()))
                },
                SETTLE,
            )
            .unwrap_or_else(|e| panic!("batch {batch}: not every port attached: {e:#}"));
        ip_batch(host, &[format!("link del group {GROUP}")]);
        macdrop
            .wait_for(
                |r| names.iter().all(|n| r.interface(n).is_none_or(|i| i.gone)),
                SETTLE,
            )
            .unwrap_or_else(|e| panic!("batch {batch}: not every port gone: {e:#}"));
        let cycles = (batch + 1) * BATCH;
        if cycles == FIRST_SAMPLE {
            let held = quiet(&mut macdrop, host);
            eprintln!(
                "churn: {cycles} cycles in {:.1} s: {held:?}",
                start.elapsed().as_secs_f64()
            );
            first = Some(held);
        }
    }
    let churn_time = start.elapsed();
    let end = quiet(&mut macdrop, host);
    let first = first.expect("sampled");
    eprintln!(
        "churn: {CYCLES} cycles in {:.1} s: {end:?}",
        churn_time.as_secs_f64()
    );
    assert_eq!(
        end.series, first.series,
        "series after {FIRST_SAMPLE} cycles and at the end"
    );
    assert_eq!(end.maps, first.maps, "kernel map entries");
    assert_eq!(
        end.maps.get("MACDROP_IFACES"),
        Some(&3),
        "br0, p1 and p2 configured, nothing else"
    );
    // A file macdrop opens for a moment (/proc, a dump) may be open at
    // either sample: no more at the end than after 1,000 cycles.
    let fds = poll_until(SETTLE, || macdrop.open_fds(), |n| *n <= first.fds).unwrap();
    assert!(
        fds <= first.fds,
        "file descriptors: {} then {fds}",
        first.fds
    );
    assert!(
        end.rss_kib <= first.rss_kib + RSS_SLACK_KIB,
        "RSS grew from {} KiB after {FIRST_SAMPLE} cycles to {} KiB after {CYCLES}",
        first.rss_kib,
        end.rss_kib
    );
    macdrop.stop().unwrap();
}
