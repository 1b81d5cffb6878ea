//! What the container-engine labs (`docker`, `podman`, `cri`) share: the
//! busybox-static image root, stopping a daemon, killing what outlived it,
//! and a private mount namespace for engines whose state paths cannot all
//! be moved into the test's directory.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};

use crate::netns::{NetNs, describe};

/// busybox-static's binary.
pub const BUSYBOX: &str = "/bin/busybox";

const STOP_TIMEOUT: Duration = Duration::from_secs(30);
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// An error naming the first of `programs` that is not installed.
pub fn require(programs: &[&str]) -> Result<()> {
    for program in programs {
        if !Path::new(program).exists() {
            bail!("{program} is not installed (cargo xtask setup installs it)");
        }
    }
    Ok(())
}

/// `dir/rootfs.tar`: busybox-static as /bin/busybox, `sleep` and `sh` its
/// links; the only image root the labs use, never a registry's.
pub fn busybox_tarball(dir: &Path) -> Result<PathBuf> {
    let root = dir.join("rootfs");
    let bin = root.join("bin");
    std::fs::create_dir_all(&bin)?;
    std::fs::copy(BUSYBOX, bin.join("busybox"))?;
    for link in ["sleep", "sh"] {
        let path = bin.join(link);
        if !path.exists() {
            std::os::unix::fs::symlink("busybox", path)?;
        }
    }
    let tarball = dir.join("rootfs.tar");
    let mut tar = Command::new("tar");
    tar.arg("-C").arg(&root).arg("-cf").arg(&tarball).arg(".");
    run(&mut tar)?;
    Ok(tarball)
}

/// Runs `cmd` to its end (`netns::run`); its stdout, trimmed.
pub fn run(cmd: &mut Command) -> Result<String> {
    let out = crate::netns::run(cmd.stdin(Stdio::null()))?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// An engine's daemon: its output appended to a log file, stopped when
/// dropped (SIGTERM, then SIGKILL after `STOP_TIMEOUT`).
pub struct Daemon {
    child: Child,
    log: PathBuf,
}

impl Daemon {
    /// Starts `cmd` (`name` in errors) and waits until `ready` says it
    /// answers; an error with the log's last lines if it exits or does not
    /// answer within `READY_TIMEOUT`.
    pub fn start(
        name: &str,
        mut cmd: Command,
        log: PathBuf,
        mut ready: impl FnMut() -> bool,
    ) -> Result<Self> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .with_context(|| format!("cannot open {}", log.display()))?;
        cmd.stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file);
        let child = cmd
            .spawn()
            .with_context(|| format!("cannot start {}", describe(&cmd)))?;
        let mut daemon = Self { child, log };
        let deadline = Instant::now() + READY_TIMEOUT;
        while !ready() {
            if let Ok(Some(status)) = daemon.child.try_wait() {
                bail!("{name} exited ({status}): {}", daemon.log_tail());
            }
            if Instant::now() > deadline {
                bail!(
                    "{name} did not answer within {READY_TIMEOUT:?}: {}",
                    daemon.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        Ok(daemon)
    }

    /// The log's last lines, for errors.
    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        stop(&mut self.child);
    }
}

/// SIGTERM, then SIGKILL after `STOP_TIMEOUT`; reaps the child.
fn stop(child: &mut Child) {
    let pid = child.id() as libc::pid_t;
    // SAFETY: signals our own child, which we have not reaped yet.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let deadline = Instant::now() + STOP_TIMEOUT;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// SIGKILLs every process whose command line names `dir` (a daemon's
/// shims and monitors, if anything outlived it) and each of `pids` still
/// there.
pub fn kill_leftovers(dir: &Path, pids: impl IntoIterator<Item = u32>) {
    for pid in pids {
        if std::fs::metadata(format!("/proc/{pid}")).is_ok() {
            // SAFETY: a plain kill(2).
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
        }
    }
    for pid in processes_under(dir) {
        // SAFETY: a plain kill(2).
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    std::thread::sleep(Duration::from_millis(200));
}

/// Removes the cgroups an engine made as parents of its containers'
/// (`paths` relative to each hierarchy, children first) where they are
/// empty: in use, by this engine or one of the host's, rmdir(2) leaves
/// them.
pub fn remove_empty_cgroups(paths: &[&str]) {
    let root = Path::new("/sys/fs/cgroup");
    let mut hierarchies = vec![root.to_path_buf()];
    if let Ok(entries) = std::fs::read_dir(root) {
        hierarchies.extend(entries.filter_map(|e| Some(e.ok()?.path())));
    }
    for hierarchy in hierarchies {
        for path in paths {
            let _ = std::fs::remove_dir(hierarchy.join(path));
        }
    }
}

fn processes_under(dir: &Path) -> Vec<libc::pid_t> {
    let needle = dir.display().to_string();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<libc::pid_t>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| String::from_utf8_lossy(&c).contains(&needle))
                .unwrap_or(false)
        })
        .collect()
}

/// A mount namespace of the lab's own, held by a `sleep` living in it and
/// in the lab's network namespace, with an empty tmpfs over each of the
/// engine's fixed state paths (Podman's /run/containers and
/// /var/lib/containers, CNI's /var/lib/cni): what the engine writes there
/// goes with the namespace, and the host's engines are not disturbed.
/// Commands run in it through `command`. Mount points that did not exist
/// are made, and removed again when dropped.
pub struct Anchor {
    holder: Child,
    made: Vec<PathBuf>,
}

impl Anchor {
    pub fn start(ns: &NetNs, private: &[&str]) -> Result<Self> {
        let mut made = Vec::new();
        for dir in private {
            if !Path::new(dir).exists() {
                std::fs::create_dir_all(dir).with_context(|| format!("mkdir {dir}"))?;
                made.push(PathBuf::from(dir));
            }
        }
        let script: String = private
            .iter()
            .map(|d| format!("mount -t tmpfs macdrop-test {d} && "))
            .chain(["exec sleep infinity".to_owned()])
            .collect();
        let mut cmd = Command::new("unshare");
        cmd.args(["--mount", "--propagation", "slave", "nsenter"])
            .arg(format!("--net={}", ns.path().display()))
            .args(["sh", "-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        let mut holder = cmd
            .spawn()
            .with_context(|| format!("cannot start {}", describe(&cmd)))?;
        // Ready once the holder is `sleep` (the mounts are done).
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let comm = std::fs::read_to_string(format!("/proc/{}/comm", holder.id()));
            if comm.is_ok_and(|c| c.trim() == "sleep") {
                break;
            }
            if let Ok(Some(status)) = holder.try_wait() {
                bail!("{} exited ({status})", describe(&cmd));
            }
            if Instant::now() > deadline {
                let _ = holder.kill();
                let _ = holder.wait();
                bail!("{} did not get ready", describe(&cmd));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(Self { holder, made })
    }

    /// `argv` in the lab's mount and network namespaces.
    pub fn command<S: AsRef<std::ffi::OsStr>>(&self, argv: &[S]) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--target={}", self.holder.id()))
            .args(["--mount", "--net"])
            .args(argv);
        cmd
    }
}

impl Drop for Anchor {
    fn drop(&mut self) {
        let _ = self.holder.kill();
        let _ = self.holder.wait();
        for dir in self.made.iter().rev() {
            let _ = std::fs::remove_dir(dir);
        }
    }
}
