//! The commands, one room each: a command owns its `run`, its choice of
//! output format and how it ends, an [`Outcome`] or a typed error whose
//! exit code `error.rs` documents. Everything they share lives below them:
//! the monitor (`crate::monitor`), the model and the renderers.

pub mod diagnose;
pub mod generate;
pub mod status;
pub mod top;
pub mod watch;

use std::{io::Write as _, time::Duration};

use crate::{cli::SelectionArgs, error::Outcome, monitor::Plan, topology::Selection};

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
        }
    }
}

/// Prints a one-shot command's output. A reader that went away (`| head`)
/// ends the command quietly; any other write error (a full disk) is an
/// error, not a panic.
fn print(text: &str) -> anyhow::Result<Outcome> {
    let mut out = std::io::stdout().lock();
    match writeln!(out, "{}", text.trim_end()).and_then(|()| out.flush()) {
        Ok(()) => Ok(Outcome::Done),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(Outcome::Done),
        Err(e) => Err(anyhow::anyhow!("cannot write the output: {e}")),
    }
}
