//! Names of the drop reasons that subsystems define outside
//! `enum skb_drop_reason` (Linux >= 6.4): a reason whose high bits
//! (`SKB_DROP_REASON_SUBSYS_MASK`) are a member of
//! `enum skb_drop_reason_subsys` belongs to that subsystem, which numbers
//! its own reasons in the low bits with an enum of its module. Open
//! vSwitch's (`enum ovs_drop_reason`, module `openvswitch`) are the ones
//! issue 18 needs: `openvswitch_not_linux_bridge` shows them, since on an
//! OVS port the FDB checks do not apply and OVS's own drops are the
//! evidence.
//!
//! Subsystem numbers and reason values come from BTF, like every other
//! reason: the subsystem from vmlinux, the reasons from the module's split
//! BTF (`/sys/kernel/btf/<module>`) when the module is loaded when macdrop
//! starts. Without the module's BTF a reason is named by its subsystem and
//! number (`OPENVSWITCH_REASON_3`), never `UNKNOWN_`.

use std::{collections::BTreeMap, path::Path};

use btf_rs::{Btf, Type};

/// The subsystem enum's name in vmlinux's BTF.
const SUBSYS_ENUM: &str = "skb_drop_reason_subsys";
/// The prefix of its members.
const SUBSYS_PREFIX: &str = "SKB_DROP_REASON_SUBSYS_";
/// Members that are bounds, not subsystems.
const NOT_SUBSYSTEMS: [&str; 2] = ["CORE", "NUM"];

/// Subsystem (without the prefix) -> the module that defines its reasons
/// and that module's enum of them. The enum names are the kernel's, from
/// net/openvswitch/drop.h and net/mac80211/drop.h.
const MODULE_ENUMS: [(&str, &str, &str); 3] = [
    ("OPENVSWITCH", "openvswitch", "ovs_drop_reason"),
    ("MAC80211_UNUSABLE", "mac80211", "mac80211_drop_reason"),
    ("MAC80211_MONITOR", "mac80211", "mac80211_drop_reason"),
];

/// What the running kernel says of subsystem drop reasons.
#[derive(Clone, Debug, Default)]
pub struct Subsystems {
    /// Bits of a reason that hold its subsystem (from
    /// `SKB_DROP_REASON_SUBSYS_MASK`); 0 when the kernel has none.
    mask: u32,
    /// Subsystem number -> name without the prefix ("OPENVSWITCH").
    names: BTreeMap<u32, String>,
    /// Reason value -> name, from the loaded modules' BTF.
    reasons: BTreeMap<u32, String>,
}

impl Subsystems {
    /// Reads the subsystems from vmlinux's BTF (`base`) given the value of
    /// `SKB_DROP_REASON_SUBSYS_MASK`, and the reasons of each from its
    /// module's BTF under `btf_dir` when that module is loaded.
    pub fn read(base: &Btf, mask: Option<u32>, btf_dir: &Path) -> Self {
        let Some(mask) = mask.filter(|m| *m != 0) else {
            return Self::default();
        };
        let names: BTreeMap<u32, String> = enum_members(base, SUBSYS_ENUM)
            .into_iter()
            .filter_map(|(name, value)| {
                let short = name.strip_prefix(SUBSYS_PREFIX)?;
                (!NOT_SUBSYSTEMS.contains(&short)).then(|| (value, short.to_owned()))
            })
            .collect();
        let mut out = Self {
            mask,
            names,
            reasons: BTreeMap::new(),
        };
        let mut read_modules = Vec::new();
        for (subsys, module, enum_name) in MODULE_ENUMS {
            if !out.names.values().any(|n| n == subsys) || read_modules.contains(&module) {
                continue;
            }
            read_modules.push(module);
            let path = btf_dir.join(module);
            // A module not loaded has no BTF file: its reasons keep their
            // subsystem's name and number. A split BTF that does not parse
            // is treated the same way: names are a convenience, counts are
            // not lost.
            let Ok(split) = Btf::from_split_file(&path, base) else {
                continue;
            };
            out.add_module_reasons(&split, enum_name);
        }
        out
    }

