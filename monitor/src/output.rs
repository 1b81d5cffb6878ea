//! Writing to stdout and stderr without a panic: `println!` and
//! `eprintln!` panic when the write fails (a reader that went away, a full
//! disk), and a panic while the programs are attached is the worst way to
//! end. Here a closed reader is a normal end (like `ip` and `bpftool`: the
//! command stops quietly, exit 0), any other write error is one line and
//! exit 1 (`write_failure`), and a note on stderr that cannot be written
//! is dropped (`note`).

use std::{fmt::Display, io};

use crate::error::{ExitKind, Failure, Reason};

/// Where a command's reports go: stdout, or stderr when stdout carries
/// the capture (`--pcap -`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sink {
    Stdout,
    Stderr,
}

impl Sink {
    /// The reports' sink: stdout unless the capture takes it.
    pub fn for_reports(capture_on_stdout: bool) -> Self {
        if capture_on_stdout {
            Sink::Stderr
        } else {
            Sink::Stdout
        }
    }

    /// Writes `bytes` whole and flushes.
    pub fn write(self, bytes: &[u8]) -> io::Result<()> {
        fn all(mut out: impl io::Write, bytes: &[u8]) -> io::Result<()> {
            out.write_all(bytes)?;
            out.flush()
        }
        match self {
            Sink::Stdout => all(io::stdout().lock(), bytes),
            Sink::Stderr => all(io::stderr().lock(), bytes),
        }
    }
}

/// A failed write of an output, as the error that ends the command: the
/// reader went away (`| head`): `Reason::OutputClosed`, which ends the
/// command quietly with exit 0 (everything detached as the monitor
/// drops); anything else (a full disk): "cannot write WHAT: REASON; FIX",
/// exit 1. `what` names the output, e.g. "the output".
pub fn write_failure(e: &io::Error, what: &str) -> Failure {
    let reason = if e.kind() == io::ErrorKind::BrokenPipe {
        Reason::OutputClosed
    } else {
        Reason::Other
    };
    let fix = match e.kind() {
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded => {
            "free some space, or send it elsewhere"
        }
        _ => "send it elsewhere",
    };
    Failure {
        kind: ExitKind::Unexpected,
        reason,
        message: format!("cannot write {what}: {}; {fix}", self::reason(e)),
    }
}

/// Whether `err` is a reader that went away (see `write_failure`).
pub fn closed(err: &anyhow::Error) -> bool {
    err.downcast_ref::<Failure>()
        .is_some_and(|f| f.reason == Reason::OutputClosed)
}

/// An io error's text without " (os error N)", lower-case.
pub fn reason(e: &io::Error) -> String {
    let text = e.to_string();
    let text = text.split(" (os error").next().unwrap_or(&text);
    text.to_lowercase()
}

/// "macdrop: LINE" on stderr, escaped for a terminal (names in it come
/// from the kernel and other processes): every note and warning goes
/// through here (`error` for the line that ends a command). Lost if stderr
/// cannot be written: a note is never worth stopping for.
pub fn note(line: impl Display) {
    stderr_line(Priority::Info, line);
}

/// The one line a failed command ends with ("macdrop: PROBLEM; FIX").
pub fn error(line: impl Display) {
    stderr_line(Priority::Error, line);
}

/// syslog priorities, as journald reads them from a `<N>` prefix
/// (sd-daemon(3)).
#[derive(Clone, Copy)]
enum Priority {
    Error = 3,
    Info = 6,
}

fn stderr_line(priority: Priority, line: impl Display) {
    let line = crate::untrusted::escape_controls(&line.to_string());
    let prefix = if journal_on_stderr() {
        format!("<{}>", priority as u8)
    } else {
        String::new()
    };
    let _ = Sink::Stderr.write(format!("{prefix}macdrop: {line}\n").as_bytes());
}

