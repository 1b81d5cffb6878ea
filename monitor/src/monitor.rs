//! The running monitor: every namespace's session, driven by one loop of
//! interval ticks, rtnetlink notifications and signals. It yields reports
//! (`World`s); the commands (`watch`, and whatever renders them) decide what
//! to do with each. Detaches everything when it stops or is dropped.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    time::{Duration, SystemTime},
};

use tokio::{
    signal::unix::{Signal, SignalKind, signal},
    sync::mpsc::{UnboundedReceiver, UnboundedSender},
    task::JoinHandle,
    time::{Instant, Interval},
};

use crate::{
    error::{Failure, Reason},
    evidence::{Evidence, EvidencePlan},
    kernel::{attach::AttachMode, evidence::Counts, loader, self_stats::StatsEnabled},
    model::{Interface, World},
    netlink::Change,
    netns::Namespace,
    output::note,
    privileges,
    session::Session,
    topology::Selection,
    workload::{Resolver, Sockets},
};

/// What to watch and how.
#[derive(Clone, Debug)]
pub struct Plan {
    pub selection: Selection,
    pub attach: AttachMode,
    /// `--netns` specs; empty for the current namespace.
    pub netns: Vec<String>,
    pub all_netns: bool,
    pub interval: Duration,
    pub duration: Option<Duration>,
    /// Measure macdrop's own programs (`--self-stats`).
    pub self_stats: bool,
    /// Top offenders per interface (`--top-flows`; 0: no flow records).
    pub top_flows: usize,
    /// `--pcap FILE`: evidence of the first N mismatched frames.
    pub evidence: Option<EvidencePlan>,
    /// How long a gone interface stays in the reports (`--retention`).
    pub retention: Duration,
}

/// What the monitor's loop produced.
pub enum Step {
    /// A periodic report.
    Report(World),
    /// The duration ended or a signal arrived: the final report; the
    /// monitor has detached.
    Final(World),
}

pub struct Monitor {
    plan: Plan,
    sessions: Vec<Tracked>,
    next_id: u64,
    /// Every session's notifications, tagged with its id.
    changes: UnboundedReceiver<(u64, Change)>,
    changes_tx: UnboundedSender<(u64, Change)>,
    /// Final state of the interfaces of namespaces that went away, for
    /// their retention window.
    retired: Vec<Interface>,
    /// With --all-netns: namespaces found without anything to watch, and
    /// when; they are looked at again after `RECHECK_BRIDGELESS`.
    bridgeless: HashMap<u32, Instant>,
    last_scan: Instant,
    /// When every namespace was last read in full whatever the
    /// notifications said (see `RESYNC`).
    last_resync: Instant,
    ticker: Interval,
    deadline: Option<Instant>,
    signals: [Signal; 3],
    finished: bool,
    /// Keeps BPF run-time statistics on while macdrop runs.
    self_stats: Option<StatsEnabled>,
    /// `--pcap`: the file being written.
    evidence: Option<Evidence>,
    /// Capture counts of sessions that went away.
    retired_evidence: Counts,
    /// Names the owners of veth peers, on a thread of its own.
    workloads: Resolver,
}

/// One session and the task forwarding its notifications (aborted when the
/// session goes, so nothing keeps a deleted namespace alive).
struct Tracked {
    id: u64,
    session: Session,
    forwarder: JoinHandle<()>,
}

/// With --all-netns, how often the namespace directories are scanned for
/// namespaces that appeared or went away.
const RESCAN: Duration = Duration::from_secs(2);
/// How long a namespace without a bridge is left alone before it is looked
/// at again (pod namespaces rarely grow a bridge; each look costs a dump).
const RECHECK_BRIDGELESS: Duration = Duration::from_secs(30);
/// Each namespace is re-read in full when its notifications say it
/// changed, and this often regardless: a safety net for a change the
/// kernel did not announce, or an announcement lost to a full socket
/// buffer. Between re-reads an interval costs one statistics read.
const RESYNC: Duration = Duration::from_secs(30);
/// After a notification, how long to wait for the others of the same
/// change (enslaving a port sends several) so they cost one re-read.
const DEBOUNCE: Duration = Duration::from_millis(5);
/// How often the moves of a hand-off are taken (`Session::advance_handoff`,
/// two RCU grace periods per call: short enough, rare enough).
const HANDOFF_POLL: Duration = Duration::from_millis(200);

