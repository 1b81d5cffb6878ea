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
    net::{Ipv4Addr, SocketAddrV4},
    thread::sleep,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};
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
    /// The same with `--self-stats`: the kernel's run-time statistics of
    /// each of macdrop's programs in the real path (cache misses and all),
    /// which cost two clock reads per run themselves, so the ratio of this
    /// row is not `auto`'s.
    MacdropInSitu,
    /// `macdrop-bench attach-empty --hook HOOK`.
    Empty(&'static str),
    /// `macdrop-bench attach-empty --hook tc --self-stats`: the same
    /// statistics for the empty tc program, the baseline of the in-situ
    /// figures (their clock reads included).
    EmptyInSitu,
    /// `tcpdump -i IF -w /dev/null`, with `-p` if false.
    Tcpdump { promisc: bool },
}

impl Kind {
    fn label(self) -> String {
        match self {
            Kind::Macdrop(mode) => format!("macdrop --attach {mode}"),
            Kind::MacdropInSitu => "macdrop --attach auto --self-stats".into(),
            Kind::Empty("xdp") => "empty XDP program (driver)".into(),
            Kind::Empty("xdp-generic") => "empty XDP program (generic)".into(),
            Kind::Empty(_) => "empty tc program".into(),
            Kind::EmptyInSitu => "empty tc program --self-stats".into(),
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

const FLOOD_SETUPS: [Kind; 5] = [
    Kind::Macdrop("auto"),
    Kind::MacdropInSitu,
    Kind::Empty("tc"),
    Kind::EmptyInSitu,
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

const VETH_SETUPS: [Kind; 11] = [
    Kind::Macdrop("auto"),
    Kind::MacdropInSitu,
    Kind::Macdrop("xdp"),
    Kind::Macdrop("xdp-generic"),
    Kind::Macdrop("tc"),
    Kind::Empty("xdp"),
    Kind::Empty("xdp-generic"),
    Kind::Empty("tc"),
    Kind::EmptyInSitu,
    Kind::Tcpdump { promisc: true },
    Kind::Tcpdump { promisc: false },
];

const BRIDGE_SETUPS: [Kind; 7] = [
    Kind::Macdrop("auto"),
    Kind::MacdropInSitu,
    Kind::Macdrop("xdp"),
    Kind::Macdrop("tc"),
    Kind::Empty("xdp-generic"),
    Kind::Empty("tc"),
    Kind::EmptyInSitu,
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
            let aa = measure(twins, s, window)?;
            result.baseline.push(aa[other]);
            result
                .aa
                .push(aa[under].per_cpu_second / aa[other].per_cpu_second);
            for row in &mut result.rows {
                let attached = attach(&twins[under], row.kind, s)?;
                let window_start = Instant::now() + warm_up(&twins[under], s);
                let measured = measure(twins, s, window);
                let (hook, in_situ) = detach(attached, window_start)?;
                for (program, ns, runs) in in_situ {
                    let at = match row.in_situ.iter().position(|p| p.program == program) {
                        Some(at) => at,
                        None => {
                            row.in_situ.push(InSituRuns {
                                program,
                                ns: Vec::new(),
                                runs: Vec::new(),
                            });
                            row.in_situ.len() - 1
                        }
                    };
                    row.in_situ[at].ns.push(ns);
                    row.in_situ[at].runs.push(runs as f64);
                }
                let m = measured?;
                result.baseline.push(m[other]);
                row.rates.push(m[under]);
                row.ratios
                    .push(m[under].per_cpu_second / m[other].per_cpu_second);
                row.wall_ratios.push(m[under].received / m[other].received);
                if let Some(h) = hook {
                    if let Kind::Empty("tc") | Kind::EmptyInSitu = row.kind {
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
/// state, as in any flood longer than a second.
fn measure(twins: &[Lab; 2], s: &Settings, window: Duration) -> Result<[Rates; 2]> {
    let flow = PairedFlow::start(twins.each_ref().map(Lab::path), 0, 1)?;
    sleep(warm_up(&twins[0], s));
    let a = flow.sample();
    sleep(window);
    let b = flow.sample();
    flow.stop()?;
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
        Kind::Empty(_) | Kind::EmptyInSitu => {
            let (hook, stats) = match kind {
                Kind::Empty(hook) => (hook, None::<&std::ffi::OsStr>),
                _ => ("tc", Some("--self-stats".as_ref())),
            };
            let mut argv: Vec<&std::ffi::OsStr> = vec![
                s.bench_bin.as_os_str(),
                "attach-empty".as_ref(),
                "--iface".as_ref(),
                lab.iface().as_ref(),
                "--hook".as_ref(),
                hook.as_ref(),
            ];
            argv.extend(stats);
            let cmd = pinned(&argv);
            let mut p = Proc::spawn("macdrop-bench attach-empty", cmd, true)?;
            // "ready HOOK": the hook really used (clsact below Linux 6.6).
            let line = p.wait_line(true, timeout, |l| l.starts_with("ready"))?;
            let used = line.text.strip_prefix("ready").map(str::trim);
            (Some(p), used.filter(|h| !h.is_empty()).map(str::to_owned))
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
    Ok(Attached { kind, proc, hook })
}

/// Programs by name, each with its average ns per run and its runs.
type InSitu = Vec<(String, f64, u64)>;

/// Stops what `attach` started; returns macdrop's hook and, in situ
/// (`--self-stats`), the programs' average ns per run: macdrop's over its
/// reports from the first one read after `window_start` to the final one
/// (so a flood's figures are those of its steady state, the flow records
/// sampled, not an average with the unsampled first second), or since the
/// load when no report fell inside the window; the empty program's since
/// the load, from what `attach-empty` prints when it stops.
fn detach(a: Attached, window_start: Instant) -> Result<(Option<String>, InSitu)> {
    let mut in_situ = Vec::new();
    if let Some(mut p) = a.proc {
        let timeout = Duration::from_secs(30);
        match a.kind {
            Kind::Empty(_) | Kind::EmptyInSitu => {
                p.stop_by_stdin(timeout)?;
            }
            _ => {
                p.stop(timeout)?;
            }
        }
        if let Kind::EmptyInSitu = a.kind {
            in_situ = p
                .rest_of_stdout()
                .iter()
                .filter_map(|l| serde_json::from_str::<Value>(&l.text).ok())
                .filter_map(|v| {
                    let runs = v["runs"].as_u64().filter(|n| *n > 0)?;
                    let ns = v["run_time_ns"].as_u64()? as f64 / runs as f64;
                    Some((v["program"].as_str()?.to_owned(), ns, runs))
                })
                .collect();
        }
        if let Kind::MacdropInSitu = a.kind {
            let reports: Vec<(Instant, Value)> = p
                .rest_of_stdout()
                .into_iter()
                .filter_map(|l| Some((l.at, serde_json::from_str::<Value>(&l.text).ok()?)))
                .filter(|(_, v)| v["self_stats"].is_object())
                .collect();
            let first = reports
                .iter()
                .find(|(at, _)| *at >= window_start)
                .map(|(_, v)| &v["self_stats"]);
            if let Some((_, last)) = reports.last()
                && let Some(stats) = last["self_stats"].as_object()
            {
                in_situ = stats
                    .iter()
                    .filter_map(|(prog, s)| {
                        let (runs, ns) = (s["runs"].as_u64()?, s["avg_ns"].as_f64()?);
                        let (runs0, ns0) = first
                            .filter(|f| !std::ptr::eq(*f, &last["self_stats"]))
                            .and_then(|f| {
                                Some((f[prog]["runs"].as_u64()?, f[prog]["avg_ns"].as_f64()?))
                            })
                            .unwrap_or((0, 0.0));
                        let n = runs.checked_sub(runs0).filter(|n| *n > 0)?;
                        let avg = (runs as f64 * ns - runs0 as f64 * ns0) / n as f64;
                        Some((prog.clone(), avg, n))
                    })
                    .collect();
            }
        }
    }
    Ok((a.hook, in_situ))
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
                        Kind::Empty(_) | Kind::EmptyInSitu => "tc (hook not reported)",
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
            let empty: Vec<f64> = in_situ(|k| matches!(k, Kind::EmptyInSitu))
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
            for p in in_situ(|k| matches!(k, Kind::MacdropInSitu)) {
                let mut c = Cause {
                    scenario: sc.name,
                    program: p.program.clone(),
                    ns: p.ns.clone(),
                    runs: p.runs.clone(),
                    empty: empty.clone(),
                    share: None,
                };
                c.share = frames
                    .filter(|f| *f > 0.0 && path_ns.is_finite() && !c.empty.is_empty())
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
    /// The empty tc program's ns per run in the same scenario.
    pub empty: Vec<f64>,
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
            "macdrop_kfree_skb_btf" | "macdrop_kfree_skb_raw" => {
                "confirmed drops (`kfree_skb`): every skb freed as dropped"
            }
            _ => "other",
        }
    }

    /// The program's own cost per run: its figure less the empty
    /// program's (which holds the statistics' clock reads).
    pub fn over_empty(&self) -> f64 {
        median(&self.ns) - median(&self.empty)
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
    let in_situ: Vec<String> = causes
        .iter()
        .filter(|c| c.scenario == sc.name)
        .filter_map(|c| Some(format!("`{}` {:.1} %", c.program, c.share? * 100.0)))
        .collect();
    if !in_situ.is_empty() {
        out += &format!(
            ", of which the programs' own run time is estimated in situ at {} (the table \
             below)",
            in_situ.join(", ")
        );
    }
    Some(out + ".")
}

fn per_cause_markdown(causes: &[Cause], conditions: &str) -> String {
    if causes.is_empty() {
        return String::new();
    }
    let mut md = "\n**Per cause, in situ.** Each of macdrop's programs as it ran in the rows \
                  `macdrop --attach auto --self-stats` above, by the kernel's run-time \
                  statistics (BPF_ENABLE_STATS, held by a file descriptor only while the row \
                  runs): runs and average ns per run from macdrop's first report inside the \
                  measured window to its final one (a flood's steady state, its flow records \
                  sampled; since the load if no report fell inside), beside the empty tc \
                  program's (since its load) in the row `empty tc program --self-stats` of the \
                  same scenario. The statistics' own two clock \
                  reads are in both, so the difference is the program's own cost per run. \
                  The hook's dispatch around a program is in neither (the end-to-end ratios \
                  hold it). `kfree_skb` runs once for every skb any namespace drops; under a \
                  flood that is once per frame. *Share of the path* (an estimate): that cost \
                  times the program's runs per classified frame, over a frame's whole path with \
                  nothing attached (1 / the scenario's nothing-attached rate per CPU-second).\n\n"
        .to_owned();
    md += "| scenario | program | what it does | runs | ns per run | empty tc program, ns per \
           run | over the empty program | share of the path (estimate) | measured under \
           |\n|---|---|---|---|---|---|---|---|---|\n";
    for c in causes {
        md += &format!(
            "| {} | `{}` | {} | {} | {} | {} | {:+.0} ns | {} | {conditions} |\n",
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
            c.over_empty(),
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
            share: Some(0.004),
        };
        let split = cost_split(&sc, &[cause]).unwrap();
        assert!(split.contains("(3.5 %)"), "{split}");
        assert!(
            split.contains("empty tc program pays as well, 3.0 %"),
            "{split}"
        );
        assert!(split.contains("per repetition) 0.5 %"), "{split}");
        assert!(split.contains("`macdrop_tc` 0.4 %"), "{split}");
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
