//! A TCX link (or, for the hand-off, a generic XDP link) made and unmade
//! with bpf(2) directly.
//!
//! aya 0.14 can create the link (by interface name only) but can only
//! close it to detach. Closing releases the link when the *last* reference
//! to its file goes, and transient references are common: a fork() in any
//! thread before its exec, a reader of /proc/PID/fdinfo (which macdrop's
//! own leftover cleanup is). Measured: 2 runs in 25 of the tests still saw
//! the program attached right after the close. BPF_LINK_DETACH takes the
//! program off the hook at once, whoever else holds the file; and
//! BPF_LINK_CREATE takes the ifindex itself, so no name is looked up.

use std::{
    io,
    os::fd::{AsRawFd as _, BorrowedFd, FromRawFd as _, OwnedFd},
};

/// `enum bpf_cmd` and `enum bpf_attach_type` values (uapi, stable).
const BPF_LINK_CREATE: libc::c_long = 28;
const BPF_LINK_DETACH: libc::c_long = 34;
const BPF_TCX_INGRESS: u32 = 46;
const BPF_TCX_EGRESS: u32 = 47;
const BPF_XDP: u32 = 37;
/// `XDP_FLAGS_SKB_MODE` (include/uapi/linux/if_link.h): generic XDP.
const XDP_FLAGS_SKB_MODE: u32 = 1 << 1;
/// `BPF_F_BEFORE` (include/uapi/linux/bpf.h): attach in front.
const BPF_F_BEFORE: u32 = 1 << 3;

/// A TCX ingress link, or a generic XDP link; dropping it detaches it.
#[derive(Debug)]
pub struct TcxLink {
    fd: Option<OwnedFd>,
}

impl TcxLink {
    /// Links `prog` to the TCX ingress of `ifindex` (in the calling
    /// thread's network namespace), before every program already there.
    ///
    /// First, because macdrop never decides a verdict (it returns
    /// TCX_NEXT) while a program that returns TCX_PASS ends the chain: after
    /// such a program macdrop would count nothing (measured: 0 of 50), in
    /// front of it macdrop counts everything and the other program still
    /// runs and decides exactly as before. Nothing is displaced either way.
    pub fn attach(prog: BorrowedFd<'_>, ifindex: u32) -> io::Result<Self> {
        // BPF_F_BEFORE with no relative program: in front of all.
        Self::create(prog, ifindex, BPF_TCX_INGRESS, BPF_F_BEFORE)
    }

    /// Links `prog` to the TCX egress of `ifindex`, before every program
    /// already there: the egress source-MAC counter
    /// (`kernel::egress`). First for the same reason as on ingress: a
    /// program returning TCX_PASS before it would hide the frames from it.
    pub fn attach_egress(prog: BorrowedFd<'_>, ifindex: u32) -> io::Result<Self> {
        Self::create(prog, ifindex, BPF_TCX_EGRESS, BPF_F_BEFORE)
    }

    /// Links the XDP program `prog` to `ifindex` (in the calling thread's
    /// namespace) in generic mode: the hand-off's first hook
    /// (`crate::session::handoff`). Made here rather than through aya for the same
    /// reason as TCX links: the hand-off must know that XDP stopped
    /// counting when `detach` returns (BPF_LINK_DETACH), which closing
    /// aya's link file does not promise.
    pub fn attach_xdp_generic(prog: BorrowedFd<'_>, ifindex: u32) -> io::Result<Self> {
        Self::create(prog, ifindex, BPF_XDP, XDP_FLAGS_SKB_MODE)
    }

    fn create(
        prog: BorrowedFd<'_>,
        ifindex: u32,
        attach_type: u32,
        flags: u32,
    ) -> io::Result<Self> {
        // union bpf_attr, link_create: prog_fd, target_ifindex,
        // attach_type, flags; then (TCX) tcx.relative_fd and
        // tcx.expected_revision, left zero.
        let mut attr = [0u8; 32];
        attr[0..4].copy_from_slice(&prog.as_raw_fd().to_ne_bytes());
        attr[4..8].copy_from_slice(&ifindex.to_ne_bytes());
        attr[8..12].copy_from_slice(&attach_type.to_ne_bytes());
        attr[12..16].copy_from_slice(&flags.to_ne_bytes());
        let fd = bpf(BPF_LINK_CREATE, &attr)?;
        Ok(Self {
            // SAFETY: a new link fd the kernel just handed us, owned by
            // nobody else.
            fd: Some(unsafe { OwnedFd::from_raw_fd(fd) }),
        })
    }

    /// Takes the program off the hook now, then closes the link. A link
    /// whose device vanished was already detached by the kernel.
    pub fn detach(mut self) -> io::Result<()> {
        self.release()
    }

    fn release(&mut self) -> io::Result<()> {
        let Some(fd) = self.fd.take() else {
            return Ok(());
        };
        // union bpf_attr, link_detach: link_fd.
        let attr = fd.as_raw_fd().to_ne_bytes();
        bpf(BPF_LINK_DETACH, &attr).map(drop)
    }
}

impl Drop for TcxLink {
    fn drop(&mut self) {
        let _ = self.release();
    }
}

fn bpf(cmd: libc::c_long, attr: &[u8]) -> io::Result<i32> {
    // SAFETY: `attr` is a valid, initialised prefix of union bpf_attr of
    // the given size (the kernel zero-extends it), holding no pointers.
    let rc = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr.as_ptr(), attr.len()) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(rc as i32)
}
