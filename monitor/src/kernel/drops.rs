//! Confirmed drops: what the kernel itself says it threw away on a watched
//! interface, and why. A program on the `kfree_skb` tracepoint counts drops
//! per (namespace, ifindex, drop reason); this module prepares it from the
//! running kernel's BTF, attaches it and reads its counts.
//!
//! Nothing kernel-specific is hard-coded: the struct offsets the program
//! needs and the values of `enum skb_drop_reason` differ between kernels
//! and configurations, so both are read by name from
//! `/sys/kernel/btf/vmlinux` at start-up. A kernel without BTF, without drop
//! reasons (< 5.17) or with an unexpected layout makes the layer
//! unavailable, with a one-line reason; the rest of macdrop runs without it.
//!
//! Order of use: [`DropLayer::prepare`], load the object with
//! [`DropLayer::globals`] (`loader::load`), fill the interface map, then
//! [`DropLayer::attach`], [`DropMaps::take`] and, every interval,
//! [`DropLayer::read`]. The programs stay attached until the `Ebpf` is
//! dropped.
//!
//! Each object counts the drops of its own namespace only (every
//! namespace macdrop watches has an object of its own): an interface's
//! first two reasons in its counter slot (`SlotDrops`), any further one in
//! a hash keyed by (namespace, ifindex, reason).

use std::{collections::BTreeMap, fmt, path::Path};

use anyhow::Context as _;
use aya::{
    Ebpf,
    maps::{MapData, PerCpuHashMap},
    programs::{BtfTracePoint, RawTracePoint},
};
use btf_rs::{Backend, Btf, BtfType, Member, Struct, Type};
use monitor_common::drops::{DropKey, REASON_NONE, SlotDrops, names};

use super::{
    batch::SlotArray,
    drop_subsys::{Subsystems, enum_members},
};

/// Reason names (without the `SKB_DROP_REASON_` prefix) of the drops that
/// mean "the destination MAC was not one this host accepts here".
pub const MAC_MISMATCH_REASONS: [&str; 3] =
    ["OTHERHOST", "NO_TX_TARGET", "IPV6_NDISC_NS_OTHERHOST"];

/// Where the kernel exposes its own BTF.
pub const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";

/// The prefix every real drop reason has in `enum skb_drop_reason`.
const REASON_PREFIX: &str = "SKB_DROP_REASON_";
/// Members of the enum that are bounds or masks, never a reason.
const NOT_REASONS: [&str; 2] = ["SKB_DROP_REASON_MAX", "SKB_DROP_REASON_SUBSYS_MASK"];

/// The userspace view of `MACDROP_DROPS`.
pub type DropMap = PerCpuHashMap<MapData, DropKey, u64>;

/// The drop program's counters, taken out of the object.
pub struct DropMaps {
    /// Per counter slot: the interface's first reasons.
    pub slots: SlotArray<SlotDrops>,
    /// Every further (interface, reason).
    pub hash: DropMap,
}

impl DropMaps {
    pub fn take(ebpf: &mut Ebpf) -> anyhow::Result<Self> {
        let map = ebpf
            .take_map(names::DROPS)
            .with_context(|| format!("map {} missing from the eBPF object", names::DROPS))?;
        Ok(Self {
            slots: SlotArray::take(ebpf, names::SLOT_DROPS)?,
            hash: DropMap::try_from(map).context("drop map has the wrong type")?,
        })
    }

    /// Zeroes a counter slot's drops before it is given to another
    /// interface.
    pub fn clear(&mut self, slot: u32) -> anyhow::Result<()> {
        self.slots.clear(slot)
    }

    /// Removes the hash's counts of every interface `keep` rejects (by
    /// ifindex: each namespace has a map of its own). A gone interface's
    /// entries go once its final counts are read, so the map stays
    /// bounded whatever comes and goes, and a new interface that reuses an
    /// ifindex starts from zero (its slot is cleared when it is given).
    pub fn forget(&mut self, keep: impl Fn(u32) -> bool) -> anyhow::Result<()> {
        let stale: Vec<DropKey> = self
            .hash
            .keys()
            .filter_map(Result::ok)
            .filter(|k| !keep(k.ifindex))
            .collect();
        for key in stale {
            match self.hash.remove(&key) {
                Ok(()) | Err(aya::maps::MapError::KeyNotFound) => {}
                Err(e) => return Err(e).context("cannot remove a drop counter"),
            }
        }
        Ok(())
    }
}

