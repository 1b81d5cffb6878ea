//! The tc ingress hook: attaching `macdrop_tc` to one interface, detaching
//! it, and removing what a killed macdrop left behind.
//!
//! Two ways in, one program:
//! - **TCX** (Linux >= 6.6): a bpf_link appended after the programs already
//!   there (`tcx`). It is a file descriptor, so it goes away with the
//!   process, even after SIGKILL.
//! - **clsact** (older kernels, or forced for tests): a clsact qdisc (added
//!   only if the device has none) and a direct-action cls_bpf filter named
//!   `macdrop_tc` at a fixed priority and handle. Both are netlink objects:
//!   they outlive the process, so a SIGKILLed macdrop leaves them behind and
//!   the next start removes them (`cleanup_leftovers`), those only: the
//!   filter's name records its owner (`owner`), whose absence is proved
//!   before anything is removed.
//!
//! The program returns TC_ACT_UNSPEC (TCX_NEXT) for every frame, so it never
//! decides a verdict: the programs and filters after it run as if it were
//! not there. Which of the two paths to use is `kernel::attach`'s choice;
//! `TcMode` lets tests force clsact on a kernel that has TCX.

/// The rtnetlink requests behind the clsact path; public so the
/// privileged tests (`tests/tests/tc_attach.rs`) can read an interface's
/// qdisc and filters back.
pub mod owner;
pub mod rtnl;
mod tcx;

use std::{ffi::CStr, sync::Arc};

use anyhow::Context as _;
use aya::{Ebpf, programs::SchedClassifier};
use monitor_common::names;

use self::{
    owner::{Liveness, Owner, Recorded},
    rtnl::{Direction, NewBpfFilter, RouteSocket, errno_of},
    tcx::TcxLink,
};

/// A generic XDP link whose `detach` takes the program off the hook at
/// once (see `tcx`); the hand-off's first hook.
pub type XdpGenericLink = TcxLink;

/// Attaches the loaded XDP program `prog` to `ifindex` of the calling
/// thread's namespace in generic (skb) mode.
pub fn attach_xdp_generic(
    prog: std::os::fd::BorrowedFd<'_>,
    ifindex: u32,
) -> std::io::Result<XdpGenericLink> {
    TcxLink::attach_xdp_generic(prog, ifindex)
}

/// Priority of macdrop's cls_bpf filter. Lower numbers run first. Filters
/// that tools add with tc's defaults get 49152, or one below the lowest
/// priority present (65519 next to macdrop's, measured), so other tools'
/// filters run before macdrop's, as other tools' TCX programs do (macdrop
/// appends). A unique priority also keeps macdrop's filter out of other
/// tools' classifier instances.
pub const CLSACT_PRIO: u16 = 0xfff0;
/// Handle of macdrop's filter on a clsact qdisc that was there before.
pub const HANDLE_ON_EXISTING_QDISC: u32 = 0x6d64_7400;
/// Handle of macdrop's filter on a clsact qdisc macdrop added. The handle is
/// the only record that survives a SIGKILL of who added the qdisc, so
/// `cleanup_leftovers` removes a qdisc only under a filter with this handle.
pub const HANDLE_ON_OWN_QDISC: u32 = 0x6d64_7401;

/// How to reach tc ingress.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TcMode {
    /// A TCX link (Linux >= 6.6).
    Tcx,
    /// A clsact qdisc and a cls_bpf filter (any kernel with BPF).
    Clsact,
}

impl TcMode {
    /// TCX where the kernel has it, clsact before.
    pub fn for_running_kernel() -> Self {
        if crate::kernel_version::running() >= (6, 6) {
            TcMode::Tcx
        } else {
            TcMode::Clsact
        }
    }
}

/// `macdrop_tc` (or the egress counter, `attach_egress`) attached to one
/// interface. Dropping it detaches (ignoring
/// errors); `detach` reports them.
pub struct TcAttachment {
    ifindex: u32,
    link: Option<Link>,
}

enum Link {
    Tcx(TcxLink),
    Clsact(ClsactFilter),
}

/// What is needed to remove exactly our filter, from the namespace it was
/// added in, whichever thread does it.
struct ClsactFilter {
    sock: RouteSocket,
    dir: Direction,
    handle: u32,
    prog_id: u32,
    created_qdisc: bool,
    /// Held while the filter may be ours to remove: it proves to any other
    /// macdrop that the filter is not a leftover (`owner`).
    _owner: Arc<Owner>,
}

