//! Runs the real `macdrop` binary inside a lab namespace and reads its reports.
//!
//! The tests exercise the binary exactly as a user runs it (`ip netns exec NS
//! macdrop watch ...`), so the CLI, the JSON contract, signal handling and
//! exit codes are all under test, not just the library. Output is read on
//! threads and waited on with timeouts, never with fixed sleeps, and the
//! process is killed if a test drops the handle without stopping it.

use std::{
    io::{BufRead as _, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    sync::{
        Arc, Mutex,
        mpsc::{self, Receiver, RecvTimeoutError},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use serde::Deserialize;

use crate::netns::{NetNs, describe};

/// macdrop prints this on stderr once every program is attached: from then
/// on, every frame a test sends is counted.
pub const READY_PREFIX: &str = "macdrop: watching ";

/// How long to wait for attachment. Loading and verifying the eBPF object
/// takes well under a second; the margin is for a loaded CI machine.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// How long macdrop may take to print its last report and exit on a signal.
pub const EXIT_TIMEOUT: Duration = Duration::from_secs(10);

/// Report interval used by [`Macdrop::spawn`]: short, so conditions are seen
/// quickly.
pub const TEST_INTERVAL: &str = "0.2";

/// The binary under test: `$MACDROP_BIN`, else the workspace's debug build.
pub fn macdrop_bin() -> PathBuf {
    match std::env::var_os("MACDROP_BIN") {
        Some(path) => PathBuf::from(path),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/debug/macdrop"),
    }
}

/// One line of `macdrop watch --format json`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct Report {
    /// RFC 3339 timestamp of the sample.
    pub ts: String,
    pub interfaces: Vec<InterfaceReport>,
    /// Events since the previous report.
    #[serde(default)]
    pub events: Vec<EventReport>,
    /// With --self-stats: program name -> runs and average ns per run.
    #[serde(default)]
    pub self_stats: Option<std::collections::BTreeMap<String, SelfStat>>,
    /// With --pcap: what was captured.
    #[serde(default)]
    pub pcap: Option<PcapReport>,
}

/// The `pcap` object of a report.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct PcapReport {
    pub file: String,
    pub frames_limit: u64,
    pub frames_written: u64,
    pub not_captured_rate_limit: u64,
    pub not_captured_ring_full: u64,
}

/// One program's run-time statistics.
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct SelfStat {
    pub runs: u64,
    pub avg_ns: f64,
}

/// A promiscuous-mode transition or MAC change.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct EventReport {
    pub ts: String,
    pub interface: String,
    pub ifindex: u32,
    /// "promisc_entered", "promisc_left" or "mac_changed".
    pub kind: String,
    pub description: String,
    pub promiscuity_from: Option<u32>,
    pub promiscuity_to: Option<u32>,
    pub old_mac: Option<String>,
    pub new_mac: Option<String>,
    /// For "attached": the hook; for "hook_changed": the new hook.
    #[serde(default)]
    pub hook: Option<String>,
    /// For "hook_changed": the hook that counted before.
    #[serde(default)]
    pub hook_from: Option<String>,
    /// For "fdb_moved": the MAC, its VLAN, the moves and the ports.
    #[serde(default)]
    pub mac: Option<String>,
    #[serde(default)]
    pub vlan: Option<u16>,
    #[serde(default)]
    pub moves: Option<u64>,
    #[serde(default)]
    pub ports: Option<Vec<String>>,
}

impl Report {
    /// The interface called `name`, if macdrop reports it.
    pub fn interface(&self, name: &str) -> Option<&InterfaceReport> {
        self.interfaces.iter().find(|iface| iface.name == name)
    }

    /// The port whose peer's namespace workload `id` (a container's or a
    /// pod sandbox's) owns, and that workload, once named.
    pub fn port_of(&self, id: &str) -> Option<(&str, &WorkloadReport)> {
        self.interfaces.iter().find_map(|i| {
            let w = i.workload.as_ref()?;
            (w.id.as_deref() == Some(id)).then_some((i.name.as_str(), w))
        })
    }

