//! Parts 3 and 4 on one lab: a bridge with N veth ports (1,000 by
//! default), their peers in a second namespace; both namespaces private to
//! the benchmark (bound under /run/macdrop-bench).
//!
//! - Attach time: from starting `macdrop watch --bridge br0` to its
//!   "watching N interface(s)" line, then the time from enslaving one new
//!   port to macdrop's `attached` event for it (the event's own `ts`), and
//!   how long macdrop takes to exit (detach everything). Interleaved with
//!   each repetition, the kernel's floor for the same ports: raw TCX link
//!   creates and detaches and nothing else (`macdrop-bench tcx-floor`),
//!   serially and from `FLOOR_THREADS` threads.
//! - Userspace cost: CPU % (the scheduler's runtime of every thread) over windows of a
//!   steady-state run at a 1 s interval with JSON output, peak RSS
//!   (VmHWM), and the time of one full counter read of N slots
//!   (`macdrop-bench counter-read`, the same `CounterReader` a report uses).

use std::{
    fmt::Write as _,
    path::Path,
    thread::sleep,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::{Context as _, Result, ensure};
use macdrop_tests::{
    lab::{BRIDGE, ManyPortLab},
    netns::{BENCH_PREFIX, NetNs},
};
use serde_json::{Value, json};

use super::{
    Settings,
    footprint::Footprint,
    proc,
    proc::Proc,
    stats::{self, Stat},
};

/// Where the many-port lab's namespaces are bound instead of /run/netns:
/// invisible to `ip netns` and to `macdrop --all-netns`, so a bridge with
/// 1,000 ports does not land in the all-namespace runs of tests or users on
/// the same machine (detaching 1,000 links takes seconds).
const PRIVATE_NETNS_DIR: &str = "/run/macdrop-bench";

/// The bridge lab (`macdrop_tests::lab::ManyPortLab`): host namespace
/// (br0 + ports p1..pN), peer namespace; both removed on drop.
pub struct Lab {
    pub ports: usize,
    lab: ManyPortLab,
}

impl Lab {
    pub fn new(ports: usize) -> Result<Self> {
        let dir = Path::new(PRIVATE_NETNS_DIR);
        let host = NetNs::private(dir, BENCH_PREFIX)?;
        let peer = NetNs::private(dir, BENCH_PREFIX)?;
        let t = Instant::now();
        let lab = ManyPortLab::new(host, peer, ports)?;
        println!(
            "xtask: bench: lab with a bridge of {ports} ports built in {:.1}s",
            t.elapsed().as_secs_f64()
        );
        Ok(Self { ports, lab })
    }

    pub(super) fn spawn_macdrop(&self, s: &Settings, interval: &str) -> Result<Proc> {
        let cmd = self.lab.host().command(&[
            s.macdrop_bin.as_os_str(),
            "watch".as_ref(),
            "--bridge".as_ref(),
            BRIDGE.as_ref(),
            "--interval".as_ref(),
            interval.as_ref(),
            "--format".as_ref(),
            "json".as_ref(),
        ]);
        Proc::spawn("macdrop", cmd, false)
    }
}

/// The most ports a Linux bridge takes (BR_MAX_PORTS less port 0): the
/// next enslave fails with EXFULL.
pub const MAX_BRIDGE_PORTS: usize = 1023;

const READY_TIMEOUT: Duration = Duration::from_secs(300);
const EXIT_TIMEOUT: Duration = Duration::from_secs(300);

/// Thread counts of the floor measurement: serial, and a pool as large as
/// one that could overlap the kernel's waits if RTNL allowed it.
const FLOOR_THREADS: [usize; 2] = [1, 4];

pub struct AttachResults {
    pub ports: usize,
    /// Per thread count: raw TCX link creates and detaches of every port,
    /// seconds.
    pub floor: Vec<(usize, Vec<f64>, Vec<f64>)>,
    /// Interfaces macdrop said it watches.
    pub watched: usize,
    /// Start to "watching N interface(s)", seconds.
    pub all: Vec<f64>,
    /// Start to the first report with every interface on TCX (the end of
    /// the two-step start's hand-off), seconds.
    pub all_tcx: Vec<f64>,
    /// Enslaving a new port to its `attached` event, milliseconds.
    pub new_port: Vec<f64>,
    /// SIGTERM to exit (final report, every link detached), seconds.
    pub exit: Vec<f64>,
}

pub fn attach_time(lab: &Lab, s: &Settings) -> Result<AttachResults> {
    let reps = if s.quick { 2 } else { 5 };
    let mut r = AttachResults {
        ports: lab.ports,
        floor: FLOOR_THREADS
            .iter()
            .map(|&t| (t, Vec::new(), Vec::new()))
            .collect(),
        watched: 0,
        all: Vec::new(),
        all_tcx: Vec::new(),
        new_port: Vec::new(),
        exit: Vec::new(),
    };
    for rep in 0..reps {
        println!("xtask: bench: attach repetition {}/{reps}", rep + 1);
        tcx_floor(lab, s, &mut r.floor)?;
        let mut md = lab.spawn_macdrop(s, "1")?;
        let ready = md.wait_line(false, READY_TIMEOUT, |l| {
            l.starts_with("macdrop: watching ")
        })?;
        r.all.push((ready.at - md.started).as_secs_f64());
        r.watched = watched_count(&ready.text)?;
        let watched = r.watched;
        let on_tcx = md.wait_line(true, Duration::from_secs(300), |l| all_on_tcx(l, watched))?;
        r.all_tcx.push((on_tcx.at - md.started).as_secs_f64());

        // A new port: created first (macdrop ignores it, it is nobody's
        // port), then enslaved: the moment it becomes watchable.
        lab.lab.add_loose_port("pnew", "qnew")?;
        sleep(Duration::from_millis(300));
        let enslaved = SystemTime::now();
        lab.lab.enslave("pnew")?;
        let line = md.wait_line(true, Duration::from_secs(30), |l| {
            attached_ts(l, "pnew").is_some()
        })?;
        let ts = attached_ts(&line.text, "pnew").expect("matched");
        let since = ts
            .duration_since(enslaved)
            .map(|d| d.as_secs_f64() * 1e3)
            .unwrap_or_else(|e| -e.duration().as_secs_f64() * 1e3);
        r.new_port.push(since);

        let (status, took) = md.stop(EXIT_TIMEOUT)?;
        ensure!(status.success(), "macdrop exited with {status}");
        r.exit.push(took.as_secs_f64());
        lab.lab.remove("pnew")?;
    }
    Ok(r)
}

/// One run of `macdrop-bench tcx-floor` on the lab's ports; appends to
/// `floor`, whose entries are in `FLOOR_THREADS` order.
fn tcx_floor(lab: &Lab, s: &Settings, floor: &mut [(usize, Vec<f64>, Vec<f64>)]) -> Result<()> {
    let threads: Vec<String> = FLOOR_THREADS.iter().map(usize::to_string).collect();
    let out = proc::output(lab.lab.host().command(&[
        s.bench_bin.as_os_str(),
        "tcx-floor".as_ref(),
        "--count".as_ref(),
        lab.ports.to_string().as_ref(),
        "--threads".as_ref(),
        threads.join(",").as_ref(),
        "--reps".as_ref(),
        "1".as_ref(),
    ]))?;
    let v: Value = serde_json::from_str(&out).context("tcx-floor printed bad JSON")?;
    for (threads, create, detach) in floor.iter_mut() {
        let run = v["runs"]
            .as_array()
            .and_then(|runs| runs.iter().find(|r| r["threads"] == *threads))
            .with_context(|| format!("tcx-floor has no run with {threads} threads: {out}"))?;
        let first = |key: &str| run[key][0].as_f64().context("tcx-floor: no timing");
        create.push(first("create_s")?);
        detach.push(first("detach_s")?);
    }
    Ok(())
}

/// N of `macdrop: watching N interface(s) ...`.
fn watched_count(line: &str) -> Result<usize> {
    line.strip_prefix("macdrop: watching ")
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .with_context(|| format!("unexpected ready line: {line}"))
}

/// Whether a JSON report line shows `n` interfaces, every one on TCX.
pub(super) fn all_on_tcx(line: &str, n: usize) -> bool {
    let Ok(v) = serde_json::from_str::<Value>(line) else {
        return false;
    };
    v["interfaces"]
        .as_array()
        .is_some_and(|all| all.len() == n && all.iter().all(|i| i["hook"] == "tcx"))
}

/// The `ts` of an `attached` event for `iface` in a JSON report line.
fn attached_ts(line: &str, iface: &str) -> Option<SystemTime> {
    let v: Value = serde_json::from_str(line).ok()?;
    v["events"].as_array()?.iter().find_map(|e| {
        (e["kind"] == "attached" && e["interface"] == iface)
            .then(|| parse_rfc3339(e["ts"].as_str()?))
            .flatten()
    })
}

/// `2026-11-28T10:14:02.907Z` (UTC, as macdrop writes it) as a SystemTime.
fn parse_rfc3339(ts: &str) -> Option<SystemTime> {
    let ts = ts.strip_suffix('Z')?;
    let (date, time) = ts.split_once('T')?;
    let mut d = date.split('-').map(|x| x.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
    let mut t = hms.split(':').map(|x| x.parse::<i64>().ok());
    let (hh, mm, ss) = (t.next()??, t.next()??, t.next()??);
    let nanos: u32 = format!("{frac:0<9}").get(..9)?.parse().ok()?;
    // Days from 1970-01-01 (Howard Hinnant's days_from_civil).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + hh * 3600 + mm * 60 + ss;
    Some(UNIX_EPOCH + Duration::new(u64::try_from(secs).ok()?, nanos))
}

pub struct UserspaceResults {
    pub ports: usize,
    pub window: Duration,
    /// CPU % of one CPU per window.
    pub cpu: Vec<f64>,
    /// Over the whole measured time.
    pub cpu_overall: f64,
    pub peak_rss_mib: f64,
    pub rss_mib: f64,
    pub reports: usize,
    /// One full counter read of `ports` slots, ms.
    pub counter_read_ms: Vec<f64>,
    pub cpus: u64,
}

pub fn userspace(lab: &Lab, s: &Settings) -> Result<UserspaceResults> {
    let (windows, window) = if s.quick {
        (5, Duration::from_secs(1))
    } else {
        (6, Duration::from_secs(10))
    };
    println!(
        "xtask: bench: userspace cost over {}s",
        windows * window.as_secs()
    );
    let mut md = lab.spawn_macdrop(s, "1")?;
    let ready = md.wait_line(false, READY_TIMEOUT, |l| {
        l.starts_with("macdrop: watching ")
    })?;
    // The steady state: after the two-step start's hand-off to TCX (its
    // cost is the attach part's), and the first reports after it.
    let watched = watched_count(&ready.text)?;
    md.wait_line(true, READY_TIMEOUT, |l| all_on_tcx(l, watched))?;
    sleep(Duration::from_secs(2));
    let pid = md.pid();
    let mut cpu = Vec::new();
    let percent = |ns: u64, wall: Duration| ns as f64 / 1e9 / wall.as_secs_f64() * 100.0;
    let (mut t0, mut c0) = (Instant::now(), cpu_ns(pid)?);
    let (start_t, start_c) = (t0, c0);
    for _ in 0..windows {
        sleep(window);
        let (t1, c1) = (Instant::now(), cpu_ns(pid)?);
        cpu.push(percent(c1 - c0, t1 - t0));
        (t0, c0) = (t1, c1);
    }
    let cpu_overall = percent(c0 - start_c, t0 - start_t);
    let held = Footprint::of(pid)?;
    let reports = md.stdout.try_iter().count();
    let (status, _) = md.stop(EXIT_TIMEOUT)?;
    ensure!(status.success(), "macdrop exited with {status}");

    let reads = if s.quick { 10 } else { 50 };
    let out = proc::output(lab.lab.host().command(&[
        s.bench_bin.as_os_str(),
        "counter-read".as_ref(),
        "--slots".as_ref(),
        lab.ports.to_string().as_ref(),
        "--reps".as_ref(),
        reads.to_string().as_ref(),
    ]))?;
    let v: Value = serde_json::from_str(&out).context("counter-read printed bad JSON")?;
    let counter_read_ms = v["ns"]
        .as_array()
        .context("no samples")?
        .iter()
        .filter_map(Value::as_f64)
        .map(|ns| ns / 1e6)
        .collect();
    Ok(UserspaceResults {
        ports: lab.ports,
        window,
        cpu,
        cpu_overall,
        peak_rss_mib: held.peak_rss_mib,
        rss_mib: held.rss_mib,
        reports,
        counter_read_ms,
        cpus: v["cpus"].as_u64().unwrap_or(0),
    })
}

/// CPU time of every thread of `pid` so far (the scheduler's own clock,
/// /proc/PID/task/*/schedstat), in ns.
pub(super) fn cpu_ns(pid: u32) -> Result<u64> {
    let mut total = 0;
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task"))
        .with_context(|| format!("macdrop (pid {pid}) is gone"))?;
    for task in tasks.flatten() {
        if let Some(ns) = std::fs::read_to_string(task.path().join("schedstat"))
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        {
            total += ns;
        }
    }
    Ok(total)
}

impl AttachResults {
    /// The serial floor: (create, detach) medians in seconds.
    pub fn serial_floor(&self) -> Option<(f64, f64)> {
        let (_, create, detach) = self.floor.iter().find(|(t, _, _)| *t == 1)?;
        Some((Stat::of(create)?.median, Stat::of(detach)?.median))
    }

    pub fn json(&self) -> Value {
        let floor: Vec<Value> = self
            .floor
            .iter()
            .map(|(threads, create, detach)| {
                json!({
                    "threads": threads,
                    "create_s": stats::json_of(create),
                    "detach_s": stats::json_of(detach),
                })
            })
            .collect();
        json!({
            "ports": self.ports,
            "kernel_floor": floor,
            "watched_interfaces": self.watched,
            "all_ports_s": stats::json_of(&self.all),
            "all_on_tcx_s": stats::json_of(&self.all_tcx),
            "new_port_ms": stats::json_of(&self.new_port),
            "exit_s": stats::json_of(&self.exit),
        })
    }

    pub fn markdown(&self) -> String {
        let ratio = |macdrop: &[f64], floor: Option<f64>| match (Stat::of(macdrop), floor) {
            (Some(m), Some(f)) if f > 0.0 => format!("{:.2}", m.median / f),
            _ => "n/a".into(),
        };
        let (create, detach) = self.serial_floor().unzip();
        let mut md = format!(
            "A bridge with {} veth ports (macdrop watches {} interfaces: the bridge and its \
             ports), `macdrop watch --bridge br0 --format json`, {} repetition(s); median \
             (min–max). Before each repetition, the kernel's floor on the same ports: \
             `macdrop-bench tcx-floor` creates a TCX link on every port with BPF_LINK_CREATE \
             and detaches them with BPF_LINK_DETACH, nothing else, serially and from a pool \
             of threads (each in the namespace).\n\n\
             | figure | measured | target | ratio to the serial floor |\n|---|---|---|---|\n\
             | start to all ports attached (the \"watching\" line) | {} s | < 2 s | {} |\n\
             | start to all on TCX (the two-step start's hand-off done) | {} s | - | {} |\n\
             | new port: enslaved to its `attached` event | {} ms | < 100 ms | - |\n\
             | exit: SIGTERM to exit (final report, every link detached) | {} s | - | {} |\n",
            self.ports,
            self.watched,
            self.all.len(),
            stats::show(&self.all, 2),
            ratio(&self.all, create),
            stats::show(&self.all_tcx, 2),
            ratio(&self.all_tcx, create),
            stats::show(&self.new_port, 0),
            stats::show(&self.exit, 2),
            ratio(&self.exit, detach),
        );
        for (threads, c, d) in &self.floor {
            let how = if *threads == 1 {
                "serial".to_owned()
            } else {
                format!("{threads} threads")
            };
            let _ = write!(
                md,
                "| raw TCX link create ×{}, {how} (kernel floor) | {} s | - | - |\n\
                 | raw TCX link detach ×{}, {how} (kernel floor) | {} s | - | - |\n",
                self.ports,
                stats::show(c, 2),
                self.ports,
                stats::show(d, 2),
            );
        }
        md
    }
}

impl UserspaceResults {
    pub fn json(&self) -> Value {
        json!({
            "ports": self.ports,
            "window_s": self.window.as_secs_f64(),
            "cpu_percent": stats::json_of(&self.cpu),
            "cpu_percent_overall": self.cpu_overall,
            "peak_rss_mib": self.peak_rss_mib,
            "rss_mib": self.rss_mib,
            "reports": self.reports,
            "counter_read_ms": stats::json_of(&self.counter_read_ms),
            "cpus": self.cpus,
        })
    }

    pub fn markdown(&self) -> String {
        let cpu = Stat::of(&self.cpu);
        format!(
            "`macdrop watch --bridge br0 --interval 1 --format json` on the same bridge ({} \
             ports, {} interfaces), output read and discarded; CPU time from the scheduler \
             (/proc/PID/task/*/schedstat) over {} windows of {} s after start-up and the hand-off to TCX ({} reports).\n\n\
             | figure | measured | target |\n|---|---|---|\n\
             | CPU, % of one CPU, per window | {} (overall {:.2}) | < 1% |\n\
             | peak RSS (VmHWM, start-up included) | {:.1} MiB (RSS at the end {:.1} MiB) | < 30 MiB |\n\
             | one full counter read ({} slots × {} CPUs, in batch lookups as a report reads them) | {} ms | < 2 ms |\n",
            self.ports,
            self.ports + 1,
            self.cpu.len(),
            self.window.as_secs(),
            self.reports,
            cpu.map_or("n/a".into(), |c| c.show(2)),
            self.cpu_overall,
            self.peak_rss_mib,
            self.rss_mib,
            self.ports,
            self.cpus,
            stats::show(&self.counter_read_ms, 2),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339() {
        let t = parse_rfc3339("2026-11-28T10:14:02.907Z").unwrap();
        let d = t.duration_since(UNIX_EPOCH).unwrap();
        // date -u -d 2026-11-28T10:14:02Z +%s
        assert_eq!(d.as_secs(), 1_795_860_842);
        assert_eq!(d.subsec_millis(), 907);
        assert_eq!(
            parse_rfc3339("1970-01-01T00:00:00Z"),
            Some(UNIX_EPOCH),
            "no fraction"
        );
    }

    #[test]
    fn all_on_tcx_needs_every_interface_there() {
        let two = r#"{"interfaces":[{"hook":"tcx"},{"hook":"tcx"}]}"#;
        assert!(all_on_tcx(two, 2));
        assert!(!all_on_tcx(two, 3), "not every interface reported yet");
        let moving = r#"{"interfaces":[{"hook":"tcx"},{"hook":"xdp-generic"}]}"#;
        assert!(!all_on_tcx(moving, 2));
        assert!(!all_on_tcx("macdrop: note", 2));
    }

    #[test]
    fn ready_line_and_events() {
        assert_eq!(
            watched_count("macdrop: watching 1001 interface(s) in netns 1: p1 (port of br0, tcx)")
                .unwrap(),
            1001
        );
        let line = r#"{"ts":"x","interfaces":[],"events":[{"ts":"1970-01-01T00:00:01.5Z","interface":"pnew","kind":"attached","hook":"tcx"}]}"#;
        assert_eq!(
            attached_ts(line, "pnew"),
            Some(UNIX_EPOCH + Duration::from_millis(1500))
        );
        assert_eq!(attached_ts(line, "p1"), None);
    }
}
