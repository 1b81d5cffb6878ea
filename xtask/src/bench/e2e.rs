//! Part 2: end-to-end receive rate through a veth pair between two
//! namespaces (and through a bridge), with nothing attached, macdrop with
//! each `--attach` mode, an empty program on each hook, and tcpdump. Each
//! scenario is built twice, as twin labs; one sender alternates between
//! them every millisecond or so (`traffic::PairedFlow`), the setup attached
//! in one twin and nothing in the other, and the setup's rate is reported
//! as a ratio to the other twin's, measured in the same moments. Which twin
//! carries the setup alternates from one repetition to the next, so a
//! difference between the twins cancels; nothing attached in both (A/A)
//! is measured as a setup, the noise every ratio carries.
//!
//! The flood scenarios send what macdrop exists for at the sender's full
//! rate: every frame mismatched (foreign unicast, or the receiver's IP
//! under a MAC nobody has), into a standalone veth and into a bridge port.
//! Nothing is received there (the stack drops the frames as for another
//! host), so their rate is the frames sent per CPU-second of the path.

use std::{
    collections::BTreeMap,
    net::{Ipv4Addr, SocketAddrV4},
    thread::sleep,
    time::Duration,
};

use anyhow::{Context as _, Result, ensure};
use macdrop_tests::{
    lab::{Iface, PairLab, PairOptions},
    netns::{BENCH_PREFIX, NetNs},
};
use serde_json::{Value, json};

use super::{
    Settings,
    proc::Proc,
    stats::{self, Stat},
    traffic::{self, PairedFlow, Path, Rates, arm_rates},
};

