//! `macdrop-bench`: the kernel-side measurements behind `cargo xtask bench`,
//! on macdrop's own eBPF object (the one embedded in the `macdrop` binary).
//! xtask builds the namespaces and runs this inside them; every command
//! prints one JSON object on stdout.
//!
//! - `test-run`: per-frame cost of `macdrop_xdp`, its legacy twin
//!   `macdrop_xdp_legacy` and `macdrop_tc` against the object's empty
//!   baselines (`bench_empty_xdp`, `bench_empty_tc`),
//!   with BPF_PROG_TEST_RUN and the kernel's own duration, on a real
//!   interface of this namespace whose ifindex is in the context, so the
//!   configuration lookups take the path real traffic takes. The maps are
//!   filled by `kernel::config` as macdrop fills them, for a bridge with
//!   1,000 ports of which the interface is one. Two classes run with
//!   `--pcap` capture on: a mismatched frame captured (copied into the ring
//!   buffer: the rate bound's bucket refilled before each measurement, and
//!   fewer runs than its burst), and one the rate bound turns away (the
//!   bucket emptied by the measurement's own first frames: a flood).
//!   Then `macdrop_tc_egress` (the egress source-MAC counter of uplinks)
//!   against the empty tc program, per source class.
//! - `attach-empty`: attaches an empty baseline program to an interface
//!   until stdin closes (end-to-end baselines, and the in-situ baseline
//!   beside macdrop's programs on the same interface, with `--floor` the
//!   floor baseline `bench_floor_tc` after it).
//! - `prog-stats`: every loaded program's runs and run time by the
//!   kernel's statistics, read twice around an end-to-end window.
//! - `flow-read`: the time of a read of a running macdrop's flow table,
//!   as a report does it (`FlowReader::read`), found by its pid.
//! - `counter-read`: the time of one full counter read of N slots, as a
//!   report does it (`CounterReader::read_each`).
//! - `tcx-floor`: the kernel's floor for attaching and detaching: raw TCX
//!   link creates (BPF_LINK_CREATE) and detaches (BPF_LINK_DETACH) on N
//!   interfaces and nothing else, serially and from a pool of threads.
//!
//! Not part of macdrop: nothing here is installed or run by users.

use std::{
    collections::BTreeMap,
    io::{Read as _, Write as _},
    net::IpAddr,
    path::Path,
    time::Instant,
};

use anyhow::{Context as _, bail, ensure};
use aya::{
    Ebpf,
    maps::{Array, MapData, PerCpuArray, RingBuf},
    programs::{LinkOrder, SchedClassifier, TcAttachType, Xdp, XdpMode, tc::TcAttachOptions},
};
use clap::{Parser, Subcommand, ValueEnum};
use macdrop::{
    kernel::{
        config, config::ConfigMaps, counters::CounterReader, flows::FlowReader, loader, tc,
        test_run,
    },
    mac::Mac,
    netlink::{Link, NetState},
    topology,
};
use monitor_common::{
    EVIDENCE_BURST, EVIDENCE_COST_NS, EvidenceCpu, EvidenceCtl, FrameCounters, names,
};
use serde_json::json;

const EMPTY_XDP: &str = "bench_empty_xdp";
const EMPTY_TC: &str = "bench_empty_tc";
const FLOOR_TC: &str = "bench_floor_tc";

#[derive(Parser)]
#[command(
    name = "macdrop-bench",
    about = "Kernel-side measurements for `cargo xtask bench`."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Per-frame cost of macdrop's XDP and tc programs and of the empty
    /// baselines, interleaved, for each frame class.
    TestRun {
        /// The interface whose ifindex goes into the context (a veth of
        /// this namespace).
        #[arg(long)]
        iface: String,
        /// BPF_PROG_TEST_RUN repeat count per measurement.
        #[arg(long, default_value_t = 1_000_000)]
        repeat: u32,
        /// Measurements per program and class.
        #[arg(long, default_value_t = 5)]
        reps: usize,
        /// Ports of the simulated bridge (map population).
        #[arg(long, default_value_t = 1000)]
        ports: u32,
    },
    /// Attach an empty baseline program to IFACE until stdin closes.
    AttachEmpty {
        #[arg(long)]
        iface: String,
        #[arg(long, value_enum)]
        hook: EmptyHook,
        /// With `--hook tc`: also the floor baseline (`bench_floor_tc`),
        /// after the empty program, for the in-situ split of macdrop's cost.
        #[arg(long)]
        floor: bool,
    },
    /// Time raw TCX link creates and detaches on PREFIX1..PREFIXCOUNT,
    /// serially (1 thread) and from each number of THREADS, interleaved.
    TcxFloor {
        #[arg(long, default_value = "p")]
        prefix: String,
        #[arg(long, default_value_t = 1000)]
        count: u32,
        #[arg(long, value_delimiter = ',', default_values_t = [1, 4])]
        threads: Vec<usize>,
        #[arg(long, default_value_t = 3)]
        reps: usize,
    },
    /// Time reads of a running macdrop's flow table (`FlowReader::read`,
    /// as its reports do), REPS of them INTERVAL_MS apart.
    FlowRead {
        /// The macdrop process whose table to read (found by its fds).
        #[arg(long)]
        pid: u32,
        #[arg(long, default_value_t = 10)]
        reps: usize,
        #[arg(long, default_value_t = 1000)]
        interval_ms: u64,
    },
    /// Print the kernel's run-time statistics of every loaded BPF program
    /// (runs and run time, counted while BPF_ENABLE_STATS is held by
    /// anyone) as one JSON line: two readings around a window give each
    /// program's cost per run over the same moments and the same frames.
    ProgStats,
    /// Time full counter reads of SLOTS slots.
    CounterRead {
        #[arg(long, default_value_t = 1000)]
        slots: u32,
        #[arg(long, default_value_t = 20)]
        reps: usize,
    },
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum EmptyHook {
    /// Native (driver) XDP.
    Xdp,
    /// Generic (skb) XDP.
    XdpGeneric,
    /// tc ingress through TCX (Linux >= 6.6), else clsact.
    Tc,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let out = match cli.command {
        Command::TestRun {
            iface,
            repeat,
            reps,
            ports,
        } => test_run(&iface, repeat, reps, ports)?,
        Command::AttachEmpty { iface, hook, floor } => return attach_empty(&iface, hook, floor),
        Command::ProgStats => prog_stats()?,
        Command::CounterRead { slots, reps } => counter_read(slots, reps)?,
        Command::FlowRead {
            pid,
            reps,
            interval_ms,
        } => flow_read(pid, reps, interval_ms)?,
        Command::TcxFloor {
            prefix,
            count,
            threads,
            reps,
        } => tcx_floor(&prefix, count, &threads, reps)?,
    };
    // A write error is an error, not a panic (`macdrop::output`).
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{out}")?;
    stdout.flush()?;
    Ok(())
}