/// Which interface holds each counter slot below `end`, for
/// [`DropLayer::read`].
pub struct SlotOwners<'a> {
    /// The namespace the object watches (its inode).
    pub netns: u32,
    /// One past the highest slot in use.
    pub end: u32,
    /// The ifindex of the interface in a slot, None if the slot is free.
    pub ifindex: &'a dyn Fn(u32) -> Option<u32>,
}
/// Drop counts per (netns inode, ifindex), then per reason name.
pub type DropCounts = BTreeMap<(u32, u32), BTreeMap<String, u64>>;

/// Byte offsets the program needs, all read from BTF.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Offsets {
    /// `sk_buff.dev` (inside anonymous unions and structs).
    pub skb_dev: u32,
    /// `net_device.ifindex`.
    pub dev_ifindex: u32,
    /// `net_device.nd_net.net` (`possible_net_t` holds the pointer).
    pub dev_net: u32,
    /// `net.ns.inum`: the namespace inode `lsns` and `/proc/PID/ns/net` show.
    pub net_inum: u32,
}

/// How the program is attached to `kfree_skb`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DropHook {
    /// BTF-typed tracepoint (`tp_btf`): preferred.
    TpBtf,
    /// Raw tracepoint: the fallback when tp_btf does not load or attach.
    RawTracepoint,
}

impl DropHook {
    pub fn as_str(self) -> &'static str {
        match self {
            DropHook::TpBtf => "tp_btf",
            DropHook::RawTracepoint => "raw_tracepoint",
        }
    }
}

impl fmt::Display for DropHook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Everything the drop layer learned from the running kernel's BTF.
#[derive(Clone, Debug)]
pub struct DropLayer {
    offsets: Offsets,
    /// Reason value -> short name (first name wins if values repeat).
    names: BTreeMap<u32, String>,
    /// Short name -> reason value.
    values: BTreeMap<String, u32>,
    /// `SKB_CONSUMED`, if the kernel has it: a free that is not a drop.
    consumed: Option<u32>,
    /// Reasons of subsystems (Open vSwitch, mac80211), beyond the enum.
    subsystems: Subsystems,
}

impl DropLayer {
    /// Reads offsets and drop reasons from the running kernel's BTF.
    /// `Err` is a one-line reason why the layer is unavailable here.
    pub fn prepare() -> Result<Self, String> {
        Self::from_btf_file(Path::new(VMLINUX_BTF))
    }

    /// Like [`DropLayer::prepare`], from a BTF file elsewhere.
    pub fn from_btf_file(path: &Path) -> Result<Self, String> {
        if !path.exists() {
            return Err(format!(
                "the kernel exposes no BTF ({} is missing; needs CONFIG_DEBUG_INFO_BTF=y)",
                path.display()
            ));
        }
        // Mapping the file and parsing lazily takes ~25 ms here against
        // ~160 ms for parsing all of it; sysfs allows mmap of the kernel's
        // BTF only since Linux 6.15, so fall back to reading it.
        let btf = Btf::from_file_with_backend(path, Backend::Mmap)
            .or_else(|_| Btf::from_file_with_backend(path, Backend::Cache))
            .map_err(|e| format!("cannot read kernel BTF from {}: {e}", path.display()))?;
        Self::from_btf(&btf, path.parent().unwrap_or(Path::new("/")))
    }

