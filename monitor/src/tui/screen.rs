//! The terminal while `top` runs: raw mode, the alternate screen, a hidden
//! cursor, and stderr redirected into a pipe (the monitor's notes would
//! otherwise scribble over the screen; they are shown as events instead).
//! Everything is undone exactly once, by whichever comes first: `leave`,
//! the guard's drop (an error), or a panic (a hook restores the terminal
//! before the panic message is printed).

use std::{
    io::{BufRead as _, BufReader, Stdout, Write as _},
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
    sync::Mutex,
    time::SystemTime,
};

use anyhow::Context as _;
use crossterm::{
    cursor,
    terminal::{self, EnterAlternateScreen, LeaveAlternateScreen},
};
use ratatui::{Terminal, backend::CrosstermBackend};
use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};

/// What must be undone; None when the terminal is (back to) normal.
static ACTIVE: Mutex<Option<Saved>> = Mutex::new(None);

struct Saved {
    /// The real stderr, while fd 2 points at the pipe.
    stderr: Option<OwnedFd>,
}

/// Puts everything back. Idempotent; safe from a panic hook.
pub fn restore() {
    let saved = match ACTIVE.try_lock() {
        Ok(mut guard) => guard.take(),
        // Poisoned by a panic while held: still restore.
        Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner().take(),
        // Held by the thread that is restoring already.
        Err(std::sync::TryLockError::WouldBlock) => None,
    };
    let Some(saved) = saved else { return };
    let mut out = std::io::stdout();
    let _ = crossterm::execute!(out, LeaveAlternateScreen, cursor::Show);
    let _ = terminal::disable_raw_mode();
    let _ = out.flush();
    if let Some(real) = saved.stderr {
        // SAFETY: dup2 onto fd 2 of an fd we own; closes the pipe's end.
        unsafe { libc::dup2(real.as_raw_fd(), libc::STDERR_FILENO) };
    }
}

pub struct Screen {
    pub terminal: Terminal<CrosstermBackend<Stdout>>,
}

/// Lines written to stderr while the screen is taken, with the time they
/// came.
pub type Notes = UnboundedReceiver<(SystemTime, String)>;

impl Screen {
    /// Takes over the terminal. The panic hook is installed first, so a
    /// panic at any point after leaves the terminal usable.
    pub fn enter() -> anyhow::Result<(Self, Notes)> {
        install_panic_hook();
        let (tx, notes) = unbounded_channel();
        let stderr = capture_stderr(tx).ok();
        *ACTIVE.lock().unwrap_or_else(|p| p.into_inner()) = Some(Saved { stderr });
        // From here on, `restore` undoes whatever of this succeeded.
        let guard = Undo;
        terminal::enable_raw_mode().context("cannot put the terminal in raw mode")?;
        let mut out = std::io::stdout();
        crossterm::execute!(out, EnterAlternateScreen, cursor::Hide)
            .context("cannot switch to the alternate screen")?;
        let mut terminal = Terminal::new(CrosstermBackend::new(out))?;
        terminal.clear()?;
        std::mem::forget(guard);
        Ok((Self { terminal }, notes))
    }

    /// Gives the terminal back.
    pub fn leave(self) {
        drop(self);
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        restore();
    }
}

/// Restores on an early return from `enter`.
struct Undo;

impl Drop for Undo {
    fn drop(&mut self) {
        restore();
    }
}

fn install_panic_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            restore();
            previous(info);
        }));
    });
}

/// Points fd 2 at a pipe whose lines a thread forwards to `tx`; returns
/// the real stderr.
fn capture_stderr(
    tx: tokio::sync::mpsc::UnboundedSender<(SystemTime, String)>,
) -> anyhow::Result<OwnedFd> {
    let mut fds = [0; 2];
    // SAFETY: plain syscalls on fds we own.
    unsafe {
        if libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) != 0 {
            return Err(std::io::Error::last_os_error()).context("pipe2");
        }
    }
    // SAFETY: fresh fds from pipe2, owned here.
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // SAFETY: dup of fd 2, which the process has.
    let real = unsafe { libc::fcntl(libc::STDERR_FILENO, libc::F_DUPFD_CLOEXEC, 3) };
    if real < 0 {
        return Err(std::io::Error::last_os_error()).context("dup stderr");
    }
    // SAFETY: a fresh fd from fcntl, owned here.
    let real = unsafe { OwnedFd::from_raw_fd(real) };
    // SAFETY: dup2 of an fd we own onto fd 2.
    if unsafe { libc::dup2(write.as_raw_fd(), libc::STDERR_FILENO) } < 0 {
        return Err(std::io::Error::last_os_error()).context("dup2 onto stderr");
    }
    // fd 2 is now the only write end: the reader sees EOF once it is
    // pointed back at the real stderr.
    drop(write);
    std::thread::spawn(move || {
        let file = std::fs::File::from(read);
        for line in BufReader::new(file).lines() {
            let Ok(line) = line else { break };
            if tx.send((SystemTime::now(), line)).is_err() {
                break;
            }
        }
    });
    Ok(real)
}
