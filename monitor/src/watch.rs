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
    kernel::{attach::Attacher, config, config::ConfigMaps, counters::CounterReader, loader},
    model::{Interface, World},
    netlink::{NetState, Netlink},
    privileges, render,
    topology::{self, Role, Selection, Watched},
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
}

impl Session {
    fn start(netns: u32, state: &NetState, watched: Vec<Watched>) -> anyhow::Result<Self> {
        let mut ebpf = loader::load(netns)?;
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
        };
        // Configuration first, so the very first frame is classified right.
        session
            .config
            .sync(config::desired(netns, state, &session.watched))?;
        session.refresh_identity(state);
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
        Ok(session)
    }

    /// Copies MAC and promiscuous flag from the latest netlink state and
    /// marks vanished interfaces as gone (their counts are kept).
    fn refresh_identity(&mut self, state: &NetState) {
        for iface in &mut self.interfaces {
            match state.link(iface.ifindex).filter(|l| l.name == iface.name) {
                Some(link) => {
                    iface.mac = link.mac;
                    iface.promisc = link.promisc;
                }
                None if !iface.gone => iface.mark_gone(),
                None => {}
            }
        }
    }

    /// One interval: refresh maps from the namespace, read the counters.
    fn tick(&mut self, state: &NetState) -> anyhow::Result<World> {
        self.refresh_identity(state);
        let present: Vec<(Watched, u32)> = self
            .watched
            .iter()
            .zip(&self.interfaces)
            .filter(|(_, i)| !i.gone)
            .map(|(w, _)| w.clone())
            .collect();
        self.config
            .sync(config::desired(self.netns, state, &present))?;
        self.collect()
    }

    fn collect(&mut self) -> anyhow::Result<World> {
        let now = Instant::now();
        for ((_, slot), iface) in self.watched.iter().zip(&mut self.interfaces) {
            if !iface.gone {
                iface.sample(self.counters.read(*slot)?, now);
            }
        }
        Ok(World {
            ts: SystemTime::now(),
            interfaces: self.interfaces.clone(),
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
    eprintln!(
        "macdrop: watching {} interface(s) in netns {netns}: {}",
        summary.len(),
        summary.join(", ")
    );

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
                let world = session.tick(&state)?;
                emit(args.format, &world);
            }
            _ = sleep_until_deadline => break,
            _ = sigint.recv() => break,
            _ = sigterm.recv() => break,
            _ = sighup.recv() => break,
        }
    }
    // The last report, then detach (also done by Drop on error paths).
    let state = netlink.read_state().await?;
    let world = session.tick(&state)?;
    emit(args.format, &world);
    session.detach_all();
    Ok(())
}
