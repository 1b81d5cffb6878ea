//! Scale and churn: a watched bridge gets 200 veth ports added and removed
//! in waves while traffic flows on two ports that stay. Every port is
//! attached within a second of appearing, the surviving ports' counts are
//! exact, and macdrop's file descriptors and memory come back to where they
//! were.

mod common;

use std::{
    collections::{BTreeMap, BTreeSet},
    io::{Read as _, Write as _},
    net::TcpStream,
    time::{Duration, Instant, SystemTime},
};

use common::SETTLE;
use macdrop_tests::{
    bpf,
    frames::{ipv4_udp, mac_to_string},
    lab::{
        BRIDGE, BRIDGE_IPV4, BRIDGE_MAC, BridgeLab, PEER_IFACE, links, peer_ipv4, peer_mac,
        port_mac,
    },
    macdrop::{Macdrop, Report},
    netns::NetNs,
    sender::RawSender,
    wait::poll_until,
};

const WAVES: usize = 4;
const PORTS_PER_WAVE: usize = 50;
const FRAMES_PER_WAVE: usize = 100;

/// Runs `ip -batch` with `commands` inside `ns`: one process for a whole
/// wave, so ports appear as fast as a container runtime makes them.
fn ip_batch(ns: &NetNs, commands: &[String]) {
    links::ip_batch(ns, &commands.join("\n")).unwrap();
}

fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

/// VmRSS in KiB, from the kernel's /proc/PID/status.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/PID/status")
}

fn ts(e: &macdrop_tests::macdrop::EventReport) -> SystemTime {
    parse_ts(&e.ts)
}

fn parse_ts(text: &str) -> SystemTime {
    use time::{OffsetDateTime, format_description::well_known::Rfc3339};
    let t = OffsetDateTime::parse(text, &Rfc3339).unwrap();
    SystemTime::UNIX_EPOCH + Duration::from_nanos(t.unix_timestamp_nanos() as u64)
}

