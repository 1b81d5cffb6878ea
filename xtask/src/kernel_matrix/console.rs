//! Running a guest (QEMU, or the guest program natively) and reading its
//! verdict from the console: every line goes to a log file, the guest's
//! own progress lines are echoed, and the markers decide the result.

use std::{
    fs::File,
    io::{BufRead as _, BufReader, Write as _},
    path::Path,
    process::{Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};
use serde_json::Value;

/// `/init` prints this once it runs: the end of the boot.
pub const BOOT_MARKER: &str = "MACDROP-MATRIX-BOOT:";
/// The verdict: `MACDROP-MATRIX: PASS ...` or `MACDROP-MATRIX: FAIL ...`.
pub const MARKER: &str = "MACDROP-MATRIX:";
/// One line of JSON with what the guest observed.
pub const CAPS_MARKER: &str = "MACDROP-MATRIX-CAPS:";
/// Prefix of the guest's progress lines.
const PROGRESS: &str = "matrix: ";

/// What a guest run produced.
#[derive(Debug, Default)]
pub struct Outcome {
    /// `Some(true)` for PASS, `Some(false)` for FAIL, `None` if no verdict.
    pub pass: Option<bool>,
    /// The verdict line after the marker (`PASS kernel=...`).
    pub verdict: Option<String>,
    pub caps: Option<Value>,
    /// Time from start to the boot marker.
    pub boot: Option<Duration>,
    pub elapsed: Duration,
    /// Why there is no verdict (timeout, exit without one).
    pub problem: Option<String>,
    /// The last console lines, for a failure report.
    pub tail: Vec<String>,
}

/// Console text without terminal escapes and carriage returns (the
/// firmware clears the screen on the serial line).
fn clean(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\u{1b}' => {
                // ESC [ ... final byte, or ESC + one character.
                if chars.peek() == Some(&'[') {
                    chars.next();
                    for c in chars.by_ref() {
                        if ('@'..='~').contains(&c) {
                            break;
                        }
                    }
                } else {
                    chars.next();
                }
            }
            '\r' => {}
            c if c.is_control() && c != '\t' => {}
            c => out.push(c),
        }
    }
    out
}

impl Outcome {
    /// Takes in one console line.
    fn line(&mut self, line: &str, since_start: Duration) {
        if let Some(at) = line.find(CAPS_MARKER) {
            self.caps = serde_json::from_str(line[at + CAPS_MARKER.len()..].trim()).ok();
        } else if line.contains(BOOT_MARKER) {
            self.boot.get_or_insert(since_start);
        } else if let Some(at) = line.find(MARKER) {
            // The first verdict counts.
            if self.pass.is_none() {
                let verdict = line[at + MARKER.len()..].trim();
                self.pass = Some(verdict.starts_with("PASS"));
                self.verdict = Some(verdict.to_owned());
            }
        }
        const TAIL: usize = 40;
        if self.tail.len() == TAIL {
            self.tail.remove(0);
        }
        self.tail.push(line.to_owned());
    }
}

/// Runs `command` (stdin closed, stdout and stderr read), logging every
/// line to `log` and echoing the guest's progress and verdict lines
/// prefixed with `[label]`. Killed after `timeout`.
pub fn run(command: &mut Command, label: &str, log: &Path, timeout: Duration) -> Result<Outcome> {
    let mut log_file = File::create(log).with_context(|| format!("creating {}", log.display()))?;
    let start = Instant::now();
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start {:?}", command.get_program()))?;
    let (tx, rx) = mpsc::channel::<String>();
    let mut readers = Vec::new();
    for pipe in [
        Box::new(child.stdout.take().expect("piped")) as Box<dyn std::io::Read + Send>,
        Box::new(child.stderr.take().expect("piped")),
    ] {
        let tx = tx.clone();
        readers.push(std::thread::spawn(move || {
            let mut reader = BufReader::new(pipe);
            let mut buf = Vec::new();
            // Bytes, not UTF-8 lines: the serial console is not always text.
            while reader.read_until(b'\n', &mut buf).is_ok_and(|n| n > 0) {
                if tx.send(String::from_utf8_lossy(&buf).into_owned()).is_err() {
                    break;
                }
                buf.clear();
            }
        }));
    }
    drop(tx);

    let mut outcome = Outcome::default();
    let deadline = start + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(raw) => {
                let line = clean(raw.trim_end_matches('\n'));
                let _ = writeln!(log_file, "{line}");
                outcome.line(&line, start.elapsed());
                if let Some(at) = [PROGRESS, MARKER, BOOT_MARKER]
                    .iter()
                    .filter_map(|m| line.find(m))
                    .min()
                    .filter(|_| !line.contains(CAPS_MARKER))
                {
                    println!("[{label}] {}", &line[at..]);
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let _ = child.kill();
                outcome.problem = Some(format!("no end within {}s; killed", timeout.as_secs()));
                break;
            }
        }
    }
    let status = child.wait().context("waiting for the guest")?;
    for reader in readers {
        let _ = reader.join();
    }
    outcome.elapsed = start.elapsed();
    if outcome.pass.is_none() && outcome.problem.is_none() {
        outcome.problem = Some(format!("ended ({status}) without a verdict"));
    }
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_are_removed() {
        assert_eq!(clean("\u{1b}c\u{1b}[?7l\u{1b}[2JKERNEL x\r"), "KERNEL x");
        assert_eq!(clean("plain\ttext"), "plain\ttext");
    }

    #[test]
    fn markers() {
        let mut o = Outcome::default();
        o.line("[    1.2] random kernel line", Duration::from_secs(1));
        o.line(
            "MACDROP-MATRIX-BOOT: 6.1.0 up 1.85s",
            Duration::from_secs(3),
        );
        o.line(
            r#"MACDROP-MATRIX-CAPS: {"kernel": "6.1.0"}"#,
            Duration::from_secs(9),
        );
        o.line(
            "[  9.1] MACDROP-MATRIX: PASS kernel=6.1.0 checks=3/3",
            Duration::from_secs(9),
        );
        o.line(
            "MACDROP-MATRIX: FAIL later lines do not count",
            Duration::from_secs(9),
        );
        assert_eq!(o.boot, Some(Duration::from_secs(3)));
        assert_eq!(o.pass, Some(true));
        assert_eq!(o.verdict.as_deref(), Some("PASS kernel=6.1.0 checks=3/3"));
        assert_eq!(o.caps.as_ref().unwrap()["kernel"], "6.1.0");
    }
}
