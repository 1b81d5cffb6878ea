//! Reads a pcapng file back with the tools an engineer would use: tshark
//! for every field (interface name, packet comment, lengths, VLAN ids) and
//! tcpdump as a second reader, so a file only macdrop's own library could
//! parse fails the tests. Where neither tool exists (the kernel matrix's
//! guests), [`read_raw`] reads the blocks with the pcap-file crate.

use std::{path::Path, process::Command};

use anyhow::{Context as _, Result, bail, ensure};

/// One frame of the file, as tshark shows it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CapturedFrame {
    pub interface: String,
    pub comment: String,
    pub eth_src: String,
    pub eth_dst: String,
    pub ip_src: String,
    pub ip_dst: String,
    /// VLAN ids, outermost first.
    pub vlans: Vec<u16>,
    /// Length on the wire.
    pub len: u32,
    /// Bytes in the file.
    pub cap_len: u32,
}

const FIELDS: [&str; 9] = [
    "frame.interface_name",
    "frame.comment",
    "eth.src",
    "eth.dst",
    "ip.src",
    "ip.dst",
    "vlan.id",
    "frame.len",
    "frame.cap_len",
];

/// Every frame of `path`, in file order (tshark), after checking tcpdump
/// reads as many.
pub fn read(path: &Path) -> Result<Vec<CapturedFrame>> {
    let mut cmd = Command::new("tshark");
    cmd.arg("-r").arg(path).args(["-T", "fields"]);
    for f in FIELDS {
        cmd.args(["-e", f]);
    }
    cmd.args([
        "-E",
        "separator=/t",
        "-E",
        "occurrence=a",
        "-E",
        "aggregator=,",
    ]);
    let out = cmd
        .output()
        .context("cannot run tshark (cargo xtask setup installs it)")?;
    ensure!(
        out.status.success(),
        "tshark -r {} failed: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let frames: Vec<CapturedFrame> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(parse_line)
        .collect::<Result<_>>()?;
    let by_tcpdump = tcpdump_count(path)?;
    ensure!(
        by_tcpdump == frames.len(),
        "tcpdump reads {by_tcpdump} frame(s) from {}, tshark {}",
        path.display(),
        frames.len()
    );
    Ok(frames)
}

fn parse_line(line: &str) -> Result<CapturedFrame> {
    let cols: Vec<&str> = line.split('\t').collect();
    if cols.len() != FIELDS.len() {
        bail!("tshark line with {} fields: {line:?}", cols.len());
    }
    let number = |s: &str| {
        s.parse::<u32>()
            .with_context(|| format!("{s:?} in {line:?}"))
    };
    Ok(CapturedFrame {
        interface: cols[0].to_owned(),
        comment: cols[1].to_owned(),
        eth_src: cols[2].to_owned(),
        eth_dst: cols[3].to_owned(),
        // Inner headers of ICMP errors would add more; the first is the frame's.
        ip_src: cols[4].split(',').next().unwrap_or("").to_owned(),
        ip_dst: cols[5].split(',').next().unwrap_or("").to_owned(),
        vlans: cols[6]
            .split(',')
            .filter(|s| !s.is_empty())
            .map(|s| s.parse().with_context(|| format!("vlan {s:?}")))
            .collect::<Result<_>>()?,
        len: number(cols[7])?,
        cap_len: number(cols[8])?,
    })
}

/// Frames `tcpdump -r` reads from `path`.
pub fn tcpdump_count(path: &Path) -> Result<usize> {
    let out = Command::new("tcpdump")
        .args(["-nn", "-r"])
        .arg(path)
        .output()
        .context("cannot run tcpdump")?;
    ensure!(
        out.status.success(),
        "tcpdump -r {} failed: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).lines().count())
}

/// One enhanced packet block, as the pcap-file crate reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawFrame {
    /// The `if_name` of the block's interface description.
    pub interface: String,
    /// The block's comments, joined with "; ".
    pub comment: String,
    pub orig_len: u32,
    /// The bytes in the file.
    pub data: Vec<u8>,
}

/// Every packet of the pcapng file `path`, in file order, with the pcap-file
/// crate (no external tool).
pub fn read_raw(path: &Path) -> Result<Vec<RawFrame>> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    parse_raw(&bytes).with_context(|| format!("in {}", path.display()))
}

/// Every packet of a pcapng capture (e.g. what `--pcap -` wrote to stdout),
/// in order, with the pcap-file crate.
pub fn parse_raw(bytes: &[u8]) -> Result<Vec<RawFrame>> {
    use pcap_file::pcapng::{
        Block, PcapNgReader,
        blocks::{
            enhanced_packet::EnhancedPacketOption,
            interface_description::InterfaceDescriptionOption,
        },
    };
    let mut reader = PcapNgReader::new(bytes).context("not pcapng")?;
    let mut names: Vec<String> = Vec::new();
    let mut frames = Vec::new();
    while let Some(block) = reader.next_block() {
        match block.context("a block that does not parse")? {
            Block::InterfaceDescription(idb) => names.push(
                idb.options
                    .iter()
                    .find_map(|o| match o {
                        InterfaceDescriptionOption::IfName(n) => Some(n.to_string()),
                        _ => None,
                    })
                    .unwrap_or_default(),
            ),
            Block::EnhancedPacket(epb) => {
                let comments: Vec<String> = epb
                    .options
                    .iter()
                    .filter_map(|o| match o {
                        EnhancedPacketOption::Comment(c) => Some(c.to_string()),
                        _ => None,
                    })
                    .collect();
                frames.push(RawFrame {
                    interface: names.get(epb.interface_id as usize).cloned().with_context(
                        || format!("packet of undescribed interface {}", epb.interface_id),
                    )?,
                    comment: comments.join("; "),
                    orig_len: epb.original_len,
                    data: epb.data.to_vec(),
                });
            }
            _ => {}
        }
    }
    Ok(frames)
}