impl TcAttachment {
    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }

    /// The path this attachment took (None once detached).
    pub fn mode(&self) -> Option<TcMode> {
        self.link.as_ref().map(|l| match l {
            Link::Tcx(_) => TcMode::Tcx,
            Link::Clsact(_) => TcMode::Clsact,
        })
    }

    /// clsact only: whether macdrop added the qdisc (and so removes it on
    /// detach if nothing else uses it).
    pub fn created_qdisc(&self) -> bool {
        matches!(&self.link, Some(Link::Clsact(f)) if f.created_qdisc)
    }

    /// Detaches. TCX: closes the link. clsact: removes our filter if it is
    /// still there, then the qdisc if macdrop added it and no filter of
    /// anyone's is left on it. An interface that vanished took everything
    /// with it; that is not an error.
    pub fn detach(mut self) -> anyhow::Result<()> {
        self.release()
    }

    fn release(&mut self) -> anyhow::Result<()> {
        match self.link.take() {
            None => Ok(()),
            Some(Link::Tcx(link)) => link.detach().context("cannot detach macdrop's TCX link"),
            Some(Link::Clsact(mut f)) => f.remove(self.ifindex),
        }
    }
}

impl Drop for TcAttachment {
    fn drop(&mut self) {
        let _ = self.release();
    }
}

impl ClsactFilter {
    fn remove(&mut self, ifindex: u32) -> anyhow::Result<()> {
        // Found by program id, not just by position: after the device
        // vanished, its ifindex may name another device, whose filter at
        // these keys (another macdrop's) and whose qdisc must stay.
        let ours = self
            .sock
            .filters(ifindex, self.dir)
            .context("cannot list tc filters to detach macdrop's")?
            .into_iter()
            .find(|f| {
                f.prio == CLSACT_PRIO
                    && f.handle == self.handle
                    && f.bpf_prog_id == Some(self.prog_id)
            });
        let Some(f) = ours else {
            return Ok(());
        };
        match self
            .sock
            .del_bpf_filter(ifindex, self.dir, f.prio, f.protocol_be, f.handle)
        {
            Ok(()) => {}
            // Gone meanwhile, with its device or by someone's hand.
            Err(e) if matches!(errno_of(&e), Some(libc::ENOENT | libc::ENODEV)) => return Ok(()),
            Err(e) => return Err(e.context("cannot remove macdrop's tc filter")),
        }
        if self.created_qdisc {
            remove_qdisc_if_unused(&mut self.sock, ifindex)?;
        }
        Ok(())
    }
}

/// Removes the clsact qdisc if no filter is left on either of its hooks.
/// (A filter added by someone else between the check and the delete would
/// go with it; tc has no conditional delete.) Returns whether it removed it.
fn remove_qdisc_if_unused(sock: &mut RouteSocket, ifindex: u32) -> anyhow::Result<bool> {
    if !sock.has_clsact(ifindex)? {
        return Ok(false);
    }
    for dir in [Direction::Ingress, Direction::Egress] {
        // Any entry, even a bare classifier instance, means it is in use.
        if !sock.filters(ifindex, dir)?.is_empty() {
            return Ok(false);
        }
    }
    match sock.del_clsact(ifindex) {
        Ok(()) => Ok(true),
        Err(e)
            if matches!(
                errno_of(&e),
                Some(libc::ENOENT | libc::ENODEV | libc::EINVAL)
            ) =>
        {
            Ok(false)
        }
        Err(e) => Err(e.context("cannot remove the clsact qdisc macdrop added")),
    }
}

/// Loads `macdrop_tc` into the kernel (the verifier runs here).
pub fn load_tc_program(ebpf: &mut Ebpf) -> anyhow::Result<()> {
    program(ebpf)?
        .load()
        .with_context(|| format!("cannot load {}", names::TC_PROGRAM))
}

/// Attaches to `ifindex` of the calling thread's network namespace.
pub fn attach(ebpf: &mut Ebpf, ifindex: u32, mode: TcMode) -> anyhow::Result<TcAttachment> {
    match mode {
        TcMode::Tcx => attach_tcx(ebpf, ifindex),
        TcMode::Clsact => attach_clsact(ebpf, ifindex),
    }
}

