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

/// When a guest is given up on: after `silence` without a console line
/// (stuck), or after `total` whatever it prints (a ceiling that keeps the
/// whole matrix inside CI's budget). A slow but progressing guest (TCG on
/// a busy 2-CPU machine ran 6.1 past a fixed 7 minutes) is never cut
/// short by the first.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub silence: Duration,
    pub total: Duration,
}

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
/// prefixed with `[label]`. Killed when it outruns `limits`.
pub fn run(command: &mut Command, label: &str, log: &Path, limits: Limits) -> Result<Outcome> {
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
    let deadline = start + limits.total;
    loop {
        let to_deadline = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(to_deadline.min(limits.silence)) {
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
                let why = if Instant::now() >= deadline {
                    format!("no end within {}s", limits.total.as_secs())
                } else {
                    format!("no console line for {}s", limits.silence.as_secs())
                };
                outcome.problem = Some(format!(
                    "{why}; killed at {}, last line: {}",
                    crate::ui::duration(start.elapsed()),
                    outcome.tail.last().map_or("(none)", String::as_str)
                ));
                break;
            }
        }
    }
    let status = child.wait().context("waiting for the guest")?;
    // After a kill the readers are left to end with the pipes: something
    // the guest started may still hold them open.
    if outcome.problem.is_none() {
        for reader in readers {
            let _ = reader.join();
        }
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

    fn shell(script: &str, limits: Limits) -> Outcome {
        let log = std::env::temp_dir().join(format!("console-test-{}.log", std::process::id()));
        let mut command = Command::new("sh");
        command.args(["-c", script]);
        let outcome = run(&mut command, "test", &log, limits).unwrap();
        let _ = std::fs::remove_file(&log);
        outcome
    }

    #[test]
    fn a_slow_guest_that_keeps_printing_is_not_killed() {
        // 1.5 s in all, longer than the silence limit, a line every 0.3 s.
        let outcome = shell(
            "for i in 1 2 3 4 5; do echo matrix: check $i; sleep 0.3; done; \
             echo 'MACDROP-MATRIX: PASS kernel=x'",
            Limits {
                silence: Duration::from_secs(1),
                total: Duration::from_secs(30),
            },
        );
        assert_eq!(outcome.pass, Some(true), "{:?}", outcome.problem);
        assert!(outcome.elapsed >= Duration::from_millis(1500));
    }

    #[test]
    fn a_silent_guest_is_killed_and_its_last_line_named() {
        let outcome = shell(
            "echo 'matrix: sigkill/xdp: start'; exec sleep 30",
            Limits {
                silence: Duration::from_secs(1),
                total: Duration::from_secs(30),
            },
        );
        assert_eq!(outcome.pass, None);
        let problem = outcome.problem.unwrap();
        assert!(
            problem.starts_with("no console line for 1s; killed at "),
            "{problem}"
        );
        assert!(
            problem.ends_with("last line: matrix: sigkill/xdp: start"),
            "{problem}"
        );
        assert!(outcome.elapsed < Duration::from_secs(10));
    }

    #[test]
    fn a_guest_printing_forever_meets_the_ceiling() {
        let outcome = shell(
            "while :; do echo matrix: busy; sleep 0.2; done",
            Limits {
                silence: Duration::from_secs(1),
                total: Duration::from_secs(2),
            },
        );
        assert_eq!(outcome.pass, None);
        let problem = outcome.problem.unwrap();
        assert!(
            problem.starts_with("no end within 2s; killed at "),
            "{problem}"
        );
    }
}