impl Monitor {
    /// Checks privileges, resolves the namespaces, starts a session in each
    /// (attaching everything), and prints what is watched on stderr.
    pub async fn start(plan: Plan) -> anyhow::Result<Self> {
        privileges::check()?;
        // A capture path that is refused fails fast, before anything is
        // attached; the file itself is created only once every namespace
        // and interface is validated (below).
        if let Some(p) = &plan.evidence {
            p.target.check()?;
        }
        let capture = plan.evidence.as_ref().map(|p| p.count);
        let self_stats = if plan.self_stats {
            Some(StatsEnabled::enable()?)
        } else {
            None
        };
        // Signals are set up before attaching so none is missed.
        let signals = [
            signal(SignalKind::interrupt())?,
            signal(SignalKind::terminate())?,
            signal(SignalKind::hangup())?,
        ];
        let mut sessions: Vec<Session> = Vec::new();
        let namespaces = namespaces(&plan)?;
        let values = loader::Values::new(namespaces.iter().map(|ns| ns.inode));
        let mut batch = loader::Batch::new(&values);
        batch.prepare()?;
        for ns in namespaces {
            let label = ns.describe();
            match Session::start(
                ns,
                plan.selection.clone(),
                plan.attach,
                plan.top_flows,
                capture,
                &mut batch,
            )
            .await
            {
                Ok(session) => sessions.push(session),
                // With --all-netns, a namespace without anything to watch
                // is simply not watched.
                Err(e) if plan.all_netns && nothing_to_watch(&e) => {}
                Err(e) if plan.all_netns => note(format_args!("{label}: {e:#}")),
                Err(e) => return Err(e),
            }
        }
        // Every session started: the batch's parse of the kernel's BTF goes.
        drop(batch);
        crate::heap::trim();
        // With --all-netns an empty start is not an error: a node may have
        // no bridge yet (before the first container), and namespaces that
        // appear later are picked up.
        if sessions.is_empty() && !plan.all_netns {
            return Err(Failure::environment(
                "no namespace under /run/netns or /run/docker/netns (nor this one) has a bridge \
                 to watch; name interfaces with --iface",
            )
            .into());
        }
        if sessions.is_empty() {
            note(format_args!(
                "watching 0 interface(s): no namespace has a bridge yet; waiting for \
                 one to appear"
            ));
        }
        if let Some(why) = sessions.iter().find_map(|s| s.drop_source().err()) {
            note(format_args!(
                "confirmed kernel drops unavailable ({why}); frame classes only"
            ));
        }
        note(capability_summary(
            sessions.first().and_then(|s| s.drop_source().ok()),
        ));
        for s in &mut sessions {
            for line in s.take_notes() {
                note(line);
            }
        }
        // Everything validated and attached: now the capture file. Before
        // the privileges are dropped (CAP_DAC_OVERRIDE may be what lets
        // root write there); if it fails, the sessions drop and detach.
        let evidence = match &plan.evidence {
            Some(p) => Some(Evidence::create(p)?),
            None => None,
        };
        for s in &sessions {
            note(format_args!("watching {}", s.summary()));
        }

        // Every session's notifications go to one channel, tagged with the
        // session's id, so one select waits on all namespaces.
        let (changes_tx, changes) = tokio::sync::mpsc::unbounded_channel();
        let mut tracked = Vec::new();
        for (id, session) in sessions.into_iter().enumerate() {
            tracked.push(track(id as u64, session, &changes_tx));
        }
        // Attached: keep only what following new ports needs.
        let enters_namespaces = plan.all_netns || !plan.netns.is_empty();
        privileges::drop_after_attach(enters_namespaces)?;
        // After the drop: the thread inherits only what is kept
        // (CAP_SYS_PTRACE reads other processes' /proc/PID/ns/net).
        let workloads = Resolver::start(Sockets::from_env())?;

        let mut ticker = tokio::time::interval(plan.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker.tick().await; // the first tick is immediate
        Ok(Self {
            next_id: tracked.len() as u64,
            sessions: tracked,
            changes,
            changes_tx,
            retired: Vec::new(),
            bridgeless: HashMap::new(),
            last_scan: Instant::now(),
            last_resync: Instant::now(),
            deadline: plan.duration.map(|d| Instant::now() + d),
            plan,
            ticker,
            signals,
            finished: false,
            self_stats,
            evidence,
            retired_evidence: Counts::default(),
            workloads,
        })
    }

    /// Runs until the next report is due (handling changes meanwhile), or
    /// until the end; after `Step::Final` it returns None.
    pub async fn next(&mut self) -> anyhow::Result<Option<Step>> {
        if self.finished {
            return Ok(None);
        }
        loop {
            let deadline = self.deadline;
            let sleep_until_deadline = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            };
            let [sigint, sigterm, sighup] = &mut self.signals;
            let evidence_ready = evidence_ready(&self.sessions);
            // While a session moves interfaces from generic XDP to TCX,
            // its moves are taken a few times a second rather than once
            // per report, so the hand-off ends soon after the last link.
            let handing_off = self.sessions.iter().any(|t| t.session.handing_off());
            let handoff_due = async {
                if handing_off {
                    tokio::time::sleep(HANDOFF_POLL).await
                } else {
                    std::future::pending().await
                }
            };
            tokio::select! {
                _ = self.ticker.tick() => {
                    while let Ok((id, change)) = self.changes.try_recv() {
                        self.notice(id, &change);
                    }
                    if self.plan.all_netns && self.last_scan.elapsed() >= RESCAN {
                        self.rescan().await?;
                    }
                    let resync = self.last_resync.elapsed() >= RESYNC;
                    if resync {
                        self.last_resync = Instant::now();
                    }
                    for t in &mut self.sessions {
                        t.session.advance_handoff()?;
                        if resync || t.session.is_stale() {
                            t.session.refresh().await?;
                        } else {
                            t.session.poll().await?;
                        }
                    }
                    // The report first: it takes the workload thread's
                    // latest answers, and the notes that came with them
                    // ("the Docker Engine answers again") go out with it.
                    let report = self.report()?;
                    self.print_notes();
                    return Ok(Some(Step::Report(report)));
                }
                Some((id, change)) = self.changes.recv() => {
                    // Take every pending change in order (and those that
                    // follow within DEBOUNCE), then re-read each namespace
                    // that had a change that matters, once.
                    self.notice(id, &change);
                    if change.needs_reread() {
                        tokio::time::sleep(DEBOUNCE).await;
                    }
                    while let Ok((id, change)) = self.changes.try_recv() {
                        self.notice(id, &change);
                    }
                    for t in self.sessions.iter_mut().filter(|t| t.session.is_stale()) {
                        t.session.refresh().await?;
                    }
                    self.update_workloads();
                    self.print_notes();
                }
                _ = evidence_ready => self.write_evidence()?,
                _ = handoff_due => {
                    for t in &mut self.sessions {
                        t.session.advance_handoff()?;
                    }
                    self.print_notes();
                }
                _ = sleep_until_deadline => break,
                _ = sigint.recv() => break,
                _ = sigterm.recv() => break,
                _ = sighup.recv() => break,
            }
        }
        self.stop().await.map(|w| Some(Step::Final(w)))
    }

