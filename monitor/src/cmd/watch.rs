//! `macdrop watch`: print every report of the monitor as a table or as
//! JSON lines, and the final one when it stops.

use crate::{
    cli::{Format, WatchArgs},
    error::{Failure, Outcome},
    metrics::{http::Exporter, web_config::WebConfig},
    model::World,
    monitor::{Monitor, Plan, Step},
    output::{Sink, write_failure},
    render::{self, Numbers},
};

/// Writes one report. A reader that went away ends the command (exit 0,
/// everything detached as the monitor drops), like `ip` and `bpftool`
/// under `| head`; a full disk ends it with exit 1.
fn emit(sink: Sink, format: Format, numbers: Numbers, world: &World) -> Result<(), Failure> {
    let text = match format {
        Format::None => return Ok(()),
        Format::Json => render::json::render(world) + "\n",
        Format::Table => {
            crate::untrusted::for_terminal(&render::table::render(world, numbers)) + "\n"
        }
    };
    sink.write(text.as_bytes())
        .map_err(|e| write_failure(&e, "the report"))
}

impl WatchArgs {
    fn plan(&self) -> Result<Plan, crate::error::Failure> {
        if self.web_config.is_some() && self.metrics.is_none() {
            return Err(crate::error::Failure::usage(
                "--web-config protects the metrics endpoint: add --metrics [ADDR:PORT]",
            ));
        }
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
    let numbers = Numbers::from_flag(args.human);
    let mut monitor = Monitor::start(plan).await?;
    // Under systemd (`Type=notify`): started means attached and serving.
    // Outside it, NOTIFY_SOCKET is unset and this does nothing.
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]);
    while let Some(step) = monitor.next().await? {
        match step {
            Step::Report(world) | Step::Final(world) => {
                emit(sink, args.format, numbers, &world)?;
                if let Some(exporter) = &exporter {
                    exporter.publish(world);
                }
            }
        }
    }
    Ok(Outcome::Done)
}

async fn start_exporter(addr: std::net::SocketAddr, args: &WatchArgs) -> anyhow::Result<Exporter> {
    let web = match &args.web_config {
        Some(path) => WebConfig::load(path)?,
        None => WebConfig::open(),
    };
    let scheme = if web.tls.is_some() { "https" } else { "http" };
    // What a listener beyond loopback leaves open.
    let reach = match (
        addr.ip().is_loopback(),
        web.tls.is_some(),
        web.auth.is_some(),
    ) {
        (true, _, _) | (false, true, true) => "",
        (false, false, false) => {
            " (beyond loopback: reachable from the network, without TLS or authentication)"
        }
        (false, true, false) => {
            " (beyond loopback: reachable from the network, without authentication)"
        }
        (false, false, true) => {
            " (beyond loopback: passwords cross the network in clear text without TLS)"
        }
    };
    let exporter = Exporter::start(addr, args.interval, web).await?;
    let local = exporter.local_addr();
    crate::output::note(format_args!(
        "serving metrics on {scheme}://{local}/metrics{reach}"
    ));
    Ok(exporter)
}
