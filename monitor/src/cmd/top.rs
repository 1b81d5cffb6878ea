//! `macdrop top`: the full-screen live view (`crate::tui`) over the same
//! monitor `watch` prints from.

use std::io::IsTerminal as _;

use crate::{
    cli::TopArgs,
    error::{Failure, Outcome},
    monitor::Monitor,
};

pub async fn run(args: TopArgs) -> anyhow::Result<Outcome> {
    if !std::io::stdout().is_terminal() || !std::io::stdin().is_terminal() {
        return Err(Failure::environment(
            "macdrop top needs a terminal on stdin and stdout; for pipes and files use \
             `macdrop watch` (--format json for programs)",
        )
        .into());
    }
    // Errors (privileges, unknown interface, no bridge) are printed on a
    // normal terminal, before the screen is taken.
    let monitor = Monitor::start(args.select.plan(args.interval, None)).await?;
    tokio::task::LocalSet::new()
        .run_until(crate::tui::show(monitor, args.interval))
        .await?;
    Ok(Outcome::Done)
}
