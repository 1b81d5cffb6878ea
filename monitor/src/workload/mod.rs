//! Who owns the other end of a watched veth: the container or process
//! living in the peer's network namespace, so a port reads "web1" rather
//! than "veth3f2a1b".
//!
//! The way there, for each watched veth whose peer is in another namespace
//! (`netlink::Link::peer_netnsid`):
//!
//! 1. `process`: every process's network namespace, by the inode of
//!    /proc/PID/ns/net; per namespace the lowest PID, its command, and a
//!    container id from its cgroup. Always available.
//! 2. The peer's namespace: the link names it only by an id in the
//!    watching namespace's numbering (IFLA_LINK_NETNSID), and the kernel
//!    translates only the other way (RTM_GETNSID: "what id does the
//!    namespace of PID have here", `netlink::NsidLookup`). So one process
//!    of each namespace found in step 1 is asked about until every id
//!    wanted is named; the namespace is then known by inode, the key all
//!    of macdrop uses.
//! 3. The container runtimes, each by the inode of its containers' (or
//!    pods') namespaces, name them better: `docker` (the Engine's API),
//!    `podman` (the libpod API of `podman system service`) and `cri`
//!    (containerd's or CRI-O's CRI, gRPC: Kubernetes pods). A runtime that
//!    is not there is skipped quietly; one that stops answering leaves
//!    step 1's view (one line on stderr). Every call is read-only and
//!    bounded (500 ms).
//!
//! A tap (or tun) port has no peer namespace: its owner is the process
//! holding the device open (a VM's qemu), found by the interface name the
//! kernel writes in that open file's /proc/PID/fdinfo (`process::tap_holders`;
//! names are per namespace, so among holders in several namespaces the one
//! in the watched namespace wins).
//!
//! All of it runs on a thread of its own (`resolver`), never on the report
//! path: counting goes on whatever /proc or the runtimes do. The Docker
//! Engine's container events (`events`, another thread) make it look again
//! as soon as a container starts or stops.

mod cri;
mod docker;
mod events;
mod podman;
mod process;
mod resolver;
mod unix_http;

use std::{collections::BTreeMap, os::unix::fs::MetadataExt as _};

use crate::netlink::NetState;

pub use resolver::{Resolver, Sockets, resolve_once};

/// What names the owner of a watched port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Peer {
    /// A veth whose other end lives in another namespace: that namespace's
    /// id here (`IFLA_LINK_NETNSID`); its owner is whoever lives there.
    Netns(i32),
    /// A tap or tun device: its name; its owner is the process holding the
    /// device open (a VM's qemu, a VPN daemon), found by the name the
    /// kernel writes in that file's /proc fdinfo (`iff:`).
    Tap(String),
}

impl Peer {
    pub fn nsid(&self) -> Option<i32> {
        match self {
            Peer::Netns(id) => Some(*id),
            Peer::Tap(_) => None,
        }
    }
}

/// The ports among `ifindexes` whose owner can be named: veths whose peer
/// lives in another namespace, and taps (kind `tun`). Macvlan and ipvlan
/// children live in the container's namespace, not beside their parent:
/// macdrop sees one only where it watches that namespace, and has nothing
/// to name there.
pub fn ports_to_name<'a>(
    state: &NetState,
    ifindexes: impl Iterator<Item = &'a u32>,
) -> BTreeMap<u32, Peer> {
    ifindexes
        .filter_map(|&ifindex| {
            let link = state.link(ifindex)?;
            let peer = match link.kind.as_deref() {
                Some("veth") => Peer::Netns(link.peer_netnsid?),
                Some("tun") => Peer::Tap(link.name.clone()),
                _ => return None,
            };
            Some((ifindex, peer))
        })
        .collect()
}

/// What owns a namespace.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    Docker,
    Podman,
    Kubernetes,
    /// Only a process is known (no container engine answered for it).
    Process,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Docker => "docker",
            Kind::Podman => "podman",
            Kind::Kubernetes => "kubernetes",
            Kind::Process => "process",
        }
    }
}

/// The owner of a port's peer namespace. Fields that do not apply are
/// None. Strings from other processes (commands, container names, label
/// values) are escaped when they are made (`clean`), so no renderer can
/// forget to: a container named "\x1b[2J" cannot clear a terminal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Workload {
    pub kind: Kind,
    /// The container's id (full); for `Process`, the container id its
    /// cgroup names, if any.
    pub id: Option<String>,
    /// The container's name; for `Process`, the command (/proc/PID/comm).
    pub name: Option<String>,
    /// Kubernetes namespace (from the CRI).
    pub namespace: Option<String>,
    /// Kubernetes pod: its UID, from the CRI or as the cgroup path names it.
    pub pod: Option<String>,
    /// The lowest PID in the namespace (a container's main process when
    /// the Engine said so).
    pub pid: Option<u32>,
    /// Docker Compose project and service labels, where set.
    pub compose_project: Option<String>,
    pub compose_service: Option<String>,
}

