//! Part 5, the scale row: how macdrop's start and what it holds grow.
//!
//! - Ports: one bridge with as many ports as Linux lets a bridge have
//!   (`PORTS`; fewer with `--quick`),
//!   `macdrop watch --bridge br0`: start to the "watching" line, to every
//!   port on TCX, then what it holds (`footprint`).
//! - Namespaces: `macdrop watch --all-netns` over 25, 50, 100 and 200
//!   namespaces (`NETNS_SIZES`), each with a bridge of one port
//!   (`macdrop_tests::lab::BridgedNamespaces`): one session, so one eBPF
//!   object, per namespace. The same figures per size, then per
//!   namespace: a line fitted through the smaller sizes, and the largest
//!   size against that line's prediction (1.0: linear).
//!
//! The namespaces are bound under /run/macdrop-bench, out of sight of
//! `ip netns` and of other runs' `--all-netns`. macdrop sees them in a
//! mount namespace of its own (`spawn_over`): a tmpfs over /run/netns
//! (and /run/docker/netns) holding bind mounts of the namespaces of one
//! size, and it starts in the first of them, so nothing of the host's is
//! watched.

use std::{
    ffi::CString,
    fs::File,
    os::{fd::AsRawFd as _, unix::process::CommandExt as _},
    path::Path,
    process::Command,
    thread::sleep,
    time::Duration,
};

use anyhow::{Context as _, Result, ensure};
use macdrop_tests::{
    lab::BridgedNamespaces,
    netns::{BENCH_PREFIX, NetNs},
};
use serde_json::{Value, json};

use super::{
    Settings,
    footprint::Footprint,
    proc::Proc,
    scale::{self, Lab},
    stats::{self, Stat},
};

/// Ports of the bridge (full run, `--quick`). A Linux bridge takes at
/// most 1,023 ports (BR_MAX_PORTS; the next enslave fails with EXFULL), so
/// the 4,000 ports on one bridge cannot be built: 4,000 would take
/// four bridges (not measured yet).
const PORTS: (usize, usize) = (scale::MAX_BRIDGE_PORTS, 200);
/// Namespace counts (full run, `--quick`), smallest first; the line is
/// fitted through all but the last.
const NETNS_SIZES: (&[usize], &[usize]) = (&[25, 50, 100, 200], &[2, 4, 8]);
/// Repetitions per size (full run, `--quick`).
const REPS: (usize, usize) = (2, 1);
/// Where the namespaces are bound (as the bridge lab's, `scale`).
const PRIVATE_NETNS_DIR: &str = "/run/macdrop-bench";
/// Where `--all-netns` looks (monitor's `netns::NAMED_NETNS_DIRS`).
const NAMED_NETNS_DIRS: [&str; 2] = ["/run/netns", "/run/docker/netns"];
/// The namespaces' target: peak RSS with 200 of them, MiB.
pub const NETNS_RSS_TARGET: (usize, f64) = (200, 50.0);
/// The largest size may be this much above the line through the others
/// and still count as linear growth.
pub const LINEAR_TOLERANCE: f64 = 1.25;

const START_TIMEOUT: Duration = Duration::from_secs(600);
const EXIT_TIMEOUT: Duration = Duration::from_secs(300);
/// After every interface is on TCX, before reading what macdrop holds:
/// the first reports after the hand-off.
const SETTLE: Duration = Duration::from_secs(2);

/// One start of macdrop.
#[derive(Clone, Debug)]
pub struct Run {
    /// Ports or namespaces.
    pub n: usize,
    /// Start to the "watching" line(s), seconds.
    pub load_s: f64,
    /// Start to the first report with every interface on TCX, seconds.
    pub tcx_s: f64,
    pub held: Footprint,
}

impl Run {
    fn json(&self) -> Value {
        json!({
            "n": self.n,
            "load_s": self.load_s,
            "all_on_tcx_s": self.tcx_s,
            "footprint": self.held.json(),
        })
    }
}