    /// `btf_dir` holds the modules' BTF beside vmlinux's: subsystems'
    /// reasons are named from there (`drop_subsys`).
    fn from_btf(btf: &Btf, btf_dir: &Path) -> Result<Self, String> {
        let reasons = reason_enum(btf)?;
        check_tracepoint(btf)?;
        let offsets = Offsets {
            skb_dev: member_offset(btf, "sk_buff", &["dev"], Want::Pointer)?,
            dev_ifindex: member_offset(btf, "net_device", &["ifindex"], Want::Int4)?,
            dev_net: member_offset(btf, "net_device", &["nd_net", "net"], Want::Pointer)?,
            net_inum: member_offset(btf, "net", &["ns", "inum"], Want::Int4)?,
        };
        let mut names = BTreeMap::new();
        let mut values = BTreeMap::new();
        let mut consumed = None;
        let mask = reasons
            .iter()
            .find(|(name, _)| name == "SKB_DROP_REASON_SUBSYS_MASK")
            .map(|(_, v)| *v);
        let subsystems = Subsystems::read(btf, mask, btf_dir);
        for (name, value) in reasons {
            if name == "SKB_CONSUMED" {
                consumed = Some(value);
            }
            if NOT_REASONS.contains(&name.as_str()) {
                continue;
            }
            let short = name.strip_prefix(REASON_PREFIX).unwrap_or(&name).to_owned();
            names.entry(value).or_insert_with(|| short.clone());
            values.entry(short).or_insert(value);
        }
        Ok(Self {
            offsets,
            names,
            values,
            consumed,
            subsystems,
        })
    }

    pub fn offsets(&self) -> Offsets {
        self.offsets
    }

