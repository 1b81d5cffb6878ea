//! Network namespaces: which one a session serves, entering it for the
//! operations that resolve interfaces in the caller's namespace (netlink
//! sockets, XDP and tc attach), and finding the ones `--all-netns` covers.

use std::{
    fs::File,
    os::fd::AsRawFd as _,
    path::{Path, PathBuf},
};

use anyhow::Context as _;

use crate::{error::Failure, untrusted::escape_controls};

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
        let file = open_nsfs(path)?;
        // A namespace of another type (a mount or PID namespace file) is
        // nsfs too: setns with CLONE_NEWNET refuses it (EINVAL).
        let ns = Self {
            inode: inode_of_file(&file, path)?,
            name,
            file: Some(file),
        };
        let _probe = ns.enter().map_err(|e| {
            Failure::environment(format!(
                "{} is not a network namespace ({}); give /run/netns/NAME or /proc/PID/ns/net",
                escape_controls(&path.display().to_string()),
                e.root_cause()
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

fn inode_of_file(file: &File, path: &Path) -> Result<u32, Failure> {
    use std::os::unix::fs::MetadataExt as _;
    let shown = || escape_controls(&path.display().to_string());
    let ino = file
        .metadata()
        .map_err(|e| Failure::environment(format!("cannot stat {}: {e}", shown())))?
        .ino();
    u32::try_from(ino).map_err(|_| {
        Failure::environment(format!(
            "{}: namespace inode {ino} does not fit in 32 bits",
            shown()
        ))
    })
}

/// The filesystem type of namespace files (`NSFS_MAGIC`, linux/magic.h).
pub(crate) const NSFS_MAGIC: u64 = 0x6e73_6673;

/// Opens a namespace file for setns, having made sure first that it is one:
/// the path is opened with O_PATH (which neither blocks on a FIFO nor opens
/// a device: no driver's open runs), its filesystem checked to be nsfs on
/// that descriptor, and only then the same file (through
/// /proc/self/fd, so a rename in between changes nothing) opened for real.
/// `--netns` runs as root with a path from the command line or a
/// configuration file: opening whatever it names would be an open(2) of an
/// arbitrary file with root's rights.
fn open_nsfs(path: &Path) -> Result<File, Failure> {
    use std::os::unix::fs::{FileTypeExt as _, OpenOptionsExt as _};
    let shown = || escape_controls(&path.display().to_string());
    let handle = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| {
            Failure::environment(format!("cannot open network namespace {}: {e}", shown()))
        })?;
    let file_type = handle
        .metadata()
        .map_err(|e| Failure::environment(format!("cannot stat {}: {e}", shown())))?
        .file_type();
    let not_a_netns = |what: &str| {
        Failure::environment(format!(
            "{} is {what}, not a network namespace; give /run/netns/NAME or /proc/PID/ns/net",
            shown()
        ))
    };
    if !is_nsfs(&handle) {
        return Err(not_a_netns(if file_type.is_fifo() {
            "a FIFO"
        } else if file_type.is_char_device() || file_type.is_block_device() {
            "a device"
        } else if file_type.is_socket() {
            "a socket"
        } else if file_type.is_dir() {
            "a directory"
        } else {
            "a regular file"
        }));
    }
    let file = File::open(format!("/proc/self/fd/{}", handle.as_raw_fd())).map_err(|e| {
        Failure::environment(format!("cannot open network namespace {}: {e}", shown()))
    })?;
    // SAFETY: NS_GET_NSTYPE takes no argument and returns the CLONE_NEW* type.
    let kind = unsafe { libc::ioctl(file.as_raw_fd(), NS_GET_NSTYPE) };
    if kind >= 0 && kind != libc::CLONE_NEWNET {
        return Err(not_a_netns("a namespace of another type"));
    }
    Ok(file)
}

/// `_IO(0xb7, 0x3)` (linux/nsfs.h, Linux >= 4.11).
const NS_GET_NSTYPE: libc::Ioctl = 0xb703;

/// Whether the descriptor's file lives on nsfs (fstatfs works on an O_PATH
/// descriptor).
fn is_nsfs(file: &File) -> bool {
    let mut st = std::mem::MaybeUninit::<libc::statfs>::zeroed();
    // SAFETY: fstatfs writes at most one `statfs` into `st`.
    let rc = unsafe { libc::fstatfs(file.as_raw_fd(), st.as_mut_ptr()) };
    // SAFETY: fstatfs succeeded, so `st` is initialised (and it was zeroed).
    let f_type = unsafe { st.assume_init() }.f_type;
    // f_type is an i64 with glibc on x86_64, a c_ulong with musl (the
    // static build of `cargo xtask dist`), narrower on other architectures;
    // the magic is positive and fits them all.
    #[allow(clippy::useless_conversion)]
    let f_type = u64::try_from(f_type).ok();
    rc == 0 && f_type == Some(NSFS_MAGIC)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(path: &Path) -> String {
        match open_nsfs(path) {
            Ok(_) => panic!("{} was accepted as a namespace", path.display()),
            Err(e) => {
                assert_eq!(e.kind, crate::error::ExitKind::Environment);
                e.message
            }
        }
    }

    #[test]
    fn only_namespace_files_are_opened() {
        let dir = std::env::temp_dir().join(format!("macdrop-netns-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let fifo = dir.join("fifo");
        let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let regular = dir.join("regular");
        std::fs::write(&regular, b"x").unwrap();
        // A FIFO without a writer would block a plain open forever.
        assert!(refused(&fifo).contains("is a FIFO"));
        assert!(refused(Path::new("/dev/null")).contains("is a device"));
        assert!(refused(&regular).contains("is a regular file"));
        assert!(refused(Path::new("/proc/self/ns/pid")).contains("a namespace of another type"));
        assert!(refused(&dir).contains("a directory"));
        std::fs::remove_dir_all(&dir).unwrap();
        // Our own namespace file passes (no privilege needed to open it).
        assert!(open_nsfs(Path::new("/proc/self/ns/net")).is_ok());
    }
}
