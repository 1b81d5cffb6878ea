//! Part 3's flood row: macdrop's userspace under a flood of distinct flows.
//! Mismatched frames (foreign unicast into a standalone veth) at a fixed
//! rate of `RATE` frames per second, each second from `RATE` distinct
//! source MACs, against the same rate from a flood 16 times smaller (four
//! times as many source MACs as the kernel's flow table has entries per
//! CPU, `FLOW_BUCKETS` × `FLOW_WAYS`: enough to keep it full and churning)
//! and from one: macdrop's CPU (the scheduler's clock of all its threads)
//! and the time of a read of its flow table as a report does it
//! (`macdrop-bench flow-read`, on the running macdrop's own table). The
//! kernel's table is a fixed per-CPU array read in one batch, so once the
//! table is full the read must not grow with the flood.

use std::{
    net::Ipv4Addr,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread::{self, JoinHandle, sleep},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, ensure};
use macdrop_tests::{frames::ipv4_udp, lab::PairLab, sender::RawSender};
use monitor_common::{FLOW_BUCKETS, FLOW_WAYS};
use serde_json::{Value, json};

use super::{
    Settings,
    proc::{self, Proc},
    scale::cpu_ns,
    stats,
};

/// Frames per second, and distinct source MACs per second in the flood.
pub const RATE: u32 = 65_536;
/// Frames sent per pacing step.
const STEP: u32 = 64;
/// The destination: a MAC nobody has, at an address nobody has.
const NOBODY: [u8; 6] = [0x02, 0, 0, 0, 0x0a, 0x99];

/// Entries of the kernel's flow table per CPU.
const TABLE: u32 = FLOW_BUCKETS * FLOW_WAYS as u32;

/// The smaller flood: four times the table's entries per CPU.
const SMALL: u32 = 4 * TABLE;

/// The loads compared: one flow, the smaller flood, the flood.
const LOADS: [(&str, u32); 3] = [
    ("1 flow", 1),
    (
        "4,096 distinct flows/s (4× the table's entries per CPU)",
        SMALL,
    ),
    ("65,536 distinct flows/s", RATE),
];

pub struct Load {
    pub name: &'static str,
    pub distinct: u32,
    /// macdrop's CPU, % of one CPU, per repetition.
    pub cpu: Vec<f64>,
    /// One flow-table read, ms: every read of every repetition.
    pub read_ms: Vec<f64>,
    /// Flows the reads returned (the table's occupancy).
    pub flows: Vec<f64>,
    /// Frames sent per second, per repetition.
    pub sent: Vec<f64>,
}

pub struct Results {
    pub window: Duration,
    pub reps: usize,
    pub loads: Vec<Load>,
}

pub fn run(s: &Settings) -> Result<Results> {
    let (reps, window) = if s.quick {
        (1, Duration::from_secs(3))
    } else {
        (3, Duration::from_secs(10))
    };
    let lab = lab()?;
    let mut loads: Vec<Load> = LOADS
        .iter()
        .map(|&(name, distinct)| Load {
            name,
            distinct,
            cpu: Vec::new(),
            read_ms: Vec::new(),
            flows: Vec::new(),
            sent: Vec::new(),
        })
        .collect();
    for rep in 0..reps {
        for load in &mut loads {
            println!(
                "xtask: bench: flow flood, {} ({}/{reps})",
                load.name,
                rep + 1
            );
            measure(&lab, s, window, load)?;
        }
    }
    Ok(Results {
        window,
        reps,
        loads,
    })
}

/// `s0` -> `r0`, a standalone veth in the bench's own namespaces.
fn lab() -> Result<PairLab> {
    super::e2e::s0_r0_pair(0x0a, Ipv4Addr::new(198, 51, 100, 2), false)
}

