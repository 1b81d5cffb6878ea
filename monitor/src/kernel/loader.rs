//! Loads macdrop's eBPF object (built by build.rs, embedded in the binary).
//!
//! Sessions started together (`Monitor::start`, a rescan that finds new
//! namespaces) load through one [`Batch`]: one `EbpfLoader`, one drop
//! layer and one parse of the kernel's BTF for all of them, instead of two
//! parses per namespace (~16 MB of heap and most of a session's start-up
//! time each).

use std::{cell::OnceCell, rc::Rc};

use aya::{Ebpf, EbpfLoader};
use monitor_common::{IFINDEX_DIRECT, names};

use super::drops::{DropLayer, KernelBtf};
use crate::error::Failure;

/// The object file produced by `monitor/build.rs` from `monitor-ebpf`.
pub static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/macdrop"));

/// Loads the object for one network namespace: the namespace's inode is
/// baked in as a read-only global, so every map key the program builds is
/// (namespace, ifindex) without a helper call per frame. `extra_globals`
/// are more read-only globals to set, e.g. the drop layer's BTF offsets
/// (`drops::DropLayer::globals`); each must exist in the object.
pub fn load(netns_ino: u32, extra_globals: &[(&str, u32)]) -> anyhow::Result<Ebpf> {
    load_with(netns_ino, extra_globals, false)
}

/// `load`, with the evidence ring buffer at its full size when `capture`
/// (`--pcap`), else at one page.
pub fn load_with(
    netns_ino: u32,
    extra_globals: &[(&str, u32)],
    capture: bool,
) -> anyhow::Result<Ebpf> {
    load_sized(netns_ino, extra_globals, capture, IFINDEX_DIRECT)
}

/// `load_with`, with `direct` entries in the interface array
/// (`IF_BY_INDEX`; see [`ifindex_direct`]).
pub fn load_sized(
    netns_ino: u32,
    extra_globals: &[(&str, u32)],
    capture: bool,
    direct: u32,
) -> anyhow::Result<Ebpf> {
    let level = log_level();
    let mut loader = new_loader(&level, extra_globals)?;
    finish(&mut loader, &netns_ino, capture, direct)
}

/// The fewest entries the interface array of another namespace gets.
const IFINDEX_DIRECT_MIN: u32 = 1024;

/// Entries of the interface array (`IF_BY_INDEX`, 24 bytes each) for a
/// namespace whose highest ifindex is `max_ifindex` now. The namespace
/// macdrop runs in (the host's, in the usual case and in the DaemonSet)
/// gets the full `IFINDEX_DIRECT` (1.5 MiB, once). Any other namespace
/// (`--all-netns`, `--netns`) gets room for four times its ifindexes, at
/// least `IFINDEX_DIRECT_MIN`: the array was a third of each namespace's
/// kernel memory (docs/performance.md, the scale part). Ifindexes only
/// grow within a namespace; one beyond the array is still counted, through
/// the `IFACES` hash (`kernel::config` writes it there only).
pub fn ifindex_direct(own_namespace: bool, max_ifindex: u32) -> u32 {
    if own_namespace {
        return IFINDEX_DIRECT;
    }
    max_ifindex
        .saturating_add(1)
        .saturating_mul(4)
        .checked_next_power_of_two()
        .unwrap_or(IFINDEX_DIRECT)
        .clamp(IFINDEX_DIRECT_MIN, IFINDEX_DIRECT)
}

/// The values a batch's loader points its globals at: they must outlive
/// it, so they live beside it ([`Batch::new`] borrows them).
pub struct Values {
    /// Every namespace the batch may load for.
    inodes: Vec<u32>,
    level: u8,
    /// Prepared at the first load.
    drops: OnceCell<Drops>,
}

/// The drop layer, or why it is unavailable, and the globals it sets.
struct Drops {
    /// Shared by every session of the batch: the reason names it holds
    /// (two maps of ~100 strings) were a copy per namespace.
    layer: Result<Rc<DropLayer>, String>,
    globals: Vec<(&'static str, u32)>,
}

impl Values {
    pub fn new(inodes: impl IntoIterator<Item = u32>) -> Self {
        Self {
            inodes: inodes.into_iter().collect(),
            level: log_level(),
            drops: OnceCell::new(),
        }
    }