    /// The globals to override when loading the object (`loader::load`).
    pub fn globals(&self) -> [(&'static str, u32); 5] {
        [
            (names::GLOBAL_OFF_SKB_DEV, self.offsets.skb_dev),
            (names::GLOBAL_OFF_DEV_IFINDEX, self.offsets.dev_ifindex),
            (names::GLOBAL_OFF_DEV_NET, self.offsets.dev_net),
            (names::GLOBAL_OFF_NET_INUM, self.offsets.net_inum),
            (
                names::GLOBAL_REASON_CONSUMED,
                self.consumed.unwrap_or(REASON_NONE),
            ),
        ]
    }

    /// The reason's BTF name without `SKB_DROP_REASON_`; a subsystem's
    /// reason (subsystem bits in the high 16) by its module's name for it
    /// (`OVS_DROP_EXPLICIT`) or as `<SUBSYSTEM>_REASON_<n>`; else
    /// `UNKNOWN_<n>`.
    pub fn reason_name(&self, value: u32) -> String {
        if let Some(name) = self.names.get(&value) {
            return name.clone();
        }
        self.subsystems
            .name(value)
            .unwrap_or_else(|| format!("UNKNOWN_{value}"))
    }

    /// The kernel's value for a short reason name, if it has that reason.
    pub fn reason_value(&self, name: &str) -> Option<u32> {
        self.values.get(name).copied()
    }

    /// Every reason of the running kernel: (value, short name).
    pub fn reasons(&self) -> impl Iterator<Item = (u32, &str)> {
        self.names.iter().map(|(v, n)| (*v, n.as_str()))
    }

    /// Loads and attaches the program: tp_btf, else the raw tracepoint.
    /// `Err` is a one-line reason why the layer is unavailable.
    pub fn attach(&self, ebpf: &mut Ebpf, btf: &mut KernelBtf) -> Result<DropHook, String> {
        let mut errors = Vec::new();
        for hook in [DropHook::TpBtf, DropHook::RawTracepoint] {
            match self.attach_hook(ebpf, hook, btf) {
                Ok(()) => return Ok(hook),
                Err(e) => errors.push(format!("{hook}: {e}")),
            }
        }
        Err(format!(
            "cannot attach to the kfree_skb tracepoint ({})",
            errors.join("; ")
        ))
    }

    /// Loads and attaches the program with one given hook (tp_btf takes
    /// the kernel's BTF from `btf`, parsing it if nobody has yet).
    pub fn attach_hook(
        &self,
        ebpf: &mut Ebpf,
        hook: DropHook,
        btf: &mut KernelBtf,
    ) -> Result<(), String> {
        let result = match hook {
            DropHook::TpBtf => {
                let btf = btf.get()?;
                program::<BtfTracePoint>(ebpf, names::PROGRAM_TP_BTF).and_then(|p| {
                    p.load(names::TRACEPOINT, btf)?;
                    p.attach()?;
                    Ok(())
                })
            }
            DropHook::RawTracepoint => program::<RawTracePoint>(ebpf, names::PROGRAM_RAW_TP)
                .and_then(|p| {
                    p.load()?;
                    p.attach(names::TRACEPOINT)?;
                    Ok(())
                }),
        };
        result.map_err(|e| one_line(e.as_ref()))
    }

    /// Cumulative drops per (netns, ifindex) and reason name, summed over
    /// CPUs and over both maps. Only watched interfaces that dropped
    /// something appear.
    pub fn read(&self, maps: &mut DropMaps, owners: &SlotOwners<'_>) -> anyhow::Result<DropCounts> {
        let mut out = DropCounts::new();
        let mut add = |netns: u32, ifindex: u32, reason: u32, n: u64| {
            if n > 0 {
                *out.entry((netns, ifindex))
                    .or_default()
                    .entry(self.reason_name(reason))
                    .or_default() += n;
            }
        };
        maps.slots
            .read_each(owners.end, |slot, per_cpu| {
                let Some(ifindex) = (owners.ifindex)(slot) else {
                    return;
                };
                for d in per_cpu {
                    for (n, reason) in d.frames.iter().zip(d.reason) {
                        add(owners.netns, ifindex, reason, *n);
                    }
                }
            })
            .context("cannot read the drop counters")?;
        for entry in maps.hash.iter() {
            let (key, per_cpu) = entry.context("cannot read the drop map")?;
            add(key.netns, key.ifindex, key.reason, per_cpu.iter().sum());
        }
        Ok(out)
    }
}

/// The kernel's BTF as aya parses it, which loading the tp_btf program
/// takes (aya looks the tracepoint's type up by name in it): the whole of
/// /sys/kernel/btf/vmlinux, ~22 MB of heap while parsing, ~12 MB once
/// parsed, and ~100 ms. Parsed at the first [`KernelBtf::get`] and kept as
/// long as its owner (`loader::Batch`: the sessions started together), so
/// they parse it once.
#[derive(Default)]
pub struct KernelBtf(Option<Result<aya::Btf, String>>);

impl KernelBtf {
    pub fn get(&mut self) -> Result<&aya::Btf, String> {
        self.0
            .get_or_insert_with(|| {
                let btf = aya::Btf::from_sys_fs().map_err(|e| one_line(&e));
                // The file's bytes are freed (~9 MB); the parsed types stay.
                crate::heap::trim();
                btf
            })
            .as_ref()
            .map_err(Clone::clone)
    }
}

fn program<'a, P>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut P, Box<dyn std::error::Error>>
where
    &'a mut P: TryFrom<&'a mut aya::programs::Program, Error = aya::programs::ProgramError>,
{
    let prog = ebpf
        .program_mut(name)
        .ok_or_else(|| format!("program {name} missing from the eBPF object"))?;
    Ok(prog.try_into()?)
}

/// An error and its causes on one line (a verifier log has many).
fn one_line(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = Vec::new();
    let mut cur = Some(e);
    while let Some(err) = cur {
        let text = err.to_string();
        let first = text.lines().next().unwrap_or_default().trim().to_owned();
        if !first.is_empty() && !parts.contains(&first) {
            parts.push(first);
        }
        cur = err.source();
    }
    parts.join(": ")
}

/// All members of `enum skb_drop_reason` as (BTF name, value).
fn reason_enum(btf: &Btf) -> Result<Vec<(String, u32)>, String> {
    let members = enum_members(btf, "skb_drop_reason");
    if members.is_empty() {
        return Err("the kernel has no drop reasons (no enum skb_drop_reason in its BTF; Linux >= 5.17 has them)".into());
    }
    Ok(members)
}

/// Checks that `kfree_skb`'s arguments are where the program reads them:
/// argument 0 a `struct sk_buff *`, argument 2 the `enum skb_drop_reason`.
/// The BTF typedef `btf_trace_kfree_skb` points to the prototype, whose
/// first parameter is the tracepoint's private `void *`.
fn check_tracepoint(btf: &Btf) -> Result<(), String> {
    let bad = |why: &str| format!("the kfree_skb tracepoint is not as expected ({why})");
    let typedef = btf
        .resolve_types_by_name("btf_trace_kfree_skb")
        .unwrap_or_default()
        .into_iter()
        .find(|t| matches!(t, Type::Typedef(_)))
        .ok_or_else(|| bad("no btf_trace_kfree_skb in BTF"))?;
    let Type::Ptr(ptr) = strip(btf, typedef)? else {
        return Err(bad("btf_trace_kfree_skb is not a function pointer"));
    };
    let Type::FuncProto(proto) = resolve(btf, &ptr)? else {
        return Err(bad("btf_trace_kfree_skb is not a function pointer"));
    };
    let param = |i: usize| -> Result<Type, String> {
        let p = proto
            .parameters
            .get(i + 1)
            .ok_or_else(|| bad(&format!("fewer than {} arguments", i + 1)))?;
        strip(btf, resolve(btf, p)?)
    };
    let skb_ok = match param(0)? {
        Type::Ptr(p) => match strip(btf, resolve(btf, &p)?)? {
            Type::Struct(s) => name_of(btf, &s)? == "sk_buff",
            _ => false,
        },
        _ => false,
    };
    if !skb_ok {
        return Err(bad("argument 0 is not a struct sk_buff *"));
    }
    let reason_ok = match param(2)? {
        Type::Enum(e) => name_of(btf, &e)? == "skb_drop_reason",
        Type::Enum64(e) => name_of(btf, &e)? == "skb_drop_reason",
        _ => false,
    };
    if !reason_ok {
        return Err(bad("argument 2 is not an enum skb_drop_reason"));
    }
    Ok(())
}

/// What the last member of a path must be, so a changed type is caught
/// instead of read with the wrong width.
#[derive(Clone, Copy, Debug)]
enum Want {
    Pointer,
    Int4,
}

/// Byte offset of `path` (e.g. `["nd_net", "net"]`) inside `struct name`.
/// Each step may be nested in anonymous structs and unions, whose offsets
/// add up; every step but the last must be an embedded struct or union
/// (not a pointer: the program follows pointers itself). Bitfields and
/// members not on a byte boundary are refused.
fn member_offset(btf: &Btf, name: &str, path: &[&str], want: Want) -> Result<u32, String> {
    let full = format!("{name}.{}", path.join("."));
    let missing = |why: String| format!("kernel BTF has no usable {full} ({why})");
    let mut current = find_struct(btf, name).ok_or_else(|| missing(format!("no struct {name}")))?;
    let mut bits = 0u32;
    let mut last = None;
    for (i, step) in path.iter().enumerate() {
        let (offset, member) = find_member(btf, &current, step)?
            .ok_or_else(|| missing(format!("no member {step}")))?;
        if member.bitfield_size().is_some_and(|b| b != 0) {
            return Err(missing(format!("{step} is a bitfield")));
        }
        bits += offset;
        let ty = strip(btf, resolve(btf, &member)?)?;
        if i + 1 < path.len() {
            current = match ty {
                Type::Struct(s) | Type::Union(s) => s,
                other => return Err(missing(format!("{step} is a {}", other.name()))),
            };
        } else {
            last = Some(ty);
        }
    }
    let ok = match (want, last) {
        (Want::Pointer, Some(Type::Ptr(_))) => true,
        (Want::Int4, Some(Type::Int(i))) => i.size() == 4,
        (Want::Int4, Some(Type::Enum(e))) => e.size() == 4,
        _ => false,
    };
    if !ok {
        let what = match want {
            Want::Pointer => "a pointer",
            Want::Int4 => "a 4-byte integer",
        };
        return Err(missing(format!("not {what}")));
    }
    if !bits.is_multiple_of(8) {
        return Err(missing("not byte-aligned".into()));
    }
    Ok(bits / 8)
}

/// The struct (not a forward declaration, not a union) called `name`.
fn find_struct(btf: &Btf, name: &str) -> Option<Struct> {
    btf.resolve_types_by_name(name)
        .ok()?
        .into_iter()
        .find_map(|t| match t {
            Type::Struct(s) => Some(s),
            _ => None,
        })
}

/// Member `name` of `s` with its bit offset from the start of `s`,
/// searching through anonymous struct/union members (C flattens them).
fn find_member(btf: &Btf, s: &Struct, name: &str) -> Result<Option<(u32, Member)>, String> {
    for m in &s.members {
        let mname = name_of(btf, m)?;
        if mname == name {
            return Ok(Some((m.bit_offset(), m.clone())));
        }
        if mname.is_empty()
            && let Type::Struct(inner) | Type::Union(inner) = strip(btf, resolve(btf, m)?)?
            && let Some((off, found)) = find_member(btf, &inner, name)?
        {
            return Ok(Some((m.bit_offset() + off, found)));
        }
    }
    Ok(None)
}

/// The type `t` refers to (a member's, parameter's or pointer's target).
fn resolve(btf: &Btf, t: &dyn BtfType) -> Result<Type, String> {
    let id = t.get_type_id().ok_or("BTF type without a target")?;
    if id == 0 {
        return Ok(Type::Void);
    }
    btf.resolve_type_by_id(id)
        .map_err(|e| format!("broken kernel BTF: {e}"))
}

/// Skips typedefs and qualifiers (`const`, `volatile`, `__rcu` type tags).
fn strip(btf: &Btf, mut t: Type) -> Result<Type, String> {
    // Bounded: a cycle would be broken BTF.
    for _ in 0..32 {
        t = match &t {
            Type::Typedef(x) => resolve(btf, x)?,
            Type::Const(x) | Type::Volatile(x) | Type::Restrict(x) => resolve(btf, x)?,
            Type::TypeTag(x) => resolve(btf, x)?,
            _ => return Ok(t),
        };
    }
    Err("broken kernel BTF: type chain too long".into())
}

fn name_of(btf: &Btf, t: &dyn BtfType) -> Result<String, String> {
    if t.get_name_offset().is_none() {
        return Ok(String::new());
    }
    btf.resolve_name(t)
        .map_err(|e| format!("broken kernel BTF: {e}"))
}

#[cfg(test)]
mod tests {
    //! Unit tests of the BTF side: the running kernel's BTF file (readable
    //! without privileges) and crafted blobs. The privileged tests, which
    //! load and attach the program, are in `tests/tests/drops.rs`.