    /// The final report, then detach (also done on drop).
    pub async fn stop(&mut self) -> anyhow::Result<World> {
        self.finished = true;
        for t in &mut self.sessions {
            t.session.refresh().await?;
        }
        // What the kernel captured up to now goes into the file, which is
        // then complete (whole blocks, flushed).
        self.write_evidence()?;
        let world = self.report()?;
        for t in &mut self.sessions {
            t.session.detach_all();
            t.forwarder.abort();
        }
        Ok(world)
    }

    /// Moves the records waiting in every session's ring to the pcap
    /// file; once it holds N frames, closes every budget.
    fn write_evidence(&mut self) -> anyhow::Result<()> {
        let Some(evidence) = &mut self.evidence else {
            return Ok(());
        };
        for t in &mut self.sessions {
            for (record, receiver) in t.session.drain_evidence() {
                evidence.write(&record, receiver.as_ref())?;
            }
        }
        evidence.flush()?;
        if !evidence.wants_more() {
            for t in &mut self.sessions {
                t.session.stop_capture()?;
            }
        }
        Ok(())
    }

    /// The kernel's capture counts over every session, gone ones included.
    fn evidence_counts(&self) -> anyhow::Result<Counts> {
        let mut sum = self.retired_evidence;
        for t in &self.sessions {
            sum.add(&t.session.evidence_counts()?);
        }
        Ok(sum)
    }

