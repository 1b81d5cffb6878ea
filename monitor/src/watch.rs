//! `macdrop watch`: print every report of the monitor as a table or as
//! JSON lines, and the final one when it stops.

use std::io::Write as _;

use crate::{
    cli::{Format, WatchArgs},
    model::World,
    monitor::{Monitor, Plan, Step},
    render,
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

impl From<&WatchArgs> for Plan {
    fn from(args: &WatchArgs) -> Self {
        Plan {
            selection: Selection {
                bridges: args.bridges.clone(),
                ifaces: args.ifaces.clone(),
            },
            attach: args.attach,
            netns: args.netns.clone(),
            all_netns: args.all_netns,
            interval: args.interval,
            duration: args.duration,
        }
    }
}

pub async fn run(args: WatchArgs) -> anyhow::Result<()> {
    let mut monitor = Monitor::start(Plan::from(&args)).await?;
    while let Some(step) = monitor.next().await? {
        match step {
            Step::Report(world) | Step::Final(world) => emit(args.format, &world),
        }
    }
    Ok(())
}
