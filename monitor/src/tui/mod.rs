//! The full-screen live view of `macdrop top` (`cmd::top`), over the same
//! monitor `watch` prints from.
//!
//! The monitor runs in a task of its own and sends each report over a
//! channel, so keys are answered at once without ever cancelling the
//! monitor half-way through a refresh. The terminal is restored on every
//! way out: `q` or Ctrl-C, SIGINT/SIGTERM/SIGHUP (the monitor's own signal
//! handling ends it and the loop returns), an error, or a panic.

pub mod app;
pub mod screen;
pub mod view;

use std::time::Duration;

use crossterm::event::{Event as TermEvent, EventStream};
use futures::StreamExt as _;
use tokio::sync::{mpsc, oneshot};

use crate::{
    model::World,
    monitor::{Monitor, Step},
};
use app::{Action, App};
use screen::Screen;

/// What the monitor task sends.
enum Update {
    Report(World),
    /// The monitor stopped on a signal.
    Stopped,
    Failed(anyhow::Error),
}

/// Shows the monitor's reports full-screen until `q`, Ctrl-C or a signal.
pub async fn show(mut monitor: Monitor, interval: Duration) -> anyhow::Result<()> {
    let (updates_tx, mut updates) = mpsc::unbounded_channel();
    let (stop_tx, mut stop) = oneshot::channel::<()>();
    let driver = tokio::task::spawn_local(async move {
        loop {
            tokio::select! {
                biased;
                _ = &mut stop => break,
                step = monitor.next() => {
                    let (update, last) = match step {
                        Ok(Some(Step::Report(world))) => (Update::Report(world), false),
                        Ok(Some(Step::Final(_))) => (Update::Stopped, true),
                        Ok(None) => break,
                        Err(e) => (Update::Failed(e), true),
                    };
                    if updates_tx.send(update).is_err() || last {
                        break;
                    }
                }
            }
        }
        // Dropping the monitor detaches everything.
        drop(monitor);
    });

    let (mut screen, mut notes) = Screen::enter()?;
    let mut captured: Vec<String> = Vec::new();
    let mut keys = EventStream::new();
    let mut app = App::new(interval);
    let outcome: anyhow::Result<()> = async {
        screen.terminal.draw(|f| view::draw(f, &app))?;
        loop {
            tokio::select! {
                update = updates.recv() => match update {
                    Some(Update::Report(world)) => app.update(world),
                    Some(Update::Stopped) | None => return Ok(()),
                    Some(Update::Failed(e)) => return Err(e),
                },
                event = keys.next() => match event {
                    Some(Ok(TermEvent::Key(key))) => match app.key(key) {
                        Action::Quit => return Ok(()),
                        Action::Redraw => {}
                        Action::Nothing => continue,
                    },
                    Some(Ok(TermEvent::Resize(..))) => {}
                    Some(Ok(_)) => continue,
                    Some(Err(e)) => return Err(anyhow::Error::new(e).context("cannot read the terminal")),
                    // The terminal went away (SSH closed): nothing to show on.
                    None => return Ok(()),
                },
                Some((ts, line)) = notes.recv() => {
                    app.note(ts, line.clone());
                    captured.push(line);
                }
            }
            screen.terminal.draw(|f| view::draw(f, &app))?;
        }
    }
    .await;

    let _ = stop_tx.send(());
    let _ = driver.await;
    screen.leave();
    // What went to stderr meanwhile is printed for real now, so nothing
    // (a fallback, an interface that could not be watched) is lost.
    while let Ok(Some((_, line))) =
        tokio::time::timeout(Duration::from_millis(50), notes.recv()).await
    {
        captured.push(line);
    }
    for line in captured {
        // Already "macdrop: ..." as captured (escaped again: cheap, and
        // safe whatever captured it); lost if stderr is gone.
        let line = crate::untrusted::escape_controls(&line);
        let _ = crate::output::Sink::Stderr.write(format!("{line}\n").as_bytes());
    }
    outcome
}