/// What is attached to the receiving interface.
#[derive(Clone, Copy, Debug)]
enum Kind {
    /// `macdrop watch --iface IF --attach MODE`.
    Macdrop(&'static str),
    /// The same with `--self-stats` (BPF run-time statistics on), and the
    /// empty tc program attached beside it on the same interface, the
    /// floor baseline (`macdrop-bench attach-empty --floor`) after it: the
    /// kernel's statistics of each program, read around the window
    /// (`macdrop-bench prog-stats`), give macdrop's programs and the empty
    /// one over the same frames in the same moments (cache misses and
    /// all). The statistics cost two clock reads per run and the empty
    /// program runs too, so the ratio of this row is not `auto`'s.
    MacdropInSitu,
    /// `macdrop-bench attach-empty --hook HOOK`.
    Empty(&'static str),
    /// `tcpdump -i IF -w /dev/null`, with `-p` if false.
    Tcpdump { promisc: bool },
}

impl Kind {
    fn label(self) -> String {
        match self {
            Kind::Macdrop(mode) => format!("macdrop --attach {mode}"),
            Kind::MacdropInSitu => {
                "macdrop --attach auto --self-stats, empty and floor tc programs beside it".into()
            }
            Kind::Empty("xdp") => "empty XDP program (driver)".into(),
            Kind::Empty("xdp-generic") => "empty XDP program (generic)".into(),
            Kind::Empty(_) => "empty tc program".into(),
            Kind::Tcpdump { promisc: true } => "tcpdump -w /dev/null".into(),
            Kind::Tcpdump { promisc: false } => "tcpdump -p -w /dev/null".into(),
        }
    }
}

/// Two namespaces (`macdrop_tests::lab::PairLab`) and the setups measured
/// on the receiving interface.
struct Lab {
    name: &'static str,
    description: String,
    pair: PairLab,
    dst: SocketAddrV4,
    setups: Vec<Kind>,
    /// Where the hooks go when not on the interface holding the address
    /// (a bridge's port).
    hooks_on: Option<&'static str>,
    /// Every frame mismatched: the rate is of frames sent.
    flood: bool,
}

impl Lab {
    /// Where its flow goes.
    fn path(&self) -> Path<'_> {
        Path {
            tx: self.pair.tx(),
            rx: self.pair.rx(),
            dst: self.dst,
        }
    }

    /// Where the hooks go: the receiving veth, the bridge over it, or its
    /// port.
    fn iface(&self) -> &str {
        self.hooks_on.unwrap_or(self.pair.receiving())
    }
}

/// What a flood scenario's frames are.
#[derive(Clone, Copy)]
enum Flood {
    /// To an address of the subnet that nobody has, under a MAC nobody has.
    Foreign,
    /// To the receiver's address, under a MAC nobody has.
    HostIpWrongMac,
}

const FLOOD_SETUPS: [Kind; 4] = [
    Kind::Macdrop("auto"),
    Kind::MacdropInSitu,
    Kind::Empty("tc"),
    Kind::Tcpdump { promisc: true },
];

/// A MAC nobody in the labs has.
const NOBODY: [u8; 6] = [0x02, 0, 0, 0, 0x0d, 0x99];

/// A pair lab whose sender's neighbour entry sends every frame under
/// `NOBODY`'s MAC: into the standalone veth (`bridge` false) or into a port
/// of a bridge, hooks on the port.
fn flood_lab(flood: Flood, bridge: bool) -> Result<Lab> {
    let rx_ipv4 = Ipv4Addr::new(198, 51, 100, 2);
    let pair = s0_r0_pair(0x0d, rx_ipv4, bridge)?;
    let (dst, what, class) = match flood {
        Flood::Foreign => (
            Ipv4Addr::new(198, 51, 100, 99),
            "another address",
            "foreign",
        ),
        Flood::HostIpWrongMac => (rx_ipv4, "the receiver's address", "host_ip_wrong_mac"),
    };
    let nobody = NOBODY.map(|b| format!("{b:02x}")).join(":");
    pair.tx().exec(&[
        "ip",
        "neigh",
        "replace",
        &dst.to_string(),
        "lladdr",
        &nobody,
        "dev",
        "s0",
        "nud",
        "permanent",
    ])?;
    let (name, into) = match (flood, bridge) {
        (Flood::Foreign, false) => ("flood foreign, veth", "the standalone veth `r0`"),
        (Flood::HostIpWrongMac, false) => {
            ("flood host_ip_wrong_mac, veth", "the standalone veth `r0`")
        }
        (Flood::Foreign, true) => ("flood foreign, bridge port", "`r0`, a port of `br0`"),
        (Flood::HostIpWrongMac, true) => (
            "flood host_ip_wrong_mac, bridge port",
            "`r0`, a port of `br0`",
        ),
    };
    Ok(Lab {
        name,
        description: format!(
            "every frame {class}: UDP to {what} under a MAC nobody has, into {into}, hooks on \
             `r0`; nothing is received, so the rate is of frames sent"
        ),
        pair,
        dst: SocketAddrV4::new(dst, 9000),
        setups: FLOOD_SETUPS.to_vec(),
        hooks_on: Some("r0"),
        flood: true,
    })
}

const VETH_SETUPS: [Kind; 10] = [
    Kind::Macdrop("auto"),
    Kind::MacdropInSitu,
    Kind::Macdrop("xdp"),
    Kind::Macdrop("xdp-generic"),
    Kind::Macdrop("tc"),
    Kind::Empty("xdp"),
    Kind::Empty("xdp-generic"),
    Kind::Empty("tc"),
    Kind::Tcpdump { promisc: true },
    Kind::Tcpdump { promisc: false },
];

const BRIDGE_SETUPS: [Kind; 6] = [
    Kind::Macdrop("auto"),
    Kind::MacdropInSitu,
    Kind::Macdrop("xdp"),
    Kind::Macdrop("tc"),
    Kind::Empty("xdp-generic"),
    Kind::Empty("tc"),
];

/// The bench's own namespaces (`macdrop-b-*`), sender and receiver.
fn namespaces() -> Result<(NetNs, NetNs)> {
    Ok((
        NetNs::with_prefix(BENCH_PREFIX)?,
        NetNs::with_prefix(BENCH_PREFIX)?,
    ))
}

/// `s0` (sender) and `r0` (receiver, `rx_ipv4`, or a port of `br0`
/// holding it), their MACs 02:00:00:00:`id`:01, :02 and :0b, in the
/// bench's own namespaces.
pub(super) fn s0_r0_pair(id: u8, rx_ipv4: Ipv4Addr, bridge: bool) -> Result<PairLab> {
    let (tx, rx) = namespaces()?;
    PairLab::new(
        tx,
        rx,
        &PairOptions {
            tx: Iface {
                name: "s0",
                mac: [0x02, 0, 0, 0, id, 0x01],
            },
            tx_ipv4: Ipv4Addr::new(198, 51, 100, 1),
            rx: Iface {
                name: "r0",
                mac: [0x02, 0, 0, 0, id, 0x02],
            },
            rx_bridge: bridge.then_some(Iface {
                name: "br0",
                mac: [0x02, 0, 0, 0, id, 0x0b],
            }),
            rx_ipv4,
        },
    )
}

fn veth_lab() -> Result<Lab> {
    let rx_ipv4 = Ipv4Addr::new(198, 51, 100, 2);
    let pair = s0_r0_pair(0x0e, rx_ipv4, false)?;
    Ok(Lab {
        name: "veth",
        description: "UDP to the receiver's address through a veth pair; hooks on the receiving \
                      veth (`r0`, standalone)"
            .into(),
        pair,
        dst: SocketAddrV4::new(rx_ipv4, 9000),
        setups: VETH_SETUPS.to_vec(),
        hooks_on: None,
        flood: false,
    })
}

fn bridge_lab() -> Result<Lab> {
    let (tx, rx) = namespaces()?;
    let rx_ipv4 = Ipv4Addr::new(203, 0, 113, 2);
    let pair = PairLab::new(
        tx,
        rx,
        &PairOptions {
            tx: Iface {
                name: "s0",
                mac: [0x02, 0, 0, 0, 0x0f, 0x01],
            },
            tx_ipv4: Ipv4Addr::new(203, 0, 113, 1),
            rx: Iface {
                name: "p0",
                mac: [0x02, 0, 0, 0, 0x0f, 0x02],
            },
            rx_bridge: Some(Iface {
                name: "br0",
                mac: [0x02, 0, 0, 0, 0x0f, 0x0b],
            }),
            rx_ipv4,
        },
    )?;
    Ok(Lab {
        name: "bridge",
        description: "UDP to the bridge's address through a veth port of `br0`; hooks on the \
                      bridge device (`--iface br0`), nothing on the port"
            .into(),
        pair,
        dst: SocketAddrV4::new(rx_ipv4, 9000),
        setups: BRIDGE_SETUPS.to_vec(),
        hooks_on: None,
        flood: false,
    })
}

/// One setup's measurements.
pub struct Row {
    pub label: String,
    kind: Kind,
    /// The hook macdrop reported (macdrop rows).
    pub hook: Option<String>,
    pub rates: Vec<Rates>,
    /// Each rate per CPU-second over the mean of the two nothing-attached
    /// measurements around it: the figure compared.
    pub ratios: Vec<f64>,
    /// The same with the wall-clock rates (at the mercy of other work).
    pub wall_ratios: Vec<f64>,
    /// In-situ rows (`--self-stats`): per program, its average ns per run
    /// in each repetition.
    pub in_situ: Vec<InSituRuns>,
}

/// One program's in-situ figures over the repetitions of a row.
pub struct InSituRuns {
    pub program: String,
    /// Average ns per run, one per repetition.
    pub ns: Vec<f64>,
    /// Runs counted, one per repetition.
    pub runs: Vec<f64>,
    /// Per repetition, its ns per run less the empty tc program's over
    /// the same interval (empty when the empty program did not run).
    pub over_empty: Vec<f64>,
}

pub struct ScenarioResult {
    pub name: &'static str,
    pub description: String,
    /// Every nothing-attached measurement: the twin without the setup.
    pub baseline: Vec<Rates>,
    /// Nothing attached in either twin: one twin's rate over the other's,
    /// as a setup's ratio is taken (A/A), once per repetition.
    pub aa: Vec<f64>,
    pub rows: Vec<Row>,
}

pub struct Results {
    pub reps: usize,
    pub window: Duration,
    pub scenarios: Vec<ScenarioResult>,
}

pub fn run(s: &Settings) -> Result<Results> {
    // An even number, so each twin carries every setup equally often.
    let reps = if s.quick { 1 } else { 6 };
    let window = if s.quick {
        Duration::from_millis(300)
    } else {
        Duration::from_millis(1500)
    };
    let twins = |lab: &dyn Fn() -> Result<Lab>| -> Result<[Lab; 2]> { Ok([lab()?, lab()?]) };
    let labs = [
        twins(&veth_lab)?,
        twins(&bridge_lab)?,
        twins(&|| flood_lab(Flood::Foreign, false))?,
        twins(&|| flood_lab(Flood::HostIpWrongMac, false))?,
        twins(&|| flood_lab(Flood::Foreign, true))?,
        twins(&|| flood_lab(Flood::HostIpWrongMac, true))?,
    ];
    let mut scenarios: Vec<ScenarioResult> = labs
        .iter()
        .map(|[lab, _]| ScenarioResult {
            name: lab.name,
            description: lab.description.clone(),
            baseline: Vec::new(),
            aa: Vec::new(),
            rows: lab
                .setups
                .iter()
                .map(|&kind| Row {
                    label: kind.label(),
                    kind,
                    hook: None,
                    rates: Vec::new(),
                    ratios: Vec::new(),
                    wall_ratios: Vec::new(),
                    in_situ: Vec::new(),
                })
                .collect(),
        })
        .collect();
    for rep in 0..reps {
        let (under, other) = under_test(rep);
        for (twins, result) in labs.iter().zip(scenarios.iter_mut()) {
            println!(
                "xtask: bench: end-to-end {} repetition {}/{reps}",
                twins[0].name,
                rep + 1
            );
            let aa = measure(twins, s, window, &mut || Ok(()))?;
            result.baseline.push(aa[other]);
            result
                .aa
                .push(aa[under].per_cpu_second / aa[other].per_cpu_second);
            for row in &mut result.rows {
                let attached = attach(&twins[under], row.kind, s)?;
                // In situ: every program's statistics at the window's
                // start and end.
                let mut readings = Vec::new();
                let measured = measure(twins, s, window, &mut || {
                    if let Kind::MacdropInSitu = row.kind {
                        readings.push(prog_stats(&twins[under], s)?);
                    }
                    Ok(())
                });
                let hook = detach(attached)?;
                let programs = in_situ(&readings);
                let empty_ns = programs
                    .iter()
                    .find(|(p, _, _)| p == EMPTY_TC)
                    .map(|&(_, ns, _)| ns);
                for (program, ns, runs) in programs {
                    let at = match row.in_situ.iter().position(|p| p.program == program) {
                        Some(at) => at,
                        None => {
                            row.in_situ.push(InSituRuns {
                                program,
                                ns: Vec::new(),
                                runs: Vec::new(),
                                over_empty: Vec::new(),
                            });
                            row.in_situ.len() - 1
                        }
                    };
                    row.in_situ[at].ns.push(ns);
                    row.in_situ[at].runs.push(runs as f64);
                    row.in_situ[at].over_empty.extend(empty_ns.map(|e| ns - e));
                }
                let m = measured?;
                result.baseline.push(m[other]);
                row.rates.push(m[under]);
                row.ratios
                    .push(m[under].per_cpu_second / m[other].per_cpu_second);
                row.wall_ratios.push(m[under].received / m[other].received);
                if let Some(h) = hook {
                    if let Kind::Empty("tc") = row.kind {
                        // Labelled with the hook it really used.
                        row.label = format!(
                            "{} ({})",
                            row.kind.label(),
                            if h == "tcx" { "TCX" } else { h.as_str() }
                        );
                    }
                    row.hook = Some(h);
                }
            }
        }
    }
    Ok(Results {
        reps,
        window,
        scenarios,
    })
}

/// In repetition `rep`: which twin carries the setup, and which is the
/// one with nothing attached. They swap every repetition.
fn under_test(rep: usize) -> (usize, usize) {
    if rep.is_multiple_of(2) {
        (1, 0)
    } else {
        (0, 1)
    }
}

/// Both twins' rates over `window`, the flow interleaved between them,
/// after a warm-up. A flood's warm-up outlasts macdrop's report interval
/// (`--interval 1`, below): macdrop samples a flooded interface's flow
/// records from the first report that sees the flood on
/// (`session::flow_sampling`), so the window measures a flood's steady
/// state, as in any flood longer than a second. `at_edges` runs right
/// after the window's start and right after its end (in-situ readings).
fn measure(
    twins: &[Lab; 2],
    s: &Settings,
    window: Duration,
    at_edges: &mut dyn FnMut() -> Result<()>,
) -> Result<[Rates; 2]> {
    let flow = PairedFlow::start(twins.each_ref().map(Lab::path), 0, 1)?;
    sleep(warm_up(&twins[0], s));
    let a = flow.sample();
    let edge = at_edges();
    sleep(window);
    let b = flow.sample();
    let edge = edge.and_then(|()| at_edges());
    flow.stop()?;
    edge?;
    Ok([0, 1].map(|i| {
        let mut r = arm_rates(a[i], b[i]);
        if twins[i].flood {
            // Nothing is received: the frames the path handled are those sent.
            r.received = r.sent;
            r.per_cpu_second = r.sent / r.cpu_share;
        }
        r
    }))
}

/// How long `measure` lets the flow run before its window.
fn warm_up(lab: &Lab, s: &Settings) -> Duration {
    match (s.quick, lab.flood) {
        (true, _) => Duration::from_millis(100),
        (false, false) => Duration::from_millis(300),
        (false, true) => Duration::from_millis(1300),
    }
}

/// What is attached while a setup is measured.
struct Attached {
    kind: Kind,
    proc: Option<Proc>,
    hook: Option<String>,
    /// In situ: the empty tc program beside macdrop.
    beside: Option<Proc>,
}

/// Starts what `kind` needs on the receiving interface (pinned to the
/// receiver's CPU, away from the path under test) and waits until it is
/// in place.
fn attach(lab: &Lab, kind: Kind, s: &Settings) -> Result<Attached> {
    let pinned = |argv: &[&std::ffi::OsStr]| lab.pair.rx().command_on_cpus("1", argv);
    let timeout = Duration::from_secs(60);
    let (proc, hook) = match kind {
        Kind::Macdrop(_) | Kind::MacdropInSitu => {
            let (mode, stats) = match kind {
                Kind::Macdrop(mode) => (mode, None::<&std::ffi::OsStr>),
                _ => ("auto", Some("--self-stats".as_ref())),
            };
            let mut argv: Vec<&std::ffi::OsStr> = vec![
                s.macdrop_bin.as_os_str(),
                "watch".as_ref(),
                "--iface".as_ref(),
                lab.iface().as_ref(),
                "--attach".as_ref(),
                mode.as_ref(),
                "--interval".as_ref(),
                "1".as_ref(),
                "--format".as_ref(),
                "json".as_ref(),
            ];
            argv.extend(stats);
            let cmd = pinned(&argv);
            let mut p = Proc::spawn("macdrop", cmd, false)?;
            let line = p.wait_line(false, timeout, |l| l.starts_with("macdrop: watching "))?;
            let hook = line
                .text
                .rsplit_once(", ")
                .map(|(_, h)| h.trim_end_matches(')').to_owned());
            (Some(p), hook)
        }
        Kind::Empty(hook) => {
            let (p, used) = attach_empty(lab, hook, false, s)?;
            (Some(p), used)
        }
        Kind::Tcpdump { promisc } => {
            let mut argv: Vec<&std::ffi::OsStr> = vec![
                "tcpdump".as_ref(),
                "-i".as_ref(),
                lab.iface().as_ref(),
                "-w".as_ref(),
                "/dev/null".as_ref(),
            ];
            if !promisc {
                argv.push("-p".as_ref());
            }
            let mut p = Proc::spawn("tcpdump", pinned(&argv), false)?;
            p.wait_line(false, timeout, |l| l.contains("listening on"))?;
            (Some(p), None)
        }
    };
    // The in-situ baseline: after macdrop, so TCX runs it after macdrop's
    // program, on the same frames.
    let beside = match kind {
        Kind::MacdropInSitu => Some(attach_empty(lab, "tc", true, s)?.0),
        _ => None,
    };
    Ok(Attached {
        kind,
        proc,
        hook,
        beside,
    })
}

/// `macdrop-bench attach-empty --hook HOOK` on the lab's interface, in
/// place (with `floor`, the floor baseline after the empty program); the
/// hook it really used (clsact below Linux 6.6).
fn attach_empty(
    lab: &Lab,
    hook: &str,
    floor: bool,
    s: &Settings,
) -> Result<(Proc, Option<String>)> {
    let mut argv: Vec<&std::ffi::OsStr> = vec![
        s.bench_bin.as_os_str(),
        "attach-empty".as_ref(),
        "--iface".as_ref(),
        lab.iface().as_ref(),
        "--hook".as_ref(),
        hook.as_ref(),
    ];
    if floor {
        argv.push("--floor".as_ref());
    }
    let cmd = lab.pair.rx().command_on_cpus("1", &argv);
    let mut p = Proc::spawn("macdrop-bench attach-empty", cmd, true)?;
    // "ready HOOK".
    let line = p.wait_line(true, Duration::from_secs(60), |l| l.starts_with("ready"))?;
    let used = line.text.strip_prefix("ready").map(str::trim);
    Ok((p, used.filter(|h| !h.is_empty()).map(str::to_owned)))
}

/// The empty tc program's name (`macdrop-bench attach-empty`).
const EMPTY_TC: &str = "bench_empty_tc";
/// The floor baseline's (`macdrop-bench attach-empty --floor`). Both
/// names fit the kernel's 15 bytes, so its statistics carry them whole.
const FLOOR_TC: &str = "bench_floor_tc";
const _: () = assert!(EMPTY_TC.len() <= 15 && FLOOR_TC.len() <= 15);

/// Programs by name, each with its average ns per run and its runs.
type InSitu = Vec<(String, f64, u64)>;

/// One reading of every loaded program's statistics
/// (`macdrop-bench prog-stats`, on the receiver's CPU): kernel name
/// (15 bytes at most) -> (runs, run time in ns), summed over programs of
/// the same name.
type Reading = BTreeMap<String, (u64, u64)>;

fn prog_stats(lab: &Lab, s: &Settings) -> Result<Reading> {
    let argv: [&std::ffi::OsStr; 2] = [s.bench_bin.as_os_str(), "prog-stats".as_ref()];
    let out = lab
        .pair
        .rx()
        .command_on_cpus("1", &argv)
        .output()
        .context("running macdrop-bench prog-stats")?;
    ensure!(
        out.status.success(),
        "macdrop-bench prog-stats failed: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
    let programs: Vec<Value> =
        serde_json::from_slice(&out.stdout).context("reading macdrop-bench prog-stats")?;
    let mut reading = Reading::new();
    for p in programs {
        let (Some(name), Some(runs), Some(ns)) = (
            p["name"].as_str(),
            p["runs"].as_u64(),
            p["run_time_ns"].as_u64(),
        ) else {
            continue;
        };
        let e = reading.entry(name.to_owned()).or_default();
        e.0 += runs;
        e.1 += ns;
    }
    Ok(reading)
}

/// The programs that ran between the first reading and the last, with
/// their average ns per run over exactly that interval: macdrop's and the
/// empty tc program's over the same frames. Names are the kernel's
/// (truncated to 15 bytes), given in full for macdrop's programs.
fn in_situ(readings: &[Reading]) -> InSitu {
    let (Some(first), Some(last)) = (readings.first(), readings.last()) else {
        return Vec::new();
    };
    last.iter()
        .filter(|(name, _)| name.starts_with("macdrop_") || name.starts_with("bench_"))
        .filter_map(|(name, &(runs, ns))| {
            let (runs0, ns0) = first.get(name).copied().unwrap_or_default();
            let n = runs.checked_sub(runs0).filter(|n| *n > 0)?;
            let avg = ns.saturating_sub(ns0) as f64 / n as f64;
            Some((full_name(name), avg, n))
        })
        .collect()
}

/// A program's name as the object has it, from the kernel's 15 bytes
/// (the two `kfree_skb` programs, tp_btf and raw, share theirs; macdrop
/// loads one).
fn full_name(kernel: &str) -> String {
    const NAMES: [&str; 3] = [
        "macdrop_kfree_skb_*",
        "macdrop_xdp_legacy",
        "macdrop_tc_egress",
    ];
    NAMES
        .into_iter()
        .find(|n| kernel.len() == 15 && n.starts_with(kernel))
        .unwrap_or(kernel)
        .to_owned()
}

/// Stops what `attach` started; returns the hook macdrop reported.
fn detach(a: Attached) -> Result<Option<String>> {
    let timeout = Duration::from_secs(30);
    if let Some(mut p) = a.proc {
        match a.kind {
            Kind::Empty(_) => {
                p.stop_by_stdin(timeout)?;
            }
            _ => {
                p.stop(timeout)?;
            }
        }
    }
    if let Some(mut p) = a.beside {
        p.stop_by_stdin(timeout)?;
    }
    Ok(a.hook)
}

impl Row {
    fn macdrop_mode(&self) -> Option<&'static str> {
        match self.kind {
            Kind::Macdrop(m) => Some(m),
            _ => None,
        }
    }
    fn is_tcpdump(&self) -> bool {
        matches!(self.kind, Kind::Tcpdump { .. })
    }
}

impl ScenarioResult {
    /// The measurement's own resolution: with nothing attached in either
    /// twin, one twin's rate over the other's, as every setup's ratio is
    /// taken (A/A: 1.0 if the twins and the machine were steady). Its spread
    /// is the noise any ratio above carries.
    pub fn noise(&self) -> Vec<f64> {
        self.aa.clone()
    }