/// A measured figure of a run, with its name and unit.
struct Figure {
    name: &'static str,
    unit: &'static str,
    decimals: usize,
    of: fn(&Run) -> f64,
}

const FIGURES: [Figure; 9] = [
    figure("start to watching", "s", 2, |r| r.load_s),
    figure("start to all on TCX", "s", 2, |r| r.tcx_s),
    figure("peak RSS (VmHWM)", "MiB", 1, |r| r.held.peak_rss_mib),
    figure("RSS after start", "MiB", 1, |r| r.held.rss_mib),
    figure(
        "kernel memory of its maps and programs (memlock)",
        "MiB",
        1,
        |r| r.held.kernel_mib,
    ),
    figure("file descriptors", "", 0, |r| r.held.fds as f64),
    figure("BPF maps", "", 0, |r| r.held.bpf_maps as f64),
    figure("BPF programs", "", 0, |r| r.held.bpf_progs as f64),
    figure("BPF links", "", 0, |r| r.held.bpf_links as f64),
];

const fn figure(
    name: &'static str,
    unit: &'static str,
    decimals: usize,
    of: fn(&Run) -> f64,
) -> Figure {
    Figure {
        name,
        unit,
        decimals,
        of,
    }
}

pub struct Results {
    pub ports: Vec<Run>,
    pub netns: Vec<Run>,
}

pub fn run(s: &Settings) -> Result<Results> {
    let reps = pick(s, REPS);
    let ports = pick(s, PORTS);
    let lab = Lab::new(ports)?;
    let mut out = Results {
        ports: Vec::new(),
        netns: Vec::new(),
    };
    for rep in 0..reps {
        println!("xtask: bench: {ports} ports, repetition {}/{reps}", rep + 1);
        let md = lab.spawn_macdrop(s, "1")?;
        out.ports.push(measure(md, ports, 1, ports + 1)?);
    }
    drop(lab);

    let sizes = pick(s, NETNS_SIZES);
    let largest = sizes.iter().copied().max().unwrap_or(0);
    println!("xtask: bench: building {largest} namespaces with a bridge each");
    let lab = BridgedNamespaces::new(Path::new(PRIVATE_NETNS_DIR), BENCH_PREFIX, largest)?;
    for &n in sizes {
        for rep in 0..reps {
            println!(
                "xtask: bench: --all-netns over {n} namespaces, repetition {}/{reps}",
                rep + 1
            );
            let md = spawn_over(s, &lab.namespaces()[..n])?;
            // br0 and p1 in each.
            out.netns.push(measure(md, n, n, 2 * n)?);
        }
    }
    Ok(out)
}

/// The full run's setting or `--quick`'s.
fn pick<T>(s: &Settings, (full, quick): (T, T)) -> T {
    if s.quick { quick } else { full }
}

/// Waits for `sessions` "watching" lines and a report with `interfaces`
/// interfaces all on TCX, lets it settle, reads what it holds and stops it.
fn measure(mut md: Proc, n: usize, sessions: usize, interfaces: usize) -> Result<Run> {
    let mut seen = 0;
    let ready = md.wait_line(false, START_TIMEOUT, |l| {
        seen += usize::from(l.starts_with("macdrop: watching "));
        seen == sessions
    })?;
    let on_tcx = md.wait_line(true, START_TIMEOUT, |l| scale::all_on_tcx(l, interfaces))?;
    sleep(SETTLE);
    let held = Footprint::of(md.pid())?;
    let (status, _) = md.stop(EXIT_TIMEOUT)?;
    ensure!(status.success(), "macdrop exited with {status}");
    Ok(Run {
        n,
        load_s: (ready.at - md.started).as_secs_f64(),
        tcx_s: (on_tcx.at - md.started).as_secs_f64(),
        held,
    })
}

