//! Attaching the classifier to interfaces. The choice of hook for each kind
//! of device lives in `ladder` and nowhere else.
//!
//! Why `auto` prefers tc on veth and bridges (the end-to-end part of `cargo
//! xtask bench` measures each hook; docs/performance.md): native XDP on
//! veth makes the driver copy every frame for headroom and turns TSO off on
//! the peer, generic XDP linearises frames, while TCX adds the least. tc
//! sees the same frames at the same point (before the bridge's rx_handler
//! on a port, after it on the bridge), changes nothing, and coexists with
//! other tools' programs. Native XDP stays the choice on NICs whose driver
//! has it.
//!
//! Why attaching is serial, and what it costs: every TCX attach and detach
//! takes RTNL (one lock for the whole host, every namespace) and, holding
//! it, waits for an RCU grace period (`tcx_entry_sync()` is
//! `synchronize_rcu()`), about 9 ms on these machines. Measured with
//! `macdrop-bench tcx-floor` (raw BPF_LINK_CREATE / BPF_LINK_DETACH on
//! 1,000 veths, nothing else): 8.6-9.0 s to create them serially, the same
//! from 2, 4 or 16 threads each in the namespace, and detaching from 4
//! threads was slower (10.8 s against 8.6-9.3 s serially). Threads cannot
//! overlap waits that happen under one lock, so macdrop attaches in order
//! and its own share of the start (dumps, configuration, counters) is about
//! 0.15 s of the 9. The 2 s target for 1,000 ports is below the kernel's
//! floor for TCX; `cargo xtask bench` reports both, side by side. Hence
//! the two-step start (`crate::session::handoff`): a big initial batch is watched
//! through generic XDP first (no grace period per attach) and moved to
//! TCX in the background.

use std::{collections::BTreeMap, fmt};

use anyhow::Context as _;
use aya::{
    Ebpf,
    programs::{ProgramError, Xdp, XdpMode, xdp::XdpLinkId},
};
use clap::ValueEnum;
use monitor_common::names;

use super::tc::TcMode;
use crate::{
    error::Failure,
    topology::{Role, Watched},
};

/// `--attach`: which hook to use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum AttachMode {
    /// The cheapest hook for each device: tc on veth and bridges, native
    /// XDP on NICs that have it, tc elsewhere.
    #[default]
    Auto,
    /// XDP: driver mode where the driver has it, generic mode otherwise.
    Xdp,
    /// Generic (skb) XDP only.
    XdpGeneric,
    /// tc ingress: TCX on Linux >= 6.6, a clsact qdisc before.
    Tc,
}

/// Where and how the classifier runs on one interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hook {
    /// XDP in the driver, before an skb exists (veth, NICs with native XDP).
    XdpDriver,
    /// Generic XDP in the core receive path (any device).
    XdpGeneric,
    /// tc ingress through a TCX link (Linux >= 6.6).
    Tcx,
    /// tc ingress through a clsact qdisc and a cls_bpf filter.
    TcClsact,
}

impl Hook {
    pub fn as_str(self) -> &'static str {
        match self {
            Hook::XdpDriver => "xdp-driver",
            Hook::XdpGeneric => "xdp-generic",
            Hook::Tcx => "tcx",
            Hook::TcClsact => "tc-clsact",
        }
    }

    fn is_xdp(self) -> bool {
        matches!(self, Hook::XdpDriver | Hook::XdpGeneric)
    }
}

impl fmt::Display for Hook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The tc hook this kernel offers.
pub fn tc_hook() -> Hook {
    match TcMode::for_running_kernel() {
        TcMode::Tcx => Hook::Tcx,
        TcMode::Clsact => Hook::TcClsact,
    }
}

/// Hooks to try for an interface, best first. tc is always the last resort
/// of the XDP modes: an interface whose XDP slot is taken by another tool
/// (or whose bridge already has XDP) is watched through tc instead.
pub fn ladder(mode: AttachMode, w: &Watched, kind: Option<&str>) -> Vec<Hook> {
    let tc = tc_hook();
    match mode {
        AttachMode::Auto => match (w.role, kind) {
            (Role::Bridge, _) | (_, Some("veth")) => vec![tc],
            // Physical NICs (no IFLA_INFO_KIND) may have native XDP.
            (_, None) => vec![Hook::XdpDriver, tc],
            _ => vec![tc],
        },
        AttachMode::Xdp if w.role == Role::Bridge => vec![Hook::XdpGeneric, tc],
        AttachMode::Xdp => vec![Hook::XdpDriver, Hook::XdpGeneric, tc],
        AttachMode::XdpGeneric => vec![Hook::XdpGeneric, tc],
        AttachMode::Tc => vec![tc],
    }
}

