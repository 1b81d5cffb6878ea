//! Who owns a clsact filter, in a form that outlives nothing: the proof
//! that a `macdrop_tc` filter is a leftover, not another live macdrop's.
//!
//! A cls_bpf filter is a netlink object: it stays when the macdrop that
//! added it is SIGKILLed, and the next start removes it. Which ones are
//! leftovers? Each macdrop binds an abstract unix socket named
//! `macdrop_tc/TOKEN` (TOKEN: 64 random bits) in every network namespace
//! where it adds filters, and names its filters `macdrop_tc/TOKEN`
//! (TCA_BPF_NAME, which `tc filter show` prints). The kernel releases the
//! socket, and with it the name, when the process ends in any way,
//! SIGKILL included. A filter is a leftover exactly when its name can be
//! bound again: binding is the kernel's atomic "does anyone hold this".
//!
//! Why this proof and not another:
//! - Abstract unix names are scoped by network namespace, the scope of the
//!   filters themselves, and by nothing else: a macdrop in another PID or
//!   mount namespace (a container watching the host's namespace) sees the
//!   same answer. Process ids (even with their start time) and the
//!   /proc/PID/fd holders of the filter's program are invisible across PID
//!   namespaces, which made a containerised macdrop remove a host
//!   macdrop's live filter.
//! - Nothing is pinned or written to a filesystem, so nothing else can
//!   outlive the process, and it works without bpffs or a writable /run.
//! - Kernel-independent: abstract unix sockets exist on every kernel
//!   macdrop supports; TCX links (Linux >= 6.6) need none of this, they
//!   are file descriptors and die with their process.
//!
//! A process in the same namespace may bind a leftover's name to keep it
//! (the filter passes every frame, so that costs nothing), but nobody can
//! make a live owner's name bindable. Filters named plain `macdrop_tc` (a
//! macdrop from before owners were recorded) carry no proof and are left
//! alone, with a note saying how to remove one.

use std::{
    collections::HashMap,
    io,
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
    sync::{Arc, Mutex, Weak},
};

use monitor_common::names;

/// What a filter's name says about its owner.
#[derive(Debug, PartialEq, Eq)]
pub enum Recorded<'a> {
    /// Not a macdrop filter.
    NotOurs,
    /// `macdrop_tc` without a token: no proof either way.
    NoOwner,
    /// `macdrop_tc/TOKEN`.
    Owner(&'a str),
}

/// Reads a filter's name (TCA_BPF_NAME).
pub fn recorded(filter_name: Option<&str>) -> Recorded<'_> {
    let Some(name) = filter_name else {
        return Recorded::NotOurs;
    };
    match name.strip_prefix(names::TC_PROGRAM) {
        Some("") => Recorded::NoOwner,
        Some(rest) => match rest.strip_prefix('/') {
            Some(token) if valid_token(token) => Recorded::Owner(token),
            _ => Recorded::NotOurs,
        },
        None => Recorded::NotOurs,
    }
}

fn valid_token(token: &str) -> bool {
    token.len() == 16 && token.bytes().all(|b| b.is_ascii_hexdigit())
}

/// What a recorded owner's name says now.
pub enum Liveness {
    /// Someone holds it: the filter is in use.
    Held,
    /// Nobody did: the filter is a leftover. The name is held by this
    /// value until it drops, so no new owner can appear meanwhile (a new
    /// owner draws a fresh token anyway).
    Orphaned(#[allow(dead_code)] OwnedFd),
}

/// Checks `token` in the calling thread's network namespace.
pub fn liveness(token: &str) -> io::Result<Liveness> {
    match bind_name(token) {
        Ok(fd) => Ok(Liveness::Orphaned(fd)),
        Err(e) if e.raw_os_error() == Some(libc::EADDRINUSE) => Ok(Liveness::Held),
        Err(e) => Err(e),
    }
}

/// This process's proof of life in one network namespace; its filters
/// there are named `filter_name()`. Shared by every filter of the process
/// in that namespace (one socket per namespace, not per interface), and
/// released with the last of them.
pub struct Owner {
    token: String,
    _name: OwnedFd,
}

impl Owner {
    /// The owner for the calling thread's network namespace, bound on
    /// first use.
    pub fn here() -> io::Result<Arc<Owner>> {
        static OWNERS: Mutex<Option<HashMap<u64, Weak<Owner>>>> = Mutex::new(None);
        let netns = current_netns()?;
        let mut owners = OWNERS.lock().unwrap_or_else(|e| e.into_inner());
        let owners = owners.get_or_insert_with(HashMap::new);
        owners.retain(|_, w| w.strong_count() > 0);
        if let Some(owner) = owners.get(&netns).and_then(Weak::upgrade) {
            return Ok(owner);
        }
        let owner = Arc::new(Self::bind()?);
        owners.insert(netns, Arc::downgrade(&owner));
        Ok(owner)
    }