fn netns_inode() -> anyhow::Result<u32> {
    macdrop::netns::inode_of(Path::new("/proc/self/ns/net"))
}

// ---- test-run ---------------------------------------------------------------

const BRIDGE_MAC: Mac = Mac([0x02, 0, 0, 0, 0x0b, 0x01]);
const FOREIGN_MAC: Mac = Mac([0x02, 0, 0, 0, 0xee, 0xee]);
const SRC_MAC: Mac = Mac([0x02, 0, 0, 0, 0x0c, 0x01]);
const HOST_V4: [u8; 4] = [192, 0, 2, 1];
const OTHER_V4: [u8; 4] = [192, 0, 2, 50];
const HOST_V6: &str = "2001:db8::1";
const OTHER_V6: &str = "2001:db8::50";
/// ifindex of the simulated bridge; its other ports follow it.
const FAKE_BRIDGE: u32 = 5000;

/// A frame class, its frame, the counter it must land in, whether flows
/// are recorded meanwhile (macdrop's default; off is `--top-flows 0`), and
/// the state of `--pcap` capture.
struct Class {
    name: &'static str,
    what: &'static str,
    frame: Vec<u8>,
    counter: fn(&FrameCounters) -> u64,
    flows: bool,
    /// The interface's flow sampling mask (`IfConfig::flow_sample`): 0,
    /// every mismatched frame recorded, or `FLOOD_SAMPLE`, as macdrop sets
    /// it under a flood.
    flow_sample: u32,
    capture: Capture,
}

/// The flow sampling of the flood classes: 1 in 64, what macdrop sets for
/// an interface receiving about 1 million mismatched frames a second
/// (`session::flow_sampling`: 16,384 a second recorded).
const FLOOD_SAMPLE: u32 = 63;

/// `--pcap` for a class.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Capture {
    /// No `--pcap` (budget 0): macdrop's default.
    Off,
    /// Every run captured: the rate bound's bucket full before the
    /// measurement, which has fewer runs than its burst.
    Captured,
    /// The bucket empty: every run (but the ~1 per ms it refills) turned
    /// away by the rate bound, as in a flood.
    RateLimited,
}

/// Runs per measurement of a captured frame: within the burst, so none
/// is turned away.
const CAPTURED_REPEAT: u32 = 200;
const _: () = assert!((CAPTURED_REPEAT as u64) < EVIDENCE_BURST);

