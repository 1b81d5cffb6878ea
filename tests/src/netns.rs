//! Throwaway network namespaces.
//!
//! Every lab lives in namespaces of its own so tests can run in parallel and
//! never touch the machine's real interfaces. The guard is modelled on aya's
//! integration-test `NetNsGuard`, but uses `ip netns` so the namespaces are
//! visible to `ip netns exec` (which is how the macdrop binary is started) and
//! to whoever inspects a failed run with `ip netns list`.
//!
//! A namespace can also be bound in a directory of its own
//! ([`NetNs::private`]): out of sight of `ip netns` and of
//! `macdrop --all-netns`, for a lab that must stay out of other runs on the
//! machine (the benchmark's bridge with a thousand ports).

use std::{
    ffi::OsStr,
    fs::File,
    os::{fd::AsFd as _, unix::fs::MetadataExt as _},
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    sync::atomic::{AtomicU64, Ordering},
};

use anyhow::{Context as _, Result, bail};

/// Where `ip netns add` bind-mounts a namespace so it outlives its creator.
const NETNS_RUN_DIR: &str = "/run/netns";

/// Default prefix of namespace names: easy to find and to clean up by hand
/// (`ip netns list | grep macdrop-t-`) after a crashed run.
pub const TEST_PREFIX: &str = "macdrop-t";

/// Prefix of the namespaces of `cargo xtask bench`.
pub const BENCH_PREFIX: &str = "macdrop-b";

/// A named network namespace that is deleted when the guard is dropped,
/// including while a test panics.
#[derive(Debug)]
pub struct NetNs {
    name: String,
    inode: u64,
    /// The directory of the bind mount, when not /run/netns.
    private_dir: Option<PathBuf>,
}

impl NetNs {
    /// Creates `macdrop-t-<pid>-<counter>`: unique across parallel tests in
    /// one process (counter) and across concurrent test processes (pid).
    pub fn new() -> Result<Self> {
        Self::with_prefix(TEST_PREFIX)
    }

    /// Like [`NetNs::new`], named `<prefix>-<pid>-<counter>`. It starts
    /// quiet: `lo` up, IPv6 disabled before any link exists.
    pub fn with_prefix(prefix: &str) -> Result<Self> {
        let name = unique_name(prefix);
        run(Command::new("ip").args(["netns", "add", &name]))?;
        Self::adopt(name, None)
    }

    /// Like [`NetNs::with_prefix`], bound at `DIR/<prefix>-<pid>-<counter>`
    /// instead of under /run/netns: `ip netns` and `macdrop --all-netns` do
    /// not see it, and [`NetNs::command`] enters it with `nsenter`. Name
    /// it in `ip link ... netns` by its [`NetNs::path`].
    pub fn private(dir: &Path, prefix: &str) -> Result<Self> {
        let name = unique_name(prefix);
        std::fs::create_dir_all(dir).with_context(|| format!("mkdir {}", dir.display()))?;
        let path = dir.join(&name);
        File::create(&path).with_context(|| format!("create {}", path.display()))?;
        // unshare binds the new namespace onto the file and exits; the
        // mount keeps it alive.
        let bound = run(Command::new("unshare")
            .arg(format!("--net={}", path.display()))
            .arg("true"));
        if let Err(e) = bound {
            let _ = std::fs::remove_file(&path);
            return Err(e);
        }
        Self::adopt(name, Some(dir.to_owned()))
    }