/// `macdrop watch --all-netns` seeing exactly `namespaces`: started in the
/// first, the others bind-mounted under /run/netns in a mount namespace
/// of its own (a tmpfs there and over /run/docker/netns hides the host's).
/// The mounts are made between fork and exec: no helper process, so the
/// start is timed from macdrop's own.
fn spawn_over(s: &Settings, namespaces: &[NetNs]) -> Result<Proc> {
    let (home, others) = namespaces.split_first().context("no namespace")?;
    // The mount point must exist on the host (as `ip netns add` makes it).
    std::fs::create_dir_all(NAMED_NETNS_DIRS[0])
        .with_context(|| format!("mkdir {}", NAMED_NETNS_DIRS[0]))?;
    let home_file =
        File::open(home.path()).with_context(|| format!("open {}", home.path().display()))?;
    let home_fd = home_file.as_raw_fd();
    let cstr = |p: &Path| CString::new(p.as_os_str().as_encoded_bytes()).context("NUL in a path");
    let covered: Vec<CString> = NAMED_NETNS_DIRS
        .iter()
        .filter(|d| Path::new(d).is_dir())
        .map(|d| cstr(Path::new(d)))
        .collect::<Result<_>>()?;
    let binds: Vec<(CString, CString)> = others
        .iter()
        .map(|ns| {
            let at = Path::new(NAMED_NETNS_DIRS[0]).join(ns.name());
            Ok((cstr(&ns.path())?, cstr(&at)?))
        })
        .collect::<Result<_>>()?;
    let mut cmd = Command::new(&s.macdrop_bin);
    cmd.args([
        "watch",
        "--all-netns",
        "--interval",
        "1",
        "--format",
        "json",
    ]);
    // SAFETY: between fork and exec the closure makes only syscalls, on
    // strings allocated before the fork, and allocates nothing.
    unsafe {
        cmd.pre_exec(move || private_view(home_fd, &covered, &binds));
    }
    let md = Proc::spawn("macdrop", cmd, false);
    drop(home_file);
    md
}

/// In the child: a mount namespace of its own with `covered` hidden under
/// tmpfs, each (source, target) of `binds` bound, then the network
/// namespace `home`.
fn private_view(
    home: i32,
    covered: &[CString],
    binds: &[(CString, CString)],
) -> std::io::Result<()> {
    let check = |rc: i32| {
        if rc == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        }
    };
    let null = std::ptr::null::<libc::c_char>();
    // SAFETY: plain syscalls on NUL-terminated strings that outlive them.
    unsafe {
        check(libc::unshare(libc::CLONE_NEWNS))?;
        // Nothing mounted here propagates back to the host.
        check(libc::mount(
            null,
            c"/".as_ptr(),
            null,
            libc::MS_REC | libc::MS_PRIVATE,
            std::ptr::null(),
        ))?;
        for dir in covered {
            check(libc::mount(
                c"macdrop-bench".as_ptr(),
                dir.as_ptr(),
                c"tmpfs".as_ptr(),
                libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                c"mode=0755".as_ptr().cast(),
            ))?;
        }
        for (source, target) in binds {
            let fd = libc::open(
                target.as_ptr(),
                libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_CLOEXEC,
                0o444,
            );
            if fd < 0 {
                return Err(std::io::Error::last_os_error());
            }
            libc::close(fd);
            check(libc::mount(
                source.as_ptr(),
                target.as_ptr(),
                null,
                libc::MS_BIND,
                std::ptr::null(),
            ))?;
        }
        check(libc::setns(home, libc::CLONE_NEWNET))?;
    }
    Ok(())
}

/// A line through points: (slope, intercept), by least squares. None for
/// fewer than two distinct x.
pub fn fit(points: &[(f64, f64)]) -> Option<(f64, f64)> {
    let n = points.len() as f64;
    let mx = points.iter().map(|p| p.0).sum::<f64>() / n;
    let my = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
    let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    if points.len() < 2 || sxx == 0.0 {
        return None;
    }
    let slope = sxy / sxx;
    Some((slope, my - slope * mx))
}

