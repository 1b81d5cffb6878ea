//! Throwaway network namespaces.
//!
//! Every lab lives in namespaces of its own so tests can run in parallel and
//! never touch the machine's real interfaces. The guard is modelled on aya's
//! integration-test `NetNsGuard`, but uses `ip netns` so the namespaces are
//! visible to `ip netns exec` (which is how the macdrop binary is started) and
//! to whoever inspects a failed run with `ip netns list`.

use std::{
    ffi::OsStr,
    fs::File,
    os::{fd::AsFd as _, unix::fs::MetadataExt as _},
    path::PathBuf,
    process::{Command, Output},
    sync::atomic::{AtomicU64, Ordering},
};

use anyhow::{Context as _, Result, bail};

/// Where `ip netns add` bind-mounts a namespace so it outlives its creator.
const NETNS_RUN_DIR: &str = "/run/netns";

/// Default prefix of namespace names: easy to find and to clean up by hand
/// (`ip netns list | grep macdrop-t-`) after a crashed run.
pub const TEST_PREFIX: &str = "macdrop-t";

/// A named network namespace that is deleted when the guard is dropped,
/// including while a test panics.
#[derive(Debug)]
pub struct NetNs {
    name: String,
    inode: u64,
}

impl NetNs {
    /// Creates `macdrop-t-<pid>-<counter>`: unique across parallel tests in
    /// one process (counter) and across concurrent test processes (pid).
    pub fn new() -> Result<Self> {
        Self::with_prefix(TEST_PREFIX)
    }

    /// Like [`NetNs::new`], named `<prefix>-<pid>-<counter>`.
    ///
    /// The namespace starts quiet: `lo` is up and IPv6 is disabled (`all` and
    /// `default`) before any link exists, so no interface created in it sends
    /// router solicitations, DAD probes or MLD reports on its own. Labs enable
    /// IPv6 per interface where a test needs it.
    pub fn with_prefix(prefix: &str) -> Result<Self> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let name = format!(
            "{prefix}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        run(Command::new("ip").args(["netns", "add", &name]))?;
        // From here on the guard owns the namespace: any error below drops it.
        let mut ns = Self { name, inode: 0 };
        ns.inode = std::fs::metadata(ns.path())
            .with_context(|| format!("stat {}", ns.path().display()))?
            .ino();
        ns.exec(&[
            "sysctl",
            "-qw",
            "net.ipv6.conf.all.disable_ipv6=1",
            "net.ipv6.conf.default.disable_ipv6=1",
        ])?;
        ns.exec(&["ip", "link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// The name used with `ip netns exec` and `ip link ... netns NAME`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The namespace's inode number, which identifies it host-wide. macdrop
    /// reports it (as a decimal string) in each interface's `netns` field.
    pub fn inode(&self) -> u64 {
        self.inode
    }

    /// `/run/netns/NAME`, the bind mount that keeps the namespace alive.
    pub fn path(&self) -> PathBuf {
        PathBuf::from(NETNS_RUN_DIR).join(&self.name)
    }

    /// Runs `argv` inside the namespace and returns its stdout. Fails with the
    /// command line and its stderr if it cannot start or exits non-zero.
    pub fn exec<S: AsRef<OsStr>>(&self, argv: &[S]) -> Result<Vec<u8>> {
        let output = run(&mut self.command(argv))?;
        Ok(output.stdout)
    }

    /// A `Command` for `ip netns exec NAME argv...`, for callers that need
    /// their own stdio handling (e.g. a long-running process).
    pub fn command<S: AsRef<OsStr>>(&self, argv: &[S]) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name]);
        cmd.args(argv);
        cmd
    }

    /// Runs `f` on a new thread that has joined this namespace, and returns
    /// its result. Sockets created in `f` belong to the namespace for their
    /// whole life, wherever they are used afterwards.
    ///
    /// A separate thread because `setns(CLONE_NEWNET)` changes only the
    /// calling thread, and the test's own thread must stay where it is.
    pub fn enter_thread<F, R>(&self, f: F) -> Result<R>
    where
        F: FnOnce() -> R + Send,
        R: Send,
    {
        let file =
            File::open(self.path()).with_context(|| format!("open {}", self.path().display()))?;
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    use std::os::fd::AsRawFd as _;
                    // SAFETY: plain syscall on a valid, open namespace fd.
                    let rc = unsafe { libc::setns(file.as_fd().as_raw_fd(), libc::CLONE_NEWNET) };
                    if rc != 0 {
                        return Err(std::io::Error::last_os_error())
                            .with_context(|| format!("setns into {}", self.name));
                    }
                    Ok(f())
                })
                .join()
                // Re-raise a panic from `f` on the caller's thread, unchanged.
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        // Deleting the namespace destroys every interface in it; a veth whose
        // other end lives elsewhere goes too.
        if let Err(err) = run(Command::new("ip").args(["netns", "del", &self.name])) {
            // Never panic in Drop: it may run during a test's panic, and a
            // double panic aborts without the test's own message.
            eprintln!("warning: cannot delete network namespace: {err:#}");
        }
    }
}

/// Runs `cmd`, failing loudly (command line, status, stderr) unless it exits 0.
pub(crate) fn run(cmd: &mut Command) -> Result<Output> {
    let output = cmd
        .output()
        .with_context(|| format!("cannot run {}", describe(cmd)))?;
    if !output.status.success() {
        bail!(
            "{} failed ({}): {}",
            describe(cmd),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(output)
}

/// The command line, for error messages.
pub(crate) fn describe(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|arg| arg.to_string_lossy())
        .collect::<Vec<_>>()
        .join(" ")
}