    /// How long after report `earlier` this one was made (their `ts`).
    pub fn since(&self, earlier: &Report) -> Duration {
        use time::{OffsetDateTime, format_description::well_known::Rfc3339};
        let at = |ts: &str| OffsetDateTime::parse(ts, &Rfc3339).expect("ts is RFC 3339");
        (at(&self.ts) - at(&earlier.ts))
            .try_into()
            .expect("`earlier` is not later")
    }

    /// The counters of interface `name`, if macdrop reports it.
    pub fn frames(&self, name: &str) -> Option<FrameCounts> {
        self.interface(name).map(|iface| iface.frames)
    }
}

/// One watched interface in a [`Report`].
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct InterfaceReport {
    pub name: String,
    pub ifindex: u32,
    /// Inode number of the interface's network namespace, in decimal.
    pub netns: String,
    /// The namespace's name, for namespaces other than macdrop's own.
    #[serde(default)]
    pub netns_name: Option<String>,
    pub role: Role,
    /// The bridge's name for a port, `null` otherwise.
    pub master: Option<String>,
    /// The current MAC; empty where the JSON has `null` (a device without
    /// one; seen too for a port in the first report that lists it, under
    /// churn).
    #[serde(deserialize_with = "null_as_empty")]
    pub mac: String,
    pub promisc: bool,
    #[serde(default)]
    pub promiscuity: u32,
    /// Who holds promiscuous mode; None when not promiscuous.
    #[serde(default)]
    pub promisc_holders: Option<String>,
    /// The hook in use ("tcx", "xdp-driver", ...); None if not attached.
    #[serde(default)]
    pub hook: Option<String>,
    /// The interface vanished; its counts are final.
    #[serde(default)]
    pub gone: bool,
    /// The kernel's pkt_type of the same frames (tc hooks only).
    #[serde(default)]
    pub pkt_type: Option<PktType>,
    /// One mismatched frame in this many recorded in the flow table (1:
    /// every frame); None with `--top-flows 0`.
    #[serde(default)]
    pub flow_sampling: Option<u32>,
    pub frames: FrameCounts,
    /// Frames per second over the last interval, by class.
    #[serde(default)]
    pub rates: serde_json::Value,
    /// Confirmed kernel drops by reason; None when unavailable.
    #[serde(default)]
    pub kernel_drops: Option<std::collections::BTreeMap<String, u64>>,
    /// `rx_otherhost_dropped` since attach; None when unavailable.
    #[serde(default)]
    pub rx_otherhost_dropped_since_attach: Option<u64>,
    #[serde(default)]
    pub verdict: String,
    /// What owns a veth's peer namespace; None when unknown.
    #[serde(default)]
    pub workload: Option<WorkloadReport>,
    /// Frames that left an uplink per source-MAC class (`own`, `child`,
    /// `other`); None on other interfaces.
    #[serde(default)]
    pub egress: Option<serde_json::Value>,
}

/// A string that may be `null`, as "".
fn null_as_empty<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(Option::<String>::deserialize(d)?.unwrap_or_default())
}

/// The `workload` object of an interface.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct WorkloadReport {
    /// "docker", "podman", "kubernetes" or "process".
    pub kind: String,
    pub id: Option<String>,
    pub name: Option<String>,
    pub namespace: Option<String>,
    pub pod: Option<String>,
    pub pid: Option<u32>,
}

/// `skb->pkt_type` counts, as the tc program saw them.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
pub struct PktType {
    pub host: u64,
    pub broadcast: u64,
    pub multicast: u64,
    pub otherhost: u64,
    pub other: u64,
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Bridge,
    Port,
    Standalone,
}

