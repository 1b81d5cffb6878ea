//! Attaching the classifier to interfaces. The choice of hook for each kind
//! of device lives in `hook_ladder` and nowhere else.

use std::{collections::BTreeMap, fmt};

use anyhow::Context as _;
use aya::{
    Ebpf,
    programs::{ProgramError, Xdp, XdpMode, xdp::XdpLinkId},
};
use monitor_common::names;

use crate::{error::Failure, topology::Role};

/// Where and how the classifier runs on one interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hook {
    /// XDP in the driver, before an skb exists (veth, NICs with native XDP).
    XdpDriver,
    /// Generic XDP in the core receive path (any device, e.g. bridges).
    XdpGeneric,
}

impl Hook {
    pub fn as_str(self) -> &'static str {
        match self {
            Hook::XdpDriver => "xdp-driver",
            Hook::XdpGeneric => "xdp-generic",
        }
    }
    fn mode(self) -> XdpMode {
        match self {
            Hook::XdpDriver => XdpMode::Driver,
            Hook::XdpGeneric => XdpMode::Skb,
        }
    }
}

impl fmt::Display for Hook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Hooks to try, best first. Bridges have no native XDP, so they only take
/// generic mode; everything else tries driver mode and falls back to
/// generic when the driver lacks XDP support. (The benchmark issue will
/// revisit this: on veth, tc/TCX is cheaper than XDP.)
pub fn hook_ladder(role: Role) -> &'static [Hook] {
    match role {
        Role::Bridge => &[Hook::XdpGeneric],
        Role::Port | Role::Standalone => &[Hook::XdpDriver, Hook::XdpGeneric],
    }
}

/// Owns the attachments; detaches them on `detach_all` or drop (links are
/// file descriptors, so they also vanish if the process dies).
pub struct Attacher {
    /// The XDP program that loaded: multi-buffer aware where the kernel
    /// supports it, the legacy twin otherwise.
    program: &'static str,
    links: BTreeMap<u32, (XdpLinkId, Hook)>,
}

impl Attacher {
    /// Loads the XDP program into the kernel (the verifier runs here).
    pub fn new(ebpf: &mut Ebpf) -> anyhow::Result<Self> {
        let program = load_program(ebpf)?;
        Ok(Self {
            program,
            links: BTreeMap::new(),
        })
    }

    /// Which program is attached (`macdrop_xdp` or `macdrop_xdp_legacy`).
    pub fn program_name(&self) -> &'static str {
        self.program
    }

    /// Attaches to one interface, trying the hooks of its role in order.
    pub fn attach(
        &mut self,
        ebpf: &mut Ebpf,
        ifindex: u32,
        name: &str,
        role: Role,
    ) -> anyhow::Result<Hook> {
        let prog = program(ebpf, self.program)?;
        let mut last_err = None;
        for &hook in hook_ladder(role) {
            match prog.attach_to_if_index(ifindex, hook.mode()) {
                Ok(id) => {
                    self.links.insert(ifindex, (id, hook));
                    return Ok(hook);
                }
                Err(e) => match errno(&e) {
                    // The driver has no native XDP: try the next hook.
                    Some(libc::EOPNOTSUPP) | Some(libc::EINVAL) => last_err = Some(e),
                    Some(libc::EBUSY) | Some(libc::EEXIST) => {
                        return Err(Failure::environment(format!(
                            "{name} (or its bridge) already has an XDP program that is not \
                             macdrop's, possibly another macdrop; macdrop never replaces \
                             another program: leave {name} out of the selection, or stop the \
                             tool that owns it (see `ip link show {name}`)"
                        ))
                        .into());
                    }
                    Some(libc::EPERM) | Some(libc::EACCES) => {
                        return Err(Failure::environment(format!(
                            "not permitted to attach XDP to {name}: run as root or grant \
                             CAP_BPF and CAP_NET_ADMIN"
                        ))
                        .into());
                    }
                    _ => {
                        return Err(anyhow::Error::new(e))
                            .with_context(|| format!("cannot attach XDP to {name}"));
                    }
                },
            }
        }
        Err(Failure::environment(format!(
            "cannot attach XDP to {name} in any mode ({}); the kernel lacks XDP support",
            last_err.map(|e| e.to_string()).unwrap_or_default()
        ))
        .into())
    }

    pub fn hook(&self, ifindex: u32) -> Option<Hook> {
        self.links.get(&ifindex).map(|(_, h)| *h)
    }

    /// Detaches from one interface (bridges after their ports is the
    /// caller's order). A vanished interface already lost its link.
    pub fn detach(&mut self, ebpf: &mut Ebpf, ifindex: u32) {
        if let Some((id, _)) = self.links.remove(&ifindex)
            && let Ok(prog) = program(ebpf, self.program)
        {
            let _ = prog.detach(id);
        }
    }

    /// Detaches everything: bridges first, so ports are never re-attached
    /// under a bridge that still has a program.
    pub fn detach_all(&mut self, ebpf: &mut Ebpf, bridges_first: &[u32]) {
        for ifindex in bridges_first {
            self.detach(ebpf, *ifindex);
        }
        let rest: Vec<u32> = self.links.keys().copied().collect();
        for ifindex in rest {
            self.detach(ebpf, ifindex);
        }
    }
}

/// Loads `macdrop_xdp` (xdp.frags), or its legacy twin on kernels that
/// reject multi-buffer programs; returns the name of the one that loaded.
pub fn load_program(ebpf: &mut Ebpf) -> anyhow::Result<&'static str> {
    let mut errors = Vec::new();
    for name in [names::XDP_PROGRAM, names::XDP_PROGRAM_LEGACY] {
        match program(ebpf, name)?.load() {
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

fn program<'a>(ebpf: &'a mut Ebpf, name: &str) -> anyhow::Result<&'a mut Xdp> {
    ebpf.program_mut(name)
        .with_context(|| format!("program {name} missing from the eBPF object"))?
        .try_into()
        .with_context(|| format!("{name} is not an XDP program"))
}

/// The errno behind an attach failure, if there is one.
fn errno(e: &ProgramError) -> Option<i32> {
    match e {
        ProgramError::SyscallError(s) => s.io_error.raw_os_error(),
        _ => {
            let mut src: Option<&dyn std::error::Error> = Some(e);
            while let Some(err) = src {
                if let Some(io) = err.downcast_ref::<std::io::Error>() {
                    return io.raw_os_error();
                }
                src = err.source();
            }
            None
        }
    }
}
