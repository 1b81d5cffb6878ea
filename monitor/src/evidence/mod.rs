//! `--pcap FILE`: the first N mismatched frames, as the kernel captured
//! them (`kernel::evidence`), written to a pcapng file (`pcap`) with the
//! interface they arrived on and why they count as mismatched.
//!
//! The kernel holds the budget and the rate bound; this side writes at most
//! N frames (concurrent CPUs may hand over a few more, which are dropped)
//! and, once N are written, closes the budget so the kernel stops copying.

pub mod pcap;
pub mod target;

use std::{
    collections::HashMap,
    path::PathBuf,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use monitor_common::{EVIDENCE_BURST, EVIDENCE_RATE, EVIDENCE_SNAPLEN, EvidenceRecord};

use crate::{
    classes::{CLASSES, ClassInfo, Relation},
    error::Failure,
    kernel::evidence::Counts,
    topology::Role,
};
use pcap::{Interface, Packet, PcapFile};
pub use target::Target;

/// Default of `--pcap-count`.
pub const DEFAULT_COUNT: u64 = 100;

/// What `--pcap` asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EvidencePlan {
    /// The file (or stdout) and whether it may be replaced.
    pub target: Target,
    /// Frames to write at most.
    pub count: u64,
}

/// Who received a frame, for the interface description and the comment.
#[derive(Clone, Debug)]
pub struct Receiver {
    pub name: String,
    pub role: Role,
    pub master: Option<String>,
    pub netns: u32,
    pub netns_name: Option<String>,
}

impl Receiver {
    /// "port of br0", "bridge", "standalone".
    fn role_text(&self) -> String {
        match (&self.role, &self.master) {
            (Role::Port, Some(master)) => format!("port of {master}"),
            (role, _) => role.as_str().to_owned(),
        }
    }

    /// "port of br0, netns 4026532177 (lab)".
    fn description(&self) -> String {
        let ns = match &self.netns_name {
            Some(name) => format!("netns {} ({name})", self.netns),
            None => format!("netns {}", self.netns),
        };
        format!("{}, {ns}", self.role_text())
    }
}

/// The mismatch bits as the report's class names, e.g.
/// "host_ip_wrong_mac + stale_mac": the parts of a class (the specific
/// reasons) before the classes themselves.
pub fn reasons(bits: u8) -> String {
    let part = |c: &&ClassInfo| matches!(c.relation, Relation::Subset(_));
    let names: Vec<&str> = CLASSES
        .iter()
        .filter(part)
        .chain(CLASSES.iter().filter(|c| !part(c)))
        .filter(|c| bits & c.mismatch != 0)
        .map(|c| c.name)
        .collect();
    if names.is_empty() {
        "mismatched".to_owned()
    } else {
        names.join(" + ")
    }
}

/// What was captured, for the reports; serialized as JSON's `pcap`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Summary {
    pub file: PathBuf,
    #[serde(rename = "frames_limit")]
    pub limit: u64,
    #[serde(rename = "frames_written")]
    pub written: u64,
    /// Mismatched frames within the budget the rate bound kept out.
    #[serde(rename = "not_captured_rate_limit")]
    pub rate_limited: u64,
    /// Not captured because the ring buffer was full.
    #[serde(rename = "not_captured_ring_full")]
    pub ring_full: u64,
}

impl Summary {
    /// One line for the table reports.
    pub fn line(&self) -> String {
        let mut line = format!(
            "pcap: {} of at most {} mismatched frame(s) written to {}",
            self.written,
            self.limit,
            target::name(&self.file)
        );
        if self.rate_limited + self.ring_full > 0 {
            line += &format!(
                "; not captured: {} by the rate bound ({} frames/s per CPU, bursts of {}), {} \
                 with the ring buffer full",
                self.rate_limited, EVIDENCE_RATE, EVIDENCE_BURST, self.ring_full
            );
        }
        line
    }
}

pub struct Evidence {
    pcap: PcapFile,
    limit: u64,
    written: u64,
    /// (netns, ifindex) -> interface id in the file.
    interfaces: HashMap<(u32, u32), u32>,
    /// Wall clock minus CLOCK_MONOTONIC (the kernel's ktime), taken once:
    /// a frame's wall time is its ktime plus this.
    clock_offset: i128,
}

impl Evidence {
    /// Creates the file (`Target::open`): only once every argument and
    /// namespace is validated, so a run that fails leaves nothing behind
    /// (`Target::check` refuses a bad path before that).
    pub fn create(plan: &EvidencePlan) -> Result<Self, Failure> {
        Ok(Self {
            pcap: PcapFile::create(&plan.target)?,
            limit: plan.count,
            written: 0,
            interfaces: HashMap::new(),
            clock_offset: wall_ns() - monotonic_ns(),
        })
    }

    pub fn limit(&self) -> u64 {
        self.limit
    }

    pub fn written(&self) -> u64 {
        self.written
    }

    /// Whether the file is still short of N frames.
    pub fn wants_more(&self) -> bool {
        self.written < self.limit
    }