fn classes() -> Vec<Class> {
    let udp4 = |dst_mac: Mac, tag: bool, dst: [u8; 4]| {
        let mut l3 = vec![0x45, 0, 0, 46, 0, 1, 0, 0, 64, 17, 0, 0, 192, 0, 2, 11];
        l3.extend(dst);
        l3.extend([0x30, 0x39, 0x30, 0x39, 0, 26, 0, 0]);
        l3.resize(46, 0);
        eth(dst_mac, tag, 0x0800, &l3)
    };
    let udp6 = |dst_mac: Mac, dst: &str| {
        let mut l3 = vec![0x60, 0, 0, 0, 0, 8, 17, 64];
        l3.extend(
            "2001:db8::11"
                .parse::<std::net::Ipv6Addr>()
                .unwrap()
                .octets(),
        );
        l3.extend(dst.parse::<std::net::Ipv6Addr>().unwrap().octets());
        l3.extend([0x30, 0x39, 0x30, 0x39, 0, 8, 0, 0]);
        eth(dst_mac, false, 0x86dd, &l3)
    };
    let mut arp = vec![0, 1, 8, 0, 6, 4, 0, 1];
    arp.extend(SRC_MAC.0);
    arp.extend([192, 0, 2, 11]);
    arp.extend([0; 6]);
    arp.extend(HOST_V4);
    arp.resize(46, 0);
    vec![
        Class {
            name: "own",
            what: "to the bridge's MAC (the fast MAC), IPv4 to the host",
            frame: udp4(BRIDGE_MAC, false, HOST_V4),
            counter: |c| c.own,
            flows: true,
            flow_sample: 0,
            capture: Capture::Off,
        },
        Class {
            name: "broadcast",
            what: "ARP request for the host's IPv4",
            frame: eth(Mac::BROADCAST, false, 0x0806, &arp),
            counter: |c| c.broadcast,
            flows: true,
            flow_sample: 0,
            capture: Capture::Off,
        },
        Class {
            name: "multicast",
            what: "IPv4 multicast (01:00:5e:00:00:fb)",
            frame: udp4(Mac([1, 0, 0x5e, 0, 0, 0xfb]), false, [224, 0, 0, 251]),
            counter: |c| c.multicast,
            flows: true,
            flow_sample: 0,
            capture: Capture::Off,
        },
        Class {
            name: "foreign",
            what: "another station's MAC, IPv4 to another address",
            frame: udp4(FOREIGN_MAC, false, OTHER_V4),
            counter: |c| c.foreign_unicast,
            flows: true,
            flow_sample: 0,
            capture: Capture::Off,
        },
        Class {
            name: "foreign_host_ip",
            what: "another station's MAC, IPv4 to the host (host_ip_wrong_mac), flows off",
            frame: udp4(FOREIGN_MAC, false, HOST_V4),
            counter: |c| c.host_ip_wrong_mac,
            flows: false,
            flow_sample: 0,
            capture: Capture::Off,
        },
        // The same mismatched frame with its flow record (an existing
        // flow: test_run repeats one frame), as macdrop runs by default
        // below the sampling rate.
        Class {
            name: "mismatched",
            what: "the same, incl. its flow record (default, every frame recorded: up to 16,384/s)",
            frame: udp4(FOREIGN_MAC, false, HOST_V4),
            counter: |c| c.host_ip_wrong_mac,
            flows: true,
            flow_sample: 0,
            capture: Capture::Off,
        },
        // The same in a flood: macdrop samples the flow records.
        Class {
            name: "flood",
            what: "the same in a flood: flow records sampled 1 in 64 (as macdrop sets at ~1 Mpps)",
            frame: udp4(FOREIGN_MAC, false, HOST_V4),
            counter: |c| c.host_ip_wrong_mac,
            flows: true,
            flow_sample: FLOOD_SAMPLE,
            capture: Capture::Off,
        },
        Class {
            name: "captured",
            what: "the same, captured (`--pcap`: 60 bytes copied into the ring buffer)",
            frame: udp4(FOREIGN_MAC, false, HOST_V4),
            counter: |c| c.host_ip_wrong_mac,
            flows: true,
            flow_sample: 0,
            capture: Capture::Captured,
        },
        Class {
            name: "rate_limited",
            what: "the flood with `--pcap`, turned away by the rate bound, flows sampled 1 in 64",
            frame: udp4(FOREIGN_MAC, false, HOST_V4),
            counter: |c| c.host_ip_wrong_mac,
            flows: true,
            flow_sample: FLOOD_SAMPLE,
            capture: Capture::RateLimited,
        },
        Class {
            name: "vlan",
            what: "802.1Q-tagged, another station's MAC, IPv4 to another address",
            frame: udp4(FOREIGN_MAC, true, OTHER_V4),
            counter: |c| c.foreign_unicast,
            flows: true,
            flow_sample: 0,
            capture: Capture::Off,
        },
        Class {
            name: "ipv6",
            what: "another station's MAC, IPv6 to another address",
            frame: udp6(FOREIGN_MAC, OTHER_V6),
            counter: |c| c.foreign_unicast,
            flows: true,
            flow_sample: 0,
            capture: Capture::Off,
        },
    ]
}

fn eth(dst: Mac, tag: bool, ethertype: u16, l3: &[u8]) -> Vec<u8> {
    let mut f = dst.0.to_vec();
    f.extend(SRC_MAC.0);
    if tag {
        f.extend([0x81, 0x00, 0x00, 0x0a]);
    }
    f.extend(ethertype.to_be_bytes());
    f.extend(l3);
    f
}

fn link(ifindex: u32, name: &str, kind: &str, master: Option<u32>, mac: Mac) -> Link {
    Link::fake(ifindex, name, kind, master, mac)
}

fn port_mac(i: u32) -> Mac {
    Mac([0x02, 0, 0, 0x0a, (i >> 8) as u8, i as u8])
}

