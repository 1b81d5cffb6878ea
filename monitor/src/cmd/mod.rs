//! The commands, one room each: a command owns its `run`, its choice of
//! output format and how it ends, an [`Outcome`] or a typed error whose
//! exit code `error.rs` documents. Everything they share lives below them:
//! the monitor (`crate::monitor`), the model and the renderers.

pub mod diagnose;
pub mod generate;
pub mod status;
pub mod top;
pub mod watch;

use std::time::Duration;

use crate::{
    cli::SelectionArgs,
    error::Outcome,
    monitor::Plan,
    output::{Sink, write_failure},
    topology::Selection,
};

impl SelectionArgs {
    /// The monitor's plan for these flags (watch, top and diagnose).
    pub fn plan(&self, interval: Duration, duration: Option<Duration>) -> Plan {
        Plan {
            selection: Selection {
                bridges: self.bridges.clone(),
                ifaces: self.ifaces.clone(),
            },
            attach: self.attach,
            netns: self.netns.clone(),
            all_netns: self.all_netns,
            interval,
            duration,
            self_stats: false,
            top_flows: self.top_flows,
            evidence: None,
            retention: self.retention,
        }
    }
}

/// Prints a one-shot command's output to `sink`. A reader that went away
/// (`| head`) ends the command quietly; any other write error (a full
/// disk) is an error, not a panic (`crate::output`).
fn print(sink: Sink, text: &str) -> anyhow::Result<Outcome> {
    sink.write(format!("{}\n", text.trim_end()).as_bytes())
        .map_err(|e| write_failure(&e, "the output"))?;
    Ok(Outcome::Done)
}
