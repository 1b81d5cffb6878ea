//! The processes a benchmark starts (macdrop, tcpdump, macdrop-bench):
//! their output read line by line on threads, waited for with deadlines,
//! and stopped by their own pid (SIGTERM, then SIGKILL), also when a part
//! fails half-way.

use std::{
    io::{BufRead as _, BufReader, Read},
    process::{Child, Command, ExitStatus, Stdio},
    sync::mpsc::{self, Receiver, RecvTimeoutError},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};

/// A line of a child's output and when it was read.
pub struct Line {
    pub text: String,
    pub at: Instant,
}

/// A running child with its stdout and stderr as line channels.
pub struct Proc {
    name: String,
    child: Option<Child>,
    pub stdout: Receiver<Line>,
    pub stderr: Receiver<Line>,
    /// When the process was started.
    pub started: Instant,
}

impl Proc {
    /// Starts `cmd` with piped stdout and stderr (and stdin if `stdin`).
    pub fn spawn(name: &str, mut cmd: Command, stdin: bool) -> Result<Self> {
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        cmd.stdin(if stdin { Stdio::piped() } else { Stdio::null() });
        let started = Instant::now();
        let mut child = cmd
            .spawn()
            .with_context(|| format!("cannot start {name}"))?;
        let stdout = lines(child.stdout.take().expect("piped"));
        let stderr = lines(child.stderr.take().expect("piped"));
        Ok(Self {
            name: name.to_owned(),
            child: Some(child),
            stdout,
            stderr,
            started,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Closes the child's stdin (the signal `macdrop-bench attach-empty`
    /// stops on).
    pub fn close_stdin(&mut self) {
        if let Some(c) = self.child.as_mut() {
            drop(c.stdin.take());
        }
    }

    /// Waits until a line of stdout (`on_stdout`) or stderr satisfies
    /// `pred`, and returns it. Fails on timeout or if the child exits
    /// first, with its last stderr lines.
    pub fn wait_line(
        &mut self,
        on_stdout: bool,
        timeout: Duration,
        mut pred: impl FnMut(&str) -> bool,
    ) -> Result<Line> {
        let deadline = Instant::now() + timeout;
        let mut seen: Vec<String> = Vec::new();
        loop {
            let rx = if on_stdout {
                &self.stdout
            } else {
                &self.stderr
            };
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left.min(Duration::from_millis(200))) {
                Ok(line) if pred(&line.text) => return Ok(line),
                Ok(line) => {
                    seen.push(line.text);
                    if seen.len() > 20 {
                        seen.remove(0);
                    }
                }
                Err(RecvTimeoutError::Timeout) if Instant::now() < deadline => {}
                Err(e) => {
                    let errs: Vec<String> = self.stderr.try_iter().map(|l| l.text).collect();
                    bail!(
                        "{}: the expected line did not come ({}); last output: {} {}",
                        self.name,
                        if matches!(e, RecvTimeoutError::Timeout) {
                            "timeout"
                        } else {
                            "exited"
                        },
                        seen.join(" | "),
                        errs.join(" | ")
                    );
                }
            }
        }
    }

    /// Sends SIGTERM and waits up to `timeout`, then SIGKILL. Returns the
    /// exit status and how long the exit took.
    pub fn stop(&mut self, timeout: Duration) -> Result<(ExitStatus, Duration)> {
        let Some(mut child) = self.child.take() else {
            bail!("{} already stopped", self.name);
        };
        let t = Instant::now();
        if child.try_wait()?.is_none() {
            signal(child.id(), libc::SIGTERM);
        }
        wait_child(&mut child, &self.name, timeout).map(|s| (s, t.elapsed()))
    }

    /// Closes stdin and waits up to `timeout` for the exit, then SIGKILL.
    pub fn stop_by_stdin(&mut self, timeout: Duration) -> Result<ExitStatus> {
        self.close_stdin();
        let Some(mut child) = self.child.take() else {
            bail!("{} already stopped", self.name);
        };
        wait_child(&mut child, &self.name, timeout)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take()
            && child.try_wait().ok().flatten().is_none()
        {
            signal(child.id(), libc::SIGTERM);
            if wait_child(&mut child, &self.name, Duration::from_secs(20)).is_err() {
                eprintln!("xtask: bench: {} did not stop; killed", self.name);
            }
        }
    }
}

fn wait_child(child: &mut Child, name: &str, timeout: Duration) -> Result<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("{name} did not exit within {timeout:?}; killed");
        }
        thread::sleep(Duration::from_millis(5));
    }
}

fn signal(pid: u32, sig: i32) {
    // SAFETY: plain syscall on the pid of a child we started and have not
    // reaped yet (so the pid cannot have been reused).
    unsafe {
        libc::kill(pid as libc::pid_t, sig);
    }
}

fn lines(stream: impl Read + Send + 'static) -> Receiver<Line> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for text in BufReader::new(stream).lines() {
            let Ok(text) = text else { break };
            let line = Line {
                text,
                at: Instant::now(),
            };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Runs `cmd` to completion; its stdout on success, an error with its
/// stderr otherwise.
pub fn output(mut cmd: Command) -> Result<String> {
    let shown = format!("{cmd:?}");
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run {shown}"))?;
    if !out.status.success() {
        bail!(
            "{shown} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