/// Fills the configuration maps as macdrop would for a bridge with
/// `ports` ports, one of which is `iface` (slot 0): every port and the
/// bridge watched, the FDB holding the bridge's and every port's MAC, and
/// the host's addresses.
fn configure(
    cfg: &mut ConfigMaps,
    netns: u32,
    iface: &str,
    ports: u32,
    flows: bool,
) -> anyhow::Result<()> {
    let ifindex = ifindex_of(iface)?;
    let mut links = vec![
        link(FAKE_BRIDGE, "br-bench", "bridge", None, BRIDGE_MAC),
        link(ifindex, iface, "veth", Some(FAKE_BRIDGE), port_mac(0)),
    ];
    for i in 1..ports {
        links.push(link(
            FAKE_BRIDGE + i,
            &format!("pb{i}"),
            "veth",
            Some(FAKE_BRIDGE),
            port_mac(i),
        ));
    }
    let fdb: Vec<Mac> = links.iter().filter_map(|l| l.mac).collect();
    let mut addrs: Vec<IpAddr> = vec![
        IpAddr::from(HOST_V4),
        HOST_V6.parse().expect("valid address"),
    ];
    // A few more addresses, as a host with containers has.
    addrs.extend((1..=8).map(|i| IpAddr::from([10, 88, 0, i])));
    let state = NetState {
        links,
        addrs,
        local_fdb: BTreeMap::from([(FAKE_BRIDGE, fdb)]),
        secondary_macs: BTreeMap::new(),
        vlans: Default::default(),
        ..Default::default()
    };
    // The veth first (slot 0), then the other ports, the bridge last.
    let mut order: Vec<&Link> = state.links[1..].iter().collect();
    order.push(&state.links[0]);
    let watched: Vec<_> = order
        .into_iter()
        .enumerate()
        .map(|(slot, l)| (topology::describe(&state, l), slot as u32))
        .collect();
    let desired = config::desired(netns, &state, &watched, &BTreeMap::new());
    cfg.sync(if flows {
        desired
    } else {
        desired.without_flows()
    })?;
    // The bridge's program runs at tc, as `--attach auto` puts it.
    cfg.set_bridge_at_tc(FAKE_BRIDGE, true)
}

fn ifindex_of(iface: &str) -> anyhow::Result<u32> {
    let name = std::ffi::CString::new(iface)?;
    // SAFETY: a valid NUL-terminated string.
    let i = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if i == 0 {
        bail!("no interface {iface} in this namespace");
    }
    Ok(i)
}

/// The programs, in the order they are measured for each class, and
/// whether each is macdrop's (else an empty baseline).
const PROGRAMS: [(&str, &str, bool); 5] = [
    ("xdp_empty", EMPTY_XDP, false),
    ("xdp_macdrop", names::XDP_PROGRAM, true),
    ("xdp_legacy", names::XDP_PROGRAM_LEGACY, true),
    ("tc_empty", EMPTY_TC, false),
    ("tc_macdrop", names::TC_PROGRAM, true),
];

/// The capture maps: the budget, the per-CPU rate bound and counts, the
/// ring buffer (drained after every measurement).
struct CaptureMaps {
    ctl: Array<MapData, EvidenceCtl>,
    cpu: PerCpuArray<MapData, EvidenceCpu>,
    ring: RingBuf<MapData>,
}

impl CaptureMaps {
    fn take(ebpf: &mut Ebpf) -> anyhow::Result<Self> {
        let mut take = |name: &str| {
            ebpf.take_map(name)
                .with_context(|| format!("map {name} missing from the object"))
        };
        Ok(Self {
            ctl: Array::try_from(take(names::EVIDENCE_CTL)?)?,
            cpu: PerCpuArray::try_from(take(names::EVIDENCE_CPU)?)?,
            ring: RingBuf::try_from(take(names::EVIDENCE_RING)?)?,
        })
    }

    /// Capture on (a budget that never closes) or off.
    fn set(&mut self, capture: Capture) -> anyhow::Result<()> {
        let budget = if capture == Capture::Off { 0 } else { u64::MAX };
        self.ctl.set(0, EvidenceCtl { budget, taken: 0 }, 0)?;
        Ok(())
    }

    /// Before a measurement of macdrop's `prog` on `frame`: for
    /// `Captured`, wait until the bucket is full (it refills by one frame
    /// per EVIDENCE_COST_NS); for `RateLimited`, empty it with a burst's
    /// worth of runs. The ring is left empty.
    fn prepare(&mut self, capture: Capture, run: (&Ebpf, &str, u32, &[u8])) -> anyhow::Result<()> {
        match capture {
            Capture::Off => {}
            Capture::Captured => {
                // A fresh bound: nothing left to skip from a flood before
                // (`EvidenceCpu::skip`), then a full bucket.
                let cpus =
                    aya::util::nr_cpus().map_err(|(what, e)| anyhow::anyhow!("{what}: {e}"))?;
                self.cpu.set(
                    0,
                    aya::maps::PerCpuValues::try_from(vec![EvidenceCpu::default(); cpus])?,
                    0,
                )?;
                std::thread::sleep(std::time::Duration::from_nanos(
                    (EVIDENCE_BURST + 10) * EVIDENCE_COST_NS,
                ));
            }
            Capture::RateLimited => {
                let (ebpf, prog, ifindex, frame) = run;
                run_once(ebpf, prog, ifindex, frame, EVIDENCE_BURST as u32 + 10)?;
            }
        }
        self.drain();
        Ok(())
    }

    /// Records taken out of the ring.
    fn drain(&mut self) -> u64 {
        let mut n = 0;
        while self.ring.next().is_some() {
            n += 1;
        }
        n
    }