impl Workload {
    /// The table's cell: the name, else `kind:pid`.
    pub fn label(&self) -> String {
        match (&self.name, self.pid) {
            (Some(name), _) => name.clone(),
            (None, Some(pid)) => format!("{}:{pid}", self.kind.as_str()),
            (None, None) => self.kind.as_str().to_owned(),
        }
    }

    /// For sentences: "web1 (docker, 3f2a1b9c0d4e…)", "sleep (process, pid 42)".
    pub fn describe(&self) -> String {
        let what = match (&self.id, self.pid) {
            (Some(id), _) => format!("{}, {}", self.kind.as_str(), short_id(id)),
            (None, Some(pid)) => format!("{}, pid {pid}", self.kind.as_str()),
            (None, None) => self.kind.as_str().to_owned(),
        };
        format!("{} ({what})", self.label())
    }
}

/// The first 12 characters of a container id and an ellipsis, as `docker
/// ps` shortens them.
fn short_id(id: &str) -> String {
    match id.char_indices().nth(12) {
        Some((at, _)) => format!("{}…", &id[..at]),
        None => id.to_owned(),
    }
}

/// The inode of process `pid`'s network namespace (/proc/PID/ns/net).
fn pid_namespace(pid: u32) -> Option<u64> {
    std::fs::metadata(format!("/proc/{pid}/ns/net"))
        .ok()
        .map(|m| m.ino())
}

/// The inode of a namespace file (a bind mount of nsfs, as Docker's
/// sandbox keys and the CRI's pod namespaces are); None for anything else
/// (a sandbox path not on nsfs is a plain file, e.g. the runtime's bind
/// mount lives in another mount namespace, whose inode says nothing).
fn namespace_file(path: &str) -> Option<u64> {
    let c_path = std::ffi::CString::new(path).ok()?;
    // SAFETY: statfs(2) writes into the zeroed struct we own; the path is
    // a valid NUL-terminated string.
    let is_nsfs = unsafe {
        let mut fs: libc::statfs = std::mem::zeroed();
        let rc = libc::statfs(c_path.as_ptr(), &mut fs);
        // f_type's type differs between glibc and musl (see netns).
        #[allow(clippy::useless_conversion)]
        let f_type = u64::try_from(fs.f_type).ok();
        rc == 0 && f_type == Some(crate::netns::NSFS_MAGIC)
    };
    if !is_nsfs {
        return None;
    }
    std::fs::metadata(path).ok().map(|m| m.ino())
}

/// Longest string kept from another process.
const MAX_CHARS: usize = 128;

/// A string from another process (command, container name, label) made
/// safe for a terminal and bounded: control characters escaped (`\n`,
/// `\u{1b}`), at most `MAX_CHARS` characters.
pub fn clean(text: &str) -> String {
    let bounded: String = text
        .trim_end_matches('\n')
        .chars()
        .take(MAX_CHARS)
        .collect();
    crate::untrusted::escape_controls(&bounded)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn process(name: Option<&str>, pid: u32) -> Workload {
        Workload {
            kind: Kind::Process,
            id: None,
            name: name.map(Into::into),
            namespace: None,
            pod: None,
            pid: Some(pid),
            compose_project: None,
            compose_service: None,
        }
    }

    #[test]
    fn labels_prefer_the_name() {
        assert_eq!(process(Some("sleep"), 42).label(), "sleep");
        assert_eq!(process(None, 42).label(), "process:42");
        assert_eq!(
            process(Some("sleep"), 42).describe(),
            "sleep (process, pid 42)"
        );
        let web = Workload {
            kind: Kind::Docker,
            id: Some("3f2a1b9c0d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8".into()),
            name: Some("web1".into()),
            ..process(None, 7)
        };
        assert_eq!(web.describe(), "web1 (docker, 3f2a1b9c0d4e…)");
    }

    #[test]
    fn a_sandbox_path_that_is_a_plain_file_names_nothing() {
        assert_eq!(namespace_file("/proc/self/status"), None);
        assert_eq!(
            namespace_file("/proc/self/ns/net"),
            pid_namespace(std::process::id())
        );
    }

    #[test]
    fn strings_from_elsewhere_cannot_drive_a_terminal() {
        assert_eq!(clean("sleep\n"), "sleep");
        assert_eq!(clean("a\x1b[2Jb\tc"), "a\\u{1b}[2Jb\\tc");
        assert_eq!(clean(&"x".repeat(500)).len(), MAX_CHARS);
    }
}