    use super::*;

    #[test]
    fn btf_offsets_and_reasons_resolve_by_name() {
        // Whether the kernel has drop reasons is bpftool's to say, not a
        // version's.
        let Some(oracle) = bpftool_drop_reasons() else {
            let err = DropLayer::prepare().unwrap_err();
            assert!(
                err.contains("no drop reasons") || err.contains("no BTF"),
                "{err}"
            );
            macdrop_tests::skip::record(
                "drops: offsets and drop reasons read from the kernel's BTF",
                "this kernel has no enum skb_drop_reason (per bpftool)",
            );
            return;
        };
        let layer = DropLayer::prepare().expect("bpftool finds drop reasons, so must the layer");
        let off = layer.offsets();
        // Pointers are 8-byte aligned, the ints 4: a sum of nested member
        // offsets that went wrong rarely keeps that.
        assert_eq!(off.skb_dev % 8, 0, "{off:?}");
        assert_eq!(off.dev_net % 8, 0, "{off:?}");
        assert_eq!(off.dev_ifindex % 4, 0, "{off:?}");
        assert_eq!(off.net_inum % 4, 0, "{off:?}");

        // The same names and values as an independent reader of the same
        // BTF reports (bpftool): values move between kernels, even between
        // patch releases, and reasons come and go, so neither a value nor
        // which reasons exist is written here.
        assert!(oracle.len() > 10, "bpftool listed {} reasons", oracle.len());
        for name in MAC_MISMATCH_REASONS {
            assert_eq!(
                layer.reason_value(name),
                oracle.get(name).copied(),
                "{name} per bpftool"
            );
            if let Some(value) = layer.reason_value(name) {
                assert_eq!(layer.reason_name(value), name);
            }
        }
        // Every name <-> value pair round-trips, names are unique and none
        // keeps the enum prefix.
        let mut seen = std::collections::HashSet::new();
        for (value, name) in layer.reasons() {
            assert_eq!(layer.reason_value(name), Some(value), "{name}");
            assert_eq!(layer.reason_name(value), name);
            assert!(!name.starts_with(REASON_PREFIX), "{name}");
            assert!(seen.insert(name.to_owned()), "{name} twice");
        }
        assert!(!seen.contains("MAX") && !seen.contains("SUBSYS_MASK"));
        // Out-of-range values; subsystem reasons are `drop_subsys`'s.
        assert_eq!(layer.reason_name(0x7fff_0001), "UNKNOWN_2147418113");
        assert_eq!(layer.reason_name(u32::MAX - 1), "UNKNOWN_4294967294");

        // SKB_CONSUMED (a free that is not a drop), where the kernel has
        // it, is handed to the program so it is never counted.
        let consumed = oracle.get("SKB_CONSUMED").copied();
        assert_eq!(layer.reason_value("SKB_CONSUMED"), consumed);
        assert!(layer.globals().contains(&(
            names::GLOBAL_REASON_CONSUMED,
            consumed.unwrap_or(REASON_NONE)
        )));

        for (name, value) in &oracle {
            assert_eq!(layer.reason_value(name), Some(*value), "{name} per bpftool");
        }
        for (value, name) in layer.reasons() {
            assert_eq!(oracle.get(name), Some(&value), "{name} per btf-rs");
        }
    }