    /// Frames the rate bound turned away so far, over all CPUs.
    fn rate_limited(&self) -> anyhow::Result<u64> {
        Ok(self.cpu.get(&0, 0)?.iter().map(|c| c.rate_limited).sum())
    }
}

fn test_run(
    iface: &str,
    repeat: u32,
    reps: usize,
    ports: u32,
) -> anyhow::Result<serde_json::Value> {
    ensure!(
        repeat > 0 && reps > 0,
        "--repeat and --reps must be positive"
    );
    let netns = netns_inode()?;
    let ifindex = ifindex_of(iface)?;
    // The ring at its `--pcap` size.
    let mut ebpf = loader::load_with(netns, &[], true)?;
    let mut cfg = ConfigMaps::take(&mut ebpf)?;
    let counters = CounterReader::take(&mut ebpf)?;
    let mut flow_reader = FlowReader::take(&mut ebpf)?;
    let mut capture = CaptureMaps::take(&mut ebpf)?;
    for name in [EMPTY_XDP, names::XDP_PROGRAM, names::XDP_PROGRAM_LEGACY] {
        xdp(&mut ebpf, name)?.load()?;
    }
    tc::load_tc_program(&mut ebpf)?;
    classifier(&mut ebpf, EMPTY_TC)?.load()?;
    // Flow recording is switched per class (a map update per interface
    // when it changes, outside the timed runs).
    let mut flows_on = None;
    let mut set_flows = |cfg: &mut ConfigMaps, class: &Class| -> anyhow::Result<()> {
        let on = (class.flows, class.flow_sample);
        if flows_on != Some(on) {
            configure(cfg, netns, iface, ports, class.flows)?;
            cfg.set_flow_sample(ifindex, class.flow_sample)?;
            flows_on = Some(on);
        }
        Ok(())
    };

    let classes = classes();
    // Each program once per class first: the class lands in the counter it
    // must, and in a flow record exactly when it should (so the timings
    // below are of the intended path), and caches warm.
    let recorded = |r: &mut FlowReader| -> anyhow::Result<u64> {
        Ok(r.read()?.values().flatten().map(|f| f.frames).sum())
    };
    // A sampled class runs as many frames as its sampling takes (in one
    // test run, on one CPU): exactly one of them is recorded, for all.
    for class in &classes {
        set_flows(&mut cfg, class)?;
        capture.set(class.capture)?;
        let runs = u64::from(class.flow_sample) + 1;
        for (label, prog, macdrop) in PROGRAMS {
            if macdrop {
                capture.prepare(class.capture, (&ebpf, prog, ifindex, &class.frame))?;
            }
            let before = counters.read(0)?;
            let flows_before = recorded(&mut flow_reader)?;
            let limited_before = capture.rate_limited()?;
            run_once(&ebpf, prog, ifindex, &class.frame, runs as u32)?;
            let delta = counters.read(0)?.since(&before);
            let captured = capture.drain();
            let limited = capture.rate_limited()? - limited_before;
            // With the bucket emptied, the bound may still have let a
            // frame through if a millisecond passed since (the measurements
            // below check that their runs are turned away).
            let ok = match (macdrop, class.capture) {
                (false, _) | (true, Capture::Off) => (captured, limited) == (0, 0),
                (true, Capture::Captured) => (captured, limited) == (runs, 0),
                (true, Capture::RateLimited) => captured + limited == runs,
            };
            ensure!(
                ok,
                "{label}: {captured} frame(s) captured and {limited} turned away for a {} frame",
                class.name
            );
            ensure!(
                !macdrop || ((class.counter)(&delta) == runs && delta.total == runs),
                "{label} did not count {runs} {} frame(s) as such: {delta:?}",
                class.name
            );
            ensure!(macdrop || delta.total == 0, "{label} counted a frame");
            let new_flows = recorded(&mut flow_reader)? - flows_before;
            let mismatched = class.name == "mismatched"
                || class.flow_sample != 0
                || class.capture != Capture::Off;
            let want = u64::from(macdrop && class.flows && mismatched) * runs;
            ensure!(
                new_flows == want,
                "{label} recorded {new_flows} flow frame(s) for a {} frame, not {want}",
                class.name
            );
        }
    }

    let mut samples: Vec<BTreeMap<&str, Vec<u64>>> = vec![BTreeMap::new(); classes.len()];
    for _ in 0..reps {
        for (c, class) in classes.iter().enumerate() {
            set_flows(&mut cfg, class)?;
            capture.set(class.capture)?;
            for (label, prog, macdrop) in PROGRAMS {
                let repeat = if class.capture == Capture::Captured {
                    CAPTURED_REPEAT
                } else {
                    repeat
                };
                if macdrop {
                    capture.prepare(class.capture, (&ebpf, prog, ifindex, &class.frame))?;
                }
                let limited_before = capture.rate_limited()?;
                let ns = run_once(&ebpf, prog, ifindex, &class.frame, repeat)?;
                let captured = capture.drain();
                let limited = capture.rate_limited()? - limited_before;
                // The intended path: every run captured, or (but for the
                // bucket's refill of one frame per ms) every run turned away.
                let ok = match (macdrop, class.capture) {
                    (true, Capture::Captured) => captured == u64::from(repeat),
                    (true, Capture::RateLimited) => limited >= u64::from(repeat) * 99 / 100,
                    _ => true,
                };
                ensure!(
                    ok,
                    "{label}: {captured} of {repeat} frames captured and {limited} turned away \
                     in a {} measurement",
                    class.name
                );
                samples[c].entry(label).or_default().push(ns);
            }
        }
    }
    let classes: Vec<_> = classes
        .iter()
        .zip(samples)
        .map(|(class, s)| {
            json!({
                "class": class.name,
                "frame": class.what,
                "len": class.frame.len(),
                "repeat": if class.capture == Capture::Captured { CAPTURED_REPEAT } else { repeat },
                "ns": s,
            })
        })
        .collect();
    let egress = egress_test_run(&mut ebpf, ifindex, repeat, reps)?;
    Ok(json!({
        "repeat": repeat,
        "reps": reps,
        "ports": ports,
        "ifindex": ifindex,
        "classes": classes,
        "egress": egress,
    }))
}