/// Attaches through TCX, after every program already on the interface's
/// ingress (none is displaced or reordered). Errors keep the kernel's errno
/// in their chain (EINVAL: no TCX in this kernel; ENODEV: no such device).
pub fn attach_tcx(ebpf: &mut Ebpf, ifindex: u32) -> anyhow::Result<TcAttachment> {
    attach_tcx_fd(program_fd(ebpf)?, ifindex)
}

/// `attach_tcx` with the loaded program's fd (`program_fd`), which any
/// thread can use while the object stays with its owner: the benchmark's
/// kernel floor (`macdrop-bench tcx-floor`) attaches from a pool of threads
/// with it, to show that they do not overlap (see `kernel::attach`).
pub fn attach_tcx_fd(
    prog: std::os::fd::BorrowedFd<'_>,
    ifindex: u32,
) -> anyhow::Result<TcAttachment> {
    let link = TcxLink::attach(prog, ifindex)
        .map_err(anyhow::Error::new)
        .with_context(|| {
            format!(
                "cannot attach {} to ifindex {ifindex} through TCX",
                names::TC_PROGRAM
            )
        })?;
    Ok(TcAttachment {
        ifindex,
        link: Some(Link::Tcx(link)),
    })
}

/// Attaches through a clsact qdisc (added if the interface has none) and a
/// direct-action cls_bpf filter `macdrop_tc` at (`CLSACT_PRIO`, handle),
/// never replacing a filter that is there (EEXIST).
pub fn attach_clsact(ebpf: &mut Ebpf, ifindex: u32) -> anyhow::Result<TcAttachment> {
    let prog_id = program(ebpf)?
        .info()
        .with_context(|| format!("{} is not loaded", names::TC_PROGRAM))?
        .id();
    let prog = program_fd(ebpf)?;
    attach_clsact_fd(prog, prog_id, ifindex, Direction::Ingress)
        .with_context(|| format!("cannot add {} as a tc filter", names::TC_PROGRAM))
}

/// Attaches the loaded classifier `prog` (kernel id `prog_id`) to the
/// egress of `ifindex`: the egress source-MAC counter
/// (`kernel::egress`), through TCX or a clsact filter like `macdrop_tc`'s
/// (same priority, handles and owner name, on the egress hook), so
/// `cleanup_leftovers` finds it after a SIGKILL.
pub fn attach_egress(
    prog: std::os::fd::BorrowedFd<'_>,
    prog_id: u32,
    ifindex: u32,
    mode: TcMode,
) -> anyhow::Result<TcAttachment> {
    match mode {
        TcMode::Tcx => Ok(TcAttachment {
            ifindex,
            link: Some(Link::Tcx(
                TcxLink::attach_egress(prog, ifindex).map_err(anyhow::Error::new)?,
            )),
        }),
        TcMode::Clsact => attach_clsact_fd(prog, prog_id, ifindex, Direction::Egress),
    }
}

fn attach_clsact_fd(
    prog: std::os::fd::BorrowedFd<'_>,
    prog_id: u32,
    ifindex: u32,
    dir: Direction,
) -> anyhow::Result<TcAttachment> {
    use std::os::fd::AsRawFd as _;
    let owner = Owner::here()
        .context("cannot bind the owner name of macdrop's tc filters in this namespace")?;
    let mut sock = RouteSocket::open()?;
    let created_qdisc = sock
        .add_clsact(ifindex)
        .with_context(|| format!("cannot add a clsact qdisc to ifindex {ifindex}"))?;
    let handle = if created_qdisc {
        HANDLE_ON_OWN_QDISC
    } else {
        HANDLE_ON_EXISTING_QDISC
    };
    let added = sock.add_bpf_filter(&NewBpfFilter {
        ifindex,
        dir,
        prio: CLSACT_PRIO,
        handle,
        prog_fd: prog.as_raw_fd(),
        name: &owner.filter_name(),
    });
    if let Err(e) = added {
        if created_qdisc {
            let _ = remove_qdisc_if_unused(&mut sock, ifindex);
        }
        return Err(e.context(format!("on the {} of ifindex {ifindex}", dir.as_str())));
    }
    Ok(TcAttachment {
        ifindex,
        link: Some(Link::Clsact(ClsactFilter {
            sock,
            dir,
            handle,
            prog_id,
            created_qdisc,
            _owner: owner,
        })),
    })
}