    /// The row of `macdrop --attach auto`.
    pub fn auto(&self) -> Option<&Row> {
        self.rows.iter().find(|r| r.macdrop_mode() == Some("auto"))
    }

    /// `auto` over the empty program on the hook `auto` used, per
    /// repetition (both measured against nothing attached in the same
    /// repetition, in the same twin): macdrop's own part of its cost, the
    /// hook's dispatch (what an empty program costs) taken out.
    pub fn auto_over_empty_hook(&self) -> Option<Vec<f64>> {
        let (auto, empty) = (self.auto()?, self.empty_on_auto_hook()?);
        Some(
            auto.ratios
                .iter()
                .zip(&empty.ratios)
                .map(|(a, e)| a / e)
                .collect(),
        )
    }

    /// The empty program's row on the hook `auto` used.
    pub fn empty_on_auto_hook(&self) -> Option<&Row> {
        let hook = self.auto()?.hook.as_deref()?;
        self.rows.iter().find(|r| match r.kind {
            Kind::Empty("tc") => matches!(hook, "tcx" | "tc-clsact"),
            Kind::Empty("xdp") => hook == "xdp-driver",
            Kind::Empty(h) => h == hook,
            _ => false,
        })
    }

    /// The explicit macdrop mode with the highest median ratio.
    pub fn cheapest_macdrop(&self) -> Option<&Row> {
        self.rows
            .iter()
            .filter(|r| matches!(r.macdrop_mode(), Some(m) if m != "auto"))
            .max_by(|a, b| median(&a.ratios).total_cmp(&median(&b.ratios)))
    }

