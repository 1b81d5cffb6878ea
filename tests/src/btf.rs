//! What the running kernel offers, from its own BTF
//! (`/sys/kernel/btf/vmlinux`), read here without macdrop's code or
//! library: the tests' independent witness of which drop reasons and attach
//! types a kernel has, so that no expectation hangs on a version number.
//!
//! Only as much of the format as finding enums and structs by name needs:
//! the header, the type section (walked to know each record's length) and
//! the string section.

use std::path::Path;

use anyhow::{Context as _, Result, bail, ensure};

/// Where the kernel exposes its BTF.
pub const VMLINUX: &str = "/sys/kernel/btf/vmlinux";

const MAGIC: u16 = 0xeb9f;
const KIND_STRUCT: u32 = 4;
const KIND_ENUM: u32 = 6;
const KIND_ENUM64: u32 = 19;

/// A parsed BTF blob: its enums with their members in order, and its
/// structs with their size and member names.
#[derive(Debug, Default)]
pub struct Btf {
    enums: Vec<(String, Vec<(String, i64)>)>,
    structs: Vec<(String, u32, Vec<String>)>,
}

impl Btf {
    /// The running kernel's BTF; `None` if it exposes none.
    pub fn kernel() -> Result<Option<Self>> {
        let path = Path::new(VMLINUX);
        if !path.exists() {
            return Ok(None);
        }
        let bytes = std::fs::read(path).with_context(|| format!("reading {VMLINUX}"))?;
        Self::parse(&bytes).map(Some)
    }

    /// Parses a little-endian BTF blob.
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        let u16_at = |off: usize| -> Result<u16> {
            Ok(u16::from_le_bytes(
                bytes
                    .get(off..off + 2)
                    .context("BTF shorter than its header")?
                    .try_into()?,
            ))
        };
        let u32_at = |off: usize| -> Result<u32> {
            Ok(u32::from_le_bytes(
                bytes
                    .get(off..off + 4)
                    .context("BTF cut short")?
                    .try_into()?,
            ))
        };
        ensure!(u16_at(0)? == MAGIC, "not little-endian BTF (magic)");
        let hdr_len = u32_at(4)? as usize;
        let (type_off, type_len) = (u32_at(8)? as usize, u32_at(12)? as usize);
        let (str_off, str_len) = (u32_at(16)? as usize, u32_at(20)? as usize);
        let types = hdr_len + type_off..hdr_len + type_off + type_len;
        let strings = bytes
            .get(hdr_len + str_off..hdr_len + str_off + str_len)
            .context("BTF string section out of bounds")?;
        let name = |off: u32| -> Result<String> {
            let rest = strings
                .get(off as usize..)
                .context("BTF name offset out of bounds")?;
            let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
            Ok(String::from_utf8_lossy(&rest[..end]).into_owned())
        };
        ensure!(types.end <= bytes.len(), "BTF type section out of bounds");