/// The result of one attach, and what to tell the user about it.
pub struct Attached {
    pub hook: Hook,
    /// Set when the hook is not the first choice ("p1: XDP taken by another
    /// program, watching through tcx").
    pub note: Option<String>,
}

enum Link {
    Xdp(XdpLinkId),
    Tc(super::tc::TcAttachment),
    /// Generic XDP during the hand-off (`crate::session::handoff`): detached at once
    /// when TCX takes over.
    XdpGeneric(super::tc::XdpGenericLink),
}

/// Owns the attachments; detaches them on `detach_all` or drop (XDP and
/// TCX links are file descriptors, so they also vanish if the process
/// dies; a clsact filter is cleaned up by the next start).
pub struct Attacher {
    mode: AttachMode,
    /// The XDP program that loaded: multi-buffer aware where the kernel
    /// supports it, the legacy twin otherwise.
    xdp_program: &'static str,
    tc_loaded: bool,
    links: BTreeMap<u32, (Link, Hook)>,
}

impl Attacher {
    /// Loads the programs the mode may need (the verifier runs here).
    pub fn new(ebpf: &mut Ebpf, mode: AttachMode) -> anyhow::Result<Self> {
        let xdp_program = load_xdp_program(ebpf)?;
        super::tc::load_tc_program(ebpf).map_err(|e| {
            Failure::environment(format!(
                "the kernel rejected macdrop's tc program ({e:#}); macdrop needs a kernel with \
                 BPF and tc classifier support (Linux >= 5.10)"
            ))
        })?;
        // Loaded, nothing attached yet: aya's copies of the two programs
        // are no longer needed (`loader::shed`).
        super::loader::shed(ebpf, xdp_program);
        super::loader::shed(ebpf, names::TC_PROGRAM);
        Ok(Self {
            mode,
            xdp_program,
            tc_loaded: true,
            links: BTreeMap::new(),
        })
    }

