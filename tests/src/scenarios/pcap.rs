//! `pcap`: `--pcap FILE`, read back with the pcap-file crate.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, ensure};

use super::{
    Attach, KernelFacts, NS_PREFIX, Observed, Outcome, expect_nothing_left, observe, settle, spawn,
};
use crate::{
    frames::{TPID_8021Q, ipv4_udp, with_vlan_tags},
    lab::{
        FOREIGN_IPV4, FOREIGN_MAC, PEER_IFACE, STANDALONE_IFACE, STANDALONE_IPV4, STANDALONE_MAC,
        STANDALONE_PEER_IPV4, STANDALONE_PEER_MAC, StandaloneLab,
    },
    macdrop::Report,
    pcap::{RawFrame, read_raw},
    sender::RawSender,
};

/// A file removed on drop.
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// `--pcap FILE` on the standalone veth: the mismatched frames (for the
/// veth's IP, one of them VLAN-tagged, and for another host, one longer
/// than the snap length) and only those in the file, exactly as sent up to
/// 128 bytes, with their lengths on the wire, whichever program captured
/// them (tc, multi-buffer XDP, or the legacy XDP program before 5.18).
pub fn run(bin: &Path, attach: &Attach, kernel: &KernelFacts) -> Result<Outcome> {
    const SNAPLEN: usize = 128;
    let lab = StandaloneLab::new()?;
    let file = RemoveOnDrop(std::env::temp_dir().join(format!(
        "{NS_PREFIX}-{}-{}.pcapng",
        std::process::id(),
        attach.label()
    )));
    let path = file.0.to_str().context("temp path is not UTF-8")?;
    let args = ["--iface", STANDALONE_IFACE, "--pcap", path];
    let mut macdrop = match spawn(bin, lab.host(), &args, attach)? {
        Ok(macdrop) => macdrop,
        Err(why) => return Ok(Outcome::Unsupported(why)),
    };

    let tx = RawSender::new(lab.peer(), PEER_IFACE)?;
    let (src, sip) = (STANDALONE_PEER_MAC, STANDALONE_PEER_IPV4);
    let to_host = ipv4_udp(FOREIGN_MAC, src, sip, STANDALONE_IPV4);
    let tagged = with_vlan_tags(&to_host, &[(TPID_8021Q, 10)]);
    // Ethernet padding past the datagram: the IP layer trims it.
    let mut large = ipv4_udp(FOREIGN_MAC, src, sip, FOREIGN_IPV4);
    large.resize(1000, 0x5a);
    let own = ipv4_udp(STANDALONE_MAC, src, sip, STANDALONE_IPV4);
    // (frame, copies, mismatched)
    let plan: [(&[u8], usize, bool); 4] = [
        (&own, 2, false),
        (&to_host, 2, true),
        (&tagged, 1, true),
        (&large, 1, true),
    ];
    let mut want: Vec<RawFrame> = Vec::new();
    for (frame, copies, mismatched) in plan {
        tx.send(frame, copies)?;
        if mismatched {
            want.extend(std::iter::repeat_n(
                RawFrame {
                    interface: STANDALONE_IFACE.to_owned(),
                    comment: String::new(),
                    orig_len: frame.len() as u32,
                    data: frame[..frame.len().min(SNAPLEN)].to_vec(),
                },
                copies,
            ));
        }
    }
    let n = want.len() as u64;
    let written = |r: &Report| r.pcap.as_ref().map(|p| p.frames_written);
    settle(&mut macdrop, |r| written(r) == Some(n))?;
    let observed = observe(&macdrop, kernel)?;
    let last = macdrop.stop()?;
    expect_nothing_left(lab.host())?;
    let summary = last.pcap.context("no pcap object in the final report")?;
    ensure!(
        (
            summary.frames_written,
            summary.not_captured_rate_limit,
            summary.not_captured_ring_full
        ) == (n, 0, 0),
        "final report: {summary:?}, expected {n} frames written and none missed"
    );

    let mut got = read_raw(&file.0)?;
    for f in &got {
        ensure!(
            f.comment
                .ends_with(&format!("on {STANDALONE_IFACE} (standalone)")),
            "comment {:?}",
            f.comment
        );
    }
    // Frames sent back to back may be received on different CPUs, so
    // compare as sorted lists: exact frames, exact copies.
    for f in got.iter_mut() {
        f.comment.clear();
    }
    got.sort_by(|a, b| a.data.cmp(&b.data));
    want.sort_by(|a, b| a.data.cmp(&b.data));
    ensure!(
        got == want,
        "{} read back {} frame(s), expected {}: got {got:02x?}",
        file.0.display(),
        got.len(),
        want.len()
    );
    let hook = observed
        .hooks
        .get("standalone")
        .cloned()
        .unwrap_or_else(|| "?".to_owned());
    Ok(Outcome::Ran(Box::new(Observed {
        pcap: Some(format!("{n} frames ({hook})")),
        ..Observed::default()
    })))
}