    /// `enum skb_drop_reason` of the running kernel as bpftool reads it
    /// from /sys/kernel/btf/vmlinux, prefix stripped as `DropLayer` does:
    /// name -> value. `None` without BTF or without the enum.
    fn bpftool_drop_reasons() -> Option<std::collections::HashMap<String, u32>> {
        if !Path::new(VMLINUX_BTF).exists() {
            return None;
        }
        let out = std::process::Command::new(bpftool())
            .args(["-j", "btf", "dump", "file", VMLINUX_BTF])
            .output()
            .expect("bpftool runs (cargo xtask setup installs it)");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let dump: serde_json::Value = serde_json::from_slice(&out.stdout).expect("bpftool JSON");
        let types = dump["types"].as_array().expect("types");
        let reasons = types
            .iter()
            .find(|t| t["kind"] == "ENUM" && t["name"] == "skb_drop_reason")?;
        let reasons = reasons["values"]
            .as_array()
            .expect("values")
            .iter()
            .filter_map(|v| {
                let name = v["name"].as_str()?;
                let value = u32::try_from(v["val"].as_u64()?).ok()?;
                let short = name.strip_prefix(REASON_PREFIX).unwrap_or(name);
                // The layer leaves out the enum's bounds, as userspace does.
                (!matches!(short, "MAX" | "SUBSYS_MASK")).then(|| (short.to_owned(), value))
            })
            .collect();
        Some(reasons)
    }