    fn bind() -> io::Result<Self> {
        // A collision of 64 random bits with a live owner is EADDRINUSE:
        // draw again rather than share another process's name.
        for _ in 0..4 {
            let token = random_token()?;
            match bind_name(&token) {
                Ok(fd) => return Ok(Self { token, _name: fd }),
                Err(e) if e.raw_os_error() == Some(libc::EADDRINUSE) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(io::Error::from_raw_os_error(libc::EADDRINUSE))
    }

    /// The name this owner's filters carry.
    pub fn filter_name(&self) -> String {
        format!("{}/{}", names::TC_PROGRAM, self.token)
    }
}

/// A unix stream socket bound to the abstract name `macdrop_tc/TOKEN` in
/// the calling thread's network namespace (never listening: nothing can
/// connect or queue anything to it).
fn bind_name(token: &str) -> io::Result<OwnedFd> {
    // SAFETY: plain syscall; the fd is owned right below.
    let fd = unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor nobody else owns.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: sockaddr_un is plain data; all zeroes is a valid value.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    let name = format!("{}/{token}", names::TC_PROGRAM);
    // sun_path[0] stays NUL: the abstract namespace.
    for (dst, src) in addr.sun_path[1..].iter_mut().zip(name.bytes()) {
        *dst = src as libc::c_char;
    }
    let len = std::mem::size_of::<libc::sa_family_t>() + 1 + name.len();
    // SAFETY: `addr` is a valid sockaddr_un of at least `len` bytes.
    let rc = unsafe {
        libc::bind(
            sock.as_raw_fd(),
            (&raw const addr).cast::<libc::sockaddr>(),
            len as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(sock)
}

fn random_token() -> io::Result<String> {
    let mut bytes = [0u8; 8];
    // SAFETY: getrandom writes at most `bytes.len()` bytes into `bytes`.
    let n = unsafe { libc::getrandom(bytes.as_mut_ptr().cast(), bytes.len(), 0) };
    if n != bytes.len() as isize {
        return Err(io::Error::last_os_error());
    }
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// The calling thread's network namespace (its inode).
fn current_netns() -> io::Result<u64> {
    use std::os::unix::fs::MetadataExt as _;
    Ok(std::fs::metadata("/proc/thread-self/ns/net")?.ino())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_say_whose_filter_it_is() {
        assert_eq!(recorded(Some("macdrop_tc")), Recorded::NoOwner);
        assert_eq!(
            recorded(Some("macdrop_tc/0123456789abcdef")),
            Recorded::Owner("0123456789abcdef")
        );
        for other in [
            None,
            Some("cilium"),
            Some("macdrop_tcx"),
            Some("macdrop_tc/"),
            Some("macdrop_tc/short"),
            Some("macdrop_tc/0123456789abcdeg"),
            Some("macdrop_tc/0123456789abcdef0"),
        ] {
            assert_eq!(recorded(other), Recorded::NotOurs, "{other:?}");
        }
    }

    /// The proof works in any namespace without privileges: a live owner's
    /// filters are held, and orphaned the moment it goes.
    #[test]
    fn an_owner_holds_its_name_until_it_goes() {
        let owner = Owner::here().unwrap();
        let name = owner.filter_name();
        let Recorded::Owner(token) = recorded(Some(&name)) else {
            panic!("{name} does not parse back");
        };
        let token = token.to_owned();
        assert!(matches!(liveness(&token).unwrap(), Liveness::Held));
        // Every filter of the process in this namespace shares the owner.
        assert!(Arc::ptr_eq(&owner, &Owner::here().unwrap()));
        drop(owner);
        let orphaned = liveness(&token).unwrap();
        assert!(matches!(orphaned, Liveness::Orphaned(_)));
        // While the check holds the name, it reads as held.
        assert!(matches!(liveness(&token).unwrap(), Liveness::Held));
        drop(orphaned);
        assert!(matches!(liveness(&token).unwrap(), Liveness::Orphaned(_)));
    }
}