        let mut enums = Vec::new();
        let mut structs = Vec::new();
        let mut at = types.start;
        while at < types.end {
            let (name_off, info) = (u32_at(at)?, u32_at(at + 4)?);
            let (kind, vlen) = ((info >> 24) & 0x1f, (info & 0xffff) as usize);
            // Each kind's record: 12 bytes, then what follows it.
            let extra = match kind {
                0 => bail!("BTF type of kind 0 at byte {at}"),
                1 | 14 | 17 => 4,                  // INT, VAR, DECL_TAG
                2 | 7..=12 | 16 | 18 => 0, // PTR, FWD, TYPEDEF, qualifiers, FUNC, FLOAT, TYPE_TAG
                3 => 12,                   // ARRAY
                KIND_STRUCT | 5 | 15 => 12 * vlen, // STRUCT, UNION, DATASEC
                KIND_ENUM | 13 => 8 * vlen, // ENUM, FUNC_PROTO
                KIND_ENUM64 => 12 * vlen,  // ENUM64
                other => bail!("BTF kind {other} unknown to this reader"),
            };
            let body = at + 12;
            if kind == KIND_ENUM || kind == KIND_ENUM64 {
                let signed = info >> 31 == 1;
                let mut members = Vec::with_capacity(vlen);
                for i in 0..vlen {
                    let value = if kind == KIND_ENUM {
                        let m = body + 8 * i;
                        let raw = u32_at(m + 4)?;
                        if signed {
                            i64::from(raw as i32)
                        } else {
                            i64::from(raw)
                        }
                    } else {
                        let m = body + 12 * i;
                        // Wrapping: the tests compare names and, at most,
                        // values that fit.
                        ((u64::from(u32_at(m + 8)?) << 32) | u64::from(u32_at(m + 4)?)) as i64
                    };
                    let m = body + if kind == KIND_ENUM { 8 } else { 12 } * i;
                    members.push((name(u32_at(m)?)?, value));
                }
                enums.push((name(name_off)?, members));
            } else if kind == KIND_STRUCT {
                let members = (0..vlen)
                    .map(|i| name(u32_at(body + 12 * i)?))
                    .collect::<Result<Vec<_>>>()?;
                structs.push((name(name_off)?, u32_at(at + 8)?, members));
            }
            at = body + extra;
        }
        ensure!(at == types.end, "BTF type section does not end on a type");
        Ok(Self { enums, structs })
    }

    /// The members of the enum named `name` (the first, if several share
    /// it), or `None` if there is none.
    pub fn enum_members(&self, name: &str) -> Option<&[(String, i64)]> {
        self.enums
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, members)| members.as_slice())
    }

    /// The size in bytes of the struct named `name`, if there is one.
    pub fn struct_size(&self, name: &str) -> Option<u32> {
        self.structs
            .iter()
            .find(|(n, _, _)| n == name)
            .map(|(_, size, _)| *size)
    }

    /// Whether the struct `name` has a member `member`.
    pub fn has_struct_member(&self, name: &str, member: &str) -> bool {
        self.structs
            .iter()
            .find(|(n, _, _)| n == name)
            .is_some_and(|(_, _, m)| m.iter().any(|n| n == member))
    }

    /// Whether the enum `name` has a member `member`.
    pub fn has_enum_member(&self, name: &str, member: &str) -> bool {
        self.enum_members(name)
            .is_some_and(|m| m.iter().any(|(n, _)| n == member))
    }
}

/// What the running kernel's BTF says macdrop can get from it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelBtf {
    /// The kernel exposes BTF at all.
    pub btf: bool,
    /// `enum skb_drop_reason` exists: the kernel tells why it frees a
    /// frame, and macdrop must report confirmed drops.
    pub drop_reasons: bool,
    /// The reasons of the MAC-mismatch drops macdrop names.
    pub reason_otherhost: bool,
    pub reason_no_tx_target: bool,
    /// All three MAC-mismatch reasons: OTHERHOST, NO_TX_TARGET and
    /// IPV6_NDISC_NS_OTHERHOST.
    pub mismatch_reasons: bool,
    /// `BPF_TCX_INGRESS` in `enum bpf_attach_type`: tc programs attach
    /// through TCX links; without it, through a clsact qdisc.
    pub tcx: bool,
}

impl KernelBtf {
    /// Reads the running kernel's BTF (all false without one).
    pub fn read() -> Result<Self> {
        let Some(btf) = Btf::kernel()? else {
            return Ok(Self::default());
        };
        Ok(Self::of(&btf))
    }

    pub fn of(btf: &Btf) -> Self {
        let reason = |r: &str| btf.has_enum_member("skb_drop_reason", r);
        Self {
            btf: true,
            drop_reasons: btf.enum_members("skb_drop_reason").is_some(),
            reason_otherhost: reason("SKB_DROP_REASON_OTHERHOST"),
            reason_no_tx_target: reason("SKB_DROP_REASON_NO_TX_TARGET"),
            mismatch_reasons: [
                "SKB_DROP_REASON_OTHERHOST",
                "SKB_DROP_REASON_NO_TX_TARGET",
                "SKB_DROP_REASON_IPV6_NDISC_NS_OTHERHOST",
            ]
            .iter()
            .all(|r| reason(r)),
            tcx: btf.has_enum_member("bpf_attach_type", "BPF_TCX_INGRESS"),
        }
    }

