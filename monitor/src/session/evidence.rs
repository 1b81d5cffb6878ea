//! The session's part of `--pcap`: its ring buffer and whom a record names.

use super::*;

impl Session {
    /// The evidence ring, with `--pcap`.
    pub fn evidence(&self) -> Option<&EvidenceRing> {
        self.evidence.as_ref()
    }

    /// Every evidence record waiting in the ring, each with who received
    /// it (None for an interface the session does not know).
    pub fn drain_evidence(&mut self) -> Vec<(monitor_common::EvidenceRecord, Option<Receiver>)> {
        let mut records = Vec::new();
        if let Some(ring) = &mut self.evidence {
            ring.drain(&mut records);
        }
        records
            .into_iter()
            .map(|r| {
                let receiver = self.receiver(r.ifindex);
                (r, receiver)
            })
            .collect()
    }

    /// Closes the capture budget: the kernel copies no more frames.
    pub fn stop_capture(&mut self) -> anyhow::Result<()> {
        match &mut self.evidence {
            Some(ring) => ring.set_budget(0),
            None => Ok(()),
        }
    }

    /// The kernel's capture counts (zero without `--pcap`).
    pub fn evidence_counts(&self) -> anyhow::Result<Counts> {
        match &self.evidence {
            Some(ring) => ring.counts(),
            None => Ok(Counts::default()),
        }
    }

    /// The interface `ifindex` of this namespace, as the evidence names it
    /// (the latest member with that ifindex: ifindexes may be reused).
    pub(super) fn receiver(&self, ifindex: u32) -> Option<Receiver> {
        let m = self
            .members
            .iter()
            .rev()
            .find(|m| m.watched.ifindex == ifindex)?;
        Some(Receiver {
            name: m.watched.name.clone(),
            role: m.watched.role,
            master: m.watched.master().map(str::to_owned),
            netns: self.ns.inode,
            netns_name: self.ns.name.clone(),
        })
    }
}