    /// The best (highest) median ratio of the tcpdump rows.
    pub fn best_tcpdump(&self) -> Option<f64> {
        self.rows
            .iter()
            .filter(|r| r.is_tcpdump())
            .map(|r| median(&r.ratios))
            .max_by(f64::total_cmp)
    }

    /// Whether `auto`'s hook is the cheapest explicit one, or within the
    /// noise of it (its ratio at least the cheapest one's minimum).
    pub fn auto_verdict(&self) -> Option<String> {
        let auto = self.auto()?;
        let best = self.cheapest_macdrop()?;
        let hook = auto.hook.clone().unwrap_or_default();
        let best_hook = best.hook.clone().unwrap_or_default();
        let best_min = Stat::of(&best.ratios)?.min;
        Some(if hook == best_hook {
            format!("`auto` chose {hook}, the cheapest hook measured here: confirmed")
        } else if median(&auto.ratios) >= best_min {
            format!(
                "`auto` chose {hook}; {best_hook} measured a higher median ratio \
                 ({:.3} vs {:.3}) but within the noise: not contradicted",
                median(&best.ratios),
                median(&auto.ratios)
            )
        } else {
            format!(
                "`auto` chose {hook}, but {best_hook} is cheaper here ({:.3} vs {:.3}): \
                 **not confirmed**",
                median(&best.ratios),
                median(&auto.ratios)
            )
        })
    }
}

pub fn median(v: &[f64]) -> f64 {
    Stat::of(v).map_or(f64::NAN, |s| s.median)
}

/// One field of every measurement.
fn field(rates: &[Rates], f: impl Fn(&Rates) -> f64) -> Vec<f64> {
    rates.iter().map(f).collect()
}

fn rates_json(rates: &[Rates]) -> Value {
    json!({
        "received_pps": stats::json_of(&field(rates, |r| r.received)),
        "sent_pps": stats::json_of(&field(rates, |r| r.sent)),
        "received_per_cpu_second": stats::json_of(&field(rates, |r| r.per_cpu_second)),
        "cpu_share": stats::json_of(&field(rates, |r| r.cpu_share)),
    })
}

impl Results {
    pub fn json(&self, conditions: &str) -> Value {
        let scenarios: Vec<Value> = self
            .scenarios
            .iter()
            .map(|sc| {
                let rows: Vec<Value> = sc
                    .rows
                    .iter()
                    .map(|r| {
                        json!({
                            "setup": r.label,
                            "hook": r.hook,
                            "rates": rates_json(&r.rates),
                            "ratio_to_nothing": stats::json_of(&r.ratios),
                            "wall_ratio_to_nothing": stats::json_of(&r.wall_ratios),
                            "in_situ_ns_per_run": r
                                .in_situ
                                .iter()
                                .map(|p| (p.program.clone(), stats::json_of(&p.ns)))
                                .collect::<serde_json::Map<_, _>>(),
                        })
                    })
                    .collect();
                json!({
                    "scenario": sc.name,
                    "description": sc.description,
                    "nothing_attached": rates_json(&sc.baseline),
                    "noise_ratio_nothing_to_nothing": stats::json_of(&sc.noise()),
                    "setups": rows,
                    "auto": sc.auto_verdict(),
                })
            })
            .collect();
        json!({
            "reps": self.reps,
            "window_s": self.window.as_secs_f64(),
            "frame_bytes": 60,
            "scenarios": scenarios,
            "per_cause": self
                .per_cause()
                .iter()
                .map(|c| c.json(conditions))
                .collect::<Vec<_>>(),
        })
    }