    fn notice(&mut self, id: u64, change: &Change) {
        if let Some(t) = self.sessions.iter_mut().find(|t| t.id == id) {
            t.session.notice(change);
        }
    }

    /// Tells the workload thread which ports to name, and gives every
    /// session the latest names (never waits for them).
    fn update_workloads(&mut self) {
        for t in &mut self.sessions {
            let inode = t.session.ns.inode;
            let (lookup, peers) = t.session.peers();
            self.workloads.want(inode, lookup, peers);
            let workloads = &self.workloads;
            t.session
                .apply_workloads(|ifindex| workloads.get(inode, ifindex));
        }
    }

    fn print_notes(&mut self) {
        for line in self.workloads.take_notes() {
            note(line);
        }
        for t in &mut self.sessions {
            for line in t.session.take_notes() {
                note(line);
            }
        }
    }

    /// --all-netns: starts sessions in namespaces that appeared (with a
    /// bridge), and retires those of namespaces that went away, keeping
    /// their interfaces' final counts in the reports.
    async fn rescan(&mut self) -> anyhow::Result<()> {
        self.last_scan = Instant::now();
        let present = Namespace::all()?;
        let inodes: BTreeSet<u32> = present.iter().map(|ns| ns.inode).collect();
        let mut i = 0;
        while i < self.sessions.len() {
            if inodes.contains(&self.sessions[i].session.ns.inode) {
                i += 1;
                continue;
            }
            self.write_evidence()?;
            let mut t = self.sessions.remove(i);
            self.workloads.forget(t.session.ns.inode);
            if let Ok(counts) = t.session.evidence_counts() {
                self.retired_evidence.add(&counts);
            }
            let label = t.session.ns.describe();
            let mut gone = t.session.collect()?;
            let now = std::time::Instant::now();
            for iface in &mut gone {
                iface.mark_gone(now);
            }
            self.retired.extend(gone);
            t.session.detach_all();
            t.forwarder.abort();
            note(format_args!(
                "{label} went away; its interfaces' final counts are kept"
            ));
        }
        self.bridgeless.retain(|inode, _| inodes.contains(inode));
        let new: Vec<Namespace> = present
            .into_iter()
            .filter(|ns| {
                let known = self.sessions.iter().any(|t| t.session.ns.inode == ns.inode);
                let recently_bridgeless = self
                    .bridgeless
                    .get(&ns.inode)
                    .is_some_and(|at| at.elapsed() < RECHECK_BRIDGELESS);
                !known && !recently_bridgeless
            })
            .collect();
        if new.is_empty() {
            return Ok(());
        }
        let values = loader::Values::new(new.iter().map(|ns| ns.inode));
        let mut batch = loader::Batch::new(&values);
        for ns in new {
            let (inode, label) = (ns.inode, ns.describe());
            // A namespace found later captures what is left of the budget.
            let capture = self
                .evidence
                .as_ref()
                .map(|e| e.limit().saturating_sub(e.written()));
            match Session::start(
                ns,
                self.plan.selection.clone(),
                self.plan.attach,
                self.plan.top_flows,
                capture,
                &mut batch,
            )
            .await
            {
                Ok(session) => {
                    note(format_args!("now watching {}", session.summary()));
                    let t = track(self.next_id, session, &self.changes_tx);
                    self.next_id += 1;
                    self.sessions.push(t);
                }
                Err(e) => {
                    if !nothing_to_watch(&e) {
                        note(format_args!("{label}: {e:#}"));
                    }
                    self.bridgeless.insert(inode, Instant::now());
                }
            }
        }
        drop(batch);
        crate::heap::trim();
        Ok(())
    }