    /// Adds the members of `enum_name` in `btf` (a module's split BTF)
    /// that carry a known subsystem's bits.
    fn add_module_reasons(&mut self, btf: &Btf, enum_name: &str) {
        for (name, value) in enum_members(btf, enum_name) {
            // `__OVS_DROP_REASON` (the subsystem's base, not a reason) and
            // `OVS_DROP_MAX` are bounds, as in the core enum.
            if name.starts_with("__") || name.ends_with("_MAX") {
                continue;
            }
            if self.subsystem(value).is_some() {
                self.reasons.entry(value).or_insert(name);
            }
        }
    }

    fn shift(&self) -> u32 {
        self.mask.trailing_zeros()
    }

    /// The subsystem's name of a reason with subsystem bits, if known.
    pub fn subsystem(&self, value: u32) -> Option<&str> {
        if self.mask == 0 || value & self.mask == 0 {
            return None;
        }
        self.names
            .get(&((value & self.mask) >> self.shift()))
            .map(String::as_str)
    }

    /// The name of a subsystem's reason: its module's enum member, else
    /// `<SUBSYSTEM>_REASON_<n>`; None when `value` belongs to no known
    /// subsystem.
    pub fn name(&self, value: u32) -> Option<String> {
        if let Some(name) = self.reasons.get(&value) {
            return Some(name.clone());
        }
        let subsys = self.subsystem(value)?;
        Some(format!("{subsys}_REASON_{}", value & !self.mask))
    }
}

/// Every member of the first enum called `name` in `btf`, as (name,
/// value); empty if there is none. Enum64 members wider than 32 bits are
/// not reasons the tracepoint can carry.
pub fn enum_members(btf: &Btf, name: &str) -> Vec<(String, u32)> {
    let types = btf.resolve_types_by_name(name).unwrap_or_default();
    for ty in types {
        let members: Vec<(String, u32)> = match ty {
            Type::Enum(e) => e
                .members
                .iter()
                .filter_map(|m| Some((btf.resolve_name(m).ok()?, m.val())))
                .collect(),
            Type::Enum64(e) => e
                .members
                .iter()
                .filter_map(|m| Some((btf.resolve_name(m).ok()?, u32::try_from(m.val()).ok()?)))
                .collect(),
            _ => continue,
        };
        return members;
    }
    Vec::new()
}

#[cfg(test)]
mod tests {
    //! Crafted BTF: a vmlinux with both enums and an `openvswitch` module
    //! whose split BTF numbers OVS's reasons; and the running kernel's own
    //! subsystem enum, whose values are read, never written here.

    use super::*;

    const OVS: u32 = 2;

    /// A BTF blob of enums (name, [(member, value)]); `split` continues a
    /// base with `base_types` types and `base_strings` bytes of strings.
    fn btf(enums: &[(&str, &[(&str, u32)])], split: Option<(u32, u32)>) -> Vec<u8> {
        let (_, str_base) = split.unwrap_or((0, 0));
        let mut strings = if split.is_some() {
            Vec::new()
        } else {
            vec![0u8]
        };
        let mut add = |s: &str| {
            let off = str_base + strings.len() as u32;
            strings.extend_from_slice(s.as_bytes());
            strings.push(0);
            off
        };
        let mut types = Vec::new();
        for (name, members) in enums {
            let words = [add(name), (6 << 24) | (1 << 31) | members.len() as u32, 4];
            let members: Vec<u32> = members.iter().flat_map(|(m, v)| [add(m), *v]).collect();
            for w in words.into_iter().chain(members) {
                types.extend_from_slice(&w.to_le_bytes());
            }
        }
        crate::kernel::btf_fixture::blob(&types, &strings)
    }

    const MASK: u32 = 0xffff_0000;

    fn vmlinux() -> Vec<u8> {
        btf(
            &[
                (
                    "skb_drop_reason",
                    &[
                        ("SKB_DROP_REASON_NOT_SPECIFIED", 2),
                        ("SKB_DROP_REASON_SUBSYS_MASK", MASK),
                    ],
                ),
                (
                    "skb_drop_reason_subsys",
                    &[
                        ("SKB_DROP_REASON_SUBSYS_CORE", 0),
                        ("SKB_DROP_REASON_SUBSYS_MAC80211_UNUSABLE", 1),
                        ("SKB_DROP_REASON_SUBSYS_OPENVSWITCH", OVS),
                        ("SKB_DROP_REASON_SUBSYS_NUM", 3),
                    ],
                ),
            ],
            None,
        )
    }