    fn drops(&self) -> &Drops {
        self.drops.get_or_init(|| {
            // BTF tells the drop program where to find skb->dev and
            // friends; a kernel without it still gets the frame classes.
            let layer = DropLayer::prepare().map(Rc::new);
            let globals = layer
                .as_ref()
                .map(|l| l.globals().to_vec())
                .unwrap_or_default();
            Drops { layer, globals }
        })
    }
}

/// What the sessions of one start share; dropped (and the heap trimmed)
/// once they are started, so nothing of it stays resident.
pub struct Batch<'v> {
    values: &'v Values,
    /// Made at the first load: `EbpfLoader::new` parses the kernel's BTF.
    loader: Option<EbpfLoader<'v>>,
    kernel_btf: KernelBtf,
}

impl<'v> Batch<'v> {
    pub fn new(values: &'v Values) -> Self {
        Self {
            values,
            loader: None,
            kernel_btf: KernelBtf::default(),
        }
    }

    /// The drop layer (prepared once per batch), or why it is unavailable.
    pub fn drop_layer(&self) -> Result<Rc<DropLayer>, String> {
        self.values.drops().layer.clone()
    }

    /// The kernel's BTF as aya parses it (for the tp_btf drop program),
    /// parsed at the first call of the batch.
    pub fn kernel_btf(&mut self) -> &mut KernelBtf {
        &mut self.kernel_btf
    }

    /// Does now what the first load would: makes the loader and parses
    /// the kernel's BTF (when the drop layer can use it), while the
    /// process holds little else, so the parses' transient ~20 MB do not
    /// come on top of the sessions' memory (the peak RSS). A rescan that
    /// may find only namespaces without a bridge leaves it to the first
    /// load.
    pub fn prepare(&mut self) -> anyhow::Result<()> {
        self.loader()?;
        if self.values.drops().layer.is_ok() {
            // An error is the drop layer's to report, at its attach.
            let _ = self.kernel_btf.get();
        }
        Ok(())
    }

    /// [`load_sized`] for `netns_ino`, one of the batch's namespaces, with
    /// the drop layer's globals.
    pub fn load(&mut self, netns_ino: u32, capture: bool, direct: u32) -> anyhow::Result<Ebpf> {
        let ino = self
            .values
            .inodes
            .iter()
            .find(|&&i| i == netns_ino)
            .ok_or_else(|| anyhow::anyhow!("namespace {netns_ino} is not in the load batch"))?;
        finish(self.loader()?, ino, capture, direct)
    }

    fn loader(&mut self) -> anyhow::Result<&mut EbpfLoader<'v>> {
        let values = self.values;
        if self.loader.is_none() {
            self.loader = Some(new_loader(&values.level, &values.drops().globals)?);
        }
        Ok(self.loader.as_mut().expect("made above"))
    }
}

/// `--kernel-log`'s level as the object's global: below it the verifier
/// drops the records' code (`kernel::klog`).
fn log_level() -> u8 {
    super::klog::aya_level(super::klog::level())
}

/// A loader with the globals every load of it shares. It is given no
/// kernel BTF: the object has no CO-RE relocations (`needs_no_kernel_btf`;
/// the drop program's kernel offsets are globals from `drops::DropLayer`),
/// so `EbpfLoader::new`'s own parse of it is dropped at once rather than
/// held through every load.
fn new_loader<'a>(level: &'a u8, globals: &'a [(&str, u32)]) -> anyhow::Result<EbpfLoader<'a>> {
    if EBPF_OBJECT.is_empty() {
        anyhow::bail!("this macdrop binary was built without its eBPF object (AYA_BUILD_SKIP?)");
    }
    raise_memlock_limit();
    raise_open_files_limit();
    let mut loader = EbpfLoader::new();
    loader.btf(None);
    // The parse is freed: give its pages back before the load allocates
    // (glibc would keep them, and place the next parse beside them).
    crate::heap::trim();
    loader.override_global(aya_log::LEVEL, level, true);
    loader.map_max_entries(super::klog::RING, super::klog::ring_bytes_here());
    for (name, value) in globals {
        loader.override_global(name, value, true);
    }
    Ok(loader)
}

