//! `macdrop watch`: print every report of the monitor as a table or as
//! JSON lines, and the final one when it stops.

use crate::{
    cli::{Format, WatchArgs},
    error::{Failure, Outcome},
    metrics::http::Exporter,
    model::World,
    monitor::{Monitor, Plan, Step},
    output::{Sink, write_failure},
    render,
};

/// Writes one report. A reader that went away ends the command (exit 0,
/// everything detached as the monitor drops), like `ip` and `bpftool`
/// under `| head`; a full disk ends it with exit 1.
fn emit(sink: Sink, format: Format, world: &World) -> Result<(), Failure> {
    let text = match format {
        Format::Json => render::json::render(world) + "\n",
        Format::Table => render::table::render(world) + "\n",
    };
    sink.write(text.as_bytes())
        .map_err(|e| write_failure(&e, "the report"))
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
    // `--pcap -`: stdout carries the capture, the reports go to stderr.
    let sink = Sink::for_reports(plan.evidence.as_ref().is_some_and(|e| e.target.is_stdout()));
    let mut monitor = Monitor::start(plan).await?;
    while let Some(step) = monitor.next().await? {
        match step {
            Step::Report(world) | Step::Final(world) => {
                emit(sink, args.format, &world)?;
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
    crate::output::note(format_args!(
        "serving metrics on http://{local}/metrics{reach}"
    ));
    Ok(exporter)
}