    /// The tables; `conditions` (build, kernel, CPU, load) heads the
    /// per-cause rows.
    pub fn markdown(&self, conditions: &str) -> String {
        let causes = self.per_cause();
        let mut md = format!(
            "UDP datagrams in 60-byte frames from one sender pinned to CPU 0, where the whole \
             receive path runs (in the sender's softirq), into two twin labs in turn: it \
             switches between them every {} batches of {} (about a millisecond) and charges \
             each phase's CPU time to the lab it sent into. A receiver on CPU 1 drains both \
             labs' sockets every 200 µs without waiting on them; whatever is attached \
             (macdrop, tcpdump, the holder of an empty program) also runs on CPU 1. The setup \
             is attached in one twin, nothing in the other, and the rate compared is datagrams \
             per second of CPU time each lab's path got on CPU 0 (the sender thread's CPU clock \
             plus ksoftirqd/0 during its phases), so both are measured in the same moments and \
             a change of the machine's speed affects both alike; ratio = the setup's twin's rate \
             / the other twin's. The twins swap roles every repetition, so a difference between \
             them cancels; nothing attached in both (A/A) is measured the same way in every \
             repetition and shown as the noise. The wall-clock ratio is shown beside it. Each \
             setup is measured for {:.1} s of the pair (about half of it per lab); a flood \
             after 1.3 s of it, past macdrop's first report (`--interval 1`) in the flood, \
             from which it samples the interface's flow records (its steady state in any flood \
             longer than a second). {} repetition(s); median (min–max).\n",
            traffic::PHASE_BATCHES,
            traffic::BATCH,
            self.window.as_secs_f64(),
            self.reps
        );
        for sc in &self.scenarios {
            md += &format!(
                "\n**{}**: {}. Nothing attached: {} Mpps per CPU-second ({} Mpps received, the \
                 path had {} of CPU 0 during its phases). Noise (nothing attached in either twin, \
                 measured as a setup, A/A): ratio {}.\n\n",
                sc.name,
                sc.description,
                show_mpps(&field(&sc.baseline, |r| r.per_cpu_second)),
                show_mpps(&field(&sc.baseline, |r| r.received)),
                stats::show(&field(&sc.baseline, |r| r.cpu_share), 2),
                stats::show(&sc.noise(), 3),
            );
            md += "| setup | hook | Mpps per CPU-second | ratio to nothing attached | cost | \
                   Mpps received (wall) | wall-clock ratio |\n";
            md += "|---|---|---|---|---|---|---|\n";
            for r in &sc.rows {
                md += &format!(
                    "| {} | {} | {} | {} | {:.0}% | {} | {} |\n",
                    r.label,
                    r.hook.as_deref().unwrap_or(match r.kind {
                        Kind::Empty("xdp") => "xdp-driver",
                        Kind::Empty("xdp-generic") => "xdp-generic",
                        Kind::Empty(_) => "tc (hook not reported)",
                        Kind::Tcpdump { .. } => "AF_PACKET",
                        _ => "-",
                    }),
                    show_mpps(&field(&r.rates, |x| x.per_cpu_second)),
                    stats::show(&r.ratios, 3),
                    (1.0 - median(&r.ratios)) * 100.0,
                    show_mpps(&field(&r.rates, |x| x.received)),
                    stats::show(&r.wall_ratios, 3),
                );
            }
            if let Some(v) = sc.auto_verdict() {
                md += &format!("\n{v}.\n");
            }
            if let Some(split) = cost_split(sc, &causes) {
                md += &format!("\n{split}\n");
            }
        }
        md + &per_cause_markdown(&causes, conditions)
    }