#[test]
fn two_hundred_ports_come_and_go_while_traffic_flows() {
    let lab = BridgeLab::new(2).unwrap();
    let crowd = NetNs::new().unwrap();
    let mut macdrop = Macdrop::spawn(lab.host(), &["--bridge", BRIDGE]).unwrap();
    let pid = macdrop.pid();
    let senders: Vec<RawSender> = (1..=2)
        .map(|i| RawSender::new(lab.peer(i), PEER_IFACE).unwrap())
        .collect();
    let send = |i: usize| {
        let frame = ipv4_udp(BRIDGE_MAC, peer_mac(i), peer_ipv4(i), BRIDGE_IPV4);
        senders[i - 1].send(&frame, FRAMES_PER_WAVE).unwrap();
    };
    // Baseline once macdrop has settled into its loop.
    macdrop.wait_for(|_| true, SETTLE).unwrap();
    let (fds_before, rss_before) = (fd_count(pid), rss_kib(pid));

    for wave in 0..WAVES {
        let names: Vec<String> = (0..PORTS_PER_WAVE)
            .map(|n| format!("c{}", wave * PORTS_PER_WAVE + n))
            .collect();
        // One `ip -batch` per port, timed, so each port's deadline runs
        // from when that port appeared (joined the bridge), not from the
        // start of the wave.
        let mut appeared = Vec::new();
        for name in &names {
            let peer = format!("x{}", &name[1..]);
            let add = [
                format!(
                    "link add {name} type veth peer name {peer} netns {}",
                    crowd.name()
                ),
                format!("link set {name} up"),
            ];
            ip_batch(lab.host(), &add);
            appeared.push(SystemTime::now());
            ip_batch(lab.host(), &[format!("link set {name} master {BRIDGE}")]);
        }
        send(1);
        for (name, appeared) in names.iter().zip(appeared) {
            let e = macdrop
                .wait_for_event(|e| e.kind == "attached" && &e.interface == name, SETTLE)
                .unwrap_or_else(|e| panic!("wave {wave}: {name} never attached: {e:#}"));
            let late = ts(&e).duration_since(appeared).unwrap_or_default();
            assert!(
                late <= Duration::from_secs(1),
                "wave {wave}: {name} attached {late:?} after it joined the bridge"
            );
        }
        let del: Vec<String> = names.iter().map(|n| format!("link del {n}")).collect();
        ip_batch(lab.host(), &del);
        send(2);
        let gone: BTreeSet<&String> = names.iter().collect();
        for name in gone {
            macdrop
                .wait_for_event(|e| e.kind == "gone" && &e.interface == name, SETTLE)
                .unwrap_or_else(|e| panic!("wave {wave}: {name} never gone: {e:#}"));
        }
    }

    let want = (WAVES * FRAMES_PER_WAVE) as u64;
    let report = macdrop.settle(
        |r| {
            r.frames("p1").is_some_and(|f| f.own == want)
                && r.frames("p2").is_some_and(|f| f.own == want)
        },
        SETTLE,
    );
    for p in ["p1", "p2"] {
        let f = report.frames(p).unwrap();
        assert_eq!((f.total, f.own), (want, want), "{p}");
    }
    let churned = report
        .interfaces
        .iter()
        .filter(|i| i.name.starts_with('c'))
        .count();
    assert_eq!(churned, WAVES * PORTS_PER_WAVE, "every port is reported");
    assert!(
        report
            .interfaces
            .iter()
            .filter(|i| i.name.starts_with('c'))
            .all(|i| i.gone)
    );

    // Resources: every link and socket of a gone port released; memory
    // grows only by the gone ports' final counts kept in the report.
    let fds_after = macdrop_tests::wait::poll_until(
        SETTLE,
        || Ok::<_, anyhow::Error>(fd_count(pid)),
        |n| *n <= fds_before,
    )
    .unwrap();
    assert_eq!(fds_after, fds_before, "file descriptors back to baseline");
    let rss_after = rss_kib(pid);
    assert!(
        rss_after <= rss_before + 8 * 1024,
        "RSS grew from {rss_before} KiB to {rss_after} KiB"
    );
    macdrop.stop().unwrap();
}

// ---- Retention: gone interfaces expire -------------------------------------

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
    let gone = |name: &'static str| {
        move |e: &macdrop_tests::macdrop::EventReport| e.kind == "gone" && e.interface == name
    };
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
                let at = parse_ts(&r.ts);
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
    assert!(parse_ts(&last.ts) + CLOCKS >= p1_gone + RETENTION);
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
/// for ever, the 9,000 gone ports of the cycles in between would add their
/// models (name, counts, rates, flows), session members and map entries,
/// and a report (and its JSON line) with every one of them: many MiB
/// (measured: see the test's output). Within this bound is only what the
/// allocator keeps from peaks.
const RSS_SLACK_KIB: u64 = 2 * 1024;

/// What macdrop holds at a quiet moment (every churned port expired).
#[derive(Debug, PartialEq)]
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
    let pid = macdrop.pid();
    Held {
        rss_kib: rss_kib(pid),
        fds: fd_count(pid),
        series: scrape.series().count(),
        maps: bpf::hash_map_entries(pid).unwrap(),
    }
}

/// 10,000 veth ports (peers in another namespace, as a pod's) are
/// created on a watched bridge, attached, and deleted, 100 at a time,
/// under `watch --metrics --retention 2s`. Sampled at quiet moments after
/// 1,000 cycles and at the end: the metrics' series, the entries of
/// macdrop's kernel hash maps and its file descriptors are exactly the
/// same, its RSS within `RSS_SLACK_KIB`. Kept for ever (a long
/// retention), the gone ports fail every one of these.
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
    assert_eq!(end.fds, first.fds, "file descriptors");
    assert!(
        end.rss_kib <= first.rss_kib + RSS_SLACK_KIB,
        "RSS grew from {} KiB after {FIRST_SAMPLE} cycles to {} KiB after {CYCLES}",
        first.rss_kib,
        end.rss_kib
    );
    macdrop.stop().unwrap();
}