/// The egress source-MAC counter (`macdrop_tc_egress`) against the empty
/// tc program, per source class, on the interface as a counted uplink
/// (own and child MACs in its map), and with its slot removed: the slot
/// lookup's miss alone, the program's floor (macdrop links it only to
/// uplinks that have a slot). Interleaved as the ingress classes are.
fn egress_test_run(
    ebpf: &mut Ebpf,
    ifindex: u32,
    repeat: u32,
    reps: usize,
) -> anyhow::Result<serde_json::Value> {
    use aya::maps::HashMap as BpfHashMap;
    use monitor_common::egress::{
        EGRESS_CHILD, EGRESS_OWN, EgressCounters, EgressMacKey, names as egress,
    };
    const CHILD: Mac = Mac([0x02, 0, 0, 0, 0x0c, 0x11]);
    let own = Mac([0x02, 0, 0, 0x0a, 0, 0]);
    classifier(ebpf, egress::PROGRAM)?.load()?;
    {
        let mut macs: BpfHashMap<&mut MapData, EgressMacKey, u8> =
            BpfHashMap::try_from(ebpf.map_mut(egress::MACS).context("egress MACs map")?)?;
        macs.insert(EgressMacKey::new(ifindex, own.0), EGRESS_OWN, 0)?;
        macs.insert(EgressMacKey::new(ifindex, CHILD.0), EGRESS_CHILD, 0)?;
    }
    let set_slot = |ebpf: &mut Ebpf, counted: bool| -> anyhow::Result<()> {
        let mut slots: BpfHashMap<&mut MapData, u32, u32> =
            BpfHashMap::try_from(ebpf.map_mut(egress::SLOTS).context("egress slots map")?)?;
        if counted {
            slots.insert(ifindex, 0, 0)?;
        } else {
            let _ = slots.remove(&ifindex);
        }
        Ok(())
    };
    let read = |ebpf: &Ebpf| -> anyhow::Result<EgressCounters> {
        let map: PerCpuArray<&MapData, EgressCounters> =
            PerCpuArray::try_from(ebpf.map(egress::COUNTERS).context("egress counters")?)?;
        let mut sum = EgressCounters::default();
        for c in map.get(&0, 0)?.iter() {
            sum.add(c);
        }
        Ok(sum)
    };
    let frame = |src: Mac| {
        let mut f = Vec::with_capacity(60);
        f.extend_from_slice(&FOREIGN_MAC.0);
        f.extend_from_slice(&src.0);
        f.extend_from_slice(&0x0800u16.to_be_bytes());
        f.resize(60, 0);
        f
    };
    // (class, frame, counted, the counter it must land in)
    type EgressClass = (&'static str, Vec<u8>, bool, fn(&EgressCounters) -> u64);
    let classes: [EgressClass; 4] = [
        ("own", frame(own), true, |c| c.own),
        ("child", frame(CHILD), true, |c| c.child),
        ("other", frame(SRC_MAC), true, |c| c.other),
        ("not_counted", frame(own), false, |_| 0),
    ];
    let programs = [("tc_empty", EMPTY_TC), ("tc_egress", egress::PROGRAM)];
    for (name, frame, counted, counter) in &classes {
        set_slot(ebpf, *counted)?;
        let before = read(ebpf)?;
        run_once(ebpf, egress::PROGRAM, ifindex, frame, 1)?;
        let after = read(ebpf)?;
        let total = |c: &EgressCounters| c.own + c.child + c.other;
        ensure!(
            counter(&after) - counter(&before) == u64::from(*counted)
                && total(&after) - total(&before) == u64::from(*counted),
            "{} counted a {name} frame wrong: {before:?} -> {after:?}",
            egress::PROGRAM
        );
    }
    let mut samples: Vec<BTreeMap<&str, Vec<u64>>> = vec![BTreeMap::new(); classes.len()];
    for _ in 0..reps {
        for (c, (_, frame, counted, _)) in classes.iter().enumerate() {
            set_slot(ebpf, *counted)?;
            for (label, prog) in programs {
                let ns = run_once(ebpf, prog, ifindex, frame, repeat)?;
                samples[c].entry(label).or_default().push(ns);
            }
        }
    }
    Ok(classes
        .iter()
        .zip(samples)
        .map(|((name, ..), s)| json!({ "class": name, "ns": s }))
        .collect())
}

/// One BPF_PROG_TEST_RUN of `prog` on `frame` received on `ifindex`,
/// `repeat` times; the kernel's average duration per run, in ns.
fn run_once(
    ebpf: &Ebpf,
    prog: &str,
    ifindex: u32,
    frame: &[u8],
    repeat: u32,
) -> anyhow::Result<u64> {
    let program = ebpf
        .program(prog)
        .with_context(|| format!("program {prog} missing from the object"))?;
    let (outcome, want) = if prog.contains("xdp") {
        let p: &Xdp = program.try_into()?;
        (
            test_run::run_xdp(p, frame, frame.len(), ifindex, repeat)?,
            test_run::XDP_PASS,
        )
    } else {
        // The veth is both the receiving device and the watched interface.
        let p: &SchedClassifier = program.try_into()?;
        (
            test_run::run_tc(p, frame, ifindex, ifindex, repeat)?,
            test_run::TC_ACT_UNSPEC,
        )
    };
    ensure!(
        outcome.verdict == want,
        "{prog} returned {}",
        outcome.verdict
    );
    Ok(outcome.duration.as_nanos() as u64)
}

fn xdp<'a>(ebpf: &'a mut Ebpf, name: &str) -> anyhow::Result<&'a mut Xdp> {
    Ok(ebpf
        .program_mut(name)
        .with_context(|| format!("program {name} missing from the object"))?
        .try_into()?)
}

