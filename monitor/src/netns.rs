//! Network namespaces: which one a session serves, entering it for the
//! operations that resolve interfaces in the caller's namespace (netlink
//! sockets, XDP and tc attach), and finding the ones `--all-netns` covers.

use std::{
    fs::File,
    os::fd::AsRawFd as _,
    path::{Path, PathBuf},
};

use anyhow::Context as _;

use crate::error::Failure;

/// Where named namespaces live: iproute2's and Docker's.
pub const NAMED_NETNS_DIRS: [&str; 2] = ["/run/netns", "/run/docker/netns"];

/// One network namespace.
#[derive(Debug)]
pub struct Namespace {
    /// Inode number: the identifier in reports and map keys.
    pub inode: u32,
    /// Name for people: the file name under /run/netns (or a path given
    /// with --netns); None for the namespace macdrop was started in.
    pub name: Option<String>,
    /// Open handle for setns(2); None for the starting namespace.
    file: Option<File>,
}

impl Namespace {
    /// The namespace this process runs in.
    pub fn current() -> anyhow::Result<Self> {
        Ok(Self {
            inode: inode_of(Path::new("/proc/self/ns/net"))?,
            name: None,
            file: None,
        })
    }

    /// `--netns NAME|PATH`: a name under /run/netns or /run/docker/netns,
    /// or a path such as /proc/PID/ns/net.
    pub fn open(spec: &str) -> Result<Self, Failure> {
        let path = if spec.contains('/') {
            PathBuf::from(spec)
        } else {
            NAMED_NETNS_DIRS
                .iter()
                .map(|dir| Path::new(dir).join(spec))
                .find(|p| p.exists())
                .ok_or_else(|| {
                    Failure::environment(format!(
                        "no network namespace named {spec} in {}; list them with `ip netns list` \
                         or give a path such as /proc/PID/ns/net",
                        NAMED_NETNS_DIRS.join(" or ")
                    ))
                })?
        };
        Self::open_path(&path, Some(spec.to_owned()))
    }

    fn open_path(path: &Path, name: Option<String>) -> Result<Self, Failure> {
        let file = File::open(path).map_err(|e| {
            Failure::environment(format!(
                "cannot open network namespace {}: {e}",
                path.display()
            ))
        })?;
        let inode = inode_of(path).map_err(|e| Failure::environment(format!("{e:#}")))?;
        // A file that is not a namespace fails here rather than at setns.
        let ns = Self {
            inode,
            name,
            file: Some(file),
        };
        let _probe = ns.enter().map_err(|e| {
            Failure::environment(format!(
                "{} is not a network namespace: {e:#}",
                path.display()
            ))
        })?;
        Ok(ns)
    }

    /// Every named namespace plus the current one, each once (by inode).
    pub fn all() -> anyhow::Result<Vec<Self>> {
        let mut out = vec![Self::current()?];
        for dir in NAMED_NETNS_DIRS {
            let Ok(entries) = std::fs::read_dir(dir) else {
                continue;
            };
            let mut paths: Vec<PathBuf> =
                entries.filter_map(|e| e.ok()).map(|e| e.path()).collect();
            paths.sort();
            for path in paths {
                let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
                // Mount points of namespaces that are gone fail to open or
                // to enter: skip them rather than fail the whole run.
                if let Ok(ns) = Self::open_path(&path, name)
                    && !out.iter().any(|o| o.inode == ns.inode)
                {
                    out.push(ns);
                }
            }
        }
        Ok(out)
    }

    /// Enters the namespace on this thread until the guard drops. A no-op
    /// for the starting namespace.
    pub fn enter(&self) -> anyhow::Result<Entered> {
        let Some(file) = &self.file else {
            return Ok(Entered { back: None });
        };
        let back = File::open("/proc/thread-self/ns/net").context("cannot open own namespace")?;
        setns(file).context("setns into the target namespace")?;
        Ok(Entered { back: Some(back) })
    }

    /// The same namespace through a handle of its own (for another thread).
    pub fn try_clone(&self) -> anyhow::Result<Self> {
        Ok(Self {
            inode: self.inode,
            name: self.name.clone(),
            file: match &self.file {
                Some(f) => Some(
                    f.try_clone()
                        .context("cannot duplicate a namespace handle")?,
                ),
                None => None,
            },
        })
    }

    /// Moves the calling thread into the namespace for the rest of its
    /// life: for a thread that works only there (and may then give up the
    /// capability a return would need).
    pub fn enter_for_good(&self) -> anyhow::Result<()> {
        match &self.file {
            Some(file) => setns(file).context("setns into the target namespace"),
            None => Ok(()),
        }
    }

    /// "netns 4026532177 (ctr1)" for messages.
    pub fn describe(&self) -> String {
        match &self.name {
            Some(n) => format!("netns {} ({n})", self.inode),
            None => format!("netns {}", self.inode),
        }
    }
}

/// While alive, the thread is in another namespace; dropping returns.
#[must_use]
pub struct Entered {
    back: Option<File>,
}

impl Drop for Entered {
    fn drop(&mut self) {
        if let Some(back) = &self.back {
            // Failing to return would leave the thread in the wrong
            // namespace for everything after: that is a bug worth a panic.
            setns(back).expect("cannot return to macdrop's own network namespace");
        }
    }
}

fn setns(file: &File) -> std::io::Result<()> {
    // SAFETY: plain syscall on an open namespace fd.
    if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Inode number of a namespace file: what `lsns` and `ip netns identify`
/// show.
pub fn inode_of(path: &Path) -> anyhow::Result<u32> {
    use std::os::unix::fs::MetadataExt as _;
    let ino = std::fs::metadata(path)
        .with_context(|| format!("cannot stat {}", path.display()))?
        .ino();
    u32::try_from(ino).with_context(|| format!("namespace inode {ino} does not fit in 32 bits"))
}