/// Removes what a macdrop that died without detaching (SIGKILL, crash,
/// power-cut of the process) left on the given interfaces of the calling
/// thread's namespace: TCX and XDP links die with their process, but a
/// cls_bpf filter and a clsact qdisc are netlink objects and stay.
///
/// A leftover is a cls_bpf filter on ingress named `macdrop_tc/TOKEN` whose
/// owner name nobody holds any more (`owner`: proved by binding it, which
/// works across PID namespaces). A filter named plain `macdrop_tc` (from a
/// macdrop that recorded no owner) is never removed: there is no proof it
/// is orphaned; a note says how to remove it. The clsact qdisc goes too
/// when a removed filter's handle says macdrop added it and no filter at
/// all remains on it. Returns one line per removed or spared object.
pub fn cleanup_leftovers(ifindexes: &[u32]) -> anyhow::Result<Vec<String>> {
    let mut sock = RouteSocket::open()?;
    let mut lines = Vec::new();
    for &ifindex in ifindexes {
        let mut our_qdisc = false;
        for dir in [Direction::Ingress, Direction::Egress] {
            let filters = sock
                .filters(ifindex, dir)
                .with_context(|| format!("cannot list tc filters of ifindex {ifindex}"))?;
            for f in filters.iter().filter(|f| f.kind == "bpf") {
                let name = || ifname(ifindex).unwrap_or_else(|_| format!("ifindex {ifindex}"));
                let _claim = match owner::recorded(f.bpf_name.as_deref()) {
                    Recorded::NotOurs => continue,
                    Recorded::NoOwner => {
                        lines.push(format!(
                            "a macdrop_tc filter without an owner on {} (from an older macdrop) is \
                         left in place; if no macdrop runs, remove it with `tc filter del dev {} \
                         {} pref {}`",
                            name(),
                            name(),
                            dir.as_str(),
                            f.prio
                        ));
                        continue;
                    }
                    Recorded::Owner(token) => match owner::liveness(token) {
                        Ok(Liveness::Held) => continue,
                        Ok(Liveness::Orphaned(claim)) => claim,
                        Err(e) => {
                            return Err(anyhow::Error::new(e)
                                .context("cannot check the owner of a macdrop tc filter"));
                        }
                    },
                };
                match sock.del_bpf_filter(ifindex, dir, f.prio, f.protocol_be, f.handle) {
                    Ok(()) => {
                        lines.push(format!("removed leftover macdrop tc filter on {}", name()))
                    }
                    Err(e) if matches!(errno_of(&e), Some(libc::ENOENT)) => continue,
                    Err(e) => {
                        return Err(
                            e.context(format!("cannot remove a leftover tc filter on {}", name()))
                        );
                    }
                }
                our_qdisc |= f.handle == HANDLE_ON_OWN_QDISC;
            }
        }
        if our_qdisc && remove_qdisc_if_unused(&mut sock, ifindex)? {
            lines.push(format!(
                "removed leftover clsact qdisc (added by macdrop) on {}",
                ifname(ifindex).unwrap_or_else(|_| format!("ifindex {ifindex}"))
            ));
        }
    }
    Ok(lines)
}

fn program(ebpf: &mut Ebpf) -> anyhow::Result<&mut SchedClassifier> {
    ebpf.program_mut(names::TC_PROGRAM)
        .with_context(|| format!("program {} missing from the eBPF object", names::TC_PROGRAM))?
        .try_into()
        .with_context(|| format!("{} is not a tc classifier", names::TC_PROGRAM))
}

/// The loaded program's fd, borrowed from the object that owns it.
pub fn program_fd(ebpf: &mut Ebpf) -> anyhow::Result<std::os::fd::BorrowedFd<'_>> {
    use std::os::fd::AsFd as _;
    Ok(program(ebpf)?
        .fd()
        .with_context(|| format!("{} is not loaded", names::TC_PROGRAM))?
        .as_fd())
}

/// The interface's name in the calling thread's namespace.
fn ifname(ifindex: u32) -> anyhow::Result<String> {
    let mut buf = [0 as libc::c_char; libc::IF_NAMESIZE];
    // SAFETY: `buf` has the IF_NAMESIZE bytes if_indextoname may write.
    let p = unsafe { libc::if_indextoname(ifindex, buf.as_mut_ptr()) };
    if p.is_null() {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("no interface with ifindex {ifindex}"));
    }
    // SAFETY: on success the buffer holds a NUL-terminated name.
    Ok(unsafe { CStr::from_ptr(buf.as_ptr()) }
        .to_string_lossy()
        .into_owned())
}
