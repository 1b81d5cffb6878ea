//! The running monitor: every namespace's session, driven by one loop of
//! interval ticks, rtnetlink notifications and signals. It yields reports
//! (`World`s); the commands (`watch`, and whatever renders them) decide what
//! to do with each. Detaches everything when it stops or is dropped.

use std::{
    collections::BTreeMap,
    time::{Duration, SystemTime},
};

use tokio::{
    signal::unix::{Signal, SignalKind, signal},
    sync::mpsc::UnboundedReceiver,
    time::{Instant, Interval},
};

use crate::{
    error::Failure,
    kernel::{attach::AttachMode, self_stats::StatsEnabled},
    model::World,
    netlink::Change,
    netns::Namespace,
    privileges,
    session::Session,
    topology::Selection,
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
    sessions: Vec<Session>,
    changes: UnboundedReceiver<(usize, Change)>,
    ticker: Interval,
    deadline: Option<Instant>,
    signals: [Signal; 3],
    finished: bool,
    /// Keeps BPF run-time statistics on while macdrop runs.
    self_stats: Option<StatsEnabled>,
}

impl Monitor {
    /// Checks privileges, resolves the namespaces, starts a session in each
    /// (attaching everything), and prints what is watched on stderr.
    pub async fn start(plan: Plan) -> anyhow::Result<Self> {
        privileges::check()?;
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
        for ns in namespaces(&plan)? {
            let label = ns.describe();
            match Session::start(ns, plan.selection.clone(), plan.attach).await {
                Ok(session) => sessions.push(session),
                // With --all-netns, a namespace without anything to watch
                // is simply not watched.
                Err(e) if plan.all_netns && nothing_to_watch(&e) => {}
                Err(e) if plan.all_netns => eprintln!("macdrop: {label}: {e:#}"),
                Err(e) => return Err(e),
            }
        }
        if sessions.is_empty() {
            return Err(Failure::environment(
                "no namespace under /run/netns or /run/docker/netns (nor this one) has a bridge \
                 to watch; name interfaces with --iface",
            )
            .into());
        }
        if let Some(why) = sessions.iter().find_map(|s| s.drop_source().err()) {
            eprintln!("macdrop: confirmed kernel drops unavailable ({why}); frame classes only");
        }
        eprintln!(
            "macdrop: {}",
            capability_summary(sessions[0].drop_source().ok())
        );
        print_notes(&mut sessions);
        for s in &sessions {
            let summary = s.summary();
            eprintln!(
                "macdrop: watching {} interface(s) in {}: {}",
                summary.len(),
                s.ns.describe(),
                summary.join(", ")
            );
        }

        // Every session's notifications go to one channel, tagged with the
        // session's index, so one select waits on all namespaces.
        let (tx, changes) = tokio::sync::mpsc::unbounded_channel();
        for (index, s) in sessions.iter_mut().enumerate() {
            if let Some(mut stream) = s.take_notifications() {
                let tx = tx.clone();
                tokio::spawn(async move {
                    while let Some(change) = stream.next().await {
                        if tx.send((index, change)).is_err() {
                            break;
                        }
                    }
                });
            }
        }
        // Attached: keep only what following new ports needs.
        let enters_namespaces = plan.all_netns || !plan.netns.is_empty();
        privileges::drop_after_attach(enters_namespaces)?;

        let mut ticker = tokio::time::interval(plan.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker.tick().await; // the first tick is immediate
        Ok(Self {
            sessions,
            changes,
            ticker,
            deadline: plan.duration.map(|d| Instant::now() + d),
            signals,
            finished: false,
            self_stats,
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
            tokio::select! {
                _ = self.ticker.tick() => {
                    while let Ok((index, change)) = self.changes.try_recv() {
                        self.sessions[index].notice(&change);
                    }
                    for s in &mut self.sessions {
                        s.refresh().await?;
                    }
                    print_notes(&mut self.sessions);
                    return Ok(Some(Step::Report(self.report()?)));
                }
                Some((index, change)) = self.changes.recv() => {
                    // Take every pending change in order, then re-read each
                    // namespace that had one, once.
                    let mut touched = vec![false; self.sessions.len()];
                    self.sessions[index].notice(&change);
                    touched[index] = true;
                    while let Ok((index, change)) = self.changes.try_recv() {
                        self.sessions[index].notice(&change);
                        touched[index] = true;
                    }
                    for (s, touched) in self.sessions.iter_mut().zip(touched) {
                        if touched {
                            s.refresh().await?;
                        }
                    }
                    print_notes(&mut self.sessions);
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
        for s in &mut self.sessions {
            s.refresh().await?;
        }
        let world = self.report()?;
        for s in &mut self.sessions {
            s.detach_all();
        }
        Ok(world)
    }

    /// One report over every session.
    fn report(&mut self) -> anyhow::Result<World> {
        let mut world = World {
            ts: SystemTime::now(),
            interfaces: Vec::new(),
            events: Vec::new(),
            drop_source: Err("no session".into()),
            self_stats: self.self_stats.as_ref().map(|_| BTreeMap::new()),
        };
        for (i, s) in self.sessions.iter_mut().enumerate() {
            world.interfaces.extend(s.collect()?);
            world.events.extend(s.take_events());
            if i == 0 {
                world.drop_source = s.drop_source();
            }
            if let Some(stats) = &mut world.self_stats {
                s.add_program_stats(stats);
            }
        }
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

fn print_notes(sessions: &mut [Session]) {
    for s in sessions {
        for note in s.take_notes() {
            eprintln!("macdrop: {note}");
        }
    }
}

/// A namespace with no bridge (or none of the named interfaces).
fn nothing_to_watch(e: &anyhow::Error) -> bool {
    e.downcast_ref::<Failure>().is_some_and(|f| {
        f.message.starts_with("no bridges") || f.message.starts_with("no interface named")
    })
}