/// How a figure grows with the namespace count: the line through the
/// medians of every size but the largest, and the largest's median
/// against that line's prediction.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Growth {
    pub slope: f64,
    pub intercept: f64,
    pub largest: usize,
    pub measured: f64,
    /// measured / predicted (1.0: on the line).
    pub ratio: f64,
}

impl Growth {
    pub fn of(runs: &[Run], of: fn(&Run) -> f64) -> Option<Self> {
        let medians = medians(runs, of);
        let (&(largest, measured), smaller) = medians.split_last()?;
        let points: Vec<(f64, f64)> = smaller.iter().map(|&(n, v)| (n as f64, v)).collect();
        let (slope, intercept) = fit(&points)?;
        let predicted = slope * largest as f64 + intercept;
        Some(Self {
            slope,
            intercept,
            largest,
            measured,
            ratio: measured / predicted,
        })
    }

    /// The line's value at `n`.
    pub fn at(&self, n: usize) -> f64 {
        self.slope * n as f64 + self.intercept
    }
}

/// `12.3 MiB`, or `12` for a count.
fn with_unit(value: String, unit: &str) -> String {
    if unit.is_empty() {
        value
    } else {
        format!("{value} {unit}")
    }
}

/// (size, median of `of`) per size, smallest first.
fn medians(runs: &[Run], of: fn(&Run) -> f64) -> Vec<(usize, f64)> {
    let mut sizes: Vec<usize> = runs.iter().map(|r| r.n).collect();
    sizes.sort_unstable();
    sizes.dedup();
    sizes
        .into_iter()
        .filter_map(|n| {
            let v: Vec<f64> = runs.iter().filter(|r| r.n == n).map(of).collect();
            Some((n, Stat::of(&v)?.median))
        })
        .collect()
}

impl Results {
    pub fn json(&self) -> Value {
        let growth: serde_json::Map<String, Value> = FIGURES
            .iter()
            .filter_map(|f| {
                let g = Growth::of(&self.netns, f.of)?;
                Some((
                    f.name.to_owned(),
                    json!({
                        "per_namespace": g.slope,
                        "fixed": g.intercept,
                        "largest": g.largest,
                        "largest_to_linear": g.ratio,
                    }),
                ))
            })
            .collect();
        json!({
            "ports": self.ports.iter().map(Run::json).collect::<Vec<_>>(),
            "netns": self.netns.iter().map(Run::json).collect::<Vec<_>>(),
            "netns_growth": growth,
        })
    }

    pub fn markdown(&self) -> String {
        let mut md = String::new();
        if let Some(first) = self.ports.first() {
            md += &format!(
                "One bridge with {} veth ports (macdrop watches {} interfaces), `macdrop watch \
                 --bridge br0 --interval 1 --format json`, {} repetition(s); median (min–max). \
                 What it holds is read {} s after every port is on TCX: /proc/PID/status, \
                 /proc/PID/fd, and the `memlock` of each BPF map and program in its fdinfo.\n\n\
                 | figure | measured | per port |\n|---|---|---|\n",
                first.n,
                first.n + 1,
                self.ports.len(),
                SETTLE.as_secs(),
            );
            for f in &FIGURES {
                let v: Vec<f64> = self.ports.iter().map(f.of).collect();
                let per: Vec<f64> = self.ports.iter().map(|r| (f.of)(r) / r.n as f64).collect();
                md += &format!(
                    "| {} | {} | {} |\n",
                    f.name,
                    with_unit(stats::show(&v, f.decimals), f.unit),
                    Stat::of(&per).map_or("n/a".into(), |p| with_unit(
                        format!("{:.4}", p.median),
                        f.unit
                    )),
                );
            }
            md += "\n";
        }
        let sizes = medians(&self.netns, |r| r.load_s);
        if sizes.is_empty() {
            return md;
        }
        let reps = self.netns.iter().filter(|r| r.n == sizes[0].0).count();
        md += &format!(
            "`macdrop watch --all-netns --interval 1 --format json` over N namespaces, each \
             with a bridge of one veth port (one session, so one eBPF object, per namespace), \
             {reps} repetition(s) per N; median per N. \"Per namespace\" is the slope of the \
             line through every N but the largest (least squares), \"fixed\" its value at 0; \
             the last column is the largest N's median over that line's prediction (1.00: \
             linear).\n\n| figure |"
        );
        for (n, _) in &sizes {
            md += &format!(" N = {n} |");
        }
        md += " per namespace | fixed | largest / linear |\n|---|";
        md += &"---|".repeat(sizes.len() + 3);
        md += "\n";
        for f in &FIGURES {
            md += &format!("| {} |", f.name);
            for (_, v) in medians(&self.netns, f.of) {
                md += &format!(
                    " {} |",
                    with_unit(format!("{v:.d$}", d = f.decimals), f.unit)
                );
            }
            match Growth::of(&self.netns, f.of) {
                Some(g) => {
                    md += &format!(
                        " {} | {} | {:.2} |\n",
                        with_unit(format!("{:.3}", g.slope), f.unit),
                        with_unit(format!("{:.1}", g.intercept), f.unit),
                        g.ratio
                    )
                }
                None => md += " n/a | n/a | n/a |\n",
            }
        }
        md
    }