/// Sets what differs between loads (the namespace, the ring's size, the
/// interface array's) and loads.
fn finish<'a>(
    loader: &mut EbpfLoader<'a>,
    netns_ino: &'a u32,
    capture: bool,
    direct: u32,
) -> anyhow::Result<Ebpf> {
    loader.override_global(names::NETNS_INO, netns_ino, true);
    loader.map_max_entries(names::EVIDENCE_RING, super::evidence::ring_bytes(capture));
    loader.map_max_entries(names::IF_BY_INDEX, direct);
    let ebpf = loader.load(EBPF_OBJECT).map_err(|e| {
        Failure::environment(format!(
            "the kernel refused macdrop's eBPF maps or programs ({e}); \
                 macdrop needs Linux >= 5.10 with BPF and XDP enabled"
        ))
    })?;
    Ok(ebpf)
}

/// Frees aya's copy of a loaded program (its instructions, function and
/// line info, ~10-25 KB a program, kept in the `Ebpf` for its lifetime
/// though only a reload would read it): the program becomes a handle built
/// from the kernel's `bpf_prog_info`, as for a program loaded elsewhere,
/// holding its own fd on the same kernel program. Before any attach only:
/// the old handle's links would go with it. Programs of other types are
/// left as they are.
///
/// Best effort: the new fd comes from BPF_PROG_GET_FD_BY_ID, which needs
/// CAP_SYS_ADMIN (CAP_BPF is not enough, and the capability is dropped
/// after the attach unless macdrop enters other namespaces). Without it,
/// or on any other error, the program keeps its copy and works as before.
pub fn shed(ebpf: &mut Ebpf, name: &'static str) {
    use aya::programs::{Program, ProgramError, SchedClassifier, Xdp};
    use aya_obj::programs::XdpAttachType;

    let Some(prog) = ebpf.program_mut(name) else {
        return;
    };
    let bare = (|| -> Result<Option<Program>, ProgramError> {
        let info = prog.info()?;
        Ok(match prog {
            Program::SchedClassifier(_) => Some(Program::SchedClassifier(
                SchedClassifier::from_program_info(info, name.into())?,
            )),
            // macdrop attaches its XDP programs to interfaces only.
            Program::Xdp(_) => Some(Program::Xdp(Xdp::from_program_info(
                info,
                name.into(),
                XdpAttachType::Interface,
            )?)),
            _ => None,
        })
    })();
    if let Ok(Some(bare)) = bare {
        *prog = bare;
    }
}

/// Kernels before 5.11 charge BPF maps to RLIMIT_MEMLOCK; lift it so map
/// creation does not fail there. Harmless on newer kernels.
fn raise_memlock_limit() {
    let rlim = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: plain syscall with a valid pointer.
    let _ = unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &rlim) };
}

/// Every watched namespace holds about 28 file descriptors (its object's
/// maps, programs and links, its netlink sockets), so `--all-netns` needs
/// more than the soft limit of 1,024 a systemd service or a shell gives
/// from about 35 namespaces on. Lift the soft limit to the hard one, as
/// any daemon holding many descriptors does; the hard limit stays the
/// administrator's.
fn raise_open_files_limit() {
    let mut rlim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain syscalls with a valid pointer.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut rlim) == 0 && rlim.rlim_cur < rlim.rlim_max {
            rlim.rlim_cur = rlim.rlim_max;
            let _ = libc::setrlimit(libc::RLIMIT_NOFILE, &rlim);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_interface_array_is_sized_by_the_namespace() {
        assert_eq!(ifindex_direct(true, 3), IFINDEX_DIRECT, "macdrop's own");
        assert_eq!(ifindex_direct(false, 3), IFINDEX_DIRECT_MIN, "a pod's");
        assert_eq!(ifindex_direct(false, 255), 1024);
        assert_eq!(
            ifindex_direct(false, 256),
            2048,
            "four times, a power of two"
        );
        assert_eq!(ifindex_direct(false, 20_000), IFINDEX_DIRECT);
        assert_eq!(ifindex_direct(false, u32::MAX), IFINDEX_DIRECT);
    }

    /// `new_loader` gives aya no kernel BTF: an object with CO-RE
    /// relocations would fail the verifier there.
    #[test]
    fn needs_no_kernel_btf() {
        if EBPF_OBJECT.is_empty() {
            // Built with AYA_BUILD_SKIP: no object to check.
            return;
        }
        let obj = aya_obj::Object::parse(EBPF_OBJECT).expect("the embedded object parses");
        assert!(
            !obj.has_btf_relocations(),
            "the eBPF object has CO-RE relocations: give `EbpfLoader` the kernel's BTF again"
        );
    }
}