/// Frames received by one interface since attach, by destination class.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
pub struct FrameCounts {
    pub total: u64,
    pub own: u64,
    pub broadcast: u64,
    pub multicast: u64,
    pub foreign_unicast: u64,
    /// Subset of `foreign_unicast` carrying one of the host's IP addresses.
    pub host_ip_wrong_mac: u64,
    pub runt: u64,
    /// Subset of `foreign_unicast` sent to a previous MAC of the bridge or
    /// interface.
    #[serde(default)]
    pub stale_mac: u64,
}

impl FrameCounts {
    /// Sets `total` to the sum of the disjoint classes, so expectations are
    /// written once: `FrameCounts { own: 3, ..Default::default() }.with_total()`.
    pub fn with_total(mut self) -> Self {
        self.total = self.own + self.broadcast + self.multicast + self.foreign_unicast + self.runt;
        self
    }
}

/// What macdrop's stdout is used for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Output {
    /// `--format json --interval 0.2`: captured and parsed into [`Report`]s.
    Json,
    /// Stdout and stderr go to the terminal (the demo); no reports are read.
    Terminal,
}

/// Events from the stderr reader thread.
enum StderrEvent {
    Ready,
    Closed,
}

/// A running `macdrop watch`.
pub struct Macdrop {
    child: Child,
    output: Output,
    /// Raw stdout lines (JSON mode); disconnected when stdout closes.
    lines: Receiver<String>,
    latest: Option<Report>,
    latest_raw: Option<String>,
    /// Reports received so far, to tell whether a final one followed a signal.
    received: usize,
    /// Every event of every report received so far.
    events: Vec<EventReport>,
    stderr: Arc<Mutex<String>>,
    threads: Vec<JoinHandle<()>>,
}

/// `BIN watch [--format json --interval 0.2] ARGS`.
pub fn watch_argv<'a>(
    bin: &'a Path,
    args: &'a [&'a str],
    output: Output,
) -> Vec<&'a std::ffi::OsStr> {
    let mut argv: Vec<&std::ffi::OsStr> = vec![bin.as_os_str(), "watch".as_ref()];
    if output == Output::Json {
        argv.extend(["--format", "json", "--interval", TEST_INTERVAL].map(std::ffi::OsStr::new));
    }
    argv.extend(args.iter().map(std::ffi::OsStr::new));
    argv
}

impl Macdrop {
    /// Starts `macdrop watch --format json --interval 0.2 ARGS` in `ns` and
    /// waits until it has attached.
    pub fn spawn(ns: &NetNs, args: &[&str]) -> Result<Self> {
        Self::spawn_bin(&macdrop_bin(), ns, args, Output::Json)
    }

    /// Starts `BIN watch [--format json --interval 0.2] ARGS` in `ns` and
    /// waits for the readiness line on stderr.
    pub fn spawn_bin(bin: &Path, ns: &NetNs, args: &[&str], output: Output) -> Result<Self> {
        Self::spawn_with_env(bin, ns, args, output, &[])
    }

    /// [`Macdrop::spawn_bin`] with extra environment variables.
    pub fn spawn_with_env(
        bin: &Path,
        ns: &NetNs,
        args: &[&str],
        output: Output,
        env: &[(&str, &str)],
    ) -> Result<Self> {
        check_bin(bin)?;
        let mut cmd = ns.command(&watch_argv(bin, args, output));
        cmd.envs(env.iter().copied());
        Self::spawn_command(cmd, output)
    }