    /// Each in-situ program figure of each scenario beside the empty
    /// program's, measured in the same scenario.
    pub fn per_cause(&self) -> Vec<Cause> {
        let mut out = Vec::new();
        for sc in &self.scenarios {
            let in_situ = |kind: fn(&Kind) -> bool| {
                sc.rows
                    .iter()
                    .filter(move |r| kind(&r.kind))
                    .flat_map(|r| r.in_situ.iter())
            };
            let empty: Vec<f64> = in_situ(|k| matches!(k, Kind::MacdropInSitu))
                .filter(|p| p.program == EMPTY_TC)
                .flat_map(|p| p.ns.iter().copied())
                .collect();
            // A frame's whole path with nothing attached, in ns of CPU 0.
            let path_ns = 1e9 / median(&field(&sc.baseline, |r| r.per_cpu_second));
            // The ingress classifier runs once per frame received on the
            // watched interface: the other programs' runs per frame are
            // theirs over its.
            let frames = in_situ(|k| matches!(k, Kind::MacdropInSitu))
                .find(|p| p.program == "macdrop_tc" || p.program.starts_with("macdrop_xdp"))
                .map(|p| median(&p.runs));
            for p in in_situ(|k| matches!(k, Kind::MacdropInSitu)).filter(|p| p.program != EMPTY_TC)
            {
                let mut c = Cause {
                    scenario: sc.name,
                    program: p.program.clone(),
                    ns: p.ns.clone(),
                    runs: p.runs.clone(),
                    empty: empty.clone(),
                    over: p.over_empty.clone(),
                    share: None,
                };
                c.share = frames
                    .filter(|f| *f > 0.0 && path_ns.is_finite() && !c.over.is_empty())
                    .map(|f| c.over_empty() * (median(&c.runs) / f) / path_ns);
                out.push(c);
            }
        }
        out
    }
}

/// One of macdrop's programs in one scenario, in situ: the kernel's own
/// run time per run (BPF_ENABLE_STATS), beside the empty tc program's.
pub struct Cause {
    pub scenario: &'static str,
    pub program: String,
    /// ns per run, one figure per repetition.
    pub ns: Vec<f64>,
    /// Runs in each repetition (since the load: start-up included).
    pub runs: Vec<f64>,
    /// The empty tc program's ns per run in the same scenario, beside it.
    pub empty: Vec<f64>,
    /// Per repetition, `ns` less `empty` over the same interval.
    pub over: Vec<f64>,
    /// An estimate: the program's own cost per frame (`over_empty` times
    /// its runs per classified frame) as a share of the frame's whole path
    /// with nothing attached (1 / the nothing-attached rate per
    /// CPU-second). Steadier than the ratios, which carry the A/A noise.
    pub share: Option<f64>,
}

impl Cause {
    /// What the program does per frame.
    pub fn what(&self) -> &'static str {
        match self.program.as_str() {
            "macdrop_tc" => "ingress classifier (tc): class counters, flow record",
            "macdrop_xdp" | "macdrop_xdp_legacy" => {
                "ingress classifier (XDP): class counters, flow record"
            }
            "macdrop_kfree_skb_*" => "confirmed drops (`kfree_skb`): every skb freed as dropped",
            FLOOR_TC => {
                "floor, not macdrop: the interface's config slot, the destination MAC against \
                 it, one per-CPU counter"
            }
            _ => "other",
        }
    }