    fn ovs_module(base: &[u8]) -> Vec<u8> {
        // The base's type count (2 enums) and string section size, read
        // from its header.
        let str_len = u32::from_le_bytes(base[20..24].try_into().unwrap());
        btf(
            &[(
                "ovs_drop_reason",
                &[
                    ("__OVS_DROP_REASON", OVS << 16),
                    ("OVS_DROP_LAST_ACTION", (OVS << 16) + 1),
                    ("OVS_DROP_EXPLICIT", (OVS << 16) + 3),
                    ("OVS_DROP_MAX", (OVS << 16) + 4),
                ],
            )],
            Some((2, str_len)),
        )
    }

    #[test]
    fn a_loaded_module_names_its_reasons() {
        let base_bytes = vmlinux();
        let base = Btf::from_bytes(&base_bytes).unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("openvswitch"), ovs_module(&base_bytes)).unwrap();
        let s = Subsystems::read(&base, Some(MASK), dir.path());
        assert_eq!(
            s.name((OVS << 16) + 1).as_deref(),
            Some("OVS_DROP_LAST_ACTION")
        );
        assert_eq!(
            s.name((OVS << 16) + 3).as_deref(),
            Some("OVS_DROP_EXPLICIT")
        );
        // A reason the module does not name keeps its subsystem.
        assert_eq!(
            s.name((OVS << 16) + 9).as_deref(),
            Some("OPENVSWITCH_REASON_9")
        );
        // The bounds are not reasons.
        assert_eq!(s.name(OVS << 16).as_deref(), Some("OPENVSWITCH_REASON_0"));
        assert_eq!(
            s.name((OVS << 16) + 4).as_deref(),
            Some("OPENVSWITCH_REASON_4")
        );
        // A core reason, and a subsystem number the kernel does not have.
        assert_eq!(s.name(2), None);
        assert_eq!(s.name((3 << 16) + 1), None);
        assert_eq!(s.subsystem((1 << 16) + 5), Some("MAC80211_UNUSABLE"));
    }

    #[test]
    fn without_the_module_a_reason_keeps_its_subsystem() {
        let base_bytes = vmlinux();
        let base = Btf::from_bytes(&base_bytes).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let s = Subsystems::read(&base, Some(MASK), dir.path());
        assert_eq!(
            s.name((OVS << 16) + 1).as_deref(),
            Some("OPENVSWITCH_REASON_1")
        );
        // A kernel without the mask has no subsystems at all.
        let none = Subsystems::read(&base, None, dir.path());
        assert_eq!(none.name((OVS << 16) + 1), None);
    }

    /// The running kernel's own subsystem enum, where it has one: every
    /// subsystem it lists gets reasons named after it.
    #[test]
    fn the_running_kernels_subsystems_are_read_from_its_btf() {
        let path = Path::new(super::super::drops::VMLINUX_BTF);
        let Ok(base) = Btf::from_file(path) else {
            macdrop_tests::skip::record(
                "drops: subsystem drop reasons read from the kernel's BTF",
                "the kernel exposes no BTF",
            );
            return;
        };
        let mask = enum_members(&base, "skb_drop_reason")
            .into_iter()
            .find(|(n, _)| n == "SKB_DROP_REASON_SUBSYS_MASK")
            .map(|(_, v)| v);
        let listed = enum_members(&base, SUBSYS_ENUM);
        if mask.is_none() || listed.is_empty() {
            macdrop_tests::skip::record(
                "drops: subsystem drop reasons read from the kernel's BTF",
                "this kernel has no drop-reason subsystems (Linux >= 6.4 has them)",
            );
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let s = Subsystems::read(&base, mask, dir.path());
        let shift = mask.unwrap().trailing_zeros();
        let mut named = 0;
        for (name, value) in listed {
            let short = name.strip_prefix(SUBSYS_PREFIX).unwrap();
            let reason = (value << shift) | 7;
            if NOT_SUBSYSTEMS.contains(&short) {
                assert_eq!(s.subsystem(reason), None, "{name}");
                continue;
            }
            assert_eq!(s.name(reason), Some(format!("{short}_REASON_7")), "{name}");
            named += 1;
        }
        assert!(named > 0, "no subsystem besides CORE and NUM");
    }
}