    /// Starts `cmd`, a command line ending in [`watch_argv`] (e.g. in
    /// namespaces a test entered), and waits for the readiness line.
    pub fn spawn_command(mut cmd: Command, output: Output) -> Result<Self> {
        cmd.stdin(Stdio::null()).stderr(Stdio::piped());
        cmd.stdout(match output {
            Output::Json => Stdio::piped(),
            Output::Terminal => Stdio::inherit(),
        });
        let mut child = cmd
            .spawn()
            .with_context(|| format!("cannot start {}", describe(&cmd)))?;

        let stderr_text = Arc::new(Mutex::new(String::new()));
        let (events_tx, events) = mpsc::channel();
        let stderr_pipe = child.stderr.take().expect("stderr is piped");
        let echo = output == Output::Terminal;
        let sink = Arc::clone(&stderr_text);
        let mut threads = vec![std::thread::spawn(move || {
            for line in BufReader::new(stderr_pipe).lines() {
                let Ok(line) = line else { break };
                if echo {
                    eprintln!("{line}");
                }
                if line.starts_with(READY_PREFIX) {
                    let _ = events_tx.send(StderrEvent::Ready);
                }
                let mut text = sink.lock().unwrap_or_else(|e| e.into_inner());
                text.push_str(&line);
                text.push('\n');
            }
            let _ = events_tx.send(StderrEvent::Closed);
        })];

        let (lines_tx, lines) = mpsc::channel();
        if let Some(stdout) = child.stdout.take() {
            threads.push(std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    if lines_tx.send(line).is_err() {
                        break;
                    }
                }
            }));
        }

        let mut macdrop = Self {
            child,
            output,
            lines,
            latest: None,
            latest_raw: None,
            received: 0,
            events: Vec::new(),
            stderr: stderr_text,
            threads,
        };
        match events.recv_timeout(READY_TIMEOUT) {
            Ok(StderrEvent::Ready) => Ok(macdrop),
            Ok(StderrEvent::Closed) | Err(RecvTimeoutError::Disconnected) => {
                let status = macdrop.wait_exit(EXIT_TIMEOUT);
                bail!(
                    "macdrop exited before attaching ({}); stderr:\n{}",
                    status.map_or_else(|e| e.to_string(), |s| s.to_string()),
                    macdrop.stderr()
                )
            }
            Err(RecvTimeoutError::Timeout) => bail!(
                "macdrop did not print {READY_PREFIX:?} within {READY_TIMEOUT:?}; stderr:\n{}",
                macdrop.stderr()
            ),
        }
    }

    /// The process id (of macdrop itself: `ip netns exec` execs it).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// How many file descriptors macdrop has open (/proc/PID/fd).
    pub fn open_fds(&self) -> Result<usize> {
        let dir = format!("/proc/{}/fd", self.pid());
        Ok(std::fs::read_dir(&dir)
            .with_context(|| format!("cannot list {dir}"))?
            .count())
    }

    /// Its resident memory in KiB (VmRSS, from /proc/PID/status).
    pub fn rss_kib(&self) -> Result<u64> {
        let path = format!("/proc/{}/status", self.pid());
        let status =
            std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .with_context(|| format!("no VmRSS in {path}"))
    }

    /// Everything macdrop printed on stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Every event reported so far, in order.
    pub fn events(&self) -> &[EventReport] {
        &self.events
    }

    /// The most recent report received (reports already queued are not
    /// read; see [`Macdrop::wait_for`]).
    pub fn latest(&self) -> Option<&Report> {
        self.latest.as_ref()
    }

    /// The most recent report as raw JSON, for checking the contract itself
    /// (field presence and types) rather than what serde accepts.
    pub fn latest_json(&self) -> Result<Option<serde_json::Value>> {
        self.latest_raw
            .as_deref()
            .map(serde_json::from_str)
            .transpose()
            .context("latest report is not JSON")
    }

    /// Reads reports until `cond` holds for one (returned) or `timeout`
    /// passes (error showing the last report).
    pub fn wait_for(
        &mut self,
        mut cond: impl FnMut(&Report) -> bool,
        timeout: Duration,
    ) -> Result<Report> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(report) = self.latest.as_ref().filter(|r| cond(r)) {
                return Ok(report.clone());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => self.accept(line)?,
                Err(RecvTimeoutError::Timeout) => bail!(
                    "condition not met within {timeout:?}; last report: {}",
                    self.latest_raw.as_deref().unwrap_or("none")
                ),
                Err(RecvTimeoutError::Disconnected) => bail!(
                    "macdrop closed stdout before the condition was met; last report: {}; stderr:\n{}",
                    self.latest_raw.as_deref().unwrap_or("none"),
                    self.stderr()
                ),
            }
        }
    }

    /// Like [`Macdrop::wait_for`], but on timeout returns the latest report
    /// instead of an error, so the caller's exact assertions show what
    /// differs. Panics only if there is no report at all.
    pub fn settle(&mut self, cond: impl FnMut(&Report) -> bool, timeout: Duration) -> Report {
        match self.wait_for(cond, timeout) {
            Ok(report) => report,
            Err(_) => self.latest.clone().expect("macdrop printed no report"),
        }
    }

    /// Reads reports until an event (of any report so far) matches `pred`;
    /// returns it, or an error listing the events seen after `timeout`.
    pub fn wait_for_event(
        &mut self,
        mut pred: impl FnMut(&EventReport) -> bool,
        timeout: Duration,
    ) -> Result<EventReport> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(event) = self.events.iter().find(|e| pred(e)) {
                return Ok(event.clone());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => self.accept(line)?,
                Err(RecvTimeoutError::Timeout) => bail!(
                    "no matching event within {timeout:?}; events seen: {:?}",
                    self.events
                ),
                Err(RecvTimeoutError::Disconnected) => bail!(
                    "macdrop closed stdout before the event; events seen: {:?}; stderr:\n{}",
                    self.events,
                    self.stderr()
                ),
            }
        }
    }

    /// Sends SIGTERM and returns the final report (the last line macdrop
    /// printed). Fails unless macdrop printed a report after the signal and
    /// exited with status 0.
    pub fn stop(self) -> Result<Report> {
        self.stop_with(libc::SIGTERM)?
            .context("macdrop printed no report at all")
    }

    /// Sends SIGINT (what Ctrl-C does) and waits for a clean exit. Returns
    /// the final report in JSON mode, `None` in terminal mode.
    pub fn interrupt(self) -> Result<Option<Report>> {
        self.stop_with(libc::SIGINT)
    }

    fn stop_with(mut self, signal: libc::c_int) -> Result<Option<Report>> {
        // Take what was already printed, so "after the signal" is exact.
        while let Ok(line) = self.lines.try_recv() {
            self.accept(line)?;
        }
        let before = self.received;
        // SAFETY: plain syscall; the child has not been reaped yet (we hold
        // it), so the pid cannot have been reused.
        if unsafe { libc::kill(self.child.id() as libc::pid_t, signal) } != 0 {
            return Err(std::io::Error::last_os_error()).context("kill(macdrop)");
        }
        let status = self.wait_exit(EXIT_TIMEOUT)?;
        // The process is gone, so stdout is closed: drain to the end.
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
        while let Ok(line) = self.lines.try_recv() {
            self.accept(line)?;
        }
        if !status.success() {
            bail!(
                "macdrop exited with {status} after signal {signal}; stderr:\n{}",
                self.stderr()
            );
        }
        if self.output == Output::Json && self.received == before {
            bail!("macdrop printed no final report after signal {signal}");
        }
        Ok(self.latest.take())
    }

    /// Sends `signal` and waits for the process to end, whatever its exit
    /// status (SIGKILL gives none); for tests of what an exit leaves behind.
    pub fn kill_with(mut self, signal: libc::c_int) -> Result<ExitStatus> {
        // SAFETY: plain syscall; the child has not been reaped yet.
        if unsafe { libc::kill(self.child.id() as libc::pid_t, signal) } != 0 {
            return Err(std::io::Error::last_os_error()).context("kill(macdrop)");
        }
        self.wait_exit(EXIT_TIMEOUT)
    }

    /// Waits for macdrop to end on its own (`--duration`); it must exit 0.
    pub fn wait_until_exit(mut self, timeout: Duration) -> Result<ExitStatus> {
        let status = self.wait_exit(timeout)?;
        if !status.success() {
            bail!("macdrop exited with {status}; stderr:\n{}", self.stderr());
        }
        Ok(status)
    }

    fn accept(&mut self, line: String) -> Result<()> {
        // Every line follows the published schema, whatever the test reads.
        let doc = crate::schema::parse(crate::schema::Output::Watch, &line)?;
        let report: Report = serde_json::from_value(doc)
            .with_context(|| format!("macdrop printed a line that is not a report: {line}"))?;
        self.events.extend(report.events.iter().cloned());
        self.latest = Some(report);
        self.latest_raw = Some(line);
        self.received += 1;
        Ok(())
    }

    /// Polls for exit; kills the process if it outlives `timeout`.
    fn wait_exit(&mut self, timeout: Duration) -> Result<ExitStatus> {
        wait_child(&mut self.child, timeout)
    }
}

