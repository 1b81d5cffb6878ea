//! The pcapng file of `--pcap`, written with the `pcap-file` crate: a
//! section header, one interface description per interface (added before
//! its first packet), and enhanced packet blocks with a comment each.
//!
//! Blocks are encoded into memory and reach the file only whole, with one
//! `write_all` per `flush`, so the file never ends in half a block, however
//! macdrop stops. Which file, and how it is opened: `target`.

use std::{
    borrow::Cow,
    fs::File,
    io::Write as _,
    path::{Path, PathBuf},
    time::Duration,
};

use pcap_file::{
    DataLink, Endianness,
    pcapng::{
        PcapNgWriter,
        blocks::{
            enhanced_packet::{EnhancedPacketBlock, EnhancedPacketOption},
            interface_description::{InterfaceDescriptionBlock, InterfaceDescriptionOption},
            section_header::{SectionHeaderBlock, SectionHeaderOption},
        },
    },
};

use super::target::Target;
use crate::{error::Failure, output::write_failure};

/// `if_tsresol` 9: timestamps in nanoseconds, which is what `pcap-file`
/// writes (the pcapng default would be microseconds).
const TS_RESOL_NS: u8 = 9;

pub struct PcapFile {
    path: PathBuf,
    file: File,
    /// Encodes blocks into a buffer; `flush` moves whole blocks to `file`.
    writer: PcapNgWriter<Vec<u8>>,
    interfaces: u32,
}

/// One interface description.
pub struct Interface<'a> {
    pub name: &'a str,
    pub description: &'a str,
    pub snaplen: u32,
}

/// One packet.
pub struct Packet<'a> {
    pub interface: u32,
    /// Since the Unix epoch.
    pub timestamp: Duration,
    pub original_len: u32,
    pub data: &'a [u8],
    pub comment: &'a str,
}

impl PcapFile {
    /// Opens the target (`Target::open`: exclusively, no link followed,
    /// 0600) and writes the section header. Errors are one line naming
    /// the path, the reason and the fix.
    pub fn create(target: &Target) -> Result<Self, Failure> {
        let file = target.open()?;
        let section = SectionHeaderBlock {
            endianness: Endianness::native(),
            options: vec![SectionHeaderOption::UserApplication(Cow::Owned(format!(
                "macdrop {}",
                env!("CARGO_PKG_VERSION")
            )))],
            ..SectionHeaderBlock::default()
        };
        let writer = PcapNgWriter::with_section_header(Vec::new(), section)
            .map_err(|e| Failure::environment(format!("cannot encode pcapng: {e}")))?;
        let mut this = Self {
            path: target.path.clone(),
            file,
            writer,
            interfaces: 0,
        };
        this.flush()?;
        Ok(this)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Adds an interface description (Ethernet); returns its id.
    pub fn add_interface(&mut self, iface: &Interface) -> Result<u32, Failure> {
        let block = InterfaceDescriptionBlock {
            linktype: DataLink::ETHERNET,
            snaplen: iface.snaplen,
            options: vec![
                InterfaceDescriptionOption::IfName(Cow::Borrowed(iface.name)),
                InterfaceDescriptionOption::IfDescription(Cow::Borrowed(iface.description)),
                InterfaceDescriptionOption::IfTsResol(TS_RESOL_NS),
            ],
        };
        self.writer
            .write_pcapng_block(block)
            .map_err(|e| self.failed(&e))?;
        self.interfaces += 1;
        Ok(self.interfaces - 1)
    }

    /// Adds a packet of an interface added before.
    pub fn add_packet(&mut self, packet: &Packet) -> Result<(), Failure> {
        let block = EnhancedPacketBlock {
            interface_id: packet.interface,
            timestamp: packet.timestamp,
            original_len: packet.original_len,
            data: Cow::Borrowed(packet.data),
            options: vec![EnhancedPacketOption::Comment(Cow::Borrowed(packet.comment))],
        };
        self.writer
            .write_pcapng_block(block)
            .map_err(|e| self.failed(&e))?;
        Ok(())
    }

    /// Writes the blocks encoded so far to the file, whole.
    pub fn flush(&mut self) -> Result<(), Failure> {
        let pending = std::mem::take(self.writer.get_mut());
        if pending.is_empty() {
            return Ok(());
        }
        self.file
            .write_all(&pending)
            .and_then(|()| self.file.flush())
            .map_err(|e| {
                write_failure(
                    &e,
                    &format!("the pcap evidence to {}", super::target::name(&self.path)),
                )
            })
    }

    fn failed(&self, e: &pcap_file::PcapError) -> Failure {
        Failure::environment(format!(
            "cannot write the pcap evidence to {}: {e}",
            super::target::name(&self.path)
        ))
    }
}

/// Test helper: the packets of a file this module wrote (removed after
/// reading) and its number of interfaces, read back with `pcap-file`.
#[cfg(test)]
pub fn read_back(path: &Path) -> (Vec<EnhancedPacketBlock<'static>>, usize) {
    let bytes = std::fs::read(path).unwrap();
    let _ = std::fs::remove_file(path);
    let mut reader = pcap_file::pcapng::PcapNgReader::new(&bytes[..]).unwrap();
    let mut packets = Vec::new();
    while let Some(block) = reader.next_block() {
        if let pcap_file::pcapng::Block::EnhancedPacket(p) = block.unwrap() {
            packets.push(p.into_owned());
        }
    }
    (packets, reader.interfaces().len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str) -> Target {
        let path = std::env::temp_dir().join(format!("macdrop-pcap-{}-{name}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        Target {
            path,
            overwrite: false,
        }
    }

    #[test]
    fn writes_a_file_pcap_file_reads_back() {
        let target = temp("roundtrip.pcapng");
        let mut pcap = PcapFile::create(&target).unwrap();
        let p1 = pcap
            .add_interface(&Interface {
                name: "p1",
                description: "port of br0",
                snaplen: 128,
            })
            .unwrap();
        let frame = [0xaau8; 60];
        pcap.add_packet(&Packet {
            interface: p1,
            timestamp: Duration::new(1_700_000_000, 123_456_789),
            original_len: 1500,
            data: &frame,
            comment: "host_ip_wrong_mac on p1 (port of br0)",
        })
        .unwrap();
        pcap.flush().unwrap();

        let (packets, interfaces) = read_back(&target.path);
        assert_eq!(packets.len(), 1);
        let p = &packets[0];
        assert_eq!(p.original_len, 1500);
        assert_eq!(&p.data[..], &frame[..]);
        assert_eq!(p.timestamp, Duration::new(1_700_000_000, 123_456_789));
        assert_eq!(interfaces, 1);
    }
}
