//! `macdrop watch`: print every report of the monitor as a table or as
//! JSON lines, and the final one when it stops.

use std::io::Write as _;

use crate::{
    cli::{Format, WatchArgs},
    error::Outcome,
    metrics::http::Exporter,
    model::World,
    monitor::{Monitor, Plan, Step},
    render,
};

fn emit(format: Format, world: &World) {
    let text = match format {
        Format::Json => render::json::render(world) + "\n",
        Format::Table => crate::untrusted::for_terminal(&render::table::render(world)) + "\n",
    };
    let mut out = std::io::stdout().lock();
    // A closed stdout (e.g. `| head`) must not turn into a panic.
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
}

impl WatchArgs {
    fn plan(&self) -> Result<Plan, crate::error::Failure> {
        Ok(Plan {
            self_stats: self.self_stats,
            evidence: self.pcap.plan()?,
            ..self.select.plan(self.interval, self.duration)
        })
    }
}

pub async fn run(args: WatchArgs) -> anyhow::Result<Outcome> {
    let plan = args.plan()?;
    // Bound before anything is attached: a port in use fails fast.
    let exporter = match args.metrics {
        Some(addr) => Some(start_exporter(addr, &args).await?),
        None => None,
    };
    let mut monitor = Monitor::start(plan).await?;
    while let Some(step) = monitor.next().await? {
        match step {
            Step::Report(world) | Step::Final(world) => {
                emit(args.format, &world);
                if let Some(exporter) = &exporter {
                    exporter.publish(world);
                }
            }
        }
    }
    Ok(Outcome::Done)
}

async fn start_exporter(addr: std::net::SocketAddr, args: &WatchArgs) -> anyhow::Result<Exporter> {
    let exporter = Exporter::start(addr, args.interval).await?;
    let local = exporter.local_addr();
    let reach = if local.ip().is_loopback() {
        ""
    } else {
        " (beyond loopback: reachable from the network, without authentication)"
    };
    crate::untrusted::warn(format_args!(
        "serving metrics on http://{local}/metrics{reach}"
    ));
    Ok(exporter)
}