    /// The program's own cost per run: the median over the repetitions of
    /// its figure less the empty program's over the same frames (which
    /// holds the statistics' clock reads); NaN if never paired.
    pub fn over_empty(&self) -> f64 {
        if self.over.is_empty() {
            return f64::NAN;
        }
        median(&self.over)
    }

    fn json(&self, conditions: &str) -> Value {
        json!({
            "scenario": self.scenario,
            "program": self.program,
            "what": self.what(),
            "ns_per_run": stats::json_of(&self.ns),
            "runs": stats::json_of(&self.runs),
            "empty_tc_ns_per_run": stats::json_of(&self.empty),
            "over_empty_ns": self.over_empty(),
            "over_empty_ns_per_repetition": stats::json_of(&self.over),
            "share_of_path_estimate": self.share,
            "conditions": conditions,
        })
    }
}

/// Where `auto`'s cost in scenario `sc` goes: the hook's own price (the
/// empty program on the same hook), macdrop's own part (`auto` over it),
/// and the in-situ estimate of each of its programs (`causes`).
fn cost_split(sc: &ScenarioResult, causes: &[Cause]) -> Option<String> {
    let auto = sc.auto()?;
    let empty = sc.empty_on_auto_hook()?;
    let own = sc.auto_over_empty_hook()?;
    let cost = |ratio: f64| (1.0 - ratio) * 100.0;
    let mut out = format!(
        "Where `auto`'s cost ({:.1} %) goes: the hook itself, which the {} pays as well, \
         {:.1} %; macdrop's own part (`auto` over that empty program, per repetition) {:.1} %",
        cost(median(&auto.ratios)),
        empty.label,
        cost(median(&empty.ratios)),
        cost(median(&own)),
    );
    let share = |c: &Cause| Some(format!("`{}` {:.1} %", c.program, c.share? * 100.0));
    let here = causes.iter().filter(|c| c.scenario == sc.name);
    let in_situ: Vec<String> = here
        .clone()
        .filter(|c| c.program != FLOOR_TC)
        .filter_map(share)
        .collect();
    if !in_situ.is_empty() {
        out += &format!(
            ", of which the programs' own run time is estimated in situ at {} (the table \
             below)",
            in_situ.join(", ")
        );
    }
    if let Some(floor) = here.clone().find(|c| c.program == FLOOR_TC).and_then(share) {
        out += &format!(
            "; the floor baseline, which only reaches the interface's config, the frame and \
             one counter, costs {floor} by itself"
        );
    }
    Some(out + ".")
}

fn per_cause_markdown(causes: &[Cause], conditions: &str) -> String {
    if causes.is_empty() {
        return String::new();
    }
    let mut md = "\n**Per cause, in situ.** Each of macdrop's programs as it ran in the rows \
                  `macdrop --attach auto --self-stats, empty and floor tc programs beside it` \
                  above, by the kernel's run-time statistics (BPF_ENABLE_STATS, held by a \
                  file descriptor only while the row runs), beside the empty tc program \
                  attached after macdrop's on the same interface and, after that, the floor \
                  baseline (`bench_floor_tc`, not macdrop: it looks up the interface's config \
                  slot, compares the frame's destination MAC with it and adds to one per-CPU \
                  counter, the least any count of frames per interface and destination does; \
                  so what reaching the maps and the frame costs on this machine, with the \
                  cache and TLB misses the test-run figures do not show, stands apart from \
                  what macdrop's logic adds): every program's runs and run time \
                  are read right after the measured window starts and right after it ends \
                  (`macdrop-bench prog-stats`), so macdrop's programs and the empty one are \
                  timed over the same frames in the same moments (a flood's steady state, \
                  its flow records sampled). The statistics' own two clock reads are in \
                  both, so the difference, taken per repetition, is the program's own cost \
                  per run; *over the empty program* is its median (and range). The hook's dispatch \
                  around a program is in neither (the end-to-end ratios hold it). \
                  `kfree_skb` runs once for every skb any namespace drops; under a flood \
                  that is once per frame (`macdrop_kfree_skb_*`: the kernel shortens program \
                  names to 15 bytes, which the tp_btf and raw flavours share; macdrop loads \
                  one). *Share of the path* (an estimate): that cost times the program's \
                  runs per classified frame, over a frame's whole path with nothing \
                  attached (1 / the scenario's nothing-attached rate per CPU-second).\n\n"
        .to_owned();
    md += "| scenario | program | what it does | runs | ns per run | empty tc program, ns per \
           run | over the empty program | share of the path (estimate) | measured under \
           |\n|---|---|---|---|---|---|---|---|---|\n";
    for c in causes {
        md += &format!(
            "| {} | `{}` | {} | {} | {} | {} | {} | {} | {conditions} |\n",
            c.scenario,
            c.program,
            c.what(),
            stats::show(&c.runs, 0),
            stats::show(&c.ns, 0),
            if c.empty.is_empty() {
                "not measured".into()
            } else {
                stats::show(&c.empty, 0)
            },
            // The paired differences' median, and their range: how far
            // the repetitions agree.
            Stat::of(&c.over).map_or("not measured".to_owned(), |o| format!(
                "{:+.0} ns ({:+.0}–{:+.0})",
                o.median, o.min, o.max
            )),
            c.share
                .map_or("-".to_owned(), |s| format!("{:.1} %", s * 100.0)),
        );
    }
    md
}