fn classifier<'a>(ebpf: &'a mut Ebpf, name: &str) -> anyhow::Result<&'a mut SchedClassifier> {
    Ok(ebpf
        .program_mut(name)
        .with_context(|| format!("program {name} missing from the object"))?
        .try_into()?)
}

// ---- attach-empty -----------------------------------------------------------

fn attach_empty(iface: &str, hook: EmptyHook, floor: bool) -> anyhow::Result<()> {
    ensure!(
        !floor || matches!(hook, EmptyHook::Tc),
        "--floor is a tc program: use it with --hook tc"
    );
    let mut ebpf = loader::load(netns_inode()?, &[])?;
    // The links live as long as these bindings; dropping them detaches.
    let mut _xdp_link = None;
    let mut _tc_links = Vec::new();
    // The hook really used, for the caller's label: TCX needs Linux 6.6.
    let used = match hook {
        EmptyHook::Xdp | EmptyHook::XdpGeneric => {
            let mode = if matches!(hook, EmptyHook::Xdp) {
                XdpMode::Driver
            } else {
                XdpMode::Skb
            };
            let p = xdp(&mut ebpf, EMPTY_XDP)?;
            p.load()?;
            _xdp_link = Some(
                p.attach(iface, mode)
                    .with_context(|| format!("attaching {EMPTY_XDP} to {iface} ({hook:?})"))?,
            );
            if matches!(hook, EmptyHook::Xdp) {
                "xdp-driver"
            } else {
                "xdp-generic"
            }
        }
        EmptyHook::Tc => {
            let tcx = macdrop::kernel_version::running() >= (6, 6);
            if !tcx {
                let _ = aya::programs::tc::qdisc_add_clsact(iface);
            }
            // TCX appends each after those already attached, so the floor
            // runs after the empty program; under clsact the order is the
            // kernel's choice of priorities. Both run on every frame either
            // way, which is all their statistics need.
            let names: &[&str] = if floor {
                &[EMPTY_TC, FLOOR_TC]
            } else {
                &[EMPTY_TC]
            };
            for &name in names {
                let p = classifier(&mut ebpf, name)?;
                p.load()?;
                let options = if tcx {
                    TcAttachOptions::TcxOrder(LinkOrder::default())
                } else {
                    TcAttachOptions::Netlink(Default::default())
                };
                _tc_links.push(
                    p.attach_with_options(iface, TcAttachType::Ingress, options)
                        .with_context(|| format!("attaching {name} to {iface}"))?,
                );
            }
            if tcx { "tcx" } else { "clsact" }
        }
    };
    writeln!(std::io::stdout(), "ready {used}")?;
    std::io::stdout().flush()?;
    // Until the caller closes our stdin (or dies).
    let mut sink = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut sink);
    Ok(())
}

// ---- prog-stats -------------------------------------------------------------

/// Every loaded program's kernel name (truncated to 15 bytes by the
/// kernel), id, runs and run time.
fn prog_stats() -> anyhow::Result<serde_json::Value> {
    let mut out = Vec::new();
    for info in aya::programs::loaded_programs() {
        let info = info.context("listing loaded BPF programs")?;
        out.push(json!({
            "id": info.id(),
            "name": info.name_as_str().unwrap_or_default(),
            "runs": info.run_count(),
            "run_time_ns": u64::try_from(info.run_time().as_nanos()).unwrap_or(u64::MAX),
        }));
    }
    Ok(json!(out))
}

// ---- counter-read -----------------------------------------------------------