    /// Writes one record (dropped once N are written). `receiver` names
    /// the interface; None for one macdrop no longer knows.
    pub fn write(
        &mut self,
        record: &EvidenceRecord,
        receiver: Option<&Receiver>,
    ) -> Result<(), Failure> {
        if !self.wants_more() {
            return Ok(());
        }
        let key = (record.netns, record.ifindex);
        let interface = match self.interfaces.get(&key) {
            Some(id) => *id,
            None => {
                let (name, description) = match receiver {
                    Some(r) => (r.name.clone(), r.description()),
                    None => (
                        format!("ifindex {}", record.ifindex),
                        format!("netns {}", record.netns),
                    ),
                };
                let id = self.pcap.add_interface(&Interface {
                    name: &name,
                    description: &description,
                    snaplen: EVIDENCE_SNAPLEN as u32,
                })?;
                self.interfaces.insert(key, id);
                id
            }
        };
        let on = match receiver {
            Some(r) => format!("{} ({})", r.name, r.role_text()),
            None => format!("ifindex {}", record.ifindex),
        };
        let comment = format!("{} on {on}", reasons(record.mismatch));
        let len = usize::from(record.cap_len).min(EVIDENCE_SNAPLEN);
        self.pcap.add_packet(&Packet {
            interface,
            timestamp: self.wall_time(record.ktime_ns),
            original_len: record.orig_len,
            data: &record.data[..len],
            comment: &comment,
        })?;
        self.written += 1;
        Ok(())
    }

    /// Moves what was written to the file (whole blocks only).
    pub fn flush(&mut self) -> Result<(), Failure> {
        self.pcap.flush()
    }

    pub fn summary(&self, kernel: &Counts) -> Summary {
        Summary {
            file: self.pcap.path().to_owned(),
            limit: self.limit,
            written: self.written,
            rate_limited: kernel.rate_limited,
            ring_full: kernel.ring_full,
        }
    }

    fn wall_time(&self, ktime_ns: u64) -> Duration {
        let ns = (i128::from(ktime_ns) + self.clock_offset).max(0);
        Duration::from_nanos(u64::try_from(ns).unwrap_or(u64::MAX))
    }
}

fn wall_ns() -> i128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i128)
        .unwrap_or(0)
}

/// CLOCK_MONOTONIC, the clock of `bpf_ktime_get_ns`.
fn monotonic_ns() -> i128 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid timespec to fill.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    i128::from(ts.tv_sec) * 1_000_000_000 + i128::from(ts.tv_nsec)
}

#[cfg(test)]
mod tests {
    use monitor_common::{MISMATCH_FOREIGN, MISMATCH_HOST_IP, MISMATCH_STALE};
    use pcap_file::pcapng::blocks::enhanced_packet::EnhancedPacketOption;

    use super::*;

    #[test]
    fn reasons_name_the_classes() {
        assert_eq!(reasons(MISMATCH_HOST_IP), "host_ip_wrong_mac");
        assert_eq!(
            reasons(MISMATCH_FOREIGN | MISMATCH_HOST_IP),
            "host_ip_wrong_mac + foreign_unicast"
        );
        assert_eq!(reasons(MISMATCH_STALE), "stale_mac");
    }

    #[test]
    fn writes_at_most_the_limit_with_a_comment() {
        let path = std::env::temp_dir().join(format!("macdrop-ev-{}.pcapng", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let mut ev = Evidence::create(&EvidencePlan {
            target: Target {
                path: path.clone(),
                overwrite: false,
            },
            count: 2,
        })
        .unwrap();
        let p1 = Receiver {
            name: "p1".into(),
            role: Role::Port,
            master: Some("br0".into()),
            netns: 7,
            netns_name: None,
        };
        let mut rec = EvidenceRecord {
            ktime_ns: monotonic_ns() as u64,
            netns: 7,
            ifindex: 3,
            orig_len: 1514,
            cap_len: 128,
            mismatch: MISMATCH_HOST_IP,
            hook: 2,
            data: [0x11; monitor_common::EVIDENCE_DATA],
            _pad: [0; 4],
        };
        for _ in 0..3 {
            ev.write(&rec, Some(&p1)).unwrap();
            rec.ifindex = 4;
        }
        ev.flush().unwrap();
        assert!(!ev.wants_more());
        assert_eq!(ev.summary(&Counts::default()).written, 2);
        let (packets, interfaces) = pcap::read_back(&path);
        let mut comments = Vec::new();
        for p in packets {
            assert_eq!((p.original_len, p.data.len()), (1514, 128));
            for o in p.options {
                if let EnhancedPacketOption::Comment(c) = o {
                    comments.push(c.into_owned());
                }
            }
        }
        assert_eq!(
            comments, ["host_ip_wrong_mac on p1 (port of br0)"; 2],
            "two frames, the third beyond the limit"
        );
        assert_eq!(interfaces, 2, "one description per interface");
        let wall = ev.wall_time(monotonic_ns() as u64);
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
        assert!(now.abs_diff(wall) < Duration::from_secs(1));
    }
}