/// One repetition of `load`: macdrop on `r0` (CPU 1), the flood from `s0`
/// (CPU 0), then macdrop's CPU over `window` and a flow-table read per
/// second meanwhile.
fn measure(lab: &PairLab, s: &Settings, window: Duration, load: &mut Load) -> Result<()> {
    let timeout = Duration::from_secs(60);
    let mut md = Proc::spawn(
        "macdrop",
        lab.rx().command_on_cpus(
            "1",
            &[
                s.macdrop_bin.as_os_str(),
                "watch".as_ref(),
                "--iface".as_ref(),
                "r0".as_ref(),
                "--interval".as_ref(),
                "1".as_ref(),
                "--format".as_ref(),
                "json".as_ref(),
            ],
        ),
        false,
    )?;
    md.wait_line(false, timeout, |l| l.starts_with("macdrop: watching "))?;
    let flood = Flood::start(lab, load.distinct)?;
    // The table fills within a second; measure from the second report on.
    sleep(Duration::from_secs(2));
    let pid = md.pid();
    let reads = window.as_secs().max(1);
    let reader = lab.rx().command_on_cpus(
        "1",
        &[
            s.bench_bin.as_os_str(),
            "flow-read".as_ref(),
            "--pid".as_ref(),
            pid.to_string().as_ref(),
            "--reps".as_ref(),
            reads.to_string().as_ref(),
        ],
    );
    let (t0, c0, f0) = (Instant::now(), cpu_ns(pid)?, flood.sent());
    let out = proc::output(reader);
    let (t1, c1, f1) = (Instant::now(), cpu_ns(pid)?, flood.sent());
    flood.stop()?;
    let (status, _) = md.stop(timeout)?;
    let out = out?;
    ensure!(status.success(), "macdrop exited with {status}");
    let wall = (t1 - t0).as_secs_f64();
    load.cpu.push((c1 - c0) as f64 / 1e9 / wall * 100.0);
    load.sent.push((f1 - f0) as f64 / wall);
    let v: Value = serde_json::from_str(&out).context("flow-read printed bad JSON")?;
    let numbers = |k: &str| -> Vec<f64> {
        v[k].as_array()
            .map(|a| a.iter().filter_map(Value::as_f64).collect())
            .unwrap_or_default()
    };
    load.read_ms
        .extend(numbers("ns").into_iter().map(|ns| ns / 1e6));
    load.flows.extend(numbers("flows"));
    Ok(())
}

/// A paced sender of mismatched frames on its own thread, pinned to CPU 0:
/// `RATE` frames per second, the source MAC cycling through `distinct`
/// values.
struct Flood {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    thread: Option<JoinHandle<Result<()>>>,
}

impl Flood {
    fn start(lab: &PairLab, distinct: u32) -> Result<Self> {
        let sender = RawSender::new(lab.tx(), "s0")?;
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let thread = {
            let (stop, sent) = (stop.clone(), sent.clone());
            thread::spawn(move || -> Result<()> {
                pin_to_cpu(0)?;
                let frame = |i: u32| {
                    let [_, _, hi, lo] = i.to_be_bytes();
                    ipv4_udp(
                        NOBODY,
                        [0x02, 0, 0x0f, 0, hi, lo],
                        Ipv4Addr::new(198, 51, 100, 1),
                        Ipv4Addr::new(198, 51, 100, 99),
                    )
                };
                // Built once: the sender's cost is the same for both loads.
                let frames: Vec<Vec<u8>> = (0..distinct).map(frame).collect();
                let start = Instant::now();
                let mut n: u64 = 0;
                while !stop.load(Ordering::Relaxed) {
                    for _ in 0..STEP {
                        sender.send(&frames[(n % u64::from(distinct)) as usize], 1)?;
                        n += 1;
                    }
                    sent.store(n, Ordering::Relaxed);
                    let due = start + Duration::from_secs_f64(n as f64 / f64::from(RATE));
                    if let Some(wait) = due.checked_duration_since(Instant::now()) {
                        sleep(wait);
                    }
                }
                Ok(())
            })
        };
        Ok(Self {
            stop,
            sent,
            thread: Some(thread),
        })
    }

    fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    fn stop(mut self) -> Result<()> {
        self.stop.store(true, Ordering::Relaxed);
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(r)) => r,
            Some(Err(_)) => anyhow::bail!("the flood's sender panicked"),
            None => Ok(()),
        }
    }
}

impl Drop for Flood {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn pin_to_cpu(cpu: usize) -> Result<()> {
    // SAFETY: plain syscall on the calling thread with an initialised set.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            return Err(std::io::Error::last_os_error()).context("sched_setaffinity");
        }
    }
    Ok(())
}

impl Results {
    fn load(&self, distinct: u32) -> Option<&Load> {
        self.loads.iter().find(|l| l.distinct == distinct)
    }

    /// The median of `figure` under the flood over that with `base`
    /// distinct flows.
    fn ratio(&self, base: u32, figure: fn(&Load) -> &[f64]) -> f64 {
        match (self.load(RATE), self.load(base)) {
            (Some(f), Some(b)) => super::median(figure(f)) / super::median(figure(b)),
            _ => f64::NAN,
        }
    }

    /// Read time under the flood over that under the smaller flood, both
    /// keeping the table full: what 16 times more distinct flows add
    /// (nothing, by design).
    pub fn read_ratio(&self) -> f64 {
        self.ratio(SMALL, |l| &l.read_ms)
    }

    /// CPU under the flood over that under the smaller flood.
    pub fn cpu_ratio(&self) -> f64 {
        self.ratio(SMALL, |l| &l.cpu)
    }

    /// Read time under the flood over that with one flow: the cost of a
    /// full table against an almost empty one.
    pub fn read_ratio_one(&self) -> f64 {
        self.ratio(1, |l| &l.read_ms)
    }

    pub fn json(&self) -> Value {
        json!({
            "rate_fps": RATE,
            "window_s": self.window.as_secs_f64(),
            "reps": self.reps,
            "loads": self.loads.iter().map(|l| json!({
                "load": l.name,
                "distinct_source_macs": l.distinct,
                "sent_fps": stats::json_of(&l.sent),
                "cpu_percent": stats::json_of(&l.cpu),
                "flow_read_ms": stats::json_of(&l.read_ms),
                "flows_read": stats::json_of(&l.flows),
            })).collect::<Vec<_>>(),
            "table_entries_per_cpu": TABLE,
            "read_ratio_to_smaller_flood": self.read_ratio(),
            "cpu_ratio_to_smaller_flood": self.cpu_ratio(),
            "read_ratio_to_one_flow": self.read_ratio_one(),
        })
    }

    pub fn markdown(&self) -> String {
        let mut md = format!(
            "**Under a flood of distinct flows.** `macdrop watch --iface r0 --interval 1` on a \
             standalone veth receiving {RATE} mismatched frames per second (foreign unicast, \
             sent on CPU 0; macdrop on CPU 1), from {RATE} distinct source MACs per second, \
             from {SMALL} (four times the {TABLE} entries per CPU of the kernel's flow table: \
             it stays full) or from one: macdrop's CPU over {} s (the scheduler's clock of all its threads) and \
             the time of one read of its flow table as a report does it (`macdrop-bench \
             flow-read`: `FlowReader::read` on the running macdrop's own table, once a \
             second), with the flows the read returned. {} repetition(s); median \
             (min–max).\n\n\
             | load | frames sent per s | macdrop CPU % | flow-table read, ms | flows read |\n\
             |---|---|---|---|---|\n",
            self.window.as_secs(),
            self.reps
        );
        for l in &self.loads {
            md += &format!(
                "| {} | {} | {} | {} | {} |\n",
                l.name,
                stats::show(&l.sent, 0),
                stats::show(&l.cpu, 2),
                stats::show(&l.read_ms, 3),
                stats::show(&l.flows, 0),
            );
        }
        md += &format!(
            "\nUnder the flood over the smaller flood: read time {:.2}, CPU {:.2}; read time \
             under the flood over one flow (a full table against an almost empty one): \
             {:.2}.\n",
            self.read_ratio(),
            self.cpu_ratio(),
            self.read_ratio_one()
        );
        md
    }
}
