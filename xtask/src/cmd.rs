//! Running external programs the same way everywhere: print the command
//! (`xtask: running ...`), run it from the workspace root, and turn a failure
//! into a one-line error. Also the few facts about the process the commands
//! depend on: are we root, where is the workspace, where is a program.

use std::{
    env,
    ffi::OsString,
    os::unix::process::CommandExt as _,
    path::{Path, PathBuf},
    process::{Command, ExitStatus, Stdio},
};

use anyhow::{Context as _, Result, bail};

/// The workspace root (xtask lives in `<root>/xtask`).
pub fn workspace_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask/ has a parent directory")
}

/// Whether this process runs with effective uid 0.
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// The first `name` in a directory of `PATH`, if any.
pub fn find_in_path(name: &str) -> Option<PathBuf> {
    env::split_paths(&env::var_os("PATH")?)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// Runs `program args...` without printing it and returns its stdout, or
/// `None` if it cannot be started or exits non-zero. For probes such as
/// `rustup toolchain list`, whose stderr is not interesting.
pub fn probe(program: &str, args: &[&str]) -> Option<String> {
    let output = Command::new(program)
        .args(args)
        .current_dir(workspace_root())
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).into_owned())
}

/// A command to print and run. Environment variables set with [`Cmd::env`]
/// are shown in front of it, as a shell would take them.
pub struct Cmd {
    program: OsString,
    args: Vec<OsString>,
    envs: Vec<(String, OsString)>,
}

impl Cmd {
    pub fn new(program: impl Into<OsString>) -> Self {
        Self {
            program: program.into(),
            args: Vec::new(),
            envs: Vec::new(),
        }
    }

    /// `cargo` from `PATH`: the rustup proxy, so `+nightly` works. (The
    /// `CARGO` variable that `cargo run` sets points at the toolchain's own
    /// cargo, which does not understand `+toolchain`.)
    pub fn cargo() -> Self {
        Self::new("cargo")
    }

    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.args.push(arg.into());
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    pub fn env(mut self, key: &str, value: impl Into<OsString>) -> Self {
        self.envs.push((key.to_owned(), value.into()));
        self
    }

    /// Makes the command run as root: unchanged if we are root, else wrapped
    /// in `sudo -- env K=V... program args...` (sudo resets the environment,
    /// so the variables are passed through `env`).
    pub fn privileged(self) -> Result<Self> {
        if is_root() {
            return Ok(self);
        }
        if find_in_path("sudo").is_none() {
            bail!(
                "`{}` needs root and sudo is not installed; run it as root",
                self.display()
            );
        }
        let mut args: Vec<OsString> = vec!["--".into()];
        if !self.envs.is_empty() {
            args.push("env".into());
            for (key, value) in &self.envs {
                let mut pair = OsString::from(format!("{key}="));
                pair.push(value);
                args.push(pair);
            }
        }
        args.push(self.program);
        args.extend(self.args);
        Ok(Self {
            program: "sudo".into(),
            args,
            envs: Vec::new(),
        })
    }

    /// The command as one would type it in a shell.
    pub fn display(&self) -> String {
        let envs = self
            .envs
            .iter()
            .map(|(key, value)| format!("{key}={}", quote(&value.to_string_lossy())));
        let words = std::iter::once(&self.program)
            .chain(&self.args)
            .map(|word| quote(&word.to_string_lossy()));
        envs.chain(words).collect::<Vec<_>>().join(" ")
    }

    fn command(&self) -> Command {
        println!("xtask: running {}", self.display());
        let mut command = Command::new(&self.program);
        command
            .args(&self.args)
            .envs(self.envs.iter().map(|(key, value)| (key, value)))
            .current_dir(workspace_root());
        command
    }

    /// Runs the command and returns its exit status.
    pub fn status(&self) -> Result<ExitStatus> {
        self.command()
            .status()
            .with_context(|| format!("cannot start `{}`", self.display()))
    }

    /// Runs the command; a non-zero exit is an error.
    pub fn run(&self) -> Result<()> {
        let status = self.status()?;
        if !status.success() {
            bail!("`{}` failed ({status})", self.display());
        }
        Ok(())
    }