    /// One report over every session, without the gone interfaces whose
    /// retention ended.
    fn report(&mut self) -> anyhow::Result<World> {
        let now = std::time::Instant::now();
        let retention = self.plan.retention;
        for t in &mut self.sessions {
            t.session.expire(retention, now);
        }
        let expired = crate::retention::expire(&mut self.retired, |i| i, retention, now);
        self.update_workloads();
        let mut world = World {
            ts: SystemTime::now(),
            interfaces: Vec::new(),
            events: Vec::new(),
            drop_source: Err("no session".into()),
            self_stats: self.self_stats.as_ref().map(|_| BTreeMap::new()),
            evidence: None,
        };
        if let Some(evidence) = &self.evidence {
            world.evidence = Some(evidence.summary(&self.evidence_counts()?));
        }
        for (i, t) in self.sessions.iter_mut().enumerate() {
            let s = &mut t.session;
            world.interfaces.extend(s.collect()?);
            world.events.extend(s.take_events());
            if i == 0 {
                world.drop_source = s.drop_source();
            }
            if let Some(stats) = &mut world.self_stats {
                s.add_program_stats(stats);
            }
        }
        world.interfaces.extend(self.retired.iter().cloned());
        for i in &mut self.retired {
            i.mark_shown();
        }
        world.events.extend(expired);
        world.events.sort_by_key(|e| e.ts);
        Ok(world)
    }
}

/// One line on what this kernel gives macdrop, e.g. "kernel 6.18: tc via
/// TCX, XDP native/generic, drop reasons via tp_btf, rx_otherhost_dropped".
pub fn capability_summary(drop_source: Option<&str>) -> String {
    let (major, minor) = crate::kernel_version::running();
    let tc = match crate::kernel::attach::tc_hook() {
        crate::kernel::attach::Hook::Tcx => "tc via TCX",
        _ => "tc via clsact",
    };
    let drops = match drop_source {
        Some(hook) => format!("drop reasons via {hook}"),
        None => "no drop reasons".to_owned(),
    };
    let otherhost = if crate::kernel_version::has_otherhost_counter() {
        "rx_otherhost_dropped counter"
    } else {
        "no otherhost counter"
    };
    format!("kernel {major}.{minor}: {tc}, XDP native/generic, {drops}, {otherhost}")
}

/// The namespaces to watch: the current one, `--netns` ones, or with
/// `--all-netns` every named namespace (and this one).
fn namespaces(plan: &Plan) -> anyhow::Result<Vec<Namespace>> {
    if plan.all_netns {
        return Namespace::all();
    }
    if plan.netns.is_empty() {
        return Ok(vec![Namespace::current()?]);
    }
    let mut out: Vec<Namespace> = Vec::new();
    for spec in &plan.netns {
        let ns = Namespace::open(spec)?;
        if !out.iter().any(|o| o.inode == ns.inode) {
            out.push(ns);
        }
    }
    Ok(out)
}

/// Resolves when some session's evidence ring has records (never without
/// `--pcap`).
async fn evidence_ready(sessions: &[Tracked]) {
    let waits: Vec<_> = sessions
        .iter()
        .filter_map(|t| t.session.evidence())
        .map(|ring| Box::pin(ring.readable()))
        .collect();
    if waits.is_empty() {
        return std::future::pending().await;
    }
    futures::future::select_all(waits).await;
}

/// Starts forwarding a session's notifications into the monitor's channel.
fn track(id: u64, mut session: Session, tx: &UnboundedSender<(u64, Change)>) -> Tracked {
    let forwarder = match session.take_notifications() {
        Some(mut stream) => {
            let tx = tx.clone();
            tokio::spawn(async move {
                while let Some(change) = stream.next().await {
                    if tx.send((id, change)).is_err() {
                        break;
                    }
                }
            })
        }
        None => tokio::spawn(async {}),
    };
    Tracked {
        id,
        session,
        forwarder,
    }
}

/// A namespace with no bridge (or none of the named interfaces).
fn nothing_to_watch(e: &anyhow::Error) -> bool {
    e.downcast_ref::<Failure>()
        .is_some_and(|f| f.reason == Reason::NothingToWatch)
}