fn show_mpps(pps: &[f64]) -> String {
    let m: Vec<f64> = pps.iter().map(|p| p / 1e6).collect();
    stats::show(&m, 3)
}

/// The scenario named `name`.
pub fn scenario<'a>(r: &'a Results, name: &str) -> Result<&'a ScenarioResult> {
    r.scenarios
        .iter()
        .find(|s| s.name == name)
        .with_context(|| format!("no {name} scenario"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(kind: Kind, hook: Option<&str>, ratios: &[f64]) -> Row {
        Row {
            label: kind.label(),
            kind,
            hook: hook.map(str::to_owned),
            rates: Vec::new(),
            ratios: ratios.to_vec(),
            wall_ratios: Vec::new(),
            in_situ: Vec::new(),
        }
    }

    #[test]
    fn autos_cost_splits_into_the_hook_and_macdrops_own_part() {
        let sc = ScenarioResult {
            name: "t",
            description: String::new(),
            baseline: Vec::new(),
            aa: vec![1.0],
            rows: vec![
                row(Kind::Macdrop("auto"), Some("tcx"), &[0.97, 0.96]),
                row(Kind::Macdrop("xdp"), Some("xdp-driver"), &[0.5, 0.5]),
                row(Kind::Empty("xdp"), None, &[0.9, 0.9]),
                row(Kind::Empty("tc"), Some("tcx"), &[0.98, 0.96]),
            ],
        };
        assert_eq!(sc.empty_on_auto_hook().unwrap().label, "empty tc program");
        // Per repetition: 0.97 / 0.98 and 0.96 / 0.96.
        let own = sc.auto_over_empty_hook().unwrap();
        assert!((own[0] - 0.97 / 0.98).abs() < 1e-12 && own[1] == 1.0);
        let cause = Cause {
            scenario: "t",
            program: "macdrop_tc".into(),
            ns: vec![30.0],
            runs: vec![1.0],
            empty: vec![10.0],
            over: vec![20.0],
            share: Some(0.004),
        };
        // The floor baseline is not macdrop: beside the hook, never among
        // macdrop's programs.
        let floor = Cause {
            scenario: "t",
            program: FLOOR_TC.into(),
            ns: vec![20.0],
            runs: vec![1.0],
            empty: vec![10.0],
            over: vec![10.0],
            share: Some(0.002),
        };
        let split = cost_split(&sc, &[cause, floor]).unwrap();
        assert!(
            split.contains("estimated in situ at `macdrop_tc` 0.4 % (the table below); the floor"),
            "{split}"
        );
        assert!(
            split.ends_with("costs `bench_floor_tc` 0.2 % by itself."),
            "{split}"
        );
        assert!(split.contains("(3.5 %)"), "{split}");
        assert!(
            split.contains("empty tc program pays as well, 3.0 %"),
            "{split}"
        );
        assert!(split.contains("per repetition) 0.5 %"), "{split}");
        assert!(split.contains("`macdrop_tc` 0.4 %"), "{split}");
    }

    #[test]
    fn in_situ_figures_are_over_the_same_interval_and_paired_per_repetition() {
        let reading = |tc: (u64, u64), empty: (u64, u64), floor: (u64, u64)| -> Reading {
            [
                ("macdrop_tc".to_owned(), tc),
                (EMPTY_TC.to_owned(), empty),
                (FLOOR_TC.to_owned(), floor),
                ("macdrop_kfree_s".to_owned(), (5, 500)),
                ("someone_else".to_owned(), (1, 1)),
            ]
            .into()
        };
        let before = reading((100, 10_000), (100, 5_000), (100, 6_000));
        let after = reading((300, 40_000), (300, 11_000), (300, 14_000));
        let mut got = in_situ(&[before, after]);
        got.sort_by(|a, b| a.0.cmp(&b.0));
        // Only what ran in between, over the interval: 30,000 ns / 200 runs,
        // 6,000 / 200 and 8,000 / 200; the drop program did not run, others
        // are not ours.
        assert_eq!(
            got,
            vec![
                (EMPTY_TC.to_owned(), 30.0, 200),
                (FLOOR_TC.to_owned(), 40.0, 200),
                ("macdrop_tc".to_owned(), 150.0, 200)
            ]
        );
        assert_eq!(full_name("macdrop_kfree_s"), "macdrop_kfree_skb_*");
        assert_eq!(full_name("macdrop_xdp_leg"), "macdrop_xdp_legacy");
        assert_eq!(full_name("macdrop_tc"), "macdrop_tc");
        assert!(in_situ(&[]).is_empty());
        // The median of the per-repetition differences (20, 10, 25), not
        // the difference of the medians (40 - 15).
        let cause = Cause {
            scenario: "t",
            program: "macdrop_tc".into(),
            ns: vec![30.0, 60.0, 40.0],
            runs: vec![1.0; 3],
            empty: vec![10.0, 50.0, 15.0],
            over: vec![20.0, 10.0, 25.0],
            share: None,
        };
        assert_eq!(cause.over_empty(), 20.0);
    }

    #[test]
    fn each_twin_carries_the_setup_in_every_other_repetition() {
        let reps = 8;
        for rep in 0..reps {
            let (under, other) = under_test(rep);
            assert_ne!(under, other);
            assert!(under < 2 && other < 2);
            assert_ne!(under_test(rep + 1).0, under, "swapped each repetition");
        }
        let on_first = (0..reps).filter(|&r| under_test(r).0 == 0).count();
        assert_eq!(on_first * 2, reps, "each twin equally often");
    }
}