    /// Runs the command (printed) in `dir`, or the workspace root, and
    /// returns its stdout; a non-zero exit is an error carrying its stderr.
    pub fn output_in(&self, dir: Option<&Path>) -> Result<String> {
        let mut command = self.command();
        if let Some(dir) = dir {
            command.current_dir(dir);
        }
        let output = command
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("cannot start `{}`", self.display()))?;
        if !output.status.success() {
            bail!(
                "`{}` failed ({}): {}",
                self.display(),
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// Runs the command with its stdout and stderr on one pipe, echoing
    /// every line to stdout and handing it to `on_line`, in the order the
    /// command wrote them (two pipes would lose the order between them); a
    /// non-zero exit is an error.
    pub fn run_watching_output(&self, mut on_line: impl FnMut(&str)) -> Result<()> {
        use std::{
            io::{BufRead as _, BufReader},
            sync::mpsc::{self, RecvTimeoutError},
            time::Duration,
        };
        let (reader, writer) = std::io::pipe().context("creating a pipe")?;
        let mut command = self.command();
        command
            .stdout(writer.try_clone().context("duplicating the pipe")?)
            .stderr(writer);
        let mut child = command
            .spawn()
            .with_context(|| format!("cannot start `{}`", self.display()))?;
        // The child holds the write ends now; ours go with `command`.
        drop(command);
        // A process the command left running may hold the pipe open after
        // it exits, so the end of the output is the command's exit plus a
        // moment of quiet, not the pipe's end alone.
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(reader);
            let mut buf = Vec::new();
            loop {
                buf.clear();
                match reader.read_until(b'\n', &mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        let line = String::from_utf8_lossy(&buf);
                        let line = line.trim_end_matches(['\n', '\r']).to_owned();
                        if tx.send(line).is_err() {
                            break;
                        }
                    }
                }
            }
        });
        let mut handle = |line: String| {
            println!("{line}");
            on_line(&line);
        };
        let mut exited = None;
        loop {
            let wait = if exited.is_some() {
                Duration::from_secs(1)
            } else {
                Duration::from_millis(200)
            };
            match rx.recv_timeout(wait) {
                Ok(line) => handle(line),
                Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) if exited.is_some() => break,
                Err(RecvTimeoutError::Timeout) => {
                    exited = child.try_wait().context("waiting for the command")?;
                }
            }
        }
        let status = match exited {
            Some(status) => status,
            None => child.wait().context("waiting for the command")?,
        };
        if !status.success() {
            bail!("`{}` failed ({status})", self.display());
        }
        Ok(())
    }

    /// Replaces this process with the command, so its exit code and signals
    /// (Ctrl-C) are its own. Returns only if it cannot be started.
    pub fn exec(&self) -> anyhow::Error {
        let error = self.command().exec();
        anyhow::Error::new(error).context(format!("cannot start `{}`", self.display()))
    }
}

/// Shell-quotes `word` if it needs it.
fn quote(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+~@%^".contains(c));
    if plain {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// The workspace's target directory, as cargo resolves it (CARGO_TARGET_DIR,
/// `build.target-dir` in a config file, or `<root>/target`).
pub fn target_dir() -> Result<PathBuf> {
    let metadata = crate::cmd::probe("cargo", &["metadata", "--format-version", "1", "--no-deps"])
        .context("`cargo metadata` failed")?;
    let metadata: serde_json::Value =
        serde_json::from_str(&metadata).context("`cargo metadata` printed invalid JSON")?;
    let dir = metadata["target_directory"]
        .as_str()
        .context("`cargo metadata` printed no target_directory")?;
    Ok(PathBuf::from(dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_quotes_only_what_needs_it() {
        let cmd = Cmd::new("cargo")
            .env("LLVM_PREFIX", "/usr/lib/llvm-22")
            .args(["install", "--version", "~0.13", "it's", ""]);
        assert_eq!(
            cmd.display(),
            r"LLVM_PREFIX=/usr/lib/llvm-22 cargo install --version ~0.13 'it'\''s' ''"
        );
    }

    #[test]
    fn workspace_root_holds_the_workspace_manifest() {
        assert!(workspace_root().join("xtask").is_dir());
        assert!(workspace_root().join("Cargo.toml").is_file());
    }
}