    /// Takes ownership of a namespace just bound, and makes it quiet.
    ///
    /// The namespace starts quiet: `lo` is up and IPv6 is disabled (`all` and
    /// `default`) before any link exists, so no interface created in it sends
    /// router solicitations, DAD probes or MLD reports on its own. Labs enable
    /// IPv6 per interface where a test needs it.
    fn adopt(name: String, private_dir: Option<PathBuf>) -> Result<Self> {
        // From here on the guard owns the namespace: any error below drops it.
        let mut ns = Self {
            name,
            inode: 0,
            private_dir,
        };
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

    /// The name used with `ip netns exec` and `ip link ... netns NAME` (of
    /// a namespace under /run/netns; [`NetNs::path`] names either kind).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The namespace's inode number, which identifies it host-wide. macdrop
    /// reports it (as a decimal string) in each interface's `netns` field.
    pub fn inode(&self) -> u64 {
        self.inode
    }

    /// `/run/netns/NAME` (or `DIR/NAME`), the bind mount that keeps the
    /// namespace alive. iproute2 takes it wherever it takes a namespace's
    /// name (a `/` in it makes it a path).
    pub fn path(&self) -> PathBuf {
        self.private_dir
            .as_deref()
            .unwrap_or(Path::new(NETNS_RUN_DIR))
            .join(&self.name)
    }

    /// Runs `argv` inside the namespace and returns its stdout. Fails with the
    /// command line and its stderr if it cannot start or exits non-zero.
    pub fn exec<S: AsRef<OsStr>>(&self, argv: &[S]) -> Result<Vec<u8>> {
        let output = run(&mut self.command(argv))?;
        Ok(output.stdout)
    }

    /// A `Command` for `ip netns exec NAME argv...`, for callers that need
    /// their own stdio handling (e.g. a long-running process). Both `ip` and
    /// `nsenter` exec the program: the child's pid is the program's own.
    ///
    /// A private namespace is entered with `nsenter --net=PATH` (`ip netns
    /// exec` knows only /run/netns); it does not remount /sys for the
    /// namespace as `ip netns exec` does.
    pub fn command<S: AsRef<OsStr>>(&self, argv: &[S]) -> Command {
        let mut cmd = match &self.private_dir {
            None => {
                let mut cmd = Command::new("ip");
                cmd.args(["netns", "exec", &self.name]);
                cmd
            }
            Some(_) => {
                let mut cmd = Command::new("nsenter");
                cmd.arg(format!("--net={}", self.path().display()));
                cmd
            }
        };
        cmd.args(argv);
        cmd
    }

    /// [`NetNs::command`] with `argv` pinned to `cpus` (`taskset -c`), so a
    /// measurement's helpers stay off the CPUs the path under test runs on.
    pub fn command_on_cpus<S: AsRef<OsStr>>(&self, cpus: &str, argv: &[S]) -> Command {
        let mut pinned: Vec<&OsStr> = vec!["taskset".as_ref(), "-c".as_ref(), cpus.as_ref()];
        pinned.extend(argv.iter().map(AsRef::as_ref));
        self.command(&pinned)
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
        let deleted = match &self.private_dir {
            None => run(Command::new("ip").args(["netns", "del", &self.name])).map(drop),
            Some(_) => unbind(&self.path()),
        };
        if let Err(err) = deleted {
            // Never panic in Drop: it may run during a test's panic, and a
            // double panic aborts without the test's own message.
            eprintln!("warning: cannot delete network namespace: {err:#}");
        }
    }
}

/// `<prefix>-<pid>-<counter>`: unique across parallel tests in one process
/// (counter) and across concurrent processes (pid).
fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Unmounts a private namespace's bind mount and removes its file: the
/// namespace goes once nothing else holds it (as after `ip netns del`).
fn unbind(path: &Path) -> Result<()> {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())?;
    // SAFETY: a valid NUL-terminated path; MNT_DETACH never blocks.
    if unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) } != 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("umount {}", path.display()));
    }
    std::fs::remove_file(path).with_context(|| format!("rm {}", path.display()))
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

/// A `sleep` living in a namespace (what makes a namespace some process's),
/// killed when dropped, also when the test fails.
pub struct Sleeper(Child);

impl Sleeper {
    pub fn start(ns: &NetNs) -> Result<Self> {
        let mut cmd = ns.command(&["sleep", "120"]);
        cmd.stdin(Stdio::null()).stdout(Stdio::null());
        let child = cmd
            .spawn()
            .with_context(|| format!("cannot start {}", describe(&cmd)))?;
        Ok(Self(child))
    }

    /// `ip netns exec` execs the program: the child's PID is sleep's.
    pub fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Sleeper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