    /// bpftool from PATH, else from the sbin directories: Debian installs
    /// it in /usr/sbin, which a normal user's PATH lacks, and reading a BTF
    /// file needs no privileges, so plain `cargo test` runs this as anyone.
    fn bpftool() -> std::path::PathBuf {
        let path = std::env::var_os("PATH").unwrap_or_default();
        std::env::split_paths(&path)
            .chain(["/usr/sbin".into(), "/sbin".into()])
            .map(|dir| dir.join("bpftool"))
            .find(|p| p.is_file())
            .unwrap_or_else(|| "bpftool".into())
    }

    #[test]
    fn missing_btf_makes_the_layer_unavailable() {
        let err = DropLayer::from_btf_file(Path::new("/nonexistent/vmlinux")).unwrap_err();
        assert!(err.contains("no BTF"), "{err}");
        assert!(!err.contains('\n'));
    }

    #[test]
    fn btf_without_drop_reasons_makes_the_layer_unavailable() {
        // A valid BTF blob with a single `int` and nothing else: what a
        // kernel before 5.17 looks like to this layer.
        let btf = Btf::from_bytes(&tiny_btf()).unwrap();
        let err = DropLayer::from_btf(&btf, Path::new("/nonexistent")).unwrap_err();
        assert!(err.contains("no drop reasons"), "{err}");
    }

    /// One `BTF_KIND_INT` "int" (4 bytes, signed).
    fn tiny_btf() -> Vec<u8> {
        let mut types = Vec::new();
        for word in [1u32, 1 << 24, 4, (1 << 24) | 32] {
            types.extend_from_slice(&word.to_le_bytes());
        }
        crate::kernel::btf_fixture::blob(&types, b"\0int\0")
    }
}
