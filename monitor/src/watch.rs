//! `macdrop watch`: attach, then every interval refresh the configuration,
//! collect the counters, update the model and print it, until the duration
//! ends or a signal arrives; then print a last report and detach.

use std::{
    io::Write as _,
    time::{Instant, SystemTime},
};

use aya::Ebpf;
use tokio::signal::unix::{SignalKind, signal};

use crate::{
    cli::{Format, WatchArgs},
    kernel::{
        attach::Attacher,
        config,
        config::ConfigMaps,
        counters::CounterReader,
        drops::{DropHook, DropLayer, DropMap},
        loader,
    },
    model::{Interface, World},
    netlink::{Change, Link, NetState, Netlink, Notifications},
    privileges, promisc, render,
    topology::{self, Role, Selection, Watched},
    tracker::{Event, Tracker},
};

/// The attached monitor for one network namespace.
struct Session {
    netns: u32,
    ebpf: Ebpf,
    config: ConfigMaps,
    counters: CounterReader,
    attacher: Attacher,
    /// Watched interfaces with their counter slots, in attach order.
    watched: Vec<(Watched, u32)>,
    interfaces: Vec<Interface>,
    tracker: Tracker,
    /// Events not yet reported.
    events: Vec<Event>,
    /// The confirmed-drops layer, or why it is unavailable.
    drops: Result<Drops, String>,
}

/// The attached kfree_skb counter.
struct Drops {
    layer: DropLayer,
    map: DropMap,
    hook: DropHook,
}

impl Session {
    fn start(netns: u32, state: &NetState, watched: Vec<Watched>) -> anyhow::Result<Self> {
        // BTF tells the drop program where to find skb->dev and friends; a
        // kernel without it still gets the frame classes.
        let layer = DropLayer::prepare();
        let globals = layer
            .as_ref()
            .map(|l| l.globals().to_vec())
            .unwrap_or_default();
        let mut ebpf = loader::load(netns, &globals)?;
        let config = ConfigMaps::take(&mut ebpf)?;
        let counters = CounterReader::take(&mut ebpf)?;
        let attacher = Attacher::new(&mut ebpf)?;
        let watched: Vec<(Watched, u32)> = watched
            .into_iter()
            .enumerate()
            .map(|(slot, w)| (w, slot as u32))
            .collect();
        let interfaces = watched
            .iter()
            .map(|(w, _)| {
                Interface::new(
                    w.name.clone(),
                    w.ifindex,
                    netns,
                    w.role,
                    w.master().map(str::to_owned),
                )
            })
            .collect();
        let mut session = Self {
            netns,
            ebpf,
            config,
            counters,
            attacher,
            watched,
            interfaces,
            tracker: Tracker::new(state),
            events: Vec::new(),
            drops: Err("not attached yet".into()),
        };
        // Configuration first, so the very first frame is classified right.
        session.resync(state)?;
        // Ports before bridges: a port attach fails once its bridge has XDP.
        for i in 0..session.watched.len() {
            let (w, _) = &session.watched[i];
            let (ifindex, name, role) = (w.ifindex, w.name.clone(), w.role);
            match session
                .attacher
                .attach(&mut session.ebpf, ifindex, &name, role)
            {
                Ok(hook) => session.interfaces[i].hook = Some(hook),
                Err(e) => {
                    session.detach_all();
                    return Err(e);
                }
            }
        }
        session.drops = layer.and_then(|layer| {
            let hook = layer.attach(&mut session.ebpf)?;
            let map = DropLayer::take_map(&mut session.ebpf).map_err(|e| format!("{e:#}"))?;
            Ok(Drops { layer, map, hook })
        });
        Ok(session)
    }

    /// Copies MAC, promiscuity and kernel counters from the latest netlink
    /// state and marks vanished interfaces as gone (their counts are kept).
    fn refresh_identity(&mut self, state: &NetState) {
        // /proc is scanned only when some promiscuity is not explained by
        // a bridge holding its port (the common, cheap case).
        let unexplained = |i: &Interface, l: &Link| l.promiscuity > u32::from(i.role == Role::Port);
        let sockets = self
            .interfaces
            .iter()
            .any(|i| state.link(i.ifindex).is_some_and(|l| unexplained(i, l)))
            .then(|| promisc::Snapshot::read().ok())
            .flatten();
        for iface in &mut self.interfaces {
            match state.link(iface.ifindex).filter(|l| l.name == iface.name) {
                Some(link) => {
                    iface.observe_link(link);
                    iface.promisc_holders = (link.promiscuity > 0).then(|| {
                        let holders = sockets
                            .as_ref()
                            .map(|s| s.holders(link.ifindex).promiscuous())
                            .unwrap_or_default();
                        promisc::describe(link.promiscuity, iface.role == Role::Port, &holders)
                    });
                }
                None if !iface.gone => iface.mark_gone(),
                None => {}
            }
        }
    }

    fn is_watched(&self, ifindex: u32) -> bool {
        self.interfaces
            .iter()
            .any(|i| i.ifindex == ifindex && !i.gone)
    }