/// Whether stderr is systemd's journal stream: `JOURNAL_STREAM` names the
/// device and inode of the stream systemd connected, and stderr is still
/// that stream (not redirected since; sd-daemon(3)). Then each line
/// carries its priority, so errors are errors in `journalctl -p err`.
fn journal_on_stderr() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| {
        let Some(stream) = std::env::var_os("JOURNAL_STREAM") else {
            return false;
        };
        let Some((dev, ino)) = stream.to_str().and_then(|s| s.split_once(':')) else {
            return false;
        };
        // SAFETY: fstat(2) on fd 2 into a zeroed struct we own.
        let stat = unsafe {
            let mut st: libc::stat = std::mem::zeroed();
            (libc::fstat(2, &mut st) == 0).then_some(st)
        };
        stat.is_some_and(|st| dev.parse() == Ok(st.st_dev) && ino.parse() == Ok(st.st_ino))
    })
}

/// The panic hook's line: "internal error (a bug, please report it):
/// MESSAGE at FILE:LINE:COL", on one line whatever the message holds.
pub fn panic_line(info: &std::panic::PanicHookInfo) -> String {
    let payload = info.payload();
    let message = payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("a panic without a message");
    let at = info.location().map(ToString::to_string);
    internal_error(message, at.as_deref())
}

fn internal_error(message: &str, at: Option<&str>) -> String {
    let message = message.split_whitespace().collect::<Vec<_>>().join(" ");
    match at {
        Some(at) => format!("internal error (a bug, please report it): {message} at {at}"),
        None => format!("internal error (a bug, please report it): {message}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_closed_reader_ends_quietly_other_errors_are_one_line() {
        let closed = write_failure(&io::Error::from(io::ErrorKind::BrokenPipe), "the output");
        assert!(super::closed(&closed.into()));
        let full = write_failure(&io::Error::from_raw_os_error(libc::ENOSPC), "the output");
        assert_eq!(full.reason, Reason::Other);
        assert_eq!(full.kind, ExitKind::Unexpected);
        assert_eq!(
            full.message,
            "cannot write the output: no space left on device; free some space, or send it \
             elsewhere"
        );
        let eio = write_failure(&io::Error::from_raw_os_error(libc::EIO), "the output");
        assert_eq!(
            eio.message,
            "cannot write the output: input/output error; send it elsewhere"
        );
        assert!(!super::closed(&eio.into()));
    }

    #[test]
    fn a_panic_is_one_line() {
        assert_eq!(
            internal_error("two\nlines", Some("monitor/src/x.rs:1:2")),
            "internal error (a bug, please report it): two lines at monitor/src/x.rs:1:2"
        );
    }

    /// `println!` and friends panic on a failed write: none in the code
    /// (a new one fails here with its place), only `Sink` and `note`.
    #[test]
    fn no_printing_macro_that_panics() {
        fn walk(dir: &std::path::Path, found: &mut Vec<String>) {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    walk(&path, found);
                    continue;
                }
                if path.extension().is_none_or(|e| e != "rs") {
                    continue;
                }
                let text = std::fs::read_to_string(&path).unwrap();
                for (n, line) in text.lines().enumerate() {
                    let code = line.trim_start();
                    // Spelled in pieces so that this test does not find itself.
                    let printing = ["print", "eprint"].iter().any(|m| {
                        code.contains(&format!("{m}ln!")) || code.contains(&format!("{m}!("))
                    });
                    if printing && !code.starts_with("//") {
                        found.push(format!("{}:{}: {code}", path.display(), n + 1));
                    }
                }
            }
        }
        let mut found = Vec::new();
        walk(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
            &mut found,
        );
        assert!(found.is_empty(), "{found:#?}");
    }

    #[test]
    fn reports_leave_stdout_to_the_capture() {
        assert_eq!(Sink::for_reports(false), Sink::Stdout);
        assert_eq!(Sink::for_reports(true), Sink::Stderr);
    }
}