    /// The hook macdrop's tc attach gets on this kernel, as its reports
    /// name it.
    pub fn tc_hook(&self) -> &'static str {
        if self.tcx { "tcx" } else { "tc-clsact" }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A BTF blob: an INT, a struct with two members, an unsigned ENUM, a
    /// FUNC_PROTO with one parameter and a signed ENUM64.
    fn blob() -> Vec<u8> {
        let strings: &[u8] = b"\0int\0s\0a\0b\0e\0E_A\0E_B\0wide\0W\0";
        let at = |s: &str| {
            let needle = format!("\0{s}\0");
            strings
                .windows(needle.len())
                .position(|w| w == needle.as_bytes())
                .unwrap() as u32
                + 1
        };
        let mut t: Vec<u32> = Vec::new();
        // INT "int": size 4, encoding word.
        t.extend([at("int"), 1 << 24, 4, 32]);
        // STRUCT "s", 2 members: (name, type, offset) each.
        t.extend([at("s"), (4 << 24) | 2, 8, at("a"), 1, 0, at("b"), 1, 32]);
        // ENUM "e" (unsigned), E_A = 1, E_B = 0xffff_fffe.
        t.extend([
            at("e"),
            (6 << 24) | 2,
            4,
            at("E_A"),
            1,
            at("E_B"),
            0xffff_fffe,
        ]);
        // FUNC_PROTO, 1 parameter: (name, type).
        t.extend([0, (13 << 24) | 1, 1, 0, 1]);
        // ENUM64 "wide" (signed), W = -2.
        t.extend([
            at("wide"),
            (1 << 31) | (19 << 24) | 1,
            8,
            at("W"),
            0xffff_fffe,
            0xffff_ffff,
        ]);
        let types: Vec<u8> = t.iter().flat_map(|w| w.to_le_bytes()).collect();
        let mut out = Vec::new();
        out.extend(MAGIC.to_le_bytes());
        out.extend([1, 0]);
        for w in [
            24u32,
            0,
            types.len() as u32,
            types.len() as u32,
            strings.len() as u32,
        ] {
            out.extend(w.to_le_bytes());
        }
        out.extend(types);
        out.extend(strings);
        out
    }

    #[test]
    fn enums_are_found_by_name_among_other_kinds() {
        let btf = Btf::parse(&blob()).unwrap();
        assert_eq!(
            btf.enum_members("e").unwrap(),
            [("E_A".to_owned(), 1), ("E_B".to_owned(), 0xffff_fffe)]
        );
        assert_eq!(btf.enum_members("wide").unwrap(), [("W".to_owned(), -2)]);
        assert!(btf.has_enum_member("e", "E_B"));
        assert!(!btf.has_enum_member("e", "E_C"));
        assert!(btf.enum_members("s").is_none());
        assert_eq!(btf.struct_size("s"), Some(8));
        assert!(btf.has_struct_member("s", "b"));
        assert!(!btf.has_struct_member("s", "c"));
        assert_eq!(btf.struct_size("e"), None);
        assert_eq!(KernelBtf::of(&btf).tc_hook(), "tc-clsact");
    }

    #[test]
    fn damaged_blobs_are_errors() {
        let good = blob();
        assert!(Btf::parse(&good[..good.len() - 3]).is_err());
        let mut bad = good.clone();
        bad[0] = 0;
        assert!(Btf::parse(&bad).is_err());
    }

    /// On the running kernel: the same enums as bpftool reads from the same
    /// file, member for member.
    #[test]
    fn the_kernels_enums_are_bpftools() {
        let Some(btf) = Btf::kernel().unwrap() else {
            crate::skip::record("BTF enums against bpftool's", "this kernel exposes no BTF");
            return;
        };
        let out = std::process::Command::new("bpftool")
            .args(["-j", "btf", "dump", "file", VMLINUX])
            .output()
            .expect("bpftool runs (cargo xtask setup installs it)");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let dump: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        // The first enum of each name, as `enum_members` finds it.
        let mut seen = std::collections::HashSet::new();
        let mut compared = 0;
        for t in dump["types"].as_array().unwrap() {
            let Some(name) = t["name"].as_str() else {
                continue;
            };
            if !(t["kind"] == "ENUM" || t["kind"] == "ENUM64")
                || name == "(anon)"
                || !seen.insert(name)
            {
                continue;
            }
            let theirs: Vec<&str> = t["values"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v["name"].as_str().unwrap())
                .collect();
            let ours: Vec<&str> = btf
                .enum_members(name)
                .unwrap_or_else(|| panic!("enum {name}"))
                .iter()
                .map(|(n, _)| n.as_str())
                .collect();
            assert_eq!(ours, theirs, "enum {name}");
            compared += 1;
        }
        assert!(compared > 100, "only {compared} enums compared");
        let k = KernelBtf::of(&btf);
        assert_eq!(
            k.drop_reasons,
            dump["types"]
                .as_array()
                .unwrap()
                .iter()
                .any(|t| t["name"] == "skb_drop_reason")
        );
    }
}