fn counter_read(slots: u32, reps: usize) -> anyhow::Result<serde_json::Value> {
    let mut ebpf = loader::load(netns_inode()?, &[])?;
    let mut counters = CounterReader::take(&mut ebpf)?;
    let mut ns = Vec::with_capacity(reps);
    let mut sink = FrameCounters::default();
    // One warm-up read, then the timed ones.
    for rep in 0..=reps {
        let t = Instant::now();
        counters.read_each(slots, |_, c| sink.add(c))?;
        if rep > 0 {
            ns.push(t.elapsed().as_nanos() as u64);
        }
    }
    std::hint::black_box(sink);
    Ok(json!({
        "slots": slots,
        "cpus": aya::util::nr_cpus().map_err(|(what, e)| anyhow::anyhow!("{what}: {e}"))?,
        "ns": ns,
    }))
}

// ---- flow-read --------------------------------------------------------------

fn flow_read(pid: u32, reps: usize, interval_ms: u64) -> anyhow::Result<serde_json::Value> {
    let id = flow_map_of(pid)?;
    let map = aya::maps::Map::from_map_data(MapData::from_id(id)?)?;
    let mut reader = FlowReader::of_map(map)?;
    let mut ns = Vec::with_capacity(reps);
    let mut flows = Vec::with_capacity(reps);
    // One read first, as macdrop's first report: the dates of every flow
    // in the table are then known, as in its steady state.
    reader.read()?;
    for _ in 0..reps {
        std::thread::sleep(std::time::Duration::from_millis(interval_ms));
        let t = Instant::now();
        let all = reader.read()?;
        ns.push(t.elapsed().as_nanos() as u64);
        flows.push(all.values().map(Vec::len).sum::<usize>());
    }
    Ok(json!({ "map_id": id, "ns": ns, "flows": flows }))
}

/// The id of the flow table among `pid`'s BPF maps (/proc/PID/fdinfo
/// names each map fd's id; ids are host-wide, so other processes' tables,
/// a test's say, are told apart).
fn flow_map_of(pid: u32) -> anyhow::Result<u32> {
    let dir = format!("/proc/{pid}/fdinfo");
    for entry in std::fs::read_dir(&dir).with_context(|| format!("reading {dir}"))? {
        let Ok(info) = std::fs::read_to_string(entry?.path()) else {
            continue;
        };
        let Some(id) = info
            .lines()
            .find_map(|l| l.strip_prefix("map_id:"))
            .and_then(|v| v.trim().parse::<u32>().ok())
        else {
            continue;
        };
        if aya::maps::MapInfo::from_id(id).is_ok_and(|m| m.name_as_str() == Some(names::FLOWS)) {
            return Ok(id);
        }
    }
    bail!("process {pid} holds no {} map", names::FLOWS)
}

// ---- tcx-floor --------------------------------------------------------------

fn tcx_floor(
    prefix: &str,
    count: u32,
    threads: &[usize],
    reps: usize,
) -> anyhow::Result<serde_json::Value> {
    ensure!(threads.iter().all(|&t| t > 0), "--threads must be positive");
    let ifindexes = (1..=count)
        .map(|i| ifindex_of(&format!("{prefix}{i}")))
        .collect::<anyhow::Result<Vec<u32>>>()?;
    let mut ebpf = loader::load(netns_inode()?, &[])?;
    tc::load_tc_program(&mut ebpf)?;
    let prog = tc::program_fd(&mut ebpf)?;
    // Each worker enters the namespace itself, as macdrop's workers do for
    // --netns (a path, so the setns really happens).
    let ns = macdrop::netns::Namespace::open("/proc/self/ns/net")?;
    let mut runs: BTreeMap<usize, (Vec<f64>, Vec<f64>)> = BTreeMap::new();
    for _ in 0..reps {
        for &t in threads {
            let chunks: Vec<Vec<u32>> = (0..t)
                .map(|k| ifindexes.iter().copied().skip(k).step_by(t).collect())
                .collect();
            let started = Instant::now();
            let links = std::thread::scope(|s| {
                let handles: Vec<_> = chunks
                    .iter()
                    .map(|chunk| {
                        let ns = &ns;
                        s.spawn(move || -> anyhow::Result<Vec<tc::TcAttachment>> {
                            let _inside = ns.enter()?;
                            chunk.iter().map(|&i| tc::attach_tcx_fd(prog, i)).collect()
                        })
                    })
                    .collect();
                handles
                    .into_iter()
                    .map(|h| h.join().expect("attach worker panicked"))
                    .collect::<anyhow::Result<Vec<_>>>()
            })?;
            let create = started.elapsed().as_secs_f64();
            let started = Instant::now();
            std::thread::scope(|s| {
                for chunk in links {
                    let ns = &ns;
                    s.spawn(move || {
                        let _inside = ns.enter();
                        for link in chunk {
                            let _ = link.detach();
                        }
                    });
                }
            });
            let detach = started.elapsed().as_secs_f64();
            let run = runs.entry(t).or_default();
            run.0.push(create);
            run.1.push(detach);
        }
    }
    let runs: Vec<_> = runs
        .into_iter()
        .map(
            |(t, (create, detach))| json!({ "threads": t, "create_s": create, "detach_s": detach }),
        )
        .collect();
    Ok(json!({ "count": count, "runs": runs }))
}