    /// Growth of the namespaces' start time and peak RSS.
    pub fn load_growth(&self) -> Option<Growth> {
        Growth::of(&self.netns, FIGURES[0].of)
    }

    pub fn peak_rss_growth(&self) -> Option<Growth> {
        Growth::of(&self.netns, FIGURES[2].of)
    }

    pub fn rss_growth(&self) -> Option<Growth> {
        Growth::of(&self.netns, FIGURES[3].of)
    }

    /// Median peak RSS at `n` namespaces, if measured.
    pub fn peak_rss_at(&self, n: usize) -> Option<f64> {
        medians(&self.netns, FIGURES[2].of)
            .into_iter()
            .find_map(|(m, v)| (m == n).then_some(v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(n: usize, load_s: f64, peak: f64) -> Run {
        Run {
            n,
            load_s,
            tcx_s: load_s,
            held: Footprint {
                peak_rss_mib: peak,
                ..Footprint::default()
            },
        }
    }

    #[test]
    fn a_line_through_points() {
        let (slope, intercept) = fit(&[(1.0, 5.0), (2.0, 7.0), (4.0, 11.0)]).unwrap();
        assert!((slope - 2.0).abs() < 1e-9 && (intercept - 3.0).abs() < 1e-9);
        assert_eq!(fit(&[(1.0, 5.0)]), None, "one point is no line");
        assert_eq!(fit(&[(1.0, 5.0), (1.0, 6.0)]), None, "nor one x");
    }

    #[test]
    fn growth_compares_the_largest_with_the_line_of_the_others() {
        // 0.1 s + 10 ms per namespace up to 100, then 4 s at 200 instead
        // of the line's 2.1 s; medians per size (two runs at 25).
        let runs = [
            run(25, 0.3, 10.0),
            run(25, 0.4, 10.0),
            run(50, 0.6, 12.0),
            run(100, 1.1, 16.0),
            run(200, 4.0, 24.0),
        ];
        let g = Growth::of(&runs, |r| r.load_s).unwrap();
        assert_eq!(g.largest, 200);
        assert!((g.slope - 0.01).abs() < 1e-3, "{g:?}");
        assert!(g.ratio > 1.8, "super-linear: {g:?}");
        let g = Growth::of(&runs, |r| r.held.peak_rss_mib).unwrap();
        assert!((g.ratio - 1.0).abs() < 1e-9, "linear: {g:?}");
        assert!((g.at(200) - 24.0).abs() < 1e-9);
        assert_eq!(
            Growth::of(&runs[..2], |r| r.load_s),
            None,
            "one size: no growth"
        );
    }
}