    /// Feeds one link observation to the tracker; keeps the events that
    /// concern watched interfaces.
    fn observe(&mut self, link: &Link) {
        let events = self.tracker.observe(link, SystemTime::now());
        let watched: Vec<Event> = events
            .into_iter()
            .filter(|e| self.is_watched(e.ifindex))
            .collect();
        self.events.extend(watched);
    }

    /// Re-reads nothing itself: brings identity, events and the kernel's
    /// configuration maps up to date with `state`.
    fn resync(&mut self, state: &NetState) -> anyhow::Result<()> {
        for link in &state.links {
            self.observe(link);
        }
        self.refresh_identity(state);
        let present: Vec<(Watched, u32)> = self
            .watched
            .iter()
            .zip(&self.interfaces)
            .filter(|(_, i)| !i.gone)
            .map(|(w, _)| w.clone())
            .collect();
        self.config.sync(config::desired(
            self.netns,
            state,
            &present,
            self.tracker.previous_macs(),
        ))
    }

    /// One report: counters now, events since the last report.
    fn collect(&mut self) -> anyhow::Result<World> {
        let now = Instant::now();
        let drops = match &self.drops {
            Ok(d) => Some(d.layer.read(&d.map)?),
            Err(_) => None,
        };
        for ((_, slot), iface) in self.watched.iter().zip(&mut self.interfaces) {
            if !iface.gone {
                iface.sample(self.counters.read(*slot)?, now);
            }
            if let Some(drops) = &drops {
                let key = (self.netns, iface.ifindex);
                iface.drops = Some(drops.get(&key).cloned().unwrap_or_default());
            }
        }
        Ok(World {
            ts: SystemTime::now(),
            interfaces: self.interfaces.clone(),
            events: std::mem::take(&mut self.events),
            drop_source: self
                .drops
                .as_ref()
                .map(|d| d.hook.as_str())
                .map_err(Clone::clone),
        })
    }

    fn detach_all(&mut self) {
        let bridges: Vec<u32> = self
            .watched
            .iter()
            .filter(|(w, _)| w.role == Role::Bridge)
            .map(|(w, _)| w.ifindex)
            .collect();
        self.attacher.detach_all(&mut self.ebpf, &bridges);
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.detach_all();
    }
}

fn emit(format: Format, world: &World) {
    let text = match format {
        Format::Json => render::json::render(world) + "\n",
        Format::Table => render::table::render(world) + "\n",
    };
    let mut out = std::io::stdout().lock();
    // A closed stdout (e.g. `| head`) must not turn into a panic.
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
}

pub async fn run(args: WatchArgs) -> anyhow::Result<()> {
    privileges::check()?;
    let netns = loader::netns_inode("/proc/self/ns/net")?;
    let netlink = Netlink::connect()?;
    let state = netlink.read_state().await?;
    let selection = Selection {
        bridges: args.bridges.clone(),
        ifaces: args.ifaces.clone(),
    };
    let watched = topology::select(&state, &selection)?;

    // Signals are set up before attaching so none is missed.
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut sighup = signal(SignalKind::hangup())?;

    let mut session = Session::start(netns, &state, watched)?;
    let summary: Vec<String> = session
        .watched
        .iter()
        .zip(&session.interfaces)
        .map(|((w, _), i)| {
            let hook = i.hook.map(|h| h.as_str()).unwrap_or("-");
            match w.master() {
                Some(m) => format!("{} (port of {m}, {hook})", w.name),
                None => format!("{} ({}, {hook})", w.name, w.role.as_str()),
            }
        })
        .collect();
    if let Err(why) = &session.drops {
        eprintln!("macdrop: confirmed kernel drops unavailable ({why}); frame classes only");
    }
    eprintln!(
        "macdrop: watching {} interface(s) in netns {netns}: {}",
        summary.len(),
        summary.join(", ")
    );

    let mut notifications = Notifications::subscribe()?;
    let deadline = args.duration.map(|d| tokio::time::Instant::now() + d);
    let mut ticker = tokio::time::interval(args.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await; // the first tick is immediate
    loop {
        let sleep_until_deadline = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = ticker.tick() => {
                let state = netlink.read_state().await?;
                session.resync(&state)?;
                emit(args.format, &session.collect()?);
            }
            Some(change) = notifications.next() => {
                // Take every link change in order (each may be a
                // transition), then re-read the namespace once.
                let mut change = Some(change);
                while let Some(c) = change {
                    if let Change::Link(link) = &c {
                        session.observe(link);
                    }
                    change = notifications.ready();
                }
                let state = netlink.read_state().await?;
                session.resync(&state)?;
            }
            _ = sleep_until_deadline => break,
            _ = sigint.recv() => break,
            _ = sigterm.recv() => break,
            _ = sighup.recv() => break,
        }
    }
    // The last report, then detach (also done by Drop on error paths).
    let state = netlink.read_state().await?;
    session.resync(&state)?;
    emit(args.format, &session.collect()?);
    session.detach_all();
    Ok(())
}
