//! `macdrop watch`: attach, then every interval refresh the configuration,
//! collect the counters, update the model and print it, until the duration
//! ends or a signal arrives; then print a last report and detach.

use std::{io::Write as _, time::SystemTime};

use tokio::signal::unix::{SignalKind, signal};

use crate::{
    cli::{Format, WatchArgs},
    error::Failure,
    model::World,
    netns::Namespace,
    privileges, render,
    session::Session,
    topology::Selection,
};

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

/// The namespaces to watch: the current one, `--netns` ones, or with
/// `--all-netns` every named namespace that has a bridge (or the selected
/// interfaces).
fn namespaces(args: &WatchArgs) -> anyhow::Result<Vec<Namespace>> {
    if args.all_netns {
        return Namespace::all();
    }
    if args.netns.is_empty() {
        return Ok(vec![Namespace::current()?]);
    }
    let mut out: Vec<Namespace> = Vec::new();
    for spec in &args.netns {
        let ns = Namespace::open(spec)?;
        if !out.iter().any(|o| o.inode == ns.inode) {
            out.push(ns);
        }
    }
    Ok(out)
}

/// One report over every session.
fn report(sessions: &mut [Session]) -> anyhow::Result<World> {
    let mut world = World {
        ts: SystemTime::now(),
        interfaces: Vec::new(),
        events: Vec::new(),
        drop_source: Err("no session".into()),
    };
    for (i, s) in sessions.iter_mut().enumerate() {
        world.interfaces.extend(s.collect()?);
        world.events.extend(s.take_events());
        if i == 0 {
            world.drop_source = s.drop_source();
        }
    }
    world.events.sort_by_key(|e| e.ts);
    Ok(world)
}

fn print_notes(sessions: &mut [Session]) {
    for s in sessions {
        for note in s.take_notes() {
            eprintln!("macdrop: {note}");
        }
    }
}

pub async fn run(args: WatchArgs) -> anyhow::Result<()> {
    privileges::check()?;
    let selection = Selection {
        bridges: args.bridges.clone(),
        ifaces: args.ifaces.clone(),
    };

    // Signals are set up before attaching so none is missed.
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut sighup = signal(SignalKind::hangup())?;

    let all_netns = args.all_netns;
    let mut sessions: Vec<Session> = Vec::new();
    for ns in namespaces(&args)? {
        let label = ns.describe();
        match Session::start(ns, selection.clone(), args.attach).await {
            Ok(session) => sessions.push(session),
            // With --all-netns, a namespace without anything to watch is
            // simply not watched.
            Err(e) if all_netns && nothing_to_watch(&e) => {}
            Err(e) if all_netns => eprintln!("macdrop: {label}: {e:#}"),
            Err(e) => return Err(e),
        }
    }
    if sessions.is_empty() {
        return Err(Failure::environment(
            "no namespace under /run/netns or /run/docker/netns (nor this one) has a bridge to \
             watch; name interfaces with --iface",
        )
        .into());
    }
    for s in &sessions {
        if let Err(why) = s.drop_source() {
            eprintln!("macdrop: confirmed kernel drops unavailable ({why}); frame classes only");
            break;
        }
    }
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
    let (changes_tx, mut changes) = tokio::sync::mpsc::unbounded_channel();
    for (index, s) in sessions.iter_mut().enumerate() {
        if let Some(mut stream) = s.take_notifications() {
            let tx = changes_tx.clone();
            tokio::spawn(async move {
                while let Some(change) = stream.next().await {
                    if tx.send((index, change)).is_err() {
                        break;
                    }
                }
            });
        }
    }

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
                while let Ok((index, change)) = changes.try_recv() {
                    sessions[index].notice(&change);
                }
                for s in &mut sessions {
                    s.refresh().await?;
                }
                print_notes(&mut sessions);
                emit(args.format, &report(&mut sessions)?);
            }
            Some((index, change)) = changes.recv() => {
                // Take every pending change in order, then re-read each
                // namespace that had one, once.
                let mut touched = vec![false; sessions.len()];
                sessions[index].notice(&change);
                touched[index] = true;
                while let Ok((index, change)) = changes.try_recv() {
                    sessions[index].notice(&change);
                    touched[index] = true;
                }
                for (s, touched) in sessions.iter_mut().zip(touched) {
                    if touched {
                        s.refresh().await?;
                    }
                }
                print_notes(&mut sessions);
            }
            _ = sleep_until_deadline => break,
            _ = sigint.recv() => break,
            _ = sigterm.recv() => break,
            _ = sighup.recv() => break,
        }
    }
    // The last report, then detach (also done by Drop on error paths).
    for s in &mut sessions {
        s.refresh().await?;
    }
    emit(args.format, &report(&mut sessions)?);
    for s in &mut sessions {
        s.detach_all();
    }
    Ok(())
}

/// A namespace with no bridge (or none of the named interfaces).
fn nothing_to_watch(e: &anyhow::Error) -> bool {
    e.downcast_ref::<Failure>().is_some_and(|f| {
        f.message.starts_with("no bridges") || f.message.starts_with("no interface named")
    })
}