    /// Which XDP program is loaded (`macdrop_xdp` or `macdrop_xdp_legacy`).
    pub fn xdp_program_name(&self) -> &'static str {
        self.xdp_program
    }

    /// Attaches to one interface (`kind`: its IFLA_INFO_KIND), trying the
    /// hooks of its ladder in order. Must run inside the interface's
    /// network namespace.
    pub fn attach(
        &mut self,
        ebpf: &mut Ebpf,
        w: &Watched,
        kind: Option<&str>,
    ) -> anyhow::Result<Attached> {
        let ladder = ladder(self.mode, w, kind);
        let mut skipped: Vec<String> = Vec::new();
        for (i, &hook) in ladder.iter().enumerate() {
            let last = i + 1 == ladder.len();
            let result = if hook.is_xdp() {
                self.attach_xdp(ebpf, w.ifindex, hook).map(Link::Xdp)
            } else {
                debug_assert!(self.tc_loaded);
                let mode = if hook == Hook::Tcx {
                    TcMode::Tcx
                } else {
                    TcMode::Clsact
                };
                super::tc::attach(ebpf, w.ifindex, mode).map(Link::Tc)
            };
            match result {
                Ok(link) => {
                    self.links.insert(w.ifindex, (link, hook));
                    let note = (!skipped.is_empty()).then(|| {
                        format!(
                            "{}: {}; watching through {hook}",
                            w.name,
                            skipped.join("; ")
                        )
                    });
                    return Ok(Attached { hook, note });
                }
                Err(e) if last => return Err(explain(e, &w.name, hook)),
                Err(e) => skipped.push(why_skipped(&e, hook)),
            }
        }
        unreachable!("every ladder ends in a hook whose failure is returned")
    }

    fn attach_xdp(
        &mut self,
        ebpf: &mut Ebpf,
        ifindex: u32,
        hook: Hook,
    ) -> anyhow::Result<XdpLinkId> {
        let mode = match hook {
            Hook::XdpDriver => XdpMode::Driver,
            _ => XdpMode::Skb,
        };
        let prog = xdp(ebpf, self.xdp_program)?;
        Ok(prog.attach_to_if_index(ifindex, mode)?)
    }

    /// The first hook of the interface's ladder: the hook `attach` would
    /// normally end on.
    pub fn first_hook(&self, w: &Watched, kind: Option<&str>) -> Hook {
        ladder(self.mode, w, kind)[0]
    }

    /// The hand-off's first step on one interface: generic XDP, no ladder
    /// (the caller falls back to `attach` if it fails). Must run inside
    /// the interface's namespace.
    pub fn attach_xdp_generic(&mut self, ebpf: &mut Ebpf, ifindex: u32) -> anyhow::Result<()> {
        use std::os::fd::AsFd as _;
        let prog = xdp(ebpf, self.xdp_program)?;
        let fd = prog
            .fd()
            .with_context(|| format!("{} is not loaded", self.xdp_program))?;
        let link = super::tc::attach_xdp_generic(fd.as_fd(), ifindex)
            .map_err(anyhow::Error::new)
            .with_context(|| format!("cannot attach generic XDP to ifindex {ifindex}"))?;
        self.links
            .insert(ifindex, (Link::XdpGeneric(link), Hook::XdpGeneric));
        Ok(())
    }

    /// A duplicate of the tc program's fd, for the hand-off's thread.
    pub fn tc_program_fd(&self, ebpf: &mut Ebpf) -> anyhow::Result<std::os::fd::OwnedFd> {
        Ok(super::tc::program_fd(ebpf)?.try_clone_to_owned()?)
    }

    /// The hand-off's last attach step: `tc` (attached by the hand-off's
    /// thread) becomes the interface's link and its generic XDP link is
    /// detached, off the hook when this returns. Returns `tc` back if the
    /// interface is not on a hand-off's generic XDP link (it went, or its
    /// ifindex now names another device).
    pub fn take_over(
        &mut self,
        ifindex: u32,
        tc: super::tc::TcAttachment,
    ) -> Result<(), super::tc::TcAttachment> {
        if !matches!(self.links.get(&ifindex), Some((Link::XdpGeneric(_), _))) {
            return Err(tc);
        }
        let hook = match tc.mode() {
            Some(TcMode::Clsact) => Hook::TcClsact,
            _ => Hook::Tcx,
        };
        if let Some((Link::XdpGeneric(xdp), _)) = self.links.insert(ifindex, (Link::Tc(tc), hook)) {
            let _ = xdp.detach();
        }
        Ok(())
    }

    pub fn hook(&self, ifindex: u32) -> Option<Hook> {
        self.links.get(&ifindex).map(|(_, h)| *h)
    }

    /// Detaches from one interface. Must run inside its namespace.
    pub fn detach(&mut self, ebpf: &mut Ebpf, ifindex: u32) {
        match self.links.remove(&ifindex) {
            Some((Link::Xdp(id), _)) => {
                if let Ok(prog) = xdp(ebpf, self.xdp_program) {
                    let _ = prog.detach(id);
                }
            }
            Some((Link::Tc(attachment), _)) => {
                let _ = attachment.detach();
            }
            Some((Link::XdpGeneric(link), _)) => {
                let _ = link.detach();
            }
            None => {}
        }
    }

    /// Releases what is left of an interface that vanished: its links died
    /// with the device; only the file descriptors remain to close.
    pub fn forget(&mut self, ebpf: &mut Ebpf, ifindex: u32) {
        self.detach(ebpf, ifindex);
    }

    /// Detaches everything.
    pub fn detach_all(&mut self, ebpf: &mut Ebpf) {
        let all: Vec<u32> = self.links.keys().copied().collect();
        for ifindex in all {
            self.detach(ebpf, ifindex);
        }
    }
}

/// Why a hook was passed over, for the note.
fn why_skipped(e: &anyhow::Error, hook: Hook) -> String {
    match errno(e) {
        Some(libc::EBUSY) | Some(libc::EEXIST) => {
            format!("{hook} is taken by another program (or its bridge has XDP)")
        }
        Some(libc::EOPNOTSUPP) | Some(libc::EINVAL) => format!("the driver has no {hook}"),
        _ => format!("{hook} failed ({e:#})"),
    }
}