impl Drop for Macdrop {
    fn drop(&mut self) {
        // Still running: the test failed before stop(). Kill it so it does
        // not outlive the test (its XDP links go away with it).
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// How a one-shot run of the binary ended.
#[derive(Debug)]
pub struct Finished {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `macdrop ARGS` (no implied `watch`) in `ns` to completion, for
/// commands expected to exit on their own (usage and environment errors).
/// Killed, and an error, if it runs longer than `timeout`.
pub fn run(ns: &NetNs, args: &[&str], timeout: Duration) -> Result<Finished> {
    let bin = macdrop_bin();
    check_bin(&bin)?;
    let bin = bin.to_str().context("MACDROP_BIN is not UTF-8")?;
    let mut argv = vec![bin];
    argv.extend(args);
    run_command(ns, &argv, timeout)
}

/// Runs `macdrop ARGS` like `run`, in a PID namespace of its own with its
/// own /proc (`unshare --pid --fork --mount-proc`): a macdrop in a
/// container that does not share the host's PID namespace, which cannot
/// see the processes of a macdrop outside it.
pub fn run_in_own_pid_namespace(ns: &NetNs, args: &[&str], timeout: Duration) -> Result<Finished> {
    let bin = macdrop_bin();
    check_bin(&bin)?;
    let bin = bin.to_str().context("MACDROP_BIN is not UTF-8")?;
    let mut argv = vec!["unshare", "--pid", "--fork", "--mount-proc", bin];
    argv.extend(args);
    run_command(ns, &argv, timeout)
}

/// Runs any command line in `ns` to completion (e.g. macdrop behind
/// `setpriv`), like `run`.
pub fn run_command(ns: &NetNs, argv: &[&str], timeout: Duration) -> Result<Finished> {
    let mut cmd = ns.command(argv);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .with_context(|| format!("cannot start {}", describe(&cmd)))?;
    let stdout = read_to_end_on_thread(child.stdout.take().expect("piped"));
    let stderr = read_to_end_on_thread(child.stderr.take().expect("piped"));
    let status =
        wait_child(&mut child, timeout).with_context(|| format!("running {}", describe(&cmd)))?;
    Ok(Finished {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    })
}

fn check_bin(bin: &Path) -> Result<()> {
    if !bin.is_file() {
        bail!(
            "macdrop binary not found at {}: build it with `cargo build -p monitor`, \
             or point MACDROP_BIN at it",
            bin.display()
        );
    }
    Ok(())
}

fn read_to_end_on_thread(mut pipe: impl std::io::Read + Send + 'static) -> JoinHandle<String> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

/// Waits for `child` to exit, polling every 10 ms. `Child::wait` has no
/// timeout, and a hung process must fail the test rather than hang it.
pub fn wait_child(child: &mut Child, timeout: Duration) -> Result<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().context("waitpid")? {
            return Ok(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "process {} did not exit within {timeout:?}; killed it",
                child.id()
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}