/// The error for the last hook of a ladder, in words the user can act on.
fn explain(e: anyhow::Error, name: &str, hook: Hook) -> anyhow::Error {
    match errno(&e) {
        Some(libc::EBUSY) | Some(libc::EEXIST) => Failure::environment(format!(
            "{name} already has a {hook} program that is not macdrop's, possibly another macdrop; \
             macdrop never replaces another program: leave {name} out of the selection, or stop \
             the tool that owns it (see `ip link show {name}`)"
        ))
        .into(),
        Some(libc::EPERM) | Some(libc::EACCES) => Failure::environment(format!(
            "not permitted to attach {hook} to {name}: run as root or grant CAP_BPF and \
             CAP_NET_ADMIN"
        ))
        .into(),
        Some(libc::EOPNOTSUPP) => Failure::environment(format!(
            "{name} does not support {hook}; try --attach auto or --attach tc"
        ))
        .into(),
        _ => e.context(format!("cannot attach {hook} to {name}")),
    }
}

/// Loads `macdrop_xdp` (xdp.frags), or its legacy twin on kernels that
/// reject multi-buffer programs; returns the name of the one that loaded.
pub fn load_xdp_program(ebpf: &mut Ebpf) -> anyhow::Result<&'static str> {
    let mut errors = Vec::new();
    for name in [names::XDP_PROGRAM, names::XDP_PROGRAM_LEGACY] {
        match xdp(ebpf, name)?.load() {
            Ok(()) => return Ok(name),
            Err(e) => errors.push(format!("{name}: {e}")),
        }
    }
    Err(Failure::environment(format!(
        "the kernel rejected macdrop's XDP program ({}); macdrop needs a kernel with \
         BPF and XDP support (Linux >= 5.10)",
        errors.join("; ")
    ))
    .into())
}

fn xdp<'a>(ebpf: &'a mut Ebpf, name: &str) -> anyhow::Result<&'a mut Xdp> {
    ebpf.program_mut(name)
        .with_context(|| format!("program {name} missing from the eBPF object"))?
        .try_into()
        .with_context(|| format!("{name} is not an XDP program"))
}

/// The errno behind an attach failure, if there is one.
fn errno(e: &anyhow::Error) -> Option<i32> {
    e.chain().find_map(|cause| {
        if let Some(ProgramError::SyscallError(s)) = cause.downcast_ref::<ProgramError>() {
            return s.io_error.raw_os_error();
        }
        cause
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.raw_os_error())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(role: Role) -> Watched {
        Watched {
            ifindex: 3,
            name: "x".into(),
            role,
            bridge: None,
        }
    }

    #[test]
    fn auto_prefers_tc_on_veth_and_bridges_and_xdp_on_nics() {
        let tc = tc_hook();
        assert_eq!(ladder(AttachMode::Auto, &w(Role::Port), Some("veth")), [tc]);
        assert_eq!(
            ladder(AttachMode::Auto, &w(Role::Bridge), Some("bridge")),
            [tc]
        );
        assert_eq!(
            ladder(AttachMode::Auto, &w(Role::Standalone), None),
            [Hook::XdpDriver, tc]
        );
        assert_eq!(
            ladder(AttachMode::Auto, &w(Role::Standalone), Some("macvlan")),
            [tc]
        );
    }

    #[test]
    fn xdp_modes_fall_back_to_tc_and_never_to_replacing() {
        let tc = tc_hook();
        assert_eq!(
            ladder(AttachMode::Xdp, &w(Role::Port), Some("veth")),
            [Hook::XdpDriver, Hook::XdpGeneric, tc]
        );
        assert_eq!(
            ladder(AttachMode::Xdp, &w(Role::Bridge), Some("bridge")),
            [Hook::XdpGeneric, tc]
        );
        assert_eq!(
            ladder(AttachMode::XdpGeneric, &w(Role::Port), Some("veth")),
            [Hook::XdpGeneric, tc]
        );
        assert_eq!(ladder(AttachMode::Tc, &w(Role::Port), Some("veth")), [tc]);
    }
}
